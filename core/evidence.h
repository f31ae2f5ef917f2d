// Equivocation evidence (DESIGN.md §2, docs/formats/evidence.md): a
// self-contained object anyone holding the log id can check, proving that the
// primary signed two heads that cannot both be honest:
//  - same_size: two valid heads with equal size and different log roots;
//  - inconsistent: two valid heads with sizes m < n plus a consistency proof
//    between them — since honest logs only append, a proof that fails to link
//    them is not enough (the sender could send garbage); instead the evidence
//    carries the entry-level witness: for heads m < n the old head's root must
//    equal the root recomputed from the proof; evidence holds when the given
//    consistency proof verifies against the new head's root and yields a
//    different root for m than the one the old head signed.
#pragma once

#include "core/head.h"
#include "core/merkle.h"

namespace swarmlite {

inline constexpr uint8_t kEvidenceVersion = 1;

struct Evidence {
  enum class Kind : uint8_t { same_size = 1, inconsistent = 2 };
  Kind kind = Kind::same_size;
  Head a;  // for `inconsistent`: the smaller head
  Head b;  // for `inconsistent`: the larger head
  // For `inconsistent`: a consistency proof from a.size to b.size that verifies
  // against b.log_root for some root other than a.log_root (see verify()).
  std::vector<Hash32> proof;

  // ok when this proves equivocation by `log_id`; otherwise an error saying why not.
  Status verify(const PublicKey& log_id) const;
  friend bool operator==(const Evidence&, const Evidence&) = default;
};

// Checks two heads of the same log (both must verify). Returns evidence if they
// have the same size and differ; nullopt-like not_found error if they are consistent
// by size alone. For heads of different sizes the caller needs a consistency proof:
// see evidence_from_proof.
Result<Evidence> evidence_from_heads(const Head& a, const Head& b);
// `proof` is a consistency proof from `older.size` to `newer.size` obtained from
// anyone; returns evidence when it verifies against newer's root but implies a
// different root for older.size, and an error otherwise.
Result<Evidence> evidence_from_proof(const Head& older, const Head& newer,
                                     std::span<const Hash32> proof);

Bytes encode_evidence(const Evidence& e);
Result<Evidence> decode_evidence(ByteView bytes);

}  // namespace swarmlite
