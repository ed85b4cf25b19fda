// The commit engine through every phase, with the real engine, loop,
// forwarders and broker channel, and the fake broker on the other end
// (engine_fixture.h): a commit that keeps, opens and closes; a failed open
// rolled back; a dry run; a rebind sharing its port with the listener it
// replaces; a failed rebind, the old listener serving throughout (sluiced's
// failure, and the kernel's without sharing); a stale generation; a target policy and a bind policy
// denial; a broker policy denial; sliced installs; the state for a restart
// with a commit that waits for confirmation; and the transition table.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "policy/policy_file.h"
#include "schema/codec.h"
#include "tests/worker/engine_fixture.h"

namespace sluice::testing {
namespace {

using State = CommitEngine::State;
using Event = CommitEngine::Event;

/// Returns the port of the `i`-th key the fake broker was asked for.
uint16_t asked_port(const FakeBroker& fake, size_t i) {
  return fake.asked().at(i).port;
}

/// True when the `i`-th key asked was for 127.0.0.1 (not the wildcard).
bool asked_loopback(const FakeBroker& fake, size_t i) {
  return fake.asked().at(i).addr[12] == 127;
}

/// Parses a policy file's text; fails the test on a parse error.
PolicyFile policy(const std::string& text) {
  auto parsed = parse_policy_text(text, "test.policy");
  EXPECT_TRUE(parsed.ok()) << (parsed.ok() ? "" : parsed.error().message);
  return parsed.ok() ? *parsed : PolicyFile{};
}

using CommitEngineTest = EngineTest;

TEST_F(CommitEngineTest, CommitKeepsOpensAndCloses) {
  UniqueFd target_a = tcp_target(21001), target_d = tcp_target(21004);
  Rule a = tcp_rule(20001, 21001), b = tcp_rule(20002, 21002), d = tcp_rule(20004, 21004);
  Rule c = make_rule(Proto::kUdp, addr_v4(127, 0, 0, 1), 20003, 20003, 21003);
  control::CommitResult first = commit(host_tables({a, b, c}));
  EXPECT_TRUE(first.applied);
  EXPECT_TRUE(first.failures.empty());
  EXPECT_EQ(first.opened, 3u);
  EXPECT_EQ(first.generation, 1u);
  EXPECT_EQ(engine->listener_count(), 3u);
  EXPECT_EQ(engine->state(), State::kIdle);

  const Sha256Digest digest_before = engine->digest();
  control::CommitResult second = commit(host_tables({a, d, c}));
  EXPECT_TRUE(second.applied);
  EXPECT_EQ(second.kept, 2u);
  EXPECT_EQ(second.opened, 1u);
  EXPECT_EQ(second.closed, 1u);
  EXPECT_EQ(second.rebound, 0u);
  EXPECT_EQ(second.generation, 2u);
  EXPECT_EQ(second.digest, engine->digest());
  EXPECT_NE(second.digest, digest_before);
  EXPECT_EQ(engine->tables(), host_tables({a, d, c}));
  EXPECT_EQ(engine->listener_count(), 3u);
  // Only the new socket was asked for: kept ones stay.
  ASSERT_EQ(fake.asked().size(), 4u);
  EXPECT_EQ(asked_port(fake, 3), 20004);
  EXPECT_TRUE(forwards(20001, target_a.get()));
  EXPECT_TRUE(forwards(20004, target_d.get()));
  EXPECT_TRUE(refused(20002));

  // One audit line and one history entry per attempt, agreeing with the reply.
  control::History history = engine->history(10);
  ASSERT_EQ(history.entries.size(), 2u);
  EXPECT_EQ(history.entries[1].outcome, control::Outcome::kApplied);
  EXPECT_EQ(history.entries[1].generation_before, 1u);
  EXPECT_EQ(history.entries[1].generation_after, 2u);
  EXPECT_EQ(history.entries[1].kept, 2u);
  EXPECT_EQ(history.entries[1].sequence, 3u);  // after the start record and the first commit
  std::vector<std::string> lines = audit_lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("\"outcome\":\"applied\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("\"counts\":{\"kept\":2,\"opened\":1,\"closed\":1,\"rebound\":0}"),
            std::string::npos)
      << lines[1];
}

TEST_F(CommitEngineTest, FailedOpenRollsBackAndNamesRulePortAndErrno) {
  UniqueFd target_a = tcp_target(21001);
  Rule a = tcp_rule(20001, 21001);
  ASSERT_TRUE(commit(host_tables({a})).applied);
  Rule e = make_rule(Proto::kTcp, addr_v4(127, 0, 0, 1), 20010, 20011, 21010);
  fake.fail_port(20011, EADDRINUSE);
  control::CommitResult r = commit(host_tables({a, e}));
  EXPECT_FALSE(r.applied);
  ASSERT_EQ(r.failures.size(), 1u);
  const control::Failure& f = r.failures[0];
  EXPECT_EQ(f.kind, control::FailureKind::kBindFailed);
  EXPECT_EQ(f.rule, 1);
  EXPECT_EQ(f.port, 20011);
  EXPECT_EQ(f.err, EADDRINUSE);
  EXPECT_EQ(f.text, format_rule(e));
  EXPECT_NE(f.message.find("port 20011"), std::string::npos) << f.message;
  EXPECT_NE(f.message.find("EADDRINUSE"), std::string::npos) << f.message;
  // Nothing changed: the old table is in force and serves, and the port that
  // was bound for the commit was closed again.
  EXPECT_EQ(r.generation, 1u);
  EXPECT_EQ(engine->generation(), 1u);
  EXPECT_EQ(engine->tables(), host_tables({a}));
  EXPECT_EQ(engine->listener_count(), 1u);
  EXPECT_TRUE(refused(20010));
  EXPECT_TRUE(forwards(20001, target_a.get()));
  EXPECT_EQ(engine->history(1).entries[0].outcome, control::Outcome::kRejected);
}

TEST_F(CommitEngineTest, DryRunBindsOnTrialThenDiscards) {
  Rule a = tcp_rule(20001, 21001);
  ASSERT_TRUE(commit(host_tables({a})).applied);
  Rule f = tcp_rule(20020, 21020);
  control::CommitResult r = commit(host_tables({a, f}), true);
  EXPECT_TRUE(r.dry_run);
  EXPECT_FALSE(r.applied);
  EXPECT_TRUE(r.failures.empty());
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(r.opened, 1u);
  // The socket was really bound (the broker was asked), then closed.
  ASSERT_EQ(fake.asked().size(), 2u);
  EXPECT_EQ(asked_port(fake, 1), 20020);
  EXPECT_TRUE(refused(20020));
  EXPECT_EQ(engine->generation(), 1u);
  EXPECT_EQ(engine->tables(), host_tables({a}));
  EXPECT_EQ(engine->listener_count(), 1u);
  EXPECT_EQ(engine->history(1).entries[0].outcome, control::Outcome::kDryRun);
  // A dry run that fails reports the failure and still changes nothing.
  fake.fail_port(20021, EACCES);
  control::CommitResult bad = commit(host_tables({a, tcp_rule(20021, 21021)}), true);
  EXPECT_TRUE(bad.dry_run);
  ASSERT_EQ(bad.failures.size(), 1u);
  EXPECT_EQ(bad.failures[0].err, EACCES);
  EXPECT_EQ(engine->generation(), 1u);
}

TEST_F(CommitEngineTest, RebindGivesTheWildcardPortToOneAddress) {
  fake.keep_listeners();  // as sluiced: a rebind shares its port with what it replaces
  UniqueFd old_target = tcp_target(21030), new_target = tcp_target(21031);
  Rule wildcard = make_rule(Proto::kTcp, addr_v4(0, 0, 0, 0), 20030, 20030, 21030);
  ASSERT_TRUE(commit(host_tables({wildcard})).applied);
  EXPECT_TRUE(forwards(20030, old_target.get()));
  Rule specific = tcp_rule(20030, 21031);
  // A dry run counts the rebind without binding it: that would mark the
  // listener in force for sharing for a commit that never happens.
  control::CommitResult dry = commit(host_tables({specific}), true);
  EXPECT_EQ(dry.rebound, 1u);
  EXPECT_EQ(dry.opened, 0u);
  EXPECT_EQ(fake.asked().size(), 1u);
  control::CommitResult r = commit(host_tables({specific}));
  EXPECT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
  EXPECT_TRUE(r.failures.empty());
  EXPECT_EQ(r.rebound, 1u);
  EXPECT_EQ(r.closed, 1u);
  EXPECT_EQ(r.opened, 0u);
  EXPECT_EQ(r.kept, 0u);
  EXPECT_EQ(engine->generation(), 2u);
  // One request: the rebind, asked to share its port while the wildcard
  // still listens (it was never released first, nor asked for again).
  ASSERT_EQ(fake.asked().size(), 2u);
  EXPECT_TRUE(asked_loopback(fake, 1));
  EXPECT_NE(fake.asked()[1].flags & wire::kListenerReplaces, 0u);
  EXPECT_EQ(fake.asked()[0].flags & wire::kListenerReplaces, 0u);
  EXPECT_EQ(engine->listener_count(), 1u);
  EXPECT_TRUE(forwards(20030, new_target.get()));
}

TEST_F(CommitEngineTest, AFailedRebindLeavesTheOldListenerServing) {
  fake.keep_listeners();
  UniqueFd old_target = tcp_target(21030);
  Rule wildcard = make_rule(Proto::kTcp, addr_v4(0, 0, 0, 0), 20030, 20030, 21030);
  ASSERT_TRUE(commit(host_tables({wildcard})).applied);
  fake.fail_key(fake.asked().size(), EADDRINUSE);  // the rebind
  control::CommitResult r = commit(host_tables({tcp_rule(20030, 21031)}));
  EXPECT_FALSE(r.applied);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].kind, control::FailureKind::kBindFailed);
  EXPECT_EQ(r.failures[0].port, 20030);
  EXPECT_EQ(r.failures[0].err, EADDRINUSE);
  EXPECT_EQ(r.rebound, 1u);
  // Nothing was released, so nothing is asked for again: the old table is
  // in force and its listener never stopped.
  EXPECT_EQ(fake.asked().size(), 2u);
  EXPECT_EQ(engine->generation(), 1u);
  EXPECT_EQ(engine->tables(), host_tables({wildcard}));
  EXPECT_EQ(engine->listener_count(), 1u);
  EXPECT_TRUE(forwards(20030, old_target.get()));
  EXPECT_EQ(engine->state(), State::kIdle);
}

TEST_F(CommitEngineTest, ARebindTheKernelRefusesRollsBackWithTheOldListenerServing) {
  // Without sluiced's sharing (the fake keeps no copies), the kernel refuses
  // the rebind: the port is taken by the listener it would replace. The
  // commit fails with the kernel's errno, and nothing stopped.
  UniqueFd old_target = tcp_target(21030);
  Rule wildcard = make_rule(Proto::kTcp, addr_v4(0, 0, 0, 0), 20030, 20030, 21030);
  ASSERT_TRUE(commit(host_tables({wildcard})).applied);
  control::CommitResult r = commit(host_tables({tcp_rule(20030, 21031)}));
  EXPECT_FALSE(r.applied);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].port, 20030);
  EXPECT_EQ(r.failures[0].err, EADDRINUSE);
  EXPECT_EQ(engine->generation(), 1u);
  EXPECT_EQ(engine->listener_count(), 1u);
  EXPECT_TRUE(forwards(20030, old_target.get()));
}

TEST_F(CommitEngineTest, StaleGenerationIsRefusedWithoutAskingTheBroker) {
  ASSERT_TRUE(commit(host_tables({tcp_rule(20001, 21001)})).applied);
  auto s = submit(host_tables({tcp_rule(20002, 21002)}), false, 0);
  ASSERT_TRUE(s->done);  // answered before submit() returned: no round trip
  EXPECT_FALSE(s->result.applied);
  ASSERT_EQ(s->result.failures.size(), 1u);
  EXPECT_EQ(s->result.failures[0].kind, control::FailureKind::kStale);
  EXPECT_EQ(fake.asked().size(), 1u);
  EXPECT_EQ(engine->generation(), 1u);
  EXPECT_EQ(engine->history(1).entries[0].outcome, control::Outcome::kStale);
  EXPECT_EQ(engine->state(), State::kIdle);
}

TEST_F(CommitEngineTest, TargetPolicyDeniesBeforeAnySocketIsAsked) {
  PolicyFile file = policy("target allow tcp 127.0.0.1 21040\n");
  engine->set_policy(bind_policy_from_file(file), target_policy_from_file(file));
  control::CommitResult r = commit(host_tables({tcp_rule(20040, 21041)}));
  EXPECT_FALSE(r.applied);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].kind, control::FailureKind::kPolicyDenied);
  EXPECT_NE(r.failures[0].message.find("test.policy"), std::string::npos) << r.failures[0].message;
  EXPECT_TRUE(fake.asked().empty());
  EXPECT_EQ(engine->generation(), 0u);
  EXPECT_TRUE(commit(host_tables({tcp_rule(20040, 21040)})).applied);
}

TEST_F(CommitEngineTest, BindPolicyPreCheckNamesItsLineAndAsksNothingDenied) {
  PolicyFile file = policy("bind deny tcp 20050 *\nbind allow * * *\n");
  engine->set_policy(bind_policy_from_file(file), target_policy_from_file(file));
  control::CommitResult r = commit(host_tables({tcp_rule(20050, 21050), tcp_rule(20051, 21051)}));
  EXPECT_FALSE(r.applied);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].kind, control::FailureKind::kPolicyDenied);
  EXPECT_EQ(r.failures[0].port, 20050);
  EXPECT_EQ(r.failures[0].err, EACCES);
  EXPECT_NE(r.failures[0].message.find("line 1"), std::string::npos) << r.failures[0].message;
  // Only the allowed key went to the broker, and it was rolled back.
  ASSERT_EQ(fake.asked().size(), 1u);
  EXPECT_EQ(asked_port(fake, 0), 20051);
  EXPECT_TRUE(refused(20051));
  EXPECT_EQ(engine->listener_count(), 0u);
}

TEST_F(CommitEngineTest, BrokerPolicyDenialIsReportedAsPolicyDenied) {
  fake.fail_port(20060, wire::kStatusPolicyDenied);
  control::CommitResult r = commit(host_tables({tcp_rule(20060, 21060)}));
  EXPECT_FALSE(r.applied);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].kind, control::FailureKind::kPolicyDenied);
  EXPECT_NE(r.failures[0].message.find("sluiced's log names the line"), std::string::npos)
      << r.failures[0].message;
}

TEST_F(CommitEngineTest, InstallAndReleaseRunInSlicesBetweenLoopIterations) {
  // 200 ports: more than three slices of 64 to install, then to release.
  Rule wide = make_rule(Proto::kTcp, addr_v4(127, 0, 0, 1), 20200, 20399, 30200);
  auto s = submit(host_tables({wide}));
  int installing = 0;
  ASSERT_TRUE(run_until([&] {
    if (engine->state() == State::kInstalling) ++installing;
    return s->done;
  }));
  EXPECT_TRUE(s->result.applied);
  EXPECT_GE(installing, 2) << "the install was not sliced";
  EXPECT_EQ(engine->listener_count(), 200u);
  auto removal = submit(host_tables({}));
  int releasing = 0;
  ASSERT_TRUE(run_until([&] {
    if (engine->state() == State::kInstalling) ++releasing;
    return removal->done;
  }));
  EXPECT_EQ(removal->result.closed, 200u);
  EXPECT_GE(releasing, 2) << "the release was not sliced";
  EXPECT_EQ(engine->listener_count(), 0u);
  EXPECT_TRUE(refused(20300));
}

TEST_F(CommitEngineTest, CommitsQueueAndRunInOrder) {
  fake.hold_after(0);
  auto first = submit(host_tables({tcp_rule(20001, 21001)}));
  auto second = submit(host_tables({tcp_rule(20001, 21001), tcp_rule(20002, 21002)}), false, 1);
  ASSERT_TRUE(run_until([&] { return fake.waiting() == 1; }));
  EXPECT_EQ(engine->state(), State::kAcquiring);
  EXPECT_FALSE(first->done);
  fake.release();
  ASSERT_TRUE(run_until([&] { return second->done; }));
  EXPECT_TRUE(first->result.applied);
  EXPECT_TRUE(second->result.applied);
  EXPECT_EQ(second->result.kept, 1u);
  EXPECT_EQ(engine->generation(), 2u);
}

TEST_F(CommitEngineTest, AnAttemptRefusedBeforeTheEngineIsRecordedInOrderAndChangesNothing) {
  ASSERT_TRUE(commit(host_tables({tcp_rule(20001, 21001)})).applied);
  fake.hold_after(0);
  auto running = submit(host_tables({tcp_rule(20001, 21001), tcp_rule(20002, 21002)}), false, 1);
  control::Failure bad;
  bad.kind = control::FailureKind::kInvalid;
  bad.message = "malformed pesto update";
  bool answered = false;
  control::CommitResult result;
  engine->submit_refused(ucred{42, 1000, 1000}, "pesto update from pid 42", {bad},
                         [&](const control::CommitResult& r) {
                           answered = true;
                           result = r;
                         });
  EXPECT_FALSE(answered);  // queued behind the commit in progress
  fake.release();
  ASSERT_TRUE(run_until([&] { return answered; }));
  EXPECT_TRUE(running->result.applied);
  EXPECT_FALSE(result.applied);
  ASSERT_EQ(result.failures.size(), 1u);
  EXPECT_EQ(result.failures[0].message, "malformed pesto update");
  EXPECT_EQ(engine->generation(), 2u);
  control::History h = engine->history(1);
  ASSERT_EQ(h.entries.size(), 1u);
  EXPECT_EQ(h.entries[0].outcome, control::Outcome::kRejected);
  EXPECT_EQ(h.entries[0].pid, 42);
  EXPECT_EQ(h.entries[0].comment, "pesto update from pid 42");
  EXPECT_TRUE(h.entries[0].added.empty());
  EXPECT_EQ(engine->state(), State::kIdle);
}

/// Decodes the fake broker's last state blob, or nothing.
std::optional<control::StateBlob> last_state(const FakeBroker& fake) {
  const std::string& bytes = fake.last_blob();
  std::vector<uint64_t> words(bytes.size() / 8 + 1, 0);
  std::memcpy(words.data(), bytes.data(), bytes.size());
  auto blob = control::decode_state_blob(words.data(), bytes.size());
  if (!blob.ok()) return std::nullopt;
  return *blob;
}

// The state handed to sluiced for a restart carries a commit that waits for
// confirmation with the tables it replaced, from the moment it applied (so
// that a new worker rolls it back), and no longer once it is confirmed.
TEST_F(CommitEngineTest, TheStateForARestartCarriesAnUnconfirmedCommit) {
  const TableSet before = host_tables({tcp_rule(20001, 21001)});
  const TableSet after = host_tables({tcp_rule(20001, 21001), tcp_rule(20002, 21002)});
  ASSERT_TRUE(commit(before).applied);
  // The StoreStates that follow a change, up to the one `check` accepts.
  auto state_where = [&](const std::function<bool(const control::StateBlob&)>& check) {
    std::optional<control::StateBlob> state;
    run_until([&] {
      state = last_state(fake);
      return state && check(*state);
    });
    return state;
  };
  auto first = state_where([](const control::StateBlob& b) { return b.generation == 1; });
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->unconfirmed.has_value());

  control::CommitRequest req;
  req.tables = after;
  req.expected_generation = engine->generation();
  req.confirm_within_seconds = 600;
  auto out = std::make_shared<Submitted>();
  const struct ucred peer = {getpid(), getuid(), getgid()};
  engine->submit(std::move(req), peer, [out](const control::CommitResult& result) {
    out->done = true;
    out->result = result;
  });
  ASSERT_TRUE(run_until([&] { return out->done; }));
  ASSERT_TRUE(out->result.applied);
  auto pending = state_where([](const control::StateBlob& b) { return b.generation == 2; });
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->tables, after);
  ASSERT_TRUE(pending->unconfirmed.has_value());
  EXPECT_EQ(pending->unconfirmed->rollback_generation, 1u);
  EXPECT_EQ(pending->unconfirmed->rollback_tables, before);
  EXPECT_EQ(pending->unconfirmed->seconds, 600u);

  ASSERT_TRUE(engine->confirm(peer).confirmed);
  auto confirmed = state_where([](const control::StateBlob& b) { return !b.unconfirmed; });
  ASSERT_TRUE(confirmed.has_value()) << "no state without the confirmation after --confirm";
  EXPECT_EQ(confirmed->generation, 2u);
  EXPECT_EQ(confirmed->tables, after);
}

TEST(CommitEngineStates, TheTransitionTable) {
  EXPECT_EQ(CommitEngine::next_state(State::kIdle, Event::kSubmitted), State::kChecking);
  EXPECT_EQ(CommitEngine::next_state(State::kAcquiring, Event::kClashes), State::kRebinding);
  EXPECT_EQ(CommitEngine::next_state(State::kRebinding, Event::kRebindFailed), State::kFinishing);
  EXPECT_EQ(CommitEngine::next_state(State::kFinishing, Event::kReplied), State::kIdle);
  EXPECT_FALSE(CommitEngine::next_state(State::kIdle, Event::kOpened));
  EXPECT_FALSE(CommitEngine::next_state(State::kChecking, Event::kBrokerLost));
  EXPECT_FALSE(CommitEngine::next_state(State::kRebinding, Event::kTick));
  // Stopped is final, and every other state leads back to Idle.
  constexpr int kEvents = static_cast<int>(Event::kBrokerLost) + 1;
  constexpr int kStates = static_cast<int>(State::kStopped) + 1;
  for (int e = 0; e < kEvents; ++e) {
    EXPECT_FALSE(CommitEngine::next_state(State::kStopped, static_cast<Event>(e)));
  }
  for (int s = 0; s < kStates - 1; ++s) {
    std::set<int> seen = {s};
    std::vector<int> todo = {s};
    while (!todo.empty()) {
      int at = todo.back();
      todo.pop_back();
      for (int e = 0; e < kEvents; ++e) {
        auto next = CommitEngine::next_state(static_cast<State>(at), static_cast<Event>(e));
        if (next && seen.insert(static_cast<int>(*next)).second) todo.push_back(int(*next));
      }
    }
    EXPECT_TRUE(seen.count(static_cast<int>(State::kIdle)))
        << CommitEngine::state_name(static_cast<State>(s)) << " never returns to Idle";
  }
}

TEST_F(CommitEngineTest, ABrokerLostWhileACommitFinishesStopsTheEngineOnceItIsAnswered) {
  // The dry run's answer comes, and then the broker is gone: the StoreState
  // that tells sluiced to let go of the trial sockets is sent while the
  // engine finishes, and finds the channel closed. The client still gets
  // its answer, and then the engine stops (it used to CHECK-fail: no
  // transition from Finishing on BrokerLost).
  fake.close_after_reply(1);
  auto s = submit(host_tables({tcp_rule(20001, 21001)}), true);
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(s->done);
  EXPECT_TRUE(s->result.dry_run);
  EXPECT_FALSE(engine->broker_loss().empty());
}

TEST_F(CommitEngineTest, AnEventTheTableDoesNotAllowIsABug) {
  fake.close();
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  // A second loss would be an event from Stopped: not in the table.
  EXPECT_DEATH(engine->on_broker_lost(BrokerLoss{"again", false}),
               "no transition from Stopped on BrokerLost");
}

}  // namespace
}  // namespace sluice::testing
