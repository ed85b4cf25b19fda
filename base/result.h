// Result<T>: the "expected failure" error class (EADDRINUSE, ECONNRESET, a bad
// spec typed by a user). Shaped like C++23 std::expected, which g++ 12 lacks in
// C++20 mode. Nothing in the data path throws; it returns one of these.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "base/check.h"

namespace sluice {

/// An expected failure: an errno (0 when the failure is not a syscall's) and a
/// complete human message that says what failed, why, and what to do.
struct Error {
  int err = 0;
  std::string message;
};

/// Wraps an Error so that `return Err(...)` converts into any Result<T>.
struct Unexpected {
  Error error;
};

/// Builds an Unexpected from a message alone.
inline Unexpected Err(std::string message) {
  return Unexpected{Error{0, std::move(message)}};
}
/// Builds an Unexpected from an errno and a message.
inline Unexpected Err(int err, std::string message) {
  return Unexpected{Error{err, std::move(message)}};
}
/// Builds an Unexpected for a failed syscall: errno `err`, and the message
/// "WHAT: ENAME (text)" (errno_text, base/strings.h). Callers name what
/// failed; the reason comes from the errno. Defined in base/strings.cc.
Unexpected SysErr(int err, const std::string& what);
/// The same for the current errno, read before anything else happens (so
/// `what` is a literal: building a string could change errno).
Unexpected SysErr(const char* what);
/// Re-wraps an existing Error (to propagate it from another Result type).
inline Unexpected Err(Error error) {
  return Unexpected{std::move(error)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  /// A success holding `value`.
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  /// A failure holding `u.error`.
  Result(Unexpected u) : v_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT

  /// True on success.
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  /// The value; CHECKs that this is a success.
  T& value() & {
    CHECK_MSG(ok(), "Result::value() on an error");
    return std::get<0>(v_);
  }
  const T& value() const& {
    CHECK_MSG(ok(), "Result::value() on an error");
    return std::get<0>(v_);
  }
  T&& value() && {
    CHECK_MSG(ok(), "Result::value() on an error");
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  /// The error; CHECKs that this is a failure.
  const Error& error() const& {
    CHECK_MSG(!ok(), "Result::error() on a success");
    return std::get<1>(v_);
  }
  Error&& error() && {
    CHECK_MSG(!ok(), "Result::error() on a success");
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

/// Result<void>: success carries no value.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected u) : err_(std::move(u.error)), ok_(false) {}  // NOLINT: implicit by design

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& {
    CHECK_MSG(!ok_, "Result::error() on a success");
    return err_;
  }
  Error&& error() && {
    CHECK_MSG(!ok_, "Result::error() on a success");
    return std::move(err_);
  }

 private:
  Error err_;
  bool ok_ = true;
};

/// Shorthand for a successful Result<void>.
inline Result<void> Ok() {
  return Result<void>();
}

}  // namespace sluice
