// Tests of the audit verifier (client/audit_verify.cc): an intact run, an
// empty file, each kind of tampering (edited byte, deleted, swapped and
// inserted lines, a truncated last line, seq and generation gaps), runs and
// how they link (a deleted or re-chained earlier run, a cut head, rotated
// files, stderr runs, unreadable tails, forged start records), garbage, huge
// lines, random damage, the reports and run_verify_audit's exit codes.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
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

TEST(AuditVerify, IntactRun) {
  std::vector<std::string> lines = log_run(4);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  EXPECT_FALSE(report.empty);
  EXPECT_EQ(report.lines, 5u);
  ASSERT_EQ(report.runs.size(), 1u);
  EXPECT_EQ(report.run_count, 1u);
  EXPECT_EQ(report.runs[0].id, "1112131415161718191a1b1c1d1e1f20");
  EXPECT_EQ(report.runs[0].tail, "empty");
  EXPECT_EQ(report.runs[0].pid, 77);
  EXPECT_EQ(report.last_hash, hash_hex(lines[4]));
  std::string text = audit_report_text(report);
  EXPECT_EQ(text,
            "intact: 5 lines in 1 runs; last hash " + hash_hex(lines[4]) +
                "\nrun 1: lines 1-5, seq 1-5, 2026-11-24T17:03:11.123Z to "
                "2026-11-24T17:03:11.127Z; id 1112131415161718191a1b1c1d1e1f20, sluiced pid 77; "
                "the log starts here (the file was empty)\n");
}

TEST(AuditVerify, EmptyFileIsReportedUnlessAllowed) {
  // Security review item 3: an empty file verified as intact.
  AuditReport report = verify_audit_bytes("");
  EXPECT_FALSE(report.ok);
  EXPECT_TRUE(report.empty);
  EXPECT_EQ(report.lines, 0u);
  EXPECT_EQ(report.last_hash, std::string(64, '0'));
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_EQ(report.problems[0].line, 0u);
  EXPECT_EQ(audit_report_text(report),
            "the file is empty: it holds no line, not even a run's start record, which sluiced "
            "writes as soon as it starts; the log was emptied or replaced, or no sluiced has "
            "written to it yet (then pass --allow-empty)\n"
            "not intact: 1 problems in 0 lines (0 runs)\n");
  AuditVerifyOptions allow;
  allow.allow_empty = true;
  AuditReport allowed = verify_audit_bytes("", allow);
  EXPECT_TRUE(allowed.ok);
  EXPECT_TRUE(allowed.empty);
  EXPECT_EQ(audit_report_text(allowed),
            "empty: the file holds no line; accepted because of --allow-empty\n");
  EXPECT_NE(audit_report_json(allowed).find("{\"ok\":true,\"empty\":true,\"lines\":0,\"runs\":0,"),
            std::string::npos);
  // --allow-empty changes nothing else: a file of one newline is not empty.
  EXPECT_FALSE(verify_audit_bytes("\n", allow).ok);
}

TEST(AuditVerify, ByteByByteFeedingGivesTheSameReport) {
  std::string text = join(log_run(4));
  text.insert(text.find('\n') + 1, "garbage\n");
  AuditVerifier verifier;
  for (char c : text) verifier.feed(std::string_view(&c, 1));
  AuditReport a = verifier.finish();
  AuditReport b = verify_audit_bytes(text);
  EXPECT_EQ(audit_report_json(a), audit_report_json(b));
  EXPECT_FALSE(a.ok);
}

TEST(AuditTamper, EditedByteIsFoundAtTheNextLine) {
  std::vector<std::string> lines = log_run(4);
  size_t at = lines[2].find("open web");
  lines[2][at] = 'O';
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{4});
  EXPECT_TRUE(has_problem(report, 4, "prev does not match the SHA-256 of line 3"));
}

TEST(AuditTamper, EditedStartRecordIsFoundAtTheNextLine) {
  std::vector<std::string> lines = log_run(2);
  lines[0].replace(lines[0].find("\"pid\":77"), 8, "\"pid\":78");
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{2});
  EXPECT_TRUE(has_problem(report, 2, "prev does not match the SHA-256 of line 1"));
}

TEST(AuditTamper, EditedLastLineChangesOnlyTheLastHash) {
  // Documented limit: nothing follows the last line, so only an anchored copy
  // of the last hash reveals an edit there.
  std::vector<std::string> lines = log_run(2);
  std::string before = verify_audit_bytes(join(lines)).last_hash;
  lines[2][lines[2].find("open web")] = 'O';
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(report.ok);
  EXPECT_NE(report.last_hash, before);
}

TEST(AuditTamper, EditedByteThatBreaksTheFormat) {
  std::vector<std::string> lines = log_run(2);
  lines[1][lines[1].find("\"uid\"")] = 'X';
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(has_problem(report, 2, "not an audit record (column"));
  EXPECT_TRUE(has_problem(report, 3, "prev does not match"));
}

TEST(AuditTamper, DeletedLine) {
  std::vector<std::string> lines = log_run(4);
  lines.erase(lines.begin() + 3);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_TRUE(has_problem(report, 4, "prev does not match the SHA-256 of line 3"));
  EXPECT_TRUE(has_problem(report, 4, "seq 5 follows seq 3 on line 3"));
  EXPECT_TRUE(has_problem(report, 4, "generation.before 4 is not generation.after 3"));
  EXPECT_EQ(report.problems.front().line, 4u);
}

TEST(AuditTamper, SwappedLines) {
  std::vector<std::string> lines = log_run(4);
  std::swap(lines[2], lines[3]);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_TRUE(has_problem(report, 3, "prev does not match"));
  EXPECT_TRUE(has_problem(report, 4, "prev does not match"));
  EXPECT_TRUE(has_problem(report, 5, "prev does not match"));
  EXPECT_FALSE(has_problem(report, 2, "prev"));
}

TEST(AuditTamper, InsertedLine) {
  std::vector<std::string> lines = log_run(3);
  // A forged, well-formed line that chains to line 3: line 4 still does not.
  AuditLog forger(-1);
  std::string forged = forger.format_line(sample_record(3), 4, kSampleMillis,
                                          sha256(lines[2].data(), lines[2].size()));
  lines.insert(lines.begin() + 3, forged);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_FALSE(has_problem(report, 4, "prev"));
  EXPECT_TRUE(has_problem(report, 5, "prev does not match the SHA-256 of line 4"));
  EXPECT_TRUE(has_problem(report, 5, "seq 4 follows seq 4"));
}

TEST(AuditTamper, TruncatedLastLine) {
  std::string text = join(log_run(2));
  AuditReport cut = verify_audit_bytes(text.substr(0, text.size() - 10));
  EXPECT_FALSE(cut.ok);
  EXPECT_EQ(cut.lines, 3u);
  EXPECT_TRUE(has_problem(cut, 3, "no final newline"));
  AuditReport no_newline = verify_audit_bytes(text.substr(0, text.size() - 1));
  EXPECT_TRUE(has_problem(no_newline, 3, "no final newline"));
  EXPECT_EQ(no_newline.last_hash, hash_hex(log_run(2)[1]));
}

TEST(AuditTamper, SeqGapWithAnIntactChain) {
  std::vector<std::string> lines =
      chain_lines({{2, sample_record(1)}, {3, sample_record(2)}, {5, sample_record(3)}});
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{4});
  EXPECT_TRUE(has_problem(report, 4, "seq 5 follows seq 3 on line 3; the chain holds"));
}

TEST(AuditTamper, GenerationGapBetweenAppliedLines) {
  CommitRecord rejected = sample_record(2);
  rejected.outcome = control::Outcome::kRejected;
  rejected.generation_after = 2;
  std::vector<std::string> lines = chain_lines(
      {{2, sample_record(1)}, {3, rejected}, {4, sample_record(2)}, {5, sample_record(5)}});
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{5});
  EXPECT_TRUE(has_problem(report, 5,
                          "generation.before 5 is not generation.after 3 of the applied commit "
                          "on line 4"));
}

TEST(AuditRuns, RunsThatLinkAreIntactAndReported) {
  std::vector<std::string> lines = log_run(2, 1);
  for (const std::string& l : log_run(1, 1, link_to(lines.back()), 0x22)) lines.push_back(l);
  for (const std::string& l : log_run(0, 1, link_to(lines.back()), 0x33)) lines.push_back(l);
  AuditReport report = verify_audit_bytes(join(lines));  // generations restart per run
  EXPECT_TRUE(report.ok) << audit_report_text(report);
  EXPECT_EQ(report.lines, 6u);
  ASSERT_EQ(report.runs.size(), 3u);
  EXPECT_EQ(report.runs[1].first_line, 4u);
  EXPECT_EQ(report.runs[1].last_line, 5u);
  EXPECT_EQ(report.runs[2].first_line, 6u);
  std::string text = audit_report_text(report);
  EXPECT_NE(text.find("intact: 6 lines in 3 runs"), std::string::npos) << text;
  EXPECT_NE(text.find("run 2: lines 4-5, seq 1-2, 2026-11-24T17:03:11.123Z to "
                      "2026-11-24T17:03:11.124Z; id 22232425262728292a2b2c2d2e2f3031, sluiced pid "
                      "77; linked to line 3, the log's last line when it started\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("run 3: lines 6-6, seq 1-1, "), std::string::npos) << text;
  EXPECT_NE(audit_report_json(report).find(
                "\"runStarts\":[{\"line\":1,\"seq\":1,\"time\":\"2026-11-24T17:03:11.123Z\","
                "\"run\":\"1112131415161718191a1b1c1d1e1f20\",\"tail\":\"empty\"},"
                "{\"line\":4,\"seq\":1,"),
            std::string::npos)
      << audit_report_json(report);
}

/// Returns two runs: the first of three commits, the second linked to it.
std::vector<std::string> two_runs() {
  std::vector<std::string> lines = log_run(3, 1);
  for (const std::string& l : log_run(2, 1, link_to(lines.back()), 0x22)) lines.push_back(l);
  return lines;
}

TEST(AuditRuns, DeletedFirstRunIsFound) {
  // Security review item 3: deleting a whole earlier run verified
  // as intact. The run left now claims a last line that is not in the file.
  std::vector<std::string> lines = two_runs();
  lines.erase(lines.begin(), lines.begin() + 4);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{1});
  EXPECT_TRUE(has_problem(report, 1,
                          "line 1: run 22232425262728292a2b2c2d2e2f3031 links to a line that is "
                          "not in this file (the log's last line when it started, SHA-256 " +
                              hash_hex(two_runs()[3]) +
                              "): lines before line 1 were cut off (the head of the log was "
                              "deleted), or this file continues a rotated one"));
}

TEST(AuditRuns, DeletedMiddleRunIsFound) {
  std::vector<std::string> lines = two_runs();
  for (const std::string& l : log_run(1, 1, link_to(lines.back()), 0x44)) lines.push_back(l);
  lines.erase(lines.begin() + 4, lines.begin() + 7);  // the second run, whole
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{5});
  EXPECT_TRUE(has_problem(report, 5,
                          "line 5: run 4445464748494a4b4c4d4e4f50515253 does not link to line 4: "
                          "its prev is the SHA-256 of the log's last line when it started, and "
                          "line 4 is not that line"));
}

TEST(AuditRuns, EditedAndRechainedFirstRunIsFound) {
  // Security review item 3: an earlier run edited and its chain
  // recomputed verified as intact, with the same last hash.
  std::vector<std::string> lines = two_runs();
  CommitRecord forged = sample_record(2);
  forged.comment = "nothing to see";
  std::vector<std::string> rewritten =
      chain_lines({{2, sample_record(1)}, {3, forged}, {4, sample_record(3)}});
  ASSERT_EQ(rewritten.size(), 4u);
  std::copy(rewritten.begin(), rewritten.end(), lines.begin());
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{5});
  EXPECT_TRUE(has_problem(report, 5, "does not link to line 4"));
  EXPECT_TRUE(has_problem(report, 5,
                          "(a whole earlier run deleted, or edited and its chain "
                          "recomputed)"));
}

TEST(AuditRuns, RotatedFilesVerifyJoinedButTheNewerOneAloneIsCut) {
  std::vector<std::string> lines = two_runs();
  std::string older = join(std::vector<std::string>(lines.begin(), lines.begin() + 4));
  std::string newer = join(std::vector<std::string>(lines.begin() + 4, lines.end()));
  EXPECT_TRUE(verify_audit_bytes(older).ok);
  AuditReport alone = verify_audit_bytes(newer);
  EXPECT_TRUE(has_problem(alone, 1,
                          "verify the files together, oldest first: cat audit.log.1 "
                          "audit.log | sluicectl --verify-audit /dev/stdin"));
  EXPECT_TRUE(verify_audit_bytes(older + newer).ok);
}

TEST(AuditRuns, FileStartingInsideARun) {
  std::vector<std::string> lines = log_run(3);
  lines.erase(lines.begin());
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{1});
  EXPECT_TRUE(has_problem(report, 1, "the file does not begin with a run's start record"));
  ASSERT_EQ(report.runs.size(), 1u);
  EXPECT_EQ(report.runs[0].id, "");
}

TEST(AuditRuns, AFreshFileStartAfterOtherLinesIsReported) {
  std::vector<std::string> lines = log_run(1);
  for (const std::string& l : log_run(1, 1, empty_link(), 0x22)) lines.push_back(l);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{3});
  EXPECT_TRUE(has_problem(report, 3,
                          "found the log file empty when it started, yet 2 lines come "
                          "before it"));
}

TEST(AuditRuns, AStderrRunStartsALogButCannotFollowOne) {
  std::vector<std::string> lines = log_run(1, 1, AuditLink{});
  AuditReport first = verify_audit_bytes(join(lines));
  EXPECT_TRUE(first.ok) << audit_report_text(first);
  EXPECT_NE(audit_report_text(first).find("the log starts here (the sink was sluiced's stderr)"),
            std::string::npos);
  for (const std::string& l : log_run(1, 1, AuditLink{}, 0x22)) lines.push_back(l);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), std::vector<uint64_t>{3});
  EXPECT_TRUE(has_problem(report, 3,
                          "wrote to sluiced's stderr, not to an --audit-log file, so "
                          "it could not link to the lines before it"));
}

TEST(AuditRuns, AnUnreadableTailIsReportedAndStillLinked) {
  std::vector<std::string> lines = log_run(1);
  lines[1] = "damaged\n";
  AuditLink link;
  link.tail = AuditTail::kUnreadable;
  link.prev = sha256(lines[1].data(), lines[1].size());
  link.error = "the last line is not an audit line (column 1: expected {\"format\":)";
  for (const std::string& l : log_run(1, 1, link, 0x22)) lines.push_back(l);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_EQ(problem_lines(report), (std::vector<uint64_t>{2, 3}));
  EXPECT_TRUE(has_problem(report, 3,
                          "line 3: run 22232425262728292a2b2c2d2e2f3031 could not read the log's "
                          "last line when it started (the last line is not an audit line (column "
                          "1: expected {\"format\":)); that line was damaged before this run "
                          "began (see line 2)"));
  EXPECT_FALSE(has_problem(report, 3, "does not link"));
  // Its prev is still checked: the damaged line replaced by another one.
  lines[1] = "other\n";
  EXPECT_TRUE(has_problem(verify_audit_bytes(join(lines)), 3, "does not link to line 2"));
}

TEST(AuditRuns, ForgedStartRecords) {
  std::vector<std::string> lines = log_run(1);
  std::string& start = lines[0];
  start.replace(start.find("\"seq\":1,"), 8, "\"seq\":3,");
  start.replace(start.find("\"prev\":\"0"), 9, "\"prev\":\"1");
  start.replace(start.find("\"tailError\":\"\""), 14, "\"tailError\":\"x\"");
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(has_problem(report, 1, "a start record with seq 3, not 1; the line was edited"));
  EXPECT_TRUE(has_problem(report, 1, "a start record with tail empty and a tailError"));
  EXPECT_TRUE(has_problem(report, 1,
                          "a start record with tail empty and a prev other than 64 "
                          "zeros; the line was edited"));
}

TEST(AuditRuns, ATailErrorIsShownSanitizedAndCut) {
  AuditLink link;
  link.tail = AuditTail::kUnreadable;
  link.error = "\x1b[2J" + std::string(3000, 'e');
  AuditReport report = verify_audit_bytes(join(log_run(0, 1, link)));
  ASSERT_EQ(report.problems.size(), 1u);
  const std::string& message = report.problems[0].message;
  EXPECT_NE(message.find("(\\x1b[2Jeee"), std::string::npos) << message;
  EXPECT_LT(message.size(), kMaxQuotedTailErrorBytes + 400);
}

TEST(AuditRuns, RunsAreCountedBeyondTheReportLimit) {
  std::vector<std::string> lines = log_run(0);
  for (size_t i = 1; i < kMaxReportedRuns + 5; ++i) {
    lines.push_back(log_run(0, 1, link_to(lines.back()), static_cast<uint8_t>(i))[0]);
  }
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(report.ok) << report.problems.front().message;
  EXPECT_EQ(report.runs.size(), kMaxReportedRuns);
  EXPECT_EQ(report.run_count, kMaxReportedRuns + 5);
  EXPECT_EQ(report.runs.back().last_line, kMaxReportedRuns);
  EXPECT_NE(audit_report_text(report).find("(5 more runs not shown)"), std::string::npos);
  EXPECT_NE(audit_report_json(report).find(",\"runsOmitted\":5}"), std::string::npos);
}

TEST(AuditGarbage, GarbageLinesAreReportedOneByOne) {
  std::vector<std::string> lines = log_run(2);
  lines.insert(lines.begin() + 2,
               {"hello\n", "\n", "{}\n", std::string("\0\xff\x01{\"seq\":1\n", 12),
                "{\"format\":02,\"seq\":1}\n", "[1,2,3]\n"});
  AuditReport report = verify_audit_bytes(join(lines));
  for (uint64_t n = 3; n <= 8; ++n) {
    EXPECT_TRUE(has_problem(report, n, "not an audit record")) << n;
  }
  EXPECT_TRUE(has_problem(report, 9, "prev does not match"));
  EXPECT_TRUE(has_problem(report, 6, "column 1: expected {\"format\":"));
  EXPECT_TRUE(has_problem(report, 7, "column 11: expected a decimal number without leading zeros"));
}

TEST(AuditGarbage, NonCanonicalFormsAreRefused) {
  const std::vector<std::string> lines = log_run(1);
  struct Edit {
    size_t line;  // 0: the start record, 1: the commit record
    const char* from;
    const char* to;
  };
  const Edit edits[] = {
      {1, "open web", "open\\u0020web"},   // printable byte as \u
      {1, "open web", "open\\u000aweb"},   // \n has a short form
      {1, "open web", "open\\u00E9web"},   // upper-case hex
      {1, "open web", "open\\/web"},       // not an escape the writer uses
      {1, "open web", "open\xc3\xa9web"},  // raw non-ASCII
      {1, "\"pid\":4242", "\"pid\": 4242"},
      {1, "\"pid\":4242", "\"pid\":-0"},
      {1, "\"uid\":1000", "\"uid\":4294967296"},
      {1, "\"outcome\":\"applied\"", "\"outcome\":\"done\""},
      {1, "\"seq\":2,", "\"seq\":0,"},
      {1, "\"record\":\"commit\"", "\"record\":\"Commit\""},
      {1, "\"format\":2,", "\"format\":1,"},
      {1, "2026-11-24T17", "2026-13-24T17"},
      {1, "}\n", "} \n"},
      {0, "\"tail\":\"empty\"", "\"tail\":\"EMPTY\""},
      {0, "\"run\":\"11", "\"run\":\"1"},
      {0, "\"tailError\":\"\"", "\"tailError\":\"\\u0041\""},
      {0, "\"record\":\"start\",", "\"record\":\"start\",\"outcome\":\"applied\","},
  };
  for (const Edit& e : edits) {
    std::string line = lines[e.line];
    size_t at = line.find(e.from);
    ASSERT_NE(at, std::string::npos) << e.from;
    line.replace(at, std::strlen(e.from), e.to);
    AuditReport report = verify_audit_bytes(line);
    EXPECT_TRUE(has_problem(report, 1, "not an audit record")) << e.to;
  }
}

TEST(AuditGarbage, HugeLineIsInvalidButHashed) {
  std::vector<std::string> lines = log_run(2);
  std::string huge(2 * kMaxVerifyLineBytes, 'a');
  huge += '\n';
  lines.insert(lines.begin() + 1, huge);
  AuditReport report = verify_audit_bytes(join(lines));
  EXPECT_TRUE(has_problem(report, 2, "longer than 1048576 bytes"));
  EXPECT_TRUE(has_problem(report, 3, "prev does not match"));
  EXPECT_EQ(report.lines, 4u);
  // A huge final line without a newline is reported as truncated.
  AuditReport tail = verify_audit_bytes(join(log_run(0)) + std::string(3 << 20, 'b'));
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
  std::vector<std::string> good_lines = log_run(3);
  for (const std::string& l : log_run(2, 1, link_to(good_lines.back()), 0x22)) {
    good_lines.push_back(l);
  }
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
  std::vector<std::string> lines = log_run(2);
  lines[1][lines[1].find("open web")] = 'O';
  AuditReport report = verify_audit_bytes(join(lines));
  std::string json = audit_report_json(report);
  EXPECT_EQ(json, "{\"ok\":false,\"empty\":false,\"lines\":3,\"runs\":1,\"lastHash\":\"" +
                      hash_hex(lines[2]) +
                      "\",\"problems\":[{\"line\":3,\"message\":\"line 3: prev does not match the "
                      "SHA-256 of line 2; line 2 was edited, or lines were deleted, inserted or "
                      "reordered between line 2 and line 3\"}],\"problemsOmitted\":0,"
                      "\"runStarts\":[{\"line\":1,\"seq\":1,\"time\":"
                      "\"2026-11-24T17:03:11.123Z\",\"run\":\"1112131415161718191a1b1c1d1e1f20\","
                      "\"tail\":\"empty\"}],\"runsOmitted\":0}\n");
  std::string text = audit_report_text(report);
  EXPECT_NE(text.find("line 3: prev does not match"), std::string::npos);
  EXPECT_NE(text.find("not intact: 1 problems in 3 lines (1 runs); the first at line 3"),
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
int run(const std::string& path, bool json, std::string* out, std::string* err,
        AuditVerifyOptions options = {}) {
  FILE* o = tmpfile();
  FILE* e = tmpfile();
  int rc = run_verify_audit(path, json, options, o, e);
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
  std::vector<std::string> lines = log_run(2);
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

  TempFile empty("");
  EXPECT_EQ(run(empty.path(), false, &out, &err), kVerifyExitBroken);
  EXPECT_EQ(out.substr(0, 19), "the file is empty: ");
  AuditVerifyOptions allow;
  allow.allow_empty = true;
  EXPECT_EQ(run(empty.path(), false, &out, &err, allow), kVerifyExitIntact);
  EXPECT_EQ(out, "empty: the file holds no line; accepted because of --allow-empty\n");

  EXPECT_EQ(run("/nonexistent/audit.log", false, &out, &err), kVerifyExitUnreadable);
  EXPECT_NE(err.find("cannot open the audit log /nonexistent/audit.log: ENOENT"), std::string::npos)
      << err;
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(run("/tmp", false, &out, &err), kVerifyExitUnreadable);
  EXPECT_NE(err.find("the audit log /tmp is a directory, not a regular file"), std::string::npos)
      << err;
}

/// Runs run_verify_audit on `path` in a child process, with `stdin_bytes`
/// (when given) on a pipe as its standard input. Returns its exit code, or
/// -1 when it has not finished within 5 s (it is then killed); stores its
/// error output.
int run_in_child_within_5s(const std::string& path, std::string* err,
                           const std::string* stdin_bytes = nullptr) {
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return -2;
  const pid_t pid = ::fork();
  if (pid < 0) return -2;
  if (pid == 0) {
    ::close(report[0]);
    if (stdin_bytes != nullptr) {
      int in[2];
      if (::pipe(in) != 0) ::_exit(100);
      // Small enough for the pipe's buffer: written whole before the read.
      if (::write(in[1], stdin_bytes->data(), stdin_bytes->size()) !=
          static_cast<ssize_t>(stdin_bytes->size())) {
        ::_exit(101);
      }
      ::close(in[1]);
      if (::dup2(in[0], 0) != 0) ::_exit(102);
      ::close(in[0]);
    }
    std::string out, child_err;
    const int rc = run(path, false, &out, &child_err);
    (void)!::write(report[1], child_err.data(), child_err.size());
    ::_exit(rc);
  }
  ::close(report[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  err->clear();
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    struct pollfd p = {report[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    const ssize_t n = ::read(report[0], buf, sizeof(buf));
    if (n <= 0) break;
    err->append(buf, static_cast<size_t>(n));
  }
  ::close(report[0]);
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 50 && (done = ::waitpid(pid, &status, WNOHANG)) == 0; ++i) ::usleep(10000);
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -3;
}

TEST(AuditRun, AFifoOrADeviceIsRefusedAtOnceAsUnreadable) {
  char dir[] = "/tmp/sluice-audit-fifo-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string fifo = std::string(dir) + "/audit.log";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  std::string err;
  // A FIFO nobody writes to: a blocking open would wait for a writer forever.
  EXPECT_EQ(run_in_child_within_5s(fifo, &err), kVerifyExitUnreadable) << err;
  EXPECT_NE(err.find("the audit log " + fifo + " is a FIFO (named pipe), not a regular file"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("give the log file itself"), std::string::npos) << err;
  // /dev/zero never ends: an unbounded read would never return.
  EXPECT_EQ(run_in_child_within_5s("/dev/zero", &err), kVerifyExitUnreadable) << err;
  EXPECT_NE(err.find("the audit log /dev/zero is a character device, not a regular file"),
            std::string::npos)
      << err;
  ::unlink(fifo.c_str());
  ::rmdir(dir);
}

TEST(AuditRun, RotatedFilesStillVerifyThroughAPipeOnStandardInput) {
  const std::string joined = join(log_run(2));
  std::string err;
  EXPECT_EQ(run_in_child_within_5s("/dev/stdin", &err, &joined), kVerifyExitIntact) << err;
  EXPECT_EQ(err, "");
}

TEST(AuditVerifyFd, AGrowingFileIsReadAsItWasWhenOpenedWithTheLineBeingWritten) {
  std::vector<std::string> lines = log_run(3);
  const std::string all = join(lines);
  TempFile file(all);
  int fd = ::open(file.path(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  // Opened while line 2 was half written: lines 1 and 2 are read, not line 3.
  const uint64_t snapshot = lines[0].size() + lines[1].size() / 2;
  auto report = verify_audit_fd(fd, {}, snapshot);
  ::close(fd);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_TRUE(report->ok) << audit_report_text(*report);
  EXPECT_EQ(report->lines, 2u);
}

}  // namespace
}  // namespace sluice::testing
