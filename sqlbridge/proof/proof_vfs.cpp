// The proof VFS: see proof_vfs.h for what it serves and why; the SQLite side
// (the VFS and io methods) is the shared read-only page VFS, page_vfs.h.
#include "sqlbridge/proof/proof_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/proof/page_vfs.h"

namespace swarmlite {
namespace {

// The VFS: page_vfs.h does the SQLite side; an image is a page file whose
// reads map ReadStatus onto SQLite's codes.
PageVfs& proof_vfs() {
  static PageVfs vfs("swarmlite-proof", "swarmlite-proof-", "swl_proof");
  return vfs;
}

}  // namespace

class ProofImage::VfsFile final : public PageVfsFile {
 public:
  explicit VfsFile(ProofImage& image) : image_(image) {}
  uint64_t file_size() const override { return image_.file_size(); }
  int read(void* out, int amount, int64_t offset) override {
    switch (image_.read(out, amount, offset)) {
      case ReadStatus::ok: return SQLITE_OK;
      case ReadStatus::short_read: return SQLITE_IOERR_SHORT_READ;
      case ReadStatus::missing: return SQLITE_IOERR_READ;
    }
    return SQLITE_IOERR_READ;
  }
  // Immutable images say so; a reusable one must not, or the pager would treat
  // it like a temp file and never recheck the header (see proof_vfs.h).
  bool immutable() const override { return image_.mode() == Mode::immutable; }

 private:
  ProofImage& image_;
};

const char* proof_vfs_name() { return proof_vfs().name(); }

// Generation numbers of reusable images' page 1 (bytes 24–27 and 92–95): a new
// one per replace_pages(), process-wide, never 0 (0 is what a proof holds).
std::atomic<uint32_t> g_generation{0};

ProofImage::ProofImage(uint32_t page_size, uint32_t page_count, PageViews pages, Mode mode)
    : page_size_(page_size),
      page_count_(page_count),
      mode_(mode),
      vfs_file_(std::make_unique<VfsFile>(*this)) {
  set_pages(std::move(pages));
  id_ = proof_vfs().add(*vfs_file_);
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

ProofImage::~ProofImage() { proof_vfs().remove(id_); }

std::string ProofImage::uri() const {
  return proof_vfs().uri(id_, mode_ == Mode::immutable);
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
  const int rc = read_by_pages(
      out, amount, offset, page_size_, page_count_,
      [this](uint32_t pgno, uint32_t in_page, uint32_t n, uint8_t* dst) {
        const ByteView* page = find(pgno);
        if (page == nullptr && pgno == lock_byte_page(page_size_)) {
          // SQLite never reads the lock-byte page and a proof never carries
          // it; if asked, it reads as what it is by definition: zeros
          // (docs/vfs.md).
          std::memset(dst, 0, n);
          return SQLITE_OK;
        }
        if (page == nullptr) {
          std::lock_guard lock(mu_);
          if (std::find(missing_.begin(), missing_.end(), pgno) == missing_.end())
            missing_.push_back(pgno);
          return SQLITE_IOERR_READ;
        }
        if (record_) {
          std::lock_guard lock(mu_);
          if (std::find(read_.begin(), read_.end(), pgno) == read_.end()) read_.push_back(pgno);
        }
        std::memcpy(dst, page->data() + in_page, n);
        return SQLITE_OK;
      });
  switch (rc) {
    case SQLITE_OK: return ReadStatus::ok;
    case SQLITE_IOERR_SHORT_READ: return ReadStatus::short_read;
    default: return ReadStatus::missing;
  }
}

}  // namespace swarmlite
