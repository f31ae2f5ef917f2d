#include "net/read_pool.h"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/temp_dir_test_util.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite::net {
namespace {

void make_db(const std::filesystem::path& path, const std::string& sql) {
  std::filesystem::create_directories(path.parent_path());
  auto db = open_sqlite(path.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  REQUIRE_MESSAGE(db.ok(), db.error_text());
  auto s = exec_sql(db->get(), "PRAGMA journal_mode=WAL; " + sql);
  REQUIRE_MESSAGE(s.ok(), s.error_text());
}

int64_t count_of(ReadPool& pool, const std::string& table) {
  auto conn = pool.acquire();
  REQUIRE_MESSAGE(conn.ok(), conn.error_text());
  auto r = (*conn)->query("SELECT count(*) FROM " + table, {});
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  return std::get<int64_t>(r->rows.at(0).at(0).v);
}

}  // namespace

TEST_CASE("read pool: a returned connection is reused and sees later writes and schema changes") {
  TempDir dir("read-pool");
  const auto path = dir.path / "a.db";
  make_db(path, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
  ReadPool pool(path);
  CHECK(count_of(pool, "t") == 1);
  CHECK(pool.opened() == 1);
  CHECK(pool.idle() == 1);

  // A writer (another connection, as the node's applier is) moves on.
  auto w = open_sqlite(path.string(), SQLITE_OPEN_READWRITE);
  REQUIRE(w.ok());
  REQUIRE(exec_sql(w->get(), "INSERT INTO t VALUES (2); CREATE TABLE u(y); INSERT INTO u VALUES (7);").ok());
  CHECK(count_of(pool, "t") == 2);
  CHECK(count_of(pool, "u") == 1);
  CHECK(pool.opened() == 1);
  CHECK(pool.reused() == 2);
}

TEST_CASE("read pool: a connection on a file the path no longer names is never reused") {
  TempDir dir("read-pool");
  const auto path = dir.path / "a.db";
  const auto other = dir.path / "b.db";
  make_db(path, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
  make_db(other, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);");
  ReadPool pool(path);
  CHECK(count_of(pool, "t") == 1);
  REQUIRE(pool.idle() == 1);
  std::filesystem::rename(other, path);  // e.g. a restore replaced the file
  CHECK(count_of(pool, "t") == 3);
  CHECK(pool.opened() == 2);
  CHECK(pool.reused() == 0);
}

TEST_CASE("read pool: after the planner statistics move, reads plan with the new ones") {
  // ANALYZE changes sqlite_stat1 but not the schema's version: a pooled
  // connection kept planning with what it loaded when it read the schema.
  TempDir dir("read-pool");
  const auto path = dir.path / "a.db";
  make_db(path,
          "CREATE TABLE t(a INTEGER, b INTEGER); CREATE INDEX ia ON t(a); CREATE INDEX ib ON t(b); "
          "ANALYZE; WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 1999) "
          "INSERT INTO t SELECT i % 50, i % 3 FROM s;");
  uint64_t epoch = 0;
  ReadPool pool(path, 4, [&] { return epoch; });
  auto plan = [&] {
    auto conn = pool.acquire();
    REQUIRE_MESSAGE(conn.ok(), conn.error_text());
    auto r = (*conn)->query("EXPLAIN QUERY PLAN SELECT rowid FROM t WHERE a >= 45 AND b = 2", {});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    return std::get<std::string>(r->rows.at(0).back().v);
  };
  const std::string before = plan();
  CHECK(before.find("INDEX ib") != std::string::npos);
  auto w = open_sqlite(path.string(), SQLITE_OPEN_READWRITE);
  REQUIRE(w.ok());
  REQUIRE(exec_sql(w->get(), "ANALYZE").ok());
  CHECK(plan() == before);  // the epoch did not move: the same connection, its old statistics
  CHECK(pool.opened() == 1);
  ++epoch;  // as DeterministicDb counts an entry that ran ANALYZE
  CHECK(plan().find("INDEX ia") != std::string::npos);
  CHECK(pool.opened() == 2);
  CHECK(pool.idle() == 1);
}

TEST_CASE("read pool: connections inside a transaction, discarded, or over max_idle are closed") {
  TempDir dir("read-pool");
  const auto path = dir.path / "a.db";
  make_db(path, "CREATE TABLE t(x);");
  ReadPool pool(path, /*max_idle=*/2);
  {
    auto c = pool.acquire();
    REQUIRE(c.ok());
    GuardedConnection::TrustedScope trusted(**c);
    REQUIRE(exec_sql((*c)->handle(), "BEGIN; SELECT count(*) FROM t;").ok());
  }
  CHECK(pool.idle() == 0);  // it held a read transaction: not pooled
  {
    auto c = pool.acquire();
    REQUIRE(c.ok());
    c->discard();
  }
  CHECK(pool.idle() == 0);
  {
    std::vector<ReadPool::Lease> held;
    for (int i = 0; i < 5; ++i) {
      auto c = pool.acquire();
      REQUIRE(c.ok());
      held.push_back(std::move(*c));
    }
  }
  CHECK(pool.idle() == 2);
  CHECK(pool.opened() == 7);
}

TEST_CASE("read pool: a refused or failing query leaves the connection usable and pooled") {
  TempDir dir("read-pool");
  const auto path = dir.path / "a.db";
  make_db(path, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
  ReadPool pool(path);
  {
    auto c = pool.acquire();
    REQUIRE(c.ok());
    CHECK((*c)->query("DELETE FROM t", {}).error().code == Errc::refused);
    CHECK((*c)->query("PRAGMA cache_size=1", {}).error().code == Errc::refused);
    CHECK(!(*c)->query("SELECT * FROM nope", {}).ok());
  }
  CHECK(pool.idle() == 1);
  CHECK(count_of(pool, "t") == 1);
  CHECK(pool.opened() == 1);
}

TEST_CASE("read pool: a prepare after a query on a reused connection does not see the old query's SQL") {
  // /db/request classifies statements with sqlite3_prepare_v2 on a pooled
  // connection; the guard's authorizer names the statement in its refusal. It
  // once kept a view of the previous query's SQL, freed since (AddressSanitizer:
  // heap-use-after-free in the authorizer).
  TempDir dir("read-pool");
  const auto path = dir.path / "a.db";
  make_db(path, "CREATE TABLE t(x);");
  ReadPool pool(path);
  {
    auto c = pool.acquire();
    REQUIRE(c.ok());
    auto sql = std::make_unique<std::string>("SELECT count(*) FROM t");
    REQUIRE((*c)->query(*sql, {}).ok());
    sql.reset();
  }
  auto c = pool.acquire();
  REQUIRE(c.ok());
  CHECK(pool.reused() == 1);
  sqlite3_stmt* stmt = nullptr;
  const std::string create = "CREATE TABLE u(y)";
  CHECK(sqlite3_prepare_v2((*c)->handle(), create.c_str(), -1, &stmt, nullptr) == SQLITE_AUTH);
  sqlite3_finalize(stmt);
}

}  // namespace swarmlite::net
