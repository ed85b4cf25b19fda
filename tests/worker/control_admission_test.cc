// Admission of identified control clients (worker/control_admission.h), as a
// pure decision: no access is refused whatever the counts; users who may
// commit are limited only by the total; users who may only read by their
// share (the total less the reserved slots) and by the limit per uid. The
// same rules end to end: tests/integration/control_admission_test.cc.
#include <gtest/gtest.h>

#include "worker/control_admission.h"

namespace sluice {
namespace {

/// Counts of `sessions` admitted clients, `readers` of them read-only,
/// `of_uid` of those of the uid being admitted.
SessionCounts counts(size_t sessions, size_t readers, size_t of_uid) {
  SessionCounts c;
  c.sessions = sessions;
  c.readers = readers;
  c.readers_of_uid = of_uid;
  return c;
}

TEST(AdmissionDecision, NoAccessIsRefusedEvenWhenTheServerIsEmpty) {
  const ControlLimits limits;
  EXPECT_EQ(decide_admission(limits, ControlAccess::kNone, counts(0, 0, 0)), Admission::kNoAccess);
  EXPECT_EQ(decide_admission(limits, ControlAccess::kNone, counts(64, 64, 8)),
            Admission::kNoAccess);
}

TEST(AdmissionDecision, CommittersUseTheReservedSlotsUpToTheTotal) {
  const ControlLimits limits;
  // Readers hold all 48 slots they may: a committer still gets in, up to 64.
  for (size_t sessions = 48; sessions < 64; ++sessions) {
    EXPECT_EQ(decide_admission(limits, ControlAccess::kCommit, counts(sessions, 48, 0)),
              Admission::kAdmit)
        << sessions;
  }
  EXPECT_EQ(decide_admission(limits, ControlAccess::kCommit, counts(64, 48, 0)), Admission::kFull);
  // Not limited per uid: one administrator's scripts may hold every slot.
  EXPECT_EQ(decide_admission(limits, ControlAccess::kCommit, counts(63, 0, 0)), Admission::kAdmit);
}

TEST(AdmissionDecision, ReadersShareWhatIsNotReservedAndEachUidAtMostEight) {
  const ControlLimits limits;
  EXPECT_EQ(decide_admission(limits, ControlAccess::kRead, counts(47, 47, 7)), Admission::kAdmit);
  EXPECT_EQ(decide_admission(limits, ControlAccess::kRead, counts(48, 48, 0)),
            Admission::kReadersFull);
  EXPECT_EQ(decide_admission(limits, ControlAccess::kRead, counts(10, 8, 8)), Admission::kUidFull);
  // Committers' sessions leave the readers' share alone.
  EXPECT_EQ(decide_admission(limits, ControlAccess::kRead, counts(60, 40, 0)), Admission::kAdmit);
  EXPECT_EQ(decide_admission(limits, ControlAccess::kRead, counts(64, 40, 0)), Admission::kFull);
}

TEST(AdmissionDecision, BusyMessagesNameTheLimit) {
  const ControlLimits limits;
  EXPECT_EQ(busy_message(Admission::kFull, limits, counts(64, 0, 0), 0),
            "the server already has 64 control clients connected; retry later");
  EXPECT_NE(busy_message(Admission::kReadersFull, limits, counts(48, 48, 0), 0)
                .find("48 control clients connected that may only read, the most it admits (16 "
                      "more are kept for users who may commit)"),
            std::string::npos);
  EXPECT_NE(busy_message(Admission::kUidFull, limits, counts(8, 8, 8), 1000)
                .find("uid 1000 already has 8 control connections"),
            std::string::npos);
  EXPECT_EQ(busy_message(Admission::kAdmit, limits, counts(0, 0, 0), 0), "");
}

}  // namespace
}  // namespace sluice
