// A flood of control connections against the real daemon: one process that
// connects to the control socket and closes again, as fast as it can, for
// 10 s, while a forwarded transfer runs and the administrator uses sluicectl.
// Every connection costs the worker a PeerQuery to sluiced; before the worker
// bounded them, sluiced's reply send timed out after 5 s and it stopped all
// forwarding. The test asserts that sluiced stays up, that the transfer
// completes intact and that sluicectl is served during and after the flood;
// it reports the transfer's longest stall without asserting a bound on it
// (that would depend on the machine's speed).
//
// As real root (the rootns run) the flood comes from uid 1000, a user the
// default control policy refuses; in the user-namespace run only one uid is
// mapped, so it comes from the administrator's own uid.
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;
constexpr uint16_t kListenPort = 18080;
/// How long the flood lasts, and at most how many connections it makes.
constexpr int kFloodSeconds = 10;
constexpr uint64_t kFloodMaxConnections = 2'000'000;
/// The transfer: a chunk every few milliseconds for as long as the flood
/// runs, at most kMaxChunks chunks.
constexpr size_t kChunkBytes = 4096;
constexpr int kChunkIntervalMs = 2;
constexpr size_t kMaxChunks = 20000;

/// Monotonic milliseconds (async-signal-safe: the flood child uses it).
int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

/// Forks the flood: a child that connects to `path` and closes, in a loop,
/// for kFloodSeconds (at most kFloodMaxConnections times), as uid `uid` when
/// it is not -1; it writes its count of accepted connects to the returned
/// pipe and exits. The child only makes async-signal-safe calls (the test
/// process has threads). Returns the child's pid and sets `*count_fd`.
pid_t start_flood(const std::string& path, int uid, int* count_fd) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    if (uid >= 0) {
      const gid_t gid = static_cast<gid_t>(uid);
      if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
          setresuid(static_cast<uid_t>(uid), static_cast<uid_t>(uid), static_cast<uid_t>(uid)) !=
              0) {
        _exit(2);
      }
    }
    const int64_t end = now_ms() + kFloodSeconds * 1000;
    uint64_t connected = 0;
    for (uint64_t i = 0; i < kFloodMaxConnections && now_ms() < end; ++i) {
      int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (s < 0) continue;
      // A bounded wait for room in the backlog: a worker that stopped
      // accepting must not hang the flood past its time.
      struct timeval tv = {1, 0};
      setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      if (connect(s, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) == 0) ++connected;
      close(s);
    }
    ssize_t ignored = write(fds[1], &connected, sizeof(connected));
    (void)ignored;
    _exit(0);
  }
  close(fds[1]);
  *count_fd = fds[0];
  return pid;
}

/// What the receiving end of the transfer saw.
struct Received {
  size_t bytes = 0;
  Sha256Digest digest{};
  int64_t longest_gap_ms = 0;  // the longest wait between two reads
};

/// Reads `fd` to EOF (each read bounded by the socket's receive timeout),
/// hashing the bytes and timing the gaps between reads.
Received receive_timed(int fd) {
  Received r;
  Sha256 hash;
  std::vector<uint8_t> buf(65536);
  int64_t last = now_ms();
  for (size_t i = 0; i < kMaxChunks * 4 + 16; ++i) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    const int64_t t = now_ms();
    r.longest_gap_ms = std::max(r.longest_gap_ms, t - last);
    last = t;
    hash.update(buf.data(), static_cast<size_t>(n));
    r.bytes += static_cast<size_t>(n);
  }
  r.digest = hash.finish();
  return r;
}

/// Fills chunk `index` of the transfer: its bytes depend on the index, so a
/// lost or repeated chunk changes the digest.
void fill_chunk(size_t index, std::vector<uint8_t>* chunk) {
  for (size_t j = 0; j < chunk->size(); ++j) {
    (*chunk)[j] = static_cast<uint8_t>((index * 131 + j * 7) & 0xff);
  }
}

TEST(ControlFlood, ConnectCloseFloodStopsNeitherForwardingNorTheAdministrator) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"-t", "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  int flood_uid = -1;
  if (real_root_run()) {
    // Let uid 1000 reach the socket: the control policy, not the file mode,
    // must be what refuses it.
    ASSERT_EQ(::chmod(d.socket_path().c_str(), 0666), 0);
    std::string dir = d.socket_path().substr(0, d.socket_path().rfind('/'));
    ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
    flood_uid = 1000;
  }

  // The transfer: client -> sluice -> target, paced, for as long as the flood.
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort, 20000);
  ASSERT_TRUE(client.valid()) << d.log();
  UniqueFd server = accept_one(target.get(), 10000);
  ASSERT_TRUE(server.valid()) << d.log();
  struct timeval tv = {20, 0};
  setsockopt(server.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::atomic<bool> flood_over{false};
  Sha256 sent_hash;
  size_t sent_bytes = 0;
  bool send_failed = false;
  std::thread sender([&] {
    std::vector<uint8_t> chunk(kChunkBytes);
    for (size_t i = 0; i < kMaxChunks && !flood_over.load(); ++i) {
      fill_chunk(i, &chunk);
      if (send(client.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(chunk.size())) {
        send_failed = true;
        break;
      }
      sent_hash.update(chunk.data(), chunk.size());
      sent_bytes += chunk.size();
      std::this_thread::sleep_for(std::chrono::milliseconds(kChunkIntervalMs));
    }
    shutdown(client.get(), SHUT_WR);
  });
  Received received;
  std::thread receiver([&] { received = receive_timed(server.get()); });

  int count_fd = -1;
  const int64_t flood_start = now_ms();
  pid_t flood = start_flood(d.socket_path(), flood_uid, &count_fd);
  ASSERT_GT(flood, 0);

  // The administrator, during the flood: three runs, about 3 s apart.
  std::vector<int> during;
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    RunResult r = d.ctl();
    during.push_back(r.status);
    EXPECT_EQ(r.status, 0) << "sluicectl during the flood: " << r.err;
  }

  int status = 0;
  for (int i = 0; i < 3000 && waitpid(flood, &status, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  uint64_t connects = 0;
  EXPECT_EQ(read(count_fd, &connects, sizeof(connects)), static_cast<ssize_t>(sizeof(connects)));
  close(count_fd);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "flood child status " << status;
  const int64_t flood_ms = now_ms() - flood_start;
  flood_over = true;
  sender.join();
  receiver.join();

  // sluiced stayed up, and served the administrator after the flood too.
  EXPECT_EQ(kill(d.pid(), 0), 0);
  EXPECT_EQ(waitpid(d.pid(), nullptr, WNOHANG), 0) << "sluiced exited\n" << d.log();
  RunResult after = d.ctl();
  EXPECT_EQ(after.status, 0) << after.err << d.log();
  EXPECT_NE(after.out.find(":18080"), std::string::npos) << after.out;

  // The transfer completed, intact.
  EXPECT_FALSE(send_failed) << d.log();
  EXPECT_EQ(received.bytes, sent_bytes) << d.log();
  EXPECT_EQ(received.digest, sent_hash.finish());
  EXPECT_GT(connects, 0u) << "the flood made no connection";

  std::printf(
      "[ flood    ] %llu connects in %lld ms from %s; transfer of %zu bytes, longest "
      "stall %lld ms (paced every %d ms)\n",
      static_cast<unsigned long long>(connects), static_cast<long long>(flood_ms),
      flood_uid < 0 ? "the administrator's uid" : "uid 1000 (refused)", received.bytes,
      static_cast<long long>(received.longest_gap_ms), kChunkIntervalMs);
  ::testing::Test::RecordProperty("flood_connects", std::to_string(connects));
  ::testing::Test::RecordProperty("longest_stall_ms", std::to_string(received.longest_gap_ms));
}

}  // namespace
}  // namespace sluice::test
