#include "agent/protocol.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "agent/text_poke.h"
#include "agent/universe.h"
#include "common/hex.h"

namespace lg::agent {

using nlohmann::json;

namespace {

// A malformed request: reported as invalid_argument, never disables the agent.
struct RequestError {
  std::string message;
};

const json& member(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) throw RequestError{fmt::format("missing field '{}'", key)};
  return *it;
}

uint64_t get_u64(const json& j, const char* key) {
  const json& v = member(j, key);
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    throw RequestError{fmt::format("field '{}' must be an unsigned integer", key)};
  return v.get<uint64_t>();
}

std::string get_string(const json& j, const char* key) {
  const json& v = member(j, key);
  if (!v.is_string()) throw RequestError{fmt::format("field '{}' must be a string", key)};
  return v.get<std::string>();
}

json ok_response() { return json{{"ok", true}}; }

std::string prot_string(int prot) {
  std::string s = "---";
  if (prot & PROT_READ) s[0] = 'r';
  if (prot & PROT_WRITE) s[1] = 'w';
  if (prot & PROT_EXEC) s[2] = 'x';
  return s;
}

json range_json(const RemoteRange& r) { return json::array({r.lo.value, r.hi.value}); }

json ranges_json(const std::vector<RemoteRange>& rs) {
  json out = json::array();
  for (const auto& r : rs) out.push_back(range_json(r));
  return out;
}

json plan_json(const Plan& plan) {
  json writes = json::array();
  for (const auto& w : plan.writes) writes.push_back({{"addr", w.addr}, {"old", to_hex(w.old_bytes)}, {"new", to_hex(w.new_bytes)}});
  json out = {{"writes", writes}, {"check", ranges_json(plan.check)}};
  if (plan.per_thread)
    out["per_thread"] = {{"id", plan.transition_id},
                         {"marker_offset", plan.marker_offset},
                         {"interiors", ranges_json(plan.interiors)},
                         {"check_target", ranges_json(plan.check_target)}};
  return out;
}

Model parse_model(const json& j) {
  if (!j.contains("model")) return Model::stop_the_world;
  std::string m = get_string(j, "model");
  if (m == "per-thread") return Model::per_thread;
  if (m == "stop-the-world") return Model::stop_the_world;
  if (m == "immediate") return Model::immediate;
  throw RequestError{fmt::format("unknown model '{}' (per-thread, stop-the-world, immediate)", m)};
}

std::vector<RemoteRange> parse_ranges(const json& j, const char* key) {
  std::vector<RemoteRange> out;
  const json& v = member(j, key);
  if (!v.is_array()) throw RequestError{fmt::format("field '{}' must be an array of [lo, hi]", key)};
  for (const auto& r : v) {
    if (!r.is_array() || r.size() != 2 || !r[0].is_number_unsigned() || !r[1].is_number_unsigned() || r[1].get<uint64_t>() < r[0].get<uint64_t>())
      throw RequestError{fmt::format("field '{}' must be an array of [lo, hi]", key)};
    out.push_back({RemoteAddr(r[0].get<uint64_t>()), RemoteAddr(r[1].get<uint64_t>())});
  }
  return out;
}

x86::ContinuationTemplate parse_continuation(const json& c) {
  if (!c.is_object()) throw RequestError{"field 'continuation' must be an object"};
  x86::ContinuationTemplate t;
  auto bytes = from_hex(get_string(c, "bytes"));
  if (!bytes || bytes->empty() || bytes->size() > 256) throw RequestError{"continuation: 'bytes' must be 1..256 bytes of hex"};
  t.bytes = std::move(*bytes);
  t.resume = get_u64(c, "resume");
  t.displaced = static_cast<uint32_t>(get_u64(c, "displaced"));
  const json& fx = member(c, "fixups");
  if (!fx.is_array()) throw RequestError{"continuation: 'fixups' must be an array"};
  for (const auto& f : fx) {
    if (!f.is_object()) throw RequestError{"continuation: each fixup must be an object"};
    x86::Rel32Fixup r{static_cast<uint32_t>(get_u64(f, "offset")), static_cast<uint32_t>(get_u64(f, "end")), get_u64(f, "target")};
    if (r.offset + 4 > t.bytes.size() || r.end > t.bytes.size() || r.end < r.offset + 4)
      throw RequestError{"continuation: a fixup lies outside its bytes"};
    t.fixups.push_back(r);
  }
  return t;
}

json transition_json(const Registry& reg) {
  const auto& t = reg.transition();
  if (!t) return nullptr;
  json out = {{"patch", t->patch}, {"kind", t->kind == TransitionKind::load ? "apply" : "revert"}, {"model", to_string(t->model)}};
  if (t->model == Model::per_thread) {
    const PerThreadState& st = t->pt;
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now_ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
    out["id"] = st.id;
    out["reversed"] = st.reversed;
    out["forced"] = st.forced;
    out["phase"] = to_string(st.phase);
    out["marker_offset"] = marker_tp_offset();
    out["elapsed_ms"] = now_ms - st.started_ms;
    out["check"] = ranges_json(st.initial_ranges);
    out["check_target"] = ranges_json(st.target_ranges);
    out["interiors"] = ranges_json(st.interiors);
  }
  return out;
}

json patch_json(const Patch& p) {
  json regions = json::array(), code = json::array(), funcs = json::array();
  for (const auto& r : p.object->regions()) regions.push_back({{"name", r.name}, {"addr", r.addr}, {"size", r.size}, {"prot", prot_string(r.prot)}});
  for (const auto& c : p.object->code_ranges()) code.push_back(range_json(c));
  for (const auto& f : p.funcs) {
    funcs.push_back({{"old_name", f.old_name}, {"old_sympos", f.old_sympos}, {"old_addr", f.old_addr}, {"new_addr", f.new_addr}, {"new_size", f.new_size}});
    if (f.entry && f.entry != f.new_addr) funcs.back()["entry_thunk"] = f.entry;
  }
  json eh = nullptr;
  if (auto e = p.object->eh_frame()) eh = {{"addr", e->lo.value}, {"size", e->size()}, {"registered", p.object->eh_frame_registered()}};
  return {{"name", p.name}, {"path", p.path}, {"state", to_string(p.state)}, {"model", to_string(p.model)}, {"object", p.object_name}, {"regions", regions},
          {"code", code}, {"eh_frame", eh}, {"funcs", funcs}};
}

LoadRequest parse_load(const json& j) {
  LoadRequest r;
  r.path = get_string(j, "path");
  if (r.path.empty() || r.path[0] != '/') throw RequestError{"field 'path' must be an absolute path"};
  const json& o = member(j, "object");
  if (!o.is_object()) throw RequestError{"field 'object' must be an object"};
  r.object_name = get_string(o, "name");
  r.object = {RemoteAddr(get_u64(o, "lo")), RemoteAddr(get_u64(o, "hi"))};
  if (r.object.hi <= r.object.lo) throw RequestError{"object: 'hi' must be above 'lo'"};
  const json& funcs = member(j, "funcs");
  if (!funcs.is_array()) throw RequestError{"field 'funcs' must be an array"};
  for (const auto& f : funcs) {
    if (!f.is_object()) throw RequestError{"each of 'funcs' must be an object"};
    FuncRequest fr;
    fr.old_name = get_string(f, "old_name");
    fr.old_sympos = f.contains("old_sympos") ? get_u64(f, "old_sympos") : 0;
    fr.old_addr = get_u64(f, "old_addr");
    if (f.contains("old_ranges")) fr.old_ranges = parse_ranges(f, "old_ranges");
    if (f.contains("continuation")) fr.continuation = parse_continuation(f["continuation"]);
    fr.jump_addr = f.contains("jump_addr") ? get_u64(f, "jump_addr") : fr.old_addr;
    fr.preserve = f.contains("preserve") ? static_cast<uint32_t>(get_u64(f, "preserve")) : 0;
    auto bytes = from_hex(get_string(f, "orig_bytes"));
    if (!bytes || bytes->size() != fr.orig_bytes.size())
      throw RequestError{fmt::format("function '{}': orig_bytes must be {} bytes of hex", fr.old_name, fr.orig_bytes.size())};
    std::copy(bytes->begin(), bytes->end(), fr.orig_bytes.begin());
    r.funcs.push_back(std::move(fr));
  }
  if (j.contains("symbols")) {
    const json& s = j["symbols"];
    if (!s.is_object()) throw RequestError{"field 'symbols' must be an object of name: address"};
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
        throw RequestError{fmt::format("symbol '{}' must have an unsigned integer address", it.key())};
      r.symbols[it.key()] = it->get<uint64_t>();
    }
  }
  if (j.contains("data_refs")) {
    const json& d = j["data_refs"];
    if (!d.is_array()) throw RequestError{"field 'data_refs' must be an array"};
    for (const auto& x : d) {
      if (!x.is_object()) throw RequestError{"each of 'data_refs' must be an object"};
      x86::DataRef ref;
      ref.section = static_cast<uint32_t>(get_u64(x, "section"));
      ref.offset = get_u64(x, "offset");
      ref.insn = get_u64(x, "insn");
      ref.len = static_cast<uint8_t>(get_u64(x, "len"));
      auto kind = x86::data_ref_kind_from_string(get_string(x, "kind"));
      if (!kind) throw RequestError{"data_refs: 'kind' must be \"lea\" or \"load\""};
      ref.kind = *kind;
      if (ref.kind == x86::DataRefKind::generic) {
        auto body = from_hex(get_string(x, "body"));
        if (!body || body->empty() || body->size() > 15) throw RequestError{"data_refs: 'body' must be 1..15 bytes of hex"};
        ref.body = std::move(*body);
        ref.scratch = static_cast<uint8_t>(get_u64(x, "scratch"));
      }
      r.data_refs.push_back(ref);
    }
  }
  if (j.contains("dlsym")) {
    const json& d = j["dlsym"];
    if (!d.is_array()) throw RequestError{"field 'dlsym' must be an array of names"};
    for (const auto& n : d) {
      if (!n.is_string()) throw RequestError{"field 'dlsym' must be an array of names"};
      r.dlsym_names.insert(n.get<std::string>());
    }
  }
  r.model = parse_model(j);
  return r;
}

json result_json(const Result<void>& r) { return r ? ok_response() : Agent::error_response(r.error()); }

}  // namespace

Result<LoadRequest> decode_load_request(const json& request) noexcept {
  try {
    if (!request.is_object()) return make_error(ErrorKind::invalid_argument, "malformed request: a request must be a JSON object");
    return parse_load(request);
  } catch (const RequestError& e) {
    return Error(ErrorKind::invalid_argument, "malformed request: " + e.message);
  } catch (const std::exception& e) {
    return Error(ErrorKind::invalid_argument, fmt::format("malformed request: {}", e.what()));
  }
}

json Agent::error_response(const Error& e) {
  return {{"ok", false}, {"error", e.describe()}, {"kind", lg::to_string(e.kind)}};
}

void Agent::disable(std::string reason) {
  std::lock_guard lock(mu_);
  registry_.disable(std::move(reason));
}

std::string Agent::handle_line(std::string_view line, int fd) noexcept {
  try {
    json req;
    try {
      req = json::parse(line);
    } catch (const json::exception& e) {
      return error_response(Error(ErrorKind::invalid_argument, fmt::format("request is not valid JSON: {}", e.what()))).dump();
    }
    return handle(req, fd).dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (...) {
    // Only allocation can fail here; an answer may not be possible either.
    return R"({"ok":false,"error":"the agent could not build its response","kind":"agent"})";
  }
}

json Agent::handle(const json& request, int fd) noexcept {
  try {
    std::lock_guard lock(mu_);
    try {
      return dispatch(request, fd);
    } catch (const RequestError& e) {
      return error_response(Error(ErrorKind::invalid_argument, "malformed request: " + e.message));
    } catch (const nlohmann::json::exception& e) {
      return error_response(Error(ErrorKind::invalid_argument, fmt::format("malformed request: {}", e.what())));
    } catch (const std::exception& e) {
      registry_.disable(fmt::format("internal error: {}", e.what()));
      return error_response(Error(ErrorKind::agent, fmt::format("the agent is disabled: internal error: {}", e.what())));
    } catch (...) {
      registry_.disable("internal error: unknown exception");
      return error_response(Error(ErrorKind::agent, "the agent is disabled: internal error: unknown exception"));
    }
  } catch (...) {
    return json{{"ok", false}, {"error", "the agent failed to handle the request"}, {"kind", "agent"}};
  }
}

json Agent::status_json() const {
  json patches = json::array(), funcs = json::array();
  for (const auto& p : registry_.patches()) patches.push_back(patch_json(*p));
  for (const auto& [addr, f] : registry_.functions())
    funcs.push_back({{"old_addr", f.old_addr}, {"stub", f.stub.code}, {"slot", f.stub.slot}, {"jump_addr", f.jump_addr},
                     {"orig_bytes", to_hex(f.orig_bytes)}, {"stack", f.stack}});
  json disabled = nullptr;
  if (registry_.disabled()) disabled = *registry_.disabled();
  return {{"ok", true}, {"disabled", disabled}, {"patches", patches}, {"functions", funcs}, {"transition", transition_json(registry_)},
          {"trap_redirects", trap_redirects()}};
}

json Agent::dispatch(const json& req, int fd) {
  if (!req.is_object()) throw RequestError{"a request must be a JSON object"};
  std::string op = get_string(req, "op");
  if (op == "hello") {
    json disabled = nullptr, transition = nullptr;
    if (registry_.disabled()) disabled = *registry_.disabled();
    if (registry_.transition()) transition = registry_.transition()->patch;
    return {{"ok", true}, {"protocol", kProtocolVersion}, {"pid", ::getpid()}, {"disabled", disabled}, {"transition", transition}};
  }
  if (op == "status") return status_json();
  if (op == "load") {
    LoadRequest lr = parse_load(req);
    lr.fd = fd;
    std::string name;
    auto plan = registry_.load(lr, &name);
    if (!plan) return error_response(plan.error());
    json out = plan_json(*plan);
    out["ok"] = true;
    out["patch"] = patch_json(*registry_.find(name));
    return out;
  }
  if (op == "prepare_revert") {
    auto plan = registry_.prepare_revert(get_string(req, "name"), parse_model(req));
    if (!plan) return error_response(plan.error());
    json out = plan_json(*plan);
    out["ok"] = true;
    return out;
  }
  if (op == "commit") return result_json(registry_.commit(get_string(req, "name")));
  if (op == "abort") return result_json(registry_.abort(get_string(req, "name")));
  if (op == "finish_revert") return result_json(registry_.finish_revert(get_string(req, "name")));
  if (op == "cancel_revert") return result_json(registry_.cancel_revert(get_string(req, "name")));
  if (op == "poke_begin") return result_json(registry_.poke_begin(get_string(req, "name")));
  if (op == "poke_finish") return result_json(registry_.poke_finish(get_string(req, "name")));
  if (op == "complete") return result_json(registry_.complete(get_string(req, "name")));
  if (op == "reverse") return result_json(registry_.reverse(get_string(req, "name")));
  if (op == "force") return result_json(registry_.mark_forced(get_string(req, "name")));
  throw RequestError{fmt::format("unknown op '{}'", op)};
}

void Agent::connection_closed() noexcept {
  try {
    std::lock_guard<std::mutex> lock(mu_);
    (void)registry_.resolve_abandoned_transition();
  } catch (...) {
    registry_.disable("internal error while settling an abandoned transition");
  }
}

}  // namespace lg::agent
