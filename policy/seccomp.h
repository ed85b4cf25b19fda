// Seccomp allowlists of the three binaries, as reviewed tables: one row per
// syscall with its argument conditions and the reason it is needed. Default
// action KILL_PROCESS, also for a foreign architecture. An unknown syscall
// name is an error, never silently dropped.
#pragma once

#include <seccomp.h>

#include <string>
#include <vector>

#include "base/result.h"

namespace sluice {

/// One row of an allowlist. Rows for the same syscall are ORed; the conditions
/// inside one row are ANDed (libseccomp semantics).
struct SyscallRule {
  const char* name;                 // syscall name, resolved for the native arch
  std::vector<scmp_arg_cmp> conds;  // argument conditions, empty for none
  const char* reason;               // why the binary needs it
};

/// The worker's allowlist. `self_pid` restricts signal syscalls (abort) to the
/// worker itself.
std::vector<SyscallRule> worker_seccomp_rules(int self_pid);
/// sluicectl's allowlist, loaded once its control socket is connected.
std::vector<SyscallRule> client_seccomp_rules(int self_pid);
/// sluiced's allowlist, loaded after start-up.
std::vector<SyscallRule> broker_seccomp_rules(int self_pid);

/// Builds a filter from `rules` (KILL_PROCESS default and bad-arch action).
/// Fails with the syscall name when one is unknown. The caller owns the
/// returned context and frees it with seccomp_release().
Result<scmp_filter_ctx> build_seccomp_filter(const std::vector<SyscallRule>& rules);

/// Builds and loads a filter (needs NO_NEW_PRIVS already set, or CAP_SYS_ADMIN).
Result<void> install_seccomp(const std::vector<SyscallRule>& rules);

/// Returns the filter's human-readable PFC export, for golden tests and review.
Result<std::string> export_seccomp_pfc(const std::vector<SyscallRule>& rules);

}  // namespace sluice
