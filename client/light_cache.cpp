// The light client's page cache (light_cache.h; docs/light-client.md "Page cache").
#include "client/light_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>

#include "core/codec.h"
#include "core/hash.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite::client {
namespace {

constexpr std::string_view kMagic = "SWLPAGES";
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderSize = 8 + 1 + 4 + 4;  // magic, version, page size, count
constexpr size_t kEntrySize = 32 + 4 + 4 + 8;  // leaf, pgno, slot, last use
constexpr size_t kChecksumSize = 32;           // BLAKE2b of everything before it
// Slots the file may hold beyond the cap while evicted slots wait for the next
// flush() to become reusable (one full GetPages answer): the byte cap is
// exceeded by at most this many pages between flushes.
constexpr uint64_t kSlack = 256;

Hash32 leaf_of(uint32_t pgno, ByteView page, uint32_t page_size) {
  return pgno == lock_byte_page(page_size) ? lock_byte_leaf(page_size) : page_leaf_hash(pgno, page);
}

}  // namespace

Result<std::unique_ptr<LightCache>> LightCache::open(const std::filesystem::path& dir,
                                                     uint32_t page_size,
                                                     LightCacheOptions options) {
  if (page_size < 512 || page_size > 65536 || !std::has_single_bit(page_size))
    return make_error(Errc::invalid_argument,
                      "page cache {}: page size {} is not a power of two in 512..65536",
                      dir.string(), page_size);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return make_error(Errc::io_error, "page cache {}: cannot create the directory: {}",
                      dir.string(), ec.message());
  std::unique_ptr<LightCache> c(new LightCache());
  c->dir_ = dir;
  c->page_size_ = page_size;
  c->max_slots_ = std::max<uint64_t>(1, options.max_bytes / page_size);
  c->slots_path_ = dir / fmt::format("pages-{}.slots", page_size);
  c->index_path_ = dir / fmt::format("pages-{}.index", page_size);
  SWL_ASSIGN(c->lock_fd_, file_io::open(dir / "lock", O_RDWR | O_CREAT));
  if (::flock(c->lock_fd_.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(Errc::unavailable,
                      "page cache {}: another light client has it open (flock on {}: {})",
                      dir.string(), (dir / "lock").string(), std::strerror(errno));
  SWL_ASSIGN(c->slots_fd_, file_io::open(c->slots_path_, O_RDWR | O_CREAT));
  SWL_ASSIGN(uint64_t file_bytes, file_io::file_size(c->slots_fd_.get(), c->slots_path_));
  const uint64_t file_slots = file_bytes / page_size;
  c->next_slot_ = static_cast<uint32_t>(std::min<uint64_t>(file_slots, UINT32_MAX));

  auto index = file_io::read_file(
      c->index_path_, kHeaderSize + kChecksumSize + (c->max_slots_ + kSlack) * kEntrySize);
  if (index.ok()) {
    c->load_index(*index);
  } else if (index.error().code != Errc::not_found) {
    c->stats_.index_dropped = true;
    c->stats_.index_problem = index.error().to_string();
  }
  // Entries naming slots past the end of the file (a truncated slot file) are gone.
  for (auto it = c->by_leaf_.begin(); it != c->by_leaf_.end();) {
    if (it->second.slot >= c->next_slot_) {
      c->by_use_.erase(it->second.last_use);
      it = c->by_leaf_.erase(it);
      ++c->stats_.corrupt;
    } else {
      ++it;
    }
  }
  // The file keeps slots up to the highest indexed one; below it, every slot
  // the index does not name is free (written by a run killed before its flush,
  // or freed by eviction).
  std::vector<bool> used;
  uint32_t end = 0;
  for (const auto& [leaf, e] : c->by_leaf_) end = std::max(end, e.slot + 1);
  used.assign(end, false);
  for (const auto& [leaf, e] : c->by_leaf_) used[e.slot] = true;
  c->stats_.reclaimed = file_slots - c->by_leaf_.size();
  for (uint32_t s = 0; s < end; ++s)
    if (!used[s]) c->free_slots_.push_back(s);
  std::reverse(c->free_slots_.begin(), c->free_slots_.end());  // lowest first out
  if (file_slots != end)
    SWL_TRY(file_io::truncate(c->slots_fd_.get(), uint64_t{end} * page_size, c->slots_path_));
  c->next_slot_ = end;
  // A smaller cap than the last run's: the least recently used go now.
  while (c->by_leaf_.size() > c->max_slots_) c->drop(c->by_use_.begin()->second, true);
  c->stats_.entries = c->by_leaf_.size();
  return c;
}

Result<std::vector<LightCacheIndexEntry>> decode_light_cache_index(ByteView bytes,
                                                                   uint32_t page_size) {
  auto bad = [](std::string why) { return make_error(Errc::corrupt, "{}", why); };
  if (bytes.size() < kHeaderSize + kChecksumSize)
    return bad(fmt::format("{} bytes, shorter than a header and checksum", bytes.size()));
  const ByteView body = bytes.first(bytes.size() - kChecksumSize);
  Hash32 sum = blake2b(body);
  if (!std::equal(sum.begin(), sum.end(), bytes.begin() + static_cast<ptrdiff_t>(body.size())))
    return bad("checksum does not match (a torn or edited index)");
  Reader r(body, "page cache index");
  auto magic = r.raw(kMagic.size(), "magic");
  if (!magic.ok() || !std::equal(magic->begin(), magic->end(), kMagic.begin()))
    return bad("not a page cache index (magic at offset 0)");
  auto version = r.u8("version");
  if (!version.ok() || *version != kVersion)
    return bad(fmt::format("version at offset 8 is not {}", kVersion));
  auto ps = r.u32("page size");
  if (!ps.ok() || *ps != page_size)
    return bad(fmt::format("page size at offset 9 is not {}", page_size));
  auto count = r.u32("count");
  if (!count.ok() || uint64_t{*count} * kEntrySize != r.remaining())
    return bad(
        fmt::format("count at offset 13 does not match the {} bytes of entries", r.remaining()));
  std::vector<LightCacheIndexEntry> out;
  out.reserve(*count);  // bounded: count · kEntrySize bytes are there
  std::set<uint32_t> slots;
  std::set<Hash32> leaves;
  std::set<uint64_t> uses;
  for (uint32_t i = 0; i < *count; ++i) {
    const size_t at = r.offset();
    auto leaf = r.hash("leaf");
    auto pgno = r.u32("pgno");
    auto slot = r.u32("slot");
    auto use = r.u64("last use");
    if (!leaf.ok() || !pgno.ok() || !slot.ok() || !use.ok())
      return bad(fmt::format("entry #{} at offset {} is truncated", i, at));
    if (*pgno == 0 || !slots.insert(*slot).second || !leaves.insert(*leaf).second ||
        !uses.insert(*use).second)
      return bad(
          fmt::format("entry #{} at offset {}: page number 0, or a slot, leaf or last "
                      "use named twice",
                      i, at));
    out.push_back({*leaf, *pgno, *slot, *use});
  }
  return out;
}

void LightCache::load_index(const Bytes& bytes) {
  auto entries = decode_light_cache_index(bytes, page_size_);
  if (!entries.ok()) {
    stats_.index_dropped = true;
    stats_.index_problem = fmt::format("{}: {}", index_path_.string(), entries.error().message);
    return;
  }
  for (const LightCacheIndexEntry& e : *entries) {
    by_leaf_[e.leaf] = Entry{e.pgno, e.slot, e.last_use};
    by_use_[e.last_use] = e.leaf;
    clock_ = std::max(clock_, e.last_use);
  }
}

LightCache::~LightCache() {
  // Saves the LRU order of this run's reads; a failure only loses that order.
  if (dirty_ && slots_fd_.valid()) (void)flush();
}

std::vector<uint32_t> LightCache::pgnos() const {
  std::set<uint32_t> set;
  for (const auto& [leaf, e] : by_leaf_) set.insert(e.pgno);
  return {set.begin(), set.end()};
}

std::optional<uint32_t> LightCache::slot_of(const Hash32& leaf) const {
  auto it = by_leaf_.find(leaf);
  if (it == by_leaf_.end()) return std::nullopt;
  return it->second.slot;
}

void LightCache::touch(const Hash32& leaf, Entry& e) {
  by_use_.erase(e.last_use);
  e.last_use = ++clock_;
  by_use_[e.last_use] = leaf;
}

void LightCache::drop(const Hash32& leaf, bool evicted) {
  auto it = by_leaf_.find(leaf);
  if (it == by_leaf_.end()) return;
  by_use_.erase(it->second.last_use);
  freed_unflushed_.push_back(it->second.slot);
  by_leaf_.erase(it);
  dirty_ = true;
  if (evicted) ++stats_.evictions;
  stats_.entries = by_leaf_.size();
}

Result<std::optional<Bytes>> LightCache::get(uint32_t pgno, const Hash32& leaf) {
  auto it = by_leaf_.find(leaf);
  if (it == by_leaf_.end() || it->second.pgno != pgno) {
    ++stats_.misses;
    return std::optional<Bytes>();
  }
  Bytes page(page_size_);
  SWL_TRY(file_io::pread_exact(slots_fd_.get(), page, uint64_t{it->second.slot} * page_size_,
                               slots_path_));
  if (leaf_of(pgno, page, page_size_) != leaf) {
    ++stats_.corrupt;
    ++stats_.misses;
    drop(leaf, false);
    return std::optional<Bytes>();
  }
  ++stats_.hits;
  touch(leaf, it->second);
  return std::optional<Bytes>(std::move(page));
}

uint32_t LightCache::take_slot() {
  if (free_slots_.empty() && next_slot_ >= max_slots_ + kSlack && !freed_unflushed_.empty()) {
    // Every slot is taken or waits for an index that no longer names it:
    // writing the index frees them (flush() moves them to free_slots_). If it
    // fails, the file grows instead and the next flush() retries.
    (void)flush();
  }
  if (!free_slots_.empty()) {
    uint32_t s = free_slots_.back();
    free_slots_.pop_back();
    return s;
  }
  return next_slot_++;
}

Status LightCache::put(uint32_t pgno, const Hash32& leaf, ByteView page) {
  if (page.size() != page_size_ || pgno == 0)
    return make_error(Errc::invalid_argument,
                      "page cache {}: page {} of {} bytes, the cache holds {}-byte pages",
                      dir_.string(), pgno, page.size(), page_size_);
  if (auto it = by_leaf_.find(leaf); it != by_leaf_.end()) {
    touch(leaf, it->second);
    return ok_status();
  }
  while (by_leaf_.size() >= max_slots_) drop(by_use_.begin()->second, true);
  const uint32_t slot = take_slot();
  SWL_TRY(file_io::pwrite_all(slots_fd_.get(), page, uint64_t{slot} * page_size_, slots_path_));
  Entry e{pgno, slot, ++clock_};
  by_leaf_[leaf] = e;
  by_use_[e.last_use] = leaf;
  ++stats_.stores;
  stats_.entries = by_leaf_.size();
  dirty_ = true;
  return ok_status();
}

Status LightCache::flush() {
  if (!dirty_) return ok_status();
  // The slots first: the index written next may name them.
  SWL_TRY(file_io::fdatasync_file(slots_fd_.get(), slots_path_));
  Writer w;
  w.raw(as_bytes(kMagic));
  w.u8(kVersion);
  w.u32(page_size_);
  w.u32(static_cast<uint32_t>(by_leaf_.size()));
  for (const auto& [leaf, e] : by_leaf_) {
    w.hash(leaf);
    w.u32(e.pgno);
    w.u32(e.slot);
    w.u64(e.last_use);
  }
  w.hash(blake2b(w.bytes()));
  SWL_TRY(file_io::durable_replace(index_path_, w.bytes()));
  free_slots_.insert(free_slots_.end(), freed_unflushed_.begin(), freed_unflushed_.end());
  freed_unflushed_.clear();
  dirty_ = false;
  return ok_status();
}

}  // namespace swarmlite::client
