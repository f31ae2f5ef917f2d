#include "sqlbridge/tools/snapshot_source.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/file_io.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {

struct SnapshotSource::Held {
  Head head;
  file_io::Fd fd;  // the unlinked copy, read-only
  uint32_t page_size = 0;
  MerkleTree tree;  // leaf i = page i+1 of the copy
  Clock::time_point made;
  Clock::time_point last_used;  // under SnapshotSource::mu_
};

SnapshotSource::SnapshotSource(BackupSource source, SnapshotSourceOptions options)
    : source_(std::move(source)), options_(std::move(options)) {
  if (options_.reaper) {
    reaper_ = std::thread([this] {
      std::unique_lock lock(mu_);
      while (!stopping_) {
        reaper_cv_.wait_for(lock, std::chrono::seconds(1));
        if (!stopping_) expire_locked(now());
      }
    });
  }
}

SnapshotSource::~SnapshotSource() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  reaper_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
}

void SnapshotSource::expire_locked(Clock::time_point t) {
  std::erase_if(held_, [&](const std::shared_ptr<Held>& h) {
    return t - h->last_used >= options_.idle || t - h->made >= options_.max_age;
  });
}

void SnapshotSource::expire() {
  std::lock_guard lock(mu_);
  expire_locked(now());
}

size_t SnapshotSource::held() const {
  std::lock_guard lock(mu_);
  return held_.size();
}

uint64_t SnapshotSource::newest_held() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& h : held_) n = std::max(n, h->head.size);
  return n;
}

std::shared_ptr<SnapshotSource::Held> SnapshotSource::find_newest_reusable_locked(
    const std::optional<Head>& signed_head, Clock::time_point t) {
  std::shared_ptr<Held> best;
  for (const auto& h : held_)
    if (!best || h->head.size > best->head.size) best = h;
  if (!best) return nullptr;
  // The newest signed head is the held one's: a copy would be the same bytes.
  if (signed_head && signed_head->size == best->head.size) return best;
  if (t - best->made < options_.reuse) return best;
  return nullptr;
}

Result<std::shared_ptr<SnapshotSource::Held>> SnapshotSource::make(
    const std::atomic<bool>* cancel) {
  BackupOptions bo;
  bo.format = BackupFormat::sqlite;
  bo.temp_dir = options_.temp_dir;
  bo.deadline = Clock::now() + options_.make_timeout;
  bo.cancel = cancel;
  SWL_ASSIGN(BackupFile file, make_backup(source_, bo));
  auto h = std::make_shared<Held>();
  h->head = file.head;
  const std::string name = fmt::format("snapshot copy at size {}", h->head.size);
  if (h->head.page_count > 0) {
    uint8_t hdr[2];
    SWL_TRY(file_io::pread_exact(file.fd.get(), hdr, 16, name));
    const uint32_t ps = uint32_t{hdr[0]} << 8 | hdr[1];
    h->page_size = ps == 1 ? 65536 : ps;
    if (h->page_size < 512 || file.bytes < uint64_t{h->page_size} * h->head.page_count)
      return make_error(Errc::internal,
                        "{}: page size {} and {} bytes do not hold the head's {} pages", name,
                        h->page_size, file.bytes, h->head.page_count);
    // The state tree of the copy, page by page (no page kept in memory):
    // the same leaves as StateTree::from_file (docs/formats/state-tree.md).
    const uint32_t lock_page = lock_byte_page(h->page_size);
    Bytes page(h->page_size);
    for (uint32_t pgno = 1; pgno <= h->head.page_count; ++pgno) {
      if (pgno == lock_page) {
        h->tree.append(lock_byte_leaf(h->page_size));
        continue;
      }
      SWL_TRY(file_io::pread_exact(file.fd.get(), page, uint64_t{pgno - 1} * h->page_size, name));
      h->tree.append(page_leaf_hash(pgno, page));
    }
  } else {
    h->page_size = kPageSize;
  }
  if (h->tree.root() != h->head.state_root)
    return make_error(Errc::internal, "{}: the copy's state root {} is not the head's {}", name,
                      to_hex(h->tree.root()), to_hex(h->head.state_root));
  h->fd = std::move(file.fd);
  h->made = h->last_used = now();
  copies_.fetch_add(1);
  return h;
}

Result<SnapshotManifest> SnapshotSource::newest(const std::atomic<bool>* cancel) {
  auto manifest = [this](const Held& h) {
    return SnapshotManifest{h.head, h.page_size, options_.chunk_pages};
  };
  {
    const std::optional<Head> signed_head = source_.head();  // not under mu_: the owner's lock
    std::lock_guard lock(mu_);
    const auto t = now();
    expire_locked(t);
    if (auto h = find_newest_reusable_locked(signed_head, t)) {
      h->last_used = t;
      return manifest(*h);
    }
  }
  std::lock_guard making(make_mu_);  // one copy at a time; the others wait and reuse it
  {
    const std::optional<Head> signed_head = source_.head();
    std::lock_guard lock(mu_);
    const auto t = now();
    if (auto h = find_newest_reusable_locked(signed_head, t)) {
      h->last_used = t;
      return manifest(*h);
    }
  }
  SWL_ASSIGN(std::shared_ptr<Held> made, make(cancel));
  std::lock_guard lock(mu_);
  std::erase_if(held_,
                [&](const std::shared_ptr<Held>& h) { return h->head.size == made->head.size; });
  held_.push_back(made);
  while (held_.size() > std::max<size_t>(1, options_.max_held)) {
    auto lru = std::min_element(held_.begin(), held_.end(), [](const auto& a, const auto& b) {
      return a->last_used < b->last_used;
    });
    held_.erase(lru);
  }
  return manifest(*made);
}

Result<Bytes> SnapshotSource::chunk(uint64_t size, uint32_t first_page, uint32_t count) {
  std::shared_ptr<Held> h;
  {
    std::lock_guard lock(mu_);
    const auto t = now();
    expire_locked(t);
    uint64_t newest = 0;
    for (const auto& x : held_) {
      newest = std::max(newest, x->head.size);
      if (x->head.size == size) h = x;
    }
    if (!h) {
      if (newest == 0)
        return make_error(Errc::not_found,
                          "gone: head {} is not held; no snapshot is held (ask GET /db/snapshot)",
                          size);
      return make_error(Errc::not_found, "gone: head {} is not held; newest held is {}", size,
                        newest);
    }
    h->last_used = t;
  }
  if (first_page == 0 || count == 0 || uint64_t{first_page} + count - 1 > h->head.page_count)
    return make_error(
        Errc::invalid_argument, "snapshot at size {}: pages {}..{} are not inside its {} pages",
        size, first_page, uint64_t{first_page} + count - (count ? 1 : 0), h->head.page_count);
  if (uint64_t{count} * h->page_size > kMaxChunkPageBytes)
    return make_error(
        Errc::invalid_argument,
        "snapshot at size {}: {} pages of {} bytes are over the chunk cap of {} bytes", size, count,
        h->page_size, kMaxChunkPageBytes);
  SnapshotChunk c;
  c.head = h->head;
  c.page_size = h->page_size;
  c.first_page = first_page;
  c.count = count;
  c.pages.resize(size_t{count} * h->page_size);
  const std::string name = fmt::format("snapshot copy at size {}", size);
  SWL_TRY(
      file_io::pread_exact(h->fd.get(), c.pages, uint64_t{first_page - 1} * h->page_size, name));
  // The lock-byte page travels as zeros whatever the copy holds there
  // (docs/formats/state-tree.md "The lock-byte page").
  const uint32_t lock_page = lock_byte_page(h->page_size);
  if (lock_page >= first_page && lock_page - first_page < count)
    std::fill_n(c.pages.begin() + size_t{lock_page - first_page} * h->page_size, h->page_size, 0);
  SWL_ASSIGN(c.proof, snapshot_range_proof(h->tree, first_page, count));
  return encode_snapshot_chunk(c);
}

}  // namespace swarmlite
