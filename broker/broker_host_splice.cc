// The host side of listeners (see broker_host.h): OpenListeners, whose
// SPLICE entries the namespace helper opens inside the target namespace
// (namespace_helper.h) while the broker loop goes on, and OpenSockets, the
// fresh sockets on this side that SPLICE rules connect from.
//
// A request with SPLICE entries is answered in two steps: its HOST entries
// are opened at once, its SPLICE entries are sent to the helper, and the
// answer to the worker waits (splice_waiting()) until the helper's answer
// comes (serve_helper()) or kHelperAnswerTimeoutMs passes. Meanwhile the
// worker's channel is not read, so its answers stay in order, and sluiced
// serves its signals, the service manager and policy reloads as before.
// While a request of kHelperAnswerTimeoutMs ago or more is unanswered (the
// helper is stopped or stuck), later SPLICE entries fail at once with
// ETIMEDOUT instead of waiting again. So requests pile up only while the
// oldest is younger than that, which takes workers dying with requests out
// faster than the restart policy lets them: the channel has room.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/scm_rights.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "broker/broker_host.h"
#include "broker/listener_factory.h"
#include "broker/namespace_helper.h"

namespace sluice {
namespace {

/// What to do about a helper that does not answer: continue it, naming its
/// pid when sluiced knows it (`pid` > 0).
std::string continue_hint(int pid) {
  if (pid <= 0) return "is it stopped? Continue it with SIGCONT";
  const std::string p = std::to_string(pid);
  return "is it stopped? Continue it with: kill -CONT " + p + " (pid " + p + ", sluiced-netns)";
}

}  // namespace

void BrokerHost::serve_splice(int helper_channel, bool has_bind_cap,
                              uint32_t unprivileged_port_start, int helper_pid) {
  CHECK(helper_channel >= 0 && state_ == HostState::kAwaitHello);
  helper_channel_ = helper_channel;
  helper_pid_ = helper_pid;
  splice_policy_ = policy_;  // the same bind lines, the target namespace's kernel
  splice_policy_.has_bind_cap = has_bind_cap;
  splice_policy_.unprivileged_port_start = unprivileged_port_start;
}

int BrokerHost::splice_timeout_ms(uint64_t now_ns) const noexcept {
  if (!splice_wait_.active) return -1;
  if (now_ns >= splice_wait_.deadline_ns) return 0;
  return static_cast<int>((splice_wait_.deadline_ns - now_ns + 999999) / 1000000);
}

HandleStatus BrokerHost::answer_open_listeners(int fd) {
  std::memcpy(request_.get(), buf_.get(), sizeof(*request_));
  const wire::OpenListenersMsg& req = *request_;
  auto ok = validate_open_listeners(req, splice_served());
  if (!ok) return fail(HandleStatus::kViolation, "malformed OpenListeners: " + ok.error().message);

  std::memset(reply_.get(), 0, sizeof(*reply_));
  reply_->header = wire::header(wire::BrokerMsg::kListenersOpened, req.header.sequence);
  reply_->count = req.count;
  // One slot per entry, so that the SPLICE entries the helper opens land in
  // entry order among this side's. The broker's copies stay owned by the
  // reply until it is sent (or the worker is gone), then close.
  std::vector<UniqueFd> by_entry(req.count);
  // Rebinds first: the listeners they replace must carry SO_REUSEPORT before
  // their successors bind, here and in the target namespace alike. Only a
  // rebind the bind policy allows shares anything (one it refuses is
  // answered as refused below).
  for (uint32_t i = 0; i < req.count; ++i) {
    wire::ListenerSpec& spec = request_->entries[i];
    if ((spec.flags & wire::kListenerReplaces) == 0) continue;
    const bool splice = (spec.flags & wire::kListenerSplice) != 0;
    if (!check_bind(splice ? splice_policy_ : policy_, spec).allowed) {
      spec.flags &= ~wire::kListenerReplaces;
    }
  }
  escrow_.share_ports(std::span<wire::ListenerSpec>(request_->entries, req.count),
                      check_holders_on(host_tables_, target_tables_));
  bool any_splice = false;
  for (uint32_t i = 0; i < req.count; ++i) {
    if ((req.entries[i].flags & wire::kListenerSplice) != 0) {
      any_splice = true;  // asked below, all at once, inside the target namespace
      continue;
    }
    reply_->status[i] = open_listener_checked(policy_, req.entries[i], &by_entry[i]);
  }
  if (any_splice) {
    auto asked = ask_splice_entries(req);
    if (!asked) return fail(HandleStatus::kIoError, asked.error().message);
    if (*asked) {
      splice_wait_.by_entry = std::move(by_entry);
      return HandleStatus::kContinue;  // answered by serve_helper()
    }
  }
  return finish_open_listeners(fd, std::move(by_entry));
}

Result<bool> BrokerHost::ask_splice_entries(const wire::OpenListenersMsg& req) {
  // The bind policy first, here, under the target namespace's kernel facts:
  // the helper is asked only for what the policy allows.
  SpliceWait wait;
  for (uint32_t i = 0; i < req.count; ++i) {
    const wire::ListenerSpec& spec = req.entries[i];
    if ((spec.flags & wire::kListenerSplice) == 0) continue;
    BindDecision decision = check_bind(splice_policy_, spec);
    if (!decision.allowed) {
      LOG_INFO("refused %s in the target namespace: %s", describe_listener(spec).c_str(),
               decision.reason.c_str());
      reply_->status[i] = wire::kStatusPolicyDenied;
      continue;
    }
    wait.asked.push_back(spec);
    wait.index.push_back(i);
  }
  if (wait.asked.empty()) return false;
  const uint64_t now = monotonic_ns();
  if (helper_overdue(now)) {
    // The helper still owes the answer to a request of kHelperAnswerTimeoutMs
    // ago or more: it is stopped or stuck, and this one would only wait as
    // long again. Said once: auto-scan asks again every second.
    if (helper_refused_++ == 0) {
      LOG_ERROR(
          "the namespace helper still has not answered a request of %llu s ago, so listeners "
          "inside the target namespace fail with ETIMEDOUT until it does; %s",
          static_cast<unsigned long long>((now - helper_sent_ns_.front()) / 1000000000ULL),
          continue_hint(helper_pid_).c_str());
    }
    for (uint32_t i : wait.index) reply_->status[i] = ETIMEDOUT;
    return false;
  }
  // An earlier request may still be unanswered here, younger than the limit,
  // only when its worker died meanwhile: its answer comes first and is closed.
  auto sent = send_helper_request(helper_channel_, ++helper_sequence_, wait.asked);
  if (!sent) return Err(sent.error());
  helper_sent_ns_.push_back(now);
  wait.active = true;
  wait.deadline_ns = now + static_cast<uint64_t>(kHelperAnswerTimeoutMs) * 1000000;
  splice_wait_ = std::move(wait);
  return true;
}

bool BrokerHost::helper_overdue(uint64_t now_ns) const noexcept {
  if (helper_sent_ns_.empty()) return false;
  const uint64_t oldest = helper_sequence_ - helper_sent_ns_.size() + 1;
  return oldest <= helper_timed_out_ || now_ns - helper_sent_ns_.front() >=
                                            static_cast<uint64_t>(kHelperAnswerTimeoutMs) * 1000000;
}

uint64_t BrokerHost::heartbeat_ns(uint64_t heard_ns, uint64_t now_ns) const noexcept {
  // The worker's WorkerStatus reports wait unread behind the helper's answer,
  // at most kHelperAnswerTimeoutMs: the worker is waiting for sluiced.
  return splice_wait_.active ? now_ns : heard_ns;
}

HandleStatus BrokerHost::serve_helper(int fd, uint64_t now_ns) {
  if (fd < 0) splice_wait_ = {};  // the worker is gone: nobody waits for the answer
  // The helper answers in order, so the next answer is to the oldest request
  // not yet answered; only the newest one can have a request waiting for it.
  while (!helper_sent_ns_.empty()) {
    const uint64_t sequence = helper_sequence_ - helper_sent_ns_.size() + 1;
    const bool awaited = splice_wait_.active && sequence == helper_sequence_;
    const std::span<const wire::ListenerSpec> specs =
        awaited ? std::span<const wire::ListenerSpec>(splice_wait_.asked)
                : std::span<const wire::ListenerSpec>();
    std::vector<int32_t> status(specs.size(), 0);
    std::vector<UniqueFd> got;
    auto read = read_helper_answer(helper_channel_, sequence, specs, status, &got);
    if (!read) {
      if (read.error().err == EAGAIN) break;
      splice_wait_ = {};
      helper_failed_ = true;
      return fail(HandleStatus::kIoError, read.error().message);
    }
    const bool was_overdue = helper_overdue(now_ns);
    const uint64_t asked_ns = helper_sent_ns_.front();
    helper_sent_ns_.pop_front();
    if (!awaited) {
      // Nobody waits for it: it timed out, or its worker died meanwhile.
      // Its sockets are closed (read_helper_answer).
      if (!was_overdue) {
        LOG_DEBUG("the namespace helper answered a dead worker's request; its sockets closed");
        continue;
      }
      LOG_WARN(
          "the namespace helper answered a request %llu s after it was asked; the sockets it "
          "opened are closed, and SPLICE listeners can be opened again (%u more request(s) "
          "failed with ETIMEDOUT meanwhile)",
          static_cast<unsigned long long>((now_ns - asked_ns) / 1000000000ULL), helper_refused_);
      helper_refused_ = 0;
      continue;
    }
    for (size_t k = 0; k < splice_wait_.asked.size(); ++k) {
      reply_->status[splice_wait_.index[k]] = status[k];
      splice_wait_.by_entry[splice_wait_.index[k]] = std::move(got[k]);
    }
    return finish_wait(fd);
  }
  if (!splice_wait_.active || now_ns < splice_wait_.deadline_ns) return HandleStatus::kContinue;
  LOG_ERROR(
      "the namespace helper did not answer within %d s, so %zu listener(s) inside the target "
      "namespace fail with ETIMEDOUT and the commit that asked for them rolls back; %s",
      kHelperAnswerTimeoutMs / 1000, splice_wait_.asked.size(), continue_hint(helper_pid_).c_str());
  helper_timed_out_ = helper_sequence_;
  for (uint32_t i : splice_wait_.index) reply_->status[i] = ETIMEDOUT;
  return finish_wait(fd);
}

HandleStatus BrokerHost::finish_wait(int fd) {
  std::vector<UniqueFd> by_entry = std::move(splice_wait_.by_entry);
  splice_wait_ = {};
  return finish_open_listeners(fd, std::move(by_entry));
}

HandleStatus BrokerHost::finish_open_listeners(int fd, std::vector<UniqueFd> by_entry) {
  const wire::OpenListenersMsg& req = *request_;
  std::vector<UniqueFd> opened;
  opened.reserve(req.count);
  unsigned denied = 0;
  for (uint32_t i = 0; i < req.count; ++i) {
    if (reply_->status[i] == wire::kStatusPolicyDenied) ++denied;
    if (reply_->status[i] != wire::kStatusOk) continue;
    // sluiced keeps its own copy, so that a restarted worker gets it back.
    if (auto kept = escrow_.keep(by_entry[i].get(), req.entries[i], req.header.sequence); !kept) {
      LOG_WARN("%s: not kept for a worker restart: %s", describe_listener(req.entries[i]).c_str(),
               kept.error().message.c_str());
    }
    opened.push_back(std::move(by_entry[i]));
  }
  reply_->fd_count = static_cast<uint32_t>(opened.size());
  LOG_DEBUG("OpenListeners #%llu: %u entries, %zu opened, %u denied by policy, %zu failed",
            static_cast<unsigned long long>(req.header.sequence), req.count, opened.size(), denied,
            req.count - opened.size() - denied);
  return send_reply(fd, reply_.get(), sizeof(*reply_), std::move(opened));
}

HandleStatus BrokerHost::answer_open_sockets(int fd) {
  wire::OpenSocketsMsg msg;
  std::memcpy(&msg, buf_.get(), sizeof(msg));
  auto ok = validate_open_sockets(msg, splice_served());
  if (!ok) return fail(HandleStatus::kViolation, "malformed OpenSockets: " + ok.error().message);
  wire::SocketsOpenedMsg reply = {};
  reply.header = wire::header(wire::BrokerMsg::kSocketsOpened, msg.header.sequence);
  std::vector<UniqueFd> made;
  made.reserve(msg.count);
  for (uint32_t i = 0; i < msg.count; ++i) {
    auto sock = open_fresh_socket(static_cast<wire::WireFamily>(msg.family),
                                  static_cast<wire::WireProto>(msg.proto));
    if (!sock) {
      // Out of descriptors or memory: what was made goes out, with the errno.
      const int err = sock.error().err;
      reply.status = err >= 1 && err <= wire::kStatusMaxErrno ? err : EIO;
      break;
    }
    made.push_back(std::move(*sock));
  }
  reply.count = static_cast<uint32_t>(made.size());
  LOG_DEBUG("OpenSockets #%llu: %u of %u made (status %d)",
            static_cast<unsigned long long>(msg.header.sequence), reply.count, msg.count,
            reply.status);
  return send_reply(fd, &reply, sizeof(reply), std::move(made));
}

}  // namespace sluice
