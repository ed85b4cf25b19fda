// The host-side sockets of SPLICE rules (worker/socket_pool.h) on a real
// event loop, against the fake broker with SPLICE served: OpenSockets on the
// broker channel, the pool's fill and refill, its answer when empty, a short
// answer from sluiced, a SPLICE rule connecting through the pool, a UDP
// SPLICE listener served before the pool's first refill, and what
// verify_fresh_socket refuses.
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cerrno>

#include "tests/worker/engine_fixture.h"
#include "tests/worker/udp_sockets.h"
#include "worker/socket_pool.h"

namespace sluice::testing {
namespace {

/// The engine fixture, with SPLICE served by the fake broker, a pool of
/// host-side sockets wired to the data path as the worker's main() does.
class SocketPoolTest : public EngineTest {
 protected:
  /// SPLICE served, then the engine fixture, then the pool wired in.
  void SetUp() override {
    fake.set_splice(true, 1024);
    EngineTest::SetUp();
    pool = std::make_unique<SocketPool>(*broker, true, true);
    forwarder->set_host_sockets(pool.get());
    udp->set_host_sockets(pool.get());
    pool->set_on_refilled([this](int family, Proto proto) {
      ++refills;
      if (proto == Proto::kTcp) forwarder->host_sockets_ready(family);
      if (proto == Proto::kUdp) udp->host_sockets_ready();
    });
  }
  /// Unwires the pool before it goes.
  void TearDown() override {
    // The data path forgets the pool first, as in the worker.
    forwarder->set_host_sockets(nullptr);
    udp->set_host_sockets(nullptr);
  }

  std::unique_ptr<SocketPool> pool;
  int refills = 0;
};

/// A SPLICE rule as -T writes it: TCP [*]%lo:first => to.
Rule splice_rule(uint16_t first, uint16_t to) {
  Rule r = make_rule(Proto::kTcp, Addr{}, first, first, to);
  r.dual_stack = true;
  r.ifname = "lo";
  return r;
}

TEST_F(SocketPoolTest, HelloSaysSpliceIsServedAndTheEngineServesIt) {
  EXPECT_TRUE(engine->facts().served[static_cast<size_t>(Pif::kSplice)]);
}

TEST_F(SocketPoolTest, OpenSocketsBringsCheckedFreshSockets) {
  std::vector<UniqueFd> got;
  int status = -1;
  broker->open_sockets(AF_INET6, Proto::kUdp, 5, [&](std::vector<UniqueFd> fds, int s) {
    got = std::move(fds);
    status = s;
  });
  ASSERT_TRUE(run_until([&] { return status >= 0; })) << fake.error();
  EXPECT_EQ(status, 0);
  ASSERT_EQ(got.size(), 5u);
  for (const UniqueFd& fd : got)
    EXPECT_TRUE(verify_fresh_socket(fd.get(), AF_INET6, Proto::kUdp).ok());
  EXPECT_EQ(broker->listener_batches_in_flight(), 0u) << "OpenSockets is outside the window";
}

TEST_F(SocketPoolTest, FillsBothFamiliesAndRefillsBelowTheLowWaterMark) {
  pool->set_wanted(Proto::kTcp, true);
  ASSERT_TRUE(run_until([&] {
    return pool->ready(AF_INET, Proto::kTcp) == kHostSocketPoolSize &&
           pool->ready(AF_INET6, Proto::kTcp) == kHostSocketPoolSize;
  })) << fake.error();
  EXPECT_EQ(pool->ready(AF_INET, Proto::kUdp), 0u) << "only the protocol asked for";
  std::vector<UniqueFd> taken;
  for (size_t i = 0; i + kHostSocketLowWater < kHostSocketPoolSize; ++i) {
    taken.push_back(pool->take(AF_INET, Proto::kTcp));
    ASSERT_TRUE(taken.back().valid());
  }
  EXPECT_FALSE(pool->refilling(AF_INET, Proto::kTcp)) << "at the low-water mark, not below";
  taken.push_back(pool->take(AF_INET, Proto::kTcp));
  EXPECT_TRUE(pool->refilling(AF_INET, Proto::kTcp));
  ASSERT_TRUE(run_until([&] { return pool->ready(AF_INET, Proto::kTcp) == kHostSocketPoolSize; }));
  // No longer wanted: the ready sockets are given back.
  pool->set_wanted(Proto::kTcp, false);
  EXPECT_EQ(pool->ready(AF_INET, Proto::kTcp), 0u);
  EXPECT_EQ(pool->ready(AF_INET6, Proto::kTcp), 0u);
}

TEST_F(SocketPoolTest, AnEmptyPoolAnswersNothingAndSaysWhenTheRefillCame) {
  UniqueFd none = pool->take(AF_INET, Proto::kUdp);
  EXPECT_FALSE(none.valid());
  EXPECT_TRUE(pool->refilling(AF_INET, Proto::kUdp));
  ASSERT_TRUE(run_until([&] { return refills == 1; }));
  EXPECT_EQ(pool->ready(AF_INET, Proto::kUdp), kHostSocketPoolSize);
  EXPECT_TRUE(pool->take(AF_INET, Proto::kUdp).valid());
}

TEST_F(SocketPoolTest, AShortAnswerKeepsWhatCameAndAsksAgainLater) {
  fake.short_sockets(3, EMFILE);
  EXPECT_FALSE(pool->take(AF_INET, Proto::kTcp).valid());
  ASSERT_TRUE(run_until([&] { return refills == 1; })) << fake.error();
  EXPECT_EQ(pool->ready(AF_INET, Proto::kTcp), 3u);
  EXPECT_FALSE(broker->lost());
  // Below the low-water mark: the next take asks for the rest.
  EXPECT_TRUE(pool->take(AF_INET, Proto::kTcp).valid());
  EXPECT_TRUE(pool->refilling(AF_INET, Proto::kTcp));
  ASSERT_TRUE(run_until([&] { return pool->ready(AF_INET, Proto::kTcp) == kHostSocketPoolSize; }));
}

TEST_F(SocketPoolTest, SpliceRulesConnectThroughTheHostSockets) {
  UniqueFd target = tcp_target(20200);
  TableSet tables;
  tables.of(Pif::kSplice).rules = {splice_rule(20100, 20200)};
  control::CommitResult r = commit(tables);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
  ASSERT_EQ(fake.asked().size(), 1u);
  EXPECT_NE(fake.asked()[0].flags & wire::kListenerSplice, 0u);
  // Serving the SPLICE listener filled the pool; a connection takes from it.
  ASSERT_TRUE(run_until([&] { return pool->ready(AF_INET, Proto::kTcp) == kHostSocketPoolSize; }));
  EXPECT_TRUE(forwards(20100, target.get()));
  EXPECT_EQ(pool->ready(AF_INET, Proto::kTcp), kHostSocketPoolSize - 1);
  // Removing the rule lets the pools go.
  ASSERT_TRUE(commit(TableSet{}).applied);
  EXPECT_EQ(pool->ready(AF_INET, Proto::kTcp), 0u);
}

TEST_F(SocketPoolTest, AConnectionThatFindsThePoolEmptyWaitsForTheRefill) {
  UniqueFd target = tcp_target(20201);
  TableSet tables;
  tables.of(Pif::kSplice).rules = {splice_rule(20101, 20201)};
  ASSERT_TRUE(commit(tables).applied);
  ASSERT_TRUE(run_until([&] { return pool->ready(AF_INET, Proto::kTcp) == kHostSocketPoolSize; }));
  const int before = refills;
  // Empty the pool behind the data path's back; the refill it asks for
  // comes back empty (sluiced out of descriptors).
  fake.short_sockets(0, EMFILE);
  std::vector<UniqueFd> taken;
  while (pool->ready(AF_INET, Proto::kTcp) > 0) taken.push_back(pool->take(AF_INET, Proto::kTcp));
  UniqueFd client = connect_to(20101);
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(run_until([&] { return refills > before && forwarder->waiting_count() == 1; }))
      << "the connection waits: the refill came back empty";
  // The next scan asks again, and the connection goes on with that refill.
  ASSERT_TRUE(run_until([&] {
    int fd = accept4(target.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return false;
    close(fd);
    return true;
  })) << "the waiting connection went on once a refill came";
  EXPECT_EQ(forwarder->waiting_count(), 0u);
  EXPECT_GE(refills, before + 2);
}

TEST_F(SocketPoolTest, AUdpSpliceListenerServedBeforeTheFirstRefillLosesNothingQueued) {
  // A listener a new worker adopts after a restart holds what arrived while
  // no worker ran, and the pools are empty when it is served: the datagram
  // waits in the kernel for the refill instead of finding no flow socket.
  UniqueFd target = test::loopback_udp(false);
  UniqueFd listener = test::loopback_udp(true);
  UniqueFd client = test::loopback_udp(false);
  const uint16_t port = test::udp_port(listener.get());
  struct sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(sendto(client.get(), "queued", 6, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 6);
  ListenerKey key;
  key.proto = Proto::kUdp;
  key.pif = Pif::kSplice;
  key.addr = addr_v4(127, 0, 0, 1);
  key.port = port;
  auto route = std::make_shared<const Route>(Route{
      Pif::kSplice, addr_v4(127, 0, 0, 1), port, test::udp_port(target.get()), "SPLICE UDP rule"});
  auto served = udp->add_listener(std::move(listener), key, route);
  ASSERT_TRUE(served.ok());
  EXPECT_TRUE(pool->refilling(AF_INET, Proto::kUdp)) << "serving it asked for the pool";
  char buf[16] = {};
  ASSERT_TRUE(run_until([&] { return recv(target.get(), buf, sizeof(buf), MSG_DONTWAIT) == 6; }))
      << "the queued datagram never reached the target";
  EXPECT_EQ(std::string(buf, 6), "queued");
  EXPECT_EQ(udp->counters().dropped_no_flow, 0u);
  udp->close_listener(*served);
}

TEST(VerifyFreshSocket, RefusesWhatSluicedMustNeverSend) {
  auto make = [](int family, int type) {
    return UniqueFd(socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  };
  UniqueFd fresh = make(AF_INET, SOCK_STREAM);
  EXPECT_TRUE(verify_fresh_socket(fresh.get(), AF_INET, Proto::kTcp).ok());
  EXPECT_FALSE(verify_fresh_socket(fresh.get(), AF_INET6, Proto::kTcp).ok()) << "family";
  EXPECT_FALSE(verify_fresh_socket(fresh.get(), AF_INET, Proto::kUdp).ok()) << "type";
  UniqueFd bound = make(AF_INET, SOCK_DGRAM);
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(bound.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  auto r = verify_fresh_socket(bound.get(), AF_INET, Proto::kUdp);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("already bound"), std::string::npos) << r.error().message;
  UniqueFd listening = make(AF_INET, SOCK_STREAM);
  ASSERT_EQ(listen(listening.get(), 1), 0);
  EXPECT_FALSE(verify_fresh_socket(listening.get(), AF_INET, Proto::kTcp).ok());
}

}  // namespace
}  // namespace sluice::testing
