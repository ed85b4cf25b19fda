// The fixture of the BrokerHost tests (broker_host_test.cc,
// initial_ports_test.cc): a real SOCK_SEQPACKET channel with the test as
// the worker, helpers that bind real sockets on loopback, and a host with
// the default policy.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/check.h"
#include "base/scm_rights.h"
#include "broker/broker_host.h"
#include "tests/broker/test_wire.h"

namespace sluice::testing {

inline constexpr uint8_t kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

/// The two ends of a worker channel: `broker` is handed to BrokerHost.
struct Channel {
  UniqueFd broker;
  UniqueFd worker;
};

/// Returns a new SOCK_SEQPACKET channel.
inline Channel make_channel() {
  int sv[2];
  CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

/// Counts this process's open fds (the /proc/self/fd directory fd included,
/// consistently).
inline int open_fd_count() {
  DIR* d = ::opendir("/proc/self/fd");
  CHECK(d != nullptr);
  int n = 0;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

/// Returns a port that was free for `type` on `family`'s loopback (or on [::]
/// for dual-stack) a moment ago: bound to port 0, read back, closed.
inline uint16_t free_port(int family, int type, bool dual = false) {
  UniqueFd fd(::socket(family, type | SOCK_CLOEXEC, 0));
  CHECK(fd.valid());
  struct sockaddr_storage ss = {};
  socklen_t len;
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*sin);
  } else {
    int v6only = dual ? 0 : 1;
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    if (!dual) std::memcpy(&sin6->sin6_addr, kLoop6, 16);
    len = sizeof(*sin6);
  }
  CHECK(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
  CHECK(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  return ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                 : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

/// Returns true when an IPv6 loopback socket can be bound here.
inline bool have_ipv6() {
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in6 sin6 = {};
  sin6.sin6_family = AF_INET6;
  std::memcpy(&sin6.sin6_addr, kLoop6, 16);
  return fd.valid() && ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6)) == 0;
}

/// Returns true when net.ipv4.ip_nonlocal_bind is on (binding a foreign
/// address then succeeds).
inline bool nonlocal_bind() {
  UniqueFd fd(::open("/proc/sys/net/ipv4/ip_nonlocal_bind", O_RDONLY | O_CLOEXEC));
  char c = '0';
  return fd.valid() && ::read(fd.get(), &c, 1) == 1 && c == '1';
}

/// Returns an int socket option of `fd`.
inline int sockopt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof(v);
  CHECK(::getsockopt(fd, level, name, &v, &len) == 0);
  return v;
}

/// Returns the port `fd` is bound to.
inline uint16_t bound_port(int fd) {
  struct sockaddr_storage ss = {};
  socklen_t len = sizeof(ss);
  CHECK(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

/// A BrokerHost over a fresh channel, the test playing the worker.
class BrokerHostTest : public ::testing::Test {
 protected:
  /// A host with the default policy, a port start of 1024 and the capability
  /// as the test process really has it (root here: binding low ports works).
  BrokerHostTest() : host_(make_policy(true)) {}

  /// The default bind policy (no file) with a port start of 1024.
  static BindPolicy make_policy(bool has_bind_cap) {
    BindPolicy p;
    p.unprivileged_port_start = 1024;
    p.has_bind_cap = has_bind_cap;
    return p;
  }

  /// Sends `len` bytes of `data` (and `fds`) as the worker.
  void send_raw(const void* data, size_t len, std::span<const int> fds = {}) {
    auto r = send_message(ch_.worker.get(), data, len, fds);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  /// Sends Hello to `host` over `ch` and checks that it answers, then
  /// declares `initial` (an empty InitialPorts when null), which leaves the
  /// host ready for requests.
  static void handshake(BrokerHost& host, const Channel& ch,
                        const wire::InitialPortsMsg* initial = nullptr) {
    auto m = hello(1);
    ASSERT_TRUE(send_message(ch.worker.get(), &m, sizeof(m), {}).ok());
    ASSERT_EQ(host.handle_one(ch.broker.get()), HandleStatus::kContinue) << host.last_error();
    wire::HelloReplyMsg reply;
    auto got = receive_message(ch.worker.get(), &reply, sizeof(reply), 0, MSG_DONTWAIT);
    ASSERT_TRUE(got.ok()) << got.error().message;
    ASSERT_EQ(host.state(), HostState::kAwaitInitial);
    auto none = initial_ports();
    if (initial == nullptr) initial = none.get();
    ASSERT_TRUE(send_message(ch.worker.get(), initial, sizeof(*initial), {}).ok());
    ASSERT_EQ(host.handle_one(ch.broker.get()), HandleStatus::kContinue) << host.last_error();
    ASSERT_EQ(host.state(), HostState::kReady);
  }

  /// Hello and an empty InitialPorts to the fixture's host.
  void do_hello() { handshake(host_, ch_); }
  /// Sends a StoreState as of request `sequence` naming `cookies` as held,
  /// with a one-byte blob, both sealed memfds, and has host_ take it.
  void store_state(uint64_t sequence, std::vector<uint64_t> cookies = {}) {
    auto sealed = [](const void* data, size_t len) {
      UniqueFd fd(::memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
      EXPECT_EQ(::write(fd.get(), data, len), static_cast<ssize_t>(len));
      EXPECT_EQ(::fcntl(fd.get(), F_ADD_SEALS,
                        F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                0);
      return fd;
    };
    UniqueFd blob = sealed("b", 1);
    UniqueFd list = sealed(cookies.data(), cookies.size() * sizeof(uint64_t));
    wire::StoreStateMsg msg = {};
    msg.header = wire::header(wire::BrokerMsg::kStoreState, sequence);
    const int fds[] = {blob.get(), list.get()};
    send_raw(&msg, sizeof(msg), fds);
    EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  }

  /// Sends `req`, lets the host answer, and returns the reply and its fds.
  ReceivedMessage request(const wire::OpenListenersMsg& req, wire::ListenersOpenedMsg* reply) {
    EXPECT_TRUE(send_message(ch_.worker.get(), &req, sizeof(req), {}).ok());
    HandleStatus st = host_.handle_one(ch_.broker.get());
    EXPECT_EQ(st, HandleStatus::kContinue) << host_.last_error();
    auto got = receive_message(ch_.worker.get(), reply, sizeof(*reply), kScmMaxFds, MSG_DONTWAIT);
    CHECK(got.ok());
    EXPECT_EQ(got->len, sizeof(*reply));
    EXPECT_EQ(reply->header.magic, wire::kBrokerWireMagic);
    EXPECT_EQ(reply->header.type, static_cast<uint32_t>(wire::BrokerMsg::kListenersOpened));
    EXPECT_EQ(reply->header.sequence, req.header.sequence);
    EXPECT_EQ(reply->count, req.count);
    EXPECT_EQ(reply->fd_count, got->fds.size());
    return std::move(*got);
  }

  /// Expects the next handle_one() to report a violation mentioning `needle`.
  void expect_violation(const char* needle) {
    EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kViolation);
    EXPECT_NE(host_.last_error().find(needle), std::string::npos) << host_.last_error();
  }

  Channel ch_ = make_channel();
  BrokerHost host_;
};

}  // namespace sluice::testing
