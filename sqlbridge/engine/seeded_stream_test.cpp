// The entry's seeded randomness (seeded_stream.h).
#include <doctest/doctest.h>

#include "sqlbridge/engine/seeded_stream.h"

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
