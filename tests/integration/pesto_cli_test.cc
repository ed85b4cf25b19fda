// Podman's and rootlesskit's exact pesto command lines (../shared/INTEROP.md),
// run with sluicectl in place of pesto against the real sluiced's control
// socket (the socket last, as they pass it): each add shows in the listing
// next to another container's rule, and its delete takes exactly it away.
//
// Podman's first generation forwards to the same port on the default target.
// Without a target namespace that would loop into sluice itself, and
// check_commit refuses it (checked); with sluiced --netns, as Podman runs
// pasta, the default target is the container's loopback, and the same lines
// publish the container's ports (checked, with traffic).
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "tests/integration/container.h"
#include "tests/integration/daemon.h"
#include "tests/integration/netns_util.h"
#include "tests/integration/pesto_util.h"
#include "tests/integration/tcp_util.h"
#include "tests/interop_lines.h"

namespace sluice::test {
namespace {

using Args = std::vector<std::string>;
using Lines = std::vector<std::string>;

/// Another container's rule, there from the start: no add or delete of the
/// clients may touch it.
const char* const kOther = "0.0.0.0/19090:10.88.0.9/90";
const char* const kOtherText = "TCP [0.0.0.0]:19090 => 10.88.0.9:90";

/// Starts `d` with kOther, and a policy that lets Podman's lines publish
/// their privileged ports, and waits for it.
void start(Daemon& d) {
  d.start({"--policy", container_host_policy(), "-t", kOther});
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

/// True when `text` contains `part`.
bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

using ClientLine = InteropLine;

/// Runs `line`'s add, checks the listing, runs its delete and checks that
/// only kOther is left. Every call puts the socket last, as the clients do.
void add_then_delete(Daemon& d, const ClientLine& line) {
  RunResult add = d.ctl(line.add);
  ASSERT_EQ(add.status, 0) << line.add[2] << ": " << add.err;
  EXPECT_TRUE(has(add.out, "applied: generation ")) << add.out;
  Lines want = {kOtherText};
  want.insert(want.end(), line.rules.begin(), line.rules.end());
  EXPECT_EQ(host_rules(d), want) << line.add[2];
  RunResult del = d.ctl(line.del);
  ASSERT_EQ(del.status, 0) << line.del[2] << ": " << del.err;
  EXPECT_EQ(host_rules(d), Lines{kOtherText}) << line.del[2];
}

TEST(PestoCli, PodmanCommandLinesWithATargetAddress) {
  Daemon d;
  start(d);
  for (const ClientLine& line : kPodmanWithTarget) add_then_delete(d, line);

  // The ports really are served while the rules stand, and closed after.
  RunResult add = d.ctl(kPodmanWithTarget[0].add);
  ASSERT_EQ(add.status, 0) << add.err;
  EXPECT_TRUE(listening(8080));
  RunResult del = d.ctl(kPodmanWithTarget[0].del);
  ASSERT_EQ(del.status, 0) << del.err;
  EXPECT_FALSE(listening(8080));
}

TEST(PestoCli, PodmanListenAddressWithoutATarget) {
  // -u [fd00::1]/80 forwards to port 80 of the default target: no loop, since
  // nothing listens on loopback port 80. The address must exist to be bound.
  ASSERT_TRUE(add_address_to_lo("fd00::1"));
  Daemon d;
  start(d);
  add_then_delete(d, kPodmanListenAddress);
}

TEST(PestoCli, RootlesskitCommandLines) {
  RunResult version = run_command({bin("sluicectl"), "--version"});
  EXPECT_EQ(version.status, 0) << version.err;
  Daemon d;
  start(d);
  for (const ClientLine& line : kRootlesskit) add_then_delete(d, line);

  // Its integration test expects a conflicting add to fail.
  ASSERT_EQ(d.ctl({"-A", "--tcp-ports=0.0.0.0/8080:80"}).status, 0);
  RunResult conflict = d.ctl({"-A", "--tcp-ports=0.0.0.0/8080:8081"});
  EXPECT_EQ(conflict.status, 1);
  EXPECT_TRUE(has(conflict.err, "sluicectl: conflict: ")) << conflict.err;
  EXPECT_EQ(host_rules(d), (Lines{kOtherText, "TCP [0.0.0.0]:8080 => 80"}));
}

TEST(PestoCli, PodmanReAddConflictsAndAWrongTargetIsNoSuchRule) {
  Daemon d;
  start(d);
  Args add = {"--add", "-t", "0.0.0.0/8080:10.88.0.5/80"};
  ASSERT_EQ(d.ctl(add).status, 0);
  // Podman issue 29032: a restart re-adds a rule whose delete never ran.
  RunResult again = d.ctl(add);
  EXPECT_EQ(again.status, 1);
  EXPECT_TRUE(has(again.err, "conflict")) << again.err;
  // Another container's target is not this rule.
  RunResult wrong = d.ctl({"--delete", "-t", "0.0.0.0/8080:10.88.0.6/80"});
  EXPECT_EQ(wrong.status, 1);
  EXPECT_TRUE(has(wrong.err,
                  "sluicectl: -D -t '0.0.0.0/8080:10.88.0.6/80': TCP port 8080 on [0.0.0.0] is "
                  "not forwarded to 10.88.0.6:80 in HOST (no such rule)"))
      << wrong.err;
  EXPECT_EQ(host_rules(d), (Lines{kOtherText, "TCP [0.0.0.0]:8080 => 10.88.0.5:80"}));
  // The range-split improvement, where everything else matches.
  ASSERT_EQ(d.ctl({"--add", "-t", "0.0.0.0/8000-8004:10.88.0.5/80-84"}).status, 0);
  RunResult part = d.ctl({"--delete", "-t", "0.0.0.0/8002:10.88.0.5/82"});
  EXPECT_EQ(part.status, 0) << part.err;
  EXPECT_EQ(host_rules(d), (Lines{kOtherText, "TCP [0.0.0.0]:8080 => 10.88.0.5:80",
                                  "TCP [0.0.0.0]:8000-8001 => 10.88.0.5:80-81",
                                  "TCP [0.0.0.0]:8003-8004 => 10.88.0.5:83-84"}));
  EXPECT_FALSE(listening(8002));
  EXPECT_TRUE(listening(8003));
}

TEST(PestoCli, SocketPathAnywhereAndLongOptionForms) {
  Daemon d;
  start(d);
  const std::string& sock = d.socket_path();
  RunResult first = run_command(
      {bin("sluicectl"), sock, "--add", "--tcp-ports", "0.0.0.0/8000-8004:10.88.0.5/80-84"});
  ASSERT_EQ(first.status, 0) << first.err;
  RunResult middle =
      run_command({bin("sluicectl"), "--del", sock, "--tcp-p=0.0.0.0/8000-8004:10.88.0.5/80-84"});
  ASSERT_EQ(middle.status, 0) << middle.err;
  EXPECT_EQ(host_rules(d), Lines{kOtherText});
}

TEST(PestoCli, PodmanLinesWithoutATargetAreRefusedAsLoopsWithoutATargetNamespace) {
  // Without a target namespace, the default target is sluiced's own
  // loopback: each of these rules would forward into itself.
  Daemon d;
  start(d);
  for (const ClientLine& line : kPodmanWithoutTarget) {
    RunResult r = d.ctl(line.add);
    EXPECT_EQ(r.status, 1) << line.add[2];
    EXPECT_TRUE(has(r.err, "every connection would come back into sluice")) << r.err;
    EXPECT_TRUE(has(r.err, "nothing was sent")) << r.err;
  }
  EXPECT_EQ(host_rules(d), Lines{kOtherText});
  // Their deletes find no such rule; Podman only logs a failed delete.
  RunResult del = d.ctl({"--delete", "-t", "0.0.0.0/8080", "-t", "[::]/8080"});
  EXPECT_EQ(del.status, 1);
  EXPECT_TRUE(has(del.err, "(no such rule)")) << del.err;
}

TEST(PestoCli, PodmanLinesWithoutATargetPublishTheContainerWithATargetNamespace) {
  Container box({"tcp", "8080", "tcp", "8000", "tcp", "8004", "udp", "53"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  d.start({"--netns", box.netns(), "--userns", box.userns(), "--policy", container_host_policy(),
           "-t", kOther});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  for (const ClientLine& line : kPodmanWithoutTarget) add_then_delete(d, line);
  // With a rule in place, traffic reaches the server inside the container.
  RunResult add = d.ctl({"--add", "-t", "0.0.0.0/8080", "-t", "[::]/8080"});
  ASSERT_EQ(add.status, 0) << add.err;
  for (const char* addr : {"127.0.0.1", "::1"}) {
    UniqueFd c = connect_tcp(addr, 8080, 5000);
    ASSERT_TRUE(c.valid()) << addr << d.log();
    char b = 'x';
    ASSERT_EQ(send(c.get(), &b, 1, MSG_NOSIGNAL), 1);
    struct timeval tv = {5, 0};
    setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    EXPECT_EQ(recv(c.get(), &b, 1, 0), 1) << addr << " did not reach the container\n" << d.log();
  }
}

}  // namespace
}  // namespace sluice::test
