// Our SHA-256 against the NIST example vectors, and against libcrypto (the
// reference, linked by this test only) on inputs of every length around the
// block and padding boundaries, fed whole and in uneven pieces.
#include <openssl/evp.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "base/sha256.h"

namespace sluice {
namespace {

/// libcrypto's SHA-256 of `data`.
Sha256Digest reference(const std::string& data) {
  Sha256Digest out;
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr), 1);
  return out;
}

TEST(Sha256, NistVectors) {
  EXPECT_EQ(to_hex(sha256("", 0)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(to_hex(sha256("abc", 3)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char* two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(to_hex(sha256(two_blocks, 56)),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const char* long_msg =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlm"
      "nopqrsmnopqrstnopqrstu";
  EXPECT_EQ(to_hex(sha256(long_msg, 112)),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  std::string million(1000000, 'a');
  EXPECT_EQ(to_hex(sha256(million.data(), million.size())),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, MatchesTheReferenceAtEveryLengthAndSplit) {
  std::mt19937 rng(256);
  for (size_t len = 0; len <= 300; ++len) {
    std::string data(len, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    const Sha256Digest want = reference(data);
    EXPECT_EQ(sha256(data.data(), data.size()), want) << "length " << len;
    // The same bytes in uneven pieces.
    Sha256 s;
    size_t off = 0;
    while (off < len) {
      size_t piece = std::min<size_t>(1 + rng() % 70, len - off);
      s.update(data.data() + off, piece);
      off += piece;
    }
    EXPECT_EQ(s.finish(), want) << "length " << len << " in pieces";
  }
}

TEST(Sha256, CopyContinuesIndependently) {
  Sha256 a;
  a.update("abc", 3);
  Sha256 b = a;
  b.update("d", 1);
  EXPECT_EQ(a.finish(), sha256("abc", 3));
  EXPECT_EQ(b.finish(), sha256("abcd", 4));
}

}  // namespace
}  // namespace sluice
