// JSON output, shared by sluicectl (--json, the audit verifier's report) and
// the worker's audit lines: one implementation of the escaping rules that keep
// peer-supplied text from ending a string, a line or a record early, and a
// tiny writer of objects, arrays, strings, integers, booleans and null,
// written in order into one string. No library: both sides need only output,
// and their seccomp sandboxes favour code that allocates and nothing else.
//
// Strings are bytes. In UTF-8 mode, valid UTF-8 passes through and every byte
// that is not part of a valid UTF-8 sequence (and every control byte) is
// written as \u00XX; the C1 controls (U+0080 to U+009F) and the bidi
// embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069) are
// valid but written as \uXXXX too, since a terminal acts on them. In ASCII mode
// every byte from 0x7f up is written as \u00XX. Either way the output is always
// valid JSON, and a hostile rule or message text can neither break its
// structure nor act on the terminal that shows it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

/// What passes through unescaped besides printable ASCII.
enum class JsonText {
  kUtf8,   // valid UTF-8 passes through, but for C1 and bidi controls (\uXXXX);
           // invalid bytes become \u00XX
  kAscii,  // every byte from 0x7f up becomes \u00XX: the output is pure ASCII
};

/// Appends `bytes` to `out` as a JSON string literal, quotes included. `"` and
/// `\` are escaped, \b \f \n \r \t use their short forms, and every other
/// byte below 0x20 and 0x7f is written as \u00xx (lower-case hex), so no
/// input can end the string or the line early. Bytes from 0x80 up follow
/// `mode`; in kUtf8, overlong forms, surrogates and code points above
/// U+10FFFF are invalid, and U+0080 to U+009F, U+202A to U+202E and U+2066 to
/// U+2069 are written as \uXXXX (lower-case hex). Never fails.
void append_json_string(std::string* out, std::string_view bytes, JsonText mode);

/// Returns `bytes` as a JSON string literal in UTF-8 mode (see
/// append_json_string). Never fails.
std::string json_quote(std::string_view bytes);

/// Builds one JSON value in a string, with no whitespace. Misuse (a value
/// where a key is due, a key outside an object, unbalanced ends) is a bug and
/// CHECK-fails.
class JsonWriter {
 public:
  /// Starts an empty writer whose strings (keys included) are escaped in `mode`.
  explicit JsonWriter(JsonText mode = JsonText::kUtf8) : mode_(mode) {}

  /// Starts an object ("{"), as a value.
  void begin_object();
  /// Ends the innermost object ("}"); CHECKs that it is one and no key is pending.
  void end_object();
  /// Starts an array ("["), as a value.
  void begin_array();
  /// Ends the innermost array ("]"); CHECKs that it is one.
  void end_array();
  /// Writes an object key; the next call must write its value.
  void key(std::string_view name);
  /// Writes a string value (see append_json_string).
  void string(std::string_view value);
  /// Writes an unsigned integer value.
  void number(uint64_t value);
  /// Writes a signed integer value.
  void signed_number(int64_t value);
  /// Writes true or false.
  void boolean(bool value);
  /// Writes null.
  void null();

  /// Returns the text written so far. Complete once every begin has its end.
  const std::string& str() const { return out_; }
  /// Returns true when every object and array is closed and one value was written.
  bool complete() const { return stack_.empty() && values_ == 1; }

 private:
  /// Writes the separator before a value and checks that a value may go here.
  void before_value();

  struct Level {
    bool object = false;  // object or array
    bool empty = true;    // nothing written in it yet
    bool key_due = true;  // objects: a key comes next
  };
  JsonText mode_;
  std::string out_;
  std::vector<Level> stack_;
  int values_ = 0;  // top-level values written
};

}  // namespace sluice
