// The log tree (leaf = entry_leaf_hash, append-only; docs/formats/merkle.md)
// kept light in memory, for a log that grows for years: the same hashes and
// proofs as MerkleTree over the same leaves, but only the nodes of height >=
// block_bits (one hash per 2^block_bits leaves, plus their parents) and the
// nodes of the last, incomplete block stay in RAM. A node below that height in
// an earlier block is recomputed from the leaf hashes of its block, which the
// caller's reader fetches (core/log reads them from the log store's index rows
// with one pread, docs/formats/log-store.md). With the default block_bits = 6
// that is ≈ 1 byte per leaf instead of MerkleTree's ≈ 64.
//
// Costs: append and root() read nothing and cost what MerkleTree's do (the
// nodes they need are in memory); an inclusion or consistency proof, or
// root_at(n) below size(), reads at most two blocks (the one around the proven
// position and the one around n) and hashes fewer than 2^block_bits leaves per
// block. block_bits trades memory (64 / 2^block_bits bytes per leaf) against
// that proof cost: 6 keeps a proof near 15-30 µs (docs/formats/merkle.md).
//
// Checkpoints (docs/formats/merkle.md "Starting at a checkpoint"): a tree may
// start at leaf `base` instead of 0, given the frontier at base (the roots of the
// maximal aligned complete subtrees covering [0, base), one per set bit of base,
// left to right). Leaves below base are never read; every root_at(n >= base),
// inclusion proof of a leaf >= base and consistency proof from m >= base is
// answered as by the full tree; anything else that needs a node below base that
// is not a frontier node is Errc::not_found ("before the checkpoint").
//
// Thread-safety: like MerkleTree: const members may run concurrently (the
// reader must allow it); append/truncate/forget_before need exclusive access.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite {

class LogTree {
 public:
  // Fills `out` with the leaf hashes [first, first + out.size()). Only asked
  // for leaves of complete blocks that lie before the last one; the leaves of
  // a block are asked for together. Never for leaves below base(): of the block
  // holding base, only [base, block end) is asked for.
  using LeafReader = std::function<Status(uint64_t first, std::span<Hash32> out)>;
  static constexpr int kDefaultBlockBits = 6;

  // block_bits in [1, 16].
  explicit LogTree(LeafReader read_leaves, int block_bits = kDefaultBlockBits);
  // A tree of `base` leaves of which only the frontier at base is known (see
  // above): invalid_argument unless frontier.size() == popcount(base).
  static Result<LogTree> at_checkpoint(LeafReader read_leaves, uint64_t base,
                                       std::span<const Hash32> frontier,
                                       int block_bits = kDefaultBlockBits);
  // The root the frontier at some n folds to (root_at(n)); empty_root() for none.
  static Hash32 fold_frontier(std::span<const Hash32> frontier);

  uint64_t size() const { return size_; }
  // First leaf the tree can prove anything about (0 unless it started at, or
  // was cut to, a checkpoint).
  uint64_t base() const { return base_; }
  // The frontier at n (base() <= n <= size(); popcount(n) hashes, left to right).
  // Reads at most one block.
  Result<std::vector<Hash32>> frontier(uint64_t n) const;
  // Forgets everything below `new_base` (base() <= new_base <= size()) but its
  // frontier, which it computes first (a failed read leaves the tree unchanged):
  // the tree then is the one at_checkpoint(new_base, frontier(new_base)) grown
  // to size(). Frees the nodes below new_base.
  Status forget_before(uint64_t new_base);
  // Appends a leaf hash: amortised two node hashes, no read.
  void append(const Hash32& leaf);
  // Appends leaf hashes in order: the same tree as append() of each, with a
  // block's nodes hashed level by level, several at once in the CPU's SIMD
  // lanes (core/blake2b.h hash_lanes; docs/performance.md "Leaf hashes in
  // lanes"). No read.
  void append_many(std::span<const Hash32> leaves);
  // Keeps the first n leaves (base() <= n <= size). Reads the leaves of the block holding
  // leaf n - 1 back when that block is no longer the one in memory (a failed
  // read leaves the tree unchanged).
  Status truncate(uint64_t n);

  // Root over all leaves; empty_root() when empty. No read.
  Hash32 root() const;
  // Root over the first n leaves (n <= size).
  Result<Hash32> root_at(uint64_t n) const;
  // As MerkleTree::inclusion_proof and MerkleTree::consistency_proof.
  Result<std::vector<Hash32>> inclusion_proof(uint64_t index, uint64_t size) const;
  Result<std::vector<Hash32>> consistency_proof(uint64_t m, uint64_t n) const;

  // Heap bytes this tree holds (vector capacities included): what it costs
  // in RAM (docs/operations.md "Memory").
  size_t memory_bytes() const;

 private:
  struct Blocks;  // the blocks one call has read (at most two)
  // Hash of the RFC-tree node covering [lo, hi) (lo a multiple of
  // bit_ceil(hi - lo), hi <= size()): complete subtrees of height >= bits_
  // from levels_, the lower ones from the leaves (tail_ or a block read).
  Result<Hash32> range_root(uint64_t lo, uint64_t hi, Blocks& blocks) const;
  // The complete subtree of 2^k leaves at `at` (aligned, at + 2^k <= size()).
  Result<Hash32> node(uint64_t at, int k, Blocks& blocks) const;
  // Same, for k < bits_ inside a complete block before the last one.
  Result<Hash32> block_node(uint64_t at, int k, Blocks& blocks) const;
  // The frontier node of base_ at height k starting at `at`, if it is one.
  const Hash32* frontier_node(uint64_t at, int k) const;
  Error before_checkpoint(uint64_t at, int k) const;
  uint64_t tail_start() const { return size_ & ~(block_ - 1); }
  // Index of the first node held at height h (levels_ or tail_, relative to the
  // block start for the tail): nodes below it lie before base_ and are not
  // frontier nodes. Always even, so a node's left sibling is always held.
  uint64_t first_held(int h, uint64_t block_start) const;
  // Empties tail_ for the block starting at `start`; when base_ lies inside it,
  // puts the frontier nodes below bits_ in (the nodes before base_ it needs).
  void init_tail(uint64_t start);
  // Adds a leaf to the last block (which it does not complete).
  void push_tail(const Hash32& leaf);
  // Once the last block's leaves are all in: its root to levels_ and the
  // complete nodes above it; a new, empty tail.
  void complete_block();
  // Levels every tree at base_ has (the frontier's top node lies in the last).
  size_t base_levels() const;
  void add_level();

  LeafReader read_leaves_;
  int bits_;
  uint64_t block_;  // 2^bits_ leaves
  uint64_t size_ = 0;
  uint64_t base_ = 0;
  std::vector<Hash32> frontier_;  // at base_
  // The last, incomplete block as a MerkleTree-like frontier: tail_[k][i] =
  // root of the 2^k leaves from tail_start() + (tail_first_[k] + i) * 2^k
  // (k < bits_); tail_[0] holds its leaves. tail_first_ is 0 but in the block
  // holding base_.
  std::vector<std::vector<Hash32>> tail_;
  std::vector<uint64_t> tail_first_;
  // levels_[k][i] = root of the complete subtree of 2^(bits_+k) leaves starting
  // at leaf (level_first_[k] + i) * 2^(bits_+k);
  // level_first_[k] + levels_[k].size() == size() >> (bits_+k).
  std::vector<std::vector<Hash32>> levels_;
  std::vector<uint64_t> level_first_;
};

}  // namespace swarmlite
