// Deterministic randomness of one entry (docs/determinism.md "Pinned"):
// random() and randomblob() read a ChaCha20 keystream keyed by the entry's
// seed, and SQLite's internal PRNG is reseeded from the same seed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/result.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {

// Deterministic random bytes for one entry: the ChaCha20 keystream keyed by
// the entry's seed (libsodium's crypto_stream_chacha20 with nonce 0, computed
// by a block function of our own that the tests hold to it), read in order.
class SeededStream {
 public:
  explicit SeededStream(const std::array<uint8_t, 32>& seed) : key_(seed) {}
  void fill(uint8_t* out, size_t n);
  int64_t next_i64();
  // The u32 SQLite's internal PRNG is reseeded with (nonce 1, never 0).
  static uint32_t internal_prng_seed(const std::array<uint8_t, 32>& seed);

 private:
  std::array<uint8_t, 32> key_;
  uint64_t offset_ = 0;
};

// Registers random() and randomblob() on `db`, reading from `*running` (the
// running entry's stream; null between entries, when both fail).
Status install_seeded_functions(sqlite3* db, std::unique_ptr<SeededStream>* running);

}  // namespace swarmlite
