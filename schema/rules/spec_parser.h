// The rule-text parser: pasta(1)/pesto(1) forwarding specs into rules. It runs
// in sluicectl, and in the worker (after its sandbox is up) for the initial
// rules an administrator gives sluiced. Nothing on the privileged side parses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "schema/model.h"

namespace sluice {

/// Limit: bytes of one spec. A real spec is a few dozen bytes; 4096 fits any
/// hand-written one (about 800 single ports) and bounds every loop and
/// allocation of the parser, including the number of chunks (at most 2048).
/// Longer rule sets can be split over several options of the same kind.
inline constexpr size_t kMaxSpecBytes = 4096;

/// Limit: bytes of a spec (or of another argument of sluicectl) quoted in an
/// error message, so that a hostile 4096-byte spec does not make a 16 KiB
/// message; the message also quotes the offending part on its own.
inline constexpr size_t kMaxQuotedBytes = 96;

/// Facts about the server a spec is parsed for (from its Hello).
struct SpecContext {
  uint16_t ephemeral_first = kDefaultEphemeralFirst;  // the server's ip_local_port_range
  uint16_t ephemeral_last = kDefaultEphemeralLast;
  bool ipv4 = true;  // a wildcard becomes dual-stack only with both families
  bool ipv6 = true;
};

/// The option a spec came with: -t/-u fill HOST, -T/-U fill SPLICE.
struct SpecOption {
  char option = 't';  // one of t, u, T, U
  std::string spec;
};

/// Returns the pif of an option letter (t/u: HOST, T/U: SPLICE).
Pif option_pif(char option) noexcept;
/// Returns the protocol of an option letter (t/T: TCP, u/U: UDP).
Proto option_proto(char option) noexcept;

/// Parses one SPEC given with `option` into the rules it stands for, in order.
/// "none" yields no rules. On error, the message names the option, quotes the
/// spec, gives the 1-based character position and says what to write instead,
/// e.g. "-t '80-70': at position 1: the range 80-70 runs backwards; write 70-80".
Result<std::vector<Rule>> parse_spec(char option, std::string_view spec, const SpecContext& ctx);

}  // namespace sluice
