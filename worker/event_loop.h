// The worker's single-threaded epoll loop. Handlers are registered by pointer;
// objects that die while a batch of events is being dispatched are parked in a
// graveyard until the batch ends, so a later event in the same batch never
// touches freed memory.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sluice {

/// Something that receives epoll events. on_event must not throw.
class EventHandler {
 public:
  virtual ~EventHandler() = default;
  /// Called with the epoll event mask for a registered fd.
  virtual void on_event(uint32_t events) noexcept = 0;
};

/// Something that runs once per loop iteration, at least every tick interval.
class Ticker {
 public:
  virtual ~Ticker() = default;
  /// Called with the monotonic time in nanoseconds.
  virtual void on_tick(uint64_t now_ns) noexcept = 0;
};

class EventLoop {
 public:
  /// Limit: the default tick, 250 ms: the resolution of control-client
  /// timeouts and of resuming listeners paused at the descriptor limit.
  static constexpr int kDefaultTickMs = 250;

  /// Creates the epoll instance and the tick timer, a periodic timerfd of
  /// `tick_ms` in the epoll set. Both are made and armed here, before the
  /// seccomp filter is loaded: the worker's allowlist has neither
  /// epoll_create1 nor timerfd_create nor timerfd_settime.
  static Result<std::unique_ptr<EventLoop>> create(int tick_ms = kDefaultTickMs);

  /// Registers `fd` for `events` with `handler` as its cookie (epoll_ctl ADD).
  Result<void> add(int fd, uint32_t events, EventHandler* handler) noexcept;
  /// Changes the events of a registered fd (epoll_ctl MOD).
  Result<void> modify(int fd, uint32_t events, EventHandler* handler) noexcept;
  /// Unregisters `fd` (epoll_ctl DEL). Closing an fd also unregisters it.
  void remove(int fd) noexcept;

  /// Keeps `handler` alive until the current batch of events is dispatched.
  void retire(std::unique_ptr<EventHandler> handler) noexcept;
  /// Adds a ticker called after every batch (never removed; lives as long as the loop).
  void add_ticker(Ticker* ticker) { tickers_.push_back(ticker); }

  /// Waits up to `timeout_ms` (-1: until an event or the next tick),
  /// dispatches one batch, frees retired handlers, then calls the tickers.
  /// Returns false after stop().
  bool run_once(int timeout_ms) noexcept;
  /// Runs until stop(). The tick timer wakes it at least every tick for the
  /// tickers; otherwise it sleeps until an event, with no timeout armed.
  void run() noexcept;
  /// The tick timer's fd, which the sandbox must keep open too.
  int timer_fd() const noexcept { return tick_.fd(); }
  /// The epoll fd, which the sandbox must keep open (it closes every other fd).
  int fd() const noexcept { return epfd_.get(); }
  /// Makes the next wait return at once, so that tickers run again without
  /// waiting for an event (used for work left over from a batch).
  void request_immediate_tick() noexcept { immediate_ = true; }
  /// Makes run() return after the current batch.
  void stop() noexcept { stopped_ = true; }
  /// Counts work other threads queue for this loop without waking it: the
  /// loop does not sleep while `*queued` is not 0, so a ticker of the loop
  /// must take the count down after each batch, or the loop polls without
  /// sleeping. Set once, on the loop's thread or before it runs, and before
  /// any work is queued.
  void set_queued(const std::atomic<uint64_t>* queued) noexcept { queued_ = queued; }
  /// True while the loop is in epoll_wait, or about to enter it, where it
  /// may sleep (set_queued only): a thread that queued work must then wake
  /// it (a mailbox); otherwise the loop finds the work after its batch. The
  /// queuing thread raises the count before it reads this, and the loop
  /// raises this before it reads the count: at least one of the two sees
  /// the other. Any thread.
  bool waiting() const noexcept { return waiting_.load(); }

 private:
  /// The tick timer: a periodic timerfd whose expiries only wake the loop.
  /// Why a timer and not an epoll_wait timeout: a wait with a timeout arms and
  /// cancels an hrtimer on every sleep, a cost on every hop of the data path
  /// (on a VM, a write of the timer MSR each time); the timerfd is armed once.
  class Tick : public EventHandler {
   public:
    explicit Tick(UniqueFd fd) : fd_(std::move(fd)) {}
    /// Reads the expiry count, so that the level-triggered fd is quiet again.
    void on_event(uint32_t events) noexcept override;
    /// The timerfd.
    int fd() const noexcept { return fd_.get(); }

   private:
    UniqueFd fd_;
  };

  EventLoop(UniqueFd epfd, UniqueFd timer) : epfd_(std::move(epfd)), tick_(std::move(timer)) {}

  UniqueFd epfd_;
  Tick tick_;
  std::vector<std::unique_ptr<EventHandler>> graveyard_;
  std::vector<Ticker*> tickers_;
  bool stopped_ = false;
  bool immediate_ = false;
  const std::atomic<uint64_t>* queued_ = nullptr;  // set_queued()
  std::atomic<bool> waiting_{false};               // see waiting()
};

}  // namespace sluice
