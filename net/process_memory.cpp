#include "net/process_memory.h"

#include <dirent.h>
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace swarmlite::net {

namespace {

// "VmRSS:     1234 kB" → bytes.
void read_status(ProcessMemory& m) {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (!f) return;
  char line[256];
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) {
      m.rss_bytes = std::strtoull(line + 6, nullptr, 10) * 1024;
    } else if (std::strncmp(line, "RssAnon:", 8) == 0) {
      m.rss_anon_bytes = std::strtoull(line + 8, nullptr, 10) * 1024;
    }
  }
  std::fclose(f);
}

uint64_t count_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return 0;
  uint64_t n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n > 0 ? n - 1 : 0;  // not the directory's own fd
}

}  // namespace

ProcessMemory read_process_memory() {
  ProcessMemory m;
  read_status(m);
  m.open_fds = count_fds();
  sqlite3_int64 used = 0, peak = 0;
  if (sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &used, &peak, 0) == SQLITE_OK) {
    m.sqlite_bytes = static_cast<uint64_t>(used);
    m.sqlite_peak_bytes = static_cast<uint64_t>(peak);
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = ::mallinfo2();
  m.heap_in_use_bytes = mi.uordblks + mi.hblkhd;
  m.heap_free_bytes = mi.fordblks;
#endif
  return m;
}

void tune_malloc_for_node() {
#if defined(__GLIBC__)
  (void)::mallopt(M_ARENA_MAX, kMallocArenas);
  (void)::mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMmapThresholdBytes));
#endif
}

HeapTrimmer::HeapTrimmer(std::chrono::milliseconds every) {
  thread_ = std::thread([this, every] {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, every, [&] { return stop_; })) {
#if defined(__GLIBC__)
      (void)::malloc_trim(0);
#endif
    }
  });
}

HeapTrimmer::~HeapTrimmer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

}  // namespace swarmlite::net
