// The agent's side of the per-thread consistency model (docs/consistency.md): dispatch thunks,
// original continuations, entry jumps written with the text_poke protocol, slot retargeting,
// completion, reversal and abort. The controller decides *which thread* is switched (it
// stops one thread at a time and writes its marker); the agent makes every code and slot
// change itself, while the process runs.
#include <time.h>

#include <algorithm>
#include <cstring>

#include "agent/registry.h"
#include "agent/safepoint.h"
#include "agent/text_poke.h"
#include "agent/universe.h"
#include "common/hex.h"
#include "common/scope_guard.h"
#include "x86/encode.h"

namespace lg::agent {

const char* to_string(PtPhase p) {
  switch (p) {
    case PtPhase::prepared: return "prepared";
    case PtPhase::poking: return "poking";
    case PtPhase::switching: return "switching";
  }
  return "?";
}

namespace {

int64_t monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

RemoteRange near_of(uint64_t a) { return {RemoteAddr(a), RemoteAddr(a + x86::kJmpRel32Size)}; }
RemoteRange range_of(uint64_t a, uint64_t size) { return {RemoteAddr(a), RemoteAddr(a + std::max<uint64_t>(size, 1))}; }

}  // namespace

Result<Patch*> Registry::find_pt(std::string_view name, PtPhase phase) {
  LG_TRY_VOID(check_usable());
  if (!transition_ || transition_->patch != name || transition_->model != Model::per_thread) {
    if (!find(name)) return make_error(ErrorKind::not_found, "no patch named '{}' is loaded", name);
    return make_error(ErrorKind::invalid_argument, "no per-thread transition of patch '{}' is in progress", name);
  }
  if (transition_->pt.phase != phase)
    return make_error(ErrorKind::invalid_argument, "the transition of patch '{}' is {}, not {}", name, to_string(transition_->pt.phase),
                      to_string(phase));
  return const_cast<Patch*>(find(name));
}

Plan Registry::pt_plan() const {
  const PerThreadState& st = transition_->pt;
  Plan plan;
  plan.per_thread = true;
  plan.transition_id = st.id;
  plan.marker_offset = marker_tp_offset();
  plan.check = st.initial_ranges;
  plan.check_target = st.target_ranges;
  plan.interiors = st.interiors;
  return plan;
}

// A function redirected for the first time: its bytes checked against the request, its
// relocated entry (continuation) placed next to it, a stub allocated, the entry recorded (and
// owned by [patch] until committed). Shared by the per-thread and the generation plans.
Result<const FuncEntry*> Registry::redirect_with_continuation(const FuncRequest& f, Patch* patch) {
  std::array<uint8_t, 5> now{};
  LG_TRY_VOID(safe_read(f.jump_addr, now));
  if (now != f.orig_bytes)
    return make_error(ErrorKind::mismatch, "function '{}': the code at {:#x} is {}, the request expects {}", f.old_name, f.jump_addr,
                      to_hex(now), to_hex(f.orig_bytes));
  if (f.continuation->displaced < x86::kJmpRel32Size || f.continuation->resume != f.jump_addr + f.continuation->displaced)
    return make_error(ErrorKind::invalid_argument, "function '{}': malformed continuation", f.old_name);
  LG_TRY(uint64_t cont, arena_.reserve(near_of(f.jump_addr), f.continuation->bytes.size()));
  auto placed = x86::place_continuation(*f.continuation, cont);
  if (!placed) return make_error(ErrorKind::unsupported, "function '{}': its relocated entry does not reach from {:#x}", f.old_name, cont);
  LG_TRY_VOID(write_code(cont, *placed));
  LG_TRY(auto stub, stubs_.allocate(f.jump_addr));
  FuncEntry e{f.old_addr, f.jump_addr, f.orig_bytes, stub, {}, cont, placed->size(), f.old_ranges};
  if (e.old_ranges.empty()) e.old_ranges.push_back(range_of(f.old_addr, f.jump_addr - f.old_addr + f.continuation->displaced));
  funcs_.emplace(f.old_addr, e);
  patch->created_funcs.push_back(f.old_addr);
  return &funcs_.at(f.old_addr);
}

Result<Plan> Registry::load_per_thread(const LoadRequest& req, std::unique_ptr<LoadedObject> obj, std::unique_ptr<Patch> patch,
                                       std::string* loaded_name) {
  if (next_transition_id_ + 1 >= static_cast<uint64_t>(INT32_MAX))
    return make_error(ErrorKind::unsupported, "this agent ran out of transition ids");
  PerThreadState st;
  st.id = ++next_transition_id_;
  st.started_ms = monotonic_ms();
  const int32_t off = marker_tp_offset();

  // Everything below is undone if a step fails: created entries erased (nothing jumps to
  // their stubs yet), retargeted slots stored back.
  std::vector<std::pair<Stub, uint64_t>> retargeted;
  const CodeArena::Mark arena_before = arena_.mark();
  auto rollback = ScopeGuard([&] {
    for (auto& [stub, old] : retargeted) stub.write_slot(old);
    if (retargeted.empty()) arena_.rollback(arena_before);  // nothing could reach the pieces
    for (uint64_t a : patch->created_funcs) {
      stubs_.release(funcs_[a].stub);
      funcs_.erase(a);
    }
  });
  std::vector<std::pair<Stub, uint64_t>> to_retarget;
  for (size_t i = 0; i < req.funcs.size(); ++i) {
    const auto& f = req.funcs[i];
    const auto& pf = patch->funcs[i];
    PtFunc ptf;
    ptf.old_addr = f.old_addr;
    ptf.target = pf.entry ? pf.entry : pf.new_addr;  // an entry thunk (registry.cpp) comes first
    st.target_ranges.push_back(range_of(pf.new_addr, pf.new_size));
    if (ptf.target != pf.new_addr)  // a thread may be inside the thunk, before or after the call
      for (const auto& r : obj->code_ranges())
        if (r.contains(RemoteAddr(ptf.target))) st.target_ranges.push_back(r);
    if (auto it = funcs_.find(f.old_addr); it != funcs_.end()) {
      FuncEntry& e = it->second;
      if (e.jump_addr != f.jump_addr)
        return make_error(ErrorKind::mismatch, "function '{}' is redirected at {:#x}, the request says {:#x}", f.old_name, e.jump_addr, f.jump_addr);
      ptf.initial = e.stub.read_slot();
      if (e.stack.empty()) {  // redirected, no patch: the original runs through its continuation
        for (const auto& r : e.old_ranges) st.initial_ranges.push_back(r);
        if (e.continuation) st.initial_ranges.push_back(range_of(e.continuation, e.continuation_size));
      } else {
        st.initial_ranges.push_back(range_of(ptf.initial, new_size_of(e.stack.back(), f.old_addr)));
        // The current implementation may be entered through an entry thunk: all its patch's code.
        if (const Patch* cur = find(e.stack.back()))
          for (const auto& r : cur->object->code_ranges()) st.initial_ranges.push_back(r);
      }
      LG_TRY(ptf.thunk, arena_.reserve(near_of(e.jump_addr), x86::kDispatchThunkSize));
      to_retarget.push_back({e.stub, ptf.thunk});
    } else {
      if (!f.continuation)
        return make_error(ErrorKind::invalid_argument, "function '{}': a per-thread load needs its relocated entry ('continuation')", f.old_name);
      LG_TRY(const FuncEntry* created, redirect_with_continuation(f, patch.get()));
      const FuncEntry& e = *created;
      const uint64_t cont = e.continuation;
      const Stub stub = e.stub;
      ptf.initial = cont;
      ptf.entry_changes = true;
      for (const auto& r : e.old_ranges) st.initial_ranges.push_back(r);
      st.initial_ranges.push_back(range_of(cont, e.continuation_size));
      st.interiors.push_back({RemoteAddr(f.jump_addr + 1), RemoteAddr(f.jump_addr + x86::kJmpRel32Size)});
      LG_TRY(ptf.thunk, arena_.reserve(near_of(f.jump_addr), x86::kDispatchThunkSize));
      to_retarget.push_back({stub, ptf.thunk});
    }
    auto thunk = x86::encode_dispatch_thunk(ptf.thunk, off, st.id, ptf.target, ptf.initial);
    if (!thunk) return make_error(ErrorKind::internal, "dispatch thunk at {:#x} does not reach its targets", ptf.thunk);
    LG_TRY_VOID(write_code(ptf.thunk, *thunk));
    st.initial_ranges.push_back(range_of(ptf.thunk, x86::kDispatchThunkSize));
    st.target_ranges.push_back(range_of(ptf.thunk, x86::kDispatchThunkSize));
    st.funcs.push_back(ptf);
  }
  // The thunks are new code: serialize every core before any thread can reach them. Then
  // the slots point at them: until a thread's marker says otherwise, a thunk sends it where the
  // slot sent it before.
  LG_TRY_VOID(sync_cores());
  for (auto& [stub, thunk] : to_retarget) {
    retargeted.push_back({stub, stub.read_slot()});
    stub.write_slot(thunk);
  }

  obj->run_constructors();
  patch->object = std::move(obj);
  rollback.dismiss();
  if (loaded_name) *loaded_name = patch->name;
  transition_ = Transition{TransitionKind::load, patch->name, {}, Model::per_thread, std::move(st)};
  patches_.push_back(std::move(patch));
  return pt_plan();
}

Result<Plan> Registry::prepare_revert_per_thread(Patch* p) {
  PerThreadState st;
  st.id = ++next_transition_id_;
  st.started_ms = monotonic_ms();
  const int32_t off = marker_tp_offset();
  for (const auto& r : p->object->code_ranges()) st.initial_ranges.push_back(r);
  std::vector<std::pair<Stub, uint64_t>> to_retarget;
  const CodeArena::Mark arena_before = arena_.mark();
  auto unused = ScopeGuard([&] { arena_.rollback(arena_before); });  // a step failed before any slot store
  for (const auto& f : p->funcs) {
    const FuncEntry& e = funcs_.at(f.old_addr);
    if (e.stack.back() != p->name) continue;  // not current: leaving the stack changes no code
    PtFunc ptf;
    ptf.old_addr = f.old_addr;
    ptf.initial = e.stub.read_slot();
    if (e.stack.size() > 1) {
      const std::string& prev = e.stack[e.stack.size() - 2];
      ptf.target = new_addr_of(prev, f.old_addr);
      st.target_ranges.push_back(range_of(ptf.target, new_size_of(prev, f.old_addr)));
      if (const Patch* pp = find(prev))  // its entry thunk, if any, is in its code too
        for (const auto& r : pp->object->code_ranges()) st.target_ranges.push_back(r);
    } else {
      if (!e.continuation)
        return make_error(ErrorKind::unsupported,
                          "function '{}' was redirected by a stop-the-world apply and has no relocated entry; revert with --model stop-the-world",
                          f.old_name);
      ptf.target = e.continuation;
      ptf.entry_changes = true;
      for (const auto& r : e.old_ranges) st.target_ranges.push_back(r);
      st.target_ranges.push_back(range_of(e.continuation, e.continuation_size));
    }
    LG_TRY(ptf.thunk, arena_.reserve(near_of(e.jump_addr), x86::kDispatchThunkSize));
    auto thunk = x86::encode_dispatch_thunk(ptf.thunk, off, st.id, ptf.target, ptf.initial);
    if (!thunk) return make_error(ErrorKind::internal, "dispatch thunk at {:#x} does not reach its targets", ptf.thunk);
    LG_TRY_VOID(write_code(ptf.thunk, *thunk));
    st.initial_ranges.push_back(range_of(ptf.thunk, x86::kDispatchThunkSize));
    st.target_ranges.push_back(range_of(ptf.thunk, x86::kDispatchThunkSize));
    to_retarget.push_back({e.stub, ptf.thunk});
    st.funcs.push_back(ptf);
  }
  LG_TRY_VOID(sync_cores());
  unused.dismiss();
  for (auto& [stub, thunk] : to_retarget) stub.write_slot(thunk);
  // No entry changes now: dispatch is live at once, and threads born from here on start in
  // the target universe.
  st.phase = PtPhase::switching;
  if (auto r = set_newborn_marker(st.id); !r) {
    for (size_t i = 0; i < to_retarget.size(); ++i) {
      to_retarget[i].first.write_slot(st.funcs[i].initial);
      retire_code(st.funcs[i].thunk);  // it was live for a moment
    }
    return r.error();
  }
  set_safepoint_transition(st.id, false);
  transition_ = Transition{TransitionKind::revert, p->name, {}, Model::per_thread, std::move(st)};
  return pt_plan();
}

Result<void> Registry::poke_begin(std::string_view name) {
  LG_TRY_VOID(find_pt(name, PtPhase::prepared));
  PerThreadState& st = transition_->pt;
  std::vector<const FuncEntry*> done;
  for (const auto& f : st.funcs) {
    if (!f.entry_changes) continue;
    const FuncEntry& e = funcs_.at(f.old_addr);
    if (auto r = lg::agent::poke_begin(e.jump_addr, e.orig_bytes[0], e.stub.code); !r) {
      for (const FuncEntry* d : done) (void)poke_undo(d->jump_addr, d->orig_bytes[0]);
      return r;
    }
    done.push_back(&e);
  }
  st.phase = PtPhase::poking;
  return ok_result();
}

Result<void> Registry::switch_early(std::string_view name) {
  LG_TRY_VOID(find_pt(name, PtPhase::poking));
  transition_->pt.early = true;
  return ok_result();
}

Result<void> Registry::poke_finish(std::string_view name) {
  LG_TRY_VOID(find_pt(name, PtPhase::poking));
  PerThreadState& st = transition_->pt;
  if (st.reversed)
    return make_error(ErrorKind::invalid_argument, "the transition of patch '{}' was reversed before its entry jumps were written: complete it", name);
  for (const auto& f : st.funcs) {
    if (!f.entry_changes) continue;
    const FuncEntry& e = funcs_.at(f.old_addr);
    auto jmp = x86::encode_jmp_rel32(e.jump_addr, e.stub.code);
    if (auto r = lg::agent::poke_finish(e.jump_addr, *jmp); !r) {
      disable(fmt::format("writing the entry jump of {:#x} failed half-way: {}", e.old_addr, r.error().message));
      return r;
    }
  }
  LG_TRY_VOID(set_newborn_marker(st.id));
  st.phase = PtPhase::switching;
  set_safepoint_transition(st.id, false);
  return ok_result();
}

Result<void> Registry::restore_entry(const FuncEntry& e) {
  auto jmp = x86::encode_jmp_rel32(e.jump_addr, e.stub.code);
  // A thread that meets the int3 meanwhile goes through the stub, whose slot holds the
  // original continuation: the same code as the bytes being restored.
  return text_poke(e.jump_addr, *jmp, e.orig_bytes, e.stub.code);
}

Result<void> Registry::complete(std::string_view name) {
  // A load reversed before its entry jumps were written completes from the poking phase: its
  // int3s are taken away again.
  const bool poked = transition_ && transition_->patch == name && transition_->pt.phase == PtPhase::poking &&
                     transition_->pt.reversed && transition_->kind == TransitionKind::load;
  LG_TRY(Patch * p, find_pt(name, poked ? PtPhase::poking : PtPhase::switching));
  PerThreadState st = transition_->pt;
  const bool load = transition_->kind == TransitionKind::load;
  // The slots go straight to the final implementation: dispatch leaves the hot path.
  for (const auto& f : st.funcs) funcs_.at(f.old_addr).stub.write_slot(st.reversed ? f.initial : f.target);
  set_safepoint_transition(0, false);
  LG_TRY_VOID(set_newborn_marker(kNoTransition));
  // The dispatch thunks are out of the hot path now; a thread may still be inside one.
  for (const auto& f : st.funcs) retire_code(f.thunk);
  // Which entries go back to their original bytes: a reversed load's new ones, a revert's
  // last patch of a function. Their stubs and continuations are retired (a thread may have
  // been sent there a moment ago, also by the SIGTRAP handler of the poke: the entry bytes are
  // watched with the stub); the registry forgets them.
  auto forget_entry = [&](uint64_t old_addr) -> Result<void> {
    auto it = funcs_.find(old_addr);
    if (it == funcs_.end()) return ok_result();
    if (auto r = poked ? poke_undo(it->second.jump_addr, it->second.orig_bytes[0]) : restore_entry(it->second); !r) {
      disable(fmt::format("restoring the entry of {:#x} failed: {}", old_addr, r.error().message));
      return r;
    }
    retire_stub(it->second.stub, RemoteRange{RemoteAddr(it->second.jump_addr), RemoteAddr(it->second.jump_addr + x86::kJmpRel32Size)});
    retire_code(it->second.continuation);
    funcs_.erase(it);
    return ok_result();
  };
  if (load && !st.reversed) {
    for (const auto& f : p->funcs) funcs_.at(f.old_addr).stack.push_back(p->name);
    p->state = PatchState::enabled;
    transition_.reset();
    return ok_result();
  }
  // A forced thread may still be inside the code that goes away: keep it mapped.
  auto unload = [&] {
    if (st.forced) {
      for (auto& q : patches_)
        if (q.get() == p) kept_.push_back(std::move(q));
      std::erase_if(patches_, [](const auto& q) { return !q; });
    } else {
      drop_patch(p);
    }
  };
  if (load) {  // reversed: as if it never happened
    for (uint64_t a : p->created_funcs) LG_TRY_VOID(forget_entry(a));
    transition_.reset();
    unload();
    return ok_result();
  }
  if (st.reversed) {  // a revert reversed: the patch stays enabled
    transition_.reset();
    return ok_result();
  }
  for (const auto& f : p->funcs) {
    auto it = funcs_.find(f.old_addr);
    if (it == funcs_.end()) continue;
    std::erase(it->second.stack, p->name);
    if (it->second.stack.empty()) LG_TRY_VOID(forget_entry(f.old_addr));
  }
  transition_.reset();
  unload();
  return ok_result();
}

Result<void> Registry::reverse(std::string_view name) {
  const bool early = transition_ && transition_->patch == name && transition_->pt.phase == PtPhase::poking && transition_->pt.early;
  LG_TRY_VOID(find_pt(name, early ? PtPhase::poking : PtPhase::switching));
  PerThreadState& st = transition_->pt;
  st.reversed = !st.reversed;
  // Before poke_finish threads are born in the initial universe and the safepoint stays off
  // whichever way the transition goes (poke_finish turns both on).
  if (early) return ok_result();
  set_safepoint_transition(st.id, st.reversed);
  // Threads born from now on start on the side the transition now moves to.
  return set_newborn_marker(st.reversed ? kNoTransition : st.id);
}

Result<void> Registry::mark_forced(std::string_view name) {
  LG_TRY_VOID(find_pt(name, PtPhase::switching));
  transition_->pt.forced = true;
  return ok_result();
}

Result<void> Registry::abort_per_thread(Patch* p) {
  PerThreadState& st = transition_->pt;
  if (st.phase == PtPhase::switching || st.early)
    return make_error(ErrorKind::invalid_argument, "threads of patch '{}' are already switching: reverse the transition instead", p->name);
  const bool poked = st.phase == PtPhase::poking;
  for (const auto& f : st.funcs) {
    FuncEntry& e = funcs_.at(f.old_addr);
    if (f.entry_changes && poked) LG_TRY_VOID(poke_undo(e.jump_addr, e.orig_bytes[0]));
    e.stub.write_slot(f.initial);
  }
  // The slots of functions redirected before pointed at their thunks: retired, not freed.
  for (const auto& f : st.funcs) retire_code(f.thunk);
  if (transition_->kind == TransitionKind::load) {
    for (uint64_t a : p->created_funcs) {
      // A thread that met an int3 went through the stub: it is retired, not released.
      const FuncEntry& e = funcs_.at(a);
      if (!poked) stubs_.release(e.stub);
      else retire_stub(e.stub, RemoteRange{RemoteAddr(e.jump_addr), RemoteAddr(e.jump_addr + x86::kJmpRel32Size)});
      retire_code(e.continuation);
      funcs_.erase(a);
    }
    transition_.reset();
    drop_patch(p);
  } else {
    transition_.reset();
  }
  return ok_result();
}

}  // namespace lg::agent
