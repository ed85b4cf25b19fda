// pesto's protocol v2 (schema/pesto_wire.h): golden bytes written out by hand
// from INTEROP.md, round trips, the default target's two spellings, and every
// refusal of the hello decoder and of the update decoder. The update decoder
// is run on each input whole, byte by byte and in other chunk sizes, and must
// come to the same result every time.
#include "schema/pesto_wire.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/rule_util.h"

namespace sluice::pesto {
namespace {

using sluice::test::make_rule;
using Status = UpdateDecoder::Status;

/// Returns the bytes of hex text ("00 ff 1f"); spaces are ignored. Aborts on
/// a typo: it also runs before main(), for the golden records below.
std::string hex(const char* text) {
  std::string out;
  int nibbles = 0;
  unsigned value = 0;
  for (const char* p = text; *p != '\0'; ++p) {
    const char c = *p;
    if (c == ' ') continue;
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) std::abort();
    value = value << 4 | static_cast<unsigned>(c <= '9' ? c - '0' : c - 'a' + 10);
    if (++nibbles == 2) {
      out.push_back(static_cast<char>(value));
      nibbles = 0;
      value = 0;
    }
  }
  if (nibbles != 0) std::abort();
  return out;
}

/// Returns the bytes of `record` as a string.
std::string str(const RuleRecord& record) {
  return std::string(reinterpret_cast<const char*>(record.data()), record.size());
}

/// Returns the record of `bytes`, which must be 56 long.
RuleRecord record_of(const std::string& bytes) {
  RuleRecord r{};
  EXPECT_EQ(bytes.size(), kRuleBytes);
  std::memcpy(r.data(), bytes.data(), std::min(bytes.size(), kRuleBytes));
  return r;
}

/// Returns `rule` with its canonical record, as a server holds it.
WireRule wire(const Rule& rule) {
  return WireRule{rule, encode_rule(rule)};
}

/// Returns a table of `pif` holding `records` as they are (the model part
/// left empty: encode_update sends only the records).
WireTable raw_table(Pif pif, const std::vector<RuleRecord>& records) {
  WireTable t{pif, 0, {}};
  for (const RuleRecord& r : records) t.rules.push_back(WireRule{Rule{}, r});
  return t;
}

/// A rule record spelled out by hand: 0.0.0.0/8080 => 10.88.0.5/80, TCP.
const std::string kGoldenV4 =
    hex("00000000 00000000 0000ffff 00000000"  // addr ::ffff:0.0.0.0
        "00000000 00000000 0000ffff 0a580005"  // taddr ::ffff:10.88.0.5
        "00000000 00000000 00000000 00000000"  // ifname
        "1f90 1f90 0050 06 00");               // 8080 8080 80, TCP, no flags

/// `*` 22-80 => 32-90 (dual-stack ::, default target), TCP.
const std::string kGoldenDualStack =
    hex("00000000 00000000 00000000 00000000"
        "00000000 00000000 00000000 00000000"
        "00000000 00000000 00000000 00000000"
        "0016 0050 0020 06 01");

/// UDP 192.0.2.1%eth0/53 => [2001:db8::5]:5353, best effort and scan.
const std::string kGoldenIfName =
    hex("00000000 00000000 0000ffff c0000201"
        "20010db8 00000000 00000000 00000005"
        "65746830 00000000 00000000 00000000"  // "eth0"
        "0035 0035 14e9 11 06");

/// The result of a decode, everything a caller can observe.
struct Outcome {
  Status status = Status::kNeedMore;
  WireError error = WireError::kNone;
  std::string message;
  size_t consumed = 0;
  std::vector<WireTable> tables;
};

/// Feeds `bytes` to a decoder for `offered` in pieces of `chunk` bytes (0:
/// in one piece), then finishes it.
Outcome run(const std::string& bytes, const std::vector<Pif>& offered, size_t chunk) {
  UpdateDecoder d(offered);
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  if (chunk == 0) {
    d.feed(p, bytes.size());
  } else {
    for (size_t at = 0; at < bytes.size(); at += chunk) {
      d.feed(p + at, std::min(chunk, bytes.size() - at));
    }
  }
  Outcome out;
  out.status = d.finish();
  out.error = d.failure().error;
  out.message = d.failure().message;
  out.consumed = d.consumed();
  if (out.status == Status::kComplete) out.tables = d.tables();
  return out;
}

/// Decodes `bytes` in one piece, and checks that byte by byte and in other
/// chunk sizes give the very same outcome. Returns the outcome.
Outcome decode(const std::string& bytes,
               const std::vector<Pif>& offered = {Pif::kHost, Pif::kSplice}) {
  Outcome whole = run(bytes, offered, 0);
  for (size_t chunk : {1, 2, 5, 55, 56, 57, 1000}) {
    Outcome part = run(bytes, offered, chunk);
    EXPECT_EQ(part.status, whole.status) << "chunk " << chunk;
    EXPECT_EQ(part.error, whole.error) << "chunk " << chunk;
    EXPECT_EQ(part.message, whole.message) << "chunk " << chunk;
    EXPECT_EQ(part.consumed, whole.consumed) << "chunk " << chunk;
    EXPECT_EQ(part.tables, whole.tables) << "chunk " << chunk;
  }
  EXPECT_EQ(whole.status == Status::kInvalid, whole.error != WireError::kNone);
  EXPECT_EQ(whole.status == Status::kInvalid, !whole.message.empty());
  return whole;
}

/// Decodes `bytes` and expects a refusal with `error`; returns its message.
std::string refused(const std::string& bytes, WireError error,
                    const std::vector<Pif>& offered = {Pif::kHost, Pif::kSplice}) {
  Outcome out = decode(bytes, offered);
  EXPECT_EQ(out.status, Status::kInvalid);
  EXPECT_EQ(out.error, error) << out.message;
  return out.message;
}

/// Returns an update of one HOST table holding `record`.
std::string host_update(const RuleRecord& record) {
  return encode_update({raw_table(Pif::kHost, {record})});
}

/// Decodes a hello; returns the error (kNone on success) and sets `*out`.
WireError hello_error(const std::string& bytes, std::vector<WireTable>* out = nullptr,
                      std::string* message = nullptr) {
  std::vector<WireTable> tables;
  WireFailure failure;
  bool ok =
      decode_hello(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &tables, &failure);
  EXPECT_EQ(ok, failure.error == WireError::kNone);
  if (out != nullptr) *out = tables;
  if (message != nullptr) *message = failure.message;
  return failure.error;
}

TEST(PestoWire, RuleGoldenBytes) {
  Rule v4 = make_rule("0.0.0.0", 8080, 8080, 80, "10.88.0.5");
  EXPECT_EQ(str(encode_rule(v4)), kGoldenV4);
  Rule dual = make_rule("*", 22, 80, 32);
  EXPECT_EQ(str(encode_rule(dual)), kGoldenDualStack);
  Rule named = make_rule("192.0.2.1", 53, 53, 5353, "2001:db8::5");
  named.proto = Proto::kUdp;
  named.ifname = "eth0";
  named.weak = true;
  named.scan = true;
  EXPECT_EQ(str(encode_rule(named)), kGoldenIfName);

  for (const Rule& rule : {v4, dual, named}) {
    Rule back;
    WireFailure failure;
    ASSERT_TRUE(decode_rule(encode_rule(rule), "HOST rule 0", &back, &failure)) << failure.message;
    EXPECT_EQ(back, rule);
  }
}

TEST(PestoWire, HelloGoldenBytes) {
  std::vector<WireTable> tables = {
      {Pif::kHost, kCapAll, {wire(make_rule("0.0.0.0", 8080, 8080, 80, "10.88.0.5"))}},
      {Pif::kSplice, kCapTcp | kCapUdp, {}}};
  const std::string expected = hex("6261 7369 6c3a 7300"  // "basil:s\0"
                                   "00000002 00000080 00000010"
                                   "01 484f5354") +  // HOST
                               std::string(124, '\0') +
                               hex("0000003f 00000001") + kGoldenV4 + hex("03 53504c494345") +
                               std::string(122, '\0') + hex("0000000c 00000000 00");
  EXPECT_EQ(encode_hello(tables), expected);
  EXPECT_EQ(expected.size(), kHelloHeaderBytes + 2 * 137 + kRuleBytes + 1);

  std::vector<WireTable> back;
  ASSERT_EQ(hello_error(expected, &back), WireError::kNone);
  EXPECT_EQ(back, tables);
  EXPECT_EQ(hello_error(encode_hello({})), WireError::kNone);
}

TEST(PestoWire, UpdateGoldenBytes) {
  std::vector<WireTable> tables = {{Pif::kHost, 0, {wire(make_rule("*", 22, 80, 32))}},
                                   {Pif::kSplice, 0, {}}};
  const std::string expected =
      hex("01 00000001") + kGoldenDualStack + hex("03 00000000") + hex("00");
  EXPECT_EQ(encode_update(tables), expected);
  Outcome out = decode(expected);
  ASSERT_EQ(out.status, Status::kComplete) << out.message;
  EXPECT_EQ(out.tables, tables);
  EXPECT_EQ(out.consumed, expected.size());
}

TEST(PestoWire, ManyRulesRoundTrip) {
  const char* listens[] = {"*", "0.0.0.0", "::", "127.0.0.1", "::1", "192.0.2.1", "fd00::7"};
  const char* targets[] = {"", "0.0.0.0", "10.88.0.5", "2001:db8::5"};
  const char* ifnames[] = {"", "lo", "eth0", "fifteen-bytes-x"};
  const uint16_t ports[][3] = {
      {1, 1, 1}, {22, 80, 32}, {65535, 65535, 65535}, {1, 65535, 1}, {1000, 2000, 64535}};
  std::vector<WireRule> all;
  for (const char* listen : listens) {
    for (const char* target : targets) {
      for (const char* ifname : ifnames) {
        for (const auto& p : ports) {
          for (unsigned bits = 0; bits < 8; ++bits) {
            Rule r = make_rule(listen, p[0], p[1], p[2], target);
            r.ifname = ifname;
            r.proto = (bits & 1) != 0 ? Proto::kUdp : Proto::kTcp;
            r.weak = (bits & 2) != 0;
            r.scan = (bits & 4) != 0;
            r.target = canonical_target(r.target);
            RuleRecord record = encode_rule(r);
            Rule back;
            WireFailure failure;
            ASSERT_TRUE(decode_rule(record, "HOST rule 0", &back, &failure)) << failure.message;
            ASSERT_EQ(back, r) << format_rule(r);
            ASSERT_EQ(encode_rule(back), record);
            all.push_back(WireRule{r, record});
          }
        }
      }
    }
  }
  // Through the update decoder too, in tables of the largest size.
  for (size_t at = 0; at < all.size(); at += 2 * kMaxRules) {
    std::vector<WireTable> tables(2);
    tables[0].pif = Pif::kSplice;  // in any order
    tables[1].pif = Pif::kHost;
    for (size_t i = at; i < all.size() && i < at + 2 * kMaxRules; ++i) {
      tables[(i - at) / kMaxRules].rules.push_back(all[i]);
    }
    Outcome out = run(encode_update(tables), {Pif::kHost, Pif::kSplice}, 0);
    ASSERT_EQ(out.status, Status::kComplete) << out.message;
    EXPECT_EQ(out.tables, tables);
  }
}

TEST(PestoWire, V4UnspecifiedTargetDecodesCanonicalAndKeepsItsBytes) {
  // 0.0.0.0/8080:0.0.0.0/80: pesto spells the default target ::ffff:0.0.0.0.
  std::string bytes = kGoldenV4;
  std::memcpy(&bytes[16 + 12], "\0\0\0\0", 4);
  RuleRecord record = record_of(bytes);
  Rule rule;
  WireFailure failure;
  ASSERT_TRUE(decode_rule(record, "HOST rule 0", &rule, &failure)) << failure.message;
  EXPECT_EQ(rule.target, Addr{});
  EXPECT_TRUE(is_default_target(rule.target));
  EXPECT_EQ(rule, make_rule("0.0.0.0", 8080, 8080, 80));

  Outcome out = decode(host_update(record));
  ASSERT_EQ(out.status, Status::kComplete) << out.message;
  ASSERT_EQ(out.tables.size(), 1u);
  ASSERT_EQ(out.tables[0].rules.size(), 1u);
  EXPECT_EQ(out.tables[0].rules[0].rule, rule);
  EXPECT_EQ(out.tables[0].rules[0].record, record);  // the bytes it came as
  EXPECT_EQ(encode_update(out.tables), host_update(record));
  // The canonical record differs in taddr only: all zero.
  std::string canonical = bytes;
  std::memset(&canonical[16], 0, 16);
  EXPECT_EQ(str(encode_rule(rule)), canonical);
}

TEST(PestoWire, RuleFieldsAreChecked) {
  // Each case: an edit of the 56 bytes of kGoldenV4, the error, a fragment of the message.
  struct Case {
    size_t at;
    std::string bytes;
    WireError error;
    const char* says;
  };
  const Case cases[] = {
      {32, std::string("eth0\0\0\0\0\0\0\0\0\0\0\0x", 16), WireError::kBadIfName,
       "not NUL-terminated"},
      {32, std::string("0123456789abcdef", 16), WireError::kBadIfName, "not NUL-terminated"},
      {32, std::string("eth0\0x", 6), WireError::kBadIfName, "zero-padded"},
      {54, std::string(1, '\x01'), WireError::kBadProto, "protocol 1"},
      {54, std::string(1, '\0'), WireError::kBadProto, "neither TCP"},
      {55, std::string(1, '\x08'), WireError::kBadFlags, "unknown flag bits 0x08"},
      {55, std::string(1, '\x81'), WireError::kBadFlags, "0x80"},
      {55, std::string(1, '\x01'), WireError::kBadFlags, "dual-stack flag on address 0.0.0.0"},
      {48, std::string("\0\0", 2), WireError::kBadPorts, "port 0"},
      {52, std::string("\0\0", 2), WireError::kBadPorts, "port 0"},
      {48, hex("1f91"), WireError::kBadPorts, "first port 8081 is above last port 8080"},
      {48, hex("0001 ffff 0002"), WireError::kBadPorts, "map to 2-65536, beyond 65535"},
      {50, hex("1f91 ffff"), WireError::kBadPorts, "beyond 65535"},
  };
  for (const Case& c : cases) {
    std::string bytes = kGoldenV4;
    bytes.replace(c.at, c.bytes.size(), c.bytes);
    Rule rule;
    WireFailure failure;
    EXPECT_FALSE(decode_rule(record_of(bytes), "HOST rule 7", &rule, &failure)) << c.says;
    EXPECT_EQ(failure.error, c.error) << c.says;
    EXPECT_EQ(failure.message.rfind("HOST rule 7: ", 0), 0u) << failure.message;
    EXPECT_NE(failure.message.find(c.says), std::string::npos) << failure.message;
    EXPECT_EQ(
        refused(host_update(record_of(bytes)), c.error).rfind("HOST rule 0 (bytes 5-60): ", 0), 0u);
  }
  // The edges that pass: a 15-byte name, the last port mapped to 65535,
  // dual-stack on ::, every known flag.
  std::string ok = kGoldenDualStack;
  ok.replace(32, 15, "fifteen-bytes-x");
  ok.replace(48, 6, hex("0001 fffe 0002"));
  ok[55] = static_cast<char>(kFlagsAll);
  Outcome out = decode(host_update(record_of(ok)));
  ASSERT_EQ(out.status, Status::kComplete) << out.message;
  EXPECT_EQ(out.tables[0].rules[0].rule.ifname, "fifteen-bytes-x");
}

TEST(PestoWire, MessagesNameTableRuleAndBytes) {
  RuleRecord good = encode_rule(make_rule("*", 22, 22, 22));
  std::string bad_bytes = str(good);
  bad_bytes[47] = 'x';
  std::string update =
      encode_update({raw_table(Pif::kSplice, {good}),
                     raw_table(Pif::kHost, {good, good, good, record_of(bad_bytes)})});
  // SPLICE: 0-60; HOST: pif 61, count 62-65, rules from 66: rule 3 is 234-289.
  EXPECT_EQ(refused(update, WireError::kBadIfName),
            "HOST rule 3 (bytes 234-289): interface name is not NUL-terminated");
}

TEST(PestoWire, UpdateTableIdsAreChecked) {
  std::string empty_host = hex("01 00000000");
  std::string empty_splice = hex("03 00000000");
  // TAP (2) is never offered; neither is an unknown id.
  EXPECT_EQ(refused(hex("02 00000000 00"), WireError::kBadPif),
            "update table 0 (byte 0): table id 2 (TAP) was not offered (offered: HOST, SPLICE)");
  EXPECT_NE(refused(empty_host + hex("07"), WireError::kBadPif).find("table id 7 (unknown)"),
            std::string::npos);
  refused(hex("ff"), WireError::kBadPif);
  // SPLICE when only HOST was offered.
  EXPECT_NE(refused(empty_splice + hex("00"), WireError::kBadPif, {Pif::kHost})
                .find("table id 3 (SPLICE) was not offered (offered: HOST)"),
            std::string::npos);
  refused(empty_host + hex("00"), WireError::kBadPif, {});
  // The same table twice, directly or with another in between.
  EXPECT_EQ(refused(empty_host + empty_host + hex("00"), WireError::kDuplicatePif),
            "update table 1 (byte 5): table id 1 (HOST) comes a second time");
  refused(empty_splice + empty_host + empty_splice + hex("00"), WireError::kDuplicatePif);
  // Tables left out, or none at all, are fine.
  Outcome none = decode(hex("00"));
  EXPECT_EQ(none.status, Status::kComplete);
  EXPECT_TRUE(none.tables.empty());
  Outcome splice_only = decode(empty_splice + hex("00"));
  ASSERT_EQ(splice_only.status, Status::kComplete);
  ASSERT_EQ(splice_only.tables.size(), 1u);
  EXPECT_EQ(splice_only.tables[0].pif, Pif::kSplice);
}

TEST(PestoWire, UpdateCountsAboveTheLimitAreRefused) {
  EXPECT_EQ(refused(hex("01 00000100"), WireError::kTooManyRules),
            "HOST rule count (bytes 1-4) is 256; at most 255 are accepted");
  refused(hex("01 ffffffff"), WireError::kTooManyRules);
  refused(hex("03 00000000 01 80000000"), WireError::kTooManyRules);
  // 255 is fine.
  std::vector<RuleRecord> records(kMaxRules, encode_rule(make_rule("*", 22, 22, 22)));
  Outcome out = decode(encode_update({raw_table(Pif::kHost, records)}));
  ASSERT_EQ(out.status, Status::kComplete) << out.message;
  EXPECT_EQ(out.tables[0].rules.size(), kMaxRules);
}

TEST(PestoWire, BytesAfterTheTerminatorAreTrailing) {
  EXPECT_EQ(refused(hex("00 00"), WireError::kTrailing),
            "update byte 1 follows the terminating 0x00 at byte 0");
  Outcome out = decode(hex("01 00000000 00 01 00000000 00"));
  EXPECT_EQ(out.error, WireError::kTrailing);
  EXPECT_EQ(out.consumed, 6u);  // the trailing bytes are not taken
  // In the same feed call as the terminator.
  UpdateDecoder d({Pif::kHost});
  std::string bytes = hex("00 41");
  EXPECT_EQ(d.feed(reinterpret_cast<const uint8_t*>(bytes.data()), 2), Status::kInvalid);
  EXPECT_EQ(d.failure().error, WireError::kTrailing);
  // In a later one; an empty feed after the terminator changes nothing.
  UpdateDecoder later({Pif::kHost});
  const uint8_t end = 0;
  EXPECT_EQ(later.feed(&end, 1), Status::kComplete);
  EXPECT_EQ(later.feed(&end, 0), Status::kComplete);
  EXPECT_EQ(later.finish(), Status::kComplete);
  EXPECT_EQ(later.feed(&end, 1), Status::kInvalid);
  EXPECT_EQ(later.failure().error, WireError::kTrailing);
  EXPECT_EQ(later.feed(&end, 0), Status::kInvalid);
  EXPECT_EQ(later.finish(), Status::kInvalid);
}

TEST(PestoWire, FinishInsideAnUpdateIsTruncated) {
  std::string update = encode_update(
      {raw_table(Pif::kHost, {encode_rule(make_rule("*", 22, 22, 22)), record_of(kGoldenV4)}),
       raw_table(Pif::kSplice, {})});
  // Every proper prefix but the empty one.
  for (size_t len = 1; len < update.size(); ++len) {
    Outcome out = decode(update.substr(0, len));
    EXPECT_EQ(out.status, Status::kInvalid) << len;
    EXPECT_EQ(out.error, WireError::kTruncated) << len;
    EXPECT_EQ(out.consumed, len);
  }
  EXPECT_EQ(refused(update.substr(0, 3), WireError::kTruncated),
            "the update ends at byte 3, inside the HOST rule count (bytes 1-4)");
  EXPECT_EQ(refused(update.substr(0, 70), WireError::kTruncated),
            "the update ends at byte 70, inside HOST rule 1 (bytes 61-116)");
  EXPECT_EQ(refused(update.substr(0, 122), WireError::kTruncated),
            "the update ends at byte 122, before the next table id or the terminating 0x00");
  EXPECT_EQ(decode(update).status, Status::kComplete);
}

TEST(PestoWire, ClientClosingWithoutAByteMadeNoUpdate) {
  UpdateDecoder d({Pif::kHost, Pif::kSplice});
  EXPECT_EQ(d.finish(), Status::kNeedMore);
  EXPECT_EQ(d.failure().error, WireError::kNone);
  EXPECT_EQ(d.consumed(), 0u);
  EXPECT_TRUE(d.tables().empty());
  UpdateDecoder fed_nothing({Pif::kHost});
  EXPECT_EQ(fed_nothing.feed(nullptr, 0), Status::kNeedMore);
  EXPECT_EQ(fed_nothing.finish(), Status::kNeedMore);
  EXPECT_EQ(decode("").status, Status::kNeedMore);
}

TEST(PestoWire, UpdatesBeyondTheLimitAreTooLarge) {
  std::vector<RuleRecord> records(kMaxRules, record_of(kGoldenV4));
  std::string longest =
      encode_update({raw_table(Pif::kHost, records), raw_table(Pif::kSplice, records)});
  ASSERT_EQ(longest.size(), kMaxUpdateBytes);
  Outcome ok = decode(longest);
  EXPECT_EQ(ok.status, Status::kComplete) << ok.message;
  EXPECT_EQ(ok.consumed, kMaxUpdateBytes);
  // One byte more, whatever it is: the limit wins over kTrailing.
  for (const char* extra : {"00", "01", "ff"}) {
    EXPECT_EQ(refused(longest + hex(extra), WireError::kTooLarge),
              "update byte 28571 is beyond the limit of 28571 bytes");
  }
  EXPECT_EQ(decode(longest + hex("00 00")).consumed, kMaxUpdateBytes);
  // Shorter updates with extra bytes are only trailing, however many follow.
  refused(encode_update({raw_table(Pif::kHost, records)}) + hex("00"), WireError::kTrailing);
  refused(hex("00") + std::string(kMaxUpdateBytes, '\0'), WireError::kTrailing);
}

TEST(PestoWire, DecoderStopsAtTheFirstRefusal) {
  UpdateDecoder d({Pif::kHost});
  std::string bytes = hex("02 00000000 00");
  EXPECT_EQ(d.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), Status::kInvalid);
  EXPECT_EQ(d.consumed(), 1u);
  std::string first = d.failure().message;
  EXPECT_EQ(d.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), Status::kInvalid);
  EXPECT_EQ(d.finish(), Status::kInvalid);
  EXPECT_EQ(d.failure().error, WireError::kBadPif);
  EXPECT_EQ(d.failure().message, first);
  EXPECT_EQ(d.consumed(), 1u);
}

TEST(PestoWire, HelloHeaderIsChecked) {
  const std::string good = encode_hello({{Pif::kHost, kCapAll, {}}});
  std::string message;
  std::string bad = good;
  bad[6] = 'x';
  EXPECT_EQ(hello_error(bad, nullptr, &message), WireError::kBadMagic);
  EXPECT_EQ(message, "hello magic (bytes 0-7) is \"basil:x\\x00\", not \"basil:s\\x00\"");
  for (uint32_t version : {0u, 3u, 0x02000000u}) {
    bad = good;
    for (int i = 0; i < 4; ++i) bad[8 + i] = static_cast<char>(version >> (24 - 8 * i));
    EXPECT_EQ(hello_error(bad), WireError::kBadVersion) << version;
  }
  bad = good;
  bad[11] = 1;  // version 1: pesto takes it
  EXPECT_EQ(hello_error(bad), WireError::kNone);
  bad = good;
  bad[15] = 64;
  EXPECT_EQ(hello_error(bad), WireError::kBadSizes);
  bad = good;
  bad[19] = 32;
  EXPECT_EQ(hello_error(bad, nullptr, &message), WireError::kBadSizes);
  EXPECT_EQ(message, "hello sizes (bytes 12-19) are 128 and 32, not 128 and 16");
  // Every proper prefix is truncated; bytes after the end are trailing.
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_EQ(hello_error(good.substr(0, len)), WireError::kTruncated) << len;
  }
  EXPECT_EQ(hello_error(good + hex("00"), nullptr, &message), WireError::kTrailing);
  EXPECT_EQ(message, "hello: byte 158 follows the terminating 0x00 at byte 157");
}

TEST(PestoWire, HelloTablesAreChecked) {
  const std::string header = encode_hello({}).substr(0, kHelloHeaderBytes);
  // One table header: id, name as given (NUL-padded to 128), caps, count.
  auto table = [](const char* id, std::string name, const char* count) {
    name.resize(kPifNameSize, '\0');
    return hex(id) + name + hex("0000003f") + hex(count);
  };
  const std::string host = table("01", "HOST", "00000000");
  const std::string splice = table("03", "SPLICE", "00000000");
  std::string message;
  EXPECT_EQ(hello_error(header + host + splice + hex("00")), WireError::kNone);
  EXPECT_EQ(hello_error(header + splice + host + hex("00")), WireError::kNone);
  EXPECT_EQ(hello_error(header + table("02", "TAP", "00000000") + hex("00"), nullptr, &message),
            WireError::kBadPif);
  EXPECT_EQ(message, "hello table 0 (byte 20): table id 2 (TAP) is not one a server offers");
  EXPECT_EQ(hello_error(header + table("00", "", "00000000")), WireError::kTrailing);
  EXPECT_EQ(hello_error(header + host + splice + host + hex("00")), WireError::kDuplicatePif);
  EXPECT_EQ(hello_error(header + table("01", "HOST", "00000100") + hex("00"), nullptr, &message),
            WireError::kTooManyRules);
  EXPECT_EQ(message, "HOST rule count (bytes 153-156) is 256; pesto takes at most 255");
  // Names: a NUL within 128 bytes, the pif's own, NUL-padded.
  EXPECT_EQ(hello_error(header + table("01", std::string(128, 'H'), "00000000") + hex("00")),
            WireError::kBadName);
  EXPECT_EQ(hello_error(header + table("01", "SPLICE", "00000000") + hex("00"), nullptr, &message),
            WireError::kBadName);
  EXPECT_EQ(message, "HOST table name (bytes 21-148): \"SPLICE\" is not HOST");
  EXPECT_EQ(hello_error(header + table("03", "splice", "00000000") + hex("00")),
            WireError::kBadName);
  EXPECT_EQ(hello_error(header + table("01", std::string("HOST\0x", 6), "00000000") + hex("00")),
            WireError::kBadName);
  // Rules are checked like an update's, and counted against the input.
  std::string bad_rule = kGoldenV4;
  bad_rule[54] = 7;
  EXPECT_EQ(hello_error(header + table("01", "HOST", "00000002") + kGoldenV4 + bad_rule + hex("00"),
                        nullptr, &message),
            WireError::kBadProto);
  EXPECT_EQ(message, "HOST rule 1 (bytes 213-268): protocol 7 is neither TCP (6) nor UDP (17)");
  EXPECT_EQ(hello_error(header + table("01", "HOST", "000000ff") + kGoldenV4 + hex("00")),
            WireError::kTruncated);
}

TEST(PestoWire, HelloRoundTripKeepsRecordsAndCaps) {
  std::string v4_default = kGoldenV4;
  std::memset(&v4_default[28], 0, 4);  // target ::ffff:0.0.0.0
  std::vector<WireTable> tables;
  WireFailure failure;
  std::string update = encode_update({raw_table(Pif::kHost, {record_of(v4_default)})});
  Outcome decoded = decode(update);
  ASSERT_EQ(decoded.status, Status::kComplete);
  decoded.tables[0].caps = 0x12345678;  // unknown bits travel as they are
  std::string hello = encode_hello(decoded.tables);
  ASSERT_TRUE(
      decode_hello(reinterpret_cast<const uint8_t*>(hello.data()), hello.size(), &tables, &failure))
      << failure.message;
  EXPECT_EQ(tables, decoded.tables);
  EXPECT_EQ(encode_hello(tables), hello);
}

TEST(PestoWire, NamesIdsAndCaps) {
  EXPECT_EQ(wire_pif(Pif::kHost), kPifHost);
  EXPECT_EQ(wire_pif(Pif::kSplice), kPifSplice);
  EXPECT_STREQ(wire_pif_name(Pif::kHost), "HOST");
  EXPECT_STREQ(wire_pif_name(Pif::kSplice), "SPLICE");
  EXPECT_EQ(caps_bits(ServerCaps{}), kCapAll);
  ServerCaps some;
  some.ipv6 = false;
  some.scan = false;
  EXPECT_EQ(caps_bits(some), kCapIpv4 | kCapTcp | kCapUdp | kCapIfName);
  EXPECT_EQ(caps_bits(ServerCaps{false, false, false, false, false, false}), 0u);
}

}  // namespace
}  // namespace sluice::pesto
