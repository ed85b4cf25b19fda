// The TCP data path: listeners that accept, connections that splice.
//
// accept4() a client, start a non-blocking connect() to the target, and once
// it completes move bytes both ways with splice() through a pair of pooled
// pipes, without copying them to user space. Half-close is propagated with
// shutdown(SHUT_WR); a reset on one side becomes a reset on the other
// (SO_LINGER 0). All of it is noexcept, and edge-triggered but for the
// listeners shared with other data-path threads (level-triggered, one accept
// per report: worker/data_thread.h).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "schema/model.h"
#include "schema/worker_args.h"
#include "worker/conn_limits.h"
#include "worker/event_loop.h"
#include "worker/transfer_mode.h"

namespace sluice {

/// A counter that every data-path thread may add to and the main thread
/// reads for --stats: atomic, each on its own (no count is read together
/// with another).
using Counter = std::atomic<uint64_t>;

/// Counters of one rule (sluicectl --stats). A commit that keeps the rule
/// hands the same object to the rule's new Route, so they count from the
/// moment the rule entered the tables. Every data-path thread counts its own
/// connections here (worker/data_thread.h).
struct RuleCounters {
  Counter accepted = 0;  // TCP connections accepted
  Counter active = 0;    // TCP connections open now
  Counter failed = 0;    // TCP connections whose target could not be reached
  Counter bytes_to_target = 0;
  Counter bytes_to_client = 0;
  Counter flows_active = 0;  // UDP flows open now
  Counter flows_created = 0;
  Counter datagrams_to_target = 0;
  Counter datagrams_to_client = 0;
  Counter dropped = 0;  // UDP datagrams dropped: flow limit, no flow socket, full buffers, errors
  Counter loops = 0;  // TCP connections reset, UDP datagrams dropped: they came from sluice itself
  Counter waiting = 0;  // TCP connections waiting for a host-side socket now (they hold a slot)
  Counter paused_rule_limit = 0;    // times a listener paused at the rule's limit or share
  Counter paused_global_limit = 0;  // times a listener paused at --max-connections
  Counter refused_source = 0;       // TCP connections reset at --max-connections-per-source
  Counter closed_idle = 0;          // TCP connections reset after --idle-timeout without a byte
  Counter target_errors = 0;        // UDP: ICMP errors from the target (port closed, unreachable)
  /// TCP connection slots the rule holds now (open, waiting, being
  /// accepted): what its limits count (ConnSlot). Changed under
  /// ConnShare::mu only.
  Counter slots = 0;
};

/// Where the connections of one rule go. Shared by the listeners of that rule.
struct Route {
  Pif pif = Pif::kHost;
  Addr target{};       // is_default_target: loopback of the connection's own family
  uint16_t first = 0;  // the rule's first port
  uint16_t to = 0;     // port `first` goes to `to`
  std::string text;    // the rule in listing format, for logs
  /// The target may be one of this host's own addresses, served by a
  /// wildcard listener of the table (rules_needing_loop_guard): the local
  /// endpoint of every connection to it is recorded, so a connection that
  /// comes back into sluice is recognised and reset.
  bool guard_loops = false;
  /// An auto-scan rule: its ports listen while something is bound on them on
  /// the other side, whatever the address (for the advice of a refusal).
  bool scan = false;
  /// The rule's counters; the pointer is fixed, the counts change.
  std::shared_ptr<RuleCounters> counters = std::make_shared<RuleCounters>();
};

/// A TCP endpoint: the address (IPv4 v4-mapped) and the port.
struct Endpoint {
  Addr addr{};
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};

/// Hashes an endpoint (FNV-1a; the endpoints are sluice's own local ones,
/// chosen by the kernel, so nobody outside can aim at one bucket).
struct EndpointHash {
  size_t operator()(const Endpoint& e) const noexcept;
};

class Forwarder;

/// What the Forwarders of all data-path threads share (worker/data_thread.h):
/// the connection slots under the limits, the sources, and the loop guard's
/// endpoints. One mutex; every operation under it is a few comparisons.
struct ConnShare {
  ConnShare(uint64_t seed0, uint64_t seed1) : sources(seed0, seed1) {}
  /// Guards the slot counts (in_use, RuleCounters::slots) together, so that
  /// two threads never both take the last slot, and own_endpoints.
  std::mutex mu;
  /// Slots held by every thread's connections (changed under mu).
  std::atomic<size_t> in_use{0};
  /// TCP rules in the tables in force (the fair share's divisor).
  std::atomic<size_t> tcp_rules{1};
  /// Connections per source (its own lock).
  SourceCounts sources;
  /// Local endpoints of the open outgoing connections of guarded rules, with
  /// the rule that made each (the connection holds the route, and its entry
  /// is erased when the connection ends). Under mu.
  std::unordered_map<Endpoint, const Route*, EndpointHash> own_endpoints;
  /// own_endpoints.size(), readable without the lock: the data path skips
  /// the lookup while no guarded connection is open.
  std::atomic<size_t> own_count{0};
  /// The main thread has listeners parked at a limit: a slot given back
  /// tells it through wake_main (wake_posted: once until it looked), on
  /// whichever thread the slot was held.
  std::atomic<bool> parked_any{false};
  std::atomic<bool> wake_posted{false};
  /// Posts Forwarder::wake_parked to the main thread; set before the first
  /// listener when there are other data-path threads (empty: none).
  std::function<void()> wake_main;
  /// Every data-path thread's Forwarder, the main thread's first, for
  /// balancing the connections among them (worker/data_thread.cc). Filled
  /// before the first listener is shared and read-only after; empty with
  /// one thread.
  std::vector<Forwarder*> forwarders;
};

/// One TCP connection's slot under --max-connections and its rule's limits,
/// taken before the accept and held until the connection ends: gives it back
/// when reset or destroyed. Move-only.
class ConnSlot {
 public:
  ConnSlot() = default;
  /// Holds a slot already counted in `share` and `rule`.
  ConnSlot(ConnShare* share, std::shared_ptr<RuleCounters> rule)
      : share_(share), rule_(std::move(rule)) {}
  ConnSlot(ConnSlot&& other) noexcept
      : share_(std::exchange(other.share_, nullptr)), rule_(std::move(other.rule_)) {}
  ConnSlot& operator=(ConnSlot&& other) noexcept {
    if (this != &other) {
      reset();
      share_ = std::exchange(other.share_, nullptr);
      rule_ = std::move(other.rule_);
    }
    return *this;
  }
  ConnSlot(const ConnSlot&) = delete;
  ConnSlot& operator=(const ConnSlot&) = delete;
  ~ConnSlot() { reset(); }
  /// Gives the slot back (once); a no-op for an empty one.
  void reset() noexcept {
    if (share_ == nullptr) return;
    ConnShare* share = std::exchange(share_, nullptr);
    {
      std::lock_guard<std::mutex> lock(share->mu);
      share->in_use.fetch_sub(1);
      rule_->slots.fetch_sub(1);
    }
    rule_.reset();
    // Room again: a listener the main thread parked at a limit may go on.
    if (share->wake_main && share->parked_any.load() && !share->wake_posted.exchange(true)) {
      share->wake_main();
    }
  }
  explicit operator bool() const { return share_ != nullptr; }

 private:
  ConnShare* share_ = nullptr;
  std::shared_ptr<RuleCounters> rule_;
};

/// Returns the endpoint of an AF_INET or AF_INET6 address (a v4-mapped
/// IPv6 address counts as IPv4, as a dual-stack listener reports it).
Endpoint endpoint_of(const struct sockaddr_storage& sa) noexcept;

/// Returns the warning for a connect to `target_port` of `route`'s target that
/// failed with `err`: the rule, the port, the errno, and what to do for the
/// common causes (nothing listening, no route).
std::string describe_connect_failure(const Route& route, uint16_t target_port, int err);

/// Returns the warning for an ICMP error `err` that `route`'s target side
/// answered a UDP datagram to `target_port` with: the rule, the port, the
/// errno, and what to do for the common causes, as describe_connect_failure.
std::string describe_udp_target_error(const Route& route, uint16_t target_port, int err);

/// Lets the TCP listener `fd` complete handshakes again: clears the minimum
/// TTL and hop limit that TcpListener::stop_new_connections() sets. For the
/// listeners a dead worker held: one that died between stopping a listener
/// and closing it (a rebind's settle time, the release slices of a large
/// commit) leaves the floor on the copy sluiced keeps, and the resumed table
/// would serve a port that drops every new client. Needs `getsockname` and
/// `setsockopt(IP_MINTTL, IPV6_MINHOPCOUNT)`. Returns false when the kernel
/// refused.
bool reopen_to_new_connections(int fd) noexcept;

/// True for the errors accept(2) says to retry as for EAGAIN (a network
/// error pending on the next connection): the queue behind it still holds
/// clients that no new edge would announce.
bool accept_error_retryable(int err) noexcept;

/// Returns the port that `port` of `route` forwards to.
inline uint16_t route_target_port(const Route& route, uint16_t port) noexcept {
  return static_cast<uint16_t>(route.to + (port - route.first));
}

/// Builds the sockaddr of the target for traffic that arrived from `peer` on
/// `port` under `route`: the route's address, or loopback of the peer's own
/// family (v4-mapped peers on a dual-stack socket count as IPv4), with the
/// port mapped by the rule's offset. Returns its length. Never fails.
socklen_t target_sockaddr(const Route& route, const struct sockaddr_storage& peer, uint16_t port,
                          struct sockaddr_storage* out) noexcept;

/// A listening socket from the broker, TCP or UDP, as the commit engine sees
/// it: it serves one key, points at the rule in force, is drained before it
/// is closed, and is owned by the forwarder of its protocol.
class Listener : public EventHandler {
 public:
  Listener(uint16_t port, std::shared_ptr<const Route> route)
      : port_(port), route_(std::move(route)) {}
  /// Points the listener at a new rule (a kept socket across a commit).
  virtual void set_route(std::shared_ptr<const Route> route) { route_ = std::move(route); }
  /// The rule the listener serves now.
  const std::shared_ptr<const Route>& route() const { return route_; }
  uint16_t port() const { return port_; }
  /// The socket, or -1 once closed.
  virtual int fd() const = 0;
  /// Forwards what the kernel already queued on the socket under the current
  /// rule, before the socket is closed (which would discard it). Bounded.
  /// A TCP listener first stops taking new connections, so that none can
  /// join its queue between the drain and the close.
  virtual void drain() noexcept = 0;
  /// Stops taking new connections, ahead of a drain() that comes later
  /// (the listener a rebind replaces): it keeps serving what is queued and
  /// the handshakes already under way. A TCP listener stops new handshakes
  /// (stop_new_connections); a UDP socket has none, and does nothing.
  virtual void quiesce() noexcept {}
  /// Serves no new client until it is released: a listener bound to an
  /// interface that was removed, whose index may now name another interface
  /// (re-used, or the interface renamed), must not serve there. A TCP
  /// listener stops new handshakes (stop_new_connections); a UDP listener
  /// drops what it receives, counted.
  virtual void silence() noexcept = 0;
  /// Serves again after silence(): its interface is back under its name.
  virtual void unsilence() noexcept = 0;
  /// True from silence() to unsilence().
  bool silenced() const { return silenced_; }
  /// Stops serving, closes the socket now, and hands the object to its
  /// forwarder, which frees it after the current batch of events. The
  /// pointer must not be used afterwards.
  virtual void release() noexcept = 0;

  size_t slot = 0;  // index in the owning forwarder's listener table: O(1) removal

 protected:
  uint16_t port_;
  std::shared_ptr<const Route> route_;
  bool silenced_ = false;  // silence() ran
};

/// Limits of the data path (the defaults and their reasons are in
/// schema/worker_args.h, with the sluiced options that change them).
struct ForwarderLimits {
  size_t max_connections = kTcpConnectionsDefault;
  /// --max-connections-per-rule; 0: each rule is held to its fair share only
  /// (worker/conn_limits.h).
  size_t max_connections_per_rule = 0;
  /// --max-connections-per-source; 0: off.
  size_t max_connections_per_source = kSourceConnectionsDefault;
  /// --idle-timeout: a connection with no byte either way for this long is
  /// reset; 0: never.
  uint64_t idle_timeout_ns = 0;
  /// Keys the hash of the per-source table (getrandom before the sandbox).
  uint64_t hash_seed[2] = {0, 0};
  /// Limit: idle pipes kept for reuse; each idle pipe holds two fds and, at
  /// the default size, 256 KiB of pipe pages counted against the user.
  size_t max_idle_pipes = 256;
  /// Bytes per pipe; 0 or 65536 keep the kernel's default size.
  size_t pipe_size = kPipeSizeDefault;
  /// Pages that enlarged pipes may hold in all: half the user's
  /// fs.pipe-user-pages-soft (0: no limit there).
  uint64_t pipe_pages_budget = 8192;
  uint64_t connect_timeout_ns = uint64_t{kConnectTimeoutDefaultS} * 1000000000ULL;
  /// --log-connections: a line for every connection that ends or is
  /// refused (worker/conn_log.h).
  bool log_connections = false;
  /// Bytes a direction copies before it splices (worker/transfer_mode.h);
  /// tests raise it to hold a long stream on the copy path.
  uint64_t splice_after_bytes = kSpliceAfterBytes;
};

/// Totals across all listeners (per-rule counters come with `stats`).
struct ForwarderCounters {
  Counter accepted = 0;
  Counter connect_failed = 0;
  Counter bytes_to_target = 0;
  Counter bytes_to_client = 0;
  Counter active = 0;
  Counter loops = 0;           // connections reset as forwarding loops
  Counter refused_source = 0;  // connections reset at the per-source limit
  Counter closed_idle = 0;     // connections reset by the idle timeout
};

class DataThread;
class Mailbox;
class SocketPool;

/// A client one data-path thread accepted for another, which holds fewer
/// connections (Forwarder::place_connection): what start_connection takes.
struct HandedClient {
  UniqueFd client;
  struct sockaddr_storage peer;
  uint16_t port = 0;
  std::shared_ptr<const Route> route;
  ConnSlot slot;
};

/// One listening TCP socket, received from the broker.
class TcpListener final : public Listener {
 public:
  TcpListener(Forwarder& owner, UniqueFd fd, uint16_t port, std::shared_ptr<const Route> route,
              uint64_t id)
      : Listener(port, std::move(route)), serial(id), owner_(owner), fd_(std::move(fd)) {}
  /// Points the listener at a new rule, under ConnShare::mu: the other
  /// data-path threads read it there (shared_route).
  void set_route(std::shared_ptr<const Route> route) override;
  /// The rule in force, read under ConnShare::mu: for another data-path
  /// thread, while the listener is shared with it.
  std::shared_ptr<const Route> shared_route() const;
  /// Takes the TTL floor of stop_new_connections() off `accepted`, a
  /// socket accepted from this listener, which inherited it (it would drop
  /// everything the client sends); nothing while the listener takes new
  /// connections. Any thread.
  void clear_inherited_floor(int accepted) const noexcept;
  /// A client is queued: accepts every pending one (edge-triggered), or one
  /// (level-triggered, shared with the other threads).
  void on_event(uint32_t events) noexcept override;
  /// Accepts as on_event: after a park (resume_parked) or for another
  /// thread (accept_punted). A listener a park took off its loop (mute)
  /// waits on its socket again first, once its rule has room: at a limit
  /// that holds, it stays parked without a syscall. At the connection limit
  /// the listener is parked, and resumed when a connection closes.
  void accept_all() noexcept;
  /// For another thread, which handed its client over: accepts until
  /// EAGAIN, as an edge-triggered listener does (the kernel may have woken
  /// only that thread for a burst), then parks for the rest of the batch at
  /// the per-wake cap.
  void accept_punted() noexcept;
  /// While parked: stops waiting on the socket, if level-triggered (the
  /// kernel would report its queued clients at every wait); accept_all()
  /// waits on it again. Nothing for an edge-triggered listener.
  void mute() noexcept;
  /// After an accept on a shared listener, if this thread is busier than
  /// another (Forwarder::busier_than_another): waits on the socket anew, at
  /// the back of its wait queue (EPOLL_CTL_DEL, then ADD), so that the
  /// kernel wakes another thread first for the next client. Should epoll
  /// refuse the ADD (out of memory), the listener parks muted, as mute(),
  /// and waits again at its next resume.
  void requeue_if_busier() noexcept;
  /// Stops new connections (stop_new_connections), then accepts everything
  /// queued, without the per-wake cap, before the listener is closed: the
  /// kernel resets connections left in the queue. Stops early only at the
  /// connection or descriptor limit.
  void drain() noexcept override;
  /// stop_new_connections(); a failure is reported by the drain.
  void quiesce() noexcept override { stop_new_connections(); }
  /// stop_new_connections().
  void silence() noexcept override {
    silenced_ = true;
    stop_new_connections();
  }
  /// Takes new connections again (reopen_to_new_connections).
  void unsilence() noexcept override;
  /// Makes the kernel complete no new handshake on the socket; connections
  /// already queued stay, for drain(). A client whose SYN arrives now gets no
  /// answer, and retrying a second later finds the port closed (refused).
  /// Without this, a connection completed between the drain's last accept
  /// and the close is reset by the close, and a worker paused there by a busy
  /// machine resets every client that connects meanwhile.
  ///
  /// How: a minimum TTL (IP_MINTTL) and, on an IPv6 socket, a minimum hop
  /// limit (IPV6_MINHOPCOUNT) of 255, which the kernel checks on each segment
  /// before the listener sees it. A SYN from another host has lost at least
  /// one to a router, and this host's own stack sends 64 (the
  /// net.ipv4.ip_default_ttl default); only a host on the same link that
  /// sends with 255 still gets through, and may be reset as before.
  /// A handshake already half-way (its SYN answered, its ACK not in yet)
  /// still completes; if only after the drain, the close resets it: on
  /// loopback only when the client is held up between the two, from another
  /// host within about one round trip. Connections accepted from now on get
  /// both limits back to 0, since children inherit them. Needs
  /// `setsockopt(IP_MINTTL, IPV6_MINHOPCOUNT)` and `getsockname`. Returns
  /// false when the kernel refused (the close may then reset late
  /// arrivals); idempotent.
  bool stop_new_connections() noexcept;
  /// Forwarder::close_listener(this).
  void release() noexcept override;
  /// Closes the socket now; the object lives on until the batch ends, and
  /// ignores events meanwhile.
  void close_socket() noexcept { fd_.reset(); }
  int fd() const override { return fd_.get(); }

  bool parked = false;  // in the forwarder's parked list (O(1) membership)
  /// Shared with the other data-path threads (Forwarder::add_tcp_listener).
  bool shared = false;
  /// Waited on level-triggered and exclusive, one accept per report: a
  /// listener shared with the other threads (data_thread.h says why).
  bool level = false;
  /// Names the listener in the other threads' requests (unique per worker).
  const uint64_t serial;

 private:
  /// Limit: connections accepted per wake-up, edge-triggered. Fairness
  /// between listeners: a flood on one port cannot starve the others for a
  /// whole batch. Edge triggering would lose the rest, so a listener that
  /// stops early parks and resumes right after the batch. (Level-triggered,
  /// one per report: the kernel reports the rest.)
  static constexpr int kMaxAcceptsPerWake = 64;
  /// What one report accepts: one when level-triggered (the kernel reports
  /// the rest), else up to kMaxAcceptsPerWake.
  int per_report() const noexcept { return level ? 1 : kMaxAcceptsPerWake; }
  /// Accepts until EAGAIN, a limit, or `max` connections; returns true when
  /// the queue was emptied. Parks to resume after the batch when `max` was
  /// reached, unless it is the level-triggered one per report. With
  /// `draining` (the listener closes next) only the global limit stops it,
  /// not the rule's share: what stays queued is reset by the close, and a
  /// rule past its share is better than a reset.
  bool accept_up_to(int max, bool draining) noexcept;

  Forwarder& owner_;
  UniqueFd fd_;
  /// stop_new_connections() ran: clear what accepted sockets inherit. Read
  /// by the other data-path threads; v6_ is written before it.
  std::atomic<bool> stopped_{false};
  bool v6_ = false;     // an AF_INET6 socket (known once stopped_)
  bool muted_ = false;  // level-triggered and off the loop while parked (mute)
};

/// A pipe used to splice one direction of a connection.
struct Pipe {
  UniqueFd read_end, write_end;
  size_t bytes = 0;          // bytes currently held in the pipe
  uint64_t extra_pages = 0;  // pages above the kernel's default size, counted in the budget
};

class Forwarder final : public Ticker {
 public:
  /// Creates an empty data path on `loop`. Data-path threads share `share`
  /// (the slots, sources and the loop guard); without one, the forwarder
  /// has its own.
  Forwarder(EventLoop& loop, ForwarderLimits limits, ConnShare* share = nullptr);
  /// Unregisters the listeners; closes every socket.
  ~Forwarder() override;

  /// Connections of SPLICE rules take their target socket from `pool`
  /// (sluiced's namespace) instead of making one. Set before any SPLICE
  /// listener is served; without it they connect where the worker is.
  void set_host_sockets(SocketPool* pool) { host_sockets_ = pool; }
  /// A refill of the host-side sockets of `family` arrived: connections
  /// waiting for one go on, in order of arrival.
  void host_sockets_ready(int family) noexcept;
  /// Connections waiting for a host-side socket now.
  size_t waiting_count() const { return waiting_.size(); }

  /// The main thread's forwarder shares the TCP listeners of rules that
  /// shareable() admits with `threads` (worker/data_thread.h): each waits on
  /// them too, and keeps the connections it starts. Set before the first
  /// listener.
  void set_data_threads(std::vector<DataThread*> threads) { threads_ = std::move(threads); }
  /// True when another data-path thread may serve connections of `route`:
  /// not a guarded rule (the loop guard records its endpoints here) and not
  /// a SPLICE rule whose target sockets come from sluiced (the pool is here).
  bool shareable(const Route& route) const noexcept {
    return !route.guard_loops && !(route.pif == Pif::kSplice && host_sockets_ != nullptr);
  }
  /// On the main thread, asked by another data-path thread: the shared
  /// listener `serial` has clients that thread did not take (a limit, a
  /// rule it may not serve, an accept error): accept them here, where the
  /// limits park the listener. A listener closed meanwhile is skipped.
  void accept_punted(uint64_t serial) noexcept;
  /// On the main thread, asked through ConnShare::wake_main: a slot was
  /// given back; look at the parked listeners after this batch.
  void wake_parked() noexcept;
  /// Stops sharing `listeners` with the other threads, and waits until each
  /// has let go of them: they may be closed then. One round trip per
  /// thread for all of them.
  void unshare(const std::vector<TcpListener*>& listeners) noexcept;
  /// Waits until every other data-path thread has finished its current
  /// batch of events (one round trip each).
  void sync_threads() noexcept;
  /// Connections open now on every data-path thread.
  uint64_t active_total() const noexcept;

  // Balancing among the data-path threads (worker/data_thread.cc).
  /// Sets the mailbox of this forwarder's thread, through which the other
  /// threads wake it for the clients they hand over (hand_over) while its
  /// loop sleeps; awake, the loop takes them after its batch (on_tick).
  /// On the forwarder's thread or before its loop runs, and before the
  /// first listener is shared.
  void set_inbox(Mailbox* inbox) noexcept {
    inbox_ = inbox;
    loop_.set_queued(&handed_count_);
  }
  /// The connections this thread holds now, and those handed to it and not
  /// started yet: what balancing compares. Any thread.
  uint64_t load() const noexcept {
    // The handed count first: start_handed() counts a client as active
    // before it takes it off, so the sum never misses one.
    const uint64_t handed = handed_count_.load();
    return counters_.active.load() + handed;
  }
  /// The data-path thread that holds the fewest connections, when this one
  /// holds more than it by more than an eighth of its own
  /// (ConnShare::forwarders); else null. Any thread; a few atomic loads.
  Forwarder* less_busy_thread() const noexcept;
  /// True when less_busy_thread() finds one. The kernel wakes the first
  /// thread asleep in a shared listener's wait queue for each new client,
  /// so the busier one moves to the back (TcpListener::requeue_if_busier).
  bool busier_than_another() const noexcept { return less_busy_thread() != nullptr; }
  /// A client accepted here from a shared listener, holding `slot`: starts
  /// its connection here (start_connection), or hands it to the thread
  /// that holds the fewest connections when this one holds more than it by
  /// more than an eighth of its own. The first thread back from a wait
  /// takes every client of a burst (the others are still waking up), and
  /// clients that arrive together (iperf3 -P 4's streams) would all land
  /// on one thread. Not for a rule only the main thread serves (shareable).
  void place_connection(UniqueFd client, const struct sockaddr_storage& peer, uint16_t port,
                        const std::shared_ptr<const Route>& route, ConnSlot slot) noexcept;
  /// Queues `client` for this forwarder's thread, and wakes it if its loop
  /// sleeps (EventLoop::waiting). Any thread.
  void hand_over(HandedClient client) noexcept;
  /// Starts the connections handed to this thread, in order. On its thread:
  /// after each batch (on_tick), when woken, and before it ends connections
  /// (end_connections), so that a client accepted under a removed rule
  /// before the commit is ended too.
  void start_handed() noexcept;
  /// Connections each data-path thread served so far (started: accepted
  /// and kept, or handed to it), this one first.
  std::vector<uint64_t> accepted_by_thread() const;
  /// What the data-path threads share.
  ConnShare& share() noexcept { return *share_; }

  /// Starts serving a listening TCP socket on `port` with `route`. Returns the
  /// listener (owned by the forwarder) or an Error if epoll refuses the fd.
  Result<TcpListener*> add_tcp_listener(UniqueFd fd, uint16_t port,
                                        std::shared_ptr<const Route> route);
  /// Stops serving `listener` and closes its socket.
  void close_listener(TcpListener* listener) noexcept;
  /// With --log-connections, logs a line for every connection still open or
  /// waiting for a host-side socket, as the worker stops (they close with
  /// the forwarder).
  void log_open_connections() noexcept;

  /// Called by a listener for each accepted client, which holds `slot`:
  /// connects to the target.
  void start_connection(UniqueFd client, const struct sockaddr_storage& peer, uint16_t port,
                        const std::shared_ptr<const Route>& route, ConnSlot slot) noexcept;
  /// Takes a slot for one more connection of `route` when the limits admit
  /// it (admit()); otherwise returns an empty slot and sets `why`. With
  /// `draining` only the global limit refuses (TcpListener::drain).
  ConnSlot take_slot(const std::shared_ptr<const Route>& route, bool draining,
                     RuleAdmit* why) noexcept;
  /// Resets every connection whose rule matches `pred` (a commit's
  /// endRemovedFlows); returns how many were ended.
  size_t end_connections(const std::function<bool(const Route&)>& pred) noexcept;
  /// True when `peer` is the local endpoint of one of sluice's own outgoing
  /// connections of a guarded rule: the connection came back into sluice.
  /// O(1); false at once while no guarded connection is open.
  bool is_own_connection(const struct sockaddr_storage& peer) const noexcept {
    if (share_->own_count.load(std::memory_order_relaxed) == 0) return false;
    std::lock_guard<std::mutex> lock(share_->mu);
    return share_->own_endpoints.count(endpoint_of(peer)) != 0;
  }
  /// Resets `client`, accepted on `port` under `route` but coming from
  /// sluice's own connection: a forwarding loop. Counts it (the total and the
  /// accepting rule) and logs, rate-limited, both rules. The outgoing
  /// connection then sees the reset and resets its own client, so the loop
  /// ends after one round instead of multiplying.
  void refuse_loop(UniqueFd client, const struct sockaddr_storage& peer, uint16_t port,
                   const Route& route) noexcept;
  /// Called by a connection when it is finished; frees it after the batch.
  void end_connection(class TcpConnection* conn) noexcept;
  /// Listeners paused now at a limit (connections, descriptors).
  size_t parked_count() const { return parked_.size(); }
  /// The connection limit in force.
  size_t max_connections() const { return limits_.max_connections; }
  /// Slots held now, by every data-path thread: open connections, those
  /// waiting for a host-side socket (each holds its client), and those being
  /// accepted.
  size_t in_use() const noexcept { return share_->in_use.load(); }
  /// True when no further connection may be accepted now.
  bool at_capacity() const noexcept { return in_use() >= limits_.max_connections; }
  /// Whether a listener of `route` may accept one more connection now: the
  /// global limit, the per-rule limit and the rule's fair share
  /// (worker/conn_limits.h). O(1).
  RuleAdmit admit(const Route& route) const noexcept {
    return admit_rule(conn_limits(), in_use(), route.counters->slots, tcp_rules());
  }
  /// The connection limits in force.
  ConnLimits conn_limits() const noexcept {
    return ConnLimits{limits_.max_connections, limits_.max_connections_per_rule,
                      limits_.max_connections_per_source};
  }
  /// Sets the number of TCP rules in the tables in force, which divides the
  /// limit into fair shares (a commit calls it). Parked listeners are looked
  /// at again after the batch: a share may have grown.
  void set_tcp_rules(size_t rules) noexcept;
  /// TCP rules in the tables in force.
  size_t tcp_rules() const { return share_->tcp_rules.load(); }
  /// Sources (IPv4 addresses, IPv6 /64s) holding connections now.
  size_t source_count() const { return share_->sources.size(); }
  /// Parks a listener that stopped accepting early. With `soon`, it resumes
  /// after the current batch (fairness cut); otherwise when a connection
  /// closes, or within kTimeoutScanNs (descriptor or connection limit).
  void park(TcpListener* listener, bool soon) noexcept;
  /// Parks a listener that `admit()` refused with `why`, counting the pause
  /// on its rule and logging it (rate-limited) the first time it parks.
  void park_at_limit(TcpListener* listener, RuleAdmit why) noexcept;
  /// Resumes parked listeners whose rule has room again, resets the clients
  /// of connections whose target did not answer within the connect timeout
  /// or that waited that long for a host-side socket, and resets connections
  /// idle for the idle timeout.
  void on_tick(uint64_t now_ns) noexcept override;

  /// Takes a pipe from the pool, or creates one (pipe2) and enlarges it to
  /// limits.pipe_size while the enlarged pipes fit in the pipe page budget.
  /// Needs `pipe2`, `fcntl(F_SETPIPE_SZ)`.
  Result<Pipe> take_pipe() noexcept;
  /// Returns an empty pipe to the pool; closes pipes that still hold data or
  /// do not fit in the pool, giving back their pages to the budget.
  void give_pipe(Pipe pipe) noexcept;
  /// Pages held by enlarged pipes now, beyond the kernel's default size.
  uint64_t extra_pipe_pages() const { return extra_pipe_pages_; }
  /// Idle pipes in the pool now. Any thread.
  size_t idle_pipes() const { return idle_count_.load(std::memory_order_relaxed); }
  /// Idle pipes in the pools of every data-path thread now.
  size_t idle_pipes_total() const noexcept;
  /// The scratch buffer of the connections' copy path, kCopyChunk bytes
  /// (worker/transfer_mode.h): one for the whole single-threaded loop, since
  /// what a short send() leaves behind is moved to the connection.
  char* copy_buffer() noexcept { return copy_buffer_.get(); }
  const ForwarderLimits& limits() const { return limits_; }

  EventLoop& loop() { return loop_; }
  ForwarderCounters& counters() { return counters_; }
  const ForwarderCounters& counters() const { return counters_; }
  size_t listener_count() const { return listeners_.size(); }
  LogRateLimit& conn_log() { return conn_log_; }

 private:
  /// An accepted client of a SPLICE rule whose pool had no host-side socket:
  /// it waits, in order, for the refill, until its deadline.
  struct Waiting {
    UniqueFd client;
    struct sockaddr_storage peer;
    uint16_t port;
    std::shared_ptr<const Route> route;
    int family;  // of its target
    uint64_t deadline_ns;
    ConnSlot slot;             // its slot under the connection limits
    SourceSlot source;         // its place under the per-source limit
    uint64_t accepted_ns = 0;  // when it was accepted, with --log-connections only
  };
  /// Connects `client` (accepted on `port` from `peer` under `route`) to
  /// its target with `sock`, a fresh socket of the target's family, and
  /// starts forwarding once the connect completes. `accepted_ns` is when
  /// it was accepted, for the connection log (0 while it is off). Needs
  /// `connect`, `setsockopt`, `getsockname`, `epoll_ctl`.
  void connect_target(UniqueFd client, const struct sockaddr_storage& peer, uint16_t port,
                      const std::shared_ptr<const Route>& route, UniqueFd sock, ConnSlot slot,
                      SourceSlot source, uint64_t accepted_ns) noexcept;
  /// Resets a client that never got a target socket, counting the failure.
  void fail_waiting(Waiting& w, const char* why) noexcept;
  /// With --log-connections, logs that the connection from `peer` under
  /// `route` was refused before sluice tried its target: `why`, and `err`
  /// when not 0.
  void log_refused(const Route& route, const struct sockaddr_storage& peer, const char* why,
                   int err = 0) noexcept;
  /// Takes `w` off the waiting list's count of its rule (the caller erases it).
  static void unwait(Waiting& w) noexcept { --w.route->counters->waiting; }
  /// Resets `client`, accepted under `route` from `peer`, whose source holds
  /// --max-connections-per-source already: counts it and logs (rate-limited).
  void refuse_source(UniqueFd client, const struct sockaddr_storage& peer,
                     const Route& route) noexcept;
  /// Resumes the parked listeners whose rule admits a connection now; the
  /// others stay parked.
  void resume_parked() noexcept;

  EventLoop& loop_;
  ForwarderLimits limits_;
  ForwarderCounters counters_;
  SocketPool* host_sockets_ = nullptr;
  /// The share of a forwarder made without one: declared before every
  /// holder of a ConnSlot or SourceSlot (waiting_, connections_), so that
  /// it is destroyed after them.
  std::unique_ptr<ConnShare> own_share_;
  ConnShare* share_;
  /// The other data-path threads (main thread only; set_data_threads).
  std::vector<DataThread*> threads_;
  /// Shared listeners by serial, for accept_punted (main thread only).
  std::unordered_map<uint64_t, TcpListener*> shared_;
  uint64_t next_serial_ = 1;
  /// Parked listeners may have room: look at them after the batch.
  bool recheck_parked_ = false;
  /// This thread's mailbox (set_inbox), and the clients other threads
  /// handed to it (hand_over): the queue under handed_mu_, its length
  /// readable without the lock.
  Mailbox* inbox_ = nullptr;
  std::mutex handed_mu_;
  std::vector<HandedClient> handed_;
  std::atomic<uint64_t> handed_count_{0};
  std::deque<Waiting> waiting_;  // at most max_connections (at_capacity)
  size_t splice_listeners_ = 0;  // SPLICE listeners served: the pool is wanted while > 0
  std::vector<std::unique_ptr<TcpListener>> listeners_;
  std::vector<std::unique_ptr<class TcpConnection>> connections_;
  std::vector<TcpListener*> parked_;
  std::vector<Pipe> idle_pipes_;
  std::atomic<size_t> idle_count_{0};  // idle_pipes_.size(), for other threads
  uint64_t extra_pipe_pages_ = 0;
  /// The copy path's scratch buffer (copy_buffer), kCopyChunk bytes.
  std::unique_ptr<char[]> copy_buffer_;
  /// Limit: connect and idle timeouts are checked every 100 ms, a tenth of
  /// the shortest --connect-timeout and --idle-timeout, so they fire at most
  /// that late; listeners parked at the descriptor limit retry as often.
  static constexpr uint64_t kTimeoutScanNs = 100'000'000;
  uint64_t next_timeout_scan_ns_ = 0;
  bool pipe_size_warned_ = false;
  /// The global limit's warning went out, and no slot was free since: it is
  /// logged once each time the limit is reached, not per paused listener.
  bool global_limit_warned_ = false;
  // Per-connection errors: at most 20 lines at once, then 5 per second.
  LogRateLimit conn_log_{20, 5};
};

}  // namespace sluice
