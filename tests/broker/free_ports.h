// Privileged ports that are free here, for the tests of the default bind
// policy (the broker's own tests and the real sluiced's).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <utility>

#include "base/unique_fd.h"

namespace sluice {

/// Returns two privileged TCP ports that were free on 127.0.0.1 a moment
/// ago (searched from 1023 down, at most 400 tries), or {0, 0} when none
/// can be bound here (no CAP_NET_BIND_SERVICE).
inline std::pair<uint16_t, uint16_t> free_privileged_ports() {
  uint16_t found[2] = {0, 0};
  int n = 0;
  for (uint16_t port = 1023; port > 623 && n < 2; --port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_in sin = {};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0) found[n++] = port;
  }
  return n == 2 ? std::pair{found[0], found[1]} : std::pair<uint16_t, uint16_t>{0, 0};
}

}  // namespace sluice
