// Results of the length-limit-dependent built-ins do not depend on the
// connection's SQLITE_LIMIT_LENGTH once the guard is installed (length_guard.h,
// docs/determinism.md "Primary-only bounds").
#include "sqlbridge/engine/length_guard.h"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "sqlbridge/engine/engine_test_fixture.h"
#include "sqlbridge/sqlite_util.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

SqliteDb memory_db() {
  auto db = open_sqlite(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY);
  REQUIRE_MESSAGE(db.ok(), db.error_text());
  return std::move(db).value();
}

// The value of a one-column, one-row SELECT, as quote() renders it.
std::string scalar(sqlite3* db, const std::string& expr) {
  auto st = prepare(db, "SELECT quote(" + expr + ")");
  REQUIRE_MESSAGE(st.ok(), st.error_text());
  REQUIRE(sqlite3_step(st->get()) == SQLITE_ROW);
  return reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
}

}  // namespace

TEST_CASE("length guard: two-argument substr gives the default-limit result under any limit") {
  SqliteDb reference = memory_db();  // SQLite's default limit, as on a replica
  SqliteDb low = memory_db();
  sqlite3_limit(low.get(), SQLITE_LIMIT_LENGTH, 1000);
  // Without the guard the lower limit changes the result (why the guard exists).
  CHECK(scalar(low.get(), "substr('abcd', -5000)") == "''");
  CHECK(scalar(reference.get(), "substr('abcd', -5000)") == "'abcd'");

  auto guard = LengthGuard::install(low.get(), 1000);
  REQUIRE_MESSAGE(guard.ok(), guard.error_text());
  CHECK(scalar(low.get(), "substr('abcd', -5000)") == "'abcd'");
  CHECK(scalar(low.get(), "substring('abcd', -5000)") == "'abcd'");

  std::vector<std::string> subjects = {"'abcd'",  "'h\xc3\xa9llo w\xc3\xb6rld'", "x'00010203'",
                                       "''",      "NULL",  "12345",  "-1.5e10", "zeroblob(3)"};
  std::vector<std::string> starts = {"0",    "1",          "2",           "-1",   "-4",
                                     "-5",   "100",        "-999",        "-1000", "-1001",
                                     "NULL", "'2'",        "2.7",         "-2.7",  "x'31'",
                                     "-999999999", "-1000000000", "-1000000001", "2147483648",
                                     "-2147483649", "9223372036854775807", "-9223372036854775808"};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) starts.push_back(std::to_string(static_cast<int64_t>(rng())));
  for (const auto& x : subjects) {
    for (const auto& y : starts) {
      for (const char* fn : {"substr", "substring"}) {
        const std::string expr = std::string(fn) + "(" + x + ", " + y + ")";
        CAPTURE(expr);
        CHECK(scalar(low.get(), expr) == scalar(reference.get(), expr));
      }
    }
  }
  // The three-argument form is SQLite's own, untouched.
  CHECK(scalar(low.get(), "substr('abcd', -5000, 4998)") == "'ab'");
  CHECK(scalar(low.get(), "substr('abcd', 2, -1)") == "'a'");
}

TEST_CASE("length guard: a replica replays substr(X, Y) to the primary's root") {
  // The primary writes under a 32 MiB length limit and the replica replays under
  // SQLite's 1e9: the seed-2 divergence of tests/sqlfuzz (docs/determinism.md).
  PrimaryAndReplica pr;
  for (const char* text :
       {"CREATE TABLE t(id INTEGER PRIMARY KEY, v)",
        "INSERT INTO t(v) VALUES (substr('?000', -100000000)), (substring(x'0102', -500000000))",
        "INSERT INTO t(v) SELECT substr('abcdef', random()) FROM (SELECT 1 UNION ALL SELECT 2 "
        "UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6)"}) {
    auto r = pr.primary->execute({sql(text)});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  Status s = sync_replica(*pr.primary, *pr.replica);
  REQUIRE_MESSAGE(s.ok(), s.error_text());
  CHECK(pr.replica->size() == pr.primary->size());
  CHECK(pr.replica->state_root() == pr.primary->state_root());

  auto db = open_sqlite((pr.dir / "r.db").string(), SQLITE_OPEN_READONLY);
  REQUIRE_MESSAGE(db.ok(), db.error_text());
  CHECK(scalar(db->get(), "(SELECT v FROM t WHERE id = 1)") == "'?000'");
  CHECK(scalar(db->get(), "(SELECT v FROM t WHERE id = 2)") == "X'0102'");
}
