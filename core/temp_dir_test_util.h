// Test/benchmark helper: a fresh directory under the system temp dir, removed
// (with everything in it) on destruction. Not part of the library.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

namespace swarmlite {

struct TempDir {
  std::filesystem::path path;
  // `tag` goes into the name, to tell leftovers apart; the pid and a counter make it unique.
  explicit TempDir(std::string_view tag) {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           fmt::format("swl-{}-{}-{}", tag, ::getpid(), counter.fetch_add(1));
    std::filesystem::remove_all(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace swarmlite
