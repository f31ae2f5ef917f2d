// swarmlite's own metadata (sqlite_swarmlite) is invisible to what clients do
// with the file: ORM reflection, "drop all tables", the sqlite3 shell's .dump
// fed back in; format 1 files and logs (_swarmlite) are refused clearly
// (docs/determinism.md "Genesis", docs/operations.md "Upgrading from format 1").
#include <doctest/doctest.h>

#include <sqlite3.h>

#include <cstdio>
#include <string>
#include <vector>

#include "sqlbridge/engine/engine_test_fixture.h"
#include "sqlbridge/engine/genesis.h"
#include "sqlbridge/tools/import.h"
#include "sqlbridge/proof/read_guard.h"
#include "sqlbridge/tools/sql_script.h"
#include "sqlbridge/sqlite_util.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

struct Swarm : PrimaryAndReplica {
  void exec(std::vector<Statement> statements) {
    auto r = primary->execute(statements);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  void sync() {
    Status s = sync_replica(*primary, *replica);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    REQUIRE(replica->size() == primary->size());
    REQUIRE(replica->state_root() == primary->state_root());
  }
};

// The tables SQLAlchemy's sqlite dialect reflects (get_table_names).
std::vector<std::string> reflect_tables(const std::filesystem::path& file) {
  auto db = open_sqlite(file.string(), SQLITE_OPEN_READONLY);
  REQUIRE_MESSAGE(db.ok(), db.error_text());
  auto st = prepare(db->get(),
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                    "'sqlite~_%' ESCAPE '~' ORDER BY name");
  REQUIRE(st.ok());
  std::vector<std::string> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
  }
  return out;
}

// `sqlite3 FILE .dump`; nullopt when the sqlite3 shell is not installed.
std::optional<std::string> shell_dump(const std::filesystem::path& file) {
  if (std::system("sqlite3 -version >/dev/null 2>&1") != 0) return std::nullopt;
  std::string cmd = "sqlite3 -readonly '" + file.string() + "' .dump";
  FILE* f = popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  REQUIRE(pclose(f) == 0);
  return out;
}

const char* kAppSchema[] = {
    "CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)",
    "CREATE TABLE posts(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), body TEXT)",
    "CREATE INDEX posts_by_user ON posts(user_id)",
    "CREATE TABLE _swarmlite(a, b)",  // format 1's name: an ordinary user table now
    "INSERT INTO users(name) VALUES ('ann'), ('bob')",
    "INSERT INTO posts VALUES (1, 1, 'hello'), (2, 2, 'world')",
    "INSERT INTO _swarmlite VALUES (1, 'mine')",
};

void make_app(Swarm& s) {
  std::vector<Statement> st;
  for (const char* q : kAppSchema) st.push_back(sql(q));
  s.exec(st);
}

}  // namespace

TEST_CASE("reflection lists only the user's tables, and drop_all of them replays") {
  Swarm s;
  make_app(s);
  s.sync();
  const std::vector<std::string> user_tables = {"_swarmlite", "posts", "users"};
  CHECK(reflect_tables(s.dir / "p.db") == user_tables);
  CHECK(reflect_tables(s.dir / "r.db") == user_tables);

  // MetaData.drop_all(): DROP TABLE of every reflected table, children first,
  // in one write transaction.
  s.exec({sql("DROP TABLE posts"), sql("DROP TABLE users"), sql("DROP TABLE _swarmlite")});
  s.sync();
  CHECK(reflect_tables(s.dir / "p.db").empty());
  CHECK(reflect_tables(s.dir / "r.db").empty());
  // The metadata is intact and still advances in the data's transaction.
  s.exec({sql("CREATE TABLE again(x)")});
  s.sync();
  auto conn = GuardedConnection::open((s.dir / "r.db").string());
  REQUIRE(conn.ok());
  // Reads of the metadata stay allowed (as for _swarmlite before).
  auto q = (*conn)->query("SELECT v FROM sqlite_swarmlite WHERE k = 'applied_seq'", {});
  REQUIRE_MESSAGE(q.ok(), q.error_text());
  REQUIRE(q->rows.size() == 1);
  CHECK(q->rows[0][0] == Value{static_cast<int64_t>(s.primary->size() - 1)});
}

TEST_CASE("the sqlite3 shell's .dump has no swarmlite metadata and runs on a fresh primary") {
  Swarm s;
  make_app(s);
  s.sync();
  auto dump = shell_dump(s.dir / "r.db");
  if (!dump) {
    MESSAGE("sqlite3 shell not installed: skipped");
    return;
  }
  CHECK(dump->find("sqlite_swarmlite") == std::string::npos);  // neither its CREATE nor its rows
  CHECK(dump->find("applied_seq") == std::string::npos);
  CHECK(dump->find("format_version") == std::string::npos);
  CHECK(dump->find("CREATE TABLE _swarmlite(a, b)") != std::string::npos);  // the user's table

  TempDir dir2;
  KeyPair keys2 = KeyPair::generate();
  {
    auto fresh = Primary::open(dir2 / "q.db", keys2.secret, fast_primary());
    REQUIRE_MESSAGE(fresh.ok(), fresh.error_text());
    auto run = run_sql_script(**fresh, *dump);
    REQUIRE_MESSAGE(run.ok(), run.error_text());
  }
  auto again = shell_dump(dir2 / "q.db");
  REQUIRE(again);
  CHECK(*again == *dump);
  CHECK(reflect_tables(dir2 / "q.db") == reflect_tables(s.dir / "p.db"));
}

TEST_CASE("user SQL cannot create, change or drop anything in the sqlite_ namespace") {
  Swarm s;
  s.exec({sql("CREATE TABLE t(a)"), sql("CREATE TABLE log(x INTEGER PRIMARY KEY AUTOINCREMENT)"),
          sql("INSERT INTO log DEFAULT VALUES")});
  const uint64_t size = s.primary->size();
  const Hash32 root = s.primary->state_root();
  for (const char* text : {
           "CREATE TABLE sqlite_swarmlite(k, v)",
           "CREATE TABLE sqlite_x(a)",
           "CREATE TABLE IF NOT EXISTS sqlite_swarmlite(k TEXT PRIMARY KEY, v)",
           "CREATE VIEW sqlite_v AS SELECT 1",
           "CREATE INDEX sqlite_i ON t(a)",
           "CREATE TRIGGER sqlite_tr AFTER INSERT ON t BEGIN SELECT 1; END",
           "ALTER TABLE t RENAME TO sqlite_t",
           "ALTER TABLE sqlite_swarmlite RENAME TO mine",
           "ALTER TABLE sqlite_swarmlite ADD COLUMN z",
           "DROP TABLE sqlite_swarmlite",
           "DROP TABLE sqlite_sequence",
           "DROP TABLE IF EXISTS sqlite_swarmlite",
           "DROP INDEX sqlite_autoindex_sqlite_swarmlite_1",
           "CREATE INDEX ix ON sqlite_swarmlite(v)",
           "CREATE TRIGGER tr AFTER UPDATE ON sqlite_swarmlite BEGIN SELECT 1; END",
           "INSERT INTO sqlite_swarmlite VALUES ('x', 1)",
           "UPDATE sqlite_swarmlite SET v = v + 1 WHERE k = 'applied_seq'",
           "REPLACE INTO sqlite_swarmlite VALUES ('applied_seq', 0)",
           "DELETE FROM sqlite_swarmlite",
           "UPDATE sqlite_master SET sql = sql",
           "INSERT INTO t SELECT 1; UPDATE SQLITE_SWARMLITE SET v = 0",
       }) {
    CAPTURE(text);
    auto r = s.primary->execute({sql(text)});
    CHECK_FALSE(r.ok());
    CHECK(s.primary->size() == size);
    CHECK(s.primary->state_root() == root);
  }
  // What stays allowed: reading it, and the AUTOINCREMENT counters (.dump writes them).
  s.exec({sql("SELECT count(*) FROM sqlite_swarmlite"),
          sql("UPDATE sqlite_sequence SET seq = 100 WHERE name = 'log'")});
  s.sync();
}

TEST_CASE("a format 1 database (_swarmlite metadata) is refused naming the file") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  const auto file = dir / "old.db";
  {
    auto db = open_sqlite(file.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    REQUIRE(db.ok());
    REQUIRE(exec_sql(db->get(), std::string(kLegacyCreateMetaSql) +
                                    "; INSERT INTO _swarmlite VALUES ('format_version', 1), "
                                    "('applied_seq', 3); CREATE TABLE t(a)")
                .ok());
  }
  auto p = Primary::open(file, keys.secret, fast_primary());
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == Errc::bad_version);
  CHECK_MESSAGE(p.error().message.find(file.string()) != std::string::npos, p.error().message);
  CHECK_MESSAGE(p.error().message.find("format 1") != std::string::npos, p.error().message);
  CHECK_MESSAGE(p.error().message.find("swarmlite import") != std::string::npos, p.error().message);

  // A user's own table named _swarmlite (another shape) is just not a swarmlite database.
  const auto other = dir / "app.db";
  {
    auto db = open_sqlite(other.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    REQUIRE(db.ok());
    REQUIRE(exec_sql(db->get(), "CREATE TABLE _swarmlite(a, b)").ok());
  }
  auto q = Primary::open(other, keys.secret, fast_primary());
  REQUIRE_FALSE(q.ok());
  CHECK(q.error().code == Errc::corrupt);
  CHECK_MESSAGE(q.error().message.find("not a swarmlite database") != std::string::npos,
                q.error().message);
}

TEST_CASE("a format 1 genesis entry is refused as format version 1") {
  Entry e;
  e.seq = 0;
  e.statements = {
      Statement{std::string(kLegacyCreateMetaSql), {}},
      Statement{"INSERT INTO _swarmlite(k, v) VALUES ('format_version', ?1), ('sqlite_version', ?2), "
                "('page_size', ?3), ('settings', ?4), ('applied_seq', 0)",
                {Value{int64_t{1}}, Value{std::string(sqlite3_libversion())},
                 Value{static_cast<int64_t>(kPageSize)}, Value{std::string(kFixedSettings)}}},
  };
  Status s = check_genesis(e);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::bad_version);
  CHECK_MESSAGE(s.error().message.find("format version 1, this build reads versions 2 to 5") !=
                    std::string::npos,
                s.error().message);
  CHECK_MESSAGE(s.error().message.find("_swarmlite") != std::string::npos, s.error().message);
}

TEST_CASE("import: a _swarmlite table is copied, a sqlite_swarmlite table is left out") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  const auto src = dir / "src.db";
  {
    auto db = open_sqlite(src.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    REQUIRE(db.ok());
    REQUIRE(exec_sql(db->get(), "CREATE TABLE _swarmlite(k TEXT PRIMARY KEY, v);"
                                "INSERT INTO _swarmlite VALUES ('applied_seq', 7);"
                                "CREATE TABLE t(a); INSERT INTO t VALUES (1)")
                .ok());
  }
  auto r = import_new_primary(src, dir / "new.db", keys.secret, fast_primary());
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(r->check.ok());
  CHECK(reflect_tables(dir / "new.db") == std::vector<std::string>{"_swarmlite", "t"});

  // A swarmlite database as the source (a backup): its rows are copied, its
  // sqlite_swarmlite (the first log's metadata) is not; the new primary's own
  // metadata says where the new log is.
  auto again = import_new_primary(dir / "new.db", dir / "newer.db", keys.secret, fast_primary());
  REQUIRE_MESSAGE(again.ok(), again.error_text());
  CHECK(again->check.ok());
  CHECK(reflect_tables(dir / "newer.db") == std::vector<std::string>{"_swarmlite", "t"});
  auto reopened = Primary::open(dir / "newer.db", keys.secret, fast_primary());
  REQUIRE_MESSAGE(reopened.ok(), reopened.error_text());
  CHECK((*reopened)->size() == 1 + again->stats.entries);
}
