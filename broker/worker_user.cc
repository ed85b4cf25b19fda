// The worker's user (see worker_user.h).
#include "broker/worker_user.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <string_view>

#include "base/strings.h"
#include "base/unique_fd.h"
#include "broker/target_namespace.h"
#include "schema/worker_args.h"

namespace sluice {
namespace {

/// What the lookup child of lookup_system_user writes to its pipe.
struct LookupAnswer {
  uint32_t found;  // 1: the user exists; 0: it does not
  uint32_t uid;
  uint32_t gid;
};

/// Limit: bytes of a refused --worker-user quoted in a message.
constexpr size_t kQuotedMax = 64;

/// How to get a dedicated user, for the messages.
constexpr const char* kCreateHint =
    "create a dedicated system user (useradd --system --no-create-home --shell "
    "/usr/sbin/nologin sluice) or give --worker-user NAME|UID[:GID]";

/// Parses one id of --worker-user: decimal, from kWorkerIdMin to
/// kWorkerIdMax. Fails with a message naming `what` (user or group).
Result<uint32_t> parse_id(std::string_view text, const char* what, const std::string& spec) {
  unsigned long value = 0;
  if (!parse_uint(text, kWorkerIdMax, &value)) {
    return Err("--worker-user " + sanitize(spec, kQuotedMax) + ": the " + what +
               " id must be a number from " + std::to_string(kWorkerIdMin) + " to " +
               std::to_string(kWorkerIdMax));
  }
  if (value < kWorkerIdMin) {
    return Err("--worker-user " + sanitize(spec, kQuotedMax) +
               ": the worker never runs as root; give an unprivileged " + what +
               " (or leave the option out for the user " + kWorkerUserName + " or nobody)");
  }
  return static_cast<uint32_t>(value);
}

/// Returns true when `text` starts with a decimal digit: a numeric spec, or
/// a user name that begins with a digit (tried when the numbers do not parse).
bool numeric(const std::string& text) {
  return !text.empty() && text[0] >= '0' && text[0] <= '9';
}

/// Checks a user found in the user database: neither its uid nor its group
/// may be 0.
Result<WorkerUser> from_entry(const std::string& name, const UserEntry& entry) {
  if (entry.uid == 0 || entry.gid == 0 || entry.uid > kWorkerIdMax || entry.gid > kWorkerIdMax) {
    return Err("--worker-user " + sanitize(name, kQuotedMax) + ": the user has uid " +
               std::to_string(entry.uid) + " and group " + std::to_string(entry.gid) +
               "; the worker never runs as root: give an unprivileged user");
  }
  WorkerUser user;
  user.uid = entry.uid;
  user.gid = entry.gid;
  user.description = "user " + sanitize(name, kQuotedMax) + " (uid " + std::to_string(entry.uid) +
                     ", gid " + std::to_string(entry.gid) + ")";
  return user;
}

}  // namespace

Result<WorkerUser> resolve_worker_user(const std::string& spec, const UserLookup& lookup) {
  if (spec.empty()) {
    if (std::optional<UserEntry> found = lookup(kWorkerUserName)) {
      return from_entry(kWorkerUserName, *found);
    }
    WorkerUser user;
    user.uid = kWorkerIdFallback;
    user.gid = kWorkerIdFallback;
    user.shared_fallback = true;
    user.description = "uid 65534, gid 65534 (nobody, shared with other processes; " +
                       std::string(kCreateHint) + ")";
    return user;
  }
  if (!numeric(spec)) {
    std::optional<UserEntry> found = lookup(spec);
    if (!found) {
      return Err("--worker-user " + sanitize(spec, kQuotedMax) +
                 ": no such user in the user database; " + kCreateHint);
    }
    return from_entry(spec, *found);
  }
  const size_t colon = spec.find(':');
  auto uid = parse_id(std::string_view(spec).substr(0, colon), "user", spec);
  uint32_t gid = uid ? *uid : 0;
  if (uid && colon != std::string::npos) {
    auto parsed = parse_id(std::string_view(spec).substr(colon + 1), "group", spec);
    if (!parsed) uid = Err(parsed.error());
    if (parsed) gid = *parsed;
  }
  if (!uid) {
    // Not UID[:GID]: a user name may begin with a digit ("1password").
    if (std::optional<UserEntry> found = lookup(spec)) return from_entry(spec, *found);
    return Err(uid.error());
  }
  WorkerUser user;
  user.uid = *uid;
  user.gid = gid;
  user.description = "uid " + std::to_string(*uid) + ", gid " + std::to_string(gid);
  return user;
}

std::optional<UserEntry> lookup_system_user_here(const std::string& name) {
  char buf[16384];  // Limit: NSS scratch space; a passwd entry beyond 16 KiB is refused
  struct passwd pw, *found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf, sizeof(buf), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return UserEntry{found->pw_uid, found->pw_gid};
}

std::optional<UserEntry> lookup_system_user(const std::string& name) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return lookup_system_user_here(name);
  UniqueFd rd(fds[0]), wr(fds[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return lookup_system_user_here(name);
  if (pid == 0) {
    rd.reset();
    const std::optional<UserEntry> found = lookup_system_user_here(name);
    const LookupAnswer answer{found.has_value() ? 1u : 0u, found ? found->uid : 0u,
                              found ? found->gid : 0u};
    const bool sent = ::write(wr.get(), &answer, sizeof(answer)) == sizeof(answer);
    ::_exit(sent ? 0 : 1);
  }
  wr.reset();
  LookupAnswer answer{};
  size_t got = 0;
  // Limit: one fixed-size answer; ends at EOF (the child exits) or an error.
  while (got < sizeof(answer)) {
    const ssize_t n =
        ::read(rd.get(), reinterpret_cast<char*>(&answer) + got, sizeof(answer) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // The child is this binary, not a peer; still, only a whole answer of a
  // child that exited cleanly is taken. Anything else: ask here instead.
  if (got != sizeof(answer) || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || answer.found > 1) {
    return lookup_system_user_here(name);
  }
  if (answer.found == 0) return std::nullopt;
  return UserEntry{answer.uid, answer.gid};
}

bool root_in_initial_user_namespace() {
  uid_t ruid, euid, suid;
  if (::getresuid(&ruid, &euid, &suid) != 0) return false;
  if (ruid != 0 && euid != 0 && suid != 0) return false;
  return in_initial_user_namespace();
}

}  // namespace sluice
