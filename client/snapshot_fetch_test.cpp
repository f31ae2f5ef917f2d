// fetch_snapshot (snapshot_fetch.h) with injected sources: a liar is banned
// and its chunk refetched elsewhere, a source failing mid-way is dropped, a
// run stopped early resumes from its progress file, a run whose head is gone
// everywhere starts over; the result has the source database's pages.
#include "client/snapshot_fetch.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/tools/snapshot_source.h"

namespace swarmlite::client {
namespace {

using namespace std::chrono_literals;

// A source over an in-process SnapshotSource, with ways to misbehave.
class TestSource : public ChunkSource {
 public:
  TestSource(std::string name, SnapshotSource& src) : name_(std::move(name)), src_(src) {}
  std::string name() const override { return name_; }
  Result<SourceManifest> manifest() override {
    if (before_manifest_) before_manifest_();
    SWL_ASSIGN(SnapshotManifest m, src_.newest());
    return SourceManifest{m.head, m.page_size, m.chunk_pages};
  }
  Result<Bytes> chunk(const SnapshotRequest& r) override {
    const int n = calls_.fetch_add(1);
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    if (fail_after_ >= 0 && n >= fail_after_)
      return make_error(Errc::unavailable, "{}: connection refused", name_);
    SWL_ASSIGN(Bytes b, src_.chunk(r.size, r.first_page, r.count));
    if (r.first_page == flip_page_ || n == lie_on_call_) {
      b[1 + kEncodedHeadSize + 12 + 100] ^= 0x40;  // a byte of the chunk's first page
      ++lies_;
    }
    return b;
  }
  int fail_after_ = -1;                 // calls before it answers only errors
  uint32_t flip_page_ = 0;              // the chunk starting here has a flipped byte
  int lie_on_call_ = -1;                // so has the answer to this call (0 = the first)
  std::chrono::milliseconds delay_{0};  // before each chunk (a slower node)
  std::function<void()> before_manifest_;  // a slow manifest (a primary copying, a far peer)
  std::atomic<int> calls_{0}, lies_{0};

 private:
  std::string name_;
  SnapshotSource& src_;
};

struct Fixture {
  testing::TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;
  std::unique_ptr<SnapshotSource> snaps;

  Fixture() {
    auto p = Primary::open(dir / "p.db", keys.secret, testing::fast_primary(1));
    REQUIRE(p.ok());
    primary = std::move(p).value();
    REQUIRE(
        primary->execute({testing::sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")}).ok());
    for (int i = 0; i < 40; ++i)
      REQUIRE(primary->execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(3500))")}).ok());
    SnapshotSourceOptions o;
    o.temp_dir = dir.path();
    o.reaper = false;
    o.reuse = 0ms;  // every manifest asks for the primary's newest head
    o.chunk_pages = 4;
    snaps = std::make_unique<SnapshotSource>(
        BackupSource{
            [this] { return primary->head(); }, [this] { return primary->open_snapshot(); }, {}},
        o);
  }
  SnapshotFetchOptions options(const std::string& out) {
    SnapshotFetchOptions o;
    o.log_id = keys.pub;
    o.out = dir / out;
    o.backoff = 1ms;
    o.retries = 2;
    return o;
  }
  // The normalised logical pages of a database file.
  static std::vector<Bytes> pages(const std::filesystem::path& db) {
    auto raw = read_logical_pages(db);
    REQUIRE_MESSAGE(raw.ok(), raw.error_text());
    std::vector<Bytes> out;
    for (size_t i = 0; i < raw->size(); ++i)
      out.push_back(normalize_page(static_cast<uint32_t>(i + 1), (*raw)[i]));
    return out;
  }
};

}  // namespace

TEST_CASE(
    "fetch_snapshot: three sources, one lies once, one fails mid-way: the copy equals the "
    "database") {
  Fixture f;
  TestSource honest("honest", *f.snaps), liar("liar", *f.snaps), flaky("flaky", *f.snaps);
  liar.lie_on_call_ = 0;  // its first chunk, whichever that is
  flaky.fail_after_ = 2;
  honest.delay_ = liar.delay_ = 5ms;  // so the run lasts long enough for flaky to fail 3 times
  std::vector<std::string> lines;
  std::mutex mu;
  auto o = f.options("copy.db");
  o.log = [&](const std::string& l) {
    std::lock_guard lock(mu);
    lines.push_back(l);
  };
  uint64_t last_done = 0, total = 0;
  o.progress = [&](uint64_t d, uint64_t t) {
    last_done = d;
    total = t;
  };
  auto r = fetch_snapshot({&liar, &flaky, &honest}, o);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(r->head.size == f.primary->size());
  CHECK(r->page_count == f.primary->page_count());
  CHECK(last_done == total);
  CHECK(total == r->page_count);
  CHECK(r->pages_fetched == r->page_count);
  CHECK(Fixture::pages(f.dir / "copy.db") == Fixture::pages(f.dir / "p.db"));
  CHECK(verify_backup_file(f.dir / "copy.db", r->head, f.keys.pub).ok());
  CHECK(std::filesystem::exists(head_json_path(f.dir / "copy.db")));
  CHECK_FALSE(std::filesystem::exists(part_path(f.dir / "copy.db")));
  CHECK_FALSE(std::filesystem::exists(progress_path(f.dir / "copy.db")));
  // The liar was banned at its first chunk (which was fetched again elsewhere),
  // the flaky source dropped after its third failure in a row (if the run
  // lasted that long: it needs 5 calls).
  bool dropped = false;
  for (const auto& l : lines)
    dropped |= l.find("flaky: dropped after 3 failures") != std::string::npos;
  MESSAGE("liar calls: ", liar.calls_.load(), ", flaky calls: ", flaky.calls_.load());
  if (flaky.calls_ >= 5) CHECK(dropped);
  REQUIRE(liar.calls_ > 0);
  CHECK(liar.lies_ == 1);
  REQUIRE(r->banned.size() == 1);
  CHECK(r->banned[0].rfind("liar: banned", 0) == 0);
}

TEST_CASE(
    "fetch_snapshot: a liar alone is banned; the run stops with its progress kept and resumes") {
  Fixture f;
  TestSource liar("liar", *f.snaps);
  liar.flip_page_ = 13;  // pages 13..16
  auto o = f.options("copy.db");
  o.parallel = 1;  // chunks in order: 1..4 (kept in memory: page 1), 5..8, 9..12, then the lie
  auto r = fetch_snapshot({&liar}, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK_MESSAGE(r.error().message.find("liar: banned") != std::string::npos, r.error().message);
  CHECK(liar.lies_ == 1);
  REQUIRE(std::filesystem::exists(progress_path(f.dir / "copy.db")));
  // The partial file is not a database: page 1 is written last.
  auto part = file_io::read_file(part_path(f.dir / "copy.db"), 1u << 30);
  REQUIRE(part.ok());
  REQUIRE(part->size() >= 100);
  CHECK(std::all_of(part->begin(), part->begin() + 100, [](uint8_t b) { return b == 0; }));

  // Again with an honest source: chunks 5..8 and 9..12 are kept.
  TestSource honest("honest", *f.snaps);
  auto again = fetch_snapshot({&honest}, o);
  REQUIRE_MESSAGE(again.ok(), again.error_text());
  CHECK(again->pages_kept == 8);
  CHECK(again->pages_fetched == again->page_count - 8);
  CHECK(Fixture::pages(f.dir / "copy.db") == Fixture::pages(f.dir / "p.db"));
}

TEST_CASE(
    "fetch_snapshot: a slow manifest does not hold the download; a late honest source joins "
    "(issue 14)") {
  Fixture f;
  TestSource fast("fast", *f.snaps), late("late", *f.snaps), slow("slow", *f.snaps);
  fast.delay_ = 25ms;  // ~12 chunks one at a time: the run lasts ~300 ms
  late.before_manifest_ = [] { std::this_thread::sleep_for(100ms); };
  // The slow source answers only once the download is complete (or after 5 s:
  // what a fetch that waits for every manifest gets).
  std::mutex mu;
  std::condition_variable cv;
  bool complete = false, answered_after_complete = false;
  slow.before_manifest_ = [&] {
    std::unique_lock lock(mu);
    answered_after_complete = cv.wait_for(lock, 5s, [&] { return complete; });
  };
  auto o = f.options("copy.db");
  o.parallel = 1;
  o.manifest_grace = 20ms;
  o.progress = [&](uint64_t d, uint64_t t) {
    if (d != t) return;
    {
      std::lock_guard lock(mu);
      complete = true;
    }
    cv.notify_all();
  };
  std::vector<std::string> lines;
  std::mutex lines_mu;
  o.log = [&](const std::string& l) {
    std::lock_guard lock(lines_mu);
    lines.push_back(l);
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto r = fetch_snapshot({&slow, &late, &fast}, o);
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  MESSAGE("fast calls: ", fast.calls_.load(), ", late calls: ", late.calls_.load(),
          ", took ms: ", std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
  // Every chunk was fetched while the slow manifest was still outstanding.
  CHECK(answered_after_complete);
  CHECK(took < 4s);
  CHECK(slow.calls_ == 0);
  // The late source (its manifest 100 ms in, the grace 20 ms) joined and served chunks.
  CHECK(late.calls_ > 0);
  bool joined = false;
  for (const auto& l : lines) joined |= l.find("late: joined the fetch") != std::string::npos;
  CHECK(joined);
  CHECK(r->pages_fetched == r->page_count);
  CHECK(r->banned.empty());
  CHECK(Fixture::pages(f.dir / "copy.db") == Fixture::pages(f.dir / "p.db"));
  CHECK(verify_backup_file(f.dir / "copy.db", r->head, f.keys.pub).ok());
}

TEST_CASE(
    "fetch_snapshot: a late source with a newer head joins if it still holds the chosen one; "
    "the run is not restarted") {
  Fixture f;
  TestSource fast("fast", *f.snaps), newer("newer", *f.snaps);
  fast.delay_ = 25ms;
  const uint64_t chosen = f.primary->size();
  // By the time "newer" answers, the primary has moved on: its manifest names
  // a newer head (reuse 0) while the chosen one is still held (held() == 2).
  std::atomic<bool> moved{false};
  newer.before_manifest_ = [&] {
    std::this_thread::sleep_for(80ms);
    moved = f.primary->execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(9000))")}).ok();
  };
  auto o = f.options("copy.db");
  o.parallel = 1;
  o.manifest_grace = 10ms;
  std::vector<std::string> lines;
  std::mutex lines_mu;
  o.log = [&](const std::string& l) {
    std::lock_guard lock(lines_mu);
    lines.push_back(l);
  };
  auto r = fetch_snapshot({&newer, &fast}, o);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE(moved);
  CHECK(r->head.size == chosen);
  CHECK(r->pages_kept == 0);
  CHECK(newer.calls_ > 1);  // the one-page probe, then chunks
  bool joined = false;
  for (const auto& l : lines) joined |= l.find("newer: joined the fetch") != std::string::npos;
  CHECK(joined);
  CHECK(verify_backup_file(f.dir / "copy.db", r->head, f.keys.pub).ok());
}

TEST_CASE("fetch_snapshot: the earlier run's head gone everywhere: it starts over at the newest") {
  Fixture f;
  TestSource flaky("flaky", *f.snaps);
  flaky.fail_after_ = 3;
  auto o = f.options("copy.db");
  o.parallel = 1;
  o.retries = 0;
  auto r = fetch_snapshot({&flaky}, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  const uint64_t old_size = f.primary->size();
  // The primary moves on and the old snapshot is dropped.
  REQUIRE(f.primary->execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(9000))")}).ok());
  REQUIRE(f.snaps->newest().ok());  // a copy at the new head (reuse is 0)
  REQUIRE(f.snaps->held() == 2);
  SnapshotSourceOptions o2;
  o2.temp_dir = f.dir.path();
  o2.reaper = false;
  o2.chunk_pages = 4;
  SnapshotSource fresh(
      BackupSource{
          [&f] { return f.primary->head(); }, [&f] { return f.primary->open_snapshot(); }, {}},
      o2);
  TestSource honest("honest", fresh);
  std::vector<std::string> lines;
  o.log = [&](const std::string& l) { lines.push_back(l); };
  auto again = fetch_snapshot({&honest}, o);
  REQUIRE_MESSAGE(again.ok(), again.error_text());
  CHECK(again->head.size == old_size + 1);
  CHECK(again->pages_kept == 0);
  bool said = false;
  for (const auto& l : lines)
    said |= l.find("no longer held by any source; starting over") != std::string::npos;
  CHECK(said);
  CHECK(Fixture::pages(f.dir / "copy.db") == Fixture::pages(f.dir / "p.db"));
}

TEST_CASE(
    "fetch_snapshot: a head not signed by the key is refused; an existing output is never "
    "touched") {
  Fixture f;
  TestSource honest("honest", *f.snaps);
  auto o = f.options("copy.db");
  o.log_id = KeyPair::generate().pub;
  auto r = fetch_snapshot({&honest}, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK(r.error().message.find("does not verify") != std::string::npos);
  auto o2 = f.options("p.db");
  auto exists = fetch_snapshot({&honest}, o2);
  REQUIRE_FALSE(exists.ok());
  CHECK(exists.error().code == Errc::invalid_argument);
}

}  // namespace swarmlite::client
