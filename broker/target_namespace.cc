// The target namespace (see target_namespace.h).
#include "broker/target_namespace.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/strings.h"

namespace sluice {
namespace {

/// True when `text` is a decimal process id (1 to 2^22, the kernel's limit).
bool is_pid(const std::string& text) {
  if (text.empty() || text.size() > 7) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  const unsigned long pid = std::stoul(text);
  return pid >= 1 && pid <= 4194304;
}

/// Opens `path` and checks that it is a namespace of `type` (CLONE_NEWNET or
/// CLONE_NEWUSER); `what` names it in messages ("network", "user").
Result<UniqueFd> open_namespace(const std::string& path, int type, const char* what,
                                const std::string& option) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    return Err(err, option + " " + sanitize(path, 200) + ": cannot open it: " + errno_text(err) +
                        "; give the path of a " + what + " namespace file (/proc/PID/ns/" +
                        (type == CLONE_NEWNET ? "net" : "user") +
                        (type == CLONE_NEWNET ? ", /run/netns/NAME" : "") + ") or a PID");
  }
  const int got = ::ioctl(fd.get(), NS_GET_NSTYPE);
  if (got != type) {
    return Err(EINVAL, option + " " + sanitize(path, 200) + ": this is not a " + what +
                           " namespace file; give /proc/PID/ns/" +
                           (type == CLONE_NEWNET ? "net" : "user") + " of a process inside it" +
                           (type == CLONE_NEWNET ? ", /run/netns/NAME, or the PID itself" : ""));
  }
  return fd;
}

/// True when `fd` is the namespace sluiced itself is in, as /proc/self/ns/`kind`.
bool is_own_namespace(int fd, const char* kind) {
  struct stat own, other;
  const std::string self = std::string("/proc/self/ns/") + kind;
  if (::stat(self.c_str(), &own) != 0 || ::fstat(fd, &other) != 0) return false;
  return own.st_dev == other.st_dev && own.st_ino == other.st_ino;
}

/// True when `fd` is the user namespace sluiced itself is in.
bool is_own_user_namespace(int fd) {
  return is_own_namespace(fd, "user");
}

}  // namespace

bool in_initial_user_namespace() {
  UniqueFd fd(::open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC));
  char buf[128] = {};
  const ssize_t n = fd.valid() ? ::read(fd.get(), buf, sizeof(buf) - 1) : -1;
  unsigned long inside = 1, outside = 1, count = 0;
  return n > 0 && std::sscanf(buf, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 &&
         outside == 0 && count == 4294967295UL;
}

Result<TargetNamespace> open_target_namespace(const std::string& netns, const std::string& userns) {
  TargetNamespace target;
  target.name = netns;
  std::string net_path = netns;
  std::string user_path = userns;
  if (is_pid(netns)) {
    const std::string proc = "/proc/" + netns;
    struct stat st;
    if (::stat(proc.c_str(), &st) != 0) {
      return Err(ESRCH, "--netns " + netns +
                            ": no process has this PID; give the PID of a process inside the "
                            "container (podman inspect --format '{{.State.Pid}}' NAME)");
    }
    net_path = proc + "/ns/net";
    target.pid = static_cast<pid_t>(std::stol(netns));
    // Another user's process: its namespace files are not this user's to open.
    auto not_ours = [&](const Error& e) -> Error {
      if (e.err != EACCES && e.err != EPERM) return e;
      return Error{e.err, "--netns " + netns + ": process " + netns + " belongs to uid " +
                              std::to_string(st.st_uid) + ", and sluiced (uid " +
                              std::to_string(::getuid()) +
                              ") may not open its namespaces: " + errno_text(e.err) +
                              "; give the PID of a container this user started (podman "
                              "inspect --format '{{.State.Pid}}' NAME), or run sluiced as uid " +
                              std::to_string(st.st_uid)};
    };
    if (user_path.empty()) {
      auto user = open_namespace(proc + "/ns/user", CLONE_NEWUSER, "user", "--netns " + netns);
      if (!user) return Err(not_ours(user.error()));
      if (!is_own_user_namespace(user->get())) target.userns = std::move(*user);
    }
  }
  auto net = open_namespace(net_path, CLONE_NEWNET, "network", "--netns");
  if (!net) return Err(net.error());
  // The namespace sluiced listens in: HOST rules would connect back into
  // sluiced's own listeners (one connection loops until a limit stops it),
  // and the loop check assumes the targets are elsewhere.
  if (is_own_namespace(net->get(), "net")) {
    return Err(EINVAL, "--netns " + sanitize(netns, 200) +
                           ": this is sluiced's own network namespace, not a container's; "
                           "give the PID of a process inside the container (podman inspect "
                           "--format '{{.State.Pid}}' NAME), or leave --netns out to forward "
                           "in this namespace");
  }
  target.netns = std::move(*net);
  if (!user_path.empty()) {
    auto user = open_namespace(user_path, CLONE_NEWUSER, "user", "--userns");
    if (!user) return Err(user.error());
    if (!is_own_user_namespace(user->get())) target.userns = std::move(*user);
  }
  return target;
}

int join_target_namespace(const TargetNamespace& target) noexcept {
  if (target.userns.valid() && ::setns(target.userns.get(), CLONE_NEWUSER) != 0) return errno;
  if (::setns(target.netns.get(), CLONE_NEWNET) != 0) return errno;
  return 0;
}

namespace {

/// What a throwaway child managed when it tried to join the target namespace.
struct Trial {
  int step = 0;  // 0: everything worked; else the step that failed (below)
  int err = 0;   // that step's errno
};

/// The steps a trial child takes, in order, and its exit status when one fails.
enum TrialStep : int {
  kJoinUser = 1,   // setns into the user namespace
  kJoinNet = 2,    // setns into the network namespace
  kNewUserNs = 3,  // unshare(CLONE_NEWUSER), as the worker's sandbox stage 4
};

/// Forks a child that joins the target's network namespace, and first its user
/// namespace when `join_user`; when `sandbox_test`, the child then creates a
/// user namespace, as the worker's sandbox does inside. The child exits with
/// the step that failed and writes its errno to a pipe. Fails only when the
/// trial itself cannot run (pipe, fork, wait).
Result<Trial> try_in_child(const TargetNamespace& target, bool join_user, bool sandbox_test) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SysErr("pipe2 to try the target namespace");
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return SysErr("fork to try the target namespace");
  if (pid == 0) {
    int step = 0;
    if (join_user && ::setns(target.userns.get(), CLONE_NEWUSER) != 0) {
      step = kJoinUser;
    } else if (::setns(target.netns.get(), CLONE_NEWNET) != 0) {
      step = kJoinNet;
    } else if (sandbox_test && ::unshare(CLONE_NEWUSER) != 0) {
      step = kNewUserNs;
    }
    if (step != 0) {
      const int err = errno;
      (void)!::write(write_end.get(), &err, sizeof(err));
    }
    ::_exit(step);
  }
  write_end.reset();
  Trial trial;
  if (::read(read_end.get(), &trial.err, sizeof(trial.err)) !=
      static_cast<ssize_t>(sizeof(trial.err))) {
    trial.err = 0;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return SysErr("waitpid for the target namespace probe");
  }
  if (!WIFEXITED(status)) {
    return Err("the child that tried to join the target namespace " + target.name +
               " was killed (signal " + std::to_string(WTERMSIG(status)) + ")");
  }
  trial.step = WEXITSTATUS(status);
  return trial;
}

/// The one-line error for a trial that failed at `trial.step`.
Unexpected trial_error(const TargetNamespace& target, const Trial& trial) {
  if (trial.step == kJoinNet) {
    return Err(trial.err, "--netns " + target.name +
                              ": cannot join this network namespace: " + errno_text(trial.err) +
                              "; for a rootless container give --userns /proc/PID/ns/user (or "
                              "the PID itself as --netns), and run sluiced as the user who owns "
                              "the container, or as root");
  }
  if (trial.step == kNewUserNs) {
    return Err(trial.err, "--netns " + target.name +
                              ": the worker could not sandbox itself inside the user namespace "
                              "that owns it (creating its own user namespace there fails: " +
                              errno_text(trial.err) +
                              "; sluiced's uid or gid is not mapped in it); run sluiced as the "
                              "user who owns the container, or as real root, which joins the "
                              "network namespace alone");
  }
  return Err(trial.err,
             "--netns " + target.name +
                 ": cannot join the user namespace that owns it: " + errno_text(trial.err) +
                 "; run sluiced as the user who owns the namespace (who started the "
                 "container), or as root");
}

}  // namespace

Result<void> probe_target_namespace(TargetNamespace& target) {
  if (!target.userns.valid()) {
    auto trial = try_in_child(target, /*join_user=*/false, /*sandbox_test=*/false);
    if (!trial) return Err(trial.error());
    if (trial->step != 0) return trial_error(target, *trial);
    return Ok();
  }
  // Real root (CAP_SYS_ADMIN in the initial user namespace, and so over every
  // user namespace) joins the network namespace alone: the worker and the
  // helper stay in the initial user namespace, so the worker switches to its
  // user (--worker-user) as without --netns, and the container's owner holds
  // no capability over either of them. Anyone else fails this trial (EPERM)
  // and goes on.
  if (in_initial_user_namespace()) {
    auto net_only = try_in_child(target, /*join_user=*/false, /*sandbox_test=*/true);
    if (!net_only) return Err(net_only.error());
    if (net_only->step == 0) {
      target.userns.reset();
      target.net_only = true;
      return Ok();
    }
  }
  // The owner's way: join the user namespace, then the network namespace, and
  // the worker's sandbox must be able to make its own user namespace there,
  // which the kernel allows only while the caller's uid and gid are mapped.
  auto full = try_in_child(target, /*join_user=*/true, /*sandbox_test=*/true);
  if (!full) return Err(full.error());
  if (full->step == 0) return Ok();
  return trial_error(target, *full);
}

}  // namespace sluice
