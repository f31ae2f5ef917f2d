// The "swarmlite" VFS shim (docs/vfs.md). How it works:
//
// The shim is registered once, next to (not instead of) the default VFS, which
// it wraps. A connection selects it with `vfs=swarmlite` in its URI. Only the
// main database file and its -wal file get our file object; every other file
// (temp files, a rollback journal) is opened straight by the wrapped VFS.
//
// Our file object is a PageFile header followed by the wrapped VFS's own file
// object (szOsFile = sizeof(PageFile) + wrapped szOsFile), as in SQLite's
// ext/misc/cksumvfs.c. Every method forwards to the wrapped file; three of them
// also look at the bytes:
//   xWrite   (-wal, with a WriteCapture): WriteCapture::on_wal_write tracks the
//            frames of the write transaction; the transaction's frames are
//            held back and go to the file in one write when the commit
//            frame's data comes (one syscall per commit instead of two per
//            frame); for the commit frame the commit hook runs first and,
//            only if it accepts, the frames are written.
//   xRead    (main db or -wal, with a ReadCapture): records the page numbers read.
//   xShmLock (main db, with a WriteCapture): the release of the WAL write lock
//            ends the write transaction, so captured state is dropped. For
//            a sole writer (WriteCapture::set_sole_writer) the write lock is
//            kept from the first write transaction until xShmUnmap, and the
//            connection's own read locks are kept here, not in the shared
//            memory: four fcntl calls fewer per transaction (docs/vfs.md
//            "The sole writer's locks").
// The time methods of the VFS return the thread's PinnedTime, if any.
#include "sqlbridge/engine/page_vfs.h"

#include "core/fault_injection.h"
#include "sqlbridge/sqlite_util.h"

#include <sqlite3.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace swarmlite {
namespace {

// ---------------------------------------------------------------------------
// Capture registry: id -> capture, so a URI parameter can name a capture.

std::atomic<uint64_t> g_next_id{1};

struct Registry {
  std::mutex mu;
  std::unordered_map<uint64_t, WriteCapture*> writes;
  std::unordered_map<uint64_t, ReadCapture*> reads;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: captures may outlive statics
  return *r;
}

WriteCapture* find_write_capture(uint64_t id) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.writes.find(id);
  return it == r.writes.end() ? nullptr : it->second;
}

ReadCapture* find_read_capture(uint64_t id) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.reads.find(id);
  return it == r.reads.end() ? nullptr : it->second;
}

uint32_t load_be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

bool is_page_size(int64_t n) { return n >= 512 && n <= 65536 && (n & (n - 1)) == 0; }

// WAL layout (SQLite's src/wal.c): a 32-byte header, then frames of a 24-byte
// header and one page.
constexpr int64_t kWalHeaderSize = 32;
constexpr int64_t kWalFrameHeaderSize = 24;

thread_local std::optional<int64_t> t_pinned_ms;

}  // namespace

// ---------------------------------------------------------------------------
// WriteCapture

WriteCapture::WriteCapture() : id_(g_next_id.fetch_add(1)) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.writes.emplace(id_, this);
}

WriteCapture::~WriteCapture() {
  assert(open_files.load() == 0 && "close the connection before destroying its WriteCapture");
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.writes.erase(id_);
}

Bytes& WriteCapture::page_copy(uint32_t pgno) {
  auto it = pages_.lower_bound(pgno);
  if (it != pages_.end() && it->first == pgno) return it->second;
  if (spare_.empty()) return pages_.emplace_hint(it, pgno, Bytes())->second;
  PageMap::node_type node = std::move(spare_.back());
  spare_.pop_back();
  node.key() = pgno;
  return pages_.insert(it, std::move(node))->second;
}

void WriteCapture::release_pages() {
  while (!pages_.empty() && spare_.size() < kSparePages) {
    spare_.push_back(pages_.extract(pages_.begin()));
  }
  pages_.clear();
}

void WriteCapture::reset() {
  release_pages();
  frame_pgno_.clear();
  pending_header_.reset();
  committed_ = false;
  ++generation_;
}

std::optional<Error> WriteCapture::take_hook_error() {
  std::optional<Error> e = std::move(hook_error_);
  hook_error_.reset();
  return e;
}

WriteCapture::WalWrite WriteCapture::on_wal_write(const void* data, int amount, int64_t offset) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  if (offset == 0 && amount == kWalHeaderSize) {
    // The WAL header: the log restarts at frame 1, at the start of a write
    // transaction. Frame offsets from before mean nothing any more.
    frame_pgno_.clear();
    pending_header_.reset();
    return WalWrite::forward;
  }
  if (amount == kWalFrameHeaderSize) {
    if (frame_pgno_.count(offset + kWalFrameHeaderSize) != 0) {
      // A header of a frame this transaction wrote: SQLite recomputing checksums
      // after the commit frame (a page was rewritten in place). Content unchanged.
      return WalWrite::forward;
    }
    if (committed_) return WalWrite::forward;  // nothing after a commit is ours
    // A new frame: SQLite's walWriteOneFrame writes its data next, always.
    pending_header_ = PendingHeader{offset, load_be32(bytes), load_be32(bytes + 4)};
    return WalWrite::defer_header;
  }
  if (pending_header_ && offset == pending_header_->offset + kWalFrameHeaderSize) {
    // The data of the frame whose header came just before: a new frame.
    PendingHeader h = *pending_header_;
    pending_header_.reset();
    frame_pgno_[offset] = h.pgno;
    page_copy(h.pgno).assign(bytes, bytes + amount);
    if (h.commit_size == 0) return WalWrite::defer_data;
    // The commit frame. Pages past the final size were written (spilled) and
    // then cut off by this same transaction: they are not part of the state.
    pages_.erase(pages_.upper_bound(h.commit_size), pages_.end());
    Status st = ok_status();
    try {
      if (hook_) st = hook_(pages_, h.commit_size);
    } catch (const std::exception& e) {  // must not unwind through SQLite's C frames
      st = make_error(Errc::internal, "commit hook threw: {}", e.what());
    } catch (...) {
      st = make_error(Errc::internal, "commit hook threw a non-standard exception");
    }
    release_pages();
    if (!st.ok()) {
      hook_error_ = st.take_error();
      frame_pgno_.clear();
      return WalWrite::refuse;
    }
    committed_ = true;
    ++commits_;
    return WalWrite::forward;
  }
  auto it = frame_pgno_.find(offset);
  if (it != frame_pgno_.end() && !committed_) {
    // A page written twice in one transaction after its first copy was spilled:
    // SQLite overwrites that frame's data in place.
    page_copy(it->second).assign(bytes, bytes + amount);
    ++rewrites_;
  }
  return WalWrite::forward;
}

// ---------------------------------------------------------------------------
// ReadCapture

ReadCapture::ReadCapture() : id_(g_next_id.fetch_add(1)) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.reads.emplace(id_, this);
}

ReadCapture::~ReadCapture() {
  assert(open_files.load() == 0 && "close the connection before destroying its ReadCapture");
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.reads.erase(id_);
}

std::set<uint32_t> ReadCapture::pages() const {
  std::lock_guard lock(mu_);
  return pages_;
}

void ReadCapture::set_keep_bytes(bool keep) {
  std::lock_guard lock(mu_);
  keep_bytes_ = keep;
}

PageMap ReadCapture::page_bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

void ReadCapture::clear() {
  std::lock_guard lock(mu_);
  pages_.clear();
  bytes_.clear();
}

void ReadCapture::on_page_read(uint32_t pgno) {
  std::lock_guard lock(mu_);
  pages_.insert(pgno);
}

void ReadCapture::on_full_page_read(uint32_t pgno, const void* data, int amount) {
  std::lock_guard lock(mu_);
  pages_.insert(pgno);
  if (keep_bytes_) {
    const auto* b = static_cast<const uint8_t*>(data);
    bytes_[pgno].assign(b, b + amount);
  }
}

// ---------------------------------------------------------------------------
// Pinned time

std::optional<int64_t> pinned_time_ms() { return t_pinned_ms; }

PinnedTime::PinnedTime(int64_t unix_ms) : previous_(t_pinned_ms) { t_pinned_ms = unix_ms; }
PinnedTime::~PinnedTime() { t_pinned_ms = previous_; }

// ---------------------------------------------------------------------------
// URI

namespace {
// Percent-encodes everything but unreserved characters and '/', so '?', '#',
// '%' and '&' in a path survive SQLite's URI parser.
std::string uri_escape_path(const std::string& path) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}
}  // namespace

std::string page_vfs_uri(const std::filesystem::path& db, const WriteCapture* write,
                         const ReadCapture* read, bool read_only) {
  std::string path = db.string();
  // "file:///abs/path" for absolute paths (an empty authority), "file:rel/path" otherwise.
  std::string uri = (path.starts_with("/") ? "file://" : "file:") + uri_escape_path(path);
  uri += "?vfs=";
  uri += page_vfs_name();
  if (write != nullptr) uri += "&swl_w=" + std::to_string(write->id());
  if (read != nullptr) uri += "&swl_r=" + std::to_string(read->id());
  if (read_only) uri += "&mode=ro";
  return uri;
}

// ---------------------------------------------------------------------------
// The VFS

namespace {

sqlite3_vfs* g_real_vfs = nullptr;  // the wrapped VFS (the default when registered)

// Our file object. The wrapped VFS's file object follows it in memory.
struct PageFile {
  sqlite3_file base;              // pMethods = one of our io_methods tables
  WriteCapture* write = nullptr;  // -wal: captures frames; main db: sees the write lock
  ReadCapture* read = nullptr;    // records pages read
  bool is_wal = false;
  const char* name = nullptr;  // the file's path (valid until xClose), for fault injection
  uint32_t page_size = 0;     // main db: learnt from the 100-byte header read
  // -wal with a WriteCapture: the frames of the write transaction held back
  // (see xWrite), bytes [run_offset, run_offset + run.size()) of the file.
  std::vector<uint8_t> run;
  int64_t run_offset = 0;
  uint64_t run_generation = 0;   // the WriteCapture's generation when the run began
  bool run_open_header = false;  // run ends in a frame header whose data has not come
  // Main db of a sole writer (see xShmLock): the WAL write lock is held in
  // the shared memory until xShmUnmap; read-lock slots this connection holds
  // without having asked the wrapped file (bit i: wal-index lock slot i).
  bool keeps_write_lock = false;
  uint8_t local_read_locks = 0;
};
static_assert(sizeof(PageFile) % 8 == 0, "the wrapped file object must stay 8-byte aligned");

PageFile* as_page_file(sqlite3_file* f) { return reinterpret_cast<PageFile*>(f); }
sqlite3_file* real_file(sqlite3_file* f) {
  return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + sizeof(PageFile));
}

// A write's result, after telling sqlite_util.h that the disk was full if it
// was: SQLITE_FULL from a file write is the node's trouble, SQLITE_FULL from
// SQLite's own limits is the statement's (is_local_sqlite_error).
int noting_disk_full(int rc) {
  if ((rc & 0xff) == SQLITE_FULL) note_disk_full();
  return rc;
}

// At most this many bytes of frames are held back: a transaction that
// outgrows it (a big entry, a replay batch) goes to the file in writes of
// about this size.
constexpr size_t kMaxRunBytes = size_t{1} << 20;
// The unix VFS writes at most 0x1ffff bytes per xWrite (its seekAndWrite masks
// the length; SQLite's own writes are never longer than a 64 KiB page and its
// frame header), so a longer run goes out in pieces of this size.
constexpr size_t kMaxWriteBytes = 0x1f000;

// Writes the held-back bytes, if any (what comes next does not continue them,
// or SQLite is about to read, sync, size or close the file, or they end in a
// commit frame).
int flush_run(PageFile* p) {
  if (p->run.empty()) return SQLITE_OK;
  if (p->write->generation() != p->run_generation) {
    // Frames of a transaction that ended uncommitted: nobody may read them, and
    // their offsets may be another transaction's by now.
    p->run.clear();
    p->run_open_header = false;
    return SQLITE_OK;
  }
  sqlite3_file* r = real_file(&p->base);
  int rc = SQLITE_OK;
  for (size_t at = 0; at < p->run.size() && rc == SQLITE_OK; at += kMaxWriteBytes) {
    const size_t n = std::min(kMaxWriteBytes, p->run.size() - at);
    rc = r->pMethods->xWrite(r, p->run.data() + at, static_cast<int>(n),
                             p->run_offset + static_cast<int64_t>(at));
    p->write->on_file_write();
  }
  p->run.clear();
  p->run_open_header = false;
  return noting_disk_full(rc);
}

void hold(PageFile* p, const void* buf, int amount, int64_t offset) {
  if (p->run.empty()) {
    p->run_offset = offset;
    p->run_generation = p->write->generation();
  }
  const auto* b = static_cast<const uint8_t*>(buf);
  p->run.insert(p->run.end(), b, b + amount);
}

void record_main_read(PageFile* p, const void* buf, int amount, int64_t offset) {
  if (offset == 0 && amount >= 100 && p->page_size == 0) {
    const auto* b = static_cast<const uint8_t*>(buf);
    uint32_t ps = uint32_t(b[16]) << 8 | b[17];
    if (ps == 1) ps = 65536;
    if (is_page_size(ps)) p->page_size = ps;
  }
  int64_t ps = p->page_size;
  if (ps != 0 ? amount == ps && offset % ps == 0 : is_page_size(amount) && offset % amount == 0) {
    // A whole page (when the page size is not known yet, a whole aligned page).
    p->read->on_full_page_read(static_cast<uint32_t>(offset / amount + 1), buf, amount);
    return;
  }
  if (ps == 0) {
    // Page size not known yet: the header of page 1.
    if (offset < 100) {
      p->read->on_page_read(1);
    }
    return;
  }
  for (int64_t pg = offset / ps; pg * ps < offset + amount; ++pg) {
    p->read->on_page_read(static_cast<uint32_t>(pg + 1));
  }
}

// A read of one page's bytes at a frame's data offset is a page read from the
// WAL; its page number sits in the frame header 24 bytes before.
void record_wal_read(PageFile* p, const void* buf, int amount, int64_t offset) {
  if (!is_page_size(amount)) return;
  int64_t first_data = kWalHeaderSize + kWalFrameHeaderSize;
  if (offset < first_data || (offset - first_data) % (amount + kWalFrameHeaderSize) != 0) return;
  sqlite3_file* r = real_file(&p->base);
  uint8_t hdr[4];
  if (r->pMethods->xRead(r, hdr, 4, offset - kWalFrameHeaderSize) != SQLITE_OK) return;
  uint32_t pgno = load_be32(hdr);
  if (pgno != 0) p->read->on_full_page_read(pgno, buf, amount);
}

/*
** Close a file: forward, then let go of the captures.
*/
int page_close(sqlite3_file* f) {
  PageFile* p = as_page_file(f);
  int rc = flush_run(p);
  std::vector<uint8_t>().swap(p->run);  // SQLite frees the object without a destructor call
  sqlite3_file* r = real_file(f);
  int rc2 = r->pMethods->xClose(r);
  if (p->write != nullptr) p->write->open_files.fetch_sub(1);
  if (p->read != nullptr) p->read->open_files.fetch_sub(1);
  p->write = nullptr;
  p->read = nullptr;
  return rc != SQLITE_OK ? rc : rc2;
}

/*
** Read data: forward, then record which page was read (ReadCapture only).
*/
int page_read(sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) {
  PageFile* p = as_page_file(f);
  if (int rc = flush_run(p); rc != SQLITE_OK) return rc;
  sqlite3_file* r = real_file(f);
  int rc = r->pMethods->xRead(r, buf, amount, offset);
  if (p->read != nullptr && (rc == SQLITE_OK || rc == SQLITE_IOERR_SHORT_READ)) {
    if (p->is_wal) {
      record_wal_read(p, buf, amount, offset);
    } else {
      record_main_read(p, buf, amount, offset);
    }
  }
  return rc;
}

/*
** Write data. On a -wal file with a WriteCapture, the capture sees every write
** first, and the frames of a write transaction are held back and go to the
** file together: in one write when the commit frame's data comes (for a
** commit frame, only if the commit hook accepts), or when they reach
** kMaxRunBytes. SQLite's wal.c writes a frame as two writes (the 24-byte
** header, then the page at the next offset) and a commit of n pages as n
** frames; on a guest where a syscall costs microseconds those writes were a
** sixth of the primary's CPU per 1-INSERT entry (docs/performance.md "One
** write per WAL frame", "One write per commit, index rows in groups"). What
** is held back is only ever a new frame's header, whose data write always follows
** (walWriteOneFrame), and the data of frames that are not yet committed,
** which no other connection reads and crash recovery ignores without their
** commit frame; anything else that touches the file (a write elsewhere, a
** read, a sync, a truncate, a size query, close) writes them first, so the
** file holds SQLite's bytes, in SQLite's order of offsets, whenever anyone
** can look, and a commit's frames are in the file before the commit frame's
** data write returns, that is before SQLite publishes them in the wal-index
** (docs/vfs.md "Write capture").
*/
int page_write(sqlite3_file* f, const void* buf, int amount, sqlite3_int64 offset) {
  PageFile* p = as_page_file(f);
  sqlite3_file* r = real_file(f);
  if (fault_injection::write_fails(p->name)) return noting_disk_full(SQLITE_FULL);  // tests only
  if (!p->is_wal || p->write == nullptr)
    return noting_disk_full(r->pMethods->xWrite(r, buf, amount, offset));
  // Only a write that continues the held-back bytes of the same transaction may join them.
  const bool continues = !p->run.empty() && p->run_generation == p->write->generation() &&
                         offset == p->run_offset + static_cast<int64_t>(p->run.size());
  if (!continues) {
    if (int rc = flush_run(p); rc != SQLITE_OK) return rc;
  }
  const bool data_of_header = continues && p->run_open_header;
  switch (p->write->on_wal_write(buf, amount, offset)) {
    case WriteCapture::WalWrite::refuse:
      // The commit frame never reaches the file; the frames before it do, as
      // after any rolled-back transaction (docs/vfs.md "Failure behaviour").
      if (data_of_header) p->run.resize(p->run.size() - kWalFrameHeaderSize);
      (void)flush_run(p);
      return SQLITE_IOERR_WRITE;
    case WriteCapture::WalWrite::defer_header:
      hold(p, buf, amount, offset);
      p->run_open_header = true;
      return SQLITE_OK;
    case WriteCapture::WalWrite::defer_data:
      if (!data_of_header) break;  // its header went out alone: written at once below
      hold(p, buf, amount, offset);
      p->run_open_header = false;
      return p->run.size() >= kMaxRunBytes ? flush_run(p) : SQLITE_OK;
    case WriteCapture::WalWrite::forward:
      if (data_of_header) {
        // The commit frame's data: the held frames, its header and it, in one write.
        hold(p, buf, amount, offset);
        return flush_run(p);
      }
      break;
  }
  // Anything else goes straight to the file after what was held, headers
  // included: a header SQLite rewrites after the frames (walRewriteChecksums,
  // after a page was written twice in one transaction) may be its last write
  // before the commit returns, and no write may wait for a next call that
  // need not come.
  if (int rc = flush_run(p); rc != SQLITE_OK) return rc;
  p->write->on_file_write();
  return noting_disk_full(r->pMethods->xWrite(r, buf, amount, offset));
}

/*
** Truncate a file.
*/
int page_truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (int rc = flush_run(as_page_file(f)); rc != SQLITE_OK) return rc;
  sqlite3_file* r = real_file(f);
  return r->pMethods->xTruncate(r, size);
}

/*
** Sync a file.
*/
int page_sync(sqlite3_file* f, int flags) {
  if (int rc = flush_run(as_page_file(f)); rc != SQLITE_OK) return rc;
  sqlite3_file* r = real_file(f);
  return r->pMethods->xSync(r, flags);
}

/*
** Return the current size of a file.
*/
int page_file_size(sqlite3_file* f, sqlite3_int64* size) {
  if (int rc = flush_run(as_page_file(f)); rc != SQLITE_OK) return rc;
  sqlite3_file* r = real_file(f);
  return r->pMethods->xFileSize(r, size);
}

/*
** Lock a file.
*/
int page_lock(sqlite3_file* f, int level) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xLock(r, level);
}

/*
** Unlock a file.
*/
int page_unlock(sqlite3_file* f, int level) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xUnlock(r, level);
}

/*
** Check if another file handle holds a RESERVED lock on a file.
*/
int page_check_reserved_lock(sqlite3_file* f, int* out) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xCheckReservedLock(r, out);
}

/*
** File control: forwarded; SQLITE_FCNTL_VFSNAME reports "swarmlite/<wrapped>".
*/
int page_file_control(sqlite3_file* f, int op, void* arg) {
  sqlite3_file* r = real_file(f);
  int rc = r->pMethods->xFileControl(r, op, arg);
  if (rc == SQLITE_OK && op == SQLITE_FCNTL_VFSNAME) {
    *static_cast<char**>(arg) = sqlite3_mprintf("swarmlite/%z", *static_cast<char**>(arg));
  }
  return rc;
}

/*
** Return the sector size of a file.
*/
int page_sector_size(sqlite3_file* f) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xSectorSize(r);
}

/*
** Return the device characteristics of a file.
*/
int page_device_characteristics(sqlite3_file* f) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xDeviceCharacteristics(r);
}

/*
** Map a region of the shared-memory wal-index.
*/
int page_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  sqlite3_file* r = real_file(f);
  return r->pMethods->xShmMap(r, region, size, extend, out);
}

// wal-index lock slots (SQLite's src/wal.c): 0 the write lock, 1 the
// checkpointer's, 2 recovery's, 3..7 the read marks' (WAL_READ_LOCK(0..4)).
constexpr int kShmWriteLock = 0;
constexpr int kShmFirstReadLock = 3;
constexpr int kShmLockSlots = 8;

/*
** Lock or unlock slots of the wal-index. Releasing the exclusive WAL write lock
** (slot 0) ends the connection's write transaction, committed or rolled back.
**
** A sole writer's main file (docs/vfs.md "The sole writer's locks"):
** - slot 0 exclusive: the first lock is passed on; its releases and later
**   locks are not, so the write lock stays held until xShmUnmap;
** - once it holds slot 0, its shared read locks (slots 3..7) are kept here.
**   Nobody else can commit or restart the WAL while it holds slot 0, so its
**   snapshot is always the newest and no checkpoint can take a page from
**   under it: the lock guards nothing another connection could do.
** Everything else (the read marks' exclusive locks, the checkpoint and
** recovery slots) goes to the wrapped file as before.
*/
int page_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  PageFile* p = as_page_file(f);
  sqlite3_file* r = real_file(f);
  const bool unlock = (flags & SQLITE_SHM_UNLOCK) != 0;
  const bool exclusive = (flags & SQLITE_SHM_EXCLUSIVE) != 0;
  if (p->write != nullptr && p->write->sole_writer() && n == 1) {
    if (offset == kShmWriteLock && exclusive) {
      if (!unlock) {
        if (p->keeps_write_lock) return SQLITE_OK;
        int rc = r->pMethods->xShmLock(r, offset, n, flags);
        if (rc == SQLITE_OK) p->keeps_write_lock = true;
        return rc;
      }
      if (p->keeps_write_lock) {
        p->write->on_write_lock_released();
        return SQLITE_OK;
      }
    } else if (!exclusive && offset >= kShmFirstReadLock && offset < kShmLockSlots) {
      const auto bit = static_cast<uint8_t>(1u << offset);
      if (!unlock && p->keeps_write_lock) {
        p->local_read_locks |= bit;
        return SQLITE_OK;
      }
      if (unlock && (p->local_read_locks & bit) != 0) {
        p->local_read_locks &= static_cast<uint8_t>(~bit);
        return SQLITE_OK;
      }
    }
  }
  int rc = r->pMethods->xShmLock(r, offset, n, flags);
  constexpr int kWriteUnlock = SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE;
  if (p->write != nullptr && offset == 0 && n >= 1 && (flags & kWriteUnlock) == kWriteUnlock) {
    p->write->on_write_lock_released();
  }
  return rc;
}

/*
** Memory barrier for the wal-index.
*/
void page_shm_barrier(sqlite3_file* f) {
  sqlite3_file* r = real_file(f);
  r->pMethods->xShmBarrier(r);
}

/*
** Unmap the wal-index.
*/
int page_shm_unmap(sqlite3_file* f, int delete_flag) {
  PageFile* p = as_page_file(f);
  sqlite3_file* r = real_file(f);
  if (p->keeps_write_lock) {
    // A sole writer's write lock (xShmLock), kept until now.
    (void)r->pMethods->xShmLock(r, kShmWriteLock, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
    p->keeps_write_lock = false;
  }
  p->local_read_locks = 0;
  return r->pMethods->xShmUnmap(r, delete_flag);
}

/*
** Fetch a page of a memory-mapped file. Refused (*pp = 0, so SQLite falls back
** to xRead) on captured files: a mapped read would escape the ReadCapture.
*/
int page_fetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** pp) {
  PageFile* p = as_page_file(f);
  sqlite3_file* r = real_file(f);
  if (p->read != nullptr || p->write != nullptr || r->pMethods->iVersion < 3 ||
      r->pMethods->xFetch == nullptr) {
    *pp = nullptr;
    return SQLITE_OK;
  }
  return r->pMethods->xFetch(r, offset, amount, pp);
}

/*
** Release a memory-mapped page.
*/
int page_unfetch(sqlite3_file* f, sqlite3_int64 offset, void* page) {
  sqlite3_file* r = real_file(f);
  if (r->pMethods->iVersion < 3 || r->pMethods->xUnfetch == nullptr) return SQLITE_OK;
  return r->pMethods->xUnfetch(r, offset, page);
}

// One table per io_methods version, so SQLite never calls a method the wrapped
// file does not have (iVersion 1: no shared memory, 2: no mmap).
// clang-format off
constexpr sqlite3_io_methods make_io_methods(int version) {
  return sqlite3_io_methods{
      version,                      /* iVersion */
      page_close,                   /* xClose */
      page_read,                    /* xRead */
      page_write,                   /* xWrite */
      page_truncate,                /* xTruncate */
      page_sync,                    /* xSync */
      page_file_size,               /* xFileSize */
      page_lock,                    /* xLock */
      page_unlock,                  /* xUnlock */
      page_check_reserved_lock,     /* xCheckReservedLock */
      page_file_control,            /* xFileControl */
      page_sector_size,             /* xSectorSize */
      page_device_characteristics,  /* xDeviceCharacteristics */
      page_shm_map,                 /* xShmMap */
      page_shm_lock,                /* xShmLock */
      page_shm_barrier,             /* xShmBarrier */
      page_shm_unmap,               /* xShmUnmap */
      page_fetch,                   /* xFetch */
      page_unfetch,                 /* xUnfetch */
  };
}
// clang-format on
const sqlite3_io_methods kIoMethods[3] = {make_io_methods(1), make_io_methods(2),
                                          make_io_methods(3)};

/*
** Open a file. The main database and its -wal file get a PageFile wrapped
** around the real file and the captures named by the URI; every other file is
** the wrapped VFS's own.
*/
int vfs_open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  bool is_main = (flags & SQLITE_OPEN_MAIN_DB) != 0;
  bool is_wal = (flags & SQLITE_OPEN_WAL) != 0;
  if ((!is_main && !is_wal) || name == nullptr) {
    return g_real_vfs->xOpen(g_real_vfs, name, f, flags, out_flags);
  }
  PageFile* p = new (f) PageFile();
  sqlite3_file* r = real_file(f);
  int rc = g_real_vfs->xOpen(g_real_vfs, name, r, flags, out_flags);
  if (rc != SQLITE_OK || r->pMethods == nullptr) {
    p->base.pMethods = nullptr;
    return rc;
  }
  int version = r->pMethods->iVersion;
  p->base.pMethods = &kIoMethods[version < 1 ? 0 : version > 3 ? 2 : version - 1];
  p->is_wal = is_wal;
  p->name = name;
  // sqlite3_uri_* accept the name SQLite passes for the main db and its -wal file.
  if (sqlite3_int64 w = sqlite3_uri_int64(name, "swl_w", 0); w > 0) {
    p->write = find_write_capture(static_cast<uint64_t>(w));
    if (p->write != nullptr) p->write->open_files.fetch_add(1);
  }
  if (sqlite3_int64 rd = sqlite3_uri_int64(name, "swl_r", 0); rd > 0) {
    p->read = find_read_capture(static_cast<uint64_t>(rd));
    if (p->read != nullptr) p->read->open_files.fetch_add(1);
  }
  return SQLITE_OK;
}

/*
** Time: the thread's pinned time if any, else the wrapped VFS's clock.
*/
int vfs_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
  if (t_pinned_ms) {
    *out = *t_pinned_ms + kUnixEpochJulianMs;
    return SQLITE_OK;
  }
  if (g_real_vfs->iVersion >= 2 && g_real_vfs->xCurrentTimeInt64 != nullptr) {
    return g_real_vfs->xCurrentTimeInt64(g_real_vfs, out);
  }
  double days = 0;
  int rc = g_real_vfs->xCurrentTime(g_real_vfs, &days);
  *out = static_cast<sqlite3_int64>(days * 86400000.0);
  return rc;
}

int vfs_current_time(sqlite3_vfs* vfs, double* out) {
  sqlite3_int64 ms = 0;
  int rc = vfs_current_time_int64(vfs, &ms);
  *out = static_cast<double>(ms) / 86400000.0;
  return rc;
}

/*
** All other VFS methods are pass-throughs.
*/
int vfs_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_real_vfs->xDelete(g_real_vfs, name, sync_dir);
}
int vfs_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_real_vfs->xAccess(g_real_vfs, name, flags, out);
}
int vfs_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real_vfs->xFullPathname(g_real_vfs, name, n, out);
}
void* vfs_dl_open(sqlite3_vfs*, const char* name) { return g_real_vfs->xDlOpen(g_real_vfs, name); }
void vfs_dl_error(sqlite3_vfs*, int n, char* out) { g_real_vfs->xDlError(g_real_vfs, n, out); }
void (*vfs_dl_sym(sqlite3_vfs*, void* handle, const char* sym))(void) {
  return g_real_vfs->xDlSym(g_real_vfs, handle, sym);
}
void vfs_dl_close(sqlite3_vfs*, void* handle) { g_real_vfs->xDlClose(g_real_vfs, handle); }
int vfs_randomness(sqlite3_vfs*, int n, char* out) {
  return g_real_vfs->xRandomness(g_real_vfs, n, out);
}
int vfs_sleep(sqlite3_vfs*, int micros) { return g_real_vfs->xSleep(g_real_vfs, micros); }
int vfs_get_last_error(sqlite3_vfs*, int n, char* out) {
  return g_real_vfs->xGetLastError ? g_real_vfs->xGetLastError(g_real_vfs, n, out) : 0;
}
int vfs_set_system_call(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr fn) {
  return g_real_vfs->xSetSystemCall(g_real_vfs, name, fn);
}
sqlite3_syscall_ptr vfs_get_system_call(sqlite3_vfs*, const char* name) {
  return g_real_vfs->xGetSystemCall(g_real_vfs, name);
}
const char* vfs_next_system_call(sqlite3_vfs*, const char* name) {
  return g_real_vfs->xNextSystemCall(g_real_vfs, name);
}

// clang-format off
sqlite3_vfs g_vfs = {
    3,                       /* iVersion (lowered to the wrapped VFS's when registered) */
    0,                       /* szOsFile (set when registered) */
    1024,                    /* mxPathname (set when registered) */
    nullptr,                 /* pNext */
    "swarmlite",             /* zName */
    nullptr,                 /* pAppData */
    vfs_open,                /* xOpen */
    vfs_delete,              /* xDelete */
    vfs_access,              /* xAccess */
    vfs_full_pathname,       /* xFullPathname */
    vfs_dl_open,             /* xDlOpen */
    vfs_dl_error,            /* xDlError */
    vfs_dl_sym,              /* xDlSym */
    vfs_dl_close,            /* xDlClose */
    vfs_randomness,          /* xRandomness */
    vfs_sleep,               /* xSleep */
    vfs_current_time,        /* xCurrentTime */
    vfs_get_last_error,      /* xGetLastError */
    vfs_current_time_int64,  /* xCurrentTimeInt64 */
    vfs_set_system_call,     /* xSetSystemCall */
    vfs_get_system_call,     /* xGetSystemCall */
    vfs_next_system_call,    /* xNextSystemCall */
};
// clang-format on

}  // namespace

const char* page_vfs_name() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_real_vfs = sqlite3_vfs_find(nullptr);
    if (g_real_vfs == nullptr) std::abort();  // SQLite without a default VFS: unusable
    g_vfs.iVersion = g_real_vfs->iVersion < 3 ? g_real_vfs->iVersion : 3;
    g_vfs.szOsFile = static_cast<int>(sizeof(PageFile)) + g_real_vfs->szOsFile;
    g_vfs.mxPathname = g_real_vfs->mxPathname;
    if (sqlite3_vfs_register(&g_vfs, 0) != SQLITE_OK) std::abort();
  });
  return g_vfs.zName;
}

}  // namespace swarmlite
