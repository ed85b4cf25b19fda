// The TCP data path's pipe pool with a real event loop: pipes are enlarged to
// the configured size while they fit in the page budget, keep the kernel's
// size beyond it, give their pages back when closed, and are reused.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <vector>

#include "worker/forwarder.h"

namespace sluice {
namespace {

/// A forwarder on its own loop with `limits`.
struct Fixture {
  explicit Fixture(ForwarderLimits limits) : loop(EventLoop::create()) {
    EXPECT_TRUE(loop.ok());
    forwarder = std::make_unique<Forwarder>(**loop, limits);
  }
  Result<std::unique_ptr<EventLoop>> loop;
  std::unique_ptr<Forwarder> forwarder;
};

/// The size of `pipe` in bytes.
int pipe_size(const Pipe& pipe) {
  return fcntl(pipe.write_end.get(), F_GETPIPE_SZ);
}

TEST(PipePool, PipesAreEnlargedWithinTheBudgetOnly) {
  ForwarderLimits limits;
  limits.pipe_size = 256 * 1024;   // 48 pages above the kernel's 64 KiB
  limits.pipe_pages_budget = 100;  // room for two enlarged pipes
  Fixture f(limits);
  std::vector<Pipe> held;
  for (int i = 0; i < 3; ++i) {
    auto p = f.forwarder->take_pipe();
    ASSERT_TRUE(p.ok()) << p.error().message;
    held.push_back(std::move(*p));
  }
  EXPECT_EQ(pipe_size(held[0]), 256 * 1024);
  EXPECT_EQ(pipe_size(held[1]), 256 * 1024);
  EXPECT_EQ(pipe_size(held[2]), 65536);  // over the budget: the kernel's size
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 96u);
  EXPECT_EQ(held[2].extra_pages, 0u);
}

TEST(PipePool, ClosedPipesGiveTheirPagesBackAndEmptyOnesAreReused) {
  ForwarderLimits limits;
  limits.pipe_size = 128 * 1024;  // 16 extra pages
  limits.max_idle_pipes = 1;
  Fixture f(limits);
  auto a = f.forwarder->take_pipe();
  auto b = f.forwarder->take_pipe();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 32u);
  const int a_fd = a->read_end.get();
  f.forwarder->give_pipe(std::move(*a));  // pooled: its pages stay counted
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 32u);
  f.forwarder->give_pipe(std::move(*b));  // the pool is full: closed
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 16u);
  auto again = f.forwarder->take_pipe();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->read_end.get(), a_fd);  // the pooled pipe, no new one
  // A pipe that still holds bytes is never pooled: its data would leak into
  // another connection.
  ASSERT_EQ(write(again->write_end.get(), "x", 1), 1);
  again->bytes = 1;
  f.forwarder->give_pipe(std::move(*again));
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 0u);
}

TEST(PipePool, KernelSizeWhenNotAsked) {
  ForwarderLimits limits;
  limits.pipe_size = 65536;
  Fixture f(limits);
  auto p = f.forwarder->take_pipe();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(pipe_size(*p), 65536);
  EXPECT_EQ(f.forwarder->extra_pipe_pages(), 0u);
}

}  // namespace
}  // namespace sluice
