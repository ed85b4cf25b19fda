// Per-row death tests of the worker's, the client's, the broker's and its namespace helper's
// seccomp allowlists (STYLE.md 17): each probe (worker_probes.cc, client_probes.cc,
// broker_probes.cc, helper_probes.cc) runs in its own death-test child, which creates its
// kernel objects, prepares itself as the binary does (the client), loads the
// filter, makes one call and exits. Allowed calls must exit 0, forbidden ones
// must be killed by SIGSYS (the filter's KILL_PROCESS), abort() by SIGABRT.
//
// Sanitizer builds (SLUICE_SANITIZE) run these too: the children end with
// _exit() or a signal, where LeakSanitizer does not run, and the rows that
// install_seccomp() adds for the sanitizer runtime never widen an argument
// that a probe perturbs (checked with gcc 12's libasan).
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include <gtest/gtest.h>

#include "tests/sandbox/filter_harness.h"

namespace sluice::testing {
namespace {

/// Returns the probe's name as the test-name suffix.
std::string probe_name(const ::testing::TestParamInfo<Probe>& info) {
  return info.param.name;
}

/// What sluicectl does to itself just before its filter (client/main.cc);
/// exits kExitFilterFailed when that fails.
void prepare_client() {
  Result<void> prepared = prepare_client_for_seccomp();
  if (!prepared) {
    std::fprintf(stderr, "prepare_client_for_seccomp: %s\n", prepared.error().message.c_str());
    _exit(kExitFilterFailed);
  }
}

/// Runs `probe` in a death-test child under the filter of `rules`, after
/// `prepare` when set, and checks how that child ended.
void expect_probe(const Probe& probe, std::vector<SyscallRule> (*rules)(int),
                  void (*prepare)() = nullptr) {
  if (probe.supported != nullptr && !probe.supported()) {
    GTEST_SKIP() << probe.name << ": not supported by this kernel";
  }
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  switch (probe.expect) {
    case Expect::kAllowed:
      EXPECT_EXIT(run_probe(probe, rules, prepare), ::testing::ExitedWithCode(0), "")
          << probe.name << ": an allowed call was killed or misbehaved (exit " << kExitProbeFailed
          << " = wrong result, " << kExitFilterFailed << " = setup failed)";
      break;
    case Expect::kKilled:
      EXPECT_EXIT(run_probe(probe, rules, prepare), ::testing::KilledBySignal(SIGSYS), "")
          << probe.name << ": a forbidden call was not killed (exit " << kExitNotKilled
          << " = it returned)";
      break;
    case Expect::kAborts:
      EXPECT_EXIT(run_probe(probe, rules, prepare), ::testing::KilledBySignal(SIGABRT), "")
          << probe.name << ": abort() must end with SIGABRT under the filter";
      break;
  }
}

class WorkerFilter : public ::testing::TestWithParam<Probe> {};
class ClientFilter : public ::testing::TestWithParam<Probe> {};
class BrokerFilter : public ::testing::TestWithParam<Probe> {};
class HelperFilter : public ::testing::TestWithParam<Probe> {};
class ReaderFilter : public ::testing::TestWithParam<Probe> {};

TEST_P(WorkerFilter, Probe) {
  expect_probe(GetParam(), worker_seccomp_rules);
}
TEST_P(ClientFilter, Probe) {
  expect_probe(GetParam(), client_seccomp_rules, prepare_client);
}
TEST_P(BrokerFilter, Probe) {
  expect_probe(GetParam(), broker_seccomp_rules);
}
TEST_P(HelperFilter, Probe) {
  expect_probe(GetParam(), helper_seccomp_rules);
}
TEST_P(ReaderFilter, Probe) {
  expect_probe(GetParam(), reader_seccomp_rules);
}

INSTANTIATE_TEST_SUITE_P(Seccomp, WorkerFilter, ::testing::ValuesIn(worker_probes()), probe_name);
INSTANTIATE_TEST_SUITE_P(Seccomp, ClientFilter, ::testing::ValuesIn(client_probes()), probe_name);
INSTANTIATE_TEST_SUITE_P(Seccomp, BrokerFilter, ::testing::ValuesIn(broker_probes()), probe_name);
INSTANTIATE_TEST_SUITE_P(Seccomp, HelperFilter, ::testing::ValuesIn(helper_probes()), probe_name);
INSTANTIATE_TEST_SUITE_P(Seccomp, ReaderFilter, ::testing::ValuesIn(reader_probes()), probe_name);

/// Every probe table holds both verdicts, so a filter that allowed or killed
/// everything could not pass.
TEST(SeccompProbes, TablesHaveBothVerdicts) {
  for (const auto* table :
       {&worker_probes(), &client_probes(), &broker_probes(), &helper_probes(), &reader_probes()}) {
    size_t allowed = 0, killed = 0;
    for (const Probe& p : *table) {
      if (p.expect == Expect::kAllowed) ++allowed;
      if (p.expect == Expect::kKilled) ++killed;
    }
    EXPECT_GT(allowed, 0u);
    EXPECT_GT(killed, 0u);
  }
}

}  // namespace
}  // namespace sluice::testing
