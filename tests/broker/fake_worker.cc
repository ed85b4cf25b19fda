// A stand-in for sluice-worker, for tests that run the real sluiced binary
// under its seccomp filter without the real worker. sluiced passes its rule
// options through unchanged, so the "specs" here are commands, run in order:
//   check-env        verify what sluiced promised: empty environment, fd 0 on
//                    /dev/null, fds 3/4/5/8 as in broker_wire.h (fd 8 the
//                    audit log read-only, or /dev/null), nothing above,
//                    CLOEXEC clear, no blocked signals (exit 99 otherwise)
//   grant-tcp4:PORT  declare TCP 127.0.0.1:PORT as a privileged port of the
//                    initial rules (InitialPorts, sent after Hello whatever
//                    the order of the commands)
//   open-tcp4:PORT   ask for TCP 127.0.0.1:PORT and keep the socket
//   violate          send an OpenListeners with port 0 (a compromised worker)
//   open-sockets     send an OpenSockets for 4 IPv4 TCP sockets (without
//                    --netns: a compromised worker)
//   peer-query-tcp   send a PeerQuery carrying a TCP socket whose close would
//                    linger (SO_LINGER 30 s, unsent bytes), without a copy of
//                    its own (a compromised worker; security review item 9)
//   stall:N:MS       a worker slow to read its replies: send up to N PeerQuery
//                    requests without reading, until the channel stays full
//                    for 1 s (sluiced has stopped reading: its replies fill
//                    the channel the other way), read nothing for MS more
//                    milliseconds, then read every reply
//   exit:N           exit with status N
// Hello is sent first, then one InitialPorts with the grant-tcp4 ports (none:
// an empty one). Afterwards it waits until the channel closes (exit 0)
// or a signal ends it. Every result is one "fake-worker: ..." line on stderr.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/scm_rights.h"
#include "schema/broker_wire.h"

extern char** environ;

namespace sluice {
namespace {

uint64_t g_sequence = 0;       // of the last request sent
std::vector<UniqueFd> g_kept;  // listeners received, held until exit

/// Reports a broken promise of sluiced and exits 99.
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fake-worker: FAIL %s\n", what);
  std::exit(99);
}

/// Checks the process state sluiced promises the worker.
void check_env() {
  if (environ != nullptr && environ[0] != nullptr) fail("environment is not empty");
  struct stat st;
  if (::fstat(0, &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3)) {
    fail("fd 0 is not /dev/null");
  }
  for (int fd = 0; fd < wire::kWorkerFirstFreeFd; ++fd) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) fail("a fixed fd is closed");
    if (flags & FD_CLOEXEC) fail("a fixed fd has CLOEXEC set");
  }
  for (int fd = wire::kWorkerFirstFreeFd; fd < 256; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) fail("an fd above the fixed ones is open");
  }
  int v = 0;
  socklen_t len = sizeof(v);
  if (::getsockopt(wire::kWorkerFdBroker, SOL_SOCKET, SO_TYPE, &v, &len) != 0 ||
      v != SOCK_SEQPACKET) {
    fail("fd 3 is not SOCK_SEQPACKET");
  }
  len = sizeof(v);
  if (::getsockopt(wire::kWorkerFdControl, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0 || v != 1) {
    fail("fd 4 is not a listening socket");
  }
  if ((::fcntl(wire::kWorkerFdAudit, F_GETFL) & O_ACCMODE) == O_RDONLY) fail("fd 5 not writable");
  // fd 8: the --audit-log file once more, read-only, or /dev/null.
  struct stat tail_st, audit_st;
  if (::fstat(wire::kWorkerFdAuditTail, &tail_st) != 0) fail("fd 8 cannot be stat'ed");
  if (S_ISREG(tail_st.st_mode)) {
    if ((::fcntl(wire::kWorkerFdAuditTail, F_GETFL) & O_ACCMODE) != O_RDONLY) {
      fail("fd 8 is not read-only");
    }
    if (::fstat(wire::kWorkerFdAudit, &audit_st) != 0 || audit_st.st_dev != tail_st.st_dev ||
        audit_st.st_ino != tail_st.st_ino) {
      fail("fd 8 is not the audit log of fd 5");
    }
    std::fprintf(stderr, "fake-worker: fd 8 is the audit log, read-only\n");
  } else if (S_ISCHR(tail_st.st_mode) && tail_st.st_rdev == makedev(1, 3)) {
    std::fprintf(stderr, "fake-worker: fd 8 is /dev/null\n");
  } else {
    fail("fd 8 is neither the audit log nor /dev/null");
  }
  sigset_t mask;
  ::sigprocmask(SIG_BLOCK, nullptr, &mask);
  if (sigismember(&mask, SIGTERM) || sigismember(&mask, SIGCHLD)) fail("signals blocked");
  struct sigaction sa;
  ::sigaction(SIGPIPE, nullptr, &sa);
  if (sa.sa_handler != SIG_DFL) fail("SIGPIPE disposition not reset");
  std::fprintf(stderr, "fake-worker: env ok\n");
}

/// Sends Hello and reads the reply.
void hello() {
  wire::HelloMsg m = {};
  m.header = wire::header(wire::BrokerMsg::kHello, ++g_sequence);
  m.version = wire::kBrokerWireVersion;
  if (!send_message(wire::kWorkerFdBroker, &m, sizeof(m), {}).ok()) fail("send Hello");
  wire::HelloReplyMsg r;
  auto got = receive_message(wire::kWorkerFdBroker, &r, sizeof(r), 0);
  if (!got.ok() || got->len != sizeof(r)) fail("HelloReply");
  std::fprintf(stderr, "fake-worker: hello flags=%u port_start=%u\n", r.flags,
               r.unprivileged_port_start);
}

/// Returns the wire form of TCP 127.0.0.1:port.
wire::ListenerSpec tcp4(uint16_t port) {
  wire::ListenerSpec s = {};
  s.proto = static_cast<uint8_t>(wire::WireProto::kTcp);
  s.family = static_cast<uint8_t>(wire::WireFamily::kInet);
  s.port = port;
  const uint8_t addr[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  std::memcpy(s.addr, addr, 16);
  return s;
}

/// Sends the one InitialPorts (flagged last) that declares TCP
/// 127.0.0.1:PORT for each of `ports` (at most kMaxGrantsPerMessage).
void initial_ports(const std::vector<uint16_t>& ports) {
  auto m = std::make_unique<wire::InitialPortsMsg>();
  std::memset(m.get(), 0, sizeof(*m));
  m->header = wire::header(wire::BrokerMsg::kInitialPorts, ++g_sequence);
  m->flags = wire::kInitialPortsLast;
  for (uint16_t port : ports) {
    wire::PortGrant& g = m->grants[m->count++];
    g.listener = tcp4(port);
    g.last_port = port;
  }
  if (!send_message(wire::kWorkerFdBroker, m.get(), sizeof(*m), {}).ok()) fail("InitialPorts");
  std::fprintf(stderr, "fake-worker: declared %u initial port(s)\n", m->count);
}

/// Asks for TCP 127.0.0.1:port (port 0: a malformed request) and reports the result.
void open_tcp4(uint16_t port) {
  auto m = std::make_unique<wire::OpenListenersMsg>();
  std::memset(m.get(), 0, sizeof(*m));
  m->header = wire::header(wire::BrokerMsg::kOpenListeners, ++g_sequence);
  m->count = 1;
  m->entries[0] = tcp4(port);
  if (!send_message(wire::kWorkerFdBroker, m.get(), sizeof(*m), {}).ok()) fail("send Open");
  auto r = std::make_unique<wire::ListenersOpenedMsg>();
  auto got = receive_message(wire::kWorkerFdBroker, r.get(), sizeof(*r), kScmMaxFds);
  if (!got.ok() || got->len == 0) {
    std::fprintf(stderr, "fake-worker: no reply to OpenListeners\n");
    std::exit(98);
  }
  std::fprintf(stderr, "fake-worker: open 127.0.0.1:%u status %d fds %zu\n", port, r->status[0],
               got->fds.size());
  for (UniqueFd& fd : got->fds) g_kept.push_back(std::move(fd));
}

/// Sends a PeerQuery with a TCP socket whose last close would linger for 30 s:
/// SO_LINGER on, and bytes queued that its peer (kept here, never reading)
/// does not take. The fake worker keeps no copy of that socket, so the
/// broker's close is the last one.
void peer_query_tcp() {
  const int small = 4096;
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  if (::setsockopt(listener.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) != 0 ||
      ::bind(listener.get(), reinterpret_cast<sockaddr*>(&sin), len) != 0 ||
      ::listen(listener.get(), 1) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    fail("peer-query-tcp listener");
  }
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) != 0 ||
      ::connect(sock.get(), reinterpret_cast<sockaddr*>(&sin), len) != 0) {
    fail("peer-query-tcp connect");
  }
  UniqueFd peer(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!peer.valid()) fail("peer-query-tcp accept");
  char chunk[4096] = {};
  for (int i = 0; i < 1024; ++i) {  // bounded: both buffers fill after a few KiB
    if (::send(sock.get(), chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL) <= 0) break;
  }
  struct linger lg = {1, 30};
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0) fail("SO_LINGER");
  wire::PeerQueryMsg q = {};
  q.header = wire::header(wire::BrokerMsg::kPeerQuery, ++g_sequence);
  const int fds[] = {sock.get()};
  g_kept.push_back(std::move(listener));
  g_kept.push_back(std::move(peer));
  // Before the send: the broker kills the fake worker as soon as it reads it.
  std::fprintf(stderr, "fake-worker: sending a PeerQuery with a lingering TCP socket\n");
  if (!send_message(wire::kWorkerFdBroker, &q, sizeof(q), fds).ok()) fail("send PeerQuery");
  sock.reset();
}

/// Sends up to `count` PeerQuery requests (each with the control socket, fd
/// 4) without reading a reply, until the channel has had no room for 1 s;
/// then waits `ms` milliseconds and reads every reply (each wait bounded by
/// 10 s). Reports how many were sent and answered.
void stall(size_t count, int ms) {
  size_t sent = 0;
  for (; sent < count; ++sent) {
    wire::PeerQueryMsg m = {};
    m.header = wire::header(wire::BrokerMsg::kPeerQuery, g_sequence + 1);
    const int fds[] = {wire::kWorkerFdControl};
    auto ok = send_message(wire::kWorkerFdBroker, &m, sizeof(m), fds, MSG_DONTWAIT);
    if (!ok) {
      if (ok.error().err != EAGAIN) fail("send PeerQuery");
      // Full: sluiced may just be behind. No room for a whole second means
      // it stopped reading, its replies having filled the other way.
      struct pollfd p = {wire::kWorkerFdBroker, POLLOUT, 0};
      if (::poll(&p, 1, 1000) <= 0) break;
      --sent;  // try this one again
      continue;
    }
    ++g_sequence;
  }
  std::fprintf(stderr, "fake-worker: stalling with %zu queries sent\n", sent);
  ::poll(nullptr, 0, ms);
  size_t answered = 0;
  while (answered < sent) {
    struct pollfd p = {wire::kWorkerFdBroker, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    wire::PeerReplyMsg r;
    auto got = receive_message(wire::kWorkerFdBroker, &r, sizeof(r), 0);
    if (!got.ok() || got->len != sizeof(r)) break;
    ++answered;
  }
  std::fprintf(stderr, "fake-worker: stall answered %zu of %zu\n", answered, sent);
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  using namespace sluice;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::string args;
  for (int i = 1; i < argc; ++i) args += std::string(" ") + argv[i];
  std::fprintf(stderr, "fake-worker: argv%s\n", args.c_str());
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "-t") == 0 && std::strcmp(argv[i + 1], "check-env") == 0) {
      check_env();  // before Hello: nothing opened yet
    }
  }
  hello();
  std::vector<uint16_t> grants;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strncmp(argv[i + 1], "grant-tcp4:", 11) == 0) {
      grants.push_back(static_cast<uint16_t>(std::atoi(argv[i + 1] + 11)));
    }
  }
  initial_ports(grants);
  const char audit[] = "fake-worker audit line\n";
  if (::write(wire::kWorkerFdAudit, audit, sizeof(audit) - 1) < 0) fail("audit write");
  for (int i = 1; i + 1 < argc; ++i) {
    std::string cmd = argv[i + 1];
    if (argv[i][0] != '-' || argv[i][1] == 'd' || argv[i][1] == 'q') continue;
    ++i;
    if (cmd.rfind("open-tcp4:", 0) == 0) {
      open_tcp4(static_cast<uint16_t>(std::atoi(cmd.c_str() + 10)));
    } else if (cmd.rfind("stall:", 0) == 0) {
      const char* rest = cmd.c_str() + 6;
      const char* colon = std::strchr(rest, ':');
      if (colon == nullptr) fail("stall:N:MS");
      stall(static_cast<size_t>(std::atoi(rest)), std::atoi(colon + 1));
    } else if (cmd == "violate") {
      open_tcp4(0);
    } else if (cmd == "open-sockets") {
      wire::OpenSocketsMsg m = {};
      m.header = wire::header(wire::BrokerMsg::kOpenSockets, ++g_sequence);
      m.family = static_cast<uint8_t>(wire::WireFamily::kInet);
      m.proto = static_cast<uint8_t>(wire::WireProto::kTcp);
      m.count = 4;
      if (!send_message(wire::kWorkerFdBroker, &m, sizeof(m), {}).ok()) fail("send OpenSockets");
    } else if (cmd == "peer-query-tcp") {
      peer_query_tcp();
    } else if (cmd.rfind("exit:", 0) == 0) {
      std::fprintf(stderr, "fake-worker: exiting with %d\n", std::atoi(cmd.c_str() + 5));
      return std::atoi(cmd.c_str() + 5);
    }
  }
  std::fprintf(stderr, "fake-worker: waiting\n");
  struct pollfd p = {wire::kWorkerFdBroker, POLLIN, 0};
  ::poll(&p, 1, 60000);  // bounded: a test never waits longer than this
  return 0;
}
