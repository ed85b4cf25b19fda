// The worker's descriptor limit end to end: a real sluiced started with a low
// RLIMIT_NOFILE (soft and hard, as LimitNOFILE= sets it; sluiced raises its
// soft limit to the hard one, and the worker inherits it), so that a few
// hundred ports are past it. A commit or dry run of more listeners than the
// worker can take is refused before sluiced opens a socket, naming the
// numbers and what to do; the worker is not restarted and forwards on. And a
// dry run leaves nothing bound in sluiced (its copies of the trial sockets
// are closed), so the port can be committed right after. A connection that
// finds no descriptor for a pipe copies on, and UDP flows from many
// sources leave the control socket and TCP room. Every wait is
// bounded; nothing depends on the machine's speed.
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;
/// Limit: the descriptors sluiced and its worker get. The worker keeps 1024
/// of them free for connections (worker/fd_budget.h: kFdReserve, at a limit
/// of at least kSmallFdLimit) and holds a few dozen of its own, so about 540
/// listeners fit: 800 are well past it, 100 well within.
constexpr rlim_t kNofile = 1600;

/// Starts `d` with RLIMIT_NOFILE kNofile (soft and hard) and `args`.
void start_limited(Daemon& d, const std::vector<std::string>& args) {
  d.set_child_setup([] {
    struct rlimit lim = {kNofile, kNofile};
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(126);
  });
  d.start(args);
}

TEST(FdLimit, MoreListenersThanTheWorkerCanHoldAreRefusedAndTheWorkerServesOn) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_limited(d, {"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  // The reproduction, scaled down: a dry run, then a commit, of 800
  // ports. Before, the worker received the listeners past its limit cut
  // short, stopped, and was restarted; sluicectl exited 3.
  for (bool dry_run : {true, false}) {
    std::vector<std::string> args = {"-A", "-t", "127.0.0.1/20000-20799:30000-30799"};
    if (dry_run) args.insert(args.begin(), "--dry-run");
    RunResult r = d.ctl(args);
    EXPECT_EQ(r.status, 1) << args[0] << "\n" << r.err << d.log();
    EXPECT_NE(r.err.find("capacity: the tables need 801 listening sockets, 800 of them new, and "
                         "only "),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("more fit the worker's descriptor limit (RLIMIT_NOFILE 1600: "),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("Forward fewer ports, or raise the hard limit sluiced starts with "
                         "(LimitNOFILE= in its systemd unit, or ulimit -Hn)"),
              std::string::npos)
        << r.err;
  }
  EXPECT_EQ(d.worker_pid(), worker) << "the worker was restarted\n" << d.log();
  EXPECT_EQ(d.log().find("MSG_CTRUNC"), std::string::npos) << d.log();
  EXPECT_FALSE(listening(20000));
  expect_forwarding(target.get(), 18080, d);
  // What fits is served as before.
  RunResult fits = d.ctl({"-A", "-t", "127.0.0.1/20000-20099:30000-30099"});
  EXPECT_EQ(fits.status, 0) << fits.err;
  EXPECT_TRUE(listening(20099));
  EXPECT_EQ(d.worker_pid(), worker);
}

TEST(FdLimit, ADryRunLeavesNothingBoundInSluiced) {
  // sluiced keeps a copy of every socket it opens for the worker; the trial
  // binds of a dry run must not stay bound there. A UDP port shows it: a
  // second UDP socket cannot bind it while any copy lives.
  UdpEcho echo("127.0.0.1", kTargetPort, "target");
  Daemon d;
  d.start({"-u", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult dry = d.ctl({"--dry-run", "-A", "-u", "127.0.0.1/18081:18000"});
  ASSERT_EQ(dry.status, 0) << dry.err;
  // A rejected commit acquires the same way: the next commit gets its port too.
  UniqueFd taken = bind_udp("127.0.0.1", 18083);
  RunResult rejected = d.ctl({"-A", "-u", "127.0.0.1/18082:18000", "-u", "127.0.0.1/18083:18000"});
  ASSERT_EQ(rejected.status, 1) << rejected.err;
  taken.reset();
  RunResult commit = d.ctl({"-A", "-u", "127.0.0.1/18081:18000", "-u", "127.0.0.1/18082:18000"});
  ASSERT_EQ(commit.status, 0) << commit.err << d.log();
  UniqueFd client = bind_udp("127.0.0.1");
  for (uint16_t port : {18081, 18082}) {
    Datagram reply = request(client.get(), "127.0.0.1", port, "through " + std::to_string(port));
    EXPECT_TRUE(reply.ok) << port << "\n" << d.log();
  }
}

// UDP flows come from whoever sends, spoofed sources included, one socket
// each: they once took every descriptor the worker had, and the control
// socket (sluicectl timed out), commits and TCP accepts failed with EMFILE
// until the flows went idle. Now a new flow needs room outside the reserve.
TEST(FdLimit, UdpFlowsFromManySourcesLeaveRoomForControlAndTcp) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  UdpEcho echo("127.0.0.1", kTargetPort, "target");
  Daemon d;
  start_limited(d, {"-t", "127.0.0.1/18080:18000", "-u", "127.0.0.1/18081:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // More sources than the whole limit: each would be a flow socket.
  std::vector<UniqueFd> clients;
  for (rlim_t i = 0; i < kNofile + 100; ++i) {
    clients.push_back(bind_udp("127.0.0.1"));
    ASSERT_TRUE(clients.back().valid());
    ASSERT_TRUE(send_udp(clients.back().get(), "127.0.0.1", 18081, "new source"));
  }
  ASSERT_TRUE(wait_for_log(d, "no descriptor for a new UDP flow")) << d.log();
  EXPECT_EQ(d.log().find("EMFILE"), std::string::npos) << d.log();
  RunResult stats = d.ctl({"--stats"});
  EXPECT_EQ(stats.status, 0) << stats.err << d.log();
  expect_forwarding(target.get(), 18080, d);
  RunResult commit = d.ctl({"-A", "-t", "127.0.0.1/18082:18000"});
  EXPECT_EQ(commit.status, 0) << commit.err << d.log();
  expect_forwarding(target.get(), 18082, d);
  // A client that got its flow before the limit is answered still.
  Datagram reply = request(clients.front().get(), "127.0.0.1", 18081, "old source");
  EXPECT_TRUE(reply.ok) << d.log();
}

TEST(FdLimit, AConnectionThatFindsNoDescriptorForAPipeCopiesOn) {
  // A transfer past the copy path's first 64 KiB splices through a pipe; a
  // worker out of descriptors cannot make one. The transfer then goes on by
  // copy instead of being reset.
#ifdef SLUICE_SANITIZE
  // The sanitizer runtime needs descriptors of its own (it probes memory by
  // writing it through a pipe); with none left it fails inside the worker's
  // filter (SIGSYS on readlink) before sluice's code runs. The normal build
  // runs this test.
  GTEST_SKIP() << "a worker with no descriptor left dies in the sanitizer runtime";
#endif
  constexpr rlim_t kTight = 256;
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort, 1024);
  Daemon d;
  d.set_child_setup([] {
    struct rlimit lim = {kTight, kTight};
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(126);
  });
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd client = connect_tcp("127.0.0.1", 18080);
  ASSERT_TRUE(client.valid());
  UniqueFd server = accept_one(target.get());
  ASSERT_TRUE(server.valid()) << d.log();
  // Idle connections until the worker has no descriptor left for another
  // target socket: the next connection's target end never arrives.
  std::vector<UniqueFd> held;
  bool exhausted = false;
  for (rlim_t i = 0; i < kTight && !exhausted; ++i) {
    UniqueFd c = connect_tcp("127.0.0.1", 18080, 2000);
    ASSERT_TRUE(c.valid());  // the kernel completes the handshake whatever the worker can do
    UniqueFd s = accept_one(target.get(), 2000);
    exhausted = !s.valid();
    held.push_back(std::move(c));
    held.push_back(std::move(s));
  }
  ASSERT_TRUE(exhausted) << "the worker's descriptors did not run out\n" << d.log();
  // 1 MiB through the first connection, read as it comes.
  std::string bulk(1 << 20, 'x');
  for (size_t i = 0; i < bulk.size(); i += 997) bulk[i] = static_cast<char>('a' + i % 26);
  struct timeval tv = {10, 0};
  setsockopt(server.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got(bulk.size(), '\0');
  ssize_t n = -1;
  std::thread reader([&] { n = recv(server.get(), got.data(), got.size(), MSG_WAITALL); });
  const ssize_t sent = send(client.get(), bulk.data(), bulk.size(), MSG_NOSIGNAL);
  reader.join();
  EXPECT_EQ(sent, static_cast<ssize_t>(bulk.size()));
  EXPECT_EQ(n, static_cast<ssize_t>(bulk.size())) << "the transfer was cut off\n" << d.log();
  EXPECT_TRUE(got == bulk);
  EXPECT_NE(d.log().find("the connection copies instead"), std::string::npos) << d.log();
}

}  // namespace
}  // namespace sluice::test
