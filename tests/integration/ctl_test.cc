// sluicectl end to end: the real binary against the real sluiced and worker.
// Each test runs a command line, checks stdout, stderr and the exit status,
// then checks the effect with a following listing and, where it matters,
// with real connections through the forwarded ports.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"
#include "tests/json_check.h"

namespace sluice::test {
namespace {

/// The initial rule of every test: 127.0.0.1:18080 to 18000.
const char* const kInitial = "127.0.0.1/18080:18000";
const char* const kInitialText = "TCP [127.0.0.1]:18080 => 18000";

/// Starts `d` forwarding kInitial (or `spec`) and waits for it.
void start(Daemon& d, const std::string& spec = kInitial) {
  d.start({"-t", spec});
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

/// Runs sluicectl with no arguments and returns its listing; fails the test
/// when it does not exit 0.
std::string listing(Daemon& d) {
  RunResult r = d.ctl();
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out;
}

/// True when `text` contains `part`.
bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Connects to 127.0.0.1:`port` and checks that the target listening on
/// `target` receives the connection.
void expect_forwarded(uint16_t port, int target) {
  UniqueFd client = connect_tcp("127.0.0.1", port, 5000);
  ASSERT_TRUE(client.valid()) << "port " << port;
  UniqueFd conn = accept_one(target, 5000);
  EXPECT_TRUE(conn.valid()) << "port " << port << " did not reach its target";
}

/// Writes `text` to a new file in /tmp and returns its path.
std::string write_temp(const std::string& text) {
  char tmpl[] = "/tmp/sluicectl-opts-XXXXXX";
  int fd = mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  return tmpl;
}

TEST(Ctl, ListsTheTables) {
  Daemon d;
  start(d);
  RunResult r = d.ctl();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "generation 1, digest ")) << r.out;
  EXPECT_TRUE(has(r.out, "HOST\n    TCP [127.0.0.1]:18080 => 18000\n")) << r.out;
  EXPECT_EQ(r.err, "");
}

TEST(Ctl, SpecsReplaceTheTable) {
  UniqueFd target = listen_tcp("127.0.0.1", 18001);
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-t", "127.0.0.1/18081:18001"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "applied: generation 2, kept 0, opened 1, closed 1, rebound 0; digest "))
      << r.out;
  std::string list = listing(d);
  EXPECT_TRUE(has(list, "generation 2,")) << list;
  EXPECT_TRUE(has(list, "HOST\n    TCP [127.0.0.1]:18081 => 18001\n")) << list;
  EXPECT_FALSE(has(list, "18080")) << list;
  expect_forwarded(18081, target.get());
  EXPECT_FALSE(listening(18080));
}

TEST(Ctl, AppendAddsAfterTheExistingRules) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/18082:18000"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "applied: generation 2, kept 1, opened 1, closed 0")) << r.out;
  EXPECT_TRUE(has(listing(d),
                  "HOST\n    TCP [127.0.0.1]:18080 => 18000\n"
                  "    TCP [127.0.0.1]:18082 => 18000\n"));
  expect_forwarded(18080, target.get());
  expect_forwarded(18082, target.get());
}

TEST(Ctl, DeleteSplitsARuleAndClosesOnlyThatPort) {
  UniqueFd target = listen_tcp("127.0.0.1", 18206);
  Daemon d;
  start(d, "127.0.0.1/18100-18110:18200-18210");
  RunResult r = d.ctl({"-D", "-t", "127.0.0.1/18105:18205"});  // -D names the mapping, as pesto
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "applied: generation 2, kept 10, opened 0, closed 1")) << r.out;
  EXPECT_TRUE(has(listing(d),
                  "HOST\n    TCP [127.0.0.1]:18100-18104 => 18200-18204\n"
                  "    TCP [127.0.0.1]:18106-18110 => 18206-18210\n"));
  EXPECT_FALSE(listening(18105));
  expect_forwarded(18106, target.get());  // the mapping is kept: 18106 still goes to 18206
}

TEST(Ctl, DeletingAPortNotForwardedIsAnError) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-D", "-t", "127.0.0.1/18999"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err,
                  "sluicectl: -D -t '127.0.0.1/18999': TCP port 18999 on [127.0.0.1] is "
                  "not forwarded to port 18999 of the default target in HOST"))
      << r.err;
  EXPECT_TRUE(has(listing(d), "generation 1,"));
}

TEST(Ctl, ATrailingAddIsAUsageErrorAndTheTableStays) {
  // "-t SPEC --add" would replace the table with SPEC: -A applies to the
  // specs after it, and none follows.
  Daemon d;
  start(d);
  const std::string before = listing(d);
  RunResult r = d.ctl({"--tcp-p=127.0.0.1/18099:18000", "--ad"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err,
                  "-A applies to the specs after it; nothing follows it here, so this "
                  "would replace every rule of HOST with the specs before it"))
      << r.err;
  EXPECT_TRUE(has(r.err, "Put -A first: sluicectl -A -t 127.0.0.1/18099:18000 ")) << r.err;
  EXPECT_EQ(listing(d), before);
}

TEST(Ctl, DeleteThenAppendWorks) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-D", "-t", kInitial, "-A", "-t", "127.0.0.1/18084:18004"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string list = listing(d);
  EXPECT_TRUE(has(list, "HOST\n    TCP [127.0.0.1]:18084 => 18004\n")) << list;
  EXPECT_FALSE(has(list, "18080")) << list;
}

TEST(Ctl, ClearEmptiesTheTable) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-C", "host"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(listing(d), "HOST\n    (no rules)\n"));
  EXPECT_FALSE(listening(18080));
}

TEST(Ctl, DryRunChangesNothing) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"--dry-run", "-t", "127.0.0.1/18081:18001"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "dry run: would keep 0, open 1, close 1, rebind 0; nothing changed\n");
  std::string list = listing(d);
  EXPECT_TRUE(has(list, "generation 1,")) << list;
  EXPECT_TRUE(has(list, kInitialText)) << list;
  EXPECT_FALSE(listening(18081));
}

TEST(Ctl, NoChangeSendsNothing) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-t", kInitial});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "no change:")) << r.out;
  EXPECT_TRUE(has(listing(d), "generation 1,"));
}

TEST(Ctl, ShowPrintsBeforeAfterAndDiff) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-s", "-t", "127.0.0.1/18081:18001"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "before: generation 1, digest ")) << r.out;
  EXPECT_TRUE(has(r.out, "after: digest ")) << r.out;
  EXPECT_TRUE(has(r.out,
                  "diff:\n- HOST TCP [127.0.0.1]:18080 => 18000\n"
                  "+ HOST TCP [127.0.0.1]:18081 => 18001\n"))
      << r.out;
  EXPECT_TRUE(has(r.out, "applied: generation 2")) << r.out;
}

TEST(Ctl, JsonListingParses) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto v = parse_json(r.out);
  ASSERT_TRUE(v.has_value()) << r.out;
  EXPECT_EQ(v->get("generation")->integer(), 1);
  EXPECT_EQ(v->get("digest")->string.size(), 64u);
  const JsonValue& host = v->get("pifs")->array.at(0);
  EXPECT_EQ(host.get("name")->string, "HOST");
  const JsonValue& rule = host.get("rules")->array.at(0);
  EXPECT_EQ(rule.get("text")->string, kInitialText);
  EXPECT_EQ(rule.get("listen")->string, "127.0.0.1");
  EXPECT_EQ(rule.get("first")->integer(), 18080);
  EXPECT_EQ(rule.get("to")->integer(), 18000);
  EXPECT_TRUE(rule.get("target")->is_null());
  EXPECT_TRUE(has(r.out, "\"caps\":[\"IPv4\""));
}

TEST(Ctl, JsonEditReportParses) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"--json", "-A", "-t", "127.0.0.1/18082:18000"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto v = parse_json(r.out);
  ASSERT_TRUE(v.has_value()) << r.out;
  EXPECT_EQ(v->get("before")->get("generation")->integer(), 1);
  EXPECT_TRUE(v->get("after")->get("generation")->is_null());
  EXPECT_EQ(v->get("after")->get("pifs")->array.at(0).get("rules")->array.size(), 2u);
  const JsonValue* result = v->get("result");
  EXPECT_TRUE(result->get("applied")->boolean);
  EXPECT_EQ(result->get("generation")->integer(), 2);
  EXPECT_EQ(result->get("opened")->integer(), 1);
  EXPECT_EQ(result->get("digest")->string, v->get("after")->get("digest")->string);
  EXPECT_TRUE(result->get("failures")->array.empty());
}

TEST(Ctl, ConflictIsRejectedWithoutACommit) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-A", "-t", "18080"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err,
                  "sluicectl: conflict: HOST rule 1 (TCP [*]:18080 => 18080) conflicts "
                  "with rule 0"))
      << r.err;
  // Adding a rule the table has already says so.
  RunResult again = d.ctl({"-A", "-t", kInitial});
  EXPECT_EQ(again.status, 1);
  EXPECT_TRUE(has(again.err,
                  "sluicectl: conflict: HOST rule 1 (TCP [127.0.0.1]:18080 => 18000) is the "
                  "same rule as rule 0: the table already forwards exactly this"))
      << again.err;
  EXPECT_TRUE(has(r.err, "nothing was sent")) << r.err;
  EXPECT_TRUE(has(listing(d), "generation 1,"));
  RunResult h = d.ctl({"--history"});
  ASSERT_EQ(h.status, 0) << h.err;
  EXPECT_FALSE(has(h.out, "rejected")) << h.out;  // the server never saw it
}

TEST(Ctl, InvalidSpecIsAUsageError) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-t", "80-70"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err,
            "sluicectl: -t '80-70': at position 1: the range 80-70 runs backwards; write "
            "70-80\n");
  EXPECT_TRUE(has(listing(d), "generation 1,"));
}

TEST(Ctl, SpecsAreCheckedBeforeTheConnection) {
  // No server at this path: a spec error is reported as such, not as a
  // connection problem.
  const std::string nowhere = "/tmp/sluice-no-such-dir/control.sock";
  RunResult typo = run_command({bin("sluicectl"), "-A", "-t", "80-70", nowhere});
  EXPECT_EQ(typo.status, 2);
  EXPECT_EQ(typo.err,
            "sluicectl: -t '80-70': at position 1: the range 80-70 runs backwards; write "
            "70-80\n");
  // The spec forgotten, so the path was taken as the spec.
  RunResult forgot = run_command({bin("sluicectl"), "-A", "-t", nowhere});
  EXPECT_EQ(forgot.status, 2);
  EXPECT_TRUE(has(forgot.err, "sluicectl: -t '" + nowhere + "': at position 2: ")) << forgot.err;
  EXPECT_TRUE(
      has(forgot.err, "; if '" + nowhere +
                          "' is the control socket: a SPEC goes right after its -t/-u/-T/-U, and "
                          "the socket PATH comes last, e.g. sluicectl -A -t 8080:80 PATH\n"))
      << forgot.err;
  EXPECT_FALSE(has(forgot.err, "cannot connect")) << forgot.err;
  EXPECT_EQ(forgot.out, "");
}

/// Sets this network namespace's ephemeral port range (every test process
/// has its own, namespace_main.cc) and puts the old one back when destroyed.
class EphemeralRange {
 public:
  /// Writes "`first` `last`"; ok() says whether that worked.
  EphemeralRange(unsigned first, unsigned last) {
    old_ = slurp(kPath);
    ok_ = write_range(std::to_string(first) + " " + std::to_string(last));
  }
  /// Puts the old range back.
  ~EphemeralRange() {
    if (ok_) write_range(old_);
  }
  EphemeralRange(const EphemeralRange&) = delete;
  EphemeralRange& operator=(const EphemeralRange&) = delete;
  /// True when the new range was written.
  bool ok() const { return ok_; }

 private:
  static constexpr const char* kPath = "/proc/sys/net/ipv4/ip_local_port_range";
  /// Writes `text` to the sysctl; false when that fails.
  static bool write_range(const std::string& text) {
    int fd = open(kPath, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    return ok;
  }
  std::string old_;
  bool ok_ = false;
};

TEST(Ctl, ASpecThatOnlyTheServersEphemeralRangeMakesValidIsAccepted) {
  // With the default range (32768-60999) left out, this spec forwards
  // nothing; this server's range (40000-60999) leaves 39990-39999. The
  // check before the connection, which knows no server, must let it through.
  EphemeralRange range(40000, 60999);
  ASSERT_TRUE(range.ok()) << "cannot set ip_local_port_range in the test's namespace";
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/all:127.0.0.2,~1-39989,~40000-65535"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(listing(d), "TCP [127.0.0.1]:39990-39999 => 127.0.0.2:39990-39999"))
      << listing(d);
  EXPECT_TRUE(listening(39995));
}

TEST(Ctl, PestoSocketIsNamedAsSuch) {
  // sluiced's pesto socket greets with pesto's magic, "basil:s\0", which is
  // no control frame: say what the socket is, not that the frame is bad.
  Daemon d;
  d.start({"--pesto-socket", d.pesto_path(), "-t", kInitial});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult r = run_command({bin("sluicectl"), d.pesto_path()});
  EXPECT_EQ(r.status, 3);
  EXPECT_EQ(r.err, "sluicectl: " + d.pesto_path() +
                       ": this is sluiced's pesto socket (sluiced --pesto-socket), which speaks "
                       "pesto's protocol (pesto and Podman use it); sluicectl talks to sluiced's "
                       "control socket: pass the PATH sluiced was given with -c (default: "
                       "/run/sluice/control.sock as root, else "
                       "$XDG_RUNTIME_DIR/sluice/control.sock)\n");
  EXPECT_EQ(r.out, "");
}

TEST(Ctl, ManPageDeleteExampleTakesAPortOutOfARange) {
  // sluicectl(1): "sluicectl -s -D -t 1500:11500", with the range rule its
  // comment names.
  Daemon d;
  start(d, "1000-2000:11000-12000");
  RunResult r = d.ctl({"-s", "-D", "-t", "1500:11500"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out,
                  "diff:\n- HOST TCP [*]:1000-2000 => 11000-12000\n"
                  "+ HOST TCP [*]:1000-1499 => 11000-11499\n"
                  "+ HOST TCP [*]:1501-2000 => 11501-12000\n"))
      << r.out;
  EXPECT_TRUE(has(r.out, "applied: generation 2, kept 1000, opened 0, closed 1")) << r.out;
  EXPECT_FALSE(listening(1500));
  EXPECT_TRUE(listening(1501));
}

TEST(Ctl, BindFailureKeepsTheOldTableServing) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  UniqueFd squatter = listen_tcp("127.0.0.1", 18090);
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/18089-18091:18000-18002"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "sluicectl: bind-failed: ")) << r.err;
  EXPECT_TRUE(has(r.err, "EADDRINUSE")) << r.err;
  EXPECT_TRUE(has(r.err,
                  "the server rejected the tables (1 failure); nothing changed, and "
                  "generation 1 still serves"))
      << r.err;
  std::string list = listing(d);
  EXPECT_TRUE(has(list, "generation 1,")) << list;
  EXPECT_TRUE(has(list, "HOST\n    TCP [127.0.0.1]:18080 => 18000\n")) << list;
  EXPECT_FALSE(has(list, "18089")) << list;
  expect_forwarded(18080, target.get());
  EXPECT_FALSE(listening(18089));

  // With --json, the report carries the failure and the tables that were pushed.
  RunResult j = d.ctl({"--json", "-A", "-t", "127.0.0.1/18090:18000"});
  EXPECT_EQ(j.status, 1);
  auto v = parse_json(j.out);
  ASSERT_TRUE(v.has_value()) << j.out;
  EXPECT_EQ(v->get("after")->get("pifs")->array.at(0).get("rules")->array.size(), 2u);
  const JsonValue& f = v->get("result")->get("failures")->array.at(0);
  EXPECT_EQ(f.get("errnoName")->string, "EADDRINUSE");
  EXPECT_EQ(f.get("kind")->string, "bind-failed");
  EXPECT_EQ(f.get("port")->integer(), 18090);
  EXPECT_FALSE(v->get("result")->get("applied")->boolean);
}

TEST(Ctl, ABestEffortPortThatDidNotBindIsReportedAndTriedAgainBySendingTheSameTables) {
  // Exclusions make a best-effort rule (ports 18090-18094 here): it keeps
  // the ports that bind. The one another program holds is a warning with
  // its rule, port and errno, and the same command tries it again (it is not
  // "no change" while a port of the tables does not listen), as pesto's does.
  // 192.0.2.1 is an address of this namespace's own, so that the default
  // target (loopback) is not where the rule listens.
  RunResult ip = run_command({"/sbin/ip", "addr", "replace", "192.0.2.1/32", "dev", "lo"});
  ASSERT_EQ(ip.status, 0) << ip.err;
  const std::string spec = "192.0.2.1/~1-18089,~18095-65535";
  auto squatter = std::make_unique<UniqueFd>(listen_tcp("192.0.2.1", 18092));
  Daemon d;
  start(d, "none");
  RunResult r = d.ctl({"-t", spec});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err,
                  "sluicectl: warning: bind-failed: HOST rule 0 (TCP [192.0.2.1]:18090-18094 "
                  "=> 18090-18094 (best effort)), port 18092: bind failed: EADDRINUSE"))
      << r.err;
  EXPECT_TRUE(has(r.err, "(best effort: the rule keeps its other ports)")) << r.err;
  EXPECT_TRUE(has(r.out, "opened 4")) << r.out;

  RunResult j = d.ctl({"--json", "-t", spec});
  EXPECT_EQ(j.status, 0) << j.err;
  auto v = parse_json(j.out);
  ASSERT_TRUE(v.has_value()) << j.out;
  EXPECT_TRUE(v->get("result")->get("applied")->boolean) << j.out;
  const JsonValue& w = v->get("result")->get("warnings")->array.at(0);
  EXPECT_EQ(w.get("port")->integer(), 18092);
  EXPECT_EQ(w.get("errnoName")->string, "EADDRINUSE");

  squatter.reset();
  r = d.ctl({"-t", spec});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "opened 1")) << r.out;
  EXPECT_FALSE(has(r.err, "warning")) << r.err;
  r = d.ctl({"-t", spec});
  EXPECT_TRUE(has(r.out, "no change")) << r.out;
}

TEST(Ctl, ABestEffortPortThePolicyRefusesIsNoReasonToSendTheTablesAgain) {
  // Only a policy reload changes a denial: the same command again is "no
  // change", not a new generation (and audit record) at every call.
  RunResult ip = run_command({"/sbin/ip", "addr", "replace", "192.0.2.1/32", "dev", "lo"});
  ASSERT_EQ(ip.status, 0) << ip.err;
  PolicyFileFixture policy("bind deny tcp,udp 18093 *\nbind allow tcp,udp 1024-65535 *\n");
  Daemon d;
  d.start({"--policy", policy.path(), "-t", "none"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const std::string spec = "192.0.2.1/~1-18089,~18095-65535";
  RunResult r = d.ctl({"-t", spec});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "sluicectl: warning: policy-denied: ")) << r.err;
  EXPECT_TRUE(has(r.out, "opened 4")) << r.out;
  r = d.ctl({"-t", spec});
  EXPECT_TRUE(has(r.out, "no change")) << r.out << r.err;
}

TEST(Ctl, CommentGoesIntoTheHistory) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"--comment", "ctl test push", "-A", "-t", "127.0.0.1/18083:18003"});
  ASSERT_EQ(r.status, 0) << r.err;
  RunResult h = d.ctl({"--history", "5"});
  ASSERT_EQ(h.status, 0) << h.err;
  EXPECT_TRUE(has(h.out, " applied pid ")) << h.out;
  EXPECT_TRUE(has(h.out, ": \"ctl test push\"\n    + ")) << h.out;
  EXPECT_TRUE(has(h.out, "TCP [127.0.0.1]:18083 => 18003")) << h.out;
  RunResult hj = d.ctl({"--history", "--json"});
  ASSERT_EQ(hj.status, 0) << hj.err;
  auto v = parse_json(hj.out);
  ASSERT_TRUE(v.has_value()) << hj.out;
  ASSERT_FALSE(v->array.empty());
  EXPECT_EQ(v->array.back().get("comment")->string, "ctl test push");
  EXPECT_EQ(v->array.back().get("outcome")->string, "applied");
}

TEST(Ctl, OptionFileIsSplicedInPlace) {
  Daemon d;
  start(d);
  std::string file = write_temp(
      "# added by the test\n"
      "-A\n"
      "-t 127.0.0.1/18083:18003   # one more\n"
      "--comment 'from a file'\n");
  RunResult r = d.ctl({"--file", file});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(listing(d), "    TCP [127.0.0.1]:18083 => 18003\n"));
  std::string bad = write_temp("-A\n-t 80-70\n");
  RunResult e = d.ctl({"--file", bad});
  EXPECT_EQ(e.status, 2);
  EXPECT_TRUE(has(e.err, "sluicectl: " + bad + ":2: -t '80-70': at position 1")) << e.err;
  std::string usage = write_temp("-A\n\n--frob\n");
  RunResult u = d.ctl({"--file", usage});
  EXPECT_EQ(u.status, 2);
  EXPECT_TRUE(has(u.err, usage + ":3: unknown option '--frob'")) << u.err;
  unlink(file.c_str());
  unlink(bad.c_str());
  unlink(usage.c_str());
}

TEST(Ctl, UsageErrorsExitTwo) {
  Daemon d;
  start(d);
  RunResult r = d.ctl({"-C", "FOO"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "-C 'FOO': no such table")) << r.err;
  EXPECT_EQ(d.ctl({"--dry-run"}).status, 2);
}

// As root, sluiced's default control socket is /run/sluice/control.sock, where
// sluicectl run by root looks. When /run/sluice was not usable (a file there,
// a symbolic link), sluiced once fell back to $XDG_RUNTIME_DIR, set in most
// root shells, and said so only in an info line: sluicectl then found no
// socket. Now it stops with one line that says what to do.
TEST(Ctl, RootsDefaultSocketDirectoryUnusableStopsSluicedSayingWhatToDo) {
  if (geteuid() != 0) GTEST_SKIP() << "root's default path";
  // A mount namespace of its own, with a tmpfs on /run that holds a file
  // named sluice: the host's /run is not touched.
  const RunResult r =
      run_command({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                   "mount -t tmpfs none /run && touch /run/sluice && mkdir -p /run/user/0 && "
                   "XDG_RUNTIME_DIR=/run/user/0 exec \"$0\" -t 127.0.0.1/18080:18000",
                   bin("sluiced")},
                  10000);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("no default place for the control socket: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fix /run/sluice (a directory of root, not writable by others), or pass a "
                       "path with -c PATH and give the same path to sluicectl"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("/run/user/0/sluice"), std::string::npos) << r.err;
}

TEST(Ctl, MissingSocketExitsThree) {
  RunResult r = run_command({bin("sluicectl"), "/tmp/sluice-no-such-dir/control.sock"});
  EXPECT_EQ(r.status, 3);
  EXPECT_TRUE(has(r.err, "cannot connect to /tmp/sluice-no-such-dir/control.sock: ENOENT"))
      << r.err;
  EXPECT_TRUE(has(r.err, "is sluiced running")) << r.err;
}

TEST(Ctl, APathThatIsNoSocketIsNamedAsSuch) {
  // connect() answers ECONNREFUSED for a file or a directory: "is sluiced
  // running?" would send the user the wrong way.
  char dir[] = "/tmp/sluice-ctl-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/control.sock";
  int fd = open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  RunResult r = run_command({bin("sluicectl"), file});
  EXPECT_EQ(r.status, 3);
  EXPECT_TRUE(has(r.err, "cannot connect to " + file + ": it is not a socket")) << r.err;
  EXPECT_FALSE(has(r.err, "is sluiced running")) << r.err;
  r = run_command({bin("sluicectl"), dir});
  EXPECT_EQ(r.status, 3);
  EXPECT_TRUE(has(r.err, std::string(": it is a directory, not sluiced's control socket")))
      << r.err;
  unlink(file.c_str());
  rmdir(dir);
}

TEST(Ctl, ConcurrentClientsRetryOnStaleGenerations) {
  Daemon d;
  start(d);
  // Three clients append at once; a client that loses the race re-reads the
  // tables and re-applies its edit. Each exits 0 (applied) or 4 (stale three
  // times), and the table holds exactly the ports of those that exited 0.
  constexpr int kClients = 3;
  std::vector<RunResult> results(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<size_t>(i)] =
          d.ctl({"-A", "-t", "127.0.0.1/" + std::to_string(18301 + i) + ":18000"});
    });
  }
  for (auto& t : threads) t.join();
  std::string list = listing(d);
  int applied = 0;
  for (int i = 0; i < kClients; ++i) {
    const RunResult& r = results[static_cast<size_t>(i)];
    std::string rule = "TCP [127.0.0.1]:" + std::to_string(18301 + i) + " => 18000";
    if (r.status == 0) {
      ++applied;
      EXPECT_TRUE(has(list, rule)) << list;
    } else {
      EXPECT_EQ(r.status, 4) << r.err;
      EXPECT_TRUE(has(r.err, "another client changed the tables concurrently")) << r.err;
      EXPECT_FALSE(has(list, rule)) << list;
    }
  }
  EXPECT_GE(applied, 1);
  EXPECT_TRUE(has(list, "generation " + std::to_string(1 + applied) + ",")) << list;
}

}  // namespace
}  // namespace sluice::test
