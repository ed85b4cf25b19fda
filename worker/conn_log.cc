// The connection log's lines (see conn_log.h).
#include "worker/conn_log.h"

#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "base/strings.h"
#include "schema/model.h"

namespace sluice {
namespace {

/// "1.204 s": `ns` in seconds with milliseconds.
std::string seconds(uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%" PRIu64 ".%03" PRIu64 " s",
                static_cast<uint64_t>(ns / 1000000000U),
                static_cast<uint64_t>(ns / 1000000U % 1000U));
  return buf;
}

/// Why a connection ended, as the end of its line.
std::string ending(ConnEnd how, char first_fin, int err) {
  switch (how) {
    case ConnEnd::kClosed:
      return first_fin == 't' ? "the target closed first" : "the client closed first";
    case ConnEnd::kReset:
      return "reset (a peer reset it, or a socket operation failed)";
    case ConnEnd::kIdle:
      return "reset: no byte either way for --idle-timeout";
    case ConnEnd::kConnectFailed:
      return (err == ECONNREFUSED ? "the target refused it: "
                                  : "could not connect to the target: ") +
             errno_text(err);
    case ConnEnd::kConnectTimeout:
      return "the target did not answer within --connect-timeout";
    case ConnEnd::kEnded:
      return "reset: its rule was removed";
    case ConnEnd::kStopped:
      return "still open when the worker stopped";
  }
  return "ended";
}

}  // namespace

std::string describe_endpoint(const Endpoint& endpoint) {
  const std::string port = std::to_string(endpoint.port);
  const std::string addr = format_addr(endpoint.addr);
  return addr_is_v4(endpoint.addr) ? addr + ":" + port : "[" + addr + "]:" + port;
}

std::string connection_ended_line(const Route& route, const ConnRecord& record,
                                  uint16_t target_port, uint64_t now_ns, uint64_t to_target,
                                  uint64_t to_client, ConnEnd how, int err) {
  const uint64_t lasted = now_ns > record.start_ns ? now_ns - record.start_ns : 0;
  return route.text + ": connection from " + describe_endpoint(record.client) + " to port " +
         std::to_string(target_port) + " ended after " + seconds(lasted) + ", " +
         std::to_string(to_target) + " bytes to the target and " + std::to_string(to_client) +
         " to the client: " + ending(how, record.first_fin, err);
}

std::string connection_refused_line(const Route& route, const Endpoint& client, const char* why,
                                    int err) {
  return route.text + ": connection from " + describe_endpoint(client) + " refused: " + why +
         (err != 0 ? ": " + errno_text(err) : std::string());
}

std::string flow_ended_line(const Route& route, const Endpoint& client, const FlowRecord& record,
                            uint64_t now_ns, FlowEnd how) {
  const uint64_t lasted = now_ns > record.start_ns ? now_ns - record.start_ns : 0;
  const char* why = how == FlowEnd::kIdle          ? "idle for --udp-idle-timeout"
                    : how == FlowEnd::kRuleRemoved ? "its rule was removed"
                    : how == FlowEnd::kStopped
                        ? "still open when the worker stopped"
                        : "its listener closed (a commit removed or moved its port)";
  return route.text + ": flow from " + describe_endpoint(client) + " ended after " +
         seconds(lasted) + ", " + std::to_string(record.datagrams_to_target) +
         (record.datagrams_to_target == 1 ? " datagram (" : " datagrams (") +
         std::to_string(record.bytes_to_target) +
         (record.bytes_to_target == 1 ? " byte" : " bytes") + ") to the target and " +
         std::to_string(record.datagrams_to_client) + " (" +
         std::to_string(record.bytes_to_client) +
         (record.bytes_to_client == 1 ? " byte" : " bytes") + ") to the client: " + why;
}

}  // namespace sluice
