// The listener escrow (see listener_escrow.h).
#include "broker/listener_escrow.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "base/strings.h"

namespace sluice {
namespace {

/// The seals that make a memfd's content final.
constexpr int kFinalSeals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

/// Returns the SO_COOKIE of the socket `fd`. Needs `getsockopt`.
Result<uint64_t> cookie_of(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) {
    int err = errno;
    return SysErr(err, "getsockopt(SO_COOKIE)");
  }
  return cookie;
}

/// Returns a close-on-exec copy of `fd`. Needs `fcntl` (F_DUPFD_CLOEXEC).
Result<UniqueFd> copy_of(int fd) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy.valid()) {
    int err = errno;
    return SysErr(err, "fcntl(F_DUPFD_CLOEXEC)");
  }
  return copy;
}

}  // namespace

Result<uint64_t> check_sealed_memfd(int fd, uint64_t min_bytes, uint64_t max_bytes,
                                    const char* what) {
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    return SysErr(err, std::string("fstat of the ") + what);
  }
  if (!S_ISREG(st.st_mode)) return Err(EPROTO, std::string("the ") + what + " is not a memfd");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < min_bytes || size > max_bytes) {
    return Err(EPROTO, std::string("the ") + what + " has " + std::to_string(size) +
                           " bytes, outside " + std::to_string(min_bytes) + ".." +
                           std::to_string(max_bytes));
  }
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & kFinalSeals) != kFinalSeals) {
    return Err(EPROTO, std::string("the ") + what + " is not sealed against writes and resizes");
  }
  return size;
}

Result<void> ListenerEscrow::keep(int fd, const wire::ListenerSpec& spec, uint64_t sequence) {
  if (entries_.size() >= wire::kMaxEscrowListeners) {
    return Err(ENOSPC, "the escrow holds " + std::to_string(entries_.size()) + " listeners");
  }
  auto cookie = cookie_of(fd);
  if (!cookie) return Err(cookie.error());
  auto copy = copy_of(fd);
  if (!copy) return Err(copy.error());
  entries_[*cookie] = Entry{std::move(*copy), spec, sequence};
  return Ok();
}

Result<void> ListenerEscrow::store(const wire::StoreStateMsg& msg, UniqueFd blob,
                                   UniqueFd cookies) {
  auto blob_size = check_sealed_memfd(blob.get(), 1, wire::kMaxStateBlobBytes, "state blob");
  if (!blob_size) return Err(blob_size.error());
  // Never more cookies than listeners in escrow: the read is bounded by what
  // sluiced itself holds.
  auto list_size =
      check_sealed_memfd(cookies.get(), 0, entries_.size() * sizeof(uint64_t), "cookie list");
  if (!list_size) return Err(list_size.error());
  if (*list_size % sizeof(uint64_t) != 0) {
    return Err(EPROTO, "the cookie list is not a whole number of 8-byte cookies");
  }
  std::vector<uint64_t> held(*list_size / sizeof(uint64_t));
  size_t done = 0;
  auto* bytes = reinterpret_cast<char*>(held.data());
  while (done < *list_size) {
    ssize_t n = ::pread(cookies.get(), bytes + done, *list_size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      return SysErr(err, "reading the cookie list");
    }
    done += static_cast<size_t>(n);
  }
  for (size_t i = 1; i < held.size(); ++i) {
    if (held[i] <= held[i - 1]) return Err(EPROTO, "the cookie list is not strictly ascending");
  }
  size_t closed = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const bool listed = std::binary_search(held.begin(), held.end(), it->first);
    if (!listed && it->second.sequence <= msg.header.sequence) {
      it = entries_.erase(it);  // the worker released it: sluiced's copy closes
      ++closed;
    } else {
      ++it;
    }
  }
  blob_ = std::move(blob);
  blob_bytes_ = *blob_size;
  LOG_DEBUG("StoreState: generation %llu, %zu listener%s held, %zu released, blob of %llu bytes",
            static_cast<unsigned long long>(msg.generation), held.size(),
            held.size() == 1 ? "" : "s", closed, static_cast<unsigned long long>(blob_bytes_));
  return Ok();
}

void ListenerEscrow::new_worker() noexcept {
  for (auto& [cookie, entry] : entries_) entry.sequence = 0;
  reclaim_from_ = 0;
}

Result<UniqueFd> ListenerEscrow::blob_copy() const {
  if (!blob_.valid()) return UniqueFd();
  return copy_of(blob_.get());
}

Result<void> ListenerEscrow::next_batch(wire::ListenersReclaimedMsg* msg,
                                        std::vector<UniqueFd>* fds) {
  std::memset(msg, 0, sizeof(*msg));
  fds->clear();
  auto it = entries_.lower_bound(reclaim_from_);
  for (; it != entries_.end() && fds->size() < wire::kMaxListenersPerMessage; ++it) {
    auto copy = copy_of(it->second.fd.get());
    if (!copy) return Err(copy.error());
    msg->specs[fds->size()] = it->second.spec;
    fds->push_back(std::move(*copy));
  }
  msg->count = static_cast<uint32_t>(fds->size());
  if (it == entries_.end()) {
    msg->flags = wire::kReclaimLast;
    reclaim_from_ = UINT64_MAX;
  } else {
    reclaim_from_ = it->first;
  }
  return Ok();
}

}  // namespace sluice
