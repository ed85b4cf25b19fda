// sluicectl's command line: pesto's options plus sluice's own, parsed into a
// plan of commands. Pure apart from reading --file, which goes through a
// reader the caller passes in (main.cc reads real files before the sandbox;
// tests pass a map), so every rule here is unit-tested.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "schema/rules/table_edit.h"

namespace sluice {

/// Limit: bytes of one --file. Far above any hand-written option file (a few
/// thousand specs), and it bounds what the client reads before its sandbox.
inline constexpr size_t kMaxOptionFileBytes = 1 << 20;
/// Default and limits of --timeout: a server that does not answer in ten
/// seconds is stuck; an hour is the most a person would wait on purpose.
inline constexpr int kDefaultTimeoutSeconds = 10;
inline constexpr unsigned long kMaxTimeoutSeconds = 3600;
/// Default of --history: a screenful of recent pushes.
inline constexpr uint32_t kDefaultHistory = 20;

/// What sluicectl was asked to do, in the order it was asked.
struct Plan {
  enum class Action {
    kRun,          // connect, then list, edit or show history
    kHelp,         // -h: print the usage and exit
    kVersion,      // --version: print the version and exit
    kVerifyAudit,  // --verify-audit FILE: check an audit log's chain; no server involved
  };
  Action action = Action::kRun;
  std::vector<EditCommand> edits;  // -t/-u/-T/-U/-A/-D/-C in order; empty: list
  bool show = false;               // -s: before, after and diff
  bool debug = false;              // -d
  bool json = false;               // --json
  bool dry_run = false;            // --dry-run
  bool end_removed_flows = false;  // --end-removed-flows: reset connections of removed rules
  std::string comment;             // --comment, for the audit record
  int timeout_ms = kDefaultTimeoutSeconds * 1000;
  uint32_t history = 0;         // --history N: how many entries; 0 when not asked
  bool stats = false;           // --stats: counters per rule
  bool prometheus = false;      // --prometheus (with --stats): the text exposition format
  uint32_t confirm_within = 0;  // --confirm-within SECONDS: roll back unless confirmed; 0: no
  bool confirm = false;         // --confirm: confirm the commit that waits
  std::string path;             // the control socket; "" for default_control_path()
  std::string audit_path;       // --verify-audit FILE
  bool allow_empty = false;     // --allow-empty: an empty audit log verifies as intact

  /// True when the plan edits the tables (any -t/-u/-T/-U/-A/-D/-C).
  bool has_edits() const { return !edits.empty(); }
};

/// Reads a whole --file: returns its bytes, or fails with a message naming the
/// path and the reason. Tests pass a fake.
using FileReader = std::function<Result<std::string>(const std::string& path)>;

/// One word of an option file and the line it is on (1-based).
struct FileWord {
  std::string text;
  int line = 0;
  bool operator==(const FileWord&) const = default;
};

/// Splits the text of an option file into words: words are separated by
/// whitespace; a word starting with '#' starts a comment to the end of the
/// line; '...' and "..." quote text with spaces or '#' in it (no escapes, no
/// newline inside; quotes may join with unquoted text, as in a shell). Fails
/// on an unterminated quote or a NUL byte, with "NAME:LINE: " and what to do.
Result<std::vector<FileWord>> split_option_file(std::string_view text, const std::string& name);

/// Parses sluicectl's arguments (`args` without the program name) into a plan.
/// Options: pesto's whole table, -t/--tcp-ports, -u/--udp-ports, -T/--tcp-ns,
/// -U/--udp-ns SPEC, -A/--add, -D/--delete, -C/--clear PIF (HOST or SPLICE,
/// any case), -s/--show, -d/--debug, -h/--help, --version; sluice's --json,
/// --dry-run, --comment TEXT, --file FILE, --timeout SECONDS, --history [N],
/// --stats, --verify-audit FILE, --end-removed-flows; and one PATH, anywhere
/// (GNU getopt's permutation, as pesto). Short options may be bundled (-As)
/// and take their value attached (-t22) or as the next argument; long options
/// take "--opt VALUE" or "--opt=VALUE" and may be abbreviated as
/// find_long_option allows; "--history" takes N only when the next argument
/// is a number; "--" ends the options. --file splices the file's options in place (see
/// split_option_file); a file may not name a PATH or another --file.
/// -h and --version stop parsing at once. Fails with a usage error that names
/// the option (and "FILE:LINE: " inside a file), why, and what to do: an
/// unknown or ambiguous option, a missing or bad value, a second PATH, --history or
/// --stats with edits or with each other, --prometheus without --stats or with --json,
/// --confirm-within without edits or with --dry-run, --confirm with anything but --json, --dry-run
/// or --comment without edits, an unreadable file.
Result<Plan> parse_command_line(const std::vector<std::string>& args, const FileReader& reader);

/// Parses every -t/-u/-T/-U spec of `plan` with permissive_spec_context()
/// (client/spec_context.h), before sluicectl connects: a spec that does not
/// parse is a usage error, not a connection problem, whether the server is
/// there or not. Fails with the parser's message (after "FILE:LINE: " for a
/// spec from --file); when no PATH was given and the spec looks like a path
/// (a '/' and a word of letters no spec has, as in control.sock), it adds
/// that a SPEC goes right after its option and the PATH comes last. What
/// passes may still be refused with the server's facts, later.
Result<void> check_specs(const Plan& plan);

/// Reads the file at `path` with open/read (before the sandbox: the client's
/// seccomp allowlist has no open). Fails on an error of open or read, on a
/// directory or other non-regular file, and over kMaxOptionFileBytes.
Result<std::string> read_option_file(const std::string& path);

/// Returns the usage text printed by -h.
std::string usage_text();

}  // namespace sluice
