// Backups (backup.h): the database file of make_backup checks against its
// signed head (across the lock-byte page, with group signing, from a replica);
// the SQL dump leaves out what it must and reloads to the same answers.
#include "sqlbridge/tools/backup.h"

#include <doctest/doctest.h>
#include <fcntl.h>

#include <string>

#include "core/temp_dir_test_util.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/vfs_test_util.h"
#include "sqlbridge/sqlite_util.h"

using namespace swarmlite;

namespace {

std::string answers(sqlite3* db, const std::string& sql) {
  std::string out;
  std::string_view rest = sql;
  while (!is_blank_sql(rest)) {
    auto st = prepare(db, rest, &rest);
    REQUIRE_MESSAGE(st.ok(), st.error_text());
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
  REQUIRE_MESSAGE(s.ok(), s.error_text());
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
  REQUIRE_MESSAGE(loaded.ok(), loaded.error_text());
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

// --- make_backup on a Primary and a Replica ---------------------------------

namespace {

BackupSource primary_source(Primary& p) {
  BackupSource s;
  s.head = [&p] { return p.head(); };
  s.open_snapshot = [&p] { return p.open_snapshot(); };
  s.sign_head = [&p]() -> Status {
    auto h = p.sign_head();
    if (!h.ok()) return h.take_error();
    return ok_status();
  };
  return s;
}

// make_backup's file, copied out of its (unlinked) descriptor to `path`.
void save(const BackupFile& f, const std::filesystem::path& path) {
  Bytes data(f.bytes);
  REQUIRE(file_io::pread_exact(f.fd.get(), data, 0, "backup").ok());
  auto out = file_io::open(path, O_WRONLY | O_CREAT | O_TRUNC);
  REQUIRE(out.ok());
  REQUIRE(file_io::write_all(out->get(), data, path).ok());
}

}  // namespace

TEST_CASE("make_backup: a file at a signed head that checks, across the lock-byte page, with group signing, from a replica") {
  vfs_testing::PendingByte moved(0x10000);  // the lock-byte page is page 17
  testing::TempDir dir;
  KeyPair keys = KeyPair::generate();
  // Heads only every 1000 entries: the backup has to sign one itself.
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary(1000));
  REQUIRE(primary.ok());
  Primary& p = **primary;
  REQUIRE(p.execute({testing::sql("CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")}).ok());
  for (int i = 0; i < 8; ++i)
    REQUIRE(p.execute({testing::sql("INSERT INTO big(b) VALUES (randomblob(18000))")}).ok());
  REQUIRE(p.execute({testing::sql("DELETE FROM big WHERE id % 3 = 0")}).ok());  // a freelist
  REQUIRE(p.page_count() > 17);
  REQUIRE((!p.head() || p.head()->size < p.size()));

  BackupOptions opts;
  opts.temp_dir = dir.path();
  auto made = make_backup(primary_source(p), opts);
  REQUIRE_MESSAGE(made.ok(), made.error_text());
  CHECK(made->head.size == p.size());
  CHECK(made->head.page_count == p.page_count());
  save(*made, dir / "p-backup.db");
  auto check = verify_backup_file(dir / "p-backup.db", made->head, keys.pub);
  REQUIRE_MESSAGE(check.ok(), check.error_text());
  CHECK(check->state_root == p.state_root());
  // Nothing left behind in the directory but the node's own files.
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    CHECK_MESSAGE(e.path().filename().string().rfind(".swarmlite-backup", 0) != 0, e.path());

  // A replica's backup, and the receiver's check with the wrong key.
  auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, testing::fast_replica());
  REQUIRE(replica.ok());
  REQUIRE(testing::sync_replica(p, **replica).ok());
  Replica& r = **replica;
  BackupSource rs;
  rs.head = [&r]() -> std::optional<Head> {
    std::lock_guard lock(r.log_mutex());
    return r.log().head();
  };
  rs.open_snapshot = [&r] { return r.open_snapshot(); };
  auto rmade = make_backup(rs, opts);
  REQUIRE_MESSAGE(rmade.ok(), rmade.error_text());
  save(*rmade, dir / "r-backup.db");
  CHECK(verify_backup_file(dir / "r-backup.db", rmade->head, keys.pub).ok());
  auto wrong = verify_backup_file(dir / "r-backup.db", rmade->head, KeyPair::generate().pub);
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().code == Errc::bad_signature);

  // The SQL format of the same state.
  opts.format = BackupFormat::sql;
  auto dump = make_backup(primary_source(p), opts);
  REQUIRE_MESSAGE(dump.ok(), dump.error_text());
  CHECK(dump->bytes > 8 * 18000);

  // A stopping server and a spent time bound end it with a reason, leaving nothing.
  std::atomic<bool> stopping{true};
  opts.format = BackupFormat::sqlite;
  opts.cancel = &stopping;
  auto cancelled = make_backup(primary_source(p), opts);
  REQUIRE_FALSE(cancelled.ok());
  CHECK(cancelled.error().code == Errc::unavailable);
  CHECK(cancelled.error().message.find("stopped") != std::string::npos);
  opts.cancel = nullptr;
  opts.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto late = make_backup(primary_source(p), opts);
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().code == Errc::unavailable);
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    CHECK_MESSAGE(e.path().filename().string().rfind(".swarmlite-backup", 0) != 0, e.path());
}
