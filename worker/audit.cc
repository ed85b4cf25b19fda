// The audit log writer: formats one JSON line per commit attempt, chains it to
// the previous line with SHA-256, and writes it with one write(2) when the
// sink has room; what a non-blocking sink pushes back waits, bounded, for the
// sink to drain. The line format is specified in docs/AUDIT.md;
// client/audit_verify.cc reads it back.
//
// Everything here runs inside the worker's seccomp sandbox, so it uses only
// `write`, `epoll_ctl` (through the event loop) and `clock_gettime`
// (CLOCK_REALTIME, normally through the vDSO).
// In particular it does not call gmtime_r or strftime: glibc's first time
// conversion initialises the time zone, which opens /etc/localtime, and
// `open` is not on the worker's allowlist. The civil date is computed here.
#include "worker/audit.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <string_view>

#include "base/check.h"
#include "base/json_escape.h"
#include "base/strings.h"

namespace sluice {
namespace {

/// Limit: input bytes of one rule text or failure message in a line. A rule in
/// listing format is under 200 bytes and a message is one line of prose; the
/// cap only bounds a line's fixed part so that the cut in fit_lists() works.
constexpr size_t kMaxItemBytes = 4096;

/// Limit: the latest time a line can show, 9999-12-31T23:59:59.999Z, so that
/// the year always has four digits (the verifier checks the shape). A clock
/// before 1970 is shown as 1970-01-01T00:00:00.000Z.
constexpr int64_t kMaxUnixMillis = 253402300799999;

/// Bytes set aside per list for the entry that says how many items were cut.
/// The longest such entry (a failure object with a 20-digit count) is under
/// 200 bytes.
constexpr size_t kMarkerReserve = 256;

/// Limit: write(2) attempts for one line. Only EINTR is retried (nothing was
/// written); a sink that keeps failing must not hold up the event loop.
constexpr int kMaxWriteAttempts = 4;

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr std::string_view kZeroHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Appends the decimal form of `value` to `out`. Never fails.
void append_uint(std::string& out, uint64_t value) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, res.ptr);
}

/// Appends the decimal form of `value` (with "-" when negative). Never fails.
void append_int(std::string& out, int64_t value) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, res.ptr);
}

/// Appends `bytes` as a JSON string literal, quotes included, cut to
/// `max_bytes` input bytes (a cut string ends in "...[N bytes cut]").
/// Escaping is total and ASCII-only (base/json_escape.h, JsonText::kAscii),
/// so the result is printable ASCII and no input can end the string or the
/// line early. Never fails.
void append_cut_json_string(std::string& out, std::string_view bytes, size_t max_bytes) {
  size_t n = std::min(bytes.size(), max_bytes);
  append_json_string(&out, bytes.substr(0, n), JsonText::kAscii);
  out.pop_back();  // reopen the string for the cut marker
  if (n < bytes.size()) {
    out += "...[";
    append_uint(out, bytes.size() - n);
    out += " bytes cut]";
  }
  out += '"';
}

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

/// Appends `unix_millis` as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, proleptic
/// Gregorian), clamped to years 1970..9999. Pure arithmetic (H. Hinnant's
/// civil_from_days): no time zone, no locale, no syscall. Never fails.
void append_utc_time(std::string& out, int64_t unix_millis) {
  uint64_t ms = static_cast<uint64_t>(std::clamp<int64_t>(unix_millis, 0, kMaxUnixMillis));
  uint64_t days = ms / 86400000;
  uint64_t in_day = ms % 86400000;
  // Days since 0000-03-01, in 400-year eras; all values are non-negative here.
  uint64_t z = days + 719468;
  uint64_t era = z / 146097;
  uint64_t doe = z - era * 146097;                                       // [0, 146096]
  uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
  uint64_t mp = (5 * doy + 2) / 153;                                     // [0, 11], March = 0
  uint64_t day = doy - (153 * mp + 2) / 5 + 1;
  uint64_t month = mp < 10 ? mp + 3 : mp - 9;
  uint64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);

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
}

/// Returns one failure as a JSON object, keys in the documented order. The
/// errno name is empty when `err` is 0. Never fails.
std::string failure_json(const control::Failure& f) {
  std::string out = "{\"kind\":\"";
  out += control::failure_kind_name(f.kind);
  out += "\",\"pif\":\"";
  out += pif_name(f.pif);
  out += "\",\"rule\":";
  append_int(out, f.rule);
  out += ",\"port\":";
  append_uint(out, f.port);
  out += ",\"errno\":";
  append_int(out, f.err);
  out += ",\"errnoName\":\"";
  if (f.err != 0) out += errno_name(f.err);
  out += "\",\"message\":";
  append_cut_json_string(out, f.message, kMaxItemBytes);
  out += '}';
  return out;
}

/// Returns the entry that ends a cut failures list: kind "capacity", rule -1,
/// and a message with the number left out. Never fails.
std::string failures_cut_marker(size_t left_out) {
  control::Failure marker;
  marker.kind = control::FailureKind::kCapacity;
  marker.message = std::to_string(left_out) +
                   " more failures not recorded: an audit line is limited to " +
                   std::to_string(kMaxAuditLineBytes) + " bytes";
  return failure_json(marker);
}

/// Returns the string that ends a cut added or removed list. It starts with
/// "(", which no rule text does. Never fails.
std::string rules_cut_marker(size_t left_out) {
  std::string out;
  append_cut_json_string(out,
                         "(" + std::to_string(left_out) +
                             " more rules not recorded: an audit line is limited to " +
                             std::to_string(kMaxAuditLineBytes) + " bytes)",
                         kMaxItemBytes);
  return out;
}

/// Returns the bytes the first `count` items of `items` take in a JSON array
/// (each item plus one separator).
size_t items_cost(const std::vector<std::string>& items, size_t count) {
  size_t cost = 0;
  for (size_t i = 0; i < count; ++i) cost += items[i].size() + 1;
  return cost;
}

/// Decides how many leading items of each list fit into `budget` bytes. When
/// all fit, all are kept. Otherwise the budget, less one cut-marker reserve
/// per list, is shared fairly: the shortest lists are kept whole if they fit
/// their share, and what they leave is shared by the others, each of which
/// keeps the prefix that fits. Returns the counts kept. Never fails.
std::array<size_t, 3> fit_lists(const std::array<const std::vector<std::string>*, 3>& lists,
                                size_t budget) {
  std::array<size_t, 3> keep{};
  std::array<size_t, 3> full{};
  size_t total = 0;
  for (size_t i = 0; i < 3; ++i) {
    keep[i] = lists[i]->size();
    full[i] = items_cost(*lists[i], keep[i]);
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
      const std::vector<std::string>& items = *lists[idx];
      size_t k = 0;
      while (k < items.size() && used + items[k].size() + 1 <= share) {
        used += items[k].size() + 1;
        ++k;
      }
      keep[idx] = k;
    }
    remaining -= used;
    --left;
  }
  return keep;
}

/// Appends `items[0..keep)` as a JSON array, followed by `marker` when items
/// were left out. Never fails.
void append_array(std::string& out, const std::vector<std::string>& items, size_t keep,
                  const std::string& marker) {
  out += '[';
  for (size_t i = 0; i < keep; ++i) {
    if (i > 0) out += ',';
    out += items[i];
  }
  if (keep < items.size()) {
    if (keep > 0) out += ',';
    out += marker;
  }
  out += ']';
}

/// Returns CLOCK_REALTIME in milliseconds since the epoch, clamped to the
/// range a line can show; 0 if the clock cannot be read (never expected).
/// Needs `clock_gettime(CLOCK_REALTIME)` (normally served by the vDSO).
int64_t realtime_millis() noexcept {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
  int64_t ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  return std::clamp<int64_t>(ms, 0, kMaxUnixMillis);
}

}  // namespace

std::string AuditLog::format_line(const AuditRecord& record, uint64_t sequence, int64_t unix_millis,
                                  const Sha256Digest& prev, bool chain_start) const {
  // The fixed part before the lists.
  std::string head = "{\"seq\":";
  append_uint(head, sequence);
  head += ",\"time\":\"";
  append_utc_time(head, unix_millis);
  head += "\",\"outcome\":\"";
  head += control::outcome_name(record.outcome);
  head += "\",\"pid\":";
  append_int(head, record.peer.pid);
  head += ",\"uid\":";
  append_uint(head, record.peer.uid);
  head += ",\"gid\":";
  append_uint(head, record.peer.gid);
  head += ",\"comment\":";
  append_cut_json_string(head, record.comment, control::kMaxCommentBytes);
  head += ",\"generation\":{\"before\":";
  append_uint(head, record.generation_before);
  head += ",\"after\":";
  append_uint(head, record.generation_after);
  head += "},\"digest\":{\"before\":\"";
  head += to_hex(record.digest_before);
  head += "\",\"after\":\"";
  head += to_hex(record.digest_after);
  head += "\"},\"added\":";

  std::string counts = ",\"counts\":{\"kept\":";
  append_uint(counts, record.kept);
  counts += ",\"opened\":";
  append_uint(counts, record.opened);
  counts += ",\"closed\":";
  append_uint(counts, record.closed);
  counts += ",\"rebound\":";
  append_uint(counts, record.rebound);
  counts += "},\"failures\":";

  std::string tail = ",\"durationMicros\":";
  append_uint(tail, record.duration_micros);
  tail += chain_start ? ",\"chain\":\"start\"" : ",\"chain\":\"continue\"";
  tail += ",\"prev\":\"";
  tail += chain_start ? std::string(kZeroHash) : to_hex(prev);
  tail += "\"}\n";

  // The lists, each item formatted once, then cut to what fits.
  std::vector<std::string> added, removed, failures;
  added.reserve(record.added.size());
  for (const std::string& rule : record.added) {
    added.emplace_back();
    append_cut_json_string(added.back(), rule, kMaxItemBytes);
  }
  removed.reserve(record.removed.size());
  for (const std::string& rule : record.removed) {
    removed.emplace_back();
    append_cut_json_string(removed.back(), rule, kMaxItemBytes);
  }
  failures.reserve(record.failures.size());
  for (const control::Failure& f : record.failures) failures.push_back(failure_json(f));

  // 6 bytes: the brackets of the three arrays; ",\"removed\":" is 11.
  const size_t fixed = head.size() + counts.size() + tail.size() + 6 + 11;
  CHECK_MSG(fixed + 3 * kMarkerReserve < kMaxAuditLineBytes,
            "the fixed part of an audit line must leave room for the lists");
  std::array<size_t, 3> keep = fit_lists({&added, &removed, &failures}, kMaxAuditLineBytes - fixed);

  std::string line = std::move(head);
  line.reserve(kMaxAuditLineBytes);
  append_array(line, added, keep[0], rules_cut_marker(added.size() - keep[0]));
  line += ",\"removed\":";
  append_array(line, removed, keep[1], rules_cut_marker(removed.size() - keep[1]));
  line += counts;
  append_array(line, failures, keep[2], failures_cut_marker(failures.size() - keep[2]));
  line += tail;
  CHECK_MSG(line.size() <= kMaxAuditLineBytes, "an audit line outgrew its limit");
  return line;
}

control::HistoryEntry AuditLog::write(const AuditRecord& record) noexcept {
  const int64_t now = realtime_millis();
  const uint64_t sequence = sequence_ + 1;
  std::string line = format_line(record, sequence, now, prev_, sequence_ == 0);
  // The chain continues from the line as formatted, written or not: a lost
  // line then shows as a broken chain, which is the signal it deserves.
  sequence_ = sequence;
  prev_ = sha256(line.data(), line.size());

  if (pending_bytes_ + line.size() > kMaxAuditBacklogBytes) {
    ++failed_writes_;
    if (warn_limit_.allow()) {
      LOG_WARN(
          "audit line %llu dropped: the audit sink on fd %d has not taken the last %zu bytes; "
          "the audit chain will show the gap (%llu lines lost so far); make sure whatever "
          "reads sluiced's stderr keeps reading, or use --audit-log FILE",
          static_cast<unsigned long long>(sequence), fd_, pending_bytes_,
          static_cast<unsigned long long>(failed_writes_));
    }
  } else {
    pending_bytes_ += line.size();
    pending_.push_back(Waiting{sequence, std::move(line), 0});
    flush();
  }

  control::HistoryEntry entry;
  entry.sequence = sequence;
  entry.unix_millis = now;
  entry.pid = record.peer.pid;
  entry.uid = record.peer.uid;
  entry.gid = record.peer.gid;
  entry.comment = record.comment;
  entry.outcome = record.outcome;
  entry.generation_before = record.generation_before;
  entry.generation_after = record.generation_after;
  entry.added = record.added;
  entry.removed = record.removed;
  entry.kept = record.kept;
  entry.opened = record.opened;
  entry.closed = record.closed;
  entry.rebound = record.rebound;
  entry.failures = static_cast<uint32_t>(record.failures.size());
  entry.duration_micros = record.duration_micros;
  return entry;
}

bool AuditLog::flush() noexcept {
  while (!pending_.empty()) {
    Waiting& head = pending_.front();
    // Only EINTR (nothing written) is retried at once.
    ssize_t n = -1;
    int err = 0;
    for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
      n = ::write(fd_, head.text.data() + head.sent, head.text.size() - head.sent);
      err = n < 0 ? errno : 0;
      if (!(n < 0 && err == EINTR)) break;
    }
    if (n > 0) {
      head.sent += static_cast<size_t>(n);
      pending_bytes_ -= static_cast<size_t>(n);
      if (head.sent == head.text.size()) pending_.pop_front();
      continue;
    }
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
      watch();
      return false;
    }
    drop_head(n == 0 ? EIO : err);
  }
  return true;
}

void AuditLog::on_event(uint32_t /*events*/) noexcept {
  flush();
}

void AuditLog::drop_head(int err) noexcept {
  Waiting& head = pending_.front();
  ++failed_writes_;
  if (warn_limit_.allow()) {
    if (head.sent == 0) {
      LOG_WARN(
          "audit line %llu was not written to fd %d: %s; the audit chain will show it "
          "missing (%llu lines not written so far); check the --audit-log sink",
          static_cast<unsigned long long>(head.sequence), fd_, errno_text(err).c_str(),
          static_cast<unsigned long long>(failed_writes_));
    } else {
      LOG_WARN(
          "audit line %llu was cut short on fd %d: %zu of %zu bytes written (%s); the audit "
          "chain will show a damaged line (%llu lines not written whole so far)",
          static_cast<unsigned long long>(head.sequence), fd_, head.sent, head.text.size(),
          errno_text(err).c_str(), static_cast<unsigned long long>(failed_writes_));
    }
  }
  pending_bytes_ -= head.text.size() - head.sent;
  pending_.pop_front();
}

void AuditLog::watch() noexcept {
  if (watching_ || loop_ == nullptr) return;
  // Edge-triggered: one wake-up each time the reader makes room. A sink that
  // cannot be watched (epoll refuses it) is retried on the next write().
  if (loop_->add(fd_, EPOLLOUT | EPOLLET, this)) watching_ = true;
}

}  // namespace sluice
