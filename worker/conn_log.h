// The connection log (sluiced --log-connections): one info line for every TCP
// connection when it ends, and for every one refused before it began, with
// the client's address and port, the rule, how long it lasted, the bytes each
// way and how it ended; and one for every UDP flow when it ends. As HAProxy's
// `option tcplog` and rinetd's log file do; off by default, and nothing is
// kept per connection while it is off.
//
// The lines go to the worker's log like any other (sluiced's stderr, or the
// journal): a sink that pushes back drops lines and counts them, and never
// stalls forwarding (base/log.h). They are not rate-limited: the log is
// what was asked for.
#pragma once

#include <cstdint>
#include <string>

#include "worker/forwarder.h"

namespace sluice {

/// How a TCP connection ended.
enum class ConnEnd : uint8_t {
  kClosed,          // both sides finished their streams (FIN each way)
  kReset,           // a peer reset it, or a socket operation failed
  kIdle,            // no byte either way for --idle-timeout
  kConnectFailed,   // the target refused, or could not be reached (with an errno)
  kConnectTimeout,  // the target did not answer within --connect-timeout
  kEnded,           // sluice ended it: its rule was removed (--end-removed-flows)
  kStopped,         // still open when the worker stopped
};

/// What the connection log keeps of one TCP connection while it lasts, only
/// when the log is on (a connection holds a pointer to it, empty otherwise).
struct ConnRecord {
  Endpoint client;        // the client's address and port
  uint64_t start_ns = 0;  // when it was accepted (monotonic_ns)
  char first_fin = 0;     // 'c' or 't': the side whose FIN sluice read first
};

/// Returns "10.0.0.5:51234" or "[2001:db8::5]:51234" (an IPv4 address mapped
/// into IPv6 as IPv4).
std::string describe_endpoint(const Endpoint& endpoint);

/// Returns the line for a connection of `route` that ends at `now_ns`:
/// "TCP [0.0.0.0]:8080 => 8000: connection from 10.0.0.5:51234 to port 8000
/// ended after 1.204 s, 340 bytes to the target and 12000 to the client: the
/// client closed first". `err` is the errno of kConnectFailed (0 otherwise).
/// Pure.
std::string connection_ended_line(const Route& route, const ConnRecord& record,
                                  uint16_t target_port, uint64_t now_ns, uint64_t to_target,
                                  uint64_t to_client, ConnEnd how, int err);

/// Returns the line for a connection of `route` from `client` that was
/// refused before sluice tried its target: "TCP [0.0.0.0]:8080 => 8000:
/// connection from 10.0.0.5:51234 refused: WHY", with ": ERRNO" after WHY
/// when `err` is not 0. Pure.
std::string connection_refused_line(const Route& route, const Endpoint& client, const char* why,
                                    int err);

/// How a UDP flow ended.
enum class FlowEnd : uint8_t {
  kIdle,         // no datagram either way for --udp-idle-timeout
  kRemoved,      // its listener closed (a commit removed or moved its port)
  kRuleRemoved,  // its rule was removed (--end-removed-flows), the port kept
  kStopped,      // still open when the worker stopped
};

/// What a UDP flow moved, kept while the connection log is on.
struct FlowRecord {
  uint64_t start_ns = 0;
  uint64_t datagrams_to_target = 0, bytes_to_target = 0;
  uint64_t datagrams_to_client = 0, bytes_to_client = 0;
};

/// Returns the line for a UDP flow of `route` from `client` that ends at
/// `now_ns`: "UDP [0.0.0.0]:5353 => 53: flow from 10.0.0.5:40000 ended
/// after 30.112 s, 12 datagrams (800 bytes) to the target and 12 (1600
/// bytes) to the client: idle for --udp-idle-timeout". Pure.
std::string flow_ended_line(const Route& route, const Endpoint& client, const FlowRecord& record,
                            uint64_t now_ns, FlowEnd how);

}  // namespace sluice
