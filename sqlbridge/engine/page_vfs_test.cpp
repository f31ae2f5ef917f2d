#include "sqlbridge/engine/page_vfs.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <stdexcept>
#include <tuple>

#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/engine/vfs_test_util.h"

namespace swarmlite {

// Peeks at WriteCapture internals the API does not expose.
struct PageVfsAccess {
  static uint64_t rewrites(const WriteCapture& c) { return c.rewrites_; }
};

namespace {

using vfs_testing::Conn;
using vfs_testing::TempDir;

// A table with `rows` rows of ~100-byte payload.
void fill(Conn& c, int rows, const std::string& table = "t") {
  c.exec("CREATE TABLE IF NOT EXISTS " + table + "(id INTEGER PRIMARY KEY, v TEXT)");
  c.exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<" +
         std::to_string(rows) + ") INSERT INTO " + table + "(v) SELECT printf('%0100d', i) FROM n");
}

// What a hook saw.
struct Seen {
  int calls = 0;
  PageMap pages;
  uint32_t page_count = 0;
  uint64_t wal_bytes_at_hook = 0;
};

WriteCapture::CommitHook recording_hook(Seen& seen, const std::filesystem::path& db) {
  return [&seen, db](const PageMap& pages, uint32_t page_count) -> Status {
    ++seen.calls;
    seen.pages = pages;
    seen.page_count = page_count;
    std::filesystem::path wal = db;
    wal += "-wal";
    std::error_code ec;
    seen.wal_bytes_at_hook = std::filesystem::file_size(wal, ec);
    return ok_status();
  };
}

// Captured pages equal the logical pages after the commit; every page not
// captured is unchanged from before it.
void check_capture_is_exact(const Seen& seen, const std::vector<Bytes>& before,
                            const std::vector<Bytes>& after) {
  REQUIRE(seen.calls == 1);
  CHECK(seen.page_count == after.size());
  for (const auto& page : seen.pages) {
    // Not a structured binding: doctest's INFO captures by reference in a lambda,
    // which clang 14 refuses for structured bindings.
    const uint32_t pgno = page.first;
    const Bytes& bytes = page.second;
    REQUIRE(pgno >= 1);
    REQUIRE(pgno <= after.size());
    INFO("captured page ", pgno);
    CHECK(bytes == after[pgno - 1]);
  }
  for (uint32_t pgno = 1; pgno <= after.size(); ++pgno) {
    if (seen.pages.count(pgno) != 0) continue;
    INFO("page ", pgno, " was not captured, so it must be unchanged");
    REQUIRE(pgno <= before.size());
    CHECK(after[pgno - 1] == before[pgno - 1]);
  }
}

std::vector<Bytes> logical(const std::filesystem::path& db) {
  auto pages = read_logical_pages(db);
  REQUIRE(pages.ok());
  return std::move(pages).value();
}

// A WAL database with table t of `rows` rows, checkpointed, and a write
// connection through a WriteCapture (members in destruction-safe order).
struct CapturedDb {
  TempDir dir;
  std::filesystem::path db = dir / "a.db";
  WriteCapture cap;
  Seen seen;
  Conn c = Conn::open(db, &cap);

  explicit CapturedDb(int rows) {
    setup_wal(c);
    fill(c, rows);
    c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  void record() { cap.set_commit_hook(recording_hook(seen, db)); }
};

TEST_CASE("the shim passes through create, insert, select, reopen and checkpoints") {
  TempDir dir;
  auto db = dir / "a.db";
  {
    Conn c = Conn::open(db);
    setup_wal(c);
    fill(c, 2000);
    char* name = nullptr;
    REQUIRE(sqlite3_file_control(c.get(), "main", SQLITE_FCNTL_VFSNAME, &name) == SQLITE_OK);
    REQUIRE(name != nullptr);
    CHECK(std::string(name).starts_with("swarmlite/"));
    sqlite3_free(name);
    CHECK(c.integer("SELECT count(*) FROM t") == 2000);
    c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    c.exec("UPDATE t SET v = 'x' || v WHERE id % 3 = 0");
    c.exec("PRAGMA wal_checkpoint(PASSIVE)");
    c.exec("DELETE FROM t WHERE id > 1500");
  }
  Conn c = Conn::open(db);
  CHECK(c.text("PRAGMA journal_mode") == "wal");
  CHECK(c.integer("SELECT count(*) FROM t") == 1500);
  CHECK(c.integer("SELECT count(*) FROM t WHERE v LIKE 'x%'") == 500);
  CHECK(c.text("PRAGMA integrity_check") == "ok");
  // A plain connection (default VFS) reads the same database.
  Conn plain("file:" + db.string());
  CHECK(plain.integer("SELECT count(*) FROM t") == 1500);
}

TEST_CASE("page_vfs_uri escapes awkward paths") {
  TempDir dir;
  auto db = dir / "we?ird #name%20&x=1.db";
  {
    Conn c = Conn::open(db);
    setup_wal(c);
    c.exec("CREATE TABLE t(x); INSERT INTO t VALUES(1)");
  }
  CHECK(std::filesystem::exists(db));
  Conn c = Conn::open(db);
  CHECK(c.integer("SELECT x FROM t") == 1);
}

TEST_CASE("the commit hook sees exactly the pages that changed") {
  CapturedDb d(3000);
  auto [c, db, seen, cap] = std::tie(d.c, d.db, d.seen, d.cap);
  c.exec("CREATE INDEX t_v ON t(v)");
  d.record();

  auto before = logical(db);
  c.exec(
      "BEGIN; UPDATE t SET v = 'changed' WHERE id IN (7, 1500, 2999);"
      "INSERT INTO t(v) SELECT 'new' || id FROM t WHERE id <= 200; COMMIT");
  auto after = logical(db);
  check_capture_is_exact(seen, before, after);
  CHECK(seen.page_count == c.integer("PRAGMA page_count"));
  CHECK(seen.pages.size() < after.size() / 2);  // an update touches few pages
  CHECK(seen.pages.size() >= 4);

  // A second transaction after the first, on top of the WAL, without checkpoint.
  seen = Seen{};
  before = after;
  c.exec("DELETE FROM t WHERE id BETWEEN 100 AND 900");
  after = logical(db);
  check_capture_is_exact(seen, before, after);
  CHECK(cap.commits() >= 2);
}

TEST_CASE("with a cache spill every page still reaches the hook, rewritten frames included") {
  CapturedDb d(500);
  auto [c, db, seen, cap] = std::tie(d.c, d.db, d.seen, d.cap);
  c.exec("PRAGMA cache_size=10");
  d.record();
  auto before = logical(db);
  // ~200 pages of inserts through a 10-page cache, then the early pages again.
  c.exec("BEGIN");
  fill(c, 6000);
  c.exec("UPDATE t SET v = 'again' || id WHERE id % 50 = 0");
  c.exec("INSERT INTO t(v) SELECT 'late' || id FROM t WHERE id <= 300");
  c.exec("COMMIT");
  auto after = logical(db);
  CHECK(seen.wal_bytes_at_hook > 32 + 20 * (24 + 4096));  // frames were spilled before the commit
  CHECK(PageVfsAccess::rewrites(cap) > 0);                // and some were overwritten in place
  check_capture_is_exact(seen, before, after);
  CHECK(c.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("after every commit the files on disk recover to that commit") {
  // What a kill -9 right after the commit would leave: the database file and
  // the WAL as they are on disk, no wal-index. Plain SQLite recovers them by
  // scanning the WAL's checksums, so every frame of the commit must be in the
  // file, header and page, when COMMIT returns. synchronous=NORMAL: no sync
  // flushes anything. Spilled transactions make SQLite rewrite frame headers
  // after the commit frame (walRewriteChecksums); a held-back rewritten header
  // lost the last commit here (docs/vfs.md "Write capture").
  CapturedDb d(200);
  auto [c, db, cap] = std::tie(d.c, d.db, d.cap);
  c.exec("PRAGMA synchronous=NORMAL");
  c.exec("PRAGMA cache_size=10");
  std::mt19937 rng(20261204);
  const std::filesystem::path copy_dir = d.dir / "crash";
  std::filesystem::create_directories(copy_dir);
  const std::string digest_sql =
      "SELECT count(*) || ':' || total(length(v)) || ':' || total(id) || ':' || "
      "ifnull(max(v), '') FROM t";
  for (int round = 0; round < 24; ++round) {
    const int shape = static_cast<int>(rng() % 4);
    c.exec("BEGIN");
    switch (shape) {
      case 0:  // one small row
        c.exec("INSERT INTO t(v) VALUES ('r" + std::to_string(round) + "')");
        break;
      case 1:  // more pages than the cache holds, early pages written again
        fill(c, 1000 + static_cast<int>(rng() % 3000));
        c.exec("UPDATE t SET v = 'again' || id || '-" + std::to_string(round) +
               "' WHERE id % 37 = 0");
        break;
      case 2:  // spill, then shrink
        fill(c, 2000);
        c.exec("DELETE FROM t WHERE id % 3 = " + std::to_string(round % 3));
        break;
      default:  // rewrite every row
        c.exec("UPDATE t SET v = v || 'x' WHERE id % 2 = " + std::to_string(round % 2));
        break;
    }
    c.exec("COMMIT");
    // Copied before this connection does anything else (a read of the WAL
    // through it would write a held-back header first).
    for (const char* suffix : {"", "-wal"}) {
      std::filesystem::copy_file(db.string() + suffix, (copy_dir / "a.db").string() + suffix,
                                 std::filesystem::copy_options::overwrite_existing);
    }
    const std::string want = c.text(digest_sql);
    std::filesystem::remove((copy_dir / "a.db").string() + "-shm");
    {
      Conn plain((copy_dir / "a.db").string());
      INFO("round ", round, " shape ", shape);
      CHECK(plain.text(digest_sql) == want);
      CHECK(plain.text("PRAGMA integrity_check") == "ok");
    }
    if (rng() % 5 == 0) c.exec("PRAGMA wal_checkpoint(PASSIVE)");
  }
  CHECK(PageVfsAccess::rewrites(cap) > 0);  // the case above happened
}

TEST_CASE("a held-back WAL frame header is in the file before anything can look") {
  // The shim holds every new frame's header back to write it with its page in one
  // write (docs/vfs.md "Write capture"). A read, a size query or a sync of the
  // file must still see the header, and header + page must land as written.
  CapturedDb d(10);
  auto [c, db, cap] = std::tie(d.c, d.db, d.cap);
  c.exec("INSERT INTO t(v) VALUES ('x')");
  sqlite3_file* wal = nullptr;
  REQUIRE(sqlite3_file_control(c.get(), "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) ==
          SQLITE_OK);
  REQUIRE(wal != nullptr);
  REQUIRE(wal->pMethods != nullptr);
  sqlite3_int64 size = 0;
  REQUIRE(wal->pMethods->xFileSize(wal, &size) == SQLITE_OK);
  REQUIRE((size - 32) % (24 + 4096) == 0);  // the WAL header, then whole frames
  const sqlite3_int64 end = size;           // the next frame's offset

  // A frame header (page 7, not a commit), past the last frame.
  auto header = [](uint8_t fill) {
    std::vector<uint8_t> h(24, fill);
    h[0] = h[1] = h[2] = 0;
    h[3] = 7;
    h[4] = h[5] = h[6] = h[7] = 0;
    return h;
  };
  auto on_disk = [&](sqlite3_int64 offset, size_t n) {
    std::ifstream f(db.string() + "-wal", std::ios::binary);
    f.seekg(offset);
    std::vector<uint8_t> got(n);
    f.read(reinterpret_cast<char*>(got.data()), static_cast<std::streamsize>(n));
    got.resize(static_cast<size_t>(f.gcount()));
    return got;
  };
  const auto h1 = header(0xa1), h2 = header(0xa2), h3 = header(0xa3), h4 = header(0xa4);

  // Read: sees the header.
  REQUIRE(wal->pMethods->xWrite(wal, h1.data(), 24, end) == SQLITE_OK);
  std::vector<uint8_t> got(24);
  REQUIRE(wal->pMethods->xRead(wal, got.data(), 24, end) == SQLITE_OK);
  CHECK(got == h1);
  // Size: counts it.
  const sqlite3_int64 next = end + 24 + 4096;
  REQUIRE(wal->pMethods->xWrite(wal, h2.data(), 24, next) == SQLITE_OK);
  REQUIRE(wal->pMethods->xFileSize(wal, &size) == SQLITE_OK);
  CHECK(size == next + 24);
  // Sync: it is in the file.
  REQUIRE(wal->pMethods->xWrite(wal, h3.data(), 24, end) == SQLITE_OK);
  REQUIRE(wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL) == SQLITE_OK);
  CHECK(on_disk(end, 24) == h3);
  // Header, then its page: one frame, as written. Not a commit frame, so it may
  // wait for the transaction's next frames; a size query writes it.
  std::vector<uint8_t> page(4096);
  for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<uint8_t>(i * 7);
  const uint64_t writes = cap.file_writes();
  REQUIRE(wal->pMethods->xWrite(wal, h4.data(), 24, end) == SQLITE_OK);
  REQUIRE(wal->pMethods->xWrite(wal, page.data(), 4096, end + 24) == SQLITE_OK);
  REQUIRE(wal->pMethods->xFileSize(wal, &size) == SQLITE_OK);
  std::vector<uint8_t> want = h4;
  want.insert(want.end(), page.begin(), page.end());
  CHECK(on_disk(end, want.size()) == want);
  CHECK(cap.file_writes() == writes + 1);  // header and page in one write
  // Two new frames, then a read of the first one's page: both are in the file
  // first, in one write.
  const auto h5 = header(0xa5), h6 = header(0xa6);
  const sqlite3_int64 f5 = next + 24 + 4096, f6 = f5 + 24 + 4096;
  REQUIRE(wal->pMethods->xWrite(wal, h5.data(), 24, f5) == SQLITE_OK);
  REQUIRE(wal->pMethods->xWrite(wal, page.data(), 4096, f5 + 24) == SQLITE_OK);
  REQUIRE(wal->pMethods->xWrite(wal, h6.data(), 24, f6) == SQLITE_OK);
  REQUIRE(wal->pMethods->xWrite(wal, page.data(), 4096, f6 + 24) == SQLITE_OK);
  std::vector<uint8_t> back(4096);
  REQUIRE(wal->pMethods->xRead(wal, back.data(), 4096, f5 + 24) == SQLITE_OK);
  CHECK(back == page);
  CHECK(on_disk(f5, 24) == h5);
  CHECK(on_disk(f6, 24) == h6);
  CHECK(on_disk(f6 + 24, 4096) == page);
  CHECK(cap.file_writes() == writes + 2);
  // Held back, then the transaction ends (reset, as when SQLite lets go of the
  // write lock): dropped, never written.
  const sqlite3_int64 f7 = f6 + 24 + 4096;
  REQUIRE(wal->pMethods->xWrite(wal, h5.data(), 24, f7) == SQLITE_OK);
  REQUIRE(wal->pMethods->xWrite(wal, page.data(), 4096, f7 + 24) == SQLITE_OK);
  cap.reset();
  REQUIRE(wal->pMethods->xFileSize(wal, &size) == SQLITE_OK);
  CHECK(size == f7);
  CHECK(cap.file_writes() == writes + 2);

  // Cut the made-up frames off again; the database carries on.
  REQUIRE(wal->pMethods->xTruncate(wal, end) == SQLITE_OK);
  cap.reset();
  c.exec("INSERT INTO t(v) VALUES ('y')");
  CHECK(c.integer("SELECT count(*) FROM t") == 12);
  CHECK(c.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("a hook error rolls the transaction back and the connection stays usable") {
  CapturedDb d(100);
  auto [c, db, cap] = std::tie(d.c, d.db, d.cap);
  bool refuse = true;
  int calls = 0;
  cap.set_commit_hook([&](const PageMap&, uint32_t) -> Status {
    ++calls;
    if (refuse) return make_error(Errc::io_error, "log disk full (test)");
    return ok_status();
  });
  auto before = logical(db);

  SUBCASE("small transaction") {
    c.exec("BEGIN; INSERT INTO t(v) VALUES('nope'); UPDATE t SET v='gone' WHERE id=5");
  }
  SUBCASE("spilled transaction") {
    c.exec("PRAGMA cache_size=10; BEGIN");
    fill(c, 3000);
  }
  int rc = c.try_exec("COMMIT");
  CHECK(rc == SQLITE_IOERR_WRITE);
  CHECK(calls == 1);
  auto err = cap.take_hook_error();
  REQUIRE(err.has_value());
  CHECK(err->message.find("log disk full") != std::string::npos);
  CHECK_FALSE(cap.take_hook_error().has_value());  // taken once
  CHECK(sqlite3_get_autocommit(c.get()) == 1);     // SQLite rolled back by itself

  // Nothing is visible, to this connection or a fresh one, and the files hold the old state.
  CHECK(c.integer("SELECT count(*) FROM t") == 100);
  CHECK(c.text("SELECT v FROM t WHERE id=5") != "gone");
  {
    Conn other = Conn::open(db);
    CHECK(other.integer("SELECT count(*) FROM t") == 100);
  }
  CHECK(logical(db) == before);

  // The next transaction on the same connection commits normally.
  refuse = false;
  c.exec("INSERT INTO t(v) VALUES('yes')");
  CHECK(calls == 2);
  CHECK(c.integer("SELECT count(*) FROM t") == 101);
  CHECK(c.text("PRAGMA integrity_check") == "ok");
  c.close();
  Conn reopened = Conn::open(db);
  CHECK(reopened.integer("SELECT count(*) FROM t") == 101);
  CHECK(reopened.integer("SELECT count(*) FROM t WHERE v='nope'") == 0);
}

TEST_CASE("a throwing hook is a refused commit") {
  CapturedDb d(0);
  auto [c, cap] = std::tie(d.c, d.cap);
  c.exec("DROP TABLE t; CREATE TABLE t(x)");
  cap.set_commit_hook([](const PageMap&, uint32_t) -> Status { throw std::runtime_error("boom"); });
  CHECK(c.try_exec("INSERT INTO t VALUES (1)") == SQLITE_IOERR_WRITE);
  auto err = cap.take_hook_error();
  REQUIRE(err.has_value());
  CHECK(err->code == Errc::internal);
  CHECK(err->message.find("boom") != std::string::npos);
  cap.set_commit_hook(nullptr);
  c.exec("INSERT INTO t VALUES (2)");
  CHECK(c.text("SELECT group_concat(x) FROM t") == "2");
}

TEST_CASE("a commit's frames reach the file in one write, before COMMIT returns") {
  // The shim holds a transaction's frames back and writes them with the commit
  // frame (docs/vfs.md "Write capture"): one write per commit, however many
  // pages; the copy of the files taken right after COMMIT recovers to it.
  CapturedDb d(200);
  auto [c, db, cap] = std::tie(d.c, d.db, d.cap);
  c.exec("PRAGMA synchronous=NORMAL");
  c.exec("UPDATE t SET v = 'w' WHERE id = 2");  // the WAL header: written once per WAL start
  for (int rows : {1, 40, 120}) {
    const uint64_t commits = cap.commits(), writes = cap.file_writes();
    c.exec("BEGIN");
    fill(c, rows);
    c.exec("UPDATE t SET v = 'first' WHERE id = 1");  // a page far from the new rows
    c.exec("COMMIT");
    INFO(rows, " rows");
    CHECK(cap.commits() == commits + 1);
    CHECK(cap.file_writes() == writes + 1);
    const std::filesystem::path copy = d.dir / ("copy" + std::to_string(rows) + ".db");
    std::filesystem::copy_file(db, copy);
    std::filesystem::copy_file(db.string() + "-wal", copy.string() + "-wal");
    Conn plain(copy.string());
    CHECK(plain.integer("SELECT count(*) FROM t") == c.integer("SELECT count(*) FROM t"));
    CHECK(plain.text("SELECT v FROM t WHERE id = 1") == "first");
  }
}

TEST_CASE("frames held back from a rolled-back transaction never reach the file") {
  // A transaction that spilled frames and rolled back: what was still held back
  // is dropped when its write lock goes, not written later over the offsets of
  // the next transaction, which may be another connection's (docs/vfs.md).
  CapturedDb d(10);
  auto [c, db, cap] = std::tie(d.c, d.db, d.cap);
  c.exec("PRAGMA cache_size=10");
  const auto wal_size = [&] { return std::filesystem::file_size(db.string() + "-wal"); };
  c.exec("UPDATE t SET v = 'w' WHERE id = 2");  // the WAL header: written once per WAL start
  const auto size0 = wal_size();
  c.exec("BEGIN");
  fill(c, 3000);  // new leaves spill one frame at a time, held back (under 1 MiB)
  const uint64_t writes = cap.file_writes();
  c.exec("ROLLBACK");
  CHECK(wal_size() == size0);  // nothing of it was written ...
  Conn other(db.string());
  other.exec("INSERT INTO t(v) VALUES ('other')");  // ... and another writer takes the offsets
  const auto size1 = wal_size();
  c.exec("SELECT count(*) FROM t");                // touches the -wal file through c
  CHECK(cap.file_writes() == writes);
  CHECK(wal_size() == size1);
  CHECK(c.integer("SELECT count(*) FROM t WHERE v = 'other'") == 1);
  CHECK(c.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("a rolled-back transaction leaves nothing for the next commit") {
  CapturedDb d(200);
  auto [c, db, seen] = std::tie(d.c, d.db, d.seen);
  c.exec("PRAGMA cache_size=10");
  d.record();
  auto before = logical(db);
  c.exec("BEGIN");
  fill(c, 3000);  // spills frames into the WAL
  c.exec("ROLLBACK");
  CHECK(seen.calls == 0);
  c.exec("UPDATE t SET v='one' WHERE id=1");
  check_capture_is_exact(seen, before, logical(db));
  CHECK(seen.pages.size() <= 3);
}

// The captured pages of `sql`, read on a fresh connection.
std::set<uint32_t> pages_read_by(const std::filesystem::path& db, const std::string& sql,
                                 std::string* result = nullptr) {
  ReadCapture rc;
  Conn r = Conn::open(db, nullptr, &rc, true);
  std::string out = r.text(sql);
  if (result != nullptr) *result = out;
  r.close();
  return rc.pages();
}

// A copy of the database holding only `keep` (other pages zeroed), as a plain file.
std::filesystem::path copy_with_only(const std::filesystem::path& db,
                                     const std::set<uint32_t>& keep,
                                     const std::filesystem::path& out) {
  auto pages = logical(db);
  Bytes file;
  for (uint32_t pg = 1; pg <= pages.size(); ++pg) {
    if (keep.count(pg) == 0) std::fill(pages[pg - 1].begin(), pages[pg - 1].end(), 0);
    file.insert(file.end(), pages[pg - 1].begin(), pages[pg - 1].end());
  }
  vfs_testing::write_file_bytes(out, file);
  return out;
}

TEST_CASE("a point query reads a handful of pages, page 1 included, and they suffice") {
  TempDir dir;
  auto db = dir / "a.db";
  {
    Conn c = Conn::open(db);
    setup_wal(c);
    fill(c, 10000);
    c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  std::string value;
  auto pages = pages_read_by(db, "SELECT v FROM t WHERE id = 5000", &value);
  MESSAGE("point query read pages: ", pages.size());
  CHECK(value == std::string(96, '0') + "5000");
  CHECK(pages.count(1) == 1);
  CHECK(pages.size() >= 2);
  CHECK(pages.size() <= 6);

  // Exact: the query answers the same on a copy holding only those pages...
  auto only = copy_with_only(db, pages, dir / "only.db");
  {
    Conn c(page_vfs_uri(only, nullptr, nullptr, true), SQLITE_OPEN_READONLY);
    CHECK(c.text("SELECT v FROM t WHERE id = 5000") == value);
  }
  // ...and not when any one of them is missing.
  for (uint32_t drop : pages) {
    auto fewer = pages;
    fewer.erase(drop);
    auto broken = copy_with_only(db, fewer, dir / ("broken" + std::to_string(drop) + ".db"));
    Conn c(page_vfs_uri(broken, nullptr, nullptr, true), SQLITE_OPEN_READONLY);
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(c.get(), "SELECT v FROM t WHERE id = 5000", -1, &st, nullptr);
    std::string got;
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(st);
      if (rc == SQLITE_ROW) got = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    INFO("without page ", drop);
    CHECK(got != value);
  }
}

TEST_CASE("reads from WAL frames are attributed to the right page numbers") {
  TempDir dir;
  auto db = dir / "a.db";
  Conn w = Conn::open(db);
  setup_wal(w);
  w.exec("PRAGMA wal_autocheckpoint=0");
  fill(w, 2000);
  w.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  // A new table and changes to the old one live only in the WAL now.
  fill(w, 3000, "u");
  w.exec("UPDATE t SET v='moved' WHERE id = 1234");
  auto main_pages = std::filesystem::file_size(db) / 4096;
  int64_t u_root = w.integer("SELECT rootpage FROM sqlite_schema WHERE name='u'");
  REQUIRE(u_root > static_cast<int64_t>(main_pages));  // the table exists only in WAL frames

  std::string count;
  auto scan = pages_read_by(db, "SELECT count(*) FROM u", &count);
  CHECK(count == "3000");
  CHECK(scan.count(1) == 1);
  CHECK(scan.count(static_cast<uint32_t>(u_root)) == 1);
  CHECK(*scan.rbegin() > main_pages);
  // Each page read is sufficient on a plain copy of the logical pages.
  auto only = copy_with_only(db, scan, dir / "only.db");
  {
    Conn c(page_vfs_uri(only, nullptr, nullptr, true), SQLITE_OPEN_READONLY);
    CHECK(c.text("SELECT count(*) FROM u") == "3000");
  }

  std::string moved;
  auto point = pages_read_by(db, "SELECT v FROM t WHERE id = 1234", &moved);
  CHECK(moved == "moved");
  auto only2 = copy_with_only(db, point, dir / "only2.db");
  Conn c(page_vfs_uri(only2, nullptr, nullptr, true), SQLITE_OPEN_READONLY);
  CHECK(c.text("SELECT v FROM t WHERE id = 1234") == "moved");
}

TEST_CASE("keep_bytes keeps the bytes of every page read in full") {
  TempDir dir;
  auto db = dir / "a.db";
  Conn w = Conn::open(db);
  setup_wal(w);
  w.exec("PRAGMA wal_autocheckpoint=0");
  fill(w, 1000);
  w.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  w.exec("UPDATE t SET v='w' WHERE id=999");  // some pages in the WAL

  ReadCapture rc;
  rc.set_keep_bytes(true);
  {
    Conn r = Conn::open(db, nullptr, &rc, true);
    CHECK(r.text("SELECT v FROM t WHERE id=999") == "w");
  }
  auto pages = rc.pages();
  auto bytes = rc.page_bytes();
  auto want = logical(db);
  REQUIRE(!bytes.empty());
  for (uint32_t pg : pages) {
    INFO("page ", pg);
    REQUIRE(bytes.count(pg) == 1);
    CHECK(bytes[pg] == want[pg - 1]);
  }
  rc.clear();
  CHECK(rc.pages().empty());
  CHECK(rc.page_bytes().empty());
}

TEST_CASE("pinned time drives every SQL notion of now") {
  TempDir dir;
  Conn c = Conn::open(dir / "a.db");
  const int64_t ms = 1700000000123;  // 2023-11-14 22:13:20.123 UTC
  {
    PinnedTime pin(ms);
    CHECK(pinned_time_ms() == ms);
    CHECK(c.text("SELECT CURRENT_TIMESTAMP") == "2023-11-14 22:13:20");
    CHECK(c.text("SELECT datetime('now')") == "2023-11-14 22:13:20");
    CHECK(c.text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')") == "2023-11-14 22:13:20.123");
    CHECK(c.text("SELECT CURRENT_DATE") == "2023-11-14");
    CHECK(c.text("SELECT CURRENT_TIME") == "22:13:20");
    CHECK(c.integer("SELECT unixepoch()") == 1700000000);
    CHECK(c.text("SELECT strftime('%s','now')") == "1700000000");
    CHECK(c.text("SELECT printf('%.6f', julianday('now'))") == "2460263.425927");
    {
      PinnedTime inner(0);
      CHECK(c.text("SELECT datetime('now')") == "1970-01-01 00:00:00");
    }
    CHECK(c.text("SELECT datetime('now')") == "2023-11-14 22:13:20");  // restored
  }
  CHECK_FALSE(pinned_time_ms().has_value());
  // Unpinned: the real clock (after 2024 anyway).
  CHECK(c.integer("SELECT unixepoch()") > 1700000000);
}

}  // namespace
}  // namespace swarmlite
