// latency_probe: request/response latency on one kept-alive TCP connection,
// for bench/peers. It is both ends of the measurement:
//
//   latency_probe --server PORT [--seconds S]
//       An echo server on 127.0.0.1:PORT: every byte read on a connection is
//       written back. Serves up to kMaxClients connections at once and exits
//       after S seconds (default 3600), or on SIGTERM.
//
//   latency_probe --client PORT [--count N] [--warmup W] [--size B] [--timeout-ms T]
//       Connects to 127.0.0.1:PORT (retrying while a forwarder starts), does
//       W unmeasured, then N measured ping-pongs of a B-byte message (default
//       20000, 1000, 64), and prints one line:
//           p50_us 23.1 p99_us 41.0 max_us 812.4 count 20000
//       Exits 1 with a message when the path fails or a reply takes longer
//       than T ms (default 5000).
//
// Both ends set TCP_NODELAY, as a request/response protocol would. Every
// loop and every wait is bounded in count and time.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "bench/loopback.h"

namespace {

using sluice::UniqueFd;
using sluice::bench::loopback;

/// CLOCK_MONOTONIC in nanoseconds.
uint64_t now_ns() {
  return sluice::monotonic_ns();
}

/// Limit: connections the echo server serves at once; the benchmark uses one.
constexpr size_t kMaxClients = 64;
/// Limit: the largest message a ping-pong may carry.
constexpr size_t kMaxSize = 65536;
/// Limit: measured ping-pongs per run (the samples are kept in memory).
constexpr long kMaxCount = 10'000'000;

/// Sets TCP_NODELAY and, when `timeout_ms` > 0, send and receive timeouts.
void tune(int fd, int timeout_ms) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (timeout_ms > 0) {
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
}

/// Writes all `len` bytes of `data`; false on an error or a timeout.
bool send_all(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

/// Reads exactly `len` bytes into `data`; false on EOF, an error or a timeout.
bool recv_all(int fd, char* data, size_t len) {
  while (len > 0) {
    ssize_t n = recv(fd, data, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

/// Parses a decimal option value within [lo, hi]; exits 2 on anything else.
long parse_number(const char* name, const char* text, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    std::fprintf(stderr, "latency_probe: %s wants a number in [%ld, %ld], not '%s'\n", name, lo, hi,
                 text);
    std::exit(2);
  }
  return v;
}

/// Runs the echo server on 127.0.0.1:`port` for `seconds`; returns the exit code.
int serve(uint16_t port, long seconds) {
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sin = loopback(port);
  if (!listener.valid() ||
      bind(listener.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)) != 0 ||
      listen(listener.get(), 128) != 0) {
    std::fprintf(stderr, "latency_probe: cannot listen on 127.0.0.1:%u: %s\n", port,
                 std::strerror(errno));
    return 1;
  }
  std::vector<UniqueFd> clients;
  std::vector<char> buf(kMaxSize);
  uint64_t deadline = now_ns() + static_cast<uint64_t>(seconds) * 1000000000ULL;
  while (now_ns() < deadline) {
    std::vector<struct pollfd> pfds = {{listener.get(), POLLIN, 0}};
    for (const UniqueFd& c : clients) pfds.push_back({c.get(), POLLIN, 0});
    // Wake up at least once a second to look at the deadline.
    if (poll(pfds.data(), pfds.size(), 1000) <= 0) continue;
    if ((pfds[0].revents & POLLIN) != 0 && clients.size() < kMaxClients) {
      UniqueFd c(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      // A send timeout: a client that stops reading cannot block the others for long.
      if (c.valid()) tune(c.get(), 1000);
      if (c.valid()) clients.push_back(std::move(c));
    }
    // Walk backwards: a closed client is removed by swapping in the last one.
    for (size_t i = pfds.size() - 1; i >= 1; --i) {
      if (pfds[i].revents == 0) continue;
      size_t slot = i - 1;
      ssize_t n = recv(clients[slot].get(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0 || !send_all(clients[slot].get(), buf.data(), static_cast<size_t>(n))) {
        std::swap(clients[slot], clients.back());
        clients.pop_back();
      }
    }
  }
  return 0;
}

/// Connects to 127.0.0.1:`port`, retrying for at most `timeout_ms`.
UniqueFd connect_retrying(uint16_t port, int timeout_ms) {
  uint64_t deadline = now_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ULL;
  for (;;) {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_in sin = loopback(port);
    if (fd.valid() && connect(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)) == 0)
      return fd;
    if (now_ns() > deadline) return UniqueFd();
    usleep(20000);
  }
}

/// Runs the client; returns the exit code.
int probe(uint16_t port, long count, long warmup, size_t size, int timeout_ms) {
  UniqueFd fd = connect_retrying(port, timeout_ms);
  if (!fd.valid()) {
    std::fprintf(stderr, "latency_probe: cannot connect to 127.0.0.1:%u: %s\n", port,
                 std::strerror(errno));
    return 1;
  }
  tune(fd.get(), timeout_ms);
  std::vector<char> out(size, 'x'), in(size);
  std::vector<double> us;
  us.reserve(static_cast<size_t>(count));
  for (long i = 0; i < warmup + count; ++i) {
    uint64_t t0 = now_ns();
    if (!send_all(fd.get(), out.data(), size) || !recv_all(fd.get(), in.data(), size)) {
      std::fprintf(stderr, "latency_probe: ping-pong %ld of %ld failed: %s\n", i + 1,
                   warmup + count, errno != 0 ? std::strerror(errno) : "connection closed");
      return 1;
    }
    if (i >= warmup) us.push_back(static_cast<double>(now_ns() - t0) / 1000.0);
  }
  std::sort(us.begin(), us.end());
  // Nearest rank: the smallest sample with at least p% of the samples at or below it.
  auto rank = [&](double p) {
    size_t r = static_cast<size_t>(std::ceil(p * static_cast<double>(us.size())));
    return us[std::min(us.size() - 1, r > 0 ? r - 1 : 0)];
  };
  std::printf("p50_us %.1f p99_us %.1f max_us %.1f count %zu\n", rank(0.50), rank(0.99), us.back(),
              us.size());
  return 0;
}

/// Prints the usage to stderr and returns 2.
int usage() {
  std::fprintf(stderr,
               "usage: latency_probe --server PORT [--seconds S]\n"
               "       latency_probe --client PORT [--count N] [--warmup W] [--size B] "
               "[--timeout-ms T]\n");
  return 2;
}

}  // namespace

/// Parses the options and runs the server or the client.
int main(int argc, char** argv) {
  bool server = false, client = false;
  long port = 0, seconds = 3600, count = 20000, warmup = 1000, size = 64, timeout_ms = 5000;
  for (int i = 1; i < argc; ++i) {
    std::string opt = argv[i];
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (opt == "--server" || opt == "--client") {
      (opt == "--server" ? server : client) = true;
      port = parse_number(opt.c_str(), v, 1, 65535);
    } else if (opt == "--seconds") {
      seconds = parse_number("--seconds", v, 1, 86400);
    } else if (opt == "--count") {
      count = parse_number("--count", v, 1, kMaxCount);
    } else if (opt == "--warmup") {
      warmup = parse_number("--warmup", v, 0, kMaxCount);
    } else if (opt == "--size") {
      size = parse_number("--size", v, 1, static_cast<long>(kMaxSize));
    } else if (opt == "--timeout-ms") {
      timeout_ms = parse_number("--timeout-ms", v, 1, 600000);
    } else {
      return usage();
    }
  }
  if (server == client) return usage();
  if (server) return serve(static_cast<uint16_t>(port), seconds);
  return probe(static_cast<uint16_t>(port), count, warmup, static_cast<size_t>(size),
               static_cast<int>(timeout_ms));
}
