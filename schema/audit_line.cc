// The audit line format (see audit_line.h): the UTC time, the renderer with
// its cut of lists that would not fit, and the strict parser the verifier
// uses. The parser reads hostile bytes: every access is bounds-checked and
// nothing recurses.
#include "schema/audit_line.h"

#include <algorithm>

#include "base/check.h"
#include "base/json.h"

namespace sluice {
namespace {

/// Bytes set aside per list for the entry that says how many items were cut.
/// The longest such entry (a failure object with a 20-digit count) is under
/// 200 bytes.
constexpr size_t kMarkerReserve = 256;

/// Appends `value` as exactly `width` decimal digits (zero-padded; `value`
/// must fit). Never fails.
void append_padded(std::string& out, uint64_t value, int width) {
  char buf[8];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  out.append(buf, static_cast<size_t>(width));
}

/// Returns `bytes` cut to `max_bytes`, a cut text ending in
/// "...[N bytes cut]". Never fails.
std::string cut_text(std::string_view bytes, size_t max_bytes) {
  if (bytes.size() <= max_bytes) return std::string(bytes);
  return std::string(bytes.substr(0, max_bytes)) + "...[" +
         std::to_string(bytes.size() - max_bytes) + " bytes cut]";
}

/// Writes one failure object, keys in the documented order, its message cut
/// to kMaxAuditItemBytes. Never fails.
void write_failure(JsonWriter& w, const AuditFailure& f) {
  w.begin_object();
  w.key(audit_key::kKind);
  w.string(f.kind);
  w.key(audit_key::kPif);
  w.string(pif_name(f.pif));
  w.key(audit_key::kRule);
  w.signed_number(f.rule);
  w.key(audit_key::kPort);
  w.number(f.port);
  w.key(audit_key::kErrno);
  w.signed_number(f.err);
  w.key(audit_key::kErrnoName);
  w.string(f.errno_name);
  w.key(audit_key::kMessage);
  w.string(cut_text(f.message, kMaxAuditItemBytes));
  w.end_object();
}

/// Returns the failure that ends a cut failures list: kind "capacity", rule
/// -1, and a message with the number left out. Never fails.
AuditFailure failures_cut_marker(size_t left_out) {
  AuditFailure marker;
  marker.kind = std::string(kAuditCapacity);
  marker.message = std::to_string(left_out) +
                   " more failures not recorded: an audit line is limited to " +
                   std::to_string(kMaxAuditLineBytes) + " bytes";
  return marker;
}

/// Returns the string that ends a cut added or removed list. It starts with
/// "(", which no rule text does. Never fails.
std::string rules_cut_marker(size_t left_out) {
  return "(" + std::to_string(left_out) + " more rules not recorded: an audit line is limited to " +
         std::to_string(kMaxAuditLineBytes) + " bytes)";
}

/// Writes `items[0..keep)` as a JSON array of cut rule texts, then, when
/// `mark` and items were left out, the marker that says how many. Never fails.
void write_rules(JsonWriter& w, const std::vector<std::string>& items, size_t keep, bool mark) {
  w.begin_array();
  for (size_t i = 0; i < keep; ++i) w.string(cut_text(items[i], kMaxAuditItemBytes));
  if (mark && keep < items.size()) w.string(rules_cut_marker(items.size() - keep));
  w.end_array();
}

/// Returns `run` as 32 lower-case hex digits. Never fails.
std::string run_hex(const AuditRunId& run) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * run.size());
  for (uint8_t b : run) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

/// How many leading items of added, removed and failures a line holds.
using ListKeep = std::array<size_t, 3>;

/// Writes the keys every line begins with: format, seq, time and record.
/// Never fails.
void write_head(JsonWriter& w, const AuditLine& line) {
  namespace k = audit_key;
  w.key(k::kFormat);
  w.number(kAuditFormat);
  w.key(k::kSeq);
  w.number(line.seq);
  w.key(k::kTime);
  w.string(line.time);
  w.key(k::kRecord);
  w.string(line.start ? kAuditRecordStart : kAuditRecordCommit);
}

/// Writes the whole start record object (no newline), its tail_error cut to
/// kMaxAuditItemBytes. Never fails.
void write_start_line(JsonWriter& w, const AuditLine& line) {
  namespace k = audit_key;
  w.begin_object();
  write_head(w, line);
  w.key(k::kRun);
  w.string(run_hex(line.run));
  w.key(k::kPid);
  w.signed_number(line.pid);
  w.key(k::kUid);
  w.number(line.uid);
  w.key(k::kGid);
  w.number(line.gid);
  w.key(k::kTail);
  w.string(audit_tail_name(line.tail));
  w.key(k::kTailError);
  w.string(cut_text(line.tail_error, kMaxAuditItemBytes));
  w.key(k::kPrev);
  w.string(to_hex(line.prev));
  w.end_object();
}

/// Writes the whole commit record object (no newline) with `keep` items of
/// each list; `mark` adds the marker of each cut list. Never fails.
void write_line(JsonWriter& w, const AuditLine& line, const ListKeep& keep, bool mark) {
  namespace k = audit_key;
  w.begin_object();
  write_head(w, line);
  w.key(k::kOutcome);
  w.string(line.outcome);
  w.key(k::kPid);
  w.signed_number(line.pid);
  w.key(k::kUid);
  w.number(line.uid);
  w.key(k::kGid);
  w.number(line.gid);
  w.key(k::kComment);
  w.string(cut_text(line.comment, kMaxAuditCommentBytes));
  w.key(k::kGeneration);
  w.begin_object();
  w.key(k::kBefore);
  w.number(line.generation_before);
  w.key(k::kAfter);
  w.number(line.generation_after);
  w.end_object();
  w.key(k::kDigest);
  w.begin_object();
  w.key(k::kBefore);
  w.string(to_hex(line.digest_before));
  w.key(k::kAfter);
  w.string(to_hex(line.digest_after));
  w.end_object();
  w.key(k::kAdded);
  write_rules(w, line.added, keep[0], mark);
  w.key(k::kRemoved);
  write_rules(w, line.removed, keep[1], mark);
  w.key(k::kCounts);
  w.begin_object();
  w.key(k::kKept);
  w.number(line.kept);
  w.key(k::kOpened);
  w.number(line.opened);
  w.key(k::kClosed);
  w.number(line.closed);
  w.key(k::kRebound);
  w.number(line.rebound);
  w.end_object();
  w.key(k::kFailures);
  w.begin_array();
  for (size_t i = 0; i < keep[2]; ++i) write_failure(w, line.failures[i]);
  if (mark && keep[2] < line.failures.size()) {
    write_failure(w, failures_cut_marker(line.failures.size() - keep[2]));
  }
  w.end_array();
  w.key(k::kDurationMicros);
  w.number(line.duration_micros);
  w.key(k::kPrev);
  w.string(to_hex(line.prev));
  w.end_object();
}

/// Returns the bytes each item of `line`'s lists takes as written (escaped,
/// cut), in the order added, removed, failures. Never fails.
std::array<std::vector<size_t>, 3> item_costs(const AuditLine& line) {
  std::array<std::vector<size_t>, 3> costs;
  std::string text;
  for (size_t list = 0; list < 2; ++list) {
    const std::vector<std::string>& items = list == 0 ? line.added : line.removed;
    costs[list].reserve(items.size());
    for (const std::string& item : items) {
      text.clear();
      append_json_string(&text, cut_text(item, kMaxAuditItemBytes), JsonText::kAscii);
      costs[list].push_back(text.size());
    }
  }
  costs[2].reserve(line.failures.size());
  for (const AuditFailure& f : line.failures) {
    JsonWriter w(JsonText::kAscii);
    write_failure(w, f);
    costs[2].push_back(w.str().size());
  }
  return costs;
}

/// Returns the bytes the first `count` items take in a JSON array (each
/// item plus one separator).
size_t items_cost(const std::vector<size_t>& costs, size_t count) {
  size_t cost = 0;
  for (size_t i = 0; i < count; ++i) cost += costs[i] + 1;
  return cost;
}

/// Decides how many leading items of each list fit into `budget` bytes, given
/// each item's cost. When all fit, all are kept. Otherwise the budget, less
/// one cut-marker reserve per list, is shared fairly: the shortest lists are
/// kept whole if they fit their share, and what they leave is shared by the
/// others, each of which keeps the prefix that fits. Returns the counts kept.
/// Never fails.
ListKeep fit_lists(const std::array<std::vector<size_t>, 3>& costs, size_t budget) {
  ListKeep keep{};
  std::array<size_t, 3> full{};
  size_t total = 0;
  for (size_t i = 0; i < 3; ++i) {
    keep[i] = costs[i].size();
    full[i] = items_cost(costs[i], keep[i]);
    total += full[i];
  }
  if (total <= budget) return keep;

  size_t remaining = budget > 3 * kMarkerReserve ? budget - 3 * kMarkerReserve : 0;
  std::array<size_t, 3> order{0, 1, 2};
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return full[a] < full[b]; });
  size_t left = 3;
  for (size_t idx : order) {
    size_t share = remaining / left;
    size_t used = 0;
    if (full[idx] <= share) {
      used = full[idx];
    } else {
      const std::vector<size_t>& items = costs[idx];
      size_t k = 0;
      while (k < items.size() && used + items[k] + 1 <= share) {
        used += items[k] + 1;
        ++k;
      }
      keep[idx] = k;
    }
    remaining -= used;
    --left;
  }
  return keep;
}

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

/// Returns true when `time` has the shape audit_time_text() writes,
/// "YYYY-MM-DDTHH:MM:SS.mmmZ", with a month, day, hour, minute and second in
/// range.
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

/// Returns true when `text` is one of `names`.
template <typename Names>
bool one_of(const Names& names, std::string_view text) {
  return std::find(names.begin(), names.end(), text) != names.end();
}

/// Returns `names` separated by ", ", with `last` before the last one
/// ("a, b or c"). Never fails.
template <typename Names>
std::string join_names(const Names& names, std::string_view last) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? last : ", ";
    out += names[i];
  }
  return out;
}

/// Returns the name of every pif, in Pif order ("HOST", "SPLICE").
std::array<std::string_view, kPifCount> pif_names() {
  std::array<std::string_view, kPifCount> names;
  for (size_t i = 0; i < kPifCount; ++i) names[i] = pif_name(static_cast<Pif>(i));
  return names;
}

/// Returns the text that opens key `name` after `before` ("{" or ","):
/// before + "\"name\":". Never fails.
std::string key_text(std::string_view before, std::string_view name) {
  std::string out(before);
  out += '"';
  out += name;
  out += "\":";
  return out;
}

/// A strict, non-recursive parser of one audit line (without its "\n"). It
/// accepts exactly what render_audit_line() produces: keys in order, no
/// spaces, canonical numbers and escapes, printable ASCII only.
class LineParser {
 public:
  explicit LineParser(std::string_view line) : s_(line) {}

  /// Parses the whole line into `out`. Returns false, with error() set, at
  /// the first byte that differs from the format.
  bool parse(AuditLine* out) {
    namespace k = audit_key;
    std::string text;
    uint64_t format = 0;
    if (s_.starts_with(key_text("{", k::kSeq))) {
      return fail(
          "\"format\" first; this is a line of audit format 1 (sluice before runs were "
          "linked), which this version does not read; verify it with the sluicectl of "
          "the sluice that wrote it");
    }
    if (!lit(key_text("{", k::kFormat)) || !number(UINT64_MAX, &format)) return false;
    if (format != kAuditFormat) {
      return fail("format " + std::to_string(kAuditFormat) + " (this line is of format " +
                  std::to_string(format) +
                  ", written by another version of sluice; verify it with that version's "
                  "sluicectl)");
    }
    if (!lit(key_text(",", k::kSeq)) || !number(UINT64_MAX, &out->seq)) return false;
    if (out->seq == 0) return fail("a seq of 1 or more");
    if (!lit(key_text(",", k::kTime)) || !string(&out->time)) return false;
    if (!valid_time(out->time)) return fail("a time like 2026-11-24T17:03:11.123Z");
    if (!lit(key_text(",", k::kRecord)) || !string(&text)) return false;
    if (text == kAuditRecordStart) {
      out->start = true;
      if (!start_fields(out)) return false;
    } else if (text == kAuditRecordCommit) {
      if (!commit_fields(out)) return false;
    } else {
      return fail("a record of " + std::string(kAuditRecordStart) + " or " +
                  std::string(kAuditRecordCommit));
    }
    if (!lit(key_text(",", k::kPrev)) || !hex64(&out->prev) || !lit("}")) return false;
    if (pos_ != s_.size()) return fail("the end of the line after the closing }");
    return true;
  }

  /// What was expected where parsing stopped: "column C: expected X".
  const std::string& error() const { return error_; }

 private:
  /// Consumes the fields of a start record after `record` (run to
  /// tailError) into `out`, or fails.
  bool start_fields(AuditLine* out) {
    namespace k = audit_key;
    std::string text;
    if (!lit(key_text(",", k::kRun))) return false;
    const size_t at = pos_;
    if (!string(&text)) return false;
    bool ok = text.size() == 2 * out->run.size();
    for (size_t i = 0; ok && i < out->run.size(); ++i) {
      unsigned hi = 0, lo = 0;
      ok = hex_value(text[2 * i], &hi) && hex_value(text[2 * i + 1], &lo);
      out->run[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    if (!ok) {
      pos_ = at;
      return fail("a run id of 32 lower-case hex digits");
    }
    if (!ids(out)) return false;
    if (!lit(key_text(",", k::kTail)) || !string(&text)) return false;
    auto tail = std::find(kAuditTailNames.begin(), kAuditTailNames.end(), text);
    if (tail == kAuditTailNames.end())
      return fail("a tail of " + join_names(kAuditTailNames, " or "));
    out->tail = static_cast<AuditTail>(tail - kAuditTailNames.begin());
    return lit(key_text(",", k::kTailError)) && string(&out->tail_error);
  }

  /// Consumes pid, uid and gid into `out`, or fails.
  bool ids(AuditLine* out) {
    namespace k = audit_key;
    int64_t sint = 0;
    uint64_t uint = 0;
    if (!lit(key_text(",", k::kPid)) || !signed_number(INT32_MIN, INT32_MAX, &sint)) return false;
    out->pid = static_cast<int32_t>(sint);
    if (!lit(key_text(",", k::kUid)) || !number(UINT32_MAX, &uint)) return false;
    out->uid = static_cast<uint32_t>(uint);
    if (!lit(key_text(",", k::kGid)) || !number(UINT32_MAX, &uint)) return false;
    out->gid = static_cast<uint32_t>(uint);
    return true;
  }

  /// Consumes the fields of a commit record after `record` (outcome to
  /// durationMicros) into `out`, or fails.
  bool commit_fields(AuditLine* out) {
    namespace k = audit_key;
    if (!lit(key_text(",", k::kOutcome)) || !string(&out->outcome)) return false;
    if (!one_of(kAuditOutcomes, out->outcome)) {
      return fail("an outcome of " + join_names(kAuditOutcomes, " or "));
    }
    if (!ids(out)) return false;
    if (!lit(key_text(",", k::kComment)) || !string(&out->comment)) return false;
    if (!lit(key_text(",", k::kGeneration) + key_text("{", k::kBefore)) ||
        !number(UINT64_MAX, &out->generation_before) || !lit(key_text(",", k::kAfter)) ||
        !number(UINT64_MAX, &out->generation_after) || !lit("}")) {
      return false;
    }
    if (!lit(key_text(",", k::kDigest) + key_text("{", k::kBefore)) ||
        !hex64(&out->digest_before) || !lit(key_text(",", k::kAfter)) ||
        !hex64(&out->digest_after) || !lit("}")) {
      return false;
    }
    if (!lit(key_text(",", k::kAdded)) || !string_array(&out->added)) return false;
    if (!lit(key_text(",", k::kRemoved)) || !string_array(&out->removed)) return false;
    if (!lit(key_text(",", k::kCounts) + key_text("{", k::kKept)) || !count(&out->kept) ||
        !lit(key_text(",", k::kOpened)) || !count(&out->opened) ||
        !lit(key_text(",", k::kClosed)) || !count(&out->closed) ||
        !lit(key_text(",", k::kRebound)) || !count(&out->rebound) || !lit("}")) {
      return false;
    }
    if (!lit(key_text(",", k::kFailures)) || !failure_array(&out->failures)) return false;
    return lit(key_text(",", k::kDurationMicros)) && number(UINT64_MAX, &out->duration_micros);
  }

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

  /// Consumes a listener count (a canonical decimal of at most 32 bits), or fails.
  bool count(uint32_t* out) {
    uint64_t value = 0;
    if (!number(UINT32_MAX, &value)) return false;
    *out = static_cast<uint32_t>(value);
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
  /// bytes it stands for in `out`, or fails. Raw bytes must be printable
  /// ASCII; \u escapes must be \u00xx in lower-case hex, and only for bytes
  /// that have no shorter form and are not printable ASCII.
  bool string(std::string* out) {
    out->clear();
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
      out->push_back(static_cast<char>(byte));
    }
    return fail("the closing quote of a string");
  }

  /// Consumes a string of exactly 64 lower-case hex digits into `out`, or fails.
  bool hex64(Sha256Digest* out) {
    std::string text;
    size_t start = pos_;
    if (!string(&text)) return false;
    bool ok = text.size() == 2 * out->size();
    for (size_t i = 0; ok && i < out->size(); ++i) {
      unsigned hi = 0, lo = 0;
      ok = hex_value(text[2 * i], &hi) && hex_value(text[2 * i + 1], &lo);
      (*out)[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    if (!ok) {
      pos_ = start;
      return fail("a SHA-256 as 64 lower-case hex digits");
    }
    return true;
  }

  /// Consumes "[", then strings separated by ",", then "]", into `out`, or fails.
  bool string_array(std::vector<std::string>* out) {
    if (!lit("[")) return false;
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      out->emplace_back();
      if (!string(&out->back())) return false;
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      return lit("]");
    }
  }

  /// Consumes one failure object, keys in order, into `out`, or fails.
  bool failure(AuditFailure* out) {
    namespace k = audit_key;
    std::string text;
    int64_t sint = 0;
    uint64_t uint = 0;
    if (!lit(key_text("{", k::kKind)) || !string(&out->kind)) return false;
    if (!one_of(kAuditFailureKinds, out->kind)) {
      return fail("a failure kind (" + join_names(kAuditFailureKinds, ", ") + ")");
    }
    if (!lit(key_text(",", k::kPif)) || !string(&text)) return false;
    const std::array<std::string_view, kPifCount> pifs = pif_names();
    auto pif = std::find(pifs.begin(), pifs.end(), text);
    if (pif == pifs.end()) return fail("a pif of " + join_names(pifs, " or "));
    out->pif = static_cast<Pif>(pif - pifs.begin());
    if (!lit(key_text(",", k::kRule)) || !signed_number(INT32_MIN, INT32_MAX, &sint)) return false;
    out->rule = static_cast<int32_t>(sint);
    if (!lit(key_text(",", k::kPort)) || !number(UINT16_MAX, &uint)) return false;
    out->port = static_cast<uint16_t>(uint);
    if (!lit(key_text(",", k::kErrno)) || !signed_number(INT32_MIN, INT32_MAX, &sint)) {
      return false;
    }
    out->err = static_cast<int32_t>(sint);
    return lit(key_text(",", k::kErrnoName)) && string(&out->errno_name) &&
           lit(key_text(",", k::kMessage)) && string(&out->message) && lit("}");
  }

  /// Consumes "[", then failure objects separated by ",", then "]", into
  /// `out`, or fails.
  bool failure_array(std::vector<AuditFailure>* out) {
    if (!lit("[")) return false;
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      out->emplace_back();
      if (!failure(&out->back())) return false;
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

}  // namespace

std::string audit_time_text(int64_t unix_millis) {
  uint64_t ms = static_cast<uint64_t>(std::clamp<int64_t>(unix_millis, 0, kMaxAuditUnixMillis));
  uint64_t days = ms / 86400000;
  uint64_t in_day = ms % 86400000;
  // H. Hinnant's civil_from_days: days since 0000-03-01, in 400-year eras;
  // all values are non-negative here.
  uint64_t z = days + 719468;
  uint64_t era = z / 146097;
  uint64_t doe = z - era * 146097;                                       // [0, 146096]
  uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
  uint64_t mp = (5 * doy + 2) / 153;                                     // [0, 11], March = 0
  uint64_t day = doy - (153 * mp + 2) / 5 + 1;
  uint64_t month = mp < 10 ? mp + 3 : mp - 9;
  uint64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);

  std::string out;
  out.reserve(24);
  append_padded(out, year, 4);
  out += '-';
  append_padded(out, month, 2);
  out += '-';
  append_padded(out, day, 2);
  out += 'T';
  append_padded(out, in_day / 3600000, 2);
  out += ':';
  append_padded(out, in_day / 60000 % 60, 2);
  out += ':';
  append_padded(out, in_day / 1000 % 60, 2);
  out += '.';
  append_padded(out, in_day % 1000, 3);
  out += 'Z';
  return out;
}

std::string audit_run_hex(const AuditRunId& run) {
  return run_hex(run);
}

std::string render_audit_line(const AuditLine& line) {
  if (line.start) {
    JsonWriter w(JsonText::kAscii);
    write_start_line(w, line);
    std::string out = w.str() + "\n";
    // Its only free text, tail_error, is cut to kMaxAuditItemBytes (6 bytes
    // a byte when escaped): far under the limit.
    CHECK_MSG(out.size() <= kMaxAuditLineBytes, "a start record outgrew its limit");
    return out;
  }
  // The fixed part: the line with its three lists empty, newline included.
  JsonWriter bare(JsonText::kAscii);
  write_line(bare, line, ListKeep{}, false);
  const size_t fixed = bare.str().size() + 1;
  CHECK_MSG(fixed + 3 * kMarkerReserve < kMaxAuditLineBytes,
            "the fixed part of an audit line must leave room for the lists");

  ListKeep keep = fit_lists(item_costs(line), kMaxAuditLineBytes - fixed);
  JsonWriter w(JsonText::kAscii);
  write_line(w, line, keep, true);
  std::string out;
  out.reserve(w.str().size() + 1);
  out += w.str();
  out += '\n';
  CHECK_MSG(out.size() <= kMaxAuditLineBytes, "an audit line outgrew its limit");
  return out;
}

Result<AuditLine> parse_audit_line(std::string_view line) {
  LineParser parser(line);
  AuditLine out;
  if (!parser.parse(&out)) return Err(parser.error());
  return out;
}

}  // namespace sluice
