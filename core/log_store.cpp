// Append-only log store (docs/formats/log-store.md).
//
// How durability and recovery fit together. An append writes the batch's records
// to the segment with one pwrite and fdatasyncs the segment: that fsync is the
// durability point, and the only one on the common path. Then it adds the
// batch's index rows to the segment's tail of rows in memory, written to the
// index file (one pwrite) every index_write_rows rows, before the index is
// fdatasync'ed, when the segment is sealed and on close; the index is
// fdatasync'ed every `index_sync_rows` rows, before a new segment is started
// (so a sealed segment's index is always complete on disk) and on close. So:
//   - every record up to the last acknowledged append is on disk, checksummed;
//   - an index row that is on disk was written after its record was synced, but
//     the last segment's index may lack rows (not yet synced at a crash), or end
//     in a torn or zero-filled row.
// On open, the last segment's index is read as a hint: the longest prefix of rows
// with the right shape (contiguous, inside the file) is kept, and its last row
// must describe its record exactly (a row that does not, while the record there
// is valid, was torn across pages: dropped, and the one before it checked); a
// damaged record under a kept row is Errc::corrupt (it was acknowledged). Then the
// records after the last kept row are scanned: valid records (checksum over the
// expected seq) get their rows back, and from the first invalid one the file is
// cut — the torn tail of an append that had not returned. Rows pointing past the
// end of the last segment (only possible with sync off, or a disk that lost synced
// data) are dropped with it. In a segment that is not the last, anything wrong is
// Errc::corrupt; so is a bad record while rebuilding a missing index file.
//
// open() does not read every record (a 1M-entry log opens in milliseconds): it
// reads the index files, checks their structure and reads the last indexed record
// of each segment, plus the records of the last segment that lost their rows
// (at most about index_sync_rows + one batch after a crash). Every read() checks
// its record; verify_all() checks them all.
//
// Concurrency: one writer (append*, store_head); readers (read, leaf_hash(es), size,
// load_head, verify_all) from any thread. The segment vector and each segment's row
// count change only under an exclusive lock held for the in-memory publish step;
// readers look up the segment under a shared lock and pread() the index row (or
// copy it from the segment's tail of rows under that lock), then the record,
// without it. A record's bytes are written before its row is published, a row
// leaves the tail only once it is in the index file, and segment fds stay open
// for the store's life.
//
// Preallocation: with sync on, the segment's file runs ahead of its records in
// zero-filled steps of preallocate_bytes, synced with the append that grew it,
// so later appends' fdatasync overwrite allocated blocks; open() keeps an
// all-zero tail, a sealed segment is trimmed (docs/formats/log-store.md
// "Preallocation").
//
// Compaction: DIR/checkpoint says where the store begins (first_). drop_before
// writes it durably first, then unlinks the segments before it; open() removes
// segments wholly before the checkpoint (what a crash between the two leaves).
// Segments are shared_ptrs so that a reader that found one before it was
// dropped still reads it through its open fds (the unlinked file stays until
// the last reader lets go); a reader that comes after gets not_found.
//
// Memory: nothing per record. Index rows are not kept in memory but read from the
// index file (a pread of 44 bytes, from the page cache when hot), so a log of
// years costs a few hundred bytes per segment (docs/operations.md "Memory"),
// plus the last segment's tail of at most index_write_rows rows.
#include "core/log_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <utility>
#include <vector>

#include "core/blake2b.h"
#include "core/codec.h"
#include "core/file_io.h"
#include "core/hash.h"

namespace swarmlite {

namespace fs = std::filesystem;
using namespace log_store_format;

namespace {

uint64_t load_be(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = v << 8 | p[i];
  return v;
}
void store_be(uint8_t* p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

// What a record's checksum hashes after kChecksumContext: seq u64 ‖ length
// u32 ‖ leaf_hash (docs/formats/log-store.md), one definition for
// record_checksum and record_checksums.
constexpr size_t kChecksumFields = 8 + 4 + 32;
void checksum_fields(uint64_t seq, uint32_t length, const Hash32& leaf_hash, uint8_t* out) {
  store_be(out, seq, 8);
  store_be(out + 8, length, 4);
  std::memcpy(out + 12, leaf_hash.data(), leaf_hash.size());
}

}  // namespace

std::array<uint8_t, kChecksumBytes> record_checksum(uint64_t seq, uint32_t length,
                                                    const Hash32& leaf_hash) {
  uint8_t fields[kChecksumFields];
  checksum_fields(seq, length, leaf_hash, fields);
  Hash32 full =
      Hasher().update(as_bytes(kChecksumContext)).update(ByteView(fields, sizeof fields)).finish();
  std::array<uint8_t, kChecksumBytes> out;
  std::memcpy(out.data(), full.data(), out.size());
  return out;
}

namespace {

std::array<uint8_t, kChecksumBytes> checkpoint_checksum(ByteView body) {
  Hash32 full = Hasher().update(as_bytes(kCheckpointContext)).update(body).finish();
  std::array<uint8_t, kChecksumBytes> out;
  std::memcpy(out.data(), full.data(), out.size());
  return out;
}

}  // namespace

Bytes encode_checkpoint(const LogCheckpoint& cp) {
  Writer w;
  w.u8(kCheckpointVersion);
  w.u64(cp.first_seq);
  w.u32(static_cast<uint32_t>(cp.frontier.size()));
  for (const Hash32& h : cp.frontier) w.hash(h);
  w.blob(cp.head);
  auto sum = checkpoint_checksum(w.bytes());
  w.raw(sum);
  return w.take();
}

Result<LogCheckpoint> decode_checkpoint(ByteView bytes) {
  Reader r(bytes, "log checkpoint");
  SWL_TRY(r.preamble(kCheckpointVersion, kMaxCheckpointBytes));
  LogCheckpoint cp;
  SWL_ASSIGN(cp.first_seq, r.u64("first_seq"));
  const size_t count_at = r.offset();
  SWL_ASSIGN(size_t n, r.count("frontier", 64, 32, 4 + kChecksumBytes));
  if (n != static_cast<size_t>(std::popcount(cp.first_seq))) {
    return make_error(Errc::bad_value,
                      "log checkpoint: frontier at offset {} has {} hashes; first_seq {} needs {} "
                      "(one per set bit)",
                      count_at, n, cp.first_seq, std::popcount(cp.first_seq));
  }
  cp.frontier.resize(n);
  for (Hash32& h : cp.frontier) {
    SWL_ASSIGN(h, r.hash("frontier hash"));
  }
  const size_t head_at = r.offset();
  SWL_ASSIGN(ByteView head, r.blob("head", kMaxHeadFileBytes));
  if (head.empty() && cp.first_seq > 0) {
    return make_error(Errc::bad_value,
                      "log checkpoint: head at offset {} is empty; a checkpoint at {} > 0 needs "
                      "the signed head it was taken under",
                      head_at, cp.first_seq);
  }
  cp.head.assign(head.begin(), head.end());
  const size_t body = r.offset();
  SWL_ASSIGN(ByteView sum, r.raw(kChecksumBytes, "checksum"));
  SWL_TRY(r.expect_end());
  auto want = checkpoint_checksum(bytes.first(body));
  if (!std::equal(sum.begin(), sum.end(), want.begin())) {
    return make_error(Errc::corrupt, "log checkpoint: checksum at offset {} does not match", body);
  }
  return cp;
}

namespace {

constexpr const char* kHeadFile = "head";
constexpr const char* kCheckpointFile = "checkpoint";
constexpr const char* kLockFile = "LOCK";

Error os_error(std::string_view what, const fs::path& file) {
  return make_error(Errc::io_error, "{} {}: {}", what, file.string(), std::strerror(errno));
}

using file_io::Fd;

std::string seg_name(uint64_t first_seq, std::string_view ext) {
  return fmt::format("seg-{:016x}.{}", first_seq, ext);
}

// "seg-<16 lower-case hex>.<ext>" → first seq.
std::optional<uint64_t> parse_seg_name(const std::string& name, std::string_view ext) {
  if (name.size() != 4 + 16 + 1 + ext.size()) return std::nullopt;
  if (name.compare(0, 4, "seg-") != 0 || name[20] != '.' || name.compare(21, ext.size(), ext) != 0) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (size_t i = 4; i < 20; ++i) {
    char c = name[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

std::array<uint8_t, kFileHeaderBytes> file_header(const char (&magic)[8], uint64_t first_seq) {
  std::array<uint8_t, kFileHeaderBytes> h;
  std::memcpy(h.data(), magic, 8);
  store_be(h.data() + 8, first_seq, 8);
  return h;
}

struct IndexRow {
  uint64_t offset = 0;  // of the record header in the segment file
  uint32_t length = 0;  // payload bytes
  Hash32 leaf{};
  uint64_t end() const { return offset + kRecordHeaderBytes + length; }
};

// record_checksum of rows[i] as record first_seq + i, for every row: the
// rows' checksums hashed several at once in the CPU's SIMD lanes (core/
// blake2b.h hash_lanes; one 128-byte block each), written to headers[i] at
// byte 4 (docs/performance.md "Leaf hashes in lanes").
void record_checksums(uint64_t first_seq, std::span<const IndexRow> rows, uint8_t* headers) {
  static_assert(kChecksumContext.size() < 128);
  thread_local std::vector<std::array<uint8_t, kChecksumFields>> fields;
  thread_local std::vector<Hash32> full;
  thread_local std::vector<blake2b256::LaneInput> in;
  fields.resize(rows.size());
  full.resize(rows.size());
  in.resize(rows.size());
  const auto* context = reinterpret_cast<const uint8_t*>(kChecksumContext.data());
  for (size_t i = 0; i < rows.size(); ++i) {
    checksum_fields(first_seq + i, rows[i].length, rows[i].leaf, fields[i].data());
    in[i] = {context, fields[i].data(), nullptr, full[i].data()};
  }
  blake2b256::hash_lanes(in, kChecksumContext.size(), kChecksumFields);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(headers + i * kRecordHeaderBytes + 4, full[i].data(), kChecksumBytes);
  }
}

void encode_row(uint8_t* out, const IndexRow& r) {
  store_be(out, r.offset, 8);
  store_be(out + 8, r.length, 4);
  std::memcpy(out + 12, r.leaf.data(), 32);
}

struct Segment {
  uint64_t first_seq = 0;
  fs::path seg_path, idx_path;
  Fd seg, idx;
  uint64_t seg_size = 0;      // where its records end: the next append's offset (writer only)
  // The file's size: seg_size plus the zero-filled preallocation after it
  // (docs/formats/log-store.md "Preallocation"; writer only).
  uint64_t file_size = 0;
  uint64_t synced_rows = 0;   // rows known to be fdatasync'ed in the index (writer only)
  // Published rows: n_rows records, their rows in the index file (not in memory:
  // a log runs for years, docs/operations.md "Memory") but for the newest ones:
  // rows [file_rows, n_rows), encoded in `tail`, are not written yet (one
  // pwrite per index_write_rows appends instead of one per append). n_rows,
  // file_rows and tail change under the store's exclusive lock; readers read
  // them under the shared lock.
  uint64_t n_rows = 0;
  uint64_t file_rows = 0;
  Bytes tail;
  uint64_t idx_size() const { return kFileHeaderBytes + n_rows * kIndexRowBytes; }
  uint64_t idx_file_size() const { return kFileHeaderBytes + file_rows * kIndexRowBytes; }
};


IndexRow decode_row(const uint8_t* p) {
  IndexRow r;
  r.offset = load_be(p, 8);
  r.length = static_cast<uint32_t>(load_be(p + 8, 4));
  std::memcpy(r.leaf.data(), p + 12, 32);
  return r;
}

// Checks one record (header bytes + payload) that should be record `seq`.
// Returns its leaf hash, or a reason it is bad.
Result<Hash32> check_record(const uint8_t* header, ByteView payload, uint64_t seq) {
  uint32_t len = static_cast<uint32_t>(load_be(header, 4));
  if (len != payload.size()) {
    return make_error(Errc::corrupt, "record seq {} has length {}, expected {}", seq, len,
                      payload.size());
  }
  Hash32 leaf = hash_leaf(payload);
  auto sum = record_checksum(seq, len, leaf);
  if (std::memcmp(sum.data(), header + 4, kChecksumBytes) != 0) {
    return make_error(Errc::corrupt, "record seq {} fails its checksum", seq);
  }
  return leaf;
}

// What open() finds at a position of a segment: a valid record (its row), or why
// there is none (a torn or damaged record).
struct ScannedRecord {
  std::optional<IndexRow> row;
  std::string why;
};

class FileLogStore final : public LogStore {
 public:
  FileLogStore(fs::path dir, LogStoreOptions options) : dir_(std::move(dir)), options_(options) {}
  ~FileLogStore() override;
  FileLogStore(const FileLogStore&) = delete;
  FileLogStore& operator=(const FileLogStore&) = delete;

  // With `create`: the directory must hold no log; writes the checkpoint first.
  Status open_all(const LogCheckpoint* create);

  uint64_t size() const override { return size_.load(std::memory_order_acquire); }
  uint64_t first() const override { return first_.load(std::memory_order_acquire); }
  std::optional<LogCheckpoint> checkpoint() const override {
    std::shared_lock lock(mu_);
    return checkpoint_;
  }
  uint64_t drop_point(uint64_t seq) const override;
  Result<DropStats> drop_before(const LogCheckpoint& cp) override;
  Status append(ByteView record) override {
    // One copy into the batch buffer either way; keep one code path.
    Bytes copy(record.begin(), record.end());
    return append_batch(std::span<const Bytes>(&copy, 1));
  }
  using LogStore::append_batch;
  Status append_batch(std::span<const Bytes> records, std::span<const Hash32> leaves) override {
    SWL_TRY(write_records(records, leaves, /*start_writeback=*/false));
    return sync_batch();
  }
  Status write_batch(std::span<const Bytes> records, std::span<const Hash32> leaves) override {
    return write_records(records, leaves, /*start_writeback=*/true);
  }
  Status sync_batch() override;
  Result<Bytes> read(uint64_t seq) const override;
  Result<std::vector<Bytes>> read_range(uint64_t first, uint64_t max_count,
                                        size_t max_bytes) const override;
  Result<Hash32> leaf_hash(uint64_t seq) const override;
  Status leaf_hashes(uint64_t first, std::span<Hash32> out) const override;
  size_t memory_bytes() const override;
  Status store_head(ByteView encoded_head) override;
  Result<std::optional<Bytes>> load_head() const override;
  const fs::path& dir() const override { return dir_; }
  uint64_t recovered_bytes() const override { return recovered_bytes_; }
  uint64_t rebuilt_index_rows() const override { return rebuilt_index_rows_; }
  uint64_t dropped_index_rows() const override { return dropped_index_rows_; }
  Status verify_all() const override;

 private:
  // write_batch / append_batch's first step: the records (and the
  // preallocation) written behind the last segment's records, their rows kept
  // in pending_ for sync_batch; `start_writeback` starts the device write.
  Status write_records(std::span<const Bytes> records, std::span<const Hash32> leaves,
                       bool start_writeback);
  // On a clean write error: cuts both files of `s` back to its records, so the
  // batch leaves no trace (the preallocation goes with it), and returns `e`.
  Error undo_batch(Segment& s, Error e);
  Status open_segment(Segment& s, bool last);
  // Reads the record at `pos` (<= s.seg_size) of segment `s` as record `seq`:
  // its row if it is whole and its checksum holds, else why not. Errors are I/O
  // failures only. `payload` is scratch space.
  Result<ScannedRecord> scan_record(const Segment& s, uint64_t pos, uint64_t seq,
                                    Bytes& payload) const;
  // Writes the rows in the tail of `s` to its index file (writer only); `seal`:
  // the segment takes no more rows, so the tail's memory goes too.
  Status write_index_tail(Segment& s, bool seal = false);
  // Writes the tail and fdatasyncs the index of `s` if it has rows not yet synced (writer only).
  Status sync_index(Segment& s);
  // Replaces the head file: temp file, (fsync), rename, (directory fsync).
  Status write_head_file(ByteView encoded_head, bool durable);
  Status create_segment(uint64_t first_seq);
  // The end of the last nonzero byte in [pos, end of file) of segment `s`; pos
  // when they are all zero (a preallocated tail).
  Result<uint64_t> last_nonzero_end(const Segment& s, uint64_t pos) const;
  // Cuts the segment's file to its records (drops its preallocation), synced.
  Status trim_preallocation(Segment& s);
  // Reads and checks the record a row describes; corrupt naming file and offset.
  // `whole`: the header's checksum too (open, verify_all), see check_indexed.
  Result<Bytes> read_row(const Segment& s, const IndexRow& row, uint64_t seq,
                         bool whole = false) const;
  // A record read at `row` is record `seq` and matches its index row (corrupt
  // naming the file). Unless `whole`, a payload that matches its row is not
  // checked against the header's checksum (it would add nothing to the payload).
  // `leaf`: hash_leaf(payload) when the caller hashed it already (read_range
  // hashes a run's records together), else null.
  Status check_indexed(const Segment& s, const IndexRow& row, uint64_t seq, const uint8_t* header,
                       ByteView payload, bool whole = false, const Hash32* leaf = nullptr) const;
  // Under the shared lock: the segment holding seq, and how many of the records
  // [seq, seq + count) it holds (not_found unless all are below size()).
  Result<std::pair<std::shared_ptr<const Segment>, uint64_t>> find(uint64_t seq,
                                                                   uint64_t count) const;
  // Reads the published index rows of records [seq, seq + out.size()) of `s`.
  Status read_rows(const Segment& s, uint64_t seq, std::span<IndexRow> out) const;
  // The segment holding seq and its row.
  Result<std::pair<std::shared_ptr<const Segment>, IndexRow>> locate(uint64_t seq) const;
  // Reads DIR/checkpoint (nullopt when absent); corrupt naming the file.
  Result<std::optional<LogCheckpoint>> read_checkpoint() const;

  fs::path dir_;
  LogStoreOptions options_;
  Fd lock_;
  mutable std::shared_mutex mu_;  // guards segments_ (the vector) and each rows vector
  std::vector<std::shared_ptr<Segment>> segments_;
  std::atomic<uint64_t> size_{0};
  std::atomic<uint64_t> first_{0};
  std::optional<LogCheckpoint> checkpoint_;  // under mu_
  uint64_t recovered_bytes_ = 0;
  uint64_t rebuilt_index_rows_ = 0;
  uint64_t dropped_index_rows_ = 0;
  // sync_head off: the newest head, written to the head file now and then and on close.
  mutable std::mutex head_mu_;
  std::optional<Bytes> pending_head_;
  std::optional<std::chrono::steady_clock::time_point> last_head_write_;  // under head_mu_
  bool failed_ = false;  // an fsync failed: the file state is unknown, refuse appends
  // A batch write_records wrote and sync_batch has not appended yet (writer only).
  struct Pending {
    bool active = false;
    uint64_t seq = 0;        // its first record's seq
    uint64_t end = 0;        // its records' end in the last segment
    uint64_t file_size = 0;  // the segment file's size after it (preallocation included)
    Bytes rows;              // its encoded index rows
  } pending_;
};

Result<std::optional<LogCheckpoint>> FileLogStore::read_checkpoint() const {
  const fs::path p = dir_ / kCheckpointFile;
  auto bytes = file_io::read_file(p, kMaxCheckpointBytes);
  if (!bytes.ok()) {
    if (bytes.error().code == Errc::not_found) return std::optional<LogCheckpoint>();
    return make_error(bytes.error().code == Errc::too_large ? Errc::corrupt : bytes.error().code,
                      "{}", bytes.error().message);
  }
  auto cp = decode_checkpoint(*bytes);
  if (!cp.ok()) {
    return make_error(Errc::corrupt, "{}: {}", p.string(), cp.error().to_string());
  }
  return std::optional<LogCheckpoint>(std::move(cp).value());
}

Status FileLogStore::open_all(const LogCheckpoint* create) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return make_error(Errc::io_error, "cannot create {}: {}", dir_.string(), ec.message());
  SWL_ASSIGN(lock_, file_io::open(dir_ / kLockFile, O_RDWR | O_CREAT));
  if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    return make_error(Errc::unavailable, "log store {} is open elsewhere (lock {}): {}",
                      dir_.string(), (dir_ / kLockFile).string(), std::strerror(errno));
  }

  std::vector<uint64_t> firsts;
  std::vector<uint64_t> index_firsts;
  for (const auto& de : fs::directory_iterator(dir_, ec)) {
    std::string name = de.path().filename().string();
    if (auto f = parse_seg_name(name, "log")) firsts.push_back(*f);
    if (auto f = parse_seg_name(name, "idx")) index_firsts.push_back(*f);
  }
  if (ec) return make_error(Errc::io_error, "cannot list {}: {}", dir_.string(), ec.message());
  std::sort(firsts.begin(), firsts.end());
  if (create) {
    if (!firsts.empty() || !index_firsts.empty() || fs::exists(dir_ / kCheckpointFile)) {
      return make_error(Errc::invalid_argument,
                        "cannot create a log at checkpoint {} in {}: the directory already holds "
                        "a log",
                        create->first_seq, dir_.string());
    }
    // The checkpoint first: a crash before the segment exists leaves a store
    // that opens empty at the checkpoint.
    SWL_TRY(file_io::durable_replace(dir_ / kCheckpointFile, encode_checkpoint(*create)));
  }
  SWL_ASSIGN(checkpoint_, read_checkpoint());
  const uint64_t first = checkpoint_ ? checkpoint_->first_seq : 0;
  if (first > 0) {
    // Segments wholly before the checkpoint are what a crash in drop_before left
    // (docs/formats/log-store.md): a segment is wholly before it when the next
    // one starts at or before it. One that is not, yet starts before it, would
    // hold entries the checkpoint says are gone: corrupt, never deleted.
    size_t drop = 0;
    while (drop < firsts.size() && firsts[drop] < first) {
      if (drop + 1 >= firsts.size() || firsts[drop + 1] > first) {
        return make_error(Errc::corrupt,
                          "{}: segment {} starts before the checkpoint at {} but is not wholly "
                          "before it",
                          dir_.string(), seg_name(firsts[drop], "log"), first);
      }
      ++drop;
    }
    bool removed = false;
    for (size_t i = 0; i < drop; ++i) {
      for (const char* ext : {"idx", "log"}) {
        if (fs::remove(dir_ / seg_name(firsts[i], ext), ec)) removed = true;
        if (ec) {
          return make_error(Errc::io_error, "cannot remove {}: {}",
                            (dir_ / seg_name(firsts[i], ext)).string(), ec.message());
        }
      }
    }
    // An index whose segment an interrupted drop already removed.
    for (uint64_t f : index_firsts) {
      if (f < first && fs::remove(dir_ / seg_name(f, "idx"), ec)) removed = true;
      if (ec) {
        return make_error(Errc::io_error, "cannot remove {}: {}",
                          (dir_ / seg_name(f, "idx")).string(), ec.message());
      }
    }
    if (removed) SWL_TRY(file_io::fsync_dir(dir_));
    firsts.erase(firsts.begin(), firsts.begin() + static_cast<ptrdiff_t>(drop));
    std::erase_if(index_firsts, [&](uint64_t f) { return f < first; });
  }
  first_.store(first, std::memory_order_release);
  for (uint64_t f : index_firsts) {
    if (!std::binary_search(firsts.begin(), firsts.end(), f)) {
      return make_error(Errc::corrupt, "{}: index without its segment {}",
                        (dir_ / seg_name(f, "idx")).string(), seg_name(f, "log"));
    }
  }
  if (firsts.empty()) {
    size_.store(first, std::memory_order_release);
    return create_segment(first);
  }

  uint64_t next = first;
  for (size_t i = 0; i < firsts.size(); ++i) {
    auto s = std::make_shared<Segment>();
    s->first_seq = firsts[i];
    s->seg_path = dir_ / seg_name(firsts[i], "log");
    s->idx_path = dir_ / seg_name(firsts[i], "idx");
    if (firsts[i] != next) {
      return make_error(Errc::corrupt, "{}: segment starts at seq {}, expected {} (missing segment?)",
                        s->seg_path.string(), firsts[i], next);
    }
    SWL_TRY(open_segment(*s, i + 1 == firsts.size()));
    next = s->first_seq + s->n_rows;
    segments_.push_back(std::move(s));
  }
  size_.store(next, std::memory_order_release);
  return {};
}

Status FileLogStore::open_segment(Segment& s, bool last) {
  const std::string seg_file = s.seg_path.string();
  const std::string idx_file = s.idx_path.string();
  SWL_ASSIGN(s.seg, file_io::open(s.seg_path, O_RDWR));
  SWL_ASSIGN(s.seg_size, file_io::file_size(s.seg.get(), s.seg_path));
  s.file_size = s.seg_size;
  const auto want_seg_header = file_header(kSegmentMagic, s.first_seq);
  if (s.seg_size < kFileHeaderBytes && last) {
    // Crash while the segment was being created: it never held a record.
    recovered_bytes_ += s.seg_size;
    SWL_TRY(file_io::truncate(s.seg.get(), 0, s.seg_path));
    SWL_TRY(file_io::pwrite_all(s.seg.get(), want_seg_header, 0, s.seg_path));
    SWL_TRY(file_io::fdatasync_file(s.seg.get(), s.seg_path));
    s.seg_size = kFileHeaderBytes;
    s.file_size = kFileHeaderBytes;
  }
  std::array<uint8_t, kFileHeaderBytes> header{};
  if (s.seg_size < kFileHeaderBytes) {
    return make_error(Errc::corrupt, "{}: {} byte(s), shorter than the segment header", seg_file,
                      s.seg_size);
  }
  SWL_TRY(file_io::pread_exact(s.seg.get(), header, 0, s.seg_path));
  if (header != want_seg_header) {
    return make_error(Errc::corrupt, "{}: offset 0: bad segment header (magic or first seq)",
                      seg_file);
  }

  // The index: missing or shorter than its header → rebuilt from the segment.
  SWL_ASSIGN(s.idx, file_io::open(s.idx_path, O_RDWR | O_CREAT));
  SWL_ASSIGN(uint64_t idx_size, file_io::file_size(s.idx.get(), s.idx_path));
  const auto want_idx_header = file_header(kIndexMagic, s.first_seq);
  bool rebuilt = idx_size < kFileHeaderBytes;
  if (rebuilt) {
    SWL_TRY(file_io::truncate(s.idx.get(), 0, s.idx_path));
    SWL_TRY(file_io::pwrite_all(s.idx.get(), want_idx_header, 0, s.idx_path));
    idx_size = kFileHeaderBytes;
  }
  // Cap before allocating: every record takes at least a record header.
  uint64_t max_rows = (s.seg_size - kFileHeaderBytes) / kRecordHeaderBytes;
  uint64_t n_rows = (idx_size - kFileHeaderBytes) / kIndexRowBytes;
  if (n_rows > max_rows) {
    if (!last) {
      return make_error(Errc::corrupt, "{}: {} index rows, but {} holds at most {} records",
                        idx_file, n_rows, seg_file, max_rows);
    }
    n_rows = max_rows;  // the rows past this point cannot fit: dropped below
  }
  Bytes idx_bytes(kFileHeaderBytes + n_rows * kIndexRowBytes);
  SWL_TRY(file_io::pread_exact(s.idx.get(), idx_bytes, 0, s.idx_path));
  if (!std::equal(want_idx_header.begin(), want_idx_header.end(), idx_bytes.begin())) {
    return make_error(Errc::corrupt, "{}: offset 0: bad index header (magic or first seq)", idx_file);
  }
  const uint64_t file_rows = (idx_size - kFileHeaderBytes) / kIndexRowBytes;
  // A partial last row is a torn index write: dropped (the file is rewritten from
  // the row boundary below).
  const bool partial_row = idx_size != kFileHeaderBytes + file_rows * kIndexRowBytes;

  // Rows with the right shape: contiguous from the header, inside the segment.
  // Held only while open() checks them; afterwards reads pread them.
  std::vector<IndexRow> rows;
  rows.reserve(n_rows);
  uint64_t expect = kFileHeaderBytes;
  for (uint64_t i = 0; i < n_rows; ++i) {
    const uint8_t* p = idx_bytes.data() + kFileHeaderBytes + i * kIndexRowBytes;
    IndexRow r = decode_row(p);
    if (r.offset != expect || r.end() > s.seg_size) {
      if (!last) {
        return make_error(Errc::corrupt,
                          "{}: offset {}: row {} (seq {}) says record at {} length {}, but the "
                          "previous record ends at {} and {} has {} byte(s)",
                          idx_file, kFileHeaderBytes + i * kIndexRowBytes, i, s.first_seq + i,
                          r.offset, r.length, expect, seg_file, s.seg_size);
      }
      // Last segment: the index is a cache of the segment. From here on its rows
      // are torn, zero-filled by a crash, or point past the segment's end (the
      // segment lost data the index had seen: sync off). Rebuilt by the scan.
      break;
    }
    rows.push_back(r);
    expect = r.end();
  }

  // Indexed records were acknowledged: the last kept one must be intact.
  idx_bytes = Bytes();  // the rows are decoded: free the file's copy now
  Bytes payload;
  if (!last && !rows.empty()) {
    SWL_TRY(read_row(s, rows.back(), s.first_seq + rows.size() - 1, true));
  }
  while (last && !rows.empty()) {
    const IndexRow& r = rows.back();
    const uint64_t seq = s.first_seq + rows.size() - 1;
    SWL_ASSIGN(ScannedRecord rec, scan_record(s, r.offset, seq, payload));
    if (!rec.row) {
      return make_error(Errc::corrupt, "{}: offset {}: indexed record seq {} is damaged: {}",
                        seg_file, r.offset, seq, rec.why);
    }
    if (rec.row->length == r.length && rec.row->leaf == r.leaf) break;
    // The record is valid but its row says otherwise: a row torn across two
    // pages of an index write that was not synced. Drop it and check the previous.
    rows.pop_back();
  }
  const uint64_t kept_rows = rows.size();
  if (last) dropped_index_rows_ += file_rows - kept_rows;
  expect = rows.empty() ? kFileHeaderBytes : rows.back().end();

  // Scan the records after the last indexed one.
  std::vector<IndexRow> found;
  uint64_t pos = expect;
  while (pos < s.seg_size) {
    uint64_t seq = s.first_seq + kept_rows + found.size();
    SWL_ASSIGN(ScannedRecord rec, scan_record(s, pos, seq, payload));
    if (rec.row) {
      found.push_back(*rec.row);
      pos = rec.row->end();
      continue;
    }
    // Zeros to the end of the file: the preallocation of an append that wrote
    // past its records (synced with them), not a torn record. Kept for the
    // next appends; nothing is cut. (A sealed segment is trimmed before the
    // next one is created, but zeros hold no record in any segment: the next
    // segment's first seq still has to follow this one's records.)
    SWL_ASSIGN(uint64_t content_end, last_nonzero_end(s, pos));
    if (content_end == pos) {
      s.seg_size = pos;
      break;
    }
    if (!last) {
      return make_error(Errc::corrupt, "{}: offset {}: bad record (seq {}) in a segment that is not "
                        "the last: {}", seg_file, pos, seq, rec.why);
    }
    if (rebuilt) {
      // Without an index we cannot tell acknowledged records from a torn tail.
      return make_error(Errc::corrupt, "{}: offset {}: bad record (seq {}) while rebuilding the "
                        "missing index {}: {}", seg_file, pos, seq, idx_file, rec.why);
    }
    // Torn tail: no append covering these bytes returned (appended records were
    // synced before their append returned, so they all precede it). Cut them,
    // with any preallocation after them (the zeros are not counted as recovered).
    recovered_bytes_ += content_end - pos;
    SWL_TRY(file_io::truncate(s.seg.get(), pos, s.seg_path));
    SWL_TRY(file_io::fdatasync_file(s.seg.get(), s.seg_path));
    s.seg_size = pos;
    s.file_size = pos;
  }
  if (last) rebuilt_index_rows_ += found.size();

  if (!found.empty() || partial_row || rebuilt || kept_rows != file_rows) {
    Bytes rows_bytes(found.size() * kIndexRowBytes);
    for (size_t i = 0; i < found.size(); ++i) encode_row(rows_bytes.data() + i * kIndexRowBytes, found[i]);
    rows.insert(rows.end(), found.begin(), found.end());
    s.n_rows = rows.size();
    SWL_TRY(file_io::pwrite_all(s.idx.get(), rows_bytes, kFileHeaderBytes + kept_rows * kIndexRowBytes,
                      s.idx_path));
    SWL_TRY(file_io::truncate(s.idx.get(), s.idx_size(), s.idx_path));
    SWL_TRY(file_io::fdatasync_file(s.idx.get(), s.idx_path));
    if (rebuilt) SWL_TRY(file_io::fsync_dir(dir_));
  } else if (last && options_.sync) {
    // Rows a killed process wrote may still be only in the page cache.
    SWL_TRY(file_io::fdatasync_file(s.idx.get(), s.idx_path));
  }
  s.n_rows = rows.size();
  s.file_rows = s.n_rows;
  s.synced_rows = s.n_rows;
  return {};
}

Result<ScannedRecord> FileLogStore::scan_record(const Segment& s, uint64_t pos, uint64_t seq,
                                                Bytes& payload) const {
  ScannedRecord out;
  if (s.seg_size - pos < kRecordHeaderBytes) {
    out.why = fmt::format("only {} byte(s) left for a {}-byte record header", s.seg_size - pos,
                          kRecordHeaderBytes);
    return out;
  }
  uint8_t rh[kRecordHeaderBytes];
  SWL_TRY(file_io::pread_exact(s.seg.get(), rh, pos, s.seg_path));
  uint64_t len = load_be(rh, 4);
  if (len > options_.max_record_bytes) {
    out.why = fmt::format("length {} is over the cap of {}", len, options_.max_record_bytes);
  } else if (len > s.seg_size - pos - kRecordHeaderBytes) {
    out.why = fmt::format("length {} runs past the end of the file", len);
  } else {
    payload.resize(len);
    SWL_TRY(file_io::pread_exact(s.seg.get(), payload, pos + kRecordHeaderBytes, s.seg_path));
    auto leaf = check_record(rh, payload, seq);
    if (leaf.ok()) {
      out.row = IndexRow{pos, static_cast<uint32_t>(len), *leaf};
    } else {
      out.why = leaf.error().message;
    }
  }
  return out;
}

Result<uint64_t> FileLogStore::last_nonzero_end(const Segment& s, uint64_t pos) const {
  // Read backwards in 64 KiB blocks: a preallocated tail is all zeros (read
  // whole, at most preallocate_bytes), a torn one usually ends near the end.
  Bytes buf;
  for (uint64_t end = s.file_size; end > pos;) {
    const uint64_t at = end - std::min<uint64_t>(64 << 10, end - pos);
    buf.resize(static_cast<size_t>(end - at));
    SWL_TRY(file_io::pread_exact(s.seg.get(), buf, at, s.seg_path));
    auto nz = std::find_if(buf.rbegin(), buf.rend(), [](uint8_t b) { return b != 0; });
    if (nz != buf.rend()) return at + static_cast<uint64_t>(buf.rend() - nz);
    end = at;
  }
  return pos;
}

Status FileLogStore::trim_preallocation(Segment& s) {
  if (s.file_size == s.seg_size) return {};
  if (auto st = file_io::truncate(s.seg.get(), s.seg_size, s.seg_path); !st.ok()) {
    failed_ = true;  // the file's length is unknown: reopen to recover
    return st;
  }
  s.file_size = s.seg_size;
  if (auto st = file_io::fdatasync_file(s.seg.get(), s.seg_path); !st.ok()) {
    failed_ = true;
    return st;
  }
  return {};
}

Status FileLogStore::write_index_tail(Segment& s, bool seal) {
  if (s.tail.empty()) {
    if (seal) {
      std::unique_lock lock(mu_);
      Bytes().swap(s.tail);
    }
    return {};
  }
  if (auto st = file_io::pwrite_all(s.idx.get(), s.tail, s.idx_file_size(), s.idx_path); !st.ok()) {
    failed_ = true;  // the index file's length is unknown: reopen to recover
    return st;
  }
  std::unique_lock lock(mu_);
  s.file_rows = s.n_rows;
  if (seal) {
    Bytes().swap(s.tail);
  } else {
    s.tail.clear();
  }
  return {};
}

Status FileLogStore::sync_index(Segment& s) {
  SWL_TRY(write_index_tail(s));
  if (s.synced_rows == s.n_rows) return {};
  if (auto st = file_io::fdatasync_file(s.idx.get(), s.idx_path); !st.ok()) {
    failed_ = true;
    return st;
  }
  s.synced_rows = s.n_rows;
  return {};
}

Status FileLogStore::create_segment(uint64_t first_seq) {
  // Order: segment (header, fsync), index (header, fsync), then the directory. A
  // crash in between leaves a last segment with no records, which open() repairs.
  auto s = std::make_shared<Segment>();
  s->first_seq = first_seq;
  s->seg_path = dir_ / seg_name(first_seq, "log");
  s->idx_path = dir_ / seg_name(first_seq, "idx");
  SWL_ASSIGN(s->seg, file_io::open(s->seg_path, O_RDWR | O_CREAT | O_EXCL));
  SWL_TRY(file_io::pwrite_all(s->seg.get(), file_header(kSegmentMagic, first_seq), 0, s->seg_path));
  if (options_.sync) SWL_TRY(file_io::fdatasync_file(s->seg.get(), s->seg_path));
  SWL_ASSIGN(s->idx, file_io::open(s->idx_path, O_RDWR | O_CREAT | O_TRUNC));
  SWL_TRY(file_io::pwrite_all(s->idx.get(), file_header(kIndexMagic, first_seq), 0, s->idx_path));
  if (options_.sync) {
    SWL_TRY(file_io::fdatasync_file(s->idx.get(), s->idx_path));
    SWL_TRY(file_io::fsync_dir(dir_));
  }
  s->seg_size = kFileHeaderBytes;
  s->file_size = kFileHeaderBytes;
  std::unique_lock lock(mu_);
  segments_.push_back(std::move(s));
  return {};
}

Status FileLogStore::write_records(std::span<const Bytes> records, std::span<const Hash32> leaves,
                                   bool start_writeback) {
  if (!leaves.empty() && leaves.size() != records.size()) {
    return make_error(Errc::internal, "log store {}: {} leaf hashes for {} records", dir_.string(),
                      leaves.size(), records.size());
  }
  if (failed_) {
    return make_error(Errc::io_error, "log store {}: an earlier fsync failed; reopen the store",
                      dir_.string());
  }
  if (pending_.active) {
    return make_error(Errc::internal,
                      "log store {}: a batch was written and not synced (sync_batch) before the "
                      "next one",
                      dir_.string());
  }
  if (records.empty()) return {};
  uint64_t total = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].size() > options_.max_record_bytes) {
      return make_error(Errc::too_large,
                        "log store {}: record {} of the batch (seq {}) has {} bytes, over the cap "
                        "of {}; nothing appended",
                        dir_.string(), i, size() + i, records[i].size(), options_.max_record_bytes);
    }
    total += kRecordHeaderBytes + records[i].size();
  }
  // A batch never spans two segments, so a torn batch is always in the last one.
  if (segments_.back()->n_rows != 0 &&
      segments_.back()->seg_size + total > options_.segment_bytes) {
    // Only the last segment's index may lack rows after a crash: seal this one.
    // Only the last segment may end in zeros: cut its preallocation first.
    SWL_TRY(write_index_tail(*segments_.back(), /*seal=*/true));
    if (options_.sync) SWL_TRY(sync_index(*segments_.back()));
    SWL_TRY(trim_preallocation(*segments_.back()));
    SWL_TRY(create_segment(size()));
  }
  Segment& s = *segments_.back();

  // Each record goes out behind its header straight from the caller's bytes
  // (one pwritev, no copy into a batch buffer).
  Bytes headers(records.size() * kRecordHeaderBytes);
  std::vector<ByteView> parts;
  parts.reserve(records.size() * 2);
  Bytes rows_bytes(records.size() * kIndexRowBytes);
  std::vector<IndexRow> rows(records.size());
  uint64_t seq = size();
  uint64_t pos = s.seg_size;
  std::vector<Hash32> hashed;
  if (leaves.empty()) {
    hashed.resize(records.size());
    hash_leaves(records, hashed);
    leaves = hashed;
  }
  static_assert(4 + kChecksumBytes == kRecordHeaderBytes);
  for (size_t i = 0; i < records.size(); ++i) {
    const Bytes& rec = records[i];
    IndexRow& r = rows[i];
    r.offset = pos;
    r.length = static_cast<uint32_t>(rec.size());
    r.leaf = leaves[i];
    assert(r.leaf == hash_leaf(rec));
    pos = r.end();
  }
  record_checksums(seq, rows, headers.data());  // the headers' bytes 4..19
  for (size_t i = 0; i < records.size(); ++i) {
    uint8_t* h = headers.data() + i * kRecordHeaderBytes;
    store_be(h, rows[i].length, 4);
    parts.emplace_back(h, kRecordHeaderBytes);
    parts.emplace_back(records[i]);
    encode_row(rows_bytes.data() + i * kIndexRowBytes, rows[i]);
  }

  auto undo = [&](Error e) { return undo_batch(s, std::move(e)); };
  if (auto st = file_io::pwritev_all(s.seg.get(), parts, s.seg_size, s.seg_path); !st.ok()) {
    return undo(st.take_error());
  }
  // Preallocation (docs/formats/log-store.md): when the batch ran past the
  // zero-filled part of the file, zero-fill it on to the next multiple of
  // preallocate_bytes (at most segment_bytes) before the fdatasync below, which
  // then syncs the new length once; the next appends overwrite allocated
  // blocks, and their fdatasync needs no metadata. A failure here (no space)
  // only forgoes the preallocation: the file is cut back to the batch's end.
  uint64_t file_size = std::max(s.file_size, pos);
  const uint64_t step = options_.preallocate_bytes;
  if (options_.sync && step > 0 && pos > s.file_size) {
    const uint64_t target =
        std::min(std::max(options_.segment_bytes, pos), (pos + step - 1) / step * step);
    static const Bytes zeros(64 << 10, 0);
    Status filled;
    for (uint64_t at = pos; at < target && filled.ok();) {
      const uint64_t n = std::min<uint64_t>(zeros.size(), target - at);
      filled = file_io::pwrite_all(s.seg.get(), ByteView(zeros.data(), n), at, s.seg_path);
      at += n;
    }
    if (filled.ok()) {
      file_size = target;  // >= pos: the zeros run on past the records
    } else if (auto st = file_io::truncate(s.seg.get(), pos, s.seg_path); !st.ok()) {
      return undo(st.take_error());
    }
  }
  if (options_.sync && start_writeback) {
    // The device writes the records while the caller works; sync_batch's
    // fdatasync then waits for that write and the disk's cache flush only.
    file_io::start_writeback(s.seg.get(), s.seg_size, pos - s.seg_size);
  }
  pending_ = Pending{true, seq, pos, file_size, std::move(rows_bytes)};
  return {};
}

Error FileLogStore::undo_batch(Segment& s, Error e) {
  if (!file_io::truncate(s.seg.get(), s.seg_size, s.seg_path).ok() ||
      !file_io::truncate(s.idx.get(), s.idx_file_size(), s.idx_path).ok()) {
    failed_ = true;
  }
  s.file_size = s.seg_size;
  return e;
}

Status FileLogStore::sync_batch() {
  if (!pending_.active) return {};
  Pending p = std::move(pending_);
  pending_ = Pending{};
  Segment& s = *segments_.back();
  const uint64_t seq = p.seq, pos = p.end, file_size = p.file_size;
  const Bytes& rows_bytes = p.rows;
  const uint64_t n = rows_bytes.size() / kIndexRowBytes;
  auto undo = [&](Error e) { return undo_batch(s, std::move(e)); };
  if (options_.sync) {
    if (auto st = file_io::fdatasync_file(s.seg.get(), s.seg_path); !st.ok()) {
      failed_ = true;
      return st.take_error();
    }
  }
  // The records are durable: the append has happened. Their index rows follow,
  // into the tail, written every index_write_rows rows and synced lazily (open()
  // rebuilds rows the index lost from the segment).
  const uint64_t rows_after = s.n_rows + n;
  const bool sync_rows = options_.sync && rows_after - s.synced_rows >= options_.index_sync_rows;
  const bool write_rows = sync_rows || rows_after - s.file_rows >= options_.index_write_rows;
  if (write_rows) {
    Bytes unwritten = s.tail;  // at most index_write_rows rows, once per that many appends
    unwritten.insert(unwritten.end(), rows_bytes.begin(), rows_bytes.end());
    if (auto st = file_io::pwrite_all(s.idx.get(), unwritten, s.idx_file_size(), s.idx_path);
        !st.ok()) {
      return undo(st.take_error());
    }
  }
  if (sync_rows) {
    if (auto st = file_io::fdatasync_file(s.idx.get(), s.idx_path); !st.ok()) {
      failed_ = true;
      return st.take_error();
    }
    s.synced_rows = rows_after;
  }

  std::unique_lock lock(mu_);
  if (write_rows) {
    s.tail.clear();
    s.file_rows = rows_after;
  } else {
    s.tail.insert(s.tail.end(), rows_bytes.begin(), rows_bytes.end());
  }
  s.n_rows = rows_after;
  s.seg_size = pos;
  s.file_size = file_size;
  size_.store(seq + n, std::memory_order_release);
  return {};
}

Result<std::pair<std::shared_ptr<const Segment>, uint64_t>> FileLogStore::find(
    uint64_t seq, uint64_t count) const {
  std::shared_lock lock(mu_);
  uint64_t n = size_.load(std::memory_order_acquire);
  if (seq >= n || count > n - seq) {
    return make_error(Errc::not_found, "log store {}: no record {} (size {})", dir_.string(),
                      seq >= n ? seq : n, n);
  }
  const uint64_t first = first_.load(std::memory_order_acquire);
  if (seq < first) {
    return make_error(Errc::not_found,
                      "log store {}: entry {} was compacted away (the log starts at {})",
                      dir_.string(), seq, first);
  }
  auto it = std::upper_bound(segments_.begin(), segments_.end(), seq,
                             [](uint64_t v, const auto& s) { return v < s->first_seq; });
  std::shared_ptr<const Segment> s = *--it;
  const uint64_t held = std::min(count, s->first_seq + s->n_rows - seq);
  return std::make_pair(std::move(s), held);
}

uint64_t FileLogStore::drop_point(uint64_t seq) const {
  std::shared_lock lock(mu_);
  auto it = std::upper_bound(segments_.begin(), segments_.end(), seq,
                             [](uint64_t v, const auto& s) { return v < s->first_seq; });
  if (it == segments_.begin()) return segments_.front()->first_seq;
  return (*--it)->first_seq;
}

Result<DropStats> FileLogStore::drop_before(const LogCheckpoint& cp) {
  if (failed_) {
    return make_error(Errc::io_error, "log store {}: an earlier fsync failed; reopen the store",
                      dir_.string());
  }
  const uint64_t f = cp.first_seq;
  if (f < first() || f > size() || drop_point(f) != f) {
    return make_error(Errc::invalid_argument,
                      "log store {}: cannot begin at {}: not a segment start in [{}, {}] (ask "
                      "drop_point)",
                      dir_.string(), f, first(), size());
  }
  if (cp.frontier.size() != static_cast<size_t>(std::popcount(f)) || (f > 0 && cp.head.empty())) {
    return make_error(Errc::invalid_argument,
                      "log store {}: a checkpoint at {} needs {} frontier hashes and a head",
                      dir_.string(), f, std::popcount(f));
  }
  // 1. The checkpoint, durably: from here on open() begins at f.
  if (auto st = file_io::durable_replace(dir_ / kCheckpointFile, encode_checkpoint(cp)); !st.ok()) {
    return st.take_error();
  }
  // 2. Unpublish the segments before f, then unlink them (readers that found
  // one already keep its fds through their shared_ptr).
  std::vector<std::shared_ptr<Segment>> gone;
  {
    std::unique_lock lock(mu_);
    checkpoint_ = cp;
    first_.store(f, std::memory_order_release);
    auto keep = std::find_if(segments_.begin(), segments_.end(),
                             [&](const auto& s) { return s->first_seq >= f; });
    gone.assign(segments_.begin(), keep);
    segments_.erase(segments_.begin(), keep);
  }
  DropStats stats;
  std::error_code ec;
  for (const auto& s : gone) {
    stats.entries += s->n_rows;
    stats.segments += 1;
    stats.bytes += s->seg_size + s->idx_size();
    // The index first: an index without its segment is corrupt unless it lies
    // before the checkpoint, which open() now knows.
    for (const fs::path* p : {&s->idx_path, &s->seg_path}) {
      fs::remove(*p, ec);
      if (ec) {
        return make_error(Errc::io_error,
                          "log store {}: checkpoint at {} written, but cannot remove {}: {} "
                          "(open() removes it)",
                          dir_.string(), f, p->string(), ec.message());
      }
    }
  }
  if (!gone.empty() && options_.sync) SWL_TRY(file_io::fsync_dir(dir_));
  return stats;
}

Status FileLogStore::read_rows(const Segment& s, uint64_t seq, std::span<IndexRow> out) const {
  // The newest published rows are in the segment's tail (copied under the
  // shared lock), the others in the index file (written before they left the
  // tail; the file never shrinks below them while the store is open). Segment
  // fds stay open for the store's life, so no lock is needed for the pread.
  size_t from_file = out.size();
  {
    std::shared_lock lock(mu_);
    const uint64_t first_in_tail = s.first_seq + s.file_rows;
    if (seq + out.size() > first_in_tail) {
      from_file = seq >= first_in_tail ? 0 : static_cast<size_t>(first_in_tail - seq);
      for (size_t i = from_file; i < out.size(); ++i) {
        const uint64_t at = (seq + i - first_in_tail) * kIndexRowBytes;
        if (at + kIndexRowBytes > s.tail.size()) {
          return make_error(Errc::internal, "log store {}: row of seq {} is not published",
                            dir_.string(), seq + i);
        }
        out[i] = decode_row(s.tail.data() + at);
      }
    }
  }
  if (from_file == 0) return {};
  uint8_t one[kIndexRowBytes];
  Bytes many;
  std::span<uint8_t> buf(one, sizeof one);
  if (from_file > 1) {
    many.resize(from_file * kIndexRowBytes);
    buf = many;
  }
  SWL_TRY(file_io::pread_exact(s.idx.get(), buf,
                               kFileHeaderBytes + (seq - s.first_seq) * kIndexRowBytes, s.idx_path));
  for (size_t i = 0; i < from_file; ++i) out[i] = decode_row(buf.data() + i * kIndexRowBytes);
  return {};
}

Result<std::pair<std::shared_ptr<const Segment>, IndexRow>> FileLogStore::locate(
    uint64_t seq) const {
  SWL_ASSIGN(auto at, find(seq, 1));
  IndexRow row;
  SWL_TRY(read_rows(*at.first, seq, std::span<IndexRow>(&row, 1)));
  return std::make_pair(std::move(at.first), row);
}

Result<Bytes> FileLogStore::read_row(const Segment& s, const IndexRow& row, uint64_t seq,
                                     bool whole) const {
  if (row.length > options_.max_record_bytes) {
    return make_error(Errc::too_large, "{}: offset {}: record seq {} has {} bytes, over the cap of {}",
                      s.seg_path.string(), row.offset, seq, row.length, options_.max_record_bytes);
  }
  uint8_t header[kRecordHeaderBytes];
  Bytes payload(row.length);
  iovec iov[2] = {{header, sizeof header}, {payload.data(), payload.size()}};
  ssize_t n = ::preadv(s.seg.get(), iov, 2, static_cast<off_t>(row.offset));
  if (n < 0) return os_error("cannot read", s.seg_path);
  size_t got = static_cast<size_t>(n);
  if (got < sizeof header) {
    SWL_TRY(file_io::pread_exact(s.seg.get(), std::span<uint8_t>(header + got, sizeof header - got),
                     row.offset + got, s.seg_path));
    got = sizeof header;
  }
  if (got < sizeof header + payload.size()) {
    size_t done = got - sizeof header;
    SWL_TRY(file_io::pread_exact(s.seg.get(), std::span<uint8_t>(payload).subspan(done),
                     row.offset + got, s.seg_path));
  }
  SWL_TRY(check_indexed(s, row, seq, header, payload, whole));
  return payload;
}

Status FileLogStore::check_indexed(const Segment& s, const IndexRow& row, uint64_t seq,
                                   const uint8_t* header, ByteView payload, bool whole,
                                   const Hash32* leaf) const {
  // A payload of the header's length whose leaf hash is its index row's is
  // the record that was appended (the row holds the appended payload's hash).
  // The header's checksum, one more hash per record read (over a quarter of
  // the CPU of serving a catch-up), adds nothing to that payload; it is
  // checked on open and by verify_all (a damaged header would make a rebuilt
  // index end there), and explains a mismatch below.
  if (!whole && load_be(header, 4) == payload.size() &&
      (leaf != nullptr ? *leaf : hash_leaf(payload)) == row.leaf) {
    return {};
  }
  auto checked = check_record(header, payload, seq);
  if (!checked.ok()) {
    return make_error(Errc::corrupt, "{}: offset {}: {}", s.seg_path.string(), row.offset,
                      checked.error().message);
  }
  if (*checked != row.leaf) {
    return make_error(Errc::corrupt, "{}: offset {}: record seq {} does not match its index row in {}",
                      s.seg_path.string(), row.offset, seq, s.idx_path.string());
  }
  return {};
}

Result<Bytes> FileLogStore::read(uint64_t seq) const {
  SWL_ASSIGN(auto loc, locate(seq));
  return read_row(*loc.first, loc.second, seq);
}

Result<std::vector<Bytes>> FileLogStore::read_range(uint64_t first, uint64_t max_count,
                                                    size_t max_bytes) const {
  constexpr uint64_t kMaxPread = 1 << 20;
  std::vector<Bytes> out;
  if (max_count == 0) return out;
  // The segment holding `first` (not_found unless it is held) and how many of
  // the records from it on, up to max_count, that segment holds.
  const uint64_t n_all = size_.load(std::memory_order_acquire);
  SWL_ASSIGN(auto at, find(first, n_all > first ? std::min(max_count, n_all - first) : 1));
  const Segment& s = *at.first;
  std::vector<IndexRow> rows(at.second);
  SWL_TRY(read_rows(s, first, rows));
  size_t bytes = 0;
  // Keep the records up to the byte budget (at least one).
  size_t n = 0;
  while (n < rows.size() && (n == 0 || bytes + rows[n].length <= max_bytes)) bytes += rows[n++].length;
  rows.resize(n);
  out.reserve(n);
  Bytes buf;
  std::vector<ByteView> payloads;
  std::vector<Hash32> leaves;
  for (size_t i = 0; i < rows.size();) {
    // A run of records that lie back to back, read with one pread.
    size_t j = i + 1;
    if (rows[i].length <= options_.max_record_bytes) {
      while (j < rows.size() && rows[j].offset == rows[j - 1].end() &&
             rows[j].length <= options_.max_record_bytes && rows[j].end() - rows[i].offset <= kMaxPread) {
        ++j;
      }
    }
    if (j == i + 1) {
      SWL_ASSIGN(Bytes one, read_row(s, rows[i], first + i));
      out.push_back(std::move(one));
      ++i;
      continue;
    }
    const uint64_t begin = rows[i].offset;
    buf.resize(rows[j - 1].end() - begin);
    SWL_TRY(file_io::pread_exact(s.seg.get(), buf, begin, s.seg_path));
    // The run's payloads hashed together (core/hash.h hash_leaves), then
    // each checked against its row.
    payloads.clear();
    for (size_t r = i; r < j; ++r) {
      payloads.emplace_back(buf.data() + (rows[r].offset - begin) + kRecordHeaderBytes,
                            rows[r].length);
    }
    leaves.resize(payloads.size());
    hash_leaves(payloads, leaves);
    for (size_t r = 0; i < j; ++i, ++r) {
      const uint8_t* header = buf.data() + (rows[i].offset - begin);
      SWL_TRY(check_indexed(s, rows[i], first + i, header, payloads[r], false, &leaves[r]));
      out.emplace_back(payloads[r].begin(), payloads[r].end());
    }
  }
  return out;
}

Result<Hash32> FileLogStore::leaf_hash(uint64_t seq) const {
  SWL_ASSIGN(auto loc, locate(seq));
  return loc.second.leaf;
}

Status FileLogStore::leaf_hashes(uint64_t first, std::span<Hash32> out) const {
  std::vector<IndexRow> rows;
  for (size_t done = 0; done < out.size();) {
    SWL_ASSIGN(auto at, find(first + done, out.size() - done));
    rows.resize(at.second);
    SWL_TRY(read_rows(*at.first, first + done, rows));
    for (const IndexRow& r : rows) out[done++] = r.leaf;
  }
  return {};
}

size_t FileLogStore::memory_bytes() const {
  std::shared_lock lock(mu_);
  size_t bytes = segments_.capacity() * sizeof(segments_[0]);
  for (const auto& s : segments_) {
    bytes += sizeof(Segment) + s->seg_path.native().capacity() + s->idx_path.native().capacity() +
             s->tail.capacity();
  }
  if (checkpoint_) {
    bytes += checkpoint_->frontier.capacity() * sizeof(Hash32) + checkpoint_->head.capacity();
  }
  return bytes;
}

Status FileLogStore::verify_all() const {
  uint64_t n = size();
  for (uint64_t seq = first(); seq < n; ++seq) {
    SWL_ASSIGN(auto loc, locate(seq));
    SWL_TRY(read_row(*loc.first, loc.second, seq, true));
  }
  return {};
}

Status FileLogStore::store_head(ByteView encoded_head) {
  if (encoded_head.size() > kMaxHeadFileBytes) {
    return make_error(Errc::too_large, "log store {}: head of {} bytes is over the cap of {}",
                      dir_.string(), encoded_head.size(), kMaxHeadFileBytes);
  }
  if (!options_.sync_head) {
    // Even an unsynced file replacement costs the next segment fdatasync a
    // journal commit with a new data block and a directory change (ext4,
    // data=ordered): keep the head in memory until close.
    // But write it unsynced now and then, so that auditors and backups of a
    // running (or killed) primary find a recent signed head on disk.
    std::lock_guard lock(head_mu_);
    pending_head_.emplace(encoded_head.begin(), encoded_head.end());
    const auto now = std::chrono::steady_clock::now();
    if (!last_head_write_ ||
        now - *last_head_write_ >= std::chrono::milliseconds(options_.head_write_interval_ms)) {
      last_head_write_ = now;
      return write_head_file(*pending_head_, false);
    }
    return {};
  }
  return write_head_file(encoded_head, options_.sync);
}

Status FileLogStore::write_head_file(ByteView encoded_head, bool durable) {
  // The temporary file is dir/head.tmp (docs/formats/log-store.md).
  return file_io::atomic_replace(dir_ / kHeadFile, encoded_head, durable);
}

FileLogStore::~FileLogStore() {
  // Make close cheap to recover from: the index rows not yet synced, and the head
  // kept in memory. Errors are ignored: open() recovers without them (and the
  // primary re-signs a head).
  if (pending_head_) (void)write_head_file(*pending_head_, options_.sync);
  if (failed_ || segments_.empty()) return;
  if (!options_.sync) {
    (void)write_index_tail(*segments_.back());
    return;
  }
  (void)sync_index(*segments_.back());
}

Result<std::optional<Bytes>> FileLogStore::load_head() const {
  {
    std::lock_guard lock(head_mu_);
    if (pending_head_) return pending_head_;
  }
  fs::path p = dir_ / kHeadFile;
  auto bytes = file_io::read_file(p, kMaxHeadFileBytes);
  if (!bytes.ok()) {
    if (bytes.error().code == Errc::not_found) return std::optional<Bytes>();
    if (bytes.error().code == Errc::too_large) {
      return Error{Errc::corrupt, bytes.error().message};
    }
    return bytes.take_error();
  }
  // An empty file is what a crash can leave when the rename of a head that was
  // not fsync'ed (sync_head off) reached the disk before its bytes: no head.
  if (bytes->empty()) return std::optional<Bytes>();
  return std::optional<Bytes>(std::move(bytes).value());
}

}  // namespace

Result<std::unique_ptr<LogStore>> LogStore::open(const fs::path& dir, LogStoreOptions options) {
  auto store = std::make_unique<FileLogStore>(dir, options);
  SWL_TRY(store->open_all(nullptr));
  return std::unique_ptr<LogStore>(std::move(store));
}

Result<std::unique_ptr<LogStore>> LogStore::create_at(const fs::path& dir, const LogCheckpoint& cp,
                                                      LogStoreOptions options) {
  if (cp.frontier.size() != static_cast<size_t>(std::popcount(cp.first_seq)) ||
      (cp.first_seq > 0 && cp.head.empty())) {
    return make_error(Errc::invalid_argument,
                      "a log store at checkpoint {} needs {} frontier hashes and a head",
                      cp.first_seq, std::popcount(cp.first_seq));
  }
  auto store = std::make_unique<FileLogStore>(dir, options);
  SWL_TRY(store->open_all(&cp));
  return std::unique_ptr<LogStore>(std::move(store));
}

}  // namespace swarmlite
