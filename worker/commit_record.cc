// The views of a commit record (see commit_record.h).
#include "worker/commit_record.h"

#include <algorithm>

#include "base/strings.h"

namespace sluice {
namespace {

/// Returns one failure as the audit line holds it: its kind and errno by name
/// (no errno name when `f.err` is 0). Never fails.
AuditFailure audit_failure(const control::Failure& f) {
  AuditFailure out;
  out.kind = control::failure_kind_name(f.kind);
  out.pif = f.pif;
  out.rule = f.rule;
  out.port = f.port;
  out.err = f.err;
  if (f.err != 0) out.errno_name = errno_name(f.err);
  out.message = f.message;
  return out;
}

/// The failures of `record` in all: its count from cut_failures, or its list
/// for a record that was never cut (a failed policy reload has one).
uint32_t failure_total(const CommitRecord& record) {
  return std::max(record.failure_count, static_cast<uint32_t>(record.failures.size()));
}

}  // namespace

uint32_t cut_failures(std::vector<control::Failure>* failures, size_t max) {
  const auto total = static_cast<uint32_t>(failures->size());
  max = std::max<size_t>(max, 1);
  if (failures->size() <= max) return total;
  control::Failure more;
  more.kind = failures->front().kind;
  more.pif = failures->front().pif;
  size_t cut = failures->size() - (max - 1);
  failures->resize(max - 1);
  more.message = std::to_string(cut) + " more failures are not listed; fix the ones above first";
  failures->push_back(std::move(more));
  return total;
}

control::CommitResult to_result(const CommitRecord& record) {
  control::CommitResult r;
  r.applied = record.outcome == control::Outcome::kApplied;
  r.dry_run = record.dry_run;
  r.generation = record.generation_after;
  r.digest = record.digest_after;
  r.kept = record.kept;
  r.opened = record.opened;
  r.closed = record.closed;
  r.rebound = record.rebound;
  r.failures = record.failures;
  r.failure_count = failure_total(record);
  r.warnings = record.warnings;
  r.duration_micros = record.duration_micros;
  return r;
}

AuditLine to_audit_line(const CommitRecord& record, const Sha256Digest& prev) {
  AuditLine line;
  line.seq = record.sequence;
  line.time = audit_time_text(record.unix_millis);
  line.outcome = control::outcome_name(record.outcome);
  line.pid = record.peer.pid;
  line.uid = record.peer.uid;
  line.gid = record.peer.gid;
  line.comment = record.comment;
  line.generation_before = record.generation_before;
  line.generation_after = record.generation_after;
  line.digest_before = record.digest_before;
  line.digest_after = record.digest_after;
  line.added = record.added;
  line.removed = record.removed;
  line.kept = record.kept;
  line.opened = record.opened;
  line.closed = record.closed;
  line.rebound = record.rebound;
  line.failures.reserve(record.failures.size());
  for (const control::Failure& f : record.failures) line.failures.push_back(audit_failure(f));
  line.duration_micros = record.duration_micros;
  line.prev = prev;
  return line;
}

std::vector<std::string> history_rules(const std::vector<std::string>& rules) {
  if (rules.size() <= control::kMaxHistoryRules) return rules;
  std::vector<std::string> out(rules.begin(), rules.begin() + control::kMaxHistoryRules);
  out.push_back("(" + std::to_string(rules.size() - control::kMaxHistoryRules) +
                " more rules not kept: a history entry keeps the first " +
                std::to_string(control::kMaxHistoryRules) + ")");
  return out;
}

control::HistoryEntry to_history_entry(const CommitRecord& record) {
  control::HistoryEntry entry;
  entry.sequence = record.sequence;
  entry.unix_millis = record.unix_millis;
  entry.pid = record.peer.pid;
  entry.uid = record.peer.uid;
  entry.gid = record.peer.gid;
  entry.comment = record.comment;
  entry.outcome = record.outcome;
  entry.generation_before = record.generation_before;
  entry.generation_after = record.generation_after;
  entry.added = history_rules(record.added);
  entry.removed = history_rules(record.removed);
  entry.kept = record.kept;
  entry.opened = record.opened;
  entry.closed = record.closed;
  entry.rebound = record.rebound;
  entry.failures = failure_total(record);
  entry.duration_micros = record.duration_micros;
  return entry;
}

}  // namespace sluice
