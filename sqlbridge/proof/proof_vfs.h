// The proof VFS (docs/verified-reads.md): an in-memory, read-only SQLite VFS
// named "swarmlite-proof" that serves a database made only of the pages a query
// proof carries. Reading any other page fails (SQLITE_IOERR_READ) and is
// remembered, so the verifier can say "page N was read but is not in the proof".
//
// How: each ProofImage registers itself under a numeric id; its uri() names the
// VFS and the id ("file:swarmlite-proof-<id>?vfs=swarmlite-proof&immutable=1&swl_proof=<id>").
// xOpen of the main database looks the id up; the file it returns
//  - has size page_count * page_size (the head's page count);
//  - serves page 1 with header bytes 18–19 set to 1 (rollback journal), so a
//    database written in WAL mode opens without a WAL; those bytes are outside
//    the state tree's hash (normalize_page), so this changes nothing proven;
//  - serves SQLite's lock-byte page (state_tree.h), if SQLite asks and the
//    proof lacks it, as zeros: its state-tree leaf is that of a zero page, and
//    SQLite never reads it, so no proof needs to carry it;
//  - refuses writes (SQLITE_READONLY); locks are no-ops (immutable=1).
// Temporary files SQLite needs while sorting etc. go to the default VFS. The
// SQLite side of this is the read-only page VFS shared with the light client
// (page_vfs.h).
//
// A reusable image (Mode::reusable, for VerifierCache) serves one proof after
// another on the same connection: replace_pages() swaps the page set. Its URI
// has no immutable=1 and its file reports no IOCAP_IMMUTABLE, so SQLite's pager
// runs its ordinary cross-process check at the start of every read
// transaction: it reads header bytes 24–39 and, when they differ from the ones
// it cached, drops its whole page cache (pager_reset). Each replace_pages()
// serves page 1 with a new generation number in bytes 24–27 (file change
// counter) and 92–95 (version-valid-for, so the in-header page count, which is
// hashed, stays valid). Those bytes are normalised to zero in the proof and are
// outside the state tree's hash: nothing proven changes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/bytes.h"

namespace swarmlite {

// Name of the VFS; registers it (not as the default) on first call. Thread-safe.
const char* proof_vfs_name();

// The pages one verification serves. Must outlive every connection opened on
// uri(). Thread-safe (reads from SQLite may come from any thread).
class ProofImage {
 public:
  enum class Mode {
    immutable,  // one proof, one connection (immutable=1: SQLite never rechecks the file)
    reusable,   // replace_pages() between queries; the pager drops its cache on each change
  };
  using PageViews = std::vector<std::pair<uint32_t, ByteView>>;

  // Precondition: `pages` strictly increasing by pgno, each in [1, page_count]
  // and exactly page_size bytes. The views are not copied: the bytes must stay
  // alive and unchanged until the image is destroyed or its pages replaced
  // (page 1 is copied to patch it).
  ProofImage(uint32_t page_size, uint32_t page_count, PageViews pages,
             Mode mode = Mode::immutable);
  ~ProofImage();
  ProofImage(const ProofImage&) = delete;
  ProofImage& operator=(const ProofImage&) = delete;

  std::string uri() const;
  Mode mode() const { return mode_; }
  // Pages SQLite asked for that the image does not hold, in order of first request.
  std::vector<uint32_t> missing_pages() const;

  // Serves `pages` from now on (same preconditions as the constructor, same
  // page size and count) and forgets the missing and read pages; a reusable
  // image serves them under a new generation. Precondition: no statement is
  // running on a connection to this image (between queries). On an immutable
  // image SQLite keeps serving the pages it cached: the caller must empty the
  // connection's page cache first (the tests show why; VerifierCache uses
  // reusable images).
  void replace_pages(PageViews pages);
  // While on, every page served is remembered (distinct, in order of first read).
  void record_reads(bool on);
  std::vector<uint32_t> read_pages() const;

  // --- called by the VFS ---
  uint64_t file_size() const { return uint64_t{page_size_} * page_count_; }
  // Copies [offset, offset+amount) into out. false if it touches a page not in
  // the image (recorded); bytes beyond the end read as zeros (short read).
  enum class ReadStatus { ok, short_read, missing };
  ReadStatus read(void* out, int amount, int64_t offset);

 private:
  class VfsFile;  // the image as page_vfs.h's PageVfsFile
  const ByteView* find(uint32_t pgno) const;
  void set_pages(PageViews pages);

  uint64_t id_ = 0;
  uint32_t page_size_;
  uint32_t page_count_;
  Mode mode_;
  PageViews pages_;
  Bytes page1_;  // patched copy of page 1, when present
  mutable std::mutex mu_;
  std::vector<uint32_t> missing_;
  std::atomic<bool> record_{false};
  std::vector<uint32_t> read_;
  std::unique_ptr<VfsFile> vfs_file_;
};

}  // namespace swarmlite
