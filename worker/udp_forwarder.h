// The UDP data path: listeners that receive datagrams in batches, and flows
// that carry them to the target and the replies back.
//
// A datagram that arrives on a listener belongs to the flow of (listener,
// local address, client address and port); the first one creates the flow: a
// socket connect()ed to the target of the listener's rule (the same Route and
// port mapping as TCP). Datagrams go to the target on that socket; replies
// read from it go back to the client through the listener's socket, and
// leave from the address the client sent to (IP_PKTINFO / IPV6_PKTINFO,
// which the broker enabled on the socket before binding it), so wildcard and
// dual-stack listeners answer from the right address.
//
// Flows end after an idle timeout, when their listener closes (a commit that
// removes the port: the replies would have no way back), or when a commit
// with endRemovedFlows removes their rule. At the flow limit, datagrams of
// new clients are dropped and counted. Nothing is queued: a send that would
// block drops its datagrams. Edge-triggered and noexcept throughout.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "schema/worker_args.h"
#include "worker/conn_log.h"
#include "worker/event_loop.h"
#include "worker/forwarder.h"
#include "worker/udp_batch.h"
#include "worker/udp_flow_table.h"

namespace sluice {

/// Limits of the UDP data path (sluiced --udp-flows, --udp-idle-timeout; the
/// defaults and their reasons are in schema/worker_args.h).
struct UdpLimits {
  size_t max_flows = kUdpFlowsDefault;
  uint64_t idle_timeout_s = kUdpIdleTimeoutDefaultS;
  uint64_t hash_seed[2] = {0, 0};  // keys the flow table's hash (getrandom before the sandbox)
  bool log_flows = false;          // --log-connections: a line for every flow that ends
};

/// Totals of the UDP data path. Every datagram that is not forwarded is
/// counted under exactly one dropped_* reason.
struct UdpCounters {
  uint64_t to_target = 0;  // datagrams forwarded client -> target
  uint64_t to_client = 0;  // datagrams forwarded target -> client
  uint64_t bytes_to_target = 0;
  uint64_t bytes_to_client = 0;
  uint64_t flows_created = 0;
  uint64_t flows_expired = 0;        // ended by the idle timeout
  uint64_t flows_ended = 0;          // ended by a commit (port removed, endRemovedFlows)
  uint64_t flows_moved = 0;          // handed to the listener that took their port (a rebind)
  uint64_t dropped_flow_limit = 0;   // from new clients while the table was full
  uint64_t dropped_would_block = 0;  // a socket buffer was full
  uint64_t dropped_no_flow = 0;      // the flow's socket could not be created or connected
  uint64_t dropped_error = 0;        // a send failed, or a datagram was truncated
  uint64_t dropped_silenced = 0;     // arrived on a listener that lost its interface (silence)
  uint64_t target_errors = 0;        // ICMP errors reported on flow sockets (refused, unreachable)
  uint64_t active = 0;               // flows now
};

class UdpForwarder;
class SocketPool;

/// One bound UDP socket, received from the broker.
class UdpListener final : public Listener {
 public:
  /// `key` is what the socket is bound to; `id` is unique for the worker's
  /// lifetime and keys the listener's flows.
  UdpListener(UdpForwarder& owner, UniqueFd fd, const ListenerKey& key, uint64_t id,
              std::shared_ptr<const Route> route)
      : Listener(key.port, std::move(route)),
        owner_(owner),
        fd_(std::move(fd)),
        key_(key),
        family_(!key.dual_stack && addr_is_v4(key.addr) ? AF_INET : AF_INET6),
        id_(id) {}
  /// Reads and forwards datagrams (edge-triggered), at most
  /// kMaxBatchesPerWake batches, then parks if more may be queued.
  void on_event(uint32_t events) noexcept override;
  /// Forwards what is already queued (up to kMaxDrainBatches batches) before
  /// the socket is closed.
  void drain() noexcept override;
  /// Drops what it receives from now on (Listener::silence), counted.
  void silence() noexcept override { silenced_ = true; }
  /// Forwards again.
  void unsilence() noexcept override { silenced_ = false; }
  /// UdpForwarder::close_listener(this): ends its flows, closes the socket.
  void release() noexcept override;
  /// Closes the socket now; the object ignores events until it is freed.
  void close_socket() noexcept { fd_.reset(); }
  int fd() const override { return fd_.get(); }
  /// The socket's family: AF_INET, or AF_INET6 also for dual-stack.
  int family() const { return family_; }
  uint64_t id() const { return id_; }
  const ListenerKey& key() const { return key_; }

  std::vector<FlowId> flows;  // the flows answering through this socket
  /// The listeners that take this one's port in a rebind (hand_over): from
  /// then on, datagrams it still receives belong to flows of theirs.
  std::vector<UdpListener*> successors;
  /// The listeners this one replaces in a rebind, until they close: the
  /// flow of a client that sends here first (the kernel may prefer this
  /// socket at once) is taken over from them, not made anew.
  std::vector<UdpListener*> predecessors;
  bool parked = false;       // in the forwarder's resume list
  bool awaits_pool = false;  // a SPLICE listener not read until a refill of the pool

 private:
  UdpForwarder& owner_;
  UniqueFd fd_;
  ListenerKey key_;
  int family_;
  uint64_t id_;
};

/// One flow: a socket connected to the target, for one client of a listener.
class UdpFlow final : public EventHandler {
 public:
  /// Takes the connected socket; registers nothing.
  UdpFlow(UdpForwarder& owner, FlowId id, UniqueFd sock, UdpListener& listener,
          std::shared_ptr<const Route> route, const UdpEndpoint& peer, const LocalAddr& local)
      : owner_(owner),
        id_(id),
        sock_(std::move(sock)),
        listener_(&listener),
        route_(std::move(route)),
        peer_(peer),
        local_(local) {}
  /// Reads replies from the target and sends them to the client.
  void on_event(uint32_t events) noexcept override;
  /// Closes the socket now; the object ignores events until it is freed.
  void close_socket() noexcept { sock_.reset(); }

  int fd() const { return sock_.get(); }
  FlowId id() const { return id_; }
  UdpListener& listener() const { return *listener_; }
  /// Answers through `successor` from now on (close_listener's hand-over).
  void move_to(UdpListener& successor) noexcept { listener_ = &successor; }
  /// The rule the flow was created under (a commit may re-point its listener).
  const Route& route() const { return *route_; }
  const UdpEndpoint& peer() const { return peer_; }
  const LocalAddr& local() const { return local_; }

  size_t listener_slot = 0;  // index in listener().flows: O(1) removal
  /// The local endpoint of the flow socket, recorded for the loop guard
  /// (valid when `guarded`).
  Endpoint own_endpoint;
  bool guarded = false;
  bool parked = false;  // in the forwarder's resume list
  /// A target error of this flow was logged: one warning per flow (and the
  /// forwarder's rate limit over all), not one per datagram a client retries.
  bool target_error_logged = false;
  /// What it moved, for the connection log (--log-connections); empty
  /// while the log is off.
  std::unique_ptr<FlowRecord> record;

 private:
  UdpForwarder& owner_;
  FlowId id_;
  UniqueFd sock_;
  UdpListener* listener_;  // never null
  std::shared_ptr<const Route> route_;
  UdpEndpoint peer_;
  LocalAddr local_;
};

class UdpForwarder final : public Ticker {
 public:
  /// Limit: batches one socket reads per wake-up (4 x 32 datagrams).
  /// Fairness: a flood on one port or flow cannot starve the others for a
  /// whole event batch; a socket that stops early parks and resumes right
  /// after the batch (edge triggering would not report it again).
  static constexpr int kMaxBatchesPerWake = 4;
  /// Limit: the receive buffer asked for on every UDP socket of the data
  /// path (listeners and flow sockets): 1 MiB, which the kernel doubles for
  /// its bookkeeping and caps at net.core.rmem_max. Why: the default
  /// (net.core.rmem_default, 208 KiB) holds about 1 ms of a 1 Gbit/s stream
  /// of 1400-byte datagrams, so a worker that waits longer for a core (which
  /// it shares with both ends on a small host) drops datagrams; 2 MiB holds
  /// about 10 ms. A limit, not an allocation: memory is used only while
  /// datagrams wait, and all UDP sockets together stay within
  /// net.ipv4.udp_mem. The seccomp row "setsockopt SOL_SOCKET SO_RCVBUF".
  static constexpr int kReceiveBufferBytes = 1 << 20;
  /// Limit: batches a closing listener forwards. 96 x 32 = 3072 datagrams,
  /// more than a 2 MiB receive buffer (kReceiveBufferBytes, doubled) can
  /// hold (each datagram costs at least 768 bytes of it), so everything
  /// queued when the drain began is forwarded.
  static constexpr int kMaxDrainBatches = 96;
  /// Limit: flows expired per tick. Each costs an epoll_ctl and a close; 1024
  /// keep a tick under a millisecond, and the rest follow right after the
  /// next batch of events instead of stalling this one.
  static constexpr size_t kMaxExpiriesPerTick = 1024;

  /// Creates an empty UDP data path on `loop` with `limits`.
  UdpForwarder(EventLoop& loop, UdpLimits limits);
  /// Unregisters every socket; closes them.
  ~UdpForwarder() override;

  /// Flows of SPLICE rules take their socket from `pool` (sluiced's
  /// namespace) instead of making one. A SPLICE listener reads no more
  /// datagrams at a time than the pools hold sockets (pool_batch_cap), and
  /// none while a pool is empty and its refill on its way: what is queued
  /// waits in the kernel until the refill came (host_sockets_ready), so a
  /// burst of new clients (a DNS client makes a flow per query) or what an
  /// adopted listener queued while no worker ran is not dropped. A new flow
  /// that still finds no socket (sluiced could not refill) drops its
  /// datagrams, counted as dropped_no_flow.
  /// Set before any SPLICE listener is served.
  void set_host_sockets(SocketPool* pool) { host_sockets_ = pool; }
  /// `room` returns how many more descriptors the worker may take without
  /// eating into the reserve kept for connections and control clients
  /// (FdUse::room, worker/fd_budget.h). A new flow is made only while it is
  /// above kFlowListenerHeadroom: flows come from whoever sends a datagram,
  /// spoofed sources included, and must not take the descriptors that the
  /// control socket, commits and TCP accepts need. Without it, only
  /// --udp-flows limits them.
  void set_descriptor_room(std::function<uint64_t()> room) { descriptor_room_ = std::move(room); }
  /// A refill of the host-side UDP sockets arrived: once no pool of them
  /// still waits for its refill empty, reads the SPLICE listeners that
  /// waited for it. Needs what read_listener needs.
  void host_sockets_ready() noexcept;
  /// With --log-connections, logs a line for every flow still open as the
  /// worker stops (they close with the forwarder).
  void log_open_flows() noexcept;

  /// Starts serving the bound UDP socket `fd` of `key` with `route`; in a
  /// rebind, `predecessors` are the listeners it replaces, whose flows it
  /// takes over as their clients send to it. Returns the listener (owned by
  /// the forwarder), or an Error if epoll refuses the fd. Forwards what is
  /// already queued.
  Result<UdpListener*> add_listener(UniqueFd fd, const ListenerKey& key,
                                    std::shared_ptr<const Route> route,
                                    std::vector<UdpListener*> predecessors = {});
  /// A rebind: `successors` (served already) take the port of `listener`,
  /// which serves on until its settle time ends and it closes. Its flows
  /// move to the first successor that covers their local address
  /// (listener_covers), keeping their socket toward the target, so that a
  /// client's exchange goes on through the rebind (the target sees the same
  /// source port) and its replies leave through the successor's socket. A
  /// datagram that still reaches `listener` from now on belongs to the flow
  /// on that successor, new or moved, under the successor's rule: the
  /// kernel may prefer either socket while both are bound. Flows whose local
  /// address no successor covers stay, and end when `listener` closes.
  void hand_over(UdpListener* listener, std::vector<UdpListener*> successors) noexcept;
  /// Stops serving `listener` and closes its socket. Its flows end (their
  /// replies would have no socket to leave from), but for those a
  /// successor covers (hand_over), which move there.
  void close_listener(UdpListener* listener) noexcept;
  /// Ends every flow whose rule matches `pred` (a commit's endRemovedFlows);
  /// returns how many were ended.
  size_t end_flows(const std::function<bool(const Route&)>& pred) noexcept;
  /// Expires idle flows and resumes parked sockets.
  void on_tick(uint64_t now_ns) noexcept override;

  /// Reads up to `max_batches` batches from `listener` and forwards them,
  /// creating flows as needed. Returns true when the socket's queue was
  /// emptied. Needs `recvmmsg`, `sendmmsg`, `socket`, `connect`, `epoll_ctl`.
  bool read_listener(UdpListener& listener, int max_batches) noexcept;
  /// Reads up to `max_batches` batches of replies from `flow` and sends them
  /// to its client from the listener's socket. Needs `recvmmsg`, `sendmmsg`.
  void read_flow(UdpFlow& flow, int max_batches) noexcept;

  const UdpCounters& counters() const { return counters_; }
  size_t listener_count() const { return listeners_.size(); }
  size_t flow_count() const { return table_.size(); }
  const UdpLimits& limits() const { return limits_; }

 private:
  /// Returns the flow for datagram `i` of the batch (key `key`), creating
  /// it; nullptr when it cannot exist now, after counting the `run`
  /// datagrams it would have carried as dropped.
  UdpFlow* flow_for(UdpListener& listener, const FlowKey& key, const LocalAddr& local, size_t i,
                    size_t run, uint64_t now_ns) noexcept;
  /// The first of `listener.successors` that serves datagrams to `local`;
  /// nullptr when none does (or there are none).
  UdpListener* successor_for(const UdpListener& listener, const Addr& local,
                             bool local_known) const noexcept;
  /// Moves every flow of `listener` that a successor covers there.
  void move_flows(UdpListener& listener) noexcept;
  /// Moves `flow`, whose key names `to` already (move_to_listener), from its
  /// listener's list to `to`'s.
  void move_flow(UdpFlow* flow, UdpListener& to) noexcept;
  /// The flow of `key` (on `listener`) that a predecessor of `listener` has
  /// for the same client and local address, moved to `listener`; nullptr
  /// when none has one.
  UdpFlow* take_over_flow(UdpListener& listener, const FlowKey& key,
                          const LocalAddr& local) noexcept;
  /// Ends `flow`: unregisters and closes its socket, frees its slot, and
  /// frees the object after the batch.
  void end_flow(UdpFlow* flow, FlowEnd how = FlowEnd::kRemoved) noexcept;
  /// With the connection log on (the flow has a record), logs `flow`'s line:
  /// it ended `how` at `now_ns`.
  void log_flow_end(const UdpFlow& flow, FlowEnd how, uint64_t now_ns) noexcept;
  /// Puts a listener or flow that stopped early on its resume list, to be
  /// read again right after the current batch of events.
  template <typename T>
  void park(T* socket, std::vector<T*>& list) noexcept;
  /// Takes a listener or flow off its resume list, if it is there.
  template <typename T>
  void unpark(T* socket, std::vector<T*>& list) noexcept;
  /// True while a pool of host-side UDP sockets is empty with its refill
  /// on the way: a SPLICE listener's new flows would find no socket now.
  bool pool_pending() const noexcept;
  /// How many datagrams a SPLICE listener may read in its next batch: the
  /// fewest host-side sockets ready in a pool that has some or is being
  /// refilled, at most kUdpBatch; 0 exactly while pool_pending(). Needs host_sockets_.
  size_t pool_batch_cap() const noexcept;
  /// Counts a send's outcome into the totals of one direction and into the
  /// counters of the flow's rule.
  void account(const SendResult& r, bool to_target, RuleCounters& rule) noexcept;

  EventLoop& loop_;
  UdpLimits limits_;
  UdpCounters counters_;
  SocketPool* host_sockets_ = nullptr;
  size_t splice_listeners_ = 0;  // SPLICE listeners served: the pool is wanted while > 0
  FlowTable table_;
  UdpBatch batch_;
  uint64_t next_listener_id_ = 1;
  std::vector<std::unique_ptr<UdpListener>> listeners_;
  std::vector<std::unique_ptr<UdpFlow>> flows_;  // indexed by FlowId
  std::vector<UdpListener*> parked_listeners_;   // stopped early: read again after the batch
  std::vector<UdpListener*> pool_waiters_;       // awaits_pool: read at the next refill
  std::vector<UdpFlow*> parked_flows_;
  /// Local endpoints of the flow sockets of guarded rules (Route::guard_loops),
  /// with their rule: a datagram from one of them came back into sluice.
  std::unordered_map<Endpoint, const Route*, EndpointHash> own_endpoints_;
  // Per-datagram errors: at most 20 lines at once, then 5 per second.
  LogRateLimit log_{20, 5};
  // The flow-limit warning: one line per second at most, with the running count.
  LogRateLimit limit_log_{1, 1};
  std::function<uint64_t()> descriptor_room_;  // set_descriptor_room
};

}  // namespace sluice
