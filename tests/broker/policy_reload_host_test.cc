// The broker's side of a policy reload, on a real channel with the test as
// the worker: the reloaded bind policy decides the next request, the kernel
// facts and the initial rules' grants stay, PolicyReload goes out with its
// memfd only once the worker is ready and after a waiting answer, and never
// to a worker started after it; a failed reload goes out as
// PolicyReloadFailed in order with them; TargetExited (the --netns process
// exited) goes to each worker once; a worker that sends any of them is a
// violation; and the reader's text is parsed with numbers only.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "base/scm_rights.h"
#include "broker/broker_host.h"
#include "broker/policy_reader.h"
#include "policy/policy_file.h"
#include "tests/broker/host_fixture.h"
#include "tests/broker/test_wire.h"

namespace sluice::testing {
namespace {

/// A sealed memfd holding `text`.
UniqueFd text_fd(const std::string& text) {
  auto fd = policy_memfd(text);
  CHECK(fd.ok());
  return std::move(*fd);
}

/// The bind policy of `text`, parsed as a reload is.
BindPolicy bind_of(const std::string& text) {
  auto file = parse_reloaded_policy(text, "P");
  CHECK(file.ok());
  return bind_policy_from_file(*file);
}

TEST_F(BrokerHostTest, ReloadedBindPolicyDecidesTheNextRequest) {
  do_hello();
  const uint16_t port = free_port(AF_INET, SOCK_STREAM);
  host_.replace_policy(bind_of("bind deny tcp " + std::to_string(port) + " *\n"), ControlPolicy{});
  EXPECT_EQ(host_.bind_policy().unprivileged_port_start, 1024u);  // kernel facts kept
  EXPECT_TRUE(host_.bind_policy().has_bind_cap);
  auto req = open_listeners();
  add_entry(req.get(), spec_v4(127, 0, 0, 1, port));
  wire::ListenersOpenedMsg reply;
  ReceivedMessage got = request(*req, &reply);
  EXPECT_EQ(reply.status[0], wire::kStatusPolicyDenied);
  EXPECT_TRUE(got.fds.empty());

  host_.replace_policy(bind_of("bind allow tcp " + std::to_string(port) + " 127.0.0.1\n"),
                       ControlPolicy{});
  req->header.sequence = 3;
  got = request(*req, &reply);
  EXPECT_EQ(reply.status[0], wire::kStatusOk);
  EXPECT_EQ(got.fds.size(), 1u);
}

TEST_F(BrokerHostTest, ReloadedControlPolicyKeepsTheOwner) {
  ControlPolicy start;
  start.owner_uid = 4242;
  BrokerHost host(make_policy(true), start);
  auto file = parse_reloaded_policy("control commit uid=7\n", "P");
  ASSERT_TRUE(file.ok());
  host.replace_policy(bind_policy_from_file(*file), control_policy_from_file(*file, 0));
  EXPECT_EQ(host.control_policy().owner_uid, 4242u);
  EXPECT_TRUE(host.control_policy().use_rules);
}

TEST_F(BrokerHostTest, PolicyReloadWaitsUntilTheWorkerIsReady) {
  const std::string text = "bind allow tcp 80 *\n";
  UniqueFd fd = text_fd(text);
  host_.queue_policy_reload(fd.get(), static_cast<uint32_t>(text.size()));
  EXPECT_FALSE(host_.reply_pending());  // before InitialPorts: the worker reads only HelloReply
  do_hello();
  ASSERT_TRUE(host_.reply_pending());
  ASSERT_EQ(host_.flush_reply(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  EXPECT_FALSE(host_.reply_pending());
  wire::PolicyReloadMsg msg;
  auto got = receive_message(ch_.worker.get(), &msg, sizeof(msg), 1, MSG_DONTWAIT);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(got->len, sizeof(msg));
  EXPECT_EQ(msg.header.type, static_cast<uint32_t>(wire::BrokerMsg::kPolicyReload));
  EXPECT_EQ(msg.header.sequence, 0u);
  EXPECT_EQ(msg.length, text.size());
  EXPECT_EQ(msg.reserved, 0u);
  ASSERT_EQ(got->fds.size(), 1u);
  char buf[64] = {};
  ASSERT_EQ(::read(got->fds[0].get(), buf, sizeof(buf)), static_cast<ssize_t>(text.size()));
  EXPECT_EQ(std::string(buf), text);
  // sluiced keeps its own reference: the policy in force.
  EXPECT_GE(::fcntl(fd.get(), F_GET_SEALS), 0);
}

// A regression test: a reload put in force after the worker died (or before
// it took the PolicyReload) was sent to the next worker too, which had been
// launched with that very text and read the shared memfd to its end: it
// read 0 bytes and logged a false "the policy loaded before stays in force".
TEST_F(BrokerHostTest, APolicyReloadForADeadWorkerIsNotSentToTheNextOne) {
  const std::string text = "bind allow tcp 80 *\n";
  UniqueFd fd = text_fd(text);
  do_hello();
  host_.queue_policy_reload(fd.get(), static_cast<uint32_t>(text.size()));
  ASSERT_TRUE(host_.reply_pending());
  // The worker dies before it is sent; the next one starts with the text.
  host_.new_worker();
  ch_ = make_channel();
  EXPECT_FALSE(host_.reply_pending());
  do_hello();
  EXPECT_FALSE(host_.reply_pending()) << "the dead worker's PolicyReload went to the new one";
  wire::PolicyReloadMsg msg;
  EXPECT_FALSE(receive_message(ch_.worker.get(), &msg, sizeof(msg), 1, MSG_DONTWAIT).ok());
  // A reload after the new worker's start goes to it.
  host_.queue_policy_reload(fd.get(), static_cast<uint32_t>(text.size()));
  ASSERT_TRUE(host_.reply_pending());
  ASSERT_EQ(host_.flush_reply(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  auto got = receive_message(ch_.worker.get(), &msg, sizeof(msg), 1, MSG_DONTWAIT);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(msg.header.type, static_cast<uint32_t>(wire::BrokerMsg::kPolicyReload));
}

/// Reads one message from the worker's end of the channel into `buf`:
/// its type, or 0 when none came or it is malformed.
uint32_t next_type(int worker_end, wire::PolicyReloadFailedMsg* buf, size_t* fds) {
  auto got = receive_message(worker_end, buf, sizeof(*buf), 1, MSG_DONTWAIT);
  if (!got || got->len < sizeof(wire::WireHeader)) return 0;
  *fds = got->fds.size();
  return buf->header.type;
}

TEST_F(BrokerHostTest, AFailedReloadGoesToTheWorkerInOrderWithTheReloads) {
  // Failed, then one that applied, then failed again: the worker hears them
  // in that order, so that its audit log has them in the order they ran.
  host_.queue_policy_failure("P line 1: bad port \"0\"\n\x01");
  const std::string text = "bind allow tcp 80 *\n";
  UniqueFd fd = text_fd(text);
  host_.queue_policy_reload(fd.get(), static_cast<uint32_t>(text.size()));
  EXPECT_FALSE(host_.reply_pending());  // not before the worker is ready
  do_hello();
  auto msg = std::make_unique<wire::PolicyReloadFailedMsg>();
  size_t fds = 0;
  ASSERT_TRUE(host_.reply_pending());
  ASSERT_EQ(host_.flush_reply(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  ASSERT_EQ(next_type(ch_.worker.get(), msg.get(), &fds),
            static_cast<uint32_t>(wire::BrokerMsg::kPolicyReloadFailed));
  EXPECT_EQ(fds, 0u);
  EXPECT_EQ(msg->header.sequence, 0u);
  EXPECT_EQ(std::string(msg->error), "P line 1: bad port \"0\"??");  // made printable
  ASSERT_EQ(next_type(ch_.worker.get(), msg.get(), &fds),
            static_cast<uint32_t>(wire::BrokerMsg::kPolicyReload));
  EXPECT_EQ(fds, 1u);
  EXPECT_FALSE(host_.reply_pending());
  // A reload that applied, then one that failed, while the channel is full:
  // they wait, and go out in that order.
  host_.queue_policy_reload(fd.get(), static_cast<uint32_t>(text.size()));
  host_.queue_policy_failure("P: cannot open policy file");
  ASSERT_TRUE(host_.reply_pending());
  ASSERT_EQ(host_.flush_reply(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  ASSERT_EQ(next_type(ch_.worker.get(), msg.get(), &fds),
            static_cast<uint32_t>(wire::BrokerMsg::kPolicyReload));
  ASSERT_EQ(next_type(ch_.worker.get(), msg.get(), &fds),
            static_cast<uint32_t>(wire::BrokerMsg::kPolicyReloadFailed));
  EXPECT_EQ(std::string(msg->error), "P: cannot open policy file");
  EXPECT_FALSE(host_.reply_pending());
}

TEST_F(BrokerHostTest, AWorkerThatSendsPolicyReloadFailedIsViolation) {
  do_hello();
  auto msg = std::make_unique<wire::PolicyReloadFailedMsg>();
  std::memset(msg.get(), 0, sizeof(*msg));
  msg->header = wire::header(wire::BrokerMsg::kPolicyReloadFailed, 0);
  send_raw(msg.get(), sizeof(*msg), {});
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kViolation);
}

TEST_F(BrokerHostTest, AWorkerThatSendsPolicyReloadIsViolation) {
  do_hello();
  UniqueFd fd = text_fd("bind allow * * *\n");
  wire::PolicyReloadMsg msg = {};
  msg.header = wire::header(wire::BrokerMsg::kPolicyReload, 0);
  msg.length = 17;
  const int raw[1] = {fd.get()};
  send_raw(&msg, sizeof(msg), raw);
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kViolation);
}

TEST_F(BrokerHostTest, TargetExitedGoesOutOnceToEachWorkerBeforeAReloadThatWaits) {
  // The --netns process exits before the worker is ready: nothing goes out
  // until InitialPorts, then TargetExited, the header alone, before the
  // reload queued before it; once only; and again to the next worker.
  const std::string text = "bind allow tcp 80 *\n";
  UniqueFd fd = text_fd(text);
  host_.queue_policy_reload(fd.get(), static_cast<uint32_t>(text.size()));
  host_.queue_target_exited();
  EXPECT_FALSE(host_.reply_pending());
  do_hello();
  auto msg = std::make_unique<wire::PolicyReloadFailedMsg>();
  size_t fds = 9;
  ASSERT_TRUE(host_.reply_pending());
  ASSERT_EQ(host_.flush_reply(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  auto got = receive_message(ch_.worker.get(), msg.get(), sizeof(*msg), 1, MSG_DONTWAIT);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->len, sizeof(wire::TargetExitedMsg));
  EXPECT_EQ(got->fds.size(), 0u);
  EXPECT_EQ(msg->header.type, static_cast<uint32_t>(wire::BrokerMsg::kTargetExited));
  EXPECT_EQ(msg->header.sequence, 0u);
  ASSERT_EQ(next_type(ch_.worker.get(), msg.get(), &fds),
            static_cast<uint32_t>(wire::BrokerMsg::kPolicyReload));
  EXPECT_FALSE(host_.reply_pending()) << "TargetExited went out twice";
  EXPECT_EQ(next_type(ch_.worker.get(), msg.get(), &fds), 0u);
  // A worker that replaces this one is told too, once it is ready.
  host_.new_worker();
  ch_ = make_channel();
  EXPECT_FALSE(host_.reply_pending());
  do_hello();
  ASSERT_TRUE(host_.reply_pending());
  ASSERT_EQ(host_.flush_reply(ch_.broker.get()), HandleStatus::kContinue) << host_.last_error();
  EXPECT_EQ(next_type(ch_.worker.get(), msg.get(), &fds),
            static_cast<uint32_t>(wire::BrokerMsg::kTargetExited));
  EXPECT_FALSE(host_.reply_pending());
}

TEST_F(BrokerHostTest, AWorkerThatSendsTargetExitedIsViolation) {
  do_hello();
  wire::TargetExitedMsg msg = {};
  msg.header = wire::header(wire::BrokerMsg::kTargetExited, 0);
  send_raw(&msg, sizeof(msg), {});
  EXPECT_EQ(host_.handle_one(ch_.broker.get()), HandleStatus::kViolation);
}

TEST(ParseReloadedPolicy, NumbersOnly) {
  EXPECT_TRUE(parse_reloaded_policy("control read uid=0 gid=5\n", "P").ok());
  auto named = parse_reloaded_policy("control read uid=root\n", "P");
  ASSERT_FALSE(named.ok());
  EXPECT_NE(named.error().message.find("P line 1: unknown user \"root\""), std::string::npos)
      << named.error().message;
}

}  // namespace
}  // namespace sluice::testing
