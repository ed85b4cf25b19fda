// The fake broker (see fake_broker.h).
#include "tests/worker/fake_broker.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/check.h"
#include "base/scm_rights.h"
#include "broker/listener_factory.h"

namespace sluice::testing {
namespace {

using wire::header;

/// True when `spec` is an entry the listener factory can open: a known
/// protocol and family, a v4-mapped address exactly for IPv4, a port, known
/// flags, and dual-stack only on ::. (sluiced checks more: the ifname.)
bool well_formed(const wire::ListenerSpec& spec) {
  const bool tcp = spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp);
  const bool udp = spec.proto == static_cast<uint8_t>(wire::WireProto::kUdp);
  const bool v4 = spec.family == static_cast<uint8_t>(wire::WireFamily::kInet);
  const bool v6 = spec.family == static_cast<uint8_t>(wire::WireFamily::kInet6);
  static const uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const bool mapped = std::memcmp(spec.addr, kMappedPrefix, 12) == 0;
  static const uint8_t kZero[16] = {};
  const bool dual = (spec.flags & wire::kListenerDualStack) != 0;
  return (tcp || udp) && (v4 || v6) && mapped == v4 && spec.port != 0 &&
         (spec.flags & ~wire::kListenerFlagMask) == 0 &&
         (!dual || (v6 && std::memcmp(spec.addr, kZero, 16) == 0));
}

}  // namespace

FakeBroker::FakeBroker() : buffer_(new uint8_t[wire::kMaxWireMessage + 1]) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  channel_.reset(sv[0]);
  worker_end_.reset(sv[1]);
  peer_reply_.header = header(wire::BrokerMsg::kPeerReply, 0);
  peer_reply_.access = wire::kAccessCommit;
}

UniqueFd FakeBroker::take_worker_end() {
  CHECK(worker_end_.valid());
  return std::move(worker_end_);
}

void FakeBroker::set_hello(uint32_t unprivileged_port_start, bool has_bind_cap) {
  port_start_ = unprivileged_port_start;
  has_bind_cap_ = has_bind_cap;
}

void FakeBroker::set_peer_reply(int32_t pid, uint32_t uid, uint32_t gid, uint32_t access,
                                uint32_t line) {
  peer_reply_.status = 0;
  peer_reply_.pid = pid;
  peer_reply_.uid = uid;
  peer_reply_.gid = gid;
  peer_reply_.access = access;
  peer_reply_.line = line;
}

bool FakeBroker::serve_hello(int timeout_ms) {
  struct pollfd p = {channel_.get(), POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) {
    error_ = "no Hello within the timeout";
    return false;
  }
  wire::HelloMsg hello;
  auto got = receive_message(channel_.get(), &hello, sizeof(hello), 0);
  if (!got || got->len != sizeof(hello) || hello.header.magic != wire::kBrokerWireMagic ||
      hello.header.type != static_cast<uint32_t>(wire::BrokerMsg::kHello) ||
      hello.version != wire::kBrokerWireVersion || hello.reserved != 0) {
    violation("malformed Hello");
    return false;
  }
  wire::HelloReplyMsg reply = {};
  reply.header = header(wire::BrokerMsg::kHelloReply, hello.header.sequence);
  reply.version = wire::kBrokerWireVersion;
  reply.flags = has_bind_cap_ ? wire::kBrokerHasBindCap : 0;
  reply.unprivileged_port_start = port_start_;
  if (splice_) {
    reply.flags |= wire::kBrokerSpliceServed;
    if (splice_has_bind_cap_) reply.flags |= wire::kBrokerSpliceHasBindCap;
    reply.splice_unprivileged_port_start = splice_port_start_;
  }
  if (!send_message(channel_.get(), &reply, sizeof(reply), {}).ok()) return false;
  // InitialPorts until the one flagged last; no reply.
  auto initial = std::make_unique<wire::InitialPortsMsg>();
  for (;;) {
    if (poll(&p, 1, timeout_ms) != 1) {
      error_ = "no InitialPorts within the timeout";
      return false;
    }
    auto ports = receive_message(channel_.get(), initial.get(), sizeof(*initial), 0);
    if (!ports || ports->len != sizeof(*initial) ||
        initial->header.type != static_cast<uint32_t>(wire::BrokerMsg::kInitialPorts) ||
        initial->count > wire::kMaxGrantsPerMessage) {
      violation("malformed InitialPorts");
      return false;
    }
    grants_.insert(grants_.end(), initial->grants, initial->grants + initial->count);
    if ((initial->flags & wire::kInitialPortsLast) != 0) return true;
  }
}

size_t FakeBroker::serve() {
  while (channel_.valid() && read_one()) {
  }
  return answer_waiting();
}

bool FakeBroker::send_raw(const std::string& bytes) {
  return channel_.valid() && send_message(channel_.get(), bytes.data(), bytes.size(), {}).ok();
}

bool FakeBroker::send_with_fd(const std::string& bytes, int fd) {
  std::vector<int> fds;
  if (fd >= 0) fds.push_back(fd);
  return channel_.valid() && send_message(channel_.get(), bytes.data(), bytes.size(), fds).ok();
}

bool FakeBroker::read_one() {
  auto got =
      receive_message(channel_.get(), buffer_.get(), wire::kMaxWireMessage + 1, 2, MSG_DONTWAIT);
  if (!got) {
    if (got.error().err != EAGAIN) violation("recvmsg: " + got.error().message);
    return false;
  }
  if (got->len == 0) {  // the worker closed its end
    channel_.reset();
    return false;
  }
  wire::WireHeader h;
  if (got->len < sizeof(h)) {
    violation("a datagram shorter than a header");
    return false;
  }
  std::memcpy(&h, buffer_.get(), sizeof(h));
  if (h.magic != wire::kBrokerWireMagic) {
    violation("bad magic");
    return false;
  }
  if (h.type == static_cast<uint32_t>(wire::BrokerMsg::kStoreState)) {
    // The worker's state for a restart: two sealed memfds, no reply.
    if (got->len != sizeof(wire::StoreStateMsg) || got->fds.size() != 2) {
      violation("StoreState of the wrong size, or without its two fds");
      return false;
    }
    ++states_stored_;
    last_blob_.clear();
    char buf[4096];
    // Limit: the blob's bytes, at most wire::kMaxStateBlobBytes.
    for (off_t off = 0; off < static_cast<off_t>(wire::kMaxStateBlobBytes);) {
      const ssize_t n = pread(got->fds[0].get(), buf, sizeof(buf), off);
      if (n <= 0) break;
      last_blob_.append(buf, static_cast<size_t>(n));
      off += n;
    }
    if (escrow_) {
      wire::StoreStateMsg msg;
      std::memcpy(&msg, buffer_.get(), sizeof(msg));
      if (auto stored = escrow_->store(msg, std::move(got->fds[0]), std::move(got->fds[1]));
          !stored) {
        violation("StoreState: " + stored.error().message);
        return false;
      }
    }
    return true;
  }
  Request request;
  request.type = static_cast<wire::BrokerMsg>(h.type);
  request.sequence = h.sequence;
  if (request.type == wire::BrokerMsg::kOpenListeners) {
    auto msg = std::make_unique<wire::OpenListenersMsg>();
    if (got->len != sizeof(*msg) || !got->fds.empty()) {
      violation("OpenListeners of the wrong size, or with fds");
      return false;
    }
    std::memcpy(msg.get(), buffer_.get(), sizeof(*msg));
    if (msg->count < 1 || msg->count > wire::kMaxListenersPerMessage || msg->reserved != 0) {
      violation("OpenListeners with a bad count");
      return false;
    }
    request.entries.assign(msg->entries, msg->entries + msg->count);
    for (const wire::ListenerSpec& e : request.entries) {
      if (!well_formed(e)) {
        violation("a malformed OpenListeners entry for port " + std::to_string(e.port));
        return false;
      }
    }
    asked_.insert(asked_.end(), request.entries.begin(), request.entries.end());
    ++open_requests_;
    if (open_requests_ == close_on_request_) {
      channel_.reset();  // the broker dies with the request unanswered
      return false;
    }
  } else if (request.type == wire::BrokerMsg::kPeerQuery) {
    if (got->len != sizeof(wire::PeerQueryMsg) || got->fds.size() != 1) {
      violation("PeerQuery of the wrong size, or without its one fd");
      return false;
    }
    request.conn = std::move(got->fds[0]);
  } else if (request.type == wire::BrokerMsg::kOpenSockets) {
    if (got->len != sizeof(wire::OpenSocketsMsg) || !got->fds.empty() || !splice_) {
      violation("OpenSockets of the wrong size, with fds, or without SPLICE served");
      return false;
    }
    std::memcpy(&request.sockets, buffer_.get(), sizeof(request.sockets));
    if (request.sockets.count < 1 || request.sockets.count > wire::kMaxSocketsPerMessage ||
        request.sockets.reserved != 0) {
      violation("OpenSockets with a bad count");
      return false;
    }
  } else {
    violation("a request of type " + std::to_string(h.type) + " after Hello");
    return false;
  }
  waiting_.push_back(std::move(request));
  return true;
}

size_t FakeBroker::answer_waiting() {
  size_t sent = 0;
  while (channel_.valid() && !waiting_.empty()) {
    Request& next = waiting_.front();
    bool open = next.type == wire::BrokerMsg::kOpenListeners;
    if (open && open_replies_ >= answer_limit_) break;  // held back, in order
    const bool answered = open                                         ? answer_open(next)
                          : next.type == wire::BrokerMsg::kOpenSockets ? answer_sockets(next)
                                                                       : answer_peer(next);
    if (!answered) break;
    waiting_.pop_front();
    ++sent;
  }
  return sent;
}

bool FakeBroker::answer_open(const Request& request) {
  auto reply = std::make_unique<wire::ListenersOpenedMsg>();
  std::memset(reply.get(), 0, sizeof(*reply));
  reply->header = header(wire::BrokerMsg::kListenersOpened, request.sequence);
  reply->count = static_cast<uint32_t>(request.entries.size());
  std::vector<UniqueFd> sockets;
  std::vector<int> fds;
  // As sluiced: the listeners a rebind replaces may share their port first.
  std::vector<wire::ListenerSpec> entries = request.entries;
  if (escrow_) escrow_->share_ports(entries, check_holders_on(tables_, tables_));
  // Requests are answered in order, so this request's first key is the
  // first one not answered yet.
  size_t ordinal = answered_keys_;
  for (size_t i = 0; i < entries.size(); ++i, ++ordinal) {
    const wire::ListenerSpec& spec = entries[i];
    int32_t status = wire::kStatusOk;
    if (auto it = fail_ordinal_.find(ordinal); it != fail_ordinal_.end()) {
      status = it->second;
    } else if (auto p = fail_port_.find(spec.port); p != fail_port_.end()) {
      status = p->second;
    } else {
      auto fd = open_listener(spec);
      if (fd && escrow_) {
        if (auto kept = escrow_->keep(fd->get(), spec, request.sequence); !kept) {
          violation("escrow: " + kept.error().message);
          return false;
        }
      }
      if (fd) {
        fds.push_back(fd->get());
        sockets.push_back(std::move(*fd));
      } else {
        status = fd.error().err;
      }
    }
    reply->status[i] = status;
  }
  reply->fd_count = static_cast<uint32_t>(fds.size());
  if (!send_message(channel_.get(), reply.get(), sizeof(*reply), fds)) {
    violation("sending ListenersOpened failed");
    return false;
  }
  // Like sluiced, the broker closes these copies once they are sent (the
  // escrow's own copies, with keep_listeners(), stay until a StoreState).
  answered_keys_ = ordinal;
  ++open_replies_;
  if (open_replies_ == close_after_reply_) channel_.reset();
  return true;
}

void FakeBroker::keep_listeners() {
  escrow_ = std::make_unique<ListenerEscrow>();
}

bool FakeBroker::answer_peer(const Request& request) {
  wire::PeerReplyMsg reply = peer_reply_;
  reply.header = header(wire::BrokerMsg::kPeerReply, request.sequence);
  if (!send_message(channel_.get(), &reply, sizeof(reply), {})) {
    violation("sending PeerReply failed");
    return false;
  }
  ++peer_replies_;
  return true;
}

bool FakeBroker::answer_sockets(const Request& request) {
  wire::SocketsOpenedMsg reply = {};
  reply.header = header(wire::BrokerMsg::kSocketsOpened, request.sequence);
  uint32_t count = request.sockets.count;
  if (short_made_ != UINT32_MAX) {
    count = std::min(count, short_made_);
    reply.status = short_status_;
    short_made_ = UINT32_MAX;
  }
  std::vector<UniqueFd> sockets;
  std::vector<int> fds;
  for (uint32_t i = 0; i < count; ++i) {
    auto fd = open_fresh_socket(static_cast<wire::WireFamily>(request.sockets.family),
                                static_cast<wire::WireProto>(request.sockets.proto));
    if (!fd) {
      reply.status = fd.error().err;
      break;
    }
    fds.push_back(fd->get());
    sockets.push_back(std::move(*fd));
  }
  reply.count = static_cast<uint32_t>(sockets.size());
  if (!send_message(channel_.get(), &reply, sizeof(reply), fds)) {
    violation("sending SocketsOpened failed");
    return false;
  }
  ++socket_replies_;
  sockets_sent_ += sockets.size();
  return true;
}

void FakeBroker::violation(const std::string& what) {
  if (error_.empty()) error_ = what;
  channel_.reset();  // the real broker exits
}

}  // namespace sluice::testing
