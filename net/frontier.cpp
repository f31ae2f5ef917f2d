// See frontier.h for the shape argument.
#include "net/frontier.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

#include "core/hash.h"

namespace swarmlite::net {

Result<LogFrontier> frontier_from_last_leaf_path(uint64_t size, const Hash32& leaf,
                                                 std::span<const Hash32> path) {
  if (size == 0) return make_error(Errc::bad_value, "frontier: a log of size 0 has none");
  // Bits 0..t-1 of N-1 are all ones (t = trailing zeros of N): one left sibling
  // per level inside the last subtree; above it, one per set bit of N but the lowest.
  const auto t = static_cast<size_t>(std::countr_zero(size));
  const size_t want = t + static_cast<size_t>(std::popcount(size)) - 1;
  if (path.size() != want) {
    return make_error(Errc::proof_failed,
                      "frontier: the path of the last entry of a tree of {} has {} hashes, not {}",
                      size, want, path.size());
  }
  LogFrontier f;
  f.size = size;
  Hash32 last = leaf;
  for (size_t i = 0; i < t; ++i) last = hash_node(path[i], last);
  f.subtrees.assign(path.begin() + static_cast<std::ptrdiff_t>(t), path.end());
  std::reverse(f.subtrees.begin(), f.subtrees.end());
  f.subtrees.push_back(last);
  f.root = f.subtrees.back();
  for (size_t i = f.subtrees.size() - 1; i-- > 0;) f.root = hash_node(f.subtrees[i], f.root);
  return f;
}

}  // namespace swarmlite::net
