// Who holds the control server's slots, against the real daemon: a client
// the control policy refuses is dropped as soon as sluiced has said so,
// before the hello and before a byte of it is decoded; a user who may only
// read holds at most 8 connections; and however many connections users
// without commit access open, and keep open idle, an administrator who may
// commit still gets in.
//
// Tests with other uids need real root (the rootns run, which CI runs):
// there, children switch to uids 1000 and up and hold their connections
// while the administrator (root) works. In the user-namespace run only one
// uid is mapped, and they are skipped.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "schema/codec.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;
constexpr uint16_t kListenPort = 18080;

/// The rule of the tests: 127.0.0.1:kListenPort to kTargetPort.
std::string base_rule() {
  return "127.0.0.1/" + std::to_string(kListenPort) + ":" + std::to_string(kTargetPort);
}

/// Lets every uid reach the daemon's socket: the control policy, not the
/// file mode, must be what decides.
void open_socket_to_all(const Daemon& d) {
  ASSERT_EQ(::chmod(d.socket_path().c_str(), 0666), 0);
  std::string dir = d.socket_path().substr(0, d.socket_path().rfind('/'));
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
}

/// What the server said first on a new connection.
enum class First : char {
  kHello = 'H',   // the server hello: admitted
  kBusy = 'B',    // error busy
  kDenied = 'D',  // error notPermitted
  kOther = 'O',   // any other response, EOF or a timeout
};

/// Reads the first response on `fd` (bounded by its receive timeout) and
/// classifies it; the message of an error goes to `*message`.
First first_response(int fd, std::string* message) {
  auto responses = read_responses(fd, 1);
  if (responses.empty()) return First::kOther;
  if (std::holds_alternative<control::ServerHello>(responses[0].body)) return First::kHello;
  const auto* error = std::get_if<control::ProtocolError>(&responses[0].body);
  if (error == nullptr) return First::kOther;
  if (message != nullptr) *message = error->message;
  if (error->code == control::ErrorCode::kBusy) return First::kBusy;
  if (error->code == control::ErrorCode::kNotPermitted) return First::kDenied;
  return First::kOther;
}

/// A child process that holds control connections as another uid.
struct Holder {
  pid_t pid = -1;
  UniqueFd release;          // closing it lets the child close its connections and exit
  std::string firsts;        // one First per connection, in order
  std::string last_message;  // the last error message the child saw
};

/// Forks a child that switches to `uid` (gid the same, supplementary groups
/// `groups`, none by default), opens `count` connections to `path` one after
/// the other, reads what the server says first on each, reports it, and
/// holds every connection (idle) until the returned holder's `release` is
/// closed (at most 60 s). Call it only while the test process has no other
/// thread. Fails the test when the child does not report within 20 s.
Holder hold_connections(const std::string& path, uid_t uid, int count,
                        const std::vector<gid_t>& groups = {}) {
  Holder h;
  int report[2], release[2];
  if (pipe2(report, O_CLOEXEC) != 0 || pipe2(release, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2";
    return h;
  }
  h.pid = fork();
  if (h.pid == 0) {
    ::close(report[0]);
    ::close(release[1]);
    if (setgroups(groups.size(), groups.data()) != 0 || setresgid(uid, uid, uid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
      _exit(2);
    }
    std::vector<int> held;
    std::string out;
    std::string message;
    for (int i = 0; i < count; ++i) {
      int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      struct sockaddr_un addr = {};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
      struct timeval tv = {10, 0};
      setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      if (connect(s, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
        out += static_cast<char>(First::kOther);
        ::close(s);
        continue;
      }
      out += static_cast<char>(first_response(s, &message));
      held.push_back(s);
    }
    out += '\n' + message;
    ssize_t ignored = ::write(report[1], out.data(), out.size());
    (void)ignored;
    ::close(report[1]);
    struct pollfd p = {release[0], POLLIN, 0};
    ::poll(&p, 1, 60000);
    _exit(0);
  }
  ::close(report[1]);
  ::close(release[0]);
  h.release.reset(release[1]);
  std::string got;
  char buf[4096];
  for (int i = 0; i < 2000; ++i) {  // at most 20 s
    struct pollfd p = {report[0], POLLIN, 0};
    if (::poll(&p, 1, 10) <= 0) continue;
    ssize_t n = ::read(report[0], buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(report[0]);
  size_t nl = got.find('\n');
  EXPECT_NE(nl, std::string::npos) << "uid " << uid << " reported nothing";
  h.firsts = got.substr(0, nl);
  if (nl != std::string::npos) h.last_message = got.substr(nl + 1);
  return h;
}

/// Lets the holders close their connections and reaps them (bounded).
void release_all(std::vector<Holder>* holders) {
  for (Holder& h : *holders) h.release.reset();
  for (Holder& h : *holders) {
    int status = 0;
    for (int i = 0; i < 1000 && waitpid(h.pid, &status, WNOHANG) == 0; ++i) {
      usleep(10000);
    }
  }
  holders->clear();
}

/// A commit by the administrator (sluicectl, as the test's own uid): adds a
/// port and expects it applied.
void expect_admin_commits(Daemon& d, uint16_t port) {
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/" + std::to_string(port) + ":18001"});
  EXPECT_EQ(r.status, 0) << r.err << d.log();
}

TEST(ControlAdmission, RefusedClientIsDroppedUnreadBeforeTheHello) {
  // Its first bytes are a malformed frame, sent before it reads anything:
  // once sluiced has said the client has no access, it gets the refusal,
  // not the server hello, and its bytes never reach the frame check or the
  // decoder (which would have said `malformed`).
  const std::string other = std::to_string(::getuid() + 4242);
  PolicyFileFixture policy("control commit uid=" + other + "\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(wait_for_log(d, "ready:")) << d.log();
  for (int i = 0; i < 3; ++i) {
    UniqueFd c = raw_control(d);
    const uint64_t garbage[2] = {0x0000000100000000ULL, 0xdeadbeefdeadbeefULL};
    // The refusal may be quicker than this send; then the send fails.
    const ssize_t sent = send(c.get(), garbage, sizeof(garbage), MSG_NOSIGNAL);
    EXPECT_TRUE(sent == static_cast<ssize_t>(sizeof(garbage)) ||
                (sent < 0 && (errno == EPIPE || errno == ECONNRESET)))
        << sent << " " << std::strerror(errno);
    auto responses = decode_all(read_to_eof(c.get()));
    ASSERT_EQ(responses.size(), 1u) << "the refusal, and nothing else";
    const auto* error = std::get_if<control::ProtocolError>(&responses[0].body);
    ASSERT_NE(error, nullptr);
    EXPECT_EQ(error->code, control::ErrorCode::kNotPermitted) << error->message;
    EXPECT_NE(error->message.find("connecting needs read access"), std::string::npos)
        << error->message;
  }
  // The daemon forwards on.
  UniqueFd client = connect_tcp("127.0.0.1", kListenPort, 5000);
  ASSERT_TRUE(client.valid());
  EXPECT_TRUE(accept_one(target.get(), 5000).valid()) << d.log();
}

TEST(ControlAdmission, AUserWhoMayOnlyReadHoldsAtMostEightConnections) {
  const std::string uid = std::to_string(::getuid());
  PolicyFileFixture policy("control read uid=" + uid + "\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::vector<UniqueFd> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(raw_session(d));
    ASSERT_TRUE(held.back().valid()) << "connection " << i << "\n" << d.log();
  }
  UniqueFd ninth = raw_control(d);
  std::string message;
  EXPECT_EQ(first_response(ninth.get(), &message), First::kBusy) << message;
  EXPECT_NE(message.find("uid " + uid +
                         " already has 8 control connections, the most a user who "
                         "may only read can hold at once"),
            std::string::npos)
      << message;
  // sluicectl says the server is busy, and exits as for a connection problem.
  RunResult r = d.ctl();
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_NE(r.err.find("too many control clients now; try again"), std::string::npos) << r.err;
  // One leaves: there is room again.
  held.pop_back();
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {  // bounded: the server frees it in its batch
    served = d.ctl().status == 0;
    if (!served) usleep(20000);
  }
  EXPECT_TRUE(served) << d.log();
}

TEST(ControlAdmission, IdleConnectionsOfARefusedUserHoldNoSlot) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: only one uid is mapped here";
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;  // the default policy: root may commit, nobody else may connect
  d.start({"-t", base_rule()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  open_socket_to_all(d);
  // uid 1000 opens as many connections as there are slots, and keeps them.
  std::vector<Holder> holders;
  holders.push_back(hold_connections(d.socket_path(), 1000, 64));
  EXPECT_EQ(holders[0].firsts, std::string(64, static_cast<char>(First::kDenied)));
  EXPECT_NE(holders[0].last_message.find("connecting needs read access"), std::string::npos)
      << holders[0].last_message;
  EXPECT_NE(holders[0].last_message.find("line for uid 1000"), std::string::npos)
      << holders[0].last_message;
  // None of them holds a slot: the administrator lists and commits at once.
  RunResult list = d.ctl();
  EXPECT_EQ(list.status, 0) << list.err;
  expect_admin_commits(d, 18081);
  release_all(&holders);
}

TEST(ControlAdmission, UsersWhoMayOnlyReadCannotKeepACommitterOut) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: only one uid is mapped here";
  // Eight users may read, root may commit.
  PolicyFileFixture policy(
      "control commit uid=0\n"
      "control read uid=1000,1001,1002,1003,1004,1005,1006,1007\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  open_socket_to_all(d);
  // 8 connections each, 64 in all, one user after the other: the first six
  // users fill the 48 slots that are not kept for committers, and the other
  // two are told the server is busy.
  std::vector<Holder> holders;
  for (uid_t uid = 1000; uid < 1008; ++uid) {
    holders.push_back(hold_connections(d.socket_path(), uid, 8));
    const char want = static_cast<char>(uid < 1006 ? First::kHello : First::kBusy);
    EXPECT_EQ(holders.back().firsts, std::string(8, want)) << "uid " << uid;
  }
  EXPECT_NE(holders.back().last_message.find(
                "48 control clients connected that may only read, the most it admits (16 more "
                "are kept for users who may commit)"),
            std::string::npos)
      << holders.back().last_message;
  // A ninth connection of a user who holds 8 meets the limit per uid.
  holders.push_back(hold_connections(d.socket_path(), 1000, 1));
  EXPECT_EQ(holders.back().firsts, std::string(1, static_cast<char>(First::kBusy)));
  EXPECT_NE(holders.back().last_message.find("uid 1000 already has 8 control connections"),
            std::string::npos)
      << holders.back().last_message;
  // The administrator still gets in, lists and commits.
  RunResult list = d.ctl();
  EXPECT_EQ(list.status, 0) << list.err;
  expect_admin_commits(d, 18081);
  expect_admin_commits(d, 18082);
  release_all(&holders);
}

TEST(ControlAdmission, AClientWithTooManyGroupsIsRefusedAndLoggedByItsRealIds) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: only one uid is mapped here";
  // uid 1000 may read, but its 300 groups are more than sluiced checks
  // (kMaxPeerGroups, 256): it is refused, and named by its own ids, not as
  // pid 0, uid 0 (root).
  PolicyFileFixture policy("control commit uid=0\ncontrol read uid=1000\n");
  UniqueFd target = listen_tcp("127.0.0.1", kTargetPort);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", base_rule()});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  open_socket_to_all(d);
  std::vector<gid_t> groups;
  for (gid_t g = 3000; g < 3300; ++g) groups.push_back(g);
  std::vector<Holder> holders;
  holders.push_back(hold_connections(d.socket_path(), 1000, 1, groups));
  const pid_t child = holders[0].pid;
  EXPECT_EQ(holders[0].firsts, std::string(1, static_cast<char>(First::kDenied)));
  EXPECT_NE(holders[0].last_message.find("more than 256 supplementary groups"), std::string::npos)
      << holders[0].last_message;
  const std::string named = "control client pid " + std::to_string(child) + " uid 1000 dropped";
  EXPECT_TRUE(wait_for_log(d, named)) << d.log();
  EXPECT_EQ(d.log().find("control client pid 0 uid 0 dropped"), std::string::npos) << d.log();
  release_all(&holders);
  // The administrator is served as before.
  expect_admin_commits(d, 18081);
}

}  // namespace
}  // namespace sluice::test
