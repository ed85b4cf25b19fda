// libFuzzer target for `sluicectl --verify-audit`: the verifier reads a file
// that an attacker who wants to hide a commit may have edited, so every byte
// of the input is hostile. The input is the file's content.
//
// It runs the verifier on the input whole, in pseudo-random chunks (from a
// hash of the input, so each run is deterministic), and one byte at a time;
// and again on a "rechained" copy in which the prev of each commit record and
// of each linked start record is replaced by the true hash of the line
// before, so that mutated records get past the hash check into the sequence,
// generation and run checks.
//
// Contracts checked: the three feeds give identical reports; the line count is
// the number of lines; `ok` means no problems; problems are in line order and
// within the file (line 0 only for an empty file); runs are within the file
// and counted; the text report is printable ASCII (it goes to a terminal, and
// a start record's tailError is text from the file) and the JSON report
// parses; and every line the format's parser accepts is rendered back to the
// same bytes (schema/audit_line.h: the writer and the verifier share one
// format), unless the renderer would cut it.
#include <algorithm>
#include <string>
#include <string_view>

#include "base/sha256.h"
#include "client/audit_verify.h"
#include "schema/audit_line.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/json_check.h"

namespace sluice::fuzz {
namespace {

/// Returns the FNV-1a hash of `bytes`: the seed of the chunk sizes.
uint64_t fnv1a(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

/// Verifies `text` fed in chunks of 1..64 bytes picked by a generator seeded
/// from the text.
AuditReport verify_in_chunks(std::string_view text) {
  AuditVerifier verifier;
  uint64_t state = fnv1a(text) | 1;
  while (!text.empty()) {
    state ^= state << 13;  // xorshift64
    state ^= state >> 7;
    state ^= state << 17;
    size_t n = 1 + static_cast<size_t>(state % 64);
    if (n > text.size()) n = text.size();
    verifier.feed(text.substr(0, n));
    text.remove_prefix(n);
  }
  return verifier.finish();
}

/// Verifies `text` fed one byte at a time.
AuditReport verify_bytewise(std::string_view text) {
  AuditVerifier verifier;
  for (size_t i = 0; i < text.size(); ++i) verifier.feed(text.substr(i, 1));
  return verifier.finish();
}

/// Returns true when two reports say exactly the same.
bool same_report(const AuditReport& a, const AuditReport& b) {
  if (a.ok != b.ok || a.empty != b.empty || a.lines != b.lines || a.last_hash != b.last_hash ||
      a.problems_omitted != b.problems_omitted || a.run_count != b.run_count ||
      a.runs.size() != b.runs.size() || a.problems.size() != b.problems.size()) {
    return false;
  }
  for (size_t i = 0; i < a.runs.size(); ++i) {
    const AuditRun& x = a.runs[i];
    const AuditRun& y = b.runs[i];
    if (x.first_line != y.first_line || x.last_line != y.last_line || x.first_seq != y.first_seq ||
        x.last_seq != y.last_seq || x.first_time != y.first_time || x.last_time != y.last_time ||
        x.id != y.id || x.tail != y.tail || x.pid != y.pid) {
      return false;
    }
  }
  for (size_t i = 0; i < a.problems.size(); ++i) {
    if (a.problems[i].line != b.problems[i].line ||
        a.problems[i].message != b.problems[i].message) {
      return false;
    }
  }
  return true;
}

/// Checks one report of `text` against the verifier's contract.
void check_report(const AuditReport& report, std::string_view text) {
  uint64_t lines = 0;
  for (char c : text) lines += c == '\n';
  if (!text.empty() && text.back() != '\n') ++lines;
  FUZZ_CHECK(report.lines == lines, "the line count is wrong");
  FUZZ_CHECK(report.empty == text.empty(), "empty does not say whether the file is empty");
  FUZZ_CHECK(report.ok == (report.problems.empty() && report.problems_omitted == 0),
             "ok does not match the problems");
  FUZZ_CHECK(!text.empty() || !report.ok, "an empty file verified without --allow-empty");
  FUZZ_CHECK(report.problems.size() <= kMaxReportedProblems, "more problems kept than the limit");
  FUZZ_CHECK(report.last_hash.size() == 64, "a last hash that is not 64 hex digits");
  uint64_t previous = 0;
  for (const AuditProblem& p : report.problems) {
    FUZZ_CHECK((p.line >= 1 || report.lines == 0) && p.line <= report.lines,
               "a problem outside the file");
    FUZZ_CHECK(p.line >= previous, "problems out of line order");
    FUZZ_CHECK(!p.message.empty(), "a problem without a message");
    previous = p.line;
  }
  FUZZ_CHECK(report.runs.size() <= kMaxReportedRuns, "more runs kept than the limit");
  FUZZ_CHECK(report.runs.size() == std::min<uint64_t>(report.run_count, kMaxReportedRuns),
             "runs kept do not match the runs counted");
  for (const AuditRun& r : report.runs) {
    FUZZ_CHECK(r.first_line >= 1 && r.first_line <= r.last_line && r.last_line <= report.lines,
               "a run outside the file");
  }
  FUZZ_CHECK(printable(audit_report_text(report), true), "raw bytes in the text report");
  std::string json = audit_report_json(report);
  FUZZ_CHECK(printable(json, true), "raw bytes in the JSON report");
  FUZZ_CHECK(test::parse_json(json).has_value(), "a JSON report that does not parse");
}

/// Verifies `text` whole, in chunks and bytewise; all must agree.
void verify_three_ways(std::string_view text) {
  AuditReport whole = verify_audit_bytes(text);
  check_report(whole, text);
  FUZZ_CHECK(same_report(whole, verify_in_chunks(text)), "chunked feeding changes the report");
  FUZZ_CHECK(same_report(whole, verify_bytewise(text)), "bytewise feeding changes the report");
}

/// Returns `text` with the prev of every commit record and every linked start
/// record set to the SHA-256 of the (rechained) line before it, newline
/// included.
std::string rechain(std::string_view text) {
  static constexpr std::string_view kMarker = ",\"prev\":\"";
  std::string out;
  out.reserve(text.size());
  Sha256Digest prev{};
  while (!text.empty()) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) {
      out.append(text);  // a final partial line: no hash follows it
      break;
    }
    std::string line(text.substr(0, nl + 1));
    text.remove_prefix(nl + 1);
    size_t at = line.rfind(kMarker);
    const bool chained = line.find("\"record\":\"commit\"") != std::string::npos ||
                         line.find("\"tail\":\"linked\"") != std::string::npos;
    if (chained && at != std::string::npos && line.size() - (at + kMarker.size()) == 64 + 3) {
      line.replace(at + kMarker.size(), 64, to_hex(prev));
    }
    prev = sha256(line.data(), line.size());
    out += line;
  }
  return out;
}

/// Returns true when render_audit_line() writes `line`, which was `size`
/// bytes without its newline, without cutting anything: the comment and
/// every item within their limits, and room for the line whole.
bool renders_uncut(const AuditLine& line, size_t size) {
  if (size + 1 + 3 > kMaxAuditLineBytes) return false;  // + one byte per list in fit_lists
  if (line.tail_error.size() > kMaxAuditItemBytes) return false;
  if (line.comment.size() > kMaxAuditCommentBytes) return false;
  for (const auto* list : {&line.added, &line.removed}) {
    for (const std::string& item : *list) {
      if (item.size() > kMaxAuditItemBytes) return false;
    }
  }
  for (const AuditFailure& f : line.failures) {
    if (f.message.size() > kMaxAuditItemBytes) return false;
  }
  return true;
}

/// Checks that each complete line of `text` that parses renders back to
/// exactly its bytes, newline included, when nothing in it would be cut.
void check_round_trip(std::string_view text) {
  for (size_t nl = text.find('\n'); nl != std::string_view::npos; nl = text.find('\n')) {
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    Result<AuditLine> parsed = parse_audit_line(line);
    if (!parsed.ok() || !renders_uncut(*parsed, line.size())) continue;
    FUZZ_CHECK(render_audit_line(*parsed) == std::string(line) + "\n",
               "a line the parser accepts renders to other bytes");
  }
}

}  // namespace

int audit_verify_one_input(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  verify_three_ways(text);
  check_round_trip(text);
  std::string rechained = rechain(text);
  if (rechained != text) verify_three_ways(rechained);
  return 0;
}

}  // namespace sluice::fuzz

#ifndef SLUICE_FUZZ_NO_MAIN
/// libFuzzer's entry point.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sluice::fuzz::audit_verify_one_input(data, size);
}
#endif
