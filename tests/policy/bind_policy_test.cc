// The bind policy: the policy-file parser (valid lines, every kind of error
// with its line number) and check_bind (first match wins, no match = deny,
// the privileged-port rule, allow/deny address matching).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <string>

#include "policy/bind_policy.h"
#include "policy/policy_file.h"
#include "tests/broker/test_wire.h"

namespace sluice {
namespace {

using testing::spec_v4;
using testing::spec_v6;

constexpr uint8_t kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

/// Parses `text` as "P" and CHECKs that it is valid.
PolicyFile parse_ok(const std::string& text) {
  auto f = parse_policy_text(text, "P");
  EXPECT_TRUE(f.ok()) << f.error().message;
  return f.ok() ? *f : PolicyFile{};
}

/// Expects `text` to fail with a message containing `needle`.
void expect_parse_error(const std::string& text, const std::string& needle) {
  auto f = parse_policy_text(text, "P");
  ASSERT_FALSE(f.ok()) << "accepted: " << text;
  EXPECT_NE(f.error().message.find(needle), std::string::npos) << f.error().message;
}

/// A grant of `spec`'s address and so on, for its port up to `last`.
wire::PortGrant grant(const wire::ListenerSpec& spec, uint16_t last) {
  wire::PortGrant g = {};
  g.listener = spec;
  g.last_port = last;
  return g;
}

/// A policy enforcing `text`, with the capability (so only the file decides).
BindPolicy policy_of(const std::string& text) {
  BindPolicy p = bind_policy_from_file(parse_ok(text));
  p.has_bind_cap = true;
  return p;
}

// --- parser: valid input ---

TEST(PolicyFile, ParsesEveryFieldForm) {
  PolicyFile f = parse_ok(
      "# a comment\n"
      "\n"
      "bind allow tcp 80 127.0.0.1   # trailing comment\n"
      "  bind   deny\tudp 53,1000-2000 10.0.0.0/8,::1,fd00::/8\r\n"
      "bind allow tcp,udp * *\n"
      "target allow * *\n"
      "control commit uid=0\n");
  ASSERT_EQ(f.bind_rules.size(), 3u);
  EXPECT_EQ(f.target_rules.size(), 1u);
  EXPECT_EQ(f.control_rules.size(), 1u);
  const BindRule& a = f.bind_rules[0];
  EXPECT_TRUE(a.allow);
  EXPECT_TRUE(a.tcp);
  EXPECT_FALSE(a.udp);
  ASSERT_EQ(a.ports.size(), 1u);
  EXPECT_EQ(a.ports[0].first, 80);
  EXPECT_EQ(a.line, 3u);
  EXPECT_EQ(a.text, "bind allow tcp 80 127.0.0.1");
  const BindRule& b = f.bind_rules[1];
  EXPECT_FALSE(b.allow);
  EXPECT_TRUE(b.udp);
  ASSERT_EQ(b.ports.size(), 2u);
  EXPECT_EQ(b.ports[1].first, 1000);
  EXPECT_EQ(b.ports[1].last, 2000);
  ASSERT_EQ(b.addrs.size(), 3u);
  EXPECT_EQ(b.addrs[0].family, wire::WireFamily::kInet);
  EXPECT_EQ(b.addrs[0].bits, 96 + 8);
  EXPECT_EQ(b.addrs[1].bits, 128);
  EXPECT_EQ(b.line, 4u);
  EXPECT_EQ(b.text, "bind deny udp 53,1000-2000 10.0.0.0/8,::1,fd00::/8");
  EXPECT_TRUE(f.bind_rules[2].any_port);
  EXPECT_TRUE(f.bind_rules[2].any_addr);
  EXPECT_TRUE(f.bind_rules[2].tcp && f.bind_rules[2].udp);
}

TEST(PolicyFile, EmptyFileHasNoRules) {
  EXPECT_TRUE(parse_ok("").bind_rules.empty());
  EXPECT_TRUE(parse_ok("# only a comment\n\n").bind_rules.empty());
}

// --- parser: each kind of error, with its line number ---

TEST(PolicyFile, ErrorsNameFileAndLine) {
  expect_parse_error("bind allow tcp 80 *\n\nbind allow icmp 80 *\n", "P line 3: unknown protocol");
}

TEST(PolicyFile, RejectsUnknownKeyword) {
  expect_parse_error("allow tcp 80 *\n", "line 1: unknown keyword \"allow\"");
}

TEST(PolicyFile, RejectsWrongFieldCount) {
  expect_parse_error("bind allow tcp 80\n", "has 5 fields");
  expect_parse_error("bind allow tcp 80 * extra\n", "this one has 6");
}

TEST(PolicyFile, RejectsUnknownAction) {
  expect_parse_error("bind permit tcp 80 *\n", "unknown action \"permit\"");
}

TEST(PolicyFile, RejectsBadProtocols) {
  expect_parse_error("bind allow sctp 80 *\n", "unknown protocol \"sctp\"");
  expect_parse_error("bind allow tcp,,udp 80 *\n", "unknown protocol \"\"");
  expect_parse_error("bind allow tcp,tcp 80 *\n", "listed twice");
}

TEST(PolicyFile, RejectsBadPorts) {
  expect_parse_error("bind allow tcp 0 *\n", "bad port \"0\"");
  expect_parse_error("bind allow tcp 65536 *\n", "bad port \"65536\"");
  expect_parse_error("bind allow tcp http *\n", "bad port \"http\"");
  expect_parse_error("bind allow tcp 80, *\n", "bad port \"\"");
  expect_parse_error("bind allow tcp 90-80 *\n", "ends before it starts");
  expect_parse_error("bind allow tcp 80-* *\n", "bad port \"*\"");
}

TEST(PolicyFile, RejectsBadAddresses) {
  expect_parse_error("bind allow tcp 80 localhost\n", "bad address \"localhost\"");
  expect_parse_error("bind allow tcp 80 10.0.0.0/33\n", "bad prefix length");
  expect_parse_error("bind allow tcp 80 ::/129\n", "expected /0 to /128");
  expect_parse_error("bind allow tcp 80 10.0.0.1/8\n", "did you mean 10.0.0.0/8?");
  expect_parse_error("bind allow tcp 80 ::ffff:1.2.3.4\n", "IPv4-mapped");
  expect_parse_error("bind allow tcp 80 1.2.3.4,\n", "bad address \"\"");
}

TEST(PolicyFile, LoadsFromDiskAndReportsMissingFile) {
  char path[] = "/tmp/sluice-policy-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "bind deny tcp 22 *\nbind allow * * *\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  auto f = load_policy_file(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->bind_rules.size(), 2u);
  EXPECT_EQ(f->source, path);
  ::unlink(path);
  auto missing = load_policy_file(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("ENOENT"), std::string::npos);
  auto dir = load_policy_file("/tmp");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.error().message.find("not a regular file"), std::string::npos);
}

/// Runs load_policy_file(`path`) on another thread and returns its result
/// within 5 s. When it is still blocked then (a FIFO opened without
/// O_NONBLOCK waits for a writer), `unblock` frees it so that the test ends;
/// the blocked call then counts as a failure of the test.
Result<PolicyFile> load_within_5s(const std::string& path, const std::function<void()>& unblock) {
  auto load = std::async(std::launch::async, [&path] { return load_policy_file(path); });
  if (load.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "load_policy_file(" << path << ") still blocked after 5 s";
    unblock();
  }
  return load.get();
}

TEST(PolicyFile, RefusesAFifoAtOnceWithoutWaitingForAWriter) {
  char dir[] = "/tmp/sluice-policy-fifo-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/policy";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0) << std::strerror(errno);
  const auto started = std::chrono::steady_clock::now();
  auto f = load_within_5s(path, [&path] {
    // A writer that comes and goes lets a blocked open (and its read) finish.
    int w = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (w >= 0) ::close(w);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  ASSERT_FALSE(f.ok());
  const std::string& msg = f.error().message;
  EXPECT_NE(msg.find("policy file " + path + " is a FIFO (named pipe), not a regular file"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("give --policy a regular file"), std::string::npos) << msg;
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST(PolicyFile, RefusesADeviceAndFollowsASymlinkToAFile) {
  auto dev = load_within_5s("/dev/zero", [] {});
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.error().message.find("/dev/zero is a character device, not a regular file"),
            std::string::npos)
      << dev.error().message;
  // Administrators link their configs: a symlink to a regular file is read.
  char dir[] = "/tmp/sluice-policy-link-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/real", link = std::string(dir) + "/link";
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  const std::string text = "bind allow * * *\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  ASSERT_EQ(::symlink(file.c_str(), link.c_str()), 0);
  auto linked = load_policy_file(link);
  ASSERT_TRUE(linked.ok()) << linked.error().message;
  EXPECT_EQ(linked->bind_rules.size(), 1u);
  ::unlink(link.c_str());
  ::unlink(file.c_str());
  ::rmdir(dir);
}

// --- check_bind ---

TEST(CheckBind, DefaultPolicyAllowsUnprivilegedPorts) {
  BindPolicy p;
  EXPECT_TRUE(check_bind(p, spec_v4(0, 0, 0, 0, 1024)).allowed);
  EXPECT_TRUE(check_bind(p, spec_v6(nullptr, 8080, true)).allowed);
}

TEST(CheckBind, PrivilegedPortNeedsTheCapability) {
  BindPolicy p;
  p.unprivileged_port_start = 1024;
  BindDecision d = check_bind(p, spec_v4(127, 0, 0, 1, 80));
  EXPECT_FALSE(d.allowed);
  EXPECT_NE(d.reason.find("port 80 is below net.ipv4.ip_unprivileged_port_start (1024)"),
            std::string::npos)
      << d.reason;
  EXPECT_NE(d.reason.find("setcap cap_net_bind_service=ep sluiced"), std::string::npos);
  p.has_bind_cap = true;
  p.initial_grants = {grant(spec_v4(127, 0, 0, 1, 80), 80)};
  EXPECT_TRUE(check_bind(p, spec_v4(127, 0, 0, 1, 80)).allowed);
  p.has_bind_cap = false;
  p.initial_grants.clear();
  p.unprivileged_port_start = 0;  // the sysctl lowered: no capability needed
  EXPECT_TRUE(check_bind(p, spec_v4(127, 0, 0, 1, 80)).allowed);
}

// Security review item 6: with CAP_NET_BIND_SERVICE and no `bind` lines,
// the default used to allow any port on any address, so a compromised worker
// could take 22, 53 or 443. Now a privileged port needs a grant of the
// initial rules, exactly: protocol, address, interface, dual-stack, range.
TEST(CheckBind, DefaultPolicyWithTheCapabilityAllowsOnlyTheInitialRulesPrivilegedPorts) {
  BindPolicy p;
  p.unprivileged_port_start = 1024;
  p.has_bind_cap = true;
  EXPECT_TRUE(check_bind(p, spec_v4(0, 0, 0, 0, 1024)).allowed);
  EXPECT_TRUE(check_bind(p, spec_v6(nullptr, 65535, true)).allowed);
  for (uint16_t port : {22, 53, 443, 1023}) {
    EXPECT_FALSE(check_bind(p, spec_v4(0, 0, 0, 0, port)).allowed) << port;
  }
  p.initial_grants = {grant(spec_v4(127, 0, 0, 1, 80), 89), grant(spec_v6(nullptr, 53, true), 53)};
  EXPECT_TRUE(check_bind(p, spec_v4(127, 0, 0, 1, 80)).allowed);
  EXPECT_TRUE(check_bind(p, spec_v4(127, 0, 0, 1, 89)).allowed);
  EXPECT_TRUE(check_bind(p, spec_v6(nullptr, 53, true)).allowed);
  EXPECT_FALSE(check_bind(p, spec_v4(127, 0, 0, 1, 79)).allowed);  // below the range
  EXPECT_FALSE(check_bind(p, spec_v4(127, 0, 0, 1, 90)).allowed);  // above it
  EXPECT_FALSE(check_bind(p, spec_v4(0, 0, 0, 0, 80)).allowed);    // another address
  EXPECT_FALSE(check_bind(p, spec_v4(127, 0, 0, 2, 80)).allowed);  // another address
  EXPECT_FALSE(check_bind(p, spec_v6(nullptr, 53)).allowed);       // not dual-stack
  EXPECT_FALSE(check_bind(p, spec_v6(kLoop6, 53)).allowed);        // another family
  EXPECT_FALSE(check_bind(p, spec_v4(127, 0, 0, 1, 80, wire::WireProto::kUdp)).allowed);
  auto on_eth0 = spec_v4(127, 0, 0, 1, 80);
  std::strcpy(on_eth0.ifname, "eth0");
  EXPECT_FALSE(check_bind(p, on_eth0).allowed);  // another interface
}

TEST(CheckBind, DefaultPolicyDenialSaysHowToAllowThePort) {
  BindPolicy p;
  p.unprivileged_port_start = 1024;
  p.has_bind_cap = true;
  BindDecision d = check_bind(p, spec_v4(0, 0, 0, 0, 22));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason,
            "port 22 is below net.ipv4.ip_unprivileged_port_start (1024) and sluiced's initial "
            "rules do not name tcp 0.0.0.0 port 22: without `bind` lines in a policy, sluiced "
            "opens privileged ports only for the rules on its command line; to allow it, start "
            "sluiced with --policy FILE holding `bind allow tcp 22 0.0.0.0` and `bind allow "
            "tcp,udp 1024-65535 *` (a policy's `bind` lines decide every port, so the second "
            "keeps the unprivileged ones open: docs/POLICY.md)");
  // The suggested line allows what was refused: dual-stack names both halves.
  auto dual = spec_v6(nullptr, 443, true, wire::WireProto::kUdp);
  d = check_bind(p, dual);
  EXPECT_NE(d.reason.find("`bind allow udp 443 ::,0.0.0.0`"), std::string::npos) << d.reason;
  EXPECT_TRUE(check_bind(policy_of("bind allow udp 443 ::,0.0.0.0\n"), dual).allowed);
  d = check_bind(p, spec_v6(kLoop6, 53));
  EXPECT_NE(d.reason.find("`bind allow tcp 53 ::1`"), std::string::npos) << d.reason;
  EXPECT_TRUE(check_bind(policy_of("bind allow tcp 53 ::1\n"), spec_v6(kLoop6, 53)).allowed);
  // The suggested file, both lines, keeps the unprivileged ports open too.
  BindPolicy both = policy_of("bind allow tcp 53 ::1\nbind allow tcp,udp 1024-65535 *\n");
  EXPECT_TRUE(check_bind(both, spec_v6(kLoop6, 53)).allowed);
  EXPECT_TRUE(check_bind(both, spec_v4(127, 0, 0, 1, 18080)).allowed);
  EXPECT_TRUE(check_bind(both, spec_v6(nullptr, 18080, true, wire::WireProto::kUdp)).allowed);
}

TEST(CheckBind, PolicyFileBindLinesDecideWithoutGrants) {
  // With `bind` lines, the file decides every port; grants play no part.
  BindPolicy p = policy_of("bind allow tcp 22 127.0.0.1\nbind allow * 1024-65535 *\n");
  EXPECT_TRUE(check_bind(p, spec_v4(127, 0, 0, 1, 22)).allowed);
  p.initial_grants = {grant(spec_v4(127, 0, 0, 1, 80), 80)};
  EXPECT_FALSE(check_bind(p, spec_v4(127, 0, 0, 1, 80)).allowed);
  // A file with only target or control lines keeps the default, grants and all.
  BindPolicy q = policy_of("control commit uid=0\n");
  EXPECT_FALSE(check_bind(q, spec_v4(127, 0, 0, 1, 80)).allowed);
  q.initial_grants = {grant(spec_v4(127, 0, 0, 1, 80), 80)};
  EXPECT_TRUE(check_bind(q, spec_v4(127, 0, 0, 1, 80)).allowed);
}

// --- describe_bind_policy: the one line sluiced logs at start ---

TEST(DescribeBindPolicy, NamesThePolicyInForce) {
  BindPolicy p;
  p.unprivileged_port_start = 1024;
  EXPECT_EQ(describe_bind_policy(p),
            "bind policy: the default (no --policy): ports 1024-65535 on any address; ports "
            "below 1024 are refused: sluiced does not hold CAP_NET_BIND_SERVICE");
  p.has_bind_cap = true;
  EXPECT_EQ(describe_bind_policy(p),
            "bind policy: the default (no --policy): ports 1024-65535 on any address, and no "
            "port below 1024 (the initial rules name none); for other privileged ports, give "
            "--policy FILE with `bind` lines");
  p.initial_grants = {grant(spec_v4(127, 0, 0, 1, 80), 80),
                      grant(spec_v6(nullptr, 1, true, wire::WireProto::kUdp), 1023)};
  EXPECT_EQ(describe_bind_policy(p),
            "bind policy: the default (no --policy): ports 1024-65535 on any address, and below "
            "1024 only the privileged ports of the initial rules: tcp 127.0.0.1 port 80, udp * "
            "(dual-stack) ports 1-1023; for other privileged ports, give --policy FILE with "
            "`bind` lines");
  p.initial_grants.assign(kMaxGrantsDescribed + 3, grant(spec_v4(127, 0, 0, 1, 80), 80));
  EXPECT_NE(describe_bind_policy(p).find("port 80, and 3 more ranges;"), std::string::npos)
      << describe_bind_policy(p);
  p.unprivileged_port_start = 0;
  EXPECT_EQ(describe_bind_policy(p),
            "bind policy: the default (no --policy): any port on any address "
            "(net.ipv4.ip_unprivileged_port_start is 0)");

  BindPolicy f = policy_of("bind allow tcp 80 *\nbind allow * 1024-65535 *\n");
  f.source = "/etc/sluice/policy";
  f.unprivileged_port_start = 1024;
  EXPECT_EQ(describe_bind_policy(f),
            "bind policy: /etc/sluice/policy, 2 `bind` lines; the first that matches decides, a "
            "request no line matches is denied; ports below 1024 also need "
            "CAP_NET_BIND_SERVICE, which sluiced holds");
  BindPolicy g = policy_of("control commit uid=0\n");
  g.source = "/etc/sluice/policy";
  EXPECT_EQ(describe_bind_policy(g).rfind(
                "bind policy: the default (/etc/sluice/policy has no `bind` lines): ", 0),
            0u)
      << describe_bind_policy(g);
}

TEST(CheckBind, PolicyFileStillNeedsTheCapabilityForLowPorts) {
  BindPolicy p = policy_of("bind allow * * *\n");
  p.has_bind_cap = false;
  BindDecision d = check_bind(p, spec_v4(127, 0, 0, 1, 443));
  EXPECT_FALSE(d.allowed);
  EXPECT_NE(d.reason.find("CAP_NET_BIND_SERVICE"), std::string::npos);
}

TEST(CheckBind, FirstMatchWins) {
  BindPolicy p = policy_of("bind deny tcp 22 *\nbind allow tcp * *\nbind deny tcp 80 *\n");
  p.source = "/etc/sluice/policy";
  BindDecision d = check_bind(p, spec_v4(0, 0, 0, 0, 22));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason,
            "denied by /etc/sluice/policy line 1 (bind deny tcp 22 *); use a port and address the "
            "policy allows, or ask the administrator to change that line");
  EXPECT_TRUE(check_bind(p, spec_v4(0, 0, 0, 0, 80)).allowed);  // line 2 matched first
}

TEST(CheckBind, NoMatchIsDenied) {
  BindPolicy p = policy_of("bind allow tcp 8000-8999 127.0.0.0/8\n");
  EXPECT_TRUE(check_bind(p, spec_v4(127, 0, 0, 1, 8080)).allowed);
  BindDecision d = check_bind(p, spec_v4(127, 0, 0, 1, 9000));
  EXPECT_FALSE(d.allowed);
  EXPECT_NE(d.reason.find("no `bind` line matches tcp 127.0.0.1 port 9000"), std::string::npos)
      << d.reason;
  EXPECT_FALSE(check_bind(p, spec_v4(127, 0, 0, 1, 8080, wire::WireProto::kUdp)).allowed);
}

// A file without `bind` lines (empty, or only target/control lines) keeps the
// default bind policy: each kind of line has its own default.
TEST(CheckBind, FileWithoutBindLinesKeepsTheDefault) {
  EXPECT_TRUE(check_bind(policy_of(""), spec_v4(127, 0, 0, 1, 8080)).allowed);
  EXPECT_TRUE(
      check_bind(policy_of("control commit uid=0\ntarget deny * *\n"), spec_v4(127, 0, 0, 1, 8080))
          .allowed);
  EXPECT_FALSE(check_bind(policy_of("bind allow udp * *\n"), spec_v4(127, 0, 0, 1, 8080)).allowed);
}

TEST(CheckBind, AllowNeedsTheLiteralAddress) {
  BindPolicy p = policy_of("bind allow tcp * 127.0.0.0/8\n");
  EXPECT_TRUE(check_bind(p, spec_v4(127, 1, 2, 3, 8080)).allowed);
  // The wildcard would also receive on other addresses: not covered.
  EXPECT_FALSE(check_bind(p, spec_v4(0, 0, 0, 0, 8080)).allowed);
  EXPECT_TRUE(
      check_bind(policy_of("bind allow tcp * 0.0.0.0\n"), spec_v4(0, 0, 0, 0, 8080)).allowed);
}

TEST(CheckBind, FamiliesDoNotMix) {
  // ::/0 contains ::ffff:0:0/96 bitwise, but must not allow IPv4.
  BindPolicy p = policy_of("bind allow tcp * ::/0\n");
  EXPECT_TRUE(check_bind(p, spec_v6(kLoop6, 8080)).allowed);
  EXPECT_FALSE(check_bind(p, spec_v4(127, 0, 0, 1, 8080)).allowed);
  BindPolicy q = policy_of("bind allow tcp * 0.0.0.0/0\n");
  EXPECT_FALSE(check_bind(q, spec_v6(kLoop6, 8080)).allowed);
}

TEST(CheckBind, DualStackNeedsBothFamiliesAllowed) {
  auto dual = spec_v6(nullptr, 8080, true);
  BindDecision d = check_bind(policy_of("bind allow tcp * ::\n"), dual);
  EXPECT_FALSE(d.allowed);
  EXPECT_NE(d.reason.find("dual-stack"), std::string::npos) << d.reason;
  EXPECT_TRUE(check_bind(policy_of("bind allow tcp * ::,0.0.0.0\n"), dual).allowed);
  EXPECT_TRUE(check_bind(policy_of("bind allow tcp * *\n"), dual).allowed);
}

TEST(CheckBind, DenyMatchesWildcardsThatWouldReceiveTheAddress) {
  BindPolicy p = policy_of("bind deny tcp 22 127.0.0.1\nbind allow * * *\n");
  EXPECT_FALSE(check_bind(p, spec_v4(127, 0, 0, 1, 22)).allowed);
  EXPECT_FALSE(check_bind(p, spec_v4(0, 0, 0, 0, 22)).allowed);
  EXPECT_FALSE(check_bind(p, spec_v6(nullptr, 22, true)).allowed);
  EXPECT_TRUE(check_bind(p, spec_v4(127, 0, 0, 2, 22)).allowed);
  EXPECT_TRUE(check_bind(p, spec_v6(nullptr, 22)).allowed);  // IPv6-only [::] cannot receive it
  EXPECT_TRUE(check_bind(p, spec_v4(127, 0, 0, 1, 23)).allowed);
}

TEST(CheckBind, PrefixBoundaries) {
  AddrPrefix p;
  p.family = wire::WireFamily::kInet;
  auto in = spec_v4(10, 1, 255, 255, 1);
  auto out = spec_v4(10, 2, 0, 0, 1);
  std::memcpy(p.addr, spec_v4(10, 0, 0, 0, 1).addr, 16);
  p.bits = 96 + 14;  // 10.0.0.0/14 = 10.0.0.0 .. 10.3.255.255
  EXPECT_TRUE(prefix_contains(p, wire::WireFamily::kInet, in.addr));
  EXPECT_TRUE(prefix_contains(p, wire::WireFamily::kInet, out.addr));
  p.bits = 96 + 15;  // 10.0.0.0 .. 10.1.255.255
  EXPECT_TRUE(prefix_contains(p, wire::WireFamily::kInet, in.addr));
  EXPECT_FALSE(prefix_contains(p, wire::WireFamily::kInet, out.addr));
}

TEST(CheckBind, DescribesListeners) {
  EXPECT_EQ(describe_listener(spec_v4(127, 0, 0, 1, 22)), "tcp 127.0.0.1 port 22");
  EXPECT_EQ(describe_listener(spec_v6(kLoop6, 53, false, wire::WireProto::kUdp)),
            "udp [::1] port 53");
  EXPECT_EQ(describe_listener(spec_v6(nullptr, 80, true)), "tcp * (dual-stack) port 80");
  auto s = spec_v4(0, 0, 0, 0, 80);
  std::strcpy(s.ifname, "eth\x01");
  EXPECT_EQ(describe_listener(s), "tcp 0.0.0.0%eth\\x01 port 80");
}

}  // namespace
}  // namespace sluice
