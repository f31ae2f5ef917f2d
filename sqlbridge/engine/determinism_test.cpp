// Pure pieces of deterministic execution: SQL text helpers and the recent-roots
// table used by snapshots; how a new database file is created.
#include "sqlbridge/engine/determinism.h"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "sqlbridge/engine/connection_settings.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/genesis.h"
#include "sqlbridge/engine/snapshot.h"

using namespace swarmlite;

TEST_CASE("identifiers are quoted and folded as SQLite does") {
  CHECK(quote_ident("a b") == "\"a b\"");
  CHECK(quote_ident("x\"y") == "\"x\"\"y\"");
  CHECK(quote_ident("") == "\"\"");
  CHECK(lower_ascii("AbC_\xc3\x89") == "abc_\xc3\x89");  // non-ASCII bytes unchanged
}

TEST_CASE("leading keyword and blank SQL skip comments and whitespace") {
  CHECK(leading_keyword("  -- x\n /* y */ vacuum into 'a'") == "VACUUM");
  CHECK(leading_keyword("with x as (select 1) insert into t select * from x") == "WITH");
  CHECK(leading_keyword("/* unterminated") == "");
  CHECK(is_blank_sql(" ; -- c\n ;/* d */"));
  CHECK_FALSE(is_blank_sql("; SELECT 1"));
}

TEST_CASE("needs_fresh_schema finds ANALYZE and REINDEX in any ASCII case, anywhere") {
  auto one = [](std::string sql) {
    const Statement st{std::move(sql), {}};
    return needs_fresh_schema(std::span<const Statement>(&st, 1));
  };
  CHECK(one("ANALYZE"));
  CHECK(one("analyze main.t"));
  CHECK(one("ReInDeX"));
  CHECK(one("INSERT INTO t VALUES('xreindexy')"));  // a false match costs one schema read
  CHECK(one("SELECT 1 /* ... */; aNaLyZe"));        // the word ends the text
  CHECK_FALSE(one(""));
  CHECK_FALSE(one("ANALYZ"));
  CHECK_FALSE(one("ANALYSE"));
  CHECK_FALSE(one("R\xC4\xB0NDEX"));  // U+0130 is no ASCII 'I'; SQLite reads no keyword there
  CHECK_FALSE(one("\xE1nalyze"));     // 0xE1 | 0x20 is not 'a'
  CHECK_FALSE(one("\x01NALYZE"));     // 0x01 | 0x20 = '!' (no false fold of non-letters)
  const std::vector<Statement> two{{"INSERT INTO t VALUES(1)", {}}, {"REINDEX t", {}}};
  CHECK(needs_fresh_schema(two));
  // Generated: against std::search with ASCII-only folding, over strings
  // made of the two words' letters in both cases, other letters, non-letters
  // next to them in ASCII ('@' is 'A' - 1) and bytes >= 0x80.
  const std::string alphabet = "analyzeridxANALYZERIDX @!AZaz\x81\xC1\xE1\xF2";
  auto reference = [](std::string_view sql) {
    auto fold = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    for (std::string_view word : {std::string_view("analyze"), std::string_view("reindex")}) {
      if (std::search(sql.begin(), sql.end(), word.begin(), word.end(),
                      [&](char a, char b) { return fold(a) == b; }) != sql.end())
        return true;
    }
    return false;
  };
  std::mt19937 rng(20261206);
  int found = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string sql(rng() % 24, ' ');
    for (char& c : sql) c = alphabet[rng() % alphabet.size()];
    if (rng() % 4 == 0 && sql.size() >= 7) {  // plant a word in mixed case
      const std::string_view word = rng() % 2 ? "analyze" : "reindex";
      const size_t pos = rng() % (sql.size() - 6);
      for (size_t k = 0; k < 7; ++k) {
        sql[pos + k] = rng() % 2 ? static_cast<char>(word[k] - 32) : word[k];
      }
    }
    const bool want = reference(sql);
    found += want ? 1 : 0;
    INFO("sql: ", sql);
    REQUIRE(one(sql) == want);
  }
  CHECK(found > 2000);
}

TEST_CASE("recent roots keep the newest sizes and forget old ones") {
  RecentRoots roots(3);
  Hash32 h{};
  for (uint64_t s = 1; s <= 5; ++s) {
    h[0] = static_cast<uint8_t>(s);
    roots.record(s, h, static_cast<uint32_t>(s));
  }
  CHECK_FALSE(roots.find(2));
  REQUIRE(roots.find(5));
  CHECK(roots.find(5)->second == 5);
  CHECK(roots.find(3)->first[0] == 3);
  CHECK_FALSE(roots.find(6));
}

// connection_settings.h create_database_file: a new database appears whole, in
// WAL mode, never as a file with a hot rollback journal (which SQLite's own
// switch to WAL leaves when the process is killed in the middle, and which no
// read-only reader can open).
TEST_CASE("a new database file appears whole and in WAL mode; a killed attempt's leftovers are replaced") {
  testing::TempDir dir;
  const auto path = dir / "new.db";
  // What a creation killed mid-way leaves: PATH-creating with a hot journal.
  {
    std::ofstream(path.string() + "-creating") << "half";
    std::ofstream(path.string() + "-creating-journal") << "hot";
  }
  REQUIRE(create_database_file(path).ok());
  CHECK(std::filesystem::exists(path));
  CHECK_FALSE(std::filesystem::exists(path.string() + "-journal"));
  CHECK_FALSE(std::filesystem::exists(path.string() + "-creating"));
  CHECK_FALSE(std::filesystem::exists(path.string() + "-creating-journal"));
  std::ifstream in(path, std::ios::binary);
  std::string header(100, '\0');
  in.read(header.data(), 100);
  REQUIRE(in.gcount() == 100);
  CHECK(header.substr(0, 16) == std::string("SQLite format 3\0", 16));
  CHECK(static_cast<uint8_t>(header[16]) * 256 + static_cast<uint8_t>(header[17]) == 4096);  // page size
  CHECK(header[18] == 2);  // write version 2: WAL
  CHECK(header[19] == 2);  // read version 2: WAL
  // A read-only reader opens it at once (no journal to roll back).
  sqlite3* ro = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &ro, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  CHECK(sqlite3_prepare_v2(ro, "SELECT count(*) FROM sqlite_schema", -1, &st, nullptr) == SQLITE_OK);
  sqlite3_finalize(st);
  sqlite3_close_v2(ro);
  // An existing file is left as it is.
  const auto before = std::filesystem::last_write_time(path);
  REQUIRE(create_database_file(path).ok());
  CHECK(std::filesystem::last_write_time(path) == before);
  // DeterministicDb::open of a new path goes through it.
  auto db = DeterministicDb::open(dir / "fresh.db");
  REQUIRE_MESSAGE(db.ok(), db.error_text());
  CHECK_FALSE(std::filesystem::exists(dir / "fresh.db-creating"));
}

TEST_CASE("an empty blob parameter binds as x'' in format 3 and as NULL in a format 2 log") {
  // Format 2 bound it as NULL (docs/determinism.md "Empty blob parameters"):
  // its logs keep that, so their state roots replay as they were written.
  testing::TempDir dir;
  auto run = [&](int64_t format) -> std::string {
    const auto path = dir / ("f" + std::to_string(format) + ".db");
    auto db = DeterministicDb::open(path);
    REQUIRE_MESSAGE(db.ok(), db.error_text());
    auto no_check = [](const Hash32&, uint32_t) { return ok_status(); };
    auto g = (*db)->run_entry(EntryInputs{0, 1000, {}},
                              genesis_statements(sqlite3_libversion(), format),
                              DeterministicDb::Mode::genesis, false, no_check);
    REQUIRE_MESSAGE(g.ok(), g.error_text());
    const std::vector<Statement> txn = {
        Statement{"CREATE TABLE t(k INTEGER PRIMARY KEY, v)", {}},
        Statement{"INSERT INTO t VALUES (1, ?1)", {Value{Bytes{}}}},
        Statement{"INSERT INTO t VALUES (2, ?1)", {Value{std::string()}}},
        Statement{"INSERT INTO t VALUES (3, ?1)", {Value{Bytes{9}}}},
        Statement{"SELECT group_concat(k || ':' || typeof(v), ' ') FROM t", {}}};
    auto r = (*db)->run_entry(EntryInputs{1, 1001, {}}, txn, DeterministicDb::Mode::user, true,
                              no_check);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    return std::get<std::string>(r->back().rows.at(0).at(0).v);
  };
  CHECK(run(3) == "1:blob 2:text 3:blob");
  CHECK(run(2) == "1:null 2:text 3:blob");
  // A format this build does not read is refused at the first user entry.
  auto db = DeterministicDb::open(dir / "f9.db");
  REQUIRE(db.ok());
  auto no_check = [](const Hash32&, uint32_t) { return ok_status(); };
  REQUIRE((*db)->run_entry(EntryInputs{0, 1000, {}}, genesis_statements(sqlite3_libversion(), 9),
                           DeterministicDb::Mode::genesis, false, no_check)
              .ok());
  auto r = (*db)->run_entry(EntryInputs{1, 1001, {}}, std::vector<Statement>{{"SELECT 1", {}}},
                            DeterministicDb::Mode::user, true, no_check);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::bad_version);
  CHECK(r.error().message.find("format version 9") != std::string::npos);
}

TEST_CASE("genesis of formats 2 to 5 is accepted, other formats are refused naming the range") {
  Entry entry;
  for (int64_t format = kOldestFormatVersion; format <= kFormatVersion; ++format) {
    entry.statements = genesis_statements(sqlite3_libversion(), format);
    CHECK(check_genesis(entry).ok());
  }
  entry.statements = genesis_statements(sqlite3_libversion(), kFormatVersion + 1);
  Status s = check_genesis(entry);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::bad_version);
  CHECK(s.error().message == fmt::format("genesis: log has swarmlite format version {}, this build "
                                         "reads versions {} to {}",
                                         kFormatVersion + 1, kOldestFormatVersion, kFormatVersion));
}

namespace {
// A DeterministicDb at dir/name with the genesis entry of `format` applied.
std::unique_ptr<DeterministicDb> open_with_genesis(const std::filesystem::path& path,
                                                   int64_t format) {
  auto db = DeterministicDb::open(path);
  REQUIRE_MESSAGE(db.ok(), db.error_text());
  auto g = (*db)->run_entry(EntryInputs{0, 1000, {}}, genesis_statements(sqlite3_libversion(), format),
                            DeterministicDb::Mode::genesis, false,
                            [](const Hash32&, uint32_t) { return ok_status(); });
  REQUIRE_MESSAGE(g.ok(), g.error_text());
  return std::move(*db);
}

// WAL frames the connection's database has (a checkpoint that copies nothing
// back while the WAL is being counted: PASSIVE reports the log's frame count).
int wal_frames(sqlite3* db) {
  int log = -1, done = -1;
  REQUIRE(sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done) == SQLITE_OK);
  return log;
}
}  // namespace

// docs/determinism.md "Cell padding": a 3-byte cell built first in its entry is
// padded with a byte of the cell buffer. A transaction that failed on one side
// only (as on a primary) leaves another byte there; every format pads the
// buffer at each user entry's start so the roots agree. Format 4 does it by
// writing applied_seq, which its entry writes anyway: a 1-INSERT entry adds
// one WAL frame to its own where formats 2 and 3 added two (the metadata
// table's index page, written back unchanged). An older format keeps its own
// rule, so its logs' roots are what they were.
TEST_CASE("every format pads the cell buffer; format 4 writes one page fewer per entry") {
  testing::TempDir dir;
  auto no_check = [](const Hash32&, uint32_t) { return ok_status(); };
  for (int64_t format = kOldestFormatVersion; format <= kFormatVersion; ++format) {
    INFO("format " << format);
    Hash32 roots[2];
    for (int side = 0; side < 2; ++side) {
      auto db = open_with_genesis(
          dir / fmt::format("f{}-{}.db", format, side), format);
      uint64_t seq = 1;
      auto run = [&](std::vector<Statement> txn) {
        auto r = db->run_entry(EntryInputs{seq, static_cast<int64_t>(1000 + seq), {}}, txn,
                               DeterministicDb::Mode::user, false, no_check);
        REQUIRE_MESSAGE(r.ok(), r.error_text());
        ++seq;
      };
      run({Statement{"CREATE TABLE t(c0 PRIMARY KEY) WITHOUT ROWID", {}},
           Statement{"CREATE TABLE big(v)", {}}});
      run({Statement{"INSERT INTO t VALUES (648)", {}}});
      if (side == 1) {
        // Fails after building cells: rolled back, not logged, nothing to replay.
        auto failed = db->run_entry(
            EntryInputs{seq, 5000, {}},
            std::vector<Statement>{{"INSERT INTO big VALUES (x'ffffffff')", {}},
                                   {"CREATE TABLE u(a)", {}},
                                   {"INSERT INTO no_such_table VALUES (1)", {}}},
            DeterministicDb::Mode::user, false, no_check);
        REQUIRE_FALSE(failed.ok());
      }
      run({Statement{"INSERT INTO t VALUES (1)", {}}});
      roots[side] = db->state_tree().root();

      REQUIRE(sqlite3_wal_checkpoint_v2(db->handle(), "main", SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                        nullptr) == SQLITE_OK);
      CHECK(wal_frames(db->handle()) == 0);
      run({Statement{"INSERT INTO big VALUES (7)", {}}});
      CHECK(wal_frames(db->handle()) == (format >= 4 ? 2 : 3));
      // The committed applied_seq is an integer again (the pad value lives
      // only inside the entry).
      sqlite3_stmt* st = nullptr;
      REQUIRE(sqlite3_prepare_v2(db->handle(),
                                 "SELECT typeof(v), v FROM sqlite_swarmlite WHERE k = 'applied_seq'",
                                 -1, &st, nullptr) == SQLITE_OK);
      REQUIRE(sqlite3_step(st) == SQLITE_ROW);
      CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "integer");
      CHECK(sqlite3_column_int64(st, 1) == static_cast<int64_t>(seq - 1));
      sqlite3_finalize(st);
    }
    CHECK(roots[0] == roots[1]);
  }
}

// docs/determinism.md "Lean batches": in format 4 every plain entry writes the
// pad value and then the integer into applied_seq, and a lean batch does both
// once, at its end. The metadata table's page must then be the same: checked
// here in plain SQLite (secure_delete on, as in the fixed settings) from every
// integer size and its edges, for 1 to 5 entries. A single in-place update, as
// formats 2 and 3 write a lean batch's applied_seq, leaves another page.
TEST_CASE("format 4: the pad write and applied_seq update leave the same page once as after each entry") {
  testing::TempDir dir;
  int file = 0;
  auto exec = [](sqlite3* db, const std::string& sql) {
    Status st = exec_sql(db, sql);
    REQUIRE_MESSAGE(st.ok(), st.error_text());
  };
  // Format 4's pad write and applied_seq update, for each seq in [from, to].
  auto pairs = [exec](int64_t from, int64_t to) {
    return [exec, from, to](sqlite3* db) {
      for (int64_t seq = from; seq <= to; ++seq) {
        exec(db, "UPDATE meta SET v = x'5357504144' WHERE k = 'applied_seq'");
        exec(db, fmt::format("UPDATE meta SET v = {} WHERE k = 'applied_seq'", seq));
      }
    };
  };
  // Page 2 (the metadata table) after genesis-like rows, the pairs for 1 and
  // for `start` (what a log at `start` has; start 0: none, the page as
  // genesis left it), then `writes`.
  auto page_after = [&](int64_t start, const std::function<void(sqlite3*)>& writes) {
    const auto path = dir / fmt::format("m{}.db", file++);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    exec(db, "PRAGMA page_size = 4096; PRAGMA secure_delete = ON");
    exec(db, "CREATE TABLE meta(k TEXT PRIMARY KEY, v)");
    exec(db, fmt::format("INSERT INTO meta VALUES ('format_version', 4), ('sqlite_version', '{}'), "
                         "('page_size', 4096), ('settings', '{}'), ('applied_seq', 0)",
                         sqlite3_libversion(), kFixedSettings));
    if (start > 0) {
      exec(db, "BEGIN");
      pairs(1, 1)(db);
      pairs(start, start)(db);
      exec(db, "COMMIT");
    }
    exec(db, "BEGIN");
    writes(db);
    exec(db, "COMMIT");
    REQUIRE(sqlite3_close(db) == SQLITE_OK);
    std::ifstream in(path, std::ios::binary);
    std::string page(4096, '\0');
    in.seekg(4096);
    in.read(page.data(), 4096);
    REQUIRE(in.gcount() == 4096);
    return page;
  };
  const int64_t starts[] = {0,          1,          2,          126,        127,
                            128,        32766,      32767,      32768,      8388607,
                            8388608,    2147483647, 2147483648, 140737488355327,
                            140737488355328, int64_t{1} << 50};
  for (int64_t start : starts) {
    for (int64_t n : {1, 2, 3, 5}) {
      INFO("from " << start << ", " << n << " entries");
      const int64_t last = start + n;
      CHECK(page_after(start, pairs(start + 1, last)) == page_after(start, pairs(last, last)));
    }
  }
  // The in-place update alone (what formats 2 and 3 write at a lean batch's
  // end) leaves another page when no pair ran before it: a lean batch right
  // after genesis (the freed pad cell's header is then missing).
  auto in_place = [exec](sqlite3* db) { exec(db, "UPDATE meta SET v = 3 WHERE k = 'applied_seq'"); };
  CHECK(page_after(0, pairs(1, 3)) != page_after(0, in_place));
}

// docs/vfs.md "The sole writer's locks".
TEST_CASE(
    "the write connection keeps the WAL write lock: nobody else writes while it is open, readers "
    "read on") {
  testing::TempDir dir;
  const auto path = dir / "sole.db";
  auto db = DeterministicDb::open(path);
  REQUIRE_MESSAGE(db.ok(), db.error_text());
  auto no_check = [](const Hash32&, uint32_t) { return ok_status(); };
  REQUIRE((*db)
              ->run_entry(EntryInputs{0, 1000, {}}, genesis_statements(sqlite3_libversion(), 4),
                          DeterministicDb::Mode::genesis, false, no_check)
              .ok());
  uint64_t seq = 1;
  auto write = [&](const std::string& sql) {
    auto r = (*db)->run_entry(EntryInputs{seq, int64_t(1000 + seq), {}},
                              std::vector<Statement>{{sql, {}}}, DeterministicDb::Mode::user, true,
                              no_check);
    ++seq;
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  };
  write("CREATE TABLE t(k INTEGER PRIMARY KEY, v)");
  write("INSERT INTO t(v) VALUES (1)");

  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  sqlite3_busy_timeout(other, 100);
  auto count = [&](sqlite3* c) {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(c, "SELECT count(*) FROM t", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
  };
  CHECK(count(other) == 1);
  CHECK(sqlite3_exec(other, "INSERT INTO t(v) VALUES ('outside')", nullptr, nullptr, nullptr) ==
        SQLITE_BUSY);

  // A reader's snapshot holds while the writer commits and another
  // connection checkpoints; a checkpoint that would restart the WAL is busy.
  sqlite3* reader = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  for (int round = 0; round < 20; ++round) {
    REQUIRE(sqlite3_exec(reader, "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK);
    const int seen = count(reader);
    write("INSERT INTO t(v) VALUES (randomblob(3000))");
    write("UPDATE t SET v = randomblob(100) WHERE k = 1");
    int log = -1, done = -1;
    REQUIRE(sqlite3_wal_checkpoint_v2(other, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done) ==
            SQLITE_OK);
    CHECK(count(reader) == seen);
    REQUIRE(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK(count(reader) == seen + 1);
  }
  CHECK(sqlite3_wal_checkpoint_v2(other, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr) ==
        SQLITE_BUSY);
  write("INSERT INTO t(v) VALUES ('after')");
  CHECK(count(other) == 22);
  sqlite3_close(reader);

  // Closed, the file takes other writers again.
  db->reset();
  CHECK(sqlite3_exec(other, "INSERT INTO t(v) VALUES ('outside')", nullptr, nullptr, nullptr) ==
        SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(other, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "ok");
  sqlite3_finalize(st);
  CHECK(count(other) == 23);
  sqlite3_close(other);
}

// docs/determinism.md "Planner statistics": ANALYZE writes sqlite_stat1's rows,
// and REINDEX rebuilds indexes, in the order of the connection's schema hash
// table, which tables created and dropped over the connection's life shuffle.
// A connection that ran that history and one that opened the same file afresh
// (a restarted peer, the primary after a rolled-back CREATE) gave ANALYZE
// other pages. Format 5 reads the schema afresh before such an entry; format 4
// logs keep their rules (their roots stay what they were).
TEST_CASE("ANALYZE and REINDEX give the same pages after any schema history, from format 5") {
  testing::TempDir dir;
  const std::vector<std::string> lasts = {"ANALYZE", "ANALYZE main", "REINDEX"};
  for (int64_t format : {int64_t{4}, int64_t{5}}) {
    for (size_t k = 0; k < lasts.size(); ++k) {
      const std::string& last = lasts[k];
      INFO("format " << format << ", " << last);
      const std::string tag = fmt::format("{}-{}", format, k);
      auto kept = open_with_genesis(dir / ("kept-" + tag + ".db"), format);
      auto reopened = open_with_genesis(dir / ("reopened-" + tag + ".db"), format);
      uint64_t seq = 1;
      Hash32 kept_root{}, reopened_root{};
      auto run = [&](DeterministicDb& db, const std::string& sql, Hash32& root) {
        const std::vector<Statement> entry{Statement{sql, {}}};
        auto r = db.run_entry(EntryInputs{seq, 1000 + static_cast<int64_t>(seq), {}}, entry,
                              DeterministicDb::Mode::user, false, [&](const Hash32& h, uint32_t) {
                                root = h;
                                return ok_status();
                              });
        REQUIRE_MESSAGE(r.ok(), r.error_text());
      };
      // The same entries on both: 200 creates and drops of 60 names, each
      // table with an index of several pages.
      std::mt19937 rng(7);
      std::set<int> live;
      for (int i = 0; i < 200; ++i, ++seq) {
        const int n = static_cast<int>(rng() % 60);
        std::string sql;
        if (live.erase(n) != 0) {
          sql = fmt::format("DROP TABLE t{}", n);
        } else {
          live.insert(n);
          sql = fmt::format(
              "CREATE TABLE t{0}(x); CREATE INDEX i{0} ON t{0}(x); WITH RECURSIVE s(i) AS (SELECT "
              "1 UNION ALL SELECT i + 1 FROM s WHERE i < 40) INSERT INTO t{0} SELECT "
              "printf('%.200c', "
              "char(65 + (i * {0}) % 26)) || i FROM s",
              n);
        }
        run(*kept, sql, kept_root);
        run(*reopened, sql, reopened_root);
      }
      REQUIRE(kept_root == reopened_root);
      // One side restarts: its schema hash is built in sqlite_schema's order.
      const auto path = reopened->path();
      reopened.reset();
      auto again = DeterministicDb::open(path);
      REQUIRE_MESSAGE(again.ok(), again.error_text());
      reopened = std::move(again).value();
      run(*kept, last, kept_root);
      run(*reopened, last, reopened_root);
      if (format >= 5) {
        CHECK(kept_root == reopened_root);
      } else {
        CHECK(kept_root != reopened_root);  // what format 5 mends; format 4 logs keep it
      }
    }
  }
}
