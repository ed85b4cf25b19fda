#include "client/long_options.h"

#include <string>
#include <vector>

#include "base/strings.h"

namespace sluice {
namespace {

/// Limit: bytes of an unknown option name quoted in a message, as for every
/// argument sluicectl quotes (kMaxQuotedBytes): a hostile name stays short.
constexpr size_t kMaxQuotedName = 96;

constexpr const char* kSpec = "a SPEC (e.g. 8080:80)";

// pesto's table first (pesto.c, main(): the same names, and the same kind of
// value), then sluice's own options.
constexpr LongOption kLongOptions[] = {
    {"debug", ArgKind::kNone, 'd', true, ""},
    {"help", ArgKind::kNone, 'h', true, ""},
    {"version", ArgKind::kNone, 0, true, ""},
    {"add", ArgKind::kNone, 'A', true, ""},
    {"delete", ArgKind::kNone, 'D', true, ""},
    {"clear", ArgKind::kRequired, 'C', true, "a table: HOST or SPLICE"},
    {"tcp-ports", ArgKind::kRequired, 't', true, kSpec},
    {"udp-ports", ArgKind::kRequired, 'u', true, kSpec},
    {"tcp-ns", ArgKind::kRequired, 'T', true, kSpec},
    {"udp-ns", ArgKind::kRequired, 'U', true, kSpec},
    {"show", ArgKind::kNone, 's', true, ""},
    {"json", ArgKind::kNone, 0, false, ""},
    {"dry-run", ArgKind::kNone, 0, false, ""},
    {"comment", ArgKind::kRequired, 0, false, "a TEXT (quote it if it has spaces)"},
    {"file", ArgKind::kRequired, 0, false, "a FILE of options"},
    {"timeout", ArgKind::kRequired, 0, false, "a number of SECONDS"},
    {"history", ArgKind::kOptionalNumber, 0, false, ""},
    {"verify-audit", ArgKind::kRequired, 0, false, "an audit log FILE"},
    {"allow-empty", ArgKind::kNone, 0, false, ""},
    {"end-removed-flows", ArgKind::kNone, 0, false, ""},
    {"stats", ArgKind::kNone, 0, false, ""},
    {"prometheus", ArgKind::kNone, 0, false, ""},
    {"confirm-within", ArgKind::kRequired, 0, false, "a number of SECONDS"},
    {"confirm", ArgKind::kNone, 0, false, ""},
};

/// Returns the options whose name starts with `prefix`, among pesto's only
/// when `pesto_only`.
std::vector<const LongOption*> prefixed(std::string_view prefix, bool pesto_only) {
  std::vector<const LongOption*> out;
  for (const LongOption& o : kLongOptions) {
    if ((o.pesto || !pesto_only) && std::string_view(o.name).starts_with(prefix)) {
      out.push_back(&o);
    }
  }
  return out;
}

}  // namespace

std::span<const LongOption> long_options() {
  return kLongOptions;
}

Result<const LongOption*> find_long_option(std::string_view name) {
  if (name.empty()) {
    return Err("'--' followed by '=' is no option; write the option's name, e.g. --add");
  }
  for (const LongOption& o : kLongOptions) {
    if (name == o.name) return &o;
  }
  std::vector<const LongOption*> pesto = prefixed(name, true);
  if (pesto.size() == 1) return pesto.front();
  std::vector<const LongOption*> all = prefixed(name, false);
  if (all.size() == 1) return all.front();
  std::string shown = "'--" + sanitize(name, kMaxQuotedName) + "'";
  if (all.empty()) return Err("unknown option " + shown + "; see sluicectl -h for the options");
  std::string names;
  for (const LongOption* o : all) {
    names += names.empty() ? "--" : ", --";
    names += o->name;
  }
  return Err("option " + shown + " is ambiguous: it could be " + names +
             "; write more of the name");
}

}  // namespace sluice
