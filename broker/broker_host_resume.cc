// The host side of worker restarts (see broker_host.h and listener_escrow.h):
// StoreState into the escrow, and Resume and ReclaimListeners out of it for
// the worker that replaces one that died, and what a dead worker sent last.
#include <sys/socket.h>

#include <cstring>

#include "base/log.h"
#include "base/scm_rights.h"
#include "broker/broker_host.h"

namespace sluice {

Result<void> validate_store_state(const wire::StoreStateMsg& msg) {
  if (msg.reserved != 0) return Err("reserved field is " + std::to_string(msg.reserved));
  return Ok();
}

Result<void> validate_resume(const wire::ResumeMsg& msg) {
  if (msg.reserved[0] != 0 || msg.reserved[1] != 0) return Err("reserved fields are not 0");
  return Ok();
}

void BrokerHost::new_worker() noexcept {
  state_ = HostState::kAwaitHello;
  pending_len_ = 0;
  pending_fds_.clear();
  fds_.clear();
  splice_wait_ = {};  // the helper's answer, when it comes, is closed (serve_helper)
  resume_ = false;
  // A PolicyReload that waits was for the dead worker. The new one was
  // started with the policy text in force (kPolicyText at its launch), and
  // read that memfd to its end: sending it again would make it re-check its
  // tables for nothing and, its offset shared, read 0 bytes of it.
  push_fd_ = -1;
  push_length_ = 0;
  // The --netns process stays exited: the new worker is told too.
  exit_unsent_ = target_exited_;
  // The heartbeat counts from the new worker's first report; readiness was
  // announced once and stays announced (serve.cc, sd_notify.h).
  report_.at_ns = 0;
  escrow_.new_worker();
}

HandleStatus BrokerHost::drain_dead_worker(int fd) {
  // StoreState and WorkerStatus come only from a ready worker, and requests
  // dropped unread in kReady change no state; before it, a dropped request
  // would leave the state behind what follows it, so nothing is read.
  if (state_ != HostState::kReady) return HandleStatus::kContinue;
  // Nothing waits for an answer any more.
  pending_len_ = 0;
  pending_fds_.clear();
  for (size_t i = 0; i < kMaxDeadWorkerMessages; ++i) {
    fds_.clear();
    auto got = receive_message(fd, buf_.get(), wire::kMaxWireMessage + 1, 2, MSG_DONTWAIT,
                               RefusedFds::kCloseWithoutLinger);
    if (!got) {
      const Error& e = got.error();
      if (e.err == EPROTO || e.err == EMSGSIZE) return fail(HandleStatus::kViolation, e.message);
      return HandleStatus::kContinue;  // EAGAIN: all read; or the channel is gone
    }
    if (got->len == 0) return HandleStatus::kContinue;  // its end closed: all read
    len_ = got->len;
    fds_ = std::move(got->fds);
    auto type = check_envelope({buf_.get(), len_}, fds_.size(), state_);
    if (!type) {
      close_without_linger(fds_);
      return fail(HandleStatus::kViolation, type.error().message);
    }
    HandleStatus status = HandleStatus::kContinue;
    if (*type == wire::BrokerMsg::kStoreState) {
      status = answer_store_state(fd);
    } else if (*type == wire::BrokerMsg::kWorkerStatus) {
      status = answer_worker_status(fd);
    } else {
      close_without_linger(fds_);  // a request nobody waits for the answer of
    }
    if (status != HandleStatus::kContinue) return status;
  }
  return HandleStatus::kContinue;
}

HandleStatus BrokerHost::answer_store_state(int /*fd*/) {
  wire::StoreStateMsg msg;
  std::memcpy(&msg, buf_.get(), sizeof(msg));
  auto ok = validate_store_state(msg);
  if (!ok) {
    close_without_linger(fds_);
    return fail(HandleStatus::kViolation, "malformed StoreState: " + ok.error().message);
  }
  // fds_[0] is the blob, fds_[1] the cookie list: memfds, whose close never
  // lingers; anything else fails the checks and is closed without lingering.
  UniqueFd blob = std::move(fds_[0]);
  UniqueFd cookies = std::move(fds_[1]);
  fds_.clear();
  auto stored = escrow_.store(msg, std::move(blob), std::move(cookies));
  if (!stored) {
    return fail(HandleStatus::kViolation, "malformed StoreState: " + stored.error().message);
  }
  return HandleStatus::kContinue;
}

HandleStatus BrokerHost::answer_resume(int fd) {
  wire::ResumeMsg msg;
  std::memcpy(&msg, buf_.get(), sizeof(msg));
  auto ok = validate_resume(msg);
  if (!ok) return fail(HandleStatus::kViolation, "malformed Resume: " + ok.error().message);
  auto blob = escrow_.blob_copy();
  if (!blob) return fail(HandleStatus::kIoError, "copying the state blob: " + blob.error().message);
  wire::ResumeReplyMsg reply = {};
  reply.header = wire::header(wire::BrokerMsg::kResumeReply, msg.header.sequence);
  reply.blob_bytes = blob->valid() ? escrow_.blob_bytes() : 0;
  reply.listeners = static_cast<uint32_t>(escrow_.size());
  state_ = HostState::kReclaiming;
  LOG_INFO("the new worker takes over %zu listener%s and a state blob of %llu bytes",
           escrow_.size(), escrow_.size() == 1 ? "" : "s",
           static_cast<unsigned long long>(reply.blob_bytes));
  std::vector<UniqueFd> fds;
  if (blob->valid()) fds.push_back(std::move(*blob));
  return send_reply(fd, &reply, sizeof(reply), std::move(fds));
}

HandleStatus BrokerHost::answer_reclaim(int fd) {
  wire::ResumeMsg msg;  // the same layout: a header and two reserved words
  static_assert(sizeof(wire::ResumeMsg) == sizeof(wire::ReclaimListenersMsg));
  std::memcpy(&msg, buf_.get(), sizeof(msg));
  auto ok = validate_resume(msg);
  if (!ok) {
    return fail(HandleStatus::kViolation, "malformed ReclaimListeners: " + ok.error().message);
  }
  auto reply = std::make_unique<wire::ListenersReclaimedMsg>();
  std::vector<UniqueFd> fds;
  auto batch = escrow_.next_batch(reply.get(), &fds);
  if (!batch) {
    return fail(HandleStatus::kIoError, "copying escrowed listeners: " + batch.error().message);
  }
  reply->header = wire::header(wire::BrokerMsg::kListenersReclaimed, msg.header.sequence);
  if ((reply->flags & wire::kReclaimLast) != 0) state_ = HostState::kReady;
  return send_reply(fd, reply.get(), sizeof(*reply), std::move(fds));
}

}  // namespace sluice
