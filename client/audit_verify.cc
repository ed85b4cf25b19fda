// The audit log verifier: a strict parser of exactly the line format that
// worker/audit.cc writes (docs/AUDIT.md), and the chain, sequence and
// generation checks over a whole file. It reads hostile bytes: every access
// is bounds-checked, nothing recurses, and a line is kept only up to
// kMaxVerifyLineBytes (longer lines are still hashed, never stored).
#include "client/audit_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "base/strings.h"
#include "base/unique_fd.h"

namespace sluice {
namespace {

/// Limit: bytes read from the file at a time; the file itself may be of any
/// size, since it is checked as a stream.
constexpr size_t kReadChunkBytes = 64 * 1024;

constexpr std::string_view kZeroHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of one audit line that the checks across lines need.
struct ParsedLine {
  uint64_t seq = 0;
  std::string time;
  bool applied = false;
  uint64_t generation_before = 0;
  uint64_t generation_after = 0;
  bool chain_start = false;
  std::string prev;  // 64 lower-case hex digits
};

/// Returns true when `c` is a lower-case hex digit; stores its value.
bool hex_value(char c, unsigned* value) {
  if (c >= '0' && c <= '9') {
    *value = static_cast<unsigned>(c - '0');
    return true;
  }
  if (c >= 'a' && c <= 'f') {
    *value = static_cast<unsigned>(c - 'a' + 10);
    return true;
  }
  return false;
}

/// Returns true when `time` has the writer's shape, "YYYY-MM-DDTHH:MM:SS.mmmZ",
/// with a month, day, hour, minute and second in range.
bool valid_time(std::string_view time) {
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (time.size() != kShape.size()) return false;
  for (size_t i = 0; i < kShape.size(); ++i) {
    bool digit = time[i] >= '0' && time[i] <= '9';
    if (kShape[i] == 'd' ? !digit : time[i] != kShape[i]) return false;
  }
  auto two = [&](size_t at) { return (time[at] - '0') * 10 + (time[at + 1] - '0'); };
  return two(5) >= 1 && two(5) <= 12 && two(8) >= 1 && two(8) <= 31 && two(11) <= 23 &&
         two(14) <= 59 && two(17) <= 59;
}

/// A strict, non-recursive parser of one audit line (without its "\n"). It
/// accepts exactly what the writer produces: keys in order, no spaces,
/// canonical numbers and escapes, printable ASCII only.
class LineParser {
 public:
  explicit LineParser(std::string_view line) : s_(line) {}

  /// Parses the whole line into `out`. Returns false, with error() set, at
  /// the first byte that differs from the format.
  bool parse(ParsedLine* out) {
    std::string text;
    int64_t sint = 0;
    uint64_t uint = 0;
    if (!lit("{\"seq\":") || !number(UINT64_MAX, &out->seq)) return false;
    if (out->seq == 0) return fail("a seq of 1 or more");
    if (!lit(",\"time\":") || !string(&text)) return false;
    if (!valid_time(text)) return fail("a time like 2026-11-24T17:03:11.123Z");
    out->time = text;
    if (!lit(",\"outcome\":") || !string(&text)) return false;
    if (text != "applied" && text != "rejected" && text != "dry-run" && text != "stale") {
      return fail("an outcome of applied, rejected, dry-run or stale");
    }
    out->applied = text == "applied";
    if (!lit(",\"pid\":") || !signed_number(INT32_MIN, INT32_MAX, &sint)) return false;
    if (!lit(",\"uid\":") || !number(UINT32_MAX, &uint)) return false;
    if (!lit(",\"gid\":") || !number(UINT32_MAX, &uint)) return false;
    if (!lit(",\"comment\":") || !string(nullptr)) return false;
    if (!lit(",\"generation\":{\"before\":") || !number(UINT64_MAX, &out->generation_before) ||
        !lit(",\"after\":") || !number(UINT64_MAX, &out->generation_after) || !lit("}")) {
      return false;
    }
    if (!lit(",\"digest\":{\"before\":") || !hex64(nullptr) || !lit(",\"after\":") ||
        !hex64(nullptr) || !lit("}")) {
      return false;
    }
    if (!lit(",\"added\":") || !string_array()) return false;
    if (!lit(",\"removed\":") || !string_array()) return false;
    if (!lit(",\"counts\":{\"kept\":") || !number(UINT32_MAX, &uint) || !lit(",\"opened\":") ||
        !number(UINT32_MAX, &uint) || !lit(",\"closed\":") || !number(UINT32_MAX, &uint) ||
        !lit(",\"rebound\":") || !number(UINT32_MAX, &uint) || !lit("}")) {
      return false;
    }
    if (!lit(",\"failures\":") || !failure_array()) return false;
    if (!lit(",\"durationMicros\":") || !number(UINT64_MAX, &uint)) return false;
    if (!lit(",\"chain\":") || !string(&text)) return false;
    if (text != "start" && text != "continue") return fail("a chain of start or continue");
    out->chain_start = text == "start";
    if (!lit(",\"prev\":") || !hex64(&out->prev) || !lit("}")) return false;
    if (pos_ != s_.size()) return fail("the end of the line after the closing }");
    return true;
  }

  /// What was expected where parsing stopped: "column C: expected X".
  const std::string& error() const { return error_; }

 private:
  /// Records that `what` was expected at the current column; returns false.
  bool fail(const std::string& what) {
    error_ = "column " + std::to_string(pos_ + 1) + ": expected " + what;
    return false;
  }

  /// Consumes `text` exactly, or fails.
  bool lit(std::string_view text) {
    if (s_.substr(pos_, text.size()) != text) return fail(std::string(text));
    pos_ += text.size();
    return true;
  }

  /// Consumes a canonical unsigned decimal ("0", or no leading zero) of at
  /// most `max`, or fails.
  bool number(uint64_t max, uint64_t* out) {
    size_t start = pos_;
    uint64_t value = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      unsigned d = static_cast<unsigned>(s_[pos_] - '0');
      if (value > (max - d) / 10) {
        pos_ = start;
        return fail("a number of at most " + std::to_string(max));
      }
      value = value * 10 + d;
      ++pos_;
    }
    if (pos_ == start || (s_[start] == '0' && pos_ - start > 1)) {
      pos_ = start;
      return fail("a decimal number without leading zeros");
    }
    *out = value;
    return true;
  }

  /// Consumes a canonical signed decimal in [min, max] (no "-0"), or fails.
  bool signed_number(int64_t min, int64_t max, int64_t* out) {
    bool negative = pos_ < s_.size() && s_[pos_] == '-';
    if (negative) ++pos_;
    uint64_t magnitude = 0;
    uint64_t limit = negative ? static_cast<uint64_t>(-(min + 1)) + 1 : static_cast<uint64_t>(max);
    if (!number(limit, &magnitude)) return false;
    if (negative && magnitude == 0) return fail("a number other than -0");
    *out = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
    return true;
  }

  /// Consumes a JSON string in the writer's canonical escaping and stores the
  /// bytes it stands for in `out` (when not null), or fails. Raw bytes must be
  /// printable ASCII; \u escapes must be \u00xx in lower-case hex, and only
  /// for bytes that have no shorter form and are not printable ASCII.
  bool string(std::string* out) {
    if (out != nullptr) out->clear();
    if (!lit("\"")) return false;
    while (pos_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      unsigned char byte = c;
      if (c == '\\') {
        if (pos_ + 1 >= s_.size()) return fail("an escape after \\");
        char e = s_[pos_ + 1];
        static constexpr std::string_view kShort = "\"\\bfnrt";
        static constexpr std::string_view kBytes = "\"\\\b\f\n\r\t";
        size_t k = kShort.find(e);
        if (k != std::string_view::npos) {
          byte = static_cast<unsigned char>(kBytes[k]);
          pos_ += 2;
        } else {
          unsigned hi = 0, lo = 0;
          if (e != 'u' || s_.substr(pos_ + 2, 2) != "00" || pos_ + 5 >= s_.size() ||
              !hex_value(s_[pos_ + 4], &hi) || !hex_value(s_[pos_ + 5], &lo)) {
            return fail("an escape of the form \\\" \\\\ \\b \\f \\n \\r \\t or \\u00xx");
          }
          byte = static_cast<unsigned char>(hi * 16 + lo);
          bool has_short = kBytes.find(static_cast<char>(byte)) != std::string_view::npos;
          if ((byte >= 0x20 && byte < 0x7f) || has_short) {
            return fail("the shortest escape (\\u00xx only for control and non-ASCII bytes)");
          }
          pos_ += 6;
        }
      } else if (c < 0x20 || c >= 0x7f) {
        return fail("printable ASCII (other bytes are escaped)");
      } else {
        ++pos_;
      }
      if (out != nullptr) out->push_back(static_cast<char>(byte));
    }
    return fail("the closing quote of a string");
  }

  /// Consumes a string of exactly 64 lower-case hex digits, or fails.
  bool hex64(std::string* out) {
    std::string text;
    size_t start = pos_;
    if (!string(&text)) return false;
    unsigned v = 0;
    bool ok = text.size() == 64;
    for (size_t i = 0; ok && i < text.size(); ++i) ok = hex_value(text[i], &v);
    if (!ok) {
      pos_ = start;
      return fail("a SHA-256 as 64 lower-case hex digits");
    }
    if (out != nullptr) *out = std::move(text);
    return true;
  }

  /// Consumes "[", then strings separated by ",", then "]", or fails.
  bool string_array() {
    if (!lit("[")) return false;
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      if (!string(nullptr)) return false;
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      return lit("]");
    }
  }

  /// Consumes one failure object, keys in order, or fails.
  bool failure() {
    std::string text;
    int64_t sint = 0;
    uint64_t uint = 0;
    if (!lit("{\"kind\":") || !string(&text)) return false;
    if (text != "invalid" && text != "conflict" && text != "policy-denied" &&
        text != "bind-failed" && text != "capacity" && text != "stale-generation") {
      return fail(
          "a failure kind (invalid, conflict, policy-denied, bind-failed, capacity, "
          "stale-generation)");
    }
    if (!lit(",\"pif\":") || !string(&text)) return false;
    if (text != "HOST" && text != "SPLICE") return fail("a pif of HOST or SPLICE");
    return lit(",\"rule\":") && signed_number(INT32_MIN, INT32_MAX, &sint) && lit(",\"port\":") &&
           number(65535, &uint) && lit(",\"errno\":") &&
           signed_number(INT32_MIN, INT32_MAX, &sint) && lit(",\"errnoName\":") &&
           string(nullptr) && lit(",\"message\":") && string(nullptr) && lit("}");
  }

  /// Consumes "[", then failure objects separated by ",", then "]", or fails.
  bool failure_array() {
    if (!lit("[")) return false;
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      if (!failure()) return false;
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      return lit("]");
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

/// Appends `bytes` as a JSON string literal with total escaping (as the
/// writer does), so the report is valid JSON whatever a time or message
/// holds. Never fails.
void append_json(std::string& out, std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : bytes) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  out += '"';
}

}  // namespace

AuditVerifier::AuditVerifier() {
  report_.last_hash = std::string(kZeroHash);
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
  ParsedLine rec;
  bool parsed = false;
  if (oversized) {
    problem("line " + std::to_string(n) + ": longer than " + std::to_string(kMaxVerifyLineBytes) +
            " bytes; not an audit record (sluice writes at most 65536), so it was inserted or "
            "damaged");
  } else {
    LineParser parser(line);
    parsed = parser.parse(&rec);
    if (!parsed) {
      problem("line " + std::to_string(n) + ": not an audit record (" + parser.error() +
              "); the line was edited, damaged, or written by something other than sluice");
    }
  }

  if (parsed) {
    const std::string prev_line = "line " + std::to_string(n - 1);
    bool chain_ok = false;
    if (rec.chain_start) {
      if (rec.prev != kZeroHash) {
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
      } else if (rec.prev != to_hex(prev_hash_)) {
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
    if (rec.applied) {
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
      return Err(err, "cannot read the audit log: " + errno_text(err));
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
  std::string out = "{\"ok\":";
  out += report.ok ? "true" : "false";
  out += ",\"lines\":" + std::to_string(report.lines);
  out += ",\"segments\":" + std::to_string(report.segments.size());
  out += ",\"lastHash\":";
  append_json(out, report.last_hash);
  out += ",\"problems\":[";
  for (size_t i = 0; i < report.problems.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"line\":" + std::to_string(report.problems[i].line) + ",\"message\":";
    append_json(out, report.problems[i].message);
    out += '}';
  }
  out += "],\"problemsOmitted\":" + std::to_string(report.problems_omitted);
  out += ",\"segmentStarts\":[";
  for (size_t i = 0; i < report.segments.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"line\":" + std::to_string(report.segments[i].first_line) +
           ",\"seq\":" + std::to_string(report.segments[i].first_seq) + ",\"time\":";
    append_json(out, report.segments[i].first_time);
    out += '}';
  }
  out += "]}\n";
  return out;
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
