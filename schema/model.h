// The plain C++ rule and table model: what a shadow table is, independent of
// any wire format. The client builds it from rule text, the codec moves it
// across the control socket, the validator checks it and the worker runs it.
// Semantics follow pasta/pesto (see docs/RULES.md).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

/// Which table a rule belongs to: HOST holds inbound rules (-t/-u), SPLICE
/// outbound rules from the target namespace (-T/-U).
enum class Pif : uint8_t { kHost = 0, kSplice = 1 };
inline constexpr size_t kPifCount = 2;

enum class Proto : uint8_t { kTcp = 0, kUdp = 1 };

/// A 16-byte address in network byte order; IPv4 is stored v4-mapped
/// (::ffff:a.b.c.d).
using Addr = std::array<uint8_t, 16>;

/// Limit: rules per table. Upstream pesto allows 255; we allow at least 4096 so
/// that per-container rule sets of large hosts fit, while keeping the worst-case
/// conflict check and message size small (a 4096-rule table encodes to well
/// under 1 MiB).
inline constexpr size_t kMaxRulesPerTable = 4096;
/// Limit: listening sockets one table may need, upstream's 327,680 (five
/// address/family combinations of every port). Checked on the expanded table.
inline constexpr size_t kMaxListenersPerTable = 327680;
/// Limit: interface name bytes, without the NUL (IFNAMSIZ - 1).
inline constexpr size_t kMaxIfNameLen = 15;

/// The highest TCP or UDP port number. Port 0 is never forwarded.
inline constexpr uint32_t kMaxPort = 65535;

/// The kernel's default ephemeral port range (net.ipv4.ip_local_port_range),
/// assumed where a server's own range is not known: a worker that cannot read
/// it from /proc, a spec context built without a server's Hello.
inline constexpr uint16_t kDefaultEphemeralFirst = 32768;
inline constexpr uint16_t kDefaultEphemeralLast = 60999;

struct Rule {
  Proto proto = Proto::kTcp;
  Addr listen{};            // unspecified with dual_stack for "*"
  std::string ifname;       // empty: no interface binding
  uint16_t first = 0;       // first listening port
  uint16_t last = 0;        // last listening port, >= first
  uint16_t to = 0;          // port `first` maps to; port n goes to to + n - first
  Addr target{};            // the default target when unspecified (is_default_target)
  bool dual_stack = false;  // one [::] socket with V6ONLY=0 serves both families
  bool weak = false;        // "best effort": single-port bind failures only warn
  bool scan = false;        // "auto-scan": listen only while the target port is bound

  bool operator==(const Rule&) const = default;
};

struct Table {
  Pif pif = Pif::kHost;
  std::vector<Rule> rules;
  bool operator==(const Table&) const = default;
};

/// All tables of a server, one per pif, in Pif order.
struct TableSet {
  std::array<Table, kPifCount> tables{Table{Pif::kHost, {}}, Table{Pif::kSplice, {}}};
  Table& of(Pif pif) { return tables[static_cast<size_t>(pif)]; }
  const Table& of(Pif pif) const { return tables[static_cast<size_t>(pif)]; }
  bool operator==(const TableSet&) const = default;
};

/// What the server can do, as announced in its Hello. Rules needing a missing
/// capability are invalid.
struct ServerCaps {
  bool ipv4 = true;
  bool ipv6 = true;
  bool tcp = true;
  bool udp = true;
  bool scan = true;
  bool ifname = true;
  bool operator==(const ServerCaps&) const = default;
};

/// One listening socket a table needs. Two tables that need the same key can
/// share the socket across a commit.
struct ListenerKey {
  Pif pif = Pif::kHost;
  Proto proto = Proto::kTcp;
  Addr addr{};
  std::array<char, kMaxIfNameLen + 1> ifname{};  // NUL-padded
  bool dual_stack = false;
  uint16_t port = 0;
  auto operator<=>(const ListenerKey&) const = default;
};

/// Returns "HOST" or "SPLICE".
const char* pif_name(Pif pif) noexcept;
/// Returns "TCP" or "UDP".
const char* proto_name(Proto proto) noexcept;

/// Returns the v4-mapped form of a.b.c.d.
Addr addr_v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) noexcept;
/// True for ::ffff:a.b.c.d.
bool addr_is_v4(const Addr& addr) noexcept;
/// True for :: and for ::ffff:0.0.0.0.
bool addr_is_unspecified(const Addr& addr) noexcept;
/// True for all-zero bytes (:: only).
bool addr_is_zero(const Addr& addr) noexcept;
/// True for 127.0.0.0/8 (v4-mapped) and ::1.
bool addr_is_loopback(const Addr& addr) noexcept;
/// Returns the loopback address of a family: 127.0.0.1 (v4-mapped) or ::1.
Addr loopback_addr(bool v4) noexcept;

/// The one definition of "the default target": a target that is the
/// unspecified address of either family (:: or ::ffff:0.0.0.0). Connections
/// of such a rule go to the loopback of the connection's own family. Every
/// check, the forwarder and the formatter ask this, never the bytes.
bool is_default_target(const Addr& target) noexcept;
/// Returns the canonical form of a target: the default target as all zero
/// bytes (what the codec decodes and the parser builds), any other unchanged.
Addr canonical_target(const Addr& target) noexcept;
/// The addresses the connections of `rule` may go to: its target, or for the
/// default target the loopback address of each family its listener accepts
/// (127.0.0.1 for IPv4, ::1 for IPv6, both for a dual-stack `*`).
std::vector<Addr> rule_target_addresses(const Rule& rule);

/// True for 224.0.0.0/4 (v4-mapped) and ff00::/8.
bool addr_is_multicast(const Addr& addr) noexcept;
/// Formats as dotted quad for v4-mapped, RFC 5952 text otherwise.
std::string format_addr(const Addr& addr);
/// Parses dotted IPv4 (stored v4-mapped) or IPv6 text without brackets.
/// Returns false on anything else.
bool parse_addr(const std::string& text, Addr* out);

/// Renders a rule in pesto's listing format, e.g. "TCP [*]:22-80 => 32-90",
/// "UDP [0.0.0.0]:53 => 192.0.2.5:5353", "TCP [*]:1-1023 => 1-1023 (best effort)".
std::string format_rule(const Rule& rule);

/// Appends every listener key `table` needs, one per port of each rule, in
/// rule order. The caller sorts when it needs a set.
void expand_listeners(const Table& table, std::vector<ListenerKey>* out);

/// Returns the number of listening sockets a table needs (sum of rule widths).
size_t count_listeners(const Table& table) noexcept;

}  // namespace sluice
