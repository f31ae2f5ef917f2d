// BLAKE2b-256, portable implementation and the per-process choice
// (core/blake2b.h; docs/performance.md "BLAKE2b: libsodium's SIMD code or
// plain 64-bit code"). The algorithm is RFC 7693 section 3: the compression
// function F with 12 rounds of the G mixing function over a 16-word state.
#include "core/blake2b.h"

#include <sodium.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

namespace swarmlite::blake2b256 {
namespace {

constexpr uint64_t kIv[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                             0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                             0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

// RFC 7693 section 2.7: the message word schedule; round r uses row r mod 10.
constexpr uint8_t kSigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

inline uint64_t rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

inline void store_le64(uint8_t* p, uint64_t v) {
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  std::memcpy(p, &v, 8);
}

// RFC 7693 section 3.1, G: mixes two message words into four state words.
#define SWL_B2B_G(a, b, c, d, x, y) \
  do {                              \
    a = a + b + (x);                \
    d = rotr(d ^ a, 32);            \
    c = c + d;                      \
    b = rotr(b ^ c, 24);            \
    a = a + b + (y);                \
    d = rotr(d ^ a, 16);            \
    c = c + d;                      \
    b = rotr(b ^ c, 63);            \
  } while (0)

// One round: the columns, then the diagonals (RFC 7693 section 3.2).
#define SWL_B2B_ROUND(r)                                                  \
  do {                                                                    \
    const uint8_t* s = kSigma[(r) % 10];                                         \
    SWL_B2B_G(v0, v4, v8, v12, m[s[0]], m[s[1]]);                         \
    SWL_B2B_G(v1, v5, v9, v13, m[s[2]], m[s[3]]);                         \
    SWL_B2B_G(v2, v6, v10, v14, m[s[4]], m[s[5]]);                        \
    SWL_B2B_G(v3, v7, v11, v15, m[s[6]], m[s[7]]);                        \
    SWL_B2B_G(v0, v5, v10, v15, m[s[8]], m[s[9]]);                        \
    SWL_B2B_G(v1, v6, v11, v12, m[s[10]], m[s[11]]);                      \
    SWL_B2B_G(v2, v7, v8, v13, m[s[12]], m[s[13]]);                       \
    SWL_B2B_G(v3, v4, v9, v14, m[s[14]], m[s[15]]);                       \
  } while (0)

// RFC 7693 section 3.2, F: compresses one 128-byte block into the state.
// The sixteen working words are locals (not an array) so they live in
// registers; the rounds are unrolled so every message index is a constant.
void compress(PortableState& st, const uint8_t* block, bool last) {
  uint64_t m[16];
  for (int i = 0; i < 16; ++i) m[i] = load_le64(block + 8 * i);
  uint64_t v0 = st.h[0], v1 = st.h[1], v2 = st.h[2], v3 = st.h[3];
  uint64_t v4 = st.h[4], v5 = st.h[5], v6 = st.h[6], v7 = st.h[7];
  uint64_t v8 = kIv[0], v9 = kIv[1], v10 = kIv[2], v11 = kIv[3];
  uint64_t v12 = kIv[4] ^ st.t0, v13 = kIv[5] ^ st.t1;
  uint64_t v14 = last ? ~kIv[6] : kIv[6], v15 = kIv[7];
  SWL_B2B_ROUND(0);
  SWL_B2B_ROUND(1);
  SWL_B2B_ROUND(2);
  SWL_B2B_ROUND(3);
  SWL_B2B_ROUND(4);
  SWL_B2B_ROUND(5);
  SWL_B2B_ROUND(6);
  SWL_B2B_ROUND(7);
  SWL_B2B_ROUND(8);
  SWL_B2B_ROUND(9);
  SWL_B2B_ROUND(10);
  SWL_B2B_ROUND(11);
  st.h[0] ^= v0 ^ v8;
  st.h[1] ^= v1 ^ v9;
  st.h[2] ^= v2 ^ v10;
  st.h[3] ^= v3 ^ v11;
  st.h[4] ^= v4 ^ v12;
  st.h[5] ^= v5 ^ v13;
  st.h[6] ^= v6 ^ v14;
  st.h[7] ^= v7 ^ v15;
}

#undef SWL_B2B_ROUND
#undef SWL_B2B_G

inline void add_count(PortableState& s, uint64_t n) {
  s.t0 += n;
  if (s.t0 < n) ++s.t1;
}

// Seconds to hash `rounds` times a 4 KiB page and a Merkle node's 65 bytes.
template <class HashFn>
double time_hashes(HashFn&& hash, int rounds) {
  static uint8_t page[4096];
  for (size_t i = 0; i < sizeof page; ++i) page[i] = static_cast<uint8_t>(i * 131 + 7);
  uint8_t out[32] = {};
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < rounds; ++i) {
    page[0] ^= out[0];  // each hash depends on the last: nothing is skipped
    hash(page, sizeof page, out);
    hash(page, 65, out);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Impl choose() {
  // BLAKE2b's libsodium code depends on what sodium_init() picked: initialise
  // first (idempotent, thread-safe; core/keys.cpp does the same).
  if (sodium_init() < 0) std::abort();
  if (const char* forced = std::getenv("SWARMLITE_BLAKE2B")) {
    const std::string v(forced);
    if (v == "libsodium") return Impl::libsodium;
    if (v == "portable") return Impl::portable;
    // An unknown value falls through to timing (hashes are the same either way).
  }
  auto sodium = [](const uint8_t* in, size_t n, uint8_t* out) {
    crypto_generichash(out, 32, in, n, nullptr, 0);
  };
  auto portable = [](const uint8_t* in, size_t n, uint8_t* out) {
    PortableState s;
    portable_init(s);
    portable_update(s, in, n);
    portable_final(s, out);
  };
  // Best of five short runs each, interleaved (about a millisecond in all):
  // the fastest run is the one least disturbed by the rest of the machine.
  double best_sodium = 1e9, best_portable = 1e9;
  for (int i = 0; i < 5; ++i) {
    best_sodium = std::min(best_sodium, time_hashes(sodium, 8));
    best_portable = std::min(best_portable, time_hashes(portable, 8));
  }
  return best_portable < best_sodium ? Impl::portable : Impl::libsodium;
}

}  // namespace

void portable_init(PortableState& s) {
  for (int i = 0; i < 8; ++i) s.h[i] = kIv[i];
  // Parameter block word 0: digest length 32, key length 0, fanout 1, depth 1.
  s.h[0] ^= 0x01010000ULL ^ 32;
  s.t0 = 0;
  s.t1 = 0;
  s.buflen = 0;
}

void portable_update(PortableState& s, const uint8_t* in, size_t n) {
  if (n == 0) return;
  // Fill the buffer; compress it only once more input follows (the last
  // block is compressed by portable_final, flagged as last).
  if (s.buflen + n <= sizeof s.buf) {
    std::memcpy(s.buf + s.buflen, in, n);
    s.buflen += n;
    return;
  }
  if (s.buflen > 0) {
    const size_t fill = sizeof s.buf - s.buflen;
    std::memcpy(s.buf + s.buflen, in, fill);
    in += fill;
    n -= fill;
    add_count(s, sizeof s.buf);
    compress(s, s.buf, false);
    s.buflen = 0;
  }
  // n > 0 here: the buffer was full and more input follows.
  while (n > sizeof s.buf) {
    add_count(s, sizeof s.buf);
    compress(s, in, false);
    in += sizeof s.buf;
    n -= sizeof s.buf;
  }
  std::memcpy(s.buf, in, n);
  s.buflen = n;
}

void portable_final(PortableState& s, uint8_t out[32]) {
  add_count(s, s.buflen);
  std::memset(s.buf + s.buflen, 0, sizeof s.buf - s.buflen);
  compress(s, s.buf, true);
  for (int i = 0; i < 4; ++i) store_le64(out + 8 * i, s.h[i]);
}

void portable_hash_resumable(const uint8_t* prefix, size_t prefix_len, const uint8_t* data,
                             size_t data_len, size_t from, Midstate* mid, uint8_t out[32]) {
  const size_t n = prefix_len + data_len;
  const size_t blocks = resumable_blocks(n);
  PortableState s;
  if (from == 0) {
    portable_init(s);
    std::memcpy(mid[0].h, s.h, sizeof s.h);
  } else {
    std::memcpy(s.h, mid[from].h, sizeof s.h);
  }
  s.t0 = 128 * static_cast<uint64_t>(from);
  s.t1 = 0;
  // Block k is message bytes [128k, 128k + 128): inside `data` once 128k >=
  // prefix_len, else copied together with the prefix.
  auto block = [&](size_t k, uint8_t* tmp, size_t len) -> const uint8_t* {
    const size_t at = 128 * k;
    if (at >= prefix_len && len == 128) return data + (at - prefix_len);
    std::memset(tmp, 0, 128);
    for (size_t i = 0; i < len; ++i) {
      const size_t m = at + i;
      tmp[i] = m < prefix_len ? prefix[m] : data[m - prefix_len];
    }
    return tmp;
  };
  uint8_t tmp[128];
  for (size_t k = from; k < blocks; ++k) {
    add_count(s, 128);
    compress(s, block(k, tmp, 128), false);
    std::memcpy(mid[k + 1].h, s.h, sizeof s.h);
  }
  const size_t rest = n - 128 * blocks;  // 1..128 (0 for the empty message)
  add_count(s, rest);
  compress(s, block(blocks, tmp, rest), true);  // always through tmp: zero padded
  for (int i = 0; i < 4; ++i) store_le64(out + 8 * i, s.h[i]);
}

Impl chosen() {
  static const Impl impl = choose();
  return impl;
}

std::string_view name(Impl impl) {
  return impl == Impl::portable ? "portable" : "libsodium";
}

}  // namespace swarmlite::blake2b256
