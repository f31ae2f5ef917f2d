// Pages of a pinned head from the files (pinned_pages.h has why it is sound).
#include "sqlbridge/engine/pinned_pages.h"

#include <fcntl.h>

#include <cstring>

namespace swarmlite {
namespace {

// The -shm file's start (sqlite.org/fileformat2.html "WAL-Index Format"), in
// the host's byte order: two copies of the 48-byte WAL-index header, then the
// checkpoint information, whose first field is nBackfill.
constexpr size_t kShmHeaderBytes = 48;
constexpr size_t kShmReadBytes = 2 * kShmHeaderBytes + 4;
constexpr uint32_t kWalIndexVersion = 3007000;

struct WalIndexHeader {
  uint32_t mx_frame = 0;
  uint8_t salts[8] = {};  // as in the -wal header (copied byte for byte)
  uint32_t n_backfill = 0;
};

uint32_t host32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

Result<WalIndexHeader> read_wal_index_header(const std::filesystem::path& shm_path) {
  // Kept open: closing a descriptor of it would drop SQLite's locks (file_io.h).
  auto fd = file_io::open_kept(shm_path);
  if (!fd.ok()) {
    return make_error(Errc::unavailable,
                      "{}: cannot read the WAL index ({}): pinned pages need the database in WAL "
                      "mode with shared memory",
                      shm_path.string(), fd.error().to_string());
  }
  uint8_t buf[kShmReadBytes];
  SWL_ASSIGN(size_t got,
             file_io::pread_up_to(fd->get(), std::span<uint8_t>(buf, sizeof buf), 0, shm_path));
  // Both copies equal and initialised: no writer was in the middle of
  // changing it (none can be: the caller holds the apply lock).
  if (got != sizeof buf || std::memcmp(buf, buf + kShmHeaderBytes, kShmHeaderBytes) != 0 ||
      host32(buf) != kWalIndexVersion || buf[12] != 1) {
    return make_error(Errc::corrupt,
                      "{}: the WAL-index header is torn or not initialised ({} bytes read)",
                      shm_path.string(), got);
  }
  WalIndexHeader h;
  h.mx_frame = host32(buf + 16);
  std::memcpy(h.salts, buf + 32, sizeof h.salts);
  h.n_backfill = host32(buf + 2 * kShmHeaderBytes);
  return h;
}

}  // namespace

Result<std::shared_ptr<const PinnedPages>> PinnedPages::open(const std::filesystem::path& db_path,
                                                             std::shared_ptr<const StateTree> tree,
                                                             std::shared_ptr<const void> keep_alive,
                                                             PinnedWalCursor* cursor) {
  if (!tree)
    return make_error(Errc::invalid_argument, "{}: pinned pages need a state tree",
                      db_path.string());
  std::shared_ptr<PinnedPages> p(new PinnedPages());
  p->db_path_ = db_path;
  p->wal_path_ = db_path;
  p->wal_path_ += "-wal";
  p->tree_ = std::move(tree);
  p->keep_alive_ = std::move(keep_alive);
  p->page_size_ = p->tree_->page_size();
  SWL_ASSIGN(p->db_fd_, file_io::open_kept(db_path));  // as the -shm file's, below

  std::filesystem::path shm_path = db_path;
  shm_path += "-shm";
  SWL_ASSIGN(WalIndexHeader idx, read_wal_index_header(shm_path));
  if (idx.n_backfill >= idx.mx_frame) return std::shared_ptr<const PinnedPages>(std::move(p));

  // The snapshot has frames the database file does not: index them.
  SWL_ASSIGN(p->wal_fd_, file_io::open(p->wal_path_, O_RDONLY));
  PinnedWalCursor local;
  PinnedWalCursor& c = cursor ? *cursor : local;
  if (!c.scan.usable || std::memcmp(c.scan.salts, idx.salts, sizeof idx.salts) != 0 ||
      c.scan.frames > idx.mx_frame) {
    c = PinnedWalCursor{};  // the WAL started over (or first pin): scan from its header
    SWL_ASSIGN(c.scan, WalScan::begin(p->wal_fd_, p->wal_path_));
    if (!c.scan.usable || std::memcmp(c.scan.salts, idx.salts, sizeof idx.salts) != 0) {
      c = PinnedWalCursor{};
      return make_error(Errc::corrupt,
                        "{}: the WAL header is invalid or its salts differ from the WAL index's "
                        "({} frames in the pinned snapshot)",
                        p->wal_path_.string(), idx.mx_frame);
    }
  }
  const uint32_t before = c.scan.frames;
  SWL_TRY(c.scan.scan(p->wal_fd_, p->wal_path_, idx.mx_frame,
                      [&](uint32_t frame, uint32_t pgno, uint32_t db_size, int64_t) {
                        c.newest_frame[pgno] = frame;
                        c.last_db_size = db_size;
                      }));
  p->frames_scanned_ = c.scan.frames - before;
  if (c.scan.frames != idx.mx_frame || c.last_db_size != p->tree_->page_count()) {
    const uint32_t valid = c.scan.frames;
    const uint32_t db_size = c.last_db_size;
    c = PinnedWalCursor{};
    return make_error(Errc::corrupt,
                      "{}: the pinned snapshot ends at WAL frame {} with {} pages, the file has {} "
                      "valid frames, the last one {} (database size {})",
                      p->wal_path_.string(), idx.mx_frame, p->tree_->page_count(), valid,
                      db_size ? "a commit frame" : "not a commit frame", db_size);
  }
  p->wal_frames_ = idx.mx_frame;
  p->newest_frame_ = c.newest_frame;
  return std::shared_ptr<const PinnedPages>(std::move(p));
}

Status PinnedPages::read(uint32_t pgno, Bytes& out) const {
  const uint32_t count = page_count();
  if (pgno == 0 || pgno > count) {
    return make_error(Errc::invalid_argument, "{}: page {} is outside the pinned head's 1..{}",
                      db_path_.string(), pgno, count);
  }
  out.assign(page_size_, 0);
  if (pgno == lock_byte_page(page_size_)) return ok_status();  // zeros by definition
  const char* from = "the database file";
  if (auto it = newest_frame_.find(pgno); it != newest_frame_.end()) {
    const int64_t off = wal_frame_data_offset(it->second, page_size_);
    SWL_ASSIGN(size_t n,
               file_io::pread_up_to(wal_fd_.get(), out, static_cast<uint64_t>(off), wal_path_));
    if (n != out.size()) {
      return make_error(Errc::corrupt,
                        "{}: page {} of the pinned head: its WAL frame {} at offset {} is short "
                        "({} bytes): the file was changed outside SQLite",
                        wal_path_.string(), pgno, it->second, off, n);
    }
    from = "its WAL frame";
  } else {
    // Past the end of the file the page reads as zeros, as in SQLite.
    SWL_ASSIGN(size_t n,
               file_io::pread_up_to(db_fd_.get(), out, uint64_t{pgno - 1} * page_size_, db_path_));
    (void)n;
  }
  if (page_leaf_hash(pgno, out) != tree_->tree().leaf(pgno - 1)) {
    return make_error(Errc::corrupt,
                      "{}: page {} of the pinned head, read from {}, differs from the state tree: "
                      "the file was changed outside swarmlite (or by the disk)",
                      db_path_.string(), pgno, from);
  }
  return ok_status();
}

Result<std::vector<Bytes>> PinnedPages::read(std::span<const uint32_t> pgnos) const {
  if (pgnos.size() > kMaxPinnedPagesPerRequest) {
    return make_error(Errc::invalid_argument, "{}: {} pages asked, at most {} per request",
                      db_path_.string(), pgnos.size(), kMaxPinnedPagesPerRequest);
  }
  std::vector<Bytes> pages(pgnos.size());
  for (size_t i = 0; i < pgnos.size(); ++i) SWL_TRY(read(pgnos[i], pages[i]));
  return pages;
}

}  // namespace swarmlite
