// Every test the documentation names exists, and no document holds a control
// byte. The threat model, the
// architecture and the operations guide back their claims with test names
// (`Suite.Name`, `Suite.*Glob*`, `Suite.Probe/probe_name`); a test renamed or
// removed would leave a claim that nothing checks any more. This test reads
// README.md and docs/*.md, collects every backquoted reference of that shape,
// and looks each one up in the test sources: TEST, TEST_F and TEST_P
// definitions, and the names of the seccomp probes (the `{"name",
// Expect::...}` rows of tests/sandbox), which the parameterised probe suites
// run as Suite.Probe/name.
#include <fnmatch.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sluice {
namespace {

namespace fs = std::filesystem;

/// Reads the whole file at `path`; "" when it cannot be opened.
std::string read_all(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// What the test sources define: "Suite.Name" of every test, and every
/// seccomp probe's name.
struct Defined {
  std::set<std::string> tests;
  std::set<std::string> probes;
};

/// Scans every .cc and .h under `dir`.
Defined scan_tests(const fs::path& dir) {
  static const std::regex test_re(R"(\bTEST(?:_F|_P)?\(\s*(\w+)\s*,\s*(\w+)\s*\))");
  static const std::regex probe_re(R"re(\{\s*"([a-z0-9_]+)"\s*,\s*Expect::)re");
  Defined d;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const std::string ext = entry.path().extension().string();
    if (!entry.is_regular_file() || (ext != ".cc" && ext != ".h")) continue;
    const std::string text = read_all(entry.path());
    for (std::sregex_iterator it(text.begin(), text.end(), test_re), end; it != end; ++it) {
      d.tests.insert((*it)[1].str() + "." + (*it)[2].str());
    }
    for (std::sregex_iterator it(text.begin(), text.end(), probe_re), end; it != end; ++it) {
      d.probes.insert((*it)[1].str());
    }
  }
  return d;
}

/// True when `pattern` (a name, or a glob with `*`) matches one of `names`.
bool any_matches(const std::set<std::string>& names, const std::string& pattern) {
  for (const std::string& n : names) {
    if (fnmatch(pattern.c_str(), n.c_str(), 0) == 0) return true;
  }
  return false;
}

/// A reference found in a document: the file and the backquoted name.
struct Reference {
  std::string file;
  std::string name;
};

/// Every backquoted `Suite.Name`, `Suite.*Glob*` or `Suite.Probe/name` in
/// README.md and docs/*.md under `root`.
std::vector<Reference> scan_docs(const fs::path& root) {
  static const std::regex ref_re(R"(`([A-Z][A-Za-z0-9]*\.[A-Z*][A-Za-z0-9_*]*(?:/[a-z0-9_*]+)?)`)");
  std::vector<fs::path> docs = {root / "README.md"};
  for (const auto& entry : fs::directory_iterator(root / "docs")) {
    if (entry.path().extension() == ".md") docs.push_back(entry.path());
  }
  std::vector<Reference> refs;
  for (const fs::path& doc : docs) {
    const std::string text = read_all(doc);
    for (std::sregex_iterator it(text.begin(), text.end(), ref_re), end; it != end; ++it) {
      refs.push_back({doc.filename().string(), (*it)[1].str()});
    }
  }
  return refs;
}

TEST(DocReferences, EveryTestTheDocumentationNamesExists) {
  const fs::path root = SLUICE_SOURCE_DIR;
  const Defined defined = scan_tests(root / "tests");
  // The scan itself works: this test, and a probe of the broker's filter.
  ASSERT_TRUE(defined.tests.count("DocReferences.EveryTestTheDocumentationNamesExists"));
  ASSERT_TRUE(defined.probes.count("recvmsg_helper_channel_blocking"));
  const std::vector<Reference> refs = scan_docs(root);
  // The documents cite a few hundred; far fewer means the pattern broke.
  EXPECT_GT(refs.size(), 100u);
  for (const Reference& ref : refs) {
    const size_t slash = ref.name.find('/');
    bool found;
    if (slash == std::string::npos) {
      found = any_matches(defined.tests, ref.name);
    } else {
      found = any_matches(defined.tests, ref.name.substr(0, slash)) &&
              any_matches(defined.probes, ref.name.substr(slash + 1));
    }
    EXPECT_TRUE(found) << ref.file << " names `" << ref.name
                       << "`, which no test defines: rename the reference, or the test back";
  }
}

// A control byte in a page (a form feed where the roff escape `\f` was meant)
// shows as garbage in man(1) and in a browser.
TEST(DocReferences, NoDocumentHoldsAControlByte) {
  const fs::path root = SLUICE_SOURCE_DIR;
  std::vector<fs::path> docs = {root / "README.md"};
  for (const char* dir : {"docs", "docs/man"}) {
    for (const auto& entry : fs::directory_iterator(root / dir)) {
      if (entry.is_regular_file()) docs.push_back(entry.path());
    }
  }
  EXPECT_GT(docs.size(), 8u);
  for (const fs::path& doc : docs) {
    const std::string text = read_all(doc);
    size_t line = 1;
    for (unsigned char c : text) {
      if (c == '\n') ++line;
      EXPECT_FALSE(c < 0x20 && c != '\n' && c != '\t')
          << doc.filename().string() << ":" << line << " holds the control byte " << int{c};
    }
  }
}

TEST(DocReferences, AReferenceToNoTestIsFound) {
  Defined d;
  d.tests = {"Suite.OneTest", "Suite.Other"};
  d.probes = {"recvmsg_blocking"};
  EXPECT_TRUE(any_matches(d.tests, "Suite.OneTest"));
  EXPECT_TRUE(any_matches(d.tests, "Suite.*"));
  EXPECT_TRUE(any_matches(d.probes, "recvmsg_*"));
  EXPECT_FALSE(any_matches(d.tests, "Suite.Renamed"));
  EXPECT_FALSE(any_matches(d.tests, "Other.*"));
  EXPECT_FALSE(any_matches(d.probes, "sendmsg_*"));
}

}  // namespace
}  // namespace sluice
