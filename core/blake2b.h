// BLAKE2b-256 (RFC 7693, no key, 32-byte digest) in two implementations with
// the same output: libsodium's crypto_generichash and a portable scalar one.
// Why two (docs/performance.md "BLAKE2b: libsodium's SIMD code or plain
// 64-bit code"): libsodium's sodium_init() switches BLAKE2b to its AVX2 code
// wherever the CPU has AVX2, and on some CPUs (AMD Zen, measured) that code
// hashes a 4 KiB page at half the speed of plain 64-bit code; the state tree
// hashes every page a write touches. Which one a process uses is chosen once,
// at its first hash, by timing both on a few pages (or by SWARMLITE_BLAKE2B=
// libsodium|portable). Every hash in core/hash.h goes through the choice.
#pragma once

#include <cstddef>
#include <cstdint>
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

enum class Impl { libsodium, portable };
// The implementation this process uses (chosen at the first call; thread-safe).
Impl chosen();
std::string_view name(Impl impl);

}  // namespace swarmlite::blake2b256
