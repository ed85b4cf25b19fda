// Rendering of tables for people: pesto's listing format, grouped by pif.
#pragma once

#include <string>

#include "schema/codec.h"

namespace sluice {

/// Renders the state as text:
///   generation 3, digest 5d1c...e9
///   HOST
///       TCP [*]:22-80 => 32-90
///       UDP [0.0.0.0]:53 => 192.0.2.5:5353
///   SPLICE
///       (no rules)
/// Pifs the server does not serve (absent from its Hello) are left out.
std::string render_state(const control::State& state, const control::ServerHello& hello);

}  // namespace sluice
