// frontier_from_last_leaf_path: for every size, the frontier equals the
// complete subtrees of the tree and folds to its root; wrong paths fail.
#include "net/frontier.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <bit>

#include "core/hash.h"
#include "core/merkle.h"

using namespace swarmlite;
using namespace swarmlite::net;

namespace {

Hash32 leaf_of(uint64_t i) { return hash_leaf(as_bytes(fmt::format("entry {}", i))); }

}  // namespace

TEST_CASE("the frontier from the last leaf's path is the tree's complete subtrees") {
  MerkleTree tree;
  std::vector<Hash32> leaves;
  for (uint64_t n = 1; n <= 140; ++n) {
    leaves.push_back(leaf_of(n - 1));
    tree.append(leaves.back());
    INFO("size ", n);
    auto path = tree.inclusion_proof(n - 1, n);
    REQUIRE(path.ok());
    auto f = frontier_from_last_leaf_path(n, leaves.back(), *path);
    REQUIRE_MESSAGE(f.ok(), f.error_text());
    CHECK(f->size == n);
    CHECK(f->root == tree.root_at(n).value());
    // One subtree per set bit of n, largest first, each the root of its leaves.
    REQUIRE(f->subtrees.size() == static_cast<size_t>(std::popcount(n)));
    uint64_t at = 0;
    size_t k = 0;
    for (int bit = 63; bit >= 0; --bit) {
      uint64_t width = uint64_t{1} << bit;
      if (!(n & width)) continue;
      std::span<const Hash32> part(leaves.data() + at, width);
      CHECK(f->subtrees[k] == merkle_root(part));
      at += width;
      ++k;
    }
  }
}

TEST_CASE("a wrong leaf, path or size does not give the head's root, or fails") {
  MerkleTree tree;
  for (uint64_t i = 0; i < 11; ++i) tree.append(leaf_of(i));
  const Hash32 root = tree.root_at(11).value();
  auto path = tree.inclusion_proof(10, 11).value();  // 11 = 0b1011: 0 + 3 - 1 = 2 hashes
  CHECK(frontier_from_last_leaf_path(11, leaf_of(10), path)->root == root);
  CHECK(frontier_from_last_leaf_path(11, leaf_of(9), path)->root != root);
  auto bent = path;
  bent.back()[0] ^= 1;
  CHECK(frontier_from_last_leaf_path(11, leaf_of(10), bent)->root != root);
  auto shorter = path;
  shorter.pop_back();
  CHECK(frontier_from_last_leaf_path(11, leaf_of(10), shorter).error().code == Errc::proof_failed);
  auto longer = path;
  longer.push_back(Hash32{});
  CHECK(frontier_from_last_leaf_path(11, leaf_of(10), longer).error().code == Errc::proof_failed);
  CHECK(frontier_from_last_leaf_path(0, leaf_of(0), {}).error().code == Errc::bad_value);
  // A single leaf: no path, the frontier is the leaf.
  auto one = frontier_from_last_leaf_path(1, leaf_of(0), {});
  REQUIRE(one.ok());
  CHECK(one->root == leaf_of(0));
  CHECK(one->subtrees == std::vector<Hash32>{leaf_of(0)});
}
