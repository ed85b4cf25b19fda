// The plain C++ control messages between sluicectl and sluice-worker:
// requests, responses, tables, failures, commit results, history and stats.
// No Cap'n Proto here: policy/ returns control::Failure directly, and only
// schema/codec.* turns these values into control.capnp frames and back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/sha256.h"
#include "schema/model.h"

namespace sluice::control {

/// The protocol version this build speaks (control.capnp protocolVersion).
inline constexpr uint32_t kProtocolVersion = 1;

struct PifInfo {
  Pif pif = Pif::kHost;
  std::string name;
  bool operator==(const PifInfo&) const = default;
};

struct ServerHello {
  uint32_t protocol_version = kProtocolVersion;
  std::string server_version;
  ServerCaps caps;
  uint32_t rules_per_table = 0;
  uint32_t listeners_per_table = 0;
  uint32_t message_bytes = 0;
  std::vector<PifInfo> pifs;
  uint16_t ephemeral_first = 0;
  uint16_t ephemeral_last = 0;
  /// HOST rules connect in a target namespace (sluiced --netns): their
  /// targets, the default one included, are the namespace's, never sluice's
  /// own listeners.
  bool target_namespace = false;
  bool operator==(const ServerHello&) const = default;
};

struct ClientHello {
  uint32_t protocol_version = kProtocolVersion;
  std::string client_version;
  bool operator==(const ClientHello&) const = default;
};

struct GetState {
  bool operator==(const GetState&) const = default;
};

/// A commit that waits for `sluicectl --confirm` (control.capnp PendingConfirm).
struct PendingConfirm {
  uint64_t generation = 0;           // the applied commit that waits
  uint64_t rollback_generation = 0;  // the generation whose tables come back
  int64_t deadline_unix_millis = 0;  // when the rollback starts (UTC)
  uint64_t remaining_millis = 0;     // until then, when the reply was made
  int32_t pid = 0;                   // who committed it
  uint32_t uid = 0;
  bool operator==(const PendingConfirm&) const = default;
};

struct State {
  uint64_t generation = 0;
  Sha256Digest digest{};
  TableSet tables;
  /// The commit that waits for confirmation, if any.
  std::optional<PendingConfirm> pending_confirm;
  /// Ports of best-effort rules of `tables` that do not listen (their bind
  /// failed at the last commit); a commit of the same tables retries them.
  uint32_t unbound = 0;
  bool operator==(const State&) const = default;
};

/// Why the server refused a client and closed the connection
/// (control.capnp ErrorCode; the codec checks that the ordinals agree).
enum class ErrorCode {
  kMalformed,
  kUnsupportedVersion,
  kUnknownRequest,
  kNotPermitted,
  kTooLarge,
  kOutOfOrder,
  kTimeout,
  kBusy,  // too many control clients are connected; the client may try again
};

struct ProtocolError {
  ErrorCode code = ErrorCode::kMalformed;
  std::string message;
  bool operator==(const ProtocolError&) const = default;
};

/// Limit: bytes of a commit comment. One line of prose for the audit record;
/// longer texts are malformed.
inline constexpr size_t kMaxCommentBytes = 1024;
/// Limit: history entries kept and returned. Enough to review a busy day of
/// pushes in `sluicectl --history`; the audit log keeps everything.
inline constexpr uint32_t kMaxHistory = 256;
/// Limit: rule texts of each list (added, removed) of one history entry. A
/// commit may add and remove thousands of rules: 256 entries with every rule
/// would be hundreds of MiB, far over the 4 MiB message, and the worker would
/// keep them all. With 16, and a last text saying how many more there were
/// ("(N more rules not kept: ...)"; no rule text starts with "("), 256
/// entries of the longest rule texts and comments stay under 3 MiB (a test
/// checks this). The table itself is identified by its digest.
inline constexpr size_t kMaxHistoryRules = 16;
/// Limit: failures reported for one commit. A table of 4096 rules can fail on
/// every rule; beyond that the list is cut and the last entry says so.
inline constexpr size_t kMaxFailures = 4096;

/// Limit: seconds a confirmed commit may wait for `sluicectl --confirm`. A
/// day covers any maintenance window; a longer wait is a commit nobody will
/// confirm, and it would refuse every other commit meanwhile.
inline constexpr uint32_t kMaxConfirmWithinSeconds = 86400;

struct CommitRequest {
  TableSet tables;
  uint64_t expected_generation = 0;
  bool dry_run = false;
  std::string comment;
  bool end_removed_flows = false;
  /// 0: an ordinary commit. Otherwise the commit is rolled back (a new
  /// commit of the tables before it) unless confirmed within this many
  /// seconds, 1 to kMaxConfirmWithinSeconds.
  uint32_t confirm_within_seconds = 0;
  bool operator==(const CommitRequest&) const = default;
};

/// A request to confirm the commit that waits (sluicectl --confirm).
struct ConfirmRequest {
  bool operator==(const ConfirmRequest&) const = default;
};

/// The answer to a ConfirmRequest.
struct ConfirmResult {
  bool confirmed = false;   // a pending commit was confirmed now
  uint64_t generation = 0;  // the generation confirmed, or the one in force
  std::string message;      // what happened, one line (why nothing was confirmed)
  bool operator==(const ConfirmResult&) const = default;
};

struct HistoryRequest {
  uint32_t limit = 0;
  bool operator==(const HistoryRequest&) const = default;
};

/// kConfirmPending: a commit that waits for `sluicectl --confirm` refuses
/// every other commit until it is confirmed or rolled back.
enum class FailureKind {
  kInvalid,
  kConflict,
  kPolicyDenied,
  kBindFailed,
  kCapacity,
  kStale,
  kConfirmPending,
};

/// One reason a commit failed: which rule, which port, which errno, and a
/// complete message saying what failed, why, and what to do.
struct Failure {
  FailureKind kind = FailureKind::kInvalid;
  Pif pif = Pif::kHost;
  int32_t rule = -1;  // index in its table, -1 when not about one rule
  std::string text;   // the rule in listing format, empty when rule is -1
  uint16_t port = 0;  // 0 when not about one port
  int32_t err = 0;    // errno, 0 when not a syscall's failure
  std::string message;
  int32_t other_rule = -1;  // the other rule of a conflict (same table), else -1
  bool operator==(const Failure&) const = default;
};

struct CommitResult {
  bool applied = false;
  bool dry_run = false;
  uint64_t generation = 0;
  Sha256Digest digest{};
  uint32_t kept = 0;
  uint32_t opened = 0;
  uint32_t closed = 0;
  uint32_t rebound = 0;
  std::vector<Failure> failures;
  uint64_t duration_micros = 0;
  /// Failures in all, past the kMaxFailures that `failures` lists; 0 from
  /// a server that does not send it (count `failures` then).
  uint32_t failure_count = 0;
  /// Ports of best-effort and auto-scan rules that did not bind, each as a
  /// failure (the commit applies without them); at most kMaxFailures.
  std::vector<Failure> warnings;
  bool operator==(const CommitResult&) const = default;
};

enum class Outcome { kApplied, kRejected, kDryRun, kStale };

struct HistoryEntry {
  uint64_t sequence = 0;
  int64_t unix_millis = 0;
  int32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string comment;
  Outcome outcome = Outcome::kApplied;
  uint64_t generation_before = 0;
  uint64_t generation_after = 0;
  std::vector<std::string> added;
  std::vector<std::string> removed;
  uint32_t kept = 0;
  uint32_t opened = 0;
  uint32_t closed = 0;
  uint32_t rebound = 0;
  uint32_t failures = 0;
  uint64_t duration_micros = 0;
  bool operator==(const HistoryEntry&) const = default;
};

struct History {
  std::vector<HistoryEntry> entries;
  bool operator==(const History&) const = default;
};

/// A request for the counters of every rule.
struct StatsRequest {
  bool operator==(const StatsRequest&) const = default;
};

/// An inclusive run of ports, first <= last (control.capnp PortRange).
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
  bool operator==(const PortRange&) const = default;
};

/// Limit: runs in one rule's scanActive. Runs are disjoint and increasing and
/// hold at least one port each, so no rule has more than there are ports; a
/// longer list is malformed.
inline constexpr size_t kMaxPortRuns = kMaxPort;

/// Counters of one rule since it entered the tables (control.capnp RuleStats).
struct RuleStats {
  Pif pif = Pif::kHost;
  Proto proto = Proto::kTcp;
  uint32_t rule = 0;
  std::string text;
  uint64_t accepted = 0;
  uint64_t active = 0;
  uint64_t failed = 0;
  uint64_t bytes_to_target = 0;
  uint64_t bytes_to_client = 0;
  uint64_t flows_active = 0;
  uint64_t flows_created = 0;
  uint64_t datagrams_to_target = 0;
  uint64_t datagrams_to_client = 0;
  uint64_t dropped = 0;
  uint64_t loops = 0;  // came from sluice itself (a loop): TCP connections reset, datagrams dropped
  /// An auto-scan rule's ports listening now, in increasing disjoint runs;
  /// nullopt for a rule without auto-scan.
  std::optional<std::vector<PortRange>> scan_active;
  /// An auto-scan rule's ports bound on the side it follows that it could
  /// not listen on at the last try, each as a failure saying why.
  std::vector<Failure> scan_failing;
  uint64_t paused_rule_limit = 0;    // listener pauses at the rule's limit or fair share
  uint64_t paused_global_limit = 0;  // listener pauses at the global limit
  uint64_t refused_source = 0;       // connections reset at the per-source limit
  uint64_t closed_idle = 0;          // connections reset by the idle timeout
  uint64_t target_errors = 0;        // UDP: ICMP errors from the target (closed, unreachable)
  bool operator==(const RuleStats&) const = default;
};

/// The answer to a StatsRequest.
struct Stats {
  uint64_t generation = 0;
  uint64_t uptime_millis = 0;
  std::vector<RuleStats> rules;
  uint64_t connections_active = 0;
  uint64_t connection_limit = 0;
  uint64_t flows_active = 0;
  uint64_t flow_limit = 0;
  uint64_t listeners = 0;
  uint64_t paused_listeners = 0;
  uint32_t pipe_size = 0;                    // bytes per splice pipe
  uint32_t connect_timeout_seconds = 0;      // a TCP target's handshake deadline
  uint32_t udp_idle_timeout_seconds = 0;     // a UDP flow ends after this long idle
  uint64_t audit_lines_lost = 0;             // audit lines not written whole
  uint64_t audit_bytes_waiting = 0;          // audit bytes the sink has not taken yet
  uint32_t idle_timeout_seconds = 0;         // TCP idle timeout; 0: off
  uint64_t connection_limit_per_rule = 0;    // 0: the fair share only
  uint64_t connection_limit_per_source = 0;  // 0: off
  uint64_t connection_share = 0;             // slots each TCP rule may always use now
  uint64_t connection_reserve = 0;           // free slots a rule past its share may not take
  uint64_t sources_active = 0;               // sources holding connections now
  /// Commit attempts since the worker started, by outcome (pesto updates
  /// included; auto-scan jobs are not commits).
  uint64_t commits_applied = 0;
  uint64_t commits_rejected = 0;
  uint64_t commits_dry_run = 0;
  uint64_t commits_stale = 0;
  /// Automatic rollbacks of unconfirmed commits (counted in commits_applied too).
  uint64_t rollbacks = 0;
  /// Policy reloads put in force since the worker started (sluiced's SIGHUP).
  uint64_t policy_reloads = 0;
  /// The rules in force that the policy in force no longer lets pass (after
  /// a reload), one failure each, at most kMaxFailures; they keep forwarding.
  std::vector<Failure> policy_failures;
  /// The commit that waits for confirmation, if any.
  std::optional<PendingConfirm> pending_confirm;
  /// Lines of the worker's log a sink that pushed back dropped (its stderr
  /// not read fast enough): connection log lines among them.
  uint64_t log_lines_dropped = 0;
  bool connection_log = false;  // --log-connections
  /// TCP connections each data-path thread served since the worker
  /// started (accepted and kept, or handed to it), the main thread first
  /// (--data-threads).
  std::vector<uint64_t> threads_accepted;
  /// The process `sluiced --netns PID` named has exited (the container
  /// stopped); false without --netns PID.
  bool target_exited = false;
  bool operator==(const Stats&) const = default;
};

/// The server's answer to an accepted client hello.
struct Welcome {
  bool operator==(const Welcome&) const = default;
};

struct Request {
  uint64_t id = 0;
  std::variant<ClientHello, GetState, CommitRequest, HistoryRequest, StatsRequest, ConfirmRequest>
      body;
  bool operator==(const Request&) const = default;
};

struct Response {
  uint64_t id = 0;
  std::variant<ServerHello, State, ProtocolError, CommitResult, History, Welcome, Stats,
               ConfirmResult>
      body;
  bool operator==(const Response&) const = default;
};

/// Limit: bytes of a version string or error message accepted from a peer.
/// Longer texts are a malformed message (they only ever hold a line of prose).
inline constexpr size_t kMaxTextBytes = 1024;

/// Returns "invalid", "conflict", "policy-denied", "bind-failed", "capacity"
/// "stale-generation" or "confirm-pending".
const char* failure_kind_name(FailureKind kind) noexcept;
/// Returns "applied", "rejected", "dry-run" or "stale".
const char* outcome_name(Outcome outcome) noexcept;

/// Returns a short name for an error code ("malformed", "unsupported-version",
/// ..., "busy"), or "unknown" for a value outside the enum.
const char* error_code_name(ErrorCode code) noexcept;

}  // namespace sluice::control
