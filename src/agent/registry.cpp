#include "agent/registry.h"

#include <algorithm>
#include <cstring>

#include <livegraft/patch.h>

#include "agent/address_space.h"
#include "agent/patch_metadata.h"
#include "common/hex.h"
#include "common/scope_guard.h"
#include "x86/encode.h"
#include "x86/entry_thunk.h"

namespace lg::agent {

const char* to_string(PatchState s) { return s == PatchState::loaded ? "loaded" : "enabled"; }

namespace {

std::vector<uint8_t> le64(uint64_t v) {
  std::vector<uint8_t> b(8);
  std::memcpy(b.data(), &v, 8);
  return b;
}

std::string_view base_name(std::string_view p) {
  auto slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

// The request names the object as the controller found it (a path, or "" for the main
// executable); the metadata as the author wrote it (NULL, a soname, a file name or a path).
bool object_matches(const std::optional<std::string>& meta, std::string_view requested) {
  if (!meta) return requested.empty();
  if (*meta == requested) return true;
  return meta->find('/') == std::string::npos && base_name(requested) == *meta;
}

}  // namespace

Result<void> Registry::check_usable() const {
  if (disabled_) return Error(ErrorKind::agent, fmt::format("the agent is disabled: {}", *disabled_));
  return ok_result();
}

void Registry::disable(std::string reason) {
  if (!disabled_) disabled_ = std::move(reason);
}

const Patch* Registry::find(std::string_view name) const {
  for (const auto& p : patches_)
    if (p->name == name) return p.get();
  return nullptr;
}

uint64_t Registry::new_size_of(std::string_view patch, uint64_t old_addr) const {
  if (const Patch* p = find(patch))
    for (const auto& f : p->funcs)
      if (f.old_addr == old_addr) return f.new_size;
  return 0;
}

uint64_t Registry::new_addr_of(std::string_view patch, uint64_t old_addr) const {
  if (const Patch* p = find(patch))
    for (const auto& f : p->funcs)
      if (f.old_addr == old_addr) return f.entry ? f.entry : f.new_addr;
  return 0;
}

Result<Patch*> Registry::find_in(std::string_view name, TransitionKind kind) {
  LG_TRY_VOID(check_usable());
  if (!transition_ || transition_->kind != kind || transition_->patch != name) {
    const char* what = kind == TransitionKind::load ? "load" : "revert";
    if (!find(name)) return make_error(ErrorKind::not_found, "no patch named '{}' is loaded", name);
    return make_error(ErrorKind::invalid_argument, "no {} of patch '{}' is in progress", what, name);
  }
  return const_cast<Patch*>(find(name));
}

void Registry::drop_patch(const Patch* p) {
  // A patch whose new functions' addresses the program may keep (LIVEGRAFT_PATCH_KEEP_CODE)
  // leaves the registry but stays mapped: a kept callback still runs.
  for (auto& q : patches_)
    if (q.get() == p && q->keep_code) kept_.push_back(std::move(q));
  std::erase_if(patches_, [&](const auto& q) { return !q || q.get() == p; });
}

Result<Plan> Registry::load(const LoadRequest& req, std::string* loaded_name) {
  LG_TRY_VOID(check_usable());
  if (transition_)
    return make_error(ErrorKind::busy, "a transition of patch '{}' is in progress; commit, abort or finish it first", transition_->patch);
  if (req.funcs.empty()) return make_error(ErrorKind::invalid_argument, "load request for {} lists no functions", req.path);
  std::set<uint64_t> seen;
  for (const auto& f : req.funcs) {
    if (!seen.insert(f.old_addr).second)
      return make_error(ErrorKind::invalid_argument, "function {:#x} ('{}') is listed twice", f.old_addr, f.old_name);
    if (!req.object.contains(RemoteAddr(f.old_addr)))
      return make_error(ErrorKind::invalid_argument, "function '{}' at {:#x} is outside the target object [{}, {})", f.old_name, f.old_addr,
                        req.object.lo, req.object.hi);
    if (f.jump_addr < f.old_addr || f.jump_addr > f.old_addr + 16)
      return make_error(ErrorKind::invalid_argument, "function '{}': jump_addr {:#x} is not at its entry {:#x}", f.old_name, f.jump_addr, f.old_addr);
    if (f.preserve_vec & ~x86::kThunkVecKnown)
      return make_error(ErrorKind::invalid_argument, "function '{}': preserve_vec {:#x} has unknown bits", f.old_name, f.preserve_vec);
  }

  LoadOptions opts{req.path, req.object, req.symbols, req.dlsym_names, req.data_refs, {}, req.fd};
  for (const auto& f : req.funcs) opts.entry_thunks.push_back({f.preserve, f.preserve_vec});
  LG_TRY(auto obj, load_object(opts));
  LG_TRY(auto meta, read_patch_metadata(*obj));
  if (find(meta.name)) return make_error(ErrorKind::invalid_argument, "a patch named '{}' is already loaded", meta.name);
  if (!object_matches(meta.object_name, req.object_name))
    return make_error(ErrorKind::mismatch, "{}: the patch targets object '{}' but the request names '{}'", req.path,
                      meta.object_name.value_or("<main executable>"), req.object_name.empty() ? "<main executable>" : req.object_name);
  if (meta.funcs.size() != req.funcs.size())
    return make_error(ErrorKind::mismatch, "{}: the patch replaces {} functions but the request lists {}", req.path, meta.funcs.size(), req.funcs.size());

  auto patch = std::make_unique<Patch>();
  patch->name = meta.name;
  patch->path = req.path;
  patch->object_name = req.object_name;
  patch->model = req.model;
  patch->keep_code = (meta.flags & LIVEGRAFT_PATCH_KEEP_CODE) != 0;
  std::vector<bool> used(meta.funcs.size(), false);
  for (const auto& f : req.funcs) {
    size_t k = 0;
    while (k < meta.funcs.size() && (used[k] || meta.funcs[k].old_name != f.old_name || meta.funcs[k].old_sympos != f.old_sympos)) ++k;
    if (k == meta.funcs.size())
      return make_error(ErrorKind::mismatch, "{}: the request's function '{}' (sympos {}) is not among the patch's functions", req.path, f.old_name,
                        f.old_sympos);
    used[k] = true;
    auto sym = obj->function_at(meta.funcs[k].new_func);
    uint64_t entry = meta.funcs[k].new_func;
    if (uint64_t thunk = obj->entry_thunk(patch->funcs.size())) {
      obj->set_entry_thunk_target(patch->funcs.size(), meta.funcs[k].new_func);
      entry = thunk;
    }
    patch->funcs.push_back({f.old_name, f.old_sympos, f.old_addr, meta.funcs[k].new_func, sym ? sym->size : 0, entry});
  }

  if (req.model == Model::immediate && !(meta.flags & LIVEGRAFT_PATCH_IMMEDIATE))
    return make_error(ErrorKind::invalid_argument, "{}: patch '{}' does not declare itself immediate (LIVEGRAFT_PATCH_IMMEDIATE)", req.path, meta.name);
  if (req.model != Model::stop_the_world) return load_per_thread(req, std::move(obj), std::move(patch), loaded_name);
  if (generation_possible(req)) return load_generation(req, std::move(obj), std::move(patch), loaded_name);

  // The older plan (a request without relocated entries): the controller writes every jump and
  // slot directly; a controller killed between two of them leaves the agent disabled.

  // Stubs and writes. Entries created here are removed again if anything below fails.
  Plan plan;
  auto rollback = ScopeGuard([&] {
    for (uint64_t a : patch->created_funcs) {
      stubs_.release(funcs_[a].stub);
      funcs_.erase(a);
    }
  });
  for (size_t i = 0; i < req.funcs.size(); ++i) {
    const auto& f = req.funcs[i];
    const auto& pf = patch->funcs[i];
    if (auto it = funcs_.find(f.old_addr); it != funcs_.end()) {
      // Already redirected: only the slot changes, and the controller stores it.
      FuncEntry& e = it->second;
      if (e.jump_addr != f.jump_addr)
        return make_error(ErrorKind::mismatch, "function '{}' is redirected at {:#x}, the request says {:#x}", f.old_name, e.jump_addr, f.jump_addr);
      uint64_t cur = e.stub.read_slot();
      plan.writes.push_back({e.stub.slot, le64(cur), le64(pf.entry)});
      if (e.stack.empty()) {  // redirected, no patch: the original runs through its continuation
        for (const auto& r : e.old_ranges) plan.check.push_back(r);
        if (e.continuation) plan.check.push_back({RemoteAddr(e.continuation), RemoteAddr(e.continuation + e.continuation_size)});
        continue;
      }
      const Patch* top = find(e.stack.back());
      for (const auto& r : top->thunks) plan.check.push_back(r);
      for (const auto& tf : top->funcs)
        if (tf.old_addr == f.old_addr) {
          plan.check.push_back({RemoteAddr(tf.new_addr), RemoteAddr(tf.new_addr + std::max<uint64_t>(tf.new_size, 1))});
          // A thread inside its entry thunk is on its way into that implementation too.
          if (tf.entry && tf.entry != tf.new_addr)
            for (const auto& r : top->object->regions())
              if (r.addr == tf.entry) plan.check.push_back({RemoteAddr(r.addr), RemoteAddr(r.addr + r.size)});
        }
      continue;
    }
    std::array<uint8_t, 5> now{};
    LG_TRY_VOID(safe_read(f.jump_addr, now));
    if (now != f.orig_bytes)
      return make_error(ErrorKind::mismatch, "function '{}': the code at {:#x} is {}, the request expects {}", f.old_name, f.jump_addr, to_hex(now),
                        to_hex(f.orig_bytes));
    LG_TRY(auto stub, stubs_.allocate(f.jump_addr));
    FuncEntry e{f.old_addr, f.jump_addr, f.orig_bytes, stub, {}};
    funcs_.emplace(f.old_addr, e);
    patch->created_funcs.push_back(f.old_addr);
    // The stub is not reachable yet (nothing jumps to it): the agent may fill its slot itself.
    stub.write_slot(pf.entry);
    auto jmp = x86::encode_jmp_rel32(f.jump_addr, stub.code);
    if (!jmp) return make_error(ErrorKind::internal, "stub {:#x} out of reach of {:#x}", stub.code, f.jump_addr);
    plan.writes.push_back({f.jump_addr, {f.orig_bytes.begin(), f.orig_bytes.end()}, {jmp->begin(), jmp->end()}});
  }

  // Everything checked: the patch's constructors may run now.
  obj->run_constructors();
  patch->object = std::move(obj);
  rollback.dismiss();
  if (loaded_name) *loaded_name = patch->name;
  transition_ = Transition{TransitionKind::load, patch->name, plan.writes};
  patches_.push_back(std::move(patch));
  return plan;
}

Result<void> Registry::commit(std::string_view name) {
  LG_TRY(Patch * p, find_in(name, TransitionKind::load));
  if (transition_->model == Model::per_thread)
    return make_error(ErrorKind::invalid_argument, "patch '{}' is in a per-thread transition: it completes with 'complete'", name);
  if (transition_->sw.active) return settle_generation(p, true);
  for (const auto& f : p->funcs) funcs_.at(f.old_addr).stack.push_back(p->name);
  p->state = PatchState::enabled;
  transition_.reset();
  return ok_result();
}

Result<void> Registry::abort(std::string_view name) {
  LG_TRY(Patch * p, find_in(name, TransitionKind::load));
  if (transition_->model == Model::per_thread) return abort_per_thread(p);
  if (transition_->sw.active) return settle_generation(p, false);
  for (uint64_t a : p->created_funcs) {
    stubs_.release(funcs_.at(a).stub);
    funcs_.erase(a);
  }
  transition_.reset();
  drop_patch(p);  // runs .fini_array, deregisters the frames, unmaps
  return ok_result();
}

Result<Plan> Registry::prepare_revert(std::string_view name, Model model) {
  LG_TRY_VOID(check_usable());
  if (transition_)
    return make_error(ErrorKind::busy, "a transition of patch '{}' is in progress; commit, abort or finish it first", transition_->patch);
  const Patch* p = find(name);
  if (!p) return make_error(ErrorKind::not_found, "no patch named '{}' is loaded", name);
  if (p->state != PatchState::enabled) return make_error(ErrorKind::invalid_argument, "patch '{}' is not enabled", name);
  if (model != Model::stop_the_world) return prepare_revert_per_thread(const_cast<Patch*>(p));
  // Through a generation word when every entry that goes back has its relocated original.
  bool relocated = p->generation;
  for (const auto& f : p->funcs) {
    const FuncEntry& e = funcs_.at(f.old_addr);
    if (e.stack.back() == p->name && e.stack.size() == 1 && !e.continuation) relocated = false;
  }
  if (relocated) return prepare_revert_generation(p);
  Plan plan;
  for (const auto& f : p->funcs) {
    const FuncEntry& e = funcs_.at(f.old_addr);
    if (e.stack.back() != p->name) continue;  // not current: leaving the stack changes no code
    if (e.stack.size() > 1) {
      plan.writes.push_back({e.stub.slot, le64(e.stub.read_slot()), le64(new_addr_of(e.stack[e.stack.size() - 2], f.old_addr))});
    } else {
      auto jmp = x86::encode_jmp_rel32(e.jump_addr, e.stub.code);
      plan.writes.push_back({e.jump_addr, {jmp->begin(), jmp->end()}, {e.orig_bytes.begin(), e.orig_bytes.end()}});
      // The stub is freed after the revert: no thread may be on its jmp either.
      plan.check.push_back({RemoteAddr(e.stub.code), RemoteAddr(e.stub.code + x86::kJmpIndirectRipSize)});
    }
  }
  for (const auto& r : p->object->code_ranges()) plan.check.push_back(r);
  for (const auto& r : p->thunks) plan.check.push_back(r);
  transition_ = Transition{TransitionKind::revert, p->name, plan.writes};
  return plan;
}

Result<void> Registry::finish_revert(std::string_view name) {
  LG_TRY(Patch * p, find_in(name, TransitionKind::revert));
  if (transition_->model == Model::per_thread)
    return make_error(ErrorKind::invalid_argument, "patch '{}' is in a per-thread transition: it completes with 'complete'", name);
  if (transition_->sw.active) return settle_generation(p, true);
  for (const auto& f : p->funcs) {
    auto it = funcs_.find(f.old_addr);
    if (it == funcs_.end()) continue;
    std::erase(it->second.stack, p->name);
    if (it->second.stack.empty()) {
      stubs_.release(it->second.stub);
      funcs_.erase(it);
    }
  }
  transition_.reset();
  drop_patch(p);
  return ok_result();
}

Result<void> Registry::cancel_revert(std::string_view name) {
  LG_TRY(Patch * p, find_in(name, TransitionKind::revert));
  if (transition_->model == Model::per_thread) return abort_per_thread(p);
  if (transition_->sw.active) return settle_generation(p, false);
  transition_.reset();
  return ok_result();
}

std::vector<RemoteRange> Retired::ranges() const {
  std::vector<RemoteRange> out;
  if (code) out.push_back({RemoteAddr(code), RemoteAddr(code + code_size)});
  if (stub) {
    out.push_back({RemoteAddr(stub->code), RemoteAddr(stub->code + StubPool::kStubSize)});
    out.push_back({RemoteAddr(stub->slot), RemoteAddr(stub->slot + 8)});  // a generation word is read by thunks
  }
  if (entry) out.push_back(*entry);
  return out;
}

void Registry::retire_code(uint64_t addr) {
  if (!addr) return;
  uint64_t size = arena_.size_of(addr);
  if (!size) return;  // not ours, or retired already and given back
  for (const auto& r : retired_)
    if (r.code == addr) return;
  Retired r;
  r.number = ++retire_seq_;
  r.code = addr;
  r.code_size = size;
  retired_.push_back(std::move(r));
}

void Registry::retire_stub(const Stub& s, std::optional<RemoteRange> entry) {
  if (!s.code) return;
  for (const auto& r : retired_)
    if (r.stub && r.stub->code == s.code) return;
  Retired r;
  r.number = ++retire_seq_;
  r.stub = s;
  r.entry = entry;
  retired_.push_back(std::move(r));
}

Result<uint64_t> Registry::reclaim(uint64_t upto) {
  LG_TRY_VOID(check_usable());
  upto = std::min(upto, retire_seq_);
  uint64_t freed = 0;
  auto same = [](const RemoteRange& a, const RemoteRange& b) { return a.lo == b.lo && a.hi == b.hi; };
  std::vector<Retired> keep;
  Result<void> failed = ok_result();
  for (auto& r : retired_) {
    if (r.number > upto || !failed) {
      keep.push_back(std::move(r));
      continue;
    }
    // A switch thunk was added to the check ranges of the code it leads into (generation.cpp):
    // its room may hold another piece from now on.
    for (const auto& range : r.ranges()) {
      for (auto& [a, e] : funcs_) std::erase_if(e.old_ranges, [&](const RemoteRange& x) { return same(x, range); });
      for (auto& p : patches_) std::erase_if(p->thunks, [&](const RemoteRange& x) { return same(x, range); });
    }
    if (r.code) {
      if (auto rel = arena_.release(r.code); !rel) {
        failed = std::move(rel);
        keep.push_back(std::move(r));
        continue;
      }
      freed += r.code_size;
    }
    if (r.stub) stubs_.release(*r.stub);
  }
  retired_ = std::move(keep);
  if (!failed) return failed.error();
  reclaimed_upto_ = std::max(reclaimed_upto_, upto);
  return freed;
}

ArenaStats Registry::arena_stats() const {
  ArenaStats s;
  const auto u = arena_.usage();
  s.mapped = u.mapped;
  s.free = u.free;
  for (const auto& r : retired_) {
    s.retired += r.code_size;
    if (r.code) ++s.retired_pieces;
    if (r.stub) ++s.retired_stubs;
    for (const auto& range : r.ranges()) s.retired_ranges.push_back(range);
  }
  s.in_use = u.live - s.retired;
  s.retired_upto = retire_seq_;
  s.reclaimed_upto = reclaimed_upto_;
  return s;
}

std::optional<std::string> Registry::resolve_abandoned_transition() {
  if (!transition_) return std::nullopt;
  const Transition t = *transition_;
  if (t.model == Model::per_thread) {
    // Before dispatch is live (no thread switched yet) the agent undoes the transition; once
    // threads are switching (also before the entry jumps were complete, after switch_early) it
    // stays in progress, consistent, for the next controller.
    if (t.pt.phase == PtPhase::switching || t.pt.early)
      return fmt::format("the controller left the per-thread transition of '{}' in progress", t.patch);
    auto r = abort_per_thread(const_cast<Patch*>(find(t.patch)));
    return fmt::format("the controller left the per-thread transition of '{}' before any thread switched: {}", t.patch,
                       r ? "undone" : r.error().message);
  }
  const bool load = t.kind == TransitionKind::load;
  if (t.sw.active) {
    // The generation word alone says which version every thread runs (generation.cpp).
    const bool switched = t.sw.switched();
    Patch* p = const_cast<Patch*>(find(t.patch));
    auto r = settle_generation(p, switched);
    return fmt::format("the controller left the {} of '{}' {} the switch: {}", load ? "apply" : "revert", t.patch,
                       switched ? "after" : "before", r ? (switched ? "completed" : "undone") : r.error().message);
  }
  size_t done = 0;
  for (const auto& w : t.writes) {
    // The agent lives in the process it plans for: the bytes are its own memory (code pages are
    // readable; slots are its own rw pages).
    if (std::memcmp(reinterpret_cast<const void*>(w.addr), w.new_bytes.data(), w.new_bytes.size()) == 0) ++done;
    else if (std::memcmp(reinterpret_cast<const void*>(w.addr), w.old_bytes.data(), w.old_bytes.size()) != 0) {
      done = SIZE_MAX;  // neither: something else wrote there
      break;
    }
  }
  if (done == 0) {
    auto r = load ? abort(t.patch) : cancel_revert(t.patch);
    return fmt::format("the controller left the {} of '{}' before any code was written: {}",
                       load ? "apply" : "revert", t.patch, r ? "undone" : r.error().message);
  }
  if (done == t.writes.size()) {
    auto r = load ? commit(t.patch) : finish_revert(t.patch);
    return fmt::format("the controller left the {} of '{}' after every write: {}", load ? "apply" : "revert",
                       t.patch, r ? "completed" : r.error().message);
  }
  std::string reason = fmt::format(
      "the controller left the {} of '{}' with its code writes only partly done (or overwritten by someone else)",
      load ? "apply" : "revert", t.patch);
  disable(reason);
  return reason;
}

}  // namespace lg::agent
