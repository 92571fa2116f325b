#include "agent/protocol.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <new>

#include "agent/text_poke.h"
#include "agent/universe.h"

namespace lg::agent {

using nlohmann::json;

namespace {

std::string prot_string(int prot) {
  std::string s = "---";
  if (prot & PROT_READ) s[0] = 'r';
  if (prot & PROT_WRITE) s[1] = 'w';
  if (prot & PROT_EXEC) s[2] = 'x';
  return s;
}

protocol::Plan plan_of(const Plan& plan) {
  protocol::Plan out;
  for (const auto& w : plan.writes) out.writes.push_back({w.addr, w.old_bytes, w.new_bytes});
  out.check = plan.check;
  if (plan.per_thread) out.per_thread = protocol::PerThreadPlan{plan.transition_id, plan.marker_offset, plan.interiors, plan.check_target};
  return out;
}

protocol::Phase phase_of(PtPhase p) {
  switch (p) {
    case PtPhase::prepared: return protocol::Phase::prepared;
    case PtPhase::poking: return protocol::Phase::poking;
    case PtPhase::switching: return protocol::Phase::switching;
  }
  return protocol::Phase::prepared;
}

std::optional<protocol::TransitionInfo> transition_of(const Registry& reg) {
  const auto& t = reg.transition();
  if (!t) return std::nullopt;
  protocol::TransitionInfo out;
  out.patch = t->patch;
  out.kind = t->kind == TransitionKind::load ? protocol::TransitionKind::apply : protocol::TransitionKind::revert;
  out.model = t->model;
  if (t->model != Model::stop_the_world) {  // per-thread or immediate
    const PerThreadState& st = t->pt;
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now_ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
    out.per_thread = protocol::PerThreadTransition{st.id,           st.reversed,         st.forced,
                                                   phase_of(st.phase), marker_tp_offset(), now_ms - st.started_ms,
                                                   st.initial_ranges, st.target_ranges,  st.interiors};
  }
  return out;
}

protocol::PatchInfo patch_info(const Patch& p) {
  protocol::PatchInfo out;
  out.name = p.name;
  out.path = p.path;
  out.state = p.state == PatchState::loaded ? protocol::PatchState::loaded : protocol::PatchState::enabled;
  out.model = p.model;
  out.object = p.object_name;
  for (const auto& r : p.object->regions()) out.regions.push_back({r.name, r.addr, r.size, prot_string(r.prot)});
  for (const auto& c : p.object->code_ranges()) out.code.push_back(c);
  for (const auto& f : p.funcs) {
    out.funcs.push_back({f.old_name, f.old_sympos, f.old_addr, f.new_addr, f.new_size, std::nullopt});
    if (f.entry && f.entry != f.new_addr) out.funcs.back().entry_thunk = f.entry;
  }
  if (auto e = p.object->eh_frame()) out.eh_frame = protocol::EhFrame{e->lo.value, e->size(), p.object->eh_frame_registered()};
  return out;
}

json result_json(const Result<void>& r) { return r ? protocol::encode(protocol::OkResponse{}) : Agent::error_response(r.error()); }

int64_t monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

// Marks the registry as being changed by [what] for as long as it lives (taken under mu_):
// first publishes a snapshot of hello/status as they are now, complete, then sets busy_. A
// fork() at any instant therefore leaves the child either busy_ null (the registry consistent)
// or busy_ set with the snapshot of the state before the change. The snapshot is replaced by
// pointer, so a copy made in the middle of building the next one still has the previous one
// whole (the half-built one is only leaked, in the child).
class Agent::Busy {
 public:
  Busy(Agent& agent, const char* what) noexcept : agent_(agent) {
    const Snapshot* next = nullptr;
    try {
      next = new Snapshot{protocol::encode(agent.hello()), protocol::encode(agent.status())};
    } catch (...) {
      next = nullptr;  // no snapshot rather than a stale one
    }
    delete agent.snapshot_.exchange(next, std::memory_order_acq_rel);
    agent.busy_since_ms_ = monotonic_ms();
    agent.busy_.store(what, std::memory_order_release);
  }
  ~Busy() { agent_.busy_.store(nullptr, std::memory_order_release); }
  Busy(const Busy&) = delete;
  Busy& operator=(const Busy&) = delete;

 private:
  Agent& agent_;
};

Result<LoadRequest> decode_load_request(const json& request) noexcept {
  auto r = protocol::decode_request(request);
  if (!r) return std::move(r).error();
  if (auto* load = std::get_if<LoadRequest>(&*r)) return std::move(*load);
  return make_error(ErrorKind::invalid_argument, "malformed request: not a load");
}

json Agent::error_response(const Error& e) {
  try {
    return protocol::encode(protocol::ErrorResponse{e.kind, e.describe()});
  } catch (...) {
    return json();
  }
}

void Agent::disable(std::string reason) {
  std::lock_guard lock(mu_);
  if (forked_mid_request_) return;  // its own reason stays; the registry is not touched
  Busy busy(*this, "disable");
  registry_.disable(std::move(reason));
}

bool Agent::lock_for_fork() noexcept {
  // Bounded by the clock, not by a count of 1 ms sleeps (each may oversleep on a loaded machine).
  const int64_t deadline = monotonic_ms() + kForkWaitMs;
  for (;;) {
    if (mu_.try_lock()) return true;
    if (monotonic_ms() >= deadline) return false;
    timespec ms{0, 1000000};
    ::nanosleep(&ms, nullptr);
  }
}

bool Agent::recover_in_forked_child() noexcept {
  if (mu_.try_lock()) {  // the request ended between lock_for_fork() giving up and the fork
    mu_.unlock();
    return true;
  }
  // 1. The holder is a thread of the parent; no thread of ours will ever unlock it. A fresh
  //    mutex in its place (std::mutex is a plain pthread mutex with a constexpr constructor and
  //    nothing to destroy) is what glibc itself does with its own locks in a forked child.
  new (&mu_) std::mutex();
  const char* what = busy_.load(std::memory_order_acquire);
  if (!what) return true;  // hello/status, or before its first change, or after its last
  try {
    forked_mid_request_ = fmt::format(
        "this process was forked from process {} while that process's agent was in the middle of a '{}' request "
        "(running for {} ms; fork() waits at most {} ms for one): this copy of the patch state may be half-changed, so this "
        "agent refuses every change; hello and status show the state from before that request "
        "(the code may differ from it if the request was writing code); restart this process to patch it",
        ::getppid(), what, monotonic_ms() - busy_since_ms_, kForkWaitMs);
  } catch (...) {
    forked_mid_request_ = std::string("forked in the middle of a request");
  }
  busy_.store(nullptr, std::memory_order_release);
  return false;
}

json Agent::answer_forked_mid_request(const protocol::Request& request) const {
  const std::string& why = *forked_mid_request_;
  const Snapshot* before = snapshot();
  auto op = protocol::op_of(request);
  if (op == protocol::Op::hello) {
    json h = before ? before->hello : protocol::encode(protocol::HelloResponse{});
    h["pid"] = ::getpid();
    h["disabled"] = why;
    return h;
  }
  if (op == protocol::Op::status && before) {
    json s = before->status;
    s["disabled"] = why;
    return s;
  }
  return error_response(Error(ErrorKind::agent, fmt::format("the agent is disabled: {}", why)));
}

std::string Agent::handle_line(std::string_view line, int fd) noexcept {
  try {
    json req = json::parse(line, nullptr, false);
    if (req.is_discarded())
      return error_response(Error(ErrorKind::invalid_argument, "request is not valid JSON")).dump();
    return handle(req, fd).dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (...) {
    // Only allocation can fail here; an answer may not be possible either.
    return R"({"ok":false,"v":2,"error":"the agent could not build its response","kind":"agent"})";
  }
}

json Agent::handle(const json& request, int fd) noexcept {
  try {
    auto req = protocol::decode_request(request);
    if (!req) return error_response(req.error());
    return handle(std::move(*req), fd);
  } catch (...) {
    return json{{"ok", false}, {"v", protocol::kVersion}, {"error", "the agent failed to handle the request"}, {"kind", "agent"}};
  }
}

json Agent::handle(protocol::Request request, int fd) noexcept {
  try {
    std::lock_guard lock(mu_);
    if (forked_mid_request_) return answer_forked_mid_request(request);
    auto op = protocol::op_of(request);
    std::optional<Busy> busy;
    if (op != protocol::Op::hello && op != protocol::Op::status) busy.emplace(*this, protocol::to_string(op));
    try {
      return dispatch(request, fd);
    } catch (const std::exception& e) {
      registry_.disable(fmt::format("internal error: {}", e.what()));
      return error_response(Error(ErrorKind::agent, fmt::format("the agent is disabled: internal error: {}", e.what())));
    } catch (...) {
      registry_.disable("internal error: unknown exception");
      return error_response(Error(ErrorKind::agent, "the agent is disabled: internal error: unknown exception"));
    }
  } catch (...) {
    return json{{"ok", false}, {"v", protocol::kVersion}, {"error", "the agent failed to handle the request"}, {"kind", "agent"}};
  }
}

protocol::StatusResponse Agent::status() const {
  protocol::StatusResponse out;
  for (const auto& p : registry_.patches()) out.patches.push_back(patch_info(*p));
  for (const auto& p : registry_.kept()) out.kept.push_back(patch_info(*p));
  for (const auto& [addr, f] : registry_.functions())
    out.functions.push_back({f.old_addr, f.stub.code, f.stub.slot, f.jump_addr, f.orig_bytes, f.stack});
  out.disabled = registry_.disabled();
  out.transition = transition_of(registry_);
  out.trap_redirects = trap_redirects();
  const ArenaStats a = registry_.arena_stats();
  out.arena = protocol::ArenaInfo{a.mapped, a.in_use, a.retired, a.free, a.retired_stubs, a.retired_upto, a.reclaimed_upto, a.retired_ranges};
  return out;
}

protocol::HelloResponse Agent::hello() const {
  protocol::HelloResponse out;
  out.pid = ::getpid();
  out.disabled = registry_.disabled();
  if (registry_.transition()) out.transition = registry_.transition()->patch;
  return out;
}

json Agent::dispatch(protocol::Request& request, int fd) {
  using namespace protocol;
  return std::visit(
      [&](auto& req) -> json {
        using T = std::decay_t<decltype(req)>;
        if constexpr (std::is_same_v<T, HelloRequest>) {
          return encode(hello());
        } else if constexpr (std::is_same_v<T, StatusRequest>) {
          return encode(status());
        } else if constexpr (std::is_same_v<T, LoadRequest>) {
          req.fd = fd;
          std::string name;
          auto plan = registry_.load(req, &name);
          if (!plan) return error_response(plan.error());
          return encode(LoadResponse{patch_info(*registry_.find(name)), plan_of(*plan)});
        } else if constexpr (std::is_same_v<T, PrepareRevertRequest>) {
          auto plan = registry_.prepare_revert(req.name, req.model);
          if (!plan) return error_response(plan.error());
          return encode(PrepareRevertResponse{plan_of(*plan)});
        } else if constexpr (std::is_same_v<T, CommitRequest>) {
          return result_json(registry_.commit(req.name));
        } else if constexpr (std::is_same_v<T, AbortRequest>) {
          return result_json(registry_.abort(req.name));
        } else if constexpr (std::is_same_v<T, FinishRevertRequest>) {
          return result_json(registry_.finish_revert(req.name));
        } else if constexpr (std::is_same_v<T, CancelRevertRequest>) {
          return result_json(registry_.cancel_revert(req.name));
        } else if constexpr (std::is_same_v<T, PokeBeginRequest>) {
          return result_json(registry_.poke_begin(req.name));
        } else if constexpr (std::is_same_v<T, PokeFinishRequest>) {
          return result_json(registry_.poke_finish(req.name));
        } else if constexpr (std::is_same_v<T, CompleteRequest>) {
          return result_json(registry_.complete(req.name));
        } else if constexpr (std::is_same_v<T, ReverseRequest>) {
          return result_json(registry_.reverse(req.name));
        } else if constexpr (std::is_same_v<T, ForceRequest>) {
          return result_json(registry_.mark_forced(req.name));
        } else if constexpr (std::is_same_v<T, ReclaimRequest>) {
          auto freed = registry_.reclaim(req.upto);
          if (!freed) return error_response(freed.error());
          return encode(ReclaimResponse{*freed, registry_.arena_stats().reclaimed_upto});
        } else {
          static_assert(std::is_same_v<T, SwitchEarlyRequest>, "every request type is dispatched");
          return result_json(registry_.switch_early(req.name));
        }
      },
      request);
}

void Agent::connection_closed() noexcept {
  try {
    std::lock_guard<std::mutex> lock(mu_);
    if (forked_mid_request_) return;
    Busy busy(*this, "settle an abandoned transition");
    (void)registry_.resolve_abandoned_transition();
  } catch (...) {
    registry_.disable("internal error while settling an abandoned transition");
  }
}

}  // namespace lg::agent
