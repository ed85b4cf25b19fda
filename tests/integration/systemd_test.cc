// sluiced under a service manager, emulated exactly: the test is systemd's
// side of sd_notify(3) (a SOCK_DGRAM socket named by NOTIFY_SOCKET, as a path
// and as an abstract name, with WATCHDOG_USEC/WATCHDOG_PID) and of socket
// activation (a listening socket on fd 3 with LISTEN_FDS, LISTEN_PID set in
// the child after fork and LISTEN_FDNAMES). Waits are generous and bounded;
// nothing passes or fails by the machine's speed.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "tests/integration/container.h"
#include "tests/integration/daemon.h"
#include "tests/integration/service_manager.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

using Clock = std::chrono::steady_clock;

/// The service manager's notify socket: bound to a path in a temporary
/// directory, or to an abstract name.
class NotifySocket {
 public:
  /// Binds the socket; `abstract` picks an abstract name.
  explicit NotifySocket(bool abstract) {
    fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd_.valid());
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    socklen_t len;
    if (abstract) {
      name_ = "@sluice-test-notify-" + std::to_string(getpid());
      std::memcpy(addr.sun_path + 1, name_.data() + 1, name_.size() - 1);
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    } else {
      char tmpl[] = "/tmp/sluice-notify-XXXXXX";
      dir_ = mkdtemp(tmpl);
      name_ = dir_ + "/notify.sock";
      std::memcpy(addr.sun_path, name_.c_str(), name_.size() + 1);
      len = sizeof(addr);
    }
    EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), len), 0) << strerror(errno);
  }
  ~NotifySocket() {
    if (!dir_.empty()) {
      unlink(name_.c_str());
      rmdir(dir_.c_str());
    }
  }
  /// The NOTIFY_SOCKET value.
  const std::string& name() const { return name_; }

  /// Receives datagrams for at most `timeout_ms` until one contains
  /// `needle`; returns it, or "" on timeout. Every datagram is kept in
  /// all().
  std::string wait_for(const std::string& needle, int timeout_ms = 10000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (int i = 0; i < 100000 && Clock::now() < deadline; ++i) {
      std::string msg = receive(50);
      if (!msg.empty() && msg.find(needle) != std::string::npos) return msg;
    }
    return "";
  }
  /// Counts datagrams containing `needle` received during `ms`.
  int count_for(const std::string& needle, int ms) {
    int n = 0;
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    for (int i = 0; i < 100000 && Clock::now() < deadline; ++i) {
      std::string msg = receive(50);
      if (msg.find(needle) != std::string::npos) ++n;
    }
    return n;
  }
  /// Drops what is queued.
  void drain() {
    for (int i = 0; i < 10000 && !receive(0).empty(); ++i) {
    }
  }
  const std::vector<std::string>& all() const { return all_; }

 private:
  /// One datagram within `timeout_ms`, or "".
  std::string receive(int timeout_ms) {
    timeval tv = {0, timeout_ms * 1000};
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    ssize_t n = recv(fd_.get(), buf, sizeof(buf), timeout_ms == 0 ? MSG_DONTWAIT : 0);
    if (n <= 0) return "";
    all_.emplace_back(buf, static_cast<size_t>(n));
    return all_.back();
  }

  UniqueFd fd_;
  std::string dir_, name_;
  std::vector<std::string> all_;
};

/// Extracts "generation N" and "M listener(s)" from a STATUS= line.
bool parse_status(const std::string& msg, uint64_t* generation, uint64_t* listeners) {
  std::smatch m;
  static const std::regex re("STATUS=serving generation ([0-9]+), ([0-9]+) listener");
  if (!std::regex_search(msg, m, re)) return false;
  *generation = std::stoull(m[1]);
  *listeners = std::stoull(m[2]);
  return true;
}

/// Sets the service manager's variables in the child for `notify`.
void notify_env(Daemon& d, const std::string& notify, bool watchdog) {
  d.set_child_setup([notify, watchdog] {
    setenv("NOTIFY_SOCKET", notify.c_str(), 1);
    if (watchdog) {
      setenv("WATCHDOG_USEC", "1000000", 1);  // a ping every 500 ms
      setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
    }
  });
}

/// The whole notify life cycle for one kind of NOTIFY_SOCKET address.
void notify_life_cycle(bool abstract) {
  NotifySocket manager(abstract);
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  ASSERT_TRUE(target.valid());
  Daemon d;
  notify_env(d, manager.name(), true);
  d.start({"-t", "127.0.0.1/18080:18000"});

  // READY=1 means the initial rules forward: a connection works at once.
  std::string ready = manager.wait_for("READY=1");
  ASSERT_FALSE(ready.empty()) << d.log();
  EXPECT_NE(ready.find("MAINPID=" + std::to_string(d.pid())), std::string::npos) << ready;
  {
    UniqueFd c = connect_tcp("127.0.0.1", 18080, 2000);
    ASSERT_TRUE(c.valid());
    ASSERT_TRUE(accept_one(target.get(), 5000).valid());
  }
  uint64_t generation = 0, listeners = 0;
  ASSERT_TRUE(parse_status(ready, &generation, &listeners)) << ready;
  EXPECT_EQ(generation, 1u);
  EXPECT_EQ(listeners, 1u);

  // A commit with one more rule: STATUS follows (within its 1 s rate limit).
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/18081:18000"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string status = manager.wait_for("generation 2");
  ASSERT_FALSE(status.empty()) << d.log();
  ASSERT_TRUE(parse_status(status, &generation, &listeners)) << status;
  EXPECT_EQ(listeners, 2u);

  // The watchdog is fed while both processes serve...
  EXPECT_GE(manager.count_for("WATCHDOG=1", 2500), 2);
  // ...and no longer once the worker is stopped (its heartbeat goes stale
  // after 3 s; 5 s covers that and one more interval).
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  manager.drain();
  EXPECT_EQ(manager.count_for("WATCHDOG=1", 2000), 0);
  ASSERT_EQ(kill(worker, SIGCONT), 0);
  // Fed again once it runs.
  EXPECT_FALSE(manager.wait_for("WATCHDOG=1", 10000).empty());

  d.signal(SIGTERM);
  EXPECT_FALSE(manager.wait_for("STOPPING=1").empty());
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(Systemd, NotifyOnAPathSocket) {
  notify_life_cycle(false);
}

TEST(Systemd, NotifyOnAnAbstractSocket) {
  notify_life_cycle(true);
}

TEST(Systemd, ReloadSaysReloadingThenReady) {
  NotifySocket manager(false);
  PolicyFileFixture policy("bind allow tcp 18080-18081 127.0.0.1\n");
  Daemon d;
  notify_env(d, manager.name(), false);
  d.start({"--policy", policy.path(), "-t", "127.0.0.1/18080:18000"});
  ASSERT_FALSE(manager.wait_for("READY=1").empty()) << d.log();

  // A good file: RELOADING=1 with the monotonic clock, then READY=1.
  policy.rewrite("bind allow tcp 18080 127.0.0.1\n");
  struct timespec before;
  clock_gettime(CLOCK_MONOTONIC, &before);
  d.signal(SIGHUP);
  std::string reloading = manager.wait_for("RELOADING=1");
  ASSERT_FALSE(reloading.empty()) << d.log();
  std::smatch m;
  static const std::regex usec_re("MONOTONIC_USEC=([0-9]+)");
  ASSERT_TRUE(std::regex_search(reloading, m, usec_re)) << reloading;
  const uint64_t usec = std::stoull(m[1]);
  const uint64_t before_usec = static_cast<uint64_t>(before.tv_sec) * 1000000ULL +
                               static_cast<uint64_t>(before.tv_nsec) / 1000;
  EXPECT_GE(usec, before_usec) << reloading;
  std::string ready = manager.wait_for("READY=1");
  ASSERT_FALSE(ready.empty()) << d.log();
  EXPECT_NE(ready.find("STATUS=policy reloaded from " + policy.path()), std::string::npos) << ready;

  // A broken file: READY=1 still (the old policy serves), and STATUS says why.
  policy.rewrite("bind allow tcp 18080 nowhere\n");
  d.signal(SIGHUP);
  ASSERT_FALSE(manager.wait_for("RELOADING=1").empty()) << d.log();
  ready = manager.wait_for("READY=1");
  ASSERT_FALSE(ready.empty()) << d.log();
  EXPECT_NE(ready.find("STATUS=policy reload failed, the previous policy stays in force: " +
                       policy.path() + " line 1"),
            std::string::npos)
      << ready;
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(Systemd, NoWatchdogWithoutWatchdogUsec) {
  NotifySocket manager(false);
  Daemon d;
  notify_env(d, manager.name(), false);
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_FALSE(manager.wait_for("READY=1").empty()) << d.log();
  EXPECT_EQ(manager.count_for("WATCHDOG=1", 1500), 0);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(Systemd, AStoppedNamespaceHelperNeverStarvesTheWatchdog) {
  // A commit's SPLICE listener waits up to 5 s for a stopped namespace
  // helper, and the worker's heartbeats wait unread behind it meanwhile.
  Container box({});
  ASSERT_GT(box.pid(), 0);
  NotifySocket manager(false);
  Daemon d;
  notify_env(d, manager.name(), true);  // a ping every 500 ms, stale after 3 s
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "none", "-T", "29000:19000"});
  ASSERT_FALSE(manager.wait_for("READY=1").empty()) << d.log();
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const pid_t helper = d.helper_pid();
  ASSERT_GT(helper, 0) << d.log();
  ASSERT_EQ(kill(helper, SIGSTOP), 0);
  RunResult commit;
  std::thread committer([&d, &commit] {
    commit = d.ctl({"--timeout", "60", "-A", "-T", "29001:19000"});
  });
  // Past 3.2 s of the wait the last heartbeat read is older than 3 s, so
  // without the wait counted as a heartbeat no ping would go out; the
  // window ends before the wait does (5 s).
  manager.count_for("WATCHDOG=1", 3200);
  EXPECT_GE(manager.count_for("WATCHDOG=1", 1500), 1) << d.log();
  committer.join();
  EXPECT_NE(commit.status, 0);
  EXPECT_NE((commit.out + commit.err).find("ETIMEDOUT"), std::string::npos)
      << commit.out << commit.err;
  ASSERT_EQ(kill(helper, SIGCONT), 0);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

/// Passes `fd` as fd 3 of the child with LISTEN_PID set there, as systemd.
void activate(Daemon& d, int fd, const std::string& names) {
  d.set_child_setup([fd, names] {
    if (fd == 3) {
      fcntl(3, F_SETFD, 0);
    } else {
      dup2(fd, 3);  // dup2 clears CLOEXEC on 3
    }
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDNAMES", names.c_str(), 1);
  });
}

TEST(Systemd, SocketActivationOfTheControlSocket) {
  Daemon d;
  UniqueFd sock = unit_socket(d.socket_path());
  activate(d, sock.get(), "control");
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/18081:18000"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = d.ctl();
  EXPECT_NE(r.out.find("18081"), std::string::npos) << r.out;
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
  // The socket file belongs to the .socket unit: sluiced leaves it.
  EXPECT_EQ(access(d.socket_path().c_str(), F_OK), 0);
}

TEST(Systemd, SocketActivationOfTheControlAndPestoSockets) {
  Daemon d;
  UniqueFd control = unit_socket(d.socket_path());
  UniqueFd pesto = unit_socket(d.pesto_path());
  const int c = control.get(), p = pesto.get();
  d.set_child_setup([c, p] {
    // Above 4 first, so that neither lands on the other's number.
    const int hc = fcntl(c, F_DUPFD, 100), hp = fcntl(p, F_DUPFD, 100);
    dup2(hc, 3);
    dup2(hp, 4);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDNAMES", "control:pesto", 1);
  });
  d.start({"-t", "127.0.0.1/18080:18000", "--pesto-socket", d.pesto_path()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // The pesto socket is served: a client is accepted (and spoken to).
  UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, d.pesto_path().c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv = {10, 0};
  setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char hello[8];
  EXPECT_GT(recv(client.get(), hello, sizeof(hello), 0), 0) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
  // Both files belong to the socket unit: sluiced leaves them.
  EXPECT_EQ(access(d.socket_path().c_str(), F_OK), 0);
  EXPECT_EQ(access(d.pesto_path().c_str(), F_OK), 0);
}

TEST(Systemd, SocketActivationClosesUnknownFds) {
  Daemon d;
  UniqueFd sock = unit_socket(d.socket_path() + "-metrics");
  activate(d, sock.get(), "metrics");
  d.start({"-t", "127.0.0.1/18080:18000"});
  // Its own control socket is made instead.
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_NE(d.log().find("fd 3 named metrics is not one sluiced uses"), std::string::npos)
      << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(Systemd, AControlSocketUnitOfAnotherNameSaysToNameIt) {
  // The unit's socket is the control socket's path, but under systemd's
  // default name (the unit's): sluiced cannot use it, and the path is taken.
  Daemon d;
  UniqueFd sock = unit_socket(d.socket_path());
  activate(d, sock.get(), "sluiced.socket");
  d.start({"-t", "127.0.0.1/18080:18000"});
  EXPECT_EQ(d.wait_exit(), 1) << d.log();
  EXPECT_NE(d.log().find("fd 3 named sluiced.socket is not one sluiced uses"), std::string::npos)
      << d.log();
  EXPECT_NE(d.log().find("name it in its .socket unit with FileDescriptorName=control"),
            std::string::npos)
      << d.log();
}

TEST(Systemd, SocketActivationRefusesAWrongSocketType) {
  Daemon d;
  UniqueFd sock = unit_socket(d.socket_path(), SOCK_DGRAM, false);
  activate(d, sock.get(), "control");
  d.start({"-t", "127.0.0.1/18080:18000"});
  EXPECT_EQ(d.wait_exit(), 1) << d.log();
  EXPECT_NE(d.log().find("not a UNIX stream socket"), std::string::npos) << d.log();
}

}  // namespace
}  // namespace sluice::test
