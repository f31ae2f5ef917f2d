// SnapshotSource serving from a replica's pin, no copy first (snapshot_source.h,
// docs/formats/snapshot.md "Served from the pin"): chunks from the pin verify
// and equal a copy's; writes go on while it is held and the -wal stays within
// the bound, the pin copied and let go (or the snapshot dropped past the hard
// bound); a page changed in the files is never served, and that is latched.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>

#include "sqlbridge/engine/engine_test_fixture.h"
#include "sqlbridge/tools/snapshot_source.h"

using namespace swarmlite;
using namespace swarmlite::testing;
using namespace std::chrono_literals;

namespace {

// A replica that pins every signed head it reaches (pin_interval 0).
struct PinnedReplica : PrimaryAndReplica {
  PinnedReplica() {
    replica.reset();
    ReplicaOptions o = fast_replica();
    o.pin_interval = std::chrono::milliseconds(0);
    auto r = Replica::open(dir / "r.db", dir / "r.log", keys.pub, o);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    replica = std::move(r).value();
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
  void sync() {
    Status s = sync_replica(*primary, *replica);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
  }
  std::filesystem::path db() const { return dir / "r.db"; }
  std::filesystem::path wal() const { return dir / "r.db-wal"; }

  BackupSource backup_source() {
    BackupSource s;
    Replica* r = replica.get();
    s.head = [r]() -> std::optional<Head> {
      std::lock_guard lock(r->log_mutex());
      return r->log().head();
    };
    s.open_snapshot = [r] { return r->open_snapshot(); };
    return s;
  }
  // What the replica's HTTP backend offers (net/http_backends.cpp), and every
  // PinnedPages it handed out (to see them let go).
  PinnedHeadProvider pinned(std::vector<std::weak_ptr<const PinnedPages>>* handed = nullptr) {
    Replica* r = replica.get();
    return [r, handed, wal = wal()]() -> Result<PinnedHead> {
      const uint32_t first = 1;
      SWL_ASSIGN(PageSet reply, r->pinned_pages(0, std::span(&first, 1)));
      PinnedHead pin{reply.head, r->pinned_page_source(), wal};
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

// Every chunk of the snapshot at `head`, verified, concatenated, without the
// 100 bytes of page 1's header: the fields the state tree normalises (the
// change counter, ...; snapshot_chunk.h) differ between the live file and a
// copy, and a fetcher rewrites them.
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

void flip_byte(const std::filesystem::path& file, int64_t offset) {
  int fd = ::open(file.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  uint8_t b = 0;
  REQUIRE(::pread(fd, &b, 1, offset) == 1);
  b ^= 0xff;
  REQUIRE(::pwrite(fd, &b, 1, offset) == 1);
  ::close(fd);
}

}  // namespace

TEST_CASE("snapshot from the pin: no copy, chunks verify and equal a copy's, while writes go on") {
  PinnedReplica p;
  p.insert(200, 3000);
  p.sync();
  SnapshotSource pinned(p.backup_source(), test_options(p.dir.path()), p.pinned());
  auto m = pinned.newest();
  REQUIRE_MESSAGE(m.ok(), m.error_text());
  CHECK(pinned.pins_held() == 1);
  CHECK(pinned.copies_made() == 0);
  CHECK(m->head.size == p.replica->size());
  CHECK(m->head.verify(p.keys.pub).ok());
  CHECK(pinned.oldest_held() == m->head.size);

  // The same head from a copy (no pin offered): the same bytes.
  SnapshotSource copied(p.backup_source(), test_options(p.dir.path()));
  auto mc = copied.newest();
  REQUIRE_MESSAGE(mc.ok(), mc.error_text());
  REQUIRE(copied.copies_made() == 1);
  REQUIRE(mc->head.size == m->head.size);
  const Bytes from_copy = fetch_all(copied, mc->head, 8);

  // The replica applies (and re-pins) while the pin is served: its chunks
  // still are the pinned head's.
  for (int round = 0; round < 3; ++round) {
    p.insert(50, 2000);
    p.exec("UPDATE t SET body = randomblob(100) WHERE id % 7 = " + std::to_string(round));
    p.sync();
    CHECK(fetch_all(pinned, m->head, 8) == from_copy);
  }
  CHECK(p.replica->pinned_size() > m->head.size);
  // A request within `reuse` gets the held head again (a swarm of fetchers
  // shares one head), still without a copy.
  auto again = pinned.newest();
  REQUIRE(again.ok());
  CHECK(again->head.size == m->head.size);
  CHECK(pinned.copies_made() == 0);
}

TEST_CASE("snapshot from the pin: the -wal stays within the bound, the pin is copied and let go") {
  PinnedReplica p;
  p.insert(300, 3000);
  p.sync();
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

  // Writes go on (about 6 MiB of -wal if nothing let the pin go), a fetch of
  // the held head runs between them, and the reaper's bound_pins runs as it
  // would once a second.
  uint64_t wal_max = 0;
  for (int round = 0; round < 40; ++round) {
    p.insert(40, 3000);
    p.sync();
    src.bound_pins();
    wal_max = std::max(wal_max, bytes_of(p.wal()));
    CHECK(fetch_all(src, m->head, 8) == at_pin);
  }
  CHECK(src.pins_copied() == 1);
  CHECK(src.pins_dropped() == 0);
  CHECK(src.copies_made() == 0);  // copied from the pin, no SQLite backup
  // Bounded: growth up to the bound plus one round's writes (the check's
  // granularity), then the pin is let go and the checkpoint catches up.
  CHECK(wal_max <= wal_at_pin + o.pin_max_wal_bytes + (1 << 20));
  REQUIRE(!handed.empty());
  CHECK(handed.front().expired());  // the source holds the copy now, not the pin
  CHECK(fetch_all(src, m->head, 8) == at_pin);
}

TEST_CASE("snapshot from the pin: copied at pin_max_age, dropped past pin_drop_wal_bytes") {
  PinnedReplica p;
  p.insert(200, 3000);
  p.sync();
  std::atomic<int64_t> now_ms{1000000};
  SnapshotSourceOptions o = test_options(p.dir.path());
  o.clock = [&now_ms] {
    return std::chrono::steady_clock::time_point(std::chrono::milliseconds(now_ms.load()));
  };
  o.pin_max_age = 5s;

  SUBCASE("age: copied, then served from the copy") {
    SnapshotSource src(p.backup_source(), o, p.pinned());
    auto m = src.newest();
    REQUIRE(m.ok());
    const Bytes at_pin = fetch_all(src, m->head, 8);
    src.bound_pins();
    CHECK(src.pins_copied() == 0);
    now_ms += 5000;
    src.bound_pins();
    CHECK(src.pins_copied() == 1);
    p.insert(100, 3000);
    p.sync();
    CHECK(fetch_all(src, m->head, 8) == at_pin);
  }
  SUBCASE("-wal past the hard bound: gone, the newest is pinned on the next request") {
    o.pin_max_wal_bytes = 256 << 10;
    o.pin_drop_wal_bytes = 256 << 10;  // no room to copy: dropped at once
    SnapshotSource src(p.backup_source(), o, p.pinned());
    auto m = src.newest();
    REQUIRE(m.ok());
    // More than the -wal held before the pin (about 200 rows' worth): SQLite
    // reuses that first, and only growth past it counts.
    p.insert(600, 3000);
    p.sync();
    src.bound_pins();
    CHECK(src.pins_dropped() == 1);
    CHECK(src.held() == 0);
    auto gone = src.chunk(m->head.size, 1, 1);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == Errc::not_found);
    auto next = src.newest();
    REQUIRE_MESSAGE(next.ok(), next.error_text());
    CHECK(next->head.size > m->head.size);
  }
}

TEST_CASE("snapshot from the pin: a page changed in the files is never served, latched") {
  PinnedReplica p;
  p.insert(200, 3000);
  p.sync();
  SnapshotSource src(p.backup_source(), test_options(p.dir.path()), p.pinned());
  auto m = src.newest();
  REQUIRE_MESSAGE(m.ok(), m.error_text());
  auto pages = p.replica->pinned_page_source();
  REQUIRE(pages);
  REQUIRE(pages->wal_frames() == 0);  // re-pinned after a full checkpoint: the file alone
  CHECK(src.chunk(m->head.size, 9, 8).ok());

  flip_byte(p.db(), 4096 * 11 + 500);  // page 12
  auto bad = src.chunk(m->head.size, 9, 8);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::corrupt);
  CHECK_MESSAGE(bad.error().message.find("page 12") != std::string::npos, bad.error().message);
  REQUIRE(src.corruption());
  // Latched: no other chunk and no new snapshot either.
  auto other = src.chunk(m->head.size, 1, 8);
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().code == Errc::corrupt);
  auto again = src.newest();
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message.find("not serving snapshots") != std::string::npos);
  flip_byte(p.db(), 4096 * 11 + 500);  // back, so the fixture closes a sound database
}
