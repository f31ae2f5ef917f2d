// The state tree (docs/formats/state-tree.md): a Merkle tree
// (core/merkle.h) over the database's logical pages — the newest copy of each
// page a reader sees after a commit, wherever it sits (WAL or main file).
//   leaf(pgno) = H(0x00 ‖ u32be(pgno) ‖ normalize(page)), leaf index = pgno - 1
// normalize() zeroes page 1's bytes that differ between equal databases:
// 18–19 (file format read/write versions: WAL flag), 24–27 (file change counter),
// 92–99 (version-valid-for number, SQLite version number).
// SQLite's lock-byte page (the page at byte offset 1 GiB, which SQLite never
// reads or writes) has a fixed leaf: that of an all-zero page.
// Updated from a commit's dirty pages only: O(dirty · log pages).
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <vector>

#include "core/blake2b.h"
#include "core/file_io.h"
#include "core/merkle.h"
#include "sqlbridge/engine/page_vfs.h"

namespace swarmlite {

inline constexpr uint32_t kPageSize = 4096;

// Copy of `page` with page 1's volatile header bytes zeroed (other pages unchanged).
Bytes normalize_page(uint32_t pgno, ByteView page);
// The same into `out` (its capacity reused).
void normalize_page_into(uint32_t pgno, ByteView page, Bytes& out);
// H(0x00 ‖ u32be(pgno) ‖ normalize_page(pgno, page)), hashed without copying the page.
Hash32 page_leaf_hash(uint32_t pgno, ByteView page);
// A leaf to compute: *out = page_leaf_hash(pgno, page).
struct PageLeafJob {
  uint32_t pgno;
  ByteView page;
  Hash32* out;
};
// Every job's leaf; the pages other than page 1 with the size of the first
// of them hashed together (core/blake2b.h hash_lanes, several pages per
// vector instruction), for code that checks many pages at once.
void page_leaf_hashes(std::span<const PageLeafJob> jobs);

// SQLite's PENDING_BYTE: the file offset (1 GiB) of the locks SQLite's VFS takes.
inline constexpr uint32_t kSqlitePendingByte = 0x40000000;
// The lock-byte page (docs/formats/state-tree.md, "The lock-byte page"): the page
// holding the pending byte, pending_byte / page_size + 1 (262145 for 4096-byte
// pages). SQLite never reads or writes it, never allocates it, yet counts it in
// the database size: a database of more pages has it as a gap in its pages.
// In the state tree its leaf is always lock_byte_leaf(page_size), whatever
// bytes the files hold there. 0 when page_size is 0.
uint32_t lock_byte_page(uint32_t page_size);
// page_leaf_hash(lock_byte_page(page_size), page_size zero bytes).
Hash32 lock_byte_leaf(uint32_t page_size);
// Tests only: moves the pending byte (ours and SQLite's, through
// sqlite3_test_control(SQLITE_TESTCTRL_PENDING_BYTE)) so a test crosses the
// lock-byte page with a small database; returns the previous value. No SQLite
// connection may be open while it changes. Production never calls it.
Result<uint32_t> set_pending_byte_for_testing(uint32_t pending_byte);

// The logical pages of a database as a new reader would see them: the main
// file overlaid with the committed frames of its -wal file (parsed as SQLite's
// recovery does: header magic and checksum, salts, cumulative frame checksums,
// up to the last valid commit frame). Never writes, never checkpoints.
// page_count = the last valid commit frame's database size, else the main
// file's size in pages (rounded up); page_size from the main file's header (or
// the WAL header when the main file is empty); both must agree when both exist.
// Pages past the end of both files read as zeros (as SQLite reads them), and so
// does the lock-byte page, whatever the files hold there.
// Move-only: owns the open files. Not thread-safe.
class LogicalPages {
 public:
  static Result<LogicalPages> open(const std::filesystem::path& db_path);
  LogicalPages(LogicalPages&& other) noexcept = default;
  LogicalPages& operator=(LogicalPages&& other) noexcept = default;
  LogicalPages(const LogicalPages&) = delete;
  LogicalPages& operator=(const LogicalPages&) = delete;
  ~LogicalPages() = default;

  uint32_t page_size() const { return page_size_; }
  uint32_t page_count() const { return page_count_; }
  // Frames of the -wal file accepted as committed (0 without a WAL).
  uint32_t committed_frames() const { return committed_frames_; }
  // Reads page `pgno` (1..page_count) into `out` (resized to page_size).
  Status read(uint32_t pgno, Bytes& out) const;

 private:
  LogicalPages() = default;
  std::filesystem::path path_;
  file_io::Fd db_fd_;
  file_io::Fd wal_fd_;
  uint32_t page_size_ = 0;
  uint32_t page_count_ = 0;
  uint32_t committed_frames_ = 0;
  int64_t db_size_ = 0;
  // pgno -> file offset of the data of the page's newest committed WAL frame.
  std::map<uint32_t, int64_t> wal_page_offset_;
};

// Every logical page, 1-based pgno at index pgno - 1 (see LogicalPages).
Result<std::vector<Bytes>> read_logical_pages(const std::filesystem::path& db_path);

class StateTree {
 public:
  StateTree() = default;
  // A copy (a pin's snapshot) has the tree and the undo step but an empty
  // change journal: only the applier's tree answers changes_since().
  StateTree(const StateTree& o);
  StateTree& operator=(const StateTree& o);
  StateTree(StateTree&&) noexcept = default;
  StateTree& operator=(StateTree&&) noexcept = default;

  // Reads every logical page of the database at `db_path` (main file overlaid
  // with committed WAL frames, as a new reader would see it) and builds the tree.
  static Result<StateTree> from_file(const std::filesystem::path& db_path);
  // From explicit pages (1-based, all of them, in order, each as many bytes as
  // the first). The bytes at the lock-byte page's place are not looked at.
  static StateTree from_pages(std::span<const Bytes> pages);

  // Applies one commit: sets the leaves of `pages`, then resizes to `page_count`
  // (cutting or extending; a page beyond the old end must be in `pages`, except
  // the lock-byte page, which SQLite never writes and gets its fixed leaf).
  // Pages numbered above page_count are ignored. On error (pgno 0, a missing
  // new page, pages of different or invalid sizes, a page size other than the
  // tree's, the lock-byte page written) nothing changes. Remembers what it
  // changed so undo_last() can restore the previous tree.
  // O(|pages| log n + pages cut).
  Status apply(const PageMap& pages, uint32_t page_count);
  // Restores the tree as it was before the last apply() (once).
  void undo_last();

  Hash32 root() const { return tree_.root(); }
  uint32_t page_count() const { return static_cast<uint32_t>(tree_.size()); }
  const MerkleTree& tree() const { return tree_; }
  // Bytes per page; 0 until the tree has seen a page.
  uint32_t page_size() const { return page_size_; }

  // The change journal (docs/formats/state-tree.md "Change journal"): per
  // apply(), the leaf before it of every page it set or cut that existed
  // before it, so a node can prove which pages changed since an older head
  // (PinSlot::changes: Replica's, Primary's pinned_changes; page_set.h ChangeSet).
  // Bounded: the newest kJournalMaxApplies applies and kJournalMaxLeaves leaves in all (older
  // records are dropped; one apply over the leaf cap is kept as "too many").
  static constexpr size_t kJournalMaxApplies = 4096;
  static constexpr size_t kJournalMaxLeaves = size_t{1} << 16;
  struct Changes {
    uint32_t old_page_count = 0;  // the page count at the start
    // pgno (<= old_page_count) -> its leaf at the start, increasing pgno:
    // every page set or cut since (a superset of the pages that differ).
    std::vector<std::pair<uint32_t, Hash32>> old_leaves;
  };
  // apply() calls so far (undo_last() takes one back); a copy keeps the count.
  uint64_t applied() const { return applied_; }
  // The changes of applies (from, applied()], merged (a page's earliest old
  // leaf wins). nullopt when the journal no longer reaches back to `from`, or
  // an apply in between changed more than kJournalMaxLeaves pages.
  std::optional<Changes> changes_since(uint64_t from) const;

 private:
  MerkleTree tree_;
  uint32_t page_size_ = 0;
  struct Undo {
    uint64_t old_size = 0;
    uint32_t old_page_size = 0;
    std::vector<std::pair<uint64_t, Hash32>> old_leaves;  // leaves overwritten (index < old_size)
    std::vector<Hash32> cut_leaves;  // leaves [new size, old_size) cut off by a shrink
    bool valid = false;
  } undo_;
  struct JournalRecord {
    uint32_t old_page_count = 0;
    bool overflow = false;  // changed more than kJournalMaxLeaves pages: not kept
    std::vector<std::pair<uint32_t, Hash32>> old_leaves;
  };
  uint64_t applied_ = 0;
  std::deque<JournalRecord> journal_;  // applies (applied_ - journal_.size(), applied_]
  size_t journal_leaves_ = 0;
  // page_leaf_hash() remembered per page-number slot: the last bytes apply()
  // hashed for a page number and their leaf. SQLite writes every page a
  // transaction dirtied, changed or not (a rolled-back savepoint's pages
  // too), so a commit often carries a page with the bytes it already had;
  // the slot then gives its leaf without hashing it again. A cache of a pure
  // function: it never changes a result (docs/performance.md "Unchanged
  // pages"). Not copied with the tree.
  struct LeafMemo {
    uint32_t pgno = 0;  // 0: empty
    Bytes bytes;
    Hash32 leaf{};
    // The leaf hash's chaining values (core/blake2b.h), so a page changed
    // only from some offset on is hashed again from there; empty for page 1
    // (its leaf hashes a copy with the volatile header bytes zeroed).
    std::vector<blake2b256::Midstate> mid;
  };
  static constexpr size_t kLeafMemoSlots = 16;
  std::vector<LeafMemo> leaf_memo_;
  Bytes page1_;  // commit_leaves' normalised copy of page 1, kept for its capacity
  // The leaves of the commit's pages numbered up to page_count, in page
  // order: from the memo where it has them (or resumes them), the others
  // hashed together (core/blake2b.h hash_lanes). The memo ends as if the
  // pages had gone through it one by one.
  std::vector<Hash32> commit_leaves(const PageMap& pages, uint32_t page_count);
  // From the memo slot of pgno (pages up to 8 KiB): the leaf when the slot
  // holds these bytes, or the same page number changed from block 1 on
  // (resumed, never page 1); false, slot untouched, when the page must be
  // hashed in full.
  bool memo_leaf_hash(uint32_t pgno, ByteView page, Hash32& leaf);
};

}  // namespace swarmlite
