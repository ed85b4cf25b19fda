// The host side of the worker <-> broker protocol (see broker_host.h).
#include "broker/broker_host.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/scm_rights.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "broker/listener_factory.h"

namespace sluice {
namespace {

/// Returns true when all `len` bytes at `p` are zero.
bool all_zero(const void* p, size_t len) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < len; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

/// The v4-mapped prefix ::ffff:0:0/96 that marks an IPv4 address.
constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/// Returns true when the well-formed `spec` binds a loopback address:
/// 127.0.0.0/8 (v4-mapped) or ::1.
bool binds_loopback(const wire::ListenerSpec& spec) {
  if (spec.family == static_cast<uint8_t>(wire::WireFamily::kInet)) return spec.addr[12] == 127;
  static constexpr uint8_t kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::memcmp(spec.addr, kLoop6, sizeof(kLoop6)) == 0;
}

/// Returns true for the bytes the kernel's dev_valid_name() refuses besides
/// '/' and NUL: isspace() in the C locale.
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

}  // namespace

// The dispatch table. A request type not listed here, or listed but arriving
// in another state, means the worker is compromised.
const BrokerHost::DispatchEntry BrokerHost::kDispatch[9] = {
    {wire::BrokerMsg::kHello, HostState::kAwaitHello, sizeof(wire::HelloMsg), 0, "Hello",
     &BrokerHost::answer_hello},
    {wire::BrokerMsg::kInitialPorts, HostState::kAwaitInitial, sizeof(wire::InitialPortsMsg), 0,
     "InitialPorts", &BrokerHost::answer_initial_ports},
    {wire::BrokerMsg::kOpenListeners, HostState::kReady, sizeof(wire::OpenListenersMsg), 0,
     "OpenListeners", &BrokerHost::answer_open_listeners},
    {wire::BrokerMsg::kPeerQuery, HostState::kReady, sizeof(wire::PeerQueryMsg), 1, "PeerQuery",
     &BrokerHost::answer_peer_query},
    {wire::BrokerMsg::kOpenSockets, HostState::kReady, sizeof(wire::OpenSocketsMsg), 0,
     "OpenSockets", &BrokerHost::answer_open_sockets},
    {wire::BrokerMsg::kWorkerStatus, HostState::kReady, sizeof(wire::WorkerStatusMsg), 0,
     "WorkerStatus", &BrokerHost::answer_worker_status},
    {wire::BrokerMsg::kStoreState, HostState::kReady, sizeof(wire::StoreStateMsg), 2, "StoreState",
     &BrokerHost::answer_store_state},
    {wire::BrokerMsg::kResume, HostState::kAwaitResume, sizeof(wire::ResumeMsg), 0, "Resume",
     &BrokerHost::answer_resume},
    {wire::BrokerMsg::kReclaimListeners, HostState::kReclaiming, sizeof(wire::ReclaimListenersMsg),
     0, "ReclaimListeners", &BrokerHost::answer_reclaim},
};

const BrokerHost::DispatchEntry* BrokerHost::find_entry(uint32_t type) noexcept {
  for (const DispatchEntry& entry : kDispatch) {
    if (static_cast<uint32_t>(entry.type) == type) return &entry;
  }
  return nullptr;
}

Result<wire::BrokerMsg> check_envelope(std::span<const uint8_t> msg, size_t fd_count,
                                       HostState state) {
  if (msg.size() < sizeof(wire::WireHeader)) {
    return Err("truncated message: " + std::to_string(msg.size()) +
               " bytes, shorter than the 16-byte header");
  }
  if (msg.size() > wire::kMaxWireMessage) {
    return Err("oversized message: more than " + std::to_string(wire::kMaxWireMessage) +
               " bytes, the largest request");
  }
  wire::WireHeader header;
  std::memcpy(&header, msg.data(), sizeof(header));
  if (header.magic != wire::kBrokerWireMagic) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", header.magic);
    return Err(std::string("bad magic ") + hex + " (not a sluice broker message)");
  }
  const BrokerHost::DispatchEntry* entry = BrokerHost::find_entry(header.type);
  if (entry == nullptr) {
    return Err("message type " + std::to_string(header.type) +
               " is not a request the broker accepts (only Hello, InitialPorts, OpenListeners, "
               "PeerQuery, OpenSockets, WorkerStatus, StoreState, Resume and ReclaimListeners)");
  }
  if (msg.size() != entry->size) {
    return Err(std::string(entry->name) + " of " + std::to_string(msg.size()) +
               " bytes; it must be exactly " + std::to_string(entry->size));
  }
  if (fd_count != entry->fds) {
    return Err(std::string("a ") + entry->name + " carries " + std::to_string(entry->fds) +
               " fds, this one came with " + std::to_string(fd_count));
  }
  if (state != entry->state) {
    const char* why = "";
    if (state == HostState::kAwaitHello) {
      why = " before Hello (Hello must come first)";
    } else if (entry->type == wire::BrokerMsg::kHello) {
      why = " after the conversation started (Hello is permitted once, first)";
    } else if (entry->type == wire::BrokerMsg::kInitialPorts) {
      why =
          " after the initial rules' ports were declared (they are declared once, right after "
          "Hello, before a peer could have reached the worker)";
    } else if (state == HostState::kAwaitResume || state == HostState::kReclaiming ||
               entry->type == wire::BrokerMsg::kResume ||
               entry->type == wire::BrokerMsg::kReclaimListeners) {
      why =
          " out of turn: a restarted worker asks Resume once, right after InitialPorts, then "
          "ReclaimListeners until the last batch, before anything else";
    } else {
      why = " before the initial rules' ports were declared (InitialPorts must follow Hello)";
    }
    return Err(std::string(entry->name) + why);
  }
  return entry->type;
}

Result<void> validate_hello(const wire::HelloMsg& msg) {
  if (msg.version != wire::kBrokerWireVersion) {
    return Err("worker speaks broker protocol version " + std::to_string(msg.version) +
               ", this sluiced speaks " + std::to_string(wire::kBrokerWireVersion) +
               "; install sluiced and sluice-worker from the same build");
  }
  if (msg.reserved != 0) return Err("Hello reserved field is not 0");
  return Ok();
}

Result<void> validate_listener_spec(const wire::ListenerSpec& spec) {
  if (spec.proto != static_cast<uint8_t>(wire::WireProto::kTcp) &&
      spec.proto != static_cast<uint8_t>(wire::WireProto::kUdp)) {
    return Err("proto " + std::to_string(spec.proto) + " is neither TCP (6) nor UDP (17)");
  }
  const bool v4 = spec.family == static_cast<uint8_t>(wire::WireFamily::kInet);
  if (!v4 && spec.family != static_cast<uint8_t>(wire::WireFamily::kInet6)) {
    return Err("family " + std::to_string(spec.family) + " is neither AF_INET nor AF_INET6");
  }
  const bool mapped = std::memcmp(spec.addr, kMappedPrefix, sizeof(kMappedPrefix)) == 0;
  if (v4 && !mapped) return Err("family AF_INET with an address that is not v4-mapped");
  if (!v4 && mapped) return Err("family AF_INET6 with a v4-mapped address");
  if (spec.port == 0) return Err("port 0 (the kernel would pick a random port)");
  if ((spec.flags & ~wire::kListenerFlagMask) != 0) {
    return Err("unknown flags " + std::to_string(spec.flags & ~wire::kListenerFlagMask));
  }
  if ((spec.flags & wire::kListenerDualStack) != 0 &&
      (v4 || !all_zero(spec.addr, sizeof(spec.addr)))) {
    return Err("dual-stack requested for an address other than AF_INET6 ::");
  }
  const void* nul = std::memchr(spec.ifname, '\0', sizeof(spec.ifname));
  if (nul == nullptr) return Err("ifname is not NUL-terminated within 16 bytes");
  size_t len = static_cast<size_t>(static_cast<const char*>(nul) - spec.ifname);
  if (!all_zero(spec.ifname + len, sizeof(spec.ifname) - len)) {
    return Err("ifname has bytes after its NUL (they must be zero)");
  }
  std::string_view name(spec.ifname, len);
  for (char c : name) {
    if (c == '/' || is_space(c)) return Err("ifname \"" + sanitize(name) + "\" has '/' or a blank");
  }
  if (name == "." || name == "..") return Err("ifname \"" + std::string(name) + "\" is not valid");
  if ((spec.flags & wire::kListenerSplice) != 0 && name != wire::kListenerSpliceIfName &&
      !(name.empty() && binds_loopback(spec))) {
    return Err(
        "a SPLICE listener off the target namespace's loopback (it must be bound to lo, or to "
        "127.0.0.0/8 or ::1)");
  }
  return Ok();
}

Result<void> validate_open_listeners(const wire::OpenListenersMsg& msg, bool splice_served) {
  if (msg.count < 1 || msg.count > wire::kMaxListenersPerMessage) {
    return Err("count " + std::to_string(msg.count) + " outside 1.." +
               std::to_string(wire::kMaxListenersPerMessage));
  }
  if (msg.reserved != 0) return Err("OpenListeners reserved field is not 0");
  for (uint32_t i = 0; i < msg.count; ++i) {
    auto ok = validate_listener_spec(msg.entries[i]);
    if (!ok) return Err("entry " + std::to_string(i) + ": " + ok.error().message);
    if ((msg.entries[i].flags & wire::kListenerSplice) != 0 && !splice_served) {
      return Err("entry " + std::to_string(i) +
                 ": a SPLICE listener, but sluiced has no target namespace (--netns)");
    }
  }
  for (uint32_t i = msg.count; i < wire::kMaxListenersPerMessage; ++i) {
    if (!all_zero(&msg.entries[i], sizeof(msg.entries[i]))) {
      return Err("entry " + std::to_string(i) + " past count " + std::to_string(msg.count) +
                 " is not all zero");
    }
  }
  return Ok();
}

Result<void> validate_open_sockets(const wire::OpenSocketsMsg& msg, bool splice_served) {
  if (!splice_served) {
    return Err(
        "OpenSockets, but sluiced has no target namespace (--netns): only SPLICE rules "
        "connect through its sockets");
  }
  if (msg.family != static_cast<uint8_t>(wire::WireFamily::kInet) &&
      msg.family != static_cast<uint8_t>(wire::WireFamily::kInet6)) {
    return Err("family " + std::to_string(msg.family) + " is neither AF_INET nor AF_INET6");
  }
  if (msg.proto != static_cast<uint8_t>(wire::WireProto::kTcp) &&
      msg.proto != static_cast<uint8_t>(wire::WireProto::kUdp)) {
    return Err("proto " + std::to_string(msg.proto) + " is neither TCP (6) nor UDP (17)");
  }
  if (msg.reserved != 0) return Err("OpenSockets reserved field is not 0");
  if (msg.count < 1 || msg.count > wire::kMaxSocketsPerMessage) {
    return Err("count " + std::to_string(msg.count) + " outside 1.." +
               std::to_string(wire::kMaxSocketsPerMessage));
  }
  return Ok();
}

Result<void> validate_initial_ports(const wire::InitialPortsMsg& msg, size_t declared,
                                    uint32_t unprivileged_port_start, bool splice_served,
                                    uint32_t splice_unprivileged_port_start) {
  if (msg.count > wire::kMaxGrantsPerMessage) {
    return Err("count " + std::to_string(msg.count) + " above " +
               std::to_string(wire::kMaxGrantsPerMessage));
  }
  if ((msg.flags & ~wire::kInitialPortsFlagMask) != 0) {
    return Err("unknown flags " + std::to_string(msg.flags & ~wire::kInitialPortsFlagMask));
  }
  if (declared + msg.count > wire::kMaxInitialGrants) {
    return Err("more than " + std::to_string(wire::kMaxInitialGrants) +
               " grants in all (one per rule of a full table set)");
  }
  for (uint32_t i = 0; i < msg.count; ++i) {
    const wire::PortGrant& g = msg.grants[i];
    const std::string which = "grant " + std::to_string(i) + ": ";
    auto ok = validate_listener_spec(g.listener);
    if (!ok) return Err(which + ok.error().message);
    if (g.last_port < g.listener.port) {
      return Err(which + "last port " + std::to_string(g.last_port) + " below its first " +
                 std::to_string(g.listener.port));
    }
    // A SPLICE rule's ports are privileged or not inside the target
    // namespace, by its own sysctl.
    const bool splice = (g.listener.flags & wire::kListenerSplice) != 0;
    if (splice && !splice_served) {
      return Err(which + "a SPLICE grant, but sluiced has no target namespace (--netns)");
    }
    const uint32_t start = splice ? splice_unprivileged_port_start : unprivileged_port_start;
    if (g.last_port >= start) {
      return Err(which + "port " + std::to_string(g.last_port) +
                 " is not privileged (net.ipv4.ip_unprivileged_port_start is " +
                 std::to_string(start) + (splice ? " in the target namespace" : "") +
                 "); grants name privileged ports only");
    }
    if (g.reserved16 != 0 || g.reserved != 0) return Err(which + "reserved field is not 0");
  }
  for (uint32_t i = msg.count; i < wire::kMaxGrantsPerMessage; ++i) {
    if (!all_zero(&msg.grants[i], sizeof(msg.grants[i]))) {
      return Err("grant " + std::to_string(i) + " past count " + std::to_string(msg.count) +
                 " is not all zero");
    }
  }
  return Ok();
}

Result<void> validate_peer_query(const wire::PeerQueryMsg& msg) {
  if (msg.reserved[0] != 0 || msg.reserved[1] != 0) return Err("PeerQuery reserved field is not 0");
  return Ok();
}

Result<void> check_peer_socket(int fd) {
  int domain = -1, type = -1;
  socklen_t len = sizeof(domain);
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    int err = errno;
    return Err(err, "getsockopt(SO_DOMAIN): " + errno_text(err));
  }
  len = sizeof(type);
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    int err = errno;
    return Err(EPROTO, "a socket of family " + std::to_string(domain) +
                           " whose type cannot be read (" + errno_text(err) + ")");
  }
  if (domain != AF_UNIX || type != SOCK_STREAM) {
    return Err(EPROTO, "a socket of family " + std::to_string(domain) + " and type " +
                           std::to_string(type) +
                           ", not the UNIX stream socket of a control client (family " +
                           std::to_string(AF_UNIX) + ", type " + std::to_string(SOCK_STREAM) + ")");
  }
  return Ok();
}

void answer_peer(const ControlPolicy& policy, int fd, wire::PeerReplyMsg* reply) {
  reply->status = 0;
  reply->pid = 0;
  reply->uid = reply->gid = 0;
  reply->access = wire::kAccessNone;
  reply->line = 0;
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    reply->status = errno;
    return;
  }
  // Who it is, whatever comes next: a refusal for its groups must still name
  // the peer in the worker's log and audit record, never as pid 0, uid 0.
  reply->pid = cred.pid;
  reply->uid = cred.uid;
  reply->gid = cred.gid;
  // One more slot than the limit: a peer with more groups fails with ERANGE
  // from the kernel, or fills every slot; either way it is refused.
  gid_t groups[kMaxPeerGroups + 1];
  socklen_t glen = sizeof(groups);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) != 0) {
    reply->status = errno;
    return;
  }
  const size_t count = glen / sizeof(gid_t);
  if (count > kMaxPeerGroups) {
    reply->status = ERANGE;
    return;
  }
  static_assert(sizeof(gid_t) == sizeof(uint32_t));
  ControlDecision d =
      decide_control(policy, cred.uid, cred.gid,
                     std::span<const uint32_t>(reinterpret_cast<const uint32_t*>(groups), count));
  reply->access = static_cast<uint32_t>(d.access);
  reply->line = d.line;
}

BrokerHost::BrokerHost(BindPolicy policy, ControlPolicy control)
    : policy_(std::move(policy)),
      control_(std::move(control)),
      buf_(new uint8_t[wire::kMaxWireMessage + 1]),
      request_(std::make_unique<wire::OpenListenersMsg>()),
      reply_(std::make_unique<wire::ListenersOpenedMsg>()),
      initial_(std::make_unique<wire::InitialPortsMsg>()),
      pending_(new uint8_t[wire::kMaxWireMessage]) {}

HandleStatus BrokerHost::fail(HandleStatus status, std::string what) {
  last_error_ = std::move(what);
  return status;
}

HandleStatus BrokerHost::handle_one(int fd) {
  // One request at a time: the next is read only once this reply is sent.
  if (reply_pending() || splice_wait_.active) return HandleStatus::kContinue;
  // One byte more than the largest request: an oversized datagram then shows
  // up as a length mismatch (or MSG_TRUNC), never as a silently cut message.
  fds_.clear();
  // At most two fds (a StoreState's); more is a violation, and receive_message
  // closes whatever arrived. Every fd the worker sent that the broker closes
  // is closed without lingering (close_without_linger): the worker chose it.
  auto got = receive_message(fd, buf_.get(), wire::kMaxWireMessage + 1, 2, MSG_DONTWAIT,
                             RefusedFds::kCloseWithoutLinger);
  if (!got) {
    const Error& e = got.error();
    if (e.err == EAGAIN || e.err == EWOULDBLOCK) return HandleStatus::kContinue;
    if (e.err == ECONNRESET) return fail(HandleStatus::kPeerClosed, "channel reset: " + e.message);
    // receive_message reports more fds than one, MSG_TRUNC,
    // MSG_CTRUNC and foreign control messages as EPROTO or EMSGSIZE.
    if (e.err == EPROTO || e.err == EMSGSIZE) return fail(HandleStatus::kViolation, e.message);
    return fail(HandleStatus::kIoError, "receiving from the worker: " + e.message);
  }
  if (got->len == 0) return fail(HandleStatus::kPeerClosed, "the worker closed its channel");
  len_ = got->len;
  fds_ = std::move(got->fds);
  auto type = check_envelope({buf_.get(), len_}, fds_.size(), state_);
  if (!type) {
    close_without_linger(fds_);  // a violation keeps nothing the worker sent
    return fail(HandleStatus::kViolation, type.error().message);
  }
  const DispatchEntry* entry = find_entry(static_cast<uint32_t>(*type));
  CHECK(entry != nullptr);
  return (this->*entry->answer)(fd);
}

HandleStatus BrokerHost::send_reply(int fd, const void* reply, size_t len,
                                    std::vector<UniqueFd> fds) {
  // Every reply fits the pending buffer: ListenersReclaimed is the largest.
  static_assert(sizeof(wire::ListenersReclaimedMsg) <= wire::kMaxWireMessage);
  // A PolicyReload may wait (queued between two reads): it goes out after this.
  CHECK(pending_len_ == 0 && len <= wire::kMaxWireMessage);
  std::memcpy(pending_.get(), reply, len);
  pending_len_ = len;
  pending_fds_ = std::move(fds);
  return flush_reply(fd);
}

void BrokerHost::replace_policy(BindPolicy bind, ControlPolicy control) {
  bind.unprivileged_port_start = policy_.unprivileged_port_start;
  bind.has_bind_cap = policy_.has_bind_cap;
  bind.initial_grants = policy_.initial_grants;
  if (splice_served()) {
    BindPolicy splice = bind;
    splice.unprivileged_port_start = splice_policy_.unprivileged_port_start;
    splice.has_bind_cap = splice_policy_.has_bind_cap;
    splice_policy_ = std::move(splice);
  }
  policy_ = std::move(bind);
  control.owner_uid = control_.owner_uid;
  control_ = std::move(control);
}

void BrokerHost::queue_policy_reload(int text_fd, uint32_t length) noexcept {
  failure_first_ = push_failed_;  // a failure that waits ended before this reload
  push_fd_ = text_fd;
  push_length_ = length;
}

void BrokerHost::queue_policy_failure(const std::string& error) noexcept {
  failure_first_ = push_fd_ < 0;  // a reload that waits ended before this failure
  push_failed_ = true;
  // The texts are sluiced's own and the reader's, already made printable;
  // whatever is not is replaced, so the worker may insist on it.
  push_error_ = error.substr(0, wire::kPolicyErrorBytes - 1);
  for (char& c : push_error_) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
}

HandleStatus BrokerHost::flush_pushes(int fd) {
  if (exit_unsent_) {
    wire::TargetExitedMsg msg = {};
    msg.header = wire::header(wire::BrokerMsg::kTargetExited, 0);
    auto sent = send_message(fd, &msg, sizeof(msg), {});
    if (!sent) {
      const int err = sent.error().err;
      if (err == EAGAIN || err == EWOULDBLOCK) return HandleStatus::kContinue;
      const bool gone = err == EPIPE || err == ECONNRESET;
      return fail(gone ? HandleStatus::kPeerClosed : HandleStatus::kIoError,
                  std::string(gone ? "the worker went away before it was told that the "
                                     "--netns process exited: "
                                   : "telling the worker that the --netns process exited: ") +
                      sent.error().message);
    }
    exit_unsent_ = false;
  }
  // Unasked messages, in the order the reloads ended: bounded, at most one
  // failure and one reload wait.
  for (int round = 0; round < 2 && (push_failed_ || push_fd_ >= 0); ++round) {
    const bool failure = push_failed_ && (failure_first_ || push_fd_ < 0);
    Result<void> sent = Ok();
    if (failure) {
      // A failed reload, for the worker's audit log: no fd.
      auto msg = std::make_unique<wire::PolicyReloadFailedMsg>();
      std::memset(msg.get(), 0, sizeof(*msg));
      msg->header = wire::header(wire::BrokerMsg::kPolicyReloadFailed, 0);
      std::memcpy(msg->error, push_error_.data(), push_error_.size());
      sent = send_message(fd, msg.get(), sizeof(*msg), {});
    } else {
      // The memfd stays sluiced's (the policy in force): the worker gets its
      // own reference.
      wire::PolicyReloadMsg msg = {};
      msg.header = wire::header(wire::BrokerMsg::kPolicyReload, 0);
      msg.length = push_length_;
      const int raw[1] = {push_fd_};
      sent = send_message(fd, &msg, sizeof(msg), raw);
    }
    if (!sent) {
      const int err = sent.error().err;
      if (err == EAGAIN || err == EWOULDBLOCK) return HandleStatus::kContinue;
      push_fd_ = -1;
      push_failed_ = false;
      return fail(
          err == EPIPE || err == ECONNRESET ? HandleStatus::kPeerClosed : HandleStatus::kIoError,
          std::string(err == EPIPE || err == ECONNRESET
                          ? "the worker went away before the reloaded policy was sent: "
                          : "sending the reloaded policy to the worker: ") +
              sent.error().message);
    }
    if (failure) {
      push_failed_ = false;
    } else {
      push_fd_ = -1;
    }
    failure_first_ = push_failed_;  // what still waits came after
  }
  return HandleStatus::kContinue;
}

HandleStatus BrokerHost::flush_reply(int fd) {
  CHECK(reply_pending());
  if (pending_len_ == 0) return flush_pushes(fd);  // only unasked messages wait
  int raw[wire::kMaxListenersPerMessage];
  CHECK(pending_fds_.size() <= wire::kMaxListenersPerMessage);
  for (size_t i = 0; i < pending_fds_.size(); ++i) raw[i] = pending_fds_[i].get();
  // MSG_NOSIGNAL: no SIGPIPE. The channel is non-blocking (worker_launch.cc).
  auto sent = send_message(fd, pending_.get(), pending_len_,
                           std::span<const int>(raw, pending_fds_.size()));
  if (sent) {
    // The broker's copies of the sockets close here: the worker holds its own.
    pending_len_ = 0;
    pending_fds_.clear();
    return HandleStatus::kContinue;
  }
  int err = sent.error().err;
  if (err == EAGAIN || err == EWOULDBLOCK) {
    // The worker has not read its earlier replies yet. It is slow, not
    // hostile: the reply waits here, and main() waits for room.
    LOG_DEBUG("the worker's channel is full; the reply waits until it reads");
    return HandleStatus::kContinue;
  }
  pending_len_ = 0;
  pending_fds_.clear();
  if (err == EPIPE || err == ECONNRESET) {
    return fail(HandleStatus::kPeerClosed,
                "the worker went away before its reply was sent: " + sent.error().message);
  }
  return fail(HandleStatus::kIoError, "sending a reply to the worker: " + sent.error().message);
}

HandleStatus BrokerHost::answer_hello(int fd) {
  wire::HelloMsg msg;
  std::memcpy(&msg, buf_.get(), sizeof(msg));
  auto ok = validate_hello(msg);
  if (!ok) return fail(HandleStatus::kViolation, "malformed Hello: " + ok.error().message);
  wire::HelloReplyMsg reply = {};
  reply.header = wire::header(wire::BrokerMsg::kHelloReply, msg.header.sequence);
  reply.version = wire::kBrokerWireVersion;
  reply.flags = policy_.has_bind_cap ? wire::kBrokerHasBindCap : 0;
  reply.unprivileged_port_start = policy_.unprivileged_port_start;
  if (splice_served()) {
    reply.flags |= wire::kBrokerSpliceServed;
    if (splice_policy_.has_bind_cap) reply.flags |= wire::kBrokerSpliceHasBindCap;
    reply.splice_unprivileged_port_start = splice_policy_.unprivileged_port_start;
  }
  // A worker after a crash takes over what sluiced kept (broker_host_resume.cc),
  // and so does the first one after a restart of sluiced under systemd.
  resume_ = (grants_closed_ || resume_first_) && (escrow_.size() > 0 || escrow_.blob_bytes() > 0);
  if (resume_) reply.flags |= wire::kBrokerResume;
  state_ = HostState::kAwaitInitial;
  LOG_DEBUG("Hello from the worker; has_bind_cap=%d unprivileged_port_start=%u",
            policy_.has_bind_cap ? 1 : 0, policy_.unprivileged_port_start);
  return send_reply(fd, &reply, sizeof(reply), {});
}

HandleStatus BrokerHost::answer_initial_ports(int /*fd*/) {
  std::memcpy(initial_.get(), buf_.get(), sizeof(*initial_));
  const wire::InitialPortsMsg& msg = *initial_;
  auto ok =
      validate_initial_ports(msg, policy_.initial_grants.size(), policy_.unprivileged_port_start,
                             splice_served(), splice_policy_.unprivileged_port_start);
  if (!ok) return fail(HandleStatus::kViolation, "malformed InitialPorts: " + ok.error().message);
  // A restarted worker declares the same ports from the same command line;
  // the set the first worker declared stays the one in force.
  if (!grants_closed_) {
    policy_.initial_grants.insert(policy_.initial_grants.end(), msg.grants, msg.grants + msg.count);
  }
  if ((msg.flags & wire::kInitialPortsLast) != 0) {
    // The set is closed for sluiced's lifetime: the dispatch table admits no
    // InitialPorts in kReady. One line says which policy is in force.
    state_ = resume_ ? HostState::kAwaitResume : HostState::kReady;
    if (grants_closed_) return HandleStatus::kContinue;
    grants_closed_ = true;
    LOG_INFO("%s", describe_bind_policy(policy_).c_str());
    // SPLICE entries are judged by the same grants (a SPLICE rule's carry
    // kListenerSplice, so each table's grants match only its own entries).
    if (splice_served()) splice_policy_.initial_grants = policy_.initial_grants;
  }
  return HandleStatus::kContinue;
}

Result<void> validate_worker_status(const wire::WorkerStatusMsg& msg) {
  if (msg.reserved != 0) return Err("reserved field is " + std::to_string(msg.reserved));
  return Ok();
}

HandleStatus BrokerHost::answer_worker_status(int /*fd*/) {
  wire::WorkerStatusMsg msg;
  std::memcpy(&msg, buf_.get(), sizeof(msg));
  auto ok = validate_worker_status(msg);
  if (!ok) return fail(HandleStatus::kViolation, "malformed WorkerStatus: " + ok.error().message);
  // Two integers, kept as they are: sluiced prints them, never acts on them.
  report_.seen = true;
  report_.generation = msg.generation;
  report_.listeners = msg.listeners;
  report_.at_ns = monotonic_ns();
  ++report_.count;
  return HandleStatus::kContinue;
}

HandleStatus BrokerHost::answer_peer_query(int fd) {
  wire::PeerQueryMsg msg;
  std::memcpy(&msg, buf_.get(), sizeof(msg));
  auto ok = validate_peer_query(msg);
  if (!ok) return fail(HandleStatus::kViolation, "malformed PeerQuery: " + ok.error().message);
  // What the fd is comes first: only a UNIX stream socket, whose close never
  // lingers, is asked anything. Another socket cannot have come from the
  // control socket, so the worker is compromised; its fd is closed without
  // lingering. A non-socket keeps its errno answer (ENOTSOCK).
  auto kind = check_peer_socket(fds_.at(0).get());
  if (!kind && kind.error().err == EPROTO) {
    close_without_linger(fds_);
    return fail(HandleStatus::kViolation, "PeerQuery with " + kind.error().message);
  }
  wire::PeerReplyMsg reply = {};
  reply.header = wire::header(wire::BrokerMsg::kPeerReply, msg.header.sequence);
  if (kind) {
    answer_peer(control_, fds_.at(0).get(), &reply);
  } else {
    reply.status = kind.error().err;
    reply.access = wire::kAccessNone;
  }
  close_without_linger(fds_);  // the broker's copy is closed before it answers
  LOG_DEBUG("PeerQuery #%llu: status %d pid %d uid %u gid %u access %u (line %u)",
            static_cast<unsigned long long>(msg.header.sequence), reply.status, reply.pid,
            reply.uid, reply.gid, reply.access, reply.line);
  return send_reply(fd, &reply, sizeof(reply), {});
}

}  // namespace sluice
