// Data through a forwarded port, end to end: the real sluiced and worker in
// the test's own network namespace, a real target server, real sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;
constexpr uint16_t kListenPort = 18080;
// Bytes each way: 256 MiB in the optimised build, as the data-path issue asks.
// Under the sanitizers (a Debug build that also hashes every byte with our
// unoptimised SHA-256) 16 MiB proves the same things, 64 refills of a
// 256 KiB pipe each way and the half-close order, in a time that does not
// depend on how busy the machine is; 256 MiB there took over 100 s.
#ifdef SLUICE_SANITIZE
constexpr size_t kBig = 16u << 20;
#else
constexpr size_t kBig = 256u << 20;
#endif

/// Starts sluiced forwarding 127.0.0.1:kListenPort to kTargetPort and waits for it.
void start_forwarder(Daemon& d) {
  d.start({"-t", "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

TEST(Forward, BulkBothWaysWithHalfClose) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_forwarder(d);

  // The target reads the client's whole stream, and only after the client's
  // FIN arrives (half-close) sends its own kBig bytes back on the same connection.
  Sha256Digest target_got{};
  size_t target_bytes = 0;
  Sha256Digest target_sent{};
  std::thread server([&] {
    UniqueFd conn = accept_one(target.get());
    ASSERT_TRUE(conn.valid());
    target_got = receive_all(conn.get(), &target_bytes);
    target_sent = send_stream(conn.get(), 2, kBig);
  });
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort);
  ASSERT_TRUE(client.valid()) << d.log();
  Sha256Digest client_sent = send_stream(client.get(), 1, kBig);
  ASSERT_EQ(shutdown(client.get(), SHUT_WR), 0);
  size_t client_bytes = 0;
  Sha256Digest client_got = receive_all(client.get(), &client_bytes);
  server.join();

  EXPECT_EQ(target_bytes, kBig);
  EXPECT_EQ(target_got, client_sent);
  EXPECT_EQ(client_sent, stream_digest(1, kBig));
  EXPECT_EQ(client_bytes, kBig);
  EXPECT_EQ(client_got, target_sent);
  EXPECT_EQ(target_sent, stream_digest(2, kBig));
}

TEST(Forward, ConcurrentTransfersStayIntact) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_forwarder(d);
  constexpr int kConns = 16;
  constexpr size_t kSize = 2u << 20;
  // Echo server: every connection gets its own bytes back.
  std::thread server([&] {
    std::vector<std::thread> echo;
    for (int i = 0; i < kConns; ++i) {
      UniqueFd conn = accept_one(target.get());
      if (!conn.valid()) break;
      echo.emplace_back([fd = std::move(conn)]() mutable {
        std::vector<char> buf(65536);
        for (;;) {
          ssize_t n = recv(fd.get(), buf.data(), buf.size(), 0);
          if (n <= 0) break;
          if (send(fd.get(), buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
        }
        shutdown(fd.get(), SHUT_WR);
      });
    }
    for (auto& t : echo) t.join();
  });
  std::vector<std::thread> clients;
  std::vector<int> ok(kConns, 0);
  for (int i = 0; i < kConns; ++i) {
    clients.emplace_back([&, i] {
      UniqueFd c = connect_tcp("127.0.0.1", kListenPort);
      if (!c.valid()) return;
      Sha256Digest got{};
      size_t got_bytes = 0;
      std::thread reader([&] { got = receive_all(c.get(), &got_bytes); });
      Sha256Digest sent = send_stream(c.get(), 100 + static_cast<uint64_t>(i), kSize);
      shutdown(c.get(), SHUT_WR);
      reader.join();
      ok[static_cast<size_t>(i)] = got_bytes == kSize && got == sent;
    });
  }
  for (auto& t : clients) t.join();
  server.join();
  for (int i = 0; i < kConns; ++i) EXPECT_TRUE(ok[static_cast<size_t>(i)]) << "connection " << i;
}

TEST(Forward, RefusedTargetResetsTheClient) {
  // Nothing listens on the target port: the client must see its connection
  // reset, not a silent EOF that looks like an empty answer.
  Daemon d;
  start_forwarder(d);
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort);
  ASSERT_TRUE(client.valid());
  char c;
  ssize_t n = recv(client.get(), &c, 1, 0);
  EXPECT_EQ(n, -1);
  EXPECT_EQ(errno, ECONNRESET);
  // The log names the rule, the port, the errno and what to do.
  EXPECT_TRUE(wait_for_log(d,
                           "TCP [127.0.0.1]:18080 => 18000: connect to port 18000 of the "
                           "target: ECONNREFUSED"))
      << d.log();
  EXPECT_NE(d.log().find("nothing listens there: start the server"), std::string::npos) << d.log();
}

/// The local port of the socket `fd`.
uint16_t port_of(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) return 0;
  return ntohs(reinterpret_cast<struct sockaddr_in*>(&ss)->sin_port);
}

TEST(Forward, TheConnectionLogHasALineForEveryConnectionAndFlow) {
  // --log-connections: a line for each TCP connection when it ends (client
  // address and port, rule, duration, bytes each way, how it ended), one for
  // a connection the target refused, and one for each UDP flow.
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  UdpEcho echo("127.0.0.1", 18053, "e");
  Daemon d;
  d.start({"--log-connections", "--udp-idle-timeout", "1", "-t",
           "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort), "-t",
           "127.0.0.1/18081:18001", "-u", "127.0.0.1/18153:18053"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const std::string rule = "TCP [127.0.0.1]:18080 => 18000: connection from 127.0.0.1:";

  // The client sends 5 bytes, the target answers 11 and closes first.
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort);
  ASSERT_TRUE(client.valid());
  const uint16_t client_port = port_of(client.get());
  UniqueFd server = accept_one(target.get());
  ASSERT_TRUE(server.valid());
  ASSERT_EQ(send(client.get(), "hello", 5, MSG_NOSIGNAL), 5);
  char buf[64];
  ASSERT_EQ(recv(server.get(), buf, sizeof(buf), 0), 5);
  ASSERT_EQ(send(server.get(), "hello there", 11, MSG_NOSIGNAL), 11);
  server.reset();
  size_t got = 0;
  for (ssize_t n; (n = recv(client.get(), buf, sizeof(buf), 0)) > 0;) got += static_cast<size_t>(n);
  EXPECT_EQ(got, 11u);
  client.reset();
  const std::string line = rule + std::to_string(client_port) + " to port 18000 ended after ";
  ASSERT_TRUE(wait_for_log(d, line)) << d.log();
  const std::string log = d.log();
  const std::string rest = log.substr(log.find(line) + line.size());
  EXPECT_EQ(rest.substr(rest.find(" s, "), rest.find('\n') - rest.find(" s, ")),
            " s, 5 bytes to the target and 11 to the client: the target closed first")
      << log;

  // Nothing listens on 18001: the target refuses.
  const ConnectionEnd refused = connect_then_end("127.0.0.1", "127.0.0.1", 18081);
  ASSERT_TRUE(refused.connected) << std::strerror(refused.err);
  EXPECT_TRUE(wait_for_log(d, "TCP [127.0.0.1]:18081 => 18001: connection from 127.0.0.1:" +
                                  std::to_string(refused.local_port) +
                                  " to port 18001 ended after "))
      << d.log();
  EXPECT_TRUE(wait_for_log(d, " to the client: the target refused it: ECONNREFUSED")) << d.log();

  // A UDP flow of two datagrams each way, ended by --udp-idle-timeout.
  UniqueFd udp = bind_udp("127.0.0.1");
  for (const char* payload : {"one", "two"}) {
    ASSERT_TRUE(send_udp(udp.get(), "127.0.0.1", 18153, payload));
    ASSERT_TRUE(await_reply(udp.get(), payload, 5000).ok) << d.log();
  }
  EXPECT_TRUE(wait_for_log(d, "UDP [127.0.0.1]:18153 => 18053: flow from 127.0.0.1:" +
                                  std::to_string(local_port(udp.get())) + " ended after "))
      << d.log();
  EXPECT_TRUE(wait_for_log(d, " 2 datagrams (6 bytes) to the target and 2 (")) << d.log();
  EXPECT_TRUE(wait_for_log(d, " to the client: idle for --udp-idle-timeout")) << d.log();
  // sluicectl --stats says that the log is on, and that no line was dropped.
  const RunResult stats = d.ctl({"--stats", "--json"});
  EXPECT_NE(stats.out.find("\"logLinesDropped\":0,\"connectionLog\":true"), std::string::npos)
      << stats.out;
}

TEST(Forward, TheConnectionLogSaysWhoClosedFirstAndWhatWasOpenWhenTheWorkerStopped) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  UdpEcho echo("127.0.0.1", 18053, "e");
  Daemon d;
  d.start({"--log-connections", "-t",
           "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort), "-t",
           "127.0.0.1/18082:198.51.100.1/18002", "-u", "127.0.0.1/18153:18053"});
  ASSERT_TRUE(d.wait_ready()) << d.log();

  // The target sends more than the client takes in, and finishes; its FIN
  // reaches sluice behind bytes the client has not read yet. The client
  // finishes after that, then reads everything: the target closed first.
  UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int small = 16384;
  ASSERT_EQ(setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  struct sockaddr_storage ss;
  socklen_t len = make_addr("127.0.0.1", kListenPort, &ss);
  ASSERT_EQ(connect(client.get(), reinterpret_cast<struct sockaddr*>(&ss), len), 0);
  const uint16_t client_port = port_of(client.get());
  UniqueFd server = accept_one(target.get());
  ASSERT_TRUE(server.valid());
  const std::string chunk(1 << 20, 'x');
  ASSERT_EQ(send(server.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(chunk.size()));
  ASSERT_EQ(shutdown(server.get(), SHUT_WR), 0);
  // Bounded: until sluice's side acknowledged the FIN (FIN_WAIT2).
  bool acked = false;
  for (int i = 0; i < 500 && !acked; ++i) {
    struct tcp_info info {};
    socklen_t ilen = sizeof(info);
    acked = getsockopt(server.get(), IPPROTO_TCP, TCP_INFO, &info, &ilen) == 0 &&
            info.tcpi_state == TCP_FIN_WAIT2;
    if (!acked) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(acked) << "sluice did not acknowledge the target's FIN";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // its event reaches the worker
  ASSERT_EQ(shutdown(client.get(), SHUT_WR), 0);
  char buf[65536];
  size_t got = 0;
  for (ssize_t n; (n = recv(client.get(), buf, sizeof(buf), 0)) > 0;) got += static_cast<size_t>(n);
  EXPECT_EQ(got, chunk.size());
  client.reset();
  server.reset();
  EXPECT_TRUE(wait_for_log(d, "connection from 127.0.0.1:" + std::to_string(client_port) +
                                  " to port 18000 ended after "))
      << d.log();
  EXPECT_TRUE(wait_for_log(d,
                           " bytes to the target and 1048576 to the client: the target closed "
                           "first"))
      << d.log();

  // A target this namespace has no route to (198.51.100.1: no test gives lo
  // that address; RuleCheck gives it 192.0.2.1): not a refusal.
  ASSERT_TRUE(connect_then_end("127.0.0.1", "127.0.0.1", 18082).connected);
  EXPECT_TRUE(wait_for_log(d, "to port 18002 ended after "));
  EXPECT_TRUE(wait_for_log(d, "could not connect to the target: ENETUNREACH")) << d.log();

  // A connection and a flow still open when the worker stops.
  UniqueFd open = connect_tcp("127.0.0.1", kListenPort);
  ASSERT_TRUE(open.valid());
  UniqueFd open_server = accept_one(target.get());
  ASSERT_TRUE(open_server.valid());
  UniqueFd udp = bind_udp("127.0.0.1");
  ASSERT_TRUE(send_udp(udp.get(), "127.0.0.1", 18153, "ping"));
  ASSERT_TRUE(await_reply(udp.get(), "ping", 5000).ok) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
  const std::string log = d.log();
  EXPECT_NE(log.find("connection from 127.0.0.1:" + std::to_string(port_of(open.get())) +
                     " to port 18000 ended after "),
            std::string::npos)
      << log;
  EXPECT_EQ(count_of(log, ": still open when the worker stopped"), 2u) << log;
  EXPECT_NE(
      log.find("flow from 127.0.0.1:" + std::to_string(local_port(udp.get())) + " ended after "),
      std::string::npos)
      << log;
}

TEST(Forward, WithoutTheConnectionLogConnectionsAreNotLogged) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"-t", "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort),
           "-t", "127.0.0.1/18081:18001"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  expect_forwarding(target.get(), kListenPort, d);
  // Then one the target refuses, whose warning is logged either way: the
  // worker has handled the first connection's end by then.
  ASSERT_TRUE(connect_then_end("127.0.0.1", "127.0.0.1", 18081).connected);
  ASSERT_TRUE(wait_for_log(d, "connect to port 18001 of the target: ECONNREFUSED")) << d.log();
  EXPECT_EQ(d.log().find("connection from"), std::string::npos) << d.log();
}

TEST(Forward, SluicectlListsTheRulesInPestoFormat) {
  Daemon d;
  start_forwarder(d);
  RunResult r = d.ctl();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("HOST\n    TCP [127.0.0.1]:18080 => 18000\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("generation 1, digest "), std::string::npos) << r.out;
}

TEST(Forward, DefaultRulesWhenNoneAreGiven) {
  Daemon d;
  d.start({});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult r = d.ctl();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("TCP [127.0.0.1]:8080 => 8000"), std::string::npos) << r.out;
}

TEST(Forward, GarbageOnTheControlSocketDropsOnlyThatClient) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  start_forwarder(d);
  // A frame header claiming 2^32 segments, then random bytes.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", d.socket_path().c_str());
  ASSERT_EQ(connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const unsigned char evil[16] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  ASSERT_EQ(send(fd, evil, sizeof(evil), MSG_NOSIGNAL), 16);
  // The server answers (hello, then an error) and closes: read until EOF.
  char buf[4096];
  size_t total = 0;
  for (int i = 0; i < 100; ++i) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      EXPECT_EQ(n, 0) << "expected an orderly close, got " << std::strerror(errno);
      break;
    }
    total += static_cast<size_t>(n);
  }
  close(fd);
  EXPECT_GT(total, 0u);
  EXPECT_NE(d.log().find("segments"), std::string::npos) << d.log();
  // Still serving the control socket and still forwarding.
  EXPECT_EQ(d.ctl().status, 0);
  std::thread server([&] {
    UniqueFd conn = accept_one(target.get());
    if (conn.valid()) send_stream(conn.get(), 9, 4096);
  });
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort);
  size_t n = 0;
  Sha256Digest got = receive_all(client.get(), &n);
  server.join();
  EXPECT_EQ(n, 4096u);
  EXPECT_EQ(got, stream_digest(9, 4096));
}

}  // namespace
}  // namespace sluice::test
