// The light client's VFS: see light_vfs.h. Method slots are commented where
// they differ from "pass through to the default VFS" (as in proof_vfs.cpp).
#include "client/light_vfs.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace swarmlite::client {
namespace {

constexpr const char* kVfsName = "swarmlite-light";
constexpr std::string_view kFilePrefix = "swarmlite-light-";
constexpr const char* kIdParam = "swl_light";

std::mutex g_registry_mu;
std::unordered_map<uint64_t, LightPager*>& registry() {
  static std::unordered_map<uint64_t, LightPager*> r;
  return r;
}
std::atomic<uint64_t> g_next_id{1};

sqlite3_vfs* base_vfs(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

struct LightFile {
  sqlite3_file base;
  LightPager* pager;
};

LightPager& pager_of(sqlite3_file* f) { return *reinterpret_cast<LightFile*>(f)->pager; }

int file_close(sqlite3_file*) { return SQLITE_OK; }
// Any offset and length (SQLite reads the 100-byte header alone at first):
// whole pages come from the pager, the asked range is copied out.
int file_read(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  LightPager& pager = pager_of(f);
  const uint32_t ps = pager.page_size();
  const uint64_t size = uint64_t{ps} * pager.page_count();
  auto* dst = static_cast<uint8_t*>(out);
  uint64_t pos = static_cast<uint64_t>(offset);
  const uint64_t end = pos + static_cast<uint64_t>(amount);
  Bytes page(ps);
  while (pos < end) {
    if (pos >= size) {
      std::memset(dst, 0, end - pos);
      return SQLITE_IOERR_SHORT_READ;
    }
    const auto pgno = static_cast<uint32_t>(pos / ps + 1);
    const uint64_t in_page = pos % ps;
    const uint64_t n = std::min<uint64_t>(end - pos, ps - in_page);
    if (!pager.read_page(pgno, page)) return SQLITE_IOERR_READ;
    std::memcpy(dst, page.data() + in_page, n);
    dst += n;
    pos += n;
  }
  return SQLITE_OK;
}
int file_write(sqlite3_file*, const void*, int, sqlite3_int64) { return SQLITE_READONLY; }
int file_truncate(sqlite3_file*, sqlite3_int64) { return SQLITE_READONLY; }
int file_sync(sqlite3_file*, int) { return SQLITE_OK; }
int file_size(sqlite3_file* f, sqlite3_int64* size) {
  LightPager& pager = pager_of(f);
  *size = static_cast<sqlite3_int64>(uint64_t{pager.page_size()} * pager.page_count());
  return SQLITE_OK;
}
// One head never changes: locks are no-ops.
int file_lock(sqlite3_file*, int) { return SQLITE_OK; }
int file_unlock(sqlite3_file*, int) { return SQLITE_OK; }
int file_check_reserved_lock(sqlite3_file*, int* out) {
  *out = 0;
  return SQLITE_OK;
}
int file_control(sqlite3_file*, int, void*) { return SQLITE_NOTFOUND; }
int file_sector_size(sqlite3_file*) { return 4096; }
int file_device_characteristics(sqlite3_file*) { return SQLITE_IOCAP_IMMUTABLE; }

// Version 1: no shared memory (no WAL), no memory mapping (every read is xRead).
const sqlite3_io_methods kLightMethods = {
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
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

int vfs_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  file->pMethods = nullptr;
  if ((flags & SQLITE_OPEN_MAIN_DB) == 0) {
    if (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL | SQLITE_OPEN_SUPER_JOURNAL))
      return SQLITE_CANTOPEN;
    return base_vfs(vfs)->xOpen(base_vfs(vfs), name, file, flags, out_flags);
  }
  const char* id_text = name ? sqlite3_uri_parameter(name, kIdParam) : nullptr;
  if (id_text == nullptr) return SQLITE_CANTOPEN;
  const uint64_t id = std::strtoull(id_text, nullptr, 10);
  LightPager* pager = nullptr;
  {
    std::lock_guard lock(g_registry_mu);
    auto it = registry().find(id);
    if (it != registry().end()) pager = it->second;
  }
  if (pager == nullptr) return SQLITE_CANTOPEN;
  auto* lf = reinterpret_cast<LightFile*>(file);
  lf->pager = pager;
  lf->base.pMethods = &kLightMethods;
  if (out_flags)
    *out_flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
  return SQLITE_OK;
}
bool is_light_name(const char* name) {
  return name != nullptr && std::string_view(name).starts_with(kFilePrefix);
}
int vfs_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  if (is_light_name(name)) return SQLITE_READONLY;
  return base_vfs(vfs)->xDelete(base_vfs(vfs), name, sync_dir);
}
// No journal or WAL exists beside a light database.
int vfs_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  if (is_light_name(name)) {
    *out = 0;
    return SQLITE_OK;
  }
  return base_vfs(vfs)->xAccess(base_vfs(vfs), name, flags, out);
}
int vfs_full_pathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  if (is_light_name(name)) {
    sqlite3_snprintf(n, out, "%s", name);
    return SQLITE_OK;
  }
  return base_vfs(vfs)->xFullPathname(base_vfs(vfs), name, n, out);
}
void* vfs_dlopen(sqlite3_vfs* vfs, const char* p) {
  return base_vfs(vfs)->xDlOpen(base_vfs(vfs), p);
}
void vfs_dlerror(sqlite3_vfs* vfs, int n, char* out) {
  base_vfs(vfs)->xDlError(base_vfs(vfs), n, out);
}
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

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint32_t be16(const uint8_t* p) { return (uint32_t{p[0]} << 8) | p[1]; }

}  // namespace

const char* light_vfs_name() {
  static std::once_flag once;
  static sqlite3_vfs vfs{};
  std::call_once(once, [] {
    sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
    vfs.iVersion = 2;
    vfs.szOsFile = std::max<int>(static_cast<int>(sizeof(LightFile)), base->szOsFile);
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

LightVfsFile::LightVfsFile(LightPager& pager) : id_(g_next_id.fetch_add(1)) {
  light_vfs_name();
  std::lock_guard lock(g_registry_mu);
  registry()[id_] = &pager;
}

LightVfsFile::~LightVfsFile() {
  std::lock_guard lock(g_registry_mu);
  registry().erase(id_);
}

std::string LightVfsFile::uri() const {
  return fmt::format("file:{}{}?vfs={}&immutable=1&{}={}", kFilePrefix, id_, kVfsName, kIdParam,
                     id_);
}

std::vector<uint32_t> btree_children(uint32_t pgno, ByteView page) {
  // SQLite's B-tree page header: type at 0, cell count at 3, right-most child
  // at 8 (interior pages), then the 2-byte cell pointers; a cell of an interior
  // page starts with its left child's page number.
  const size_t h = pgno == 1 ? 100 : 0;
  if (page.size() < h + 12) return {};
  const uint8_t type = page[h];
  if (type != 0x02 && type != 0x05) return {};
  const uint32_t cells = be16(&page[h + 3]);
  if (h + 12 + size_t{cells} * 2 > page.size()) return {};
  std::vector<uint32_t> out;
  out.reserve(cells + 1);
  for (uint32_t i = 0; i < cells; ++i) {
    const uint32_t at = be16(&page[h + 12 + size_t{i} * 2]);
    if (size_t{at} + 4 > page.size()) return {};
    out.push_back(be32(&page[at]));
  }
  out.push_back(be32(&page[h + 8]));
  return out;
}

}  // namespace swarmlite::client
