// sluicectl's long options: pesto's own option table (pesto.c) and sluice's
// additions, and how a name on the command line finds its option, as
// getopt_long(3) finds it: the exact name, or an unambiguous prefix. Pure;
// used by cli.cc and unit-tested in tests/client/cli_test.cc.
#pragma once

#include <span>
#include <string_view>

#include "base/result.h"

namespace sluice {

/// How a long option takes its value.
enum class ArgKind {
  kNone,            // no value; "--opt=V" is an error
  kRequired,        // "--opt=V", or "--opt V" with V the next argument, whatever it starts with
  kOptionalNumber,  // "--opt=N", or "--opt N" only when N is a number
};

/// One long option.
struct LongOption {
  const char* name;  // without the leading "--"
  ArgKind kind;
  char short_name;    // the short option it is another name for ('t' for tcp-ports), or 0
  bool pesto;         // in pesto's option table: its prefixes resolve as in pesto
  const char* value;  // what the value is, for "--opt needs ..." messages; "" without one
};

/// Returns every long option: pesto's (add, delete, clear, tcp-ports,
/// udp-ports, tcp-ns, udp-ns, show, debug, help, version) and sluice's own.
std::span<const LongOption> long_options();

/// Finds the long option `name` (the text after "--", without "=VALUE"):
/// 1. the option of exactly that name;
/// 2. else the one option of pesto's table that `name` is a prefix of, so
///    that every prefix pesto accepts means here what it means to pesto
///    (--s is --show, --c --clear, --v --version, --h --help), although
///    sluice's own options share those prefixes;
/// 3. else the one option of all that `name` is a prefix of.
/// Fails on an empty name, on a name that is no option's prefix, and on a
/// prefix of several options, naming them.
Result<const LongOption*> find_long_option(std::string_view name);

}  // namespace sluice
