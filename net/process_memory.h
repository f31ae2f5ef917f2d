// What a node's process holds: resident memory, open file descriptors, SQLite's
// own allocations and the C heap, for /metrics and /status (docs/operations.md
// "Memory"). Read from /proc/self (Linux) and the allocators' counters; fields
// that cannot be read stay 0.
//
// Thread-safety: read_process_memory() may run on any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace swarmlite::net {

struct ProcessMemory {
  uint64_t rss_bytes = 0;          // VmRSS of /proc/self/status
  uint64_t rss_anon_bytes = 0;     // RssAnon: heap and stacks, not mapped file pages
  uint64_t open_fds = 0;           // entries of /proc/self/fd
  uint64_t sqlite_bytes = 0;       // sqlite3_status64(SQLITE_STATUS_MEMORY_USED): page caches, schemas, statements
  uint64_t sqlite_peak_bytes = 0;  // its high-water mark since start
  uint64_t heap_in_use_bytes = 0;  // glibc mallinfo2: allocated (uordblks + hblkhd)
  uint64_t heap_free_bytes = 0;    // glibc mallinfo2: freed but kept by malloc (fordblks)
};

ProcessMemory read_process_memory();

// glibc malloc settings for a long-running node, made once at start, before the
// node's threads exist (docs/operations.md "Memory"):
//  - kMallocArenas arena instead of up to 8 per core: every thread that
//    allocates gets an arena and keeps the pages it freed, so a dozen threads
//    (HTTP lanes, the io thread, the worker) hold a dozen high-water marks and
//    fragment each other's (2 arenas still left a peer's freed heap growing);
//  - a fixed mmap threshold (kMmapThresholdBytes): larger blocks (the log
//    tree's growing vectors, proofs, captured pages, HTTP bodies) are mapped and
//    unmapped on free, instead of glibc raising the threshold after the first
//    free and carving them out of an arena, where they leave holes.
// No effect on other C libraries.
inline constexpr int kMallocArenas = 1;
inline constexpr size_t kMmapThresholdBytes = 128 << 10;
void tune_malloc_for_node();

// Hands freed heap pages back to the OS (glibc malloc_trim(0): every arena,
// whole free pages anywhere in it, not only at its top) every `every`, on its
// own thread, until destroyed. Without it, memory freed after a burst stays
// resident.
class HeapTrimmer {
 public:
  explicit HeapTrimmer(std::chrono::milliseconds every);
  ~HeapTrimmer();
  HeapTrimmer(const HeapTrimmer&) = delete;
  HeapTrimmer& operator=(const HeapTrimmer&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace swarmlite::net
