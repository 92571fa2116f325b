// The unwinder against real processes: small C programs compiled here with gcc at several
// optimisation levels, started, stopped with PTRACE_SEIZE + PTRACE_INTERRUPT, and unwound.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/proc_maps.h"
#include "unwind/cfi_object.h"
#include "unwind/unwinder.h"

namespace lg {
namespace {

namespace fs = std::filesystem;

// ---- target programs: src/unwind/test_programs/*.c, compiled during the test ----

constexpr const char* kChainSource = "chain.c";
constexpr const char* kRecursionSource = "recursion.c";
constexpr const char* kThreadsSource = "threads.c";
constexpr const char* kSignalSource = "signal.c";
constexpr const char* kAsmSource = "asm_callers.c";
constexpr const char* kVdsoSource = "vdso_clock.c";
constexpr const char* kLibSource = "libsleep.c";
constexpr const char* kDlopenSource = "dlopener.c";
constexpr const char* kAnonCodeSource = "anon_code.c";

// ---- helpers ----

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lg-unwind-test-XXXXXX";
    char* d = mkdtemp(tmpl);
    if (d) path_ = d;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Compiles the test program [program] with gcc and [flags] into [dir]/[name]; returns the output's
// path, or "" with the compiler's messages in [log].
std::string compile(const TempDir& dir, const std::string& name, const char* program, const std::string& flags,
                    std::string* log) {
  fs::path src = fs::path(LG_SOURCE_DIR) / "src/unwind/test_programs" / program;
  fs::path exe = dir.path() / name;
  fs::path out = dir.path() / (name + ".log");
  std::string cmd = fmt::format("gcc {} -pthread -o {} {} > {} 2>&1", flags, exe.string(), src.string(), out.string());
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream in(out);
    *log = cmd + "\n" + std::string(std::istreambuf_iterator<char>(in), {});
    return {};
  }
  return exe;
}

bool have_gcc() { return std::system("gcc --version > /dev/null 2>&1") == 0; }

// A started target; killed and reaped on destruction.
class Target {
 public:
  static std::unique_ptr<Target> start(const std::string& exe, std::vector<std::string> args = {}) {
    int fds[2], in[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return nullptr;
    if (pipe2(in, O_CLOEXEC) != 0) return nullptr;
    pid_t pid = fork();
    if (pid < 0) return nullptr;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(fds[1], 1);
      dup2(in[0], 0);
      std::vector<char*> argv{const_cast<char*>(exe.c_str())};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(exe.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    close(in[0]);
    auto t = std::unique_ptr<Target>(new Target);
    t->pid_ = pid;
    t->out_ = fds[0];
    t->in_ = in[1];
    return t;
  }
  ~Target() {
    kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
    close(out_);
    close(in_);
  }
  pid_t pid() const { return pid_; }
  // Writes one byte to the target's stdin.
  bool poke() { return write(in_, "x", 1) == 1; }

  // Waits for the line "ready" on the target's stdout.
  bool wait_ready() {
    std::string got;
    while (got.find("ready\n") == std::string::npos) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 10000) <= 0) return false;
      char buf[64];
      ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) return false;
      got.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  std::vector<pid_t> threads() const {
    std::vector<pid_t> tids;
    for (auto& e : fs::directory_iterator(fmt::format("/proc/{}/task", pid_))) tids.push_back(std::stoi(e.path().filename()));
    return tids;
  }

 private:
  Target() = default;
  pid_t pid_ = -1;
  int out_ = -1, in_ = -1;
};

// True once the thread sleeps in a system call (/proc/PID/task/TID/syscall is not "running").
bool wait_blocked(pid_t pid, pid_t tid) {
  for (int i = 0; i < 10000; ++i) {
    std::ifstream in(fmt::format("/proc/{}/task/{}/syscall", pid, tid));
    std::string first;
    in >> first;
    if (!first.empty() && first != "running") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// One thread seized and stopped with PTRACE_INTERRUPT; detached on destruction.
class StoppedThread {
 public:
  static std::unique_ptr<StoppedThread> stop(pid_t tid) {
    if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) return nullptr;
    auto t = std::unique_ptr<StoppedThread>(new StoppedThread(tid));
    if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) return nullptr;
    int st = 0;
    if (waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st)) return nullptr;
    if (ptrace(PTRACE_GETREGS, tid, nullptr, &t->regs) != 0) return nullptr;
    return t;
  }
  ~StoppedThread() { ptrace(PTRACE_DETACH, tid_, nullptr, nullptr); }
  user_regs_struct regs{};

 private:
  explicit StoppedThread(pid_t tid) : tid_(tid) {}
  pid_t tid_;
};

std::string function_of(Unwinder& u, const Frame& f) {
  std::string s = u.symbolize(f.lookup_pc);
  return s.substr(0, s.find_first_of("+ "));
}

std::vector<std::string> functions(Unwinder& u, const StackTrace& t) {
  std::vector<std::string> names;
  for (auto& f : t.frames) names.push_back(function_of(u, f));
  return names;
}

std::string dump(Unwinder& u, const StackTrace& t) {
  std::string s;
  for (size_t i = 0; i < t.frames.size(); ++i) {
    const Frame& f = t.frames[i];
    s += fmt::format("  #{:<2} pc {:#014x} cfa {:#014x} {}{}{}\n", i, f.pc.value, f.cfa.value, u.symbolize(f.lookup_pc),
                     f.signal_frame ? " [interrupted by signal]" : "", f.signal_trampoline ? " [signal frame]" : "");
  }
  s += t.complete ? "  (complete)\n" : "  (incomplete: " + t.stop_reason + ")\n";
  return s;
}

// Index of the first frame named [name] at or after [from], or -1.
int find_frame(const std::vector<std::string>& names, const std::string& name, size_t from = 0) {
  for (size_t i = from; i < names.size(); ++i)
    if (names[i] == name) return static_cast<int>(i);
  return -1;
}

// [expected] appear in this order (other frames may sit between them).
bool in_order(const std::vector<std::string>& names, const std::vector<std::string>& expected) {
  size_t from = 0;
  for (auto& e : expected) {
    int i = find_frame(names, e, from);
    if (i < 0) return false;
    from = static_cast<size_t>(i) + 1;
  }
  return true;
}

// Stops [tid], unwinds it, and retries (resuming the thread in between) until [accept] likes
// the trace: a target that printed "ready" may not have reached its blocking call yet.
struct Unwound {
  StackTrace trace;
  std::vector<std::string> names;
};
std::optional<Unwound> unwind_until(Unwinder& u, pid_t tid, const std::function<bool(const Unwound&)>& accept,
                                    std::string* last) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    {
      auto t = StoppedThread::stop(tid);
      if (!t) {
        *last = fmt::format("cannot stop thread {}: {}", tid, strerror(errno));
        return std::nullopt;
      }
      auto r = u.unwind(t->regs);
      if (!r.ok()) {
        *last = r.error().describe();
        return std::nullopt;
      }
      Unwound w{*r, functions(u, *r)};
      *last = dump(u, w.trace);
      if (accept(w)) return w;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::nullopt;
}

class UnwindStack : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!have_gcc()) GTEST_SKIP() << "gcc is not installed; the targets are compiled during the test";
  }
  std::string build(const char* name, const char* source) {
    std::string log;
    std::string exe = compile(dir_, name, source, GetParam(), &log);
    EXPECT_FALSE(exe.empty()) << log;
    return exe;
  }
  TempDir dir_;
};

// ---- tests ----

TEST_P(UnwindStack, ThreadBlockedInNanosleepShowsItsCallChain) {
  std::string exe = build("chain", kChainSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe);
  ASSERT_TRUE(target && target->wait_ready());
  ASSERT_TRUE(wait_blocked(target->pid(), target->pid()));
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  std::string last;
  auto w = unwind_until(**u, target->pid(), [](const Unwound& w) { return find_frame(w.names, "f3") >= 0; }, &last);
  ASSERT_TRUE(w) << last;
  EXPECT_TRUE(w->trace.complete) << last;
  EXPECT_TRUE(in_order(w->names, {"f3", "f2", "f1", "main"})) << last;
  // The walk ends at _start, the outermost frame (return address undefined in its CFI).
  EXPECT_EQ(w->names.back(), "_start") << last;
}

TEST_P(UnwindStack, DeepRecursionGivesEveryFrame) {
  std::string exe = build("rec", kRecursionSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe);
  ASSERT_TRUE(target && target->wait_ready());
  ASSERT_TRUE(wait_blocked(target->pid(), target->pid()));
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  std::string last;
  auto w = unwind_until(**u, target->pid(), [](const Unwound& w) { return find_frame(w.names, "rec") >= 0; }, &last);
  ASSERT_TRUE(w) << last;
  EXPECT_TRUE(w->trace.complete) << last;
  EXPECT_GE(std::count(w->names.begin(), w->names.end(), "rec"), 51) << last;
  EXPECT_TRUE(in_order(w->names, {"rec", "main"})) << last;
}

TEST_P(UnwindStack, MaxFramesCapMakesTheTraceIncomplete) {
  std::string exe = build("rec", kRecursionSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe);
  ASSERT_TRUE(target && target->wait_ready());
  ASSERT_TRUE(wait_blocked(target->pid(), target->pid()));
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  auto t = StoppedThread::stop(target->pid());
  ASSERT_TRUE(t);
  auto r = (*u)->unwind(t->regs, 10);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_FALSE(r->complete);
  EXPECT_EQ(r->frames.size(), 10u);
  EXPECT_NE(r->stop_reason.find("max_frames"), std::string::npos) << r->stop_reason;
}

// The handler blocks in pause(); the trace goes handler -> the kernel's signal frame
// (__restore_rt) -> the code raise() was running -> interrupted_fn -> main.
TEST_P(UnwindStack, SignalHandlerFrameLeadsToTheInterruptedCode) {
  std::string exe = build("sig", kSignalSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe, {"raise"});
  ASSERT_TRUE(target && target->wait_ready());
  ASSERT_TRUE(wait_blocked(target->pid(), target->pid()));
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  std::string last;
  auto w = unwind_until(**u, target->pid(), [](const Unwound& w) { return find_frame(w.names, "handler") >= 0; }, &last);
  ASSERT_TRUE(w) << last;
  EXPECT_TRUE(w->trace.complete) << last;
  EXPECT_TRUE(in_order(w->names, {"handler", "interrupted_fn", "main"})) << last;
  int handler = find_frame(w->names, "handler");
  int interrupted = find_frame(w->names, "interrupted_fn");
  int trampoline = -1, signal_frames = 0;
  for (size_t i = 0; i < w->trace.frames.size(); ++i) {
    if (w->trace.frames[i].signal_trampoline && trampoline < 0) trampoline = static_cast<int>(i);
    signal_frames += w->trace.frames[i].signal_frame;
  }
  EXPECT_EQ(trampoline, handler + 1) << last;
  ASSERT_GT(trampoline, 0) << last;
  ASSERT_LT(static_cast<size_t>(trampoline) + 1, w->trace.frames.size()) << last;
  EXPECT_TRUE(w->trace.frames[static_cast<size_t>(trampoline) + 1].signal_frame) << last;
  EXPECT_EQ(signal_frames, 1) << last;
  EXPECT_GT(interrupted, trampoline) << last;
}

// SIGALRM lands in a busy loop: the interrupted frame's pc is exact, not a return address.
TEST_P(UnwindStack, SignalInterruptingABusyLoop) {
  std::string exe = build("sig", kSignalSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe, {"spin"});
  ASSERT_TRUE(target && target->wait_ready());
  ASSERT_TRUE(wait_blocked(target->pid(), target->pid()));
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  std::string last;
  auto w = unwind_until(**u, target->pid(), [](const Unwound& w) { return find_frame(w.names, "handler") >= 0; }, &last);
  ASSERT_TRUE(w) << last;
  EXPECT_TRUE(w->trace.complete) << last;
  EXPECT_TRUE(in_order(w->names, {"handler", "spin_fn", "main"})) << last;
  int spin = find_frame(w->names, "spin_fn");
  ASSERT_GT(spin, 0);
  const Frame& f = w->trace.frames[static_cast<size_t>(spin)];
  EXPECT_TRUE(f.signal_frame) << last;
  EXPECT_EQ(f.lookup_pc, f.pc) << last;
  EXPECT_TRUE(w->trace.frames[static_cast<size_t>(spin) - 1].signal_trampoline) << last;
}

// The handler runs on a sigaltstack above the interrupted thread's stack: the CFA drops across
// the signal frame, which only the signal frame may do.
TEST_P(UnwindStack, SignalHandlerOnAnAltStackAboveTheInterruptedStack) {
  std::string exe = build("sig", kSignalSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe, {"altstack"});
  ASSERT_TRUE(target && target->wait_ready());
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  pid_t tid = -1;
  for (pid_t t : target->threads())
    if (t != target->pid()) tid = t;
  ASSERT_GT(tid, 0);
  ASSERT_TRUE(wait_blocked(target->pid(), tid));
  std::string last;
  auto w = unwind_until(**u, tid, [](const Unwound& w) { return find_frame(w.names, "handler") >= 0; }, &last);
  ASSERT_TRUE(w) << last;
  EXPECT_TRUE(w->trace.complete) << last;
  EXPECT_TRUE(in_order(w->names, {"handler", "interrupted_fn", "start_thread"})) << last;
  int handler = find_frame(w->names, "handler");
  ASSERT_LT(static_cast<size_t>(handler) + 1, w->trace.frames.size());
  EXPECT_TRUE(w->trace.frames[static_cast<size_t>(handler) + 1].signal_trampoline) << last;
  EXPECT_LT(w->trace.frames[static_cast<size_t>(handler) + 1].cfa, w->trace.frames[static_cast<size_t>(handler)].cfa)
      << last;
}

INSTANTIATE_TEST_SUITE_P(CompilerFlags, UnwindStack,
                         ::testing::Values("-O0", "-O0 -fomit-frame-pointer", "-O2", "-O2 -fno-omit-frame-pointer",
                                           "-O2 -no-pie"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s;
                           for (const char* p = info.param; *p; ++p)
                             s += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
                           return s;
                         });

class UnwindProcess : public ::testing::Test {
 public:
  void SetUp() override {
    if (!have_gcc()) GTEST_SKIP() << "gcc is not installed; the targets are compiled during the test";
  }
  std::string build(const char* name, const char* source) {
    std::string log;
    std::string exe = compile(dir_, name, source, "-O2", &log);
    EXPECT_FALSE(exe.empty()) << log;
    return exe;
  }
  TempDir dir_;
};

// Every worker blocked in pthread_cond_wait: complete traces ending in start_thread/clone3.
void check_worker_threads(UnwindProcess* test, int workers, bool report_time) {
  std::string exe = test->build("threads", kThreadsSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe, {std::to_string(workers)});
  ASSERT_TRUE(target && target->wait_ready());
  std::vector<pid_t> tids;
  for (int i = 0; i < 1000 && static_cast<int>(tids.size()) != workers + 1; ++i) {
    tids = target->threads();
    if (static_cast<int>(tids.size()) != workers + 1) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(static_cast<int>(tids.size()), workers + 1);
  for (pid_t tid : tids) ASSERT_TRUE(wait_blocked(target->pid(), tid));
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();

  // Stop every thread at once (as the stop-the-world check does), then unwind each.
  std::vector<std::unique_ptr<StoppedThread>> stopped;
  for (pid_t tid : tids) {
    stopped.push_back(StoppedThread::stop(tid));
    ASSERT_TRUE(stopped.back()) << "cannot stop " << tid;
  }
  auto t0 = std::chrono::steady_clock::now();
  std::vector<StackTrace> traces;
  for (auto& s : stopped) {
    auto r = (*u)->unwind(s->regs);
    ASSERT_TRUE(r.ok()) << r.error().describe();
    traces.push_back(*r);
  }
  auto elapsed = std::chrono::steady_clock::now() - t0;
  if (report_time) {
    double us = std::chrono::duration<double, std::micro>(elapsed).count() / static_cast<double>(tids.size());
    // Measured, not asserted (no timing thresholds in tests).
    test->RecordProperty("microseconds_per_thread", std::to_string(us));
    std::printf("unwound %zu threads, %.1f us per thread (including the first, cold, parse)\n", tids.size(), us);
  }
  bool libc_debug_symbols = false;
  for (auto& t : traces) libc_debug_symbols |= find_frame(functions(**u, t), "start_thread") >= 0;
  int worker_traces = 0;
  for (auto& t : traces) {
    auto names = functions(**u, t);
    EXPECT_TRUE(t.complete) << dump(**u, t);
    if (find_frame(names, "worker_fn") >= 0) {
      ++worker_traces;
      // start_thread is a local symbol: named only when libc's debug file is installed
      // (libc6-dbg); otherwise the frame after worker_fn must at least be libc's code.
      if (libc_debug_symbols)
        EXPECT_TRUE(in_order(names, {"worker_fn", "start_thread"})) << dump(**u, t);
      else
        EXPECT_NE((*u)->symbolize(t.frames.at(static_cast<size_t>(find_frame(names, "worker_fn")) + 1).lookup_pc)
                      .find("libc.so"),
                  std::string::npos)
            << dump(**u, t);
    } else {
      EXPECT_TRUE(in_order(names, {"main"})) << dump(**u, t);
    }
  }
  EXPECT_EQ(worker_traces, workers);
}

TEST_F(UnwindProcess, ThreadsBlockedInCondWait) { check_worker_threads(this, 4, false); }

TEST_F(UnwindProcess, HundredIdleThreads) { check_worker_threads(this, 100, true); }

TEST_F(UnwindProcess, PcInAnonymousCodeWithoutCfiIsUnreliable) {
  std::string exe = build("anon", kAnonCodeSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe);
  ASSERT_TRUE(target && target->wait_ready());
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  std::string last;
  auto w = unwind_until(
      **u, target->pid(), [](const Unwound& w) { return w.trace.stop_reason.find("anonymous") != std::string::npos; },
      &last);
  ASSERT_TRUE(w) << last;
  EXPECT_FALSE(w->trace.complete);
  EXPECT_TRUE(w->trace.frames.empty()) << last;
  EXPECT_NE(w->trace.stop_reason.find("pc 0x"), std::string::npos) << w->trace.stop_reason;
  EXPECT_NE(w->trace.stop_reason.find("rwx"), std::string::npos) << w->trace.stop_reason;
}

// Patch code registered with add_code_region is unwound through with the CFI read from the
// target's memory. Stand-in for a patch: libc's own text and its relocated .eh_frame in memory.
TEST_F(UnwindProcess, CodeRegionCfiFromTargetMemory) {
  std::string exe = build("chain", kChainSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe);
  ASSERT_TRUE(target && target->wait_ready());
  ASSERT_TRUE(wait_blocked(target->pid(), target->pid()));
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  Unwinder& uw = **u;
  std::string last;
  auto before = unwind_until(uw, target->pid(), [](const Unwound& w) { return find_frame(w.names, "f3") >= 0; }, &last);
  ASSERT_TRUE(before && before->trace.complete) << last;

  // libc's executable mapping, and where its .eh_frame sits at run time.
  auto maps = read_proc_maps(target->pid());
  ASSERT_TRUE(maps.ok());
  const Mapping* libc = nullptr;
  for (auto& m : *maps)
    if (m.exec && m.path.find("/libc.so") != std::string::npos) libc = &m;
  ASSERT_NE(libc, nullptr);
  auto obj = CfiObject::open_file(libc->path, libc->path);
  ASSERT_TRUE(obj.ok()) << obj.error().describe();
  auto bias = (*obj)->bias_for(libc->range.lo.value, libc->offset);
  ASSERT_TRUE(bias.ok());
  auto eh = (*obj)->section_range(".eh_frame");
  ASSERT_TRUE(eh);
  RemoteAddr eh_frame(eh->first + *bias);

  uw.add_code_region(libc->range, eh_frame, eh->second, "libc-as-patch");
  // The region takes precedence over the mapping...
  EXPECT_EQ(uw.symbolize(before->trace.frames[0].pc).rfind("libc-as-patch+", 0), 0u)
      << uw.symbolize(before->trace.frames[0].pc);
  auto after = unwind_until(uw, target->pid(), [](const Unwound& w) { return find_frame(w.names, "f3") >= 0; }, &last);
  ASSERT_TRUE(after) << last;
  // ...and explains the same frames.
  EXPECT_TRUE(after->trace.complete) << last;
  ASSERT_EQ(after->trace.frames.size(), before->trace.frames.size()) << last;
  for (size_t i = 0; i < after->trace.frames.size(); ++i) {
    EXPECT_EQ(after->trace.frames[i].pc, before->trace.frames[i].pc) << i;
    EXPECT_EQ(after->trace.frames[i].cfa, before->trace.frames[i].cfa) << i;
  }

  // A region whose "CFI" covers none of its code: the walk stops there, naming the region.
  uw.add_code_region(libc->range, eh_frame, 64, "broken-patch");
  auto broken = unwind_until(uw, target->pid(), [](const Unwound&) { return true; }, &last);
  ASSERT_TRUE(broken) << last;
  EXPECT_FALSE(broken->trace.complete) << last;
  EXPECT_NE(broken->trace.stop_reason.find("broken-patch"), std::string::npos) << broken->trace.stop_reason;

  uw.remove_code_region(libc->range.lo);
  auto restored = unwind_until(uw, target->pid(), [](const Unwound& w) { return find_frame(w.names, "f3") >= 0; }, &last);
  ASSERT_TRUE(restored) << last;
  EXPECT_TRUE(restored->trace.complete) << last;
}

// The asm target in [mode] blocks in do_sleep under CFI the walk must not trust: the walk stops
// at do_sleep, incomplete, for [reason].
void expect_unreliable_below_do_sleep(const std::string& exe, const char* mode, const char* reason) {
  auto target = Target::start(exe, {mode});
  ASSERT_TRUE(target && target->wait_ready());
  ASSERT_TRUE(wait_blocked(target->pid(), target->pid()));
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  std::string last;
  auto w = unwind_until(**u, target->pid(), [](const Unwound& w) { return find_frame(w.names, "do_sleep") >= 0; },
                        &last);
  ASSERT_TRUE(w) << last;
  EXPECT_FALSE(w->trace.complete) << last;
  EXPECT_EQ(w->names.back(), "do_sleep") << last;
  EXPECT_NE(w->trace.stop_reason.find(reason), std::string::npos) << w->trace.stop_reason;
}

// A return address into code without an FDE: the walk stops there instead of guessing.
TEST_F(UnwindProcess, CallerWithoutCfiIsUnreliable) {
  std::string exe = build("asm", kAsmSource);
  ASSERT_FALSE(exe.empty());
  expect_unreliable_below_do_sleep(exe, "nocfi", "no CFI for pc");
}

// CFI that does not move the CFA up would make the walk loop; it is refused.
TEST_F(UnwindProcess, CfaThatDoesNotGrowIsUnreliable) {
  std::string exe = build("asm", kAsmSource);
  ASSERT_FALSE(exe.empty());
  expect_unreliable_below_do_sleep(exe, "badcfi", "does not lie above");
}

// clock_gettime runs in the vDSO, whose CFI is read from the target's memory.
TEST_F(UnwindProcess, ThreadInsideTheVdso) {
  std::string exe = build("vdso", kVdsoSource);
  ASSERT_FALSE(exe.empty());
  auto target = Target::start(exe);
  ASSERT_TRUE(target && target->wait_ready());
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  Unwinder& uw = **u;
  std::string last;
  auto w = unwind_until(
      uw, target->pid(),
      [&](const Unwound& w) {
        return !w.trace.frames.empty() && uw.symbolize(w.trace.frames[0].pc).find("[vdso]") != std::string::npos;
      },
      &last);
  ASSERT_TRUE(w) << last;
  EXPECT_TRUE(w->trace.complete) << last;
  EXPECT_TRUE(in_order(w->names, {"poll_clock", "main"})) << last;
}

// A library mapped after the Unwinder read the maps: the walk reads them again by itself.
TEST_F(UnwindProcess, LibraryLoadedAfterCreate) {
  std::string log;
  std::string lib = compile(dir_, "libsleep.so", kLibSource, "-O2 -shared -fPIC", &log);
  ASSERT_FALSE(lib.empty()) << log;
  std::string exe = compile(dir_, "dlopener", kDlopenSource, "-O2 -ldl", &log);
  ASSERT_FALSE(exe.empty()) << log;
  auto target = Target::start(exe, {lib});
  ASSERT_TRUE(target && target->wait_ready());
  auto u = Unwinder::create(target->pid());
  ASSERT_TRUE(u.ok()) << u.error().describe();
  ASSERT_TRUE(target->poke());
  std::string last;
  auto w = unwind_until(**u, target->pid(), [](const Unwound& w) { return find_frame(w.names, "lib_sleep") >= 0; },
                        &last);
  ASSERT_TRUE(w) << last;
  EXPECT_TRUE(w->trace.complete) << last;
  EXPECT_TRUE(in_order(w->names, {"lib_sleep", "main"})) << last;
}

TEST(UnwindCreate, MissingProcessIsAnError) {
  auto u = Unwinder::create(999999999);
  ASSERT_FALSE(u.ok());
}

}  // namespace
}  // namespace lg
