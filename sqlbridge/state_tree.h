// The state tree (DESIGN.md §3, docs/formats/state-tree.md): a Merkle tree
// (core/merkle.h) over the database's logical pages — the newest copy of each
// page a reader sees after a commit, wherever it sits (WAL or main file).
//   leaf(pgno) = H(0x00 ‖ u32be(pgno) ‖ normalize(page)), leaf index = pgno - 1
// normalize() zeroes page 1's bytes that differ between equal databases:
// 18–19 (file format read/write versions: WAL flag), 24–27 (file change counter),
// 92–99 (version-valid-for number, SQLite version number).
// Updated from a commit's dirty pages only: O(dirty · log pages).
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/merkle.h"
#include "sqlbridge/page_vfs.h"

namespace swarmlite {

inline constexpr uint32_t kPageSize = 4096;

// Copy of `page` with page 1's volatile header bytes zeroed (other pages unchanged).
Bytes normalize_page(uint32_t pgno, ByteView page);
Hash32 page_leaf_hash(uint32_t pgno, ByteView page);

class StateTree {
 public:
  StateTree() = default;

  // Reads every logical page of the database at `db_path` (main file overlaid
  // with committed WAL frames, as a new reader would see it) and builds the tree.
  static Result<StateTree> from_file(const std::filesystem::path& db_path);
  // From explicit pages (1-based, all of them, in order).
  static StateTree from_pages(std::span<const Bytes> pages);

  // Applies one commit: sets the leaves of `pages`, then resizes to `page_count`
  // (cutting or extending; a page beyond the old end must be in `pages`).
  // Remembers what it changed so undo_last() can restore the previous tree.
  Status apply(const PageMap& pages, uint32_t page_count);
  // Restores the tree as it was before the last apply() (once).
  void undo_last();

  Hash32 root() const { return tree_.root(); }
  uint32_t page_count() const { return static_cast<uint32_t>(tree_.size()); }
  const MerkleTree& tree() const { return tree_; }

 private:
  MerkleTree tree_;
  struct Undo {
    uint64_t old_size = 0;
    std::vector<std::pair<uint64_t, Hash32>> old_leaves;  // leaves overwritten (index < old_size)
    bool valid = false;
  } undo_;
};

}  // namespace swarmlite
