// A stand-in for sluiced on the broker channel, for tests that drive the
// worker's real BrokerClient and CommitEngine: the mirror of
// tests/broker/fake_worker.cc. It speaks the broker side of the real wire
// protocol (schema/broker_wire.h) over a real SOCK_SEQPACKET socketpair and
// answers OpenListeners with real sockets that it binds itself, with the
// broker's own listener factory (broker/listener_factory.h): listening TCP
// and pktinfo-reporting UDP sockets that pass the worker's checks.
//
// It runs in the test's thread: serve() answers, without blocking, every
// request that waits; serve_hello() blocks (bounded) for the one Hello and is
// meant for a helper thread while the worker's hello() blocks. It can be
// scripted: fail a key with an errno, deny one by policy, hold replies back
// (a slow broker), close the channel when a request arrives or at once, send
// bytes out of turn, and answer PeerQuery with chosen ids and access.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "broker/listener_escrow.h"
#include "broker/port_holders.h"
#include "schema/broker_wire.h"

namespace sluice::testing {

class FakeBroker {
 public:
  /// Creates the channel: socketpair(AF_UNIX, SOCK_SEQPACKET). CHECK-fails
  /// when the kernel refuses (never expected).
  FakeBroker();

  /// Returns the worker's end of the channel (once), for a BrokerClient.
  UniqueFd take_worker_end();

  /// What HelloReply tells the worker (defaults: port start 1024, no cap).
  void set_hello(uint32_t unprivileged_port_start, bool has_bind_cap);
  /// HelloReply says SPLICE is served (a target namespace), with its facts.
  /// The fake then answers OpenSockets, and opens SPLICE entries itself, on
  /// the test's own network namespace.
  void set_splice(bool has_bind_cap = true, uint32_t unprivileged_port_start = 1024) {
    splice_ = true;
    splice_has_bind_cap_ = has_bind_cap;
    splice_port_start_ = unprivileged_port_start;
  }
  /// Script: the next OpenSockets gets only `made` sockets and `status`.
  void short_sockets(uint32_t made, int32_t status) {
    short_made_ = made;
    short_status_ = status;
  }
  /// Reads one Hello within `timeout_ms` and answers it, then reads the
  /// InitialPorts messages that follow, up to the one flagged last (each
  /// within `timeout_ms`), and keeps their grants (initial_grants()).
  /// Returns false when something did not come in time, or was malformed
  /// (see error()). Blocks: call it from a helper thread while the worker's
  /// BrokerClient::hello() runs. Needs `poll`, `recvmsg`, `sendmsg`.
  bool serve_hello(int timeout_ms);
  /// The grants the worker declared after Hello, in order.
  const std::vector<wire::PortGrant>& initial_grants() const { return grants_; }

  /// Script: the key with this ordinal (0 for the first key ever asked, over
  /// all OpenListeners requests) gets `status`: an errno, or
  /// wire::kStatusPolicyDenied; no socket is opened for it.
  void fail_key(size_t ordinal, int32_t status) { fail_ordinal_[ordinal] = status; }
  /// Script: every key for `port` gets `status`, as fail_key().
  void fail_port(uint16_t port, int32_t status) { fail_port_[port] = status; }
  /// Script: answer at most `replies` OpenListeners requests in all; later
  /// ones are read and wait (a slow broker) until release().
  void hold_after(size_t replies) { answer_limit_ = replies; }
  /// Script: answer every request again, held ones first, at the next serve().
  void release() { answer_limit_ = SIZE_MAX; }
  /// Keeps a copy of every listener it sends in a real ListenerEscrow, as
  /// sluiced does, released by the worker's StoreState: so a rebind
  /// (wire::kListenerReplaces) shares its port with the listener it
  /// replaces, as with sluiced. Off by default: without it the fake closes
  /// its copies once sent, and a rebind's port is still taken.
  void keep_listeners();
  /// Script: close the channel when the `n`-th OpenListeners request (1 for
  /// the first) arrives, without answering it.
  void close_on_request(size_t n) { close_on_request_ = n; }
  /// Script: close the channel right after sending the `n`-th
  /// ListenersOpened (1 for the first): the worker reads the answer, and its
  /// next send finds the broker gone.
  void close_after_reply(size_t n) { close_after_reply_ = n; }
  /// Script: what PeerReply says (status 0, the ids, the access, the line).
  void set_peer_reply(int32_t pid, uint32_t uid, uint32_t gid, uint32_t access, uint32_t line);

  /// Reads every request that waits and answers them in order, as far as the
  /// script allows. Never blocks. Returns how many replies it sent. A
  /// malformed request is recorded in error() and closes the channel, as the
  /// real broker would exit. Needs `recvmsg`, `sendmsg`, and for each
  /// socket it opens `socket`, `setsockopt`, `bind`, `listen`.
  size_t serve();

  /// Closes the broker's end of the channel: the broker died.
  void close() { channel_.reset(); }
  /// Sends `bytes` as one datagram out of turn (a broken broker). Returns
  /// false when the send fails.
  bool send_raw(const std::string& bytes);
  /// Sends `bytes` as one datagram with `fd` (-1: none), unasked, as sluiced
  /// sends a PolicyReload. Returns false when the send fails.
  bool send_with_fd(const std::string& bytes, int fd);

  /// Every key asked so far, in order.
  const std::vector<wire::ListenerSpec>& asked() const { return asked_; }
  /// OpenListeners requests read so far.
  size_t open_requests() const { return open_requests_; }
  /// StoreState messages received: one after every change of the listeners held.
  size_t states_stored() const { return states_stored_; }
  /// The bytes of the last StoreState's blob (read as sluiced never does).
  const std::string& last_blob() const { return last_blob_; }
  /// OpenListeners requests answered so far.
  size_t open_replies() const { return open_replies_; }
  /// Requests read and not answered yet (held back).
  size_t waiting() const { return waiting_.size(); }
  /// PeerQuery requests answered so far.
  size_t peer_replies() const { return peer_replies_; }
  /// OpenSockets requests answered so far, and the sockets they carried.
  size_t socket_replies() const { return socket_replies_; }
  size_t sockets_sent() const { return sockets_sent_; }
  /// The first protocol violation the worker committed, or "".
  const std::string& error() const { return error_; }
  /// True while the broker's end is open.
  bool open() const { return channel_.valid(); }

 private:
  /// A request read and not answered yet.
  struct Request {
    wire::BrokerMsg type;
    uint64_t sequence;
    std::vector<wire::ListenerSpec> entries;  // OpenListeners
    UniqueFd conn;                            // PeerQuery
    wire::OpenSocketsMsg sockets = {};        // OpenSockets
  };

  /// Reads one request if one waits; false on EAGAIN, EOF or a violation.
  bool read_one();
  /// Answers the oldest waiting requests as far as the script allows.
  size_t answer_waiting();
  /// Answers one OpenListeners: a status per entry, a socket per success.
  bool answer_open(const Request& request);
  /// Answers one PeerQuery with the scripted identity.
  bool answer_peer(const Request& request);
  /// Answers one OpenSockets with fresh sockets (open_fresh_socket).
  bool answer_sockets(const Request& request);
  /// Records the first violation and closes the channel.
  void violation(const std::string& what);

  UniqueFd channel_;
  UniqueFd worker_end_;
  uint32_t port_start_ = 1024;
  bool has_bind_cap_ = false;
  std::map<size_t, int32_t> fail_ordinal_;
  std::map<uint16_t, int32_t> fail_port_;
  size_t answer_limit_ = SIZE_MAX;
  size_t close_on_request_ = 0;
  size_t close_after_reply_ = 0;
  wire::PeerReplyMsg peer_reply_ = {};
  std::deque<Request> waiting_;
  std::vector<wire::ListenerSpec> asked_;
  std::vector<wire::PortGrant> grants_;
  size_t open_requests_ = 0;
  size_t states_stored_ = 0;  // StoreState messages received (worker restarts)
  std::string last_blob_;     // the last one's blob
  size_t open_replies_ = 0;
  size_t answered_keys_ = 0;  // keys of the OpenListeners answered so far
  size_t peer_replies_ = 0;
  bool splice_ = false;
  bool splice_has_bind_cap_ = true;
  uint32_t splice_port_start_ = 1024;
  uint32_t short_made_ = UINT32_MAX;
  int32_t short_status_ = 0;
  size_t socket_replies_ = 0;
  size_t sockets_sent_ = 0;
  std::string error_;
  std::unique_ptr<ListenerEscrow> escrow_;  // keep_listeners(): the sent listeners' copies
  // What a rebind's check reads, as sluiced's (this process's side).
  SocketTables tables_ = open_socket_tables("/proc/self/net");
  std::unique_ptr<uint8_t[]> buffer_;  // one request, plus a byte to see oversized ones
};

}  // namespace sluice::testing
