// Loopback UDP sockets for the worker's unit tests: one made as sluiced
// makes a listener (IP_PKTINFO on), or a plain one for a client or a target.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstdint>

#include "base/unique_fd.h"

namespace sluice::test {

/// A non-blocking UDP socket on 127.0.0.1:0, with IP_PKTINFO when `pktinfo`
/// (a listener's option, which sluiced sets). A failed bind fails the test.
inline UniqueFd loopback_udp(bool pktinfo) {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  if (pktinfo) setsockopt(fd.get(), IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)), 0);
  return fd;
}

/// The port `fd` is bound to (0 when it is not an IPv4 socket).
inline uint16_t udp_port(int fd) {
  struct sockaddr_in sin = {};
  socklen_t len = sizeof(sin);
  getsockname(fd, reinterpret_cast<struct sockaddr*>(&sin), &len);
  return ntohs(sin.sin_port);
}

}  // namespace sluice::test
