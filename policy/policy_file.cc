// Parser of the administrator's policy file (format in policy_file.h).
#include "policy/policy_file.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/strings.h"
#include "base/unique_fd.h"

namespace sluice {
namespace {

/// Returns true for the blanks that separate fields ('\r' too, for files
/// written on Windows).
bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/// Splits `line` into blank-separated fields.
std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

/// Splits `text` at every `sep`, keeping empty elements (so "80,,81" is caught).
std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t pos = text.find(sep, start);
    out.push_back(text.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

/// Quotes a field for an error message, sanitised.
std::string quoted(std::string_view field) {
  return "\"" + sanitize(field, 64) + "\"";
}

/// Parses PROTOS (tcp | udp | tcp,udp | *) into `rule`. Fails naming the bad element.
Result<void> parse_protos(std::string_view field, BindRule* rule) {
  if (field == "*") {
    rule->tcp = rule->udp = true;
    return Ok();
  }
  for (std::string_view p : split(field, ',')) {
    bool* slot = p == "tcp" ? &rule->tcp : p == "udp" ? &rule->udp : nullptr;
    if (slot == nullptr) {
      return Err("unknown protocol " + quoted(p) + " (expected tcp, udp, tcp,udp or *)");
    }
    if (*slot) return Err("protocol " + quoted(p) + " is listed twice");
    *slot = true;
  }
  return Ok();
}

/// Parses one port number, 1..65535.
Result<uint16_t> parse_port(std::string_view text) {
  unsigned long v = 0;
  if (!parse_uint(text, 65535, &v) || v == 0) {
    return Err("bad port " + quoted(text) + " (expected a number from 1 to 65535)");
  }
  return static_cast<uint16_t>(v);
}

/// Parses PORTS (* | N | N-M, comma-separated) into `rule`.
Result<void> parse_ports(std::string_view field, BindRule* rule) {
  if (field == "*") {
    rule->any_port = true;
    return Ok();
  }
  for (std::string_view item : split(field, ',')) {
    size_t dash = item.find('-');
    auto first = parse_port(item.substr(0, dash));
    if (!first) return Err(first.error());
    PortRange range{*first, *first};
    if (dash != std::string_view::npos) {
      auto last = parse_port(item.substr(dash + 1));
      if (!last) return Err(last.error());
      if (*last < *first) {
        return Err("port range " + quoted(item) + " ends before it starts (write N-M with N <= M)");
      }
      range.last = *last;
    }
    rule->ports.push_back(range);
  }
  return Ok();
}

/// Parses one address or CIDR prefix ("10.0.0.0/8", "::1") into the 16-byte
/// form of bind_policy.h. Rejects host bits beyond the prefix (naming the
/// intended prefix) and IPv4-mapped IPv6 addresses (IPv4 is written plainly).
Result<AddrPrefix> parse_prefix(std::string_view item) {
  size_t slash = item.find('/');
  std::string addr_text(item.substr(0, slash));
  AddrPrefix p;
  bool v6 = addr_text.find(':') != std::string::npos;
  p.family = v6 ? wire::WireFamily::kInet6 : wire::WireFamily::kInet;
  unsigned max_len = v6 ? 128 : 32;
  int parsed = v6 ? inet_pton(AF_INET6, addr_text.c_str(), p.addr)
                  : inet_pton(AF_INET, addr_text.c_str(), p.addr + 12);
  if (parsed != 1 || addr_text.find('\0') != std::string::npos) {
    return Err("bad address " + quoted(addr_text) +
               " (expected an IPv4 or IPv6 address, optionally with /LENGTH, or *)");
  }
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (v6 && std::memcmp(p.addr, kMappedPrefix, 12) == 0) {
    return Err("IPv4-mapped address " + quoted(addr_text) + ": write IPv4 addresses plainly");
  }
  if (!v6) std::memcpy(p.addr, kMappedPrefix, 12);
  unsigned long len = max_len;
  if (slash != std::string_view::npos && !parse_uint(item.substr(slash + 1), max_len, &len)) {
    return Err("bad prefix length in " + quoted(item) + " (expected /0 to /" +
               std::to_string(max_len) + ")");
  }
  p.bits = static_cast<uint8_t>(len + (v6 ? 0 : 96));
  AddrPrefix masked = p;
  for (unsigned bit = p.bits; bit < 128; ++bit) {
    masked.addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  if (std::memcmp(masked.addr, p.addr, 16) != 0) {
    char text[INET6_ADDRSTRLEN] = "?";
    inet_ntop(v6 ? AF_INET6 : AF_INET, v6 ? masked.addr : masked.addr + 12, text, sizeof(text));
    return Err(quoted(item) + " has bits set beyond its prefix; did you mean " + text + "/" +
               std::to_string(len) + "?");
  }
  return p;
}

/// Parses ADDRS (* | comma-separated prefixes) into `rule`.
Result<void> parse_addrs(std::string_view field, BindRule* rule) {
  if (field == "*") {
    rule->any_addr = true;
    return Ok();
  }
  for (std::string_view item : split(field, ',')) {
    auto p = parse_prefix(item);
    if (!p) return Err(p.error());
    rule->addrs.push_back(*p);
  }
  return Ok();
}

/// Parses the fields of one `bind` line (fields[0] == "bind").
Result<BindRule> parse_bind_line(const std::vector<std::string_view>& fields) {
  if (fields.size() != 5) {
    return Err("a bind line has 5 fields, `bind allow|deny PROTOS PORTS ADDRS`, this one has " +
               std::to_string(fields.size()));
  }
  BindRule rule;
  if (fields[1] != "allow" && fields[1] != "deny") {
    return Err("unknown action " + quoted(fields[1]) + " (expected allow or deny)");
  }
  rule.allow = fields[1] == "allow";
  if (auto r = parse_protos(fields[2], &rule); !r) return Err(r.error());
  if (auto r = parse_ports(fields[3], &rule); !r) return Err(r.error());
  if (auto r = parse_addrs(fields[4], &rule); !r) return Err(r.error());
  return rule;
}

/// Parses the fields of one `target` line (fields[0] == "target"):
/// `target allow|deny PROTOS ADDRS [PORTS]`, PORTS defaulting to `*`.
Result<TargetRule> parse_target_line(const std::vector<std::string_view>& fields) {
  if (fields.size() != 4 && fields.size() != 5) {
    return Err(
        "a target line has 4 or 5 fields, `target allow|deny PROTOS ADDRS [PORTS]`, this one "
        "has " +
        std::to_string(fields.size()));
  }
  TargetRule rule;
  if (fields[1] != "allow" && fields[1] != "deny") {
    return Err("unknown action " + quoted(fields[1]) + " (expected allow or deny)");
  }
  rule.allow = fields[1] == "allow";
  if (auto r = parse_protos(fields[2], &rule); !r) return Err(r.error());
  if (auto r = parse_addrs(fields[3], &rule); !r) return Err(r.error());
  if (fields.size() == 5) {
    if (auto r = parse_ports(fields[4], &rule); !r) return Err(r.error());
  } else {
    rule.any_port = true;
  }
  return rule;
}

/// Returns true for a user or group name as useradd accepts it: a letter or
/// '_' first, then letters, digits, '_', '.', '-', at most 32 bytes.
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(name[0])) return false;
  for (char c : name) {
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '.' && c != '-') return false;
  }
  return true;
}

/// Parses one LIST of a `uid=` or `gid=` subject into `ids` (numbers, or
/// names through `resolver`; kept in `unresolved` without one).
Result<void> parse_ids(std::string_view list, bool group, const NameResolver* resolver,
                       std::vector<uint32_t>* ids, std::vector<std::string>* unresolved) {
  const char* what = group ? "group" : "user";
  for (std::string_view item : split(list, ',')) {
    unsigned long v = 0;
    if (!item.empty() && item[0] >= '0' && item[0] <= '9') {
      // 4294967295 is (uid_t)-1, "no id", which no process has.
      if (!parse_uint(item, 4294967294UL, &v)) {
        return Err(std::string("bad ") + what + " id " + quoted(item) +
                   " (expected a number from 0 to 4294967294, or a name)");
      }
      ids->push_back(static_cast<uint32_t>(v));
    } else if (!valid_name(item)) {
      return Err(std::string("bad ") + what + " name " + quoted(item) +
                 " (expected a name like alice or a number)");
    } else if (resolver == nullptr) {
      unresolved->emplace_back(item);
    } else {
      std::optional<uint32_t> id = (*resolver)(group, std::string(item));
      if (!id) {
        return Err(std::string("unknown ") + what + " " + quoted(item) + " (no such " + what +
                   " on this system; use a number or create the " + what + ")");
      }
      ids->push_back(*id);
    }
    if (ids->size() + unresolved->size() > kMaxControlIds) {
      return Err("more than " + std::to_string(kMaxControlIds) +
                 " ids on one line; use a group instead");
    }
  }
  return Ok();
}

/// Parses the fields of one `control` line (fields[0] == "control"):
/// `control read|commit SUBJECT...` with SUBJECT uid=LIST, gid=LIST or `*`.
Result<ControlRule> parse_control_line(const std::vector<std::string_view>& fields,
                                       const NameResolver* resolver) {
  if (fields.size() < 3) {
    return Err(
        "a control line is `control read|commit SUBJECT...` with at least one SUBJECT "
        "(uid=LIST, gid=LIST or *)");
  }
  ControlRule rule;
  if (fields[1] == "read") {
    rule.access = ControlAccess::kRead;
  } else if (fields[1] == "commit") {
    rule.access = ControlAccess::kCommit;
  } else {
    return Err("unknown access " + quoted(fields[1]) + " (expected read or commit)");
  }
  for (size_t i = 2; i < fields.size(); ++i) {
    std::string_view subject = fields[i];
    if (subject == "*") {
      rule.anyone = true;
    } else if (subject.starts_with("uid=")) {
      if (auto r = parse_ids(subject.substr(4), false, resolver, &rule.uids, &rule.unresolved); !r)
        return Err(r.error());
    } else if (subject.starts_with("gid=")) {
      if (auto r = parse_ids(subject.substr(4), true, resolver, &rule.gids, &rule.unresolved); !r)
        return Err(r.error());
    } else {
      return Err("unknown subject " + quoted(subject) + " (expected uid=LIST, gid=LIST or *)");
    }
  }
  return rule;
}

}  // namespace

Result<PolicyFile> parse_policy_text(std::string_view text, const std::string& source,
                                     const NameResolver* resolver) {
  PolicyFile file;
  file.source = source;
  unsigned line_no = 0;
  for (std::string_view line : split(text, '\n')) {
    ++line_no;
    std::string_view content = line.substr(0, line.find('#'));
    std::vector<std::string_view> fields = fields_of(content);
    if (fields.empty()) continue;
    std::string normal;
    for (std::string_view f : fields) normal += (normal.empty() ? "" : " ") + std::string(f);
    std::string where = source + " line " + std::to_string(line_no) + ": ";
    if (fields[0] == "target") {
      auto rule = parse_target_line(fields);
      if (!rule) return Err(where + rule.error().message + " in `" + sanitize(normal) + "`");
      rule->line = line_no;
      rule->text = sanitize(normal);
      file.target_rules.push_back(std::move(*rule));
      continue;
    }
    if (fields[0] == "control") {
      auto rule = parse_control_line(fields, resolver);
      if (!rule) return Err(where + rule.error().message + " in `" + sanitize(normal) + "`");
      rule->line = line_no;
      rule->text = sanitize(normal);
      file.control_rules.push_back(std::move(*rule));
      continue;
    }
    if (fields[0] != "bind") {
      return Err(where + "unknown keyword " + quoted(fields[0]) +
                 " (expected bind, target or control)");
    }
    auto rule = parse_bind_line(fields);
    if (!rule) return Err(where + rule.error().message + " in `" + sanitize(normal) + "`");
    rule->line = line_no;
    rule->text = sanitize(normal);
    file.bind_rules.push_back(std::move(*rule));
  }
  return file;
}

Result<PolicyFile> load_policy_file(const std::string& path, const NameResolver* resolver) {
  // O_NONBLOCK: a FIFO put in the file's place would block a plain open until
  // a writer came, and with it every later SIGHUP; opened like this it is
  // refused below instead. Symlinks are followed: administrators link configs.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    int err = errno;
    return Err(err, "cannot open policy file " + path + ": " + errno_text(err) +
                        "; check the path given to --policy");
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    int err = errno;
    return SysErr(err, "cannot stat policy file " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    return Err(EINVAL, "policy file " + path + " is " + file_kind(st.st_mode) +
                           ", not a regular file: sluiced reads its policy only from a regular "
                           "file (a FIFO or device could stall or never end the read); give "
                           "--policy a regular file, or a symbolic link to one");
  }
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      return SysErr(err, "cannot read policy file " + path);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxPolicyFileBytes) {
      return Err("policy file " + path + " is larger than " + std::to_string(kMaxPolicyFileBytes) +
                 " bytes; is it the right file?");
    }
  }
  auto file = parse_policy_text(text, path, resolver);
  if (file) file->text = std::move(text);
  return file;
}

Result<std::string> resolve_policy_names(std::string_view text, const std::string& source,
                                         const NameResolver& resolver) {
  auto parsed = parse_policy_text(text, source, &resolver);
  if (!parsed) return Err(parsed.error());
  std::string out;
  out.reserve(text.size());
  bool first = true;
  for (std::string_view line : split(text, '\n')) {
    if (!first) out += '\n';
    first = false;
    std::vector<std::string_view> fields = fields_of(line.substr(0, line.find('#')));
    if (fields.empty() || fields[0] != "control") {
      out += line;
      continue;
    }
    // Parsed above: every subject is `*`, uid=LIST or gid=LIST, every name known.
    std::string rewritten(fields[0]);
    rewritten += ' ';
    rewritten += fields[1];
    for (size_t i = 2; i < fields.size(); ++i) {
      std::string_view subject = fields[i];
      rewritten += ' ';
      if (subject == "*") {
        rewritten += '*';
        continue;
      }
      const bool group = subject.starts_with("gid=");
      rewritten += subject.substr(0, 4);
      bool first_id = true;
      for (std::string_view item : split(subject.substr(4), ',')) {
        if (!first_id) rewritten += ',';
        first_id = false;
        if (item[0] >= '0' && item[0] <= '9') {
          rewritten += item;
          continue;
        }
        std::optional<uint32_t> id = resolver(group, std::string(item));
        if (!id) {
          // The user database changed between the two look-ups.
          return Err(source + ": " + (group ? "group " : "user ") + quoted(item) +
                     " vanished while the file was read; try again");
        }
        rewritten += std::to_string(*id);
      }
    }
    out += rewritten;
  }
  if (out.size() > kMaxPolicyFileBytes) {
    return Err(source +
               ": with its user and group names written as numbers, the file is "
               "larger than " +
               std::to_string(kMaxPolicyFileBytes) + " bytes; use numbers or fewer names");
  }
  return out;
}

std::optional<uint32_t> resolve_no_names(bool /*group*/, const std::string& /*name*/) {
  return std::nullopt;
}

BindPolicy bind_policy_from_file(const PolicyFile& file) {
  BindPolicy policy;
  policy.use_rules = !file.bind_rules.empty();
  policy.source = file.source;
  policy.rules = file.bind_rules;
  return policy;
}

TargetPolicy target_policy_from_file(const PolicyFile& file) {
  TargetPolicy policy;
  policy.use_rules = !file.target_rules.empty();
  policy.source = file.source;
  policy.rules = file.target_rules;
  return policy;
}

ControlPolicy control_policy_from_file(const PolicyFile& file, uint32_t owner_uid) {
  ControlPolicy policy;
  policy.use_rules = !file.control_rules.empty();
  policy.source = file.source;
  policy.rules = file.control_rules;
  policy.owner_uid = owner_uid;
  return policy;
}

}  // namespace sluice
