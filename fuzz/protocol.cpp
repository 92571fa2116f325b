// The agent protocol's request decoder (src/protocol/protocol.h) on one request line: every
// request type, the version check, and for what decodes: encode → decode gives the same
// request again, and the cheap requests are handled by an Agent with an empty registry
// (hello, status, and the named ops, which find no patch). A decoded "load" is not handled:
// it would open files and map memory. Nothing here throws, parses a line twice or builds a
// status of a loaded patch: the per-input work is the decoder's.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "agent/protocol.h"
#include "protocol/protocol.h"

namespace {

namespace protocol = lg::protocol;

bool cheap_to_handle(const protocol::Request& r) {
  return !std::holds_alternative<protocol::LoadRequest>(r);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto req = protocol::decode_request_line(line);
  if (!req) {
    // Refusals are invalid_argument or version, with a message; the error line encodes.
    auto kind = req.error().kind;
    if ((kind != lg::ErrorKind::invalid_argument && kind != lg::ErrorKind::version) || req.error().message.empty())
      __builtin_trap();
    return 0;
  }
  // What decoded encodes to a request that decodes to the same encoding.
  nlohmann::json j = protocol::encode_request(*req);
  auto again = protocol::decode_request(j);
  if (!again || again->index() != req->index() || protocol::encode_request(*again) != j) __builtin_trap();
  if (auto* load = std::get_if<protocol::LoadRequest>(&*req)) {
    if (load->path.empty() || load->path[0] != '/' || load->object.hi <= load->object.lo) __builtin_trap();
    for (const auto& f : load->funcs)
      if (f.continuation)
        for (const auto& x : f.continuation->fixups)
          if (uint64_t{x.offset} + 4 > f.continuation->bytes.size() || x.end > f.continuation->bytes.size()) __builtin_trap();
  }
  if (cheap_to_handle(*req)) {
    static lg::agent::Agent agent;
    nlohmann::json reply = agent.handle(std::move(*req));
    if (!reply.is_object() || !reply.contains("ok") || protocol::response_version(reply) != protocol::kVersion) __builtin_trap();
  }
  return 0;
}
