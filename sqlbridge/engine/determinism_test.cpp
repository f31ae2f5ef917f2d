// Pure pieces of deterministic execution: SQL text helpers and the recent-roots
// table used by snapshots.
#include <doctest/doctest.h>

#include "sqlbridge/engine/determinism.h"
#include "sqlbridge/engine/snapshot.h"

using namespace swarmlite;

TEST_CASE("identifiers are quoted and folded as SQLite does") {
  CHECK(quote_ident("a b") == "\"a b\"");
  CHECK(quote_ident("x\"y") == "\"x\"\"y\"");
  CHECK(quote_ident("") == "\"\"");
  CHECK(lower_ascii("AbC_\xc3\x89") == "abc_\xc3\x89");  // non-ASCII bytes unchanged
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
