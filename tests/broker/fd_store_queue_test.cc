// The queue of fd store operations (broker/fd_store_queue.h), against a
// real datagram socketpair as the service manager's notify socket: the
// order of puts and removes, a remove that cancels a waiting put, the bound,
// EAGAIN that keeps an operation and another error that drops it. A full
// manager is made by not reading: sends are refused with EAGAIN once its
// queue (net.unix.max_dgram_qlen) or sluiced's send buffer is full.
#include "broker/fd_store_queue.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "base/scm_rights.h"
#include "base/unique_fd.h"
#include "broker/fd_store.h"

namespace sluice {
namespace {

/// Limit: datagrams a test sends to fill the manager's queue. The kernel
/// refuses far earlier (max_dgram_qlen is 10 in a new network namespace,
/// 512 under systemd; the send buffer holds a few hundred small datagrams).
constexpr int kMaxFill = 100000;

/// A manager and sluiced's connected end, both non-blocking.
struct NotifyPair {
  UniqueFd manager, sluiced;
};

/// Makes a NotifyPair (SOCK_DGRAM socketpair, as a connected notify socket).
NotifyPair notify_pair() {
  int pair[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair), 0);
  return {UniqueFd(pair[0]), UniqueFd(pair[1])};
}

/// Sends filler datagrams on `fd` until the kernel refuses one with EAGAIN;
/// returns how many went out (bounded by kMaxFill).
int fill(int fd) {
  int sent = 0;
  while (sent < kMaxFill && send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) ++sent;
  EXPECT_EQ(errno, EAGAIN);
  return sent;
}

/// One datagram as the manager reads it.
struct Received {
  std::string text;
  std::vector<UniqueFd> fds;
};

/// Reads every datagram queued on `fd` (bounded), fillers included.
std::vector<Received> read_all(int fd) {
  std::vector<Received> out;
  for (int i = 0; i < kMaxFill; ++i) {
    char buf[512];
    auto got = receive_message(fd, buf, sizeof(buf), 4, MSG_DONTWAIT);
    if (!got.ok()) break;
    out.push_back({std::string(buf, got->len), std::move(got->fds)});
  }
  return out;
}

/// The texts of `got` without the fillers ("x").
std::vector<std::string> texts(const std::vector<Received>& got) {
  std::vector<std::string> out;
  for (const Received& r : got) {
    if (r.text != "x") out.push_back(r.text);
  }
  return out;
}

/// A listener key with `cookie` for TCP `port`.
FdStoreKey listener_key(uint64_t cookie, uint16_t port) {
  wire::ListenerSpec spec = {};
  spec.proto = static_cast<uint8_t>(wire::WireProto::kTcp);
  spec.family = static_cast<uint8_t>(wire::WireFamily::kInet);
  spec.port = port;
  return FdStoreKey::listener(cookie, spec);
}

/// True when `a` and `b` are descriptors of the same open file.
bool same_file(int a, int b) {
  struct stat sa, sb;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

TEST(FdStoreQueue, SendsPutsAndRemovesInOrderWithTheirDescriptors) {
  NotifyPair p = notify_pair();
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  FdStoreQueue q;
  const FdStoreKey a = listener_key(1, 80), b = listener_key(2, 443);
  ASSERT_TRUE(q.put(a, file.get()).ok());
  ASSERT_TRUE(q.put(FdStoreKey::worker_state(1), file.get()).ok());
  ASSERT_TRUE(q.remove(b).ok());  // never put here: sent as it is
  EXPECT_EQ(q.size(), 3u);
  const FdStoreFlush done = q.flush(p.sluiced.get(), 0);
  EXPECT_EQ(done.sent, 3u);
  EXPECT_EQ(done.dropped, 0u);
  EXPECT_FALSE(done.blocked);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.wants_writable(0));
  std::vector<Received> got = read_all(p.manager.get());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].text, fd_store_message(a.name()));
  ASSERT_EQ(got[0].fds.size(), 1u);
  EXPECT_TRUE(same_file(got[0].fds[0].get(), file.get()));
  EXPECT_EQ(got[1].text, fd_store_message("state-1"));
  EXPECT_EQ(got[2].text, fd_remove_message(b.name()));
  EXPECT_TRUE(got[2].fds.empty());
}

TEST(FdStoreQueue, EagainKeepsTheOperationsInOrderUntilTheManagerReads) {
  NotifyPair p = notify_pair();
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int fillers = fill(p.sluiced.get());
  ASSERT_GT(fillers, 0);
  FdStoreQueue q;
  const FdStoreKey a = listener_key(1, 80), b = listener_key(2, 81);
  ASSERT_TRUE(q.put(a, file.get()).ok());
  ASSERT_TRUE(q.put(b, file.get()).ok());
  ASSERT_TRUE(q.remove(a).ok());  // a's put waits: both are dropped
  ASSERT_TRUE(q.put(FdStoreKey::worker_state(3), file.get()).ok());
  ASSERT_TRUE(q.remove(listener_key(9, 99)).ok());
  // a's put was cancelled by its remove; b, state-3 and 9's remove wait.
  EXPECT_EQ(q.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const FdStoreFlush blocked = q.flush(p.sluiced.get(), 0);
    EXPECT_TRUE(blocked.blocked);
    EXPECT_EQ(blocked.sent, 0u);
    EXPECT_EQ(blocked.dropped, 0u);
    EXPECT_EQ(q.size(), 3u);
    EXPECT_TRUE(q.wants_writable(0)) << "EAGAIN: the loop waits for POLLOUT";
    EXPECT_EQ(q.timeout_ms(0), -1);
  }
  // The manager reads: everything goes, in order, after the fillers.
  std::vector<Received> first = read_all(p.manager.get());
  EXPECT_EQ(static_cast<int>(first.size()), fillers);
  EXPECT_TRUE(texts(first).empty());
  const FdStoreFlush done = q.flush(p.sluiced.get(), 0);
  EXPECT_EQ(done.sent, 3u);
  EXPECT_FALSE(done.blocked);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(texts(read_all(p.manager.get())),
            (std::vector<std::string>{fd_store_message(b.name()), fd_store_message("state-3"),
                                      fd_remove_message(listener_key(9, 99).name())}));
}

TEST(FdStoreQueue, ARemoveOfAWaitingPutDropsBothAndNeverOvertakesASentOne) {
  NotifyPair p = notify_pair();
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  FdStoreQueue q;
  const FdStoreKey sent = listener_key(1, 80), waiting = listener_key(2, 81);
  // Sent at once: its remove must go out as a remove, after it.
  ASSERT_TRUE(q.put(sent, file.get()).ok());
  EXPECT_EQ(q.flush(p.sluiced.get(), 0).sent, 1u);
  const int fillers = fill(p.sluiced.get());
  ASSERT_TRUE(q.put(waiting, file.get()).ok());
  ASSERT_TRUE(q.remove(sent).ok());
  ASSERT_TRUE(q.remove(waiting).ok());  // drops the waiting put, queues nothing
  EXPECT_EQ(q.size(), 1u);
  // A new state, then the remove of the older one whose put still waits.
  ASSERT_TRUE(q.put(FdStoreKey::worker_state(1), file.get()).ok());
  ASSERT_TRUE(q.put(FdStoreKey::worker_state(2), file.get()).ok());
  ASSERT_TRUE(q.remove(FdStoreKey::worker_state(1)).ok());
  EXPECT_EQ(q.size(), 2u);
  // A listener cookie and a state sequence of the same number are distinct.
  ASSERT_TRUE(q.put(listener_key(2, 82), file.get()).ok());
  ASSERT_TRUE(q.remove(FdStoreKey::worker_state(2)).ok());
  EXPECT_EQ(q.size(), 2u);
  ASSERT_TRUE(q.put(FdStoreKey::worker_state(4), file.get()).ok());
  EXPECT_EQ(q.size(), 3u);

  std::vector<Received> got = read_all(p.manager.get());
  EXPECT_EQ(static_cast<int>(texts(got).size()), 1);  // the first put
  EXPECT_EQ(static_cast<int>(got.size()), fillers + 1);
  EXPECT_EQ(q.flush(p.sluiced.get(), 0).sent, 3u);
  EXPECT_EQ(texts(read_all(p.manager.get())),
            (std::vector<std::string>{fd_remove_message(sent.name()),
                                      fd_store_message(listener_key(2, 82).name()),
                                      fd_store_message("state-4")}));
}

TEST(FdStoreQueue, ASecondPutOfAWaitingNameIsRefused) {
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  FdStoreQueue q;
  ASSERT_TRUE(q.put(listener_key(5, 80), file.get()).ok());
  auto again = q.put(listener_key(5, 80), file.get());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().err, EEXIST);
  EXPECT_EQ(q.size(), 1u);
}

TEST(FdStoreQueue, IsBoundedAndRefusesOneMore) {
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  FdStoreQueue q(4);
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(q.put(listener_key(i, 80), file.get()).ok());
  ASSERT_TRUE(q.remove(listener_key(100, 80)).ok());
  EXPECT_EQ(q.size(), 4u);
  auto put = q.put(listener_key(4, 80), file.get());
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.error().err, ENOSPC);
  auto removed = q.remove(listener_key(101, 80));
  ASSERT_FALSE(removed.ok());
  EXPECT_EQ(removed.error().err, ENOSPC);
  // A remove that cancels a waiting put needs no room, and makes some.
  ASSERT_TRUE(q.remove(listener_key(2, 80)).ok());
  EXPECT_EQ(q.size(), 3u);
  EXPECT_TRUE(q.put(listener_key(4, 80), file.get()).ok());
  // The bound in sluiced: every listener the escrow holds, and a state's
  // put and the remove of the one before it.
  EXPECT_EQ(kMaxFdStoreOps, wire::kMaxEscrowListeners + 2);
}

TEST(FdStoreQueue, AnotherErrorDropsTheOperationAndGoesOn) {
  NotifyPair p = notify_pair();
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int closed_fd = -1;
  {
    UniqueFd gone(open("/dev/null", O_RDONLY | O_CLOEXEC));
    closed_fd = gone.get();
  }
  FdStoreQueue q;
  // EBADF: a descriptor that is not open is dropped, the next one goes.
  ASSERT_TRUE(q.put(listener_key(1, 80), closed_fd).ok());
  ASSERT_TRUE(q.put(listener_key(2, 81), file.get()).ok());
  FdStoreFlush done = q.flush(p.sluiced.get(), 0);
  EXPECT_EQ(done.dropped, 1u);
  EXPECT_EQ(done.sent, 1u);
  EXPECT_FALSE(done.blocked);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(texts(read_all(p.manager.get())),
            (std::vector<std::string>{fd_store_message(listener_key(2, 81).name())}));
  // The manager is gone (ECONNREFUSED): everything is dropped, nothing waits,
  // and the loop stops polling for room.
  p.manager.reset();
  ASSERT_TRUE(q.put(listener_key(3, 82), file.get()).ok());
  ASSERT_TRUE(q.remove(listener_key(2, 81)).ok());
  done = q.flush(p.sluiced.get(), 0);
  EXPECT_EQ(done.dropped, 2u);
  EXPECT_EQ(done.sent, 0u);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.wants_writable(0));
  // A dropped put's name can be put again.
  EXPECT_TRUE(q.put(listener_key(3, 82), file.get()).ok());
}

TEST(FdStoreQueue, KeysNameAndDescribeWhatTheyStore) {
  const FdStoreKey l = listener_key(0x1234abcdULL, 8080);
  EXPECT_EQ(l.name(), stored_listener_name(0x1234abcdULL, l.spec));
  EXPECT_EQ(l.describe(), "the listener of TCP port 8080");
  EXPECT_EQ(FdStoreKey::worker_state(7).name(), "state-7");
  EXPECT_EQ(FdStoreKey::worker_state(7).describe(), "the worker's state 7");
}

}  // namespace
}  // namespace sluice
