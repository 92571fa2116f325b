// Start-up of liblivegraft-agent.so: a constructor that works both when the library is
// preloaded and when it is dlopen'ed into a running process, the control thread, fork handling
// and the exported C API. Nothing here may abort, exit or throw into the host.
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent/protocol.h"
#include "protocol/protocol.h"
#include "agent/safepoint.h"
#include "agent/server.h"
#include "common/proc_maps.h"

#define LG_EXPORT extern "C" __attribute__((visibility("default")))

namespace lg::agent {
namespace {

// Never destroyed: the control thread may still be using it while the host exits.
Agent* g_agent = nullptr;
std::atomic<bool> g_active{false};
int g_listen_fd = -1;
pid_t g_owner_pid = 0;
uid_t g_socket_uid = 0;
ServeOptions g_serve_options;
char g_socket_path[sizeof(sockaddr_un::sun_path)] = {};
bool g_fork_locked = false;      // the request lock is held across a fork() (3.)
bool g_settle_in_child = false;  // a forked child's control thread settles an orphaned transition

// 1. One agent per process: the library may be loaded twice (preloaded, then dlopen'ed under
//    another path). Every copy has its own hidden globals, so they coordinate through a page
//    inside the process itself: a private mapping of a memfd named "livegraft-agent-lock"
//    (/proc/self/maps shows "/memfd:livegraft-agent-lock (deleted)"; the descriptor is closed
//    at once) holding a magic word and the owner's pid. No other user can create or hold it —
//    unlike the abstract socket name this replaced, which anyone could bind first for a victim's
//    pid, denying that process an agent for its whole life. (PR_SET_VMA_ANON_NAME would name an
//    anonymous page the same way, but needs CONFIG_ANON_VMA_NAME, which many kernels lack.)
//    Constructors of different copies never run at the same time (glibc runs them under its
//    loader lock; preloaded ones before main), so find-then-create needs no atomic step. The
//    mapping is private: a forked child gets a copy with its parent's pid in it, i.e. free.
//    If memfd_create is unavailable (seccomp), a later copy still does not serve: it finds
//    agent-<pid>.sock alive and refuses to replace it (listen_on).
constexpr char kLockName[] = "livegraft-agent-lock";
constexpr uint64_t kLockMagic = 0x6b636f6c2d67656cULL;  // "leg-lock"

struct InstanceLock {
  uint64_t magic;
  pid_t pid;
};
volatile InstanceLock* g_lock = nullptr;  // ours (the child of a fork() takes it over)

bool take_instance_lock() {
  pid_t self = ::getpid();
  const std::string name = std::string("/memfd:") + kLockName;
  if (auto maps = read_proc_maps(self)) {
    for (const auto& m : *maps) {
      if (m.path.rfind(name, 0) != 0 || !m.read || !m.write || m.range.hi.value - m.range.lo.value < sizeof(InstanceLock)) continue;
      auto* lock = reinterpret_cast<volatile InstanceLock*>(m.range.lo.value);
      if (lock->magic == kLockMagic && lock->pid == self) return false;  // another copy serves
      lock->pid = self;                                                 // our parent's, before fork(): ours now
      lock->magic = kLockMagic;
      g_lock = lock;
      return true;
    }
  }
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  int fd = ::memfd_create(kLockName, MFD_CLOEXEC);
  if (fd < 0) return true;  // no lock possible; listen_on still keeps a second copy from serving
  void* p = ::ftruncate(fd, static_cast<off_t>(page)) == 0 ? ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  ::close(fd);
  if (p == MAP_FAILED) return true;
  auto* lock = static_cast<InstanceLock*>(p);
  lock->pid = self;
  lock->magic = kLockMagic;
  g_lock = lock;
  return true;
}

// 2. A privileged process serves from the privileged uid's directory (socket_uid): a setuid
//    program that dropped to its real uid but kept saved uid 0 cannot create files in
//    /tmp/livegraft-0 as it is. For the few calls that create or remove the socket, this
//    thread alone takes that uid as its effective uid with a raw setresuid (glibc's setresuid
//    would change every thread of the host), with all signals blocked so no host handler runs
//    with it, and gives it back — with the capability sets, which an effective uid leaving 0
//    clears — on every path. The thread is the host's (the constructor runs in the thread
//    that loads us) for a few system calls; only a glibc set*id() call by another host thread
//    during those (its SIGSETXID cannot be blocked) could leave this thread's euid differing.
class ScopedThreadEuid {
 public:
  explicit ScopedThreadEuid(uid_t uid) {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old_mask_);
    old_euid_ = ::geteuid();
    if (uid == old_euid_) return;
    have_caps_ = ::syscall(SYS_capget, &cap_header_, caps_) == 0;
    old_dumpable_ = ::prctl(PR_GET_DUMPABLE);
    changed_ = ::syscall(SYS_setresuid, -1, uid, -1) == 0;
  }
  ~ScopedThreadEuid() {
    if (changed_) {
      ::syscall(SYS_setresuid, -1, old_euid_, -1);
      if (have_caps_) ::syscall(SYS_capset, &cap_header_, caps_);
      // A change of euid clears the process's dumpable flag (the kernel's commit_creds): give
      // back the one it had, with the credentials it had (else /proc/self/mem belongs to root
      // and the agent of a daemon that kept saved uid 0 cannot open it).
      if (old_dumpable_ >= 0 && ::prctl(PR_GET_DUMPABLE) != old_dumpable_) ::prctl(PR_SET_DUMPABLE, old_dumpable_);
    }
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  ScopedThreadEuid(const ScopedThreadEuid&) = delete;
  ScopedThreadEuid& operator=(const ScopedThreadEuid&) = delete;

 private:
  sigset_t old_mask_;
  uid_t old_euid_ = 0;
  bool changed_ = false, have_caps_ = false;
  int old_dumpable_ = -1;
  __user_cap_header_struct cap_header_{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps_[2]{};
};

bool open_socket(std::string* why);

// A forked child's control thread waits this long before it creates its socket: a child that
// calls exec (or exits) at once never leaves a socket file behind.
constexpr long kChildServeDelayNs = 20 * 1000 * 1000;

void* control_thread(void*) {
  // Named by itself before serving, so that whoever got an answer also sees the name.
  ::pthread_setname_np(::pthread_self(), lg::protocol::kAgentThreadName);
  try {
    if (g_settle_in_child) {
      timespec delay{0, kChildServeDelayNs};
      while (::nanosleep(&delay, &delay) != 0 && errno == EINTR) {
      }
      std::string why;
      if (!open_socket(&why)) {
        g_active = false;
        g_agent->disable("forked child: " + why);
        return nullptr;
      }
      g_agent->connection_closed();
    }
    serve_forever(g_listen_fd, *g_agent, g_serve_options);
  } catch (...) {
  }
  return nullptr;
}

// 3. After fork() only the forking thread exists in the child: the control thread is gone, and
//    the child's copy of the registry (patches, slots, a per-thread transition in progress with
//    its thunks, the thread's universe marker) is the child's code now. The child serves again,
//    under its own pid (`livegraft status CHILD` answers; apply, revert, force work there), with
//    the parent's sockets closed (close is async-signal-safe) so that it neither answers for the
//    parent nor removes the parent's socket at exit. The handler only starts the control
//    thread; that thread creates the socket 20 ms later (a fork+exec leaves nothing behind),
//    then settles a transition the parent's controller was driving, which has no owner here
//    (as when a controller's connection closes: a per-thread one whose threads were switching
//    stays in progress, consistent, for the next controller). A fork() that comes while a
//    request runs waits for it (before_fork holds the request lock across fork(), at most
//    Agent::kForkWaitMs = 200 ms: the parent's fork() is never delayed longer), so the child
//    normally never inherits a half-done request. If the request does not end in time, the fork
//    goes ahead and the child asks its copy of the agent whether the registry was copied mid-
//    change (Agent::recover_in_forked_child): if not, it serves normally; if so, it still
//    serves, but answers hello/status from the snapshot taken before that request, with the
//    reason as `disabled`, refuses every other request, and settles nothing. The parent's
//    agent is untouched either way.
bool start_control_thread(std::string* why);

void before_fork() { g_fork_locked = g_active && g_agent && g_agent->lock_for_fork(); }

void after_fork_in_parent() {
  if (g_fork_locked) g_agent->unlock_after_fork();
  g_fork_locked = false;
}

void after_fork_in_child() {
  const bool was_active = g_active.exchange(false);
  if (g_listen_fd >= 0) ::close(g_listen_fd);
  g_listen_fd = -1;
  g_socket_path[0] = '\0';
  if (!was_active) return;
  if (g_fork_locked) g_agent->unlock_after_fork();
  else (void)g_agent->recover_in_forked_child();  // a request ran past the wait: maybe mid-change
  g_fork_locked = false;
  if (g_lock) g_lock->pid = ::getpid();
  g_owner_pid = ::getpid();
  g_settle_in_child = true;
  try {
    std::string why;
    if (!start_control_thread(&why)) g_agent->disable("forked child: " + why);
  } catch (...) {
  }
}

// Creates the listening socket for this pid; false with the reason if it cannot.
bool open_socket(std::string* why) {
  std::string dir, path, refused;
  Result<UniqueFd> fd = UniqueFd();
  {
    ScopedThreadEuid as_owner(g_socket_uid);
    // The first usable directory of protocol::socket_dirs(): one another user created first
    // (or made a symlink, or opened up) is passed over, never used.
    for (const std::string& d : protocol::socket_dirs(g_socket_uid)) {
      if (auto ok = prepare_socket_dir(d, g_socket_uid)) {
        dir = d;
        break;
      } else {
        refused += (refused.empty() ? "" : "; ") + ok.error().describe();
      }
    }
    if (dir.empty()) {
      *why = "cannot serve: " + refused;
      return false;
    }
    path = protocol::socket_path_in(dir, ::getpid());
    if (!g_settle_in_child) remove_stale_sockets(dir, path);  // left by processes that were SIGKILLed or crashed
    fd = listen_on(path);
  }
  if (!fd) {
    *why = "cannot serve: " + fd.error().describe();
    return false;
  }
  std::snprintf(g_socket_path, sizeof g_socket_path, "%s", path.c_str());
  g_listen_fd = fd->release();
  g_owner_pid = ::getpid();
  return true;
}

bool start_control_thread(std::string* why) {
  // 4. The control thread must never receive the host's signals (a host that uses SIGALRM or
  //    SIGUSR1 for itself would see them delivered to our thread): block all of them in it.
  //    The new thread inherits the mask of its creator, so set and restore ours around it.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  ::pthread_attr_init(&attr);
  ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  g_active = true;
  int rc = ::pthread_create(&thread, &attr, control_thread, nullptr);
  ::pthread_attr_destroy(&attr);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    g_active = false;
    if (g_listen_fd >= 0) {
      ScopedThreadEuid as_owner(g_socket_uid);
      ::unlink(g_socket_path);
      ::close(g_listen_fd);
    }
    g_listen_fd = -1;
    g_socket_path[0] = '\0';
    *why = fmt::format("cannot start the control thread: {}", std::strerror(rc));
    return false;
  }
  return true;
}

void start() {
  if (!take_instance_lock()) return;  // another copy of the agent serves this process
  g_agent = new Agent();
  // Read here, not in the control thread: the host may change its environment later.
  if (const char* t = std::getenv("LIVEGRAFT_AGENT_REQUEST_TIMEOUT_MS")) {
    long ms = std::strtol(t, nullptr, 10);
    if (ms > 0) g_serve_options.request_timeout = std::chrono::milliseconds(ms);
  }
  uid_t ruid, euid, suid;
  ::getresuid(&ruid, &euid, &suid);
  g_socket_uid = socket_uid(ruid, euid, suid);
  static bool atfork_registered = false;
  if (!atfork_registered) atfork_registered = ::pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child) == 0;
  std::string why;
  if (!open_socket(&why) || !start_control_thread(&why)) g_agent->disable(why);
}

__attribute__((constructor)) void agent_init() {
  lg::agent::init_context_table();  // where coroutine stacks end, for the controller's unwinder
  try {
    start();
  } catch (...) {
    // Out of memory during start-up: stay silent and inactive rather than hurt the host.
  }
}

__attribute__((destructor)) void agent_fini() {
  if (g_active && ::getpid() == g_owner_pid && g_socket_path[0]) {
    ScopedThreadEuid as_owner(g_socket_uid);
    ::unlink(g_socket_path);
  }
}

}  // namespace

}  // namespace lg::agent

// The exported C API (src/agent/agent.map).
LG_EXPORT const char* livegraft_agent_version(void) { return "livegraft-agent 0.1.0 protocol 1"; }

// include/livegraft/safepoint.h: a thread offers to switch universes (src/agent/safepoint.cpp).
LG_EXPORT void livegraft_safepoint(void) { lg::agent::safepoint(); }
LG_EXPORT int livegraft_coroutines_declare(void) { return lg::agent::coroutines_declare(); }
LG_EXPORT int livegraft_swapcontext(void* from, const void* to) { return lg::agent::swap_context(from, to); }
