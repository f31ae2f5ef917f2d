#include "core/log_tree.h"

#include <doctest/doctest.h>

#include <bit>
#include <optional>
#include <random>

#include "core/blake2b.h"
#include "core/hash.h"
#include "core/merkle.h"

namespace swarmlite {
namespace {

Hash32 test_leaf(uint64_t i) {
  Writer w;
  w.u64(i);
  return hash_leaf(w.bytes());
}

// A LogTree over `leaves`, whose reader checks it is only asked for leaves of
// complete blocks (the contract core/log relies on: the tail is never read).
struct Fixture {
  explicit Fixture(int block_bits) : bits(block_bits), tree(reader(), block_bits) {}
  LogTree::LeafReader reader() {
    return [this](uint64_t first, std::span<Hash32> out) -> Status {
      const uint64_t complete = tree.size() & ~((uint64_t{1} << bits) - 1);
      REQUIRE(first + out.size() <= complete);
      REQUIRE(first >= min_first);
      ++reads;
      if (fail) return make_error(Errc::io_error, "test reader fails");
      std::copy(leaves.begin() + static_cast<ptrdiff_t>(first),
                leaves.begin() + static_cast<ptrdiff_t>(first + out.size()), out.begin());
      return {};
    };
  }
  void append(const Hash32& h) {
    leaves.push_back(h);
    full.append(h);
    tree.append(h);
  }
  int bits;
  std::vector<Hash32> leaves;
  MerkleTree full;
  LogTree tree;
  uint64_t reads = 0;
  bool fail = false;
  uint64_t min_first = 0;  // the reader fails the test if asked for a leaf below it
};

// Every proof the log tree gives for these parameters equals the full tree's.
void check_same(const Fixture& f, uint64_t index, uint64_t size, uint64_t m) {
  CAPTURE(f.bits);
  CAPTURE(f.tree.size());
  CAPTURE(index);
  CAPTURE(size);
  CAPTURE(m);
  REQUIRE(*f.tree.inclusion_proof(index, size) == *f.full.inclusion_proof(index, size));
  REQUIRE(*f.tree.consistency_proof(m, size) == *f.full.consistency_proof(m, size));
  REQUIRE(*f.tree.root_at(m) == *f.full.root_at(m));
}

TEST_CASE("log tree: same roots and proofs as MerkleTree for every size 1..3000") {
  for (int bits : {1, 3, 8}) {
    Fixture f(bits);
    std::mt19937_64 rng(static_cast<uint64_t>(bits));
    const uint64_t block = uint64_t{1} << bits;
    for (uint64_t n = 1; n <= 3000; ++n) {
      f.append(test_leaf(n));
      REQUIRE(f.tree.size() == n);
      REQUIRE(f.tree.root() == f.full.root());
      // Random positions, the edges, and both sides of the block boundaries
      // below n (where a node stops being a lookup and is hashed from leaves).
      const uint64_t edge = n & ~(block - 1);
      const uint64_t picks[] = {0, n - 1, rng() % n, edge > 0 ? edge - 1 : 0, edge % n,
                                (edge + 1) % n, n / 2};
      for (uint64_t index : picks) {
        const uint64_t size = index + 1 + rng() % (n - index);
        check_same(f, index, n, rng() % (n + 1));
        check_same(f, index, size, std::min(index + 1, size));
      }
    }
  }
}

TEST_CASE("log tree: reads at most two blocks per proof, none for root and append") {
  Fixture f(LogTree::kDefaultBlockBits);
  for (uint64_t i = 0; i < 5000; ++i) f.append(test_leaf(i));
  CHECK(f.reads == 0);
  (void)f.tree.root();
  CHECK(f.reads == 0);
  REQUIRE(f.tree.inclusion_proof(1234, 4321).ok());
  CHECK(f.reads <= 2);
  f.reads = 0;
  REQUIRE(f.tree.consistency_proof(777, 4999).ok());
  CHECK(f.reads <= 2);
}

TEST_CASE("log tree: truncate, then append again") {
  std::mt19937_64 rng(7);
  for (int bits : {2, 8}) {
    Fixture f(bits);
    for (int round = 0; round < 40; ++round) {
      const uint64_t grow = 1 + rng() % 700;
      for (uint64_t i = 0; i < grow; ++i) f.append(test_leaf(rng()));
      const uint64_t n = f.tree.size();
      const uint64_t keep = n - rng() % std::min<uint64_t>(n, 600);
      REQUIRE(f.tree.truncate(keep).ok());
      f.full.truncate(keep);
      f.leaves.resize(keep);
      REQUIRE(f.tree.size() == keep);
      REQUIRE(f.tree.root() == f.full.root());
      if (keep > 0) check_same(f, rng() % keep, keep, rng() % (keep + 1));
    }
  }
}

TEST_CASE("log tree: a failing reader fails the proof, not the tree") {
  Fixture f(4);
  for (uint64_t i = 0; i < 100; ++i) f.append(test_leaf(i));
  const Hash32 root = f.tree.root();
  f.fail = true;
  CHECK(f.tree.root() == root);  // needs no read
  auto p = f.tree.inclusion_proof(3, 100);
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == Errc::io_error);
  CHECK_FALSE(f.tree.root_at(50).ok());
  // truncate into an earlier block needs its leaves: the tree stays as it was.
  CHECK_FALSE(f.tree.truncate(40).ok());
  CHECK(f.tree.size() == 100);
  CHECK(f.tree.root() == root);
  // Within the last block no read is needed.
  REQUIRE(f.tree.truncate(97).ok());
  f.full.truncate(97);
  CHECK(f.tree.root() == f.full.root());
  f.fail = false;
  check_same(f, 5, 97, 60);
}

TEST_CASE("log tree: memory grows by a couple of bytes per leaf at most") {
  LogTree tree([](uint64_t, std::span<Hash32>) -> Status { return {}; });
  const size_t before = tree.memory_bytes();
  for (uint64_t i = 0; i < 100000; ++i) tree.append(test_leaf(i));
  // 100,000 / 64 block roots and their parents (≈ 1 byte per leaf), with
  // the vectors' spare capacity: a MerkleTree holds ≈ 6.4 MB for the same leaves.
  CHECK(tree.memory_bytes() - before < 2 * 100000);
  MESSAGE("log tree of 100000 leaves: ", tree.memory_bytes(), " bytes");
}

// ---- Checkpoints (docs/formats/merkle.md "Starting at a checkpoint") ----

// The maximal aligned complete subtrees covering [0, n), left to right.
std::vector<std::pair<uint64_t, uint64_t>> frontier_ranges(uint64_t n) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (uint64_t at = 0, rest = n; rest != 0;) {
    const uint64_t chunk = std::bit_floor(rest);
    out.emplace_back(at, at + chunk);
    at += chunk;
    rest -= chunk;
  }
  return out;
}

// The oracle, independent of LogTree's storage: whether MTH(D[lo:hi]) can be
// computed from the leaves >= base plus the frontier nodes at base (by the RFC
// recursion, a frontier node standing in for the leaves under it).
bool computable(uint64_t base, uint64_t lo, uint64_t hi) {
  for (const auto& r : frontier_ranges(base)) {
    if (r.first == lo && r.second == hi) return true;
  }
  if (hi - lo == 1) return lo >= base;
  const uint64_t k = std::bit_floor(hi - lo - 1);
  return computable(base, lo, lo + k) && computable(base, lo + k, hi);
}

// The nodes PATH(index, D[0:size]) and SUBPROOF(m, D[0:n], true) consist of
// (RFC 9162 §2.1.3.1, §2.1.4.1), as ranges.
std::vector<std::pair<uint64_t, uint64_t>> path_ranges(uint64_t index, uint64_t size) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t lo = 0, hi = size;
  while (hi - lo > 1) {
    const uint64_t mid = lo + std::bit_floor(hi - lo - 1);
    if (index < mid) {
      out.emplace_back(mid, hi);
      hi = mid;
    } else {
      out.emplace_back(lo, mid);
      lo = mid;
    }
  }
  return out;
}
std::vector<std::pair<uint64_t, uint64_t>> subproof_ranges(uint64_t m, uint64_t n) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  if (m == 0 || m == n) return out;
  uint64_t lo = 0, hi = n;
  bool whole = true;
  while (m != hi - lo) {
    const uint64_t k = std::bit_floor(hi - lo - 1);
    if (m <= k) {
      out.emplace_back(lo + k, hi);
      hi = lo + k;
    } else {
      out.emplace_back(lo, lo + k);
      lo += k;
      m -= k;
      whole = false;
    }
  }
  if (!whole) out.emplace_back(lo, hi);
  return out;
}
bool all_computable(uint64_t base, const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  for (const auto& r : ranges) {
    if (!computable(base, r.first, r.second)) return false;
  }
  return true;
}

// A LogTree started at `base` (frontier taken from the full leaves) and grown
// to leaves.size(); its reader refuses leaves below base and leaves of the
// last block.
struct CheckpointFixture {
  CheckpointFixture(std::vector<Hash32> all, uint64_t base_, int bits_)
      : leaves(std::move(all)), base(base_), bits(bits_) {
    for (const Hash32& h : leaves) full.append(h);
    std::vector<Hash32> fr;
    for (const auto& r : frontier_ranges(base)) {
      fr.push_back(
          merkle_root(std::span<const Hash32>(leaves).subspan(r.first, r.second - r.first)));
    }
    auto t = LogTree::at_checkpoint(reader(), base, fr, bits);
    REQUIRE(t.ok());
    tree.emplace(std::move(t).value());
    REQUIRE(tree->size() == base);
    REQUIRE(tree->root() == *full.root_at(base));
    REQUIRE(LogTree::fold_frontier(fr) == *full.root_at(base));
    for (uint64_t i = base; i < leaves.size(); ++i) tree->append(leaves[i]);
  }
  LogTree::LeafReader reader() {
    return [this](uint64_t first, std::span<Hash32> out) -> Status {
      const uint64_t complete = tree->size() & ~((uint64_t{1} << bits) - 1);
      REQUIRE(first >= base);
      REQUIRE(first + out.size() <= complete);
      std::copy(leaves.begin() + static_cast<ptrdiff_t>(first),
                leaves.begin() + static_cast<ptrdiff_t>(first + out.size()), out.begin());
      return {};
    };
  }
  std::vector<Hash32> leaves;
  uint64_t base;
  int bits;
  MerkleTree full;
  std::optional<LogTree> tree;
};

// Every root, inclusion and consistency proof the checkpointed tree answers
// equals MerkleTree's; it fails with not_found exactly where the oracle says
// a leaf below base is needed; and the key fact holds: nothing from base on
// ever needs one.
void check_checkpointed(const LogTree& tree, const MerkleTree& full, uint64_t base,
                        std::mt19937_64& rng) {
  const uint64_t size = tree.size();
  CAPTURE(base);
  CAPTURE(size);
  REQUIRE(tree.root() == *full.root_at(size));
  for (uint64_t n = 0; n <= size; ++n) {
    CAPTURE(n);
    const bool can = n == 0 || computable(base, 0, n);
    if (n >= base) REQUIRE(can);
    auto r = tree.root_at(n);
    REQUIRE(r.ok() == can);
    if (can) {
      REQUIRE(*r == *full.root_at(n));
    } else {
      REQUIRE(r.error().code == Errc::not_found);
    }
    if (n >= base) {
      auto fr = tree.frontier(n);
      REQUIRE(fr.ok());
      REQUIRE(fr->size() == static_cast<size_t>(std::popcount(n)));
      REQUIRE(LogTree::fold_frontier(*fr) == *full.root_at(n));
    }
  }
  if (size == 0) return;
  for (int i = 0; i < 60; ++i) {
    const uint64_t n = 1 + rng() % size;
    const uint64_t index = i % 3 == 0 ? std::min(base, n - 1) : rng() % n;
    const uint64_t m = i % 4 == 0 ? std::min(base, n) : rng() % (n + 1);
    CAPTURE(n);
    CAPTURE(index);
    CAPTURE(m);
    const bool inc_can = all_computable(base, path_ranges(index, n));
    if (index >= base) REQUIRE(inc_can);
    auto inc = tree.inclusion_proof(index, n);
    REQUIRE(inc.ok() == inc_can);
    if (inc_can) {
      REQUIRE(*inc == *full.inclusion_proof(index, n));
    } else {
      REQUIRE(inc.error().code == Errc::not_found);
    }
    const bool con_can = all_computable(base, subproof_ranges(m, n));
    if (m >= base) REQUIRE(con_can);
    auto con = tree.consistency_proof(m, n);
    REQUIRE(con.ok() == con_can);
    if (con_can) {
      REQUIRE(*con == *full.consistency_proof(m, n));
    } else {
      REQUIRE(con.error().code == Errc::not_found);
    }
  }
}

TEST_CASE(
    "log tree at a checkpoint: same answers as MerkleTree where the leaves from base suffice") {
  std::mt19937_64 rng(14);
  int trials = 0;
  for (int bits : {1, 2, 3, 6}) {
    const uint64_t block = uint64_t{1} << bits;
    std::vector<uint64_t> bases = {0, 1, 2, 4, 64, 128, block, block + 1, 3 * block - 1, 255};
    for (int i = 0; i < 25; ++i) bases.push_back(rng() % 400);
    for (uint64_t base : bases) {
      for (uint64_t extra : {uint64_t{0}, uint64_t{1}, block - 1, block, 2 * block + 3,
                             static_cast<uint64_t>(rng() % 300)}) {
        std::vector<Hash32> leaves;
        for (uint64_t i = 0; i < base + extra; ++i) leaves.push_back(test_leaf(i * 7 + base));
        CAPTURE(bits);
        CheckpointFixture f(leaves, base, bits);
        check_checkpointed(*f.tree, f.full, base, rng);
        ++trials;
      }
    }
  }
  MESSAGE(trials, " checkpointed trees compared");
}

TEST_CASE("log tree: append_many gives the tree append gives, in any chunks, at any lane width") {
  // Chunks of 0..150 leaves (a chunk within a block, ending one exactly,
  // spanning several), block sizes 2..64, every lane width the CPU runs, and
  // trees started at a checkpoint (the tail then starts with frontier
  // nodes): every root and proof as MerkleTree's; then cut back and grown
  // again in chunks. A pair taken across a block's start or a node hashed at
  // the wrong level changes some root.
  std::mt19937_64 rng(20261207);
  std::vector<size_t> widths = {1};
  for (size_t w : {size_t{4}, size_t{8}}) {
    const size_t was = blake2b256::force_lane_width(w);
    if (blake2b256::lane_width() == w) widths.push_back(w);
    blake2b256::force_lane_width(was);
  }
  const size_t was = blake2b256::lane_width();
  for (size_t width : widths) {
    blake2b256::force_lane_width(width);
    for (int bits : {1, 2, 3, 6}) {
      for (uint64_t base : {uint64_t{0}, uint64_t{1}, uint64_t{7}, uint64_t{133}}) {
        CAPTURE(width);
        CAPTURE(bits);
        CAPTURE(base);
        std::vector<Hash32> leaves;
        for (uint64_t i = 0; i < base + 700; ++i) leaves.push_back(test_leaf(rng()));
        CheckpointFixture f(
            std::vector<Hash32>(leaves.begin(), leaves.begin() + static_cast<ptrdiff_t>(base)),
            base, bits);
        f.leaves = leaves;
        auto grow = [&](uint64_t from) {
          for (uint64_t i = from; i < leaves.size();) {
            const uint64_t n = std::min<uint64_t>(leaves.size() - i, rng() % 151);
            f.tree->append_many(std::span<const Hash32>(leaves).subspan(i, n));
            for (uint64_t k = i; k < i + n; ++k) f.full.append(leaves[k]);
            i += n;
            REQUIRE(f.tree->size() == i);
            REQUIRE(f.tree->root() == f.full.root());
          }
        };
        grow(base);
        check_checkpointed(*f.tree, f.full, base, rng);
        const uint64_t keep = base + rng() % 700;
        REQUIRE(f.tree->truncate(keep).ok());
        f.full.truncate(keep);
        grow(keep);
        check_checkpointed(*f.tree, f.full, base, rng);
      }
    }
  }
  blake2b256::force_lane_width(was);
}

TEST_CASE("log tree at a checkpoint: a frontier of the wrong length is refused") {
  auto none = [](uint64_t, std::span<Hash32>) -> Status { return {}; };
  std::vector<Hash32> two = {test_leaf(1), test_leaf(2)};
  CHECK(LogTree::at_checkpoint(none, 3, two).ok());
  auto bad = LogTree::at_checkpoint(none, 4, two);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::invalid_argument);
}

TEST_CASE("log tree at a checkpoint: truncate back to base or above, then grow again") {
  std::mt19937_64 rng(41);
  for (int bits : {2, 6}) {
    for (int round = 0; round < 30; ++round) {
      const uint64_t base = rng() % 300;
      std::vector<Hash32> leaves;
      for (uint64_t i = 0; i < base + 200; ++i) leaves.push_back(test_leaf(rng()));
      CheckpointFixture f(leaves, base, bits);
      if (base > 0) CHECK_FALSE(f.tree->truncate(base - 1).ok());
      const uint64_t keep = base + rng() % 201;
      REQUIRE(f.tree->truncate(keep).ok());
      f.full.truncate(keep);
      REQUIRE(f.tree->root() == f.full.root());
      for (uint64_t i = keep; i < leaves.size(); ++i) {
        f.tree->append(leaves[i]);
        f.full.append(leaves[i]);
      }
      check_checkpointed(*f.tree, f.full, base, rng);
    }
  }
}

TEST_CASE("log tree: forget_before keeps exactly what a checkpointed tree knows") {
  std::mt19937_64 rng(99);
  for (int bits : {1, 3, 6}) {
    for (int round = 0; round < 30; ++round) {
      Fixture f(bits);
      const uint64_t n = 1 + rng() % 700;
      for (uint64_t i = 0; i < n; ++i) f.append(test_leaf(rng()));
      // Move the checkpoint forward twice; the reader fails the test if asked
      // for a leaf below it.
      uint64_t base = rng() % (n + 1);
      REQUIRE(f.tree.forget_before(base).ok());
      f.min_first = base;
      CHECK(f.tree.base() == base);
      check_checkpointed(f.tree, f.full, base, rng);
      base += rng() % (n - base + 1);
      REQUIRE(f.tree.forget_before(base).ok());
      f.min_first = base;
      CHECK_FALSE(f.tree.forget_before(base > 0 ? base - 1 : n + 1).ok());
      check_checkpointed(f.tree, f.full, base, rng);
      for (int i = 0; i < 100; ++i) f.append(test_leaf(rng()));
      check_checkpointed(f.tree, f.full, base, rng);
    }
  }
}

}  // namespace
}  // namespace swarmlite
