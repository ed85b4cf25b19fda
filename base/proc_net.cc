// The parser of one socket line of /proc/net/{tcp,tcp6,udp,udp6} (see
// proc_net.h), and what counts as a bound server socket.
#include "base/proc_net.h"

#include <cstring>

namespace sluice {
namespace {

/// The kernel's TCP_LISTEN (include/net/tcp_states.h): a listening socket.
constexpr uint8_t kStateListen = 0x0A;
/// The kernel's TCP_CLOSE, which UDP uses for a socket without a peer.
constexpr uint8_t kStateUdpUnconnected = 0x07;

/// Returns the value of hex digit `c`, or -1.
int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/// Parses exactly `text` as hex digits into `*out`; false on any other byte,
/// on an empty text, or on more than 8 digits.
bool parse_hex(std::string_view text, uint32_t* out) noexcept {
  if (text.empty() || text.size() > 8) return false;
  uint32_t v = 0;
  for (char c : text) {
    int d = hex_value(c);
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  *out = v;
  return true;
}

/// Parses exactly `text` as a decimal number of at most 20 digits into
/// `*out`; false on any other byte, on an empty text or on overflow.
bool parse_decimal(std::string_view text, uint64_t* out) noexcept {
  if (text.empty() || text.size() > 20) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

/// An address and port as the kernel prints them: "0100007F:1F90".
struct Endpoint {
  bool v6 = false;
  uint8_t addr[16] = {};
  uint16_t port = 0;
};

/// Parses "HEX:PORT" with an address of 8 (IPv4) or 32 (IPv6) hex digits and
/// a port of 4; false on anything else. Each 8 digits are one 32-bit word of
/// the address's memory in the host's byte order, so copying the word back
/// restores the address's bytes.
bool parse_endpoint(std::string_view field, Endpoint* out) noexcept {
  const size_t colon = field.find(':');
  if (colon == std::string_view::npos) return false;
  const std::string_view addr = field.substr(0, colon);
  const std::string_view port = field.substr(colon + 1);
  if ((addr.size() != 8 && addr.size() != 32) || port.size() != 4) return false;
  for (size_t word = 0; word < addr.size() / 8; ++word) {
    uint32_t v = 0;
    if (!parse_hex(addr.substr(word * 8, 8), &v)) return false;
    std::memcpy(out->addr + word * 4, &v, sizeof(v));
  }
  uint32_t p = 0;
  if (!parse_hex(port, &p)) return false;
  out->v6 = addr.size() == 32;
  out->port = static_cast<uint16_t>(p);
  return true;
}

/// Splits off the next field of `*rest` (separated by spaces) and returns it;
/// empty when there is none.
std::string_view next_field(std::string_view* rest) noexcept {
  const size_t start = rest->find_first_not_of(' ');
  if (start == std::string_view::npos) {
    *rest = {};
    return {};
  }
  const size_t end = rest->find(' ', start);
  std::string_view field =
      rest->substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  *rest = end == std::string_view::npos ? std::string_view{} : rest->substr(end);
  return field;
}

}  // namespace

std::optional<ProcNetSocket> parse_proc_net_line(std::string_view line) noexcept {
  if (line.size() > kMaxProcNetLineBytes) return std::nullopt;
  std::string_view rest = line;
  const std::string_view slot = next_field(&rest);
  // "N:": the slot number and a colon.
  if (slot.size() < 2 || slot.back() != ':') return std::nullopt;
  for (char c : slot.substr(0, slot.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  Endpoint local, remote;
  if (!parse_endpoint(next_field(&rest), &local)) return std::nullopt;
  if (!parse_endpoint(next_field(&rest), &remote) || remote.v6 != local.v6) return std::nullopt;
  const std::string_view st = next_field(&rest);
  uint32_t state = 0;
  if (st.size() != 2 || !parse_hex(st, &state)) return std::nullopt;
  // tx_queue:rx_queue, tr:tm->when, retrnsmt: not read, but present.
  for (int i = 0; i < 3; ++i) {
    if (next_field(&rest).empty()) return std::nullopt;
  }
  uint64_t uid = 0, inode = 0;
  if (!parse_decimal(next_field(&rest), &uid)) return std::nullopt;
  if (next_field(&rest).empty()) return std::nullopt;  // timeout
  if (!parse_decimal(next_field(&rest), &inode)) return std::nullopt;

  ProcNetSocket out;
  out.v6 = local.v6;
  std::memcpy(out.addr, local.addr, sizeof(out.addr));
  out.port = local.port;
  static constexpr uint8_t kZero[16] = {};
  out.remote_zero = remote.port == 0 && std::memcmp(remote.addr, kZero, sizeof(kZero)) == 0;
  out.state = static_cast<uint8_t>(state);
  out.inode = inode;
  return out;
}

bool proc_net_bound(const ProcNetSocket& socket, ProcNetKind kind) noexcept {
  if (kind == ProcNetKind::kTcp) return socket.state == kStateListen;
  // Bound and not connected. A connected socket (a client, or one of the
  // worker's own flow sockets) has st 01 and its peer as the remote.
  return socket.state == kStateUdpUnconnected && socket.remote_zero;
}

}  // namespace sluice
