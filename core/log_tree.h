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
// Thread-safety: like MerkleTree: const members may run concurrently (the
// reader must allow it); append/truncate need exclusive access.
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
  // a block are asked for together.
  using LeafReader = std::function<Status(uint64_t first, std::span<Hash32> out)>;
  static constexpr int kDefaultBlockBits = 6;

  // block_bits in [1, 16].
  explicit LogTree(LeafReader read_leaves, int block_bits = kDefaultBlockBits);

  uint64_t size() const;
  // Appends a leaf hash: amortised two node hashes, no read.
  void append(const Hash32& leaf);
  // Keeps the first n leaves (n <= size). Reads the leaves of the block holding
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
  uint64_t tail_start() const { return size() - tail_[0].size(); }
  // Adds a leaf to the last block (which it does not complete).
  void push_tail(const Hash32& leaf);

  LeafReader read_leaves_;
  int bits_;
  uint64_t block_;  // 2^bits_ leaves
  // The last, incomplete block as a MerkleTree-like frontier: tail_[k][i] =
  // root of the 2^k leaves from tail_start() + i * 2^k (k < bits_); tail_[0]
  // holds its leaves (fewer than block_).
  std::vector<std::vector<Hash32>> tail_;
  // levels_[k][i] = root of the complete subtree of 2^(bits_+k) leaves starting
  // at leaf i * 2^(bits_+k); levels_[k].size() == size() >> (bits_+k).
  std::vector<std::vector<Hash32>> levels_;
};

}  // namespace swarmlite
