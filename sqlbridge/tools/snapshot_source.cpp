#include "sqlbridge/tools/snapshot_source.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/file_io.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {

namespace {

// A materialised copy: an unlinked file holding the head's pages and the state
// tree over them (leaf i = page i+1).
struct Copy {
  file_io::Fd fd;
  MerkleTree tree;
};

// Pages a pin's copy writes at once, and how often it looks at the -wal.
constexpr uint32_t kCopyBatchPages = 256;
constexpr uint32_t kCopyWalCheckPages = 4096;

uint64_t file_bytes(const std::filesystem::path& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return 0;  // no -wal: nothing grew
  return static_cast<uint64_t>(st.st_size);
}

// An unlinked read-write file in `dir` (its descriptor keeps the bytes).
Result<file_io::Fd> unlinked_temp_file(const std::filesystem::path& dir) {
  std::string templ =
      ((dir.empty() ? std::filesystem::temp_directory_path() : dir) / ".swarmlite-snapshot-XXXXXX")
          .string();
  int fd = ::mkstemp(templ.data());
  if (fd < 0)
    return make_error(Errc::io_error, "snapshot copy: cannot create a temporary file in {}: {}",
                      dir.string(), std::strerror(errno));
  file_io::Fd owned(fd);
  if (::unlink(templ.c_str()) != 0)
    return make_error(Errc::io_error, "snapshot copy: cannot unlink the temporary file {}: {}",
                      templ, std::strerror(errno));
  return owned;
}

}  // namespace

struct SnapshotSource::Held {
  Head head;
  uint32_t page_size = 0;
  // A copy, or the owner's pin until it is copied (then the copy): switched
  // under SnapshotSource::mu_; a request holds its own reference while it reads.
  std::shared_ptr<const Copy> copy;
  std::shared_ptr<const PinnedPages> pin;
  std::filesystem::path wal_path;  // the pin's -wal
  uint64_t wal_at_pin = 0;         // its size when pinned
  bool copying = false;            // under mu_
  Clock::time_point made;
  Clock::time_point last_used;  // under SnapshotSource::mu_
};

SnapshotSource::SnapshotSource(BackupSource source, SnapshotSourceOptions options,
                               PinnedHeadProvider pinned)
    : source_(std::move(source)), options_(std::move(options)), pinned_(std::move(pinned)) {
  if (options_.reaper) {
    reaper_ = std::thread([this] {
      std::unique_lock lock(mu_);
      while (!stopping_) {
        reaper_cv_.wait_for(lock, std::chrono::seconds(1));
        if (stopping_) break;
        expire_locked(now());
        lock.unlock();
        bound_pins();
        lock.lock();
      }
    });
  }
}

SnapshotSource::~SnapshotSource() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_copy_ = true;
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

uint64_t SnapshotSource::oldest_held() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& h : held_) n = n == 0 ? h->head.size : std::min(n, h->head.size);
  return n;
}

std::optional<Error> SnapshotSource::corruption() const {
  std::lock_guard lock(mu_);
  return corrupt_;
}

void SnapshotSource::latch_corrupt(const Error& e) {
  spdlog::error(
      "snapshots: a pinned page does not match its state tree; serving no snapshot any "
      "more: {}",
      e.to_string());
  std::lock_guard lock(mu_);
  if (!corrupt_) {
    corrupt_ = e;
    corrupt_->message = "not serving snapshots: " + corrupt_->message;
  }
  held_.clear();  // requests in flight finish with their own references
}

uint64_t SnapshotSource::wal_growth(const Held& h) const {
  const uint64_t now_bytes = file_bytes(h.wal_path);
  return now_bytes > h.wal_at_pin ? now_bytes - h.wal_at_pin : 0;
}

void SnapshotSource::hold_locked(std::shared_ptr<Held> made) {
  std::erase_if(held_,
                [&](const std::shared_ptr<Held>& h) { return h->head.size == made->head.size; });
  held_.push_back(std::move(made));
  while (held_.size() > std::max<size_t>(1, options_.max_held)) {
    auto lru = std::min_element(held_.begin(), held_.end(), [](const auto& a, const auto& b) {
      return a->last_used < b->last_used;
    });
    held_.erase(lru);
  }
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
  auto copy = std::make_shared<Copy>();
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
        copy->tree.append(lock_byte_leaf(h->page_size));
        continue;
      }
      SWL_TRY(file_io::pread_exact(file.fd.get(), page, uint64_t{pgno - 1} * h->page_size, name));
      copy->tree.append(page_leaf_hash(pgno, page));
    }
  } else {
    h->page_size = kPageSize;
  }
  if (copy->tree.root() != h->head.state_root)
    return make_error(Errc::internal, "{}: the copy's state root {} is not the head's {}", name,
                      to_hex(copy->tree.root()), to_hex(h->head.state_root));
  copy->fd = std::move(file.fd);
  h->copy = std::move(copy);
  h->made = h->last_used = now();
  copies_.fetch_add(1);
  return h;
}

Result<std::shared_ptr<SnapshotSource::Held>> SnapshotSource::from_pin(const PinnedHead& pin) {
  // The pin's tree is what every page served from it is checked against: it
  // has to be the head's, or the chunks would not verify.
  if (!pin.pages || pin.head.page_count == 0 || pin.pages->page_count() != pin.head.page_count ||
      pin.pages->tree().root() != pin.head.state_root)
    return make_error(Errc::unavailable,
                      "the pin at size {} has no pages or a state tree other than its head's",
                      pin.head.size);
  auto h = std::make_shared<Held>();
  h->head = pin.head;
  h->page_size = pin.pages->page_size();
  h->pin = pin.pages;
  h->wal_path = pin.wal_path;
  h->wal_at_pin = file_bytes(pin.wal_path);
  h->made = h->last_used = now();
  pins_.fetch_add(1);
  return h;
}

Status SnapshotSource::copy_pin(const std::shared_ptr<Held>& h) {
  std::shared_ptr<const PinnedPages> pin;
  {
    std::lock_guard lock(mu_);
    pin = h->pin;
  }
  if (!pin) return ok_status();  // copied already
  const std::string name = fmt::format("snapshot copy of the pin at size {}", h->head.size);
  SWL_ASSIGN(file_io::Fd fd, unlinked_temp_file(options_.temp_dir));
  const uint32_t count = pin->page_count();
  const uint32_t ps = pin->page_size();
  Bytes batch;
  batch.reserve(size_t{kCopyBatchPages} * ps);
  Bytes page;
  uint32_t batch_first = 1;
  for (uint32_t pgno = 1; pgno <= count; ++pgno) {
    if (pgno % kCopyWalCheckPages == 0) {
      if (stop_copy_.load()) return make_error(Errc::unavailable, "{}: stopping", name);
      if (const uint64_t grown = wal_growth(*h); grown >= options_.pin_drop_wal_bytes)
        return make_error(Errc::unavailable,
                          "{}: the -wal grew by {} bytes while it was copied (bound {})", name,
                          grown, options_.pin_drop_wal_bytes);
    }
    // Checked against the pin's tree: the copy holds only pages of the head's
    // state, so the pin's tree is the copy's.
    Status read = pin->read(pgno, page);
    if (!read.ok()) {
      if (read.error().code == Errc::corrupt) latch_corrupt(read.error());
      return read;
    }
    batch.insert(batch.end(), page.begin(), page.end());
    if (pgno - batch_first + 1 == kCopyBatchPages || pgno == count) {
      SWL_TRY(file_io::pwrite_all(fd.get(), batch, uint64_t{batch_first - 1} * ps, name));
      batch.clear();
      batch_first = pgno + 1;
    }
  }
  auto copy = std::make_shared<Copy>();
  copy->fd = std::move(fd);
  copy->tree = pin->tree().tree();
  std::lock_guard lock(mu_);
  h->copy = std::move(copy);
  h->pin.reset();  // requests in flight keep it until they end
  h->copying = false;
  pins_copied_.fetch_add(1);
  return ok_status();
}

void SnapshotSource::bound_pins() {
  if (!pinned_) return;
  std::vector<std::shared_ptr<Held>> due;
  {
    std::lock_guard lock(mu_);
    const auto t = now();
    std::erase_if(held_, [&](const std::shared_ptr<Held>& h) {
      if (!h->pin) return false;
      const uint64_t grown = wal_growth(*h);
      if (grown >= options_.pin_drop_wal_bytes) {
        spdlog::warn(
            "snapshots: dropping the snapshot at size {}: the -wal grew by {} bytes while "
            "its pin was held (bound {}), before it was copied",
            h->head.size, grown, options_.pin_drop_wal_bytes);
        pins_dropped_.fetch_add(1);
        return true;
      }
      if (!h->copying &&
          (t - h->made >= options_.pin_max_age || grown >= options_.pin_max_wal_bytes)) {
        h->copying = true;
        due.push_back(h);
      }
      return false;
    });
  }
  for (const auto& h : due) {
    Status s = copy_pin(h);
    if (s.ok()) continue;
    // Not copied: the pin cannot be held longer (the -wal's bound), so the
    // snapshot goes; its fetchers get "gone" and ask for the newest.
    spdlog::warn("snapshots: dropping the snapshot at size {}: {}", h->head.size,
                 s.error().to_string());
    std::lock_guard lock(mu_);
    if (std::erase(held_, h) > 0) pins_dropped_.fetch_add(1);
  }
}

Result<SnapshotManifest> SnapshotSource::newest(const std::atomic<bool>* cancel) {
  auto manifest = [this](const Held& h) {
    return SnapshotManifest{h.head, h.page_size, options_.chunk_pages};
  };
  {
    const std::optional<Head> signed_head = source_.head();  // not under mu_: the owner's lock
    std::lock_guard lock(mu_);
    if (corrupt_) return *corrupt_;
    const auto t = now();
    expire_locked(t);
    if (auto h = find_newest_reusable_locked(signed_head, t)) {
      h->last_used = t;
      return manifest(*h);
    }
  }
  if (pinned_) {
    // The owner's pin costs no copy; without one (nothing pinned yet, an
    // empty database) the snapshot is a copy as on the primary.
    auto pin = pinned_();
    if (pin.ok()) {
      auto held = from_pin(*pin);
      if (held.ok()) {
        std::lock_guard lock(mu_);
        if (corrupt_) return *corrupt_;
        hold_locked(*held);
        return manifest(**held);
      }
    } else if (pin.error().code == Errc::corrupt) {
      return pin.take_error();
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
  if (corrupt_) return *corrupt_;
  hold_locked(made);
  return manifest(*made);
}

Result<Bytes> SnapshotSource::chunk(uint64_t size, uint32_t first_page, uint32_t count) {
  std::shared_ptr<Held> h;
  std::shared_ptr<const Copy> copy;
  std::shared_ptr<const PinnedPages> pin;
  {
    std::lock_guard lock(mu_);
    if (corrupt_) return *corrupt_;
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
    copy = h->copy;
    pin = h->pin;
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
  if (copy) {
    const std::string name = fmt::format("snapshot copy at size {}", size);
    SWL_TRY(file_io::pread_exact(copy->fd.get(), c.pages, uint64_t{first_page - 1} * h->page_size,
                                 name));
    // The lock-byte page travels as zeros whatever the copy holds there
    // (docs/formats/state-tree.md "The lock-byte page").
    const uint32_t lock_page = lock_byte_page(h->page_size);
    if (lock_page >= first_page && lock_page - first_page < count)
      std::fill_n(c.pages.begin() + size_t{lock_page - first_page} * h->page_size, h->page_size, 0);
    SWL_ASSIGN(c.proof, snapshot_range_proof(copy->tree, first_page, count));
    return encode_snapshot_chunk(c);
  }
  // From the pin: each page checked against the pin's tree before it is
  // served (PinnedPages::read); one that is not is latched, never served.
  Bytes page;
  for (uint32_t i = 0; i < count; ++i) {
    Status read = pin->read(first_page + i, page);
    if (!read.ok()) {
      if (read.error().code == Errc::corrupt) {
        latch_corrupt(read.error());
        return corruption().value_or(read.error());
      }
      return read.take_error();
    }
    std::copy(page.begin(), page.end(), c.pages.begin() + size_t{i} * h->page_size);
  }
  SWL_ASSIGN(c.proof, snapshot_range_proof(pin->tree().tree(), first_page, count));
  return encode_snapshot_chunk(c);
}

}  // namespace swarmlite
