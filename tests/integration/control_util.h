// Helpers for tests that speak the control protocol by hand: raw connections
// to the daemon's socket, hand-made frames, response decoding, and an echo
// target to show that forwarding goes on.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "client/control_client.h"
#include "schema/codec.h"
#include "tests/integration/daemon.h"

namespace sluice::test {

/// A raw UNIX stream connection to the daemon's control socket, receive timeout 10 s.
UniqueFd raw_control(const Daemon& d);

/// Reads until EOF or error (bounded by the receive timeout); returns the bytes.
std::string read_to_eof(int fd);

/// Decodes every complete frame in `bytes` as responses.
std::vector<control::Response> decode_all(const std::string& bytes);

/// The last response's protocol error code, or -1 when it is not an error.
int last_error_code(const std::string& bytes);

/// Starts an echo server on `listen_fd` that serves `conns` connections.
std::thread echo_server(int listen_fd, int conns);

/// One round trip of one byte on an echo connection; true when it came back.
bool ping(int fd);

/// Reads responses until `n` have arrived, EOF, or the receive timeout.
std::vector<control::Response> read_responses(int fd, size_t n);

/// A raw connection that has done the handshake (server hello, client hello,
/// welcome); invalid when any step failed.
UniqueFd raw_session(const Daemon& d);

/// Frames one single-segment message of `words` (the standard stream framing:
/// a segment count of 1, the segment's size, then the words).
std::string frame_words(const std::vector<uint64_t>& words);

/// A Cap'n Proto struct pointer to `offset` words after the pointer, with
/// `data` data words and `ptrs` pointers.
uint64_t struct_ptr(int32_t offset, uint16_t data, uint16_t ptrs);

/// A Cap'n Proto list pointer: `offset` words after the pointer, element size
/// code `size` (2 = bytes, 7 = composite), `count` elements (words for composite).
uint64_t list_ptr(int32_t offset, uint8_t size, uint32_t count);

/// A connected, greeted control client for `d` (sluicectl's own connection
/// code), or nothing, with a test failure that says why. The server's hello
/// goes to `*hello` when it is given.
std::optional<ControlConnection> connect_control(const Daemon& d,
                                                 control::ServerHello* hello = nullptr);

/// The body of the response `r` as a T, or nothing, with a test failure
/// naming what came instead (an error, or another kind of response). Never
/// aborts the test binary, whatever the server sent.
template <typename T>
std::optional<T> body_as(const Result<control::Response>& r) {
  if (!r.ok()) {
    ADD_FAILURE() << "no response: " << r.error().message;
    return std::nullopt;
  }
  if (const T* body = std::get_if<T>(&r->body)) return *body;
  ADD_FAILURE() << "the server answered with response kind " << r->body.index();
  return std::nullopt;
}

/// Reads the state; an empty State, with a test failure, when the server
/// did not answer with one.
control::State get_state(ControlConnection& c);

/// Sends `req` and returns its result; an unapplied CommitResult, with a
/// test failure, when the server did not answer with one.
control::CommitResult commit_request(ControlConnection& c, const control::CommitRequest& req);

}  // namespace sluice::test
