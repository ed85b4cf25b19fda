// The lexical layer of the spec parser: error formatting with positions, port
// numbers and ranges, addresses and interface names. Everything here works on
// explicit byte offsets into the whole spec, so every error can say where it
// is. Internal to client/ (spec_parser.cc and spec_expand.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "schema/model.h"

namespace sluice::spec_detail {

/// Limit: bytes of one spec. A real spec is a few dozen bytes; 4096 fits any
/// hand-written one (about 800 single ports) and bounds every loop and
/// allocation of the parser, including the number of chunks (at most 2048).
/// Longer rule sets can be split over several options of the same kind.
inline constexpr size_t kMaxSpecBytes = 4096;

/// Limit: bytes of the spec quoted in an error message, so that a hostile
/// 4096-byte spec does not make a 16 KiB message; the message also quotes
/// the offending part on its own.
inline constexpr size_t kMaxQuotedBytes = 96;

/// Builds the error messages of one spec: "-t '80-70': at position 1: ...".
class SpecErrors {
 public:
  /// Remembers the option letter and the spec to quote; `spec` must outlive this.
  SpecErrors(char option, std::string_view spec) : option_(option), spec_(spec) {}

  /// Returns "-t 'SPEC': at position N: WHAT", N being `offset` + 1.
  Unexpected at(size_t offset, const std::string& what) const;
  /// Returns "-t 'SPEC': WHAT", for errors that concern the whole spec.
  Unexpected whole(const std::string& what) const;
  /// The option letter, e.g. 't'.
  char option() const { return option_; }
  /// The spec being parsed.
  std::string_view spec() const { return spec_; }

 private:
  /// Returns "-t 'SPEC'" with the spec sanitized and cut to kMaxQuotedBytes.
  std::string prefix() const;

  char option_;
  std::string_view spec_;
};

/// A part of the spec being read: offsets [pos, end) into the whole spec.
struct Cursor {
  std::string_view spec;
  size_t pos = 0;
  size_t end = 0;

  /// True when nothing is left to read.
  bool done() const { return pos >= end; }
  /// True when the next byte is `c` (false at the end).
  bool next_is(char c) const { return !done() && spec[pos] == c; }
  /// True when the next byte is a decimal digit (false at the end).
  bool next_is_digit() const { return !done() && spec[pos] >= '0' && spec[pos] <= '9'; }
};

/// A port range as written: `first`..`last` (first <= last <= 65535, 0
/// allowed; callers decide whether port 0 is acceptable), and the offsets of
/// its text [begin, end).
struct PortRange {
  uint32_t first = 0;
  uint32_t last = 0;
  size_t begin = 0;
  size_t end = 0;

  /// Number of ports in the range.
  uint32_t size() const { return last - first + 1; }
};

/// True for the bytes '0' to '9'.
inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
/// True for ASCII letters.
inline bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// Returns a byte as a message shows it: "'x'" for printable ASCII, "' ' (a
/// space)", "byte \x09 (a tab)", or "byte \x00" for anything else.
std::string show_byte(char c);

/// Returns `text` sanitized (non-printable bytes as \xNN), cut to 40 bytes and
/// in single quotes, for quoting part of a spec inside a message.
std::string show_text(std::string_view text);

/// Returns "N" or "N-M".
std::string range_text(uint32_t first, uint32_t last);

/// Parses RANGE := N ["-" M] at `cur->pos` and advances past it. Fails, with
/// the position of the offending byte, on a missing number, a number above
/// 65535, or a range that runs backwards.
Result<PortRange> parse_range(const SpecErrors& errs, Cursor* cur);

/// Parses an IPv4 or IPv6 address (no brackets) in the spec bytes
/// [begin, end). `role` names it in messages ("listen address", "target
/// address"). Fails on an empty text, a byte that cannot be in an address
/// (reported at its own position) or text that is not an address.
Result<Addr> parse_address(const SpecErrors& errs, size_t begin, size_t end, const char* role);

/// Parses a target address at `cur->pos`: "[" ADDR "]" (IPv6 or IPv4) or a
/// dotted IPv4 address, and advances past it. An unbracketed IPv6 address is
/// refused with a hint to add the brackets, because ':' also separates the
/// target ports. Fails with the position of the problem.
Result<Addr> parse_target_address(const SpecErrors& errs, Cursor* cur);

/// Checks an interface name in the spec bytes [begin, end) (the bytes after
/// '%'): 1 to 15 bytes, not "." or "..", no whitespace, control bytes, '/' or
/// ':' (the kernel's own rules for names). Returns the name, or an error at the
/// offending byte.
Result<std::string> parse_ifname(const SpecErrors& errs, size_t begin, size_t end);

}  // namespace sluice::spec_detail
