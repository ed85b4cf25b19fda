// Policy reload (SIGHUP): the policy reader, a small child of sluiced that
// re-reads the --policy file, and sluiced's side of a reload.
//
// Why a child: after start-up sluiced's seccomp filter has no open, and
// resolving the user and group names of `control` lines runs the system's
// user database (NSS: files, sockets of nscd or sssd, modules loaded at
// run time), which no tight filter admits. So at start, with --policy,
// before its own filter, sluiced forks this reader, which:
//   1. asks for SIGKILL when sluiced dies (PR_SET_PDEATHSIG) and names
//      itself sluiced-policy;
//   2. closes every descriptor but its channel (moved to reader_fd::kChannel)
//      and stderr;
//   3. moves to namespaces of its own when it may (make_namespaces): a user
//      namespace (any process may make one where the system allows it), a
//      PID namespace and a mount namespace in which every mount is
//      read-only. It keeps sluiced's uid for files and peers, and root's
//      uid needs no capability to write root's files or to signal root's
//      processes: the read-only mounts stop the one, the PID namespace the
//      other (it sees no process outside);
//   4. drops every capability, the bounding set included, and sets
//      NO_NEW_PRIVS (drop_capabilities without CAP_NET_BIND_SERVICE), then
//      forks the child that works (the first process of its PID namespace,
//      when it made one) and waits for it: it says how the child ended when
//      that was not a clean exit (above all a kill by the child's filter),
//      and keeps its copy of the channel until then, so sluiced sees the
//      reader go only after the reason is in the log;
//   5. (the child) loads its seccomp filter (reader_seccomp_rules,
//      policy/seccomp_reader.cc): broad where NSS needs it (read-only opens,
//      module loading, AF_UNIX sockets to its daemons), but no file change,
//      exec, process, signal to another, network or ioctl;
//   6. (the child) waits for PolicyRead from sluiced; for each it reads the
//      file, checks it, resolves its names (resolve_policy_names) and
//      answers PolicyText with a sealed memfd of the text, names written as
//      numbers, or with the parse error naming the line. It never talks to
//      the worker.
// What it can still reach (any file sluiced's uid may read, any local
// AF_UNIX socket) is in docs/THREAT_MODEL.md, known gaps.
//
// sluiced trusts what comes back (its own child reading the administrator's
// file) but parses it again with a resolver that accepts only numbers, so
// that it needs no NSS itself. The policy in force, as text, is one sealed
// memfd kept on broker_fd::kPolicyText: the worker gets it at start and
// with every PolicyReload, and a worker started later must get that one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/broker_host.h"
#include "broker/sd_notify.h"
#include "policy/policy_file.h"

namespace sluice {

/// Fixed descriptor numbers of the policy reader after its start-up.
namespace reader_fd {
/// Log lines: sluiced's stderr, inherited.
inline constexpr int kLog = 2;
/// SOCK_SEQPACKET to sluiced (recvmsg blocking, sendmsg).
inline constexpr int kChannel = 3;
/// The first number not reserved above; everything from here is closed.
inline constexpr int kFirstFree = 4;
}  // namespace reader_fd

/// Resolves a user (`group` false) or group name with the system's user
/// database (NSS). Used before sluiced's filter, and by the policy reader.
std::optional<uint32_t> resolve_system_name(bool group, const std::string& name);

/// Puts `text` into a sealed memfd (no write, grow, shrink or further seal)
/// positioned at offset 0. Fails with the errno of memfd_create, write or
/// fcntl. Needs `memfd_create`, `write`, `fcntl`, `lseek`: before a filter.
Result<UniqueFd> policy_memfd(const std::string& text);

/// A running policy reader, as sluiced sees it.
struct PolicyReader {
  pid_t pid = -1;
  UniqueFd channel;  // sluiced's end of the SOCK_SEQPACKET pair, non-blocking
};

/// Forks the policy reader for the file at `path`. Call before sluiced drops
/// its capabilities (where user namespaces are disabled, the reader's
/// namespaces need CAP_SYS_ADMIN) and loads its filter (which has no fork). Does not wait
/// for the reader: a reader that fails a stage logs why and exits, and the
/// next reload says that it is gone. Fails with the errno of socketpair or
/// fork.
Result<PolicyReader> start_policy_reader(const std::string& path);

/// The reload in progress, and what sluiced needs to run one: the reader's
/// channel (broker_fd::kPolicyReader) and the file's path.
class PolicyReloader {
 public:
  /// `reader_channel`: -1 without --policy (the default policy: SIGHUP has
  /// nothing to reload). `path`: the --policy file, for messages.
  PolicyReloader(int reader_channel, std::string path)
      : channel_(reader_channel), path_(std::move(path)) {}

  /// SIGHUP: without --policy, logs that there is nothing to reload; while a
  /// reload runs, logs that this one is folded into it; otherwise sends
  /// RELOADING=1 (with MONOTONIC_USEC) and asks the reader. A reader that is
  /// gone ends the reload at once with its reason (READY=1, STATUS=, and a
  /// PolicyReloadFailed queued in `host`). Needs `sendmsg` on the reader's
  /// channel and `sendto` on the notify socket.
  void start(BrokerHost& host, Notifier& notifier) noexcept;

  /// The fd to poll: the reader's channel while the reader is there (its
  /// answer while a reload runs, its end at any time), else -1 (poll skips
  /// it).
  int poll_fd() const noexcept { return pending_ || !lost_ ? channel_ : -1; }

  /// The reader's channel is readable. Without a reload running, that is
  /// the reader's end: logged at once, and every later reload fails saying
  /// so. Otherwise the reader's answer is there: takes it (PolicyText), and on success
  /// parses the text (numbers only), puts the new bind and control policy
  /// in force in `host` (which tells the worker, PolicyReload) and keeps the
  /// text on broker_fd::kPolicyText; on failure keeps the policy in force,
  /// logs why and tells the worker, which audits it (PolicyReloadFailed
  /// queued in `host`). Either way sends READY=1 and a STATUS= that says what
  /// happened. Needs `recvmsg` on the reader's channel, `dup3`, `pread64`
  /// and `close` on broker_fd::kPolicyStaging, `dup3` onto
  /// broker_fd::kPolicyText.
  void finish(BrokerHost& host, Notifier& notifier) noexcept;

  /// Reloads that put a new policy in force, and that failed.
  uint64_t applied() const noexcept { return applied_; }
  uint64_t failed() const noexcept { return failed_; }

 private:
  /// Ends the reload: logs `error` (a failure, the old policy stays, and
  /// the worker is told through `host`) or the new policy, and tells the
  /// service manager.
  void end_reload(BrokerHost& host, Notifier& notifier, const std::string& error) noexcept;
  /// Takes the answer's memfd (`fd`, `length` bytes): checks its seals,
  /// reads and parses it, and swaps the policy in `host`. Fails with why.
  Result<void> apply(BrokerHost& host, UniqueFd fd, uint32_t length);

  int channel_;
  std::string path_;
  bool pending_ = false;
  bool lost_ = false;  // the reader is gone: every later reload fails at once
  uint64_t sequence_ = 0;
  uint64_t applied_ = 0;
  uint64_t failed_ = 0;
  std::string summary_;  // the new policy, for the log and STATUS=
};

/// Parses the policy text of a reload (`text`, from the reader, names
/// already numbers) for a sluiced running as `owner_uid`. Fails with the
/// parse error. Pure: no syscalls.
Result<PolicyFile> parse_reloaded_policy(const std::string& text, const std::string& source);

}  // namespace sluice
