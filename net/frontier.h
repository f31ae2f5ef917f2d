// The Merkle frontier of the log at size N from the last entry's inclusion
// path (docs/protocol.md "Frontier"): what a node that starts from a snapshot
// at head N needs so that entries N, N+1, … verify and extend its tree.
//
// The frontier at N is the list of roots of the complete subtrees that the
// RFC 9162 tree of N leaves is made of, one per set bit of N, largest (leftmost)
// first: N = 6 = 0b110 → [root(leaves 0..3), root(leaves 4..5)]. The inclusion
// path of leaf N-1 in the tree of size N holds, bottom up, the left siblings on
// its way to the root: the first t = countr_zero(N) of them, folded with the
// leaf, give the last (smallest) subtree root; each of the others is one of the
// larger subtree roots, smallest first. So the frontier is a pure function of
// (N, leaf, path), and folding it right to left gives the root of the tree of
// size N, which the caller compares with the signed head's log_root.
// Pure: no I/O, no state.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite::net {

struct LogFrontier {
  uint64_t size = 0;
  std::vector<Hash32> subtrees;  // popcount(size) roots, largest first
  Hash32 root;                   // the tree's root at `size` (fold of `subtrees`)
};

// `leaf` = entry_leaf_hash of entry N-1 (core/entry.h); `path` = its inclusion
// proof in the tree of size N (MerkleTree / LogTree inclusion_proof(N-1, N)).
// Errors: bad_value for N = 0, proof_failed for a path of the wrong length.
// The caller checks `root` against the head it trusts.
Result<LogFrontier> frontier_from_last_leaf_path(uint64_t size, const Hash32& leaf,
                                                 std::span<const Hash32> path);

}  // namespace swarmlite::net
