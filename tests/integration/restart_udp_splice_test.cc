// Worker restarts for UDP listeners and for SPLICE rules (docs/ARCHITECTURE.md
// "Worker restarts", "SPLICE rules"): restart_test.cc covers TCP HOST rules;
// here the worker is killed again and again while
//   - a UDP client talks through a -u rule: a datagram sent while no worker
//     runs waits in the kept socket's receive buffer and is answered by the
//     next worker;
//   - a client inside the target namespace of `sluiced --netns` connects
//     through a -T rule, whose listener the namespace helper made in there:
//     nothing is refused, and a -U rule answers after every restart.
// Semantics asserted, for each restart: the listening sockets are the same
// ones (the kernel's inode of each, from /proc/net, is unchanged: sluiced's
// escrow kept them and the new worker took them back; nothing was bound
// again), the generation, digest and tables (`sluicectl --json`) are the
// ones before the kills, and each death is logged as losing the established
// connections and UDP flows (which are not kept). Every loop is bounded in
// count and time; a wait for the machine is only ever an upper bound.
#include <signal.h>
#include <sys/types.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>

#include "tests/integration/container.h"
#include "tests/integration/daemon.h"
#include "tests/integration/host_echo.h"
#include "tests/integration/ns_client.h"
#include "tests/integration/restart_util.h"
#include "tests/integration/udp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTarget = 19000;
constexpr uint16_t kUdpTarget = 19053;
constexpr uint16_t kUdpPort = 18053;
constexpr uint16_t kSpliceTcp = 29000;
constexpr uint16_t kSpliceUdp = 29053;
/// How many times each test kills the worker.
constexpr int kKills = 5;
/// Limit: how long a datagram queued while no worker ran may take to be
/// answered once the next one runs (an upper bound for a busy machine).
constexpr int kQueuedReplyMs = 20000;

/// sluiced's line for each worker death.
constexpr const char* kLost = "its established connections and UDP flows are lost";

TEST(RestartUdp, ADatagramSentWhileNoWorkerRunsIsAnsweredByTheNext) {
  UdpEcho target("127.0.0.1", kUdpTarget, "t");
  Daemon d;
  const std::string rule =
      "127.0.0.1/" + std::to_string(kUdpPort) + ":" + std::to_string(kUdpTarget);
  d.start({"-u", rule});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // One commit first, so that the generation to keep is not the first one.
  ASSERT_EQ(d.ctl({"-u", rule + ",18054:" + std::to_string(kUdpTarget)}).status, 0) << d.log();
  const RunResult before = d.ctl({"--json"});
  ASSERT_EQ(before.status, 0) << d.log();
  ASSERT_NE(before.out.find("\"generation\":2"), std::string::npos) << before.out;

  UniqueFd client = bind_udp("127.0.0.1");
  ASSERT_TRUE(request(client.get(), "127.0.0.1", kUdpPort, "first").ok) << d.log();
  const std::set<uint64_t> sockets = listener_inodes("/proc/self/net/", "udp", kUdpPort);
  ASSERT_EQ(sockets.size(), 1u) << slurp("/proc/self/net/udp");

  pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  for (int i = 0; i < kKills; ++i) {
    const std::string at = "kill " + std::to_string(i + 1) + ": ";
    // The datagram reaches the port while no worker exists: sluiced is
    // stopped before the worker is killed, so it starts none meanwhile.
    const std::string queued = "queued " + std::to_string(i);
    ASSERT_NO_FATAL_FAILURE(kill_worker_while_stopped(d, worker, [&] {
      EXPECT_TRUE(send_udp(client.get(), "127.0.0.1", kUdpPort, queued));
    })) << at;
    std::string why;
    worker = wait_for_serving_worker(d, worker, static_cast<size_t>(i) + 2, &why);
    ASSERT_GT(worker, 0) << at << why << "\n" << d.log();
    // Answered, from the port it was sent to: the kernel queued it on the
    // kept socket, and the new worker read it from there. Had the port been
    // closed and bound again, it would have been dropped.
    const Datagram late = await_reply(client.get(), queued, kQueuedReplyMs);
    ASSERT_TRUE(late.ok) << at << "the datagram sent while no worker ran got no answer\n"
                         << d.log();
    EXPECT_EQ(late.from_addr, "127.0.0.1") << at;
    EXPECT_EQ(late.from_port, kUdpPort) << at;
    EXPECT_EQ(listener_inodes("/proc/self/net/", "udp", kUdpPort), sockets)
        << at << "the port's socket is not the one sluiced kept\n"
        << slurp("/proc/self/net/udp");
    // And new datagrams go through the new worker's flows.
    const std::string fresh = "after " + std::to_string(i);
    const Datagram reply = request(client.get(), "127.0.0.1", kUdpPort, fresh);
    ASSERT_TRUE(reply.ok) << at << "no answer after the restart\n" << d.log();
    EXPECT_EQ(parse_echo(reply.payload).payload, fresh) << at;
  }

  EXPECT_EQ(::kill(d.pid(), 0), 0) << "sluiced died\n" << d.log();
  const RunResult after = d.ctl({"--json"});
  ASSERT_EQ(after.status, 0) << d.log();
  EXPECT_EQ(after.out, before.out);  // generation, digest and tables unchanged
  EXPECT_EQ(count_of(d.log(), kLost), static_cast<size_t>(kKills)) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(RestartSplice, KillsUnderNetnsRefuseNothingAndKeepTheListenersInside) {
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  NsClient inside(box.pid());  // before any thread of the test
  ASSERT_TRUE(inside.ok());
  HostEcho tcp(kTarget);
  UdpEcho udp("127.0.0.1", kUdpTarget, "v4");
  Daemon d;
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "none", "-T",
           std::to_string(kSpliceTcp) + ":" + std::to_string(kTarget), "-U",
           std::to_string(kSpliceUdp) + ":" + std::to_string(kUdpTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const RunResult listing = d.ctl();
  ASSERT_EQ(listing.status, 0) << d.log();
  ASSERT_NE(
      listing.out.find("SPLICE\n    TCP [*]%lo:29000 => 19000\n    UDP [*]%lo:29053 => 19053"),
      std::string::npos)
      << listing.out;
  const RunResult before = d.ctl({"--json"});
  ASSERT_EQ(before.status, 0) << d.log();
  ASSERT_EQ(parse_echo(inside.udp_request("127.0.0.1", kSpliceUdp, "first")).payload, "first")
      << d.log();
  // The listeners are inside the namespace: its own /proc/net lists them.
  const std::string inside_net = "/proc/" + std::to_string(box.pid()) + "/net/";
  const std::set<uint64_t> tcp_sockets = listener_inodes(inside_net, "tcp", kSpliceTcp);
  const std::set<uint64_t> udp_sockets = listener_inodes(inside_net, "udp", kSpliceUdp);
  ASSERT_FALSE(tcp_sockets.empty()) << slurp(inside_net + "tcp") << slurp(inside_net + "tcp6");
  ASSERT_FALSE(udp_sockets.empty()) << slurp(inside_net + "udp") << slurp(inside_net + "udp6");

  ASSERT_TRUE(inside.start_prober(kSpliceTcp));
  inside.await_probe();
  pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  for (int i = 0; i < kKills; ++i) {
    const std::string at = "kill " + std::to_string(i + 1) + ": ";
    // The last kill: a datagram sent from inside while no worker exists
    // waits in the kept UDP socket inside for the next worker.
    const bool last = i == kKills - 1;
    const std::string queued = "queued inside";
    if (last) {
      ASSERT_NO_FATAL_FAILURE(kill_worker_while_stopped(d, worker, [&] {
        EXPECT_TRUE(inside.udp_send("127.0.0.1", kSpliceUdp, queued));
      })) << at;
    } else {
      ASSERT_EQ(::kill(worker, SIGKILL), 0);
    }
    // Bounded: the new worker is started and serves, then probes go on.
    std::string why;
    worker = wait_for_serving_worker(d, worker, static_cast<size_t>(i) + 2, &why);
    ASSERT_GT(worker, 0) << at << why << "\n" << d.log();
    if (last) {
      EXPECT_EQ(parse_echo(inside.udp_await(queued, kQueuedReplyMs)).payload, queued)
          << at << "the datagram sent while no worker ran got no answer\n"
          << d.log();
    }
    inside.await_probe();
    const std::string text = "udp after " + std::to_string(i);
    EXPECT_EQ(parse_echo(inside.udp_request("127.0.0.1", kSpliceUdp, text)).payload, text)
        << at << d.log();
    EXPECT_EQ(listener_inodes(inside_net, "tcp", kSpliceTcp), tcp_sockets)
        << at << "the TCP listener inside is not the one sluiced kept";
    EXPECT_EQ(listener_inodes(inside_net, "udp", kSpliceUdp), udp_sockets)
        << at << "the UDP listener inside is not the one sluiced kept";
  }
  int ok = 0, refused = -1, reset = -1;
  ASSERT_EQ(std::sscanf(inside.stop_prober().c_str(), "%d %d %d", &ok, &refused, &reset), 3);
  EXPECT_EQ(refused, 0) << d.log();
  // A probe in flight through a worker as it is killed loses its connection
  // (established connections of a dead worker are lost): at most one a kill.
  EXPECT_LE(reset, kKills) << d.log();
  EXPECT_GE(ok, kKills);

  EXPECT_EQ(::kill(d.pid(), 0), 0) << "sluiced died\n" << d.log();
  const RunResult after = d.ctl({"--json"});
  ASSERT_EQ(after.status, 0) << d.log();
  EXPECT_EQ(after.out, before.out);  // generation, digest and both tables unchanged
  EXPECT_EQ(d.ctl().out, listing.out);
  EXPECT_EQ(count_of(d.log(), kLost), static_cast<size_t>(kKills)) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

}  // namespace
}  // namespace sluice::test
