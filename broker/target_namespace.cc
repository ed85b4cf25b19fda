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

/// True when `fd` is the user namespace sluiced itself is in.
bool is_own_user_namespace(int fd) {
  struct stat own, other;
  if (::stat("/proc/self/ns/user", &own) != 0 || ::fstat(fd, &other) != 0) return false;
  return own.st_dev == other.st_dev && own.st_ino == other.st_ino;
}

}  // namespace

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
    if (user_path.empty()) {
      auto user = open_namespace(proc + "/ns/user", CLONE_NEWUSER, "user", "--netns " + netns);
      if (!user) return Err(user.error());
      if (!is_own_user_namespace(user->get())) target.userns = std::move(*user);
    }
  }
  auto net = open_namespace(net_path, CLONE_NEWNET, "network", "--netns");
  if (!net) return Err(net.error());
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

Result<void> probe_target_namespace(const TargetNamespace& target) {
  // The child reports which step failed in its exit status (1: the user
  // namespace, 2: the network namespace) and the errno through a pipe.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SysErr("pipe2 to try the target namespace");
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return SysErr("fork to try the target namespace");
  if (pid == 0) {
    int step = 0;
    if (target.userns.valid() && ::setns(target.userns.get(), CLONE_NEWUSER) != 0) {
      step = 1;
    } else if (::setns(target.netns.get(), CLONE_NEWNET) != 0) {
      step = 2;
    }
    if (step != 0) {
      const int err = errno;
      (void)!::write(write_end.get(), &err, sizeof(err));
    }
    ::_exit(step);
  }
  write_end.reset();
  int err = 0;
  if (::read(read_end.get(), &err, sizeof(err)) != static_cast<ssize_t>(sizeof(err))) err = 0;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return SysErr("waitpid for the target namespace probe");
  }
  if (!WIFEXITED(status)) {
    return Err("the child that tried to join the target namespace " + target.name +
               " was killed (signal " + std::to_string(WTERMSIG(status)) + ")");
  }
  const int code = WEXITSTATUS(status);
  if (code == 0) return Ok();
  if (code == 2) {
    return Err(err, "--netns " + target.name +
                        ": cannot join this network namespace: " + errno_text(err) +
                        "; for a rootless container give --userns /proc/PID/ns/user (or the PID "
                        "itself as --netns), and run sluiced as the user who owns the container, "
                        "or as root");
  }
  return Err(err, "--netns " + target.name +
                      ": cannot join the user namespace that owns it: " + errno_text(err) +
                      "; run sluiced as the user who owns the namespace (who started the "
                      "container), or as root");
}

}  // namespace sluice
