// sluicectl's side of the control protocol: connect, handshake, and
// request/response calls with a timeout.
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

class ControlConnection {
 public:
  /// Connects to the UNIX socket at `path` with send/receive timeouts of
  /// `timeout_ms`. Errors explain what to do (is sluiced running? permissions?).
  static Result<ControlConnection> connect(const std::string& path, int timeout_ms);

  /// Reads the server's Hello, refuses a protocol version this client does not
  /// speak, and answers with the client's own Hello. Returns the server's
  /// Hello once it welcomed this client. Fails with EBUSY when the server
  /// has too many control clients (try again), with EPROTO when it refused
  /// the client otherwise or spoke out of turn, or with the connection's
  /// error.
  Result<control::ServerHello> handshake();

  /// Sends `request` (its id is assigned here) and returns the response with
  /// the same id. A ProtocolError response becomes an Error whose err is
  /// kServerRefused.
  Result<control::Response> call(control::Request request);

 private:
  /// Wraps a connected socket; only connect() makes one.
  explicit ControlConnection(UniqueFd fd) : fd_(std::move(fd)) {}
  /// Reads one whole frame and decodes it. Needs `recvfrom` with no flags
  /// (recv); SO_RCVTIMEO bounds each wait.
  Result<control::Response> read_response();
  /// Writes all of `bytes`. Needs `sendto` with MSG_NOSIGNAL (send), so a
  /// closed server gives EPIPE and never SIGPIPE; SO_SNDTIMEO bounds each wait.
  Result<void> write_all(const std::string& bytes);

  UniqueFd fd_;
  std::vector<uint64_t> buf_;  // 8-byte aligned frame buffer
  size_t len_ = 0;
  uint64_t next_id_ = 1;
};

}  // namespace sluice
