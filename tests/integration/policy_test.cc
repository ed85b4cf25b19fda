// The administrator's policy file end to end: `control` lines decided by the
// broker on the real peer ids (also for another uid, across the worker's user
// namespace), `target` lines enforced by the worker on every commit and on the
// initial rules, and `bind` denials that name their line. Every refused
// client or commit leaves the daemon forwarding.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "base/check.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;
constexpr uint16_t kListenPort = 18080;

/// Expects one connection through the forwarded port to reach the target.
void expect_forwarding(int target_listener, const Daemon& d) {
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort, 5000);
  ASSERT_TRUE(client.valid()) << d.log();
  UniqueFd conn = accept_one(target_listener, 5000);
  EXPECT_TRUE(conn.valid()) << "the daemon stopped forwarding\n" << d.log();
}

/// The rule of the tests: 127.0.0.1:kListenPort to kTargetPort.
std::string base_rule() {
  return "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort);
}

TEST(Policy, ReadOnlyClientListsButCannotCommit) {
  const std::string uid = std::to_string(::getuid());
  PolicyFileFixture policy("# operators may look\ncontrol read uid=" + uid + "\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult list = d.ctl();
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find(":18080"), std::string::npos) << list.out;

  RunResult commit = d.ctl({"-t", "127.0.0.1/18081:18000"});
  EXPECT_EQ(commit.status, 3) << commit.err;
  EXPECT_NE(commit.err.find("permission denied: committing needs commit access, and " +
                            policy.path() + " line 2 (control read uid=" + uid + ") grants uid " +
                            uid + " read access only"),
            std::string::npos)
      << commit.err;
  EXPECT_NE(commit.err.find("ask the administrator to add a `control commit` line for uid " + uid),
            std::string::npos)
      << commit.err;
  // The server answered with a refusal: the client knows nothing changed.
  EXPECT_NE(commit.err.find("; nothing changed"), std::string::npos) << commit.err;
  // The other rows of the server's dispatch table: the counters and the
  // history need read access only; a dry run needs commit access, and says so.
  RunResult stats = d.ctl({"--stats"});
  EXPECT_EQ(stats.status, 0) << stats.err;
  RunResult history = d.ctl({"--history=5"});
  EXPECT_EQ(history.status, 0) << history.err;
  RunResult dry = d.ctl({"--dry-run", "-t", "127.0.0.1/18081:18000"});
  EXPECT_EQ(dry.status, 3) << dry.err;
  EXPECT_NE(dry.err.find("permission denied: a dry run needs commit access"), std::string::npos)
      << dry.err;
  expect_forwarding(target.get(), d);
  EXPECT_EQ(d.ctl().status, 0);  // the next client is served as before
}

TEST(Policy, UnlistedClientIsRefusedWithTheReason) {
  const std::string other = std::to_string(::getuid() + 4242);
  PolicyFileFixture policy("control commit uid=" + other + "\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(wait_for_log(d, "ready:")) << d.log();
  RunResult list = d.ctl();
  EXPECT_EQ(list.status, 3) << list.err;
  EXPECT_NE(list.err.find("permission denied: connecting needs read access, and no `control` "
                          "line of " +
                          policy.path() + " matches uid " + std::to_string(::getuid())),
            std::string::npos)
      << list.err;
  expect_forwarding(target.get(), d);
}

TEST(Policy, TargetLinesRefuseCommitsNamingRulePortAndLine) {
  PolicyFileFixture policy(
      "target deny tcp 127.0.0.1 18005\n"
      "target allow tcp 127.0.0.0/8 18000-18010\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // 18090-18099 map to 18000-18009: port 18005 (listening on 18095) is denied.
  RunResult commit = d.ctl({"-A", "-t", "127.0.0.1/18090-18099:18000-18009"});
  EXPECT_EQ(commit.status, 1) << commit.err;
  EXPECT_NE(commit.err.find("forwards to TCP 127.0.0.1 port 18005, which the target policy does "
                            "not allow: denied by " +
                            policy.path() + " line 1 (target deny tcp 127.0.0.1 18005)"),
            std::string::npos)
      << commit.err;
  // Outside every line: no match is denied.
  commit = d.ctl({"-A", "-t", "127.0.0.1/18100:22"});
  EXPECT_EQ(commit.status, 1) << commit.err;
  EXPECT_NE(commit.err.find("no `target` line of " + policy.path() + " matches it"),
            std::string::npos)
      << commit.err;
  // Nothing was applied, and forwarding goes on; an allowed target commits.
  expect_forwarding(target.get(), d);
  commit = d.ctl({"-A", "-t", "127.0.0.1/18101:18010"});
  EXPECT_EQ(commit.status, 0) << commit.err;
}

TEST(Policy, InitialRulesOutsideTheTargetPolicyStopSluiced) {
  PolicyFileFixture policy("target allow tcp 127.0.0.1 9000\n");
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  EXPECT_EQ(d.wait_exit(), 1) << d.log();
  EXPECT_NE(d.log().find("policy-denied"), std::string::npos) << d.log();
  EXPECT_NE(d.log().find("port 18000"), std::string::npos) << d.log();
}

TEST(Policy, BindDenialNamesItsLine) {
  PolicyFileFixture policy(
      "bind deny tcp 18099 *\n"
      "bind allow tcp,udp 18000-18200 *\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult commit = d.ctl({"-A", "-t", "127.0.0.1/18098-18099:18000-18001"});
  EXPECT_EQ(commit.status, 1) << commit.err;
  EXPECT_NE(commit.err.find("denied by " + policy.path() + " line 1 (bind deny tcp 18099 *)"),
            std::string::npos)
      << commit.err;
  expect_forwarding(target.get(), d);
}

TEST(Policy, AnotherUserIsJudgedByItsRealUid) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: only one uid is mapped here";
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  // The default policy: sluiced's uid (root) only. uid 1000 must be named as
  // itself, not as the overflow uid 65534 that the worker's namespace shows.
  Daemon d;
  d.start({"-t", base_rule()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  ASSERT_EQ(::chmod(d.socket_path().c_str(), 0666), 0);
  std::string dir = d.socket_path().substr(0, d.socket_path().rfind('/'));
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  RunResult other = run_command({"/usr/bin/setpriv", "--reuid=1000", "--regid=1000",
                                 "--clear-groups", bin("sluicectl"), d.socket_path()});
  EXPECT_EQ(other.status, 3) << other.err;
  EXPECT_NE(other.err.find("the default control policy (no `control` line in the policy) allows "
                           "only uid 0 (the user sluiced runs as) and root"),
            std::string::npos)
      << other.err;
  EXPECT_NE(other.err.find("line for uid 1000"), std::string::npos) << other.err;
  expect_forwarding(target.get(), d);
}

TEST(Policy, GroupLineAdmitsAnotherUser) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: only one uid is mapped here";
  PolicyFileFixture policy("control read gid=4242\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(wait_for_log(d, "ready:")) << d.log();
  ASSERT_EQ(::chmod(d.socket_path().c_str(), 0666), 0);
  std::string dir = d.socket_path().substr(0, d.socket_path().rfind('/'));
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  // A supplementary group is enough: uid 1000, primary group 1000, also 4242.
  RunResult member = run_command({"/usr/bin/setpriv", "--reuid=1000", "--regid=1000",
                                  "--groups=4242", bin("sluicectl"), d.socket_path()});
  EXPECT_EQ(member.status, 0) << member.err;
  EXPECT_NE(member.out.find(":18080"), std::string::npos) << member.out;
  RunResult stranger = run_command({"/usr/bin/setpriv", "--reuid=1001", "--regid=1001",
                                    "--clear-groups", bin("sluicectl"), d.socket_path()});
  EXPECT_EQ(stranger.status, 3) << stranger.err;
  EXPECT_NE(stranger.err.find("matches uid 1001"), std::string::npos) << stranger.err;
  expect_forwarding(target.get(), d);
}

}  // namespace
}  // namespace sluice::test
