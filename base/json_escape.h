// JSON string escaping, shared by sluicectl's JSON output and the worker's
// audit lines: one implementation of the rules that keep peer-supplied text
// from ending a string, a line or a record early.
#pragma once

#include <string>
#include <string_view>

namespace sluice {

/// What passes through unescaped besides printable ASCII.
enum class JsonText {
  kUtf8,   // valid UTF-8 sequences pass through; invalid bytes become \u00XX
  kAscii,  // every byte from 0x7f up becomes \u00XX: the output is pure ASCII
};

/// Appends `bytes` to `out` as a JSON string literal, quotes included. `"` and
/// `\` are escaped, \b \f \n \r \t use their short forms, and every other
/// byte below 0x20 and 0x7f is written as \u00xx (lower-case hex), so no
/// input can end the string or the line early. Never fails.
void append_json_string(std::string* out, std::string_view bytes, JsonText mode);

}  // namespace sluice
