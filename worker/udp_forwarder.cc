#include "worker/udp_forwarder.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "base/strings.h"
#include "worker/fd_budget.h"
#include "worker/socket_pool.h"

namespace sluice {
namespace {

/// Nanoseconds in a second.
constexpr uint64_t kNsPerSecond = 1000000000ULL;

/// Asks for a receive buffer of UdpForwarder::kReceiveBufferBytes on `fd`.
/// Tuning, not correctness: a refusal leaves the kernel's default.
void enlarge_receive_buffer(int fd) noexcept {
  int bytes = UdpForwarder::kReceiveBufferBytes;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

/// True when datagram `i` of `batch` belongs to `key` (same sender, same
/// local address; the listener is the same for the whole batch).
bool same_flow(const UdpBatch& batch, size_t i, const FlowKey& key) noexcept {
  return endpoint_from_sockaddr(batch.name(i)) == key.peer && batch.local(i).addr == key.local;
}

}  // namespace

void UdpListener::on_event(uint32_t /*events*/) noexcept {
  if (!fd_.valid()) return;  // closed by a commit earlier in this batch
  if (awaits_pool) return;   // read in full when the host-side sockets came
  owner_.read_listener(*this, UdpForwarder::kMaxBatchesPerWake);
}

void UdpListener::drain() noexcept {
  if (!fd_.valid()) return;
  if (!owner_.read_listener(*this, UdpForwarder::kMaxDrainBatches)) {
    LOG_WARN("UDP port %u closed while datagrams kept arriving: the rest are dropped", port_);
  }
}

void UdpListener::release() noexcept {
  owner_.close_listener(this);
}

void UdpFlow::on_event(uint32_t /*events*/) noexcept {
  if (!sock_.valid()) return;  // ended earlier in this batch
  owner_.read_flow(*this, UdpForwarder::kMaxBatchesPerWake);
}

UdpForwarder::UdpForwarder(EventLoop& loop, UdpLimits limits)
    : loop_(loop),
      limits_(limits),
      table_(limits.max_flows, limits.idle_timeout_s * kNsPerSecond, limits.hash_seed[0],
             limits.hash_seed[1]) {}

UdpForwarder::~UdpForwarder() {
  for (auto& flow : flows_) {
    if (flow) loop_.remove(flow->fd());
  }
  for (auto& listener : listeners_) loop_.remove(listener->fd());
}

Result<UdpListener*> UdpForwarder::add_listener(UniqueFd fd, const ListenerKey& key,
                                                std::shared_ptr<const Route> route,
                                                std::vector<UdpListener*> predecessors) {
  auto listener = std::make_unique<UdpListener>(*this, std::move(fd), key, next_listener_id_++,
                                                std::move(route));
  UdpListener* raw = listener.get();
  raw->predecessors = std::move(predecessors);  // before the first read below
  enlarge_receive_buffer(raw->fd());
  auto added = loop_.add(raw->fd(), EPOLLIN | EPOLLET, raw);
  if (!added) return Err(added.error());
  raw->slot = listeners_.size();
  listeners_.push_back(std::move(listener));
  if (key.pif == Pif::kSplice && host_sockets_ != nullptr && splice_listeners_++ == 0) {
    host_sockets_->set_wanted(Proto::kUdp, true);  // filled before the first flow
  }
  // Datagrams may have arrived between the broker's bind and now; edge
  // triggering reports only new ones, so read now. A SPLICE listener whose
  // pools wait for their refill reads nothing yet: what is queued (a
  // listener adopted after a worker restart holds what arrived while no
  // worker ran) waits in the kernel for it (pool_batch_cap).
  read_listener(*raw, kMaxBatchesPerWake);
  return raw;
}

bool UdpForwarder::pool_pending() const noexcept {
  for (int family : {AF_INET, AF_INET6}) {
    if (host_sockets_->ready(family, Proto::kUdp) == 0 &&
        host_sockets_->refilling(family, Proto::kUdp)) {
      return true;
    }
  }
  return false;
}

void UdpForwarder::host_sockets_ready() noexcept {
  // A refill that came back short or empty (sluiced out of descriptors)
  // ends the wait too: the pool asks no more, and datagrams of new flows are
  // then dropped and counted, as for any empty pool.
  if (pool_waiters_.empty() || host_sockets_ == nullptr || pool_pending()) return;
  std::vector<UdpListener*> waiters;
  waiters.swap(pool_waiters_);
  for (UdpListener* l : waiters) l->awaits_pool = false;
  // Reading ends no flow and closes no listener, so every pointer stays
  // valid (a closed one was taken off the list by close_listener).
  for (UdpListener* l : waiters) l->on_event(EPOLLIN);
}

UdpListener* UdpForwarder::successor_for(const UdpListener& listener, const Addr& local,
                                         bool local_known) const noexcept {
  for (UdpListener* s : listener.successors) {
    if (listener_covers(s->key(), listener.key(), local, local_known)) return s;
  }
  return nullptr;
}

void UdpForwarder::move_flows(UdpListener& listener) noexcept {
  // Walks the list from its end; a flow that stays is swapped before `i`.
  for (size_t i = listener.flows.size(); i-- > 0;) {
    UdpFlow* flow = flows_[listener.flows[i]].get();
    UdpListener* to = successor_for(listener, flow->local().addr, flow->local().known);
    // A client with a flow on the successor already keeps that one.
    if (to == nullptr || !table_.move_to_listener(flow->id(), to->id())) continue;
    move_flow(flow, *to);  // swaps the list's last entry into `i`: one already looked at
  }
}

void UdpForwarder::move_flow(UdpFlow* flow, UdpListener& to) noexcept {
  std::vector<FlowId>& list = flow->listener().flows;
  const size_t slot = flow->listener_slot;
  CHECK(slot < list.size() && list[slot] == flow->id());
  if (slot != list.size() - 1) {
    list[slot] = list.back();
    flows_[list[slot]]->listener_slot = slot;
  }
  list.pop_back();
  flow->listener_slot = to.flows.size();
  to.flows.push_back(flow->id());
  flow->move_to(to);
  ++counters_.flows_moved;
}

UdpFlow* UdpForwarder::take_over_flow(UdpListener& listener, const FlowKey& key,
                                      const LocalAddr& local) noexcept {
  for (UdpListener* p : listener.predecessors) {
    if (!listener_covers(listener.key(), p->key(), local.addr, local.known)) continue;
    FlowKey theirs = key;
    theirs.listener = p->id();
    const FlowId id = table_.find(theirs);
    if (id == kNoFlow || !table_.move_to_listener(id, listener.id())) continue;
    UdpFlow* flow = flows_[id].get();
    move_flow(flow, listener);
    return flow;
  }
  return nullptr;
}

void UdpForwarder::hand_over(UdpListener* listener, std::vector<UdpListener*> successors) noexcept {
  std::erase(successors, listener);
  listener->successors = std::move(successors);
  move_flows(*listener);
}

void UdpForwarder::close_listener(UdpListener* listener) noexcept {
  size_t slot = listener->slot;
  CHECK(slot < listeners_.size() && listeners_[slot].get() == listener);
  // A flow the successor of a rebind covers goes on there (a drain after
  // hand_over may have made one); the others would have no socket to leave
  // from: they end, before the socket closes.
  if (!listener->successors.empty()) move_flows(*listener);
  // Its successors are all that may list it as a predecessor (hand_over
  // gave each listener that takes its port).
  for (UdpListener* s : listener->successors) std::erase(s->predecessors, listener);
  while (!listener->flows.empty()) {
    end_flow(flows_[listener->flows.back()].get());
    ++counters_.flows_ended;
  }
  loop_.remove(listener->fd());
  unpark(listener, parked_listeners_);
  if (listener->awaits_pool) std::erase(pool_waiters_, listener);
  if (listener->route()->pif == Pif::kSplice && host_sockets_ != nullptr &&
      --splice_listeners_ == 0) {
    host_sockets_->set_wanted(Proto::kUdp, false);
  }
  // Close now, not when the batch ends: a client reading the commit's reply
  // must find the port closed.
  listener->close_socket();
  loop_.retire(std::move(listeners_[slot]));
  if (slot != listeners_.size() - 1) {
    listeners_[slot] = std::move(listeners_.back());
    listeners_[slot]->slot = slot;
  }
  listeners_.pop_back();
}

size_t UdpForwarder::end_flows(const std::function<bool(const Route&)>& pred) noexcept {
  // Collect first: ending a flow changes its listener's list.
  std::vector<UdpFlow*> doomed;
  for (auto& flow : flows_) {
    if (flow && pred(flow->route())) doomed.push_back(flow.get());
  }
  for (UdpFlow* flow : doomed) end_flow(flow, FlowEnd::kRuleRemoved);
  counters_.flows_ended += doomed.size();
  return doomed.size();
}

void UdpForwarder::on_tick(uint64_t now_ns) noexcept {
  size_t expired = 0;
  for (FlowId id = table_.oldest_expired(now_ns); id != kNoFlow;
       id = table_.oldest_expired(now_ns)) {
    if (expired == kMaxExpiriesPerTick) {
      loop_.request_immediate_tick();  // the rest right after the next batch
      break;
    }
    end_flow(flows_[id].get(), FlowEnd::kIdle);
    ++expired;
  }
  counters_.flows_expired += expired;
  if (expired > 0) {
    LOG_DEBUG("expired %zu idle UDP flow%s, %zu left", expired, expired == 1 ? "" : "s",
              table_.size());
  }
  if (parked_listeners_.empty() && parked_flows_.empty()) return;
  std::vector<UdpListener*> listeners;
  std::vector<UdpFlow*> flows;
  listeners.swap(parked_listeners_);
  flows.swap(parked_flows_);
  // Clear every flag before resuming any: a resumed socket may park again.
  for (UdpListener* l : listeners) l->parked = false;
  for (UdpFlow* f : flows) f->parked = false;
  // Nothing here ends a flow or closes a listener, so every pointer stays
  // valid (an ended one was taken off the list by unpark()).
  for (UdpListener* l : listeners) l->on_event(EPOLLIN);
  for (UdpFlow* f : flows) f->on_event(EPOLLIN);
}

size_t UdpForwarder::pool_batch_cap() const noexcept {
  size_t cap = kUdpBatch;
  for (int family : {AF_INET, AF_INET6}) {
    const size_t ready = host_sockets_->ready(family, Proto::kUdp);
    // A family with no socket and no refill open has no pool (the host has
    // no such family) or sluiced could not fill it: nothing to wait for.
    if (ready == 0 && !host_sockets_->refilling(family, Proto::kUdp)) continue;
    cap = std::min(cap, ready);
  }
  return cap;
}

bool UdpForwarder::read_listener(UdpListener& listener, int max_batches) noexcept {
  const bool pooled = listener.route()->pif == Pif::kSplice && host_sockets_ != nullptr;
  for (int b = 0; b < max_batches; ++b) {
    if (listener.fd() < 0) return true;
    // A SPLICE listener reads no more datagrams than the pool has sockets
    // for, each a new flow at worst; at none, it waits for the refill on
    // its way, and what is queued stays in the kernel meanwhile.
    const size_t cap = pooled ? pool_batch_cap() : kUdpBatch;
    if (cap == 0) {
      if (!listener.awaits_pool) {
        listener.awaits_pool = true;
        pool_waiters_.push_back(&listener);
      }
      return true;
    }
    int n = batch_.receive(listener.fd(), cap);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR) continue;
      // Out of memory (ENOMEM) or similar: try again after this batch rather
      // than lose the edge.
      if (log_.allow()) {
        LOG_WARN("UDP port %u: recvmmsg: %s", listener.port(), errno_text(errno).c_str());
      }
      park(&listener, parked_listeners_);
      return false;
    }
    uint64_t now = monotonic_ns();
    size_t count = static_cast<size_t>(n);
    if (listener.silenced()) {
      counters_.dropped_silenced += count;
      listener.route()->counters->dropped += count;
      if (count < cap) return true;
      continue;
    }
    for (size_t i = 0; i < count;) {
      if (batch_.truncated(i)) {
        ++counters_.dropped_error;
        ++listener.route()->counters->dropped;
        ++i;
        continue;
      }
      LocalAddr local = batch_.local(i);
      FlowKey key{listener.id(), local.addr, endpoint_from_sockaddr(batch_.name(i))};
      // A run: the datagrams of one flow that follow each other in the batch
      // go out in one sendmmsg().
      size_t end = i + 1;
      while (end < count && !batch_.truncated(end) && same_flow(batch_, end, key)) ++end;
      UdpFlow* flow = flow_for(listener, key, local, i, end - i, now);
      if (flow != nullptr) {
        const SendResult sent = batch_.send_connected(flow->fd(), i, end);
        account(sent, true, *flow->route().counters);
        if (flow->record) {
          flow->record->datagrams_to_target += sent.sent;
          flow->record->bytes_to_target += sent.bytes;
        }
        table_.touch(flow->id(), now);
      }
      i = end;
    }
    if (count < cap) return true;  // a short batch: the queue is empty
  }
  park(&listener, parked_listeners_);
  return false;
}

void UdpForwarder::read_flow(UdpFlow& flow, int max_batches) noexcept {
  for (int b = 0; b < max_batches; ++b) {
    if (flow.fd() < 0) return;
    int n = batch_.receive(flow.fd());
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno != EINTR) {
        // An ICMP error for an earlier datagram (the target port is closed,
        // or unreachable): reported once, and already cleared. UDP has no
        // way to pass it on; the flow stays for the target's return.
        const int err = errno;
        ++counters_.target_errors;
        ++flow.route().counters->target_errors;
        if (!flow.target_error_logged && log_.allow()) {
          flow.target_error_logged = true;
          LOG_WARN("%s",
                   describe_udp_target_error(
                       flow.route(), route_target_port(flow.route(), flow.listener().port()), err)
                       .c_str());
        }
      }
      continue;
    }
    size_t count = static_cast<size_t>(n);
    for (size_t i = 0; i < count; ++i) {
      if (batch_.truncated(i)) {
        ++counters_.dropped_error;
        ++flow.route().counters->dropped;
      }
    }
    UdpListener& l = flow.listener();
    const SendResult sent = batch_.send_to(l.fd(), l.family(), flow.peer(), flow.local(), 0, count);
    account(sent, false, *flow.route().counters);
    if (flow.record) {
      flow.record->datagrams_to_client += sent.sent;
      flow.record->bytes_to_client += sent.bytes;
    }
    table_.touch(flow.id(), monotonic_ns());
    if (count < kUdpBatch) return;
  }
  park(&flow, parked_flows_);
}

UdpFlow* UdpForwarder::flow_for(UdpListener& listener, const FlowKey& key, const LocalAddr& local,
                                size_t i, size_t run, uint64_t now_ns) noexcept {
  if (!listener.successors.empty()) {
    // A rebind handed this port over: the flow is the successor's.
    if (UdpListener* to = successor_for(listener, local.addr, local.known)) {
      FlowKey theirs = key;
      theirs.listener = to->id();
      return flow_for(*to, theirs, local, i, run, now_ns);
    }
  }
  FlowId id = table_.find(key);
  if (id != kNoFlow) return flows_[id].get();
  if (!listener.predecessors.empty()) {
    // A rebind's new socket that the kernel prefers gets the clients of the
    // one it replaces before the hand-over: they keep their flows.
    if (UdpFlow* flow = take_over_flow(listener, key, local)) return flow;
  }
  if (!own_endpoints_.empty()) {
    auto own = own_endpoints_.find(Endpoint{key.peer.addr, key.peer.port});
    if (own != own_endpoints_.end()) {
      // A forwarding loop: the datagrams came from sluice's own flow socket.
      // Dropped, not forwarded again, so they cannot circle for ever.
      listener.route()->counters->loops += run;
      listener.route()->counters->dropped += run;
      if (log_.allow()) {
        LOG_WARN(
            "forwarding loop: %s sent datagrams to one of this host's own addresses, and they "
            "came back on UDP port %u under %s; dropped. Give that rule a target that is not an "
            "address of this host, or listen on specific addresses instead of a wildcard",
            own->second->text.c_str(), listener.port(), listener.route()->text.c_str());
      }
      return nullptr;
    }
  }
  if (table_.full()) {
    counters_.dropped_flow_limit += run;
    listener.route()->counters->dropped += run;
    if (limit_log_.allow()) {
      LOG_WARN(
          "UDP flow limit of %zu reached: datagrams from new clients are dropped (%llu so "
          "far); flows free up after %llu s idle; raise sluiced --udp-flows or lower "
          "--udp-idle-timeout",
          table_.capacity(), static_cast<unsigned long long>(counters_.dropped_flow_limit),
          static_cast<unsigned long long>(limits_.idle_timeout_s));
    }
    return nullptr;
  }
  if (descriptor_room_ && descriptor_room_() <= kFlowListenerHeadroom) {
    counters_.dropped_no_flow += run;
    listener.route()->counters->dropped += run;
    if (limit_log_.allow()) {
      LOG_WARN(
          "no descriptor for a new UDP flow: the worker's RLIMIT_NOFILE is taken but for what "
          "is kept for connections, control clients and the listeners of later commits (%zu "
          "flows open); datagrams from "
          "new clients are dropped until flows end (after %llu s idle); raise sluiced's "
          "LimitNOFILE= or ulimit -n, or lower --udp-flows",
          table_.size(), static_cast<unsigned long long>(limits_.idle_timeout_s));
    }
    return nullptr;
  }
  const std::shared_ptr<const Route>& route = listener.route();
  struct sockaddr_storage target;
  socklen_t target_len = target_sockaddr(*route, batch_.name(i), listener.port(), &target);
  // A SPLICE rule's target is on sluiced's side: its socket comes from sluiced.
  const bool from_pool = route->pif == Pif::kSplice && host_sockets_ != nullptr;
  UniqueFd sock =
      from_pool ? host_sockets_->take(target.ss_family, Proto::kUdp)
                : UniqueFd(socket(target.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!sock.valid() ||
      connect(sock.get(), reinterpret_cast<struct sockaddr*>(&target), target_len) != 0) {
    // EMFILE at the descriptor limit, ENETUNREACH for a target family the
    // namespace has no route for, an empty pool of host-side sockets (its
    // refill is on its way): each datagram of a new client tries again.
    counters_.dropped_no_flow += run;
    route->counters->dropped += run;
    if (log_.allow()) {
      if (from_pool && !sock.valid()) {
        LOG_WARN("%s: no host-side socket ready for a new UDP flow (sluiced is asked for more)",
                 route->text.c_str());
      } else {
        LOG_WARN("%s: %s for a new UDP flow: %s", route->text.c_str(),
                 sock.valid() ? "connect" : "socket", errno_text(errno).c_str());
      }
    }
    return nullptr;
  }
  Endpoint own;
  bool guard = false;
  if (route->guard_loops) {
    // The kernel picked the local endpoint in connect(). Needs `getsockname`.
    struct sockaddr_storage mine;
    socklen_t mine_len = sizeof(mine);
    if (getsockname(sock.get(), reinterpret_cast<struct sockaddr*>(&mine), &mine_len) == 0) {
      own = endpoint_of(mine);
      guard = true;
    }
  }
  enlarge_receive_buffer(sock.get());
  id = table_.insert(key, now_ns);
  CHECK(id != kNoFlow);  // not full: checked above
  if (flows_.size() < table_.id_bound()) flows_.resize(table_.id_bound());
  flows_[id] =
      std::make_unique<UdpFlow>(*this, id, std::move(sock), listener, route, key.peer, local);
  UdpFlow* flow = flows_[id].get();
  if (limits_.log_flows) {
    flow->record = std::make_unique<FlowRecord>();
    flow->record->start_ns = now_ns;
  }
  if (guard) flow->guarded = own_endpoints_.emplace(flow->own_endpoint = own, route.get()).second;
  if (auto added = loop_.add(flow->fd(), EPOLLIN | EPOLLET, flow); !added) {
    counters_.dropped_no_flow += run;
    route->counters->dropped += run;
    if (log_.allow()) LOG_WARN("%s: %s", route->text.c_str(), added.error().message.c_str());
    if (flow->guarded) own_endpoints_.erase(flow->own_endpoint);
    flows_[id].reset();
    table_.erase(id);
    return nullptr;
  }
  flow->listener_slot = listener.flows.size();
  listener.flows.push_back(id);
  ++counters_.flows_created;
  ++counters_.active;
  ++route->counters->flows_created;
  ++route->counters->flows_active;
  return flow;
}

void UdpForwarder::log_open_flows() noexcept {
  if (!limits_.log_flows) return;
  const uint64_t now = monotonic_ns();
  for (const auto& flow : flows_) {
    if (flow) log_flow_end(*flow, FlowEnd::kStopped, now);
  }
}

void UdpForwarder::log_flow_end(const UdpFlow& flow, FlowEnd how, uint64_t now_ns) noexcept {
  if (!flow.record) return;
  const Endpoint client{flow.peer().addr, flow.peer().port};
  LOG_INFO("%s", flow_ended_line(flow.route(), client, *flow.record, now_ns, how).c_str());
}

void UdpForwarder::end_flow(UdpFlow* flow, FlowEnd how) noexcept {
  FlowId id = flow->id();
  CHECK(id < flows_.size() && flows_[id].get() == flow);
  if (flow->record) log_flow_end(*flow, how, monotonic_ns());
  loop_.remove(flow->fd());
  if (flow->guarded) own_endpoints_.erase(flow->own_endpoint);
  flow->close_socket();
  unpark(flow, parked_flows_);
  // Swap-remove from the listener's list.
  std::vector<FlowId>& list = flow->listener().flows;
  size_t slot = flow->listener_slot;
  CHECK(slot < list.size() && list[slot] == id);
  if (slot != list.size() - 1) {
    list[slot] = list.back();
    flows_[list[slot]]->listener_slot = slot;
  }
  list.pop_back();
  table_.erase(id);
  --flow->route().counters->flows_active;
  loop_.retire(std::move(flows_[id]));
  --counters_.active;
}

template <typename T>
void UdpForwarder::park(T* socket, std::vector<T*>& list) noexcept {
  loop_.request_immediate_tick();
  if (socket->parked) return;
  socket->parked = true;
  list.push_back(socket);
}

template <typename T>
void UdpForwarder::unpark(T* socket, std::vector<T*>& list) noexcept {
  if (!socket->parked) return;
  socket->parked = false;
  std::erase(list, socket);
}

void UdpForwarder::account(const SendResult& r, bool to_target, RuleCounters& rule) noexcept {
  (to_target ? counters_.to_target : counters_.to_client) += r.sent;
  (to_target ? counters_.bytes_to_target : counters_.bytes_to_client) += r.bytes;
  counters_.dropped_would_block += r.would_block;
  counters_.dropped_error += r.failed;
  (to_target ? rule.datagrams_to_target : rule.datagrams_to_client) += r.sent;
  (to_target ? rule.bytes_to_target : rule.bytes_to_client) += r.bytes;
  rule.dropped += r.would_block + r.failed;
  if (r.failed > 0 && log_.allow()) {
    LOG_WARN("UDP send %s: %s (%zu datagram%s dropped)", to_target ? "to a target" : "to a client",
             errno_text(r.last_errno).c_str(), r.failed, r.failed == 1 ? "" : "s");
  }
}

}  // namespace sluice
