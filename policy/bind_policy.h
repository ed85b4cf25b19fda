// The bind policy: which listening sockets the broker may open. The broker
// enforces it on every OpenListeners entry; the worker runs the same check first
// so that a denial reaches the user as a clear policy-denied failure.
//
// Two layers, both always applied:
//   1. the `bind` lines of the administrator's policy file, if it has any
//      (policy/policy_file.h parses it): first match wins, no match = deny;
//   2. the kernel rule, always: a port below net.ipv4.ip_unprivileged_port_start
//      needs CAP_NET_BIND_SERVICE, so the broker refuses it up front with a
//      reason that says what to do instead of returning a bare EACCES.
// Without `bind` lines, layer 1 is the default policy: any address and any
// port from unprivileged_port_start on, and below it only the privileged
// ports of the initial rules (`initial_grants`, security review item 6). A
// sluiced that holds CAP_NET_BIND_SERVICE would otherwise let a compromised
// worker take 22, 53 or 443; the administrator who wants more privileged
// ports at run time names them in `bind` lines (docs/POLICY.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "schema/broker_wire.h"

namespace sluice {

/// An inclusive port range of a `bind` line, 1 <= first <= last <= 65535.
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
};

/// An address prefix of a `bind` line in the 16-byte form of broker_wire.h: an
/// IPv4 prefix is stored v4-mapped with 96 added to its length, so one bit
/// comparison serves both families. `family` keeps an IPv6 prefix such as ::/0
/// from matching an IPv4 request.
struct AddrPrefix {
  wire::WireFamily family = wire::WireFamily::kInet;
  uint8_t addr[16] = {};
  uint8_t bits = 0;  // prefix length in the 128-bit form (96..128 for IPv4)
};

/// One `bind allow|deny PROTOS PORTS ADDRS` line.
///
/// Matching (`bind_rule_matches`) is conservative in both directions:
///   - an `allow` line matches when it names the requested bind address itself:
///     127.0.0.0/8 allows 127.0.0.1, and only a line naming 0.0.0.0 (or `*`)
///     allows the IPv4 wildcard. A dual-stack [::] listener needs both :: and
///     0.0.0.0 to be named, because it also receives IPv4;
///   - a `deny` line matches when its addresses overlap what the socket would
///     receive: `deny tcp 22 127.0.0.1` also denies 0.0.0.0:22 and dual-stack
///     [::]:22, which would receive connections to 127.0.0.1:22.
struct BindRule {
  bool allow = false;
  bool tcp = false;
  bool udp = false;
  bool any_port = false;          // PORTS was `*`
  std::vector<PortRange> ports;   // otherwise the listed ranges
  bool any_addr = false;          // ADDRS was `*`
  std::vector<AddrPrefix> addrs;  // otherwise the listed prefixes
  unsigned line = 0;              // 1-based line number in `source`
  std::string text;               // the line as written, comment and extra blanks removed
};

/// The policy the broker checks every request against.
struct BindPolicy {
  uint32_t unprivileged_port_start = 1024;
  bool has_bind_cap = false;
  /// True when a policy file with `bind` lines was loaded: its `rules`
  /// decide (first match wins, no match = deny). False: the default policy,
  /// which allows any protocol and address on ports from
  /// unprivileged_port_start on, and below it only `initial_grants`.
  bool use_rules = false;
  std::string source;  // the policy file's path, named in denial reasons
  std::vector<BindRule> rules;
  /// The default policy's privileged ports: the ranges of the initial rules
  /// below unprivileged_port_start, as the worker declared them right after
  /// Hello (schema/broker_wire.h InitialPortsMsg). A privileged request is
  /// allowed when one grant has its protocol, family, address, interface
  /// and dual-stack flag exactly, and its port in the grant's range.
  std::vector<wire::PortGrant> initial_grants;
};

/// The outcome of a policy check; `reason` is empty when allowed and otherwise
/// a complete sentence saying why and what to do.
struct BindDecision {
  bool allowed = true;
  std::string reason;
};

/// Checks one well-formed listener request against the policy: the file's
/// rules first (a denial names the file and line), then the kernel's privileged
/// port rule, then, for the default policy, the initial rules' grants (a
/// denial says how to allow the port: --policy with a `bind allow` line).
/// Never fails for other reasons: the caller validates the entry's shape
/// first (broker_host.h validate_listener_spec).
BindDecision check_bind(const BindPolicy& policy, const wire::ListenerSpec& spec);

/// Returns true when one of `grants` covers `spec`: the same protocol,
/// family, address, interface and dual-stack flag, and the port in range.
bool granted(std::span<const wire::PortGrant> grants, const wire::ListenerSpec& spec);

/// Describes the bind policy in force, in one sentence for sluiced's start-up
/// log: the file and its number of `bind` lines, or the default with its
/// unprivileged range and the initial rules' privileged ports (the first
/// kMaxGrantsDescribed of them, then a count); and whether privileged
/// ports are possible at all (CAP_NET_BIND_SERVICE).
std::string describe_bind_policy(const BindPolicy& policy);

/// Limit: grants named one by one in describe_bind_policy(); the rest are
/// counted. Eight keep the line readable and far below the log's 4 KiB.
inline constexpr size_t kMaxGrantsDescribed = 8;

/// Describes a grant as describe_listener() does, with its port range:
/// "tcp 127.0.0.1 port 80", "udp * (dual-stack) ports 1-1023".
std::string describe_grant(const wire::PortGrant& grant);

/// Returns true when `rule` matches the well-formed request `spec` (protocol,
/// port, and address as described at BindRule).
bool bind_rule_matches(const BindRule& rule, const wire::ListenerSpec& spec);

/// Returns true when `prefix` contains the 16-byte `addr` of `family`.
bool prefix_contains(const AddrPrefix& prefix, wire::WireFamily family, const uint8_t* addr);

/// Describes a request for logs and reasons: "tcp 127.0.0.1 port 22",
/// "udp [::1]%eth0 port 53", "tcp * (dual-stack) port 80". The interface name
/// is sanitised (it comes from the worker).
std::string describe_listener(const wire::ListenerSpec& spec);

}  // namespace sluice
