// Confirmed commits in sluicectl's output: the pending confirmation in the
// listing, --stats and their JSON (see render.h).
#include <string>

#include "client/render.h"

namespace sluice {

std::string render_pending(const control::PendingConfirm& pending) {
  return "pending confirmation: generation " + std::to_string(pending.generation) +
         " rolls back to the tables of generation " + std::to_string(pending.rollback_generation) +
         " at " + format_utc_millis(pending.deadline_unix_millis) + " (in " +
         std::to_string((pending.remaining_millis + 999) / 1000) +
         " s) unless sluicectl --confirm arrives (committed by uid " + std::to_string(pending.uid) +
         " pid " + std::to_string(pending.pid) + ")\n";
}

void pending_json(const std::optional<control::PendingConfirm>& pending, JsonWriter* w) {
  w->key("pendingConfirm");
  if (!pending) {
    w->null();
    return;
  }
  w->begin_object();
  w->key("generation");
  w->number(pending->generation);
  w->key("rollbackGeneration");
  w->number(pending->rollback_generation);
  w->key("deadline");
  w->string(format_utc_millis(pending->deadline_unix_millis));
  w->key("deadlineUnixMillis");
  w->signed_number(pending->deadline_unix_millis);
  w->key("remainingMillis");
  w->number(pending->remaining_millis);
  w->key("pid");
  w->signed_number(pending->pid);
  w->key("uid");
  w->number(pending->uid);
  w->end_object();
}

}  // namespace sluice
