// Test helper: the POSIX (fcntl) locks this process holds on a file, read from
// /proc/locks. Not part of the library.
#pragma once

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace swarmlite {

// Lines of /proc/locks look like "3: POSIX  ADVISORY  WRITE 12886 fe:00:10961078 120 120".
inline size_t posix_locks_held(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return 0;
  const std::string id = fmt::format("{:02x}:{:02x}:{}", major(st.st_dev), minor(st.st_dev),
                                     static_cast<unsigned long>(st.st_ino));
  std::ifstream in("/proc/locks");
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string num, kind, advisory, mode, pid, where;
    if (!(words >> num >> kind)) continue;
    if (kind == "->") words >> kind;  // a waiter's line
    if (!(words >> advisory >> mode >> pid >> where)) continue;
    if (kind == "POSIX" && pid == std::to_string(::getpid()) && where == id) ++n;
  }
  return n;
}

}  // namespace swarmlite
