// Attempts refused before any commit runs, in the audit log and the history,
// against the real daemon: a commit, a dry run and a confirmation that the
// control policy refuses (a user who may only read), with the ids sluiced
// saw and the policy line; a flood of them, which the audit log records
// only up to its bound and counts beyond it; and a policy reload that fails
// in sluiced (SIGHUP with a broken file). Every wait is bounded.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

/// A temporary directory for the audit log, removed with the object.
struct AuditDir {
  AuditDir() {
    char tmpl[] = "/tmp/sluice-refused-XXXXXX";
    dir = mkdtemp(tmpl);
    log = dir + "/audit.log";
  }
  ~AuditDir() {
    unlink(log.c_str());
    rmdir(dir.c_str());
  }
  std::string dir, log;
};

/// The lines of `text` that contain `needle`.
std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  for (size_t at = 0; at < text.size();) {
    size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(at, nl - at);
    if (line.find(needle) != std::string::npos) out.push_back(line);
    at = nl + 1;
  }
  return out;
}

/// Waits (at most 30 s, 50 ms apart) until `done` holds for the text of
/// `path`; returns the last text read.
std::string wait_for_file(const std::string& path,
                          const std::function<bool(const std::string&)>& done) {
  std::string text;
  for (int i = 0; i < 600; ++i) {
    text = slurp(path);
    if (done(text)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return text;
}

/// The number in `line` right after `prefix`, or 0.
uint64_t number_after(const std::string& line, const std::string& prefix) {
  const size_t at = line.find(prefix);
  return at == std::string::npos ? 0
                                 : std::strtoull(line.c_str() + at + prefix.size(), nullptr, 10);
}

/// Starts `d` with `policy`, an audit log in `audit` and one rule; fails the
/// test when it does not come up.
void start_audited(Daemon& d, const PolicyFileFixture& policy, const AuditDir& audit) {
  d.start({"--policy", policy.path(), "--audit-log", audit.log, "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

TEST(AuditRefusal, ChangesTheControlPolicyRefusesAreRecordedWithThePolicyLine) {
  const std::string uid = std::to_string(::getuid());
  PolicyFileFixture policy("control read uid=" + uid + "\n");
  AuditDir audit;
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_audited(d, policy, audit));
  for (const std::vector<std::string>& args :
       // A comment as long as a client may send: the record's own words must
       // not make the history unreadable.
       {std::vector<std::string>{"-A", "-t", "127.0.0.1/18081:18000", "--comment",
                                 "let me in" + std::string(1015, '.')},
        std::vector<std::string>{"--dry-run", "-t", "127.0.0.1/18081:18000"},
        std::vector<std::string>{"--confirm"}}) {
    RunResult r = d.ctl(args);
    EXPECT_EQ(r.status, 3) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
  }
  const std::string text = wait_for_file(audit.log, [](const std::string& t) {
    return lines_with(t, "refused by the control policy").size() >= 3;
  });
  const std::vector<std::string> refused = lines_with(text, "refused by the control policy");
  ASSERT_EQ(refused.size(), 3u) << text;
  const std::string decided = "and " + policy.path() + " line 1 (control read uid=" + uid +
                              ") grants uid " + uid + " read access only";
  const char* what[] = {"committing", "a dry run", "confirming a commit"};
  for (size_t i = 0; i < refused.size(); ++i) {
    const std::string& line = refused[i];
    EXPECT_NE(line.find("\"record\":\"commit\",\"outcome\":\"rejected\","), std::string::npos)
        << line;
    EXPECT_NE(line.find("\"uid\":" + uid + ",\"gid\":" + std::to_string(::getgid())),
              std::string::npos)
        << line;
    EXPECT_EQ(line.find("\"pid\":0,"), std::string::npos) << line;
    EXPECT_NE(line.find("\"comment\":\"" + std::string(what[i]) + " from control client pid "),
              std::string::npos)
        << line;
    EXPECT_NE(line.find("\"kind\":\"policy-denied\""), std::string::npos) << line;
    EXPECT_NE(line.find("the control policy refused it: permission denied: " +
                        std::string(what[i]) + " needs commit access, " + decided),
              std::string::npos)
        << line;
  }
  EXPECT_NE(refused[0].find("its comment: let me in"), std::string::npos) << refused[0];
  // The history shows them, to whoever may read it.
  RunResult history = d.ctl({"--history=10"});
  ASSERT_EQ(history.status, 0) << history.err;
  EXPECT_EQ(lines_with(history.out, "refused by the control policy").size(), 3u) << history.out;
  EXPECT_NE(history.out.find("rejected"), std::string::npos) << history.out;
  // Nothing changed, and the chain holds.
  EXPECT_FALSE(listening(18081));
  RunResult verify = run_command({bin("sluicectl"), "--verify-audit", audit.log});
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
}

TEST(AuditRefusal, AFloodOfRefusedCommitsIsRecordedUpToItsBoundAndCounted) {
  const std::string uid = std::to_string(::getuid());
  PolicyFileFixture policy("control read uid=" + uid + "\n");
  AuditDir audit;
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_audited(d, policy, audit));
  // worker/refusal_audit.h: 10 records at once, then one per 10 s.
  constexpr size_t kBurst = 10;
  constexpr size_t kAttempts = kBurst + 5;
  const auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kAttempts; ++i) {
    EXPECT_EQ(d.ctl({"-A", "-t", "127.0.0.1/18081:18000"}).status, 3);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // Every attempt is accounted for: recorded one by one, or counted in a
  // later record (the next refused attempt's comment, or a summary written
  // once a record may be, about 10 s later).
  auto accounted = [](const std::string& t) {
    uint64_t n = 0;
    for (const std::string& line : lines_with(t, "\"outcome\":\"rejected\"")) {
      if (line.find("refused by the control policy") != std::string::npos) {
        n += 1 + number_after(line, "(");  // "(N refused attempts before it ..."
      } else {
        n += number_after(line, "\"comment\":\"");  // a summary: "N refused attempts, counted"
      }
    }
    return n;
  };
  const std::string text =
      wait_for_file(audit.log, [&](const std::string& t) { return accounted(t) >= kAttempts; });
  EXPECT_EQ(accounted(text), kAttempts) << text;
  const size_t one_by_one = lines_with(text, "refused by the control policy").size();
  EXPECT_GE(one_by_one, kBurst) << text;
  // At most the burst, plus one per 10 s that the attempts took.
  EXPECT_LE(one_by_one, kBurst + 1 + static_cast<size_t>(seconds / 10)) << text;
  if (one_by_one < kAttempts) {
    EXPECT_FALSE(lines_with(text, "not recorded one by one").empty()) << text;
  }
  RunResult verify = run_command({bin("sluicectl"), "--verify-audit", audit.log});
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
}

TEST(AuditRefusal, AFailedPolicyReloadIsRecorded) {
  PolicyFileFixture policy("bind allow tcp 18080-18081 127.0.0.1\n");
  AuditDir audit;
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_audited(d, policy, audit));
  policy.rewrite("bind allow tcp 18080-18082 127.0.0.1\nbind allow tcp 0 *\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "policy reload failed: ")) << d.log();
  const std::string text = wait_for_file(audit.log, [](const std::string& t) {
    return !lines_with(t, "failed: the policy loaded before stays in force").empty();
  });
  const std::vector<std::string> lines =
      lines_with(text, "failed: the policy loaded before stays in force");
  ASSERT_EQ(lines.size(), 1u) << text << d.log();
  EXPECT_NE(lines[0].find("\"outcome\":\"rejected\",\"pid\":" + std::to_string(d.pid()) + ","),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("\"comment\":\"policy reload from " + policy.path() + " failed"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find(policy.path() + " line 2: bad port \\\"0\\\""), std::string::npos)
      << lines[0];
  // The old policy decides, and the next reload that parses is recorded as before.
  RunResult denied = d.ctl({"-A", "-t", "127.0.0.1/18082:18000"});
  EXPECT_EQ(denied.status, 1) << denied.err;
  RunResult verify = run_command({bin("sluicectl"), "--verify-audit", audit.log});
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
}

}  // namespace
}  // namespace sluice::test
