#include "tests/integration/udp_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

/// Formats a sockaddr's address as text and returns its port in *port.
std::string addr_text(const struct sockaddr_storage& ss, uint16_t* port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const struct sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
    *port = ntohs(sin->sin_port);
  } else {
    const auto* sin6 = reinterpret_cast<const struct sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
    *port = ntohs(sin6->sin6_port);
  }
  return buf;
}

/// True when `s` ends with `suffix`.
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

UniqueFd bind_udp(const std::string& addr, uint16_t port) {
  struct sockaddr_storage ss;
  socklen_t len = make_addr(addr, port, &ss);
  UniqueFd fd(socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len), 0)
      << addr << ":" << port << ": " << std::strerror(errno);
  return fd;
}

uint16_t local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len);
  uint16_t port = 0;
  addr_text(ss, &port);
  return port;
}

bool send_udp(int fd, const std::string& addr, uint16_t port, const std::string& payload) {
  struct sockaddr_storage ss;
  socklen_t len = make_addr(addr, port, &ss);
  return sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<struct sockaddr*>(&ss),
                len) == static_cast<ssize_t>(payload.size());
}

Datagram recv_udp(int fd, int timeout_ms) {
  Datagram d;
  struct pollfd p = {fd, POLLIN, 0};
  int ready = poll(&p, 1, timeout_ms);
  if (ready != 1) {
    d.err = ready == 0 ? EAGAIN : errno;
    return d;
  }
  char buf[65536];
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  ssize_t n =
      recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<struct sockaddr*>(&ss), &len);
  if (n < 0) {
    d.err = errno;
    return d;
  }
  d.ok = true;
  d.payload.assign(buf, static_cast<size_t>(n));
  d.from_addr = addr_text(ss, &d.from_port);
  return d;
}

Datagram request(int fd, const std::string& addr, uint16_t port, const std::string& payload,
                 int timeout_ms, int attempts, int* retries) {
  Datagram d;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0 && retries != nullptr) ++*retries;
    if (!send_udp(fd, addr, port, payload)) {
      d.err = errno;
      continue;
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    // Bounded: stale replies to earlier attempts are skipped, at most 16.
    for (int stale = 0; stale < 16; ++stale) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      d = recv_udp(fd, static_cast<int>(left.count()));
      if (!d.ok) break;
      if (ends_with(d.payload, "|" + payload)) return d;
    }
    if (d.ok) d = Datagram{false, EAGAIN, "", "", 0};
  }
  return d;
}

Datagram await_reply(int fd, const std::string& payload, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int skipped = 0; skipped < 16; ++skipped) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    Datagram d = recv_udp(fd, static_cast<int>(left.count()));
    if (!d.ok || ends_with(d.payload, "|" + payload)) return d;
  }
  return Datagram{false, EAGAIN, "", "", 0};
}

EchoReply parse_echo(const std::string& text) {
  EchoReply r;
  size_t a = text.find('|');
  size_t b = a == std::string::npos ? a : text.find('|', a + 1);
  if (b == std::string::npos) return r;
  r.tag = text.substr(0, a);
  r.source_port = static_cast<uint16_t>(std::atoi(text.substr(a + 1, b - a - 1).c_str()));
  r.payload = text.substr(b + 1);
  return r;
}

UdpEcho::UdpEcho(const std::string& addr, uint16_t port, std::string tag)
    : fd_(bind_udp(addr, port)), tag_(std::move(tag)), thread_([this] { run(); }) {}

UdpEcho::~UdpEcho() {
  stop_ = true;
  thread_.join();
}

void UdpEcho::run() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  for (int i = 0; i < 10000000 && !stop_ && std::chrono::steady_clock::now() < deadline; ++i) {
    struct pollfd p = {fd_.get(), POLLIN, 0};
    if (poll(&p, 1, 50) != 1) continue;
    char buf[65536];
    struct sockaddr_storage from;
    socklen_t len = sizeof(from);
    ssize_t n = recvfrom(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT,
                         reinterpret_cast<struct sockaddr*>(&from), &len);
    if (n < 0) continue;
    // Counted before the answer goes out: a client that has its reply must
    // find it counted.
    ++received_;
    uint16_t port = 0;
    addr_text(from, &port);
    std::string reply =
        tag_ + "|" + std::to_string(port) + "|" + std::string(buf, static_cast<size_t>(n));
    sendto(fd_.get(), reply.data(), reply.size(), 0, reinterpret_cast<struct sockaddr*>(&from),
           len);
  }
}

}  // namespace sluice::test
