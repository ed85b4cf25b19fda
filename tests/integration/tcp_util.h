// Small TCP helpers for integration tests: blocking sockets with timeouts and
// deterministic byte streams whose SHA-256 both ends can compute.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "base/sha256.h"
#include "base/unique_fd.h"

namespace sluice::test {

/// Fills a sockaddr for an IPv4 or IPv6 literal and port; returns its
/// length. Fails the test on a literal that is neither.
socklen_t make_addr(const std::string& addr, uint16_t port, struct sockaddr_storage* out);

/// Listens on addr:port (TCP, SO_REUSEADDR) with an accept queue of
/// `backlog` (which net.core.somaxconn caps). Fails the test on error.
UniqueFd listen_tcp(const std::string& addr, uint16_t port, int backlog = 128);
/// Connects to addr:port with send/receive timeouts of `timeout_ms`; returns
/// an empty UniqueFd and sets errno on failure.
UniqueFd connect_tcp(const std::string& addr, uint16_t port, int timeout_ms = 10000);
/// Accepts one connection with a timeout (poll); empty on timeout.
UniqueFd accept_one(int listen_fd, int timeout_ms = 10000);

/// Sends `text` on a new TCP connection to 127.0.0.1:`port` (or [::1] with
/// `v6`) and returns what came back, "" on any failure (5 s timeouts).
std::string tcp_echo(uint16_t port, const std::string& text, bool v6 = false);
/// True when a listener on `addr`:`port` completes a TCP handshake within
/// 2 s, even if it resets the connection at once (a forwarder whose target
/// refuses, or at a limit: see connect_then_end); false when the port
/// refuses or stays silent.
bool listening(uint16_t port, const std::string& addr = "127.0.0.1");

/// How a connection that the forwarder may end at once ended.
struct ConnectionEnd {
  int err = 0;              // ECONNRESET, ECONNREFUSED (no listener), ETIMEDOUT, EAGAIN; 0: EOF
  bool connected = false;   // a listener completed the handshake
  size_t bytes = 0;         // bytes received before the end
  uint16_t local_port = 0;  // the client's port, known even when connect() failed
};
/// Connects from `source` (a port the kernel picks) to `addr`:`port` and
/// reads until the connection ends, each step bounded by `timeout_ms`.
/// For a connection the forwarder resets at once: on a busy machine the
/// reset can come in after the handshake but before the client returns from
/// connect(), and the kernel then reports it there (ECONNRESET) instead of
/// at the first read; both count as the same end.
ConnectionEnd connect_then_end(const std::string& source, const std::string& addr, uint16_t port,
                               int timeout_ms = 10000);

/// Writes `bytes` bytes of the stream seeded by `seed`; returns the SHA-256 of
/// what was written, or all zeros if a write failed.
Sha256Digest send_stream(int fd, uint64_t seed, size_t bytes);
/// Reads until EOF (or error/timeout); stores the byte count and returns the
/// SHA-256 of everything read.
Sha256Digest receive_all(int fd, size_t* bytes);
/// Returns the SHA-256 of the stream seeded by `seed` without sending it.
Sha256Digest stream_digest(uint64_t seed, size_t bytes);

}  // namespace sluice::test
