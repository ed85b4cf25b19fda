// The audit log end to end: sluiced opens --audit-log append-only, the
// sandboxed worker writes one chained line per commit attempt, and
// `sluicectl --verify-audit` accepts the file and names the first line that
// was edited.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "base/unique_fd.h"
#include "client/control_client.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

/// Reads a whole file.
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Audit, ChainVerifiesAndAnEditedByteIsFound) {
  char tmpl[] = "/tmp/sluice-audit-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string log = dir + "/audit.log";
  {
    Daemon d;
    d.start({"--audit-log", log, "-t", "127.0.0.1/18080:18000"});
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto c = ControlConnection::connect(d.socket_path(), 10000);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->handshake().ok());
    auto s = c->call(control::Request{0, control::GetState{}});
    ASSERT_TRUE(s.ok());
    const auto& state = std::get<control::State>(s->body);
    control::CommitRequest req;
    req.tables = state.tables;
    req.tables.of(Pif::kHost).rules[0].to = 18001;
    req.expected_generation = state.generation;
    req.comment = "move the target \"quoted\"\nand a newline";
    auto r = c->call(control::Request{0, req});
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(std::get<control::CommitResult>(r->body).applied);
    req.expected_generation = 0;  // stale on purpose: audited too
    ASSERT_TRUE(c->call(control::Request{0, req}).ok());
    d.signal(SIGTERM);
    ASSERT_EQ(d.wait_exit(), 0) << d.log();
  }
  std::string text = slurp(log);
  // Three attempts: the initial rules, the applied commit, the stale one.
  ASSERT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
  EXPECT_NE(text.find("\"outcome\":\"applied\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"outcome\":\"stale\""), std::string::npos) << text;
  EXPECT_NE(text.find("move the target \\\"quoted\\\"\\nand a newline"), std::string::npos) << text;
  EXPECT_NE(text.find("\"added\":[\"HOST TCP [127.0.0.1]:18080 => 18001\"]"), std::string::npos)
      << text;

  RunResult ok = run_command({bin("sluicectl"), "--verify-audit", log});
  EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("intact"), std::string::npos) << ok.out;

  // Edit one byte of the second line (a digit of its duration).
  size_t second = text.find('\n') + 1;
  size_t pos = text.find("\"durationMicros\":", second) + 17;
  text[pos] = text[pos] == '9' ? '8' : static_cast<char>(text[pos] + 1);
  {
    std::ofstream out(log, std::ios::trunc);
    out << text;
  }
  RunResult bad = run_command({bin("sluicectl"), "--verify-audit", log});
  EXPECT_EQ(bad.status, 1) << bad.out << bad.err;
  EXPECT_NE((bad.out + bad.err).find("line 3"), std::string::npos) << bad.out << bad.err;
  unlink(log.c_str());
  rmdir(dir.c_str());
}

/// Reads what `fd` (non-blocking) holds into `*got`, until `done(*got)` or
/// `timeout_ms` pass (polls 10 ms apart, at most timeout_ms / 10 rounds).
bool read_until(int fd, std::string* got, const std::function<bool(const std::string&)>& done,
                int timeout_ms) {
  for (int round = 0; round <= timeout_ms / 10; ++round) {
    char buf[65536];
    for (int i = 0; i < 1000; ++i) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      got->append(buf, static_cast<size_t>(n));
    }
    if (done(*got)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

/// The audit lines among the log lines of `stream`, in order.
std::string audit_lines(const std::string& stream) {
  std::string out;
  std::istringstream in(stream);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("{\"seq\":", 0) == 0) out += line + "\n";
  }
  return out;
}

TEST(Audit, StderrThatNobodyReadsStallsNeitherForwardingNorCommits) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd reader(p[0]), writer(p[1]);
  ASSERT_GT(fcntl(writer.get(), F_SETPIPE_SZ, 4096), 0);  // one page: full at once
  ASSERT_EQ(fcntl(reader.get(), F_SETFL, O_NONBLOCK), 0);
  Daemon d;
  d.use_stderr(writer.get());
  d.start({"-t", "127.0.0.1/18080:18000"});
  std::string got;
  ASSERT_TRUE(read_until(
      reader.get(), &got,
      [](const std::string& s) { return s.find("ready:") != std::string::npos; }, 10000))
      << got;
  ASSERT_TRUE(d.wait_ready()) << got;

  // Fill the pipe through a description of our own (O_NONBLOCK there leaves
  // sluiced's blocking), and stop reading.
  std::string self = "/proc/self/fd/" + std::to_string(writer.get());
  UniqueFd filler(open(self.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(filler.valid());
  const std::string junk = std::string(511, 'x') + "\n";
  for (int i = 0; i < 64 && write(filler.get(), junk.data(), junk.size()) > 0; ++i) {
  }
  ASSERT_EQ(write(filler.get(), "\n", 1), -1);
  ASSERT_EQ(errno, EAGAIN);

  // Commits (each one audited and logged by the worker) and forwarding go on.
  constexpr int kCommits = 20;
  for (int i = 0; i < kCommits; ++i) {
    RunResult r = d.ctl({"-A", "-t", "127.0.0.1/" + std::to_string(18100 + i) + ":18000"});
    ASSERT_EQ(r.status, 0) << "commit " << i << ": " << r.err;
  }
  std::thread server([&] {
    UniqueFd conn = accept_one(target.get());
    if (conn.valid()) send_stream(conn.get(), 7, 4096);
  });
  UniqueFd client = connect_tcp("127.0.0.1", 18105);
  ASSERT_TRUE(client.valid());
  size_t n = 0;
  EXPECT_EQ(receive_all(client.get(), &n), stream_digest(7, 4096));
  server.join();
  RunResult list = d.ctl({});
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find(":18119"), std::string::npos) << list.out;
  RunResult stats = d.ctl({"--stats"});
  EXPECT_EQ(stats.status, 0) << stats.err;
  EXPECT_NE(stats.out.find("audit: 0 lines lost, "), std::string::npos) << stats.out;

  // Once the pipe is read again, every audit line arrives, whole and in
  // order (the chain verifies), and the worker says how many log lines it
  // had to drop.
  const std::string last = "\"seq\":" + std::to_string(kCommits + 1) + ",";
  ASSERT_TRUE(read_until(
      reader.get(), &got, [&](const std::string& s) { return s.find(last) != std::string::npos; },
      10000))
      << got.substr(0, 2000);
  RunResult one_more = d.ctl({"-A", "-t", "127.0.0.1/18200:18000"});
  EXPECT_EQ(one_more.status, 0) << one_more.err;
  ASSERT_TRUE(read_until(
      reader.get(), &got,
      [](const std::string& s) { return s.find("log lines dropped") != std::string::npos; }, 10000))
      << got.substr(got.size() > 3000 ? got.size() - 3000 : 0);
  const std::string audit = audit_lines(got);
  EXPECT_EQ(std::count(audit.begin(), audit.end(), '\n'), kCommits + 2);
  char tmpl[] = "/tmp/sluice-audit-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = dir + "/audit.log";
  {
    std::ofstream out(path);
    out << audit;
  }
  RunResult verify = run_command({bin("sluicectl"), "--verify-audit", path});
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
  unlink(path.c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace sluice::test
