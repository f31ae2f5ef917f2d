// SnapshotSource (snapshot_source.h): snapshots held, reused, gone and expired
// (an injected clock), and chunks of a held snapshot that still verify while
// the primary keeps writing.
#include "sqlbridge/tools/snapshot_source.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "sqlbridge/engine/engine_test_util.h"

using namespace swarmlite;
using namespace std::chrono_literals;

namespace {

BackupSource primary_source(Primary& p) {
  BackupSource s;
  s.head = [&p] { return p.head(); };
  s.open_snapshot = [&p] { return p.open_snapshot(); };
  return s;
}

// Every chunk of the snapshot at `head`, verified; returns the pages fetched.
uint32_t fetch_all(SnapshotSource& src, const Head& head, uint32_t chunk_pages) {
  uint32_t pages = 0;
  for (uint32_t first = 1; first <= head.page_count; first += chunk_pages) {
    uint32_t count = std::min(chunk_pages, head.page_count - first + 1);
    auto bytes = src.chunk(head.size, first, count);
    REQUIRE_MESSAGE(bytes.ok(), bytes.error_text());
    auto c = decode_snapshot_chunk(*bytes);
    REQUIRE_MESSAGE(c.ok(), c.error_text());
    auto s = verify_snapshot_chunk(*c, head);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    pages += c->count;
  }
  return pages;
}

}  // namespace

TEST_CASE("SnapshotSource: held, reused, gone, expired; chunks verify while the primary writes") {
  testing::TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto primary = Primary::open(dir / "p.db", keys.secret, testing::fast_primary(1));
  REQUIRE(primary.ok());
  Primary& p = **primary;
  REQUIRE(p.execute({testing::sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")}).ok());
  for (int i = 0; i < 20; ++i)
    REQUIRE(p.execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(3000))")}).ok());

  std::atomic<int64_t> now_ms{1000000};
  SnapshotSourceOptions o;
  o.temp_dir = dir.path();
  o.reaper = false;
  o.chunk_pages = 4;
  o.clock = [&now_ms] {
    return std::chrono::steady_clock::time_point(std::chrono::milliseconds(now_ms.load()));
  };
  SnapshotSource src(primary_source(p), o);
  auto advance = [&now_ms](std::chrono::milliseconds d) { now_ms += d.count(); };

  CHECK(src.newest_held() == 0);
  auto none = src.chunk(5, 1, 1);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::not_found);
  CHECK(none.error().message.find("no snapshot is held") != std::string::npos);

  auto m1 = src.newest();
  REQUIRE_MESSAGE(m1.ok(), m1.error_text());
  CHECK(m1->head.size == p.size());
  CHECK(m1->head.page_count == p.page_count());
  CHECK(m1->page_size == 4096);
  CHECK(m1->chunk_pages == 4);
  CHECK(m1->head.verify(keys.pub).ok());
  CHECK(src.copies_made() == 1);
  const Head h1 = m1->head;

  // The primary keeps writing (another thread) while every chunk is served:
  // they verify against the held head, not the moving one.
  std::atomic<bool> writer_done{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; i < 20; ++i)
      if (p.execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(2000))")}).ok()) ++written;
    writer_done = true;
  });
  int rounds = 0;
  for (; rounds < 3 || !writer_done; ++rounds) CHECK(fetch_all(src, h1, 4) == h1.page_count);
  writer.join();
  MESSAGE("rounds of chunks served while the primary wrote: ", rounds);
  REQUIRE(written == 20);
  REQUIRE(p.size() == h1.size + 20);
  CHECK(fetch_all(src, h1, 4) == h1.page_count);

  // Bad ranges say what and why.
  auto past = src.chunk(h1.size, h1.page_count, 2);
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().code == Errc::invalid_argument);
  CHECK(past.error().message.find("not inside") != std::string::npos);
  auto big = src.chunk(h1.size, 1, 2049);
  REQUIRE_FALSE(big.ok());
  CHECK(big.error().code == Errc::invalid_argument);

  // Within `reuse` the held snapshot serves the newest request although the
  // primary moved on: no second copy.
  advance(10s);
  auto m2 = src.newest();
  REQUIRE(m2.ok());
  CHECK(m2->head == h1);
  CHECK(src.copies_made() == 1);

  // Past `reuse`: a copy at the new head; both held.
  advance(25s);
  auto m3 = src.newest();
  REQUIRE(m3.ok());
  CHECK(m3->head.size == p.size());
  CHECK(src.copies_made() == 2);
  CHECK(src.held() == 2);
  CHECK(src.newest_held() == m3->head.size);
  CHECK(fetch_all(src, h1, 4) == h1.page_count);  // the old one still serves

  // The head did not change: asking again past `reuse` copies nothing.
  advance(31s);
  auto m4 = src.newest();
  REQUIRE(m4.ok());
  CHECK(m4->head == m3->head);
  CHECK(src.copies_made() == 2);

  // A third head evicts the least recently used: h1 (used at +66 s) before
  // m3's (+67 s), both well within `idle`.
  CHECK(fetch_all(src, h1, 4) == h1.page_count);
  REQUIRE(p.execute({testing::sql("INSERT INTO t(b) VALUES (1)")}).ok());
  advance(1s);
  REQUIRE(src.chunk(m3->head.size, 1, 1).ok());
  advance(31s);
  auto m5 = src.newest();
  REQUIRE(m5.ok());
  CHECK(m5->head.size == p.size());
  CHECK(src.copies_made() == 3);
  CHECK(src.held() == 2);
  auto gone = src.chunk(h1.size, 1, 1);
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == Errc::not_found);
  CHECK(gone.error().message ==
        fmt::format("gone: head {} is not held; newest held is {}", h1.size, m5->head.size));
  REQUIRE(src.chunk(m3->head.size, 1, 1).ok());  // m3's is still held

  // Idle: dropped 60 s after its last request, even if nobody asks again.
  advance(20s);
  src.expire();
  CHECK(src.held() == 2);
  REQUIRE(src.chunk(m5->head.size, 1, 1).ok());
  advance(40s);
  src.expire();
  CHECK(src.held() == 1);  // m3's went idle; m5's was used 40 s ago
  CHECK(src.newest_held() == m5->head.size);
  REQUIRE(src.chunk(m5->head.size, 1, 1).ok());

  // max_age: a snapshot in constant use still goes after 10 minutes.
  for (int i = 0; i < 11; ++i) {
    advance(55s);
    if (src.held() == 0) break;
    (void)src.chunk(m5->head.size, 1, 1);
  }
  src.expire();
  CHECK(src.held() == 0);
  // Nothing left in the directory but the node's own files.
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    CHECK_MESSAGE(e.path().filename().string().rfind(".swarmlite-backup", 0) != 0, e.path());
}
