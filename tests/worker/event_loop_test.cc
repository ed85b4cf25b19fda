// The worker's event loop: tickers, including one that adds tickers while it
// is being ticked (the initial commit completing inside a tick starts the
// control server, which adds its own ticker); and work other threads queue
// for it without waking it (set_queued, waiting).
#include "worker/event_loop.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"

namespace sluice {
namespace {

/// Counts its ticks.
class CountingTicker : public Ticker {
 public:
  void on_tick(uint64_t) noexcept override { ++ticks; }
  int ticks = 0;
};

/// On its first tick, adds `extra` tickers to the loop.
class GrowingTicker : public Ticker {
 public:
  GrowingTicker(EventLoop* loop, std::vector<std::unique_ptr<CountingTicker>>* extra)
      : loop_(loop), extra_(extra) {}
  void on_tick(uint64_t) noexcept override {
    if (grown_) return;
    grown_ = true;
    // Limit: enough to move the loop's ticker vector several times over.
    for (int i = 0; i < 64; ++i) {
      extra_->push_back(std::make_unique<CountingTicker>());
      loop_->add_ticker(extra_->back().get());
    }
  }

 private:
  EventLoop* loop_;
  std::vector<std::unique_ptr<CountingTicker>>* extra_;
  bool grown_ = false;
};

TEST(EventLoop, ATickerMayAddTickersWhileTheLoopTicks) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok()) << loop.error().message;
  std::vector<std::unique_ptr<CountingTicker>> extra;
  CountingTicker before;
  GrowingTicker grower(loop->get(), &extra);
  // The grower first: the pass goes on after the vector has moved.
  (*loop)->add_ticker(&grower);
  (*loop)->add_ticker(&before);
  ASSERT_TRUE((*loop)->run_once(0));
  ASSERT_EQ(extra.size(), 64u);
  // Added during the pass, they are ticked in the same pass (by index).
  for (const auto& t : extra) EXPECT_EQ(t->ticks, 1);
  ASSERT_TRUE((*loop)->run_once(0));
  EXPECT_EQ(before.ticks, 2);
  for (const auto& t : extra) EXPECT_EQ(t->ticks, 2);
}

/// Stops the loop on its `stop_at`-th tick.
class StoppingTicker : public Ticker {
 public:
  StoppingTicker(EventLoop* loop, int stop_at) : loop_(loop), stop_at_(stop_at) {}
  void on_tick(uint64_t) noexcept override {
    if (++ticks == stop_at_) loop_->stop();
  }
  int ticks = 0;

 private:
  EventLoop* loop_;
  int stop_at_;
};

/// Records that it fired and stops the loop: the test's bound on run().
class Watchdog : public EventHandler {
 public:
  explicit Watchdog(EventLoop* loop) : loop_(loop) {}
  void on_event(uint32_t) noexcept override {
    fired = true;
    loop_->stop();
  }
  bool fired = false;

 private:
  EventLoop* loop_;
};

// run() waits with no timeout; the tick timer alone must wake it for the
// tickers. Without it, run() would sleep until the watchdog wakes it.
TEST(EventLoop, TheTickTimerWakesAnIdleLoopForTheTickers) {
  constexpr int kTickMs = 20;
  auto loop = EventLoop::create(kTickMs);
  ASSERT_TRUE(loop.ok()) << loop.error().message;
  // Limit: the watchdog fires once after 10 s, far above 3 ticks of 20 ms
  // on a busy machine.
  UniqueFd bound(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  ASSERT_TRUE(bound.valid());
  struct itimerspec once = {};
  once.it_value.tv_sec = 10;
  ASSERT_EQ(timerfd_settime(bound.get(), 0, &once, nullptr), 0);
  Watchdog watchdog(loop->get());
  ASSERT_TRUE((*loop)->add(bound.get(), EPOLLIN, &watchdog).ok());
  StoppingTicker ticker(loop->get(), 3);
  (*loop)->add_ticker(&ticker);
  const uint64_t start = monotonic_ns();
  (*loop)->run();
  const uint64_t elapsed_ms = (monotonic_ns() - start) / 1'000'000;
  EXPECT_FALSE(watchdog.fired) << "the loop slept until the 10 s watchdog: no tick woke it";
  EXPECT_EQ(ticker.ticks, 3);
  // Three ticks of one loop need at least two tick periods between them.
  EXPECT_GE(elapsed_ms, static_cast<uint64_t>(2 * kTickMs) - 1);
}

/// Does nothing: the loop's handler of a test eventfd.
class NullHandler : public EventHandler {
 public:
  void on_event(uint32_t) noexcept override {}
};

TEST(EventLoop, DoesNotSleepWhileWorkIsQueuedAndSaysWhenItSleeps) {
  // A tick of 10 s: a wait that did not return at once would take that long.
  auto loop = EventLoop::create(10000);
  ASSERT_TRUE(loop.ok()) << loop.error().message;
  std::atomic<uint64_t> queued{1};
  (*loop)->set_queued(&queued);
  EXPECT_FALSE((*loop)->waiting());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE((*loop)->run_once(-1));  // work queued: no sleep
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE((*loop)->waiting());
  // Nothing queued: it sleeps, and says so, until an event wakes it.
  queued = 0;
  UniqueFd ev(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  ASSERT_TRUE(ev.valid());
  NullHandler handler;
  ASSERT_TRUE((*loop)->add(ev.get(), EPOLLIN | EPOLLET, &handler).ok());
  std::atomic<bool> saw_waiting{false};
  std::thread waker([&] {
    // Bounded: 10 s at most, then it wakes the loop anyway.
    for (int i = 0; i < 1000 && !(*loop)->waiting(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    saw_waiting = (*loop)->waiting();
    const uint64_t one = 1;
    (void)!::write(ev.get(), &one, sizeof(one));
  });
  ASSERT_TRUE((*loop)->run_once(-1));
  waker.join();
  EXPECT_TRUE(saw_waiting.load());
  EXPECT_FALSE((*loop)->waiting());
}

}  // namespace
}  // namespace sluice
