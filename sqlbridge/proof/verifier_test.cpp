// Verified reads end to end: prove on a real WAL-mode database, verify, compare
// with plain SQLite; and every way a proof can lie fails with its own reason.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/proof/proof_test_util.h"
#include "sqlbridge/proof/proof_vfs.h"
#include "sqlbridge/proof/prover.h"
#include "sqlbridge/proof/verifier.h"

namespace swarmlite {
namespace {

using proof_testing::build_test_db;
using proof_testing::direct_query;
using proof_testing::sign_state;
using testing::TempDir;

// One database for the whole binary: building it is the slow part.
struct Fixture {
  TempDir dir;
  std::filesystem::path db = dir / "items.db";
  KeyPair key = KeyPair::generate();
  StateTree tree;
  Head head;

  // `then_sql` runs on the database after it is built, before it is hashed.
  explicit Fixture(const std::string& then_sql = "") {
    REQUIRE(build_test_db(db).ok());
    if (!then_sql.empty()) {
      auto conn = open_sqlite(db.string(), SQLITE_OPEN_READWRITE);
      REQUIRE(conn.ok());
      REQUIRE(exec_sql(conn->get(), then_sql).ok());
    }
    auto t = StateTree::from_file(db);
    REQUIRE(t.ok());
    tree = std::move(t).value();
    auto h = sign_state(tree, key);
    REQUIRE(h.ok());
    head = *h;
  }
  Result<ProvedQuery> prove(std::string_view sql, const std::vector<Value>& params = {}) const {
    return prove_query(db, tree, head, sql, params);
  }
};

const Fixture& fixture() {
  static Fixture f;
  return f;
}

ProvedQuery must_prove(std::string_view sql, const std::vector<Value>& params = {}) {
  auto p = fixture().prove(sql, params);
  REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().to_string()));
  return std::move(p).value();
}

// Verifies and returns the error (test fails if it verified).
Error must_fail(const QueryProof& proof, const VerifyOptions& options = {},
                const PublicKey* key = nullptr) {
  auto r = Verifier::verify(key ? *key : fixture().key.pub, proof, options);
  REQUIRE_FALSE(r.ok());
  MESSAGE(r.error().to_string());
  return r.error();
}

bool contains(const Error& e, std::string_view what) {
  return e.message.find(what) != std::string::npos;
}

// Rebuilds the multiproof for the proof's current pages (for tests that drop pages).
void reprove_pages(QueryProof& proof, const StateTree& tree = fixture().tree) {
  std::vector<uint64_t> idx;
  for (const ProvenPage& p : proof.pages) idx.push_back(p.pgno - 1);
  auto mp = tree.tree().multiproof(idx);
  REQUIRE(mp.ok());
  proof.multiproof = *mp;
}

struct Case {
  const char* name;
  const char* sql;
  std::vector<Value> params;
};

// Every query shape a proof must handle.
std::vector<Case> proof_cases() {
  return {
      {"point lookup", "SELECT * FROM items WHERE id = ?", {Value{int64_t{12345}}}},
      {"index range scan", "SELECT id, price FROM items WHERE price BETWEEN ? AND ? ORDER BY price",
       {Value{100.0}, Value{101.5}}},
      {"join",
       "SELECT i.id, i.name, c.name FROM items i JOIN categories c ON c.id = i.category "
       "WHERE i.id BETWEEN 100 AND 118",
       {}},
      {"aggregate", "SELECT count(*), sum(price), min(name), avg(price) FROM items "
                    "WHERE id BETWEEN 1000 AND 1099", {}},
      {"group by / order by", "SELECT category, count(*), max(price) FROM items WHERE id < 600 "
                              "GROUP BY category ORDER BY 2 DESC, 1", {}},
      {"subquery", "SELECT name FROM categories WHERE id IN "
                   "(SELECT category FROM items WHERE id BETWEEN 10 AND 20) ORDER BY id", {}},
      {"view", "SELECT * FROM expensive_items WHERE id < 300", {}},
      {"recursive CTE",
       "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) "
       "SELECT x, (SELECT name FROM items WHERE id = x * 1000) FROM n", {}},
      {"JSON functions", "SELECT json_extract(meta, '$.tags[0]'), json_array_length(meta, '$.tags'),"
                         " meta ->> '$.n' FROM items WHERE id = ?", {Value{int64_t{77}}}},
      {"FTS5 MATCH", "SELECT rowid, title FROM docs WHERE docs MATCH ? ORDER BY rowid LIMIT 20",
       {Value{std::string("cherry AND word3")}}},
      {"overflow pages", "SELECT id, length(data), substr(data, 20000, 4) FROM blobs WHERE id = 7",
       {}},
      {"empty result", "SELECT * FROM items WHERE id = -1", {}},
      {"WITHOUT ROWID", "SELECT * FROM kv WHERE k = ?", {Value{std::string("key-0042")}}},
      {"read-only pragma", "PRAGMA table_info(items)", {}},
      {"blob and null params", "SELECT ?, ?, typeof(?)", {Value{Bytes{1, 2, 3}}, Value{}, Value{2.5}}},
  };
}

TEST_CASE("proofs of every query shape verify and give the rows plain SQLite gives") {
  const std::vector<Case> cases = proof_cases();
  const Fixture& f = fixture();
  for (const Case& c : cases) {
    std::string name = c.name;
    CAPTURE(name);
    ProvedQuery p = must_prove(c.sql, c.params);
    auto direct = direct_query(f.db, c.sql, c.params);
    REQUIRE(direct.ok());
    CHECK(p.result == *direct);  // the peer's own answer

    VerifyOptions opts;
    opts.expected_sql = c.sql;
    opts.expected_params = c.params;
    auto v = Verifier::verify_bytes(f.key.pub, p.encoded, opts);
    REQUIRE_MESSAGE(v.ok(), (v.ok() ? "" : v.error().to_string()));
    CHECK(v->result == *direct);
    CHECK(v->head == f.head);
    MESSAGE(c.name << ": " << p.proof.pages.size() << " pages, " << p.encoded.size()
                   << " bytes, " << v->result.rows.size() << " rows");
  }
}

TEST_CASE("the verifier's rows come from the pages, not from the peer") {
  ProvedQuery p = must_prove("SELECT name, price FROM items WHERE id = 5");
  auto v = Verifier::verify(fixture().key.pub, p.proof);
  REQUIRE(v.ok());
  REQUIRE(v->result.rows.size() == 1);
  CHECK(v->result.rows[0][0] == Value{std::string("item-5")});
  CHECK(v->result.columns == std::vector<std::string>{"name", "price"});
  CHECK(v->result.decltypes == std::vector<std::string>{"TEXT", "REAL"});
}

TEST_CASE("every captured page is needed: dropping any one names it") {
  ProvedQuery p = must_prove("SELECT * FROM items WHERE id = ?", {Value{int64_t{4242}}});
  REQUIRE(p.proof.pages.size() >= 2);
  for (size_t i = 1; i < p.proof.pages.size(); ++i) {  // page 1 has its own test below
    QueryProof q = p.proof;
    uint32_t dropped = q.pages[i].pgno;
    CAPTURE(dropped);
    q.pages.erase(q.pages.begin() + static_cast<std::ptrdiff_t>(i));
    reprove_pages(q);  // a consistent multiproof: only the re-run can notice
    Error e = must_fail(q);
    CHECK(e.code == Errc::proof_failed);
    CHECK(contains(e, fmt::format("page {} was read but is not in the proof", dropped)));
  }
}

TEST_CASE("a proof without page 1 fails") {
  ProvedQuery p = must_prove("SELECT * FROM items WHERE id = 1");
  QueryProof q = p.proof;
  q.pages.erase(q.pages.begin());
  reprove_pages(q);
  Error e = must_fail(q);
  CHECK(e.code == Errc::proof_failed);
  CHECK(contains(e, "page 1"));
}

TEST_CASE("a missing page without a matching multiproof fails on the multiproof") {
  ProvedQuery p = must_prove("SELECT * FROM items WHERE id = 99");
  QueryProof q = p.proof;
  q.pages.pop_back();
  Error e = must_fail(q);
  CHECK(e.code == Errc::proof_failed);
  CHECK(contains(e, "hashes, expected"));
}

TEST_CASE("a changed byte in any page never verifies") {
  ProvedQuery p = must_prove("SELECT * FROM items WHERE id = ?", {Value{int64_t{777}}});
  size_t tried = 0;
  for (size_t i = 0; i < p.proof.pages.size(); ++i) {
    for (size_t off = 0; off < p.proof.page_size; off += 53) {
      QueryProof q = p.proof;
      q.pages[i].bytes[off] ^= 0x01;
      auto r = Verifier::verify(fixture().key.pub, q);
      REQUIRE_FALSE(r.ok());
      bool volatile_header = i == 0 && ((off >= 18 && off <= 19) || (off >= 24 && off <= 27) ||
                                        (off >= 92 && off <= 99));
      CHECK(r.error().code == (volatile_header ? Errc::proof_failed : Errc::root_mismatch));
      ++tried;
    }
  }
  // The volatile header bytes are outside the hash but must still be zero.
  for (size_t off : {18, 19, 24, 95, 99}) {
    QueryProof q = p.proof;
    q.pages[0].bytes[off] = 7;
    Error e = must_fail(q);
    CHECK(contains(e, "not normalised"));
  }
  MESSAGE(tried << " single-byte changes refused");
}

TEST_CASE("a page from another state fails with a root mismatch") {
  TempDir dir;
  auto db = dir / "b.db";
  proof_testing::TestDbOptions o;
  o.rows = 3000;
  o.extras = false;
  REQUIRE(build_test_db(db, o).ok());
  KeyPair key = KeyPair::generate();
  auto tree_a = StateTree::from_file(db);
  REQUIRE(tree_a.ok());
  auto head_a = sign_state(*tree_a, key, 1);
  REQUIRE(head_a.ok());
  auto pa = prove_query(db, *tree_a, *head_a, "SELECT * FROM items WHERE id = 2000", {});
  REQUIRE(pa.ok());
  {
    auto conn = open_sqlite(db.string(), SQLITE_OPEN_READWRITE);
    REQUIRE(conn.ok());
    REQUIRE(exec_sql(conn->get(), "UPDATE items SET name = 'changed' WHERE id = 2000").ok());
  }
  auto tree_b = StateTree::from_file(db);
  REQUIRE(tree_b.ok());
  auto head_b = sign_state(*tree_b, key, 2);
  REQUIRE(head_b.ok());
  auto pb = prove_query(db, *tree_b, *head_b, "SELECT * FROM items WHERE id = 2000", {});
  REQUIRE(pb.ok());
  REQUIRE(pa->proof.pages.size() == pb->proof.pages.size());

  // Both verify against their own head.
  CHECK(Verifier::verify(key.pub, pa->proof).ok());
  CHECK(Verifier::verify(key.pub, pb->proof).ok());
  size_t swapped = 0;
  for (size_t i = 0; i < pa->proof.pages.size(); ++i) {
    if (pa->proof.pages[i] == pb->proof.pages[i]) continue;
    QueryProof q = pa->proof;
    q.pages[i] = pb->proof.pages[i];
    auto r = Verifier::verify(key.pub, q);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::root_mismatch);
    ++swapped;
  }
  CHECK(swapped >= 1);
  // State B's rows under state A's head: no.
  QueryProof mixed = pb->proof;
  mixed.head = pa->proof.head;
  CHECK_FALSE(Verifier::verify(key.pub, mixed).ok());
}

TEST_CASE("a head from another key fails its signature check") {
  ProvedQuery p = must_prove("SELECT 1 FROM items WHERE id = 3");
  KeyPair other = KeyPair::generate();
  Error e = must_fail(p.proof, {}, &other.pub);
  CHECK(e.code == Errc::bad_signature);

  // Re-signed by another key, checked against the real one.
  QueryProof q = p.proof;
  q.head.log_id = other.pub;
  q.head.sign_with(other.secret);
  Error e2 = must_fail(q);
  CHECK(e2.code == Errc::bad_signature);
}

TEST_CASE("a stale head below min_size or older than max_age fails") {
  ProvedQuery p = must_prove("SELECT 1 FROM items WHERE id = 3");
  VerifyOptions o;
  o.min_size = fixture().head.size + 1;
  Error e = must_fail(p.proof, o);
  CHECK(e.code == Errc::unavailable);
  CHECK(contains(e, "below min_size"));

  o.min_size = fixture().head.size;
  CHECK(Verifier::verify(fixture().key.pub, p.proof, o).ok());

  o.max_age = std::chrono::milliseconds(1000);
  o.now_ms = fixture().head.time_ms + 5000;
  Error e2 = must_fail(p.proof, o);
  CHECK(e2.code == Errc::unavailable);
  CHECK(contains(e2, "max age"));
  o.now_ms = fixture().head.time_ms + 500;
  CHECK(Verifier::verify(fixture().key.pub, p.proof, o).ok());
}

TEST_CASE("a proof for different SQL or params fails") {
  ProvedQuery p = must_prove("SELECT name FROM items WHERE id = ?", {Value{int64_t{10}}});
  VerifyOptions o;
  o.expected_sql = "SELECT name FROM items WHERE id = ? ";
  Error e = must_fail(p.proof, o);
  CHECK(e.code == Errc::proof_failed);
  CHECK(contains(e, "different query"));

  o.expected_sql = p.proof.sql;
  o.expected_params = std::vector<Value>{Value{int64_t{11}}};
  Error e2 = must_fail(p.proof, o);
  CHECK(contains(e2, "different parameters"));

  // Same value, other type: still a different question.
  o.expected_params = std::vector<Value>{Value{std::string("10")}};
  CHECK_FALSE(Verifier::verify(fixture().key.pub, p.proof, o).ok());

  o.expected_params = std::vector<Value>{Value{int64_t{10}}};
  CHECK(Verifier::verify(fixture().key.pub, p.proof, o).ok());
}

TEST_CASE("a hostile query inside a valid proof is bounded by the guard") {
  ProvedQuery p = must_prove("SELECT 1 FROM items WHERE id = 1");
  VerifyOptions o;
  o.guard.time_limit = std::chrono::milliseconds(100);
  QueryProof q = p.proof;
  q.sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c";
  Error e = must_fail(q, o);
  CHECK(e.code == Errc::refused);
  CHECK(contains(e, "interrupted after"));

  q.sql = "DELETE FROM items";
  Error e2 = must_fail(q, o);
  CHECK(e2.code == Errc::refused);
  CHECK(contains(e2, "DELETE"));
}

TEST_CASE("a proof whose SQL asks for huge printf() output fails fast, with the default caps") {
  ProvedQuery p = must_prove("SELECT 1 FROM items WHERE id = 1");
  QueryProof q = p.proof;
  q.sql = "SELECT length(printf('%.*c',900000000,'x')), length(printf('%.*c',900000000,'x'))";
  const auto t0 = std::chrono::steady_clock::now();
  Error e = must_fail(q, VerifyOptions{});
  CHECK(e.code == Errc::refused);
  CHECK(contains(e, "over the value length cap"));
  // Liveness only: this took 7.4 s before the guard wrapped printf().
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  // The verifier cache path too.
  VerifierCache cache;
  auto r = cache.verify(fixture().key.pub, q, VerifyOptions{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error(), "over the value length cap"));
}

TEST_CASE("proving against a tree of another state is refused, never a bad proof") {
  const Fixture& f = fixture();
  Head wrong = f.head;
  wrong.state_root = blake2b(as_bytes("another state"));
  auto r = prove_query(f.db, f.tree, wrong, "SELECT 1", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);

  // The file moved on but the caller still holds the old tree (under the lock
  // prover.h asks for, only another writer can do that): corrupt, naming the page.
  TempDir dir;
  auto db = dir / "moved.db";
  proof_testing::TestDbOptions o;
  o.rows = 2000;
  o.extras = false;
  REQUIRE(build_test_db(db, o).ok());
  auto tree = StateTree::from_file(db);
  REQUIRE(tree.ok());
  KeyPair key = KeyPair::generate();
  auto head = sign_state(*tree, key);
  REQUIRE(head.ok());
  {
    auto conn = open_sqlite(db.string(), SQLITE_OPEN_READWRITE);
    REQUIRE(conn.ok());
    REQUIRE(exec_sql(conn->get(), "UPDATE items SET price = -1 WHERE id = 1500").ok());
  }
  auto moved = prove_query(db, *tree, *head, "SELECT * FROM items WHERE id = 1500", {});
  REQUIRE_FALSE(moved.ok());
  MESSAGE(moved.error().to_string());
  CHECK(moved.error().code == Errc::corrupt);
  CHECK(moved.error().message.find(" of the database file differs from the state tree") != std::string::npos);
}

TEST_CASE("proofs work at page sizes 1024 and 8192") {
  for (uint32_t ps : {1024u, 8192u}) {
    CAPTURE(ps);
    TempDir dir;
    auto db = dir / "ps.db";
    proof_testing::TestDbOptions o;
    o.page_size = ps;
    o.rows = 3000;
    REQUIRE(build_test_db(db, o).ok());
    auto tree = StateTree::from_file(db);
    REQUIRE(tree.ok());
    KeyPair key = KeyPair::generate();
    auto head = sign_state(*tree, key);
    REQUIRE(head.ok());
    const char* sql = "SELECT i.name, c.name FROM items i JOIN categories c ON c.id = i.category "
                      "WHERE i.id = 2999";
    auto p = prove_query(db, *tree, *head, sql, {});
    REQUIRE(p.ok());
    CHECK(p->proof.page_size == ps);
    auto v = Verifier::verify_bytes(key.pub, p->encoded);
    REQUIRE_MESSAGE(v.ok(), (v.ok() ? "" : v.error().to_string()));
    CHECK(v->result == *direct_query(db, sql));
  }
}

TEST_CASE("the proof VFS serves only its pages and refuses writes") {
  Bytes page1(1024, 0);
  std::memcpy(page1.data(), "SQLite format 3", 16);
  page1[16] = 0x04;  // page size 1024
  page1[18] = page1[19] = 2;
  std::vector<std::pair<uint32_t, ByteView>> pages{{1, page1}};
  ProofImage image(1024, 3, pages);
  CHECK(image.file_size() == 3 * 1024);
  uint8_t buf[1024];
  CHECK(image.read(buf, 100, 0) == ProofImage::ReadStatus::ok);
  CHECK(buf[18] == 1);  // served as a rollback-journal database
  CHECK(buf[19] == 1);
  CHECK(image.read(buf, 1024, 2048) == ProofImage::ReadStatus::missing);
  CHECK(image.read(buf, 1024, 1024) == ProofImage::ReadStatus::missing);
  CHECK(image.read(buf, 1024, 4096) == ProofImage::ReadStatus::short_read);
  CHECK(image.missing_pages() == std::vector<uint32_t>{3, 2});
}


// --- the verifier cache ------------------------------------------------------

// The test database without its FTS5 table (a state with a virtual table never
// reuses connections) and with enough tables that the schema spans pages.
const Fixture& cache_fixture() {
  static Fixture f([] {
    std::string sql = "DROP TABLE docs;";
    for (int i = 0; i < 40; ++i) {
      sql += fmt::format("CREATE TABLE padding_table_{0}(padding_column_one_{0} TEXT, "
                         "padding_column_two_{0} INTEGER, padding_column_three_{0} BLOB, "
                         "padding_column_four_{0} REAL);",
                         i);
    }
    return sql;
  }());
  return f;
}

ProvedQuery must_prove_in(const Fixture& f, std::string_view sql,
                          const std::vector<Value>& params = {}) {
  auto p = f.prove(sql, params);
  REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().to_string()));
  return std::move(p).value();
}

// Both verifiers give the same outcome: the same rows, or the same error.
void check_same_outcome(VerifierCache& cache, const PublicKey& key, const QueryProof& proof,
                        const VerifyOptions& options = {}) {
  auto plain = Verifier::verify(key, proof, options);
  auto cached = cache.verify(key, proof, options);
  REQUIRE(plain.ok() == cached.ok());
  if (plain.ok()) {
    CHECK(cached->result == plain->result);
    CHECK(cached->head == plain->head);
    CHECK(cached->pages == plain->pages);
  } else {
    CHECK(cached.error().code == plain.error().code);
    CHECK(cached.error().message == plain.error().message);
  }
}

// Fails under both verifiers, the cache warm; returns the cached one's error.
Error must_fail_both(VerifierCache& cache, const PublicKey& key, const QueryProof& proof,
                     const VerifyOptions& options = {}) {
  auto plain = Verifier::verify(key, proof, options);
  auto cached = cache.verify(key, proof, options);
  REQUIRE_FALSE(plain.ok());
  REQUIRE_FALSE(cached.ok());
  CHECK(cached.error().code == plain.error().code);
  if (!contains(plain.error(), "interrupted after")) {  // that message holds a duration
    CHECK(cached.error().message == plain.error().message);
  }
  return cached.error();
}

TEST_CASE("the verifier cache gives the plain verifier's rows on every proof case, cold and warm") {
  for (bool fts : {false, true}) {
    CAPTURE(fts);
    const Fixture& f = fts ? fixture() : cache_fixture();
    VerifierCache cache;
    std::vector<std::pair<Case, ProvedQuery>> proved;
    for (const Case& c : proof_cases()) {
      if (!fts && std::string_view(c.name) == "FTS5 MATCH") continue;
      proved.emplace_back(c, must_prove_in(f, c.sql, c.params));
    }
    for (int round = 0; round < 2; ++round) {
      for (const auto& [c, p] : proved) {
        std::string name = c.name;
        CAPTURE(name);
        VerifyOptions opts;
        opts.expected_sql = c.sql;
        opts.expected_params = c.params;
        auto cached = cache.verify_bytes(f.key.pub, p.encoded, opts);
        REQUIRE_MESSAGE(cached.ok(), (cached.ok() ? "" : cached.error().to_string()));
        auto plain = Verifier::verify_bytes(f.key.pub, p.encoded, opts);
        REQUIRE(plain.ok());
        CHECK(cached->result == plain->result);
        CHECK(cached->head == plain->head);
      }
    }
    const VerifierCacheStats& st = cache.stats();
    MESSAGE("fts=" << fts << ": connection hits " << st.connection_hits << ", opens "
                   << st.connection_opens << ", fresh runs " << st.fresh_runs << ", head hits "
                   << st.head_hits << ", leaf hits " << st.leaf_hits << "/"
                   << st.leaf_hits + st.leaf_misses);
    CHECK(st.head_misses == 1);  // one head: one signature check
    CHECK(st.leaf_hits > 0);
    if (fts) {
      // A state with a virtual table: never a kept connection.
      CHECK(st.connection_hits == 0);
      CHECK(st.fresh_runs == 2 * proved.size());
    } else {
      CHECK(st.connection_opens == 1);
      // Only proofs without the schema's pages (SELECT ?, ?, ...) run fresh.
      CHECK(st.connection_hits >= 2 * proved.size() - 3);
    }
  }
}

// The pages of sqlite_schema (read only when a connection parses the schema).
std::vector<uint32_t> schema_pages_of(const std::filesystem::path& db_path) {
  std::vector<uint32_t> out;
  auto db = open_sqlite(db_path.string(), SQLITE_OPEN_READONLY);
  REQUIRE(db.ok());
  auto stmt = prepare(db->get(), "SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'");
  REQUIRE(stmt.ok());
  while (sqlite3_step(stmt->get()) == SQLITE_ROW) {
    out.push_back(static_cast<uint32_t>(sqlite3_column_int64(stmt->get(), 0)));
  }
  return out;
}

TEST_CASE("warm cache: a page in proof A but not in proof B at the same root fails B") {
  const Fixture& f = cache_fixture();
  ProvedQuery a = must_prove_in(f, "SELECT * FROM items WHERE id = ?", {Value{int64_t{4242}}});
  REQUIRE(a.proof.pages.size() >= 3);
  VerifierCache cache;
  for (size_t i = 1; i < a.proof.pages.size(); ++i) {
    REQUIRE(cache.verify(f.key.pub, a.proof).ok());  // A warms the cache, every page in SQLite's
    QueryProof b = a.proof;
    uint32_t dropped = b.pages[i].pgno;
    CAPTURE(dropped);
    b.pages.erase(b.pages.begin() + static_cast<std::ptrdiff_t>(i));
    reprove_pages(b, f.tree);
    Error e = must_fail_both(cache, f.key.pub, b);
    CHECK(contains(e, fmt::format("page {} was read but is not in the proof", dropped)));
  }
  // A and B alternate: B fails every time, A verifies every time.
  QueryProof b = a.proof;
  b.pages.pop_back();
  reprove_pages(b, f.tree);
  for (int k = 0; k < 3; ++k) {
    CHECK(cache.verify(f.key.pub, a.proof).ok());
    CHECK_FALSE(cache.verify(f.key.pub, b).ok());
  }
  CHECK(cache.stats().connection_hits > 0);
}

TEST_CASE("warm cache: a proof without a page the cached schema was parsed from fails") {
  const Fixture& f = cache_fixture();
  ProvedQuery a = must_prove_in(f, "SELECT name FROM categories WHERE id = 7");
  // The schema spans several pages; page 1 is its root.
  std::vector<uint32_t> schema_pages = schema_pages_of(f.db);
  REQUIRE(schema_pages.size() >= 2);
  VerifierCache cache;
  REQUIRE(cache.verify(f.key.pub, a.proof).ok());
  for (uint32_t pgno : schema_pages) {
    if (pgno == 1) continue;  // page 1 has its own rule
    CAPTURE(pgno);
    QueryProof b = a.proof;
    auto it = std::find_if(b.pages.begin(), b.pages.end(),
                           [&](const ProvenPage& p) { return p.pgno == pgno; });
    REQUIRE(it != b.pages.end());
    b.pages.erase(it);
    reprove_pages(b, f.tree);
    Error e = must_fail_both(cache, f.key.pub, b);
    CHECK(contains(e, fmt::format("page {} was read but is not in the proof", pgno)));
    CHECK(cache.verify(f.key.pub, a.proof).ok());
  }
}

TEST_CASE("warm cache: changed bytes, another state, other heads and stale heads still fail") {
  const Fixture& f = cache_fixture();
  ProvedQuery a = must_prove_in(f, "SELECT * FROM items WHERE id = ?", {Value{int64_t{777}}});
  VerifierCache cache;
  REQUIRE(cache.verify(f.key.pub, a.proof).ok());

  SUBCASE("a changed byte in a page whose leaf hash is cached") {
    for (size_t i = 0; i < a.proof.pages.size(); ++i) {
      for (size_t off : {size_t{0}, size_t{100}, size_t{2049}, size_t{4095}}) {
        QueryProof q = a.proof;
        q.pages[i].bytes[off] ^= 0x80;
        must_fail_both(cache, f.key.pub, q);
      }
    }
    CHECK(cache.verify(f.key.pub, a.proof).ok());
  }
  SUBCASE("same size, another state root or signature") {
    QueryProof q = a.proof;
    q.head.state_root[0] ^= 1;  // the cached head's size and signature, another root
    CHECK(must_fail_both(cache, f.key.pub, q).code == Errc::bad_signature);
    q = a.proof;
    q.head.signature[10] ^= 1;
    CHECK(must_fail_both(cache, f.key.pub, q).code == Errc::bad_signature);
    q = a.proof;
    q.head.time_ms += 1;
    CHECK(must_fail_both(cache, f.key.pub, q).code == Errc::bad_signature);
    // Honestly signed by another key, checked against the log's.
    KeyPair other = KeyPair::generate();
    q = a.proof;
    q.head.log_id = other.pub;
    q.head.sign_with(other.secret);
    CHECK(must_fail_both(cache, f.key.pub, q).code == Errc::bad_signature);
    // The cached head checked against another key.
    CHECK(must_fail_both(cache, other.pub, a.proof).code == Errc::bad_signature);
  }
  SUBCASE("a forged head whose bytes equal nothing cached") {
    QueryProof q = a.proof;
    q.head.size += 1000;
    randombytes_buf(q.head.signature.data(), q.head.signature.size());
    CHECK(must_fail_both(cache, f.key.pub, q).code == Errc::bad_signature);
  }
  SUBCASE("stale or another question") {
    VerifyOptions o;
    o.min_size = f.head.size + 1;
    CHECK(must_fail_both(cache, f.key.pub, a.proof, o).code == Errc::unavailable);
    o = {};
    o.expected_params = std::vector<Value>{Value{int64_t{778}}};
    CHECK(must_fail_both(cache, f.key.pub, a.proof, o).code == Errc::proof_failed);
  }
  SUBCASE("a hostile query at the cached root, then the honest one") {
    VerifyOptions o;
    o.guard.time_limit = std::chrono::milliseconds(100);
    QueryProof q = a.proof;
    q.params.clear();
    q.sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c";
    CHECK(must_fail_both(cache, f.key.pub, q, o).code == Errc::refused);
    q.sql = "DELETE FROM items";
    CHECK(must_fail_both(cache, f.key.pub, q, o).code == Errc::refused);
    check_same_outcome(cache, f.key.pub, a.proof, o);
    check_same_outcome(cache, f.key.pub, a.proof);
  }
  // Every subcase leaves the cache able to verify the honest proof.
  check_same_outcome(cache, f.key.pub, a.proof);
}

TEST_CASE("warm cache: a different state root after a cached one") {
  TempDir dir;
  auto db = dir / "b.db";
  proof_testing::TestDbOptions o;
  o.rows = 3000;
  o.extras = false;
  REQUIRE(build_test_db(db, o).ok());
  KeyPair key = KeyPair::generate();
  auto tree_a = StateTree::from_file(db);
  REQUIRE(tree_a.ok());
  auto head_a = sign_state(*tree_a, key, 1);
  REQUIRE(head_a.ok());
  const char* sql = "SELECT * FROM items WHERE id = 2000";
  auto pa = prove_query(db, *tree_a, *head_a, sql, {});
  REQUIRE(pa.ok());
  {
    auto conn = open_sqlite(db.string(), SQLITE_OPEN_READWRITE);
    REQUIRE(conn.ok());
    REQUIRE(exec_sql(conn->get(), "UPDATE items SET name = 'changed' WHERE id = 2000").ok());
  }
  auto tree_b = StateTree::from_file(db);
  REQUIRE(tree_b.ok());
  auto head_b = sign_state(*tree_b, key, 2);
  REQUIRE(head_b.ok());
  auto pb = prove_query(db, *tree_b, *head_b, sql, {});
  REQUIRE(pb.ok());

  VerifierCache cache;
  auto va = cache.verify(key.pub, pa->proof);
  REQUIRE(va.ok());
  CHECK(va->result.rows[0][1] == Value{std::string("item-2000")});
  auto vb = cache.verify(key.pub, pb->proof);  // another root: its own connection
  REQUIRE(vb.ok());
  CHECK(vb->result.rows[0][1] == Value{std::string("changed")});
  CHECK(cache.verify(key.pub, pa->proof)->result == va->result);
  CHECK(cache.stats().connection_opens == 2);

  size_t swapped = 0;
  for (size_t i = 0; i < pa->proof.pages.size(); ++i) {
    if (pa->proof.pages[i] == pb->proof.pages[i]) continue;
    QueryProof q = pa->proof;
    q.pages[i] = pb->proof.pages[i];
    CHECK(must_fail_both(cache, key.pub, q).code == Errc::root_mismatch);
    ++swapped;
  }
  CHECK(swapped >= 1);
  QueryProof mixed = pb->proof;
  mixed.head = pa->proof.head;  // B's pages under A's (cached) head
  must_fail_both(cache, key.pub, mixed);
  mixed = pa->proof;
  mixed.head = pb->proof.head;
  must_fail_both(cache, key.pub, mixed);
}

TEST_CASE("warm cache: other guard options, a disabled cache and clear() change nothing") {
  const Fixture& f = cache_fixture();
  ProvedQuery a = must_prove_in(f, "SELECT count(*) FROM items WHERE id BETWEEN 10 AND 500");
  VerifierCache cache;
  check_same_outcome(cache, f.key.pub, a.proof);
  VerifyOptions small;
  small.guard.max_rows = 0;  // the kept connection was opened with other limits
  Error e = must_fail_both(cache, f.key.pub, a.proof, small);
  CHECK(e.code == Errc::too_large);
  check_same_outcome(cache, f.key.pub, a.proof);
  cache.clear();
  check_same_outcome(cache, f.key.pub, a.proof);
  CHECK(cache.stats().head_misses == 2);

  VerifierCacheOptions off;
  off.reuse_connections = false;
  VerifierCache no_reuse(off);
  check_same_outcome(no_reuse, f.key.pub, a.proof);
  check_same_outcome(no_reuse, f.key.pub, a.proof);
  CHECK(no_reuse.stats().connection_hits == 0);
}

// The two independent layers that keep a reused connection from serving a page
// of an earlier proof, each shown alone on a bare connection.
TEST_CASE("reused proof VFS connection: SQLite's page cache never outlives a page set") {
  const Fixture& f = cache_fixture();
  const char* sql = "SELECT name FROM items WHERE id = 12345";
  ProvedQuery a = must_prove_in(f, sql);
  // Drop a page of the table (schema pages are read only once per connection).
  std::vector<uint32_t> schema = schema_pages_of(f.db);
  ProofImage::PageViews all, without_leaf;
  uint32_t dropped = 0;
  for (const ProvenPage& p : a.proof.pages) {
    all.emplace_back(p.pgno, p.bytes);
    if (std::find(schema.begin(), schema.end(), p.pgno) == schema.end()) dropped = p.pgno;
  }
  REQUIRE(dropped != 0);
  for (const auto& page : all) {
    if (page.first != dropped) without_leaf.push_back(page);
  }

  for (ProofImage::Mode mode : {ProofImage::Mode::reusable, ProofImage::Mode::immutable}) {
    for (bool release : {false, true}) {
      bool reusable = mode == ProofImage::Mode::reusable;
      CAPTURE(reusable);
      CAPTURE(release);
      ProofImage image(a.proof.page_size, a.proof.head.page_count, all, mode);
      auto conn = GuardedConnection::open(image.uri());
      REQUIRE(conn.ok());
      REQUIRE((*conn)->query(sql, {}).ok());
      image.replace_pages(without_leaf);
      if (release) sqlite3_db_release_memory((*conn)->handle());
      auto r = (*conn)->query(sql, {});
      if (!reusable && !release) {
        // The hazard both layers exist for: an immutable connection serves the
        // page from its cache although the new page set lacks it.
        CHECK(r.ok());
        CHECK(image.missing_pages().empty());
      } else {
        CHECK_FALSE(r.ok());
        CHECK(image.missing_pages() == std::vector<uint32_t>{dropped});
      }
    }
  }
}

}  // namespace
}  // namespace swarmlite
