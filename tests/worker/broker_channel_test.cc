// The broker channel object (worker/broker_client.h) on a real event loop,
// against the fake broker (engine_fixture.h): the pipelining window, the
// drain of every reply already there on one wake-up, PeerQuery answered in
// order among OpenListeners, and the end of the channel (EOF while idle, a
// broker that dies mid-commit, a malformed or unasked reply): the engine is
// told once, stops, and leaks no socket. And the declaration of the initial
// rules' privileged ports after Hello (InitialPorts, security review item
// 6), and the worker's own check against it.
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "tests/worker/engine_fixture.h"
#include "worker/commit_acquisition.h"

namespace sluice::testing {
namespace {

using State = CommitEngine::State;
using BrokerChannelTest = EngineTest;

TEST_F(BrokerChannelTest, AtMostFourBatchesInFlightAndEveryReplyDrainedPerWakeUp) {
  // 1100 ports: five OpenListeners batches (4 x 253 + 88).
  fake.hold_after(0);
  auto s = submit(host_tables({wide_rule(21000, 1100)}));
  ASSERT_TRUE(run_until([&] { return fake.open_requests() == 4; }));
  for (int i = 0; i < 5; ++i) {  // more turns send nothing more: the window is full
    fake.serve();
    loop->run_once(0);
  }
  EXPECT_EQ(fake.open_requests(), 4u);
  EXPECT_EQ(broker->listener_batches_in_flight(), 4u);
  EXPECT_EQ(engine->state(), State::kAcquiring);

  // All four replies arrive at once; one wake-up takes them all, and the
  // room they free sends the fifth batch.
  fake.release();
  EXPECT_EQ(fake.serve(), 4u);
  ASSERT_TRUE(loop->run_once(1000));
  EXPECT_EQ(broker->listener_batches_in_flight(), 1u);  // the fifth, sent as room came

  ASSERT_TRUE(run_until([&] { return s->done; }));
  EXPECT_TRUE(s->result.applied);
  EXPECT_EQ(s->result.opened, 1100u);
  EXPECT_EQ(engine->listener_count(), 1100u);
  EXPECT_EQ(fake.open_requests(), 5u);
  EXPECT_EQ(fake.asked().size(), 1100u);
}

TEST_F(BrokerChannelTest, PeerQueryIsAnsweredInOrderAmongOpenListeners) {
  fake.set_peer_reply(777, 1234, 99, wire::kAccessRead, 3);
  fake.hold_after(0);
  auto s = submit(host_tables({tcp_rule(20001, 21001)}));
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::optional<PeerIdentity> who;
  ASSERT_TRUE(broker->peer_query(a.get(), [&](const PeerIdentity& id) { who = id; }).ok());
  EXPECT_EQ(broker->in_flight(), 2u);
  EXPECT_EQ(broker->listener_batches_in_flight(), 1u);  // PeerQuery is outside the window
  // The query waits behind the held OpenListeners: replies come in order.
  ASSERT_TRUE(run_until([&] { return fake.waiting() == 2; }));
  EXPECT_FALSE(who.has_value());
  fake.release();
  ASSERT_TRUE(run_until([&] { return who.has_value() && s->done; }));
  EXPECT_EQ(who->status, 0);
  EXPECT_EQ(who->pid, 777);
  EXPECT_EQ(who->uid, 1234u);
  EXPECT_EQ(who->gid, 99u);
  EXPECT_EQ(who->access, wire::kAccessRead);
  EXPECT_EQ(who->line, 3u);
  EXPECT_TRUE(s->result.applied);
  EXPECT_EQ(fake.peer_replies(), 1u);
}

TEST_F(BrokerChannelTest, AFullChannelNeverBlocksTheWorkerAndKeepsRequestsInOrder) {
  // A broker slow to read: the worker's send buffer (16 KiB: the kernel
  // doubles what is set) takes one OpenListeners batch or a few dozen
  // queries. A send that waited for room would stop the whole worker; the
  // timeout turns such a wait into a failure of this test instead of a hang.
  const int small = 8192;
  ASSERT_EQ(setsockopt(broker->fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  struct timeval guard = {1, 0};
  ASSERT_EQ(setsockopt(broker->fd(), SOL_SOCKET, SO_SNDTIMEO, &guard, sizeof(guard)), 0);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::vector<size_t> order;
  for (size_t i = 0; i < kPeerQueryWindow; ++i) {
    ASSERT_TRUE(
        broker->peer_query(a.get(), [&order, i](const PeerIdentity&) { order.push_back(i); }).ok())
        << "query " << i;
  }
  EXPECT_FALSE(broker->lost());
  EXPECT_TRUE(broker->waiting_for_room());
  EXPECT_GT(broker->peer_queries_unsent(), 0u);
  EXPECT_EQ(broker->peer_queries_open(), kPeerQueryWindow);
  // A commit asked meanwhile waits behind them, and is answered after them.
  auto s = submit(host_tables({wide_rule(21000, 600)}));
  EXPECT_FALSE(broker->lost());
  ASSERT_TRUE(run_until([&] { return order.size() == kPeerQueryWindow && s->done; }))
      << order.size() << " of " << kPeerQueryWindow << " answered";
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i);
  EXPECT_TRUE(s->result.applied);
  EXPECT_EQ(s->result.opened, 600u);
  EXPECT_EQ(fake.peer_replies(), kPeerQueryWindow);
  EXPECT_FALSE(broker->waiting_for_room());
  EXPECT_EQ(broker->peer_queries_open(), 0u);
  EXPECT_TRUE(fake.error().empty()) << fake.error();
}

TEST_F(BrokerChannelTest, BrokerDyingMidCommitStopsTheEngineWithoutALeak) {
  // 300 ports: two batches. The broker answers the first (253 sockets reach
  // the worker), then dies before the second.
  const std::set<int> before = open_fds();
  fake.hold_after(1);
  auto s = submit(host_tables({wide_rule(20100, 300)}));
  ASSERT_TRUE(run_until([&] {
    return fake.open_replies() == 1 && fake.waiting() == 1 &&
           broker->listener_batches_in_flight() == 1;
  }));
  EXPECT_GT(open_fds().size(), before.size() + 200);  // the first batch's sockets are here
  fake.close();
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_FALSE(lost->idle_eof);
  EXPECT_NE(lost->reason.find("closed the channel during OpenListeners"), std::string::npos)
      << lost->reason;
  EXPECT_EQ(engine->broker_loss(), lost->reason);
  EXPECT_TRUE(broker->lost());
  EXPECT_FALSE(loop->run_once(0));  // the loop was stopped
  EXPECT_FALSE(s->done);            // the client is not answered: the worker exits
  EXPECT_EQ(engine->generation(), 0u);
  EXPECT_EQ(engine->listener_count(), 0u);
  // Every socket that reached the worker is closed again; nothing else opened.
  for (int fd : open_fds()) EXPECT_TRUE(before.count(fd)) << "fd " << fd << " leaked";
  EXPECT_TRUE(refused(20100));
  // Later commits queue and never run.
  auto later = submit(host_tables({}));
  EXPECT_FALSE(later->done);
  EXPECT_EQ(engine->state(), State::kStopped);
}

TEST_F(BrokerChannelTest, BrokerDyingOnARequestIsReported) {
  fake.close_on_request(1);
  auto s = submit(host_tables({tcp_rule(20001, 21001)}));
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_NE(lost->reason.find("during OpenListeners"), std::string::npos) << lost->reason;
  EXPECT_FALSE(s->done);
}

TEST_F(BrokerChannelTest, EofWhileIdleIsTheBrokerExiting) {
  fake.close();
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_TRUE(lost->idle_eof);
  EXPECT_EQ(lost->reason, "sluiced closed the broker channel");
  EXPECT_FALSE(loop->run_once(0));
}

TEST_F(BrokerChannelTest, MalformedReplyLosesTheChannel) {
  fake.hold_after(0);
  auto s = submit(host_tables({tcp_rule(20001, 21001)}));
  ASSERT_TRUE(run_until([&] { return fake.waiting() == 1; }));
  ASSERT_TRUE(fake.send_raw("not a ListenersOpened"));
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_FALSE(lost->idle_eof);
  EXPECT_NE(lost->reason.find("ListenersOpened"), std::string::npos) << lost->reason;
  EXPECT_FALSE(s->done);
}

TEST_F(BrokerChannelTest, AReplyNobodyAskedForLosesTheChannel) {
  ASSERT_TRUE(fake.send_raw(std::string(40, 'x')));
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_FALSE(lost->idle_eof);
  EXPECT_NE(lost->reason.find("nobody asked for"), std::string::npos) << lost->reason;
}

/// A PolicyReload of `length` with the datagram's bytes.
std::string policy_reload(uint32_t length, uint64_t sequence = 0) {
  wire::PolicyReloadMsg msg = {};
  msg.header = wire::header(wire::BrokerMsg::kPolicyReload, sequence);
  msg.length = length;
  return std::string(reinterpret_cast<const char*>(&msg), sizeof(msg));
}

/// A memfd holding `text`, at offset 0.
UniqueFd text_memfd(const std::string& text) {
  UniqueFd fd(memfd_create("policy", MFD_CLOEXEC));
  CHECK(fd.valid() &&
        write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
        lseek(fd.get(), 0, SEEK_SET) == 0);
  return fd;
}

TEST_F(BrokerChannelTest, PolicyReloadBetweenRepliesIsHandedOnAndTheCommitGoesOn) {
  std::string got_text;
  broker->on_policy_reload([&](UniqueFd fd, uint32_t length) {
    got_text.resize(length);
    EXPECT_EQ(read(fd.get(), got_text.data(), length), static_cast<ssize_t>(length));
  });
  fake.hold_after(0);
  auto s = submit(host_tables({tcp_rule(20001, 21001)}));
  ASSERT_TRUE(run_until([&] { return fake.waiting() == 1; }));
  const std::string text = "bind allow tcp 20001 127.0.0.1\n";
  UniqueFd fd = text_memfd(text);
  ASSERT_TRUE(fake.send_with_fd(policy_reload(static_cast<uint32_t>(text.size())), fd.get()));
  ASSERT_TRUE(run_until([&] { return !got_text.empty(); }));
  EXPECT_EQ(got_text, text);
  fake.release();
  ASSERT_TRUE(run_until([&] { return s->done; }));
  EXPECT_TRUE(s->result.applied);
  EXPECT_FALSE(lost.has_value());
}

TEST_F(BrokerChannelTest, MalformedPolicyReloadLosesTheChannel) {
  ASSERT_TRUE(fake.send_with_fd(policy_reload(10), -1));  // no fd
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_NE(lost->reason.find("malformed PolicyReload"), std::string::npos) << lost->reason;
}

TEST_F(BrokerChannelTest, OverlongPolicyReloadLosesTheChannel) {
  UniqueFd fd = text_memfd("x");
  ASSERT_TRUE(fake.send_with_fd(policy_reload(wire::kMaxPolicyTextBytes + 1), fd.get()));
  ASSERT_TRUE(run_until([&] { return engine->state() == State::kStopped; }));
  ASSERT_TRUE(lost.has_value());
  EXPECT_NE(lost->reason.find("malformed PolicyReload"), std::string::npos) << lost->reason;
}

TEST(BrokerReplyCheck, EverySocketIsCheckedAgainstItsKey) {
  auto reply = std::make_unique<wire::ListenersOpenedMsg>();
  std::memset(reply.get(), 0, sizeof(*reply));
  reply->header = {wire::kBrokerWireMagic, static_cast<uint32_t>(wire::BrokerMsg::kListenersOpened),
                   7};
  reply->count = 1;
  reply->fd_count = 1;
  ListenerKey key;
  key.addr = addr_v4(127, 0, 0, 1);
  key.port = 20001;
  const std::vector<ListenerKey> keys = {key};
  // fd_count says 1, and no fd came.
  EXPECT_FALSE(check_listeners_opened(*reply, sizeof(*reply), {}, 7, keys).ok());
  // A listening socket, but on another port than asked.
  UniqueFd wrong = tcp_target(20002);
  std::vector<UniqueFd> fds;
  fds.emplace_back(dup(wrong.get()));
  auto got = check_listeners_opened(*reply, sizeof(*reply), std::move(fds), 7, keys);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("wrong port"), std::string::npos) << got.error().message;
  // The right socket, but the reply answers another request.
  UniqueFd right = tcp_target(20001);
  fds.clear();
  fds.emplace_back(dup(right.get()));
  EXPECT_FALSE(check_listeners_opened(*reply, sizeof(*reply), std::move(fds), 8, keys).ok());
  // The right socket for the right request passes.
  fds.clear();
  fds.emplace_back(dup(right.get()));
  got = check_listeners_opened(*reply, sizeof(*reply), std::move(fds), 7, keys);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].status, wire::kStatusOk);
  EXPECT_TRUE((*got)[0].fd.valid());
}

// --- The initial rules' privileged ports ---

TEST(InitialPortGrants, OneRangePerRuleCutAtTheUnprivilegedStart) {
  Rule dual = make_rule(Proto::kUdp, Addr{}, 1, 2000, 1);
  dual.dual_stack = true;
  Rule eth0 = make_rule(Proto::kTcp, addr_v4(10, 0, 0, 1), 22, 22, 2222);
  eth0.ifname = "eth0";
  TableSet tables = host_tables({tcp_rule(80, 8080), tcp_rule(8081, 8081), dual, eth0});
  const std::vector<wire::PortGrant> grants = initial_port_grants(tables, 1024);
  ASSERT_EQ(grants.size(), 3u);  // 8081 is not privileged
  EXPECT_EQ(grants[0].listener.port, 80);
  EXPECT_EQ(grants[0].last_port, 80);
  wire::ListenerSpec want =
      to_wire(ListenerKey{Pif::kHost, Proto::kTcp, addr_v4(127, 0, 0, 1), {}, false, 80});
  EXPECT_EQ(std::memcmp(&grants[0].listener, &want, sizeof(want)), 0);
  EXPECT_EQ(grants[1].listener.port, 1);
  EXPECT_EQ(grants[1].last_port, 1023);  // cut below the unprivileged start
  EXPECT_EQ(grants[1].listener.flags, wire::kListenerDualStack);
  EXPECT_EQ(grants[1].listener.proto, static_cast<uint8_t>(wire::WireProto::kUdp));
  EXPECT_STREQ(grants[2].listener.ifname, "eth0");
  // Every privileged key of the tables falls inside a grant, and nothing else.
  std::vector<ListenerKey> keys;
  expand_listeners(tables.of(Pif::kHost), &keys);
  for (const ListenerKey& k : keys) {
    if (k.port < 1024) {
      EXPECT_TRUE(granted(grants, to_wire(k))) << k.port;
    }
  }
  EXPECT_TRUE(initial_port_grants(tables, 0).empty());  // no privileged ports at all
}

TEST(InitialPortGrants, HelloDeclaresThemOnceInBatches) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  FakeBroker fake;
  BrokerClient client(**loop, fake.take_worker_end());
  std::vector<Rule> rules;
  for (uint16_t port = 1; port <= 450; ++port) rules.push_back(tcp_rule(port, 8000));
  const TableSet tables = host_tables(rules);
  bool served = false;
  std::thread helper([&] { served = fake.serve_hello(5000); });
  auto info = client.hello(tables);
  helper.join();
  ASSERT_TRUE(served) << fake.error();
  ASSERT_TRUE(info.ok()) << info.error().message;
  // 450 grants: three messages (200, 200, 50), the last flagged.
  ASSERT_EQ(fake.initial_grants().size(), 450u);
  EXPECT_EQ(info->initial_grants.size(), 450u);
  EXPECT_EQ(fake.initial_grants()[449].listener.port, 450);
}

TEST(InitialPortGrants, TheWorkerRefusesWhatTheBrokerWouldWithItsReason) {
  BrokerInfo info;
  info.has_bind_cap = true;
  info.unprivileged_port_start = 1024;
  info.initial_grants = initial_port_grants(host_tables({tcp_rule(80, 8080)}), 1024);
  auto key = [](uint16_t port) {
    PlannedKey k;
    k.key.addr = addr_v4(127, 0, 0, 1);
    k.key.port = port;
    return k;
  };
  Acquisition acq = prepare_acquisition({key(80), key(22), key(8080)}, BindPolicy{}, info);
  ASSERT_EQ(acq.asked, 2u);  // 80 and 8080 go to the broker; 22 does not
  EXPECT_EQ(acq.keys[0].key.port, 80);
  EXPECT_EQ(acq.keys[1].key.port, 8080);
  EXPECT_EQ(acq.status[2], wire::kStatusPolicyDenied);
  EXPECT_NE(acq.policy_reason[2].find("`bind allow tcp 22 127.0.0.1`"), std::string::npos)
      << acq.policy_reason[2];
}

}  // namespace
}  // namespace sluice::testing
