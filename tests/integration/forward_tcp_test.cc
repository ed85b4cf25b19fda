// The TCP data path's semantics end to end, with the real daemon: a reset on
// either side reaches the other as a reset (after a FIN too), urgent data
// passes in its place, 1,000 concurrent connections each
// get their own bytes back, and IPv6, dual-stack and IPv6-target rules carry
// data on the family they were asked for.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;
constexpr uint16_t kListenPort = 18080;

/// Closes `fd` with an RST (SO_LINGER 0).
void reset_close(UniqueFd& fd) {
  struct linger lg = {1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  fd.reset();
}

/// Reads from `fd` until EOF or an error (bounded by its receive timeout);
/// returns 0 on EOF or the errno of the failed recv.
int read_until_end(int fd) {
  char buf[4096];
  for (int i = 0; i < 10000; ++i) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return 0;
    if (n < 0) return errno;
  }
  return -1;
}

/// Starts sluiced with `rule` (a -t spec) and waits until it serves.
void start_with(Daemon& d, const std::string& rule) {
  d.start({"-t", rule});
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

/// Sends a short `token` from `client`, checks it arrives on `server`, and
/// the answer comes back.
void expect_exchange(int client, int server, const std::string& token) {
  ASSERT_EQ(send(client, token.data(), token.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(token.size()));
  std::string got(token.size(), '\0');
  ASSERT_EQ(recv(server, got.data(), got.size(), MSG_WAITALL), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, token);
  ASSERT_EQ(send(server, "ok", 2, MSG_NOSIGNAL), 2);
  char ack[2];
  ASSERT_EQ(recv(client, ack, 2, MSG_WAITALL), 2);
}

/// A client connected through the daemon's kListenPort and the target's end.
struct Connected {
  UniqueFd client;
  UniqueFd server;
};

/// Connects to `addr`:kListenPort and accepts the forwarded connection on
/// `target_listener`; either end is empty when that step failed. With
/// `server_timeout_s`, the target's end gets that receive timeout.
Connected connect_through(int target_listener, const std::string& addr, int server_timeout_s = 0) {
  Connected c;
  c.client = connect_tcp(addr, kListenPort);
  if (c.client.valid()) c.server = accept_one(target_listener);
  if (c.server.valid() && server_timeout_s > 0) {
    struct timeval tv = {server_timeout_s, 0};
    setsockopt(c.server.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  return c;
}

/// The family of the peer of an accepted socket.
int peer_family(int fd) {
  struct sockaddr_storage ss = {};
  socklen_t len = sizeof(ss);
  getpeername(fd, reinterpret_cast<struct sockaddr*>(&ss), &len);
  return ss.ss_family;
}

TEST(ForwardTcp, ResetByTheTargetReachesTheClientAsReset) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_with(d, "127.0.0.1/18080:18000");
  auto [client, conn] = connect_through(target.get(), "127.0.0.1");
  ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
  expect_exchange(client.get(), conn.get(), "before the reset");
  reset_close(conn);
  EXPECT_EQ(read_until_end(client.get()), ECONNRESET) << "a reset became a silent EOF";
}

TEST(ForwardTcp, ResetByTheClientReachesTheTargetAsReset) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_with(d, "127.0.0.1/18080:18000");
  auto [client, conn] = connect_through(target.get(), "127.0.0.1", 10);
  ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
  expect_exchange(client.get(), conn.get(), "before the reset");
  reset_close(client);
  EXPECT_EQ(read_until_end(conn.get()), ECONNRESET) << "a reset became a silent EOF";
}

TEST(ForwardTcp, ThousandConcurrentConnectionsEachGetTheirOwnBytes) {
  constexpr int kConns = 1000;
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_with(d, "127.0.0.1/18080:18000");
  // The target answers every connection with what it read, prefixed by '>'.
  std::thread server([&] {
    std::vector<UniqueFd> conns;
    for (int i = 0; i < kConns; ++i) {
      UniqueFd c = accept_one(target.get(), 20000);
      if (!c.valid()) return;
      conns.push_back(std::move(c));
    }
    for (UniqueFd& c : conns) {
      struct timeval tv = {20, 0};
      setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::array<char, 8> token{};
      if (recv(c.get(), token.data(), token.size(), MSG_WAITALL) != 8) return;
      std::string answer = ">" + std::string(token.data(), token.size());
      if (send(c.get(), answer.data(), answer.size(), MSG_NOSIGNAL) != 9) return;
    }
  });
  // All 1,000 are open at once before any is answered.
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kConns; ++i) {
    UniqueFd c = connect_tcp("127.0.0.1", kListenPort, 20000);
    ASSERT_TRUE(c.valid()) << "connection " << i << "\n" << d.log();
    char token[9];
    std::snprintf(token, sizeof(token), "%08d", i);
    ASSERT_EQ(send(c.get(), token, 8, MSG_NOSIGNAL), 8);
    clients.push_back(std::move(c));
  }
  int answered = 0;
  for (int i = 0; i < kConns; ++i) {
    char got[10] = {};
    char want[10];
    std::snprintf(want, sizeof(want), ">%08d", i);
    if (recv(clients[static_cast<size_t>(i)].get(), got, 9, MSG_WAITALL) == 9 &&
        std::memcmp(got, want, 9) == 0) {
      ++answered;
    }
  }
  server.join();
  EXPECT_EQ(answered, kConns) << d.log();
}

TEST(ForwardTcp, IPv6RuleCarriesIPv6) {
  UniqueFd target = listen_tcp("::1", kTargetPort);
  Daemon d;
  start_with(d, "::1/18080:18000");
  auto [client, conn] = connect_through(target.get(), "::1");
  ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
  EXPECT_EQ(peer_family(conn.get()), AF_INET6);  // the default target is ::1 for IPv6
  expect_exchange(client.get(), conn.get(), "over IPv6");
}

TEST(ForwardTcp, DualStackRuleServesBothFamiliesEachToItsOwnLoopback) {
  // `-t 18080:18000` listens on one [::] socket with V6ONLY=0; each client
  // reaches the target on the loopback of its own family.
  UniqueFd target4 = listen_tcp("127.0.0.1", kTargetPort);
  UniqueFd target6 = listen_tcp("::1", kTargetPort);
  Daemon d;
  start_with(d, "18080:18000");
  RunResult list = d.ctl();
  EXPECT_NE(list.out.find("TCP [*]:18080 => 18000"), std::string::npos) << list.out;

  auto [c4, s4] = connect_through(target4.get(), "127.0.0.1");
  ASSERT_TRUE(c4.valid() && s4.valid()) << d.log();
  expect_exchange(c4.get(), s4.get(), "IPv4 through a dual-stack socket");

  auto [c6, s6] = connect_through(target6.get(), "::1");
  ASSERT_TRUE(c6.valid() && s6.valid()) << d.log();
  EXPECT_EQ(peer_family(s6.get()), AF_INET6);
  expect_exchange(c6.get(), s6.get(), "IPv6 through a dual-stack socket");
}

TEST(ForwardTcp, ExplicitIPv6TargetAddress) {
  UniqueFd target = listen_tcp("::1", 18001);
  Daemon d;
  start_with(d, "::1/18080:[::1]/18001");
  RunResult list = d.ctl();
  EXPECT_NE(list.out.find("TCP [::1]:18080 => ::1:18001"), std::string::npos) << list.out;
  auto [client, conn] = connect_through(target.get(), "::1");
  ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
  expect_exchange(client.get(), conn.get(), "to an explicit IPv6 target");
}

TEST(ForwardTcp, TargetThatNeverAnswersIsResetAfterTheConnectTimeout) {
  // A target whose accept queue is full drops further SYNs: the worker's
  // connect hangs. After --connect-timeout the client gets a reset.
  UniqueFd target(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(kTargetPort);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(target.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ASSERT_EQ(bind(target.get(), reinterpret_cast<struct sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(target.get(), 0), 0);
  UniqueFd filler = connect_tcp("127.0.0.1", kTargetPort);  // fills the queue, never accepted
  ASSERT_TRUE(filler.valid());
  Daemon d;
  d.start({"--connect-timeout", "1", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto start = std::chrono::steady_clock::now();
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort, 10000);
  ASSERT_TRUE(client.valid());
  EXPECT_EQ(read_until_end(client.get()), ECONNRESET) << d.log();
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(900));
  EXPECT_LT(waited, std::chrono::seconds(5)) << "the timeout did not fire";
  EXPECT_NE(d.log().find("did not answer within 1 s"), std::string::npos) << d.log();
}

TEST(ForwardTcp, AcceptingStopsAtTheConnectionLimitAndResumes) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--max-connections", "2", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd c1 = connect_tcp("127.0.0.1", kListenPort);
  UniqueFd s1 = accept_one(target.get());
  UniqueFd c2 = connect_tcp("127.0.0.1", kListenPort);
  UniqueFd s2 = accept_one(target.get());
  ASSERT_TRUE(c1.valid() && s1.valid() && c2.valid() && s2.valid());
  // The third waits in the listener's queue: the kernel completed the
  // handshake, the worker does not accept it while two are open.
  UniqueFd c3 = connect_tcp("127.0.0.1", kListenPort);
  ASSERT_TRUE(c3.valid());
  UniqueFd early = accept_one(target.get(), 500);
  EXPECT_FALSE(early.valid()) << "a third connection was forwarded past the limit";
  RunResult stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("(1 paused at a limit); TCP connections 2 of 2"), std::string::npos)
      << stats.out;
  // One closes: the listener resumes and the waiting client gets through.
  c1.reset();
  s1.reset();
  UniqueFd s3 = accept_one(target.get(), 5000);
  ASSERT_TRUE(s3.valid()) << "accepting did not resume\n" << d.log();
  expect_exchange(c3.get(), s3.get(), "after the limit");
  expect_exchange(c2.get(), s2.get(), "the others go on");
}

TEST(ForwardTcp, InterfaceBoundRuleServesAndAMissingInterfaceFailsTheCommit) {
  // %IFNAME: the broker binds the listener to the interface (SO_BINDTODEVICE).
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_with(d, "127.0.0.1%lo/18080:18000");
  RunResult list = d.ctl();
  EXPECT_NE(list.out.find("TCP [127.0.0.1]%lo:18080 => 18000"), std::string::npos) << list.out;
  auto [client, conn] = connect_through(target.get(), "127.0.0.1");
  ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
  expect_exchange(client.get(), conn.get(), "through lo");
  // An interface that does not exist: the commit fails whole, naming the
  // rule, the port and the errno, and the old rule keeps serving.
  RunResult bad = d.ctl({"-A", "-t", "127.0.0.1%nosuch0/18081:18000"});
  EXPECT_EQ(bad.status, 1) << bad.err;
  EXPECT_NE(bad.err.find("port 18081"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("ENODEV"), std::string::npos) << bad.err;
  UniqueFd again = connect_tcp("127.0.0.1", kListenPort);
  EXPECT_TRUE(again.valid());
}

TEST(ForwardTcp, BothSidesOfAConnectionKeepAlive) {
  // The worker's two sockets of a connection run a keepalive timer: the
  // accepted one inherits SO_KEEPALIVE from the listener, the one to the
  // target sets it. `ss -o` shows the timer of every socket in the namespace.
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_with(d, "127.0.0.1/18080:18000");
  auto [client, conn] = connect_through(target.get(), "127.0.0.1");
  ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
  expect_exchange(client.get(), conn.get(), "keepalive");
  RunResult worker_side = run_command(
      {"/usr/bin/ss", "-tnoH", "state", "established", "(", "sport", "=", ":18080", ")"});
  EXPECT_NE(worker_side.out.find("timer:(keepalive"), std::string::npos) << worker_side.out;
  RunResult target_side = run_command(
      {"/usr/bin/ss", "-tnoH", "state", "established", "(", "dport", "=", ":18000", ")"});
  EXPECT_NE(target_side.out.find("timer:(keepalive"), std::string::npos) << target_side.out;
  // The test's own sockets set nothing: the check can fail.
  RunResult plain = run_command(
      {"/usr/bin/ss", "-tnoH", "state", "established", "(", "sport", "=", ":18000", ")"});
  EXPECT_EQ(plain.out.find("timer:(keepalive"), std::string::npos) << plain.out;
}

/// Reads from `fd` until EOF, an error or its receive timeout; returns what
/// came (at most `limit` bytes).
std::string read_all_of(int fd, size_t limit) {
  std::string out;
  char buf[65536];
  for (int i = 0; i < 100000 && out.size() < limit; ++i) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

/// Sends `prefix`, then one urgent byte '!' (MSG_OOB), then 100 'B' and
/// `tail` from `client`, then its FIN; the target `server` must read all of it,
/// in order, the urgent byte in its place, then the end.
void expect_urgent_byte_in_place(int client, int server, const std::string& prefix,
                                 const std::string& tail) {
  const std::string after(100, 'B');
  ASSERT_EQ(send(client, prefix.data(), prefix.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(prefix.size()));
  ASSERT_EQ(send(client, "!", 1, MSG_OOB | MSG_NOSIGNAL), 1);
  ASSERT_EQ(send(client, after.data(), after.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(after.size()));
  ASSERT_EQ(send(client, tail.data(), tail.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(tail.size()));
  ASSERT_EQ(shutdown(client, SHUT_WR), 0);
  const std::string want = prefix + "!" + after + tail;
  const std::string got = read_all_of(server, want.size() + 1);
  EXPECT_EQ(got.size(), want.size()) << "bytes after the urgent mark were stalled or lost";
  EXPECT_TRUE(got == want) << "the stream differs from what the client sent";
}

TEST(ForwardTcp, UrgentDataIsForwardedInItsPlaceAndNothingAfterItStalls) {
  // TCP urgent data (telnet's interrupt, FTP's ABOR): recv() stops short at
  // the mark, and splice() cannot pass it. The worker forwards the urgent
  // byte inline and keeps reading through it; a short read there is neither
  // the end of the bytes queued nor the FIN.
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_with(d, "127.0.0.1/18080:18000");
  // The copy path, many times: the urgent segment and the bytes behind it
  // arrive in varying slices.
  for (int i = 0; i < 30 && !testing::Test::HasFailure(); ++i) {
    auto [client, conn] = connect_through(target.get(), "127.0.0.1", 5);
    ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
    expect_urgent_byte_in_place(client.get(), conn.get(), std::string(100, 'A'), "");
  }
  // The splice path: 512 KiB first, then the urgent byte and more.
  auto [client, conn] = connect_through(target.get(), "127.0.0.1", 5);
  ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
  std::string bulk(512 * 1024, 'A');
  for (size_t i = 0; i < bulk.size(); i += 4096) bulk[i] = static_cast<char>('a' + i % 26);
  std::thread reader([&] {
    // Reads the bulk as it comes, so the client's sends never block for long.
    std::string got(bulk.size(), '\0');
    EXPECT_EQ(recv(conn.get(), got.data(), got.size(), MSG_WAITALL),
              static_cast<ssize_t>(bulk.size()));
    EXPECT_TRUE(got == bulk);
  });
  ASSERT_EQ(send(client.get(), bulk.data(), bulk.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bulk.size()));
  reader.join();
  expect_urgent_byte_in_place(client.get(), conn.get(), std::string(100, 'A'),
                              std::string(3000, 'C'));
}

TEST(ForwardTcp, AResetAfterTheClientsFinReachesTheTarget) {
  // The client half-closes, the target reads the end, and then the client
  // aborts: its reset comes after its own FIN, when the worker has no read
  // of that side left to meet it. The target must learn of it, not keep a
  // connection that only its next write would find dead.
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_with(d, "127.0.0.1/18080:18000");
  auto [client, conn] = connect_through(target.get(), "127.0.0.1", 10);
  ASSERT_TRUE(client.valid() && conn.valid()) << d.log();
  ASSERT_EQ(send(client.get(), "request", 7, MSG_NOSIGNAL), 7);
  ASSERT_EQ(shutdown(client.get(), SHUT_WR), 0);
  EXPECT_EQ(read_all_of(conn.get(), 100), "request");  // then the FIN
  reset_close(client);
  bool reset = false;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int i = 0; i < 100 && !reset && std::chrono::steady_clock::now() < end; ++i) {
    struct pollfd p = {conn.get(), POLLIN, 0};
    if (poll(&p, 1, 100) > 0 && (p.revents & POLLERR) != 0) reset = true;
    if (!reset) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(reset) << "the target never saw the client's reset";
}

}  // namespace
}  // namespace sluice::test
