// Commits against the real daemon, over the real control socket: hitless
// keeps under load, rollback on a bind failure, compare-and-swap, dry runs,
// rebinds (hitless too, and never a moment for another process to take the
// port) and a 10,000-port table. The server's checks are exercised without
// any client-side validation: these tests send tables as they are.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "schema/broker_wire.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/kept_port.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

/// A rule listening on 127.0.0.1:`port` (or `first`-`last`) to loopback `to`.
Rule loopback_rule(uint16_t first, uint16_t last, uint16_t to, const char* listen = "127.0.0.1") {
  Rule r;
  parse_addr(listen, &r.listen);
  r.first = first;
  r.last = last;
  r.to = to;
  return r;
}

/// Commits `tables` at `generation`; returns the result.
control::CommitResult commit(ControlConnection& c, const TableSet& tables, uint64_t generation,
                             bool dry_run = false) {
  control::CommitRequest req;
  req.tables = tables;
  req.expected_generation = generation;
  req.dry_run = dry_run;
  req.comment = "commit_test";
  return commit_request(c, req);
}

TEST(Commit, KeptPortNeverRefusesAcross200Commits) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  UniqueFd echo_target = listen_tcp("127.0.0.1", 18001);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000", "-t", "127.0.0.1/18070:18001"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // An established connection through another kept rule echoes throughout.
  std::thread echo([&] {
    UniqueFd c = accept_one(echo_target.get());
    char buf[64];
    for (ssize_t n; c.valid() && (n = recv(c.get(), buf, sizeof(buf), 0)) > 0;) {
      if (send(c.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
    }
  });
  UniqueFd established = connect_tcp("127.0.0.1", 18070);
  ASSERT_TRUE(established.valid());
  int echoes = 0;
  // The target accepts and closes; the prober counts what the kept port does.
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    while (!stop) {
      UniqueFd c = accept_one(target.get(), 100);
    }
  });
  KeptPortProber prober(18080, KeptPortProber::Target::kClose);
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  uint64_t gen = get_state(c).generation;
  for (int i = 0; i < 200; ++i) {
    TableSet t;
    t.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000),
                              loopback_rule(18070, 18070, 18001),
                              loopback_rule(static_cast<uint16_t>(18090 + i % 2),
                                            static_cast<uint16_t>(18090 + i % 2), 18000)};
    control::CommitResult r = commit(c, t, gen);
    ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
    char b = static_cast<char>(i);
    if (send(established.get(), &b, 1, MSG_NOSIGNAL) == 1 &&
        recv(established.get(), &b, 1, 0) == 1 && b == static_cast<char>(i)) {
      ++echoes;
    }
    EXPECT_EQ(r.kept, 2u);
    EXPECT_EQ(r.opened, 1u);
    EXPECT_EQ(r.closed, i == 0 ? 0u : 1u);
    gen = r.generation;
    prober.await_probe();  // interleave: a probe through the kept port between commits
  }
  prober.stop();
  stop = true;
  acceptor.join();
  shutdown(established.get(), SHUT_RDWR);
  echo.join();
  EXPECT_EQ(echoes, 200);
  EXPECT_GE(prober.ok(), 200);
  EXPECT_EQ(prober.refused(), 0);
  EXPECT_EQ(prober.reset(), 0);
}

TEST(Commit, BindFailureRollsBackEverything) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  UniqueFd squatter = listen_tcp("127.0.0.1", 18085);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  control::State before = get_state(c);
  TableSet t;
  t.of(Pif::kHost).rules = {loopback_rule(18082, 18082, 18000), loopback_rule(18084, 18086, 18000)};
  control::CommitResult r = commit(c, t, before.generation);
  EXPECT_FALSE(r.applied);
  ASSERT_EQ(r.failures.size(), 1u);
  const control::Failure& f = r.failures[0];
  EXPECT_EQ(f.kind, control::FailureKind::kBindFailed);
  EXPECT_EQ(f.rule, 1);
  EXPECT_EQ(f.port, 18085);
  EXPECT_EQ(f.err, EADDRINUSE);
  EXPECT_EQ(f.text, "TCP [127.0.0.1]:18084-18086 => 18000-18002");
  EXPECT_NE(f.message.find("EADDRINUSE"), std::string::npos) << f.message;
  // Nothing changed: same generation and tables, the old port still serves,
  // and the new ones that did bind refuse by the time the reply is read.
  control::State after = get_state(c);
  EXPECT_EQ(after.generation, before.generation);
  EXPECT_EQ(after.tables, before.tables);
  EXPECT_TRUE(listening(18080));
  EXPECT_FALSE(listening(18082));
  EXPECT_FALSE(listening(18084));
}

TEST(Commit, StaleGenerationIsRefused) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  control::State s = get_state(c);
  TableSet t;
  t.of(Pif::kHost).rules = {loopback_rule(18081, 18081, 18000)};
  control::CommitResult r = commit(c, t, s.generation - 1);
  EXPECT_FALSE(r.applied);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].kind, control::FailureKind::kStale);
  EXPECT_EQ(get_state(c).tables, s.tables);
  EXPECT_FALSE(listening(18081));
}

TEST(Commit, InvalidTablesAreRefusedByTheServerItself) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  control::State s = get_state(c);
  TableSet t;  // two rules that conflict, and one from port 0
  Rule wild = loopback_rule(18070, 18079, 18000, "0.0.0.0");
  t.of(Pif::kHost).rules = {wild, loopback_rule(18075, 18075, 18000), loopback_rule(0, 0, 1)};
  control::CommitResult r = commit(c, t, s.generation);
  EXPECT_FALSE(r.applied);
  bool conflict = false, invalid = false;
  for (const auto& f : r.failures) {
    conflict |= f.kind == control::FailureKind::kConflict;
    invalid |= f.kind == control::FailureKind::kInvalid;
  }
  EXPECT_TRUE(conflict);
  EXPECT_TRUE(invalid);
  EXPECT_EQ(get_state(c).generation, s.generation);
}

TEST(Commit, DryRunTrialBindsAndChangesNothing) {
  UniqueFd squatter = listen_tcp("127.0.0.1", 18085);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  control::State s = get_state(c);
  TableSet ok;
  ok.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000), loopback_rule(18081, 18082, 1)};
  control::CommitResult r = commit(c, ok, s.generation, true);
  EXPECT_FALSE(r.applied);
  EXPECT_TRUE(r.dry_run);
  EXPECT_TRUE(r.failures.empty());
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(r.opened, 2u);
  EXPECT_FALSE(listening(18081));
  TableSet bad;
  bad.of(Pif::kHost).rules = {loopback_rule(18085, 18085, 18000)};
  r = commit(c, bad, s.generation, true);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].err, EADDRINUSE);
  EXPECT_EQ(get_state(c).generation, s.generation);
}

TEST(Commit, APortABestEffortRuleCouldNotOpenIsNotCountedAsOpened) {
  // A best-effort rule (from `all` or exclusions) serves the ports it could
  // bind and warns about the rest: the commit's counts say what it opened.
  UniqueFd squatter = listen_tcp("127.0.0.1", 18092);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  Rule weak = loopback_rule(18090, 18094, 28090);
  weak.weak = true;
  TableSet t;
  t.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000), weak};
  control::CommitResult r = commit(c, t, get_state(c).generation);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(r.opened, 4u) << "18092 is another program's";
  EXPECT_TRUE(listening(18094));
  // The next commit tries 18092 again, and opens only its new port.
  t.of(Pif::kHost).rules.push_back(loopback_rule(18096, 18096, 28096));
  r = commit(c, t, get_state(c).generation);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
  EXPECT_EQ(r.kept, 5u);
  EXPECT_EQ(r.opened, 1u);
}

TEST(Commit, RebindIsCountedAndServes) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  TableSet t;
  t.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000, "0.0.0.0")};
  control::CommitResult r = commit(c, t, get_state(c).generation);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
  EXPECT_EQ(r.rebound, 1u);
  EXPECT_EQ(r.closed, 1u);
  EXPECT_EQ(r.opened, 0u);
  std::thread server([&] {
    UniqueFd conn = accept_one(target.get());
    if (conn.valid()) send_stream(conn.get(), 3, 1000);
  });
  UniqueFd client = connect_tcp("127.0.0.1", 18080);
  size_t n = 0;
  Sha256Digest got = receive_all(client.get(), &n);
  server.join();
  EXPECT_EQ(got, stream_digest(3, 1000));
}

/// A process that tries, as hard as it can, to take 127.0.0.1:`port` or
/// 0.0.0.0:`port` with a plain bind, as another user would in the moment a
/// listener is not there: forked at once (before the test starts threads),
/// it waits for a byte on `go`, then binds in a loop until `go` closes (or
/// 60 s pass). As real root it first becomes uid 65534 and also tries
/// SO_REUSEPORT, which the kernel must refuse to another owner. Exits 0 when
/// no bind ever succeeded, 1 when one did.
pid_t start_grabber(uint16_t port, int go, int go_write) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  close(go_write);  // else the child's own copy would keep `go` from ever closing
  const bool other_user = real_root_run();
  if (other_user && (syscall(SYS_setresgid, 65534, 65534, 65534) != 0 ||
                     syscall(SYS_setresuid, 65534, 65534, 65534) != 0)) {
    _exit(2);
  }
  char byte;
  if (read(go, &byte, 1) != 1) _exit(2);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (uint64_t i = 0; std::chrono::steady_clock::now() < end; ++i) {
    if (i % 256 == 0) {
      pollfd p = {go, POLLIN, 0};
      if (poll(&p, 1, 0) == 1) _exit(0);  // EOF: the test is done
    }
    for (const char* addr : {"127.0.0.1", "0.0.0.0"}) {
      for (int reuseport = 0; reuseport <= (other_user ? 1 : 0); ++reuseport) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        const int one = 1;
        if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port);
        inet_pton(AF_INET, addr, &sin.sin_addr);
        if (bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0) _exit(1);
        close(fd);
      }
    }
  }
  _exit(0);
}

TEST(Commit, RebindsRefuseNothingAndLeaveTheirPortToNobodyElse) {
  // A rule moving between 127.0.0.1:P and 0.0.0.0:P rebinds at every
  // commit. The new listener shares the port with the old one until the old
  // one is drained and closed, so the port is never without a listener:
  // probes through it are never refused or reset, and a process binding it
  // in a loop (another user, as real root) never gets it.
  int go[2];
  ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
  const pid_t grabber = start_grabber(18080, go[0], go[1]);
  ASSERT_GT(grabber, 0);
  close(go[0]);
  UniqueFd go_end(go[1]);
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    while (!stop) UniqueFd c = accept_one(target.get(), 100);
  });
  KeptPortProber prober(18080, KeptPortProber::Target::kClose);
  ASSERT_EQ(write(go_end.get(), "g", 1), 1);
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  uint64_t gen = get_state(c).generation;
  // 30 rebinds: each waits for the old listener to settle (kRebindSettleNs,
  // up to a tick), and a probe between them.
  for (int i = 0; i < 30; ++i) {
    TableSet t;
    t.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000, i % 2 ? "127.0.0.1" : "0.0.0.0")};
    control::CommitResult r = commit(c, t, gen);
    ASSERT_TRUE(r.applied) << i << ": " << (r.failures.empty() ? "" : r.failures[0].message)
                           << d.log();
    EXPECT_EQ(r.rebound, 1u);
    gen = r.generation;
    prober.await_probe();
  }
  prober.stop();
  go_end.reset();  // the grabber stops
  int status = -1;
  ASSERT_EQ(waitpid(grabber, &status, 0), grabber);
  stop = true;
  acceptor.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "another process bound the port during a rebind (status " << status << ")";
  EXPECT_GE(prober.ok(), 30);
  EXPECT_EQ(prober.refused(), 0);
  EXPECT_EQ(prober.reset(), 0);
  expect_forwarding(target.get(), 18080, d);
}

/// Listens on `addr`:`port` with SO_REUSEPORT, as HAProxy and Envoy do, in
/// this process (of sluiced's user). Empty, with errno, when the bind fails.
UniqueFd listen_shared(const char* addr, uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, addr, &sa.sin_addr);
  if (!fd.valid() || setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      listen(fd.get(), 128) != 0) {
    return UniqueFd();
  }
  return fd;
}

/// Expects `r` to have failed on rule 0's port 18080 with EADDRINUSE.
void expect_port_in_use(const control::CommitResult& r, Daemon& d) {
  EXPECT_FALSE(r.applied) << d.log();
  ASSERT_EQ(r.failures.size(), 1u) << d.log();
  EXPECT_EQ(r.failures[0].kind, control::FailureKind::kBindFailed);
  EXPECT_EQ(r.failures[0].rule, 0);
  EXPECT_EQ(r.failures[0].port, 18080);
  EXPECT_EQ(r.failures[0].err, EADDRINUSE) << r.failures[0].message;
  EXPECT_NE(r.failures[0].message.find("the rule moves to another address of port 18080"),
            std::string::npos)
      << r.failures[0].message;
}

TEST(Commit, ARebindNeverSharesAPortWithAnotherProgram) {
  // A rebind shares its port with sluiced's own listeners only. Another
  // program of sluiced's user with SO_REUSEPORT on 127.0.0.2:P would
  // otherwise be joined (its connections split with sluice) by a rule moving
  // 127.0.0.1 -> 0.0.0.0 -> 127.0.0.2, each a rebind. sluiced reads the
  // socket tables first and refuses to share: each step fails as any
  // program's bind would, and rolls back.
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  TableSet any, other;
  any.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000, "0.0.0.0")};
  other.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000, "127.0.0.2")};

  // The program is there first: the move to 0.0.0.0 clashes with it.
  UniqueFd first = listen_shared("127.0.0.2", 18080);
  ASSERT_TRUE(first.valid()) << strerror(errno);
  control::State before = get_state(c);
  expect_port_in_use(commit(c, any, before.generation), d);
  EXPECT_EQ(get_state(c).generation, before.generation);
  expect_forwarding(target.get(), 18080, d);
  first.reset();

  // Alone, the move is a rebind like any other.
  control::CommitResult r = commit(c, any, before.generation);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message) << d.log();
  EXPECT_EQ(r.rebound, 1u);
  // The program starts now, beside sluice's 0.0.0.0 (the kernel lets two
  // sockets of one owner with SO_REUSEPORT share), and the rule moves onto
  // its address: joining its group is refused.
  UniqueFd later = listen_shared("127.0.0.2", 18080);
  ASSERT_TRUE(later.valid()) << strerror(errno);
  expect_port_in_use(commit(c, other, r.generation), d);
  EXPECT_EQ(get_state(c).generation, r.generation);
  // Every connection to its address is still the program's alone.
  for (int i = 0; i < 8; ++i) {
    UniqueFd client = connect_tcp("127.0.0.2", 18080);
    ASSERT_TRUE(client.valid()) << i;
    EXPECT_TRUE(accept_one(later.get(), 5000).valid()) << "connection " << i << " went to sluice";
  }
  expect_forwarding(target.get(), 18080, d);
  EXPECT_NE(d.log().find("another program's socket holds it at 127.0.0.2:18080"), std::string::npos)
      << d.log();
}

TEST(Commit, ARangeOf4096PortsMovesAddressInOneRebindCommit) {
  // Every port of the range is a rebind. sluiced reads the socket tables
  // once for the whole request, not once per port: per port, 1,000 ports
  // took 9 s and 2,000 outlasted the control timeout.
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"-t", "127.0.0.1/20000-24095:40000-44095", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  TableSet moved;
  moved.of(Pif::kHost).rules = {loopback_rule(20000, 24095, 40000, "0.0.0.0"),
                                loopback_rule(18080, 18080, 18000)};
  control::CommitResult r = commit(c, moved, get_state(c).generation);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message) << d.log();
  EXPECT_EQ(r.rebound, 4096u);
  EXPECT_EQ(r.kept, 1u);
  // 127.0.0.2 reaches the new wildcard listeners only (a replaced
  // 127.0.0.1 listener may still be draining, taking no handshake). Nothing
  // listens on their targets: the worker resets them once they are in.
  EXPECT_TRUE(listening(24095, "127.0.0.2")) << d.log();
  EXPECT_TRUE(listening(20000, "127.0.0.2")) << d.log();
  expect_forwarding(target.get(), 18080, d);
  EXPECT_EQ(d.log().find("does not share its port"), std::string::npos) << d.log();
}

TEST(Commit, TenThousandPortsAndBackToOne) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  TableSet big;
  big.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000),
                              loopback_rule(20000, 29999, 40000)};
  control::CommitResult r = commit(c, big, get_state(c).generation);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
  EXPECT_EQ(r.opened, 10000u);
  EXPECT_EQ(r.kept, 1u);
  EXPECT_TRUE(listening(25000));
  TableSet small;
  small.of(Pif::kHost).rules = {loopback_rule(18080, 18080, 18000)};
  r = commit(c, small, r.generation);
  ASSERT_TRUE(r.applied);
  EXPECT_EQ(r.closed, 10000u);
  EXPECT_FALSE(listening(25000));
}

TEST(Commit, HistoryRecordsEveryAttempt) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  TableSet t;
  t.of(Pif::kHost).rules = {loopback_rule(18081, 18081, 18000)};
  commit(c, t, 0);                        // stale
  commit(c, t, get_state(c).generation);  // applied
  auto h = body_as<control::History>(c.call(control::Request{0, control::HistoryRequest{10}}))
               .value_or(control::History{});
  ASSERT_EQ(h.entries.size(), 3u);  // the initial rules, the stale one, the applied one
  EXPECT_EQ(h.entries[1].outcome, control::Outcome::kStale);
  EXPECT_EQ(h.entries[2].outcome, control::Outcome::kApplied);
  EXPECT_EQ(h.entries[2].comment, "commit_test");
}

TEST(Commit, HistoryOfCommitsOfThousandsOfRulesFitsOneMessage) {
  // Two tables of 4000 single-port rules each. Every attempt records the
  // rules it adds and removes, also a stale one: with every rule in each
  // entry, these 14 attempts made a history reply of over 5 MiB, more than
  // any client reads (4 MiB).
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  ControlConnection& c = *control;
  TableSet a, b;
  for (uint16_t i = 0; i < 4000; ++i) {
    a.of(Pif::kHost)
        .rules.push_back(loopback_rule(static_cast<uint16_t>(20000 + i),
                                       static_cast<uint16_t>(20000 + i),
                                       static_cast<uint16_t>(40000 + i)));
    b.of(Pif::kHost)
        .rules.push_back(loopback_rule(static_cast<uint16_t>(24000 + i),
                                       static_cast<uint16_t>(24000 + i),
                                       static_cast<uint16_t>(40000 + i)));
  }
  EXPECT_TRUE(commit(c, a, get_state(c).generation).applied);
  EXPECT_TRUE(commit(c, b, get_state(c).generation).applied);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(commit(c, a, 0).failures.size(), 1u);  // stale: adds 4000, removes 4000
  }
  auto h = body_as<control::History>(c.call(control::Request{0, control::HistoryRequest{256}}))
               .value_or(control::History{});
  ASSERT_EQ(h.entries.size(), 15u);  // the initial rules, two applied, twelve stale
  const control::HistoryEntry& second = h.entries[2];
  EXPECT_EQ(second.outcome, control::Outcome::kApplied);
  ASSERT_EQ(second.added.size(), control::kMaxHistoryRules + 1);
  EXPECT_EQ(second.added[0], "HOST TCP [127.0.0.1]:24000 => 40000");
  EXPECT_EQ(second.added.back(), "(3984 more rules not kept: a history entry keeps the first 16)");
  EXPECT_EQ(second.removed.back(),
            "(3984 more rules not kept: a history entry keeps the first 16)");
  // sluicectl shows it, with the count of the rules left out.
  RunResult shown = d.ctl({"--history=256"});
  EXPECT_EQ(shown.status, 0) << shown.err;
  EXPECT_NE(shown.out.find("    + (3984 more rules not kept: a history entry keeps the first 16)"),
            std::string::npos)
      << shown.out.substr(0, 2000);
}

}  // namespace
}  // namespace sluice::test

namespace sluice::test {
namespace {

/// Serves echo on every connection `listen_fd` accepts, until `stop`.
std::thread echo_forever(int listen_fd, std::atomic<bool>& stop) {
  return std::thread([listen_fd, &stop] {
    std::vector<std::thread> conns;
    while (!stop) {
      UniqueFd c = accept_one(listen_fd, 50);
      if (!c.valid()) continue;
      conns.emplace_back([fd = std::move(c)] {
        char buf[256];
        for (ssize_t n; (n = recv(fd.get(), buf, sizeof(buf), 0)) > 0;) {
          if (send(fd.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
        }
      });
    }
    for (auto& t : conns) t.join();
  });
}

/// One echo round trip; false when the connection is gone.
bool echoes(int fd) {
  char b = 'e';
  return send(fd, &b, 1, MSG_NOSIGNAL) == 1 && recv(fd, &b, 1, 0) == 1 && b == 'e';
}

TEST(Commit, FlowsOutliveCommitsUnlessAskedToEnd) {
  UniqueFd ta = listen_tcp("127.0.0.1", 18001);
  UniqueFd tb = listen_tcp("127.0.0.1", 18002);
  std::atomic<bool> stop{false};
  std::thread ea = echo_forever(ta.get(), stop);
  std::thread eb = echo_forever(tb.get(), stop);
  Daemon d;
  d.start({"-t", "127.0.0.1/18070:18001", "-t", "127.0.0.1/18071:18002"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd a = connect_tcp("127.0.0.1", 18070);
  UniqueFd b = connect_tcp("127.0.0.1", 18071);
  ASSERT_TRUE(echoes(a.get()) && echoes(b.get()));

  // Removing A without the flag: its connection lives on.
  RunResult r = d.ctl({"-D", "-t", "127.0.0.1/18070:18001"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(echoes(a.get()));
  EXPECT_FALSE(listening(18070));

  // Re-add A, connect again, then remove it with --end-removed-flows.
  r = d.ctl({"-A", "-t", "127.0.0.1/18070:18001"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  UniqueFd a2 = connect_tcp("127.0.0.1", 18070);
  ASSERT_TRUE(echoes(a2.get()));
  r = d.ctl({"--end-removed-flows", "-D", "-t", "127.0.0.1/18070:18001"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_FALSE(echoes(a2.get()));
  EXPECT_FALSE(echoes(a.get()));  // it belonged to the same rule text
  EXPECT_TRUE(echoes(b.get()));   // B was not removed
  EXPECT_NE(d.log().find("ended 2 connections of removed rules"), std::string::npos) << d.log();
  stop = true;
  a.reset();
  a2.reset();
  b.reset();
  ea.join();
  eb.join();
}

}  // namespace
}  // namespace sluice::test

namespace sluice::test {
namespace {

TEST(Commit, ForwardingLoopIsRefused) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // 18085 to loopback 18085: every connection would come back to the rule itself.
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/18085"});
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("come back into sluice"), std::string::npos) << r.out << r.err;
  EXPECT_FALSE(listening(18085));
  // The same as an initial rule: sluiced refuses to start with it.
  Daemon bad;
  bad.start({"-t", "8080"});
  EXPECT_EQ(bad.wait_exit(), 1) << bad.log();
  EXPECT_NE(bad.log().find("come back into sluice"), std::string::npos) << bad.log();
}

}  // namespace
}  // namespace sluice::test
