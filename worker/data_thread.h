// The data path's other threads (sluiced --data-threads). Each has its own
// event loop and Forwarder: it waits on the TCP listeners the main thread
// shares with it and keeps the connections it starts until they end. Every
// thread waits on a shared listener level-triggered with EPOLLEXCLUSIVE and
// accepts one client per report, as nginx's workers share their listeners:
// the kernel wakes a thread that sleeps for each new client, and a busy
// thread finds what is left at its next wait. (Accepting until EAGAIN, as a
// listener of the main thread alone does, let whichever thread woke first
// take a burst while the other slept, and cost each wake-up an accept that
// found the queue empty: bench/peers' two-thread relay floor opened about
// 3 % fewer connections per second that way, docs/BENCHMARKS.md.)
//
// Balance: the kernel wakes the first thread asleep in the listener's wait
// queue, and the first thread back from a wait takes every client of a
// burst, so clients that arrive one at a time or together (iperf3 -P 4's
// streams) would all land on one thread. A thread that holds more
// connections than another moves to the back of the queue after an accept
// (TcpListener::requeue_if_busier, Mirror::requeue), and hands the client
// it accepted to the least busy thread when it holds more than that one by
// more than an eighth of its own (Forwarder::place_connection, defined at
// the end of data_thread.cc).
//
// What stays on the main thread: commits, the control and pesto sockets, UDP,
// auto-scan, every listener's life (add, drain, close), the listeners of
// guarded rules (the loop guard records endpoints there) and of SPLICE rules
// served through sluiced's socket pool, and parking at a limit. What the
// threads share (ConnShare, worker/forwarder.h): the connection slots, taken
// under one lock before each accept, so that --max-connections and the
// per-rule limits hold exactly across threads; the per-source counts; the
// loop guard's endpoints; the per-rule counters, which are atomic.
//
// How they talk: the main thread calls into a thread (its mailbox, an
// eventfd) and waits for the answer on a second eventfd, for what must be
// done before it goes on (letting go of listeners about to close, ending the
// connections of removed rules, --stats); a thread posts to the main
// thread's mailbox without waiting (clients it did not take, a slot given
// back while the main thread has parked listeners). The main thread never
// holds a lock while it waits, and a thread never waits for the main one.
//
// Sandbox: the threads are created after every stage of the worker's sandbox
// but the last, its seccomp filter, which the kernel then applies to all of
// them at once (TSYNC). They inherit the worker's user, namespaces, root,
// capabilities (none) and no-new-privileges, and read nothing before the
// filter is loaded. So the filter needs no clone, clone3, rseq or
// set_robust_list: a thread is never created or ended afterwards (a stopped
// thread waits for good, and the process exit ends it); its locks use the
// private futex operations the filter already grants.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "worker/event_loop.h"
#include "worker/forwarder.h"

namespace sluice {

/// Functions queued for an event loop's thread by other threads: an eventfd
/// in the loop wakes it, and it runs them after its current batch, in order.
class Mailbox final : public EventHandler {
 public:
  /// Makes the eventfd (before the sandbox: eventfd2 is not in the worker's
  /// filter) and registers it on `loop`, whose thread runs what is posted.
  static Result<std::unique_ptr<Mailbox>> create(EventLoop& loop);
  /// Queues `fn` and wakes the loop. Any thread; never blocks (the eventfd
  /// is non-blocking, and a wake pending already is enough).
  void post(std::function<void()> fn) noexcept;
  /// Runs everything queued (on the loop's thread).
  void on_event(uint32_t events) noexcept override;
  /// The eventfd, which the sandbox must keep.
  int fd() const noexcept { return fd_.get(); }

 private:
  explicit Mailbox(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;  // under mu_
};

/// One data-path thread beyond the main one.
class DataThread {
 public:
  /// Makes the thread's event loop (epoll, tick timer), its mailbox, and the
  /// eventfds of its answers and of its final wait: before the sandbox,
  /// which closes every descriptor not listed in fds().
  static Result<std::unique_ptr<DataThread>> create();
  /// Frees a thread that never started (a started one is never freed).
  ~DataThread();
  /// The descriptors the sandbox must keep open.
  std::vector<int> fds() const;
  /// Starts the thread, which waits on its (empty) loop: before the seccomp
  /// filter and after every other stage of the sandbox. Returns once the
  /// thread runs its own code (its start's syscalls are not in the filter).
  /// Fails with the errno of pthread_create.
  Result<void> start() noexcept;
  /// Gives the thread its Forwarder, which shares `share` with `main` (the
  /// main thread's) and posts to `main_inbox`. Waits until it is made.
  void serve(const ForwarderLimits& limits, ConnShare* share, Forwarder* main,
             Mailbox* main_inbox) noexcept;

  /// Starts waiting on `listener` too (the main thread's, which stays its
  /// owner). Does not wait: until the thread looks, the main one serves.
  void share_listener(TcpListener* listener) noexcept;
  /// Stops waiting on `listeners` and returns once the thread will not touch
  /// them again: they may be closed then.
  void unshare_listeners(const std::vector<TcpListener*>& listeners) noexcept;
  /// Resets the thread's connections whose rule matches `pred`; returns how
  /// many (Forwarder::end_connections). Waits.
  size_t end_connections(const std::function<bool(const Route&)>& pred) noexcept;
  /// Returns once the thread has finished the batch it is in (a call that
  /// does nothing).
  void sync() noexcept {
    call([] {});
  }
  /// The connection log's lines of its open connections, as the worker
  /// stops. Waits.
  void log_open_connections() noexcept;
  /// The connections it served so far (started). Any thread.
  uint64_t accepted() const noexcept {
    return forwarder_ ? forwarder_->counters().accepted.load() : 0;
  }
  /// The idle pipes of its pool now. Any thread.
  size_t idle_pipes() const noexcept { return forwarder_ ? forwarder_->idle_pipes() : 0; }
  /// Its Forwarder, once serve() made it.
  Forwarder* forwarder() const noexcept { return forwarder_.get(); }
  /// Its connections open now. Any thread.
  uint64_t active() const noexcept { return forwarder_ ? forwarder_->counters().active.load() : 0; }
  /// Stops its loop; the thread then waits for good, touching nothing of
  /// this object but its final eventfd, which is never closed (the process
  /// exit ends the thread). Waits until the loop has stopped; once.
  void stop() noexcept;

 private:
  class Mirror;
  /// Puts the mirrors that punted back on their sockets.
  class Retry final : public Ticker {
   public:
    explicit Retry(DataThread& owner) : owner_(owner) {}
    /// Waits again on each socket a mirror left at least kMutedNs ago.
    void on_tick(uint64_t now_ns) noexcept override;

   private:
    DataThread& owner_;
  };
  /// Limit: how long a mirror that handed a client to the main thread stays
  /// off its socket at least, one tick (250 ms; it returns at the first tick
  /// after, so within two). Meanwhile the main thread serves the listener,
  /// and at a limit parks it and resumes it the moment a slot frees; the
  /// other threads rejoin after this, once the rule has room. Level-
  /// triggered, a thread left on the socket would be woken for the same
  /// queued clients at every wait; a limit that holds costs each thread a
  /// look at the counters per muted listener and period, no syscall.
  static constexpr uint64_t kMutedNs = 250'000'000;

  /// Takes what create() made.
  DataThread(std::unique_ptr<EventLoop> loop, std::unique_ptr<Mailbox> mailbox, UniqueFd reply,
             UniqueFd park);
  /// Runs `fn` on the thread after its current batch and waits until it
  /// returned. Main thread only, one call at a time.
  void call(const std::function<void()>& fn) noexcept;
  /// Wakes the main thread's wait in call() or stop().
  void answer() noexcept;
  /// Waits for answer() (a blocking read of the answer eventfd).
  void await_answer() noexcept;
  /// The thread: its loop until stop(), then a wait for good.
  void run() noexcept;

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Mailbox> mailbox_;
  UniqueFd reply_;  // eventfd, blocking: the answer to a call
  UniqueFd park_;   // eventfd, blocking, never written: the stopped thread's wait
  std::unique_ptr<Forwarder> forwarder_;
  Forwarder* main_ = nullptr;
  Mailbox* main_inbox_ = nullptr;
  /// The thread's mirror of each shared listener, by the main thread's
  /// listener (thread only).
  std::unordered_map<TcpListener*, std::unique_ptr<Mirror>> mirrors_;
  std::deque<Mirror*> muted_;    // off their sockets after a punt, oldest first
  bool thread_started_ = false;  // start() succeeded (main thread)
  bool stopped_ = false;         // stop() ran (main thread)
  bool loop_stopped_ = false;    // stop()'s request ran (the thread)
  Retry retry_ticker_{*this};
};

}  // namespace sluice
