#include "worker/forwarder.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/strings.h"
#include "worker/conn_log.h"
#include "worker/data_thread.h"
#include "worker/socket_pool.h"
#include "worker/tcp_connection.h"
#include "worker/udp_batch.h"

namespace sluice {
namespace {

/// The kernel's default pipe size, and its page size (x86-64, arm64 4K).
constexpr size_t kDefaultPipeBytes = 65536;
constexpr size_t kPageBytes = 4096;

/// Sets an int socket option, ignoring failure (tuning, not correctness).
void set_int_option(int fd, int level, int name, int value) noexcept {
  setsockopt(fd, level, name, &value, sizeof(value));
}

/// Sends an RST instead of a FIN when `fd` is closed (SO_LINGER 0).
void set_reset_on_close(int fd) noexcept {
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/// The largest TTL (IPv4) and hop limit (IPv6) a packet can carry.
constexpr int kMaxTtl = 255;

/// Sets the minimum TTL that `fd` accepts segments with (IP_MINTTL: IPv4,
/// also IPv4 on a dual-stack socket) and, when `v6`, the minimum hop limit
/// (IPV6_MINHOPCOUNT). Returns false when the kernel refused either.
bool set_min_ttl(int fd, bool v6, int value) noexcept {
  bool ok = setsockopt(fd, IPPROTO_IP, IP_MINTTL, &value, sizeof(value)) == 0;
  if (v6) ok = setsockopt(fd, IPPROTO_IPV6, IPV6_MINHOPCOUNT, &value, sizeof(value)) == 0 && ok;
  return ok;
}

}  // namespace

size_t EndpointHash::operator()(const Endpoint& e) const noexcept {
  uint64_t h = 1469598103934665603ULL;
  for (uint8_t b : e.addr) h = (h ^ b) * 1099511628211ULL;
  h = (h ^ (e.port & 0xff)) * 1099511628211ULL;
  h = (h ^ (e.port >> 8)) * 1099511628211ULL;
  return static_cast<size_t>(h);
}

Endpoint endpoint_of(const struct sockaddr_storage& sa) noexcept {
  const UdpEndpoint e = endpoint_from_sockaddr(sa);  // the one sockaddr reader; TCP has no scope
  return Endpoint{e.addr, e.port};
}

namespace {

/// Returns what to do about an error `err` in reaching a rule's target, after
/// "; ", for the common causes (nothing listening, no route); "" for others.
std::string target_error_advice(int err) {
  switch (err) {
    case ECONNREFUSED:
      return "; nothing listens there: start the server, or correct the rule's target";
    case ENETUNREACH:
    case EHOSTUNREACH:
      return "; the target address has no route from here: check it, and the routes";
    default:
      return "";
  }
}

}  // namespace

std::string describe_connect_failure(const Route& route, uint16_t target_port, int err) {
  // An auto-scan rule's port is bound on the other side (the scan counted
  // it), so a refusal means the server is not on the loopback address (or
  // wildcard) the connection went to, or it just closed.
  const std::string advice =
      route.scan && err == ECONNREFUSED
          ? "; auto-scan saw the port bound on the other side, so the server there either just "
            "closed it or listens on one address other than loopback (sluice connects to the "
            "loopback address of the client's family): bind it to 0.0.0.0, [::] or 127.0.0.1, "
            "or forward the port with a rule whose target is its address"
          : target_error_advice(err);
  return route.text + ": connect to port " + std::to_string(target_port) +
         " of the target: " + errno_text(err) + advice;
}

std::string describe_udp_target_error(const Route& route, uint16_t target_port, int err) {
  return route.text + ": datagrams to port " + std::to_string(target_port) +
         " of the target are answered with an error: " + errno_text(err) +
         target_error_advice(err) +
         " (sluicectl --stats counts these as target errors; the clients get no answer)";
}

socklen_t target_sockaddr(const Route& route, const struct sockaddr_storage& peer, uint16_t port,
                          struct sockaddr_storage* out) noexcept {
  const uint16_t target_port = route_target_port(route, port);
  bool v4;
  Addr addr = route.target;
  if (is_default_target(addr)) {
    v4 = peer.ss_family == AF_INET ||
         (peer.ss_family == AF_INET6 &&
          IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const struct sockaddr_in6*>(&peer)->sin6_addr));
    addr = loopback_addr(v4);
  } else {
    v4 = addr_is_v4(addr);
  }
  std::memset(out, 0, sizeof(*out));
  if (v4) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(target_port);
    std::memcpy(&sin->sin_addr, addr.data() + 12, 4);
    return sizeof(*sin);
  }
  auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(target_port);
  std::memcpy(&sin6->sin6_addr, addr.data(), 16);
  return sizeof(*sin6);
}

void TcpListener::release() noexcept {
  owner_.close_listener(this);
}

void TcpListener::set_route(std::shared_ptr<const Route> route) {
  std::lock_guard<std::mutex> lock(owner_.share().mu);
  route_ = std::move(route);
}

std::shared_ptr<const Route> TcpListener::shared_route() const {
  std::lock_guard<std::mutex> lock(owner_.share().mu);
  return route_;
}

bool accept_error_retryable(int err) noexcept {
  // Not EPERM: a security module that refuses accept() does so before the
  // client leaves the queue, so the same client would come back at once.
  return err == EINTR || err == ECONNABORTED || err == EPROTO || err == ENETDOWN ||
         err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH ||
         err == EOPNOTSUPP || err == ENETUNREACH;
}

void TcpListener::clear_inherited_floor(int accepted) const noexcept {
  if (stopped_.load()) set_min_ttl(accepted, v6_, 0);
}

void TcpListener::on_event(uint32_t /*events*/) noexcept {
  if (!muted_) accept_up_to(per_report(), false);  // muted: a stale report
}

void TcpListener::accept_all() noexcept {
  if (!fd_.valid()) return;
  if (muted_) {
    // Still no room (a resume for the global limit, a thread's hand-over):
    // parked again as it was, without two epoll_ctl calls per listener.
    if (owner_.admit(*route_) != RuleAdmit::kOk ||
        !owner_.loop().add(fd_.get(), EPOLLIN | EPOLLEXCLUSIVE, this)) {
      owner_.park(this, false);  // the next slot freed or tick tries again
      return;
    }
    muted_ = false;
  }
  accept_up_to(per_report(), false);
}

void TcpListener::accept_punted() noexcept {
  if (!level || muted_ || !fd_.valid()) return accept_all();  // muted: parked, as a resume
  accept_up_to(kMaxAcceptsPerWake, false);
}

void TcpListener::mute() noexcept {
  if (!level || muted_ || !fd_.valid()) return;
  owner_.loop().remove(fd_.get());
  muted_ = true;
}

void TcpListener::requeue_if_busier() noexcept {
  if (muted_ || !fd_.valid() || !owner_.busier_than_another()) return;
  owner_.loop().remove(fd_.get());
  if (!owner_.loop().add(fd_.get(), EPOLLIN | EPOLLEXCLUSIVE, this)) {
    muted_ = true;
    owner_.park(this, false);  // accept_all() waits on it again
  }
}

bool TcpListener::accept_up_to(int max, bool draining) noexcept {
  if (!fd_.valid()) return true;  // closed by a commit earlier in this batch
  for (int i = 0; i < max; ++i) {
    // The global limit, the rule's limit and its fair share: at any of them
    // the listener pauses and its clients wait in the kernel's queue, until
    // a connection of the rule (or any, for the global limit) ends.
    RuleAdmit why = RuleAdmit::kOk;
    ConnSlot held = owner_.take_slot(route_, draining, &why);
    if (!held) {
      owner_.park_at_limit(this, why);
      return false;
    }
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    int fd = accept4(fd_.get(), reinterpret_cast<struct sockaddr*>(&peer), &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (accept_error_retryable(errno)) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: stop accepting instead of spinning, and
        // retry when a connection closes or on the next tick.
        if (owner_.conn_log().allow()) {
          LOG_WARN("accept on port %u paused: %s", port_, errno_text(errno).c_str());
        }
        owner_.park(this, false);
        return false;
      }
      // Anything else: the clients queued behind it would wait for a new
      // edge; retry when a connection closes or on the next tick instead.
      if (owner_.conn_log().allow()) {
        LOG_WARN("accept on port %u paused: %s", port_, errno_text(errno).c_str());
      }
      owner_.park(this, false);
      return false;
    }
    clear_inherited_floor(fd);
    if (owner_.is_own_connection(peer)) {
      owner_.refuse_loop(UniqueFd(fd), peer, port_, *route_);
      continue;
    }
    if (!level) {
      owner_.start_connection(UniqueFd(fd), peer, port_, route_, std::move(held));
      continue;
    }
    // Shared with the other threads: a rule they may serve goes to the
    // least busy one when this one is busier (a commit may have pointed
    // the listener at one they may not).
    if (owner_.shareable(*route_)) {
      owner_.place_connection(UniqueFd(fd), peer, port_, route_, std::move(held));
      if (max == 1) requeue_if_busier();
    } else {
      owner_.start_connection(UniqueFd(fd), peer, port_, route_, std::move(held));
    }
  }
  if (!level || max > 1) owner_.park(this, true);
  return false;
}

bool reopen_to_new_connections(int fd) noexcept {
  struct sockaddr_storage local;
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&local), &len) != 0) return false;
  return set_min_ttl(fd, local.ss_family == AF_INET6, 0);
}

bool TcpListener::stop_new_connections() noexcept {
  if (!fd_.valid()) return true;
  if (!stopped_.load()) {
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    v6_ = getsockname(fd_.get(), reinterpret_cast<struct sockaddr*>(&local), &len) == 0 &&
          local.ss_family == AF_INET6;
    stopped_.store(true);
  }
  return set_min_ttl(fd_.get(), v6_, kMaxTtl);
}

void TcpListener::unsilence() noexcept {
  silenced_ = false;
  if (fd_.valid() && reopen_to_new_connections(fd_.get())) stopped_.store(false);
}

void TcpListener::drain() noexcept {
  // Limit: connections accepted while draining. The accept queue holds at
  // most SOMAXCONN (4096) and takes nothing new once stopped; twice that
  // empties it even while handshakes begun before the stop complete.
  constexpr int kMaxDrain = 8192;
  if (!stop_new_connections() && owner_.conn_log().allow()) {
    LOG_WARN(
        "port %u: new connections could not be stopped before the close (%s); any that "
        "arrive during it are reset",
        port_, errno_text(errno).c_str());
  }
  if (!accept_up_to(kMaxDrain, true) && owner_.conn_log().allow()) {
    LOG_WARN("port %u closed at a limit: connections still queued on it are reset", port_);
  }
}

Forwarder::Forwarder(EventLoop& loop, ForwarderLimits limits, ConnShare* share)
    : loop_(loop),
      limits_(limits),
      own_share_(share == nullptr
                     ? std::make_unique<ConnShare>(limits.hash_seed[0], limits.hash_seed[1])
                     : nullptr),
      share_(share == nullptr ? own_share_.get() : share),
      copy_buffer_(new char[kCopyChunk]) {}

ConnSlot Forwarder::take_slot(const std::shared_ptr<const Route>& route, bool draining,
                              RuleAdmit* why) noexcept {
  std::lock_guard<std::mutex> lock(share_->mu);
  *why = admit(*route);
  if (draining && *why == RuleAdmit::kRule) *why = RuleAdmit::kOk;
  if (*why != RuleAdmit::kOk) return ConnSlot();
  share_->in_use.fetch_add(1);
  route->counters->slots.fetch_add(1);
  return ConnSlot(share_, route->counters);
}

Forwarder::~Forwarder() {
  for (auto& listener : listeners_) loop_.remove(listener->fd());
}

void Forwarder::host_sockets_ready(int family) noexcept {
  // In order of arrival; a waiter of the other family does not hold up this one's.
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->family != family) {
      ++it;
      continue;
    }
    // A refill that came back empty (sluiced out of descriptors) is asked
    // again from on_tick, not at once: no loop of requests against it.
    if (host_sockets_->ready(family, Proto::kTcp) == 0) return;
    UniqueFd sock = host_sockets_->take(family, Proto::kTcp);
    Waiting w = std::move(*it);
    it = waiting_.erase(it);
    unwait(w);
    connect_target(std::move(w.client), w.peer, w.port, w.route, std::move(sock), std::move(w.slot),
                   std::move(w.source), w.accepted_ns);
  }
}

void Forwarder::fail_waiting(Waiting& w, const char* why) noexcept {
  unwait(w);
  w.slot.reset();
  w.source.reset();
  ++counters_.connect_failed;
  ++w.route->counters->failed;
  if (conn_log_.allow()) LOG_WARN("%s: %s; the client is reset", w.route->text.c_str(), why);
  log_refused(*w.route, w.peer, why);
  set_reset_on_close(w.client.get());
  w.client.reset();
}

Result<TcpListener*> Forwarder::add_tcp_listener(UniqueFd fd, uint16_t port,
                                                 std::shared_ptr<const Route> route) {
  auto listener =
      std::make_unique<TcpListener>(*this, std::move(fd), port, std::move(route), next_serial_++);
  TcpListener* raw = listener.get();
  // Shared with the other data-path threads: each waits on the socket with
  // EPOLLEXCLUSIVE, so that the kernel wakes one of them per new client,
  // not all, level-triggered, so that a busy one finds the rest at its next
  // wait (each accepts one per report; place_connection balances them).
  const bool shared = !threads_.empty() && shareable(*raw->route());
  auto added = loop_.add(raw->fd(), shared ? EPOLLIN | EPOLLEXCLUSIVE : EPOLLIN | EPOLLET, raw);
  if (!added) return Err(added.error());
  raw->level = shared;
  raw->slot = listeners_.size();
  listeners_.push_back(std::move(listener));
  if (shared) {
    raw->shared = true;
    shared_.emplace(raw->serial, raw);
    for (DataThread* thread : threads_) thread->share_listener(raw);
  }
  if (raw->route()->pif == Pif::kSplice && host_sockets_ != nullptr && splice_listeners_++ == 0) {
    host_sockets_->set_wanted(Proto::kTcp, true);  // filled before the first connection
  }
  // Connections may already wait in the queue (the socket listened before it
  // reached us); edge triggering reports only new ones, so accept now (level
  // triggering reports them at the next wait).
  if (!shared) raw->accept_all();
  return raw;
}

void Forwarder::close_listener(TcpListener* listener) noexcept {
  size_t slot = listener->slot;
  CHECK(slot < listeners_.size() && listeners_[slot].get() == listener);
  // The other threads let go of the socket before it closes: its number may
  // be reused at once.
  if (listener->shared) unshare({listener});
  loop_.remove(listener->fd());
  if (listener->parked) {
    std::erase(parked_, listener);
    share_->parked_any.store(!parked_.empty());
  }
  if (listener->route()->pif == Pif::kSplice && host_sockets_ != nullptr &&
      --splice_listeners_ == 0) {
    host_sockets_->set_wanted(Proto::kTcp, false);
  }
  // Close now, not when the batch ends: the commit's reply goes out in this
  // batch, and a client reading it must find the port closed.
  listener->close_socket();
  loop_.retire(std::move(listeners_[slot]));
  if (slot != listeners_.size() - 1) {
    listeners_[slot] = std::move(listeners_.back());
    listeners_[slot]->slot = slot;
  }
  listeners_.pop_back();
}

void Forwarder::start_connection(UniqueFd client, const struct sockaddr_storage& peer,
                                 uint16_t port, const std::shared_ptr<const Route>& route_ptr,
                                 ConnSlot slot) noexcept {
  const Route& route = *route_ptr;
  SourceSlot source;
  if (limits_.max_connections_per_source != 0) {
    const Addr key = source_key(peer);
    if (!share_->sources.try_add(key, limits_.max_connections_per_source)) {
      refuse_source(std::move(client), peer, route);
      return;
    }
    source = SourceSlot(&share_->sources, key);
  }
  struct sockaddr_storage target;
  target_sockaddr(route, peer, port, &target);
  const uint64_t accepted_ns = limits_.log_connections ? monotonic_ns() : 0;
  ++counters_.accepted;
  ++route.counters->accepted;
  if (route.pif == Pif::kSplice && host_sockets_ != nullptr) {
    // The target is on sluiced's side: its socket comes from sluiced.
    UniqueFd sock = host_sockets_->take(target.ss_family, Proto::kTcp);
    if (sock.valid()) {
      connect_target(std::move(client), peer, port, route_ptr, std::move(sock), std::move(slot),
                     std::move(source), accepted_ns);
      return;
    }
    // None ready: wait for the refill, which take() has asked for (bounded
    // by the connect timeout, and by the connection limit: at_capacity()).
    if (log_enabled(LogLevel::kDebug) && conn_log_.allow()) {
      LOG_DEBUG("%s: no host-side socket ready; the connection waits for sluiced's refill",
                route.text.c_str());
    }
    waiting_.push_back(Waiting{std::move(client), peer, port, route_ptr, target.ss_family,
                               monotonic_ns() + limits_.connect_timeout_ns, std::move(slot),
                               std::move(source), accepted_ns});
    ++route.counters->waiting;
    return;
  }
  UniqueFd sock(socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!sock.valid()) {
    const int err = errno;
    ++counters_.connect_failed;
    ++route.counters->failed;
    if (conn_log_.allow()) LOG_WARN("%s: socket: %s", route.text.c_str(), errno_text(err).c_str());
    log_refused(route, peer, "no socket for the target", err);
    set_reset_on_close(client.get());
    return;
  }
  connect_target(std::move(client), peer, port, route_ptr, std::move(sock), std::move(slot),
                 std::move(source), accepted_ns);
}

void Forwarder::connect_target(UniqueFd client, const struct sockaddr_storage& peer, uint16_t port,
                               const std::shared_ptr<const Route>& route_ptr, UniqueFd sock,
                               ConnSlot slot, SourceSlot source, uint64_t accepted_ns) noexcept {
  const Route& route = *route_ptr;
  struct sockaddr_storage target;
  socklen_t target_len = target_sockaddr(route, peer, port, &target);
  RuleCounters& rule = *route.counters;
  // The target side as the client side already is (its options come from the
  // listener, which the broker set up): no Nagle delay, since the peers
  // already decided how to batch their writes and a forwarder must not add
  // a delay on top; keepalive, so a target that vanished frees the
  // connection (timing: the net.ipv4.tcp_keepalive_* sysctls).
  set_int_option(sock.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  set_int_option(sock.get(), SOL_SOCKET, SO_KEEPALIVE, 1);
  bool connected = true;
  // A guarded rule's connect and the record of its local endpoint happen
  // under the share's lock, announced in own_count first: on loopback the
  // connection may be in a listener's queue before connect() returns, and
  // another data-path thread that accepts it then waits for the record
  // (is_own_connection) instead of missing the loop.
  std::unique_lock<std::mutex> guard_lock;
  if (route.guard_loops) {
    guard_lock = std::unique_lock<std::mutex>(share_->mu);
    share_->own_count.store(share_->own_endpoints.size() + 1);
  }
  int connect_err = 0;
  if (connect(sock.get(), reinterpret_cast<struct sockaddr*>(&target), target_len) != 0) {
    connect_err = errno;
  }
  Endpoint own;
  bool guard = false;
  if (route.guard_loops) {
    // The kernel picked the local endpoint in connect(); a connection that
    // arrives from it later came back into sluice. Needs `getsockname`.
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    if ((connect_err == 0 || connect_err == EINPROGRESS) &&
        getsockname(sock.get(), reinterpret_cast<struct sockaddr*>(&local), &local_len) == 0) {
      own = endpoint_of(local);
      guard = share_->own_endpoints.emplace(own, &route).second;
    }
    share_->own_count.store(share_->own_endpoints.size());
    guard_lock.unlock();
  }
  if (connect_err != 0) {
    errno = connect_err;
    if (errno != EINPROGRESS) {
      ++counters_.connect_failed;
      ++rule.failed;
      const int err = errno;
      if (conn_log_.allow()) {
        LOG_WARN("%s",
                 describe_connect_failure(route, route_target_port(route, port), err).c_str());
      }
      if (limits_.log_connections) {
        // The same line as a connect that fails later (TcpConnection).
        ConnRecord record;
        record.client = endpoint_of(peer);
        record.start_ns = accepted_ns;
        LOG_INFO("%s", connection_ended_line(route, record, route_target_port(route, port),
                                             monotonic_ns(), 0, 0, ConnEnd::kConnectFailed, err)
                           .c_str());
      }
      set_reset_on_close(client.get());  // the client sees a refusal, not a silent EOF
      return;
    }
    connected = false;
  }
  auto conn = std::make_unique<TcpConnection>(
      *this, std::move(client), std::move(sock), connected, route_ptr,
      route_target_port(route, port), connected ? 0 : monotonic_ns() + limits_.connect_timeout_ns);
  TcpConnection* raw = conn.get();
  if (limits_.log_connections) raw->keep_record(endpoint_of(peer), accepted_ns);
  raw->conn_slot = std::move(slot);
  raw->source = std::move(source);
  if (guard) {
    raw->guarded = true;
    raw->own_endpoint = own;
  }
  raw->slot = connections_.size();
  connections_.push_back(std::move(conn));
  ++counters_.active;
  ++rule.active;
  if (!raw->start()) raw->abort_start();
}

void Forwarder::end_connection(TcpConnection* conn) noexcept {
  size_t slot = conn->slot;
  CHECK(slot < connections_.size() && connections_[slot].get() == conn);
  --conn->route().counters->active;
  // Now, not when the object is freed after the batch (maybe after the
  // forwarder, at exit): the slot and the source's place are free for the
  // next connection.
  conn->conn_slot.reset();
  conn->source.reset();
  if (conn->guarded) {
    std::lock_guard<std::mutex> lock(share_->mu);
    share_->own_endpoints.erase(conn->own_endpoint);
    share_->own_count.store(share_->own_endpoints.size());
  }
  loop_.retire(std::move(connections_[slot]));
  if (slot != connections_.size() - 1) {
    connections_[slot] = std::move(connections_.back());
    connections_[slot]->slot = slot;
  }
  connections_.pop_back();
  --counters_.active;
  // Room again: resume listeners that stopped at a limit, after this batch
  // (a slot given back on another thread tells this one: ConnSlot::reset).
  if (!parked_.empty()) {
    recheck_parked_ = true;
    loop_.request_immediate_tick();
  }
}

void Forwarder::refuse_source(UniqueFd client, const struct sockaddr_storage& peer,
                              const Route& route) noexcept {
  ++counters_.refused_source;
  ++route.counters->refused_source;
  if (conn_log_.allow()) {
    const Addr key = source_key(peer);
    LOG_WARN(
        "%s: source %s%s holds %zu connections (--max-connections-per-source); the new one "
        "is reset",
        route.text.c_str(), format_addr(key).c_str(), addr_is_v4(key) ? "" : "/64",
        limits_.max_connections_per_source);
  }
  log_refused(route, peer, "its source holds --max-connections-per-source connections");
  set_reset_on_close(client.get());
}

void Forwarder::log_refused(const Route& route, const struct sockaddr_storage& peer,
                            const char* why, int err) noexcept {
  if (!limits_.log_connections) return;
  LOG_INFO("%s", connection_refused_line(route, endpoint_of(peer), why, err).c_str());
}

void Forwarder::log_open_connections() noexcept {
  if (!limits_.log_connections) return;
  for (DataThread* thread : threads_) thread->log_open_connections();
  for (auto& conn : connections_) conn->log_stopped();
  for (const Waiting& w : waiting_) log_refused(*w.route, w.peer, "the worker stopped");
  std::lock_guard<std::mutex> lock(handed_mu_);
  for (const HandedClient& c : handed_) {
    log_refused(*c.route, c.peer, "the worker stopped");
    set_reset_on_close(c.client.get());
  }
}

void Forwarder::set_tcp_rules(size_t rules) noexcept {
  share_->tcp_rules.store(rules);
  if (!parked_.empty()) {
    recheck_parked_ = true;
    loop_.request_immediate_tick();
  }
}

void Forwarder::refuse_loop(UniqueFd client, const struct sockaddr_storage& peer, uint16_t port,
                            const Route& route) noexcept {
  ++counters_.loops;
  ++route.counters->loops;
  if (conn_log_.allow()) {
    std::string sender = "a rule";
    {
      std::lock_guard<std::mutex> lock(share_->mu);
      auto it = share_->own_endpoints.find(endpoint_of(peer));
      if (it != share_->own_endpoints.end()) sender = it->second->text;
    }
    LOG_WARN(
        "forwarding loop reset: %s sent a connection to one of this host's own addresses, and it "
        "came back on port %u under %s; give that rule a target that is not an address of this "
        "host, or listen on specific addresses instead of a wildcard",
        sender.c_str(), port, route.text.c_str());
  }
  log_refused(route, peer, "a forwarding loop: it came from one of sluice's own connections");
  set_reset_on_close(client.get());
}

void Forwarder::accept_punted(uint64_t serial) noexcept {
  auto it = shared_.find(serial);
  if (it != shared_.end()) it->second->accept_punted();
}

void Forwarder::wake_parked() noexcept {
  share_->wake_posted.store(false);
  if (parked_.empty()) return;
  recheck_parked_ = true;
  loop_.request_immediate_tick();
}

void Forwarder::unshare(const std::vector<TcpListener*>& listeners) noexcept {
  std::vector<TcpListener*> gone;
  for (TcpListener* listener : listeners) {
    if (!listener->shared) continue;
    listener->shared = false;
    shared_.erase(listener->serial);
    gone.push_back(listener);
  }
  if (gone.empty()) return;
  for (DataThread* thread : threads_) thread->unshare_listeners(gone);
}

std::vector<uint64_t> Forwarder::accepted_by_thread() const {
  std::vector<uint64_t> out{counters_.accepted};
  for (DataThread* thread : threads_) out.push_back(thread->accepted());
  return out;
}

void Forwarder::sync_threads() noexcept {
  for (DataThread* thread : threads_) thread->sync();
}

size_t Forwarder::idle_pipes_total() const noexcept {
  size_t n = idle_pipes();
  for (DataThread* thread : threads_) n += thread->idle_pipes();
  return n;
}

uint64_t Forwarder::active_total() const noexcept {
  uint64_t n = counters_.active;
  for (DataThread* thread : threads_) n += thread->active();
  return n;
}

size_t Forwarder::end_connections(const std::function<bool(const Route&)>& pred) noexcept {
  // The other threads' first, each while this one waits.
  size_t others = 0;
  for (DataThread* thread : threads_) others += thread->end_connections(pred);
  // Then this thread's, with the clients handed to it (those of the others
  // were started by their own call).
  start_handed();
  // Collect first: closing a connection swaps the table's last entry into its slot.
  std::vector<TcpConnection*> doomed;
  for (auto& conn : connections_) {
    if (pred(conn->route())) doomed.push_back(conn.get());
  }
  for (TcpConnection* conn : doomed) conn->reset();
  size_t waiting = 0;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (!pred(*it->route)) {
      ++it;
      continue;
    }
    log_refused(*it->route, it->peer, "its rule was removed");
    set_reset_on_close(it->client.get());
    unwait(*it);
    it = waiting_.erase(it);
    ++waiting;
  }
  return others + doomed.size() + waiting;
}

void Forwarder::park(TcpListener* listener, bool soon) noexcept {
  if (soon) {
    recheck_parked_ = true;
    loop_.request_immediate_tick();
  }
  listener->mute();
  if (listener->parked) return;
  listener->parked = true;
  parked_.push_back(listener);
  share_->parked_any.store(true);
}

void Forwarder::park_at_limit(TcpListener* listener, RuleAdmit why) noexcept {
  const size_t rules = tcp_rules();
  if (!listener->parked) {
    const Route& route = *listener->route();
    const uint64_t held = route.counters->slots;
    if (why == RuleAdmit::kGlobal) {
      ++route.counters->paused_global_limit;
      // One line when the limit is reached, not one per listener it pauses;
      // on_tick() re-arms it once a slot is free.
      if (!global_limit_warned_ && conn_log_.allow()) {
        global_limit_warned_ = true;
        LOG_WARN(
            "%s: port %u paused: all %zu connections of sluiced --max-connections are in use, "
            "across all %zu TCP rules; new clients of every rule wait in the kernel's accept "
            "queue until a connection ends; if this load is expected, raise --max-connections "
            "(each connection needs two descriptors)",
            route.text.c_str(), listener->port(), limits_.max_connections, rules);
      }
    } else {
      ++route.counters->paused_rule_limit;
      const size_t cap = limits_.max_connections_per_rule;
      if (conn_log_.allow()) {
        if (cap != 0 && held >= cap) {
          LOG_WARN(
              "%s: port %u paused at the per-rule cap, sluiced --max-connections-per-rule %zu "
              "(the rule holds %llu connections); its new clients wait in the kernel's accept "
              "queue until one of them ends; raise --max-connections-per-rule if the rule needs "
              "more",
              route.text.c_str(), listener->port(), cap, static_cast<unsigned long long>(held));
        } else {
          const size_t share = fair_share(limits_.max_connections, rules);
          LOG_WARN(
              "%s: port %u paused at its fair share of sluiced --max-connections: the rule "
              "holds %llu, its share is %zu (%zu shared among %zu TCP rules), and past its "
              "share it may only take a slot while %zu stay free for the other rules (%zu of "
              "%zu are in use); its new clients wait in the kernel's accept queue until one of "
              "its connections ends; raise --max-connections to give every rule more",
              route.text.c_str(), listener->port(), static_cast<unsigned long long>(held), share,
              limits_.max_connections, rules, share_reserve(limits_.max_connections, rules),
              in_use(), limits_.max_connections);
        }
      }
    }
  }
  park(listener, false);
  // A slot given back on another thread between the refusal and the park
  // saw no parked listener and told nobody: look again now.
  if (admit(*listener->route()) == RuleAdmit::kOk) {
    recheck_parked_ = true;
    loop_.request_immediate_tick();
  }
}

void Forwarder::resume_parked() noexcept {
  recheck_parked_ = false;
  // Split first: a resumed listener that stops again parks itself anew.
  std::vector<TcpListener*> resume;
  std::vector<TcpListener*> keep;
  for (TcpListener* listener : parked_) {
    // Still at its rule's limit: stays parked, no syscall spent on it.
    if (admit(*listener->route()) == RuleAdmit::kRule) {
      keep.push_back(listener);
    } else {
      listener->parked = false;
      resume.push_back(listener);
    }
  }
  parked_.swap(keep);
  share_->parked_any.store(!parked_.empty());
  for (TcpListener* listener : resume) listener->accept_all();
}

void Forwarder::on_tick(uint64_t now_ns) noexcept {
  // Clients another thread handed over while this one was awake.
  if (handed_count_.load(std::memory_order_relaxed) != 0) start_handed();
  // Connect timeouts. Tickers run after every batch of events, so the scan
  // (one comparison per connection) runs at most every kTimeoutScanNs, not
  // on the data path's every wake-up. Collect first: ending a connection
  // moves another into its slot.
  if (now_ns >= next_timeout_scan_ns_) {
    next_timeout_scan_ns_ = now_ns + kTimeoutScanNs;
    std::vector<TcpConnection*> overdue;
    std::vector<TcpConnection*> idle;
    const uint64_t idle_ns = limits_.idle_timeout_ns;
    for (auto& conn : connections_) {
      if (conn->connect_overdue(now_ns)) {
        overdue.push_back(conn.get());
      } else if (idle_ns != 0 && conn->idle_for(now_ns, idle_ns)) {
        idle.push_back(conn.get());
      }
    }
    for (TcpConnection* conn : overdue) conn->connect_timed_out();
    for (TcpConnection* conn : idle) conn->idle_timed_out();
    // Connections waiting for a host-side socket: the oldest first, so the
    // overdue ones are at the front.
    // Listeners parked at the descriptor limit retry this often.
    recheck_parked_ = true;
    while (!waiting_.empty() && waiting_.front().deadline_ns <= now_ns) {
      fail_waiting(waiting_.front(), "no host-side socket from sluiced within the connect timeout");
      waiting_.pop_front();
    }
    // A refill that came back short leaves waiters: ask again, at most once
    // per scan, rather than in a tight loop against a sluiced out of sockets.
    for (int family : {AF_INET, AF_INET6}) {
      for (const Waiting& w : waiting_) {
        if (w.family == family) {
          host_sockets_->refill(family, Proto::kTcp);
          break;
        }
      }
    }
  }
  if (!at_capacity()) global_limit_warned_ = false;  // a slot is free: warn again next time
  if (parked_.empty() || !recheck_parked_ || at_capacity()) return;
  resume_parked();
}

Result<Pipe> Forwarder::take_pipe() noexcept {
  if (!idle_pipes_.empty()) {
    Pipe p = std::move(idle_pipes_.back());
    idle_pipes_.pop_back();
    idle_count_.store(idle_pipes_.size(), std::memory_order_relaxed);
    return p;
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return SysErr("pipe2");
  Pipe p;
  p.read_end.reset(fds[0]);
  p.write_end.reset(fds[1]);
  if (limits_.pipe_size > kDefaultPipeBytes) {
    const uint64_t extra = (limits_.pipe_size - kDefaultPipeBytes) / kPageBytes;
    if (limits_.pipe_pages_budget == 0 || extra_pipe_pages_ + extra <= limits_.pipe_pages_budget) {
      if (fcntl(p.write_end.get(), F_SETPIPE_SZ, static_cast<int>(limits_.pipe_size)) >= 0) {
        p.extra_pages = extra;
        extra_pipe_pages_ += extra;
      } else if (!pipe_size_warned_) {
        // EPERM: the user is over fs.pipe-user-pages-soft (other processes
        // of the same uid hold pipes); the kernel's size still works.
        pipe_size_warned_ = true;
        LOG_WARN("splice pipes keep the kernel's 64 KiB: F_SETPIPE_SZ %zu: %s", limits_.pipe_size,
                 errno_text(errno).c_str());
      }
    }
  }
  return p;
}

void Forwarder::give_pipe(Pipe pipe) noexcept {
  if (!pipe.read_end.valid()) return;
  if (pipe.bytes == 0 && idle_pipes_.size() < limits_.max_idle_pipes) {
    idle_pipes_.push_back(std::move(pipe));
    idle_count_.store(idle_pipes_.size(), std::memory_order_relaxed);
    return;
  }
  extra_pipe_pages_ -= pipe.extra_pages;  // closed when `pipe` goes out of scope
}

}  // namespace sluice
