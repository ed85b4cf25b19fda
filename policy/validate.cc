// The one rule validator: per-rule checks, conflicts found by a sorted sweep,
// and table limits. The same code runs in sluicectl (for fast feedback) and in
// the worker (with authority), so every message is written for a person: what
// failed, on which rule (index and listing text), why, and what to do.
#include "policy/validate.h"

#include <algorithm>
#include <map>

#include "base/check.h"
#include "base/strings.h"

namespace sluice {
namespace {

/// Limit: issues reported per table. A hostile or badly generated table of
/// 4096 rules could otherwise produce tens of thousands of messages, more than
/// a reply frame holds; the first hundred are enough to fix the input.
constexpr size_t kMaxIssuesPerTable = 100;

/// Returns "-t", "-u", "-T" or "-U": the option that makes rules of `pif` and `proto`.
std::string option_of(Pif pif, Proto proto) {
  if (pif == Pif::kHost) return proto == Proto::kTcp ? "-t" : "-u";
  return proto == Proto::kTcp ? "-T" : "-U";
}

/// Returns "HOST rule 3 (TCP [*]:22 => 22)", sanitized for display.
std::string rule_label(Pif pif, int index, const Rule& rule) {
  return std::string(pif_name(pif)) + " rule " + std::to_string(index) + " (" +
         sanitize(format_rule(rule)) + ")";
}

/// Returns "N" or "N-M".
std::string range_text(unsigned first, unsigned last) {
  std::string out = std::to_string(first);
  if (last != first) out += "-" + std::to_string(last);
  return out;
}

/// Returns the ports part of a spec that makes `rule`, e.g. "22-80:192.0.2.1/32-90".
std::string spec_ports(const Rule& rule) {
  std::string out = range_text(rule.first, rule.last);
  bool mapped = rule.to != rule.first;
  if (!is_default_target(rule.target)) {
    out += ":";
    out +=
        addr_is_v4(rule.target) ? format_addr(rule.target) : "[" + format_addr(rule.target) + "]";
    if (mapped) out += "/";
  } else if (mapped) {
    out += ":";
  }
  if (mapped) out += range_text(rule.to, rule.to + (rule.last - rule.first));
  return out;
}

/// Returns what is wrong with an interface name (empty when it is fine): at
/// most 15 bytes, not "." or "..", no whitespace, control bytes, '/' or ':',
/// which is what the kernel accepts as a name.
std::string ifname_problem(const std::string& name) {
  if (name.size() > kMaxIfNameLen) {
    return "its interface name is " + std::to_string(name.size()) +
           " bytes long, and Linux interface names have at most 15";
  }
  if (name == "." || name == "..") return "'" + name + "' is not an interface name";
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '/' || c == ':') {
      return "its interface name contains " + sanitize(std::string_view(&c, 1)) +
             ", which no interface name can contain";
    }
  }
  return "";
}

/// Collects the issues of one rule with a common prefix.
class RuleIssues {
 public:
  /// Prepares to report on rule `index` of `pif`.
  RuleIssues(Pif pif, int index, const Rule& rule)
      : pif_(pif), index_(index), label_(rule_label(pif, index, rule)), text_(format_rule(rule)) {}

  /// Adds an invalid-rule issue: "LABEL: WHY; WHAT TO DO".
  void add(const std::string& why) {
    control::Failure issue;
    issue.kind = control::FailureKind::kInvalid;
    issue.pif = pif_;
    issue.rule = index_;
    issue.text = text_;
    issue.message = label_ + ": " + why;
    issues_.push_back(std::move(issue));
  }

  /// Hands over the issues collected.
  std::vector<control::Failure> take() { return std::move(issues_); }

 private:
  Pif pif_;
  int index_;
  std::string label_;
  std::string text_;  // the rule in listing format (Failure::text)
  std::vector<control::Failure> issues_;
};

/// Checks the ports of `rule`: the range order, port 0 on either side, and a
/// target range that runs past 65535.
void check_ports(const Rule& rule, RuleIssues* out) {
  if (rule.first > rule.last) {
    out->add("its port range " + std::to_string(rule.first) + "-" + std::to_string(rule.last) +
             " runs backwards; write " + range_text(rule.last, rule.first));
    return;
  }
  if (rule.first == 0) {
    out->add("it forwards from port 0, which cannot be listened on; use ports 1-65535");
  }
  unsigned to_last = static_cast<unsigned>(rule.to) + (rule.last - rule.first);
  if (rule.to == 0) {
    out->add("it forwards to port 0, which cannot be connected to; use target ports 1-65535");
  } else if (to_last > 65535) {
    out->add("its target ports " + range_text(rule.to, to_last) +
             " run past 65535 (they would wrap to port 0); give a target range that ends at "
             "65535 or below, e.g. " +
             range_text(65535 - (rule.last - rule.first), 65535));
  }
}

/// Checks the listen address, the target address and their families.
void check_addresses(Pif pif, const Rule& rule, RuleIssues* out) {
  bool target_default = is_default_target(rule.target);
  bool target_v4 = !target_default && addr_is_v4(rule.target);
  bool target_v6 = !target_default && !addr_is_v4(rule.target);
  if (rule.dual_stack && !addr_is_zero(rule.listen)) {
    out->add("it is dual-stack but listens on " + format_addr(rule.listen) +
             "; a dual-stack rule listens on every address ([*]), so drop the address or the "
             "dual-stack flag");
  }
  if (rule.dual_stack && target_v4) {
    std::string why =
        "it listens dual-stack, and IPv6 clients cannot be forwarded to the IPv4 "
        "target " +
        format_addr(rule.target) + "; ";
    if (pif == Pif::kHost) {
      why += "to forward IPv4 clients only, write " + option_of(pif, rule.proto) + " 0.0.0.0" +
             (rule.ifname.empty() ? "" : "%" + sanitize(rule.ifname)) + "/" + spec_ports(rule);
    } else {
      why += "give an IPv6 target, or leave the target out for the default";
    }
    out->add(why);
  }
  if (!rule.dual_stack && addr_is_v4(rule.listen) && target_v6) {
    out->add("it listens on IPv4 (" + format_addr(rule.listen) +
             ") and cannot forward to the IPv6 target " + format_addr(rule.target) +
             "; give an IPv4 target, or listen on an IPv6 address");
  }
  if (!target_default && addr_is_multicast(rule.target)) {
    out->add("its target " + format_addr(rule.target) +
             " is a multicast address, which cannot take a connection or a flow; give a unicast "
             "target address");
  }
  // A loopback address is what pesto writes for -T/-U on a server without
  // SO_BINDTODEVICE (127.0.0.1 and ::1 instead of %lo), and pasta takes it:
  // such a listener still hears only the namespace's own processes.
  if (pif == Pif::kSplice && !addr_is_unspecified(rule.listen) && !addr_is_loopback(rule.listen)) {
    out->add(
        "SPLICE rules (-T/-U) listen on the loopback of the target namespace and take no "
        "other listen address; drop " +
        format_addr(rule.listen) + " (or give 127.0.0.1 or ::1)");
  }
  // The wildcard only with lo: on every interface of the namespace, a SPLICE
  // listener would hand this side's loopback services to the container's
  // network (sluiced refuses such a listener).
  if (pif == Pif::kSplice && (rule.dual_stack || addr_is_unspecified(rule.listen)) &&
      rule.ifname.empty()) {
    out->add(
        "SPLICE rules (-T/-U) listen on the loopback of the target namespace, and this one "
        "would listen on every interface there; bind it to lo (sluicectl's -T/-U do)");
  }
}

/// Checks the interface name and, for SPLICE, that it is the implied "lo".
void check_ifname(Pif pif, const Rule& rule, RuleIssues* out) {
  if (rule.ifname.empty()) return;
  std::string problem = ifname_problem(rule.ifname);
  if (!problem.empty()) {
    out->add(problem + "; check the name with `ip link`");
    return;
  }
  if (pif == Pif::kSplice && rule.ifname != "lo") {
    out->add(
        "SPLICE rules (-T/-U) listen on the loopback (lo) of the target namespace and take "
        "no interface; drop %" +
        sanitize(rule.ifname));
  }
}

/// Checks that the server can do what the rule needs: its protocol, address
/// families, auto-scan and interface binding.
void check_caps(Pif pif, const Rule& rule, const ServerCaps& caps, RuleIssues* out) {
  if (rule.proto == Proto::kTcp && !caps.tcp) {
    out->add("the server has TCP forwarding disabled; remove the TCP rules (-t/-T)");
  }
  if (rule.proto == Proto::kUdp && !caps.udp) {
    out->add("the server has UDP forwarding disabled; remove the UDP rules (-u/-U)");
  }
  if (rule.dual_stack && !(caps.ipv4 && caps.ipv6)) {
    out->add(std::string("it is dual-stack, but the server has no ") +
             (caps.ipv4 ? "IPv6" : "IPv4") + "; listen on " + (caps.ipv4 ? "0.0.0.0" : "::") +
             " instead (sluicectl does this for a spec "
             "without an address when it knows the server)");
  } else if (!rule.dual_stack) {
    bool v4 = addr_is_v4(rule.listen);
    if (v4 && !caps.ipv4) {
      out->add("it listens on IPv4, which the server has disabled; listen on an IPv6 address");
    }
    if (!v4 && !caps.ipv6) {
      out->add("it listens on IPv6, which the server has disabled; listen on an IPv4 address");
    }
  }
  if (!is_default_target(rule.target)) {
    bool v4 = addr_is_v4(rule.target);
    if (v4 && !caps.ipv4) {
      out->add("its target is IPv4, which the server has disabled; give an IPv6 target");
    }
    if (!v4 && !caps.ipv6) {
      out->add("its target is IPv6, which the server has disabled; give an IPv4 target");
    }
  }
  if (rule.scan && !caps.scan) {
    out->add(
        "auto (auto-scan) needs a target namespace whose bound ports it follows: start "
        "sluiced with --netns PATH|PID (the container's network namespace), or drop auto and "
        "list the ports to forward");
  }
  // SPLICE's "lo" is implied by -T/-U and bound by the server its own way.
  bool implied_lo = pif == Pif::kSplice && rule.ifname == "lo";
  if (!rule.ifname.empty() && !implied_lo && !caps.ifname) {
    out->add("it binds to interface " + sanitize(rule.ifname) +
             ", which the server cannot do (no SO_BINDTODEVICE); drop %" + sanitize(rule.ifname));
  }
}

/// The highest-reaching rule seen so far in one address class of the sweep.
struct Witness {
  unsigned last = 0;
  int index = -1;

  /// Records `rule` (index `i`) if it reaches further than the current witness.
  void offer(const Rule& rule, int i) {
    if (index < 0 || rule.last > last) {
      last = rule.last;
      index = i;
    }
  }
  /// True when some rule of the class overlaps a rule starting at `first`
  /// (every rule offered so far starts at or before it).
  bool reaches(unsigned first) const { return index >= 0 && last >= first; }
};

/// The address classes that decide which rules can conflict.
enum class AddrClass { kDual, kV4Any, kV4, kV6Any, kV6 };

/// Returns the class of a rule's listen side.
AddrClass classify(const Rule& rule) {
  if (rule.dual_stack) return AddrClass::kDual;
  if (addr_is_v4(rule.listen)) {
    return addr_is_unspecified(rule.listen) ? AddrClass::kV4Any : AddrClass::kV4;
  }
  return addr_is_zero(rule.listen) ? AddrClass::kV6Any : AddrClass::kV6;
}

/// Returns why two conflicting rules match on addresses, for the message.
std::string conflict_reason(const Rule& a, const Rule& b) {
  if (a.dual_stack || b.dual_stack) {
    return "a dual-stack rule ([*]) listens on every IPv4 and IPv6 address";
  }
  if (addr_is_v4(a.listen) && (addr_is_unspecified(a.listen) || addr_is_unspecified(b.listen))) {
    return "0.0.0.0 covers every IPv4 address";
  }
  if (addr_is_zero(a.listen) || addr_is_zero(b.listen)) return ":: covers every IPv6 address";
  return "both listen on " + format_addr(a.listen);
}

/// Builds the conflict issue between rules `i` and `j` of `table` (i > j).
control::Failure conflict_issue(const Table& table, int i, int j) {
  const Rule& a = table.rules[static_cast<size_t>(i)];
  const Rule& b = table.rules[static_cast<size_t>(j)];
  unsigned lo = std::max(a.first, b.first);
  unsigned hi = std::min(a.last, b.last);
  control::Failure issue;
  issue.kind = control::FailureKind::kConflict;
  issue.pif = table.pif;
  issue.rule = i;
  issue.text = format_rule(a);
  issue.other_rule = j;
  if (a == b) {
    // The commonest conflict: adding (-A) a rule the table already has.
    issue.message = rule_label(table.pif, i, a) + " is the same rule as rule " + std::to_string(j) +
                    ": the table already forwards exactly this, so there is nothing to add; "
                    "leave it out (sluicectl lists the tables in force)";
    return issue;
  }
  issue.message = rule_label(table.pif, i, a) + " conflicts with rule " + std::to_string(j) + " (" +
                  sanitize(format_rule(b)) + "): both listen for " + proto_name(a.proto) + " on " +
                  (lo == hi ? "port " : "ports ") + range_text(lo, hi) + ", and " +
                  conflict_reason(a, b) +
                  "; remove one of them, or change their ports so that they do not overlap "
                  "(interfaces and targets do not tell rules apart)";
  return issue;
}

/// Finds the conflicts of one table by a sweep over the rules sorted by
/// (protocol, first port): each rule is compared only with the furthest-
/// reaching earlier rule of each address class it can conflict with, so the
/// cost is O(n log n) and each rule is reported at most once, with one
/// partner. Rules whose range runs backwards are skipped (reported already).
void find_conflicts(const Table& table, std::vector<control::Failure>* out) {
  const std::vector<Rule>& rules = table.rules;
  std::vector<int> order;
  order.reserve(rules.size());
  for (size_t i = 0; i < rules.size(); ++i) {
    if (rules[i].first <= rules[i].last) order.push_back(static_cast<int>(i));
  }
  std::sort(order.begin(), order.end(), [&](int x, int y) {
    const Rule& a = rules[static_cast<size_t>(x)];
    const Rule& b = rules[static_cast<size_t>(y)];
    if (a.proto != b.proto) return a.proto < b.proto;
    if (a.first != b.first) return a.first < b.first;
    return x < y;
  });

  Witness any, dual, v4_all, v4_any, v6_all, v6_any;
  std::map<Addr, Witness> by_addr;  // specific addresses only
  for (size_t k = 0; k < order.size(); ++k) {
    int i = order[k];
    const Rule& rule = rules[static_cast<size_t>(i)];
    if (k > 0 && rules[static_cast<size_t>(order[k - 1])].proto != rule.proto) {
      any = dual = v4_all = v4_any = v6_all = v6_any = Witness{};
      by_addr.clear();
    }
    AddrClass cls = classify(rule);
    const Witness* candidates[3] = {nullptr, nullptr, nullptr};
    Witness* same_addr = nullptr;
    if (cls == AddrClass::kV4 || cls == AddrClass::kV6) same_addr = &by_addr[rule.listen];
    switch (cls) {
      case AddrClass::kDual:
        candidates[0] = &any;
        break;
      case AddrClass::kV4Any:
        candidates[0] = &dual;
        candidates[1] = &v4_all;
        break;
      case AddrClass::kV4:
        candidates[0] = &dual;
        candidates[1] = &v4_any;
        candidates[2] = same_addr;
        break;
      case AddrClass::kV6Any:
        candidates[0] = &dual;
        candidates[1] = &v6_all;
        break;
      case AddrClass::kV6:
        candidates[0] = &dual;
        candidates[1] = &v6_any;
        candidates[2] = same_addr;
        break;
    }
    int partner = -1;
    for (const Witness* w : candidates) {
      if (w != nullptr && w->reaches(rule.first) && (partner < 0 || w->index < partner)) {
        partner = w->index;
      }
    }
    if (partner >= 0) {
      CHECK(rules_conflict(rule, rules[static_cast<size_t>(partner)]));
      out->push_back(conflict_issue(table, std::max(i, partner), std::min(i, partner)));
    }

    any.offer(rule, i);
    switch (cls) {
      case AddrClass::kDual:
        dual.offer(rule, i);
        break;
      case AddrClass::kV4Any:
        v4_all.offer(rule, i);
        v4_any.offer(rule, i);
        break;
      case AddrClass::kV4:
        v4_all.offer(rule, i);
        same_addr->offer(rule, i);
        break;
      case AddrClass::kV6Any:
        v6_all.offer(rule, i);
        v6_any.offer(rule, i);
        break;
      case AddrClass::kV6:
        v6_all.offer(rule, i);
        same_addr->offer(rule, i);
        break;
    }
  }
}

/// Returns a table-level capacity issue.
control::Failure capacity_issue(Pif pif, std::string message) {
  control::Failure issue;
  issue.kind = control::FailureKind::kCapacity;
  issue.pif = pif;
  issue.message = std::move(message);
  return issue;
}

/// Validates one table: its size first (an oversized table is rejected on
/// that alone, so that the cost of the other checks stays bounded), then every
/// rule, the conflicts and the listener count. Appends at most
/// kMaxIssuesPerTable + 1 issues to `out`, sorted by rule index.
void validate_table(const Table& table, const ServerCaps& caps,
                    std::vector<control::Failure>* out) {
  const char* name = pif_name(table.pif);
  if (table.rules.size() > kMaxRulesPerTable) {
    out->push_back(capacity_issue(
        table.pif, std::string(name) + " table: it has " + std::to_string(table.rules.size()) +
                       " rules, over the limit of " + std::to_string(kMaxRulesPerTable) +
                       " per table; merge adjacent ports into ranges (22-25 instead of "
                       "22,23,24,25) or forward fewer ports"));
    return;
  }
  std::vector<control::Failure> issues;
  size_t listeners = count_listeners(table);
  if (listeners > kMaxListenersPerTable) {
    issues.push_back(capacity_issue(
        table.pif, std::string(name) + " table: its rules need " + std::to_string(listeners) +
                       " listening sockets (one per port of each rule), over the limit of " +
                       std::to_string(kMaxListenersPerTable) + "; forward fewer ports"));
  }
  for (size_t i = 0; i < table.rules.size(); ++i) {
    std::vector<control::Failure> rule_issues =
        validate_rule(table.pif, table.rules[i], static_cast<int>(i), caps);
    for (control::Failure& issue : rule_issues) issues.push_back(std::move(issue));
  }
  find_conflicts(table, &issues);
  std::stable_sort(
      issues.begin(), issues.end(),
      [](const control::Failure& a, const control::Failure& b) { return a.rule < b.rule; });
  if (issues.size() > kMaxIssuesPerTable) {
    size_t dropped = issues.size() - kMaxIssuesPerTable;
    control::FailureKind kind = issues[kMaxIssuesPerTable].kind;
    issues.resize(kMaxIssuesPerTable);
    control::Failure more;
    more.kind = kind;
    more.pif = table.pif;
    more.message = std::string(name) + " table: " + std::to_string(dropped) +
                   " more problems are not shown; fix the ones above and validate again";
    issues.push_back(std::move(more));
  }
  for (control::Failure& issue : issues) out->push_back(std::move(issue));
}

}  // namespace

bool rules_conflict(const Rule& a, const Rule& b) noexcept {
  if (a.proto != b.proto) return false;
  if (a.first > a.last || b.first > b.last) return false;  // an empty range overlaps nothing
  if (a.last < b.first || b.last < a.first) return false;
  if (a.dual_stack || b.dual_stack) return true;
  bool a4 = addr_is_v4(a.listen);
  bool b4 = addr_is_v4(b.listen);
  if (a4 != b4) return false;  // different families never share a socket address
  if (addr_is_unspecified(a.listen) || addr_is_unspecified(b.listen)) return true;
  return a.listen == b.listen;
}

std::vector<control::Failure> validate_rule(Pif pif, const Rule& rule, int index,
                                            const ServerCaps& caps) {
  RuleIssues issues(pif, index, rule);
  if (pif != Pif::kHost && pif != Pif::kSplice) {
    issues.add("it belongs to an unknown table (pif " + std::to_string(static_cast<unsigned>(pif)) +
               "); use HOST (-t/-u) or SPLICE (-T/-U)");
    return issues.take();
  }
  if (rule.proto != Proto::kTcp && rule.proto != Proto::kUdp) {
    issues.add("it has an unknown protocol (" + std::to_string(static_cast<unsigned>(rule.proto)) +
               "); use TCP or UDP");
    return issues.take();
  }
  check_ports(rule, &issues);
  check_addresses(pif, rule, &issues);
  check_ifname(pif, rule, &issues);
  check_caps(pif, rule, caps, &issues);
  return issues.take();
}

std::vector<control::Failure> validate_tables(const TableSet& tables, const ServerCaps& caps) {
  std::vector<control::Failure> out;
  for (size_t i = 0; i < kPifCount; ++i) {
    const Table& table = tables.tables[i];
    if (table.pif != static_cast<Pif>(i)) {
      control::Failure issue;
      issue.pif = static_cast<Pif>(i);
      issue.message = "table " + std::to_string(i) + " claims to be pif " +
                      std::to_string(static_cast<unsigned>(table.pif)) +
                      "; tables must be sent in pif order (HOST, SPLICE)";
      out.push_back(std::move(issue));
      continue;
    }
    validate_table(table, caps, &out);
  }
  return out;
}

}  // namespace sluice
