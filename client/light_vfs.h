// The light client's SQLite VFS (docs/light-client.md "VFS and query
// execution"): a read-only, immutable database file of page_count × page_size
// bytes whose pages come from a LightPager — the client, which serves a page
// from its verified cache or fetches, verifies and stores it first. SQLite
// never sees a byte the pager did not verify against the head it runs at.
//
// Like the proof VFS (sqlbridge/proof/proof_vfs.h), on the same read-only
// page VFS (sqlbridge/proof/page_vfs.h): one registration per
// pager, named in the URI ("file:swarmlite-light-<id>?vfs=swarmlite-light&
// immutable=1&swl_light=<id>"); no journal, no WAL, no shared memory; writes
// are SQLITE_READONLY; locks are no-ops; temporary files (sorter, temp tables)
// go to the default VFS. A pager serves one head: a connection opened on it
// never sees another (immutable=1 lets SQLite cache pages for the
// connection's life), so the client opens a new connection per head.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/bytes.h"

namespace swarmlite::client {

class LightPager {
 public:
  virtual ~LightPager() = default;
  virtual uint32_t page_size() const = 0;
  virtual uint32_t page_count() const = 0;
  // Page `pgno` (1..page_count) into `out` (page_size bytes). false when it
  // cannot be had verified; the pager keeps the reason (SQLite only sees
  // SQLITE_IOERR_READ). Page 1 is served with its header canonical
  // (canonicalize_page1_header: rollback mode, a valid in-header page count).
  virtual bool read_page(uint32_t pgno, std::span<uint8_t> out) = 0;
};

// Registers the VFS (not as the default) on first call. Thread-safe.
const char* light_vfs_name();

// `pager` reachable through uri() while this lives (it must outlive every
// connection opened on the URI).
class LightVfsFile {
 public:
  explicit LightVfsFile(LightPager& pager);
  ~LightVfsFile();
  LightVfsFile(const LightVfsFile&) = delete;
  LightVfsFile& operator=(const LightVfsFile&) = delete;
  std::string uri() const;

 private:
  class File;  // the pager as a PageVfsFile
  std::unique_ptr<File> file_;
  uint64_t id_;
};

// The child page numbers of a B-tree interior page (table 0x05 or index 0x02;
// page 1's header starts at byte 100), in key order, right-most child last.
// Empty for any other page or a page whose cells do not parse (it is only a
// prefetch hint: a wrong guess costs bytes, never correctness).
std::vector<uint32_t> btree_children(uint32_t pgno, ByteView page);

}  // namespace swarmlite::client
