// The commit engine: the worker's tables in force, and the one place that
// changes them. A commit is all or nothing and hitless:
//
//   validate -> compare-and-swap on the generation -> plan keep/open/close
//   -> acquire new sockets from the broker (pipelined, from the event loop)
//   -> on any failure: close what was acquired; the old table never stopped
//   -> swap: re-point kept sockets, serve new ones, bump the generation
//   -> release: drain each closing listener's accept queue, then close it
//
// Auto-scan (sluiced --netns): a scan rule listens on a port only while its
// target port is bound on the side it connects to (worker/port_scan.h): the
// target namespace for HOST rules, sluiced's side for SPLICE rules. About
// once a second the engine reads which ports are bound there (leaving out
// sluice's own listeners on that side); when that
// changes what the scan rules need, it queues a scan job behind any commit.
// A scan job is internal, not a client's commit: it runs through the same
// states (Checking plans only the scan rules' sockets; Acquiring asks the
// broker, pipelined; Installing serves the new sockets and drains and closes
// the old), but it keeps the tables, the generation and the digest, writes
// no audit line or history entry, answers nobody, and never fails: a port
// that cannot be bound is logged (rate-limited) and tried at the next scan.
// A commit plans its scan rules on the ports bound at that moment.
//
// Opens that clash in the kernel with a closing socket (0.0.0.0:80 giving way
// to 127.0.0.1:80) are rebinds. They are acquired after the other opens, with
// wire::kListenerReplaces: sluiced lets each share its port (SO_REUSEPORT,
// which the kernel admits only among sockets of one owner) with the
// listeners it replaces, which keep listening until the swap drains and
// closes them. So a rebind never leaves its port without a listener, no
// other user's process can take the port in between, and a rebind that
// fails rolls back like any open: the old listeners never stopped. Rebinds
// are counted and reported.
//
// The engine is an explicit state machine. Every change of state goes through
// one table of transitions (state, event) -> next state, with the handler
// that runs on the way; an event the table does not allow in the current
// state is a bug and CHECK-fails. Handlers that wait (for the broker, or for
// the next slice between data events) return; the broker's callback or the
// next tick fires the next event.
//
//     submit(),   +------+
//     scan job -->| Idle |<-------------------------------------------------+
//                 +------+                                                  |
//                    | Submitted                                            |
//                    v                                                      |
//              +----------+  Stale, Refused                                 |
//              | Checking |------------------------------------+            |
//              +----------+                                    |            |
//                    | Planned                                 |            |
//                    v                                         v            |
//              +-----------+  TrialBound, OpenFailed     +-----------+      |
//              | Acquiring |---------------------------->| Finishing |------+
//              +-----------+                             +-----------+ Replied
//          Opened |     | Clashes          RebindFailed  ^       ^ Installed
//                 |     v                                  |       |
//                 |  +-----------+                         |       |
//                 |  | Rebinding |-------------------------+       |
//                 |  +-----------+                                 |
//                 |     | Rebound                                  |
//                 v     v                                          |
//              +------------+ Tick                                 |
//              | Installing |-----+                                |
//              +------------+<----+                                |
//                    |                                             |
//                    +---------------------------------------------+
//
//     Idle, Acquiring, Rebinding, Installing
//        --BrokerLost--> Stopped (final: the broker is gone, the worker stops)
//
// Checking and Finishing never wait: a commit passes through them within one
// call. A scan job only ever takes Planned, Opened (or Clashes, Rebound,
// RebindFailed: never in practice, since the keys of one valid table set do
// not clash), Tick, Installed and Replied. Acquiring and Rebinding wait for
// the broker (BrokerClient::open_listeners completes them by callback);
// Installing works in slices, one per loop iteration, so that a 10,000-port
// commit never holds traffic up. The engine never reads the broker channel
// itself.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "policy/bind_policy.h"
#include "policy/check_commit.h"
#include "policy/policy_file.h"
#include "policy/target_policy.h"
#include "schema/codec.h"
#include "worker/audit.h"
#include "worker/broker_client.h"
#include "worker/commit_acquisition.h"
#include "worker/commit_plan.h"
#include "worker/commit_record.h"
#include "worker/confirm_state.h"
#include "worker/event_loop.h"
#include "worker/fd_budget.h"
#include "worker/forwarder.h"
#include "worker/port_scan.h"
#include "worker/refusal_audit.h"
#include "worker/udp_forwarder.h"

namespace sluice {

/// Limit: how long the listener a rebind replaces serves on after it stops
/// taking new handshakes (Listener::quiesce), before it is drained and
/// closed. A handshake under way completes within a round trip, in the
/// kernel; 100 ms covers that many times over on a loaded host, so that
/// none completes into a queue just closed (a reset). The commit's reply
/// waits for it: the engine looks again at each tick (250 ms), so a commit
/// with rebinds takes 100 to 350 ms longer; one without takes no longer.
inline constexpr uint64_t kRebindSettleNs = 100'000'000;

class CommitEngine final : public Ticker {
 public:
  using Done = std::function<void(const control::CommitResult&)>;

  /// The states of the engine (see the diagram above).
  enum class State : uint8_t {
    kIdle,        // no commit runs; the next queued one starts at once
    kChecking,    // compare-and-swap, check_commit, plan (never waits)
    kAcquiring,   // the new sockets (plan.open) are asked of the broker
    kRebinding,   // the rebind sockets are asked of the broker, sharing their ports
    kInstalling,  // swapped: new sockets served, old ones released, in slices
    kFinishing,   // the record is written and the client answered (never waits)
    kStopped,     // the broker is gone; the worker stops
  };

  /// What moves the engine from one state to the next.
  enum class Event : uint8_t {
    kSubmitted,     // a commit is queued and the engine is idle
    kStale,         // the commit names another generation than the current one
    kRefused,       // check_commit found failures
    kPlanned,       // the plan is made
    kTrialBound,    // a dry run's sockets are all answered
    kOpenFailed,    // the broker answered every open, and a rule fails
    kOpened,        // every open is answered, no rule fails, and nothing clashes
    kClashes,       // as kOpened, and there are rebinds to acquire
    kTick,          // the next slice of sliced work
    kRebound,       // every rebind is answered, and no rule fails
    kRebindFailed,  // every rebind is answered, and a rule fails
    kInstalled,     // every new socket is served and every old one released
    kReplied,       // the record is written and the client answered
    kBrokerLost,    // the broker channel ended (EOF, failed send, bad reply)
  };

  /// The engine starts with empty tables at generation 0, in state kIdle.
  /// Broker requests go through `broker`; its loss must be reported with
  /// on_broker_lost().
  CommitEngine(EventLoop& loop, Forwarder& forwarder, UdpForwarder& udp, BrokerClient& broker,
               BrokerInfo info, ServerCaps caps, AuditLog& audit);
  ~CommitEngine() override;

  /// Registers the engine as a ticker of the loop (its sliced work runs there).
  void start();

  /// Sets the administrator's policy: `bind` carries the file's bind lines
  /// (pre-checked before asking the broker, so that a denial names its
  /// line; the broker enforces them regardless), `target` is enforced on
  /// every commit. Both default to allowing everything.
  void set_policy(BindPolicy bind, TargetPolicy target) {
    bind_policy_ = std::move(bind);
    target_policy_ = std::move(target);
  }

  /// Puts a reloaded policy (`file`, PolicyReload from sluiced, who sent it
  /// as `peer`) in force for the next commit (set_policy), re-checks the
  /// tables in force against it (policy_failures()), logs each rule that no
  /// longer passes (such rules keep forwarding), and writes one audit line:
  /// a dry-run record by `peer` whose comment names the file and whose
  /// failures are those rules. No history entry, no generation change.
  /// Defined in policy_recheck.cc. Needs `write` (audit).
  void reload_policy(const PolicyFile& file, const struct ucred& peer);
  /// Records a policy reload that failed (sluiced could not read or parse
  /// the file, or the worker could not take the text it sent; the caller
  /// logs it): writes one audit line, a rejected record by `peer` whose comment names
  /// `source` and says that the policy loaded before stays in force, with one
  /// `invalid` failure carrying `error`. Nothing else changes: no history
  /// entry, no generation. Defined in policy_recheck.cc. Needs `write`.
  void reload_failed(const std::string& source, const std::string& error, const struct ucred& peer);
  /// The rules in force that the policy in force no longer lets pass, one
  /// failure each (recheck_policy); empty until a reload. Never fails.
  std::vector<control::Failure> policy_failures() const;
  /// Reloaded policies put in force since the worker started.
  uint64_t policy_reloads() const noexcept { return policy_reloads_; }
  /// sluiced said the process --netns named has exited (TargetExited):
  /// stats() reports it from now on.
  void set_target_exited() noexcept { target_exited_ = true; }

  /// Queues a commit from the client `peer`. Commits run one at a time, in
  /// order; `done` is called with the result from the event loop (or before
  /// submit() returns, when no broker round trip is needed). After the
  /// broker is lost, commits are queued and never run.
  void submit(control::CommitRequest request, struct ucred peer, Done done);
  /// Queues an attempt that its transport already refused (a malformed pesto
  /// update, a commit the control policy refuses): it is recorded like a
  /// refused commit, outcome rejected, in order with the others (audit line,
  /// history entry with `comment` and `failures`, `done`), and never checked
  /// or applied. Within the bound of worker/refusal_audit.h: an attempt past
  /// it is only counted (`done` is not called), and the next record's
  /// comment, or a summary record at a later tick, says how many. A
  /// `comment` past control::kMaxCommentBytes is cut to it, ending in "...".
  void submit_refused(struct ucred peer, std::string comment,
                      std::vector<control::Failure> failures, Done done);
  /// Refused attempts held back by that bound and not recorded yet.
  uint64_t refusals_held_back() const noexcept { return refusals_.held_back(); }

  /// The broker channel ended: logs why, closes the sockets the commit in
  /// progress acquired and did not publish, drops that commit unanswered
  /// (the worker exits, and its client sees the connection close), and
  /// stops the loop. The engine is kStopped afterwards.
  void on_broker_lost(const BrokerLoss& loss) noexcept;

  /// Runs the next slice of a commit's socket work (release, install), and
  /// queues the summary record of refused attempts held back, when due.
  void on_tick(uint64_t now_ns) noexcept override;

  State state() const { return state_; }
  /// True when no commit runs and none waits: the tables in force are the
  /// ones the next commit starts from.
  bool quiet() const { return state_ == State::kIdle && queue_.empty(); }
  /// Why the broker was lost (empty unless state() is kStopped).
  const std::string& broker_loss() const { return broker_loss_; }
  const TableSet& tables() const { return tables_; }
  /// Ports of best-effort rules of the tables in force that do not listen:
  /// their bind failed at the last applied commit for a reason that may pass
  /// (not the bind policy, not the privileged port limit) (State.unbound).
  uint32_t unbound() const { return unbound_; }
  uint64_t generation() const { return generation_; }
  const Sha256Digest& digest() const { return digest_; }
  size_t listener_count() const { return installed_.size(); }
  const ServerCaps& caps() const { return facts_.caps; }
  /// What check_commit is told about this server.
  const CommitFacts& facts() const { return facts_; }
  /// Sets the worker's RLIMIT_NOFILE (HostFacts::fd_limit): every commit
  /// and dry run is checked against the descriptor budget before the broker
  /// is asked (worker/fd_budget.h). 0, the default, checks nothing.
  void set_fd_limit(uint64_t limit) { fd_limit_ = limit; }
  /// What the worker holds now, as the descriptor budget counts it.
  FdUse fd_use() const noexcept;
  /// Records that HOST rules connect in a target namespace (sluiced --netns):
  /// their targets are then never sluice's own listeners, so no loop check.
  void set_target_namespace(bool in_namespace) { facts_.targets_share_namespace = !in_namespace; }
  /// Gives the engine the reader of the target namespace's bound ports,
  /// which HOST scan rules follow (not owned; it outlives the engine).
  /// Without one, a HOST auto-scan rule listens on no port (check_commit
  /// refuses them anyway: caps.scan is false).
  void set_scanner(PortScanner* scanner) { scanner_ = scanner; }
  /// Gives the engine the reader of sluiced's side's bound ports, which
  /// SPLICE scan rules follow (not owned; it outlives the engine). Without
  /// one, a SPLICE auto-scan rule listens on no port.
  void set_host_scanner(PortScanner* scanner) { host_scanner_ = scanner; }
  /// What each table's scan rules saw at the last scan, sluice's own
  /// listeners left out.
  const PifPorts& scan_bound() const { return scan_.bound; }
  /// The last `limit` commit attempts, oldest first.
  control::History history(uint32_t limit) const;
  /// The counters of every rule in force and the data path's totals and
  /// limits; `uptime_millis` is the worker's.
  control::Stats stats(uint64_t uptime_millis) const;

  // Worker restarts (commit_resume.cc, docs/ARCHITECTURE.md "Worker restarts").
  /// Takes the listeners a dead worker held (BrokerClient::resume()): until
  /// the first commit applies, a key asked for is taken from them instead
  /// of from sluiced; what is left then is closed.
  void adopt(std::vector<std::pair<ListenerKey, UniqueFd>> listeners);
  /// The next commit that applies sets the generation to `generation` (the
  /// dead worker's, from its state blob) instead of bumping it; nullopt
  /// cancels that.
  void resume_at(std::optional<uint64_t> generation) { resume_generation_ = generation; }
  /// This worker replaces one that died (sluiced's hello says so): until a
  /// commit applies, sluiced keeps the state the dead worker stored, and a
  /// refused commit keeps what it acquired for the next (store_state,
  /// set_aside).
  void begin_takeover() noexcept { taking_over_ = true; }
  /// Listeners adopted and not yet used.
  size_t adopted() const noexcept { return adopted_.size(); }

  // Confirmed commits (commit_confirm.cc, worker/confirm_state.h).
  /// Confirms the commit that waits for confirmation, for the client `peer`
  /// (the control server has checked its commit access). Logs what happened;
  /// the result says it (nothing waits, too late, confirmed).
  control::ConfirmResult confirm(const struct ucred& peer) noexcept;
  /// The commit that waits for confirmation now, if any (state and stats).
  std::optional<control::PendingConfirm> pending_confirm() const noexcept;
  /// The resume commit that just applied was the automatic rollback of
  /// generation `unconfirmed`, which waited for confirmation when the worker
  /// before died: a confirm is told so, and the stats count the rollback.
  void note_resume_rollback(uint64_t unconfirmed) noexcept;
  /// The confirmation state machine, for tests.
  const ConfirmState& confirmation() const noexcept { return confirm_; }

  /// Returns the state the transition table leads to from `from` on `event`,
  /// or nothing when the table does not allow that event there.
  static std::optional<State> next_state(State from, Event event) noexcept;
  /// Returns the name of a state ("Idle", "Acquiring", ...), for logs.
  static const char* state_name(State state) noexcept;
  /// Returns the name of an event ("Submitted", "Opened", ...), for logs.
  static const char* event_name(Event event) noexcept;

 private:
  using Handler = void (CommitEngine::*)() noexcept;
  /// One row of the transition table.
  struct Transition {
    State from;
    Event event;
    State to;
    Handler handler;  // runs once the state is `to`
  };
  /// The transition table: every change of state the engine may make.
  static const Transition kTransitions[];

  struct Job {
    control::CommitRequest request;  // a scan job's tables are the ones in force when it starts
    struct ucred peer;
    Done done;
    bool scan = false;      // an internal scan job (auto-scan), not a client's commit
    bool rollback = false;  // the automatic rollback of an unconfirmed commit
    // Failures found before the engine (submit_refused): the job is recorded
    // as rejected with them, and never checked or applied.
    std::vector<control::Failure> refused;
  };
  /// One socket in force, the key it was opened for, and its rule.
  struct Installed {
    ListenerKey key;
    Listener* listener;   // a TcpListener or a UdpListener, as key.proto says
    KeyOrigin origin;     // the rule of the tables in force it serves
    uint64_t cookie = 0;  // its SO_COOKIE: how sluiced's escrow names it (StoreState)
  };
  /// The watch over listeners bound to an interface (commit_interfaces.cc).
  struct InterfaceWatch {
    size_t cursor = 0;                // the next entry of installed_ to look at
    uint64_t next_ns = 0;             // when the next look is due
    std::vector<ListenerKey> stale;   // keys whose socket lost its interface, sorted
    std::vector<ListenerKey> failed;  // those whose new socket failed last time, sorted
    uint64_t next_fail_log_ns = 0;    // when the same failures may be logged again
    LogRateLimit log{10, 1};          // the info line of each re-bound listener
  };
  /// Auto-scan's state (commit_scan.cc).
  struct ScanState {
    PifPorts raw;          // per table, the ports bound on the side it follows, at the last read
    PifPorts bound;        // raw without sluice's own listeners there (scan_view)
    PifPorts watched;      // the target ports the scan rules of tables_ watch
    PifPorts applied;      // bound & watched when the listeners in force were planned
    bool active = false;   // the tables in force have a scan rule
    bool retry = false;    // a scan port failed to bind: plan again at the next scan
    bool queued = false;   // a scan job waits in queue_
    uint64_t next_ns = 0;  // when the next scan is due
    LogRateLimit change_log{10, 1};     // the info line of each scan change
    LogRateLimit fail_log{5, 1};        // scan ports that failed to bind
    std::vector<ListenerKey> failing;   // the scan keys that failed to bind last time, sorted
    std::vector<control::Failure> why;  // why each port of a scan rule failed then (--stats)
    size_t budget_cut = 0;              // ports the last scan left out: no descriptor room
    uint64_t next_budget_log_ns = 0;    // when the same cut may be logged again
    uint64_t next_repeat_log_ns = 0;    // when the same failures may be logged again
  };
  /// The commit in progress.
  struct Active {
    Job job;
    uint64_t start_ns = 0;
    CommitPlan plan;
    Acquisition opens;                        // plan.open
    Acquisition rebinds;                      // plan.rebind
    std::vector<control::Failure> failures;   // collected for the record
    std::vector<control::Failure> warnings;   // ports of rules that do not fail (judge)
    std::vector<std::string> added, removed;  // the requested diff, for the record
    TableSet tables_before;                   // a confirmed commit's rollback tables
    // Sliced work: listeners to release (indices into installed_), new
    // sockets to serve, and the table of listeners being built.
    std::vector<size_t> to_release;
    size_t released = 0;
    // The listeners the rebinds replace: quiesced at the swap, released
    // once settle_until_ns has passed (kRebindSettleNs).
    std::vector<size_t> to_release_settled;
    uint64_t settle_until_ns = 0;
    bool handed_over = false;  // the UDP ones handed their flows over (hand_over)
    size_t install_acq = 0;    // 0: opens, 1: rebinds
    size_t install_next = 0;
    // Ports of best-effort rules that did not open (opens, rebinds): the
    // counts of what the commit opened and rebound leave them out.
    uint32_t not_opened[2] = {0, 0};
    std::vector<Installed> next_installed;
    // Indices into next_installed of its UDP listeners, by table and port,
    // for udp_successors; built when first needed, once all are installed.
    std::vector<size_t> udp_by_port;
    bool udp_by_port_built = false;
    // Indices into installed_ of the UDP listeners of plan.clashing, by
    // table and port, for udp_predecessors; built when first needed.
    std::vector<size_t> udp_clashing;
    bool udp_clashing_built = false;
    std::vector<std::vector<std::shared_ptr<const Route>>> routes;
    uint64_t generation_before = 0;
    Sha256Digest digest_before{};
    PifPorts scan_seen;                     // bound & watched ports the plan was made on
    std::vector<ListenerKey> scan_failing;  // keys of scan rules that failed, sorted
    bool scan_retry = false;                // one failed with an errno: worth another try
    std::vector<ListenerKey> scan_closing;  // a scan job's closing keys, for its log line
    // Listeners whose interface was removed or re-created, bound anew by a
    // scan job (commit_interfaces.cc): their keys, sorted, each with the
    // index in installed_ of the stale socket it replaces.
    std::vector<std::pair<ListenerKey, size_t>> rebound_stale;
  };
  /// What the broker's answers are handed to.
  using Answered = void (CommitEngine::*)(std::vector<OpenedListener>) noexcept;

  /// Moves the engine along the row for (state_, event) and runs its
  /// handler; CHECK-fails when the table has no such row.
  void fire(Event event) noexcept;

  // Transition handlers, one per row group of the table (commit_engine.cc).
  /// Idle -> Checking: takes the next job; compare-and-swap, check, plan.
  void check() noexcept;
  /// Checking -> Finishing on Stale: answers stale-generation.
  void finish_stale() noexcept;
  /// Checking -> Finishing on Refused: answers the check's failures.
  void finish_refused() noexcept;
  /// Checking -> Acquiring: asks the broker for the opens.
  void acquire_opens() noexcept;
  /// Acquiring -> Finishing on TrialBound: closes the trial binds.
  void discard_trial() noexcept;
  /// Acquiring -> Finishing on OpenFailed: rolls the opens back.
  void roll_back_opens() noexcept;
  /// Acquiring -> Rebinding: asks the broker for the rebinds, each sharing
  /// its port with the listeners it replaces (wire::kListenerReplaces).
  void acquire_rebinds() noexcept;
  /// Rebinding -> Finishing on RebindFailed: closes the rebinds and opens
  /// acquired; the listeners in force never stopped serving.
  void roll_back_rebinds() noexcept;
  /// Acquiring or Rebinding -> Installing: swaps the tables, then installs
  /// the first slice.
  void swap_tables() noexcept;
  /// Installing -> Installing on Tick: one slice of installs and releases.
  void install_slice_step() noexcept;
  /// Installing -> Finishing: the new listener table takes over; removed
  /// rules' flows end when asked.
  void finish_applied() noexcept;
  /// Finishing -> Idle: stops the engine when the broker was lost while it
  /// finished (BrokerLost from Idle), else starts the next queued commit.
  void start_next() noexcept;
  /// Any waiting state -> Stopped on BrokerLost.
  void stop_for_broker() noexcept;

  // Event sources: the broker's answers, judged into the event they make.
  /// The opens are answered: TrialBound, OpenFailed, Opened or Clashes.
  void opens_answered(std::vector<OpenedListener> results) noexcept;
  /// The rebinds are answered: Rebound or RebindFailed.
  void rebinds_answered(std::vector<OpenedListener> results) noexcept;

  /// Asks the broker for the asked keys of `acq`, and hands the answers to
  /// `answered`; with nothing to ask, hands it an empty answer at once.
  /// `replaces`: the keys are rebinds (wire::kListenerReplaces).
  void acquire(Acquisition& acq, Answered answered, bool replaces = false) noexcept;
  /// Takes the adopted listeners of the asked keys of `acq` into `results`
  /// (one per asked key, in order); returns the indices of the keys still to
  /// ask the broker for.
  std::vector<size_t> take_adopted(const Acquisition& acq,
                                   std::vector<OpenedListener>* results) noexcept;
  /// Closes the adopted listeners no commit used.
  void drop_adopted() noexcept;
  /// Takes back the sockets `acq` acquired for a refused commit: discards
  /// them (Acquisition::discard), but while taking over from a dead worker
  /// (a resume the policy now refuses, before the initial rules are tried)
  /// keeps them with the adopted listeners for the next commit: discard()
  /// would shut down a listener the dead worker held, and with it sluiced's
  /// copy, and a port in every table would refuse until the next commit
  /// bound it anew.
  void set_aside(Acquisition& acq) noexcept;
  /// Hands sluiced the state blob of the tables in force and the cookies of
  /// every listener in force, so that it lets go of its copies of every
  /// other. Nothing while taking over from a dead worker (begin_takeover),
  /// until a commit applies: until then sluiced keeps what the dead worker
  /// stored (its tables, its listeners), so a resume and initial rules that
  /// are both refused leave the next worker the same tables to try, not an
  /// empty table that would pass. A failure to build either memfd is logged
  /// (rate-limited); sluiced then keeps the last state. Needs what
  /// sealed_memfd() and socket_cookie() need.
  void store_state() noexcept;
  /// Writes the record of the active commit with `outcome`, answers its
  /// client, and fires Replied.
  void finish(control::Outcome outcome) noexcept;
  /// Flips to the new tables: re-points kept listeners, bumps the
  /// generation, and queues the new sockets to serve and the old ones to
  /// release (commit_sockets.cc).
  void swap() noexcept;
  /// Drains and closes up to `budget` listeners of a.to_release (indices into
  /// installed_); their entries keep the key with a null listener until the
  /// swap drops them. Returns true when all are released.
  bool release_slice(size_t* budget) noexcept;
  /// The UDP listeners of a.next_installed that take the port of the UDP
  /// listener keyed `key` (same table and port, another key): where its
  /// flows go on (UdpForwarder::hand_over). O(log n) after a sort of the
  /// new listeners the first time a commit asks; call it once all are
  /// installed.
  std::vector<UdpListener*> udp_successors(const ListenerKey& key) noexcept;
  /// The UDP listeners in force that the rebind keyed `key` replaces: those
  /// of plan.clashing on its table and port that clash with it in the kernel.
  /// O(log n) after a sort of plan.clashing the first time a commit asks.
  std::vector<UdpListener*> udp_predecessors(const ListenerKey& key) noexcept;
  /// Checking: the `capacity` failure that refuses the active commit because
  /// the new listeners of its plan do not fit the descriptor budget
  /// (check_fd_budget); nullopt when they fit (commit_sockets.cc).
  std::optional<control::Failure> check_descriptors() const;
  /// Acquiring or Rebinding: when sockets of `acq` were lost on the way (the
  /// descriptor table was full), logs it and adds the `capacity` failure
  /// that fails the commit, whatever its rules' kind; a scan job only logs
  /// (its ports are tried again at the next scan).
  void note_lost_sockets(const Acquisition& acq) noexcept;
  /// Serves up to `budget` acquired sockets; true when all are served.
  bool install_slice(size_t* budget) noexcept;
  /// Judges the rules of the active commit on everything acquired so far,
  /// and logs the failed ports of rules that do not fail (rate-limited in a
  /// scan job).
  std::vector<control::Failure> judge(bool with_rebinds);
  /// Starts serving the socket `fd` of `key` with `route`, on the data path
  /// of the key's protocol. Fails only if epoll refuses the fd.
  /// `predecessors`: a UDP rebind's listeners it replaces (udp_predecessors).
  Result<Listener*> serve(const ListenerKey& key, UniqueFd fd, std::shared_ptr<const Route> route,
                          std::vector<UdpListener*> predecessors = {});
  /// Ends the connections and flows of the rules in `removed` ("PIF RULE-TEXT"
  /// lines, sorted): a commit's endRemovedFlows.
  void end_removed_flows(const std::vector<std::string>& removed) noexcept;

  // Confirmed commits (commit_confirm.cc).
  /// Checking: the failure that refuses the active job because a commit
  /// waits for confirmation (not for a dry run, a scan or the rollback);
  /// nullopt when the job may go on. Keeps the rollback tables of a
  /// confirmed commit.
  std::optional<control::Failure> check_confirmation() noexcept;
  /// Finishing: arms the confirmation of a confirmed commit that applied,
  /// or records how the rollback ended (applied, or retried later).
  void note_confirmation(const CommitRecord& record) noexcept;
  /// Queues the rollback when the deadline has passed at `now_ns`.
  void confirm_tick(uint64_t now_ns) noexcept;

  // Listeners bound to an interface (commit_interfaces.cc).
  /// Looks, when due, at up to kInterfaceChecksPerTick listeners in force
  /// bound to an interface (`%IFNAME`) and queues a scan job when one has
  /// lost its interface (interface_lost): it binds them anew.
  void interface_tick(uint64_t now_ns) noexcept;
  /// In a scan job's plan: replaces each kept listener of interface_.stale
  /// that is still stale by a new socket of the same key (a close and an
  /// open): bound now, it takes the interface's new index.
  void plan_stale_rebinds() noexcept;
  /// When the broker answered a scan job's opens: a stale listener whose new
  /// socket failed (the interface is not back yet: ENODEV) stays as it is,
  /// kept instead of closed, and is tried again; the failure is logged once
  /// a minute, not judged. Logs the ones bound anew.
  void settle_stale_rebinds() noexcept;
  // Auto-scan (commit_scan.cc).
  /// Reads the bound ports when a scan is due and the tables have scan
  /// rules, and queues a scan job when the scan rules need other sockets
  /// than they have (or a scan port is to be tried again).
  void scan_tick(uint64_t now_ns) noexcept;
  /// Queues a scan job (scan_.queued until it starts) and starts it when the
  /// engine is idle.
  void queue_scan_job() noexcept;
  /// True when `f` names a port of an auto-scan rule of the tables in force.
  bool of_scan_rule(const control::Failure& f) const noexcept;
  /// Reads the bound ports of each side some table's scan rules watch in
  /// `watched` into scan_.raw (keeping a side's last ones when its read
  /// fails; the scanner logs it), then sets scan_.bound from them without
  /// the ports of sluice's own listeners in installed_. Needs `pread64`.
  void refresh_scan(const PifPorts& watched) noexcept;
  /// Checking, for a scan job: plans the scan rules' sockets on the ports
  /// bound now, and fires Planned.
  void plan_scan_job() noexcept;
  /// Leaves out of a scan job's opens those past the descriptor room
  /// (FdUse::room): a container may bind more ports than the worker can
  /// hold, and a scan that took the reserve would starve the control
  /// socket, commits and TCP accepts. They count as failing, are tried
  /// again at the next scan, and are logged once a minute while the cut
  /// stays the same. A scan rule never fails, so what fits is opened.
  void fit_scan_to_descriptors() noexcept;
  /// Notes in the active job the keys of scan rules that failed in `acq`,
  /// and whether one failed with an errno (worth another try; a policy
  /// denial is not).
  void note_scan_failures(const Acquisition& acq) noexcept;
  /// True when a scan job's bind failures should be logged now: they differ
  /// from the last job's, or the same ones were last logged
  /// kScanRepeatLogNs ago (a port taken on the host side fails at every scan).
  bool scan_failures_worth_logging() noexcept;
  /// After a job that applied: the listeners in force now reflect the ports
  /// the plan saw.
  void scan_applied() noexcept;
  /// Finishing, for a scan job: logs what changed (rate-limited) and fires
  /// Replied; no record, no history, no reply.
  void finish_scan_job(control::Outcome outcome) noexcept;
  /// The ports each scan rule listens on now, in runs, [pif][rule]; empty
  /// for other rules.
  std::vector<std::vector<std::vector<control::PortRange>>> scan_active() const;

  EventLoop& loop_;
  Forwarder& forwarder_;
  UdpForwarder& udp_;
  BrokerClient& broker_;
  BrokerInfo info_;
  CommitFacts facts_;  // what every commit is checked against
  AuditLog& audit_;
  BindPolicy bind_policy_;
  TargetPolicy target_policy_;
  uint64_t policy_reloads_ = 0;  // reload_policy() calls (stats)
  bool target_exited_ = false;   // set_target_exited() (stats)
  State state_ = State::kIdle;
  BrokerLoss loss_;                   // why the broker was lost, for stop_for_broker()
  bool broker_lost_pending_ = false;  // lost while Finishing: stop once answered
  std::string broker_loss_;           // the same reason, kept for broker_loss()
  TableSet tables_;
  uint64_t generation_ = 0;
  Sha256Digest digest_{};
  std::vector<Installed> installed_;  // sorted by key
  std::deque<Job> queue_;
  std::optional<Active> active_;
  std::deque<control::HistoryEntry> history_;
  /// Commit attempts finished since the worker started, [outcome] (stats).
  uint64_t outcomes_[static_cast<size_t>(control::Outcome::kStale) + 1] = {};
  /// The routes of the tables in force, [pif][rule]; a kept rule's new route
  /// takes over its counters.
  std::vector<std::vector<std::shared_ptr<const Route>>> routes_;
  PortScanner* scanner_ = nullptr;       // the target namespace's bound ports, or none
  PortScanner* host_scanner_ = nullptr;  // sluiced's side's bound ports, or none
  ScanState scan_;
  InterfaceWatch interface_;
  uint32_t unbound_ = 0;  // unbound()
  /// Limit: a commit that closes this many listeners (each about 250 bytes
  /// of heap, with its route and plan entries) returns the heap they held at
  /// the next tick (malloc_trim): a table of 10,000 ports emptied left the
  /// worker at its peak RSS. Smaller commits leave it to glibc, which trims
  /// the top of the heap by itself.
  static constexpr size_t kTrimAfterClosing = 1024;
  bool trim_pending_ = false;                  // a large commit's memory is to be returned
  ConfirmState confirm_;                       // the commit that waits for confirmation, if any
  std::map<ListenerKey, UniqueFd> adopted_;    // a dead worker's listeners, until used
  bool taking_over_ = false;                   // begin_takeover() until a commit applies
  std::optional<uint64_t> resume_generation_;  // the generation a resume commit takes
  LogRateLimit store_log_{5, 1};               // store_state() failures
  uint64_t fd_limit_ = 0;                      // RLIMIT_NOFILE; 0: no descriptor budget
  RefusalAudit refusals_;                      // the bound on records of refused attempts
  control::FailureKind held_back_kind_ = control::FailureKind::kPolicyDenied;  // the last held back
};

}  // namespace sluice
