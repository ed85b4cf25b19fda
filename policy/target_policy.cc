// The target policy check (see target_policy.h).
#include "policy/target_policy.h"

#include <cstring>

namespace sluice {
namespace {

/// Returns true when `proto` is one of the rule's protocols.
bool proto_matches(const TargetRule& rule, Proto proto) noexcept {
  return proto == Proto::kTcp ? rule.tcp : rule.udp;
}

/// Returns true when ADDRS of `rule` contains `addr` (IPv4 v4-mapped).
bool addr_matches(const TargetRule& rule, const Addr& addr) noexcept {
  if (rule.any_addr) return true;
  const wire::WireFamily family =
      addr_is_v4(addr) ? wire::WireFamily::kInet : wire::WireFamily::kInet6;
  for (const AddrPrefix& p : rule.addrs) {
    if (prefix_contains(p, family, addr.data())) return true;
  }
  return false;
}

/// Returns true when PORTS of `rule` contains `port`.
bool port_matches(const TargetRule& rule, uint16_t port) noexcept {
  if (rule.any_port) return true;
  for (const PortRange& r : rule.ports) {
    if (port >= r.first && port <= r.last) return true;
  }
  return false;
}

/// Builds the failure for a denied destination of rule `index` in `pif`.
control::Failure denial(const TargetPolicy& policy, Pif pif, const Rule& rule, int index,
                        const Addr& addr, uint16_t port, const TargetRule* line) {
  control::Failure issue;
  issue.kind = control::FailureKind::kPolicyDenied;
  issue.pif = pif;
  issue.rule = index;
  issue.text = format_rule(rule);
  issue.port = port;
  const std::string dest = std::string(proto_name(rule.proto)) + " " +
                           (addr_is_v4(addr) ? format_addr(addr) : "[" + format_addr(addr) + "]") +
                           " port " + std::to_string(port);
  std::string why;
  if (line != nullptr) {
    why = "denied by " + policy.source + " line " + std::to_string(line->line) + " (" + line->text +
          ")";
  } else {
    why = "no `target` line of " + policy.source + " matches it, and no match is denied";
  }
  issue.message = "rule " + format_rule(rule) + " forwards to " + dest +
                  ", which the target policy does not allow: " + why +
                  "; forward to an allowed target, or ask the administrator to add a "
                  "`target allow` line for it";
  return issue;
}

}  // namespace

bool target_rule_matches(const TargetRule& rule, Proto proto, const Addr& addr,
                         uint16_t port) noexcept {
  return proto_matches(rule, proto) && addr_matches(rule, addr) && port_matches(rule, port);
}

TargetDecision check_target(const TargetPolicy& policy, Proto proto, const Addr& addr,
                            uint16_t port) noexcept {
  if (!policy.use_rules) return TargetDecision{true, nullptr};
  for (const TargetRule& rule : policy.rules) {
    if (target_rule_matches(rule, proto, addr, port)) return TargetDecision{rule.allow, &rule};
  }
  return TargetDecision{false, nullptr};
}

std::vector<control::Failure> check_table_targets(const TargetPolicy& policy,
                                                  const TableSet& tables) {
  std::vector<control::Failure> issues;
  if (!policy.use_rules) return issues;
  std::vector<const TargetRule*> candidates;
  for (const Table& table : tables.tables) {
    for (size_t i = 0; i < table.rules.size(); ++i) {
      const Rule& rule = table.rules[i];
      if (rule.last < rule.first) continue;  // invalid; the validator reports it
      const uint32_t width = static_cast<uint32_t>(rule.last - rule.first);
      if (static_cast<uint32_t>(rule.to) + width > 65535 || rule.to == 0) continue;  // likewise
      bool denied = false;
      for (const Addr& addr : rule_target_addresses(rule)) {
        // The lines that can match this rule at all (protocol and address),
        // in file order; then each port only looks at their port ranges.
        candidates.clear();
        for (const TargetRule& line : policy.rules) {
          if (proto_matches(line, rule.proto) && addr_matches(line, addr)) {
            candidates.push_back(&line);
          }
        }
        for (uint32_t p = rule.to; p <= rule.to + width && !denied; ++p) {
          const uint16_t port = static_cast<uint16_t>(p);
          const TargetRule* decided = nullptr;
          for (const TargetRule* line : candidates) {
            if (port_matches(*line, port)) {
              decided = line;
              break;
            }
          }
          if (decided == nullptr || !decided->allow) {
            issues.push_back(
                denial(policy, table.pif, rule, static_cast<int>(i), addr, port, decided));
            denied = true;  // one issue per rule: the first denied destination
          }
        }
        if (denied) break;
      }
    }
  }
  return issues;
}

}  // namespace sluice
