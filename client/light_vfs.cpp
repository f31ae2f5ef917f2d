// The light client's VFS: see light_vfs.h. The SQLite side is the read-only
// page VFS shared with the proof VFS (sqlbridge/proof/page_vfs.h).
#include "client/light_vfs.h"

#include <sqlite3.h>

#include <cstring>

#include "sqlbridge/proof/page_vfs.h"

namespace swarmlite::client {
namespace {

PageVfs& light_vfs() {
  static PageVfs vfs("swarmlite-light", "swarmlite-light-", "swl_light");
  return vfs;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint32_t be16(const uint8_t* p) { return (uint32_t{p[0]} << 8) | p[1]; }

}  // namespace

// A pager as a page file: whole pages come from the pager; any offset and
// length works (SQLite reads the 100-byte header alone at first). An aligned
// whole-page read, the usual one, goes straight into SQLite's buffer.
class LightVfsFile::File final : public PageVfsFile {
 public:
  explicit File(LightPager& pager) : pager_(pager) {}
  uint64_t file_size() const override {
    return uint64_t{pager_.page_size()} * pager_.page_count();
  }
  int read(void* out, int amount, int64_t offset) override {
    const uint32_t ps = pager_.page_size();
    return read_by_pages(out, amount, offset, ps, pager_.page_count(),
                         [&](uint32_t pgno, uint32_t in_page, uint32_t n, uint8_t* dst) {
                           if (in_page == 0 && n == ps)
                             return pager_.read_page(pgno, std::span<uint8_t>(dst, ps))
                                        ? SQLITE_OK
                                        : SQLITE_IOERR_READ;
                           page_.resize(ps);
                           if (!pager_.read_page(pgno, page_)) return SQLITE_IOERR_READ;
                           std::memcpy(dst, page_.data() + in_page, n);
                           return SQLITE_OK;
                         });
  }
  // One head never changes: SQLite may cache pages for the connection's life.
  bool immutable() const override { return true; }

 private:
  LightPager& pager_;
  Bytes page_;  // a partly read page (reads on one connection are serial)
};

const char* light_vfs_name() { return light_vfs().name(); }

LightVfsFile::LightVfsFile(LightPager& pager)
    : file_(std::make_unique<File>(pager)), id_(light_vfs().add(*file_)) {}

LightVfsFile::~LightVfsFile() { light_vfs().remove(id_); }

std::string LightVfsFile::uri() const { return light_vfs().uri(id_, true); }

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
