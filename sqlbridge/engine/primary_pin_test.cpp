// Primary::pinned_pages / pinned_leaves (primary.h, docs/light-client.md
// "Page service"): the primary serves pages and leaves from a pin at a signed
// head, as a replica does; they verify against that head and equal the file's
// pages; old sizes are HeadGone; a pin under concurrent writes never serves a
// page that does not verify; the held pin never keeps the WAL from being
// checkpointed and started over; a page changed behind the primary's back is
// corrupt, latched, never served. The primary's change history (pinned_changes,
// docs/light-client.md "Head moves"): change sets from its pins verify and
// name exactly the changed pages; bounded; a gap in its journal clears it.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/pinned_pages.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/state_tree.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

struct PinnedPrimary {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::filesystem::path db = dir / "p.db";
  std::unique_ptr<Primary> primary;

  // background: PrimaryOptions::sign_in_background, with a sign_gap longer than
  // any test, so the signer signs one head and every later one is the pin's.
  explicit PinnedPrimary(uint64_t sign_every = 1,
                         std::chrono::milliseconds pin_interval = std::chrono::milliseconds(0),
                         size_t change_history_pins = 1024, bool background = false) {
    PrimaryOptions o = fast_primary(sign_every);
    o.pin_interval = pin_interval;
    o.change_history_pins = change_history_pins;
    o.sign_in_background = background;
    o.sign_gap = std::chrono::seconds(600);
    auto p = Primary::open(db, keys.secret, std::move(o));
    REQUIRE_MESSAGE(p.ok(), p.error_text());
    primary = std::move(p).value();
  }
  void exec(const std::string& text) {
    auto r = primary->execute({sql(text)});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  std::filesystem::path wal() const { return std::filesystem::path(db.string() + "-wal"); }
};

std::string insert_rows(int rows, int bytes) {
  return "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < " +
         std::to_string(rows) + ") INSERT INTO t(body) SELECT randomblob(" + std::to_string(bytes) +
         ") FROM c";
}

std::vector<uint32_t> all_pgnos(uint32_t from, uint32_t to) {
  std::vector<uint32_t> v(to - from + 1);
  std::iota(v.begin(), v.end(), from);
  return v;
}

std::vector<uint32_t> random_pgnos(std::mt19937_64& rng, uint32_t count, size_t max) {
  const size_t n = 1 + rng() % std::min<size_t>(max, count);
  std::set<uint32_t> set;
  while (set.size() < n) set.insert(1 + static_cast<uint32_t>(rng() % count));
  return {set.begin(), set.end()};
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

// Pages whose leaf differs between two copies of a file, or that one copy lacks.
std::vector<uint32_t> differing_pages(const std::vector<Bytes>& a, const std::vector<Bytes>& b) {
  std::vector<uint32_t> out;
  const size_t pages = std::max(a.size(), b.size());
  for (uint32_t pg = 1; pg <= pages; ++pg) {
    const bool in_both = pg <= a.size() && pg <= b.size();
    if (!in_both || page_leaf_hash(pg, a[pg - 1]) != page_leaf_hash(pg, b[pg - 1]))
      out.push_back(pg);
  }
  return out;
}

uint64_t file_size_or_0(const std::filesystem::path& f) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(f, ec);
  return ec ? 0 : n;
}

}  // namespace

TEST_CASE("primary pinned pages verify against its signed head and equal the file's pages") {
  PinnedPrimary p;
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  std::mt19937_64 rng(15);
  for (int round = 0; round < 8; ++round) {
    p.exec(insert_rows(1 + static_cast<int>(rng() % 40), 100 + static_cast<int>(rng() % 5000)));
    if (round % 3 == 2) p.exec("DELETE FROM t WHERE id % 3 = " + std::to_string(rng() % 3));
    // Idle: the request pins the newest head, which is the primary's.
    const std::optional<Head> head = p.primary->head();
    REQUIRE(head);
    auto file = read_logical_pages(p.db);
    REQUIRE_MESSAGE(file.ok(), file.error_text());
    REQUIRE(file->size() == head->page_count);
    for (uint32_t first = 1; first <= head->page_count; first += kMaxPagesPerRequest) {
      const auto pgnos = all_pgnos(
          first, std::min<uint32_t>(head->page_count, first + kMaxPagesPerRequest - 1));
      auto set = p.primary->pinned_pages(0, pgnos);
      REQUIRE_MESSAGE(set.ok(), set.error_text());
      CHECK(set->head == *head);
      CHECK(set->head.verify(p.keys.pub).ok());
      Status verified = verify_page_set(*set, *head);
      CHECK_MESSAGE(verified.ok(), verified.error_text());
      for (size_t i = 0; i < pgnos.size(); ++i) CHECK(set->pages[i] == file->at(pgnos[i] - 1));
      auto leaves = p.primary->pinned_leaves(head->size, pgnos);
      REQUIRE_MESSAGE(leaves.ok(), leaves.error_text());
      Status leaves_ok = verify_leaf_set(*leaves, *head);
      CHECK_MESSAGE(leaves_ok.ok(), leaves_ok.error_text());
    }
    CHECK(p.primary->pinned_size() == head->size);
  }
  CHECK_FALSE(p.primary->corruption());
}

TEST_CASE("primary pinned pages: an old size is HeadGone, a newer one not pinned yet, bad pages refused") {
  PinnedPrimary p;
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(10, 3000));
  const uint32_t one = 1;
  auto first = p.primary->pinned_pages(0, std::span(&one, 1));
  REQUIRE_MESSAGE(first.ok(), first.error_text());
  const uint64_t old_size = first->head.size;
  p.exec(insert_rows(10, 3000));
  const uint64_t now = p.primary->size();
  uint64_t newest = 0;
  auto gone = p.primary->pinned_pages(old_size, std::span(&one, 1), &newest);
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == Errc::not_found);
  CHECK(gone.error().message ==
        fmt::format("head {} gone, newest is {}", old_size, now));
  CHECK(newest == now);
  uint64_t leaves_newest = 0;
  auto leaves_gone = p.primary->pinned_leaves(old_size, std::span(&one, 1), &leaves_newest);
  REQUIRE_FALSE(leaves_gone.ok());
  CHECK(leaves_newest == now);
  auto ahead = p.primary->pinned_pages(now + 5, std::span(&one, 1), &newest);
  REQUIRE_FALSE(ahead.ok());
  CHECK(ahead.error().code == Errc::not_found);
  CHECK(ahead.error().message == fmt::format("head {} not pinned yet, newest is {}", now + 5, now));
  const std::vector<uint32_t> bad = {3, 2};
  auto refused = p.primary->pinned_pages(0, bad);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == Errc::invalid_argument);
  const uint32_t past = p.primary->page_count() + 1;
  CHECK(p.primary->pinned_leaves(0, std::span(&past, 1)).error().code == Errc::invalid_argument);
}

TEST_CASE("with group signing the primary pins only signed heads") {
  PinnedPrimary p(/*sign_every=*/4);
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(5, 3000));
  p.exec(insert_rows(5, 3000));
  REQUIRE(p.primary->head());
  REQUIRE(p.primary->head()->size < p.primary->size());  // the newest writes are not signed yet
  // No signed head says what the file holds now: nothing to pin.
  const uint32_t one = 1;
  auto none = p.primary->pinned_pages(0, std::span(&one, 1));
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::unavailable);
  CHECK(p.primary->pinned_size() == 0);
  REQUIRE(p.primary->sign_head().ok());
  const Head head = *p.primary->head();
  auto set = p.primary->pinned_pages(0, std::span(&one, 1));
  REQUIRE_MESSAGE(set.ok(), set.error_text());
  CHECK(set->head == head);
  CHECK(verify_page_set(*set, head).ok());
  // A write no head signs yet: the pin stays at the signed head, its state.
  p.exec(insert_rows(5, 3000));
  REQUIRE(p.primary->head()->size < p.primary->size());
  const auto pgnos = all_pgnos(1, head.page_count);
  for (uint32_t first = 0; first < pgnos.size(); first += kMaxPagesPerRequest) {
    const auto part = std::span(pgnos).subspan(
        first, std::min<size_t>(kMaxPagesPerRequest, pgnos.size() - first));
    auto again = p.primary->pinned_pages(0, part);
    REQUIRE_MESSAGE(again.ok(), again.error_text());
    CHECK(again->head == head);
    CHECK(verify_page_set(*again, head).ok());
  }
}

TEST_CASE("with background signing an idle primary pins a head covering the whole log") {
  PinnedPrimary p(1, std::chrono::milliseconds(0), 1024, /*background=*/true);
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  const uint32_t one = 1;
  for (int round = 0; round < 4; ++round) {
    p.exec(insert_rows(5, 3000));
    // The signer waits out its gap: the request signs the newest entries itself.
    auto set = p.primary->pinned_pages(0, std::span(&one, 1));
    REQUIRE_MESSAGE(set.ok(), set.error_text());
    CHECK(set->head.size == p.primary->size());
    CHECK(set->head.state_root == p.primary->state_root());
    CHECK(set->head.verify(p.keys.pub).ok());
    CHECK(verify_page_set(*set, set->head).ok());
  }
}

// Writers and page requests at once: every answer verifies against its own
// signed head, pages held from old pins still read their state, nothing is
// reported corrupt, and pins move forward — with a head per write, and with
// heads signed in the background (the write group then signs for the pin).
TEST_CASE("primary pinned pages under concurrent writes") {
  bool background = false;
  SUBCASE("a head per write") {}
  SUBCASE("heads signed in the background") { background = true; }
  PinnedPrimary p(1, std::chrono::milliseconds(5), 1024, background);
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(50, 2000));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 300; ++i) {
      Result<ExecuteResult> r = rng() % 3 == 0
                                    ? p.primary->execute({sql("UPDATE t SET body = randomblob(" +
                                                              std::to_string(100 + rng() % 3000) +
                                                              ") WHERE id % 5 = " +
                                                              std::to_string(rng() % 5))})
                                    : p.primary->execute({sql(insert_rows(
                                          1 + static_cast<int>(rng() % 20), 500))});
      if (!r.ok()) {
        FAIL_CHECK(r.error().to_string());
        break;
      }
    }
    done = true;
  });
  std::mt19937_64 rng(8);
  std::set<uint64_t> sizes;
  std::vector<std::pair<std::shared_ptr<const PinnedPages>, uint32_t>> held;
  int answers = 0;
  while (!done.load() || answers < 20) {
    const uint32_t count = p.primary->page_count();
    const auto pgnos = random_pgnos(rng, count, 64);
    uint64_t newest = 0;
    auto set = p.primary->pinned_pages(0, pgnos, &newest);
    if (!set.ok()) {
      // Page numbers past the pinned head's page count (the file grew since).
      REQUIRE_MESSAGE(set.error().code == Errc::invalid_argument, set.error().to_string());
      continue;
    }
    ++answers;
    sizes.insert(set->head.size);
    CHECK(set->head.verify(p.keys.pub).ok());
    Status verified = verify_page_set(*set, set->head);
    REQUIRE_MESSAGE(verified.ok(), verified.error_text());
    if (auto src = p.primary->pinned_page_source(); src && rng() % 4 == 0) {
      held.emplace_back(src, src->page_count());
      if (held.size() > 3) held.erase(held.begin());
    }
    for (const auto& [src, pages] : held) {
      auto page = src->read(random_pgnos(rng, pages, 8));
      REQUIRE_MESSAGE(page.ok(), page.error_text());
    }
  }
  writer.join();
  CHECK(sizes.size() > 3);
  CHECK_FALSE(p.primary->corruption());
}

// A held pin keeps its read transaction, which a checkpoint cannot pass: the
// primary lets go of it before the checkpoint (and pins again right after),
// so under steady writes and page requests the WAL keeps starting over.
TEST_CASE("the primary's WAL stays bounded while it serves pages from a pin under writes") {
  PinnedPrimary p(1, std::chrono::milliseconds(200));  // the default: most checkpoints find a pin
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  const uint32_t one = 1;
  REQUIRE(p.primary->pinned_pages(0, std::span(&one, 1)).ok());  // the writer pins from now on
  uint64_t largest = 0;
  for (int i = 0; i < 1500; ++i) {
    p.exec("INSERT INTO t(body) VALUES (randomblob(6000))");  // two overflow pages and more
    if (i % 10 == 0) REQUIRE(p.primary->pinned_pages(0, std::span(&one, 1)).ok());
    largest = std::max(largest, file_size_or_0(p.wal()));
  }
  // 1500 writes of 3+ frames are over 4500 frames (18 MiB); a checkpoint runs
  // at 1000 frames, the WAL starts over at the next write.
  INFO("largest WAL: " << largest << " bytes");
  CHECK(largest < 1400u * (4096 + 24));
  // Asking for the newest size pins it (size 0 may get a pin up to 200 ms old).
  auto set = p.primary->pinned_pages(p.primary->size(), std::span(&one, 1));
  REQUIRE_MESSAGE(set.ok(), set.error_text());
  CHECK(set->head.size == p.primary->size());
}

TEST_CASE("a page changed behind the primary's back is corrupt, latched, never served") {
  PinnedPrimary p;
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(20, 3000));
  // Reopen: closing checkpoints the WAL into the file and removes it, so page
  // 2 is read from the database file.
  p.primary.reset();
  {
    auto reopened = Primary::open(p.db, p.keys.secret, fast_primary());
    REQUIRE_MESSAGE(reopened.ok(), reopened.error_text());
    p.primary = std::move(reopened).value();
  }
  const uint32_t two = 2;
  REQUIRE(p.primary->pinned_pages(0, std::span(&two, 1)).ok());
  flip_byte(p.db, 4096 + 1000);
  auto bad = p.primary->pinned_pages(0, std::span(&two, 1));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::corrupt);
  CHECK(bad.error().message.find("page 2") != std::string::npos);
  REQUIRE(p.primary->corruption());
  // Latched: no pages, no leaves, no writes.
  const uint32_t one = 1;
  CHECK(p.primary->pinned_pages(0, std::span(&one, 1)).error().code == Errc::corrupt);
  CHECK(p.primary->pinned_leaves(0, std::span(&one, 1)).error().code == Errc::corrupt);
  auto write = p.primary->execute({sql("INSERT INTO t(body) VALUES (1)")});
  REQUIRE_FALSE(write.ok());
  CHECK(write.error().code == Errc::corrupt);
  flip_byte(p.db, 4096 + 1000);  // undo, so the fixture closes a consistent file
}

TEST_CASE("primary change history: from every pinned head in it, exactly the changed pages") {
  // A long pin_interval: the writer never re-pins by itself, only the
  // requests below do (asking for the newest size pins it).
  PinnedPrimary p(1, std::chrono::hours(1), /*change_history_pins=*/4);
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(200, 300));
  std::vector<std::pair<Head, std::vector<Bytes>>> pins;  // each pin and the file then
  auto pin = [&] {
    auto leaves = p.primary->pinned_leaves(p.primary->size(), std::vector<uint32_t>{1});
    REQUIRE_MESSAGE(leaves.ok(), leaves.error_text());
    REQUIRE(leaves->head == *p.primary->head());
    auto file = read_logical_pages(p.db);
    REQUIRE(file.ok());
    pins.emplace_back(leaves->head, std::move(file).value());
  };
  pin();
  CHECK(p.primary->change_history_sizes() == std::vector<uint64_t>{pins[0].first.size});
  // Between pins one or more writes: a page, growth, scattered, freed pages.
  for (const std::vector<std::string>& step : std::vector<std::vector<std::string>>{
           {"UPDATE t SET body = randomblob(300) WHERE id = 7"},
           {insert_rows(20, 300), insert_rows(20, 300)},
           {"UPDATE t SET body = zeroblob(300) WHERE id % 50 = 0"},
           {"DELETE FROM t WHERE id BETWEEN 100 AND 140"},
           {"UPDATE t SET body = randomblob(300) WHERE id = 7"}}) {
    for (const std::string& w : step) p.exec(w);
    pin();
  }
  const auto& [newest, newest_file] = pins.back();
  // 4 records are kept: the changes from pins 1..4 on to pin 5; pin 0 fell out.
  std::vector<uint64_t> kept;
  for (size_t i = 1; i < pins.size(); ++i) kept.push_back(pins[i].first.size);
  CHECK(p.primary->change_history_sizes() == kept);
  for (size_t i = 0; i < pins.size(); ++i) {
    const auto& [from, from_file] = pins[i];
    INFO("changes since pin " << i << " at size " << from.size);
    // Asked for the pin's size explicitly, as a client that saw it does.
    auto set = p.primary->pinned_changes(from.size, newest.size);
    if (i == 0) {
      REQUIRE_FALSE(set.ok());
      CHECK(set.error().code == Errc::refused);
      continue;
    }
    REQUIRE_MESSAGE(set.ok(), set.error_text());
    CHECK(set->to == newest);
    const Status verified = verify_change_set(*set, from, newest);
    REQUIRE_MESSAGE(verified.ok(), verified.error_text());
    CHECK(changed_pages(*set, from.page_count) == differing_pages(from_file, newest_file));
  }
  // The pin before the newest, asked as `to`, is gone (HeadGone with the newest).
  uint64_t now_pinned = 0;
  auto old_to = p.primary->pinned_changes(pins[2].first.size, pins[4].first.size, &now_pinned);
  REQUIRE_FALSE(old_to.ok());
  CHECK(old_to.error().code == Errc::not_found);
  CHECK(now_pinned == newest.size);
}

// More writes between two pins than the state tree's journal holds
// (StateTree::kJournalMaxApplies): no change set reaches across, so the
// history starts over at the new pin, and grows again from there.
TEST_CASE("a gap in the primary's change journal clears its change history") {
  // Heads are signed only by sign_head(): the writer pins nothing meanwhile
  // (a pin needs a signed head covering the log), whatever its checkpoints.
  PinnedPrimary p(/*sign_every=*/1'000'000, std::chrono::hours(1));
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  // Asking for the newest size pins it (pin_interval is long).
  auto pin = [&]() -> Head {
    auto signed_head = p.primary->sign_head();
    REQUIRE_MESSAGE(signed_head.ok(), signed_head.error_text());
    auto leaves = p.primary->pinned_leaves(signed_head->size, std::vector<uint32_t>{1});
    REQUIRE_MESSAGE(leaves.ok(), leaves.error_text());
    REQUIRE(leaves->head == *signed_head);
    return leaves->head;
  };
  const Head a = pin();
  p.exec("INSERT INTO t(body) VALUES (randomblob(100))");
  const Head b = pin();
  CHECK(p.primary->change_history_sizes() == std::vector<uint64_t>{a.size, b.size});
  REQUIRE(p.primary->pinned_changes(a.size, 0).ok());
  for (size_t i = 0; i <= StateTree::kJournalMaxApplies; ++i)
    p.exec("INSERT INTO t(body) VALUES (randomblob(100))");
  const Head c = pin();
  CHECK(p.primary->change_history_sizes() == std::vector<uint64_t>{c.size});
  for (const Head& old : {a, b}) {
    auto across = p.primary->pinned_changes(old.size, 0);
    REQUIRE_FALSE(across.ok());
    CHECK(across.error().code == Errc::refused);
  }
  p.exec("UPDATE t SET body = zeroblob(100) WHERE id = 3");
  const Head d = pin();
  CHECK(p.primary->change_history_sizes() == std::vector<uint64_t>{c.size, d.size});
  auto set = p.primary->pinned_changes(c.size, 0);
  REQUIRE_MESSAGE(set.ok(), set.error_text());
  const Status s = verify_change_set(*set, c, d);
  CHECK_MESSAGE(s.ok(), s.error_text());
  CHECK_FALSE(changed_pages(*set, c.page_count).empty());
}
