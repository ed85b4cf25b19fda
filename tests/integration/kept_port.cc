#include "tests/integration/kept_port.h"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include "tests/integration/tcp_util.h"

namespace sluice::test {

KeptPortProber::KeptPortProber(uint16_t port, Target target)
    : thread_([this, port, target] { run(port, target); }) {}

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

void KeptPortProber::run(uint16_t port, Target target) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int i = 0; i < 200000 && !stop_ && std::chrono::steady_clock::now() < deadline; ++i) {
    UniqueFd c = connect_tcp("127.0.0.1", port, 2000);
    if (!c.valid()) {
      (errno == ECONNREFUSED ? refused_ : reset_)++;
      continue;
    }
    char b = 'p';
    if (target == Target::kEcho) {
      if (send(c.get(), &b, 1, MSG_NOSIGNAL) == 1 && recv(c.get(), &b, 1, 0) == 1 && b == 'p') {
        ok_++;
      } else {
        reset_++;
      }
      continue;
    }
    ssize_t n = recv(c.get(), &b, 1, 0);  // EOF from the target's close
    if (n < 0 && errno == ECONNRESET) {
      reset_++;
    } else {
      ok_++;
    }
  }
}

}  // namespace sluice::test
