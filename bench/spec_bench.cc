// Rule-language benchmark: parsing and validating at the limits.
//
//  - the largest single spec the parser accepts (4096 bytes) that expands
//    into as many rules as a spec can: one range cut by exclusions;
//  - a table of the maximum rule count (kMaxRulesPerTable = 4096), built the
//    way sluicectl builds it (pesto edit commands through apply_edits), then
//    validated with the validator the worker runs on every commit.
//
// Pure CPU work, no sockets: it runs anywhere. Prints Markdown tables.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "policy/validate.h"
#include "schema/rules/spec_parser.h"
#include "schema/rules/table_edit.h"

namespace sluice {
namespace {

/// Limit: timed repetitions per measurement; the median of 21 is stable to a
/// few percent on a shared 2-core machine, and the whole run takes seconds.
constexpr int kRepetitions = 21;

/// Milliseconds of `fn()`, median and max over kRepetitions runs.
template <typename Fn>
std::pair<double, double> time_ms(Fn fn) {
  std::vector<double> ms;
  for (int i = 0; i < kRepetitions; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.back()};
}

/// The largest spec under the parser's limit (kMaxSpecBytes): ports 1-65535 with
/// every other port from 2 up excluded, as many exclusions as fit.
std::string largest_spec() {
  std::string spec = "1-65535";
  for (unsigned port = 2; port < kMaxPort; port += 2) {
    std::string chunk = ",~" + std::to_string(port);
    if (spec.size() + chunk.size() > kMaxSpecBytes) break;
    spec += chunk;
  }
  return spec;
}

/// Edit commands that build a HOST table of exactly kMaxRulesPerTable rules:
/// one -A -t spec per 64 single ports on distinct addresses.
std::vector<EditCommand> max_table_edits() {
  std::vector<EditCommand> edits;
  EditCommand append;
  append.kind = EditCommand::Kind::kAppend;
  edits.push_back(append);
  size_t rules = 0;
  for (unsigned block = 0; rules < kMaxRulesPerTable; ++block) {
    std::string spec =
        "127.0." + std::to_string(block / 256) + "." + std::to_string(block % 256) + "/";
    for (unsigned i = 0; i < 64 && rules < kMaxRulesPerTable; ++i, ++rules) {
      if (i > 0) spec += ',';
      spec += std::to_string(1000 + 2 * i);
    }
    EditCommand cmd;
    cmd.kind = EditCommand::Kind::kSpec;
    cmd.option = 't';
    cmd.spec = spec;
    edits.push_back(cmd);
  }
  return edits;
}

/// Runs both measurements and prints them; returns the exit status.
int run() {
  SpecContext ctx;
  std::string spec = largest_spec();
  auto rules = parse_spec('t', spec, ctx);
  if (!rules) {
    std::fprintf(stderr, "spec_bench: %s\n", rules.error().message.c_str());
    return 1;
  }
  auto parse = time_ms([&] { (void)parse_spec('t', spec, ctx); });

  std::vector<EditCommand> edits = max_table_edits();
  auto built = apply_edits(TableSet{}, edits, ctx);
  if (!built) {
    std::fprintf(stderr, "spec_bench: %s\n", built.error().message.c_str());
    return 1;
  }
  size_t count = built->of(Pif::kHost).rules.size();
  auto edit = time_ms([&] { (void)apply_edits(TableSet{}, edits, ctx); });
  ServerCaps caps;
  size_t issues = validate_tables(*built, caps).size();
  auto validate = time_ms([&] { (void)validate_tables(*built, caps); });

  std::printf("| work | input | rules | median ms | max ms |\n|---|---|---:|---:|---:|\n");
  std::printf("| parse one spec | %zu bytes, 1 range cut by %zu exclusions | %zu | %.3f | %.3f |\n",
              spec.size(), std::count(spec.begin(), spec.end(), '~'), rules->size(), parse.first,
              parse.second);
  std::printf("| apply edits (`-A -t` x %zu) | 64 ports per spec | %zu | %.3f | %.3f |\n",
              edits.size() - 1, count, edit.first, edit.second);
  std::printf("| validate the table | %zu rules, %zu issues | %zu | %.3f | %.3f |\n\n", count,
              issues, count, validate.first, validate.second);
  return issues == 0 && count == kMaxRulesPerTable ? 0 : 1;
}

}  // namespace
}  // namespace sluice

/// Entry point: no arguments (bench/run passes its own, which are ignored).
int main() {
  return sluice::run();
}
