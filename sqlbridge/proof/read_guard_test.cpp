// The read guard: outside SQL can read, and nothing else — the database stays unchanged.
#include "sqlbridge/proof/read_guard.h"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <random>
#include <thread>

#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/proof/proof_test_util.h"

namespace swarmlite {
namespace {

using testing::TempDir;

struct GuardFixture {
  TempDir dir;
  std::filesystem::path db = dir / "guard.db";
  Hash32 root_before{};

  GuardFixture() {
    proof_testing::TestDbOptions o;
    o.rows = 500;
    o.extras = false;
    REQUIRE(proof_testing::build_test_db(db, o).ok());
    root_before = state_root();
  }
  Hash32 state_root() const {
    auto t = StateTree::from_file(db);
    REQUIRE(t.ok());
    return t->root();
  }
  std::unique_ptr<GuardedConnection> open(ReadGuardOptions o = {}) const {
    auto c = GuardedConnection::open("file:" + db.string() + "?mode=ro", o);
    REQUIRE(c.ok());
    return std::move(c).value();
  }
};

Error must_refuse(GuardedConnection& c, std::string_view sql, std::string_view mentions) {
  auto r = c.query(sql, {});
  REQUIRE_FALSE(r.ok());
  MESSAGE(sql << " -> " << r.error().to_string());
  CHECK(r.error().code == Errc::refused);
  CHECK(r.error().message.find(mentions) != std::string::npos);
  return r.error();
}

TEST_CASE("writes, ATTACH, writing pragmas and load_extension are refused, database unchanged") {
  GuardFixture f;
  auto c = f.open();
  must_refuse(*c, "INSERT INTO items(id, name) VALUES (100000, 'x')", "INSERT on 'items'");
  must_refuse(*c, "UPDATE items SET name = 'x'", "UPDATE on 'items'");
  must_refuse(*c, "DELETE FROM items", "DELETE on 'items'");
  must_refuse(*c, "DROP TABLE items", "DROP would change the schema");
  must_refuse(*c, "CREATE TABLE t(x)", "CREATE would change the schema");
  must_refuse(*c, "CREATE TEMP TABLE t(x)", "CREATE would change the schema");
  must_refuse(*c, "CREATE INDEX i ON items(name)", "CREATE");
  must_refuse(*c, "ALTER TABLE items ADD COLUMN x", "ALTER");
  CHECK_FALSE(c->query("UPDATE sqlite_master SET sql = 'x'", {}).ok());
  CHECK_FALSE(c->query("INSERT INTO sqlite_master VALUES ('table','x','x',0,'')", {}).ok());
  must_refuse(*c, "ATTACH DATABASE ':memory:' AS other", "ATTACH");
  must_refuse(*c, "DETACH DATABASE main", "DETACH");
  must_refuse(*c, "PRAGMA writable_schema = 1", "PRAGMA writable_schema = 1");
  must_refuse(*c, "PRAGMA journal_mode = DELETE", "journal_mode");
  must_refuse(*c, "PRAGMA user_version = 5", "user_version");
  must_refuse(*c, "SELECT load_extension('/tmp/nothing.so')", "load_extension()");
  must_refuse(*c, "BEGIN", "transaction");
  must_refuse(*c, "SAVEPOINT s", "SAVEPOINT");
  must_refuse(*c, "VACUUM", "");
  must_refuse(*c, "ANALYZE", "ANALYZE");
  must_refuse(*c, "REINDEX", "REINDEX");
  must_refuse(*c, "SELECT 1; DELETE FROM items", "only one statement");
  // Reads still work on the same connection, and nothing changed.
  auto r = c->query("SELECT count(*) FROM items", {});
  REQUIRE(r.ok());
  CHECK(r->rows[0][0] == Value{int64_t{500}});
  auto p = c->query("PRAGMA user_version", {});
  CHECK(p.ok());
  CHECK(f.state_root() == f.root_before);
}

TEST_CASE("the query form of read-only pragmas works (ORMs read them on connect); setting forms do not") {
  GuardFixture f;
  auto c = f.open();
  // What SQLAlchemy, Django, Prisma and the sqlite3 shell read on connect or reflection.
  for (const char* sql :
       {"PRAGMA read_uncommitted", "PRAGMA foreign_keys", "PRAGMA journal_mode", "PRAGMA busy_timeout",
        "PRAGMA synchronous", "PRAGMA cache_size", "PRAGMA encoding", "PRAGMA auto_vacuum",
        "PRAGMA recursive_triggers", "PRAGMA defer_foreign_keys", "PRAGMA query_only",
        "PRAGMA main.table_info(items)", "PRAGMA table_xinfo(items)", "PRAGMA index_list(items)",
        "PRAGMA foreign_key_list(items)", "PRAGMA integrity_check", "PRAGMA integrity_check(5)",
        "PRAGMA quick_check", "PRAGMA quick_check(items)", "PRAGMA foreign_key_check",
        "PRAGMA foreign_key_check(items)", "PRAGMA table_list", "PRAGMA database_list",
        "SELECT name FROM pragma_table_info('items')", "PRAGMA collation_list"}) {
    auto r = c->query(sql, {});
    CHECK_MESSAGE(r.ok(), (std::string(sql) + ": " + (r.ok() ? "" : r.error().to_string())));
  }
  auto jm = c->query("PRAGMA journal_mode", {});
  REQUIRE(jm.ok());
  CHECK(jm->rows.at(0).at(0) == Value{std::string("wal")});
  auto ic = c->query("PRAGMA integrity_check", {});
  REQUIRE(ic.ok());
  CHECK(ic->rows.at(0).at(0) == Value{std::string("ok")});
  // Setting forms and pragmas with side effects or host paths stay refused.
  must_refuse(*c, "PRAGMA read_uncommitted = 1", "read_uncommitted");
  must_refuse(*c, "PRAGMA foreign_keys = OFF", "foreign_keys");
  must_refuse(*c, "PRAGMA busy_timeout = 10", "busy_timeout");
  must_refuse(*c, "PRAGMA optimize", "optimize");
  must_refuse(*c, "PRAGMA shrink_memory", "shrink_memory");
  must_refuse(*c, "PRAGMA wal_checkpoint", "wal_checkpoint");
  must_refuse(*c, "PRAGMA incremental_vacuum", "incremental_vacuum");
  must_refuse(*c, "PRAGMA temp_store_directory", "temp_store_directory");
  must_refuse(*c, "PRAGMA data_store_directory", "data_store_directory");
  CHECK(f.state_root() == f.root_before);
}

TEST_CASE("PRAGMA database_list does not reveal the node's file path") {
  GuardFixture f;
  auto c = f.open();
  const std::string path = f.db.string();
  auto contains_path = [&](const QueryResult& r) {
    for (const auto& row : r.rows)
      for (const auto& v : row)
        if (const auto* s = std::get_if<std::string>(&v.v); s && s->find("guard.db") != std::string::npos)
          return true;
    return false;
  };
  auto p = c->query("PRAGMA database_list", {});
  REQUIRE(p.ok());
  REQUIRE(p->rows.size() == 1);
  CHECK(p->rows[0][1] == Value{std::string("main")});
  CHECK(p->rows[0][2] == Value{});
  CHECK_FALSE(contains_path(*p));
  for (const char* sql : {"SELECT * FROM pragma_database_list", "SELECT file AS f FROM pragma_database_list",
                          "SELECT upper(file) || 'x' FROM pragma_database_list",
                          "SELECT (SELECT file FROM pragma_database_list) AS x"}) {
    INFO(std::string(sql));
    auto r = c->query(sql, {});
    REQUIRE(r.ok());
    CHECK_FALSE(contains_path(*r));
  }
  // Other pragmas' columns are untouched.
  auto ti = c->query("PRAGMA table_info(items)", {});
  REQUIRE(ti.ok());
  CHECK(ti->rows.at(0).at(1) == Value{std::string("id")});
}

// No statement of the connection is left stepped (holding a read transaction).
bool none_busy(GuardedConnection& c) {
  for (sqlite3_stmt* s = sqlite3_next_stmt(c.handle(), nullptr); s;
       s = sqlite3_next_stmt(c.handle(), s))
    if (sqlite3_stmt_busy(s)) return false;
  return true;
}

TEST_CASE(
    "kept statements (statement_cache) give the same results, keep the guard and hold nothing") {
  GuardFixture f;
  ReadGuardOptions o;
  o.statement_cache = 2;
  auto cached = f.open(o);
  auto fresh = f.open();
  const std::vector<std::string> queries = {"SELECT name FROM items WHERE id = ?",
                                            "SELECT count(*), ? FROM items WHERE id < 50",
                                            "SELECT id FROM items WHERE name = ?"};
  // Three queries through two slots, each several times: hits, misses, evictions.
  for (int round = 0; round < 4; ++round) {
    for (size_t q = 0; q < queries.size(); ++q) {
      for (int64_t id = 1; id <= 3; ++id) {
        std::vector<Value> params = {q == 2 ? Value{fmt::format("item-{}", id + round)}
                                            : Value{id + round}};
        auto a = cached->query(queries[q], params);
        auto b = fresh->query(queries[q], params);
        REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.error().to_string()));
        REQUIRE(b.ok());
        CHECK(*a == *b);
        CHECK(none_busy(*cached));
      }
    }
  }
  // Other clients' queries are not readable through sqlite_stmt (a fresh
  // connection keeps nothing, and lists only the query itself).
  must_refuse(*cached, "SELECT sql FROM sqlite_stmt", "other clients' queries");
  must_refuse(*cached, "select count(*) from main.\"SQLITE_STMT\"", "other clients' queries");
  CHECK(fresh->query("SELECT sql FROM sqlite_stmt", {}).ok());
  // The flags the authorizer set at prepare come back with the kept statement.
  for (int i = 0; i < 3; ++i) {
    auto p = cached->query("PRAGMA database_list", {});
    REQUIRE(p.ok());
    CHECK(p->rows.at(0).at(2) == Value{});
    auto j = cached->query("PRAGMA journal_mode", {});
    REQUIRE(j.ok());
  }
  // Interrupted, then run again within the budget: the failed statement was
  // dropped, and the guard's limits still apply to a kept one.
  ReadGuardOptions small = o;
  small.max_vm_steps = 50'000;
  auto limited = f.open(small);
  const char* cte =
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT max(x) "
      "FROM c";
  for (int i = 0; i < 2; ++i) {
    auto ok = limited->query(cte, {Value{int64_t{10}}});
    REQUIRE(ok.ok());
    CHECK(ok->rows[0][0] == Value{int64_t{10}});
    auto big = limited->query(cte, {Value{int64_t{100'000'000}}});
    REQUIRE_FALSE(big.ok());
    CHECK(big.error().message.find("VM steps") != std::string::npos);
    CHECK(none_busy(*limited));
  }
  // A schema change under a kept statement: SQLite prepares it again (through
  // the authorizer), and the result has the new column.
  auto before = cached->query("SELECT * FROM items WHERE id = ?", {Value{int64_t{1}}});
  REQUIRE(before.ok());
  CHECK(before->columns.back() != "extra");
  {
    sqlite3* w = nullptr;
    REQUIRE(sqlite3_open(f.db.c_str(), &w) == SQLITE_OK);
    REQUIRE(sqlite3_exec(w, "ALTER TABLE items ADD COLUMN extra DEFAULT 7", nullptr, nullptr,
                         nullptr) == SQLITE_OK);
    sqlite3_close(w);
  }
  auto star2 = cached->query("SELECT * FROM items WHERE id = ?", {Value{int64_t{1}}});
  REQUIRE(star2.ok());
  CHECK(star2->columns.back() == "extra");
  CHECK(star2->rows.at(0).back() == Value{int64_t{7}});
}

TEST_CASE(
    "generated: a connection with kept statements answers as a fresh prepare does, across writes "
    "and schema changes") {
  // Random reads (parameterized and literal, some failing) on a connection
  // with a small cache and on one without, interleaved with another
  // connection's writes and schema changes: every answer (rows, columns,
  // error or not) must be the same.
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    CAPTURE(seed);
    GuardFixture f;
    ReadGuardOptions o;
    o.statement_cache = 2 + seed % 5;
    auto cached = f.open(o);
    auto fresh = f.open();
    sqlite3* w = nullptr;
    REQUIRE(sqlite3_open(f.db.c_str(), &w) == SQLITE_OK);
    const std::vector<std::string> with_param = {
        "SELECT * FROM items WHERE id = ?",
        "SELECT name, price FROM items WHERE category = ? ORDER BY id LIMIT 5",
        "SELECT count(*) FROM items WHERE price > ?",
        "SELECT * FROM items WHERE id = ? + 0",
        "SELECT missing_column FROM items WHERE id = ?",  // fails until the column exists
    };
    const std::vector<std::string> literal = {
        "SELECT count(*) FROM items", "SELECT * FROM items ORDER BY id DESC LIMIT 2",
        "PRAGMA table_info(items)", "SELECT name FROM sqlite_schema ORDER BY name",
        "PRAGMA database_list"};
    const std::vector<std::string> writes = {
        "UPDATE items SET price = price + 1 WHERE id % 7 = 3",
        "INSERT INTO items(name, category, price) VALUES ('new', 3, 9.5)",
        "CREATE INDEX IF NOT EXISTS items_name ON items(name)",
        "DROP INDEX IF EXISTS items_name",
        "ALTER TABLE items ADD COLUMN missing_column DEFAULT 'there'",
        "DELETE FROM items WHERE id > 495"};
    std::mt19937 rng(seed);
    int failures = 0, writes_done = 0;
    for (int step = 0; step < 1500; ++step) {
      const int pick = static_cast<int>(rng() % 100);
      if (pick < 4 && step > 100) {
        const std::string& sql = writes[rng() % writes.size()];
        if (sqlite3_exec(w, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK) ++writes_done;
        continue;
      }
      std::string sql;
      std::vector<Value> params;
      if (pick < 70) {
        sql = with_param[rng() % with_param.size()];
        params.push_back(Value{static_cast<int64_t>(rng() % 60)});
      } else {
        sql = literal[rng() % literal.size()];
      }
      INFO("step " << step << ": " << sql);
      auto a = cached->query(sql, params);
      auto b = fresh->query(sql, params);
      REQUIRE(a.ok() == b.ok());
      if (a.ok()) {
        CHECK(*a == *b);
      } else {
        ++failures;
        CHECK(a.error().code == b.error().code);
      }
      CHECK(none_busy(*cached));
    }
    sqlite3_close(w);
    CHECK(writes_done > 10);
    CHECK(failures > 0);
  }
}

TEST_CASE("a runaway recursive CTE is interrupted and the connection stays usable") {
  GuardFixture f;
  ReadGuardOptions o;
  o.time_limit = std::chrono::milliseconds(150);
  auto c = f.open(o);
  Error e = must_refuse(
      *c, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
      "query interrupted after");
  CHECK(e.message.find("time limit of 150 ms") != std::string::npos);
  auto r = c->query("SELECT name FROM items WHERE id = ?", {Value{int64_t{3}}});
  REQUIRE(r.ok());
  CHECK(r->rows[0][0] == Value{std::string("item-3")});
  CHECK(f.state_root() == f.root_before);
}

TEST_CASE("the VM instruction budget interrupts a long query") {
  GuardFixture f;
  ReadGuardOptions o;
  o.max_vm_steps = 50'000;
  auto c = f.open(o);
  must_refuse(*c, "SELECT count(*) FROM items a, items b", "VM steps");
  CHECK(c->query("SELECT 1", {}).ok());
}

TEST_CASE("results over the row or byte cap fail with too_large") {
  GuardFixture f;
  ReadGuardOptions o;
  o.max_rows = 10;
  auto c = f.open(o);
  auto r = c->query("SELECT id FROM items", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
  CHECK(c->query("SELECT id FROM items LIMIT 10", {}).ok());

  ReadGuardOptions b;
  b.max_result_bytes = 1000;
  auto c2 = f.open(b);
  auto r2 = c2->query("SELECT meta FROM items", {});
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().code == Errc::too_large);
}

TEST_CASE("sqlite3_limit caps apply to outside SQL") {
  GuardFixture f;
  ReadGuardOptions o;
  o.max_compound_select = 3;
  o.max_value_length = 1000;
  auto c = f.open(o);
  auto r = c->query("SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::sqlite_error);
  auto big = c->query("SELECT zeroblob(5000)", {});
  REQUIRE_FALSE(big.ok());
  CHECK(big.error().message.find("too big") != std::string::npos);
}

TEST_CASE("parameter count must match and empty SQL is an error") {
  GuardFixture f;
  auto c = f.open();
  auto r = c->query("SELECT ?", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);
  auto e = c->query("  -- nothing\n ;", {});
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code == Errc::invalid_argument);
  auto syntax = c->query("SELEKT 1", {});
  REQUIRE_FALSE(syntax.ok());
  CHECK(syntax.error().code == Errc::sqlite_error);
}

TEST_CASE("a trusted scope lets the caller's own SQL through, then the guard is back") {
  GuardFixture f;
  auto c = f.open();
  {
    GuardedConnection::TrustedScope trusted(*c);
    CHECK(exec_sql(c->handle(), "BEGIN").ok());
    CHECK(exec_sql(c->handle(), "COMMIT").ok());
  }
  must_refuse(*c, "BEGIN", "transaction");
}

TEST_CASE("printf() and format() with a huge width or precision fail fast; others give SQLite's text") {
  GuardFixture f;
  auto c = f.open();
  const auto t0 = std::chrono::steady_clock::now();
  for (const char* q : {"SELECT length(printf('%.*c', 900000000, 'x')), "
                        "length(printf('%.*c', 900000000, 'x'))",
                        "SELECT format('%.*c', 900000000, 'x')",
                        "SELECT printf('%s %.900000000c', 'a', 'x')",
                        "SELECT printf('%*d', -900000000, 1)"}) {
    Error e = must_refuse(*c, q, "over the value length cap");
    CHECK(e.message.find("900000000") != std::string::npos);
  }
  // Liveness, not speed: the first query alone took 7 s before the guard.
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  // Ordinary formats are untouched: the built-in's output, '*' arguments counted right.
  auto r = c->query(
      "SELECT printf('%d|%5.2f|%-4s|%q|%.*c|%%|%*d', 42, 3.14159, 'ab', 'it''s', 3, 'z', 4, 7), "
      "format('%,d', 1234567), printf(NULL), printf('%s', name) FROM items WHERE id = 1",
      {});
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(r->rows[0][0] == Value{std::string("42| 3.14|ab  |it''s|zzz|%|   7")});
  CHECK(r->rows[0][1] == Value{std::string("1,234,567")});
  CHECK(r->rows[0][2] == Value{});
  auto plain = c->query("SELECT name FROM items WHERE id = 1", {});
  REQUIRE(plain.ok());
  CHECK(r->rows[0][3] == plain->rows[0][0]);
  // A width under the cap still runs (the built-in cuts at the length cap).
  ReadGuardOptions small;
  small.max_value_length = 1000;
  auto s = f.open(small);
  auto ok = s->query("SELECT length(printf('%.*c', 999, 'x'))", {});
  REQUIRE(ok.ok());
  CHECK(ok->rows[0][0] == Value{int64_t{999}});
  must_refuse(*s, "SELECT printf('%.*c', 1001, 'x')", "cap of 1000 bytes");
}

TEST_CASE("stop_all_reads interrupts running queries, then reads work again") {
  GuardFixture f;
  auto c = f.open(ReadGuardOptions{.time_limit = std::chrono::milliseconds(60000)});
  std::thread stopper([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    GuardedConnection::stop_all_reads(true);
  });
  must_refuse(*c,
              "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
              "the process is stopping");
  stopper.join();
  GuardedConnection::stop_all_reads(false);
  CHECK(c->query("SELECT 1", {}).ok());
}

TEST_CASE(
    "a trial budget stops a costly query, lets a cheap one through, and ends with "
    "set_trial(nullopt)") {
  GuardFixture f;
  auto c = f.open();
  const std::string costly =
      "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) "
      "SELECT sum(x) FROM n";
  const auto far = std::chrono::steady_clock::now() + std::chrono::hours(1);

  c->set_trial(GuardedConnection::Trial{1000, far});
  auto cheap = c->query("SELECT * FROM items WHERE id = 7", {});
  REQUIRE(cheap.ok());
  CHECK_FALSE(c->over_trial());
  auto stopped = c->query(costly, {});
  REQUIRE_FALSE(stopped.ok());
  CHECK(stopped.error().code == Errc::refused);
  CHECK(stopped.error().message.find("over the budget it was tried with") != std::string::npos);
  CHECK(c->over_trial());

  // The deadline alone stops it too.
  c->set_trial(GuardedConnection::Trial{UINT64_MAX, std::chrono::steady_clock::now()});
  CHECK_FALSE(c->over_trial());  // cleared by set_trial
  CHECK_FALSE(c->query(costly, {}).ok());
  CHECK(c->over_trial());

  // Without a trial, the same query runs to its answer on the same connection.
  c->set_trial(std::nullopt);
  auto full = c->query(costly, {});
  REQUIRE(full.ok());
  CHECK_FALSE(c->over_trial());
  REQUIRE(full->rows.size() == 1);
  CHECK(full->rows[0][0] == Value{int64_t{5000050000}});
}

}  // namespace
}  // namespace swarmlite
