// Pure pieces of deterministic execution: the seeded stream, SQL text helpers,
// the recent-roots table used by snapshots.
#include <doctest/doctest.h>

#include "sqlbridge/determinism.h"
#include "sqlbridge/snapshot.h"

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

TEST_CASE("leading keyword and blank SQL skip comments and whitespace") {
  CHECK(leading_keyword("  -- x\n /* y */ vacuum into 'a'") == "VACUUM");
  CHECK(leading_keyword("with x as (select 1) insert into t select * from x") == "WITH");
  CHECK(leading_keyword("/* unterminated") == "");
  CHECK(is_blank_sql(" ; -- c\n ;/* d */"));
  CHECK_FALSE(is_blank_sql("; SELECT 1"));
}

TEST_CASE("recent roots keep the newest sizes and forget old ones") {
  RecentRoots roots(3);
  Hash32 h{};
  for (uint64_t s = 1; s <= 5; ++s) {
    h[0] = static_cast<uint8_t>(s);
    roots.record(s, h, static_cast<uint32_t>(s));
  }
  CHECK_FALSE(roots.find(2));
  REQUIRE(roots.find(5));
  CHECK(roots.find(5)->second == 5);
  CHECK(roots.find(3)->first[0] == 3);
  CHECK_FALSE(roots.find(6));
}
