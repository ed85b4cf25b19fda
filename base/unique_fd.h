// UniqueFd: the one owner of a file descriptor in sluice.
//
// Move-only, explicit, no implicit conversion to int or bool, and a noexcept
// destructor that never throws (unlike kj::AutoCloseFd). Every descriptor the
// project creates or receives is wrapped in one before anything else happens.
#pragma once

#include <unistd.h>

#include <utility>

namespace sluice {

class UniqueFd {
 public:
  /// Creates an empty holder (get() == -1).
  UniqueFd() noexcept = default;
  /// Takes ownership of `fd`; a negative value means empty.
  explicit UniqueFd(int fd) noexcept : fd_(fd < 0 ? -1 : fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  /// Moves ownership; `other` becomes empty.
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  /// Closes the held fd, then takes ownership from `other`.
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  /// Closes the held fd, if any. close() errors are ignored: the fd is gone either way.
  ~UniqueFd() { reset(); }

  /// Returns the raw fd without giving up ownership, or -1 when empty.
  int get() const noexcept { return fd_; }
  /// Returns true when a descriptor is held.
  bool valid() const noexcept { return fd_ >= 0; }
  /// Gives up ownership and returns the raw fd (-1 when empty).
  int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the held fd (if any) and takes ownership of `fd`.
  void reset(int fd = -1) noexcept {
    int old = std::exchange(fd_, fd < 0 ? -1 : fd);
    if (old >= 0) ::close(old);
  }

 private:
  int fd_ = -1;
};

}  // namespace sluice
