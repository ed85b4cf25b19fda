#include "base/paths.h"

#include <unistd.h>

#include <cstdlib>

namespace sluice {

Result<std::string> default_control_path() {
  if (geteuid() == 0) return std::string("/run/sluice/control.sock");
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime == nullptr || runtime[0] != '/') {
    return Err(
        "XDG_RUNTIME_DIR is not set (or not absolute), so there is no default control socket "
        "for a non-root user; pass the socket path explicitly (sluiced -c PATH, sluicectl PATH)");
  }
  return std::string(runtime) + "/sluice/control.sock";
}

}  // namespace sluice
