// sluiced's pesto endpoint driven by the real pesto, built from upstream
// passt's source, with Podman's and rootlesskit's exact command lines
// (../shared/INTEROP.md), the socket last as they pass it. sluiced runs with
// a target namespace, as Podman runs pasta: a container stand-in with its
// servers (and, for the later Podman lines, the container's addresses).
//
// pesto exits 0 once its update is sent; the server never replies. Sessions
// are served one at a time, each only once the update before it is in force,
// so reading the tables through a new session (pesto_tables) waits for the
// update the last pesto sent.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/container.h"
#include "tests/integration/daemon.h"
#include "tests/integration/kept_port.h"
#include "tests/integration/pesto_util.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"
#include "tests/interop_lines.h"

namespace sluice::test {
namespace {

using Args = std::vector<std::string>;
using Lines = std::vector<std::string>;

/// Runs pesto with `args` against `d`'s pesto socket, then waits until its
/// update was handled (a read-only session is served only after it).
RunResult pesto(Daemon& d, const Args& args) {
  RunResult r = run_pesto(args, d.pesto_path());
  pesto_tables(d.pesto_path());
  return r;
}

/// Starts `d` on `box`'s namespace with the pesto endpoint and kOther, and a
/// policy that lets Podman's lines publish their privileged ports.
void start_on(Daemon& d, const Container& box) {
  start_with_pesto(d, {"--netns", box.netns(), "--userns", box.userns(), "--policy",
                       container_host_policy(), "-t", kOther});
}

/// Runs `line`'s add through pesto, checks its exit status and the tables,
/// runs `check` while the rules stand, then the delete, and checks that only
/// kOther is left.
template <typename Check>
void add_then_delete(Daemon& d, const InteropLine& line, Check check) {
  RunResult add = pesto(d, line.add);
  ASSERT_EQ(add.status, 0) << line.add[2] << ": " << add.err << d.log();
  Lines want = {kOtherText};
  want.insert(want.end(), line.rules.begin(), line.rules.end());
  EXPECT_EQ(host_rules(d), want) << line.add[2] << "\n" << d.log();
  check();
  RunResult del = pesto(d, line.del);
  ASSERT_EQ(del.status, 0) << line.del[2] << ": " << del.err;
  EXPECT_EQ(host_rules(d), Lines{kOtherText}) << line.del[2] << "\n" << d.log();
}

/// Expects a UDP request to 127.0.0.1:`port` to be answered by the
/// container's server on `server_port`.
void expect_udp(uint16_t port, uint16_t server_port, const Daemon& d) {
  UniqueFd u = bind_udp("127.0.0.1");
  Datagram reply = request(u.get(), "127.0.0.1", port, "ping");
  ASSERT_TRUE(reply.ok) << d.log();
  EXPECT_EQ(reply.payload, std::to_string(server_port) + "|ping");
}

TEST(PestoEndpoint, PodmanLinesWithoutATargetPublishTheContainer) {
  SKIP_WITHOUT_REAL_PESTO();
  Container box({"tcp", "8080", "udp", "53", "tcp", "8000", "tcp", "8004", "tcp", "443"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_on(d, box);
  const auto& lines = kPodmanWithoutTarget;
  add_then_delete(d, lines[0], [&] {
    EXPECT_EQ(tcp_echo(8080, "v4 into the container"), "v4 into the container") << d.log();
    EXPECT_EQ(tcp_echo(8080, "v6 into the container", true), "v6 into the container");
  });
  add_then_delete(d, lines[1], [&] { expect_udp(53, 53, d); });
  add_then_delete(d, lines[2], [&] {
    EXPECT_EQ(tcp_echo(8000, "first"), "first");
    EXPECT_EQ(tcp_echo(8004, "last", true), "last");
  });
  add_then_delete(d, lines[3], [&] { EXPECT_EQ(tcp_echo(443, "low port"), "low port"); });
  add_then_delete(d, lines[4], [&] { EXPECT_EQ(tcp_echo(8080, "::1", true), "::1"); });
  EXPECT_FALSE(listening(8080));
}

TEST(PestoEndpoint, PodmanLinesWithATargetReachTheContainerAddress) {
  SKIP_WITHOUT_REAL_PESTO();
  Container box({"addr", "10.88.0.5", "addr", "fd00::5", "tcp", "80", "tcp", "84", "udp", "80"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_on(d, box);
  const auto& lines = kPodmanWithTarget;
  add_then_delete(d, lines[0], [&] {
    EXPECT_EQ(tcp_echo(8080, "to 10.88.0.5"), "to 10.88.0.5") << d.log();
    EXPECT_EQ(tcp_echo(8080, "to fd00::5", true), "to fd00::5");
  });
  add_then_delete(d, lines[1], [&] { EXPECT_EQ(tcp_echo(8004, "84"), "84") << d.log(); });
  add_then_delete(d, lines[2], [&] {
    EXPECT_EQ(tcp_echo(80, "tcp 80"), "tcp 80") << d.log();
    expect_udp(80, 80, d);
  });
}

TEST(PestoEndpoint, AnUpdateThatChangesNothingIsNoCommit) {
  // pesto always sends the whole tables back. When they are the ones in
  // force, nothing is committed, as sluicectl sends nothing then: no new
  // generation, audit record or history entry.
  SKIP_WITHOUT_REAL_PESTO();
  Container box({"tcp", "80"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_on(d, box);
  RunResult same = pesto(d, {"-t", kOther});
  EXPECT_EQ(same.status, 0) << same.err;
  EXPECT_EQ(host_rules(d), Lines{kOtherText});
  EXPECT_NE(d.log().find("changes nothing: not committed; generation 1 still serves"),
            std::string::npos)
      << d.log();
  RunResult history = d.ctl({"--history"});
  EXPECT_EQ(history.out.find("pesto update"), std::string::npos) << history.out;
  // A real change still commits.
  ASSERT_EQ(pesto(d, {"-A", "-t", "0.0.0.0/8080:80"}).status, 0);
  history = d.ctl({"--history"});
  EXPECT_NE(history.out.find("pesto update"), std::string::npos) << history.out;
}

TEST(PestoEndpoint, RootlesskitLinesAndItsConflictingAdd) {
  SKIP_WITHOUT_REAL_PESTO();
  RunResult version = run_command({real_pesto(), "--version"});
  EXPECT_EQ(version.status, 0) << version.err;
  Container box({"tcp", "80", "udp", "80"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_on(d, box);
  for (const InteropLine& line : kRootlesskit) {
    add_then_delete(d, line, [&] {
      if (line.rules[0].rfind("TCP [0.0.0.0]", 0) == 0) {
        EXPECT_EQ(tcp_echo(8080, "rootlesskit"), "rootlesskit") << d.log();
      }
      if (line.rules[0].rfind("UDP [0.0.0.0]", 0) == 0) expect_udp(8080, 80, d);
    });
  }
  // Its integration test expects a conflicting add to fail: pesto checks the
  // tables the server sent, and exits 1, as against pasta.
  ASSERT_EQ(pesto(d, {"-A", "--tcp-ports=0.0.0.0/8080:80"}).status, 0);
  RunResult conflict = pesto(d, {"-A", "--tcp-ports=0.0.0.0/8080:8081"});
  EXPECT_EQ(conflict.status, 1) << conflict.err;
  EXPECT_EQ(host_rules(d), (Lines{kOtherText, "TCP [0.0.0.0]:8080 => 80"}));
}

TEST(PestoEndpoint, AnUpdateRightAfterALargeOneIsApplied) {
  // Containers started together (podman compose up) send updates back to
  // back. The one after an update of a thousand sockets waits for it to be
  // in force, then must be applied: it used to be dropped as late, when the
  // large commit finished in the tick that timed the sessions out, and pesto
  // died of SIGPIPE or exited 0 with nothing applied.
  SKIP_WITHOUT_REAL_PESTO();
  Container box({"tcp", "80"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_on(d, box);
  Lines want = {kOtherText};
  for (int i = 0; i < 5; ++i) {
    const int first = 20000 + i * 600;
    const std::string big = std::to_string(first) + "-" + std::to_string(first + 499);
    const std::string small = std::to_string(7300 + i);
    RunResult large =
        run_pesto({"--add", "-t", "0.0.0.0/" + big, "-t", "[::]/" + big}, d.pesto_path());
    RunResult next = run_pesto({"--add", "-t", "0.0.0.0/" + small}, d.pesto_path());
    EXPECT_EQ(large.status, 0) << large.err;
    EXPECT_EQ(next.status, 0) << next.err;
    want.push_back("TCP [0.0.0.0]:" + big + " => " + big);
    want.push_back("TCP [::]:" + big + " => " + big);
    want.push_back("TCP [0.0.0.0]:" + small + " => " + small);
  }
  pesto_tables(d.pesto_path());
  EXPECT_EQ(host_rules(d), want) << d.log();
  EXPECT_EQ(d.log().find("no complete update"), std::string::npos) << d.log();
}

TEST(PestoEndpoint, ContainerRestartAddDeleteAddAndAWrongDelete) {
  SKIP_WITHOUT_REAL_PESTO();
  Container box({"addr", "10.88.0.5", "tcp", "80"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_on(d, box);
  const Args add = {"--add", "-t", "0.0.0.0/8080:10.88.0.5/80"};
  const Args del = {"--delete", "-t", "0.0.0.0/8080:10.88.0.5/80"};
  const Lines with = {kOtherText, "TCP [0.0.0.0]:8080 => 10.88.0.5:80"};
  ASSERT_EQ(pesto(d, add).status, 0);
  EXPECT_EQ(host_rules(d), with);
  ASSERT_EQ(pesto(d, del).status, 0);
  EXPECT_EQ(host_rules(d), Lines{kOtherText});
  ASSERT_EQ(pesto(d, add).status, 0);  // the restart that once broke Podman
  EXPECT_EQ(host_rules(d), with);
  EXPECT_EQ(tcp_echo(8080, "restarted"), "restarted") << d.log();
  // A re-add without a delete conflicts (Podman issue 29032), as with pasta.
  EXPECT_EQ(pesto(d, add).status, 1);
  // A delete naming another container's target removes nothing.
  EXPECT_EQ(pesto(d, {"--delete", "-t", "0.0.0.0/8080:10.88.0.6/80"}).status, 1);
  EXPECT_EQ(host_rules(d), with);
}

TEST(PestoEndpoint, OtherContainersPortRefusesNothingWhileContainersComeAndGo) {
  SKIP_WITHOUT_REAL_PESTO();
  Container box({"tcp", "8080", "tcp", "9000"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_with_pesto(d,
                   {"--netns", box.netns(), "--userns", box.userns(), "-t", "0.0.0.0/18080:8080"});
  UniqueFd established = connect_tcp("127.0.0.1", 18080, 5000);
  ASSERT_TRUE(established.valid()) << d.log();
  struct timeval tv = {5, 0};
  setsockopt(established.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  KeptPortProber prober(18080, KeptPortProber::Target::kEcho);
  int echoes = 0;
  // With pasta, each of these closes and re-binds every other listener.
  for (int i = 0; i < 100; ++i) {
    const std::string spec = "0.0.0.0/" + std::to_string(19000 + i % 10) + ":9000";
    ASSERT_EQ(run_pesto({"--add", "-t", spec}, d.pesto_path()).status, 0) << d.log();
    ASSERT_EQ(run_pesto({"--delete", "-t", spec}, d.pesto_path()).status, 0) << d.log();
    char b = static_cast<char>(i);
    if (send(established.get(), &b, 1, MSG_NOSIGNAL) == 1 &&
        recv(established.get(), &b, 1, 0) == 1 && b == static_cast<char>(i)) {
      ++echoes;
    }
    prober.await_probe();
  }
  pesto_tables(d.pesto_path());
  prober.stop();
  EXPECT_EQ(host_rules(d), Lines{"TCP [0.0.0.0]:18080 => 8080"});
  EXPECT_EQ(echoes, 100);
  EXPECT_GE(prober.ok(), 100);
  EXPECT_EQ(prober.refused(), 0);
  EXPECT_EQ(prober.reset(), 0);
  // Every update was a commit, in the history with who made it.
  RunResult history = d.ctl({"--history=5"});
  EXPECT_NE(history.out.find("pesto update from pid"), std::string::npos) << history.out;
}

TEST(PestoEndpoint, SluicectlAndPestoMakeTheSameTables) {
  SKIP_WITHOUT_REAL_PESTO();
  Container box({"tcp", "80"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_on(d, box);
  std::vector<InteropLine> all = kPodmanWithoutTarget;
  all.insert(all.end(), kPodmanWithTarget.begin(), kPodmanWithTarget.end());
  all.insert(all.end(), kRootlesskit.begin(), kRootlesskit.end());
  for (const InteropLine& line : all) {
    ASSERT_EQ(pesto(d, line.add).status, 0) << line.add[2];
    const Lines by_pesto = host_rules(d);
    ASSERT_EQ(pesto(d, line.del).status, 0) << line.del[2];
    RunResult by_ctl = d.ctl(line.add);
    ASSERT_EQ(by_ctl.status, 0) << line.add[2] << ": " << by_ctl.err;
    EXPECT_EQ(host_rules(d), by_pesto) << line.add[2];
    ASSERT_EQ(d.ctl(line.del).status, 0) << line.del[2];
  }
  // pesto's own listing of the tables sluiced sent: its format, byte for byte.
  ASSERT_EQ(pesto(d, kPodmanWithTarget[0].add).status, 0);
  RunResult shown = run_pesto({}, d.pesto_path());
  EXPECT_EQ(shown.status, 0) << shown.err;
  EXPECT_NE(shown.out.find("TCP [0.0.0.0]:8080  =>  10.88.0.5:80 \n"), std::string::npos)
      << shown.out;
  EXPECT_NE(shown.out.find("TCP [::]:8080  =>  fd00::5:80 \n"), std::string::npos) << shown.out;
}

TEST(PestoEndpoint, AutoThroughPestoFollowsTheServersOfTheContainer) {
  SKIP_WITHOUT_REAL_PESTO();
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_with_pesto(d, {"--netns", box.netns(), "--userns", box.userns(), "-t", "none"});
  // With a target namespace, auto works for HOST and for SPLICE (which
  // follows sluiced's side), so both tables offer SCAN.
  std::vector<pesto::WireTable> offered = pesto_tables(d.pesto_path());
  ASSERT_EQ(offered.size(), 2u);
  EXPECT_EQ(offered[0].pif, Pif::kHost);
  EXPECT_NE(offered[0].caps & pesto::kCapScan, 0u);
  EXPECT_NE(offered[1].caps & pesto::kCapScan, 0u);
  ASSERT_EQ(pesto(d, {"-A", "-t", "auto"}).status, 0) << d.log();
  ASSERT_EQ(box.command("tcp 8090"), "ok");
  // Scans run about once a second; 15 s leaves room for a loaded machine.
  bool reached = false;
  for (int i = 0; i < 750 && !reached; ++i) {
    reached = tcp_echo(8090, "scanned") == "scanned";
    if (!reached) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(reached) << d.log();
  // pesto deletes the scan rule it added, byte for byte.
  ASSERT_EQ(pesto(d, {"-D", "-t", "auto"}).status, 0) << d.log();
  EXPECT_EQ(host_rules(d), Lines{});
}

}  // namespace
}  // namespace sluice::test
