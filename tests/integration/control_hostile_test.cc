// Hostile control clients against the real daemon, each test ending with "the
// daemon is alive and still forwarding": random bytes, a message that points
// back into itself, tables that alias one rule list (the amplification the
// reader's traversal limit exists for), oversized Text, and many clients at
// once, where the one too many is told the server is busy. (A huge segment
// count and truncation are in control_test.cc; a client the control policy
// refuses is in policy_test.cc.)
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "schema/codec.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;
constexpr uint16_t kListenPort = 18080;

/// A daemon forwarding kListenPort to an echo target, and one connection
/// through it that must keep working whatever the control clients do.
class HostileControl : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = listen_tcp("127.0.0.1", kTargetPort);
    echo_ = echo_server(target_.get(), 1);
    d_.start(
        {"-t", "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort)});
    ASSERT_TRUE(d_.wait_ready()) << d_.log();
    conn_ = connect_tcp("127.0.0.1", kListenPort);
    ASSERT_TRUE(conn_.valid());
    ASSERT_TRUE(ping(conn_.get()));
  }
  void TearDown() override {
    if (conn_.valid()) shutdown(conn_.get(), SHUT_RDWR);
    if (echo_.joinable()) echo_.join();
  }

  /// The daemon is alive and still forwarding: the old connection echoes,
  /// and a new sluicectl gets the tables.
  void expect_alive() {
    EXPECT_TRUE(ping(conn_.get())) << "forwarding stopped\n" << d_.log();
    RunResult r = d_.ctl();
    EXPECT_EQ(r.status, 0) << r.err << d_.log();
    EXPECT_NE(r.out.find(":18080"), std::string::npos) << r.out;
  }

  /// Sends `bytes` on a fresh handshaken session and returns the responses
  /// (at most `n`).
  std::vector<control::Response> send_after_hello(const std::string& bytes, size_t n = 1) {
    UniqueFd s = raw_session(d_);
    EXPECT_TRUE(s.valid());
    if (!s.valid()) return {};
    EXPECT_EQ(send(s.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    return read_responses(s.get(), n);
  }

  UniqueFd target_, conn_;
  std::thread echo_;
  Daemon d_;
};

/// The protocol error of `r`, or nullptr.
const control::ProtocolError* error_of(const control::Response& r) {
  return std::get_if<control::ProtocolError>(&r.body);
}

TEST_F(HostileControl, RandomBytesGetAnErrorOrADrop) {
  std::mt19937 rng(20261124);  // fixed seed: a failure reproduces
  for (int i = 0; i < 40; ++i) {
    std::string junk(1 + rng() % 4096, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    UniqueFd c = raw_control(d_);
    // Half the time before the client's hello, half after a proper one.
    if (i % 2 == 1) c = raw_session(d_);
    ASSERT_TRUE(c.valid());
    send(c.get(), junk.data(), junk.size(), MSG_NOSIGNAL);
    shutdown(c.get(), SHUT_WR);  // EOF: the server must not wait for more
    std::string answer = read_to_eof(c.get());
    auto responses = decode_all(answer);
    // Whatever came back decodes, and ends in an error if it is not just
    // the greeting (a drop at EOF is also fine).
    if (responses.size() > (i % 2 == 0 ? 1u : 0u)) {
      EXPECT_NE(error_of(responses.back()), nullptr) << "junk was answered as a request";
    }
  }
  expect_alive();
}

TEST_F(HostileControl, MessageThatPointsBackIntoItselfIsMalformed) {
  // Request{commit: CommitRequest{tables: [Table{rules -> the tables list}]}}:
  // the table's rule list is the list that holds the table, read as rules.
  std::vector<uint64_t> w = {
      struct_ptr(0, 2, 1),  // 0: root -> Request at 1
      7,                    // 1: id
      2,                    // 2: union tag 2 = commit
      struct_ptr(0, 2, 2),  // 3: commit -> CommitRequest at 4
      0,                    // 4: expectedGeneration
      0,                    // 5: flags
      list_ptr(1, 7, 2),    // 6: tables -> composite list, tag at 8
      0,                    // 7: comment: null
      struct_ptr(1, 1, 1),  // 8: tag: 1 element of 1 data word, 1 pointer
      0,                    // 9: Table.pif = HOST
      list_ptr(-3, 7, 2),   // 10: Table.rules -> back to the tag at 8
  };
  auto r = send_after_hello(frame_words(w));
  ASSERT_EQ(r.size(), 1u) << d_.log();
  ASSERT_NE(error_of(r[0]), nullptr);
  EXPECT_EQ(error_of(r[0])->code, control::ErrorCode::kMalformed) << error_of(r[0])->message;
  expect_alive();
}

TEST_F(HostileControl, TablesAliasingOneRuleListCostNoMoreThanTheLimits) {
  // Two tables whose rule pointers both name one list of 4096 rules, and
  // every rule's addresses name one 16-byte blob: aliasing is legal Cap'n
  // Proto, so the decoder must bound the work by the per-list limits (2
  // tables, 4096 rules each) it checks before iterating, with the reader's
  // traversal limit behind them. The commit is judged like any other.
  constexpr uint32_t kRules = 4096;
  std::vector<uint64_t> w = {
      struct_ptr(0, 2, 1),  // 0: root -> Request
      9,                    // 1: id
      2,                    // 2: commit
      struct_ptr(0, 2, 2),  // 3: -> CommitRequest at 4
      0,                    // 4: expectedGeneration (stale or not, the tables are judged first)
      0,                    // 5
      list_ptr(1, 7, 4),    // 6: tables: tag at 8, 2 elements x 2 words
      0,                    // 7: comment
      struct_ptr(2, 1, 1),  // 8: tag: 2 tables
      0,                    // 9: Table 0: HOST
      list_ptr(2, 7, kRules * 5),                      // 10: -> rules tag at 13
      1,                                               // 11: Table 1: SPLICE
      list_ptr(0, 7, kRules * 5),                      // 12: -> the same rules tag at 13
      struct_ptr(static_cast<int32_t>(kRules), 2, 3),  // 13: tag: kRules rules
  };
  const size_t blob_listen = 14 + 5 * kRules;  // ::ffff:127.0.0.1
  const size_t blob_target = blob_listen + 2;  // all zero: the default target
  for (uint32_t i = 0; i < kRules; ++i) {
    const uint64_t first = 20000 + i, to = 30000 + i;
    w.push_back((first << 16) | (first << 32) | (to << 48));  // proto TCP, first, last, to
    w.push_back(0);
    const size_t p = w.size();
    w.push_back(list_ptr(static_cast<int32_t>(blob_listen - (p + 1)), 2, 16));
    w.push_back(0);  // ifname: null
    w.push_back(list_ptr(static_cast<int32_t>(blob_target - (p + 3)), 2, 16));
  }
  w.push_back(0);
  w.push_back(0x0100007fffff0000ULL);  // bytes 8..15: ff ff 7f 00 00 01
  w.push_back(0);
  w.push_back(0);
  auto r = send_after_hello(frame_words(w));
  ASSERT_EQ(r.size(), 1u) << d_.log();
  // Refused as a whole: this worker serves no SPLICE rules; nothing was bound.
  const auto* result = std::get_if<control::CommitResult>(&r[0].body);
  ASSERT_NE(result, nullptr) << (error_of(r[0]) ? error_of(r[0])->message : "");
  EXPECT_FALSE(result->applied);
  ASSERT_FALSE(result->failures.empty());
  EXPECT_EQ(result->opened, 0u);
  expect_alive();
}

TEST_F(HostileControl, OversizedTextIsRefusedNamingTheLimit) {
  control::CommitRequest commit;
  commit.comment = std::string(64 * 1024, 'c');  // the limit is 1 KiB
  auto r = send_after_hello(control::encode_request(control::Request{3, commit}));
  ASSERT_EQ(r.size(), 1u) << d_.log();
  ASSERT_NE(error_of(r[0]), nullptr);
  EXPECT_EQ(error_of(r[0])->code, control::ErrorCode::kMalformed);
  EXPECT_NE(error_of(r[0])->message.find("1024"), std::string::npos) << error_of(r[0])->message;

  // A 1 MiB client version in the hello itself.
  UniqueFd c = raw_control(d_);
  ASSERT_EQ(read_responses(c.get(), 1).size(), 1u);
  control::ClientHello hello{control::kProtocolVersion, std::string(1 << 20, 'v')};
  std::string frame = control::encode_request(control::Request{1, hello});
  send(c.get(), frame.data(), frame.size(), MSG_NOSIGNAL);
  EXPECT_EQ(last_error_code(read_to_eof(c.get())),
            static_cast<int>(control::ErrorCode::kMalformed));
  expect_alive();
}

TEST_F(HostileControl, ManyClientsAtOnceAreServedUpToTheLimit) {
  // 64 clients may be connected at once (ControlLimits::max_clients); each
  // gets its greeting. The 65th is told why it is refused.
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 64; ++i) {
    clients.push_back(raw_session(d_));
    ASSERT_TRUE(clients.back().valid()) << "client " << i << "\n" << d_.log();
  }
  UniqueFd extra = raw_control(d_);
  std::string answer = read_to_eof(extra.get());
  auto responses = decode_all(answer);
  ASSERT_FALSE(responses.empty());
  ASSERT_NE(error_of(responses.back()), nullptr);
  EXPECT_EQ(error_of(responses.back())->code, control::ErrorCode::kBusy)
      << error_of(responses.back())->message;
  EXPECT_NE(error_of(responses.back())->message.find("64 control clients"), std::string::npos);
  // sluicectl says what happened and what to do, and fails as a connection
  // problem (exit status 3).
  RunResult busy = d_.ctl();
  EXPECT_EQ(busy.status, 3) << busy.out << busy.err;
  EXPECT_NE(busy.err.find("the server has too many control clients now; try again"),
            std::string::npos)
      << busy.err;
  EXPECT_TRUE(ping(conn_.get()));
  // Every connected client is still served, in any order.
  std::string get_state = control::encode_request(control::Request{2, control::GetState{}});
  for (auto& c : clients) {
    ASSERT_EQ(send(c.get(), get_state.data(), get_state.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(get_state.size()));
  }
  for (auto& c : clients) {
    auto r = read_responses(c.get(), 1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_NE(std::get_if<control::State>(&r[0].body), nullptr);
  }
  clients.clear();                // all leave; room again
  for (int i = 0; i < 50; ++i) {  // bounded: the server frees them within its batch
    if (d_.ctl().status == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  expect_alive();
}

}  // namespace
}  // namespace sluice::test
