#include "worker/broker_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "base/scm_rights.h"
#include "base/strings.h"

namespace sluice {

wire::ListenerSpec to_wire(const ListenerKey& key) noexcept {
  wire::ListenerSpec spec = {};
  spec.proto = static_cast<uint8_t>(key.proto == Proto::kTcp ? wire::WireProto::kTcp
                                                             : wire::WireProto::kUdp);
  bool v4 = !key.dual_stack && addr_is_v4(key.addr);
  spec.family = static_cast<uint8_t>(v4 ? wire::WireFamily::kInet : wire::WireFamily::kInet6);
  spec.port = key.port;
  spec.flags = key.dual_stack ? wire::kListenerDualStack : 0;
  std::memcpy(spec.addr, key.addr.data(), 16);
  std::memcpy(spec.ifname, key.ifname.data(), wire::kIfNameSize);
  spec.ifname[wire::kIfNameSize - 1] = '\0';
  return spec;
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

Result<BrokerInfo> BrokerClient::hello() {
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
  BrokerInfo info;
  info.has_bind_cap = (reply.flags & wire::kBrokerHasBindCap) != 0;
  info.unprivileged_port_start = reply.unprivileged_port_start;
  return info;
}

Result<void> BrokerClient::send_request(std::span<const ListenerKey> keys) {
  CHECK(!keys.empty() && keys.size() <= wire::kMaxListenersPerMessage);
  // The messages are ~10 KiB each: keep them off the stack.
  auto msg = std::make_unique<wire::OpenListenersMsg>();
  std::memset(msg.get(), 0, sizeof(*msg));
  msg->header = wire::header(wire::BrokerMsg::kOpenListeners, ++sequence_);
  msg->count = static_cast<uint32_t>(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) msg->entries[i] = to_wire(keys[i]);
  auto sent = send_message(channel_.get(), msg.get(), sizeof(*msg), {});
  if (!sent) return Err(sent.error().err, "sending OpenListeners: " + sent.error().message);
  pending_.push_back(Pending{msg->header.sequence, {keys.begin(), keys.end()}, nullptr});
  return Ok();
}

Result<void> BrokerClient::send_peer_query(int conn,
                                           std::function<void(const PeerIdentity&)> done) {
  CHECK(done != nullptr);
  wire::PeerQueryMsg msg = {};
  msg.header = wire::header(wire::BrokerMsg::kPeerQuery, ++sequence_);
  const int fds[] = {conn};
  auto sent = send_message(channel_.get(), &msg, sizeof(msg), fds);
  if (!sent) return Err(sent.error().err, "sending PeerQuery: " + sent.error().message);
  pending_.push_back(Pending{msg.header.sequence, {}, std::move(done)});
  ++pending_peers_;
  return Ok();
}

Result<void> BrokerClient::receive_peer_reply() {
  CHECK(next_is_peer_query());
  Pending request = std::move(pending_.front());
  pending_.pop_front();
  --pending_peers_;
  wire::PeerReplyMsg reply;
  auto got = receive_message(channel_.get(), &reply, sizeof(reply), 0);
  if (!got) return Err(got.error().err, "reading PeerReply: " + got.error().message);
  if (got->len == 0) return Err(EPIPE, "sluiced closed the channel during PeerQuery");
  if (got->len != sizeof(reply) || reply.header.magic != wire::kBrokerWireMagic ||
      reply.header.type != static_cast<uint32_t>(wire::BrokerMsg::kPeerReply) ||
      reply.header.sequence != request.sequence || reply.status < 0 ||
      reply.status > wire::kStatusMaxErrno || reply.access > wire::kAccessCommit) {
    return Err(EPROTO, "malformed PeerReply from sluiced");
  }
  PeerIdentity id;
  id.status = reply.status;
  id.pid = reply.pid;
  id.uid = reply.uid;
  id.gid = reply.gid;
  id.access = reply.status == 0 ? reply.access : wire::kAccessNone;
  id.line = reply.line;
  request.peer_done(id);
  return Ok();
}

Result<std::vector<OpenedListener>> BrokerClient::receive_reply() {
  CHECK(!pending_.empty() && !next_is_peer_query());
  Pending request = std::move(pending_.front());
  pending_.pop_front();
  const std::vector<ListenerKey>& keys = request.keys;
  auto reply = std::make_unique<wire::ListenersOpenedMsg>();
  auto got =
      receive_message(channel_.get(), reply.get(), sizeof(*reply), wire::kMaxListenersPerMessage);
  if (!got) return Err(got.error().err, "reading ListenersOpened: " + got.error().message);
  if (got->len == 0) return Err(EPIPE, "sluiced closed the channel during OpenListeners");
  if (got->len != sizeof(*reply) || reply->header.magic != wire::kBrokerWireMagic ||
      reply->header.type != static_cast<uint32_t>(wire::BrokerMsg::kListenersOpened) ||
      reply->header.sequence != request.sequence || reply->count != keys.size() ||
      reply->fd_count != got->fds.size()) {
    return Err(EPROTO, "malformed ListenersOpened from sluiced");
  }
  std::vector<OpenedListener> out;
  out.reserve(keys.size());
  size_t next_fd = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    OpenedListener result;
    result.status = reply->status[i];
    if (result.status == wire::kStatusOk) {
      if (next_fd >= got->fds.size()) return Err(EPROTO, "ListenersOpened carries too few fds");
      result.fd = std::move(got->fds[next_fd++]);
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
  if (next_fd != got->fds.size()) return Err(EPROTO, "ListenersOpened carries too many fds");
  return out;
}

}  // namespace sluice
