// Helpers for tests that speak the control protocol by hand (control_util.h).
#include "tests/integration/control_util.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "schema/frame.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {

/// A raw UNIX stream connection to the daemon's control socket, receive timeout 10 s.
UniqueFd raw_control(const Daemon& d) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", d.socket_path().c_str());
  EXPECT_EQ(connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), 0);
  struct timeval tv = {10, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

/// Reads until EOF or error (bounded by the receive timeout); returns the bytes.
std::string read_to_eof(int fd) {
  std::string out;
  char buf[4096];
  for (int i = 0; i < 1000; ++i) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

/// Decodes every complete frame in `bytes` as responses.
std::vector<control::Response> decode_all(const std::string& bytes) {
  std::vector<control::Response> out;
  std::vector<uint64_t> words((bytes.size() + 7) / 8 + 1);
  std::memcpy(words.data(), bytes.data(), bytes.size());
  size_t off = 0;
  while (off < bytes.size()) {
    auto* p = reinterpret_cast<const uint8_t*>(words.data()) + off;
    // Frames are word multiples, so every frame start stays 8-byte aligned.
    auto check = check_frame(p, bytes.size() - off, kMaxControlMessageBytes);
    if (check.status != FrameStatus::kComplete) break;
    auto r = control::decode_response(p, check.frame_bytes);
    if (!r.ok()) break;
    out.push_back(*r);
    off += check.frame_bytes;
  }
  return out;
}

/// The last response's protocol error code, or -1 when it is not an error.
int last_error_code(const std::string& bytes) {
  auto all = decode_all(bytes);
  if (all.empty()) return -1;
  const auto* e = std::get_if<control::ProtocolError>(&all.back().body);
  return e == nullptr ? -1 : static_cast<int>(e->code);
}

/// Starts an echo server on `listen_fd` that serves `conns` connections.
std::thread echo_server(int listen_fd, int conns) {
  return std::thread([listen_fd, conns] {
    std::vector<std::thread> workers;
    for (int i = 0; i < conns; ++i) {
      UniqueFd c = accept_one(listen_fd, 20000);
      if (!c.valid()) break;
      workers.emplace_back([fd = std::move(c)] {
        char buf[4096];
        for (;;) {
          ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
          if (n <= 0 || send(fd.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
        }
      });
    }
    for (auto& w : workers) w.join();
  });
}

/// One round trip of one byte on an echo connection; true when it came back.
bool ping(int fd) {
  char b = 'x';
  if (send(fd, &b, 1, MSG_NOSIGNAL) != 1) return false;
  return recv(fd, &b, 1, 0) == 1;
}

std::vector<control::Response> read_responses(int fd, size_t n) {
  std::string bytes;
  std::vector<control::Response> out;
  char buf[65536];
  for (int i = 0; i < 1000 && out.size() < n; ++i) {
    ssize_t got = recv(fd, buf, sizeof(buf), 0);
    if (got <= 0) break;
    bytes.append(buf, static_cast<size_t>(got));
    out = decode_all(bytes);
  }
  return out;
}

UniqueFd raw_session(const Daemon& d) {
  UniqueFd fd = raw_control(d);
  if (read_responses(fd.get(), 1).size() != 1) return UniqueFd();
  control::ClientHello hello{control::kProtocolVersion, "raw test client"};
  std::string frame = control::encode_request(control::Request{1, hello});
  if (send(fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(frame.size())) {
    return UniqueFd();
  }
  auto welcome = read_responses(fd.get(), 1);
  if (welcome.size() != 1 || !std::holds_alternative<control::Welcome>(welcome[0].body)) {
    return UniqueFd();
  }
  return fd;
}

std::string frame_words(const std::vector<uint64_t>& words) {
  uint32_t header[2] = {0, static_cast<uint32_t>(words.size())};
  std::string out(reinterpret_cast<const char*>(header), sizeof(header));
  out.append(reinterpret_cast<const char*>(words.data()), words.size() * sizeof(uint64_t));
  return out;
}

uint64_t struct_ptr(int32_t offset, uint16_t data, uint16_t ptrs) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(offset) << 2)) |
         (static_cast<uint64_t>(data) << 32) | (static_cast<uint64_t>(ptrs) << 48);
}

uint64_t list_ptr(int32_t offset, uint8_t size, uint32_t count) {
  return 1u | (static_cast<uint64_t>(static_cast<uint32_t>(offset) << 2)) |
         (static_cast<uint64_t>(size & 7) << 32) | (static_cast<uint64_t>(count) << 35);
}

std::optional<ControlConnection> connect_control(const Daemon& d, control::ServerHello* hello) {
  auto conn = ControlConnection::connect(d.socket_path(), 10000);
  if (!conn.ok()) {
    ADD_FAILURE() << "connect: " << conn.error().message;
    return std::nullopt;
  }
  auto greeting = conn->handshake();
  if (!greeting.ok()) {
    ADD_FAILURE() << "handshake: " << greeting.error().message;
    return std::nullopt;
  }
  if (hello != nullptr) *hello = *greeting;
  return std::move(*conn);
}

control::State get_state(ControlConnection& c) {
  return body_as<control::State>(c.call(control::Request{0, control::GetState{}}))
      .value_or(control::State{});
}

control::CommitResult commit_request(ControlConnection& c, const control::CommitRequest& req) {
  return body_as<control::CommitResult>(c.call(control::Request{0, req}))
      .value_or(control::CommitResult{});
}

}  // namespace sluice::test
