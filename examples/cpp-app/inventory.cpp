// examples/cpp-app/inventory.cpp — a small inventory app on swarmlite, read this top to bottom.
//
// What it shows (issue 6, part 1):
//   1. The app owns its schema: tables, an index, a trigger, a schema version it migrates.
//   2. Every write goes through swarmlite::Primary::execute(): statements with bound params,
//      one call = one SQLite transaction = one entry in the signed log.
//   3. A replica is brought up to date from the primary's log with swarmlite::Replica — the
//      same verify-then-replay path a `swarmlite peer` runs after receiving entries over
//      the network — into a SEPARATE SQLite file.
//   4. That replica file is an ordinary SQLite database: the app reads it with nothing but
//      the sqlite3 C API (as any other program, language or tool could).
//   5. Replicas are exact: the replica's state root equals the primary's, and even
//      CURRENT_TIMESTAMP (pinned per entry) reads the same on both files.
//
// Usage: swarmlite_example_inventory [WORK_DIR]
//   WORK_DIR (must not exist or be empty; it is kept) receives shop.db, its log and
//   replica.db, to look at afterwards (`sqlite3 WORK_DIR/replica.db .dump`); without it a
//   temporary directory is used and removed at the end. Exit 0 when every check holds, 1
//   on any mismatch or error (with the reason on stderr).
#include <fmt/format.h>
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/keys.h"
#include "core/result.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/replica.h"

namespace fs = std::filesystem;
using swarmlite::Errc;
using swarmlite::Error;
using swarmlite::Primary;
using swarmlite::Replica;
using swarmlite::Result;
using swarmlite::Statement;
using swarmlite::Status;
using swarmlite::Value;

namespace {

// ---------------------------------------------------------------------------------------------
// The app's schema. Migrations are plain SQL, applied in order, each in its own write
// transaction together with the bump of the schema version, so a crash can never leave a
// half-migrated database — and every replica replays exactly the same migration.
//
// A migration may hold several statements in one string (split as SQLite does), as long as
// it has no bound params. Things swarmlite refuses because a replica could not reproduce
// them (TEMP tables, ATTACH, load_extension, writing swarmlite's own `sqlite_swarmlite` table …)
// are listed in docs/determinism.md; everything below is ordinary SQLite.
const char* const kMigrations[] = {
    // v1: items and an append-only journal of stock movements.
    R"sql(
      CREATE TABLE app_schema (version INTEGER NOT NULL);
      INSERT INTO app_schema (version) VALUES (0);
      CREATE TABLE item (
        id          INTEGER PRIMARY KEY,
        sku         TEXT NOT NULL UNIQUE,
        name        TEXT NOT NULL,
        qty         INTEGER NOT NULL DEFAULT 0 CHECK (qty >= 0),
        price_cents INTEGER NOT NULL CHECK (price_cents >= 0)
      );
      CREATE TABLE stock_move (
        id      INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES item (id),
        delta   INTEGER NOT NULL,
        reason  TEXT NOT NULL,
        -- "now" is pinned per log entry: the replica computes the very same timestamp.
        at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
      );
    )sql",
    // v2: an index for "moves of one item", and a trigger that keeps item.qty in step with
    // the journal. Triggers run on the primary AND on every replica during replay; the
    // CHECK (qty >= 0) above then rejects an oversell in both places alike.
    R"sql(
      CREATE INDEX stock_move_by_item ON stock_move (item_id, id);
      CREATE TRIGGER stock_move_applies AFTER INSERT ON stock_move BEGIN
        UPDATE item SET qty = qty + NEW.delta WHERE id = NEW.item_id;
      END;
    )sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

// Small helpers to build bound statements: Value is null | int64 | double | text | blob.
Value text(std::string s) { return Value{std::move(s)}; }
Value integer(int64_t i) { return Value{i}; }

// ---------------------------------------------------------------------------------------------
// Plain SQLite reading. Nothing here knows about swarmlite: this is how any reader of a
// replica file (a report job, a BI tool, the `sqlite3` shell) sees it.
class PlainDb {
 public:
  static Result<PlainDb> open_read_only(const fs::path& file) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    PlainDb out(db);  // owns the handle even when open failed
    if (rc != SQLITE_OK) {
      return Error{Errc::sqlite_error, fmt::format("opening {} read-only: {}", file.string(),
                                                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc))};
    }
    return out;
  }
  // Runs one SELECT and returns every row as text (NULL as "NULL").
  Result<std::vector<std::vector<std::string>>> rows(const std::string& sql) const {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return Error{Errc::sqlite_error, fmt::format("{}: {}", sql, sqlite3_errmsg(db_.get()))};
    }
    std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> guard(st, sqlite3_finalize);
    std::vector<std::vector<std::string>> out;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      auto& row = out.emplace_back();
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const unsigned char* v = sqlite3_column_text(st, c);
        row.emplace_back(v ? reinterpret_cast<const char*>(v) : "NULL");
      }
    }
    if (rc != SQLITE_DONE) {
      return Error{Errc::sqlite_error, fmt::format("{}: {}", sql, sqlite3_errmsg(db_.get()))};
    }
    return out;
  }

 private:
  explicit PlainDb(sqlite3* db) : db_(db, sqlite3_close) {}
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db_;
};

// ---------------------------------------------------------------------------------------------
// Writes: the app's operations, each one Primary::execute() call = one atomic transaction.

Status migrate(Primary& primary) {
  // The current version is read from the primary's own file, read-only (readers never block
  // the writer: the database is in WAL mode). A fresh database has no app_schema table yet.
  int version = 0;
  {
    SWL_ASSIGN(PlainDb db, PlainDb::open_read_only(primary.db_path()));
    SWL_ASSIGN(auto has, db.rows("SELECT count(*) FROM sqlite_schema WHERE name = 'app_schema'"));
    if (has.at(0).at(0) != "0") {
      SWL_ASSIGN(auto v, db.rows("SELECT version FROM app_schema"));
      version = std::stoi(v.at(0).at(0));
    }
  }
  for (int next = version + 1; next <= kSchemaVersion; ++next) {
    // Migration and version bump in ONE transaction (one log entry): all or nothing.
    SWL_ASSIGN(auto r,
               primary.execute({Statement{kMigrations[next - 1], {}},
                                Statement{"UPDATE app_schema SET version = ?", {integer(next)}}}));
    fmt::print("  schema v{} applied (log entry {})\n", next, r.seq);
  }
  if (version == kSchemaVersion) fmt::print("  schema already at v{}\n", version);
  return {};
}

// Adds items: several INSERTs with bound params in one transaction.
Status add_items(Primary& primary) {
  std::vector<Statement> tx;
  struct NewItem {
    const char* sku;
    const char* name;
    int64_t price_cents;
  };
  for (const NewItem& it : {NewItem{"W-100", "widget", 250}, NewItem{"G-200", "gadget", 1999},
                            NewItem{"S-300", "sprocket", 75}}) {
    tx.push_back({"INSERT INTO item (sku, name, price_cents) VALUES (?1, ?2, ?3)",
                  {text(it.sku), text(it.name), integer(it.price_cents)}});
  }
  SWL_ASSIGN(auto r, primary.execute(tx));
  fmt::print("  added {} items (log entry {}, last rowid {})\n", r.statements.size(), r.seq,
             r.statements.back().last_insert_rowid);
  return {};
}

// Records stock movements; the trigger updates item.qty. Named params work too (:sku).
Result<swarmlite::ExecuteResult> move_stock(
    Primary& primary, std::initializer_list<std::pair<const char*, int64_t>> moves,
    const char* reason) {
  std::vector<Statement> tx;
  for (const auto& [sku, delta] : moves) {
    tx.push_back(
        {"INSERT INTO stock_move (item_id, delta, reason) "
         "SELECT id, :delta, :reason FROM item WHERE sku = :sku",
         {integer(delta), text(reason), text(sku)}});  // numbered as SQLite numbers them
  }
  return primary.execute(tx);
}

// ---------------------------------------------------------------------------------------------
// Replication. In production a `swarmlite peer` process does this over the network: it
// receives entries plus a signed head from any node, Log::append_verified() checks the head's
// Ed25519 signature against the log id (the primary's public key) and the Merkle root over
// the entries BEFORE storing anything, and Replica::apply_available() replays them, checking
// every entry's state root. Here the "network" is a function call, the checks are the same.
Result<uint64_t> sync_replica(const Primary& primary, Replica& replica) {
  std::optional<swarmlite::Head> head = primary.head();  // newest signed head
  if (!head) return Error{Errc::unavailable, "the primary has not signed a head yet"};
  std::vector<swarmlite::Bytes> entries;
  {
    std::lock_guard lock(primary.log_mutex());  // the Log is shared with execute()
    for (uint64_t seq = replica.log().size(); seq < head->size; ++seq) {
      SWL_ASSIGN(auto bytes, primary.log().entry_bytes(seq));
      entries.push_back(std::move(bytes));
    }
  }
  if (!entries.empty()) {
    std::lock_guard lock(replica.log_mutex());
    SWL_TRY(replica.log().append_verified(entries, *head));  // verify, then store
  }
  return replica.apply_available();  // replay into replica.db
}

// ---------------------------------------------------------------------------------------------
// Checks. Any mismatch makes the example (and its CTest test) fail.
int failures = 0;
void expect(bool ok, const std::string& what) {
  fmt::print("  {} {}\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

Status run(const fs::path& dir) {
  fmt::print("swarmlite inventory example, data in {}\n", dir.string());

  // A primary's identity is an Ed25519 key pair; the public key is the log id everyone
  // verifies against. A real app loads it: swarmlite::load_secret_key("keys/primary.key")
  // after `swarmlite keygen --out keys`.
  swarmlite::KeyPair keys = swarmlite::KeyPair::generate();

  // 1. Open (or create) the primary database and its log (default: shop.db.log/).
  fmt::print("\n1. primary {}\n", (dir / "shop.db").string());
  SWL_ASSIGN(std::unique_ptr<Primary> primary, Primary::open(dir / "shop.db", keys.secret));
  SWL_TRY(migrate(*primary));
  SWL_TRY(migrate(*primary));  // idempotent: a restarted app finds the schema current

  // 2. Writes.
  fmt::print("\n2. writes\n");
  SWL_TRY(add_items(*primary));
  SWL_ASSIGN(auto received,
             move_stock(*primary, {{"W-100", 20}, {"G-200", 5}, {"S-300", 100}}, "delivery"));
  fmt::print("  delivery booked (log entry {})\n", received.seq);
  SWL_ASSIGN(auto sold, move_stock(*primary, {{"W-100", -3}, {"S-300", -40}}, "order 1001"));
  fmt::print("  order 1001 booked (log entry {})\n", sold.seq);

  // A failing transaction logs nothing and changes nothing: the CHECK (qty >= 0) fires
  // inside the trigger for the second statement, so the first is rolled back too.
  uint64_t size_before = primary->size();
  auto oversell = move_stock(*primary, {{"G-200", -1}, {"W-100", -1000}}, "order 1002");
  expect(!oversell.ok() && oversell.error().code == Errc::sqlite_error,
         fmt::format("oversell refused: {}",
                     oversell.ok() ? "it was accepted!" : oversell.error().to_string()));
  expect(primary->size() == size_before, "nothing was logged for the refused transaction");

  // 3. A replica in its own file, caught up from the log.
  fmt::print("\n3. replica {}\n", (dir / "replica.db").string());
  SWL_ASSIGN(std::unique_ptr<Replica> replica,
             Replica::open(dir / "replica.db", dir / "replica.log", primary->log_id()));
  SWL_ASSIGN(uint64_t applied, sync_replica(*primary, *replica));
  fmt::print("  applied {} entries, replica at size {}\n", applied, replica->size());

  // Later writes reach it on the next sync (a peer gets them pushed live).
  SWL_ASSIGN(auto restock, move_stock(*primary, {{"G-200", 10}}, "delivery"));
  fmt::print("  primary wrote entry {}; ", restock.seq);
  SWL_ASSIGN(applied, sync_replica(*primary, *replica));
  fmt::print("replica applied {} more\n", applied);

  expect(replica->size() == primary->size(),
         fmt::format("replica size {} == primary size {}", replica->size(), primary->size()));
  expect(replica->state_root() == primary->state_root(),
         fmt::format("state roots equal: {}", swarmlite::to_hex(replica->state_root())));

  // 4. Read the replica with plain SQLite — no swarmlite code involved.
  fmt::print("\n4. plain sqlite3 reads of replica.db\n");
  SWL_ASSIGN(PlainDb rdb, PlainDb::open_read_only(dir / "replica.db"));
  SWL_ASSIGN(auto stock, rdb.rows("SELECT sku, name, qty, printf('%.2f', price_cents / 100.0) "
                                  "FROM item ORDER BY sku"));
  for (const auto& r : stock) fmt::print("  {:6} {:9} qty {:>4}  {:>6}\n", r[0], r[1], r[2], r[3]);
  const std::vector<std::vector<std::string>> want = {{"G-200", "gadget", "15", "19.99"},
                                                      {"S-300", "sprocket", "60", "0.75"},
                                                      {"W-100", "widget", "17", "2.50"}};
  expect(stock == want, "quantities are what the trigger computed: 15, 60, 17");
  SWL_ASSIGN(auto version, rdb.rows("SELECT version FROM app_schema"));
  expect(version == std::vector<std::vector<std::string>>{{std::to_string(kSchemaVersion)}},
         "replica has the current schema version");
  SWL_ASSIGN(auto plan, rdb.rows("EXPLAIN QUERY PLAN SELECT * FROM stock_move WHERE item_id = 1"));
  expect(!plan.empty() && plan[0].back().find("stock_move_by_item") != std::string::npos,
         "the index replicated and is used: " + (plan.empty() ? std::string("?") : plan[0].back()));

  // CURRENT_TIMESTAMP was evaluated once on the primary and once during the replica's
  // replay, yet both files hold the same text: "now" is pinned in each log entry.
  const char* moves = "SELECT id, item_id, delta, reason, at FROM stock_move ORDER BY id";
  SWL_ASSIGN(auto replica_moves, rdb.rows(moves));
  SWL_ASSIGN(PlainDb pdb, PlainDb::open_read_only(primary->db_path()));
  SWL_ASSIGN(auto primary_moves, pdb.rows(moves));
  for (const auto& m : replica_moves)
    fmt::print("  move {}: item {} {:>4}  {:10}  at {}\n", m[0], m[1], m[2], m[3], m[4]);
  expect(replica_moves.size() == 6 && replica_moves == primary_moves,
         fmt::format("{} stock moves, timestamps included, identical on primary and replica",
                     replica_moves.size()));

  // Replicas are read-only to the app: writes go to the primary (a plain read-only handle
  // cannot write; `swarmlite peer` also refuses HTTP writes and names the primary).
  SWL_TRY(primary->close());  // signs a final head if one is pending
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<fs::path> temp;
  fs::path dir;
  std::error_code ec;
  if (argc > 1) {
    // Each run makes a new key, so it needs a fresh directory (an old log would not match).
    dir = argv[1];
    if (fs::exists(dir) && !fs::is_empty(dir, ec)) {
      fmt::print(stderr, "inventory: {} is not empty; give a new or empty directory\n",
                 dir.string());
      return 1;
    }
    fs::create_directories(dir, ec);
    if (ec) {
      fmt::print(stderr, "inventory: cannot create {}: {}\n", dir.string(), ec.message());
      return 1;
    }
  } else {
    std::string tmpl = (fs::temp_directory_path() / "swarmlite-inventory-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      fmt::print(stderr, "inventory: cannot create a temp dir from {}\n", tmpl);
      return 1;
    }
    dir = tmpl;
    temp = dir;
  }
  Status s = run(dir);
  if (temp) fs::remove_all(*temp, ec);
  if (!s.ok()) {
    fmt::print(stderr, "inventory: FAILED: {}\n", s.error().to_string());
    return 1;
  }
  if (failures > 0) {
    fmt::print(stderr, "inventory: {} check(s) FAILED\n", failures);
    return 1;
  }
  fmt::print("\ninventory: all checks passed\n");
  return 0;
}
