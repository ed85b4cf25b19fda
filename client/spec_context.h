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

/// Returns the context sluicectl checks its specs with before it connects
/// (check_specs): one that accepts every spec that some server's context
/// accepts. It is not the default context (both families, ephemeral ports
/// 32768-60999), which refuses specs a server may accept: `8080:10.0.0.5/80`
/// (a dual-stack wildcard cannot forward to an IPv4 target; an IPv4-only
/// server's wildcard is 0.0.0.0, which can) and `all,~1-32767,~61000-65535`
/// (nothing is left besides the default range; a server whose range is
/// 49152-65535 forwards 32768-49151). Why this one accepts the most is in
/// spec_context.cc. Cannot fail.
SpecContext permissive_spec_context();

}  // namespace sluice
