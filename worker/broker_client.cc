#include "worker/broker_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/scm_rights.h"
#include "base/strings.h"
#include "policy/control_policy.h"

namespace sluice {

std::string identity_failure(const PeerIdentity& identity, const char* client) {
  if (identity.status == ERANGE) {
    return "the client process has more than " + std::to_string(kMaxPeerGroups) +
           " supplementary groups, too many to check against the control policy; run " + client +
           " with fewer groups";
  }
  return "sluiced could not read the client's credentials (" + errno_text(identity.status) +
         "); try again";
}

wire::ListenerSpec to_wire(const ListenerKey& key) noexcept {
  wire::ListenerSpec spec = {};
  spec.proto = static_cast<uint8_t>(key.proto == Proto::kTcp ? wire::WireProto::kTcp
                                                             : wire::WireProto::kUdp);
  bool v4 = !key.dual_stack && addr_is_v4(key.addr);
  spec.family = static_cast<uint8_t>(v4 ? wire::WireFamily::kInet : wire::WireFamily::kInet6);
  spec.port = key.port;
  spec.flags = (key.dual_stack ? wire::kListenerDualStack : 0) |
               (key.pif == Pif::kSplice ? wire::kListenerSplice : 0);
  std::memcpy(spec.addr, key.addr.data(), 16);
  std::memcpy(spec.ifname, key.ifname.data(), wire::kIfNameSize);
  spec.ifname[wire::kIfNameSize - 1] = '\0';
  return spec;
}

std::vector<wire::PortGrant> initial_port_grants(const TableSet& tables, const BrokerInfo& info) {
  std::vector<wire::PortGrant> out;
  for (const Table& table : tables.tables) {
    // A SPLICE rule's ports are privileged or not inside the target
    // namespace; without one, SPLICE rules are refused anyway.
    const bool splice = table.pif == Pif::kSplice;
    if (splice && !info.splice_served) continue;
    const uint32_t unprivileged_port_start =
        splice ? info.splice_unprivileged_port_start : info.unprivileged_port_start;
    for (const Rule& rule : table.rules) {
      if (rule.first == 0 || rule.first >= unprivileged_port_start) continue;
      // The rule's key at its first port: the same fields the planner asks
      // the broker for (expand_listeners), so every privileged key of the
      // rule falls inside the grant.
      std::vector<ListenerKey> first;
      Table one{table.pif, {rule}};
      one.rules[0].last = rule.first;
      expand_listeners(one, &first);
      CHECK(first.size() == 1);
      wire::PortGrant grant = {};
      grant.listener = to_wire(first[0]);
      const uint32_t top = std::min<uint32_t>(rule.last, unprivileged_port_start - 1);
      grant.last_port = static_cast<uint16_t>(top);
      out.push_back(grant);
    }
  }
  return out;
}

std::vector<wire::PortGrant> initial_port_grants(const TableSet& tables,
                                                 uint32_t unprivileged_port_start) {
  BrokerInfo info;
  info.unprivileged_port_start = unprivileged_port_start;
  return initial_port_grants(tables, info);
}

Result<void> verify_listener(int fd, const ListenerKey& key) {
  wire::ListenerSpec want = to_wire(key);
  int domain = 0, type = 0, listening = 0;
  socklen_t len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    return SysErr("getsockopt(SO_DOMAIN)");
  }
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return SysErr("getsockopt(SO_TYPE)");
  }
  if (domain != want.family) return Err(EPROTO, "socket has the wrong address family");
  int want_type = key.proto == Proto::kTcp ? SOCK_STREAM : SOCK_DGRAM;
  if (type != want_type) return Err(EPROTO, "socket has the wrong type");
  if (key.proto == Proto::kTcp) {
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
      return Err(EPROTO, "TCP socket is not listening");
    }
  } else {
    // Replies leave from the address each client sent to, which only the
    // pktinfo of the received datagram tells. The broker enables it before
    // bind, so that no datagram ever arrives without it.
    bool v4 = want.family == AF_INET;
    int pktinfo = 0;
    len = sizeof(int);
    if (getsockopt(fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_PKTINFO : IPV6_RECVPKTINFO, &pktinfo,
                   &len) != 0 ||
        !pktinfo) {
      return Err(EPROTO, std::string("UDP socket does not report local addresses (") +
                             (v4 ? "IP_PKTINFO" : "IPV6_RECVPKTINFO") + " is off)");
    }
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&peer), &plen) == 0) {
      return Err(EPROTO, "UDP socket is connected to a peer");
    }
  }
  struct sockaddr_storage ss;
  socklen_t slen = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &slen) != 0) {
    return SysErr("getsockname");
  }
  Addr bound{};
  uint16_t port;
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    bound = addr_v4(0, 0, 0, 0);
    std::memcpy(bound.data() + 12, &sin->sin_addr, 4);
    port = ntohs(sin->sin_port);
  } else {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    std::memcpy(bound.data(), &sin6->sin6_addr, 16);
    port = ntohs(sin6->sin6_port);
  }
  if (port != key.port) return Err(EPROTO, "socket is bound to the wrong port");
  if (std::memcmp(bound.data(), key.addr.data(), 16) != 0) {
    return Err(EPROTO, "socket is bound to the wrong address");
  }
  return Ok();
}

Result<void> verify_fresh_socket(int fd, int family, Proto proto) {
  int domain = 0, type = 0, listening = 0;
  socklen_t len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    return SysErr("getsockopt(SO_DOMAIN)");
  }
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return SysErr("getsockopt(SO_TYPE)");
  if (domain != family) return Err(EPROTO, "socket has the wrong address family");
  if (type != (proto == Proto::kTcp ? SOCK_STREAM : SOCK_DGRAM)) {
    return Err(EPROTO, "socket has the wrong type");
  }
  if (proto == Proto::kTcp) {
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening != 0) {
      return Err(EPROTO, "socket is listening");
    }
  }
  struct sockaddr_storage ss;
  socklen_t slen = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &slen) != 0) {
    return SysErr("getsockname");
  }
  Addr bound{};
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    std::memcpy(bound.data() + 12, &sin->sin_addr, 4);
    port = ntohs(sin->sin_port);
  } else {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    std::memcpy(bound.data(), &sin6->sin6_addr, 16);
    port = ntohs(sin6->sin6_port);
  }
  if (port != 0 || !addr_is_zero(bound)) return Err(EPROTO, "socket is already bound");
  struct sockaddr_storage peer;
  socklen_t plen = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&peer), &plen) == 0 || errno != ENOTCONN) {
    return Err(EPROTO, "socket is already connected");
  }
  return Ok();
}

Result<std::vector<OpenedListener>> check_listeners_opened(const wire::ListenersOpenedMsg& reply,
                                                           size_t len, std::vector<UniqueFd> fds,
                                                           uint64_t sequence,
                                                           std::span<const ListenerKey> keys,
                                                           bool cut) {
  if (len != sizeof(reply) || reply.header.magic != wire::kBrokerWireMagic ||
      reply.header.type != static_cast<uint32_t>(wire::BrokerMsg::kListenersOpened) ||
      reply.header.sequence != sequence || reply.count != keys.size() ||
      (cut ? fds.size() > reply.fd_count : reply.fd_count != fds.size())) {
    return Err(EPROTO, "malformed ListenersOpened from sluiced");
  }
  std::vector<OpenedListener> out;
  out.reserve(keys.size());
  size_t next_fd = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    OpenedListener result;
    result.status = reply.status[i];
    if (result.status == wire::kStatusOk && cut && next_fd >= fds.size()) {
      // Sent, and closed in transit: the worker's descriptor table is full.
      result.status = EMFILE;
      result.lost = true;
    } else if (result.status == wire::kStatusOk) {
      if (next_fd >= fds.size()) return Err(EPROTO, "ListenersOpened carries too few fds");
      result.fd = std::move(fds[next_fd++]);
      auto ok = verify_listener(result.fd.get(), keys[i]);
      if (!ok) {
        return Err(EPROTO, "socket from sluiced for port " + std::to_string(keys[i].port) + ": " +
                               ok.error().message);
      }
    } else if (result.status != wire::kStatusPolicyDenied &&
               (result.status < 1 || result.status > wire::kStatusMaxErrno)) {
      return Err(EPROTO, "ListenersOpened has an invalid status " + std::to_string(result.status));
    }
    out.push_back(std::move(result));
  }
  if (next_fd != fds.size()) return Err(EPROTO, "ListenersOpened carries too many fds");
  return out;
}

BrokerClient::BrokerClient(EventLoop& loop, UniqueFd channel)
    : loop_(loop),
      channel_(std::move(channel)),
      reply_(std::make_unique<wire::ListenersOpenedMsg>()) {}

BrokerClient::~BrokerClient() {
  if (registered_) loop_.remove(channel_.get());
}

Result<BrokerInfo> BrokerClient::hello(const TableSet& initial) {
  wire::HelloMsg msg = {};
  msg.header = wire::header(wire::BrokerMsg::kHello, ++sequence_);
  msg.version = wire::kBrokerWireVersion;
  auto sent = send_message(channel_.get(), &msg, sizeof(msg), {});
  if (!sent) return Err(sent.error().err, "sending Hello to sluiced: " + sent.error().message);

  wire::HelloReplyMsg reply;
  auto got = receive_message(channel_.get(), &reply, sizeof(reply), 0);
  if (!got) return Err(got.error().err, "reading HelloReply: " + got.error().message);
  if (got->len == 0) return Err(EPIPE, "sluiced closed the channel before answering Hello");
  if (got->len != sizeof(reply) || reply.header.magic != wire::kBrokerWireMagic ||
      reply.header.type != static_cast<uint32_t>(wire::BrokerMsg::kHelloReply) ||
      reply.header.sequence != sequence_) {
    return Err(EPROTO, "malformed HelloReply from sluiced");
  }
  if (reply.version != wire::kBrokerWireVersion) {
    return Err(EPROTO, "sluiced speaks broker protocol version " + std::to_string(reply.version) +
                           ", this worker speaks " + std::to_string(wire::kBrokerWireVersion) +
                           "; install sluiced and sluice-worker from the same build");
  }
  if ((reply.flags & ~wire::kBrokerFlagMask) != 0) {
    return Err(EPROTO, "HelloReply from sluiced has unknown flags");
  }
  BrokerInfo info;
  info.has_bind_cap = (reply.flags & wire::kBrokerHasBindCap) != 0;
  info.unprivileged_port_start = reply.unprivileged_port_start;
  info.splice_served = (reply.flags & wire::kBrokerSpliceServed) != 0;
  info.splice_has_bind_cap = (reply.flags & wire::kBrokerSpliceHasBindCap) != 0;
  info.splice_unprivileged_port_start = reply.splice_unprivileged_port_start;
  info.resume = (reply.flags & wire::kBrokerResume) != 0;

  // The initial rules' privileged ports, now and only now: the broker admits
  // InitialPorts between Hello and the first request, never later.
  info.initial_grants = initial_port_grants(initial, info);
  const size_t total = info.initial_grants.size();
  if (total > wire::kMaxInitialGrants) {
    return Err(E2BIG, "the initial rules have " + std::to_string(total) +
                          " rules with privileged ports, more than " +
                          std::to_string(wire::kMaxInitialGrants) +
                          " (every rule of two full "
                          "tables); split them");
  }
  auto ports = std::make_unique<wire::InitialPortsMsg>();
  size_t done = 0;
  do {
    std::memset(ports.get(), 0, sizeof(*ports));
    ports->header = wire::header(wire::BrokerMsg::kInitialPorts, ++sequence_);
    const size_t n = std::min<size_t>(total - done, wire::kMaxGrantsPerMessage);
    ports->count = static_cast<uint32_t>(n);
    std::copy_n(info.initial_grants.begin() + static_cast<ptrdiff_t>(done), n, ports->grants);
    done += n;
    ports->flags = done == total ? wire::kInitialPortsLast : 0;
    auto ok = send_message(channel_.get(), ports.get(), sizeof(*ports), {});
    if (!ok) {
      return Err(ok.error().err, "sending InitialPorts to sluiced: " + ok.error().message);
    }
  } while (done < total);
  return info;
}

Result<void> BrokerClient::start(Lost on_lost) {
  CHECK(!registered_);
  on_lost_ = std::move(on_lost);
  // Level-triggered: a reply that arrives while on_event runs keeps the
  // channel readable, so it is never missed between the drain and the wait.
  auto added =
      loop_.add(channel_.get(), EPOLLIN | EPOLLRDHUP | (waiting_for_room_ ? EPOLLOUT : 0u), this);
  if (!added) return added;
  registered_ = true;
  return Ok();
}

void BrokerClient::watch_for_room(bool on) noexcept {
  if (waiting_for_room_ == on) return;
  waiting_for_room_ = on;
  if (!registered_) return;  // start() registers with the right events
  auto changed = loop_.modify(channel_.get(), EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u), this);
  if (!changed) lose("watching the broker channel: " + changed.error().message);
}

BrokerClient::Sent BrokerClient::send_now(const void* msg, size_t len, std::span<const int> fds,
                                          const char* what) noexcept {
  // Never wait for sluiced: a full channel keeps the message here instead,
  // and the loop says when there is room again.
  auto sent = send_message(channel_.get(), msg, len, fds, MSG_DONTWAIT);
  if (sent) return Sent::kYes;
  if (sent.error().err == EAGAIN || sent.error().err == EWOULDBLOCK) {
    watch_for_room(true);
    return lost_ ? Sent::kLost : Sent::kNoRoom;
  }
  lose(std::string("sending ") + what + ": " + sent.error().message);
  return Sent::kLost;
}

bool BrokerClient::report_status(uint64_t generation, uint32_t listeners) noexcept {
  if (lost_) return false;
  wire::WorkerStatusMsg msg = {};
  msg.header = wire::header(wire::BrokerMsg::kWorkerStatus, 0);  // no reply to match
  msg.generation = generation;
  msg.listeners = listeners;
  return send_now(&msg, sizeof(msg), {}, "WorkerStatus") == Sent::kYes;
}

void BrokerClient::open_listeners(std::vector<ListenerKey> keys, OpenDone done, bool replaces) {
  CHECK(!keys.empty() && done != nullptr);
  if (lost_) return;  // the worker is stopping; nobody is answered any more
  OpenCall call;
  call.results.reserve(keys.size());
  call.keys = std::move(keys);
  call.done = std::move(done);
  call.replaces = replaces;
  calls_.push_back(std::move(call));
  pump();
}

void BrokerClient::pump() noexcept {
  // Batches go out in call order: a call's batches all precede the next
  // call's, so every OpenListeners reply belongs to calls_.front().
  for (OpenCall& call : calls_) {
    while (call.sent < call.keys.size()) {
      if (lost_ || listener_batches_in_flight() >= kPipelineWindow) return;
      size_t n = std::min<size_t>(wire::kMaxListenersPerMessage, call.keys.size() - call.sent);
      // The messages are ~10 KiB each: keep them off the stack.
      auto msg = std::make_unique<wire::OpenListenersMsg>();
      std::memset(msg.get(), 0, sizeof(*msg));
      msg->header = wire::header(wire::BrokerMsg::kOpenListeners, sequence_ + 1);
      msg->count = static_cast<uint32_t>(n);
      for (size_t i = 0; i < n; ++i) {
        msg->entries[i] = to_wire(call.keys[call.sent + i]);
        if (call.replaces) msg->entries[i].flags |= wire::kListenerReplaces;
      }
      // The sequence is taken only once the batch is sent: requests are
      // answered in the order they were sent, whatever waited for room.
      if (send_now(msg.get(), sizeof(*msg), {}, "OpenListeners") != Sent::kYes) return;
      ++sequence_;
      in_flight_.push_back(InFlight{msg->header.sequence, n, nullptr});
      call.sent += n;
    }
  }
}

Result<void> BrokerClient::peer_query(int conn, PeerDone done) {
  CHECK(done != nullptr);
  if (lost_) return Err(EPIPE, "the broker channel is closed");
  CHECK(peer_queries_open() < kPeerQueryWindow);  // the control server keeps the bound
  unsent_peers_.push_back(UnsentPeer{conn, std::move(done)});
  send_peers();
  if (lost_) return Err(EPIPE, "the broker channel is closed");
  return Ok();
}

void BrokerClient::send_peers() noexcept {
  while (!lost_ && !unsent_peers_.empty()) {
    UnsentPeer& next = unsent_peers_.front();
    wire::PeerQueryMsg msg = {};
    msg.header = wire::header(wire::BrokerMsg::kPeerQuery, sequence_ + 1);
    const int fds[] = {next.conn};
    if (send_now(&msg, sizeof(msg), fds, "PeerQuery") != Sent::kYes) return;
    ++sequence_;
    in_flight_.push_back(InFlight{msg.header.sequence, 0, std::move(next.done)});
    ++peers_in_flight_;
    unsent_peers_.pop_front();
  }
}

void BrokerClient::open_sockets(int family, Proto proto, uint32_t count, SocketsDone done) {
  CHECK(done != nullptr && count >= 1 && count <= wire::kMaxSocketsPerMessage);
  if (lost_) return;
  unsent_sockets_.push_back(UnsentSockets{family, proto, count, std::move(done)});
  send_sockets();
}

void BrokerClient::send_sockets() noexcept {
  while (!lost_ && !unsent_sockets_.empty()) {
    UnsentSockets& next = unsent_sockets_.front();
    wire::OpenSocketsMsg msg = {};
    msg.header = wire::header(wire::BrokerMsg::kOpenSockets, sequence_ + 1);
    msg.family = static_cast<uint8_t>(next.family == AF_INET ? wire::WireFamily::kInet
                                                             : wire::WireFamily::kInet6);
    msg.proto = static_cast<uint8_t>(next.proto == Proto::kTcp ? wire::WireProto::kTcp
                                                               : wire::WireProto::kUdp);
    msg.count = next.count;
    if (send_now(&msg, sizeof(msg), {}, "OpenSockets") != Sent::kYes) return;
    ++sequence_;
    InFlight sent{msg.header.sequence, next.count, nullptr};
    sent.sockets_done = std::move(next.done);
    sent.family = next.family;
    sent.proto = next.proto;
    in_flight_.push_back(std::move(sent));
    ++sockets_in_flight_;
    unsent_sockets_.pop_front();
  }
}

bool BrokerClient::receive_sockets() noexcept {
  wire::SocketsOpenedMsg reply;
  auto got = receive_reply(&reply, sizeof(reply), wire::kMaxSocketsPerMessage, "SocketsOpened",
                           "OpenSockets", CutFds::kKeep);
  if (!got) return false;
  InFlight request = std::move(in_flight_.front());
  in_flight_.pop_front();
  --sockets_in_flight_;
  if (got->len != sizeof(reply) || reply.header.magic != wire::kBrokerWireMagic ||
      reply.header.type != static_cast<uint32_t>(wire::BrokerMsg::kSocketsOpened) ||
      reply.header.sequence != request.sequence || reply.count > request.count ||
      (got->fds_cut ? got->fds.size() > reply.count : reply.count != got->fds.size()) ||
      reply.status < 0 || reply.status > wire::kStatusMaxErrno ||
      (reply.status == 0) != (reply.count == request.count)) {
    lose("malformed SocketsOpened from sluiced");
    return false;
  }
  // The worker's descriptor table was full: the sockets that did not arrive
  // count as a short answer, which the pool asks again for later.
  const int32_t status = got->fds_cut && reply.status == 0 ? EMFILE : reply.status;
  for (UniqueFd& fd : got->fds) {
    if (auto ok = verify_fresh_socket(fd.get(), request.family, request.proto); !ok) {
      lose("a socket from sluiced for OpenSockets: " + ok.error().message);
      return false;
    }
  }
  request.sockets_done(std::move(got->fds), status);
  return true;
}

void BrokerClient::on_event(uint32_t events) noexcept {
  if (events & EPOLLOUT) {
    // Room again: what waited goes out first, in order, then it is watched
    // no longer unless a send finds the channel full again.
    watch_for_room(false);
    send_state();
    send_peers();
    send_sockets();
    pump();
  }
  // Every reply already there is handled now: at most one per request in
  // flight at wake-up. Each reply frees room in the window for the next
  // batch, and a quick broker may answer that one while this drain runs;
  // it waits for the next wake-up (the channel is level-triggered), so data
  // events run between batches and a 10,000-port commit never holds them up
  // for more than the replies of one window. The callbacks may send more
  // requests (a commit's next phase, a new client's PeerQuery).
  size_t budget = std::max<size_t>(in_flight_.size(), 1);  // 1: EOF with nothing asked
  while (!lost_ && budget-- > 0 && receive_one()) {
  }
}

std::optional<uint32_t> BrokerClient::peek_type() noexcept {
  wire::WireHeader h;
  const ssize_t n = ::recv(channel_.get(), &h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      lose(std::string("reading from sluiced: ") + errno_text(errno));
    }
    return std::nullopt;
  }
  if (static_cast<size_t>(n) < sizeof(h)) return 0u;
  return h.type;
}

bool BrokerClient::receive_policy_reload() noexcept {
  wire::PolicyReloadMsg msg;
  auto got = receive_message(channel_.get(), &msg, sizeof(msg), 1, MSG_DONTWAIT, RefusedFds::kClose,
                             CutFds::kKeep);
  if (!got) {
    lose("reading PolicyReload: " + got.error().message);
    return false;
  }
  if (got->len != sizeof(msg) || msg.header.magic != wire::kBrokerWireMagic ||
      msg.header.sequence != 0 || got->fds.size() != (got->fds_cut ? 0u : 1u) ||
      msg.length > wire::kMaxPolicyTextBytes || msg.reserved != 0) {
    lose("malformed PolicyReload from sluiced");
    return false;
  }
  // Cut short, the text never arrived: the handler gets an invalid fd.
  UniqueFd text = got->fds_cut ? UniqueFd() : std::move(got->fds[0]);
  if (on_policy_) on_policy_(std::move(text), msg.length);
  return true;
}

bool BrokerClient::receive_policy_failure() noexcept {
  auto msg = std::make_unique<wire::PolicyReloadFailedMsg>();
  auto got = receive_message(channel_.get(), msg.get(), sizeof(*msg), 0, MSG_DONTWAIT);
  if (!got) {
    lose("reading PolicyReloadFailed: " + got.error().message);
    return false;
  }
  const char* error = msg->error;
  const size_t len = got->len == sizeof(*msg) ? strnlen(error, sizeof(msg->error)) : 0;
  bool well_formed = got->len == sizeof(*msg) && msg->header.magic == wire::kBrokerWireMagic &&
                     msg->header.sequence == 0 && len < sizeof(msg->error);
  for (size_t i = 0; well_formed && i < sizeof(msg->error); ++i) {
    const unsigned char c = static_cast<unsigned char>(error[i]);
    well_formed = i < len ? (c >= 0x20 && c < 0x7f) : c == 0;
  }
  if (!well_formed) {
    lose("malformed PolicyReloadFailed from sluiced");
    return false;
  }
  if (on_policy_failed_) on_policy_failed_(std::string(error, len));
  return true;
}

bool BrokerClient::receive_target_exited() noexcept {
  wire::TargetExitedMsg msg;
  auto got = receive_message(channel_.get(), &msg, sizeof(msg), 0, MSG_DONTWAIT);
  if (!got) {
    lose("reading TargetExited: " + got.error().message);
    return false;
  }
  if (got->len != sizeof(msg) || msg.header.magic != wire::kBrokerWireMagic ||
      msg.header.sequence != 0) {
    lose("malformed TargetExited from sluiced");
    return false;
  }
  if (on_target_exited_) on_target_exited_();
  return true;
}

bool BrokerClient::receive_one() noexcept {
  // sluiced's unasked messages may come between any two replies.
  auto type = peek_type();
  if (!type) return false;
  if (*type == static_cast<uint32_t>(wire::BrokerMsg::kPolicyReload)) {
    return receive_policy_reload();
  }
  if (*type == static_cast<uint32_t>(wire::BrokerMsg::kPolicyReloadFailed)) {
    return receive_policy_failure();
  }
  if (*type == static_cast<uint32_t>(wire::BrokerMsg::kTargetExited)) {
    return receive_target_exited();
  }
  if (in_flight_.empty()) return receive_unasked();
  if (in_flight_.front().peer_done != nullptr) return receive_peer_reply();
  if (in_flight_.front().sockets_done != nullptr) return receive_sockets();
  return receive_listeners();
}

std::optional<ReceivedMessage> BrokerClient::receive_reply(void* buf, size_t cap, size_t max_fds,
                                                           const char* name, const char* request,
                                                           CutFds cut) noexcept {
  auto got =
      receive_message(channel_.get(), buf, cap, max_fds, MSG_DONTWAIT, RefusedFds::kClose, cut);
  if (!got) {
    if (got.error().err != EAGAIN && got.error().err != EWOULDBLOCK) {
      lose(std::string("reading ") + name + ": " + got.error().message);
    }
    return std::nullopt;
  }
  if (got->len == 0) {
    lose(std::string("sluiced closed the channel during ") + request);
    return std::nullopt;
  }
  return std::move(*got);
}

bool BrokerClient::receive_unasked() noexcept {
  // Readable with nothing asked: EOF, or the broker speaking out of turn.
  char byte;
  auto got = receive_message(channel_.get(), &byte, sizeof(byte), 0, MSG_DONTWAIT);
  if (!got && (got.error().err == EAGAIN || got.error().err == EWOULDBLOCK)) return false;
  if (got && got->len == 0) {
    lose("sluiced closed the broker channel", true);
  } else {
    lose("sluiced sent a message nobody asked for");
  }
  return false;
}

bool BrokerClient::receive_peer_reply() noexcept {
  wire::PeerReplyMsg reply;
  auto got = receive_reply(&reply, sizeof(reply), 0, "PeerReply", "PeerQuery");
  if (!got) return false;
  InFlight request = std::move(in_flight_.front());
  in_flight_.pop_front();
  --peers_in_flight_;
  if (got->len != sizeof(reply) || reply.header.magic != wire::kBrokerWireMagic ||
      reply.header.type != static_cast<uint32_t>(wire::BrokerMsg::kPeerReply) ||
      reply.header.sequence != request.sequence || reply.status < 0 ||
      reply.status > wire::kStatusMaxErrno || reply.access > wire::kAccessCommit) {
    lose("malformed PeerReply from sluiced");
    return false;
  }
  PeerIdentity id;
  id.status = reply.status;
  id.pid = reply.pid;
  id.uid = reply.uid;
  id.gid = reply.gid;
  id.access = reply.status == 0 ? reply.access : wire::kAccessNone;
  id.line = reply.line;
  request.peer_done(id);
  return true;
}

bool BrokerClient::receive_listeners() noexcept {
  // A batch the worker's full descriptor table cut short fails the sockets
  // that did not arrive (EMFILE), and with them the commit; not the channel.
  auto got = receive_reply(reply_.get(), sizeof(*reply_), wire::kMaxListenersPerMessage,
                           "ListenersOpened", "OpenListeners", CutFds::kKeep);
  if (!got) return false;
  CHECK(!calls_.empty());
  InFlight request = in_flight_.front();
  in_flight_.pop_front();
  OpenCall& call = calls_.front();
  const size_t first = call.results.size();
  auto results = check_listeners_opened(
      *reply_, got->len, std::move(got->fds), request.sequence,
      std::span<const ListenerKey>(call.keys).subspan(first, request.count), got->fds_cut);
  if (!results) {
    lose(results.error().message);
    return false;
  }
  for (OpenedListener& r : *results) call.results.push_back(std::move(r));
  pump();  // the window has room again
  if (lost_) return false;
  if (calls_.front().results.size() < calls_.front().keys.size()) return true;
  // Complete: take the call out first, so that `done` may ask again.
  OpenCall complete = std::move(calls_.front());
  calls_.pop_front();
  complete.done(std::move(complete.results));
  return true;
}

void BrokerClient::lose(std::string reason, bool idle_eof) noexcept {
  if (lost_) return;
  lost_ = true;
  if (registered_) loop_.remove(channel_.get());
  registered_ = false;
  // Requests still open are never answered; their sockets close here.
  in_flight_.clear();
  peers_in_flight_ = 0;
  sockets_in_flight_ = 0;
  unsent_peers_.clear();
  unsent_sockets_.clear();
  unsent_state_.reset();
  calls_.clear();
  if (on_lost_) on_lost_(BrokerLoss{std::move(reason), idle_eof});
}

}  // namespace sluice
