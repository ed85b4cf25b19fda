// The pure parts of sluiced's service-manager support: NOTIFY_SOCKET
// addresses, WATCHDOG_USEC/WATCHDOG_PID, the notify messages and their rate
// limit and watchdog rules (over a real datagram socketpair, with time passed
// in), LISTEN_* parsing, and the check of an activated socket.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "broker/sd_notify.h"
#include "broker/socket_activation.h"
#include "schema/broker_wire.h"

namespace sluice {
namespace {

constexpr uint64_t kMs = 1000000ULL;

TEST(NotifyAddress, PathAndAbstract) {
  auto path = parse_notify_socket("/run/systemd/notify");
  ASSERT_TRUE(path.ok());
  EXPECT_STREQ(path->addr.sun_path, "/run/systemd/notify");
  EXPECT_EQ(path->len, offsetof(sockaddr_un, sun_path) + 20);
  auto abstract = parse_notify_socket("@sd-notify/123");
  ASSERT_TRUE(abstract.ok());
  EXPECT_EQ(abstract->addr.sun_path[0], '\0');
  EXPECT_EQ(std::string(abstract->addr.sun_path + 1, 13), "sd-notify/123");
  EXPECT_EQ(abstract->len, offsetof(sockaddr_un, sun_path) + 14);
}

TEST(NotifyAddress, RefusesWhatIsNotAnAddress) {
  EXPECT_FALSE(parse_notify_socket("").ok());
  EXPECT_FALSE(parse_notify_socket("@").ok());
  EXPECT_FALSE(parse_notify_socket("relative/notify").ok());
  EXPECT_FALSE(parse_notify_socket("/" + std::string(107, 'a')).ok());
  EXPECT_TRUE(parse_notify_socket("/" + std::string(106, 'a')).ok());
  EXPECT_FALSE(parse_notify_socket("@" + std::string(108, 'a')).ok());
  EXPECT_TRUE(parse_notify_socket("@" + std::string(107, 'a')).ok());
}

TEST(Watchdog, ForThisProcessOnly) {
  EXPECT_EQ(*parse_watchdog(nullptr, nullptr, 42), 0u);
  EXPECT_EQ(*parse_watchdog("30000000", nullptr, 42), 30000000u);
  EXPECT_EQ(*parse_watchdog("30000000", "42", 42), 30000000u);
  EXPECT_EQ(*parse_watchdog("30000000", "43", 42), 0u);
  EXPECT_FALSE(parse_watchdog("0", "42", 42).ok());
  EXPECT_FALSE(parse_watchdog("-5", "42", 42).ok());
  EXPECT_FALSE(parse_watchdog("30s", "42", 42).ok());
  EXPECT_FALSE(parse_watchdog("99999999999999999999999", "42", 42).ok());
  EXPECT_FALSE(parse_watchdog("1000", "x", 42).ok());
}

TEST(NotifyMessages, Text) {
  EXPECT_EQ(status_line(7, 1), "STATUS=serving generation 7, 1 listener");
  EXPECT_EQ(status_line(7, 3), "STATUS=serving generation 7, 3 listeners");
  EXPECT_EQ(ready_message(1, 0, 99),
            "READY=1\nSTATUS=serving generation 1, 0 listeners\nMAINPID=99");
}

/// A socketpair standing in for the manager's socket.
struct Manager {
  int fds[2] = {-1, -1};
  Manager() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds), 0); }
  ~Manager() {
    close(fds[0]);
    close(fds[1]);
  }
  /// Everything sent so far, one string per datagram.
  std::vector<std::string> take() {
    std::vector<std::string> out;
    char buf[512];
    for (int i = 0; i < 1000; ++i) {
      ssize_t n = recv(fds[1], buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) break;
      out.emplace_back(buf, static_cast<size_t>(n));
    }
    return out;
  }
  /// Fills the manager's queue with 1-byte datagrams until the kernel has no
  /// room (bounded); returns how many went in.
  int fill() {
    int n = 0;
    while (n < 100000 && send(fds[0], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) ++n;
    EXPECT_EQ(errno, EAGAIN);
    return n;
  }
  /// Reads the `n` fillers of fill() (take() reads at most 1000 at a time);
  /// returns how many it read.
  size_t take_fillers(int n) {
    size_t taken = 0;
    // Limit: the fillers, read 1000 at a time at most.
    for (int i = 0; i < 1000 && taken < static_cast<size_t>(n); ++i) taken += take().size();
    return taken;
  }
};

TEST(Notifier, ReadyOnceThenRateLimitedStatus) {
  Manager m;
  Notifier n(m.fds[0], 0, 7);
  const uint64_t t0 = 1000 * kMs;
  n.update(t0, false, 0, 0, 0);
  EXPECT_TRUE(m.take().empty());  // nothing before the worker reports
  EXPECT_EQ(n.timeout_ms(t0), -1);
  n.update(t0, true, 1, 2, t0);
  EXPECT_EQ(m.take(), std::vector<std::string>{ready_message(1, 2, 7)});
  n.update(t0 + 100 * kMs, true, 2, 3, t0 + 100 * kMs);
  n.update(t0 + 200 * kMs, true, 3, 3, t0 + 200 * kMs);
  EXPECT_TRUE(m.take().empty());  // within the second after READY
  EXPECT_EQ(n.timeout_ms(t0 + 200 * kMs), 800);
  n.update(t0 + 1000 * kMs, true, 3, 3, t0 + 1000 * kMs);
  EXPECT_EQ(m.take(), std::vector<std::string>{status_line(3, 3)});  // only the latest
  n.update(t0 + 1500 * kMs, true, 3, 3, t0 + 1500 * kMs);
  EXPECT_TRUE(m.take().empty());  // nothing changed
  n.stopping();
  EXPECT_EQ(m.take(), std::vector<std::string>{"STOPPING=1\nSTATUS=stopping"});
}

// A regression test: READY=1 that finds the manager's queue full (fd store
// puts filled it) is kept and sent once there is room, or the start fails.
TEST(Notifier, ReadyWaitsForRoomInTheManagersQueue) {
  Manager m;
  Notifier n(m.fds[0], 0, 7);
  const int fillers = m.fill();
  const uint64_t t0 = 1000 * kMs;
  n.update(t0, true, 1, 2, t0);
  EXPECT_FALSE(n.ready_sent());
  EXPECT_TRUE(n.ready_waits());
  EXPECT_EQ(n.timeout_ms(t0), 10);
  // The manager reads: room.
  EXPECT_EQ(m.take_fillers(fillers), static_cast<size_t>(fillers));
  n.update(t0 + 5 * kMs, true, 1, 2, t0);  // not yet due
  EXPECT_TRUE(m.take().empty());
  n.update(t0 + 10 * kMs, true, 1, 2, t0);
  EXPECT_TRUE(n.ready_sent());
  EXPECT_FALSE(n.ready_waits());
  EXPECT_EQ(m.take(), std::vector<std::string>{ready_message(1, 2, 7)});
}

// systemd stays "reloading" until the READY=1 after RELOADING=1 arrives: a
// reload's two messages that find the manager's queue full are held, in
// order, and go out once it has read.
TEST(Notifier, AReloadsMessagesWaitForRoomInTheManagersQueue) {
  Manager m;
  Notifier n(m.fds[0], 0, 7);
  const uint64_t t0 = 1000 * kMs;
  n.update(t0, true, 1, 2, t0);
  ASSERT_EQ(m.take(), std::vector<std::string>{ready_message(1, 2, 7)});
  const int fillers = m.fill();
  n.reloading(t0 + 1 * kMs);
  n.reloaded("policy reloaded");
  EXPECT_TRUE(n.ready_waits());
  EXPECT_EQ(n.timeout_ms(t0 + 1 * kMs), 10);
  n.update(t0 + 11 * kMs, true, 1, 2, t0 + 11 * kMs);  // due, still full: both stay
  EXPECT_TRUE(n.ready_waits());
  EXPECT_EQ(n.timeout_ms(t0 + 11 * kMs), 10);
  ASSERT_EQ(m.take_fillers(fillers), static_cast<size_t>(fillers));
  n.update(t0 + 15 * kMs, true, 1, 2, t0 + 15 * kMs);  // not yet due
  EXPECT_TRUE(m.take().empty());
  n.update(t0 + 21 * kMs, true, 1, 2, t0 + 21 * kMs);
  EXPECT_FALSE(n.ready_waits());
  EXPECT_EQ(m.take(), (std::vector<std::string>{reloading_message(t0 + 1 * kMs),
                                                "READY=1\nSTATUS=policy reloaded"}));
}

// The first READY=1 and a reload's messages share one queue: a reload that
// begins while READY=1 waits for room goes out after it, never ahead (a
// RELOADING=1 before READY=1 would confuse systemd), and ends with READY=1.
TEST(Notifier, AReloadWhileReadyWaitsFollowsIt) {
  Manager m;
  Notifier n(m.fds[0], 0, 7);
  const int fillers = m.fill();
  const uint64_t t0 = 1000 * kMs;
  n.update(t0, true, 1, 2, t0);
  n.reloading(t0 + 1 * kMs);
  n.reloaded("policy reloaded");
  EXPECT_FALSE(n.ready_sent());
  EXPECT_TRUE(n.ready_waits());
  ASSERT_EQ(m.take_fillers(fillers), static_cast<size_t>(fillers));
  n.update(t0 + 10 * kMs, true, 1, 2, t0 + 10 * kMs);
  EXPECT_TRUE(n.ready_sent());
  EXPECT_FALSE(n.ready_waits());
  EXPECT_EQ(m.take(),
            (std::vector<std::string>{ready_message(1, 2, 7), reloading_message(t0 + 1 * kMs),
                                      "READY=1\nSTATUS=policy reloaded"}));
}

TEST(Notifier, AWorkerRestartSendsNoSecondReadyAndCountsInStatus) {
  Manager m;
  Notifier n(m.fds[0], 0, 7);
  const uint64_t t0 = 1000 * kMs;
  n.update(t0, true, 4, 2, t0);
  EXPECT_EQ(m.take(), std::vector<std::string>{ready_message(4, 2, 7)});
  // A new worker took over the same generation and listeners.
  n.set_restarts(1);
  n.update(t0 + 1000 * kMs, true, 4, 2, t0 + 1000 * kMs);
  EXPECT_EQ(m.take(), std::vector<std::string>{status_line(4, 2, 1)});
  EXPECT_EQ(status_line(4, 2, 1), "STATUS=serving generation 4, 2 listeners, 1 worker restart");
  EXPECT_EQ(status_line(4, 1, 3), "STATUS=serving generation 4, 1 listener, 3 worker restarts");
  n.update(t0 + 2000 * kMs, true, 4, 2, t0 + 2000 * kMs);
  EXPECT_TRUE(m.take().empty());  // no READY=1 again, nothing changed
}

// While no worker serves (between a death and the replacement's first
// report), STATUS= says so and never "serving"; at a give-up, STOPPING=1.
TEST(Notifier, NoServingStatusWhileNoWorkerServes) {
  Manager m;
  Notifier n(m.fds[0], 0, 7);
  const uint64_t t0 = 1000 * kMs;
  n.update(t0, true, 4, 2, t0);
  ASSERT_EQ(m.take(), std::vector<std::string>{ready_message(4, 2, 7)});
  n.worker_down(t0 + 100 * kMs, "no worker serves: the worker exited with status 1");
  EXPECT_TRUE(n.worker_is_down());
  EXPECT_EQ(m.take(),
            std::vector<std::string>{"STATUS=no worker serves: the worker exited with status 1"});
  // A restart is counted, and the old report is still there: no "serving".
  n.set_restarts(1);
  n.update(t0 + 2000 * kMs, true, 4, 2, t0 + 100 * kMs);
  n.update(t0 + 3000 * kMs, true, 4, 2, t0 + 100 * kMs);
  EXPECT_TRUE(m.take().empty());
  // The new worker reports: "serving" again.
  n.worker_serves();
  EXPECT_FALSE(n.worker_is_down());
  n.update(t0 + 3100 * kMs, true, 4, 2, t0 + 3100 * kMs);
  EXPECT_EQ(m.take(), std::vector<std::string>{status_line(4, 2, 1)});
  n.worker_serves();  // nothing more to say
  n.update(t0 + 5000 * kMs, true, 4, 2, t0 + 5000 * kMs);
  EXPECT_TRUE(m.take().empty());
  n.stopping("new workers die at start; see the log");
  EXPECT_EQ(m.take(), std::vector<std::string>{
                          "STOPPING=1\nSTATUS=stopping: new workers die at start; see the log"});
}

TEST(Notifier, ReloadSaysReloadingThenReadyOnlyOnceReady) {
  EXPECT_EQ(reloading_message(1234567890123ULL),
            "RELOADING=1\nMONOTONIC_USEC=1234567890\nSTATUS=reloading the policy");
  Manager m;
  Notifier n(m.fds[0], 0, 7);
  // Before the first READY=1 (the initial rules are not served yet): STATUS only.
  n.reloading(5 * kMs);
  n.reloaded("policy reloaded from P: 1 bind, 0 target and 0 control line(s)");
  EXPECT_EQ(m.take(),
            (std::vector<std::string>{
                "RELOADING=1\nMONOTONIC_USEC=5000\nSTATUS=reloading the policy",
                "STATUS=policy reloaded from P: 1 bind, 0 target and 0 control line(s)"}));
  n.update(10 * kMs, true, 1, 1, 10 * kMs);
  m.take();
  n.reloading(20 * kMs);
  n.reloaded("policy reload failed: P line 1: \n bad");
  EXPECT_EQ(m.take(), (std::vector<std::string>{
                          "RELOADING=1\nMONOTONIC_USEC=20000\nSTATUS=reloading the policy",
                          "READY=1\nSTATUS=policy reload failed: P line 1: \\x0a bad"}));
}

TEST(Notifier, WatchdogNeedsAFreshWorkerReport) {
  Manager m;
  Notifier n(m.fds[0], 1000000, 7);  // WATCHDOG_USEC 1 s: a ping every 500 ms
  const uint64_t t0 = 1000 * kMs;
  n.update(t0, false, 0, 0, 0);
  EXPECT_EQ(m.take(), std::vector<std::string>{"WATCHDOG=1"});  // starting: sluiced lives
  EXPECT_EQ(n.timeout_ms(t0), 500);
  n.update(t0 + 100 * kMs, true, 1, 1, t0 + 100 * kMs);
  EXPECT_EQ(m.take().size(), 1u);  // READY only
  n.update(t0 + 500 * kMs, true, 1, 1, t0 + 100 * kMs);
  EXPECT_EQ(m.take(), std::vector<std::string>{"WATCHDOG=1"});
  // The last report is older than kWorkerStatusStaleMs: no ping.
  const uint64_t late = t0 + 100 * kMs + wire::kWorkerStatusStaleMs * kMs + 1;
  n.update(late, true, 1, 1, t0 + 100 * kMs);
  EXPECT_TRUE(m.take().empty());
  // A fresh report feeds it again, one interval later.
  n.update(late + 500 * kMs, true, 1, 1, late + 400 * kMs);
  EXPECT_EQ(m.take(), std::vector<std::string>{"WATCHDOG=1"});
}

TEST(Notifier, DisabledSendsNothing) {
  Notifier n(-1, 1000000, 7);
  EXPECT_FALSE(n.enabled());
  n.update(1, true, 1, 1, 1);
  n.stopping();
  EXPECT_EQ(n.timeout_ms(1), -1);
  EXPECT_FALSE(n.ready_sent());
}

TEST(ListenFds, Names) {
  auto names = parse_listen_fdnames("control:pesto", 2);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"control", "pesto"}));
  EXPECT_EQ(*parse_listen_fdnames(nullptr, 2), (std::vector<std::string>{"unknown", "unknown"}));
  EXPECT_FALSE(parse_listen_fdnames("control", 2).ok());
  EXPECT_FALSE(parse_listen_fdnames("a:b:c", 2).ok());
  EXPECT_FALSE(parse_listen_fdnames("a::b", 3).ok());
  EXPECT_FALSE(parse_listen_fdnames("a\nb", 1).ok());
  EXPECT_FALSE(parse_listen_fdnames(std::string(256, 'a').c_str(), 1).ok());
}

TEST(ListenFds, OnlyForThisPid) {
  auto env = parse_listen_env("42", "1", "control", 42);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->count, 1);
  EXPECT_EQ(parse_listen_env("43", "1", "control", 42)->count, 0);
  EXPECT_EQ(parse_listen_env(nullptr, "1", "control", 42)->count, 0);
  EXPECT_FALSE(parse_listen_env("42", "x", "control", 42).ok());
  // Past kMaxListenFds (the unit's LimitNOFILE): refused before any use.
  EXPECT_FALSE(parse_listen_env("42", "65537", nullptr, 42).ok());
  EXPECT_EQ(parse_listen_env("42", "65536", nullptr, 42)->count, 65536);
  EXPECT_FALSE(parse_listen_env("4x", "1", "control", 42).ok());
}

TEST(ListenFds, CheckActivatedSocket) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair), 0);
  EXPECT_FALSE(check_activated_socket(pair[0], "control").ok());
  close(pair[0]);
  close(pair[1]);
  int stream = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto not_listening = check_activated_socket(stream, "control");
  ASSERT_FALSE(not_listening.ok());
  EXPECT_NE(not_listening.error().message.find("does not listen"), std::string::npos);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  ASSERT_EQ(bind(stream, reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)), 0);  // autobind
  ASSERT_EQ(listen(stream, 1), 0);
  EXPECT_TRUE(check_activated_socket(stream, "control").ok());
  close(stream);
  EXPECT_FALSE(check_activated_socket(0 + 1000, "control").ok());  // not open
}

}  // namespace
}  // namespace sluice
