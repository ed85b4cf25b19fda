// Regression tests of the fuzz targets (docs/FUZZING.md): every input that
// ever crashed a target, or broke one of its checks, is a named test here,
// fed as a byte literal to the same function the fuzzer calls. A test that
// fails aborts inside that function with "fuzz check failed at ...".
//
// The seed corpora are replayed too, so that a change of a format that
// breaks the seeds (or a seed that crashes) shows up in the normal build.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "schema/codec.h"
#include "tests/fuzz/fuzz_util.h"

namespace sluice::fuzz {
namespace {

/// Feeds `bytes` to a fuzz target's function, as libFuzzer would.
int feed(int (*target)(const uint8_t*, size_t), std::string_view bytes) {
  return target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

/// Returns the contents of every file in the seed corpus of `target`.
std::vector<std::string> corpus(const std::string& target) {
  std::vector<std::string> out;
  std::filesystem::path dir = std::filesystem::path(SLUICE_FUZZ_CORPUS_DIR) / target;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

/// One fuzz target: its name (and corpus directory) and its function.
struct Target {
  const char* name;
  int (*one_input)(const uint8_t*, size_t);
};

const Target kTargets[] = {
    {"spec_fuzzer", spec_one_input},
    {"control_fuzzer", control_one_input},
    {"broker_wire_fuzzer", broker_wire_one_input},
    {"audit_verify_fuzzer", audit_verify_one_input},
    {"option_file_fuzzer", option_file_one_input},
    {"pesto_wire_fuzzer", pesto_wire_one_input},
    {"state_blob_fuzzer", state_blob_one_input},
};

TEST(FuzzCorpus, EverySeedPassesItsTarget) {
  for (const Target& target : kTargets) {
    std::vector<std::string> seeds = corpus(target.name);
    EXPECT_GE(seeds.size(), 3u) << target.name << " has almost no seed corpus";
    for (const std::string& seed : seeds) EXPECT_EQ(feed(target.one_input, seed), 0);
  }
}

TEST(FuzzCorpus, EmptyInputPassesEveryTarget) {
  for (const Target& target : kTargets) EXPECT_EQ(target.one_input(nullptr, 0), 0);
}

// control_fuzzer, crash-e4d1360da9fa2b65697af6285caee8021133a761 (minimised):
// a server whose first frame is a ProtocolError with bytes 0x01 and 0xf3 in
// its message. sluicectl printed the message raw in "the server refused the
// connection: ...", so a compromised worker could write terminal escapes to
// the administrator's terminal. Fixed in client/control_client.cc by
// sanitising the server's text, in handshake() and in call().
TEST(FuzzRegression, ControlServerRefusalWithRawBytesIsSanitised) {
  static const char kInput[] =
      "\x00\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01\x00"
      "\x09\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x01\x00\x01\x00\x05\x00\x00\x00\x00\x00\x00\x00"
      "\x01\x00\x00\x00\x8a\x00\x00\x00hello sent twic\x01\x00`@\x00\xf3"
      "0e\x00";
  EXPECT_EQ(feed(control_one_input, std::string_view(kInput, sizeof(kInput) - 1)), 0);
}

// The same bug on the other path, call(): a refusal after a good Hello and
// Welcome, with an escape sequence that would clear the screen.
TEST(FuzzRegression, ControlRequestRefusalWithEscapesIsSanitised) {
  control::ServerHello hello;
  hello.pifs = {{Pif::kHost, "HOST"}};
  std::string input =
      control::encode_response(control::Response{0, hello}) +
      control::encode_response(control::Response{1, control::Welcome{}}) +
      control::encode_response(control::Response{
          2, control::ProtocolError{control::ErrorCode::kNotPermitted, "no\x1b[2J\x1b[Hpe"}});
  EXPECT_EQ(feed(control_one_input, input), 0);
}

// Security review item 11: sluicectl --json passed C1 controls (U+009B is
// CSI on terminals that take 8-bit controls) and bidi overrides from the
// server to the terminal. A history whose comment and rule text carry them
// must come out with \uXXXX escapes only. Fixed in base/json.cc; the oracle
// (check_json in control_fuzzer.cc) rejects the raw characters.
TEST(FuzzRegression, JsonOutputEscapesC1ControlsAndBidiOverrides) {
  control::HistoryEntry entry;
  entry.comment =
      "ok\xe2\x80\xae"
      "evil\xc2\x9b"
      "2J\xe2\x81\xa6";
  entry.added = {"HOST TCP [*]:80 => 80 \xe2\x80\xab\xc2\x85"};
  control::History history;
  history.entries = {entry};
  std::string input = control::encode_response(control::Response{0, history});
  EXPECT_EQ(feed(control_one_input, input), 0);
}

}  // namespace
}  // namespace sluice::fuzz
