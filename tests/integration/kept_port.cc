#include "tests/integration/kept_port.h"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include "tests/integration/tcp_util.h"

namespace sluice::test {

namespace {

/// True for the errnos of a timeout: a blocking connect or recv with a
/// timeout that ran out (EINPROGRESS for connect, EAGAIN for recv).
bool timed_out(int err) {
  return err == EINPROGRESS || err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT;
}

/// Limit: how long one probe waits for its connect and its answer.
constexpr int kProbeTimeoutMs = 10000;

}  // namespace

KeptPortProber::KeptPortProber(uint16_t port, Target target, int seconds)
    : thread_([this, port, target, seconds] { run(port, target, seconds); }) {}

KeptPortProber::~KeptPortProber() {
  stop();
}

void KeptPortProber::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void KeptPortProber::await_probe() const {
  const int seen = ok_.load();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (ok_.load() == seen && !stop_ && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

void KeptPortProber::run(uint16_t port, Target target, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (int i = 0; i < 200000 && !stop_ && std::chrono::steady_clock::now() < deadline; ++i) {
    UniqueFd c = connect_tcp("127.0.0.1", port, kProbeTimeoutMs);
    if (!c.valid()) {
      const int err = errno;
      (err == ECONNREFUSED ? refused_ : timed_out(err) ? slow_ : reset_)++;
      continue;
    }
    char b = 'p';
    if (target == Target::kEcho) {
      if (send(c.get(), &b, 1, MSG_NOSIGNAL) != 1) {
        reset_++;
        continue;
      }
      ssize_t n = recv(c.get(), &b, 1, 0);
      if (n == 1 && b == 'p') {
        ok_++;
      } else {
        (n < 0 && timed_out(errno) ? slow_ : reset_)++;
      }
      continue;
    }
    ssize_t n = recv(c.get(), &b, 1, 0);  // EOF from the target's close
    if (n >= 0) {
      ok_++;
    } else {
      (timed_out(errno) ? slow_ : reset_)++;
    }
  }
}

}  // namespace sluice::test
