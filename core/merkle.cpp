// Merkle trees of RFC 9162 shape (docs/formats/merkle.md).
//
// How the tree is stored: levels_[k][i] is the hash of the complete subtree of
// 2^k leaves starting at leaf i*2^k, so levels_[k].size() == size >> k. Every
// node of the RFC tree over the first n leaves covers a range [lo, hi) with lo
// a multiple of bit_ceil(hi - lo); such a range splits into complete subtrees
// whose sizes are the set bits of hi - lo, largest first, each one a lookup in
// levels_. Folding them right to left gives the node hash: O(log n) hashes for
// any node, root or historical root — leaves before n never change in the log,
// so root_at(n) needs nothing but levels_.
//
// Proof generation walks the RFC recursion (PATH, SUBPROOF) top-down and
// reverses; verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 step by step,
// after checking the proof length against the exact length its parameters need
// (so errors say "has 3 hashes, expected 4" rather than a bare mismatch).
#include "core/merkle.h"

#include <algorithm>
#include <bit>
#include <cassert>

#include "core/blake2b.h"
#include "core/hash.h"

namespace swarmlite {

namespace {

constexpr uint8_t kProofVersion = 1;

// Largest power of two strictly below len (len >= 2): the RFC's split point k.
uint64_t split_point(uint64_t len) {
  assert(len >= 2);
  return std::bit_floor(len - 1);
}

std::string short_hex(const Hash32& h) { return to_hex(ByteView(h.data(), 8)) + "…"; }

// Walks the RFC tree over [lo, hi) restricted to the sorted `indices` (all in
// [lo, hi)), top-down and left to right. A subtree holding no index is reported
// to v.absent(lo, hi) and not entered; a single leaf to v.leaf(position in
// indices); inner nodes combine their children with v.node(left, right).
// This is the one definition of the multiproof order (docs/formats/merkle.md).
template <class Visitor>
auto walk_multiproof(uint64_t lo, uint64_t hi, std::span<const uint64_t> indices, size_t first,
                     Visitor& v) -> typename Visitor::Value {
  if (indices.empty()) return v.absent(lo, hi);
  if (hi - lo == 1) return v.leaf(first);
  uint64_t mid = lo + split_point(hi - lo);
  auto cut = std::lower_bound(indices.begin(), indices.end(), mid);
  size_t n_left = static_cast<size_t>(cut - indices.begin());
  auto left = walk_multiproof(lo, mid, indices.first(n_left), first, v);
  auto right = walk_multiproof(mid, hi, indices.subspan(n_left), first + n_left, v);
  return v.node(std::move(left), std::move(right));
}

struct CountVisitor {
  using Value = size_t;
  size_t absent(uint64_t, uint64_t) { return 1; }
  size_t leaf(size_t) { return 0; }
  size_t node(size_t l, size_t r) { return l + r; }
};

// The loop shared by RFC 9162 §2.1.3.2 step 4 and §2.1.4.2 step 6: fn is the
// node's index and sn the last index at the current level. Each path hash is a
// sibling on the left (on_left) or on the right (on_right) of the running hash.
// Returns false when a hash is left after the root is reached or the path ends
// below the root (sn != 0) — both impossible for a proof of the exact length.
template <class OnLeft, class OnRight>
bool fold_path(uint64_t fn, uint64_t sn, std::span<const Hash32> path, OnLeft on_left,
               OnRight on_right) {
  for (const Hash32& c : path) {
    if (sn == 0) return false;
    if ((fn & 1) != 0 || fn == sn) {
      on_left(c);
      while ((fn & 1) == 0 && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      on_right(c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0;
}

Status check_indices(std::span<const uint64_t> indices, uint64_t size) {
  if (indices.empty()) {
    return make_error(Errc::proof_failed, "multiproof over a tree of {} leaves names no leaf",
                      size);
  }
  for (size_t i = 0; i < indices.size(); ++i) {
    if (i > 0 && indices[i] <= indices[i - 1]) {
      return make_error(Errc::proof_failed,
                        "multiproof leaf indices are not strictly increasing: index {} at "
                        "position {} follows {}",
                        indices[i], i, indices[i - 1]);
    }
    if (indices[i] >= size) {
      return make_error(Errc::proof_failed,
                        "multiproof leaf index {} at position {} is not below tree size {}",
                        indices[i], i, size);
    }
  }
  return {};
}

}  // namespace

// --- MerkleTree --------------------------------------------------------------

uint64_t MerkleTree::size() const { return levels_.empty() ? 0 : levels_[0].size(); }

const Hash32& MerkleTree::leaf(uint64_t index) const {
  assert(index < size());
  return levels_[0][index];
}

void MerkleTree::append(const Hash32& leaf) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(leaf);
  // A node at level k+1 is complete once its right child (odd index) exists.
  for (size_t k = 0; levels_[k].size() % 2 == 0; ++k) {
    const auto& level = levels_[k];
    Hash32 parent = hash_node(level[level.size() - 2], level[level.size() - 1]);
    if (levels_.size() == k + 1) levels_.emplace_back();
    levels_[k + 1].push_back(parent);
  }
}

void MerkleTree::set(uint64_t index, const Hash32& leaf) {
  assert(index < size());
  if (levels_[0][index] == leaf) return;  // no node above it changes
  levels_[0][index] = leaf;
  uint64_t i = index;
  for (size_t k = 0; k + 1 < levels_.size() && (i >> 1) < levels_[k + 1].size(); ++k, i >>= 1) {
    uint64_t left = i & ~uint64_t{1};
    levels_[k + 1][i >> 1] = hash_node(levels_[k][left], levels_[k][left + 1]);
  }
}

void MerkleTree::set_many(std::span<const std::pair<uint64_t, Hash32>> updates) {
  // dirty: the nodes of the level above to rehash, increasing and each once
  // (the parents of increasing indices never decrease).
  std::vector<uint64_t> dirty;
  dirty.reserve(updates.size());
  for (size_t u = 0; u < updates.size(); ++u) {
    const auto& [index, leaf] = updates[u];
    assert(index < size());
    assert(u == 0 || updates[u - 1].first < index);
    if (levels_[0][index] == leaf) continue;  // no node above it changes
    levels_[0][index] = leaf;
    if (dirty.empty() || dirty.back() != index >> 1) dirty.push_back(index >> 1);
  }
  static constexpr uint8_t kPrefix[1] = {kNodePrefix};
  std::vector<blake2b256::LaneInput> in;
  in.reserve(dirty.size());
  for (size_t k = 0; k + 1 < levels_.size() && !dirty.empty(); ++k) {
    std::vector<Hash32>& above = levels_[k + 1];
    // A parent past the level's end covers an incomplete range: not stored,
    // and neither is any node above it.
    while (!dirty.empty() && dirty.back() >= above.size()) dirty.pop_back();
    in.clear();
    // hash_node(left, right) = BLAKE2b(kNodePrefix || left || right); the two
    // children are adjacent in levels_[k].
    for (uint64_t i : dirty) {
      in.push_back({kPrefix, levels_[k][2 * i].data(), nullptr, above[i].data()});
    }
    blake2b256::hash_lanes(in, sizeof kPrefix, 2 * sizeof(Hash32));
    size_t n = 0;
    for (uint64_t i : dirty) {
      if (n == 0 || dirty[n - 1] != i >> 1) dirty[n++] = i >> 1;
    }
    dirty.resize(n);
  }
}

void MerkleTree::truncate(uint64_t n) {
  assert(n <= size());
  for (size_t k = 0; k < levels_.size(); ++k) levels_[k].resize(n >> k);
  while (!levels_.empty() && levels_.back().empty()) levels_.pop_back();
}

// Hash of the RFC-tree node covering [lo, hi): lo must be a multiple of
// bit_ceil(hi - lo) (true of every node of every tree over a prefix), hi <= size.
Hash32 MerkleTree::range_root(uint64_t lo, uint64_t hi) const {
  assert(lo < hi && hi <= size());
  Hash32 parts[64];
  size_t n = 0;
  for (uint64_t at = lo, rest = hi - lo; rest != 0;) {
    uint64_t chunk = std::bit_floor(rest);
    int k = std::countr_zero(chunk);
    assert(at % chunk == 0);
    parts[n++] = levels_[static_cast<size_t>(k)][at >> k];
    at += chunk;
    rest -= chunk;
  }
  Hash32 h = parts[n - 1];
  for (size_t i = n - 1; i-- > 0;) h = hash_node(parts[i], h);
  return h;
}

Hash32 MerkleTree::root() const { return size() == 0 ? empty_root() : range_root(0, size()); }

Result<Hash32> MerkleTree::root_at(uint64_t n) const {
  if (n > size()) {
    return make_error(Errc::invalid_argument, "root_at({}) over a tree of {} leaves", n, size());
  }
  return n == 0 ? empty_root() : range_root(0, n);
}

Result<std::vector<Hash32>> MerkleTree::inclusion_proof(uint64_t index, uint64_t size) const {
  if (size > this->size() || index >= size) {
    return make_error(Errc::invalid_argument,
                      "inclusion proof for leaf {} of {} requested from a tree of {} leaves", index,
                      size, this->size());
  }
  // PATH(m, D[n]) (RFC 9162 §2.1.3.1), collected root-side first.
  std::vector<Hash32> path;
  uint64_t lo = 0, hi = size;
  while (hi - lo > 1) {
    uint64_t mid = lo + split_point(hi - lo);
    if (index < mid) {
      path.push_back(range_root(mid, hi));
      hi = mid;
    } else {
      path.push_back(range_root(lo, mid));
      lo = mid;
    }
  }
  std::reverse(path.begin(), path.end());
  return path;
}

Result<std::vector<Hash32>> MerkleTree::consistency_proof(uint64_t m, uint64_t n) const {
  if (m > n || n > size()) {
    return make_error(Errc::invalid_argument,
                      "consistency proof from {} to {} requested from a tree of {} leaves", m, n,
                      size());
  }
  std::vector<Hash32> path;
  if (m == 0 || m == n) return path;
  // SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1), collected root-side first;
  // `m` is relative to lo, `whole` is the RFC's flag b.
  uint64_t lo = 0, hi = n;
  bool whole = true;
  while (m != hi - lo) {
    uint64_t k = split_point(hi - lo);
    if (m <= k) {
      path.push_back(range_root(lo + k, hi));
      hi = lo + k;
    } else {
      path.push_back(range_root(lo, lo + k));
      lo += k;
      m -= k;
      whole = false;
    }
  }
  if (!whole) path.push_back(range_root(lo, hi));
  std::reverse(path.begin(), path.end());
  return path;
}

Result<std::vector<Hash32>> MerkleTree::multiproof(std::span<const uint64_t> indices) const {
  if (Status s = check_indices(indices, size()); !s.ok()) {
    return make_error(Errc::invalid_argument, "{}", s.error().message);
  }
  struct Collect {
    using Value = int;
    const MerkleTree& tree;
    std::vector<Hash32> out;
    int absent(uint64_t lo, uint64_t hi) {
      out.push_back(tree.range_root(lo, hi));
      return 0;
    }
    int leaf(size_t) { return 0; }
    int node(int, int) { return 0; }
  } collect{*this, {}};
  walk_multiproof(0, size(), indices, 0, collect);
  return std::move(collect.out);
}

// --- proof sizes ---------------------------------------------------------------

size_t inclusion_proof_size(uint64_t index, uint64_t size) {
  assert(index < size);
  // Below level `inner` the paths to index and to the last leaf differ: one
  // sibling per level. Above it the path runs along the right border, where a
  // sibling exists only at the levels where index has a left neighbour (bit set).
  int inner = std::bit_width(index ^ (size - 1));
  int border = inner >= 64 ? 0 : std::popcount(index >> inner);  // a shift by 64 is UB
  return static_cast<size_t>(inner + border);
}

size_t consistency_proof_size(uint64_t m, uint64_t n) {
  assert(m <= n);
  if (m == 0 || m == n) return 0;
  // The inclusion path of leaf m-1 in the tree of n, minus the levels inside
  // the largest complete subtree ending at m (their hashes fold into one seed),
  // plus that seed unless it is the whole old tree (m a power of two).
  int shift = std::countr_zero(m);
  size_t path = inclusion_proof_size(m - 1, n) - static_cast<size_t>(shift);
  return path + (std::has_single_bit(m) ? 0 : 1);
}

Result<size_t> multiproof_size(std::span<const uint64_t> indices, uint64_t size) {
  SWL_TRY(check_indices(indices, size));
  CountVisitor count;
  return walk_multiproof(0, size, indices, 0, count);
}

// --- verification ----------------------------------------------------------------

Result<Hash32> root_from_inclusion_proof(const Hash32& leaf, uint64_t index, uint64_t size,
                                         std::span<const Hash32> proof) {
  // RFC 9162 §2.1.3.2, step 1.
  if (index >= size) {
    return make_error(Errc::proof_failed,
                      "inclusion proof for leaf {} of {}: leaf index is not below tree size", index,
                      size);
  }
  size_t want = inclusion_proof_size(index, size);
  if (proof.size() != want) {
    return make_error(Errc::proof_failed,
                      "inclusion proof for leaf {} of {} has {} hashes, expected {}", index, size,
                      proof.size(), want);
  }
  // Steps 2-4 (step 4 is fold_path).
  uint64_t fn = index, sn = size - 1;
  Hash32 r = leaf;
  bool fits = fold_path(
      fn, sn, proof, [&](const Hash32& p) { r = hash_node(p, r); },
      [&](const Hash32& p) { r = hash_node(r, p); });
  // Step 5, first half (the root comparison is the caller's).
  if (!fits) {
    return make_error(Errc::proof_failed,
                      "inclusion proof for leaf {} of {} does not fit the tree shape", index, size);
  }
  return r;
}

Status verify_inclusion(const Hash32& leaf, uint64_t index, uint64_t size,
                        std::span<const Hash32> proof, const Hash32& root) {
  SWL_ASSIGN(Hash32 got, root_from_inclusion_proof(leaf, index, size, proof));
  if (got != root) {
    return make_error(Errc::root_mismatch,
                      "inclusion proof for leaf {} of {} gives root {}, expected {}", index, size,
                      short_hex(got), short_hex(root));
  }
  return {};
}

Result<ConsistencyRoots> roots_from_consistency_proof(uint64_t m, uint64_t n, const Hash32& root_m,
                                                      std::span<const Hash32> proof) {
  if (m == 0 || m >= n) {
    return make_error(Errc::proof_failed,
                      "consistency proof from {} to {}: needs 0 < old size < new size", m, n);
  }
  size_t want = consistency_proof_size(m, n);
  if (proof.size() != want) {
    return make_error(Errc::proof_failed,
                      "consistency proof from {} to {} has {} hashes, expected {}", m, n,
                      proof.size(), want);
  }
  // RFC 9162 §2.1.4.2. Step 1 (empty path fails) cannot happen: want >= 1 here.
  // Step 2: for m a power of two the path implicitly starts with root_m.
  size_t at = 0;
  Hash32 seed;
  if (std::has_single_bit(m)) {
    seed = root_m;
  } else {
    seed = proof[at++];
  }
  // Steps 3-4.
  uint64_t fn = m - 1, sn = n - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  // Step 5.
  Hash32 fr = seed, sr = seed;
  // Step 6 is fold_path.
  bool fits = fold_path(
      fn, sn, proof.subspan(at),
      [&](const Hash32& c) {
        fr = hash_node(c, fr);
        sr = hash_node(c, sr);
      },
      [&](const Hash32& c) { sr = hash_node(sr, c); });
  // Step 7, first part.
  if (!fits) {
    return make_error(Errc::proof_failed,
                      "consistency proof from {} to {} does not fit the tree shape", m, n);
  }
  return ConsistencyRoots{fr, sr};
}

Status verify_consistency(uint64_t m, uint64_t n, const Hash32& root_m, const Hash32& root_n,
                          std::span<const Hash32> proof) {
  if (m > n) {
    return make_error(Errc::proof_failed,
                      "consistency proof from {} to {}: old size is above new size", m, n);
  }
  if (m == 0 || m == n) {
    // The empty tree is a prefix of every tree; equal sizes need equal roots.
    // Neither needs a proof, and a non-empty one is malformed.
    if (!proof.empty()) {
      return make_error(Errc::proof_failed,
                        "consistency proof from {} to {} has {} hashes, expected 0", m, n,
                        proof.size());
    }
    const Hash32& want = m == 0 ? empty_root() : root_n;
    if (root_m != want) {
      return make_error(Errc::root_mismatch,
                        "consistency proof from {} to {}: old root {} differs from {}", m, n,
                        short_hex(root_m), short_hex(want));
    }
    return {};
  }
  SWL_ASSIGN(ConsistencyRoots got, roots_from_consistency_proof(m, n, root_m, proof));
  // Step 7: fr == first_hash, sr == second_hash (sn == 0 was checked).
  if (got.old_root != root_m) {
    return make_error(Errc::root_mismatch,
                      "consistency proof from {} to {} gives old root {}, expected {}", m, n,
                      short_hex(got.old_root), short_hex(root_m));
  }
  if (got.new_root != root_n) {
    return make_error(Errc::root_mismatch,
                      "consistency proof from {} to {} gives new root {}, expected {}", m, n,
                      short_hex(got.new_root), short_hex(root_n));
  }
  return {};
}

Result<Hash32> root_from_multiproof(std::span<const uint64_t> indices,
                                    std::span<const Hash32> leaves, uint64_t size,
                                    std::span<const Hash32> proof) {
  if (leaves.size() != indices.size()) {
    return make_error(Errc::proof_failed, "multiproof names {} leaves but {} leaf hashes given",
                      indices.size(), leaves.size());
  }
  SWL_ASSIGN(size_t want, multiproof_size(indices, size));
  if (proof.size() != want) {
    return make_error(Errc::proof_failed,
                      "multiproof for {} leaves of {} has {} hashes, expected {}", indices.size(),
                      size, proof.size(), want);
  }
  struct Fold {
    using Value = Hash32;
    std::span<const Hash32> leaves;
    std::span<const Hash32> proof;
    size_t next = 0;
    Hash32 absent(uint64_t, uint64_t) { return proof[next++]; }  // count checked above
    Hash32 leaf(size_t i) { return leaves[i]; }
    Hash32 node(const Hash32& l, const Hash32& r) { return hash_node(l, r); }
  } fold{leaves, proof};
  Hash32 root = walk_multiproof(0, size, indices, 0, fold);
  assert(fold.next == proof.size());
  return root;
}

Status verify_multiproof(std::span<const uint64_t> indices, std::span<const Hash32> leaves,
                         uint64_t size, std::span<const Hash32> proof, const Hash32& root) {
  SWL_ASSIGN(Hash32 got, root_from_multiproof(indices, leaves, size, proof));
  if (got != root) {
    return make_error(Errc::root_mismatch,
                      "multiproof for {} leaves of {} gives root {}, expected {}", indices.size(),
                      size, short_hex(got), short_hex(root));
  }
  return {};
}

Hash32 merkle_root(std::span<const Hash32> leaves) {
  // MTH straight from RFC 9162 §2.1.1: the reference the fast paths are tested against.
  if (leaves.empty()) return empty_root();
  if (leaves.size() == 1) return leaves[0];
  size_t k = std::bit_floor(leaves.size() - 1);
  return hash_node(merkle_root(leaves.first(k)), merkle_root(leaves.subspan(k)));
}

// --- wire forms ------------------------------------------------------------------

namespace {

// Reads a proof's hash list, whose count must be exactly `want` — the length the
// proof's own parameters call for (`needs` says which, for the message).
Result<std::vector<Hash32>> read_exact_hashes(Reader& r, std::string_view field, size_t cap,
                                              size_t want, std::string_view needs) {
  size_t at = r.offset();
  SWL_ASSIGN(size_t count, r.count(field, cap));
  if (count != want) {
    return r.fail_at(Errc::bad_value, at, field,
                     fmt::format("{} hashes, but {} {}", count, needs, want));
  }
  return read_hashes(r, field, count);
}

// inclusion and consistency proofs: version · u64 a · u64 b · hash_list(path).
Bytes encode_sized_path(uint64_t a, uint64_t b, std::span<const Hash32> path) {
  assert(path.size() <= kMaxProofHashes);
  Writer w;
  w.u8(kProofVersion);
  w.u64(a);
  w.u64(b);
  write_hash_list(w, path);
  return w.take();
}

// The two proofs of the form (version, size a, size b, path) and what makes
// each valid: decode_sized_path reads what encode_sized_path wrote.
struct SizedPath {
  uint64_t a = 0, b = 0;
  std::vector<Hash32> path;
};
struct SizedPathForm {
  const char* what;
  const char* a_name;
  const char* b_name;
  std::string (*invalid)(uint64_t a, uint64_t b);  // why (a, b) is impossible, "" when it is not
  size_t (*hashes)(uint64_t a, uint64_t b);        // the path length (a, b) needs
  const char* needs;                               // "... {a} ... {b} need(s)", for errors
};
const SizedPathForm kInclusionPath{
    "inclusion proof", "index", "size",
    [](uint64_t index, uint64_t size) {
      return index < size ? std::string()
                          : fmt::format("leaf {} is not below tree size {}", index, size);
    },
    inclusion_proof_size, "leaf {} of {} needs"};
const SizedPathForm kConsistencyPath{
    "consistency proof", "old_size", "new_size",
    [](uint64_t old_size, uint64_t new_size) {
      return old_size <= new_size
                 ? std::string()
                 : fmt::format("old size {} is above new size {}", old_size, new_size);
    },
    consistency_proof_size, "sizes {} to {} need"};

Result<SizedPath> decode_sized_path(ByteView bytes, const SizedPathForm& form) {
  Reader r(bytes, form.what);
  SizedPath d;
  SWL_TRY(r.preamble(kProofVersion));
  SWL_ASSIGN(d.a, r.u64(form.a_name));
  SWL_ASSIGN(d.b, r.u64(form.b_name));
  if (std::string why = form.invalid(d.a, d.b); !why.empty()) {
    return r.fail_at(Errc::bad_value, 1, form.a_name, why);
  }
  SWL_ASSIGN(d.path, read_exact_hashes(r, "path", kMaxProofHashes, form.hashes(d.a, d.b),
                                       fmt::format(fmt::runtime(form.needs), d.a, d.b)));
  SWL_TRY(r.expect_end());
  return d;
}

}  // namespace

Bytes encode_hash_list(std::span<const Hash32> hashes) {
  Writer w;
  write_hash_list(w, hashes);
  return w.take();
}

Result<std::vector<Hash32>> decode_hash_list(ByteView bytes, size_t max) {
  Reader r(bytes, "hash list");
  SWL_ASSIGN(std::vector<Hash32> hashes, read_hash_list(r, "hashes", max));
  SWL_TRY(r.expect_end());
  return hashes;
}

Bytes encode_inclusion_proof(const InclusionProof& p) {
  return encode_sized_path(p.index, p.size, p.path);
}

Result<InclusionProof> decode_inclusion_proof(ByteView bytes) {
  SWL_ASSIGN(SizedPath d, decode_sized_path(bytes, kInclusionPath));
  return InclusionProof{d.a, d.b, std::move(d.path)};
}

Bytes encode_consistency_proof(const ConsistencyProof& p) {
  return encode_sized_path(p.old_size, p.new_size, p.path);
}

Result<ConsistencyProof> decode_consistency_proof(ByteView bytes) {
  SWL_ASSIGN(SizedPath d, decode_sized_path(bytes, kConsistencyPath));
  return ConsistencyProof{d.a, d.b, std::move(d.path)};
}

Bytes encode_multiproof(const MultiProof& p) {
  assert(p.indices.size() <= kMaxMultiproofLeaves);
  Writer w;
  w.u8(kProofVersion);
  w.u64(p.size);
  w.u32(static_cast<uint32_t>(p.indices.size()));
  for (uint64_t i : p.indices) w.u64(i);
  write_hash_list(w, p.hashes);
  return w.take();
}

Result<MultiProof> decode_multiproof(ByteView bytes) {
  Reader r(bytes, "multiproof");
  MultiProof p;
  SWL_TRY(r.preamble(kProofVersion));
  SWL_ASSIGN(p.size, r.u64("size"));
  SWL_ASSIGN(size_t n, r.count("indices", kMaxMultiproofLeaves, 8));
  p.indices.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    size_t at = r.offset();
    SWL_ASSIGN(uint64_t index, r.u64("index"));
    if (index >= p.size || (i > 0 && index <= p.indices.back())) {
      return r.fail_at(Errc::bad_value, at, "index",
                       fmt::format("leaf {} at position {} is not above the previous one and "
                                   "below tree size {}",
                                   index, i, p.size));
    }
    p.indices.push_back(index);
  }
  if (p.indices.empty()) {
    return r.fail(Errc::bad_value, "indices", "a multiproof names at least one leaf");
  }
  // The shape fixes the count exactly; multiproof_size cannot fail on the
  // indices validated above.
  SWL_ASSIGN(size_t want, multiproof_size(p.indices, p.size));
  SWL_ASSIGN(p.hashes,
             read_exact_hashes(r, "hashes", kMaxMultiproofLeaves * 64, want,
                               fmt::format("{} leaves of {} need", p.indices.size(), p.size)));
  SWL_TRY(r.expect_end());
  return p;
}

}  // namespace swarmlite
