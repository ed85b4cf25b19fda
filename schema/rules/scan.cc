#include "schema/rules/scan.h"

#include "base/strings.h"
#include "schema/rules/spec_parser.h"

namespace sluice::spec_detail {
namespace {

/// Limit: bytes of a quoted part of a spec inside a message.
constexpr size_t kMaxShownText = 40;

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

bool Scanner::take_char(char c) {
  if (!next_is(c)) return false;
  ++pos;
  return true;
}

size_t Scanner::take_while(bool (*in_class)(char)) {
  size_t begin = pos;
  while (!done() && in_class(text[pos])) ++pos;
  return begin;
}

size_t Scanner::find(char c) const {
  size_t at = pos;
  while (at < end && text[at] != c) ++at;
  return at;
}

std::optional<uint32_t> take_number(Scanner* s, uint32_t cap) {
  if (!s->next_is_digit()) return std::nullopt;
  uint32_t value = 0;
  while (s->next_is_digit()) {
    uint64_t next = uint64_t{value} * 10 + static_cast<uint64_t>(s->peek() - '0');
    value = next > cap ? cap : static_cast<uint32_t>(next);
    ++s->pos;
  }
  return value;
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

}  // namespace sluice::spec_detail
