// The pesto endpoint: serves pesto's protocol v2 (schema/pesto_wire.h) on the
// socket sluiced created for --pesto-socket, so that the unmodified pesto
// binary, and with it Podman and rootlesskit, drive sluice as they drive pasta.
//
// Sessions of clients that may change the tables are served one at a time,
// as pasta serves them: pesto reads the tables, edits them and sends them all
// back, with no generation to compare, so a second such session may start
// only once the first one's update is in force. Unlike pasta, nothing waits
// on a client:
//   - the server accepts connections (at most kMaxPestoConnections open at
//     once), asks sluiced who each is (PeerQuery), and only then sends the
//     hello: the tables in force, each rule with the bytes it arrived with;
//   - a client that may only read (control policy) is greeted at once,
//     beside the others: its update could only be refused, so it holds up
//     no one. One user holds at most kMaxPestoReadersPerUid such sessions;
//     more are closed once identified, so that a user who may only read
//     cannot fill the server's connections and stall Podman's updates;
//   - a client that may commit waits, identified, for the sessions of
//     committers before it (in the order they connected);
//   - the update is read without blocking, as it arrives, into the
//     incremental decoder; the data path and sluicectl's clients run between
//     reads;
//   - a session must end within kPestoSessionTimeoutNs of being admitted; a
//     slow or silent client is then dropped, and the next one is served. The
//     kernel's backlog holds the others meanwhile;
//   - a complete update is one whole-table commit through the commit engine,
//     as a sluicectl commit is: atomic, hitless, audited with the client's
//     credentials, checked against the control policy (commit access) and
//     the bind and target policies. If a sluicectl client committed since
//     the hello, the client's edit (the rules it added and removed) is
//     applied to the tables in force instead of overwriting them.
// v2 has no reply: a refused or malformed update is logged, and is in the
// audit log and in `sluicectl --history` like any refused commit (within the
// bound of worker/refusal_audit.h). pesto exits 0 once
// the update is sent, whatever happens to it.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "policy/control_policy.h"
#include "schema/pesto_wire.h"
#include "worker/broker_client.h"
#include "worker/commit_engine.h"
#include "worker/event_loop.h"

namespace sluice {

/// Limit: how long one pesto session may take from its hello to the end of
/// its update. pesto sends its update right after reading the hello, in a few
/// milliseconds; 5 s is a thousand times that, enough on a machine under
/// heavy load, and bounds how long a silent client holds up the next pesto
/// session (never anything else).
inline constexpr uint64_t kPestoSessionTimeoutNs = 5ULL * 1000000000ULL;
/// Limit: pesto connections open at once (being identified, reading the
/// tables, waiting for their turn, or being served). Each holds one
/// descriptor and, while identified, one of the PeerQuery window's slots
/// (shared with sluicectl's clients); the kernel's backlog holds the rest.
/// Podman starts a pesto per container, and a user starting many containers
/// at once runs as many: 16 keep them moving without a queue of thousands.
inline constexpr size_t kMaxPestoConnections = 16;
/// Limit: sessions of clients that may only read, per user, at once. pesto
/// reads the tables in a few milliseconds; 2 let a user list them twice at
/// once, and keep one user's idle connections from filling the server.
inline constexpr size_t kMaxPestoReadersPerUid = 2;
/// Limit: how many times an update is re-applied when a sluicectl commit
/// lands between its submission and its check (a stale generation). Each
/// retry re-applies the client's edit to the newer tables; three in a row
/// means the tables change faster than one update can land, and the update is
/// refused (logged) rather than retried forever.
inline constexpr int kPestoStaleRetries = 3;

/// The tables offered in one hello, as the model and as sent.
struct PestoOffer {
  std::vector<pesto::WireTable> tables;  // ascending pif id
  uint64_t generation = 0;               // the engine's generation when sent
};

/// Applies a client's edit to the tables in force: the rules of `offered`
/// that `update` lacks are removed from `current` (each once, first match),
/// and the rules of `update` that `offered` lacks are appended, per table.
/// Tables that were not offered keep `current`'s rules; an offered table the
/// update left out counts as emptied. When `current` is what was offered,
/// the result is the update itself. Pure.
TableSet rebase_update(const PestoOffer& offered, const std::vector<pesto::WireTable>& update,
                       const TableSet& current);

class PestoServer;

/// One pesto connection: identified, greeted, read, committed.
class PestoSession final : public EventHandler {
 public:
  /// Takes the accepted `fd` of `peer` (SO_PEERCRED as the worker sees it).
  PestoSession(PestoServer& server, UniqueFd fd, struct ucred peer);
  /// Readable or writable: sends the rest of the hello, then reads the update.
  void on_event(uint32_t events) noexcept override;
  /// Takes sluiced's ids and the client's access (before it is greeted).
  void identify(const PeerIdentity& identity) noexcept;
  /// Greets the client with `hello`, which offers the tables of `pifs`, and
  /// reads its update from now on.
  void greet(const std::string& hello, std::vector<Pif> pifs) noexcept;
  /// What the control policy lets the client do (kNone before identify()).
  ControlAccess access() const { return access_; }
  /// Who the client is (the broker's ids once identified).
  const struct ucred& peer() const { return peer_; }
  /// The client's connection.
  int fd() const { return fd_.get(); }
  /// When the session was greeted (0 before), for the timeout.
  uint64_t admitted_ns() const { return admitted_ns_; }
  /// True once sluiced said who the client is.
  bool identified() const { return identified_; }

 private:
  /// Writes what is left of the hello until EAGAIN. Needs `sendto`.
  void flush() noexcept;
  /// Reads and decodes until EAGAIN, EOF, a complete update or a refusal.
  /// Needs `read`.
  void read_update() noexcept;

  PestoServer& server_;
  UniqueFd fd_;
  struct ucred peer_;
  ControlAccess access_ = ControlAccess::kNone;
  std::string out_;
  size_t out_off_ = 0;
  pesto::UpdateDecoder decoder_;
  uint64_t admitted_ns_ = 0;  // 0 until greeted: nothing is read before
  bool identified_ = false;   // sluiced answered the PeerQuery
  bool done_ = false;         // ended: the server frees it after the current batch
};

/// The pesto socket: readers beside each other, committers one at a time,
/// each update a whole-table commit.
class PestoServer final : public EventHandler, public Ticker {
 public:
  /// Serves `listen_fd` (listening, non-blocking) with `engine` as the
  /// source of truth; clients are identified by the broker.
  PestoServer(EventLoop& loop, UniqueFd listen_fd, CommitEngine& engine, BrokerClient& broker);
  /// Takes the session and the listening socket out of the loop.
  ~PestoServer() override;
  /// Registers the listening socket and the ticker with the loop.
  Result<void> start();
  /// The listening socket is readable (edge-triggered): accepts clients
  /// while fewer than kMaxPestoConnections are open.
  void on_event(uint32_t events) noexcept override;
  /// Drops a greeted session past kPestoSessionTimeoutNs; accepts again
  /// when accepting had to wait (a full PeerQuery window, an accept error).
  void on_tick(uint64_t now_ns) noexcept override;

  // For PestoSession.
  /// Commits a complete update of `session` as one whole-table commit.
  void commit(PestoSession* session, std::vector<pesto::WireTable> update) noexcept;
  /// Refuses the update of `session` before it reaches the engine as a
  /// commit: logs `message` (rate-limited), records it as a rejected attempt
  /// (audit line, history entry with one failure of `kind`), and ends the
  /// session.
  void refuse(PestoSession* session, control::FailureKind kind,
              const std::string& message) noexcept;
  /// Ends `session` (closes it after the current batch), serves the next
  /// committer if it was the one served, and accepts again.
  void end(PestoSession* session) noexcept;
  /// True when a refusal may be logged now (10 at once, then 1 per second).
  bool log_allowed() noexcept { return log_limit_.allow(); }

 private:
  /// Accepts clients while fewer than kMaxPestoConnections are open and the
  /// PeerQuery window has room, and asks sluiced who each is. Needs
  /// `accept4`, `getsockopt`.
  void accept_next() noexcept;
  /// sluiced said who `session` is: drops a client without access, greets
  /// one that may only read (within kMaxPestoReadersPerUid), queues one that
  /// may commit.
  void on_identified(PestoSession* session, const PeerIdentity& identity) noexcept;
  /// Greets the first committer that waits, when none is served and no
  /// update is in the engine.
  void serve_next_committer() noexcept;
  /// The tables to offer now, and the hello that carries them; fails when a
  /// table holds more rules than v2 can carry (then the session is refused).
  Result<std::string> make_hello(PestoOffer* offer) const;
  /// Takes `session` out of the loop and out of whichever list holds it,
  /// and frees it after the current batch. Returns whether it was found.
  bool retire(PestoSession* session) noexcept;
  /// Connections open: served, waiting, and the others.
  size_t open_count() const { return (session_ ? 1 : 0) + queued_.size() + others_.size(); }
  /// Submits `tables` for the session's client, retrying a stale generation
  /// up to kPestoStaleRetries times with the edit re-applied.
  void submit(std::vector<pesto::WireTable> update, struct ucred peer, int attempt) noexcept;
  /// Remembers the bytes of every rule of `update` now in force, so that the
  /// next hello sends them back unchanged.
  void remember(const std::vector<pesto::WireTable>& update) noexcept;
  /// Returns the record for `rule`: the bytes it arrived with, if it came
  /// through this endpoint, else its canonical encoding.
  pesto::RuleRecord record_of(const Rule& rule) const noexcept;

  EventLoop& loop_;
  UniqueFd listen_fd_;
  CommitEngine& engine_;
  BrokerClient& broker_;
  std::unique_ptr<PestoSession> session_;              // the committer being served, or null
  std::deque<std::unique_ptr<PestoSession>> queued_;   // committers waiting for their turn
  std::vector<std::unique_ptr<PestoSession>> others_;  // being identified, or readers
  bool committing_ = false;                            // the session's update is in the engine
  bool accept_waiting_ = false;                        // retry accepting at the next tick
  PestoOffer offer_;                                   // what the committer served was sent
  std::vector<pesto::WireRule> remembered_;
  LogRateLimit log_limit_{10, 1};
  // Readers over their per-user bound: a flood of them must not use up
  // log_limit_, which says why updates are refused.
  LogRateLimit reader_drop_log_{5, 1};
};

}  // namespace sluice
