// The control socket (see control_server.h): accepting within the bound on
// PeerQuery requests, admission once sluiced has answered, timeouts. A
// client's conversation is in control_session.cc.
#include "worker/control_server.h"

#include <sys/socket.h>

#include <cerrno>

#include "base/log.h"
#include "base/strings.h"

namespace sluice {

using control::ErrorCode;

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
  accept_clients();  // clients may have connected before the loop started
  return Ok();
}

void ControlServer::on_event(uint32_t /*events*/) noexcept {
  accept_clients();
}

void ControlServer::accept_clients() noexcept {
  accept_waiting_ = false;
  for (;;) {
    if (broker_.lost()) return;  // the worker stops
    if (broker_.peer_queries_open() >= kPeerQueryWindow) {
      // The bound: leave the rest in the kernel's backlog until sluiced has
      // answered. Whoever connects waits there; nobody is refused for it.
      accept_waiting_ = true;
      return;
    }
    int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // EMFILE and the like: the connections stay queued; try again at the
      // next tick rather than waiting for a new connection's edge.
      if (log_limit_.allow()) {
        LOG_WARN("accept on the control socket: %s", errno_text(errno).c_str());
      }
      accept_waiting_ = true;
      return;
    }
    UniqueFd client_fd(fd);
    struct ucred peer = {};
    socklen_t len = sizeof(peer);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
      if (log_limit_.allow()) LOG_WARN("SO_PEERCRED: %s", errno_text(errno).c_str());
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
    // Nothing is read from it or sent to it before the answer.
    const uint64_t client_id = raw->id;
    auto asked = broker_.peer_query(raw->fd(), [this, client_id](const PeerIdentity& identity) {
      identified(client_id, identity);
    });
    if (!asked) {
      // The broker channel failed; its end stops the worker (BrokerClient).
      drop(raw);
      return;
    }
    raw->await_identity();
  }
}

SessionCounts ControlServer::count_sessions(uint32_t uid) const noexcept {
  SessionCounts counts;
  for (const auto& client : clients_) {
    // A closing client is on its way out: its slot is free already.
    if (!client->admitted() || client->closing()) continue;
    ++counts.sessions;
    if (client->access() >= ControlAccess::kCommit) continue;
    ++counts.readers;
    if (client->peer().uid == uid) ++counts.readers_of_uid;
  }
  return counts;
}

void ControlServer::identified(uint64_t client_id, const PeerIdentity& identity) noexcept {
  if (ControlClient* client = find(client_id)) {
    client->identified(identity);
    const SessionCounts counts = count_sessions(identity.uid);
    const Admission decision = decide_admission(limits_, client->access(), counts);
    switch (decision) {
      case Admission::kAdmit:
        client->admit(hello_);
        break;
      case Admission::kNoAccess:
        // Dropped before a byte of it is read: nothing it sent reaches the
        // frame check, let alone the decoder.
        client->refuse(ErrorCode::kNotPermitted, "");
        break;
      case Admission::kFull:
      case Admission::kReadersFull:
      case Admission::kUidFull:
        client->refuse(ErrorCode::kBusy, busy_message(decision, limits_, counts, identity.uid));
        break;
    }
  }
  // An answer frees a place in the PeerQuery window.
  if (accept_waiting_) accept_clients();
}

void ControlServer::on_tick(uint64_t now_ns) noexcept {
  // A flood of refused or dropped clients that ended: say how many lines it
  // held back, so that the log's account of them is whole.
  log_limit_.note_held_back(now_ns, "control clients");
  for (size_t i = 0; i < clients_.size();) {
    ControlClient* client = clients_[i].get();
    if (client->timed_out(now_ns)) {
      if (client->closing() || client->reply_unread()) {
        // It did not read the error in time, or did not read a reply: an
        // error queued behind that would not drain either. Cut it off.
        if (log_limit_.allow()) {
          LOG_INFO("control client pid %d dropped: %s", client->peer().pid,
                   client->closing() ? "timed out" : "it did not read its replies in time");
        }
        drop(client);  // swaps the last client into slot i
        continue;
      }
      // Tell it why, then close; fail() restarts the clock for that reply.
      client->fail(ErrorCode::kTimeout,
                   "timed out: a request must arrive whole, and replies be read, within " +
                       std::to_string(limits_.request_timeout_ns / 1000000000ULL) +
                       " s; an idle connection is closed after " +
                       std::to_string(limits_.idle_timeout_ns / 1000000000ULL) + " s");
      client->drive();
      if (i < clients_.size() && clients_[i].get() != client) continue;  // dropped: slot reused
    }
    ++i;
  }
  // Clients whose share of the last wake-up ran out with requests waiting.
  std::vector<uint64_t> resume;
  for (const auto& client : clients_) {
    if (client->resume()) resume.push_back(client->id);
  }
  for (uint64_t id : resume) {
    if (ControlClient* client = find(id)) client->drive();
  }
  if (accept_waiting_) accept_clients();
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
  // Its fd is in a PeerQuery not answered yet (maybe not sent yet): closing
  // it now could send another socket in its place.
  CHECK(!client->awaiting_identity());
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
