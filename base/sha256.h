// SHA-256 (FIPS 180-4), for the table digest and the audit chain. It lives in
// base/ because the worker (digest, audit chain) and sluicectl's audit
// verifier both hash, and neither should need Cap'n Proto to do it.
//
// Our own implementation, not libcrypto's: linking libcrypto cost the worker
// 2.8 MiB of resident memory (its pages touched at initialisation) for one
// hash over a few kilobytes per commit, against the goal of under 8 MiB for
// broker and worker together (docs/BENCHMARKS.md). The code is the
// specification's, checked against the NIST example vectors and against
// libcrypto on random inputs of every length up to several blocks
// (tests/base/sha256_test.cc). It needs no syscall, so it is safe under
// every seccomp filter.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice {

using Sha256Digest = std::array<uint8_t, 32>;

/// Incremental SHA-256. Copyable (a copy continues independently).
class Sha256 {
 public:
  /// Starts a digest with the initial hash value (FIPS 180-4, 5.3.3).
  Sha256() noexcept;
  /// Feeds `len` bytes at `data`. Never fails.
  void update(const void* data, size_t len) noexcept;
  /// Pads the message and returns its digest; the object must not be
  /// updated afterwards. Never fails.
  Sha256Digest finish() noexcept;

 private:
  /// Processes one 64-byte block (FIPS 180-4, 6.2.2). Never fails.
  void block(const uint8_t* p) noexcept;

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;  // bytes fed so far
};

/// Returns the SHA-256 of `len` bytes at `data`. Never fails.
Sha256Digest sha256(const void* data, size_t len) noexcept;

/// Returns the lower-case hex of a digest (64 characters). Never fails
/// (beyond allocation).
std::string to_hex(const Sha256Digest& digest);

}  // namespace sluice
