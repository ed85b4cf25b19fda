#include "client/cli.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "base/strings.h"
#include "base/unique_fd.h"
#include "client/long_options.h"
#include "client/spec_context.h"
#include "schema/codec.h"
#include "schema/rules/spec_parser.h"

namespace sluice {
namespace {

/// One argument and where it came from.
struct Arg {
  std::string text;
  std::string origin;  // "" on the command line, "FILE:LINE" from a file
};

/// Returns "FILE:LINE: " for an argument from a file, else "".
std::string where(const Arg& arg) {
  return arg.origin.empty() ? std::string() : arg.origin + ": ";
}

/// Returns `text` quoted for a message: 'text', sanitised and cut.
std::string quote(std::string_view text) {
  return "'" + sanitize(text, kMaxQuotedBytes) + "'";
}

/// True when `text` is a non-empty run of decimal digits.
bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

/// Returns the usage error of a --history count that is not one: `value` is
/// what was given, `where_text` where ("FILE:LINE: " or "").
Unexpected history_count_error(const std::string& where_text, std::string_view value) {
  return Err(where_text + "--history takes a number of entries from 1 to " +
             std::to_string(control::kMaxHistory) + " (the server keeps that many), not " +
             quote(value));
}

/// True when `c` is an ASCII letter.
bool is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// True when `word`, a run of letters, may stand in a spec outside an
/// interface name: the words all and auto, or hex digits (of an IPv6
/// address).
bool spec_word(std::string_view word) {
  if (word == "all" || word == "auto") return true;
  for (char c : word) {
    if (!((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

/// True when `spec` looks like a file's path rather than a spec: it has a
/// '/' and a run of two or more letters (outside a %IFNAME, which ends at
/// its '/') that no spec has, such as "tmp" or "sock". A single stray letter
/// ("80x") is a typo in a spec, not a path.
bool looks_like_path(std::string_view spec) {
  if (spec.find('/') == std::string_view::npos) return false;
  size_t i = 0;
  while (i < spec.size()) {
    if (spec[i] == '%') {  // an interface name: any letters, up to its '/'
      size_t slash = spec.find('/', i);
      if (slash == std::string_view::npos) return false;
      i = slash;
      continue;
    }
    if (!is_letter(spec[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < spec.size() && is_letter(spec[end])) ++end;
    std::string_view word = spec.substr(i, end - i);
    if (word.size() >= 2 && !spec_word(word)) return true;
    i = end;
  }
  return false;
}

/// Returns the pif named `text` (HOST or SPLICE, any case), or nullopt.
std::optional<Pif> parse_pif(std::string_view text) {
  std::string upper;
  for (char c : text) upper += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  if (upper == "HOST") return Pif::kHost;
  if (upper == "SPLICE") return Pif::kSplice;
  return std::nullopt;
}

/// Checks that every -A and -D has a spec after it. A mode switch applies
/// only to the specs that follow it, so a trailing one applies to nothing; the
/// specs before it then replace their table, which wiped whole tables when
/// "-t SPEC -A" was meant as "add SPEC" (pesto takes that line silently and
/// replaces the table). Fails with a usage error that names the switch, says
/// what the line would do instead, and, when the specs before it are the
/// line's only specs, gives the line to write. After an earlier -A/-D no
/// rewritten line is safe to suggest (putting the trailing -D first could turn
/// an add into a delete), so the error only says to remove the switch or to
/// put its specs after it.
Result<void> check_mode_switches(const Plan& plan) {
  using Kind = EditCommand::Kind;
  const std::vector<EditCommand>& edits = plan.edits;
  size_t last_spec = edits.size();  // none
  for (size_t i = 0; i < edits.size(); ++i) {
    if (edits[i].kind == Kind::kSpec) last_spec = i;
  }
  size_t first_after = last_spec == edits.size() ? 0 : last_spec + 1;
  const EditCommand* stray = nullptr;
  for (size_t i = first_after; i < edits.size() && stray == nullptr; ++i) {
    if (edits[i].kind == Kind::kAppend || edits[i].kind == Kind::kDelete) stray = &edits[i];
  }
  if (stray == nullptr) return Ok();
  bool earlier_switch = false;  // an -A/-D before the stray one
  for (const EditCommand* e = edits.data(); e != stray; ++e) {
    if (e->kind == Kind::kAppend || e->kind == Kind::kDelete) earlier_switch = true;
  }
  const std::string name = stray->kind == Kind::kAppend ? "-A" : "-D";
  const std::string where_text = stray->origin.empty() ? "" : stray->origin + ": ";
  const std::string socket = plan.path.empty() ? "" : " " + shell_word(sanitize(plan.path));
  // The specs given before any -A/-D: those replace their table.
  std::vector<const EditCommand*> replacing;
  bool host = false, splice = false;
  for (const EditCommand& e : edits) {
    if (e.kind == Kind::kAppend || e.kind == Kind::kDelete) break;
    if (e.kind != Kind::kSpec) continue;
    replacing.push_back(&e);
    (e.option == 't' || e.option == 'u' ? host : splice) = true;
  }
  if (earlier_switch && !replacing.empty()) {
    return Err(where_text + "the trailing " + name +
               " applies to the specs after it, and no spec follows it here, so it applies to "
               "nothing; remove it, or put the specs it should " +
               (stray->kind == Kind::kAppend ? "add" : "delete") + " after it");
  }
  if (replacing.empty()) {
    return Err(where_text + name + " applies to the specs after it, and no spec follows it " +
               "here, so it would do nothing; put the specs to " +
               (stray->kind == Kind::kAppend ? "add" : "delete") + " after it: sluicectl " + name +
               " -t SPEC" + (socket.empty() ? " SOCKET" : socket));
  }
  // The line to write: the same specs, after the switch. Up to four of them
  // are shown as given; more would make the message a wall of text.
  constexpr size_t kMaxShownSpecs = 4;
  std::string example = "sluicectl " + name;
  for (size_t i = 0; i < replacing.size() && i < kMaxShownSpecs; ++i) {
    example +=
        std::string(" -") + replacing[i]->option + " " + shell_word(sanitize(replacing[i]->spec));
  }
  if (replacing.size() > kMaxShownSpecs) example += " ...";
  example += socket.empty() ? " SOCKET" : socket;
  const std::string tables = host && splice ? "HOST and SPLICE" : host ? "HOST" : "SPLICE";
  return Err(where_text + name + " applies to the specs after it; nothing follows it here, " +
             "so this would replace every rule of " + tables +
             " with the specs before it (pesto would do so without a word). Put " + name +
             " first: " + example);
}

/// Builds a plan from arguments; one instance per parse_command_line call.
class Parser {
 public:
  explicit Parser(const FileReader& reader) : reader_(reader) {}

  /// Parses `args`, which come from the command line or (`in_file`) from one
  /// option file. Fails on the first usage error.
  Result<void> parse(const std::vector<Arg>& args, bool in_file);
  /// Checks how the options combine, once everything is parsed.
  Result<void> finish();

  Plan plan;
  bool stopped = false;  // -h or --version seen

 private:
  /// Reads the value of option `name` from the rest of a short cluster or
  /// the next argument (in a file: on the same line). Advances `*i`.
  Result<std::string> take_value(const std::vector<Arg>& args, size_t* i, std::string attached,
                                 const std::string& name, const char* what);
  /// Handles one short option letter; `value` is its value when it takes one.
  Result<void> short_option(char c, const std::string& value, const Arg& arg);
  /// Handles one argument that starts with "--". Advances `*i` past a value.
  Result<void> long_option(const std::vector<Arg>& args, size_t* i, bool in_file);
  /// Handles --file: reads, splits and parses the file in place.
  Result<void> include_file(const std::string& path, const Arg& arg, bool in_file);
  /// Handles an argument that is not an option: the control socket path.
  /// `after_history` says that it came right after a --history without N.
  Result<void> positional(const Arg& arg, bool in_file, bool after_history);

  const FileReader& reader_;
  bool comment_given_ = false;
  bool path_given_ = false;
  std::string history_where_;      // how --history was given, for messages
  std::string stats_where_;        // how --stats was given, for messages
  std::string prometheus_where_;   // how --prometheus was given, for messages
  std::string confirm_where_;      // how --confirm or --confirm-within was given
  std::string verify_where_;       // how --verify-audit was given, for messages
  std::string allow_empty_where_;  // how --allow-empty was given, for messages
  std::string end_flows_where_;    // how --end-removed-flows was given, for messages
  std::string dry_run_where_, comment_where_;
  // The argument right after a --history given without N, until the parse
  // loop reaches it; and whether the PATH was that argument: then a second
  // PATH means that the word was meant as --history's N.
  const Arg* after_bare_history_ = nullptr;
  bool path_after_history_ = false;
};

Result<std::string> Parser::take_value(const std::vector<Arg>& args, size_t* i,
                                       std::string attached, const std::string& name,
                                       const char* what) {
  const Arg& arg = args[*i];
  if (!attached.empty()) return attached;
  // From a file, the value must be on the option's own line: the origins
  // ("FILE:LINE") are equal. On the command line both are "".
  if (*i + 1 < args.size() && args[*i + 1].origin == arg.origin) {
    ++*i;
    return args[*i].text;
  }
  return Err(where(arg) + name + " needs " + what +
             (arg.origin.empty() ? "" : " on the same line"));
}

Result<void> Parser::short_option(char c, const std::string& value, const Arg& arg) {
  switch (c) {
    case 't':
    case 'u':
    case 'T':
    case 'U': {
      EditCommand command;
      command.kind = EditCommand::Kind::kSpec;
      command.option = c;
      command.spec = value;
      command.origin = arg.origin;
      plan.edits.push_back(std::move(command));
      return Ok();
    }
    case 'A':
    case 'D': {
      EditCommand command;
      command.kind = c == 'A' ? EditCommand::Kind::kAppend : EditCommand::Kind::kDelete;
      command.origin = arg.origin;
      plan.edits.push_back(std::move(command));
      return Ok();
    }
    case 'C': {
      std::optional<Pif> pif = parse_pif(value);
      if (!pif) {
        return Err(where(arg) + "-C " + quote(value) +
                   ": no such table; write -C HOST (the -t/-u rules) or -C SPLICE (the -T/-U "
                   "rules)");
      }
      EditCommand command;
      command.kind = EditCommand::Kind::kClear;
      command.pif = *pif;
      command.origin = arg.origin;
      plan.edits.push_back(std::move(command));
      return Ok();
    }
    case 's':
      plan.show = true;
      return Ok();
    case 'd':
      plan.debug = true;
      return Ok();
    case 'h':
      plan.action = Plan::Action::kHelp;
      stopped = true;
      return Ok();
    default:
      return Err(where(arg) + "unknown option -" + sanitize(std::string_view(&c, 1)) + " in " +
                 quote(arg.text) + "; see sluicectl -h for the options");
  }
}

Result<void> Parser::include_file(const std::string& path, const Arg& arg, bool in_file) {
  if (in_file) {
    return Err(where(arg) +
               "--file cannot be used inside an option file (files do not nest); give every "
               "--file on the command line");
  }
  auto text = reader_(path);
  if (!text) return Err("--file " + quote(path) + ": " + text.error().message);
  auto words = split_option_file(*text, path);
  if (!words) return Err(words.error());  // the message starts with "FILE:LINE: "
  std::vector<Arg> args;
  args.reserve(words->size());
  for (FileWord& word : *words) {
    args.push_back(Arg{std::move(word.text), path + ":" + std::to_string(word.line)});
  }
  return parse(args, true);
}

Result<void> Parser::long_option(const std::vector<Arg>& args, size_t* i, bool in_file) {
  const Arg& arg = args[*i];
  std::string_view body = std::string_view(arg.text).substr(2);
  std::optional<std::string> inline_value;
  size_t eq = body.find('=');
  if (eq != std::string_view::npos) {
    inline_value = std::string(body.substr(eq + 1));
    body = body.substr(0, eq);
  }
  auto found = find_long_option(body);
  if (!found) return Err(where(arg) + found.error().message);
  const LongOption* option = *found;
  std::string name = std::string("--") + option->name;
  std::string value;
  if (option->kind == ArgKind::kNone && inline_value) {
    return Err(where(arg) + name + " takes no value; write " + name + " alone");
  }
  if (option->kind == ArgKind::kRequired) {
    if (inline_value) {
      value = *inline_value;
    } else {
      auto v = take_value(args, i, "", name, option->value);
      if (!v) return Err(v.error());
      value = *v;
    }
  }
  // pesto's options with a short name (--add, --tcp-ports, ...) are that
  // short option under another name.
  if (option->short_name != 0) return short_option(option->short_name, value, arg);
  body = option->name;
  if (body == "version") {
    plan.action = Plan::Action::kVersion;
    stopped = true;
  } else if (body == "end-removed-flows") {
    plan.end_removed_flows = true;
    end_flows_where_ = where(arg);
  } else if (body == "verify-audit") {
    plan.action = Plan::Action::kVerifyAudit;
    plan.audit_path = value;
    verify_where_ = where(arg);
  } else if (body == "allow-empty") {
    plan.allow_empty = true;
    allow_empty_where_ = where(arg);
  } else if (body == "json") {
    plan.json = true;
  } else if (body == "stats") {
    plan.stats = true;
    stats_where_ = where(arg);
  } else if (body == "confirm-within") {
    unsigned long seconds = 0;
    if (!parse_uint(value, control::kMaxConfirmWithinSeconds, &seconds) || seconds == 0) {
      return Err(where(arg) + "--confirm-within takes whole seconds from 1 to " +
                 std::to_string(control::kMaxConfirmWithinSeconds) + ", not " + quote(value));
    }
    plan.confirm_within = static_cast<uint32_t>(seconds);
    confirm_where_ = where(arg);
  } else if (body == "confirm") {
    plan.confirm = true;
    confirm_where_ = where(arg);
  } else if (body == "prometheus") {
    plan.prometheus = true;
    prometheus_where_ = where(arg);
  } else if (body == "dry-run") {
    plan.dry_run = true;
    dry_run_where_ = where(arg);
  } else if (body == "comment") {
    if (comment_given_) {
      return Err(where(arg) + "--comment is given twice; give one comment for the commit");
    }
    if (value.size() > control::kMaxCommentBytes) {
      return Err(where(arg) + "--comment has " + std::to_string(value.size()) +
                 " bytes, over the limit of " + std::to_string(control::kMaxCommentBytes) +
                 "; shorten it to one line of prose (the audit log keeps the details)");
    }
    for (char c : value) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return Err(where(arg) + "--comment " + quote(value) +
                   " has a control character (such as a newline); write it on one line");
      }
    }
    comment_given_ = true;
    comment_where_ = where(arg);
    plan.comment = value;
  } else if (body == "file") {
    return include_file(value, arg, in_file);
  } else if (body == "timeout") {
    unsigned long seconds = 0;
    if (!parse_uint(value, kMaxTimeoutSeconds, &seconds) || seconds == 0) {
      return Err(where(arg) + "--timeout takes whole seconds from 1 to " +
                 std::to_string(kMaxTimeoutSeconds) + ", not " + quote(value));
    }
    plan.timeout_ms = static_cast<int>(seconds * 1000);
  } else if (body == "history") {
    if (!inline_value && *i + 1 < args.size() && all_digits(args[*i + 1].text) &&
        args[*i + 1].origin == arg.origin) {
      ++*i;
      inline_value = args[*i].text;
    }
    unsigned long n = kDefaultHistory;
    if (inline_value && (!parse_uint(*inline_value, control::kMaxHistory, &n) || n == 0)) {
      return history_count_error(where(arg), *inline_value);
    }
    // A word that is not a number is taken as the PATH; should a second
    // positional word follow, positional() says that it was meant as N.
    if (!inline_value && *i + 1 < args.size()) after_bare_history_ = &args[*i + 1];
    plan.history = static_cast<uint32_t>(n);
    history_where_ = where(arg);
  }
  return Ok();
}

Result<void> Parser::positional(const Arg& arg, bool in_file, bool after_history) {
  if (in_file) {
    return Err(where(arg) + "unexpected word " + quote(arg.text) +
               ": an option file holds options only (a SPEC goes after its -t/-u/-T/-U); give "
               "the control socket PATH on the command line");
  }
  // Two PATHs, one of them right after --history: that word was meant as N.
  if (path_given_ && (path_after_history_ || after_history)) {
    return history_count_error(history_where_, path_after_history_ ? plan.path : arg.text);
  }
  if (path_given_) {
    return Err("one control socket PATH at most; got " + quote(plan.path) + " and " +
               quote(arg.text) + " (a SPEC goes right after its -t/-u/-T/-U)");
  }
  if (arg.text.empty()) return Err("the control socket PATH is empty; give a path or leave it out");
  path_given_ = true;
  path_after_history_ = after_history;
  plan.path = arg.text;
  return Ok();
}

Result<void> Parser::parse(const std::vector<Arg>& args, bool in_file) {
  bool options_done = false;
  for (size_t i = 0; i < args.size() && !stopped; ++i) {
    const Arg& arg = args[i];
    const std::string& text = arg.text;
    const bool after_history = &arg == after_bare_history_;
    after_bare_history_ = nullptr;
    if (options_done || text.size() < 2 || text[0] != '-') {
      auto r = positional(arg, in_file, after_history);
      if (!r) return r;
      continue;
    }
    if (text == "--") {
      if (in_file) return Err(where(arg) + "'--' has no meaning in an option file; remove it");
      options_done = true;
      continue;
    }
    if (text[1] == '-') {
      auto r = long_option(args, &i, in_file);
      if (!r) return r;
      continue;
    }
    // A cluster of short options: flags, then at most one that takes a value
    // (the rest of the cluster, or the next argument).
    for (size_t k = 1; k < text.size() && !stopped; ++k) {
      char c = text[k];
      if (std::strchr("tuTUC", c) != nullptr) {
        std::string name = std::string("-") + c;
        const char* what = c == 'C' ? "a table: HOST or SPLICE" : "a SPEC (e.g. 8080:80)";
        auto value = take_value(args, &i, text.substr(k + 1), name, what);
        if (!value) return Err(value.error());
        auto r = short_option(c, *value, arg);
        if (!r) return r;
        break;
      }
      auto r = short_option(c, "", arg);
      if (!r) return r;
    }
  }
  return Ok();
}

Result<void> Parser::finish() {
  if (stopped) return Ok();
  if (plan.action == Plan::Action::kVerifyAudit &&
      (plan.has_edits() || plan.history != 0 || plan.dry_run || comment_given_ || plan.show ||
       !plan.path.empty())) {
    return Err(verify_where_ +
               "--verify-audit reads a file and talks to no server: it goes with --json and "
               "--allow-empty only; "
               "run other actions as a separate command");
  }
  if (plan.allow_empty && plan.action != Plan::Action::kVerifyAudit) {
    return Err(allow_empty_where_ +
               "--allow-empty is about an audit log: it goes with --verify-audit FILE only");
  }
  if (plan.stats) {
    if (plan.has_edits() || plan.history != 0) {
      return Err(stats_where_ +
                 "--stats shows counters and does not go with edits (-t/-u/-T/-U/-A/-D/-C) or "
                 "--history; run them as separate commands");
    }
    if (plan.dry_run || comment_given_ || plan.show) {
      return Err(stats_where_ +
                 "--stats does not go with --dry-run, --comment or -s, which are about an edit; "
                 "drop them");
    }
  }
  if (plan.confirm && (plan.has_edits() || plan.stats || plan.history != 0 || plan.dry_run ||
                       comment_given_ || plan.show || plan.confirm_within != 0)) {
    return Err(confirm_where_ +
               "--confirm confirms the commit that waits and does nothing else (it goes with "
               "--json only); run other actions as a separate command");
  }
  if (plan.confirm_within != 0 && !plan.has_edits()) {
    return Err(confirm_where_ +
               "--confirm-within applies to an edit, and there is no edit; e.g. sluicectl "
               "--confirm-within 60 -t 8080:80");
  }
  if (plan.confirm_within != 0 && plan.dry_run) {
    return Err(confirm_where_ +
               "--confirm-within and --dry-run do not go together: a dry run changes nothing, "
               "so there is nothing to confirm or roll back");
  }
  if (plan.prometheus && !plan.stats) {
    return Err(prometheus_where_ +
               "--prometheus is a format of the counters: write sluicectl --stats --prometheus");
  }
  if (plan.prometheus && plan.json) {
    return Err(prometheus_where_ +
               "--prometheus and --json are two formats of the counters; choose one");
  }
  if (plan.history != 0) {
    if (plan.has_edits()) {
      return Err(history_where_ +
                 "--history shows past commits and does not go with edits (-t/-u/-T/-U/-A/-D/"
                 "-C); run them as two commands");
    }
    if (plan.dry_run || comment_given_ || plan.show) {
      return Err(history_where_ +
                 "--history does not go with --dry-run, --comment or -s, which are about an "
                 "edit; drop them");
    }
  }
  if (auto switches = check_mode_switches(plan); !switches) return switches;
  if (!plan.has_edits()) {
    if (plan.end_removed_flows) {
      return Err(end_flows_where_ +
                 "--end-removed-flows applies to the rules an edit removes, and there is no "
                 "edit; e.g. sluicectl --end-removed-flows -D -t 8080");
    }
    if (plan.dry_run) {
      return Err(dry_run_where_ +
                 "--dry-run needs an edit to try, e.g. sluicectl --dry-run -t 8080:80");
    }
    if (comment_given_) {
      return Err(comment_where_ +
                 "--comment describes an edit for the audit log, and there is no edit; add "
                 "the -t/-u/-T/-U/-A/-D/-C options it describes");
    }
  }
  return Ok();
}

}  // namespace

Result<std::vector<FileWord>> split_option_file(std::string_view text, const std::string& name) {
  std::vector<FileWord> words;
  int line = 1;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '\0') {
      return Err(name + ":" + std::to_string(line) +
                 ": the file has a NUL byte; an option file is text, one or more options a line");
    }
    if (c == '\n') {
      ++line;
      ++i;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
      ++i;
      continue;
    }
    if (c == '#') {  // a comment, to the end of the line
      while (i < text.size() && text[i] != '\n') ++i;
      continue;
    }
    // A word: unquoted bytes and quoted runs, up to whitespace.
    std::string word;
    while (i < text.size()) {
      c = text[i];
      if (c == '\n' || c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') break;
      if (c == '\0') {
        return Err(name + ":" + std::to_string(line) +
                   ": the file has a NUL byte; an option file is text, one or more options a "
                   "line");
      }
      if (c == '\'' || c == '"') {
        size_t close = i + 1;
        while (close < text.size() && text[close] != c && text[close] != '\n' &&
               text[close] != '\0') {
          ++close;
        }
        if (close >= text.size() || text[close] != c) {
          return Err(name + ":" + std::to_string(line) + ": the " + std::string(1, c) +
                     " quote is not closed on this line; close it (quotes cannot span lines "
                     "and have no escapes)");
        }
        word.append(text.substr(i + 1, close - i - 1));
        i = close + 1;
        continue;
      }
      word += c;
      ++i;
    }
    words.push_back(FileWord{std::move(word), line});
  }
  return words;
}

Result<Plan> parse_command_line(const std::vector<std::string>& args, const FileReader& reader) {
  std::vector<Arg> in;
  in.reserve(args.size());
  for (const std::string& a : args) in.push_back(Arg{a, ""});
  Parser parser(reader);
  auto parsed = parser.parse(in, false);
  if (!parsed) return Err(parsed.error());
  auto finished = parser.finish();
  if (!finished) return Err(finished.error());
  return std::move(parser.plan);
}

Result<void> check_specs(const Plan& plan) {
  const SpecContext ctx = permissive_spec_context();
  for (const EditCommand& command : plan.edits) {
    if (command.kind != EditCommand::Kind::kSpec) continue;
    auto rules = parse_spec(command.option, command.spec, ctx);
    if (rules) continue;
    std::string message =
        (command.origin.empty() ? "" : command.origin + ": ") + rules.error().message;
    if (plan.path.empty() && command.origin.empty() && looks_like_path(command.spec)) {
      message += std::string("; if ") + quote(command.spec) +
                 " is the control socket: a SPEC goes right after its -t/-u/-T/-U, and the "
                 "socket PATH comes last, e.g. sluicectl -A -" +
                 command.option + " 8080:80 PATH";
    }
    return Err(message);
  }
  return Ok();
}

Result<std::string> read_option_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    int err = errno;
    return Err(err, "cannot open it: " + errno_text(err) + "; give the path of a file of options");
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    int err = errno;
    return SysErr(err, "cannot stat it");
  }
  if (S_ISDIR(st.st_mode)) {
    return Err(EISDIR, "it is a directory; give the path of a file of options");
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      return SysErr(err, "cannot read it");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxOptionFileBytes) {
      return Err(EFBIG, "it is larger than " + std::to_string(kMaxOptionFileBytes) +
                            " bytes; split it into several --file options");
    }
  }
  return out;
}

}  // namespace sluice

namespace sluice {

std::string usage_text() {
  return "Usage: sluicectl [OPTION]... [PATH]\n"
         "Show or edit the forwarding tables of a running sluiced. Takes pesto's command\n"
         "line. Without an edit option, list the tables.\n"
         "\n"
         "Edits, applied in order to the tables read from the server:\n"
         "  -t SPEC, --tcp-ports=SPEC  TCP rules of the HOST table (inbound)\n"
         "  -u SPEC, --udp-ports=SPEC  UDP rules of the HOST table\n"
         "  -T SPEC, --tcp-ns=SPEC     TCP rules of the SPLICE table (outbound)\n"
         "  -U SPEC, --udp-ns=SPEC     UDP rules of the SPLICE table\n"
         "                     Without -A/-D, specs replace their table: the first -t/-u\n"
         "                     empties HOST, the first -T/-U empties SPLICE.\n"
         "  -A, --add          the specs that follow add to their table; -A goes before\n"
         "                     them (an -A or -D that no spec follows is an error)\n"
         "  -D, --delete       the specs that follow delete the rules they match (listen\n"
         "                     part, target and flags; part of a rule's ports splits it)\n"
         "  -C PIF, --clear=PIF  empty table PIF (HOST or SPLICE)\n"
         "  -s, --show         show the tables before and after, and the difference\n"
         "      --dry-run      check the edit on the server, change nothing\n"
         "      --comment TEXT record TEXT with the commit (at most 1024 bytes)\n"
         "      --end-removed-flows  reset the connections of the rules the edit removes\n"
         "                     (by default they live on until they close)\n"
         "      --confirm-within SECONDS  roll the commit back automatically (a new\n"
         "                     commit of the tables before it) unless sluicectl\n"
         "                     --confirm arrives within SECONDS (1 to 86400); other\n"
         "                     commits are refused meanwhile\n"
         "      --confirm      confirm the commit that waits for confirmation\n"
         "      --file FILE    read options from FILE, in place: one or more a line,\n"
         "                     words split at spaces, '#' comments, '...' or \"...\" quotes\n"
         "\n"
         "Other options:\n"
         "  PATH               control socket, anywhere on the line (default:\n"
         "                     /run/sluice/control.sock as root, else\n"
         "                     $XDG_RUNTIME_DIR/sluice/control.sock)\n"
         "      --json         print one JSON object instead of text\n"
         "      --history [N]  show the last N commit attempts (default 20, at most 256)\n"
         "      --stats        show the counters of every rule: connections, bytes,\n"
         "                     UDP flows and datagrams\n"
         "      --prometheus   with --stats: print the Prometheus text format (0.0.4),\n"
         "                     for node_exporter's textfile collector\n"
         "      --verify-audit FILE  check the hash chain of an audit log (sluiced\n"
         "                     --audit-log) and the links between its runs; exit 0\n"
         "                     intact, 1 broken, unlinked or empty, 3 unreadable\n"
         "      --allow-empty  with --verify-audit: an empty file is intact\n"
         "      --timeout SECONDS  give up on an unresponsive server (default 10)\n"
         "  -d, --debug        print debugging messages\n"
         "  -h, --help         show this help and exit\n"
         "      --version      show the version and exit\n"
         "Long options take --opt=VALUE or --opt VALUE, and any unambiguous prefix\n"
         "(--del); a prefix of one of pesto's options means what it means to pesto.\n"
         "\n"
         "SPEC is the pasta/pesto syntax, e.g. 22, 8080:80, 127.0.0.1/8080:80,\n"
         "2000-2010,~2005, all, auto, none (see sluicectl(1) and docs/RULES.md).\n"
         "\n"
         "Exit status: 0 shown or applied (or nothing to change), 1 rejected (with the\n"
         "reasons), 2 usage error, 3 connection or protocol error, 4 the tables kept\n"
         "changing under concurrent clients (stale generation after 3 attempts).\n";
}

}  // namespace sluice
