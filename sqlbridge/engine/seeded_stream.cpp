// Deterministic randomness: see seeded_stream.h and docs/determinism.md.
#include "sqlbridge/engine/seeded_stream.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace swarmlite {

void SeededStream::fill(uint8_t* out, size_t n) {
  // Keystream bytes [offset_, offset_ + n); ChaCha20 block b covers [64b, 64b + 64).
  static const uint8_t kNonce[crypto_stream_chacha20_NONCEBYTES] = {0};
  while (n > 0) {
    uint8_t block[64] = {0};
    crypto_stream_chacha20_xor_ic(block, block, sizeof block, kNonce, offset_ / 64, key_.data());
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
  static const uint8_t kNonce[crypto_stream_chacha20_NONCEBYTES] = {1};
  uint8_t b[4];
  crypto_stream_chacha20(b, sizeof b, kNonce, seed.data());
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
