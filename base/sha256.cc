// SHA-256 through libnettle (see sha256.h for why nettle, and linked how).
#include "base/sha256.h"

#include <type_traits>

namespace sluice {

static_assert(SHA256_DIGEST_SIZE == std::tuple_size_v<Sha256Digest>);
// A copy of a Sha256 must continue independently: nettle's context holds no
// pointer, so a member-wise copy is a complete one.
static_assert(std::is_trivially_copyable_v<struct sha256_ctx>);

Sha256::Sha256() noexcept {
  sha256_init(&ctx_);
}

void Sha256::update(const void* data, size_t len) noexcept {
  if (len == 0) return;  // nettle takes no null pointer, even for no bytes
  sha256_update(&ctx_, len, static_cast<const uint8_t*>(data));
}

Sha256Digest Sha256::finish() noexcept {
  Sha256Digest out;
  // nettle pads, writes the digest and starts the context over; this object
  // is not updated afterwards (sha256.h).
  sha256_digest(&ctx_, out.size(), out.data());
  return out;
}

Sha256Digest sha256(const void* data, size_t len) noexcept {
  Sha256 s;
  s.update(data, len);
  return s.finish();
}

std::string to_hex(const Sha256Digest& digest) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace sluice
