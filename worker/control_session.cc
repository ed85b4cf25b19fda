// One control client's conversation (see control_server.h): admission's
// hello or refusal, reading with back-pressure, the frame check, the one
// decode, the dispatch table and the replies.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>
#include <variant>

#include "base/log.h"
#include "base/strings.h"
#include "schema/frame.h"
#include "worker/control_server.h"

namespace sluice {

using control::ErrorCode;

namespace {

/// Returns the index of request type T in control::Request::body, the kind
/// that names T's row in the dispatch table.
template <typename T, typename... Ts>
constexpr size_t kind_in(const std::variant<Ts...>* /*body*/) {
  constexpr bool same[] = {std::is_same_v<T, Ts>...};
  for (size_t i = 0; i < sizeof...(Ts); ++i) {
    if (same[i]) return i;
  }
  return sizeof...(Ts);
}

/// The request kind of T (see kind_in); a T that is no request type fails
/// the build.
template <typename T>
constexpr size_t kKind = [] {
  using Body = decltype(control::Request::body);
  constexpr size_t kind = kind_in<T>(static_cast<const Body*>(nullptr));
  static_assert(kind < std::variant_size_v<Body>, "not a control request type");
  return kind;
}();

/// Returns the body of `request` as a T. The dispatch table hands each
/// handler only its own kind, so any other type is a bug (CHECK).
template <typename T>
const T& body_of(const control::Request& request) noexcept {
  const T* body = std::get_if<T>(&request.body);
  CHECK(body != nullptr);
  return *body;
}

/// Maps an invalid frame to the error its client gets: a frame over the
/// message limit is tooLarge, any other broken segment table is malformed.
ErrorCode frame_error_code(FrameError error) noexcept {
  switch (error) {
    case FrameError::kTooLarge:
      return ErrorCode::kTooLarge;
    case FrameError::kTooManySegments:
    case FrameError::kEmpty:
    case FrameError::kNone:
      return ErrorCode::kMalformed;
  }
  return ErrorCode::kMalformed;
}

/// Limit: bytes of the input buffer a client starts with, and shrinks back
/// to once a larger frame was consumed. Every request but a large commit
/// fits, and any frame header (at most 264 bytes for 64 segments) does.
constexpr size_t kInitialInputBytes = 4096;
/// Limit: output buffer capacity kept after a reply has drained; a larger
/// one (a big state, history or stats) is released, so that an idle client
/// holds no memory of its last reply.
constexpr size_t kKeptOutputBytes = 64u << 10;
/// Limit: requests answered for one client per wake-up. A client that sends
/// requests and reads replies as fast as the worker answers them would
/// otherwise keep the loop to itself; after 16 it waits for the next loop
/// iteration, and data events run first.
constexpr int kRequestsPerWake = 16;

}  // namespace

// The dispatch table: every request a client may make, where in the
// conversation it may come, the access the control policy must grant for it
// (policy/control_policy.h), and its handler. A request that is out of
// place, or not permitted, fails the client and closes its connection.
const ControlClient::Route ControlClient::kRoutes[6] = {
    {kKind<control::ClientHello>, Stage::kHello, ControlAccess::kRead,
     [](const control::Request&) { return "connecting"; }, &ControlClient::check_hello,
     &ControlClient::answer_hello},
    {kKind<control::GetState>, Stage::kSession, ControlAccess::kRead,
     [](const control::Request&) { return "reading the state"; }, nullptr,
     &ControlClient::answer_get_state},
    {kKind<control::HistoryRequest>, Stage::kSession, ControlAccess::kRead,
     [](const control::Request&) { return "reading the history"; }, nullptr,
     &ControlClient::answer_history},
    {kKind<control::StatsRequest>, Stage::kSession, ControlAccess::kRead,
     [](const control::Request&) { return "reading the counters"; }, nullptr,
     &ControlClient::answer_stats},
    {kKind<control::CommitRequest>, Stage::kSession, ControlAccess::kCommit,
     [](const control::Request& request) {
       return body_of<control::CommitRequest>(request).dry_run ? "a dry run" : "committing";
     },
     nullptr, &ControlClient::answer_commit},
    // Whoever may commit may confirm a commit that waits: the confirmation
    // is part of committing, and the one who pushed may have lost access.
    {kKind<control::ConfirmRequest>, Stage::kSession, ControlAccess::kCommit,
     [](const control::Request&) { return "confirming a commit"; }, nullptr,
     &ControlClient::answer_confirm},
};

const ControlClient::Route* ControlClient::find_route(size_t kind) noexcept {
  for (const Route& route : kRoutes) {
    if (route.kind == kind) return &route;
  }
  return nullptr;
}

ControlClient::ControlClient(ControlServer& server, UniqueFd fd, struct ucred peer, uint64_t now_ns)
    : server_(server), fd_(std::move(fd)), peer_(peer), idle_since_ns_(now_ns) {}

size_t ControlClient::request_limit() const noexcept {
  return access() >= ControlAccess::kCommit ? kMaxControlMessageBytes
                                            : server_.limits().max_reader_request_bytes;
}

bool ControlClient::timed_out(uint64_t now_ns) const noexcept {
  const ControlLimits& limits = server_.limits();
  // Waiting for sluiced's answer, or for its own commit: the server is the
  // slow side, not the client.
  if (!admitted_ || commit_pending_) return false;
  if (busy_since_ns_ != 0) return elapsed_ns(now_ns, busy_since_ns_) > limits.request_timeout_ns;
  return elapsed_ns(now_ns, idle_since_ns_) > limits.idle_timeout_ns;
}

void ControlClient::on_event(uint32_t /*events*/) noexcept {
  if (dead_ || !admitted_) return;  // identification first: nothing is read before
  drive();
}

void ControlClient::drive() noexcept {
  resume_ = false;
  answered_ = 0;
  // Bounded: each round but the last sends what was queued and answers at
  // least one request, and at most kRequestsPerWake are answered.
  for (int round = 0; round <= kRequestsPerWake + 1 && !dead_; ++round) {
    flush();
    if (dead_ || closing_ || paused()) return;  // EPOLLOUT or commit_done() resumes
    if (answered_ >= kRequestsPerWake) {
      // Its share of this wake-up is used: the rest waits for the next tick,
      // and data events run first.
      resume_ = true;
      server_.resume_later();
      return;
    }
    read_input();
    if (dead_) return;
    // Read until EAGAIN with nothing queued: done until the next event.
    if (!closing_ && !paused() && answered_ < kRequestsPerWake) return;
  }
}

void ControlClient::reserve_input(size_t bytes) noexcept {
  size_t words = (bytes + 7) / 8;
  if (words > in_.size()) in_.resize(words);
}

void ControlClient::read_input() noexcept {
  while (!dead_ && !closing_) {
    process_frames();
    // Back-pressure: while a reply waits or a commit runs, the next request
    // stays in the socket; the client's own sends then wait, not the worker.
    if (dead_ || closing_ || paused() || answered_ >= kRequestsPerWake) return;
    const size_t cap = in_.size() * 8;
    // process_frames() answered every complete frame and grew the buffer to
    // the size of the incomplete one, so there is room.
    CHECK(in_len_ < cap);
    ssize_t n = ::read(fd_.get(), reinterpret_cast<char*>(in_.data()) + in_len_, cap - in_len_);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return server_.drop(this);
    }
    if (n == 0) {
      // The client closed its side. Pending replies cannot be read any more.
      return server_.drop(this);
    }
    in_len_ += static_cast<size_t>(n);
    if (busy_since_ns_ == 0) busy_since_ns_ = monotonic_ns();
  }
}

void ControlClient::identified(const PeerIdentity& identity) noexcept {
  awaiting_identity_ = false;
  identity_ = identity;
  // From now on, logs and audit records carry the ids the broker saw. It
  // sends them even when it refuses the peer (too many groups); only when it
  // could read none at all are they zeros, which would name the peer as root:
  // then the ids this worker read at accept stay.
  const bool broker_has_ids =
      identity.status == 0 || identity.pid != 0 || identity.uid != 0 || identity.gid != 0;
  if (broker_has_ids) {
    peer_.pid = identity.pid;
    peer_.uid = identity.uid;
    peer_.gid = identity.gid;
  }
  LOG_DEBUG("control client pid %d uid %u gid %u: access %s (policy line %u)", peer_.pid, peer_.uid,
            peer_.gid, access_name(access()), identity.line);
}

void ControlClient::admit(const control::ServerHello& hello) noexcept {
  if (dead_) return;
  admitted_ = true;
  in_.resize(kInitialInputBytes / 8);
  idle_since_ns_ = monotonic_ns();
  // The server speaks first; then whatever the client sent meanwhile.
  control::Response greeting;
  greeting.body = hello;
  queue(control::encode_response(greeting));
  drive();
}

void ControlClient::refuse(ErrorCode code, const std::string& message) noexcept {
  if (dead_) return;
  if (code == ErrorCode::kNotPermitted && message.empty()) {
    const bool allowed = permitted(ControlAccess::kRead, "connecting");
    CHECK(!allowed);  // admission refuses only a client with no access this way
  } else {
    fail(code, message);
  }
  // One try: the socket is new and the error small, so it fits unless the
  // client is gone. Either way the client is dropped now, unread.
  flush();
  if (!dead_) server_.drop(this);
}

std::string ControlClient::denial(ControlAccess needed, const char* what) const {
  const auto access = static_cast<ControlAccess>(identity_.access);
  std::string why;
  if (identity_.status != 0) {
    why = identity_failure(identity_, "sluicectl");
  } else {
    const ControlPolicy& policy = server_.policy();
    std::string text;
    for (const ControlRule& rule : policy.rules) {
      if (rule.line == identity_.line) text = rule.text;
    }
    why = explain_control(policy.source, policy.use_rules, policy.owner_uid,
                          ControlDecision{access, identity_.line}, text, identity_.uid) +
          "; run sluicectl as a permitted user, or ask the administrator to add a `control " +
          access_name(needed) + "` line for uid " + std::to_string(identity_.uid);
  }
  return std::string("permission denied: ") + what + " needs " + access_name(needed) +
         " access, and " + why;
}

bool ControlClient::permitted(ControlAccess needed, const char* what) noexcept {
  if (access() >= needed) return true;
  fail(ErrorCode::kNotPermitted, denial(needed, what));
  return false;
}

void ControlClient::process_frames() noexcept {
  while (!dead_ && !closing_ && !paused() && in_len_ > 0 && answered_ < kRequestsPerWake) {
    const uint8_t* data = reinterpret_cast<const uint8_t*>(in_.data());
    const size_t limit = request_limit();
    FrameCheck check = check_frame(data, in_len_, limit);
    if (check.status == FrameStatus::kInvalid) {
      if (check.error == FrameError::kTooLarge && limit < kMaxControlMessageBytes) {
        return fail(ErrorCode::kTooLarge,
                    check.message + ": a client that may only read sends requests of at most " +
                        std::to_string(limit) + " bytes; committing needs commit access");
      }
      return fail(frame_error_code(check.error), check.message);
    }
    if (check.status == FrameStatus::kNeedMore) {
      // Grow toward the one frame being read, never further (check_frame
      // kept it within the limit), and at most twice what is held: a header
      // alone that promises 4 MiB costs the worker 4 MiB only once the bytes
      // come, not at once for each client that sends one.
      const size_t cap = in_.size() * 8;
      if (check.frame_bytes > cap) reserve_input(std::min(check.frame_bytes, 2 * cap));
      return;
    }
    auto request = control::decode_request(data, check.frame_bytes);
    // Consume the frame before handling, so the handler sees a clean buffer.
    std::memmove(in_.data(), data + check.frame_bytes, in_len_ - check.frame_bytes);
    in_len_ -= check.frame_bytes;
    if (in_len_ == 0 && in_.size() * 8 > kInitialInputBytes) {
      // A large frame is done: give its memory back.
      std::vector<uint64_t>(kInitialInputBytes / 8).swap(in_);
    }
    if (!request) return fail(ErrorCode::kMalformed, request.error().message);
    ++answered_;
    handle(*request);
  }
  if (in_len_ == 0 && out_off_ == out_.size()) {
    busy_since_ns_ = 0;
    idle_since_ns_ = monotonic_ns();
  }
}

void ControlClient::handle(const control::Request& request) noexcept {
  const Route* route = find_route(request.body.index());
  // A kind without a row is judged as a request of the session: before the
  // hello it is out of order, after it unknown.
  const Stage stage = route != nullptr ? route->stage : Stage::kSession;
  if (stage == Stage::kHello && hello_done_)
    return fail(ErrorCode::kOutOfOrder, "hello sent twice");
  if (stage == Stage::kSession && !hello_done_) {
    return fail(ErrorCode::kOutOfOrder, "a request arrived before hello");
  }
  if (route == nullptr) {
    return fail(ErrorCode::kUnknownRequest, "this server does not serve that request");
  }
  if (route->check != nullptr && !(this->*route->check)(request)) return;
  if (access() < route->needed && route->needed >= ControlAccess::kCommit) {
    // An attempt to change the tables that the control policy refuses is
    // recorded like any refused commit: audit line and history entry, with
    // the ids sluiced saw (the engine bounds how many, refusal_audit.h).
    std::string comment = std::string(route->what(request)) + " from control client pid " +
                          std::to_string(peer_.pid) + ", refused by the control policy";
    if (const auto* commit = std::get_if<control::CommitRequest>(&request.body)) {
      if (!commit->comment.empty()) comment += "; its comment: " + commit->comment;
    }
    control::Failure failure;
    failure.kind = control::FailureKind::kPolicyDenied;
    failure.pif = Pif::kHost;
    failure.err = EACCES;
    failure.message =
        "the control policy refused it: " + denial(route->needed, route->what(request));
    server_.engine().submit_refused(peer_, std::move(comment), {std::move(failure)},
                                    [](const control::CommitResult&) {});
  }
  if (!permitted(route->needed, route->what(request))) return;
  (this->*route->answer)(request);
}

bool ControlClient::check_hello(const control::Request& request) noexcept {
  const auto& hello = body_of<control::ClientHello>(request);
  if (hello.protocol_version == control::kProtocolVersion) return true;
  fail(ErrorCode::kUnsupportedVersion,
       "this server speaks control protocol version " + std::to_string(control::kProtocolVersion) +
           " and the client speaks " + std::to_string(hello.protocol_version) +
           "; use a sluicectl from the same release as sluiced");
  return false;
}

void ControlClient::answer_hello(const control::Request& request) noexcept {
  const auto& hello = body_of<control::ClientHello>(request);
  hello_done_ = true;
  LOG_DEBUG("client pid %d uid %u: %s", peer_.pid, peer_.uid,
            sanitize(hello.client_version, 64).c_str());
  queue(control::encode_response(control::Response{request.id, control::Welcome{}}));
}

void ControlClient::answer_get_state(const control::Request& request) noexcept {
  const CommitEngine& engine = server_.engine();
  control::Response response;
  response.id = request.id;
  response.body = control::State{engine.generation(), engine.digest(), engine.tables(),
                                 engine.pending_confirm(), engine.unbound()};
  queue(control::encode_response(response));
}

void ControlClient::answer_history(const control::Request& request) noexcept {
  control::Response response;
  response.id = request.id;
  response.body = server_.engine().history(body_of<control::HistoryRequest>(request).limit);
  queue(control::encode_response(response));
}

void ControlClient::answer_stats(const control::Request& request) noexcept {
  control::Response response;
  response.id = request.id;
  response.body = server_.engine().stats(server_.uptime_millis());
  queue(control::encode_response(response));
}

void ControlClient::answer_confirm(const control::Request& request) noexcept {
  control::Response response;
  response.id = request.id;
  response.body = server_.engine().confirm(peer_);
  queue(control::encode_response(response));
}

void ControlClient::answer_commit(const control::Request& request) noexcept {
  // The commit runs in the loop between data events; this client's further
  // requests wait in its buffer so that answers keep their order.
  commit_pending_ = true;
  ControlServer& server = server_;
  uint64_t client_id = id;
  uint64_t request_id = request.id;
  server.engine().submit(body_of<control::CommitRequest>(request), peer_,
                         [&server, client_id, request_id](const control::CommitResult& result) {
                           if (ControlClient* client = server.find(client_id)) {
                             client->commit_done(request_id, result);
                           }
                         });
}

void ControlClient::commit_done(uint64_t request_id, const control::CommitResult& result) noexcept {
  if (dead_) return;
  commit_pending_ = false;
  busy_since_ns_ = monotonic_ns();  // the reply must drain in time from now on
  control::Response response;
  response.id = request_id;
  response.body = result;
  queue(control::encode_response(response));
  drive();  // the reply, then the requests that arrived meanwhile
}

void ControlClient::fail(ErrorCode code, const std::string& message) noexcept {
  if (closing_ || dead_) return;
  if (server_.log_allowed()) {
    LOG_INFO("control client pid %d uid %u dropped: %s: %s", peer_.pid, peer_.uid,
             control::error_code_name(code), message.c_str());
  }
  control::Response response;
  response.body = control::ProtocolError{code, message};
  queue(control::encode_response(response));
  closing_ = true;
  in_len_ = 0;
  busy_since_ns_ = monotonic_ns();
}

void ControlClient::queue(const std::string& frame) noexcept {
  if (dead_) return;
  if (frame.size() > kMaxControlMessageBytes) {
    // Every response is built to fit (the history is trimmed, the tables are
    // within their limits); a bigger one could not be read by any client.
    LOG_ERROR("a response of %zu bytes exceeds the %zu-byte message limit", frame.size(),
              kMaxControlMessageBytes);
    return fail(ErrorCode::kTooLarge, "the response would exceed the message limit of " +
                                          std::to_string(kMaxControlMessageBytes) + " bytes");
  }
  if (out_.size() - out_off_ + frame.size() > server_.limits().max_output_bytes) {
    if (server_.log_allowed()) {
      LOG_INFO("control client pid %d dropped: it does not read its replies", peer_.pid);
    }
    return server_.drop(this);
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  }
  out_ += frame;
  if (busy_since_ns_ == 0) busy_since_ns_ = monotonic_ns();
}

void ControlClient::flush() noexcept {
  while (out_off_ < out_.size()) {
    ssize_t n = ::send(fd_.get(), out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return server_.drop(this);
    }
    out_off_ += static_cast<size_t>(n);
  }
  if (closing_) return server_.drop(this);
  const bool sent_something = !out_.empty();
  out_.clear();
  out_off_ = 0;
  if (out_.capacity() > kKeptOutputBytes) std::string().swap(out_);  // a big reply is done
  if (in_len_ == 0) {
    busy_since_ns_ = 0;
    idle_since_ns_ = monotonic_ns();
  } else if (sent_something) {
    // A reply drained and pipelined requests wait: the clock runs for the
    // next one from now, so a client that reads each reply in time is never
    // cut off for the ones queued behind it.
    busy_since_ns_ = monotonic_ns();
  }
}

}  // namespace sluice
