// What pesto itself never sends, sent to sluiced's pesto endpoint byte by
// byte (schema/pesto_wire.h): malformed updates, a client that stops half
// way, a refused update, and the exact bytes rules come back with. The bar:
// the client is dropped, nothing changes, forwarding never stops, and the
// next pesto session waits only for a bounded time.
#include <arpa/inet.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/integration/container.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/pesto_util.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

using Lines = std::vector<std::string>;

/// Returns the big-endian bytes of `v`.
std::string be32(uint32_t v) {
  const uint32_t n = htonl(v);
  return std::string(reinterpret_cast<const char*>(&n), 4);
}

/// Returns a record's bytes.
std::string bytes(const pesto::RuleRecord& r) {
  return std::string(reinterpret_cast<const char*>(r.data()), r.size());
}

/// The table header of an update: pif HOST and `count`.
std::string host_header(uint32_t count) {
  return std::string(1, static_cast<char>(pesto::kPifHost)) + be32(count);
}

/// A container serving TCP 8080, and sluiced publishing it on 18080 with
/// the pesto endpoint.
struct Fixture {
  Container box{{"tcp", "8080"}};
  Daemon d;
  /// Starts sluiced; fails the test when it cannot.
  void start() {
    ASSERT_GT(box.pid(), 0) << "the container did not start";
    start_with_pesto(d, {"--netns", box.netns(), "--userns", box.userns(), "-t", "18080:8080"});
  }
  /// The generation in force.
  uint64_t generation() {
    auto c = connect_control(d);
    EXPECT_TRUE(c.has_value());
    return c ? get_state(*c).generation : 0;
  }
};

TEST(PestoHostile, MalformedUpdatesAreDroppedAndChangeNothing) {
  Fixture f;
  f.start();
  const uint64_t generation = f.generation();
  const std::string good = bytes(make_record(true, "0.0.0.0", 19000, 19000, 8080));
  pesto::RuleRecord bad_flags = make_record(true, "0.0.0.0", 19000, 19000, 8080, "", 0x80);
  pesto::RuleRecord dual_v4 = make_record(true, "0.0.0.0", 19000, 19000, 8080, "", 0x01);
  pesto::RuleRecord no_nul = make_record(true, "0.0.0.0", 19000, 19000, 8080);
  for (size_t i = 32; i < 48; ++i) no_nul[i] = 'x';
  pesto::RuleRecord bad_proto = make_record(true, "0.0.0.0", 19000, 19000, 8080);
  bad_proto[54] = 1;
  pesto::RuleRecord bad_ports = make_record(true, "0.0.0.0", 19000, 18999, 8080);
  struct Case {
    const char* what;
    std::string update;
  } cases[] = {
      {"half a rule, then the end", host_header(1) + good.substr(0, 30)},
      {"a count above 255", host_header(256) + good},
      {"unknown flags", host_header(1) + bytes(bad_flags) + '\0'},
      {"dual-stack on an IPv4 address", host_header(1) + bytes(dual_v4) + '\0'},
      {"an interface name without NUL", host_header(1) + bytes(no_nul) + '\0'},
      {"protocol 1", host_header(1) + bytes(bad_proto) + '\0'},
      {"first port above last", host_header(1) + bytes(bad_ports) + '\0'},
      // SPLICE is offered too (sluiced has a target namespace), but once only.
      {"SPLICE twice", std::string(1, '\3') + be32(0) + std::string(1, '\3') + be32(0) + '\0'},
      {"an unknown table id", std::string(1, '\4') + be32(0) + '\0'},
      {"the TAP table", std::string(1, '\2') + be32(0) + '\0'},
      {"HOST twice", host_header(0) + host_header(0) + '\0'},
  };
  for (const Case& c : cases) {
    RawPesto raw(f.d.pesto_path());
    ASSERT_TRUE(raw.valid());
    ASSERT_TRUE(raw.read_hello()) << raw.failure();
    ASSERT_TRUE(raw.send(c.update)) << c.what;
    raw.close();                     // pesto closes after its update
    pesto_tables(f.d.pesto_path());  // served after the bad one is handled
    EXPECT_EQ(f.generation(), generation) << c.what << "\n" << f.d.log();
    EXPECT_EQ(tcp_echo(18080, c.what), c.what) << c.what;
  }
  EXPECT_TRUE(wait_for_log(f.d, "malformed pesto update, refused; nothing changed")) << f.d.log();
  // Each is a rejected attempt in the history (and, with why, in the audit
  // log), with who sent it, though pesto gets no reply: one by one up to the
  // bound on refused attempts (worker/refusal_audit.h), which the 11 cases
  // pass unless they took longer than its interval; the rest are counted.
  RunResult history = f.d.ctl({"--history=16"});
  ASSERT_EQ(history.status, 0) << history.err;
  size_t rejected = 0;
  for (size_t at = 0; (at = history.out.find(" rejected pid ", at)) != std::string::npos; ++at) {
    ++rejected;
  }
  constexpr size_t kBurst = 10;  // kRefusalRecordBurst
  EXPECT_GE(rejected, std::min<size_t>(std::size(cases), kBurst)) << history.out;
  EXPECT_LE(rejected, std::size(cases)) << history.out;
  EXPECT_NE(history.out.find("failures 1, "), std::string::npos) << history.out;
  EXPECT_NE(history.out.find("\"pesto update from pid "), std::string::npos) << history.out;
  EXPECT_EQ(host_rules(f.d), Lines{"TCP [*]:18080 => 8080"});
  EXPECT_FALSE(listening(19000));
}

TEST(PestoHostile, ASilentClientHoldsUpOnlyTheNextPestoSessionForABoundedTime) {
  Fixture f;
  f.start();
  RawPesto silent(f.d.pesto_path());
  ASSERT_TRUE(silent.valid());
  ASSERT_TRUE(silent.read_hello()) << silent.failure();
  const std::string good = bytes(make_record(true, "0.0.0.0", 19000, 19000, 8080));
  ASSERT_TRUE(silent.send(host_header(1) + good.substr(0, 20)));  // and then nothing
  // Meanwhile: forwarding and sluicectl, reads and commits, go on at once.
  EXPECT_EQ(tcp_echo(18080, "not stalled"), "not stalled") << f.d.log();
  RunResult add = f.d.ctl({"-A", "-t", "18081:8080"});
  EXPECT_EQ(add.status, 0) << add.err;
  EXPECT_EQ(tcp_echo(18081, "committed meanwhile"), "committed meanwhile");
  // The next pesto session is served once the silent one is dropped (after
  // kPestoSessionTimeoutNs, 5 s; the bound here allows a loaded machine).
  RawPesto next(f.d.pesto_path());
  ASSERT_TRUE(next.valid());
  ASSERT_TRUE(next.read_hello(60000)) << next.failure() << "\n" << f.d.log();
  EXPECT_TRUE(silent.closed_by_server(1000));
  EXPECT_TRUE(wait_for_log(f.d, "dropped: no complete update within 5 s")) << f.d.log();
  // The hello it got has the commit made meanwhile, and nothing of the
  // silent client's half rule.
  ASSERT_EQ(next.tables().size(), 2u);  // HOST, and SPLICE (a target namespace)
  EXPECT_EQ(next.tables()[0].pif, Pif::kHost);
  EXPECT_EQ(next.tables()[0].rules.size(), 2u);
  EXPECT_FALSE(listening(19000));
}

TEST(PestoHostile, ARefusedUpdateIsLoggedAndInTheHistory) {
  Fixture f;
  f.start();
  UniqueFd squatter = listen_tcp("127.0.0.1", 19001);  // someone else has the port
  const uint64_t generation = f.generation();
  RawPesto raw(f.d.pesto_path());
  ASSERT_TRUE(raw.valid());
  ASSERT_TRUE(raw.read_hello()) << raw.failure();
  std::string update = host_header(3);
  update += bytes(raw.tables()[0].rules[0].record);
  update += bytes(make_record(true, "0.0.0.0", 19000, 19000, 8080));
  update += bytes(make_record(true, "127.0.0.1", 19001, 19001, 8080));
  update += '\0';
  ASSERT_TRUE(raw.send(update));
  raw.close();
  pesto_tables(f.d.pesto_path());
  EXPECT_EQ(f.generation(), generation) << "rolled back";
  EXPECT_FALSE(listening(19000)) << "rolled back";
  EXPECT_TRUE(wait_for_log(f.d, "refused, nothing changed")) << f.d.log();
  EXPECT_TRUE(wait_for_log(f.d, "19001")) << f.d.log();
  RunResult history = f.d.ctl({"--history=5"});
  ASSERT_EQ(history.status, 0) << history.err;
  EXPECT_NE(history.out.find("rejected"), std::string::npos) << history.out;
  EXPECT_NE(history.out.find("pesto update from pid"), std::string::npos) << history.out;
}

TEST(PestoHostile, RulesComeBackWithTheBytesTheyWereSentWith) {
  Fixture f;
  f.start();
  RawPesto raw(f.d.pesto_path());
  ASSERT_TRUE(raw.valid());
  ASSERT_TRUE(raw.read_hello()) << raw.failure();
  ASSERT_EQ(raw.tables().size(), 2u);  // HOST, and SPLICE (a target namespace)
  const uint32_t basic = pesto::kCapIpv4 | pesto::kCapIpv6 | pesto::kCapTcp | pesto::kCapUdp;
  EXPECT_EQ(raw.tables()[0].caps & basic, basic);
  ASSERT_EQ(raw.tables()[0].rules.size(), 1u);
  // The default target spelled as IPv4's unspecified address, a dual-stack
  // wildcard, and a best-effort range: each must come back byte for byte.
  std::vector<pesto::RuleRecord> sent = {
      raw.tables()[0].rules[0].record,
      make_record(true, "0.0.0.0", 19000, 19000, 8080, "0.0.0.0"),
      make_record(false, "::", 19002, 19003, 8080, "", pesto::kFlagDualStack),
      make_record(true, "127.0.0.1", 19010, 19012, 8080, "", pesto::kFlagWeak),
  };
  std::string update = host_header(static_cast<uint32_t>(sent.size()));
  for (const pesto::RuleRecord& r : sent) update += bytes(r);
  update += '\0';
  ASSERT_TRUE(raw.send(update));
  raw.close();
  std::vector<pesto::WireTable> back = pesto_tables(f.d.pesto_path());
  ASSERT_EQ(back.size(), 2u) << f.d.log();
  ASSERT_EQ(back[0].rules.size(), sent.size()) << f.d.log();
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(back[0].rules[i].record, sent[i]) << "rule " << i;
  }
  EXPECT_EQ(tcp_echo(19000, "default target"), "default target") << f.d.log();
}

TEST(PestoHostile, ATableTooLargeForV2IsRefusedWithAClearLine) {
  Fixture f;
  f.start();
  std::vector<std::string> args = {"-A"};
  for (int i = 0; i < 255; ++i) {
    args.push_back("-t");
    args.push_back("127.0.0.1/" + std::to_string(20000 + i) + ":8080");
  }
  RunResult add = f.d.ctl(args);
  ASSERT_EQ(add.status, 0) << add.err;  // 256 rules now
  RawPesto raw(f.d.pesto_path());
  ASSERT_TRUE(raw.valid());
  EXPECT_FALSE(raw.read_hello());
  EXPECT_TRUE(wait_for_log(f.d, "pesto's protocol carries at most 255 per table")) << f.d.log();
  if (!real_pesto().empty()) {
    EXPECT_EQ(run_pesto({}, f.d.pesto_path()).status, 1);
  }
}

/// Forks a child that, as uid 65534, keeps `count` idle connections to the
/// pesto socket `path` open for `seconds`, reading nothing and replacing
/// each the server closes, then exits. Call it while the test process has
/// no other thread.
pid_t hog_pesto(const std::string& path, int count, int seconds) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
      setresuid(65534, 65534, 65534) != 0) {
    _exit(2);
  }
  std::vector<int> held;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    while (static_cast<int>(held.size()) < count) {
      int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
      if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(s);  // the backlog is full: try again after the poll
        break;
      }
      held.push_back(s);
    }
    std::vector<pollfd> p;
    for (int s : held) p.push_back({s, POLLRDHUP, 0});
    poll(p.data(), p.size(), 50);
    for (size_t i = p.size(); i-- > 0;) {
      if (p[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
        close(held[i]);
        held.erase(held.begin() + static_cast<long>(i));
      }
    }
  }
  _exit(0);
}

TEST(PestoHostile, AUserWhoMayOnlyReadCannotHoldUpACommitter) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: only one uid is mapped here";
  // uid 65534 may read, root may commit. It keeps 40 idle connections to
  // the pesto socket and replaces each the server closes: it gets two
  // sessions, the rest are closed once identified, and root's pesto is
  // served at once. (When sessions went one at a time, each of its
  // connections held the next for 5 s, and root's never came.)
  Container box{{"tcp", "8080"}};
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  PolicyFileFixture policy(
      "bind allow tcp,udp 1024-65535 *\ncontrol commit uid=0\ncontrol read uid=65534\n");
  Daemon d;
  start_with_pesto(d, {"--policy", policy.path(), "--netns", box.netns(), "--userns", box.userns(),
                       "-t", "18080:8080"});
  ASSERT_EQ(::chmod(d.pesto_path().c_str(), 0666), 0);
  const std::string dir = d.pesto_path().substr(0, d.pesto_path().rfind('/'));
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  const pid_t hog = hog_pesto(d.pesto_path(), 40, 40);
  ASSERT_GT(hog, 0);
  ASSERT_TRUE(wait_for_log(d, "already holds 2 pesto sessions")) << d.log();
  RawPesto root(d.pesto_path());
  ASSERT_TRUE(root.valid());
  // The bound allows a loaded machine; the hog runs for 40 s.
  const bool greeted = root.read_hello(20000);
  const bool hog_running = waitpid(hog, nullptr, WNOHANG) == 0;
  ASSERT_TRUE(greeted) << root.failure() << "\n" << d.log();
  EXPECT_TRUE(hog_running) << "the hog ended before root was served: the test proves nothing";
  // Its update is applied, the hog still there.
  ASSERT_FALSE(root.tables().empty());
  const pesto::WireTable& host = root.tables()[0];
  ASSERT_EQ(host.rules.size(), 1u);
  ASSERT_TRUE(root.send(host_header(2) + bytes(host.rules[0].record) +
                        bytes(make_record(true, "0.0.0.0", 19000, 19000, 8080)) + '\0'));
  root.close();
  bool applied = false;
  for (int i = 0; i < 200 && !applied; ++i) {  // bounded: 10 s
    applied = listening(19000);
    if (!applied) usleep(50000);
  }
  EXPECT_TRUE(applied) << d.log();
  kill(hog, SIGKILL);
  waitpid(hog, nullptr, 0);
}

}  // namespace
}  // namespace sluice::test
