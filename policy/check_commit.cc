// The one rule check (see check_commit.h).
#include "policy/check_commit.h"

#include <algorithm>
#include <string>

#include "policy/validate.h"

namespace sluice {
namespace {

/// True when a listener of `s` can receive sluice's own connections: they
/// travel on lo, so a socket bound to any other interface never sees them.
bool sees_local_traffic(const Rule& s) noexcept {
  return s.ifname.empty() || s.ifname == "lo";
}

/// True when a listener of `s` accepts connections to the loopback address `t`.
bool serves_loopback(const Rule& s, const Addr& t) noexcept {
  if (!sees_local_traffic(s)) return false;
  if (s.dual_stack) return true;
  if (addr_is_v4(s.listen) != addr_is_v4(t)) return false;
  return addr_is_unspecified(s.listen) || s.listen == t;
}

/// True when `s` listens explicitly on the address `t` (not a wildcard).
bool listens_on(const Rule& s, const Addr& t) noexcept {
  return sees_local_traffic(s) && !s.dual_stack && !addr_is_unspecified(s.listen) && s.listen == t;
}

/// True when a wildcard listener of `s` (dual-stack, or the unspecified
/// address of `t`'s family) would accept connections to `t` if `t` were one
/// of the host's own addresses.
bool wildcard_for(const Rule& s, const Addr& t) noexcept {
  if (!sees_local_traffic(s)) return false;
  if (s.dual_stack) return true;
  return addr_is_v4(s.listen) == addr_is_v4(t) && addr_is_unspecified(s.listen);
}

/// True when a listener of `s` may accept a connection that the target
/// namespace (a --netns) sends to its address `t`: `t` may be an address of
/// this host that the namespace routes back to (a veth's host end), and the
/// connection then arrives on that interface, not on lo, so an interface
/// binding does not keep it out.
bool may_route_back(const Rule& s, const Addr& t) noexcept {
  if (s.dual_stack) return true;
  return addr_is_v4(s.listen) == addr_is_v4(t) && (addr_is_unspecified(s.listen) || s.listen == t);
}

/// The target port range of `r`: [*t0, *t1].
void target_ports(const Rule& r, unsigned* t0, unsigned* t1) noexcept {
  *t0 = r.to;
  *t1 = static_cast<unsigned>(r.to) + (r.last - r.first);
}

/// The listen part of `r` in spec syntax, with its "/": "" for dual-stack
/// any, "0.0.0.0/", "[::1]/", "*%eth0/", "127.0.0.1%eth0/".
std::string listen_spec(const Rule& r) {
  std::string out;
  if (!r.dual_stack) {
    out = addr_is_v4(r.listen) ? format_addr(r.listen) : "[" + format_addr(r.listen) + "]";
  } else if (!r.ifname.empty()) {
    out = "*";
  }
  if (!r.ifname.empty()) out += "%" + r.ifname;
  return out.empty() ? out : out + "/";
}

/// `r` as a spec whose target ports start at `to` instead: "8080:9080",
/// "0.0.0.0/8000-8010:9000-9010", "127.0.0.1/80:192.0.2.1/1080".
std::string respec_to(const Rule& r, unsigned to) {
  const unsigned span = static_cast<unsigned>(r.last - r.first);
  auto range = [span](unsigned first) {
    return span == 0 ? std::to_string(first)
                     : std::to_string(first) + "-" + std::to_string(first + span);
  };
  std::string target = is_default_target(r.target) ? std::string() : format_addr(r.target) + "/";
  if (!target.empty() && !addr_is_v4(r.target)) target = "[" + format_addr(r.target) + "]/";
  return listen_spec(r) + range(r.first) + ":" + target + range(to);
}

/// Builds the failure for rule `i` (`r`) forwarding into rule `j` (`s`) at
/// target address `t`. The advice keeps the rule's listen address and
/// target, and moves only its target ports where they fit; a rule that
/// forwards each port to itself on loopback (`-t 8080`, `-t all`) is what
/// publishing a container looks like, so it points to --netns first.
control::Failure loop_failure(size_t i, const Rule& r, size_t j, const Rule& s, const Addr& t) {
  unsigned t0, t1;
  target_ports(r, &t0, &t1);
  const unsigned port = std::max<unsigned>(t0, s.first);
  control::Failure f;
  f.kind = control::FailureKind::kInvalid;
  f.pif = Pif::kHost;
  f.rule = static_cast<int32_t>(i);
  f.text = format_rule(r);
  f.port = static_cast<uint16_t>(r.first + (port - t0));
  if (i != j) f.other_rule = static_cast<int32_t>(j);
  const bool loopback = is_default_target(r.target);
  // Target ports 1000 up (or down) from the listening ones, when they fit;
  // none for a best-effort rule (from `all` or exclusions: thousands of
  // ports, which no shift suits).
  std::string example;
  if (!r.weak && r.last + 1000u <= kMaxPort && r.first + 1000u != t0) {
    example = respec_to(r, r.first + 1000u);
  } else if (!r.weak && r.first > 1000 && r.first - 1000u != t0) {
    example = respec_to(r, r.first - 1000u);
  }
  const std::string move = example.empty()
                               ? std::string("map it to ports nothing forwards")
                               : "map it to ports nothing forwards (e.g. " + example + ")";
  f.message = "HOST rule " + std::to_string(i) + " (" + f.text + ") forwards port " +
              std::to_string(f.port) + " to port " + std::to_string(port) + " of " +
              (loopback ? std::string("loopback") : format_addr(t)) + ", where " +
              (i == j ? std::string("the rule itself")
                      : "HOST rule " + std::to_string(j) + " (" + format_rule(s) + ")") +
              " listens: every connection would come back into sluice and multiply; ";
  if (i == j && loopback && t0 == r.first) {
    f.message +=
        "to publish a container's ports, start sluiced with --netns PID|PATH (the container's "
        "network namespace), where the default target is the container's loopback; to forward "
        "on this host, " +
        move + " or give a target address";
  } else {
    f.message += move + " or give " + (loopback ? "a target address" : "another target address");
  }
  return f;
}

/// Returns a failure for every table with rules that the server does not
/// serve: such rules could never forward.
std::vector<control::Failure> unserved_tables(const TableSet& tables, const CommitFacts& facts) {
  std::vector<control::Failure> out;
  for (size_t p = 0; p < kPifCount; ++p) {
    const Pif pif = static_cast<Pif>(p);
    if (facts.served[p] || tables.of(pif).rules.empty()) continue;
    control::Failure f;
    f.kind = control::FailureKind::kInvalid;
    f.pif = pif;
    f.message = std::string(pif_name(pif)) +
                " table: this server does not serve it (its hello lists no " + pif_name(pif) +
                " table), so its rules cannot forward; " +
                (pif == Pif::kSplice
                     ? "SPLICE rules (-T/-U) listen inside a target namespace and connect to "
                       "sluiced's side, and this sluiced has none; start sluiced with --netns "
                       "PATH|PID (the container's network namespace) to serve them, or drop "
                       "the -T/-U options"
                     : "drop the -t/-u options");
    out.push_back(std::move(f));
  }
  return out;
}

/// True when `r` listens on the wildcard of its side (dual-stack, 0.0.0.0 or
/// ::, with or without an interface): every other socket on its port there
/// clashes with it in the kernel.
bool listens_on_wildcard(const Rule& r) {
  return r.dual_stack || addr_is_unspecified(r.listen);
}

}  // namespace

std::vector<control::Failure> find_certain_loops(const TableSet& tables, const CommitFacts& facts) {
  std::vector<control::Failure> out;
  if (!facts.targets_share_namespace) return out;
  const Table& table = tables.of(Pif::kHost);
  for (size_t i = 0; i < table.rules.size(); ++i) {
    const Rule& r = table.rules[i];
    unsigned t0, t1;
    target_ports(r, &t0, &t1);
    const std::vector<Addr> targets = rule_target_addresses(r);
    bool found = false;
    for (size_t j = 0; j < table.rules.size() && !found; ++j) {
      const Rule& s = table.rules[j];
      if (s.proto != r.proto || s.last < t0 || s.first > t1) continue;
      for (const Addr& t : targets) {
        const bool loops = addr_is_loopback(t) ? serves_loopback(s, t) : listens_on(s, t);
        if (!loops) continue;
        out.push_back(loop_failure(i, r, j, s, t));
        found = true;  // one failure per looping rule
        break;
      }
    }
  }
  return out;
}

std::vector<control::Failure> find_cross_table_loops(const TableSet& tables,
                                                     const CommitFacts& facts) {
  std::vector<control::Failure> out;
  // Without a target namespace both tables are on one side; SPLICE is then
  // not served at all (unserved_tables).
  if (facts.targets_share_namespace) return out;
  const Table& host = tables.of(Pif::kHost);
  const Table& splice = tables.of(Pif::kSplice);
  for (size_t i = 0; i < host.rules.size(); ++i) {
    const Rule& h = host.rules[i];
    if (!is_default_target(h.target) && !addr_is_loopback(h.target)) continue;
    bool found = false;
    for (size_t j = 0; j < splice.rules.size() && !found; ++j) {
      const Rule& s = splice.rules[j];
      if (s.proto != h.proto) continue;
      if (!is_default_target(s.target) && !addr_is_loopback(s.target)) continue;
      // An auto-scan rule listens on a port only while a socket that is not
      // sluice's holds its target port on the other side (each side's scan
      // leaves sluice's own listeners out: worker/port_scan.h). Where the
      // other rule listens on its side's wildcard, that socket and the other
      // rule's listener cannot both be bound, so the two never listen at
      // once: no circle (-t auto -T auto, -t auto -T 5432, -t 8080 -T auto).
      if ((h.scan && listens_on_wildcard(s)) || (s.scan && listens_on_wildcard(h))) continue;
      // Port p goes to q = p + dh inside, and q back to q + ds here: the
      // same port again exactly when the offsets cancel.
      const long dh = static_cast<long>(h.to) - h.first;
      const long ds = static_cast<long>(s.to) - s.first;
      if (dh + ds != 0) continue;
      // The ports of `h` whose target `s` listens on.
      const long first = std::max<long>(h.first, static_cast<long>(s.first) - dh);
      const long last = std::min<long>(h.last, static_cast<long>(s.last) - dh);
      if (first > last) continue;
      for (bool v4 : {true, false}) {
        // A connection of family v4 (the default targets keep it).
        const Addr inside = is_default_target(h.target) ? loopback_addr(v4) : h.target;
        const Addr here =
            is_default_target(s.target) ? loopback_addr(addr_is_v4(inside)) : s.target;
        if (!serves_loopback(s, inside) || !serves_loopback(h, here)) continue;
        control::Failure f;
        f.kind = control::FailureKind::kInvalid;
        f.pif = Pif::kHost;
        f.rule = static_cast<int32_t>(i);
        f.text = format_rule(h);
        f.port = static_cast<uint16_t>(first);
        const std::string p = std::to_string(first);
        const std::string q = std::to_string(first + dh);
        f.message = "HOST rule " + std::to_string(i) + " (" + f.text + ") forwards port " + p +
                    " to port " + q + " of the target namespace's loopback, where SPLICE rule " +
                    std::to_string(j) + " (" + format_rule(s) +
                    ") listens and forwards it back to port " + p +
                    " on this side, where the HOST rule listens: every connection would circle "
                    "between them and multiply; map one of them to a port the other does not "
                    "use";
        out.push_back(std::move(f));
        found = true;  // one failure per looping HOST rule
        break;
      }
    }
  }
  return out;
}

std::vector<bool> rules_needing_loop_guard(const Table& table, const CommitFacts& facts) {
  std::vector<bool> out(table.rules.size(), false);
  if (table.pif != Pif::kHost) return out;
  for (size_t i = 0; i < table.rules.size(); ++i) {
    const Rule& r = table.rules[i];
    // Loopback (the default target included) is the target namespace's own
    // when targets are reached there: it cannot lead back here.
    if (is_default_target(r.target) || addr_is_loopback(r.target)) continue;
    unsigned t0, t1;
    target_ports(r, &t0, &t1);
    for (const Rule& s : table.rules) {
      if (s.proto == r.proto && s.last >= t0 && s.first <= t1 &&
          (facts.targets_share_namespace ? wildcard_for(s, r.target)
                                         : may_route_back(s, r.target))) {
        out[i] = true;
        break;
      }
    }
  }
  return out;
}

std::vector<control::Failure> check_commit(const TableSet& tables, const CommitFacts& facts,
                                           const TargetPolicy* target_policy) {
  std::vector<control::Failure> failures = validate_tables(tables, facts.caps);
  if (!failures.empty()) return failures;
  failures = unserved_tables(tables, facts);
  if (!failures.empty()) return failures;
  failures = find_certain_loops(tables, facts);
  if (!failures.empty()) return failures;
  failures = find_cross_table_loops(tables, facts);
  if (!failures.empty()) return failures;
  if (target_policy != nullptr) failures = check_table_targets(*target_policy, tables);
  return failures;
}

}  // namespace sluice
