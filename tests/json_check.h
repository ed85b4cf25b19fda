// A strict JSON reader for tests (RFC 8259): it parses sluicectl's --json
// output back into values, so tests check the output by parsing it rather
// than by comparing strings alone. Header-only, so the integration test can
// use it too. Test code: it favours clarity over speed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::test {

/// One parsed JSON value.
struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  std::string number;  // the number's text, as written
  std::string string;  // decoded to UTF-8
  std::vector<JsonValue> array;
  std::map<std::string, JsonValue> object;
  std::vector<std::string> keys;  // object keys in order (duplicates fail the parse)

  /// The member `key` of an object, or nullptr when absent or not an object.
  const JsonValue* get(const std::string& key) const {
    if (type != Type::kObject) return nullptr;
    auto it = object.find(key);
    return it == object.end() ? nullptr : &it->second;
  }
  /// True for null.
  bool is_null() const { return type == Type::kNull; }
  /// The number as an integer (its text must be one).
  int64_t integer() const { return number.empty() ? 0 : std::stoll(number); }
};

namespace json_detail {

/// Recursive-descent parser over `text`; fails on anything RFC 8259 forbids.
class Reader {
 public:
  /// Reads `text`, which must outlive the reader.
  explicit Reader(std::string_view text) : s_(text) {}

  /// Parses the whole text as one value with optional surrounding whitespace.
  std::optional<JsonValue> document() {
    JsonValue v;
    skip_ws();
    if (!value(&v, 0)) return std::nullopt;
    skip_ws();
    if (i_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  /// Limit: nesting depth; sluicectl's output nests four levels, and the cap
  /// keeps a broken writer from recursing without bound.
  static constexpr int kMaxDepth = 64;

  /// Skips JSON whitespace (space, tab, newline, carriage return).
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  /// Consumes `word` if the text continues with it; returns whether it did.
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  /// Parses any value into `v`; false on a syntax error or too deep nesting.
  bool value(JsonValue* v, int depth) {
    if (depth > kMaxDepth || i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') return object(v, depth);
    if (c == '[') return array(v, depth);
    if (c == '"') {
      v->type = JsonValue::Type::kString;
      return string(&v->string);
    }
    if (c == 't' || c == 'f') {
      v->type = JsonValue::Type::kBool;
      v->boolean = c == 't';
      return literal(c == 't' ? "true" : "false");
    }
    if (c == 'n') {
      v->type = JsonValue::Type::kNull;
      return literal("null");
    }
    return number(v);
  }
  /// Consumes one or more decimal digits; false when there is none.
  bool digits() {
    size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }
  /// Parses a number (RFC 8259 grammar: no leading zeros, no bare '.').
  bool number(JsonValue* v) {
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else if (!digits()) {
      return false;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) return false;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return false;
    }
    v->type = JsonValue::Type::kNumber;
    v->number = std::string(s_.substr(start, i_ - start));
    return true;
  }
  /// Appends code point `cp` as UTF-8.
  static void put_utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xc0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xe0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      *out += static_cast<char>(0xf0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  /// Reads four hex digits; false when they are not there.
  bool hex4(uint32_t* out) {
    if (i_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    *out = v;
    return true;
  }
  /// Parses a string at the opening quote, decoding escapes and surrogate
  /// pairs; false on raw control bytes, bad escapes or lone surrogates.
  bool string(std::string* out) {
    ++i_;  // the opening quote
    while (i_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;  // raw control characters are forbidden
      if (c != '\\') {
        *out += static_cast<char>(c);
        ++i_;
        continue;
      }
      if (++i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          *out += e;
          break;
        case 'b':
          *out += '\b';
          break;
        case 'f':
          *out += '\f';
          break;
        case 'n':
          *out += '\n';
          break;
        case 'r':
          *out += '\r';
          break;
        case 't':
          *out += '\t';
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00) {
            uint32_t low = 0;
            if (!literal("\\u") || !hex4(&low) || low < 0xdc00 || low >= 0xe000) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            return false;
          }
          put_utf8(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  /// Parses an array at its '['.
  bool array(JsonValue* v, int depth) {
    v->type = JsonValue::Type::kArray;
    ++i_;
    skip_ws();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return true;
    }
    for (;;) {
      JsonValue item;
      skip_ws();
      if (!value(&item, depth + 1)) return false;
      v->array.push_back(std::move(item));
      skip_ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == ']') {
        ++i_;
        return true;
      }
      if (s_[i_++] != ',') return false;
    }
  }
  /// Parses an object at its '{'; duplicate keys fail.
  bool object(JsonValue* v, int depth) {
    v->type = JsonValue::Type::kObject;
    ++i_;
    skip_ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return true;
    }
    for (;;) {
      skip_ws();
      std::string key;
      if (i_ >= s_.size() || s_[i_] != '"' || !string(&key)) return false;
      skip_ws();
      if (i_ >= s_.size() || s_[i_++] != ':') return false;
      skip_ws();
      JsonValue item;
      if (!value(&item, depth + 1)) return false;
      if (v->object.count(key) != 0) return false;  // duplicate keys are a writer bug
      v->keys.push_back(key);
      v->object.emplace(key, std::move(item));
      skip_ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == '}') {
        ++i_;
        return true;
      }
      if (s_[i_++] != ',') return false;
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace json_detail

/// Parses `text` as exactly one JSON value (surrounding whitespace allowed);
/// nullopt on any syntax error, a duplicate key, or nesting deeper than 64.
inline std::optional<JsonValue> parse_json(std::string_view text) {
  return json_detail::Reader(text).document();
}

/// Returns true when `text` (UTF-8) holds, unescaped, a character a terminal
/// acts on although it is valid text: a C1 control (U+0080 to U+009F, bytes
/// C2 80 to C2 9F) or a bidi embedding, override or isolate (U+202A to
/// U+202E, bytes E2 80 AA to AE; U+2066 to U+2069, bytes E2 81 A6 to A9).
/// sluicectl's --json output must write them as \uXXXX (base/json.h).
inline bool has_raw_terminal_controls(std::string_view text) {
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    const auto b1 = static_cast<unsigned char>(text[i + 1]);
    if (b0 == 0xc2 && b1 >= 0x80 && b1 <= 0x9f) return true;
    if (b0 != 0xe2 || i + 2 >= text.size()) continue;
    const auto b2 = static_cast<unsigned char>(text[i + 2]);
    if (b1 == 0x80 && b2 >= 0xaa && b2 <= 0xae) return true;
    if (b1 == 0x81 && b2 >= 0xa6 && b2 <= 0xa9) return true;
  }
  return false;
}

}  // namespace sluice::test
