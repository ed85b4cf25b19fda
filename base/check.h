// CHECK(): the "bug" error class. A broken invariant aborts with the function
// name and the reason; it is never used for peer input or runtime failures.
#pragma once

namespace sluice {

/// Writes "role: CHECK failed in FUNC (FILE:LINE): COND: MSG" to the log fd and
/// aborts. Never returns.
[[noreturn]] void check_failed(const char* func, const char* file, int line, const char* cond,
                               const char* msg) noexcept;

}  // namespace sluice

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) ::sluice::check_failed(__func__, __FILE__, __LINE__, #cond, ""); \
  } while (0)

#define CHECK_MSG(cond, msg)                                                         \
  do {                                                                               \
    if (!(cond)) ::sluice::check_failed(__func__, __FILE__, __LINE__, #cond, (msg)); \
  } while (0)
