// Deterministic randomness: see seeded_stream.h and docs/determinism.md.
#include "sqlbridge/engine/seeded_stream.h"

#include <algorithm>
#include <cstring>

namespace swarmlite {

namespace {

// One 64-byte ChaCha20 block, as libsodium's crypto_stream_chacha20 (the
// original variant: 64-bit block counter, 64-bit nonce) gives it for `key`,
// `nonce` and block `counter`. Hand-written because libsodium's call costs
// 185 ns for the 4 bytes of internal_prng_seed, once per replayed entry; this
// scalar block costs about 85 ns (docs/performance.md "The entry's PRNG seed
// without a libsodium call"). The unit tests compare it with libsodium's
// keystream.
inline uint32_t rotl32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

void chacha20_block(const std::array<uint8_t, 32>& key, const uint8_t nonce[8], uint64_t counter,
                    uint8_t out[64]) {
  uint32_t in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};  // "expand 32-byte k"
  for (int i = 0; i < 8; ++i) in[4 + i] = load_le32(key.data() + 4 * i);
  in[12] = static_cast<uint32_t>(counter);
  in[13] = static_cast<uint32_t>(counter >> 32);
  in[14] = load_le32(nonce);
  in[15] = load_le32(nonce + 4);
  uint32_t x[16];
  std::memcpy(x, in, sizeof x);
  auto qr = [&x](int a, int b, int c, int d) {
    x[a] += x[b];
    x[d] = rotl32(x[d] ^ x[a], 16);
    x[c] += x[d];
    x[b] = rotl32(x[b] ^ x[c], 12);
    x[a] += x[b];
    x[d] = rotl32(x[d] ^ x[a], 8);
    x[c] += x[d];
    x[b] = rotl32(x[b] ^ x[c], 7);
  };
  for (int round = 0; round < 10; ++round) {  // 20 rounds: column and diagonal pairs
    qr(0, 4, 8, 12), qr(1, 5, 9, 13), qr(2, 6, 10, 14), qr(3, 7, 11, 15);
    qr(0, 5, 10, 15), qr(1, 6, 11, 12), qr(2, 7, 8, 13), qr(3, 4, 9, 14);
  }
  for (int i = 0; i < 16; ++i) {
    const uint32_t v = x[i] + in[i];
    for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<uint8_t>(v >> (8 * b));
  }
}

}  // namespace

void SeededStream::fill(uint8_t* out, size_t n) {
  // Keystream bytes [offset_, offset_ + n); ChaCha20 block b covers [64b, 64b + 64).
  static constexpr uint8_t kNonce[8] = {0};
  while (n > 0) {
    uint8_t block[64];
    chacha20_block(key_, kNonce, offset_ / 64, block);
    size_t skip = static_cast<size_t>(offset_ % 64);
    size_t take = std::min(sizeof block - skip, n);
    std::memcpy(out, block + skip, take);
    out += take;
    n -= take;
    offset_ += take;
  }
}

int64_t SeededStream::next_i64() {
  uint8_t b[8];
  fill(b, 8);
  uint64_t u = 0;
  for (uint8_t x : b) u = (u << 8) | x;
  auto r = static_cast<int64_t>(u);
  // As SQLite's random(): never return INT64_MIN (negating it would overflow).
  if (r < 0) r = -(r & INT64_MAX);
  return r;
}

uint32_t SeededStream::internal_prng_seed(const std::array<uint8_t, 32>& seed) {
  // The first 4 keystream bytes under nonce 1 (docs/determinism.md), big-endian.
  static constexpr uint8_t kNonce[8] = {1};
  uint8_t b[64];
  chacha20_block(seed, kNonce, 0, b);
  uint32_t v = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  return v == 0 ? 1 : v;  // 0 would mean "use the OS's randomness"
}

namespace {

void fn_random(sqlite3_context* ctx, int, sqlite3_value**) {
  SeededStream* stream = static_cast<std::unique_ptr<SeededStream>*>(sqlite3_user_data(ctx))->get();
  if (stream == nullptr) {
    sqlite3_result_error(ctx, "random() outside a swarmlite entry", -1);
    return;
  }
  sqlite3_result_int64(ctx, stream->next_i64());
}

void fn_randomblob(sqlite3_context* ctx, int, sqlite3_value** argv) {
  SeededStream* stream = static_cast<std::unique_ptr<SeededStream>*>(sqlite3_user_data(ctx))->get();
  if (stream == nullptr) {
    sqlite3_result_error(ctx, "randomblob() outside a swarmlite entry", -1);
    return;
  }
  sqlite3_int64 n = sqlite3_value_int64(argv[0]);
  if (n < 1) n = 1;  // as SQLite: a 1-byte blob for N < 1
  if (n > sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1)) {
    sqlite3_result_error_toobig(ctx);
    return;
  }
  auto* p = static_cast<uint8_t*>(sqlite3_malloc64(static_cast<sqlite3_uint64>(n)));
  if (p == nullptr) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  stream->fill(p, static_cast<size_t>(n));
  sqlite3_result_blob64(ctx, p, static_cast<sqlite3_uint64>(n), sqlite3_free);
}

}  // namespace

Status install_seeded_functions(sqlite3* db, std::unique_ptr<SeededStream>* running) {
  // Same flags as the built-ins (innocuous, not deterministic).
  const int flags = SQLITE_UTF8 | SQLITE_INNOCUOUS;
  if (sqlite3_create_function_v2(db, "random", 0, flags, running, fn_random, nullptr, nullptr,
                                 nullptr) != SQLITE_OK ||
      sqlite3_create_function_v2(db, "randomblob", 1, flags, running, fn_randomblob, nullptr,
                                 nullptr, nullptr) != SQLITE_OK) {
    return sqlite_error(db, "registering random()/randomblob()");
  }
  return ok_status();
}

}  // namespace swarmlite
