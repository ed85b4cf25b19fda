// The broker's pure checks of worker messages: one test per rule, each
// starting from a well-formed message and perturbing exactly one thing.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "broker/broker_host.h"
#include "tests/broker/test_wire.h"

namespace sluice {
namespace {

using testing::add_entry;
using testing::add_grant;
using testing::hello;
using testing::initial_ports;
using testing::open_listeners;
using testing::open_sockets;
using testing::spec_splice;
using testing::spec_v4;
using testing::spec_v6;

/// The bytes of `msg` as a datagram.
template <typename T>
std::vector<uint8_t> bytes_of(const T& msg) {
  std::vector<uint8_t> out(sizeof(T));
  std::memcpy(out.data(), &msg, sizeof(T));
  return out;
}

/// Expects `r` to fail with a message containing `needle`.
template <typename R>
void expect_error(const R& r, const char* needle) {
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << needle;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

// --- wire::header ---

// The one way a header is built: the magic, the type and the sequence, in
// that order, as a constant expression.
static_assert(wire::header(wire::BrokerMsg::kPeerReply, 9).magic == wire::kBrokerWireMagic);
static_assert(wire::header(wire::BrokerMsg::kPeerReply, 9).type ==
              static_cast<uint32_t>(wire::BrokerMsg::kPeerReply));
static_assert(wire::header(wire::BrokerMsg::kPeerReply, 9).sequence == 9);

TEST(WireHeader, BuildsTheBytesTheBrokerChecks) {
  wire::HelloMsg m = {};
  m.header = wire::header(wire::BrokerMsg::kHello, 41);
  m.version = wire::kBrokerWireVersion;
  const uint8_t magic[4] = {'S', 'L', 'C', 'B'};  // little-endian on the wire
  EXPECT_EQ(std::memcmp(&m, magic, 4), 0);
  EXPECT_EQ(m.header.sequence, 41u);
  auto type = check_envelope(bytes_of(m), 0, HostState::kAwaitHello);
  ASSERT_TRUE(type.ok()) << type.error().message;
  EXPECT_EQ(*type, wire::BrokerMsg::kHello);
}

// --- check_envelope ---

TEST(CheckEnvelope, AcceptsHelloFirst) {
  auto type = check_envelope(bytes_of(hello()), 0, HostState::kAwaitHello);
  ASSERT_TRUE(type.ok()) << type.error().message;
  EXPECT_EQ(*type, wire::BrokerMsg::kHello);
}

TEST(CheckEnvelope, AcceptsOpenListenersWhenReady) {
  auto m = open_listeners();
  auto type = check_envelope(bytes_of(*m), 0, HostState::kReady);
  ASSERT_TRUE(type.ok()) << type.error().message;
  EXPECT_EQ(*type, wire::BrokerMsg::kOpenListeners);
}

TEST(CheckEnvelope, RejectsAttachedFds) {
  expect_error(check_envelope(bytes_of(hello()), 1, HostState::kAwaitHello),
               "a Hello carries 0 fds, this one came with 1");
}

TEST(CheckEnvelope, PeerQueryCarriesExactlyOneFd) {
  wire::PeerQueryMsg q = testing::peer_query();
  auto one = check_envelope(bytes_of(q), 1, HostState::kReady);
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(*one, wire::BrokerMsg::kPeerQuery);
  expect_error(check_envelope(bytes_of(q), 0, HostState::kReady), "came with 0");
  expect_error(check_envelope(bytes_of(q), 2, HostState::kReady), "came with 2");
  expect_error(check_envelope(bytes_of(q), 1, HostState::kAwaitHello), "PeerQuery before Hello");
}

TEST(CheckEnvelope, RejectsTruncatedHeader) {
  auto b = bytes_of(hello());
  b.resize(sizeof(wire::WireHeader) - 1);
  expect_error(check_envelope(b, 0, HostState::kAwaitHello), "truncated");
}

TEST(CheckEnvelope, RejectsEmptyMessage) {
  expect_error(check_envelope({}, 0, HostState::kAwaitHello), "truncated");
}

TEST(CheckEnvelope, RejectsTruncatedBody) {
  auto b = bytes_of(hello());
  b.pop_back();
  expect_error(check_envelope(b, 0, HostState::kAwaitHello), "must be exactly 24");
}

TEST(CheckEnvelope, RejectsHelloWithTrailingBytes) {
  auto b = bytes_of(hello());
  b.push_back(0);
  expect_error(check_envelope(b, 0, HostState::kAwaitHello), "must be exactly 24");
}

TEST(CheckEnvelope, RejectsOversizedMessage) {
  auto m = open_listeners();
  auto b = bytes_of(*m);
  b.push_back(0);
  expect_error(check_envelope(b, 0, HostState::kReady), "oversized");
}

TEST(CheckEnvelope, RejectsShortOpenListeners) {
  auto m = open_listeners();
  auto b = bytes_of(*m);
  b.resize(sizeof(wire::HelloMsg));  // the size of another message
  expect_error(check_envelope(b, 0, HostState::kReady), "OpenListeners of 24 bytes");
}

TEST(CheckEnvelope, RejectsBadMagic) {
  auto m = hello();
  m.header.magic ^= 1;
  expect_error(check_envelope(bytes_of(m), 0, HostState::kAwaitHello), "bad magic");
}

TEST(CheckEnvelope, RejectsUnknownType) {
  auto m = hello();
  m.header.type = 99;
  expect_error(check_envelope(bytes_of(m), 0, HostState::kAwaitHello), "type 99");
}

TEST(CheckEnvelope, RejectsReplyTypesFromTheWorker) {
  auto m = hello();
  m.header.type = static_cast<uint32_t>(wire::BrokerMsg::kHelloReply);
  expect_error(check_envelope(bytes_of(m), 0, HostState::kAwaitHello), "not a request");
  m.header.type = static_cast<uint32_t>(wire::BrokerMsg::kListenersOpened);
  expect_error(check_envelope(bytes_of(m), 0, HostState::kReady), "not a request");
}

TEST(CheckEnvelope, RejectsOpenListenersBeforeHello) {
  auto m = open_listeners();
  expect_error(check_envelope(bytes_of(*m), 0, HostState::kAwaitHello), "before Hello");
}

TEST(CheckEnvelope, RejectsSecondHello) {
  expect_error(check_envelope(bytes_of(hello()), 0, HostState::kReady), "permitted once");
}

// The declaration of the initial rules' privileged ports (security review
// item 6) comes right after Hello, before any request, and never again.
TEST(CheckEnvelope, InitialPortsOnlyBetweenHelloAndTheFirstRequest) {
  auto m = initial_ports();
  auto type = check_envelope(bytes_of(*m), 0, HostState::kAwaitInitial);
  ASSERT_TRUE(type.ok()) << type.error().message;
  EXPECT_EQ(*type, wire::BrokerMsg::kInitialPorts);
  expect_error(check_envelope(bytes_of(*m), 0, HostState::kAwaitHello), "before Hello");
  expect_error(check_envelope(bytes_of(*m), 0, HostState::kReady),
               "InitialPorts after the initial rules' ports were declared");
  expect_error(check_envelope(bytes_of(*m), 1, HostState::kAwaitInitial), "came with 1");
  auto open = open_listeners();
  expect_error(check_envelope(bytes_of(*open), 0, HostState::kAwaitInitial),
               "OpenListeners before the initial rules' ports were declared");
  expect_error(check_envelope(bytes_of(testing::peer_query()), 1, HostState::kAwaitInitial),
               "PeerQuery before the initial rules' ports were declared");
  expect_error(check_envelope(bytes_of(hello()), 0, HostState::kAwaitInitial), "permitted once");
  auto b = bytes_of(*m);
  b.pop_back();
  expect_error(check_envelope(b, 0, HostState::kAwaitInitial), "InitialPorts of");
}

// --- validate_hello ---

TEST(ValidateHello, AcceptsWellFormed) {
  EXPECT_TRUE(validate_hello(hello()).ok());
}

TEST(ValidateHello, RejectsOtherVersion) {
  auto m = hello();
  m.version = wire::kBrokerWireVersion + 1;
  expect_error(validate_hello(m), "same build");
}

TEST(ValidateHello, RejectsNonzeroReserved) {
  auto m = hello();
  m.reserved = 1;
  expect_error(validate_hello(m), "reserved");
}

// --- validate_listener_spec: one test per field ---

TEST(ValidateSpec, AcceptsWellFormedVariants) {
  const uint8_t loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_TRUE(validate_listener_spec(spec_v4(127, 0, 0, 1, 80)).ok());
  EXPECT_TRUE(validate_listener_spec(spec_v4(0, 0, 0, 0, 65535, wire::WireProto::kUdp)).ok());
  EXPECT_TRUE(validate_listener_spec(spec_v6(loop6, 443)).ok());
  EXPECT_TRUE(validate_listener_spec(spec_v6(nullptr, 443, true)).ok());
  auto s = spec_v4(10, 0, 0, 1, 80);
  std::strcpy(s.ifname, "eth0.100");
  EXPECT_TRUE(validate_listener_spec(s).ok());
  std::memcpy(s.ifname, "fifteen-chars-x", 16);  // 15 bytes + NUL: the maximum
  EXPECT_TRUE(validate_listener_spec(s).ok());
}

TEST(ValidateSpec, RejectsBadProto) {
  auto s = spec_v4(127, 0, 0, 1, 80);
  s.proto = 1;  // ICMP
  expect_error(validate_listener_spec(s), "proto 1");
}

TEST(ValidateSpec, RejectsBadFamily) {
  auto s = spec_v4(127, 0, 0, 1, 80);
  s.family = 1;  // AF_UNIX
  expect_error(validate_listener_spec(s), "family 1");
}

TEST(ValidateSpec, RejectsInetWithoutMappedAddress) {
  auto s = spec_v4(127, 0, 0, 1, 80);
  s.addr[10] = 0;
  expect_error(validate_listener_spec(s), "not v4-mapped");
}

TEST(ValidateSpec, RejectsInet6WithMappedAddress) {
  auto s = spec_v4(127, 0, 0, 1, 80);
  s.family = static_cast<uint8_t>(wire::WireFamily::kInet6);
  expect_error(validate_listener_spec(s), "AF_INET6 with a v4-mapped");
}

TEST(ValidateSpec, RejectsPortZero) {
  expect_error(validate_listener_spec(spec_v4(127, 0, 0, 1, 0)), "port 0");
}

TEST(ValidateSpec, RejectsUnknownFlags) {
  auto s = spec_v4(127, 0, 0, 1, 80);
  s.flags = 1u << 5;
  expect_error(validate_listener_spec(s), "unknown flags");
}

TEST(ValidateSpec, RejectsDualStackOnInet) {
  auto s = spec_v4(0, 0, 0, 0, 80);
  s.flags = wire::kListenerDualStack;
  expect_error(validate_listener_spec(s), "dual-stack");
}

TEST(ValidateSpec, RejectsDualStackOnSpecificInet6) {
  const uint8_t loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  expect_error(validate_listener_spec(spec_v6(loop6, 80, true)), "dual-stack");
}

TEST(ValidateSpec, RejectsUnterminatedIfname) {
  auto s = spec_v4(127, 0, 0, 1, 80);
  std::memset(s.ifname, 'a', sizeof(s.ifname));
  expect_error(validate_listener_spec(s), "not NUL-terminated");
}

TEST(ValidateSpec, RejectsBytesAfterIfnameNul) {
  auto s = spec_v4(127, 0, 0, 1, 80);
  std::strcpy(s.ifname, "lo");
  s.ifname[10] = 'x';
  expect_error(validate_listener_spec(s), "after its NUL");
}

TEST(ValidateSpec, RejectsSlashInIfname) {
  auto s = spec_v4(127, 0, 0, 1, 80);
  std::strcpy(s.ifname, "../etc");
  expect_error(validate_listener_spec(s), "'/'");
}

TEST(ValidateSpec, RejectsWhitespaceInIfname) {
  for (const char* name : {"et h0", "eth0\n", "\teth0"}) {
    auto s = spec_v4(127, 0, 0, 1, 80);
    std::strcpy(s.ifname, name);
    expect_error(validate_listener_spec(s), "blank");
  }
}

TEST(ValidateSpec, RejectsDotNames) {
  for (const char* name : {".", ".."}) {
    auto s = spec_v4(127, 0, 0, 1, 80);
    std::strcpy(s.ifname, name);
    expect_error(validate_listener_spec(s), "is not valid");
  }
}

// --- validate_open_listeners ---

TEST(ValidateOpenListeners, AcceptsOneAndMaximum) {
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 80));
  EXPECT_TRUE(validate_open_listeners(*m).ok());
  while (m->count < wire::kMaxListenersPerMessage) {
    add_entry(m.get(), spec_v4(127, 0, 0, 1, static_cast<uint16_t>(1000 + m->count)));
  }
  EXPECT_TRUE(validate_open_listeners(*m).ok());
}

TEST(ValidateOpenListeners, RejectsCountZero) {
  auto m = open_listeners();
  expect_error(validate_open_listeners(*m), "count 0");
}

TEST(ValidateOpenListeners, RejectsCountAboveMaximum) {
  auto m = open_listeners();
  for (uint32_t i = 0; i < wire::kMaxListenersPerMessage; ++i) {
    add_entry(m.get(), spec_v4(127, 0, 0, 1, 80));
  }
  m->count = wire::kMaxListenersPerMessage + 1;
  expect_error(validate_open_listeners(*m), "count 254");
  m->count = 0xffffffffu;
  expect_error(validate_open_listeners(*m), "outside 1..253");
}

TEST(ValidateOpenListeners, RejectsNonzeroReserved) {
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 80));
  m->reserved = 7;
  expect_error(validate_open_listeners(*m), "reserved");
}

TEST(ValidateOpenListeners, NamesTheMalformedEntry) {
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 80));
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 0));
  expect_error(validate_open_listeners(*m), "entry 1: port 0");
}

TEST(ValidateOpenListeners, RejectsDataPastCount) {
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 80));
  m->entries[200].port = 1;
  expect_error(validate_open_listeners(*m), "entry 200 past count 1");
}

// --- SPLICE listeners (kListenerSplice): only on the namespace's loopback ---

TEST(ValidateSpec, AcceptsSpliceListenersOnTheLoopback) {
  EXPECT_TRUE(validate_listener_spec(spec_splice(8080)).ok());
  EXPECT_TRUE(validate_listener_spec(spec_splice(53, wire::WireProto::kUdp)).ok());
  auto v4 = spec_v4(0, 0, 0, 0, 8080);  // 0.0.0.0%lo: a server with IPv4 only
  v4.flags = wire::kListenerSplice;
  std::strcpy(v4.ifname, "lo");
  EXPECT_TRUE(validate_listener_spec(v4).ok());
  auto loop4 = spec_v4(127, 0, 0, 1, 8080);  // pesto's form without IFNAME
  loop4.flags = wire::kListenerSplice;
  EXPECT_TRUE(validate_listener_spec(loop4).ok());
}

TEST(ValidateSpec, RejectsSpliceListenersOffTheLoopback) {
  auto any = spec_splice(8080);
  std::memset(any.ifname, 0, sizeof(any.ifname));  // [::] on every interface
  expect_error(validate_listener_spec(any), "off the target namespace's loopback");
  auto eth = spec_splice(8080);
  std::strcpy(eth.ifname, "eth0");
  expect_error(validate_listener_spec(eth), "off the target namespace's loopback");
  auto addr = spec_v4(10, 88, 0, 5, 8080);
  addr.flags = wire::kListenerSplice;
  expect_error(validate_listener_spec(addr), "off the target namespace's loopback");
  auto loop_eth = spec_v4(127, 0, 0, 1, 8080);
  loop_eth.flags = wire::kListenerSplice;
  std::strcpy(loop_eth.ifname, "eth0");
  expect_error(validate_listener_spec(loop_eth), "off the target namespace's loopback");
}

TEST(ValidateOpenListeners, SpliceEntriesOnlyWithATargetNamespace) {
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 80));
  add_entry(m.get(), spec_splice(8080));
  EXPECT_TRUE(validate_open_listeners(*m, true).ok());
  expect_error(validate_open_listeners(*m, false),
               "entry 1: a SPLICE listener, but sluiced has no target namespace");
  expect_error(validate_open_listeners(*m), "no target namespace");
}

// --- OpenSockets: the envelope, then one test per field ---

TEST(CheckEnvelope, OpenSocketsWhenReadyWithoutFds) {
  auto m = open_sockets();
  auto type = check_envelope(bytes_of(m), 0, HostState::kReady);
  ASSERT_TRUE(type.ok()) << type.error().message;
  EXPECT_EQ(*type, wire::BrokerMsg::kOpenSockets);
  expect_error(check_envelope(bytes_of(m), 1, HostState::kReady), "came with 1");
  expect_error(check_envelope(bytes_of(m), 0, HostState::kAwaitHello), "OpenSockets before Hello");
  auto b = bytes_of(m);
  b.push_back(0);
  expect_error(check_envelope(b, 0, HostState::kReady), "OpenSockets of 25 bytes");
  b.resize(sizeof(wire::WireHeader) + 4);
  expect_error(check_envelope(b, 0, HostState::kReady), "must be exactly 24");
}

TEST(CheckEnvelope, RejectsHelperAndSocketReplyTypesFromTheWorker) {
  auto m = open_sockets();
  m.header.type = static_cast<uint32_t>(wire::BrokerMsg::kSocketsOpened);
  expect_error(check_envelope(bytes_of(m), 0, HostState::kReady), "not a request");
  wire::HelperReadyMsg ready = {};
  ready.header = wire::header(wire::BrokerMsg::kHelperReady, 0);
  expect_error(check_envelope(bytes_of(ready), 0, HostState::kReady), "not a request");
}

TEST(ValidateOpenSockets, AcceptsEveryFamilyAndProtocolUpToTheMaximum) {
  for (auto family : {wire::WireFamily::kInet, wire::WireFamily::kInet6}) {
    for (auto proto : {wire::WireProto::kTcp, wire::WireProto::kUdp}) {
      EXPECT_TRUE(validate_open_sockets(open_sockets(1, family, proto), true).ok());
      EXPECT_TRUE(
          validate_open_sockets(open_sockets(wire::kMaxSocketsPerMessage, family, proto), true)
              .ok());
    }
  }
}

TEST(ValidateOpenSockets, RejectsWithoutATargetNamespace) {
  expect_error(validate_open_sockets(open_sockets(), false), "no target namespace");
}

TEST(ValidateOpenSockets, RejectsBadFamily) {
  auto m = open_sockets();
  m.family = 1;  // AF_UNIX
  expect_error(validate_open_sockets(m, true), "family 1");
}

TEST(ValidateOpenSockets, RejectsBadProto) {
  auto m = open_sockets();
  m.proto = 132;  // SCTP
  expect_error(validate_open_sockets(m, true), "proto 132");
}

TEST(ValidateOpenSockets, RejectsNonzeroReserved) {
  auto m = open_sockets();
  m.reserved = 1;
  expect_error(validate_open_sockets(m, true), "reserved");
}

TEST(ValidateOpenSockets, RejectsCountZeroAndAboveTheMaximum) {
  expect_error(validate_open_sockets(open_sockets(0), true), "count 0 outside 1..64");
  expect_error(validate_open_sockets(open_sockets(wire::kMaxSocketsPerMessage + 1), true),
               "count 65");
}

// --- validate_initial_ports ---

TEST(ValidateInitialPorts, AcceptsNoneAndMaximum) {
  auto m = initial_ports();
  EXPECT_TRUE(validate_initial_ports(*m, 0, 1024).ok());
  add_grant(m.get(), spec_v4(127, 0, 0, 1, 80), 80);
  add_grant(m.get(), spec_v6(nullptr, 1, true, wire::WireProto::kUdp), 1023);
  EXPECT_TRUE(validate_initial_ports(*m, 0, 1024).ok());
  while (m->count < wire::kMaxGrantsPerMessage) add_grant(m.get(), spec_v4(0, 0, 0, 0, 22), 22);
  EXPECT_TRUE(validate_initial_ports(*m, 0, 1024).ok());
  // The last message of a full declaration.
  EXPECT_TRUE(
      validate_initial_ports(*m, wire::kMaxInitialGrants - wire::kMaxGrantsPerMessage, 1024).ok());
}

TEST(ValidateInitialPorts, RejectsCountAboveMaximumAndTooManyInAll) {
  auto m = initial_ports();
  m->count = wire::kMaxGrantsPerMessage + 1;
  expect_error(validate_initial_ports(*m, 0, 1024), "count 201 above 200");
  m->count = 1;
  m->grants[0].listener = spec_v4(127, 0, 0, 1, 80);
  m->grants[0].last_port = 80;
  expect_error(validate_initial_ports(*m, wire::kMaxInitialGrants, 1024),
               "more than 8192 grants in all");
}

TEST(ValidateInitialPorts, RejectsUnknownFlags) {
  auto m = initial_ports();
  m->flags |= 2;
  expect_error(validate_initial_ports(*m, 0, 1024), "unknown flags 2");
}

TEST(ValidateInitialPorts, NamesTheMalformedGrant) {
  auto m = initial_ports();
  add_grant(m.get(), spec_v4(127, 0, 0, 1, 80), 80);
  add_grant(m.get(), spec_v4(127, 0, 0, 1, 0), 10);
  expect_error(validate_initial_ports(*m, 0, 1024), "grant 1: port 0");
  m->grants[1].listener = spec_v4(127, 0, 0, 2, 90);
  m->grants[1].last_port = 89;
  expect_error(validate_initial_ports(*m, 0, 1024), "grant 1: last port 89 below its first 90");
  m->grants[1].last_port = 90;
  m->grants[1].reserved16 = 1;
  expect_error(validate_initial_ports(*m, 0, 1024), "grant 1: reserved field is not 0");
  m->grants[1].reserved16 = 0;
  m->grants[1].reserved = 1;
  expect_error(validate_initial_ports(*m, 0, 1024), "grant 1: reserved field is not 0");
}

TEST(ValidateInitialPorts, GrantsNamePrivilegedPortsOnly) {
  auto m = initial_ports();
  add_grant(m.get(), spec_v4(127, 0, 0, 1, 1000), 1024);
  expect_error(validate_initial_ports(*m, 0, 1024),
               "grant 0: port 1024 is not privileged (net.ipv4.ip_unprivileged_port_start is "
               "1024)");
  EXPECT_TRUE(validate_initial_ports(*m, 0, 1025).ok());
  expect_error(validate_initial_ports(*m, 0, 0), "is not privileged");
}

TEST(ValidateInitialPorts, RejectsDataPastCount) {
  auto m = initial_ports();
  add_grant(m.get(), spec_v4(127, 0, 0, 1, 80), 80);
  m->grants[150].last_port = 1;
  expect_error(validate_initial_ports(*m, 0, 1024), "grant 150 past count 1");
}

}  // namespace
}  // namespace sluice
