// The log tree, light in memory (core/log_tree.h; docs/formats/merkle.md).
//
// How it is stored: as MerkleTree's levels_, but starting at height bits_: a
// node of 2^k leaves with k >= bits_ is a lookup, one with k < bits_ lies inside
// one block of 2^bits_ leaves and is hashed from that block's leaves. Every
// node of the RFC tree over a prefix splits into complete subtrees whose sizes
// are the set bits of its width, largest first, so only the last few pieces of a
// range are below bits_, and they all lie in the block of the range's last leaf:
// one block per range. For the last, incomplete block (so for root() and
// append) those pieces are lookups in tail_, which keeps that block's nodes.
//
// Proof generation is MerkleTree's walk of the RFC recursion (PATH, SUBPROOF),
// with range_root able to fail (a block read); the unit tests compare both trees
// proof for proof.
#include "core/log_tree.h"

#include <algorithm>
#include <bit>
#include <cassert>

#include "core/hash.h"

namespace swarmlite {

namespace {

// Largest power of two strictly below len (len >= 2): the RFC's split point k.
uint64_t split_point(uint64_t len) {
  assert(len >= 2);
  return std::bit_floor(len - 1);
}

// Root of the complete subtree over `leaves` (a power of two of them), hashed
// in place: `leaves` is overwritten.
Hash32 fold_complete(std::span<Hash32> leaves) {
  assert(std::has_single_bit(leaves.size()));
  for (size_t len = leaves.size(); len > 1; len /= 2) {
    for (size_t i = 0; i < len / 2; ++i) leaves[i] = hash_node(leaves[2 * i], leaves[2 * i + 1]);
  }
  return leaves[0];
}

}  // namespace

struct LogTree::Blocks {
  uint64_t first[2] = {UINT64_MAX, UINT64_MAX};
  std::vector<Hash32> leaves[2];
  int next = 0;  // the slot the next read replaces
  std::vector<Hash32> scratch;
};

LogTree::LogTree(LeafReader read_leaves, int block_bits)
    : read_leaves_(std::move(read_leaves)),
      bits_(block_bits),
      block_(uint64_t{1} << block_bits),
      tail_(static_cast<size_t>(block_bits)) {
  assert(block_bits >= 1 && block_bits <= 16);
  for (size_t k = 0; k < tail_.size(); ++k) tail_[k].reserve(block_ >> k);
}

uint64_t LogTree::size() const {
  return (levels_.empty() ? 0 : levels_[0].size() << bits_) + tail_[0].size();
}

void LogTree::push_tail(const Hash32& leaf) {
  tail_[0].push_back(leaf);
  for (size_t k = 0; k + 1 < tail_.size() && tail_[k].size() % 2 == 0; ++k) {
    const auto& level = tail_[k];
    tail_[k + 1].push_back(hash_node(level[level.size() - 2], level[level.size() - 1]));
  }
}

void LogTree::append(const Hash32& leaf) {
  if (tail_[0].size() + 1 < block_) {
    push_tail(leaf);
    return;
  }
  // The block is complete: keep its root, drop its nodes (the reader has its leaves).
  push_tail(leaf);
  const auto& top = tail_.back();
  assert(top.size() == 2);
  Hash32 node = hash_node(top[0], top[1]);
  for (auto& level : tail_) level.clear();
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(node);
  // A node one level up is complete once its right child (odd index) exists.
  for (size_t k = 0; levels_[k].size() % 2 == 0; ++k) {
    const auto& level = levels_[k];
    Hash32 parent = hash_node(level[level.size() - 2], level[level.size() - 1]);
    if (levels_.size() == k + 1) levels_.emplace_back();
    levels_[k + 1].push_back(parent);
  }
}

Status LogTree::truncate(uint64_t n) {
  assert(n <= size());
  const uint64_t start = n & ~(block_ - 1);
  if (start >= tail_start()) {
    for (size_t k = 0; k < tail_.size(); ++k) tail_[k].resize((n - start) >> k);
  } else {
    std::vector<Hash32> leaves(n - start);
    if (!leaves.empty()) SWL_TRY(read_leaves_(start, leaves));
    for (auto& level : tail_) level.clear();
    for (const Hash32& leaf : leaves) push_tail(leaf);
  }
  for (size_t k = 0; k < levels_.size(); ++k) levels_[k].resize(n >> (bits_ + static_cast<int>(k)));
  while (!levels_.empty() && levels_.back().empty()) levels_.pop_back();
  return {};
}

Result<Hash32> LogTree::range_root(uint64_t lo, uint64_t hi, Blocks& blocks) const {
  assert(lo < hi && hi <= size());
  Hash32 parts[64];
  size_t n = 0;
  for (uint64_t at = lo, rest = hi - lo; rest != 0;) {
    const uint64_t chunk = std::bit_floor(rest);
    const int k = std::countr_zero(chunk);
    assert(at % chunk == 0);
    if (k >= bits_) {
      parts[n++] = levels_[static_cast<size_t>(k - bits_)][at >> k];
    } else {
      // Inside one block: a node of tail_, or hashed from the leaves of a
      // complete block the reader holds.
      if (at >= tail_start()) {
        parts[n++] = tail_[static_cast<size_t>(k)][(at - tail_start()) >> k];
      } else {
        const uint64_t first = at & ~(block_ - 1);
        int slot = blocks.first[0] == first ? 0 : blocks.first[1] == first ? 1 : -1;
        if (slot < 0) {
          slot = blocks.next;
          blocks.next ^= 1;
          blocks.first[slot] = UINT64_MAX;
          blocks.leaves[slot].resize(block_);
          SWL_TRY(read_leaves_(first, blocks.leaves[slot]));
          blocks.first[slot] = first;
        }
        const Hash32* leaves = blocks.leaves[static_cast<size_t>(slot)].data() + (at - first);
        blocks.scratch.assign(leaves, leaves + chunk);
        parts[n++] = fold_complete(blocks.scratch);
      }
    }
    at += chunk;
    rest -= chunk;
  }
  Hash32 h = parts[n - 1];
  for (size_t i = n - 1; i-- > 0;) h = hash_node(parts[i], h);
  return h;
}

Hash32 LogTree::root() const {
  if (size() == 0) return empty_root();
  // Every piece below bits_ of [0, size()) is a node of tail_: nothing is read.
  Blocks blocks;
  auto r = range_root(0, size(), blocks);
  assert(r.ok());
  return std::move(r).value();
}

Result<Hash32> LogTree::root_at(uint64_t n) const {
  if (n > size()) {
    return make_error(Errc::invalid_argument, "root_at({}) over a log tree of {} leaves", n,
                      size());
  }
  if (n == 0) return empty_root();
  Blocks blocks;
  return range_root(0, n, blocks);
}

Result<std::vector<Hash32>> LogTree::inclusion_proof(uint64_t index, uint64_t size) const {
  if (size > this->size() || index >= size) {
    return make_error(Errc::invalid_argument,
                      "inclusion proof for leaf {} of {} requested from a log tree of {} leaves",
                      index, size, this->size());
  }
  // PATH(m, D[n]) (RFC 9162 §2.1.3.1), collected root-side first.
  Blocks blocks;
  std::vector<Hash32> path;
  uint64_t lo = 0, hi = size;
  while (hi - lo > 1) {
    uint64_t mid = lo + split_point(hi - lo);
    if (index < mid) {
      SWL_ASSIGN(Hash32 h, range_root(mid, hi, blocks));
      path.push_back(h);
      hi = mid;
    } else {
      SWL_ASSIGN(Hash32 h, range_root(lo, mid, blocks));
      path.push_back(h);
      lo = mid;
    }
  }
  std::reverse(path.begin(), path.end());
  return path;
}

Result<std::vector<Hash32>> LogTree::consistency_proof(uint64_t m, uint64_t n) const {
  if (m > n || n > size()) {
    return make_error(Errc::invalid_argument,
                      "consistency proof from {} to {} requested from a log tree of {} leaves", m,
                      n, size());
  }
  std::vector<Hash32> path;
  if (m == 0 || m == n) return path;
  // SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1), collected root-side first;
  // `m` is relative to lo, `whole` is the RFC's flag b.
  Blocks blocks;
  uint64_t lo = 0, hi = n;
  bool whole = true;
  while (m != hi - lo) {
    uint64_t k = split_point(hi - lo);
    if (m <= k) {
      SWL_ASSIGN(Hash32 h, range_root(lo + k, hi, blocks));
      path.push_back(h);
      hi = lo + k;
    } else {
      SWL_ASSIGN(Hash32 h, range_root(lo, lo + k, blocks));
      path.push_back(h);
      lo += k;
      m -= k;
      whole = false;
    }
  }
  if (!whole) {
    SWL_ASSIGN(Hash32 h, range_root(lo, hi, blocks));
    path.push_back(h);
  }
  std::reverse(path.begin(), path.end());
  return path;
}

size_t LogTree::memory_bytes() const {
  size_t bytes = (tail_.capacity() + levels_.capacity()) * sizeof(levels_[0]);
  for (const auto& level : tail_) bytes += level.capacity() * sizeof(Hash32);
  for (const auto& level : levels_) bytes += level.capacity() * sizeof(Hash32);
  return bytes;
}

}  // namespace swarmlite
