#include "controller/operations.h"

#include <signal.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <optional>

#include "common/proc_maps.h"
#include "common/scope_guard.h"
#include "controller/agent_client.h"
#include "controller/apply_plan.h"
#include "process/process.h"
#include "unwind/unwinder.h"

namespace lg {

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

void say(const OperationOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

// Checked before anything else so that every later error can assume the process exists.
Result<void> check_process(pid_t pid) {
  if (pid <= 0) return make_error(ErrorKind::invalid_argument, "{} is not a process id", pid);
  if (::kill(pid, 0) != 0 && errno == ESRCH) return make_error(ErrorKind::not_found, "no process with pid {}", pid);
  auto status = read_text_file(fmt::format("/proc/{}/status", pid));
  if (!status) return make_error(ErrorKind::not_found, "no process with pid {}", pid);
  if (status->find("\nState:\tZ") != std::string::npos || status->find("\nState:\tX") != std::string::npos)
    return make_error(ErrorKind::not_found, "process {} has exited (it is a zombie)", pid);
  return {};
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

Result<std::unique_ptr<Unwinder>> make_unwinder(pid_t pid, const nlohmann::json& patches) {
  LG_TRY(auto unwinder, Unwinder::create(pid));
  for (const auto& p : patches) {
    RemoteAddr eh(0);
    uint64_t eh_size = 0;
    if (p.contains("eh_frame") && p["eh_frame"].is_object()) {
      eh = RemoteAddr(p["eh_frame"].value("addr", uint64_t{0}));
      eh_size = p["eh_frame"].value("size", uint64_t{0});
    }
    LG_TRY(auto code, ranges_from_json(p.value("code", nlohmann::json::array())));
    for (const auto& r : code) unwinder->add_code_region(r, eh, eh_size, p.value("name", "patch"));
  }
  return unwinder;
}

// Seizes the process, checks stacks and performs [writes] under stop-the-world.
Result<TransitionStats> switch_world(pid_t pid, const nlohmann::json& patches, const std::vector<RemoteRange>& check,
                                     const std::vector<MemoryWrite>& writes, const OperationOptions& options) {
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, make_unwinder(pid, patches));
  StopTheWorld stw(*process, *unwinder);
  TransitionOptions topts;
  topts.timeout = options.timeout;
  topts.on_retry = [&](int attempt, const std::vector<Blocker>& blockers) {
    if (attempt == 1 || attempt % 10 == 0)
      say(options, fmt::format("waiting: {} thread(s) have an affected function on the stack (attempt {})",
                               blockers.size(), attempt));
  };
  auto stats = stw.run(check, writes, topts);
  if (!stats && options.blockers) *options.blockers = stw.blockers();
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
};

Result<AgentConnection> connect_or_inject(pid_t pid, const OperationOptions& options) {
  auto client = AgentClient::connect(pid);
  if (client) return AgentConnection{std::move(*client), false};
  if (client.error().kind != ErrorKind::not_found) return std::move(client).error();

  LG_TRY(auto agent_path, find_agent_library(options.agent_path));
  say(options, fmt::format("injecting {} into process {}", agent_path, pid));
  {
    LG_TRY(auto process, Process::seize(pid));
    LG_TRY(auto unwinder, Unwinder::create(pid));
    LG_TRY_VOID(inject_library(
        *process, agent_path,
        [&](pid_t, const Registers& regs) { return safe_for_dlopen(*unwinder, regs); }, options.timeout));
  }  // detached here: the agent's control thread must run freely from now on
  LG_TRY(auto connected, AgentClient::connect_with_retry(pid, milliseconds(5000)));
  return AgentConnection{std::move(connected), true};
}

const nlohmann::json* find_patch(const nlohmann::json& status, const std::string& name) {
  for (const auto& p : status["patches"])
    if (p.value("name", "") == name) return &p;
  return nullptr;
}

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

Result<nlohmann::json> apply_patch(pid_t pid, const std::string& patch_path, const OperationOptions& options) {
  LG_TRY_VOID(check_process(pid));
  std::error_code ec;
  auto abs_path = fs::absolute(patch_path, ec).lexically_normal().string();
  if (ec || ::access(abs_path.c_str(), R_OK) != 0)
    return make_error(ErrorKind::not_found, "cannot read patch file {}", patch_path);

  // What is already redirected (validation must accept our own jumps in the code).
  std::vector<RemoteAddr> redirected;
  std::optional<AgentClient> existing;
  nlohmann::json status;
  if (auto c = AgentClient::connect(pid)) {
    existing.emplace(std::move(*c));
    LG_TRY(status, existing->request({{"op", "status"}}));
    for (const auto& f : status["functions"]) redirected.emplace_back(f.value("jump_addr", uint64_t{0}));
  } else if (c.error().kind != ErrorKind::not_found) {
    return std::move(c).error();
  }

  // 1. Validate everything before touching the process.
  say(options, fmt::format("checking {} against process {}", patch_path, pid));
  LG_TRY(auto plan, plan_apply(pid, abs_path, redirected));
  if (existing && find_patch(status, plan.patch.name))
    return make_error(ErrorKind::invalid_argument, "patch '{}' is already applied to process {}", plan.patch.name, pid);

  // 2. The agent (injected if absent) loads the patch next to its target.
  bool injected = false;
  if (!existing) {
    LG_TRY(auto conn, connect_or_inject(pid, options));
    existing.emplace(std::move(conn.client));
    injected = conn.injected;
  }
  AgentClient& agent = *existing;
  say(options, fmt::format("loading patch '{}' into process {}", plan.patch.name, pid));
  LG_TRY(auto loaded, agent.request(plan.load_request(abs_path), plan.patch_fd.get()));
  ScopeGuard abort_load([&] { (void)agent.request({{"op", "abort"}, {"name", plan.patch.name}}); });

  LG_TRY(auto writes, writes_from_json(loaded["writes"]));
  LG_TRY(auto check, ranges_from_json(loaded.value("check", nlohmann::json::array())));
  auto originals = plan.original_ranges();
  check.insert(check.end(), originals.begin(), originals.end());
  LG_TRY(auto now, agent.request({{"op", "status"}}));

  // 3. Switch under stop-the-world.
  say(options, "switching (stop-the-world)");
  LG_TRY(auto stats, switch_world(pid, now["patches"], check, writes, options));
  abort_load.dismiss();  // the jumps are live: never unload the patch from here on
  if (auto c = agent.request({{"op", "commit"}, {"name", plan.patch.name}}); !c)
    return Error(ErrorKind::agent,
                 fmt::format("patch '{}' is live in process {}, but the agent did not record it: {}", plan.patch.name,
                             pid, c.error().message),
                 0, "the new code runs; do not retry apply. `livegraft status` shows the agent's view");

  nlohmann::json funcs = nlohmann::json::array();
  for (const auto& f : loaded["patch"].value("funcs", nlohmann::json::array())) funcs.push_back(f);
  return nlohmann::json{{"pid", pid},
                        {"patch", plan.patch.name},
                        {"object", plan.object_path},
                        {"build_id", plan.build_id},
                        {"agent_injected", injected},
                        {"functions", funcs},
                        {"transition", stats_json(stats)}};
}

Result<nlohmann::json> revert_patch(pid_t pid, const std::string& patch_name, const OperationOptions& options) {
  LG_TRY_VOID(check_process(pid));
  auto client = AgentClient::connect(pid);
  if (!client) {
    if (client.error().kind == ErrorKind::not_found)
      return make_error(ErrorKind::not_found, "no patch '{}' in process {}: it has no livegraft agent", patch_name, pid);
    return std::move(client).error();
  }
  LG_TRY(auto status, client->request({{"op", "status"}}));
  const nlohmann::json* patch = find_patch(status, patch_name);
  if (!patch) {
    std::vector<std::string> names;
    for (const auto& p : status["patches"]) names.push_back(p.value("name", "?"));
    return make_error(ErrorKind::not_found, "no patch '{}' in process {} (applied: {})", patch_name, pid,
                      names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", ")));
  }
  LG_TRY(auto prep, client->request({{"op", "prepare_revert"}, {"name", patch_name}}));
  ScopeGuard cancel([&] { (void)client->request({{"op", "cancel_revert"}, {"name", patch_name}}); });
  LG_TRY(auto writes, writes_from_json(prep["writes"]));
  LG_TRY(auto check, ranges_from_json(prep.value("check", nlohmann::json::array())));
  // A thread about to jump through a stub that goes away must not be left there either.
  for (const auto& f : status["functions"]) {
    const auto& stack = f.value("stack", nlohmann::json::array());
    if (std::find(stack.begin(), stack.end(), patch_name) != stack.end()) {
      uint64_t stub = f.value("stub", uint64_t{0});
      check.push_back({RemoteAddr(stub), RemoteAddr(stub + 6)});
    }
  }
  say(options, "switching back (stop-the-world)");
  LG_TRY(auto stats, switch_world(pid, status["patches"], check, writes, options));
  cancel.dismiss();  // the original code is live again: never cancel from here on
  if (auto f = client->request({{"op", "finish_revert"}, {"name", patch_name}}); !f)
    return Error(ErrorKind::agent,
                 fmt::format("patch '{}' no longer runs in process {}, but the agent could not unload it: {}",
                             patch_name, pid, f.error().message));
  return nlohmann::json{{"pid", pid}, {"patch", patch_name}, {"transition", stats_json(stats)}};
}

Result<nlohmann::json> patch_status(pid_t pid) {
  LG_TRY_VOID(check_process(pid));
  auto client = AgentClient::connect(pid);
  if (!client) {
    if (client.error().kind == ErrorKind::not_found)
      return nlohmann::json{{"pid", pid}, {"agent", false}, {"disabled", nullptr}, {"patches", nlohmann::json::array()},
                            {"functions", nlohmann::json::array()}};
    return std::move(client).error();
  }
  LG_TRY(auto status, client->request({{"op", "status"}}));
  status.erase("ok");
  status["pid"] = pid;
  status["agent"] = true;
  return status;
}

Result<nlohmann::json> inject_agent(pid_t pid, const OperationOptions& options) {
  LG_TRY_VOID(check_process(pid));
  LG_TRY(auto conn, connect_or_inject(pid, options));
  LG_TRY(auto hello, conn.client.request({{"op", "hello"}}));
  return nlohmann::json{{"pid", pid}, {"injected", conn.injected}, {"protocol", hello.value("protocol", 0)}};
}

}  // namespace lg
