// Scanning primitives of the rule-text parser: a cursor over part of a spec,
// the byte classes the grammar uses, and the errors that say at which byte a
// spec goes wrong. Every offset is into the whole spec, so every message can
// give a position. Internal to schema/rules/ (spec_parser.cc, spec_expand.cc,
// table_edit.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace sluice::spec_detail {

/// Builds the error messages of one spec: "-t '80-70': at position 1: ...".
class SpecErrors {
 public:
  /// Remembers the option letter and the spec to quote; `spec` must outlive this.
  SpecErrors(char option, std::string_view spec) : option_(option), spec_(spec) {}

  /// Returns "-t 'SPEC': at position N: WHAT", N being `offset` + 1.
  Unexpected at(size_t offset, const std::string& what) const;
  /// Returns "-t 'SPEC': WHAT", for errors that concern the whole spec.
  Unexpected whole(const std::string& what) const;
  /// Returns the option letter, e.g. 't'.
  char option() const { return option_; }
  /// Returns the spec being parsed.
  std::string_view spec() const { return spec_; }

 private:
  /// Returns "-t 'SPEC'" with the spec sanitized and cut to kMaxQuotedBytes.
  std::string prefix() const;

  char option_;
  std::string_view spec_;
};

/// True for the bytes '0' to '9'.
inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
/// True for ASCII letters.
inline bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
/// True for the letters of hexadecimal digits, 'a' to 'f' in either case.
inline bool is_hex_letter(char c) {
  return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
/// True for bytes that may appear in an IPv4 or IPv6 address text: hex
/// digits, ':' and '.'.
inline bool is_address_byte(char c) {
  return is_digit(c) || is_hex_letter(c) || c == ':' || c == '.';
}

/// A cursor over the spec bytes [pos, end); `text` is the whole spec, so
/// every offset it hands out is a position in the spec.
struct Scanner {
  std::string_view text;
  size_t pos = 0;
  size_t end = 0;

  /// True when nothing is left to read.
  bool done() const { return pos >= end; }
  /// Returns the next byte; the caller has checked that one is left.
  char peek() const { return text[pos]; }
  /// True when the next byte is `c` (false at the end).
  bool next_is(char c) const { return !done() && text[pos] == c; }
  /// True when the next byte is a decimal digit (false at the end).
  bool next_is_digit() const { return !done() && is_digit(text[pos]); }
  /// Consumes the next byte when it is `c`. Returns whether it did.
  bool take_char(char c);
  /// Advances past every byte, from here to `end`, for which `in_class`
  /// holds. Returns the offset where that run began (== pos: an empty run).
  size_t take_while(bool (*in_class)(char));
  /// Returns the offset of the first `c` in [pos, end), or `end` when there
  /// is none. Does not move.
  size_t find(char c) const;
  /// Returns the spec bytes [begin, stop).
  std::string_view slice(size_t begin, size_t stop) const {
    return text.substr(begin, stop - begin);
  }
};

/// Reads a run of decimal digits at `s->pos` and advances past it. Returns
/// its value, saturated at `cap` so that any number of digits cannot
/// overflow (every value at or above `cap` reads as `cap`). Returns nullopt,
/// without moving, when the next byte is not a digit.
std::optional<uint32_t> take_number(Scanner* s, uint32_t cap);

/// Returns a byte as a message shows it: "'x'" for printable ASCII, "' ' (a
/// space)", "byte \x09 (a tab)", or "byte \x00" for anything else.
std::string show_byte(char c);

/// Returns `text` sanitized (non-printable bytes as \xNN), cut to 40 bytes and
/// in single quotes, for quoting part of a spec inside a message.
std::string show_text(std::string_view text);

/// Returns "N" or "N-M", a port range as messages and specs write it.
std::string range_text(uint32_t first, uint32_t last);

}  // namespace sluice::spec_detail
