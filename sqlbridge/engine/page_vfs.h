// The page VFS shim (docs/vfs.md): a VFS named "swarmlite" wrapping the
// default VFS. It passes every call through and additionally
//  - captures, per connection, the pages a write transaction appends to the
//    WAL, and calls a commit hook at the commit frame *before* that frame
//    reaches the file, so the caller can compute the state root and append the
//    entry to the log ahead of SQLite's commit (or refuse the commit);
//  - records, per connection, which database pages a reader reads (main file
//    or WAL frames), for query proofs;
//  - pins "now" (xCurrentTime / xCurrentTimeInt64) on the calling thread.
// Connections opt in through URI parameters made by page_vfs_uri(); others pay nothing.
//
// Lifetime: a capture must outlive every connection opened with its URI (close
// the connection first). Captures register themselves in a global id -> pointer
// registry in their constructor and leave it in their destructor; the VFS looks
// the id up once, when SQLite opens the main database or its -wal file.
// Precondition for WriteCapture: the connection is the only writer of its
// database, in WAL mode with shared-memory locking (not locking_mode=EXCLUSIVE):
// the end of each write transaction is seen as the release of the WAL write lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite {

// Name of the shim; registers it (not as the default VFS) on first call. Thread-safe.
const char* page_vfs_name();

// Pages of the current write transaction: pgno -> newest bytes written.
using PageMap = std::map<uint32_t, Bytes>;

// Attach to one write connection. Not thread-safe: used by that connection's thread.
class WriteCapture {
 public:
  // Called once per commit, at the commit frame, before it is written.
  // `pages`: every page this transaction wrote (spilled frames included), newest
  // copy, restricted to pgno <= page_count (pages written and then cut off by the
  // same transaction are dropped); `page_count`: database size in pages after the commit.
  // An error fails the commit: SQLite gets SQLITE_IOERR_WRITE and rolls the
  // transaction back; the error is kept for take_hook_error().
  // A transaction that dirtied no page writes no frame and calls no hook.
  // The hook runs inside SQLite's commit (within xWrite, on the connection's
  // thread): it must not use this connection.
  using CommitHook = std::function<Status(const PageMap& pages, uint32_t page_count)>;

  WriteCapture();
  ~WriteCapture();
  WriteCapture(const WriteCapture&) = delete;
  WriteCapture& operator=(const WriteCapture&) = delete;

  void set_commit_hook(CommitHook hook) { hook_ = std::move(hook); }
  // The connection is its database's only writer, in this process and any
  // other (DeterministicDb: the primary's or a replica's write connection).
  // Set before the connection opens. Its main file then keeps the WAL write
  // lock from its first write transaction until the wal-index is unmapped
  // (close), so no other connection can write meanwhile, and its own read
  // locks stay in this file object instead of the shared memory
  // (docs/vfs.md "The sole writer's locks"). Default: off.
  void set_sole_writer(bool on) { sole_writer_ = on; }
  bool sole_writer() const { return sole_writer_; }
  // Forget pages of a transaction that did not commit (call after ROLLBACK).
  // Also done automatically when the connection releases the WAL write lock.
  void reset();
  // The hook's error from the last failed commit, if any (clears it).
  std::optional<Error> take_hook_error();
  uint64_t id() const { return id_; }
  // Commits the hook accepted so far (for tests and metrics).
  uint64_t commits() const { return commits_; }
  // Pages the current write transaction has written so far (spilled frames).
  size_t pending_pages() const { return pages_.size(); }

  // --- called by the VFS (the connection's -wal and main-db file objects) ---
  enum class WalWrite {
    forward,       // pass the write on (after anything held back)
    defer_header,  // a new frame's 24-byte header: hold it until its data write
    defer_data,    // a new frame's data, not the commit frame: may wait for the next frames
    refuse,        // the hook refused the commit: fail with SQLITE_IOERR_WRITE
  };
  WalWrite on_wal_write(const void* data, int amount, int64_t offset);
  // The connection released the WAL write lock: its write transaction is over.
  void on_write_lock_released() { reset(); }
  // Bumped by reset(): frames held back from a write transaction that ended
  // without its commit (rolled back) are dropped, never written later, when
  // another transaction, perhaps another connection's, may own their offsets.
  uint64_t generation() const { return generation_; }
  // The -wal file object wrote to the file (one write, however many frames).
  void on_file_write() { ++file_writes_; }
  // Writes to the -wal file so far (tests and benchmarks: frames per write).
  uint64_t file_writes() const { return file_writes_; }
  std::atomic<int> open_files{0};  // file objects holding a pointer to this capture

 private:
  bool sole_writer_ = false;
  struct PendingHeader {
    int64_t offset = 0;  // of the 24-byte frame header
    uint32_t pgno = 0;
    uint32_t commit_size = 0;  // nonzero only on the commit frame
  };
  // pages_[pgno], the node (and its buffer's capacity) taken from spare_ when
  // the page is new to the transaction.
  Bytes& page_copy(uint32_t pgno);
  // Empties pages_, keeping up to kSparePages of its nodes in spare_.
  void release_pages();
  static constexpr size_t kSparePages = 64;

  uint64_t id_;
  CommitHook hook_;
  PageMap pages_;
  // Nodes of pages_ from earlier transactions with their page buffers: a
  // commit's page copies reuse them instead of allocating two blocks a page.
  std::vector<PageMap::node_type> spare_;
  std::map<int64_t, uint32_t> frame_pgno_;  // frame data offset -> pgno (current txn)
  std::optional<PendingHeader> pending_header_;
  std::optional<Error> hook_error_;
  bool committed_ = false;  // the current write transaction's commit frame went out
  uint64_t commits_ = 0;
  uint64_t rewrites_ = 0;  // frame data overwritten in place (tests look at it)
  uint64_t generation_ = 0;
  uint64_t file_writes_ = 0;
  friend struct PageVfsAccess;
};

// Attach to one read connection. Thread-safe.
// Records the page numbers the connection reads through the VFS: main-file
// pages (a read of bytes inside page p counts p; the 100-byte header read counts
// page 1) and WAL frame data (attributed to the frame's pgno). Reads the page
// cache answers do not reach the VFS: capture on a fresh connection, or call
// sqlite3_db_release_memory() first (the parsed schema is still cached then).
// Memory-mapped I/O is disabled on captured connections so no read bypasses it.
class ReadCapture {
 public:
  ReadCapture();
  ~ReadCapture();
  ReadCapture(const ReadCapture&) = delete;
  ReadCapture& operator=(const ReadCapture&) = delete;

  std::set<uint32_t> pages() const;
  // Also keep the bytes of every page read in full (for query proofs). Off by default.
  void set_keep_bytes(bool keep);
  // pgno -> bytes of the newest full read of that page (empty unless keep_bytes).
  PageMap page_bytes() const;
  void clear();
  uint64_t id() const { return id_; }

  // --- called by the VFS ---
  void on_page_read(uint32_t pgno);
  // A read of the whole page `pgno` (`amount` = page size bytes at `data`).
  void on_full_page_read(uint32_t pgno, const void* data, int amount);
  std::atomic<int> open_files{0};  // file objects holding a pointer to this capture

 private:
  uint64_t id_;
  mutable std::mutex mu_;
  std::set<uint32_t> pages_;
  bool keep_bytes_ = false;
  PageMap bytes_;
};

// "file:<path>?vfs=swarmlite[&swl_w=<id>][&swl_r=<id>][&mode=ro]" — open it with
// SQLITE_OPEN_URI. Either capture may be null.
std::string page_vfs_uri(const std::filesystem::path& db, const WriteCapture* write,
                         const ReadCapture* read, bool read_only);

// Julian day number of the Unix epoch, in milliseconds (2440587.5 days): what
// xCurrentTimeInt64 returns for unix_ms is unix_ms + kUnixEpochJulianMs.
inline constexpr int64_t kUnixEpochJulianMs = 210866760000000;

// The time pinned on this thread, if any.
std::optional<int64_t> pinned_time_ms();

// While alive, the shim's time methods return `unix_ms` on this thread (nestable;
// the destructor restores the previous pin). SQLite reads the VFS time once per
// statement, so pin before stepping the statement.
class PinnedTime {
 public:
  explicit PinnedTime(int64_t unix_ms);
  ~PinnedTime();
  PinnedTime(const PinnedTime&) = delete;
  PinnedTime& operator=(const PinnedTime&) = delete;

 private:
  std::optional<int64_t> previous_;
};

}  // namespace swarmlite
