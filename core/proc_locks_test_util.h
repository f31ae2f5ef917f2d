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
#include <set>
#include <sstream>
#include <string>
#include <tuple>

namespace swarmlite {

// Lines of /proc/locks look like "3: POSIX  ADVISORY  WRITE 12886 fe:00:10961078 120 120".
// The kernel makes the file a page or so per read() call, taking its lock afresh
// for each: while other processes (the tests ctest runs beside this one) take
// and drop locks, a long file can show a line twice or not at all. So each
// lock counts once (by mode and range), and the file is read again until two
// reads in a row agree.
inline size_t posix_locks_held(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return 0;
  const std::string id = fmt::format("{:02x}:{:02x}:{}", major(st.st_dev), minor(st.st_dev),
                                     static_cast<unsigned long>(st.st_ino));
  const std::string self = std::to_string(::getpid());
  auto read_once = [&] {
    std::set<std::tuple<std::string, std::string, std::string>> held;  // mode, start, end
    std::ifstream in("/proc/locks");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::string num, kind, advisory, mode, pid, where, start, end;
      if (!(words >> num >> kind)) continue;
      if (kind == "->") continue;  // a waiter, not a lock held
      if (!(words >> advisory >> mode >> pid >> where >> start >> end)) continue;
      if (kind == "POSIX" && pid == self && where == id) held.emplace(mode, start, end);
    }
    return held.size();
  };
  size_t last = read_once();
  for (int i = 0; i < 50; ++i) {
    const size_t now = read_once();
    if (now == last) return now;
    last = now;
  }
  return last;
}

}  // namespace swarmlite
