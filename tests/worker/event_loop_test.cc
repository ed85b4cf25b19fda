// The worker's event loop: tickers, including one that adds tickers while it
// is being ticked (the initial commit completing inside a tick starts the
// control server, which adds its own ticker).
#include "worker/event_loop.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

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

}  // namespace
}  // namespace sluice
