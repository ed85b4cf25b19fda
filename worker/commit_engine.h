// The commit engine: the worker's tables in force, and the one place that
// changes them. A commit is all or nothing and hitless:
//
//   validate -> compare-and-swap on the generation -> plan keep/open/close
//   -> acquire new sockets from the broker (pipelined, from the event loop)
//   -> on any failure: close what was acquired; the old table never stopped
//   -> swap: re-point kept sockets, serve new ones, bump the generation
//   -> release: drain each closing listener's accept queue, then close it
//
// Opens that clash in the kernel with a closing socket (0.0.0.0:80 giving way
// to 127.0.0.1:80) are rebinds: the clashing listeners are drained and closed
// first, then the rebinds are acquired; if one fails, the closed listeners
// are re-acquired and the old table stays. Rebinds are the only moment a port
// of the table stops listening, and they are counted and reported.
//
// The engine never blocks the loop: broker requests are sent and their
// replies handled as the channel becomes readable, between data events.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "policy/bind_policy.h"
#include "policy/check_commit.h"
#include "policy/target_policy.h"
#include "schema/codec.h"
#include "worker/audit.h"
#include "worker/broker_client.h"
#include "worker/commit_plan.h"
#include "worker/commit_record.h"
#include "worker/event_loop.h"
#include "worker/forwarder.h"
#include "worker/udp_forwarder.h"

namespace sluice {

class CommitEngine final : public EventHandler, public Ticker {
 public:
  using Done = std::function<void(const control::CommitResult&)>;

  /// The engine starts with empty tables at generation 0. It watches the
  /// broker channel on `loop`: readiness with no request in flight means the
  /// broker exited or broke protocol, and the loop is stopped.
  CommitEngine(EventLoop& loop, Forwarder& forwarder, UdpForwarder& udp, BrokerClient& broker,
               BrokerInfo info, ServerCaps caps, AuditLog& audit);
  ~CommitEngine() override;

  /// Registers the broker channel with the loop.
  Result<void> start();

  /// Sets the administrator's policy: `bind` carries the file's bind lines
  /// (pre-checked before asking the broker, so that a denial names its
  /// line; the broker enforces them regardless), `target` is enforced on
  /// every commit. Both default to allowing everything.
  void set_policy(BindPolicy bind, TargetPolicy target) {
    bind_policy_ = std::move(bind);
    target_policy_ = std::move(target);
  }

  /// Queues a commit from the client `peer`. Commits run one at a time, in
  /// order; `done` is called with the result from the event loop (or before
  /// submit() returns, when no broker round trip is needed).
  void submit(control::CommitRequest request, struct ucred peer, Done done);

  /// Handles broker replies (level-triggered on the channel): PeerReplies go
  /// to their callbacks, ListenersOpened to the active commit.
  void on_event(uint32_t events) noexcept override;
  /// Runs the next slice of a commit's socket work (install, release).
  void on_tick(uint64_t now_ns) noexcept override;

  const TableSet& tables() const { return tables_; }
  uint64_t generation() const { return generation_; }
  const Sha256Digest& digest() const { return digest_; }
  size_t listener_count() const { return installed_.size(); }
  const ServerCaps& caps() const { return facts_.caps; }
  /// What check_commit is told about this server.
  const CommitFacts& facts() const { return facts_; }
  /// The last `limit` commit attempts, oldest first.
  control::History history(uint32_t limit) const;
  /// The counters of every rule in force and the data path's totals and
  /// limits; `uptime_millis` is the worker's.
  control::Stats stats(uint64_t uptime_millis) const;

 private:
  struct Job {
    control::CommitRequest request;
    struct ucred peer;
    Done done;
  };
  /// One socket in force and the key it was opened for.
  struct Installed {
    ListenerKey key;
    Listener* listener;  // a TcpListener or a UdpListener, as key.proto says
  };
  // kReleaseClashing and kInstall run in slices between data events; the
  // others wait for broker replies.
  enum class Phase { kAcquire, kReleaseClashing, kRebind, kRestore, kInstall };
  /// Keys to acquire from the broker, and what came back. Keys the bind
  /// policy denies are answered without asking; the asked keys come first.
  struct Acquisition {
    std::vector<PlannedKey> keys;
    std::vector<int32_t> status;             // per key
    std::vector<UniqueFd> fds;               // per key, valid when status is kStatusOk
    std::vector<std::string> policy_reason;  // per key, for policy denials
    size_t asked = 0;                        // keys[0, asked) go to the broker
    size_t sent = 0;                         // of those, handed to the broker so far
    size_t answered = 0;                     // of those, answered so far
    bool complete() const { return answered == asked; }
  };
  struct Active {
    Job job;
    uint64_t start_ns = 0;
    CommitPlan plan;
    Phase phase = Phase::kAcquire;
    Acquisition opens;    // plan.open
    Acquisition rebinds;  // plan.rebind
    Acquisition restore;  // the clashing keys, re-acquired after a failed rebind
    std::vector<std::shared_ptr<const Route>> restore_routes;
    std::vector<control::Failure> failures;   // collected for the reply
    std::vector<std::string> added, removed;  // the requested diff, for the audit record
    // Sliced work: listeners to release (indices into installed_), new
    // sockets to serve, and the table of listeners being built.
    std::vector<size_t> to_release;
    size_t released = 0;
    size_t install_acq = 0;  // 0: opens, 1: rebinds
    size_t install_next = 0;
    std::vector<Installed> next_installed;
    std::vector<std::vector<std::shared_ptr<const Route>>> routes;
    uint64_t generation_before = 0;
    Sha256Digest digest_before{};
  };

  /// Starts the next queued commit if none is running.
  void start_next() noexcept;
  /// Validates, checks the generation, plans, and starts acquiring.
  void begin(Job job) noexcept;
  /// Prepares `acq` for `keys`: pre-checks the bind policy (denied keys are
  /// answered at once, with the reason) and puts the keys to ask first.
  void prepare(Acquisition& acq, std::vector<PlannedKey> keys) const;
  /// Sends requests for `acq` while the pipelining window allows.
  void pump(Acquisition& acq) noexcept;
  /// Continues the active commit once its current acquisition is complete.
  void advance() noexcept;
  /// Drains and closes up to `budget` listeners of a.to_release (indices into
  /// installed_); their entries keep the key with a null listener until the
  /// swap drops them. Returns true when all are released.
  bool release_slice(size_t* budget) noexcept;
  /// Judges the rules of the active commit on everything acquired so far.
  std::vector<control::Failure> judge(bool with_rebinds) const;
  /// Flips to the new tables: re-points kept listeners, bumps the generation,
  /// and queues the new sockets to serve and the old ones to release.
  void swap() noexcept;
  /// Serves up to `budget` acquired sockets; true when all are served.
  bool install_slice(size_t* budget) noexcept;
  /// Does one slice of the current sliced phase, and moves on when it is done.
  void step() noexcept;
  /// Replies, audits and starts the next commit.
  void finish(control::Outcome outcome) noexcept;
  /// The acquisition of the current phase.
  Acquisition& current();
  /// Stops the worker after a broker failure (there is no safe way on).
  void broker_failed(const std::string& why) noexcept;
  /// Starts serving the socket `fd` of `key` with `route`, on the data path
  /// of the key's protocol. Fails only if epoll refuses the fd.
  Result<Listener*> serve(const ListenerKey& key, UniqueFd fd, std::shared_ptr<const Route> route);
  /// Ends the connections and flows of the rules in `removed` ("PIF RULE-TEXT"
  /// lines, sorted): a commit's endRemovedFlows.
  void end_removed_flows(const std::vector<std::string>& removed) noexcept;

  EventLoop& loop_;
  Forwarder& forwarder_;
  UdpForwarder& udp_;
  BrokerClient& broker_;
  BrokerInfo info_;
  CommitFacts facts_;  // what every commit is checked against
  AuditLog& audit_;
  BindPolicy bind_policy_;
  TargetPolicy target_policy_;
  TableSet tables_;
  uint64_t generation_ = 0;
  Sha256Digest digest_{};
  std::vector<Installed> installed_;  // sorted by key
  std::deque<Job> queue_;
  std::optional<Active> active_;
  std::deque<control::HistoryEntry> history_;
  /// The routes of the tables in force, [pif][rule]; a kept rule's new route
  /// takes over its counters.
  std::vector<std::vector<std::shared_ptr<const Route>>> routes_;
};

}  // namespace sluice
