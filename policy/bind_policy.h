// The bind policy: which listening sockets the broker may open. The broker
// enforces it on every OpenListeners entry; the worker runs the same check first
// so that a denial reaches the user as a clear policy-denied failure.
//
// Two layers, both always applied:
//   1. the `bind` lines of the administrator's policy file, if one was given
//      (policy/policy_file.h parses it): first match wins, no match = deny;
//   2. the kernel rule, always: a port below net.ipv4.ip_unprivileged_port_start
//      needs CAP_NET_BIND_SERVICE, so the broker refuses it up front with a
//      reason that says what to do instead of returning a bare EACCES.
// Without a policy file, layer 1 allows everything.
#pragma once

#include <cstdint>
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
  /// True when a policy file was loaded: its `rules` decide (first match wins,
  /// no match = deny). False: the default policy, which allows any protocol,
  /// address and port the kernel rule allows.
  bool use_rules = false;
  std::string source;  // the policy file's path, named in denial reasons
  std::vector<BindRule> rules;
};

/// The outcome of a policy check; `reason` is empty when allowed and otherwise
/// a complete sentence saying why and what to do.
struct BindDecision {
  bool allowed = true;
  std::string reason;
};

/// Checks one well-formed listener request against the policy: the file's
/// rules first (a denial names the file and line), then the kernel's privileged
/// port rule. Never fails for other reasons: the caller validates the entry's
/// shape first (broker_host.h validate_listener_spec).
BindDecision check_bind(const BindPolicy& policy, const wire::ListenerSpec& spec);

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
