// A TCP echo server on this side (sluiced's side) for the SPLICE tests:
// echo servers on 127.0.0.1:PORT and [::1]:PORT, served by one poll loop in a
// thread of their own. Every wait is bounded.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "base/unique_fd.h"

namespace sluice::test {

/// TCP echo servers on 127.0.0.1:PORT and [::1]:PORT on this side, served in
/// a thread of their own by one poll loop (any number of connections, one
/// after the other or at once), until destroyed. Bounded: 5 minutes.
class HostEcho {
 public:
  /// Listens on both loopback addresses at `port`.
  explicit HostEcho(uint16_t port);
  /// Stops the loop and joins its thread; the sockets close.
  ~HostEcho();
  HostEcho(const HostEcho&) = delete;
  HostEcho& operator=(const HostEcho&) = delete;

 private:
  /// The loop: accept on the two listeners, echo on the connections.
  void run();

  std::vector<UniqueFd> fds_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sluice::test
