// The audit log end to end: sluiced opens --audit-log append-only, the
// sandboxed worker writes one chained line per commit attempt, and
// `sluicectl --verify-audit` accepts the file and names the first line that
// was edited.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "client/control_client.h"
#include "tests/integration/daemon.h"

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

}  // namespace
}  // namespace sluice::test
