// The host side of the worker <-> broker protocol (schema/broker_wire.h): one
// handler per request (answer_*), reached through a dispatch table of
// {type, permitted state, exact size, handler}. Anything the table does not
// permit means the worker is compromised; handle_one() then reports
// kViolation with the failed check, and serve() (serve.h) kills the worker and exits.
//
// The validation is in pure functions so that tests can call them directly;
// BrokerHost itself is driven over a real SOCK_SEQPACKET socketpair in tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/listener_escrow.h"
#include "broker/port_holders.h"
#include "policy/bind_policy.h"
#include "policy/control_policy.h"
#include "schema/broker_wire.h"

namespace sluice {

/// Where the conversation with the worker is: Hello is permitted once, first;
/// then InitialPorts until the one flagged last; for a restarted worker then
/// Resume once, and ReclaimListeners until the last batch; OpenListeners,
/// PeerQuery, OpenSockets, WorkerStatus and StoreState only afterwards.
enum class HostState { kAwaitHello, kAwaitInitial, kAwaitResume, kReclaiming, kReady };

/// What handle_one() saw; serve() decides what to do with it.
enum class HandleStatus {
  kContinue,    // a request was answered, or nothing was there to read (EAGAIN)
  kPeerClosed,  // the worker closed its end (EOF), or died before its reply was sent
  kViolation,   // the worker sent something not permitted: it is compromised
  kIoError,     // the channel failed otherwise
};

/// Checks the envelope of one received datagram of `msg.size()` bytes that
/// came with `fd_count` fds, in order: at least a header; no larger than any
/// request; the magic; a type the broker accepts from a worker; the exact
/// size of that type; exactly the fds that type carries (one for PeerQuery,
/// none otherwise); the type permitted in `state`. Returns the type, or an
/// Error naming the failed check.
Result<wire::BrokerMsg> check_envelope(std::span<const uint8_t> msg, size_t fd_count,
                                       HostState state);

/// Checks a Hello: version == kBrokerWireVersion, reserved == 0.
Result<void> validate_hello(const wire::HelloMsg& msg);

/// Checks one entry: proto TCP/UDP; family inet/inet6; a v4-mapped address
/// iff family inet; port != 0; no flags outside kListenerFlagMask; dual-stack
/// only for inet6 with address ::; an ifname NUL-terminated within 16 bytes,
/// zero after its NUL, without '/' or whitespace, and not "." or "..";
/// a SPLICE entry (kListenerSplice) only on the target namespace's loopback:
/// bound to `lo`, or to 127.0.0.0/8 or ::1 with no other interface.
/// The Error names the field.
Result<void> validate_listener_spec(const wire::ListenerSpec& spec);

/// Checks an InitialPorts of a worker that has declared `declared` grants so
/// far: count <= kMaxGrantsPerMessage, no flag outside
/// kInitialPortsFlagMask, `declared` + count <= kMaxInitialGrants; every
/// grant below count a well-formed listener (validate_listener_spec) with
/// listener.port <= last_port < `unprivileged_port_start` and zero reserved
/// fields; a SPLICE grant (kListenerSplice: a -T/-U rule's) only when
/// `splice_served`, below `splice_unprivileged_port_start` (the target
/// namespace's); every grant past it all zero. The Error names the grant and
/// the field.
Result<void> validate_initial_ports(const wire::InitialPortsMsg& msg, size_t declared,
                                    uint32_t unprivileged_port_start, bool splice_served = false,
                                    uint32_t splice_unprivileged_port_start = 0);

/// Checks a PeerQuery: its reserved words are 0.
Result<void> validate_peer_query(const wire::PeerQueryMsg& msg);

/// Checks the fd of a PeerQuery before anything else is done with it: it must
/// be a UNIX stream socket (SO_DOMAIN AF_UNIX, SO_TYPE SOCK_STREAM), the only
/// kind the worker's control socket accepts, and the only kind the broker
/// asks for credentials. Fails with the errno of SO_DOMAIN for a non-socket
/// (ENOTSOCK), and with EPROTO, naming the family and type, for any other
/// socket: one the worker cannot have accepted from a control client.
/// Needs `getsockopt` (SOL_SOCKET, SO_DOMAIN and SO_TYPE).
Result<void> check_peer_socket(int fd);

/// Reads the peer credentials of the connected UNIX socket `fd`
/// (SO_PEERCRED, SO_PEERGROUPS) and decides its access under `policy` into
/// `reply` (status, pid, uid, gid, access, line). Never fails: a getsockopt
/// error becomes the reply's status with no access. Needs `getsockopt`.
void answer_peer(const ControlPolicy& policy, int fd, wire::PeerReplyMsg* reply);

/// Checks an OpenListeners: 1 <= count <= kMaxListenersPerMessage,
/// reserved == 0, every entry below count well-formed, SPLICE entries only
/// when `splice_served` (sluiced has a target namespace), every entry past
/// count all zero. The Error names the entry and the field.
Result<void> validate_open_listeners(const wire::OpenListenersMsg& msg, bool splice_served = false);

/// Checks an OpenSockets: permitted only when `splice_served` (the sockets
/// serve SPLICE rules, which exist only with a target namespace); family
/// inet/inet6; proto TCP/UDP; reserved == 0; 1 <= count <=
/// kMaxSocketsPerMessage. The Error names the field.
Result<void> validate_open_sockets(const wire::OpenSocketsMsg& msg, bool splice_served);

/// Checks a WorkerStatus: its reserved word is 0 (the two numbers are any
/// values: sluiced only prints them).
Result<void> validate_worker_status(const wire::WorkerStatusMsg& msg);

/// Checks a StoreState: its reserved word is 0 (its numbers are only logged).
Result<void> validate_store_state(const wire::StoreStateMsg& msg);
/// Checks a Resume or a ReclaimListeners: its reserved words are 0.
Result<void> validate_resume(const wire::ResumeMsg& msg);

/// The worker's last WorkerStatus, as received.
struct WorkerReport {
  bool seen = false;        // a WorkerStatus arrived: the initial commit is in force
  uint64_t generation = 0;  // as the worker sent it
  uint32_t listeners = 0;   // as the worker sent it
  uint64_t at_ns = 0;       // monotonic_ns() when it arrived
  uint64_t count = 0;       // WorkerStatus messages received
};

/// Answers the worker's requests on one channel.
class BrokerHost {
 public:
  /// `policy` decides every OpenListeners entry; its unprivileged_port_start
  /// and has_bind_cap also go to the worker in HelloReply. `control` decides
  /// every PeerQuery.
  explicit BrokerHost(BindPolicy policy, ControlPolicy control = {});

  /// Serves the SPLICE table: its listeners (kListenerSplice entries) are
  /// forwarded, after the bind policy under the target namespace's kernel
  /// facts (`has_bind_cap`, `unprivileged_port_start`, as the helper reported
  /// them), to the namespace helper on `helper_channel` (a SOCK_SEQPACKET
  /// socket; send_helper_request()), whose answer serve_helper() takes, and
  /// OpenSockets is answered. `helper_pid` (> 0 when known) is named in the
  /// log when the helper does not answer. Without this call both are
  /// violations. Call before the first request.
  void serve_splice(int helper_channel, bool has_bind_cap, uint32_t unprivileged_port_start,
                    int helper_pid = -1);
  /// True once serve_splice() was called.
  bool splice_served() const noexcept { return helper_channel_ >= 0; }

  /// Receives one datagram from `fd` (non-blocking, MSG_DONTWAIT), checks it
  /// and answers it. When `fd` is non-blocking and the worker has not read
  /// its earlier replies, the answer waits (reply_pending()) and the status
  /// is kContinue; nothing more is read until flush_reply() has sent it.
  /// Never exits or throws; `last_error()` explains any status other than
  /// kContinue. Needs `recvmsg` and `sendmsg` on `fd`, and what
  /// open_listener() needs, in the seccomp policy.
  /// While splice_waiting(), nothing is read (kContinue).
  HandleStatus handle_one(int fd);
  /// True while an answer, or a PolicyReload once the worker is ready,
  /// waits for room on the channel.
  bool reply_pending() const noexcept {
    return pending_len_ != 0 ||
           ((push_fd_ >= 0 || push_failed_ || exit_unsent_) && state_ == HostState::kReady);
  }
  /// True while an OpenListeners waits for the namespace helper's answer
  /// (its SPLICE entries): the worker's channel is not read meanwhile, so
  /// that its answers keep their order.
  bool splice_waiting() const noexcept { return splice_wait_.active; }
  /// The helper's channel while an answer from it is due (one that a
  /// request waits for, or a late one to drain), else -1: poll it for
  /// POLLIN and call serve_helper() when it is readable.
  int helper_poll_fd() const noexcept { return helper_sent_ns_.empty() ? -1 : helper_channel_; }
  /// True once serve_helper() returned kIoError because of the helper (it
  /// closed its channel or sent something else), not of the worker.
  bool helper_failed() const noexcept { return helper_failed_; }
  /// The time to count the worker's heartbeat from (sd_notify.h): `heard_ns`
  /// (its last WorkerStatus, or what stands in for it), or `now_ns` while
  /// splice_waiting(), when its reports wait unread behind the helper's
  /// answer for at most kHelperAnswerTimeoutMs: a stopped helper must not
  /// starve systemd's watchdog.
  uint64_t heartbeat_ns(uint64_t heard_ns, uint64_t now_ns) const noexcept;
  /// Milliseconds until the helper's answer is overdue (kHelperAnswerTimeoutMs
  /// after the request; 0 when it is), -1 when no request waits.
  int splice_timeout_ms(uint64_t now_ns) const noexcept;
  /// Takes the helper's answer if it is there (never waits) and answers the
  /// waiting OpenListeners on the worker's channel `fd`; when none came and
  /// the wait is overdue at `now_ns`, answers it with ETIMEDOUT for its
  /// SPLICE entries. A late answer nobody waits for has its sockets closed.
  /// `fd` < 0 (the worker is gone) drops the wait. kIoError when the helper
  /// closed its channel or sent anything else (sluiced stops: SPLICE rules
  /// cannot be served); otherwise as flush_reply(). Needs `recvmsg` on the
  /// helper's channel, `sendmsg` on `fd`, and what check_opened_listener()
  /// needs.
  HandleStatus serve_helper(int fd, uint64_t now_ns);
  /// Sends the answer that waits (call when `fd` is writable): kContinue
  /// when it went out, or still waits (EAGAIN); kPeerClosed or kIoError as
  /// handle_one(). Needs `sendmsg` on `fd`.
  HandleStatus flush_reply(int fd);

  /// The worker is dead (its pidfd said so): takes what it sent before it
  /// died and the loop has not read yet from `fd`, its channel, without
  /// answering anything (never waits), once it was ready (kReady; before,
  /// nothing is read). Its StoreState (the tables and
  /// listeners the next worker takes over: a commit whose client was told it
  /// applied is not lost) and its WorkerStatus (whether it served) count as
  /// if read in time; any other request is dropped, its fds closed without
  /// lingering. At most kMaxDeadWorkerMessages datagrams. kViolation when
  /// one fails the checks handle_one() makes (the worker is treated as
  /// compromised, as when alive), else kContinue. Needs `recvmsg` on `fd`
  /// and what answer_store_state() needs.
  HandleStatus drain_dead_worker(int fd);
  /// Limit: datagrams drain_dead_worker() reads. A dead worker adds nothing
  /// to its channel, whose receive buffer holds a few thousand of the
  /// smallest requests at most; 4096 only keeps the loop bounded.
  static constexpr size_t kMaxDeadWorkerMessages = 4096;
  /// A new worker replaces the one that died: the conversation starts again
  /// at Hello, with any reply still waiting dropped, and a PolicyReload that
  /// waits too: call it right after the new worker is launched, with the
  /// policy text in force, which it reads at start. The escrow and the blob
  /// stay, for the new worker to take over (kBrokerResume), and so do the
  /// initial rules' grants: the new worker's InitialPorts is checked, but
  /// the set stays the one the first worker declared, for sluiced's life.
  void new_worker() noexcept;
  /// The listeners and the blob sluiced keeps for a restart.
  const ListenerEscrow& escrow() const noexcept { return escrow_; }
  /// The socket tables a rebind's check reads (broker/port_holders.h):
  /// sluiced's side's, for HOST listeners, and the target namespace's, for
  /// SPLICE listeners. Until they are set, no rebind shares its port (each
  /// then fails with EADDRINUSE and its commit rolls back).
  void set_socket_tables(SocketTables host, SocketTables target) noexcept {
    host_tables_ = std::move(host);
    target_tables_ = std::move(target);
  }
  /// Reads StoreState's cookie lists on `fd` and keeps the escrow from
  /// `min_fd` on (ListenerEscrow::set_staging_fd).
  void set_state_staging_fd(int fd, int min_fd) noexcept { escrow_.set_staging_fd(fd, min_fd); }
  /// Puts a reloaded policy in force: `bind` (the file's bind lines; the
  /// kernel facts and the initial rules' grants in force are kept) decides
  /// every later OpenListeners entry, `control` every later PeerQuery (its
  /// owner_uid is kept too). Requests already answered are not revisited.
  void replace_policy(BindPolicy bind, ControlPolicy control);
  /// The control policy in force.
  const ControlPolicy& control_policy() const noexcept { return control_; }
  /// The bind policy in force (HOST listeners).
  const BindPolicy& bind_policy() const noexcept { return policy_; }
  /// Queues a PolicyReload for the worker with `text_fd` (not owned: it must
  /// stay open until sent; a later call replaces the fd and length) holding
  /// `length` bytes. It goes out, in order after any answer that waits,
  /// through flush_reply(), once the worker is ready (after InitialPorts):
  /// before that, the worker reads only HelloReply.
  void queue_policy_reload(int text_fd, uint32_t length) noexcept;
  /// Queues a PolicyReloadFailed for the worker, which records the failed
  /// reload in the audit log: `error` (cut to fit, made printable ASCII) says
  /// why. Sent as a PolicyReload is, and in order with one: a later failure
  /// replaces one that still waits.
  void queue_policy_failure(const std::string& error) noexcept;
  /// The process --netns named has exited (serve.cc watches its pidfd):
  /// queues a TargetExited for the worker, and for every worker started
  /// after it (new_worker). Sent as a PolicyReload is, once the worker is
  /// ready, before any reload that waits.
  void queue_target_exited() noexcept {
    target_exited_ = true;
    exit_unsent_ = true;
  }
  /// The same, to fill at start from the service manager's fd store and to
  /// mirror into it (broker/fd_store.h).
  ListenerEscrow& escrow() noexcept { return escrow_; }
  /// The first worker, too, takes over what the escrow holds (kBrokerResume):
  /// set at start when the service manager's fd store gave back listeners or
  /// a state, which a restart of sluiced resumes from.
  void resume_first_worker() noexcept { resume_first_ = true; }

  /// The current protocol state.
  HostState state() const noexcept { return state_; }
  /// The worker's last WorkerStatus (readiness and the watchdog).
  const WorkerReport& worker_report() const noexcept { return report_; }
  /// Why the last non-kContinue status was returned.
  const std::string& last_error() const noexcept { return last_error_; }

 private:
  /// Sends the unasked messages that wait, TargetExited first, then
  /// PolicyReload and PolicyReloadFailed in the order their reloads ended,
  /// as far as the channel takes them; results as flush_reply(). Needs
  /// `sendmsg` on `fd`.
  HandleStatus flush_pushes(int fd);
  /// One row of the dispatch table.
  struct DispatchEntry {
    wire::BrokerMsg type;
    HostState state;  // the only state in which the request is permitted
    size_t size;      // the exact datagram length
    size_t fds;       // the exact number of fds attached
    const char* name;
    HandleStatus (BrokerHost::*answer)(int fd);
  };
  static const DispatchEntry kDispatch[9];
  friend Result<wire::BrokerMsg> check_envelope(std::span<const uint8_t>, size_t, HostState);
  /// Returns the dispatch row for a wire `type`, or nullptr for a type the
  /// broker never accepts from a worker.
  static const DispatchEntry* find_entry(uint32_t type) noexcept;

  /// Answers Hello with HelloReply and moves to kAwaitInitial.
  HandleStatus answer_hello(int fd);
  /// Records the grants of an InitialPorts (no reply); the one flagged last
  /// logs the bind policy in force and moves to kReady.
  HandleStatus answer_initial_ports(int fd);
  /// Answers OpenListeners with ListenersOpened plus the fds of the OK entries.
  HandleStatus answer_open_listeners(int fd);
  /// Answers OpenSockets with SocketsOpened and the fresh sockets.
  /// Needs `socket`.
  HandleStatus answer_open_sockets(int fd);
  /// Judges the SPLICE entries of `req` by the bind policy of the target
  /// namespace (reply_ gets kStatusPolicyDenied) and asks the helper for the
  /// rest (broker_host_splice.cc). Returns true when the answer now waits
  /// for the helper (splice_wait_), false when reply_ is complete: nothing
  /// to ask, or an overdue request is still unanswered (ETIMEDOUT). Fails
  /// when the helper is gone; sluiced then stops.
  Result<bool> ask_splice_entries(const wire::OpenListenersMsg& req);
  /// Completes the OpenListeners in request_ whose statuses are in reply_:
  /// keeps each opened socket of `by_entry` (one slot per entry) in the
  /// escrow and sends the reply with them on `fd`.
  HandleStatus finish_open_listeners(int fd, std::vector<UniqueFd> by_entry);
  /// Ends the wait for the helper: answers its OpenListeners on `fd` with
  /// the statuses in reply_ and the sockets it collected.
  HandleStatus finish_wait(int fd);
  /// True when the oldest request not answered yet has timed out: its wait
  /// did, or it was sent kHelperAnswerTimeoutMs or more before `now_ns`.
  bool helper_overdue(uint64_t now_ns) const noexcept;
  /// Takes a StoreState and its two memfds into the escrow (no reply);
  /// anything malformed is a violation (broker_host_resume.cc).
  HandleStatus answer_store_state(int fd);
  /// Answers Resume with ResumeReply and a copy of the blob, if any, and
  /// moves to kReclaiming.
  HandleStatus answer_resume(int fd);
  /// Answers ReclaimListeners with the next batch of escrowed listeners; the
  /// last one moves to kReady.
  HandleStatus answer_reclaim(int fd);
  /// Records a WorkerStatus (no reply).
  HandleStatus answer_worker_status(int fd);
  /// Answers PeerQuery with PeerReply and closes the received fd; a socket
  /// that check_peer_socket() refuses is a violation (closed without
  /// lingering, no reply).
  HandleStatus answer_peer_query(int fd);
  /// Sends `len` bytes of reply and `fds` (closed once sent), or keeps them
  /// pending when the channel is full; maps a failure to a status.
  HandleStatus send_reply(int fd, const void* reply, size_t len, std::vector<UniqueFd> fds);
  /// Records `what` and returns `status`.
  HandleStatus fail(HandleStatus status, std::string what);

  BindPolicy policy_;
  BindPolicy splice_policy_;  // policy_ with the target namespace's kernel facts
  /// An OpenListeners whose SPLICE entries the helper is opening.
  struct SpliceWait {
    bool active = false;
    uint64_t deadline_ns = 0;               // kHelperAnswerTimeoutMs after the request
    std::vector<wire::ListenerSpec> asked;  // the entries sent to the helper
    std::vector<uint32_t> index;            // each one's index in request_
    std::vector<UniqueFd> by_entry;         // this side's sockets, one slot per entry
  };
  int helper_channel_ = -1;       // the namespace helper's channel, -1: no SPLICE table
  int helper_pid_ = -1;           // for the log, when known
  uint64_t helper_sequence_ = 0;  // the last request sent to the helper
  // When each request not answered yet was sent, oldest first: the last
  // one's sequence is helper_sequence_ (the helper answers in order).
  std::deque<uint64_t> helper_sent_ns_;
  uint64_t helper_timed_out_ = 0;  // the last request whose wait timed out
  unsigned helper_refused_ = 0;    // requests failed at once while one was overdue
  bool helper_failed_ = false;     // helper_failed()
  SpliceWait splice_wait_;
  ControlPolicy control_;
  std::vector<UniqueFd> fds_;  // the fds of the datagram in buf_
  HostState state_ = HostState::kAwaitHello;
  ListenerEscrow escrow_;
  SocketTables host_tables_;    // set_socket_tables()
  SocketTables target_tables_;  // set_socket_tables()
  bool grants_closed_ = false;  // the first worker declared its InitialPorts
  bool resume_first_ = false;   // resume_first_worker(): the store gave something back
  bool resume_ = false;         // this worker was told kBrokerResume
  WorkerReport report_;
  std::string last_error_;
  size_t len_ = 0;                                   // length of the datagram in buf_
  std::unique_ptr<uint8_t[]> buf_;                   // kMaxWireMessage + 1 bytes
  std::unique_ptr<wire::OpenListenersMsg> request_;  // aligned copy of buf_
  std::unique_ptr<wire::ListenersOpenedMsg> reply_;  // reused for every answer
  std::unique_ptr<wire::InitialPortsMsg> initial_;   // aligned copy of buf_
  std::unique_ptr<uint8_t[]> pending_;               // the answer not sent yet
  size_t pending_len_ = 0;                           // its length; 0 when none waits
  int push_fd_ = -1;                                 // a PolicyReload's text to send, not owned
  uint32_t push_length_ = 0;                         // its length
  bool push_failed_ = false;                         // a PolicyReloadFailed waits
  bool failure_first_ = false;                       // it came before the PolicyReload that waits
  std::string push_error_;                           // its error text
  bool target_exited_ = false;                       // queue_target_exited() ran
  bool exit_unsent_ = false;                         // this worker was not told yet
  std::vector<UniqueFd> pending_fds_;                // its sockets, closed once sent
};

}  // namespace sluice
