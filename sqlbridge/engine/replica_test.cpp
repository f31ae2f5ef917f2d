// Replica: differential replay of random workloads against a primary,
// divergence on a tampered entry, resume after reopen, concurrent readers.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "core/fault_injection.h"
#include "core/file_io.h"
#include "core/head.h"
#include "core/log_store.h"
#include "core/proc_locks_test_util.h"
#include "sqlbridge/engine/disk_change_test_util.h"
#include "sqlbridge/engine/engine_test_fixture.h"
#include "sqlbridge/engine/local_fault.h"
#include "sqlbridge/engine/retention.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/proof/verifier.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

// Random write transactions over a few tables, tracked by a small model so that
// most of them succeed; the ones that fail must leave no trace.
class Workload {
 public:
  explicit Workload(uint64_t seed) : rng_(seed) {}

  std::vector<Statement> next() {
    std::vector<Statement> tx;
    int n = 1 + pick(3);
    for (int i = 0; i < n; ++i) tx.push_back(statement());
    return tx;
  }
  // Called after a transaction committed: the model follows the database.
  void committed() { tables_ = pending_; }
  void failed() { pending_ = tables_; }

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
  std::string table() { return "t" + std::to_string(pick(kTables)); }
  std::string existing() {
    std::vector<int> ids(pending_.begin(), pending_.end());
    return "t" + std::to_string(ids[static_cast<size_t>(pick(static_cast<int>(ids.size())))]);
  }

  Statement statement() {
    if (pending_.empty() || pick(20) == 0) {
      int id = pick(kTables);
      pending_.insert(id);
      std::string t = "t" + std::to_string(id);
      return sql("CREATE TABLE IF NOT EXISTS " + t +
                 "(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c BLOB, ts TEXT, k TEXT UNIQUE);"
                 "CREATE TABLE IF NOT EXISTS audit(id INTEGER PRIMARY KEY, tbl TEXT, at TEXT, r INTEGER);"
                 "CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v)");
    }
    const std::string t = existing();
    const int id = std::stoi(t.substr(1));
    switch (pick(18)) {
      case 0:
        if (pending_.size() > 1 && pick(3) == 0) {
          pending_.erase(id);
          return sql("DROP TABLE " + t);
        }
        [[fallthrough]];
      case 1:
        return sql("CREATE INDEX IF NOT EXISTS " + t + "_a ON " + t + "(a, b)");
      case 2:
        return sql("DROP INDEX IF EXISTS " + t + "_a");
      case 3:
        return sql("CREATE TRIGGER IF NOT EXISTS " + t + "_tr AFTER INSERT ON " + t +
                   " BEGIN INSERT INTO audit(tbl, at, r) VALUES ('" + t +
                   "', CURRENT_TIMESTAMP, random()); UPDATE kv SET v = coalesce(v, 0) + 1 WHERE k = 'n'; END");
      case 4:
        return sql("CREATE VIEW IF NOT EXISTS " + t + "_v AS SELECT id, a * 2 AS a2, length(c) AS lc FROM " + t);
      case 5:
      case 6: {
        int blob = pick(10) == 0 ? 4000 + pick(9000) : pick(200);  // some spill into overflow pages
        return sql("INSERT INTO " + t + "(a, b, c, ts) VALUES (random() % 1000, hex(randomblob(6)), randomblob(" +
                   std::to_string(blob) + "), CURRENT_TIMESTAMP)");
      }
      case 7:
        return sql("INSERT INTO " + t + "(a, b, c, ts, k) VALUES (?1, ?2, ?3, datetime('now', ?4), ?5)",
                   {Value{static_cast<int64_t>(pick(1000))}, Value{std::string("p") + std::to_string(pick(100))},
                    Value{Bytes(static_cast<size_t>(pick(3) == 0 ? pick(5000) : pick(100)), static_cast<uint8_t>(pick(256)))},
                    Value{std::string("+") + std::to_string(pick(100)) + " minutes"},
                    pick(2) ? Value{} : Value{std::string("k") + std::to_string(pick(50))}});
      case 8:
        return sql("UPDATE " + t + " SET a = a + 1, ts = strftime('%Y-%m-%d %H:%M:%f', 'now'), b = b || '.' "
                   "WHERE a % 5 = " + std::to_string(pick(5)) + " LIMIT " + std::to_string(1 + pick(8)));
      case 9:
        return sql("DELETE FROM " + t + " WHERE id % " + std::to_string(2 + pick(4)) + " = 0");
      case 10:
        if (pick(4) == 0) return sql("DELETE FROM " + t);
        return sql("DELETE FROM " + t + " WHERE length(c) > 2000 LIMIT 3");
      case 11: {
        const std::string other = existing();
        return sql("INSERT INTO " + t + "(a, b, c, ts) SELECT a, b, substr(c, 1, 100), julianday('now') FROM " +
                   other + " ORDER BY id DESC LIMIT " + std::to_string(1 + pick(20)));
      }
      case 12:
        return sql("INSERT INTO kv(k, v) VALUES ('k" + std::to_string(pick(30)) +
                   "', unixepoch()) ON CONFLICT(k) DO UPDATE SET v = excluded.v || ':' || random() % 10");
      case 13:
        return sql("INSERT INTO " + t + "(a, b, ts) VALUES (changes(), last_insert_rowid(), CURRENT_DATE || CURRENT_TIME) "
                   "RETURNING id, a, b");
      case 14:
        return sql("UPDATE " + t + " SET c = randomblob(a % 64) WHERE id IN (SELECT id FROM " + t +
                   " ORDER BY random() LIMIT 3) RETURNING id");
      case 15:
        return sql("INSERT INTO " + t + "(a, b) VALUES (1, 'x'); UPDATE " + t +
                   " SET a = a * 3 WHERE b = 'x'; DELETE FROM " + t + " WHERE a > 900;");
      case 16:
        return sql("SAVEPOINT s; INSERT INTO " + t + "(a) VALUES (7); ROLLBACK TO s; INSERT INTO " + t +
                   "(a, ts) VALUES (8, date('now', 'localtime', 'start of month')); RELEASE s");
      default:
        if (id % 2 == 0) {
          // A failing statement now and then: the whole transaction must vanish.
          return sql("INSERT INTO " + t + "(k) VALUES ('dup'), ('dup')");
        }
        return sql("SELECT count(*), sum(length(c)) FROM " + t);
    }
  }

  static constexpr int kTables = 5;
  std::mt19937_64 rng_;
  std::set<int> tables_, pending_;
};

struct Run {
  uint64_t committed = 0;
  uint64_t failed = 0;
};

// Runs `transactions` random transactions on a primary; a replica follows
// through its own verified log; compares roots along the way and the files at the end.
Run differential(uint64_t seed, int transactions) {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  Run run;
  {
    // Seeds and clock from the test's seed: the same seed replays the same run.
    PrimaryOptions options = fast_primary(16);
    auto entropy = std::make_shared<std::mt19937_64>(seed ^ 0x5eed);
    options.seed_source = [entropy] {
      std::array<uint8_t, 32> s;
      for (auto& b : s) b = static_cast<uint8_t>((*entropy)());
      return s;
    };
    auto clock = std::make_shared<int64_t>(1'700'000'000'000);
    options.clock_ms = [clock, entropy] { return *clock += static_cast<int64_t>((*entropy)() % 5000); };
    auto primary = Primary::open(dir / "p.db", keys.secret, options);
    REQUIRE_MESSAGE(primary.ok(), primary.error_text());
    auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, fast_replica());
    REQUIRE_MESSAGE(replica.ok(), replica.error_text());
    Workload work(seed);
    for (int i = 0; i < transactions; ++i) {
      std::vector<Statement> tx = work.next();
      const uint64_t size = (*primary)->size();
      auto r = (*primary)->execute(tx);
      if (!r.ok()) {
        INFO("seed ", seed, " transaction ", i, ": ", r.error().to_string());
        REQUIRE(r.error().code == Errc::sqlite_error);
        REQUIRE((*primary)->size() == size);
        work.failed();
        ++run.failed;
        continue;
      }
      work.committed();
      ++run.committed;
      if (r->head) {
        Status s = sync_replica(**primary, **replica);
        REQUIRE_MESSAGE(s.ok(), "seed ", seed, " transaction ", i, ": ", s.error_text());
        REQUIRE((*replica)->size() == r->head->size);
        REQUIRE((*replica)->state_root() == r->head->state_root);
      }
    }
    REQUIRE((*primary)->sign_head().ok());
    REQUIRE(sync_replica(**primary, **replica).ok());
    REQUIRE((*replica)->size() == (*primary)->size());
    REQUIRE((*replica)->state_root() == (*primary)->state_root());
    REQUIRE((*replica)->page_count() == (*primary)->page_count());
    auto from_primary = StateTree::from_file(dir / "p.db");
    auto from_replica = StateTree::from_file(dir / "r.db");
    REQUIRE(from_primary.ok());
    REQUIRE(from_replica.ok());
    CHECK(from_primary->root() == (*primary)->state_root());
    CHECK(from_replica->root() == (*primary)->state_root());
  }
  // Both closed: the last connection checkpointed its WAL into the file.
  std::vector<Bytes> p = file_pages(dir / "p.db");
  std::vector<Bytes> r = file_pages(dir / "r.db");
  REQUIRE(p.size() == r.size());
  for (size_t i = 0; i < p.size(); ++i) {
    INFO("seed ", seed, " page ", i + 1);
    REQUIRE(p[i] == r[i]);
  }
  return run;
}

}  // namespace

TEST_CASE("differential replay: replicas of random workloads are page-identical") {
  const bool long_run = std::getenv("SWARMLITE_LONG") != nullptr;
  const int seeds = long_run ? 12 : 4;
  const int per_seed = long_run ? 1000 : 500;
  uint64_t committed = 0, failed = 0;
  for (int s = 1; s <= seeds; ++s) {
    const auto seed = static_cast<uint64_t>(s) * 7919;
    MESSAGE("differential replay seed ", seed, ", ", per_seed, " transactions");
    Run run = differential(seed, per_seed);
    committed += run.committed;
    failed += run.failed;
  }
  MESSAGE("differential replay: ", committed, " committed, ", failed, " refused by SQLite (set SWARMLITE_LONG=1 for 12,000)");
  CHECK(committed > failed);
}

namespace {
struct Pair : PrimaryAndReplica {
  void exec(std::vector<Statement> tx) {
    auto r = primary->execute(tx);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  void sync() {
    Status s = sync_replica(*primary, *replica);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
  }
};
}  // namespace

TEST_CASE("a replica replaces its head file at every stored head, so a kill -9 keeps the newest") {
  // ReplicaOptions' default (docs/formats/log-store.md "Head file on a replica"):
  // not fsync'ed, but written at once, so what a process crash leaves is the
  // newest head (the page cache survives), not one from an earlier close.
  Pair p;
  p.replica.reset();
  auto r = Replica::open(p.dir / "r.db", p.dir / "r.log", p.keys.pub, ReplicaOptions{});
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  p.replica = std::move(r).value();
  p.exec({sql("CREATE TABLE t(a)")});
  for (int i = 0; i < 3; ++i) {
    p.exec({sql("INSERT INTO t VALUES (?)", {Value{int64_t{i}}})});
    p.sync();
    auto file = file_io::read_file(p.dir / "r.log" / "head", 1 << 16);
    REQUIRE_MESSAGE(file.ok(), file.error_text());
    auto stored = p.replica->log().head();
    REQUIRE(stored.has_value());
    CHECK(*file == encode_head(*stored));
    CHECK(stored->size == p.primary->size());
  }
}

// The applier starts the -wal file's writeback every ~200 pages it wrote, so
// the checkpoint of each re-pin, on the applier thread, finds little of the
// file left to write (docs/performance.md "The replica's -wal writeback").
TEST_CASE("a replica starts its -wal file's writeback in the background as it applies") {
  Pair p;
  p.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")});
  p.sync();
  CHECK(p.replica->wal_writebacks() == 0);
  // One entry per apply, as a follower applies them: at least two pages each
  // (the row's and applied_seq's), past several writeback steps.
  for (int i = 0; i < 400; ++i) {
    p.exec({Statement{"INSERT INTO t(v) VALUES (?)", {Value{std::string(40, 'a' + i % 26)}}}});
    p.sync();
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (p.replica->wal_writebacks() < 2 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(p.replica->wal_writebacks() >= 2);
  CHECK(p.replica->size() == p.primary->size());
  CHECK(p.replica->state_root() == p.primary->state_root());
}

TEST_CASE("a failed transaction leaves primary, log and replica as before") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a UNIQUE)"), sql("INSERT INTO t VALUES (1)")});
  p.sync();
  const Hash32 root = p.replica->state_root();
  auto r = p.primary->execute({sql("INSERT INTO t VALUES (2)"), sql("INSERT INTO t VALUES (3)"),
                               sql("INSERT INTO t VALUES (1)"), sql("INSERT INTO t VALUES (4)")});
  REQUIRE_FALSE(r.ok());
  p.sync();
  CHECK(p.replica->size() == p.primary->size());
  CHECK(p.replica->state_root() == root);
  CHECK(p.primary->state_root() == root);
}

TEST_CASE("a tampered entry makes the replica diverge at that seq and keep its state") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  p.exec({sql("INSERT INTO t VALUES (1)")});
  p.exec({sql("INSERT INTO t VALUES (2)")});
  p.exec({sql("INSERT INTO t VALUES (3)")});
  // A log written around verification: entry 2 claims another state root.
  TempDir dir;
  {
    auto store = LogStore::open(dir / "bad.log", fast_log());
    REQUIRE(store.ok());
    for (uint64_t s = 0; s < p.primary->size(); ++s) {
      auto e = p.primary->log().entry(s);
      REQUIRE(e.ok());
      if (s == 2) e->state_root[0] ^= 1;
      REQUIRE((*store)->append(encode_entry(*e)).ok());
    }
  }
  // One transaction per entry: every entry's root is checked. A batch checks
  // only the root at its end, which entry 3 gets right (docs/determinism.md
  // "Batched replay"); the next test case shows that.
  ReplicaOptions options = fast_replica();
  options.max_batch_entries = 1;
  auto replica = Replica::open(dir / "r.db", dir / "bad.log", p.keys.pub, options);
  REQUIRE_MESSAGE(replica.ok(), replica.error_text());
  auto applied = (*replica)->apply_available();
  REQUIRE_FALSE(applied.ok());
  CHECK(applied.error().code == Errc::diverged);
  CHECK(applied.error().message.find("entry 2") != std::string::npos);
  CHECK((*replica)->size() == 2);
  REQUIRE((*replica)->diverged());
  auto good = p.primary->log().entry(1);
  REQUIRE(good.ok());
  CHECK((*replica)->state_root() == good->state_root);
  // It refuses to go on, even with a correct entry.
  auto correct = p.primary->log().entry(2);
  REQUIRE(correct.ok());
  CHECK((*replica)->apply(*correct).error().code == Errc::diverged);
  // The file kept the last good state.
  replica->reset();
  auto from_file = StateTree::from_file(dir / "r.db");
  REQUIRE(from_file.ok());
  CHECK(from_file->root() == good->state_root);
}

TEST_CASE("batched replay: a wrong root inside a batch is found entry by entry once the end differs") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  for (int i = 0; i < 5; ++i) p.exec({sql("INSERT INTO t VALUES (?1)", {Value{int64_t{i}}})});
  TempDir dir;
  {
    auto store = LogStore::open(dir / "bad.log", fast_log());
    REQUIRE(store.ok());
    for (uint64_t s = 0; s < p.primary->size(); ++s) {
      auto e = p.primary->log().entry(s);
      REQUIRE(e.ok());
      if (s == 3) e->state_root[0] ^= 1;  // inside the batch 1..6
      if (s == 6) e->state_root[0] ^= 1;  // the batch's last entry
      REQUIRE((*store)->append(encode_entry(*e)).ok());
    }
  }
  auto replica = Replica::open(dir / "r.db", dir / "bad.log", p.keys.pub, fast_replica());
  REQUIRE_MESSAGE(replica.ok(), replica.error_text());
  auto applied = (*replica)->apply_available();
  REQUIRE_FALSE(applied.ok());
  // The batch's end differs: entry by entry, the first wrong root is found.
  CHECK(applied.error().code == Errc::diverged);
  CHECK(applied.error().message.find("entry 3:") != std::string::npos);
  CHECK((*replica)->size() == 3);
  CHECK((*replica)->replay_stats().mismatches == 1);
}

TEST_CASE("a statement that fails on the replica is divergence") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  p.sync();
  Entry forged;
  forged.seq = p.replica->size();
  forged.statements = {sql("INSERT INTO no_such_table VALUES (1)")};
  Status s = p.replica->apply(forged);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::diverged);
  CHECK(p.replica->diverged());
}

TEST_CASE("a replica refuses what the primary would refuse, even when logged") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  p.sync();
  Entry forged;
  forged.seq = p.replica->size();
  forged.statements = {sql("ATTACH 'evil.db' AS e")};
  Status s = p.replica->apply(forged);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::diverged);
  CHECK(s.error().message.find("ATTACH") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(p.dir / "evil.db"));
}

TEST_CASE("replica reopens and resumes from the applied seq in its database") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  for (int i = 0; i < 5; ++i) p.exec({sql("INSERT INTO t VALUES (random())")});
  p.sync();
  const uint64_t size = p.replica->size();
  p.open_replica();
  CHECK(p.replica->size() == size);
  CHECK(p.replica->state_root() == p.primary->state_root());
  // Entries in the log but not yet applied when it stopped are applied on the next call.
  for (int i = 0; i < 3; ++i) p.exec({sql("INSERT INTO t VALUES (random())")});
  auto head = p.primary->head();
  std::vector<Bytes> entries;
  for (uint64_t s = p.replica->log().size(); s < head->size; ++s) entries.push_back(*p.primary->log().entry_bytes(s));
  REQUIRE(p.replica->log().append_verified(entries, *head).ok());
  p.open_replica();  // "crash" between the log append and the apply
  CHECK(p.replica->size() == size);
  auto applied = p.replica->apply_available();
  REQUIRE(applied.ok());
  CHECK(*applied == 3);
  CHECK(p.replica->state_root() == p.primary->state_root());
}

TEST_CASE("a plain read-only sqlite3 reader reads the replica while it applies") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  p.sync();
  sqlite3* reader = nullptr;
  REQUIRE(sqlite3_open_v2((p.dir / "r.db").c_str(), &reader, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_busy_timeout(reader, 2000);
  auto count = [&]() -> int64_t {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(reader, "SELECT count(*) FROM t", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
  };
  CHECK(count() == 0);
  // A read transaction held open across an apply keeps its snapshot.
  REQUIRE(sqlite3_exec(reader, "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK);
  CHECK(count() == 0);
  p.exec({sql("INSERT INTO t VALUES (1)")});
  p.sync();
  CHECK(count() == 0);
  REQUIRE(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  CHECK(count() == 1);
  // And concurrently, from another thread.
  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  int64_t last_seen = 0;
  std::thread t([&] {
    while (!done) {
      sqlite3_stmt* st = nullptr;
      if (sqlite3_prepare_v2(reader, "SELECT count(*) FROM t", -1, &st, nullptr) != SQLITE_OK ||
          sqlite3_step(st) != SQLITE_ROW) {
        ++errors;
      } else {
        int64_t n = sqlite3_column_int64(st, 0);
        if (n < last_seen) ++errors;
        last_seen = n;
      }
      sqlite3_finalize(st);
    }
  });
  for (int i = 0; i < 50; ++i) {
    p.exec({sql("INSERT INTO t VALUES (1)")});
    p.sync();
  }
  done = true;
  t.join();
  CHECK(errors == 0);
  CHECK(count() == 51);
  sqlite3_close(reader);
}

TEST_CASE("a proof asked with min_size is never run below it while a newer stored head waits to be applied") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, fast_primary());
  REQUIRE_MESSAGE(primary.ok(), primary.error_text());
  ReplicaOptions ro = fast_replica();
  ro.pin_interval = std::chrono::hours(1);  // the pin moves only when a proof asks
  auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, ro);
  REQUIRE_MESSAGE(replica.ok(), replica.error_text());
  Primary& p = **primary;
  Replica& r = **replica;
  // Copies the primary's entries and newest head into the replica's log; applies
  // them only when asked.
  auto store = [&] {
    auto head = p.head();
    REQUIRE(head);
    std::vector<Bytes> entries;
    {
      std::lock_guard lock(p.log_mutex());
      for (uint64_t s = r.log().size(); s < head->size; ++s) entries.push_back(p.log().entry_bytes(s).value());
    }
    std::lock_guard lock(r.log_mutex());
    REQUIRE(r.log().append_verified(entries, *head).ok());
  };
  store();
  REQUIRE(r.apply_available().ok());
  REQUIRE(r.pinned_size() == 1);  // genesis
  REQUIRE(p.execute({sql("CREATE TABLE t(a)")}).ok());
  store();
  REQUIRE(r.apply_available().ok());
  const uint64_t created = r.size();
  REQUIRE(created == 2);
  REQUIRE(r.pinned_size() == 1);  // not due yet
  REQUIRE(p.execute({sql("INSERT INTO t VALUES (1)")}).ok());
  store();  // head 3 stored, not applied: the file is at 2

  ProveOptions po;
  po.min_size = created;
  po.guard.time_limit = std::chrono::milliseconds(300);
  {
    // Nobody applies: no proof below min_size, and no "no such table" from the old pin.
    auto proved = r.prove("SELECT count(*) FROM t", {}, po);
    REQUIRE_FALSE(proved.ok());
    CHECK(proved.error().code == Errc::unavailable);
    CHECK_MESSAGE(proved.error().message.find("below min_size 2") != std::string::npos, proved.error().to_string());
  }
  // The applier applies the stored head meanwhile: the proof waits for it.
  po.guard.time_limit = std::chrono::milliseconds(5000);
  std::thread applier([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(r.apply_available().ok());
  });
  auto proved = r.prove("SELECT count(*) FROM t", {}, po);
  applier.join();
  REQUIRE_MESSAGE(proved.ok(), proved.error_text());
  CHECK(proved->proof.head.size == 3);
  CHECK(proved->result.rows.at(0).at(0) == Value{int64_t{1}});
}

TEST_CASE("replay and proofs never wait for log_mutex(), which a store holds through its fsync") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, fast_primary());
  REQUIRE_MESSAGE(primary.ok(), primary.error_text());
  auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, fast_replica());
  REQUIRE_MESSAGE(replica.ok(), replica.error_text());
  Primary& p = **primary;
  Replica& r = **replica;
  REQUIRE(p.execute({sql("CREATE TABLE t(a)")}).ok());
  for (int i = 0; i < 20; ++i) REQUIRE(p.execute({sql("INSERT INTO t VALUES (?1)", {Value{int64_t{i}}})}).ok());
  auto head = p.head();
  REQUIRE(head);
  std::vector<Bytes> entries;
  {
    std::lock_guard lock(p.log_mutex());
    for (uint64_t s = 0; s < head->size; ++s) entries.push_back(p.log().entry_bytes(s).value());
  }
  {
    std::lock_guard lock(r.log_mutex());
    REQUIRE(r.log().append_verified(entries, *head).ok());
  }
  // A store in progress holds log_mutex() (net/backends.cpp); here the test
  // holds it. Replay reads the log's view (core/log.h), so it goes on.
  // The futures first: should a check fail, the lock is let go before their
  // destructors wait for the threads.
  std::future<Result<uint64_t>> applied;
  std::future<Result<ProvedQuery>> proved;
  std::unique_lock held(r.log_mutex());
  applied = std::async(std::launch::async, [&] { return r.apply_available(); });
  REQUIRE(applied.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto n = applied.get();
  REQUIRE_MESSAGE(n.ok(), n.error_text());
  CHECK(r.size() == head->size);
  CHECK(r.state_root() == head->state_root);
  proved = std::async(std::launch::async, [&] { return r.prove("SELECT count(*) FROM t", {}, ProveOptions{}); });
  REQUIRE(proved.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto pr = proved.get();
  REQUIRE_MESSAGE(pr.ok(), pr.error_text());
  CHECK(pr->proof.head.size == head->size);
  CHECK(pr->result.rows.at(0).at(0) == Value{int64_t{20}});
  held.unlock();
}

TEST_CASE("ReadTxn: one connection read again and again answers as begin_read, errors included") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  p.sync();
  auto reader = open_reader(p.dir / "r.db", nullptr);
  REQUIRE_MESSAGE(reader.ok(), reader.error_text());
  sqlite3* db = reader->get();
  ReadTxn txn(db);
  for (int i = 0; i < 3; ++i) {
    auto pooled = txn.begin();
    REQUIRE_MESSAGE(pooled.ok(), pooled.error_text());
    CHECK(*pooled == p.replica->size());
    // The snapshot is fixed at begin(): a write applied now is not seen.
    p.exec({sql("INSERT INTO t VALUES (1)")});
    p.sync();
    auto inside = read_applied_size(db);
    REQUIRE(inside.ok());
    CHECK(*inside == *pooled);
    REQUIRE(txn.end().ok());
    CHECK(sqlite3_get_autocommit(db) != 0);
    auto fresh = open_reader(p.dir / "r.db", nullptr);
    REQUIRE(fresh.ok());
    auto once = begin_read(fresh->get());
    REQUIRE(once.ok());
    CHECK(*once == p.replica->size());
    REQUIRE(end_snapshot(fresh->get()).ok());
  }
  // A schema change under the prepared statements: SQLite prepares them again.
  p.exec({sql("CREATE TABLE u(b)"), sql("DROP TABLE t")});
  p.sync();
  auto after = txn.begin();
  REQUIRE_MESSAGE(after.ok(), after.error_text());
  CHECK(*after == p.replica->size());
  REQUIRE(txn.end().ok());

  // Files that are not (yet) swarmlite databases: the same answer or error.
  const auto empty = p.dir / "empty.db";
  const auto foreign = p.dir / "foreign.db";
  {
    auto w = open_sqlite(empty.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    REQUIRE(w.ok());
    auto f = open_sqlite(foreign.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    REQUIRE(f.ok());
    REQUIRE(exec_sql(f->get(), "CREATE TABLE t(a); CREATE TABLE u(b)").ok());
  }
  for (const auto& path : {empty, foreign}) {
    auto a = open_reader(path, nullptr);
    auto b = open_reader(path, nullptr);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    ReadTxn t2(a->get());
    for (int i = 0; i < 2; ++i) {
      auto pooled = t2.begin();
      auto once = begin_read(b->get());
      REQUIRE(pooled.ok() == once.ok());
      if (once.ok()) {
        CHECK(*pooled == 0);
        CHECK(*once == 0);
      } else {
        CHECK(pooled.error().code == Errc::corrupt);
        CHECK(pooled.error().to_string() == once.error().to_string());
        CHECK(pooled.error().message.find("2 schema objects but no") != std::string::npos);
        CHECK(sqlite3_get_autocommit(a->get()) != 0);  // an error ends the transaction
      }
      (void)t2.end();
      (void)end_snapshot(b->get());
    }
  }
}

TEST_CASE("a snapshot sees exactly the state of the size it reports") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  p.sync();
  auto snap = p.replica->open_snapshot();
  REQUIRE_MESSAGE(snap.ok(), snap.error_text());
  CHECK(snap->state.size == p.replica->size());
  CHECK(snap->state.state_root == p.replica->state_root());
  p.exec({sql("INSERT INTO t VALUES (1)")});
  p.sync();
  // Still the old state inside the snapshot.
  auto applied = read_applied_size(snap->db.get());
  REQUIRE(applied.ok());
  CHECK(*applied == snap->state.size);
  REQUIRE(end_snapshot(snap->db.get()).ok());
  auto snap2 = p.replica->open_snapshot();
  REQUIRE(snap2.ok());
  CHECK(snap2->state.size == p.replica->size());
  CHECK(snap2->state.state_root == p.primary->state_root());
}

namespace {
// An ordinary SQLite write to the replica's file from another connection:
// refused while the replica is open (its write connection keeps the WAL write
// lock, docs/vfs.md "The sole writer's locks"); SQLITE_BUSY after the timeout.
int outside_sqlite_write(const std::filesystem::path& db) {
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  sqlite3_busy_timeout(other, 200);
  int rc =
      sqlite3_exec(other, "UPDATE t SET body = 'evil' WHERE id = 2", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  return rc;
}

// A change below SQLite, as a faulty disk or a tool writing bytes would make
// it (the frames' checksums fixed, so every reader takes it).
void alter_behind_its_back(const std::filesystem::path& db) {
  REQUIRE(change_bytes_below_sqlite(db, "row 2", "evil2") > 0);
}

// The page the altered row lives on: t's root (a one-page table).
int root_page_of_t(const std::filesystem::path& db) {
  sqlite3* c = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &c, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(c, "SELECT rootpage FROM sqlite_schema WHERE name = 't'", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int page = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(c);
  return page;
}

void fill(Pair& p) {
  p.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)")});
  for (int i = 1; i <= 3; ++i) p.exec({sql("INSERT INTO t(body) VALUES (?)", {Value{"row " + std::to_string(i)}})});
  p.sync();
}
}  // namespace

// docs/vfs.md "Descriptors of files SQLite locks": POSIX drops every lock a
// process holds on a file when it closes any descriptor of it. The state tree
// read at open, pins (the -shm header, the pages), proofs and the scrub all
// read the files themselves; none of them may drop SQLite's locks, or another
// process's SQLite treats the live files as unused: a plain sqlite3 reader
// checkpoints and deletes the live -wal file when it closes.
TEST_CASE("the nodes' own reads of their files leave SQLite's locks in place") {
  Pair p;
  fill(p);
  REQUIRE(p.replica->prove("SELECT body FROM t WHERE id = 2", {}).ok());
  auto scrubbed = p.replica->scrub(1u << 20);
  REQUIRE_MESSAGE(scrubbed.ok(), scrubbed.error_text());
  auto pages = p.primary->pinned_pages(0, std::vector<uint32_t>{1, 2});
  REQUIRE_MESSAGE(pages.ok(), pages.error_text());
  REQUIRE(sync_database_files(p.dir / "p.db").ok());
  p.exec({sql("INSERT INTO t(body) VALUES ('after')")});
  p.sync();
  for (const char* name : {"p.db", "r.db"}) {
    INFO(name);
    const std::filesystem::path db = p.dir / name;
    // The write connection's SHARED lock on the main file (WAL mode holds it
    // while open) and the shared memory's (at least the DMS lock).
    CHECK(posix_locks_held(db) >= 1);
    CHECK(posix_locks_held(std::filesystem::path(db.string() + "-shm")) >= 1);
  }
  // What that protects: a plain SQLite reader in another process would close
  // its connection believing it the last one; here, in this process, a
  // connection of its own opened and closed next to them leaves the files.
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2((p.dir / "r.db").c_str(), &other, SQLITE_OPEN_READONLY, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_exec(other, "SELECT count(*) FROM t", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);
  CHECK(std::filesystem::exists(p.dir / "r.db-wal"));
}

TEST_CASE("scrub finds a page changed by another writer, names it, and the replica stops") {
  Pair p;
  fill(p);
  auto clean = p.replica->scrub(1u << 20);
  REQUIRE_MESSAGE(clean.ok(), clean.error_text());
  CHECK(*clean == p.replica->page_count());
  CHECK_FALSE(p.replica->corruption());
  alter_behind_its_back(p.dir / "r.db");
  auto found = p.replica->scrub(1u << 20);
  REQUIRE_FALSE(found.ok());
  CHECK(found.error().code == Errc::corrupt);
  INFO(found.error().message);
  CHECK(found.error().message.find(" differs from the state tree") != std::string::npos);
  CHECK(found.error().message.find("page " + std::to_string(root_page_of_t(p.dir / "r.db"))) != std::string::npos);
  REQUIRE(p.replica->corruption());
  // Latched: no proof, no apply.
  auto proof = p.replica->prove("SELECT body FROM t WHERE id = 1", {});
  REQUIRE_FALSE(proof.ok());
  CHECK(proof.error().code == Errc::corrupt);
  p.exec({sql("INSERT INTO t(body) VALUES ('more')")});
  CHECK_FALSE(sync_replica(*p.primary, *p.replica).ok());
}

TEST_CASE(
    "an outside SQLite writer is refused while the replica is open; bytes changed below SQLite "
    "latch the scrub") {
  Pair p;
  fill(p);
  REQUIRE(p.replica->prove("SELECT body FROM t WHERE id = 2", {}).ok());
  // The write connection keeps the WAL write lock (docs/vfs.md "The sole
  // writer's locks"): another connection's write waits and gets SQLITE_BUSY.
  CHECK(outside_sqlite_write(p.dir / "r.db") == SQLITE_BUSY);
  auto still = p.replica->prove("SELECT body FROM t WHERE id = 2", {});
  REQUIRE_MESSAGE(still.ok(), still.error_text());
  CHECK(still->result.rows.at(0).at(0) == Value{std::string("row 2")});
  // The replica applies on; the refusal left nothing behind.
  p.exec({sql("INSERT INTO t(body) VALUES ('row 4')")});
  p.sync();
  auto clean = p.replica->scrub(1u << 20);
  REQUIRE_MESSAGE(clean.ok(), clean.error_text());
  // A change SQLite's locks cannot stop: the scrub reads the file as a new
  // reader would, finds the page and latches; from then on no proof at all
  // (docs/operations.md).
  alter_behind_its_back(p.dir / "r.db");
  bool found = false;
  for (int i = 0; i < 100 && !found; ++i) found = !p.replica->scrub(64).ok();
  REQUIRE(found);
  const std::string page = "page " + std::to_string(root_page_of_t(p.dir / "r.db"));
  REQUIRE(p.replica->corruption());
  CHECK(p.replica->corruption()->message.find(page) != std::string::npos);
  auto proof = p.replica->prove("SELECT body FROM t WHERE id = 2", {});
  REQUIRE_FALSE(proof.ok());
  CHECK(proof.error().code == Errc::corrupt);
}

TEST_CASE("scrub goes round robin a few pages at a time") {
  Pair p;
  fill(p);
  const uint32_t pages = p.replica->page_count();
  REQUIRE(pages >= 2);
  uint32_t total = 0;
  for (uint32_t i = 0; i < pages; ++i) {
    auto n = p.replica->scrub(1);
    REQUIRE(n.ok());
    total += *n;
  }
  CHECK(total == pages);
  alter_behind_its_back(p.dir / "r.db");
  bool found = false;
  for (uint32_t i = 0; i < pages && !found; ++i) found = !p.replica->scrub(1).ok();
  CHECK(found);
}

// docs/verified-reads.md "Which head a peer proves against": proofs are answered
// against the newest pinned head while the replica keeps applying, and every
// one verifies; plain reads never fail because the state moved.
TEST_CASE("proofs and plain reads keep working while the replica applies") {
  Pair p;
  p.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")});
  p.sync();
  std::atomic<bool> done{false};
  std::atomic<int> proved{0}, proof_errors{0}, reads{0}, read_errors{0};
  std::atomic<uint64_t> last_size{0};
  std::string first_error;
  std::mutex error_mu;
  auto note = [&](const std::string& e) {
    std::lock_guard lock(error_mu);
    if (first_error.empty()) first_error = e;
  };
  auto prover = [&] {
    uint64_t seen = 0;
    while (!done) {
      ProveOptions po;
      po.min_size = seen;
      // This test is about the state moving, not speed: under ASan on a loaded
      // 2-core machine one query once took 2027 ms, over the 2 s default.
      po.guard.time_limit = std::chrono::seconds(60);
      auto r = p.replica->prove("SELECT count(*), max(id) FROM t", {}, po);
      if (!r.ok()) {
        ++proof_errors;
        note(r.error().to_string());
        continue;
      }
      auto v = Verifier::verify(p.keys.pub, r->proof);
      if (!v.ok()) {
        ++proof_errors;
        note("verify: " + v.error().to_string());
        continue;
      }
      if (r->proof.head.size < seen) ++proof_errors;  // heads only move forward
      seen = r->proof.head.size;
      // The newest size any prover saw: the other prover may store an older
      // one after this (it asked earlier), which must not hide this one.
      uint64_t prev = last_size.load();
      while (prev < seen && !last_size.compare_exchange_weak(prev, seen)) {
      }
      ++proved;
    }
  };
  auto reader = [&] {
    while (!done) {
      // With its state root: known before the state is visible (snapshot.h).
      auto snap = p.replica->open_snapshot();
      if (!snap.ok()) {
        ++read_errors;
        note("snapshot: " + snap.error().to_string());
        continue;
      }
      (void)end_snapshot(snap->db.get());
      ++reads;
    }
  };
  std::thread t1(prover), t2(prover), t3(reader);
  for (int i = 0; i < 1500; ++i) {
    p.exec({sql("INSERT INTO t(v) VALUES (?)", {Value{std::string(200, 'x')}})});
    p.sync();
  }
  // An idle replica pins its newest head on the next proof. Up to 120 s: an
  // ASan CI run on a loaded 2-core machine once ended a 30 s wait with the
  // provers at 1487 of 1502 and no error (not reproduced in 16 loaded ASan
  // runs); the proofs completed during the wait tell a stalled machine (few)
  // from a stuck pin (many, all at the old head).
  const uint64_t final_size = p.replica->size();
  const int proved_before_wait = proved.load();
  const auto wait_start = std::chrono::steady_clock::now();
  auto deadline = wait_start + std::chrono::seconds(120);
  while (last_size < final_size && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double waited_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();
  INFO("waited " << waited_s << " s for the final head; proofs during the wait: "
                 << proved.load() - proved_before_wait);
  done = true;
  t1.join();
  t2.join();
  t3.join();
  INFO("first error: " << first_error);
  // Seen once in a loaded CI run (last_size below final_size, no error): say
  // where the pin stood, so a repeat tells a slow machine from a stuck pin.
  INFO("last proved size " << last_size.load() << ", pinned " << p.replica->pinned_size()
                           << ", applied " << p.replica->size() << ", log head "
                           << (p.replica->log().head() ? p.replica->log().head()->size : 0)
                           << ", proofs " << proved.load());
  CHECK(proof_errors == 0);
  CHECK(read_errors == 0);
  CHECK(proved > 0);
  CHECK(reads > 0);
  CHECK(last_size == final_size);
  // The WAL does not grow without bound: a pin is replaced regularly and the
  // checkpoint gets past it.
  auto wal = std::filesystem::file_size(p.dir / "r.db-wal");
  const auto restarts = p.replica->wal_restart_stats();
  MESSAGE("replica WAL after 1500 entries with proofs running: "
          << wal << " bytes; RESTART checkpoints tried " << restarts.tried << ", busy "
          << restarts.busy);
  if (restarts.busy == 0) {
    CHECK(wal < 12u * 1024 * 1024);  // ~1000 frames of 4 KiB, plus what one pin interval adds
  } else {
    // A reader outlasted a RESTART's wait (a loaded machine: three threads
    // read here all along), and the next is tried only after a backoff of a
    // second or more (replica.cpp): the WAL may hold the whole run then, as
    // it did in a loaded CI run (13.0 MB, 3,157 frames: no restart got
    // through). replica_test's RESTART cases check the backoff and the
    // restart after it.
    CHECK(restarts.tried >= restarts.busy);
  }
}

namespace swarmlite {
struct ReplicaTestAccess {
  static std::timed_mutex& apply_lock(Replica& r) { return r.apply_mu_; }
};
}  // namespace swarmlite


// Read-your-writes for proofs: a client that asks for min_size, which the
// replica has applied, gets a proof at that size even while the applier (or
// the scrubber) holds the apply lock; without min_size it may be answered at
// the older pin, and an error there says which state it came from.
TEST_CASE("a proof asking for min_size waits for a busy applier; one answered at an older pin says so") {
  Pair p;
  ReplicaOptions slow_pin = fast_replica();
  slow_pin.pin_interval = std::chrono::hours(1);  // the applier does not re-pin by itself here
  p.replica.reset();
  auto reopened = Replica::open(p.dir / "r.db", p.dir / "r.log", p.keys.pub, slow_pin);
  REQUIRE_MESSAGE(reopened.ok(), reopened.error_text());
  p.replica = std::move(reopened).value();
  fill(p);
  auto first = p.replica->prove("SELECT count(*) FROM t", {});
  REQUIRE_MESSAGE(first.ok(), first.error_text());
  const uint64_t old_size = first->proof.head.size;

  p.exec({sql("CREATE TABLE late(k INTEGER PRIMARY KEY, v TEXT)"), sql("INSERT INTO late VALUES (2, 'two')")});
  p.sync();
  const uint64_t new_size = p.replica->size();
  REQUIRE(new_size > old_size);
  REQUIRE(p.replica->pinned_size() == old_size);

  // No min_size: the old pin answers, and its error names the state.
  auto stale = p.replica->prove("SELECT v FROM late WHERE k = 2", {});
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.error().message.find("no such table: late") != std::string::npos);
  CHECK(stale.error().message.find("log size " + std::to_string(old_size)) != std::string::npos);
  CHECK(stale.error().message.find("applied " + std::to_string(new_size)) != std::string::npos);

  // min_size past the pin while something holds the apply lock for a while.
  auto prove_held = [&](std::chrono::milliseconds hold, std::chrono::milliseconds limit) {
    std::atomic<bool> held{false};
    std::thread busy([&] {
      std::lock_guard lock(ReplicaTestAccess::apply_lock(*p.replica));
      held = true;
      std::this_thread::sleep_for(hold);
    });
    while (!held) std::this_thread::yield();
    ProveOptions po;
    po.min_size = new_size;
    po.guard.time_limit = limit;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = p.replica->prove("SELECT v FROM late WHERE k = 2", {}, po);
    const auto waited = std::chrono::steady_clock::now() - t0;
    busy.join();
    return std::make_pair(std::move(r), waited);
  };
  // A wait shorter than the hold gives up at its limit and answers at the old pin.
  {
    auto [r, waited] = prove_held(std::chrono::milliseconds(1500), std::chrono::milliseconds(100));
    CHECK_FALSE(r.ok());
    CHECK(waited < std::chrono::milliseconds(1400));
    CHECK(p.replica->pinned_size() == old_size);
  }
  {
    // Not a structured binding: doctest's REQUIRE_MESSAGE captures `r` in a
    // lambda, which clang before 16 refuses for a binding (the fuzz build).
    auto held = prove_held(std::chrono::milliseconds(300), std::chrono::seconds(60));
    auto& r = held.first;
    const auto waited = held.second;
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    CHECK(r->proof.head.size == new_size);
    CHECK(r->result.rows.at(0).at(0) == Value{std::string("two")});
    CHECK(waited >= std::chrono::milliseconds(200));
    auto v = Verifier::verify(p.keys.pub, r->proof);
    CHECK_MESSAGE(v.ok(), (v.ok() ? std::string() : v.error().to_string()));
  }
}

// docs/operations.md "Local faults": a full disk on the replica is the
// replica's trouble (io_error, retried), never divergence, and it resumes by
// itself once space returns.
TEST_CASE("a disk-full replica reports io_error, keeps its state, and resumes afterwards") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  p.sync();
  for (int i = 0; i < 5; ++i) p.exec({sql("INSERT INTO t VALUES (?)", {Value{std::string(5000, 'y')}})});
  const uint64_t before = p.replica->size();
  // The log directory is full: storing fails with io_error, nothing stored.
  fault_injection::fail_writes_under(p.dir / "r.log");
  Status stored = sync_replica(*p.primary, *p.replica);
  REQUIRE_FALSE(stored.ok());
  CHECK(stored.error().code == Errc::io_error);
  CHECK(is_local_fault(stored.error()));
  CHECK(p.replica->log().size() == before);
  // The database's disk is full: applying fails with io_error, not divergence.
  fault_injection::fail_writes_under(p.dir / "r.db");
  Status applied = sync_replica(*p.primary, *p.replica);
  fault_injection::clear();
  REQUIRE_FALSE(applied.ok());
  CHECK(applied.error().code == Errc::io_error);
  CHECK_FALSE(p.replica->diverged());
  CHECK(p.replica->size() == before);
  // Space is back.
  p.sync();
  CHECK(p.replica->size() == p.primary->size());
  CHECK(p.replica->state_root() == p.primary->state_root());
}

// ---------------------------------------------------------------------------
// Batched replay (docs/determinism.md "Batched replay").

namespace {

ReplicaOptions batched(uint64_t entries) {
  ReplicaOptions o = fast_replica();
  o.max_batch_entries = entries;
  // Where batches end must not depend on timing here (an ASan run once cut one
  // and made four batches of three): BatchCostWatch has tests of its own below.
  o.cut_slow_batches = false;
  return o;
}

// Copies the primary's log entries [0, size) into a fresh log at `dir`, with
// `tamper` applied to each entry first (a log written around verification).
void copy_log(const Primary& primary, const std::filesystem::path& dir,
              const std::function<void(Entry&)>& tamper = {}) {
  auto store = LogStore::open(dir, fast_log());
  REQUIRE(store.ok());
  for (uint64_t s = 0; s < primary.size(); ++s) {
    auto e = primary.log().entry(s);
    REQUIRE(e.ok());
    if (tamper) tamper(*e);
    REQUIRE((*store)->append(encode_entry(*e)).ok());
  }
}

struct Replayed {
  uint64_t size = 0;
  Hash32 root{};
  uint32_t pages = 0;
  ReplayStats stats;
  std::optional<Error> error;
  std::vector<Bytes> file;  // the file's pages after close
};

// What `r` reached after apply_available() returned `applied`.
void record(Replayed& out, const Replica& r, const Result<uint64_t>& applied) {
  if (!applied.ok()) out.error = applied.error();
  out.size = r.size();
  out.root = r.state_root();
  out.pages = r.page_count();
  out.stats = r.replay_stats();
}

// A fresh replica at dir/name.db over the log at `log_dir`, applied up to `up_to`.
Replayed replay(const std::filesystem::path& dir, const std::string& name,
                const std::filesystem::path& log_dir, const PublicKey& id, uint64_t batch,
                uint64_t up_to = UINT64_MAX) {
  Replayed out;
  {
    auto r = Replica::open(dir / (name + ".db"), log_dir, id, batched(batch));
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    record(out, **r, (*r)->apply_available(up_to));
  }
  out.file = file_pages(dir / (name + ".db"));
  return out;
}

}  // namespace

TEST_CASE("batched replay gives the same pages and root as entry-by-entry replay") {
  Pair p;
  p.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b TEXT, c BLOB)"), sql("CREATE INDEX t_a ON t(a)")});
  for (int i = 0; i < 200; ++i) {
    p.exec({sql("INSERT INTO t(a, b, c) VALUES (random() % 100, datetime('now'), randomblob(?1))",
                {Value{int64_t{i % 7 == 0 ? 3000 : 50}}})});
    if (i % 10 == 9) p.exec({sql("UPDATE t SET b = b || 'x' WHERE a % 3 = 0")});
  }
  REQUIRE(p.primary->sign_head().ok());
  TempDir dir;
  copy_log(*p.primary, dir / "log");
  Replayed one = replay(dir.path(), "one", dir / "log", p.keys.pub, 1);
  Replayed many = replay(dir.path(), "many", dir / "log", p.keys.pub, 64);
  REQUIRE_FALSE(one.error);
  REQUIRE_FALSE(many.error);
  CHECK(one.stats.batches == 0);
  CHECK(many.stats.batches >= p.primary->size() / 64);
  CHECK(many.stats.batched_entries + many.stats.single_entries == p.primary->size());
  CHECK(many.stats.fallbacks == 0);
  CHECK(many.stats.lean_batches == many.stats.batches);  // lean: no padding, applied_seq once
  CHECK(many.stats.lean_misses == 0);
  CHECK(many.size == p.primary->size());
  CHECK(many.root == p.primary->state_root());
  CHECK(many.pages == p.primary->page_count());
  CHECK(one.root == many.root);
  REQUIRE(one.file.size() == many.file.size());
  for (size_t i = 0; i < one.file.size(); ++i) {
    INFO("page ", i + 1);
    CHECK(one.file[i] == many.file[i]);
  }
}

TEST_CASE("a bad entry in a batch is found entry by entry, with the error of entry-by-entry replay") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  for (int i = 0; i < 40; ++i) p.exec({sql("INSERT INTO t VALUES (?1)", {Value{int64_t{i}}})});
  TempDir dir;
  // Entry 20 inserts another value than the primary ran: its replay gives
  // another root than the entry says, and so does every entry after it.
  copy_log(*p.primary, dir / "bad.log", [](Entry& e) {
    if (e.seq == 20) e.statements[0].params[0] = Value{int64_t{-1}};
  });
  Replayed one = replay(dir.path(), "one", dir / "bad.log", p.keys.pub, 1);
  Replayed many = replay(dir.path(), "many", dir / "bad.log", p.keys.pub, 64);
  REQUIRE(one.error);
  REQUIRE(many.error);
  CHECK(many.error->code == Errc::diverged);
  CHECK(many.error->message.find("entry 20:") != std::string::npos);
  CHECK(many.error->to_string() == one.error->to_string());
  CHECK(many.stats.fallbacks == 1);
  CHECK(many.stats.mismatches == 1);
  CHECK(many.size == 20);
  CHECK(one.size == 20);
  auto good = p.primary->log().entry(19);
  REQUIRE(good.ok());
  CHECK(many.root == good->state_root);
  CHECK(many.file == one.file);  // the last good state, in the file too
}

namespace {
// The entries [0, size) of the log at `dir` and a head over them signed with
// `keys` (as a primary that signed them would), for append_verified.
std::pair<std::vector<Bytes>, Head> signed_log(const std::filesystem::path& dir, const KeyPair& keys) {
  auto log = Log::open(dir, keys.pub, fast_log());
  REQUIRE_MESSAGE(log.ok(), log.error_text());
  std::vector<Bytes> entries;
  for (uint64_t s = 0; s < (*log)->size(); ++s) entries.push_back((*log)->entry_bytes(s).value());
  const Entry last = (*log)->entry((*log)->size() - 1).value();
  Head head;
  head.log_id = keys.pub;
  head.size = (*log)->size();
  head.log_root = (*log)->root();
  head.state_root = last.state_root;
  head.page_count = last.page_count;
  head.time_ms = last.time_ms;
  head.sign_with(keys.secret);
  return {std::move(entries), head};
}

// A fresh replica at dir/name.db that stores `entries` under `head` itself
// (append_verified, as a node's store does) and then applies them.
Replayed store_and_replay(const std::filesystem::path& dir, const std::string& name,
                          const std::vector<Bytes>& entries, const Head& head, const PublicKey& id,
                          size_t decoded_bytes) {
  Replayed out;
  {
    ReplicaOptions o = batched(64);
    o.decoded_entries_bytes = decoded_bytes;
    auto r = Replica::open(dir / (name + ".db"), dir / (name + ".log"), id, o);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    {
      std::lock_guard lock((*r)->log_mutex());
      auto st = (*r)->log().append_verified(entries, head);
      REQUIRE_MESSAGE(st.ok(), st.error_text());
    }
    record(out, **r, (*r)->apply_available());
  }
  out.file = file_pages(dir / (name + ".db"));
  return out;
}
}  // namespace

TEST_CASE("decode once: stored entries replay from the store's decoded copies, with the log's pages and errors") {
  Pair p;
  p.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a UNIQUE, b TEXT, c BLOB)")});
  for (int i = 0; i < 150; ++i) {
    p.exec({sql("INSERT INTO t(a, b, c) VALUES (?1, datetime('now'), randomblob(?2))",
                {Value{int64_t{i}}, Value{int64_t{i % 9 == 0 ? 2500 : 40}}})});
  }
  REQUIRE(p.primary->sign_head().ok());
  const uint64_t n = p.primary->size();
  TempDir dir;

  SUBCASE("a good log: every entry handed over, the pages of a replay from the log") {
    copy_log(*p.primary, dir / "good.log");
    auto [entries, head] = signed_log(dir / "good.log", p.keys);
    Replayed handed = store_and_replay(dir.path(), "handed", entries, head, p.keys.pub, 32 << 20);
    Replayed read = store_and_replay(dir.path(), "read", entries, head, p.keys.pub, 0);
    REQUIRE_FALSE(handed.error);
    REQUIRE_FALSE(read.error);
    CHECK(handed.stats.handed_entries == n);
    CHECK(read.stats.handed_entries == 0);
    CHECK(handed.size == n);
    CHECK(handed.root == p.primary->state_root());
    CHECK(handed.root == read.root);
    CHECK(handed.file == read.file);
  }
  SUBCASE("a cap that holds only some batches: the rest is read from the log") {
    copy_log(*p.primary, dir / "good.log");
    auto [entries, head] = signed_log(dir / "good.log", p.keys);
    ReplicaOptions o = batched(64);
    o.decoded_entries_bytes = 16 << 10;  // some dozens of these entries
    auto r = Replica::open(dir / "part.db", dir / "part.log", p.keys.pub, o);
    REQUIRE(r.ok());
    {
      // Stored ten at a time, as a node's fetches do; none applied meanwhile.
      auto source = Log::open(dir / "good.log", p.keys.pub, fast_log());
      REQUIRE(source.ok());
      std::lock_guard lock((*r)->log_mutex());
      for (size_t at = 0; at < entries.size(); at += 10) {
        const size_t k = std::min<size_t>(10, entries.size() - at);
        std::vector<Hash32> proof;
        if (at + k < entries.size()) proof = (*source)->consistency_proof(at + k, entries.size()).value();
        auto st = (*r)->log().append_proven(std::span(entries).subspan(at, k), head, proof);
        REQUIRE_MESSAGE(st.ok(), st.error_text());
      }
    }
    auto applied = (*r)->apply_available();
    REQUIRE_MESSAGE(applied.ok(), applied.error_text());
    CHECK((*r)->size() == n);
    CHECK((*r)->state_root() == p.primary->state_root());
    const ReplayStats st = (*r)->replay_stats();
    CHECK(st.handed_entries > 0);
    CHECK(st.handed_entries < n);
    CHECK((*r)->log().decoded_bytes() == 0);  // what was kept is handed out or dropped
  }
  SUBCASE("a bad entry: the batch falls back to the log, with entry-by-entry's error") {
    // Entry 40 inserts a value another entry already inserted: it fails.
    copy_log(*p.primary, dir / "bad.log", [](Entry& e) {
      if (e.seq == 40) e.statements[0].params[0] = Value{int64_t{3}};
    });
    auto [entries, head] = signed_log(dir / "bad.log", p.keys);
    Replayed handed = store_and_replay(dir.path(), "handed", entries, head, p.keys.pub, 32 << 20);
    Replayed one = replay(dir.path(), "one", dir / "bad.log", p.keys.pub, 1);
    REQUIRE(handed.error);
    REQUIRE(one.error);
    CHECK(handed.error->code == Errc::diverged);
    CHECK(handed.error->to_string() == one.error->to_string());
    CHECK(handed.stats.handed_entries > 0);
    CHECK(handed.stats.fallbacks == 1);
    CHECK(handed.size == 40);
    CHECK(handed.file == one.file);
  }
}

TEST_CASE("a statement that fails in a batch is the same divergence as entry by entry") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a UNIQUE)")});
  for (int i = 0; i < 30; ++i) p.exec({sql("INSERT INTO t VALUES (?1)", {Value{int64_t{i}}})});
  TempDir dir;
  copy_log(*p.primary, dir / "bad.log", [](Entry& e) {
    if (e.seq == 12) e.statements[0].params[0] = Value{int64_t{3}};  // a duplicate: fails
  });
  Replayed one = replay(dir.path(), "one", dir / "bad.log", p.keys.pub, 1);
  Replayed many = replay(dir.path(), "many", dir / "bad.log", p.keys.pub, 64);
  REQUIRE(one.error);
  REQUIRE(many.error);
  CHECK(many.error->code == Errc::diverged);
  CHECK(many.error->to_string() == one.error->to_string());
  CHECK(many.stats.fallbacks == 1);
  CHECK(many.stats.mismatches == 0);
  CHECK(many.size == 12);
  CHECK(many.file == one.file);
}

TEST_CASE("batched replay stops at up_to and at the signed head") {
  Pair p;
  p.exec({sql("CREATE TABLE t(a)")});
  for (int i = 0; i < 99; ++i) p.exec({sql("INSERT INTO t VALUES (?1)", {Value{int64_t{i}}})});
  p.sync();
  REQUIRE(p.replica->size() == 101);
  TempDir dir;
  copy_log(*p.primary, dir / "log");
  auto r = Replica::open(dir / "r.db", dir / "log", p.keys.pub, batched(64));
  REQUIRE(r.ok());
  for (uint64_t up_to : {37u, 38u, 90u, 200u}) {
    auto applied = (*r)->apply_available(up_to);
    REQUIRE_MESSAGE(applied.ok(), applied.error_text());
    const uint64_t want = std::min<uint64_t>(up_to, 101);
    CHECK((*r)->size() == want);
    auto e = p.primary->log().entry(want - 1);
    REQUIRE(e.ok());
    CHECK((*r)->state_root() == e->state_root);
    // A reader sees exactly that size, with its root.
    auto snap = (*r)->open_snapshot();
    REQUIRE_MESSAGE(snap.ok(), snap.error_text());
    CHECK(snap->state.size == want);
    CHECK(snap->state.state_root == e->state_root);
  }
  CHECK((*r)->replay_stats().batches == 3);  // 1..36, 38..89, 90..100
  CHECK((*r)->replay_stats().fallbacks == 0);
}

TEST_CASE("batched replay of deletes and inserts that reuse freed pages ends at the primary's state") {
  // Rows big enough for overflow pages, deleted and replaced entry after entry:
  // later entries allocate the pages earlier ones freed. Within one batch
  // SQLite may place them otherwise than one transaction per entry would; the
  // batch's root then differs, and the entry-by-entry fallback must still end
  // at the primary's state (and the batch size adapt).
  Pair p;
  p.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, g INTEGER, c BLOB)"), sql("CREATE INDEX t_g ON t(g)")});
  for (int i = 0; i < 300; ++i) {
    const int64_t g = i % 9;
    p.exec({sql("DELETE FROM t WHERE g = ?1", {Value{g}}),
            sql("WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE "
                "value < 1 + ?2 % 5) INSERT INTO t(g, c) SELECT ?1, randomblob(200 + (value * 997) "
                "% 9000) FROM s",
                {Value{g}, Value{int64_t{i}}})});
    if (i % 50 == 49) p.exec({sql("DELETE FROM t WHERE id % 3 = 0")});
  }
  REQUIRE(p.primary->sign_head().ok());
  TempDir dir;
  copy_log(*p.primary, dir / "log");
  Replayed one = replay(dir.path(), "one", dir / "log", p.keys.pub, 1);
  Replayed many = replay(dir.path(), "many", dir / "log", p.keys.pub, 32);
  REQUIRE_FALSE(one.error);
  REQUIRE_MESSAGE(!many.error, many.error->to_string());
  MESSAGE("deletes and inserts: ", many.stats.batches, " batches, ", many.stats.fallbacks,
          " fallbacks (", many.stats.mismatches, " mismatches), ", many.stats.single_entries,
          " entries one by one");
  CHECK(many.stats.batches > 0);
  CHECK(many.size == p.primary->size());
  CHECK(many.root == p.primary->state_root());
  CHECK(many.pages == p.primary->page_count());
  CHECK(many.file == one.file);
}

TEST_CASE("cached statements across schema changes give the pages of statements prepared afresh") {
  Pair p;
  const std::string insert = "INSERT INTO t(a) VALUES (?1)";
  p.exec({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a)")});
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 10; ++i) p.exec({sql(insert, {Value{int64_t{i}}})});
    // The same text after the table changed under it: a new column with a
    // default, an index, a trigger, the table dropped and created otherwise.
    switch (round) {
      case 0: p.exec({sql("ALTER TABLE t ADD COLUMN b DEFAULT 'x'")}); break;
      case 1: p.exec({sql("CREATE INDEX t_a ON t(a)")}); break;
      case 2:
        p.exec({sql("CREATE TABLE log(n); CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN "
                    "INSERT INTO log VALUES (new.a * 2); END")});
        break;
      default: p.exec({sql("DROP TABLE t"), sql("CREATE TABLE t(a TEXT, id INTEGER PRIMARY KEY, c DEFAULT 7)")});
    }
  }
  for (int i = 0; i < 10; ++i) p.exec({sql(insert, {Value{int64_t{i}}})});
  REQUIRE(p.primary->sign_head().ok());
  TempDir dir;
  copy_log(*p.primary, dir / "log");
  std::vector<Bytes> reference;  // one transaction per entry, every statement prepared afresh
  for (uint64_t batch : {1u, 16u}) {
    for (size_t cache : {0u, 64u}) {
      const std::string name = fmt::format("b{}c{}", batch, cache);
      {
        ReplicaOptions o = batched(batch);
        o.statement_cache = cache;
        auto replica = Replica::open(dir / (name + ".db"), dir / "log", p.keys.pub, o);
        REQUIRE(replica.ok());
        auto applied = (*replica)->apply_available();
        REQUIRE_MESSAGE(applied.ok(), applied.error_text());
        CHECK((*replica)->state_root() == p.primary->state_root());
      }
      std::vector<Bytes> pages = file_pages(dir / (name + ".db"));
      if (reference.empty()) reference = pages;
      INFO(name);
      CHECK(pages == reference);
    }
  }
}

// BatchCostWatch (replica.h): a batch whose entries get slower the longer it
// runs is cut; uniform entries, noisy ones and one slow entry are not.
TEST_CASE("BatchCostWatch cuts a batch whose entries keep getting slower, and only such a batch") {
  auto run = [](BatchCostWatch& w, const std::vector<double>& costs) -> int {
    w.begin_batch();
    for (size_t i = 0; i < costs.size(); ++i) {
      if (w.record(costs[i])) return static_cast<int>(i);
    }
    return -1;
  };
  BatchCostWatch w;
  SUBCASE("growing cost: cut once two entries in a row cost over 1.5 x the fresh cost") {
    std::vector<double> growing;
    for (int i = 0; i < 1000; ++i) growing.push_back(300 + 6.0 * i);  // the fuzzer's shape
    const int cut = run(w, growing);
    CHECK(cut > 0);
    CHECK(cut < 100);
    CHECK(growing[static_cast<size_t>(cut)] > BatchCostWatch::kSlowFactor * w.fresh());
  }
  SUBCASE("uniform and noisy costs never cut") {
    std::vector<double> noisy;
    for (int i = 0; i < 1000; ++i) noisy.push_back(i % 2 ? 400.0 : 250.0);
    CHECK(run(w, noisy) == -1);
    BatchCostWatch uniform;
    CHECK(run(uniform, std::vector<double>(1000, 500.0)) == -1);
  }
  SUBCASE("one slow entry (a page split, a spill, a preemption) does not cut") {
    std::vector<double> spikes(1000, 100.0);
    for (size_t i = 10; i < spikes.size(); i += 50) spikes[i] = 5000;
    CHECK(run(w, spikes) == -1);
  }
  SUBCASE("cheap entries never cut, however they vary") {
    std::vector<double> cheap;
    for (int i = 0; i < 1000; ++i) cheap.push_back(i < 2 ? 1.0 : 25.0);
    CHECK(run(w, cheap) == -1);
  }
  SUBCASE("the fresh cost follows batches' first entries") {
    run(w, {100, 100});
    CHECK(w.fresh() == doctest::Approx(100));
    for (int b = 0; b < 50; ++b) run(w, {1000, 1000});
    CHECK(w.fresh() > 900);
    // Now 1,000 µs is the norm: a batch at that cost is not cut.
    CHECK(run(w, std::vector<double>(200, 1000.0)) == -1);
  }
}

// A long-transaction slowdown seen in full-text search (docs/performance.md
// "Where batching loses"): replay with cutting on and off ends at the primary's
// state either way (cuts move batch ends, never what is applied).
TEST_CASE("batched replay of an FTS5 workload, with and without cut batches, ends at the primary's state") {
  Pair p;
  p.exec({sql("CREATE VIRTUAL TABLE docs USING fts5(body)")});
  for (int i = 0; i < 400; ++i) {
    std::string body;
    for (int w = 0; w < 20; ++w) body += fmt::format("w{} ", (i * 31 + w * 7) % 101);
    p.exec({sql("INSERT INTO docs(body) VALUES (?)", {Value{body}})});
  }
  for (bool cut : {true, false}) {
    INFO("cut_slow_batches " << cut);
    TempDir dir;
    ReplicaOptions o = fast_replica();
    o.cut_slow_batches = cut;
    auto r = Replica::open(dir / "r.db", dir / "r.log", p.keys.pub, o);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    Status synced = sync_replica(*p.primary, **r);
    REQUIRE_MESSAGE(synced.ok(), synced.error_text());
    CHECK((*r)->size() == p.primary->size());
    CHECK((*r)->state_root() == p.primary->state_root());
    CHECK((*r)->replay_stats().fallbacks == 0);
    CHECK((*r)->replay_stats().mismatches == 0);
    // A plain batch's entries each start with a savepoint, which flushes
    // FTS5's pending terms as the primary's commit did: never lean.
    CHECK((*r)->replay_stats().batches > 0);
    CHECK((*r)->replay_stats().lean_batches == 0);
    CHECK((*r)->replay_stats().lean_misses == 0);
    if (!cut) CHECK((*r)->replay_stats().cut_batches == 0);
    MESSAGE("cut " << cut << ": " << (*r)->replay_stats().batches << " batches, "
                   << (*r)->replay_stats().cut_batches << " cut");
  }
}

// docs/determinism.md "Lean batches": a cell shorter than 4 bytes built first in
// its entry is padded from the scratch buffer, which a lean batch does not reset
// (no cell padding): the batch's pages differ from the primary's at its end. The
// replica runs that batch again plain, stays plain for lean_backoff_entries, and
// ends at the primary's state with no divergence and no entry-by-entry fallback.
// docs/determinism.md "Lean batches": an entry that creates a virtual table ends
// the lean part of its batch and writes applied_seq as that part's last (format
// 4: the pad write, then the integer, as plain entries leave the metadata
// page). When it is also the batch's last entry no later entry's writes cover
// that page's bytes, so an in-place update alone would miss.
TEST_CASE("a lean batch whose last entry creates a virtual table commits without a miss") {
  Pair p;
  p.exec({sql("CREATE TABLE t(v)")});
  for (int i = 0; i < 5; ++i) p.exec({sql("INSERT INTO t VALUES (?1)", {Value{int64_t{i}}})});
  p.exec({sql("CREATE VIRTUAL TABLE docs USING fts5(body)")});
  const uint64_t through_create = p.primary->size();
  for (int i = 0; i < 5; ++i) p.exec({sql("INSERT INTO docs(body) VALUES ('a b c')")});
  REQUIRE(p.primary->sign_head().ok());
  TempDir dir;
  copy_log(*p.primary, dir / "log");
  auto r = Replica::open(dir / "r.db", dir / "log", p.keys.pub, batched(64));
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  auto applied = (*r)->apply_available(through_create);
  REQUIRE_MESSAGE(applied.ok(), applied.error_text());
  CHECK((*r)->size() == through_create);
  ReplayStats st = (*r)->replay_stats();
  CHECK(st.batches == 1);  // begun lean, committed plain (counted as such)
  CHECK(st.lean_misses == 0);
  CHECK(st.mismatches == 0);
  CHECK(st.fallbacks == 0);
  applied = (*r)->apply_available();
  REQUIRE_MESSAGE(applied.ok(), applied.error_text());
  CHECK((*r)->state_root() == p.primary->state_root());
  st = (*r)->replay_stats();
  CHECK(st.lean_misses == 0);
  CHECK(st.mismatches == 0);
}

TEST_CASE("a lean batch that misses because of a short cell is run again plain, then batches stay plain") {
  Pair p;
  p.exec({sql("CREATE TABLE big(v)"), sql("CREATE TABLE w(c PRIMARY KEY) WITHOUT ROWID")});
  for (int i = 0; i < 120; ++i) {
    // The previous entry's last cell (big's row: serial type 2 at byte 3) is in
    // the scratch buffer unless padding overwrote it; w's 1 is a 3-byte cell.
    p.exec({sql("INSERT INTO big(v) VALUES (?1)", {Value{int64_t{1000 + i}}})});
    p.exec({sql("DELETE FROM w"), sql("INSERT INTO w VALUES (1)")});
  }
  REQUIRE(p.primary->sign_head().ok());
  TempDir dir;
  copy_log(*p.primary, dir / "log");
  for (uint64_t backoff : {uint64_t{65536}, uint64_t{40}}) {
    INFO("lean_backoff_entries " << backoff);
    const std::string name = "r" + std::to_string(backoff);
    ReplicaOptions o = batched(32);
    o.lean_backoff_entries = backoff;
    auto r = Replica::open(dir / (name + ".db"), dir / "log", p.keys.pub, o);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    auto applied = (*r)->apply_available();
    REQUIRE_MESSAGE(applied.ok(), applied.error_text());
    const ReplayStats st = (*r)->replay_stats();
    CHECK((*r)->size() == p.primary->size());
    CHECK((*r)->state_root() == p.primary->state_root());
    CHECK_FALSE((*r)->diverged());
    CHECK(st.fallbacks == 0);
    CHECK(st.mismatches == 0);
    if (backoff == 65536) {
      CHECK(st.lean_misses == 1);  // the first lean batch, then plain for the rest of the log
      CHECK(st.lean_batches == 0);
    } else {
      // Plain for 40 entries, lean again (missing again), then 80, 160: three misses.
      CHECK(st.lean_misses == 3);
    }
    CHECK(st.batches > 0);
  }
  // With lean batches off nothing misses, and the pages are the same.
  ReplicaOptions off = batched(32);
  off.lean_batches = false;
  auto r = Replica::open(dir / "off.db", dir / "log", p.keys.pub, off);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE((*r)->apply_available().ok());
  CHECK((*r)->replay_stats().lean_misses == 0);
  CHECK((*r)->state_root() == p.primary->state_root());
}

TEST_CASE("a read transaction another program holds open on a peer does not slow its replay") {
  Pair p;
  // A pin at every head, so that every sync below re-pins and checkpoints.
  ReplicaOptions options = fast_replica();
  options.pin_interval = std::chrono::milliseconds(0);
  p.replica.reset();
  auto opened = Replica::open(p.dir / "r.db", p.dir / "r.log", p.keys.pub, options);
  REQUIRE_MESSAGE(opened.ok(), opened.error_text());
  p.replica = std::move(opened).value();
  p.exec({sql("CREATE TABLE t(a)")});
  p.sync();
  sqlite3* reader = nullptr;
  REQUIRE(sqlite3_open_v2((p.dir / "r.db").c_str(), &reader, SQLITE_OPEN_READONLY, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM t;", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  auto write_and_sync = [&] {
    for (int i = 0; i < 10; ++i) p.exec({sql("INSERT INTO t VALUES (randomblob(1000))")});
    p.sync();
  };
  // Past 1,000 WAL frames the pin tries a RESTART checkpoint, which the
  // reader outlasts.
  int syncs = 0;
  while (p.replica->wal_restart_stats().tried == 0) {
    write_and_sync();
    REQUIRE(++syncs < 200);
  }
  CHECK(p.replica->wal_restart_stats().busy == 1);
  // Every later sync re-pins with the WAL still over 1,000 frames; each used
  // to wait 250 ms for the reader again. Now the next try waits out a backoff
  // (1 s, doubling): a handful at most, however slow this machine is.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) write_and_sync();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto during = p.replica->wal_restart_stats();
  INFO("elapsed " << elapsed << " s, tried " << during.tried << ", busy " << during.busy);
  CHECK(during.busy == during.tried);
  CHECK(static_cast<double>(during.busy) <= 2 + std::log2(1 + elapsed));
  // Once the reader is gone, the WAL starts over (the passive checkpoint
  // completes, the next write restarts it): its header's checkpoint sequence
  // number moves.
  auto wal_checkpoint_seq = [&] {
    std::ifstream in(p.dir / "r.db-wal", std::ios::binary);
    std::array<unsigned char, 16> b{};
    REQUIRE(in.read(reinterpret_cast<char*>(b.data()), b.size()));
    return (uint32_t{b[12]} << 24) | (uint32_t{b[13]} << 16) | (uint32_t{b[14]} << 8) | b[15];
  };
  const uint32_t seq_with_reader = wal_checkpoint_seq();
  write_and_sync();
  CHECK(wal_checkpoint_seq() == seq_with_reader);
  REQUIRE(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(reader);
  for (int i = 0; i < 5 && wal_checkpoint_seq() == seq_with_reader; ++i) write_and_sync();
  CHECK(wal_checkpoint_seq() != seq_with_reader);
  CHECK(p.replica->wal_restart_stats().busy == during.busy);
  CHECK(p.replica->state_root() == p.primary->state_root());
}

namespace {

// Rows of `query` on a connection opened afresh on `db` (read-only): planned
// with the statistics the file holds.
std::vector<int64_t> fresh_rows(const std::filesystem::path& db, const std::string& query) {
  auto c = open_sqlite(db.string(), SQLITE_OPEN_READONLY);
  REQUIRE_MESSAGE(c.ok(), c.error_text());
  auto st = prepare(c->get(), query);
  REQUIRE_MESSAGE(st.ok(), st.error_text());
  std::vector<int64_t> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) out.push_back(sqlite3_column_int64(st->get(), 0));
  return out;
}

// t(a, b) with an index on each: whether a query on both uses ia or ib is up
// to the statistics, and the rows a LIMIT without ORDER BY keeps follow the
// index (ia: by a, then rowid; ib: by rowid).
constexpr const char* kPick = "SELECT rowid FROM t WHERE a >= 45 AND b = 2 LIMIT 3";
void stats_schema(PrimaryAndReplica& p) {
  auto r = p.primary->execute(
      {sql("CREATE TABLE t(a INTEGER, b INTEGER)"), sql("CREATE INDEX ia ON t(a)"),
       sql("CREATE INDEX ib ON t(b)"), sql("CREATE TABLE out(n INTEGER PRIMARY KEY, x)"),
       sql("ANALYZE"),
       sql("WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 1999) "
           "INSERT INTO t SELECT i % 50, i % 3 FROM s")});
  REQUIRE_MESSAGE(r.ok(), r.error_text());
}
// The plan-dependent write: the primary's rows must be those a fresh
// connection on its file picks.
void pick_rows(PrimaryAndReplica& p) {
  auto r = p.primary->execute({sql(std::string("INSERT INTO out(x) ") + kPick)});
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  const std::vector<int64_t> fresh = fresh_rows(p.dir / "p.db", kPick);
  const std::vector<int64_t> logged = fresh_rows(
      p.dir / "p.db",
      "SELECT x FROM out WHERE n > (SELECT coalesce(max(n), 0) - 3 FROM out) ORDER BY n");
  CHECK(logged == fresh);
}
// Replays the primary's log from scratch, one entry at a time and in
// batches: both end at the primary's root.
void replays_match(PrimaryAndReplica& p, const std::string& tag) {
  REQUIRE(p.primary->sign_head().ok());
  TempDir dir;
  copy_log(*p.primary, dir / "log");
  for (uint64_t batch : {uint64_t{1}, uint64_t{64}}) {
    INFO(tag, ", batch ", batch);
    Replayed r = replay(dir.path(), "r" + std::to_string(batch), dir / "log", p.keys.pub, batch);
    CHECK_MESSAGE(!r.error, (r.error ? r.error->to_string() : ""));
    CHECK(r.root == p.primary->state_root());
  }
}

}  // namespace

TEST_CASE("planner statistics: a rolled-back ANALYZE leaves no trace in the next write's plan") {
  // Found from the outside: `?transaction` with ANALYZE and then a failing
  // statement rolled back, but the primary's connection kept the statistics
  // that ANALYZE loaded; the next INSERT … SELECT … LIMIT picked other rows
  // than every peer, which diverged at it for good.
  Pair p;
  stats_schema(p);
  p.sync();
  const uint64_t primary_epoch = p.primary->stats_epoch(), replica_epoch = p.replica->stats_epoch();
  CHECK(primary_epoch > 0);  // stats_schema ran ANALYZE
  CHECK(replica_epoch > 0);
  auto failed = p.primary->execute({sql("ANALYZE"), sql("INSERT INTO nosuch VALUES (1)")});
  REQUIRE_FALSE(failed.ok());
  // The same inside a committed entry: a savepoint rolled back over ANALYZE.
  p.exec({sql("SAVEPOINT s"), sql("ANALYZE"), sql("ROLLBACK TO s"), sql("RELEASE s")});
  pick_rows(p);
  Status synced = sync_replica(*p.primary, *p.replica);
  CHECK_MESSAGE(synced.ok(), (synced.ok() ? "" : synced.error().to_string()));
  CHECK(p.replica->state_root() == p.primary->state_root());
  // The read pools' cue (net/read_pool.h): it moved on both.
  CHECK(p.primary->stats_epoch() > primary_epoch);
  CHECK(p.replica->stats_epoch() > replica_epoch);
  replays_match(p, "rolled back");
}

TEST_CASE("planner statistics: a write to sqlite_stat1 plans the next entry as a restart would") {
  // SQLite loads sqlite_stat1 with the schema or by ANALYZE, not when a
  // statement writes it (as .dump's output and `swarmlite exec -f` do): a
  // peer restarted after such an entry planned the next one otherwise than
  // the primary, which still had the statistics from before.
  Pair p;
  stats_schema(p);
  p.exec({sql("ANALYZE sqlite_schema"), sql("DELETE FROM sqlite_stat1"),
          sql("INSERT INTO sqlite_stat1 VALUES ('t', 'ia', '2000 1'), ('t', 'ib', '2000 1000')")});
  p.sync();
  p.open_replica();  // a restart: it reads the statistics from the file
  pick_rows(p);
  // The same UPDATE text twice: the second run must not come from the
  // statement cache without its reload.
  const std::string update = "UPDATE sqlite_stat1 SET stat = ?1 WHERE idx = ?2";
  for (const char* ia : {"2000 1000", "2000 1", "2000 1000", "2000 1"}) {
    const char* ib = std::string(ia) == "2000 1" ? "2000 1000" : "2000 1";
    p.exec({sql(update, {Value{std::string(ia)}, Value{std::string("ia")}})});
    p.exec({sql(update, {Value{std::string(ib)}, Value{std::string("ib")}})});
    pick_rows(p);
    p.sync();
    p.open_replica();
  }
  // A trigger that writes sqlite_stat1 counts as such a write.
  p.exec({sql("CREATE TABLE knob(v TEXT)"),
          sql("CREATE TRIGGER knob_set AFTER INSERT ON knob BEGIN UPDATE sqlite_stat1 SET stat = "
              "new.v WHERE idx = 'ia'; END")});
  p.exec({sql("INSERT INTO knob VALUES ('2000 1000')")});
  pick_rows(p);
  Status synced = sync_replica(*p.primary, *p.replica);
  CHECK_MESSAGE(synced.ok(), (synced.ok() ? "" : synced.error().to_string()));
  CHECK(p.replica->state_root() == p.primary->state_root());
  replays_match(p, "written");
}
