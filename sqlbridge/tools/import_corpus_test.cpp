// Issue 12 items 1 and 2: import and SQL scripts for real app databases.
// A corpus of source databases made here, each with the features of a real
// app's schema in adversarial table order (children before parents, cycles,
// self-references, AUTOINCREMENT, triggers, views, partial/expression indexes,
// WITHOUT ROWID, generated columns, fts5, big BLOBs, mixed storage classes,
// odd names, rowids without INTEGER PRIMARY KEY). Each is imported, checked,
// audited, replayed on a Replica and compared value by value (storage class
// included) with the source; `.dump` scripts run through run_sql_script.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "sqlbridge/tools/audit.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/tools/import.h"
#include "sqlbridge/tools/sql_script.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

void make_db(const fs::path& path, const std::string& sql) {
  auto db = open_sqlite(path.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  REQUIRE(db.ok());
  Status s = exec_sql(db->get(), sql);
  REQUIRE_MESSAGE(s.ok(), s.error_text());
}

std::string describe(const Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) return "NULL";
        else if constexpr (std::is_same_v<T, int64_t>) return "int " + std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) return fmt::format("real {}", x);
        else if constexpr (std::is_same_v<T, std::string>) return "text '" + x.substr(0, 40) + "'";
        else return "blob of " + std::to_string(x.size());
      },
      v.v);
}

// Everything a user can see in a database, as text lines: the schema of user
// objects, every row of every table and view (rowid first where there is one,
// every value with its storage class), sqlite_sequence, fts5 query answers.
std::vector<std::string> visible_content(const fs::path& path, const std::vector<std::string>& extra_queries = {}) {
  auto db = open_sqlite(path.string(), SQLITE_OPEN_READONLY);
  REQUIRE(db.ok());
  std::vector<std::string> out;
  auto run = [&](const std::string& label, const std::string& q) {
    auto st = prepare(db->get(), q);
    REQUIRE_MESSAGE(st.ok(), q << ": " << st.error_text());
    int n = sqlite3_column_count(st->get());
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
      std::string line = label + ":";
      for (int c = 0; c < n; ++c) line += " | " + describe(column_value(st->get(), c));
      out.push_back(line);
    }
    REQUIRE(rc == SQLITE_DONE);
  };
  std::vector<std::pair<std::string, std::string>> objects;
  {
    auto st = prepare(db->get(), "SELECT name, type FROM pragma_table_list WHERE schema = 'main' AND type IN "
                                 "('table', 'virtual', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name");
    REQUIRE(st.ok());
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      objects.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)),
                           reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 1)));
    }
  }
  run("schema", "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_autoindex%' "
                "AND name <> 'sqlite_swarmlite' ORDER BY type, name");
  for (const auto& [name, type] : objects) {
    std::string q = "\"";
    for (char c : name) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    q += "\"";
    if (type != "view" && prepare(db->get(), "SELECT _rowid_ FROM " + q + " LIMIT 0").ok()) {
      run(name, "SELECT _rowid_, * FROM " + q + " ORDER BY _rowid_");
    } else {
      run(name, "SELECT * FROM " + q + " ORDER BY 1, 2");
    }
  }
  if (prepare(db->get(), "SELECT 1 FROM sqlite_sequence").ok()) {
    run("sqlite_sequence", "SELECT name, seq FROM sqlite_sequence ORDER BY name");
  }
  for (const auto& q : extra_queries) run(q, q);
  return out;
}

void check_same(const std::vector<std::string>& want, const std::vector<std::string>& got, const std::string& what) {
  CHECK_MESSAGE(want.size() == got.size(), what << ": " << want.size() << " vs " << got.size() << " lines");
  for (size_t i = 0; i < std::min(want.size(), got.size()); ++i) {
    if (want[i] != got[i]) {
      FAIL_CHECK(what << ": first difference at line " << i << ":\n  source:   " << want[i] << "\n  imported: " << got[i]);
      return;
    }
  }
}

// Children before parents, grandchildren first, composite and WITHOUT ROWID
// parents, AUTOINCREMENT with a counter above the largest id, a trigger that
// would write if it fired, views (one over a later view), partial and
// expression indexes, a user table named like an fts5 shadow table.
const char* kOrderSchema = R"sql(
  CREATE TABLE line_items(id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
                          sku TEXT NOT NULL REFERENCES products(sku), qty INTEGER CHECK (qty > 0),
                          region TEXT, code INTEGER, FOREIGN KEY (region, code) REFERENCES regions(region, code));
  CREATE VIEW order_totals AS SELECT * FROM big_orders;
  CREATE TABLE orders(id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER NOT NULL REFERENCES customers(id),
                      placed TEXT, note TEXT);
  CREATE TABLE regions(region TEXT, code INTEGER, name TEXT, PRIMARY KEY (region, code)) WITHOUT ROWID;
  CREATE TABLE products(sku TEXT PRIMARY KEY, price REAL, data BLOB) WITHOUT ROWID;
  CREATE TABLE customers(id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT NOT NULL);
  CREATE TABLE audit(at TEXT, what TEXT);
  CREATE TABLE docs_archive(x);
  CREATE VIEW big_orders AS SELECT o.id, count(*) AS n FROM orders o JOIN line_items l ON l.order_id = o.id GROUP BY o.id HAVING n > 2;
  CREATE INDEX items_big ON line_items(sku) WHERE qty > 5;
  CREATE INDEX customers_lower ON customers(lower(email));
  CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN INSERT INTO audit VALUES ('trigger fired', NEW.id); END;
  CREATE TRIGGER items_touch AFTER INSERT ON line_items BEGIN UPDATE orders SET note = 'touched' WHERE id = NEW.order_id; END;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60)
    INSERT INTO customers SELECT i, CASE WHEN i % 4 THEN 'c' || i || '@example.com' END, 'customer ' || i FROM n;
  INSERT INTO regions VALUES ('eu', 1, 'Europe'), ('us', 2, 'America');
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30)
    INSERT INTO products SELECT 'sku-' || i, i * 1.25, CASE WHEN i % 5 = 0 THEN zeroblob(9000) ELSE x'00ff' END FROM n;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
    INSERT INTO orders(customer_id, placed) SELECT (i % 60) + 1, '2024-01-' || (i % 28 + 1) FROM n;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 900)
    INSERT INTO line_items(order_id, sku, qty, region, code)
      SELECT (i % 200) + 1, 'sku-' || (i % 30 + 1), i % 9 + 1, CASE WHEN i % 3 = 0 THEN 'eu' WHEN i % 3 = 1 THEN 'us' END,
             CASE WHEN i % 3 = 0 THEN 1 WHEN i % 3 = 1 THEN 2 END FROM n;
  DELETE FROM line_items WHERE id % 7 = 0;
  DELETE FROM audit;
  INSERT INTO docs_archive VALUES ('not a shadow table');
  UPDATE sqlite_sequence SET seq = seq + 5000 WHERE name = 'line_items';
)sql";

// Cycles: a self-reference pointing forward (row 1's manager comes last), a
// nullable two-table cycle, a NOT NULL cycle (only possible deferred), a
// self-referencing WITHOUT ROWID table.
const char* kCycleSchema = R"sql(
  CREATE TABLE employees(id INTEGER PRIMARY KEY, name TEXT, manager INTEGER REFERENCES employees(id),
                         mentor INTEGER REFERENCES employees(id));
  CREATE TABLE teams(id INTEGER PRIMARY KEY, lead INTEGER REFERENCES people(id), name TEXT);
  CREATE TABLE people(id INTEGER PRIMARY KEY, team INTEGER REFERENCES teams(id), name TEXT NOT NULL);
  CREATE TABLE eggs(id INTEGER PRIMARY KEY, hen INTEGER NOT NULL REFERENCES hens(id) DEFERRABLE INITIALLY DEFERRED);
  CREATE TABLE hens(id INTEGER PRIMARY KEY, egg INTEGER NOT NULL REFERENCES eggs(id) DEFERRABLE INITIALLY DEFERRED);
  CREATE TABLE paths(path TEXT PRIMARY KEY, parent TEXT REFERENCES paths(path), size INTEGER) WITHOUT ROWID;
  PRAGMA foreign_keys = ON;
  BEGIN;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
    INSERT INTO employees(id, name) SELECT i, 'e' || i FROM n;
  UPDATE employees SET manager = CASE WHEN id = 300 THEN NULL ELSE 301 - id END, mentor = CASE WHEN id % 2 THEN id + 1 END
    WHERE id <> 300;
  UPDATE employees SET manager = 1 WHERE id = 300;
  INSERT INTO teams(id, name) VALUES (1, 'red'), (2, 'blue');
  INSERT INTO people VALUES (1, 2, 'ann'), (2, 1, 'bob'), (3, NULL, 'cy');
  UPDATE teams SET lead = 3 - id;
  INSERT INTO eggs VALUES (1, 2), (2, 1);
  INSERT INTO hens VALUES (1, 2), (2, 1);
  INSERT INTO paths VALUES ('/a/b/c', '/a/b', 3), ('/a/b', '/a', 2), ('/a', NULL, 1), ('/z', '/a/b/c', 9);
  COMMIT;
)sql";

// Values: mixed storage classes in one column, NULLs, integer-valued reals,
// text that looks like numbers, blobs over a page and over a MiB, odd names,
// a column named rowid, sparse rowids without INTEGER PRIMARY KEY, generated
// columns (stored and virtual), a STRICT table, fts5 (stored, external
// content, with settings).
const char* kValueSchema = R"sql(
  CREATE TABLE "weird ""name"" ü" ([col one] INTEGER, "ß" TEXT, `back tick` ANY, "rowid" TEXT);
  CREATE TABLE mixed(v, n NUMERIC, r REAL, t TEXT, b BLOB);
  CREATE TABLE sparse(x, y);
  CREATE TABLE gen(a INTEGER, b INTEGER, s INTEGER GENERATED ALWAYS AS (a + b) STORED,
                   v TEXT GENERATED ALWAYS AS (a || '-' || b) VIRTUAL);
  CREATE TABLE strict_t(id INTEGER PRIMARY KEY, a ANY, i INT) STRICT;
  CREATE VIRTUAL TABLE docs USING fts5(title, body);
  CREATE TABLE articles(id INTEGER PRIMARY KEY, title TEXT, body TEXT);
  CREATE VIRTUAL TABLE articles_fts USING fts5(title, body, content='articles', content_rowid='id');
  INSERT INTO docs(docs, rank) VALUES ('pgsz', 1000);
  INSERT INTO "weird ""name"" ü" VALUES (1, 'straße', x'01', 'r1'), (NULL, '日本語', 2.5, NULL), (3, NULL, 'x', 'r3');
  INSERT INTO mixed VALUES (1, '12', 3, 4, 'text in blob col'), (1.5, 'abc', '2.0', 5, x'00'),
                           ('text', x'0102', NULL, NULL, 7), (x'ff00', NULL, 1e300, '1e3', NULL),
                           (NULL, NULL, NULL, NULL, NULL), (-9223372036854775808, 0.1, -0.0, '  7', 2.0);
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
    INSERT INTO mixed(v) SELECT NULL FROM n;
  INSERT INTO sparse(rowid, x, y) VALUES (5, 'a', NULL), (1000000, zeroblob(5000), 1), (-3, 'neg', 2), (9007199254740993, 1, 1);
  INSERT INTO sparse(rowid, x, y) VALUES (77, randomblob(1300000), 'big');
  DELETE FROM sparse WHERE rowid = 5;
  INSERT INTO gen(a, b) VALUES (1, 2), (NULL, 3), (10, 20);
  INSERT INTO strict_t VALUES (1, 1.0, 2), (2, 'x', NULL), (3, x'00', 3);
  INSERT INTO docs(rowid, title, body) VALUES (10, 'swarm', 'replicated sqlite with proofs'), (20, 'lite', 'small and verified');
  INSERT INTO articles VALUES (1, 'hello', 'world of logs'), (2, 'proof', 'merkle roots');
  INSERT INTO articles_fts(articles_fts) VALUES ('rebuild');
)sql";

const std::vector<std::string> kValueQueries = {
    "SELECT rowid FROM docs WHERE docs MATCH 'verified' ORDER BY rowid",
    "SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'merkle' ORDER BY rowid",
    "SELECT v FROM docs_config WHERE k = 'pgsz'",
};

// Imports `source` with small entries, then checks the import's own report,
// the audit, a replica's replay and the content of all three against the source.
void import_and_compare(const std::string& schema, const std::vector<std::string>& queries = {}) {
  TempDir dir;
  make_db(dir / "app.db", schema);
  KeyPair keys = KeyPair::generate();
  ImportOptions options;
  options.max_entry_bytes = 64 << 10;  // many entries
  options.max_rows_per_entry = 50;
  auto r = import_new_primary(dir / "app.db", dir / "p.db", keys.secret, testing::fast_primary(), options);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(r->check.ok());
  CHECK(r->check.integrity == "ok");
  CHECK(r->check.foreign_key_violations == 0);
  for (const auto& t : r->check.tables) CHECK_MESSAGE(t.source_rows == t.imported_rows, t.table);
  CHECK(r->stats.entries > 3);

  const auto want = visible_content(dir / "app.db", queries);
  check_same(want, visible_content(dir / "p.db", queries), "primary");

  auto audit = audit_log(dir / "p.db.log", keys.pub, AuditOptions{.replica_db = dir / "p.db"});
  REQUIRE_MESSAGE(audit.ok(), audit.error_text());
  CHECK_MESSAGE(audit->ok(), (audit->problems.empty() ? "" : audit->problems[0]));
  REQUIRE(audit->replica.has_value());
  CHECK(audit->replica->matches);

  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE_MESSAGE(primary.ok(), primary.error_text());
  auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, testing::fast_replica());
  REQUIRE(replica.ok());
  REQUIRE(testing::sync_replica(**primary, **replica).ok());
  CHECK((*replica)->state_root() == (*primary)->state_root());
  check_same(want, visible_content(dir / "r.db", queries), "replica");
}

TEST_CASE("import corpus: children before parents, composite keys, AUTOINCREMENT, triggers, views, indexes") {
  import_and_compare(kOrderSchema);
}

TEST_CASE("import corpus: self-references and cycles, nullable and NOT NULL") { import_and_compare(kCycleSchema); }

TEST_CASE("import corpus: storage classes, odd names, rowids, generated columns, blobs, fts5") {
  import_and_compare(kValueSchema, kValueQueries);
}

TEST_CASE("import: the imported primary keeps enforcing what the app had (FKs, triggers, AUTOINCREMENT)") {
  TempDir dir;
  make_db(dir / "app.db", kOrderSchema);
  KeyPair keys = KeyPair::generate();
  REQUIRE(import_new_primary(dir / "app.db", dir / "p.db", keys.secret, testing::fast_primary()).ok());
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  auto bad = (*primary)->execute({testing::sql("INSERT INTO orders(customer_id) VALUES (999)")});
  REQUIRE(!bad.ok());
  CHECK(bad.error().message.find("FOREIGN KEY") != std::string::npos);
  auto r = (*primary)->execute({testing::sql("INSERT INTO orders(customer_id) VALUES (1)"),
                                testing::sql("INSERT INTO line_items(order_id, sku, qty) VALUES (last_insert_rowid(), 'sku-1', 1)")});
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(r->statements[1].last_insert_rowid > 5900);  // the source's counter, not max(id) + 1
  auto audit = (*primary)->execute({testing::sql("SELECT count(*) FROM audit")});
  REQUIRE(audit.ok());
  CHECK(audit->statements[0].rows[0][0] == Value{int64_t{1}});  // fired for the new order only
}

std::vector<std::string> dir_listing(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST_CASE("import: a failed import leaves nothing behind and a second run succeeds") {
  TempDir dir;
  make_db(dir / "app.db", kOrderSchema);
  const auto before = dir_listing(dir.path());
  KeyPair keys = KeyPair::generate();

  SUBCASE("an injected failure after a few entries") {
    ImportOptions options;
    options.max_rows_per_entry = 100;
    options.test_hook = [](const ImportProgress& p) -> Status {
      if (p.entries == 4) return make_error(Errc::io_error, "injected failure");
      return ok_status();
    };
    auto r = import_new_primary(dir / "app.db", dir / "p.db", keys.secret, testing::fast_primary(), options);
    REQUIRE(!r.ok());
    CHECK(r.error().message.find("injected failure") != std::string::npos);
  }
  SUBCASE("a source with an object swarmlite refuses (an R*Tree)") {
    make_db(dir / "app.db", "CREATE VIRTUAL TABLE places USING rtree(id, x0, x1)");
    auto r = import_new_primary(dir / "app.db", dir / "p.db", keys.secret, testing::fast_primary());
    REQUIRE(!r.ok());
    CHECK(r.error().message.find("rtree") != std::string::npos);
    make_db(dir / "app.db", "DROP TABLE places");
  }
  SUBCASE("a source whose foreign keys do not hold") {
    make_db(dir / "app.db", "INSERT INTO orders(customer_id) VALUES (12345)");
    auto r = import_new_primary(dir / "app.db", dir / "p.db", keys.secret, testing::fast_primary());
    REQUIRE(!r.ok());
    CHECK(r.error().message.find("foreign key violation") != std::string::npos);
    CHECK(r.error().message.find("orders") != std::string::npos);
    make_db(dir / "app.db", "DELETE FROM orders WHERE customer_id = 12345");
  }
  CHECK(dir_listing(dir.path()) == before);  // no database, no log, no temporary files
  CHECK(!fs::exists(dir / "p.db"));
  CHECK(!fs::exists(dir / "p.db.log"));

  auto second = import_new_primary(dir / "app.db", dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE_MESSAGE(second.ok(), second.error_text());
  CHECK(second->check.ok());
  check_same(visible_content(dir / "app.db"), visible_content(dir / "p.db"), "second run");
  // And it refuses to overwrite what it built.
  auto third = import_new_primary(dir / "app.db", dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE(!third.ok());
  CHECK(third.error().code == Errc::invalid_argument);
}

// --- SQL scripts -----------------------------------------------------------

TEST_CASE("sql script: split exactly where SQLite ends statements, with line numbers") {
  const std::string text =
      "-- a comment; with a semicolon\n"
      "CREATE TABLE t(a, b);\n"
      "INSERT INTO t VALUES ('x;y', \"q;\"); INSERT INTO t VALUES (2, '\n"
      "multi-line ; text');\n"
      "/* block ; comment */\n"
      "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
      "  INSERT INTO t VALUES (1, 2);\n"
      "  UPDATE t SET a = 'it''s;' WHERE b = 3;\n"
      "END;\n"
      ";;\n"
      "SELECT 1 -- last, without semicolon\n";
  auto r = split_sql_script(text);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE(r->size() == 5);
  CHECK((*r)[0].line == 2);
  CHECK((*r)[1].line == 3);
  CHECK((*r)[1].sql == "INSERT INTO t VALUES ('x;y', \"q;\");");
  CHECK((*r)[2].line == 3);
  CHECK((*r)[2].sql == "INSERT INTO t VALUES (2, '\nmulti-line ; text');");
  CHECK((*r)[3].line == 6);
  CHECK((*r)[3].sql.find("END;") != std::string::npos);
  CHECK((*r)[4].line == 11);

  auto bad = split_sql_script("CREATE TABLE t(a);\nINSERT INTO t VALUES ('open\n");
  REQUIRE(!bad.ok());
  CHECK(bad.error().message.find("line 2") != std::string::npos);
  auto open_trigger = split_sql_script("CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1;");
  REQUIRE(!open_trigger.ok());
}

std::string sqlite3_dump(const fs::path& db) {
  std::string cmd = "sqlite3 '" + db.string() + "' .dump";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  REQUIRE(::pclose(p) == 0);
  return out;
}

TEST_CASE("sql script: a sqlite3 .dump runs in bounded transactions and gives the same content") {
  // Children before parents and a NOT NULL cycle: the dump's rows only hold
  // their foreign keys at its end.
  for (const char* schema : {kOrderSchema, kCycleSchema}) {
    CAPTURE(schema == kOrderSchema ? "children first" : "cycles");
    TempDir dir;
    make_db(dir / "app.db", schema);
    const std::string dump = sqlite3_dump(dir / "app.db");
    REQUIRE(dump.find("PRAGMA foreign_keys=OFF;") != std::string::npos);
    REQUIRE(dump.find("BEGIN TRANSACTION;") != std::string::npos);
    KeyPair keys = KeyPair::generate();
    auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
    REQUIRE(primary.ok());
    ScriptOptions options;
    options.max_statements = 40;
    uint64_t calls = 0;
    options.progress = [&](uint64_t, uint64_t) { ++calls; };
    auto r = run_sql_script(**primary, dump, options);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    if (schema == kOrderSchema) {
      // Rows go in foreign key order (parents first): bounded transactions, no retry.
      CHECK(r->transactions > 20);
      CHECK(r->retries == 0);
    } else {
      // Employee 1's manager is the last employee: that table's rows need one transaction.
      CHECK(r->retries > 0);
    }
    CHECK(calls == r->transactions);
    CHECK(r->skipped == 3);  // PRAGMA foreign_keys=OFF, BEGIN TRANSACTION, COMMIT
    check_same(visible_content(dir / "app.db"), visible_content(dir / "p.db"), "dump");

    auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, testing::fast_replica());
    REQUIRE(replica.ok());
    REQUIRE(testing::sync_replica(**primary, **replica).ok());
    check_same(visible_content(dir / "app.db"), visible_content(dir / "r.db"), "dump replica");
  }
}

TEST_CASE("sql script: errors name the line and the statement; refusals run nothing") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  const std::string script =
      "CREATE TABLE t(a PRIMARY KEY);\n"
      "INSERT INTO t VALUES (1);\n"
      "INSERT INTO t VALUES (2);\n"
      "\n"
      "INSERT INTO t\n"
      "  VALUES (1);\n"
      "INSERT INTO t VALUES (3);\n";
  ScriptOptions options;
  options.max_statements = 2;
  auto r = run_sql_script(**primary, script, options);
  REQUIRE(!r.ok());
  CHECK(r.error().message.find("line 5: INSERT INTO t   VALUES (1);") != std::string::npos);
  CHECK(r.error().message.find("UNIQUE") != std::string::npos);
  CHECK(r.error().message.find("2 statement(s) up to line 2 were committed") != std::string::npos);

  const size_t size = (*primary)->size();
  for (const char* refused : {"INSERT INTO t VALUES (9);\nPRAGMA writable_schema=ON;\n",
                              "INSERT INTO t VALUES (9);\nROLLBACK; -- due to errors\n",
                              "INSERT INTO t VALUES (9);\nPRAGMA journal_mode=DELETE;\n",
                              "INSERT INTO t VALUES (9);\nINSERT INTO sqlite_master VALUES ('table','x','x',0,'CREATE TABLE x(a)');\n"}) {
    auto rr = run_sql_script(**primary, refused);
    REQUIRE(!rr.ok());
    CHECK_MESSAGE(rr.error().message.find("line 2") != std::string::npos, rr.error().message);
    CHECK((*primary)->size() == size);
  }
  // --single-transaction: all or nothing.
  ScriptOptions single;
  single.single_transaction = true;
  single.max_statements = 1;
  auto s = run_sql_script(**primary, "INSERT INTO t VALUES (10);\nINSERT INTO t VALUES (10);\n", single);
  REQUIRE(!s.ok());
  CHECK(s.error().message.find("line 2") != std::string::npos);
  CHECK((*primary)->size() == size);
}

}  // namespace
}  // namespace swarmlite
