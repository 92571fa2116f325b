// The agent's request decoding: one request line through Agent::handle_line (JSON parsing,
// dispatch, every op on an empty registry) and, for "load", the request decoder alone (a fuzzed
// load must not open files or map memory).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("op") && j["op"].is_string() && j["op"] == "load") {
    auto r = lg::agent::decode_load_request(j);
    if (r && (r->path.empty() || r->path[0] != '/')) __builtin_trap();
    return 0;
  }
  static lg::agent::Agent agent;
  std::string out = agent.handle_line(line);
  auto reply = nlohmann::json::parse(out, nullptr, false);
  if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok")) __builtin_trap();
  return 0;
}
