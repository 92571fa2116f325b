// The one place where the agent protocol's op names and keys are spelled (protocol.h).
#include "protocol/protocol.h"

#include <fmt/format.h>

#include "common/hex.h"

namespace lg::protocol {

using nlohmann::json;

std::string socket_dir(uid_t uid) { return fmt::format("/tmp/livegraft-{}", uid); }
std::string socket_path(uid_t uid, pid_t pid) { return socket_path_in(socket_dir(uid), pid); }
std::string socket_path_in(const std::string& dir, pid_t pid) { return fmt::format("{}/agent-{}.sock", dir, pid); }
std::vector<std::string> socket_dirs(uid_t uid) {
  if (uid == 0) return {socket_dir(uid), "/run/livegraft-0"};
  return {socket_dir(uid), fmt::format("/run/user/{}/livegraft", uid), root_made_socket_dir(uid)};
}
std::string root_made_socket_dir(uid_t uid) { return fmt::format("/run/livegraft/{}", uid); }
uid_t socket_uid(uid_t real_uid, uid_t effective_uid, uid_t saved_uid) {
  if (real_uid == 0 || effective_uid == 0 || saved_uid == 0) return 0;
  if (effective_uid != real_uid) return effective_uid;
  return saved_uid;
}

namespace {

// Keys, spelled once.
constexpr const char* kOp = "op";
constexpr const char* kV = "v";
constexpr const char* kOk = "ok";
constexpr const char* kError = "error";
constexpr const char* kKind = "kind";
constexpr const char* kName = "name";
constexpr const char* kModel = "model";

constexpr std::pair<Op, const char*> kOps[] = {
    {Op::hello, "hello"},           {Op::status, "status"},         {Op::load, "load"},
    {Op::prepare_revert, "prepare_revert"}, {Op::commit, "commit"}, {Op::abort, "abort"},
    {Op::finish_revert, "finish_revert"}, {Op::cancel_revert, "cancel_revert"}, {Op::poke_begin, "poke_begin"},
    {Op::poke_finish, "poke_finish"}, {Op::complete, "complete"},   {Op::reverse, "reverse"},
    {Op::force, "force"},             {Op::switch_early, "switch_early"}, {Op::reclaim, "reclaim"},
};

constexpr ErrorKind kKinds[] = {ErrorKind::invalid_argument, ErrorKind::not_found, ErrorKind::permission, ErrorKind::busy,
                                ErrorKind::bad_patch, ErrorKind::unsupported, ErrorKind::mismatch, ErrorKind::unsafe,
                                ErrorKind::timeout, ErrorKind::thread_died, ErrorKind::io, ErrorKind::agent,
                                ErrorKind::version, ErrorKind::internal};

// ---- Total decoding: the first problem is kept (with the path of the field), later reads of
// a failed decode return defaults and are ignored.
class Decoder {
 public:
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  void fail(std::string_view path, std::string_view what) {
    if (error_.empty()) error_ = fmt::format("field '{}' {}", path, what);
  }
  void fail_plain(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }

  static std::string join(std::string_view base, std::string_view key) {
    return base.empty() ? std::string(key) : fmt::format("{}.{}", base, key);
  }
  static std::string index(std::string_view base, size_t i) { return fmt::format("{}[{}]", base, i); }

  // The member [key] of [obj]; nullptr when absent (reported when [required]) or on failure.
  const json* member(const json& obj, std::string_view base, const char* key, bool required = true) {
    if (failed()) return nullptr;
    if (!obj.is_object()) {
      base.empty() ? fail_plain("must be a JSON object") : fail(base, "must be an object");
      return nullptr;
    }
    auto it = obj.find(key);
    if (it == obj.end()) {
      if (required) fail_plain(fmt::format("missing field '{}'", join(base, key)));
      return nullptr;
    }
    return &*it;
  }

  static bool is_u64(const json& v) {
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  }
  uint64_t u64_of(const json& v, std::string_view path) {
    if (failed()) return 0;
    if (!is_u64(v)) {
      fail(path, "must be an unsigned integer");
      return 0;
    }
    return v.get<uint64_t>();
  }
  uint64_t u64(const json& obj, std::string_view base, const char* key, std::optional<uint64_t> dflt = std::nullopt) {
    const json* v = member(obj, base, key, !dflt);
    if (!v) return dflt.value_or(0);
    return u64_of(*v, join(base, key));
  }
  uint32_t u32(const json& obj, std::string_view base, const char* key, std::optional<uint32_t> dflt = std::nullopt) {
    uint64_t v = u64(obj, base, key, dflt);
    if (v > UINT32_MAX) fail(join(base, key), "must fit in 32 bits");
    return static_cast<uint32_t>(v);
  }
  uint8_t u8(const json& obj, std::string_view base, const char* key) {
    uint64_t v = u64(obj, base, key);
    if (v > UINT8_MAX) fail(join(base, key), "must fit in 8 bits");
    return static_cast<uint8_t>(v);
  }
  int64_t i64(const json& obj, std::string_view base, const char* key) {
    const json* v = member(obj, base, key);
    if (!v) return 0;
    if (!v->is_number_integer()) {
      fail(join(base, key), "must be an integer");
      return 0;
    }
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      fail(join(base, key), "is out of range");
      return 0;
    }
    return v->get<int64_t>();
  }
  int32_t i32(const json& obj, std::string_view base, const char* key) {
    int64_t v = i64(obj, base, key);
    if (v < INT32_MIN || v > INT32_MAX) fail(join(base, key), "must fit in 32 bits");
    return static_cast<int32_t>(v);
  }
  bool boolean(const json& obj, std::string_view base, const char* key) {
    const json* v = member(obj, base, key);
    if (!v) return false;
    if (!v->is_boolean()) {
      fail(join(base, key), "must be true or false");
      return false;
    }
    return v->get<bool>();
  }
  std::string str_of(const json& v, std::string_view path) {
    if (failed()) return {};
    if (!v.is_string()) {
      fail(path, "must be a string");
      return {};
    }
    return v.get<std::string>();
  }
  std::string str(const json& obj, std::string_view base, const char* key) {
    const json* v = member(obj, base, key);
    return v ? str_of(*v, join(base, key)) : std::string();
  }
  // A string or null.
  std::optional<std::string> nullable_str(const json& obj, std::string_view base, const char* key) {
    const json* v = member(obj, base, key);
    if (!v || v->is_null()) return std::nullopt;
    return str_of(*v, join(base, key));
  }
  // An array member: nullptr (reported) when it is something else.
  const json* array(const json& obj, std::string_view base, const char* key, bool required = true) {
    const json* v = member(obj, base, key, required);
    if (v && !v->is_array()) {
      fail(join(base, key), "must be an array");
      return nullptr;
    }
    return v;
  }
  std::vector<uint8_t> hex(const json& obj, std::string_view base, const char* key, size_t min, size_t max) {
    std::string s = str(obj, base, key);
    if (failed()) return {};
    auto bytes = from_hex(s);
    if (!bytes || bytes->size() < min || bytes->size() > max) {
      fail(join(base, key), min == max ? fmt::format("must be {} bytes of hex", min)
                                       : fmt::format("must be {}..{} bytes of hex", min, max));
      return {};
    }
    return std::move(*bytes);
  }
  std::array<uint8_t, 5> five(const json& obj, std::string_view base, const char* key) {
    auto v = hex(obj, base, key, 5, 5);
    std::array<uint8_t, 5> out{};
    if (v.size() == 5) std::copy(v.begin(), v.end(), out.begin());
    return out;
  }
  RemoteRange range_of(const json& r, std::string_view path) {
    if (failed()) return {};
    if (!r.is_array() || r.size() != 2 || !is_u64(r[0]) || !is_u64(r[1]) || r[1].get<uint64_t>() < r[0].get<uint64_t>()) {
      fail(path, "must be [lo, hi] with lo <= hi");
      return {};
    }
    return {RemoteAddr(r[0].get<uint64_t>()), RemoteAddr(r[1].get<uint64_t>())};
  }
  std::vector<RemoteRange> ranges(const json& obj, std::string_view base, const char* key, bool required = true) {
    std::vector<RemoteRange> out;
    const json* v = array(obj, base, key, required);
    if (!v) return out;
    std::string path = join(base, key);
    for (size_t i = 0; i < v->size() && !failed(); ++i) out.push_back(range_of((*v)[i], index(path, i)));
    return out;
  }
  Model model(const json& obj, std::string_view base, bool required) {
    const json* v = member(obj, base, kModel, required);
    if (!v) return Model::stop_the_world;
    std::string m = str_of(*v, join(base, kModel));
    if (m == to_string(Model::per_thread)) return Model::per_thread;
    if (m == to_string(Model::stop_the_world)) return Model::stop_the_world;
    if (m == to_string(Model::immediate)) return Model::immediate;
    fail(join(base, kModel), "must be \"per-thread\", \"stop-the-world\" or \"immediate\"");
    return Model::stop_the_world;
  }
  std::vector<std::string> strings(const json& obj, std::string_view base, const char* key) {
    std::vector<std::string> out;
    const json* v = array(obj, base, key);
    if (!v) return out;
    for (size_t i = 0; i < v->size() && !failed(); ++i) out.push_back(str_of((*v)[i], index(join(base, key), i)));
    return out;
  }

 private:
  std::string error_;
};

json range_json(const RemoteRange& r) { return json::array({r.lo.value, r.hi.value}); }

template <class T>
Result<T> finish(Decoder& d, T value, const char* what) {
  if (d.failed()) return Error(ErrorKind::invalid_argument, fmt::format("{}: {}", what, d.error()));
  return value;
}

// ---- Requests

x86::ContinuationTemplate decode_continuation(Decoder& d, const json& c, const std::string& at) {
  x86::ContinuationTemplate t;
  if (!c.is_object()) {
    d.fail(at, "must be an object");
    return t;
  }
  t.bytes = d.hex(c, at, "bytes", 1, 256);
  t.resume = d.u64(c, at, "resume");
  t.displaced = d.u32(c, at, "displaced");
  const json* fx = d.array(c, at, "fixups");
  if (!fx) return t;
  std::string fat = Decoder::join(at, "fixups");
  for (size_t i = 0; i < fx->size() && !d.failed(); ++i) {
    std::string fi = Decoder::index(fat, i);
    const json& f = (*fx)[i];
    x86::Rel32Fixup r{d.u32(f, fi, "offset"), d.u32(f, fi, "end"), d.u64(f, fi, "target")};
    if (!d.failed() && (uint64_t{r.offset} + 4 > t.bytes.size() || r.end > t.bytes.size() || uint64_t{r.end} < uint64_t{r.offset} + 4))
      d.fail(fi, "lies outside the continuation's bytes");
    t.fixups.push_back(r);
  }
  return t;
}

LoadRequest decode_load_fields(Decoder& d, const json& j) {
  LoadRequest r;
  r.path = d.str(j, "", "path");
  if (!d.failed() && (r.path.empty() || r.path[0] != '/')) d.fail("path", "must be an absolute path");
  if (const json* o = d.member(j, "", "object")) {
    if (!o->is_object()) d.fail("object", "must be an object");
    r.object_name = d.str(*o, "object", kName);
    r.object = {RemoteAddr(d.u64(*o, "object", "lo")), RemoteAddr(d.u64(*o, "object", "hi"))};
    if (!d.failed() && r.object.hi <= r.object.lo) d.fail("object.hi", "must be above 'lo'");
  }
  if (const json* funcs = d.array(j, "", "funcs")) {
    for (size_t i = 0; i < funcs->size() && !d.failed(); ++i) {
      const json& f = (*funcs)[i];
      std::string at = Decoder::index("funcs", i);
      if (!f.is_object()) {
        d.fail(at, "must be an object");
        break;
      }
      FuncRequest fr;
      fr.old_name = d.str(f, at, "old_name");
      fr.old_sympos = d.u64(f, at, "old_sympos", 0);
      fr.old_addr = d.u64(f, at, "old_addr");
      fr.jump_addr = d.u64(f, at, "jump_addr", fr.old_addr);
      fr.orig_bytes = d.five(f, at, "orig_bytes");
      fr.preserve = d.u32(f, at, "preserve", 0);
      fr.preserve_vec = d.u64(f, at, "preserve_vec", 0);
      fr.old_ranges = d.ranges(f, at, "old_ranges", false);
      if (const json* c = d.member(f, at, "continuation", false)) fr.continuation = decode_continuation(d, *c, Decoder::join(at, "continuation"));
      r.funcs.push_back(std::move(fr));
    }
  }
  if (const json* s = d.member(j, "", "symbols", false)) {
    if (!s->is_object()) d.fail("symbols", "must be an object of name: address");
    for (auto it = s->begin(); it != s->end() && !d.failed(); ++it)
      r.symbols[it.key()] = d.u64_of(*it, Decoder::join("symbols", it.key()));
  }
  if (const json* list = d.array(j, "", "dlsym", false))
    for (size_t i = 0; i < list->size() && !d.failed(); ++i) r.dlsym_names.insert(d.str_of((*list)[i], Decoder::index("dlsym", i)));
  if (const json* refs = d.array(j, "", "data_refs", false)) {
    for (size_t i = 0; i < refs->size() && !d.failed(); ++i) {
      const json& x = (*refs)[i];
      std::string at = Decoder::index("data_refs", i);
      if (!x.is_object()) {
        d.fail(at, "must be an object");
        break;
      }
      x86::DataRef ref;
      ref.section = d.u32(x, at, "section");
      ref.offset = d.u64(x, at, "offset");
      ref.insn = d.u64(x, at, "insn");
      ref.len = d.u8(x, at, "len");
      std::string kind = d.str(x, at, kKind);
      if (d.failed()) break;
      auto k = x86::data_ref_kind_from_string(kind);
      if (!k) {
        d.fail(Decoder::join(at, kKind), "must be \"lea\", \"load\" or \"generic\"");
        break;
      }
      ref.kind = *k;
      if (ref.kind == x86::DataRefKind::generic) {
        ref.body = d.hex(x, at, "body", 1, 15);
        ref.scratch = d.u8(x, at, "scratch");
        if (!d.failed() && ref.scratch > 15) d.fail(Decoder::join(at, "scratch"), "must be a register number 0..15");
      }
      r.data_refs.push_back(std::move(ref));
    }
  }
  r.model = d.model(j, "", false);
  return r;
}

json encode_load_fields(const LoadRequest& r) {
  json funcs = json::array();
  for (const auto& f : r.funcs) {
    json e = {{"old_name", f.old_name}, {"old_sympos", f.old_sympos}, {"old_addr", f.old_addr}, {"jump_addr", f.jump_addr},
              {"orig_bytes", to_hex(f.orig_bytes)}, {"preserve", f.preserve}};
    if (f.preserve_vec) e["preserve_vec"] = f.preserve_vec;
    if (!f.old_ranges.empty()) e["old_ranges"] = encode_ranges(f.old_ranges);
    if (f.continuation) {
      json fixups = json::array();
      for (const auto& x : f.continuation->fixups) fixups.push_back({{"offset", x.offset}, {"end", x.end}, {"target", x.target}});
      e["continuation"] = {{"bytes", to_hex(f.continuation->bytes)}, {"fixups", fixups}, {"resume", f.continuation->resume},
                           {"displaced", f.continuation->displaced}};
    }
    funcs.push_back(std::move(e));
  }
  json symbols = json::object();
  for (const auto& [name, addr] : r.symbols) symbols[name] = addr;
  json refs = json::array();
  for (const auto& x : r.data_refs) {
    json e = {{"section", x.section}, {"offset", x.offset}, {"insn", x.insn}, {"len", x.len}, {kKind, x86::to_string(x.kind)}};
    if (x.kind == x86::DataRefKind::generic) {
      e["body"] = to_hex(x.body);
      e["scratch"] = x.scratch;
    }
    refs.push_back(std::move(e));
  }
  return {{"path", r.path},
          {"object", {{kName, r.object_name}, {"lo", r.object.lo.value}, {"hi", r.object.hi.value}}},
          {"funcs", std::move(funcs)},
          {"symbols", std::move(symbols)},
          {"dlsym", r.dlsym_names},
          {"data_refs", std::move(refs)},
          {kModel, to_string(r.model)}};
}

std::string version_text(const json* v) {
  if (!v) return "none (protocol 1)";
  if (v->is_number_integer()) return std::to_string(v->get<int64_t>());
  return "a " + std::string(v->type_name());
}

Result<Request> decode_request_unchecked(const json& j) {
  if (!j.is_object()) return make_error(ErrorKind::invalid_argument, "malformed request: a request must be a JSON object");
  Decoder d;
  std::string op_name = d.str(j, "", kOp);
  if (d.failed()) return Error(ErrorKind::invalid_argument, "malformed request: " + d.error());
  auto op = op_from_string(op_name);
  if (op != Op::hello) {  // hello is how any controller learns the agent's version
    auto v = j.find(kV);
    const json* vp = v == j.end() ? nullptr : &*v;
    if (!vp || !vp->is_number_integer() || vp->get<int64_t>() != kVersion)
      return Error(ErrorKind::version,
                   fmt::format("the request speaks agent protocol {}, this agent speaks protocol {}", version_text(vp), kVersion), 0,
                   "use the livegraft of the agent's version, or restart the process to load the new agent");
  }
  if (!op) return make_error(ErrorKind::invalid_argument, "malformed request: unknown op '{}'", op_name);
  auto named = [&]<class T>(T r) -> Result<Request> {
    r.name = d.str(j, "", kName);
    return finish<Request>(d, std::move(r), "malformed request");
  };
  switch (*op) {
    case Op::hello: return Request{HelloRequest{}};
    case Op::status: return Request{StatusRequest{}};
    case Op::load: return finish<Request>(d, decode_load_fields(d, j), "malformed request");
    case Op::prepare_revert: {
      PrepareRevertRequest r;
      r.name = d.str(j, "", kName);
      r.model = d.model(j, "", false);
      return finish<Request>(d, std::move(r), "malformed request");
    }
    case Op::commit: return named(CommitRequest{});
    case Op::abort: return named(AbortRequest{});
    case Op::finish_revert: return named(FinishRevertRequest{});
    case Op::cancel_revert: return named(CancelRevertRequest{});
    case Op::poke_begin: return named(PokeBeginRequest{});
    case Op::poke_finish: return named(PokeFinishRequest{});
    case Op::complete: return named(CompleteRequest{});
    case Op::reverse: return named(ReverseRequest{});
    case Op::force: return named(ForceRequest{});
    case Op::switch_early: return named(SwitchEarlyRequest{});
    case Op::reclaim: {
      ReclaimRequest r;
      r.upto = d.u64(j, "", "upto");
      return finish<Request>(d, std::move(r), "malformed request");
    }
  }
  return make_error(ErrorKind::invalid_argument, "malformed request: unknown op '{}'", op_name);
}

// ---- Responses

json ok_json() { return {{kOk, true}, {kV, kVersion}}; }

json nullable(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }

json plan_fields(const Plan& plan) {
  json writes = json::array();
  for (const auto& w : plan.writes) writes.push_back({{"addr", w.addr}, {"old", to_hex(w.old_bytes)}, {"new", to_hex(w.new_bytes)}});
  json out = ok_json();
  out["writes"] = std::move(writes);
  out["check"] = encode_ranges(plan.check);
  if (plan.per_thread)
    out["per_thread"] = {{"id", plan.per_thread->id},
                         {"marker_offset", plan.per_thread->marker_offset},
                         {"interiors", encode_ranges(plan.per_thread->interiors)},
                         {"check_target", encode_ranges(plan.per_thread->check_target)}};
  return out;
}

Plan decode_plan(Decoder& d, const json& j) {
  Plan plan;
  if (const json* ws = d.array(j, "", "writes")) {
    for (size_t i = 0; i < ws->size() && !d.failed(); ++i) {
      std::string at = Decoder::index("writes", i);
      MemWrite w;
      w.addr = d.u64((*ws)[i], at, "addr");
      w.old_bytes = d.hex((*ws)[i], at, "old", 1, 4096);
      w.new_bytes = d.hex((*ws)[i], at, "new", 1, 4096);
      if (!d.failed() && w.old_bytes.size() != w.new_bytes.size()) d.fail(at, "must have 'old' and 'new' of one size");
      plan.writes.push_back(std::move(w));
    }
  }
  plan.check = d.ranges(j, "", "check");
  if (const json* p = d.member(j, "", "per_thread", false); p && !p->is_null()) {
    PerThreadPlan pt;
    pt.id = d.u64(*p, "per_thread", "id");
    pt.marker_offset = d.i32(*p, "per_thread", "marker_offset");
    pt.interiors = d.ranges(*p, "per_thread", "interiors");
    pt.check_target = d.ranges(*p, "per_thread", "check_target");
    plan.per_thread = std::move(pt);
  }
  return plan;
}

template <class E>
E enum_of(Decoder& d, const json& obj, std::string_view base, const char* key, std::initializer_list<E> values) {
  std::string s = d.str(obj, base, key);
  if (d.failed()) return *values.begin();
  for (E e : values)
    if (s == to_string(e)) return e;
  std::string names;
  for (E e : values) names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", to_string(e));
  d.fail(Decoder::join(base, key), "must be one of " + names);
  return *values.begin();
}

PatchInfo decode_patch_info(Decoder& d, const json& p, const std::string& at) {
  PatchInfo out;
  if (!p.is_object()) {
    d.fail(at, "must be an object");
    return out;
  }
  out.name = d.str(p, at, kName);
  out.path = d.str(p, at, "path");
  out.state = enum_of(d, p, at, "state", {PatchState::loaded, PatchState::enabled});
  out.model = d.model(p, at, true);
  out.object = d.str(p, at, "object");
  if (const json* rs = d.array(p, at, "regions")) {
    for (size_t i = 0; i < rs->size() && !d.failed(); ++i) {
      std::string ri = Decoder::index(Decoder::join(at, "regions"), i);
      const json& r = (*rs)[i];
      out.regions.push_back({d.str(r, ri, kName), d.u64(r, ri, "addr"), d.u64(r, ri, "size"), d.str(r, ri, "prot")});
    }
  }
  out.code = d.ranges(p, at, "code");
  if (const json* eh = d.member(p, at, "eh_frame"); eh && !eh->is_null()) {
    std::string ea = Decoder::join(at, "eh_frame");
    out.eh_frame = EhFrame{d.u64(*eh, ea, "addr"), d.u64(*eh, ea, "size"), d.boolean(*eh, ea, "registered")};
  }
  if (const json* fs = d.array(p, at, "funcs")) {
    for (size_t i = 0; i < fs->size() && !d.failed(); ++i) {
      std::string fi = Decoder::index(Decoder::join(at, "funcs"), i);
      const json& f = (*fs)[i];
      PatchFuncInfo pf{d.str(f, fi, "old_name"), d.u64(f, fi, "old_sympos"), d.u64(f, fi, "old_addr"),
                       d.u64(f, fi, "new_addr"), d.u64(f, fi, "new_size"), std::nullopt};
      if (d.member(f, fi, "entry_thunk", false)) pf.entry_thunk = d.u64(f, fi, "entry_thunk");
      out.funcs.push_back(std::move(pf));
    }
  }
  return out;
}

TransitionInfo decode_transition(Decoder& d, const json& t) {
  TransitionInfo out;
  const std::string at = "transition";
  out.patch = d.str(t, at, "patch");
  out.kind = enum_of(d, t, at, kKind, {TransitionKind::apply, TransitionKind::revert});
  out.model = d.model(t, at, true);
  if (out.model != Model::stop_the_world && !d.failed()) {
    PerThreadTransition pt;
    pt.id = d.u64(t, at, "id");
    pt.reversed = d.boolean(t, at, "reversed");
    pt.forced = d.boolean(t, at, "forced");
    pt.phase = enum_of(d, t, at, "phase", {Phase::prepared, Phase::poking, Phase::switching});
    pt.marker_offset = d.i32(t, at, "marker_offset");
    pt.elapsed_ms = d.i64(t, at, "elapsed_ms");
    pt.check = d.ranges(t, at, "check");
    pt.check_target = d.ranges(t, at, "check_target");
    pt.interiors = d.ranges(t, at, "interiors");
    out.per_thread = std::move(pt);
  }
  return out;
}

}  // namespace

const char* to_string(Op op) {
  for (const auto& [o, name] : kOps)
    if (o == op) return name;
  return "?";
}

std::optional<Op> op_from_string(std::string_view s) {
  for (const auto& [o, name] : kOps)
    if (s == name) return o;
  return std::nullopt;
}

std::optional<Op> peek_op(std::string_view line) noexcept {
  try {
    if (line.size() > 256) {
      // Long lines are loads (or junk): find the op without parsing the whole line.
      auto p = line.find("\"op\"");
      if (p == std::string_view::npos) return std::nullopt;
      auto q = line.find('"', line.find(':', p) + 1);
      if (q == std::string_view::npos) return std::nullopt;
      auto e = line.find('"', q + 1);
      if (e == std::string_view::npos) return std::nullopt;
      auto op = op_from_string(line.substr(q + 1, e - q - 1));
      return op == Op::hello || op == Op::status ? std::nullopt : op;  // those are short
    }
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    auto it = j.find(kOp);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    return op_from_string(it->get<std::string>());
  } catch (...) {
    return std::nullopt;
  }
}

const char* to_string(Model m) {
  return m == Model::per_thread ? "per-thread" : m == Model::immediate ? "immediate" : "stop-the-world";
}
const char* to_string(PatchState s) { return s == PatchState::loaded ? "loaded" : "enabled"; }
const char* to_string(TransitionKind k) { return k == TransitionKind::apply ? "apply" : "revert"; }
const char* to_string(Phase p) {
  switch (p) {
    case Phase::prepared: return "prepared";
    case Phase::poking: return "poking";
    case Phase::switching: return "switching";
  }
  return "?";
}

Op op_of(const Request& r) {
  return std::visit([](const auto& x) { return std::decay_t<decltype(x)>::op; }, r);
}

json encode_request(const Request& r, int version) {
  json out = std::visit(
      [](const auto& x) -> json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, HelloRequest> || std::is_same_v<T, StatusRequest>) return json::object();
        else if constexpr (std::is_same_v<T, LoadRequest>) return encode_load_fields(x);
        else if constexpr (std::is_same_v<T, PrepareRevertRequest>) return {{kName, x.name}, {kModel, to_string(x.model)}};
        else if constexpr (std::is_same_v<T, ReclaimRequest>) return {{"upto", x.upto}};
        else return {{kName, x.name}};
      },
      r);
  out[kOp] = to_string(op_of(r));
  out[kV] = version;
  return out;
}

Result<Request> decode_request(const json& j) noexcept {
  try {
    return decode_request_unchecked(j);
  } catch (const std::exception& e) {
    return Error(ErrorKind::invalid_argument, fmt::format("malformed request: {}", e.what()));
  } catch (...) {
    return Error(ErrorKind::invalid_argument, "malformed request");
  }
}

Result<Request> decode_request_line(std::string_view line) noexcept {
  try {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) return make_error(ErrorKind::invalid_argument, "request is not valid JSON");
    return decode_request(j);
  } catch (...) {
    return Error(ErrorKind::invalid_argument, "malformed request");
  }
}

json encode_ranges(const std::vector<RemoteRange>& rs) {
  json out = json::array();
  for (const auto& r : rs) out.push_back(range_json(r));
  return out;
}

json encode(const ErrorResponse& r) { return {{kOk, false}, {kV, kVersion}, {kError, r.message}, {kKind, lg::to_string(r.kind)}}; }

json encode(const HelloResponse& r) {
  json out = ok_json();
  out["protocol"] = r.protocol;
  out["pid"] = r.pid;
  out["disabled"] = nullable(r.disabled);
  out["transition"] = nullable(r.transition);
  return out;
}

json encode(const PatchInfo& p) {
  json regions = json::array(), funcs = json::array();
  for (const auto& r : p.regions) regions.push_back({{kName, r.name}, {"addr", r.addr}, {"size", r.size}, {"prot", r.prot}});
  for (const auto& f : p.funcs) {
    funcs.push_back({{"old_name", f.old_name}, {"old_sympos", f.old_sympos}, {"old_addr", f.old_addr}, {"new_addr", f.new_addr},
                     {"new_size", f.new_size}});
    if (f.entry_thunk) funcs.back()["entry_thunk"] = *f.entry_thunk;
  }
  json eh = nullptr;
  if (p.eh_frame) eh = {{"addr", p.eh_frame->addr}, {"size", p.eh_frame->size}, {"registered", p.eh_frame->registered}};
  return {{kName, p.name}, {"path", p.path},           {"state", to_string(p.state)}, {kModel, to_string(p.model)},
          {"object", p.object}, {"regions", regions}, {"code", encode_ranges(p.code)}, {"eh_frame", eh},
          {"funcs", funcs}};
}

json encode(const TransitionInfo& t) {
  json out = {{"patch", t.patch}, {kKind, to_string(t.kind)}, {kModel, to_string(t.model)}};
  if (t.per_thread) {
    const auto& p = *t.per_thread;
    out["id"] = p.id;
    out["reversed"] = p.reversed;
    out["forced"] = p.forced;
    out["phase"] = to_string(p.phase);
    out["marker_offset"] = p.marker_offset;
    out["elapsed_ms"] = p.elapsed_ms;
    out["check"] = encode_ranges(p.check);
    out["check_target"] = encode_ranges(p.check_target);
    out["interiors"] = encode_ranges(p.interiors);
  }
  return out;
}

json encode(const StatusResponse& r) {
  json patches = json::array(), funcs = json::array();
  for (const auto& p : r.patches) patches.push_back(encode(p));
  for (const auto& f : r.functions)
    funcs.push_back({{"old_addr", f.old_addr}, {"stub", f.stub}, {"slot", f.slot}, {"jump_addr", f.jump_addr},
                     {"orig_bytes", to_hex(f.orig_bytes)}, {"stack", f.stack}});
  json out = ok_json();
  out["disabled"] = nullable(r.disabled);
  out["patches"] = std::move(patches);
  if (!r.kept.empty()) {
    json kept = json::array();
    for (const auto& p : r.kept) kept.push_back(encode(p));
    out["kept"] = std::move(kept);
  }
  out["functions"] = std::move(funcs);
  out["transition"] = r.transition ? encode(*r.transition) : json(nullptr);
  out["trap_redirects"] = r.trap_redirects;
  if (r.arena) out["arena"] = encode(*r.arena);
  return out;
}

json encode(const ArenaInfo& a) {
  return {{"mapped", a.mapped},
          {"in_use", a.in_use},
          {"retired", a.retired},
          {"free", a.free},
          {"retired_stubs", a.retired_stubs},
          {"retired_upto", a.retired_upto},
          {"reclaimed_upto", a.reclaimed_upto},
          {"retired_ranges", encode_ranges(a.retired_ranges)}};
}

json encode(const ReclaimResponse& r) {
  json out = ok_json();
  out["freed"] = r.freed;
  out["reclaimed_upto"] = r.reclaimed_upto;
  return out;
}

json encode(const LoadResponse& r) {
  json out = plan_fields(r.plan);
  out["patch"] = encode(r.patch);
  return out;
}

json encode(const PrepareRevertResponse& r) { return plan_fields(r.plan); }
json encode(const OkResponse&) { return ok_json(); }

const PatchInfo* StatusResponse::find_patch(std::string_view name) const {
  for (const auto& p : patches)
    if (p.name == name) return &p;
  return nullptr;
}

std::vector<PatchInfo> StatusResponse::mapped_patches() const {
  std::vector<PatchInfo> all = patches;
  all.insert(all.end(), kept.begin(), kept.end());
  return all;
}

std::optional<int> response_version(const json& j) noexcept {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(kV);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  int64_t v = it->get<int64_t>();
  if (v < INT32_MIN || v > INT32_MAX) return std::nullopt;
  return static_cast<int>(v);
}

std::optional<ErrorResponse> decode_error(const json& j) noexcept {
  try {
    if (!j.is_object()) return std::nullopt;
    auto ok = j.find(kOk);
    if (ok != j.end() && ok->is_boolean() && ok->get<bool>()) return std::nullopt;
    ErrorResponse e;
    auto kind = j.find(kKind);
    e.kind = kind != j.end() && kind->is_string() ? kind_from_name(kind->get<std::string>()) : ErrorKind::agent;
    auto msg = j.find(kError);
    e.message = msg != j.end() && msg->is_string() ? msg->get<std::string>() : "unknown error";
    return e;
  } catch (...) {
    return ErrorResponse{ErrorKind::agent, "unknown error"};
  }
}

namespace {
template <class F>
auto decode_reply(const json& j, const char* what, F&& f) noexcept -> Result<decltype(f(std::declval<Decoder&>()))> {
  using T = decltype(f(std::declval<Decoder&>()));
  try {
    Decoder d;
    if (!j.is_object()) return Error(ErrorKind::agent, fmt::format("the reply to '{}' is not a JSON object", what));
    T value = f(d);
    if (d.failed()) return Error(ErrorKind::agent, fmt::format("the reply to '{}': {}", what, d.error()));
    return value;
  } catch (const std::exception& e) {
    return Error(ErrorKind::agent, fmt::format("the reply to '{}': {}", what, e.what()));
  } catch (...) {
    return Error(ErrorKind::agent, fmt::format("the reply to '{}' could not be decoded", what));
  }
}
}  // namespace

Result<HelloResponse> decode_hello(const json& j) noexcept {
  return decode_reply(j, "hello", [&](Decoder& d) {
    HelloResponse r;
    r.protocol = static_cast<int>(d.i32(j, "", "protocol"));
    r.pid = d.i64(j, "", "pid");
    r.disabled = d.nullable_str(j, "", "disabled");
    r.transition = d.nullable_str(j, "", "transition");
    return r;
  });
}

Result<StatusResponse> decode_status(const json& j) noexcept {
  return decode_reply(j, "status", [&](Decoder& d) {
    StatusResponse r;
    r.disabled = d.nullable_str(j, "", "disabled");
    if (const json* ps = d.array(j, "", "patches"))
      for (size_t i = 0; i < ps->size() && !d.failed(); ++i) r.patches.push_back(decode_patch_info(d, (*ps)[i], Decoder::index("patches", i)));
    if (const json* ks = d.array(j, "", "kept", false))
      for (size_t i = 0; i < ks->size() && !d.failed(); ++i) r.kept.push_back(decode_patch_info(d, (*ks)[i], Decoder::index("kept", i)));
    if (const json* fs = d.array(j, "", "functions")) {
      for (size_t i = 0; i < fs->size() && !d.failed(); ++i) {
        std::string at = Decoder::index("functions", i);
        const json& f = (*fs)[i];
        FunctionInfo fi;
        fi.old_addr = d.u64(f, at, "old_addr");
        fi.stub = d.u64(f, at, "stub");
        fi.slot = d.u64(f, at, "slot");
        fi.jump_addr = d.u64(f, at, "jump_addr");
        fi.orig_bytes = d.five(f, at, "orig_bytes");
        fi.stack = d.strings(f, at, "stack");
        r.functions.push_back(std::move(fi));
      }
    }
    if (const json* t = d.member(j, "", "transition"); t && !t->is_null()) r.transition = decode_transition(d, *t);
    r.trap_redirects = d.u64(j, "", "trap_redirects");
    if (const json* a = d.member(j, "", "arena", false); a && !a->is_null()) {
      ArenaInfo ai;
      ai.mapped = d.u64(*a, "arena", "mapped");
      ai.in_use = d.u64(*a, "arena", "in_use");
      ai.retired = d.u64(*a, "arena", "retired");
      ai.free = d.u64(*a, "arena", "free");
      ai.retired_stubs = d.u64(*a, "arena", "retired_stubs");
      ai.retired_upto = d.u64(*a, "arena", "retired_upto");
      ai.reclaimed_upto = d.u64(*a, "arena", "reclaimed_upto");
      ai.retired_ranges = d.ranges(*a, "arena", "retired_ranges");
      r.arena = std::move(ai);
    }
    return r;
  });
}

Result<LoadResponse> decode_load(const json& j) noexcept {
  return decode_reply(j, "load", [&](Decoder& d) {
    LoadResponse r;
    r.plan = decode_plan(d, j);
    if (const json* p = d.member(j, "", "patch")) r.patch = decode_patch_info(d, *p, "patch");
    return r;
  });
}

Result<PrepareRevertResponse> decode_prepare_revert(const json& j) noexcept {
  return decode_reply(j, "prepare_revert", [&](Decoder& d) { return PrepareRevertResponse{decode_plan(d, j)}; });
}

Result<OkResponse> decode_ok(const json& j) noexcept {
  return decode_reply(j, "request", [&](Decoder&) { return OkResponse{}; });
}

Result<ReclaimResponse> decode_reclaim(const json& j) noexcept {
  return decode_reply(j, "reclaim", [&](Decoder& d) {
    return ReclaimResponse{d.u64(j, "", "freed"), d.u64(j, "", "reclaimed_upto")};
  });
}

Result<PatchInfo> decode_patch(const json& j) noexcept {
  return decode_reply(j, "status", [&](Decoder& d) { return decode_patch_info(d, j, "patch"); });
}

ErrorKind kind_from_name(std::string_view name) {
  for (auto k : kKinds)
    if (name == lg::to_string(k)) return k;
  return ErrorKind::agent;
}

}  // namespace lg::protocol
