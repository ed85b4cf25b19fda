// The control socket under hostile and concurrent clients, against the real
// daemon: a slow client is dropped and stalls nothing, malformed frames get an
// error or a drop, two clients race on the generation, and a port that is
// removed drains its accept queue instead of resetting it.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
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
  // Many clients connect to a port while a commit removes it. Each client the
  // kernel accepted (connect() succeeded) must be served by the target, never
  // reset; later ones are refused, which is what removing a port means.
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  std::atomic<bool> stop{false};
  std::thread server([&] {
    while (!stop) {
      UniqueFd c = accept_one(target.get(), 50);
      if (c.valid()) send(c.get(), "hello", 5, MSG_NOSIGNAL);
    }
  });
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000", "-t", "127.0.0.1/18081:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::atomic<int> served{0}, reset{0}, refused{0}, connected{0};
  std::atomic<bool> go{false};
  std::thread clients([&] {
    while (!go) std::this_thread::yield();
    std::vector<UniqueFd> conns;
    for (int i = 0; i < 400; ++i) {
      UniqueFd c = connect_tcp("127.0.0.1", 18081, 5000);
      if (!c.valid()) {
        ++refused;
        continue;
      }
      conns.push_back(std::move(c));
      ++connected;
    }
    for (auto& c : conns) {
      char buf[8];
      ssize_t n = recv(c.get(), buf, sizeof(buf), 0);
      (n == 5 ? served : reset)++;
    }
  });
  auto conn = ControlConnection::connect(d.socket_path(), 10000);
  ASSERT_TRUE(conn.ok());
  ASSERT_TRUE(conn->handshake().ok());
  auto state = conn->call(control::Request{0, control::GetState{}});
  ASSERT_TRUE(state.ok());
  control::CommitRequest req;
  req.tables = std::get<control::State>(state->body).tables;
  req.tables.of(Pif::kHost).rules.pop_back();  // remove 18081
  req.expected_generation = std::get<control::State>(state->body).generation;
  go = true;
  // Commit while the clients are mid-stream: some connected before, more
  // arrive while the port is released (bounded wait, also on a loaded machine).
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (connected.load() < 20 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  auto r = conn->call(control::Request{0, req});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(std::get<control::CommitResult>(r->body).applied);
  clients.join();
  stop = true;
  server.join();
  EXPECT_GT(served.load(), 0);
  EXPECT_EQ(reset.load(), 0) << "served " << served << ", refused " << refused;
}

}  // namespace
}  // namespace sluice::test
