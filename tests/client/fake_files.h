// An option-file reader for the client's tests: files in memory, so that
// --file is tested without the file system.
#pragma once

#include <cerrno>
#include <map>
#include <string>
#include <utility>

#include "client/cli.h"

namespace sluice {

/// A FileReader over an in-memory map of files (path -> text); a path
/// outside it fails as open() would, with ENOENT.
inline FileReader fake_files(std::map<std::string, std::string> files) {
  return [files = std::move(files)](const std::string& path) -> Result<std::string> {
    auto it = files.find(path);
    if (it == files.end()) return Err(ENOENT, "cannot open it: ENOENT (No such file or directory)");
    return it->second;
  };
}

}  // namespace sluice
