// The control socket under hostile and concurrent clients, against the real
// daemon: a slow client is dropped and stalls nothing, malformed frames get an
// error or a drop, two clients race on the generation, and a port that is
// removed drains its accept queue instead of resetting it.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "client/control_client.h"
#include "schema/codec.h"
#include "schema/frame.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

/// Limit: how long the queued clients may wait for their greetings, all
/// together. Generous: on loopback they arrive within milliseconds.
constexpr auto kGreetingWait = std::chrono::seconds(30);

/// How a client whose connect() succeeded fared.
enum class Outcome {
  kServed,  // the target's greeting arrived
  kReset,   // ECONNRESET (or another error) before it
  kClosed,  // EOF before it
  kSilent,  // nothing by the deadline
};

/// Waits until `deadline` for the target's greeting ("hello") on `fd`.
Outcome await_greeting(int fd, std::chrono::steady_clock::time_point deadline) {
  char buf[8];
  size_t got = 0;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    struct pollfd pfd = {fd, POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return Outcome::kSilent;
    ssize_t n = recv(fd, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return Outcome::kReset;
    if (n == 0) return Outcome::kClosed;
    got += static_cast<size_t>(n);
    if (got >= 5) return std::memcmp(buf, "hello", 5) == 0 ? Outcome::kServed : Outcome::kClosed;
  }
}

/// A target that greets every connection on a listening socket with "hello"
/// and closes it, on its own thread, until it is destroyed.
class Greeter {
 public:
  /// Starts serving `listen_fd` (not owned).
  explicit Greeter(int listen_fd)
      : thread_([this, listen_fd] {
          while (!stop_) {
            UniqueFd c = accept_one(listen_fd, 50);
            if (c.valid()) send(c.get(), "hello", 5, MSG_NOSIGNAL);
          }
        }) {}
  /// Stops serving and joins the thread (within 50 ms).
  ~Greeter() {
    stop_ = true;
    thread_.join();
  }
  Greeter(const Greeter&) = delete;
  Greeter& operator=(const Greeter&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// The length of the accept queue of the TCP listener on 127.0.0.1:`port`
/// in this network namespace (/proc/net/tcp shows it as a listener's
/// rx_queue), or -1 when there is none.
int accept_queue_length(uint16_t port) {
  FILE* f = std::fopen("/proc/net/tcp", "r");
  if (f == nullptr) return -1;
  char line[512];
  int found = -1;
  char want[32];
  std::snprintf(want, sizeof(want), "0100007F:%04X", port);
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    char local[64], remote[64];
    unsigned state = 0, tx = 0, rx = 0;
    if (std::sscanf(line, " %*d: %63s %63s %x %x:%x", local, remote, &state, &tx, &rx) == 5 &&
        state == 0x0A && std::strcmp(local, want) == 0) {
      found = static_cast<int>(rx);
    }
  }
  std::fclose(f);
  return found;
}

/// The state letter of process `pid` (/proc/PID/stat: R, S, T, ...), or 0.
char process_state(pid_t pid) {
  const std::string state = proc_stat_field(pid, 3);
  return state.empty() ? 0 : state[0];
}

/// Polls `done` every millisecond for at most 10 s; true when it came true.
bool wait_until(const std::function<bool()>& done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// Continues a process stopped with SIGSTOP when it goes out of scope, so a
/// failed assertion never leaves the worker stopped.
class ContinueOnExit {
 public:
  /// Will continue `pid`.
  explicit ContinueOnExit(pid_t pid) : pid_(pid) {}
  /// Sends SIGCONT.
  ~ContinueOnExit() { kill(pid_, SIGCONT); }
  ContinueOnExit(const ContinueOnExit&) = delete;
  ContinueOnExit& operator=(const ContinueOnExit&) = delete;

 private:
  pid_t pid_;
};

TEST(Control, SlowClientIsDroppedAndStallsNothing) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  std::thread echo = echo_server(target.get(), 1);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd echo_conn = connect_tcp("127.0.0.1", 18080);
  ASSERT_TRUE(ping(echo_conn.get()));

  // Half a frame: a header announcing 100 words, then 8 bytes, then silence.
  UniqueFd slow = raw_control(d);
  uint32_t header[2] = {0, 100};
  ASSERT_EQ(send(slow.get(), header, sizeof(header), MSG_NOSIGNAL), 8);
  ASSERT_EQ(send(slow.get(), "partial.", 8, MSG_NOSIGNAL), 8);

  // Forwarding and other control clients go on while it hangs.
  auto start = std::chrono::steady_clock::now();
  int pings = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(1)) {
    ASSERT_TRUE(ping(echo_conn.get()));
    ++pings;
  }
  EXPECT_GT(pings, 100);
  EXPECT_EQ(d.ctl().status, 0);
  // Then it is dropped with a timeout error (the request timeout is 5 s).
  std::string got = read_to_eof(slow.get());
  EXPECT_EQ(last_error_code(got), static_cast<int>(control::ErrorCode::kTimeout)) << d.log();
  EXPECT_NE(d.log().find("timed out"), std::string::npos) << d.log();
  EXPECT_TRUE(ping(echo_conn.get()));
  shutdown(echo_conn.get(), SHUT_RDWR);
  echo.join();
}

TEST(Control, AClientThatReadsNoReplyIsDroppedAtTheTimeout) {
  // Requests sent ahead and no reply read: its replies fill the socket, and
  // an error frame queued behind them could never be read either. It is cut
  // off at the reply timeout (5 s), not given a second one for the error.
  // 600 rules: each stats reply is tens of KiB, so a few fill the socket.
  std::vector<std::string> args;
  for (int i = 0; i < 600; ++i) {
    if (i % 300 == 0) args.insert(args.end(), {"-t", "127.0.0.1/"});
    args.back() += (i % 300 == 0 ? "" : ",") + std::to_string(20000 + 2 * i) + ":" +
                   std::to_string(30000 + 2 * i);
  }
  Daemon d;
  d.start(args);
  ASSERT_TRUE(d.wait_ready(20000)) << d.log();
  UniqueFd c = raw_session(d);
  ASSERT_TRUE(c.valid()) << d.log();
  const int small = 4096;
  setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  const std::string req = control::encode_request(control::Request{2, control::StatsRequest{}});
  for (int i = 0; i < 64; ++i) {
    if (send(c.get(), req.data(), req.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) break;
  }
  const char* const kDropped = "dropped: it did not read its replies in time";
  // At most 2 x 10 s: the timeout is 5 s, and the tick a quarter second.
  EXPECT_TRUE(wait_until([&] { return d.log().find(kDropped) != std::string::npos; }) ||
              wait_until([&] { return d.log().find(kDropped) != std::string::npos; }))
      << d.log();
  // Meanwhile, and after, other clients are served.
  EXPECT_EQ(d.ctl().status, 0);
}

TEST(Control, MalformedFramesGetAnErrorOrADrop) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  std::thread echo = echo_server(target.get(), 1);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd echo_conn = connect_tcp("127.0.0.1", 18080);

  // A request before the hello: out of order.
  {
    UniqueFd c = raw_control(d);
    std::string frame = control::encode_request(control::Request{1, control::GetState{}});
    ASSERT_EQ(send(c.get(), frame.data(), frame.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(frame.size()));
    EXPECT_EQ(last_error_code(read_to_eof(c.get())),
              static_cast<int>(control::ErrorCode::kOutOfOrder));
  }
  // A valid frame with invalid content: a hello from another protocol.
  {
    UniqueFd c = raw_control(d);
    control::ClientHello hello{99, "other"};
    std::string frame = control::encode_request(control::Request{1, hello});
    ASSERT_GT(send(c.get(), frame.data(), frame.size(), MSG_NOSIGNAL), 0);
    EXPECT_EQ(last_error_code(read_to_eof(c.get())),
              static_cast<int>(control::ErrorCode::kUnsupportedVersion));
  }
  // Garbage that parses as a frame header but not as a message.
  {
    UniqueFd c = raw_control(d);
    uint32_t header[2] = {0, 2};
    const char body[16] = {'\x7f', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    ASSERT_EQ(send(c.get(), header, 8, MSG_NOSIGNAL), 8);
    ASSERT_EQ(send(c.get(), body, 16, MSG_NOSIGNAL), 16);
    EXPECT_EQ(last_error_code(read_to_eof(c.get())),
              static_cast<int>(control::ErrorCode::kMalformed));
  }
  // A huge segment count.
  {
    UniqueFd c = raw_control(d);
    uint32_t header[2] = {0x7fffffff, 1};
    ASSERT_EQ(send(c.get(), header, 8, MSG_NOSIGNAL), 8);
    EXPECT_EQ(last_error_code(read_to_eof(c.get())),
              static_cast<int>(control::ErrorCode::kMalformed));
  }
  // Truncation: half a frame, then the client goes away.
  {
    UniqueFd c = raw_control(d);
    uint32_t header[2] = {0, 50};
    ASSERT_EQ(send(c.get(), header, 8, MSG_NOSIGNAL), 8);
  }
  // The daemon serves on: control and data.
  EXPECT_EQ(d.ctl().status, 0) << d.log();
  EXPECT_TRUE(ping(echo_conn.get()));
  shutdown(echo_conn.get(), SHUT_RDWR);
  echo.join();
}

TEST(Control, SecondClientOnTheSameGenerationIsStale) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto a = ControlConnection::connect(d.socket_path(), 10000);
  auto b = ControlConnection::connect(d.socket_path(), 10000);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->handshake().ok());
  ASSERT_TRUE(b->handshake().ok());
  auto sa = a->call(control::Request{0, control::GetState{}});
  auto sb = b->call(control::Request{0, control::GetState{}});
  ASSERT_TRUE(sa.ok() && sb.ok());
  uint64_t gen = std::get<control::State>(sa->body).generation;
  ASSERT_EQ(gen, std::get<control::State>(sb->body).generation);
  control::CommitRequest req;
  req.tables = std::get<control::State>(sa->body).tables;
  req.tables.of(Pif::kHost).rules[0].to = 18001;
  req.expected_generation = gen;
  auto ra = a->call(control::Request{0, req});
  ASSERT_TRUE(ra.ok());
  EXPECT_TRUE(std::get<control::CommitResult>(ra->body).applied);
  req.tables.of(Pif::kHost).rules[0].to = 18002;
  auto rb = b->call(control::Request{0, req});
  ASSERT_TRUE(rb.ok());
  const auto& result = std::get<control::CommitResult>(rb->body);
  EXPECT_FALSE(result.applied);
  ASSERT_EQ(result.failures.size(), 1u);
  EXPECT_EQ(result.failures[0].kind, control::FailureKind::kStale);
}

TEST(Control, RemovedPortDrainsItsQueueInsteadOfResetting) {
  // Clients wait in a port's accept queue when a commit removes the port.
  // Each one the kernel accepted (connect() succeeded) must be served by the
  // target, never reset; clients after the commit are refused, which is what
  // removing a port means.
  //
  // Nothing here depends on how fast the machine is. The worker is stopped
  // (SIGSTOP) while the clients connect and the commit is sent, so all of
  // them are in the queue when the commit runs: the accepts of that wake-up
  // (at most 64) and the drain must take them all. Every handshake is
  // complete (the queue holds all of them) before the commit is sent, so no
  // client is half-way through one when the listener stops taking new ones.
  // The target's queue holds every connection, so none is dropped however
  // far its thread falls behind the worker's burst; and the greetings are
  // awaited against one deadline, not a timeout per read. That new clients
  // find no way into the queue between the drain and the close is
  // TcpListenerClose.* (forwarder_test), which can stop at that moment.
  constexpr int kClients = 100;  // more than one wake-up accepts, less than any backlog
  UniqueFd target = listen_tcp("127.0.0.1", 18000, kClients);
  Greeter greeter(target.get());
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000", "-t", "127.0.0.1/18081:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd session = raw_session(d);
  ASSERT_TRUE(session.valid());
  std::string frame;
  {
    auto conn = connect_control(d);
    ASSERT_TRUE(conn);
    control::State state = get_state(*conn);
    control::CommitRequest req;
    req.tables = state.tables;
    req.tables.of(Pif::kHost).rules.pop_back();  // remove 18081
    req.expected_generation = state.generation;
    frame = control::encode_request(control::Request{2, req});
  }
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);

  std::vector<UniqueFd> clients;
  {
    ASSERT_EQ(kill(worker, SIGSTOP), 0);
    ContinueOnExit resume(worker);
    ASSERT_TRUE(wait_until([&] { return process_state(worker) == 'T'; }));
    for (int i = 0; i < kClients; ++i) {
      clients.push_back(connect_tcp("127.0.0.1", 18081, 5000));
      ASSERT_TRUE(clients.back().valid()) << "client " << i << ": " << std::strerror(errno);
    }
    ASSERT_TRUE(wait_until([] { return accept_queue_length(18081) == kClients; }))
        << "queued: " << accept_queue_length(18081);
    ASSERT_EQ(send(session.get(), frame.data(), frame.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(frame.size()));
  }  // SIGCONT
  std::vector<control::Response> replies = read_responses(session.get(), 1);
  ASSERT_EQ(replies.size(), 1u) << d.log();
  const auto* result = std::get_if<control::CommitResult>(&replies[0].body);
  ASSERT_NE(result, nullptr) << "response kind " << replies[0].body.index();
  EXPECT_TRUE(result->applied) << d.log();

  const auto deadline = std::chrono::steady_clock::now() + kGreetingWait;
  int served = 0, reset = 0, closed = 0, silent = 0;
  for (const UniqueFd& c : clients) {
    switch (await_greeting(c.get(), deadline)) {
      case Outcome::kServed:
        ++served;
        break;
      case Outcome::kReset:
        ++reset;
        break;
      case Outcome::kClosed:
        ++closed;
        break;
      case Outcome::kSilent:
        ++silent;
        break;
    }
  }
  EXPECT_EQ(served, kClients) << "reset " << reset << ", closed without a greeting " << closed
                              << ", silent " << silent << "\n"
                              << d.log();
  // The port is closed by the time the reply is read.
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(connect_tcp("127.0.0.1", 18081, 5000).valid());
    EXPECT_EQ(errno, ECONNREFUSED);
  }
}

}  // namespace
}  // namespace sluice::test
