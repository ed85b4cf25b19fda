// The worker's start-up arguments (see worker_args.h): to_argv() for the
// broker, parse_worker_args() for the worker, one range check for both.
#include "schema/worker_args.h"

#include <iterator>

#include "base/check.h"
#include "base/strings.h"

namespace sluice {
namespace {

/// Limit: bytes of a refused argv word quoted in a message. Enough to
/// recognise it, short enough to keep the message on one line.
constexpr size_t kQuotedWordMax = 64;

/// The number of numeric limits in kWorkerLimits.
constexpr size_t kLimitCount = std::size(kWorkerLimits);

/// Returns the index in kWorkerLimits of the limit whose option word is
/// `word`, or kLimitCount when there is none.
size_t find_limit(std::string_view word) noexcept {
  for (size_t i = 0; i < kLimitCount; ++i) {
    if (word == kWorkerLimits[i].option) return i;
  }
  return kLimitCount;
}

/// Returns the letter of the rule option `word` ("-t" gives 't'), or '\0'
/// when `word` is not one of -t, -u, -T, -U.
char rule_letter(std::string_view word) noexcept {
  if (word.size() != 2 || word[0] != '-') return '\0';
  return kWorkerRuleOptions.find(word[1]) == std::string_view::npos ? '\0' : word[1];
}

/// Returns true when `text` holds a NUL byte, which no argv string can carry.
bool has_nul(std::string_view text) noexcept {
  return text.find('\0') != std::string_view::npos;
}

/// Returns the message for an option word given a second time.
std::string twice(std::string_view option) {
  return "option " + std::string(option) + " given twice";
}

/// Parses `text` as a value of `limit`: decimal digits only, within
/// [limit.min, limit.max]. Fails with worker_limit_error().
Result<uint32_t> parse_limit(const WorkerLimit& limit, const std::string& text) {
  unsigned long value = 0;
  if (!parse_uint(text, limit.max, &value) || value < limit.min) {
    return Err(worker_limit_error(limit, text));
  }
  return static_cast<uint32_t>(value);
}

}  // namespace

std::string worker_limit_error(const WorkerLimit& limit, std::string_view value) {
  return std::string(limit.option) + " needs a number from " + std::to_string(limit.min) + " to " +
         std::to_string(limit.max) + ", not \"" + sanitize(value, kQuotedWordMax) + "\"";
}

Result<void> check_worker_args(const WorkerArgs& args) {
  if (args.debug && args.quiet) {
    return Err(std::string(kWorkerOptDebug) + " and " + kWorkerOptQuiet + " exclude each other");
  }
  if (has_nul(args.policy_source)) {
    return Err(std::string(kWorkerOptPolicySource) + " holds a NUL byte");
  }
  for (const WorkerLimit& limit : kWorkerLimits) {
    const uint32_t value = args.*limit.field;
    if (value < limit.min || value > limit.max) {
      return Err(worker_limit_error(limit, std::to_string(value)));
    }
  }
  for (const WorkerRuleArg& rule : args.rules) {
    if (rule_letter(std::string{'-', rule.option}) == '\0') {
      return Err("rule option \"" + sanitize(std::string_view(&rule.option, 1)) +
                 "\" is none of -t, -u, -T, -U");
    }
    if (has_nul(rule.spec)) {
      return Err("the spec of rule option -" + std::string(1, rule.option) + " holds a NUL byte");
    }
  }
  return Ok();
}

std::vector<std::string> to_argv(const WorkerArgs& args) {
  auto checked = check_worker_args(args);
  CHECK_MSG(checked.ok(), checked.error().message.c_str());  // msg evaluated on failure only
  std::vector<std::string> argv = {kWorkerProgram};
  if (args.debug) argv.push_back(kWorkerOptDebug);
  if (args.quiet) argv.push_back(kWorkerOptQuiet);
  if (args.target_netns) argv.push_back(kWorkerOptTargetNetns);
  if (args.pesto) argv.push_back(kWorkerOptPesto);
  if (args.log_connections) argv.push_back(kWorkerOptLogConnections);
  if (!args.policy_source.empty()) {
    argv.push_back(kWorkerOptPolicySource);
    argv.push_back(args.policy_source);
  }
  for (const WorkerLimit& limit : kWorkerLimits) {
    const uint32_t value = args.*limit.field;
    if (value == limit.fallback) continue;  // the worker's default is this same constant
    argv.push_back(limit.option);
    argv.push_back(std::to_string(value));
  }
  for (const WorkerRuleArg& rule : args.rules) {
    argv.push_back(std::string{'-', rule.option});
    argv.push_back(rule.spec);
  }
  return argv;
}

Result<WorkerArgs> parse_worker_args(const std::vector<std::string>& argv) {
  WorkerArgs args;
  bool limit_seen[kLimitCount] = {};
  bool policy_seen = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    const bool has_value = i + 1 < argv.size();
    if (word == kWorkerOptDebug || word == kWorkerOptQuiet || word == kWorkerOptTargetNetns ||
        word == kWorkerOptPesto || word == kWorkerOptLogConnections) {
      bool& flag = word == kWorkerOptDebug         ? args.debug
                   : word == kWorkerOptQuiet       ? args.quiet
                   : word == kWorkerOptTargetNetns ? args.target_netns
                   : word == kWorkerOptPesto       ? args.pesto
                                                   : args.log_connections;
      if (flag) return Err(twice(word));
      flag = true;
    } else if (word == kWorkerOptPolicySource) {
      if (!has_value) return Err("option " + word + " needs a PATH");
      if (policy_seen) return Err(twice(word));
      policy_seen = true;
      args.policy_source = argv[++i];
      if (args.policy_source.empty()) return Err("option " + word + " needs a non-empty PATH");
    } else if (const size_t l = find_limit(word); l < kLimitCount) {
      if (!has_value) return Err("option " + word + " needs a value");
      if (limit_seen[l]) return Err(twice(word));
      limit_seen[l] = true;
      auto value = parse_limit(kWorkerLimits[l], argv[++i]);
      if (!value) return Err(value.error());
      args.*kWorkerLimits[l].field = *value;
    } else if (const char letter = rule_letter(word); letter != '\0') {
      if (!has_value) return Err("option " + word + " needs a SPEC");
      args.rules.push_back(WorkerRuleArg{letter, argv[++i]});
    } else {
      return Err("unexpected argument \"" + sanitize(word, kQuotedWordMax) + "\"; " +
                 kWorkerProgram +
                 " is started by sluiced, which passes it -d/-q, --target-netns, --policy-source, "
                 "the UDP and TCP limits, the worker's ids and the rule options");
    }
  }
  if (auto checked = check_worker_args(args); !checked) return Err(checked.error());
  return args;
}

Result<WorkerArgs> parse_worker_args(int argc, const char* const* argv) {
  return parse_worker_args(std::vector<std::string>(argv, argv + (argc > 0 ? argc : 0)));
}

}  // namespace sluice
