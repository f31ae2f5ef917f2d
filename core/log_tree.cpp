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

#include "core/blake2b.h"
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
      tail_(static_cast<size_t>(block_bits)),
      tail_first_(static_cast<size_t>(block_bits), 0) {
  assert(block_bits >= 1 && block_bits <= 16);
  for (size_t k = 0; k < tail_.size(); ++k) tail_[k].reserve(block_ >> k);
}

Result<LogTree> LogTree::at_checkpoint(LeafReader read_leaves, uint64_t base,
                                       std::span<const Hash32> frontier, int block_bits) {
  if (frontier.size() != static_cast<size_t>(std::popcount(base))) {
    return make_error(Errc::invalid_argument,
                      "a checkpoint at {} needs a frontier of {} hashes (one per set bit), got {}",
                      base, std::popcount(base), frontier.size());
  }
  LogTree tree(std::move(read_leaves), block_bits);
  tree.size_ = base;
  tree.base_ = base;
  tree.frontier_.assign(frontier.begin(), frontier.end());
  while (tree.levels_.size() < tree.base_levels()) tree.add_level();
  tree.init_tail(tree.tail_start());
  return tree;
}

Hash32 LogTree::fold_frontier(std::span<const Hash32> frontier) {
  if (frontier.empty()) return empty_root();
  Hash32 h = frontier.back();
  for (size_t i = frontier.size() - 1; i-- > 0;) h = hash_node(frontier[i], h);
  return h;
}

uint64_t LogTree::first_held(int h, uint64_t block_start) const {
  // Nodes at height h before index base_ >> h end at or before base_; of them
  // only the frontier node (index (base_ >> h) - 1, when bit h of base_ is set)
  // is held. (x & ~1) is that index when the bit is set, else base_ >> h.
  if (base_ <= block_start) return 0;
  return ((base_ - block_start) >> h) & ~uint64_t{1};
}

const Hash32* LogTree::frontier_node(uint64_t at, int k) const {
  if (k >= 64 || ((base_ >> k) & 1) == 0 || at != (((base_ >> k) - 1) << k)) return nullptr;
  // Frontier nodes are ordered largest first: count the set bits above k.
  const int i = k + 1 >= 64 ? 0 : std::popcount(base_ >> (k + 1));
  return &frontier_[static_cast<size_t>(i)];
}

Error LogTree::before_checkpoint(uint64_t at, int k) const {
  return make_error(Errc::not_found,
                    "log tree node over leaves [{}, {}) lies before the checkpoint at {}: the "
                    "leaves below {} were compacted away",
                    at, at + (uint64_t{1} << k), base_, base_);
}

size_t LogTree::base_levels() const {
  const uint64_t top = base_ >> bits_;
  return top == 0 ? 0 : static_cast<size_t>(std::bit_width(top));
}

void LogTree::add_level() {
  const int h = bits_ + static_cast<int>(levels_.size());
  levels_.emplace_back();
  level_first_.push_back(first_held(h, 0));
  if (const Hash32* f = frontier_node(((base_ >> h) - 1) << h, h); f && base_ >> h != 0) {
    levels_.back().push_back(*f);
  }
}

void LogTree::init_tail(uint64_t start) {
  for (size_t k = 0; k < tail_.size(); ++k) {
    tail_[k].clear();
    tail_first_[k] = first_held(static_cast<int>(k), start);
    if (start < base_) {
      const Hash32* f = frontier_node(((base_ >> k) - 1) << k, static_cast<int>(k));
      if (f) tail_[k].push_back(*f);
    }
  }
}

void LogTree::push_tail(const Hash32& leaf) {
  tail_[0].push_back(leaf);
  for (size_t k = 0; k + 1 < tail_.size() && (tail_first_[k] + tail_[k].size()) % 2 == 0; ++k) {
    const auto& level = tail_[k];
    assert(level.size() >= 2);
    tail_[k + 1].push_back(hash_node(level[level.size() - 2], level[level.size() - 1]));
  }
}

void LogTree::append(const Hash32& leaf) {
  ++size_;
  push_tail(leaf);
  if ((size_ & (block_ - 1)) == 0) complete_block();
}

void LogTree::append_many(std::span<const Hash32> leaves) {
  if (leaves.size() < 4) {  // too few pairs per level for lanes to pay
    for (const Hash32& leaf : leaves) append(leaf);
    return;
  }
  static constexpr uint8_t kPrefix[1] = {kNodePrefix};
  thread_local std::vector<blake2b256::LaneInput> in;
  size_t i = 0;
  while (i < leaves.size()) {
    // The leaves up to the end of the last block, then that block's new
    // nodes level by level: at each level, the pairs whose right child is new
    // (an odd index counted from the block's start, as push_tail pairs them).
    const size_t take =
        static_cast<size_t>(std::min<uint64_t>(leaves.size() - i, block_ - (size_ & (block_ - 1))));
    size_t from = tail_[0].size();
    tail_[0].insert(tail_[0].end(), leaves.begin() + static_cast<ptrdiff_t>(i),
                    leaves.begin() + static_cast<ptrdiff_t>(i + take));
    size_ += take;
    i += take;
    for (size_t k = 0; k + 1 < tail_.size(); ++k) {
      std::vector<Hash32>& level = tail_[k];
      std::vector<Hash32>& above = tail_[k + 1];
      const size_t above_from = above.size();
      size_t j = from;                         // first new node of this level
      if ((tail_first_[k] + j) % 2 == 0) ++j;  // a left child: its pair is not new
      in.clear();
      for (; j < level.size(); j += 2)
        in.push_back({kPrefix, level[j - 1].data(), nullptr, nullptr});
      above.resize(above_from + in.size());
      // hash_node(left, right) = BLAKE2b(kNodePrefix || left || right); the
      // two children are adjacent in `level`.
      for (size_t p = 0; p < in.size(); ++p) in[p].out = above[above_from + p].data();
      blake2b256::hash_lanes(in, sizeof kPrefix, 2 * sizeof(Hash32));
      from = above_from;
    }
    if ((size_ & (block_ - 1)) == 0) complete_block();
  }
}

void LogTree::complete_block() {
  // The block is complete: keep its root, drop its nodes (the reader has its leaves).
  const auto& top = tail_.back();
  assert(top.size() == 2);
  Hash32 node = hash_node(top[0], top[1]);
  init_tail(size_);
  if (levels_.empty()) add_level();
  levels_[0].push_back(node);
  // A node one level up is complete once its right child (odd index) exists.
  for (size_t k = 0; (level_first_[k] + levels_[k].size()) % 2 == 0; ++k) {
    const auto& level = levels_[k];
    assert(level.size() >= 2);
    Hash32 parent = hash_node(level[level.size() - 2], level[level.size() - 1]);
    if (levels_.size() == k + 1) add_level();
    levels_[k + 1].push_back(parent);
  }
}

Status LogTree::truncate(uint64_t n) {
  assert(n <= size());
  if (n < base_) {
    return make_error(
        Errc::invalid_argument,
        "cannot cut the log tree back to {} leaves: it starts at the checkpoint at {}", n, base_);
  }
  const uint64_t start = n & ~(block_ - 1);
  if (start >= tail_start()) {
    for (size_t k = 0; k < tail_.size(); ++k) {
      tail_[k].resize(((n - start) >> k) - tail_first_[k]);
    }
  } else {
    const uint64_t from = std::max(start, base_);
    std::vector<Hash32> leaves(n - from);
    if (!leaves.empty()) SWL_TRY(read_leaves_(from, leaves));
    init_tail(start);
    for (const Hash32& leaf : leaves) push_tail(leaf);
  }
  for (size_t k = 0; k < levels_.size(); ++k) {
    levels_[k].resize((n >> (bits_ + static_cast<int>(k))) - level_first_[k]);
  }
  while (levels_.size() > base_levels() && levels_.back().empty()) {
    levels_.pop_back();
    level_first_.pop_back();
  }
  size_ = n;
  return {};
}

Result<Hash32> LogTree::block_node(uint64_t at, int k, Blocks& blocks) const {
  const uint64_t end = at + (uint64_t{1} << k);
  if (end <= base_) {
    if (const Hash32* f = frontier_node(at, k)) return *f;
    return before_checkpoint(at, k);
  }
  if (at < base_) {
    // Straddles base_: its left part is made of frontier nodes (k > 0 here).
    SWL_ASSIGN(Hash32 left, block_node(at, k - 1, blocks));
    SWL_ASSIGN(Hash32 right, block_node(at + (end - at) / 2, k - 1, blocks));
    return hash_node(left, right);
  }
  const uint64_t first = at & ~(block_ - 1);
  int slot = blocks.first[0] == first ? 0 : blocks.first[1] == first ? 1 : -1;
  if (slot < 0) {
    slot = blocks.next;
    blocks.next ^= 1;
    blocks.first[slot] = UINT64_MAX;
    blocks.leaves[slot].resize(block_);
    // Of the block holding base_, only the leaves from base_ exist.
    const uint64_t from = std::max(first, base_);
    SWL_TRY(read_leaves_(from, std::span<Hash32>(blocks.leaves[slot]).subspan(from - first)));
    blocks.first[slot] = first;
  }
  const Hash32* leaves = blocks.leaves[static_cast<size_t>(slot)].data() + (at - first);
  blocks.scratch.assign(leaves, end - at + leaves);
  return fold_complete(blocks.scratch);
}

Result<Hash32> LogTree::node(uint64_t at, int k, Blocks& blocks) const {
  assert(at % (uint64_t{1} << k) == 0 && at + (uint64_t{1} << k) <= size_);
  if (k >= bits_) {
    const size_t level = static_cast<size_t>(k - bits_);
    const uint64_t i = at >> k;
    if (level < levels_.size() && i >= level_first_[level]) {
      return levels_[level][i - level_first_[level]];
    }
    return before_checkpoint(at, k);
  }
  if (at >= tail_start()) {
    // A node of tail_ (a node straddling base_ is there: it was hashed on append).
    const uint64_t i = (at - tail_start()) >> k;
    const size_t kk = static_cast<size_t>(k);
    if (i >= tail_first_[kk]) return tail_[kk][i - tail_first_[kk]];
    return before_checkpoint(at, k);
  }
  return block_node(at, k, blocks);
}

Result<Hash32> LogTree::range_root(uint64_t lo, uint64_t hi, Blocks& blocks) const {
  assert(lo < hi && hi <= size());
  Hash32 parts[64];
  size_t n = 0;
  for (uint64_t at = lo, rest = hi - lo; rest != 0;) {
    const uint64_t chunk = std::bit_floor(rest);
    assert(at % chunk == 0);
    SWL_ASSIGN(parts[n], node(at, std::countr_zero(chunk), blocks));
    ++n;
    at += chunk;
    rest -= chunk;
  }
  Hash32 h = parts[n - 1];
  for (size_t i = n - 1; i-- > 0;) h = hash_node(parts[i], h);
  return h;
}

Result<std::vector<Hash32>> LogTree::frontier(uint64_t n) const {
  if (n > size_ || n < base_) {
    return make_error(Errc::invalid_argument,
                      "frontier at {} asked of a log tree of {} leaves starting at {}", n, size_,
                      base_);
  }
  Blocks blocks;
  std::vector<Hash32> out;
  for (uint64_t at = 0, rest = n; rest != 0;) {
    const uint64_t chunk = std::bit_floor(rest);
    SWL_ASSIGN(Hash32 h, node(at, std::countr_zero(chunk), blocks));
    out.push_back(h);
    at += chunk;
    rest -= chunk;
  }
  return out;
}

Status LogTree::forget_before(uint64_t new_base) {
  if (new_base < base_ || new_base > size_) {
    return make_error(Errc::invalid_argument,
                      "cannot move the checkpoint of a log tree of {} leaves from {} to {}", size_,
                      base_, new_base);
  }
  SWL_ASSIGN(std::vector<Hash32> fr, frontier(new_base));
  base_ = new_base;
  frontier_ = std::move(fr);
  while (levels_.size() < base_levels()) add_level();
  for (size_t k = 0; k < levels_.size(); ++k) {
    const uint64_t first = first_held(bits_ + static_cast<int>(k), 0);
    auto& level = levels_[k];
    level.erase(level.begin(), level.begin() + static_cast<ptrdiff_t>(first - level_first_[k]));
    level.shrink_to_fit();
    level_first_[k] = first;
  }
  const uint64_t start = tail_start();
  for (size_t k = 0; k < tail_.size(); ++k) {
    const uint64_t first = first_held(static_cast<int>(k), start);
    auto& level = tail_[k];
    level.erase(level.begin(), level.begin() + static_cast<ptrdiff_t>(first - tail_first_[k]));
    tail_first_[k] = first;
  }
  return {};
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
  size_t bytes = (tail_.capacity() + levels_.capacity()) * sizeof(levels_[0]) +
                 frontier_.capacity() * sizeof(Hash32) +
                 (tail_first_.capacity() + level_first_.capacity()) * sizeof(uint64_t);
  for (const auto& level : tail_) bytes += level.capacity() * sizeof(Hash32);
  for (const auto& level : levels_) bytes += level.capacity() * sizeof(Hash32);
  return bytes;
}

}  // namespace swarmlite
