// Start-up of liblivegraft-agent.so: a constructor that works both when the library is
// preloaded and when it is dlopen'ed into a running process, the control thread, fork handling
// and the exported C API. Nothing here may abort, exit or throw into the host.
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "agent/protocol.h"
#include "agent/safepoint.h"
#include "agent/server.h"

#define LG_EXPORT extern "C" __attribute__((visibility("default")))

namespace lg::agent {
namespace {

// Never destroyed: the control thread may still be using it while the host exits.
Agent* g_agent = nullptr;
std::atomic<bool> g_active{false};
int g_listen_fd = -1;
int g_lock_fd = -1;
pid_t g_owner_pid = 0;
char g_socket_path[sizeof(sockaddr_un::sun_path)] = {};

// 1. One agent per process: the library may be loaded twice (preloaded, then dlopen'ed under
//    another path). Every copy has its own hidden globals, so they coordinate through an
//    abstract unix socket named after the process (pid plus pid-namespace inode). Abstract
//    names vanish with their last descriptor, so there is never a stale one; a forked child
//    closes the inherited descriptor.
int take_instance_lock() {
  struct stat ns{};
  if (::stat("/proc/self/ns/pid", &ns) != 0) ns.st_ino = 0;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  int n = std::snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "livegraft-agent-%llu-%d",
                        static_cast<unsigned long long>(ns.st_ino), static_cast<int>(::getpid()));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + static_cast<size_t>(n));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void* control_thread(void*) {
  // Named by itself before serving, so that whoever got an answer also sees the name.
  ::pthread_setname_np(::pthread_self(), "livegraft-agent");
  try {
    serve_forever(g_listen_fd, *g_agent);
  } catch (...) {
  }
  return nullptr;
}

// 2. After fork() only the forking thread exists in the child: the control thread is gone.
//    Mark the agent inactive and drop the parent's sockets (close is async-signal-safe), so the
//    child neither pretends to serve nor removes the parent's socket at exit.
void after_fork_in_child() {
  if (!g_active.exchange(false)) return;
  if (g_listen_fd >= 0) ::close(g_listen_fd);
  if (g_lock_fd >= 0) ::close(g_lock_fd);
  g_listen_fd = g_lock_fd = -1;
}

void start() {
  g_lock_fd = take_instance_lock();
  if (g_lock_fd < 0) return;  // another copy of the agent serves this process
  g_agent = new Agent();
  uid_t uid = ::getuid();
  std::string dir = socket_dir(uid);
  auto ok = prepare_socket_dir(dir, uid);
  if (!ok) {
    g_agent->disable("cannot serve: " + ok.error().describe());
    return;
  }
  std::string path = socket_path(uid, ::getpid());
  auto fd = listen_on(path);
  if (!fd) {
    g_agent->disable("cannot serve: " + fd.error().describe());
    return;
  }
  std::snprintf(g_socket_path, sizeof g_socket_path, "%s", path.c_str());
  g_listen_fd = fd->release();
  g_owner_pid = ::getpid();

  static bool atfork_registered = false;
  if (!atfork_registered) atfork_registered = ::pthread_atfork(nullptr, nullptr, after_fork_in_child) == 0;

  // 3. The control thread must never receive the host's signals (a host that uses SIGALRM or
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
    ::unlink(g_socket_path);
    ::close(g_listen_fd);
    g_listen_fd = -1;
    g_agent->disable(fmt::format("cannot start the control thread: {}", std::strerror(rc)));
    return;
  }
}

__attribute__((constructor)) void agent_init() {
  try {
    start();
  } catch (...) {
    // Out of memory during start-up: stay silent and inactive rather than hurt the host.
  }
}

__attribute__((destructor)) void agent_fini() {
  if (g_active && ::getpid() == g_owner_pid && g_socket_path[0]) ::unlink(g_socket_path);
}

}  // namespace
}  // namespace lg::agent

// The exported C API (src/agent/agent.map).
LG_EXPORT const char* livegraft_agent_version(void) { return "livegraft-agent 0.1.0 protocol 1"; }

// include/livegraft/safepoint.h: a thread offers to switch universes (src/agent/safepoint.cpp).
LG_EXPORT void livegraft_safepoint(void) { lg::agent::safepoint(); }
