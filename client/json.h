// A tiny JSON writer for sluicectl's --json output: objects, arrays, strings,
// integers, booleans and null, written in order into one string. No library:
// the client needs only output, and its seccomp sandbox favours code that
// allocates and nothing else.
//
// Strings are bytes. Valid UTF-8 passes through; every byte that is not part
// of a valid UTF-8 sequence (and every control byte) is written as \u00XX, so
// the output is always valid JSON and a hostile rule or message text cannot
// break its structure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

/// Returns `bytes` as a JSON string literal, quotes included: `"` and `\`
/// escaped, \b \f \n \r \t for those controls, \u00XX for the other bytes
/// below 0x20, for 0x7f, and for each byte that is not part of a valid UTF-8
/// sequence (overlong forms, surrogates and code points above U+10FFFF are
/// invalid). Never fails.
std::string json_quote(std::string_view bytes);

/// Builds one JSON value in a string. Misuse (a value where a key is due, a
/// key outside an object, unbalanced ends) is a bug and CHECK-fails.
class JsonWriter {
 public:
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
  /// Writes a string value (see json_quote).
  void string(std::string_view value);
  /// Writes an unsigned integer value.
  void number(uint64_t value);
  /// Writes a signed integer value.
  void signed_number(int64_t value);
  /// Writes true or false.
  void boolean(bool value);
  /// Writes null.
  void null();

  /// The text written so far. Complete once every begin has its end.
  const std::string& str() const { return out_; }
  /// True when every object and array is closed and one value was written.
  bool complete() const { return stack_.empty() && values_ == 1; }

 private:
  /// Writes the separator before a value and checks that a value may go here.
  void before_value();

  struct Level {
    bool object = false;  // object or array
    bool empty = true;    // nothing written in it yet
    bool key_due = true;  // objects: a key comes next
  };
  std::string out_;
  std::vector<Level> stack_;
  int values_ = 0;  // top-level values written
};

}  // namespace sluice
