// Tests of the audit writer (worker/audit.cc): the exact commit line for a
// fixed record and the exact start record of each tail, the UTC time, total
// escaping of client-supplied text, the chain from the start record across
// lines written to a memfd and a pipe, a start record that ends a cut line, a
// failing sink, and the cut of lines that would exceed kMaxAuditLineBytes.
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <random>

#include "base/unique_fd.h"
#include "client/audit_verify.h"
#include "tests/audit_util.h"
#include "worker/audit_tail.h"
#include "worker/event_loop.h"

namespace sluice::testing {
namespace {

/// Returns the value of the "time" field of `line`.
std::string time_of(const std::string& line) {
  size_t at = line.find("\"time\":\"");
  if (at == std::string::npos) return "";
  return line.substr(at + 8, 24);
}

/// Formats `record` as the first commit line of a run (seq 2, after the
/// start record) at kSampleMillis.
std::string first_line(const CommitRecord& record) {
  return chain_lines({{2, record}})[1];
}

/// Verifies a run of a start record and `record`'s line.
AuditReport verify_run_of(const CommitRecord& record) {
  return verify_audit_bytes(join(chain_lines({{2, record}})));
}

/// Returns the whole contents of `fd` read from offset 0.
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (off_t off = 0;;) {
    ssize_t n = pread(fd, buf, sizeof(buf), off);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

TEST(AuditFormat, ExactLineForAFixedRecord) {
  CommitRecord r = sample_record(7);
  control::Failure f;
  f.kind = control::FailureKind::kBindFailed;
  f.pif = Pif::kHost;
  f.rule = 2;
  f.port = 80;
  f.err = 98;
  f.message = "port 80 is in use";
  r.failures = {f};
  Sha256Digest prev = sha256("x", 1);
  std::string line = AuditLog(-1).format_line(r, 5, kSampleMillis, prev);
  std::string expected =
      "{\"format\":2,\"seq\":5,\"time\":\"2026-11-24T17:03:11.123Z\",\"record\":\"commit\","
      "\"outcome\":\"applied\",\"pid\":4242,"
      "\"uid\":1000,\"gid\":100,\"comment\":\"open web\",\"generation\":{\"before\":7,\"after\":8},"
      "\"digest\":{\"before\":\"" +
      to_hex(sha256("a", 1)) + "\",\"after\":\"" + to_hex(sha256("b", 1)) +
      "\"},\"added\":[\"HOST TCP [*]:80 => 80\"],\"removed\":[\"HOST TCP [*]:22 => 22\"],"
      "\"counts\":{\"kept\":3,\"opened\":1,\"closed\":1,\"rebound\":0},\"failures\":[{\"kind\":"
      "\"bind-failed\",\"pif\":\"HOST\",\"rule\":2,\"port\":80,\"errno\":98,\"errnoName\":"
      "\"EADDRINUSE\",\"message\":\"port 80 is in use\"}],\"durationMicros\":1234,"
      "\"prev\":\"" +
      to_hex(prev) + "\"}\n";
  EXPECT_EQ(line, expected);
}

TEST(AuditFormat, ExactStartRecordOfEachTail) {
  const std::string head =
      "{\"format\":2,\"seq\":1,\"time\":\"2026-11-24T17:03:11.123Z\",\"record\":\"start\","
      "\"run\":\"1112131415161718191a1b1c1d1e1f20\",\"pid\":77,\"uid\":1000,\"gid\":100,";
  const std::string zeros(64, '0');
  AuditLog log(-1);
  EXPECT_EQ(log.format_start(sample_start(empty_link()), kSampleMillis),
            head + "\"tail\":\"empty\",\"tailError\":\"\",\"prev\":\"" + zeros + "\"}\n");
  EXPECT_EQ(log.format_start(sample_start(AuditLink{}), kSampleMillis),
            head + "\"tail\":\"none\",\"tailError\":\"\",\"prev\":\"" + zeros + "\"}\n");
  EXPECT_EQ(
      log.format_start(sample_start(link_to("x\n")), kSampleMillis),
      head + "\"tail\":\"linked\",\"tailError\":\"\",\"prev\":\"" + hash_hex("x\n") + "\"}\n");
  AuditLink unreadable;
  unreadable.tail = AuditTail::kUnreadable;
  unreadable.error = "the last line is not an audit line (column 1: \"x\")";
  unreadable.prev = sha256("x\n", 2);
  EXPECT_EQ(log.format_start(sample_start(unreadable), kSampleMillis),
            head +
                "\"tail\":\"unreadable\",\"tailError\":\"the last line is not an audit line "
                "(column 1: \\\"x\\\")\",\"prev\":\"" +
                hash_hex("x\n") + "\"}\n");
}

TEST(AuditFormat, OutcomesNegativePidAndNoErrnoName) {
  CommitRecord r = sample_record();
  r.outcome = control::Outcome::kDryRun;
  r.peer.pid = -1;
  control::Failure f;
  f.kind = control::FailureKind::kStale;
  f.rule = -1;
  f.message = "generation 3 is not 4";
  r.failures = {f};
  std::string line = first_line(r);
  EXPECT_NE(line.find("\"outcome\":\"dry-run\",\"pid\":-1,"), std::string::npos);
  EXPECT_NE(line.find("{\"kind\":\"stale-generation\",\"pif\":\"HOST\",\"rule\":-1,\"port\":0,"
                      "\"errno\":0,\"errnoName\":\"\",\"message\":\"generation 3 is not 4\"}"),
            std::string::npos)
      << line;
  r.outcome = control::Outcome::kStale;
  EXPECT_NE(first_line(r).find("\"outcome\":\"stale\""), std::string::npos);
  r.outcome = control::Outcome::kRejected;
  EXPECT_NE(first_line(r).find("\"outcome\":\"rejected\""), std::string::npos);
}

TEST(AuditTime, KnownDates) {
  AuditLog log(-1);
  auto at = [&](int64_t ms) {
    return time_of(log.format_line(sample_record(), 1, ms, Sha256Digest{}));
  };
  EXPECT_EQ(at(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(at(kSampleMillis), "2026-11-24T17:03:11.123Z");
  EXPECT_EQ(at(951782400000), "2000-02-29T00:00:00.000Z");
  EXPECT_EQ(at(951868800000 - 1), "2000-02-29T23:59:59.999Z");
  EXPECT_EQ(at(951868800000), "2000-03-01T00:00:00.000Z");
  EXPECT_EQ(at(4107542400000 - 1), "2100-02-28T23:59:59.999Z");  // 2100 is not a leap year
  EXPECT_EQ(at(253402300799999), "9999-12-31T23:59:59.999Z");
  // Out of range: clamped so that the shape stays fixed.
  EXPECT_EQ(at(-5), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(at(INT64_MAX), "9999-12-31T23:59:59.999Z");
}

TEST(AuditTime, AgreesWithGmtime) {
  AuditLog log(-1);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> dist(0, 253402300799999);
  for (int i = 0; i < 20000; ++i) {
    int64_t ms = dist(rng);
    time_t secs = static_cast<time_t>(ms / 1000);
    struct tm tm;
    ASSERT_NE(gmtime_r(&secs, &tm), nullptr);
    char want[128];
    std::snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    ASSERT_EQ(time_of(log.format_line(sample_record(), 1, ms, Sha256Digest{})), want) << ms;
  }
}

TEST(AuditEscape, QuotesBackslashControlsDelAndHighBytes) {
  CommitRecord r = sample_record();
  r.comment = std::string("a\"b\\c\nd\te\r\b\f\x01\x1f\x7f") + "\xc3\xa9" + std::string(1, '\0');
  std::string line = first_line(r);
  EXPECT_NE(line.find("\"comment\":\"a\\\"b\\\\c\\nd\\te\\r\\b\\f\\u0001\\u001f\\u007f\\u00c3"
                      "\\u00a9\\u0000\","),
            std::string::npos)
      << line;
}

TEST(AuditEscape, CommentCannotInjectAKey) {
  CommitRecord r = sample_record();
  r.outcome = control::Outcome::kRejected;
  r.comment = "x\",\"outcome\":\"applied";
  std::string line = first_line(r);
  EXPECT_NE(line.find("\"comment\":\"x\\\",\\\"outcome\\\":\\\"applied\","), std::string::npos);
  // Exactly one real "outcome" key, and it says rejected.
  size_t first = line.find("\"outcome\":");
  EXPECT_EQ(line.substr(first, 20), "\"outcome\":\"rejected\"");
  EXPECT_EQ(line.find(",\"outcome\":", first + 1), std::string::npos);
  EXPECT_TRUE(verify_run_of(r).ok);
}

TEST(AuditEscape, EveryByteKeepsTheLineOneAsciiLine) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  CommitRecord r = sample_record();
  r.comment = all;
  r.added = {all, "HOST TCP [*]:1 => 1\n{\"seq\":1}"};
  control::Failure f;
  f.message = all;
  r.failures = {f};
  std::string line = first_line(r);
  ASSERT_EQ(line.back(), '\n');
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(line[i]);
    ASSERT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << i << " is " << static_cast<int>(c);
  }
  AuditReport report = verify_run_of(r);
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  EXPECT_EQ(report.lines, 2u);
}

TEST(AuditEscape, OverlongCommentIsCut) {
  CommitRecord r = sample_record();
  r.comment = std::string(control::kMaxCommentBytes + 10, 'c');
  std::string line = first_line(r);
  EXPECT_NE(line.find(std::string(control::kMaxCommentBytes, 'c') + "...[10 bytes cut]\""),
            std::string::npos);
}

/// Starts a run through `log`, writes three records, and checks the lines in
/// `contents`.
void expect_three_chained(AuditLog& log, const std::function<std::string()>& contents) {
  log.start(sample_start(empty_link()));
  EXPECT_EQ(log.next_sequence(), 2u);
  std::vector<control::HistoryEntry> entries;
  for (uint64_t g = 1; g <= 3; ++g)
    entries.push_back(to_history_entry(log.write(sample_record(g))));
  EXPECT_EQ(log.next_sequence(), 5u);
  EXPECT_EQ(log.failed_writes(), 0u);
  std::vector<std::string> lines = split_lines(contents());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].find("{\"format\":2,\"seq\":1,"), 0u) << lines[0];
  EXPECT_NE(lines[0].find("\"record\":\"start\",\"run\":\"1112131415161718191a1b1c1d1e1f20\","),
            std::string::npos)
      << lines[0];
  EXPECT_NE(
      lines[0].find("\"tail\":\"empty\",\"tailError\":\"\",\"prev\":\"" + std::string(64, '0')),
      std::string::npos)
      << lines[0];
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_NE(lines[i].find("\"seq\":" + std::to_string(i + 1) + ","), std::string::npos);
    EXPECT_NE(lines[i].find("\"record\":\"commit\","), std::string::npos);
    EXPECT_NE(lines[i].find(",\"prev\":\"" + hash_hex(lines[i - 1]) + "\"}"), std::string::npos)
        << lines[i];
  }
  for (size_t i = 0; i < 3; ++i) {
    const control::HistoryEntry& e = entries[i];
    EXPECT_EQ(e.sequence, i + 2);
    EXPECT_EQ(e.pid, 4242);
    EXPECT_EQ(e.uid, 1000u);
    EXPECT_EQ(e.gid, 100u);
    EXPECT_EQ(e.comment, "open web");
    EXPECT_EQ(e.outcome, control::Outcome::kApplied);
    EXPECT_EQ(e.generation_before, i + 1);
    EXPECT_EQ(e.generation_after, i + 2);
    EXPECT_EQ(e.added, std::vector<std::string>{"HOST TCP [*]:80 => 80"});
    EXPECT_EQ(e.removed, std::vector<std::string>{"HOST TCP [*]:22 => 22"});
    EXPECT_EQ(e.kept, 3u);
    EXPECT_EQ(e.opened, 1u);
    EXPECT_EQ(e.closed, 1u);
    EXPECT_EQ(e.failures, 0u);
    EXPECT_EQ(e.duration_micros, 1234u);
    EXPECT_GT(e.unix_millis, kSampleMillis - 400LL * 86400 * 1000);  // a sane clock
  }
  AuditReport report = verify_audit_bytes(contents());
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  EXPECT_EQ(report.last_hash, hash_hex(lines[3]));
}

TEST(AuditWrite, ChainAcrossLinesInAMemfd) {
  UniqueFd fd(memfd_create("audit", MFD_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  AuditLog log(fd.get());
  EXPECT_EQ(log.next_sequence(), 1u);
  expect_three_chained(log, [&] { return read_all(fd.get()); });
}

TEST(AuditWrite, StartRecordEndsALineThePreviousRunLeftCutShort) {
  // The previous run died in the middle of a line: the new run ends that
  // line before its start record, and links to it as the verifier sees it.
  UniqueFd fd(memfd_create("audit", MFD_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  std::vector<std::string> before = log_run(1);
  std::string cut = before[1].substr(0, 40);
  std::string old = before[0] + cut;
  ASSERT_EQ(write(fd.get(), old.data(), old.size()), static_cast<ssize_t>(old.size()));
  AuditLink link = link_audit_tail(read_audit_tail(fd.get(), fd.get()));
  ASSERT_TRUE(link.newline_first);
  AuditLog log(fd.get());
  log.start(sample_start(link, 0x40));
  log.write(sample_record(1));
  std::vector<std::string> lines = split_lines(read_all(fd.get()));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[1], cut + "\n");
  EXPECT_EQ(lines[2].find("{\"format\":2,\"seq\":1,"), 0u) << lines[2];
  AuditReport report = verify_audit_bytes(read_all(fd.get()));
  EXPECT_FALSE(report.ok);
  ASSERT_EQ(report.problems.size(), 2u) << audit_report_text(report);
  EXPECT_EQ(report.problems[0].line, 2u);  // the cut line itself
  EXPECT_NE(report.problems[0].message.find("not an audit record"), std::string::npos);
  EXPECT_EQ(report.problems[1].line, 3u);  // the start record says why it could not link
  EXPECT_NE(report.problems[1].message.find("could not read the log's last line when it started "
                                            "(the file did not end with a newline"),
            std::string::npos)
      << report.problems[1].message;
}

TEST(AuditWriteDeathTest, StartRecordComesFirstAndOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(AuditLog(-1).write(sample_record()), "the start record comes before");
  EXPECT_DEATH(
      {
        AuditLog log(-1);
        log.start(sample_start(empty_link()));
        log.start(sample_start(empty_link()));
      },
      "a run has one start record");
}

TEST(AuditWrite, ChainAcrossLinesInAPipe) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd r(p[0]), w(p[1]);
  AuditLog log(w.get());
  std::string got;
  expect_three_chained(log, [&] {
    char buf[4096];
    for (int i = 0; i < 100; ++i) {
      ssize_t n = read(r.get(), buf, sizeof(buf));
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  });
}

TEST(AuditWrite, FailedWriteIsCountedAndShowsAsABrokenChain) {
  UniqueFd file(memfd_create("audit", MFD_CLOEXEC));
  UniqueFd full(open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(file.valid());
  ASSERT_TRUE(full.valid());
  UniqueFd sink(dup(file.get()));  // the fd the log writes to; repointed below
  AuditLog log(sink.get());
  log.start(sample_start(empty_link()));
  log.write(sample_record(1));
  ASSERT_EQ(dup3(full.get(), sink.get(), O_CLOEXEC), sink.get());
  control::HistoryEntry lost = to_history_entry(log.write(sample_record(2)));  // ENOSPC
  EXPECT_EQ(lost.sequence, 3u);
  EXPECT_EQ(log.failed_writes(), 1u);
  ASSERT_EQ(dup3(file.get(), sink.get(), O_CLOEXEC), sink.get());
  log.write(sample_record(3));
  EXPECT_EQ(log.failed_writes(), 1u);

  AuditReport report = verify_audit_bytes(read_all(file.get()));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.lines, 3u);
  ASSERT_FALSE(report.problems.empty());
  EXPECT_EQ(report.problems[0].line, 3u);
  EXPECT_NE(report.problems[0].message.find("prev does not match"), std::string::npos);
}

/// Reads everything a non-blocking pipe holds now.
std::string read_pipe(int fd) {
  std::string out;
  char buf[4096];
  for (int i = 0; i < 100000; ++i) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST(AuditWrite, SinkThatPushesBackGetsEveryLineInOrderOnceItDrains) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd r(p[0]), w(p[1]);
  ASSERT_GT(fcntl(w.get(), F_SETPIPE_SZ, 4096), 0);  // holds about five lines
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  AuditLog log(w.get());
  log.attach(loop->get());
  log.start(sample_start(AuditLink{}));
  for (uint64_t g = 1; g <= 20; ++g) log.write(sample_record(g));
  EXPECT_GT(log.pending_bytes(), 0u);
  EXPECT_EQ(log.failed_writes(), 0u);
  // The reader comes back: each read makes room, and the loop's EPOLLOUT
  // event writes what waits (at most 200 rounds of 10 ms).
  std::string got = read_pipe(r.get());
  for (int round = 0; round < 200 && log.pending_bytes() > 0; ++round) {
    (*loop)->run_once(10);
    got += read_pipe(r.get());
  }
  got += read_pipe(r.get());
  EXPECT_EQ(log.pending_bytes(), 0u);
  EXPECT_EQ(log.failed_writes(), 0u);
  AuditReport report = verify_audit_bytes(got);
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  EXPECT_EQ(report.lines, 21u);
}

TEST(AuditWrite, BacklogPastItsLimitDropsLinesAndTheChainShowsTheGap) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd r(p[0]), w(p[1]);
  ASSERT_GT(fcntl(w.get(), F_SETPIPE_SZ, 4096), 0);
  AuditLog log(w.get());
  log.start(sample_start(AuditLink{}));
  // Nobody reads: the backlog fills (lines are under 1 KiB, so at most
  // 2 * kMaxAuditBacklogBytes / 512 lines are needed). Record g is line g + 1.
  uint64_t g = 1;
  for (; g < 2 * kMaxAuditBacklogBytes / 512 && log.failed_writes() == 0; ++g) {
    log.write(sample_record(g));
  }
  ASSERT_EQ(log.failed_writes(), 1u);
  EXPECT_LE(log.pending_bytes(), kMaxAuditBacklogBytes);
  const uint64_t lost = g - 1;
  log.write(sample_record(g));  // still no room: a second loss
  EXPECT_EQ(log.failed_writes(), 2u);
  std::string got;
  for (int round = 0; round < 100000 && log.pending_bytes() > 0; ++round) {
    got += read_pipe(r.get());
    log.flush();
  }
  got += read_pipe(r.get());
  EXPECT_EQ(log.pending_bytes(), 0u);
  log.write(sample_record(g + 1));
  got += read_pipe(r.get());
  AuditReport report = verify_audit_bytes(got);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.lines, 1 + (lost - 1) + 1);
  ASSERT_FALSE(report.problems.empty());
  EXPECT_EQ(report.problems[0].line, lost + 1);
  EXPECT_NE(audit_report_text(report).find("seq " + std::to_string(lost + 3) + " follows seq " +
                                           std::to_string(lost)),
            std::string::npos)
      << audit_report_text(report);
}

TEST(AuditLimit, HugeListsAreCutWithMarkers) {
  CommitRecord r = sample_record();
  r.added.clear();
  r.removed.clear();
  for (int i = 0; i < 10000; ++i) {
    r.added.push_back("HOST TCP [*]:" + std::to_string(i + 1) + " => " + std::to_string(i + 1));
    r.removed.push_back("SPLICE UDP [::1]:" + std::to_string(i + 1) + " => 9");
  }
  control::Failure f;
  f.kind = control::FailureKind::kBindFailed;
  f.err = 98;
  f.message = std::string(300, 'm');
  r.failures.assign(5000, f);
  std::string line = first_line(r);
  EXPECT_LE(line.size(), kMaxAuditLineBytes);
  EXPECT_GT(line.size(), kMaxAuditLineBytes - 4096);  // the space is used
  EXPECT_NE(line.find(" more rules not recorded: an audit line is limited to 65536 bytes)\"],"
                      "\"removed\":"),
            std::string::npos);
  EXPECT_NE(line.find(" more rules not recorded: an audit line is limited to 65536 bytes)\"],"
                      "\"counts\":"),
            std::string::npos);
  EXPECT_NE(line.find(",{\"kind\":\"capacity\",\"pif\":\"HOST\",\"rule\":-1,\"port\":0,\"errno\":0,"
                      "\"errnoName\":\"\",\"message\":\""),
            std::string::npos);
  EXPECT_NE(line.find(" more failures not recorded"), std::string::npos);
  AuditReport report = verify_run_of(r);
  EXPECT_TRUE(report.ok) << audit_report_text(report);
}

TEST(AuditLimit, CutCountsAddUp) {
  CommitRecord r = sample_record();
  r.added.clear();
  r.removed = {"HOST TCP [*]:22 => 22"};
  for (int i = 0; i < 8000; ++i) r.added.push_back("HOST TCP [*]:" + std::to_string(i) + " => 1");
  std::string line = first_line(r);
  ASSERT_LE(line.size(), kMaxAuditLineBytes);
  // The short list is kept whole; the long one keeps a prefix plus a marker.
  EXPECT_NE(line.find("\"removed\":[\"HOST TCP [*]:22 => 22\"]"), std::string::npos);
  size_t kept = 0;
  for (size_t at = line.find("\"HOST TCP [*]:"); at != std::string::npos;
       at = line.find("\"HOST TCP [*]:", at + 1)) {
    ++kept;
  }
  --kept;  // the removed rule
  size_t marker = line.find("\"(");
  ASSERT_NE(marker, std::string::npos);
  unsigned long left_out = std::stoul(line.substr(marker + 2));
  EXPECT_EQ(kept + left_out, 8000u);
}

TEST(AuditLimit, FailuresAloneAreCutAndListsKept) {
  CommitRecord r = sample_record();
  control::Failure f;
  f.message = std::string(4000, 'x');  // escaped: 4000 bytes each
  r.failures.assign(40, f);
  std::string line = first_line(r);
  ASSERT_LE(line.size(), kMaxAuditLineBytes);
  EXPECT_NE(line.find("\"added\":[\"HOST TCP [*]:80 => 80\"]"), std::string::npos);
  EXPECT_NE(line.find(" more failures not recorded"), std::string::npos);
  EXPECT_TRUE(verify_run_of(r).ok);
}

}  // namespace
}  // namespace sluice::testing
