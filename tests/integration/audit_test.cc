// The audit log end to end: sluiced opens --audit-log append-only (and once
// more read-only for the worker), the sandboxed worker writes a start record
// linked to the file's last line, then one chained line per commit attempt,
// and `sluicectl --verify-audit` accepts the file, names the first line that
// was edited, and finds a deleted or re-chained earlier run and an empty
// file.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/sha256.h"
#include "base/unique_fd.h"
#include "client/control_client.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

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
  // The run's start record, then three attempts: the initial rules, the
  // applied commit, the stale one.
  ASSERT_EQ(std::count(text.begin(), text.end(), '\n'), 4) << text;
  EXPECT_EQ(text.find("{\"format\":2,\"seq\":1,"), 0u) << text;
  EXPECT_NE(text.find("\"record\":\"start\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"tail\":\"empty\""), std::string::npos) << text;
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
    if (line.rfind("{\"format\":", 0) == 0) out += line + "\n";
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
  // seq 1 is the start record, 2 the initial rules, then the commits.
  const std::string last = "\"seq\":" + std::to_string(kCommits + 2) + ",";
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
  EXPECT_EQ(std::count(audit.begin(), audit.end(), '\n'), kCommits + 3);
  EXPECT_NE(audit.find("\"tail\":\"none\""), std::string::npos) << audit.substr(0, 400);
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

/// Splits `text` after each "\n".
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  for (size_t at = 0; at < text.size();) {
    size_t nl = text.find('\n', at);
    size_t end = nl == std::string::npos ? text.size() : nl + 1;
    out.push_back(text.substr(at, end - at));
    at = end;
  }
  return out;
}

/// Writes `text` to `path`, replacing what is there.
void overwrite(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
}

/// Runs sluiced once on `log`: the initial rules, then one added rule with
/// `comment`; then SIGTERM. Returns false (with the daemon's log in `why`)
/// when any step fails.
bool one_run(const std::string& log, uint16_t port, const std::string& comment, std::string* why) {
  Daemon d;
  d.start({"--audit-log", log, "-t", "127.0.0.1/18080:18000"});
  if (!d.wait_ready()) {
    *why = "not ready: " + d.log();
    return false;
  }
  RunResult r =
      d.ctl({"-A", "-t", "127.0.0.1/" + std::to_string(port) + ":18000", "--comment", comment});
  if (r.status != 0) {
    *why = "commit: " + r.err;
    return false;
  }
  d.signal(SIGTERM);
  if (d.wait_exit() != 0) {
    *why = "exit: " + d.log();
    return false;
  }
  return true;
}

/// Runs sluicectl --verify-audit on `path` with `extra` options.
RunResult verify(const std::string& path, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {bin("sluicectl"), "--verify-audit", path};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_command(argv);
}

TEST(Audit, RunsLinkAndADeletedOrRechainedEarlierRunIsFound) {
  // Security review item 3: each worker start began a new chain
  // from zeros, so deleting a whole earlier run, or editing and re-chaining
  // it, verified as intact, and so did an empty file.
  char tmpl[] = "/tmp/sluice-audit-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string log = dir + "/audit.log";
  std::string why;
  ASSERT_TRUE(one_run(log, 18081, "first run", &why)) << why;
  ASSERT_TRUE(one_run(log, 18082, "second run", &why)) << why;
  const std::string text = slurp(log);
  const std::vector<std::string> lines = lines_of(text);
  // Each run: its start record, the initial rules, the added rule.
  ASSERT_EQ(lines.size(), 6u) << text;
  EXPECT_NE(lines[0].find("\"tail\":\"empty\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[3].find("\"tail\":\"linked\""), std::string::npos) << lines[3];
  EXPECT_NE(lines[3].find("\"prev\":\"" + to_hex(sha256(lines[2].data(), lines[2].size()))),
            std::string::npos)
      << lines[3];

  RunResult ok = verify(log);
  EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("intact: 6 lines in 2 runs"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("the log starts here (the file was empty)"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("linked to line 3, the log's last line when it started"), std::string::npos)
      << ok.out;

  // The whole first run deleted.
  std::string second_run = lines[3] + lines[4] + lines[5];
  overwrite(log, second_run);
  RunResult deleted = verify(log);
  EXPECT_EQ(deleted.status, 1) << deleted.out << deleted.err;
  EXPECT_NE(deleted.out.find("line 1: run "), std::string::npos) << deleted.out;
  EXPECT_NE(deleted.out.find("links to a line that is not in this file"), std::string::npos)
      << deleted.out;

  // The first run edited, and its chain recomputed so that it verifies alone.
  std::vector<std::string> first(lines.begin(), lines.begin() + 3);
  size_t at = first[2].find("first run");
  ASSERT_NE(at, std::string::npos) << first[2];
  first[2].replace(at, 9, "tidy runs");
  const std::string marker = ",\"prev\":\"";
  for (size_t i = 1; i < first.size(); ++i) {
    size_t p = first[i].rfind(marker);
    ASSERT_NE(p, std::string::npos);
    first[i].replace(p + marker.size(), 64,
                     to_hex(sha256(first[i - 1].data(), first[i - 1].size())));
  }
  overwrite(log, first[0] + first[1] + first[2]);
  RunResult alone = verify(log);
  EXPECT_EQ(alone.status, 0) << "the re-chained run must verify alone: " << alone.out;
  overwrite(log, first[0] + first[1] + first[2] + second_run);
  RunResult rechained = verify(log);
  EXPECT_EQ(rechained.status, 1) << rechained.out << rechained.err;
  EXPECT_NE(rechained.out.find("line 4: run "), std::string::npos) << rechained.out;
  EXPECT_NE(rechained.out.find("does not link to line 3"), std::string::npos) << rechained.out;

  // An empty file: reported, unless --allow-empty.
  overwrite(log, "");
  RunResult empty = verify(log);
  EXPECT_EQ(empty.status, 1) << empty.out << empty.err;
  EXPECT_NE(empty.out.find("the file is empty"), std::string::npos) << empty.out;
  RunResult allowed = verify(log, {"--allow-empty"});
  EXPECT_EQ(allowed.status, 0) << allowed.out << allowed.err;

  // sluiced starts on the emptied file as on a new one: the log starts again.
  ASSERT_TRUE(one_run(log, 18083, "third run", &why)) << why;
  RunResult fresh = verify(log);
  EXPECT_EQ(fresh.status, 0) << fresh.out << fresh.err;
  EXPECT_NE(fresh.out.find("the log starts here (the file was empty)"), std::string::npos)
      << fresh.out;
  unlink(log.c_str());
  rmdir(dir.c_str());
}

TEST(Audit, ARunAfterALineCutShortEndsItAndSaysWhy) {
  char tmpl[] = "/tmp/sluice-audit-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string log = dir + "/audit.log";
  std::string why;
  ASSERT_TRUE(one_run(log, 18081, "first run", &why)) << why;
  std::string text = slurp(log);
  // A crash in the middle of the last write: 30 bytes of the last line lost.
  overwrite(log, text.substr(0, text.size() - 30));
  ASSERT_TRUE(one_run(log, 18082, "second run", &why)) << why;
  std::vector<std::string> lines = lines_of(slurp(log));
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_NE(lines[3].find("\"tail\":\"unreadable\",\"tailError\":\"the file did not end with "
                          "a newline"),
            std::string::npos)
      << lines[3];
  RunResult r = verify(log);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("line 3: not an audit record"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("line 4: run "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("could not read the log's last line when it started (the file did not end "
                       "with a newline"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("does not link"), std::string::npos) << r.out;
  unlink(log.c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace sluice::test
