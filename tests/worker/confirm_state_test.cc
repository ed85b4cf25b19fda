// The pending-confirmation state machine of confirmed commits
// (worker/confirm_state.h): every transition, the refusal of other commits
// and its message, what --confirm says in each phase, and the retry of a
// failed rollback. Pure: the clock is passed in.
#include <gtest/gtest.h>

#include <string>

#include "worker/confirm_state.h"

namespace sluice {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ULL;

/// A confirmation of generation 5 (over generation 4) that waits 30 s from
/// t = 100 s, committed by uid 1000 pid 42.
ConfirmState::Armed armed_at_100s() {
  ConfirmState::Armed a;
  a.generation = 5;
  a.rollback_generation = 4;
  a.seconds = 30;
  a.deadline_ns = 130 * kSecond;
  a.deadline_unix_millis = 1'782'907'230'000;  // 2026-07-01T12:00:30.000Z
  a.peer.pid = 42;
  a.peer.uid = 1000;
  a.rollback_tables.of(Pif::kHost).rules.resize(1);
  return a;
}

TEST(ConfirmState, NothingPendingAtFirst) {
  ConfirmState c;
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kNone);
  EXPECT_FALSE(c.due(UINT64_MAX));
  EXPECT_FALSE(c.view(0).has_value());
  EXPECT_FALSE(c.refusal(0).has_value());
  control::ConfirmResult r = c.confirm(3);
  EXPECT_FALSE(r.confirmed);
  EXPECT_EQ(r.generation, 3u);
  EXPECT_EQ(r.message,
            "nothing to confirm: no commit waits for confirmation (generation 3 is in force)");
}

TEST(ConfirmState, PendingRefusesOtherCommitsAndShowsItsDeadline) {
  ConfirmState c;
  c.arm(armed_at_100s());
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kPending);
  auto view = c.view(110 * kSecond);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->generation, 5u);
  EXPECT_EQ(view->rollback_generation, 4u);
  EXPECT_EQ(view->deadline_unix_millis, 1'782'907'230'000);
  EXPECT_EQ(view->remaining_millis, 20'000u);
  EXPECT_EQ(view->pid, 42);
  EXPECT_EQ(view->uid, 1000u);
  auto refusal = c.refusal(110 * kSecond + 1);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->kind, control::FailureKind::kConfirmPending);
  EXPECT_EQ(refusal->rule, -1);
  EXPECT_EQ(refusal->message,
            "generation 5 (committed by uid 1000 pid 42) waits for confirmation until "
            "2026-07-01T12:00:30.000Z (20 s left); no other commit is taken meanwhile: confirm "
            "it with sluicectl --confirm, or wait for its automatic rollback to the tables of "
            "generation 4, then commit again");
  EXPECT_FALSE(c.due(130 * kSecond - 1));
}

TEST(ConfirmState, ConfirmInTimeCancelsTheRollback) {
  ConfirmState c;
  c.arm(armed_at_100s());
  control::ConfirmResult r = c.confirm(5);
  EXPECT_TRUE(r.confirmed);
  EXPECT_EQ(r.generation, 5u);
  EXPECT_EQ(r.message,
            "confirmed generation 5: it stays in force, and the rollback to the tables of "
            "generation 4 is cancelled");
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kNone);
  EXPECT_FALSE(c.due(UINT64_MAX));
  EXPECT_FALSE(c.refusal(0).has_value());
  EXPECT_EQ(c.rollbacks(), 0u);
  // A second confirm finds nothing.
  EXPECT_FALSE(c.confirm(5).confirmed);
  // And another confirmed commit may be armed.
  c.arm(armed_at_100s());
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kPending);
}

TEST(ConfirmState, DeadlineStartsTheRollbackOnce) {
  ConfirmState c;
  c.arm(armed_at_100s());
  EXPECT_TRUE(c.due(130 * kSecond));
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kRollingBack);
  EXPECT_FALSE(c.due(131 * kSecond));  // queued once
  EXPECT_EQ(c.rollback_comment(),
            "automatic rollback of generation 5: not confirmed within 30 s; back to the tables "
            "of generation 4");
  EXPECT_EQ(c.armed().rollback_tables.of(Pif::kHost).rules.size(), 1u);
  // Still shown, with no time left, and still refusing.
  ASSERT_TRUE(c.view(131 * kSecond).has_value());
  EXPECT_EQ(c.view(131 * kSecond)->remaining_millis, 0u);
  auto refusal = c.refusal(131 * kSecond);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_NE(refusal->message.find("was not confirmed by its deadline"), std::string::npos);
  // Too late to confirm.
  control::ConfirmResult late = c.confirm(5);
  EXPECT_FALSE(late.confirmed);
  EXPECT_EQ(
      late.message.rfind("too late: generation 5 was not confirmed by 2026-07-01T12:00:30", 0), 0u)
      << late.message;
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kRollingBack);
}

TEST(ConfirmState, AppliedRollbackEndsItAndALateConfirmIsToldSo) {
  ConfirmState c;
  c.arm(armed_at_100s());
  ASSERT_TRUE(c.due(130 * kSecond));
  c.rolled_back(6, 1'782'907'230'250);
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kNone);
  EXPECT_EQ(c.rollbacks(), 1u);
  EXPECT_FALSE(c.view(0).has_value());
  EXPECT_FALSE(c.refusal(0).has_value());
  control::ConfirmResult r = c.confirm(6);
  EXPECT_FALSE(r.confirmed);
  EXPECT_EQ(r.message,
            "nothing to confirm: generation 5 was not confirmed in time and was rolled back at "
            "2026-07-01T12:00:30.250Z (generation 6 is in force); commit the edit again if it is "
            "still wanted");
  // Once another commit moved on, only "nothing waits".
  EXPECT_EQ(c.confirm(7).message,
            "nothing to confirm: no commit waits for confirmation (generation 7 is in force)");
}

TEST(ConfirmState, ARollbackAtResumeIsCountedAndALateConfirmIsToldWhy) {
  // A new worker rolled back generation 5, which waited when the worker
  // before died, as generation 6: its confirm says what happened.
  ConfirmState c;
  c.rolled_back_at_resume(5, 6, 1'782'907'230'250);
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kNone);
  EXPECT_EQ(c.rollbacks(), 1u);
  EXPECT_FALSE(c.refusal(0).has_value());
  control::ConfirmResult r = c.confirm(6);
  EXPECT_FALSE(r.confirmed);
  EXPECT_EQ(r.message,
            "nothing to confirm: generation 5 still waited for confirmation when its worker "
            "died, and was rolled back at 2026-07-01T12:00:30.250Z (generation 6 is in force); "
            "commit the edit again if it is still wanted");
  // A later rollback at a deadline says "in time" again.
  c.arm(armed_at_100s());
  ASSERT_TRUE(c.due(130 * kSecond));
  c.rolled_back(8, 1'782'907'230'250);
  EXPECT_NE(c.confirm(8).message.find("was not confirmed in time and was rolled back"),
            std::string::npos);
}

TEST(ConfirmState, FailedRollbackIsRetriedLater) {
  ConfirmState c;
  c.arm(armed_at_100s());
  ASSERT_TRUE(c.due(130 * kSecond));
  c.rollback_failed(131 * kSecond, 1'782'907'231'000);
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kPending);
  EXPECT_FALSE(c.due(131 * kSecond + ConfirmState::kRetryNs - 1));
  EXPECT_EQ(c.view(131 * kSecond)->deadline_unix_millis,
            1'782'907'231'000 + static_cast<int64_t>(ConfirmState::kRetryNs / 1'000'000));
  ASSERT_TRUE(c.refusal(131 * kSecond).has_value());
  EXPECT_TRUE(c.due(131 * kSecond + ConfirmState::kRetryNs));
  EXPECT_EQ(c.rollbacks(), 0u);
}

TEST(ConfirmState, ConfirmBetweenRetriesKeepsTheCommit) {
  ConfirmState c;
  c.arm(armed_at_100s());
  ASSERT_TRUE(c.due(130 * kSecond));
  c.rollback_failed(131 * kSecond, 0);
  EXPECT_TRUE(c.confirm(5).confirmed);
  EXPECT_EQ(c.phase(), ConfirmState::Phase::kNone);
}

TEST(ConfirmStateDeathTest, ArmingTwiceIsABug) {
  ConfirmState c;
  c.arm(armed_at_100s());
  EXPECT_DEATH(c.arm(armed_at_100s()), "");
}

}  // namespace
}  // namespace sluice
