// The control codec: round trips, canonical digests, and refusal of
// malformed messages without any exception escaping.
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "schema/codec.h"
#include "schema/control.capnp.h"
#include "schema/frame.h"

namespace sluice::control {
namespace {

namespace cp = ::sluice::capnp_control;

/// Copies a frame into aligned storage and decodes it as a request.
Result<Request> decode_req(const std::string& frame) {
  std::vector<uint64_t> words((frame.size() + 7) / 8);
  std::memcpy(words.data(), frame.data(), frame.size());
  return decode_request(words.data(), frame.size());
}

/// Copies a frame into aligned storage and decodes it as a response.
Result<Response> decode_resp(const std::string& frame) {
  std::vector<uint64_t> words((frame.size() + 7) / 8);
  std::memcpy(words.data(), frame.data(), frame.size());
  return decode_response(words.data(), frame.size());
}

/// A table set with one rule of every shape.
TableSet sample_tables() {
  TableSet t;
  Rule a;
  a.dual_stack = true;
  a.first = 22;
  a.last = 80;
  a.to = 32;
  Rule b;
  parse_addr("192.0.2.1", &b.listen);
  b.ifname = "eth0";
  b.first = b.last = 5000;
  b.to = 6000;
  parse_addr("192.0.2.5", &b.target);
  b.proto = Proto::kUdp;
  b.weak = true;
  t.of(Pif::kHost).rules = {a, b};
  Rule c;
  c.dual_stack = true;
  c.ifname = "lo";
  c.first = c.last = c.to = 20000;
  c.scan = true;
  t.of(Pif::kSplice).rules = {c};
  return t;
}

/// Serialises a raw builder as a frame.
std::string frame_of(capnp::MallocMessageBuilder& b) {
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

TEST(Codec, RequestsRoundTrip) {
  Request hello{1, ClientHello{kProtocolVersion, "sluicectl 0.1"}};
  auto got = decode_req(encode_request(hello));
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, hello);
  Request get{2, GetState{}};
  auto got2 = decode_req(encode_request(get));
  ASSERT_TRUE(got2.ok());
  EXPECT_EQ(*got2, get);
}

TEST(Codec, ResponsesRoundTrip) {
  ServerHello hello;
  hello.server_version = "sluice-worker 0.1";
  hello.caps.udp = false;
  hello.rules_per_table = 4096;
  hello.listeners_per_table = 327680;
  hello.message_bytes = 4 << 20;
  hello.pifs = {PifInfo{Pif::kHost, "HOST"}};
  hello.ephemeral_first = 32768;
  hello.ephemeral_last = 60999;
  Response r1{0, hello};
  auto got1 = decode_resp(encode_response(r1));
  ASSERT_TRUE(got1.ok()) << got1.error().message;
  EXPECT_EQ(*got1, r1);

  State state{7, digest_tables(sample_tables()), sample_tables()};
  state.unbound = 3;  // best-effort ports that do not listen
  Response r2{3, state};
  auto got2 = decode_resp(encode_response(r2));
  ASSERT_TRUE(got2.ok()) << got2.error().message;
  EXPECT_EQ(*got2, r2);

  Response welcome{5, Welcome{}};
  auto got_welcome = decode_resp(encode_response(welcome));
  ASSERT_TRUE(got_welcome.ok());
  EXPECT_EQ(*got_welcome, welcome);

  Response r3{4, ProtocolError{ErrorCode::kOutOfOrder, "no"}};
  auto got3 = decode_resp(encode_response(r3));
  ASSERT_TRUE(got3.ok());
  EXPECT_EQ(*got3, r3);
}

TEST(Codec, EveryErrorCodeRoundTripsWithItsName) {
  const std::pair<ErrorCode, const char*> codes[] = {
      {ErrorCode::kMalformed, "malformed"},
      {ErrorCode::kUnsupportedVersion, "unsupported-version"},
      {ErrorCode::kUnknownRequest, "unknown-request"},
      {ErrorCode::kNotPermitted, "not-permitted"},
      {ErrorCode::kTooLarge, "too-large"},
      {ErrorCode::kOutOfOrder, "out-of-order"},
      {ErrorCode::kTimeout, "timeout"},
      {ErrorCode::kBusy, "busy"},
  };
  for (const auto& [code, name] : codes) {
    EXPECT_STREQ(error_code_name(code), name);
    Response r{0, ProtocolError{code, std::string("because ") + name}};
    auto got = decode_resp(encode_response(r));
    ASSERT_TRUE(got.ok()) << name << ": " << got.error().message;
    EXPECT_EQ(*got, r) << name;
  }
}

TEST(Codec, BusyIsTheSchemasEighthErrorCode) {
  // Appended to control.capnp, never renumbered: older peers keep their codes.
  EXPECT_EQ(static_cast<uint16_t>(cp::ErrorCode::BUSY), 7);
  capnp::MallocMessageBuilder b;
  auto e = b.initRoot<cp::Response>().initError();
  e.setCode(cp::ErrorCode::BUSY);
  e.setMessage("the server already has 64 control clients connected; retry later");
  auto got = decode_resp(frame_of(b));
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(std::get<ProtocolError>(got->body).code, ErrorCode::kBusy);
}

TEST(Codec, UnknownErrorCodeIsRefused) {
  capnp::MallocMessageBuilder b;
  auto e = b.initRoot<cp::Response>().initError();
  e.setCode(static_cast<cp::ErrorCode>(static_cast<uint16_t>(cp::ErrorCode::BUSY) + 1));
  auto got = decode_resp(frame_of(b));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("unknown error code 8"), std::string::npos)
      << got.error().message;
}

TEST(Codec, StatsRoundTrip) {
  Request ask{6, StatsRequest{}};
  auto got_ask = decode_req(encode_request(ask));
  ASSERT_TRUE(got_ask.ok()) << got_ask.error().message;
  EXPECT_EQ(*got_ask, ask);

  Stats st;
  st.generation = 12;
  st.uptime_millis = 123456;
  st.connections_active = 3;
  st.connection_limit = 4096;
  st.flows_active = 2;
  st.flow_limit = 8192;
  st.listeners = 5;
  st.paused_listeners = 1;
  st.pipe_size = 262144;
  st.connect_timeout_seconds = 10;
  st.udp_idle_timeout_seconds = 180;
  st.audit_lines_lost = 2;
  st.audit_bytes_waiting = 1400;
  st.log_lines_dropped = 7;
  st.connection_log = true;
  st.target_exited = true;
  st.idle_timeout_seconds = 300;
  st.policy_reloads = 3;
  Failure pf;
  pf.kind = FailureKind::kPolicyDenied;
  pf.rule = 1;
  pf.text = "TCP [127.0.0.1]:80 => 8000";
  pf.port = 80;
  pf.err = 13;
  pf.message = "no longer passes";
  st.policy_failures = {pf};
  st.connection_limit_per_rule = 500;
  st.connection_limit_per_source = 64;
  st.connection_share = 2048;
  st.connection_reserve = 1024;
  st.sources_active = 9;
  RuleStats tcp;
  tcp.rule = 0;
  tcp.text = "TCP [127.0.0.1]:8080 => 8000";
  tcp.accepted = 1000;
  tcp.active = 3;
  tcp.failed = 7;
  tcp.bytes_to_target = 1ULL << 40;  // 64-bit counters survive the wire
  tcp.bytes_to_client = 99;
  RuleStats udp;
  udp.pif = Pif::kSplice;
  udp.proto = Proto::kUdp;
  udp.rule = 4;
  udp.text = "UDP [*]:53 => 53";
  udp.flows_active = 2;
  udp.flows_created = 10;
  udp.datagrams_to_target = 20;
  udp.datagrams_to_client = 19;
  udp.dropped = 1;
  udp.target_errors = 7;
  tcp.loops = 2;
  tcp.paused_rule_limit = 3;
  tcp.paused_global_limit = 4;
  tcp.refused_source = 5;
  tcp.closed_idle = 6;
  st.rules = {tcp, udp};
  Response r{6, st};
  auto got = decode_resp(encode_response(r));
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, r);
}

TEST(Codec, ScanActivePortsRoundTripAndTellAScanRuleFromOthers) {
  Stats st;
  RuleStats plain, idle, busy;
  plain.text = "TCP [*]:22 => 22";  // not a scan rule: no list at all
  idle.text = "TCP [*]:8000-8010 => 8000-8010 (auto-scan)";
  idle.scan_active = std::vector<PortRange>{};  // a scan rule with nothing bound now
  busy.proto = Proto::kUdp;
  busy.text = "UDP [*]:1-32767 => 1-32767 (best effort) (auto-scan)";
  busy.scan_active = std::vector<PortRange>{{53, 53}, {8000, 8002}, {65535, 65535}};
  st.rules = {plain, idle, busy};
  Response r{3, st};
  auto got = decode_resp(encode_response(r));
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, r);
  const Stats& back = std::get<Stats>(got->body);
  EXPECT_FALSE(back.rules[0].scan_active.has_value());
  ASSERT_TRUE(back.rules[1].scan_active.has_value());
  EXPECT_TRUE(back.rules[1].scan_active->empty());
}

TEST(Codec, ScanActivePortsOutOfOrderOrEmptyRunsAreRefused) {
  struct Case {
    std::vector<std::pair<uint16_t, uint16_t>> runs;
    const char* why;
  };
  const Case cases[] = {
      {{{10, 9}}, "first > last"},
      {{{0, 5}}, "port 0"},
      {{{10, 20}, {20, 30}}, "overlapping"},
      {{{30, 40}, {10, 20}}, "decreasing"},
  };
  for (const Case& c : cases) {
    capnp::MallocMessageBuilder b;
    auto root = b.initRoot<cp::Response>();
    root.setId(1);
    auto rules = root.initStats().initRules(1);
    rules[0].setText("TCP [*]:1-100 => 1-100 (auto-scan)");
    auto runs = rules[0].initScanActive(static_cast<unsigned>(c.runs.size()));
    for (size_t i = 0; i < c.runs.size(); ++i) {
      runs[static_cast<unsigned>(i)].setFirst(c.runs[i].first);
      runs[static_cast<unsigned>(i)].setLast(c.runs[i].second);
    }
    auto got = decode_resp(frame_of(b));
    ASSERT_FALSE(got.ok()) << c.why;
    EXPECT_NE(got.error().message.find("port runs out of order"), std::string::npos)
        << c.why << ": " << got.error().message;
  }
  // More runs than there are ports cannot be a server's answer.
  capnp::MallocMessageBuilder b;
  auto root = b.initRoot<cp::Response>();
  auto rules = root.initStats().initRules(1);
  rules[0].initScanActive(static_cast<unsigned>(kMaxPortRuns + 1));
  auto got = decode_resp(frame_of(b));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("too many port runs"), std::string::npos)
      << got.error().message;
}

TEST(Codec, FailuresRoundTripWithTheOtherRuleOfAConflict) {
  CommitResult result;
  Failure conflict;
  conflict.kind = FailureKind::kConflict;
  conflict.rule = 3;
  conflict.other_rule = 1;
  conflict.text = "TCP [*]:80 => 80";
  conflict.message = "HOST rule 3 conflicts with rule 1";
  Failure bind;
  bind.kind = FailureKind::kBindFailed;
  bind.rule = 0;
  bind.port = 80;
  bind.err = 98;
  bind.message = "bind failed";
  result.failures = {conflict, bind};
  result.failure_count = 10000;  // the list is cut at kMaxFailures; the count is not
  Failure weak = bind;
  weak.port = 81;
  weak.message = "bind failed (best effort: the rule keeps its other ports)";
  result.warnings = {weak};
  Response r{9, result};
  auto got = decode_resp(encode_response(r));
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, r);
  EXPECT_EQ(std::get<CommitResult>(got->body).failures[1].other_rule, -1);
  EXPECT_EQ(std::get<CommitResult>(got->body).warnings[0].port, 81);
}

TEST(Codec, TheDefaultTargetDecodesToOneCanonicalForm) {
  // ::ffff:0.0.0.0 is the default target spelt as an IPv4 address; it
  // decodes to the same rule as ::, so every check, the digest and the
  // listing see one rule.
  CommitRequest commit;
  Rule spelt;
  spelt.listen = addr_v4(0, 0, 0, 0);
  spelt.first = spelt.last = 8080;
  spelt.to = 8081;
  spelt.target = addr_v4(0, 0, 0, 0);
  commit.tables.of(Pif::kHost).rules = {spelt};
  auto got = decode_req(encode_request(Request{7, commit}));
  ASSERT_TRUE(got.ok()) << got.error().message;
  const Rule& decoded = std::get<CommitRequest>(got->body).tables.of(Pif::kHost).rules.at(0);
  EXPECT_EQ(decoded.target, Addr{});
  EXPECT_EQ(decoded.listen, addr_v4(0, 0, 0, 0)) << "a listen address keeps its family";
  Rule canonical = spelt;
  canonical.target = Addr{};
  TableSet expected;
  expected.of(Pif::kHost).rules = {canonical};
  EXPECT_EQ(digest_tables(std::get<CommitRequest>(got->body).tables), digest_tables(expected));
}

TEST(Codec, OverlongRuleTextInStatsIsRefused) {
  Stats st;
  RuleStats r;
  r.text = std::string(kMaxTextBytes + 1, 'x');
  st.rules = {r};
  auto got = decode_resp(encode_response(Response{1, st}));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("rule text"), std::string::npos) << got.error().message;
}

TEST(Codec, DigestIsCanonicalAndSensitive) {
  TableSet t = sample_tables();
  EXPECT_EQ(digest_tables(t), digest_tables(sample_tables()));
  TableSet u = t;
  u.of(Pif::kHost).rules[0].to = 33;
  EXPECT_NE(digest_tables(t), digest_tables(u));
  EXPECT_NE(digest_tables(TableSet{}), digest_tables(t));
}

TEST(Codec, WrongMagicIsRefused) {
  capnp::MallocMessageBuilder b;
  auto root = b.initRoot<cp::Request>();
  auto h = root.initHello();
  h.setMagic(0x12345678);
  h.setProtocolVersion(1);
  auto got = decode_req(frame_of(b));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("magic"), std::string::npos);
}

TEST(Codec, ShortAddressIsRefused) {
  capnp::MallocMessageBuilder b;
  auto root = b.initRoot<cp::Response>();
  auto s = root.initState();
  s.initDigest(32);
  auto tables = s.initTables(1);
  auto rules = tables[0].initRules(1);
  rules[0].initListen(4);
  rules[0].initTarget(16);
  auto got = decode_resp(frame_of(b));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("16"), std::string::npos);
}

TEST(Codec, DuplicateTableIsRefused) {
  capnp::MallocMessageBuilder b;
  auto s = b.initRoot<cp::Response>().initState();
  s.initDigest(32);
  auto tables = s.initTables(2);
  tables[0].setPif(cp::Pif::HOST);
  tables[1].setPif(cp::Pif::HOST);
  auto got = decode_resp(frame_of(b));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("twice"), std::string::npos);
}

TEST(Codec, OverlongTextIsRefused) {
  capnp::MallocMessageBuilder b;
  auto h = b.initRoot<cp::Request>().initHello();
  h.setMagic(cp::MAGIC);
  std::string big(kMaxTextBytes + 1, 'a');
  h.setClientVersion(big);
  EXPECT_FALSE(decode_req(frame_of(b)).ok());
}

TEST(Codec, UnknownUnionMemberIsRefused) {
  // A request whose union discriminant names a member this build lacks.
  capnp::MallocMessageBuilder b;
  auto root = b.initRoot<cp::Request>();
  root.setGetState();
  std::string frame = frame_of(b);
  // The discriminant is the 16-bit field after the 8-byte id in the data section.
  // Root pointer at word 1 (after the segment table), data section at word 2.
  uint16_t bogus = 77;
  std::memcpy(&frame[8 + 8 + 8], &bogus, 2);
  auto got = decode_req(frame);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("unknown request kind 77"), std::string::npos)
      << got.error().message;
}

TEST(Codec, RandomBytesNeverEscapeAsExceptions) {
  std::mt19937 rng(1234);
  constexpr int kInputs = 3000;
  int decoded = 0;  // inputs that passed the frame check and reached the decoder
  for (int i = 0; i < kInputs; ++i) {
    // Three in four get a valid segment table (one segment, or two that
    // split the body) over random body words, so that most inputs reach the
    // decoder; the rest are random throughout, header included.
    const size_t segments = i % 4 == 0 ? 0 : i % 4 == 3 ? 2 : 1;
    const size_t header_words = segments == 2 ? 2 : 1;  // 4 + 4 * segments bytes, padded
    const size_t words = header_words + 1 + rng() % 63;
    std::vector<uint64_t> buf(words);
    for (auto& w : buf) w = (static_cast<uint64_t>(rng()) << 32) | rng();
    auto* bytes = reinterpret_cast<char*>(buf.data());
    const auto body = static_cast<uint32_t>(words - header_words);
    if (segments == 1) {
      uint32_t zero = 0;
      std::memcpy(bytes, &zero, 4);
      std::memcpy(bytes + 4, &body, 4);
    } else if (segments == 2) {
      uint32_t one = 1, first = static_cast<uint32_t>(rng() % (body + 1)), second = body - first;
      std::memcpy(bytes, &one, 4);
      std::memcpy(bytes + 4, &first, 4);
      std::memcpy(bytes + 8, &second, 4);
    }
    FrameCheck c =
        check_frame(reinterpret_cast<uint8_t*>(buf.data()), words * 8, kMaxControlMessageBytes);
    if (segments != 0) {
      EXPECT_EQ(c.status, FrameStatus::kComplete) << "input " << i << ": " << c.message;
    }
    if (c.status != FrameStatus::kComplete) continue;
    ++decoded;
    auto req = decode_request(buf.data(), c.frame_bytes);
    auto resp = decode_response(buf.data(), c.frame_bytes);
    // What a client is told says what is wrong, never where the code is.
    for (const std::string* m :
         {req.ok() ? nullptr : &req.error().message, resp.ok() ? nullptr : &resp.error().message}) {
      if (m == nullptr) continue;
      EXPECT_EQ(m->find("stack:"), std::string::npos) << "input " << i << ": " << *m;
      EXPECT_EQ(m->find(".c++:"), std::string::npos) << "input " << i << ": " << *m;
    }
  }
  // The test means something only if the decoder saw most of the inputs:
  // every framed one (three in four), and hardly any wholly random one.
  EXPECT_GE(decoded, kInputs * 7 / 10) << "too few random frames reached the decoder";
}

TEST(Codec, ChainedListRootIsRefused) {
  // A root that is a chain of one-element pointer lists instead of a struct:
  // each pointer points to the next word.
  constexpr size_t kDepth = 40;
  std::vector<uint64_t> words(1 + kDepth + 1, 0);
  uint32_t zero = 0, size = static_cast<uint32_t>(kDepth + 1);
  std::memcpy(words.data(), &zero, 4);
  std::memcpy(reinterpret_cast<char*>(words.data()) + 4, &size, 4);
  for (size_t i = 0; i < kDepth; ++i) {
    // List pointer: offset 0 (next word), element size 6 (pointer), count 1.
    words[1 + i] = 1ULL | (0ULL << 2) | (6ULL << 32) | (1ULL << 35);
  }
  auto got = decode_request(words.data(), words.size() * 8);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("malformed message"), std::string::npos)
      << got.error().message;
  // Cap'n Proto's description only: no source line, no stack of addresses.
  EXPECT_EQ(got.error().message.find("stack:"), std::string::npos) << got.error().message;
  EXPECT_EQ(got.error().message.find(".c++:"), std::string::npos) << got.error().message;
}

}  // namespace
}  // namespace sluice::control
