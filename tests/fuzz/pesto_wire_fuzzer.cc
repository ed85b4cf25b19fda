// libFuzzer target for pesto's protocol v2 (schema/pesto_wire.h): the bytes
// anyone who can connect to sluiced's pesto socket sends it (an update, read
// by UpdateDecoder), and the hello a client reads from a server
// (decode_hello).
//
// Input: one control byte, then the bytes. The control byte says where the
// bytes are split between two feed() calls: at control * len / 255, so 0
// puts them all in the second call and 255 all in the first.
//
// Contracts checked:
// - the decoder's result, failure and consumed() are the same split as whole;
// - a refusal has a kind and a short printable message (it is logged);
// - finish() says "no update" (kNeedMore) only when no byte came;
// - a complete update took every byte, holds at most the two offered tables
//   once each, and encode_update of its tables gives back exactly the bytes;
// - every decoded rule decodes again from its record to the same model rule,
//   and its canonical record (encode_rule) differs from the received one at
//   most in a default target spelled ::ffff:0.0.0.0;
// - a hello that decodes encodes back to the same bytes (version 1 read as 2).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "schema/pesto_wire.h"
#include "tests/fuzz/fuzz_util.h"

namespace sluice::fuzz {
namespace {

using pesto::UpdateDecoder;

/// Limit: bytes of a refusal message. Messages quote no peer bytes beyond a
/// short table name, so anything longer is a bug.
constexpr size_t kMaxMessage = 256;

/// Checks a refusal: a kind, and a short printable message.
void check_failure(const pesto::WireFailure& failure) {
  FUZZ_CHECK(failure.error != pesto::WireError::kNone, "a refusal without a kind");
  FUZZ_CHECK(!failure.message.empty(), "a refusal without a message");
  FUZZ_CHECK(failure.message.size() <= kMaxMessage, "a refusal message too long for a log line");
  FUZZ_CHECK(printable(failure.message), "a refusal with raw bytes (it is logged)");
}

/// Checks one decoded rule against its record.
void check_rule(const pesto::WireRule& rule) {
  Rule again;
  pesto::WireFailure failure;
  FUZZ_CHECK(pesto::decode_rule(rule.record, "rule", &again, &failure),
             "a record that passed once is refused");
  FUZZ_CHECK(again == rule.rule, "a record decodes to two different rules");
  FUZZ_CHECK(rule.rule.target == canonical_target(rule.rule.target), "a target not canonical");
  FUZZ_CHECK(rule.rule.ifname.size() <= kMaxIfNameLen, "an interface name too long");
  pesto::RuleRecord canonical = pesto::encode_rule(rule.rule);
  FUZZ_CHECK(pesto::decode_rule(canonical, "rule", &again, &failure) && again == rule.rule,
             "the canonical record of a rule does not decode to it");
  pesto::RuleRecord expected = rule.record;
  if (is_default_target(rule.rule.target)) std::memset(expected.data() + 16, 0, sizeof(Addr));
  FUZZ_CHECK(canonical == expected, "the canonical record differs beyond the target");
}

/// Checks the tables of a complete update or a hello: known ids, each once.
void check_tables(const std::vector<pesto::WireTable>& tables) {
  FUZZ_CHECK(tables.size() <= kPifCount, "more tables than pifs");
  bool seen[kPifCount] = {};
  for (const pesto::WireTable& table : tables) {
    size_t index = static_cast<size_t>(table.pif);
    FUZZ_CHECK(index < kPifCount && !seen[index], "a table twice, or an unknown one");
    seen[index] = true;
    FUZZ_CHECK(table.rules.size() <= pesto::kMaxRules, "a table above the limit");
    for (const pesto::WireRule& rule : table.rules) check_rule(rule);
  }
}

/// Feeds `len` bytes to a fresh decoder split at `split`, then finishes it.
/// Returns the decoder's final status in `*status`.
UpdateDecoder decode_split(const uint8_t* bytes, size_t len, size_t split,
                           UpdateDecoder::Status* status) {
  UpdateDecoder decoder({Pif::kHost, Pif::kSplice});
  decoder.feed(bytes, split);
  decoder.feed(bytes + split, len - split);
  *status = decoder.finish();
  return decoder;
}

/// Runs the update decoder on `bytes`, split at `split` and whole.
void check_update(const uint8_t* bytes, size_t len, size_t split) {
  UpdateDecoder::Status status, whole_status;
  UpdateDecoder decoder = decode_split(bytes, len, split, &status);
  UpdateDecoder whole = decode_split(bytes, len, len, &whole_status);
  FUZZ_CHECK(status == whole_status, "the split changed the result");
  FUZZ_CHECK(decoder.failure().error == whole.failure().error &&
                 decoder.failure().message == whole.failure().message,
             "the split changed the refusal");
  FUZZ_CHECK(decoder.consumed() == whole.consumed(), "the split changed the bytes taken");
  FUZZ_CHECK(decoder.consumed() <= len && decoder.consumed() <= pesto::kMaxUpdateBytes,
             "more bytes taken than given, or than the limit");

  switch (status) {
    case UpdateDecoder::Status::kNeedMore:
      FUZZ_CHECK(len == 0, "finish() says no update after some bytes");
      return;
    case UpdateDecoder::Status::kInvalid:
      check_failure(decoder.failure());
      return;
    case UpdateDecoder::Status::kComplete:
      break;
  }
  FUZZ_CHECK(decoder.failure().error == pesto::WireError::kNone,
             "a complete update with a failure");
  FUZZ_CHECK(decoder.consumed() == len, "a complete update left bytes");
  FUZZ_CHECK(decoder.tables() == whole.tables(), "the split changed the tables");
  check_tables(decoder.tables());
  std::string again = pesto::encode_update(decoder.tables());
  FUZZ_CHECK(again.size() == len && std::memcmp(again.data(), bytes, len) == 0,
             "encode_update does not give back the update");
}

/// Runs decode_hello on `bytes`; a hello that decodes must encode back.
void check_hello(const uint8_t* bytes, size_t len) {
  std::vector<pesto::WireTable> tables;
  pesto::WireFailure failure;
  if (!pesto::decode_hello(bytes, len, &tables, &failure)) {
    check_failure(failure);
    FUZZ_CHECK(tables.empty(), "a refused hello left tables behind");
    return;
  }
  FUZZ_CHECK(failure.error == pesto::WireError::kNone, "an accepted hello with a failure");
  check_tables(tables);
  std::string expected(reinterpret_cast<const char*>(bytes), len);
  FUZZ_CHECK(len >= pesto::kHelloHeaderBytes, "a hello shorter than its header");
  expected[11] = static_cast<char>(pesto::kVersion);  // version 1 comes back as 2
  FUZZ_CHECK(pesto::encode_hello(tables) == expected, "encode_hello does not give back the hello");
}

}  // namespace

int pesto_wire_one_input(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  const uint8_t* bytes = data + 1;
  const size_t len = size - 1;
  check_update(bytes, len, control * len / 255);
  check_hello(bytes, len);
  return 0;
}

}  // namespace sluice::fuzz

#ifndef SLUICE_FUZZ_NO_MAIN
/// libFuzzer's entry point.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sluice::fuzz::pesto_wire_one_input(data, size);
}
#endif
