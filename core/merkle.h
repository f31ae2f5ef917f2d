// Merkle trees of RFC 9162 shape over BLAKE2b (core/hash.h), used twice:
// the log tree (leaf = entry_leaf_hash, append-only) and the state tree
// (leaf = page hash, leaves set in place and the tree cut when the file shrinks).
// Spec: docs/formats/merkle.md.
//
//              root                 MTH(D[n]) for n = 5:
//            /      \                 k = largest power of two < n = 4
//        h(0..3)    d4                root = node(MTH(D[0:4]), MTH(D[4:5]))
//        /    \
//   h(0,1)   h(2,3)
//
// "Which nodes a proof needs" (MerkleTree::*_proof) is kept apart from "verify a
// proof" (verify_*: pure functions that need no tree).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite {

class MerkleTree {
 public:
  uint64_t size() const;
  // Appends a leaf hash: O(log n) node hashes.
  void append(const Hash32& leaf);
  // Replaces leaf i (< size): O(log n) node hashes.
  void set(uint64_t index, const Hash32& leaf);
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
  Result<std::vector<Hash32>> consistency_proof(uint64_t m, uint64_t n) const;
  // The node hashes needed to recompute the root over all leaves from the leaves
  // at `indices` (strictly increasing, each < size), each shared node once, in
  // the order verify_multiproof consumes them (docs/formats/merkle.md).
  Result<std::vector<Hash32>> multiproof(std::span<const uint64_t> indices) const;

 private:
  // levels_[k][i] = root of the complete subtree of 2^k leaves starting at i*2^k.
  std::vector<std::vector<Hash32>> levels_;
};

// Each returns ok, or proof_failed / root_mismatch with a message saying why.
Status verify_inclusion(const Hash32& leaf, uint64_t index, uint64_t size,
                        std::span<const Hash32> proof, const Hash32& root);
Status verify_consistency(uint64_t m, uint64_t n, const Hash32& root_m, const Hash32& root_n,
                          std::span<const Hash32> proof);
// `leaves[i]` is the leaf hash at `indices[i]` (strictly increasing) in a tree of `size` leaves.
Status verify_multiproof(std::span<const uint64_t> indices, std::span<const Hash32> leaves,
                         uint64_t size, std::span<const Hash32> proof, const Hash32& root);
// Root of a tree from all its leaves (reference implementation; O(n)).
Hash32 merkle_root(std::span<const Hash32> leaves);

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

}  // namespace swarmlite
