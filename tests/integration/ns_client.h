// A client inside a container stand-in's namespaces, for the SPLICE tests:
// a forked child of the test that joins the container's user and network
// namespace (setns, while it is single-threaded) and then does, on request,
// what a process in the container would: TCP and UDP round trips to the
// namespace's loopback, a listener that holds a port there, a kept-port
// prober. Requests and answers are lines on a socketpair; every wait is
// bounded.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/unique_fd.h"

namespace sluice::test {

class NsClient {
 public:
  /// Forks the child and has it join the namespaces of the process `pid`
  /// (its /proc/PID/ns/user, then /proc/PID/ns/net). ok() is false when the
  /// child could not. Create it before the test starts threads of its own.
  explicit NsClient(pid_t pid);
  /// Tells the child to exit, and reaps it (it is killed after 5 s).
  ~NsClient();
  NsClient(const NsClient&) = delete;
  NsClient& operator=(const NsClient&) = delete;

  /// True when the child runs inside the namespaces.
  bool ok() const { return ok_; }
  /// Sends `text` on a new TCP connection to `addr`:`port` inside the
  /// namespace and returns what came back, "" on any failure (5 s timeouts).
  std::string tcp_echo(const std::string& addr, uint16_t port, const std::string& text);
  /// Sends `text` in a UDP datagram to `addr`:`port` inside the namespace
  /// and returns the reply that ends with it, "" when none came (3 tries of
  /// 2 s).
  std::string udp_request(const std::string& addr, uint16_t port, const std::string& text);
  /// Sends `text` in one UDP datagram to `addr`:`port` inside the namespace
  /// from a socket the child keeps (one per child, made at the first call),
  /// and does not wait for a reply; false when it could not be sent.
  bool udp_send(const std::string& addr, uint16_t port, const std::string& text);
  /// Waits at most `timeout_ms` on the socket of udp_send for a reply that
  /// ends with "|" + `text`, sending nothing; returns it, "" when none came.
  std::string udp_await(const std::string& text, int timeout_ms);
  /// Sends one UDP datagram to `addr`:`port` inside the namespace from each
  /// of `count` new sockets (at most 1000), as `count` new clients at once;
  /// false when one could not be sent.
  bool udp_burst(const std::string& addr, uint16_t port, size_t count);
  /// Waits at most `timeout_ms` in all for the replies to the last
  /// udp_burst, and returns how many of its sockets got one.
  size_t udp_burst_replies(int timeout_ms);
  /// Holds a TCP listener on `addr`:`port` inside the namespace until the
  /// child exits; false when it cannot bind.
  bool hold_tcp(const std::string& addr, uint16_t port);
  /// The same with SO_REUSEPORT, as HAProxy and Envoy listen.
  bool hold_tcp_shared(const std::string& addr, uint16_t port);
  /// True when a TCP connection to 127.0.0.1:`port` inside the namespace is
  /// accepted within 2 s.
  bool listening(uint16_t port);
  /// Starts a kept-port prober (tests/integration/kept_port.h) on
  /// 127.0.0.1:`port` inside the namespace, against an echo target.
  bool start_prober(uint16_t port);
  /// Waits until the prober made one more successful probe (at most 2 s).
  void await_probe();
  /// Stops the prober; returns "OK REFUSED RESET" (its counts), "" on failure.
  std::string stop_prober();

 private:
  /// Sends one request line and returns the answer line ("" on a failure or
  /// after 30 s).
  std::string ask(const std::string& line);

  pid_t child_ = -1;
  UniqueFd sock_;
  bool ok_ = false;
};

}  // namespace sluice::test
