#include "schema/model.h"

#include <arpa/inet.h>

#include <cstring>

namespace sluice {

const char* pif_name(Pif pif) noexcept {
  return pif == Pif::kHost ? "HOST" : "SPLICE";
}

const char* proto_name(Proto proto) noexcept {
  return proto == Proto::kTcp ? "TCP" : "UDP";
}

Addr addr_v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) noexcept {
  Addr out{};
  out[10] = 0xff;
  out[11] = 0xff;
  out[12] = a;
  out[13] = b;
  out[14] = c;
  out[15] = d;
  return out;
}

bool addr_is_v4(const Addr& addr) noexcept {
  for (int i = 0; i < 10; ++i) {
    if (addr[i] != 0) return false;
  }
  return addr[10] == 0xff && addr[11] == 0xff;
}

bool addr_is_zero(const Addr& addr) noexcept {
  for (uint8_t b : addr) {
    if (b != 0) return false;
  }
  return true;
}

bool addr_is_unspecified(const Addr& addr) noexcept {
  if (addr_is_zero(addr)) return true;
  return addr_is_v4(addr) && addr[12] == 0 && addr[13] == 0 && addr[14] == 0 && addr[15] == 0;
}

bool addr_is_loopback(const Addr& addr) noexcept {
  if (addr_is_v4(addr)) return addr[12] == 127;
  Addr one{};
  one[15] = 1;
  return addr == one;
}

Addr loopback_addr(bool v4) noexcept {
  if (v4) return addr_v4(127, 0, 0, 1);
  Addr one{};
  one[15] = 1;
  return one;
}

bool is_default_target(const Addr& target) noexcept {
  return addr_is_unspecified(target);
}

Addr canonical_target(const Addr& target) noexcept {
  return is_default_target(target) ? Addr{} : target;
}

std::vector<Addr> rule_target_addresses(const Rule& rule) {
  if (!is_default_target(rule.target)) return {rule.target};
  if (rule.dual_stack) return {loopback_addr(true), loopback_addr(false)};
  return {loopback_addr(addr_is_v4(rule.listen))};
}

bool addr_is_multicast(const Addr& addr) noexcept {
  if (addr_is_v4(addr)) return (addr[12] & 0xf0) == 0xe0;
  return addr[0] == 0xff;
}

std::string format_addr(const Addr& addr) {
  char buf[INET6_ADDRSTRLEN];
  if (addr_is_v4(addr)) {
    inet_ntop(AF_INET, addr.data() + 12, buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, addr.data(), buf, sizeof(buf));
  }
  return buf;
}

bool parse_addr(const std::string& text, Addr* out) {
  // inet_pton reads a C string: an embedded NUL would hide what follows it.
  if (text.find('\0') != std::string::npos) return false;
  Addr a{};
  if (inet_pton(AF_INET, text.c_str(), a.data() + 12) == 1) {
    a[10] = 0xff;
    a[11] = 0xff;
    *out = a;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), a.data()) == 1) {
    *out = a;
    return true;
  }
  return false;
}

namespace {

/// Appends "N" or "N-M".
void append_range(std::string* out, unsigned first, unsigned last) {
  *out += std::to_string(first);
  if (last != first) {
    *out += '-';
    *out += std::to_string(last);
  }
}

}  // namespace

std::string format_rule(const Rule& rule) {
  std::string out = proto_name(rule.proto);
  out += " [";
  out += rule.dual_stack ? "*" : format_addr(rule.listen);
  out += "]";
  if (!rule.ifname.empty()) {
    out += '%';
    out += rule.ifname;
  }
  out += ':';
  append_range(&out, rule.first, rule.last);
  out += " => ";
  if (!is_default_target(rule.target)) {
    out += format_addr(rule.target);  // IPv6 targets print without brackets, as pesto does
    out += ':';
  }
  unsigned to_last = static_cast<unsigned>(rule.to) + rule.last - rule.first;
  append_range(&out, rule.to, to_last);
  if (rule.weak) out += " (best effort)";
  if (rule.scan) out += " (auto-scan)";
  return out;
}

void expand_listeners(const Table& table, std::vector<ListenerKey>* out) {
  for (const Rule& rule : table.rules) {
    ListenerKey key;
    key.pif = table.pif;
    key.proto = rule.proto;
    key.addr = rule.listen;
    key.dual_stack = rule.dual_stack;
    std::memcpy(key.ifname.data(), rule.ifname.data(),
                rule.ifname.size() < kMaxIfNameLen ? rule.ifname.size() : kMaxIfNameLen);
    for (unsigned port = rule.first; port <= rule.last && port != 0; ++port) {
      key.port = static_cast<uint16_t>(port);
      out->push_back(key);
    }
  }
}

size_t count_listeners(const Table& table) noexcept {
  size_t n = 0;
  for (const Rule& rule : table.rules) {
    if (rule.last >= rule.first) n += static_cast<size_t>(rule.last - rule.first) + 1;
  }
  return n;
}

}  // namespace sluice
