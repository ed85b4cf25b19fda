#include "client/render.h"

#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <map>

#include "base/json.h"
#include "base/strings.h"

namespace sluice {
namespace {

/// Limit: bytes of one server-supplied text (message, comment, rule text)
/// printed to a terminal. Messages are a few lines of prose; the cut keeps a
/// hostile server from flooding the screen with one string.
constexpr size_t kMaxPrintedText = 4096;

/// Returns the pifs to show: the Hello's, in its order, then any other pif
/// that has rules in `tables` (never hide a rule).
std::vector<control::PifInfo> shown_pifs(const TableSet& tables,
                                         const control::ServerHello& hello) {
  std::vector<control::PifInfo> out = hello.pifs;
  for (size_t p = 0; p < kPifCount; ++p) {
    Pif pif = static_cast<Pif>(p);
    bool listed = false;
    for (const control::PifInfo& info : hello.pifs) listed = listed || info.pif == pif;
    if (!listed && !tables.of(pif).rules.empty()) out.push_back({pif, pif_name(pif)});
  }
  return out;
}

/// Returns the texts of the rules of `table`, in order.
std::vector<std::string> rule_texts(const Table& table) {
  std::vector<std::string> out;
  out.reserve(table.rules.size());
  for (const Rule& rule : table.rules) out.push_back(sanitize(format_rule(rule), kMaxPrintedText));
  return out;
}

/// Appends "PREFIX PIF TEXT\n" for each text of `from` that `minus` does not
/// hold (as a multiset), in order.
void append_difference(const std::vector<std::string>& from, const std::vector<std::string>& minus,
                       const std::string& prefix, std::string* out) {
  std::map<std::string, size_t> count;
  for (const std::string& t : minus) ++count[t];
  for (const std::string& t : from) {
    auto it = count.find(t);
    if (it != count.end() && it->second > 0) {
      --it->second;
      continue;
    }
    *out += prefix + t + "\n";
  }
}

/// Writes the JSON of one rule.
void rule_json(const Rule& rule, JsonWriter* w) {
  w->begin_object();
  w->key("proto");
  w->string(rule.proto == Proto::kTcp ? "tcp" : "udp");
  w->key("listen");
  w->string(rule.dual_stack ? "*" : format_addr(rule.listen));
  w->key("ifname");
  if (rule.ifname.empty()) {
    w->null();
  } else {
    w->string(rule.ifname);
  }
  w->key("first");
  w->number(rule.first);
  w->key("last");
  w->number(rule.last);
  w->key("to");
  w->number(rule.to);
  w->key("target");
  if (is_default_target(rule.target)) {
    w->null();
  } else {
    w->string(format_addr(rule.target));
  }
  w->key("weak");
  w->boolean(rule.weak);
  w->key("scan");
  w->boolean(rule.scan);
  w->key("text");
  w->string(format_rule(rule));
  w->end_object();
}

/// Writes "pifs":[...] for `tables`: name, the server's capabilities that are
/// on, and the rules.
void pifs_json(const TableSet& tables, const control::ServerHello& hello, JsonWriter* w) {
  w->key("pifs");
  w->begin_array();
  for (const control::PifInfo& pif : shown_pifs(tables, hello)) {
    w->begin_object();
    w->key("name");
    w->string(pif.name);
    w->key("caps");
    w->begin_array();
    const ServerCaps& c = hello.caps;
    const std::pair<bool, const char*> caps[] = {{c.ipv4, "IPv4"}, {c.ipv6, "IPv6"},
                                                 {c.tcp, "TCP"},   {c.udp, "UDP"},
                                                 {c.scan, "SCAN"}, {c.ifname, "IFNAME"}};
    for (const auto& [on, name] : caps) {
      if (on) w->string(name);
    }
    w->end_array();
    w->key("rules");
    w->begin_array();
    for (const Rule& rule : tables.of(pif.pif).rules) rule_json(rule, w);
    w->end_array();
    w->end_object();
  }
  w->end_array();
}

/// Writes the state object: generation, digest and pifs.
void state_json(const control::State& state, const control::ServerHello& hello, JsonWriter* w) {
  w->begin_object();
  w->key("generation");
  w->number(state.generation);
  w->key("digest");
  w->string(to_hex(state.digest));
  pending_json(state.pending_confirm, w);
  pifs_json(state.tables, hello, w);
  w->end_object();
}

/// Writes a key and an array of strings.
void strings_json(const char* key, const std::vector<std::string>& values, JsonWriter* w) {
  w->key(key);
  w->begin_array();
  for (const std::string& v : values) w->string(v);
  w->end_array();
}

}  // namespace

void failure_json(const control::Failure& f, JsonWriter* w) {
  w->begin_object();
  w->key("pif");
  w->string(pif_name(f.pif));
  w->key("rule");
  if (f.rule < 0) {
    w->null();
  } else {
    w->signed_number(f.rule);
  }
  w->key("text");
  if (f.text.empty()) {
    w->null();
  } else {
    w->string(f.text);
  }
  w->key("port");
  if (f.port == 0) {
    w->null();
  } else {
    w->number(f.port);
  }
  w->key("errno");
  if (f.err == 0) {
    w->null();
  } else {
    w->signed_number(f.err);
  }
  w->key("errnoName");
  if (f.err == 0) {
    w->null();
  } else {
    w->string(errno_name(f.err));
  }
  w->key("kind");
  w->string(control::failure_kind_name(f.kind));
  w->key("message");
  w->string(f.message);
  w->end_object();
}

std::string render_tables(const TableSet& tables, const control::ServerHello& hello) {
  std::string out;
  for (const control::PifInfo& pif : shown_pifs(tables, hello)) {
    out += sanitize(pif.name, kMaxPrintedText);
    out += '\n';
    const Table& table = tables.of(pif.pif);
    if (table.rules.empty()) out += "    (no rules)\n";
    for (const std::string& text : rule_texts(table)) out += "    " + text + "\n";
  }
  return out;
}

std::string render_state(const control::State& state, const control::ServerHello& hello) {
  return "generation " + std::to_string(state.generation) + ", digest " + to_hex(state.digest) +
         "\n" + (state.pending_confirm ? render_pending(*state.pending_confirm) : "") +
         render_tables(state.tables, hello);
}

std::string render_diff(const TableSet& before, const TableSet& after,
                        const control::ServerHello& hello) {
  TableSet both = before;  // pifs with rules on either side
  for (size_t p = 0; p < kPifCount; ++p) {
    if (both.tables[p].rules.empty()) both.tables[p] = after.tables[p];
  }
  std::string out;
  for (const control::PifInfo& pif : shown_pifs(both, hello)) {
    std::string name = sanitize(pif.name, kMaxPrintedText);
    std::vector<std::string> old_texts = rule_texts(before.of(pif.pif));
    std::vector<std::string> new_texts = rule_texts(after.of(pif.pif));
    append_difference(old_texts, new_texts, "- " + name + " ", &out);
    append_difference(new_texts, old_texts, "+ " + name + " ", &out);
  }
  return out;
}

std::string render_show(const control::State& before, const TableSet& after,
                        const control::ServerHello& hello) {
  std::string diff = render_diff(before.tables, after, hello);
  return "before: " + render_state(before, hello) + "after: digest " +
         to_hex(control::digest_tables(after)) + "\n" + render_tables(after, hello) + "diff:\n" +
         (diff.empty() ? std::string("    (no change)\n") : diff);
}

std::string render_commit_summary(const control::CommitResult& r) {
  std::string out;
  if (r.dry_run) {
    out = "dry run: would keep " + std::to_string(r.kept) + ", open " + std::to_string(r.opened) +
          ", close " + std::to_string(r.closed) + ", rebind " + std::to_string(r.rebound) +
          "; nothing changed";
  } else {
    out = "applied: generation " + std::to_string(r.generation) + ", kept " +
          std::to_string(r.kept) + ", opened " + std::to_string(r.opened) + ", closed " +
          std::to_string(r.closed) + ", rebound " + std::to_string(r.rebound) + "; digest " +
          to_hex(r.digest);
  }
  return out;
}

namespace {

/// Returns `message` with every occurrence of `port` as a word of its own
/// (not within a longer number or a name such as "ipv4") replaced by "#", so that the failures of
/// two ports of one rule compare equal when they say the same thing.
std::string without_port(const std::string& message, uint16_t port) {
  const std::string digits = std::to_string(port);
  std::string out;
  size_t i = 0;
  while (i < message.size()) {
    const bool starts = message.compare(i, digits.size(), digits) == 0;
    // A whole word: not part of a longer number, nor of a name ("ipv4").
    const bool before_ok = i == 0 || !std::isalnum(static_cast<unsigned char>(message[i - 1]));
    const size_t end = i + digits.size();
    const bool after_ok =
        end >= message.size() || !std::isalnum(static_cast<unsigned char>(message[end]));
    if (starts && before_ok && after_ok) {
      out += '#';
      i = end;
    } else {
      out += message[i++];
    }
  }
  return out;
}

/// Returns what `f` says but for its port: the message's "RULE, port P: "
/// prefix without P, and the reason after it with P as "#" (a reason may
/// name the port). The rule's own text, before the prefix's port, is kept
/// whole: it holds numbers (its range) that may equal the port.
std::string reason_of(const control::Failure& f) {
  const std::string where = ", port " + std::to_string(f.port) + ": ";
  const size_t at = f.message.find(where);
  if (at == std::string::npos) return without_port(f.message, f.port);
  return f.message.substr(0, at) +
         ", port #: " + without_port(f.message.substr(at + where.size()), f.port);
}

/// True when `next` is the failure of the port after `prev`'s, of the same
/// rule, for the same reason (the same kind, errno and message but for the
/// port number).
bool same_reason_next_port(const control::Failure& prev, const control::Failure& next) {
  return prev.rule >= 0 && next.rule == prev.rule && next.pif == prev.pif &&
         next.kind == prev.kind && next.err == prev.err && prev.port != 0 &&
         next.port == prev.port + 1 && reason_of(next) == reason_of(prev);
}

}  // namespace

std::vector<std::string> render_failures(const std::vector<control::Failure>& failures) {
  std::vector<std::string> out;
  out.reserve(failures.size());
  for (size_t i = 0; i < failures.size();) {
    const control::Failure& f = failures[i];
    // A run of ports of one rule that failed for the same reason (a range
    // below the privileged port limit, a missing interface) is one line,
    // not one per port.
    size_t end = i + 1;
    while (end < failures.size() && same_reason_next_port(failures[end - 1], failures[end])) ++end;
    std::string line = std::string(control::failure_kind_name(f.kind)) + ": " +
                       sanitize(f.message, kMaxPrintedText);
    if (end - i > 1) {
      line += "; the same for port" + std::string(end - i > 2 ? "s " : " ") +
              std::to_string(f.port + 1) +
              (end - i > 2 ? "-" + std::to_string(failures[end - 1].port) : "") + " (" +
              std::to_string(end - i) + " ports in all)";
    }
    out.push_back(std::move(line));
    i = end;
  }
  return out;
}

std::string format_utc_millis(int64_t unix_millis) {
  // Split into days and milliseconds of the day, flooring for times before 1970.
  constexpr int64_t kDayMillis = 86400000;
  int64_t days = unix_millis / kDayMillis;
  int64_t ms = unix_millis % kDayMillis;
  if (ms < 0) {
    ms += kDayMillis;
    --days;
  }
  // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil,
  // inverted): proleptic Gregorian calendar, eras of 400 years.
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  char buf[64];
  std::snprintf(buf, sizeof(buf),
                "%04" PRId64 "-%02" PRId64 "-%02" PRId64 "T%02" PRId64 ":%02" PRId64 ":%02" PRId64
                ".%03" PRId64 "Z",
                y, m, d, ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, ms % 1000);
  return buf;
}

std::string render_history(const control::History& history) {
  if (history.entries.empty()) return "(no commits yet)\n";
  std::string out;
  for (const control::HistoryEntry& e : history.entries) {
    char duration[32];
    std::snprintf(duration, sizeof(duration), "%.1f ms",
                  static_cast<double>(e.duration_micros) / 1000.0);
    out += "#" + std::to_string(e.sequence) + " " + format_utc_millis(e.unix_millis) + " " +
           control::outcome_name(e.outcome) + " pid " + std::to_string(e.pid) + " uid " +
           std::to_string(e.uid) + " gid " + std::to_string(e.gid) + " generation " +
           std::to_string(e.generation_before) + "->" + std::to_string(e.generation_after) +
           ", kept " + std::to_string(e.kept) + ", opened " + std::to_string(e.opened) +
           ", closed " + std::to_string(e.closed) + ", rebound " + std::to_string(e.rebound) +
           ", failures " + std::to_string(e.failures) + ", " + duration;
    if (!e.comment.empty()) out += ": \"" + sanitize(e.comment, kMaxPrintedText) + "\"";
    out += '\n';
    for (const std::string& text : e.added)
      out += "    + " + sanitize(text, kMaxPrintedText) + "\n";
    for (const std::string& text : e.removed) {
      out += "    - " + sanitize(text, kMaxPrintedText) + "\n";
    }
  }
  return out;
}

std::string render_state_json(const control::State& state, const control::ServerHello& hello) {
  JsonWriter w;
  state_json(state, hello, &w);
  CHECK(w.complete());
  return w.str() + "\n";
}

std::string render_edit_json(const control::State& before, const TableSet& after,
                             const control::CommitResult& result, const control::ServerHello& hello,
                             bool unchanged) {
  JsonWriter w;
  w.begin_object();
  w.key("before");
  state_json(before, hello, &w);
  w.key("after");
  w.begin_object();
  w.key("generation");
  w.null();  // not committed when this is written: the server assigns it
  w.key("digest");
  w.string(to_hex(control::digest_tables(after)));
  pifs_json(after, hello, &w);
  w.end_object();
  w.key("result");
  w.begin_object();
  w.key("applied");
  w.boolean(result.applied);
  w.key("dryRun");
  w.boolean(result.dry_run);
  w.key("unchanged");
  w.boolean(unchanged);
  w.key("generation");
  w.number(result.generation);
  w.key("digest");
  w.string(to_hex(result.digest));
  w.key("kept");
  w.number(result.kept);
  w.key("opened");
  w.number(result.opened);
  w.key("closed");
  w.number(result.closed);
  w.key("rebound");
  w.number(result.rebound);
  w.key("durationMicros");
  w.number(result.duration_micros);
  w.key("failures");
  w.begin_array();
  for (const control::Failure& f : result.failures) failure_json(f, &w);
  w.end_array();
  w.key("warnings");
  w.begin_array();
  for (const control::Failure& f : result.warnings) failure_json(f, &w);
  w.end_array();
  w.end_object();
  w.end_object();
  CHECK(w.complete());
  return w.str() + "\n";
}

std::string render_history_json(const control::History& history) {
  JsonWriter w;
  w.begin_array();
  for (const control::HistoryEntry& e : history.entries) {
    w.begin_object();
    w.key("sequence");
    w.number(e.sequence);
    w.key("time");
    w.string(format_utc_millis(e.unix_millis));
    w.key("unixMillis");
    w.signed_number(e.unix_millis);
    w.key("outcome");
    w.string(control::outcome_name(e.outcome));
    w.key("pid");
    w.signed_number(e.pid);
    w.key("uid");
    w.number(e.uid);
    w.key("gid");
    w.number(e.gid);
    w.key("comment");
    w.string(e.comment);
    w.key("generationBefore");
    w.number(e.generation_before);
    w.key("generationAfter");
    w.number(e.generation_after);
    strings_json("added", e.added, &w);
    strings_json("removed", e.removed, &w);
    w.key("kept");
    w.number(e.kept);
    w.key("opened");
    w.number(e.opened);
    w.key("closed");
    w.number(e.closed);
    w.key("rebound");
    w.number(e.rebound);
    w.key("failures");
    w.number(e.failures);
    w.key("durationMicros");
    w.number(e.duration_micros);
    w.end_object();
  }
  w.end_array();
  CHECK(w.complete());
  return w.str() + "\n";
}

}  // namespace sluice
