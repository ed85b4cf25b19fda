// sluicectl's side of the control protocol: connect, handshake, and
// request/response calls, each with one overall deadline.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "schema/codec.h"

namespace sluice {

/// Error::err of call() when the server answered the request with a
/// ProtocolError (not permitted, malformed...): the server refused it and did
/// not carry it out, unlike a connection that broke before any answer.
inline constexpr int kServerRefused = ECANCELED;

/// Limit: the longest single wait on the control socket (SO_RCVTIMEO and
/// SO_SNDTIMEO). A request's deadline is checked after every wait, so a
/// server that trickles bytes, or says nothing, is given up on at most this
/// long after the deadline; 250 ms is well below any --timeout and costs a
/// few wake-ups a second while a slow commit runs.
inline constexpr int kWaitSliceMs = 250;

class ControlConnection {
 public:
  /// Connects to the UNIX socket at `path`; each later handshake() or call()
  /// must be over within `timeout_ms` in all (its deadline), however the
  /// server paces its bytes. Errors explain what to do (is sluiced running?
  /// permissions?).
  static Result<ControlConnection> connect(const std::string& path, int timeout_ms);

  /// Reads the server's Hello, refuses a protocol version this client does not
  /// speak, and answers with the client's own Hello. Returns the server's
  /// Hello once it welcomed this client. Fails with EBUSY when the server
  /// has too many control clients (try again), with EPROTO when it refused
  /// the client otherwise or spoke out of turn, with ETIMEDOUT when it was
  /// not over within the timeout, or with the connection's error.
  Result<control::ServerHello> handshake();

  /// Sends `request` (its id is assigned here) and returns the response with
  /// the same id, all within the timeout (ETIMEDOUT otherwise). A
  /// ProtocolError response becomes an Error whose err is kServerRefused.
  Result<control::Response> call(control::Request request);

 private:
  /// Wraps a connected socket; only connect() makes one.
  ControlConnection(UniqueFd fd, int timeout_ms) : fd_(std::move(fd)), timeout_ms_(timeout_ms) {}
  /// Returns the deadline of a request that starts now, in nanoseconds of
  /// CLOCK_MONOTONIC_COARSE (read from the vDSO: no syscall).
  uint64_t deadline_from_now() const;
  /// Returns the ETIMEDOUT error of a request whose deadline passed: `what`
  /// did not happen within the timeout.
  Error timed_out(const char* what) const;
  /// Reads one whole frame and decodes it, before `deadline_ns`. Bytes that
  /// start with pesto's hello magic fail with EPROTO and a message that names
  /// the socket as sluiced's pesto socket and says to pass the control socket
  /// instead (sluicectl at --pesto-socket's PATH). Needs
  /// `recvfrom` with no flags (recv); SO_RCVTIMEO (kWaitSliceMs) ends each
  /// wait, and the clock is read from the vDSO between waits.
  Result<control::Response> read_response(uint64_t deadline_ns);
  /// Writes all of `bytes` before `deadline_ns`. Needs `sendto` with
  /// MSG_NOSIGNAL (send), so a closed server gives EPIPE and never SIGPIPE;
  /// SO_SNDTIMEO (kWaitSliceMs) ends each wait.
  Result<void> write_all(const std::string& bytes, uint64_t deadline_ns);

  UniqueFd fd_;
  int timeout_ms_ = 0;
  std::vector<uint64_t> buf_;  // 8-byte aligned frame buffer
  size_t len_ = 0;
  uint64_t next_id_ = 1;
};

}  // namespace sluice
