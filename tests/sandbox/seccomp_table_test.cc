// The allowlist tables themselves: golden PFC exports (every policy change
// shows up as a reviewable diff), unknown or foreign syscall names fail the
// build of a filter, every row has a reason, the forbidden syscalls stay out,
// and the tables stay within their size budgets.
//
// To accept an intended policy change, regenerate the golden files and
// review the diff in git:
//   SLUICE_UPDATE_GOLDEN=1 ./sandbox_seccomp_table_test --gtest_filter='SeccompGolden.*'
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "policy/seccomp.h"

namespace sluice {
namespace {

/// The pid baked into the golden exports (tgkill is restricted to it).
constexpr int kGoldenPid = 4242;

/// Splits text into lines (without the newlines).
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// A line diff (longest common subsequence): "-" lines are only in `want`,
/// "+" lines only in `got`, with line numbers of `want`. Small inputs only.
std::string line_diff(const std::string& want, const std::string& got) {
  std::vector<std::string> a = lines_of(want), b = lines_of(got);
  std::vector<std::vector<int>> lcs(a.size() + 1, std::vector<int>(b.size() + 1, 0));
  for (size_t i = a.size(); i-- > 0;) {
    for (size_t j = b.size(); j-- > 0;) {
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  std::ostringstream out;
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (i < a.size() && j < b.size() && a[i] == b[j]) {
      ++i, ++j;
    } else if (j < b.size() && (i == a.size() || lcs[i][j + 1] >= lcs[i + 1][j])) {
      out << "@" << i + 1 << " + " << b[j] << "\n";
      ++j;
    } else {
      out << "@" << i + 1 << " - " << a[i] << "\n";
      ++i;
    }
  }
  return out.str();
}

/// Reads a whole file; returns false when it cannot be opened.
bool read_file(const std::string& path, std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buf;
  buf << in.rdbuf();
  *text = buf.str();
  return true;
}

/// Compares the PFC export of `rules` with golden/`file`, or rewrites the
/// golden file when SLUICE_UPDATE_GOLDEN=1.
void check_golden(const std::vector<SyscallRule>& rules, const std::string& file) {
  Result<std::string> pfc = export_seccomp_pfc(rules);
  ASSERT_TRUE(pfc.ok()) << pfc.error().message;
  const std::string path = std::string(SLUICE_GOLDEN_DIR) + "/" + file;
  const char* update = std::getenv("SLUICE_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << *pfc;
    ASSERT_TRUE(out.good()) << "cannot write " << path;
    std::cout << "rewrote " << path << "; review the change with git diff\n";
    return;
  }
  std::string want;
  ASSERT_TRUE(read_file(path, &want))
      << "missing golden file " << path << "; create it with SLUICE_UPDATE_GOLDEN=1";
  EXPECT_TRUE(want == *pfc)
      << "the exported seccomp policy differs from " << path << " (- golden, + now):\n"
      << line_diff(want, *pfc)
      << "If the change is intended, regenerate and review it:\n  SLUICE_UPDATE_GOLDEN=1 "
      << ::testing::internal::GetArgvs()[0] << " --gtest_filter='SeccompGolden.*'\n"
      << "(the export also depends on the libseccomp version: 2.5.4 on Debian 12)";
}

TEST(SeccompGolden, Worker) {
  check_golden(worker_seccomp_rules(kGoldenPid), "worker.pfc");
}
TEST(SeccompGolden, Client) {
  check_golden(client_seccomp_rules(kGoldenPid), "client.pfc");
}
TEST(SeccompGolden, Verifier) {
  check_golden(verifier_seccomp_rules(kGoldenPid), "verifier.pfc");
}
TEST(SeccompGolden, Broker) {
  check_golden(broker_seccomp_rules(kGoldenPid), "broker.pfc");
}

TEST(SeccompGolden, Helper) {
  check_golden(helper_seccomp_rules(kGoldenPid), "helper.pfc");
}

TEST(SeccompGolden, Reader) {
  check_golden(reader_seccomp_rules(kGoldenPid), "reader.pfc");
}

TEST(SeccompGolden, DiffShowsChangedLines) {
  EXPECT_EQ(line_diff("a\nb\nc\n", "a\nB\nc\nd\n"), "@2 + B\n@2 - b\n@4 + d\n");
}

TEST(SeccompTable, UnknownSyscallNameFails) {
  Result<scmp_filter_ctx> built =
      build_seccomp_filter({{"read", {}, "ok"}, {"no_such_syscall", {}, "typo"}});
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.error().message.find("no_such_syscall"), std::string::npos)
      << built.error().message;
  Result<std::string> pfc = export_seccomp_pfc({{"no_such_syscall", {}, "typo"}});
  ASSERT_FALSE(pfc.ok());
  EXPECT_NE(pfc.error().message.find("no_such_syscall"), std::string::npos);
}

#if defined(__x86_64__)
TEST(SeccompTable, ForeignArchitectureSyscallFails) {
  // libseccomp knows these names but x86_64 has no such syscall; it would
  // otherwise add a row that never matches.
  for (const char* name : {"socketcall", "mmap2", "fstatat64"}) {
    Result<scmp_filter_ctx> built = build_seccomp_filter({{name, {}, "not on x86_64"}});
    ASSERT_FALSE(built.ok()) << name;
    EXPECT_NE(built.error().message.find(name), std::string::npos) << built.error().message;
  }
}
#endif

TEST(SeccompTable, TwoComparisonsOfOneArgumentFail) {
  Result<scmp_filter_ctx> built = build_seccomp_filter(
      {{"fcntl", {arg_eq32(1, 1), arg_flags_within(1, 3)}, "libseccomp 2.5 refuses this"}});
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.error().message.find("fcntl"), std::string::npos) << built.error().message;
}

TEST(SeccompTable, ExportKillsProcessByDefaultAndOnBadArch) {
  Result<std::string> pfc = export_seccomp_pfc({{"read", {}, "test"}});
  ASSERT_TRUE(pfc.ok()) << pfc.error().message;
  EXPECT_NE(pfc->find("# default action\n  action KILL_PROCESS;"), std::string::npos) << *pfc;
  EXPECT_NE(pfc->find("# invalid architecture action\naction KILL_PROCESS;"), std::string::npos)
      << *pfc;
}

TEST(SeccompTable, ArgumentHelpersMaskTo32Bits) {
  scmp_arg_cmp eq = arg_eq32(2, 7);
  EXPECT_EQ(eq.arg, 2u);
  EXPECT_EQ(eq.op, SCMP_CMP_MASKED_EQ);
  EXPECT_EQ(eq.datum_a, 0xFFFFFFFFu);
  EXPECT_EQ(eq.datum_b, 7u);
  scmp_arg_cmp within = arg_flags_within(3, 0x800 | 0x80000);
  EXPECT_EQ(within.datum_a, 0xFFFFFFFFu & ~0x80800u);
  EXPECT_EQ(within.datum_b, 0u);
}

/// Checks the invariants every table must keep.
void check_table(const std::vector<SyscallRule>& rules, size_t max_syscalls, const char* which) {
  for (const SyscallRule& row : rules) {
    ASSERT_NE(row.name, nullptr);
    ASSERT_NE(row.reason, nullptr) << row.name;
    EXPECT_GT(std::string(row.reason).size(), 5u) << which << ": " << row.name << " needs a reason";
    EXPECT_GE(seccomp_syscall_resolve_name(row.name), 0) << which << ": " << row.name;
  }
  size_t count = distinct_syscalls(rules);
  std::cout << which << ": " << count << " syscalls in " << rules.size() << " rows\n";
  EXPECT_LE(count, max_syscalls) << which << " allowlist grew; justify each addition";
  Result<scmp_filter_ctx> built = build_seccomp_filter(rules);
  ASSERT_TRUE(built.ok()) << built.error().message;
  seccomp_release(*built);
}

TEST(SeccompTable, WorkerTable) {
  std::vector<SyscallRule> rules = worker_seccomp_rules(kGoldenPid);
  check_table(rules, 45, "worker");
  std::set<std::string> names;
  for (const SyscallRule& row : rules) names.insert(row.name);
  // DESIGN.md "Sandbox": no bind or listen (the broker opens listeners), no
  // open, exec, ptrace, fork, namespaces, mounts, ioctl or prctl.
  for (const char* forbidden :
       {"bind", "listen", "open", "openat", "openat2", "creat", "execve", "execveat", "ptrace",
        "clone", "clone3", "fork", "vfork", "unshare", "setns", "mount", "umount2", "pivot_root",
        "chroot", "ioctl", "prctl", "epoll_create1", "socketpair", "kill", "process_vm_readv",
        // memfd_create is allowed with exactly MFD_CLOEXEC|MFD_ALLOW_SEALING: the
        // state handed to sluiced for restarts (worker/state_store.h).
        "process_vm_writev", "setuid", "seccomp", "bpf", "io_uring_setup",
        // pread64 only (auto-scan, on fixed fds): no
        // seeking, no writing at an offset.
        "lseek", "pwrite64", "preadv", "preadv2"}) {
    EXPECT_EQ(names.count(forbidden), 0u) << "worker allows " << forbidden;
  }
}

TEST(SeccompTable, ClientTable) {
  std::vector<SyscallRule> rules = client_seccomp_rules(kGoldenPid);
  check_table(rules, 15, "client");
  std::set<std::string> names;
  for (const SyscallRule& row : rules) names.insert(row.name);
  // Besides what no sandboxed process needs: the client reads nothing but its
  // socket (no read), never waits with poll, and stdio and malloc are set up
  // before the filter (no fstat, ioctl or mremap).
  for (const char* forbidden :
       {"open",       "openat", "socket",  "connect", "execve",       "clone",
        "fork",       "ptrace", "prctl",   "fcntl",   "kill",         "mprotect",
        "read",       "readv",  "recvmsg", "sendmsg", "poll",         "ppoll",
        "newfstatat", "ioctl",  "lseek",   "mremap",  "rt_sigaction", "rt_sigreturn"}) {
    EXPECT_EQ(names.count(forbidden), 0u) << "client allows " << forbidden;
  }
}

TEST(SeccompTable, BrokerTable) {
  std::vector<SyscallRule> rules = broker_seccomp_rules(kGoldenPid);
  // 32: policy reload added dup3 (onto its two policy-text numbers only) and
  // pread64 (of the staged text only); worker restarts added fcntl
  // (F_DUPFD_CLOEXEC and F_GET_SEALS only), dup3 onto the worker's channel,
  // its pidfd and the cookie list's staging number, and pread64 there.
  // 33: madvise(MADV_DONTNEED) for one malloc_trim() after the start-up.
  check_table(rules, 33, "broker");
  std::set<std::string> names;
  for (const SyscallRule& row : rules) names.insert(row.name);
  // Everything before the filter (options, policy file, fork and exec of the
  // worker, capabilities, /proc) stays out; so does anything that would let a
  // compromised broker reach beyond its listeners and its one worker.
  for (const char* forbidden : {"open",       "openat",   "openat2",  "creat",
                                "execve",     "execveat", "clone",    "clone3",
                                "fork",       "vfork",    "ptrace",   "prctl",
                                "lseek",      "ioctl",    "kill",     "pidfd_open",
                                "connect",    "accept4",  "mprotect", "unshare",
                                "setns",      "mount",    "setuid",   "capset",
                                "socketpair", "seccomp",  "bpf",      "process_vm_writev"}) {
    EXPECT_EQ(names.count(forbidden), 0u) << "broker allows " << forbidden;
  }
}

TEST(SeccompTable, HelperTable) {
  std::vector<SyscallRule> rules = helper_seccomp_rules(kGoldenPid);
  check_table(rules, 20, "helper");
  std::set<std::string> names;
  for (const SyscallRule& row : rules) names.insert(row.name);
  // The namespace helper only opens listeners and answers sluiced: it joined
  // the target namespace before its filter, and may never join another, nor
  // connect, accept, signal, wait, or look at another socket's options.
  for (const char* forbidden :
       {"open",     "openat",     "openat2", "execve",  "execveat",   "clone",
        "clone3",   "fork",       "vfork",   "ptrace",  "prctl",      "fcntl",
        "ioctl",    "kill",       "connect", "accept4", "getsockopt", "poll",
        "setns",    "unshare",    "mount",   "setuid",  "capset",     "socketpair",
        "waitid",   "pidfd_open", "seccomp", "bpf",     "unlinkat",   "pidfd_send_signal",
        "sendmmsg", "mprotect"}) {
    EXPECT_EQ(names.count(forbidden), 0u) << "the namespace helper allows " << forbidden;
  }
}

TEST(SeccompTable, ReaderTable) {
  std::vector<SyscallRule> rules = reader_seccomp_rules(kGoldenPid);
  // Broad on purpose (policy/seccomp_reader.cc): NSS modules choose their own
  // files and daemons. 80: room for no more than a few rows more.
  check_table(rules, 80, "reader");
  std::set<std::string> names;
  for (const SyscallRule& row : rules) names.insert(row.name);
  // No write to a file, no process, no signal to another, no privilege, no
  // namespace, no ioctl, and less of the kernel to attack.
  for (const char* forbidden : {"openat2",
                                "creat",
                                "execve",
                                "execveat",
                                "clone",
                                "clone3",
                                "fork",
                                "vfork",
                                "ptrace",
                                "kill",
                                "tkill",
                                "pidfd_open",
                                "unshare",
                                "setns",
                                "mount",
                                "umount2",
                                "pivot_root",
                                "chroot",
                                "setuid",
                                "setgid",
                                "setresuid",
                                "capset",
                                "seccomp",
                                "bpf",
                                "ioctl",
                                "socketpair",
                                "bind",
                                "listen",
                                "accept4",
                                "unlinkat",
                                "unlink",
                                "renameat2",
                                "rename",
                                "mkdirat",
                                "fchmodat",
                                "fchownat",
                                "truncate",
                                "ftruncate",
                                "link",
                                "symlinkat",
                                "keyctl",
                                "add_key",
                                "io_uring_setup",
                                "userfaultfd",
                                "perf_event_open",
                                "process_vm_writev",
                                "process_vm_readv",
                                "init_module",
                                "finit_module",
                                "kexec_load",
                                "reboot",
                                "swapon",
                                "personality",
                                "memfd_secret",
                                "pidfd_send_signal"}) {
    EXPECT_EQ(names.count(forbidden), 0u) << "the policy reader allows " << forbidden;
  }
}

TEST(SeccompTable, SanitizerRowsOnlyInSanitizerBuilds) {
#ifdef SLUICE_SANITIZE
  EXPECT_FALSE(sanitizer_seccomp_rules().empty());
  for (const SyscallRule& row : sanitizer_seccomp_rules()) {
    EXPECT_NE(std::string(row.reason).find("sanitizer runtime only"), std::string::npos);
  }
#else
  EXPECT_TRUE(sanitizer_seccomp_rules().empty());
#endif
}

#ifdef SLUICE_SANITIZE
/// Overflows a heap block by one byte: an error AddressSanitizer reports.
/// `volatile` keeps the compiler from proving it and dropping the store.
void overflow_the_heap() {
  char* volatile block = static_cast<char*>(std::malloc(8));
  block[8] = 1;
  std::free(block);
}

TEST(SeccompTable, ASanitizerReportFromTheSandboxedWorkerIsPrinted) {
  // Under the worker's filter (with the sanitizer rows that install_seccomp
  // adds), a memory error must show the first lines of the runtime's report
  // (the kind of error and the address), not a bare SIGSYS. The frames need
  // /proc/self/maps, which no filter opens: the process then dies of SIGSYS.
  EXPECT_EXIT(
      {
        if (!install_seccomp(worker_seccomp_rules(getpid())).ok()) std::_Exit(97);
        overflow_the_heap();
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), "AddressSanitizer: heap-buffer-overflow on address");
}
#endif

}  // namespace
}  // namespace sluice
