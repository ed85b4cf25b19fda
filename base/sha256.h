// SHA-256 (FIPS 180-4), self-contained: the table digest and the audit chain
// need a cryptographic hash, and libcrypto's lazy initialisation may open
// configuration files, which the worker's seccomp allowlist forbids.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice {

using Sha256Digest = std::array<uint8_t, 32>;

/// Incremental SHA-256.
class Sha256 {
 public:
  Sha256() noexcept;
  /// Feeds `len` bytes.
  void update(const void* data, size_t len) noexcept;
  /// Returns the digest; the object must not be updated afterwards.
  Sha256Digest finish() noexcept;

 private:
  void block(const uint8_t* p) noexcept;
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

/// One-shot SHA-256 of `len` bytes.
Sha256Digest sha256(const void* data, size_t len) noexcept;
/// Lower-case hex of a digest (64 characters).
std::string to_hex(const Sha256Digest& digest);

}  // namespace sluice
