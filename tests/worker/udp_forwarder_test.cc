// The UDP data path with a real event loop and real loopback sockets, but no
// broker and no sandbox: flows are created per client, counted, limited,
// expired, ended by a commit's endRemovedFlows and by their listener's
// close, and a closing listener forwards what it had queued.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <set>
#include <string>

#include "base/log.h"
#include "base/unique_fd.h"
#include "tests/worker/udp_sockets.h"
#include "worker/udp_forwarder.h"

namespace sluice {
namespace {

/// Sends `text` from `fd` to 127.0.0.1:`port`.
void send_to(int fd, uint16_t port, const std::string& text) {
  struct sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(
      sendto(fd, text.data(), text.size(), 0, reinterpret_cast<struct sockaddr*>(&to), sizeof(to)),
      static_cast<ssize_t>(text.size()));
}

/// Receives one datagram within 2 s; its source port goes to *from_port.
std::string receive(int fd, uint16_t* from_port = nullptr) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1) return "<timeout>";
  char buf[256];
  struct sockaddr_in from;
  socklen_t len = sizeof(from);
  ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<struct sockaddr*>(&from), &len);
  if (n < 0) return "<error>";
  if (from_port != nullptr) *from_port = ntohs(from.sin_port);
  return std::string(buf, static_cast<size_t>(n));
}

class UdpForwarderTest : public ::testing::Test {
 protected:
  /// Runs the loop until `done` holds (at most 500 iterations of 10 ms).
  bool pump(const std::function<bool()>& done) {
    for (int i = 0; i < 500 && !done(); ++i) loop_->run_once(10);
    return done();
  }
  /// Serves `listener` (keyed `addr`) on the forwarder, forwarding to target_.
  UdpListener* serve(UniqueFd listener, Addr addr = addr_v4(127, 0, 0, 1)) {
    ListenerKey key;
    key.proto = Proto::kUdp;
    key.addr = addr;
    key.port = test::udp_port(listener.get());
    auto route =
        std::make_shared<const Route>(Route{Pif::kHost, addr_v4(127, 0, 0, 1), key.port,
                                            test::udp_port(target_.get()), "UDP test rule"});
    auto served = udp_->add_listener(std::move(listener), key, route);
    EXPECT_TRUE(served.ok());
    return served.ok() ? *served : nullptr;
  }
  /// Answers every datagram queued at the target with "re:" + payload.
  void echo_all() {
    for (int i = 0; i < 64; ++i) {
      char buf[256];
      struct sockaddr_in from;
      socklen_t len = sizeof(from);
      ssize_t n = recvfrom(target_.get(), buf, sizeof(buf), MSG_DONTWAIT,
                           reinterpret_cast<struct sockaddr*>(&from), &len);
      if (n < 0) return;
      std::string reply = "re:" + std::string(buf, static_cast<size_t>(n));
      sendto(target_.get(), reply.data(), reply.size(), 0,
             reinterpret_cast<struct sockaddr*>(&from), len);
    }
  }
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    target_ = test::loopback_udp(false);
    UdpLimits limits;
    limits.max_flows = 2;
    limits.idle_timeout_s = 1;
    limits.hash_seed[0] = 1;
    limits.hash_seed[1] = 2;
    udp_ = std::make_unique<UdpForwarder>(*loop_, limits);
    loop_->add_ticker(udp_.get());
  }
  void TearDown() override { udp_.reset(); }

  std::unique_ptr<EventLoop> loop_;
  UniqueFd target_;
  std::unique_ptr<UdpForwarder> udp_;
};

TEST_F(UdpForwarderTest, FlowsAreLimitedCountedAndExpire) {
  UdpListener* listener = serve(test::loopback_udp(true));
  ASSERT_NE(listener, nullptr);
  uint16_t port = listener->port();
  UniqueFd c1 = test::loopback_udp(false), c2 = test::loopback_udp(false),
           c3 = test::loopback_udp(false);
  send_to(c1.get(), port, "1");
  send_to(c2.get(), port, "2");
  const UdpCounters& n = udp_->counters();
  ASSERT_TRUE(pump([&] { return n.to_target == 2; }));
  // The table (2 flows) is full: the third client is dropped and counted.
  send_to(c3.get(), port, "3");
  ASSERT_TRUE(pump([&] { return n.dropped_flow_limit == 1; }));
  EXPECT_EQ(n.flows_created, 2u);
  EXPECT_EQ(n.active, 2u);
  EXPECT_EQ(udp_->flow_count(), 2u);

  echo_all();
  ASSERT_TRUE(pump([&] { return n.to_client == 2; }));
  uint16_t from = 0;
  EXPECT_EQ(receive(c1.get(), &from), "re:1");
  EXPECT_EQ(from, port);  // from the listener, not from the flow socket
  EXPECT_EQ(receive(c2.get(), &from), "re:2");
  EXPECT_EQ(from, port);
  EXPECT_EQ(n.bytes_to_target, 2u);
  EXPECT_EQ(n.bytes_to_client, 8u);

  // A second datagram of a known client takes its flow: no new flow.
  send_to(c1.get(), port, "1b");
  ASSERT_TRUE(pump([&] { return n.to_target == 3; }));
  EXPECT_EQ(n.flows_created, 2u);

  // A tick past the idle timeout expires both; the third client gets in.
  udp_->on_tick(monotonic_ns() + 2000000000ULL);
  EXPECT_EQ(n.flows_expired, 2u);
  EXPECT_EQ(n.active, 0u);
  EXPECT_EQ(udp_->flow_count(), 0u);
  send_to(c3.get(), port, "3b");
  ASSERT_TRUE(pump([&] { return n.to_target == 4; }));
  EXPECT_EQ(n.flows_created, 3u);
  EXPECT_EQ(n.dropped_flow_limit, 1u);
}

TEST_F(UdpForwarderTest, CommitsEndFlows) {
  UdpListener* listener = serve(test::loopback_udp(true));
  ASSERT_NE(listener, nullptr);
  uint16_t port = listener->port();
  UniqueFd c1 = test::loopback_udp(false), c2 = test::loopback_udp(false);
  send_to(c1.get(), port, "a");
  send_to(c2.get(), port, "b");
  const UdpCounters& n = udp_->counters();
  ASSERT_TRUE(pump([&] { return n.to_target == 2; }));
  // endRemovedFlows: only flows of matching rules end.
  EXPECT_EQ(udp_->end_flows([](const Route& r) { return r.text == "another rule"; }), 0u);
  EXPECT_EQ(udp_->end_flows([](const Route& r) { return r.text == "UDP test rule"; }), 2u);
  EXPECT_EQ(n.flows_ended, 2u);
  EXPECT_EQ(n.active, 0u);
  // A closing listener takes its flows with it.
  send_to(c1.get(), port, "c");
  ASSERT_TRUE(pump([&] { return n.to_target == 3; }));
  EXPECT_EQ(n.active, 1u);
  listener->release();
  EXPECT_EQ(n.active, 0u);
  EXPECT_EQ(n.flows_ended, 3u);
  EXPECT_EQ(udp_->listener_count(), 0u);
  loop_->run_once(0);  // frees the retired objects
}

/// A UDP listener socket as sluiced makes one (IP_PKTINFO), bound to
/// `ip`:`port` with SO_REUSEADDR, so that 127.0.0.1:P and 0.0.0.0:P can both
/// be bound, as a rebind's two sockets are while they share the port.
UniqueFd shared_udp(uint32_t ip, uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(fd.get(), IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(ip);
  sin.sin_port = htons(port);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)), 0);
  return fd;
}

/// Reads the next datagram at the target (within 2 s); returns the port
/// it came from (the flow socket's), 0 on timeout, and answers it "re:"+it.
uint16_t answer_one(int target) {
  struct pollfd p = {target, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1) return 0;
  char buf[64];
  struct sockaddr_in from;
  socklen_t len = sizeof(from);
  ssize_t n =
      recvfrom(target, buf, sizeof(buf), 0, reinterpret_cast<struct sockaddr*>(&from), &len);
  if (n < 0) return 0;
  std::string reply = "re:" + std::string(buf, static_cast<size_t>(n));
  sendto(target, reply.data(), reply.size(), 0, reinterpret_cast<struct sockaddr*>(&from), len);
  return ntohs(from.sin_port);
}

// A rebind from 127.0.0.1:P to 0.0.0.0:P. At the hand-over the flow of the
// listener being replaced moves to its successor, which covers its local
// address; while both sockets are bound the kernel still delivers to the
// more specific old one, and those datagrams (of the moved client and of a
// new one) belong to flows of the successor. Replies come from P through
// the new socket, the target sees the same source port throughout, and the
// close of the old socket ends nothing. A successor that does not cover the
// address (another address of the family) takes nothing.
TEST_F(UdpForwarderTest, ARebindHandsTheFlowsToTheListenerThatTakesThePort) {
  UniqueFd first = shared_udp(INADDR_LOOPBACK, 0);
  const uint16_t port = test::udp_port(first.get());
  UdpListener* old_listener = serve(std::move(first));
  ASSERT_NE(old_listener, nullptr);
  UniqueFd a = test::loopback_udp(false), b = test::loopback_udp(false);
  const UdpCounters& n = udp_->counters();
  send_to(a.get(), port, "a1");
  ASSERT_TRUE(pump([&] { return n.to_target == 1; }));
  const uint16_t flow_port = answer_one(target_.get());
  ASSERT_NE(flow_port, 0);
  ASSERT_TRUE(pump([&] { return n.to_client == 1; }));
  EXPECT_EQ(receive(a.get()), "re:a1");

  UdpListener* other = serve(shared_udp(INADDR_LOOPBACK + 1, port), addr_v4(127, 0, 0, 2));
  UdpListener* wide = serve(shared_udp(INADDR_ANY, port), addr_v4(0, 0, 0, 0));
  ASSERT_NE(other, nullptr);
  ASSERT_NE(wide, nullptr);
  udp_->hand_over(old_listener, {other, wide, old_listener});
  EXPECT_EQ(n.flows_moved, 1u);
  EXPECT_TRUE(old_listener->flows.empty());
  EXPECT_EQ(wide->flows.size(), 1u);
  EXPECT_TRUE(other->flows.empty());

  // Both still reach the old socket (127.0.0.1 is more specific than 0.0.0.0).
  send_to(a.get(), port, "a2");
  send_to(b.get(), port, "b1");
  ASSERT_TRUE(pump([&] { return n.to_target == 3; }));
  EXPECT_EQ(n.flows_created, 2u);
  EXPECT_EQ(wide->flows.size(), 2u);
  EXPECT_TRUE(old_listener->flows.empty());
  std::set<uint16_t> seen = {answer_one(target_.get()), answer_one(target_.get())};
  EXPECT_EQ(seen.count(flow_port), 1u) << "the moved client's datagram took a new flow socket";
  ASSERT_TRUE(pump([&] { return n.to_client == 3; }));
  uint16_t from = 0;
  EXPECT_EQ(receive(a.get(), &from), "re:a2");
  EXPECT_EQ(from, port);
  EXPECT_EQ(receive(b.get(), &from), "re:b1");
  EXPECT_EQ(from, port);

  old_listener->release();
  EXPECT_EQ(n.flows_ended, 0u);
  EXPECT_EQ(n.active, 2u);
  send_to(a.get(), port, "a3");  // to the wildcard now
  ASSERT_TRUE(pump([&] { return n.to_target == 4; }));
  EXPECT_EQ(answer_one(target_.get()), flow_port);
  EXPECT_EQ(n.flows_created, 2u);

  // Only 127.0.0.2 is left after the wildcard: nothing covers 127.0.0.1,
  // so its flows end with their listener.
  udp_->hand_over(wide, {other});
  EXPECT_EQ(n.flows_moved, 1u);
  wide->release();
  EXPECT_EQ(n.flows_ended, 2u);
  EXPECT_EQ(n.active, 0u);
  loop_->run_once(0);  // frees the retired objects
}

// A rebind from 0.0.0.0:P to 127.0.0.1:P: the new socket is the more
// specific one, so the kernel hands it the client's next datagram at once,
// before the hand-over. It takes the flow over from its predecessor: the
// same flow socket (the target sees the same source port), no new flow, and
// nothing ends when the old socket closes.
TEST_F(UdpForwarderTest, ARebindThatTheKernelPrefersTakesTheFlowsOverAtOnce) {
  UniqueFd first = shared_udp(INADDR_ANY, 0);
  const uint16_t port = test::udp_port(first.get());
  UdpListener* wide = serve(std::move(first), addr_v4(0, 0, 0, 0));
  ASSERT_NE(wide, nullptr);
  UniqueFd client = test::loopback_udp(false);
  const UdpCounters& n = udp_->counters();
  send_to(client.get(), port, "a1");
  ASSERT_TRUE(pump([&] { return n.to_target == 1; }));
  const uint16_t flow_port = answer_one(target_.get());
  ASSERT_NE(flow_port, 0);
  ASSERT_TRUE(pump([&] { return n.to_client == 1; }));
  EXPECT_EQ(receive(client.get()), "re:a1");

  ListenerKey key;
  key.proto = Proto::kUdp;
  key.addr = addr_v4(127, 0, 0, 1);
  key.port = port;
  auto route = std::make_shared<const Route>(Route{Pif::kHost, addr_v4(127, 0, 0, 1), port,
                                                   test::udp_port(target_.get()), "UDP new rule"});
  auto served = udp_->add_listener(shared_udp(INADDR_LOOPBACK, port), key, route, {wide});
  ASSERT_TRUE(served.ok());
  UdpListener* narrow = *served;
  send_to(client.get(), port, "a2");  // reaches the new, more specific socket
  ASSERT_TRUE(pump([&] { return n.to_target == 2; }));
  EXPECT_EQ(answer_one(target_.get()), flow_port) << "the client got a new flow socket";
  EXPECT_EQ(n.flows_created, 1u);
  EXPECT_EQ(n.flows_moved, 1u);
  EXPECT_EQ(narrow->flows.size(), 1u);
  EXPECT_TRUE(wide->flows.empty());
  ASSERT_TRUE(pump([&] { return n.to_client == 2; }));
  uint16_t from = 0;
  EXPECT_EQ(receive(client.get(), &from), "re:a2");
  EXPECT_EQ(from, port);

  udp_->hand_over(wide, {narrow});
  wide->release();
  EXPECT_EQ(n.flows_ended, 0u);
  EXPECT_EQ(n.active, 1u);
  EXPECT_TRUE(narrow->predecessors.empty()) << "a closed listener is left as a predecessor";
  loop_->run_once(0);  // frees the retired objects
}

TEST_F(UdpForwarderTest, ClosingListenerForwardsWhatItHadQueued) {
  UdpListener* listener = serve(test::loopback_udp(true));
  ASSERT_NE(listener, nullptr);
  uint16_t port = listener->port();
  UniqueFd c1 = test::loopback_udp(false);
  // Queued while the loop does not run (as during a commit's slice).
  for (int i = 0; i < 40; ++i) send_to(c1.get(), port, "q" + std::to_string(i));
  listener->drain();
  EXPECT_EQ(udp_->counters().to_target, 40u);
  listener->release();
  int got = 0;
  char buf[64];
  for (int i = 0; i < 64 && recv(target_.get(), buf, sizeof(buf), MSG_DONTWAIT) > 0; ++i) ++got;
  EXPECT_EQ(got, 40);
}

TEST_F(UdpForwarderTest, RefusedTargetIsCountedAndTheFlowStays) {
  UdpListener* listener = serve(test::loopback_udp(true));
  ASSERT_NE(listener, nullptr);
  target_.reset();  // nothing listens on the target port any more: ICMP port unreachable
  UniqueFd c1 = test::loopback_udp(false);
  send_to(c1.get(), listener->port(), "x");
  const UdpCounters& n = udp_->counters();
  ASSERT_TRUE(pump([&] { return n.target_errors >= 1; }));
  EXPECT_EQ(n.active, 1u);
  EXPECT_EQ(n.to_target, 1u);
  EXPECT_EQ(listener->route()->counters->target_errors, 1u);  // on the rule, for --stats
}

/// The kernel's cap on SO_RCVBUF (net.core.rmem_max, global), in bytes.
long rmem_max() {
  FILE* f = fopen("/proc/sys/net/core/rmem_max", "r");
  if (f == nullptr) return -1;
  long v = -1;
  if (fscanf(f, "%ld", &v) != 1) v = -1;
  fclose(f);
  return v;
}

// A listener and a flow socket both get the larger receive buffer: the
// kernel reports twice what was granted, which is kReceiveBufferBytes or
// net.core.rmem_max, whichever is smaller (the default is rmem_default).
TEST_F(UdpForwarderTest, ListenersAndFlowSocketsGetTheLargerReceiveBuffer) {
  const long cap = rmem_max();
  ASSERT_GT(cap, 0);
  const long want = 2 * std::min<long>(UdpForwarder::kReceiveBufferBytes, cap);
  UdpListener* listener = serve(test::loopback_udp(true));
  ASSERT_NE(listener, nullptr);
  int got = 0;
  socklen_t len = sizeof(got);
  ASSERT_EQ(getsockopt(listener->fd(), SOL_SOCKET, SO_RCVBUF, &got, &len), 0);
  EXPECT_EQ(got, want);
  // The flow socket: the only other UDP socket of this process bound to
  // loopback and connected to the target once a client has sent.
  UniqueFd client = test::loopback_udp(false);
  send_to(client.get(), listener->port(), "x");
  const UdpCounters& n = udp_->counters();
  ASSERT_TRUE(pump([&] { return n.to_target == 1; }));
  struct sockaddr_in target;
  socklen_t target_len = sizeof(target);
  ASSERT_EQ(getsockname(target_.get(), reinterpret_cast<struct sockaddr*>(&target), &target_len),
            0);
  int flows_seen = 0;
  // Limit: descriptors of this test process.
  for (int fd = 3; fd < 1024; ++fd) {
    struct sockaddr_in peer;
    socklen_t peer_len = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&peer), &peer_len) != 0) continue;
    if (peer.sin_family != AF_INET || peer.sin_port != target.sin_port) continue;
    ++flows_seen;
    len = sizeof(got);
    ASSERT_EQ(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len), 0);
    EXPECT_EQ(got, want) << "flow socket fd " << fd;
  }
  EXPECT_EQ(flows_seen, 1);
}

}  // namespace
}  // namespace sluice
