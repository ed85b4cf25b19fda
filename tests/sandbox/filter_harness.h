// Shared pieces of the seccomp death tests: loading a filter inside a
// death-test child, the tables of probes, and the kernel objects the probes
// act on (created before the filter, as the real binaries do).
#pragma once

#include <sys/types.h>

#include <ostream>
#include <string>
#include <vector>

#include "policy/seccomp.h"

namespace sluice::testing {

/// Exit code of a death-test child whose filter could not be loaded: neither 0
/// nor a signal, so both kinds of expectation fail visibly.
inline constexpr int kExitFilterFailed = 97;
/// Exit code of an allowed probe whose call did not behave as expected.
inline constexpr int kExitProbeFailed = 3;
/// Exit code of a forbidden probe that was not killed.
inline constexpr int kExitNotKilled = 4;

/// What a probe expects from the filter.
enum class Expect {
  kAllowed,  // the call runs and the child exits 0
  kKilled,   // SIGSYS: the filter's KILL_PROCESS
  kAborts,   // SIGABRT: abort() works under the filter
};

/// Kernel objects created before the filter is loaded. Raw fds rather than
/// UniqueFd on purpose: they live in a death-test child that ends in _exit()
/// or a signal, and some probes close them.
struct ProbeFds {
  int tcp4 = -1;          // AF_INET SOCK_STREAM, unbound, non-blocking
  int tcp6 = -1;          // AF_INET6 SOCK_STREAM, unbound
  int udp4 = -1;          // AF_INET SOCK_DGRAM
  int udp6 = -1;          // AF_INET6 SOCK_DGRAM
  int listener = -1;      // AF_INET SOCK_STREAM on 127.0.0.1:<ephemeral>, listening, non-blocking
  int udp_listener = -1;  // AF_INET SOCK_DGRAM on 127.0.0.1:<ephemeral>, IP_PKTINFO on,
                          // non-blocking: a UDP listener as the broker opens it
  int stream[2] = {-1, -1};      // AF_UNIX SOCK_STREAM pair
  int dgram[2] = {-1, -1};       // AF_UNIX SOCK_DGRAM pair
  int pipe_r = -1, pipe_w = -1;  // non-blocking pipe
  int epoll = -1;                // epoll fd
  void* page = nullptr;          // one anonymous RW page
  // kSetupBrokerFds: the broker's fixed descriptors (policy/seccomp_broker.h)
  // hold what sluiced keeps there: kChannel a SOCK_SEQPACKET end with one
  // message queued, kSignal a signalfd with SIGUSR1 pending, kWorker the
  // pidfd of `child`, kControlDir an O_PATH fd of "/".
  int channel_peer = -1;  // the other end of kChannel (the "worker"), or of
                          // helper_fd::kChannel (kSetupHelperFds: "sluiced")
  pid_t child = -1;       // a child that waits to be killed; it dies with us
  // kSetupBrokerFds also: kHelperChannel a SOCK_SEQPACKET end with one answer
  // queued, kHelper the pidfd of `helper_child`, kNotify a connected
  // SOCK_DGRAM end.
  int helper_peer = -1;     // the other end of kHelperChannel (the "helper")
  int reader_peer = -1;     // the other end of kPolicyReader (the "policy reader")
  int notify_peer = -1;     // the other end of kNotify, a SOCK_DGRAM pair (the "service manager")
  pid_t helper_child = -1;  // a second child that waits to be killed
  // kSetupBrokerFds also: kLauncherChannel a SOCK_SEQPACKET end with one
  // answer queued, kLauncher the pidfd of `launcher_child`, kStateStaging a
  // sealed memfd holding "bind allow * * *\n".
  int launcher_peer = -1;     // the other end of kLauncherChannel (the "launcher")
  pid_t launcher_child = -1;  // a third child that waits to be killed
};

/// A probe of a call the filter must forbid: it makes `call`, which must
/// not return (the filter kills the process); if it does, the probe
/// returns false and the child exits kExitNotKilled.
#define FORBIDDEN(call)                               \
  +[](const ::sluice::testing::ProbeFds& f) -> bool { \
    (void)f;                                          \
    [[maybe_unused]] auto forbidden_call = (call);    \
    return false;                                     \
  }

/// A pid that never exists (above the kernel's PID_MAX_LIMIT of 2^22), for
/// probes that signal "someone else": should the filter wrongly allow the
/// call, it fails with ESRCH instead of hitting a real process.
inline constexpr int kNoSuchPid = 0x7FFFFFFF;

/// One probe: a call made after the filter is loaded. `run` returns true when
/// an allowed call behaved as expected; for a forbidden call it is never
/// expected to return.
struct Probe {
  const char* name;  // test-name suffix: letters, digits, underscores
  Expect expect;
  bool (*run)(const ProbeFds& fds);
  unsigned setup = 0;             // kSetup* bits: what to prepare before the filter
  bool (*supported)() = nullptr;  // when set and false, the test is skipped
};

/// Returns `probes` followed by the probes of the futex rows that the worker
/// and client allowlists share: process-private wait and wake pass, a shared
/// wake and the requeue and PI operations die.
std::vector<Probe> with_futex_probes(std::vector<Probe> probes);

/// Probe::setup bits.
inline constexpr unsigned kSetupAbortHandler = 1u << 0;   // a SIGABRT handler that returns
inline constexpr unsigned kSetupStdoutDevNull = 1u << 1;  // stdout is /dev/null
inline constexpr unsigned kSetupBrokerFds = 1u << 2;      // see ProbeFds::channel_peer
inline constexpr unsigned kSetupAuditFd = 1u << 3;        // fd 5: an O_APPEND file with a line
/// fds 16 to 23 (wire::kWorkerFdScanFirst..kWorkerFdScanEnd): /proc/self/net
/// tables, as the worker (16-19) and sluiced (20-23) put them there for
/// auto-scan; fds 15 and 24: other readable files, just outside that block.
inline constexpr unsigned kSetupScanFds = 1u << 4;
inline constexpr unsigned kSetupHelperFds = 1u << 5;  // see ProbeFds::channel_peer

/// True once the kSetupAbortHandler handler has run.
bool abort_handler_ran();

/// Prints a probe as its name (gtest's parameter printer).
inline void PrintTo(const Probe& probe, std::ostream* os) {
  *os << probe.name;
}

/// Creates ProbeFds and what `setup` asks for, or exits kExitFilterFailed.
/// Runs in the death-test child, before the filter.
ProbeFds make_probe_fds(unsigned setup);

/// In a death-test child: RLIMIT_CORE 0, not dumpable, NO_NEW_PRIVS, then
/// install_seccomp(rules). Exits kExitFilterFailed, with the reason on
/// stderr, if any step fails.
void load_filter_or_exit(const std::vector<SyscallRule>& rules);

/// True when this kernel runs i386 syscalls (int 0x80) from a 64-bit
/// process (CONFIG_IA32_EMULATION, not disabled with ia32_emulation=0).
bool ia32_syscalls_work();

/// The whole death-test statement: fds, `prepare` (when not null: what the
/// binary does to itself just before its filter), filter, probe, exit code.
[[noreturn]] void run_probe(const Probe& probe, std::vector<SyscallRule> (*rules)(int),
                            void (*prepare)() = nullptr);

/// Probe tables, defined in worker_probes.cc, client_probes.cc and
/// broker_probes.cc (sluiced's) and helper_probes.cc (its namespace helper's).
const std::vector<Probe>& worker_probes();
const std::vector<Probe>& client_probes();
const std::vector<Probe>& broker_probes();
const std::vector<Probe>& helper_probes();
/// The policy reader's, defined in reader_probes.cc.
const std::vector<Probe>& reader_probes();

}  // namespace sluice::testing
