// The worker's side of worker restarts (docs/ARCHITECTURE.md "Worker
// restarts"): the sealed memfds of StoreState (the state blob and the socket
// cookies of the listeners the worker holds), and reading a blob that sluiced
// hands back after a crash.
//
// The blob is read through a private read-only mapping, never with read():
// its file description is shared with sluiced and with every worker before,
// so its offset means nothing, and the worker's filter grants no lseek or
// pread there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sluice {

/// Returns a memfd holding the `len` bytes at `data`, sealed against writes,
/// resizes and further seals (F_SEAL_WRITE|SHRINK|GROW|SEAL), as sluiced
/// requires. Fails with the errno of the step that failed. Needs
/// `memfd_create` (MFD_CLOEXEC|MFD_ALLOW_SEALING), `write`, `fcntl`
/// (F_ADD_SEALS).
Result<UniqueFd> sealed_memfd(const char* name, const void* data, size_t len);

/// Returns the SO_COOKIE of the socket `fd`, or 0 when it cannot be read
/// (the kernel never gives 0 to a socket). Needs `getsockopt`.
uint64_t socket_cookie(int fd) noexcept;

/// Reads the `len` bytes (1..wire::kMaxStateBlobBytes) of the memfd `fd` into
/// 8-byte aligned words (the tail of the last word zero), through a private
/// read-only mapping. Fails when `len` is out of range or the mapping fails.
/// Needs `mmap` (PROT_READ, MAP_PRIVATE) and `munmap`.
Result<std::vector<uint64_t>> read_blob(int fd, uint64_t len);

}  // namespace sluice
