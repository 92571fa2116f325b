// Process: a target process under ptrace control. Every thread is PTRACE_SEIZEd (never
// PTRACE_ATTACH, never SIGSTOP: the process is never group-stopped, its parent never sees it
// stop). Threads created while we hold it are seized automatically (PTRACE_O_TRACECLONE).
// Destroying the Process detaches every thread and leaves each one running as it was.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/remote.h"
#include "common/result.h"

namespace lg {

using Registers = user_regs_struct;

// One argument of a remote call: a plain value, or bytes copied onto the thread's stack (below
// its red zone) whose address is passed.
struct RemoteArg {
  uint64_t value = 0;
  std::optional<std::string> bytes;
  static RemoteArg of(uint64_t v) { return RemoteArg{v, std::nullopt}; }
  static RemoteArg string(std::string s) { s.push_back('\0'); return RemoteArg{0, std::move(s)}; }
};

class Process {
 public:
  // Validates, then seizes every thread. Errors, each with an actionable message:
  //  - not_found: no such process (or a zombie);
  //  - permission: another user's process, or ptrace forbidden (names the uid and
  //    /proc/sys/kernel/yama/ptrace_scope when relevant);
  //  - busy: already traced (names the tracer's pid from /proc/PID/status TracerPid).
  // Nothing is changed in the target on error (threads seized before a failure are detached).
  static Result<std::unique_ptr<Process>> seize(pid_t pid);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Live threads we hold, sorted.
  std::vector<pid_t> threads() const;

  // Stops every thread with PTRACE_INTERRUPT and waits until each is in a ptrace stop; threads
  // born meanwhile are stopped too, threads that exit are dropped. Signals that arrive during a
  // stop are kept and delivered when the thread resumes. Idempotent per thread.
  Result<void> stop_all(std::chrono::milliseconds timeout);
  // Resumes every thread stopped by us, re-injecting pending signals.
  Result<void> resume_all();
  Result<void> stop_thread(pid_t tid, std::chrono::milliseconds timeout);
  Result<void> resume_thread(pid_t tid);
  bool is_stopped(pid_t tid) const;

  // Registers of a thread stopped by us.
  Result<Registers> get_regs(pid_t tid) const;
  Result<void> set_regs(pid_t tid, const Registers& regs);

  // Memory through /proc/PID/mem (works on read-only text too, as ptrace does).
  Result<void> read_memory(RemoteAddr addr, std::span<uint8_t> out) const;
  Result<void> write_memory(RemoteAddr addr, std::span<const uint8_t> bytes);
  template <class T>
  Result<T> read_value(RemoteAddr addr) const {
    T v{};
    LG_TRY_VOID(read_memory(addr, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), sizeof v)));
    return v;
  }

  // Calls fn(args...) (SysV ABI, at most 6 integer args) in thread [tid], which must be stopped
  // by us; returns rax. Discipline: every register is restored afterwards on every path; the
  // red zone (128 bytes) is skipped and the stack 16-byte aligned; a thread interrupted inside a
  // restartable syscall gets orig_rax/rax back so the syscall restarts; the call returns to
  // address 0 and the resulting SIGSEGV stop (rip == 0) marks completion, any other fatal
  // signal is an error (registers restored, the signal not delivered). Other threads keep
  // running as they were while the call runs. Errors: timeout, thread_died, io.
  Result<uint64_t> remote_call(pid_t tid, RemoteAddr fn, std::span<const RemoteArg> args,
                               std::chrono::milliseconds timeout);

  // Services the ptrace stops of threads that should be running, without blocking: a thread
  // that cloned is resumed (and its new thread seized and resumed), a signal is delivered, an
  // exited thread is dropped. While we hold a process, every clone and every signal stops the
  // thread concerned until this runs (stop_all, resume_all and remote_call run it too), so a
  // controller that keeps a Process across a long wait must call it now and then.
  // Error thread_died when the whole process has exited.
  Result<void> poll_events();

  // Detaches everything now (the destructor does this too): stops every thread (so none is
  // lost in a stop we have not collected), re-raises signals that arrived while we held it, and
  // PTRACE_DETACHes. Best effort: a thread that does not stop within 5 s stays traced until the
  // controller exits (the kernel detaches it then).
  void detach_all();
  // Detaches one thread (stopping only it first, so that its pending stops are collected and
  // its suppressed signals raised again). Detaching thread by thread never has every thread
  // stopped at once (the per-thread consistency model relies on it). src/process/detach_thread.cpp
  Result<void> detach_thread(pid_t tid);

  // Every ptrace request must come from the thread that seized (ptrace is per tracer thread).
  pid_t tracer_tid() const { return tracer_tid_; }

  struct ThreadInfo;  // private state of one thread (process.cpp)

 private:
  explicit Process(pid_t pid);
  enum class StopGoal;
  Result<void> check_tracer_thread() const;
  Result<ThreadInfo*> stopped_thread(pid_t tid) const;
  ThreadInfo* find_thread(pid_t tid) const;
  ThreadInfo& add_thread(pid_t tid, bool stop_wanted);
  // One WNOHANG pass over the threads that are not in a collected stop; true if any reported.
  Result<bool> poll_pass(pid_t only_tid = 0);
  void handle_status(ThreadInfo& t, int status);
  Result<void> wait_stopped(const std::vector<pid_t>& tids, std::chrono::milliseconds timeout);
  Result<void> resume_one(ThreadInfo& t);
  void drop_if_gone(ThreadInfo& t);

  pid_t pid_;
  pid_t tracer_tid_ = 0;
  bool process_exited_ = false;
  bool stopping_all_ = false;
  UniqueFd mem_fd_;
  std::map<pid_t, std::unique_ptr<ThreadInfo>> threads_;
};

// Loads [library_path] into the target with dlopen(path, RTLD_NOW) called through a thread for
// which [thread_is_safe] says yes (the caller rejects threads inside the dynamic loader or the
// allocator). Threads are tried in turn, with backoff, until [timeout]. dlopen's address comes
// from the target's libc .dynsym. On dlopen failure the target's dlerror() text is returned.
// The library must exist and be readable by the target.
Result<void> inject_library(Process& process, const std::string& library_path,
                            const std::function<Result<bool>(pid_t tid, const Registers& regs)>& thread_is_safe,
                            std::chrono::milliseconds timeout);

}  // namespace lg
