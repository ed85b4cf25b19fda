// The operations owed to the service manager's fd store (see
// fd_store_queue.h).
#include "broker/fd_store_queue.h"

#include <cerrno>

#include "base/log.h"
#include "broker/fd_store.h"

namespace sluice {
namespace {

/// What a dropped put (`put`) or remove of `key` means for the next start
/// of sluiced, for its log line.
const char* consequence(const FdStoreKey& key, bool put) noexcept {
  if (key.state) {
    return put ? "a restart of sluiced resumes from an older state"
               : "a restart of sluiced keeps the newest state and closes this one";
  }
  return put ? "a restart of sluiced binds this port again"
             : "a restart of sluiced gets this listener back and closes it once unused";
}

}  // namespace

std::string FdStoreKey::name() const {
  return state ? stored_state_name(id) : stored_listener_name(id, spec);
}

std::string FdStoreKey::describe() const {
  if (state) return "the worker's state " + std::to_string(id);
  const bool tcp = spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp);
  return std::string("the listener of ") + (tcp ? "TCP" : "UDP") + " port " +
         std::to_string(spec.port);
}

Result<void> FdStoreQueue::put(const FdStoreKey& key, int fd) {
  if (ops_.size() >= max_ops_) {
    return Err(ENOSPC, std::to_string(ops_.size()) + " fd store operations wait already");
  }
  PutIndex& index = puts_of(key);
  if (index.count(key.id) != 0) return Err(EEXIST, key.describe() + " waits to be stored already");
  ops_.push_back(Op{key, true, fd});
  index.emplace(key.id, std::prev(ops_.end()));
  return Ok();
}

Result<void> FdStoreQueue::remove(const FdStoreKey& key) {
  PutIndex& index = puts_of(key);
  if (auto it = index.find(key.id); it != index.end()) {
    // The manager never got it: the put and the remove both go.
    ops_.erase(it->second);
    index.erase(it);
    return Ok();
  }
  if (ops_.size() >= max_ops_) {
    return Err(ENOSPC, std::to_string(ops_.size()) + " fd store operations wait already");
  }
  ops_.push_back(Op{key, false, -1});
  return Ok();
}

FdStoreFlush FdStoreQueue::flush(int notify_fd, uint64_t now_ns) noexcept {
  FdStoreFlush out;
  while (!ops_.empty()) {
    const Op& op = ops_.front();
    const std::string name = op.key.name();
    Result<void> sent =
        op.put ? fd_store_put(notify_fd, name, op.fd) : fd_store_remove(notify_fd, name);
    if (!sent) {
      const int err = sent.error().err;
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
        // The manager's queue (EAGAIN) or the kernel's memory (ENOBUFS) is
        // full: this one stays first, and the rest after it.
        out.blocked = true;
        if (err == ENOBUFS) retry_at_ns_ = now_ns + kFdStoreRetryNs;
        break;
      }
      if (out.dropped == 0) {
        LOG_WARN("fd store: %s %s the service manager's store: %s; dropped: %s",
                 op.key.describe().c_str(), op.put ? "cannot go into" : "cannot be removed from",
                 sent.error().message.c_str(), consequence(op.key, op.put));
      }
      ++out.dropped;
    } else {
      ++out.sent;
    }
    if (op.put) puts_of(op.key).erase(op.key.id);
    ops_.pop_front();
  }
  if (out.dropped > 1) {
    LOG_WARN("fd store: %zu more operations refused and dropped", out.dropped - 1);
  }
  return out;
}

int FdStoreQueue::timeout_ms(uint64_t now_ns) const noexcept {
  if (ops_.empty() || now_ns >= retry_at_ns_) return -1;
  return static_cast<int>((retry_at_ns_ - now_ns + 999999ULL) / 1000000ULL);
}

}  // namespace sluice
