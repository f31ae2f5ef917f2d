// The entry's seeded randomness (seeded_stream.h).
#include "sqlbridge/engine/seeded_stream.h"

#include <doctest/doctest.h>
#include <sodium.h>

#include <cstring>
#include <random>

using namespace swarmlite;

TEST_CASE("the seeded stream is the same however it is read") {
  std::array<uint8_t, 32> seed{};
  seed[0] = 7;
  SeededStream whole(seed);
  Bytes all(1000);
  whole.fill(all.data(), all.size());
  SeededStream pieces(seed);
  Bytes parts;
  for (size_t n : {1, 7, 64, 3, 200, 125, 600}) {
    Bytes b(n);
    pieces.fill(b.data(), n);
    parts.insert(parts.end(), b.begin(), b.end());
  }
  CHECK(parts == all);
  std::array<uint8_t, 32> other = seed;
  other[31] = 1;
  SeededStream different(other);
  Bytes d(32);
  different.fill(d.data(), d.size());
  CHECK(d != Bytes(all.begin(), all.begin() + 32));
}

TEST_CASE("random() values are never INT64_MIN and internal seeds never 0") {
  std::array<uint8_t, 32> seed{};
  for (int s = 0; s < 64; ++s) {
    seed[1] = static_cast<uint8_t>(s);
    SeededStream stream(seed);
    for (int i = 0; i < 100; ++i) CHECK(stream.next_i64() != INT64_MIN);
    CHECK(SeededStream::internal_prng_seed(seed) != 0);
  }
}

TEST_CASE("the stream and the internal seed are libsodium's ChaCha20, bit for bit") {
  // Logs written by earlier builds replay only if these bytes never change:
  // the keystream libsodium's crypto_stream_chacha20 gives (nonce 0) at every
  // offset and length, and internal_prng_seed = the first 4 bytes under nonce
  // 1, big-endian (docs/determinism.md). Random seeds, block edges, long reads.
  REQUIRE(sodium_init() >= 0);
  std::mt19937_64 rng(20261207);
  for (int round = 0; round < 2000; ++round) {
    std::array<uint8_t, 32> seed;
    for (auto& b : seed) b = static_cast<uint8_t>(rng());
    const size_t offset = round % 3 == 0 ? rng() % 70 : rng() % 5000;
    const size_t n = 1 + rng() % 300;
    Bytes want(offset + n);
    static const uint8_t kZeroNonce[crypto_stream_chacha20_NONCEBYTES] = {0};
    crypto_stream_chacha20(want.data(), want.size(), kZeroNonce, seed.data());
    SeededStream stream(seed);
    Bytes skip(offset);
    stream.fill(skip.data(), skip.size());
    Bytes got(n);
    stream.fill(got.data(), got.size());
    INFO("round " << round << ", offset " << offset << ", " << n << " bytes");
    REQUIRE(skip == Bytes(want.begin(), want.begin() + static_cast<ptrdiff_t>(offset)));
    REQUIRE(got == Bytes(want.begin() + static_cast<ptrdiff_t>(offset), want.end()));

    static const uint8_t kOneNonce[crypto_stream_chacha20_NONCEBYTES] = {1};
    uint8_t b[4];
    crypto_stream_chacha20(b, sizeof b, kOneNonce, seed.data());
    uint32_t v = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    REQUIRE(SeededStream::internal_prng_seed(seed) == (v == 0 ? 1 : v));
  }
  // A fixed answer, independent of libsodium: the all-zero seed.
  CHECK(SeededStream::internal_prng_seed(std::array<uint8_t, 32>{}) == 0xef3fdfd6u);
}
