// The policy reader (see policy_reader.h): its stages in the forked child,
// its loop, and sluiced's side of a reload.
#include "broker/policy_reader.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "base/log.h"
#include "base/scm_rights.h"
#include "base/strings.h"
#include "broker/isolation.h"
#include "broker/restart_policy.h"
#include "policy/seccomp.h"
#include "policy/seccomp_broker.h"

namespace sluice {
namespace {

/// Stage 3: namespaces of the reader's own: a user namespace (when the
/// system lets any process make one; its uid stays sluiced's for every file
/// and peer outside), a PID namespace (the reader's child is its first
/// process and sees no process outside, so it can signal none, whatever its
/// uid) and a mount namespace in which every mount is read-only (it keeps
/// sluiced's uid, and root's uid writes root's files with no capability).
/// Without a user namespace, the other two need CAP_SYS_ADMIN (sluiced
/// started as root with it). Returns true when the three are made, false
/// (with a debug line) when none could be: the reader then runs as it is.
/// Exits 1 after logging when a step fails halfway.
bool make_namespaces() {
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) != 0 &&
      ::unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) {
    LOG_DEBUG("no namespaces of its own (%s): the reader sees the system as sluiced does",
              errno_text(errno).c_str());
    return false;
  }
  // Private first: the read-only change must not travel back to sluiced's mounts.
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  attr.propagation = MS_PRIVATE;
  if (::syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attr, sizeof(attr)) != 0) {
    LOG_ERROR("mount_setattr(/, read-only, recursive): %s", errno_text(errno).c_str());
    ::_exit(1);
  }
  return true;
}

/// Forks the child that does the work: the first process of the reader's
/// PID namespace when make_namespaces() made one (`in_namespaces`), a plain
/// child otherwise. Returns in the child only. The parent waits for it and
/// says how it ended when that was not a clean exit (a kill by the child's
/// seccomp filter above all, which nothing else would report), then exits
/// with its status. The parent keeps its copy of the channel open until then
/// and never reads it, so sluiced sees the channel close only after the
/// reason is logged. The child dies with the parent, which dies with sluiced.
void fork_working_child(bool in_namespaces) {
  // Taken before the fork: read after it in the child, a parent already
  // dead would show as the reaper on both sides of the check.
  const pid_t self = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    LOG_ERROR("fork of the policy reader's working child: %s", errno_text(errno).c_str());
    ::_exit(1);
  }
  if (pid == 0) {
    // In a new PID namespace getppid() is 0 here (the parent is outside),
    // so a parent that died before this call cannot be seen; then sluiced
    // is gone too, and the channel's end of file ends the child.
    const pid_t parent = in_namespaces ? 0 : self;
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != parent) ::_exit(1);
    return;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
    LOG_ERROR(
        "the policy reader was stopped by its seccomp filter: the user database (NSS) made a "
        "system call the reader may not make (no network, no writes, no new processes; the "
        "kernel's log names the call: journalctl -k | grep -i seccomp). Write the users and "
        "groups of `control` lines as numbers (uid=1000, gid=27: no lookup), or resolve names "
        "through sssd, nslcd or nscd (docs/POLICY.md), then restart sluiced to reload again");
  } else if (WIFSIGNALED(status)) {
    LOG_ERROR("the policy reader %s", describe_worker_end(128 + WTERMSIG(status)).c_str());
  }
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

/// Answers one PolicyRead with `sequence`: reads `path`, resolves its names
/// and sends PolicyText with the memfd, or with the error. Returns false when
/// the answer could not be sent (sluiced is gone).
bool answer_read(const std::string& path, uint64_t sequence) {
  auto reply = std::make_unique<wire::PolicyTextMsg>();
  std::memset(reply.get(), 0, sizeof(*reply));
  reply->header = wire::header(wire::BrokerMsg::kPolicyText, sequence);
  UniqueFd text_fd;
  std::string error;
  auto file = load_policy_file(path);  // reads and checks the syntax; names kept
  if (file) {
    const NameResolver resolver = resolve_system_name;
    auto text = resolve_policy_names(file->text, path, resolver);
    if (text) {
      auto fd = policy_memfd(*text);
      if (fd) {
        text_fd = std::move(*fd);
        reply->length = static_cast<uint32_t>(text->size());
      } else {
        error = fd.error().message;
      }
    } else {
      error = text.error().message;
    }
  } else {
    error = file.error().message;
  }
  if (!text_fd.valid()) {
    reply->status = wire::kPolicyTextFailed;
    std::snprintf(reply->error, sizeof(reply->error), "%s", error.c_str());
  }
  std::vector<int> fds;
  if (text_fd.valid()) fds.push_back(text_fd.get());
  return send_message(reader_fd::kChannel, reply.get(), sizeof(*reply), fds).ok();
}

/// In the forked child: the reader's stages in order (policy_reader.h), then
/// its loop. Never returns: exits 0 when sluiced closes the channel, 1 after
/// logging a failed stage or a malformed request.
[[noreturn]] void reader_main(const std::string& path, int channel, pid_t parent) noexcept {
  log_init("sluiced-policy", 2, log_level());
  // Stage 1: die with sluiced. Checked after the prctl: sluiced may already
  // have died between the fork and the call.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != parent) ::_exit(1);
  ::prctl(PR_SET_NAME, "sluiced-policy", 0, 0, 0);
  // sluiced blocks its signals for its signalfd: the reader takes them plainly.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Stage 2: only the channel (at its fixed number) and stderr stay open.
  int moved = ::fcntl(channel, F_DUPFD_CLOEXEC, reader_fd::kFirstFree);
  if (moved < 0 || ::dup3(moved, reader_fd::kChannel, O_CLOEXEC) != reader_fd::kChannel ||
      ::close_range(reader_fd::kFirstFree, ~0U, 0) != 0) {
    LOG_ERROR("placing the policy reader's channel: %s", errno_text(errno).c_str());
    ::_exit(1);
  }
  // The channel is blocking here: the reader has nothing else to wait for.
  const int fl = ::fcntl(reader_fd::kChannel, F_GETFL);
  if (fl < 0 || ::fcntl(reader_fd::kChannel, F_SETFL, fl & ~O_NONBLOCK) != 0) ::_exit(1);
  // Stage 3: namespaces of its own, while it may still make them.
  const bool in_namespaces = make_namespaces();
  // Stage 4: no capability at all, and NO_NEW_PRIVS (inherited by the child).
  if (auto dropped = drop_capabilities(false); !dropped) {
    LOG_ERROR("%s", dropped.error().message.c_str());
    ::_exit(1);
  }
  fork_working_child(in_namespaces);
  // Stage 5: the filter, before the first request (policy/seccomp_reader.cc).
  if (auto filtered = install_seccomp(reader_seccomp_rules(::getpid())); !filtered) {
    LOG_ERROR("the policy reader's seccomp filter: %s", filtered.error().message.c_str());
    ::_exit(1);
  }
  LOG_DEBUG("policy reader for %s: no capabilities, filtered, waiting for SIGHUP's request",
            path.c_str());
  // Stage 6: one answer per request, until sluiced closes the channel.
  for (;;) {
    wire::PolicyReadMsg req;
    char buf[sizeof(req) + 1];  // one byte more: a longer datagram shows as a wrong length
    auto got = receive_message(reader_fd::kChannel, buf, sizeof(buf), 0);
    if (!got) {
      if (got.error().err == EINTR) continue;
      LOG_ERROR("receiving from sluiced: %s; stopping", got.error().message.c_str());
      ::_exit(1);
    }
    if (got->len == 0) ::_exit(0);  // sluiced is stopping
    std::memcpy(&req, buf, sizeof(req));
    if (got->len != sizeof(req) || req.header.magic != wire::kBrokerWireMagic ||
        req.header.type != static_cast<uint32_t>(wire::BrokerMsg::kPolicyRead)) {
      LOG_ERROR("a malformed request of %zu bytes from sluiced; stopping", got->len);
      ::_exit(1);
    }
    if (!answer_read(path, req.header.sequence)) ::_exit(1);
  }
}

}  // namespace

std::optional<uint32_t> resolve_system_name(bool group, const std::string& name) {
  char buf[16384];  // Limit: NSS scratch space; a passwd/group entry beyond 16 KiB is refused
  if (group) {
    struct group gr, *found = nullptr;
    if (::getgrnam_r(name.c_str(), &gr, buf, sizeof(buf), &found) != 0 || found == nullptr) {
      return std::nullopt;
    }
    return found->gr_gid;
  }
  struct passwd pw, *found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf, sizeof(buf), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return found->pw_uid;
}

Result<UniqueFd> policy_memfd(const std::string& text) {
  UniqueFd fd(::memfd_create("sluice-policy", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) {
    int err = errno;
    return SysErr(err, "memfd_create for the policy text");
  }
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      return SysErr(err, "writing the policy text to its memfd");
    }
    done += static_cast<size_t>(n);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
          0 ||
      ::lseek(fd.get(), 0, SEEK_SET) != 0) {
    int err = errno;
    return SysErr(err, "sealing the policy memfd");
  }
  return fd;
}

Result<PolicyReader> start_policy_reader(const std::string& path) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
    return SysErr("socketpair(SOCK_SEQPACKET) for the policy reader");
  }
  UniqueFd ours(sv[0]), theirs(sv[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return SysErr("fork for the policy reader");
  if (pid == 0) reader_main(path, theirs.get(), parent);
  PolicyReader reader;
  reader.pid = pid;
  reader.channel = std::move(ours);
  return reader;
}

Result<PolicyFile> parse_reloaded_policy(const std::string& text, const std::string& source) {
  const NameResolver numbers_only = resolve_no_names;
  return parse_policy_text(text, source, &numbers_only);
}

void PolicyReloader::start(BrokerHost& host, Notifier& notifier) noexcept {
  if (channel_ < 0) {
    LOG_INFO(
        "SIGHUP: nothing to reload: sluiced runs the default policy (no --policy); restart it "
        "with --policy FILE to use a policy file");
    return;
  }
  if (pending_) {
    LOG_INFO("SIGHUP: a reload of %s is already running; it reads the file as it is now",
             path_.c_str());
    return;
  }
  LOG_INFO("SIGHUP: reloading the policy from %s", path_.c_str());
  notifier.reloading(monotonic_ns());
  if (lost_) {
    end_reload(host, notifier,
               "the policy reader is gone (sluiced said so when it ended, above); restart "
               "sluiced to reload");
    return;
  }
  wire::PolicyReadMsg req = {};
  req.header = wire::header(wire::BrokerMsg::kPolicyRead, ++sequence_);
  auto sent = send_message(channel_, &req, sizeof(req), {}, MSG_DONTWAIT);
  if (!sent) {
    lost_ = true;
    end_reload(
        host, notifier,
        "the policy reader is gone (" + sent.error().message + "); restart sluiced to reload");
    return;
  }
  pending_ = true;
}

void PolicyReloader::finish(BrokerHost& host, Notifier& notifier) noexcept {
  auto reply = std::make_unique<wire::PolicyTextMsg>();
  auto got = receive_message(channel_, reply.get(), sizeof(*reply), 1, MSG_DONTWAIT);
  if (!got && (got.error().err == EAGAIN || got.error().err == EWOULDBLOCK)) return;
  if (!pending_) {
    // No reload runs: the reader ended (or spoke out of turn, which only a
    // broken one does). Said now, not at the next SIGHUP.
    lost_ = true;
    LOG_ERROR(
        "the policy reader %s, so a SIGHUP can no longer reload %s; the policy in force stays. "
        "Restart sluiced to reload the policy",
        !got || got->len == 0 ? "exited (its own error, if any, is above)"
                              : "sent a message nobody asked for and is no longer used",
        path_.c_str());
    return;
  }
  pending_ = false;
  if (!got || got->len == 0) {
    lost_ = true;
    end_reload(host, notifier,
               std::string("the policy reader is gone (") +
                   (got ? "it closed its channel" : got.error().message) +
                   "); restart sluiced to reload");
    return;
  }
  const bool ok_status = reply->status == wire::kPolicyTextOk;
  if (got->len != sizeof(*reply) || reply->header.magic != wire::kBrokerWireMagic ||
      reply->header.type != static_cast<uint32_t>(wire::BrokerMsg::kPolicyText) ||
      reply->header.sequence != sequence_ ||
      (reply->status != wire::kPolicyTextOk && reply->status != wire::kPolicyTextFailed) ||
      got->fds.size() != (ok_status ? 1u : 0u) || reply->length > wire::kMaxPolicyTextBytes ||
      reply->error[sizeof(reply->error) - 1] != '\0') {
    end_reload(host, notifier, "the policy reader sent a malformed answer");
    return;
  }
  if (!ok_status) {
    end_reload(host, notifier, sanitize(std::string(reply->error), sizeof(reply->error)));
    return;
  }
  auto applied = apply(host, std::move(got->fds[0]), reply->length);
  end_reload(host, notifier, applied ? "" : applied.error().message);
}

Result<void> PolicyReloader::apply(BrokerHost& host, UniqueFd fd, uint32_t length) {
  // The fixed number the filter reads from (pread64), then the received one
  // closes. It may already sit there: the lowest free number, when nothing
  // else is open above sluiced's fixed ones.
  if (fd.get() != broker_fd::kPolicyStaging) {
    if (::dup3(fd.get(), broker_fd::kPolicyStaging, O_CLOEXEC) != broker_fd::kPolicyStaging) {
      return SysErr("dup3 of the reloaded policy text");
    }
    fd.reset();
  }
  // The reader sealed it (policy_memfd); sluiced does not check (it has no
  // fcntl): a reader that lied could as well have written any policy.
  UniqueFd staging(fd.valid() ? fd.release() : broker_fd::kPolicyStaging);
  std::string text(static_cast<size_t>(length) + 1, '\0');  // one more: a longer text shows
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n =
        ::pread(staging.get(), text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("reading the reloaded policy text");
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  if (done != length) return Err("the policy reader's text is not as long as it said");
  text.resize(length);
  auto file = parse_reloaded_policy(text, path_);
  if (!file) return Err(file.error());
  host.replace_policy(bind_policy_from_file(*file),
                      control_policy_from_file(*file, host.control_policy().owner_uid));
  // In force now: the text replaces the old one on its fixed number (dup3
  // closes the old), and the worker is told.
  if (::dup3(staging.get(), broker_fd::kPolicyText, O_CLOEXEC) != broker_fd::kPolicyText) {
    return SysErr("dup3 of the policy text in force");
  }
  host.queue_policy_reload(broker_fd::kPolicyText, length);
  summary_ = std::to_string(file->bind_rules.size()) + " bind, " +
             std::to_string(file->target_rules.size()) + " target and " +
             std::to_string(file->control_rules.size()) + " control line(s)";
  return Ok();
}

void PolicyReloader::end_reload(BrokerHost& host, Notifier& notifier,
                                const std::string& error) noexcept {
  std::string status;
  if (error.empty()) {
    ++applied_;
    LOG_INFO("policy %s reloaded: %s; in force for the next commit and the next client",
             path_.c_str(), summary_.c_str());
    status = "policy reloaded from " + path_ + ": " + summary_;
  } else {
    ++failed_;
    LOG_ERROR("policy reload failed: %s; the policy loaded before stays in force", error.c_str());
    status = "policy reload failed, the previous policy stays in force: " + error;
    host.queue_policy_failure(error);  // the worker writes its audit line
  }
  notifier.reloaded(status);
}

}  // namespace sluice
