// What sluicectl parses its specs with: the facts of the server it talks to,
// taken from that server's Hello. The rules library (schema/rules/) takes a
// plain SpecContext and knows nothing of the control protocol; this is where
// the Hello becomes one.
#pragma once

#include "schema/codec.h"
#include "schema/rules/spec_parser.h"

namespace sluice {

/// Returns the facts a spec is parsed with, from the server's Hello: its
/// ephemeral port range and its address families (upstream pesto wrongly
/// uses the client's own range). Cannot fail.
SpecContext spec_context(const control::ServerHello& hello);

}  // namespace sluice
