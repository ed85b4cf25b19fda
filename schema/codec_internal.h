// Internal to the control codec (codec.cc, codec_stats.cc): the helpers
// both halves use. Not part of the codec's interface (codec.h); nothing
// outside schema/ includes it.
#pragma once

#include <capnp/list.h>

#include <string>
#include <vector>

#include "schema/codec.h"
#include "schema/control.capnp.h"

namespace sluice::control::codec_detail {

namespace cp = ::sluice::capnp_control;

/// Thrown inside the one decode try-block for semantic violations; converted
/// to an Error there. Never escapes the codec.
struct DecodeError {
  std::string message;
};

/// Converts a wire protocol, refusing values this build does not know.
Proto decode_proto(cp::Proto proto);
/// Converts a capnp Pif enum, rejecting values this build does not know.
Pif decode_pif(cp::Pif pif);
/// Copies a Text field, rejecting texts over `max` bytes or with embedded NULs.
std::string decode_text(capnp::Text::Reader text, size_t max, const char* what);
/// Writes one commit failure.
void encode_failure(const Failure& f, cp::Failure::Builder out);
/// Reads one commit failure, checking its fields.
Failure decode_failure(cp::Failure::Reader in);
/// Writes a commit that waits for confirmation.
void encode_pending(const PendingConfirm& p, cp::PendingConfirm::Builder out);
/// Reads a commit that waits for confirmation.
PendingConfirm decode_pending(cp::PendingConfirm::Reader in);

/// Writes the counters of every rule (codec_stats.cc).
void encode_stats(const Stats& st, cp::Stats::Builder out);
/// Reads the counters of every rule (at most 2 * kMaxRulesPerTable), checking
/// their shapes (codec_stats.cc).
Stats decode_stats(cp::Stats::Reader in);

}  // namespace sluice::control::codec_detail
