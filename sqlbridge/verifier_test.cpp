// Verified reads end to end: prove on a real WAL-mode database, verify, compare
// with plain SQLite; and every way a proof can lie fails with its own reason.
#include <doctest/doctest.h>

#include <cstring>

#include "sqlbridge/engine_test_util.h"
#include "sqlbridge/proof_test_util.h"
#include "sqlbridge/proof_vfs.h"
#include "sqlbridge/prover.h"
#include "sqlbridge/verifier.h"

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

  Fixture() {
    REQUIRE(build_test_db(db).ok());
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
void reprove_pages(QueryProof& proof) {
  std::vector<uint64_t> idx;
  for (const ProvenPage& p : proof.pages) idx.push_back(p.pgno - 1);
  auto mp = fixture().tree.tree().multiproof(idx);
  REQUIRE(mp.ok());
  proof.multiproof = *mp;
}

struct Case {
  const char* name;
  const char* sql;
  std::vector<Value> params;
};

TEST_CASE("proofs of every query shape verify and give the rows plain SQLite gives") {
  const std::vector<Case> cases = {
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

TEST_CASE("proving against a tree of another state is refused, never a bad proof") {
  const Fixture& f = fixture();
  Head wrong = f.head;
  wrong.state_root = blake2b(as_bytes("another state"));
  auto r = prove_query(f.db, f.tree, wrong, "SELECT 1", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);

  // The file moved on but the caller still holds the old tree: detected per page.
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
  CHECK(moved.error().code == Errc::unavailable);
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

}  // namespace
}  // namespace swarmlite
