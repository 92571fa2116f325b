// The agent protocol (controller ⇄ liblivegraft-agent.so), typed: one struct per request and
// per response, encoded and decoded here and nowhere else (docs/agent-protocol.md). Op names and
// keys are spelled once, in protocol.cpp. Used by the agent (libc-only: nlohmann-json and
// fmt header-only, no exceptions escape) and by the controller.
//
// Versioning: every request carries "v": kVersion; the agent refuses any other (or none) with
// kind `version`, except for `hello`, which any version may send to learn the agent's.
// Every response carries "v" too; the controller refuses a reply of another version (a reply
// without "v" comes from an agent older than protocol 2) and sends `hello` before its first
// state-changing request on a connection unless a reply already told it the agent's version.
//
// Decoding is total: any JSON value gives a value or an Error (kind invalid_argument, or
// version) whose message names the bad field ("funcs[2].orig_bytes: must be 5 bytes of hex").
// Nothing here throws (allocation failure included: it becomes an Error).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/remote.h"
#include "common/result.h"
#include "x86/continuation.h"
#include "x86/data_reference.h"

namespace lg::protocol {

// 1: untyped, unversioned lines. 2: "v" on every request and response.
inline constexpr int kVersion = 2;
inline constexpr size_t kMaxLine = 1 << 20;  // a request or response line, without its '\n'

// ---- Transport facts both sides need (docs/agent-protocol.md, Transport).
// "/tmp/livegraft-<uid>"
// The names (comm) of the agent's own threads: they run only agent code, never a patched
// function of the program, and reports count them apart.
inline constexpr const char* kAgentThreadName = "livegraft-agent";
inline constexpr const char* kAgentExecThreadName = "livegraft-exec";
inline bool is_agent_thread_name(std::string_view comm) { return comm == kAgentThreadName || comm == kAgentExecThreadName; }

std::string socket_dir(uid_t uid);
// "/tmp/livegraft-<uid>/agent-<pid>.sock"
std::string socket_path(uid_t uid, pid_t pid);
// The directories an agent serving [uid] may listen in, first choice first: socket_dir(uid),
// then one that no other user can create before the owner (any user can create a directory
// under /tmp first, owned by them, and so keep every process of [uid] from being patched):
// "/run/livegraft-0" for root (only root writes /run); for others "/run/user/<uid>/livegraft"
// (the login manager's per-user directory, when it exists), then root_made_socket_dir(uid),
// which only root can create (the controller does, run as root, when the others are unusable).
// The agent takes the first it can use; the controller looks for the socket in each one it
// trusts, in the same order.
std::vector<std::string> socket_dirs(uid_t uid);
// "/run/livegraft/<uid>": made by root for [uid] (owner uid, mode 0700) under root's
// /run/livegraft; no other user can create or replace either.
std::string root_made_socket_dir(uid_t uid);
// "<dir>/agent-<pid>.sock"
std::string socket_path_in(const std::string& dir, pid_t pid);
// Whose directory a process with these uids serves from: 0 when any of them is 0, the real uid
// when all three are equal, else the effective uid if it differs from the real one, else the
// saved one.
uid_t socket_uid(uid_t real_uid, uid_t effective_uid, uid_t saved_uid);

enum class Op {
  hello, status, load, prepare_revert, commit, abort, finish_revert, cancel_revert,
  poke_begin, poke_finish, complete, reverse, force, switch_early, reclaim,
};
const char* to_string(Op op);
std::optional<Op> op_from_string(std::string_view s);
// The op of a request line without decoding the rest (nullopt: not a request line with a
// known op). Cheap for short lines; used by the agent's server to sort hello/status.
std::optional<Op> peek_op(std::string_view line) noexcept;

// immediate: the per-thread machinery without any thread switching (docs/consistency.md):
// entry jumps written at once, the transition completed at once; only for patches flagged
// LIVEGRAFT_PATCH_IMMEDIATE.
enum class Model { stop_the_world, per_thread, immediate };
const char* to_string(Model m);  // "stop-the-world", "per-thread", "immediate"

// ---- Requests

struct HelloRequest { static constexpr Op op = Op::hello; };
struct StatusRequest { static constexpr Op op = Op::status; };

struct FuncRequest {
  std::string old_name;
  uint64_t old_sympos = 0;
  uint64_t old_addr = 0;
  uint64_t jump_addr = 0;               // where the 5-byte jmp goes (after an endbr64)
  std::array<uint8_t, 5> orig_bytes{};  // the bytes at jump_addr before anything was written
  uint32_t preserve = 0;  // registers an entry thunk keeps for the callers (src/x86/entry_thunk.h)
  uint64_t preserve_vec = 0;  // and its vector state at full width (x86::ThunkRegs::vec)
  // Per-thread model: the original code's ranges (function and .cold/.part pieces) and the
  // relocated entry instructions for threads that still run the original.
  std::vector<RemoteRange> old_ranges;
  std::optional<x86::ContinuationTemplate> continuation;
};

struct LoadRequest {
  static constexpr Op op = Op::load;
  std::string path;         // absolute; for display when the file came as a descriptor
  std::string object_name;  // "" for the main executable
  RemoteRange object;       // the whole target object, lo < hi
  std::vector<FuncRequest> funcs;
  std::map<std::string, uint64_t, std::less<>> symbols;
  std::set<std::string, std::less<>> dlsym_names;
  std::vector<x86::DataRef> data_refs;  // PC-relative external data the loader may rewrite
  Model model = Model::stop_the_world;
  int fd = -1;  // not encoded: the descriptor that came with the line (SCM_RIGHTS), not owned
};

struct PrepareRevertRequest {
  static constexpr Op op = Op::prepare_revert;
  std::string name;
  Model model = Model::stop_the_world;
};

// The requests that name a patch and nothing else.
template <Op O>
struct NamedRequest {
  static constexpr Op op = O;
  std::string name;
};
using CommitRequest = NamedRequest<Op::commit>;
using AbortRequest = NamedRequest<Op::abort>;
using FinishRevertRequest = NamedRequest<Op::finish_revert>;
using CancelRevertRequest = NamedRequest<Op::cancel_revert>;
using PokeBeginRequest = NamedRequest<Op::poke_begin>;
using PokeFinishRequest = NamedRequest<Op::poke_finish>;
using CompleteRequest = NamedRequest<Op::complete>;
using ReverseRequest = NamedRequest<Op::reverse>;
using ForceRequest = NamedRequest<Op::force>;
// The controller is about to switch threads while the entry int3s are live (before
// poke_finish): from now on the transition is never undone, only reversed or completed.
using SwitchEarlyRequest = NamedRequest<Op::switch_early>;

// The controller saw every thread that existed when retirement [upto] was made (the status's
// arena.retired_upto it read before stopping any) with its pc and every return address outside
// every retired range: the agent gives back the pieces retired up to [upto] (docs/consistency.md,
// "Memory"). An agent without this op answers invalid_argument (unknown op): nothing is freed.
struct ReclaimRequest {
  static constexpr Op op = Op::reclaim;
  uint64_t upto = 0;
};

using Request = std::variant<HelloRequest, StatusRequest, LoadRequest, PrepareRevertRequest, CommitRequest, AbortRequest,
                             FinishRevertRequest, CancelRevertRequest, PokeBeginRequest, PokeFinishRequest,
                             CompleteRequest, ReverseRequest, ForceRequest, SwitchEarlyRequest, ReclaimRequest>;
Op op_of(const Request& r);

// {"op":..., "v":[version], fields...}. [version] other than kVersion: for tests only.
nlohmann::json encode_request(const Request& r, int version = kVersion);
// Errors: invalid_argument naming the field; version when "v" is missing or not kVersion (not
// checked for hello).
Result<Request> decode_request(const nlohmann::json& j) noexcept;
// Parses a line too ("request is not valid JSON: ...").
Result<Request> decode_request_line(std::string_view line) noexcept;

// ---- Responses (all carry "ok" and "v")

struct ErrorResponse {
  ErrorKind kind = ErrorKind::agent;
  std::string message;
};

struct HelloResponse {
  int protocol = kVersion;
  int64_t pid = 0;
  std::optional<std::string> disabled;    // the sticky disabled state's reason
  std::optional<std::string> transition;  // the patch whose transition is in progress
};

struct Region {
  std::string name;
  uint64_t addr = 0, size = 0;
  std::string prot;  // "r-x"
};
struct EhFrame {
  uint64_t addr = 0, size = 0;
  bool registered = false;
};
struct PatchFuncInfo {
  std::string old_name;
  uint64_t old_sympos = 0, old_addr = 0, new_addr = 0, new_size = 0;
  std::optional<uint64_t> entry_thunk;  // what the slot points at when not new_addr
};
enum class PatchState { loaded, enabled };
const char* to_string(PatchState s);
struct PatchInfo {
  std::string name, path;
  PatchState state = PatchState::loaded;
  Model model = Model::stop_the_world;
  std::string object;  // the target object's name, "" for the main executable
  std::vector<Region> regions;
  std::vector<RemoteRange> code;  // the executable regions
  std::optional<EhFrame> eh_frame;
  std::vector<PatchFuncInfo> funcs;
};
struct FunctionInfo {  // one redirected function
  uint64_t old_addr = 0, stub = 0, slot = 0, jump_addr = 0;
  std::array<uint8_t, 5> orig_bytes{};
  std::vector<std::string> stack;  // patch names, newest last
};
enum class TransitionKind { apply, revert };
const char* to_string(TransitionKind k);
enum class Phase { prepared, poking, switching };
const char* to_string(Phase p);
struct PerThreadTransition {
  uint64_t id = 0;
  bool reversed = false, forced = false;
  Phase phase = Phase::prepared;
  int32_t marker_offset = 0;
  int64_t elapsed_ms = 0;
  std::vector<RemoteRange> check, check_target, interiors;
};
struct TransitionInfo {
  std::string patch;
  TransitionKind kind = TransitionKind::apply;
  Model model = Model::stop_the_world;
  std::optional<PerThreadTransition> per_thread;  // present when model is per_thread or immediate
};
// The agent's code arena (dispatch, switch thunks, continuations): bytes of pages mapped, of
// pieces in use, retired (out of the hot path, waiting for a grace period) and free; the
// latest retirement's number and the highest given back; the ranges a thread must be seen
// outside of (retired pieces, their stubs, entry bytes whose int3 may still send a thread there).
struct ArenaInfo {
  uint64_t mapped = 0, in_use = 0, retired = 0, free = 0;
  uint64_t retired_stubs = 0;
  uint64_t retired_upto = 0, reclaimed_upto = 0;
  std::vector<RemoteRange> retired_ranges;
};
struct StatusResponse {
  std::optional<std::string> disabled;
  std::vector<PatchInfo> patches;
  // Reverted patches whose code stays mapped (LIVEGRAFT_PATCH_KEEP_CODE, or a forced
  // transition): no longer applied, but a thread may run their code (a kept callback), so the
  // unwinder needs their regions and CFI. Optional ("kept"), absent from older agents.
  std::vector<PatchInfo> kept;
  std::vector<FunctionInfo> functions;
  std::optional<TransitionInfo> transition;
  uint64_t trap_redirects = 0;
  std::optional<ArenaInfo> arena;  // absent from an agent that does not report it
  const PatchInfo* find_patch(std::string_view name) const;
  // patches and kept: every patch whose code is mapped (for the unwinder).
  std::vector<PatchInfo> mapped_patches() const;
};

struct MemWrite {  // verify [old_bytes] at [addr], then write [new_bytes]
  uint64_t addr = 0;
  std::vector<uint8_t> old_bytes, new_bytes;
};
struct PerThreadPlan {
  uint64_t id = 0;
  int32_t marker_offset = 0;
  std::vector<RemoteRange> interiors, check_target;
};
struct Plan {
  std::vector<MemWrite> writes;
  std::vector<RemoteRange> check;
  std::optional<PerThreadPlan> per_thread;
};
struct LoadResponse {
  PatchInfo patch;
  Plan plan;
};
struct PrepareRevertResponse {
  Plan plan;
};
struct ReclaimResponse {
  uint64_t freed = 0;           // bytes of code given back
  uint64_t reclaimed_upto = 0;  // the agent's arena.reclaimed_upto after it
};
struct OkResponse {};  // commit, abort, finish_revert, cancel_revert, poke_*, complete, reverse, force

// The response type of each request type.
template <class Req> struct ResponseOf { using type = OkResponse; };
template <> struct ResponseOf<HelloRequest> { using type = HelloResponse; };
template <> struct ResponseOf<StatusRequest> { using type = StatusResponse; };
template <> struct ResponseOf<LoadRequest> { using type = LoadResponse; };
template <> struct ResponseOf<PrepareRevertRequest> { using type = PrepareRevertResponse; };
template <> struct ResponseOf<ReclaimRequest> { using type = ReclaimResponse; };

nlohmann::json encode(const ErrorResponse& r);
nlohmann::json encode(const HelloResponse& r);
nlohmann::json encode(const StatusResponse& r);
nlohmann::json encode(const LoadResponse& r);
nlohmann::json encode(const PrepareRevertResponse& r);
nlohmann::json encode(const OkResponse& r);
nlohmann::json encode(const ReclaimResponse& r);
nlohmann::json encode(const ArenaInfo& a);
nlohmann::json encode(const PatchInfo& p);  // a status's "patches" entry, also the controller's output
nlohmann::json encode(const TransitionInfo& t);
nlohmann::json encode_ranges(const std::vector<RemoteRange>& rs);

// The version a response line carries: nullopt when it has none (protocol 1) or is not an object.
std::optional<int> response_version(const nlohmann::json& j) noexcept;
// An error response ("ok": false): its kind and message; nullopt when [j] is not one.
std::optional<ErrorResponse> decode_error(const nlohmann::json& j) noexcept;
// Decoders of successful responses ("ok": true; the version is checked by the caller).
Result<HelloResponse> decode_hello(const nlohmann::json& j) noexcept;
Result<StatusResponse> decode_status(const nlohmann::json& j) noexcept;
Result<LoadResponse> decode_load(const nlohmann::json& j) noexcept;
Result<PrepareRevertResponse> decode_prepare_revert(const nlohmann::json& j) noexcept;
Result<OkResponse> decode_ok(const nlohmann::json& j) noexcept;
Result<ReclaimResponse> decode_reclaim(const nlohmann::json& j) noexcept;
Result<PatchInfo> decode_patch(const nlohmann::json& j) noexcept;

template <class Resp> Result<Resp> decode_response(const nlohmann::json& j) noexcept;
template <> inline Result<HelloResponse> decode_response(const nlohmann::json& j) noexcept { return decode_hello(j); }
template <> inline Result<StatusResponse> decode_response(const nlohmann::json& j) noexcept { return decode_status(j); }
template <> inline Result<LoadResponse> decode_response(const nlohmann::json& j) noexcept { return decode_load(j); }
template <> inline Result<PrepareRevertResponse> decode_response(const nlohmann::json& j) noexcept { return decode_prepare_revert(j); }
template <> inline Result<OkResponse> decode_response(const nlohmann::json& j) noexcept { return decode_ok(j); }
template <> inline Result<ReclaimResponse> decode_response(const nlohmann::json& j) noexcept { return decode_reclaim(j); }

// ErrorKind by its name ("busy"); agent for an unknown name.
ErrorKind kind_from_name(std::string_view name);

}  // namespace lg::protocol
