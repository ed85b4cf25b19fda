// Policy reload end to end: SIGHUP makes sluiced's policy reader re-read the
// --policy file; the new bind and control lines apply to the next commit and
// the next client, the rules in force keep forwarding and are reported when
// they no longer pass, a broken file keeps the old policy, and the reader
// itself holds nothing. Every wait is bounded (wait_for_log: 10 s).
#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;

/// A rule from 127.0.0.1:`port` to the target.
std::string rule(uint16_t port) {
  return "127.0.0.1/" + std::to_string(port) + ":" + std::to_string(kTargetPort);
}

/// Sends SIGHUP and waits until both sluiced and the worker say the policy
/// is in force (`reloads`: the how-many-th reload this is).
void reload(Daemon& d, int reloads) {
  d.signal(SIGHUP);
  size_t seen = 0;
  for (int i = 0; i < 200 && seen < static_cast<size_t>(reloads); ++i) {
    const std::string log = d.log();
    seen = 0;
    for (size_t pos = log.find("in force for the next commit:"); pos != std::string::npos;
         pos = log.find("in force for the next commit:", pos + 1)) {
      ++seen;
    }
    if (seen < static_cast<size_t>(reloads)) usleep(50 * 1000);
  }
  ASSERT_GE(seen, static_cast<size_t>(reloads)) << d.log();
}

/// What most tests here start from: a policy file, the target listener, and
/// sluiced started with --policy on that file and one rule, 18080 to the
/// target. The members are destroyed in reverse order: sluiced stops first.
struct PolicyReload : ::testing::Test {
  /// Writes `text` as the policy file, listens on the target port and starts
  /// sluiced with --policy and rule(18080). Fails the test (a fatal failure,
  /// so callers wrap it in ASSERT_NO_FATAL_FAILURE) when sluiced does not
  /// come up.
  void start_with_policy(const std::string& text) {
    policy.rewrite(text);
    target = listen_tcp("127.0.0.1", kTargetPort);
    d.start({"--policy", policy.path(), "-t", rule(18080)});
    ASSERT_TRUE(d.wait_ready()) << d.log();
  }

  PolicyFileFixture policy{""};  // empty until start_with_policy writes it
  UniqueFd target;
  Daemon d;
};

TEST_F(PolicyReload, TighteningKeepsTheRuleInForceAndReportsIt) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18082 127.0.0.1\n"));

  policy.rewrite("# 18080 is retired\nbind allow tcp 18081 127.0.0.1\n");
  reload(d, 1);
  // The next commit of a port the new policy denies fails, naming it.
  RunResult commit = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(commit.status, 1) << commit.err;
  EXPECT_NE(commit.err.find("policy-denied"), std::string::npos) << commit.err;
  EXPECT_NE(commit.err.find("denied by " + policy.path() + ": no `bind` line matches"),
            std::string::npos)
      << commit.err;
  // The rule in force keeps forwarding, and is reported as no longer passing.
  expect_forwarding(target.get(), 18080, d);
  RunResult stats = d.ctl({"--stats"});
  ASSERT_EQ(stats.status, 0) << stats.err;
  EXPECT_NE(stats.out.find("policy: reloaded 1 time; 1 rule in force no longer passes"),
            std::string::npos)
      << stats.out;
  EXPECT_NE(stats.out.find("port 18080: in force, but the reloaded bind policy"), std::string::npos)
      << stats.out;
  RunResult json = d.ctl({"--stats", "--json"});
  ASSERT_EQ(json.status, 0) << json.err;
  EXPECT_NE(json.out.find("\"policyReloads\":1"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"policyFailures\":[{"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"port\":18080"), std::string::npos) << json.out;
  EXPECT_NE(d.log().find("policy reload: HOST rule 0"), std::string::npos) << d.log();
  // A commit that drops the rule clears the report.
  RunResult drop = d.ctl({"-t", rule(18081)});
  EXPECT_EQ(drop.status, 0) << drop.err;
  stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("every rule in force passes it"), std::string::npos) << stats.out;
}

TEST_F(PolicyReload, LooseningAllowsADeniedCommit) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080 127.0.0.1\n"));
  RunResult denied = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(denied.status, 1) << denied.err;

  policy.rewrite("bind allow tcp 18080-18081 127.0.0.1\n");
  reload(d, 1);
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  expect_forwarding(target.get(), 18081, d);
  expect_forwarding(target.get(), 18080, d);
}

TEST_F(PolicyReload, BrokenFileKeepsTheOldPolicy) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18081 127.0.0.1\n"));

  policy.rewrite("bind allow tcp 18080-18082 127.0.0.1\nbind allow tcp 0 *\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "policy reload failed: ")) << d.log();
  EXPECT_NE(d.log().find(policy.path() + " line 2: bad port \"0\""), std::string::npos) << d.log();
  EXPECT_NE(d.log().find("the policy loaded before stays in force"), std::string::npos);
  // The old policy decides: 18081 is allowed, 18082 is not.
  RunResult denied = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(denied.status, 1) << denied.err;
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  expect_forwarding(target.get(), 18080, d);

  // Fixed, it loads.
  policy.rewrite("bind allow tcp 18080-18082 127.0.0.1\n");
  reload(d, 1);
  RunResult now = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(now.status, 0) << now.err;
}

TEST_F(PolicyReload, ControlLinesApplyToTheNextClient) {
  // By name: the reader resolves it, sluiced gets the number.
  const struct passwd* me = ::getpwuid(::getuid());
  const std::string who = me != nullptr ? me->pw_name : std::to_string(::getuid());
  ASSERT_NO_FATAL_FAILURE(start_with_policy("control read uid=" + who + "\n"));
  RunResult refused = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(refused.status, 3) << refused.err;

  policy.rewrite("control commit uid=" + who + "\n");
  reload(d, 1);
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;

  policy.rewrite("control read uid=" + who + "\n");
  reload(d, 2);
  refused = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(refused.status, 3) << refused.err;
  EXPECT_NE(refused.err.find(policy.path() +
                             " line 1 (control read uid=" + std::to_string(::getuid()) + ")"),
            std::string::npos)
      << refused.err;
  expect_forwarding(target.get(), 18081, d);
}

TEST_F(PolicyReload, WithoutPolicyThereIsNothingToReload) {
  target = listen_tcp("127.0.0.1", kTargetPort);
  d.start({"-t", rule(18080)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "SIGHUP: nothing to reload")) << d.log();
  expect_forwarding(target.get(), 18080, d);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

/// The pid of the child of `parent` whose comm is `comm`, or -1.
pid_t child_with_comm(pid_t parent, const std::string& comm) {
  std::ifstream children("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                         "/children");
  pid_t child;
  while (children >> child) {
    std::ifstream in("/proc/" + std::to_string(child) + "/comm");
    std::string name;
    std::getline(in, name);
    if (name == comm) return child;
  }
  return -1;
}

TEST_F(PolicyReload, TheReaderHoldsNothing) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080 127.0.0.1\n"));
  const pid_t outer = child_with_comm(d.pid(), "sluiced-policy");
  ASSERT_GT(outer, 0) << d.log();
  // The reader works in a PID namespace of its own, as its first process: a
  // child of the reader sluiced forked, which only waits for it.
  const pid_t reader = child_with_comm(outer, "sluiced-policy");
  ASSERT_GT(reader, 0) << d.log();
  const std::string nspid = proc_status_field(reader, "NSpid");  // "OUTER ... 1"
  EXPECT_EQ(nspid.substr(nspid.find_last_of(" \t") + 1), "1") << nspid;
  for (pid_t p : {outer, reader}) {
    EXPECT_EQ(proc_status_field(p, "CapEff"), "0000000000000000") << p;
    EXPECT_EQ(proc_status_field(p, "CapBnd"), "0000000000000000") << p;
    EXPECT_EQ(proc_status_field(p, "NoNewPrivs"), "1") << p;
  }
  EXPECT_EQ(proc_status_field(reader, "CapEff"), "0000000000000000");
  EXPECT_EQ(proc_status_field(reader, "CapPrm"), "0000000000000000");
  EXPECT_EQ(proc_status_field(reader, "CapBnd"), "0000000000000000");
  EXPECT_EQ(proc_status_field(reader, "NoNewPrivs"), "1");
  // Its channel and the standard fds, nothing of sluiced's.
  DIR* dir = ::opendir(("/proc/" + std::to_string(reader) + "/fd").c_str());
  ASSERT_NE(dir, nullptr);
  for (struct dirent* e = ::readdir(dir); e != nullptr; e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    EXPECT_LE(std::stoi(e->d_name), 3) << "fd " << e->d_name << " is open in the reader";
  }
  ::closedir(dir);
  // Its root is read-only (its own mount namespace).
  std::ifstream mounts("/proc/" + std::to_string(reader) + "/mountinfo");
  std::string line;
  bool root_ro = false;
  while (std::getline(mounts, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point, opts;
    f >> id >> parent >> dev >> root >> point >> opts;
    if (point == "/") root_ro = opts.rfind("ro", 0) == 0;
  }
  EXPECT_TRUE(root_ro) << slurp("/proc/" + std::to_string(reader) + "/mountinfo");
  // It still reads and answers.
  reload(d, 1);
}

TEST_F(PolicyReload, AReaderThatDiedFailsTheReloadAndNothingElse) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18081 127.0.0.1\n"));
  const pid_t reader = child_with_comm(d.pid(), "sluiced-policy");
  ASSERT_GT(reader, 0) << d.log();
  const pid_t child = child_with_comm(reader, "sluiced-policy");  // in its PID namespace
  ASSERT_EQ(::kill(reader, SIGKILL), 0);  // its child dies with it (PDEATHSIG)
  // Bounded wait until the child is gone too (or a zombie): otherwise it
  // could still answer the reload below.
  for (int i = 0; i < 200 && child > 0; ++i) {
    const std::string state = proc_status_field(child, "State");
    if (state.empty() || state[0] == 'Z') break;
    usleep(50 * 1000);
  }
  // sluiced says so at once, not only at the next SIGHUP.
  ASSERT_TRUE(wait_for_log(d, "the policy reader exited")) << d.log();
  EXPECT_NE(d.log().find("a SIGHUP can no longer reload"), std::string::npos) << d.log();
  policy.rewrite("bind allow tcp 18080 127.0.0.1\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "policy reload failed: the policy reader is gone")) << d.log();
  // The old policy stays, and sluiced serves on.
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  expect_forwarding(target.get(), 18080, d);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST_F(PolicyReload, AWorkerStartedAfterAReloadJudgesByTheReloadedPolicy) {
  // `target` lines are the worker's alone to enforce (sluiced never sees a
  // target), so a worker that replaced a dead one after a reload must have
  // been given the reloaded text, not the one sluiced started with.
  const std::string bind = "bind allow tcp 18080-18081 127.0.0.1\n";
  ASSERT_NO_FATAL_FAILURE(start_with_policy(bind + "target allow tcp 127.0.0.0/8 18000-18010\n"));
  policy.rewrite(bind +
                 "target deny tcp 127.0.0.1 18001\ntarget allow tcp 127.0.0.0/8 18000-18010\n");
  reload(d, 1);

  const pid_t first = d.worker_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGKILL), 0);
  pid_t next = -1;
  for (int i = 0; i < 400 && (next <= 0 || next == first); ++i) {
    usleep(25 * 1000);
    next = d.worker_pid();
  }
  ASSERT_TRUE(next > 0 && next != first) << "no new worker\n" << d.log();
  ASSERT_TRUE(d.wait_ready()) << d.log();
  expect_forwarding(target.get(), 18080, d);

  RunResult denied = d.ctl({"-A", "-t", "127.0.0.1/18081:18001"});
  EXPECT_EQ(denied.status, 1) << denied.out << denied.err << d.log();
  EXPECT_NE(denied.err.find("which the target policy does not allow"), std::string::npos)
      << denied.err;
  EXPECT_NE(denied.err.find("target deny tcp 127.0.0.1 18001"), std::string::npos) << denied.err;
}

}  // namespace
}  // namespace sluice::test
