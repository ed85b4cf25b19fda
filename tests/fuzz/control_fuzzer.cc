// libFuzzer target for the control socket: bytes a client sends the worker,
// and bytes a (compromised) worker sends sluicectl. The input is a stream:
// check_frame() splits it into frames exactly as the worker's read loop does,
// and each complete frame is decoded both as a Request (the worker's side)
// and as a Response (the client's side), from an 8-byte-aligned copy.
//
// Beyond "no crash, no hang, no sanitizer report", it checks contracts:
//   - check_frame never claims more than the limit, a complete frame is whole
//     words within the input, and every prefix of a complete frame reads as
//     "need more" (the read loop never decodes a partial frame);
//   - a decode error is a short printable message (it is logged and sent back);
//   - a decoded message encodes and decodes back to itself;
//   - what the worker does next with a commit (validate_tables under two sets
//     of capabilities, the digest, each rule's listing text) never crashes,
//     and every issue points at a rule that exists;
//   - what sluicectl prints from a response (text and --json renderings) is
//     printable ASCII, and the JSON parses and holds no raw C1 control or bidi
//     override (only their \uXXXX escapes).
//
// Then the whole input is served to sluicectl's real ControlConnection over a
// UNIX socket (handshake, then requests until one fails), so that its read
// loop and the errors it prints are covered too: every error must be
// printable, since sluicectl writes it to the terminal as it is.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>
#include <variant>

#include "base/unique_fd.h"
#include "client/control_client.h"
#include "client/render.h"
#include "client/spec_context.h"
#include "policy/validate.h"
#include "schema/codec.h"
#include "schema/frame.h"
#include "schema/rules/table_edit.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/json_check.h"

namespace sluice::fuzz {
namespace {

/// Limit: frames decoded from one input. A pipelining client sends a few;
/// more only repeats the same work.
constexpr int kMaxFramesPerInput = 8;

/// Checks a decode failure's message: non-empty, short, printable.
void check_error_message(const std::string& message) {
  FUZZ_CHECK(!message.empty(), "an empty decode error");
  FUZZ_CHECK(message.size() <= 1024, "an over-long decode error");
  FUZZ_CHECK(printable(message), "a decode error with raw bytes");
}

/// Checks check_frame's answer for `len` bytes at `data` against its contract
/// and returns it.
FrameCheck checked_frame(const uint8_t* data, size_t len) {
  FrameCheck check = check_frame(data, len, kMaxControlMessageBytes);
  FUZZ_CHECK(check.frame_bytes <= kMaxControlMessageBytes, "a frame size above the limit");
  FUZZ_CHECK((check.status == FrameStatus::kInvalid) == (check.error != FrameError::kNone),
             "a frame error without an invalid frame, or the other way round");
  switch (check.status) {
    case FrameStatus::kComplete:
      FUZZ_CHECK(check.frame_bytes <= len, "a complete frame longer than the input");
      FUZZ_CHECK(check.frame_bytes >= 16 && check.frame_bytes % 8 == 0,
                 "a complete frame that is not a header and whole words");
      break;
    case FrameStatus::kNeedMore:
      FUZZ_CHECK(check.frame_bytes == 0 || check.frame_bytes > len, "need more of a whole frame");
      break;
    case FrameStatus::kInvalid:
      check_error_message(check.message);
      break;
  }
  return check;
}

/// Checks that every prefix of the complete frame of `len` bytes at `data`
/// reads as kNeedMore, with the final size once the segment table is there.
void check_prefixes(const uint8_t* data, size_t len) {
  const size_t cuts[] = {0, 4, 7, 8, 15, 16, len / 2, len - 8, len - 1};
  for (size_t cut : cuts) {
    if (cut >= len) continue;
    FrameCheck part = checked_frame(data, cut);
    FUZZ_CHECK(part.status == FrameStatus::kNeedMore, "a prefix of a frame is not need-more");
    FUZZ_CHECK(part.frame_bytes == 0 || part.frame_bytes == len, "a prefix sizes the frame wrong");
  }
}

/// Decodes `frame` (one whole encoded message in a std::string) again from an
/// aligned copy.
template <typename T, typename Decode>
Result<T> decode_again(const std::string& frame, Decode decode) {
  AlignedBytes copy(frame.data(), frame.size());
  FrameCheck check = check_frame(copy.data(), copy.size(), SIZE_MAX);
  FUZZ_CHECK(check.status == FrameStatus::kComplete && check.frame_bytes == copy.size(),
             "an encoded message is not exactly one frame");
  return decode(copy.data(), copy.size());
}

/// Runs what the worker does with a commit's tables after decoding them.
void worker_checks_tables(const TableSet& tables) {
  for (size_t p = 0; p < kPifCount; ++p) {
    FUZZ_CHECK(tables.tables[p].pif == static_cast<Pif>(p), "a table in the wrong slot");
    FUZZ_CHECK(tables.tables[p].rules.size() <= kMaxRulesPerTable, "too many rules decoded");
    for (const Rule& rule : tables.tables[p].rules) (void)format_rule(rule);
  }
  ServerCaps narrow;
  narrow.ipv6 = false;
  narrow.udp = false;
  narrow.scan = false;
  narrow.ifname = false;
  for (const ServerCaps& caps : {ServerCaps{}, narrow}) {
    for (const control::Failure& issue : validate_tables(tables, caps)) {
      FUZZ_CHECK(!issue.message.empty(), "an issue without a message");
      const Table& table = tables.of(issue.pif);
      FUZZ_CHECK(issue.rule >= -1 && issue.rule < static_cast<int>(table.rules.size()),
                 "an issue about a rule that does not exist");
      FUZZ_CHECK(issue.other_rule >= -1 && issue.other_rule < static_cast<int>(table.rules.size()),
                 "a conflict with a rule that does not exist");
    }
  }
  FUZZ_CHECK(control::digest_tables(tables) == control::digest_tables(TableSet(tables)),
             "an unstable digest");
}

/// Decodes `frame` as a request and runs the worker's next steps on it.
void exercise_request(const uint8_t* frame, size_t len) {
  Result<control::Request> request = control::decode_request(frame, len);
  if (!request) return check_error_message(request.error().message);
  if (const auto* commit = std::get_if<control::CommitRequest>(&request->body)) {
    FUZZ_CHECK(commit->comment.size() <= control::kMaxCommentBytes, "an over-long comment");
    worker_checks_tables(commit->tables);
  }
  if (const auto* history = std::get_if<control::HistoryRequest>(&request->body)) {
    FUZZ_CHECK(history->limit <= control::kMaxHistory, "a history limit above the maximum");
  }
  Result<control::Request> again =
      decode_again<control::Request>(control::encode_request(*request), control::decode_request);
  FUZZ_CHECK(again.ok() && *again == *request, "a request does not survive a round trip");
}

/// Checks a --json rendering: it parses, and holds no control bytes besides
/// its final newline (non-ASCII text stays as valid UTF-8), and no C1 control
/// or bidi embedding, override or isolate unescaped (a terminal acts on them).
void check_json(const std::string& json) {
  FUZZ_CHECK(test::parse_json(json).has_value(), "--json output that does not parse");
  for (char ch : json) {
    auto c = static_cast<unsigned char>(ch);
    FUZZ_CHECK(c >= 0x20 || c == '\n', "--json output with a control byte");
    FUZZ_CHECK(c != 0x7f, "--json output with DEL");
  }
  FUZZ_CHECK(!test::has_raw_terminal_controls(json),
             "--json output with a raw C1 control or bidi override");
}

/// Returns the Hello a well-behaved server sends, for rendering other replies.
control::ServerHello default_hello() {
  control::ServerHello hello;
  hello.pifs = {{Pif::kHost, "HOST"}, {Pif::kSplice, "SPLICE"}};
  hello.ephemeral_first = 32768;
  hello.ephemeral_last = 60999;
  return hello;
}

/// Runs what sluicectl does with a decoded response: renders it as text and
/// JSON, and for a Hello parses a spec in the context the Hello gives.
void client_renders(const control::Response& response) {
  const control::ServerHello fallback = default_hello();
  if (const auto* hello = std::get_if<control::ServerHello>(&response.body)) {
    FUZZ_CHECK(hello->pifs.size() <= kPifCount, "more pifs than exist");
    FUZZ_CHECK(printable(render_state(control::State{}, *hello), true), "raw bytes in a listing");
    check_json(render_state_json(control::State{}, *hello));
    EditCommand all;
    all.spec = "all";
    (void)apply_edits(TableSet{}, {all}, spec_context(*hello));
  } else if (const auto* state = std::get_if<control::State>(&response.body)) {
    FUZZ_CHECK(printable(render_state(*state, fallback), true), "raw bytes in a listing");
    check_json(render_state_json(*state, fallback));
    FUZZ_CHECK(printable(render_show(*state, TableSet{}, fallback), true), "raw bytes in -s");
  } else if (const auto* result = std::get_if<control::CommitResult>(&response.body)) {
    FUZZ_CHECK(result->failures.size() <= control::kMaxFailures, "too many failures decoded");
    FUZZ_CHECK(printable(render_commit_summary(*result), true), "raw bytes in a summary");
    for (const std::string& line : render_failures(result->failures)) {
      FUZZ_CHECK(printable(line, true), "raw bytes in a failure");
    }
    check_json(render_edit_json(control::State{}, TableSet{}, *result, fallback, false));
  } else if (const auto* history = std::get_if<control::History>(&response.body)) {
    FUZZ_CHECK(history->entries.size() <= control::kMaxHistory, "too many history entries");
    FUZZ_CHECK(printable(render_history(*history), true), "raw bytes in the history");
    check_json(render_history_json(*history));
  } else if (const auto* error = std::get_if<control::ProtocolError>(&response.body)) {
    FUZZ_CHECK(error->message.size() <= control::kMaxTextBytes, "an over-long error message");
    (void)control::error_code_name(error->code);
  }  // a Welcome has nothing to show
}

/// Decodes `frame` as a response and runs the client's next steps on it.
void exercise_response(const uint8_t* frame, size_t len) {
  Result<control::Response> response = control::decode_response(frame, len);
  if (!response) return check_error_message(response.error().message);
  client_renders(*response);
  Result<control::Response> again = decode_again<control::Response>(
      control::encode_response(*response), control::decode_response);
  FUZZ_CHECK(again.ok() && *again == *response, "a response does not survive a round trip");
}

/// Limit: input bytes served to the client session. The whole input is
/// written before the client reads, so it must fit in the socket buffer
/// (208 KiB by default for a UNIX stream socket).
constexpr size_t kMaxServedBytes = 128 * 1024;

/// Returns the abstract UNIX socket name the fake server listens on ("\0"
/// first: nothing is created in the file system), one per process.
const std::string& server_name() {
  static const std::string name =
      std::string(1, '\0') + "sluice-control-fuzzer-" + std::to_string(::getpid());
  return name;
}

/// Returns the fake server's listening socket, created on first use.
int server_listener() {
  static const int fd = [] {
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(s >= 0, "socket");
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, server_name().data(), server_name().size());
    // ControlConnection::connect() passes sizeof(addr): bind the same length.
    FUZZ_CHECK(::bind(s, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) == 0, "bind");
    FUZZ_CHECK(::listen(s, 4) == 0, "listen");
    return s;
  }();
  return fd;
}

/// Checks an error sluicectl would print: non-empty and printable.
void check_client_error(const Error& error) {
  FUZZ_CHECK(!error.message.empty(), "a client error without a message");
  FUZZ_CHECK(printable(error.message), "a client error with raw bytes (it is printed)");
}

/// Serves `size` bytes as everything a server says, then end of file, and
/// runs sluicectl's connection on them: the handshake, then requests until
/// one fails. Rendered replies and errors must be printable.
void client_session(const uint8_t* data, size_t size) {
  if (size > kMaxServedBytes) return;
  int listener = server_listener();
  Result<ControlConnection> conn = ControlConnection::connect(server_name(), 1000);
  FUZZ_CHECK(conn.ok(), "cannot connect to the fake server");
  UniqueFd server(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  FUZZ_CHECK(server.valid(), "accept");
  for (size_t off = 0; off < size;) {
    ssize_t n = ::send(server.get(), data + off, size - off, MSG_NOSIGNAL);
    FUZZ_CHECK(n > 0, "cannot serve the input");
    off += static_cast<size_t>(n);
  }
  FUZZ_CHECK(::shutdown(server.get(), SHUT_WR) == 0, "shutdown");
  Result<control::ServerHello> hello = conn->handshake();
  if (!hello) return check_client_error(hello.error());
  for (int i = 0; i < kMaxFramesPerInput; ++i) {
    Result<control::Response> response = conn->call(control::Request{0, control::GetState{}});
    if (!response) return check_client_error(response.error());
    client_renders(*response);
  }
}

}  // namespace

int control_one_input(const uint8_t* data, size_t size) {
  AlignedBytes input(data, size);
  size_t offset = 0;  // stays a multiple of 8: every frame is whole words
  for (int frames = 0; frames < kMaxFramesPerInput && offset < size; ++frames) {
    const uint8_t* at = input.data() + offset;
    FrameCheck check = checked_frame(at, size - offset);
    if (check.status != FrameStatus::kComplete) break;
    check_prefixes(at, check.frame_bytes);
    exercise_request(at, check.frame_bytes);
    exercise_response(at, check.frame_bytes);
    offset += check.frame_bytes;
  }
  client_session(data, size);
  return 0;
}

}  // namespace sluice::fuzz

#ifndef SLUICE_FUZZ_NO_MAIN
/// libFuzzer's entry point.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sluice::fuzz::control_one_input(data, size);
}
#endif
