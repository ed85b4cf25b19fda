// libFuzzer target for the worker's state blob (schema/codec.h
// decode_state_blob): the bytes a restarted worker maps from the memfd that
// sluiced kept for it. They were written by a worker that may have been
// compromised, so the decoder sees them as hostile: any bytes, any length.
//
// Beyond "no crash, no hang, no sanitizer report", it checks contracts:
//   - a decode error is a short printable message (the worker logs it);
//   - a decoded blob encodes and decodes back to itself;
//   - what the worker does next with it, check_commit under a full set of
//     capabilities (the resume commit), never crashes, and every failure
//     points at a table and rule that exist.
#include <string>

#include "policy/check_commit.h"
#include "schema/codec.h"
#include "tests/fuzz/fuzz_util.h"

namespace sluice::fuzz {

int state_blob_one_input(const uint8_t* data, size_t size) {
  AlignedBytes bytes(data, size);
  auto blob = control::decode_state_blob(bytes.data(), bytes.size());
  if (!blob) {
    const std::string& message = blob.error().message;
    FUZZ_CHECK(!message.empty() && message.size() <= 1024, "a bad decode error length");
    FUZZ_CHECK(printable(message), "a decode error with raw bytes");
    return 0;
  }
  const std::string again = control::encode_state_blob(*blob);
  AlignedBytes copy(again.data(), again.size());
  auto round = control::decode_state_blob(copy.data(), copy.size());
  FUZZ_CHECK(round.ok(), "a decoded blob does not decode again");
  FUZZ_CHECK(round->generation == blob->generation, "the generation changed in a round trip");
  FUZZ_CHECK(round->tables == blob->tables, "the tables changed in a round trip");
  CommitFacts facts;
  facts.caps.ipv4 = facts.caps.ipv6 = facts.caps.udp = facts.caps.scan = true;
  for (const control::Failure& f : check_commit(blob->tables, facts, nullptr)) {
    const Table& table = blob->tables.of(f.pif);
    FUZZ_CHECK(f.rule < 0 || static_cast<size_t>(f.rule) < table.rules.size(),
               "a failure names a rule that does not exist");
    FUZZ_CHECK(f.other_rule < 0 || static_cast<size_t>(f.other_rule) < table.rules.size(),
               "a conflict names a rule that does not exist");
  }
  return 0;
}

}  // namespace sluice::fuzz

#ifndef SLUICE_FUZZ_NO_MAIN
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sluice::fuzz::state_blob_one_input(data, size);
}
#endif
