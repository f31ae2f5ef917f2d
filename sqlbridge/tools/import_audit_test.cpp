// Import of an app database and the audit of a log (sqlbridge/tools/import.h, audit.h).
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <fstream>

#include "core/hash.h"
#include "sqlbridge/tools/audit.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/tools/import.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {
namespace {

using testing::TempDir;

bool long_run() {
  const char* v = std::getenv("SWARMLITE_LONG");
  return v != nullptr && std::string(v) == "1";
}

// A hash of every user table's rows in primary-key/rowid order, plus the
// schema text of every user object: equal content gives equal hashes.
Hash32 content_hash(const std::filesystem::path& path) {
  auto db = open_sqlite(path.string(), SQLITE_OPEN_READONLY);
  REQUIRE(db.ok());
  Hasher h;
  std::vector<std::string> tables;
  {
    auto st = prepare(db->get(),
                      "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' "
                      "ORDER BY type, name");
    REQUIRE(st.ok());
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      std::string type = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
      std::string name = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 1));
      const unsigned char* sql = sqlite3_column_text(st->get(), 2);
      h.update(as_bytes(type + "|" + name + "|" + (sql ? reinterpret_cast<const char*>(sql) : "")));
      if (type == "table") tables.push_back(name);
    }
  }
  for (const auto& t : tables) {
    std::string q = "SELECT * FROM \"" + t + "\" ORDER BY 1";
    auto st = prepare(db->get(), q);
    REQUIRE(st.ok());
    int n = sqlite3_column_count(st->get());
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      for (int c = 0; c < n; ++c) {
        Value v = column_value(st->get(), c);
        h.update_u8(static_cast<uint8_t>(v.v.index()));
        std::visit(
            [&](const auto& x) {
              using T = std::decay_t<decltype(x)>;
              if constexpr (std::is_same_v<T, std::string>) {
                h.update(as_bytes(x));
              } else if constexpr (std::is_same_v<T, Bytes>) {
                h.update(x);
              } else if constexpr (!std::is_same_v<T, std::monostate>) {
                h.update(ByteView(reinterpret_cast<const uint8_t*>(&x), sizeof x));
              }
            },
            v.v);
      }
    }
  }
  auto seq = prepare(db->get(), "SELECT name, seq FROM sqlite_sequence ORDER BY name");
  if (seq.ok()) {
    while (sqlite3_step(seq->get()) == SQLITE_ROW) {
      h.update(as_bytes(std::string(reinterpret_cast<const char*>(sqlite3_column_text(seq->get(), 0))) +
                        "=" + std::to_string(sqlite3_column_int64(seq->get(), 1))));
    }
  }
  return h.finish();
}

// An app-like database: customers, orders (AUTOINCREMENT, FK), a WITHOUT ROWID
// table, a view, an index, a trigger, generated columns, blobs, NULLs.
void make_app_db(const std::filesystem::path& path, int orders) {
  auto db = open_sqlite(path.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  REQUIRE(db.ok());
  REQUIRE(exec_sql(db->get(), R"sql(
    PRAGMA journal_mode=WAL;
    CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, avatar BLOB);
    CREATE TABLE orders(id INTEGER PRIMARY KEY AUTOINCREMENT, customer INTEGER REFERENCES customers(id),
                        amount_cents INTEGER, note TEXT, total REAL GENERATED ALWAYS AS (amount_cents / 100.0));
    CREATE TABLE settings(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
    CREATE TABLE audit_log(at TEXT, what TEXT);
    CREATE TABLE plain(x, y);
    CREATE INDEX orders_by_customer ON orders(customer, amount_cents);
    CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount_cents > 5000;
    CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN
      INSERT INTO audit_log VALUES ('now', 'order ' || NEW.id);
    END;
    BEGIN;
  )sql").ok());
  std::mt19937_64 rng(7);
  auto ins_c = prepare(db->get(), "INSERT INTO customers VALUES (?1, ?2, ?3, ?4)");
  auto ins_o = prepare(db->get(), "INSERT INTO orders(customer, amount_cents, note) VALUES (?1, ?2, ?3)");
  auto ins_p = prepare(db->get(), "INSERT INTO plain(rowid, x, y) VALUES (?1, ?2, ?3)");
  REQUIRE((ins_c.ok() && ins_o.ok() && ins_p.ok()));
  for (int i = 1; i <= 500; ++i) {
    Bytes avatar(i % 7 == 0 ? 6000 : 16, static_cast<uint8_t>(i));  // some spill into overflow pages
    REQUIRE(bind_values(ins_c->get(), {Value{int64_t{i}}, Value{"customer " + std::to_string(i)},
                                       i % 5 == 0 ? Value{} : Value{"c" + std::to_string(i) + "@example.com"},
                                       Value{avatar}}).ok());
    REQUIRE(sqlite3_step(ins_c->get()) == SQLITE_DONE);
    sqlite3_reset(ins_c->get());
  }
  for (int i = 0; i < orders; ++i) {
    REQUIRE(bind_values(ins_o->get(), {Value{static_cast<int64_t>(rng() % 500 + 1)},
                                       Value{static_cast<int64_t>(rng() % 10000)},
                                       i % 3 ? Value{} : Value{std::string("note ") + std::to_string(i)}}).ok());
    REQUIRE(sqlite3_step(ins_o->get()) == SQLITE_DONE);
    sqlite3_reset(ins_o->get());
  }
  for (int i = 0; i < 100; ++i) {  // sparse rowids must survive
    REQUIRE(bind_values(ins_p->get(), {Value{int64_t{i * 1000 + 3}}, Value{1.5 * i}, Value{}}).ok());
    REQUIRE(sqlite3_step(ins_p->get()) == SQLITE_DONE);
    sqlite3_reset(ins_p->get());
  }
  REQUIRE(exec_sql(db->get(), R"sql(
    INSERT INTO settings VALUES ('theme', 'dark'), ('limit', 10), ('ratio', 0.25);
    DELETE FROM orders WHERE id % 97 = 0;
    UPDATE sqlite_sequence SET seq = seq + 1000 WHERE name = 'orders';
    COMMIT;
  )sql").ok());
}

TEST_CASE("import: an app database replays to the same content and the same state root") {
  TempDir dir;
  const int orders = long_run() ? 100000 : 20000;
  make_app_db(dir / "app.db", orders);
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "primary.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  ImportOptions options;
  options.max_entry_bytes = 256 << 10;  // force many entries
  uint64_t calls = 0;
  options.progress = [&](const ImportProgress&) { ++calls; };
  auto stats = import_database(dir / "app.db", **primary, options);
  REQUIRE_MESSAGE(stats.ok(), stats.error_text());
  CHECK(stats->tables == 5);
  CHECK(stats->indexes == 1);
  CHECK(stats->views == 1);
  CHECK(stats->triggers == 1);
  CHECK(stats->entries > 3);
  CHECK(calls == stats->entries);
  REQUIRE((*primary)->sign_head().ok());

  // The trigger did not fire during the import: audit_log is as empty as in the source.
  CHECK(content_hash(dir / "app.db") == content_hash(dir / "primary.db"));

  auto replica = Replica::open(dir / "replica.db", dir / "replica.log", keys.pub, testing::fast_replica());
  REQUIRE(replica.ok());
  REQUIRE(testing::sync_replica(**primary, **replica).ok());
  CHECK((*replica)->state_root() == (*primary)->state_root());
  CHECK(content_hash(dir / "replica.db") == content_hash(dir / "app.db"));

  // The imported primary keeps working like the app did: AUTOINCREMENT continues past the source's counter.
  auto r = (*primary)->execute({testing::sql("INSERT INTO orders(customer, amount_cents) VALUES (1, 1)")});
  REQUIRE(r.ok());
  CHECK(r->statements[0].last_insert_rowid > orders + 1000);
}

// Rows of `sql` as text, one string per row (columns joined by |).
std::vector<std::string> text_rows(const std::filesystem::path& path, const std::string& sql) {
  auto db = open_sqlite(path.string(), SQLITE_OPEN_READONLY);
  REQUIRE(db.ok());
  auto st = prepare(db->get(), sql);
  REQUIRE_MESSAGE(st.ok(), st.error_text());
  std::vector<std::string> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    std::string row;
    for (int c = 0; c < sqlite3_column_count(st->get()); ++c) {
      const unsigned char* t = sqlite3_column_text(st->get(), c);
      row += (c ? "|" : "") + std::string(t ? reinterpret_cast<const char*>(t) : "NULL");
    }
    out.push_back(row);
  }
  return out;
}

TEST_CASE("import: the source's planner statistics come along, and the queries keep their plans") {
  TempDir dir;
  make_app_db(dir / "app.db", 2000);
  {
    auto db = open_sqlite((dir / "app.db").string(), SQLITE_OPEN_READWRITE);
    REQUIRE(db.ok());
    // Statistics that make the planner prefer the email index for this query,
    // which it would not do on defaults; and a row for a table the import
    // does not create (left out).
    REQUIRE(exec_sql(db->get(), R"sql(
      CREATE INDEX customers_by_name ON customers(name);
      ANALYZE;
      UPDATE sqlite_stat1 SET stat = '500 500' WHERE idx = 'customers_by_name';
      INSERT INTO sqlite_stat1 VALUES ('gone', NULL, '7');
    )sql")
                .ok());
  }
  const std::string query =
      "EXPLAIN QUERY PLAN SELECT id FROM customers WHERE name = 'customer 7' AND email > 'c'";
  const auto source_stats = text_rows(dir / "app.db",
                                      "SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl <> 'gone' "
                                      "ORDER BY tbl, idx");
  REQUIRE(source_stats.size() >= 3);
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "primary.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  auto stats = import_database(dir / "app.db", **primary, ImportOptions{});
  REQUIRE_MESSAGE(stats.ok(), stats.error_text());
  CHECK(stats->stat1_rows == source_stats.size());
  CHECK(text_rows(dir / "primary.db",
                  "SELECT tbl, idx, stat FROM sqlite_stat1 ORDER BY tbl, idx") == source_stats);
  CHECK(text_rows(dir / "primary.db", query) == text_rows(dir / "app.db", query));
  auto replica =
      Replica::open(dir / "replica.db", dir / "replica.log", keys.pub, testing::fast_replica());
  REQUIRE(replica.ok());
  REQUIRE((*primary)->sign_head().ok());
  REQUIRE(testing::sync_replica(**primary, **replica).ok());
  CHECK((*replica)->state_root() == (*primary)->state_root());
  CHECK(text_rows(dir / "replica.db", query) == text_rows(dir / "app.db", query));
}

TEST_CASE("import: refuses a primary that already holds entries and a missing source") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  CHECK(import_database(dir / "nope.db", **primary).error().code == Errc::invalid_argument);
  REQUIRE((*primary)->execute({testing::sql("CREATE TABLE t(x)")}).ok());
  make_app_db(dir / "app.db", 10);
  auto r = import_database(dir / "app.db", **primary);
  REQUIRE(!r.ok());
  CHECK(r.error().message.find("new primary") != std::string::npos);
}

TEST_CASE("import: a swarmlite file (a backup) restores into a new primary without its log metadata") {
  TempDir dir;
  make_app_db(dir / "app.db", 500);
  KeyPair first = KeyPair::generate(), second = KeyPair::generate();
  {
    auto primary = Primary::open(dir / "old.db", first.secret, testing::fast_primary());
    REQUIRE(primary.ok());
    auto stats = import_database(dir / "app.db", **primary);
    REQUIRE_MESSAGE(stats.ok(), stats.error_text());
    REQUIRE((*primary)->close().ok());
  }
  // old.db holds sqlite_swarmlite (the first log's applied position): it is left out.
  auto primary = Primary::open(dir / "new.db", second.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  auto stats = import_database(dir / "old.db", **primary);
  REQUIRE_MESSAGE(stats.ok(), stats.error_text());
  CHECK(stats->tables == 5);
  REQUIRE((*primary)->close().ok());
  primary->reset();  // releases the database's lock
  CHECK(content_hash(dir / "new.db") == content_hash(dir / "app.db"));
  auto check = check_import(dir / "old.db", dir / "new.db");
  REQUIRE(check.ok());
  CHECK(check->ok());
  // The new primary's metadata is its own: it reopens at its own log's size.
  auto reopened = Primary::open(dir / "new.db", second.secret, testing::fast_primary());
  REQUIRE_MESSAGE(reopened.ok(), reopened.error_text());
  CHECK((*reopened)->size() == 1 + stats->entries);
}

TEST_CASE("import: a damaged source is refused before anything is written") {
  TempDir dir;
  make_app_db(dir / "app.db", 3000);
  const auto size = std::filesystem::file_size(dir / "app.db");
  std::filesystem::resize_file(dir / "app.db", size / 2);
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  auto r = import_database(dir / "app.db", **primary);
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::invalid_argument);
  CHECK(r.error().message.find("damaged") != std::string::npos);
  CHECK((*primary)->size() == 1);
}

struct AuditFixture {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::filesystem::path db = dir / "p.db";
  std::filesystem::path log = dir / "p.db.log";

  AuditFixture() {
    auto primary = Primary::open(db, keys.secret, testing::fast_primary());
    REQUIRE(primary.ok());
    REQUIRE((*primary)->execute({testing::sql("CREATE TABLE t(x INTEGER PRIMARY KEY, y)")}).ok());
    for (int i = 0; i < 40; ++i) {
      REQUIRE((*primary)->execute({testing::sql("INSERT INTO t(y) VALUES (randomblob(300))")}).ok());
    }
    REQUIRE((*primary)->sign_head().ok());
  }
};

TEST_CASE("audit: an honest log and its primary's database pass") {
  AuditFixture f;
  AuditOptions options;
  options.replica_db = f.db;
  uint64_t last = 0;
  options.progress = [&](uint64_t done, uint64_t) { last = done; };
  auto report = audit_log(f.log, f.keys.pub, options);
  REQUIRE_MESSAGE(report.ok(), report.error_text());
  CHECK_MESSAGE(report->ok(), (report->problems.empty() ? "" : report->problems[0]));
  CHECK(report->entries == 42);
  CHECK(report->replayed == 42);
  CHECK(report->head_matches);
  REQUIRE(report->replica.has_value());
  CHECK(report->replica->matches);
  CHECK(last == 42);
}

TEST_CASE("audit: a replica whose file was changed behind swarmlite's back fails") {
  AuditFixture f;
  {
    auto db = open_sqlite(f.db.string(), SQLITE_OPEN_READWRITE);
    REQUIRE(db.ok());
    REQUIRE(exec_sql(db->get(), "UPDATE t SET y = 'tampered' WHERE x = 7").ok());
  }
  AuditOptions options;
  options.replica_db = f.db;
  auto report = audit_log(f.log, f.keys.pub, options);
  REQUIRE_MESSAGE(report.ok(), report.error_text());
  CHECK(!report->ok());
  REQUIRE(report->replica.has_value());
  CHECK(!report->replica->matches);
  CHECK(report->problems.back().find("the log says") != std::string::npos);
}

TEST_CASE("audit: a log checked under another key fails to open and is reported") {
  AuditFixture f;
  KeyPair other = KeyPair::generate();
  auto report = audit_log(f.log, other.pub);
  REQUIRE_MESSAGE(report.ok(), report.error_text());
  CHECK(!report->ok());
}

TEST_CASE("audit: never writes to the audited log directory") {
  AuditFixture f;
  auto snapshot = [&] {
    std::map<std::string, std::string> files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(f.log)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      files[e.path().string()] = std::string(std::istreambuf_iterator<char>(in), {});
    }
    return files;
  };
  auto before = snapshot();
  REQUIRE(audit_log(f.log, f.keys.pub).ok());
  CHECK(snapshot() == before);
  CHECK(audit_log(f.dir / "missing", f.keys.pub).error().code == Errc::invalid_argument);
}

}  // namespace
}  // namespace swarmlite
