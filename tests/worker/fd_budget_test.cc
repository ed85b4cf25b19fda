// The worker's descriptor budget (worker/fd_budget.h) and what happens past
// it, with the real engine and broker channel against the fake broker
// (engine_fixture.h): a commit or dry run whose new listeners do not fit is
// refused before sluiced is asked; a batch the kernel cut short because the
// worker's descriptor table was full fails that commit (rolled back, even
// for a best-effort rule) and leaves the worker serving; and a commit that
// does not apply tells sluiced to close its copies of the sockets it sent.
#include <sys/resource.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "tests/worker/engine_fixture.h"
#include "worker/fd_budget.h"

namespace sluice::testing {
namespace {

using State = CommitEngine::State;
using FdBudgetTest = EngineTest;

/// The first failure of `result` of kind `kind`, or nullptr.
const control::Failure* failure_of(const control::CommitResult& result, control::FailureKind kind) {
  for (const control::Failure& f : result.failures) {
    if (f.kind == kind) return &f;
  }
  return nullptr;
}

TEST(FdBudget, RoomIsTheLimitLessWhatIsHeldAndTheReserve) {
  FdUse use;
  EXPECT_EQ(use.room(), UINT64_MAX) << "an unknown limit checks nothing";
  use.limit = kWorkerFixedFds + kFdReserve + 500;
  EXPECT_EQ(use.room(), 500u);
  use.listeners = 100;
  use.connections = 10;  // kFdsPerConnection each
  use.idle_pipes = 5;    // two each
  use.flows = 20;
  EXPECT_EQ(use.held(), kWorkerFixedFds + 100 + 10 * kFdsPerConnection + 10 + 20);
  EXPECT_EQ(use.room(), 500u - 100 - 10 * kFdsPerConnection - 10 - 20);
  use.limit = 10;
  EXPECT_EQ(use.room(), 0u);
  // A low hard limit keeps a quarter free, not all of it: a one-port rule
  // still fits at 1,024 (a common limit for a user).
  FdUse small;
  small.limit = 1024;
  EXPECT_EQ(small.reserve(), 256u);
  EXPECT_EQ(small.room(), 1024u - kWorkerFixedFds - 256);
  small.limit = kSmallFdLimit;
  EXPECT_EQ(small.reserve(), kFdReserve);
  EXPECT_FALSE(check_fd_budget(0, 5, Pif::kHost, use).has_value()) << "nothing new always fits";
  auto refused = check_fd_budget(1, 6, Pif::kSplice, use);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->kind, control::FailureKind::kCapacity);
  EXPECT_EQ(refused->pif, Pif::kSplice);
  EXPECT_EQ(refused->rule, -1);
  EXPECT_EQ(refused->err, EMFILE);
}

TEST_F(FdBudgetTest, ACommitOverTheBudgetIsRefusedBeforeSluicedIsAsked) {
  // Room for 600 listeners, at a limit where the whole kFdReserve is kept.
  constexpr uint64_t kLimit = kWorkerFixedFds + kFdReserve + 600;
  static_assert(kLimit >= kSmallFdLimit);
  engine->set_fd_limit(kLimit);
  for (bool dry_run : {true, false}) {
    control::CommitResult result = commit(host_tables({wide_rule(22000, 601)}), dry_run);
    EXPECT_FALSE(result.applied);
    const control::Failure* f = failure_of(result, control::FailureKind::kCapacity);
    ASSERT_NE(f, nullptr) << (result.failures.empty() ? "" : result.failures[0].message);
    EXPECT_NE(f->message.find("the tables need 601 listening sockets, 601 of them new, and only "
                              "600 more fit the worker's descriptor limit (RLIMIT_NOFILE " +
                              std::to_string(kLimit)),
              std::string::npos)
        << f->message;
    EXPECT_NE(f->message.find("Forward fewer ports, or raise the hard limit sluiced starts with "
                              "(LimitNOFILE= in its systemd unit, or ulimit -Hn)"),
              std::string::npos)
        << f->message;
    EXPECT_EQ(fake.open_requests(), 0u) << "sluiced was asked";
  }
  EXPECT_EQ(engine->generation(), 0u);
  // What fits commits; a listener kept counts as held, not as new.
  ASSERT_TRUE(commit(host_tables({wide_rule(22000, 600)})).applied);
  EXPECT_TRUE(commit(host_tables({wide_rule(22000, 600)}), true).failures.empty());
  control::CommitResult more = commit(host_tables({wide_rule(22000, 601)}));
  EXPECT_FALSE(more.applied);
  const control::Failure* f = failure_of(more, control::FailureKind::kCapacity);
  ASSERT_NE(f, nullptr);
  EXPECT_NE(f->message.find("need 601 listening sockets, 1 of them new, and only 0 more fit"),
            std::string::npos)
      << f->message;
  EXPECT_EQ(engine->listener_count(), 600u);
}

TEST_F(FdBudgetTest, ABatchCutShortByTheDescriptorLimitFailsTheCommitNotTheWorker) {
  // A best-effort rule: judged on its ports alone, the ones that arrived
  // would apply. A batch cut short fails the commit as a whole instead.
  Rule weak = wide_rule(22000, 200);
  weak.weak = true;
  fake.hold_after(0);
  auto s = submit(host_tables({weak}));
  ASSERT_TRUE(run_until([&] { return fake.waiting() == 1; }));
  const size_t stored = fake.states_stored();
  fake.release();
  ASSERT_EQ(fake.serve(), 1u);  // the reply and its 200 sockets wait on the channel
  const std::set<int> before = open_fds();
  ASSERT_FALSE(before.empty());
  // Room for 20 more descriptors: the limit is one above the 20th free
  // number (descriptors in use above it stay open).
  rlim_t limit = 0;
  for (int free_seen = 0; free_seen < 20; ++limit)
    free_seen += before.count(static_cast<int>(limit)) == 0;
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  struct rlimit low = {limit, old.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  const bool answered = run_until([&] { return s->done; });
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  ASSERT_TRUE(answered) << "the commit was not answered";
  EXPECT_FALSE(lost.has_value()) << lost->reason;
  EXPECT_EQ(engine->state(), State::kIdle);
  EXPECT_FALSE(s->result.applied);
  const control::Failure* f = failure_of(s->result, control::FailureKind::kCapacity);
  ASSERT_NE(f, nullptr);
  EXPECT_NE(f->message.find("that sluiced opened never reached the worker: its descriptor table "
                            "is full"),
            std::string::npos)
      << f->message;
  EXPECT_EQ(engine->listener_count(), 0u);
  EXPECT_EQ(engine->generation(), 0u);
  EXPECT_EQ(open_fds(), before) << "the sockets that arrived were not all closed";
  EXPECT_TRUE(refused(22000));
  // The worker serves on: the next commit applies.
  UniqueFd target = tcp_target(40000);
  ASSERT_TRUE(commit(host_tables({wide_rule(22000, 1)})).applied);
  EXPECT_TRUE(forwards(22000, target.get()));
  // sluiced is told what the worker holds, so that it closes its copies of
  // the rest, including those of the sockets that never arrived: at once,
  // or, when the user had more descriptors in flight than the lowered limit
  // (ETOOMANYREFS: other processes' count too), with this commit.
  EXPECT_TRUE(run_until([&] { return fake.states_stored() >= stored + 2; }) ||
              fake.states_stored() >= stored + 1);
}

TEST_F(FdBudgetTest, ACommitThatDoesNotApplyTellsSluicedToCloseItsCopies) {
  // sluiced keeps a copy of every socket it sends (its escrow) until the
  // worker's StoreState leaves it out; a dry run's trial binds and a
  // rolled-back commit's sockets must not stay bound there.
  const size_t stored = fake.states_stored();
  control::CommitResult dry = commit(host_tables({wide_rule(22000, 3)}), true);
  EXPECT_TRUE(dry.failures.empty());
  EXPECT_TRUE(run_until([&] { return fake.states_stored() == stored + 1; }));
  fake.fail_port(22011, EADDRINUSE);
  control::CommitResult rejected = commit(host_tables({wide_rule(22010, 2)}));
  EXPECT_FALSE(rejected.applied);
  EXPECT_TRUE(run_until([&] { return fake.states_stored() == stored + 2; }));
  // A commit refused before sluiced is asked has nothing to tell it.
  engine->set_fd_limit(1);
  EXPECT_FALSE(commit(host_tables({wide_rule(22030, 1)})).applied);
  EXPECT_FALSE(run_until([&] { return fake.states_stored() != stored + 2; }, 5));
  EXPECT_EQ(fake.open_requests(), 2u);
}

TEST(BrokerReplyCut, SocketsThatDidNotArriveAreAnsweredEmfileAndMarkedLost) {
  auto reply = std::make_unique<wire::ListenersOpenedMsg>();
  std::memset(reply.get(), 0, sizeof(*reply));
  reply->header = {wire::kBrokerWireMagic, static_cast<uint32_t>(wire::BrokerMsg::kListenersOpened),
                   7};
  reply->count = 3;
  reply->fd_count = 2;
  reply->status[1] = EADDRINUSE;
  std::vector<ListenerKey> keys(3);
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i].addr = addr_v4(127, 0, 0, 1);
    keys[i].port = static_cast<uint16_t>(20001 + i);
  }
  UniqueFd first = tcp_target(20001);
  std::vector<UniqueFd> fds;
  fds.emplace_back(dup(first.get()));
  // Not cut, one fd short: a broken sluiced.
  EXPECT_FALSE(check_listeners_opened(*reply, sizeof(*reply), std::move(fds), 7, keys).ok());
  fds.clear();
  fds.emplace_back(dup(first.get()));
  auto got = check_listeners_opened(*reply, sizeof(*reply), std::move(fds), 7, keys, true);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0].status, wire::kStatusOk);
  EXPECT_TRUE((*got)[0].fd.valid());
  EXPECT_EQ((*got)[1].status, EADDRINUSE);
  EXPECT_FALSE((*got)[1].lost);
  EXPECT_EQ((*got)[2].status, EMFILE);
  EXPECT_TRUE((*got)[2].lost);
  // Cut or not, more fds than fd_count is malformed.
  fds.clear();
  for (int i = 0; i < 3; ++i) fds.emplace_back(dup(first.get()));
  EXPECT_FALSE(check_listeners_opened(*reply, sizeof(*reply), std::move(fds), 7, keys, true).ok());
}

}  // namespace
}  // namespace sluice::testing
