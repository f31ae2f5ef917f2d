// The light client's page cache on disk (docs/light-client.md "Page cache"):
// verified pages keyed by their state-tree leaf hash, so a page that did not
// change between heads is one entry whatever head the client is at.
//
// Files in the cache directory, per page size P (a database has one):
//   pages-P.slots  fixed slots of P bytes; slot i at offset i·P
//   pages-P.index  which leaf hash (and page number) each used slot holds, and
//                  its last use (format in docs/light-client.md "Cache files")
//   lock           flock'ed while a LightCache is open: one client per directory
//
// Nothing read back is believed: get() re-hashes the slot with its page number
// and returns it only when that equals the key; anything else (a flipped bit,
// an edited file, a slot another run reused) is a miss, counted as corrupt.
//
// Crash safety: put() writes slots only; flush() fsyncs the slot file, then
// replaces the index (core/file_io.h durable_replace). So the index on disk
// only ever names slots whose bytes reached the disk first. A slot freed by
// eviction is reused only after an index that no longer names it was written,
// so a crash can never leave the on-disk index naming a slot that holds
// another page. A kill before flush() leaves unindexed slots: open() treats
// every slot the index does not name as free (counted in stats().reclaimed).
// A damaged or foreign index is dropped at open (the cache starts empty,
// counted), never trusted.
//
// Not thread-safe: one thread at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "core/bytes.h"
#include "core/file_io.h"
#include "core/result.h"

namespace swarmlite::client {

// One entry of the index file (docs/light-client.md "Cache files").
struct LightCacheIndexEntry {
  Hash32 leaf{};
  uint32_t pgno = 0;
  uint32_t slot = 0;
  uint64_t last_use = 0;
};

// Decodes an index file's bytes for `page_size` pages: checksum, magic,
// version, page size, count, then entries (page number not 0; no slot, leaf or
// last use twice). Pure, so tests/fuzz/light_cache_fuzz.cpp reaches it without
// files. Errors: corrupt, with what and at which offset. It says nothing of
// the slots: get() re-hashes every page it returns.
Result<std::vector<LightCacheIndexEntry>> decode_light_cache_index(ByteView bytes,
                                                                   uint32_t page_size);

struct LightCacheOptions {
  uint64_t max_bytes = uint64_t{256} << 20;  // slot bytes kept (LRU beyond); at least one slot
};

struct LightCacheStats {
  uint64_t entries = 0;        // pages held now
  uint64_t hits = 0;           // get() that returned a page
  uint64_t misses = 0;         // get() of a key not held (corrupt ones included)
  uint64_t corrupt = 0;        // slots that did not hash to their key (dropped)
  uint64_t stores = 0;         // put() of a new key
  uint64_t evictions = 0;      // entries dropped for the byte cap
  uint64_t reclaimed = 0;      // slots found unindexed at open (a writer killed before flush)
  bool index_dropped = false;  // open() found an index it could not use (reason in index_problem)
  std::string index_problem;
};

class LightCache {
 public:
  // Opens (creating the directory and files) the cache of `page_size` pages in
  // `dir`. Errors: io_error (the directory or files), unavailable (another
  // LightCache holds the directory), invalid_argument (page size not a power
  // of two in 512..65536).
  static Result<std::unique_ptr<LightCache>> open(const std::filesystem::path& dir,
                                                  uint32_t page_size,
                                                  LightCacheOptions options = {});
  ~LightCache();
  LightCache(const LightCache&) = delete;
  LightCache& operator=(const LightCache&) = delete;

  uint32_t page_size() const { return page_size_; }
  // The page numbers of the entries held, increasing, each once (what a client
  // starting on this cache asks the leaves of).
  std::vector<uint32_t> pgnos() const;
  // True when an entry for `leaf` exists (not re-hashed: get() decides).
  bool contains(const Hash32& leaf) const { return by_leaf_.contains(leaf); }
  // The page stored under `leaf`, after checking that page_leaf_hash(pgno, page)
  // equals `leaf` (`pgno` is the page number the caller expects the leaf to
  // prove). nullopt: not held, or held but corrupt (dropped). Errors: io_error
  // reading the slot file.
  Result<std::optional<Bytes>> get(uint32_t pgno, const Hash32& leaf);
  // Stores a verified page under its leaf (page_size bytes; the caller proved
  // leaf = page_leaf_hash(pgno, page)). Durable only after flush().
  Status put(uint32_t pgno, const Hash32& leaf, ByteView page);
  // Makes every put() so far durable: fsync of the slots, then the index.
  Status flush();

  const LightCacheStats& stats() const { return stats_; }
  std::filesystem::path slots_path() const { return slots_path_; }
  std::filesystem::path index_path() const { return index_path_; }
  // The slot holding `leaf` (tests: to damage it on disk).
  std::optional<uint32_t> slot_of(const Hash32& leaf) const;

 private:
  struct Entry {
    uint32_t pgno = 0;
    uint32_t slot = 0;
    uint64_t last_use = 0;
  };
  LightCache() = default;
  void load_index(const Bytes& bytes);
  void touch(const Hash32& leaf, Entry& e);
  void drop(const Hash32& leaf, bool evicted);
  uint32_t take_slot();

  std::filesystem::path dir_, slots_path_, index_path_;
  file_io::Fd lock_fd_, slots_fd_;
  uint32_t page_size_ = 0;
  uint64_t max_slots_ = 1;
  uint64_t clock_ = 0;
  std::map<Hash32, Entry> by_leaf_;
  std::map<uint64_t, Hash32> by_use_;      // last_use -> leaf: LRU order
  std::vector<uint32_t> free_slots_;       // reusable now
  std::vector<uint32_t> freed_unflushed_;  // reusable after the next flush()
  uint32_t next_slot_ = 0;                 // slots [0, next_slot_) exist
  bool dirty_ = false;
  LightCacheStats stats_;
};

}  // namespace swarmlite::client
