#include "controller/operations.h"

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <optional>

#include "common/json_text.h"
#include "common/kill_step.h"
#include "common/proc_maps.h"
#include "common/scope_guard.h"
#include "common/utf8.h"
#include "controller/agent_client.h"
#include "controller/apply_plan.h"
#include "controller/immediate.h"
#include "controller/per_thread_ops.h"
#include "controller/reclaim.h"
#include "controller/stack_switching.h"
#include "elf/elf_file.h"
#include "process/process.h"
#include "unwind/unwinder.h"

namespace lg {

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

void say(const OperationOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

// The state letter of every thread of [pid] (/proc/PID/task/TID/stat, proc(5)); empty when the
// process is gone. The leader's own state is not the process's: a leader whose thread called
// pthread_exit stays a zombie ('Z') while the other threads run.
std::vector<char> thread_states(pid_t pid) {
  std::vector<char> states;
  std::string dir_path = fmt::format("/proc/{}/task", pid);
  DIR* dir = ::opendir(dir_path.c_str());
  if (!dir) return states;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    auto stat = read_text_file(fmt::format("{}/{}/stat", dir_path, e->d_name));
    if (!stat) continue;  // exited meanwhile
    auto close = stat->rfind(')');  // the command name may hold ')' and spaces
    if (close != std::string::npos && close + 2 < stat->size()) states.push_back((*stat)[close + 2]);
  }
  ::closedir(dir);
  return states;
}

bool has_live_thread(pid_t pid) {
  for (char st : thread_states(pid))
    if (st != 'Z' && st != 'X') return true;
  return false;
}

long status_field(const std::string& status, const char* name) {
  auto v = proc_status_field(status, name);
  return v ? std::strtol(std::string(*v).c_str(), nullptr, 10) : -1;
}

// Checked before anything else so that every later error can assume the process exists, is a
// process (not one of its threads) and runs (a stopped process's agent cannot answer, and its
// threads cannot be switched).
Result<void> check_process(pid_t pid) {
  if (pid <= 0) return make_error(ErrorKind::invalid_argument, "{} is not a process id", pid);
  auto status = read_text_file(fmt::format("/proc/{}/status", pid));
  if (!status) return make_error(ErrorKind::not_found, "no process with pid {}", pid);
  // /proc/TID answers for a thread id too (it is only hidden from the listing).
  long tgid = status_field(*status, "Tgid");
  if (tgid > 0 && tgid != pid)
    return Error(ErrorKind::invalid_argument,
                 fmt::format("{} is not a process: it is thread {} of process {}", pid, pid, tgid), 0,
                 fmt::format("use the process id {}", tgid));
  auto states = thread_states(pid);
  size_t live = 0, stopped = 0, traced = 0;
  for (char st : states) {
    if (st == 'Z' || st == 'X') continue;
    ++live;
    stopped += st == 'T';
    traced += st == 't';
  }
  if (live == 0) return make_error(ErrorKind::not_found, "process {} has exited (it is a zombie)", pid);
  if (stopped > 0)
    return Error(ErrorKind::busy,
                 fmt::format("process {} is stopped ({} of its {} thread(s) in state T: SIGSTOP, SIGTSTP or a job "
                             "control stop); its agent cannot answer and its threads cannot be switched",
                             pid, stopped, live),
                 0, fmt::format("resume it with `kill -CONT {}`, then retry", pid));
  if (traced > 0) {
    // The leader's TracerPid is 0 while only another thread is held (another livegraft stops one
    // thread at a time): then the first thread's tracer that is set.
    long tracer = status_field(*status, "TracerPid");
    if (DIR* dir = tracer > 0 ? nullptr : ::opendir(fmt::format("/proc/{}/task", pid).c_str())) {
      while (dirent* e = tracer > 0 ? nullptr : ::readdir(dir)) {
        if (e->d_name[0] == '.') continue;
        if (auto st = read_text_file(fmt::format("/proc/{}/task/{}/status", pid, e->d_name))) tracer = status_field(*st, "TracerPid");
      }
      ::closedir(dir);
    }
    auto comm = read_text_file(fmt::format("/proc/{}/comm", tracer));
    if (tracer > 0 && comm && comm->rfind("livegraft", 0) == 0)  // seen as a newcomer: "status" during an "apply"
      return Error(ErrorKind::busy,
                   fmt::format("process {} is being worked on by another livegraft command (pid {}), which holds one of "
                               "its threads in a stop",
                               pid, tracer),
                   0, "wait for that command to finish, then retry");
    return Error(ErrorKind::busy, fmt::format("process {} is held in a stop by its tracer (pid {})", pid, tracer), 0,
                 "detach the debugger first");
  }
  return {};
}

// A failure after the target died says that it died, whatever step noticed it (a closed socket,
// a wait that ran out, a failed ptrace request).
// [error] may be anything, even not_found ("the library as seen by process N" is gone with it).
Error explain_death(pid_t pid, Error error, const char* operation) {
  if (error.kind == ErrorKind::invalid_argument || has_live_thread(pid)) return error;
  // Already said by the step that held the process (departure_error, inject_library).
  if (error.kind == ErrorKind::thread_died && error.message.rfind(fmt::format("process {} ", pid), 0) == 0) return error;
  return Error(ErrorKind::thread_died,
               fmt::format("process {} died during {} ({})", pid, operation, error.message), error.err,
               "nothing is left to undo: the process is gone");
}

// Runs one operation's steps. A reply of the agent with a field of an unexpected type makes
// nlohmann::json throw; the steps' RAII scopes (abort the load, cancel the revert, detach)
// have run when it gets here, so it becomes an error like any other.
template <class F>
Result<nlohmann::json> run_steps(pid_t pid, const char* operation, F&& steps) {
  const bool was_alive = has_live_thread(pid);  // else check_process says it is gone
  Result<nlohmann::json> r = Error();
  try {
    r = steps();
  } catch (const nlohmann::json::exception& e) {
    r = Error(ErrorKind::agent,
              fmt::format("{}: the agent of process {} sent a reply livegraft cannot use ({})", operation, pid,
                          printable(e.what())));
  }
  if (!r && was_alive) return explain_death(pid, std::move(r).error(), operation);
  return r;
}

// The patch file, opened without blocking (a FIFO would block open() until a writer comes) and
// refused unless it is a regular file. Returns the absolute path.
Result<std::string> check_patch_file(const std::string& patch_path) {
  if (!is_valid_utf8(patch_path))
    return Error(ErrorKind::invalid_argument,
                 fmt::format("the patch path '{}' is not valid UTF-8 (shown escaped)", printable(patch_path)), 0,
                 "rename the file, or pass a symbolic link with a UTF-8 name");
  std::error_code ec;
  auto abs_path = fs::absolute(patch_path, ec).lexically_normal().string();
  if (ec) return make_error(ErrorKind::not_found, "cannot read patch file {}: {}", patch_path, ec.message());
  if (!is_valid_utf8(abs_path))
    return Error(ErrorKind::invalid_argument,
                 fmt::format("the patch's absolute path '{}' is not valid UTF-8 (shown escaped)", printable(abs_path)),
                 0, "move the file under a directory with a UTF-8 name");
  UniqueFd fd(::open(abs_path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd.valid()) {
    int e = errno;
    return Error(e == EACCES || e == EPERM ? ErrorKind::permission : ErrorKind::not_found,
                 fmt::format("cannot read patch file {}: {}", patch_path, std::strerror(e)), e);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return make_errno_error(ErrorKind::io, "fstat {}", patch_path);
  if (!S_ISREG(st.st_mode)) {
    const char* what = S_ISFIFO(st.st_mode)                          ? "a FIFO"
                       : S_ISDIR(st.st_mode)                         ? "a directory"
                       : S_ISSOCK(st.st_mode)                        ? "a socket"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                     : "not a file";
    return make_error(ErrorKind::invalid_argument, "patch file {} is not a regular file (it is {})", patch_path, what);
  }
  return abs_path;
}

// The file about to be dlopen()ed into the target must be the livegraft agent: a regular
// x86-64 ELF shared object that exports livegraft_agent_version. Anything else would run its
// constructors, or fail in dlopen, inside the user's process.
Result<void> check_agent_library(const std::string& path) {
  auto refuse = [&](const std::string& why) {
    return Error(ErrorKind::invalid_argument,
                 fmt::format("{} is not the livegraft agent: {}", printable(path), why), 0,
                 "pass --agent PATH to liblivegraft-agent.so, or set LIVEGRAFT_AGENT");
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return make_errno_error(ErrorKind::not_found, "agent library {}", printable(path));
  if (!S_ISREG(st.st_mode)) return refuse("it is not a regular file");
  auto elf = ElfFile::open(path);
  if (!elf) return refuse(elf.error().message);
  if (elf->header().e_ident[EI_CLASS] != ELFCLASS64 || !elf->is_x86_64()) return refuse("it is not an x86-64 ELF file");
  if (elf->header().e_type != ET_DYN) return refuse("it is not a shared object");
  for (const auto& s : elf->dynamic_symbols())
    if (s.defined() && s.name == "livegraft_agent_version") return {};
  return refuse("it does not export livegraft_agent_version");
}

// Whether a thread may run dlopen for the injection: its stack must unwind, and no frame may
// be inside the dynamic loader or the allocator (they hold locks other threads may need).
Result<bool> safe_for_dlopen(Unwinder& unwinder, const Registers& regs) {
  LG_TRY(auto trace, unwinder.unwind(regs));
  if (!trace.complete) return false;
  // The allocator's and the loader's locks are the ones dlopen takes; a frame in them means
  // this thread may hold one (stdio and other locks are not taken by dlopen of the agent).
  static const char* const kUnsafe[] = {"malloc", "free", "calloc", "realloc", "_int_", "memalign", "__libc_malloc",
                                        "__libc_free", "_dl_", "dl_", "__dl", "fork", "__libc_fork", "tcache"};
  for (const auto& f : trace.frames) {
    std::string where = unwinder.symbolize(f.pc);
    if (where.find("ld-linux") != std::string::npos) return false;
    std::string name = where.substr(0, where.find_first_of("+ "));
    for (const char* bad : kUnsafe)
      if (name.rfind(bad, 0) == 0) return false;
  }
  return true;
}

// Seizes the process, checks stacks and performs [writes] under stop-the-world, then detaches.
// [grace] (may be null): the grace period of the agent's retired code, shown every thread of
// the attempt that switched (controller/reclaim.h).
Result<TransitionStats> switch_world(pid_t pid, const std::vector<protocol::PatchInfo>& patches, const std::vector<RemoteRange>& check,
                                     const std::vector<MemoryWrite>& writes, const OperationOptions& options,
                                     const std::string& during, GraceWatch* grace = nullptr) {
  LG_TRY(auto process, Process::seize(pid));
  process->detach_all_together();  // the switch stops every thread anyway
  kill_step("after_seize");
  LG_TRY(auto unwinder, unwinder_for(pid, patches));
  TransitionOptions topts;
  topts.timeout = options.timeout;
  if (options.context_check)  // declared coroutine contexts (stack_switching.h)
    topts.extra_blockers = [&] { return options.context_check(*unwinder, check, std::nullopt); };
  topts.own_stack = checks_own_stacks(options);
  // Suspended stacks of a program that switches stacks are not all seen: no reclaim.
  if (grace && !options.context_check && !options.allow_stack_switching) topts.grace = grace;
  topts.on_retry = [&](int attempt, const std::vector<Blocker>& blockers) {
    if (attempt == 1 || attempt % 10 == 0)
      say(options, fmt::format("waiting: {} thread(s) have an affected function on the stack (attempt {}){}",
                               blockers.size(), attempt,
                               blockers.empty() ? std::string()
                                                : fmt::format(" (thread {}: {}{})", blockers[0].tid, blockers[0].reason,
                                                              blockers.size() > 1 ? fmt::format("; and {} more", blockers.size() - 1)
                                                                                  : std::string())));
  };
  Result<TransitionStats> stats = Error();
  {
    StopTheWorld stw(*process, *unwinder);
    stats = stw.run(check, writes, topts);
    if (!stats && options.blockers) *options.blockers = stw.blockers();
  }
  if (!stats) stats = departure_error(*process, std::move(stats).error(), during);  // an exit or execve meanwhile
  process.reset();  // detach every thread
  kill_step("after_detach");
  return stats;
}

nlohmann::json stats_json(const TransitionStats& s) {
  return {{"attempts", s.attempts},
          {"threads", s.threads},
          {"stopped_us", s.stopped.count()},
          {"total_us", s.total.count()}};
}

struct AgentConnection {
  AgentClient client;
  bool injected = false;
  Process::StopRecord inject_stops;  // the injection's stops, detach included
};

Result<AgentConnection> connect_or_inject(pid_t pid, const OperationOptions& options) {
  LG_TRY_VOID(prepare_agent_socket_dir(pid));  // as root, makes a directory if none is usable; else nothing is injected
  auto client = AgentClient::connect(pid, options.agent_timeout);
  if (client) return AgentConnection{std::move(*client), false};
  if (client.error().kind != ErrorKind::not_found) return std::move(client).error();

  LG_TRY(auto agent_path, find_agent_library(options.agent_path));
  LG_TRY_VOID(check_agent_library(agent_path));
  say(options, fmt::format("injecting {} into process {}", agent_path, pid));
  Process::StopRecord stops;
  {
    LG_TRY(auto process, Process::seize(pid));
    if (options.model == ConsistencyModel::stop_the_world) process->detach_all_together();  // it stops everyone anyway
    LG_TRY(auto unwinder, Unwinder::create(pid));
    LG_TRY_VOID(inject_library(
        *process, agent_path,
        [&](pid_t, const Registers& regs) { return safe_for_dlopen(*unwinder, regs); }, options.timeout,
        options.agent_timeout));
    process->detach_all();  // thread by thread: the agent's control thread must run freely from now on
    // An execve that began while dlopen ran completes while the threads are detached (its
    // killed threads reaped): the agent went with the old image.
    if (process->departure()) return injection_departure_error(*process, agent_path);
    stops = process->stop_record();
  }
  kill_step("after_inject");
  LG_TRY(auto connected, AgentClient::connect_with_retry(pid, options.agent_timeout));
  return AgentConnection{std::move(connected), true, stops};
}

std::vector<MemoryWrite> writes_of(const protocol::Plan& plan) {
  std::vector<MemoryWrite> out;
  for (const auto& w : plan.writes) out.push_back({RemoteAddr(w.addr), w.old_bytes, w.new_bytes});
  return out;
}

Result<nlohmann::json> apply_patch_steps(pid_t pid, const std::string& patch_path, const OperationOptions& options);
Result<nlohmann::json> revert_patch_steps(pid_t pid, const std::string& patch_name, const OperationOptions& options);
Result<nlohmann::json> patch_status_steps(pid_t pid, std::chrono::milliseconds agent_timeout);
Result<nlohmann::json> inject_agent_steps(pid_t pid, const OperationOptions& options);

}  // namespace

Result<std::string> find_agent_library(const std::string& configured) {
  std::vector<std::string> candidates;
  if (!configured.empty()) candidates.push_back(configured);
  else if (const char* env = std::getenv("LIVEGRAFT_AGENT"); env && *env) candidates.push_back(env);
  else {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
      fs::path dir = fs::path(std::string(buf, static_cast<size_t>(n))).parent_path();
      candidates.push_back(dir / "liblivegraft-agent.so");
      candidates.push_back(dir / "../lib/livegraft/liblivegraft-agent.so");
    }
  }
  for (const auto& c : candidates) {
    std::error_code ec;
    auto abs = fs::canonical(c, ec);
    if (!ec && ::access(abs.c_str(), R_OK) == 0) return abs.string();
  }
  return Error(ErrorKind::not_found,
               fmt::format("cannot find liblivegraft-agent.so (looked at: {})", fmt::join(candidates, ", ")), 0,
               "pass --agent PATH or set LIVEGRAFT_AGENT");
}

namespace {

// An apply or a revert: [steps] with the options checked first (stack switching in the process is
// looked at before the process is touched), under the operation's kill points.
template <class Steps>
Result<nlohmann::json> run_transition_command(pid_t pid, const char* what, const OperationOptions& options, Steps steps) {
  KillPointOperation op(what);
  return run_steps(pid, what, [&]() -> Result<nlohmann::json> {
    Result<OperationOptions> checked = options;  // (a process that is not there is reported by the steps)
    if (check_process(pid).ok()) checked = with_stack_switching_check(pid, options);
    if (!checked) return std::move(checked).error();
    return steps(*checked);
  });
}

}  // namespace

Result<nlohmann::json> apply_patch(pid_t pid, const std::string& patch_path, const OperationOptions& options) {
  return run_transition_command(pid, "apply", options,
                                [&](const OperationOptions& checked) { return apply_patch_steps(pid, patch_path, checked); });
}

namespace {

Result<nlohmann::json> apply_patch_steps(pid_t pid, const std::string& patch_path, const OperationOptions& options) {
  LG_TRY_VOID(check_process(pid));
  LG_TRY(auto abs_path, check_patch_file(patch_path));

  // What is already redirected (validation must accept our own jumps in the code).
  std::vector<RemoteAddr> redirected;
  std::optional<AgentClient> existing;
  protocol::StatusResponse status;
  LG_TRY_VOID(prepare_agent_socket_dir(pid));  // before the connect: as root, makes a directory if none is usable
  if (auto c = AgentClient::connect(pid, options.agent_timeout)) {
    existing.emplace(std::move(*c));
    LG_TRY(status, existing->status());
    for (const auto& f : status.functions) redirected.emplace_back(f.jump_addr);
    if (status.transition) {  // per_thread_ops.cpp
      LG_TRY(auto patch_object, read_patch_object(abs_path));
      // (not LG_TRY: g++ 12 warns maybe-uninitialized on a moved-out optional<json>)
      auto handled = handle_transition_in_progress(pid, *existing, status, patch_object.name, Intent::apply, options);
      if (!handled) return std::move(handled).error();
      if (handled->has_value()) return nlohmann::json(std::move(handled->value()));
    }
  } else if (c.error().kind != ErrorKind::not_found) {
    return std::move(c).error();
  }

  // 1. Validate everything before touching the process.
  say(options, fmt::format("checking {} against process {}", patch_path, pid));
  LG_TRY(auto plan, plan_apply(pid, abs_path, redirected, PlanOptions{options.symbols_file}));
  if (options.model == ConsistencyModel::immediate) LG_TRY_VOID(check_immediate_allowed(plan));  // before injecting
  if (auto bad = check_name(plan.patch.name))
    return make_error(ErrorKind::bad_patch, "the patch's name '{}' is unusable: {}", printable(plan.patch.name), *bad);
  if (existing && status.find_patch(plan.patch.name))
    return make_error(ErrorKind::invalid_argument, "patch '{}' is already applied to process {}", plan.patch.name, pid);
  // Everything the agent will be sent must be UTF-8 text: check it before injecting anything.
  protocol::LoadRequest load_request = plan.load_request(abs_path);
  if (auto bad = find_invalid_utf8(protocol::encode_request(load_request)))
    return make_error(ErrorKind::bad_patch,
                      "the patch holds a name that is not valid UTF-8: '{}' (shown escaped); the agent protocol "
                      "carries only UTF-8 text",
                      *bad);

  // 2. The agent (injected if absent) loads the patch next to its target.
  bool injected = false;
  if (!existing) {
    LG_TRY(auto conn, connect_or_inject(pid, options));
    existing.emplace(std::move(conn.client));
    injected = conn.injected;
  }
  AgentClient& agent = *existing;
  if (options.model == ConsistencyModel::per_thread)
    return apply_per_thread(pid, abs_path, plan, agent, injected, redirected, options);
  if (options.model == ConsistencyModel::immediate)
    return apply_immediate(pid, abs_path, plan, agent, injected, redirected, options);
  // The relocated entries let the agent switch every function with one store (registry.h,
  // StwSwitch); a prologue that cannot be relocated leaves the older plan of direct writes.
  protocol::LoadRequest relocated = load_request;
  if (auto r = add_per_thread_fields(pid, plan, redirected, relocated)) {
    relocated.model = protocol::Model::stop_the_world;
    load_request = std::move(relocated);
  } else {
    say(options, fmt::format("note: {}; the functions are switched by direct writes", r.error().message));
  }
  say(options, fmt::format("loading patch '{}' into process {}", plan.patch.name, pid));
  LG_TRY(auto loaded, agent.call(std::move(load_request), plan.patch_fd.get()));
  ScopeGuard abort_load([&] { (void)agent.call(protocol::AbortRequest{plan.patch.name}); });
  kill_step("after_load");

  auto writes = writes_of(loaded.plan);
  auto check = loaded.plan.check;
  auto originals = plan.original_ranges();
  check.insert(check.end(), originals.begin(), originals.end());
  LG_TRY(auto now, agent.status());

  // 3. Switch under stop-the-world.
  say(options, "switching (stop-the-world)");
  GraceWatch grace = GraceWatch::from_status(now);
  LG_TRY(auto stats, switch_world(pid, now.mapped_patches(), check, writes, options,
                                  fmt::format("the stop-the-world apply of patch '{}'", plan.patch.name), &grace));
  abort_load.dismiss();  // the jumps are live: never unload the patch from here on
  if (auto c = agent.call(protocol::CommitRequest{plan.patch.name}); !c)
    return Error(ErrorKind::agent,
                 fmt::format("patch '{}' is live in process {}, but the agent did not record it: {}", plan.patch.name,
                             pid, c.error().message),
                 0, "the new code runs; do not retry apply. `livegraft status` shows the agent's view");
  kill_step("after_commit");
  (void)reclaim_if_clear(agent, grace);  // every thread was seen at once by the switch

  return nlohmann::json{{"pid", pid},
                        {"patch", plan.patch.name},
                        {"object", plan.object_path},
                        {"build_id", plan.build_id},
                        {"agent_injected", injected},
                        {"functions", protocol::encode(loaded.patch)["funcs"]},  // a copy: the encoded patch is a temporary
                        {"transition", stats_json(stats)}};
}

}  // namespace

Result<nlohmann::json> revert_patch(pid_t pid, const std::string& patch_name, const OperationOptions& options) {
  return run_transition_command(pid, "revert", options,
                                [&](const OperationOptions& checked) { return revert_patch_steps(pid, patch_name, checked); });
}

namespace {

Result<nlohmann::json> revert_patch_steps(pid_t pid, const std::string& patch_name, const OperationOptions& options) {
  if (auto bad = check_name(patch_name))
    return make_error(ErrorKind::invalid_argument, "'{}' cannot be the name of a patch: {}", printable(patch_name), *bad);
  LG_TRY_VOID(check_process(pid));
  auto client = AgentClient::connect(pid, options.agent_timeout);
  if (!client) {
    if (client.error().kind == ErrorKind::not_found)
      return make_error(ErrorKind::not_found, "no patch '{}' in process {}: it has no livegraft agent", patch_name, pid);
    return std::move(client).error();
  }
  LG_TRY(auto status, client->status());
  // (not LG_TRY: g++ 12 warns maybe-uninitialized on a moved-out optional<json>)
  auto handled = handle_transition_in_progress(pid, *client, status, patch_name, Intent::revert, options);
  if (!handled) return std::move(handled).error();
  if (handled->has_value()) return nlohmann::json(std::move(handled->value()));
  if (!status.find_patch(patch_name)) {
    std::vector<std::string> names;
    for (const auto& p : status.patches) names.push_back(printable(p.name));
    return make_error(ErrorKind::not_found, "no patch '{}' in process {} (applied: {})", patch_name, pid,
                      names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", ")));
  }
  if (options.model == ConsistencyModel::per_thread) return revert_per_thread(pid, patch_name, *client, status, options);
  if (options.model == ConsistencyModel::immediate) return revert_immediate(pid, patch_name, *client, status, options);
  LG_TRY(auto prep, client->call(protocol::PrepareRevertRequest{patch_name}));
  ScopeGuard cancel([&] { (void)client->call(protocol::CancelRevertRequest{patch_name}); });
  kill_step("after_prepare");
  // The plan's check holds the patch's code and the jump of every stub that goes away (the
  // agent knows its stubs' size; docs/agent-protocol.md, prepare_revert).
  auto writes = writes_of(prep.plan);
  const auto& check = prep.plan.check;
  say(options, "switching back (stop-the-world)");
  GraceWatch grace = GraceWatch::from_status(status);
  LG_TRY(auto stats, switch_world(pid, status.mapped_patches(), check, writes, options,
                                  fmt::format("the stop-the-world revert of patch '{}'", patch_name), &grace));
  cancel.dismiss();  // the original code is live again: never cancel from here on
  if (auto f = client->call(protocol::FinishRevertRequest{patch_name}); !f)
    return Error(ErrorKind::agent,
                 fmt::format("patch '{}' no longer runs in process {}, but the agent could not unload it: {}",
                             patch_name, pid, f.error().message));
  kill_step("after_finish");
  (void)reclaim_if_clear(*client, grace);  // every thread was seen at once by the switch
  return nlohmann::json{{"pid", pid}, {"patch", patch_name}, {"transition", stats_json(stats)}};
}

// Adds to each patch the object it patches as mapped now: its path, " (deleted)" when the file
// was deleted or replaced on disk after the process mapped it (a package upgrade).
void annotate_objects(pid_t pid, nlohmann::json& status) {
  auto image = ProcessImage::read(pid);
  if (!image) return;
  for (auto& p : status["patches"]) {
    const auto& funcs = p.value("funcs", nlohmann::json::array());
    if (funcs.empty()) continue;
    if (const LoadedObject* o = image->object_containing(RemoteAddr(funcs[0].value("old_addr", uint64_t{0}))))
      p["object_path"] = o->display_path();
  }
}

}  // namespace

Result<nlohmann::json> patch_status(pid_t pid, std::chrono::milliseconds agent_timeout) {
  return run_steps(pid, "status", [&] { return patch_status_steps(pid, agent_timeout); });
}

Result<nlohmann::json> force_transition(pid_t pid, const OperationOptions& options) {
  LG_TRY_VOID(check_process(pid));
  auto client = AgentClient::connect(pid, options.agent_timeout);
  if (!client) {
    if (client.error().kind == ErrorKind::not_found)
      return make_error(ErrorKind::not_found, "process {} has no livegraft agent: no transition to force", pid);
    return std::move(client).error();
  }
  LG_TRY(auto status, client->status());
  return force_per_thread(pid, *client, status, options);
}

Result<nlohmann::json> inject_agent(pid_t pid, const OperationOptions& options) {
  return run_steps(pid, "inject", [&] { return inject_agent_steps(pid, options); });
}

namespace {

Result<nlohmann::json> patch_status_steps(pid_t pid, std::chrono::milliseconds agent_timeout) {
  LG_TRY_VOID(check_process(pid));
  auto client = AgentClient::connect(pid, agent_timeout);
  if (!client) {
    if (client.error().kind == ErrorKind::not_found)
      return nlohmann::json{{"pid", pid},         {"agent", false},
                            {"disabled", nullptr}, {"transition", nullptr},
                            {"patches", nlohmann::json::array()}, {"functions", nlohmann::json::array()}};
    return std::move(client).error();
  }
  LG_TRY(auto typed, client->status());
  nlohmann::json status = protocol::encode(typed);
  status.erase("ok");
  status.erase("v");
  // The transition in progress (null when none); a per-thread one gets its threads surveyed.
  if (auto survey = survey_transition(pid, typed, status); !survey) status["transition"]["survey_error"] = survey.error().message;
  status["pid"] = pid;
  status["agent"] = true;
  annotate_objects(pid, status);
  return status;
}

Result<nlohmann::json> inject_agent_steps(pid_t pid, const OperationOptions& options) {
  LG_TRY_VOID(check_process(pid));
  LG_TRY(auto conn, connect_or_inject(pid, options));
  LG_TRY(auto hello, conn.client.hello());
  nlohmann::json out{{"pid", pid}, {"injected", conn.injected}, {"protocol", hello.protocol}};
  if (conn.injected)
    out["stops"] = {{"max_stopped_threads", conn.inject_stops.max_stopped}, {"all_stopped_moments", conn.inject_stops.all_stopped}};
  return out;
}

}  // namespace

}  // namespace lg
