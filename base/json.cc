// JSON output (see json.h): the escaping rules, then the writer.
#include "base/json.h"

#include "base/check.h"

namespace sluice {
namespace {

/// Returns the length (2 to 4) of the valid UTF-8 sequence that starts at
/// `s[i]`, or 0 when the bytes there are not one (a lone continuation byte, a
/// truncated sequence, an overlong form, a surrogate, or above U+10FFFF).
/// Follows the well-formed byte table of Unicode 15, section 3.9.
size_t utf8_sequence(std::string_view s, size_t i) {
  auto byte = [&](size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0x100u;
  };
  auto in = [](unsigned b, unsigned lo, unsigned hi) { return b >= lo && b <= hi; };
  unsigned b0 = byte(0);
  if (in(b0, 0xc2, 0xdf)) return in(byte(1), 0x80, 0xbf) ? 2 : 0;
  unsigned lo = 0x80, hi = 0xbf;
  size_t len = 0;
  if (b0 == 0xe0) {
    lo = 0xa0;  // no overlong three-byte forms
    len = 3;
  } else if (b0 == 0xed) {
    hi = 0x9f;  // no UTF-16 surrogates
    len = 3;
  } else if (in(b0, 0xe1, 0xef)) {
    len = 3;
  } else if (b0 == 0xf0) {
    lo = 0x90;  // no overlong four-byte forms
    len = 4;
  } else if (b0 == 0xf4) {
    hi = 0x8f;  // nothing above U+10FFFF
    len = 4;
  } else if (in(b0, 0xf1, 0xf3)) {
    len = 4;
  } else {
    return 0;
  }
  if (!in(byte(1), lo, hi)) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (!in(byte(k), 0x80, 0xbf)) return 0;
  }
  return len;
}

/// Returns the code point of the valid UTF-8 sequence of `len` (2 to 4)
/// bytes at `s[i]` (utf8_sequence() vouched for it).
uint32_t code_point(std::string_view s, size_t i, size_t len) {
  static const unsigned kLeadMask[5] = {0, 0, 0x1f, 0x0f, 0x07};
  uint32_t cp = static_cast<unsigned char>(s[i]) & kLeadMask[len];
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  return cp;
}

/// Returns true for the valid characters that are escaped all the same,
/// because a terminal acts on them when --json output is shown as it is:
///   - U+0080 to U+009F, the C1 controls (U+009B is CSI on terminals that
///     take 8-bit controls, U+009D OSC);
///   - U+202A to U+202E and U+2066 to U+2069, the bidirectional embeddings,
///     overrides and isolates, which reorder what follows them on the line
///     (CVE-2021-42574, "Trojan Source").
bool terminal_hazard(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

/// Appends the \uXXXX escape (lower-case hex) of the code point `cp`, which
/// is at most U+FFFF.
void append_u(std::string* out, uint32_t cp) {
  static const char kHex[] = "0123456789abcdef";
  *out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) *out += kHex[(cp >> shift) & 15];
}

/// Appends the \u00XX escape of `b`.
void append_u00(std::string* out, unsigned char b) {
  append_u(out, b);
}

}  // namespace

void append_json_string(std::string* out, std::string_view bytes, JsonText mode) {
  *out += '"';
  size_t i = 0;
  while (i < bytes.size()) {
    unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x80) {
      size_t len = mode == JsonText::kUtf8 ? utf8_sequence(bytes, i) : 0;
      if (len == 0) {
        append_u00(out, c);  // not UTF-8, or ASCII-only output: keep the value visible
        ++i;
      } else if (uint32_t cp = code_point(bytes, i, len); terminal_hazard(cp)) {
        append_u(out, cp);  // the same character to a JSON reader, inert on a terminal
        i += len;
      } else {
        out->append(bytes.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          append_u00(out, c);
        } else {
          *out += static_cast<char>(c);
        }
    }
    ++i;
  }
  *out += '"';
}

std::string json_quote(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 2);
  append_json_string(&out, bytes, JsonText::kUtf8);
  return out;
}

void JsonWriter::before_value() {
  if (stack_.empty()) {
    CHECK_MSG(values_ == 0, "a second top-level JSON value");
    ++values_;
    return;
  }
  Level& level = stack_.back();
  if (level.object) {
    CHECK_MSG(!level.key_due, "a JSON value where an object key is due");
    level.key_due = true;
    return;
  }
  if (!level.empty) out_ += ',';
  level.empty = false;
}

void JsonWriter::begin_object() {
  before_value();
  out_ += '{';
  stack_.push_back(Level{true, true, true});
}

void JsonWriter::end_object() {
  CHECK_MSG(!stack_.empty() && stack_.back().object, "end_object without an open object");
  CHECK_MSG(stack_.back().key_due, "end_object with a key that has no value");
  stack_.pop_back();
  out_ += '}';
}

void JsonWriter::begin_array() {
  before_value();
  out_ += '[';
  stack_.push_back(Level{false, true, false});
}

void JsonWriter::end_array() {
  CHECK_MSG(!stack_.empty() && !stack_.back().object, "end_array without an open array");
  stack_.pop_back();
  out_ += ']';
}

void JsonWriter::key(std::string_view name) {
  CHECK_MSG(!stack_.empty() && stack_.back().object, "a JSON key outside an object");
  Level& level = stack_.back();
  CHECK_MSG(level.key_due, "two JSON keys in a row");
  if (!level.empty) out_ += ',';
  level.empty = false;
  level.key_due = false;
  append_json_string(&out_, name, mode_);
  out_ += ':';
}

void JsonWriter::string(std::string_view value) {
  before_value();
  append_json_string(&out_, value, mode_);
}

void JsonWriter::number(uint64_t value) {
  before_value();
  out_ += std::to_string(value);
}

void JsonWriter::signed_number(int64_t value) {
  before_value();
  out_ += std::to_string(value);
}

void JsonWriter::boolean(bool value) {
  before_value();
  out_ += value ? "true" : "false";
}

void JsonWriter::null() {
  before_value();
  out_ += "null";
}

}  // namespace sluice
