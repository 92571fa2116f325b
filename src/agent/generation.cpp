// The stop-the-world switch through one generation word (docs/consistency.md, "The switch").
// The agent prepares a switch thunk per affected function; the controller, with every thread
// stopped, makes the thunks live (entry jumps, slot stores: behaviour unchanged), stores the word
// (every function switches at once) and, for a revert, gives entry bytes back (behaviour
// unchanged). A controller killed between any two of those writes leaves every thread on one
// version, and the word tells the agent which: it finishes or undoes the transition from its
// own memory.
#include <algorithm>
#include <atomic>
#include <cstring>

#include "agent/address_space.h"
#include "agent/registry.h"
#include "agent/text_poke.h"
#include "common/hex.h"
#include "common/scope_guard.h"
#include "x86/encode.h"

namespace lg::agent {

namespace {

std::vector<uint8_t> le64(uint64_t v) {
  std::vector<uint8_t> b(8);
  std::memcpy(b.data(), &v, 8);
  return b;
}

RemoteRange near_of(uint64_t a) { return {RemoteAddr(a), RemoteAddr(a + x86::kJmpRel32Size)}; }
RemoteRange range_of(uint64_t a, uint64_t size) { return {RemoteAddr(a), RemoteAddr(a + std::max<uint64_t>(size, 1))}; }

bool bytes_at(uint64_t addr, std::span<const uint8_t> bytes) {
  return std::memcmp(reinterpret_cast<const void*>(addr), bytes.data(), bytes.size()) == 0;
}

}  // namespace

bool StwSwitch::switched() const { return active && word.read_slot() == kGenerationNew; }

bool Registry::generation_possible(const LoadRequest& req) const {
  // A function redirected for the first time runs its original code through its relocated entry
  // while the word says old. A request without relocation data (no 'old_ranges': the prologue
  // could not be relocated, or an older client) gets the older plan of direct writes, and so
  // does the revert of that patch.
  for (const auto& f : req.funcs)
    if (f.old_ranges.empty() || (!funcs_.count(f.old_addr) && !f.continuation)) return false;
  return true;
}

Result<Plan> Registry::load_generation(const LoadRequest& req, std::unique_ptr<LoadedObject> obj, std::unique_ptr<Patch> patch,
                                       std::string* loaded_name) {
  Plan plan;
  StwSwitch sw;
  sw.active = true;
  patch->generation = true;
  sw.arena_before = arena_.mark();
  // Entries created here are removed again if anything below fails (nothing jumps to them yet).
  auto rollback = ScopeGuard([&] {
    arena_.rollback(sw.arena_before);
    for (uint64_t a : patch->created_funcs) {
      stubs_.release(funcs_[a].stub);
      funcs_.erase(a);
    }
    if (sw.word.slot) stubs_.release(sw.word);
  });
  LG_TRY(sw.word, stubs_.allocate(req.funcs[0].jump_addr));  // its slot is 0: old
  for (size_t i = 0; i < req.funcs.size(); ++i) {
    const auto& f = req.funcs[i];
    const auto& pf = patch->funcs[i];
    StwFunc sf;
    sf.old_addr = f.old_addr;
    sf.target = pf.entry ? pf.entry : pf.new_addr;
    uint64_t thunk = 0;
    if (auto it = funcs_.find(f.old_addr); it != funcs_.end()) {
      // Already redirected: the controller points the slot at the thunk.
      FuncEntry& e = it->second;
      if (e.jump_addr != f.jump_addr)
        return make_error(ErrorKind::mismatch, "function '{}' is redirected at {:#x}, the request says {:#x}", f.old_name, e.jump_addr, f.jump_addr);
      sf.initial = e.stub.read_slot();
      if (e.stack.empty()) {  // redirected, no patch: the original runs through its continuation
        for (const auto& r : e.old_ranges) plan.check.push_back(r);
        if (e.continuation) plan.check.push_back(range_of(e.continuation, e.continuation_size));
      } else if (const Patch* top = find(e.stack.back())) {
        // Its current implementation, entered directly, through its entry thunk or its switch thunk.
        for (const auto& tf : top->funcs) {
          if (tf.old_addr != f.old_addr) continue;
          plan.check.push_back(range_of(tf.new_addr, tf.new_size));
          if (tf.entry && tf.entry != tf.new_addr)
            for (const auto& r : top->object->regions())
              if (r.addr == tf.entry) plan.check.push_back({RemoteAddr(r.addr), RemoteAddr(r.addr + r.size)});
        }
        for (const auto& r : top->thunks) plan.check.push_back(r);
      }
      LG_TRY(thunk, arena_.reserve(near_of(e.jump_addr), kGenerationThunkSize));
      plan.writes.push_back({e.stub.slot, le64(sf.initial), le64(thunk)});
    } else {
      LG_TRY(const FuncEntry* created, redirect_with_continuation(f, patch.get()));
      const uint64_t cont = created->continuation;
      Stub stub = created->stub;
      sf.initial = cont;
      sf.entry_changes = true;
      LG_TRY(thunk, arena_.reserve(near_of(f.jump_addr), kGenerationThunkSize));
      // The stub is not reachable yet (nothing jumps to it): the agent may fill its slot itself.
      stub.write_slot(thunk);
      auto jmp = x86::encode_jmp_rel32(f.jump_addr, stub.code);
      if (!jmp) return make_error(ErrorKind::internal, "stub {:#x} out of reach of {:#x}", stub.code, f.jump_addr);
      plan.writes.push_back({f.jump_addr, {f.orig_bytes.begin(), f.orig_bytes.end()}, {jmp->begin(), jmp->end()}});
    }
    auto code = encode_generation_thunk(thunk, sw.word.slot, sf.target, sf.initial);
    if (!code)
      return make_error(ErrorKind::unsupported, "function '{}': its switch thunk at {:#x} does not reach the generation word {:#x} or its targets",
                        f.old_name, thunk, sw.word.slot);
    LG_TRY_VOID(write_code(thunk, *code));
    sf.thunk = thunk;
    patch->thunks.push_back(range_of(thunk, kGenerationThunkSize));
    sw.funcs.push_back(sf);
  }
  // The switch itself: one aligned 8-byte store, the last write of an apply.
  plan.writes.push_back({sw.word.slot, le64(kGenerationOld), le64(kGenerationNew)});

  obj->run_constructors();
  patch->object = std::move(obj);
  rollback.dismiss();
  if (loaded_name) *loaded_name = patch->name;
  transition_ = Transition{TransitionKind::load, patch->name, plan.writes, Model::stop_the_world, {}, std::move(sw)};
  patches_.push_back(std::move(patch));
  return plan;
}

Result<Plan> Registry::prepare_revert_generation(const Patch* p) {
  Plan plan;
  StwSwitch sw;
  sw.active = true;
  sw.arena_before = arena_.mark();
  std::vector<MemWrite> restores;
  auto rollback = ScopeGuard([&] {
    arena_.rollback(sw.arena_before);
    if (sw.word.slot) stubs_.release(sw.word);
  });
  for (const auto& f : p->funcs) {
    const FuncEntry& e = funcs_.at(f.old_addr);
    if (e.stack.back() != p->name) continue;  // not current: leaving the stack changes no code
    if (!sw.word.slot) {
      LG_TRY(sw.word, stubs_.allocate(e.jump_addr));
    }
    StwFunc sf;
    sf.old_addr = f.old_addr;
    sf.initial = e.stub.read_slot();
    if (e.stack.size() > 1) {
      sf.target = new_addr_of(e.stack[e.stack.size() - 2], f.old_addr);
    } else {
      // The original through its continuation; after the switch its entry bytes come back.
      sf.target = e.continuation;
      sf.entry_changes = true;
      auto jmp = x86::encode_jmp_rel32(e.jump_addr, e.stub.code);
      restores.push_back({e.jump_addr, {jmp->begin(), jmp->end()}, {e.orig_bytes.begin(), e.orig_bytes.end()}});
      // The stub is freed after the revert: no thread may be on its jmp either.
      plan.check.push_back({RemoteAddr(e.stub.code), RemoteAddr(e.stub.code + x86::kJmpIndirectRipSize)});
    }
    LG_TRY(sf.thunk, arena_.reserve(near_of(e.jump_addr), kGenerationThunkSize));
    auto code = encode_generation_thunk(sf.thunk, sw.word.slot, sf.target, sf.initial);
    if (!code)
      return make_error(ErrorKind::unsupported, "function '{}': its switch thunk at {:#x} does not reach the generation word {:#x} or its targets",
                        f.old_name, sf.thunk, sw.word.slot);
    LG_TRY_VOID(write_code(sf.thunk, *code));
    plan.writes.push_back({e.stub.slot, le64(sf.initial), le64(sf.thunk)});
    sw.funcs.push_back(sf);
  }
  for (const auto& r : p->object->code_ranges()) plan.check.push_back(r);
  for (const auto& r : p->thunks) plan.check.push_back(r);  // a thread in one is on its way into the patch
  if (sw.word.slot) {
    plan.writes.push_back({sw.word.slot, le64(kGenerationOld), le64(kGenerationNew)});
    plan.writes.insert(plan.writes.end(), restores.begin(), restores.end());
  } else {
    sw.active = false;  // the patch is current nowhere: nothing to switch (the older plan, no writes)
  }
  rollback.dismiss();
  transition_ = Transition{TransitionKind::revert, p->name, plan.writes, Model::stop_the_world, {}, std::move(sw)};
  return plan;
}

// finish: the word says new -> commit (load) or finish (revert). Otherwise the word says old ->
// abort (load) or cancel (revert). Either way the slots end pointing straight at the version
// that runs, so calls cost what they cost before (the thunks stay mapped, out of the hot path).
Result<void> Registry::settle_generation(Patch* p, bool finish) {
  const Transition& t = *transition_;
  const bool load = t.kind == TransitionKind::load;
  if (t.sw.switched() != finish)
    return make_error(ErrorKind::invalid_argument, "the {} of patch '{}' has {}switched (its generation word says {}): {} it instead",
                      load ? "apply" : "revert", p->name, finish ? "not " : "", finish ? "old" : "new",
                      finish ? (load ? "abort" : "cancel") : (load ? "commit" : "finish"));
  const std::vector<StwFunc> funcs = t.sw.funcs;
  // Undone before any write: no thread ever reached the thunks, the continuations or the word,
  // so they are given back and the process's mappings are as before the transition.
  const bool untouched = !finish && std::all_of(t.writes.begin(), t.writes.end(), [](const MemWrite& w) {
    return bytes_at(w.addr, w.old_bytes);
  });
  const Stub word = t.sw.word;
  const CodeArena::Mark arena_before = t.sw.arena_before;
  for (const auto& sf : funcs) funcs_.at(sf.old_addr).stub.write_slot(finish ? sf.target : sf.initial);
  // An entry whose jump is not (or no longer) there: nothing jumps to its stub, forget it. One
  // still jumping keeps its entry, its slot pointing at the original's continuation.
  // Its stub is given back at once (every thread was stopped and seen off its jmp when the
  // entry bytes came back); its continuation is retired (a thread may be inside, below a call
  // of the displaced instructions) unless nothing ever ran it.
  auto forget_if_unjumped = [&](uint64_t old_addr) {
    auto it = funcs_.find(old_addr);
    if (it == funcs_.end() || !it->second.stack.empty()) return;
    if (!bytes_at(it->second.jump_addr, it->second.orig_bytes)) return;
    stubs_.release(it->second.stub);
    if (!untouched) retire_code(it->second.continuation);
    funcs_.erase(it);
  };
  if (load && finish) {
    for (const auto& f : p->funcs) funcs_.at(f.old_addr).stack.push_back(p->name);
    p->state = PatchState::enabled;
  } else if (load) {
    for (uint64_t a : p->created_funcs) forget_if_unjumped(a);
    drop_patch(p);  // never entered: the word never said new
  } else if (finish) {
    for (const auto& f : p->funcs) {
      auto it = funcs_.find(f.old_addr);
      if (it == funcs_.end()) continue;
      std::erase(it->second.stack, p->name);
      forget_if_unjumped(f.old_addr);
    }
    drop_patch(p);
  }
  if (untouched) {
    stubs_.release(word);
    arena_.rollback(arena_before);
    transition_.reset();
    return ok_result();
  }
  // A thread may still be inside a thunk (it read the slot just before the store above): the
  // thunk leads into the version that now runs, so later transitions check it with that code
  // until it is given back. The thunks and the word are retired (docs/consistency.md, "Memory").
  for (const auto& sf : funcs) retire_code(sf.thunk);
  retire_stub(word);
  for (const auto& sf : funcs) {
    auto it = funcs_.find(sf.old_addr);
    if (it == funcs_.end()) continue;
    RemoteRange r = range_of(sf.thunk, kGenerationThunkSize);
    std::vector<RemoteRange>* into = &it->second.old_ranges;
    if (!it->second.stack.empty())
      if (Patch* q = const_cast<Patch*>(find(it->second.stack.back()))) into = &q->thunks;
    if (std::none_of(into->begin(), into->end(), [&](const RemoteRange& x) { return x.lo == r.lo && x.hi == r.hi; }))
      into->push_back(r);
  }
  transition_.reset();
  return ok_result();
}

}  // namespace lg::agent
