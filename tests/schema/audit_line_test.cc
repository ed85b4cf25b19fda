// Tests of the audit line format's one home (schema/audit_line.h): what the
// renderer writes, the strict parser reads back field for field, and the
// other way round, for commit records and start records of every tail; lines
// of another format are named as such; the outcome and failure kind names
// are the control protocol's; the parser names the column and what it
// expected.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "schema/audit_line.h"
#include "schema/codec.h"
#include "tests/audit_util.h"

namespace sluice::testing {
namespace {

/// Returns a line with every field set, two failures, and hostile bytes in
/// every free text.
AuditLine full_line() {
  AuditLine line;
  line.seq = 12;
  line.time = audit_time_text(kSampleMillis);
  line.outcome = "rejected";
  line.pid = -1;
  line.uid = 4294967295u;
  line.gid = 7;
  for (int c = 0; c < 256; ++c) line.comment += static_cast<char>(c);
  line.generation_before = 18446744073709551615ull;
  line.generation_after = 0;
  line.digest_before = sha256("a", 1);
  line.digest_after = sha256("b", 1);
  line.added = {"HOST TCP [*]:80 => 80", "x\",\"outcome\":\"applied\n"};
  line.removed = {};
  line.kept = 1;
  line.opened = 2;
  line.closed = 3;
  line.rebound = 4;
  AuditFailure bind;
  bind.kind = "bind-failed";
  bind.pif = Pif::kSplice;
  bind.rule = 2;
  bind.port = 65535;
  bind.err = 98;
  bind.errno_name = "EADDRINUSE";
  bind.message = "port 80 is in use\t\x01\xff";
  AuditFailure stale;
  stale.kind = "stale-generation";
  stale.message = "generation 3 is not 4";
  line.failures = {bind, stale};
  line.duration_micros = 99;
  line.prev = sha256("x", 1);
  return line;
}

/// Returns a start record with every field set and hostile bytes in its
/// tailError.
AuditLine full_start(AuditTail tail = AuditTail::kUnreadable) {
  AuditLine line;
  line.seq = 1;
  line.time = audit_time_text(kSampleMillis);
  line.start = true;
  for (size_t i = 0; i < line.run.size(); ++i) line.run[i] = static_cast<uint8_t>(0xf0 + i);
  line.pid = 2147483647;
  line.uid = 0;
  line.gid = 4294967295u;
  line.tail = tail;
  if (tail == AuditTail::kUnreadable) {
    for (int c = 0; c < 256; ++c) line.tail_error += static_cast<char>(c);
  }
  line.prev = sha256("y", 1);
  return line;
}

/// Returns `text` without its final "\n".
std::string_view without_newline(const std::string& text) {
  return std::string_view(text).substr(0, text.size() - 1);
}

TEST(AuditLine, ParseReadsBackWhatRenderWrites) {
  AuditLine line = full_line();
  std::string text = render_audit_line(line);
  ASSERT_EQ(text.back(), '\n');
  Result<AuditLine> parsed = parse_audit_line(std::string_view(text).substr(0, text.size() - 1));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message << "\n" << text;
  EXPECT_EQ(*parsed, line);
  EXPECT_EQ(render_audit_line(*parsed), text);
}

TEST(AuditLine, StartRecordsOfEveryTailParseBackAndRenderAgain) {
  for (size_t t = 0; t < kAuditTailNames.size(); ++t) {
    AuditLine line = full_start(static_cast<AuditTail>(t));
    std::string text = render_audit_line(line);
    EXPECT_NE(text.find("\"tail\":\"" + std::string(kAuditTailNames[t]) + "\""), std::string::npos)
        << text;
    Result<AuditLine> parsed = parse_audit_line(without_newline(text));
    ASSERT_TRUE(parsed.ok()) << parsed.error().message << "\n" << text;
    EXPECT_EQ(*parsed, line);
    EXPECT_EQ(render_audit_line(*parsed), text);
  }
  // The commit fields are not part of a start record.
  std::string text = render_audit_line(full_start());
  EXPECT_EQ(text.find("\"outcome\""), std::string::npos);
  EXPECT_EQ(text.find("\"comment\""), std::string::npos);
  EXPECT_EQ(text.find("{\"format\":2,\"seq\":1,\"time\":\"2026-11-24T17:03:11.123Z\","
                      "\"record\":\"start\",\"run\":\"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\","
                      "\"pid\":2147483647,\"uid\":0,\"gid\":4294967295,\"tail\":\"unreadable\","
                      "\"tailError\":\"\\u0000"),
            0u)
      << text;
}

TEST(AuditLine, TailErrorIsCutToTheItemLimit) {
  AuditLine line = full_start();
  line.tail_error = std::string(kMaxAuditItemBytes + 7, 'e');
  std::string text = render_audit_line(line);
  EXPECT_NE(text.find(std::string(kMaxAuditItemBytes, 'e') + "...[7 bytes cut]\""),
            std::string::npos);
  EXPECT_TRUE(parse_audit_line(without_newline(text)).ok());
}

TEST(AuditLine, OtherFormatsAreNamed) {
  // A line of format 1, as sluice wrote it before runs were linked.
  const std::string v1 =
      "{\"seq\":1,\"time\":\"2026-11-24T17:03:11.123Z\",\"outcome\":\"applied\",\"pid\":1}";
  Result<AuditLine> parsed = parse_audit_line(v1);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message,
            "column 1: expected \"format\" first; this is a line of audit format 1 (sluice "
            "before runs were linked), which this version does not read; verify it with the "
            "sluicectl of the sluice that wrote it");
  std::string v3 = render_audit_line(full_start());
  v3.replace(0, 11, "{\"format\":3");
  parsed = parse_audit_line(without_newline(v3));
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message,
            "column 12: expected format 2 (this line is of format 3, written by another version "
            "of sluice; verify it with that version's sluicectl)");
}

TEST(AuditLine, StartRecordFieldsAreChecked) {
  struct Edit {
    const char* from;
    const char* to;
    const char* expected;
  };
  const Edit edits[] = {
      {"\"record\":\"start\"", "\"record\":\"begin\"", "expected a record of start or commit"},
      {"\"tail\":\"unreadable\"", "\"tail\":\"cut\"",
       "expected a tail of linked, empty, none or unreadable"},
      {"\"run\":\"f0", "\"run\":\"F0", "expected a run id of 32 lower-case hex digits"},
      {"\"run\":\"f0", "\"run\":\"", "expected a run id of 32 lower-case hex digits"},
      {"\"pid\":2147483647", "\"pid\":2147483648", "expected a number of at most 2147483647"},
      {",\"tailError\":", ",\"error\":", "expected ,\"tailError\":"},
      {"\"uid\":0,\"gid\"", "\"gid\":0,\"uid\"", "expected ,\"uid\":"},
  };
  for (const Edit& e : edits) {
    std::string text = render_audit_line(full_start());
    size_t at = text.find(e.from);
    ASSERT_NE(at, std::string::npos) << e.from;
    text.replace(at, std::strlen(e.from), e.to);
    Result<AuditLine> parsed = parse_audit_line(without_newline(text));
    ASSERT_FALSE(parsed.ok()) << e.to;
    EXPECT_NE(parsed.error().message.find(e.expected), std::string::npos)
        << e.to << ": " << parsed.error().message;
  }
}

TEST(AuditLine, WorkerLinesParseAndRenderAgain) {
  for (const std::string& text : log_run(3)) {
    Result<AuditLine> parsed = parse_audit_line(std::string_view(text).substr(0, text.size() - 1));
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(parsed->time.substr(0, 19), "2026-11-24T17:03:11");
    EXPECT_EQ(render_audit_line(*parsed), text);
  }
}

TEST(AuditLine, NamesAreTheControlProtocols) {
  ASSERT_EQ(kAuditOutcomes.size(), 4u);
  for (size_t i = 0; i < kAuditOutcomes.size(); ++i) {
    EXPECT_EQ(kAuditOutcomes[i], control::outcome_name(static_cast<control::Outcome>(i)));
  }
  EXPECT_EQ(kAuditApplied, control::outcome_name(control::Outcome::kApplied));
  ASSERT_EQ(kAuditFailureKinds.size(), 7u);
  for (size_t i = 0; i < kAuditFailureKinds.size(); ++i) {
    EXPECT_EQ(kAuditFailureKinds[i],
              control::failure_kind_name(static_cast<control::FailureKind>(i)));
  }
  EXPECT_EQ(kAuditCapacity, control::failure_kind_name(control::FailureKind::kCapacity));
  EXPECT_EQ(kMaxAuditCommentBytes, control::kMaxCommentBytes);
}

TEST(AuditLine, EveryNameIsAccepted) {
  AuditLine line = full_line();
  for (std::string_view outcome : kAuditOutcomes) {
    line.outcome = std::string(outcome);
    for (std::string_view kind : kAuditFailureKinds) {
      line.failures[0].kind = std::string(kind);
      std::string text = render_audit_line(line);
      text.pop_back();
      EXPECT_TRUE(parse_audit_line(text).ok()) << text;
    }
  }
}

TEST(AuditLine, ParserNamesTheColumnAndWhatItExpected) {
  AuditLine line = full_line();
  line.outcome = "done";
  std::string text = render_audit_line(line);
  text.pop_back();
  Result<AuditLine> parsed = parse_audit_line(text);
  ASSERT_FALSE(parsed.ok());
  size_t after = text.find("\"done\"") + 6;
  EXPECT_EQ(parsed.error().message, "column " + std::to_string(after + 1) +
                                        ": expected an outcome of applied, rejected, dry-run or "
                                        "stale");

  line = full_line();
  line.failures[0].kind = "oops";
  text = render_audit_line(line);
  text.pop_back();
  parsed = parse_audit_line(text);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find(
                "expected a failure kind (invalid, conflict, policy-denied, bind-failed, "
                "capacity, stale-generation, confirm-pending)"),
            std::string::npos)
      << parsed.error().message;

  text = render_audit_line(full_line());
  text.replace(text.find("\"SPLICE\""), 8, "\"OTHER\"");
  text.pop_back();
  parsed = parse_audit_line(text);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find("expected a pif of HOST or SPLICE"), std::string::npos)
      << parsed.error().message;
}

TEST(AuditLine, KeysAreTheDeclaredNames) {
  std::string text = render_audit_line(full_line());
  for (std::string_view key :
       {audit_key::kFormat,     audit_key::kSeq,     audit_key::kTime,
        audit_key::kRecord,     audit_key::kOutcome, audit_key::kPid,
        audit_key::kUid,        audit_key::kGid,     audit_key::kComment,
        audit_key::kGeneration, audit_key::kDigest,  audit_key::kAdded,
        audit_key::kRemoved,    audit_key::kCounts,  audit_key::kKept,
        audit_key::kOpened,     audit_key::kClosed,  audit_key::kRebound,
        audit_key::kFailures,   audit_key::kKind,    audit_key::kPif,
        audit_key::kRule,       audit_key::kPort,    audit_key::kErrno,
        audit_key::kErrnoName,  audit_key::kMessage, audit_key::kDurationMicros,
        audit_key::kPrev,       audit_key::kBefore,  audit_key::kAfter}) {
    EXPECT_NE(text.find("\"" + std::string(key) + "\":"), std::string::npos) << key;
  }
  text = render_audit_line(full_start());
  for (std::string_view key :
       {audit_key::kFormat, audit_key::kSeq, audit_key::kTime, audit_key::kRecord, audit_key::kRun,
        audit_key::kPid, audit_key::kUid, audit_key::kGid, audit_key::kTail, audit_key::kTailError,
        audit_key::kPrev}) {
    EXPECT_NE(text.find("\"" + std::string(key) + "\":"), std::string::npos) << key;
  }
}

}  // namespace
}  // namespace sluice::testing
