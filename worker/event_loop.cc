#include "worker/event_loop.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

#include "base/log.h"
#include "base/strings.h"

namespace sluice {

Result<std::unique_ptr<EventLoop>> EventLoop::create(int tick_ms) {
  UniqueFd epfd(epoll_create1(EPOLL_CLOEXEC));
  if (!epfd.valid()) return SysErr("epoll_create1");
  UniqueFd timer(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer.valid()) return SysErr("timerfd_create");
  struct itimerspec every = {};
  every.it_interval.tv_sec = tick_ms / 1000;
  every.it_interval.tv_nsec = static_cast<long>(tick_ms % 1000) * 1'000'000;
  every.it_value = every.it_interval;
  if (timerfd_settime(timer.get(), 0, &every, nullptr) != 0) return SysErr("timerfd_settime");
  std::unique_ptr<EventLoop> loop(new EventLoop(std::move(epfd), std::move(timer)));
  auto added = loop->add(loop->tick_.fd(), EPOLLIN, &loop->tick_);
  if (!added) return Err(added.error());
  return loop;
}

void EventLoop::Tick::on_event(uint32_t) noexcept {
  uint64_t expiries;
  // EAGAIN (no expiry since the last read) is harmless: the loop only wanted
  // to wake. Nothing else can fail on a timerfd that is open.
  [[maybe_unused]] ssize_t n = ::read(fd_.get(), &expiries, sizeof(expiries));
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
  int timeout = immediate_ ? 0 : timeout_ms;
  if (queued_ != nullptr) {
    waiting_.store(true);  // before the count: see waiting()
    if (queued_->load() != 0) timeout = 0;
  }
  int n = epoll_wait(epfd_.get(), events, kMaxEvents, timeout);
  if (queued_ != nullptr) waiting_.store(false);
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

void EventLoop::run() noexcept {
  // stop() may come before the first wait (a failed initial commit).
  while (!stopped_ && run_once(-1)) {
  }
}

}  // namespace sluice
