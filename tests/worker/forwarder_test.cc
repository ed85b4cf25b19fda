// The TCP data path with a real event loop: the pipe pool (pipes are enlarged
// to the configured size while they fit in the page budget, keep the kernel's
// size beyond it, give their pages back when closed, and are reused), and a
// closing listener, which takes no new connection between its drain and its
// close, on real loopback sockets; and a connection that copies its first
// bytes, splices once long, and keeps its streams, counters and half-close.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "worker/forwarder.h"

namespace sluice {
namespace {

/// A forwarder on its own loop with `limits`.
struct Fixture {
  explicit Fixture(ForwarderLimits limits) : loop(EventLoop::create()) {
    EXPECT_TRUE(loop.ok());
    forwarder = std::make_unique<Forwarder>(**loop, limits);
  }
  Result<std::unique_ptr<EventLoop>> loop;
  std::unique_ptr<Forwarder> forwarder;
};

/// The size of `pipe` in bytes.
int pipe_size(const Pipe& pipe) {
  return fcntl(pipe.write_end.get(), F_GETPIPE_SZ);
}

TEST(ConnectFailure, NamesRulePortErrnoAndWhatToDo) {
  Route route;
  route.first = 8000;
  route.to = 9000;
  route.text = "TCP [*]:8000-8099 => 9000-9099";
  EXPECT_EQ(route_target_port(route, 8042), 9042);
  const std::string refused = describe_connect_failure(route, 9042, ECONNREFUSED);
  EXPECT_EQ(refused.rfind("TCP [*]:8000-8099 => 9000-9099: connect to port 9042 of the target: "
                          "ECONNREFUSED",
                          0),
            0u)
      << refused;
  EXPECT_NE(refused.find("start the server"), std::string::npos) << refused;
  EXPECT_NE(describe_connect_failure(route, 9000, ENETUNREACH).find("no route"), std::string::npos);
  EXPECT_EQ(describe_connect_failure(route, 9000, EIO).find(';'), std::string::npos);
}

TEST(ConnectFailure, UdpTargetErrorsNameRulePortErrnoAndWhatToDo) {
  Route route;
  route.first = 53;
  route.to = 5353;
  route.text = "UDP [*]:53 => 5353";
  EXPECT_EQ(describe_udp_target_error(route, 5353, ECONNREFUSED),
            "UDP [*]:53 => 5353: datagrams to port 5353 of the target are answered with an error: "
            "ECONNREFUSED (Connection refused); nothing listens there: start the server, or "
            "correct the rule's target (sluicectl --stats counts these as target errors; the "
            "clients get no answer)");
  EXPECT_NE(describe_udp_target_error(route, 5353, EHOSTUNREACH).find("no route"),
            std::string::npos);
}

TEST(PipePool, PipesAreEnlargedWithinTheBudgetOnly) {
  ForwarderLimits limits;
  limits.pipe_size = 256 * 1024;   // 48 pages above the kernel's 64 KiB
  limits.pipe_pages_budget = 100;  // room for two enlarged pipes
  Fixture f(limits);
  std::vector<Pipe> held;
  for (int i = 0; i < 3; ++i) {
    auto p = f.forwarder->take_pipe();
    ASSERT_TRUE(p.ok()) << p.error().message;
    held.push_back(std::move(*p));
  }
  EXPECT_EQ(pipe_size(held[0]), 256 * 1024);
  EXPECT_EQ(pipe_size(held[1]), 256 * 1024);
  EXPECT_EQ(pipe_size(held[2]), 65536);  // over the budget: the kernel's size
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 96u);
  EXPECT_EQ(held[2].extra_pages, 0u);
}

TEST(PipePool, ClosedPipesGiveTheirPagesBackAndEmptyOnesAreReused) {
  ForwarderLimits limits;
  limits.pipe_size = 128 * 1024;  // 16 extra pages
  limits.max_idle_pipes = 1;
  Fixture f(limits);
  auto a = f.forwarder->take_pipe();
  auto b = f.forwarder->take_pipe();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 32u);
  const int a_fd = a->read_end.get();
  f.forwarder->give_pipe(std::move(*a));  // pooled: its pages stay counted
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 32u);
  f.forwarder->give_pipe(std::move(*b));  // the pool is full: closed
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 16u);
  auto again = f.forwarder->take_pipe();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->read_end.get(), a_fd);  // the pooled pipe, no new one
  // A pipe that still holds bytes is never pooled: its data would leak into
  // another connection.
  ASSERT_EQ(write(again->write_end.get(), "x", 1), 1);
  again->bytes = 1;
  f.forwarder->give_pipe(std::move(*again));
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 0u);
}

TEST(PipePool, KernelSizeWhenNotAsked) {
  ForwarderLimits limits;
  limits.pipe_size = 65536;
  Fixture f(limits);
  auto p = f.forwarder->take_pipe();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(pipe_size(*p), 65536);
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 0u);
}

/// A loopback address and port, IPv4 or IPv6.
struct Where {
  int family = AF_INET;
  uint16_t port = 0;
};

/// Fills `ss` with the loopback address of `w.family` and `w.port`; returns its length.
socklen_t loopback(const Where& w, struct sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof(*ss));
  if (w.family == AF_INET) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(w.port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*sin);
  }
  auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(w.port);
  sin6->sin6_addr = in6addr_loopback;
  return sizeof(*sin6);
}

/// A non-blocking listening socket on loopback of `family` (with
/// `dual_stack`, [::] accepting IPv4 too) on a port the kernel picks, which
/// goes to `*port`; invalid when the host lacks that family.
UniqueFd listen_loopback(int family, bool dual_stack, uint16_t* port) {
  UniqueFd fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  struct sockaddr_storage ss;
  socklen_t len = loopback(Where{family, 0}, &ss);
  if (family == AF_INET6) {
    int v6only = dual_stack ? 0 : 1;
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    if (dual_stack) reinterpret_cast<struct sockaddr_in6*>(&ss)->sin6_addr = in6addr_any;
  }
  if (bind(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len) != 0 ||
      listen(fd.get(), SOMAXCONN) != 0 ||
      getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) {
    return UniqueFd();
  }
  *port = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<struct sockaddr_in*>(&ss)->sin_port
                                        : reinterpret_cast<struct sockaddr_in6*>(&ss)->sin6_port);
  return fd;
}

/// A blocking connection to `w` that gives up after `timeout_ms` (a SYN
/// without an answer), sending with `ttl` (IPv4 TTL or IPv6 hop limit) when
/// not 0; invalid on failure, with errno set.
UniqueFd connect_to(const Where& w, int timeout_ms, int ttl = 0) {
  UniqueFd fd(socket(w.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (ttl != 0 && w.family == AF_INET) setsockopt(fd.get(), IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl));
  if (ttl != 0 && w.family == AF_INET6) {
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof(ttl));
  }
  struct sockaddr_storage ss;
  socklen_t len = loopback(w, &ss);
  if (connect(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len) != 0) return UniqueFd();
  return fd;
}

/// What a client read, non-blocking: its bytes, and whether it saw a reset.
struct Received {
  std::string bytes;
  bool reset = false;
  bool eof = false;
  /// Reads what is there now from `fd`.
  void read_from(int fd) {
    char buf[256];
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        bytes.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) eof = true;
      if (n < 0 && errno == ECONNRESET) reset = true;
      return;
    }
  }
};

/// A target on loopback: it greets each connection with "hello", then echoes
/// what it receives. It works only when serve() is called (single-threaded).
class Target {
 public:
  /// Listens on loopback of `family` (with `dual_stack`, on [::] for both
  /// families); `port()` is 0 when it could not.
  explicit Target(int family, bool dual_stack = false)
      : listener_(listen_loopback(family, dual_stack, &port_)) {}
  /// The port it listens on (0: none).
  uint16_t port() const { return port_; }
  /// Accepts and greets new connections, and echoes what arrived.
  void serve() {
    for (;;) {
      int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      send(fd, "hello", 5, MSG_NOSIGNAL);
      conns_.emplace_back(fd);
    }
    for (const UniqueFd& c : conns_) {
      char buf[256];
      ssize_t n = recv(c.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) send(c.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL);
    }
  }

 private:
  uint16_t port_ = 0;
  UniqueFd listener_;
  std::vector<UniqueFd> conns_;
};

/// Turns `loop` and serves `target` until `done` or 5 s; true when done.
bool turn_until(EventLoop& loop, Target& target, const std::function<bool()>& done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    loop.run_once(5);
    target.serve();
  }
  return true;
}

/// A forwarder with one TCP listener on loopback of `family` (dual-stack
/// [::] with `dual_stack`) whose connections go to `target`.
struct ListenerFixture {
  /// Sets it up; `listener` is null (and the test skipped by the caller)
  /// when the host lacks the family.
  ListenerFixture(int family, bool dual_stack, const Target& target) : f(ForwarderLimits{}) {
    UniqueFd fd = listen_loopback(family, dual_stack, &port);
    if (!fd.valid() || target.port() == 0) return;
    auto route = std::make_shared<Route>();
    route->first = port;
    route->to = target.port();
    route->text = "test rule";
    auto added = f.forwarder->add_tcp_listener(std::move(fd), port, route);
    EXPECT_TRUE(added.ok());
    if (added.ok()) listener = *added;
  }
  Fixture f;
  uint16_t port = 0;
  TcpListener* listener = nullptr;  // owned by the forwarder; gone after release()
};

/// Checks, for a listener of `family` (`dual_stack`: [::] also taking IPv4)
/// and clients of `client_families`, that a client queued before the drain
/// is served, that no handshake completes between the drain and the close
/// (the close would reset it), and that the closed port refuses.
void check_nothing_joins_between_drain_and_close(int family, bool dual_stack,
                                                 std::vector<int> client_families) {
  Target target(family, dual_stack);  // forwarded to loopback of the client's own family
  ListenerFixture lf(family, dual_stack, target);
  if (lf.listener == nullptr) GTEST_SKIP() << "no loopback of family " << family;
  EventLoop& loop = **lf.f.loop;
  std::vector<UniqueFd> early;
  for (int cf : client_families) {
    early.push_back(connect_to(Where{cf, lf.port}, 2000));  // queued: the loop has not turned
    ASSERT_TRUE(early.back().valid()) << std::strerror(errno);
  }
  lf.listener->drain();
  // The window: drained, not closed yet. A worker paused here by a busy
  // machine used to let the kernel queue every client that came meanwhile,
  // and the close reset them all.
  std::vector<UniqueFd> late;
  for (int cf : client_families) {
    late.push_back(connect_to(Where{cf, lf.port}, 300));
    EXPECT_FALSE(late.back().valid())
        << "family " << cf << ": a handshake completed after the drain; the close resets it";
  }
  lf.listener->release();
  std::vector<Received> got(early.size()), got_late(late.size());
  EXPECT_TRUE(turn_until(loop, target, [&] {
    bool all = true;
    for (size_t i = 0; i < early.size(); ++i) {
      got[i].read_from(early[i].get());
      all = all && got[i].bytes == "hello";
    }
    return all;
  }));
  for (size_t i = 0; i < early.size(); ++i) {
    EXPECT_EQ(got[i].bytes, "hello") << "queued client " << i << " reset " << got[i].reset;
  }
  for (size_t i = 0; i < late.size(); ++i) {
    if (!late[i].valid()) continue;
    got_late[i].read_from(late[i].get());
    EXPECT_FALSE(got_late[i].reset) << "client " << i << " was accepted by the kernel, then reset";
  }
  for (int cf : client_families) {
    EXPECT_FALSE(connect_to(Where{cf, lf.port}, 2000).valid());
    EXPECT_EQ(errno, ECONNREFUSED) << "family " << cf << ": the closed port should refuse";
  }
}

TEST(TcpListenerClose, NothingJoinsTheQueueBetweenTheDrainAndTheCloseIPv4) {
  check_nothing_joins_between_drain_and_close(AF_INET, false, {AF_INET});
}

TEST(TcpListenerClose, NothingJoinsTheQueueBetweenTheDrainAndTheCloseDualStack) {
  check_nothing_joins_between_drain_and_close(AF_INET6, true, {AF_INET, AF_INET6});
}

TEST(TcpListenerClose, ConnectionsAcceptedAfterTheStopGetTheirPacketsBack) {
  // The TTL floor that stops a listener is inherited by connections the
  // kernel completes after it: a client on the same link sending with TTL 255
  // still gets through (the documented limit), and its connection must then
  // carry the client's ordinary packets, so the drain takes the floor off.
  Target target(AF_INET);
  ListenerFixture lf(AF_INET, false, target);
  ASSERT_NE(lf.listener, nullptr);
  EventLoop& loop = **lf.f.loop;
  ASSERT_TRUE(lf.listener->stop_new_connections());
  EXPECT_FALSE(connect_to(Where{AF_INET, lf.port}, 300).valid()) << "TTL 64 is stopped";
  UniqueFd client = connect_to(Where{AF_INET, lf.port}, 2000, 255);
  ASSERT_TRUE(client.valid()) << std::strerror(errno);
  int ttl = 64;
  ASSERT_EQ(setsockopt(client.get(), IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)), 0);
  lf.listener->drain();
  lf.listener->release();
  ASSERT_EQ(send(client.get(), "ping", 4, MSG_NOSIGNAL), 4);
  Received got;
  EXPECT_TRUE(turn_until(loop, target,
                         [&] {
                           got.read_from(client.get());
                           return got.bytes == "helloping" || got.reset || got.eof;
                         }))
      << "received \"" << got.bytes << "\"";
  EXPECT_EQ(got.bytes, "helloping");
}

/// A target that takes one connection and moves bulk bytes: it reads all
/// that arrives, and writes what it was given to send, without blocking.
class BulkTarget {
 public:
  /// With `rcvbuf`, its connection gets that small a receive buffer, so the
  /// forwarder's sends to it fill up at once.
  explicit BulkTarget(int rcvbuf = 0) : listener_(listen_loopback(AF_INET, false, &port_)) {
    if (rcvbuf != 0) setsockopt(listener_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  uint16_t port() const { return port_; }
  /// Accepts the connection, reads what arrived, sends what it can.
  void serve() {
    if (!conn_.valid()) conn_.reset(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK));
    if (!conn_.valid() || paused) return;
    char buf[65536];
    for (;;) {
      ssize_t n = recv(conn_.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0) eof = true;
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    while (sent_ < to_send.size()) {
      ssize_t n = send(conn_.get(), to_send.data() + sent_, to_send.size() - sent_,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) break;
      sent_ += static_cast<size_t>(n);
    }
  }
  /// True when everything of `to_send` went out.
  bool all_sent() const { return sent_ == to_send.size(); }
  /// Closes the connection (a FIN, or a reset with unread bytes).
  void close() { conn_.reset(); }

  std::string got;      // bytes received
  bool eof = false;     // the forwarder forwarded the client's FIN
  std::string to_send;  // bytes to send to the client
  bool paused = false;  // reads and sends nothing

 private:
  uint16_t port_ = 0;
  UniqueFd listener_;
  UniqueFd conn_;
  size_t sent_ = 0;
};

/// `n` bytes of a pattern that shows reordering and loss.
std::string pattern(size_t n, char salt) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 4093 + salt) & 0xff);
  return s;
}

/// A forwarder on its own loop with one listener to `target`, and a
/// connected non-blocking client.
struct TransferFixture {
  /// Sets it up; `client` is invalid on failure.
  /// With `copy_only`, the connection never switches to splice.
  explicit TransferFixture(BulkTarget& t, bool copy_only = false)
      : target(t), f(limits(copy_only)) {
    uint16_t port = 0;
    UniqueFd lfd = listen_loopback(AF_INET, false, &port);
    auto route = std::make_shared<Route>();
    route->first = port;
    route->to = target.port();
    route->text = "test rule";
    if (!f.forwarder->add_tcp_listener(std::move(lfd), port, route).ok()) return;
    client = connect_to(Where{AF_INET, port}, 2000);
    if (client.valid()) fcntl(client.get(), F_SETFL, O_NONBLOCK);
  }
  /// The default limits, or (`copy_only`) ones that never splice.
  static ForwarderLimits limits(bool copy_only) {
    ForwarderLimits l;
    if (copy_only) l.splice_after_bytes = UINT64_MAX;
    return l;
  }
  /// Turns the loop and serves the target until `done` or 10 s; true when done.
  bool turn(const std::function<bool()>& done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < until) {
      (*f.loop)->run_once(2);
      target.serve();
    }
    return done();
  }
  BulkTarget& target;
  Fixture f;
  UniqueFd client;
};

TEST(TcpTransfer, AFullTargetHoldsTheCopiedRestAndTheClientWaits) {
  BulkTarget target(4096);
  ASSERT_NE(target.port(), 0);
  // Copy only, so that a long stream stays on the copy path: its sends to
  // the paused target come back short, and the rest is held.
  TransferFixture tf(target, true);
  ASSERT_TRUE(tf.client.valid()) << std::strerror(errno);
  target.paused = true;
  const std::string up = pattern(16 << 20, 3);
  size_t up_sent = 0;
  // Sends what the client socket takes now.
  auto push = [&] {
    while (up_sent < up.size()) {
      ssize_t n = send(tf.client.get(), up.data() + up_sent, up.size() - up_sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      up_sent += static_cast<size_t>(n);
    }
  };
  int turns = 0;
  tf.turn([&] {
    push();
    return ++turns > 200;
  });
  EXPECT_LT(up_sent, up.size()) << "back-pressure: a paused target must stop the client";
  EXPECT_LT(tf.f.forwarder->counters().bytes_to_target, up_sent);
  target.paused = false;
  ASSERT_TRUE(tf.turn([&] {
    push();
    return target.got.size() == up.size();
  })) << "got "
      << target.got.size();
  EXPECT_TRUE(target.got == up) << "the held bytes went out altered or out of order";
  EXPECT_EQ(tf.f.forwarder->counters().bytes_to_target, up.size());
  EXPECT_EQ(tf.f.forwarder->idle_pipes(), 0u) << "the copy path takes no pipe";
}

TEST(TcpTransfer, AKeptAliveConnectionOfSmallMessagesNeverTakesAPipe) {
  // A request/response connection carries many small messages: past
  // kSpliceAfterBytes in all, but no read ever fills the copy buffer, so it
  // keeps the copy path (the latency benchmark's 64-byte ping-pong).
  BulkTarget target;
  ASSERT_NE(target.port(), 0);
  TransferFixture t(target);
  ASSERT_TRUE(t.client.valid()) << std::strerror(errno);
  const std::string message(64, 'm');
  const size_t rounds = kSpliceAfterBytes / message.size() + 100;
  for (size_t i = 0; i < rounds; ++i) {
    ASSERT_EQ(send(t.client.get(), message.data(), message.size(), MSG_NOSIGNAL), 64);
    ASSERT_TRUE(t.turn([&] { return target.got.size() == (i + 1) * message.size(); }))
        << "message " << i;
  }
  EXPECT_GT(t.f.forwarder->counters().bytes_to_target, kSpliceAfterBytes);
  EXPECT_EQ(t.f.forwarder->idle_pipes(), 0u) << "small messages should never splice";
}

TEST(TcpTransfer, ShortExchangesCopyWithoutAPipeAndLongStreamsSpliceIntact) {
  BulkTarget target;
  ASSERT_NE(target.port(), 0);
  TransferFixture t(target);
  ASSERT_TRUE(t.client.valid()) << std::strerror(errno);
  Fixture& f = t.f;
  UniqueFd& client = t.client;
  auto turn = [&](const std::function<bool()>& done) { return t.turn(done); };

  // A short request: copied, no pipe taken.
  ASSERT_EQ(send(client.get(), "request", 7, MSG_NOSIGNAL), 7);
  ASSERT_TRUE(turn([&] { return target.got == "request"; }));
  EXPECT_EQ(f.forwarder->idle_pipes(), 0u) << "a short exchange should take no pipe";

  // A long stream each way: the first bytes copied, the rest spliced, in order.
  const std::string up = pattern(3 << 20, 1);
  target.to_send = pattern(3 << 20, 2);
  size_t up_sent = 0;
  std::string down;
  ASSERT_TRUE(turn([&] {
    while (up_sent < up.size()) {
      ssize_t n = send(client.get(), up.data() + up_sent, up.size() - up_sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      up_sent += static_cast<size_t>(n);
    }
    Received r;
    r.read_from(client.get());
    down += r.bytes;
    return target.got.size() == 7 + up.size() && down.size() == target.to_send.size();
  })) << "up "
      << target.got.size() << " down " << down.size();
  EXPECT_TRUE(target.got.substr(7) == up) << "the client's stream arrived altered";
  EXPECT_TRUE(down == target.to_send) << "the target's stream arrived altered";
  EXPECT_EQ(f.forwarder->counters().bytes_to_target, 7 + up.size());
  EXPECT_EQ(f.forwarder->counters().bytes_to_client, target.to_send.size());
  EXPECT_GE(f.forwarder->idle_pipes(), 1u) << "the long stream should have spliced";

  // Half-close: the client's FIN reaches the target, which can still answer.
  ASSERT_EQ(shutdown(client.get(), SHUT_WR), 0);
  ASSERT_TRUE(turn([&] { return target.eof; }));
  target.to_send += "bye";
  Received tail;
  ASSERT_TRUE(turn([&] {
    tail.read_from(client.get());
    return tail.bytes == "bye";
  }));
  target.close();
  ASSERT_TRUE(turn([&] {
    tail.read_from(client.get());
    return tail.eof || tail.reset;
  }));
  EXPECT_TRUE(tail.eof && !tail.reset) << "an orderly close should reach the client as a FIN";
  EXPECT_TRUE(turn([&] { return f.forwarder->counters().active == 0; }));
}

}  // namespace
}  // namespace sluice
