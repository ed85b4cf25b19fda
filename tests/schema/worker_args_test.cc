// The worker's start-up arguments (schema/worker_args.h): to_argv() ->
// parse_worker_args() gives back every field, and the worker refuses every
// value out of its range, every unknown or repeated word and every option
// without its value, each with a one-line message.
#include "schema/worker_args.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

using Argv = std::vector<std::string>;

/// A WorkerArgs with every field away from its default.
WorkerArgs every_field_set() {
  WorkerArgs a;
  a.debug = true;
  a.log_connections = true;
  a.policy_source = "/etc/sluice/policy with space";
  a.udp_flows = 10;
  a.udp_idle_timeout_s = 5;
  a.max_connections = 2;
  a.connect_timeout_s = 3;
  a.pipe_size = 131072;
  a.max_connections_per_rule = 7;
  a.max_connections_per_source = 0;  // off: 0 is a value here, not "absent"
  a.idle_timeout_s = 30;
  // Specs are text: one that looks like an option, one empty, one with spaces.
  a.rules = {{'t', "8080:80"}, {'u', "-q"}, {'T', ""}, {'U', "  1-2 "}, {'t', "none"}};
  return a;
}

/// Parses `argv` (argv[0] included) and returns the error message, or
/// "(accepted)" when it was accepted.
std::string refusal(const Argv& argv) {
  auto r = parse_worker_args(argv);
  return r ? "(accepted)" : r.error().message;
}

/// The worker's argv with `words` after argv[0].
Argv worker(std::initializer_list<std::string> words) {
  Argv argv = {kWorkerProgram};
  argv.insert(argv.end(), words);
  return argv;
}

TEST(WorkerArgs, RoundTripWithEveryFieldSet) {
  const WorkerArgs a = every_field_set();
  const Argv argv = to_argv(a);
  EXPECT_EQ(argv, (Argv{"sluice-worker",
                        "-d",
                        "--log-connections",
                        "--policy-source",
                        "/etc/sluice/policy with space",
                        "--udp-flows",
                        "10",
                        "--udp-idle-timeout",
                        "5",
                        "--max-connections",
                        "2",
                        "--connect-timeout",
                        "3",
                        "--pipe-size",
                        "131072",
                        "--max-connections-per-rule",
                        "7",
                        "--max-connections-per-source",
                        "0",
                        "--idle-timeout",
                        "30",
                        "-t",
                        "8080:80",
                        "-u",
                        "-q",
                        "-T",
                        "",
                        "-U",
                        "  1-2 ",
                        "-t",
                        "none"}));
  auto back = parse_worker_args(argv);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, a);
}

TEST(WorkerArgs, RoundTripQuietAndArgcArgv) {
  WorkerArgs a = every_field_set();
  a.debug = false;
  a.quiet = true;
  const Argv argv = to_argv(a);
  EXPECT_EQ(argv[1], "-q");
  std::vector<const char*> c_argv;
  for (const std::string& word : argv) c_argv.push_back(word.c_str());
  c_argv.push_back(nullptr);
  auto back = parse_worker_args(static_cast<int>(argv.size()), c_argv.data());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, a);
}

TEST(WorkerArgs, DefaultsAreLeftOutAndComeBack) {
  const WorkerArgs defaults;
  EXPECT_EQ(to_argv(defaults), Argv{"sluice-worker"});
  auto back = parse_worker_args(Argv{"sluice-worker"});
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, defaults);
  EXPECT_EQ(back->udp_flows, kUdpFlowsDefault);
  EXPECT_EQ(back->udp_idle_timeout_s, kUdpIdleTimeoutDefaultS);
  EXPECT_EQ(back->max_connections, kTcpConnectionsDefault);
  EXPECT_EQ(back->connect_timeout_s, kConnectTimeoutDefaultS);
  EXPECT_EQ(back->pipe_size, kPipeSizeDefault);
  EXPECT_EQ(back->max_connections_per_rule, 0u);
  EXPECT_EQ(back->max_connections_per_source, kSourceConnectionsDefault);
  EXPECT_EQ(back->idle_timeout_s, 0u);
  EXPECT_TRUE(back->policy_source.empty());
  EXPECT_TRUE(back->rules.empty());
}

TEST(WorkerArgs, EveryLimitRoundTripsAtBothEndsOfItsRange) {
  for (const WorkerLimit& limit : kWorkerLimits) {
    for (uint32_t value : {limit.min, limit.max}) {
      WorkerArgs a;
      a.*limit.field = value;
      auto back = parse_worker_args(to_argv(a));
      ASSERT_TRUE(back.ok()) << limit.option << " " << value << ": " << back.error().message;
      EXPECT_EQ(*back, a) << limit.option << " " << value;
    }
    EXPECT_GE(limit.fallback, limit.min) << limit.option;
    EXPECT_LE(limit.fallback, limit.max) << limit.option;
  }
}

TEST(WorkerArgs, OutOfRangeValuesAreRefusedWithTheirRange) {
  EXPECT_EQ(refusal(worker({"--udp-flows", "0"})),
            "--udp-flows needs a number from 1 to 1048576, not \"0\"");
  EXPECT_EQ(refusal(worker({"--udp-flows", "1048577"})),
            "--udp-flows needs a number from 1 to 1048576, not \"1048577\"");
  EXPECT_EQ(refusal(worker({"--udp-idle-timeout", "0"})),
            "--udp-idle-timeout needs a number from 1 to 86400, not \"0\"");
  EXPECT_EQ(refusal(worker({"--udp-idle-timeout", "86401"})),
            "--udp-idle-timeout needs a number from 1 to 86400, not \"86401\"");
  EXPECT_EQ(refusal(worker({"--max-connections", "0"})),
            "--max-connections needs a number from 1 to 262144, not \"0\"");
  EXPECT_EQ(refusal(worker({"--max-connections", "262145"})),
            "--max-connections needs a number from 1 to 262144, not \"262145\"");
  EXPECT_EQ(refusal(worker({"--connect-timeout", "0"})),
            "--connect-timeout needs a number from 1 to 600, not \"0\"");
  EXPECT_EQ(refusal(worker({"--connect-timeout", "601"})),
            "--connect-timeout needs a number from 1 to 600, not \"601\"");
  EXPECT_EQ(refusal(worker({"--idle-timeout", "604801"})),
            "--idle-timeout needs a number from 0 to 604800, not \"604801\"");
  EXPECT_EQ(refusal(worker({"--max-connections-per-source", "262145"})),
            "--max-connections-per-source needs a number from 0 to 262144, not \"262145\"");
  EXPECT_EQ(refusal(worker({"--pipe-size", "4095"})),
            "--pipe-size needs a number from 4096 to 1048576, not \"4095\"");
  EXPECT_EQ(refusal(worker({"--pipe-size", "1048577"})),
            "--pipe-size needs a number from 4096 to 1048576, not \"1048577\"");
}

TEST(WorkerArgs, NonNumbersAreRefusedForEveryLimit) {
  // Not decimal digits alone, or too long for any range: refused for each
  // limit, with the option and the word in one line.
  const std::vector<std::string> bad = {
      "", "-1", "+5", " 5", "5 ", "12x", "0x10", "1e3", "99999999999999999999999", "４"};
  for (const WorkerLimit& limit : kWorkerLimits) {
    std::string below = limit.min > 0 ? std::to_string(limit.min - 1) : "-1";
    std::string above = std::to_string(uint64_t{limit.max} + 1);
    for (const std::string& value : bad) {
      const std::string message = refusal(worker({limit.option, value}));
      EXPECT_EQ(message, worker_limit_error(limit, value))
          << limit.option << " \"" << value << "\"";
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
    EXPECT_EQ(refusal(worker({limit.option, below})), worker_limit_error(limit, below));
    EXPECT_EQ(refusal(worker({limit.option, above})), worker_limit_error(limit, above));
  }
  // Bytes that are not printable are escaped and cut, so the line stays one line.
  EXPECT_EQ(refusal(worker({"--udp-flows", "1\n2"})),
            "--udp-flows needs a number from 1 to 1048576, not \"1\\x0a2\"");
  const std::string message = refusal(worker({"--pipe-size", std::string(500, '9')}));
  EXPECT_LT(message.size(), 200u) << message;
}

TEST(WorkerArgs, OptionsWithoutTheirValueAreRefused) {
  for (const WorkerLimit& limit : kWorkerLimits) {
    EXPECT_EQ(refusal(worker({limit.option})),
              "option " + std::string(limit.option) + " needs a value");
  }
  EXPECT_EQ(refusal(worker({"--policy-source"})), "option --policy-source needs a PATH");
  EXPECT_EQ(refusal(worker({"--policy-source", ""})),
            "option --policy-source needs a non-empty PATH");
  for (const char* rule : {"-t", "-u", "-T", "-U"}) {
    EXPECT_EQ(refusal(worker({"-t", "80", rule})), "option " + std::string(rule) + " needs a SPEC");
  }
}

TEST(WorkerArgs, RepeatedOptionsAndBothLogLevelsAreRefused) {
  EXPECT_EQ(refusal(worker({"--udp-flows", "3", "--udp-flows", "4"})),
            "option --udp-flows given twice");
  EXPECT_EQ(refusal(worker({"--pipe-size", "8192", "-t", "80", "--pipe-size", "8192"})),
            "option --pipe-size given twice");
  EXPECT_EQ(refusal(worker({"--policy-source", "/a", "--policy-source", "/b"})),
            "option --policy-source given twice");
  EXPECT_EQ(refusal(worker({"-d", "-d"})), "option -d given twice");
  EXPECT_EQ(refusal(worker({"-q", "-q"})), "option -q given twice");
  EXPECT_EQ(refusal(worker({"-d", "-q"})), "-d and -q exclude each other");
  EXPECT_EQ(refusal(worker({"--log-connections", "--log-connections"})),
            "option --log-connections given twice");
  // Rule options repeat: they are the rule list.
  auto r = parse_worker_args(worker({"-t", "80", "-t", "81", "-u", "53"}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->rules, (std::vector<WorkerRuleArg>{{'t', "80"}, {'t', "81"}, {'u', "53"}}));
}

TEST(WorkerArgs, UnknownWordsAreRefused) {
  for (const std::string word :
       {"--udp-flows=5", "-x", "-tu", "--policy", "-c", "stray", "", "--", "-", "--help"}) {
    const std::string message = refusal(worker({word, "1"}));
    EXPECT_EQ(message.rfind("unexpected argument \"" + word +
                                "\"; sluice-worker is started by "
                                "sluiced",
                            0),
              0u)
        << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  EXPECT_EQ(refusal(worker({"\x1b[31m"})).rfind("unexpected argument \"\\x1b[31m\"", 0), 0u);
}

TEST(WorkerArgs, CheckRefusesWhatNoArgvCanCarry) {
  EXPECT_TRUE(check_worker_args(WorkerArgs{}).ok());
  EXPECT_TRUE(check_worker_args(every_field_set()).ok());
  for (const WorkerLimit& limit : kWorkerLimits) {
    WorkerArgs a;
    a.*limit.field = limit.max + 1;
    auto r = check_worker_args(a);
    ASSERT_FALSE(r.ok()) << limit.option;
    EXPECT_EQ(r.error().message, worker_limit_error(limit, std::to_string(limit.max + 1)));
    a.*limit.field = limit.min - 1;
    EXPECT_FALSE(check_worker_args(a).ok()) << limit.option;
  }
  WorkerArgs a;
  a.debug = a.quiet = true;
  EXPECT_EQ(check_worker_args(a).error().message, "-d and -q exclude each other");
  a = WorkerArgs{};
  a.rules = {{'x', "80"}};
  EXPECT_EQ(check_worker_args(a).error().message, "rule option \"x\" is none of -t, -u, -T, -U");
  a.rules = {{'\0', "80"}};
  EXPECT_EQ(check_worker_args(a).error().message,
            "rule option \"\\x00\" is none of -t, -u, -T, -U");
  a.rules = {{'u', std::string("5\0"
                               "3",
                               2)}};
  EXPECT_EQ(check_worker_args(a).error().message, "the spec of rule option -u holds a NUL byte");
  a.rules.clear();
  a.policy_source = std::string("/a\0b", 4);
  EXPECT_EQ(check_worker_args(a).error().message, "--policy-source holds a NUL byte");
}

TEST(WorkerArgsDeathTest, ToArgvAbortsOnAValueTheBrokerShouldHaveRefused) {
  WorkerArgs a;
  a.pipe_size = kPipeSizeMin - 1;
  EXPECT_DEATH(to_argv(a), "CHECK failed.*--pipe-size needs a number from 4096");
  a = WorkerArgs{};
  a.rules = {{'x', "80"}};
  EXPECT_DEATH(to_argv(a), "none of -t, -u, -T, -U");
}

}  // namespace
}  // namespace sluice
