// Helpers shared by the query proof tests, fuzz corpus generation and the
// query proof benchmark (not part of the library): a test database with the
// shapes verified reads must handle, a signed head over its state, and a plain
// SQLite query to compare the verifier's rows with.
#pragma once

#include <sodium.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/hash.h"
#include "core/head.h"
#include "core/keys.h"
#include "sqlbridge/proof/read_guard.h"
#include "sqlbridge/sqlite_util.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite::proof_testing {

struct TestDbOptions {
  uint32_t page_size = 4096;
  int rows = 20000;  // rows of `items`
  bool extras = true;  // FTS5, WITHOUT ROWID, overflow blobs, view
};

// A WAL-mode database at `path` (left in WAL mode with frames not checkpointed):
//   items(id INTEGER PRIMARY KEY, name TEXT, category INT, price REAL, meta TEXT /*JSON*/)
//     with indexes on category and price;
//   categories(id INTEGER PRIMARY KEY, name TEXT);
//   view expensive_items; kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
//   docs (FTS5: title, body); blobs(id, data BLOB) with rows spilling to overflow pages.
// Deterministic: the same options give the same logical pages.
inline Status build_test_db(const std::filesystem::path& path, const TestDbOptions& o = {}) {
  SWL_ASSIGN(SqliteDb db, open_sqlite(path.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  sqlite3* h = db.get();
  SWL_TRY(exec_sql(h, fmt::format("PRAGMA page_size={}; PRAGMA journal_mode=WAL; "
                                  "PRAGMA wal_autocheckpoint=0; BEGIN;",
                                  o.page_size)));
  SWL_TRY(exec_sql(h,
                   "CREATE TABLE categories(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                   "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, category INT, "
                   "price REAL, meta TEXT);"
                   "CREATE INDEX items_category ON items(category);"
                   "CREATE INDEX items_price ON items(price);"
                   "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM n WHERE x<49) "
                   "INSERT INTO categories SELECT x, 'category-' || x FROM n;"));
  SWL_TRY(exec_sql(
      h, fmt::format("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<{}) "
                     "INSERT INTO items SELECT x, 'item-' || x, (x * 7) % 50, "
                     "((x * 7919) % 100000) / 100.0, "
                     "json_object('tags', json_array('t' || (x % 13), 't' || (x % 7)), "
                     "'n', x) FROM n;",
                     o.rows)));
  if (o.extras) {
    SWL_TRY(exec_sql(
        h,
        "CREATE VIEW expensive_items AS SELECT id, name, price FROM items WHERE price > 900;"
        "CREATE TABLE kv(k TEXT PRIMARY KEY, v INT) WITHOUT ROWID;"
        "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM n WHERE x<999) "
        "INSERT INTO kv SELECT printf('key-%04d', x), x * x FROM n;"
        "CREATE VIRTUAL TABLE docs USING fts5(title, body);"
        "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM n WHERE x<1999) "
        "INSERT INTO docs(rowid, title, body) SELECT x, 'doc ' || x, "
        "CASE x % 5 WHEN 0 THEN 'apple banana' WHEN 1 THEN 'banana cherry' "
        "WHEN 2 THEN 'cherry date' WHEN 3 THEN 'date elderberry' ELSE 'fig apple grape' END "
        "|| ' word' || (x % 97) FROM n;"
        "CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB);"
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<8) "
        "INSERT INTO blobs SELECT x, CAST(printf('%.*c', x * 3000, char(65 + x)) AS BLOB) "
        "FROM n;"));
  }
  SWL_TRY(exec_sql(h, "COMMIT;"));
  return ok_status();
}

// A fixed key (from a fixed seed) for the fuzz target and its seed corpus: the
// corpus's heads verify, so mutations reach the multiproof and the re-run.
inline KeyPair fixed_test_key() {
  unsigned char seed[crypto_sign_SEEDBYTES] = "swarmlite query proof test key";
  std::array<uint8_t, 64> sk{};
  PublicKey pk;
  crypto_sign_seed_keypair(pk.bytes.data(), sk.data(), seed);
  return KeyPair{SecretKey(sk), pk};
}

// A head over the database's current state, signed with `key`.
inline Result<Head> sign_state(const StateTree& tree, const KeyPair& key, uint64_t size = 7,
                               int64_t time_ms = 1'700'000'000'000) {
  Head head;
  head.log_id = key.pub;
  head.size = size;
  head.log_root = blake2b(as_bytes("test log root"));
  head.state_root = tree.root();
  head.page_count = tree.page_count();
  head.time_ms = time_ms;
  head.sign_with(key.secret);
  return head;
}

// The query run directly by SQLite on the file (default VFS, no guard).
inline Result<QueryResult> direct_query(const std::filesystem::path& path, std::string_view sql,
                                        const std::vector<Value>& params = {}) {
  SWL_ASSIGN(SqliteDb db, open_sqlite(path.string(), SQLITE_OPEN_READONLY));
  SWL_ASSIGN(SqliteStmt stmt, prepare(db.get(), sql));
  SWL_TRY(bind_values(stmt.get(), params));
  QueryResult out;
  int n = sqlite3_column_count(stmt.get());
  for (int i = 0; i < n; ++i) {
    const char* decl = sqlite3_column_decltype(stmt.get(), i);
    out.columns.emplace_back(sqlite3_column_name(stmt.get(), i));
    out.decltypes.emplace_back(decl ? decl : "");
  }
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    std::vector<Value> row;
    for (int i = 0; i < n; ++i) row.push_back(column_value(stmt.get(), i));
    out.rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) return sqlite_error(db.get(), "direct query");
  return out;
}

}  // namespace swarmlite::proof_testing
