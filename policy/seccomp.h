// Seccomp allowlists of the three binaries, as reviewed tables: one row per
// syscall with its argument conditions and the reason it is needed. Default
// action KILL_PROCESS, also for a foreign architecture. An unknown syscall
// name is an error, never silently dropped.
#pragma once

#include <seccomp.h>

#include <cstdint>
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

/// Argument condition: the low 32 bits of argument `arg` equal `value`. Every
/// int-sized argument is compared this way (STYLE.md 10): the kernel ignores
/// the upper half, and callers may leave it sign-extended (AT_FDCWD) or dirty.
inline scmp_arg_cmp arg_eq32(unsigned arg, uint32_t value) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, value};
}

/// Argument condition: (argument `arg` & `mask` & 0xFFFFFFFF) == `value`. Used
/// for a field inside a flag word, for example the socket type without
/// SOCK_NONBLOCK and SOCK_CLOEXEC.
inline scmp_arg_cmp arg_masked_eq32(unsigned arg, uint32_t mask, uint32_t value) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, mask, value};
}

/// Argument condition: the whole 64-bit argument `arg` equals `value`. For
/// pointers, where only NULL is allowed (recvmmsg's timeout).
inline scmp_arg_cmp arg_eq64(unsigned arg, uint64_t value) {
  return scmp_arg_cmp{arg, SCMP_CMP_EQ, value, 0};
}

/// Argument condition: the 32-bit flag word `arg` has no bit outside `allowed`
/// (any subset of `allowed`, including none, passes).
inline scmp_arg_cmp arg_flags_within(unsigned arg, uint32_t allowed) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, ~allowed & 0xFFFFFFFFu, 0};
}

/// The worker's allowlist. `self_pid` restricts signal syscalls (abort) to the
/// worker itself.
std::vector<SyscallRule> worker_seccomp_rules(int self_pid);
/// sluicectl's allowlist, loaded once its control socket is connected and
/// after prepare_client_for_seccomp(). `self_pid` restricts tgkill (abort) to
/// the client itself.
std::vector<SyscallRule> client_seccomp_rules(int self_pid);
/// The fixed number `sluicectl --verify-audit` moves the audit log onto
/// before its filter: the one descriptor verifier_seccomp_rules() reads.
inline constexpr int kVerifierAuditFd = 9;
/// `sluicectl --verify-audit`'s allowlist: client_seccomp_rules() and `read`
/// of kVerifierAuditFd only. The log holds what a worker wrote, and an
/// administrator runs the check, often as root: a flaw in its parser then
/// finds no open, socket, exec or write beyond stdout and stderr.
std::vector<SyscallRule> verifier_seccomp_rules(int self_pid);
/// Puts the process into the state client_seccomp_rules() assumes; call it
/// just before the filter is loaded. It gives stdout its buffer and stderr its
/// unbuffered mode (stdio then never fstats them or asks for TCGETS), and turns
/// off malloc's own mmap chunks (realloc then never needs mremap). Fails with
/// the step that failed.
Result<void> prepare_client_for_seccomp();
/// sluiced's allowlist, loaded after start-up.
std::vector<SyscallRule> broker_seccomp_rules(int self_pid);
/// The allowlist of sluiced's namespace helper (broker/namespace_helper.h),
/// loaded once it runs inside the target namespace: its channel, its log and
/// the listener factory. `self_pid` restricts tgkill (abort) to itself.
std::vector<SyscallRule> helper_seccomp_rules(int self_pid);

/// The allowlist of sluiced's policy reader (broker/policy_reader.h), loaded
/// by its working child before the first request: broad, because NSS modules
/// choose their own files and daemons, but no write, exec, process, signal
/// or network (policy/seccomp_reader.cc). `self_pid` restricts tgkill
/// (abort) to itself.
std::vector<SyscallRule> reader_seccomp_rules(int self_pid);

/// Builds a filter from `rules` (KILL_PROCESS default and bad-arch action).
/// Fails with the syscall name when one is unknown. The caller owns the
/// returned context and frees it with seccomp_release().
Result<scmp_filter_ctx> build_seccomp_filter(const std::vector<SyscallRule>& rules);

/// Builds and loads a filter (needs NO_NEW_PRIVS already set, or CAP_SYS_ADMIN;
/// libseccomp also sets NO_NEW_PRIVS itself on load). The filter applies to
/// every thread (TSYNC). In sanitizer builds (SLUICE_SANITIZE) the rows of
/// sanitizer_seccomp_rules() are added; the exported, reviewed policy never
/// contains them. Fails with the libseccomp errno.
Result<void> install_seccomp(const std::vector<SyscallRule>& rules);

/// Rows that only the ASan/UBSan runtime needs (empty unless SLUICE_SANITIZE).
/// Sanitizer builds are for tests. LeakSanitizer's exit-time check (ptrace,
/// clone, /proc) cannot run under any allowlist, so in those builds
/// seccomp_table.cc defines __lsan_is_turned_off(), which turns leak checking
/// off once install_seccomp() has loaded a filter.
std::vector<SyscallRule> sanitizer_seccomp_rules();

/// Returns the filter's human-readable PFC export, for golden tests and review.
/// Fails like build_seccomp_filter(), or with the errno of the export. Uses
/// memfd_create, so call it outside any sandbox (tests, review tooling).
Result<std::string> export_seccomp_pfc(const std::vector<SyscallRule>& rules);

/// Returns the number of distinct syscall names in `rules` (several rows may
/// allow one syscall with different arguments). Never fails.
size_t distinct_syscalls(const std::vector<SyscallRule>& rules);

}  // namespace sluice
