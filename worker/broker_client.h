// The worker's side of the broker protocol (schema/broker_wire.h): it asks the
// broker for listening sockets and checks every socket it gets back.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "schema/broker_wire.h"
#include "schema/model.h"

namespace sluice {

/// What the broker said in its HelloReply.
struct BrokerInfo {
  bool has_bind_cap = false;
  uint32_t unprivileged_port_start = 1024;
};

/// The outcome for one requested listener: `status` is wire::kStatusOk (and
/// `fd` holds the checked socket), an errno, or wire::kStatusPolicyDenied.
struct OpenedListener {
  int32_t status = wire::kStatusOk;
  UniqueFd fd;
};

/// Who a control client is, as the broker saw it (PeerReply).
struct PeerIdentity {
  int32_t status = 0;  // 0, or the errno of the broker's getsockopt
  int32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t access = wire::kAccessNone;
  uint32_t line = 0;  // the deciding `control` line, 0 for the default or no match
};

class BrokerClient {
 public:
  /// Wraps the broker channel (a SOCK_SEQPACKET socket).
  explicit BrokerClient(UniqueFd channel) : channel_(std::move(channel)) {}

  /// Sends Hello and reads HelloReply. Fails if the broker speaks another
  /// version or closes the channel. Needs `sendmsg`, `recvmsg`.
  Result<BrokerInfo> hello();

  /// Sends one OpenListeners for at most wire::kMaxListenersPerMessage keys.
  /// Replies come back in order; read each with receive_reply(). Needs `sendmsg`.
  Result<void> send_request(std::span<const ListenerKey> keys);

  /// Reads the reply to the oldest request sent (an OpenListeners) and returns one result per
  /// key of that request, in order. Every socket received is checked against
  /// its request (family, type, listening state, bound address and port); a
  /// mismatch, a reply out of sequence or a malformed reply is an Error: the
  /// broker is the more privileged side, so this can only be a bug or a dying
  /// broker, and the caller stops. Blocks until the reply is there (call it
  /// when the channel is readable). Needs `recvmsg`, `getsockopt`, `getsockname`.
  Result<std::vector<OpenedListener>> receive_reply();

  /// Sends one PeerQuery with the accepted control connection `conn`; `done`
  /// is called by receive_peer_reply() with the answer. Needs `sendmsg`.
  Result<void> send_peer_query(int conn, std::function<void(const PeerIdentity&)> done);

  /// True when the oldest request in flight is a PeerQuery.
  bool next_is_peer_query() const {
    return !pending_.empty() && pending_.front().peer_done != nullptr;
  }

  /// Reads the reply to the oldest request, a PeerQuery, checks it and calls
  /// its `done`. A malformed reply is an Error, as for receive_reply().
  /// Needs `recvmsg`.
  Result<void> receive_peer_reply();

  /// Requests sent and not yet answered (both kinds).
  size_t pending() const { return pending_.size(); }
  /// OpenListeners requests sent and not yet answered (the pipelining window).
  size_t pending_listeners() const { return pending_.size() - pending_peers_; }

  /// The channel fd, watched by the event loop for the broker's exit.
  int fd() const { return channel_.get(); }

 private:
  /// A request in flight: its sequence number and keys, to check the reply.
  struct Pending {
    uint64_t sequence;
    std::vector<ListenerKey> keys;                       // OpenListeners
    std::function<void(const PeerIdentity&)> peer_done;  // PeerQuery
  };

  UniqueFd channel_;
  uint64_t sequence_ = 0;
  std::deque<Pending> pending_;
  size_t pending_peers_ = 0;
};

/// Fills the wire form of a listener key.
wire::ListenerSpec to_wire(const ListenerKey& key) noexcept;

/// Checks that `fd` is the socket `key` asked for: SO_DOMAIN, SO_TYPE,
/// SO_ACCEPTCONN for TCP, IP_PKTINFO or IPV6_RECVPKTINFO on and no peer for
/// UDP, and getsockname's address and port. Returns an Error naming the
/// first mismatch. Needs `getsockopt`, `getsockname`, `getpeername`.
Result<void> verify_listener(int fd, const ListenerKey& key);

}  // namespace sluice
