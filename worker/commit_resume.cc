// The commit engine's part in worker restarts (see commit_engine.h and
// docs/ARCHITECTURE.md "Worker restarts"): the listeners a dead worker held,
// taken instead of asking sluiced while the resume commit acquires, and the
// state handed to sluiced after every change of the listeners held or of a
// pending confirmation.
#include <algorithm>

#include "base/log.h"
#include "base/strings.h"
#include "schema/codec.h"
#include "worker/commit_engine.h"
#include "worker/forwarder.h"
#include "worker/state_store.h"

namespace sluice {

void CommitEngine::adopt(std::vector<std::pair<ListenerKey, UniqueFd>> listeners) {
  for (auto& [key, fd] : listeners) {
    // The dead worker may have stopped it for a close it did not live to make.
    if (key.proto == Proto::kTcp && !reopen_to_new_connections(fd.get())) {
      LOG_WARN(
          "port %u: a listener of the previous worker could not be reopened to new "
          "connections (%s); new clients of the port may get no answer until a commit "
          "removes its rule and adds it again",
          key.port, errno_text(errno).c_str());
    }
    adopted_[key] = std::move(fd);
  }
}

std::vector<size_t> CommitEngine::take_adopted(const Acquisition& acq,
                                               std::vector<OpenedListener>* results) noexcept {
  results->clear();
  results->resize(acq.asked);
  std::vector<size_t> missing;
  for (size_t i = 0; i < acq.asked; ++i) {
    auto it = adopted_.find(acq.keys[i].key);
    if (it == adopted_.end()) {
      missing.push_back(i);
      continue;
    }
    (*results)[i].status = wire::kStatusOk;
    (*results)[i].fd = std::move(it->second);
    adopted_.erase(it);
  }
  return missing;
}

void CommitEngine::drop_adopted() noexcept {
  if (adopted_.empty()) return;
  // Plain closes: sluiced closes its copies at the StoreState that follows,
  // and then the ports stop listening.
  LOG_INFO("%zu listener%s of the previous worker %s not in the tables; closed", adopted_.size(),
           adopted_.size() == 1 ? "" : "s", adopted_.size() == 1 ? "is" : "are");
  adopted_.clear();
}

void CommitEngine::set_aside(Acquisition& acq) noexcept {
  if (!taking_over_) return acq.discard();
  for (size_t i = 0; i < acq.asked; ++i) {
    if (acq.status[i] == wire::kStatusOk && acq.fds[i].valid()) {
      adopted_[acq.keys[i].key] = std::move(acq.fds[i]);
    }
  }
}

void CommitEngine::store_state() noexcept {
  if (taking_over_) return;
  std::vector<uint64_t> cookies;
  cookies.reserve(installed_.size());
  for (const Installed& i : installed_) {
    if (i.listener != nullptr && i.cookie != 0) cookies.push_back(i.cookie);
  }
  std::sort(cookies.begin(), cookies.end());
  cookies.erase(std::unique(cookies.begin(), cookies.end()), cookies.end());
  control::StateBlob state{generation_, tables_, std::nullopt};
  // A commit in force that waits for confirmation goes with the tables it
  // replaced: the worker that resumes rolls it back (an unconfirmed commit
  // never outlives its worker). From the state of the one just applied
  // (finish_applied(), before it is armed), or from the armed one.
  const Active* a = active_ ? &*active_ : nullptr;
  if (a != nullptr && !a->job.rollback && !a->job.scan && !a->job.request.dry_run &&
      a->job.request.confirm_within_seconds != 0 && generation_ != a->generation_before) {
    state.unconfirmed = control::StateBlob::Unconfirmed{a->generation_before, a->tables_before,
                                                        a->job.request.confirm_within_seconds};
  } else if (confirm_.phase() != ConfirmState::Phase::kNone &&
             confirm_.armed().generation == generation_) {
    const ConfirmState::Armed& armed = confirm_.armed();
    state.unconfirmed = control::StateBlob::Unconfirmed{armed.rollback_generation,
                                                        armed.rollback_tables, armed.seconds};
  }
  const std::string blob = control::encode_state_blob(state);
  auto blob_fd = sealed_memfd("sluice-state", blob.data(), blob.size());
  auto cookie_fd =
      sealed_memfd("sluice-cookies", cookies.data(), cookies.size() * sizeof(uint64_t));
  if (!blob_fd || !cookie_fd) {
    if (store_log_.allow()) {
      LOG_WARN("cannot hand sluiced the state for a restart: %s; it keeps the last one",
               (!blob_fd ? blob_fd : cookie_fd).error().message.c_str());
    }
    return;
  }
  broker_.store_state(std::move(*blob_fd), std::move(*cookie_fd), broker_.last_sequence(),
                      generation_, static_cast<uint32_t>(cookies.size()));
}

}  // namespace sluice
