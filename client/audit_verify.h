// The audit log verifier behind `sluicectl --verify-audit FILE`: reads the
// JSON lines that worker/audit.cc writes, recomputes the SHA-256 chain, and
// names every line where the chain, the sequence numbers or the generations
// break. The format and what a verified chain proves are in docs/AUDIT.md.
//
// The input is hostile bytes: each line goes through the format's own strict
// parser (schema/audit_line.h), which accepts exactly the writer's format and
// nothing else and never reads out of bounds, and memory stays bounded (one
// line of at most kMaxVerifyLineBytes, and at most kMaxReportedProblems
// problems) however large the file is.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/sha256.h"

namespace sluice {

/// Limit: bytes of one line the verifier parses. The writer never makes a
/// line over 64 KiB (kMaxAuditLineBytes); 1 MiB leaves room for a future
/// writer and still bounds memory. A longer line is reported as invalid (its
/// bytes are still hashed, so the next line's prev is checked against it).
inline constexpr size_t kMaxVerifyLineBytes = 1024 * 1024;

/// Limit: problems kept in a report. A file of garbage has one problem per
/// line; the first ones locate the damage, the rest are only counted.
inline constexpr size_t kMaxReportedProblems = 1000;

/// Exit codes of run_verify_audit(), as sluicectl documents them.
inline constexpr int kVerifyExitIntact = 0;
inline constexpr int kVerifyExitBroken = 1;
inline constexpr int kVerifyExitUnreadable = 3;

/// One finding: the 1-based line number and "what is wrong; what it means".
struct AuditProblem {
  uint64_t line = 0;
  std::string message;
};

/// Where a chain segment starts (a "chain":"start" line, or a file that
/// begins in the middle of a chain).
struct AuditSegment {
  uint64_t first_line = 0;
  uint64_t last_line = 0;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  std::string first_time;  // as written, "" when unknown
  std::string last_time;
};

/// The outcome of verifying one file.
struct AuditReport {
  bool ok = true;      // no problems at all
  uint64_t lines = 0;  // lines seen, a final line without "\n" included
  std::vector<AuditSegment> segments;
  std::string last_hash;  // hex SHA-256 of the last complete line, or 64 zeros
  std::vector<AuditProblem> problems;
  uint64_t problems_omitted = 0;  // found beyond kMaxReportedProblems
};

/// Streaming verifier: feed() the file in chunks of any size, then finish().
class AuditVerifier {
 public:
  AuditVerifier();
  /// Consumes `bytes`, checking each line as its "\n" arrives. Never fails:
  /// problems go into the report. Memory stays under kMaxVerifyLineBytes
  /// plus the report.
  void feed(std::string_view bytes);
  /// Checks a final line without "\n" (reported as truncated) and returns
  /// the report. The verifier must not be fed afterwards.
  AuditReport finish();

 private:
  /// Checks one complete line (without its "\n"); `digest` is its SHA-256
  /// with the "\n". `oversized` when its bytes were not all kept.
  void check_line(std::string_view line, bool oversized, const Sha256Digest& digest);
  /// Records a problem at the current line.
  void problem(std::string message);

  AuditReport report_;
  std::string line_;          // the current line's bytes, up to the limit
  uint64_t line_bytes_ = 0;   // the current line's full length
  Sha256 line_hash_;          // over the current line's bytes so far
  Sha256Digest prev_hash_{};  // the previous line's, with its "\n"
  bool have_prev_line_ = false;
  // The last line's fields, when it parsed and belongs to the open segment.
  bool prev_known_ = false;
  uint64_t prev_seq_ = 0;
  // The last applied line's generation.after in the open segment.
  bool applied_known_ = false;
  uint64_t applied_after_ = 0;
  uint64_t applied_line_ = 0;
};

/// Verifies a whole file held in memory (tests, small files). Never fails.
AuditReport verify_audit_bytes(std::string_view contents);

/// Verifies what `fd` yields until end of file, in bounded chunks. Fails with
/// the errno of a read error. Needs `read`.
Result<AuditReport> verify_audit_fd(int fd);

/// Returns the text report: "intact: N lines in K segments; last hash HEX"
/// and one line per segment, or one "line L: what; meaning" per problem and
/// a summary. Never fails.
std::string audit_report_text(const AuditReport& report);

/// Returns the report as one JSON object: {"ok","lines","segments",
/// "lastHash","problems":[{"line","message"}],"problemsOmitted",
/// "segmentStarts":[{"line","seq","time"}]}, newline-terminated. Never fails.
std::string audit_report_json(const AuditReport& report);

/// `sluicectl --verify-audit FILE`: opens and reads `path` (call it before
/// the client's seccomp sandbox: it needs `open` and `read`), verifies it,
/// prints the report (text, or JSON when `json`) to `out`, and returns
/// kVerifyExitIntact (0), kVerifyExitBroken (1) or kVerifyExitUnreadable
/// (3, with the reason on `err`).
int run_verify_audit(const std::string& path, bool json, FILE* out, FILE* err);

}  // namespace sluice
