// The worker's side of the broker protocol (schema/broker_wire.h): the broker
// channel object. It asks the broker for listening sockets and for the ids of
// control clients, and checks every socket it gets back.
//
// After hello(), the channel is an event handler on the worker's loop. Every
// request completes by callback, from the loop:
//   - open_listeners(keys, done): any number of keys, sent in OpenListeners
//     batches of at most 253, with at most kPipelineWindow batches in flight;
//     batches beyond the window wait here and go out as replies come back.
//     `done` receives one result per key, in order, once all are answered;
//   - peer_query(fd, done): who is behind an accepted control connection; at
//     most kPeerQueryWindow of them open at once (the control server stops
//     accepting at that bound);
//   - open_sockets(family, proto, count, done): fresh sockets made in
//     sluiced's network namespace, for the host-side connections of SPLICE
//     rules (worker/socket_pool.h keeps at most one such request open per
//     family and protocol).
// Sends never wait: each is MSG_DONTWAIT, and a request that finds the
// channel full stays here, in order, until the loop reports it writable
// (EPOLLOUT, watched only while something waits to go out). So the worker
// never blocks on sluiced, whatever sluiced does.
// Replies come back in order. Each wake-up drains every reply already there
// (recvmsg with MSG_DONTWAIT until EAGAIN), not just one; replies to batches
// sent during that drain wait for the next wake-up, so data events run
// between windows. A reply whose sockets the kernel cut short because the
// worker reached its RLIMIT_NOFILE (MSG_CTRUNC) is no protocol failure: the
// sockets that did not arrive are answered EMFILE (OpenedListener::lost), a
// short OpenSockets reply EMFILE, a PolicyReload without its text an invalid
// descriptor. EOF, a send that fails (other than for room), or a
// malformed reply means the broker is gone or broken: on_lost is called once,
// every request still open is dropped unanswered (their sockets closed), and
// the channel is closed to the loop. The worker then stops.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/result.h"
#include "base/scm_rights.h"
#include "base/unique_fd.h"
#include "schema/broker_wire.h"
#include "schema/model.h"
#include "worker/event_loop.h"

namespace sluice {

/// Limit: OpenListeners requests in flight at once. Four 253-socket batches
/// keep the broker busy while one reply is processed, and four 10 KiB
/// requests fit easily in the channel's socket buffer, so sends never block.
inline constexpr size_t kPipelineWindow = 4;

/// Limit: PeerQuery requests open at once (sent or waiting to be sent). Each
/// accepted control connection costs one before anything else happens, so
/// without a bound a local user who connects and closes in a loop makes the
/// worker send queries faster than sluiced answers them. 32 identifies a
/// burst of sluicectl invocations in one round trip, and 32 queries and
/// their replies (about 1 KiB of socket buffer each) with kPipelineWindow
/// batches (about 16 KiB each) stay far below the channel's default socket
/// buffers (208 KiB): neither side's send finds the channel full in normal
/// operation, and if it does, nothing blocks (see above).
inline constexpr size_t kPeerQueryWindow = 32;

/// What the broker said in its HelloReply, and the privileged ports the
/// worker declared to it right after (InitialPorts).
struct BrokerInfo {
  bool has_bind_cap = false;
  uint32_t unprivileged_port_start = 1024;
  /// sluiced has a target namespace: SPLICE listeners and host-side sockets
  /// are served. The two facts below are the target namespace's kernel's.
  bool splice_served = false;
  bool splice_has_bind_cap = false;
  uint32_t splice_unprivileged_port_start = 1024;
  /// The initial rules' privileged port ranges, as sent: the default bind
  /// policy's only privileged ports, in the broker and in the worker's own
  /// pre-check (policy/bind_policy.h BindPolicy::initial_grants).
  std::vector<wire::PortGrant> initial_grants;
  /// A previous worker died: sluiced holds its listeners and state blob for
  /// this one (kBrokerResume), which takes them with BrokerClient::resume().
  bool resume = false;
};

/// What a restarted worker takes over (BrokerClient::resume()).
struct Resumed {
  UniqueFd blob;            // the dead worker's last state blob (a sealed memfd), or invalid
  uint64_t blob_bytes = 0;  // its size as sluiced checked it
  /// The escrowed listeners, each checked against the key it was opened for.
  std::vector<std::pair<ListenerKey, UniqueFd>> listeners;
  size_t refused = 0;  // listeners that failed the check (closed), e.g. shut down by a rollback
};

/// The outcome for one requested listener: `status` is wire::kStatusOk (and
/// `fd` holds the checked socket), an errno, or wire::kStatusPolicyDenied.
struct OpenedListener {
  int32_t status = wire::kStatusOk;
  UniqueFd fd;
  /// sluiced opened and sent the socket, and it never arrived: the worker's
  /// descriptor table was full (MSG_CTRUNC). `status` is then EMFILE.
  bool lost = false;
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

/// Why sluiced could not judge a client whose PeerQuery failed
/// (`identity.status` is not 0), and what to do: more groups than the
/// control policy checks (ERANGE), or credentials it could not read.
/// `client` names the program the client runs (sluicectl, pesto).
std::string identity_failure(const PeerIdentity& identity, const char* client);

/// Why the broker channel ended.
struct BrokerLoss {
  std::string reason;
  /// True when the broker closed the channel with nothing asked of it: it
  /// exited (as on SIGTERM) rather than failing a request.
  bool idle_eof = false;
};

class BrokerClient final : public EventHandler {
 public:
  using OpenDone = std::function<void(std::vector<OpenedListener>)>;
  using PeerDone = std::function<void(const PeerIdentity&)>;
  /// The fresh sockets of one open_sockets() (each checked), and 0 or the
  /// errno that stopped sluiced short of the count asked.
  using SocketsDone = std::function<void(std::vector<UniqueFd>, int)>;
  using Lost = std::function<void(const BrokerLoss&)>;
  /// A PolicyReload: the memfd of the new policy text and its length
  /// (at most wire::kMaxPolicyTextBytes); an invalid `text` when the memfd
  /// did not arrive because the worker's descriptor table was full.
  using PolicyReloaded = std::function<void(UniqueFd text, uint32_t length)>;
  /// A PolicyReloadFailed: why sluiced's reload failed (printable ASCII).
  using PolicyFailed = std::function<void(const std::string& error)>;

  /// Wraps the broker channel (a SOCK_SEQPACKET socket) for `loop`.
  BrokerClient(EventLoop& loop, UniqueFd channel);
  /// Unregisters the channel; requests still open are dropped unanswered.
  ~BrokerClient() override;

  /// Sends Hello and reads HelloReply, then declares the privileged ports of
  /// `initial`, the tables built from sluiced's command line, in
  /// InitialPorts messages (initial_port_grants()), all blocking: call it
  /// before start(), and before anything from a peer is read, since the
  /// broker admits these grants only now (schema/broker_wire.h
  /// InitialPortsMsg). Fails if the broker speaks another version or closes
  /// the channel, or if `initial` has more than wire::kMaxInitialGrants
  /// privileged ranges (more rules than a valid table set holds). Needs
  /// `sendmsg`, `recvmsg`.
  Result<BrokerInfo> hello(const TableSet& initial);

  /// A restarted worker, right after hello() (info.resume): asks sluiced for
  /// the dead worker's blob (Resume) and its listeners (ReclaimListeners,
  /// until the last batch), blocking, before start(). Each listener is
  /// checked with verify_listener() against the key of the spec it came
  /// with; one that fails is closed and counted, not fatal (a listener the
  /// dead worker shut down in a rollback no longer listens). Fails when
  /// sluiced closes the channel or answers something malformed
  /// (broker_resume.cc). Needs `sendmsg`, `recvmsg`, and what
  /// verify_listener() needs.
  Result<Resumed> resume();

  /// Hands sluiced the worker's state (StoreState, no reply): `blob` and
  /// `cookies` are sealed memfds (worker/state_store.h), `sequence` is
  /// last_sequence() when the cookie list was made. Sends now, or as soon as
  /// the channel has room; a newer state replaces one still waiting.
  /// Nothing happens once the channel is lost. Needs `sendmsg` (MSG_DONTWAIT).
  void store_state(UniqueFd blob, UniqueFd cookies, uint64_t sequence, uint64_t generation,
                   uint32_t listeners) noexcept;
  /// The sequence of the last request sent.
  uint64_t last_sequence() const noexcept { return sequence_; }

  /// Registers the channel with the loop (level-triggered EPOLLIN) and sets
  /// the one callback for the end of the channel. Fails only if epoll
  /// refuses the fd.
  Result<void> start(Lost on_lost);

  /// Sets the callback for a PolicyReload (SIGHUP in sluiced), called from
  /// the loop, between replies. Without one, a PolicyReload is dropped.
  void on_policy_reload(PolicyReloaded done) { on_policy_ = std::move(done); }
  /// Sets the callback for a PolicyReloadFailed (a SIGHUP whose reload
  /// failed in sluiced), called as on_policy_reload's. Without one, it is
  /// dropped.
  void on_policy_failed(PolicyFailed done) { on_policy_failed_ = std::move(done); }
  /// Sets the callback for a TargetExited (the process --netns named has
  /// exited), called as on_policy_reload's. Without one, it is dropped.
  void on_target_exited(std::function<void()> done) { on_target_exited_ = std::move(done); }

  /// Asks the broker for a listening socket per key (at least one) and calls
  /// `done` with one result per key, in order, once every batch is answered.
  /// `replaces`: the keys are rebinds, each sharing its port with the
  /// listeners in force it replaces (wire::kListenerReplaces).
  /// Each socket is checked against its key (verify_listener) before `done`
  /// sees it. A send that fails loses the channel (on_lost, possibly before
  /// this returns) and `done` is never called. Needs `sendmsg`.
  void open_listeners(std::vector<ListenerKey> keys, OpenDone done, bool replaces = false);

  /// Asks who is behind the accepted control connection `conn`: sends one
  /// PeerQuery with it now, or, when the channel is full, as soon as it has
  /// room, in order. `done` is called from the loop with the answer. Does
  /// not count against the pipelining window; the caller keeps at most
  /// kPeerQueryWindow open (peer_queries_open(); more is a bug, CHECK) and
  /// keeps `conn` open until `done` runs or the channel is lost. Fails when
  /// the channel is lost, before or by this send (then `done` is never
  /// called). Needs `sendmsg` (MSG_DONTWAIT).
  Result<void> peer_query(int conn, PeerDone done);

  /// Asks sluiced for `count` (1..kMaxSocketsPerMessage) fresh sockets of
  /// `family` (AF_INET, AF_INET6) and `proto`, made in its network namespace
  /// (only served with a target namespace: BrokerInfo::splice_served). Sends
  /// now, or when the channel has room, in order; `done` is called from the
  /// loop with the sockets, each checked with verify_fresh_socket(). Does not
  /// count against the pipelining window. Nothing happens once the channel is
  /// lost. Needs `sendmsg` (MSG_DONTWAIT).
  void open_sockets(int family, Proto proto, uint32_t count, SocketsDone done);

  /// Tells sluiced the generation and listener count in force
  /// (WorkerStatus, no reply): the heartbeat behind readiness and the
  /// systemd watchdog. Returns false when it did not go out (the channel is
  /// full or lost); a heartbeat is never queued, the next one replaces it.
  /// Needs `sendmsg` (MSG_DONTWAIT).
  bool report_status(uint64_t generation, uint32_t listeners) noexcept;

  /// EPOLLOUT: sends what waited for room. Then drains every reply already
  /// on the channel (MSG_DONTWAIT), at most one per request in flight at
  /// wake-up, and completes the requests they answer; EOF or a malformed
  /// reply loses the channel. Needs `recvmsg`, `sendmsg`, `getsockopt`,
  /// `getsockname`, `getpeername`, `epoll_ctl`.
  void on_event(uint32_t events) noexcept override;

  /// Requests sent and not yet answered (both kinds).
  size_t in_flight() const { return in_flight_.size(); }
  /// PeerQuery requests not answered yet: sent, or waiting for room.
  size_t peer_queries_open() const { return peers_in_flight_ + unsent_peers_.size(); }
  /// PeerQuery requests waiting for room on the channel.
  size_t peer_queries_unsent() const { return unsent_peers_.size(); }
  /// True while a send found the channel full and the loop watches for room.
  bool waiting_for_room() const { return waiting_for_room_; }
  /// OpenListeners requests sent and not yet answered (the pipelining window).
  size_t listener_batches_in_flight() const {
    return in_flight_.size() - peers_in_flight_ - sockets_in_flight_;
  }
  /// True once the channel is lost; nothing is sent or received afterwards.
  bool lost() const { return lost_; }
  /// The channel fd.
  int fd() const { return channel_.get(); }

 private:
  /// A request sent and not yet answered: its sequence number, and for an
  /// OpenListeners batch how many keys it carries (of calls_.front(), from
  /// its `answered` on); for a PeerQuery, its callback; for an OpenSockets,
  /// what it asked and its callback.
  struct InFlight {
    uint64_t sequence;
    size_t count;        // OpenListeners: keys in the batch; OpenSockets: sockets asked
    PeerDone peer_done;  // PeerQuery only
    SocketsDone sockets_done = nullptr;  // OpenSockets only
    int family = 0;                      // OpenSockets only
    Proto proto = Proto::kTcp;           // OpenSockets only
  };
  /// An OpenSockets not sent yet.
  struct UnsentSockets {
    int family;
    Proto proto;
    uint32_t count;
    SocketsDone done;
  };
  /// One open_listeners() call: its keys, the results so far, and `done`.
  struct OpenCall {
    std::vector<ListenerKey> keys;
    std::vector<OpenedListener> results;  // one per key answered so far
    size_t sent = 0;                      // keys handed to the broker so far
    OpenDone done;
    bool replaces = false;  // rebinds: wire::kListenerReplaces on every entry
  };

  /// A PeerQuery not sent yet: the connection and the callback.
  struct UnsentPeer {
    int conn;
    PeerDone done;
  };
  /// What one non-blocking send did.
  enum class Sent { kYes, kNoRoom, kLost };

  /// Sends one message and its fds with MSG_DONTWAIT. On EAGAIN nothing was
  /// sent: returns kNoRoom and watches the channel for room. Any other
  /// failure loses the channel (`what` names the message). Needs `sendmsg`.
  Sent send_now(const void* msg, size_t len, std::span<const int> fds, const char* what) noexcept;
  /// Sends the PeerQuery requests that wait, in order, until the channel is
  /// full. Needs `sendmsg`.
  void send_peers() noexcept;
  /// Sends the StoreState that waits, if any. Needs `sendmsg`.
  void send_state() noexcept;
  /// Sends one blocking request of `len` bytes and reads its reply into
  /// `buf` (`cap` bytes, at most `max_fds` fds); checks magic, type `reply`
  /// and sequence. Fails on anything else (resume()).
  Result<ReceivedMessage> ask_blocking(const void* msg, size_t len, void* buf, size_t cap,
                                       size_t max_fds, wire::BrokerMsg reply, const char* name);
  /// Sends the OpenSockets requests that wait, in order, until the channel
  /// is full. Needs `sendmsg`.
  void send_sockets() noexcept;
  /// Reads the reply to the oldest request, an OpenSockets, checks it and
  /// its sockets, and calls its callback. Returns false as receive_one().
  bool receive_sockets() noexcept;
  /// Sends OpenListeners batches while the window and the channel allow.
  /// Needs `sendmsg`.
  void pump() noexcept;
  /// Watches the channel for room (EPOLLOUT) or stops watching, as `on`
  /// says; level-triggered, so it is watched only while something waits.
  /// Needs `epoll_ctl`.
  void watch_for_room(bool on) noexcept;
  /// Reads and handles one reply, if one is there. Returns false when
  /// nothing was there (EAGAIN) or the channel is lost.
  bool receive_one() noexcept;
  /// Reads the reply to the oldest request, a PeerQuery, and calls its
  /// callback. Returns false as receive_one().
  bool receive_peer_reply() noexcept;
  /// Reads the reply to the oldest request, an OpenListeners batch, checks
  /// it and its sockets, and completes the call when all its batches are
  /// answered. Returns false as receive_one().
  bool receive_listeners() noexcept;
  /// Peeks at the type of the next message (recv with MSG_PEEK, no fds):
  /// returns it, 0 for EOF or a datagram shorter than a header, or nothing
  /// when nothing is there (EAGAIN) or the channel was lost.
  std::optional<uint32_t> peek_type() noexcept;
  /// Reads a PolicyReload, checks it (length, magic, sequence 0, one fd,
  /// length limit, reserved) and hands it on. Returns false as
  /// receive_one().
  bool receive_policy_reload() noexcept;
  /// Reads a PolicyReloadFailed, checks it (length, magic, sequence 0, no
  /// fd, a NUL-terminated printable text with only zeros after it) and
  /// hands it on. Returns false as receive_one().
  bool receive_policy_failure() noexcept;
  /// Reads a TargetExited, checks it (length, magic, sequence 0, no fd) and
  /// hands it on. Returns false as receive_one().
  bool receive_target_exited() noexcept;
  /// With nothing asked: EOF, or a message out of turn. Returns false.
  bool receive_unasked() noexcept;
  /// Reads the reply `name` to the oldest request, a `request`, into `buf`
  /// (`cap` bytes, at most `max_fds` fds), without waiting; `cut` says what
  /// fds the kernel cut short make of it (receive_message). Returns nothing
  /// when no reply is there (EAGAIN), and also, after lose(), on a read error
  /// or EOF; the caller checks the reply itself.
  std::optional<ReceivedMessage> receive_reply(void* buf, size_t cap, size_t max_fds,
                                               const char* name, const char* request,
                                               CutFds cut = CutFds::kRefuse) noexcept;
  /// Marks the channel lost, drops every open request, unregisters the
  /// channel and calls on_lost, once.
  void lose(std::string reason, bool idle_eof = false) noexcept;

  EventLoop& loop_;
  UniqueFd channel_;
  Lost on_lost_;
  PolicyReloaded on_policy_;
  PolicyFailed on_policy_failed_;
  std::function<void()> on_target_exited_;
  bool registered_ = false;
  bool lost_ = false;
  uint64_t sequence_ = 0;
  std::deque<InFlight> in_flight_;
  size_t peers_in_flight_ = 0;
  size_t sockets_in_flight_ = 0;
  std::deque<UnsentPeer> unsent_peers_;       // in order; at most kPeerQueryWindow
  std::deque<UnsentSockets> unsent_sockets_;  // in order; at most one per pool
  /// A StoreState that waits for room: the newest only.
  struct UnsentState {
    wire::StoreStateMsg msg;
    UniqueFd blob, cookies;
  };
  std::optional<UnsentState> unsent_state_;
  LogRateLimit state_log_{5, 1};   // StoreState that waits for descriptors in flight
  bool waiting_for_room_ = false;  // a send found the channel full
  std::deque<OpenCall> calls_;     // in order; only the front one is answered
  std::unique_ptr<wire::ListenersOpenedMsg> reply_;  // receive buffer, about 1 KiB
};

/// Fills the wire form of a listener key.
wire::ListenerSpec to_wire(const ListenerKey& key) noexcept;
/// The key a well-formed `spec` stands for (the inverse of to_wire).
ListenerKey from_wire(const wire::ListenerSpec& spec) noexcept;

/// Returns the privileged port ranges of `tables`: for every rule with a
/// port below the unprivileged port start of the side it listens on (`info`:
/// this side's for HOST, the target namespace's for SPLICE, whose rules count
/// only when SPLICE is served), one grant of its protocol, address,
/// interface and flags (dual-stack, SPLICE), from its first port to its last
/// one or that start - 1, whichever is lower; in table and rule order.
/// Never fails.
std::vector<wire::PortGrant> initial_port_grants(const TableSet& tables, const BrokerInfo& info);
/// The same for a sluiced without a target namespace whose port start is
/// `unprivileged_port_start`. Never fails.
std::vector<wire::PortGrant> initial_port_grants(const TableSet& tables,
                                                 uint32_t unprivileged_port_start);

/// Checks that `fd` is the socket `key` asked for: SO_DOMAIN, SO_TYPE,
/// SO_ACCEPTCONN for TCP, IP_PKTINFO or IPV6_RECVPKTINFO on and no peer for
/// UDP, and getsockname's address and port. Returns an Error naming the
/// first mismatch. Needs `getsockopt`, `getsockname`, `getpeername`.
Result<void> verify_listener(int fd, const ListenerKey& key);

/// Checks that `fd` is a fresh socket of `family` and `proto` as
/// OpenSockets promises: SO_DOMAIN, SO_TYPE, not listening (TCP), unbound
/// (getsockname: port 0 and the unspecified address) and unconnected
/// (getpeername fails with ENOTCONN). Returns an Error naming the first
/// mismatch. Needs `getsockopt`, `getsockname`, `getpeername`.
Result<void> verify_fresh_socket(int fd, int family, Proto proto);

/// Checks a ListenersOpened of `len` bytes with `fds` against the request
/// `sequence` for `keys`: exact length, magic, type, sequence, count,
/// fd_count, valid statuses, and every socket with verify_listener. With
/// `cut` (the kernel cut the fds short, ReceivedMessage::fds_cut), fewer fds
/// than fd_count may have come: they are the first ones, and each entry
/// whose socket is missing gets EMFILE and `lost`. Returns one result per
/// key; an Error names what is wrong (the fds are closed).
Result<std::vector<OpenedListener>> check_listeners_opened(const wire::ListenersOpenedMsg& reply,
                                                           size_t len, std::vector<UniqueFd> fds,
                                                           uint64_t sequence,
                                                           std::span<const ListenerKey> keys,
                                                           bool cut = false);

}  // namespace sluice
