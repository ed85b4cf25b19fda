// The pesto endpoint (see pesto_server.h): clients identified by sluiced,
// readers greeted beside each other, committers one at a time, each greeted
// with the tables in force, read without blocking, and committed through
// the commit engine.
#include "worker/pesto_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/strings.h"

namespace sluice {
namespace {

/// Limit: bytes read per read() call. An update is at most
/// pesto::kMaxUpdateBytes (about 28 KiB); 4 KiB reads keep the stack small
/// and the loop fair, and the decoder holds no more than one record.
constexpr size_t kReadChunk = 4096;
/// Limit: failure lines logged for one refused update. A table of 255 rules
/// may fail on every one; the first 16 say what is wrong, the history and
/// the audit log hold the rest.
constexpr size_t kMaxFailureLines = 16;

/// Returns the table of `pif` in `tables`, or nullptr.
const pesto::WireTable* find_table(const std::vector<pesto::WireTable>& tables, Pif pif) {
  for (const pesto::WireTable& t : tables) {
    if (t.pif == pif) return &t;
  }
  return nullptr;
}

/// Returns the rules of `a` that `b` lacks, counting duplicates (each rule
/// of `b` matches at most one of `a`).
std::vector<Rule> missing_from(const std::vector<Rule>& a, const std::vector<Rule>& b) {
  std::vector<bool> used(b.size(), false);
  std::vector<Rule> out;
  for (const Rule& rule : a) {
    bool found = false;
    for (size_t i = 0; i < b.size(); ++i) {
      if (!used[i] && b[i] == rule) {
        used[i] = true;
        found = true;
        break;
      }
    }
    if (!found) out.push_back(rule);
  }
  return out;
}

/// Returns the model rules of a wire table (none for nullptr).
std::vector<Rule> rules_of(const pesto::WireTable* table) {
  std::vector<Rule> out;
  if (table == nullptr) return out;
  out.reserve(table->rules.size());
  for (const pesto::WireRule& r : table->rules) out.push_back(r.rule);
  return out;
}

/// Returns "pid P (uid U)" for log lines.
std::string who(const struct ucred& peer) {
  return "pid " + std::to_string(peer.pid) + " (uid " + std::to_string(peer.uid) + ")";
}

/// Takes `session` out of `list` (one of the server's lists of sessions) and
/// returns it, or nullptr when `list` does not hold it.
template <typename List>
std::unique_ptr<PestoSession> take_session(List& list, const PestoSession* session) {
  auto it = std::find_if(list.begin(), list.end(),
                         [session](const auto& s) { return s.get() == session; });
  if (it == list.end()) return nullptr;
  std::unique_ptr<PestoSession> owned = std::move(*it);
  list.erase(it);
  return owned;
}

}  // namespace

TableSet rebase_update(const PestoOffer& offered, const std::vector<pesto::WireTable>& update,
                       const TableSet& current) {
  bool unchanged = true;
  for (const pesto::WireTable& t : offered.tables) {
    if (rules_of(&t) != current.of(t.pif).rules) unchanged = false;
  }
  TableSet out = current;
  for (const pesto::WireTable& t : offered.tables) {
    std::vector<Rule> sent = rules_of(&t);
    std::vector<Rule> wanted = rules_of(find_table(update, t.pif));
    std::vector<Rule>& rules = out.of(t.pif).rules;
    if (unchanged) {
      rules = std::move(wanted);
      continue;
    }
    // Someone else committed since the hello: apply only the client's edit.
    for (const Rule& gone : missing_from(sent, wanted)) {
      auto it = std::find(rules.begin(), rules.end(), gone);
      if (it != rules.end()) rules.erase(it);
    }
    for (const Rule& added : missing_from(wanted, sent)) {
      if (std::find(rules.begin(), rules.end(), added) == rules.end()) rules.push_back(added);
    }
  }
  return out;
}

PestoSession::PestoSession(PestoServer& server, UniqueFd fd, struct ucred peer)
    : server_(server), fd_(std::move(fd)), peer_(peer), decoder_({}) {}

void PestoSession::on_event(uint32_t /*events*/) noexcept {
  if (admitted_ns_ == 0 || done_) return;  // nothing is read before sluiced answers
  flush();
  if (!done_) read_update();
}

void PestoSession::identify(const PeerIdentity& identity) noexcept {
  peer_ = ucred{identity.pid, identity.uid, identity.gid};
  access_ = static_cast<ControlAccess>(identity.access);
  identified_ = true;
}

void PestoSession::greet(const std::string& hello, std::vector<Pif> pifs) noexcept {
  decoder_ = pesto::UpdateDecoder(std::move(pifs));
  out_ = hello;
  admitted_ns_ = monotonic_ns();
  flush();
  if (!done_) read_update();
}

void PestoSession::flush() noexcept {
  while (out_off_ < out_.size()) {
    ssize_t n = ::send(fd_.get(), out_.data() + out_off_, out_.size() - out_off_,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT resumes
    if (server_.log_allowed()) {
      LOG_INFO("pesto client %s went away before reading the tables: %s", who(peer_).c_str(),
               n < 0 ? errno_text(errno).c_str() : "connection closed");
    }
    done_ = true;
    server_.end(this);
    return;
  }
}

void PestoSession::read_update() noexcept {
  uint8_t buf[kReadChunk];
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    pesto::UpdateDecoder::Status status;
    if (n > 0) {
      status = decoder_.feed(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      status = decoder_.finish();
      if (status == pesto::UpdateDecoder::Status::kNeedMore) {
        // Closed without a byte: pesto only showed the tables.
        LOG_DEBUG("pesto client %s read the tables", who(peer_).c_str());
        done_ = true;
        server_.end(this);
        return;
      }
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      if (server_.log_allowed()) {
        LOG_WARN("pesto client %s: read: %s; nothing changed", who(peer_).c_str(),
                 errno_text(errno).c_str());
      }
      done_ = true;
      server_.end(this);
      return;
    }
    if (status == pesto::UpdateDecoder::Status::kNeedMore) continue;
    done_ = true;
    if (status == pesto::UpdateDecoder::Status::kInvalid) {
      server_.refuse(
          this, control::FailureKind::kInvalid,
          "malformed pesto update, refused; nothing changed: " + decoder_.failure().message);
      return;
    }
    if (access_ < ControlAccess::kCommit) {
      server_.refuse(this, control::FailureKind::kPolicyDenied,
                     "pesto client " + who(peer_) +
                         " may read the tables but not change them (control policy); its update "
                         "is refused; nothing changed. Give it `control commit` in the policy "
                         "file");
      return;
    }
    server_.commit(this, decoder_.tables());
    return;
  }
}

PestoServer::PestoServer(EventLoop& loop, UniqueFd listen_fd, CommitEngine& engine,
                         BrokerClient& broker)
    : loop_(loop), listen_fd_(std::move(listen_fd)), engine_(engine), broker_(broker) {}

PestoServer::~PestoServer() {
  if (session_) loop_.remove(session_->fd());
  for (const auto& s : queued_) loop_.remove(s->fd());
  for (const auto& s : others_) loop_.remove(s->fd());
  loop_.remove(listen_fd_.get());
}

Result<void> PestoServer::start() {
  auto added = loop_.add(listen_fd_.get(), EPOLLIN | EPOLLET, this);
  if (!added) return added;
  loop_.add_ticker(this);
  accept_next();  // clients may have connected before the loop started
  return Ok();
}

void PestoServer::on_event(uint32_t /*events*/) noexcept {
  accept_next();
}

void PestoServer::on_tick(uint64_t now_ns) noexcept {
  log_limit_.note_held_back(now_ns, "pesto clients");
  reader_drop_log_.note_held_back(now_ns, "dropped pesto readers");
  // Greeted sessions past the timeout: the committer served, and readers.
  std::vector<PestoSession*> late;
  if (session_ && session_->admitted_ns() != 0 &&
      elapsed_ns(now_ns, session_->admitted_ns()) > kPestoSessionTimeoutNs) {
    late.push_back(session_.get());
  }
  for (const auto& s : others_) {
    if (s->admitted_ns() != 0 && elapsed_ns(now_ns, s->admitted_ns()) > kPestoSessionTimeoutNs) {
      late.push_back(s.get());
    }
  }
  for (PestoSession* s : late) {
    if (log_allowed()) {
      LOG_WARN("pesto client %s dropped: no complete update within %llu s of the tables; %s",
               who(s->peer()).c_str(),
               static_cast<unsigned long long>(kPestoSessionTimeoutNs / 1000000000ULL),
               s == session_.get() ? "nothing changed, the next pesto client is served"
                                   : "it may only read the tables, and held up no one");
    }
    end(s);
  }
  if (accept_waiting_) accept_next();
}

void PestoServer::accept_next() noexcept {
  accept_waiting_ = false;
  while (open_count() < kMaxPestoConnections && !broker_.lost()) {
    if (broker_.peer_queries_open() >= kPeerQueryWindow) {
      accept_waiting_ = true;  // the control server's clients fill the window
      return;
    }
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (log_allowed()) LOG_WARN("accept on the pesto socket: %s", errno_text(errno).c_str());
      accept_waiting_ = true;  // EMFILE and the like: retry at the next tick
      return;
    }
    UniqueFd conn(fd);
    struct ucred peer = {};
    socklen_t len = sizeof(peer);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
      if (log_allowed()) LOG_WARN("SO_PEERCRED: %s", errno_text(errno).c_str());
      continue;
    }
    others_.push_back(std::make_unique<PestoSession>(*this, std::move(conn), peer));
    PestoSession* session = others_.back().get();
    if (!loop_.add(session->fd(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, session)) {
      loop_.retire(std::move(others_.back()));
      others_.pop_back();
      continue;
    }
    // Who it is, and what it may do, only sluiced can tell; nothing is sent
    // to it or read from it before the answer. A session is never dropped
    // while its query is open (no timeout runs before the greeting).
    auto asked = broker_.peer_query(session->fd(), [this, session](const PeerIdentity& identity) {
      on_identified(session, identity);
    });
    if (!asked) {
      // The broker channel failed; its end stops the worker. The fd was
      // never sent, so it may close now.
      retire(session);
      return;
    }
  }
}

void PestoServer::on_identified(PestoSession* session, const PeerIdentity& identity) noexcept {
  if (identity.status != 0 || identity.access == wire::kAccessNone) {
    if (log_allowed()) {
      const std::string why =
          identity.status != 0
              ? identity_failure(identity, "pesto")
              : "the control policy gives uid " + std::to_string(identity.uid) +
                    " no access; add a `control commit` line for it to the policy file";
      LOG_WARN("pesto client pid %d (uid %u) refused: %s", identity.pid, identity.uid, why.c_str());
    }
    end(session);
    return;
  }
  session->identify(identity);
  if (session->access() >= ControlAccess::kCommit) {
    // Committers go one at a time, in the order they connected.
    queued_.push_back(take_session(others_, session));
    serve_next_committer();
    accept_next();  // a committer refused there (a table too large) freed a slot
    return;
  }
  size_t readers = 0;
  for (const auto& s : others_) {
    if (s.get() != session && s->identified() && s->peer().uid == identity.uid) ++readers;
  }
  if (readers >= kMaxPestoReadersPerUid) {
    if (reader_drop_log_.allow()) {
      LOG_WARN(
          "pesto client %s dropped: that user may only read the tables, and already holds %zu "
          "pesto sessions (at most %zu at once)",
          who(session->peer()).c_str(), readers, kMaxPestoReadersPerUid);
    }
    end(session);
    return;
  }
  PestoOffer offer;
  auto hello = make_hello(&offer);
  if (!hello) {
    if (log_allowed()) {
      LOG_WARN("pesto client %s refused: %s", who(session->peer()).c_str(),
               hello.error().message.c_str());
    }
    end(session);
    return;
  }
  std::vector<Pif> pifs;
  for (const pesto::WireTable& t : offer.tables) pifs.push_back(t.pif);
  session->greet(*hello, std::move(pifs));
}

void PestoServer::serve_next_committer() noexcept {
  while (!session_ && !committing_ && !queued_.empty()) {
    session_ = std::move(queued_.front());
    queued_.pop_front();
    auto hello = make_hello(&offer_);
    if (!hello) {
      if (log_allowed()) {
        LOG_WARN("pesto client %s refused: %s", who(session_->peer()).c_str(),
                 hello.error().message.c_str());
      }
      retire(session_.get());
      continue;
    }
    std::vector<Pif> pifs;
    for (const pesto::WireTable& t : offer_.tables) pifs.push_back(t.pif);
    session_->greet(*hello, std::move(pifs));
  }
}

Result<std::string> PestoServer::make_hello(PestoOffer* offer) const {
  const uint32_t caps = pesto::caps_bits(engine_.caps());
  *offer = PestoOffer{};
  offer->generation = engine_.generation();
  // SPLICE (pif 3) is offered only where it is served: sluiced has a target
  // namespace. Both tables carry the server's caps (IFNAME included: pesto
  // then writes -T/-U rules as [*]%lo, the form the SPLICE table takes);
  // SCAN among them when the worker reads the side each table follows (the
  // control hello's one SCAN bit covers every table it lists).
  for (Pif pif : {Pif::kHost, Pif::kSplice}) {
    if (!engine_.facts().served[static_cast<size_t>(pif)]) continue;
    const Table& table = engine_.tables().of(pif);
    if (table.rules.size() > pesto::kMaxRules) {
      return Err("the " + std::string(pif_name(pif)) + " table holds " +
                 std::to_string(table.rules.size()) +
                 " rules, and pesto's protocol carries at most 255 per table; list and edit it "
                 "with sluicectl");
    }
    pesto::WireTable out;
    out.pif = pif;
    out.caps = caps;
    for (const Rule& rule : table.rules) out.rules.push_back({rule, record_of(rule)});
    offer->tables.push_back(std::move(out));
  }
  return pesto::encode_hello(offer->tables);
}

void PestoServer::commit(PestoSession* session, std::vector<pesto::WireTable> update) noexcept {
  const struct ucred peer = session->peer();
  committing_ = true;  // the next client waits for these tables
  end(session);
  submit(std::move(update), peer, 0);
}

void PestoServer::submit(std::vector<pesto::WireTable> update, struct ucred peer,
                         int attempt) noexcept {
  control::CommitRequest request;
  request.tables = rebase_update(offer_, update, engine_.tables());
  request.expected_generation = engine_.generation();
  request.comment = "pesto update from pid " + std::to_string(peer.pid);
  // Only while no other commit runs or waits: one would change the tables
  // this edit is compared with (and is retried against, when stale).
  if (engine_.quiet() && request.tables == engine_.tables() && engine_.unbound() == 0) {
    // An update that sends the tables back as they are (and none of their
    // best-effort ports waits for a bind to be tried again) is no commit, as
    // sluicectl sends none: no new generation, audit record or history
    // entry, and no stale generation for a concurrent sluicectl.
    remember(update);
    LOG_INFO("pesto update from %s changes nothing: not committed; generation %llu still serves",
             who(peer).c_str(), static_cast<unsigned long long>(engine_.generation()));
    committing_ = false;
    serve_next_committer();
    accept_next();
    return;
  }
  if (engine_.generation() != offer_.generation) {
    LOG_INFO("pesto update from %s: the tables changed since its hello; applying its edit to %s",
             who(peer).c_str(), "the tables in force");
  }
  engine_.submit(
      std::move(request), peer, [this, update, peer, attempt](const control::CommitResult& result) {
        bool stale = !result.applied && !result.failures.empty() &&
                     result.failures.front().kind == control::FailureKind::kStale;
        if (stale && attempt + 1 < kPestoStaleRetries) {
          submit(update, peer, attempt + 1);
          return;
        }
        if (result.applied) {
          remember(update);
          LOG_INFO(
              "pesto update from %s applied: generation %llu, %u kept, %u opened, "
              "%u closed",
              who(peer).c_str(), static_cast<unsigned long long>(result.generation), result.kept,
              result.opened, result.closed);
        } else {
          LOG_WARN(
              "pesto update from %s refused, nothing changed (%zu failure%s; the audit "
              "log's commit record has them all):",
              who(peer).c_str(), result.failures.size(), result.failures.size() == 1 ? "" : "s");
          for (size_t i = 0; i < result.failures.size() && i < kMaxFailureLines; ++i) {
            LOG_WARN("  %s", result.failures[i].message.c_str());
          }
        }
        committing_ = false;
        serve_next_committer();
        accept_next();
      });
}

void PestoServer::remember(const std::vector<pesto::WireTable>& update) noexcept {
  std::vector<pesto::WireRule> next;
  auto in_force = [this](const Rule& rule) {
    for (const Table& table : engine_.tables().tables) {
      if (std::find(table.rules.begin(), table.rules.end(), rule) != table.rules.end()) {
        return true;
      }
    }
    return false;
  };
  auto keep = [&](const pesto::WireRule& wr) {
    // Only spellings other than the canonical one need remembering.
    if (wr.record == pesto::encode_rule(wr.rule) || !in_force(wr.rule)) return;
    for (const pesto::WireRule& have : next) {
      if (have.rule == wr.rule) return;
    }
    next.push_back(wr);
  };
  for (const pesto::WireTable& table : update) {
    for (const pesto::WireRule& wr : table.rules) keep(wr);
  }
  for (const pesto::WireRule& wr : remembered_) keep(wr);
  remembered_ = std::move(next);
}

pesto::RuleRecord PestoServer::record_of(const Rule& rule) const noexcept {
  for (const pesto::WireRule& wr : remembered_) {
    if (wr.rule == rule) return wr.record;
  }
  return pesto::encode_rule(rule);
}

void PestoServer::refuse(PestoSession* session, control::FailureKind kind,
                         const std::string& message) noexcept {
  const struct ucred peer = session->peer();
  if (log_allowed()) LOG_WARN("pesto client %s: %s", who(peer).c_str(), message.c_str());
  control::Failure failure;
  failure.kind = kind;
  failure.pif = Pif::kHost;
  failure.message = message;
  // Recorded like a refused commit (audit, history); the next session need
  // not wait for it, since nothing changes.
  engine_.submit_refused(peer, "pesto update from pid " + std::to_string(peer.pid), {failure},
                         [](const control::CommitResult&) {});
  end(session);
}

bool PestoServer::retire(PestoSession* session) noexcept {
  std::unique_ptr<PestoSession> owned;
  if (session_ && session_.get() == session) owned = std::move(session_);
  if (!owned) owned = take_session(queued_, session);
  if (!owned) owned = take_session(others_, session);
  if (!owned) return false;  // ended already
  loop_.remove(owned->fd());
  loop_.retire(std::move(owned));
  return true;
}

void PestoServer::end(PestoSession* session) noexcept {
  if (!retire(session)) return;
  serve_next_committer();
  accept_next();
}

}  // namespace sluice
