// Helpers shared by the broker tests: well-formed wire messages to perturb.
#pragma once

#include <cstring>
#include <memory>

#include "schema/broker_wire.h"

namespace sluice::testing {

/// A well-formed TCP/UDP listener request for a.b.c.d:port (v4-mapped).
inline wire::ListenerSpec spec_v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port,
                                  wire::WireProto proto = wire::WireProto::kTcp) {
  wire::ListenerSpec s = {};
  s.proto = static_cast<uint8_t>(proto);
  s.family = static_cast<uint8_t>(wire::WireFamily::kInet);
  s.port = port;
  s.addr[10] = s.addr[11] = 0xff;
  s.addr[12] = a;
  s.addr[13] = b;
  s.addr[14] = c;
  s.addr[15] = d;
  return s;
}

/// A well-formed IPv6 request for `addr16` (all zero: ::), optionally dual-stack.
inline wire::ListenerSpec spec_v6(const uint8_t* addr16, uint16_t port, bool dual = false,
                                  wire::WireProto proto = wire::WireProto::kTcp) {
  wire::ListenerSpec s = {};
  s.proto = static_cast<uint8_t>(proto);
  s.family = static_cast<uint8_t>(wire::WireFamily::kInet6);
  s.port = port;
  s.flags = dual ? wire::kListenerDualStack : 0;
  if (addr16 != nullptr) std::memcpy(s.addr, addr16, 16);
  return s;
}

/// A well-formed Hello.
inline wire::HelloMsg hello(uint64_t sequence = 1) {
  wire::HelloMsg m = {};
  m.header = wire::header(wire::BrokerMsg::kHello, sequence);
  m.version = wire::kBrokerWireVersion;
  return m;
}

/// A zeroed InitialPorts with a valid header, flagged last, and no grants
/// yet (count 0).
inline std::unique_ptr<wire::InitialPortsMsg> initial_ports(uint64_t sequence = 2) {
  auto m = std::make_unique<wire::InitialPortsMsg>();
  std::memset(m.get(), 0, sizeof(*m));
  m->header = wire::header(wire::BrokerMsg::kInitialPorts, sequence);
  m->flags = wire::kInitialPortsLast;
  return m;
}

/// Appends a grant of `spec`'s ports up to `last` to `m` (count + 1).
inline void add_grant(wire::InitialPortsMsg* m, const wire::ListenerSpec& spec, uint16_t last) {
  wire::PortGrant& g = m->grants[m->count++];
  g.listener = spec;
  g.last_port = last;
}

/// A zeroed OpenListeners with a valid header and no entries yet (count 0).
inline std::unique_ptr<wire::OpenListenersMsg> open_listeners(uint64_t sequence = 2) {
  auto m = std::make_unique<wire::OpenListenersMsg>();
  std::memset(m.get(), 0, sizeof(*m));
  m->header = wire::header(wire::BrokerMsg::kOpenListeners, sequence);
  return m;
}

/// A well-formed PeerQuery (its fd travels beside it).
inline wire::PeerQueryMsg peer_query(uint64_t sequence = 3) {
  wire::PeerQueryMsg m = {};
  m.header = wire::header(wire::BrokerMsg::kPeerQuery, sequence);
  return m;
}

/// A well-formed SPLICE listener request: dual-stack [::]%lo:port, as the
/// worker asks for a -T/-U rule.
inline wire::ListenerSpec spec_splice(uint16_t port,
                                      wire::WireProto proto = wire::WireProto::kTcp) {
  wire::ListenerSpec s = spec_v6(nullptr, port, true, proto);
  s.flags |= wire::kListenerSplice;
  std::memcpy(s.ifname, wire::kListenerSpliceIfName, sizeof(wire::kListenerSpliceIfName));
  return s;
}

/// A well-formed OpenSockets for `count` sockets of (family, proto).
inline wire::OpenSocketsMsg open_sockets(uint32_t count = 4,
                                         wire::WireFamily family = wire::WireFamily::kInet,
                                         wire::WireProto proto = wire::WireProto::kTcp,
                                         uint64_t sequence = 4) {
  wire::OpenSocketsMsg m = {};
  m.header = wire::header(wire::BrokerMsg::kOpenSockets, sequence);
  m.family = static_cast<uint8_t>(family);
  m.proto = static_cast<uint8_t>(proto);
  m.count = count;
  return m;
}

/// Appends `spec` to `m` (count + 1).
inline void add_entry(wire::OpenListenersMsg* m, const wire::ListenerSpec& spec) {
  m->entries[m->count++] = spec;
}

}  // namespace sluice::testing
