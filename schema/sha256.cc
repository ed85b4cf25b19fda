#include "schema/sha256.h"

#include <openssl/crypto.h>

#include "base/check.h"

namespace sluice {
namespace {

/// The fetched SHA-256 implementation, shared by every digest. A function
/// static: libcrypto's own state is process-wide anyway, and fetching once
/// keeps the provider lookup off every hash.
const EVP_MD* sha256_md() noexcept {
  static const EVP_MD* md = [] {
    CHECK_MSG(OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, nullptr) == 1,
              "libcrypto failed to initialise");
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
    CHECK_MSG(fetched != nullptr, "libcrypto has no SHA2-256");
    return fetched;
  }();
  return md;
}

}  // namespace

void sha256_prepare() noexcept {
  (void)sha256_md();
}

Sha256::Sha256() noexcept : ctx_(EVP_MD_CTX_new()) {
  CHECK_MSG(ctx_ != nullptr, "out of memory for a digest context");
  CHECK(EVP_DigestInit_ex(ctx_, sha256_md(), nullptr) == 1);
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_);
}

void Sha256::update(const void* data, size_t len) noexcept {
  CHECK(EVP_DigestUpdate(ctx_, data, len) == 1);
}

Sha256Digest Sha256::finish() noexcept {
  Sha256Digest out;
  unsigned int len = 0;
  CHECK(EVP_DigestFinal_ex(ctx_, out.data(), &len) == 1 && len == out.size());
  return out;
}

Sha256Digest sha256(const void* data, size_t len) noexcept {
  Sha256Digest out;
  unsigned int out_len = 0;
  CHECK(EVP_Digest(data, len, out.data(), &out_len, sha256_md(), nullptr) == 1 &&
        out_len == out.size());
  return out;
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
