// The page VFS shim (DESIGN.md §3): a VFS named "swarmlite" wrapping the
// default VFS. It passes every call through and additionally
//  - captures, per connection, the pages a write transaction appends to the
//    WAL, and calls a commit hook at the commit frame *before* that frame
//    reaches the file, so the caller can compute the state root and append the
//    entry to the log ahead of SQLite's commit (or refuse the commit);
//  - records, per connection, which database pages a reader reads (main file
//    or WAL frames), for query proofs;
//  - pins "now" (xCurrentTime / xCurrentTimeInt64) on the calling thread.
// Connections opt in through URI parameters made by page_vfs_uri(); others pay nothing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

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
  // `pages`: every page this transaction wrote (spilled frames included), newest copy;
  // `page_count`: database size in pages after the commit.
  // An error fails the commit: SQLite gets SQLITE_IOERR_WRITE and rolls the
  // transaction back; the error is kept for take_hook_error().
  using CommitHook = std::function<Status(const PageMap& pages, uint32_t page_count)>;

  WriteCapture();
  ~WriteCapture();
  WriteCapture(const WriteCapture&) = delete;
  WriteCapture& operator=(const WriteCapture&) = delete;

  void set_commit_hook(CommitHook hook) { hook_ = std::move(hook); }
  // Forget pages of a transaction that did not commit (call after ROLLBACK).
  void reset();
  // The hook's error from the last failed commit, if any (clears it).
  std::optional<Error> take_hook_error();
  uint64_t id() const { return id_; }

  // --- called by the VFS ---
  void on_wal_write(const void* data, int amount, int64_t offset);

 private:
  uint64_t id_;
  CommitHook hook_;
  PageMap pages_;
  std::map<int64_t, uint32_t> frame_pgno_;  // frame data offset -> pgno (current txn)
  std::optional<std::pair<int64_t, uint32_t>> pending_header_;  // offset, commit size
  std::optional<Error> hook_error_;
  bool committed_ = false;
  friend struct PageVfsAccess;
 public:
  int pending_status_ = 0;  // SQLite result code for the write in progress (VFS use)
};

// Attach to one read connection. Thread-safe.
class ReadCapture {
 public:
  ReadCapture();
  ~ReadCapture();
  ReadCapture(const ReadCapture&) = delete;
  ReadCapture& operator=(const ReadCapture&) = delete;

  std::set<uint32_t> pages() const;
  void clear();
  uint64_t id() const { return id_; }

  // --- called by the VFS ---
  void on_page_read(uint32_t pgno);

 private:
  uint64_t id_;
  mutable std::mutex mu_;
  std::set<uint32_t> pages_;
};

// "file:<path>?vfs=swarmlite[&swl_w=<id>][&swl_r=<id>][&mode=ro]" — open it with
// SQLITE_OPEN_URI. Either capture may be null.
std::string page_vfs_uri(const std::filesystem::path& db, const WriteCapture* write,
                         const ReadCapture* read, bool read_only);

// While alive, the shim's time methods return `unix_ms` on this thread (nestable).
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
