// SCM_RIGHTS over a real SOCK_SEQPACKET socketpair: fds travel with their
// payload, truncation is refused (or, when asked, a batch the fd limit cut
// short is kept with the fds that arrived), fds are never leaked, and a dead
// peer does not raise SIGPIPE.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/scm_rights.h"

namespace sluice {
namespace {

/// A connected SOCK_SEQPACKET pair.
struct Pair {
  UniqueFd a, b;
  Pair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

/// Counts open descriptors of this process.
int count_open_fds() {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd) n += fcntl(fd, F_GETFD) != -1;
  return n;
}

TEST(ScmRights, PayloadAndFdsArriveTogether) {
  Pair p;
  UniqueFd f1(open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd f2(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int fds[2] = {f1.get(), f2.get()};
  ASSERT_TRUE(send_message(p.a.get(), "hi", 2, fds).ok());
  char buf[16];
  auto got = receive_message(p.b.get(), buf, sizeof(buf), 2);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->len, 2u);
  ASSERT_EQ(got->fds.size(), 2u);
  for (auto& fd : got->fds) {
    EXPECT_NE(fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, 0) << "received fds must be CLOEXEC";
  }
}

TEST(ScmRights, MoreFdsThanAllowedIsRefusedAndClosed) {
  Pair p;
  int before = count_open_fds();
  {
    UniqueFd f(open("/dev/null", O_RDONLY | O_CLOEXEC));
    int fds[3] = {f.get(), f.get(), f.get()};
    ASSERT_TRUE(send_message(p.a.get(), "x", 1, fds).ok());
  }
  char buf[4];
  auto got = receive_message(p.b.get(), buf, sizeof(buf), 0);
  EXPECT_FALSE(got.ok());
  EXPECT_EQ(count_open_fds(), before);
}

TEST(ScmRights, TruncatedPayloadIsRefused) {
  Pair p;
  ASSERT_TRUE(send_message(p.a.get(), "0123456789", 10, {}).ok());
  char buf[4];
  auto got = receive_message(p.b.get(), buf, sizeof(buf), 0);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("MSG_TRUNC"), std::string::npos);
}

TEST(ScmRights, FdFloodUnderLowLimitIsRefusedWithoutLeaks) {
  Pair p;
  std::vector<UniqueFd> owned;
  std::vector<int> fds;
  for (int i = 0; i < 200; ++i) {
    owned.emplace_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
    fds.push_back(owned.back().get());
  }
  ASSERT_TRUE(send_message(p.a.get(), "x", 1, fds).ok());
  owned.clear();
  int before = count_open_fds();
  struct rlimit old;
  getrlimit(RLIMIT_NOFILE, &old);
  // Leave room for only a few more fds: the kernel truncates the control data.
  struct rlimit low = {static_cast<rlim_t>(before + 8), old.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  char buf[4];
  auto got = receive_message(p.b.get(), buf, sizeof(buf), kScmMaxFds);
  setrlimit(RLIMIT_NOFILE, &old);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("MSG_CTRUNC"), std::string::npos);
  EXPECT_EQ(count_open_fds(), before);
}

/// Returns what /proc/self/fd/`fd` points at ("" when it cannot be read).
std::string fd_target(int fd) {
  char buf[256];
  ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

TEST(ScmRights, ACutBatchIsKeptWhenAskedWithTheFirstFdsInOrder) {
  // What the worker does with a batch of listeners past its RLIMIT_NOFILE:
  // the message and the fds that arrived, marked cut, instead of a failure.
  Pair p;
  std::vector<UniqueFd> owned;
  std::vector<int> fds;
  for (int i = 0; i < 200; ++i) {
    owned.emplace_back(memfd_create(("m" + std::to_string(i)).c_str(), MFD_CLOEXEC));
    ASSERT_TRUE(owned.back().valid());
    fds.push_back(owned.back().get());
  }
  ASSERT_TRUE(send_message(p.a.get(), "x", 1, fds).ok());
  owned.clear();
  const int before = count_open_fds();
  struct rlimit old;
  getrlimit(RLIMIT_NOFILE, &old);
  struct rlimit low = {static_cast<rlim_t>(before + 8), old.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  char buf[4];
  auto got = receive_message(p.b.get(), buf, sizeof(buf), kScmMaxFds, 0, RefusedFds::kClose,
                             CutFds::kKeep);
  setrlimit(RLIMIT_NOFILE, &old);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->len, 1u);
  EXPECT_TRUE(got->fds_cut);
  ASSERT_FALSE(got->fds.empty());
  EXPECT_LT(got->fds.size(), 200u);
  for (size_t i = 0; i < got->fds.size(); ++i) {
    EXPECT_EQ(fd_target(got->fds[i].get()).rfind("/memfd:m" + std::to_string(i) + " ", 0), 0u)
        << "fd " << i << " is " << fd_target(got->fds[i].get());
  }
  got->fds.clear();
  EXPECT_EQ(count_open_fds(), before);
}

TEST(ScmRights, PeerGoneGivesAnErrorNotSigpipe) {
  Pair p;
  p.b.reset();
  auto sent = send_message(p.a.get(), "x", 1, {});
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().err, EPIPE);
}

TEST(ScmRights, EofReadsAsZeroLength) {
  Pair p;
  p.a.reset();
  char buf[4];
  auto got = receive_message(p.b.get(), buf, sizeof(buf), 0);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->len, 0u);
}

}  // namespace
}  // namespace sluice
