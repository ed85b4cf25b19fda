// BrokerHost over a real SOCK_SEQPACKET socketpair: the test plays the
// worker, sends well-formed and hostile datagrams, and checks the replies and
// the sockets that come back with them (real binds on loopback).
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "base/scm_rights.h"
#include "broker/broker_host.h"
#include "policy/policy_file.h"
#include "tests/broker/host_fixture.h"
#include "tests/broker/test_wire.h"

namespace sluice {
namespace {

using namespace testing;  // NOLINT: the fixture's helpers and messages read best unqualified

TEST_F(BrokerHostTest, HelloGetsHelloReply) {
  auto m = hello(77);
  send_raw(&m, sizeof(m));
  ASSERT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  EXPECT_EQ(host_.state(), HostState::kAwaitInitial);
  wire::HelloReplyMsg reply;
  auto got = receive_message(ch_.worker.get(), &reply, sizeof(reply), 0, MSG_DONTWAIT);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->len, sizeof(reply));
  EXPECT_EQ(reply.header.magic, wire::kBrokerWireMagic);
  EXPECT_EQ(reply.header.type, static_cast<uint32_t>(wire::BrokerMsg::kHelloReply));
  EXPECT_EQ(reply.header.sequence, 77u);
  EXPECT_EQ(reply.version, wire::kBrokerWireVersion);
  EXPECT_EQ(reply.flags, wire::kBrokerHasBindCap);
  EXPECT_EQ(reply.unprivileged_port_start, 1024u);
  EXPECT_EQ(reply.splice_unprivileged_port_start, 0u);
}

TEST_F(BrokerHostTest, HelloReplyTellsWhenTheCapabilityIsMissing) {
  BindPolicy p = make_policy(false);
  p.unprivileged_port_start = 900;
  BrokerHost host(p);
  auto m = hello(1);
  send_raw(&m, sizeof(m));
  ASSERT_EQ(host.handle_one(ch_.broker.get()), HandleStatus::kContinue);
  wire::HelloReplyMsg reply;
  ASSERT_TRUE(receive_message(ch_.worker.get(), &reply, sizeof(reply), 0, MSG_DONTWAIT).ok());
  EXPECT_EQ(reply.flags, 0u);
  EXPECT_EQ(reply.unprivileged_port_start, 900u);
}

TEST_F(BrokerHostTest, NothingToReadIsContinue) {
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue);
  EXPECT_EQ(host_.state(), HostState::kAwaitHello);
}

TEST_F(BrokerHostTest, ClosedChannelIsPeerClosed) {
  ch_.worker.reset();
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kPeerClosed);
}

TEST_F(BrokerHostTest, OpenListenersBeforeHelloIsViolation) {
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, free_port(AF_INET, SOCK_STREAM)));
  send_raw(m.get(), sizeof(*m));
  expect_violation("before Hello");
}

/// A WorkerStatus with `generation`, `listeners` and `reserved`.
wire::WorkerStatusMsg worker_status(uint64_t generation, uint32_t listeners,
                                    uint32_t reserved = 0) {
  wire::WorkerStatusMsg m = {};
  m.header = wire::header(wire::BrokerMsg::kWorkerStatus, 0);
  m.generation = generation;
  m.listeners = listeners;
  m.reserved = reserved;
  return m;
}

TEST_F(BrokerHostTest, WorkerStatusIsRecordedWithoutAReply) {
  do_hello();
  EXPECT_FALSE(host_.worker_report().seen);
  auto m = worker_status(7, 12);
  send_raw(&m, sizeof(m));
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  EXPECT_TRUE(host_.worker_report().seen);
  EXPECT_EQ(host_.worker_report().generation, 7u);
  EXPECT_EQ(host_.worker_report().listeners, 12u);
  EXPECT_EQ(host_.worker_report().count, 1u);
  char byte;
  EXPECT_LT(::recv(ch_.worker.get(), &byte, 1, MSG_DONTWAIT), 0);  // no reply
}

TEST_F(BrokerHostTest, WorkerStatusBeforeTheInitialPortsIsViolation) {
  auto m = worker_status(1, 1);
  send_raw(&m, sizeof(m));
  expect_violation("before Hello");
}

TEST_F(BrokerHostTest, WorkerStatusWithReservedBitsIsViolation) {
  do_hello();
  auto m = worker_status(1, 1, 1);
  send_raw(&m, sizeof(m));
  expect_violation("malformed WorkerStatus");
}

TEST_F(BrokerHostTest, WorkerStatusOneByteShortIsViolation) {
  do_hello();
  auto m = worker_status(1, 1);
  send_raw(&m, sizeof(m) - 1);
  expect_violation("WorkerStatus of 31 bytes");
}

TEST_F(BrokerHostTest, SecondHelloIsViolation) {
  do_hello();
  auto m = hello(2);
  send_raw(&m, sizeof(m));
  expect_violation("permitted once");
}

TEST_F(BrokerHostTest, AttachedFdIsViolationAndIsClosed) {
  int before = open_fd_count();
  {
    UniqueFd extra(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    auto m = hello();
    int fds[] = {extra.get()};
    send_raw(&m, sizeof(m), fds);
  }
  expect_violation("fds");
  EXPECT_EQ(open_fd_count(), before);
}

TEST_F(BrokerHostTest, TruncatedMessageIsViolation) {
  auto m = hello();
  send_raw(&m, 10);
  expect_violation("truncated");
}

TEST_F(BrokerHostTest, MessageOneByteTooLongIsViolation) {
  std::vector<uint8_t> big(wire::kMaxWireMessage + 1, 0);
  auto m = hello();
  std::memcpy(big.data(), &m, sizeof(m));
  send_raw(big.data(), big.size());
  expect_violation("oversized");
}

TEST_F(BrokerHostTest, MessageFarTooLongIsViolation) {
  std::vector<uint8_t> big(wire::kMaxWireMessage * 4, 0);
  send_raw(big.data(), big.size());
  expect_violation("MSG_TRUNC");
}

TEST_F(BrokerHostTest, BadMagicIsViolation) {
  auto m = hello();
  m.header.magic = 0;
  send_raw(&m, sizeof(m));
  expect_violation("bad magic");
}

TEST_F(BrokerHostTest, WrongTypeIsViolation) {
  do_hello();
  wire::HelloReplyMsg m = {};
  m.header = wire::header(wire::BrokerMsg::kHelloReply, 0);
  send_raw(&m, sizeof(m));
  expect_violation("not a request");
}

TEST_F(BrokerHostTest, BadHelloVersionIsViolation) {
  auto m = hello();
  m.version = 999;
  send_raw(&m, sizeof(m));
  expect_violation("version 999");
}

TEST_F(BrokerHostTest, MalformedEntryIsViolation) {
  do_hello();
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 0));  // port 0 is invalid
  send_raw(m.get(), sizeof(*m));
  expect_violation("entry 0: port 0");
}

TEST_F(BrokerHostTest, OpensRealListenersWithOneFdPerOkEntry) {
  do_hello();
  const uint16_t tcp_port = free_port(AF_INET, SOCK_STREAM);
  const uint16_t udp_port = free_port(AF_INET, SOCK_DGRAM);
  auto m = open_listeners(42);
  add_entry(m.get(), spec_v4(127, 0, 0, 1, tcp_port));
  add_entry(m.get(), spec_v4(127, 0, 0, 1, udp_port, wire::WireProto::kUdp));
  wire::ListenersOpenedMsg reply;
  ReceivedMessage got = request(*m, &reply);
  ASSERT_EQ(got.fds.size(), 2u);
  EXPECT_EQ(reply.status[0], wire::kStatusOk);
  EXPECT_EQ(reply.status[1], wire::kStatusOk);

  int tcp = got.fds[0].get();
  EXPECT_EQ(sockopt(tcp, SOL_SOCKET, SO_DOMAIN), AF_INET);
  EXPECT_EQ(sockopt(tcp, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
  EXPECT_EQ(sockopt(tcp, SOL_SOCKET, SO_ACCEPTCONN), 1);
  EXPECT_EQ(sockopt(tcp, SOL_SOCKET, SO_REUSEADDR), 1);
  EXPECT_EQ(bound_port(tcp), tcp_port);
  EXPECT_NE(::fcntl(tcp, F_GETFL) & O_NONBLOCK, 0);

  int udp = got.fds[1].get();
  EXPECT_EQ(sockopt(udp, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
  EXPECT_EQ(sockopt(udp, SOL_SOCKET, SO_ACCEPTCONN), 0);
  EXPECT_EQ(bound_port(udp), udp_port);

  // The listener really accepts a connection.
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(tcp_port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  struct pollfd p = {tcp, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  UniqueFd accepted(::accept4(tcp, nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid());
}

TEST_F(BrokerHostTest, Ipv6AndDualStackSetV6Only) {
  if (!have_ipv6()) GTEST_SKIP() << "no IPv6 loopback here";
  do_hello();
  auto m = open_listeners();
  add_entry(m.get(), spec_v6(kLoop6, free_port(AF_INET6, SOCK_STREAM)));
  add_entry(m.get(), spec_v6(nullptr, free_port(AF_INET6, SOCK_STREAM, true), true));
  wire::ListenersOpenedMsg reply;
  ReceivedMessage got = request(*m, &reply);
  ASSERT_EQ(got.fds.size(), 2u);
  EXPECT_EQ(sockopt(got.fds[0].get(), SOL_SOCKET, SO_DOMAIN), AF_INET6);
  EXPECT_EQ(sockopt(got.fds[0].get(), IPPROTO_IPV6, IPV6_V6ONLY), 1);
  EXPECT_EQ(sockopt(got.fds[1].get(), IPPROTO_IPV6, IPV6_V6ONLY), 0);
  EXPECT_EQ(bound_port(got.fds[1].get()), m->entries[1].port);
}

TEST_F(BrokerHostTest, KernelErrorsComeBackAsErrnoAndFdsStayInOrder) {
  do_hello();
  // Occupy a port so that the broker's bind fails with EADDRINUSE.
  const uint16_t busy = free_port(AF_INET, SOCK_STREAM);
  UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(busy);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);

  const uint16_t ok_port = free_port(AF_INET, SOCK_STREAM);
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, busy));
  add_entry(m.get(), spec_v4(192, 0, 2, 123, ok_port));  // not a local address
  add_entry(m.get(), spec_v4(127, 0, 0, 1, ok_port));
  auto bad_if = spec_v4(127, 0, 0, 1, ok_port);
  std::strcpy(bad_if.ifname, "nosuchif0");
  add_entry(m.get(), bad_if);
  wire::ListenersOpenedMsg reply;
  ReceivedMessage got = request(*m, &reply);
  EXPECT_EQ(reply.status[0], EADDRINUSE);
  // With net.ipv4.ip_nonlocal_bind=1 the kernel lets any address be bound.
  if (!nonlocal_bind()) {
    EXPECT_EQ(reply.status[1], EADDRNOTAVAIL);
  }
  EXPECT_EQ(reply.status[2], wire::kStatusOk);
  EXPECT_EQ(reply.status[3], ENODEV);
  ASSERT_EQ(got.fds.size(), 1u);
  EXPECT_EQ(bound_port(got.fds[0].get()), ok_port);
}

TEST_F(BrokerHostTest, PrivilegedPortWithoutCapabilityIsPolicyDenied) {
  BrokerHost host(make_policy(false));
  handshake(host, ch_);

  const uint16_t ok_port = free_port(AF_INET, SOCK_STREAM);
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 80));
  add_entry(m.get(), spec_v4(127, 0, 0, 1, ok_port));
  send_raw(m.get(), sizeof(*m));
  ASSERT_EQ(host.handle_one(ch_.broker.get()), HandleStatus::kContinue) << host.last_error();
  wire::ListenersOpenedMsg reply;
  auto got = receive_message(ch_.worker.get(), &reply, sizeof(reply), kScmMaxFds, MSG_DONTWAIT);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(reply.status[0], wire::kStatusPolicyDenied);
  EXPECT_EQ(reply.status[1], wire::kStatusOk);
  EXPECT_EQ(reply.fd_count, 1u);
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_EQ(bound_port(got->fds[0].get()), ok_port);
}

TEST_F(BrokerHostTest, PolicyFileDenialIsPolicyDenied) {
  auto file = parse_policy_text("bind deny tcp * 127.0.0.1\nbind allow * * *\n", "test-policy");
  ASSERT_TRUE(file.ok()) << file.error().message;
  BindPolicy p = bind_policy_from_file(*file);
  p.has_bind_cap = true;
  BrokerHost host(p);
  handshake(host, ch_);
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, free_port(AF_INET, SOCK_STREAM)));
  send_raw(m.get(), sizeof(*m));
  ASSERT_EQ(host.handle_one(ch_.broker.get()), HandleStatus::kContinue);
  wire::ListenersOpenedMsg reply;
  auto got = receive_message(ch_.worker.get(), &reply, sizeof(reply), kScmMaxFds, MSG_DONTWAIT);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(reply.status[0], wire::kStatusPolicyDenied);
  EXPECT_TRUE(got->fds.empty());
}

TEST_F(BrokerHostTest, PeerDyingMidRequestIsAnErrorNotSigpipe) {
  // Make sure SIGPIPE would kill this process if it were raised.
  struct sigaction dfl = {}, old = {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, &old);
  do_hello();
  int before = open_fd_count();
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, free_port(AF_INET, SOCK_STREAM)));
  send_raw(m.get(), sizeof(*m));
  ch_.worker.reset();  // the worker dies with its request queued
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kPeerClosed);
  EXPECT_NE(host_.last_error().find("EPIPE"), std::string::npos) << host_.last_error();
  // The worker end is gone and the reply's copy of the listener closed; the
  // escrow keeps its own, for the worker that replaces the dead one.
  EXPECT_EQ(open_fd_count(), before);
  EXPECT_EQ(host_.escrow().size(), 1u);
  ::sigaction(SIGPIPE, &old, nullptr);
}

TEST_F(BrokerHostTest, FdFloodUnderLowFdLimitIsViolationWithoutLeak) {
  // In a child, so that the lowered limit does not outlive the test.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::vector<UniqueFd> flood;
    std::vector<int> raw;
    for (int i = 0; i < 200; ++i) {
      flood.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      raw.push_back(flood.back().get());
    }
    auto m = hello();
    if (!send_message(ch_.worker.get(), &m, sizeof(m), raw).ok()) ::_exit(2);
    flood.clear();
    int before = open_fd_count();
    // Room for only a few of the 200 fds: the kernel truncates (MSG_CTRUNC).
    struct rlimit lim = {static_cast<rlim_t>(before + 8), static_cast<rlim_t>(before + 8)};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(3);
    BrokerHost host(make_policy(true));
    if (host.handle_one(ch_.broker.get()) != HandleStatus::kViolation) ::_exit(4);
    if (open_fd_count() != before) ::_exit(5);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(BrokerHostTest, AReplyTheWorkerHasNoRoomForWaitsWithItsSocketsAndGoesOutInOrder) {
  // As sluiced runs it: the broker's end non-blocking. A small send buffer
  // on it fills after a few replies the worker has not read.
  do_hello();
  const int flags = ::fcntl(ch_.broker.get(), F_GETFL);
  ASSERT_EQ(::fcntl(ch_.broker.get(), F_SETFL, flags | O_NONBLOCK), 0);
  const int tiny = 1;  // the kernel rounds it up to its minimum
  ASSERT_EQ(::setsockopt(ch_.broker.get(), SOL_SOCKET, SO_SNDBUF, &tiny, sizeof(tiny)), 0);
  std::vector<uint16_t> ports;
  for (uint64_t seq = 10; seq < 60 && !host_.reply_pending(); ++seq) {
    auto m = open_listeners(seq);
    ports.push_back(free_port(AF_INET, SOCK_STREAM));
    add_entry(m.get(), spec_v4(127, 0, 0, 1, ports.back()));
    send_raw(m.get(), sizeof(*m));
    // Before the broker waited, a full channel was an error that stopped it.
    ASSERT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  }
  ASSERT_TRUE(host_.reply_pending()) << "the channel never filled";
  // While the reply waits, the next request is not even read.
  auto next = peer_query(99);
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  const int conn[] = {a.get()};
  send_raw(&next, sizeof(next), conn);
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue);
  EXPECT_TRUE(host_.reply_pending());
  EXPECT_EQ(host_.flush_reply(ch_.broker.get()), HandleStatus::kContinue);  // still no room
  EXPECT_TRUE(host_.reply_pending());

  // The worker reads: every reply arrives in order, each with its socket.
  size_t answered = 0;
  bool peer_answered = false;
  for (int i = 0; i < 200 && !peer_answered; ++i) {
    if (host_.reply_pending()) {
      ASSERT_NE(host_.flush_reply(ch_.broker.get()), HandleStatus::kIoError) << host_.last_error();
    } else {
      ASSERT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
    }
    wire::ListenersOpenedMsg reply;
    auto got = receive_message(ch_.worker.get(), &reply, sizeof(reply), kScmMaxFds, MSG_DONTWAIT);
    if (!got.ok()) continue;
    if (got->len == sizeof(wire::PeerReplyMsg)) {
      EXPECT_EQ(answered, ports.size()) << "the PeerQuery overtook an earlier request";
      EXPECT_EQ(reply.header.sequence, 99u);
      peer_answered = true;
      break;
    }
    ASSERT_EQ(got->len, sizeof(reply));
    ASSERT_LT(answered, ports.size());
    EXPECT_EQ(reply.header.sequence, 10 + answered);
    ASSERT_EQ(got->fds.size(), 1u);
    EXPECT_EQ(bound_port(got->fds[0].get()), ports[answered]);
    EXPECT_EQ(sockopt(got->fds[0].get(), SOL_SOCKET, SO_ACCEPTCONN), 1);
    ++answered;
  }
  EXPECT_EQ(answered, ports.size());
  EXPECT_TRUE(peer_answered);
  EXPECT_FALSE(host_.reply_pending());
}

// --- PeerQuery: the broker tells the worker who a control client is ---

/// Sends a PeerQuery carrying `fds`, lets `host` answer, and reads the reply.
wire::PeerReplyMsg ask_peer(BrokerHost& host, Channel& ch, std::span<const int> fds) {
  auto q = peer_query(7);
  EXPECT_TRUE(send_message(ch.worker.get(), &q, sizeof(q), fds).ok());
  EXPECT_EQ(host.handle_one(ch.broker.get()), HandleStatus::kContinue) << host.last_error();
  wire::PeerReplyMsg reply = {};
  auto got = receive_message(ch.worker.get(), &reply, sizeof(reply), 0, MSG_DONTWAIT);
  EXPECT_TRUE(got.ok()) << (got.ok() ? "" : got.error().message);
  EXPECT_EQ(got.ok() ? got->len : 0, sizeof(reply));
  EXPECT_EQ(reply.header.type, static_cast<uint32_t>(wire::BrokerMsg::kPeerReply));
  EXPECT_EQ(reply.header.sequence, 7u);
  return reply;
}

TEST_F(BrokerHostTest, PeerQueryReportsTheRealIdsAndTheDefaultAccess) {
  do_hello();
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  int before = open_fd_count();
  const int fds[] = {a.get()};
  wire::PeerReplyMsg r = ask_peer(host_, ch_, fds);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.pid, ::getpid());
  EXPECT_EQ(r.uid, ::getuid());
  EXPECT_EQ(r.gid, ::getgid());
  // The default policy (owner uid 0 here): root may commit, anyone else nothing.
  EXPECT_EQ(r.access, ::getuid() == 0 ? wire::kAccessCommit : wire::kAccessNone);
  EXPECT_EQ(r.line, 0u);
  EXPECT_EQ(open_fd_count(), before);  // the broker closed its copy
}

TEST_F(BrokerHostTest, PeerQueryAppliesTheControlLines) {
  ControlPolicy control;
  control.use_rules = true;
  control.source = "P";
  ControlRule read_all;
  read_all.access = ControlAccess::kRead;
  read_all.gids = {::getgid()};
  read_all.line = 4;
  control.rules = {read_all};
  BrokerHost host(make_policy(true), control);
  handshake(host, ch_);
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  const int fds[] = {a.get()};
  wire::PeerReplyMsg r = ask_peer(host, ch_, fds);
  EXPECT_EQ(r.access, wire::kAccessRead);
  EXPECT_EQ(r.line, 4u);
}

TEST_F(BrokerHostTest, PeerQueryOnANonSocketIsAnErrnoNotAViolation) {
  do_hello();
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int fds[] = {devnull.get()};
  wire::PeerReplyMsg r = ask_peer(host_, ch_, fds);
  EXPECT_EQ(r.status, ENOTSOCK);
  EXPECT_EQ(r.access, wire::kAccessNone);
  EXPECT_EQ(r.uid, 0u);
}

TEST_F(BrokerHostTest, PeerQueryWithoutItsFdIsViolation) {
  do_hello();
  auto q = peer_query();
  send_raw(&q, sizeof(q));
  expect_violation("a PeerQuery carries 1 fds, this one came with 0");
}

TEST_F(BrokerHostTest, PeerQueryWithTwoFdsIsViolationAndLeaksNothing) {
  do_hello();
  int before = open_fd_count();
  {
    UniqueFd x(::open("/dev/null", O_RDONLY | O_CLOEXEC)), y(::open("/dev/null", O_RDONLY));
    auto q = peer_query();
    const int fds[] = {x.get(), y.get()};
    send_raw(&q, sizeof(q), fds);
  }
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kViolation);
  EXPECT_EQ(open_fd_count(), before);
}

// --- Security review item 9: a worker's fd whose close() would linger ---
//
// A PeerQuery carried a TCP socket with SO_LINGER and unsent data; the broker
// asked it for credentials and then closed it, and that close waited out the
// linger time with SIGTERM blocked (signalfd). Now the fd's kind is checked
// first, anything but a UNIX stream socket is a violation, and every fd the
// broker closes for the worker is closed without lingering.

/// Limit: the linger time of the test sockets. A broker that lingers takes
/// this long per close, so a failing test stays short.
constexpr int kLingerSeconds = 2;

/// A connected TCP socket whose last close() lingers: SO_LINGER on, and bytes
/// in its send queue that its peer (held here, never reading) will not take.
struct LingeringTcp {
  UniqueFd listener, peer;  // kept open: the peer's window stays shut
  UniqueFd sock;            // the one to send to the broker
};

/// Returns a LingeringTcp on loopback; CHECKs every step.
LingeringTcp make_lingering_tcp() {
  LingeringTcp t;
  const int small = 4096;
  t.listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CHECK(::setsockopt(t.listener.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  CHECK(::bind(t.listener.get(), reinterpret_cast<sockaddr*>(&sin), len) == 0);
  CHECK(::listen(t.listener.get(), 1) == 0);
  CHECK(::getsockname(t.listener.get(), reinterpret_cast<sockaddr*>(&sin), &len) == 0);
  t.sock.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CHECK(::setsockopt(t.sock.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
  CHECK(::connect(t.sock.get(), reinterpret_cast<sockaddr*>(&sin), len) == 0);
  t.peer.reset(::accept4(t.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  CHECK(t.peer.valid());
  char chunk[4096] = {};
  for (int i = 0; i < 1024; ++i) {  // bounded: both buffers fill after a few KiB
    if (::send(t.sock.get(), chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL) <= 0) break;
  }
  struct linger lg = {1, kLingerSeconds};
  CHECK(::setsockopt(t.sock.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
  return t;
}

/// Sends `msg` with the lingering socket of `t` as the worker, gives up the
/// test's own copy (the broker's close is then the last), and returns how
/// long `host` took to handle it, with its status in `status`.
template <typename Msg>
std::chrono::milliseconds handle_with_lingering_fd(BrokerHost& host, Channel& ch, const Msg& msg,
                                                   LingeringTcp& t, HandleStatus* status) {
  const int fds[] = {t.sock.get()};
  EXPECT_TRUE(send_message(ch.worker.get(), &msg, sizeof(msg), fds).ok());
  t.sock.reset();
  auto start = std::chrono::steady_clock::now();
  *status = host.handle_one(ch.broker.get());
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

TEST_F(BrokerHostTest, PeerQueryWithATcpSocketIsViolationAndItsCloseDoesNotLinger) {
  do_hello();
  int before = open_fd_count();
  LingeringTcp t = make_lingering_tcp();
  HandleStatus st = HandleStatus::kContinue;
  auto took = handle_with_lingering_fd(host_, ch_, peer_query(), t, &st);
  EXPECT_EQ(st, HandleStatus::kViolation) << "a TCP socket was asked for credentials";
  EXPECT_NE(host_.last_error().find("PeerQuery with a socket of family 2 and type 1, not the "
                                    "UNIX stream socket of a control client"),
            std::string::npos)
      << host_.last_error();
  EXPECT_LT(took.count(), 1000) << "the broker's close() lingered";
  t = {};
  EXPECT_EQ(open_fd_count(), before);
}

TEST_F(BrokerHostTest, AnyFdOfAViolationIsClosedWithoutLingering) {
  // The envelope check refuses an fd on a Hello; its close must not linger
  // either, nor that of two fds on a PeerQuery (refused inside receive_message).
  LingeringTcp t = make_lingering_tcp();
  HandleStatus st = HandleStatus::kContinue;
  auto took = handle_with_lingering_fd(host_, ch_, hello(), t, &st);
  EXPECT_EQ(st, HandleStatus::kViolation);
  EXPECT_LT(took.count(), 1000) << "the broker's close() lingered";

  Channel ch = make_channel();
  BrokerHost host(make_policy(true));
  handshake(host, ch);
  LingeringTcp a = make_lingering_tcp(), b = make_lingering_tcp();
  auto q = peer_query();
  const int fds[] = {a.sock.get(), b.sock.get()};
  ASSERT_TRUE(send_message(ch.worker.get(), &q, sizeof(q), fds).ok());
  a.sock.reset();
  b.sock.reset();
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(host.handle_one(ch.broker.get()), HandleStatus::kViolation);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1))
      << "the broker's close() lingered";
}

TEST_F(BrokerHostTest, PeerQueryWithAUnixSocketOfAnotherTypeIsViolation) {
  do_hello();
  for (int type : {SOCK_DGRAM, SOCK_SEQPACKET}) {
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, pair), 0);
    UniqueFd a(pair[0]), b(pair[1]);
    auto q = peer_query();
    const int fds[] = {a.get()};
    send_raw(&q, sizeof(q), fds);
    expect_violation(("a socket of family 1 and type " + std::to_string(type)).c_str());
  }
}

TEST(CheckPeerSocket, OnlyAUnixStreamSocketPasses) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  EXPECT_TRUE(check_peer_socket(a.get()).ok());
  UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto r = check_peer_socket(udp.get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().err, EPROTO);
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  r = check_peer_socket(devnull.get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().err, ENOTSOCK);
}

TEST_F(BrokerHostTest, PeerQueryBeforeHelloOrWithReservedBitsIsViolation) {
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int fds[] = {devnull.get()};
  auto q = peer_query();
  send_raw(&q, sizeof(q), fds);
  expect_violation("PeerQuery before Hello");
  do_hello();
  q.reserved[1] = 1;
  send_raw(&q, sizeof(q), fds);
  expect_violation("reserved");
}

}  // namespace
}  // namespace sluice
