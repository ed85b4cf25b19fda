// The grammar of a spec (see docs/RULES.md):
//   SPEC   := "none" | [LISTEN "/"] PORTS
//   LISTEN := (ADDR | "*" | "") ["%" IFNAME]
//   PORTS  := CHUNK {"," CHUNK}
//   CHUNK  := "all" [":" TADDR] | "auto" | "~" RANGE
//           | RANGE [":" TADDR "/" RANGE | ":" TADDR | ":" RANGE]
//   TADDR  := IPv4 | IPv6 | "[" IPv6 "]" | "[" IPv4 "]"
//   RANGE  := N ["-" M]
// This file splits the spec into its listen part and chunks and reads each
// chunk, with its ranges, addresses and interface name, into a ParsedSpec;
// spec_expand.cc turns that into rules. scan.h has the cursor it reads with.
#include "schema/rules/spec_parser.h"

#include <optional>

#include "base/strings.h"
#include "schema/rules/scan.h"
#include "schema/rules/spec_expand.h"

namespace sluice {
namespace spec_detail {
namespace {

/// Limit: bytes of an address text. The longest IPv6 text form is 45 bytes
/// (INET6_ADDRSTRLEN - 1); anything longer is not an address, and the cap
/// keeps the copy handed to inet_pton small.
constexpr size_t kMaxAddressText = 45;

/// Parses one decimal port number at `cur->pos` and advances past it.
/// `after` says what the number follows, for the message when it is missing
/// (e.g. "after '-'"). Returns the number (0 included); fails on no digit or
/// a value above kMaxPort.
Result<uint32_t> parse_port_number(const SpecErrors& errs, Scanner* cur, const char* after) {
  size_t begin = cur->pos;
  // Saturating one above the highest port keeps a long run of digits an error.
  std::optional<uint32_t> value = take_number(cur, kMaxPort + 1);
  if (!value) {
    std::string what = "expected a port number (1-65535)";
    if (*after != '\0') {
      what += ' ';
      what += after;
    }
    if (cur->done()) return errs.at(cur->pos, what + ", but the chunk ends here");
    return errs.at(cur->pos, what + ", not " + show_byte(cur->peek()));
  }
  if (*value > kMaxPort) {
    return errs.at(begin, "port " + show_text(cur->slice(begin, cur->pos)) +
                              " is out of range; port numbers go from 1 to 65535");
  }
  return *value;
}

/// Parses RANGE := N ["-" M] at `cur->pos` and advances past it. Returns the
/// range with the offsets of its text. Fails, with the position of the
/// offending byte, on a missing number, a number above kMaxPort, or a range
/// that runs backwards.
Result<PortRange> parse_range(const SpecErrors& errs, Scanner* cur) {
  PortRange range;
  range.begin = cur->pos;
  auto first = parse_port_number(errs, cur, "");
  if (!first) return Err(std::move(first).error());
  range.first = range.last = *first;
  if (cur->take_char('-')) {
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

/// True when `text`, or its part after the last ':', reads as a host name
/// ("localhost", "db.example"): letters, digits, '-' and '.', beginning with a
/// letter, with a letter that no address holds (g-z).
bool looks_like_host_name(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon != std::string_view::npos) text = text.substr(colon + 1);
  const size_t slash = text.find('/');
  if (slash != std::string_view::npos) text = text.substr(0, slash);
  if (text.empty() || !is_alpha(text[0])) return false;
  bool name_letter = false;
  for (char c : text) {
    if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '.') return false;
    if (is_alpha(c) && !is_hex_letter(c)) name_letter = true;
  }
  return name_letter;
}

/// What to write instead of a host name: sluice resolves no names.
constexpr const char* kNoHostNames =
    "host names are not looked up: write an address (127.0.0.1 or ::1 for localhost)";

/// Parses an IPv4 or IPv6 address (no brackets) in the spec bytes
/// [begin, end). `role` names it in messages ("listen address", "target
/// address"). Returns the address (IPv4 v4-mapped). Fails on an empty text,
/// a byte that cannot be in an address (reported at its own position) or
/// text that is not an address.
Result<Addr> parse_address(const SpecErrors& errs, size_t begin, size_t end, const char* role) {
  std::string_view spec = errs.spec();
  if (begin >= end) {
    return errs.at(begin, std::string("the ") + role + " is empty; write an IPv4 or IPv6 address");
  }
  Scanner text{spec, begin, end};
  text.take_while(is_address_byte);
  if (!text.done()) {
    return errs.at(text.pos, std::string("unexpected ") + show_byte(text.peek()) + " in the " +
                                 role + " " + show_text(text.slice(begin, end)) + "; " +
                                 (looks_like_host_name(text.slice(begin, end))
                                      ? kNoHostNames
                                      : "an address is IPv4 (192.0.2.1) or IPv6 (2001:db8::1)"));
  }
  std::string copy(text.slice(begin, end));
  Addr addr{};
  if (copy.size() > kMaxAddressText || !parse_addr(copy, &addr)) {
    return errs.at(begin, show_text(copy) + " is not a valid " + role +
                              "; write an IPv4 address (192.0.2.1) or an IPv6 address "
                              "(2001:db8::1)");
  }
  return addr;
}

/// True for the bytes of a dotted IPv4 address: digits and '.'.
bool is_ipv4_byte(char c) {
  return is_digit(c) || c == '.';
}

/// Reads an unbracketed address at `cur->pos` the way pasta does: the
/// longest run of address bytes (hex digits, ':' and '.') when it is an IPv6
/// or IPv4 address, else the longest run of digits and '.' when that is an
/// IPv4 address. Advances past it and returns the address, or returns nullopt
/// without moving. There is no backtracking inside a run: "22:fd00::5:80"
/// after a ':' is the address fd00::5:80, as in pasta.
std::optional<Addr> take_plain_address(Scanner* cur) {
  for (bool (*in_class)(char) : {is_address_byte, is_ipv4_byte}) {
    Scanner probe = *cur;
    size_t begin = probe.take_while(in_class);
    std::string_view text = probe.slice(begin, probe.pos);
    Addr addr{};
    if (!text.empty() && text.size() <= kMaxAddressText && parse_addr(std::string(text), &addr)) {
      cur->pos = probe.pos;
      return addr;
    }
  }
  return std::nullopt;
}

/// True when all of `text` is one address as take_plain_address reads it.
bool is_plain_address(std::string_view text) {
  Scanner s{text, 0, text.size()};
  return take_plain_address(&s) && s.done();
}

/// Parses a target address at `cur->pos`: "[" ADDR "]" (IPv6 or IPv4), or an
/// unbracketed IPv6 or IPv4 address read as take_plain_address does, and
/// advances past it. Returns the address. Fails, with the position, on
/// unbalanced brackets or text that is not an address.
Result<Addr> parse_target_address(const SpecErrors& errs, Scanner* cur) {
  size_t begin = cur->pos;
  if (cur->next_is('[')) {
    size_t close = cur->find(']');
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
  if (std::optional<Addr> addr = take_plain_address(cur)) return *addr;
  Scanner probe = *cur;
  probe.take_while(is_address_byte);
  std::string_view run = cur->slice(begin, probe.pos);
  if (run.find_first_not_of("0123456789.") != std::string_view::npos) {
    return errs.at(begin, show_text(run) +
                              " is not a valid target address; write an IPv4 address "
                              "(192.0.2.1) or an IPv6 address (2001:db8::1, or [2001:db8::1])");
  }
  probe = *cur;
  probe.take_while(is_ipv4_byte);
  return parse_address(errs, begin, probe.pos, "target address");
}

/// Checks an interface name in the spec bytes [begin, end) (the bytes after
/// '%'): 1 to kMaxIfNameLen bytes, not "." or "..", no whitespace, control
/// bytes, '/' or ':' (the kernel's own rules for names). Returns the name, or
/// an error at the offending byte.
Result<std::string> parse_ifname(const SpecErrors& errs, size_t begin, size_t end) {
  std::string_view spec = errs.spec();
  if (begin >= end) {
    return errs.at(begin, "'%' must be followed by an interface name, e.g. %eth0");
  }
  std::string_view name = spec.substr(begin, end - begin);
  if (name.size() > kMaxIfNameLen) {
    return errs.at(begin, "the interface name " + show_text(name) + " is " +
                              std::to_string(name.size()) +
                              " bytes long; Linux interface names have at most " +
                              std::to_string(kMaxIfNameLen));
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

/// True when `text` starts with `word` followed by its end or by ':'.
bool starts_with_word(std::string_view text, std::string_view word) {
  return text.substr(0, word.size()) == word &&
         (text.size() == word.size() || text[word.size()] == ':');
}

/// True when the text before the first '/' reads as the start of a chunk
/// rather than a listen address: '~', a keyword, a lone port, a port range,
/// or a port followed by ':' and a target address ('[', IPv4 digits, or an
/// unbracketed address that the text as a whole is not). An IPv6 listen
/// address may start with digits and ':' too, but never with "N-", "N:[",
/// "N:N." or "N:N" alone; and when both readings are addresses
/// ("22:fe80::1"), the caller has already taken the listen address, as pasta
/// does.
bool looks_like_chunk(std::string_view prefix) {
  if (prefix.empty()) return false;
  if (prefix[0] == '~') return true;
  if (starts_with_word(prefix, "all") || starts_with_word(prefix, "auto") ||
      starts_with_word(prefix, "none")) {
    return true;
  }
  Scanner s{prefix, 0, prefix.size()};
  size_t port = s.take_while(is_digit);
  if (s.pos == port) return false;
  if (s.done() || s.next_is('-')) return true;
  if (!s.take_char(':')) return false;
  if (s.next_is('[')) return true;
  if (is_plain_address(prefix.substr(s.pos))) return true;  // "15001:::1" of "15001:::1/16001"
  size_t target = s.take_while(is_digit);
  return s.pos > target && (s.done() || s.next_is('.'));
}

/// Returns the offset of the '/' that ends the listen part, or npos when the
/// spec has none. The first '/' never counts when a ',' comes before it. As
/// in pasta, it ends a listen part when the text before it is an address
/// (unbracketed, as take_plain_address reads it), optionally followed by
/// "%IFNAME". Otherwise it counts when the text before it is not the start
/// of a chunk (see looks_like_chunk); parse_listen then reports what is wrong
/// with that listen part.
size_t find_listen_end(std::string_view spec) {
  size_t slash = spec.find('/');
  if (slash == std::string_view::npos) return slash;
  size_t comma = spec.find(',');
  if (comma < slash) return std::string_view::npos;  // no address has one; see RULES.md on IFNAME
  std::string_view prefix = spec.substr(0, slash);
  if (is_plain_address(prefix.substr(0, prefix.find('%')))) return slash;
  if (looks_like_chunk(prefix)) return std::string_view::npos;
  return slash;
}

/// Reads, at `*i` in `text`, an address as socat, HAProxy and ss write it
/// before ":PORT": "*", "[IPv6]" (or "[IPv4]") or a dotted IPv4 address,
/// and advances `*i` past it. Returns false, without moving, on anything
/// else. An unbracketed IPv6 address is not read: where it ends is ambiguous.
bool take_colon_style_address(std::string_view text, size_t* i) {
  size_t at = *i;
  if (at >= text.size()) return false;
  if (text[at] == '*') {
    *i = at + 1;
    return true;
  }
  Addr addr{};
  if (text[at] == '[') {
    size_t close = text.find(']', at);
    if (close == std::string_view::npos || close - at - 1 > kMaxAddressText) return false;
    if (!parse_addr(std::string(text.substr(at + 1, close - at - 1)), &addr)) return false;
    *i = close + 1;
    return true;
  }
  size_t end = at;
  while (end < text.size() && is_ipv4_byte(text[end])) ++end;
  std::string_view run = text.substr(at, end - at);
  if (run.find('.') == std::string_view::npos || run.size() > kMaxAddressText ||
      !parse_addr(std::string(run), &addr)) {
    return false;
  }
  *i = end;
  return true;
}

/// Reads a port range (digits, optionally "-" and digits) at `*i` in `text`
/// and advances past it; returns false, without moving, when no digit is there.
bool take_port_text(std::string_view text, size_t* i) {
  size_t at = *i;
  auto digits = [&](size_t from) {
    size_t to = from;
    while (to < text.size() && is_digit(text[to])) ++to;
    return to;
  };
  size_t end = digits(at);
  if (end == at) return false;
  if (end < text.size() && text[end] == '-' && digits(end + 1) > end + 1) end = digits(end + 1);
  *i = end;
  return true;
}

/// Returns the error for a spec that starts with the ADDRESS:PORT habit of
/// socat, HAProxy and ss (0.0.0.0:19300, [::]:19300, *:19300,
/// 127.0.0.53%lo:53), with the spec rewritten as sluice reads it: the listen
/// address before a '/', and a target written ADDRESS:PORT after it turned
/// into ADDRESS/PORT. Returns nullopt for any other spec. Meant for a spec
/// that failed to parse, so that no valid spec changes its meaning.
/// Limit: bytes of the rewritten spec a hint shows. A spec may be 4 KiB;
/// the start says what to write, and keeps the message short.
constexpr size_t kMaxHintBytes = 80;

std::optional<Unexpected> colon_style_hint(const SpecErrors& errs) {
  std::string_view spec = errs.spec();
  size_t i = 0;
  if (!take_colon_style_address(spec, &i)) return std::nullopt;
  if (i < spec.size() && spec[i] == '%') {  // an interface, as ss prints 127.0.0.53%lo:53
    size_t end = spec.find_first_of(":/,", i);
    if (end == std::string_view::npos || spec[end] != ':' || end == i + 1) return std::nullopt;
    i = end;
  }
  if (i >= spec.size() || spec[i] != ':') return std::nullopt;
  const size_t colon = i;
  ++i;
  if (!take_port_text(spec, &i)) return std::nullopt;
  const size_t shown_end = i;
  std::string rewritten =
      std::string(spec.substr(0, colon)) + "/" + std::string(spec.substr(colon + 1, i - colon - 1));
  // A target in the same habit (":127.0.0.1:8000") becomes ":127.0.0.1/8000".
  size_t target = i + 1;
  size_t after_address = target;
  if (i < spec.size() && spec[i] == ':' && target < spec.size() && spec[target] != '*' &&
      take_colon_style_address(spec, &after_address) && after_address < spec.size() &&
      spec[after_address] == ':') {
    rewritten += std::string(spec.substr(i, after_address - i)) + "/";
    i = after_address + 1;
  }
  rewritten += std::string(spec.substr(i));
  return errs.whole(show_text(spec.substr(0, shown_end)) +
                    " looks like ADDRESS:PORT; sluice (like pasta) writes the listen address "
                    "before a '/': " +
                    sanitize(rewritten, kMaxHintBytes));
}

/// Makes `base` listen on the wildcard: dual-stack `::` when the server has
/// both families, else that family's own wildcard.
void set_wildcard(const SpecContext& ctx, Rule* base) {
  if (ctx.ipv4 && ctx.ipv6) {
    base->listen = Addr{};
    base->dual_stack = true;
  } else if (ctx.ipv4) {
    base->listen = addr_v4(0, 0, 0, 0);
  } else {
    base->listen = Addr{};
  }
}

/// Parses LISTEN, the spec bytes [0, end), into `base` (listen, dual_stack,
/// ifname). Sets `*specific` when it names an address or an interface. Fails
/// on a bad address, unbalanced brackets or a bad interface name.
Result<void> parse_listen(const SpecErrors& errs, size_t end, const SpecContext& ctx, Rule* base,
                          bool* specific) {
  std::string_view spec = errs.spec();
  Scanner listen{spec, 0, end};
  size_t addr_begin = 0;
  size_t addr_end = end;
  size_t percent = std::string_view::npos;
  bool bracketed = false;
  if (listen.next_is('[')) {
    size_t close = listen.find(']');
    if (close >= end) {
      return errs.at(0, "the '[' of the listen address has no matching ']'; write e.g. [::1]/22");
    }
    bracketed = true;
    addr_begin = 1;
    addr_end = close;
    if (close + 1 < end) {
      if (spec[close + 1] != '%') {
        return errs.at(close + 1, "unexpected " + show_byte(spec[close + 1]) +
                                      " after the listen address; write '/' (and before it "
                                      "%IFNAME for an interface), e.g. [::1]%eth0/22");
      }
      percent = close + 1;
    }
  } else if (size_t at = listen.find('%'); at < end) {
    percent = at;
    addr_end = at;
  }

  std::string_view addr_text = spec.substr(addr_begin, addr_end - addr_begin);
  if (!bracketed && (addr_text.empty() || addr_text == "*")) {
    set_wildcard(ctx, base);
  } else if (bracketed && addr_text == "*") {
    return errs.at(1, "write * without brackets for every address, e.g. */22");
  } else {
    auto addr = parse_address(errs, addr_begin, addr_end, "listen address");
    if (!addr) return Err(std::move(addr).error());
    base->listen = *addr;
    base->dual_stack = false;
    *specific = true;
  }
  if (percent != std::string_view::npos) {
    auto name = parse_ifname(errs, percent + 1, end);
    if (!name) return Err(std::move(name).error());
    base->ifname = std::move(*name);
    *specific = true;
  }
  return Ok();
}

/// Returns the error for an unexpected byte at `pos`, after `after` (e.g.
/// "the range 22-80"), with a hint chosen by the byte.
Unexpected unexpected_after(const SpecErrors& errs, size_t pos, const std::string& after) {
  char c = errs.spec()[pos];
  std::string what = "unexpected " + show_byte(c) + " after " + after + "; ";
  switch (c) {
    case '/':
      what +=
          "a listen address goes before the first '/', at the start of the spec (192.0.2.1/22), "
          "and target ports follow a target address (22:192.0.2.1/80)";
      break;
    case '.':
      what +=
          "an address is either the listen address at the start (192.0.2.1/22) or a target "
          "after ':' (22:192.0.2.1)";
      break;
    case ':':
      what +=
          "a chunk has at most one ':'; to map ports to a target address write "
          "PORTS:ADDRESS/TOPORTS, e.g. 22:192.0.2.1/80";
      break;
    case ' ':
    case '\t':
      what += "remove the spaces; chunks are separated by ',' alone";
      break;
    default:
      what += "expected ',' or the end of the spec";
      break;
  }
  return errs.at(pos, what);
}

/// Checks that `target` suits the listen side of `base`; `pos` is where the
/// target was written and `ports_begin` where the PORTS part starts (for the
/// suggestion). Fails for a multicast target, for a dual-stack rule with an
/// IPv4 target and for an IPv4 listener with an IPv6 target.
Result<void> check_target_family(const SpecErrors& errs, const Rule& base, const Addr& target,
                                 size_t pos, size_t ports_begin) {
  if (is_default_target(target)) return Ok();
  if (addr_is_multicast(target)) {
    return errs.at(pos, "the target " + format_addr(target) +
                            " is a multicast address, which cannot take a connection or a flow; "
                            "give a unicast target address");
  }
  bool v4_target = addr_is_v4(target);
  if (base.dual_stack && v4_target) {
    std::string what =
        "the rule listens dual-stack (on every IPv4 and IPv6 address), and IPv6 "
        "clients cannot be forwarded to the IPv4 target " +
        format_addr(target) + "; ";
    if (option_pif(errs.option()) == Pif::kSplice) {
      what += "give an IPv6 target in brackets, or leave the target out for the default";
    } else {
      std::string listen = "0.0.0.0";
      if (!base.ifname.empty()) listen += "%" + sanitize(base.ifname);
      what += "to forward IPv4 clients only, write " + listen + "/" +
              sanitize(errs.spec().substr(ports_begin), kMaxQuotedBytes);
    }
    return errs.at(pos, what);
  }
  if (!base.dual_stack && addr_is_v4(base.listen) && !v4_target) {
    return errs.at(pos, "the rule listens on IPv4 (" + format_addr(base.listen) +
                            ") and cannot forward to the IPv6 target " + format_addr(target) +
                            "; give an IPv4 target, or listen on IPv6 (e.g. [::]/PORTS)");
  }
  return Ok();
}

/// True when `text` (what follows "PORTS:") was meant as an unbracketed IPv6
/// address: only address bytes up to an optional '/', and at least two ':'.
bool looks_like_ipv6(std::string_view text) {
  size_t colons = 0;
  for (char c : text) {
    if (c == '/') break;
    if (c == ':') {
      ++colons;
    } else if (!is_address_byte(c)) {
      return false;
    }
  }
  return colons >= 2;
}

/// Reads the rest of an include chunk after its source range: nothing,
/// ":" RANGE, ":" TADDR or ":" TADDR "/" RANGE. Fills `inc`. Fails on
/// anything else, on a target that does not suit the listen side, on target
/// port 0 and on a target range of another length than the source.
Result<void> parse_include_target(const SpecErrors& errs, Scanner* cur, const ParsedSpec& parsed,
                                  size_t ports_begin, Include* inc) {
  const PortRange& src = inc->source;
  std::string src_text =
      (src.first == src.last ? "port " : "the range ") + range_text(src.first, src.last);
  if (cur->done()) return Ok();
  if (!cur->take_char(':')) return unexpected_after(errs, cur->pos, src_text);
  if (cur->done()) {
    return errs.at(cur->pos,
                   "nothing follows ':'; give target ports (22:2222), a target address "
                   "(22:192.0.2.1) or both (22:192.0.2.1/2222)");
  }
  bool has_address = false;
  size_t addr_pos = cur->pos;
  char c = cur->peek();
  Scanner digits = *cur;
  digits.take_while(is_digit);
  bool digits_then_dot = digits.pos > cur->pos && digits.next_is('.');
  Scanner probe = *cur;
  bool plain_address = take_plain_address(&probe).has_value();  // as pasta tries it first
  if (c == '[' || plain_address || digits_then_dot || (!is_digit(c) && (c == ':' || is_alpha(c)))) {
    if (is_alpha(c) && !is_hex_letter(c)) {
      return errs.at(cur->pos, "unexpected " + show_byte(c) + " after ':'; " +
                                   (looks_like_host_name(cur->slice(cur->pos, cur->end))
                                        ? std::string(kNoHostNames)
                                        : std::string("give target ports (22:2222), a target "
                                                      "address (22:192.0.2.1) or both "
                                                      "(22:192.0.2.1/2222)")));
    }
    auto addr = parse_target_address(errs, cur);
    if (!addr) return Err(std::move(addr).error());
    inc->target = canonical_target(*addr);
    has_address = true;
    auto family = check_target_family(errs, parsed.base, inc->target, addr_pos, ports_begin);
    if (!family) return family;
    if (cur->done()) return Ok();
    if (cur->next_is(':')) {
      // Echo the ports the user wrote after the ':' when they look like ports.
      std::string_view rest = cur->slice(cur->pos + 1, cur->end);
      bool ports = !rest.empty() && rest.size() <= 11 &&
                   rest.find_first_not_of("0123456789-") == std::string_view::npos;
      return errs.at(cur->pos, "target ports follow the target address after '/', not ':'; write " +
                                   sanitize(errs.spec().substr(0, ports_begin)) +
                                   range_text(src.first, src.last) + ":" +
                                   sanitize(cur->slice(addr_pos, cur->pos)) + "/" +
                                   (ports ? std::string(rest) : std::string("PORTS")));
    }
    if (!cur->take_char('/')) return unexpected_after(errs, cur->pos, "the target address");
  }
  auto to = parse_range(errs, cur);
  if (!to) return Err(std::move(to).error());
  if (!cur->done()) {
    if (!has_address && looks_like_ipv6(cur->slice(addr_pos, cur->end))) {
      std::string_view text = cur->slice(addr_pos, cur->end);
      return errs.at(addr_pos, show_text(text.substr(0, text.find('/'))) +
                                   " is not a valid IPv6 target address; write one such as "
                                   "2001:db8::1 (or [2001:db8::1]), e.g. " +
                                   range_text(src.first, src.last) + ":2001:db8::1/" +
                                   range_text(src.first, src.last));
    }
    return unexpected_after(errs, cur->pos, "the target range " + range_text(to->first, to->last));
  }
  if (to->first == 0) {
    return errs.at(to->begin, "cannot forward to port 0; target ports go from 1 to 65535");
  }
  if (to->size() != src.size()) {
    std::string what = "the target range " + range_text(to->first, to->last) + " has " +
                       std::to_string(to->size()) + (to->size() == 1 ? " port" : " ports") +
                       " but the source range " + range_text(src.first, src.last) + " has " +
                       std::to_string(src.size()) + "; give ranges of the same length";
    if (to->first + src.size() - 1 <= kMaxPort) {
      what += " (e.g. " + range_text(src.first, src.last) + ":" +
              range_text(to->first, to->first + src.size() - 1) + ")";
    }
    return errs.at(to->begin, what);
  }
  inc->to = to->first;
  return Ok();
}

/// Parses an include chunk: RANGE [":" TADDR "/" RANGE | ":" TADDR | ":" RANGE],
/// and appends it to `parsed`. Fails on a bad range, on port 0 and as
/// parse_include_target does.
Result<void> parse_include(const SpecErrors& errs, Scanner* cur, size_t ports_begin,
                           ParsedSpec* parsed) {
  auto src = parse_range(errs, cur);
  if (!src) return Err(std::move(src).error());
  if (src->first == 0) {
    std::string what = "port 0 cannot be forwarded; use 1-65535";
    if (src->last > 0)
      what =
          "port 0 cannot be forwarded; start the range at 1 (1-" + std::to_string(src->last) + ")";
    return errs.at(src->begin, what);
  }
  Include inc;
  inc.source = *src;
  inc.to = src->first;
  auto target = parse_include_target(errs, cur, *parsed, ports_begin, &inc);
  if (!target) return target;
  parsed->includes.push_back(inc);
  return Ok();
}

/// Parses "all" [":" TADDR] after the word; `word_pos` is where "all" starts.
/// Marks `parsed` as having "all", with its target. Fails on a bad or
/// unsuitable target, on target ports, and on a second "all" with another target.
Result<void> parse_all(const SpecErrors& errs, Scanner* cur, size_t word_pos, size_t ports_begin,
                       ParsedSpec* parsed) {
  Addr target{};
  if (!cur->done()) {
    if (!cur->take_char(':')) return unexpected_after(errs, cur->pos, "all");
    size_t addr_pos = cur->pos;
    if (cur->done()) {
      return errs.at(cur->pos,
                     "nothing follows 'all:'; give a target address, e.g. "
                     "all:192.0.2.1 or all:[2001:db8::1]");
    }
    auto addr = parse_target_address(errs, cur);
    if (!addr) return Err(std::move(addr).error());
    target = canonical_target(*addr);
    auto family = check_target_family(errs, parsed->base, target, addr_pos, ports_begin);
    if (!family) return family;
    if (!cur->done()) {
      if (cur->next_is('/') || cur->next_is(':')) {
        return errs.at(cur->pos,
                       "all keeps every port number, so it takes a target address "
                       "(all:192.0.2.1) but no target ports");
      }
      return unexpected_after(errs, cur->pos, "the target address");
    }
  }
  if (parsed->all && parsed->all_target != target) {
    return errs.at(word_pos, "all is given twice with different targets; keep one of them");
  }
  parsed->all = true;
  parsed->all_target = target;
  return Ok();
}

/// Parses one chunk, the bytes [cur.pos, cur.end) (at least one), into
/// `parsed`. Fails, at the offending byte, on anything the grammar does not
/// allow there, with a hint chosen by what was written.
Result<void> parse_chunk(const SpecErrors& errs, Scanner cur, size_t ports_begin,
                         ParsedSpec* parsed) {
  char c = cur.peek();
  if (cur.take_char('~')) {
    auto ex = parse_range(errs, &cur);
    if (!ex) return Err(std::move(ex).error());
    if (!cur.done()) {
      if (cur.next_is(':')) {
        return errs.at(cur.pos, "an exclusion (~" + range_text(ex->first, ex->last) +
                                    ") only removes ports and takes no target");
      }
      return unexpected_after(errs, cur.pos, "the exclusion ~" + range_text(ex->first, ex->last));
    }
    parsed->excludes.push_back(*ex);
    return Ok();
  }
  if (is_digit(c)) return parse_include(errs, &cur, ports_begin, parsed);
  if (is_alpha(c)) {
    size_t word_pos = cur.take_while(is_alpha);
    std::string_view word = cur.slice(word_pos, cur.pos);
    if (word == "all") return parse_all(errs, &cur, word_pos, ports_begin, parsed);
    if (word == "auto") {
      if (!cur.done()) {
        return errs.at(cur.pos,
                       "auto takes nothing after it; it applies to every rule of its "
                       "spec (write e.g. 8000-8010,auto)");
      }
      parsed->scan = true;
      return Ok();
    }
    if (word == "none") {
      return errs.at(word_pos, "none must be the whole spec; remove it, or remove everything else");
    }
    return errs.at(word_pos, "unknown word " + show_text(word) +
                                 "; a chunk is a port (22), a range (8000-8010), a mapping "
                                 "(80:8080), all, auto or an exclusion (~25)");
  }
  std::string what = "unexpected " + show_byte(c) + "; ";
  if (c == '[' || c == '*' || c == '%' || c == '/') {
    what +=
        "a listen address or interface goes once, at the start of the spec, followed by '/' "
        "(e.g. [::1]/22 or %eth0/22)";
  } else if (c == '-') {
    what += "a range needs its first port (8000-8010)";
  } else {
    what +=
        "a chunk is a port (22), a range (8000-8010), a mapping (80:8080), all, auto or an "
        "exclusion (~25)";
  }
  return errs.at(cur.pos, what);
}

/// Parses a spec other than "none" with the server's facts `ctx`: the
/// listen part, if any, then each chunk, then expands them into rules.
/// Fails at the first thing the grammar does not allow, or that `ctx` rules
/// out.
Result<std::vector<Rule>> parse_ports_spec(const SpecErrors& errs, const SpecContext& ctx) {
  const std::string_view spec = errs.spec();
  const char option = errs.option();
  ParsedSpec parsed;
  parsed.base.proto = option_proto(option);
  set_wildcard(ctx, &parsed.base);
  size_t ports_begin = 0;
  size_t listen_end = find_listen_end(spec);
  if (listen_end != std::string_view::npos) {
    bool specific = false;
    auto listen = parse_listen(errs, listen_end, ctx, &parsed.base, &specific);
    if (!listen) return Err(std::move(listen).error());
    ports_begin = listen_end + 1;
    if (specific && option_pif(option) == Pif::kSplice) {
      return errs.whole(
          "-T and -U listen inside the target namespace and take no address or "
          "interface; drop " +
          show_text(spec.substr(0, ports_begin)) + " and write " +
          show_text(spec.substr(ports_begin)));
    }
    if (ports_begin == spec.size()) {
      return errs.at(ports_begin, "nothing follows '/'; give the ports to forward, e.g. " +
                                      sanitize(spec.substr(0, ports_begin)) + "22");
    }
  }
  if (option_pif(option) == Pif::kSplice) {
    parsed.base.ifname = "lo";  // SPLICE rules listen on the target namespace's loopback
  }

  // Chunks: at most kMaxSpecBytes / 2 + 1 of them, since each but the last ends with ','.
  size_t pos = ports_begin;
  for (;;) {
    size_t comma = spec.find(',', pos);
    size_t end = comma == std::string_view::npos ? spec.size() : comma;
    if (end == pos) {
      if (pos == ports_begin) {
        return errs.at(pos, "a ',' with nothing before it; remove it, or put ports before it");
      }
      return errs.at(pos, "an empty chunk between two commas; remove one ','");
    }
    auto chunk = parse_chunk(errs, Scanner{spec, pos, end}, ports_begin, &parsed);
    if (!chunk) return Err(std::move(chunk).error());
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
    if (pos == spec.size()) {
      return errs.at(comma, "the spec ends with ','; remove it, or add ports after it");
    }
  }
  return expand_spec(errs, parsed, ctx);
}

}  // namespace
}  // namespace spec_detail

Pif option_pif(char option) noexcept {
  CHECK_MSG(option == 't' || option == 'u' || option == 'T' || option == 'U',
            "option letter is not one of t, u, T, U");
  return option == 't' || option == 'u' ? Pif::kHost : Pif::kSplice;
}

Proto option_proto(char option) noexcept {
  CHECK_MSG(option == 't' || option == 'u' || option == 'T' || option == 'U',
            "option letter is not one of t, u, T, U");
  return option == 't' || option == 'T' ? Proto::kTcp : Proto::kUdp;
}

Result<std::vector<Rule>> parse_spec(char option, std::string_view spec, const SpecContext& ctx) {
  using namespace spec_detail;  // NOLINT: this file's own helpers
  if (option != 't' && option != 'u' && option != 'T' && option != 'U') {
    return Err("unknown forwarding option -" + sanitize(std::string_view(&option, 1)) +
               "; use -t or -u (TCP or UDP into the target) or -T or -U (out of it)");
  }
  SpecErrors errs(option, spec);
  if (spec.size() > kMaxSpecBytes) {
    return errs.whole("the spec is " + std::to_string(spec.size()) +
                      " bytes long, over the limit "
                      "of " +
                      std::to_string(kMaxSpecBytes) + "; split it into several -" +
                      std::string(1, option) + " options");
  }
  if (spec.empty()) {
    return errs.whole(
        "the spec is empty; give ports such as 22 or 8000-8010, or none to "
        "forward nothing");
  }
  if (spec == "none") return std::vector<Rule>{};
  if (!ctx.ipv4 && !ctx.ipv6) {
    return errs.whole("the server has neither IPv4 nor IPv6 enabled, so nothing can be forwarded");
  }

  auto rules = parse_ports_spec(errs, ctx);
  if (!rules) {
    if (auto hint = colon_style_hint(errs)) return *hint;
  }
  return rules;
}

}  // namespace sluice
