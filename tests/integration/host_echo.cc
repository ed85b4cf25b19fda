#include "tests/integration/host_echo.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include "tests/integration/tcp_util.h"

namespace sluice::test {

HostEcho::HostEcho(uint16_t port) {
  fds_.push_back(listen_tcp("127.0.0.1", port));
  fds_.push_back(listen_tcp("::1", port));
  for (const UniqueFd& l : fds_) fcntl(l.get(), F_SETFL, O_NONBLOCK);
  thread_ = std::thread([this] { run(); });
}

HostEcho::~HostEcho() {
  stop_ = true;
  thread_.join();
}

void HostEcho::run() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  std::vector<UniqueFd> conns;
  while (!stop_ && std::chrono::steady_clock::now() < deadline) {
    std::vector<struct pollfd> p;
    for (const UniqueFd& l : fds_) p.push_back({l.get(), POLLIN, 0});
    for (const UniqueFd& c : conns) p.push_back({c.get(), POLLIN, 0});
    if (poll(p.data(), p.size(), 100) <= 0) continue;
    for (size_t i = 0; i < fds_.size(); ++i) {
      if (p[i].revents == 0) continue;
      // Everything queued, so that a burst never overflows the backlog.
      // Limit: 512 connections at once; a prober holds one at a time.
      for (int n = 0; n < 512; ++n) {
        UniqueFd c(accept4(fds_[i].get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!c.valid()) break;
        if (conns.size() < 512) conns.push_back(std::move(c));
      }
    }
    // Connections accepted just now have no entry in `p` yet: they wait
    // for the next poll.
    const size_t polled = p.size() - fds_.size();
    std::vector<UniqueFd> alive;
    for (size_t i = 0; i < conns.size(); ++i) {
      if (i >= polled || p[fds_.size() + i].revents == 0) {
        alive.push_back(std::move(conns[i]));
        continue;
      }
      char buf[4096];
      ssize_t n = recv(conns[i].get(), buf, sizeof(buf), MSG_DONTWAIT);
      if ((n < 0 && errno == EAGAIN) ||
          (n > 0 && send(conns[i].get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) == n)) {
        alive.push_back(std::move(conns[i]));
      }
    }
    conns = std::move(alive);
  }
}

}  // namespace sluice::test
