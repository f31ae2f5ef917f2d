#include "sqlbridge/engine/state_tree.h"

#include <doctest/doctest.h>

#include <random>

#include "core/hash.h"
#include "sqlbridge/engine/vfs_test_util.h"

namespace swarmlite {
namespace {

using vfs_testing::Conn;
using vfs_testing::TempDir;

Bytes patterned_page(uint32_t seed, size_t size = kPageSize) {
  std::mt19937 rng(seed);
  Bytes p(size);
  for (auto& b : p) b = static_cast<uint8_t>(rng());
  return p;
}

Hash32 root_of_file(const std::filesystem::path& db) {
  auto t = StateTree::from_file(db);
  INFO(db.string(), ": ", t.ok() ? "" : t.error().to_string());
  REQUIRE(t.ok());
  return t->root();
}

TEST_CASE("a page leaf is H(0x00 ‖ u32be(pgno) ‖ page) with page 1 normalised") {
  Bytes page = patterned_page(7);
  Bytes prefixed = {0, 0, 0, 7};
  prefixed.insert(prefixed.end(), page.begin(), page.end());
  CHECK(page_leaf_hash(7, page) == hash_leaf(prefixed));
  CHECK(page_leaf_hash(7, page) != page_leaf_hash(8, page));  // the page number is bound in

  Bytes one = {0, 0, 0, 1};
  Bytes norm = normalize_page(1, page);
  one.insert(one.end(), norm.begin(), norm.end());
  CHECK(page_leaf_hash(1, page) == hash_leaf(one));
  CHECK(normalize_page(2, page) == page);
}

TEST_CASE("normalisation zeroes exactly bytes 18-19, 24-27 and 92-99 of page 1") {
  Bytes page = patterned_page(1);
  Bytes norm = normalize_page(1, page);
  const Hash32 base = page_leaf_hash(1, page);
  for (size_t i = 0; i < 128; ++i) {
    bool is_volatile = (i >= 18 && i < 20) || (i >= 24 && i < 28) || (i >= 92 && i < 100);
    INFO("byte ", i);
    CHECK((norm[i] == 0) == (is_volatile || page[i] == 0));
    Bytes flipped = page;
    flipped[i] ^= 0x5a;
    CHECK((page_leaf_hash(1, flipped) == base) == is_volatile);
    CHECK(page_leaf_hash(2, flipped) != page_leaf_hash(2, page));  // other pages: every byte counts
  }
  CHECK(std::equal(norm.begin() + 100, norm.end(), page.begin() + 100));
  // Short inputs do not read past their end.
  Bytes tiny(20, 0xff);
  Bytes tiny_norm(20, 0xff);
  tiny_norm[18] = tiny_norm[19] = 0;
  CHECK(normalize_page(1, tiny) == tiny_norm);
  Bytes tiny_prefixed = {0, 0, 0, 1};
  tiny_prefixed.insert(tiny_prefixed.end(), tiny_norm.begin(), tiny_norm.end());
  CHECK(page_leaf_hash(1, tiny) == hash_leaf(tiny_prefixed));
}

TEST_CASE("databases differing only in volatile header bytes have the same root") {
  TempDir dir;
  auto a = dir / "a.db";
  {
    Conn c = Conn::open(a);
    setup_wal(c);
    c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3)");
    c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  Bytes file = vfs_testing::read_file_bytes(a);
  auto b = dir / "b.db";
  auto c = dir / "c.db";
  Bytes changed = file;
  for (size_t i : {18, 19, 24, 25, 26, 27, 92, 93, 94, 95, 96, 97, 98, 99}) changed[i] ^= 0x11;
  vfs_testing::write_file_bytes(b, changed);
  Bytes size_changed = file;
  size_changed[31] ^= 1;  // in-header database size: real content
  vfs_testing::write_file_bytes(c, size_changed);
  CHECK(root_of_file(a) == root_of_file(b));
  CHECK(root_of_file(a) != root_of_file(c));
}

TEST_CASE("the same statements in rollback and WAL journal mode give the same root") {
  TempDir dir;
  auto run = [&](const std::string& name, bool wal) {
    auto db = dir / name;
    Conn c = Conn::open(db);
    c.exec("PRAGMA page_size=4096");
    if (wal) setup_wal(c);
    c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX tv ON t(v)");
    c.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<3000) "
        "INSERT INTO t(v) SELECT printf('%050d', i*7919 % 3001) FROM n");
    c.exec("DELETE FROM t WHERE id % 5 = 0");
    c.exec("UPDATE t SET v = 'u' || v WHERE id % 7 = 0");
    return db;
  };
  auto rollback = run("rollback.db", false);
  auto wal = run("wal.db", true);
  CHECK(root_of_file(rollback) == root_of_file(wal));
}

// A writer whose commit hook applies every commit to a StateTree, and checks
// after each commit that the incremental tree equals one built from the file.
struct TrackedDb {
  std::filesystem::path path;
  WriteCapture cap;
  std::optional<Conn> conn;
  StateTree tree;
  int commits = 0;

  TrackedDb(std::filesystem::path p, bool auto_vacuum_full) : path(std::move(p)) {
    conn.emplace(Conn::open(path, &cap));
    if (auto_vacuum_full) conn->exec("PRAGMA auto_vacuum=FULL");
    setup_wal(*conn);
    conn->exec("PRAGMA synchronous=NORMAL");  // as the fixed settings; no fsync per commit
    conn->exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX tv ON t(v)");
    auto t = StateTree::from_file(path);
    REQUIRE(t.ok());
    tree = std::move(t).value();
    cap.set_commit_hook([this](const PageMap& pages, uint32_t page_count) -> Status {
      ++commits;
      return tree.apply(pages, page_count);
    });
  }
  void exec(const std::string& sql) {
    conn->exec(sql);
    check();
  }
  void check() {
    INFO("after commit ", commits);
    CHECK(cap.take_hook_error() == std::nullopt);
    CHECK(tree.page_count() == conn->integer("PRAGMA page_count"));
    CHECK(tree.root() == root_of_file(path));
  }
  void checkpoint(const std::string& mode) {
    Hash32 before = root_of_file(path);
    conn->exec("PRAGMA wal_checkpoint(" + mode + ")");
    CHECK(root_of_file(path) == before);  // checkpoints never change a root
    CHECK(tree.root() == before);
  }
};

void random_workload(TrackedDb& db, uint32_t seed, int steps) {
  MESSAGE("seed ", seed);
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  int64_t next_id = 1;
  for (int step = 0; step < steps; ++step) {
    switch (pick(8)) {
      case 0:
      case 1: {  // insert a batch, sometimes with overflow pages
        int rows = 1 + pick(200);
        int len = pick(3) == 0 ? 100 + pick(6000) : 10 + pick(200);
        db.exec("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i<" +
                std::to_string(rows - 1) + ") INSERT INTO t(id, v) SELECT " +
                std::to_string(next_id) + "+i, printf('%.*c', " + std::to_string(len) +
                ", char(65 + (i % 26))) || i FROM n");
        next_id += rows;
        break;
      }
      case 2: {  // update a range
        int64_t from = 1 + pick(static_cast<int>(next_id));
        db.exec("UPDATE t SET v = printf('%.*c', " + std::to_string(5 + pick(900)) +
                ", 'u') || id WHERE id BETWEEN " + std::to_string(from) + " AND " +
                std::to_string(from + pick(300)));
        break;
      }
      case 3: {  // delete a range
        int64_t from = 1 + pick(static_cast<int>(next_id));
        db.exec("DELETE FROM t WHERE id BETWEEN " + std::to_string(from) + " AND " +
                std::to_string(from + pick(800)));
        break;
      }
      case 4: {  // a multi-statement transaction with a side table
        db.exec(
            "BEGIN; CREATE TABLE IF NOT EXISTS s(k INTEGER PRIMARY KEY, w TEXT);"
            "INSERT INTO s(w) SELECT v FROM t WHERE id % 13 = " +
            std::to_string(pick(13)) + "; DELETE FROM s WHERE k % 3 = 0; COMMIT");
        break;
      }
      case 5: {  // drop the side table (frees pages)
        db.exec("DROP TABLE IF EXISTS s");
        break;
      }
      case 6: {
        static const char* kModes[] = {"PASSIVE", "FULL", "RESTART", "TRUNCATE"};
        db.checkpoint(kModes[pick(4)]);
        break;
      }
      case 7: {
        if (pick(4) == 0) {
          db.exec("VACUUM");  // rewrites the file, usually smaller
        } else {
          db.exec("DELETE FROM t WHERE id % " + std::to_string(2 + pick(5)) + " = 0");
        }
        break;
      }
    }
  }
  CHECK(db.commits > steps / 2);
}

TEST_CASE("incremental root equals the root from the file under a random workload") {
  TempDir dir;
  TrackedDb db(dir / "a.db", false);
  db.conn->exec("PRAGMA wal_autocheckpoint=50");  // checkpoints also happen on their own
  random_workload(db, 20240601, 60);
}

TEST_CASE("a shrinking database (auto_vacuum=FULL) cuts the tree") {
  TempDir dir;
  TrackedDb db(dir / "a.db", true);
  db.exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<3000) "
      "INSERT INTO t(v) SELECT printf('%.*c', 300, 'x') || i FROM n");
  uint32_t big = db.tree.page_count();
  db.exec("DELETE FROM t WHERE id > 500");
  uint32_t small = db.tree.page_count();
  MESSAGE("pages: ", big, " -> ", small);
  CHECK(small < big / 2);
  db.checkpoint("TRUNCATE");
  db.exec("DELETE FROM t");
  CHECK(db.tree.page_count() < small);
  random_workload(db, 7, 30);
}

TEST_CASE("undo_last restores the exact previous tree") {
  std::vector<Bytes> pages;
  for (uint32_t i = 0; i < 10; ++i) pages.push_back(patterned_page(100 + i));
  StateTree t = StateTree::from_pages(pages);
  const Hash32 r10 = t.root();

  SUBCASE("overwrite") {
    REQUIRE(t.apply({{3, patterned_page(1)}, {1, patterned_page(2)}}, 10).ok());
    CHECK(t.root() != r10);
  }
  SUBCASE("grow") {
    REQUIRE(t.apply({{2, patterned_page(1)}, {11, patterned_page(2)}, {12, patterned_page(3)}}, 12)
                .ok());
    CHECK(t.page_count() == 12);
  }
  SUBCASE("shrink") {
    REQUIRE(
        t.apply({{1, patterned_page(1)}, {9, patterned_page(9)}, {6, patterned_page(6)}}, 6).ok());
    CHECK(t.page_count() == 6);
    // The kept pages took their new values, the page above the end was ignored.
    std::vector<Bytes> expect(pages.begin(), pages.begin() + 6);
    expect[0] = patterned_page(1);
    expect[5] = patterned_page(6);
    CHECK(t.root() == StateTree::from_pages(expect).root());
  }
  t.undo_last();
  CHECK(t.page_count() == 10);
  CHECK(t.root() == r10);
  CHECK(t.root() == StateTree::from_pages(pages).root());
  t.undo_last();  // only once
  CHECK(t.root() == r10);
}

// Applies `commit` to `t` and to the model of a 40-page database, and checks
// the root and the commit's leaves against a tree built from scratch; one
// time in ten, undoes it on both and checks again.
static void apply_and_compare(StateTree& t, std::vector<Bytes>& model, const PageMap& commit,
                              std::mt19937& rng) {
  const std::vector<Bytes> before = model;
  for (const auto& [pgno, page] : commit) model[pgno - 1] = page;
  REQUIRE(t.apply(commit, 40).ok());
  REQUIRE(t.root() == StateTree::from_pages(model).root());
  for (const auto& [pgno, page] : commit) {
    REQUIRE(t.tree().leaf(pgno - 1) == page_leaf_hash(pgno, page));
  }
  if (rng() % 10 == 0) {
    t.undo_last();
    model = before;
    REQUIRE(t.root() == StateTree::from_pages(model).root());
  }
}

TEST_CASE("pages rewritten with the bytes they had, or with another page's bytes, hash as from scratch") {
  // apply() remembers the last bytes it hashed per page-number slot (16 slots,
  // pgno % 16) and reuses the leaf when a page comes back unchanged. Commits
  // here draw from 6 page contents, so the same bytes come back at the same
  // page number, at other page numbers (a leaf covers the page number too),
  // and at page numbers sharing a slot (1, 17, 33); page 1 also comes back
  // with only its volatile header bytes changed. Every root is compared with
  // the tree built from scratch.
  std::vector<Bytes> palette;
  for (uint32_t i = 0; i < 6; ++i) palette.push_back(patterned_page(500 + i));
  std::vector<Bytes> model(40, palette[0]);
  StateTree t = StateTree::from_pages(model);
  std::mt19937 rng(7);
  const uint32_t hot[] = {1, 2, 3, 17, 33, 18, 34, 40};
  for (int round = 0; round < 2000; ++round) {
    PageMap commit;
    const size_t n = 1 + rng() % 4;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t pgno = rng() % 2 ? hot[rng() % std::size(hot)] : 1 + rng() % 40;
      Bytes page = rng() % 3 == 0 ? model[pgno - 1] : palette[rng() % palette.size()];
      if (pgno == 1 && rng() % 2) page[24] ^= 0x5a;  // the file change counter: normalised away
      commit[pgno] = page;
    }
    INFO("round ", round);
    apply_and_compare(t, model, commit, rng);
  }
}

TEST_CASE("pages changed from some offset on hash as from scratch (resumed page hashes)") {
  // apply() keeps each memo slot's BLAKE2b chaining values and hashes a page
  // whose bytes changed only from block k of its leaf message (0x00, pgno,
  // page: page bytes [128k - 5, 128k + 123)) from block k on. Changes here
  // start at every block boundary and next to it, in the first block (the
  // page number's bytes share it), in the last block, at random offsets, in
  // one byte or to the page's end; pages also move between page numbers that
  // share a slot, so a slot's chaining values belong to another page number.
  std::vector<Bytes> model;
  for (uint32_t i = 0; i < 40; ++i) model.push_back(patterned_page(900 + i));
  StateTree t = StateTree::from_pages(model);
  std::mt19937 rng(11);
  const uint32_t hot[] = {2, 3, 18, 34, 40};
  std::vector<size_t> offsets = {0, 1, 4, 5, 122, 123, 124, 250, 251, 4090, 4091, 4092, 4095};
  for (size_t k = 1; k < 32; ++k) offsets.push_back(128 * k - 5);
  for (int round = 0; round < 3000; ++round) {
    PageMap commit;
    const size_t n = 1 + rng() % 3;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t pgno = rng() % 4 ? hot[rng() % std::size(hot)] : 1 + rng() % 40;
      Bytes page = model[pgno - 1];
      const size_t at = rng() % 2 ? offsets[rng() % offsets.size()] : rng() % page.size();
      const size_t end = rng() % 2 ? at + 1 : page.size();
      for (size_t b = at; b < end; ++b) page[b] = static_cast<uint8_t>(page[b] + 1 + rng() % 255);
      if (rng() % 8 == 0) page = model[rng() % model.size()];  // another page's bytes
      commit[pgno] = page;
    }
    INFO("round ", round);
    apply_and_compare(t, model, commit, rng);
  }
}

TEST_CASE("commits of many pages, hashed together in lanes, hash as from scratch at every width") {
  // apply() hashes a commit's new pages together (core/blake2b.h hash_lanes,
  // 1, 4 or 8 at a time), page 1 among them, and the rest through the memo. Commits of 1..40
  // pages at random page numbers of 120 (so several share a memo slot, pgno
  // % 16) mix unchanged pages, pages changed from some offset on, other
  // pages' bytes and new bytes, at 4 KiB (memo) and 16 KiB (no memo) pages;
  // every root and leaf is compared with the tree built from scratch, under
  // each lane width this CPU runs.
  const size_t process_width = blake2b256::lane_width();
  for (size_t width : {size_t{1}, size_t{4}, size_t{8}}) {
    blake2b256::force_lane_width(width);
    if (blake2b256::lane_width() != width) continue;  // not on this CPU
    for (size_t page_size : {size_t{4096}, size_t{16384}}) {
      INFO("width ", width, ", page size ", page_size);
      constexpr uint32_t kPages = 120;
      std::vector<Bytes> model;
      for (uint32_t i = 0; i < kPages; ++i) model.push_back(patterned_page(2000 + i, page_size));
      StateTree t = StateTree::from_pages(model);
      std::mt19937 rng(static_cast<uint32_t>(width * 100 + page_size));
      const int rounds = page_size == 4096 ? 300 : 60;
      for (int round = 0; round < rounds; ++round) {
        PageMap commit;
        const size_t n = 1 + rng() % 40;
        while (commit.size() < n) {
          const uint32_t pgno = 1 + rng() % kPages;
          Bytes page = model[pgno - 1];
          switch (rng() % 5) {
            case 0:  // unchanged
              break;
            case 1:  // changed from some offset on, or one byte
            case 2: {
              const size_t at = rng() % page.size();
              const size_t end = rng() % 2 ? at + 1 : page.size();
              for (size_t b = at; b < end; ++b) page[b] = static_cast<uint8_t>(rng());
              break;
            }
            case 3:  // another page's bytes
              page = model[rng() % kPages];
              break;
            default:  // new bytes
              page = patterned_page(static_cast<uint32_t>(rng()), page_size);
          }
          commit[pgno] = page;
        }
        if (rng() % 2 == 0) {
          // Page 1, as in every commit that grows the file: hashed in the
          // lanes from a copy with its volatile header bytes zeroed.
          Bytes page = model[0];
          page[24] = static_cast<uint8_t>(rng());  // the file change counter
          if (rng() % 2) page[28 + rng() % 4] = static_cast<uint8_t>(rng());  // the page count
          commit[1] = page;
        }
        for (const auto& [pgno, page] : commit) model[pgno - 1] = page;
        INFO("round ", round, ", ", commit.size(), " pages");
        REQUIRE(t.apply(commit, kPages).ok());
        for (const auto& [pgno, page] : commit) {
          REQUIRE(t.tree().leaf(pgno - 1) == page_leaf_hash(pgno, page));
        }
        REQUIRE(t.root() == StateTree::from_pages(model).root());
      }
    }
  }
  blake2b256::force_lane_width(process_width);
}

TEST_CASE("page_leaf_hashes gives page_leaf_hash of every page, page 1 and odd sizes included") {
  // Verifiers hash a proof's pages together (hash_lanes for the pages of the
  // first page's size other than page 1, the rest one by one).
  const size_t process_width = blake2b256::lane_width();
  std::mt19937 rng(29);
  for (size_t width : {size_t{1}, size_t{4}, size_t{8}}) {
    blake2b256::force_lane_width(width);
    for (int round = 0; round < 60; ++round) {
      const size_t n = rng() % 21;
      std::vector<std::pair<uint32_t, Bytes>> pages;
      for (size_t i = 0; i < n; ++i) {
        const uint32_t pgno = rng() % 4 == 0 ? 1 : 1 + rng() % 100000;
        const size_t size = rng() % 6 == 0 ? 512 << (rng() % 8) : 4096;
        pages.emplace_back(pgno, patterned_page(static_cast<uint32_t>(rng()), size));
      }
      std::vector<Hash32> got(n);
      std::vector<PageLeafJob> jobs;
      for (size_t i = 0; i < n; ++i) jobs.push_back({pages[i].first, pages[i].second, &got[i]});
      page_leaf_hashes(jobs);
      for (size_t i = 0; i < n; ++i) {
        INFO("width ", width, ", round ", round, ", page ", i, " of ", n);
        REQUIRE(got[i] == page_leaf_hash(pages[i].first, pages[i].second));
      }
    }
  }
  blake2b256::force_lane_width(process_width);
}

TEST_CASE("the change journal: each page's leaf before the first change since a point") {
  std::vector<Bytes> pages;
  for (uint32_t i = 0; i < 10; ++i) pages.push_back(patterned_page(100 + i, 512));
  StateTree t = StateTree::from_pages(pages);
  const StateTree at0 = t;
  REQUIRE(t.applied() == 0);
  REQUIRE(t.apply({{3, patterned_page(1, 512)}}, 10).ok());
  const uint64_t mark = t.applied();
  REQUIRE(
      t.apply({{3, patterned_page(2, 512)}, {5, patterned_page(3, 512)}}, 8).ok());  // cuts 9, 10
  REQUIRE(t.apply({{9, patterned_page(4, 512)},
                   {10, patterned_page(5, 512)},
                   {11, patterned_page(6, 512)}},
                  11)
              .ok());
  auto all = t.changes_since(0);
  REQUIRE(all);
  CHECK(all->old_page_count == 10);
  // Page 3's leaf at the start (not after the first apply); 9 and 10 from the
  // cut; 11 did not exist at the start.
  std::vector<std::pair<uint32_t, Hash32>> want{{3, at0.tree().leaf(2)},
                                                {5, at0.tree().leaf(4)},
                                                {9, at0.tree().leaf(8)},
                                                {10, at0.tree().leaf(9)}};
  CHECK(all->old_leaves == want);
  auto since = t.changes_since(mark);
  REQUIRE(since);
  CHECK(since->old_leaves.size() == 4);
  CHECK(since->old_leaves[0].second != at0.tree().leaf(2));  // page 3 after the first apply
  CHECK(t.changes_since(t.applied())->old_leaves.empty());
  CHECK_FALSE(t.changes_since(t.applied() + 1));
  // undo takes the last apply back out of the journal; a copy has no journal.
  t.undo_last();
  CHECK(t.applied() == 2);
  CHECK(t.changes_since(0)->old_leaves.size() == 4);  // 3, 5 and the cut 9, 10
  StateTree copy = t;
  CHECK(copy.applied() == 2);
  CHECK_FALSE(copy.changes_since(0));
  CHECK(copy.changes_since(2)->old_leaves.empty());
  StateTree moved = std::move(t);
  CHECK(moved.changes_since(0));
}

TEST_CASE("the change journal is bounded by applies and by leaves") {
  std::vector<Bytes> pages;
  for (uint32_t i = 0; i < 4; ++i) pages.push_back(patterned_page(100 + i, 512));
  StateTree t = StateTree::from_pages(pages);
  for (size_t i = 0; i < StateTree::kJournalMaxApplies + 3; ++i)
    REQUIRE(t.apply({{2, patterned_page(static_cast<uint32_t>(i), 512)}}, 4).ok());
  CHECK_FALSE(t.changes_since(2));  // dropped
  auto kept = t.changes_since(t.applied() - StateTree::kJournalMaxApplies);
  REQUIRE(kept);
  CHECK(kept->old_leaves.size() == 1);
  // One apply over the leaf cap is kept as "too many": nothing reaches across it.
  const uint32_t big = static_cast<uint32_t>(StateTree::kJournalMaxLeaves) + 1;
  std::vector<Bytes> many(big, Bytes(512, 1));
  StateTree b = StateTree::from_pages(many);
  PageMap all;
  for (uint32_t p = 1; p <= big; ++p) all[p] = Bytes(512, 2);
  REQUIRE(b.apply(all, big).ok());
  const uint64_t after = b.applied();
  REQUIRE(b.apply({{1, Bytes(512, 3)}}, big).ok());
  CHECK_FALSE(b.changes_since(0));
  CHECK(b.changes_since(after)->old_leaves.size() == 1);
}

TEST_CASE("apply refuses page 0 and growth without the new pages, changing nothing") {
  std::vector<Bytes> pages = {patterned_page(1), patterned_page(2)};
  StateTree t = StateTree::from_pages(pages);
  const Hash32 r = t.root();
  auto missing = t.apply({{1, patterned_page(5)}, {4, patterned_page(4)}}, 4);  // no page 3
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::invalid_argument);
  CHECK(missing.error().message.find("page 3") != std::string::npos);
  auto zero = t.apply({{0, patterned_page(5)}}, 2);
  REQUIRE_FALSE(zero.ok());
  CHECK(t.root() == r);
  CHECK(t.page_count() == 2);
}

TEST_CASE("logical pages match what SQLite recovers from the same files") {
  TempDir dir;
  auto db = dir / "a.db";
  Conn c = Conn::open(db);
  setup_wal(c);
  c.exec("PRAGMA wal_autocheckpoint=0");
  c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  c.exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000) "
      "INSERT INTO t(v) SELECT printf('%0200d', i) FROM n");
  c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  c.exec("UPDATE t SET v='x' WHERE id % 10 = 0");
  c.exec("INSERT INTO t(v) SELECT v FROM t WHERE id < 500");
  auto logical = read_logical_pages(db);
  REQUIRE(logical.ok());
  CHECK(logical->size() == static_cast<size_t>(c.integer("PRAGMA page_count")));

  // Oracle: copy the main file and WAL (no -shm), let SQLite recover and checkpoint.
  auto copy = dir / "copy.db";
  std::filesystem::copy_file(db, copy);
  std::filesystem::copy_file(dir / "a.db-wal", dir / "copy.db-wal");
  {
    Conn o("file:" + copy.string());
    o.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  Bytes file = vfs_testing::read_file_bytes(copy);
  REQUIRE(file.size() == logical->size() * kPageSize);
  for (size_t i = 0; i < logical->size(); ++i) {
    INFO("page ", i + 1);
    CHECK(page_leaf_hash(static_cast<uint32_t>(i + 1), (*logical)[i]) ==
          page_leaf_hash(static_cast<uint32_t>(i + 1),
                         ByteView(file).subspan(i * kPageSize, kPageSize)));
  }
}

uint32_t get_be32(const Bytes& b, size_t at) {
  return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3];
}
void put_be32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

// Rewrites a WAL with big-endian checksums (magic 0x377f0683), as a big-endian
// host would have written it. Independent of the reader's implementation.
Bytes wal_to_big_endian_checksums(Bytes w) {
  uint32_t s1 = 0, s2 = 0;
  auto sum = [&](size_t at, size_t n) {
    for (size_t i = at; i < at + n; i += 8) {
      s1 += get_be32(w, i) + s2;
      s2 += get_be32(w, i + 4) + s1;
    }
  };
  put_be32(w, 0, 0x377f0683);
  sum(0, 24);
  put_be32(w, 24, s1);
  put_be32(w, 28, s2);
  const size_t frame = 24 + kPageSize;
  for (size_t off = 32; off + frame <= w.size(); off += frame) {
    sum(off, 8);
    sum(off + 24, kPageSize);
    put_be32(w, off + 16, s1);
    put_be32(w, off + 20, s2);
  }
  return w;
}

TEST_CASE("from_file takes committed WAL frames only, as SQLite's recovery does") {
  TempDir dir;
  auto db = dir / "a.db";
  auto wal = dir / "a.db-wal";
  Conn c = Conn::open(db);
  setup_wal(c);
  c.exec("PRAGMA wal_autocheckpoint=0");
  c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  const Hash32 r0 = root_of_file(db);
  c.exec("INSERT INTO t(v) VALUES ('one')");
  const Hash32 r1 = root_of_file(db);
  const size_t wal_after_1 = std::filesystem::file_size(wal);
  c.exec("INSERT INTO t(v) SELECT printf('%.*c', 5000, 'z') FROM t");  // two frames or more
  const Hash32 r2 = root_of_file(db);
  CHECK(r0 != r1);
  CHECK(r1 != r2);

  // The files are quiet while the connection idles; work on copies.
  const Bytes main_bytes = vfs_testing::read_file_bytes(db);
  const Bytes wal_bytes = vfs_testing::read_file_bytes(wal);
  REQUIRE(wal_bytes.size() >= wal_after_1 + 2 * (24 + kPageSize));
  int probes = 0;
  auto root_with_wal = [&](const Bytes& w) {
    auto d = dir / ("probe" + std::to_string(++probes) + ".db");
    vfs_testing::write_file_bytes(d, main_bytes);
    std::filesystem::path pw = d;
    pw += "-wal";
    vfs_testing::write_file_bytes(pw, w);
    return root_of_file(d);
  };
  CHECK(root_with_wal(wal_bytes) == r2);
  CHECK(root_with_wal(wal_to_big_endian_checksums(wal_bytes)) == r2);

  Bytes w = wal_bytes;
  w.back() ^= 1;  // data of the last (commit) frame of transaction 2
  CHECK(root_with_wal(w) == r1);
  w = wal_bytes;
  w[wal_after_1 + 24 + 100] ^= 1;  // data of transaction 2's first frame
  CHECK(root_with_wal(w) == r1);
  w = wal_bytes;
  w[wal_after_1 + 8] ^= 1;  // salt-1 of transaction 2's first frame
  CHECK(root_with_wal(w) == r1);
  w = Bytes(wal_bytes.begin(), wal_bytes.end() - 1);  // torn last frame
  CHECK(root_with_wal(w) == r1);
  w = Bytes(wal_bytes.begin(), wal_bytes.begin() + static_cast<long>(wal_after_1));
  CHECK(root_with_wal(w) == r1);
  w = wal_bytes;
  w[40] ^= 1;  // data of the first frame: nothing after it counts
  CHECK(root_with_wal(w) == r0);
  w = wal_bytes;
  w[12] ^= 1;  // header checksum no longer matches: an empty WAL
  CHECK(root_with_wal(w) == r0);
  w = wal_bytes;
  w[3] = 0x84;  // bad magic
  CHECK(root_with_wal(w) == r0);
  CHECK(root_with_wal(Bytes{}) == r0);

  // SQLite agrees about the torn and big-endian variants.
  {
    w = Bytes(wal_bytes.begin(), wal_bytes.end() - 1);
    auto d = dir / "sqlite.db";
    vfs_testing::write_file_bytes(d, main_bytes);
    vfs_testing::write_file_bytes(dir / "sqlite.db-wal", w);
    Conn o("file:" + d.string());
    CHECK(o.integer("SELECT count(*) FROM t") == 1);
  }
  {
    auto d = dir / "sqlite_be.db";
    vfs_testing::write_file_bytes(d, main_bytes);
    vfs_testing::write_file_bytes(dir / "sqlite_be.db-wal", wal_to_big_endian_checksums(wal_bytes));
    Conn o("file:" + d.string());
    CHECK(o.integer("SELECT count(*) FROM t") == 2);
  }
}

TEST_CASE("from_file changes no file") {
  TempDir dir;
  auto db = dir / "a.db";
  auto wal = dir / "a.db-wal";
  Conn c = Conn::open(db);
  setup_wal(c);
  c.exec("PRAGMA wal_autocheckpoint=0");
  c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)");
  const Bytes main_before = vfs_testing::read_file_bytes(db);
  const Bytes wal_before = vfs_testing::read_file_bytes(wal);
  const auto mtime_db = std::filesystem::last_write_time(db);
  const auto mtime_wal = std::filesystem::last_write_time(wal);
  REQUIRE(wal_before.size() > 32);
  for (int i = 0; i < 3; ++i) (void)root_of_file(db);
  CHECK(vfs_testing::read_file_bytes(db) == main_before);
  CHECK(vfs_testing::read_file_bytes(wal) == wal_before);
  CHECK(std::filesystem::last_write_time(db) == mtime_db);
  CHECK(std::filesystem::last_write_time(wal) == mtime_wal);
}

TEST_CASE("from_file reports a missing or non-SQLite file") {
  TempDir dir;
  auto missing = StateTree::from_file(dir / "nope.db");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
  vfs_testing::write_file_bytes(dir / "junk.db", Bytes(4096, 7));
  auto junk = StateTree::from_file(dir / "junk.db");
  REQUIRE_FALSE(junk.ok());
  CHECK(junk.error().code == Errc::corrupt);
  vfs_testing::write_file_bytes(dir / "empty.db", Bytes{});
  auto empty = StateTree::from_file(dir / "empty.db");
  REQUIRE(empty.ok());
  CHECK(empty->page_count() == 0);
  CHECK(empty->root() == empty_root());
}

// --- The lock-byte page (docs/formats/state-tree.md, "The lock-byte page") -----------
// With the pending byte moved to 64 KiB (vfs_testing::PendingByte) the lock-byte
// page of a 4096-byte-page database is page 17, so small databases cross it.
constexpr uint32_t kTestPendingByte = 0x10000;
constexpr uint32_t kTestLockPage = 17;
using vfs_testing::PendingByte;

TEST_CASE("the lock-byte page is pending byte / page size + 1, its leaf a zero page's") {
  CHECK(lock_byte_page(4096) == 262145);
  CHECK(lock_byte_page(512) == 2097153);
  CHECK(lock_byte_page(65536) == 16385);
  CHECK(lock_byte_page(0) == 0);
  CHECK(lock_byte_leaf(4096) == page_leaf_hash(262145, Bytes(4096, 0)));
  CHECK(lock_byte_leaf(65536) == page_leaf_hash(16385, Bytes(65536, 0)));
  {
    PendingByte moved(kTestPendingByte);
    CHECK(lock_byte_page(4096) == kTestLockPage);
    CHECK(lock_byte_page(512) == 129);
    CHECK(lock_byte_leaf(4096) == page_leaf_hash(kTestLockPage, Bytes(4096, 0)));
    CHECK(set_pending_byte_for_testing(100).error().code == Errc::invalid_argument);
  }
  CHECK(lock_byte_page(4096) == 262145);
}

TEST_CASE("from_pages gives the lock-byte page its fixed leaf, whatever bytes stand there") {
  PendingByte moved(kTestPendingByte);
  std::vector<Bytes> pages;
  for (uint32_t i = 0; i < 30; ++i) pages.push_back(patterned_page(300 + i));
  StateTree junk = StateTree::from_pages(pages);
  pages[kTestLockPage - 1] = Bytes(kPageSize, 0);
  StateTree zeros = StateTree::from_pages(pages);
  CHECK(junk.root() == zeros.root());
  CHECK(junk.tree().leaf(kTestLockPage - 1) == lock_byte_leaf(kPageSize));
  CHECK(junk.page_size() == kPageSize);
  // Below the lock-byte page nothing changed: 16 pages hash as they always did.
  std::vector<Bytes> first16(pages.begin(), pages.begin() + 16);
  CHECK(StateTree::from_pages(first16).tree().leaf(15) == page_leaf_hash(16, pages[15]));
}

// Random commits growing, rewriting and shrinking a model database across the
// lock-byte page; after each, the incremental tree equals one built from scratch.
TEST_CASE("apply grows past, shrinks below and regrows across the lock-byte page as from scratch") {
  PendingByte moved(kTestPendingByte);
  std::mt19937 rng(20261130);
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  std::vector<Bytes> model = {patterned_page(1)};
  StateTree t = StateTree::from_pages(model);
  uint32_t next_seed = 1000;
  int crossings = 0;
  for (int step = 0; step < 400; ++step) {
    const uint32_t old_count = static_cast<uint32_t>(model.size());
    // New sizes straddle the lock-byte page: 1..40 pages.
    uint32_t new_count = 1 + pick(40);
    PageMap commit;
    for (uint32_t pg = old_count + 1; pg <= new_count; ++pg) {
      if (pg != kTestLockPage) commit[pg] = patterned_page(next_seed++);
    }
    for (uint32_t n = pick(4); n > 0; --n) {  // rewrites of existing pages (never the lock page)
      uint32_t pg = 1 + pick(old_count);
      if (pg != kTestLockPage) commit[pg] = patterned_page(next_seed++);
    }
    if (pick(5) == 0) commit[new_count + 1 + pick(3)] = patterned_page(next_seed++);  // cut off
    if ((old_count < kTestLockPage) != (new_count < kTestLockPage)) ++crossings;
    const Hash32 before = t.root();
    Status st = t.apply(commit, new_count);
    INFO("step ", step, ": ", old_count, " -> ", new_count, " pages");
    REQUIRE_MESSAGE(st.ok(), st.error_text());
    if (pick(6) == 0) {  // undo restores the previous tree exactly, redo gives the same again
      const Hash32 after = t.root();
      t.undo_last();
      CHECK(t.root() == before);
      CHECK(t.page_count() == old_count);
      REQUIRE(t.apply(commit, new_count).ok());
      CHECK(t.root() == after);
    }
    model.resize(new_count, Bytes(kPageSize, 0));
    for (const auto& [pg, bytes] : commit) {
      if (pg <= new_count) model[pg - 1] = bytes;
    }
    CHECK(t.page_count() == new_count);
    CHECK(t.root() == StateTree::from_pages(model).root());
  }
  MESSAGE("crossed the lock-byte page ", crossings, " times");
  CHECK(crossings > 50);
}

TEST_CASE("apply refuses a written lock-byte page and pages of mixed or invalid sizes") {
  PendingByte moved(kTestPendingByte);
  std::vector<Bytes> pages;
  for (uint32_t i = 0; i < 16; ++i) pages.push_back(patterned_page(500 + i));
  StateTree t = StateTree::from_pages(pages);
  const Hash32 r = t.root();
  auto expect_refused = [&](const PageMap& commit, uint32_t count, const std::string& words) {
    Status st = t.apply(commit, count);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::invalid_argument);
    INFO(st.error().message);
    CHECK(st.error().message.find(words) != std::string::npos);
    CHECK(t.root() == r);
    CHECK(t.page_count() == 16);
  };
  expect_refused({{17, Bytes(kPageSize, 0)}, {18, patterned_page(1)}}, 18, "lock-byte page");
  expect_refused({{18, patterned_page(1)}}, 19, "does not write page 19");
  expect_refused({{3, patterned_page(1)}, {5, Bytes(512, 1)}}, 16, "page 5 has 512 bytes");
  expect_refused({{3, Bytes(1000, 1)}}, 16, "not a page size");
  expect_refused({{3, Bytes(8192, 1)}}, 16, "the database's pages 4096");

  // A commit that ends exactly at the lock-byte page (SQLite skips it, but the
  // tree copes): the last leaf is the fixed one, as from_pages gives.
  REQUIRE(t.apply({}, 17).ok());
  pages.push_back(Bytes(kPageSize, 0));
  CHECK(t.root() == StateTree::from_pages(pages).root());
}

TEST_CASE("lock-byte page: incremental root equals the file's under a random workload") {
  PendingByte moved(kTestPendingByte);
  TempDir dir;
  TrackedDb db(dir / "a.db", false);
  db.conn->exec("PRAGMA wal_autocheckpoint=50");
  random_workload(db, 20261130, 60);
  CHECK(db.tree.page_size() == kPageSize);
}

TEST_CASE("lock-byte page: a shrinking database (auto_vacuum=FULL) crosses it both ways") {
  PendingByte moved(kTestPendingByte);
  TempDir dir;
  TrackedDb db(dir / "a.db", true);
  db.exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<600) "
      "INSERT INTO t(v) SELECT printf('%.*c', 300, 'x') || i FROM n");
  CHECK(db.tree.page_count() > 3 * kTestLockPage);
  db.exec("DELETE FROM t WHERE id > 10");
  CHECK(db.tree.page_count() < kTestLockPage);
  db.exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<300) "
      "INSERT INTO t(v) SELECT printf('%.*c', 200, 'y') || i FROM n");
  CHECK(db.tree.page_count() > kTestLockPage);
  db.checkpoint("TRUNCATE");
  db.exec("DELETE FROM t");
  CHECK(db.tree.page_count() < kTestLockPage);
  random_workload(db, 17, 30);
}

// One commit that takes a fresh database past the lock-byte page while all of
// it lives in the WAL: the files hold one copy of every page but that one.
TEST_CASE("lock-byte page: a database past it that lives in the WAL reads and hashes as SQLite sees it") {
  PendingByte moved(kTestPendingByte);
  TempDir dir;
  auto db = dir / "a.db";
  WriteCapture cap;
  StateTree tree;
  cap.set_commit_hook([&](const PageMap& pages, uint32_t count) { return tree.apply(pages, count); });
  Conn c = Conn::open(db, &cap);
  setup_wal(c);
  c.exec("PRAGMA wal_autocheckpoint=0");
  c.exec(
      "BEGIN; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<12) "
      "INSERT INTO t(v) SELECT zeroblob(9000) || i FROM n; COMMIT");
  const auto count = static_cast<uint32_t>(c.integer("PRAGMA page_count"));
  REQUIRE(count > kTestLockPage + 5);
  CHECK(std::filesystem::file_size(db) <= kPageSize);  // at most the header page: not checkpointed
  {
    auto lp = LogicalPages::open(db);
    REQUIRE_MESSAGE(lp.ok(), lp.error_text());
    CHECK(lp->page_count() == count);
    CHECK(lp->committed_frames() == count - 1);
    Bytes page;
    REQUIRE(lp->read(kTestLockPage, page).ok());
    CHECK(page == Bytes(kPageSize, 0));
  }
  const Hash32 in_wal = root_of_file(db);
  CHECK(tree.page_count() == count);
  CHECK(tree.root() == in_wal);
  CHECK(c.text("PRAGMA integrity_check") == "ok");

  // Checkpointed, the main file has a hole of zeros where the lock-byte page is.
  c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  Bytes file = vfs_testing::read_file_bytes(db);
  REQUIRE(file.size() == size_t{count} * kPageSize);
  CHECK(Bytes(file.begin() + (kTestLockPage - 1) * kPageSize,
              file.begin() + kTestLockPage * kPageSize) == Bytes(kPageSize, 0));
  CHECK(root_of_file(db) == in_wal);
  c.close();

  // Whatever the file holds there (another tool wrote it), the root is the same.
  for (size_t i = 0; i < kPageSize; ++i) file[(kTestLockPage - 1) * kPageSize + i] = 0xa5;
  vfs_testing::write_file_bytes(db, file);
  CHECK(root_of_file(db) == in_wal);
  auto logical = read_logical_pages(db);
  REQUIRE(logical.ok());
  CHECK((*logical)[kTestLockPage - 1] == Bytes(kPageSize, 0));
  CHECK(StateTree::from_pages(*logical).root() == in_wal);
}

}  // namespace
}  // namespace swarmlite
