#include "agent/protocol.h"

#include <sys/mman.h>
#include <unistd.h>

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

json plan_json(const Plan& plan) {
  json writes = json::array(), check = json::array();
  for (const auto& w : plan.writes) writes.push_back({{"addr", w.addr}, {"old", to_hex(w.old_bytes)}, {"new", to_hex(w.new_bytes)}});
  for (const auto& c : plan.check) check.push_back(range_json(c));
  return {{"writes", writes}, {"check", check}};
}

json patch_json(const Patch& p) {
  json regions = json::array(), code = json::array(), funcs = json::array();
  for (const auto& r : p.object->regions()) regions.push_back({{"name", r.name}, {"addr", r.addr}, {"size", r.size}, {"prot", prot_string(r.prot)}});
  for (const auto& c : p.object->code_ranges()) code.push_back(range_json(c));
  for (const auto& f : p.funcs)
    funcs.push_back({{"old_name", f.old_name}, {"old_sympos", f.old_sympos}, {"old_addr", f.old_addr}, {"new_addr", f.new_addr}, {"new_size", f.new_size}});
  json eh = nullptr;
  if (auto e = p.object->eh_frame()) eh = {{"addr", e->lo.value}, {"size", e->size()}, {"registered", p.object->eh_frame_registered()}};
  return {{"name", p.name}, {"path", p.path}, {"state", to_string(p.state)}, {"object", p.object_name}, {"regions", regions},
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
    fr.jump_addr = f.contains("jump_addr") ? get_u64(f, "jump_addr") : fr.old_addr;
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
  if (j.contains("dlsym")) {
    const json& d = j["dlsym"];
    if (!d.is_array()) throw RequestError{"field 'dlsym' must be an array of names"};
    for (const auto& n : d) {
      if (!n.is_string()) throw RequestError{"field 'dlsym' must be an array of names"};
      r.dlsym_names.insert(n.get<std::string>());
    }
  }
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
  return {{"ok", true}, {"disabled", disabled}, {"patches", patches}, {"functions", funcs}};
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
    auto plan = registry_.prepare_revert(get_string(req, "name"));
    if (!plan) return error_response(plan.error());
    json out = plan_json(*plan);
    out["ok"] = true;
    return out;
  }
  if (op == "commit") return result_json(registry_.commit(get_string(req, "name")));
  if (op == "abort") return result_json(registry_.abort(get_string(req, "name")));
  if (op == "finish_revert") return result_json(registry_.finish_revert(get_string(req, "name")));
  if (op == "cancel_revert") return result_json(registry_.cancel_revert(get_string(req, "name")));
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
