// The outcome of one commit attempt, recorded once. The commit engine fills
// one CommitRecord per attempt (applied, rejected, dry-run or stale); the
// audit writer stamps it with the line's sequence number and time. Everything
// else is a view of that one record:
//   - to_result():        the control protocol's reply to the client;
//   - to_audit_line():    the audit line (schema/audit_line.h renders it);
//   - to_history_entry(): the entry `sluicectl --history` shows (its rule
//                         lists cut to control::kMaxHistoryRules each).
// So the three can never disagree about a field. Nothing here makes a
// syscall.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "schema/audit_line.h"
#include "schema/control_types.h"

namespace sluice {

/// Everything known about one commit attempt once it has ended.
struct CommitRecord {
  control::Outcome outcome = control::Outcome::kApplied;
  bool dry_run = false;    // the request asked for a dry run (also when it was stale)
  struct ucred peer = {};  // the client's ids, as the broker saw them (PeerQuery)
  std::string comment;     // the client's free text (escaped in the audit line)
  uint64_t generation_before = 0;
  uint64_t generation_after = 0;  // equals generation_before unless applied
  Sha256Digest digest_before{};
  Sha256Digest digest_after{};
  std::vector<std::string> added;    // the requested diff as "HOST TCP [*]:80 => 80" lines
  std::vector<std::string> removed;  // same format
  uint32_t kept = 0;                 // listeners of the plan, also when refused or a dry run
  uint32_t opened = 0;
  uint32_t closed = 0;
  uint32_t rebound = 0;
  std::vector<control::Failure> failures;  // at most control::kMaxFailures (cut_failures)
  uint32_t failure_count = 0;              // failures in all, before the cut
  std::vector<control::Failure> warnings;  // ports that did not bind, of rules that do not fail
  uint64_t duration_micros = 0;
  int64_t unix_millis = 0;  // when the audit line was written (AuditLog::write stamps it)
  uint64_t sequence = 0;    // the audit line's `seq` (AuditLog::write stamps it)
};

/// Cuts `failures` to `max` (at least 1): the last kept entry then says
/// how many more there were (with the kind and pif of the first). Returns
/// how many there were in all, before the cut. Never fails; no syscalls.
uint32_t cut_failures(std::vector<control::Failure>* failures, size_t max = control::kMaxFailures);

/// Returns the reply to the client: applied when the outcome is applied, the
/// generation and digest after the attempt, the counts, the failures and the
/// duration. Never fails; no syscalls.
control::CommitResult to_result(const CommitRecord& record);

/// Returns the commit record line of the record: its sequence and time (UTC
/// text of unix_millis), its fields, and `prev`, the SHA-256 of the line
/// before it. render_audit_line() turns it into bytes. Never fails; no
/// syscalls.
AuditLine to_audit_line(const CommitRecord& record, const Sha256Digest& prev);

/// Returns `rules` when there are at most control::kMaxHistoryRules of them;
/// otherwise the first kMaxHistoryRules and one more text, "(N more rules not
/// kept: a history entry keeps the first 16)". Never fails; no syscalls.
std::vector<std::string> history_rules(const std::vector<std::string>& rules);

/// Returns the history entry of the record: its fields, with the number of
/// failures rather than the failures, and its added and removed rules cut by
/// history_rules(), so that the whole history always fits one control
/// message. Never fails; no syscalls.
control::HistoryEntry to_history_entry(const CommitRecord& record);

}  // namespace sluice
