// The read-only page VFS: see page_vfs.h for what it serves and why. Method
// slots are commented where they differ from "pass through to the default VFS".
#include "sqlbridge/proof/page_vfs.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace swarmlite {
namespace {

PageVfs& owner(sqlite3_vfs* vfs) { return *static_cast<PageVfs*>(vfs->pAppData); }
sqlite3_vfs* base_vfs(sqlite3_vfs* vfs) { return owner(vfs).base(); }

struct OpenFile {
  sqlite3_file base;
  PageVfsFile* file;
};
PageVfsFile& file_of(sqlite3_file* f) { return *reinterpret_cast<OpenFile*>(f)->file; }

// --- io methods of a page file ------------------------------------------------
int file_close(sqlite3_file*) { return SQLITE_OK; }
int file_read(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  return file_of(f).read(out, amount, offset);
}
int file_write(sqlite3_file*, const void*, int, sqlite3_int64) { return SQLITE_READONLY; }
int file_truncate(sqlite3_file*, sqlite3_int64) { return SQLITE_READONLY; }
int file_sync(sqlite3_file*, int) { return SQLITE_OK; }
int file_size(sqlite3_file* f, sqlite3_int64* size) {
  *size = static_cast<sqlite3_int64>(file_of(f).file_size());
  return SQLITE_OK;
}
// No other connection can change a page file: locks are no-ops.
int file_lock(sqlite3_file*, int) { return SQLITE_OK; }
int file_unlock(sqlite3_file*, int) { return SQLITE_OK; }
int file_check_reserved_lock(sqlite3_file*, int* out) {
  *out = 0;
  return SQLITE_OK;
}
int file_control(sqlite3_file*, int, void*) { return SQLITE_NOTFOUND; }
int file_sector_size(sqlite3_file*) { return 4096; }
int file_device_characteristics(sqlite3_file* f) {
  return file_of(f).immutable() ? SQLITE_IOCAP_IMMUTABLE : 0;
}

// Version 1: no shared memory (no WAL), no memory mapping (every read is xRead).
const sqlite3_io_methods kPageMethods = {
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
    // No journal and no WAL beside a page file; temporary files live in the
    // default VFS, in this same buffer, with the default VFS's own methods.
    if (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL | SQLITE_OPEN_SUPER_JOURNAL))
      return SQLITE_CANTOPEN;
    return base_vfs(vfs)->xOpen(base_vfs(vfs), name, file, flags, out_flags);
  }
  const char* id_text = name ? sqlite3_uri_parameter(name, owner(vfs).id_param()) : nullptr;
  if (id_text == nullptr) return SQLITE_CANTOPEN;
  // A URI naming a file that is gone (or never was) does not open.
  PageVfsFile* pf = owner(vfs).find(std::strtoull(id_text, nullptr, 10));
  if (pf == nullptr) return SQLITE_CANTOPEN;
  auto* of = reinterpret_cast<OpenFile*>(file);
  of->file = pf;
  of->base.pMethods = &kPageMethods;
  if (out_flags)
    *out_flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
  return SQLITE_OK;
}
int vfs_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  if (owner(vfs).owns_name(name)) return SQLITE_READONLY;
  return base_vfs(vfs)->xDelete(base_vfs(vfs), name, sync_dir);
}
// No journal, WAL or other file exists beside a page file.
int vfs_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  if (owner(vfs).owns_name(name)) {
    *out = 0;
    return SQLITE_OK;
  }
  return base_vfs(vfs)->xAccess(base_vfs(vfs), name, flags, out);
}
// Page files are not files on disk: their names stay as given.
int vfs_full_pathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  if (owner(vfs).owns_name(name)) {
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

PageVfs::PageVfs(const char* name, const char* file_prefix, const char* id_param)
    : base_(sqlite3_vfs_find(nullptr)), prefix_(file_prefix), id_param_(id_param) {
  vfs_.iVersion = 2;
  vfs_.szOsFile = std::max<int>(static_cast<int>(sizeof(OpenFile)), base_->szOsFile);
  vfs_.mxPathname = base_->mxPathname;
  vfs_.zName = name;
  vfs_.pAppData = this;
  vfs_.xOpen = vfs_open;
  vfs_.xDelete = vfs_delete;
  vfs_.xAccess = vfs_access;
  vfs_.xFullPathname = vfs_full_pathname;
  vfs_.xDlOpen = vfs_dlopen;
  vfs_.xDlError = vfs_dlerror;
  vfs_.xDlSym = vfs_dlsym;
  vfs_.xDlClose = vfs_dlclose;
  vfs_.xRandomness = vfs_randomness;
  vfs_.xSleep = vfs_sleep;
  vfs_.xCurrentTime = vfs_current_time;
  vfs_.xGetLastError = vfs_get_last_error;
  vfs_.xCurrentTimeInt64 = vfs_current_time_int64;
  sqlite3_vfs_register(&vfs_, 0);
}

uint64_t PageVfs::add(PageVfsFile& file) {
  std::lock_guard lock(mu_);
  const uint64_t id = next_id_++;
  files_[id] = &file;
  return id;
}

void PageVfs::remove(uint64_t id) {
  std::lock_guard lock(mu_);
  files_.erase(id);
}

PageVfsFile* PageVfs::find(uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = files_.find(id);
  return it == files_.end() ? nullptr : it->second;
}

bool PageVfs::owns_name(const char* name) const {
  return name != nullptr && std::string_view(name).starts_with(prefix_);
}

std::string PageVfs::uri(uint64_t id, bool immutable) const {
  return fmt::format("file:{}{}?vfs={}{}&{}={}", prefix_, id, vfs_.zName,
                     immutable ? "&immutable=1" : "", id_param_, id);
}

int read_by_pages(void* out, int amount, int64_t offset, uint32_t page_size, uint32_t page_count,
                  const std::function<int(uint32_t, uint32_t, uint32_t, uint8_t*)>& piece) {
  auto* dst = static_cast<uint8_t*>(out);
  const uint64_t size = uint64_t{page_size} * page_count;
  uint64_t pos = static_cast<uint64_t>(offset);
  const uint64_t end = pos + static_cast<uint64_t>(amount);
  while (pos < end) {
    if (pos >= size) {
      std::memset(dst, 0, end - pos);
      return SQLITE_IOERR_SHORT_READ;
    }
    const auto pgno = static_cast<uint32_t>(pos / page_size + 1);
    const auto in_page = static_cast<uint32_t>(pos % page_size);
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(end - pos, page_size - in_page));
    if (int rc = piece(pgno, in_page, n, dst); rc != SQLITE_OK) return rc;
    dst += n;
    pos += n;
  }
  return SQLITE_OK;
}

}  // namespace swarmlite
