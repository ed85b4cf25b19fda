// The bind policy check (see bind_policy.h for the rules and their matching).
#include "policy/bind_policy.h"

#include <arpa/inet.h>

#include <cstring>

#include "base/strings.h"

namespace sluice {
namespace {

/// The v4-mapped form of 0.0.0.0 (::ffff:0.0.0.0), the IPv4 half of a
/// dual-stack [::] listener.
constexpr uint8_t kV4Any[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
/// The IPv6 unspecified address ::.
constexpr uint8_t kV6Any[16] = {};

/// Returns the request's family as the enum (the caller validated the value).
wire::WireFamily family_of(const wire::ListenerSpec& spec) {
  return static_cast<wire::WireFamily>(spec.family);
}

/// Returns true when the request binds the unspecified address of its family.
bool is_unspecified(const wire::ListenerSpec& spec) {
  const uint8_t* any = family_of(spec) == wire::WireFamily::kInet ? kV4Any : kV6Any;
  return std::memcmp(spec.addr, any, 16) == 0;
}

/// Returns true when some prefix of `rule` contains `addr` of `family`.
bool names_addr(const BindRule& rule, wire::WireFamily family, const uint8_t* addr) {
  for (const AddrPrefix& p : rule.addrs) {
    if (prefix_contains(p, family, addr)) return true;
  }
  return false;
}

/// Returns true when some prefix of `rule` has `family`.
bool has_family(const BindRule& rule, wire::WireFamily family) {
  for (const AddrPrefix& p : rule.addrs) {
    if (p.family == family) return true;
  }
  return false;
}

/// Allow lines: the request's literal bind address must be named; a dual-stack
/// listener needs both of its halves named.
bool allow_addr_matches(const BindRule& rule, const wire::ListenerSpec& spec) {
  if ((spec.flags & wire::kListenerDualStack) != 0) {
    return names_addr(rule, wire::WireFamily::kInet6, kV6Any) &&
           names_addr(rule, wire::WireFamily::kInet, kV4Any);
  }
  return names_addr(rule, family_of(spec), spec.addr);
}

/// Deny lines: any overlap between the line's prefixes and the addresses the
/// socket would receive on (all of a family for a wildcard bind).
bool deny_addr_matches(const BindRule& rule, const wire::ListenerSpec& spec) {
  if ((spec.flags & wire::kListenerDualStack) != 0) return !rule.addrs.empty();
  if (is_unspecified(spec)) return has_family(rule, family_of(spec));
  return names_addr(rule, family_of(spec), spec.addr);
}

/// Returns true when `port` lies in one of the rule's ranges.
bool port_matches(const BindRule& rule, uint16_t port) {
  if (rule.any_port) return true;
  for (const PortRange& r : rule.ports) {
    if (port >= r.first && port <= r.last) return true;
  }
  return false;
}

/// Describes what a request binds, without its port: "tcp 127.0.0.1",
/// "udp [::1]%eth0", "tcp * (dual-stack)". The interface name is sanitised
/// (it comes from the worker).
std::string describe_bound(const wire::ListenerSpec& spec) {
  std::string out = spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp) ? "tcp " : "udp ";
  char text[INET6_ADDRSTRLEN] = "?";
  if ((spec.flags & wire::kListenerDualStack) != 0) {
    out += "*";
  } else if (family_of(spec) == wire::WireFamily::kInet) {
    inet_ntop(AF_INET, spec.addr + 12, text, sizeof(text));
    out += text;
  } else {
    inet_ntop(AF_INET6, spec.addr, text, sizeof(text));
    out += "[";
    out += text;
    out += "]";
  }
  size_t ifname_len = strnlen(spec.ifname, sizeof(spec.ifname));
  if (ifname_len > 0) out += "%" + sanitize(std::string_view(spec.ifname, ifname_len));
  if ((spec.flags & wire::kListenerDualStack) != 0) out += " (dual-stack)";
  return out;
}

/// The `bind allow` line that would allow `spec`, for denial reasons:
/// "bind allow tcp 22 127.0.0.1"; a dual-stack listener names both halves
/// ("::,0.0.0.0"), as an allow line must (BindRule).
std::string allow_line_for(const wire::ListenerSpec& spec) {
  std::string addr;
  char text[INET6_ADDRSTRLEN] = "?";
  if ((spec.flags & wire::kListenerDualStack) != 0) {
    addr = "::,0.0.0.0";
  } else if (family_of(spec) == wire::WireFamily::kInet) {
    inet_ntop(AF_INET, spec.addr + 12, text, sizeof(text));
    addr = text;
  } else {
    inet_ntop(AF_INET6, spec.addr, text, sizeof(text));
    addr = text;
  }
  return std::string("bind allow ") +
         (spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp) ? "tcp " : "udp ") +
         std::to_string(spec.port) + " " + addr;
}

}  // namespace

bool prefix_contains(const AddrPrefix& prefix, wire::WireFamily family, const uint8_t* addr) {
  if (prefix.family != family) return false;
  unsigned full = prefix.bits / 8;
  if (std::memcmp(prefix.addr, addr, full) != 0) return false;
  unsigned rest = prefix.bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (prefix.addr[full] & mask) == (addr[full] & mask);
}

bool bind_rule_matches(const BindRule& rule, const wire::ListenerSpec& spec) {
  bool tcp = spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp);
  if (tcp ? !rule.tcp : !rule.udp) return false;
  if (!port_matches(rule, spec.port)) return false;
  if (rule.any_addr) return true;
  return rule.allow ? allow_addr_matches(rule, spec) : deny_addr_matches(rule, spec);
}

std::string describe_listener(const wire::ListenerSpec& spec) {
  return describe_bound(spec) + " port " + std::to_string(spec.port);
}

std::string describe_grant(const wire::PortGrant& grant) {
  const wire::ListenerSpec& spec = grant.listener;
  if (grant.last_port == spec.port) return describe_listener(spec);
  return describe_bound(spec) + " ports " + std::to_string(spec.port) + "-" +
         std::to_string(grant.last_port);
}

bool granted(std::span<const wire::PortGrant> grants, const wire::ListenerSpec& spec) {
  // A rebind's flag (wire::kListenerReplaces) says how to open, not what.
  const uint32_t flags = spec.flags & ~wire::kListenerReplaces;
  for (const wire::PortGrant& g : grants) {
    const wire::ListenerSpec& l = g.listener;
    if (l.proto == spec.proto && l.family == spec.family &&
        (l.flags & ~wire::kListenerReplaces) == flags &&
        std::memcmp(l.addr, spec.addr, sizeof(l.addr)) == 0 &&
        std::memcmp(l.ifname, spec.ifname, sizeof(l.ifname)) == 0 && spec.port >= l.port &&
        spec.port <= g.last_port) {
      return true;
    }
  }
  return false;
}

std::string describe_bind_policy(const BindPolicy& policy) {
  const std::string low = std::to_string(policy.unprivileged_port_start);
  if (policy.use_rules) {
    std::string out = "bind policy: " + policy.source + ", " + std::to_string(policy.rules.size()) +
                      " `bind` line" + (policy.rules.size() == 1 ? "" : "s") +
                      "; the first that matches decides, a request no line matches is denied";
    if (policy.unprivileged_port_start == 0) return out;
    return out +
           (policy.has_bind_cap
                ? "; ports below " + low + " also need CAP_NET_BIND_SERVICE, which sluiced holds"
                : "; ports below " + low +
                      " are refused: sluiced does not hold CAP_NET_BIND_SERVICE");
  }
  std::string out = "bind policy: the default (" +
                    (policy.source.empty() ? std::string("no --policy")
                                           : policy.source + " has no `bind` lines") +
                    "): ";
  if (policy.unprivileged_port_start == 0) {
    return out + "any port on any address (net.ipv4.ip_unprivileged_port_start is 0)";
  }
  out += "ports " + low + "-65535 on any address";
  if (!policy.has_bind_cap) {
    return out + "; ports below " + low +
           " are refused: sluiced does not hold CAP_NET_BIND_SERVICE";
  }
  const size_t n = policy.initial_grants.size();
  if (n == 0) {
    out += ", and no port below " + low + " (the initial rules name none)";
  } else {
    out += ", and below " + low + " only the privileged ports of the initial rules: ";
    for (size_t i = 0; i < n && i < kMaxGrantsDescribed; ++i) {
      out += (i == 0 ? "" : ", ") + describe_grant(policy.initial_grants[i]);
    }
    if (n > kMaxGrantsDescribed) {
      out += ", and " + std::to_string(n - kMaxGrantsDescribed) + " more range" +
             (n - kMaxGrantsDescribed == 1 ? "" : "s");
    }
  }
  return out + "; for other privileged ports, give --policy FILE with `bind` lines";
}

BindDecision check_bind(const BindPolicy& policy, const wire::ListenerSpec& spec) {
  if (policy.use_rules) {
    const BindRule* match = nullptr;
    for (const BindRule& rule : policy.rules) {
      if (bind_rule_matches(rule, spec)) {
        match = &rule;
        break;
      }
    }
    if (match == nullptr) {
      std::string hint = (spec.flags & wire::kListenerDualStack) != 0
                             ? " (a dual-stack listener also receives IPv4, so a `bind allow` "
                               "line must name both :: and 0.0.0.0, or *)"
                             : "";
      return {false, "denied by " + policy.source + ": no `bind` line matches " +
                         describe_listener(spec) +
                         ", and a request that no line matches is denied; add a `bind allow` "
                         "line for it" +
                         hint};
    }
    if (!match->allow) {
      return {false, "denied by " + policy.source + " line " + std::to_string(match->line) + " (" +
                         match->text +
                         "); use a port and address the policy allows, or ask the administrator "
                         "to change that line"};
    }
  }
  if (spec.port < policy.unprivileged_port_start && !policy.has_bind_cap) {
    return {false, "port " + std::to_string(spec.port) +
                       " is below net.ipv4.ip_unprivileged_port_start (" +
                       std::to_string(policy.unprivileged_port_start) +
                       ") and sluiced does not hold CAP_NET_BIND_SERVICE; grant it with `setcap "
                       "cap_net_bind_service=ep sluiced` or run sluiced as root, or lower "
                       "net.ipv4.ip_unprivileged_port_start"};
  }
  if (!policy.use_rules && spec.port < policy.unprivileged_port_start &&
      !granted(policy.initial_grants, spec)) {
    return {false, "port " + std::to_string(spec.port) +
                       " is below net.ipv4.ip_unprivileged_port_start (" +
                       std::to_string(policy.unprivileged_port_start) +
                       ") and sluiced's initial rules do not name " + describe_listener(spec) +
                       ": without `bind` lines in a policy, sluiced opens privileged ports only "
                       "for the rules on its command line; to allow it, start sluiced with "
                       "--policy FILE holding `" +
                       allow_line_for(spec) +
                       "` and `bind allow tcp,udp 1024-65535 *` (a policy's `bind` lines decide "
                       "every port, so the second keeps the unprivileged ones open: "
                       "docs/POLICY.md)"};
  }
  return {true, ""};
}

}  // namespace sluice
