// The three views of one commit record (worker/commit_record.h): the reply to
// the client, the audit line and the history entry, all taken from the same
// record, agree with it field by field; and the failure list is cut once.
#include <gtest/gtest.h>

#include <string>

#include "base/sha256.h"
#include "schema/audit_line.h"
#include "schema/codec.h"
#include "schema/frame.h"
#include "schema/model.h"
#include "worker/audit.h"
#include "worker/commit_record.h"

namespace sluice {
namespace {

/// A rejected record with every field set to a distinct value.
CommitRecord sample() {
  CommitRecord r;
  r.outcome = control::Outcome::kRejected;
  r.dry_run = false;
  r.peer.pid = 4242;
  r.peer.uid = 1000;
  r.peer.gid = 100;
  r.comment = "open web";
  r.generation_before = 7;
  r.generation_after = 7;
  r.digest_before = sha256("a", 1);
  r.digest_after = sha256("b", 1);
  r.added = {"HOST TCP [*]:80 => 80", "HOST UDP [*]:53 => 53"};
  r.removed = {"HOST TCP [*]:22 => 22"};
  r.kept = 3;
  r.opened = 2;
  r.closed = 1;
  r.rebound = 4;
  control::Failure f;
  f.kind = control::FailureKind::kBindFailed;
  f.pif = Pif::kHost;
  f.rule = 1;
  f.text = "TCP [*]:80 => 80";
  f.port = 80;
  f.err = 98;
  f.message = "port 80 is in use";
  control::Failure g;
  g.kind = control::FailureKind::kPolicyDenied;
  g.message = "denied";
  r.failures = {f, g};
  r.duration_micros = 1234;
  r.unix_millis = 1795539791123;  // 2026-11-24T17:03:11.123Z
  r.sequence = 5;
  return r;
}

TEST(CommitRecord, ResultIsAViewOfTheRecord) {
  const CommitRecord r = sample();
  control::CommitResult res = to_result(r);
  EXPECT_FALSE(res.applied);
  EXPECT_FALSE(res.dry_run);
  EXPECT_EQ(res.generation, r.generation_after);
  EXPECT_EQ(res.digest, r.digest_after);
  EXPECT_EQ(res.kept, 3u);
  EXPECT_EQ(res.opened, 2u);
  EXPECT_EQ(res.closed, 1u);
  EXPECT_EQ(res.rebound, 4u);
  EXPECT_EQ(res.failures, r.failures);
  EXPECT_EQ(res.duration_micros, 1234u);

  CommitRecord applied = r;
  applied.outcome = control::Outcome::kApplied;
  applied.generation_after = 8;
  EXPECT_TRUE(to_result(applied).applied);
  EXPECT_EQ(to_result(applied).generation, 8u);
  // A stale dry run is still a dry run, and never applied.
  CommitRecord stale = r;
  stale.outcome = control::Outcome::kStale;
  stale.dry_run = true;
  EXPECT_FALSE(to_result(stale).applied);
  EXPECT_TRUE(to_result(stale).dry_run);
  CommitRecord dry = r;
  dry.outcome = control::Outcome::kDryRun;
  dry.dry_run = true;
  EXPECT_FALSE(to_result(dry).applied);
  EXPECT_TRUE(to_result(dry).dry_run);
}

TEST(CommitRecord, AuditLineIsAViewOfTheRecord) {
  const CommitRecord r = sample();
  Sha256Digest prev = sha256("x", 1);
  AuditLine line = to_audit_line(r, prev);
  EXPECT_EQ(line.seq, 5u);
  EXPECT_EQ(line.time, "2026-11-24T17:03:11.123Z");
  EXPECT_EQ(line.outcome, "rejected");
  EXPECT_EQ(line.pid, 4242);
  EXPECT_EQ(line.uid, 1000u);
  EXPECT_EQ(line.gid, 100u);
  EXPECT_EQ(line.comment, "open web");
  EXPECT_EQ(line.generation_before, 7u);
  EXPECT_EQ(line.generation_after, 7u);
  EXPECT_EQ(line.digest_before, r.digest_before);
  EXPECT_EQ(line.digest_after, r.digest_after);
  EXPECT_EQ(line.added, r.added);
  EXPECT_EQ(line.removed, r.removed);
  EXPECT_EQ(line.kept, 3u);
  EXPECT_EQ(line.opened, 2u);
  EXPECT_EQ(line.closed, 1u);
  EXPECT_EQ(line.rebound, 4u);
  ASSERT_EQ(line.failures.size(), 2u);
  EXPECT_EQ(line.failures[0].kind, "bind-failed");
  EXPECT_EQ(line.failures[0].pif, Pif::kHost);
  EXPECT_EQ(line.failures[0].rule, 1);
  EXPECT_EQ(line.failures[0].port, 80);
  EXPECT_EQ(line.failures[0].err, 98);
  EXPECT_EQ(line.failures[0].errno_name, "EADDRINUSE");
  EXPECT_EQ(line.failures[0].message, "port 80 is in use");
  EXPECT_EQ(line.failures[1].kind, "policy-denied");
  EXPECT_EQ(line.failures[1].errno_name, "");  // no errno: no name
  EXPECT_EQ(line.duration_micros, 1234u);
  EXPECT_FALSE(line.start);  // a commit record
  EXPECT_EQ(line.prev, prev);

  // The writer's line is the rendered view, byte for byte, and parses back.
  std::string bytes = AuditLog(-1).format_line(r, r.sequence, r.unix_millis, prev);
  EXPECT_EQ(bytes, render_audit_line(line));
  auto parsed = parse_audit_line(std::string_view(bytes).substr(0, bytes.size() - 1));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, line);
}

TEST(CommitRecord, HistoryEntryIsAViewOfTheRecord) {
  const CommitRecord r = sample();
  control::HistoryEntry e = to_history_entry(r);
  EXPECT_EQ(e.sequence, 5u);
  EXPECT_EQ(e.unix_millis, r.unix_millis);
  EXPECT_EQ(e.pid, 4242);
  EXPECT_EQ(e.uid, 1000u);
  EXPECT_EQ(e.gid, 100u);
  EXPECT_EQ(e.comment, "open web");
  EXPECT_EQ(e.outcome, control::Outcome::kRejected);
  EXPECT_EQ(e.generation_before, 7u);
  EXPECT_EQ(e.generation_after, 7u);
  EXPECT_EQ(e.added, r.added);
  EXPECT_EQ(e.removed, r.removed);
  EXPECT_EQ(e.kept, 3u);
  EXPECT_EQ(e.opened, 2u);
  EXPECT_EQ(e.closed, 1u);
  EXPECT_EQ(e.rebound, 4u);
  EXPECT_EQ(e.failures, 2u);
  EXPECT_EQ(e.duration_micros, 1234u);
}

TEST(CommitRecord, HistoryEntryCutsLongRuleListsWithACountOfTheRest) {
  CommitRecord r = sample();
  r.added.clear();
  for (int i = 0; i < 4000; ++i) r.added.push_back("HOST TCP [*]:" + std::to_string(20000 + i));
  control::HistoryEntry e = to_history_entry(r);
  ASSERT_EQ(e.added.size(), control::kMaxHistoryRules + 1);
  for (size_t i = 0; i < control::kMaxHistoryRules; ++i) EXPECT_EQ(e.added[i], r.added[i]);
  EXPECT_EQ(e.added.back(), "(3984 more rules not kept: a history entry keeps the first 16)");
  EXPECT_EQ(e.removed, r.removed);  // short lists stay whole
  // The audit line keeps every rule.
  EXPECT_EQ(to_audit_line(r, Sha256Digest{}).added.size(), 4000u);
}

TEST(CommitRecord, TheFullestHistoryFitsOneMessage) {
  // The longest rule text there is: full IPv6 addresses both ways, the
  // longest interface name, five-digit ports, every flag, on SPLICE.
  Rule longest;
  longest.proto = Proto::kUdp;
  longest.listen.fill(0xfe);
  longest.ifname = std::string(15, 'i');
  longest.first = 65000;
  longest.last = 65535;
  longest.to = 10000;
  longest.target.fill(0xfd);
  longest.weak = true;
  longest.scan = true;
  const std::string text = "SPLICE " + format_rule(longest);
  ASSERT_LT(text.size(), 200u) << text;
  // Every commit of the history at the limits: 4096 rules added and 4096
  // removed in each table, and the longest comment.
  CommitRecord r = sample();
  r.comment = std::string(control::kMaxCommentBytes, 'c');
  r.added.assign(2 * kMaxRulesPerTable, std::string(200, 'a'));
  r.removed.assign(2 * kMaxRulesPerTable, std::string(200, 'r'));
  control::History history;
  history.entries.assign(control::kMaxHistory, to_history_entry(r));
  const std::string frame = control::encode_response(control::Response{9, history});
  EXPECT_LT(frame.size(), size_t{3} << 20);
  EXPECT_LT(frame.size(), kMaxControlMessageBytes);
}

TEST(CommitRecord, TheWriterStampsTheRecordItReturns) {
  AuditLog log(-1);  // no sink: the lines are lost, the stamps are not
  log.start(AuditRunStart{});
  CommitRecord first = log.write(sample());
  CommitRecord second = log.write(sample());
  EXPECT_EQ(first.sequence, 2u);  // the start record is line 1 of the run
  EXPECT_EQ(second.sequence, 3u);
  EXPECT_GT(first.unix_millis, 0);
  EXPECT_EQ(to_history_entry(second).sequence, 3u);
  EXPECT_EQ(log.failed_writes(), 3u);
}

TEST(CommitRecord, FailuresAreCutOnceWithACountOfTheRest) {
  std::vector<control::Failure> failures(control::kMaxFailures + 10);
  for (control::Failure& f : failures) f.kind = control::FailureKind::kConflict;
  EXPECT_EQ(cut_failures(&failures), control::kMaxFailures + 10);
  ASSERT_EQ(failures.size(), control::kMaxFailures);
  EXPECT_EQ(failures.back().kind, control::FailureKind::kConflict);
  EXPECT_EQ(failures.back().message, "11 more failures are not listed; fix the ones above first");
  std::vector<control::Failure> few(3);
  EXPECT_EQ(cut_failures(&few), 3u);
  EXPECT_EQ(few.size(), 3u);
  // A smaller room (a reply that carries failures and warnings), down to
  // the count alone.
  std::vector<control::Failure> five(5);
  EXPECT_EQ(cut_failures(&five, 3), 5u);
  ASSERT_EQ(five.size(), 3u);
  EXPECT_EQ(five.back().message, "3 more failures are not listed; fix the ones above first");
  std::vector<control::Failure> two(2);
  EXPECT_EQ(cut_failures(&two, 1), 2u);
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two.back().message, "2 more failures are not listed; fix the ones above first");
  std::vector<control::Failure> none_room(2);
  EXPECT_EQ(cut_failures(&none_room, 0), 2u);  // 0 counts as 1
  EXPECT_EQ(none_room.size(), 1u);
}

// The client's last line, --history and the reply once said 4,096 for a
// commit with 10,000 failures: the list is cut, and they counted the list.
TEST(CommitRecord, TheReplyAndTheHistoryCountEveryFailureNotTheListCut) {
  CommitRecord record;
  record.outcome = control::Outcome::kRejected;
  record.failures.assign(10000, control::Failure{});
  record.failure_count = cut_failures(&record.failures);
  const control::CommitResult result = to_result(record);
  EXPECT_EQ(result.failures.size(), control::kMaxFailures);
  EXPECT_EQ(result.failure_count, 10000u);
  EXPECT_EQ(to_history_entry(record).failures, 10000u);
}

}  // namespace
}  // namespace sluice
