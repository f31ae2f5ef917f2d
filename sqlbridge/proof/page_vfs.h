// A read-only SQLite VFS over page files that live in this process: the base
// of the proof VFS (proof_vfs.h, docs/verified-reads.md) and the light
// client's VFS (client/light_vfs.h, docs/light-client.md "VFS and query
// execution"). Each PageVfs is one registered VFS with its own name, file-name
// prefix and URI parameter; each file registers under a numeric id, and its
// URI ("file:<prefix><id>?vfs=<name>[&immutable=1]&<param>=<id>") is how
// xOpen finds it. What every such VFS does the same way:
//  - only the main database is served from the page file; a journal, WAL or
//    super-journal cannot be opened (SQLITE_CANTOPEN); temporary files (the
//    sorter, temp tables of a query) go to the default VFS, in the same
//    sqlite3_file buffer (szOsFile covers both);
//  - writes and truncation are SQLITE_READONLY, sync is a no-op, locks are
//    no-ops (no other connection can change a page file), no shared memory
//    and no memory mapping (io methods version 1: every read is xRead);
//  - a name with the prefix does not exist for xAccess and cannot be deleted;
//  - everything else passes through to the default VFS.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace swarmlite {

class PageVfsFile {
 public:
  virtual ~PageVfsFile() = default;
  virtual uint64_t file_size() const = 0;
  // Copies [offset, offset + amount) into `out`: SQLITE_OK, or
  // SQLITE_IOERR_SHORT_READ with the bytes past the end zero-filled, or
  // another SQLite error code (SQLITE_IOERR_READ when a page cannot be had).
  virtual int read(void* out, int amount, int64_t offset) = 0;
  // Whether the file reports SQLITE_IOCAP_IMMUTABLE (SQLite then never
  // rechecks the header; see proof_vfs.h for the file that must not).
  virtual bool immutable() const = 0;
};

class PageVfs {
 public:
  // Registers the VFS (not as the default) with SQLite. `name`, `file_prefix`
  // and `id_param` must be string literals (SQLite keeps the name pointer).
  // A PageVfs is never destroyed while SQLite may use it: hold it in a
  // function-local static.
  PageVfs(const char* name, const char* file_prefix, const char* id_param);
  PageVfs(const PageVfs&) = delete;
  PageVfs& operator=(const PageVfs&) = delete;

  const char* name() const { return vfs_.zName; }
  // Makes `file` reachable through uri(id) until remove(id). `file` must
  // outlive every connection opened on that URI.
  uint64_t add(PageVfsFile& file);
  void remove(uint64_t id);
  // With immutable: "&immutable=1" (the pager never rechecks the file).
  std::string uri(uint64_t id, bool immutable) const;

  // --- for the VFS methods ---
  PageVfsFile* find(uint64_t id) const;
  bool owns_name(const char* name) const;
  const char* id_param() const { return id_param_; }
  sqlite3_vfs* base() const { return base_; }

 private:
  sqlite3_vfs vfs_{};
  sqlite3_vfs* base_;
  const char* prefix_;
  const char* id_param_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, PageVfsFile*> files_;
  uint64_t next_id_ = 1;
};

// The page-by-page walk both files' read() do: splits [offset, offset +
// amount) of a file of page_count pages of page_size bytes into per-page
// pieces and calls `piece(pgno, offset_in_page, length, dst)` for each, in
// order, stopping at the first code other than SQLITE_OK, which it returns;
// bytes past the end are zero-filled and give SQLITE_IOERR_SHORT_READ.
int read_by_pages(void* out, int amount, int64_t offset, uint32_t page_size, uint32_t page_count,
                  const std::function<int(uint32_t, uint32_t, uint32_t, uint8_t*)>& piece);

}  // namespace swarmlite
