// The SQL dump of GET /db/backup?fmt=sql (backup.h): what it leaves out and
// values that a naive dump gets wrong, checked by loading it into a fresh
// database and comparing answers.
#include "sqlbridge/tools/backup.h"

#include <doctest/doctest.h>
#include <fcntl.h>

#include <string>

#include "core/temp_dir_test_util.h"
#include "sqlbridge/sqlite_util.h"

using namespace swarmlite;

namespace {

std::string answers(sqlite3* db, const std::string& sql) {
  std::string out;
  std::string_view rest = sql;
  while (!is_blank_sql(rest)) {
    auto st = prepare(db, rest, &rest);
    REQUIRE_MESSAGE(st.ok(), st.error().to_string());
    if (!*st) break;
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(st->get()); ++c) {
        out += std::to_string(sqlite3_column_type(st->get(), c)) + ":";
        const auto* p = static_cast<const char*>(sqlite3_column_blob(st->get(), c));
        out += std::string(p ? p : "", static_cast<size_t>(sqlite3_column_bytes(st->get(), c))) + "|";
      }
      out += "\n";
    }
  }
  return out;
}

}  // namespace

TEST_CASE("write_sql_dump: the dump reloads to the same answers, without sqlite_swarmlite") {
  TempDir dir("backup-dump");
  std::filesystem::create_directories(dir.path);
  auto src = open_sqlite((dir.path / "src.db").string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  REQUIRE(src.ok());
  REQUIRE(exec_sql(src->get(), R"sql(
    PRAGMA writable_schema=ON;
    CREATE TABLE sqlite_swarmlite(k TEXT PRIMARY KEY, v);
    PRAGMA writable_schema=OFF;
    INSERT INTO sqlite_swarmlite VALUES('applied_seq', 41);
    CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, s TEXT, b BLOB, r REAL, any_ ANY_TYPE,
                   g INTEGER GENERATED ALWAYS AS (length(s)) STORED, v TEXT AS (upper(s)));
    INSERT INTO t(s, b, r, any_) VALUES ('it''s', x'00ff10', 1.0, 2.0), (char(97, 0, 98), NULL, 9e999, -9e999),
                                        ('line
break', zeroblob(3), 0.1, 'x'), (NULL, x'', -0.0, 12345678901234);
    DELETE FROM t WHERE id = 2 AND 0;
    CREATE TABLE "odd ""name"""(a, "b c");
    INSERT INTO "odd ""name"""("a", "b c") VALUES (1, 2);
    CREATE VIRTUAL TABLE docs USING fts5(body);
    INSERT INTO docs(body) VALUES ('hello world'), ('good bye');
    CREATE INDEX t_s ON t(s);
    CREATE VIEW v1 AS SELECT id FROM t;
    CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN UPDATE t SET r = r WHERE id = NEW.id; END;
  )sql").ok());
  REQUIRE(exec_sql(src->get(), "BEGIN").ok());
  auto out = file_io::open(dir.path / "dump.sql", O_WRONLY | O_CREAT | O_TRUNC);
  REQUIRE(out.ok());
  auto s = write_sql_dump(src->get(), out->get(), dir.path / "dump.sql",
                          std::chrono::steady_clock::now() + std::chrono::minutes(1));
  REQUIRE_MESSAGE(s.ok(), s.error().to_string());
  REQUIRE(out->close(dir.path / "dump.sql").ok());
  REQUIRE(exec_sql(src->get(), "COMMIT").ok());

  auto text = file_io::read_file(dir.path / "dump.sql", 1u << 20);
  REQUIRE(text.ok());
  const std::string dump(text->begin(), text->end());
  CHECK(dump.find("sqlite_swarmlite") == std::string::npos);
  CHECK(dump.find("docs_data") == std::string::npos);  // fts5 shadow tables come back through docs
  CHECK(dump.find("CAST(X'610062' AS TEXT)") != std::string::npos);
  CHECK(dump.rfind("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n", 0) == 0);

  auto dst = open_sqlite((dir.path / "dst.db").string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  REQUIRE(dst.ok());
  auto loaded = exec_sql(dst->get(), dump);
  REQUIRE_MESSAGE(loaded.ok(), loaded.error().to_string());
  const std::string q =
      "SELECT id, s, b, r, typeof(r), any_, typeof(any_), g, v FROM t ORDER BY id;"
      "SELECT * FROM sqlite_sequence; SELECT * FROM \"odd \"\"name\"\"\";"
      "SELECT rowid, body FROM docs WHERE docs MATCH 'hello';"
      "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'docs_%' AND name NOT LIKE '%swarmlite%' ORDER BY name;";
  const std::string got = answers(dst->get(), q), want = answers(src->get(), q);
  CHECK_MESSAGE(got == want, "got:\n" << to_hex(ByteView(reinterpret_cast<const uint8_t*>(got.data()), got.size()))
                                       << "\nwant:\n" << to_hex(ByteView(reinterpret_cast<const uint8_t*>(want.data()), want.size())));
  CHECK(answers(dst->get(), "SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_swarmlite'") == "1:0|\n");
}
