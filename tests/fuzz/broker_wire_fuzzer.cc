// libFuzzer target for the broker's side of the worker channel: the only
// bytes the privileged process reads from the sandboxed, possibly compromised
// worker. It drives the pure checks BrokerHost::handle_one runs on every
// datagram (check_envelope, then validate_hello, validate_initial_ports,
// validate_open_listeners, validate_peer_query or validate_open_sockets on an
// aligned copy, then the bind policy on every well-formed entry and grant).
// OpenListeners and OpenSockets are checked as a broker with a target
// namespace would (SPLICE served) and as one without.
//
// Input: one control byte, then the datagram.
//   bit 0      the host state: 0 awaiting Hello, 1 ready (unless bit 7);
//   bit 1      pad: zero-extend the datagram to the size of the type its
//              header names, as an honest worker's fixed-size struct would be
//              (so short inputs reach the entry checks of a 10 KiB message);
//   bits 2..6  how many fds came with the datagram (0..31);
//   bit 7      the host state is awaiting InitialPorts (after Hello).
//
// Contracts checked: check_envelope accepts only a datagram with exactly the
// fds of its type (one for PeerQuery, two for StoreState, none otherwise), of the exact size of a
// request type permitted in the state, with the magic;
// every refusal is a printable message (it goes to the broker's log); a valid
// OpenListeners has its count in range and entries the policy can judge; a
// policy denial always has a printable reason and an allowed entry none;
// without a target namespace no SPLICE entry and no OpenSockets passes, and
// with one a SPLICE entry passes only on the namespace's loopback.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "broker/broker_host.h"
#include "policy/bind_policy.h"
#include "policy/policy_file.h"
#include "schema/broker_wire.h"
#include "tests/fuzz/fuzz_util.h"

namespace sluice::fuzz {
namespace {

/// A policy file with a line of every kind, so that matching, overlap and
/// first-match-wins are all reached.
constexpr std::string_view kPolicyText =
    "bind deny  tcp      22            *\n"
    "bind allow tcp      80,443        0.0.0.0,::\n"
    "bind deny  udp      *             127.0.0.0/8\n"
    "bind allow tcp,udp  1-1023        10.0.0.0/8,fd00::/8\n"
    "bind allow tcp,udp  1024-65535    *\n"
    "target allow * 127.0.0.0/8\n"
    "control commit uid=0\n";

/// Returns the policies the broker may run with: the default (with and
/// without CAP_NET_BIND_SERVICE, and with it and a grant) and one from
/// kPolicyText.
const std::vector<BindPolicy>& policies() {
  static const std::vector<BindPolicy> all = [] {
    std::vector<BindPolicy> out;
    out.push_back(BindPolicy{1024, false});
    out.push_back(BindPolicy{0, true});
    BindPolicy granted{1024, true};
    wire::PortGrant web = {};
    web.listener.proto = static_cast<uint8_t>(wire::WireProto::kTcp);
    web.listener.family = static_cast<uint8_t>(wire::WireFamily::kInet6);
    web.listener.flags = wire::kListenerDualStack;
    web.listener.port = 80;
    web.last_port = 443;
    granted.initial_grants.push_back(web);
    out.push_back(std::move(granted));
    Result<PolicyFile> file = parse_policy_text(kPolicyText, "fuzz.policy");
    FUZZ_CHECK(file.ok(), "the fuzzer's own policy text does not parse");
    BindPolicy from_file = bind_policy_from_file(*file);
    from_file.unprivileged_port_start = 1024;
    out.push_back(std::move(from_file));
    return out;
  }();
  return all;
}

/// Checks a refusal's message: non-empty and printable.
void check_refusal(const Error& error) {
  FUZZ_CHECK(!error.message.empty(), "a refusal without a message");
  FUZZ_CHECK(printable(error.message), "a refusal with raw bytes (it is logged)");
}

/// Judges one well-formed entry under every policy.
void judge_entry(const wire::ListenerSpec& spec) {
  FUZZ_CHECK(printable(describe_listener(spec)), "a listener description with raw bytes");
  for (const BindPolicy& policy : policies()) {
    BindDecision decision = check_bind(policy, spec);
    FUZZ_CHECK(decision.allowed == decision.reason.empty(), "a decision with the wrong reason");
    FUZZ_CHECK(printable(decision.reason), "a denial reason with raw bytes");
  }
}

/// Checks a declaration the broker accepted: every grant is well-formed and
/// privileged, describes itself printably, and under the default policy
/// with the capability admits its own first and last port and nothing on
/// the next port up.
void judge_grants(const wire::InitialPortsMsg& msg) {
  BindPolicy policy{1024, true};
  policy.initial_grants.assign(msg.grants, msg.grants + msg.count);
  for (uint32_t i = 0; i < msg.count; ++i) {
    const wire::PortGrant& g = msg.grants[i];
    FUZZ_CHECK(validate_listener_spec(g.listener).ok(), "a bad grant passed");
    FUZZ_CHECK(g.listener.port <= g.last_port && g.last_port < 1024, "a grant out of range passed");
    FUZZ_CHECK(printable(describe_grant(g)), "a grant description with raw bytes");
    wire::ListenerSpec spec = g.listener;
    FUZZ_CHECK(check_bind(policy, spec).allowed, "a grant does not admit its first port");
    spec.port = g.last_port;
    FUZZ_CHECK(check_bind(policy, spec).allowed, "a grant does not admit its last port");
  }
  FUZZ_CHECK(printable(describe_bind_policy(policy)), "a policy description with raw bytes");
}

/// Runs the checks the broker runs after the envelope of a `type` message.
void validate_body(wire::BrokerMsg type, const std::vector<uint8_t>& msg) {
  if (type == wire::BrokerMsg::kInitialPorts) {
    FUZZ_CHECK(msg.size() == sizeof(wire::InitialPortsMsg), "an InitialPorts of the wrong size");
    auto initial = std::make_unique<wire::InitialPortsMsg>();
    std::memcpy(initial.get(), msg.data(), sizeof(*initial));
    Result<void> ok = validate_initial_ports(*initial, 0, 1024);
    if (!ok) return check_refusal(ok.error());
    FUZZ_CHECK(initial->count <= wire::kMaxGrantsPerMessage, "an InitialPorts count out of range");
    judge_grants(*initial);
    return;
  }
  if (type == wire::BrokerMsg::kHello) {
    FUZZ_CHECK(msg.size() == sizeof(wire::HelloMsg), "a Hello of the wrong size passed");
    wire::HelloMsg hello;
    std::memcpy(&hello, msg.data(), sizeof(hello));
    Result<void> ok = validate_hello(hello);
    if (!ok) return check_refusal(ok.error());
    FUZZ_CHECK(hello.version == wire::kBrokerWireVersion && hello.reserved == 0,
               "a bad Hello passed");
    return;
  }
  if (type == wire::BrokerMsg::kWorkerStatus) {
    FUZZ_CHECK(msg.size() == sizeof(wire::WorkerStatusMsg),
               "a WorkerStatus of the wrong size passed");
    wire::WorkerStatusMsg status;
    std::memcpy(&status, msg.data(), sizeof(status));
    Result<void> ok = validate_worker_status(status);
    if (!ok) return check_refusal(ok.error());
    FUZZ_CHECK(status.reserved == 0, "a WorkerStatus with reserved bits passed");
    return;
  }
  if (type == wire::BrokerMsg::kStoreState) {
    // Its memfds are checked by the escrow (listener_escrow.cc), not here.
    FUZZ_CHECK(msg.size() == sizeof(wire::StoreStateMsg), "a StoreState of the wrong size passed");
    wire::StoreStateMsg state;
    std::memcpy(&state, msg.data(), sizeof(state));
    Result<void> ok = validate_store_state(state);
    if (!ok) return check_refusal(ok.error());
    FUZZ_CHECK(state.reserved == 0, "a StoreState with reserved bits passed");
    return;
  }
  if (type == wire::BrokerMsg::kResume || type == wire::BrokerMsg::kReclaimListeners) {
    FUZZ_CHECK(msg.size() == sizeof(wire::ResumeMsg), "a Resume of the wrong size passed");
    wire::ResumeMsg resume;
    std::memcpy(&resume, msg.data(), sizeof(resume));
    Result<void> ok = validate_resume(resume);
    if (!ok) return check_refusal(ok.error());
    FUZZ_CHECK(resume.reserved[0] == 0 && resume.reserved[1] == 0, "a bad Resume passed");
    return;
  }
  if (type == wire::BrokerMsg::kPeerQuery) {
    FUZZ_CHECK(msg.size() == sizeof(wire::PeerQueryMsg), "a PeerQuery of the wrong size passed");
    wire::PeerQueryMsg query;
    std::memcpy(&query, msg.data(), sizeof(query));
    Result<void> ok = validate_peer_query(query);
    if (!ok) return check_refusal(ok.error());
    FUZZ_CHECK(query.reserved[0] == 0 && query.reserved[1] == 0, "a bad PeerQuery passed");
    return;
  }
  if (type == wire::BrokerMsg::kOpenSockets) {
    FUZZ_CHECK(msg.size() == sizeof(wire::OpenSocketsMsg), "an OpenSockets of the wrong size");
    wire::OpenSocketsMsg sockets;
    std::memcpy(&sockets, msg.data(), sizeof(sockets));
    Result<void> without = validate_open_sockets(sockets, false);
    FUZZ_CHECK(!without.ok(), "an OpenSockets passed without a target namespace");
    check_refusal(without.error());
    Result<void> ok = validate_open_sockets(sockets, true);
    if (!ok) return check_refusal(ok.error());
    FUZZ_CHECK(sockets.count >= 1 && sockets.count <= wire::kMaxSocketsPerMessage &&
                   sockets.reserved == 0 &&
                   (sockets.family == static_cast<uint8_t>(wire::WireFamily::kInet) ||
                    sockets.family == static_cast<uint8_t>(wire::WireFamily::kInet6)) &&
                   (sockets.proto == static_cast<uint8_t>(wire::WireProto::kTcp) ||
                    sockets.proto == static_cast<uint8_t>(wire::WireProto::kUdp)),
               "a bad OpenSockets passed");
    return;
  }
  FUZZ_CHECK(type == wire::BrokerMsg::kOpenListeners, "a type the broker never accepts passed");
  FUZZ_CHECK(msg.size() == sizeof(wire::OpenListenersMsg), "an OpenListeners of the wrong size");
  auto request = std::make_unique<wire::OpenListenersMsg>();
  std::memcpy(request.get(), msg.data(), sizeof(*request));
  Result<void> ok = validate_open_listeners(*request, true);
  if (!ok) {
    FUZZ_CHECK(!validate_open_listeners(*request, false).ok(),
               "an OpenListeners passed without a target namespace and failed with one");
    return check_refusal(ok.error());
  }
  FUZZ_CHECK(request->count >= 1 && request->count <= wire::kMaxListenersPerMessage,
             "an OpenListeners count out of range passed");
  bool any_splice = false;
  for (uint32_t i = 0; i < request->count; ++i) {
    const wire::ListenerSpec& spec = request->entries[i];
    FUZZ_CHECK(validate_listener_spec(spec).ok(), "a bad entry passed");
    if ((spec.flags & wire::kListenerSplice) != 0) {
      any_splice = true;
      const bool on_lo = std::string_view(spec.ifname) == wire::kListenerSpliceIfName;
      const bool loopback =
          spec.family == static_cast<uint8_t>(wire::WireFamily::kInet)
              ? spec.addr[12] == 127
              : spec.addr[15] == 1 && std::count(spec.addr, spec.addr + 15, 0) == 15;
      FUZZ_CHECK(on_lo || (spec.ifname[0] == '\0' && loopback),
                 "a SPLICE entry off the target namespace's loopback passed");
    }
    judge_entry(spec);
  }
  FUZZ_CHECK(validate_open_listeners(*request, false).ok() == !any_splice,
             "a SPLICE entry passed without a target namespace, or another one failed");
}

/// Returns the exact size of the request `type` names, or 0 for another type.
size_t request_size(uint32_t type) {
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kHello)) return sizeof(wire::HelloMsg);
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kOpenListeners)) {
    return sizeof(wire::OpenListenersMsg);
  }
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kPeerQuery)) return sizeof(wire::PeerQueryMsg);
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kOpenSockets)) {
    return sizeof(wire::OpenSocketsMsg);
  }
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kInitialPorts)) {
    return sizeof(wire::InitialPortsMsg);
  }
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kWorkerStatus)) {
    return sizeof(wire::WorkerStatusMsg);
  }
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kStoreState)) {
    return sizeof(wire::StoreStateMsg);
  }
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kResume)) return sizeof(wire::ResumeMsg);
  if (type == static_cast<uint32_t>(wire::BrokerMsg::kReclaimListeners)) {
    return sizeof(wire::ReclaimListenersMsg);
  }
  return 0;
}

}  // namespace

int broker_wire_one_input(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  const HostState state = (control & 0x80) != 0 ? HostState::kAwaitInitial
                          : (control & 1) != 0  ? HostState::kReady
                                                : HostState::kAwaitHello;
  const bool pad = (control & 2) != 0;
  const size_t fd_count = (control >> 2) & 0x1f;
  // One byte more than the largest request can arrive, as in handle_one.
  size_t len = size - 1 > wire::kMaxWireMessage + 1 ? wire::kMaxWireMessage + 1 : size - 1;
  std::vector<uint8_t> msg(data + 1, data + 1 + len);
  if (pad && msg.size() >= sizeof(wire::WireHeader)) {
    wire::WireHeader header;
    std::memcpy(&header, msg.data(), sizeof(header));
    size_t want = request_size(header.type);
    if (msg.size() < want) msg.resize(want, 0);
  }

  Result<wire::BrokerMsg> type = check_envelope(msg, fd_count, state);
  if (!type) {
    check_refusal(type.error());
    return 0;
  }
  FUZZ_CHECK(fd_count == (*type == wire::BrokerMsg::kPeerQuery    ? 1u
                          : *type == wire::BrokerMsg::kStoreState ? 2u
                                                                  : 0u),
             "a request with the wrong number of fds passed");
  wire::WireHeader header;
  FUZZ_CHECK(msg.size() >= sizeof(header), "a truncated request passed");
  std::memcpy(&header, msg.data(), sizeof(header));
  FUZZ_CHECK(header.magic == wire::kBrokerWireMagic, "a request without the magic passed");
  FUZZ_CHECK(header.type == static_cast<uint32_t>(*type), "the wrong type was returned");
  FUZZ_CHECK(msg.size() == request_size(header.type), "a request of the wrong size passed");
  FUZZ_CHECK((*type == wire::BrokerMsg::kHello) == (state == HostState::kAwaitHello),
             "a request passed out of state");
  FUZZ_CHECK((*type == wire::BrokerMsg::kInitialPorts) == (state == HostState::kAwaitInitial),
             "a declaration passed out of state");
  validate_body(*type, msg);
  return 0;
}

}  // namespace sluice::fuzz

#ifndef SLUICE_FUZZ_NO_MAIN
/// libFuzzer's entry point.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sluice::fuzz::broker_wire_one_input(data, size);
}
#endif
