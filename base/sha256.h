// SHA-256 (FIPS 180-4), for the table digest and the audit chain. It lives in
// base/ because the worker (digest, audit chain) and sluicectl's audit
// verifier both hash, and neither should need Cap'n Proto to do it.
//
// The hashing is libnettle's (`nettle/sha2.h`), a small, well-kept library
// with hand-written SHA-NI and SSE code behind a run-time CPU check, instead
// of an implementation of our own (security review, "the test suite
// itself"). It is linked statically (SLUICE_STATIC_DEPS), so a binary
// carries only the code it calls and resident memory grows by those pages
// alone; libcrypto, linked shared, cost the worker 2.8 MiB for one hash per
// commit (docs/BENCHMARKS.md). The interface stays ours, so no caller sees
// nettle. Checked against the NIST example vectors and against libcrypto
// on inputs of every length up to several blocks (tests/base/sha256_test.cc).
// Hashing needs no syscall, so it is safe under every seccomp filter.
//
// Its own CMake target, sluice_sha256: the broker links sluice_base and has
// nothing to hash, so it does not link nettle (tests/broker/CMakeLists.txt
// checks the binary).
#pragma once

#include <nettle/sha2.h>

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
  struct sha256_ctx ctx_;  // nettle's state: plain data, so copying copies the digest so far
};

/// Returns the SHA-256 of `len` bytes at `data`. Never fails.
Sha256Digest sha256(const void* data, size_t len) noexcept;

/// Returns the lower-case hex of a digest (64 characters). Never fails
/// (beyond allocation).
std::string to_hex(const Sha256Digest& digest);

}  // namespace sluice
