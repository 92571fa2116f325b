// The agent's registry: loaded patches, per-function implementation stacks and stubs, and the
// one transition that may be in progress. It plans code writes; the controller performs them
// while every thread is stopped (docs/agent-protocol.md). Not thread-safe: the protocol layer
// serializes calls.
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

#include "agent/loader.h"
#include "agent/stubs.h"
#include "common/remote.h"
#include "common/result.h"

namespace lg::agent {

struct FuncRequest {
  std::string old_name;
  uint64_t old_sympos = 0;
  uint64_t old_addr = 0;
  uint64_t jump_addr = 0;              // where the 5-byte jmp goes (after an endbr64)
  std::array<uint8_t, 5> orig_bytes{};  // the bytes at jump_addr before anything was written
};

struct LoadRequest {
  std::string path;         // for display; the file is read from [fd] when one came with the request
  int fd = -1;              // not owned: the connection's received descriptor (SCM_RIGHTS)
  std::string object_name;  // "" for the main executable
  RemoteRange object;       // the whole target object
  std::vector<FuncRequest> funcs;
  std::map<std::string, uint64_t, std::less<>> symbols;
  std::set<std::string, std::less<>> dlsym_names;
};

// One memory write for the controller: verify [old] at [addr], then write [new_bytes].
struct MemWrite {
  uint64_t addr = 0;
  std::vector<uint8_t> old_bytes, new_bytes;
};

struct Plan {
  std::vector<MemWrite> writes;
  std::vector<RemoteRange> check;  // code no stopped thread may be executing in
};

struct PatchFunc {
  std::string old_name;
  uint64_t old_sympos = 0;
  uint64_t old_addr = 0;
  uint64_t new_addr = 0;
  uint64_t new_size = 0;
};

enum class PatchState { loaded, enabled };
const char* to_string(PatchState s);

struct Patch {
  std::string name, path, object_name;
  PatchState state = PatchState::loaded;
  std::unique_ptr<LoadedObject> object;
  std::vector<PatchFunc> funcs;
  std::vector<uint64_t> created_funcs;  // old_addrs whose stub this patch's load created
};

struct FuncEntry {
  uint64_t old_addr = 0, jump_addr = 0;
  std::array<uint8_t, 5> orig_bytes{};
  Stub stub;
  std::vector<std::string> stack;  // patch names, newest last
};

enum class TransitionKind { load, revert };

struct Transition {
  TransitionKind kind;
  std::string patch;
  std::vector<MemWrite> writes;  // what the controller was told to write
};

class Registry {
 public:
  // Loads the patch and plans its application. Errors: busy, agent (disabled), not_found,
  // bad_patch, unsupported, mismatch (request vs metadata, or code bytes), invalid_argument.
  Result<Plan> load(const LoadRequest& req, std::string* loaded_name = nullptr);
  Result<void> commit(std::string_view name);
  Result<void> abort(std::string_view name);
  Result<Plan> prepare_revert(std::string_view name);
  Result<void> finish_revert(std::string_view name);
  Result<void> cancel_revert(std::string_view name);
  // The controller's connection closed with a transition still open (it was killed, or lost
  // its connection). The agent's own memory says how far it got: no planned write done ->
  // abort/cancel; every write done -> commit/finish; some -> disabled (a state only a person
  // can sort out). Returns what it did, or nothing when no transition was open.
  std::optional<std::string> resolve_abandoned_transition();

  const std::vector<std::unique_ptr<Patch>>& patches() const { return patches_; }
  const std::map<uint64_t, FuncEntry>& functions() const { return funcs_; }
  const std::optional<Transition>& transition() const { return transition_; }
  const Patch* find(std::string_view name) const;

  // Sticky: every later state-changing request fails with kind `agent` and [reason].
  void disable(std::string reason);
  const std::optional<std::string>& disabled() const { return disabled_; }

 private:
  Result<void> check_usable() const;
  Result<Patch*> find_in(std::string_view name, TransitionKind kind);
  void drop_patch(const Patch* p);
  uint64_t new_addr_of(std::string_view patch, uint64_t old_addr) const;

  std::vector<std::unique_ptr<Patch>> patches_;
  std::map<uint64_t, FuncEntry> funcs_;  // by old_addr
  StubPool stubs_;
  std::optional<Transition> transition_;
  std::optional<std::string> disabled_;
};

}  // namespace lg::agent
