#include "client/spec_context.h"

namespace sluice {

SpecContext spec_context(const control::ServerHello& hello) {
  SpecContext ctx;
  ctx.ephemeral_first = hello.ephemeral_first;
  ctx.ephemeral_last = hello.ephemeral_last;
  ctx.ipv4 = hello.caps.ipv4;
  ctx.ipv6 = hello.caps.ipv6;
  return ctx;
}

// parse_spec (schema/rules/spec_parser.cc, spec_expand.cc) uses its context
// in three places, and none refuses a spec with this context that it accepts
// with another:
// - With neither family, every spec but none is refused; with one or both,
//   none is refused for that reason.
// - The families pick the listen side of a spec without an address (the
//   wildcard), and the target check refuses two combinations with it: a
//   dual-stack wildcard (both families) with an IPv4 target, and 0.0.0.0
//   (IPv4 only) with an IPv6 target. IPv6 only makes the wildcard `::`
//   without dual-stack, for which neither refusal applies. A spec with an
//   address of its own is checked against that address, whatever the
//   context; a family the server lacks is the validator's to refuse
//   (policy/validate.cc, through check_commit), after the Hello.
// - The ephemeral range, for `all` and for specs of only auto and exclusions:
//   their rules are the ports no exclusion, include or range covers. "Every
//   port this spec names is excluded" fires when none is left; with no range,
//   the ports left are a superset of those any range leaves. The same
//   expansion is held to kMaxRulesPerTable (4096): with no range, every rule
//   starts at port 1, at an include's first port or right after an include's
//   or exclusion's last port; a spec of at most kMaxSpecBytes (4096) has at
//   most 2046 chunks besides `all` (each at least one byte and a comma), so at
//   most 1 + 2 * 2046 = 4093 rules: the limit is not reached without a range.
SpecContext permissive_spec_context() {
  SpecContext ctx;
  ctx.ipv4 = false;
  ctx.ipv6 = true;
  ctx.ephemeral_first = static_cast<uint16_t>(kMaxPort);  // first above last: none
  ctx.ephemeral_last = 1;
  return ctx;
}

}  // namespace sluice
