// Result<T>: the controller's and builder's error type (std::expected-shaped; g++ 12 has no
// std::expected). An Error carries a kind a caller can branch on, the errno that caused it
// (0 when none), a message a person can act on, and an optional hint.
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace lg {

enum class ErrorKind {
  invalid_argument,   // the user asked for something malformed
  not_found,          // a process, file, symbol, patch that does not exist
  permission,         // we may not control this process / read this file
  busy,               // traced by someone else, a transition already running
  bad_patch,          // the patch object is malformed or inconsistent
  unsupported,        // a valid construct we refuse to handle (new TLS, IFUNC, relocation)
  mismatch,           // build-id or code bytes differ from what the patch expects
  unsafe,             // refused for safety: a thread is in an affected function, ...
  timeout,            // a bounded wait ran out
  thread_died,        // ESRCH: the thread or process went away under us
  io,                 // a read/write/syscall failed
  agent,              // the in-process agent refused or is disabled
  version,            // the agent and the controller speak different protocol versions
  internal,           // a bug in livegraft
};

const char* to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::internal;
  int err = 0;  // errno, 0 when none
  std::string message;
  std::string hint;

  Error() = default;
  Error(ErrorKind k, std::string msg, int e = 0, std::string h = {})
      : kind(k), err(e), message(std::move(msg)), hint(std::move(h)) {}

  // Prefix the message with context: "loading fix.o: " + message.
  Error& context(std::string_view what) {
    message = fmt::format("{}: {}", what, message);
    return *this;
  }
  std::string describe() const;  // message + errno text + hint, for people
};

template <class... Args>
Error make_error(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  return Error(kind, fmt::format(f, std::forward<Args>(args)...));
}

// An Error from the current errno: make_errno_error(ErrorKind::io, "open {}", path).
template <class... Args>
Error make_errno_error(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  int e = errno;
  ErrorKind k = e == ESRCH ? ErrorKind::thread_died : kind;
  if (e == EPERM || e == EACCES) k = ErrorKind::permission;
  return Error(k, fmt::format("{}: {}", fmt::format(f, std::forward<Args>(args)...), std::strerror(e)), e);
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : e_(std::move(error)) {}

  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { return *e_; }
  Error&& error() && { return std::move(*e_); }

 private:
  std::optional<Error> e_;
};

inline Result<void> ok_result() { return {}; }

}  // namespace lg

// Propagate an error: LG_TRY(auto x, expr); or LG_TRY_VOID(expr);
#define LG_CONCAT_(a, b) a##b
#define LG_CONCAT(a, b) LG_CONCAT_(a, b)
#define LG_TRY_VOID(expr)                                   \
  do {                                                      \
    auto lg_try_r_ = (expr);                                \
    if (!lg_try_r_.ok()) return std::move(lg_try_r_).error(); \
  } while (0)
#define LG_TRY_IMPL_(tmp, decl, expr)            \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).error();  \
  decl = std::move(tmp).value()
#define LG_TRY(decl, expr) LG_TRY_IMPL_(LG_CONCAT(lg_try_, __LINE__), decl, expr)
