// SHA-256 through libcrypto (OpenSSL 3), for the table digest and the audit
// chain. A well-kept implementation rather than our own; the broker, which
// hashes nothing, links none of it.
//
// libcrypto is initialised without reading openssl.cnf (a system config must
// not change what a digest is, and the worker cannot open files), and the
// SHA-256 implementation is fetched once. Both happen on first use, or
// earlier through sha256_prepare(); neither needs a syscall beyond memory
// allocation, so first use under the worker's seccomp filter is safe.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace sluice {

using Sha256Digest = std::array<uint8_t, 32>;

/// Initialises libcrypto (without its config file) and fetches SHA-256.
/// Idempotent; CHECK-fails if libcrypto has no SHA-256, which is a broken
/// installation, not a runtime condition.
void sha256_prepare() noexcept;

/// Incremental SHA-256. Move-only.
class Sha256 {
 public:
  Sha256() noexcept;
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256(Sha256&& other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }
  /// Takes over `other`'s state; `other` gets ours and frees it.
  Sha256& operator=(Sha256&& other) noexcept {
    std::swap(ctx_, other.ctx_);
    return *this;
  }

  /// Feeds `len` bytes.
  void update(const void* data, size_t len) noexcept;
  /// Returns the digest; the object must not be updated afterwards.
  Sha256Digest finish() noexcept;

 private:
  EVP_MD_CTX* ctx_;
};

/// One-shot SHA-256 of `len` bytes.
Sha256Digest sha256(const void* data, size_t len) noexcept;
/// Lower-case hex of a digest (64 characters).
std::string to_hex(const Sha256Digest& digest);

}  // namespace sluice
