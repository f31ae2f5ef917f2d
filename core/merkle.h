// Merkle trees of RFC 9162 shape over BLAKE2b (core/hash.h), used twice:
// the log tree (leaf = entry_leaf_hash, append-only) and the state tree
// (leaf = page hash, leaves set in place and the tree cut when the file shrinks).
// Spec: docs/formats/merkle.md.
//
//              root                 MTH(D[n]) for n = 5:
//            /      \                 k = largest power of two < n = 4
//        h(0..3)    d4                root = node(MTH(D[0:4]), MTH(D[4:5]))
//        /    \       (leaves d0..d4; d4 is the
//   h(0,1)   h(2,3)     root's right child)
//
// "Which nodes a proof needs" (MerkleTree::*_proof) is kept apart from "verify a
// proof" (verify_*: pure functions that need no tree).
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "core/bytes.h"
#include "core/codec.h"
#include "core/result.h"

namespace swarmlite {

// A value type. Thread-safety: const members may run concurrently; any mutation
// needs exclusive access. Preconditions of set/truncate/leaf (index or n in
// range) are asserted, not checked in release builds: callers own the sizes.
// Invariant: levels_[k].size() == size() >> k for every k, and levels_ holds
// exactly bit_width(size()) levels (none when empty).
class MerkleTree {
 public:
  uint64_t size() const;
  // Appends a leaf hash: O(log n) node hashes.
  void append(const Hash32& leaf);
  // Replaces leaf i (< size): O(log n) node hashes.
  void set(uint64_t index, const Hash32& leaf);
  // Replaces several leaves at once: `updates` holds (index, leaf) pairs with
  // strictly increasing indices, each < size. Same result as calling set() for
  // each, but every changed node is hashed once, not once per leaf below it,
  // and the nodes of a level are hashed together (core/blake2b.h hash_lanes;
  // docs/performance.md "Batched state tree updates").
  void set_many(std::span<const std::pair<uint64_t, Hash32>> updates);
  // Keeps the first n leaves (n <= size).
  void truncate(uint64_t n);
  const Hash32& leaf(uint64_t index) const;

  // Root over all leaves; empty_root() when empty. O(log n).
  Hash32 root() const;
  // Root over the first n leaves (n <= size). O(log n).
  Result<Hash32> root_at(uint64_t n) const;

  // Audit path for leaf `index` in the tree of the first `size` leaves.
  Result<std::vector<Hash32>> inclusion_proof(uint64_t index, uint64_t size) const;
  // Proof that the first m leaves are a prefix of the first n (0 < m <= n <= size).
  // m == 0 is also accepted and gives the empty proof (everything extends the empty tree).
  Result<std::vector<Hash32>> consistency_proof(uint64_t m, uint64_t n) const;
  // The node hashes needed to recompute the root over all leaves from the leaves
  // at `indices` (non-empty, strictly increasing, each < size), each shared node once, in
  // the order verify_multiproof consumes them (docs/formats/merkle.md).
  Result<std::vector<Hash32>> multiproof(std::span<const uint64_t> indices) const;

 private:
  // Hash of the node covering leaves [lo, hi) of any tree over a prefix
  // (lo a multiple of bit_ceil(hi - lo), lo < hi <= size()). O(log n).
  Hash32 range_root(uint64_t lo, uint64_t hi) const;
  // levels_[k][i] = root of the complete subtree of 2^k leaves starting at i*2^k.
  std::vector<std::vector<Hash32>> levels_;
};

// Each returns ok, or proof_failed / root_mismatch with a message saying why.
// Proof parameters come from untrusted peers, so impossible ones (index >= size,
// m > n, unsorted indices, wrong hash count) are proof_failed, not invalid_argument.
Status verify_inclusion(const Hash32& leaf, uint64_t index, uint64_t size,
                        std::span<const Hash32> proof, const Hash32& root);
Status verify_consistency(uint64_t m, uint64_t n, const Hash32& root_m, const Hash32& root_n,
                          std::span<const Hash32> proof);
// `leaves[i]` is the leaf hash at `indices[i]` (strictly increasing) in a tree of `size` leaves.
Status verify_multiproof(std::span<const uint64_t> indices, std::span<const Hash32> leaves,
                         uint64_t size, std::span<const Hash32> proof, const Hash32& root);
// Root of a tree from all its leaves (reference implementation; O(n)).
Hash32 merkle_root(std::span<const Hash32> leaves);

// --- Additions beyond the original contract -------------------------------

// Cap on the hashes of an encoded inclusion or consistency proof. An inclusion
// proof never needs more than 64; a consistency proof needs at most 64 unless
// n > 2^63 (such proofs are not representable on the wire: no log gets there).
inline constexpr size_t kMaxProofHashes = 64;
// Caps of the multiproof wire form: leaves per proof, and the hash count is
// then bounded by the tree shape (<= leaves * 64) and the input length.
inline constexpr size_t kMaxMultiproofLeaves = 1u << 16;

// Exact proof lengths (the number of hashes an honest proof has).
// Preconditions: index < size; m <= n.
size_t inclusion_proof_size(uint64_t index, uint64_t size);
size_t consistency_proof_size(uint64_t m, uint64_t n);
// Validates `indices` (non-empty, strictly increasing, each < size) and returns
// the number of hashes a multiproof for them has; proof_failed if invalid.
Result<size_t> multiproof_size(std::span<const uint64_t> indices, uint64_t size);

// The building blocks of the verifiers: the root a proof implies (RFC 9162
// §2.1.3.2 / §2.1.4.2 without the final comparison). proof_failed when the
// proof has the wrong shape for its parameters.
Result<Hash32> root_from_inclusion_proof(const Hash32& leaf, uint64_t index, uint64_t size,
                                         std::span<const Hash32> proof);
struct ConsistencyRoots {
  Hash32 old_root;  // for m a power of two this is the root_m given (the proof omits it)
  Hash32 new_root;
};
// For 0 < m < n. `root_m` seeds the computation only when m is a power of two.
Result<ConsistencyRoots> roots_from_consistency_proof(uint64_t m, uint64_t n, const Hash32& root_m,
                                                      std::span<const Hash32> proof);
Result<Hash32> root_from_multiproof(std::span<const uint64_t> indices,
                                    std::span<const Hash32> leaves, uint64_t size,
                                    std::span<const Hash32> proof);

// Wire forms (docs/formats/merkle.md), with caps on path length.
struct InclusionProof {
  uint64_t index = 0;
  uint64_t size = 0;
  std::vector<Hash32> path;
  friend bool operator==(const InclusionProof&, const InclusionProof&) = default;
};
struct ConsistencyProof {
  uint64_t old_size = 0;
  uint64_t new_size = 0;
  std::vector<Hash32> path;
  friend bool operator==(const ConsistencyProof&, const ConsistencyProof&) = default;
};
Bytes encode_inclusion_proof(const InclusionProof& p);
Result<InclusionProof> decode_inclusion_proof(ByteView bytes);
Bytes encode_consistency_proof(const ConsistencyProof& p);
Result<ConsistencyProof> decode_consistency_proof(ByteView bytes);

// Hash lists (write_hash_list, read_hash_list) are codec primitives: core/codec.h.
Bytes encode_hash_list(std::span<const Hash32> hashes);
// Whole input must be one hash list (trailing bytes rejected).
Result<std::vector<Hash32>> decode_hash_list(ByteView bytes, size_t max);

// Self-contained multiproof: which leaves of a tree of `size` leaves it covers
// and the hashes verify_multiproof needs (the leaf hashes travel separately).
struct MultiProof {
  uint64_t size = 0;
  std::vector<uint64_t> indices;
  std::vector<Hash32> hashes;
  friend bool operator==(const MultiProof&, const MultiProof&) = default;
};
Bytes encode_multiproof(const MultiProof& p);
// Rejects bad version, > kMaxMultiproofLeaves indices, indices not strictly
// increasing or >= size, a hash count other than multiproof_size(), truncation
// and trailing bytes.
Result<MultiProof> decode_multiproof(ByteView bytes);

}  // namespace swarmlite
