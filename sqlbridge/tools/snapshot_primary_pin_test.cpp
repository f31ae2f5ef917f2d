// SnapshotSource serving from the primary's pin (Primary::pinned_page_source,
// docs/formats/snapshot.md "Served from the pin"), as net/http_backends.cpp's
// primary backend offers it: no copy first, chunks verify against the signed
// head and equal a copy's while the primary keeps writing; the primary's -wal
// stays within SnapshotSource's bound while a fetcher holds the pin (the pin
// is copied and let go), and --retain's floor is the held head.
#include <doctest/doctest.h>

#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/tools/snapshot_source.h"

using namespace swarmlite;
using namespace swarmlite::testing;
using namespace std::chrono_literals;

namespace {

struct PinningPrimary {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;

  PinningPrimary() {
    PrimaryOptions o = fast_primary();
    o.pin_interval = 0ms;
    auto p = Primary::open(dir / "p.db", keys.secret, o);
    REQUIRE_MESSAGE(p.ok(), p.error_text());
    primary = std::move(p).value();
    exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  }
  void exec(const std::string& text) {
    auto r = primary->execute({sql(text)});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  void insert(int rows, int bytes) {
    exec("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < " +
         std::to_string(rows) + ") INSERT INTO t(body) SELECT randomblob(" + std::to_string(bytes) +
         ") FROM c");
  }
  std::filesystem::path wal() const { return dir / "p.db-wal"; }
  BackupSource backup_source() {
    BackupSource s;
    Primary* p = primary.get();
    s.head = [p] { return p->head(); };
    s.open_snapshot = [p] { return p->open_snapshot(); };
    return s;
  }
  // What the primary's HTTP backend offers (net/http_backends.cpp).
  PinnedHeadProvider pinned(std::vector<std::weak_ptr<const PinnedPages>>* handed = nullptr) {
    Primary* p = primary.get();
    return [p, handed, wal = wal()]() -> Result<PinnedHead> {
      const uint32_t first = 1;
      SWL_ASSIGN(PageSet reply, p->pinned_pages(0, std::span(&first, 1)));
      PinnedHead pin{reply.head, p->pinned_page_source(), wal};
      if (!pin.pages || pin.pages->tree().root() != pin.head.state_root)
        return make_error(Errc::unavailable, "re-pinned meanwhile");
      if (handed) handed->push_back(pin.pages);
      return pin;
    };
  }
};

SnapshotSourceOptions test_options(const std::filesystem::path& dir) {
  SnapshotSourceOptions o;
  o.temp_dir = dir;
  o.reaper = false;
  o.chunk_pages = 8;
  return o;
}

uint64_t bytes_of(const std::filesystem::path& p) {
  std::error_code ec;
  auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}

// Every chunk at `head`, verified, concatenated, without page 1's 100-byte
// header (normalised by the state tree, snapshot_chunk.h).
Bytes fetch_all(SnapshotSource& src, const Head& head, uint32_t chunk_pages) {
  Bytes all;
  for (uint32_t first = 1; first <= head.page_count; first += chunk_pages) {
    const uint32_t count = std::min(chunk_pages, head.page_count - first + 1);
    auto bytes = src.chunk(head.size, first, count);
    REQUIRE_MESSAGE(bytes.ok(), bytes.error_text());
    auto c = decode_snapshot_chunk(*bytes);
    REQUIRE_MESSAGE(c.ok(), c.error_text());
    Status s = verify_snapshot_chunk(*c, head);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    all.insert(all.end(), c->pages.begin(), c->pages.end());
  }
  all.erase(all.begin(), all.begin() + 100);
  return all;
}

}  // namespace

TEST_CASE("the primary's snapshot from its pin: no copy, chunks equal a copy's while it writes") {
  PinningPrimary p;
  p.insert(200, 3000);
  SnapshotSource pinned(p.backup_source(), test_options(p.dir.path()), p.pinned());
  auto m = pinned.newest();
  REQUIRE_MESSAGE(m.ok(), m.error_text());
  CHECK(pinned.pins_held() == 1);
  CHECK(pinned.copies_made() == 0);
  CHECK(m->head.size == p.primary->size());
  CHECK(m->head.verify(p.keys.pub).ok());
  CHECK(pinned.oldest_held() == m->head.size);  // --retain's floor

  SnapshotSource copied(p.backup_source(), test_options(p.dir.path()));
  auto mc = copied.newest();
  REQUIRE_MESSAGE(mc.ok(), mc.error_text());
  REQUIRE(copied.copies_made() == 1);
  REQUIRE(mc->head.size == m->head.size);
  const Bytes from_copy = fetch_all(copied, mc->head, 8);

  for (int round = 0; round < 3; ++round) {
    p.insert(50, 2000);
    p.exec("UPDATE t SET body = randomblob(100) WHERE id % 7 = " + std::to_string(round));
    CHECK(fetch_all(pinned, m->head, 8) == from_copy);
  }
  CHECK(p.primary->pinned_size() > m->head.size);  // the primary pinned on meanwhile
  CHECK(pinned.oldest_held() == m->head.size);
  CHECK(pinned.copies_made() == 0);
}

TEST_CASE("the primary's snapshot from its pin: the -wal stays within the bound, the pin is copied") {
  PinningPrimary p;
  p.insert(300, 3000);
  std::vector<std::weak_ptr<const PinnedPages>> handed;
  SnapshotSourceOptions o = test_options(p.dir.path());
  o.pin_max_wal_bytes = 512 << 10;
  o.pin_drop_wal_bytes = 64 << 20;
  SnapshotSource src(p.backup_source(), o, p.pinned(&handed));
  auto m = src.newest();
  REQUIRE_MESSAGE(m.ok(), m.error_text());
  REQUIRE(src.pins_held() == 1);
  const Bytes at_pin = fetch_all(src, m->head, 8);
  const uint64_t wal_at_pin = bytes_of(p.wal());
  uint64_t wal_max = 0;
  for (int round = 0; round < 40; ++round) {
    p.insert(40, 3000);
    src.bound_pins();  // the reaper's, once a second
    wal_max = std::max(wal_max, bytes_of(p.wal()));
    CHECK(fetch_all(src, m->head, 8) == at_pin);
  }
  CHECK(src.pins_copied() == 1);
  CHECK(src.pins_dropped() == 0);
  CHECK(src.copies_made() == 0);
  // Bounded by the larger of the pin's bound and the primary's own checkpoint
  // threshold (1,000 frames: it checkpoints there, not at every pin as a
  // replica does), plus one round's writes (the check's granularity).
  const uint64_t checkpoint_at = 1000 * (4096 + 24);
  CHECK(wal_max <= std::max<uint64_t>(wal_at_pin + o.pin_max_wal_bytes, checkpoint_at) + (1 << 20));
  REQUIRE(!handed.empty());
  CHECK(handed.front().expired());
  // Once let go, the primary's own pin no longer holds the WAL back either.
  // 30 rounds are about 14 MiB of frames; the WAL starts over past 1,000 (4 MiB).
  for (int round = 0; round < 30; ++round) p.insert(40, 3000);
  CHECK(bytes_of(p.wal()) <= wal_max + (6 << 20));
}
