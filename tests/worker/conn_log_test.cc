// worker/conn_log.h: the connection log's lines, one per way a TCP
// connection or a UDP flow ends, and for a refused connection. The log as
// sluiced writes it is checked end to end in tests/integration
// (Forward.TheConnectionLogHasALineForEveryConnectionAndFlow).
#include "worker/conn_log.h"

#include "base/strings.h"

#include <arpa/inet.h>
#include <errno.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>

namespace sluice {
namespace {

/// The endpoint of the address literal `text` (IPv4 as v4-mapped) and `port`.
Endpoint endpoint(const char* text, uint16_t port) {
  Endpoint e;
  e.port = port;
  in_addr v4;
  if (inet_pton(AF_INET, text, &v4) == 1) {
    e.addr[10] = e.addr[11] = 0xff;
    std::memcpy(e.addr.data() + 12, &v4, 4);
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text, e.addr.data()), 1) << text;
  }
  return e;
}

/// A rule as routes carry it, with its listing text.
Route route(const char* text) {
  Route r;
  r.text = text;
  return r;
}

TEST(ConnLog, EndpointsAreWrittenAsClientsWriteThem) {
  EXPECT_EQ(describe_endpoint(endpoint("10.0.0.5", 51234)), "10.0.0.5:51234");
  EXPECT_EQ(describe_endpoint(endpoint("2001:db8::5", 80)), "[2001:db8::5]:80");
  EXPECT_EQ(describe_endpoint(endpoint("::1", 1)), "[::1]:1");
}

TEST(ConnLog, AConnectionsLineSaysWhoWhereHowLongHowMuchAndHowItEnded) {
  const Route r = route("TCP [0.0.0.0]:8080 => 8000");
  ConnRecord rec;
  rec.client = endpoint("10.0.0.5", 51234);
  rec.start_ns = 5'000'000'000ULL;
  rec.first_fin = 'c';
  const uint64_t end = rec.start_ns + 1'204'000'000ULL;
  EXPECT_EQ(connection_ended_line(r, rec, 8000, end, 340, 12000, ConnEnd::kClosed, 0),
            "TCP [0.0.0.0]:8080 => 8000: connection from 10.0.0.5:51234 to port 8000 ended after "
            "1.204 s, 340 bytes to the target and 12000 to the client: the client closed first");
  rec.first_fin = 't';
  EXPECT_NE(connection_ended_line(r, rec, 8000, end, 0, 0, ConnEnd::kClosed, 0)
                .find(": the target closed first"),
            std::string::npos);
  const std::pair<ConnEnd, const char*> endings[] = {
      {ConnEnd::kReset, ": reset (a peer reset it, or a socket operation failed)"},
      {ConnEnd::kStopped, ": still open when the worker stopped"},
      {ConnEnd::kIdle, ": reset: no byte either way for --idle-timeout"},
      {ConnEnd::kConnectTimeout, ": the target did not answer within --connect-timeout"},
      {ConnEnd::kEnded, ": reset: its rule was removed"},
  };
  for (const auto& [how, text] : endings) {
    const std::string line = connection_ended_line(r, rec, 8000, end, 1, 2, how, 0);
    EXPECT_EQ(line.substr(line.size() - std::strlen(text)), text) << line;
  }
  const std::string refused = connection_ended_line(r, rec, 8000, rec.start_ns + 999'000ULL, 0, 0,
                                                    ConnEnd::kConnectFailed, ECONNREFUSED);
  EXPECT_NE(refused.find("ended after 0.000 s"), std::string::npos) << refused;
  EXPECT_NE(refused.find(": the target refused it: ECONNREFUSED"), std::string::npos) << refused;
  // Only ECONNREFUSED is a refusal; the rest could not reach it.
  for (int err : {ENETUNREACH, EHOSTUNREACH, ETIMEDOUT}) {
    const std::string line =
        connection_ended_line(r, rec, 8000, end, 0, 0, ConnEnd::kConnectFailed, err);
    EXPECT_NE(line.find(": could not connect to the target: " + errno_text(err)), std::string::npos)
        << line;
  }
  // A clock read before the start (it cannot go back, but a record made
  // later than the end is no reason for a wrapped duration).
  EXPECT_NE(
      connection_ended_line(r, rec, 8000, 0, 0, 0, ConnEnd::kReset, 0).find("ended after 0.000 s"),
      std::string::npos);
}

TEST(ConnLog, ARefusedConnectionAndAFlowHaveTheirLines) {
  EXPECT_EQ(connection_refused_line(route("TCP [::]:443 => 8443"), endpoint("2001:db8::7", 40000),
                                    "a forwarding loop", 0),
            "TCP [::]:443 => 8443: connection from [2001:db8::7]:40000 refused: a forwarding loop");
  EXPECT_EQ(connection_refused_line(route("TCP [::]:443 => 8443"), endpoint("10.0.0.1", 1),
                                    "no socket for the target", EMFILE),
            "TCP [::]:443 => 8443: connection from 10.0.0.1:1 refused: no socket for the target: "
            "EMFILE (Too many open files)");
  FlowRecord rec;
  rec.start_ns = 1'000'000'000ULL;
  rec.datagrams_to_target = 12;
  rec.bytes_to_target = 800;
  rec.datagrams_to_client = 11;
  rec.bytes_to_client = 1600;
  const Route r = route("UDP [0.0.0.0]:5353 => 53");
  EXPECT_EQ(flow_ended_line(r, endpoint("10.0.0.5", 40000), rec, 31'112'000'000ULL, FlowEnd::kIdle),
            "UDP [0.0.0.0]:5353 => 53: flow from 10.0.0.5:40000 ended after 30.112 s, 12 "
            "datagrams (800 bytes) to the target and 11 (1600 bytes) to the client: idle for "
            "--udp-idle-timeout");
  EXPECT_NE(flow_ended_line(r, endpoint("10.0.0.5", 40000), rec, rec.start_ns, FlowEnd::kRemoved)
                .find(": its listener closed (a commit removed or moved its port)"),
            std::string::npos);
  EXPECT_NE(
      flow_ended_line(r, endpoint("10.0.0.5", 40000), rec, rec.start_ns, FlowEnd::kRuleRemoved)
          .find(": its rule was removed"),
      std::string::npos);
  EXPECT_NE(flow_ended_line(r, endpoint("10.0.0.5", 40000), rec, rec.start_ns, FlowEnd::kStopped)
                .find(": still open when the worker stopped"),
            std::string::npos);
  FlowRecord one;
  one.datagrams_to_target = 1;
  EXPECT_NE(flow_ended_line(r, endpoint("10.0.0.5", 40000), one, 0, FlowEnd::kIdle)
                .find(", 1 datagram (0 bytes) to the target"),
            std::string::npos);
}

}  // namespace
}  // namespace sluice
