// AuditLog::start and AuditLog::write under the worker's real seccomp filter:
// a child sets NO_NEW_PRIVS, loads worker_seccomp_rules(getpid()) and writes
// a start record and commit records to a pipe made before the filter, as the
// worker writes to its audit fd. Any
// syscall outside the allowlist kills the child with SIGSYS.
//
// The trap this guards against: glibc's first time conversion in a process,
// gmtime_r included, initialises the time zone and opens /etc/localtime. The
// death test runs in a freshly executed process (style "threadsafe"), where
// nothing has converted a time yet, so a writer that used gmtime_r would be
// killed there; the fork test below checks the lines themselves.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>

#include "base/unique_fd.h"
#include "client/audit_verify.h"
#include "policy/seccomp.h"
#include "tests/audit_util.h"

namespace sluice::testing {
namespace {

/// Exit codes of the child, other than 0 (all went well).
constexpr int kExitFilterFailed = 97;
constexpr int kExitWrongEntry = 3;
constexpr int kExitNotIntact = 4;

/// Limit: how long the parent waits for the child; writing two lines takes
/// microseconds, so 10 s only guards against a hang.
constexpr int kChildTimeoutMs = 10000;

/// Returns CLOCK_REALTIME as "YYYY-MM-DDTHH:MM:SS.mmmZ" (gmtime_r is fine
/// here, outside any sandbox).
std::string now_iso() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ts.tv_nsec / 1000000));
  return buf;
}

/// In a child: no core file, NO_NEW_PRIVS, then the worker's filter. Exits
/// kExitFilterFailed if a step fails.
void load_worker_filter() {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);  // no core file should the filter kill us
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(kExitFilterFailed);
  if (!install_seccomp(worker_seccomp_rules(static_cast<int>(getpid())))) {
    _exit(kExitFilterFailed);
  }
}

/// Writes a start record and two commit records to `fd` through a new
/// AuditLog; returns true when the history entries are what they should be.
bool write_two_records(int fd) {
  AuditLog log(fd);
  log.start(sample_start(AuditLink{}));
  CommitRecord record = sample_record(1);
  record.comment = "under \"seccomp\"\n\x01\xff";
  control::Failure f;
  f.kind = control::FailureKind::kBindFailed;
  f.err = 98;
  f.message = "port in use";
  record.failures = {f};
  control::HistoryEntry first = to_history_entry(log.write(record));
  control::HistoryEntry second = to_history_entry(log.write(sample_record(2)));
  return first.sequence == 2 && second.sequence == 3 && first.failures == 1 &&
         first.unix_millis > 0 && log.failed_writes() == 0;
}

/// The death-test statement: pipe, filter, three records, then reads them back
/// and verifies the chain, all under the filter. Exits 0 when all went well.
[[noreturn]] void write_and_verify_under_filter() {
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) _exit(kExitFilterFailed);
  std::fflush(nullptr);
  load_worker_filter();
  if (!write_two_records(p[1])) _exit(kExitWrongEntry);
  std::string got;
  char buf[4096];
  for (int i = 0; i < 64; ++i) {  // three lines: a few reads at most
    ssize_t n = read(p[0], buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  AuditReport report = verify_audit_bytes(got);
  _exit(report.ok && report.lines == 3 ? 0 : kExitNotIntact);
}

TEST(AuditSeccomp, WriteInAFreshProcessUnderTheWorkerFilter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(write_and_verify_under_filter(), ::testing::ExitedWithCode(0), "")
      << "SIGSYS: a syscall outside the worker allowlist; 97 = filter not loaded, 3 = wrong "
         "history entry, 4 = the lines do not verify";
}

TEST(AuditSeccomp, WriteWorksUnderTheWorkerFilter) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  const std::string before = now_iso();
  std::fflush(nullptr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    read_end.reset();
    load_worker_filter();
    _exit(write_two_records(write_end.get()) ? 0 : kExitWrongEntry);
  }
  write_end.reset();

  // Read until the child closes its end (it exits), bounded in time.
  std::string got;
  int waited_ms = 0;
  for (;;) {
    char buf[4096];
    ssize_t n = read(read_end.get(), buf, sizeof(buf));
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || waited_ms >= kChildTimeoutMs) break;
    usleep(10000);
    waited_ms += 10;
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
      << "AuditLog::write made a syscall the worker filter forbids";
  ASSERT_TRUE(WIFEXITED(status)) << "child died of signal " << WTERMSIG(status);
  ASSERT_EQ(WEXITSTATUS(status), 0) << "97 = filter not loaded, 3 = wrong history entry";
  const std::string after = now_iso();

  std::vector<std::string> lines = split_lines(got);
  ASSERT_EQ(lines.size(), 3u) << got;  // the start record, then the two commit records
  EXPECT_NE(lines[0].find("\"record\":\"start\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"comment\":\"under \\\"seccomp\\\"\\n\\u0001\\u00ff\""),
            std::string::npos)
      << lines[1];
  for (const std::string& line : lines) {
    std::string time = line.substr(line.find("\"time\":\"") + 8, 24);
    EXPECT_LE(before, time);
    EXPECT_LE(time, after);
  }
  AuditReport report = verify_audit_bytes(got);
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  EXPECT_EQ(report.lines, 3u);
}

}  // namespace
}  // namespace sluice::testing
