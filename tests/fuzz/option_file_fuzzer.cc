// libFuzzer target for `sluicectl --file FILE`: the input is the file's text.
// The file is the user's own, but it may come from elsewhere (a generated
// file, a shared repository), and sluicectl reads it before its sandbox and
// prints parts of it in errors, so it must never crash the client or put raw
// bytes on the terminal.
//
// It runs split_option_file, then the whole command line `--file FILE` with
// a reader that returns the input, then the edits it yields on a sample
// table set (apply_edits), then the validator on the result: the path a real
// `sluicectl --file` takes up to the commit it would send.
//
// Contracts checked: words hold no NUL or newline and come in line order;
// re-quoting the words and splitting again gives them back; every error is
// "FILE:LINE: ..." (or names the file) in printable ASCII; a --comment from
// the file has no control characters.
#include <string>
#include <string_view>
#include <vector>

#include "client/cli.h"
#include "policy/validate.h"
#include "schema/rules/table_edit.h"
#include "tests/fuzz/fuzz_util.h"

namespace sluice::fuzz {
namespace {

/// The name the fuzzed file goes by in messages.
const std::string kFileName = "fuzz.opts";

/// Returns the words as an option file again: one line per original line,
/// every byte single-quoted except "'", which is double-quoted.
std::string requote(const std::vector<FileWord>& words) {
  std::string out;
  int line = 1;
  for (const FileWord& word : words) {
    for (; line < word.line; ++line) out += '\n';
    if (word.text.empty()) out += "''";
    for (char c : word.text) {
      out += c == '\'' ? "\"'\"" : std::string("'") + c + "'";
    }
    out += ' ';
  }
  return out;
}

/// Checks split_option_file's words against its contract and its inverse.
void check_words(const std::vector<FileWord>& words, std::string_view text) {
  int lines = 1;
  for (char c : text) lines += c == '\n';
  int previous = 1;
  for (const FileWord& word : words) {
    FUZZ_CHECK(word.line >= previous && word.line <= lines, "a word on the wrong line");
    FUZZ_CHECK(word.text.find('\0') == std::string::npos, "a word with a NUL");
    FUZZ_CHECK(word.text.find('\n') == std::string::npos, "a word across lines");
    previous = word.line;
  }
  std::string again = requote(words);
  Result<std::vector<FileWord>> resplit = split_option_file(again, kFileName);
  FUZZ_CHECK(resplit.ok() && *resplit == words, "re-quoted words split differently");
}

/// Checks an error message meant for the terminal.
void check_error(const std::string& message) {
  FUZZ_CHECK(!message.empty(), "an error without a message");
  FUZZ_CHECK(printable(message), "an error with raw bytes (it is printed)");
}

/// Returns a table set with rules to delete from and append to.
TableSet sample_tables() {
  TableSet tables;
  Rule web;
  web.dual_stack = true;
  web.first = 80;
  web.last = 90;
  web.to = 8080;
  Rule dns;
  dns.proto = Proto::kUdp;
  parse_addr("127.0.0.1", &dns.listen);
  dns.first = dns.last = dns.to = 53;
  tables.of(Pif::kHost).rules = {web, dns};
  Rule back;
  back.dual_stack = true;
  back.first = back.last = back.to = 5432;
  tables.of(Pif::kSplice).rules = {back};
  return tables;
}

}  // namespace

int option_file_one_input(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<std::vector<FileWord>> words = split_option_file(text, kFileName);
  if (words) {
    check_words(*words, text);
  } else {
    check_error(words.error().message);
    FUZZ_CHECK(words.error().message.rfind(kFileName + ":", 0) == 0, "an error without FILE:");
  }

  FileReader reader = [&](const std::string& path) -> Result<std::string> {
    if (path != kFileName) return Err(ENOENT, "no such file");
    return std::string(text);
  };
  Result<Plan> plan = parse_command_line({"--file", kFileName}, reader);
  if (!plan) {
    check_error(plan.error().message);
    return 0;
  }
  for (char c : plan->comment) {
    FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f, "a control byte in a comment");
  }
  if (!plan->has_edits()) return 0;
  SpecContext ctx;
  ctx.ephemeral_first = 32768;
  ctx.ephemeral_last = 60999;
  Result<TableSet> after = apply_edits(sample_tables(), plan->edits, ctx);
  if (!after) {
    check_error(after.error().message);
    return 0;
  }
  for (const control::Failure& issue : validate_tables(*after, ServerCaps{})) {
    FUZZ_CHECK(!issue.message.empty(), "an issue without a message");
  }
  return 0;
}

}  // namespace sluice::fuzz

#ifndef SLUICE_FUZZ_NO_MAIN
/// libFuzzer's entry point.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sluice::fuzz::option_file_one_input(data, size);
}
#endif
