// SHA-256 through libcrypto: known vectors, incremental equals one-shot.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "schema/sha256.h"

namespace sluice {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(to_hex(sha256("", 0)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(to_hex(sha256("abc", 3)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char* two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(to_hex(sha256(two_blocks, 56)),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, IncrementalMatchesOneShot) {
  std::string data(1000, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  Sha256 s;
  for (size_t off = 0; off < data.size(); off += 37) {
    s.update(data.data() + off, std::min<size_t>(37, data.size() - off));
  }
  EXPECT_EQ(s.finish(), sha256(data.data(), data.size()));
}

}  // namespace
}  // namespace sluice
