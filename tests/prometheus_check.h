// A strict reader of the Prometheus text exposition format, version 0.0.4,
// for tests: it parses what `sluicectl --stats --prometheus` prints back into
// samples, and refuses everything the format forbids or that Prometheus'
// own parser and `promtool check metrics` would flag:
//   - metric and label names outside [a-zA-Z_:][a-zA-Z0-9_:]* and
//     [a-zA-Z_][a-zA-Z0-9_]* (label names starting "__" are reserved);
//   - label values with an unknown escape, a raw line feed, or bytes that are
//     no printable ASCII (sluicectl replaces those);
//   - a sample without a # TYPE line before it, a family whose samples are
//     not contiguous, # HELP or # TYPE given twice, or after a sample;
//   - a counter whose name does not end in `_total`, a negative counter, a
//     value that is no number, a timestamp (sluicectl writes none);
//   - the same series (name and label set) twice, a label twice in one set;
//   - a missing final line feed, an empty line, any other comment.
// Header-only, so the unit and the integration tests share it. Test code: it
// favours clarity over speed.
#pragma once

#include <cctype>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::test {

/// One parsed sample.
struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped values
  double value = 0;
};

/// A parsed exposition: the samples in order, and each family's type and help.
struct PromText {
  std::vector<PromSample> samples;
  std::map<std::string, std::string> types;
  std::map<std::string, std::string> helps;

  /// The value of the one sample named `name` whose labels include every pair
  /// of `match`; nullopt when none or several match.
  std::optional<double> value(const std::string& name,
                              const std::map<std::string, std::string>& match = {}) const {
    std::optional<double> found;
    for (const PromSample& s : samples) {
      if (s.name != name) continue;
      bool all = true;
      for (const auto& [k, v] : match) {
        auto it = s.labels.find(k);
        all = all && it != s.labels.end() && it->second == v;
      }
      if (!all) continue;
      if (found) return std::nullopt;
      found = s.value;
    }
    return found;
  }
};

namespace prom_detail {

/// True for a valid metric name.
inline bool metric_name(std::string_view n) {
  if (n.empty() || !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_' || n[0] == ':'))
    return false;
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) return false;
  }
  return true;
}

/// True for a valid label name that is not reserved.
inline bool label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__") ||
      !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_'))
    return false;
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

/// Parses `{k="v",...}` at `*i` into `out`; sets `*error` on failure.
inline bool labels(std::string_view line, size_t* i, std::map<std::string, std::string>* out,
                   std::string* error) {
  ++*i;  // '{'
  while (*i < line.size() && line[*i] != '}') {
    size_t eq = line.find('=', *i);
    if (eq == std::string_view::npos) return *error = "label without '='", false;
    std::string name(line.substr(*i, eq - *i));
    if (!label_name(name)) return *error = "bad label name '" + name + "'", false;
    *i = eq + 1;
    if (*i >= line.size() || line[*i] != '"') return *error = "label value not quoted", false;
    ++*i;
    std::string value;
    for (;;) {
      if (*i >= line.size()) return *error = "unterminated label value", false;
      char c = line[*i];
      if (c == '"') break;
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x7f) return *error = "label value byte outside printable ASCII", false;
      if (c == '\\') {
        if (*i + 1 >= line.size()) return *error = "escape at end of line", false;
        char e = line[++*i];
        if (e == 'n') {
          value += '\n';
        } else if (e == '\\' || e == '"') {
          value += e;
        } else {
          return *error = std::string("unknown escape \\") + e, false;
        }
      } else {
        value += c;
      }
      ++*i;
    }
    ++*i;  // closing quote
    if (!out->emplace(name, value).second) return *error = "label '" + name + "' twice", false;
    if (*i < line.size() && line[*i] == ',') ++*i;
  }
  if (*i >= line.size()) return *error = "unterminated label set", false;
  ++*i;  // '}'
  return true;
}

}  // namespace prom_detail

/// Parses `text` strictly (see the file comment). Returns nullopt and sets
/// `*error` ("line N: why") on the first violation.
inline std::optional<PromText> parse_prometheus(std::string_view text, std::string* error) {
  PromText out;
  std::set<std::string> closed;  // families whose samples ended
  std::set<std::string> sampled;
  std::set<std::string> series;
  std::string current;  // the family whose samples come now
  if (text.empty() || text.back() != '\n') {
    *error = "the text does not end in a line feed";
    return std::nullopt;
  }
  size_t start = 0;
  int n = 0;
  auto fail = [&](const std::string& why) {
    *error = "line " + std::to_string(n) + ": " + why;
    return std::nullopt;
  };
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++n;
    if (line.empty()) return fail("empty line");
    if (line[0] == '#') {
      bool help = line.starts_with("# HELP ");
      bool type = line.starts_with("# TYPE ");
      if (!help && !type) return fail("a comment other than # HELP or # TYPE");
      std::string_view rest = line.substr(7);
      size_t sp = rest.find(' ');
      if (sp == std::string_view::npos) return fail("no text after the name");
      std::string name(rest.substr(0, sp));
      std::string value(rest.substr(sp + 1));
      if (!prom_detail::metric_name(name)) return fail("bad metric name '" + name + "'");
      if (sampled.count(name) != 0) return fail(name + ": # HELP or # TYPE after a sample");
      auto& map = help ? out.helps : out.types;
      if (!map.emplace(name, value).second) return fail(name + ": given twice");
      if (type) {
        if (value != "counter" && value != "gauge" && value != "untyped")
          return fail(name + ": type '" + value + "' not used here");
        if (value == "counter" && !name.ends_with("_total"))
          return fail(name + ": a counter's name must end in _total");
      }
      if (help && value.empty()) return fail(name + ": empty help");
      continue;
    }
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    std::string name(line.substr(0, i));
    if (!prom_detail::metric_name(name)) return fail("bad metric name '" + name + "'");
    PromSample s;
    s.name = name;
    if (i < line.size() && line[i] == '{') {
      std::string why;
      if (!prom_detail::labels(line, &i, &s.labels, &why)) return fail(why);
    }
    if (i >= line.size() || line[i] != ' ') return fail("no space before the value");
    std::string value(line.substr(i + 1));
    if (value.empty() || value.find(' ') != std::string::npos)
      return fail("the value is missing, or a timestamp follows it");
    char* endp = nullptr;
    s.value = std::strtod(value.c_str(), &endp);
    if (endp == value.c_str() || *endp != '\0') return fail("value '" + value + "' is no number");
    auto type = out.types.find(name);
    if (type == out.types.end()) return fail(name + ": a sample without # TYPE");
    if (type->second == "counter" && s.value < 0) return fail(name + ": negative counter");
    if (name != current) {
      if (closed.count(name) != 0) return fail(name + ": samples are not contiguous");
      if (!current.empty()) closed.insert(current);
      current = name;
    }
    sampled.insert(name);
    std::string key = name;
    for (const auto& [k, v] : s.labels) key += "\x1f" + k + "=" + v;
    if (!series.insert(key).second) return fail(name + ": the same series twice");
    out.samples.push_back(std::move(s));
  }
  return out;
}

}  // namespace sluice::test
