// The default bind policy over a real channel (security review item 6):
// without `bind` lines, a broker that holds CAP_NET_BIND_SERVICE opens
// privileged ports only inside the grants the worker declared right after
// Hello (InitialPorts), for its whole life, and a declaration is accepted
// only then: a worker compromised later cannot add one.
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <utility>

#include "base/scm_rights.h"
#include "broker/broker_host.h"
#include "tests/broker/free_ports.h"
#include "tests/broker/host_fixture.h"
#include "tests/broker/test_wire.h"

namespace sluice {
namespace {

using namespace testing;  // NOLINT: the fixture's helpers and messages read best unqualified

TEST_F(BrokerHostTest, DefaultPolicyOpensOnlyTheInitialRulesPrivilegedPortsForLife) {
  auto [granted_port, other] = free_privileged_ports();
  if (granted_port == 0) GTEST_SKIP() << "privileged ports cannot be bound here";
  auto initial = initial_ports();
  add_grant(initial.get(), spec_v4(127, 0, 0, 1, granted_port), granted_port);
  handshake(host_, ch_, initial.get());

  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, granted_port));
  add_entry(m.get(), spec_v4(127, 0, 0, 1, other));  // 22, 53 or 443 for a real attacker
  add_entry(m.get(), spec_v4(127, 0, 0, 1, granted_port, wire::WireProto::kUdp));
  add_entry(m.get(), spec_v4(0, 0, 0, 0, granted_port));
  add_entry(m.get(), spec_v4(127, 0, 0, 1, free_port(AF_INET, SOCK_STREAM)));
  wire::ListenersOpenedMsg reply;
  {
    ReceivedMessage got = request(*m, &reply);
    EXPECT_EQ(reply.status[0], wire::kStatusOk);
    EXPECT_EQ(reply.status[1], wire::kStatusPolicyDenied);
    EXPECT_EQ(reply.status[2], wire::kStatusPolicyDenied);  // another protocol
    EXPECT_EQ(reply.status[3], wire::kStatusPolicyDenied);  // another address
    EXPECT_EQ(reply.status[4], wire::kStatusOk);            // unprivileged: any
    ASSERT_EQ(got.fds.size(), 2u);
    EXPECT_EQ(bound_port(got.fds[0].get()), granted_port);
  }  // the worker closes the granted port (a commit removed its rule)
  store_state(2);  // and says it holds nothing: sluiced closes its escrowed copies
  // A later commit may bring the rule back: the grant lasts, and it still
  // covers nothing else.
  auto again = open_listeners(3);
  add_entry(again.get(), spec_v4(127, 0, 0, 1, granted_port));
  add_entry(again.get(), spec_v4(127, 0, 0, 1, other));
  ReceivedMessage got = request(*again, &reply);
  EXPECT_EQ(reply.status[0], wire::kStatusOk);
  EXPECT_EQ(reply.status[1], wire::kStatusPolicyDenied);
  EXPECT_EQ(got.fds.size(), 1u);
}

TEST_F(BrokerHostTest, InitialPortsComeOnceRightAfterHello) {
  auto h = hello(1);
  send_raw(&h, sizeof(h));
  ASSERT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue);
  // A request before the declaration is out of state.
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, free_port(AF_INET, SOCK_STREAM)));
  send_raw(m.get(), sizeof(*m));
  expect_violation("OpenListeners before the initial rules' ports were declared");

  Channel ch = make_channel();
  BrokerHost host(make_policy(true));
  handshake(host, ch);
  // Once declared, no grant can be added: a worker compromised later
  // cannot widen the default policy.
  auto late = initial_ports(5);
  add_grant(late.get(), spec_v4(0, 0, 0, 0, 22), 22);
  ASSERT_TRUE(send_message(ch.worker.get(), late.get(), sizeof(*late), {}).ok());
  EXPECT_EQ(host.handle_one(ch.broker.get()), HandleStatus::kViolation);
  EXPECT_NE(host.last_error().find("InitialPorts after the initial rules' ports were declared"),
            std::string::npos)
      << host.last_error();
}

TEST_F(BrokerHostTest, InitialPortsInSeveralMessagesAccumulateUntilTheLast) {
  auto h = hello(1);
  send_raw(&h, sizeof(h));
  ASSERT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue);
  wire::HelloReplyMsg hr;
  ASSERT_TRUE(receive_message(ch_.worker.get(), &hr, sizeof(hr), 0, MSG_DONTWAIT).ok());
  for (uint16_t port : {21, 22}) {
    auto part = initial_ports(port);
    part->flags = port == 22 ? wire::kInitialPortsLast : 0;
    add_grant(part.get(), spec_v4(127, 0, 0, 1, port), port);
    send_raw(part.get(), sizeof(*part));
    ASSERT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
    EXPECT_EQ(host_.state(), port == 22 ? HostState::kReady : HostState::kAwaitInitial);
  }
  // No reply to a declaration: the next thing the worker reads answers its
  // first request.
  wire::HelloReplyMsg none;
  EXPECT_FALSE(receive_message(ch_.worker.get(), &none, sizeof(none), 0, MSG_DONTWAIT).ok());
}

TEST_F(BrokerHostTest, AMalformedDeclarationIsViolation) {
  auto h = hello(1);
  send_raw(&h, sizeof(h));
  ASSERT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue);
  auto m = initial_ports();
  add_grant(m.get(), spec_v4(0, 0, 0, 0, 8080), 8080);  // not a privileged port
  send_raw(m.get(), sizeof(*m));
  expect_violation("malformed InitialPorts: grant 0: port 8080 is not privileged");
}

}  // namespace
}  // namespace sluice
