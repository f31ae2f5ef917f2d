// Primary: refusals, failed transactions, pinned time and randomness, reopen
// and catch-up, genesis checks.
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <thread>

#include "core/fault_injection.h"
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "core/log.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/genesis.h"
#include "sqlbridge/engine/vfs_test_util.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

struct Fixture {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::filesystem::path db = dir / "p.db";
  std::unique_ptr<Primary> primary;

  explicit Fixture(PrimaryOptions options = fast_primary()) {
    auto p = Primary::open(db, keys.secret, std::move(options));
    REQUIRE_MESSAGE(p.ok(), p.error_text());
    primary = std::move(p).value();
  }
  ExecuteResult exec(std::vector<Statement> statements) {
    auto r = primary->execute(statements);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    return std::move(r).value();
  }
  Value scalar(const std::string& query) {
    auto r = exec({sql(query)});
    REQUIRE(r.statements.size() == 1);
    REQUIRE(r.statements[0].rows.size() == 1);
    return r.statements[0].rows[0][0];
  }
  void reopen(PrimaryOptions options = fast_primary()) {
    primary.reset();
    auto p = Primary::open(db, keys.secret, std::move(options));
    REQUIRE_MESSAGE(p.ok(), p.error_text());
    primary = std::move(p).value();
  }
};

int64_t as_int(const Value& v) {
  REQUIRE(std::holds_alternative<int64_t>(v.v));
  return std::get<int64_t>(v.v);
}
std::string as_text(const Value& v) {
  REQUIRE(std::holds_alternative<std::string>(v.v));
  return std::get<std::string>(v.v);
}

// The integers in the first column of `query`'s rows, run on `p`.
std::set<int64_t> first_column(Primary& p, const std::string& query) {
  auto r = p.execute({sql(query)});
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  std::set<int64_t> out;
  for (const auto& row : r->statements.at(0).rows) out.insert(as_int(row.at(0)));
  return out;
}

// A new replica (files `prefix`.db and `prefix`.log) replaying p's log entry
// by entry reaches p's state.
void check_replica_agrees(Primary& p, const std::filesystem::path& prefix) {
  auto replica = Replica::open(prefix.string() + ".db", prefix.string() + ".log", p.log_id(),
                               fast_replica());
  REQUIRE_MESSAGE(replica.ok(), replica.error_text());
  REQUIRE(sync_replica(p, **replica).ok());
  CHECK((*replica)->state_root() == p.state_root());
}

}  // namespace

TEST_CASE("a new primary starts with a signed genesis entry") {
  Fixture f;
  CHECK(f.primary->size() == 1);
  auto head = f.primary->head();
  REQUIRE(head);
  CHECK(head->size == 1);
  CHECK(head->verify(f.keys.pub).ok());
  CHECK(head->state_root == f.primary->state_root());
  auto genesis = f.primary->log().entry(0);
  REQUIRE(genesis.ok());
  CHECK(check_genesis(*genesis).ok());
  CHECK(genesis->statements == genesis_statements());
  CHECK(as_text(f.scalar("SELECT v FROM sqlite_swarmlite WHERE k = 'sqlite_version'")) == sqlite3_libversion());
}

TEST_CASE("execute returns per-statement results and a head covering the entry") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT UNIQUE)")});
  auto r = f.exec({sql("INSERT INTO t(a) VALUES (?1), (?2)", {Value{std::string("x")}, Value{std::string("y")}}),
                   sql("UPDATE t SET a = a || '!' RETURNING id, a"),
                   sql("SELECT count(*) AS n FROM t")});
  CHECK(r.seq == 2);
  REQUIRE(r.statements.size() == 3);
  CHECK(r.statements[0].rows_changed == 2);
  CHECK(r.statements[0].last_insert_rowid == 2);
  CHECK(r.statements[1].rows_changed == 2);
  CHECK(r.statements[1].columns == std::vector<std::string>{"id", "a"});
  CHECK(r.statements[1].rows.size() == 2);
  CHECK(r.statements[2].rows_changed == 0);
  CHECK(as_int(r.statements[2].rows[0][0]) == 2);
  REQUIRE(r.head);
  CHECK(r.head->size == 3);
  CHECK(r.head->state_root == r.state_root);
  CHECK(r.head->log_root == f.primary->log().root());
  auto entry = f.primary->log().entry(2);
  REQUIRE(entry.ok());
  CHECK(entry->state_root == r.state_root);
  CHECK(entry->page_count == r.page_count);
  CHECK(entry->time_ms == r.time_ms);
}

TEST_CASE("multi-statement text runs as SQLite splits it, trigger bodies included") {
  Fixture f;
  auto r = f.exec({sql("CREATE TABLE t(a); CREATE TABLE log(x);\n"
                       "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.a); "
                       "INSERT INTO log VALUES (new.a * 10); END; -- a comment; with semicolons\n"
                       "INSERT INTO t VALUES (1); INSERT INTO t VALUES ('a;b');")});
  CHECK(r.statements.size() == 5);
  for (const auto& s : r.statements) CHECK(s.statement_index == 0);
  CHECK(as_int(f.scalar("SELECT count(*) FROM log")) == 4);
  CHECK(as_text(f.scalar("SELECT a FROM t WHERE rowid = 2")) == "a;b");
}

TEST_CASE("params bind only to single-statement text") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a)")});
  const uint64_t size = f.primary->size();
  auto r = f.primary->execute({sql("INSERT INTO t VALUES (?1); INSERT INTO t VALUES (2)", {Value{int64_t{1}}})});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::refused);
  CHECK(r.error().message.find("single statement") != std::string::npos);
  auto wrong_count = f.primary->execute({sql("INSERT INTO t VALUES (?1, ?2)", {Value{int64_t{1}}})});
  REQUIRE_FALSE(wrong_count.ok());
  CHECK(f.primary->size() == size);
  auto empty = f.primary->execute({sql("  -- nothing\n ; ")});
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().code == Errc::invalid_argument);
  auto none = f.primary->execute(std::span<const Statement>{});
  CHECK_FALSE(none.ok());
  CHECK(f.primary->size() == size);
}

TEST_CASE("every refused construct is refused by name and leaves no entry") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a, b)"), sql("INSERT INTO t VALUES (1, 2)")});
  struct Case {
    const char* sql;
    const char* names;
  };
  const Case cases[] = {
      {"ATTACH 'other.db' AS o", "ATTACH"},
      {"DETACH o", "DETACH"},
      {"SELECT load_extension('x')", "load_extension"},
      {"VACUUM", "VACUUM"},
      {"VACUUM INTO 'copy.db'", "VACUUM"},
      {"BEGIN", "BEGIN"},
      {"COMMIT", "COMMIT"},
      {"END", "COMMIT"},
      {"ROLLBACK", "ROLLBACK"},
      {"PRAGMA foreign_keys=OFF", "PRAGMA foreign_keys"},
      {"PRAGMA journal_mode", "PRAGMA journal_mode"},
      {"PRAGMA writable_schema=1", "PRAGMA writable_schema"},
      {"CREATE TEMP TABLE x(a)", "TEMP"},
      {"CREATE TABLE temp.y(a)", "TEMP"},
      {"CREATE TRIGGER temp.tr AFTER INSERT ON t BEGIN SELECT 1; END", "TEMP"},
      {"CREATE VIEW temp.v2 AS SELECT 1", "TEMP"},
      {"CREATE TEMP VIEW v AS SELECT 1", "TEMP"},
      {"CREATE TEMP TRIGGER tt AFTER INSERT ON t BEGIN SELECT 1; END", "TEMP"},
      {"CREATE VIRTUAL TABLE f USING fts4(x)", "module fts4"},
      {"INSERT INTO sqlite_swarmlite VALUES ('x', 1)", "writing sqlite_swarmlite"},
      {"UPDATE sqlite_swarmlite SET v = 5 WHERE k = 'applied_seq'", "writing sqlite_swarmlite"},
      {"DELETE FROM sqlite_swarmlite", "writing sqlite_swarmlite"},
      {"DROP TABLE sqlite_swarmlite", "writing sqlite_swarmlite"},
      // ALTER, indexes and triggers on it: SQLite's own refusal comes first
      // (hidden_meta_test.cpp, "user SQL cannot create, change or drop …").
      {"INSERT INTO t VALUES (sqlite_log(1, 'x'), 0)", "sqlite_log"},
      {"INSERT INTO t VALUES (fts5_source_id(), 0)", "fts5_source_id"},
      {"INSERT INTO t VALUES (log(2, 8), 0)", "log"},
      {"CREATE TABLE d(a, b DEFAULT (sqlite_version()))", "DEFAULT of column d.b: sqlite_version()"},
      {"CREATE TABLE d(a); ALTER TABLE d ADD COLUMN b DEFAULT (sin(1))", "DEFAULT of column d.b: sin()"},
      {"CREATE TABLE d(a CHECK (sqlite_source_id() <> ''))", "sqlite_source_id()"},
      {"CREATE TABLE d(a, g AS (exp(a)))", "exp()"},
      {"CREATE INDEX ix ON t(pow(a, 2))", "pow()"},
      {"CREATE INDEX ix ON t(a) WHERE cos(b) > 0", "cos()"},
      {"CREATE TRIGGER tr AFTER INSERT ON t WHEN sqlite_version() > '3' BEGIN SELECT 1; END",
       "trigger tr: sqlite_version()"},
      {"CREATE TRIGGER tr BEFORE UPDATE OF b ON t BEGIN UPDATE t SET a = tan(new.b); END",
       "trigger tr: tan()"},
      {"CREATE TRIGGER tr AFTER DELETE ON t BEGIN INSERT INTO sqlite_swarmlite VALUES ('x', 1); END",
       "trigger tr: writing sqlite_swarmlite"},
      {"CREATE VIEW v AS SELECT sqlite_compileoption_get(0) AS o", "view v: sqlite_compileoption_get()"},
      {"CREATE VIEW v AS SELECT 1; CREATE TRIGGER tr INSTEAD OF INSERT ON v BEGIN SELECT ln(2); END",
       "trigger tr: ln()"},
      {"INSERT INTO t(rowid, a) VALUES (1, 2) ON CONFLICT DO UPDATE SET a = atan(1)", "atan()"},
      {"INSERT INTO t VALUES (1, 2) RETURNING sqlite_version()", "sqlite_version()"},
      {"INSERT INTO t VALUES (sqlite_version(), 0)", "sqlite_version"},
      {"INSERT INTO t VALUES (sqlite_source_id(), 0)", "sqlite_source_id"},
      {"INSERT INTO t VALUES (sqlite_compileoption_used('SECURE_DELETE'), 0)", "sqlite_compileoption_used"},
      {"INSERT INTO t VALUES (sqlite_compileoption_get(0), 0)", "sqlite_compileoption_get"},
      {"INSERT INTO t VALUES (sin(1), 0)", "sin"},
      {"INSERT INTO t VALUES (exp(1), 0)", "exp"},
      {"INSERT INTO t SELECT pageno, 0 FROM dbstat", "dbstat"},
      {"INSERT INTO t SELECT compile_options, 0 FROM pragma_compile_options", "pragma"},
      {"INSERT INTO t SELECT sql, 0 FROM sqlite_stmt", "sqlite_stmt"},
      {"EXPLAIN SELECT 1", "EXPLAIN"},
      {"INSERT INTO t VALUES (9, 9); ATTACH 'x.db' AS x", "ATTACH"},
  };
  const uint64_t size = f.primary->size();
  const Hash32 root = f.primary->state_root();
  for (const Case& c : cases) {
    const std::string text = c.sql;
    CAPTURE(text);
    auto r = f.primary->execute({sql(c.sql)});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::refused);
    CHECK_MESSAGE(r.error().message.find(c.names) != std::string::npos, r.error().message);
    CHECK(f.primary->size() == size);
    CHECK(f.primary->state_root() == root);
  }
  CHECK(as_int(f.scalar("SELECT count(*) FROM t")) == 1);
  CHECK_FALSE(std::filesystem::exists(f.dir / "copy.db"));
  CHECK_FALSE(std::filesystem::exists(f.dir / "other.db"));
}

TEST_CASE("harmless reads and savepoints are allowed") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, b)")});
  auto info = f.exec({sql("PRAGMA table_info(t)")});
  CHECK(info.statements[0].rows.size() == 2);
  f.exec({sql("SAVEPOINT s1; INSERT INTO t(b) VALUES (1); ROLLBACK TO s1; INSERT INTO t(b) VALUES (2); RELEASE s1")});
  CHECK(as_int(f.scalar("SELECT b FROM t")) == 2);
  // Committed, applied_seq is the last entry's seq; inside a write (this
  // SELECT is an entry of its own) format 4 holds the pad value there until
  // the entry's end (docs/determinism.md "Cell padding").
  sqlite3* ro = nullptr;
  REQUIRE(sqlite3_open_v2(f.db.c_str(), &ro, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  auto applied = read_applied_size(ro);
  sqlite3_close_v2(ro);
  REQUIRE_MESSAGE(applied.ok(), applied.error_text());
  CHECK(*applied == f.primary->size());
  CHECK(f.scalar("SELECT v FROM sqlite_swarmlite WHERE k = 'applied_seq'") ==
        Value{Bytes{'S', 'W', 'P', 'A', 'D'}});
}

TEST_CASE("PRAGMA foreign_keys=ON, what ORMs send on connect, is a no-op write; OFF is refused") {
  Fixture f;
  f.exec({sql("CREATE TABLE parent(id INTEGER PRIMARY KEY)"),
          sql("CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id))")});
  for (const char* on :
       {"PRAGMA foreign_keys=ON", "PRAGMA foreign_keys = on", "PRAGMA foreign_keys=1",
        "PRAGMA foreign_keys='true'", "pragma FOREIGN_KEYS = YES"}) {
    CAPTURE(std::string(on));
    const uint64_t size = f.primary->size();
    auto r = f.primary->execute({sql(on)});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    CHECK(f.primary->size() == size + 1);  // logged, as any write (it changes only applied_seq)
  }
  // With another statement in the same transaction, and in a statement list.
  f.exec({sql("PRAGMA foreign_keys=ON"), sql("INSERT INTO parent VALUES (1)")});
  f.exec({sql("PRAGMA foreign_keys=ON; INSERT INTO child VALUES (1, 1)")});
  for (const char* off :
       {"PRAGMA foreign_keys=OFF", "PRAGMA foreign_keys=0", "PRAGMA foreign_keys=no"}) {
    CAPTURE(std::string(off));
    auto r = f.primary->execute({sql(off)});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::refused);
    CHECK_MESSAGE(r.error().message.find("foreign keys are always enforced") != std::string::npos,
                  r.error().message);
  }
  // Foreign keys are still enforced after all of it.
  auto orphan = f.primary->execute({sql("INSERT INTO child VALUES (2, 99)")});
  REQUIRE_FALSE(orphan.ok());
  CHECK(orphan.error().message.find("FOREIGN KEY") != std::string::npos);
  // Other setting pragmas stay refused, restating or not.
  auto other = f.primary->execute({sql("PRAGMA recursive_triggers=ON")});
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().code == Errc::refused);
  // A replica replays the log to the same state.
  check_replica_agrees(*f.primary, f.dir / "fk-replica");
}

TEST_CASE("a transaction failing in statement 3 of 4 leaves database and log unchanged") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a UNIQUE)"), sql("INSERT INTO t VALUES (1)")});
  const uint64_t size = f.primary->size();
  const Hash32 root = f.primary->state_root();
  auto r = f.primary->execute({sql("INSERT INTO t VALUES (2)"), sql("UPDATE t SET a = a + 10"),
                               sql("INSERT INTO t VALUES (11)"), sql("INSERT INTO t VALUES (3)")});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::sqlite_error);
  CHECK(r.error().message.find("statement 2") != std::string::npos);
  CHECK(r.error().message.find("UNIQUE") != std::string::npos);
  CHECK(f.primary->size() == size);
  CHECK(f.primary->state_root() == root);
  CHECK(as_int(f.scalar("SELECT sum(a) FROM t")) == 1);
  // The next transaction gets the seq the failed one would have had.
  auto ok = f.exec({sql("INSERT INTO t VALUES (4)")});
  CHECK(ok.seq == size + 1);  // size + 0 was the SELECT above
}

TEST_CASE("a failed transaction says which statement failed and what the ones before it returned") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a UNIQUE)")});
  const std::vector<Statement> tx = {sql("INSERT INTO t VALUES (1)"), sql("INSERT INTO t VALUES (2), (3)"),
                                     sql("INSERT INTO t VALUES (1)"), sql("INSERT INTO t VALUES (4)")};
  EntryFailure failure;
  auto r = f.primary->execute(tx, &failure);
  REQUIRE_FALSE(r.ok());
  REQUIRE(failure.statement.has_value());
  CHECK(*failure.statement == 2);
  REQUIRE(failure.completed.size() == 2);
  CHECK(failure.completed[0].rows_changed == 1);
  CHECK(failure.completed[1].rows_changed == 2);
  // A statement the log cannot hold is named too, though nothing ran.
  EntryFailure refused;
  const std::vector<Statement> bad = {sql("INSERT INTO t VALUES (5)"), sql("INSERT INTO t VALUES (6)"),
                                      sql(std::string("INSERT INTO t VALUES (7)\0 DROP TABLE t", 38))};
  auto n = f.primary->execute(bad, &refused);
  REQUIRE_FALSE(n.ok());
  CHECK(n.error().message.find("statement 2") != std::string::npos);
  REQUIRE(refused.statement.has_value());
  CHECK(*refused.statement == 2);
  CHECK(refused.completed.empty());
  CHECK(as_int(f.scalar("SELECT count(*) FROM t")) == 0);
}

TEST_CASE("every form of now is the entry's pinned time, in UTC") {
  Fixture f;
  auto r = f.exec({sql("SELECT unixepoch(), strftime('%s','now'), datetime('now'), CURRENT_TIMESTAMP, "
                       "julianday('now'), CURRENT_DATE, CURRENT_TIME, datetime('now','localtime'), "
                       "strftime('%Y-%m-%d %H:%M:%f','now')")});
  const auto& row = r.statements[0].rows[0];
  const int64_t secs = r.time_ms / 1000;
  CHECK(as_int(row[0]) == secs);
  CHECK(as_text(row[1]) == std::to_string(secs));
  CHECK(as_text(row[2]) == as_text(row[3]));
  CHECK(as_text(row[7]) == as_text(row[2]));  // TZ=UTC: localtime is UTC
  CHECK(std::get<double>(row[4].v) == doctest::Approx(r.time_ms / 86400000.0 + 2440587.5).epsilon(1e-12));
  CHECK(as_text(row[3]) == as_text(row[5]) + " " + as_text(row[6]));
  const std::string ms = as_text(row[8]);
  CHECK(ms.substr(ms.size() - 3) == fmt::format("{:03}", r.time_ms % 1000));
}

TEST_CASE("time never goes backwards between entries, also across a reopen") {
  // A clock that steps back (NTP, a VM restored): each entry's pinned time is
  // at least the previous entry's, so now-based DEFAULTs and comparisons in a
  // log never see time run backwards (docs/determinism.md "Pinned").
  auto now = std::make_shared<int64_t>(1'700'000'005'000);
  auto options = [now] {
    PrimaryOptions o = fast_primary();
    o.clock_ms = [now] { return *now; };
    return o;
  };
  Fixture f(options());
  auto time_at = [&](int64_t clock) {
    *now = clock;
    auto r = f.exec({sql("SELECT 1")});
    auto e = f.primary->log().entry(r.seq);
    REQUIRE(e.ok());
    CHECK(e->time_ms == r.time_ms);
    return r.time_ms;
  };
  CHECK(time_at(1'700'000'005'000) == 1'700'000'005'000);
  CHECK(time_at(1'700'000'003'000) == 1'700'000'005'000);
  CHECK(time_at(1'700'000'001'000) == 1'700'000'005'000);
  CHECK(time_at(1'700'000'009'000) == 1'700'000'009'000);
  f.reopen(options());
  CHECK(time_at(1'700'000'002'000) == 1'700'000'009'000);  // behind the last entry
  CHECK(time_at(1'700'000'010'000) == 1'700'000'010'000);
}

TEST_CASE("random() and randomblob() come from the entry's seed") {
  Fixture f;
  auto r = f.exec({sql("SELECT random(), randomblob(16), random(), randomblob(0)")});
  auto entry = f.primary->log().entry(r.seq);
  REQUIRE(entry.ok());
  SeededStream stream(entry->seed);
  const auto& row = r.statements[0].rows[0];
  CHECK(as_int(row[0]) == stream.next_i64());
  Bytes expect(16);
  stream.fill(expect.data(), expect.size());
  CHECK(std::get<Bytes>(row[1].v) == expect);
  CHECK(as_int(row[2]) == stream.next_i64());
  CHECK(std::get<Bytes>(row[3].v).size() == 1);
  // Another entry, another seed.
  auto r2 = f.exec({sql("SELECT random()")});
  CHECK(as_int(r2.statements[0].rows[0][0]) != as_int(row[0]));
}

TEST_CASE("every entry gets a seed of its own, across the draws of the seed pool and a reopen") {
  // Seeds come from the OS 64 at a time (Primary::next_seed): 150 writes
  // cross two draws, and a reopen starts a new pool.
  Fixture f;
  std::set<std::array<uint8_t, 32>> seeds;
  uint64_t last = 0;
  for (int i = 0; i < 150; ++i) {
    if (i == 100) f.reopen();
    last = f.exec({sql("SELECT 1")}).seq;
  }
  const std::array<uint8_t, 32> zero{};
  for (uint64_t seq = 0; seq <= last; ++seq) {
    auto entry = f.primary->log().entry(seq);
    REQUIRE(entry.ok());
    CHECK(entry->seed != zero);
    seeds.insert(entry->seed);
  }
  CHECK(seeds.size() == last + 1);
}

TEST_CASE("changes() and last_insert_rowid() start every entry at 0, also after reopen") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, c, l)"), sql("INSERT INTO t(c, l) VALUES (1, 1), (2, 2)")});
  auto first = f.exec({sql("INSERT INTO t(c, l) VALUES (changes(), last_insert_rowid()) RETURNING c, l")});
  CHECK(as_int(first.statements[0].rows[0][0]) == 0);
  CHECK(as_int(first.statements[0].rows[0][1]) == 0);
  f.reopen();
  auto second = f.exec({sql("INSERT INTO t(c, l) VALUES (changes(), last_insert_rowid()) RETURNING c, l")});
  CHECK(as_int(second.statements[0].rows[0][0]) == 0);
  CHECK(as_int(second.statements[0].rows[0][1]) == 0);
}

TEST_CASE("total_changes() counts from the start of the entry, whatever the connection ran before") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, n, d DEFAULT (total_changes()))"),
          sql("CREATE TABLE u(a UNIQUE)")});
  auto first = f.exec({sql("SELECT total_changes()")});
  CHECK(as_int(first.statements[0].rows[0][0]) == 0);
  // A failed transaction that changed rows, then a fresh connection: neither counts.
  auto failed = f.primary->execute({sql("INSERT INTO t(n) VALUES (1), (2), (3); INSERT INTO u VALUES (1), (1)")});
  REQUIRE_FALSE(failed.ok());
  auto r = f.exec({sql("INSERT INTO t(n) VALUES (1), (2)"),
                   sql("INSERT INTO t(n) VALUES (total_changes()) RETURNING n, d")});
  CHECK(as_int(r.statements[1].rows[0][0]) == 2);
  CHECK(as_int(r.statements[1].rows[0][1]) == 2);
  f.reopen();
  auto again = f.exec({sql("INSERT INTO t(n) VALUES (total_changes()) RETURNING n, d")});
  CHECK(as_int(again.statements[0].rows[0][0]) == 0);
  CHECK(as_int(again.statements[0].rows[0][1]) == 0);
}

TEST_CASE("the random rowid path is replayed from the seed") {
  // With rowid 2^63-1 taken, SQLite picks new rowids from its internal PRNG,
  // which is reseeded from the entry's seed.
  Fixture f;
  f.exec({sql("CREATE TABLE t(x)"), sql("INSERT INTO t(rowid, x) VALUES (9223372036854775807, 0)")});
  auto r = f.exec({sql("INSERT INTO t(x) VALUES (1), (2), (3) RETURNING rowid")});
  TempDir rdir;
  auto replica = Replica::open(rdir / "r.db", rdir / "r.log", f.keys.pub, fast_replica());
  REQUIRE(replica.ok());
  REQUIRE_MESSAGE(sync_replica(*f.primary, **replica).ok(), "sync");
  CHECK((*replica)->state_root() == f.primary->state_root());
  CHECK(r.statements[0].rows.size() == 3);
}

TEST_CASE("primary reopens and continues its log") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a)"), sql("INSERT INTO t VALUES (1)")});
  const Hash32 root = f.primary->state_root();
  const uint64_t size = f.primary->size();
  f.reopen();
  CHECK(f.primary->size() == size);
  CHECK(f.primary->state_root() == root);
  auto r = f.exec({sql("INSERT INTO t VALUES (2)")});
  CHECK(r.seq == size);
  CHECK(as_int(f.scalar("SELECT sum(a) FROM t")) == 3);
}

TEST_CASE("a primary whose database lags its log catches up on open") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a)")});
  f.reopen();
  PrimaryOptions crashy = fast_primary();
  crashy.test_hook = [](PrimaryHookPoint point) -> Status {
    if (point == PrimaryHookPoint::after_log_append) return make_error(Errc::io_error, "simulated crash");
    return ok_status();
  };
  f.reopen(crashy);
  const uint64_t size = f.primary->size();
  auto r = f.primary->execute({sql("INSERT INTO t VALUES (42)")});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("simulated crash") != std::string::npos);
  CHECK(f.primary->size() == size + 1);  // the entry is in the log...
  f.reopen();  // ...and reopening replays entry `size` from the log
  CHECK(f.primary->size() == size + 1);
  CHECK(as_int(f.scalar("SELECT sum(a) FROM t")) == 42);
  auto entry = f.primary->log().entry(size);
  REQUIRE(entry.ok());
  // The replayed state is the logged one.
  auto head = f.primary->head();
  REQUIRE(head);
  CHECK(head->size == f.primary->size());
}

// docs/operations.md "Local faults": a commit that fails after its entry was
// logged (disk full) is applied from the log in-process, with backoff, without a
// reopen; meanwhile the fault is reported and no head is signed.
TEST_CASE("a primary re-applies a logged entry whose commit failed, without a restart") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a)")});
  std::atomic<int> fail_commits{0};
  PrimaryOptions crashy = fast_primary();
  crashy.test_hook = [&](PrimaryHookPoint point) -> Status {
    if (point == PrimaryHookPoint::after_log_append && fail_commits.fetch_sub(1) > 0) {
      // The database's disk is full from here on, the log's is not.
      fault_injection::fail_writes_under(f.db);
      return make_error(Errc::io_error, "simulated disk full");
    }
    return ok_status();
  };
  f.reopen(crashy);
  std::set<int64_t> acked;
  for (int64_t i = 1; i <= 3; ++i) {
    f.exec({sql("INSERT INTO t VALUES (?)", {Value{i}})});
    acked.insert(i);
  }
  const uint64_t size = f.primary->size();
  fail_commits = 1;
  auto r = f.primary->execute({sql("INSERT INTO t VALUES (100)")});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("logged") != std::string::npos);
  CHECK(f.primary->size() == size + 1);  // durable in the log
  REQUIRE(f.primary->local_fault());
  CHECK(f.primary->local_fault()->retries == 1);
  // While the disk stays full, writes fail with a clear error and the fault stays.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (f.primary->local_fault()->retries < 3 && std::chrono::steady_clock::now() < deadline) {
    auto again = f.primary->execute({sql("INSERT INTO t VALUES (101)")});
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().code == Errc::unavailable);
    const bool explained = again.error().message.find("not applied yet") != std::string::npos ||
                           again.error().message.find("failed again") != std::string::npos;
    CHECK_MESSAGE(explained, again.error().to_string());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(f.primary->local_fault()->retries >= 3);
  CHECK_FALSE(f.primary->sign_head().ok());  // never a head over an unapplied entry
  // Space returns: the next attempt after the backoff applies entry `size`, then writes go on.
  fault_injection::clear();
  Result<ExecuteResult> ok = make_error(Errc::internal, "not tried");
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!ok.ok() && std::chrono::steady_clock::now() < deadline) {
    ok = f.primary->execute({sql("INSERT INTO t VALUES (4)")});
    if (!ok.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE_MESSAGE(ok.ok(), ok.error_text());
  acked.insert(4);
  CHECK_FALSE(f.primary->local_fault());
  CHECK(ok->seq == size + 1);
  const std::set<int64_t> present = first_column(*f.primary, "SELECT a FROM t");
  for (int64_t a : acked) CHECK(present.contains(a));
  CHECK(present.contains(100));  // the logged entry was applied
  auto head = f.primary->head();
  REQUIRE(head);
  CHECK(head->size == f.primary->size());
  CHECK(head->state_root == f.primary->state_root());
}

TEST_CASE("a disk-full write on the primary fails clearly, is reported, and writes resume") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a)")});
  f.exec({sql("INSERT INTO t VALUES (1)")});
  const uint64_t size = f.primary->size();
  fault_injection::fail_writes_under(f.dir / "");  // database and log
  auto r = f.primary->execute({sql("INSERT INTO t VALUES (?)", {Value{std::string(9000, 'x')}})});
  fault_injection::clear();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::io_error);
  INFO(r.error().to_string());
  const bool says_full = r.error().message.find("full") != std::string::npos ||
                         r.error().message.find("No space") != std::string::npos;
  CHECK(says_full);
  CHECK(f.primary->size() == size);  // nothing logged
  REQUIRE(f.primary->local_fault());
  f.exec({sql("INSERT INTO t VALUES (2)")});
  CHECK_FALSE(f.primary->local_fault());
  CHECK(as_int(f.scalar("SELECT sum(a) FROM t")) == 3);
}

TEST_CASE(
    "a statement that hits one of SQLite's limits (SQLITE_FULL) is its own error, not a local "
    "fault") {
  // SQLite says SQLITE_FULL "database or disk is full" both when a file write
  // finds the disk full and when a table has used up its rowids: AUTOINCREMENT
  // after the largest rowid, or a rowid table whose random rowid search fails.
  // Only the first is the node's trouble (docs/operations.md "Local faults").
  Fixture f;
  f.exec({sql("CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v)")});
  f.exec({sql("INSERT INTO a VALUES (9223372036854775807, 'last')")});
  const uint64_t size = f.primary->size();
  auto r = f.primary->execute({sql("INSERT INTO a(v) VALUES ('one too many')")});
  REQUIRE_FALSE(r.ok());
  INFO(r.error().to_string());
  CHECK(r.error().code == Errc::sqlite_error);
  CHECK(r.error().message.find("full") != std::string::npos);
  CHECK(f.primary->size() == size);       // nothing logged
  CHECK_FALSE(f.primary->local_fault());  // the node is fine: /readyz stays 200
  // And after a real disk-full fault has come and gone, the same limit is
  // still the statement's own error.
  fault_injection::fail_writes_under(f.dir / "");
  auto full =
      f.primary->execute({sql("INSERT INTO a VALUES (1, ?)", {Value{std::string(9000, 'x')}})});
  fault_injection::clear();
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().code == Errc::io_error);
  f.exec({sql("INSERT INTO a VALUES (2, 'ok')")});
  CHECK_FALSE(f.primary->local_fault());
  auto again = f.primary->execute({sql("INSERT INTO a(v) VALUES ('still too many')")});
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == Errc::sqlite_error);
  CHECK_FALSE(f.primary->local_fault());
}

TEST_CASE("a database ahead of its log is refused") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a)")});
  f.primary.reset();
  PrimaryOptions other = fast_primary();
  other.log_dir = f.dir / "empty.log";
  auto p = Primary::open(f.db, f.keys.secret, other);
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == Errc::diverged);
  CHECK(p.error().message.find("ahead") != std::string::npos);
}

TEST_CASE("a second primary on the same database is refused") {
  Fixture f;
  auto p = Primary::open(f.db, f.keys.secret, fast_primary());
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == Errc::unavailable);
}

TEST_CASE("a plain SQLite database is not taken over") {
  TempDir dir;
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((dir / "app.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE users(id)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto p = Primary::open(dir / "app.db", KeyPair::generate().secret, fast_primary());
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().message.find("not a swarmlite database") != std::string::npos);
}

TEST_CASE("genesis from another SQLite version is refused naming both versions") {
  Entry entry;
  entry.statements = genesis_statements("3.0.0");
  Status s = check_genesis(entry);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::bad_version);
  CHECK(s.error().message.find("3.0.0") != std::string::npos);
  CHECK(s.error().message.find(sqlite3_libversion()) != std::string::npos);

  entry.statements = genesis_statements();
  CHECK(check_genesis(entry).ok());
  entry.statements[0].sql = "CREATE TABLE other(x)";
  CHECK(check_genesis(entry).error().code == Errc::bad_value);
  entry.statements = genesis_statements();
  entry.seq = 1;
  CHECK_FALSE(check_genesis(entry).ok());

  // Through a replica: a log whose genesis names another version.
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  {
    auto log = Log::open(dir / "r.log", keys.pub, fast_log());
    REQUIRE(log.ok());
    Entry g;
    g.statements = genesis_statements("3.99.0");
    Bytes bytes = encode_entry(g);
    REQUIRE((*log)->append(std::span<const Bytes>(&bytes, 1)).ok());
  }
  auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, fast_replica());
  REQUIRE_FALSE(replica.ok());
  CHECK(replica.error().code == Errc::bad_version);
  CHECK(replica.error().message.find("3.99.0") != std::string::npos);
  CHECK(replica.error().message.find(sqlite3_libversion()) != std::string::npos);
}

TEST_CASE("group signing signs every N entries and sign_head forces one") {
  Fixture f(fast_primary(5));
  f.exec({sql("CREATE TABLE t(a)")});
  int signed_count = 0;
  for (int i = 0; i < 10; ++i) {
    auto r = f.exec({sql("INSERT INTO t VALUES (1)")});
    if (r.head) {
      ++signed_count;
      CHECK(r.head->size == r.seq + 1);
    }
  }
  CHECK(signed_count == 2);
  auto head = f.primary->sign_head();
  REQUIRE(head.ok());
  CHECK(head->size == f.primary->size());
  CHECK(head->verify(f.keys.pub).ok());
}

TEST_CASE("a primary whose head file a crash lost or left stale re-signs a consistent head on open") {
  namespace fs = std::filesystem;
  Fixture f;
  f.exec({sql("CREATE TABLE t(a)")});
  const fs::path head_file = f.primary->log_dir() / "head";
  const Head stale = *f.primary->head();
  auto stale_bytes = encode_head(stale);
  for (int i = 0; i < 5; ++i) f.exec({sql("INSERT INTO t VALUES (?)", {Value{int64_t{i}}})});
  const uint64_t size = f.primary->size();
  const Hash32 state = f.primary->state_root();
  f.primary.reset();

  SUBCASE("the head file holds an older head") {
    std::ofstream out(head_file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(stale_bytes.data()),
              static_cast<std::streamsize>(stale_bytes.size()));
  }
  SUBCASE("no head file") { fs::remove(head_file); }
  SUBCASE("an empty head file") { std::ofstream out(head_file, std::ios::trunc); }
  SUBCASE("no head file and the index lost its rows") {
    fs::remove(head_file);
    for (const auto& de : fs::directory_iterator(default_log_dir(f.db))) {
      if (de.path().extension() == ".idx") fs::resize_file(de.path(), 16);
    }
  }

  f.reopen();
  CHECK(f.primary->size() == size);
  CHECK(f.primary->state_root() == state);
  auto head = f.primary->head();
  REQUIRE(head);
  CHECK(head->size == size);
  CHECK(head->verify(f.keys.pub).ok());
  CHECK(head->log_root == f.primary->log().root());
  CHECK(head->state_root == state);
  // Consistent with the head signed before the crash: a prefix, not a fork.
  auto proof = f.primary->log().consistency_proof(stale.size, size);
  REQUIRE(proof.ok());
  CHECK(verify_consistency(stale.size, size, stale.log_root, head->log_root, *proof).ok());
  CHECK(as_int(f.scalar("SELECT sum(a) FROM t")) == 10);
}

// --- primary-only bounds (docs/determinism.md "Primary-only bounds") ----------

namespace {
PrimaryOptions bounded(std::chrono::milliseconds timeout, uint32_t max_pages, int max_value) {
  PrimaryOptions o = fast_primary();
  o.write_timeout = timeout;
  o.max_entry_pages = max_pages;
  o.max_value_bytes = max_value;
  return o;
}
// Log size, state root and page count: what a refused write must leave alone.
struct Snapshot {
  uint64_t size;
  Hash32 root;
  uint32_t pages;
  explicit Snapshot(const Primary& p) : size(p.size()), root(p.state_root()), pages(p.page_count()) {}
  bool operator==(const Snapshot&) const = default;
};
}  // namespace

TEST_CASE("a runaway write stops at the time limit, rolls back and logs nothing") {
  Fixture f(bounded(std::chrono::milliseconds(300), 0, 0));
  f.exec({sql("CREATE TABLE t(x)")});
  const Snapshot before(*f.primary);
  auto t0 = std::chrono::steady_clock::now();
  auto r = f.primary->execute({sql("INSERT INTO t SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 "
                                   "UNION ALL SELECT x+1 FROM c) SELECT x FROM c)")});
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::refused);
  CHECK(r.error().message ==
        "write transaction exceeded the 300 ms write time limit; rolled back, nothing logged");
  CHECK(took < std::chrono::seconds(60));  // liveness only: unbounded before the fix
  CHECK(took >= std::chrono::milliseconds(300));  // never before the limit (a coarse clock lags)
  CHECK(Snapshot(*f.primary) == before);
  // The connection is usable and the table empty.
  CHECK(as_int(f.scalar("SELECT count(*) FROM t")) == 0);
  // A reopened primary agrees: nothing reached the log or the file.
  f.reopen();
  CHECK(f.primary->size() == before.size + 1);  // + the count(*) entry
}

TEST_CASE("a write over the value size limit is refused before it builds the value") {
  Fixture f(bounded(std::chrono::milliseconds(0), 0, 1 << 20));
  f.exec({sql("CREATE TABLE t(x)")});
  const Snapshot before(*f.primary);
  for (const char* q : {"INSERT INTO t VALUES(zeroblob(900000000))",
                        "INSERT INTO t VALUES(randomblob(2000000))",
                        "INSERT INTO t VALUES(hex(zeroblob(600000)))",
                        // printf returns NULL over the length limit (a replica, with
                        // SQLite's higher limit, would store the text): an error here.
                        "INSERT INTO t VALUES(printf('%s%s', hex(zeroblob(300000)), hex(zeroblob(300000))))",
                        "INSERT INTO t VALUES(printf('%.*c', 900000000, 'x'))"}) {
    CAPTURE(q);
    auto r = f.primary->execute({sql(q)});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::refused);
    CHECK(r.error().message.find("at most 1048576 bytes") != std::string::npos);
    CHECK(r.error().message.find("nothing logged") != std::string::npos);
    CHECK(Snapshot(*f.primary) == before);
  }
  // Under the limit is fine.
  f.exec({sql("INSERT INTO t VALUES(zeroblob(500000))")});
}

TEST_CASE("a write adding or writing more pages than the entry cap is refused, nothing logged") {
  Fixture f(bounded(std::chrono::milliseconds(0), 64, 0));
  f.exec({sql("CREATE TABLE t(x)")});
  const Snapshot before(*f.primary);
  SUBCASE("one statement, pages still in the cache at commit") {
    auto r = f.primary->execute({sql("INSERT INTO t VALUES(zeroblob(100 * 4096))")});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::refused);
    CHECK(r.error().message.find("over the limit of 64 pages") != std::string::npos);
  }
  SUBCASE("many rows, pages spilled while running") {
    auto r = f.primary->execute(
        {sql("INSERT INTO t SELECT zeroblob(1000000) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION "
             "ALL SELECT x+1 FROM c WHERE x < 100) SELECT x FROM c)")});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::refused);
    CHECK(r.error().message.find("64 pages") != std::string::npos);
    // Stopped while running (the progress handler's count of spilled pages),
    // not at the commit after writing all ~25,000 pages.
    const std::string& m = r.error().message;
    const size_t at = m.find("wrote ");
    REQUIRE(at != std::string::npos);
    const long pages = std::stol(m.substr(at + 6));
    CHECK(pages > 64);
    CHECK(pages < 5000);
  }
  SUBCASE("rewriting existing pages counts too") {
    f.exec({sql("INSERT INTO t VALUES(zeroblob(40 * 4096))")});
    f.exec({sql("INSERT INTO t VALUES(zeroblob(40 * 4096))")});
    auto r = f.primary->execute({sql("UPDATE t SET x = randomblob(length(x))")});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("wrote") != std::string::npos);
  }
  CHECK(f.primary->size() >= before.size);
  f.exec({sql("INSERT INTO t VALUES(zeroblob(10 * 4096))")});
}

TEST_CASE("interrupt() stops a running write and refuses later ones") {
  Fixture f(bounded(std::chrono::milliseconds(0), 0, 0));
  f.exec({sql("CREATE TABLE t(x)")});
  const Snapshot before(*f.primary);
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    f.primary->interrupt();
  });
  auto r = f.primary->execute({sql("INSERT INTO t SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 "
                                   "UNION ALL SELECT x+1 FROM c) SELECT x FROM c)")});
  stopper.join();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK(r.error().message.find("stopping") != std::string::npos);
  CHECK(Snapshot(*f.primary) == before);
  auto again = f.primary->execute({sql("INSERT INTO t VALUES(1)")});
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == Errc::unavailable);
}

TEST_CASE("the size, the head and the log stay readable while a write runs") {
  Fixture f(bounded(std::chrono::milliseconds(1500), 0, 0));
  f.exec({sql("CREATE TABLE t(x)")});
  const uint64_t size = f.primary->size();
  std::atomic<bool> done{false};
  std::thread writer([&] {
    (void)f.primary->execute({sql("INSERT INTO t SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 "
                                  "UNION ALL SELECT x+1 FROM c) SELECT x FROM c)")});
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // All of these would wait for the write (the one mutex) before the fix.
  CHECK(f.primary->size() == size);
  CHECK(f.primary->head().has_value());
  {
    std::lock_guard lock(f.primary->log_mutex());
    CHECK(f.primary->log().size() == size);
  }
  CHECK_FALSE(done.load());
  writer.join();
}

// --- Group commit (primary.h durability order, docs/architecture.md) ---------

namespace {

// The files of a primary as a crash at this instant would leave them on disk:
// the database, its -wal file (not the -shm: rebuilt on open) and the log dir.
void copy_as_crashed(const std::filesystem::path& db, const std::filesystem::path& log_dir,
                     const std::filesystem::path& to_db) {
  namespace fs = std::filesystem;
  fs::copy_file(db, to_db, fs::copy_options::overwrite_existing);
  fs::path wal = db.string() + "-wal";
  if (fs::exists(wal))
    fs::copy_file(wal, to_db.string() + "-wal", fs::copy_options::overwrite_existing);
  fs::copy(log_dir, default_log_dir(to_db), fs::copy_options::recursive);
  fs::remove(default_log_dir(to_db) / "LOCK");
}

std::vector<Primary::Write> writes_of(const std::vector<std::vector<Statement>>& txns) {
  std::vector<Primary::Write> out;
  for (const auto& t : txns) out.push_back(Primary::Write{std::span<const Statement>(t)});
  return out;
}

}  // namespace

TEST_CASE("group commit: a batch shares one log append, each write keeps its own result") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, b)")});
  std::atomic<int> appends{0};
  PrimaryOptions counting = fast_primary();
  counting.test_hook = [&](PrimaryHookPoint point) -> Status {
    if (point == PrimaryHookPoint::before_log_append) ++appends;
    return ok_status();
  };
  f.reopen(counting);
  const uint64_t size = f.primary->size();
  const std::vector<std::vector<Statement>> txns = {
      {sql("INSERT INTO t VALUES (1, 'one')")},
      {sql("INSERT INTO t VALUES (1, 'dup')")},  // UNIQUE: fails alone
      {sql("INSERT INTO t VALUES (2, 'two')"), sql("SELECT count(*) FROM t")},
      {sql("INSERT INTO t VALUES (3, random())")},
      {sql("INSERT INTO nope VALUES (1)")},  // the group's last write fails
  };
  auto writes = writes_of(txns);
  EntryFailure failure;
  writes[1].failure = &failure;
  auto results = f.primary->execute_batch(writes);
  REQUIRE(results.size() == 5);
  REQUIRE_MESSAGE(results[0].ok(), results[0].error_text());
  CHECK(results[0]->seq == size);
  REQUIRE_FALSE(results[1].ok());
  CHECK(results[1].error().message.find("UNIQUE") != std::string::npos);
  CHECK(failure.statement == 0u);
  REQUIRE_MESSAGE(results[2].ok(), results[2].error_text());
  CHECK(results[2]->seq == size + 1);
  CHECK(as_int(results[2]->statements.back().rows.at(0).at(0)) == 2);
  REQUIRE_MESSAGE(results[3].ok(), results[3].error_text());
  CHECK(results[3]->seq == size + 2);
  REQUIRE_FALSE(results[4].ok());
  CHECK(results[4].error().message.find("nope") != std::string::npos);
  CHECK(appends.load() == 1);  // one log append (one fdatasync) for the group
  CHECK(f.primary->size() == size + 3);
  // One head for the group, handed to its last successful write.
  CHECK_FALSE(results[0]->head.has_value());
  REQUIRE(results[3]->head.has_value());
  CHECK(results[3]->head->size == size + 3);
  CHECK(f.primary->state_root() == results[3]->state_root);
  CHECK(as_int(f.scalar("SELECT count(*) FROM t")) == 3);

  // A replica replaying the log entry by entry reaches the same state.
  auto replica = Replica::open(f.dir / "r.db", f.dir / "r.log", f.keys.pub, fast_replica());
  REQUIRE(replica.ok());
  REQUIRE(sync_replica(*f.primary, **replica).ok());
  CHECK((*replica)->state_root() == f.primary->state_root());
}

TEST_CASE("group commit: concurrent writers all get their own durable results") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, w)")});
  f.exec({sql("INSERT INTO t VALUES (0, -1)")});
  const uint64_t size = f.primary->size();
  constexpr int kThreads = 16, kEach = 25;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  std::mutex seqs_mu;
  std::set<uint64_t> seqs;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) {
        // Every fifth write of each writer fails (a duplicate key): alone.
        const int64_t key = (i % 5 == 4) ? 0 : int64_t{w} * 1000 + i + 1;
        auto r = f.primary->execute(
            {sql("INSERT INTO t VALUES (?, ?)", {Value{key}, Value{int64_t{w}}})});
        if (!r.ok()) {
          if (key != 0 || r.error().message.find("UNIQUE") == std::string::npos) ++failed;
          continue;
        }
        std::lock_guard lock(seqs_mu);
        seqs.insert(r->seq);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failed.load() == 0);
  const int64_t rows = as_int(f.scalar("SELECT count(*) FROM t"));
  CHECK(rows == 1 + kThreads * (kEach - kEach / 5));
  CHECK(f.primary->size() == size + static_cast<uint64_t>(rows));  // rows - 1 writes + scalar()
  CHECK(seqs.size() == static_cast<size_t>(rows - 1));
  f.reopen();
  check_replica_agrees(*f.primary, f.dir / "r");
}

// The queue's hand-off: a leader wakes only the callers it answered and the
// caller at the queue's front. With a cap of 2 writes per group, callers of
// several writes each are answered over several groups and lead in turn; a
// lost wake-up would hang here (ctest's timeout), a mixed-up one would give a
// caller another's result or its results out of order.
TEST_CASE(
    "group commit: with a small cap, callers of several writes each lead in turn and get their own "
    "results") {
  PrimaryOptions o = fast_primary();
  o.max_group_writes = 2;
  Fixture f(o);
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, w, i)")});
  f.exec({sql("INSERT INTO t VALUES (1, -1, -1)")});  // every "duplicate" write hits it
  const uint64_t size = f.primary->size();
  constexpr int kThreads = 12, kRounds = 15;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < kRounds; ++round) {
        // 1 to 4 writes per call; the first of every fourth call is a duplicate key.
        const int n = 1 + (w + round) % 4;
        std::vector<std::vector<Statement>> txns;
        for (int i = 0; i < n; ++i) {
          const int64_t key =
              (round % 4 == 3 && i == 0) ? 1 : int64_t{w} * 100000 + round * 10 + i + 2;
          txns.push_back({sql("INSERT INTO t VALUES (?, ?, ?) RETURNING a",
                              {Value{key}, Value{int64_t{w}}, Value{int64_t{i}}})});
        }
        auto writes = writes_of(txns);
        auto results = f.primary->execute_batch(writes);
        if (results.size() != static_cast<size_t>(n)) {
          ++bad;
          continue;
        }
        uint64_t last_seq = 0;
        for (int i = 0; i < n; ++i) {
          const bool dup = round % 4 == 3 && i == 0;
          if (dup) {
            if (results[i].ok() || results[i].error().message.find("UNIQUE") == std::string::npos)
              ++bad;
            continue;
          }
          if (!results[i].ok()) {
            ++bad;
            continue;
          }
          // Its own row back, and seqs in the order of the call's writes.
          const auto& rows = results[i]->statements.at(0).rows;
          if (rows.size() != 1 || as_int(rows[0][0]) != int64_t{w} * 100000 + round * 10 + i + 2)
            ++bad;
          if (results[i]->seq <= last_seq) ++bad;
          last_seq = results[i]->seq;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(bad.load() == 0);
  const int64_t rows = as_int(f.scalar("SELECT count(*) FROM t"));
  CHECK(f.primary->size() == size + static_cast<uint64_t>(rows));  // rows - 1 writes + scalar()
  check_replica_agrees(*f.primary, f.dir / "r");
}

// Group commit under concurrent writers: a crash copy taken at random group
// appends (the files as a kill -9 would leave them: the group's earlier writes
// committed in the -wal file, not in the log) must open, hold every write
// acknowledged before the copy, and agree with a replica of its log.
TEST_CASE("group commit: a crash at any group's append keeps every acknowledged write") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, w)")});
  struct Crash {
    std::filesystem::path db;
    std::set<int64_t> acked;
  };
  std::mutex mu;  // acked, crashes
  std::set<int64_t> acked;
  std::vector<Crash> crashes;
  std::atomic<int> appends{0};
  PrimaryOptions o = fast_primary();
  o.sign_in_background = true;
  o.test_hook = [&](PrimaryHookPoint point) -> Status {
    if (point != PrimaryHookPoint::before_log_append) return ok_status();
    const int n = appends++;
    if (n % 5 == 2 && n < 60) {
      Crash c;
      c.db = f.dir / fmt::format("crash{}.db", n);
      {
        std::lock_guard lock(mu);
        c.acked = acked;
      }
      copy_as_crashed(f.db, f.primary->log_dir(), c.db);
      std::lock_guard lock(mu);
      crashes.push_back(std::move(c));
    }
    return ok_status();
  };
  f.reopen(o);
  constexpr int kThreads = 8, kEach = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) {
        const int64_t key = int64_t{w} * 1000 + i;
        auto r = f.primary->execute(
            {sql("INSERT INTO t VALUES (?, randomblob(?))", {Value{key}, Value{int64_t{100 + 50 * i}}})});
        if (!r.ok()) {
          ++failed;
          continue;
        }
        std::lock_guard lock(mu);
        acked.insert(key);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failed.load() == 0);
  CHECK(acked.size() == size_t{kThreads * kEach});
  MESSAGE("appends: " << appends.load() << ", crash copies: " << crashes.size());
  REQUIRE(crashes.size() >= 3);
  for (const Crash& c : crashes) {
    CAPTURE(c.db);
    auto p = Primary::open(c.db, f.keys.secret, fast_primary());
    REQUIRE_MESSAGE(p.ok(), p.error_text());
    const std::set<int64_t> present = first_column(**p, "SELECT a FROM t");
    for (int64_t a : c.acked) CHECK_MESSAGE(present.contains(a), "acknowledged write " << a);
    check_replica_agrees(**p, c.db.string() + ".replica");
  }
  f.reopen();
  CHECK(f.primary->repaired_entries() == 0);
  CHECK(as_int(f.scalar("SELECT count(*) FROM t")) == kThreads * kEach);
}

// Group appends fail for a while under concurrent writers: those groups'
// earlier writes are committed in the database, not logged, and get an error;
// once the disk takes writes again they are appended first, in order, and the
// log and the database agree (a restart repairs nothing; a replica agrees).
TEST_CASE("group commit: failed appends under concurrent writers are retried in order") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, w)")});
  std::atomic<int> appends{0};
  std::atomic<bool> failing{false};
  PrimaryOptions o = fast_primary();
  o.test_hook = [&](PrimaryHookPoint point) -> Status {
    if (point != PrimaryHookPoint::before_log_append) return ok_status();
    const int n = appends++;
    if (n == 10) failing = true;
    if (failing.load()) {
      if (n < 14) return make_error(Errc::io_error, "simulated: no space left on the log's disk");
      failing = false;
    }
    return ok_status();
  };
  f.reopen(o);
  constexpr int kThreads = 8, kEach = 30;
  std::mutex mu;
  std::set<int64_t> acked, refused;
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) {
        const int64_t key = int64_t{w} * 1000 + i;
        auto r = f.primary->execute({sql("INSERT INTO t VALUES (?, ?)", {Value{key}, Value{int64_t{w}}})});
        std::lock_guard lock(mu);
        (r.ok() ? acked : refused).insert(key);
        if (!r.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  for (auto& t : threads) t.join();
  MESSAGE("acknowledged " << acked.size() << ", refused " << refused.size());
  CHECK_FALSE(refused.empty());
  // Retried until the backoff lets the pending entries in.
  Result<ExecuteResult> last = make_error(Errc::internal, "not tried");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!last.ok() && std::chrono::steady_clock::now() < deadline) {
    last = f.primary->execute({sql("INSERT INTO t VALUES (999999, 0)")});
    if (!last.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE_MESSAGE(last.ok(), last.error_text());
  CHECK_FALSE(f.primary->local_fault());
  const std::set<int64_t> present = first_column(*f.primary, "SELECT a FROM t");
  for (int64_t a : acked) CHECK_MESSAGE(present.contains(a), "acknowledged write " << a);
  CHECK(f.primary->size() == f.primary->log().size());
  f.reopen();
  CHECK(f.primary->repaired_entries() == 0);  // everything committed was appended
  check_replica_agrees(*f.primary, f.dir / "r");
}

// A process killed right after a write returns leaves the database and its
// -wal file as they are: plain SQLite must recover them to that write, from
// the file alone. Entries over the 16 MiB page cache spill, and SQLite then
// rewrites frame headers after the commit frame (docs/vfs.md "Write
// capture"): the shim held the last one back and the copy lost the commit.
// The replica showed it (its apply does not touch the WAL again until the next
// entry or re-pin); the primary's own work after a commit happened to flush it.
TEST_CASE("after every write the database files alone recover to that write, spilled ones too") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, note TEXT, b BLOB)")});
  ReplicaOptions ro = fast_replica();
  ro.pin_interval = std::chrono::hours(1);  // no re-pin (and its checkpoint) after each entry
  auto replica = Replica::open(f.dir / "r.db", f.dir / "r.log", f.keys.pub, ro);
  REQUIRE(replica.ok());
  const std::filesystem::path crashed = f.dir / "crashed.db";
  namespace fs = std::filesystem;
  // Copies `db` and its -wal file as a kill -9 would leave them and returns
  // what plain SQLite reads from the copy.
  auto recovered = [&](const fs::path& db, const std::string& query) {
    fs::copy_file(db, crashed, fs::copy_options::overwrite_existing);
    fs::remove(crashed.string() + "-wal");
    fs::remove(crashed.string() + "-shm");
    if (fs::exists(db.string() + "-wal"))
      fs::copy_file(db.string() + "-wal", crashed.string() + "-wal");
    vfs_testing::Conn plain(crashed.string());  // plain SQLite, its own recovery
    std::string out = plain.text(query);
    CHECK(plain.text("PRAGMA quick_check") == "ok");
    return out;
  };
  const std::string digest =
      "SELECT count(*) || ':' || total(length(CAST(b AS BLOB))) || ':' || total(a) FROM t";
  for (int round = 0; round < 8; ++round) {
    std::vector<Statement> w;
    switch (round % 4) {
      case 0:  // one small row
        w.push_back(sql("INSERT INTO t(note, b) VALUES ('small', randomblob(100))"));
        break;
      case 1:  // 24 rows of 1 MiB: more than the page cache, leaf pages written again
        w.push_back(sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<24) "
                        "INSERT INTO t(note, b) SELECT 'big ' || i, randomblob(64) || "
                        "zeroblob(1048576 - 64) FROM n"));
        break;
      case 2:  // the big rows again, then a few gone
        w.push_back(sql("UPDATE t SET note = note || ' again', b = zeroblob(length(b) / 2) "
                        "WHERE a % 2 = 0"));
        w.push_back(sql("DELETE FROM t WHERE a % 5 = 0"));
        break;
      default:  // small rows among the big ones
        w.push_back(sql("INSERT INTO t(note, b) SELECT 'copy', randomblob(10) FROM t LIMIT 40"));
        break;
    }
    w.push_back(sql(digest));
    ExecuteResult r = f.exec(w);
    const std::string want = as_text(r.statements.back().rows.at(0).at(0));
    INFO("round ", round, ": ", want);
    CHECK(recovered(f.db, digest) == want);  // before the primary touches its files again
    // The replica applies the entry the same way (the same shim).
    REQUIRE(sync_replica(*f.primary, **replica).ok());
    CHECK(recovered(f.dir / "r.db", digest) == want);
  }
}

// A crash between a group's commits and its log fdatasync: the -wal file holds
// commits the log does not (their writes were never acknowledged). The primary
// must restart with exactly the durable entries.
TEST_CASE("group commit: a crash before the group's log sync restarts with the durable entries") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, b)")});
  f.exec({sql("INSERT INTO t VALUES (1, 'durable')")});
  const std::filesystem::path crashed = f.dir / "crashed.db";
  bool armed = false;
  PrimaryOptions crashy = fast_primary();
  crashy.test_hook = [&](PrimaryHookPoint point) -> Status {
    if (point == PrimaryHookPoint::before_log_append && armed) {
      armed = false;
      copy_as_crashed(f.db, f.primary->log_dir(), crashed);
    }
    return ok_status();
  };
  f.reopen(crashy);
  const uint64_t size = f.primary->size();
  const Hash32 root = f.primary->state_root();
  const std::vector<std::vector<Statement>> txns = {
      {sql("INSERT INTO t VALUES (2, 'lost')")},
      {sql("INSERT INTO t VALUES (3, randomblob(5000))")},
      {sql("UPDATE t SET b = 'lost too' WHERE a = 1")},
  };
  armed = true;
  auto results = f.primary->execute_batch(writes_of(txns));
  for (auto& r : results) REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(f.primary->size() == size + 3);
  REQUIRE(std::filesystem::exists(crashed));

  // The crashed copy: the log ends at `size`, the database holds two more commits.
  PrimaryOptions plain = fast_primary();
  auto reopened = Primary::open(crashed, f.keys.secret, plain);
  REQUIRE_MESSAGE(reopened.ok(), reopened.error_text());
  Primary& p = **reopened;
  CHECK(p.repaired_entries() == 2);
  CHECK(p.size() == size);
  CHECK(p.state_root() == root);
  auto rows = p.execute({sql("SELECT group_concat(a || ':' || b) FROM t")});
  REQUIRE(rows.ok());
  CHECK(as_text(rows->statements[0].rows.at(0).at(0)) == "1:durable");
  // It goes on writing, and a replica of its log agrees with it.
  auto next = p.execute({sql("INSERT INTO t VALUES (4, 'after')")});
  REQUIRE_MESSAGE(next.ok(), next.error_text());
  auto replica = Replica::open(f.dir / "r.db", f.dir / "r.log", f.keys.pub, fast_replica());
  REQUIRE(replica.ok());
  REQUIRE(sync_replica(p, **replica).ok());
  CHECK((*replica)->state_root() == p.state_root());
  reopened->reset();
  // A clean restart has nothing to repair.
  auto again = Primary::open(crashed, f.keys.secret, plain);
  REQUIRE_MESSAGE(again.ok(), again.error_text());
  CHECK((*again)->repaired_entries() == 0);
}

// docs/operations.md "Group commit": the group's append fails (the log's disk
// is full): its earlier writes are committed in the database but not logged.
// They get an error; the primary appends them once the disk takes writes again,
// or a restart in between discards them.
TEST_CASE("group commit: a failed group append is retried, or discarded by a restart") {
  for (const bool restart : {false, true}) {
    CAPTURE(restart);
    Fixture f;
    f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY)")});
    bool armed = false;
    PrimaryOptions full = fast_primary();
    full.test_hook = [&](PrimaryHookPoint point) -> Status {
      if (point == PrimaryHookPoint::before_log_append && armed) {
        armed = false;
        fault_injection::fail_writes_under(f.primary->log_dir());
      }
      return ok_status();
    };
    f.reopen(full);
    const uint64_t size = f.primary->size();
    const Hash32 root = f.primary->state_root();
    const std::vector<std::vector<Statement>> txns = {{sql("INSERT INTO t VALUES (1)")},
                                                      {sql("INSERT INTO t VALUES (2)")},
                                                      {sql("INSERT INTO t VALUES (3)")}};
    armed = true;
    auto results = f.primary->execute_batch(writes_of(txns));
    for (auto& r : results) REQUIRE_FALSE(r.ok());
    CHECK(results[0].error().message.find("not acknowledged") != std::string::npos);
    CHECK(results[1].error().message.find("not acknowledged") != std::string::npos);
    CHECK(f.primary->size() == size);
    REQUIRE(f.primary->local_fault());
    CHECK_FALSE(f.primary->sign_head().ok());  // never a head while entries are unlogged
    if (restart) {
      f.primary.reset();
      fault_injection::clear();
      f.reopen();
      CHECK(f.primary->repaired_entries() == 2);
      CHECK(f.primary->size() == size);
      CHECK(f.primary->state_root() == root);
      CHECK(as_int(f.scalar("SELECT count(*) FROM t")) == 0);
      continue;
    }
    fault_injection::clear();
    Result<ExecuteResult> ok = make_error(Errc::internal, "not tried");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!ok.ok() && std::chrono::steady_clock::now() < deadline) {
      ok = f.primary->execute({sql("INSERT INTO t VALUES (4)")});
      if (!ok.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE_MESSAGE(ok.ok(), ok.error_text());
    CHECK(ok->seq == size + 2);  // entries size and size+1 (writes 1 and 2) were appended first
    CHECK_FALSE(f.primary->local_fault());
    CHECK(as_int(f.scalar("SELECT sum(a) FROM t")) == 7);
    f.reopen();
    CHECK(f.primary->repaired_entries() == 0);
    auto replica = Replica::open(f.dir / "r.db", f.dir / "r.log", f.keys.pub, fast_replica());
    REQUIRE(replica.ok());
    REQUIRE(sync_replica(*f.primary, **replica).ok());
    CHECK((*replica)->state_root() == f.primary->state_root());
  }
}

// --- the statement cache (PrimaryOptions::statement_cache) ----------------------

namespace {

// Two primaries on the same pinned clock and seeds, one keeping prepared
// statements across writes, one preparing every statement afresh: the same
// transactions must give the same results and byte-identical log entries.
struct CachePair {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> cached, fresh;

  CachePair() {
    cached = open("cached.db", 64);
    fresh = open("fresh.db", 0);
  }
  std::unique_ptr<Primary> open(const char* name, size_t cache) {
    PrimaryOptions o = fast_primary(1u << 30);
    o.statement_cache = cache;
    o.clock_ms = [] { return int64_t{1'700'000'000'000}; };
    auto draws = std::make_shared<uint8_t>(0);
    o.seed_source = [draws] {
      std::array<uint8_t, 32> s{};
      s.fill(++*draws);
      return s;
    };
    auto p = Primary::open(dir / name, keys.secret, std::move(o));
    REQUIRE_MESSAGE(p.ok(), p.error_text());
    return std::move(p).value();
  }
  // Runs `txn` on both; both must succeed or both fail with the same code.
  // Returns the cached primary's result (or its error).
  Result<ExecuteResult> run(std::vector<Statement> txn) {
    auto a = cached->execute(txn);
    auto b = fresh->execute(txn);
    INFO(txn.front().sql);
    REQUIRE_MESSAGE(a.ok() == b.ok(), (a.ok() ? b.error_text() : a.error_text()));
    if (!a.ok()) {
      CHECK(a.error().code == b.error().code);
      return a;
    }
    REQUIRE(a->statements.size() == b->statements.size());
    for (size_t i = 0; i < a->statements.size(); ++i) {
      CHECK(a->statements[i].columns == b->statements[i].columns);
      CHECK(a->statements[i].rows == b->statements[i].rows);
      CHECK(a->statements[i].rows_changed == b->statements[i].rows_changed);
      CHECK(a->statements[i].last_insert_rowid == b->statements[i].last_insert_rowid);
    }
    CHECK(a->state_root == b->state_root);
    return a;
  }
  ExecuteResult ok(std::vector<Statement> txn) {
    auto r = run(std::move(txn));
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    return std::move(r).value();
  }
  // Runs `txn` on both; both must fail alike. Returns the error code.
  Errc fails(std::vector<Statement> txn) {
    auto r = run(std::move(txn));
    REQUIRE_FALSE(r.ok());
    return r.error().code;
  }
  void check_same_log() {
    REQUIRE(cached->size() == fresh->size());
    for (uint64_t s = 0; s < cached->size(); ++s) {
      auto a = cached->log().entry_bytes(s);
      auto b = fresh->log().entry_bytes(s);
      REQUIRE(a.ok());
      REQUIRE(b.ok());
      INFO("entry " << s);
      CHECK(*a == *b);
    }
  }
};

Value text(std::string s) { return Value{std::move(s)}; }
Value num(int64_t n) { return Value{n}; }

}  // namespace

TEST_CASE(
    "cached statements give the results and entry bytes of fresh ones across schema changes") {
  CachePair p;
  const std::string insert = "INSERT INTO t(a) VALUES (?1) RETURNING *";
  const std::string update = "UPDATE t SET a = a || '.' WHERE rowid = ?1 RETURNING *";
  p.ok({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a)")});
  auto uses = [&](int round) {
    for (int i = 0; i < 5; ++i) {
      p.ok({sql(insert, {text(fmt::format("r{}i{}", round, i))})});
      p.ok({sql(update, {num(i + 1)})});
    }
  };
  uses(0);
  // A new column with a default: RETURNING * has three columns now.
  p.ok({sql("ALTER TABLE t ADD COLUMN b DEFAULT 'x'")});
  auto r = p.ok({sql(insert, {text("after alter")})});
  CHECK(r.statements[0].columns == std::vector<std::string>{"id", "a", "b"});
  uses(1);
  // Dropped and created with another shape: the same text means other columns.
  p.ok({sql("DROP TABLE t"),
        sql("CREATE TABLE t(a TEXT, c INTEGER DEFAULT 7, id INTEGER PRIMARY KEY)")});
  r = p.ok({sql(insert, {text("reshaped")})});
  CHECK(r.statements[0].columns == std::vector<std::string>{"a", "c", "id"});
  uses(2);
  // An index and a trigger the cached INSERT now has to maintain and fire.
  p.ok({sql("CREATE INDEX t_a ON t(a)"), sql("CREATE TABLE log(n)"),
        sql("CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.id); END")});
  uses(3);
  p.check_same_log();
  CHECK(as_int(p.cached->execute({sql("SELECT count(*) FROM log")})->statements[0].rows[0][0]) ==
        5);
}

TEST_CASE(
    "a cached statement SQLite re-prepares under a same-numbered schema returns the new shape") {
  // Inside one entry: a table created in a savepoint, written through a
  // statement that gets cached, rolled back, and created again with another
  // shape. The schema version is the same both times, so the cache's own
  // version check passes; SQLite expired the statement at the ROLLBACK TO and
  // re-prepares it (through the authorizer) in its first step.
  CachePair p;
  p.ok({sql("CREATE TABLE t(a)")});
  const std::string insert = "INSERT INTO u(a) VALUES (?1) RETURNING *";
  auto r = p.ok({sql("SAVEPOINT s"), sql("CREATE TABLE u(a, b)"), sql(insert, {num(1)}),
                 sql("ROLLBACK TO s"), sql("RELEASE s"), sql("CREATE TABLE u(b, a, c DEFAULT 9)"),
                 sql(insert, {num(2)})});
  REQUIRE(r.statements.size() == 7);
  CHECK(r.statements[2].columns == std::vector<std::string>{"a", "b"});
  CHECK(r.statements[6].columns == std::vector<std::string>{"b", "a", "c"});
  REQUIRE(r.statements[6].rows.size() == 1);
  CHECK(r.statements[6].rows[0] == std::vector<Value>{Value{}, num(2), num(9)});
  p.ok({sql(insert, {num(3)})});
  p.check_same_log();
}

// A failed group append leaves the group's earlier writes committed in the
// -wal file but not logged: open() cuts them there (repair_wal_ahead), so no
// checkpoint may copy them into the database file meanwhile. A page request
// pins (and checkpoints a full -wal) outside any group: it once copied them,
// and the restart then found the database ahead of its log for good.
TEST_CASE("a page request never checkpoints commits a failed group append left unlogged") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB)")});
  std::atomic<bool> fail{false};
  PrimaryOptions o = fast_primary();
  o.test_hook = [&](PrimaryHookPoint point) -> Status {
    if (point == PrimaryHookPoint::before_log_append && fail.load()) {
      return make_error(Errc::io_error, "simulated: no space left on the log's disk");
    }
    return ok_status();
  };
  f.reopen(o);
  const uint32_t one = 1;
  f.exec({sql("INSERT INTO t VALUES (0, 'durable')")});
  const uint64_t size = f.primary->size();
  const Hash32 root = f.primary->state_root();
  fail = true;
  const std::vector<std::vector<Statement>> txns = {
      {sql("INSERT INTO t VALUES (1, randomblob(4500000))")},  // > 1,000 -wal frames
      {sql("INSERT INTO t VALUES (2, 'x')")}};
  auto results = f.primary->execute_batch(writes_of(txns));
  for (auto& r : results) REQUIRE_FALSE(r.ok());
  // The first page request pins (no pin holds the -wal file back yet).
  (void)f.primary->pinned_pages(size, std::span(&one, 1));
  f.primary.reset();
  fail = false;
  f.reopen();
  CHECK(f.primary->repaired_entries() == 1);
  CHECK(f.primary->size() == size);
  CHECK(f.primary->state_root() == root);
  CHECK(as_int(f.scalar("SELECT count(*) FROM t WHERE a = 1")) == 0);
}

// The group's last write commits in SQLite while the log's fdatasync of the
// group runs (primary.h, durability order). When that fdatasync fails, no
// write of the group is acknowledged (the last one included, though SQLite
// committed it) and the primary takes no more writes (its log store refuses
// appends after a failed fsync). A restart then finds the database and the
// log agreeing either way: with the group's records, where they reached the
// file after all, or without them, where the disk lost them (the log's
// directory put back as it was before the group): open() cuts from the -wal
// file every commit the log lacks.
TEST_CASE("a log fdatasync failing after the group's commits acknowledges none of them") {
  for (const bool lost : {false, true}) {
    CAPTURE(lost);
    PrimaryOptions o = fast_primary();
    o.log_options.sync = true;
    Fixture f(o);
    f.exec({sql("CREATE TABLE t(a INTEGER PRIMARY KEY, b)")});
    f.exec({sql("INSERT INTO t VALUES (0, 'durable')")});
    const uint64_t size = f.primary->size();
    const Hash32 root = f.primary->state_root();
    const std::filesystem::path log_dir = default_log_dir(f.db);
    const std::filesystem::path saved = f.dir / "saved-log";
    std::filesystem::copy(log_dir, saved);
    fault_injection::fail_syncs_under(log_dir);
    const std::vector<std::vector<Statement>> txns = {{sql("INSERT INTO t VALUES (1, 'a')")},
                                                      {sql("INSERT INTO t VALUES (2, 'b')")}};
    auto results = f.primary->execute_batch(writes_of(txns));
    fault_injection::clear();
    for (auto& r : results) {
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == Errc::io_error);
    }
    CHECK(f.primary->size() == size);
    CHECK(f.primary->local_fault().has_value());
    CHECK_FALSE(f.primary->execute({sql("INSERT INTO t VALUES (3, 'c')")}).ok());
    f.primary.reset();
    if (lost) {
      std::filesystem::remove_all(log_dir);
      std::filesystem::rename(saved, log_dir);
    }
    f.reopen(o);
    CHECK(f.primary->repaired_entries() == (lost ? 2 : 0));
    CHECK(f.primary->size() == (lost ? size : size + 2));
    if (lost) CHECK(f.primary->state_root() == root);
    CHECK(as_int(f.scalar("SELECT count(*) FROM t WHERE a > 0")) == (lost ? 0 : 2));
    f.exec({sql("INSERT INTO t VALUES (3, 'c')")});
  }
}

TEST_CASE("a statement refused once is refused every time, across schema changes") {
  CachePair p;
  p.ok({sql("CREATE VIRTUAL TABLE f USING fts5(body)"), sql("INSERT INTO f(body) VALUES ('a b')"),
        sql("CREATE TABLE x(r)")});
  // Refused after a successful prepare (rank_read_refusal) and by the
  // authorizer during prepare (a refused function).
  const std::string rank = "INSERT INTO x(r) SELECT rank FROM f";
  const std::string fn = "INSERT INTO x(r) VALUES (sin(1))";
  for (int round = 0; round < 3; ++round) {
    for (const std::string& refused : {rank, fn}) {
      for (int i = 0; i < 2; ++i) {
        CHECK(p.fails({sql(refused)}) == Errc::refused);
      }
    }
    p.ok({sql(fmt::format("ALTER TABLE x ADD COLUMN c{}", round))});
  }
  // The table that was read is an ordinary one under the same text: allowed.
  p.ok({sql("DROP TABLE f"), sql("CREATE TABLE f(body, rank)"),
        sql("INSERT INTO f VALUES ('a', 5)")});
  auto r = p.ok({sql(rank)});
  CHECK(r.statements[0].rows_changed == 1);
  p.check_same_log();
}

TEST_CASE("a statement whose first use failed runs normally next time") {
  CachePair p;
  p.ok({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a NOT NULL)")});
  p.ok({sql("INSERT INTO t VALUES (1, 'one')")});
  const std::string insert = "INSERT INTO t(id, a) VALUES (?1, ?2) RETURNING id, a";
  // Fails in its step (a constraint), in its bind (wrong count) and in a later
  // statement of the same transaction: nothing of it may stay behind.
  CHECK(p.fails({sql(insert, {num(1), text("dup")})}) == Errc::sqlite_error);
  CHECK(p.fails({sql(insert, {num(2)})}) == Errc::invalid_argument);
  CHECK(p.fails({sql(insert, {num(2), text("two")}), sql("INSERT INTO t VALUES (1, 'x')")}) ==
        Errc::sqlite_error);
  auto r = p.ok({sql(insert, {num(2), text("two")})});
  CHECK(r.statements[0].rows == std::vector<std::vector<Value>>{{num(2), text("two")}});
  // Cached now; a failing use, then a good one again.
  CHECK(p.fails({sql(insert, {num(2), Value{}})}) == Errc::sqlite_error);
  r = p.ok({sql(insert, {num(3), text("three")})});
  CHECK(r.statements[0].rows == std::vector<std::vector<Value>>{{num(3), text("three")}});
  p.check_same_log();
}

TEST_CASE("bindings of one use of a cached statement never reach the next") {
  CachePair p;
  p.ok({sql("CREATE TABLE t(a, b)")});
  const std::string insert =
      "INSERT INTO t(a, b) VALUES (?1, ?2) RETURNING a, b, typeof(a), typeof(b)";
  const std::vector<std::pair<Value, Value>> uses = {
      {num(1), text("one")},
      {Value{}, Value{Bytes{1, 2, 3}}},
      {Value{2.5}, Value{}},
      {text(std::string("nul\0inside", 10)), num(-7)},
  };
  for (const auto& [a, b] : uses) {
    auto r = p.ok({sql(insert, {a, b})});
    REQUIRE(r.statements[0].rows.size() == 1);
    CHECK(r.statements[0].rows[0][0] == a);
    CHECK(r.statements[0].rows[0][1] == b);
  }
  // Two uses in one transaction, the second with fewer values: refused, not
  // filled in from the first.
  CHECK(p.fails({sql(insert, {num(5), num(6)}), sql(insert, {num(7)})}) == Errc::invalid_argument);
  p.check_same_log();
}

namespace {
// The file's schema version, read on a snapshot of the primary's database.
int64_t schema_version_of(const Primary& primary) {
  auto snap = primary.open_snapshot();
  REQUIRE_MESSAGE(snap.ok(), snap.error_text());
  auto q = prepare(snap->db.get(), "PRAGMA schema_version");
  REQUIRE(q.ok());
  REQUIRE(sqlite3_step(q->get()) == SQLITE_ROW);
  return sqlite3_column_int64(q->get(), 0);
}
}  // namespace

TEST_CASE("a cached statement SQLite re-prepares onto an fts5 rank column is refused") {
  // As above (a savepoint rolled back over a schema change, then a schema of
  // the same version): the cached `SELECT rank FROM f` read an ordinary column
  // when it was prepared and cached, and reads the fts5 rank (bm25(), the
  // host's libm) once SQLite re-prepares it. A fresh prepare refuses it, so
  // the re-prepared one must be refused too, or the primary logs an entry
  // that replicas refuse to replay.
  CachePair p;
  p.ok({sql("CREATE TABLE x(r)")});
  // How many schema versions creating an fts5 table takes (its shadow tables).
  const int64_t before = schema_version_of(*p.cached);
  p.ok({sql("CREATE VIRTUAL TABLE probe USING fts5(body)")});
  const int64_t fts5_versions = schema_version_of(*p.cached) - before;
  REQUIRE(fts5_versions >= 1);
  p.ok({sql("DROP TABLE probe")});
  const std::string rank = "INSERT INTO x(r) SELECT rank FROM f";
  std::vector<Statement> txn = {sql("SAVEPOINT s"), sql("CREATE TABLE f(body, rank)")};
  for (int64_t i = 1; i < fts5_versions; ++i)
    txn.push_back(sql(fmt::format("CREATE TABLE pad{}(a)", i)));
  txn.push_back(sql("INSERT INTO f VALUES ('a', 5)"));
  txn.push_back(sql(rank));  // prepared afresh: an ordinary column, allowed and cached
  txn.push_back(sql("ROLLBACK TO s"));
  txn.push_back(sql("RELEASE s"));
  txn.push_back(sql("CREATE VIRTUAL TABLE f USING fts5(body)"));
  txn.push_back(sql("INSERT INTO f(body) VALUES ('a b')"));
  txn.push_back(sql(rank));
  EntryFailure failure;
  auto r = p.cached->execute(txn, &failure);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::refused);
  CHECK(r.error().message.find("rank column of fts5 table f") != std::string::npos);
  CHECK(failure.statement == txn.size() - 1);
  auto fresh = p.fresh->execute(txn);
  REQUIRE_FALSE(fresh.ok());
  CHECK(fresh.error().code == Errc::refused);
  p.check_same_log();
}

TEST_CASE("the logged entry holds the transaction exactly and is canonical") {
  // The primary encodes an entry once, from the caller's statements, and
  // writes the state root and page count into its trailer at the commit.
  Fixture f;
  f.exec({sql("CREATE TABLE t(a, b, c, d, e)")});
  const std::vector<Statement> txn = {sql("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
                                          {Value{}, Value{int64_t{-3}}, Value{0.25},
                                           Value{std::string("x\0y", 3)}, Value{Bytes{0, 255}}}),
                                      sql("UPDATE t SET a = 1"),
                                      sql("DELETE FROM t WHERE b = ?1", {Value{int64_t{9}}})};
  auto r = f.exec(txn);
  auto bytes = f.primary->log().entry_bytes(r.seq);
  REQUIRE(bytes.ok());
  auto entry = decode_entry(*bytes);
  REQUIRE_MESSAGE(entry.ok(), entry.error_text());
  CHECK(entry->seq == r.seq);
  CHECK(entry->time_ms == r.time_ms);
  CHECK(entry->statements == txn);
  CHECK(entry->state_root == r.state_root);
  CHECK(entry->page_count == r.page_count);
  CHECK(encode_entry(*entry) == *bytes);
}

TEST_CASE("entries encoded into recycled buffers hold their own bytes only") {
  // The primary keeps the buffers of durable entries for the next encodings
  // (spare_entry_bytes_): a short entry after a long one, and a long one after
  // short ones, must log exactly their own bytes, nothing left over from the
  // buffer's last use. Writes of several sizes, one after another.
  Fixture f;
  f.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")});
  const std::vector<size_t> sizes = {100, 1, 40, 1, 1, 250, 3, 100, 2};
  int64_t next = 0;
  for (size_t n : sizes) {
    std::vector<Statement> txn;
    for (size_t i = 0; i < n; ++i) {
      txn.push_back(sql("INSERT INTO t(v) VALUES (?1)",
                        {Value{std::string(static_cast<size_t>(next % 97) + 1, 'a')}}));
      ++next;
    }
    auto r = f.exec(txn);
    auto bytes = f.primary->log().entry_bytes(r.seq);
    REQUIRE(bytes.ok());
    CHECK(bytes->size() == encoded_entry_bytes(txn));
    auto entry = decode_entry(*bytes);
    REQUIRE_MESSAGE(entry.ok(), entry.error_text());
    CHECK(entry->seq == r.seq);
    CHECK(entry->statements == txn);
    CHECK(entry->state_root == r.state_root);
    CHECK(encode_entry(*entry) == *bytes);
  }
  check_replica_agrees(*f.primary, f.dir / "r");
}

TEST_CASE("empty text and blob parameters are stored as '' and x'', not NULL, on every node") {
  // An empty std::vector's data() may be null, and SQLite binds a null
  // pointer as NULL; a borrowed binding (no copy) must not change that either.
  Fixture f;
  f.exec({sql("CREATE TABLE t(k INTEGER PRIMARY KEY, v)")});
  f.exec({sql("INSERT INTO t VALUES (1, ?1)", {Value{std::string()}}),
          sql("INSERT INTO t VALUES (2, ?1)", {Value{Bytes{}}}),
          sql("INSERT INTO t VALUES (3, ?1)", {Value{Bytes{7}}})});
  for (int round = 0; round < 2; ++round) {  // the fresh prepare, then the cached statement
    f.exec({sql("INSERT INTO t VALUES (?1, ?2)", {Value{int64_t{10 + round}}, Value{Bytes{}}})});
  }
  CHECK(as_text(f.scalar("SELECT group_concat(k || ':' || typeof(v) || ':' || length(v), ' ') "
                         "FROM t ORDER BY k")) == "1:text:0 2:blob:0 3:blob:1 10:blob:0 11:blob:0");
  check_replica_agrees(*f.primary, f.dir / "r");
}

// Between checkpoints, every BackgroundWriteback::kPagesPerKick frames the primary starts the
// -wal file's writeback on a thread of its own, so SQLite's fdatasync of the
// -wal file at the checkpoint (under the write mutex) finds little left to
// write (docs/performance.md "WAL writeback off the write path").
TEST_CASE("the primary starts the -wal file's writeback in the background between checkpoints") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")});
  CHECK(f.primary->wal_writebacks() == 0);
  // Two frames per write (the row's page and applied_seq's): past one
  // checkpoint (1,000 frames) and several writeback steps.
  for (int i = 0; i < 700; ++i) {
    f.exec({Statement{"INSERT INTO t(v) VALUES (?)", {Value{std::string(40, 'a' + i % 26)}}}});
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (f.primary->wal_writebacks() < 2 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(f.primary->wal_writebacks() >= 2);
  CHECK(as_int(f.scalar("SELECT count(*) FROM t")) == 700);
  check_replica_agrees(*f.primary, f.dir / "r");
}

TEST_CASE("a -wal file a long outside read transaction grew is cut back once the reader ends") {
  Fixture f;
  f.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")});
  const auto wal = std::filesystem::path(f.db.string() + "-wal");
  constexpr uintmax_t kLimit = 64u << 20;  // connection_settings.cpp: journal_size_limit
  // Another program reads the database and keeps its read transaction open:
  // no checkpoint may pass its snapshot, so the WAL cannot start over.
  sqlite3* outside = nullptr;
  REQUIRE(sqlite3_open_v2(f.db.c_str(), &outside, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(outside, "BEGIN; SELECT count(*) FROM t;", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  auto write_mib = [&](int n) {
    for (int i = 0; i < n; ++i) f.exec({sql("INSERT INTO t(v) VALUES (randomblob(1048576))")});
  };
  write_mib(72);
  CHECK(std::filesystem::file_size(wal) > kLimit);
  REQUIRE(sqlite3_exec(outside, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(outside);
  // The next checkpoint copies the whole WAL (~1,000 frames later), the write
  // after it starts the file over, and that write's commit cuts it back.
  write_mib(6);
  CHECK(std::filesystem::file_size(wal) <= kLimit);
  CHECK(as_int(f.scalar("SELECT count(*) FROM t")) == 78);
  check_replica_agrees(*f.primary, f.dir / "r");
}
