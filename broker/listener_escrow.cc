// The listener escrow (see listener_escrow.h).
#include "broker/listener_escrow.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "base/strings.h"
#include "broker/fd_store.h"
#include "broker/socket_facts.h"
#include "policy/bind_policy.h"

namespace sluice {
namespace {

/// Limit: rebinds of one request whose refusal to share is logged one by one
/// (the rest are counted in one line).
constexpr size_t kLoggedRefusedShares = 3;

/// The seals that make a memfd's content final.
constexpr int kFinalSeals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

/// Returns a close-on-exec copy of `fd` on a number from `min_fd` on. Needs
/// `fcntl` (F_DUPFD_CLOEXEC).
Result<UniqueFd> copy_of(int fd, int min_fd = 0) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, min_fd));
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
  // One the worker holds and sluiced does not: its cookie may be listed too.
  auto unkept = [this] {
    if (unkept_ < wire::kMaxEscrowListeners) ++unkept_;
  };
  if (entries_.size() >= wire::kMaxEscrowListeners) {
    unkept();
    return Err(ENOSPC, "the escrow holds " + std::to_string(entries_.size()) + " listeners");
  }
  auto cookie = read_socket_cookie(fd);
  if (!cookie) {
    unkept();
    return Err(cookie.error());
  }
  auto copy = copy_of(fd, min_fd_);
  if (!copy) {
    unkept();  // EMFILE: sluiced's descriptor table is full
    return Err(copy.error());
  }
  const int kept = copy->get();
  wire::ListenerSpec what = spec;
  what.flags &= ~wire::kListenerReplaces;  // how it was opened, not what it is
  entries_[*cookie] = Entry{std::move(*copy), what, sequence};
  if (mirror_fd_ >= 0) {
    // The put refers to the copy just kept, which stays open until its
    // remove is queued (unstore()).
    if (auto put = store_ops_.put(FdStoreKey::listener(*cookie, what), kept); !put) {
      LOG_WARN(
          "port %u is not in the service manager's fd store (%s): a restart of sluiced "
          "binds it again",
          what.port, put.error().message.c_str());
    }
    send_store_unless_full(monotonic_ns());
  }
  return Ok();
}

bool specs_clash(const wire::ListenerSpec& a, const wire::ListenerSpec& b) noexcept {
  if (((a.flags ^ b.flags) & wire::kListenerSplice) != 0 || a.proto != b.proto ||
      a.port != b.port) {
    return false;
  }
  if (a.ifname[0] != '\0' && b.ifname[0] != '\0' &&
      std::strncmp(a.ifname, b.ifname, sizeof(a.ifname)) != 0) {
    return false;
  }
  const bool a_v4 = a.family == static_cast<uint8_t>(wire::WireFamily::kInet);
  const bool b_v4 = b.family == static_cast<uint8_t>(wire::WireFamily::kInet);
  const bool a_dual = (a.flags & wire::kListenerDualStack) != 0;
  const bool b_dual = (b.flags & wire::kListenerDualStack) != 0;
  if (a_dual || b_dual) {
    // [::] with V6ONLY=0 covers both families, at every address.
    return ((a_v4 || a_dual) && (b_v4 || b_dual)) || (!a_v4 && !b_v4);
  }
  if (a_v4 != b_v4) return false;
  // IPv4 addresses are v4-mapped: only the last 4 bytes say which.
  const size_t from = a_v4 ? 12 : 0;
  auto unspecified = [from](const wire::ListenerSpec& s) {
    for (size_t i = from; i < sizeof(s.addr); ++i) {
      if (s.addr[i] != 0) return false;
    }
    return true;
  };
  return unspecified(a) || unspecified(b) ||
         std::memcmp(a.addr + from, b.addr + from, sizeof(a.addr) - from) == 0;
}

bool same_listener(const wire::ListenerSpec& a, const wire::ListenerSpec& b) noexcept {
  wire::ListenerSpec x = a, y = b;
  x.flags &= ~wire::kListenerReplaces;
  y.flags &= ~wire::kListenerReplaces;
  return std::memcmp(&x, &y, sizeof(x)) == 0;  // 40 bytes, no padding (broker_wire.h)
}

size_t ListenerEscrow::share_ports(std::span<wire::ListenerSpec> entries,
                                   const ForeignHolderCheck& foreign) {
  // The (table, protocol, port) of every rebind in the request, sorted, so
  // that one pass over the escrow finds the listeners they may replace.
  std::vector<uint32_t> ports;
  for (const wire::ListenerSpec& spec : entries) {
    if ((spec.flags & wire::kListenerReplaces) != 0) ports.push_back(port_slot(spec));
  }
  if (ports.empty()) return 0;
  std::sort(ports.begin(), ports.end());
  // sluiced's listeners on those ports, sorted by port, and their inodes.
  std::vector<std::pair<uint32_t, Entry*>> candidates;
  std::vector<uint64_t> own;
  for (auto& [cookie, entry] : entries_) {
    const uint32_t slot = port_slot(entry.spec);
    if (!std::binary_search(ports.begin(), ports.end(), slot)) continue;
    candidates.emplace_back(slot, &entry);
    struct stat st {};
    if (::fstat(entry.fd.get(), &st) == 0) own.push_back(static_cast<uint64_t>(st.st_ino));
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  // The candidates on the port of `slot`.
  auto on_port = [&candidates](uint32_t slot) {
    struct BySlot {
      bool operator()(const std::pair<uint32_t, Entry*>& c, uint32_t s) const {
        return c.first < s;
      }
      bool operator()(uint32_t s, const std::pair<uint32_t, Entry*>& c) const {
        return s < c.first;
      }
    };
    return std::equal_range(candidates.begin(), candidates.end(), slot, BySlot{});
  };
  // A rebind shares its port only with the listeners of sluiced's it clashes
  // with in the kernel, the ones it replaces; one that clashes with none
  // replaces nothing and opens as any other entry. So the worker cannot have
  // a socket of sluiced's made with SO_REUSEPORT at an address where only
  // another program's socket is. And it shares nothing while another
  // program's socket holds the port at an address the new listener clashes
  // with: with SO_REUSEPORT on both, the new listener would bind beside it,
  // or join its group (port_holders.h).
  std::vector<wire::ListenerSpec*> rebinds;
  std::vector<wire::ListenerSpec> asked;
  for (wire::ListenerSpec& spec : entries) {
    if ((spec.flags & wire::kListenerReplaces) == 0) continue;
    const auto [first, last] = on_port(port_slot(spec));
    // A rebind replaces a listener at another address of the port. One the
    // same as a listener sluiced holds replaces nothing: the worker has that
    // socket already, and asking for it again as a rebind would only make
    // the port shareable (SO_REUSEPORT) with every process of sluiced's user.
    bool replaces = false;
    bool same = false;
    for (auto it = first; it != last && !same; ++it) {
      same = same_listener(spec, it->second->spec);
      replaces = replaces || specs_clash(spec, it->second->spec);
    }
    if (same) replaces = false;
    if (!replaces) {
      spec.flags &= ~wire::kListenerReplaces;
      continue;
    }
    rebinds.push_back(&spec);
    asked.push_back(spec);
  }
  if (rebinds.empty()) return 0;
  const std::vector<Result<std::optional<std::string>>> holders = foreign(asked, own);
  size_t shared = 0;
  size_t refused = 0;
  for (size_t i = 0; i < rebinds.size(); ++i) {
    wire::ListenerSpec& spec = *rebinds[i];
    const Result<std::optional<std::string>>* holder = i < holders.size() ? &holders[i] : nullptr;
    if (holder == nullptr || !*holder || **holder) {
      // The rebind then fails with EADDRINUSE and the commit rolls back,
      // the old listener serving throughout. Limit: the first few are
      // logged, the rest counted (a range of thousands of ports fails the
      // same way for each).
      if (++refused <= kLoggedRefusedShares) {
        const std::string why = holder == nullptr ? std::string("no answer for it")
                                : !*holder
                                    ? "cannot tell who else holds it: " + holder->error().message
                                    : "another program's socket holds it at " + ***holder;
        LOG_WARN("%s: a rebind does not share its port: %s; the commit fails with EADDRINUSE",
                 describe_listener(spec).c_str(), why.c_str());
      }
      spec.flags &= ~wire::kListenerReplaces;
      continue;
    }
    const auto [first, last] = on_port(port_slot(spec));
    for (auto it = first; it != last; ++it) {
      Entry* entry = it->second;
      if (!specs_clash(spec, entry->spec)) continue;
      const int one = 1;
      if (::setsockopt(entry->fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0) {
        ++shared;
      } else {
        // As above: EADDRINUSE, and the commit rolls back.
        LOG_WARN("port %u: SO_REUSEPORT for a rebind: %s", entry->spec.port,
                 errno_text(errno).c_str());
      }
    }
  }
  if (refused > kLoggedRefusedShares) {
    LOG_WARN("%zu more rebinds of this request do not share their ports either",
             refused - kLoggedRefusedShares);
  }
  return shared;
}

Result<void> ListenerEscrow::adopt(UniqueFd fd, uint64_t cookie, const wire::ListenerSpec& spec) {
  if (entries_.size() >= wire::kMaxEscrowListeners) {
    return Err(ENOSPC, "the escrow holds " + std::to_string(entries_.size()) + " listeners");
  }
  entries_[cookie] = Entry{std::move(fd), spec, 0};
  return Ok();
}

Result<void> ListenerEscrow::adopt_blob(UniqueFd blob, uint64_t sequence) {
  auto size = check_sealed_memfd(blob.get(), 1, wire::kMaxStateBlobBytes, "stored state");
  if (!size) return Err(size.error());
  blob_ = std::move(blob);
  blob_bytes_ = *size;
  blob_sequence_ = sequence;
  return Ok();
}

/// Removes the listener `cookie` of `spec` from the fd store, when mirrored:
/// queued, or its put dropped when that still waits.
void ListenerEscrow::unstore(uint64_t cookie, const wire::ListenerSpec& spec) noexcept {
  if (mirror_fd_ < 0) return;
  if (auto removed = store_ops_.remove(FdStoreKey::listener(cookie, spec)); !removed) {
    LOG_WARN(
        "port %u: not removed from the service manager's fd store (%s); a restart of "
        "sluiced gets the closed listener back and closes it once unused",
        spec.port, removed.error().message.c_str());
  }
}

/// Stores the blob just taken as the next state, then removes the one
/// before it, when mirrored: queued in that order, so the store never lacks
/// a state (the old one's put, when it still waits, is dropped instead).
void ListenerEscrow::store_blob() noexcept {
  if (mirror_fd_ < 0) return;
  const uint64_t next = blob_sequence_ + 1;
  if (auto put = store_ops_.put(FdStoreKey::worker_state(next), blob_.get()); !put) {
    LOG_WARN(
        "the worker's state is not in the service manager's fd store (%s): a restart of "
        "sluiced resumes from an older one",
        put.error().message.c_str());
    return;
  }
  if (blob_sequence_ != 0) {
    if (auto removed = store_ops_.remove(FdStoreKey::worker_state(blob_sequence_)); !removed) {
      LOG_WARN("the worker's state %llu stays in the service manager's fd store (%s)",
               static_cast<unsigned long long>(blob_sequence_), removed.error().message.c_str());
    }
  }
  blob_sequence_ = next;
}

void ListenerEscrow::unstore_stale(const std::vector<FdStoreKey>& keys) noexcept {
  if (mirror_fd_ < 0) return;
  for (const FdStoreKey& key : keys) {
    if (auto removed = store_ops_.remove(key); !removed) {
      LOG_WARN(
          "fd store: %s stays in the service manager's store (%s); it is closed again at "
          "the next start",
          key.describe().c_str(), removed.error().message.c_str());
      return;  // the queue is full: the rest would fail alike
    }
  }
}

void ListenerEscrow::send_store_unless_full(uint64_t now_ns) noexcept {
  // The manager's queue was full at the last try: another try per listener
  // of a large commit would only fail again. The loop's flush_store() goes
  // on once the notify socket is writable.
  if (!store_full_) flush_store(now_ns);
}

void ListenerEscrow::flush_store(uint64_t now_ns) noexcept {
  if (mirror_fd_ < 0 || store_ops_.empty()) return;
  const FdStoreFlush done = store_ops_.flush(mirror_fd_, now_ns);
  store_full_ = done.blocked;
  if (done.blocked && done.sent > 0) {
    LOG_DEBUG("fd store: %zu operations sent, %zu wait for the service manager", done.sent,
              store_ops_.size());
  }
}

Result<void> ListenerEscrow::store(const wire::StoreStateMsg& msg, UniqueFd blob,
                                   UniqueFd cookies) {
  auto blob_size = check_sealed_memfd(blob.get(), 1, wire::kMaxStateBlobBytes, "state blob");
  if (!blob_size) return Err(blob_size.error());
  // Never more cookies than the listeners this worker got: the read is
  // bounded by what sluiced holds, and those it issued without keeping a
  // copy (its descriptor table was full), which the worker lists as well.
  auto list_size = check_sealed_memfd(
      cookies.get(), 0, (entries_.size() + unkept_) * sizeof(uint64_t), "cookie list");
  if (!list_size) return Err(list_size.error());
  if (*list_size % sizeof(uint64_t) != 0) {
    return Err(EPROTO, "the cookie list is not a whole number of 8-byte cookies");
  }
  // What sluiced keeps lives above its fixed numbers, so that no dup3 onto
  // one of them (this staging number, the policy's) can ever close it.
  if (min_fd_ > 0 && blob.get() < min_fd_) {
    auto moved = copy_of(blob.get(), min_fd_);
    if (!moved) return Err(moved.error());
    blob = std::move(*moved);
  }
  // A list received onto the free staging number is there already.
  if (staging_fd_ >= 0 && cookies.get() != staging_fd_) {
    if (::dup3(cookies.get(), staging_fd_, O_CLOEXEC) != staging_fd_) {
      int err = errno;
      return SysErr(err, "dup3 of the cookie list");
    }
    cookies.reset(staging_fd_);  // the original closes; the staging number closes after
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
      unstore(it->first, it->second.spec);
      it = entries_.erase(it);  // the worker released it: sluiced's copy closes
      ++closed;
    } else {
      ++it;
    }
  }
  // The old blob closes only after its state's remove is queued: a put of
  // it that still waits refers to its number.
  UniqueFd old_blob = std::exchange(blob_, std::move(blob));
  blob_bytes_ = *blob_size;
  store_blob();
  old_blob.reset();
  send_store_unless_full(monotonic_ns());
  LOG_DEBUG("StoreState: generation %llu, %zu listener%s held, %zu released, blob of %llu bytes",
            static_cast<unsigned long long>(msg.generation), held.size(),
            held.size() == 1 ? "" : "s", closed, static_cast<unsigned long long>(blob_bytes_));
  return Ok();
}

void ListenerEscrow::new_worker() noexcept {
  for (auto& [cookie, entry] : entries_) entry.sequence = 0;
  unkept_ = 0;  // their only copy died with the worker
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
