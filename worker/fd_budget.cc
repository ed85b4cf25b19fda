// The worker's descriptor budget (see fd_budget.h).
#include "worker/fd_budget.h"

#include <cerrno>
#include <string>

namespace sluice {

uint64_t FdUse::reserve() const noexcept {
  return limit >= kSmallFdLimit ? kFdReserve : limit / 4;
}

uint64_t FdUse::room() const noexcept {
  if (limit == 0 || limit == UINT64_MAX) return UINT64_MAX;
  const uint64_t taken = held() + reserve();
  return limit > taken ? limit - taken : 0;
}

std::optional<control::Failure> check_fd_budget(size_t fresh, size_t total, Pif pif,
                                                const FdUse& use) {
  const uint64_t room = use.room();
  if (fresh <= room) return std::nullopt;
  control::Failure f;
  f.kind = control::FailureKind::kCapacity;
  f.pif = pif;
  f.err = EMFILE;
  f.message = "the tables need " + std::to_string(total) + " listening socket" +
              (total == 1 ? "" : "s") + ", " + std::to_string(fresh) + " of them new, and only " +
              std::to_string(room) + " more fit the worker's descriptor limit (RLIMIT_NOFILE " +
              std::to_string(use.limit) + ": " + std::to_string(use.held()) + " held now, " +
              std::to_string(use.listeners) + " of them listening sockets, and " +
              std::to_string(use.reserve()) +
              " kept free for connections and control clients); nothing was opened. Forward "
              "fewer ports, or raise the hard limit sluiced starts with (LimitNOFILE= in its "
              "systemd unit, or ulimit -Hn), which sluiced and its workers take, and restart "
              "sluiced";
  return f;
}

control::Failure lost_sockets_failure(size_t lost, Pif pif, const FdUse& use) {
  control::Failure f;
  f.kind = control::FailureKind::kCapacity;
  f.pif = pif;
  f.err = EMFILE;
  f.message = std::to_string(lost) + " listening socket" + (lost == 1 ? "" : "s") +
              " that sluiced opened never reached the worker: its descriptor table is full "
              "(RLIMIT_NOFILE " +
              std::to_string(use.limit) + ", about " + std::to_string(use.held()) +
              " held now); nothing changed. Forward fewer ports, or raise the hard limit sluiced "
              "starts with (LimitNOFILE= in its systemd unit, or ulimit -Hn), which sluiced and "
              "its workers take, and restart sluiced";
  return f;
}

}  // namespace sluice
