// The JSON writer: string escaping (quotes, backslash, control bytes, UTF-8
// pass-through, invalid bytes as \u00XX), structure, and misuse as a bug.
// Every output is checked by parsing it back with a strict reader.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "base/json.h"
#include "tests/json_check.h"

namespace sluice {
namespace {

using test::JsonValue;
using test::parse_json;

/// Parses json_quote(bytes) back and returns the decoded string; fails the
/// test when the quote is not valid JSON.
std::string round_trip(std::string_view bytes) {
  std::string quoted = json_quote(bytes);
  auto v = parse_json(quoted);
  EXPECT_TRUE(v.has_value()) << quoted;
  if (!v) return "<invalid>";
  EXPECT_EQ(v->type, JsonValue::Type::kString);
  return v->string;
}

TEST(JsonQuote, QuotesAndBackslash) {
  EXPECT_EQ(json_quote(""), "\"\"");
  EXPECT_EQ(json_quote("plain text"), "\"plain text\"");
  EXPECT_EQ(json_quote("a\"b\\c/d"), "\"a\\\"b\\\\c/d\"");
}

TEST(JsonQuote, ControlBytes) {
  EXPECT_EQ(json_quote("\n\t\r\b\f"), "\"\\n\\t\\r\\b\\f\"");
  EXPECT_EQ(json_quote(std::string("\0\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(json_quote("\x1b[31mred"), "\"\\u001b[31mred\"");
}

TEST(JsonQuote, ValidUtf8PassesThrough) {
  EXPECT_EQ(json_quote("naïve € 𝄞 ﻿"), "\"naïve € 𝄞 ﻿\"");
  EXPECT_EQ(round_trip("naïve € 𝄞"), "naïve € 𝄞");
  // The edges of the well-formed table. (U+0080, the first two-byte
  // sequence, is a C1 control: TerminalControlsAreEscaped checks it.)
  EXPECT_EQ(json_quote("\xc2\xa0\xdf\xbf"), "\"\xc2\xa0\xdf\xbf\"");
  EXPECT_EQ(json_quote("\xc2\x80"), "\"\\u0080\"");  // valid, so one escape, not two
  EXPECT_EQ(json_quote("\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"),
            "\"\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\"");
  EXPECT_EQ(json_quote("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"), "\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"");
}

// Security review item 11: sluicectl --json passed C1 controls and bidi
// overrides from the server to the terminal. They are valid UTF-8, so they
// come out as \uXXXX: the same text to a JSON reader, inert on a terminal.
TEST(JsonQuote, TerminalControlsAreEscaped) {
  EXPECT_EQ(json_quote("\xc2\x80"), "\"\\u0080\"");  // U+0080, the first C1
  EXPECT_EQ(json_quote("a\xc2\x9b"
                       "31mb"),
            "\"a\\u009b31mb\"");  // U+009B, CSI
  EXPECT_EQ(json_quote("\xc2\x9d\xc2\x9f"), "\"\\u009d\\u009f\"");
  EXPECT_EQ(json_quote("\xc2\xa0"), "\"\xc2\xa0\"");  // U+00A0, after the C1 block: kept
  EXPECT_EQ(json_quote("\xe2\x80\xaa\xe2\x80\xae"), "\"\\u202a\\u202e\"");  // LRE, RLO
  EXPECT_EQ(json_quote("\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad"), "\"\\u202b\\u202c\\u202d\"");
  EXPECT_EQ(json_quote("\xe2\x81\xa6x\xe2\x81\xa9"), "\"\\u2066x\\u2069\"");  // LRI, PDI
  EXPECT_EQ(json_quote("\xe2\x81\xa7\xe2\x81\xa8"), "\"\\u2067\\u2068\"");    // RLI, FSI
  // Their neighbours are ordinary text.
  EXPECT_EQ(json_quote("\xe2\x80\xa9\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa"),
            "\"\xe2\x80\xa9\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa\"");
  // A reader gets the characters back.
  EXPECT_EQ(round_trip("x\xe2\x80\xaey\xc2\x85"), "x\xe2\x80\xaey\xc2\x85");
  // ASCII mode (audit lines) escapes each byte, as before.
  std::string ascii;
  append_json_string(&ascii, "\xe2\x80\xae", JsonText::kAscii);
  EXPECT_EQ(ascii, "\"\\u00e2\\u0080\\u00ae\"");
}

TEST(JsonQuote, InvalidUtf8BytesAreEscaped) {
  EXPECT_EQ(json_quote("\xff"), "\"\\u00ff\"");
  EXPECT_EQ(json_quote("\x80"), "\"\\u0080\"");                        // lone continuation
  EXPECT_EQ(json_quote("\xc0\x80"), "\"\\u00c0\\u0080\"");             // overlong NUL
  EXPECT_EQ(json_quote("\xc1\xbf"), "\"\\u00c1\\u00bf\"");             // overlong
  EXPECT_EQ(json_quote("\xe0\x80\x80"), "\"\\u00e0\\u0080\\u0080\"");  // overlong 3-byte
  EXPECT_EQ(json_quote("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"");  // surrogate
  EXPECT_EQ(json_quote("\xf0\x80\x80\x80"), "\"\\u00f0\\u0080\\u0080\\u0080\"");  // overlong 4
  EXPECT_EQ(json_quote("\xf4\x90\x80\x80"), "\"\\u00f4\\u0090\\u0080\\u0080\"");  // > U+10FFFF
  EXPECT_EQ(json_quote("\xf5\x80\x80\x80"), "\"\\u00f5\\u0080\\u0080\\u0080\"");
  EXPECT_EQ(json_quote("\xe2\x82"), "\"\\u00e2\\u0082\"");  // truncated at the end
  EXPECT_EQ(json_quote("\xe2\x82x"), "\"\\u00e2\\u0082x\"");
  EXPECT_EQ(json_quote("a\xe2\x82\xac\xff"), "\"a\xe2\x82\xac\\u00ff\"");
}

TEST(JsonQuote, EveryByteAndRandomBytesGiveValidJson) {
  for (int b = 0; b < 256; ++b) {
    std::string one(1, static_cast<char>(b));
    std::string decoded = round_trip(one);
    if (b < 0x80) {
      EXPECT_EQ(decoded, one) << b;
    }
  }
  std::mt19937 rng(20260701);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(rng() % 40, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    round_trip(bytes);
  }
}

TEST(JsonWriter, BuildsNestedValues) {
  JsonWriter w;
  w.begin_object();
  w.key("a");
  w.number(18446744073709551615ull);
  w.key("b");
  w.signed_number(-5);
  w.key("list");
  w.begin_array();
  w.boolean(true);
  w.boolean(false);
  w.null();
  w.string("x\"y");
  w.begin_object();
  w.end_object();
  w.begin_array();
  w.end_array();
  w.end_array();
  w.key("q\"k");
  w.string("");
  w.end_object();
  ASSERT_TRUE(w.complete());
  EXPECT_EQ(w.str(),
            "{\"a\":18446744073709551615,\"b\":-5,\"list\":[true,false,null,\"x\\\"y\",{},[]],"
            "\"q\\\"k\":\"\"}");
  auto v = parse_json(w.str());
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->keys, (std::vector<std::string>{"a", "b", "list", "q\"k"}));
  EXPECT_EQ(v->get("b")->integer(), -5);
  EXPECT_EQ(v->get("list")->array.size(), 6u);
  EXPECT_EQ(v->get("list")->array[3].string, "x\"y");
}

TEST(JsonWriter, IncompleteUntilClosed) {
  JsonWriter w;
  EXPECT_FALSE(w.complete());
  w.begin_array();
  EXPECT_FALSE(w.complete());
  w.end_array();
  EXPECT_TRUE(w.complete());
}

TEST(JsonWriterDeathTest, MisuseIsABug) {
  EXPECT_DEATH(
      {
        JsonWriter w;
        w.begin_array();
        w.key("k");
      },
      "outside an object");
  EXPECT_DEATH(
      {
        JsonWriter w;
        w.begin_object();
        w.number(1);
      },
      "key is due");
  EXPECT_DEATH(
      {
        JsonWriter w;
        w.begin_object();
        w.key("k");
        w.end_object();
      },
      "no value");
  EXPECT_DEATH(
      {
        JsonWriter w;
        w.null();
        w.null();
      },
      "second top-level");
  EXPECT_DEATH(
      {
        JsonWriter w;
        w.begin_object();
        w.end_array();
      },
      "without an open array");
}

TEST(JsonCheck, TheTestReaderIsStrict) {
  EXPECT_TRUE(parse_json(" {\"a\":[1,-2.5e3,\"\\u00e9\\ud834\\udd1e\"]} ").has_value());
  for (const char* bad : {"", "{", "{\"a\":1,}", "[1,]", "{\"a\":1,\"a\":2}", "\"\x01\"", "'x'",
                          "01", "1.", "[1] [2]", "\"\\ud834\"", "{a:1}", "nul"}) {
    EXPECT_FALSE(parse_json(bad).has_value()) << bad;
  }
  auto v = parse_json("\"\\u00e9\\ud834\\udd1e\"");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->string, "é𝄞");
}

}  // namespace
}  // namespace sluice
