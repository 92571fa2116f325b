// The agent's registry: loaded patches, per-function implementation stacks and stubs, and the
// one transition that may be in progress. It plans code writes; the controller performs them
// while every thread is stopped (stop-the-world), or makes them itself while the process runs
// (per-thread model: src/agent/per_thread.cpp). docs/agent-protocol.md. Not thread-safe: the
// protocol layer serializes calls.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/code_arena.h"
#include "agent/loader.h"
#include "agent/stubs.h"
#include "protocol/protocol.h"
#include "x86/continuation.h"
#include "common/remote.h"
#include "common/result.h"

namespace lg::agent {

// The decoded "load" request and its parts (src/protocol/protocol.h).
using protocol::FuncRequest;
using protocol::LoadRequest;
using protocol::Model;

// One memory write for the controller: verify [old] at [addr], then write [new_bytes].
struct MemWrite {
  uint64_t addr = 0;
  std::vector<uint8_t> old_bytes, new_bytes;
};

struct Plan {
  std::vector<MemWrite> writes;
  std::vector<RemoteRange> check;  // code no stopped thread may be executing in
  // Per-thread model: the transition's id (the marker value of its target universe), the
  // marker's %fs offset, the entry bytes no thread may be inside between poke_begin and
  // poke_finish, and the code a thread moving back (after a reversal) may not have on its stack.
  bool per_thread = false;
  uint64_t transition_id = 0;
  int32_t marker_offset = 0;
  std::vector<RemoteRange> interiors, check_target;
};

// The one per-thread transition in progress (docs/consistency.md). Each affected function's
// slot points at a dispatch thunk: threads whose marker is [id] go to [target], others to
// [initial]. Reversing flips which side the threads are moving to; the thunks stay.
struct PtFunc {
  uint64_t old_addr = 0;
  uint64_t thunk = 0;
  uint64_t target = 0, initial = 0;
  bool entry_changes = false;  // load: the entry jump is written now; revert: restored at the end
};
enum class PtPhase { prepared, poking, switching };
const char* to_string(PtPhase p);
struct PerThreadState {
  uint64_t id = 0;
  bool reversed = false;
  bool forced = false;  // some thread was switched without a clean stack (`livegraft force`)
  // Poking, and threads may already be switched (switch_early): never undone, only reversed
  // (complete then takes the int3s away again) or completed after poke_finish.
  bool early = false;
  PtPhase phase = PtPhase::prepared;
  std::vector<PtFunc> funcs;
  std::vector<RemoteRange> initial_ranges;  // code of the initial universe (+ thunks)
  std::vector<RemoteRange> target_ranges;   // code of the target universe (+ thunks)
  std::vector<RemoteRange> interiors;       // bytes 1..4 of entry jumps being written
  int64_t started_ms = 0;                   // CLOCK_MONOTONIC
};

// A stop-the-world transition switched by one generation word (docs/consistency.md, "The
// switch"). Each affected function's slot points at a switch thunk that sends threads to
// [initial] while the word is old and to [target] once it is new. The controller's writes are:
// entry jumps and slot stores that make the thunks live (behaviour unchanged), the one store of
// the word (every function switches at once), and, for a revert, entry bytes given back
// (behaviour unchanged). Whatever prefix of them a dead controller left, the word says which
// version runs everywhere; commit/finish then point the slots straight at [target].
struct StwFunc {
  uint64_t old_addr = 0;
  uint64_t thunk = 0;
  uint64_t initial = 0, target = 0;
  bool entry_changes = false;  // load: the entry jump is written; revert: the entry bytes are restored
};
struct StwSwitch {
  bool active = false;  // false: the plan is the older one of direct writes (no continuation)
  Stub word;            // its slot is the generation word; retired (not released) once a write was made
  CodeArena::Mark arena_before;  // the code arena before the transition's thunks and continuations
  std::vector<StwFunc> funcs;
  bool switched() const;
};

struct PatchFunc {
  std::string old_name;
  uint64_t old_sympos = 0;
  uint64_t old_addr = 0;
  uint64_t new_addr = 0;
  uint64_t new_size = 0;
  uint64_t entry = 0;  // what the slot points at: new_addr, or the entry thunk calling it
};

enum class PatchState { loaded, enabled };
const char* to_string(PatchState s);

struct Patch {
  std::string name, path, object_name;
  PatchState state = PatchState::loaded;
  std::unique_ptr<LoadedObject> object;
  std::vector<PatchFunc> funcs;
  std::vector<uint64_t> created_funcs;  // old_addrs whose stub this patch's load created
  Model model = Model::stop_the_world;  // how it was applied
  std::vector<RemoteRange> thunks;      // switch thunks that lead into this patch's code
  bool generation = false;              // stop-the-world: switched by a generation word (and reverted so)
  bool keep_code = false;               // LIVEGRAFT_PATCH_KEEP_CODE: never unmapped once loaded
};

struct FuncEntry {
  uint64_t old_addr = 0, jump_addr = 0;
  std::array<uint8_t, 5> orig_bytes{};
  Stub stub;
  std::vector<std::string> stack;  // patch names, newest last
  uint64_t continuation = 0, continuation_size = 0;  // per-thread model: the original's entry, relocated
  std::vector<RemoteRange> old_ranges;
};

enum class TransitionKind { load, revert };

// A piece of code (arena) or a stub that nothing references any more but that a thread may
// still be inside (it was sent there a moment before), numbered in retirement order. It is
// given back once the controller saw every thread outside every retired range after it was
// retired (Registry::reclaim). [entry]: the 5 bytes of an entry jump given back by a text poke
// next to a retired stub: a thread trapped on its int3 may still be sent to the stub by the
// SIGTRAP handler, so a thread interrupted there keeps the stub (and what it leads to).
struct Retired {
  uint64_t number = 0;
  uint64_t code = 0, code_size = 0;  // an arena piece, or
  std::optional<Stub> stub;          // a stub (its slot included)
  std::optional<RemoteRange> entry;
  std::vector<RemoteRange> ranges() const;
};

// The code arena as `status` reports it.
struct ArenaStats {
  uint64_t mapped = 0, in_use = 0, retired = 0, free = 0;
  uint64_t retired_pieces = 0, retired_stubs = 0;
  uint64_t retired_upto = 0, reclaimed_upto = 0;
  std::vector<RemoteRange> retired_ranges;  // every range a thread must be seen outside of
};

struct Transition {
  TransitionKind kind;
  std::string patch;
  std::vector<MemWrite> writes;  // what the controller was told to write
  Model model = Model::stop_the_world;
  PerThreadState pt;             // model == per_thread
  StwSwitch sw;                  // model == stop_the_world
};

class Registry {
 public:
  // Loads the patch and plans its application. Errors: busy, agent (disabled), not_found,
  // bad_patch, unsupported, mismatch (request vs metadata, or code bytes), invalid_argument.
  Result<Plan> load(const LoadRequest& req, std::string* loaded_name = nullptr);
  Result<void> commit(std::string_view name);
  Result<void> abort(std::string_view name);
  Result<Plan> prepare_revert(std::string_view name, Model model = Model::stop_the_world);
  Result<void> finish_revert(std::string_view name);
  Result<void> cancel_revert(std::string_view name);
  // The controller's connection closed with a transition still open (it was killed, or lost
  // its connection). The agent's own memory says how far it got: no planned write done ->
  // abort/cancel; every write done -> commit/finish; some -> disabled (a state only a person
  // can sort out). Returns what it did, or nothing when no transition was open.
  std::optional<std::string> resolve_abandoned_transition();

  // Per-thread model (per_thread.cpp): the steps after a per-thread load / prepare_revert.
  // poke_begin: int3 on every entry this transition redirects; poke_finish: the rest of the
  // jumps, after the controller saw no thread inside them; then dispatch is live for all.
  // While the int3s are live a thread that reaches an entry traps to its stub, which
  // dispatches: the controller may switch threads already, after switch_early.
  Result<void> poke_begin(std::string_view name);
  Result<void> switch_early(std::string_view name);
  Result<void> poke_finish(std::string_view name);
  // Every thread is in the target universe (or, reversed, back in the initial one): slots go
  // straight to the final implementation, and the patch is enabled / unloaded.
  Result<void> complete(std::string_view name);
  // The transition now moves threads back to its initial universe (or forward again).
  Result<void> reverse(std::string_view name);
  // The controller is about to switch threads whatever their stacks hold: code this transition
  // would unload stays mapped for good (a forced thread may still be running it).
  Result<void> mark_forced(std::string_view name);

  const std::vector<std::unique_ptr<Patch>>& patches() const { return patches_; }
  // Reverted (or forced away) patches whose code stays mapped.
  const std::vector<std::unique_ptr<Patch>>& kept() const { return kept_; }
  const std::map<uint64_t, FuncEntry>& functions() const { return funcs_; }
  const std::optional<Transition>& transition() const { return transition_; }
  const Patch* find(std::string_view name) const;

  // Gives back every piece retired with a number up to [upto]: the caller (the controller)
  // saw every thread that existed when retirement [upto] was made with its pc and all return
  // addresses outside every retired range (docs/consistency.md, "Memory"). Freed code is int3
  // before its room can be reused. Returns the bytes of code given back. Errors: a failed write
  // (the pieces stay retired).
  Result<uint64_t> reclaim(uint64_t upto);
  ArenaStats arena_stats() const;

  // Sticky: every later state-changing request fails with kind `agent` and [reason].
  void disable(std::string reason);
  const std::optional<std::string>& disabled() const { return disabled_; }

 private:
  Result<void> check_usable() const;
  Result<Patch*> find_in(std::string_view name, TransitionKind kind);
  void drop_patch(const Patch* p);
  uint64_t new_addr_of(std::string_view patch, uint64_t old_addr) const;
  uint64_t new_size_of(std::string_view patch, uint64_t old_addr) const;
  Result<Plan> load_per_thread(const LoadRequest& req, std::unique_ptr<LoadedObject> obj, std::unique_ptr<Patch> patch,
                               std::string* loaded_name);
  Result<void> abort_per_thread(Patch* p);
  Result<Plan> prepare_revert_per_thread(Patch* p);
  Result<Patch*> find_pt(std::string_view name, PtPhase phase);
  Result<void> restore_entry(const FuncEntry& e);
  // per_thread.cpp: a first redirection through a relocated entry, recorded in funcs_.
  Result<const FuncEntry*> redirect_with_continuation(const FuncRequest& f, Patch* patch);
  Plan pt_plan() const;
  // Stop-the-world through a generation word (generation.cpp).
  bool generation_possible(const LoadRequest& req) const;
  Result<Plan> load_generation(const LoadRequest& req, std::unique_ptr<LoadedObject> obj, std::unique_ptr<Patch> patch,
                               std::string* loaded_name);
  Result<Plan> prepare_revert_generation(const Patch* p);
  Result<void> settle_generation(Patch* p, bool finish);
  // Retirement (reclaim gives them back after a grace period).
  void retire_code(uint64_t addr);
  void retire_stub(const Stub& s, std::optional<RemoteRange> entry = std::nullopt);

  std::vector<std::unique_ptr<Patch>> patches_;
  std::map<uint64_t, FuncEntry> funcs_;  // by old_addr
  StubPool stubs_;
  std::optional<Transition> transition_;
  std::optional<std::string> disabled_;
  CodeArena arena_;
  // Unloaded after a forced transition, or flagged LIVEGRAFT_PATCH_KEEP_CODE: never unmapped.
  std::vector<std::unique_ptr<Patch>> kept_;
  uint64_t next_transition_id_ = 0;

  // Pieces that left the hot path, waiting for a grace period (docs/consistency.md, "Memory").
  std::vector<Retired> retired_;
  uint64_t retire_seq_ = 0;      // the number of the latest retirement
  uint64_t reclaimed_upto_ = 0;  // every retirement up to this number was given back
};

}  // namespace lg::agent
