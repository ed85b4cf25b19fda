// A loopback address for the benchmarks' own clients and servers, shared by
// bench_env.cc and latency_probe.cc.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>

namespace sluice::bench {

/// Fills a sockaddr_in for 127.0.0.1:`port`.
inline struct sockaddr_in loopback(uint16_t port) {
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sin;
}

}  // namespace sluice::bench
