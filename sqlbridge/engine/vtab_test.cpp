// FTS5 virtual tables in replicated writes (docs/determinism.md, "Allowed
// virtual tables"): a replica replaying an FTS5 workload has the primary's state
// root after every entry and the same pages at the end, also across restarts;
// other modules (R*Tree included) stay refused; FTS5 queries verify.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <fstream>
#include <random>

#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/proof/verifier.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

const char* const kWords[] = {"apple", "banana", "cherry", "date",  "elder", "fig",  "grape",
                              "honey", "iris",   "jade",   "kiwi",  "lemon", "mango", "nut",
                              "olive", "pear",   "quince", "rasp",  "sloe",  "tea",   "ugli"};

// Random FTS5 transactions. Each is a few statements; some fail on
// purpose (the whole transaction must vanish, on the primary's FTS5 caches too).
class VtabWorkload {
 public:
  explicit VtabWorkload(uint64_t seed) : rng_(seed) {}

  std::vector<Statement> next() {
    std::vector<Statement> tx;
    const int n = 1 + pick(4);
    for (int i = 0; i < n; ++i) tx.push_back(statement());
    if (pick(25) == 0) tx.push_back(sql("INSERT INTO plain(id) VALUES (1), (1)"));  // fails: UNIQUE
    return tx;
  }

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
  std::string words(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) {
      if (i) s += ' ';
      s += kWords[pick(static_cast<int>(std::size(kWords)))];
    }
    return s;
  }

  Statement statement() {
    switch (pick(13)) {
      case 0:
      case 1:
        // A batch of documents (thousands over the run).
        return sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < " +
                   std::to_string(1 + pick(30)) +
                   ") INSERT INTO docs(title, body) SELECT 'doc ' || x || ' ' || ?1, "
                   "?2 || ' ' || hex(randomblob(3)) || ' w' || (random() % 50) FROM n",
                   {Value{words(1)}, Value{words(3 + pick(20))}});
      case 2:
        return sql("INSERT INTO docs(title, body) VALUES (?1, ?2)",
                   {Value{words(2)}, Value{words(5 + pick(200))}});
      case 3:
        return sql("UPDATE docs SET body = body || ' ' || ?1 WHERE rowid % 7 = ?2",
                   {Value{words(2)}, Value{static_cast<int64_t>(pick(7))}});
      case 4:
        return sql("DELETE FROM docs WHERE rowid IN (SELECT rowid FROM docs WHERE docs MATCH ?1 "
                   "ORDER BY rowid LIMIT ?2)",
                   {Value{std::string(kWords[pick(static_cast<int>(std::size(kWords)))])},
                    Value{static_cast<int64_t>(1 + pick(10))}});
      case 5:
        return sql(pick(2) ? "INSERT INTO docs(docs) VALUES ('optimize')"
                           : "INSERT INTO docs(docs, rank) VALUES ('merge', " +
                                 std::to_string(pick(2) ? 16 : -16) + ")");
      case 6:
        return sql("INSERT INTO docs(docs, rank) VALUES ('automerge', " + std::to_string(pick(9)) +
                   "); INSERT INTO docs(docs, rank) VALUES ('crisismerge', " +
                   std::to_string(2 + pick(20)) + ")");
      case 7:
        return sql("SAVEPOINT s; INSERT INTO docs(title, body) VALUES ('sp', 'apple gone'); ROLLBACK TO s; "
                   "INSERT INTO docs(title, body) VALUES ('kept', 'apple kept'); RELEASE s");
      case 8:
        return sql("INSERT INTO tri(rowid, t) SELECT rowid, title || ' ' || body FROM docs "
                   "WHERE rowid > (SELECT coalesce(max(rowid), 0) FROM tri) ORDER BY rowid LIMIT 20");
      case 9:
        return sql("DELETE FROM tri WHERE rowid % 3 = " + std::to_string(pick(3)));
      case 10:
        // Writes fed by FTS5 reads (snippet/highlight are plain text functions).
        return sql("INSERT INTO plain(id, n) SELECT NULL, (SELECT count(*) FROM docs WHERE docs "
                   "MATCH 'apple OR banana') + length(highlight(docs, 1, '[', ']')) FROM docs "
                   "WHERE docs MATCH 'cherry' ORDER BY rowid LIMIT 3");
      default:
        return sql("INSERT INTO docs(title, body) VALUES (?1, ?2)",
                   {Value{words(1)}, Value{words(30)}});
    }
  }

  std::mt19937_64 rng_;
};

const std::vector<Statement> kSchema = {
    sql("CREATE VIRTUAL TABLE docs USING fts5(title, body, tokenize = 'porter unicode61')"),
    sql("CREATE VIRTUAL TABLE tri USING fts5(t, tokenize = 'trigram', detail = 'column')"),
    sql("CREATE TABLE plain(id INTEGER PRIMARY KEY, n INTEGER)"),
    sql("INSERT INTO docs(docs, rank) VALUES ('pgsz', 1000)"),  // small pages: many segments
};

}  // namespace

TEST_CASE("FTS5 writes replay page-identically, across replica and primary restarts") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  const int transactions = std::getenv("SWARMLITE_LONG") != nullptr ? 3000 : 800;
  uint64_t committed = 0, failed = 0;
  // Seeds and clock from a fixed seed (kept across the primary's restart): a rerun
  // replays the same workload.
  PrimaryOptions options = fast_primary(1);
  auto entropy = std::make_shared<std::mt19937_64>(0x5eed);
  options.seed_source = [entropy] {
    std::array<uint8_t, 32> s;
    for (auto& b : s) b = static_cast<uint8_t>((*entropy)());
    return s;
  };
  auto clock = std::make_shared<int64_t>(1'700'000'000'000);
  options.clock_ms = [clock] { return *clock += 1000; };
  {
    auto primary = Primary::open(dir / "p.db", keys.secret, options);
    REQUIRE_MESSAGE(primary.ok(), primary.error_text());
    auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, fast_replica());
    REQUIRE_MESSAGE(replica.ok(), replica.error_text());
    auto schema = (*primary)->execute(kSchema);
    REQUIRE_MESSAGE(schema.ok(), schema.error_text());
    VtabWorkload work(20261126);
    for (int i = 0; i < transactions; ++i) {
      if (i == transactions / 2) {
        // A fresh connection: another data_version history, FTS5 caches empty.
        replica->reset();
        replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, fast_replica());
        REQUIRE_MESSAGE(replica.ok(), replica.error_text());
      }
      if (i == transactions * 3 / 4) {
        // The same for the primary: the replica's connection keeps its caches.
        primary->reset();
        primary = Primary::open(dir / "p.db", keys.secret, options);
        REQUIRE_MESSAGE(primary.ok(), primary.error_text());
      }
      std::vector<Statement> tx = work.next();
      const uint64_t size = (*primary)->size();
      auto r = (*primary)->execute(tx);
      if (!r.ok()) {
        INFO("transaction ", i, ": ", r.error().to_string());
        REQUIRE(r.error().code == Errc::sqlite_error);
        REQUIRE((*primary)->size() == size);
        ++failed;
        continue;
      }
      ++committed;
      REQUIRE(r->head);
      Status s = sync_replica(**primary, **replica);
      REQUIRE_MESSAGE(s.ok(), "transaction ", i, ": ", s.error_text());
      REQUIRE((*replica)->size() == r->head->size);
      REQUIRE((*replica)->state_root() == r->head->state_root);
    }
    auto check = (*primary)->execute({sql("INSERT INTO docs(docs) VALUES ('integrity-check')"),
                                      sql("SELECT count(*) FROM docs")});
    REQUIRE_MESSAGE(check.ok(), check.error_text());
    const int64_t docs = std::get<int64_t>(check->statements[1].rows.at(0).at(0).v);
    MESSAGE("fts5 replay: ", committed, " committed, ", failed, " failed; ", docs, " documents");
    CHECK(docs > 1000);
    CHECK(failed > 0);
    REQUIRE(sync_replica(**primary, **replica).ok());
    REQUIRE((*replica)->state_root() == (*primary)->state_root());
    REQUIRE((*replica)->page_count() == (*primary)->page_count());
  }
  std::vector<Bytes> p = file_pages(dir / "p.db");
  std::vector<Bytes> r = file_pages(dir / "r.db");
  REQUIRE(p.size() == r.size());
  for (size_t i = 0; i < p.size(); ++i) {
    INFO("page ", i + 1);
    REQUIRE(p[i] == r[i]);
  }
}

TEST_CASE("DROP of FTS5 tables replicates; shadow tables are read-only and then gone") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, fast_primary(1));
  REQUIRE(primary.ok());
  auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, fast_replica());
  REQUIRE(replica.ok());
  auto exec = [&](std::vector<Statement> tx) {
    auto r = (*primary)->execute(tx);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    Status s = sync_replica(**primary, **replica);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    REQUIRE((*replica)->state_root() == (*primary)->state_root());
    return std::move(r).value();
  };
  exec({sql("CREATE VIRTUAL TABLE f USING fts5(x)"), sql("INSERT INTO f VALUES ('hello world')")});
  // Direct writes to shadow tables: SQLITE_DBCONFIG_DEFENSIVE makes them read-only.
  for (const char* shadow : {"INSERT INTO f_config(k, v) VALUES ('usermerge', 4)",
                             "DELETE FROM f_data", "UPDATE f_content SET c0 = 'x'"}) {
    CAPTURE(shadow);
    auto w = (*primary)->execute({sql(shadow)});
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().code == Errc::sqlite_error);
    CHECK_MESSAGE(w.error().message.find("may not be modified") != std::string::npos,
                  w.error().message);
  }
  exec({sql("INSERT INTO f(f, rank) VALUES ('usermerge', 4)")});  // the module's own way
  exec({sql("DROP TABLE f")});
  auto left = exec({sql("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'f%'")});
  CHECK(std::get<int64_t>(left.statements[0].rows.at(0).at(0).v) == 0);
}

TEST_CASE("other virtual table modules, fts5vocab and connection-dependent reads stay refused") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, fast_primary(1));
  REQUIRE(primary.ok());
  REQUIRE((*primary)->execute({sql("CREATE VIRTUAL TABLE f USING fts5(x)"),
                               sql("INSERT INTO f VALUES ('a b c')"), sql("CREATE TABLE t(a)")})
              .ok());
  struct Case {
    const char* sql;
    const char* names;
  };
  const Case refused[] = {
      {"CREATE VIRTUAL TABLE g USING fts4(x)", "module fts4"},
      {"CREATE VIRTUAL TABLE g USING fts3(x)", "module fts3"},
      {"CREATE VIRTUAL TABLE g USING csv(filename='x.csv')", "module csv"},
      {"CREATE VIRTUAL TABLE g USING fts5vocab(f, row)", "module fts5vocab"},
      {"CREATE VIRTUAL TABLE g USING geopoly(a)", "module geopoly"},
      {"CREATE VIRTUAL TABLE g USING rtree(id, a, b)", "reinsert height"},
      {"CREATE VIRTUAL TABLE g USING rtree_i32(id, a, b)", "module rtree_i32"},
      {"CREATE VIRTUAL TABLE temp.g USING fts5(x)", "TEMP"},
      {"PRAGMA data_version", "PRAGMA data_version"},
      {"PRAGMA main.data_version", "PRAGMA data_version"},
      {"INSERT INTO t SELECT data_version FROM pragma_data_version", "pragma"},
      {"INSERT INTO t SELECT bm25(f) FROM f WHERE f MATCH 'a'", "bm25"},
      {"INSERT INTO t SELECT rowid FROM f WHERE f MATCH 'a' ORDER BY rank LIMIT 1", "bm25"},
      {"INSERT INTO t SELECT rank FROM f WHERE f MATCH 'a'", "rank column of fts5 table f"},
      {"INSERT INTO t SELECT rowid FROM f WHERE f MATCH 'a' AND rank MATCH 'bm25(10.0)'",
       "rank column of fts5 table f"},
      {"WITH m(r) AS (SELECT rank FROM f WHERE f MATCH 'a') INSERT INTO t SELECT r FROM m",
       "rank column of fts5 table f"},
  };
  Hash32 root = (*primary)->state_root();
  for (const Case& c : refused) {
    const std::string text = c.sql;
    CAPTURE(text);
    auto r = (*primary)->execute({sql(c.sql)});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::refused);
    CHECK_MESSAGE(r.error().message.find(c.names) != std::string::npos, r.error().message);
    CHECK((*primary)->state_root() == root);
  }
  // An ordinary column named rank is not FTS5's.
  auto plain = (*primary)->execute(
      {sql("CREATE TABLE r(rank); INSERT INTO r VALUES (1); INSERT INTO r SELECT rank + 1 FROM r")});
  CHECK_MESSAGE(plain.ok(), (plain.ok() ? "" : plain.error().to_string()));
  root = (*primary)->state_root();
  // A tokenizer that is not built in does not exist on swarmlite's connection.
  auto tok = (*primary)->execute({sql("CREATE VIRTUAL TABLE g USING fts5(x, tokenize = 'mine')")});
  REQUIRE_FALSE(tok.ok());
  CHECK(tok.error().code == Errc::sqlite_error);
  CHECK((*primary)->state_root() == root);
  for (const char* t : {"unicode61", "ascii", "porter", "trigram"}) {
    CAPTURE(t);
    auto ok = (*primary)->execute(
        {sql(std::string("CREATE VIRTUAL TABLE tk_") + t + " USING fts5(x, tokenize = '" + t + "')")});
    CHECK_MESSAGE(ok.ok(), (ok.ok() ? "" : ok.error().to_string()));
  }
}

TEST_CASE("queries over replicated FTS5 tables verify") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, fast_primary(1));
  REQUIRE(primary.ok());
  auto r = (*primary)->execute(
      {kSchema[0],
       sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500) "
           "INSERT INTO docs(rowid, title, body) SELECT x, 'doc ' || x, "
           "CASE x % 3 WHEN 0 THEN 'apple pie' WHEN 1 THEN 'banana split' ELSE 'cherry tart' END FROM n"),
      });
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  struct Q {
    const char* sql;
    size_t rows;
  };
  for (const Q& q : {Q{"SELECT rowid, title FROM docs WHERE docs MATCH 'apple' ORDER BY rowid", 166},
                     Q{"SELECT rowid, highlight(docs, 1, '[', ']') FROM docs WHERE docs MATCH "
                       "'banana' ORDER BY rank LIMIT 5", 5}}) {
    CAPTURE(q.sql);
    auto proved = (*primary)->prove(q.sql, {});
    REQUIRE_MESSAGE(proved.ok(), proved.error_text());
    auto v = Verifier::verify(keys.pub, proved->proof);
    REQUIRE_MESSAGE(v.ok(), v.error_text());
    CHECK(v->result == proved->result);
    CHECK(v->result.rows.size() == q.rows);
  }
}
