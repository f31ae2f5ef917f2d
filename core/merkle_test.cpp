#include "core/merkle.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "core/blake2b.h"
#include "core/hash.h"

namespace swarmlite {
namespace {

Hash32 test_leaf(uint64_t i) {
  Writer w;
  w.u64(i);
  return hash_leaf(w.bytes());
}

std::vector<Hash32> test_leaves(uint64_t n, uint64_t salt = 0) {
  std::vector<Hash32> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) out.push_back(test_leaf(i + (salt << 32)));
  return out;
}

MerkleTree tree_of(std::span<const Hash32> leaves) {
  MerkleTree t;
  for (const Hash32& h : leaves) t.append(h);
  return t;
}

Hash32 flip(Hash32 h, size_t bit) {
  h[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  return h;
}

// How many single-bit mutations of a hash to try.
enum class Flips {
  every_bit,   // all 256
  every_byte,  // one bit in each byte (bit = byte index mod 8): 32
  one_random,  // one random bit
};

// Calls f(flipped) for single-bit mutations of h.
template <class F>
void for_each_flipped_hash(const Hash32& h, Flips mode, std::mt19937_64& rng, F f) {
  switch (mode) {
    case Flips::every_bit:
      for (size_t bit = 0; bit < 256; ++bit) f(flip(h, bit));
      break;
    case Flips::every_byte:
      for (size_t byte = 0; byte < 32; ++byte) f(flip(h, byte * 8 + byte % 8));
      break;
    case Flips::one_random:
      f(flip(h, rng() % 256));
      break;
  }
}

// Calls f(mutated proof) for proofs with one hash mutated as above.
template <class F>
void for_each_flipped_proof(std::vector<Hash32> proof, Flips mode, std::mt19937_64& rng, F f) {
  for (size_t i = 0; i < proof.size(); ++i) {
    Hash32 keep = proof[i];
    for_each_flipped_hash(keep, mode, rng, [&](const Hash32& bad) {
      proof[i] = bad;
      f(proof);
    });
    proof[i] = keep;
  }
}

// Every bit for small trees, every byte for mid-sized ones (hashing dominates the runtime).
Flips flips_for_size(uint64_t n) { return n <= 20 ? Flips::every_bit : Flips::every_byte; }

// Counts verifications that end in anything but root_mismatch (one CHECK at the
// end instead of a doctest assertion per mutation keeps the runtime down).
struct MismatchCounter {
  size_t tried = 0, other = 0;
  void operator()(const Status& s) {
    ++tried;
    if (s.ok() || s.error().code != Errc::root_mismatch) ++other;
  }
};

constexpr uint64_t kSeed = 0x5eed'9162;

TEST_CASE("root and root_at equal the reference root for every size up to 300") {
  auto leaves = test_leaves(300);
  MerkleTree t;
  CHECK(t.size() == 0);
  CHECK(t.root() == empty_root());
  CHECK(t.root() == merkle_root({}));
  for (uint64_t n = 1; n <= leaves.size(); ++n) {
    t.append(leaves[n - 1]);
    REQUIRE(t.size() == n);
    CHECK(t.leaf(n - 1) == leaves[n - 1]);
    REQUIRE(t.root() == merkle_root(std::span(leaves).first(n)));
  }
  for (uint64_t n = 0; n <= leaves.size(); ++n) {
    auto r = t.root_at(n);
    REQUIRE(r.ok());
    REQUIRE(*r == merkle_root(std::span(leaves).first(n)));
  }
  auto beyond = t.root_at(301);
  REQUIRE(!beyond.ok());
  CHECK(beyond.error().code == Errc::invalid_argument);
  CHECK(beyond.error().message == "root_at(301) over a tree of 300 leaves");
}

TEST_CASE("root_at of big trees equals the reference root") {
  const uint64_t big = (uint64_t{1} << 17) + 5;
  auto leaves = test_leaves(big);
  MerkleTree t = tree_of(leaves);
  for (uint64_t n : {uint64_t{1} << 16, (uint64_t{1} << 16) + 1, uint64_t{100000}, big - 1, big}) {
    auto r = t.root_at(n);
    REQUIRE(r.ok());
    CHECK(*r == merkle_root(std::span(leaves).first(n)));
  }
  CHECK(t.root() == merkle_root(leaves));
}

TEST_CASE("pinned roots guard the hash format") {
  // Computed once, and cross-checked with an independent Python hashlib.blake2b
  // model of RFC 9162 MTH; a change here means the tree or hash format changed.
  CHECK(to_hex(empty_root()) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  CHECK(to_hex(test_leaf(0)) == "5187b7a8021bf4f2c004ea3a54cfece1754f11c7624d2363c7f4cf4fddd1441e");
  CHECK(to_hex(merkle_root(test_leaves(5))) ==
        "e905d45b9e0da867c4a0e643050210343a349df70c7acae6dc773a1554c017de");
  CHECK(to_hex(merkle_root(test_leaves(300))) ==
        "e04fcac2507d080f56b579e02c1c56119171dd143a21b3b8b0071c335ee2aec6");
}

TEST_CASE("inclusion proofs verify for every leaf of every size up to 300") {
  auto leaves = test_leaves(300);
  MerkleTree t = tree_of(leaves);
  for (uint64_t n = 1; n <= leaves.size(); ++n) {
    Hash32 root = *t.root_at(n);
    for (uint64_t i = 0; i < n; ++i) {
      auto proof = t.inclusion_proof(i, n);
      REQUIRE(proof.ok());
      REQUIRE(proof->size() == inclusion_proof_size(i, n));
      Status s = verify_inclusion(leaves[i], i, n, *proof, root);
      REQUIRE_MESSAGE(s.ok(), s.error_text());
    }
  }
}

TEST_CASE("consistency proofs verify for every pair of sizes up to 300") {
  auto leaves = test_leaves(300);
  MerkleTree t = tree_of(leaves);
  std::vector<Hash32> roots;
  for (uint64_t n = 0; n <= leaves.size(); ++n) roots.push_back(*t.root_at(n));
  for (uint64_t n = 1; n <= leaves.size(); ++n) {
    for (uint64_t m = 0; m <= n; ++m) {
      auto proof = t.consistency_proof(m, n);
      REQUIRE(proof.ok());
      REQUIRE(proof->size() == consistency_proof_size(m, n));
      Status s = verify_consistency(m, n, roots[m], roots[n], *proof);
      REQUIRE_MESSAGE(s.ok(), s.error_text());
    }
  }
}

TEST_CASE("proof sizes near 2^64 follow the formula without overflow") {
  const uint64_t top = uint64_t{1} << 63;
  // Leaf 0 of 2^63 + 1: a full left subtree of 2^63 leaves (63 levels), then the last leaf.
  CHECK(inclusion_proof_size(0, top + 1) == 64);
  CHECK(inclusion_proof_size(top, top + 1) == 1);
  CHECK(inclusion_proof_size(UINT64_MAX - 1, UINT64_MAX) == 63);
  CHECK(consistency_proof_size(top, top + 1) == 1);
  CHECK(consistency_proof_size(UINT64_MAX - 2, UINT64_MAX) == 65);  // not representable
  // Verification of such claims runs and fails cleanly.
  std::vector<Hash32> path(64);
  CHECK(verify_inclusion(Hash32{}, 0, top + 1, path, Hash32{}).error().code == Errc::root_mismatch);
}

TEST_CASE("proof requests outside the tree are invalid arguments") {
  MerkleTree t = tree_of(test_leaves(9));
  for (auto r : {t.inclusion_proof(9, 9), t.inclusion_proof(0, 10), t.inclusion_proof(0, 0),
                 t.consistency_proof(5, 4), t.consistency_proof(3, 10)}) {
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  }
  CHECK(t.inclusion_proof(9, 9).error().message ==
        "inclusion proof for leaf 9 of 9 requested from a tree of 9 leaves");
  std::vector<uint64_t> none;
  CHECK(t.multiproof(none).error().code == Errc::invalid_argument);
  std::vector<uint64_t> beyond{3, 9};
  CHECK(t.multiproof(beyond).error().code == Errc::invalid_argument);
}

TEST_CASE("inclusion proof fails when any bit of proof, root or leaf flips") {
  std::mt19937_64 rng(kSeed);
  MESSAGE("seed " << kSeed);
  auto leaves = test_leaves(300);
  MerkleTree t = tree_of(leaves);
  MismatchCounter expect_mismatch;
  auto check_all = [&](uint64_t i, uint64_t n, Flips flips) {
    Hash32 root = *t.root_at(n);
    auto proof = *t.inclusion_proof(i, n);
    for_each_flipped_proof(proof, flips, rng, [&](const std::vector<Hash32>& bad) {
      expect_mismatch(verify_inclusion(leaves[i], i, n, bad, root));
    });
    for_each_flipped_hash(root, flips, rng, [&](const Hash32& bad) {
      expect_mismatch(verify_inclusion(leaves[i], i, n, proof, bad));
    });
    for_each_flipped_hash(leaves[i], flips, rng, [&](const Hash32& bad) {
      expect_mismatch(verify_inclusion(bad, i, n, proof, root));
    });
  };
  for (uint64_t n = 1; n <= 40; ++n) {
    for (uint64_t i = 0; i < n; ++i) check_all(i, n, flips_for_size(n));
  }
  for (int k = 0; k < 2000; ++k) {
    uint64_t n = 41 + rng() % 260;
    check_all(rng() % n, n, Flips::one_random);
  }
  MESSAGE(expect_mismatch.tried << " flipped inclusion proofs");
  CHECK(expect_mismatch.other == 0);
}

TEST_CASE("consistency proof fails when any bit of proof or either root flips") {
  std::mt19937_64 rng(kSeed + 1);
  MESSAGE("seed " << kSeed + 1);
  auto leaves = test_leaves(300);
  MerkleTree t = tree_of(leaves);
  MismatchCounter expect_mismatch;
  auto check_all = [&](uint64_t m, uint64_t n, Flips flips) {
    Hash32 rm = *t.root_at(m), rn = *t.root_at(n);
    auto proof = *t.consistency_proof(m, n);
    for_each_flipped_proof(proof, flips, rng, [&](const std::vector<Hash32>& bad) {
      expect_mismatch(verify_consistency(m, n, rm, rn, bad));
    });
    for_each_flipped_hash(rm, flips, rng, [&](const Hash32& bad) {
      expect_mismatch(verify_consistency(m, n, bad, rn, proof));
    });
    for_each_flipped_hash(rn, flips, rng, [&](const Hash32& bad) {
      expect_mismatch(verify_consistency(m, n, rm, bad, proof));
    });
  };
  for (uint64_t n = 1; n <= 40; ++n) {
    for (uint64_t m = 1; m <= n; ++m) check_all(m, n, flips_for_size(n));
  }
  for (int k = 0; k < 2000; ++k) {
    uint64_t n = 41 + rng() % 260;
    check_all(1 + rng() % n, n, Flips::one_random);
  }
  MESSAGE(expect_mismatch.tried << " flipped consistency proofs");
  CHECK(expect_mismatch.other == 0);
}

TEST_CASE("proofs with the wrong length or parameters fail with a reason") {
  auto leaves = test_leaves(12);
  MerkleTree t = tree_of(leaves);
  Hash32 root = *t.root_at(9);
  auto proof = *t.inclusion_proof(5, 9);
  REQUIRE(proof.size() == 4);

  auto short_proof = std::span(proof).first(3);
  Status s = verify_inclusion(leaves[5], 5, 9, short_proof, root);
  CHECK(s.error().code == Errc::proof_failed);
  CHECK(s.error().message == "inclusion proof for leaf 5 of 9 has 3 hashes, expected 4");
  auto longer = proof;
  longer.push_back(root);
  CHECK(verify_inclusion(leaves[5], 5, 9, longer, root).error().code == Errc::proof_failed);
  CHECK(verify_inclusion(leaves[5], 9, 9, proof, root).error().code == Errc::proof_failed);
  // Another index, or another size with that size's root, fails.
  CHECK(!verify_inclusion(leaves[5], 4, 9, proof, root).ok());
  CHECK(!verify_inclusion(leaves[5], 5, 10, proof, *t.root_at(10)).ok());
  CHECK(!verify_inclusion(leaves[5], 5, 12, proof, *t.root_at(12)).ok());

  Hash32 r5 = *t.root_at(5);
  auto cproof = *t.consistency_proof(5, 9);
  CHECK(verify_consistency(5, 9, r5, root, cproof).ok());
  Status c = verify_consistency(5, 9, r5, root, std::span(cproof).first(cproof.size() - 1));
  CHECK(c.error().code == Errc::proof_failed);
  CHECK(c.error().message == fmt::format("consistency proof from 5 to 9 has {} hashes, expected {}",
                                         cproof.size() - 1, cproof.size()));
  CHECK(verify_consistency(9, 5, root, r5, cproof).error().code == Errc::proof_failed);
  CHECK(!verify_consistency(6, 9, r5, root, cproof).ok());
  CHECK(!verify_consistency(5, 10, r5, *t.root_at(10), cproof).ok());
  // Equal sizes: no proof, equal roots.
  CHECK(verify_consistency(9, 9, root, root, {}).ok());
  CHECK(verify_consistency(9, 9, r5, root, {}).error().code == Errc::root_mismatch);
  CHECK(verify_consistency(9, 9, root, root, cproof).error().code == Errc::proof_failed);
  // From the empty tree: no proof, and the old root is the empty root.
  CHECK(verify_consistency(0, 9, empty_root(), root, {}).ok());
  CHECK(verify_consistency(0, 9, r5, root, {}).error().code == Errc::root_mismatch);
  CHECK(verify_consistency(0, 9, empty_root(), root, cproof).error().code == Errc::proof_failed);
}

TEST_CASE("roots_from_consistency_proof yields the old root the proof implies") {
  auto leaves = test_leaves(20);
  MerkleTree t = tree_of(leaves);
  auto proof = *t.consistency_proof(7, 20);
  auto roots = roots_from_consistency_proof(7, 20, Hash32{}, proof);
  REQUIRE(roots.ok());
  CHECK(roots->old_root == *t.root_at(7));
  CHECK(roots->new_root == t.root());
  // m a power of two: the old root is the seed given.
  auto proof8 = *t.consistency_proof(8, 20);
  auto roots8 = roots_from_consistency_proof(8, 20, *t.root_at(8), proof8);
  REQUIRE(roots8.ok());
  CHECK(roots8->new_root == t.root());
}

TEST_CASE("set, append and truncate keep the root equal to the reference") {
  std::mt19937_64 rng(kSeed + 2);
  MESSAGE("seed " << kSeed + 2);
  MerkleTree t;
  std::vector<Hash32> mirror;
  uint64_t next = 0;
  for (int step = 0; step < 3000; ++step) {
    int op = static_cast<int>(rng() % 10);
    if (op < 4 || mirror.empty()) {
      int count = 1 + static_cast<int>(rng() % 20);
      for (int c = 0; c < count; ++c) {
        mirror.push_back(test_leaf(next++));
        t.append(mirror.back());
      }
    } else if (op < 9) {
      uint64_t i = rng() % mirror.size();
      mirror[i] = test_leaf(next++);
      t.set(i, mirror[i]);
    } else {
      uint64_t n = rng() % (mirror.size() + 1);
      mirror.resize(n);
      t.truncate(n);
    }
    REQUIRE(t.size() == mirror.size());
    REQUIRE(t.root() == merkle_root(mirror));
    if (!mirror.empty()) {
      uint64_t i = rng() % mirror.size();
      CHECK(t.leaf(i) == mirror[i]);
      REQUIRE(verify_inclusion(mirror[i], i, mirror.size(), *t.inclusion_proof(i, mirror.size()),
                               t.root())
                  .ok());
    }
  }
  t.truncate(0);
  CHECK(t.size() == 0);
  CHECK(t.root() == empty_root());
  t.append(test_leaf(1));
  CHECK(t.root() == test_leaf(1));
}

TEST_CASE("set_many gives the tree set() gives, at every lane width") {
  std::mt19937_64 rng(kSeed + 9);
  MESSAGE("seed " << kSeed + 9);
  const size_t saved = blake2b256::lane_width();
  for (size_t width : {1, 4, 8}) {
    blake2b256::force_lane_width(width);
    CAPTURE(width);
    for (int round = 0; round < 200; ++round) {
      // Sizes around powers of two (incomplete right edges) and odd ones.
      const uint64_t size = round < 20 ? uint64_t{1} + round : 1 + rng() % 3000;
      std::vector<Hash32> mirror = test_leaves(size, round);
      MerkleTree one_by_one = tree_of(mirror);
      MerkleTree batched = one_by_one;
      std::vector<std::pair<uint64_t, Hash32>> updates;
      const uint64_t count = 1 + rng() % std::min<uint64_t>(size, 40);
      for (uint64_t i = 0; i < size; ++i) {
        // Random picks, a clustered run at the end (a B-tree appending), and
        // some leaves "set" to the value they already hold.
        const bool pick = rng() % size < count || i + count / 2 >= size;
        if (!pick) continue;
        const Hash32 leaf = rng() % 5 == 0 ? mirror[i] : test_leaf((uint64_t{1} << 40) + rng());
        updates.emplace_back(i, leaf);
        mirror[i] = leaf;
        one_by_one.set(i, leaf);
      }
      batched.set_many(updates);
      CAPTURE(size);
      CAPTURE(updates.size());
      REQUIRE(batched.root() == merkle_root(mirror));
      REQUIRE(batched.root() == one_by_one.root());
      // Every stored node, not only the root: later proofs read them.
      for (uint64_t n : {size, size / 2 + 1, (size + 1) / 3}) {
        REQUIRE(*batched.root_at(n) == *one_by_one.root_at(n));
      }
      const uint64_t i = rng() % size;
      REQUIRE(*batched.inclusion_proof(i, size) == *one_by_one.inclusion_proof(i, size));
    }
  }
  blake2b256::force_lane_width(saved);
  MerkleTree empty;
  empty.set_many({});
  CHECK(empty.root() == empty_root());
}

std::vector<uint64_t> random_subset(std::mt19937_64& rng, uint64_t size) {
  std::vector<uint64_t> out;
  // Mix sparse, dense and clustered subsets.
  switch (rng() % 3) {
    case 0:
      for (uint64_t i = 0; i < size; ++i)
        if (rng() % 8 == 0) out.push_back(i);
      break;
    case 1:
      for (uint64_t i = 0; i < size; ++i)
        if (rng() % 2 == 0) out.push_back(i);
      break;
    default: {
      uint64_t start = rng() % size, len = 1 + rng() % 10;
      for (uint64_t i = start; i < std::min(size, start + len); ++i) out.push_back(i);
    }
  }
  if (out.empty()) out.push_back(rng() % size);
  return out;
}

std::vector<Hash32> pick(const std::vector<Hash32>& leaves, std::span<const uint64_t> indices) {
  std::vector<Hash32> out;
  for (uint64_t i : indices) out.push_back(leaves[i]);
  return out;
}

TEST_CASE("multiproof verifies for random leaf subsets of random sizes") {
  std::mt19937_64 rng(kSeed + 3);
  MESSAGE("seed " << kSeed + 3);
  for (int k = 0; k < 400; ++k) {
    uint64_t size = 1 + rng() % 700;
    auto leaves = test_leaves(size, static_cast<uint64_t>(k));
    MerkleTree t = tree_of(leaves);
    auto indices = random_subset(rng, size);
    auto proof = t.multiproof(indices);
    REQUIRE(proof.ok());
    REQUIRE(proof->size() == *multiproof_size(indices, size));
    // Shared nodes are sent once: never more than the separate inclusion proofs.
    size_t separate = 0;
    for (uint64_t i : indices) separate += inclusion_proof_size(i, size);
    CHECK(proof->size() <= separate);
    Status s = verify_multiproof(indices, pick(leaves, indices), size, *proof, t.root());
    REQUIRE_MESSAGE(s.ok(), s.error_text());
  }
}

TEST_CASE(
    "multiproof of one leaf holds its inclusion path ordered by position, of all leaves nothing") {
  auto leaves = test_leaves(77);
  MerkleTree t = tree_of(leaves);
  for (uint64_t i = 0; i < 77; ++i) {
    std::vector<uint64_t> one{i};
    auto multi = *t.multiproof(one);
    // The same subtrees as the inclusion path (which runs leaf to root), but
    // listed by position, left to right.
    auto path = *t.inclusion_proof(i, 77);
    if (i == 70) {
      // Leaf 70 of 77: the path is [71,72) [68,70) [64,68) [72,77) [0,64);
      // by position: [0,64) [64,68) [68,70) | leaf 70 | [71,72) [72,77).
      REQUIRE(path.size() == 5);
      std::vector<Hash32> by_position{path[4], path[2], path[1], path[0], path[3]};
      CHECK(multi == by_position);
    }
    auto sorted_multi = multi;
    std::sort(sorted_multi.begin(), sorted_multi.end());
    std::sort(path.begin(), path.end());
    REQUIRE(sorted_multi == path);
  }
  std::vector<uint64_t> all(77);
  for (uint64_t i = 0; i < 77; ++i) all[i] = i;
  CHECK(t.multiproof(all)->empty());
  CHECK(verify_multiproof(all, leaves, 77, {}, t.root()).ok());
}

TEST_CASE("multiproof rejects bad indices, wrong hash counts, wrong leaves and wrong roots") {
  auto leaves = test_leaves(13);
  MerkleTree t = tree_of(leaves);
  Hash32 root = t.root();
  std::vector<uint64_t> idx{1, 2, 7, 12};
  auto lv = pick(leaves, idx);
  auto proof = *t.multiproof(idx);
  REQUIRE(verify_multiproof(idx, lv, 13, proof, root).ok());

  auto fails = [&](std::vector<uint64_t> i, std::vector<Hash32> l, uint64_t size,
                   std::vector<Hash32> p, Hash32 r, Errc code, std::string_view msg = {}) {
    Status s = verify_multiproof(i, l, size, p, r);
    REQUIRE(!s.ok());
    CHECK(s.error().code == code);
    if (!msg.empty()) CHECK(s.error().message == msg);
  };
  fails({1, 7, 2, 12}, lv, 13, proof, root, Errc::proof_failed,
        "multiproof leaf indices are not strictly increasing: index 2 at position 2 follows 7");
  fails({1, 2, 2, 12}, lv, 13, proof, root, Errc::proof_failed);
  fails({1, 2, 7, 13}, lv, 13, proof, root, Errc::proof_failed,
        "multiproof leaf index 13 at position 3 is not below tree size 13");
  fails({}, {}, 13, proof, root, Errc::proof_failed);
  fails(idx, {lv[0], lv[1], lv[2]}, 13, proof, root, Errc::proof_failed);
  auto more = proof;
  more.push_back(root);
  fails(idx, lv, 13, more, root, Errc::proof_failed,
        fmt::format("multiproof for 4 leaves of 13 has {} hashes, expected {}", more.size(),
                    proof.size()));
  fails(idx, lv, 13, std::vector<Hash32>(proof.begin(), proof.end() - 1), root, Errc::proof_failed);
  auto swapped = lv;
  std::swap(swapped[0], swapped[1]);
  fails(idx, swapped, 13, proof, root, Errc::root_mismatch);
  fails(idx, lv, 13, proof, flip(root, 3), Errc::root_mismatch);
  fails(idx, lv, 14, proof, root, Errc::proof_failed);  // another size, another shape
  std::mt19937_64 rng(kSeed);
  for_each_flipped_proof(proof, Flips::every_bit, rng, [&](const std::vector<Hash32>& bad) {
    REQUIRE(verify_multiproof(idx, lv, 13, bad, root).error().code == Errc::root_mismatch);
  });
  for (size_t j = 0; j < lv.size(); ++j) {
    auto bad = lv;
    bad[j] = flip(bad[j], 200);
    REQUIRE(verify_multiproof(idx, bad, 13, proof, root).error().code == Errc::root_mismatch);
  }
}

// --- codecs ----------------------------------------------------------------------

template <class T, class Decode>
void check_every_prefix_truncated(const Bytes& enc, Decode decode) {
  for (size_t n = 0; n < enc.size(); ++n) {
    Result<T> r = decode(ByteView(enc.data(), n));
    REQUIRE(!r.ok());
    REQUIRE(r.error().code == Errc::truncated);
  }
}

TEST_CASE("inclusion proof codec round-trips and rejects malformed input") {
  MerkleTree t = tree_of(test_leaves(9));
  InclusionProof p{5, 9, *t.inclusion_proof(5, 9)};
  Bytes enc = encode_inclusion_proof(p);
  CHECK(enc.size() == 1 + 8 + 8 + 4 + 32 * 4);
  auto back = decode_inclusion_proof(enc);
  REQUIRE(back.ok());
  CHECK(*back == p);

  check_every_prefix_truncated<InclusionProof>(enc, decode_inclusion_proof);
  CHECK(decode_inclusion_proof(ByteView(enc.data(), enc.size() - 1)).error().code ==
        Errc::truncated);

  Bytes trailing = enc;
  trailing.push_back(0);
  auto tr = decode_inclusion_proof(trailing);
  CHECK(tr.error().code == Errc::trailing_bytes);
  CHECK(tr.error().message == "inclusion proof: 1 trailing byte(s) at offset 149");

  Bytes bad_version = enc;
  bad_version[0] = 2;
  auto bv = decode_inclusion_proof(bad_version);
  CHECK(bv.error().code == Errc::bad_version);
  CHECK(bv.error().message == "inclusion proof: version at offset 0: 2 is not a known inclusion proof version (expected 1)");

  Bytes over_cap = enc;
  over_cap[17] = 0, over_cap[18] = 0, over_cap[19] = 0, over_cap[20] = 65;
  auto oc = decode_inclusion_proof(over_cap);
  CHECK(oc.error().code == Errc::too_large);
  CHECK(oc.error().message == "inclusion proof: path at offset 17: 65 is over the cap of 64");

  Bytes wrong_len = enc;
  wrong_len[20] = 3;
  auto wl = decode_inclusion_proof(wrong_len);
  CHECK(wl.error().code == Errc::bad_value);
  CHECK(wl.error().message ==
        "inclusion proof: path at offset 17: 3 hashes, but leaf 5 of 9 needs 4");

  Bytes index_beyond = encode_inclusion_proof({9, 9, {}});
  CHECK(decode_inclusion_proof(index_beyond).error().code == Errc::bad_value);
}

TEST_CASE("consistency proof codec round-trips and rejects malformed input") {
  MerkleTree t = tree_of(test_leaves(9));
  ConsistencyProof p{5, 9, *t.consistency_proof(5, 9)};
  Bytes enc = encode_consistency_proof(p);
  auto back = decode_consistency_proof(enc);
  REQUIRE(back.ok());
  CHECK(*back == p);
  ConsistencyProof same{9, 9, {}};
  CHECK(*decode_consistency_proof(encode_consistency_proof(same)) == same);

  check_every_prefix_truncated<ConsistencyProof>(enc, decode_consistency_proof);
  Bytes trailing = enc;
  trailing.push_back(7);
  CHECK(decode_consistency_proof(trailing).error().code == Errc::trailing_bytes);
  Bytes bad_version = enc;
  bad_version[0] = 0;
  CHECK(decode_consistency_proof(bad_version).error().code == Errc::bad_version);
  Bytes over_cap = enc;
  over_cap[17] = 0xff;
  CHECK(decode_consistency_proof(over_cap).error().code == Errc::too_large);
  Bytes wrong_len = enc;
  wrong_len[20] = static_cast<uint8_t>(p.path.size() + 1);
  auto wl = decode_consistency_proof(wrong_len);
  CHECK(wl.error().code == Errc::bad_value);
  CHECK(wl.error().message ==
        fmt::format("consistency proof: path at offset 17: {} hashes, but sizes 5 to 9 need {}",
                    p.path.size() + 1, p.path.size()));
  auto backwards = decode_consistency_proof(encode_consistency_proof({9, 5, p.path}));
  CHECK(backwards.error().code == Errc::bad_value);
  CHECK(backwards.error().message ==
        "consistency proof: old_size at offset 1: old size 9 is above new size 5");
}

TEST_CASE("hash list codec round-trips and checks its cap before allocating") {
  auto hashes = test_leaves(5);
  Bytes enc = encode_hash_list(hashes);
  CHECK(enc.size() == 4 + 5 * 32);
  CHECK(*decode_hash_list(enc, 5) == hashes);
  CHECK(decode_hash_list(enc, 4).error().code == Errc::too_large);
  check_every_prefix_truncated<std::vector<Hash32>>(
      enc, [](ByteView b) { return decode_hash_list(b, 5); });
  Bytes trailing = enc;
  trailing.push_back(1);
  CHECK(decode_hash_list(trailing, 5).error().code == Errc::trailing_bytes);
  // A huge count on a short input fails as truncated without allocating.
  Bytes huge{0xff, 0xff, 0xff, 0xff};
  auto h = decode_hash_list(huge, SIZE_MAX);
  CHECK(h.error().code == Errc::truncated);
  CHECK(decode_hash_list(encode_hash_list({}), 0)->empty());
}

TEST_CASE("multiproof codec round-trips and rejects malformed input") {
  MerkleTree t = tree_of(test_leaves(13));
  MultiProof p{13, {1, 2, 7, 12}, {}};
  p.hashes = *t.multiproof(p.indices);
  Bytes enc = encode_multiproof(p);
  auto back = decode_multiproof(enc);
  REQUIRE(back.ok());
  CHECK(*back == p);

  check_every_prefix_truncated<MultiProof>(enc, decode_multiproof);
  Bytes trailing = enc;
  trailing.push_back(0);
  CHECK(decode_multiproof(trailing).error().code == Errc::trailing_bytes);
  Bytes bad_version = enc;
  bad_version[0] = 9;
  CHECK(decode_multiproof(bad_version).error().code == Errc::bad_version);
  Bytes over_cap = enc;
  over_cap[9] = 0x01;  // index count 0x01000004 > kMaxMultiproofLeaves
  CHECK(decode_multiproof(over_cap).error().code == Errc::too_large);

  auto rejects = [](MultiProof q, Errc code) {
    auto r = decode_multiproof(encode_multiproof(q));
    REQUIRE(!r.ok());
    CHECK(r.error().code == code);
    return r.error().message;
  };
  CHECK(rejects({13, {1, 7, 2, 12}, p.hashes}, Errc::bad_value) ==
        "multiproof: index at offset 29: leaf 2 at position 2 is not above the previous one and "
        "below tree size 13");
  rejects({13, {1, 2, 2, 12}, p.hashes}, Errc::bad_value);
  rejects({13, {1, 2, 7, 13}, p.hashes}, Errc::bad_value);
  rejects({13, {}, {}}, Errc::bad_value);
  auto fewer = p.hashes;
  fewer.pop_back();
  rejects({13, p.indices, fewer}, Errc::bad_value);
  auto more = p.hashes;
  more.push_back(Hash32{});
  rejects({13, p.indices, more}, Errc::bad_value);
}

}  // namespace
}  // namespace swarmlite
