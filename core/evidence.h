// Equivocation evidence (docs/formats/evidence.md): a
// self-contained object anyone holding the log id can check, proving that the
// primary signed two heads that cannot both be honest:
//  - same_size: two valid heads with equal size that differ in log_root,
//    state_root or page_count (one log cannot have two states at one size);
//  - inconsistent: two valid heads a, b with sizes 0 < m < n plus a *complete
//    consistency path* from m to n. The path determines two roots: the root of
//    the first m leaves and the root of all n. The evidence holds when the
//    latter equals b.log_root and the former differs from a.log_root: the tree b
//    commits to does not start with the tree a commits to.
//
// The complete path is RFC 9162's consistency proof with the old-side root
// always derivable from it: when m is a power of two the RFC proof omits the
// size-m root (its verifier takes it from the old head), so the complete path
// is that root followed by the RFC proof; otherwise it is the RFC proof as is.
// evidence_path() builds it from a tree. A garbage path never verifies: its
// new-side root would have to equal b.log_root, a BLAKE2b preimage.
//
// Time is informational: a smaller head signed later than a larger one is not
// evidence of anything.
#pragma once

#include <span>
#include <vector>

#include "core/head.h"
#include "core/log_tree.h"
#include "core/merkle.h"

namespace swarmlite {

inline constexpr uint8_t kEvidenceVersion = 1;
// Longest complete consistency path: ceil(log2 n) + 1 hashes for n <= 2^63.
inline constexpr size_t kMaxEvidencePath = 64;

struct Evidence {
  enum class Kind : uint8_t { same_size = 1, inconsistent = 2 };
  Kind kind = Kind::same_size;
  Head a;  // for `inconsistent`: the smaller head
  Head b;  // for `inconsistent`: the larger head
  // For `inconsistent`: a complete consistency path from a.size to b.size (see
  // above) that leads to b.log_root and implies a size-a.size root other than
  // a.log_root. Empty for `same_size`.
  std::vector<Hash32> proof;

  // ok when this proves equivocation by `log_id`; otherwise an error saying why
  // not: bad_signature (a head is not validly signed by log_id) or proof_failed
  // (the heads are consistent, or the path is malformed or leads elsewhere).
  Status verify(const PublicKey& log_id) const;
  friend bool operator==(const Evidence&, const Evidence&) = default;
};

// Checks two heads of the same log (both must verify under a.log_id). Returns
// same_size evidence if they have the same size and differ; not_found if they
// differ in size (a fork between them needs a path: see evidence_from_proof) or
// agree; bad_signature / invalid_argument if a head is invalid or of another log.
Result<Evidence> evidence_from_heads(const Head& a, const Head& b);
// `path` is a complete consistency path from `older.size` to `newer.size`
// obtained from anyone (evidence_path() on an honest tree); returns evidence
// when it leads to newer's root but implies a different root for older.size,
// and an error otherwise (proof_failed when the heads are consistent).
Result<Evidence> evidence_from_proof(const Head& older, const Head& newer,
                                     std::span<const Hash32> path);

// The complete consistency path from m to n (0 < m < n <= tree.size()).
Result<std::vector<Hash32>> evidence_path(const MerkleTree& tree, uint64_t m, uint64_t n);
Result<std::vector<Hash32>> evidence_path(const LogTree& tree, uint64_t m, uint64_t n);

// The two roots a complete consistency path implies: the root over the first
// m leaves and over all n. proof_failed if the path has the wrong shape for
// (m, n). Precondition-checked: 0 < m < n.
struct ImpliedRoots {
  Hash32 old_root;
  Hash32 new_root;
};
Result<ImpliedRoots> roots_from_complete_path(uint64_t m, uint64_t n,
                                              std::span<const Hash32> path);

Bytes encode_evidence(const Evidence& e);
Result<Evidence> decode_evidence(ByteView bytes);

}  // namespace swarmlite
