// The bind policy: which listening sockets the broker may open. The broker
// enforces it on every OpenListeners entry; the worker runs the same check first
// so that a denial reaches the user as a clear policy-denied failure.
#pragma once

#include <cstdint>
#include <string>

#include "schema/broker_wire.h"

namespace sluice {

/// The default policy: any protocol and address; a port below
/// net.ipv4.ip_unprivileged_port_start only when the broker holds
/// CAP_NET_BIND_SERVICE. (The policy file of docs/POLICY.md extends this.)
struct BindPolicy {
  uint32_t unprivileged_port_start = 1024;
  bool has_bind_cap = false;
};

/// The outcome of a policy check; `reason` is empty when allowed and otherwise
/// a complete sentence saying why and what to do.
struct BindDecision {
  bool allowed = true;
  std::string reason;
};

/// Checks one well-formed listener request against the policy. Never fails for
/// other reasons: the caller validates the entry's shape first.
BindDecision check_bind(const BindPolicy& policy, const wire::ListenerSpec& spec);

}  // namespace sluice
