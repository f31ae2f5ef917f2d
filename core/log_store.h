// Append-only record store on disk (docs/formats/log-store.md).
// A directory of segment files (records framed with length and checksum) plus an
// index giving each record's segment and offset, so a read by seq is one seek.
// `append` returns only after the records are fsync'ed (unless Options::sync is
// off): ONE fdatasync, of the segment. The segment is the source of truth; the
// index is a cache of it, written after that fsync and fsync'ed lazily (every
// `index_sync_rows` rows, when a segment is sealed, on close). On open, index rows
// the last segment's index lost are rebuilt by scanning the segment (checksums
// decide where a torn tail starts, which is cut); rows pointing past the end of
// the last segment are cut. Corruption among indexed records, and anything wrong
// in a segment that is not the last, is an error naming the file and offset,
// never skipped.
// The directory also holds the newest signed head (opaque bytes to this class),
// replaced atomically (with Options::sync_head off: kept in memory, written unsynced
// at most once per head_write_interval_ms and on close).
//
// Thread-safety: one writer; reads may run concurrently with appends (readers take
// the segment and row count under a shared lock and pread the index row, then the
// record; a row is published after its record and its index row are written). One open store per directory: DIR/LOCK is flock()ed, a second open
// fails with Errc::unavailable.
//
// Compaction (docs/formats/log-store.md "Checkpoint and compaction"): a store may
// begin at first() > 0. DIR/checkpoint then records first(), the log tree
// frontier there and a signed head; the segments before first() are gone.
// Reads of a seq below first() are Errc::not_found ("compacted away").
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite {

// On-disk constants (docs/formats/log-store.md is the spec; change both together).
namespace log_store_format {
inline constexpr char kSegmentMagic[8] = {'s', 'w', 'l', '-', 's', 'e', 'g', '1'};
inline constexpr char kIndexMagic[8] = {'s', 'w', 'l', '-', 'i', 'd', 'x', '1'};
inline constexpr size_t kFileHeaderBytes = 16;    // magic[8] · first_seq u64
inline constexpr size_t kChecksumBytes = 16;      // see record_checksum()
inline constexpr size_t kRecordHeaderBytes = 20;  // length u32 · checksum[16]
inline constexpr size_t kIndexRowBytes = 44;      // offset u64 · length u32 · leaf_hash[32]
inline constexpr size_t kMaxHeadFileBytes = 64 << 10;
inline constexpr std::string_view kChecksumContext = "swarmlite/log-record/v1";
inline constexpr uint8_t kCheckpointVersion = 1;
inline constexpr std::string_view kCheckpointContext = "swarmlite/log-checkpoint/v1";
// version u8 · first_seq u64 · count u32 · 64 hashes · head blob · checksum[16]
inline constexpr size_t kMaxCheckpointBytes = 1 + 8 + 4 + 64 * 32 + 4 + kMaxHeadFileBytes + 16;
}  // namespace log_store_format

// The checkpoint record (DIR/checkpoint; docs/formats/log-store.md): where the
// store begins and what a node needs to go on from there and to show an auditor
// what it kept.
struct LogCheckpoint {
  uint64_t first_seq = 0;
  // The log tree frontier at first_seq (core/log_tree.h): popcount(first_seq)
  // hashes, left to right; they fold to the log root at first_seq.
  std::vector<Hash32> frontier;
  // A signed head (core/head.h encoding, opaque here) of size >= first_seq.
  // Required when first_seq > 0.
  Bytes head;
  bool operator==(const LogCheckpoint&) const = default;
};
Bytes encode_checkpoint(const LogCheckpoint& cp);
// Bounded, every error names the field and offset; checks the checksum, the
// frontier length and rejects trailing bytes. Input from disk: may be hostile.
Result<LogCheckpoint> decode_checkpoint(ByteView bytes);

// What LogStore::drop_before removed.
struct DropStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;  // segment and index files
  uint64_t segments = 0;
};

// First 16 bytes of BLAKE2b-256(kChecksumContext ‖ seq u64 ‖ length u32 ‖ leaf_hash):
// the record checksum. Built on the leaf hash so one pass over the payload gives
// both the log tree leaf and the checksum; binding seq rejects a record read at
// the wrong place.
std::array<uint8_t, log_store_format::kChecksumBytes> record_checksum(uint64_t seq,
                                                                      uint32_t length,
                                                                      const Hash32& leaf_hash);

struct LogStoreOptions {
  uint64_t segment_bytes = 64ull << 20;  // start a new segment past this size
  size_t max_record_bytes = 16 << 20;    // larger records are refused (append and read)
  bool sync = true;                      // fdatasync the segment before append returns
  // With sync: fdatasync the index once this many of its rows are not yet synced
  // (0 or 1 = every append). Bounds the rows open() may have to rebuild from the
  // segment after a crash; the sealed segment's index is always synced first.
  uint64_t index_sync_rows = 4096;
  // An append's index rows are held in memory until this many are (or the
  // index is synced, the segment sealed, the store closed), then written in one
  // pwrite: a single-record append costs one write, of its record, not two.
  // Reads find held rows in memory. 0 or 1 = write them at every append.
  uint64_t index_write_rows = 256;
  // With sync: the segment's file is zero-filled ahead of its records in steps
  // of this many bytes (capped at segment_bytes), so an append's fdatasync
  // overwrites allocated blocks instead of growing the file and syncing its new
  // length (docs/formats/log-store.md "Preallocation"). 0 = off. open() accepts
  // a zero tail whatever this says.
  uint64_t preallocate_bytes = 256 << 10;
  // On: store_head replaces the head file at once (fsync'ed with `sync`). Off,
  // where the head can be re-derived after a crash (the primary re-signs one on
  // open): store_head keeps it in memory (load_head returns it) and replaces the
  // file without any fsync at most once per `head_write_interval_ms` (the first
  // head at once) and on close. So a process crash leaves a head at most that old
  // for auditors and backups; a power loss may leave an older one or none (an
  // empty file reads as none).
  bool sync_head = true;
  int64_t head_write_interval_ms = 1000;
};

class LogStore {
 public:
  // Opens DIR, creating it (and an empty log) if missing.
  static Result<std::unique_ptr<LogStore>> open(const std::filesystem::path& dir,
                                                LogStoreOptions options = {});
  // Creates DIR as an empty store that begins at cp.first_seq (a peer that
  // bootstraps from a snapshot): writes the checkpoint record (durably) before
  // the first segment. invalid_argument if DIR already holds a log.
  static Result<std::unique_ptr<LogStore>> create_at(const std::filesystem::path& dir,
                                                     const LogCheckpoint& cp,
                                                     LogStoreOptions options = {});
  virtual ~LogStore() = default;

  // The end of the log: the next seq to append (so not a count once compacted).
  virtual uint64_t size() const = 0;
  // The first seq held (0 unless compacted or created at a checkpoint).
  virtual uint64_t first() const = 0;
  // The checkpoint record, if the store has one.
  virtual std::optional<LogCheckpoint> checkpoint() const = 0;
  // The seq drop_before may start the store at when asked to keep `seq`
  // (first() <= seq <= size()): the first seq of the segment holding seq, or of
  // the last segment when seq is past its start (segments are dropped whole).
  virtual uint64_t drop_point(uint64_t seq) const = 0;
  // Makes the store begin at cp.first_seq, which must be drop_point(x) for some
  // x >= first() (a segment start; the caller computes the frontier there, which
  // only the log tree knows): writes DIR/checkpoint (temp file, fsync, rename,
  // directory fsync), then removes the segments before it. A crash in between
  // leaves files open() removes. Concurrent readers of a dropped seq get
  // not_found (open segment files stay readable until their last reader is done).
  virtual Result<DropStats> drop_before(const LogCheckpoint& cp) = 0;
  virtual Status append(ByteView record) = 0;
  // Appends all records with one fsync. All or nothing on a clean error.
  // `leaves`, when not empty, are the records' leaf hashes (hash_leaf), which
  // the caller has computed already (core/log.cpp): the index rows take them
  // instead of hashing every record a second time.
  virtual Status append_batch(std::span<const Bytes> records, std::span<const Hash32> leaves) = 0;
  Status append_batch(std::span<const Bytes> records) { return append_batch(records, {}); }
  // append_batch in two steps, so the caller can work while the records reach
  // the disk (the primary lets SQLite write its commit meanwhile,
  // docs/formats/log-store.md "Two-step append"). write_batch checks and
  // writes the records behind the log's end and starts the device's write of
  // them, but appends nothing: size() and every read ignore them. sync_batch
  // then fdatasyncs them (with Options::sync) and appends them; its errors are
  // append_batch's after the write. Between the two only reads may run on the
  // store, and a second write_batch is refused (internal). A batch whose
  // sync_batch failed is not appended, and the store refuses appends from then
  // on, as after any failed fsync. sync_batch with nothing written does nothing.
  virtual Status write_batch(std::span<const Bytes> records, std::span<const Hash32> leaves) = 0;
  virtual Status sync_batch() = 0;
  virtual Result<Bytes> read(uint64_t seq) const = 0;
  // Records first, first + 1, ... each checked as read() checks it: at most
  // max_count of them, and no more once their payloads reach max_bytes (at
  // least one: a first record larger than max_bytes comes alone). not_found
  // when `first` is not held. One pread of the index rows and one of the
  // records' bytes per segment (records are contiguous; reads of up to 1 MiB).
  virtual Result<std::vector<Bytes>> read_range(uint64_t first, uint64_t max_count,
                                                size_t max_bytes) const = 0;
  // Leaf hashes are kept beside the index so the log tree is rebuilt on open
  // without reading every record. Returns hash_leaf of record `seq`.
  virtual Result<Hash32> leaf_hash(uint64_t seq) const = 0;
  // hash_leaf of the records [first, first + out.size()) (not_found past size()):
  // one pread of their index rows per segment they span.
  virtual Status leaf_hashes(uint64_t first, std::span<Hash32> out) const = 0;

  // The newest signed head, as opaque bytes (written to a temp file, fsync'ed,
  // renamed; deferred to close without Options::sync_head). load_head: nullopt when
  // there is none, or when the head file is empty (what a crash can leave of a
  // head file that was not fsync'ed).
  virtual Status store_head(ByteView encoded_head) = 0;
  virtual Result<std::optional<Bytes>> load_head() const = 0;

  virtual const std::filesystem::path& dir() const = 0;

  // --- Additions beyond the original contract ---
  // Bytes of a torn tail (a partial or unchecked last batch) that open() cut from
  // the last segment; 0 when the store was closed cleanly. For the caller to log.
  virtual uint64_t recovered_bytes() const = 0;
  // Index rows open() rebuilt by scanning the last segment (rows the index had not
  // yet persisted at a crash, or after a row it dropped), and rows it dropped from
  // the last segment's index (shaped wrong, pointing past the segment's end, or
  // not matching their record). 0 and 0 after a clean close.
  virtual uint64_t rebuilt_index_rows() const = 0;
  virtual uint64_t dropped_index_rows() const = 0;
  // Reads and checks every record against its index row (open() checks only the
  // index structure and the last record of each segment). Errc::corrupt naming the
  // file and offset of the first bad record.
  virtual Status verify_all() const = 0;
  // Heap bytes the open store holds: a few hundred per segment, nothing per
  // record (index rows are read from the index files; docs/operations.md "Memory").
  virtual size_t memory_bytes() const = 0;
};

}  // namespace swarmlite
