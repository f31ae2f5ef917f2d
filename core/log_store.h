// Append-only record store on disk (DESIGN.md §2, docs/formats/log-store.md).
// A directory of segment files (records framed with length and checksum) plus an
// index giving each record's segment and offset, so a read by seq is one seek.
// `append` returns only after the data is fsync'ed (unless Options::sync is off).
// On open, a torn tail (a partial last record) is detected and cut; corruption
// anywhere before the tail is an error naming the file and offset, never skipped.
// The directory also holds the newest signed head (opaque bytes to this class),
// replaced atomically.
//
// Thread-safety: one writer; reads may run concurrently with appends.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite {

struct LogStoreOptions {
  uint64_t segment_bytes = 64ull << 20;  // start a new segment past this size
  size_t max_record_bytes = 16 << 20;    // larger records are refused (append and read)
  bool sync = true;                      // fsync before append returns
};

class LogStore {
 public:
  // Opens DIR, creating it (and an empty log) if missing.
  static Result<std::unique_ptr<LogStore>> open(const std::filesystem::path& dir,
                                                LogStoreOptions options = {});
  virtual ~LogStore() = default;

  virtual uint64_t size() const = 0;  // number of records
  virtual Status append(ByteView record) = 0;
  // Appends all records with one fsync. All or nothing on a clean error.
  virtual Status append_batch(std::span<const Bytes> records) = 0;
  virtual Result<Bytes> read(uint64_t seq) const = 0;
  // Leaf hashes are kept beside the index so the log tree is rebuilt on open
  // without reading every record. Returns hash_leaf of record `seq`.
  virtual Result<Hash32> leaf_hash(uint64_t seq) const = 0;

  // The newest signed head, as opaque bytes (written to a temp file, fsync'ed, renamed).
  virtual Status store_head(ByteView encoded_head) = 0;
  virtual Result<std::optional<Bytes>> load_head() const = 0;

  virtual const std::filesystem::path& dir() const = 0;
};

}  // namespace swarmlite
