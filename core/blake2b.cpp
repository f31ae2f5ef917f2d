// BLAKE2b-256, portable implementation and the per-process choice
// (core/blake2b.h; docs/performance.md "BLAKE2b: libsodium's SIMD code or
// plain 64-bit code"). The algorithm is RFC 7693 section 3: the compression
// function F with 12 rounds of the G mixing function over a 16-word state.
#include "core/blake2b.h"

#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics (those built on _mm512_undefined_epi32, such as
// _mm512_ror_epi64) trip -W(maybe-)uninitialized inside the header (GCC bug
// 105593, fixed in GCC 13): silenced for the header's own lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace swarmlite::blake2b256 {
namespace {

constexpr uint64_t kIv[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                             0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                             0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

// Parameter block word 0: digest length 32, key length 0, fanout 1, depth 1.
constexpr uint64_t kParam0 = 0x01010000ULL ^ 32;

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

// ---------------------------------------------------------------------------
// Multi-lane hashing (hash_lanes): W messages at once, message j in lane j of
// every vector, so each vector instruction does the work of one scalar
// instruction for W messages (docs/performance.md "Multi-lane BLAKE2b for a
// commit's pages"). Each lane has its own length: its own byte counter and
// last-block flag per block; once a lane's message has ended, its digest is
// stored and the lane idles while the longer ones go on (docs/performance.md
// "Leaf hashes in lanes"). x86-64 only; elsewhere hash_lanes runs the scalar code.
#if defined(__x86_64__)

// Block k (bytes [128k, 128k + len) of prefix || data) of a lane's message:
// a pointer into `data` when the block lies wholly inside it and is full,
// else the bytes copied into `tmp` and zero padded (the first block when
// there is a prefix, and a short last block).
inline const uint8_t* lane_block(const LaneInput& in, size_t prefix_len, size_t k, size_t len,
                                 uint8_t* tmp) {
  const size_t at = 128 * k;
  if (at >= prefix_len && len == 128) return in.data + (at - prefix_len);
  std::memset(tmp, 0, 128);
  size_t i = 0;
  if (at < prefix_len) {
    i = std::min(prefix_len - at, len);
    std::memcpy(tmp, in.prefix + at, i);
  }
  if (i < len) std::memcpy(tmp + i, in.data + (at + i - prefix_len), len - i);
  return tmp;
}

// G and a round over vectors of lanes, with the operations VADD, VXOR and
// VROR<n> that each kernel defines (the same schedule as SWL_B2B_ROUND).
#define SWL_B2B_VG(a, b, c, d, x, y) \
  do {                               \
    a = VADD(VADD(a, b), x);         \
    d = VROR32(VXOR(d, a));          \
    c = VADD(c, d);                  \
    b = VROR24(VXOR(b, c));          \
    a = VADD(VADD(a, b), y);         \
    d = VROR16(VXOR(d, a));          \
    c = VADD(c, d);                  \
    b = VROR63(VXOR(b, c));          \
  } while (0)

#define SWL_B2B_VROUND(r)                             \
  do {                                                \
    const uint8_t* s = kSigma[(r) % 10];              \
    SWL_B2B_VG(v0, v4, v8, v12, m[s[0]], m[s[1]]);    \
    SWL_B2B_VG(v1, v5, v9, v13, m[s[2]], m[s[3]]);    \
    SWL_B2B_VG(v2, v6, v10, v14, m[s[4]], m[s[5]]);   \
    SWL_B2B_VG(v3, v7, v11, v15, m[s[6]], m[s[7]]);   \
    SWL_B2B_VG(v0, v5, v10, v15, m[s[8]], m[s[9]]);   \
    SWL_B2B_VG(v1, v6, v11, v12, m[s[10]], m[s[11]]); \
    SWL_B2B_VG(v2, v7, v8, v13, m[s[12]], m[s[13]]);  \
    SWL_B2B_VG(v3, v4, v9, v14, m[s[14]], m[s[15]]);  \
  } while (0)

// F over vectors: h (8 vectors) absorbs the message words m (16 vectors),
// with each lane's byte counter in vector T and its last-block flag (all
// ones or zero) in vector F.
#define SWL_B2B_VCOMPRESS(SET1, T, F)                                         \
  do {                                                                        \
    auto v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3];                          \
    auto v4 = h[4], v5 = h[5], v6 = h[6], v7 = h[7];                          \
    auto v8 = SET1(kIv[0]), v9 = SET1(kIv[1]), v10 = SET1(kIv[2]);            \
    auto v11 = SET1(kIv[3]), v12 = VXOR(SET1(kIv[4]), T), v13 = SET1(kIv[5]); \
    auto v14 = VXOR(SET1(kIv[6]), F), v15 = SET1(kIv[7]);                     \
    SWL_B2B_VROUND(0);                                                        \
    SWL_B2B_VROUND(1);                                                        \
    SWL_B2B_VROUND(2);                                                        \
    SWL_B2B_VROUND(3);                                                        \
    SWL_B2B_VROUND(4);                                                        \
    SWL_B2B_VROUND(5);                                                        \
    SWL_B2B_VROUND(6);                                                        \
    SWL_B2B_VROUND(7);                                                        \
    SWL_B2B_VROUND(8);                                                        \
    SWL_B2B_VROUND(9);                                                        \
    SWL_B2B_VROUND(10);                                                       \
    SWL_B2B_VROUND(11);                                                       \
    h[0] = VXOR(h[0], VXOR(v0, v8));                                          \
    h[1] = VXOR(h[1], VXOR(v1, v9));                                          \
    h[2] = VXOR(h[2], VXOR(v2, v10));                                         \
    h[3] = VXOR(h[3], VXOR(v3, v11));                                         \
    h[4] = VXOR(h[4], VXOR(v4, v12));                                         \
    h[5] = VXOR(h[5], VXOR(v5, v13));                                         \
    h[6] = VXOR(h[6], VXOR(v6, v14));                                         \
    h[7] = VXOR(h[7], VXOR(v7, v15));                                         \
  } while (0)

// mid[0], the chaining value before the first block (as portable_init sets it).
inline void set_initial_midstate(const LaneInput& in) {
  if (in.mid == nullptr) return;
  for (int i = 0; i < 8; ++i) in.mid[0].h[i] = kIv[i];
  in.mid[0].h[0] ^= kParam0;
}

// Per-lane block bookkeeping of a group of W lanes, lane j of length
// prefix_len + data_len[j]: block k's byte counter and last-block flag per
// lane, and which lanes still have a block k. A lane past its last block
// compresses a block of zeros into a chaining value nobody reads: its digest
// was stored at its last block, and nothing is stored for it after that.
template <size_t W>
struct LaneBlocks {
  size_t n[W];       // message lengths
  size_t blocks[W];  // resumable_blocks(n): index of the last block
  size_t most = 0;   // the largest of blocks[]
  alignas(64) uint64_t t[W];
  alignas(64) uint64_t f[W];
  unsigned live = 0;  // bit j: lane j has block k

  LaneBlocks(size_t prefix_len, const size_t* data_len) {
    for (size_t j = 0; j < W; ++j) {
      n[j] = prefix_len + data_len[j];
      blocks[j] = resumable_blocks(n[j]);
      most = std::max(most, blocks[j]);
    }
  }
  // Block k's pointers into (or copies of) each lane's message.
  void at(size_t k, const LaneInput* in, size_t prefix_len, uint8_t (*tmp)[128],
          const uint8_t** p) {
    static constexpr uint8_t kZeros[128] = {};
    live = 0;
    for (size_t j = 0; j < W; ++j) {
      if (k > blocks[j]) {
        t[j] = f[j] = 0;
        p[j] = kZeros;
        continue;
      }
      live |= 1u << j;
      const bool last = k == blocks[j];
      t[j] = last ? n[j] : 128 * (k + 1);
      f[j] = last ? ~uint64_t{0} : 0;
      p[j] = lane_block(in[j], prefix_len, k, last ? n[j] - 128 * k : 128, tmp[j]);
    }
  }
  bool is_live(size_t j) const { return (live >> j) & 1u; }
  bool is_last(size_t k, size_t j) const { return k == blocks[j]; }
};

// Compiled for AVX2 / AVX-512 whatever the build's baseline: called only
// when the CPU has them (supported_width()).
#define SWL_TARGET_AVX2 __attribute__((target("avx2")))
#define SWL_TARGET_AVX512 __attribute__((target("avx512f")))

// 4 x 4 transpose of 64-bit words: r[i] word j becomes r[j] word i.
SWL_TARGET_AVX2 __attribute__((always_inline)) inline void transpose4(__m256i& a, __m256i& b,
                                                                      __m256i& c, __m256i& d) {
  const __m256i t0 = _mm256_unpacklo_epi64(a, b);  // a0 b0 a2 b2
  const __m256i t1 = _mm256_unpackhi_epi64(a, b);  // a1 b1 a3 b3
  const __m256i t2 = _mm256_unpacklo_epi64(c, d);  // c0 d0 c2 d2
  const __m256i t3 = _mm256_unpackhi_epi64(c, d);  // c1 d1 c3 d3
  a = _mm256_permute2x128_si256(t0, t2, 0x20);     // a0 b0 c0 d0
  b = _mm256_permute2x128_si256(t1, t3, 0x20);     // a1 b1 c1 d1
  c = _mm256_permute2x128_si256(t0, t2, 0x31);     // a2 b2 c2 d2
  d = _mm256_permute2x128_si256(t1, t3, 0x31);     // a3 b3 c3 d3
}

// Four messages (in[0..3]), message j prefix_len + data_len[j] bytes.
SWL_TARGET_AVX2 void hash4(const LaneInput* in, size_t prefix_len, const size_t* data_len) {
#define VADD(a, b) _mm256_add_epi64(a, b)
#define VXOR(a, b) _mm256_xor_si256(a, b)
#define VROR32(x) _mm256_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1))
#define VROR24(x) _mm256_shuffle_epi8(x, rot24)
#define VROR16(x) _mm256_shuffle_epi8(x, rot16)
#define VROR63(x) _mm256_or_si256(_mm256_srli_epi64(x, 63), _mm256_add_epi64(x, x))
  // Rotations by whole bytes are byte shuffles: result byte i = byte (i + r) % 8.
  const __m256i rot24 = _mm256_setr_epi8(3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, 3, 4,
                                         5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10);
  const __m256i rot16 = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, 2, 3,
                                         4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
  LaneBlocks<4> lanes(prefix_len, data_len);
  __m256i h[8];
  for (int i = 0; i < 8; ++i)
    h[i] = _mm256_set1_epi64x(static_cast<long long>(kIv[i] ^ (i == 0 ? kParam0 : 0)));
  alignas(32) uint8_t tmp[4][128];
  for (int j = 0; j < 4; ++j) set_initial_midstate(in[j]);
  for (size_t k = 0; k <= lanes.most; ++k) {
    const uint8_t* p[4];
    lanes.at(k, in, prefix_len, tmp, p);
    // m[4q + i] lane j = word 4q + i of lane j's block: 4 x 4 transposes.
    __m256i m[16];
    for (int q = 0; q < 4; ++q) {
      for (int j = 0; j < 4; ++j)
        m[4 * q + j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[j] + 32 * q));
      transpose4(m[4 * q], m[4 * q + 1], m[4 * q + 2], m[4 * q + 3]);
    }
    const __m256i t = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes.t));
    const __m256i f = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes.f));
#define SET1(x) _mm256_set1_epi64x(static_cast<long long>(x))
    SWL_B2B_VCOMPRESS(SET1, t, f);
#undef SET1
    // Lane j's chaining value: words 0..3 and 4..7, transposed back.
    __m256i lo[4] = {h[0], h[1], h[2], h[3]}, hi[4] = {h[4], h[5], h[6], h[7]};
    transpose4(lo[0], lo[1], lo[2], lo[3]);
    transpose4(hi[0], hi[1], hi[2], hi[3]);
    for (size_t j = 0; j < 4; ++j) {
      if (!lanes.is_live(j)) continue;
      if (!lanes.is_last(k, j)) {
        if (in[j].mid == nullptr) continue;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(in[j].mid[k + 1].h), lo[j]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(in[j].mid[k + 1].h + 4), hi[j]);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(in[j].out), lo[j]);
      }
    }
  }
#undef VADD
#undef VXOR
#undef VROR32
#undef VROR24
#undef VROR16
#undef VROR63
}

// 8 x 8 transpose of 64-bit words: r[i] word j becomes r[j] word i.
SWL_TARGET_AVX512 __attribute__((always_inline)) inline void transpose8(__m512i* r) {
  const __m512i t0 = _mm512_unpacklo_epi64(r[0], r[1]);  // r0[0] r1[0] r0[2] r1[2] .. r0[6] r1[6]
  const __m512i t1 = _mm512_unpackhi_epi64(r[0], r[1]);  // r0[1] r1[1] r0[3] r1[3] .. r0[7] r1[7]
  const __m512i t2 = _mm512_unpacklo_epi64(r[2], r[3]);
  const __m512i t3 = _mm512_unpackhi_epi64(r[2], r[3]);
  const __m512i t4 = _mm512_unpacklo_epi64(r[4], r[5]);
  const __m512i t5 = _mm512_unpackhi_epi64(r[4], r[5]);
  const __m512i t6 = _mm512_unpacklo_epi64(r[6], r[7]);
  const __m512i t7 = _mm512_unpackhi_epi64(r[6], r[7]);
  // Index 0..7 picks from the first operand, 8..15 from the second.
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  const __m512i s0 = _mm512_permutex2var_epi64(t0, lo, t2);  // r0..r3 word 0, r0..r3 word 4
  const __m512i s2 = _mm512_permutex2var_epi64(t0, hi, t2);  // words 2, 6
  const __m512i s1 = _mm512_permutex2var_epi64(t1, lo, t3);  // words 1, 5
  const __m512i s3 = _mm512_permutex2var_epi64(t1, hi, t3);  // words 3, 7
  const __m512i s4 = _mm512_permutex2var_epi64(t4, lo, t6);  // r4..r7 words 0, 4
  const __m512i s6 = _mm512_permutex2var_epi64(t4, hi, t6);
  const __m512i s5 = _mm512_permutex2var_epi64(t5, lo, t7);
  const __m512i s7 = _mm512_permutex2var_epi64(t5, hi, t7);
  const __m512i first = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
  const __m512i second = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
  r[0] = _mm512_permutex2var_epi64(s0, first, s4);
  r[4] = _mm512_permutex2var_epi64(s0, second, s4);
  r[1] = _mm512_permutex2var_epi64(s1, first, s5);
  r[5] = _mm512_permutex2var_epi64(s1, second, s5);
  r[2] = _mm512_permutex2var_epi64(s2, first, s6);
  r[6] = _mm512_permutex2var_epi64(s2, second, s6);
  r[3] = _mm512_permutex2var_epi64(s3, first, s7);
  r[7] = _mm512_permutex2var_epi64(s3, second, s7);
}

// Eight messages (in[0..7]), message j prefix_len + data_len[j] bytes.
SWL_TARGET_AVX512 void hash8(const LaneInput* in, size_t prefix_len, const size_t* data_len) {
#define VADD(a, b) _mm512_add_epi64(a, b)
#define VXOR(a, b) _mm512_xor_si512(a, b)
#define VROR32(x) _mm512_ror_epi64(x, 32)
#define VROR24(x) _mm512_ror_epi64(x, 24)
#define VROR16(x) _mm512_ror_epi64(x, 16)
#define VROR63(x) _mm512_ror_epi64(x, 63)
  LaneBlocks<8> lanes(prefix_len, data_len);
  __m512i h[8];
  for (int i = 0; i < 8; ++i)
    h[i] = _mm512_set1_epi64(static_cast<long long>(kIv[i] ^ (i == 0 ? kParam0 : 0)));
  alignas(64) uint8_t tmp[8][128];
  for (int j = 0; j < 8; ++j) set_initial_midstate(in[j]);
  for (size_t k = 0; k <= lanes.most; ++k) {
    const uint8_t* p[8];
    lanes.at(k, in, prefix_len, tmp, p);
    // m[i] lane j = word i of lane j's block: two 8 x 8 transposes.
    __m512i m[16];
    for (int j = 0; j < 8; ++j) {
      m[j] = _mm512_loadu_si512(p[j]);
      m[8 + j] = _mm512_loadu_si512(p[j] + 64);
    }
    transpose8(m);
    transpose8(m + 8);
    const __m512i t = _mm512_load_si512(lanes.t);
    const __m512i f = _mm512_load_si512(lanes.f);
#define SET1(x) _mm512_set1_epi64(static_cast<long long>(x))
    SWL_B2B_VCOMPRESS(SET1, t, f);
#undef SET1
    // Lane j's chaining value, transposed back.
    __m512i c[8] = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]};
    transpose8(c);
    for (size_t j = 0; j < 8; ++j) {
      if (!lanes.is_live(j)) continue;
      if (!lanes.is_last(k, j)) {
        if (in[j].mid != nullptr) _mm512_storeu_si512(in[j].mid[k + 1].h, c[j]);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(in[j].out), _mm512_castsi512_si256(c[j]));
      }
    }
  }
#undef VADD
#undef VXOR
#undef VROR32
#undef VROR24
#undef VROR16
#undef VROR63
}

#endif  // __x86_64__

#undef SWL_B2B_VCOMPRESS
#undef SWL_B2B_VROUND
#undef SWL_B2B_VG

// The widest lane count this CPU runs: 8 (AVX-512F), 4 (AVX2) or 1.
size_t supported_width() {
#if defined(__x86_64__)
  static const size_t width = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2")) return size_t{8};
    if (__builtin_cpu_supports("avx2")) return size_t{4};
    return size_t{1};
  }();
  return width;
#else
  return 1;
#endif
}

// `want` rounded down to a width this CPU runs (1, 4 or 8).
size_t usable_width(size_t want) {
  const size_t w = want >= 8 ? 8 : want >= 4 ? 4 : 1;
  return std::min(w, supported_width());
}

std::atomic<size_t>& width_setting() {
  static std::atomic<size_t> width{[] {
    // SWARMLITE_BLAKE2B_LANES=1|4|8 forces a width (capped at what the CPU
    // runs); otherwise the widest, the fastest per message on the CPUs
    // measured (docs/performance.md "Multi-lane BLAKE2b for a commit's pages").
    if (const char* forced = std::getenv("SWARMLITE_BLAKE2B_LANES")) {
      const std::string v(forced);
      if (v == "1" || v == "4" || v == "8") return usable_width(std::stoul(v));
    }
    return supported_width();
  }()};
  return width;
}

// The width for a group of at most four messages when the process runs 8
// lanes: 4 where the AVX2 kernel hashes four messages faster than the AVX-512
// one with four lanes idle (AMD Zen 4, whose AVX-512 runs 256 bits at a time:
// 7.3 against 9.6 µs for four 4 KiB pages), else 8 (Zen 5: 7.2 against 6.5;
// docs/performance.md "Four lanes for short groups"). Timed once per process,
// best of five interleaved runs of each (about 0.1 ms); a width forced by
// SWARMLITE_BLAKE2B_LANES is used as it is.
size_t short_group_width() {
  static const size_t width = [] {
    if (supported_width() < 8 || std::getenv("SWARMLITE_BLAKE2B_LANES") != nullptr) {
      return supported_width();
    }
#if defined(__x86_64__)
    static uint8_t pages[4][4096];
    for (size_t p = 0; p < 4; ++p) {
      for (size_t i = 0; i < 4096; ++i) pages[p][i] = static_cast<uint8_t>(i * 131 + p * 7);
    }
    static constexpr uint8_t kPrefix[5] = {};
    uint8_t out[8][32];
    LaneInput group[8];
    for (size_t j = 0; j < 8; ++j)
      group[j] = {kPrefix, pages[std::min<size_t>(j, 3)], nullptr, out[j]};
    auto time_one = [&](auto&& kernel) {
      const auto start = std::chrono::steady_clock::now();
      for (int r = 0; r < 4; ++r) {
        const size_t lens[8] = {4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096};
        kernel(group, sizeof kPrefix, lens);
        pages[0][0] ^= out[0][0];  // each run depends on the last
      }
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    double best4 = 1e9, best8 = 1e9;
    for (int i = 0; i < 5; ++i) {
      best4 = std::min(best4, time_one(hash4));
      best8 = std::min(best8, time_one(hash8));
    }
    return best4 < best8 ? size_t{4} : size_t{8};
#else
    return supported_width();
#endif
  }();
  return width;
}

// One message by the scalar code.
void hash_one(const LaneInput& in, size_t prefix_len, size_t data_len) {
  if (in.mid != nullptr) {
    portable_hash_resumable(in.prefix, prefix_len, in.data, data_len, 0, in.mid, in.out);
    return;
  }
  PortableState s;
  portable_init(s);
  portable_update(s, in.prefix, prefix_len);
  portable_update(s, in.data, data_len);
  portable_final(s, in.out);
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
  s.h[0] ^= kParam0;
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

size_t lane_width() { return width_setting().load(std::memory_order_relaxed); }

size_t force_lane_width(size_t width) {
  return width_setting().exchange(usable_width(width), std::memory_order_relaxed);
}

namespace {

// `width` for groups of five or more messages, `short_width` (<= width) for
// a last group of at most four. Message i is prefix_len + len(i) bytes.
template <class Len>
void hash_lanes_with(size_t width, size_t short_width, std::span<const LaneInput> in,
                     size_t prefix_len, Len&& len) {
  size_t i = 0;
  while (i < in.size()) {
    const size_t left = in.size() - i;
    // One or two messages: the scalar code. A group costs about as much as
    // its widest lane's hash whatever lanes are idle (on the Zen 5 guest an
    // 8-lane group of 4 KiB pages 6.5 µs, a 4-lane one 7.2 µs, one page
    // 2.9 µs: docs/performance.md "Multi-lane BLAKE2b for a commit's pages"),
    // so lanes pay from three messages on.
    if (width == 1 || left <= 2) {
      hash_one(in[i], prefix_len, len(i));
      ++i;
      continue;
    }
#if defined(__x86_64__)
    const size_t w = left <= 4 ? short_width : width;
    const size_t take = std::min(w, left);
    // Idle lanes hash a copy of the group's last message into scratch space.
    LaneInput group[8];
    size_t lens[8];
    uint8_t scratch[32];
    for (size_t j = 0; j < w; ++j) {
      group[j] = in[i + std::min(j, take - 1)];
      lens[j] = len(i + std::min(j, take - 1));
      if (j >= take) {
        group[j].mid = nullptr;
        group[j].out = scratch;
      }
    }
    if (w == 8) {
      hash8(group, prefix_len, lens);
    } else {
      hash4(group, prefix_len, lens);
    }
    i += take;
#endif
  }
}

auto same_length(size_t data_len) {
  return [data_len](size_t) { return data_len; };
}

auto lengths_of(std::span<const LaneInput> in, std::span<const size_t> data_len) {
  if (data_len.size() != in.size()) std::abort();  // a caller's bug: no length for a message
  return [data_len](size_t i) { return data_len[i]; };
}

}  // namespace

void hash_lanes(std::span<const LaneInput> in, size_t prefix_len, size_t data_len) {
  const size_t width = lane_width();
  hash_lanes_with(width, std::min(width, short_group_width()), in, prefix_len,
                  same_length(data_len));
}

void hash_lanes(size_t width, std::span<const LaneInput> in, size_t prefix_len, size_t data_len) {
  width = usable_width(width);
  hash_lanes_with(width, width, in, prefix_len, same_length(data_len));
}

void hash_lanes(std::span<const LaneInput> in, size_t prefix_len,
                std::span<const size_t> data_len) {
  const size_t width = lane_width();
  hash_lanes_with(width, std::min(width, short_group_width()), in, prefix_len,
                  lengths_of(in, data_len));
}

void hash_lanes(size_t width, std::span<const LaneInput> in, size_t prefix_len,
                std::span<const size_t> data_len) {
  width = usable_width(width);
  hash_lanes_with(width, width, in, prefix_len, lengths_of(in, data_len));
}

}  // namespace swarmlite::blake2b256
