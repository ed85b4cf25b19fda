// The broker's side of SPLICE rules over real socketpairs: OpenListeners
// entries with kListenerSplice go to the namespace helper (here its real
// loop, serve_helper_requests, in a forked child on this side's network
// namespace, or a thread that misbehaves on purpose), after the bind policy
// under the target namespace's facts; OpenSockets is answered with fresh
// sockets; both are violations without a target namespace.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "base/log.h"
#include "base/scm_rights.h"
#include "broker/broker_host.h"
#include "broker/listener_factory.h"
#include "broker/namespace_helper.h"
#include "tests/broker/test_wire.h"

namespace sluice {
namespace {

using testing::add_entry;
using testing::hello;
using testing::open_listeners;
using testing::open_sockets;
using testing::spec_splice;
using testing::spec_v4;

/// A SOCK_SEQPACKET pair.
struct Pair {
  UniqueFd a, b;
};

/// Returns a new SOCK_SEQPACKET pair.
Pair make_pair() {
  int sv[2];
  CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

/// A port that was free for TCP on [::] (dual-stack) a moment ago.
uint16_t free_dual_port() {
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int off = 0;
  ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  struct sockaddr_in6 sin6 = {};
  sin6.sin6_family = AF_INET6;
  socklen_t len = sizeof(sin6);
  CHECK(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin6), len) == 0);
  CHECK(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin6), &len) == 0);
  return ntohs(sin6.sin6_port);
}

/// A forked namespace helper running the real loop on this side's network
/// namespace (no setns, no filter); reaped by the destructor.
struct ForkedHelper {
  /// Forks the helper on `channel` (its end of the pair).
  explicit ForkedHelper(int channel) {
    pid = ::fork();
    if (pid == 0) {
      // Only its channel stays open, as in the real helper: a copy of the
      // broker's end here would keep it from seeing sluiced close.
      if (channel != 3 && ::dup3(channel, 3, 0) != 3) ::_exit(2);
      ::close_range(4, ~0U, 0);
      channel = 3;
      ::_exit(serve_helper_requests(channel));
    }
  }
  /// Waits for the helper and returns its exit status (-1 when killed).
  int wait() {
    int status = 0;
    if (pid <= 0 || ::waitpid(pid, &status, 0) != pid) return -1;
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  /// Kills and reaps a helper that is still running.
  ~ForkedHelper() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  pid_t pid = -1;
};

/// Reads, as the helper, the OpenListeners waiting on `fd` (without waiting).
std::unique_ptr<wire::OpenListenersMsg> helper_request(int fd) {
  auto req = std::make_unique<wire::OpenListenersMsg>();
  auto got = receive_message(fd, req.get(), sizeof(*req), 0, MSG_DONTWAIT);
  if (!got.ok() || got->len != sizeof(*req)) return nullptr;
  return req;
}

/// Answers `req` on `fd` as the helper does: opens each entry here.
void helper_answer(int fd, const wire::OpenListenersMsg& req) {
  auto reply = std::make_unique<wire::ListenersOpenedMsg>();
  std::memset(reply.get(), 0, sizeof(*reply));
  reply->header = wire::header(wire::BrokerMsg::kListenersOpened, req.header.sequence);
  reply->count = req.count;
  std::vector<UniqueFd> socks;
  std::vector<int> raw;
  for (uint32_t i = 0; i < req.count; ++i) {
    auto sock = open_listener(req.entries[i]);
    ASSERT_TRUE(sock.ok()) << sock.error().message;
    raw.push_back(sock->get());
    socks.push_back(std::move(*sock));
  }
  reply->fd_count = static_cast<uint32_t>(raw.size());
  ASSERT_TRUE(send_message(fd, reply.get(), sizeof(*reply), raw).ok());
}

/// True when a TCP listener can be bound on the dual-stack [::]:`port`, that
/// is, nothing holds it any more.
bool port_is_free(uint16_t port) {
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int off = 0;
  ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  struct sockaddr_in6 sin6 = {};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6)) == 0;
}

class SpliceHostTest : public ::testing::Test {
 protected:
  /// A host with the default policy.
  SpliceHostTest() : host_(policy()) {}

  /// The default policy with the capability, port start 1024.
  static BindPolicy policy() {
    BindPolicy p;
    p.has_bind_cap = true;
    return p;
  }

  /// Sends `len` bytes as the worker and lets the host handle them.
  HandleStatus request(const void* msg, size_t len) {
    EXPECT_TRUE(send_message(worker_.b.get(), msg, len, {}).ok());
    return host_.handle_one(worker_.a.get());
  }

  /// Hello and its reply, then the declaration of the initial rules'
  /// privileged ports (`grants`, none by default), which has no reply.
  wire::HelloReplyMsg do_hello(const std::vector<wire::PortGrant>& grants = {}) {
    auto m = hello(1);
    EXPECT_EQ(request(&m, sizeof(m)), HandleStatus::kContinue) << host_.last_error();
    wire::HelloReplyMsg reply = {};
    EXPECT_TRUE(receive_message(worker_.b.get(), &reply, sizeof(reply), 0, MSG_DONTWAIT).ok());
    auto declared = testing::initial_ports();
    for (const wire::PortGrant& g : grants) {
      testing::add_grant(declared.get(), g.listener, g.last_port);
    }
    EXPECT_EQ(request(declared.get(), sizeof(*declared)), HandleStatus::kContinue)
        << host_.last_error();
    EXPECT_EQ(host_.state(), HostState::kReady);
    return reply;
  }

  /// Waits (at most 30 s: a real helper answers in milliseconds) for the
  /// helper's answer to the request that waits for it, and lets the host
  /// take it and answer the worker.
  HandleStatus helper_answers() {
    EXPECT_TRUE(host_.splice_waiting());
    struct pollfd p = {helper_.a.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 30000), 1) << "the helper did not answer";
    return host_.serve_helper(worker_.a.get(), monotonic_ns());
  }

  /// Serves SPLICE with a helper holding the capability, then Hello; sends
  /// an OpenListeners #7 of one SPLICE entry on a free port, which must wait
  /// for the helper, and returns the request as the helper's end received it.
  std::unique_ptr<wire::OpenListenersMsg> ask_one_splice() {
    host_.serve_splice(helper_.a.get(), true, 1024);
    do_hello();
    auto m = open_listeners(7);
    add_entry(m.get(), spec_splice(free_dual_port()));
    EXPECT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kContinue) << host_.last_error();
    EXPECT_TRUE(host_.splice_waiting());
    return helper_request(helper_.b.get());
  }

  /// True when the worker's end has a datagram to read.
  bool worker_has_reply() {
    struct pollfd p = {worker_.b.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }

  /// Reads a ListenersOpened with its fds.
  ReceivedMessage listeners_reply(wire::ListenersOpenedMsg* reply) {
    auto got = receive_message(worker_.b.get(), reply, sizeof(*reply), kScmMaxFds, MSG_DONTWAIT);
    CHECK(got.ok());
    EXPECT_EQ(got->len, sizeof(*reply));
    EXPECT_EQ(reply->fd_count, got->fds.size());
    return std::move(*got);
  }

  Pair worker_ = make_pair();  // a: the broker's end, b: the worker's
  Pair helper_ = make_pair();  // a: the broker's end, b: the helper's
  BrokerHost host_;
};

TEST_F(SpliceHostTest, HelloReplyTellsTheTargetNamespacesFacts) {
  host_.serve_splice(helper_.a.get(), false, 900);
  wire::HelloReplyMsg reply = do_hello();
  EXPECT_EQ(reply.flags, wire::kBrokerHasBindCap | wire::kBrokerSpliceServed);
  EXPECT_EQ(reply.splice_unprivileged_port_start, 900u);
}

TEST_F(SpliceHostTest, HelloReplyWithoutATargetNamespaceServesNoSplice) {
  wire::HelloReplyMsg reply = do_hello();
  EXPECT_EQ(reply.flags, wire::kBrokerHasBindCap);
  EXPECT_EQ(reply.splice_unprivileged_port_start, 0u);
}

TEST_F(SpliceHostTest, SpliceEntriesAreOpenedByTheHelperInEntryOrder) {
  host_.serve_splice(helper_.a.get(), true, 1024);
  ForkedHelper helper(helper_.b.get());
  helper_.b.reset();
  do_hello();
  const uint16_t splice_port = free_dual_port();
  const uint16_t host_port = free_dual_port();
  auto m = open_listeners(7);
  add_entry(m.get(), spec_splice(splice_port));
  add_entry(m.get(), spec_v4(127, 0, 0, 1, host_port));
  add_entry(m.get(), spec_splice(splice_port, wire::WireProto::kUdp));
  ASSERT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kContinue) << host_.last_error();
  EXPECT_FALSE(worker_has_reply()) << "the answer waits for the helper";
  ASSERT_EQ(helper_answers(), HandleStatus::kContinue) << host_.last_error();
  EXPECT_FALSE(host_.splice_waiting());
  EXPECT_EQ(host_.helper_poll_fd(), -1);
  wire::ListenersOpenedMsg reply;
  ReceivedMessage got = listeners_reply(&reply);
  ASSERT_EQ(reply.fd_count, 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(reply.status[i], wire::kStatusOk) << i;
  // Each fd is the entry's own socket, checked as the broker checks the helper's.
  EXPECT_TRUE(check_opened_listener(got.fds[0].get(), m->entries[0]).ok());
  EXPECT_TRUE(check_opened_listener(got.fds[1].get(), m->entries[1]).ok());
  EXPECT_TRUE(check_opened_listener(got.fds[2].get(), m->entries[2]).ok());
  char ifname[16] = {};
  socklen_t len = sizeof(ifname);
  ASSERT_EQ(::getsockopt(got.fds[0].get(), SOL_SOCKET, SO_BINDTODEVICE, ifname, &len), 0);
  EXPECT_STREQ(ifname, "lo");
  // sluiced closing the channel ends the helper, with status 0.
  helper_.a.reset();
  EXPECT_EQ(helper.wait(), 0);
}

TEST_F(SpliceHostTest, EntriesTheTargetNamespacesPolicyDeniesAreNotAsked) {
  // No capability in the target namespace: port 80 there is denied up
  // front. The helper's end is closed, so asking it would fail.
  host_.serve_splice(helper_.a.get(), false, 1024);
  helper_.b.reset();
  do_hello();
  auto m = open_listeners();
  add_entry(m.get(), spec_splice(80));
  ASSERT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kContinue) << host_.last_error();
  wire::ListenersOpenedMsg reply;
  listeners_reply(&reply);
  EXPECT_EQ(reply.status[0], wire::kStatusPolicyDenied);
  EXPECT_EQ(reply.fd_count, 0u);
}

TEST_F(SpliceHostTest, WithoutBindLinesPrivilegedPortsInsideAreTheInitialSpliceRulesOnly) {
  // The helper holds the capability inside; the default policy then opens
  // privileged ports there only within the grants of the initial SPLICE
  // rules, which carry the SPLICE flag: a HOST grant opens nothing inside,
  // and a SPLICE grant nothing here.
  host_.serve_splice(helper_.a.get(), true, 1024);
  ForkedHelper helper(helper_.b.get());
  helper_.b.reset();
  wire::PortGrant inside = {};
  inside.listener = spec_splice(80);
  inside.last_port = 80;
  wire::PortGrant here = {};
  here.listener = spec_v4(127, 0, 0, 1, 90);
  here.last_port = 90;
  do_hello({inside, here});
  auto m = open_listeners();
  add_entry(m.get(), spec_splice(80));            // granted inside
  add_entry(m.get(), spec_splice(81));            // not granted
  add_entry(m.get(), spec_splice(90));            // only granted here
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 80));  // only granted inside
  ASSERT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kContinue) << host_.last_error();
  ASSERT_EQ(helper_answers(), HandleStatus::kContinue) << host_.last_error();
  wire::ListenersOpenedMsg reply;
  ReceivedMessage got = listeners_reply(&reply);
  EXPECT_EQ(reply.status[0], wire::kStatusOk);
  EXPECT_EQ(reply.status[1], wire::kStatusPolicyDenied);
  EXPECT_EQ(reply.status[2], wire::kStatusPolicyDenied);
  EXPECT_EQ(reply.status[3], wire::kStatusPolicyDenied);
  EXPECT_EQ(got.fds.size(), 1u);
}

TEST_F(SpliceHostTest, SpliceGrantsOnlyWithATargetNamespaceAndBelowItsPortStart) {
  auto m = testing::initial_ports();
  testing::add_grant(m.get(), spec_splice(80), 80);
  EXPECT_TRUE(validate_initial_ports(*m, 0, 1024, true, 1024).ok());
  auto without = validate_initial_ports(*m, 0, 1024);
  ASSERT_FALSE(without.ok());
  EXPECT_NE(without.error().message.find("a SPLICE grant, but sluiced has no target namespace"),
            std::string::npos)
      << without.error().message;
  // The target namespace's own port start decides, not this side's.
  auto above = validate_initial_ports(*m, 0, 1024, true, 80);
  ASSERT_FALSE(above.ok());
  EXPECT_NE(above.error().message.find("in the target namespace"), std::string::npos)
      << above.error().message;
}

TEST_F(SpliceHostTest, SpliceEntriesWithoutATargetNamespaceAreViolation) {
  do_hello();
  auto m = open_listeners();
  add_entry(m.get(), spec_splice(8080));
  EXPECT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kViolation);
  EXPECT_NE(host_.last_error().find("no target namespace"), std::string::npos)
      << host_.last_error();
}

TEST_F(SpliceHostTest, SpliceEntriesOffTheLoopbackAreViolation) {
  host_.serve_splice(helper_.a.get(), true, 1024);
  do_hello();
  auto m = open_listeners();
  auto off = spec_splice(8080);
  std::strcpy(off.ifname, "eth0");
  add_entry(m.get(), off);
  EXPECT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kViolation);
  EXPECT_NE(host_.last_error().find("off the target namespace's loopback"), std::string::npos)
      << host_.last_error();
}

TEST_F(SpliceHostTest, AHelperThatIsGoneStopsTheBroker) {
  host_.serve_splice(helper_.a.get(), true, 1024);
  helper_.b.reset();
  do_hello();
  auto m = open_listeners();
  add_entry(m.get(), spec_splice(free_dual_port()));
  EXPECT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kIoError);
  EXPECT_NE(host_.last_error().find("namespace helper"), std::string::npos) << host_.last_error();
}

TEST_F(SpliceHostTest, ASocketTheHelperWasNotAskedForStopsTheBroker) {
  host_.serve_splice(helper_.a.get(), true, 1024);
  do_hello();
  const uint16_t asked = free_dual_port();
  // A helper that answers with a listener on another port.
  std::thread liar([fd = helper_.b.get()] {
    auto req = std::make_unique<wire::OpenListenersMsg>();
    if (!receive_message(fd, req.get(), sizeof(*req), 0).ok()) return;
    wire::ListenerSpec other = req->entries[0];
    other.port = free_dual_port();
    auto sock = open_listener(other);
    if (!sock) return;
    auto reply = std::make_unique<wire::ListenersOpenedMsg>();
    std::memset(reply.get(), 0, sizeof(*reply));
    reply->header = wire::header(wire::BrokerMsg::kListenersOpened, req->header.sequence);
    reply->count = 1;
    reply->fd_count = 1;
    const int fds[] = {sock->get()};
    (void)send_message(fd, reply.get(), sizeof(*reply), fds);
  });
  auto m = open_listeners();
  add_entry(m.get(), spec_splice(asked));
  ASSERT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kContinue) << host_.last_error();
  EXPECT_EQ(helper_answers(), HandleStatus::kIoError);
  liar.join();
  EXPECT_NE(host_.last_error().find("not what was asked: bound to the wrong port"),
            std::string::npos)
      << host_.last_error();
}

TEST_F(SpliceHostTest, AHelperThatDoesNotAnswerFailsItsEntriesWithEtimedoutAndNoMore) {
  // The test holds the helper's end and answers late, as a helper stopped
  // with SIGSTOP and continued later would.
  host_.serve_splice(helper_.a.get(), true, 1024);
  do_hello();
  const uint16_t late_port = free_dual_port();
  const uint16_t host_port = free_dual_port();
  auto m = open_listeners(7);
  add_entry(m.get(), spec_splice(late_port));
  add_entry(m.get(), spec_v4(127, 0, 0, 1, host_port));
  ASSERT_EQ(request(m.get(), sizeof(*m)), HandleStatus::kContinue) << host_.last_error();
  ASSERT_TRUE(host_.splice_waiting());
  EXPECT_EQ(host_.helper_poll_fd(), helper_.a.get());
  const uint64_t asked_at = monotonic_ns();
  const int left = host_.splice_timeout_ms(asked_at);
  EXPECT_GT(left, 0);
  EXPECT_LE(left, kHelperAnswerTimeoutMs);

  // Meanwhile the worker's next request is not read: answers keep their order.
  auto sockets = open_sockets(1, wire::WireFamily::kInet, wire::WireProto::kTcp, 8);
  ASSERT_EQ(request(&sockets, sizeof(sockets)), HandleStatus::kContinue);
  EXPECT_FALSE(worker_has_reply());
  // Before its time, nothing is answered.
  ASSERT_EQ(host_.serve_helper(worker_.a.get(), asked_at), HandleStatus::kContinue);
  EXPECT_TRUE(host_.splice_waiting());

  // Past it, the SPLICE entry fails with ETIMEDOUT; the HOST entry opened.
  const uint64_t overdue = asked_at + kHelperAnswerTimeoutMs * 1000000ULL;
  EXPECT_EQ(host_.splice_timeout_ms(overdue), 0);
  ASSERT_EQ(host_.serve_helper(worker_.a.get(), overdue), HandleStatus::kContinue)
      << host_.last_error();
  EXPECT_FALSE(host_.splice_waiting());
  wire::ListenersOpenedMsg reply;
  ReceivedMessage got = listeners_reply(&reply);
  EXPECT_EQ(reply.header.sequence, 7u);
  EXPECT_EQ(reply.status[0], ETIMEDOUT);
  EXPECT_EQ(reply.status[1], wire::kStatusOk);
  EXPECT_EQ(got.fds.size(), 1u);
  // The OpenSockets that waited is read and answered now.
  ASSERT_EQ(host_.handle_one(worker_.a.get()), HandleStatus::kContinue) << host_.last_error();
  wire::SocketsOpenedMsg sockets_reply;
  auto sockets_got = receive_message(worker_.b.get(), &sockets_reply, sizeof(sockets_reply),
                                     wire::kMaxSocketsPerMessage, MSG_DONTWAIT);
  ASSERT_TRUE(sockets_got.ok());
  EXPECT_EQ(sockets_reply.header.sequence, 8u);

  // While that request is unanswered, the next SPLICE entry fails at once,
  // and the helper is not asked again.
  auto again = open_listeners(9);
  add_entry(again.get(), spec_splice(free_dual_port()));
  ASSERT_EQ(request(again.get(), sizeof(*again)), HandleStatus::kContinue);
  EXPECT_FALSE(host_.splice_waiting());
  listeners_reply(&reply);
  EXPECT_EQ(reply.status[0], ETIMEDOUT);
  auto first = helper_request(helper_.b.get());
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->count, 1u);
  EXPECT_EQ(first->entries[0].port, late_port);
  EXPECT_EQ(helper_request(helper_.b.get()), nullptr) << "asked twice";

  // The late answer is taken and its socket closed: the port is free again,
  // and the next SPLICE entry goes to the helper.
  helper_answer(helper_.b.get(), *first);
  ASSERT_EQ(host_.helper_poll_fd(), helper_.a.get());
  ASSERT_EQ(host_.serve_helper(worker_.a.get(), monotonic_ns() + 20000000000ULL),
            HandleStatus::kContinue)
      << host_.last_error();
  EXPECT_EQ(host_.helper_poll_fd(), -1);
  EXPECT_FALSE(worker_has_reply());
  EXPECT_TRUE(port_is_free(late_port));
  auto third = open_listeners(10);
  add_entry(third.get(), spec_splice(late_port));
  ASSERT_EQ(request(third.get(), sizeof(*third)), HandleStatus::kContinue);
  ASSERT_TRUE(host_.splice_waiting());
  auto asked = helper_request(helper_.b.get());
  ASSERT_NE(asked, nullptr);
  EXPECT_GT(asked->header.sequence, first->header.sequence);
  helper_answer(helper_.b.get(), *asked);
  ASSERT_EQ(helper_answers(), HandleStatus::kContinue) << host_.last_error();
  got = listeners_reply(&reply);
  EXPECT_EQ(reply.header.sequence, 10u);
  EXPECT_EQ(reply.status[0], wire::kStatusOk);
  ASSERT_EQ(got.fds.size(), 1u);
  EXPECT_TRUE(check_opened_listener(got.fds[0].get(), third->entries[0]).ok());
}

TEST_F(SpliceHostTest, AnAnswerForAWorkerThatDiedIsClosedAndTheNextWorkerIsServed) {
  auto first = ask_one_splice();
  ASSERT_NE(first, nullptr);
  const uint16_t port = first->entries[0].port;
  // The worker dies: the loop passes no channel, and the wait is dropped.
  ASSERT_EQ(host_.serve_helper(-1, monotonic_ns()), HandleStatus::kContinue);
  EXPECT_FALSE(host_.splice_waiting());
  EXPECT_EQ(host_.helper_poll_fd(), helper_.a.get()) << "its answer is still due";
  // The next worker asks before that answer came: it is asked for at once
  // (the helper is not overdue, only its asker is gone).
  host_.new_worker();
  do_hello();
  const uint16_t next_port = free_dual_port();
  auto next = open_listeners(3);
  add_entry(next.get(), spec_splice(next_port));
  ASSERT_EQ(request(next.get(), sizeof(*next)), HandleStatus::kContinue);
  ASSERT_TRUE(host_.splice_waiting());
  // The helper answers both, in order: the first answer is closed, the
  // second one goes to the new worker.
  helper_answer(helper_.b.get(), *first);
  auto second = helper_request(helper_.b.get());
  ASSERT_NE(second, nullptr);
  helper_answer(helper_.b.get(), *second);
  ASSERT_EQ(helper_answers(), HandleStatus::kContinue) << host_.last_error();
  EXPECT_EQ(host_.helper_poll_fd(), -1);
  EXPECT_TRUE(port_is_free(port));
  wire::ListenersOpenedMsg reply;
  ReceivedMessage got = listeners_reply(&reply);
  EXPECT_EQ(reply.header.sequence, 3u);
  EXPECT_EQ(reply.status[0], wire::kStatusOk);
  ASSERT_EQ(got.fds.size(), 1u);
  EXPECT_TRUE(check_opened_listener(got.fds[0].get(), next->entries[0]).ok());
}

TEST_F(SpliceHostTest, AWaitForTheHelperKeepsTheHeartbeatFresh) {
  // The worker's WorkerStatus reports wait unread behind the helper's answer:
  // the heartbeat must not go stale meanwhile (systemd's watchdog).
  const uint64_t heard = 1000;
  const uint64_t now = monotonic_ns();
  EXPECT_EQ(host_.heartbeat_ns(heard, now), heard);
  ASSERT_NE(ask_one_splice(), nullptr);
  ASSERT_TRUE(host_.splice_waiting());
  EXPECT_EQ(host_.heartbeat_ns(heard, now), now);
  const uint64_t overdue = monotonic_ns() + kHelperAnswerTimeoutMs * 1000000ULL;
  ASSERT_EQ(host_.serve_helper(worker_.a.get(), overdue), HandleStatus::kContinue);
  EXPECT_FALSE(host_.splice_waiting());
  EXPECT_EQ(host_.heartbeat_ns(heard, now), heard);
}

TEST_F(SpliceHostTest, AFailedReplyToTheWorkerIsNotTheHelpersFault) {
  // The worker's end is gone when the helper's answer comes: a worker
  // failure (restart it), not a helper failure (stop sluiced).
  auto req = ask_one_splice();
  ASSERT_NE(req, nullptr);
  helper_answer(helper_.b.get(), *req);
  worker_.b.reset();
  const HandleStatus status = helper_answers();
  EXPECT_TRUE(status == HandleStatus::kPeerClosed || status == HandleStatus::kIoError)
      << host_.last_error();
  EXPECT_FALSE(host_.helper_failed());
}

TEST_F(SpliceHostTest, AnAnswerToAnotherRequestStopsTheBroker) {
  auto req = ask_one_splice();
  ASSERT_NE(req, nullptr);
  req->header.sequence += 1;
  helper_answer(helper_.b.get(), *req);
  EXPECT_EQ(helper_answers(), HandleStatus::kIoError);
  EXPECT_TRUE(host_.helper_failed());
  EXPECT_NE(host_.last_error().find("malformed ListenersOpened"), std::string::npos)
      << host_.last_error();
}

TEST_F(SpliceHostTest, OpenSocketsAnswersFreshSocketsOfTheFamilyAndProtocol) {
  host_.serve_splice(helper_.a.get(), true, 1024);
  do_hello();
  struct Case {
    wire::WireFamily family;
    wire::WireProto proto;
    int domain, type;
  } cases[] = {{wire::WireFamily::kInet, wire::WireProto::kTcp, AF_INET, SOCK_STREAM},
               {wire::WireFamily::kInet6, wire::WireProto::kUdp, AF_INET6, SOCK_DGRAM}};
  uint64_t seq = 10;
  for (const Case& c : cases) {
    auto m = open_sockets(5, c.family, c.proto, ++seq);
    ASSERT_EQ(request(&m, sizeof(m)), HandleStatus::kContinue) << host_.last_error();
    wire::SocketsOpenedMsg reply;
    auto got = receive_message(worker_.b.get(), &reply, sizeof(reply), wire::kMaxSocketsPerMessage,
                               MSG_DONTWAIT);
    ASSERT_TRUE(got.ok()) << got.error().message;
    ASSERT_EQ(got->len, sizeof(reply));
    EXPECT_EQ(reply.header.type, static_cast<uint32_t>(wire::BrokerMsg::kSocketsOpened));
    EXPECT_EQ(reply.header.sequence, seq);
    EXPECT_EQ(reply.status, 0);
    ASSERT_EQ(reply.count, 5u);
    ASSERT_EQ(got->fds.size(), 5u);
    for (const UniqueFd& fd : got->fds) {
      int domain = 0, type = 0;
      socklen_t len = sizeof(int);
      ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len), 0);
      ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len), 0);
      EXPECT_EQ(domain, c.domain);
      EXPECT_EQ(type, c.type);
      EXPECT_NE(::fcntl(fd.get(), F_GETFL) & O_NONBLOCK, 0);
      struct sockaddr_storage ss = {};
      socklen_t slen = sizeof(ss);
      ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &slen), 0);
      EXPECT_EQ(reinterpret_cast<sockaddr_in*>(&ss)->sin_port, 0) << "unbound";
    }
  }
}

TEST_F(SpliceHostTest, OpenSocketsWithoutATargetNamespaceIsViolation) {
  do_hello();
  auto m = open_sockets();
  EXPECT_EQ(request(&m, sizeof(m)), HandleStatus::kViolation);
  EXPECT_NE(host_.last_error().find("no target namespace"), std::string::npos)
      << host_.last_error();
}

TEST_F(SpliceHostTest, MalformedOpenSocketsIsViolation) {
  host_.serve_splice(helper_.a.get(), true, 1024);
  do_hello();
  auto m = open_sockets(wire::kMaxSocketsPerMessage + 1);
  EXPECT_EQ(request(&m, sizeof(m)), HandleStatus::kViolation);
  EXPECT_NE(host_.last_error().find("count 65"), std::string::npos) << host_.last_error();
}

TEST(ServeHelperRequests, AnEntryThatIsNotSpliceStopsTheHelper) {
  Pair ch = make_pair();
  ForkedHelper helper(ch.b.get());
  ch.b.reset();
  auto m = open_listeners();
  add_entry(m.get(), spec_v4(127, 0, 0, 1, 8080));
  ASSERT_TRUE(send_message(ch.a.get(), m.get(), sizeof(*m), {}).ok());
  EXPECT_EQ(helper.wait(), 1);
}

TEST(ServeHelperRequests, AMalformedRequestStopsTheHelper) {
  Pair ch = make_pair();
  ForkedHelper helper(ch.b.get());
  ch.b.reset();
  auto m = hello();
  ASSERT_TRUE(send_message(ch.a.get(), &m, sizeof(m), {}).ok());
  EXPECT_EQ(helper.wait(), 1);
}

}  // namespace
}  // namespace sluice
