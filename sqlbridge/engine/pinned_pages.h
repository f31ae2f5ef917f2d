// Pages of a pinned head read straight from the files (docs/light-client.md
// "Serving from the pin without a copy"): page p of the state a pin's read
// transactions see is the newest WAL frame for p among the frames of their
// snapshot, else page p of the database file. Read with plain preads of the
// database file and its -wal — no SQLite connection, no copy — and checked
// against the pin's state tree before it is returned.
//
// Why the files still hold that state while the pin lives (SQLite src/wal.c;
// WAL-index layout: sqlite.org/fileformat2.html "WAL-Index Format"):
// - open() runs right after the pin's read transactions began, under the
//   owner's writer lock (PinSlot::Repin::pin): no writer and no checkpoint ran since they began:
//   the WAL-index header in the -shm file (mxFrame, salts) is the snapshot they
//   read, and nBackfill says how far the database file has caught up.
// - A reader whose snapshot is the whole of a fully backfilled WAL (nBackfill
//   == mxFrame) takes read mark 0 and reads the database file alone. Read mark
//   0 blocks any backfill (a checkpoint needs it exclusively to copy frames),
//   so the database file keeps the snapshot's pages. The WAL itself may start
//   over under such a reader, so open() then serves from the database file
//   alone and never reads the WAL.
// - Otherwise the readers hold a read mark i > 0 whose value m ≤ mxFrame. The
//   WAL starts over only when a writer or a RESTART/TRUNCATE checkpoint locks
//   every read mark i > 0 exclusively: not while they hold one; so frames 1..mxFrame
//   stay where they are. A checkpoint backfills only frames ≤ m ≤ mxFrame into
//   the database file: only pages that have a frame in the snapshot, which are
//   read from the WAL; every other page of the database file stays as it was.
// So while the read transactions are open the files hold exactly the pinned
// state: PinnedPages keeps them open (`keep_alive`, the pin's PinnedProver).
// A page that still differs from the tree was changed behind SQLite's back
// (another process, the disk): Errc::corrupt naming the page, never the bytes.
//
// Why the -shm header rather than a scan of the WAL alone: a scan finds the
// last valid commit frame (= mxFrame, no writer ran), but not nBackfill, and a
// reader on read mark 0 does not keep the WAL from starting over. The WAL is
// still scanned — to index the frames — and must agree with the header (salts,
// mxFrame valid frames, the last one a commit frame of the tree's page count).
// The scan is incremental across pins (PinnedWalCursor): only the frames added
// since the previous pin are read, unless the WAL started over (new salts).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/file_io.h"
#include "core/head.h"
#include "core/merkle.h"
#include "sqlbridge/engine/page_set.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/engine/wal_scan.h"

namespace swarmlite {

// Pages per request (docs/light-client.md "Page service": 1 MiB of 4 KiB pages).
inline constexpr size_t kMaxPinnedPagesPerRequest = 256;

// The WAL frame index carried from one pin to the next (the applier's; not
// thread-safe): frames 1..scan.frames of the WAL whose salts are scan.salts.
struct PinnedWalCursor {
  WalScan scan;
  std::unordered_map<uint32_t, uint32_t> newest_frame;  // pgno -> newest frame
  uint32_t last_db_size = 0;  // the database size of frame scan.frames if a commit frame, else 0
};

class PinnedPages {
 public:
  // Call right after the pin's read transactions began (see above), with
  // `tree` describing their state and `keep_alive` owning them. `cursor` (may
  // be null) is the previous pin's WAL index, advanced here. Errors: the -shm
  // WAL-index header unreadable or torn, the WAL disagreeing with it (corrupt).
  static Result<std::shared_ptr<const PinnedPages>> open(const std::filesystem::path& db_path,
                                                         std::shared_ptr<const StateTree> tree,
                                                         std::shared_ptr<const void> keep_alive,
                                                         PinnedWalCursor* cursor = nullptr);

  uint32_t page_count() const { return tree_->page_count(); }
  uint32_t page_size() const { return page_size_; }
  const StateTree& tree() const { return *tree_; }
  // Frames of the WAL in the pinned snapshot served from the WAL (0: the
  // database file alone, read mark 0), and the frames open() had to scan.
  uint32_t wal_frames() const { return wal_frames_; }
  uint32_t frames_scanned() const { return frames_scanned_; }

  // Page `pgno` (1..page_count()) of the pinned state into `out`, checked
  // against the tree's leaf: invalid_argument outside 1..page_count(), corrupt
  // when the files hold other bytes. The lock-byte page is zeros (its fixed
  // leaf, state_tree.h). Thread-safe.
  Status read(uint32_t pgno, Bytes& out) const;
  // read() of each page of `pgnos` (any order, at most kMaxPinnedPagesPerRequest).
  Result<std::vector<Bytes>> read(std::span<const uint32_t> pgnos) const;

 private:
  PinnedPages() = default;
  std::filesystem::path db_path_;
  std::filesystem::path wal_path_;
  std::shared_ptr<const StateTree> tree_;
  std::shared_ptr<const void> keep_alive_;
  file_io::Fd db_fd_;
  file_io::Fd wal_fd_;
  uint32_t page_size_ = 0;
  uint32_t wal_frames_ = 0;
  uint32_t frames_scanned_ = 0;
  std::unordered_map<uint32_t, uint32_t> newest_frame_;  // pgno -> frame ≤ wal_frames_
};

}  // namespace swarmlite
