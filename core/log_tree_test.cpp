#include "core/log_tree.h"

#include <doctest/doctest.h>

#include <random>

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

}  // namespace
}  // namespace swarmlite
