// Small UDP helpers for integration tests: bound sockets, request/response
// with a bounded retry, and an echo target that tells who it saw.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "base/unique_fd.h"

namespace sluice::test {

/// A UDP socket bound to addr:port (port 0: an ephemeral one) of the family
/// of `addr`. Fails the test on error.
UniqueFd bind_udp(const std::string& addr, uint16_t port = 0);
/// The port `fd` is bound to.
uint16_t local_port(int fd);

/// One received datagram and its source; `ok` is false on timeout or error
/// (then `err` holds the errno: EAGAIN for a timeout, ECONNREFUSED for an
/// ICMP port unreachable on a connected socket).
struct Datagram {
  bool ok = false;
  int err = 0;
  std::string payload;
  std::string from_addr;  // inet_ntop text: "127.0.0.2", "::1"
  uint16_t from_port = 0;
};

/// Sends `payload` from `fd` to addr:port; true when the kernel took it.
bool send_udp(int fd, const std::string& addr, uint16_t port, const std::string& payload);
/// Waits up to `timeout_ms` for one datagram on `fd`.
Datagram recv_udp(int fd, int timeout_ms);

/// Waits up to `timeout_ms` for a reply on `fd` that ends with "|" + `payload`
/// (an echo of it), skipping other datagrams (at most 16). Sends nothing, so
/// a datagram the kernel dropped is not hidden by a retry. `ok` is false
/// when none came.
Datagram await_reply(int fd, const std::string& payload, int timeout_ms);

/// Sends `payload` to addr:port and waits up to `timeout_ms` for a reply that
/// ends with it (replies to earlier attempts are skipped), trying at most
/// `attempts` times. Adds the extra attempts it needed to *retries when given.
Datagram request(int fd, const std::string& addr, uint16_t port, const std::string& payload,
                 int timeout_ms = 2000, int attempts = 3, int* retries = nullptr);

/// The fields of an echo reply "TAG|SOURCE-PORT|PAYLOAD".
struct EchoReply {
  std::string tag;
  uint16_t source_port = 0;  // the port the target saw: the flow socket's
  std::string payload;
};
/// Splits an echo reply; an empty tag when it is not one.
EchoReply parse_echo(const std::string& text);

/// A UDP target on addr:port in a thread of its own: answers every datagram
/// with "TAG|SOURCE-PORT|PAYLOAD" to its sender. Runs until destroyed (at most
/// 5 minutes and 10 million datagrams).
class UdpEcho {
 public:
  UdpEcho(const std::string& addr, uint16_t port, std::string tag);
  ~UdpEcho();
  UdpEcho(const UdpEcho&) = delete;
  UdpEcho& operator=(const UdpEcho&) = delete;
  /// Datagrams received so far (each is counted before it is answered).
  uint64_t received() const { return received_; }

 private:
  /// The thread: receive, answer, until stopped.
  void run();

  UniqueFd fd_;
  std::string tag_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

}  // namespace sluice::test
