// The worker's side of worker restarts on the broker channel (see
// broker_client.h): Resume and ReclaimListeners at start-up, StoreState
// after every change of the listeners the worker holds.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "base/log.h"
#include "base/scm_rights.h"
#include "worker/broker_client.h"

namespace sluice {

ListenerKey from_wire(const wire::ListenerSpec& spec) noexcept {
  ListenerKey key;
  key.pif = (spec.flags & wire::kListenerSplice) != 0 ? Pif::kSplice : Pif::kHost;
  key.proto = spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp) ? Proto::kTcp : Proto::kUdp;
  std::memcpy(key.addr.data(), spec.addr, 16);
  std::memcpy(key.ifname.data(), spec.ifname, wire::kIfNameSize);
  key.ifname[wire::kIfNameSize - 1] = '\0';
  key.dual_stack = (spec.flags & wire::kListenerDualStack) != 0;
  key.port = spec.port;
  return key;
}

Result<ReceivedMessage> BrokerClient::ask_blocking(const void* msg, size_t len, void* buf,
                                                   size_t cap, size_t max_fds,
                                                   wire::BrokerMsg reply, const char* name) {
  auto sent = send_message(channel_.get(), msg, len, {});
  if (!sent)
    return Err(sent.error().err,
               std::string("asking sluiced for ") + name + ": " + sent.error().message);
  auto got = receive_message(channel_.get(), buf, cap, max_fds);
  if (!got)
    return Err(got.error().err, std::string("reading ") + name + ": " + got.error().message);
  if (got->len == 0) return Err(EPIPE, std::string("sluiced closed the channel before ") + name);
  wire::WireHeader header;
  if (got->len < sizeof(header)) return Err(EPROTO, std::string("malformed ") + name);
  std::memcpy(&header, buf, sizeof(header));
  if (header.magic != wire::kBrokerWireMagic || header.type != static_cast<uint32_t>(reply) ||
      header.sequence != sequence_) {
    return Err(EPROTO, std::string("malformed ") + name + " from sluiced");
  }
  return got;
}

Result<Resumed> BrokerClient::resume() {
  Resumed out;
  wire::ResumeMsg msg = {};
  msg.header = wire::header(wire::BrokerMsg::kResume, ++sequence_);
  wire::ResumeReplyMsg reply;
  auto got = ask_blocking(&msg, sizeof(msg), &reply, sizeof(reply), 1,
                          wire::BrokerMsg::kResumeReply, "ResumeReply");
  if (!got) return Err(got.error());
  if (got->len != sizeof(reply) || reply.reserved != 0 ||
      reply.blob_bytes > wire::kMaxStateBlobBytes || reply.listeners > wire::kMaxEscrowListeners ||
      got->fds.size() != (reply.blob_bytes != 0 ? 1u : 0u)) {
    return Err(EPROTO, "malformed ResumeReply from sluiced");
  }
  if (reply.blob_bytes != 0) out.blob = std::move(got->fds[0]);
  out.blob_bytes = reply.blob_bytes;
  auto batch = std::make_unique<wire::ListenersReclaimedMsg>();
  // Bounded: every batch but the last carries at least one listener, and
  // sluiced said how many there are.
  for (size_t batches = 0;; ++batches) {
    if (batches > reply.listeners) return Err(EPROTO, "sluiced sent more batches than listeners");
    wire::ReclaimListenersMsg ask = {};
    ask.header = wire::header(wire::BrokerMsg::kReclaimListeners, ++sequence_);
    auto answer =
        ask_blocking(&ask, sizeof(ask), batch.get(), sizeof(*batch), wire::kMaxListenersPerMessage,
                     wire::BrokerMsg::kListenersReclaimed, "ListenersReclaimed");
    if (!answer) return Err(answer.error());
    if (answer->len != sizeof(*batch) || batch->count != answer->fds.size() ||
        batch->count > wire::kMaxListenersPerMessage || (batch->flags & ~wire::kReclaimLast) != 0 ||
        ((batch->flags & wire::kReclaimLast) == 0 && batch->count == 0)) {
      return Err(EPROTO, "malformed ListenersReclaimed from sluiced");
    }
    for (uint32_t i = 0; i < batch->count; ++i) {
      ListenerKey key = from_wire(batch->specs[i]);
      UniqueFd fd = std::move(answer->fds[i]);
      if (auto ok = verify_listener(fd.get(), key); !ok) {
        ++out.refused;
        continue;  // closed here; sluiced closes its copy at the next StoreState
      }
      out.listeners.emplace_back(key, std::move(fd));
    }
    if ((batch->flags & wire::kReclaimLast) != 0) break;
  }
  return out;
}

void BrokerClient::store_state(UniqueFd blob, UniqueFd cookies, uint64_t sequence,
                               uint64_t generation, uint32_t listeners) noexcept {
  if (lost_) return;
  UnsentState state;
  state.msg = {};
  state.msg.header = wire::header(wire::BrokerMsg::kStoreState, sequence);
  state.msg.generation = generation;
  state.msg.listeners = listeners;
  state.blob = std::move(blob);
  state.cookies = std::move(cookies);
  unsent_state_ = std::move(state);  // replaces an older one still waiting
  send_state();
}

void BrokerClient::send_state() noexcept {
  if (lost_ || !unsent_state_) return;
  const int fds[] = {unsent_state_->blob.get(), unsent_state_->cookies.get()};
  // ETOOMANYREFS: the kernel holds more descriptors in flight for this user
  // than the worker's RLIMIT_NOFILE, other processes' included. That passes
  // as they are received, and says nothing about sluiced: the state waits
  // and goes with the next change (or when the channel has room again).
  auto sent = send_message(channel_.get(), &unsent_state_->msg, sizeof(unsent_state_->msg), fds,
                           MSG_DONTWAIT);
  if (!sent) {
    const int err = sent.error().err;
    if (err == ETOOMANYREFS) {
      if (state_log_.allow()) {
        LOG_WARN("StoreState waits: %s; it goes to sluiced with the next change",
                 sent.error().message.c_str());
      }
    } else if (err == EAGAIN || err == EWOULDBLOCK) {
      watch_for_room(true);  // never wait for sluiced: the loop says when there is room
    } else {
      lose("sending StoreState: " + sent.error().message);
    }
    return;
  }
  unsent_state_.reset();  // sluiced holds its own copies now
}

}  // namespace sluice
