#include "sqlbridge/engine/background_writeback.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/temp_dir_test_util.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;

// The file's dirty pages (not yet sent to storage), by cachestat(2) (Linux
// 6.5; Debian 12's headers predate it), or nullopt where the kernel has none.
std::optional<uint64_t> dirty_pages(const fs::path& file) {
  struct {
    uint64_t off, len;
  } range{0, 0};  // len 0: to the end of the file
  struct {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } stat{};
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr long kCachestat = 451;
  const long rc = ::syscall(kCachestat, fd, &range, &stat, 0);
  ::close(fd);
  if (rc != 0) return std::nullopt;
  return stat.nr_dirty;
}

bool wait_for_runs(const BackgroundWriteback& w, uint64_t n) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (w.runs() < n) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void write_dirty(const fs::path& file, size_t bytes) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  std::vector<char> data(bytes, 'x');
  REQUIRE(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  ::close(fd);
}

// A scratch directory for one file.
struct Scratch {
  TempDir dir{"writeback"};
  fs::path file;
  explicit Scratch(const char* name) : file(dir.path / name) { fs::create_directories(dir.path); }
};

}  // namespace

TEST_CASE("BackgroundWriteback: a kick sends the file's dirty pages to storage from its thread") {
  const Scratch s("f");
  const fs::path& file = s.file;
  write_dirty(file, 4 << 20);
  BackgroundWriteback w(file);
  CHECK(w.runs() == 0);
  const std::optional<uint64_t> before = dirty_pages(file);
  w.kick();
  REQUIRE(wait_for_runs(w, 1));
  // The writeback is started when runs() counts it: the pages are under
  // writeback or clean, no longer dirty (unless the kernel cannot tell, or
  // the kernel's flusher took them first: then there is nothing to see).
  const std::optional<uint64_t> after = dirty_pages(file);
  if (before && after && *before >= 512) {
    CHECK(*after < *before / 4);
  } else {
    MESSAGE("cachestat(2) unavailable or nothing dirty: the writeback itself is not checked");
  }
  // Kicks while none runs are each one more run.
  w.kick();
  REQUIRE(wait_for_runs(w, 2));
}

TEST_CASE("BackgroundWriteback: a missing file is skipped, and found once it exists") {
  const Scratch s("not-yet");
  const fs::path& file = s.file;
  BackgroundWriteback w(file);
  w.kick();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(w.runs() == 0);
  write_dirty(file, 4096);
  w.kick();
  CHECK(wait_for_runs(w, 1));
}

TEST_CASE(
    "BackgroundWriteback: kick_if_grown kicks every kPagesPerKick, and starts over with the "
    "count") {
  const Scratch s("f");
  write_dirty(s.file, 4096);
  BackgroundWriteback w(s.file);
  constexpr int64_t k = BackgroundWriteback::kPagesPerKick;
  w.kick_if_grown(k - 1);  // not yet
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(w.runs() == 0);
  w.kick_if_grown(k);  // k past the start (0)
  REQUIRE(wait_for_runs(w, 1));
  w.kick_if_grown(2 * k - 1);  // k - 1 past the last kick
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(w.runs() == 1);
  // The file started over (a checkpoint, a reset counter): counted from the
  // lower count, not from the last kick.
  w.kick_if_grown(3);
  w.kick_if_grown(k + 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(w.runs() == 1);
  w.kick_if_grown(k + 3);
  CHECK(wait_for_runs(w, 2));
}

TEST_CASE("BackgroundWriteback: destroyed with kicks pending, it stops at once") {
  const Scratch s("f");
  const fs::path& file = s.file;
  write_dirty(file, 1 << 20);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    BackgroundWriteback w(file);
    w.kick();
    w.kick();
  }
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));
}

}  // namespace swarmlite
