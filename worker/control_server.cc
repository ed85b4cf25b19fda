#include "worker/control_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <type_traits>
#include <variant>

#include "base/log.h"
#include "base/strings.h"
#include "schema/frame.h"

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

}  // namespace

// The dispatch table: every request a client may make, where in the
// conversation it may come, the access the control policy must grant for it
// (policy/control_policy.h), and its handler. A request that is out of
// place, or not permitted, fails the client and closes its connection.
const ControlClient::Route ControlClient::kRoutes[5] = {
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
};

const ControlClient::Route* ControlClient::find_route(size_t kind) noexcept {
  for (const Route& route : kRoutes) {
    if (route.kind == kind) return &route;
  }
  return nullptr;
}

ControlClient::ControlClient(ControlServer& server, UniqueFd fd, struct ucred peer, uint64_t now_ns)
    : server_(server), fd_(std::move(fd)), peer_(peer), idle_since_ns_(now_ns) {
  // Start with 4 KiB: every request but a large commit fits without growing.
  in_.resize(512);
}

bool ControlClient::timed_out(uint64_t now_ns) const noexcept {
  const ControlLimits& limits = server_.limits();
  if (commit_pending_) return false;  // the server is the slow side, not the client
  // `now_ns` was read before this tick's tickers ran; a commit finished by an
  // earlier ticker may have stamped a later time. Never let that wrap around.
  auto overdue = [now_ns](uint64_t since, uint64_t limit) {
    return now_ns > since && now_ns - since > limit;
  };
  if (busy_since_ns_ != 0) return overdue(busy_since_ns_, limits.request_timeout_ns);
  return overdue(idle_since_ns_, limits.idle_timeout_ns);
}

void ControlClient::on_event(uint32_t events) noexcept {
  if (dead_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_input();
  if (!dead_) flush();
}

void ControlClient::reserve_input(size_t bytes) noexcept {
  size_t words = (bytes + 7) / 8;
  if (words > in_.size()) in_.resize(words);
}

void ControlClient::read_input() noexcept {
  while (!dead_ && !closing_) {
    size_t cap = in_.size() * 8;
    if (in_len_ == cap) {
      // Grow geometrically up to the frame limit; check_frame refuses any
      // frame above the limit before we ever get here with a full buffer.
      size_t want = cap * 2 > kMaxControlMessageBytes ? kMaxControlMessageBytes : cap * 2;
      if (want <= cap) return fail(ErrorCode::kTooLarge, "request exceeds the message limit");
      reserve_input(want);
      cap = in_.size() * 8;
    }
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
    process_frames();
  }
}

void ControlClient::identified(const PeerIdentity& identity) noexcept {
  if (dead_) return;
  identified_ = true;
  identity_ = identity;
  // From now on, logs and audit records carry the ids the broker saw.
  peer_.pid = identity.pid;
  peer_.uid = identity.uid;
  peer_.gid = identity.gid;
  LOG_DEBUG("control client pid %d uid %u gid %u: access %s (policy line %u)", peer_.pid, peer_.uid,
            peer_.gid, access_name(static_cast<ControlAccess>(identity.access)), identity.line);
  process_frames();
  if (!dead_) flush();
}

bool ControlClient::permitted(ControlAccess needed, const char* what) noexcept {
  const auto access = static_cast<ControlAccess>(identity_.access);
  if (access >= needed) return true;
  std::string why;
  if (identity_.status == ERANGE) {
    why = "the client process has more than " + std::to_string(kMaxPeerGroups) +
          " supplementary groups, too many to check against the control policy; run sluicectl "
          "with fewer groups";
  } else if (identity_.status != 0) {
    why = "sluiced could not read the client's credentials (" + errno_text(identity_.status) +
          "); try again";
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
  fail(ErrorCode::kNotPermitted, std::string("permission denied: ") + what + " needs " +
                                     access_name(needed) + " access, and " + why);
  return false;
}

void ControlClient::process_frames() noexcept {
  while (!dead_ && !closing_ && !commit_pending_ && identified_ && in_len_ > 0) {
    const uint8_t* data = reinterpret_cast<const uint8_t*>(in_.data());
    FrameCheck check = check_frame(data, in_len_, kMaxControlMessageBytes);
    if (check.status == FrameStatus::kInvalid) {
      return fail(frame_error_code(check.error), check.message);
    }
    if (check.status == FrameStatus::kNeedMore) {
      if (check.frame_bytes > in_.size() * 8) reserve_input(check.frame_bytes);
      return;
    }
    auto request = control::decode_request(data, check.frame_bytes);
    // Consume the frame before handling, so the handler sees a clean buffer.
    std::memmove(in_.data(), data + check.frame_bytes, in_len_ - check.frame_bytes);
    in_len_ -= check.frame_bytes;
    if (!request) return fail(ErrorCode::kMalformed, request.error().message);
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
  response.body = control::State{engine.generation(), engine.digest(), engine.tables()};
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
  process_frames();  // requests that arrived meanwhile
  if (!dead_) flush();
}

void ControlClient::fail(ErrorCode code, const std::string& message) noexcept {
  if (closing_ || dead_) return;
  LOG_INFO("control client pid %d uid %u dropped: %s: %s", peer_.pid, peer_.uid,
           control::error_code_name(code), message.c_str());
  control::Response response;
  response.body = control::ProtocolError{code, message};
  queue(control::encode_response(response));
  closing_ = true;
  in_len_ = 0;
  busy_since_ns_ = monotonic_ns();
}

void ControlClient::queue(const std::string& frame) noexcept {
  if (dead_) return;
  if (out_.size() - out_off_ + frame.size() > server_.limits().max_output_bytes) {
    LOG_INFO("control client pid %d dropped: it does not read its replies", peer_.pid);
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
  if (in_len_ == 0) {
    busy_since_ns_ = 0;
    idle_since_ns_ = monotonic_ns();
  }
}

ControlServer::ControlServer(EventLoop& loop, UniqueFd listen_fd, CommitEngine& engine,
                             control::ServerHello hello, ControlLimits limits, BrokerClient& broker,
                             ControlPolicy policy)
    : loop_(loop),
      listen_fd_(std::move(listen_fd)),
      engine_(engine),
      hello_(std::move(hello)),
      limits_(limits),
      broker_(broker),
      policy_(std::move(policy)) {}

ControlServer::~ControlServer() {
  for (auto& client : clients_) loop_.remove(client->fd());
  loop_.remove(listen_fd_.get());
}

Result<void> ControlServer::start() {
  auto added = loop_.add(listen_fd_.get(), EPOLLIN | EPOLLET, this);
  if (!added) return added;
  loop_.add_ticker(this);
  on_event(EPOLLIN);  // clients may have connected before the loop started
  return Ok();
}

void ControlServer::on_event(uint32_t /*events*/) noexcept {
  for (;;) {
    int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && log_limit_.allow()) {
        LOG_WARN("accept on the control socket: %s", errno_text(errno).c_str());
      }
      return;
    }
    UniqueFd client_fd(fd);
    struct ucred peer = {};
    socklen_t len = sizeof(peer);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
      if (log_limit_.allow()) LOG_WARN("SO_PEERCRED: %s", errno_text(errno).c_str());
      continue;
    }
    if (clients_.size() >= limits_.max_clients) {
      // Refuse with a reason rather than leaving the client to time out.
      control::Response response;
      response.body = control::ProtocolError{
          ErrorCode::kBusy, "the server already has " + std::to_string(clients_.size()) +
                                " control clients connected; retry later"};
      std::string frame = control::encode_response(response);
      (void)::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (log_limit_.allow()) LOG_WARN("control client pid %d refused: too many clients", peer.pid);
      continue;
    }
    auto client =
        std::make_unique<ControlClient>(*this, std::move(client_fd), peer, monotonic_ns());
    ControlClient* raw = client.get();
    raw->slot = clients_.size();
    raw->id = next_client_id_++;
    clients_.push_back(std::move(client));
    if (!loop_.add(raw->fd(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, raw)) {
      drop(raw);
      continue;
    }
    LOG_DEBUG("control client pid %d connected", peer.pid);
    // Who it is, and what it may do, only sluiced can tell (control_policy.h).
    uint64_t client_id = raw->id;
    auto asked = broker_.peer_query(raw->fd(), [this, client_id](const PeerIdentity& identity) {
      if (ControlClient* c = find(client_id)) c->identified(identity);
    });
    if (!asked) {
      // The broker channel failed; its end stops the worker (BrokerClient).
      drop(raw);
      return;
    }
    // The server speaks first.
    control::Response greeting;
    greeting.body = hello_;
    raw->queue(control::encode_response(greeting));
    raw->on_event(EPOLLOUT);
  }
}

void ControlServer::on_tick(uint64_t now_ns) noexcept {
  for (size_t i = 0; i < clients_.size();) {
    ControlClient* client = clients_[i].get();
    if (client->timed_out(now_ns)) {
      if (client->closing()) {
        // It did not even read the error in time: cut it off.
        LOG_INFO("control client pid %d dropped: timed out", client->peer().pid);
        drop(client);  // swaps the last client into slot i
        continue;
      }
      // Tell it why, then close; fail() restarts the clock for that reply.
      client->fail(ErrorCode::kTimeout,
                   "timed out: a request must arrive whole, and replies be read, within " +
                       std::to_string(limits_.request_timeout_ns / 1000000000ULL) +
                       " s; an idle connection is closed after " +
                       std::to_string(limits_.idle_timeout_ns / 1000000000ULL) + " s");
      client->on_event(EPOLLOUT);
      if (i < clients_.size() && clients_[i].get() != client) continue;  // dropped: slot reused
    }
    ++i;
  }
}

ControlClient* ControlServer::find(uint64_t id) noexcept {
  for (auto& client : clients_) {
    if (client->id == id) return client.get();
  }
  return nullptr;
}

void ControlServer::drop(ControlClient* client) noexcept {
  size_t slot = client->slot;
  if (slot >= clients_.size() || clients_[slot].get() != client) return;  // already dropped
  client->mark_dead();
  loop_.remove(client->fd());
  loop_.retire(std::move(clients_[slot]));
  if (slot != clients_.size() - 1) {
    clients_[slot] = std::move(clients_.back());
    clients_[slot]->slot = slot;
  }
  clients_.pop_back();
}

}  // namespace sluice
