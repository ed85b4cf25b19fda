// sluiced's own log under pressure (security review item 15): its lines are
// rate-limited (a burst, then so many a second, with a note of how many were
// held back), and its stderr never blocks it. Before, sluiced wrote every
// line with a blocking write(2) to its stderr: once a pipe's reader stopped,
// the first line that did not fit stopped sluiced itself, so it answered no
// more PeerQuery and sluicectl was never served again (the worker's own log
// already had a non-blocking description of its own).
//
// sluiced runs with -d here, so that it writes a line for every control
// connection (its PeerQuery answer): a flood of connections is a flood of
// log lines.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>

#include "base/unique_fd.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;
constexpr uint16_t kListenPort = 18080;
/// Limit: connections of a flood, and how long it may take at most.
constexpr int kFloodConnections = 2000;
constexpr auto kFloodMaxTime = std::chrono::seconds(10);

/// Connects to the control socket at `path` and closes at once, until
/// `count` connects succeeded or `deadline` passed. Returns how many
/// succeeded. A full backlog (a server that stopped accepting) refuses a
/// connect at once instead of holding the test; the next try comes a
/// millisecond later.
int connect_close(const std::string& path, int count,
                  std::chrono::steady_clock::time_point deadline) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  int done = 0;
  while (done < count && std::chrono::steady_clock::now() < deadline) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      ++done;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return done;
}

/// Reads what the non-blocking `fd` holds into `*got` until `done(*got)`, or
/// `timeout_ms` pass (10 ms apart).
bool read_until(int fd, std::string* got, const std::function<bool(const std::string&)>& done,
                int timeout_ms) {
  for (int round = 0; round <= timeout_ms / 10; ++round) {
    char buf[65536];
    for (int i = 0; i < 1000; ++i) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      got->append(buf, static_cast<size_t>(n));
    }
    if (done(*got)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

/// Expects a 64 KiB stream to pass intact through the forwarded port.
void expect_forwarding(int target) {
  std::thread server([&] {
    UniqueFd conn = accept_one(target, 10000);
    if (conn.valid()) send_stream(conn.get(), 11, 65536);
  });
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort, 10000);
  size_t n = 0;
  Sha256Digest got = client.valid() ? receive_all(client.get(), &n) : Sha256Digest{};
  server.join();
  EXPECT_EQ(n, 65536u);
  EXPECT_EQ(got, stream_digest(11, 65536));
}

TEST(BrokerLog, StderrThatNobodyReadsBlocksNeitherSluicedNorForwarding) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);  // blocking, as a shell or a supervisor makes it
  UniqueFd reader(p[0]), writer(p[1]);
  ASSERT_GT(::fcntl(writer.get(), F_SETPIPE_SZ, 4096), 0);  // one page: full at once
  ASSERT_EQ(::fcntl(reader.get(), F_SETFL, O_NONBLOCK), 0);
  Daemon d;
  d.use_stderr(writer.get());
  d.start(
      {"-d", "-t", "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort)});
  std::string got;
  ASSERT_TRUE(read_until(
      reader.get(), &got,
      [](const std::string& s) {
        return s.find("sluice-worker: info: ready:") != std::string::npos;
      },
      10000))
      << got;
  ASSERT_TRUE(d.wait_ready()) << got;

  // Fill the pipe through a description of our own, and stop reading.
  const std::string self = "/proc/self/fd/" + std::to_string(writer.get());
  UniqueFd filler(::open(self.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(filler.valid());
  const std::string junk = std::string(511, 'x') + "\n";
  for (int i = 0; i < 64 && ::write(filler.get(), junk.data(), junk.size()) > 0; ++i) {
  }
  // A write of 512 bytes is all or nothing: the last few bytes of room go
  // one at a time.
  for (int i = 0; i < 512 && ::write(filler.get(), "\n", 1) == 1; ++i) {
  }
  ASSERT_EQ(::write(filler.get(), "\n", 1), -1);
  ASSERT_EQ(errno, EAGAIN);

  // A flood of control connections, each a line of sluiced's, while the
  // administrator lists the rules and a transfer runs.
  int flooded = 0;
  const auto deadline = std::chrono::steady_clock::now() + kFloodMaxTime;
  std::thread flood([&] { flooded = connect_close(d.socket_path(), kFloodConnections, deadline); });
  RunResult during = d.ctl({"--timeout", "10"});
  expect_forwarding(target.get());
  flood.join();
  EXPECT_GT(flooded, 100);
  EXPECT_EQ(during.status, 0) << during.err;
  RunResult after = d.ctl({"--timeout", "10"});
  EXPECT_EQ(after.status, 0) << after.err;
  EXPECT_NE(after.out.find(":18080"), std::string::npos) << after.out;
  expect_forwarding(target.get());
  EXPECT_EQ(::waitpid(d.pid(), nullptr, WNOHANG), 0) << "sluiced exited";

  // Read again: the next line sluiced may write (a second for the rate to
  // give one back) says how many went missing, and it stops at once on
  // SIGTERM, as a sluiced stuck in write(2) could not.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  got.clear();
  read_until(
      reader.get(), &got, [](const std::string&) { return false; }, 100);
  got.clear();
  d.signal(SIGTERM);
  ASSERT_TRUE(read_until(
      reader.get(), &got,
      [](const std::string& s) {
        return s.find("sluiced: info: SIGTERM received") != std::string::npos;
      },
      10000))
      << got.substr(0, 3000);
  EXPECT_NE(got.find("sluiced: warning: "), std::string::npos) << got.substr(0, 3000);
  EXPECT_NE(got.find(" log lines dropped: stderr was not being read\n"), std::string::npos)
      << got.substr(0, 3000);
  EXPECT_EQ(d.wait_exit(10000), 0);
}

TEST(BrokerLog, AJournalSocketThatFallsBehindNeverStopsTheWorkersConnectionLog) {
  // stderr a stream socket, as systemd's journal gives it, that nobody
  // reads: the worker's lines (a line per connection with
  // --log-connections) go out with MSG_DONTWAIT, so a full socket drops
  // them; a blocking write would stop the worker at the first line that
  // did not fit, and every connection after it.
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd journal(sv[0]), stream(sv[1]);
  const int small = 4096;
  ASSERT_EQ(::setsockopt(stream.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  ASSERT_EQ(::fcntl(journal.get(), F_SETFL, O_NONBLOCK), 0);
  Daemon d;
  d.use_stderr(stream.get());
  d.start({"--log-connections", "-t",
           "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort)});
  std::string got;
  ASSERT_TRUE(read_until(
      journal.get(), &got,
      [](const std::string& s) {
        return s.find("sluice-worker: info: ready:") != std::string::npos;
      },
      10000))
      << got;
  ASSERT_TRUE(d.wait_ready()) << got;
  // Fill the socket through a description of our own, and stop reading.
  const std::string junk = std::string(511, 'x') + "\n";
  for (int i = 0;
       i < 4096 && ::send(stream.get(), junk.data(), junk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0;
       ++i) {
  }
  for (int i = 0; i < 4096 && ::send(stream.get(), "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1;
       ++i) {
  }
  ASSERT_EQ(::send(stream.get(), "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL), -1);
  // Each transfer ends in a line that does not fit; the next is still served.
  for (int i = 0; i < 20; ++i) expect_forwarding(target.get());
  EXPECT_EQ(::waitpid(d.pid(), nullptr, WNOHANG), 0) << "sluiced exited";
  // Read again: the worker's next line says how many it dropped.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  got.clear();
  read_until(
      journal.get(), &got, [](const std::string&) { return false; }, 100);
  got.clear();
  expect_forwarding(target.get());
  ASSERT_TRUE(read_until(
      journal.get(), &got,
      [](const std::string& s) {
        return s.find("connection from 127.0.0.1:") != std::string::npos;
      },
      10000))
      << got.substr(0, 3000);
  EXPECT_NE(got.find("sluice-worker: warning: "), std::string::npos) << got.substr(0, 3000);
  EXPECT_NE(got.find(" log lines dropped: stderr was not being read\n"), std::string::npos)
      << got.substr(0, 3000);
}

TEST(BrokerLog, LinesBeyondTheRateAreHeldBackAndCounted) {
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start(
      {"-d", "-t", "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const int flooded =
      connect_close(d.socket_path(), 500, std::chrono::steady_clock::now() + kFloodMaxTime);
  EXPECT_GT(flooded, 100);
  // A second later the rate has given lines back: the next one says how
  // many were held back.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  RunResult list = d.ctl();
  EXPECT_EQ(list.status, 0) << list.err;
  ASSERT_TRUE(wait_for_log(d, " log lines suppressed (at most 50 at once, then 10 a second)\n"))
      << d.log().substr(0, 4000);
  const std::string log = d.log();
  size_t answered = 0;
  for (size_t at = log.find("sluiced: debug: answer_peer_query: "); at != std::string::npos;
       at = log.find("sluiced: debug: answer_peer_query: ", at + 1)) {
    ++answered;
  }
  EXPECT_LT(answered, static_cast<size_t>(flooded)) << "every connection was logged";
  EXPECT_GT(answered, 0u);
  expect_forwarding(target.get());
}

}  // namespace
}  // namespace sluice::test
