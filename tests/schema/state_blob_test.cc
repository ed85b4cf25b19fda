// The worker's state blob (schema/codec.h): what a restarted worker resumes
// from. It crossed two processes, one of which may have been compromised, so
// the decoder must refuse hostile bytes with a message and never crash.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "schema/broker_wire.h"
#include "schema/codec.h"
#include "schema/control.capnp.h"
#include "schema/frame.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

namespace sluice::control {
namespace {

namespace cp = ::sluice::capnp_control;

/// `bytes` copied to 8-byte aligned memory.
struct Aligned {
  explicit Aligned(const std::string& bytes) : words(bytes.size() / 8 + 1, 0), size(bytes.size()) {
    std::memcpy(words.data(), bytes.data(), bytes.size());
  }
  const void* data() const { return words.data(); }
  std::vector<uint64_t> words;
  size_t size;
};

/// Decodes `bytes` (aligned first).
Result<StateBlob> decode(const std::string& bytes) {
  Aligned a(bytes);
  return decode_state_blob(a.data(), a.size);
}

/// A blob with one rule in each table.
StateBlob sample() {
  StateBlob b;
  b.generation = 42;
  Rule r;
  r.listen = addr_v4(127, 0, 0, 1);
  r.first = r.last = 8080;
  r.to = 8000;
  b.tables.of(Pif::kHost).rules = {r};
  r.proto = Proto::kUdp;
  r.ifname = "lo";
  b.tables.of(Pif::kSplice).rules = {r};
  return b;
}

/// The serialised message `builder` holds.
std::string frame_of(capnp::MallocMessageBuilder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  return std::string(reinterpret_cast<const char*>(words.asBytes().begin()),
                     words.asBytes().size());
}

TEST(StateBlob, RoundTrips) {
  const StateBlob b = sample();
  auto back = decode(encode_state_blob(b));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->generation, 42u);
  EXPECT_EQ(back->tables, b.tables);
}

TEST(StateBlob, AnUnconfirmedCommitRoundTripsWithItsRollbackTables) {
  StateBlob b = sample();
  EXPECT_FALSE(decode(encode_state_blob(b))->unconfirmed.has_value());
  StateBlob::Unconfirmed u;
  u.rollback_generation = 41;
  u.rollback_tables = sample().tables;
  u.rollback_tables.of(Pif::kSplice).rules.clear();
  u.seconds = 30;
  b.unconfirmed = u;
  auto back = decode(encode_state_blob(b));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->tables, b.tables);
  ASSERT_TRUE(back->unconfirmed.has_value());
  EXPECT_EQ(back->unconfirmed->rollback_generation, 41u);
  EXPECT_EQ(back->unconfirmed->rollback_tables, u.rollback_tables);
  EXPECT_EQ(back->unconfirmed->seconds, 30u);
}

// sluiced refuses a blob above kMaxStateBlobBytes as a violation: the
// largest one, two full tables in force and two full rollback tables with
// every field at its longest, must stay below it.
TEST(StateBlob, TheLargestBlobFitsTheLimitSluicedChecks) {
  Rule r;
  r.listen = addr_v4(127, 0, 0, 1);
  std::memset(r.listen.data(), 0xfe, r.listen.size());
  std::memset(r.target.data(), 0xfd, r.target.size());
  r.ifname = std::string(15, 'i');
  r.first = r.last = 65535;
  r.to = 65535;
  r.weak = r.scan = true;
  TableSet full;
  for (Pif pif : {Pif::kHost, Pif::kSplice}) {
    full.of(pif).rules.assign(kMaxRulesPerTable, r);
  }
  StateBlob b;
  b.generation = UINT64_MAX;
  b.tables = full;
  b.unconfirmed = StateBlob::Unconfirmed{UINT64_MAX - 1, full, 86400};
  const std::string bytes = encode_state_blob(b);
  EXPECT_LE(bytes.size(), wire::kMaxStateBlobBytes);
  EXPECT_LT(bytes.size(), 2u << 20) << "broker_wire.h says under 2 MiB";
  auto back = decode(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->unconfirmed->rollback_tables, full);
}

TEST(StateBlob, EveryPrefixIsRefused) {
  const std::string full = encode_state_blob(sample());
  for (size_t len = 0; len < full.size(); ++len) {
    auto got = decode(full.substr(0, len));
    EXPECT_FALSE(got.ok()) << len;
    if (!got.ok()) {
      EXPECT_FALSE(got.error().message.empty());
    }
  }
}

TEST(StateBlob, TrailingBytesAreRefused) {
  std::string bytes = encode_state_blob(sample());
  bytes.append(8, '\0');
  auto got = decode(bytes);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("not one whole frame"), std::string::npos);
}

TEST(StateBlob, AWrongMagicIsRefused) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::StateBlob>();
  root.setMagic(cp::MAGIC);  // the control protocol's
  root.setGeneration(1);
  auto got = decode(frame_of(builder));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("bad magic"), std::string::npos);
}

TEST(StateBlob, AHugeSegmentClaimIsRefusedBeforeAnyDecode) {
  // One segment of 0xfffffff0 words: check_frame refuses it on the header.
  const uint32_t header[2] = {0, 0xfffffff0u};
  std::string bytes(reinterpret_cast<const char*>(header), sizeof(header));
  bytes.append(64, '\0');
  EXPECT_FALSE(decode(bytes).ok());
}

TEST(StateBlob, TooManySegmentsAreRefused) {
  std::vector<uint32_t> header = {kMaxControlSegments};  // count - 1 = kMaxControlSegments
  header.resize(kMaxControlSegments + 2, 1);
  std::string bytes(reinterpret_cast<const char*>(header.data()), header.size() * 4);
  bytes.append(8 * (kMaxControlSegments + 1), '\0');
  EXPECT_FALSE(decode(bytes).ok());
}

TEST(StateBlob, ATableTwiceIsRefused) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::StateBlob>();
  root.setMagic(cp::STATE_BLOB_MAGIC);
  auto tables = root.initTables(2);
  tables[0].setPif(cp::Pif::HOST);
  tables[1].setPif(cp::Pif::HOST);
  auto got = decode(frame_of(builder));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("twice"), std::string::npos);
}

TEST(StateBlob, TooManyRulesAreRefused) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::StateBlob>();
  root.setMagic(cp::STATE_BLOB_MAGIC);
  auto tables = root.initTables(1);
  tables[0].initRules(static_cast<unsigned>(kMaxRulesPerTable + 1));
  EXPECT_FALSE(decode(frame_of(builder)).ok());
}

TEST(StateBlob, ABadAddressIsRefused) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::StateBlob>();
  root.setMagic(cp::STATE_BLOB_MAGIC);
  auto rules = root.initTables(1)[0].initRules(1);
  const uint8_t three[3] = {1, 2, 3};
  rules[0].setListen(kj::arrayPtr(three, 3));
  EXPECT_FALSE(decode(frame_of(builder)).ok());
}

TEST(StateBlob, UnalignedOrOddLengthsAreRefused) {
  const std::string full = encode_state_blob(sample());
  Aligned a(full + std::string(8, '\0'));
  const char* base = static_cast<const char*>(a.data());
  EXPECT_FALSE(decode_state_blob(base + 1, full.size()).ok());
  EXPECT_FALSE(decode_state_blob(base, full.size() - 1).ok());
}

}  // namespace
}  // namespace sluice::control
