// The worker's side of worker restarts (see state_store.h).
#include "worker/state_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "schema/broker_wire.h"

namespace sluice {

Result<UniqueFd> sealed_memfd(const char* name, const void* data, size_t len) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return SysErr("memfd_create");
  const auto* bytes = static_cast<const char*>(data);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::write(fd.get(), bytes + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return SysErr(n < 0 ? errno : EIO, "writing a memfd");
    done += static_cast<size_t>(n);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
      0) {
    return SysErr("sealing a memfd");
  }
  return fd;
}

uint64_t socket_cookie(int fd) noexcept {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return 0;
  return cookie;
}

Result<std::vector<uint64_t>> read_blob(int fd, uint64_t len) {
  if (len == 0 || len > wire::kMaxStateBlobBytes) {
    return Err(EPROTO, "the state blob has " + std::to_string(len) + " bytes");
  }
  void* map = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return SysErr("mmap of the state blob");
  std::vector<uint64_t> words((len + 7) / 8, 0);
  std::memcpy(words.data(), map, len);
  ::munmap(map, len);
  return words;
}

}  // namespace sluice
