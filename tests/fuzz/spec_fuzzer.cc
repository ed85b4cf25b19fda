// libFuzzer target for the rule-text parser. The first input byte picks the
// option letter and the server context; the rest is the spec. Beyond "no
// crash, no hang, no sanitizer report", it checks the parser's contract:
// a spec that parses gives at most kMaxRulesPerTable rules that the validator
// accepts; a spec that fails gives a short, printable message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "policy/validate.h"
#include "schema/rules/spec_parser.h"
#include "tests/fuzz/fuzz_util.h"

namespace sluice::fuzz {
namespace {

/// Returns the option letter picked by the low two bits of `selector`.
char pick_option(uint8_t selector) {
  static const char kOptions[] = {'t', 'u', 'T', 'U'};
  return kOptions[selector & 3];
}

/// Returns the server context picked by the upper bits of `selector`.
sluice::SpecContext pick_context(uint8_t selector) {
  sluice::SpecContext ctx;
  switch ((selector >> 2) & 7) {
    case 1:
      ctx.ipv6 = false;
      break;
    case 2:
      ctx.ipv4 = false;
      break;
    case 3:
      ctx.ephemeral_first = 1;
      ctx.ephemeral_last = 65535;
      break;
    case 4:
      ctx.ephemeral_first = 60000;
      ctx.ephemeral_last = 1000;  // inverted: no ephemeral range at all
      break;
    case 5:
      ctx.ephemeral_first = 0;
      ctx.ephemeral_last = 0;
      break;
    default:
      break;
  }
  return ctx;
}

}  // namespace

int spec_one_input(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  char option = pick_option(data[0]);
  sluice::SpecContext ctx = pick_context(data[0]);
  std::string_view spec(reinterpret_cast<const char*>(data + 1), size - 1);

  auto rules = sluice::parse_spec(option, spec, ctx);
  if (!rules.ok()) {
    const std::string& msg = rules.error().message;
    FUZZ_CHECK(!msg.empty() && msg.size() <= 1024, "an empty or over-long parse error");
    FUZZ_CHECK(printable(msg), "a parse error with raw bytes");
    return 0;
  }
  FUZZ_CHECK(rules->size() <= sluice::kMaxRulesPerTable, "more rules than a table holds");
  sluice::TableSet tables;
  tables.of(sluice::option_pif(option)).rules = std::move(*rules);
  FUZZ_CHECK(sluice::validate_tables(tables, sluice::ServerCaps{}).empty(),
             "a parsed spec that the validator refuses");
  return 0;
}

}  // namespace sluice::fuzz

#ifndef SLUICE_FUZZ_NO_MAIN
/// libFuzzer's entry point.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sluice::fuzz::spec_one_input(data, size);
}
#endif
