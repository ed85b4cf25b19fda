// UDP batches on real loopback sockets: address conversions, the pktinfo
// control messages both ways, one recvmmsg for a whole batch, replies that
// leave a wildcard socket from the address each client sent to, and the
// error path of a send.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "base/unique_fd.h"
#include "worker/udp_batch.h"

namespace sluice {
namespace {

/// A UDP socket of `family` bound to `addr`:0 (non-blocking), with pktinfo on
/// when `pktinfo` (as the broker opens listeners).
UniqueFd bound_udp(int family, const char* addr, bool pktinfo) {
  UniqueFd fd(socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  int one = 1;
  struct sockaddr_storage ss = {};
  socklen_t len;
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &sin->sin_addr);
    len = sizeof(*sin);
    if (pktinfo) setsockopt(fd.get(), IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
  } else {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, addr, &sin6->sin6_addr);
    len = sizeof(*sin6);
    if (pktinfo) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
  }
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len), 0) << addr;
  return fd;
}

/// The port `fd` is bound to.
uint16_t port_of(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len);
  return endpoint_from_sockaddr(ss).port;
}

/// Sends `text` from `fd` to `addr`:`port` (IPv4).
void send4(int fd, const char* addr, uint16_t port, const std::string& text) {
  struct sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  inet_pton(AF_INET, addr, &to.sin_addr);
  ASSERT_EQ(
      sendto(fd, text.data(), text.size(), 0, reinterpret_cast<struct sockaddr*>(&to), sizeof(to)),
      static_cast<ssize_t>(text.size()));
}

/// Waits up to 2 s for a datagram on `fd`; returns it and its source in *from.
std::string receive(int fd, UdpEndpoint* from) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1) return "<timeout>";
  char buf[256];
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<struct sockaddr*>(&ss), &len);
  if (n < 0) return "<error>";
  *from = endpoint_from_sockaddr(ss);
  return std::string(buf, static_cast<size_t>(n));
}

TEST(UdpAddress, SockaddrRoundTrips) {
  UdpEndpoint v4{addr_v4(192, 0, 2, 7), 53, 0};
  struct sockaddr_storage ss;
  ASSERT_EQ(endpoint_to_sockaddr(v4, AF_INET, &ss), sizeof(struct sockaddr_in));
  EXPECT_EQ(ss.ss_family, AF_INET);
  EXPECT_EQ(endpoint_from_sockaddr(ss), v4);
  // On a dual-stack socket an IPv4 client stays v4-mapped, as the kernel gave it.
  ASSERT_EQ(endpoint_to_sockaddr(v4, AF_INET6, &ss), sizeof(struct sockaddr_in6));
  EXPECT_EQ(ss.ss_family, AF_INET6);
  EXPECT_EQ(endpoint_from_sockaddr(ss), v4);
  UdpEndpoint v6{};
  ASSERT_TRUE(parse_addr("fe80::1", &v6.addr));
  v6.port = 5353;
  v6.scope = 2;
  endpoint_to_sockaddr(v6, AF_INET6, &ss);
  EXPECT_EQ(endpoint_from_sockaddr(ss), v6);
  struct sockaddr_storage unix_ss = {};
  unix_ss.ss_family = AF_UNIX;
  EXPECT_EQ(endpoint_from_sockaddr(unix_ss), UdpEndpoint{});
}

TEST(UdpAddress, PktinfoRoundTrips) {
  alignas(struct cmsghdr) uint8_t buf[64];
  struct msghdr m = {};
  m.msg_control = buf;
  LocalAddr v4{addr_v4(127, 0, 0, 2), 1, true};
  m.msg_controllen = write_pktinfo(AF_INET, v4, buf, sizeof(buf));
  ASSERT_GT(m.msg_controllen, 0u);
  LocalAddr got = local_from_cmsg(m);
  EXPECT_TRUE(got.known);
  EXPECT_EQ(got.addr, v4.addr);
  EXPECT_EQ(got.ifindex, 0u);  // IPv4 replies are routed, not pinned to the interface

  LocalAddr global6{};
  ASSERT_TRUE(parse_addr("2001:db8::5", &global6.addr));
  global6.ifindex = 4;
  global6.known = true;
  m.msg_controllen = write_pktinfo(AF_INET6, global6, buf, sizeof(buf));
  got = local_from_cmsg(m);
  EXPECT_EQ(got.addr, global6.addr);
  EXPECT_EQ(got.ifindex, 0u);
  LocalAddr link6 = global6;
  ASSERT_TRUE(parse_addr("fe80::5", &link6.addr));
  m.msg_controllen = write_pktinfo(AF_INET6, link6, buf, sizeof(buf));
  EXPECT_EQ(local_from_cmsg(m).ifindex, 4u);  // link-local needs its interface

  // Unknown source, or no room: no control message at all.
  EXPECT_EQ(write_pktinfo(AF_INET, LocalAddr{}, buf, sizeof(buf)), 0u);
  EXPECT_EQ(write_pktinfo(AF_INET6, link6, buf, 8), 0u);
  m.msg_controllen = 0;
  EXPECT_FALSE(local_from_cmsg(m).known);
}

TEST(UdpBatch, ReceivesABatchInOneCall) {
  UniqueFd listener = bound_udp(AF_INET, "127.0.0.1", true);
  UniqueFd sender = bound_udp(AF_INET, "127.0.0.1", false);
  uint16_t port = port_of(listener.get());
  UdpBatch batch;
  EXPECT_EQ(batch.receive(listener.get()), -1);
  EXPECT_EQ(errno, EAGAIN);
  // More than one batch queued: the first call takes exactly kUdpBatch.
  for (size_t i = 0; i < kUdpBatch + 3; ++i)
    send4(sender.get(), "127.0.0.1", port, std::to_string(i));
  ASSERT_EQ(batch.receive(listener.get()), static_cast<int>(kUdpBatch));
  for (size_t i = 0; i < kUdpBatch; ++i) {
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(batch.data(i)), batch.length(i)),
              std::to_string(i));
    EXPECT_FALSE(batch.truncated(i));
    EXPECT_EQ(endpoint_from_sockaddr(batch.name(i)).port, port_of(sender.get()));
    EXPECT_TRUE(batch.local(i).known);
    EXPECT_EQ(batch.local(i).addr, addr_v4(127, 0, 0, 1));
  }
  EXPECT_EQ(batch.receive(listener.get()), 3);
  EXPECT_EQ(batch.receive(listener.get()), -1);
}

TEST(UdpBatch, RepliesLeaveAWildcardSocketFromTheAddressUsed) {
  // 0.0.0.0 receives on 127.0.0.1 and 127.0.0.2 (both on lo); each reply must
  // come from the address its client sent to, or the client drops it.
  UniqueFd listener = bound_udp(AF_INET, "0.0.0.0", true);
  uint16_t port = port_of(listener.get());
  UniqueFd a = bound_udp(AF_INET, "127.0.0.1", false);
  UniqueFd b = bound_udp(AF_INET, "127.0.0.1", false);
  send4(a.get(), "127.0.0.1", port, "to-1");
  send4(b.get(), "127.0.0.2", port, "to-2");
  UdpBatch batch;
  ASSERT_EQ(batch.receive(listener.get()), 2);
  for (size_t i = 0; i < 2; ++i) {
    SendResult r = batch.send_to(listener.get(), AF_INET, endpoint_from_sockaddr(batch.name(i)),
                                 batch.local(i), i, i + 1);
    EXPECT_EQ(r.sent, 1u);
    EXPECT_EQ(r.bytes, 4u);
  }
  UdpEndpoint from;
  EXPECT_EQ(receive(a.get(), &from), "to-1");
  EXPECT_EQ(from.addr, addr_v4(127, 0, 0, 1));
  EXPECT_EQ(from.port, port);
  EXPECT_EQ(receive(b.get(), &from), "to-2");
  EXPECT_EQ(from.addr, addr_v4(127, 0, 0, 2));
  EXPECT_EQ(from.port, port);
}

TEST(UdpBatch, DualStackSocketAnswersIpv4FromTheMappedAddress) {
  UniqueFd listener(socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int zero = 0, one = 1;
  setsockopt(listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  setsockopt(listener.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
  struct sockaddr_in6 any = {};
  any.sin6_family = AF_INET6;
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<struct sockaddr*>(&any), sizeof(any)), 0);
  uint16_t port = port_of(listener.get());
  UniqueFd client = bound_udp(AF_INET, "127.0.0.1", false);
  send4(client.get(), "127.0.0.2", port, "mapped");
  UdpBatch batch;
  ASSERT_EQ(batch.receive(listener.get()), 1);
  LocalAddr local = batch.local(0);
  ASSERT_TRUE(local.known);
  EXPECT_EQ(local.addr, addr_v4(127, 0, 0, 2));  // v4-mapped, from IPV6_PKTINFO
  UdpEndpoint peer = endpoint_from_sockaddr(batch.name(0));
  EXPECT_TRUE(addr_is_v4(peer.addr));
  EXPECT_EQ(batch.send_to(listener.get(), AF_INET6, peer, local, 0, 1).sent, 1u);
  UdpEndpoint from;
  EXPECT_EQ(receive(client.get(), &from), "mapped");
  EXPECT_EQ(from.addr, addr_v4(127, 0, 0, 2));
}

TEST(UdpBatch, ConnectedSendsARunAndFailuresAreCountedNotRetriedForever) {
  UniqueFd target = bound_udp(AF_INET, "127.0.0.1", false);
  UniqueFd listener = bound_udp(AF_INET, "127.0.0.1", true);
  UniqueFd client = bound_udp(AF_INET, "127.0.0.1", false);
  for (int i = 0; i < 5; ++i) send4(client.get(), "127.0.0.1", port_of(listener.get()), "x");
  UdpBatch batch;
  ASSERT_EQ(batch.receive(listener.get()), 5);
  UniqueFd flow(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  struct sockaddr_storage ss;
  socklen_t len = endpoint_to_sockaddr(UdpEndpoint{addr_v4(127, 0, 0, 1), port_of(target.get()), 0},
                                       AF_INET, &ss);
  ASSERT_EQ(connect(flow.get(), reinterpret_cast<struct sockaddr*>(&ss), len), 0);
  SendResult r = batch.send_connected(flow.get(), 1, 4);
  EXPECT_EQ(r.sent, 3u);
  EXPECT_EQ(r.bytes, 3u);
  EXPECT_EQ(r.failed + r.would_block, 0u);
  // Port 0 is no destination: every datagram fails (after one retry each),
  // is counted, and the call returns.
  r = batch.send_to(listener.get(), AF_INET, UdpEndpoint{addr_v4(127, 0, 0, 1), 0, 0}, LocalAddr{},
                    0, 5);
  EXPECT_EQ(r.sent, 0u);
  EXPECT_EQ(r.failed, 5u);
  EXPECT_EQ(r.last_errno, EINVAL);
}

}  // namespace
}  // namespace sluice
