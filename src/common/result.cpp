#include "common/result.h"

namespace lg {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return "invalid_argument";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::permission: return "permission";
    case ErrorKind::busy: return "busy";
    case ErrorKind::bad_patch: return "bad_patch";
    case ErrorKind::unsupported: return "unsupported";
    case ErrorKind::mismatch: return "mismatch";
    case ErrorKind::unsafe: return "unsafe";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::thread_died: return "thread_died";
    case ErrorKind::io: return "io";
    case ErrorKind::agent: return "agent";
    case ErrorKind::version: return "version";
    case ErrorKind::internal: return "internal";
  }
  return "unknown";
}

std::string Error::describe() const {
  std::string s = message;
  if (!hint.empty()) s += fmt::format("\n  hint: {}", hint);
  return s;
}

}  // namespace lg
