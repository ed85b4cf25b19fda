#include "worker/event_loop.h"

#include <cerrno>

#include "base/log.h"
#include "base/strings.h"

namespace sluice {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  UniqueFd epfd(epoll_create1(EPOLL_CLOEXEC));
  if (!epfd.valid()) return SysErr("epoll_create1");
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(epfd)));
}

Result<void> EventLoop::add(int fd, uint32_t events, EventHandler* handler) noexcept {
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.ptr = handler;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return SysErr("epoll_ctl(ADD)");
  }
  return Ok();
}

Result<void> EventLoop::modify(int fd, uint32_t events, EventHandler* handler) noexcept {
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.ptr = handler;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    return SysErr("epoll_ctl(MOD)");
  }
  return Ok();
}

void EventLoop::remove(int fd) noexcept {
  epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::retire(std::unique_ptr<EventHandler> handler) noexcept {
  graveyard_.push_back(std::move(handler));
}

bool EventLoop::run_once(int timeout_ms) noexcept {
  // Limit: events per batch. Bigger batches amortise the syscall; 256 keeps the
  // stack frame small and bounds how long one batch delays the tickers.
  constexpr int kMaxEvents = 256;
  struct epoll_event events[kMaxEvents];
  int n = epoll_wait(epfd_.get(), events, kMaxEvents, immediate_ ? 0 : timeout_ms);
  immediate_ = false;
  if (n < 0 && errno != EINTR) {
    LOG_ERROR("epoll_wait: %s", errno_text(errno).c_str());
    stopped_ = true;
    return false;
  }
  for (int i = 0; i < n; ++i) {
    static_cast<EventHandler*>(events[i].data.ptr)->on_event(events[i].events);
  }
  graveyard_.clear();
  uint64_t now = monotonic_ns();
  // By index: a tick may add a ticker (the initial commit completing in a
  // tick starts the control server), and push_back may move the vector.
  for (size_t i = 0; i < tickers_.size(); ++i) tickers_[i]->on_tick(now);
  graveyard_.clear();
  return !stopped_;
}

void EventLoop::run(int tick_ms) noexcept {
  // stop() may come before the first wait (a failed initial commit).
  while (!stopped_ && run_once(tick_ms)) {
  }
}

}  // namespace sluice
