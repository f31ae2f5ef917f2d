// State tree and the logical-page reader (docs/formats/state-tree.md).
//
// The WAL parser (wal_scan.{h,cpp}) follows SQLite's src/wal.c (walIndexRecover /
// walDecodeFrame):
//
//   WAL header (32 bytes, big-endian u32s)      frame header (24 bytes)
//   0  magic 0x377f0682 | 0x377f0683           0  pgno
//   4  format version 3007000                  4  db size after commit (0 if not a commit)
//   8  page size                               8  salt-1 (must equal the header's)
//   12 checkpoint sequence                     12 salt-2 (must equal the header's)
//   16 salt-1                                  16 checksum-1 (cumulative)
//   20 salt-2                                  20 checksum-2
//   24 checksum-1 of bytes 0..23
//   28 checksum-2
//
// Checksums run over 32-bit words, big-endian when the magic's low bit is set,
// little-endian otherwise; each frame's covers its header bytes 0..7 and its
// page, continuing from the previous frame's (the first from the header's).
#include "sqlbridge/engine/state_tree.h"

#include <fcntl.h>

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

#include "core/hash.h"
#include "sqlbridge/engine/wal_scan.h"

namespace swarmlite {
namespace {

// Page 1 header ranges that differ between databases with equal content
// (docs/formats/state-tree.md has the reasons): [begin, end) byte offsets.
struct ByteRange {
  size_t begin;
  size_t end;
};
constexpr ByteRange kVolatileHeaderRanges[] = {
    {18, 20},   // file format write/read version: 1 rollback journal, 2 WAL
    {24, 28},   // file change counter
    {92, 100},  // version-valid-for number, SQLITE_VERSION_NUMBER of the last writer
};

constexpr char kSqliteMagic[] = "SQLite format 3";  // 16 bytes with its NUL

bool valid_page_size(uint32_t n) { return n >= 512 && n <= 65536 && (n & (n - 1)) == 0; }

// SQLite's PENDING_BYTE; only tests move it (set_pending_byte_for_testing).
std::atomic<uint32_t> g_pending_byte{kSqlitePendingByte};

// Reads exactly n bytes at `offset`, or fewer at the end of the file.
Result<size_t> pread_full(const file_io::Fd& fd, uint8_t* buf, size_t n, int64_t offset,
                          const std::filesystem::path& path) {
  return file_io::pread_up_to(fd.get(), std::span<uint8_t>(buf, n), static_cast<uint64_t>(offset),
                              path);
}

Result<int64_t> file_size(const file_io::Fd& fd, const std::filesystem::path& path) {
  SWL_ASSIGN(uint64_t n, file_io::file_size(fd.get(), path));
  return static_cast<int64_t>(n);
}

}  // namespace

// ---------------------------------------------------------------------------
// Leaves

void normalize_page_into(uint32_t pgno, ByteView page, Bytes& out) {
  out.assign(page.begin(), page.end());
  if (pgno != 1) return;
  for (const ByteRange& r : kVolatileHeaderRanges) {
    for (size_t i = r.begin; i < r.end && i < out.size(); ++i) out[i] = 0;
  }
}

Bytes normalize_page(uint32_t pgno, ByteView page) {
  Bytes out;
  normalize_page_into(pgno, page, out);
  return out;
}

Hash32 page_leaf_hash(uint32_t pgno, ByteView page) {
  Hasher h;
  h.update_u8(kLeafPrefix).update_u32be(pgno);
  if (pgno != 1) return h.update(page).finish();
  static constexpr uint8_t kZeros[8] = {};
  size_t at = 0;
  for (const ByteRange& r : kVolatileHeaderRanges) {
    if (at >= page.size()) break;
    size_t begin = std::min(r.begin, page.size());
    size_t end = std::min(r.end, page.size());
    h.update(page.subspan(at, begin - at));
    h.update(ByteView(kZeros, end - begin));
    at = end;
  }
  return h.update(page.subspan(std::min(at, page.size()))).finish();
}

void page_leaf_hashes(std::span<const PageLeafJob> jobs) {
  constexpr size_t kPrefixLen = 5;  // kLeafPrefix || u32be(pgno)
  std::vector<std::array<uint8_t, kPrefixLen>> prefixes;
  std::vector<blake2b256::LaneInput> in;
  prefixes.reserve(jobs.size());  // no reallocation: `in` points into it
  in.reserve(jobs.size());
  size_t size = SIZE_MAX;  // of the pages hashed together
  for (const PageLeafJob& job : jobs) {
    if (job.pgno != 1 && size == SIZE_MAX) size = job.page.size();
    if (job.pgno == 1 || job.page.size() != size) {  // page 1 is normalised first
      *job.out = page_leaf_hash(job.pgno, job.page);
      continue;
    }
    prefixes.push_back({kLeafPrefix, uint8_t(job.pgno >> 24), uint8_t(job.pgno >> 16),
                        uint8_t(job.pgno >> 8), uint8_t(job.pgno)});
    in.push_back({prefixes.back().data(), job.page.data(), nullptr, job.out->data()});
  }
  if (!in.empty()) blake2b256::hash_lanes(in, kPrefixLen, size);
}

// ---------------------------------------------------------------------------
// The lock-byte page

uint32_t lock_byte_page(uint32_t page_size) {
  return page_size == 0 ? 0 : g_pending_byte.load(std::memory_order_relaxed) / page_size + 1;
}

Hash32 lock_byte_leaf(uint32_t page_size) {
  static constexpr uint8_t kZeros[4096] = {};
  Hasher h;
  h.update_u8(kLeafPrefix).update_u32be(lock_byte_page(page_size));
  for (uint32_t done = 0; done < page_size; done += sizeof kZeros) {
    h.update(ByteView(kZeros, std::min<size_t>(sizeof kZeros, page_size - done)));
  }
  return h.finish();
}

Result<uint32_t> set_pending_byte_for_testing(uint32_t pending_byte) {
  // At least 64 KiB, so the lock-byte page is never page 1 at any page size.
  if (pending_byte < 0x10000 || pending_byte % 512 != 0) {
    return make_error(Errc::invalid_argument,
                      "pending byte {:#x}: must be a multiple of 512, at least 0x10000",
                      pending_byte);
  }
  int previous = sqlite3_test_control(SQLITE_TESTCTRL_PENDING_BYTE, pending_byte);
  int now = sqlite3_test_control(SQLITE_TESTCTRL_PENDING_BYTE, 0);
  if (static_cast<uint32_t>(now) != pending_byte) {
    return make_error(Errc::internal,
                      "this SQLite build does not move its pending byte (asked {:#x}, has {:#x})",
                      pending_byte, static_cast<uint32_t>(now));
  }
  g_pending_byte.store(pending_byte);
  return static_cast<uint32_t>(previous);
}

// ---------------------------------------------------------------------------
// LogicalPages

Result<LogicalPages> LogicalPages::open(const std::filesystem::path& db_path) {
  LogicalPages lp;
  lp.path_ = db_path;
  {
    // Kept open: closing a descriptor of it would drop SQLite's locks (file_io.h).
    auto fd = file_io::open_kept(db_path);
    if (!fd.ok()) {
      if (fd.error().code == Errc::not_found)
        return make_error(Errc::not_found, "{}: no such database", db_path.string());
      return fd.take_error();
    }
    lp.db_fd_ = std::move(fd).value();
  }
  SWL_ASSIGN(lp.db_size_, file_size(lp.db_fd_, db_path));

  // Main file header: magic and page size.
  if (lp.db_size_ > 0) {
    uint8_t hdr[100];
    SWL_ASSIGN(size_t got, pread_full(lp.db_fd_, hdr, sizeof hdr, 0, db_path));
    if (got < sizeof hdr || std::memcmp(hdr, kSqliteMagic, sizeof kSqliteMagic) != 0) {
      return make_error(Errc::corrupt, "{}: not an SQLite database (bad header, {} bytes)",
                        db_path.string(), lp.db_size_);
    }
    uint32_t ps = uint32_t(hdr[16]) << 8 | hdr[17];
    if (ps == 1) ps = 65536;
    if (!valid_page_size(ps)) {
      return make_error(Errc::corrupt,
                        "{}: header page size {} at offset 16 is not a power of two "
                        "in [512, 65536]",
                        db_path.string(), ps);
    }
    lp.page_size_ = ps;
  }

  // The -wal file, if any: accept frames up to the last valid commit frame.
  std::filesystem::path wal_path = db_path;
  wal_path += "-wal";
  uint32_t commit_size = 0;
  {
    auto fd = file_io::open(wal_path, O_RDONLY);
    if (fd.ok()) {
      lp.wal_fd_ = std::move(fd).value();
    } else if (fd.error().code != Errc::not_found) {
      return fd.take_error();
    }
  }
  if (lp.wal_fd_.valid()) {
    SWL_ASSIGN(WalScan scan, WalScan::begin(lp.wal_fd_, wal_path));
    if (scan.usable) {
      if (lp.page_size_ != 0 && lp.page_size_ != scan.page_size) {
        return make_error(Errc::corrupt, "{}: WAL page size {} differs from the database's {}",
                          wal_path.string(), scan.page_size, lp.page_size_);
      }
      lp.page_size_ = scan.page_size;
      std::map<uint32_t, int64_t> uncommitted;
      SWL_TRY(scan.scan(lp.wal_fd_, wal_path, UINT32_MAX,
                        [&](uint32_t frame, uint32_t pgno, uint32_t db_size, int64_t data_offset) {
                          uncommitted[pgno] = data_offset;
                          if (db_size == 0) return;
                          for (const auto& [p, o] : uncommitted) lp.wal_page_offset_[p] = o;
                          uncommitted.clear();
                          commit_size = db_size;
                          lp.committed_frames_ = frame;
                        }));
    }
  }

  if (lp.page_size_ == 0) return lp;  // an empty database: no pages
  int64_t main_pages = (lp.db_size_ + lp.page_size_ - 1) / lp.page_size_;
  if (lp.committed_frames_ > 0) {
    lp.page_count_ = commit_size;
    // Pages a commit cut off may still sit in older frames: not logical pages.
    lp.wal_page_offset_.erase(lp.wal_page_offset_.upper_bound(commit_size),
                              lp.wal_page_offset_.end());
  } else {
    if (main_pages > int64_t{UINT32_MAX}) {
      return make_error(Errc::corrupt, "{}: {} pages, over SQLite's limit", db_path.string(),
                        main_pages);
    }
    lp.page_count_ = static_cast<uint32_t>(main_pages);
  }
  // The lock-byte page reads as zeros whatever the files hold: a frame for it
  // (SQLite never writes one) is not a copy of it.
  uint32_t lock_page = lock_byte_page(lp.page_size_);
  lp.wal_page_offset_.erase(lock_page);
  // SQLite writes every page it allocates, so each logical page but the
  // lock-byte page (never written: a database past 1 GiB that lives in the WAL
  // has no copy of it) has a stored copy; a larger count is a corrupt commit
  // frame (and would make callers allocate for it).
  int64_t stored_pages_needed = int64_t{lp.page_count_} - (lock_page <= lp.page_count_ ? 1 : 0);
  if (stored_pages_needed > main_pages + lp.committed_frames_) {
    return make_error(Errc::corrupt,
                      "{}: commit frame says {} pages but the files hold {} + {} WAL frames",
                      db_path.string(), lp.page_count_, main_pages, lp.committed_frames_);
  }
  return lp;
}

Status LogicalPages::read(uint32_t pgno, Bytes& out) const {
  if (pgno == 0 || pgno > page_count_) {
    return make_error(Errc::invalid_argument, "{}: page {} is outside 1..{}", path_.string(), pgno,
                      page_count_);
  }
  out.assign(page_size_, 0);
  if (pgno == lock_byte_page(page_size_)) return ok_status();  // zeros by definition
  auto it = wal_page_offset_.find(pgno);
  if (it != wal_page_offset_.end()) {
    std::filesystem::path wal_path = path_;
    wal_path += "-wal";
    SWL_ASSIGN(size_t n, pread_full(wal_fd_, out.data(), out.size(), it->second, wal_path));
    if (n != out.size()) {
      return make_error(Errc::corrupt, "{}: WAL frame of page {} at offset {} is short",
                        wal_path.string(), pgno, it->second);
    }
    return ok_status();
  }
  int64_t off = int64_t{pgno - 1} * page_size_;
  SWL_ASSIGN(size_t n, pread_full(db_fd_, out.data(), out.size(), off, path_));
  (void)n;  // past the end of the file the page reads as zeros, as in SQLite
  return ok_status();
}

Result<std::vector<Bytes>> read_logical_pages(const std::filesystem::path& db_path) {
  SWL_ASSIGN(LogicalPages lp, LogicalPages::open(db_path));
  std::vector<Bytes> pages(lp.page_count());
  for (uint32_t pg = 1; pg <= lp.page_count(); ++pg) SWL_TRY(lp.read(pg, pages[pg - 1]));
  return pages;
}

// ---------------------------------------------------------------------------
// StateTree

Result<StateTree> StateTree::from_file(const std::filesystem::path& db_path) {
  SWL_ASSIGN(LogicalPages lp, LogicalPages::open(db_path));
  StateTree t;
  t.page_size_ = lp.page_size();
  const uint32_t lock_page = lock_byte_page(lp.page_size());
  Bytes page;
  for (uint32_t pg = 1; pg <= lp.page_count(); ++pg) {
    if (pg == lock_page) {
      t.tree_.append(lock_byte_leaf(lp.page_size()));
      continue;
    }
    SWL_TRY(lp.read(pg, page));
    t.tree_.append(page_leaf_hash(pg, page));
  }
  return t;
}

StateTree StateTree::from_pages(std::span<const Bytes> pages) {
  StateTree t;
  if (pages.empty()) return t;
  t.page_size_ = static_cast<uint32_t>(pages.front().size());
  const uint32_t lock_page = lock_byte_page(t.page_size_);
  for (size_t i = 0; i < pages.size(); ++i) {
    uint32_t pgno = static_cast<uint32_t>(i + 1);
    t.tree_.append(pgno == lock_page ? lock_byte_leaf(t.page_size_)
                                     : page_leaf_hash(pgno, pages[i]));
  }
  return t;
}

Status StateTree::apply(const PageMap& pages, uint32_t page_count) {
  uint64_t old_size = tree_.size();
  if (!pages.empty() && pages.begin()->first == 0) {
    return make_error(Errc::invalid_argument, "state tree: commit holds page number 0");
  }
  // Every page of a commit has the database's page size, which says where the
  // lock-byte page is.
  uint32_t page_size = page_size_;
  if (!pages.empty()) {
    const auto& [first_pgno, first_bytes] = *pages.begin();
    if (first_bytes.size() > 65536 ||
        !valid_page_size(static_cast<uint32_t>(first_bytes.size()))) {
      return make_error(Errc::invalid_argument,
                        "state tree: commit page {} has {} bytes, not a page size (a power of "
                        "two in [512, 65536])",
                        first_pgno, first_bytes.size());
    }
    page_size = static_cast<uint32_t>(first_bytes.size());
    for (const auto& [pgno, bytes] : pages) {
      if (bytes.size() != page_size) {
        return make_error(Errc::invalid_argument,
                          "state tree: commit page {} has {} bytes, page {} has {}", pgno,
                          bytes.size(), first_pgno, page_size);
      }
    }
    if (old_size > 0 && page_size_ != 0 && page_size != page_size_) {
      return make_error(Errc::invalid_argument,
                        "state tree: commit pages have {} bytes, the database's pages {}",
                        page_size, page_size_);
    }
  }
  const uint32_t lock_page = lock_byte_page(page_size);
  if (lock_page != 0 && lock_page <= page_count && pages.count(lock_page) != 0) {
    return make_error(Errc::invalid_argument,
                      "state tree: commit writes page {}, SQLite's lock-byte page (byte offset "
                      "{} with {}-byte pages), which SQLite never writes",
                      lock_page, g_pending_byte.load(), page_size);
  }
  for (uint64_t pg = old_size + 1; pg <= page_count; ++pg) {
    if (pg != lock_page && pages.count(static_cast<uint32_t>(pg)) == 0) {
      return make_error(Errc::invalid_argument,
                        "state tree: commit grows the database from {} to {} pages but does not "
                        "write page {}",
                        old_size, page_count, pg);
    }
  }
  Undo u;
  u.old_size = old_size;
  u.old_page_size = page_size_;
  if (page_count < old_size) {
    for (uint64_t i = page_count; i < old_size; ++i) u.cut_leaves.push_back(tree_.leaf(i));
    tree_.truncate(page_count);
  }
  // The only page a growing commit may skip is the lock-byte page (checked above).
  auto grow_to = [&](uint64_t size) {
    if (tree_.size() < size) tree_.append(lock_byte_leaf(page_size));
  };
  // Every leaf first (new pages hashed together), then the tree: the pages
  // already in it all at once (MerkleTree::set_many hashes each changed node
  // once), then the new ones appended in page order. The sets go first: an
  // append hashes its left siblings as they are.
  const std::vector<Hash32> leaves = commit_leaves(pages, page_count);
  std::vector<std::pair<uint64_t, Hash32>> updates;
  updates.reserve(leaves.size());
  size_t next_leaf = 0;
  auto page = pages.begin();
  for (; page != pages.end() && page->first <= page_count; ++page) {
    const uint64_t index = page->first - 1;
    if (index >= tree_.size()) break;
    u.old_leaves.emplace_back(index, tree_.leaf(index));
    updates.emplace_back(index, leaves[next_leaf++]);
  }
  tree_.set_many(updates);
  for (; page != pages.end() && page->first <= page_count; ++page) {
    const uint64_t index = page->first - 1;
    grow_to(index);
    tree_.append(leaves[next_leaf++]);  // index == size: new pages arrive in order, checked above
  }
  grow_to(page_count);  // a commit ending at the lock-byte page (SQLite never does that)
  if (!pages.empty()) page_size_ = page_size;
  u.valid = true;
  // The journal record: what undo_last() would restore, as page numbers.
  JournalRecord rec;
  rec.old_page_count = static_cast<uint32_t>(old_size);
  if (u.old_leaves.size() + u.cut_leaves.size() > kJournalMaxLeaves) {
    rec.overflow = true;
  } else {
    rec.old_leaves.reserve(u.old_leaves.size() + u.cut_leaves.size());
    for (const auto& [index, leaf] : u.old_leaves)
      rec.old_leaves.emplace_back(static_cast<uint32_t>(index + 1), leaf);
    for (size_t i = 0; i < u.cut_leaves.size(); ++i)
      rec.old_leaves.emplace_back(static_cast<uint32_t>(page_count + 1 + i), u.cut_leaves[i]);
  }
  journal_leaves_ += rec.old_leaves.size();
  journal_.push_back(std::move(rec));
  ++applied_;
  while (journal_.size() > kJournalMaxApplies || journal_leaves_ > kJournalMaxLeaves) {
    journal_leaves_ -= journal_.front().old_leaves.size();
    journal_.pop_front();
  }
  undo_ = std::move(u);
  return ok_status();
}

std::vector<Hash32> StateTree::commit_leaves(const PageMap& pages, uint32_t page_count) {
  std::vector<Hash32> leaves;
  if (pages.empty()) return leaves;
  // All pages of a commit have one size (apply() checked). Up to 8 KiB they
  // go through the memo (16 slots: it stays small).
  const size_t page_size = pages.begin()->second.size();
  const bool memo = page_size <= 8192;
  if (memo && leaf_memo_.empty()) leaf_memo_.resize(kLeafMemoSlots);
  // Hashed one page at a time, the pages of a slot would each leave their
  // bytes there in turn, so the slot ends with the commit's last page of it;
  // only the first found the slot as the last commit left it, the others
  // found another page number there and were hashed in full. The same here:
  // the memo is consulted by a slot's first page only, and the slot takes
  // the bytes, leaf and midstates of its last.
  std::array<size_t, kLeafMemoSlots> last_of_slot;
  last_of_slot.fill(SIZE_MAX);
  size_t count = 0;
  for (const auto& [pgno, bytes] : pages) {
    if (pgno > page_count) break;
    last_of_slot[pgno % kLeafMemoSlots] = count++;
  }
  leaves.resize(count);
  // Pages hashed in full, all together (core/blake2b.h hash_lanes: several
  // pages per vector instruction; docs/performance.md "Multi-lane BLAKE2b for
  // a commit's pages"), with their midstates into their slot when the slot
  // ends with them.
  struct Full {
    size_t index;    // into leaves
    LeafMemo* slot;  // nullptr: the slot is not this page's at the end
    uint32_t pgno;
    const uint8_t* page;
    const uint8_t* hashed;  // page, or for page 1 a copy with the volatile bytes zeroed
  };
  std::vector<Full> full;
  // Page 1 changes in every commit that grows the file (its page count); its
  // leaf hashes a copy with the volatile header bytes zeroed (page_leaf_hash),
  // in lanes with the other pages (page1_: a buffer kept, not one per commit).
  std::array<bool, kLeafMemoSlots> touched{};
  size_t i = 0;
  for (const auto& [pgno, bytes] : pages) {
    if (pgno > page_count) break;
    const size_t index = i++;
    LeafMemo* slot = nullptr;
    if (memo) {
      const size_t s = pgno % kLeafMemoSlots;
      const bool first_of_slot = !touched[s];
      touched[s] = true;
      if (first_of_slot && memo_leaf_hash(pgno, bytes, leaves[index])) continue;
      if (last_of_slot[s] == index) slot = &leaf_memo_[s];
    }
    const uint8_t* hashed = bytes.data();
    if (pgno == 1) {  // copied only when hashed
      normalize_page_into(1, bytes, page1_);
      hashed = page1_.data();
    }
    full.push_back({index, slot, pgno, bytes.data(), hashed});
  }
  if (full.empty()) return leaves;
  // The leaf hashes kLeafPrefix || pgno (5 bytes) || page.
  constexpr size_t kPrefixLen = 5;
  std::vector<std::array<uint8_t, kPrefixLen>> prefixes(full.size());
  std::vector<blake2b256::LaneInput> in(full.size());
  const size_t mids = blake2b256::resumable_blocks(kPrefixLen + page_size) + 1;
  for (size_t k = 0; k < full.size(); ++k) {
    const Full& f = full[k];
    prefixes[k] = {kLeafPrefix, uint8_t(f.pgno >> 24), uint8_t(f.pgno >> 16), uint8_t(f.pgno >> 8),
                   uint8_t(f.pgno)};
    blake2b256::Midstate* mid = nullptr;
    if (f.slot != nullptr) {
      f.slot->pgno = 0;  // empty until its leaf and midstates match its bytes
      f.slot->bytes.assign(f.page, f.page + page_size);
      if (f.pgno == 1) {
        f.slot->mid.clear();  // never resumed (see LeafMemo::mid)
      } else {
        f.slot->mid.resize(mids);
        mid = f.slot->mid.data();
      }
    }
    in[k] = {prefixes[k].data(), f.hashed, mid, leaves[f.index].data()};
  }
  blake2b256::hash_lanes(in, kPrefixLen, page_size);
  for (const Full& f : full) {
    if (f.slot == nullptr) continue;
    f.slot->leaf = leaves[f.index];
    f.slot->pgno = f.pgno;
  }
  return leaves;
}

bool StateTree::memo_leaf_hash(uint32_t pgno, ByteView page, Hash32& leaf) {
  LeafMemo& slot = leaf_memo_[pgno % kLeafMemoSlots];
  const bool same_page = slot.pgno == pgno && slot.bytes.size() == page.size();
  if (same_page && std::memcmp(slot.bytes.data(), page.data(), page.size()) == 0) {
    leaf = slot.leaf;
    return true;
  }
  // Page 1's leaf hashes a copy with the volatile header bytes zeroed: never
  // resumed (see LeafMemo::mid), hashed in full with the commit's other pages.
  if (pgno == 1) return false;
  // The leaf hashes kLeafPrefix || pgno (5 bytes) || page, in 128-byte
  // blocks. The same page number with bytes that differ only from block k
  // on: blocks before k, and so their chaining values, are unchanged
  // (an UPDATE in place, such as every entry's applied_seq, changes a few
  // bytes near the page's end; docs/performance.md "Resumed page hashes").
  const uint8_t prefix[5] = {kLeafPrefix, uint8_t(pgno >> 24), uint8_t(pgno >> 16),
                             uint8_t(pgno >> 8), uint8_t(pgno)};
  const size_t n = sizeof prefix + page.size();
  if (!same_page || slot.mid.size() != blake2b256::resumable_blocks(n) + 1) return false;
  const size_t blocks = blake2b256::resumable_blocks(n);
  size_t from = 0;
  // The first block whose bytes differ (page bytes [128k - 5, 128k + 123)).
  while (from < blocks) {
    const size_t lo = from == 0 ? 0 : 128 * from - sizeof prefix;
    const size_t hi = 128 * (from + 1) - sizeof prefix;
    if (std::memcmp(slot.bytes.data() + lo, page.data() + lo, hi - lo) != 0) break;
    ++from;
  }
  // From block 0 on, the page is new: hashed in full with the others.
  if (from == 0) return false;
  const size_t at = 128 * from - sizeof prefix;  // < page.size()
  std::memcpy(slot.bytes.data() + at, page.data() + at, page.size() - at);
  blake2b256::portable_hash_resumable(prefix, sizeof prefix, page.data(), page.size(), from,
                                      slot.mid.data(), slot.leaf.data());
  leaf = slot.leaf;
  return true;
}

StateTree::StateTree(const StateTree& o)
    : tree_(o.tree_), page_size_(o.page_size_), undo_(o.undo_), applied_(o.applied_) {}

StateTree& StateTree::operator=(const StateTree& o) {
  if (this == &o) return *this;
  tree_ = o.tree_;
  page_size_ = o.page_size_;
  undo_ = o.undo_;
  applied_ = o.applied_;
  journal_.clear();
  journal_leaves_ = 0;
  return *this;
}

std::optional<StateTree::Changes> StateTree::changes_since(uint64_t from) const {
  if (from > applied_ || applied_ - from > journal_.size()) return std::nullopt;
  Changes out;
  const size_t first = journal_.size() - static_cast<size_t>(applied_ - from);
  if (first == journal_.size()) {
    out.old_page_count = page_count();
    return out;
  }
  out.old_page_count = journal_[first].old_page_count;
  std::map<uint32_t, Hash32> merged;
  for (size_t i = first; i < journal_.size(); ++i) {
    if (journal_[i].overflow) return std::nullopt;
    for (const auto& [pgno, leaf] : journal_[i].old_leaves)
      if (pgno <= out.old_page_count) merged.emplace(pgno, leaf);  // the earliest stays
  }
  out.old_leaves.assign(merged.begin(), merged.end());
  return out;
}

void StateTree::undo_last() {
  if (!undo_.valid) return;
  if (!journal_.empty()) {
    journal_leaves_ -= journal_.back().old_leaves.size();
    journal_.pop_back();
  }
  --applied_;
  if (tree_.size() > undo_.old_size) tree_.truncate(undo_.old_size);
  page_size_ = undo_.old_page_size;
  tree_.set_many(undo_.old_leaves);  // increasing indices, as apply() recorded them
  for (const Hash32& leaf : undo_.cut_leaves) tree_.append(leaf);
  undo_ = Undo{};
}

}  // namespace swarmlite
