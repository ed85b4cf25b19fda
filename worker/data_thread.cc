// The data path's other threads (see data_thread.h).
#include "worker/data_thread.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <thread>

#include "base/log.h"
#include "base/strings.h"

namespace sluice {

Result<std::unique_ptr<Mailbox>> Mailbox::create(EventLoop& loop) {
  UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd.valid()) return SysErr("eventfd for a data-path thread's mailbox");
  std::unique_ptr<Mailbox> box(new Mailbox(std::move(fd)));
  auto added = loop.add(box->fd(), EPOLLIN, box.get());
  if (!added) return Err(added.error());
  return box;
}

void Mailbox::post(std::function<void()> fn) noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(fn));
  }
  // EAGAIN only when the counter is near its maximum: a wake is pending.
  const uint64_t one = 1;
  (void)!::write(fd_.get(), &one, sizeof(one));
}

void Mailbox::on_event(uint32_t /*events*/) noexcept {
  uint64_t n;
  (void)!::read(fd_.get(), &n, sizeof(n));  // level-triggered: quiet again
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(queue_);
  }
  for (auto& fn : batch) fn();
}

/// A data-path thread's view of one listener the main thread shares with it:
/// the main thread's socket, waited on in this thread's loop too.
class DataThread::Mirror final : public EventHandler {
 public:
  Mirror(DataThread& owner, TcpListener* listener)
      : owner_(owner), listener_(listener), fd_(listener->fd()), serial_(listener->serial) {}
  /// A client is queued: accept one.
  void on_event(uint32_t /*events*/) noexcept override {
    if (!detached && !muted) accept_one();
  }
  /// Waits on the socket, level-triggered and exclusive (as the main
  /// thread's TcpListener does when shared); false if epoll refused.
  Result<void> watch() noexcept { return owner_.loop_->add(fd_, EPOLLIN | EPOLLEXCLUSIVE, this); }
  /// Accepts one client: level triggering reports the rest at the next wait,
  /// here or in whichever thread the kernel wakes. What this thread may not
  /// take goes to the main thread (punt): a client past a limit (the main
  /// thread parks the listener there), a rule it may not serve (shareable),
  /// an accept error other than the ones to retry.
  void accept_one() noexcept;
  /// Stops waiting on the socket for kMutedNs or more (Retry), and asks the
  /// main thread to accept on the listener.
  void punt() noexcept;
  /// This thread is busier than another (Forwarder::busier_than_another):
  /// waits on the socket anew, at the back of its wait queue, as
  /// TcpListener::requeue_if_busier does.
  void requeue() noexcept;
  /// Marks the mirror off its socket (removed from the loop already) from
  /// now, in the owner's muted list, for Retry to put back.
  void off_socket() noexcept;
  /// Whether this thread may take a client of the listener now: its rule is
  /// one it may serve, with room under the limits.
  bool may_take() const noexcept;

  bool detached = false;  // unshared: ignores events still in the batch
  bool muted = false;     // off the socket after a punt, in owner_.muted_
  uint64_t muted_ns = 0;  // when

 private:
  DataThread& owner_;
  TcpListener* listener_;  // the main thread's; alive until detached
  int fd_;                 // its socket, owned by the main thread
  uint64_t serial_;
};

void DataThread::Mirror::accept_one() noexcept {
  Forwarder& fwd = *owner_.forwarder_;
  // The rule in force now: a commit may point the socket at another.
  std::shared_ptr<const Route> route = listener_->shared_route();
  if (!owner_.main_->shareable(*route)) return punt();
  RuleAdmit why = RuleAdmit::kOk;
  ConnSlot slot = fwd.take_slot(route, false, &why);
  if (!slot) return punt();
  struct sockaddr_storage peer;
  socklen_t len = sizeof(peer);
  int fd =
      ::accept4(fd_, reinterpret_cast<struct sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    // Queue empty (another thread took the client), or an error that ends
    // only that client: the next wait tells.
    if (errno == EAGAIN || errno == EWOULDBLOCK || accept_error_retryable(errno)) return;
    // Out of descriptors or memory, or worse: the main thread pauses the
    // listener and retries, and says so.
    return punt();
  }
  listener_->clear_inherited_floor(fd);
  const uint16_t port = listener_->port();
  if (fwd.is_own_connection(peer)) return fwd.refuse_loop(UniqueFd(fd), peer, port, *route);
  fwd.place_connection(UniqueFd(fd), peer, port, route, std::move(slot));
  if (fwd.busier_than_another()) requeue();
}

void DataThread::Mirror::requeue() noexcept {
  owner_.loop_->remove(fd_);
  if (!watch()) {
    // Epoll out of memory: off the socket until Retry's next try.
    off_socket();
  }
}

void DataThread::Mirror::off_socket() noexcept {
  muted = true;
  muted_ns = monotonic_ns();
  owner_.muted_.push_back(this);
}

void DataThread::Mirror::punt() noexcept {
  // Level-triggered, the queued clients would wake this thread at every
  // wait until the main thread took them, or for good at a limit.
  if (!muted) {
    owner_.loop_->remove(fd_);
    off_socket();
  }
  owner_.main_inbox_->post(
      [main = owner_.main_, serial = serial_] { main->accept_punted(serial); });
}

bool DataThread::Mirror::may_take() const noexcept {
  std::shared_ptr<const Route> route = listener_->shared_route();
  return owner_.main_->shareable(*route) && owner_.forwarder_->admit(*route) == RuleAdmit::kOk;
}

void DataThread::Retry::on_tick(uint64_t now_ns) noexcept {
  // In the order they left (each one that stays goes to the back with a new
  // time): after each batch, only the ones due are looked at.
  auto& muted = owner_.muted_;
  for (size_t n = muted.size(); n > 0 && now_ns - muted.front()->muted_ns >= kMutedNs; --n) {
    Mirror* m = muted.front();
    muted.pop_front();
    // At a limit that holds, or a rule this thread may not serve, the mirror
    // stays off without a syscall; epoll out of memory: the same.
    if (m->may_take() && m->watch()) {
      m->muted = false;
    } else {
      m->muted_ns = now_ns;
      muted.push_back(m);
    }
  }
}

Result<std::unique_ptr<DataThread>> DataThread::create() {
  auto loop = EventLoop::create();
  if (!loop) return Err(loop.error());
  auto mailbox = Mailbox::create(**loop);
  if (!mailbox) return Err(mailbox.error());
  UniqueFd reply(::eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE));
  UniqueFd park(::eventfd(0, EFD_CLOEXEC));
  if (!reply.valid() || !park.valid()) return SysErr("eventfd for a data-path thread");
  std::unique_ptr<DataThread> t(
      new DataThread(std::move(*loop), std::move(*mailbox), std::move(reply), std::move(park)));
  t->loop_->add_ticker(&t->retry_ticker_);
  return t;
}

DataThread::DataThread(std::unique_ptr<EventLoop> loop, std::unique_ptr<Mailbox> mailbox,
                       UniqueFd reply, UniqueFd park)
    : loop_(std::move(loop)),
      mailbox_(std::move(mailbox)),
      reply_(std::move(reply)),
      park_(std::move(park)) {}

DataThread::~DataThread() = default;

std::vector<int> DataThread::fds() const {
  return {loop_->fd(), loop_->timer_fd(), mailbox_->fd(), reply_.get(), park_.get()};
}

Result<void> DataThread::start() noexcept {
  try {
    // Never joined: a stopped thread waits for good (stop()).
    std::thread([this] { run(); }).detach();
  } catch (const std::system_error& e) {
    return Err(e.code().value(), std::string("a data-path thread: ") + e.what());
  }
  thread_started_ = true;
  // The thread's own start (glibc registers its robust list and rseq area,
  // restores its signal mask) must be over before the filter, which allows
  // none of it: it says when it reached its loop.
  await_answer();
  return Ok();
}

void DataThread::run() noexcept {
  answer();  // start() waits for this
  loop_->run();
  // Only stop() ends the loop: an epoll_wait that failed would leave the
  // main thread's next call waiting for good, or answered by this answer().
  CHECK_MSG(loop_stopped_, "a data-path thread's event loop failed");
  answer();  // stop() waits for the loop to have returned
  // park_ is never written, and never closed: the main thread leaves this
  // object alive to the process exit (main.cc).
  uint64_t v;
  for (;;) (void)!::read(park_.get(), &v, sizeof(v));
}

void DataThread::answer() noexcept {
  const uint64_t one = 1;
  (void)!::write(reply_.get(), &one, sizeof(one));
}

void DataThread::await_answer() noexcept {
  uint64_t v;
  while (::read(reply_.get(), &v, sizeof(v)) < 0 && errno == EINTR) {
  }
}

void DataThread::call(const std::function<void()>& fn) noexcept {
  mailbox_->post([this, &fn] {
    fn();
    answer();
  });
  await_answer();
}

void DataThread::serve(const ForwarderLimits& limits, ConnShare* share, Forwarder* main,
                       Mailbox* main_inbox) noexcept {
  main_ = main;
  main_inbox_ = main_inbox;
  call([&] {
    forwarder_ = std::make_unique<Forwarder>(*loop_, limits, share);
    forwarder_->set_inbox(mailbox_.get());
    loop_->add_ticker(forwarder_.get());
  });
}

void DataThread::share_listener(TcpListener* listener) noexcept {
  mailbox_->post([this, listener] {
    auto mirror = std::make_unique<Mirror>(*this, listener);
    Mirror* raw = mirror.get();
    auto added = raw->watch();
    if (!added) {
      // The main thread serves the socket alone.
      LOG_WARN("port %u: a data-path thread cannot wait on it too: %s", listener->port(),
               added.error().message.c_str());
      return;
    }
    // Clients queued before the thread waited are reported at its next wait.
    mirrors_.emplace(listener, std::move(mirror));
  });
}

void DataThread::unshare_listeners(const std::vector<TcpListener*>& listeners) noexcept {
  call([&] {
    for (TcpListener* listener : listeners) {
      auto it = mirrors_.find(listener);
      if (it == mirrors_.end()) continue;  // never waited on (share_listener failed)
      Mirror* m = it->second.get();
      m->detached = true;
      if (m->muted) {
        muted_.erase(std::find(muted_.begin(), muted_.end(), m));
      } else {
        loop_->remove(listener->fd());
      }
      // Events of this batch may still name it.
      loop_->retire(std::move(it->second));
      mirrors_.erase(it);
    }
  });
}

size_t DataThread::end_connections(const std::function<bool(const Route&)>& pred) noexcept {
  size_t n = 0;
  call([&] { n = forwarder_->end_connections(pred); });
  return n;
}

void DataThread::log_open_connections() noexcept {
  call([&] { forwarder_->log_open_connections(); });
}

void DataThread::stop() noexcept {
  if (stopped_ || !thread_started_) return;
  stopped_ = true;
  mailbox_->post([this] {
    loop_stopped_ = true;
    loop_->stop();
  });
  await_answer();
}

// Forwarder's balancing among the data-path threads (forwarder.h), here with
// the threads it serves.

Forwarder* Forwarder::less_busy_thread() const noexcept {
  const uint64_t mine = load();
  Forwarder* least = nullptr;
  uint64_t fewest = mine;
  for (Forwarder* other : share_->forwarders) {
    const uint64_t n = other->load();
    if (other != this && n < fewest) {
      least = other;
      fewest = n;
    }
  }
  // Limit: the slack, an eighth of what this thread holds. With many short
  // connections the counts differ by a few at any moment, and each move
  // (two epoll_ctl calls) or hand-over (a wake-up of another thread) would
  // be paid per client; with a few long ones, one more is already a
  // thread's share (kept here, the client would leave the two threads two
  // apart, and a burst of two on one thread).
  return least != nullptr && mine > fewest + mine / 8 ? least : nullptr;
}

void Forwarder::place_connection(UniqueFd client, const struct sockaddr_storage& peer,
                                 uint16_t port, const std::shared_ptr<const Route>& route,
                                 ConnSlot slot) noexcept {
  Forwarder* least = less_busy_thread();
  if (least == nullptr) {
    start_connection(std::move(client), peer, port, route, std::move(slot));
    return;
  }
  least->hand_over(HandedClient{std::move(client), peer, port, route, std::move(slot)});
}

void Forwarder::hand_over(HandedClient client) noexcept {
  bool first;
  {
    std::lock_guard<std::mutex> lock(handed_mu_);
    first = handed_.empty();
    handed_.push_back(std::move(client));
    // Under the lock: start_handed() takes the count down after the queue.
    // Before waiting() below: see EventLoop::waiting.
    handed_count_.fetch_add(1);
  }
  // A loop that is awake takes the queue after its batch (on_tick), or does
  // not sleep while it holds any: no eventfd write, no wake-up. One post
  // for a queue: it takes all that come meanwhile.
  if (first && loop_.waiting()) inbox_->post([this] { start_handed(); });
}

void Forwarder::start_handed() noexcept {
  std::vector<HandedClient> batch;
  {
    std::lock_guard<std::mutex> lock(handed_mu_);
    if (handed_.empty()) return;
    batch.swap(handed_);
  }
  for (HandedClient& c : batch) {
    start_connection(std::move(c.client), c.peer, c.port, c.route, std::move(c.slot));
    // After the start counted it: load(), which reads this count first,
    // never misses the client meanwhile.
    handed_count_.fetch_sub(1);
  }
}

}  // namespace sluice
