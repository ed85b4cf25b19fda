#include "client/json.h"

#include "base/check.h"
#include "base/json_escape.h"

namespace sluice {

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
  out_ += json_quote(name);
  out_ += ':';
}

void JsonWriter::string(std::string_view value) {
  before_value();
  out_ += json_quote(value);
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
