// The audit line: one JSON object, then "\n" (docs/AUDIT.md specifies it).
// Each run of the worker writes a start record first (its run id, sluiced's
// ids, and its link to the file's last line before it), then one commit
// record per commit attempt. This is the format's one home. The worker renders
// lines with render_audit_line() (worker/audit.cc, which adds the sink and the
// chain; worker/audit_tail.cc parses the previous run's last line with
// parse_audit_line()), and `sluicectl --verify-audit` reads them back with
// parse_audit_line() (client/audit_verify.cc, which adds the checks across
// lines). All of them use the key names and values declared here.
//
// Target sluice_audit_format: base and the plain model only, no Cap'n Proto,
// so that the verifier needs no codec. Nothing here makes a syscall, so both
// sides may call it inside their seccomp sandboxes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/sha256.h"
#include "schema/model.h"

namespace sluice {

/// The keys of an audit line. Every line begins with kFormat, kSeq, kTime and
/// kRecord and ends with kPrev. Between them, a start record holds kRun, kPid,
/// kUid, kGid, kTail and kTailError; a commit record holds kOutcome to
/// kDurationMicros in the order of AuditLine's fields. A failure object holds
/// kKind to kMessage, in that order.
namespace audit_key {
inline constexpr std::string_view kFormat = "format";
inline constexpr std::string_view kSeq = "seq";
inline constexpr std::string_view kTime = "time";
inline constexpr std::string_view kRecord = "record";  // kAuditRecordStart or kAuditRecordCommit
inline constexpr std::string_view kRun = "run";
inline constexpr std::string_view kTail = "tail";
inline constexpr std::string_view kTailError = "tailError";
inline constexpr std::string_view kOutcome = "outcome";
inline constexpr std::string_view kPid = "pid";
inline constexpr std::string_view kUid = "uid";
inline constexpr std::string_view kGid = "gid";
inline constexpr std::string_view kComment = "comment";
inline constexpr std::string_view kGeneration = "generation";  // {"before","after"}
inline constexpr std::string_view kDigest = "digest";          // {"before","after"}
inline constexpr std::string_view kBefore = "before";
inline constexpr std::string_view kAfter = "after";
inline constexpr std::string_view kAdded = "added";
inline constexpr std::string_view kRemoved = "removed";
inline constexpr std::string_view kCounts = "counts";  // {"kept","opened","closed","rebound"}
inline constexpr std::string_view kKept = "kept";
inline constexpr std::string_view kOpened = "opened";
inline constexpr std::string_view kClosed = "closed";
inline constexpr std::string_view kRebound = "rebound";
inline constexpr std::string_view kFailures = "failures";
inline constexpr std::string_view kKind = "kind";
inline constexpr std::string_view kPif = "pif";
inline constexpr std::string_view kRule = "rule";
inline constexpr std::string_view kPort = "port";
inline constexpr std::string_view kErrno = "errno";
inline constexpr std::string_view kErrnoName = "errnoName";
inline constexpr std::string_view kMessage = "message";
inline constexpr std::string_view kDurationMicros = "durationMicros";
inline constexpr std::string_view kPrev = "prev";
}  // namespace audit_key

/// The `outcome` of a commit that changed the tables; the verifier follows
/// the generations from one such line to the next.
inline constexpr std::string_view kAuditApplied = "applied";
/// Every `outcome` a line may hold: control::outcome_name() of each
/// control::Outcome (tests/audit checks that the two agree).
inline constexpr std::array<std::string_view, 4> kAuditOutcomes = {kAuditApplied, "rejected",
                                                                   "dry-run", "stale"};
/// The `kind` of the failure that ends a cut failures list.
inline constexpr std::string_view kAuditCapacity = "capacity";
/// How the comment of a worker's first commit begins when it resumes a dead
/// worker's tables of generation N, or rolls back that worker's unconfirmed
/// commit N (then also the comment of a rollback at the deadline), N right
/// after it: the verifier checks N against the last applied generation the
/// log records (client/audit_verify.cc).
inline constexpr std::string_view kAuditResumeComment =
    "resumed after a worker restart: the tables of generation ";
inline constexpr std::string_view kAuditRollbackComment = "automatic rollback of generation ";
/// Every failure `kind` a line may hold: control::failure_kind_name() of each
/// control::FailureKind (tests/audit checks that the two agree).
inline constexpr std::array<std::string_view, 7> kAuditFailureKinds = {
    "invalid",      "conflict",         "policy-denied",  "bind-failed",
    kAuditCapacity, "stale-generation", "confirm-pending"};

/// The `format` of every line this build writes and reads. Format 2 begins
/// each run with a start record that links to the line before it. Format 1
/// (no `format` key; a run began with a commit line marked "chain":"start" and
/// a prev of zeros, so that nothing linked runs together) is not read.
inline constexpr uint64_t kAuditFormat = 2;

/// The `record` of a run's first line, and of the line of a commit attempt.
inline constexpr std::string_view kAuditRecordStart = "start";
inline constexpr std::string_view kAuditRecordCommit = "commit";

/// Bytes of a run id: 128 random bits, so that two runs never share one.
inline constexpr size_t kAuditRunIdBytes = 16;
using AuditRunId = std::array<uint8_t, kAuditRunIdBytes>;

/// What a run found before it: the `tail` of its start record, which says
/// what its `prev` means.
enum class AuditTail : uint8_t {
  /// "linked": prev is the SHA-256 of the file's last line (its "\n"
  /// included) when the run started, a line that parsed as an audit line.
  kLinked,
  /// "empty": the file was empty. The log starts here; prev is 64 zeros.
  kEmpty,
  /// "none": the sink is not a file (sluiced's stderr), so there was no last
  /// line to read; prev is 64 zeros.
  kNone,
  /// "unreadable": the file was not empty, but its last line could not be
  /// read, or did not parse; tailError says why. prev is the SHA-256 of that
  /// line when it could be read whole, else 64 zeros.
  kUnreadable,
};

/// The `tail` names, in AuditTail order.
inline constexpr std::array<std::string_view, 4> kAuditTailNames = {"linked", "empty", "none",
                                                                    "unreadable"};

/// Returns the `tail` name of `tail`. Never fails.
inline std::string_view audit_tail_name(AuditTail tail) {
  return kAuditTailNames[static_cast<size_t>(tail)];
}

/// Limit: bytes of one audit line, its newline included. 64 KiB is the default
/// capacity of a pipe (16 pages), so a line fits whole into an empty pipe
/// (stderr under systemd or in a shell pipeline) and its one write(2) is
/// never split; in an O_APPEND file any size would be whole. A longer line has
/// its lists cut (added, removed, failures), each cut list ending with an
/// entry that says how many items were left out. Counts stay complete.
inline constexpr size_t kMaxAuditLineBytes = 64 * 1024;

/// Limit: bytes of the comment in a line, the control protocol's own limit
/// (control::kMaxCommentBytes, static_asserted equal in worker/audit.cc); a
/// longer comment is cut and ends in "...[N bytes cut]".
inline constexpr size_t kMaxAuditCommentBytes = 1024;

/// Limit: bytes of one rule text or failure message in a line. A rule in
/// listing format is under 200 bytes and a message is one line of prose; the
/// cap only bounds an item so that the cut of the lists works. A longer item
/// is cut and ends in "...[N bytes cut]".
inline constexpr size_t kMaxAuditItemBytes = 4096;

/// Limit: the latest time a line can show, 9999-12-31T23:59:59.999Z, so that
/// the year always has four digits (the parser checks the shape). A clock
/// before 1970 is shown as 1970-01-01T00:00:00.000Z.
inline constexpr int64_t kMaxAuditUnixMillis = 253402300799999;

/// One failure object of a line, as written.
struct AuditFailure {
  std::string kind;        // one of kAuditFailureKinds
  Pif pif = Pif::kHost;    // written as pif_name()
  int32_t rule = -1;       // index in its table, -1 when not about one rule
  uint16_t port = 0;       // 0 when not about one port
  int32_t err = 0;         // `errno`: 0 when not a syscall's failure
  std::string errno_name;  // `errnoName`: "EADDRINUSE", empty when err is 0
  std::string message;     // cut to kMaxAuditItemBytes when written
  bool operator==(const AuditFailure&) const = default;
};

/// One audit line, as written: every field, in the order written. A start
/// record (`start`) uses seq, time, run, pid, uid, gid, tail, tail_error and
/// prev, and leaves the others at their defaults; a commit record uses all
/// but run, tail and tail_error.
struct AuditLine {
  uint64_t seq = 0;    // 1 for a run's start record, then +1 per line
  std::string time;    // "YYYY-MM-DDTHH:MM:SS.mmmZ" (audit_time_text)
  bool start = false;  // `record`: kAuditRecordStart, else kAuditRecordCommit
  // Start record only.
  AuditRunId run{};                   // `run`, as 32 lower-case hex digits
  AuditTail tail = AuditTail::kNone;  // `tail`: what prev links to
  std::string tail_error;             // `tailError`: why, when kUnreadable; else empty
  // Commit record only.
  std::string outcome;  // one of kAuditOutcomes
  // Both: the control client's SO_PEERCRED on a commit record (sluiced's own
  // for the initial rules); on a start record, the ids sluiced runs as.
  int32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string comment;  // cut to kMaxAuditCommentBytes when written
  uint64_t generation_before = 0;
  uint64_t generation_after = 0;
  Sha256Digest digest_before{};
  Sha256Digest digest_after{};
  std::vector<std::string> added;    // rule texts, "HOST TCP [*]:80 => 80"
  std::vector<std::string> removed;  // same format
  uint32_t kept = 0;                 // counts of listeners
  uint32_t opened = 0;
  uint32_t closed = 0;
  uint32_t rebound = 0;
  std::vector<AuditFailure> failures;
  uint64_t duration_micros = 0;
  // Both: the SHA-256 of the line before, "\n" included. On a start record,
  // what `tail` says.
  Sha256Digest prev{};
  bool operator==(const AuditLine&) const = default;
};

/// Returns `unix_millis` as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, proleptic
/// Gregorian), clamped to 0..kMaxAuditUnixMillis. Pure arithmetic: no time
/// zone, no locale, no syscall (glibc's gmtime_r would open /etc/localtime,
/// which the worker's sandbox forbids). Never fails.
std::string audit_time_text(int64_t unix_millis);

/// Returns `run` as written in a start record: 32 lower-case hex digits.
/// Never fails; no syscalls.
std::string audit_run_hex(const AuditRunId& run);

/// Renders `line` as the bytes written: one JSON object with the keys of its
/// record (start or commit) in order, `format` first, no spaces, then "\n". Every string is escaped
/// totally and ASCII-only (base/json.h, JsonText::kAscii), so the result is printable ASCII with
/// its only newline last, and no text can add a key or a line. The comment is cut to
/// kMaxAuditCommentBytes and each list item to kMaxAuditItemBytes; when the lists still do not fit
/// kMaxAuditLineBytes, each keeps what fits of its share and ends with a marker item that says how
/// many were left out (docs/AUDIT.md, "Size"). A start record's tail_error is cut to
/// kMaxAuditItemBytes. Returns at most kMaxAuditLineBytes bytes. A `time`, `outcome` or failure
/// `kind` so long that the fixed part leaves no room for the lists is a bug and CHECK-fails. No
/// syscalls.
std::string render_audit_line(const AuditLine& line);

/// Parses one line (without its "\n") strictly: exactly what
/// render_audit_line() writes, with keys in order, no spaces, canonical
/// numbers and escapes, printable ASCII only, values in range (format
/// kAuditFormat, seq from 1, a valid time, a known record, outcome, failure
/// kind, pif and tail). Returns the fields; fails with "column C: expected X"
/// at the first byte that differs from the format (a line of format 1 is
/// named as such). Never reads out of bounds and does not recurse, so any
/// bytes are safe input. No syscalls.
Result<AuditLine> parse_audit_line(std::string_view line);

}  // namespace sluice
