// Audit records of what is refused before a commit runs: the bound on
// records of refused attempts (worker/refusal_audit.h), with its clock passed
// in and through the real engine; failed policy reloads, which sluiced
// reports with PolicyReloadFailed and the worker writes as one audit line;
// and TargetExited, sluiced's other unasked message, which --stats shows.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "tests/worker/engine_fixture.h"
#include "worker/refusal_audit.h"

namespace sluice::testing {
namespace {

using State = CommitEngine::State;
using RefusalEngineTest = EngineTest;

/// The ids of a client.
struct ucred client(pid_t pid, uid_t uid) {
  return {pid, uid, 100};
}

TEST(RefusalAudit, ABurstIsRecordedThenOneEveryIntervalAndTheRestIsCounted) {
  RefusalAudit audit;
  const uint64_t t0 = 1'000'000'000;
  for (uint32_t i = 0; i < kRefusalRecordBurst; ++i) {
    auto recorded = audit.admit(client(10, 1000), t0 + i);
    ASSERT_TRUE(recorded.has_value()) << i;
    EXPECT_EQ(*recorded, 0u);
  }
  // The flood: counted, not recorded.
  for (int i = 0; i < 25; ++i) EXPECT_FALSE(audit.admit(client(11 + i, 1000), t0 + 100 + i));
  EXPECT_EQ(audit.held_back(), 25u);
  EXPECT_FALSE(audit.summary_due(t0 + kRefusalRecordIntervalNs - 1).has_value());
  // One interval later, the next attempt is recorded and carries the count.
  auto next = audit.admit(client(99, 1000), t0 + kRefusalRecordIntervalNs + 200);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(*next, 25u);
  EXPECT_EQ(audit.held_back(), 0u);
  EXPECT_FALSE(audit.admit(client(100, 1001), t0 + kRefusalRecordIntervalNs + 300));
  EXPECT_FALSE(audit.admit(client(101, 1002), t0 + kRefusalRecordIntervalNs + 400));
  // With no further attempt, a tick writes the count, as the last client.
  EXPECT_FALSE(audit.summary_due(t0 + kRefusalRecordIntervalNs + 500).has_value());
  auto summary = audit.summary_due(t0 + 2 * kRefusalRecordIntervalNs + 200);
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->held_back, 2u);
  EXPECT_EQ(summary->last.pid, 101);
  EXPECT_EQ(summary->last.uid, 1002u);
  EXPECT_FALSE(audit.summary_due(t0 + 5 * kRefusalRecordIntervalNs).has_value()) << "once";
  // A quiet spell fills the bucket again, never above the burst.
  const uint64_t later = t0 + 100 * kRefusalRecordIntervalNs;
  for (uint32_t i = 0; i < kRefusalRecordBurst; ++i) EXPECT_TRUE(audit.admit(client(1, 1), later));
  EXPECT_FALSE(audit.admit(client(1, 1), later));
}

TEST_F(RefusalEngineTest, RefusedAttemptsPastTheBurstAreCountedNotRecorded) {
  const size_t attempts = kRefusalRecordBurst + 5;
  for (size_t i = 0; i < attempts; ++i) {
    control::Failure f;
    f.kind = control::FailureKind::kPolicyDenied;
    f.message = "the control policy refused it: test";
    engine->submit_refused(client(static_cast<pid_t>(500 + i), 4242), "committing from test", {f},
                           [](const control::CommitResult&) {});
  }
  const std::vector<std::string> lines = audit_lines();
  ASSERT_EQ(lines.size(), kRefusalRecordBurst);
  for (const std::string& line : lines) {
    EXPECT_NE(line.find("\"outcome\":\"rejected\""), std::string::npos) << line;
    EXPECT_NE(line.find("\"uid\":4242"), std::string::npos) << line;
    EXPECT_NE(line.find("the control policy refused it: test"), std::string::npos) << line;
  }
  EXPECT_EQ(engine->refusals_held_back(), 5u);
  EXPECT_EQ(engine->history(100).entries.size(), kRefusalRecordBurst);
  EXPECT_EQ(engine->stats(0).commits_rejected, kRefusalRecordBurst);
}

TEST_F(RefusalEngineTest, ACommentIsCutToWhatAClientMaySend) {
  // The control path adds its own words to the client's comment, which may
  // already be as long as a comment may be; the history must stay readable.
  control::Failure f;
  f.kind = control::FailureKind::kPolicyDenied;
  f.message = "refused";
  engine->submit_refused(client(1, 1), std::string(2 * control::kMaxCommentBytes, 'c'), {f},
                         [](const control::CommitResult&) {});
  control::History history = engine->history(10);
  ASSERT_EQ(history.entries.size(), 1u);
  EXPECT_EQ(history.entries[0].comment.size(), control::kMaxCommentBytes);
  EXPECT_EQ(history.entries[0].comment.substr(control::kMaxCommentBytes - 3), "...");
  control::Response response;
  response.body = history;
  const std::string frame = control::encode_response(response);
  auto decoded = control::decode_response(frame.data(), frame.size());
  EXPECT_TRUE(decoded.ok()) << decoded.error().message;
}

TEST_F(RefusalEngineTest, AFailedReloadIsOneRejectedAuditLine) {
  struct ucred sluiced = {77, 0, 0};
  engine->reload_failed("/etc/sluice/policy", "/etc/sluice/policy line 2: bad port \"0\"", sluiced);
  const std::vector<std::string> lines = audit_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\"outcome\":\"rejected\",\"pid\":77,\"uid\":0,\"gid\":0,"
                          "\"comment\":\"policy reload from /etc/sluice/policy failed: the policy "
                          "loaded before stays in force\""),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("\"kind\":\"invalid\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("line 2: bad port \\\"0\\\""), std::string::npos) << lines[0];
  EXPECT_TRUE(engine->history(10).entries.empty()) << "a reload is no commit attempt";
}

/// A PolicyReloadFailed carrying `error`, as the bytes of its datagram.
std::string reload_failed(const std::string& error, uint64_t sequence = 0) {
  auto msg = std::make_unique<wire::PolicyReloadFailedMsg>();
  std::memset(msg.get(), 0, sizeof(*msg));
  msg->header = wire::header(wire::BrokerMsg::kPolicyReloadFailed, sequence);
  std::memcpy(msg->error, error.data(), std::min(error.size(), sizeof(msg->error)));
  return std::string(reinterpret_cast<const char*>(msg.get()), sizeof(*msg));
}

TEST_F(RefusalEngineTest, PolicyReloadFailedIsHandedOnBetweenReplies) {
  std::string got;
  broker->on_policy_failed([&](const std::string& error) { got = error; });
  fake.hold_after(0);
  auto s = submit(host_tables({tcp_rule(20001, 21001)}));
  ASSERT_TRUE(run_until([&] { return fake.waiting() == 1; }));
  ASSERT_TRUE(fake.send_raw(reload_failed("policy line 3: unknown user \"bob\"")));
  ASSERT_TRUE(run_until([&] { return !got.empty(); }));
  EXPECT_EQ(got, "policy line 3: unknown user \"bob\"");
  fake.release();
  ASSERT_TRUE(run_until([&] { return s->done; }));
  EXPECT_TRUE(s->result.applied);
  EXPECT_FALSE(lost.has_value());
}

TEST_F(RefusalEngineTest, AMalformedPolicyReloadFailedLosesTheChannel) {
  std::string bad = reload_failed("no NUL", 0);
  std::memset(bad.data() + sizeof(wire::WireHeader), 'x', wire::kPolicyErrorBytes);
  ASSERT_TRUE(fake.send_raw(bad));
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_NE(lost->reason.find("malformed PolicyReloadFailed"), std::string::npos) << lost->reason;
}

TEST_F(RefusalEngineTest, APolicyReloadFailedWithAControlByteLosesTheChannel) {
  ASSERT_TRUE(fake.send_raw(reload_failed("line 1\nline 2")));
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_NE(lost->reason.find("malformed PolicyReloadFailed"), std::string::npos) << lost->reason;
}

/// A TargetExited with `sequence` and `extra` bytes after the header, as
/// the bytes of its datagram.
std::string target_exited(uint64_t sequence = 0, size_t extra = 0) {
  wire::TargetExitedMsg msg = {};
  msg.header = wire::header(wire::BrokerMsg::kTargetExited, sequence);
  return std::string(reinterpret_cast<const char*>(&msg), sizeof(msg)) + std::string(extra, '\0');
}

TEST_F(RefusalEngineTest, TargetExitedIsHandedOnBetweenRepliesAndShownByStats) {
  bool told = false;
  broker->on_target_exited([&] {
    engine->set_target_exited();
    told = true;
  });
  EXPECT_FALSE(engine->stats(0).target_exited);
  fake.hold_after(0);
  auto s = submit(host_tables({tcp_rule(20001, 21001)}));
  ASSERT_TRUE(run_until([&] { return fake.waiting() == 1; }));
  ASSERT_TRUE(fake.send_raw(target_exited()));
  ASSERT_TRUE(run_until([&] { return told; }));
  EXPECT_TRUE(engine->stats(0).target_exited);
  fake.release();
  ASSERT_TRUE(run_until([&] { return s->done; }));
  EXPECT_TRUE(s->result.applied);
  EXPECT_FALSE(lost.has_value());
}

TEST_F(RefusalEngineTest, ATargetExitedWithASequenceLosesTheChannel) {
  ASSERT_TRUE(fake.send_raw(target_exited(1)));
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_NE(lost->reason.find("malformed TargetExited"), std::string::npos) << lost->reason;
}

TEST_F(RefusalEngineTest, ATargetExitedLongerThanItsHeaderLosesTheChannel) {
  ASSERT_TRUE(fake.send_raw(target_exited(0, 8)));
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  // Cut by the kernel to the header's length: the reader says so.
  EXPECT_NE(lost->reason.find("reading TargetExited: message larger than its buffer"),
            std::string::npos)
      << lost->reason;
}

}  // namespace
}  // namespace sluice::testing
