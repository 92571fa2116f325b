// Process: a target process under ptrace control. Every thread is PTRACE_SEIZEd (never
// PTRACE_ATTACH, never SIGSTOP: the process is never group-stopped, its parent never sees it
// stop). Threads created while we hold it are seized automatically (PTRACE_O_TRACECLONE).
// Destroying the Process detaches every thread and leaves each one running as it was.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <array>
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
// The x87/SSE/AVX state of a thread (PTRACE_GETREGSET NT_X86_XSTATE), empty when unavailable.
using ExtendedState = std::vector<uint8_t>;

// The raw result of a syscall: -4095..-1 are -errno.
struct SyscallResult {
  uint64_t value = 0;
  bool is_error() const { return value > static_cast<uint64_t>(-4096); }
  int error() const { return is_error() ? -static_cast<int>(static_cast<int64_t>(value)) : 0; }
};

// One argument of a remote call: a plain value, or bytes copied onto the call's own stack (in
// the remote-call mapping) whose address is passed.
struct RemoteArg {
  uint64_t value = 0;
  std::optional<std::string> bytes;
  static RemoteArg of(uint64_t v) { return RemoteArg{v, std::nullopt}; }
  static RemoteArg string(std::string s) { s.push_back('\0'); return RemoteArg{0, std::move(s)}; }
};

struct SavedThreadState;  // process_internal.h

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
  // The blocked-signal mask of a thread stopped by us (bit N-1 = signal N; PTRACE_GETSIGMASK and
  // PTRACE_SETSIGMASK, src/process/sigmask.cpp).
  Result<uint64_t> get_sigmask(pid_t tid) const;
  Result<void> set_sigmask(pid_t tid, uint64_t mask);
  // Whether a SIGTRAP raised by the kernel for an int3 the thread executed (SI_KERNEL) waits in
  // the private signal queue of a thread stopped by us (PTRACE_PEEKSIGINFO). A thread stopped by
  // PTRACE_INTERRUPT just as it executed one is in that state: the kernel reports the interrupt
  // stop before it dequeues the trap, with rip one past the int3 (sigmask.cpp).
  Result<bool> kernel_sigtrap_pending(pid_t tid) const;
  // Takes that SIGTRAP out of the queue of a stopped thread that does not block SIGTRAP: the
  // thread is let go with no interrupt asked, the kernel dequeues the trap first and reports its
  // signal-delivery-stop, where rip goes back onto the int3's address and the signal is
  // suppressed (thread_control.cpp, 7.), and the thread stops again right after.
  Result<void> take_pending_sigtrap(pid_t tid, std::chrono::milliseconds timeout);

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
  // by us; returns rax. The thread runs the call itself from a trampoline in a mapping of our
  // own (code, guard page, a 256 KiB stack, the saved registers and XSAVE image), which a
  // `call` enters and a marker syscall ends (docs/injection.md): a live controller stops the
  // thread there and restores every register with ptrace; if the controller dies at any
  // moment, the thread restores itself and continues exactly where it was (an interrupted
  // syscall restarts). The mapping is freed afterwards, except after a crash or a timeout (the
  // abandoned call's frames stay valid for whoever still refers to them). A fatal signal in the
  // called function is an error saying that locks it took may still be held (registers
  // restored, the signal not delivered). The thread's asynchronous signals are blocked during
  // the call and delivered right after it. Other threads keep running as they were.
  // Errors: timeout, thread_died, io, unsafe (crashed: locks may be held).
  Result<uint64_t> remote_call(pid_t tid, RemoteAddr fn, std::span<const RemoteArg> args,
                               std::chrono::milliseconds timeout);

  // Makes thread [tid] (stopped by us) perform syscall [nr] with [args] and returns the raw
  // kernel result. The syscall instruction is a stub written into never-executed padding at the
  // end of an executable segment, restored afterwards; like remote_call it is safe against the
  // controller dying at any moment. Errors: not_found (no padding anywhere), thread_died, io.
  Result<SyscallResult> remote_syscall(pid_t tid, long nr, std::array<uint64_t, 6> args,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Services the ptrace stops of threads that should be running, without blocking: a thread
  // that cloned is resumed (and its new thread seized and resumed), a signal is delivered, an
  // exited thread is dropped. While we hold a process, every clone and every signal stops the
  // thread concerned until this runs (stop_all, resume_all and remote_call run it too), so a
  // controller that keeps a Process across a long wait must call it now and then.
  // Error thread_died when the whole process has exited.
  Result<void> poll_events();

  // How the process went away while we held it, once we know (ptrace(2), "execve(2) under
  // ptrace"; PTRACE_O_TRACEEXEC is among the seize options): it exited, a signal killed it, or
  // it replaced its program with execve. After an execve the new program is let go at once
  // (detached in its exec stop): nothing of the old image, the agent and patches included, is
  // in it, and there is nothing for us to do there.
  struct Departure {
    enum class How { exited, killed, exec };
    How how = How::exited;
    int code = 0;  // the exit status, or the signal that killed it
  };
  const std::optional<Departure>& departure() const { return departure_; }
  // "process N exited with status 3", "process N was killed by signal 9 (SIGKILL)", "process N
  // replaced its program (execve)", "process N exited" while the details are not known.
  std::string departure_text() const;
  // Whether the process has gone away (or replaced its program) by now: collects what the
  // kernel has to report, and when our view of its memory is gone (an exec or exit under way)
  // waits up to [settle] for the kernel to say which. nullopt while it is still the program we
  // seized. Callers use it to turn whatever error a step met into the plain reason.
  std::optional<Departure> check_departed(std::chrono::milliseconds settle = std::chrono::milliseconds(2000));

  // Detaches everything now (the destructor does this too), thread by thread: each one is
  // stopped alone (so none is lost in a stop we have not collected), gets the signals that
  // arrived while we held it raised again, and is PTRACE_DETACHed before the next is stopped;
  // threads born meanwhile are detached too. Never stops every thread at once (the per-thread
  // model and injection rely on it). Best effort: a thread that does not stop within the 5 s
  // budget stays traced until the controller exits (the kernel detaches it then).
  void detach_all();
  // Stop-the-world: detach_all stops every thread at once (as the switch itself did) instead of
  // one after the other. On many busy threads on few cores, one-by-one stops each wait for the
  // thread to be scheduled (64 spinning threads on 2 cores ran out of the 5 s budget).
  void detach_all_together() { detach_together_ = true; }
  // Detaches one thread (stopping only it first, so that its pending stops are collected and
  // its suppressed signals raised again). Detaching thread by thread never has every thread
  // stopped at once (the per-thread consistency model relies on it). src/process/detach_thread.cpp
  Result<void> detach_thread(pid_t tid);
  Result<void> detach_thread_within(pid_t tid, std::chrono::milliseconds timeout);

  // What this Process has done to the threads' stops since the seize, counted every time a stop
  // was collected (stop_thread, stop_all, detaching): the most threads in a ptrace stop of ours
  // at once, and how many times every live thread was (only counted with 2 threads or more:
  // stopping the only thread is unavoidable). Tests and `apply --json` use it to prove that the
  // per-thread paths never stop the whole process.
  struct StopRecord {
    int max_stopped = 0;
    int all_stopped = 0;
  };
  const StopRecord& stop_record() const { return stop_record_; }

  // Every ptrace request must come from the thread that seized (ptrace is per tracer thread).
  pid_t tracer_tid() const { return tracer_tid_; }

  struct ThreadInfo;  // private state of one thread (process.cpp)

 private:
  friend class HijackedThread;  // remote_call.cpp: puts a borrowed thread back
  // Runs a hijacked thread (PTRACE_SYSCALL) until its marker syscall-entry stop at
  // [marker_rip], a crash, or the timeout (then it is interrupted).
  Result<void> run_until_marker(pid_t tid, RemoteAddr marker_rip, std::chrono::milliseconds timeout,
                                const char* started_kill_point);
  // Brings a thread that ran remote code back into an ordinary interrupt stop and writes the
  // saved state (process_internal.h) back into it.
  Result<void> put_back(pid_t tid, const SavedThreadState& saved);
  Result<RemoteAddr> stub_site();
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
  void record_stops();
  void reraise_pending(ThreadInfo& t);

  pid_t pid_;
  bool detach_together_ = false;
  pid_t tracer_tid_ = 0;
  bool process_exited_ = false;
  std::optional<Departure> departure_;
  void note_exec();  // thread_control.cpp: the exec stop of the leader's tid
  void note_exit(pid_t tid, int status);
  std::string gone_memory_text() const;
  // The leader, in a stop we collected, was replaced by an execing thread (its exec stop noted).
  bool leader_replaced();
  bool collect_leader();
  bool reap_unknown_threads();
  bool exec_suspected_ = false;  // a tid we traced vanished (ECHILD): maybe an execve
  bool stopping_all_ = false;
  UniqueFd mem_fd_;
  std::optional<RemoteAddr> stub_site_;
  std::map<pid_t, std::unique_ptr<ThreadInfo>> threads_;
  StopRecord stop_record_;
};

// A thread stopped for the length of a scope (for inspecting it, or borrowing it): resumed
// when the scope ends, unless it was already stopped before (then it stays as it was).
// resume() reports a failure; the destructor (an early return) prints it, as it cannot return it.
class ThreadStopScope {
 public:
  // Errors as Process::stop_thread.
  static Result<ThreadStopScope> stop(Process& process, pid_t tid, std::chrono::milliseconds timeout);
  ThreadStopScope(ThreadStopScope&& other) noexcept;
  ThreadStopScope(const ThreadStopScope&) = delete;
  ThreadStopScope& operator=(const ThreadStopScope&) = delete;
  ~ThreadStopScope();
  Result<void> resume();
  pid_t tid() const { return tid_; }

 private:
  ThreadStopScope(Process& process, pid_t tid, bool armed) : process_(&process), tid_(tid), armed_(armed) {}
  Process* process_;
  pid_t tid_;
  bool armed_;
};

// Loads [library_path] into the target with dlopen(path, RTLD_NOW) called through a thread for
// which [thread_is_safe] says yes (the caller rejects threads inside the dynamic loader or the
// allocator). Threads are tried in turn (each at least once), with backoff, until [timeout];
// [call_timeout] bounds stopping one thread (at most 1 s) and the dlopen itself. dlopen's address
// comes from the target's libc .dynsym. On dlopen failure the target's dlerror() text is returned.
// The library must exist and be readable by the target. When the process exits or replaces its
// program meanwhile, says so at once (injection_departure_error) instead of trying other threads.
// "process N replaced its program (execve) while LIB was being loaded into it: nothing of it is
// in the new program" (or exited, was killed), kind thread_died: for a process::departure().
Error injection_departure_error(const Process& process, const std::string& library_path);
Result<void> inject_library(Process& process, const std::string& library_path,
                            const std::function<Result<bool>(pid_t tid, const Registers& regs)>& thread_is_safe,
                            std::chrono::milliseconds timeout,
                            std::chrono::milliseconds call_timeout = std::chrono::milliseconds(10000));

}  // namespace lg
