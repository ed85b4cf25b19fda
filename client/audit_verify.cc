// The audit log verifier: the chain, sequence and generation checks over a
// whole file, and the reports. Each line is parsed by the audit line format's
// own strict parser (schema/audit_line.h), which accepts exactly what the
// worker writes (docs/AUDIT.md). A line is kept only up to kMaxVerifyLineBytes
// (longer lines are still hashed, never stored).
#include "client/audit_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/json.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "schema/audit_line.h"

namespace sluice {
namespace {

/// Limit: bytes read from the file at a time; the file itself may be of any
/// size, since it is checked as a stream.
constexpr size_t kReadChunkBytes = 64 * 1024;

}  // namespace

AuditVerifier::AuditVerifier() {
  report_.last_hash = to_hex(Sha256Digest{});
}

void AuditVerifier::problem(std::string message) {
  report_.ok = false;
  if (report_.problems.size() < kMaxReportedProblems) {
    report_.problems.push_back({report_.lines, std::move(message)});
  } else {
    ++report_.problems_omitted;
  }
}

void AuditVerifier::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    std::string_view part = bytes.substr(0, nl);
    line_hash_.update(part.data(), part.size());
    line_bytes_ += part.size();
    if (line_.size() < kMaxVerifyLineBytes) {
      line_.append(part.substr(0, kMaxVerifyLineBytes - line_.size()));
    }
    if (nl == std::string_view::npos) return;
    line_hash_.update("\n", 1);
    Sha256Digest digest = line_hash_.finish();
    ++report_.lines;
    check_line(line_, line_bytes_ > kMaxVerifyLineBytes, digest);
    line_.clear();
    line_bytes_ = 0;
    line_hash_ = Sha256();
    bytes.remove_prefix(nl + 1);
  }
}

void AuditVerifier::check_line(std::string_view line, bool oversized, const Sha256Digest& digest) {
  const uint64_t n = report_.lines;
  AuditLine rec;
  bool parsed = false;
  if (oversized) {
    problem("line " + std::to_string(n) + ": longer than " + std::to_string(kMaxVerifyLineBytes) +
            " bytes; not an audit record (sluice writes at most " +
            std::to_string(kMaxAuditLineBytes) + "), so it was inserted or damaged");
  } else {
    Result<AuditLine> line_fields = parse_audit_line(line);
    parsed = line_fields.ok();
    if (parsed) {
      rec = std::move(line_fields).value();
    } else {
      problem("line " + std::to_string(n) + ": not an audit record (" +
              line_fields.error().message +
              "); the line was edited, damaged, or written by something other than sluice");
    }
  }

  if (parsed) {
    const std::string prev_line = "line " + std::to_string(n - 1);
    bool chain_ok = false;
    if (rec.chain_start) {
      if (rec.prev != Sha256Digest{}) {
        problem("line " + std::to_string(n) +
                ": \"chain\":\"start\" with a prev other than 64 zeros; the line was edited");
      }
      if (rec.seq != 1) {
        problem("line " + std::to_string(n) + ": a chain segment starts at seq " +
                std::to_string(rec.seq) + ", not 1; the line was edited");
      }
      report_.segments.push_back({n, n, rec.seq, rec.seq, rec.time, rec.time});
      prev_known_ = false;
      applied_known_ = false;
    } else {
      if (!have_prev_line_) {
        problem("line " + std::to_string(n) +
                ": continues a chain whose earlier lines are not in this file; the start of the "
                "log was deleted, or the file was rotated: verify it appended to the file before "
                "it");
      } else if (rec.prev != prev_hash_) {
        problem("line " + std::to_string(n) + ": prev does not match the SHA-256 of " + prev_line +
                "; " + prev_line + " was edited, or lines were deleted, inserted or reordered " +
                "between " + prev_line + " and line " + std::to_string(n));
      } else {
        chain_ok = true;
      }
      // A file that begins mid-chain still has a first (partial) segment.
      if (report_.segments.empty()) {
        report_.segments.push_back({n, n, rec.seq, rec.seq, rec.time, rec.time});
      }
    }
    if (prev_known_ && rec.seq != prev_seq_ + 1) {
      problem("line " + std::to_string(n) + ": seq " + std::to_string(rec.seq) + " follows seq " +
              std::to_string(prev_seq_) + " on " + prev_line + "; " +
              (chain_ok ? "the chain holds, so the writer skipped a number or the chain was "
                          "recomputed after an edit"
                        : "lines were deleted, inserted or reordered here"));
    }
    if (rec.outcome == kAuditApplied) {
      if (applied_known_ && rec.generation_before != applied_after_) {
        problem("line " + std::to_string(n) + ": generation.before " +
                std::to_string(rec.generation_before) + " is not generation.after " +
                std::to_string(applied_after_) + " of the applied commit on line " +
                std::to_string(applied_line_) +
                "; an applied commit between them is missing from the log");
      }
      applied_known_ = true;
      applied_after_ = rec.generation_after;
      applied_line_ = n;
    }
    prev_known_ = true;
    prev_seq_ = rec.seq;
    AuditSegment& seg = report_.segments.back();
    seg.last_line = n;
    seg.last_seq = rec.seq;
    seg.last_time = rec.time;
  } else {
    // Nothing is known of this line but its hash: the next line's prev is
    // still checked against it, its seq and generation are not.
    prev_known_ = false;
    applied_known_ = false;
    if (!report_.segments.empty()) report_.segments.back().last_line = n;
  }
  prev_hash_ = digest;
  have_prev_line_ = true;
  report_.last_hash = to_hex(digest);
}

AuditReport AuditVerifier::finish() {
  if (line_bytes_ > 0) {
    ++report_.lines;
    problem("line " + std::to_string(report_.lines) + ": no final newline after " +
            std::to_string(line_bytes_) +
            " bytes; the last record was cut short by an interrupted write, a full disk, or a "
            "truncated file");
    line_.clear();
    line_bytes_ = 0;
  }
  return std::move(report_);
}

AuditReport verify_audit_bytes(std::string_view contents) {
  AuditVerifier verifier;
  verifier.feed(contents);
  return verifier.finish();
}

Result<AuditReport> verify_audit_fd(int fd) {
  AuditVerifier verifier;
  std::string buf(kReadChunkBytes, '\0');
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      return SysErr(err, "cannot read the audit log");
    }
    if (n == 0) break;
    verifier.feed(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  return verifier.finish();
}

std::string audit_report_text(const AuditReport& report) {
  std::string out;
  if (report.ok) {
    out += "intact: " + std::to_string(report.lines) + " lines in " +
           std::to_string(report.segments.size()) + " segments; last hash " + report.last_hash +
           "\n";
    for (size_t i = 0; i < report.segments.size(); ++i) {
      const AuditSegment& seg = report.segments[i];
      out += "segment " + std::to_string(i + 1) + ": lines " + std::to_string(seg.first_line) +
             "-" + std::to_string(seg.last_line) + ", seq " + std::to_string(seg.first_seq) + "-" +
             std::to_string(seg.last_seq) + ", " + seg.first_time + " to " + seg.last_time;
      if (i > 0) out += "; a new chain (the worker restarted)";
      out += "\n";
    }
    return out;
  }
  for (const AuditProblem& p : report.problems) out += p.message + "\n";
  if (report.problems_omitted > 0) {
    out += "(" + std::to_string(report.problems_omitted) + " more problems not shown)\n";
  }
  uint64_t total = report.problems.size() + report.problems_omitted;
  out += "not intact: " + std::to_string(total) + " problems in " + std::to_string(report.lines) +
         " lines (" + std::to_string(report.segments.size()) + " segments)";
  if (!report.problems.empty()) {
    out += "; the first at line " + std::to_string(report.problems.front().line);
  }
  out += "\n";
  return out;
}

std::string audit_report_json(const AuditReport& report) {
  // ASCII mode: the report is printable whatever a time or message holds.
  JsonWriter w(JsonText::kAscii);
  w.begin_object();
  w.key("ok");
  w.boolean(report.ok);
  w.key("lines");
  w.number(report.lines);
  w.key("segments");
  w.number(report.segments.size());
  w.key("lastHash");
  w.string(report.last_hash);
  w.key("problems");
  w.begin_array();
  for (const AuditProblem& p : report.problems) {
    w.begin_object();
    w.key("line");
    w.number(p.line);
    w.key("message");
    w.string(p.message);
    w.end_object();
  }
  w.end_array();
  w.key("problemsOmitted");
  w.number(report.problems_omitted);
  w.key("segmentStarts");
  w.begin_array();
  for (const AuditSegment& seg : report.segments) {
    w.begin_object();
    w.key("line");
    w.number(seg.first_line);
    w.key("seq");
    w.number(seg.first_seq);
    w.key("time");
    w.string(seg.first_time);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str() + "\n";
}

int run_verify_audit(const std::string& path, bool json, FILE* out, FILE* err) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    int e = errno;
    std::fprintf(err, "sluicectl: cannot open the audit log %s: %s\n", sanitize(path).c_str(),
                 errno_text(e).c_str());
    return kVerifyExitUnreadable;
  }
  Result<AuditReport> report = verify_audit_fd(fd.get());
  if (!report) {
    std::fprintf(err, "sluicectl: %s (%s)\n", report.error().message.c_str(),
                 sanitize(path).c_str());
    return kVerifyExitUnreadable;
  }
  std::string text = json ? audit_report_json(*report) : audit_report_text(*report);
  std::fwrite(text.data(), 1, text.size(), out);
  std::fflush(out);
  return report->ok ? kVerifyExitIntact : kVerifyExitBroken;
}

}  // namespace sluice
