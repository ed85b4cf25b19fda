// The audit log verifier behind `sluicectl --verify-audit FILE`: reads the
// JSON lines that worker/audit.cc writes, recomputes the SHA-256 chain, and
// names every line where the chain, a run's link to the lines before it, the
// sequence numbers or the generations break, and an empty file. The format
// and what a verified chain proves are in docs/AUDIT.md.
//
// The input is hostile bytes: each line goes through the format's own strict
// parser (schema/audit_line.h), which accepts exactly the writer's format and
// nothing else and never reads out of bounds, text from the file is
// sanitized before it is shown, and memory stays bounded (one line of at most
// kMaxVerifyLineBytes, at most kMaxReportedProblems problems and
// kMaxReportedRuns runs) however large the file is.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/sha256.h"
#include "schema/audit_line.h"

namespace sluice {

/// Limit: bytes of one line the verifier parses. The writer never makes a
/// line over 64 KiB (kMaxAuditLineBytes); 1 MiB leaves room for a future
/// writer and still bounds memory. A longer line is reported as invalid (its
/// bytes are still hashed, so the next line's prev is checked against it).
inline constexpr size_t kMaxVerifyLineBytes = 1024 * 1024;

/// Limit: problems kept in a report. A file of garbage has one problem per
/// line; the first ones locate the damage, the rest are only counted.
inline constexpr size_t kMaxReportedProblems = 1000;

/// Limit: runs kept in a report. Every run is checked and counted; a file of
/// thousands of restarts lists its first runs only, so that the report stays
/// small.
inline constexpr size_t kMaxReportedRuns = 1000;

/// Limit: bytes of a start record's tailError quoted in a problem. The worker
/// writes one sentence of under 400 bytes there; an edited line may hold up
/// to a megabyte, which must not be copied into each of 1000 problems.
inline constexpr size_t kMaxQuotedTailErrorBytes = 512;

/// Exit codes of run_verify_audit(), as sluicectl documents them.
inline constexpr int kVerifyExitIntact = 0;
inline constexpr int kVerifyExitBroken = 1;  // also an empty file without --allow-empty
inline constexpr int kVerifyExitUnreadable = 3;

/// One finding: the 1-based line number ("the file is empty" is line 0) and
/// "what is wrong; what it means".
struct AuditProblem {
  uint64_t line = 0;
  std::string message;
};

/// One run of the worker in the file: from its start record, or from line 1
/// when the file begins inside a run.
struct AuditRun {
  uint64_t first_line = 0;
  uint64_t last_line = 0;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  std::string first_time;  // as written, "" when unknown
  std::string last_time;
  std::string id;    // the start record's run id (hex), "" without one
  std::string tail;  // the start record's tail ("linked", ...), "" without one
  int32_t pid = 0;   // sluiced's pid from the start record
};

/// The outcome of verifying one file.
struct AuditReport {
  bool ok = true;              // no problems at all
  bool empty = false;          // the file holds no byte
  uint64_t lines = 0;          // lines seen, a final line without "\n" included
  std::vector<AuditRun> runs;  // the first kMaxReportedRuns
  uint64_t run_count = 0;      // every run, kept or not
  std::string last_hash;       // hex SHA-256 of the last complete line, or 64 zeros
  std::vector<AuditProblem> problems;
  uint64_t problems_omitted = 0;  // found beyond kMaxReportedProblems
};

/// What the verifier accepts beyond an intact log.
struct AuditVerifyOptions {
  /// An empty file is intact (sluicectl --allow-empty). Off by default: a
  /// log that sluiced used holds at least a start record, so an empty one
  /// was emptied or replaced, or never used.
  bool allow_empty = false;
};

/// Streaming verifier: feed() the file in chunks of any size, then finish().
class AuditVerifier {
 public:
  explicit AuditVerifier(AuditVerifyOptions options = {});
  /// Consumes `bytes`, checking each line as its "\n" arrives. Never fails:
  /// problems go into the report. Memory stays under kMaxVerifyLineBytes
  /// plus the report.
  void feed(std::string_view bytes);
  /// Checks a final line without "\n" (reported as truncated), reports an
  /// empty file unless allowed, and returns the report. The verifier must not
  /// be fed afterwards.
  AuditReport finish();

 private:
  /// Checks one complete line (without its "\n"); `digest` is its SHA-256
  /// with the "\n". `oversized` when its bytes were not all kept.
  void check_line(std::string_view line, bool oversized, const Sha256Digest& digest);
  /// Checks a start record on the current line: its seq, its fields, and its
  /// link to the line before it (or to nothing, on line 1); opens a run.
  void check_start(const AuditLine& rec);
  /// Checks a commit record on the current line: its prev, its seq, and the
  /// generations of applied commits in its run.
  void check_commit(const AuditLine& rec);
  /// Opens a run at the current line (`rec` is its first line).
  void open_run(const AuditLine& rec);
  /// Records a problem at the current line.
  void problem(std::string message);
  /// Checks the first applied commit `rec` of a run that follows linked
  /// runs: when it resumes a dead worker's tables (or rolls back its
  /// unconfirmed commit), the generation it names must be the last one the
  /// log records as applied; otherwise the record of an applied commit is
  /// missing (cut from the end of a run before a restart).
  void check_resumed(const AuditLine& rec);

  AuditVerifyOptions options_;
  AuditReport report_;
  std::string line_;          // the current line's bytes, up to the limit
  uint64_t line_bytes_ = 0;   // the current line's full length
  Sha256 line_hash_;          // over the current line's bytes so far
  Sha256Digest prev_hash_{};  // the previous line's, with its "\n"
  bool have_prev_line_ = false;
  // The last line's fields, when it parsed and belongs to the open run.
  bool prev_known_ = false;
  uint64_t prev_seq_ = 0;
  // The last applied line's generation.after in the open run.
  bool applied_known_ = false;
  uint64_t applied_after_ = 0;
  uint64_t applied_line_ = 0;
  // The same of the runs before the open one, as far as they link to it: a
  // worker that takes over resumes the generation the dead one left.
  bool earlier_applied_known_ = false;
  uint64_t earlier_applied_after_ = 0;
  uint64_t earlier_applied_line_ = 0;
};

/// Verifies a whole file held in memory (tests, small files). Never fails.
AuditReport verify_audit_bytes(std::string_view contents, AuditVerifyOptions options = {});

/// Verifies what `fd` yields, in bounded chunks: until end of file, or with
/// `snapshot_bytes` (a regular file's size when it was opened) no further
/// than that, except for the rest of a line that was being written then (at
/// most kMaxAuditLineBytes more, read up to its newline), so that a log that
/// grows while it is read cannot keep the verifier reading. Fails with the
/// errno of a read error. Needs `read`.
Result<AuditReport> verify_audit_fd(int fd, AuditVerifyOptions options = {},
                                    std::optional<uint64_t> snapshot_bytes = std::nullopt);

/// Returns the text report: "intact: N lines in K runs; last hash HEX" and
/// one line per run (or "empty: ..." for an empty file that was allowed), or
/// one "line L: what; meaning" per problem and a summary. Printable ASCII
/// whatever the file holds. Never fails.
std::string audit_report_text(const AuditReport& report);

/// Returns the report as one JSON object: {"ok","empty","lines","runs",
/// "lastHash","problems":[{"line","message"}],"problemsOmitted",
/// "runStarts":[{"line","seq","time","run","tail"}],"runsOmitted"},
/// newline-terminated. Never fails.
std::string audit_report_json(const AuditReport& report);

/// `sluicectl --verify-audit FILE [--allow-empty]`: opens and reads `path`
/// (call it before the client's seccomp sandbox: it needs `open`, `fstat`,
/// `fcntl` and `read`), verifies it, prints the report (text, or JSON when `json`) to `out`, and
/// returns kVerifyExitIntact (0), kVerifyExitBroken (1: damaged, tampered,
/// a run that does not link, or empty unless `options.allow_empty`) or
/// kVerifyExitUnreadable (3, with the reason on `err`). `path` must be a
/// regular file (read as it was when opened), or name the caller's own
/// standard input when that is a pipe (/dev/stdin, read to its end); the
/// open never waits, so a FIFO, a device or a directory is refused at once,
/// unreadable.
///
/// `confine`, when given, runs once the file is open and checked, before its
/// first byte is read: it gets the descriptor and returns the one to read
/// (sluicectl moves it onto a fixed number and loads its seccomp filter
/// there, since the log holds what a worker wrote); an error ends the run,
/// unreadable.
int run_verify_audit(const std::string& path, bool json, AuditVerifyOptions options, FILE* out,
                     FILE* err, const std::function<Result<int>(int)>& confine = {});

}  // namespace sluice
