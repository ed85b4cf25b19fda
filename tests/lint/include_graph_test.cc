// The include graph of each trust domain, checked against the table in
// docs/ARCHITECTURE.md ("Which directory may include which"): no arrow from
// worker/ or broker/ into client/, none from policy/ or broker/ into the Cap'n
// Proto codec, none from the rules library into the codec. The table is the
// single statement of the rule; this test reads it, so a change of the rule
// is a change of the documentation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace sluice {
namespace {

namespace fs = std::filesystem;

/// One row of the table: a directory, the prefixes its files may include,
/// and the prefixes (or headers) they must never include, which win.
struct DomainRule {
  std::string dir;  // "schema/rules/"
  std::vector<std::string> allowed;
  std::vector<std::string> never;
};

/// The marker line that starts the table in docs/ARCHITECTURE.md.
constexpr const char* kMarker = "<!-- include-graph";

/// Splits a table cell of backquoted items ("`base/`, `schema/`") into items.
std::vector<std::string> cell_items(const std::string& cell) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = cell.find('`', pos)) != std::string::npos) {
    size_t end = cell.find('`', pos + 1);
    if (end == std::string::npos) break;
    out.push_back(cell.substr(pos + 1, end - pos - 1));
    pos = end + 1;
  }
  return out;
}

/// Parses the table that follows the marker in `doc`. Returns its rows, or
/// nothing when the marker or the rows are missing.
std::vector<DomainRule> parse_table(const std::string& doc) {
  std::vector<DomainRule> rules;
  size_t at = doc.find(kMarker);
  if (at == std::string::npos) return rules;
  std::istringstream in(doc.substr(at));
  std::string line;
  std::getline(in, line);  // the marker
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '|') {
      if (!rules.empty()) break;
      continue;
    }
    std::vector<std::string> cells;
    std::stringstream row(line.substr(1));
    std::string cell;
    while (std::getline(row, cell, '|')) cells.push_back(cell);
    if (cells.size() < 3) continue;
    std::vector<std::string> dir = cell_items(cells[0]);
    if (dir.size() != 1) continue;  // the header and the separator
    rules.push_back(DomainRule{dir[0], cell_items(cells[1]), cell_items(cells[2])});
  }
  return rules;
}

/// True when `path` starts with `prefix`.
bool starts_with(const std::string& path, const std::string& prefix) {
  return path.compare(0, prefix.size(), prefix) == 0;
}

/// Returns what is wrong with `file` (relative to the source root, in the
/// directory of `rule`) including `header`, or "" when it may.
std::string judge(const DomainRule& rule, const std::string& file, const std::string& header) {
  for (const std::string& n : rule.never) {
    if (header == n || (n.back() == '/' && starts_with(header, n))) {
      return file + " includes \"" + header + "\", which " + rule.dir + " must never include";
    }
  }
  for (const std::string& a : rule.allowed) {
    if (starts_with(header, a)) return "";
  }
  return file + " includes \"" + header + "\", outside what " + rule.dir + " may include";
}

/// Returns the rule of the row whose directory is the longest prefix of
/// `file`, or nullptr.
const DomainRule* rule_for(const std::vector<DomainRule>& rules, const std::string& file) {
  const DomainRule* best = nullptr;
  for (const DomainRule& r : rules) {
    if (starts_with(file, r.dir) && (best == nullptr || r.dir.size() > best->dir.size())) {
      best = &r;
    }
  }
  return best;
}

/// Returns the quoted includes of a file.
std::vector<std::string> quoted_includes(const fs::path& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!starts_with(line, "#include \"")) continue;
    size_t end = line.find('"', 10);
    if (end != std::string::npos) out.push_back(line.substr(10, end - 10));
  }
  return out;
}

/// Reads a whole file.
std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(IncludeGraph, EveryTrustDomainIncludesOnlyWhatTheArchitectureAllows) {
  const fs::path root = SLUICE_SOURCE_DIR;
  std::vector<DomainRule> rules = parse_table(read_file(root / "docs" / "ARCHITECTURE.md"));
  ASSERT_GE(rules.size(), 7u) << "the include-graph table of docs/ARCHITECTURE.md is missing";
  std::vector<std::string> problems;
  size_t checked = 0;
  for (const char* top : {"base", "schema", "policy", "broker", "worker", "client"}) {
    for (const auto& entry : fs::recursive_directory_iterator(root / top)) {
      const std::string ext = entry.path().extension();
      if (!entry.is_regular_file() || (ext != ".h" && ext != ".cc")) continue;
      const std::string file = fs::relative(entry.path(), root).string();
      const DomainRule* rule = rule_for(rules, file);
      if (rule == nullptr) {
        problems.push_back(file + " is in no row of the table");
        continue;
      }
      for (const std::string& header : quoted_includes(entry.path())) {
        std::string problem = judge(*rule, file, header);
        if (!problem.empty()) problems.push_back(problem);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 200u) << "too few includes seen; is the source root right?";
  for (const std::string& p : problems) ADD_FAILURE() << p;
}

TEST(IncludeGraph, TheCheckCatchesWhatItMust) {
  const std::string doc = std::string(kMarker) +
                          " -->\n| directory | may include | never |\n|---|---|---|\n"
                          "| `worker/` | `base/`, `schema/`, `worker/` | `schema/rules/x.h` |\n"
                          "| `policy/` | `base/`, `schema/`, `policy/` | `schema/codec.h` |\n\n"
                          "| `other/` | `client/` | |\n";
  std::vector<DomainRule> rules = parse_table(doc);
  ASSERT_EQ(rules.size(), 2u) << "the table ends at its first blank line";
  const DomainRule& worker = *rule_for(rules, "worker/main.cc");
  EXPECT_EQ(judge(worker, "worker/main.cc", "schema/model.h"), "");
  EXPECT_NE(judge(worker, "worker/main.cc", "client/cli.h"), "");
  EXPECT_NE(judge(worker, "worker/main.cc", "schema/rules/x.h"), "");
  EXPECT_EQ(judge(worker, "worker/main.cc", "schema/rules/y.h"), "");
  const DomainRule& policy = *rule_for(rules, "policy/validate.cc");
  EXPECT_NE(judge(policy, "policy/validate.cc", "schema/codec.h"), "");
  EXPECT_EQ(rule_for(rules, "bench/x.cc"), nullptr);
}

}  // namespace
}  // namespace sluice
