#include "worker/tables.h"

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "base/strings.h"
#include "policy/bind_policy.h"
#include "schema/codec.h"

namespace sluice {
namespace {

/// Converts a validator issue into a commit failure.
control::Failure from_issue(const ValidationIssue& issue, const TableSet& tables) {
  control::Failure f;
  switch (issue.kind) {
    case IssueKind::kInvalid:
      f.kind = control::FailureKind::kInvalid;
      break;
    case IssueKind::kConflict:
      f.kind = control::FailureKind::kConflict;
      break;
    case IssueKind::kCapacity:
      f.kind = control::FailureKind::kCapacity;
      break;
  }
  f.pif = issue.pif;
  f.rule = issue.rule;
  const Table& table = tables.of(issue.pif);
  if (issue.rule >= 0 && static_cast<size_t>(issue.rule) < table.rules.size()) {
    f.text = format_rule(table.rules[static_cast<size_t>(issue.rule)]);
  }
  f.message = issue.message;
  return f;
}

/// The rule a listener key came from, for failure reports.
struct KeyOrigin {
  Pif pif;
  size_t rule;
};

}  // namespace

std::string bind_errno_advice(int err, uint16_t port, const BrokerInfo& broker) {
  switch (err) {
    case EADDRINUSE:
      return "another socket already listens on port " + std::to_string(port) +
             "; stop that service (see `ss -ltnup sport = :" + std::to_string(port) +
             "`) or forward a different port";
    case EACCES:
      if (port < broker.unprivileged_port_start) {
        return "port " + std::to_string(port) + " is below net.ipv4.ip_unprivileged_port_start (" +
               std::to_string(broker.unprivileged_port_start) +
               "); grant CAP_NET_BIND_SERVICE to sluiced or lower that sysctl";
      }
      return "the kernel refused the bind; check LSM policy (SELinux, AppArmor) for sluiced";
    case EADDRNOTAVAIL:
      return "the listen address is not configured on any interface of this host; add it or "
             "listen on another address";
    case ENODEV:
      return "the interface does not exist; check the name with `ip link`";
    case EAFNOSUPPORT:
      return "the address family is disabled on this host";
    case EMFILE:
    case ENFILE:
      return "sluiced ran out of file descriptors; raise its RLIMIT_NOFILE or forward fewer ports";
    default:
      return "";
  }
}

TableState::TableState(Forwarder& forwarder, BrokerClient& broker, BrokerInfo broker_info,
                       ServerCaps caps)
    : forwarder_(forwarder), broker_(broker), broker_info_(broker_info), caps_(caps) {
  digest_ = control::digest_tables(tables_);
}

std::vector<control::Failure> TableState::validate(const TableSet& tables) const {
  std::vector<control::Failure> failures;
  for (const ValidationIssue& issue : validate_tables(tables, caps_)) {
    failures.push_back(from_issue(issue, tables));
  }
  if (!tables.of(Pif::kSplice).rules.empty()) {
    control::Failure f;
    f.kind = control::FailureKind::kInvalid;
    f.pif = Pif::kSplice;
    f.message =
        "this sluice-worker serves only the HOST table (-t/-u); SPLICE rules (-T/-U) need "
        "sockets in the target namespace, which this build cannot open yet; remove the -T/-U "
        "rules";
    failures.push_back(std::move(f));
  }
  return failures;
}

std::vector<control::Failure> TableState::install_initial(const TableSet& tables) {
  CHECK(generation_ == 0);
  std::vector<control::Failure> failures = validate(tables);
  if (!failures.empty()) return failures;

  // Plan: every port of every rule needs a socket; remember where each came from.
  std::vector<ListenerKey> keys;
  std::vector<KeyOrigin> origins;
  for (size_t p = 0; p < kPifCount; ++p) {
    const Table& table = tables.tables[p];
    for (size_t r = 0; r < table.rules.size(); ++r) {
      Table one{table.pif, {table.rules[r]}};
      expand_listeners(one, &keys);
      origins.resize(keys.size(), KeyOrigin{table.pif, r});
    }
  }

  // The worker pre-checks the broker's default bind policy so that a denial
  // reads clearly; the broker checks again, with authority.
  BindPolicy policy{broker_info_.unprivileged_port_start, broker_info_.has_bind_cap};
  std::vector<int32_t> status(keys.size(), wire::kStatusOk);
  std::vector<UniqueFd> fds(keys.size());
  std::vector<ListenerKey> ask;
  std::vector<size_t> ask_index;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!check_bind(policy, to_wire(keys[i])).allowed) {
      status[i] = wire::kStatusPolicyDenied;
    } else {
      ask.push_back(keys[i]);
      ask_index.push_back(i);
    }
  }
  if (!ask.empty()) {
    auto opened = broker_.open_listeners(ask);
    // The broker is the more privileged side: a malformed reply is a bug or a
    // dying broker, and there is no safe way on.
    CHECK_MSG(opened.ok(), opened.ok() ? "" : opened.error().message.c_str());
    for (size_t j = 0; j < ask.size(); ++j) {
      status[ask_index[j]] = (*opened)[j].status;
      fds[ask_index[j]] = std::move((*opened)[j].fd);
    }
  }

  // Judge each rule: a strict rule fails on any port; a weak one only when no
  // port at all could be bound.
  size_t i = 0;
  while (i < keys.size()) {
    size_t end = i;
    while (end < keys.size() && origins[end].pif == origins[i].pif &&
           origins[end].rule == origins[i].rule) {
      ++end;
    }
    const Rule& rule = tables.of(origins[i].pif).rules[origins[i].rule];
    size_t bound = 0;
    for (size_t k = i; k < end; ++k) bound += status[k] == wire::kStatusOk;
    bool rule_fails = rule.weak ? bound == 0 : bound != end - i;
    for (size_t k = i; k < end; ++k) {
      if (status[k] == wire::kStatusOk) continue;
      control::Failure f;
      f.pif = origins[i].pif;
      f.rule = static_cast<int>(origins[i].rule);
      f.text = format_rule(rule);
      f.port = keys[k].port;
      std::string where = std::string(pif_name(f.pif)) + " rule " + std::to_string(f.rule) + " (" +
                          f.text + "), port " + std::to_string(f.port) + ": ";
      if (status[k] == wire::kStatusPolicyDenied) {
        f.kind = control::FailureKind::kPolicyDenied;
        f.err = EACCES;
        BindDecision why = check_bind(policy, to_wire(keys[k]));
        f.message = where + "denied by the bind policy of sluiced: " +
                    (why.allowed ? std::string("a line of its policy file refuses it (sluiced's "
                                               "log names the line); change the policy or the "
                                               "rule")
                                 : why.reason);
      } else {
        f.kind = control::FailureKind::kBindFailed;
        f.err = status[k];
        std::string advice = bind_errno_advice(f.err, f.port, broker_info_);
        f.message =
            where + "bind failed: " + errno_text(f.err) + (advice.empty() ? "" : "; " + advice);
      }
      if (rule_fails) {
        failures.push_back(std::move(f));
      } else {
        LOG_WARN("%s (best effort: the rule keeps its other ports)", f.message.c_str());
      }
    }
    i = end;
  }
  if (!failures.empty()) return failures;  // the acquired fds close here: full rollback

  // Swap: serve every acquired socket. One Route per rule, shared by its ports.
  std::vector<std::shared_ptr<const Route>> routes;
  const Rule* last_rule = nullptr;
  for (size_t k = 0; k < keys.size(); ++k) {
    if (!fds[k].valid()) continue;
    const Rule& rule = tables.of(origins[k].pif).rules[origins[k].rule];
    if (&rule != last_rule) {
      routes.push_back(std::make_shared<const Route>(
          Route{rule.target, rule.first, rule.to, format_rule(rule)}));
      last_rule = &rule;
    }
    auto listener = forwarder_.add_tcp_listener(std::move(fds[k]), keys[k].port, routes.back());
    CHECK_MSG(listener.ok(), listener.ok() ? "" : listener.error().message.c_str());
    listeners_.push_back(*listener);
  }
  tables_ = tables;
  generation_ = 1;
  digest_ = control::digest_tables(tables_);
  return {};
}

}  // namespace sluice
