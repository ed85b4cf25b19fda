// Tests of the audit verifier (client/audit_verify.cc): an intact chain, each
// kind of tampering (edited byte, deleted, swapped and inserted lines, a
// truncated last line, seq and generation gaps), segments, garbage, huge
// lines, random damage, the reports and run_verify_audit's exit codes.
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>

#include "client/audit_verify.h"
#include "tests/audit_util.h"

namespace sluice::testing {
namespace {

/// Returns the line numbers of the report's problems, in order.
std::vector<uint64_t> problem_lines(const AuditReport& report) {
  std::vector<uint64_t> out;
  for (const AuditProblem& p : report.problems) out.push_back(p.line);
  return out;
}

/// True when some problem on `line` contains `text`.
bool has_problem(const AuditReport& report, uint64_t line, const std::string& text) {
  for (const AuditProblem& p : report.problems) {
    if (p.line == line && p.message.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(AuditVerify, IntactChain) {
  std::vector<std::string> lines = segment(5);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  EXPECT_EQ(report.lines, 5u);
  ASSERT_EQ(report.segments.size(), 1u);
  EXPECT_EQ(report.last_hash, hash_hex(lines[4]));
  std::string text = audit_report_text(report);
  EXPECT_EQ(text.substr(0, text.find('\n')),
            "intact: 5 lines in 1 segments; last hash " + hash_hex(lines[4]));
  EXPECT_NE(text.find("segment 1: lines 1-5, seq 1-5, 2026-11-24T17:03:11.123Z to "
                      "2026-11-24T17:03:11.127Z"),
            std::string::npos)
      << text;
}

TEST(AuditVerify, EmptyFileIsIntactWithZeroHash) {
  AuditReport report = verify_audit_bytes("");
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.lines, 0u);
  EXPECT_EQ(report.last_hash, std::string(64, '0'));
}

TEST(AuditVerify, ByteByByteFeedingGivesTheSameReport) {
  std::string text = join(segment(4));
  text.insert(text.find('\n') + 1, "garbage\n");
  AuditVerifier verifier;
  for (char c : text) verifier.feed(std::string_view(&c, 1));
  AuditReport a = verifier.finish();
  AuditReport b = verify_audit_bytes(text);
  EXPECT_EQ(audit_report_json(a), audit_report_json(b));
  EXPECT_FALSE(a.ok);
}

TEST(AuditTamper, EditedByteIsFoundAtTheNextLine) {
  std::vector<std::string> lines = segment(5);
  size_t at = lines[1].find("open web");
  lines[1][at] = 'O';
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{3});
  EXPECT_TRUE(has_problem(report, 3, "prev does not match the SHA-256 of line 2"));
}

TEST(AuditTamper, EditedLastLineChangesOnlyTheLastHash) {
  // Documented limit: nothing follows the last line, so only an anchored copy
  // of the last hash reveals an edit there.
  std::vector<std::string> lines = segment(3);
  std::string before = verify_audit_bytes(join(lines)).last_hash;
  lines[2][lines[2].find("open web")] = 'O';
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(report.ok);
  EXPECT_NE(report.last_hash, before);
}

TEST(AuditTamper, EditedByteThatBreaksTheFormat) {
  std::vector<std::string> lines = segment(3);
  lines[1][lines[1].find("\"uid\"")] = 'X';
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(has_problem(report, 2, "not an audit record (column"));
  EXPECT_TRUE(has_problem(report, 3, "prev does not match"));
}

TEST(AuditTamper, DeletedLine) {
  std::vector<std::string> lines = segment(5);
  lines.erase(lines.begin() + 2);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_TRUE(has_problem(report, 3, "prev does not match the SHA-256 of line 2"));
  EXPECT_TRUE(has_problem(report, 3, "seq 4 follows seq 2 on line 2"));
  EXPECT_TRUE(has_problem(report, 3, "generation.before 4 is not generation.after 3"));
  EXPECT_EQ(report.problems.front().line, 3u);
}

TEST(AuditTamper, SwappedLines) {
  std::vector<std::string> lines = segment(5);
  std::swap(lines[1], lines[2]);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_TRUE(has_problem(report, 2, "prev does not match"));
  EXPECT_TRUE(has_problem(report, 3, "prev does not match"));
  EXPECT_TRUE(has_problem(report, 4, "prev does not match"));
  EXPECT_FALSE(has_problem(report, 5, "prev"));
}

TEST(AuditTamper, InsertedLine) {
  std::vector<std::string> lines = segment(4);
  // A forged, well-formed line that chains to line 2: line 3 still does not.
  AuditLog forger(-1);
  std::string forged = forger.format_line(sample_record(3), 3, kSampleMillis,
                                          sha256(lines[1].data(), lines[1].size()), false);
  lines.insert(lines.begin() + 2, forged);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_FALSE(has_problem(report, 3, "prev"));
  EXPECT_TRUE(has_problem(report, 4, "prev does not match the SHA-256 of line 3"));
  EXPECT_TRUE(has_problem(report, 4, "seq 3 follows seq 3"));
}

TEST(AuditTamper, TruncatedLastLine) {
  std::string text = join(segment(3));
  AuditReport cut = verify_audit_bytes(text.substr(0, text.size() - 10));
  EXPECT_FALSE(cut.ok);
  EXPECT_EQ(cut.lines, 3u);
  EXPECT_TRUE(has_problem(cut, 3, "no final newline"));
  AuditReport no_newline = verify_audit_bytes(text.substr(0, text.size() - 1));
  EXPECT_TRUE(has_problem(no_newline, 3, "no final newline"));
  EXPECT_EQ(no_newline.last_hash, hash_hex(segment(3)[1]));
}

TEST(AuditTamper, SeqGapWithAnIntactChain) {
  std::vector<std::string> lines =
      chain_lines({{1, sample_record(1)}, {2, sample_record(2)}, {4, sample_record(3)}});
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{3});
  EXPECT_TRUE(has_problem(report, 3, "seq 4 follows seq 2 on line 2; the chain holds"));
}

TEST(AuditTamper, GenerationGapBetweenAppliedLines) {
  CommitRecord rejected = sample_record(2);
  rejected.outcome = control::Outcome::kRejected;
  rejected.generation_after = 2;
  std::vector<std::string> lines = chain_lines(
      {{1, sample_record(1)}, {2, rejected}, {3, sample_record(2)}, {4, sample_record(5)}});
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{4});
  EXPECT_TRUE(has_problem(report, 4,
                          "generation.before 5 is not generation.after 3 of the applied commit "
                          "on line 3"));
}

TEST(AuditSegments, RestartIsAcceptedAndReported) {
  std::vector<std::string> lines = segment(3, 1);
  for (const std::string& l : segment(2, 1)) lines.push_back(l);  // generations restart too
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  EXPECT_EQ(report.lines, 5u);
  ASSERT_EQ(report.segments.size(), 2u);
  EXPECT_EQ(report.segments[1].first_line, 4u);
  EXPECT_EQ(report.segments[1].last_line, 5u);
  std::string text = audit_report_text(report);
  EXPECT_NE(text.find("intact: 5 lines in 2 segments"), std::string::npos);
  EXPECT_NE(text.find("segment 2: lines 4-5, seq 1-2, "), std::string::npos);
  EXPECT_NE(text.find("the worker restarted"), std::string::npos);
  EXPECT_NE(audit_report_json(report).find(
                "\"segmentStarts\":[{\"line\":1,\"seq\":1,\"time\":\"2026-11-24T17:03:11.123Z\"},"
                "{\"line\":4,\"seq\":1,"),
            std::string::npos);
}

TEST(AuditSegments, ForgedStartLines) {
  std::vector<std::string> lines = segment(3);
  // "continue" turned into "start": the prev is not zeros and seq is not 1.
  std::string& l = lines[2];
  l.replace(l.find("\"chain\":\"continue\""), 18, "\"chain\":\"start\"");
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(has_problem(report, 3, "\"chain\":\"start\" with a prev other than 64 zeros"));
  EXPECT_TRUE(has_problem(report, 3, "starts at seq 3, not 1"));
}

TEST(AuditSegments, FileStartingMidChain) {
  std::vector<std::string> lines = segment(4);
  lines.erase(lines.begin());
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{1});
  EXPECT_TRUE(has_problem(report, 1, "continues a chain whose earlier lines are not in this file"));
  EXPECT_EQ(report.segments.size(), 1u);
}

TEST(AuditGarbage, GarbageLinesAreReportedOneByOne) {
  std::vector<std::string> lines = segment(2);
  lines.insert(lines.begin() + 1,
               {"hello\n", "\n", "{}\n", std::string("\0\xff\x01{\"seq\":1\n", 12),
                "{\"seq\":01,\"time\":\"x\"}\n", "[1,2,3]\n"});
  AuditReport report = verify_audit_bytes(join(lines));
  for (uint64_t n = 2; n <= 7; ++n) {
    EXPECT_TRUE(has_problem(report, n, "not an audit record")) << n;
  }
  EXPECT_TRUE(has_problem(report, 8, "prev does not match"));
  EXPECT_TRUE(has_problem(report, 5, "column 1: expected {\"seq\":"));
  EXPECT_TRUE(has_problem(report, 6, "column 8: expected a decimal number without leading zeros"));
}

TEST(AuditGarbage, NonCanonicalFormsAreRefused) {
  const std::string base = segment(1)[0];
  struct Edit {
    const char* from;
    const char* to;
  };
  const Edit edits[] = {
      {"open web", "open\\u0020web"},   // printable byte as \u
      {"open web", "open\\u000aweb"},   // \n has a short form
      {"open web", "open\\u00E9web"},   // upper-case hex
      {"open web", "open\\/web"},       // not an escape the writer uses
      {"open web", "open\xc3\xa9web"},  // raw non-ASCII
      {"\"pid\":4242", "\"pid\": 4242"},
      {"\"pid\":4242", "\"pid\":-0"},
      {"\"uid\":1000", "\"uid\":4294967296"},
      {"\"outcome\":\"applied\"", "\"outcome\":\"done\""},
      {"\"seq\":1,", "\"seq\":0,"},
      {"\"chain\":\"start\"", "\"chain\":\"begin\""},
      {"2026-11-24T17", "2026-13-24T17"},
      {"}\n", "} \n"},
  };
  for (const Edit& e : edits) {
    std::string line = base;
    size_t at = line.find(e.from);
    ASSERT_NE(at, std::string::npos) << e.from;
    line.replace(at, std::strlen(e.from), e.to);
    AuditReport report = verify_audit_bytes(line);
    EXPECT_TRUE(has_problem(report, 1, "not an audit record")) << e.to;
  }
}

TEST(AuditGarbage, HugeLineIsInvalidButHashed) {
  std::vector<std::string> lines = segment(3);
  std::string huge(2 * kMaxVerifyLineBytes, 'a');
  huge += '\n';
  lines.insert(lines.begin() + 1, huge);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(has_problem(report, 2, "longer than 1048576 bytes"));
  EXPECT_TRUE(has_problem(report, 3, "prev does not match"));
  EXPECT_EQ(report.lines, 4u);
  // A huge final line without a newline is reported as truncated.
  AuditReport tail = verify_audit_bytes(join(segment(1)) + std::string(3 << 20, 'b'));
  EXPECT_TRUE(has_problem(tail, 2, "no final newline after 3145728 bytes"));
}

TEST(AuditGarbage, ProblemsAreCapped) {
  std::string text(kMaxReportedProblems + 500, '\n');
  AuditReport report = verify_audit_bytes(text);
  EXPECT_EQ(report.problems.size(), kMaxReportedProblems);
  EXPECT_EQ(report.problems_omitted, 500u);
  EXPECT_NE(audit_report_text(report).find("(500 more problems not shown)"), std::string::npos);
}

TEST(AuditGarbage, RandomDamageNeverCrashes) {
  const std::vector<std::string> good_lines = segment(6);
  const std::string good = join(good_lines);
  std::mt19937 rng(7);
  for (int round = 0; round < 3000; ++round) {
    std::string text = good;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < edits; ++i) {
      size_t at = rng() % text.size();
      switch (rng() % 4) {
        case 0:
          text[at] = static_cast<char>(rng());
          break;
        case 1:
          text.insert(at, 1, static_cast<char>(rng()));
          break;
        case 2:
          text.erase(at, 1 + rng() % 40);
          break;
        default:
          text.resize(at);
      }
      if (text.empty()) text = "x";
    }
    AuditReport report = verify_audit_bytes(text);
    EXPECT_LE(report.problems.size(), kMaxReportedProblems);
    if (report.ok) {
      // Undetectable without an anchor, as documented: an edit of the last
      // line, or whole lines cut off the end. Every other line is untouched.
      std::vector<std::string> got = split_lines(text);
      for (size_t i = 0; i + 1 < got.size(); ++i) {
        ASSERT_LT(i, good_lines.size()) << "round " << round;
        EXPECT_EQ(got[i], good_lines[i]) << "round " << round << ", line " << i + 1;
      }
    }
  }
}

TEST(AuditReportFormat, JsonOfABrokenFile) {
  std::vector<std::string> lines = segment(3);
  lines[0][lines[0].find("open web")] = 'O';
  AuditReport report = verify_audit_bytes(join(lines));
  std::string json = audit_report_json(report);
  EXPECT_EQ(json, "{\"ok\":false,\"lines\":3,\"segments\":1,\"lastHash\":\"" + hash_hex(lines[2]) +
                      "\",\"problems\":[{\"line\":2,\"message\":\"line 2: prev does not match the "
                      "SHA-256 of line 1; line 1 was edited, or lines were deleted, inserted or "
                      "reordered between line 1 and line 2\"}],\"problemsOmitted\":0,"
                      "\"segmentStarts\":[{\"line\":1,\"seq\":1,\"time\":"
                      "\"2026-11-24T17:03:11.123Z\"}]}\n");
  std::string text = audit_report_text(report);
  EXPECT_NE(text.find("line 2: prev does not match"), std::string::npos);
  EXPECT_NE(text.find("not intact: 1 problems in 3 lines (1 segments); the first at line 2"),
            std::string::npos);
}

/// A temporary file holding `contents`, removed on destruction.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    int fd = mkstemp(path_);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
    close(fd);
  }
  ~TempFile() { unlink(path_); }
  const char* path() const { return path_; }

 private:
  char path_[32] = "/tmp/sluice-audit-XXXXXX";
};

/// Runs run_verify_audit on `path`; returns the exit code, stores the output.
int run(const std::string& path, bool json, std::string* out, std::string* err) {
  FILE* o = tmpfile();
  FILE* e = tmpfile();
  int rc = run_verify_audit(path, json, o, e);
  for (auto [f, s] : {std::pair{o, out}, std::pair{e, err}}) {
    rewind(f);
    s->clear();
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) s->append(buf, n);
    fclose(f);
  }
  return rc;
}

TEST(AuditRun, ExitCodes) {
  std::vector<std::string> lines = segment(3);
  TempFile intact(join(lines));
  std::string out, err;
  EXPECT_EQ(run(intact.path(), false, &out, &err), kVerifyExitIntact);
  EXPECT_EQ(out.substr(0, 17), "intact: 3 lines i");
  EXPECT_EQ(run(intact.path(), true, &out, &err), kVerifyExitIntact);
  EXPECT_EQ(out.substr(0, 11), "{\"ok\":true,");

  lines[1][lines[1].find("open web")] = 'O';
  TempFile tampered(join(lines));
  EXPECT_EQ(run(tampered.path(), false, &out, &err), kVerifyExitBroken);
  EXPECT_EQ(out.substr(0, 32), "line 3: prev does not match the ");

  EXPECT_EQ(run("/nonexistent/audit.log", false, &out, &err), kVerifyExitUnreadable);
  EXPECT_NE(err.find("cannot open the audit log /nonexistent/audit.log: ENOENT"), std::string::npos)
      << err;
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(run("/tmp", false, &out, &err), kVerifyExitUnreadable);  // read(2): EISDIR
  EXPECT_NE(err.find("EISDIR"), std::string::npos) << err;
}

}  // namespace
}  // namespace sluice::testing
