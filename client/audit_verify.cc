// The audit log verifier: the chain, run link, sequence and generation checks
// over a whole file, and the reports. Each line is parsed by the audit line format's
// own strict parser (schema/audit_line.h), which accepts exactly what the
// worker writes (docs/AUDIT.md). A line is kept only up to kMaxVerifyLineBytes
// (longer lines are still hashed, never stored).
#include "client/audit_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <charconv>

#include <algorithm>
#include <cstdint>

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

AuditVerifier::AuditVerifier(AuditVerifyOptions options) : options_(options) {
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
    if (rec.start) {
      check_start(rec);
    } else {
      check_commit(rec);
    }
    prev_known_ = true;
    prev_seq_ = rec.seq;
    if (report_.run_count <= kMaxReportedRuns) {  // the open run is kept
      AuditRun& run = report_.runs.back();
      run.last_line = n;
      run.last_seq = rec.seq;
      run.last_time = rec.time;
    }
  } else {
    // Nothing is known of this line but its hash: the next line's prev is
    // still checked against it, its seq and generation are not.
    prev_known_ = false;
    applied_known_ = false;
    if (!report_.runs.empty() && report_.run_count <= kMaxReportedRuns) {
      report_.runs.back().last_line = n;
    }
  }
  prev_hash_ = digest;
  have_prev_line_ = true;
  report_.last_hash = to_hex(digest);
}

void AuditVerifier::open_run(const AuditLine& rec) {
  const uint64_t n = report_.lines;
  // Past the limit, runs are counted only.
  if (++report_.run_count > kMaxReportedRuns) return;
  AuditRun run{n, n, rec.seq, rec.seq, rec.time, rec.time, "", "", 0};
  if (rec.start) {
    run.id = audit_run_hex(rec.run);
    run.tail = std::string(audit_tail_name(rec.tail));
    run.pid = rec.pid;
  }
  report_.runs.push_back(std::move(run));
}

void AuditVerifier::check_start(const AuditLine& rec) {
  const uint64_t n = report_.lines;
  const std::string at = "line " + std::to_string(n) + ": ";
  const std::string run = "run " + audit_run_hex(rec.run);
  const std::string before = "line " + std::to_string(n - 1);
  const bool zeros = rec.prev == Sha256Digest{};
  if (rec.seq != 1) {
    problem(at + "a start record with seq " + std::to_string(rec.seq) +
            ", not 1; the line was edited");
  }
  if (rec.tail != AuditTail::kUnreadable && !rec.tail_error.empty()) {
    problem(at + "a start record with tail " + std::string(audit_tail_name(rec.tail)) +
            " and a tailError; the line was edited");
  }
  if ((rec.tail == AuditTail::kEmpty || rec.tail == AuditTail::kNone) && !zeros) {
    problem(at + "a start record with tail " + std::string(audit_tail_name(rec.tail)) +
            " and a prev other than 64 zeros; the line was edited");
  }
  if (rec.tail == AuditTail::kUnreadable) {
    problem(at + run + " could not read the log's last line when it started (" +
            sanitize(rec.tail_error, kMaxQuotedTailErrorBytes) +
            "); that line was damaged before this run began" +
            (have_prev_line_ ? " (see " + before + ")" : "") +
            ": compare with a copy of the log kept elsewhere");
  }
  const bool claims_a_line =
      rec.tail == AuditTail::kLinked || (rec.tail == AuditTail::kUnreadable && !zeros);
  if (claims_a_line && !have_prev_line_) {
    problem(at + run + " links to a line that is not in this file (the log's last line when " +
            "it started, SHA-256 " + to_hex(rec.prev) +
            "): lines before line 1 were cut off (the head of the log was deleted), or this "
            "file continues a rotated one; verify the files together, oldest first: cat "
            "audit.log.1 audit.log | sluicectl --verify-audit /dev/stdin");
  } else if (claims_a_line && rec.prev != prev_hash_) {
    problem(at + run + " does not link to " + before +
            ": its prev is the SHA-256 of the log's last line when it started, and " + before +
            " is not that line; lines before line " + std::to_string(n) +
            " were deleted, inserted or edited after this run started (a whole earlier run "
            "deleted, or edited and its chain recomputed); compare them with a copy of the log "
            "kept off the host, or with an anchored last hash");
  } else if (rec.tail == AuditTail::kEmpty && have_prev_line_) {
    problem(at + run + " found the log file empty when it started, yet " + std::to_string(n - 1) +
            " lines come before it: they were put there afterwards, or files were joined (a run "
            "that started on an empty file can only be line 1; verify such files one by one)");
  } else if (rec.tail == AuditTail::kNone && have_prev_line_) {
    problem(at + run +
            " wrote to sluiced's stderr, not to an --audit-log file, so it could not link to "
            "the lines before it: a whole run before line " +
            std::to_string(n) +
            " could have been deleted unseen; run sluiced with --audit-log FILE, whose runs link");
  }
  open_run(rec);
  // Generations restart with each run of the worker; a run that resumes the
  // tables of the one before continues from its last applied generation,
  // when the two link (a run that applied nothing passes it on).
  if (applied_known_) {
    earlier_applied_known_ = true;
    earlier_applied_after_ = applied_after_;
    earlier_applied_line_ = applied_line_;
  }
  if (!(rec.tail == AuditTail::kLinked && have_prev_line_ && rec.prev == prev_hash_)) {
    earlier_applied_known_ = false;
  }
  prev_known_ = false;
  applied_known_ = false;
}

void AuditVerifier::check_resumed(const AuditLine& rec) {
  // The comments a worker's resume writes (worker/main.cc): the tables of
  // the dead worker's generation N, or the rollback of its unconfirmed N.
  std::string_view rest = rec.comment;
  if (rest.starts_with(kAuditResumeComment)) {
    rest.remove_prefix(kAuditResumeComment.size());
  } else if (rest.starts_with(kAuditRollbackComment)) {
    rest.remove_prefix(kAuditRollbackComment.size());
  } else {
    return;
  }
  uint64_t resumed = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), resumed);
  if (ec != std::errc() || resumed == earlier_applied_after_) return;
  const uint64_t n = report_.lines;
  problem("line " + std::to_string(n) + ": this run resumes the tables of generation " +
          std::to_string(resumed) + ", but the last applied commit before it (line " +
          std::to_string(earlier_applied_line_) + ") made generation " +
          std::to_string(earlier_applied_after_) +
          ": the record of an applied commit is missing; lines at the end of the run before "
          "were cut before this one started, or its worker died between applying a commit and "
          "recording it");
}

void AuditVerifier::check_commit(const AuditLine& rec) {
  const uint64_t n = report_.lines;
  const std::string prev_line = "line " + std::to_string(n - 1);
  bool chain_ok = false;
  if (!have_prev_line_) {
    problem("line " + std::to_string(n) +
            ": the file does not begin with a run's start record: lines before line 1 were cut "
            "off (the head of the log was deleted), or this file continues a rotated one; "
            "verify the files together, oldest first: cat audit.log.1 audit.log | sluicectl "
            "--verify-audit /dev/stdin");
  } else if (rec.prev != prev_hash_) {
    problem("line " + std::to_string(n) + ": prev does not match the SHA-256 of " + prev_line +
            "; " + prev_line + " was edited, or lines were deleted, inserted or reordered " +
            "between " + prev_line + " and line " + std::to_string(n));
  } else {
    chain_ok = true;
  }
  // A file that begins inside a run still has a first (partial) run.
  if (report_.runs.empty()) open_run(rec);
  if (prev_known_ && rec.seq != prev_seq_ + 1) {
    problem("line " + std::to_string(n) + ": seq " + std::to_string(rec.seq) + " follows seq " +
            std::to_string(prev_seq_) + " on " + prev_line + "; " +
            (chain_ok ? "the chain holds, so the writer skipped a number or the chain was "
                        "recomputed after an edit"
                      : "lines were deleted, inserted or reordered here"));
  }
  if (rec.outcome == kAuditApplied) {
    if (!applied_known_ && earlier_applied_known_) check_resumed(rec);
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
  if (report_.lines == 0) {
    report_.empty = true;
    if (!options_.allow_empty) {
      problem(
          "the file is empty: it holds no line, not even a run's start record, which sluiced "
          "writes as soon as it starts; the log was emptied or replaced, or no sluiced has "
          "written to it yet (then pass --allow-empty)");
    }
  }
  return std::move(report_);
}

AuditReport verify_audit_bytes(std::string_view contents, AuditVerifyOptions options) {
  AuditVerifier verifier(options);
  verifier.feed(contents);
  return verifier.finish();
}

Result<AuditReport> verify_audit_fd(int fd, AuditVerifyOptions options,
                                    std::optional<uint64_t> snapshot_bytes) {
  AuditVerifier verifier(options);
  std::string buf(kReadChunkBytes, '\0');
  uint64_t total = 0;
  // With a snapshot: past its end, only the rest of a line being written.
  const uint64_t limit = snapshot_bytes ? *snapshot_bytes + kMaxAuditLineBytes : UINT64_MAX;
  bool ends_line = true;
  while (total < limit) {
    if (snapshot_bytes && total >= *snapshot_bytes && ends_line) break;
    size_t want = buf.size();
    if (snapshot_bytes && total >= *snapshot_bytes) {
      // Byte by byte up to the newline, so that nothing after it is read.
      want = 1;
    } else if (snapshot_bytes) {
      want = static_cast<size_t>(std::min<uint64_t>(want, *snapshot_bytes - total));
    }
    ssize_t n = ::read(fd, buf.data(), want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      return SysErr(err, "cannot read the audit log");
    }
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    ends_line = buf[static_cast<size_t>(n) - 1] == '\n';
    verifier.feed(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  return verifier.finish();
}

namespace {

/// Returns what a run's start says about the lines before it, for the text
/// report of an intact log. Never fails.
std::string run_origin(const AuditRun& run, size_t index) {
  if (run.tail == "linked") {
    return "linked to line " + std::to_string(run.first_line - 1) +
           ", the log's last line when it started";
  }
  if (run.tail == "empty") return "the log starts here (the file was empty)";
  if (run.tail == "none") return "the log starts here (the sink was sluiced's stderr)";
  return index == 0 ? "the file begins inside this run" : "unlinked";
}

}  // namespace

std::string audit_report_text(const AuditReport& report) {
  std::string out;
  if (report.ok && report.empty) {
    return "empty: the file holds no line; accepted because of --allow-empty\n";
  }
  if (report.ok) {
    out += "intact: " + std::to_string(report.lines) + " lines in " +
           std::to_string(report.run_count) + " runs; last hash " + report.last_hash + "\n";
    for (size_t i = 0; i < report.runs.size(); ++i) {
      const AuditRun& run = report.runs[i];
      out += "run " + std::to_string(i + 1) + ": lines " + std::to_string(run.first_line) + "-" +
             std::to_string(run.last_line) + ", seq " + std::to_string(run.first_seq) + "-" +
             std::to_string(run.last_seq) + ", " + run.first_time + " to " + run.last_time;
      if (!run.id.empty()) {
        out += "; id " + run.id + ", sluiced pid " + std::to_string(run.pid);
      }
      out += "; " + run_origin(run, i) + "\n";
    }
    if (report.run_count > report.runs.size()) {
      out +=
          "(" + std::to_string(report.run_count - report.runs.size()) + " more runs not shown)\n";
    }
    return out;
  }
  for (const AuditProblem& p : report.problems) out += p.message + "\n";
  if (report.problems_omitted > 0) {
    out += "(" + std::to_string(report.problems_omitted) + " more problems not shown)\n";
  }
  uint64_t total = report.problems.size() + report.problems_omitted;
  out += "not intact: " + std::to_string(total) + " problems in " + std::to_string(report.lines) +
         " lines (" + std::to_string(report.run_count) + " runs)";
  if (!report.problems.empty() && report.problems.front().line > 0) {
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
  w.key("empty");
  w.boolean(report.empty);
  w.key("lines");
  w.number(report.lines);
  w.key("runs");
  w.number(report.run_count);
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
  w.key("runStarts");
  w.begin_array();
  for (const AuditRun& run : report.runs) {
    w.begin_object();
    w.key("line");
    w.number(run.first_line);
    w.key("seq");
    w.number(run.first_seq);
    w.key("time");
    w.string(run.first_time);
    w.key("run");
    w.string(run.id);
    w.key("tail");
    w.string(run.tail);
    w.end_object();
  }
  w.end_array();
  w.key("runsOmitted");
  w.number(report.run_count - report.runs.size());
  w.end_object();
  return w.str() + "\n";
}

int run_verify_audit(const std::string& path, bool json, AuditVerifyOptions options, FILE* out,
                     FILE* err, const std::function<Result<int>(int)>& confine) {
  // O_NONBLOCK: a FIFO in the log's place would block a plain open until a
  // writer came; opened like this it is refused below instead.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    int e = errno;
    std::fprintf(err, "sluicectl: cannot open the audit log %s: %s\n", sanitize(path).c_str(),
                 errno_text(e).c_str());
    return kVerifyExitUnreadable;
  }
  struct stat st, in;
  if (::fstat(fd.get(), &st) != 0) {
    int e = errno;
    std::fprintf(err, "sluicectl: cannot stat the audit log %s: %s\n", sanitize(path).c_str(),
                 errno_text(e).c_str());
    return kVerifyExitUnreadable;
  }
  std::optional<uint64_t> snapshot;
  if (S_ISREG(st.st_mode)) {
    // The file as it was when opened (a line being written then, to its
    // end): a log that grows while it is read still gives an answer.
    snapshot = static_cast<uint64_t>(st.st_size);
  } else if (S_ISFIFO(st.st_mode) && ::fstat(0, &in) == 0 && S_ISFIFO(in.st_mode) &&
             in.st_dev == st.st_dev && in.st_ino == st.st_ino) {
    // The caller's own standard input (/dev/stdin), fed by a pipeline of
    // theirs (cat audit.log.1 audit.log |): read to its end, waiting for it.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
      int e = errno;
      std::fprintf(err, "sluicectl: cannot read the audit log %s: fcntl: %s\n",
                   sanitize(path).c_str(), errno_text(e).c_str());
      return kVerifyExitUnreadable;
    }
  } else {
    std::fprintf(err,
                 "sluicectl: the audit log %s is %s, not a regular file: --verify-audit reads "
                 "a regular file, or a pipe on its own standard input (a FIFO or device could "
                 "stall or never end the read); give the log file itself, or pipe the files in "
                 "(cat audit.log.1 audit.log | sluicectl --verify-audit /dev/stdin)\n",
                 sanitize(path).c_str(), file_kind(st.st_mode));
    return kVerifyExitUnreadable;
  }
  if (confine) {
    Result<int> confined = confine(fd.get());
    if (!confined) {
      std::fprintf(err, "sluicectl: cannot sandbox itself to read %s: %s\n", sanitize(path).c_str(),
                   confined.error().message.c_str());
      return kVerifyExitUnreadable;
    }
    if (*confined != fd.get()) fd = UniqueFd(*confined);  // the old number is closed
  }
  Result<AuditReport> report = verify_audit_fd(fd.get(), options, snapshot);
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
