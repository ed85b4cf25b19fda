// Unit tests of base/: UniqueFd, Result, strings, SHA-256.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "base/log.h"
#include "base/result.h"
#include "base/strings.h"
#include "base/unique_fd.h"

namespace sluice {
namespace {

/// True when `fd` refers to an open descriptor.
bool is_open(int fd) {
  return fcntl(fd, F_GETFD) != -1;
}

TEST(UniqueFd, ClosesOnDestruction) {
  int raw;
  {
    UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    raw = fd.get();
    ASSERT_TRUE(is_open(raw));
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, MoveTransfersOwnership) {
  UniqueFd a(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int raw = a.get();
  UniqueFd b(std::move(a));
  EXPECT_EQ(a.get(), -1);  // NOLINT: moved-from state is specified
  EXPECT_EQ(b.get(), raw);
  UniqueFd c;
  c = std::move(b);
  EXPECT_EQ(c.get(), raw);
  EXPECT_TRUE(is_open(raw));
}

TEST(UniqueFd, MoveAssignClosesThePreviousFd) {
  UniqueFd a(open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd b(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int old = a.get();
  a = std::move(b);
  EXPECT_FALSE(is_open(old));
}

TEST(UniqueFd, ReleaseGivesUpOwnership) {
  UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int raw = fd.release();
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(is_open(raw));
  close(raw);
}

TEST(UniqueFd, ResetClosesAndNegativeMeansEmpty) {
  UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int raw = fd.get();
  fd.reset();
  EXPECT_FALSE(is_open(raw));
  EXPECT_FALSE(fd.valid());
  UniqueFd neg(-5);
  EXPECT_EQ(neg.get(), -1);
}

TEST(UniqueFd, HasNoImplicitConversions) {
  static_assert(!std::is_convertible_v<UniqueFd, int>);
  static_assert(!std::is_convertible_v<UniqueFd, bool>);
  static_assert(!std::is_convertible_v<int, UniqueFd>);
  static_assert(!std::is_copy_constructible_v<UniqueFd>);
  static_assert(std::is_nothrow_move_constructible_v<UniqueFd>);
  static_assert(std::is_nothrow_destructible_v<UniqueFd>);
}

TEST(Result, CarriesValueOrError) {
  Result<int> ok = 7;
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 7);
  Result<int> bad = Err(EINVAL, "no");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().err, EINVAL);
  EXPECT_EQ(bad.error().message, "no");
  Result<void> v = Ok();
  EXPECT_TRUE(v.ok());
  Result<void> e = Err("broken");
  EXPECT_EQ(e.error().message, "broken");
}

TEST(ResultDeathTest, ValueOfAnErrorIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Result<int> bad = Err("no");
  EXPECT_DEATH((void)bad.value(), "CHECK failed in value");
}

TEST(Strings, ErrnoNames) {
  EXPECT_STREQ(errno_name(EADDRINUSE), "EADDRINUSE");
  EXPECT_STREQ(errno_name(EACCES), "EACCES");
  EXPECT_STREQ(errno_name(99999), "E?");
  EXPECT_EQ(errno_text(ENOENT), "ENOENT (No such file or directory)");
}

TEST(Strings, SanitizeEscapesEverythingUnprintable) {
  EXPECT_EQ(sanitize("ok"), "ok");
  EXPECT_EQ(sanitize(std::string("a\0b\n\x7f\\", 6)), "a\\x00b\\x0a\\x7f\\x5c");
  EXPECT_EQ(sanitize("abcdef", 3), "abc...");
}

TEST(Strings, ShellWordQuotesWhatAShellWouldGlobOrSplit) {
  EXPECT_EQ(shell_word("0.0.0.0/8080:10.88.0.5/80"), "0.0.0.0/8080:10.88.0.5/80");
  EXPECT_EQ(shell_word("%eth0/22,auto"), "%eth0/22,auto");
  EXPECT_EQ(shell_word("/run/sluice/control.sock"), "/run/sluice/control.sock");
  EXPECT_EQ(shell_word("*/80"), "'*/80'");
  EXPECT_EQ(shell_word("[::1]/80"), "'[::1]/80'");
  EXPECT_EQ(shell_word("a b"), "'a b'");
  EXPECT_EQ(shell_word("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_word(""), "''");
  EXPECT_EQ(shell_word(std::string("8\0", 2)), std::string("'8\0'", 4));
}

TEST(Strings, ParseUint) {
  unsigned long v = 0;
  EXPECT_TRUE(parse_uint("65535", 65535, &v));
  EXPECT_EQ(v, 65535u);
  EXPECT_FALSE(parse_uint("65536", 65535, &v));
  EXPECT_FALSE(parse_uint("", 10, &v));
  EXPECT_FALSE(parse_uint("+1", 10, &v));
  EXPECT_FALSE(parse_uint("1 ", 10, &v));
  EXPECT_FALSE(parse_uint("7", 5, &v));
  EXPECT_FALSE(parse_uint("99999999999999999999999", ~0UL, &v));
}

}  // namespace
/// Reads everything a non-blocking `fd` holds.
std::string drain(int fd) {
  std::string got;
  char buf[4096];
  for (int i = 0; i < 1000; ++i) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

TEST(Log, LinesAFullNonBlockingSinkRefusesAreCountedAndReported) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd r(p[0]), w(p[1]);
  ASSERT_GT(fcntl(w.get(), F_SETPIPE_SZ, 4096), 0);
  log_init("log-test", w.get(), LogLevel::kInfo);
  // 100-byte lines: 40 fill the pipe's 4 KiB, the other 20 are pushed back.
  const std::string text(80, 'a');
  for (int i = 0; i < 60; ++i) LOG_INFO("%s", text.c_str());
  std::string first = drain(r.get());
  EXPECT_LE(first.size(), 4096u);
  EXPECT_EQ(first.find("dropped"), std::string::npos);
  LOG_INFO("after");
  std::string second = drain(r.get());
  log_init("sluice", 2, LogLevel::kInfo);
  // The notice starts on a line of its own, whether or not a line was cut.
  const size_t dropped = 60 - static_cast<size_t>(std::count(first.begin(), first.end(), '\n'));
  EXPECT_NE(second.find("log-test: warning: " + std::to_string(dropped) +
                        " log lines dropped: stderr was not being read\n"),
            std::string::npos)
      << second;
  EXPECT_NE(second.find("log-test: info: after\n"), std::string::npos) << second;
}

TEST(LogRateLimit, ALimiterOfOneKindSaysHowManyLinesItHeldBack) {
  constexpr uint64_t kSecond = 1000000000ULL;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd r(p[0]), w(p[1]);
  log_init("log-test", w.get(), LogLevel::kInfo);
  LogRateLimit limit(1, 1);
  uint64_t t = 7 * kSecond;
  EXPECT_TRUE(limit.allow_at(t));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(limit.allow_at(t));
  EXPECT_EQ(drain(r.get()), "");
  // The next line let through is preceded by the count.
  EXPECT_TRUE(limit.allow_at(t + kSecond));
  std::string got = drain(r.get());
  EXPECT_EQ(got,
            "log-test: warning: 3 more lines like the next were held back (at most 1 at once, "
            "then 1 a second)\n");
  EXPECT_EQ(limit.suppressed(), 0u);
  // A ticker says it when no line of the kind follows, once a token is free.
  EXPECT_FALSE(limit.allow_at(t + kSecond));
  EXPECT_FALSE(limit.allow_at(t + kSecond));
  EXPECT_EQ(limit.note_held_back(t + kSecond, "control clients"), 0u);  // no token yet
  EXPECT_EQ(limit.note_held_back(t + 2 * kSecond, "control clients"), 2u);
  got = drain(r.get());
  log_init("sluice", 2, LogLevel::kInfo);
  EXPECT_EQ(got,
            "log-test: warning: 2 more lines about control clients were held back (at most 1 at "
            "once, then 1 a second)\n");
  EXPECT_EQ(limit.note_held_back(t + 9 * kSecond, "control clients"), 0u);  // nothing held back
}

TEST(Log, ElapsedTimeNeverWrapsAround) {
  EXPECT_EQ(elapsed_ns(5000, 2000), 3000u);
  EXPECT_EQ(elapsed_ns(2000, 2000), 0u);
  // A time stamped after `now` was read (by an earlier ticker of the tick).
  EXPECT_EQ(elapsed_ns(2000, 2001), 0u);
  EXPECT_EQ(elapsed_ns(0, UINT64_MAX), 0u);
}

TEST(LogRateLimit, ABurstThenTheRateAndACountOfWhatItHeldBack) {
  constexpr uint64_t kSecond = 1000000000ULL;
  LogRateLimit limit(3, 2, false);  // 3 at once, then 2 a second; counts only
  uint64_t t = 5 * kSecond;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limit.allow_at(t)) << i;
  EXPECT_FALSE(limit.allow_at(t));
  EXPECT_FALSE(limit.allow_at(t + kSecond / 4));  // half a token so far
  EXPECT_EQ(limit.suppressed(), 2u);
  EXPECT_TRUE(limit.allow_at(t + kSecond / 2));  // one token back
  EXPECT_FALSE(limit.allow_at(t + kSecond / 2));
  // Allowing a line does not forget what was held back; taking it does.
  EXPECT_EQ(limit.take_suppressed(), 3u);
  EXPECT_EQ(limit.suppressed(), 0u);
  // A long pause refills up to the burst, never beyond.
  t += 100 * kSecond;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limit.allow_at(t)) << i;
  EXPECT_FALSE(limit.allow_at(t));
}

// Security review item 15: sluiced caps how fast it logs. Lines beyond the
// limit are held back and counted, the next line that goes out is preceded
// by a note of how many, and errors always go out.
TEST(Log, RateLimitHoldsLinesBackAndSaysHowMany) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd r(p[0]), w(p[1]);
  log_init("log-test", w.get(), LogLevel::kInfo);
  log_set_rate_limit(5, 0);  // no refill: the count does not depend on time
  for (int i = 0; i < 20; ++i) LOG_INFO("line %d", i);
  LOG_ERROR("the last words");
  LOG_WARN("held back too");
  log_set_rate_limit(0, 0);
  LOG_INFO("unlimited again");
  log_init("sluice", 2, LogLevel::kInfo);
  const std::string got = drain(r.get());
  EXPECT_EQ(got,
            "log-test: info: line 0\n"
            "log-test: info: line 1\n"
            "log-test: info: line 2\n"
            "log-test: info: line 3\n"
            "log-test: info: line 4\n"
            "log-test: warning: 15 log lines suppressed (at most 5 at once, then 0 a second)\n"
            "log-test: error: the last words\n"
            "log-test: info: unlimited again\n");
}

TEST(Log, OnlyDebugLinesNameTheFunction) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd r(p[0]), w(p[1]);
  log_init("log-test", w.get(), LogLevel::kDebug);
  LOG_DEBUG("for a developer");
  LOG_INFO("for an operator");
  LOG_WARN("a warning");
  LOG_ERROR("an error");
  log_init("sluice", 2, LogLevel::kInfo);
  EXPECT_EQ(drain(r.get()),
            "log-test: debug: TestBody: for a developer\n"
            "log-test: info: for an operator\n"
            "log-test: warning: a warning\n"
            "log-test: error: an error\n");
}

}  // namespace sluice
