// The default control socket path, shared by sluiced and sluicectl so that
// both agree without configuration.
#pragma once

#include "base/result.h"

#include <string>

namespace sluice {

/// Returns /run/sluice/control.sock for root (euid 0), otherwise
/// $XDG_RUNTIME_DIR/sluice/control.sock. Fails with advice when neither
/// applies (no XDG_RUNTIME_DIR for a non-root user).
Result<std::string> default_control_path();

}  // namespace sluice
