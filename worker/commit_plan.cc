#include "worker/commit_plan.h"

#include <algorithm>
#include <cerrno>
#include <map>

#include "base/strings.h"
#include "schema/broker_wire.h"

namespace sluice {
namespace {

/// The address families a key's socket covers.
struct Families {
  bool v4, v6;
};

/// Returns the families a listener binds: dual-stack covers both.
Families families(const ListenerKey& k) noexcept {
  if (k.dual_stack) return {true, true};
  bool v4 = addr_is_v4(k.addr);
  return {v4, !v4};
}

/// Appends the keys of rule `r` of `table` to `out`: every port, or for an
/// auto-scan rule the ports whose target is in `bound` of the rule's table
/// (none without it).
void append_rule_keys(const Table& table, size_t r, const PifPorts* bound,
                      std::vector<PlannedKey>* out) {
  const Rule& rule = table.rules[r];
  const KeyOrigin origin{table.pif, static_cast<uint32_t>(r)};
  std::vector<ListenerKey> keys;
  if (!rule.scan) {
    expand_listeners(Table{table.pif, {rule}}, &keys);
    for (const ListenerKey& k : keys) out->push_back(PlannedKey{k, origin});
    return;
  }
  if (bound == nullptr || rule.last < rule.first || rule.first == 0) return;
  // One key as a template, then only the ports that are bound on the other side.
  Rule one = rule;
  one.last = one.first;
  expand_listeners(Table{table.pif, {one}}, &keys);
  if (keys.size() != 1) return;
  ListenerKey key = keys[0];
  const PortSet& set = bound->of(table.pif).of(rule.proto);
  for (unsigned port = rule.first; port <= rule.last; ++port) {
    if (!set.test(scan_target_port(rule, static_cast<uint16_t>(port)))) continue;
    key.port = static_cast<uint16_t>(port);
    out->push_back(PlannedKey{key, origin});
  }
}

/// Sorts planned keys by key.
void sort_keys(std::vector<PlannedKey>* keys) {
  std::sort(keys->begin(), keys->end(),
            [](const PlannedKey& a, const PlannedKey& b) { return a.key < b.key; });
}

/// Plans the change from the sorted keys in force to the sorted `wanted`:
/// keep, open, close, and the opens that clash with a closing socket (the
/// rebinds, which share the port with it until the swap) with the sockets
/// they replace.
CommitPlan plan_to(std::span<const ListenerKey> installed, const std::vector<PlannedKey>& wanted) {
  CommitPlan plan;
  std::vector<PlannedKey> opens;
  // Merge-join two sorted sequences: O(n + m).
  size_t i = 0, j = 0;
  while (i < installed.size() || j < wanted.size()) {
    if (j == wanted.size() || (i < installed.size() && installed[i] < wanted[j].key)) {
      plan.close.push_back(i++);
    } else if (i == installed.size() || wanted[j].key < installed[i]) {
      opens.push_back(wanted[j++]);
    } else {
      plan.keep.push_back(CommitPlan::Keep{i++, wanted[j++].origin});
    }
  }
  // An open that clashes with a closing socket is a rebind, acquired to share
  // its port with that socket until the swap. Index the closing keys by
  // (protocol, port) and look each open up by range.
  struct Slot {
    Proto proto;
    uint16_t port;
    size_t installed;
    bool operator<(const Slot& o) const {
      return proto != o.proto ? proto < o.proto : port < o.port;
    }
  };
  std::vector<Slot> closing;
  closing.reserve(plan.close.size());
  for (size_t c : plan.close) closing.push_back(Slot{installed[c].proto, installed[c].port, c});
  std::sort(closing.begin(), closing.end());
  std::vector<bool> is_clashing(installed.size(), false);
  for (PlannedKey& open : opens) {
    auto range =
        std::equal_range(closing.begin(), closing.end(), Slot{open.key.proto, open.key.port, 0});
    bool clash = false;
    for (auto it = range.first; it != range.second; ++it) {
      if (kernel_clash(open.key, installed[it->installed])) {
        clash = true;
        is_clashing[it->installed] = true;
      }
    }
    (clash ? plan.rebind : plan.open).push_back(open);
  }
  for (size_t c : plan.close) {
    if (is_clashing[c]) plan.clashing.push_back(c);
  }
  return plan;
}

}  // namespace

std::vector<PlannedKey> planned_keys(const TableSet& tables, const PifPorts* bound) {
  std::vector<PlannedKey> out;
  for (size_t p = 0; p < kPifCount; ++p) {
    const Table& table = tables.tables[p];
    for (size_t r = 0; r < table.rules.size(); ++r) append_rule_keys(table, r, bound, &out);
  }
  sort_keys(&out);
  return out;
}

bool kernel_clash(const ListenerKey& a, const ListenerKey& b) noexcept {
  if (a.pif != b.pif || a.proto != b.proto || a.port != b.port) return false;
  if (a.ifname[0] != '\0' && b.ifname[0] != '\0' && a.ifname != b.ifname) return false;
  if (a.dual_stack || b.dual_stack) {
    Families fa = families(a), fb = families(b);
    return (fa.v4 && fb.v4) || (fa.v6 && fb.v6);
  }
  if (addr_is_v4(a.addr) != addr_is_v4(b.addr)) return false;
  return addr_is_unspecified(a.addr) || addr_is_unspecified(b.addr) || a.addr == b.addr;
}

CommitPlan plan_commit(std::span<const ListenerKey> installed, const TableSet& next,
                       const PifPorts* bound) {
  return plan_to(installed, planned_keys(next, bound));
}

CommitPlan plan_scan(std::span<const ListenerKey> installed, std::span<const KeyOrigin> origins,
                     const TableSet& tables, const PifPorts& bound) {
  std::vector<PlannedKey> wanted;
  for (size_t i = 0; i < installed.size(); ++i) {
    const Table& table = tables.of(origins[i].pif);
    const bool scan = origins[i].rule < table.rules.size() && table.rules[origins[i].rule].scan;
    if (!scan) wanted.push_back(PlannedKey{installed[i], origins[i]});
  }
  for (size_t p = 0; p < kPifCount; ++p) {
    const Table& table = tables.tables[p];
    for (size_t r = 0; r < table.rules.size(); ++r) {
      if (table.rules[r].scan) append_rule_keys(table, r, &bound, &wanted);
    }
  }
  sort_keys(&wanted);
  return plan_to(installed, wanted);
}

std::string bind_errno_advice(int err, uint16_t port, const BindContext& ctx) {
  std::string p = std::to_string(port);
  switch (err) {
    case EADDRINUSE:
      if (ctx.rebind) {
        // sluiced opens a rebind beside the listener it replaces, unless
        // another program's socket holds the port (broker/port_holders.h).
        return "the rule moves to another address of port " + p +
               ", and another program's socket holds that port" +
               (ctx.in_target_namespace ? " inside the target namespace" : "") +
               " at an address the new one overlaps, or sluiced could not tell who holds it "
               "(sluiced's log names the address, or says why); stop that program, give the "
               "rule an address that does not overlap it, or move the rule in two changes "
               "(remove it, then add it: the port is closed in between)";
      }
      return "another socket already listens on port " + p +
             (ctx.in_target_namespace ? " inside the target namespace" : "") +
             "; stop that service (see `" +
             (ctx.in_target_namespace ? "nsenter -t PID -U -n ss" : "ss") +
             " -ltnup sport = :" + p + "`) or forward a different port";
    case EACCES:
      if (port < ctx.unprivileged_port_start) {
        return "port " + p + " is below net.ipv4.ip_unprivileged_port_start (" +
               std::to_string(ctx.unprivileged_port_start) + ")" +
               (ctx.in_target_namespace
                    ? " of the target namespace, and sluiced holds no CAP_NET_BIND_SERVICE "
                      "there; run sluiced as the user who owns the namespace, or lower that "
                      "sysctl inside it"
                    : "; grant CAP_NET_BIND_SERVICE to sluiced or lower that sysctl");
      }
      return "the kernel refused the bind; check LSM policy (SELinux, AppArmor) for sluiced";
    case EADDRNOTAVAIL:
      return "the listen address is not configured on any interface of this host; add it or "
             "listen on another address";
    case ENODEV:
      return "the interface does not exist; check the name with `ip link`";
    case EAFNOSUPPORT:
      return "the address family is disabled on this host";
    case ETIMEDOUT:
      // No bind returns it: sluiced gives it when its namespace helper,
      // which opens listeners inside the target namespace, did not answer.
      return "sluiced's namespace helper (sluiced-netns), which opens listeners inside the "
             "target namespace, did not answer in time; sluiced's log says why (a stopped "
             "helper is continued with kill -CONT); try again once it answers";
    case EMFILE:
    case ENFILE:
      return "sluiced or the worker ran out of file descriptors; forward fewer ports, or raise "
             "the hard RLIMIT_NOFILE sluiced starts with (LimitNOFILE=, ulimit -Hn), which its "
             "workers take too";
    default:
      return "";
  }
}

std::vector<control::Failure> judge_rules(const TableSet& next, std::span<const PlannedKey> keys,
                                          std::span<const int32_t> status,
                                          std::span<const std::string> policy_reason,
                                          const BindContext& ctx,
                                          std::vector<control::Failure>* warnings) {
  // Per rule: how many of its ports failed (kept ports never fail).
  struct Tally {
    size_t failed = 0;
  };
  std::map<std::pair<Pif, uint32_t>, Tally> tally;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (status[i] != wire::kStatusOk) ++tally[{keys[i].origin.pif, keys[i].origin.rule}].failed;
  }
  std::vector<control::Failure> failures;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (status[i] == wire::kStatusOk) continue;
    const KeyOrigin& o = keys[i].origin;
    const Rule& rule = next.of(o.pif).rules[o.rule];
    size_t width = static_cast<size_t>(rule.last - rule.first) + 1;
    // A scan rule's port that fails is tried again at the next scan.
    bool rule_fails = rule.scan ? false : rule.weak ? tally[{o.pif, o.rule}].failed == width : true;
    control::Failure f;
    f.pif = o.pif;
    f.rule = static_cast<int32_t>(o.rule);
    f.text = format_rule(rule);
    f.port = keys[i].key.port;
    std::string where = std::string(pif_name(f.pif)) + " rule " + std::to_string(f.rule) + " (" +
                        f.text + "), port " + std::to_string(f.port) + ": ";
    if (status[i] == wire::kStatusPolicyDenied) {
      f.kind = control::FailureKind::kPolicyDenied;
      f.err = EACCES;
      f.message = where + "the bind policy refuses it: " +
                  (policy_reason[i].empty()
                       ? std::string("a line of its policy file refuses it (sluiced's log names "
                                     "the line); change the policy or the rule")
                       : policy_reason[i]);
    } else {
      f.kind = control::FailureKind::kBindFailed;
      f.err = status[i];
      BindContext where_ctx = ctx;
      where_ctx.rebind = i >= ctx.first_rebind;
      if (f.pif == Pif::kSplice) {
        where_ctx.has_bind_cap = ctx.splice_has_bind_cap;
        where_ctx.unprivileged_port_start = ctx.splice_unprivileged_port_start;
        where_ctx.in_target_namespace = true;
      }
      std::string advice = bind_errno_advice(f.err, f.port, where_ctx);
      const Addr& listen = keys[i].key.addr;
      if (f.err == EINVAL && !addr_is_v4(listen) && listen[0] == 0xfe &&
          (listen[1] & 0xc0) == 0x80 && keys[i].key.ifname[0] == '\0') {
        // fe80::/10 is ambiguous without an interface: the kernel wants one.
        advice = "a link-local address needs its interface: write [" + format_addr(listen) +
                 "]%IFNAME/" + std::to_string(f.port);
      }
      f.message =
          where + "bind failed: " + errno_text(f.err) + (advice.empty() ? "" : "; ") + advice;
    }
    if (rule_fails) {
      failures.push_back(std::move(f));
    } else if (warnings != nullptr) {
      const char* note = !rule.scan ? " (best effort: the rule keeps its other ports)"
                         : f.kind == control::FailureKind::kPolicyDenied
                             ? " (auto-scan: tried again once a policy reload or a commit changes "
                               "something)"
                             : " (auto-scan: tried again at the next scan)";
      f.message += note;
      warnings->push_back(std::move(f));
    }
  }
  auto by_place = [](const control::Failure& a, const control::Failure& b) {
    if (a.pif != b.pif) return a.pif < b.pif;
    if (a.rule != b.rule) return a.rule < b.rule;
    return a.port < b.port;
  };
  std::sort(failures.begin(), failures.end(), by_place);
  if (warnings != nullptr) std::sort(warnings->begin(), warnings->end(), by_place);
  return failures;
}

std::vector<std::string> rule_diff(const TableSet& a, const TableSet& b) {
  std::vector<std::string> out;
  for (size_t p = 0; p < kPifCount; ++p) {
    std::map<std::string, int> remaining;
    for (const Rule& r : b.tables[p].rules) ++remaining[format_rule(r)];
    for (const Rule& r : a.tables[p].rules) {
      std::string text = format_rule(r);
      auto it = remaining.find(text);
      if (it != remaining.end() && it->second > 0) {
        --it->second;
        continue;
      }
      out.push_back(std::string(pif_name(a.tables[p].pif)) + " " + text);
    }
  }
  return out;
}

}  // namespace sluice
