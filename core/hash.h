// BLAKE2b-256 with domain separation (docs/formats/merkle.md):
//   leaf = H(0x00 ‖ data), node = H(0x01 ‖ left ‖ right)
// — the RFC 9162 construction with BLAKE2b-256 in place of SHA-256.
#pragma once

#include <span>

#include "core/bytes.h"

namespace swarmlite {

inline constexpr uint8_t kLeafPrefix = 0x00;
inline constexpr uint8_t kNodePrefix = 0x01;

// Plain BLAKE2b-256 of the bytes (no prefix).
Hash32 blake2b(ByteView data);
Hash32 hash_leaf(ByteView data);
Hash32 hash_node(const Hash32& left, const Hash32& right);
// out[i] = hash_leaf(data[i]) for every i (out.size() == data.size()): from
// three messages on, several at once in the CPU's SIMD lanes (core/blake2b.h
// hash_lanes), grouped by length so that a group's messages end together
// (docs/performance.md "Leaf hashes in lanes"). The log hashes a batch's
// entries this way.
void hash_leaves(std::span<const ByteView> data, std::span<Hash32> out);
void hash_leaves(std::span<const Bytes> data, std::span<Hash32> out);
// Root of the empty tree: BLAKE2b-256 of the empty string (RFC 9162 MTH({})).
const Hash32& empty_root();

// Incremental BLAKE2b-256 for data assembled from parts.
class Hasher {
 public:
  Hasher();
  Hasher& update(ByteView data);
  Hasher& update_u8(uint8_t v) { return update(ByteView(&v, 1)); }
  Hasher& update_u32be(uint32_t v);
  Hash32 finish();

 private:
  alignas(64) unsigned char state_[384];
};

}  // namespace swarmlite
