// The control server: serves sluicectl clients on the UNIX socket that
// sluiced created, inside the worker's event loop.
//
// Every client is non-blocking and buffered with hard caps; frames are checked
// by hand (schema/frame.h) before the one decode (schema/codec.h). A client
// that sends something malformed gets an error reply and is dropped; a slow or
// idle one is dropped after a timeout. Nothing a client does can block
// forwarding: the data path shares the loop, and no call here waits.
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
#include "worker/event_loop.h"

namespace sluice {

/// Limits of the control server.
struct ControlLimits {
  /// Limit: clients connected at once. Each may hold up to one maximal frame
  /// in memory (4 MiB); 64 bounds that at 256 MiB in the worst case while
  /// leaving room for many concurrent scripted clients.
  size_t max_clients = 64;
  /// Limit: a request must arrive whole within this time once it has begun,
  /// and replies must drain within it: slow-loris clients are cut off.
  uint64_t request_timeout_ns = 5'000'000'000ULL;
  /// Limit: a connected client with nothing in flight is dropped after this.
  uint64_t idle_timeout_ns = 60'000'000'000ULL;
  /// Limit: reply bytes queued for a client that does not read; two maximal
  /// responses.
  size_t max_output_bytes = 8u << 20;
};

class ControlServer;

/// One connected client.
class ControlClient final : public EventHandler {
 public:
  /// Takes the accepted connection `fd` of `peer` (SO_PEERCRED as the worker
  /// sees it, until the broker answers), idle since `now_ns`.
  ControlClient(ControlServer& server, UniqueFd fd, struct ucred peer, uint64_t now_ns);
  /// Reads what arrived, answers every complete request, flushes replies.
  void on_event(uint32_t events) noexcept override;
  /// Returns true when the client has overstayed a timeout at `now_ns`.
  bool timed_out(uint64_t now_ns) const noexcept;
  /// Queues a protocol error and closes the connection once it is sent.
  void fail(control::ErrorCode code, const std::string& message) noexcept;
  /// Queues a framed response; drops the client if too much is queued.
  void queue(const std::string& frame) noexcept;

  /// Sends the result of this client's commit and resumes reading its requests.
  void commit_done(uint64_t request_id, const control::CommitResult& result) noexcept;
  /// Takes the broker's answer about who the client is; requests that
  /// arrived meanwhile are answered now.
  void identified(const PeerIdentity& identity) noexcept;

  /// True once an error was queued and the connection closes after sending it.
  bool closing() const { return closing_; }
  /// Marks the client gone: later events in the same batch are ignored.
  void mark_dead() noexcept { dead_ = true; }
  /// The client's connection.
  int fd() const { return fd_.get(); }
  /// Who the client is: the broker's ids once identified, for logs and audit.
  const struct ucred& peer() const { return peer_; }
  size_t slot = 0;  // index in the server's client table
  uint64_t id = 0;  // never reused: a finished commit finds its client by id

 private:
  /// Reads until EAGAIN, processing frames as they complete. Needs `read`.
  void read_input() noexcept;
  /// Decodes and answers every complete frame in the buffer.
  void process_frames() noexcept;
  /// Answers one decoded request through the dispatch table: the request
  /// must be in its place in the conversation (the hello first and once,
  /// everything else after it), pass its row's own check, and be permitted
  /// the row's access; otherwise the client fails with outOfOrder, the
  /// check's error or notPermitted. A kind with no row fails as
  /// unknownRequest.
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
  /// Submits the commit to the engine; this client's later requests wait in
  /// its buffer until commit_done() answers it.
  void answer_commit(const control::Request& request) noexcept;
  /// Writes queued output until EAGAIN. Needs `sendto` (MSG_NOSIGNAL).
  void flush() noexcept;
  /// Grows the input buffer to at least `bytes` (never past the frame limit).
  void reserve_input(size_t bytes) noexcept;
  /// True when the client's access is at least `needed`; otherwise fails the
  /// client with notPermitted, saying what `what` needs and which policy line
  /// decided, and returns false.
  bool permitted(ControlAccess needed, const char* what) noexcept;

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
  static const Route kRoutes[5];
  /// Returns the row for a request kind, or nullptr when this server serves
  /// no such request.
  static const Route* find_route(size_t kind) noexcept;

  ControlServer& server_;
  UniqueFd fd_;
  struct ucred peer_;
  std::vector<uint64_t> in_;  // 8-byte aligned storage for capnp words
  size_t in_len_ = 0;
  std::string out_;
  size_t out_off_ = 0;
  bool hello_done_ = false;
  bool identified_ = false;      // the broker answered the PeerQuery; until then requests wait
  PeerIdentity identity_;        // the broker's view: real ids and the access granted
  bool commit_pending_ = false;  // requests wait (in order) until the commit answers
  bool closing_ = false;         // close once the output is flushed
  bool dead_ = false;
  uint64_t idle_since_ns_;
  uint64_t busy_since_ns_ = 0;  // partial input or unsent output since then; 0 when neither
};

class ControlServer final : public EventHandler, public Ticker {
 public:
  /// Serves `listen_fd` (listening, non-blocking) with `state` as the source
  /// of truth and `hello` as the greeting. Every client is identified by the
  /// broker (broker.peer_query) before any of its requests is answered;
  /// `policy` (as the worker parsed the file: names unresolved) only words
  /// the denials.
  ControlServer(EventLoop& loop, UniqueFd listen_fd, CommitEngine& engine,
                control::ServerHello hello, ControlLimits limits, BrokerClient& broker,
                ControlPolicy policy);
  /// Takes every client and the listening socket out of the loop.
  ~ControlServer() override;
  /// Registers the listening socket with the loop.
  Result<void> start();
  /// Accepts new clients (edge-triggered) and asks the broker who each is.
  /// Needs `accept4`, `getsockopt(SO_PEERCRED)` (the pid, for logs until the
  /// broker answers).
  void on_event(uint32_t events) noexcept override;
  /// Drops clients that overstayed a timeout.
  void on_tick(uint64_t now_ns) noexcept override;
  /// Closes a client and frees it after the current batch.
  void drop(ControlClient* client) noexcept;

  /// The engine every commit goes through, and the source of the state.
  CommitEngine& engine() { return engine_; }
  /// Finds a connected client by id, or nullptr when it is gone.
  ControlClient* find(uint64_t id) noexcept;
  /// The limits every client is held to.
  const ControlLimits& limits() const { return limits_; }
  /// The control policy as the worker parsed it (for wording denials only).
  const ControlPolicy& policy() const { return policy_; }
  /// Milliseconds since the server was created (the worker's uptime).
  uint64_t uptime_millis() const { return (monotonic_ns() - started_ns_) / 1000000; }

 private:
  EventLoop& loop_;
  UniqueFd listen_fd_;
  CommitEngine& engine_;
  uint64_t next_client_id_ = 1;
  control::ServerHello hello_;
  ControlLimits limits_;
  BrokerClient& broker_;
  ControlPolicy policy_;
  uint64_t started_ns_ = monotonic_ns();
  std::vector<std::unique_ptr<ControlClient>> clients_;
  // Rejected or failed clients: at most 10 lines at once, then 1 per second.
  LogRateLimit log_limit_{10, 1};
};

}  // namespace sluice
