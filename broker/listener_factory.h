// The listener factory: opens one listening socket for one validated
// OpenListeners entry. This is the broker's privileged act, and the only place
// it creates sockets that leave the process.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "base/unique_fd.h"
#include "policy/bind_policy.h"
#include "schema/broker_wire.h"

namespace sluice {

/// Opens the socket `spec` asks for: socket(family, STREAM or DGRAM |
/// NONBLOCK | CLOEXEC), SO_REUSEADDR for TCP, IP_PKTINFO or IPV6_RECVPKTINFO
/// for UDP, IPV6_V6ONLY (0 only for dual-stack), SO_BINDTODEVICE when an
/// interface is named, bind, and for TCP listen(SOMAXCONN). `spec` must be well-formed
/// (validate_listener_spec). Returns the socket, or an Error whose `err` is the errno of the
/// failing syscall (never 0). Does no policy check. Needs `socket`, `setsockopt`, `bind`, `listen`
/// and `close` in the seccomp policy.
Result<UniqueFd> open_listener(const wire::ListenerSpec& spec) noexcept;

/// Makes a fresh socket of `family` and `proto` for the worker's host-side
/// connections (OpenSockets): socket(family, STREAM or DGRAM | NONBLOCK |
/// CLOEXEC, 0), nothing else: unbound, unconnected, no option set. Fails with
/// the errno of socket(). Needs `socket` (the listeners' own rows).
Result<UniqueFd> open_fresh_socket(wire::WireFamily family, wire::WireProto proto) noexcept;

/// Checks `spec` against `policy` BEFORE creating anything, then opens it.
/// Returns the wire status of the entry: kStatusOk (and the socket in *out),
/// kStatusPolicyDenied (the reason is logged at info), or the errno (1..4095).
int32_t open_listener_checked(const BindPolicy& policy, const wire::ListenerSpec& spec,
                              UniqueFd* out);

}  // namespace sluice
