// Equivocation evidence (docs/formats/evidence.md).
//
// roots_from_complete_path is RFC 9162 §2.1.4.2 with step 2 ("if first_size is
// a power of two, prepend first_hash") taken out of the verifier's hands: the
// path must already start with the size-m root, so both roots are *derived*
// from the path instead of one being assumed. The walk below is otherwise the
// RFC's, hashing with hash_node (0x01 ‖ left ‖ right).
#include "core/evidence.h"

#include <algorithm>

#include "core/codec.h"
#include "core/hash.h"

namespace swarmlite {

namespace {

bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Tree of the same log signed twice with different contents at one size.
bool heads_disagree(const Head& a, const Head& b) {
  return a.log_root != b.log_root || a.state_root != b.state_root ||
         a.page_count != b.page_count;
}

Status verify_both(const Head& a, const Head& b, const PublicKey& log_id) {
  if (auto s = a.verify(log_id); !s.ok()) {
    return make_error(s.error().code, "evidence head a (size {}): {}", a.size, s.error().message);
  }
  if (auto s = b.verify(log_id); !s.ok()) {
    return make_error(s.error().code, "evidence head b (size {}): {}", b.size, s.error().message);
  }
  return {};
}

Status check_same_size(const Evidence& e) {
  if (e.a.size != e.b.size) {
    return make_error(Errc::proof_failed,
                      "same-size evidence has heads of sizes {} and {}: not evidence", e.a.size,
                      e.b.size);
  }
  if (!e.proof.empty()) {
    return make_error(Errc::proof_failed, "same-size evidence carries a {}-hash path it cannot use",
                      e.proof.size());
  }
  if (!heads_disagree(e.a, e.b)) {
    return make_error(Errc::proof_failed,
                      "heads a and b (size {}) agree on log root, state root and page count: "
                      "consistent, not evidence of a fork",
                      e.a.size);
  }
  return {};
}

Status check_inconsistent(const Evidence& e) {
  const uint64_t m = e.a.size, n = e.b.size;
  if (m == 0 || m >= n) {
    return make_error(Errc::proof_failed,
                      "inconsistency evidence needs sizes 0 < a < b, got a = {} and b = {}", m, n);
  }
  SWL_ASSIGN(ImpliedRoots roots, roots_from_complete_path(m, n, e.proof));
  if (roots.new_root != e.b.log_root) {
    return make_error(Errc::proof_failed,
                      "path from {} to {} leads to root {}, not head b's log root {}: it proves "
                      "nothing about b",
                      m, n, to_hex(roots.new_root), to_hex(e.b.log_root));
  }
  if (roots.old_root == e.a.log_root) {
    return make_error(Errc::proof_failed,
                      "path shows head a (size {}) is a prefix of head b (size {}): the heads are "
                      "consistent, not evidence of a fork",
                      m, n);
  }
  return {};
}

}  // namespace

Result<ImpliedRoots> roots_from_complete_path(uint64_t m, uint64_t n,
                                              std::span<const Hash32> path) {
  if (m == 0 || m >= n) {
    return make_error(Errc::invalid_argument, "a consistency path needs 0 < m < n, got {} and {}",
                      m, n);
  }
  if (path.empty()) {
    return make_error(Errc::proof_failed, "consistency path from {} to {} is empty", m, n);
  }
  uint64_t fn = m - 1, sn = n - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  ImpliedRoots r{path[0], path[0]};
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash32& c = path[i];
    if (sn == 0) {
      return make_error(Errc::proof_failed,
                        "consistency path from {} to {} has {} hash(es), more than the {} it needs",
                        m, n, path.size(), i);
    }
    if ((fn & 1) || fn == sn) {
      r.old_root = hash_node(c, r.old_root);
      r.new_root = hash_node(c, r.new_root);
      while (!(fn & 1) && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      r.new_root = hash_node(r.new_root, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return make_error(Errc::proof_failed,
                      "consistency path from {} to {} has {} hash(es), too few to reach the root",
                      m, n, path.size());
  }
  return r;
}

namespace {

template <class Tree>
Result<std::vector<Hash32>> evidence_path_of(const Tree& tree, uint64_t m, uint64_t n) {
  if (m == 0 || m >= n) {
    return make_error(Errc::invalid_argument, "an evidence path needs 0 < m < n, got {} and {}", m,
                      n);
  }
  SWL_ASSIGN(std::vector<Hash32> rfc, tree.consistency_proof(m, n));
  if (!is_power_of_two(m)) return rfc;
  SWL_ASSIGN(Hash32 old_root, tree.root_at(m));
  std::vector<Hash32> path;
  path.reserve(rfc.size() + 1);
  path.push_back(old_root);
  path.insert(path.end(), rfc.begin(), rfc.end());
  return path;
}

}  // namespace

Result<std::vector<Hash32>> evidence_path(const MerkleTree& tree, uint64_t m, uint64_t n) {
  return evidence_path_of(tree, m, n);
}
Result<std::vector<Hash32>> evidence_path(const LogTree& tree, uint64_t m, uint64_t n) {
  return evidence_path_of(tree, m, n);
}

Status Evidence::verify(const PublicKey& log_id) const {
  SWL_TRY(verify_both(a, b, log_id));
  switch (kind) {
    case Kind::same_size:
      return check_same_size(*this);
    case Kind::inconsistent:
      return check_inconsistent(*this);
  }
  return make_error(Errc::bad_value, "evidence kind {} is unknown", static_cast<int>(kind));
}

Result<Evidence> evidence_from_heads(const Head& a, const Head& b) {
  if (a.log_id != b.log_id) {
    return make_error(Errc::invalid_argument, "heads belong to different logs ({} and {})",
                      a.log_id.hex(), b.log_id.hex());
  }
  SWL_TRY(verify_both(a, b, a.log_id));
  if (a.size != b.size) {
    return make_error(Errc::not_found,
                      "heads have sizes {} and {}: whether they fork needs a consistency path "
                      "(evidence_from_proof)",
                      a.size, b.size);
  }
  if (!heads_disagree(a, b)) {
    return make_error(Errc::not_found, "heads of size {} agree: no evidence", a.size);
  }
  return Evidence{Evidence::Kind::same_size, a, b, {}};
}

Result<Evidence> evidence_from_proof(const Head& older, const Head& newer,
                                     std::span<const Hash32> path) {
  if (older.log_id != newer.log_id) {
    return make_error(Errc::invalid_argument, "heads belong to different logs ({} and {})",
                      older.log_id.hex(), newer.log_id.hex());
  }
  if (older.size == 0 || older.size >= newer.size) {
    return make_error(Errc::invalid_argument,
                      "evidence_from_proof needs 0 < older.size < newer.size, got {} and {}",
                      older.size, newer.size);
  }
  if (path.size() > kMaxEvidencePath) {
    return make_error(Errc::too_large, "consistency path has {} hashes, over the cap of {}",
                      path.size(), kMaxEvidencePath);
  }
  Evidence e{Evidence::Kind::inconsistent, older, newer,
             std::vector<Hash32>(path.begin(), path.end())};
  SWL_TRY(e.verify(older.log_id));
  return e;
}

Bytes encode_evidence(const Evidence& e) {
  Writer w;
  w.u8(kEvidenceVersion);
  w.u8(static_cast<uint8_t>(e.kind));
  w.raw(encode_head(e.a));
  w.raw(encode_head(e.b));
  w.u32(static_cast<uint32_t>(e.proof.size()));
  for (const Hash32& h : e.proof) w.hash(h);
  return w.take();
}

Result<Evidence> decode_evidence(ByteView bytes) {
  Reader r(bytes, "evidence");
  SWL_TRY(r.preamble(kEvidenceVersion));
  const size_t kind_at = r.offset();
  SWL_ASSIGN(uint8_t kind, r.u8("kind"));
  if (kind != static_cast<uint8_t>(Evidence::Kind::same_size) &&
      kind != static_cast<uint8_t>(Evidence::Kind::inconsistent)) {
    return r.fail_at(Errc::bad_value, kind_at, "kind",
                     fmt::format("unknown kind {} (1 same_size, 2 inconsistent)", kind));
  }
  Evidence e;
  e.kind = static_cast<Evidence::Kind>(kind);
  SWL_ASSIGN(e.a, read_head(r, "head a"));
  SWL_ASSIGN(e.b, read_head(r, "head b"));
  const size_t count_at = r.offset();
  SWL_ASSIGN(size_t count, r.count("path length", kMaxEvidencePath));
  if (e.kind == Evidence::Kind::same_size && count != 0) {
    return r.fail_at(Errc::non_canonical, count_at, "path length",
                     fmt::format("same-size evidence carries no path, got {} hash(es)", count));
  }
  SWL_ASSIGN(e.proof, read_hashes(r, "path hash", count));
  SWL_TRY(r.expect_end());
  return e;
}

}  // namespace swarmlite
