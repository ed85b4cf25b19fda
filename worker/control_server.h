// The control server: serves sluicectl clients on the UNIX socket that
// sluiced created, inside the worker's event loop.
//
// A client goes through three steps:
//   1. accepted: the server asks sluiced who it is (PeerQuery) and neither
//      reads nor answers it meanwhile. At most kPeerQueryWindow clients wait
//      for their answer; at that bound the server stops accepting (the
//      kernel's backlog holds the rest) and resumes as answers come back, so
//      a flood of connections can never outrun sluiced.
//   2. identified: admission (worker/control_admission.h) drops a client the
//      control policy gives no access (notPermitted, with the reason), and
//      tells one over a limit that the server is busy. Neither gets the hello,
//      and none of their bytes is read, let alone decoded.
//   3. admitted: the server speaks first (the hello), then reads requests.
//      Frames are checked by hand (schema/frame.h) before the one decode
//      (schema/codec.h); a client that may not commit may send requests of at
//      most max_reader_request_bytes. Its commit, dry run or confirmation is
//      refused (notPermitted, which closes the connection) and recorded in
//      the audit log and the history, within the bound of
//      worker/refusal_audit.h.
// Memory is bounded per client, by back-pressure: a client's next request is
// neither read nor answered while its last reply has not drained, or while
// its commit runs; the input buffer grows only to the size of the one frame
// being read. So a session holds at most one request and one response.
// A client that sends something malformed gets an error reply and is
// dropped; a slow or idle one is dropped after a timeout. Nothing a client
// does can block forwarding: the data path shares the loop, and no call here
// waits.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "policy/control_policy.h"
#include "schema/codec.h"
#include "worker/broker_client.h"
#include "worker/commit_engine.h"
#include "worker/control_admission.h"
#include "worker/event_loop.h"

namespace sluice {

class ControlServer;

/// One connected client: its conversation, buffers and timeouts.
class ControlClient final : public EventHandler {
 public:
  /// Takes the accepted connection `fd` of `peer` (SO_PEERCRED as the worker
  /// sees it, until the broker answers), idle since `now_ns`. The client
  /// waits for identification: it is neither read nor timed out until
  /// admitted() or refused().
  ControlClient(ControlServer& server, UniqueFd fd, struct ucred peer, uint64_t now_ns);
  /// Once admitted: flushes replies, then reads and answers what arrived
  /// as far as back-pressure allows. Before: ignores the event.
  void on_event(uint32_t events) noexcept override;
  /// Returns true when an admitted client has overstayed a timeout at
  /// `now_ns` (never while it waits for the broker or for its commit).
  bool timed_out(uint64_t now_ns) const noexcept;
  /// Queues a protocol error and closes the connection once it is sent.
  void fail(control::ErrorCode code, const std::string& message) noexcept;
  /// Queues a framed response; fails the client when the frame is over the
  /// message limit, and drops it when more than max_output_bytes would wait.
  void queue(const std::string& frame) noexcept;

  /// Sends the result of this client's commit and resumes reading its requests.
  void commit_done(uint64_t request_id, const control::CommitResult& result) noexcept;
  /// Takes the broker's answer about who the client is, for its logs,
  /// audit records and denials: its ids replace the ones read at accept,
  /// unless the broker could read none (a failure with ids all 0). Reads
  /// nothing.
  void identified(const PeerIdentity& identity) noexcept;
  /// Admits the identified client: queues `hello` (the server speaks first),
  /// then reads and answers what it sent meanwhile.
  void admit(const control::ServerHello& hello) noexcept;
  /// Refuses the identified client without reading a byte of it: sends the
  /// error `code` with `message` if the socket takes it at once, and drops
  /// the client. With `code` notPermitted and an empty message, the message
  /// says why the control policy refuses it.
  void refuse(control::ErrorCode code, const std::string& message) noexcept;

  /// Marks the client as waiting for the broker's answer: its fd travels in
  /// a PeerQuery, so it must not be dropped until identified().
  void await_identity() noexcept { awaiting_identity_ = true; }
  /// True while the broker's answer is awaited.
  bool awaiting_identity() const { return awaiting_identity_; }
  /// True once admitted, until dropped.
  bool admitted() const { return admitted_; }
  /// True when the client used its share of a wake-up with requests still
  /// waiting; the server drives it again on its next tick.
  bool resume() const { return resume_; }
  /// Flushes replies, then reads and answers requests as far as
  /// back-pressure and the per-wake-up share allow. Needs `sendto`, `read`.
  void drive() noexcept;
  /// The access sluiced granted (kNone until identified).
  ControlAccess access() const { return static_cast<ControlAccess>(identity_.access); }
  /// True once an error was queued and the connection closes after sending it.
  bool closing() const { return closing_; }
  /// True while a reply the client has not read is still queued.
  bool reply_unread() const noexcept { return out_off_ < out_.size(); }
  /// Marks the client gone: later events in the same batch are ignored.
  void mark_dead() noexcept { dead_ = true; }
  /// The client's connection.
  int fd() const { return fd_.get(); }
  /// Who the client is: the broker's ids once identified, for logs and audit.
  const struct ucred& peer() const { return peer_; }
  size_t slot = 0;  // index in the server's client table
  uint64_t id = 0;  // never reused: a finished commit finds its client by id

 private:
  /// True while the next request must wait: the last reply has not drained,
  /// or this client's commit runs. Then nothing is read or answered.
  bool paused() const noexcept { return commit_pending_ || out_off_ < out_.size(); }
  /// The largest request this client may send: the frame limit for a client
  /// that may commit, max_reader_request_bytes otherwise.
  size_t request_limit() const noexcept;
  /// Answers the complete frames in the buffer, then reads until EAGAIN,
  /// answering frames as they complete, as long as the client is not
  /// paused. Needs `read`.
  void read_input() noexcept;
  /// Decodes and answers the complete frames in the buffer while the client
  /// is not paused; grows the buffer to the size of an incomplete frame.
  void process_frames() noexcept;
  /// Answers one decoded request through the dispatch table: the request
  /// must be in its place in the conversation (the hello first and once,
  /// everything else after it), pass its row's own check, and be permitted
  /// the row's access; otherwise the client fails with outOfOrder, the
  /// check's error or notPermitted. A kind with no row fails as
  /// unknownRequest. A commit, dry run or confirmation refused for want of
  /// commit access is also recorded (CommitEngine::submit_refused).
  void handle(const control::Request& request) noexcept;

  /// Checks the hello's protocol version; fails the client with
  /// unsupportedVersion and returns false when it is not this server's.
  bool check_hello(const control::Request& request) noexcept;
  /// Accepts the hello: marks the conversation started and queues welcome.
  void answer_hello(const control::Request& request) noexcept;
  /// Queues the state: generation, digest and tables.
  void answer_get_state(const control::Request& request) noexcept;
  /// Queues the last N commit attempts.
  void answer_history(const control::Request& request) noexcept;
  /// Queues the counters of every rule.
  void answer_stats(const control::Request& request) noexcept;
  /// Confirms the commit that waits for confirmation, and queues the result.
  void answer_confirm(const control::Request& request) noexcept;
  /// Submits the commit to the engine; this client's later requests wait in
  /// its buffer until commit_done() answers it.
  void answer_commit(const control::Request& request) noexcept;
  /// Writes queued output until EAGAIN; restarts the idle clock once all is
  /// sent and nothing waits. Needs `sendto` (MSG_NOSIGNAL).
  void flush() noexcept;
  /// Grows the input buffer to at least `bytes` (callers keep it within
  /// request_limit()).
  void reserve_input(size_t bytes) noexcept;
  /// True when the client's access is at least `needed`; otherwise fails the
  /// client with notPermitted, saying what `what` needs and which policy line
  /// decided (denial()), and returns false.
  bool permitted(ControlAccess needed, const char* what) noexcept;
  /// The message of a refusal of `what`, which needs `needed` access the
  /// client lacks: why the control policy refuses it (its line when one
  /// decided) and what to do.
  std::string denial(ControlAccess needed, const char* what) const;

  /// Where in the conversation a request is permitted.
  enum class Stage {
    kHello,    // only as the first request, once
    kSession,  // only after the hello was accepted
  };
  /// One row of the dispatch table: a request kind (the index of its type in
  /// control::Request::body), where it may come, the access it needs, what
  /// it is called in a denial, an optional check of its own fields that runs
  /// before the access check (nullptr: none), and its handler.
  struct Route {
    size_t kind;
    Stage stage;
    ControlAccess needed;
    const char* (*what)(const control::Request& request);
    bool (ControlClient::*check)(const control::Request& request) noexcept;
    void (ControlClient::*answer)(const control::Request& request) noexcept;
  };
  static const Route kRoutes[6];
  /// Returns the row for a request kind, or nullptr when this server serves
  /// no such request.
  static const Route* find_route(size_t kind) noexcept;

  ControlServer& server_;
  UniqueFd fd_;
  struct ucred peer_;
  std::vector<uint64_t> in_;  // 8-byte aligned storage for capnp words; empty until admitted
  size_t in_len_ = 0;
  std::string out_;
  size_t out_off_ = 0;
  bool hello_done_ = false;
  bool awaiting_identity_ = false;  // the PeerQuery carrying fd_ is not answered yet
  bool admitted_ = false;           // identified and admitted; until then nothing is read
  bool resume_ = false;             // requests left over from a wake-up's share
  int answered_ = 0;                // requests answered in this wake-up
  PeerIdentity identity_;           // the broker's view: real ids and the access granted
  bool commit_pending_ = false;     // requests wait (in order) until the commit answers
  bool closing_ = false;            // close once the output is flushed
  bool dead_ = false;
  uint64_t idle_since_ns_;
  uint64_t busy_since_ns_ = 0;  // partial input or unsent output since then; 0 when neither
};

/// The control socket: accepting, identifying and admitting clients, and
/// their timeouts.
class ControlServer final : public EventHandler, public Ticker {
 public:
  /// Serves `listen_fd` (listening, non-blocking) with `engine` as the source
  /// of truth and `hello` as the greeting. Every client is identified by the
  /// broker (broker.peer_query) and admitted (control_admission.h) before
  /// anything is read from it or sent to it; `policy` (as the worker parsed
  /// the file: names unresolved) only words the denials.
  ControlServer(EventLoop& loop, UniqueFd listen_fd, CommitEngine& engine,
                control::ServerHello hello, ControlLimits limits, BrokerClient& broker,
                ControlPolicy policy);
  /// Takes every client and the listening socket out of the loop.
  ~ControlServer() override;
  /// Registers the listening socket with the loop.
  Result<void> start();
  /// The listening socket is readable (edge-triggered): accepts clients.
  void on_event(uint32_t events) noexcept override;
  /// Drops clients that overstayed a timeout; retries accepting after an
  /// accept error (such as EMFILE) that left connections waiting.
  void on_tick(uint64_t now_ns) noexcept override;
  /// Closes a client and frees it after the current batch. A client waiting
  /// for the broker's answer is never dropped (its fd travels in the query).
  void drop(ControlClient* client) noexcept;
  /// True when a refusal or failure may be logged now: at most 10 lines at
  /// once, then 1 per second, so that a flood of refused connections cannot
  /// fill the log.
  bool log_allowed() noexcept { return log_limit_.allow(); }
  /// Asks for a tick at once, in which clients with requests left over from
  /// their share of a wake-up are driven again.
  void resume_later() noexcept { loop_.request_immediate_tick(); }

  /// The engine every commit goes through, and the source of the state.
  CommitEngine& engine() { return engine_; }
  /// Finds a connected client by id, or nullptr when it is gone.
  ControlClient* find(uint64_t id) noexcept;
  /// The limits every client is held to.
  const ControlLimits& limits() const { return limits_; }
  /// The control policy as the worker parsed it (for wording denials only).
  const ControlPolicy& policy() const { return policy_; }
  /// Replaces it after a policy reload (sluiced decides access; this copy
  /// words the denials of later clients).
  void set_policy(ControlPolicy policy) { policy_ = std::move(policy); }
  /// Milliseconds since the server was created (the worker's uptime).
  uint64_t uptime_millis() const { return (monotonic_ns() - started_ns_) / 1000000; }

 private:
  /// Accepts clients until the kernel has none left (EAGAIN) or
  /// kPeerQueryWindow clients wait for the broker's answer; asks the broker
  /// who each one is. At the bound, or after an accept error, it stops with
  /// `accept_waiting_` set, and is called again when an answer comes back
  /// (or at the next tick). Needs `accept4`, `getsockopt(SO_PEERCRED)` (the
  /// pid, for logs until the broker answers), `epoll_ctl`, `sendmsg`.
  void accept_clients() noexcept;
  /// Takes the broker's answer for client `client_id` (if still there):
  /// refuses it (no access, or a limit) or admits it; then accepts more if
  /// connections were left waiting at the bound.
  void identified(uint64_t client_id, const PeerIdentity& identity) noexcept;
  /// Counts the admitted sessions, as admission sees them for `uid`.
  SessionCounts count_sessions(uint32_t uid) const noexcept;

  EventLoop& loop_;
  UniqueFd listen_fd_;
  CommitEngine& engine_;
  uint64_t next_client_id_ = 1;
  control::ServerHello hello_;
  ControlLimits limits_;
  BrokerClient& broker_;
  ControlPolicy policy_;
  uint64_t started_ns_ = monotonic_ns();
  bool accept_waiting_ = false;  // accepting stopped before EAGAIN: resume when possible
  std::vector<std::unique_ptr<ControlClient>> clients_;  // waiting for the broker, or admitted
  // Rejected or failed clients: at most 10 lines at once, then 1 per second.
  LogRateLimit log_limit_{10, 1};
};

}  // namespace sluice
