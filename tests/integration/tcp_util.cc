#include "tests/integration/tcp_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace sluice::test {
namespace {

/// Fills `buf` with the stream seeded by `seed` starting at its `offset`
/// (xorshift64 per 8-byte block, so any offset that is a multiple of 8 works).
void fill(uint64_t seed, size_t offset, uint8_t* buf, size_t len) {
  for (size_t i = 0; i < len; i += 8) {
    uint64_t x = seed ^ ((offset + i) / 8 + 1) * 0x9E3779B97F4A7C15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
  }
}

/// Chunk size of the test streams: a multiple of 8 for fill().
constexpr size_t kChunk = 256 * 1024;

}  // namespace

socklen_t make_addr(const std::string& addr, uint16_t port, struct sockaddr_storage* out) {
  std::memset(out, 0, sizeof(*out));
  auto* sin = reinterpret_cast<struct sockaddr_in*>(out);
  if (inet_pton(AF_INET, addr.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    return sizeof(*sin);
  }
  auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(out);
  EXPECT_EQ(inet_pton(AF_INET6, addr.c_str(), &sin6->sin6_addr), 1) << addr;
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  return sizeof(*sin6);
}

UniqueFd listen_tcp(const std::string& addr, uint16_t port, int backlog) {
  struct sockaddr_storage ss;
  socklen_t len = make_addr(addr, port, &ss);
  UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len), 0)
      << addr << ":" << port << ": " << std::strerror(errno);
  EXPECT_EQ(listen(fd.get(), backlog), 0);
  return fd;
}

UniqueFd connect_tcp(const std::string& addr, uint16_t port, int timeout_ms) {
  struct sockaddr_storage ss;
  socklen_t len = make_addr(addr, port, &ss);
  UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len) != 0) return UniqueFd();
  return fd;
}

UniqueFd accept_one(int listen_fd, int timeout_ms) {
  struct pollfd pfd = {listen_fd, POLLIN, 0};
  if (poll(&pfd, 1, timeout_ms) != 1) return UniqueFd();
  UniqueFd fd(accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
  struct timeval tv = {10, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

Sha256Digest send_stream(int fd, uint64_t seed, size_t bytes) {
  std::vector<uint8_t> buf(kChunk);
  Sha256 hash;
  for (size_t off = 0; off < bytes; off += kChunk) {
    size_t n = bytes - off < kChunk ? bytes - off : kChunk;
    fill(seed, off, buf.data(), n);
    hash.update(buf.data(), n);
    size_t sent = 0;
    while (sent < n) {
      ssize_t w = send(fd, buf.data() + sent, n - sent, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Sha256Digest{};
      sent += static_cast<size_t>(w);
    }
  }
  return hash.finish();
}

Sha256Digest receive_all(int fd, size_t* bytes) {
  std::vector<uint8_t> buf(kChunk);
  Sha256 hash;
  *bytes = 0;
  for (;;) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    hash.update(buf.data(), static_cast<size_t>(n));
    *bytes += static_cast<size_t>(n);
  }
  return hash.finish();
}

Sha256Digest stream_digest(uint64_t seed, size_t bytes) {
  std::vector<uint8_t> buf(kChunk);
  Sha256 hash;
  for (size_t off = 0; off < bytes; off += kChunk) {
    size_t n = bytes - off < kChunk ? bytes - off : kChunk;
    fill(seed, off, buf.data(), n);
    hash.update(buf.data(), n);
  }
  return hash.finish();
}

std::string tcp_echo(uint16_t port, const std::string& text, bool v6) {
  UniqueFd c = connect_tcp(v6 ? "::1" : "127.0.0.1", port, 5000);
  if (!c.valid()) return "";
  struct timeval tv = {5, 0};
  setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (send(c.get(), text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) {
    return "";
  }
  std::string got(text.size(), '\0');
  size_t have = 0;
  while (have < got.size()) {
    ssize_t n = recv(c.get(), got.data() + have, got.size() - have, 0);
    if (n <= 0) return "";
    have += static_cast<size_t>(n);
  }
  return got;
}

bool listening(uint16_t port, const std::string& addr) {
  UniqueFd c = connect_tcp(addr, port, 2000);
  // ECONNRESET from connect(): the handshake completed (see connect_then_end).
  return c.valid() || errno == ECONNRESET;
}

ConnectionEnd connect_then_end(const std::string& source, const std::string& addr, uint16_t port,
                               int timeout_ms) {
  ConnectionEnd end;
  struct sockaddr_storage local, remote;
  const socklen_t local_len = make_addr(source, 0, &local);
  const socklen_t remote_len = make_addr(addr, port, &remote);
  UniqueFd fd(socket(remote.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  // Bound first, so that the port stays known after a failed connect().
  if (bind(fd.get(), reinterpret_cast<struct sockaddr*>(&local), local_len) != 0) {
    end.err = errno;
    return end;
  }
  socklen_t len = sizeof(local);
  if (getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&local), &len) == 0) {
    end.local_port = ntohs(local.ss_family == AF_INET
                               ? reinterpret_cast<struct sockaddr_in*>(&local)->sin_port
                               : reinterpret_cast<struct sockaddr_in6*>(&local)->sin6_port);
  }
  if (connect(fd.get(), reinterpret_cast<struct sockaddr*>(&remote), remote_len) != 0) {
    end.err = errno == EINPROGRESS ? ETIMEDOUT : errno;  // EINPROGRESS: SO_SNDTIMEO ran out
    end.connected = end.err == ECONNRESET;
    return end;
  }
  end.connected = true;
  char buf[4096];
  for (int i = 0; i < 10000; ++i) {  // bounded by the count and the receive timeout
    const ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n == 0) return end;
    if (n < 0) {
      end.err = errno;
      return end;
    }
    end.bytes += static_cast<size_t>(n);
  }
  end.err = EAGAIN;
  return end;
}

}  // namespace sluice::test
