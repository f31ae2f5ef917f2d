// Databases past SQLite's lock-byte page (docs/formats/state-tree.md, "The
// lock-byte page") through every part that handles pages: the primary's commit
// hook and state tree, a replica's replay, the prover and the verifier (plain
// and cached), the audit and the import. The pending byte is moved to 64 KiB
// (vfs_testing::PendingByte), so the lock-byte page is page 17 and a database
// of a few hundred KiB crosses it; tests/integration/bigdb_itest.cpp does the
// same with the real 1 GiB offset through real processes.
#include <doctest/doctest.h>

#include <algorithm>

#include "sqlbridge/tools/audit.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/tools/import.h"
#include "sqlbridge/proof/proof_vfs.h"
#include "sqlbridge/sqlite_util.h"
#include "sqlbridge/proof/verifier.h"
#include "sqlbridge/engine/vfs_test_util.h"

namespace swarmlite {
namespace {

using testing::sql;
using testing::TempDir;

constexpr uint32_t kTestPendingByte = 0x10000;
constexpr uint32_t kLockPage = 17;  // with 4096-byte pages

// The proof's page numbers.
std::vector<uint32_t> proof_pages(const QueryProof& proof) {
  std::vector<uint32_t> out;
  for (const ProvenPage& p : proof.pages) out.push_back(p.pgno);
  return out;
}

// Proves `q` on the replica and verifies it with both verifiers; returns the rows.
std::vector<std::vector<Value>> prove_and_verify(const Replica& replica, const PublicKey& pub,
                                                 const std::string& q, VerifierCache& cache,
                                                 std::vector<uint32_t>* pages = nullptr) {
  // At the replica's newest head (proofs are otherwise answered at the head
  // pinned up to pin_interval ago: docs/verified-reads.md).
  ProveOptions at_newest;
  at_newest.min_size = replica.size();
  auto proved = replica.prove(q, {}, at_newest);
  INFO(q);
  REQUIRE_MESSAGE(proved.ok(), proved.error_text());
  std::vector<uint32_t> pgnos = proof_pages(proved->proof);
  CHECK(std::find(pgnos.begin(), pgnos.end(), kLockPage) == pgnos.end());
  auto plain = Verifier::verify_bytes(pub, proved->encoded);
  REQUIRE_MESSAGE(plain.ok(), plain.error_text());
  CHECK(plain->result.rows == proved->result.rows);
  for (int round = 0; round < 2; ++round) {  // the second runs on the kept connection
    auto cached = cache.verify_bytes(pub, proved->encoded);
    REQUIRE_MESSAGE(cached.ok(), cached.error_text());
    CHECK(cached->result.rows == proved->result.rows);
  }
  if (pages != nullptr) *pages = std::move(pgnos);
  return plain->result.rows;
}

TEST_CASE("lock-byte page: primary, replica, proofs and audit of a database past it") {
  vfs_testing::PendingByte moved(kTestPendingByte);
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  Primary& p = **primary;
  REQUIRE(p.execute({sql("CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")}).ok());
  // ~5 pages per row: a few entries take the database across page 17.
  for (int i = 0; i < 8; ++i) {
    auto r = p.execute({sql("INSERT INTO big(b) VALUES (randomblob(18000))"),
                        sql("INSERT INTO big(b) VALUES (randomblob(900) || zeroblob(17000))")});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  REQUIRE(p.page_count() > 4 * kLockPage);
  // A table created now gets its root page past the lock-byte page.
  REQUIRE(p.execute({sql("CREATE TABLE late(k INTEGER PRIMARY KEY, v TEXT)"),
                     sql("INSERT INTO late VALUES (1, 'one'), (2, 'two'), (3, 'three')")})
              .ok());
  REQUIRE(p.sign_head().ok());
  // The primary's incremental tree is the file's.
  {
    auto t = StateTree::from_file(dir / "p.db");
    REQUIRE(t.ok());
    CHECK(t->root() == p.state_root());
    CHECK(t->page_count() == p.page_count());
  }

  auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, testing::fast_replica());
  REQUIRE(replica.ok());
  Status synced = testing::sync_replica(p, **replica);
  REQUIRE_MESSAGE(synced.ok(), synced.error_text());
  CHECK((*replica)->state_root() == p.state_root());
  CHECK((*replica)->page_count() == p.page_count());

  VerifierCache cache;
  std::vector<uint32_t> pages;
  auto rows = prove_and_verify(**replica, keys.pub, "SELECT v FROM late WHERE k = 2", cache, &pages);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0] == Value{std::string("two")});
  CHECK(pages.back() > kLockPage);
  // A read of every overflow chain, one of which runs across the lock-byte page.
  rows = prove_and_verify(**replica, keys.pub,
                          "SELECT count(*), sum(length(hex(b))) FROM big", cache, &pages);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0] == Value{int64_t{16}});
  CHECK(pages.size() > 4 * kLockPage);
  CHECK(std::find(pages.begin(), pages.end(), kLockPage - 1) != pages.end());
  CHECK(std::find(pages.begin(), pages.end(), kLockPage + 1) != pages.end());

  // Deleting every big row keeps the file's size (auto_vacuum=NONE): the
  // freelist now holds pages on both sides of the lock-byte page, and reuse
  // by the next inserts keeps primary, replica and file in agreement.
  REQUIRE(p.execute({sql("DELETE FROM big")}).ok());
  REQUIRE(p.execute({sql("INSERT INTO big(b) VALUES (randomblob(60000))")}).ok());
  REQUIRE(p.sign_head().ok());
  REQUIRE(testing::sync_replica(p, **replica).ok());
  CHECK((*replica)->state_root() == p.state_root());
  rows = prove_and_verify(**replica, keys.pub, "SELECT length(b) FROM big", cache);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0] == Value{int64_t{60000}});
  {
    auto t = StateTree::from_file(dir / "r.db");
    REQUIRE(t.ok());
    CHECK(t->root() == p.state_root());
  }

  AuditOptions options;
  options.replica_db = dir / "r.db";
  options.work_dir = dir.path();
  auto report = audit_log(p.log_dir(), keys.pub, options);
  REQUIRE_MESSAGE(report.ok(), report.error_text());
  INFO((report->problems.empty() ? std::string() : report->problems.front()));
  CHECK(report->ok());
  CHECK(report->head_matches);
  CHECK(report->page_count == p.page_count());
  REQUIRE(report->replica);
  CHECK(report->replica->matches);
}

TEST_CASE("lock-byte page: a prover never puts it in a proof and the proof VFS serves it as zeros") {
  vfs_testing::PendingByte moved(kTestPendingByte);
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  REQUIRE((*primary)->execute({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)"),
                               sql("INSERT INTO t(b) VALUES (randomblob(200000))")})
              .ok());
  auto proved = (*primary)->prove("SELECT length(hex(b)) FROM t", {});
  REQUIRE_MESSAGE(proved.ok(), proved.error_text());
  const uint32_t count = proved->proof.head.page_count;
  REQUIRE(count > kLockPage + 10);
  // The blob's overflow chain runs through the lock-byte page; the proof holds
  // the pages on both sides of it and not it.
  const std::vector<uint32_t> pgnos = proof_pages(proved->proof);
  CHECK(std::find(pgnos.begin(), pgnos.end(), kLockPage) == pgnos.end());
  CHECK(std::find(pgnos.begin(), pgnos.end(), kLockPage - 1) != pgnos.end());
  CHECK(std::find(pgnos.begin(), pgnos.end(), kLockPage + 1) != pgnos.end());

  // Served by the image without being in it, as zeros; a missing page is still missing.
  ProofImage::PageViews views;
  for (const ProvenPage& pg : proved->proof.pages) views.emplace_back(pg.pgno, pg.bytes);
  const uint32_t dropped = views[5].first;
  views.erase(views.begin() + 5);
  ProofImage image(kPageSize, count, views);
  Bytes buf(kPageSize, 0xff);
  CHECK(image.read(buf.data(), kPageSize, int64_t{kLockPage - 1} * kPageSize) ==
        ProofImage::ReadStatus::ok);
  CHECK(buf == Bytes(kPageSize, 0));
  CHECK(image.read(buf.data(), kPageSize, int64_t{dropped - 1} * kPageSize) ==
        ProofImage::ReadStatus::missing);
  CHECK(image.missing_pages() == std::vector<uint32_t>{dropped});

  // A proof that carries the lock-byte page as zeros still verifies (its leaf is
  // that of a zero page); with any other bytes it proves nothing.
  QueryProof with_lock = proved->proof;
  auto at = std::lower_bound(with_lock.pages.begin(), with_lock.pages.end(), kLockPage,
                             [](const ProvenPage& pg, uint32_t n) { return pg.pgno < n; });
  at = with_lock.pages.insert(at, ProvenPage{kLockPage, Bytes(kPageSize, 0)});
  std::vector<uint64_t> indices;
  for (const ProvenPage& pg : with_lock.pages) indices.push_back(pg.pgno - 1);
  auto t = StateTree::from_file(dir / "p.db");
  REQUIRE(t.ok());
  auto mp = t->tree().multiproof(indices);
  REQUIRE(mp.ok());
  with_lock.multiproof = *mp;
  auto ok = Verifier::verify(keys.pub, with_lock);
  REQUIRE_MESSAGE(ok.ok(), ok.error_text());
  CHECK(ok->result.rows == proved->result.rows);
  at->bytes[100] = 1;
  auto bad = Verifier::verify(keys.pub, with_lock);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::root_mismatch);
}

TEST_CASE("lock-byte page: an app database past it imports, replays and audits") {
  vfs_testing::PendingByte moved(kTestPendingByte);
  TempDir dir;
  {
    auto src = open_sqlite((dir / "app.db").string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    REQUIRE(src.ok());
    REQUIRE(exec_sql(src->get(),
                     "CREATE TABLE docs(id INTEGER PRIMARY KEY, body BLOB);"
                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<40) "
                     "INSERT INTO docs(body) SELECT randomblob(3000 + i * 100) FROM n;"
                     "CREATE TABLE tail(k TEXT PRIMARY KEY, v INT) WITHOUT ROWID;"
                     "INSERT INTO tail VALUES ('a', 1), ('b', 2);")
                .ok());
  }
  auto source_pages = LogicalPages::open(dir / "app.db");
  REQUIRE(source_pages.ok());
  REQUIRE(source_pages->page_count() > 2 * kLockPage);

  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary());
  REQUIRE(primary.ok());
  ImportOptions options;
  options.max_entry_bytes = 16 << 10;  // several entries
  auto stats = import_database(dir / "app.db", **primary, options);
  REQUIRE_MESSAGE(stats.ok(), stats.error_text());
  CHECK(stats->rows == 42);
  CHECK(stats->entries >= 3);
  REQUIRE((*primary)->sign_head().ok());
  CHECK((*primary)->page_count() > 2 * kLockPage);

  auto replica = Replica::open(dir / "r.db", dir / "r.log", keys.pub, testing::fast_replica());
  REQUIRE(replica.ok());
  REQUIRE(testing::sync_replica(**primary, **replica).ok());
  CHECK((*replica)->state_root() == (*primary)->state_root());
  VerifierCache cache;
  auto rows = prove_and_verify(**replica, keys.pub, "SELECT v FROM tail WHERE k = 'b'", cache);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0] == Value{int64_t{2}});

  AuditOptions audit_options;
  audit_options.replica_db = dir / "r.db";
  audit_options.work_dir = dir.path();
  auto report = audit_log((*primary)->log_dir(), keys.pub, audit_options);
  REQUIRE(report.ok());
  INFO((report->problems.empty() ? std::string() : report->problems.front()));
  CHECK(report->ok());
}

}  // namespace
}  // namespace swarmlite
