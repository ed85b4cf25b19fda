// What the service manager hands sluiced at start (see service_adoption.h).
#include "broker/service_adoption.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "base/log.h"
#include "base/strings.h"
#include "policy/seccomp_broker.h"

namespace sluice {
namespace {

/// Moves `fd` above every fixed descriptor number of sluiced
/// (broker_fd::kFirstFree and up), close-on-exec, so that place_fds() finds
/// its numbers free. Fails with the errno of fcntl.
Result<void> move_above_fixed(UniqueFd& fd) {
  UniqueFd moved(::fcntl(fd.get(), F_DUPFD_CLOEXEC, broker_fd::kFirstFree));
  if (!moved.valid()) {
    int err = errno;
    return SysErr(err, "fcntl(F_DUPFD_CLOEXEC) of a stored descriptor");
  }
  fd = std::move(moved);
  return Ok();
}

}  // namespace

Result<AdoptedSockets> adopt_activated(const ListenEnv& env, bool want_pesto) {
  AdoptedSockets out;
  std::vector<UniqueFd> fds;
  for (int i = 0; i < env.count; ++i) fds.emplace_back(kListenFdsStart + i);
  out.stored = take_stored_fds(fds, env.names);
  for (const std::string& line : out.stored.dropped) LOG_WARN("fd store: %s", line.c_str());
  for (auto& listener : out.stored.listeners) {
    if (auto ok = move_above_fixed(listener.fd); !ok) return Err(ok.error());
  }
  if (out.stored.state.valid()) {
    if (auto ok = move_above_fixed(out.stored.state); !ok) return Err(ok.error());
  }
  for (int i = 0; i < env.count; ++i) {
    if (!fds[static_cast<size_t>(i)].valid()) continue;  // taken from the store
    const std::string& name = env.names[static_cast<size_t>(i)];
    const int fd = kListenFdsStart + i;
    UniqueFd* slot = nullptr;
    if (name == kControlFdName) slot = &out.control;
    if (name == kPestoFdName && want_pesto) slot = &out.pesto;
    if (slot == nullptr || slot->valid()) {
      LOG_WARN(
          "socket activation: fd %d named %s is not one sluiced uses (it takes `control`%s); "
          "closed",
          fd, sanitize(name, 64).c_str(), want_pesto ? " and `pesto`" : "");
      out.closed_unnamed = true;
      continue;
    }
    if (auto ok = check_activated_socket(fd, name); !ok) return Err(ok.error());
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
        ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      int err = errno;
      return SysErr(err, "fcntl of the socket-activated fd " + std::to_string(fd));
    }
    *slot = std::move(fds[static_cast<size_t>(i)]);
  }
  return out;  // the fds not adopted close here
}

Result<ControlSocket> activated_socket(UniqueFd fd, const SocketRole& role,
                                       const std::string& fallback) {
  ControlSocket sock;
  sock.role = role;
  sock.activated = true;
  sock.path = socket_path_of(fd.get());
  if (sock.path.empty()) sock.path = fallback;
  if (sock.path != fallback) {
    LOG_INFO("%s from the service manager (socket activation): %s; %s is not used", role.noun,
             sock.path.c_str(), fallback.c_str());
  } else {
    LOG_DEBUG("%s from the service manager (socket activation): %s", role.noun, sock.path.c_str());
  }
  sock.listen_fd = std::move(fd);
  sock.dir_fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!sock.dir_fd.valid()) {
    int err = errno;
    return SysErr(err, "open /dev/null");
  }
  return sock;
}

bool adopt_stored(BrokerHost& host, StoredFds stored, bool notify) {
  ListenerEscrow& escrow = host.escrow();
  const size_t listeners = stored.listeners.size();
  for (auto& listener : stored.listeners) {
    if (auto kept = escrow.adopt(std::move(listener.fd), listener.name.cookie, listener.name.spec);
        !kept) {
      LOG_ERROR("fd store: %s", kept.error().message.c_str());
      return false;
    }
  }
  const bool state = stored.state.valid();
  if (state) {
    if (auto kept = escrow.adopt_blob(std::move(stored.state), stored.state_sequence); !kept) {
      LOG_ERROR(
          "fd store: %s; stop the service (systemd then empties its store) and start it again: "
          "it starts from the command line's rules",
          kept.error().message.c_str());
      return false;
    }
  }
  if (listeners > 0 || state) {
    LOG_INFO(
        "restart: %zu listener%s%s from the service manager's fd store; the worker resumes "
        "from %s",
        listeners, listeners == 1 ? "" : "s", state ? " and the worker's state" : "",
        state ? "the tables in force when sluiced stopped (not the command line's rules)"
              : "the command line's rules");
    host.resume_first_worker();
  }
  if (notify) {
    escrow.mirror_to(broker_fd::kNotify);
    escrow.unstore_stale(stored.stale);
  }
  return true;
}

}  // namespace sluice
