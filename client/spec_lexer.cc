#include "client/spec_lexer.h"

#include "base/strings.h"

namespace sluice::spec_detail {
namespace {

/// Limit: bytes of an address text. The longest IPv6 text form is 45 bytes
/// (INET6_ADDRSTRLEN - 1); anything longer is not an address, and the cap
/// keeps the copy handed to inet_pton small.
constexpr size_t kMaxAddressText = 45;

/// Limit: bytes of a quoted part of a spec inside a message.
constexpr size_t kMaxShownText = 40;

/// A port number saturates here while its digits are read, so that a long run
/// of digits cannot overflow; anything above 65535 is an error anyway.
constexpr uint32_t kPortSaturation = 65536;

/// True for bytes that may appear in an IPv4 or IPv6 address text.
bool is_address_byte(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

/// Parses one decimal port number at `cur->pos` and advances past it.
/// `after` says what the number follows, for the message when it is missing
/// (e.g. "after '-'"). Fails on no digit or a value above 65535.
Result<uint32_t> parse_port_number(const SpecErrors& errs, Cursor* cur, const char* after) {
  if (!cur->next_is_digit()) {
    std::string what = "expected a port number (1-65535)";
    if (*after != '\0') {
      what += ' ';
      what += after;
    }
    if (cur->done()) return errs.at(cur->pos, what + ", but the chunk ends here");
    return errs.at(cur->pos, what + ", not " + show_byte(cur->spec[cur->pos]));
  }
  size_t begin = cur->pos;
  uint32_t value = 0;
  while (cur->next_is_digit()) {
    value = value * 10 + static_cast<uint32_t>(cur->spec[cur->pos] - '0');
    if (value > kPortSaturation) value = kPortSaturation;
    ++cur->pos;
  }
  if (value > 65535) {
    return errs.at(begin, "port " + show_text(cur->spec.substr(begin, cur->pos - begin)) +
                              " is out of range; port numbers go from 1 to 65535");
  }
  return value;
}

}  // namespace

std::string SpecErrors::prefix() const {
  std::string out = "-";
  out += option_;
  out += " '";
  out += sanitize(spec_, kMaxQuotedBytes);
  out += "'";
  return out;
}

Unexpected SpecErrors::at(size_t offset, const std::string& what) const {
  return Err(prefix() + ": at position " + std::to_string(offset + 1) + ": " + what);
}

Unexpected SpecErrors::whole(const std::string& what) const {
  return Err(prefix() + ": " + what);
}

std::string show_byte(char c) {
  if (c == ' ') return "' ' (a space)";
  if (c == '\t') return "byte \\x09 (a tab)";
  if (c == '\'') return "\"'\"";
  unsigned char u = static_cast<unsigned char>(c);
  if (u > 0x20 && u < 0x7f && c != '\\') return std::string("'") + c + "'";
  return "byte " + sanitize(std::string_view(&c, 1));
}

std::string show_text(std::string_view text) {
  return "'" + sanitize(text, kMaxShownText) + "'";
}

std::string range_text(uint32_t first, uint32_t last) {
  std::string out = std::to_string(first);
  if (last != first) out += "-" + std::to_string(last);
  return out;
}

Result<PortRange> parse_range(const SpecErrors& errs, Cursor* cur) {
  PortRange range;
  range.begin = cur->pos;
  auto first = parse_port_number(errs, cur, "");
  if (!first) return Err(std::move(first).error());
  range.first = range.last = *first;
  if (cur->next_is('-')) {
    ++cur->pos;
    auto last = parse_port_number(errs, cur, "after '-'");
    if (!last) return Err(std::move(last).error());
    range.last = *last;
    if (range.last < range.first) {
      return errs.at(range.begin, "the range " + std::to_string(range.first) + "-" +
                                      std::to_string(range.last) + " runs backwards; write " +
                                      range_text(range.last, range.first));
    }
  }
  range.end = cur->pos;
  return range;
}

Result<Addr> parse_address(const SpecErrors& errs, size_t begin, size_t end, const char* role) {
  std::string_view spec = errs.spec();
  if (begin >= end) {
    return errs.at(begin, std::string("the ") + role + " is empty; write an IPv4 or IPv6 address");
  }
  for (size_t i = begin; i < end; ++i) {
    if (!is_address_byte(spec[i])) {
      return errs.at(i, std::string("unexpected ") + show_byte(spec[i]) + " in the " + role + " " +
                            show_text(spec.substr(begin, end - begin)) +
                            "; an address is IPv4 (192.0.2.1) or IPv6 (2001:db8::1)");
    }
  }
  std::string text(spec.substr(begin, end - begin));
  Addr addr{};
  if (text.size() > kMaxAddressText || !parse_addr(text, &addr)) {
    return errs.at(begin, show_text(text) + " is not a valid " + role +
                              "; write an IPv4 address (192.0.2.1) or an IPv6 address "
                              "(2001:db8::1)");
  }
  return addr;
}

Result<Addr> parse_target_address(const SpecErrors& errs, Cursor* cur) {
  std::string_view spec = cur->spec;
  size_t begin = cur->pos;
  if (cur->next_is('[')) {
    size_t close = begin + 1;
    while (close < cur->end && spec[close] != ']') ++close;
    if (close >= cur->end) {
      return errs.at(begin,
                     "the '[' of the target address has no matching ']'; write e.g. "
                     "22:[2001:db8::1]/80");
    }
    auto addr = parse_address(errs, begin + 1, close, "target address");
    if (!addr) return addr;
    cur->pos = close + 1;
    return addr;
  }
  size_t end = begin;
  while (end < cur->end && (is_digit(spec[end]) || spec[end] == '.')) ++end;
  // A ':' or a hex letter right after the digits means an IPv6 address
  // without brackets, which cannot be told apart from "PORTS:TOPORTS".
  // (With a '.', it is IPv4, and the caller explains what may follow it.)
  bool dotted = spec.substr(begin, end - begin).find('.') != std::string_view::npos;
  size_t probe = end;
  while (!dotted && probe < cur->end && is_address_byte(spec[probe])) ++probe;
  if (probe > end) {
    return errs.at(begin,
                   "an IPv6 target address must be in brackets, because ':' also "
                   "separates ports: write [" +
                       sanitize(spec.substr(begin, probe - begin), kMaxAddressText) + "]");
  }
  auto addr = parse_address(errs, begin, end, "target address");
  if (!addr) return addr;
  cur->pos = end;
  return addr;
}

Result<std::string> parse_ifname(const SpecErrors& errs, size_t begin, size_t end) {
  std::string_view spec = errs.spec();
  if (begin >= end) {
    return errs.at(begin, "'%' must be followed by an interface name, e.g. %eth0");
  }
  std::string_view name = spec.substr(begin, end - begin);
  if (name.size() > kMaxIfNameLen) {
    return errs.at(begin, "the interface name " + show_text(name) + " is " +
                              std::to_string(name.size()) +
                              " bytes long; Linux interface names have at most 15");
  }
  if (name == "." || name == "..") {
    return errs.at(begin, "'" + std::string(name) +
                              "' is not an interface name; check the name with `ip link`");
  }
  for (size_t i = begin; i < end; ++i) {
    unsigned char c = static_cast<unsigned char>(spec[i]);
    if (c <= 0x20 || c == 0x7f || c == '/' || c == ':') {
      return errs.at(i, "interface names cannot contain " + show_byte(spec[i]) +
                            "; check the name with `ip link`");
    }
  }
  return std::string(name);
}

}  // namespace sluice::spec_detail
