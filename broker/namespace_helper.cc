// The namespace helper (see namespace_helper.h): its start-up stages in the
// forked child, sluiced's side of its channel, and its loop.
#include "broker/namespace_helper.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS (fixed in 2.37): C linkage by hand.
extern "C" {
#include <sys/pidfd.h>
}

#include <cerrno>
#include <cstring>
#include <memory>

#include "base/log.h"
#include "base/scm_rights.h"
#include "base/strings.h"
#include "broker/broker_host.h"
#include "broker/isolation.h"
#include "broker/listener_factory.h"
#include "broker/worker_launch.h"
#include "policy/seccomp_broker.h"

namespace sluice {
namespace {

/// In the forked child: the helper's stages in order (namespace_helper.h),
/// then its loop. Never returns; exits 1 after logging a failed stage.
[[noreturn]] void helper_main(const TargetNamespace& target, int channel, pid_t parent) noexcept {
  log_init("sluiced-netns", 2, log_level());
  // Stage 1: die with sluiced. Checked after the prctl: sluiced may already
  // have died between the fork and the call.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != parent) ::_exit(1);
  // Its name in ps and pgrep, as in its log lines (sluiced's log names its
  // pid when it stops answering).
  ::prctl(PR_SET_NAME, "sluiced-netns", 0, 0, 0);
  // Stage 2: into the target namespace, while its files are open.
  if (int err = join_target_namespace(target); err != 0) {
    LOG_ERROR("cannot join the target namespace %s: %s", target.name.c_str(),
              errno_text(err).c_str());
    ::_exit(1);
  }
  // Stage 3: only the channel (at its fixed number) and stderr stay open.
  int moved = ::fcntl(channel, F_DUPFD_CLOEXEC, helper_fd::kFirstFree);
  if (moved < 0 || ::dup3(moved, helper_fd::kChannel, O_CLOEXEC) != helper_fd::kChannel ||
      ::close_range(helper_fd::kFirstFree, ~0U, 0) != 0) {
    LOG_ERROR("placing the helper's channel: %s", errno_text(errno).c_str());
    ::_exit(1);
  }
  // Stage 4: the target namespace's sysctl (/proc/sys/net is the caller's).
  const uint32_t unprivileged_port_start = read_unprivileged_port_start();
  // Stage 5: CAP_NET_BIND_SERVICE alone, and NO_NEW_PRIVS.
  auto has_bind_cap = drop_capabilities();
  if (!has_bind_cap) {
    LOG_ERROR("%s", has_bind_cap.error().message.c_str());
    ::_exit(1);
  }
  // Stage 6: last, as in sluiced.
  if (auto filtered = install_helper_seccomp(); !filtered) {
    LOG_ERROR("the helper's seccomp filter: %s", filtered.error().message.c_str());
    ::_exit(1);
  }
  wire::HelperReadyMsg ready = {};
  ready.header = wire::header(wire::BrokerMsg::kHelperReady, 0);
  ready.version = wire::kBrokerWireVersion;
  ready.flags = *has_bind_cap ? wire::kBrokerHasBindCap : 0;
  ready.unprivileged_port_start = unprivileged_port_start;
  if (!send_message(helper_fd::kChannel, &ready, sizeof(ready), {}).ok()) ::_exit(1);
  LOG_DEBUG("in %s: CAP_NET_BIND_SERVICE %s, unprivileged_port_start %u, seccomp loaded",
            target.name.c_str(), *has_bind_cap ? "held" : "not held", unprivileged_port_start);
  ::_exit(serve_helper_requests(helper_fd::kChannel));
}

/// Waits up to `timeout_ms` for `fd` to become readable; true when it did.
bool wait_readable(int fd, int timeout_ms) {
  const uint64_t deadline = monotonic_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ULL;
  for (;;) {
    const uint64_t now = monotonic_ns();
    if (now >= deadline) return false;
    struct pollfd p = {fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>((deadline - now + 999999) / 1000000));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

/// Reads and checks the helper's HelperReady on `channel`: exact length,
/// magic, type, version, flags, reserved. Fails with what was wrong.
Result<wire::HelperReadyMsg> read_helper_ready(int channel) {
  if (!wait_readable(channel, kHelperStartTimeoutMs)) {
    return Err(ETIMEDOUT, "the namespace helper was not ready within " +
                              std::to_string(kHelperStartTimeoutMs / 1000) + " s");
  }
  wire::HelperReadyMsg ready;
  auto got = receive_message(channel, &ready, sizeof(ready), 0, MSG_DONTWAIT);
  if (!got) return Err(got.error().err, "reading the namespace helper: " + got.error().message);
  if (got->len == 0) {
    return Err(EPIPE, "the namespace helper stopped before it was ready (its error is above)");
  }
  if (got->len != sizeof(ready) || ready.header.magic != wire::kBrokerWireMagic ||
      ready.header.type != static_cast<uint32_t>(wire::BrokerMsg::kHelperReady) ||
      ready.version != wire::kBrokerWireVersion || (ready.flags & ~wire::kBrokerHasBindCap) != 0 ||
      ready.reserved != 0) {
    return Err(EPROTO, "the namespace helper sent a malformed HelperReady");
  }
  return ready;
}

/// Returns true for a status a ListenersOpened may carry.
bool valid_status(int32_t status) {
  return status == wire::kStatusOk || status == wire::kStatusPolicyDenied ||
         (status >= 1 && status <= wire::kStatusMaxErrno);
}

}  // namespace

Result<NamespaceHelper> start_namespace_helper(const TargetNamespace& target) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return SysErr("socketpair(SOCK_SEQPACKET) for the namespace helper");
  }
  UniqueFd ours(sv[0]), theirs(sv[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return SysErr("fork for the namespace helper");
  if (pid == 0) helper_main(target, theirs.get(), parent);
  theirs.reset();
  NamespaceHelper helper;
  helper.pid = pid;
  helper.pidfd.reset(::pidfd_open(pid, 0));
  if (!helper.pidfd.valid()) {
    const int err = errno;
    ::kill(pid, SIGKILL);  // not yet reaped, so the pid cannot have been recycled
    ::waitpid(pid, nullptr, 0);
    return Err(err, "pidfd_open for the namespace helper: " + errno_text(err));
  }
  auto ready = read_helper_ready(ours.get());
  if (!ready) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return Err(ready.error().err, "--netns " + target.name + ": " + ready.error().message +
                                      "; SPLICE rules (-T/-U) cannot listen there");
  }
  helper.channel = std::move(ours);
  helper.has_bind_cap = (ready->flags & wire::kBrokerHasBindCap) != 0;
  helper.unprivileged_port_start = ready->unprivileged_port_start;
  return helper;
}

Result<void> check_opened_listener(int fd, const wire::ListenerSpec& spec) {
  int domain = -1, type = -1;
  socklen_t len = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    return SysErr("getsockopt(SO_DOMAIN)");
  }
  len = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return SysErr("getsockopt(SO_TYPE)");
  const bool v4 = spec.family == static_cast<uint8_t>(wire::WireFamily::kInet);
  const bool tcp = spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp);
  if (domain != (v4 ? AF_INET : AF_INET6)) return Err(EPROTO, "the wrong address family");
  if (type != (tcp ? SOCK_STREAM : SOCK_DGRAM)) return Err(EPROTO, "the wrong socket type");
  int on = 0;
  len = sizeof(int);
  if (tcp) {
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 || on == 0) {
      return Err(EPROTO, "a TCP socket that is not listening");
    }
  } else if (::getsockopt(fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_PKTINFO : IPV6_RECVPKTINFO,
                          &on, &len) != 0 ||
             on == 0) {
    return Err(EPROTO, "a UDP socket that does not report local addresses");
  }
  struct sockaddr_storage ss = {};
  socklen_t slen = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &slen) != 0) {
    return SysErr("getsockname");
  }
  uint8_t bound[16] = {};
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const struct sockaddr_in*>(&ss);
    bound[10] = bound[11] = 0xff;
    std::memcpy(bound + 12, &sin->sin_addr, 4);
    port = ntohs(sin->sin_port);
  } else {
    const auto* sin6 = reinterpret_cast<const struct sockaddr_in6*>(&ss);
    std::memcpy(bound, &sin6->sin6_addr, 16);
    port = ntohs(sin6->sin6_port);
  }
  if (port != spec.port) return Err(EPROTO, "bound to the wrong port");
  if (std::memcmp(bound, spec.addr, 16) != 0) return Err(EPROTO, "bound to the wrong address");
  return Ok();
}

Result<void> send_helper_request(int channel, uint64_t sequence,
                                 std::span<const wire::ListenerSpec> specs) {
  CHECK(!specs.empty() && specs.size() <= wire::kMaxListenersPerMessage);
  // About 10 KiB: kept off the stack. Hardly ever is more than one request
  // unanswered (broker_host_splice.cc), so the channel has room and this
  // does not wait.
  auto msg = std::make_unique<wire::OpenListenersMsg>();
  std::memset(msg.get(), 0, sizeof(*msg));
  msg->header = wire::header(wire::BrokerMsg::kOpenListeners, sequence);
  msg->count = static_cast<uint32_t>(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) msg->entries[i] = specs[i];
  if (auto sent = send_message(channel, msg.get(), sizeof(*msg), {}); !sent) {
    return Err(sent.error().err, "the namespace helper is gone: " + sent.error().message);
  }
  return Ok();
}

Result<void> read_helper_answer(int channel, uint64_t sequence,
                                std::span<const wire::ListenerSpec> specs,
                                std::span<int32_t> status, std::vector<UniqueFd>* fds) {
  CHECK(status.size() == specs.size() && specs.size() <= wire::kMaxListenersPerMessage);
  auto reply = std::make_unique<wire::ListenersOpenedMsg>();
  auto got = receive_message(channel, reply.get(), sizeof(*reply), wire::kMaxListenersPerMessage,
                             MSG_DONTWAIT);
  if (!got) {
    const int err = got.error().err;
    if (err == EAGAIN || err == EWOULDBLOCK) return Err(EAGAIN, "no answer yet");
    return Err(err, "reading the namespace helper's answer: " + got.error().message);
  }
  if (got->len == 0) return Err(EPIPE, "the namespace helper closed its channel (it exited)");
  if (got->len != sizeof(*reply) || reply->header.magic != wire::kBrokerWireMagic ||
      reply->header.type != static_cast<uint32_t>(wire::BrokerMsg::kListenersOpened) ||
      reply->header.sequence != sequence || reply->count == 0 ||
      reply->count > wire::kMaxListenersPerMessage ||
      (!specs.empty() && reply->count != specs.size()) || reply->fd_count != got->fds.size() ||
      reply->reserved != 0) {
    return Err(EPROTO, "the namespace helper sent a malformed ListenersOpened");
  }
  if (specs.empty()) return Ok();  // a late answer: its sockets close with `got`
  fds->clear();
  fds->resize(specs.size());
  size_t next = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const int32_t s = reply->status[i];
    if (!valid_status(s)) return Err(EPROTO, "the namespace helper sent an invalid status");
    status[i] = s;
    if (s != wire::kStatusOk) continue;
    if (next >= got->fds.size()) return Err(EPROTO, "the namespace helper sent too few sockets");
    (*fds)[i] = std::move(got->fds[next++]);
    if (auto ok = check_opened_listener((*fds)[i].get(), specs[i]); !ok) {
      return Err(EPROTO, "the namespace helper sent, for " + describe_listener(specs[i]) +
                             ", a socket that is not what was asked: " + ok.error().message);
    }
  }
  if (next != got->fds.size()) return Err(EPROTO, "the namespace helper sent too many sockets");
  return Ok();
}

int serve_helper_requests(int channel) noexcept {
  // One byte more than a request: a longer datagram shows as a wrong length.
  auto buf = std::make_unique<uint8_t[]>(sizeof(wire::OpenListenersMsg) + 1);
  auto req = std::make_unique<wire::OpenListenersMsg>();
  auto reply = std::make_unique<wire::ListenersOpenedMsg>();
  for (;;) {
    auto got = receive_message(channel, buf.get(), sizeof(wire::OpenListenersMsg) + 1, 0);
    if (!got) {
      if (got.error().err == EINTR) continue;
      LOG_ERROR("receiving from sluiced: %s; stopping", got.error().message.c_str());
      return 1;
    }
    if (got->len == 0) return 0;  // sluiced closed the channel: it is stopping
    if (got->len != sizeof(*req)) {
      LOG_ERROR("a request of %zu bytes from sluiced; stopping", got->len);
      return 1;
    }
    std::memcpy(req.get(), buf.get(), sizeof(*req));
    auto ok = validate_open_listeners(*req, true);
    if (ok && (req->header.magic != wire::kBrokerWireMagic ||
               req->header.type != static_cast<uint32_t>(wire::BrokerMsg::kOpenListeners))) {
      ok = Err("not an OpenListeners");
    }
    for (uint32_t i = 0; ok && i < req->count; ++i) {
      if ((req->entries[i].flags & wire::kListenerSplice) == 0) ok = Err("not a SPLICE entry");
    }
    if (!ok) {
      LOG_ERROR("malformed request from sluiced: %s; stopping", ok.error().message.c_str());
      return 1;
    }
    std::memset(reply.get(), 0, sizeof(*reply));
    reply->header = wire::header(wire::BrokerMsg::kListenersOpened, req->header.sequence);
    reply->count = req->count;
    std::vector<UniqueFd> opened;
    std::vector<int> raw;
    for (uint32_t i = 0; i < req->count; ++i) {
      auto sock = open_listener(req->entries[i]);
      if (!sock) {
        // Kernel errnos are 1..4095 (MAX_ERRNO); the wire contract holds either way.
        const int err = sock.error().err;
        reply->status[i] = err >= 1 && err <= wire::kStatusMaxErrno ? err : EIO;
        LOG_DEBUG("%s failed: %s", describe_listener(req->entries[i]).c_str(),
                  sock.error().message.c_str());
        continue;
      }
      LOG_DEBUG("opened %s", describe_listener(req->entries[i]).c_str());
      raw.push_back(sock->get());
      opened.push_back(std::move(*sock));
    }
    reply->fd_count = static_cast<uint32_t>(opened.size());
    if (auto sent = send_message(channel, reply.get(), sizeof(*reply), raw); !sent) {
      LOG_ERROR("answering sluiced: %s; stopping", sent.error().message.c_str());
      return 1;
    }
    // The helper's copies close here, once sluiced holds its own.
  }
}

int poll_helper_exit(const NamespaceHelper& helper) {
  siginfo_t info = {};
  if (::waitid(P_PIDFD, static_cast<id_t>(helper.pidfd.get()), &info, WEXITED | WNOHANG) != 0) {
    LOG_ERROR("waitid for the namespace helper: %s", errno_text(errno).c_str());
    return 1;
  }
  if (info.si_pid == 0) return -1;
  if (info.si_code == CLD_EXITED) {
    LOG_ERROR("the namespace helper exited with status %d", info.si_status);
    return info.si_status;
  }
  LOG_ERROR("the namespace helper was killed by signal %d%s", info.si_status,
            info.si_status == SIGSYS ? ": a syscall outside its seccomp allowlist" : "");
  return 128 + info.si_status;
}

void stop_namespace_helper(const NamespaceHelper& helper) {
  // End of file on its channel: it exits by itself, needing no signal.
  ::shutdown(helper.channel.get(), SHUT_RDWR);
  if (!wait_readable(helper.pidfd.get(), kWorkerStopTimeoutMs)) {
    LOG_WARN("the namespace helper did not exit within %d ms; it dies with sluiced",
             kWorkerStopTimeoutMs);
    return;
  }
  siginfo_t info = {};
  ::waitid(P_PIDFD, static_cast<id_t>(helper.pidfd.get()), &info, WEXITED | WNOHANG);
}

}  // namespace sluice
