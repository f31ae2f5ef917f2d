// The proof VFS: see proof_vfs.h for what it serves and why. Method slots are
// commented where they differ from "pass through to the default VFS".
#include "sqlbridge/proof/proof_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>

#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {
namespace {

constexpr const char* kVfsName = "swarmlite-proof";
constexpr std::string_view kFilePrefix = "swarmlite-proof-";
constexpr const char* kIdParam = "swl_proof";

// Live images by id: xOpen finds the image a URI names. Images unregister in
// their destructor; a URI naming a dead image fails to open (SQLITE_CANTOPEN).
std::mutex g_registry_mu;
std::unordered_map<uint64_t, ProofImage*>& registry() {
  static std::unordered_map<uint64_t, ProofImage*> r;
  return r;
}
std::atomic<uint64_t> g_next_id{1};

sqlite3_vfs* base_vfs(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

struct ProofFile {
  sqlite3_file base;
  ProofImage* image;
};

// --- io methods of a proof database file -----------------------------------
int file_close(sqlite3_file*) { return SQLITE_OK; }
int file_read(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  switch (reinterpret_cast<ProofFile*>(f)->image->read(out, amount, offset)) {
    case ProofImage::ReadStatus::ok: return SQLITE_OK;
    case ProofImage::ReadStatus::short_read: return SQLITE_IOERR_SHORT_READ;
    case ProofImage::ReadStatus::missing: return SQLITE_IOERR_READ;
  }
  return SQLITE_IOERR_READ;
}
// Never written: the image is immutable.
int file_write(sqlite3_file*, const void*, int, sqlite3_int64) { return SQLITE_READONLY; }
int file_truncate(sqlite3_file*, sqlite3_int64) { return SQLITE_READONLY; }
int file_sync(sqlite3_file*, int) { return SQLITE_OK; }
int file_size(sqlite3_file* f, sqlite3_int64* size) {
  *size = static_cast<sqlite3_int64>(reinterpret_cast<ProofFile*>(f)->image->file_size());
  return SQLITE_OK;
}
// No other connection can change the image: locks are no-ops.
int file_lock(sqlite3_file*, int) { return SQLITE_OK; }
int file_unlock(sqlite3_file*, int) { return SQLITE_OK; }
int file_check_reserved_lock(sqlite3_file*, int* out) {
  *out = 0;
  return SQLITE_OK;
}
int file_control(sqlite3_file*, int, void*) { return SQLITE_NOTFOUND; }
int file_sector_size(sqlite3_file*) { return 4096; }
// Immutable images say so; a reusable one must not, or the pager would treat
// it like a temp file and never recheck the header (see proof_vfs.h).
int file_device_characteristics(sqlite3_file* f) {
  return reinterpret_cast<ProofFile*>(f)->image->mode() == ProofImage::Mode::immutable
             ? SQLITE_IOCAP_IMMUTABLE
             : 0;
}

// Version 1: no shared memory (no WAL) and no memory mapping (every read goes through xRead).
const sqlite3_io_methods kProofMethods = {
    1,
    file_close,
    file_read,
    file_write,
    file_truncate,
    file_sync,
    file_size,
    file_lock,
    file_unlock,
    file_check_reserved_lock,
    file_control,
    file_sector_size,
    file_device_characteristics,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
};

// --- VFS methods -------------------------------------------------------------
int vfs_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  file->pMethods = nullptr;
  if ((flags & SQLITE_OPEN_MAIN_DB) == 0) {
    // A proof database has no journal and no WAL; temporary files (sorter,
    // temp tables of a query) live in the default VFS, in this same buffer
    // (szOsFile covers both), with the default VFS's own methods.
    if (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL | SQLITE_OPEN_SUPER_JOURNAL)) {
      return SQLITE_CANTOPEN;
    }
    return base_vfs(vfs)->xOpen(base_vfs(vfs), name, file, flags, out_flags);
  }
  const char* id_text = name ? sqlite3_uri_parameter(name, kIdParam) : nullptr;
  if (id_text == nullptr) return SQLITE_CANTOPEN;
  uint64_t id = std::strtoull(id_text, nullptr, 10);
  ProofImage* image = nullptr;
  {
    std::lock_guard lock(g_registry_mu);
    auto it = registry().find(id);
    if (it != registry().end()) image = it->second;
  }
  if (image == nullptr) return SQLITE_CANTOPEN;
  auto* pf = reinterpret_cast<ProofFile*>(file);
  pf->image = image;
  pf->base.pMethods = &kProofMethods;
  if (out_flags) {
    *out_flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
  }
  return SQLITE_OK;
}
bool is_proof_name(const char* name) {
  return name != nullptr && std::string_view(name).starts_with(kFilePrefix);
}
int vfs_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  if (is_proof_name(name)) return SQLITE_READONLY;
  return base_vfs(vfs)->xDelete(base_vfs(vfs), name, sync_dir);
}
// No journal, WAL or other file exists beside a proof database.
int vfs_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  if (is_proof_name(name)) {
    *out = 0;
    return SQLITE_OK;
  }
  return base_vfs(vfs)->xAccess(base_vfs(vfs), name, flags, out);
}
// Proof databases are not files: their names stay as given.
int vfs_full_pathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  if (is_proof_name(name)) {
    sqlite3_snprintf(n, out, "%s", name);
    return SQLITE_OK;
  }
  return base_vfs(vfs)->xFullPathname(base_vfs(vfs), name, n, out);
}
void* vfs_dlopen(sqlite3_vfs* vfs, const char* p) { return base_vfs(vfs)->xDlOpen(base_vfs(vfs), p); }
void vfs_dlerror(sqlite3_vfs* vfs, int n, char* out) { base_vfs(vfs)->xDlError(base_vfs(vfs), n, out); }
void (*vfs_dlsym(sqlite3_vfs* vfs, void* h, const char* s))(void) {
  return base_vfs(vfs)->xDlSym(base_vfs(vfs), h, s);
}
void vfs_dlclose(sqlite3_vfs* vfs, void* h) { base_vfs(vfs)->xDlClose(base_vfs(vfs), h); }
int vfs_randomness(sqlite3_vfs* vfs, int n, char* out) {
  return base_vfs(vfs)->xRandomness(base_vfs(vfs), n, out);
}
int vfs_sleep(sqlite3_vfs* vfs, int us) { return base_vfs(vfs)->xSleep(base_vfs(vfs), us); }
int vfs_current_time(sqlite3_vfs* vfs, double* t) {
  return base_vfs(vfs)->xCurrentTime(base_vfs(vfs), t);
}
int vfs_get_last_error(sqlite3_vfs* vfs, int n, char* out) {
  return base_vfs(vfs)->xGetLastError ? base_vfs(vfs)->xGetLastError(base_vfs(vfs), n, out) : 0;
}
int vfs_current_time_int64(sqlite3_vfs* vfs, sqlite3_int64* t) {
  sqlite3_vfs* b = base_vfs(vfs);
  if (b->iVersion >= 2 && b->xCurrentTimeInt64) return b->xCurrentTimeInt64(b, t);
  double d = 0;
  int rc = b->xCurrentTime(b, &d);
  *t = static_cast<sqlite3_int64>(d * 86400000.0);
  return rc;
}

}  // namespace

const char* proof_vfs_name() {
  static std::once_flag once;
  static sqlite3_vfs vfs{};
  std::call_once(once, [] {
    sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
    vfs.iVersion = 2;
    vfs.szOsFile = std::max<int>(static_cast<int>(sizeof(ProofFile)), base->szOsFile);
    vfs.mxPathname = base->mxPathname;
    vfs.zName = kVfsName;
    vfs.pAppData = base;
    vfs.xOpen = vfs_open;
    vfs.xDelete = vfs_delete;
    vfs.xAccess = vfs_access;
    vfs.xFullPathname = vfs_full_pathname;
    vfs.xDlOpen = vfs_dlopen;
    vfs.xDlError = vfs_dlerror;
    vfs.xDlSym = vfs_dlsym;
    vfs.xDlClose = vfs_dlclose;
    vfs.xRandomness = vfs_randomness;
    vfs.xSleep = vfs_sleep;
    vfs.xCurrentTime = vfs_current_time;
    vfs.xGetLastError = vfs_get_last_error;
    vfs.xCurrentTimeInt64 = vfs_current_time_int64;
    sqlite3_vfs_register(&vfs, 0);
  });
  return kVfsName;
}

// Generation numbers of reusable images' page 1 (bytes 24–27 and 92–95): a new
// one per replace_pages(), process-wide, never 0 (0 is what a proof holds).
std::atomic<uint32_t> g_generation{0};

ProofImage::ProofImage(uint32_t page_size, uint32_t page_count, PageViews pages, Mode mode)
    : id_(g_next_id.fetch_add(1)), page_size_(page_size), page_count_(page_count), mode_(mode) {
  set_pages(std::move(pages));
  proof_vfs_name();
  std::lock_guard lock(g_registry_mu);
  registry()[id_] = this;
}

void ProofImage::set_pages(PageViews pages) {
  pages_ = std::move(pages);
  page1_.clear();
  if (!pages_.empty() && pages_.front().first == 1 && pages_.front().second.size() >= 100) {
    // File format bytes 18–19: 1 = rollback journal (2 = WAL). Not hashed.
    page1_.assign(pages_.front().second.begin(), pages_.front().second.end());
    page1_[18] = 1;
    page1_[19] = 1;
    if (mode_ == Mode::reusable) {
      uint32_t gen = g_generation.fetch_add(1) + 1;
      if (gen == 0) gen = g_generation.fetch_add(1) + 1;
      for (size_t at : {size_t{24}, size_t{92}}) {
        page1_[at] = static_cast<uint8_t>(gen >> 24);
        page1_[at + 1] = static_cast<uint8_t>(gen >> 16);
        page1_[at + 2] = static_cast<uint8_t>(gen >> 8);
        page1_[at + 3] = static_cast<uint8_t>(gen);
      }
    }
    pages_.front().second = page1_;
  }
}

void ProofImage::replace_pages(PageViews pages) {
  set_pages(std::move(pages));
  std::lock_guard lock(mu_);
  missing_.clear();
  read_.clear();
}

void ProofImage::record_reads(bool on) { record_ = on; }

std::vector<uint32_t> ProofImage::read_pages() const {
  std::lock_guard lock(mu_);
  return read_;
}

ProofImage::~ProofImage() {
  std::lock_guard lock(g_registry_mu);
  registry().erase(id_);
}

std::string ProofImage::uri() const {
  return fmt::format("file:{}{}?vfs={}{}&{}={}", kFilePrefix, id_, kVfsName,
                     mode_ == Mode::immutable ? "&immutable=1" : "", kIdParam, id_);
}

std::vector<uint32_t> ProofImage::missing_pages() const {
  std::lock_guard lock(mu_);
  return missing_;
}

const ByteView* ProofImage::find(uint32_t pgno) const {
  auto it = std::lower_bound(pages_.begin(), pages_.end(), pgno,
                             [](const auto& p, uint32_t n) { return p.first < n; });
  if (it == pages_.end() || it->first != pgno) return nullptr;
  return &it->second;
}

ProofImage::ReadStatus ProofImage::read(void* out, int amount, int64_t offset) {
  auto* dst = static_cast<uint8_t*>(out);
  uint64_t pos = static_cast<uint64_t>(offset);
  uint64_t end = pos + static_cast<uint64_t>(amount);
  while (pos < end) {
    if (pos >= file_size()) {
      std::memset(dst, 0, end - pos);
      return ReadStatus::short_read;
    }
    auto pgno = static_cast<uint32_t>(pos / page_size_ + 1);
    uint64_t in_page = pos % page_size_;
    uint64_t n = std::min<uint64_t>(end - pos, page_size_ - in_page);
    const ByteView* page = find(pgno);
    if (page == nullptr && pgno == lock_byte_page(page_size_)) {
      // SQLite never reads the lock-byte page and a proof never carries it; if
      // asked, it reads as what it is by definition: zeros (docs/vfs.md).
      std::memset(dst, 0, n);
      dst += n;
      pos += n;
      continue;
    }
    if (page == nullptr) {
      std::lock_guard lock(mu_);
      if (std::find(missing_.begin(), missing_.end(), pgno) == missing_.end()) {
        missing_.push_back(pgno);
      }
      return ReadStatus::missing;
    }
    if (record_) {
      std::lock_guard lock(mu_);
      if (std::find(read_.begin(), read_.end(), pgno) == read_.end()) read_.push_back(pgno);
    }
    std::memcpy(dst, page->data() + in_page, n);
    dst += n;
    pos += n;
  }
  return ReadStatus::ok;
}

}  // namespace swarmlite
