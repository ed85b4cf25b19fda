// Tests of how a run links to the lines before it (worker/audit_tail.cc):
// read_audit_tail() on real files (memfds, /dev/null) finds the last line
// reading backwards in chunks, at chunk boundaries, at the length limit and
// past it, in a file without newlines, and refuses a descriptor of another
// file; link_audit_tail() turns what it read into the start record's tail,
// prev and tailError, and the verifier agrees with the link it makes.
//
// Security review item 3: a new run began a new chain from zeros,
// so deleting or rewriting a whole earlier run verified as intact.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "base/unique_fd.h"
#include "client/audit_verify.h"
#include "tests/audit_util.h"
#include "worker/audit_tail.h"

namespace sluice::testing {
namespace {

/// Returns a new memfd (a regular file) holding `contents`.
UniqueFd file_with(const std::string& contents) {
  UniqueFd fd(memfd_create("audit", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = write(fd.get(), contents.data() + done, contents.size() - done);
    EXPECT_GT(n, 0);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  return fd;
}

/// Reads the tail of `contents` as the worker does, the file being its own sink.
AuditTailBytes tail_of(const std::string& contents) {
  UniqueFd fd = file_with(contents);
  return read_audit_tail(fd.get(), fd.get());
}

/// Returns the whole contents of `fd` from offset 0.
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

TEST(AuditTail, AStderrSinkHasNoTail) {
  UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(null.valid());
  AuditTailBytes bytes = read_audit_tail(null.get(), 2);
  EXPECT_EQ(bytes.kind, AuditTailBytes::Kind::kNotAFile);
  AuditLink link = link_audit_tail(bytes);
  EXPECT_EQ(link.tail, AuditTail::kNone);
  EXPECT_EQ(link.prev, Sha256Digest{});
  EXPECT_TRUE(link.error.empty());
  EXPECT_FALSE(link.newline_first);
}

TEST(AuditTail, AnEmptyFileStartsTheLog) {
  AuditTailBytes bytes = tail_of("");
  EXPECT_EQ(bytes.kind, AuditTailBytes::Kind::kEmpty);
  AuditLink link = link_audit_tail(bytes);
  EXPECT_EQ(link.tail, AuditTail::kEmpty);
  EXPECT_EQ(link.prev, Sha256Digest{});
}

TEST(AuditTail, TheLastLineOfARunIsLinked) {
  std::vector<std::string> lines = log_run(3);
  AuditTailBytes bytes = tail_of(join(lines));
  ASSERT_EQ(bytes.kind, AuditTailBytes::Kind::kLine);
  EXPECT_EQ(bytes.line + "\n", lines.back());
  EXPECT_FALSE(bytes.unterminated);
  AuditLink link = link_audit_tail(bytes);
  EXPECT_EQ(link.tail, AuditTail::kLinked);
  EXPECT_EQ(to_hex(link.prev), hash_hex(lines.back()));
  EXPECT_TRUE(link.error.empty());
  // A run that holds only its start record is a last line like any other.
  EXPECT_EQ(link_audit_tail(tail_of(join(log_run(0)))).tail, AuditTail::kLinked);
}

TEST(AuditTail, ASecondRunWrittenAfterTheFirstVerifiesAsLinked) {
  UniqueFd fd = file_with(join(log_run(2)));
  AuditLog log(fd.get());
  log.start(sample_start(link_audit_tail(read_audit_tail(fd.get(), fd.get())), 0x60));
  log.write(sample_record(1));
  AuditReport report = verify_audit_bytes(read_all(fd.get()));
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  ASSERT_EQ(report.runs.size(), 2u);
  EXPECT_EQ(report.runs[1].first_line, 4u);
  EXPECT_EQ(report.runs[1].tail, "linked");
  EXPECT_NE(audit_report_text(report).find("linked to line 3, the log's last line when it started"),
            std::string::npos)
      << audit_report_text(report);
}

TEST(AuditTail, LinesAroundChunkBoundariesAreFoundWhole) {
  // Garbage lines of lengths around the chunk size (newline included), after
  // a first line, so that the newline before the last line falls on each
  // side of a chunk boundary.
  for (size_t len :
       {size_t{1}, size_t{2}, kAuditTailChunkBytes - 1, kAuditTailChunkBytes,
        kAuditTailChunkBytes + 1, 2 * kAuditTailChunkBytes, 3 * kAuditTailChunkBytes + 7}) {
    std::string last(len - 1, 'x');
    AuditTailBytes bytes = tail_of("first line\n" + last + "\n");
    ASSERT_EQ(bytes.kind, AuditTailBytes::Kind::kLine) << len;
    EXPECT_EQ(bytes.line, last) << len;
    // The same line alone in the file: found from the file's start.
    bytes = tail_of(last + "\n");
    ASSERT_EQ(bytes.kind, AuditTailBytes::Kind::kLine) << len;
    EXPECT_EQ(bytes.line, last) << len;
  }
}

TEST(AuditTail, TheLongestLineSluiceWritesIsReadAndALongerOneIsNot) {
  const std::string longest(kMaxAuditLineBytes - 1, 'y');  // + "\n": kMaxAuditLineBytes
  AuditTailBytes bytes = tail_of("a\n" + longest + "\n");
  ASSERT_EQ(bytes.kind, AuditTailBytes::Kind::kLine);
  EXPECT_EQ(bytes.line, longest);
  AuditLink link = link_audit_tail(bytes);
  EXPECT_EQ(link.tail, AuditTail::kUnreadable);  // it is no audit line, but it is hashed
  EXPECT_EQ(to_hex(link.prev), hash_hex(longest + "\n"));
  EXPECT_NE(link.error.find("the last line is not an audit line (column 1: expected"),
            std::string::npos)
      << link.error;

  bytes = tail_of("a\n" + longest + "y\n");
  EXPECT_EQ(bytes.kind, AuditTailBytes::Kind::kTooLong);
  EXPECT_FALSE(bytes.unterminated);
  link = link_audit_tail(bytes);
  EXPECT_EQ(link.tail, AuditTail::kUnreadable);
  EXPECT_EQ(link.prev, Sha256Digest{});
  EXPECT_FALSE(link.newline_first);
  EXPECT_EQ(link.error,
            "the last line is longer than 65536 bytes, the longest line sluice writes, so sluice "
            "did not write it");
}

TEST(AuditTail, AHugeFileWithoutNewlinesIsReadOnlyUpToTheLimit) {
  // A sparse gibibyte of zero bytes: reading it all would take seconds and
  // the memory to match; the tail reads kMaxAuditTailBytes.
  UniqueFd fd(memfd_create("audit", MFD_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(ftruncate(fd.get(), off_t{1} << 30), 0);
  AuditTailBytes bytes = read_audit_tail(fd.get(), fd.get());
  EXPECT_EQ(bytes.kind, AuditTailBytes::Kind::kTooLong);
  EXPECT_TRUE(bytes.unterminated);
  AuditLink link = link_audit_tail(bytes);
  EXPECT_EQ(link.tail, AuditTail::kUnreadable);
  EXPECT_TRUE(link.newline_first);
  EXPECT_NE(link.error.find("; it had no final newline, so this run added one"), std::string::npos);
}

TEST(AuditTail, ALineCutShortIsEndedAndLinkedAsTheVerifierWillSeeIt) {
  std::vector<std::string> lines = log_run(1);
  std::string cut = lines[1].substr(0, lines[1].size() - 1);  // only its newline is missing
  AuditTailBytes bytes = tail_of(lines[0] + cut);
  ASSERT_EQ(bytes.kind, AuditTailBytes::Kind::kLine);
  EXPECT_TRUE(bytes.unterminated);
  EXPECT_EQ(bytes.line, cut);
  AuditLink link = link_audit_tail(bytes);
  EXPECT_EQ(link.tail, AuditTail::kUnreadable);
  EXPECT_TRUE(link.newline_first);
  EXPECT_EQ(to_hex(link.prev), hash_hex(lines[1]));
  EXPECT_EQ(link.error,
            "the file did not end with a newline: its last line (" + std::to_string(cut.size()) +
                " bytes) was cut short by a crash or a full disk during a write, or was edited; "
                "this run added the newline");
  // A file that is one cut line, with no newline at all.
  bytes = tail_of("{\"format\":2,\"se");
  ASSERT_EQ(bytes.kind, AuditTailBytes::Kind::kLine);
  EXPECT_TRUE(bytes.unterminated);
  EXPECT_EQ(bytes.line, "{\"format\":2,\"se");
}

TEST(AuditTail, ALastLineThatDoesNotParseIsUnreadableWithTheParsersReason) {
  AuditLink link = link_audit_tail(tail_of("\n"));
  EXPECT_EQ(link.tail, AuditTail::kUnreadable);
  EXPECT_EQ(to_hex(link.prev), hash_hex("\n"));
  EXPECT_EQ(link.error, "the last line is not an audit line (column 1: expected {\"format\":)");
  // A line of format 1, from sluice before runs were linked.
  link = link_audit_tail(
      tail_of("{\"seq\":1,\"time\":\"2026-11-24T17:03:11.123Z\",\"outcome\":\"applied\"}\n"));
  EXPECT_EQ(link.tail, AuditTail::kUnreadable);
  EXPECT_NE(link.error.find("this is a line of audit format 1"), std::string::npos) << link.error;
  // An edited byte in the last line.
  std::vector<std::string> lines = log_run(2);
  lines[2][lines[2].find("\"uid\"")] = 'X';
  link = link_audit_tail(tail_of(join(lines)));
  EXPECT_EQ(link.tail, AuditTail::kUnreadable);
  EXPECT_EQ(to_hex(link.prev), hash_hex(lines[2]));
}

TEST(AuditTail, ADescriptorOfAnotherFileIsRefused) {
  UniqueFd one = file_with(join(log_run(1)));
  UniqueFd other = file_with(join(log_run(1)));
  AuditTailBytes bytes = read_audit_tail(one.get(), other.get());
  ASSERT_EQ(bytes.kind, AuditTailBytes::Kind::kError);
  EXPECT_EQ(bytes.error,
            "the read-only descriptor sluiced gave is not the audit log the worker appends to");
  AuditLink link = link_audit_tail(bytes);
  EXPECT_EQ(link.tail, AuditTail::kUnreadable);
  EXPECT_EQ(link.prev, Sha256Digest{});
  EXPECT_EQ(link.error, "the last line could not be read: " + bytes.error);
  // A closed descriptor is a read error, not a crash.
  bytes = read_audit_tail(-1, one.get());
  ASSERT_EQ(bytes.kind, AuditTailBytes::Kind::kError);
  EXPECT_NE(bytes.error.find("EBADF"), std::string::npos) << bytes.error;
}

}  // namespace
}  // namespace sluice::testing
