// Listeners bound to an interface (`%IFNAME` rules) across the interface's
// removal and re-creation, end to end: the real sluiced and worker in the
// test's namespace, a veth into a container stand-in (its far end is where
// the clients are, since sluice's own traffic never crosses an interface
// other than lo), and the interface deleted and created again as a VPN or a
// container runtime does. The kernel binds a socket to the interface's
// index; a re-created interface has a new one, so sluice must bind anew,
// without a commit, and say meanwhile that the port hears nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/container.h"
#include "tests/integration/daemon.h"
#include "tests/integration/host_echo.h"
#include "tests/integration/ns_client.h"
#include "tests/integration/udp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kPort = 18090;
constexpr uint16_t kTarget = 18091;

/// Waits (at most 10 s, in steps of 100 ms) until `done` holds.
template <typename F>
bool within_10s(F done) {
  for (int i = 0; i < 100; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

TEST(Interface, AListenerFollowsItsInterfaceThroughRemovalAndRecreation) {
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  NsClient inside(box.pid());  // before any thread of the test's own
  ASSERT_TRUE(inside.ok());
  ASSERT_EQ(link_to(box, "sli", "198.51.100.1/24", "198.51.100.5/24"), "");
  HostEcho tcp_target(kTarget);
  UdpEcho udp_target("127.0.0.1", kTarget, "t");
  Daemon d;
  const std::string rule =
      "198.51.100.1%slih/" + std::to_string(kPort) + ":" + std::to_string(kTarget);
  d.start({"-t", rule, "-u", rule});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  ASSERT_EQ(inside.tcp_echo("198.51.100.1", kPort, "before"), "before") << d.log();
  ASSERT_NE(inside.udp_request("198.51.100.1", kPort, "before-u"), "") << d.log();

  // The interface goes away (both ends of the pair): the port hears nothing
  // until it is back, and the log says so.
  RunResult del = run_command({"/sbin/ip", "link", "del", "slih"});
  ASSERT_EQ(del.status, 0) << del.err;
  EXPECT_TRUE(within_10s([&] {
    return d.log().find("serve nothing until it is back") != std::string::npos;
  })) << d.log();
  EXPECT_EQ(d.ctl().status, 0);  // sluiced serves its clients meanwhile

  // Back, with a new index: the listeners bind anew, with no commit.
  ASSERT_EQ(link_to(box, "sli", "198.51.100.1/24", "198.51.100.5/24"), "");
  EXPECT_TRUE(within_10s([&] {
    return inside.tcp_echo("198.51.100.1", kPort, "after") == "after";
  })) << d.log();
  EXPECT_NE(inside.udp_request("198.51.100.1", kPort, "after-u"), "") << d.log();
  EXPECT_NE(d.log().find("TCP 18090 on slih: the interface was removed or re-created; listening "
                         "on it again"),
            std::string::npos)
      << d.log();
  // Not a commit: the generation is the start's.
  EXPECT_NE(d.ctl({"--stats"}).out.find("generation 1"), std::string::npos)
      << d.ctl({"--stats"}).out;
}

TEST(Interface, AListenerServesNoOtherInterfaceThanItsOwn) {
  // The interface is renamed: the socket's index now names another
  // interface, and a rule for the old name must not serve on it. Renamed
  // back, the same socket serves again.
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  NsClient inside(box.pid());  // before any thread of the test's own
  ASSERT_TRUE(inside.ok());
  ASSERT_EQ(link_to(box, "slr", "198.51.100.1/24", "198.51.100.5/24"), "");
  HostEcho tcp_target(kTarget);
  Daemon d;
  d.start({"-t", "%slrh/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  ASSERT_EQ(inside.tcp_echo("198.51.100.1", kPort, "before"), "before") << d.log();
  auto rename = [](const std::string& from, const std::string& to) {
    for (const std::vector<std::string>& argv :
         {std::vector<std::string>{"/sbin/ip", "link", "set", from, "down"},
          std::vector<std::string>{"/sbin/ip", "link", "set", from, "name", to},
          std::vector<std::string>{"/sbin/ip", "link", "set", to, "up"}}) {
      RunResult r = run_command(argv);
      if (r.status != 0) return r.err;
    }
    return std::string();
  };
  ASSERT_EQ(rename("slrh", "slrx"), "");
  EXPECT_TRUE(within_10s([&] {
    return d.log().find("serve nothing until it is back: TCP 18090 on slrh") != std::string::npos;
  })) << d.log();
  EXPECT_EQ(inside.tcp_echo("198.51.100.1", kPort, "renamed"), "")
      << "served on slrx for a rule of slrh\n"
      << d.log();
  ASSERT_EQ(rename("slrx", "slrh"), "");
  EXPECT_TRUE(within_10s([&] { return inside.tcp_echo("198.51.100.1", kPort, "back") == "back"; }))
      << d.log();
}

}  // namespace
}  // namespace sluice::test
