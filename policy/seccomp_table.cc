// Turns a reviewed allowlist table (policy/seccomp_*.cc) into a libseccomp
// filter, loads it, or exports it as PFC text for golden tests and review.
//
// The libseccomp traps this file guards against (see DEPENDENCIES.md):
//  - SCMP_ACT_KILL kills only the thread: the default is SCMP_ACT_KILL_PROCESS;
//  - the bad-architecture action defaults to kill-thread: set to kill-process;
//  - seccomp_syscall_resolve_name() returns __NR_SCMP_ERROR for a misspelt
//    name and a negative pseudo-number for a syscall that does not exist on
//    this architecture; both are errors here, never a silently missing row;
//  - TSYNC is off by default: it is switched on, so a filter loaded after a
//    thread was started still covers every thread.
#include <errno.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <set>
#include <string>

#include "base/log.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "policy/seccomp.h"

namespace sluice {
namespace {

#ifdef SLUICE_SANITIZE
/// Set once install_seccomp() has loaded a filter. Process-wide on purpose:
/// it describes the process, and LeakSanitizer's hook takes no arguments.
bool g_filter_loaded = false;
#endif

/// Deleter so that a filter context is released on every early return.
struct FilterReleaser {
  void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};
using FilterPtr = std::unique_ptr<void, FilterReleaser>;

/// Formats a libseccomp failure: libseccomp returns -errno.
Unexpected seccomp_error(int rc, const std::string& what) {
  int err = rc < 0 ? -rc : rc;
  return SysErr(err, "seccomp: " + what);
}

/// Adds one row to `ctx`. Fails, naming the syscall, when the name is unknown
/// or not a syscall of the native architecture, or when libseccomp refuses the
/// conditions (for example two comparisons of the same argument in one row).
Result<void> add_row(scmp_filter_ctx ctx, const SyscallRule& row) {
  CHECK_MSG(row.name != nullptr && row.reason != nullptr && row.reason[0] != '\0',
            "every seccomp row needs a name and a reason");
  int nr = seccomp_syscall_resolve_name(row.name);
  if (nr == __NR_SCMP_ERROR) {
    return Err(EINVAL, std::string("seccomp: unknown syscall name '") + row.name +
                           "' in the allowlist; fix the table");
  }
  if (nr < 0) {
    // A pseudo-number: libseccomp knows the name, but this architecture has no
    // such syscall (for example "poll" on aarch64). A row that matches nothing
    // would hide a policy mistake, so refuse it.
    return Err(EINVAL, std::string("seccomp: '") + row.name +
                           "' is not a syscall on this architecture; fix the table");
  }
  int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr,
                                  static_cast<unsigned int>(row.conds.size()), row.conds.data());
  if (rc < 0) {
    return seccomp_error(rc, std::string("adding the row for '") + row.name + "' (" +
                                 std::to_string(row.conds.size()) + " conditions)");
  }
  return Ok();
}

}  // namespace

#ifdef SLUICE_SANITIZE
/// LeakSanitizer's hook, consulted when the process exits: its leak check
/// needs ptrace, clone and /proc, which no allowlist grants, so a process
/// under a filter would die of SIGSYS on its way out. Leak checking is off
/// only once a filter is loaded. Sanitizer builds are for tests, and the
/// broker does not pass ASAN_OPTIONS to the worker, so this cannot be left
/// to ASAN_OPTIONS=detect_leaks=0.
extern "C" int __lsan_is_turned_off() {
  return g_filter_loaded ? 1 : 0;
}
#endif

Result<scmp_filter_ctx> build_seccomp_filter(const std::vector<SyscallRule>& rules) {
  FilterPtr ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
  if (!ctx) return Err(ENOMEM, "seccomp: seccomp_init failed (out of memory?)");

  // A syscall made through a foreign ABI (int 0x80 from x86_64) must not slip
  // past a table written for the native one: kill the process, not the thread.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return seccomp_error(rc, "setting the bad-architecture action");
  // Cover every thread that exists when the filter is loaded.
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1);
  if (rc < 0) return seccomp_error(rc, "enabling TSYNC");

  for (const SyscallRule& row : rules) {
    Result<void> added = add_row(ctx.get(), row);
    if (!added) return Err(std::move(added).error());
  }
  return ctx.release();
}

Result<void> install_seccomp(const std::vector<SyscallRule>& rules) {
  std::vector<SyscallRule> all = rules;
  for (SyscallRule& row : sanitizer_seccomp_rules()) all.push_back(std::move(row));

  Result<scmp_filter_ctx> built = build_seccomp_filter(all);
  if (!built) return Err(std::move(built).error());
  FilterPtr ctx(*built);
  // Logged before loading: after it, only the caller's allowlist applies
  // (libseccomp itself still frees its BPF buffer, so every table keeps brk
  // and munmap; the release of `ctx` below needs the same).
  LOG_DEBUG("loading the seccomp allowlist: %zu rows, %zu syscalls", all.size(),
            distinct_syscalls(all));
  int rc = seccomp_load(ctx.get());
  if (rc < 0) return seccomp_error(rc, "loading the filter");
#ifdef SLUICE_SANITIZE
  g_filter_loaded = true;
#endif
  return Ok();
}

Result<std::string> export_seccomp_pfc(const std::vector<SyscallRule>& rules) {
  Result<scmp_filter_ctx> built = build_seccomp_filter(rules);
  if (!built) return Err(std::move(built).error());
  FilterPtr ctx(*built);

  // Only tests and reviewers export, never a sandboxed process, so a memfd
  // (which the allowlists do not grant) is fine here.
  UniqueFd mem(memfd_create("sluice-seccomp-pfc", MFD_CLOEXEC));
  if (!mem.valid()) {
    int err = errno;
    return SysErr(err, "seccomp: memfd_create for the PFC export");
  }
  int rc = seccomp_export_pfc(ctx.get(), mem.get());
  if (rc < 0) return seccomp_error(rc, "exporting PFC");
  if (lseek(mem.get(), 0, SEEK_SET) != 0) {
    int err = errno;
    return SysErr(err, "seccomp: rewinding the PFC export");
  }

  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(mem.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      return SysErr(err, "seccomp: reading the PFC export");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

size_t distinct_syscalls(const std::vector<SyscallRule>& rules) {
  std::set<std::string> names;
  for (const SyscallRule& row : rules) names.insert(row.name);
  return names.size();
}

std::vector<SyscallRule> sanitizer_seccomp_rules() {
#ifdef SLUICE_SANITIZE
  // Only in ASan+UBSan builds, which are for tests. None of these is in the
  // exported (golden) policy, and none widens a row that the death tests
  // probe with a forbidden argument, but ioctl(2, TCGETS), which the client
  // probe tcgets_stderr expects allowed in these builds. Found with strace on gcc 12's libasan:
  // the allocator maps, unmaps and advises memory, spin locks yield,
  // IsAccessibleMemoryRange() probes memory by writing it into a pipe.
  // LeakSanitizer's exit-time check needs ptrace, clone and /proc and cannot
  // be allowed: __lsan_is_turned_off() above turns it off once a filter is
  // loaded. A report from a sandboxed process stops after its first lines
  // (the kind of error, the address, read or write), before the frames.
  std::vector<SyscallRule> rows = {
      {"mmap",
       {arg_flags_within(2, PROT_READ | PROT_WRITE)},
       "sanitizer runtime only: allocator and shadow; still never PROT_EXEC"},
      {"munmap", {}, "sanitizer runtime only: allocator"},
      {"sched_yield", {}, "sanitizer runtime only: spin-lock back-off"},
      {"sigaltstack", {}, "sanitizer runtime only: alternate stack for its fatal-signal handlers"},
      {"getpid", {}, "sanitizer runtime only: report headers"},
      {"gettid", {}, "sanitizer runtime only: report headers, lock owners"},
      {"pipe2", {arg_eq32(1, 0)}, "sanitizer runtime only: IsAccessibleMemoryRange() pipe"},
      {"close", {}, "sanitizer runtime only: closes that pipe"},
      {"exit_group", {}, "sanitizer runtime only: exits with its own status after a report"},
      // Without it the runtime dies of SIGSYS before its report's first line;
      // with it the report names the error and the address, and the process
      // dies of SIGSYS when the runtime opens /proc/self/maps for the frames.
      {"ioctl",
       {arg_eq32(0, 2), arg_eq32(1, TCGETS)},
       "sanitizer runtime only: isatty(2) before a report, to decide on colours"},
  };
  for (int advice : {MADV_DONTNEED, MADV_NOHUGEPAGE, MADV_HUGEPAGE, MADV_DONTDUMP}) {
    rows.push_back({"madvise",
                    {arg_eq32(2, static_cast<uint32_t>(advice))},
                    "sanitizer runtime only: allocator and shadow memory advice"});
  }
  return rows;
#else
  return {};
#endif
}

}  // namespace sluice
