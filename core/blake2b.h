// BLAKE2b-256 (RFC 7693, no key, 32-byte digest) in two implementations with
// the same output: libsodium's crypto_generichash and a portable scalar one.
// Why two (docs/performance.md "BLAKE2b: libsodium's SIMD code or plain
// 64-bit code"): libsodium's sodium_init() switches BLAKE2b to its AVX2 code
// wherever the CPU has AVX2, and on some CPUs (AMD Zen, measured) that code
// hashes a 4 KiB page at half the speed of plain 64-bit code; the state tree
// hashes every page a write touches. Which one a process uses is chosen once,
// at its first hash, by timing both on a few pages (or by SWARMLITE_BLAKE2B=
// libsodium|portable). Every hash in core/hash.h goes through the choice.
//
// hash_lanes hashes several messages at once, one per 64-bit lane of AVX2
// (4) or AVX-512 (8) vectors: the state tree hashes a commit's new pages that
// way (docs/performance.md "Multi-lane BLAKE2b for a commit's pages"), the log
// a batch's leaves (core/hash.h hash_leaves). The kernels are compiled for those instruction sets
// whatever the build's baseline and used only when the CPU has them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace swarmlite::blake2b256 {

// The portable implementation: RFC 7693's algorithm, 64-bit words, no SIMD.
struct PortableState {
  uint64_t h[8];
  uint64_t t0;  // bytes hashed so far (low, high word)
  uint64_t t1;
  uint8_t buf[128];
  size_t buflen;  // bytes in buf: 0..128 (a full block waits: it may be the last)
};
void portable_init(PortableState& s);
void portable_update(PortableState& s, const uint8_t* in, size_t n);
void portable_final(PortableState& s, uint8_t out[32]);

// Hashing a message again after a change: BLAKE2b compresses 128-byte blocks
// in order, so the chaining value before the first changed block is that of
// the old message. portable_hash_resumable hashes prefix || data (prefix
// under 128 bytes) and keeps mid[k], the chaining value after the first k
// blocks, for k = 0 .. resumable_blocks(n) (n = the message's length); given
// `from` <= resumable_blocks(n) and mid[0 .. from] of a message whose first
// 128 * from bytes were the same, it starts at block `from` and updates
// mid[from + 1 ..]. The digest is BLAKE2b-256 of the message, as from
// portable_init/update/final (the state tree's page leaves,
// docs/performance.md "Resumed page hashes").
struct Midstate {
  uint64_t h[8];
};
// Blocks compressed before the last one (which is compressed as the last).
constexpr size_t resumable_blocks(size_t n) { return n == 0 ? 0 : (n - 1) / 128; }
void portable_hash_resumable(const uint8_t* prefix, size_t prefix_len, const uint8_t* data,
                             size_t data_len, size_t from, Midstate* mid, uint8_t out[32]);

// One message of a lane-parallel hash: prefix || data.
struct LaneInput {
  const uint8_t* prefix;
  const uint8_t* data;
  // nullptr, or resumable_blocks(n) + 1 entries, filled as
  // portable_hash_resumable fills them with from = 0.
  Midstate* mid;
  uint8_t* out;  // 32 bytes: the digest
};
// Hashes every message of `in`, each prefix_len (< 128) + data_len bytes,
// lane_width() at a time (one or two messages left: the scalar code; in a short
// group the idle lanes hash a copy of its last message into scratch space). A
// group of three or four runs in 4 lanes instead of 8 where that was faster
// when timed at the process's first such call (docs/performance.md "Four lanes
// for short groups").
// Digests and midstates equal portable_hash_resumable's with from = 0.
void hash_lanes(std::span<const LaneInput> in, size_t prefix_len, size_t data_len);
// The same with a given lane width (tests and benchmarks), rounded down to 1,
// 4 or 8 and capped at what the CPU runs; every group in that width.
void hash_lanes(size_t width, std::span<const LaneInput> in, size_t prefix_len, size_t data_len);
// Messages of different lengths: message i is prefix_len + data_len[i] bytes
// (data_len.size() == in.size()). A group of lanes takes as long as its
// longest message, so callers order messages by length where lengths differ
// much (core/hash.h hash_leaves does). Digests and midstates as above.
void hash_lanes(std::span<const LaneInput> in, size_t prefix_len, std::span<const size_t> data_len);
void hash_lanes(size_t width, std::span<const LaneInput> in, size_t prefix_len,
                std::span<const size_t> data_len);
// The lane width hash_lanes uses: 8 (AVX-512F), 4 (AVX2) or 1 (scalar), the
// widest the CPU runs unless SWARMLITE_BLAKE2B_LANES=1|4|8 asks for fewer.
size_t lane_width();
// Tests and benchmarks: sets the width (capped as above); returns the previous.
size_t force_lane_width(size_t width);

enum class Impl { libsodium, portable };
// The implementation this process uses (chosen at the first call; thread-safe).
Impl chosen();
std::string_view name(Impl impl);

}  // namespace swarmlite::blake2b256
