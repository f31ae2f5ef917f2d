// PinnedPages (pinned_pages.h) and Replica::pinned_pages: pages of a pinned
// head read from the files equal that state while the replica keeps applying
// (across pins, checkpoints and WAL restarts); a page changed behind the
// replica's back is corrupt, never served; the multiproof verifies.
#include "sqlbridge/engine/pinned_pages.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include "sqlbridge/engine/engine_test_fixture.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/engine/vfs_test_util.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

// A replica that pins every signed head it reaches (pin_interval 0).
struct PinningPair : PrimaryAndReplica {
  PinningPair() {
    replica.reset();
    ReplicaOptions o = fast_replica();
    o.pin_interval = std::chrono::milliseconds(0);
    auto r = Replica::open(dir / "r.db", dir / "r.log", keys.pub, o);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    replica = std::move(r).value();
  }
  void exec(const std::string& text) {
    auto r = primary->execute({sql(text)});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  void sync() {
    Status s = sync_replica(*primary, *replica);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    REQUIRE(replica->pinned_size() == replica->size());
  }
  std::filesystem::path db() const { return dir / "r.db"; }
};

std::string insert_rows(int rows, int bytes) {
  return "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < " +
         std::to_string(rows) + ") INSERT INTO t(body) SELECT randomblob(" + std::to_string(bytes) +
         ") FROM c";
}

// A pin and the state it has to serve, copied (read_logical_pages) when it was taken.
struct Held {
  std::shared_ptr<const PinnedPages> pages;
  std::vector<Bytes> copy;
  uint64_t size = 0;
};

Held take_pin(PinningPair& p) {
  Held h;
  h.pages = p.replica->pinned_page_source();
  REQUIRE(h.pages);
  auto copy = read_logical_pages(p.db());
  REQUIRE_MESSAGE(copy.ok(), copy.error_text());
  h.copy = std::move(copy).value();
  REQUIRE(h.copy.size() == h.pages->page_count());
  h.size = p.replica->pinned_size();
  return h;
}

std::vector<uint32_t> random_pgnos(std::mt19937_64& rng, uint32_t count, size_t max) {
  const size_t n = 1 + rng() % std::min<size_t>(max, count);
  std::set<uint32_t> set;
  while (set.size() < n) set.insert(1 + static_cast<uint32_t>(rng() % count));
  return {set.begin(), set.end()};
}

void check_held(const Held& h, std::mt19937_64& rng) {
  const std::vector<uint32_t> pgnos = random_pgnos(rng, h.pages->page_count(), 64);
  auto got = h.pages->read(pgnos);
  REQUIRE_MESSAGE(got.ok(), got.error_text());
  for (size_t i = 0; i < pgnos.size(); ++i) {
    INFO("page " << pgnos[i] << " of the pin at size " << h.size);
    CHECK(got->at(i) == h.copy.at(pgnos[i] - 1));
  }
}

void check_reply(const PageSet& r, std::span<const uint32_t> pgnos) {
  REQUIRE(r.pages.size() == pgnos.size());
  CHECK(std::equal(r.pgnos.begin(), r.pgnos.end(), pgnos.begin(), pgnos.end()));
  Status verified = verify_page_set(r, r.head);
  CHECK_MESSAGE(verified.ok(), verified.error_text());
  std::vector<uint64_t> indices;
  std::vector<Hash32> leaves;
  for (size_t i = 0; i < pgnos.size(); ++i) {
    indices.push_back(pgnos[i] - 1);
    leaves.push_back(page_leaf_hash(pgnos[i], r.pages[i]));
  }
  CHECK(r.proof.indices == indices);
  CHECK(r.proof.size == r.head.page_count);
  Status s =
      verify_multiproof(indices, leaves, r.head.page_count, r.proof.hashes, r.head.state_root);
  CHECK_MESSAGE(s.ok(), s.error_text());
}

// The -wal header's salts: they change when the WAL starts over.
Bytes wal_salts(const std::filesystem::path& db) {
  std::filesystem::path wal = db;
  wal += "-wal";
  Bytes all = vfs_testing::read_file_bytes(wal);
  if (all.size() < 24) return {};
  return Bytes(all.begin() + 16, all.begin() + 24);
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

TEST_CASE(
    "pinned pages equal the state at their pin while the replica applies, checkpoints and restarts "
    "its WAL") {
  PinningPair p;
  std::mt19937_64 rng(20261202);
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(50, 2000));
  p.sync();
  std::vector<Held> held;
  bool saw_db_only = false, saw_wal = false, saw_incremental = false, restarted = false;
  bool saw_wal_after_restart = false;
  Bytes salts = wal_salts(p.db());
  for (int round = 0; round < 60; ++round) {
    const int txs = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < txs; ++i) {
      switch (rng() % 4) {
        case 0:
        case 1:
          p.exec(
              insert_rows(1 + static_cast<int>(rng() % 30), 50 + static_cast<int>(rng() % 6000)));
          break;
        case 2:
          p.exec("UPDATE t SET body = randomblob(" + std::to_string(100 + rng() % 3000) +
                 ") WHERE id % 7 = " + std::to_string(rng() % 7));
          break;
        default:
          p.exec("DELETE FROM t WHERE id % 5 = " + std::to_string(rng() % 5));
      }
    }
    p.sync();
    if (Bytes now = wal_salts(p.db()); !salts.empty() && !now.empty() && now != salts)
      restarted = true;
    salts = wal_salts(p.db());
    held.push_back(take_pin(p));
    const Held newest = held.back();
    (newest.pages->wal_frames() == 0 ? saw_db_only : saw_wal) = true;
    if (restarted && newest.pages->wal_frames() > 0) {
      saw_wal_after_restart = true;  // the frame index of the WAL before is stale
      restarted = false;
    }
    if (newest.pages->wal_frames() > 0 &&
        newest.pages->frames_scanned() < newest.pages->wal_frames()) {
      saw_incremental = true;
    }
    if (held.size() > 4)
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(rng() % (held.size() - 1)));
    for (const Held& h : held) check_held(h, rng);

    // Through the replica: at the newest head (size 0 or its size), with the multiproof.
    const std::vector<uint32_t> pgnos = random_pgnos(rng, newest.pages->page_count(), 256);
    auto reply = p.replica->pinned_pages(rng() % 2 ? 0 : newest.size, pgnos);
    REQUIRE_MESSAGE(reply.ok(), reply.error_text());
    CHECK(reply->head.size == newest.size);
    CHECK(reply->head.state_root == StateTree::from_pages(newest.copy).root());
    for (size_t i = 0; i < pgnos.size(); ++i) CHECK(reply->pages[i] == newest.copy[pgnos[i] - 1]);
    check_reply(*reply, pgnos);
    if (held.size() > 1) {
      uint64_t newest_size = 0;
      auto gone = p.replica->pinned_pages(held.front().size, pgnos, &newest_size);
      REQUIRE_FALSE(gone.ok());
      CHECK(gone.error().code == Errc::not_found);
      CHECK(gone.error().message == "head " + std::to_string(held.front().size) +
                                        " gone, newest is " + std::to_string(newest.size));
      CHECK(newest_size == newest.size);
      uint64_t leaves_newest = 0;
      auto leaves_gone = p.replica->pinned_leaves(held.front().size, pgnos, &leaves_newest);
      REQUIRE_FALSE(leaves_gone.ok());
      CHECK(leaves_newest == newest.size);
    }
    {
      // The leaves of the same pages at the same head, from the pin's tree.
      auto leaves = p.replica->pinned_leaves(newest.size, pgnos);
      REQUIRE_MESSAGE(leaves.ok(), leaves.error_text());
      CHECK(leaves->head == reply->head);
      CHECK(leaves->pgnos == reply->pgnos);
      CHECK(leaves->proof == reply->proof);
      for (size_t i = 0; i < pgnos.size(); ++i)
        CHECK(leaves->leaves[i] == page_leaf_hash(pgnos[i], reply->pages[i]));
      Status verified = verify_leaf_set(*leaves, reply->head);
      CHECK_MESSAGE(verified.ok(), verified.error_text());
    }
    // Held pins keep the WAL (checkpoints cannot pass them); letting them all
    // go now and then lets the next pin's checkpoint finish and, past 1000
    // frames, the WAL start over.
    if (rng() % 5 == 0) held.clear();
  }
  // The run went through every case the soundness argument covers.
  CHECK(saw_db_only);
  CHECK(saw_wal);
  CHECK(saw_incremental);
  CHECK(saw_wal_after_restart);
  CHECK_FALSE(p.replica->corruption());
}

TEST_CASE("pinned pages: bad requests are refused") {
  PinningPair p;
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(10, 3000));
  p.sync();
  const uint32_t count = p.replica->page_count();
  auto refused = [&](std::vector<uint32_t> pgnos) {
    auto r = p.replica->pinned_pages(0, pgnos);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  };
  refused({});
  refused({0});
  refused({count + 1});
  refused({3, 2});
  refused({2, 2});
  std::vector<uint32_t> many(kMaxPinnedPagesPerRequest + 1);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<uint32_t>(i + 1);
  refused(many);
  auto leaves_refused = [&](std::vector<uint32_t> pgnos) {
    auto r = p.replica->pinned_leaves(0, pgnos);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  };
  leaves_refused({});
  leaves_refused({count + 1});
  leaves_refused({3, 2});
  // GetLeaves has its own cap (the multiproof's), far over GetPages'.
  std::vector<uint32_t> all_pages(count);
  for (uint32_t i = 0; i < count; ++i) all_pages[i] = i + 1;
  auto all_leaves = p.replica->pinned_leaves(0, all_pages);
  REQUIRE_MESSAGE(all_leaves.ok(), all_leaves.error_text());
  CHECK(verify_leaf_set(*all_leaves, all_leaves->head).ok());
  uint64_t newest = 0;
  auto newer =
      p.replica->pinned_pages(p.replica->size() + 5, std::vector<uint32_t>{1}, &newest);
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.error().code == Errc::not_found);
  CHECK(newest == p.replica->size());
  CHECK(newer.error().message.find("not pinned yet, newest is " +
                                   std::to_string(p.replica->size())) != std::string::npos);
  auto good = p.replica->pinned_pages(0, std::vector<uint32_t>{1, count});
  CHECK_MESSAGE(good.ok(), good.error_text());
}

TEST_CASE(
    "a page of the database file changed behind the replica's back is corrupt, never served") {
  PinningPair p;
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(20, 3000));
  p.sync();
  auto source = p.replica->pinned_page_source();
  REQUIRE(source);
  REQUIRE(source->wal_frames() == 0);  // the pin checkpointed all: the database file alone
  const std::vector<uint32_t> two{2};
  REQUIRE(p.replica->pinned_pages(0, two).ok());
  flip_byte(p.db(), 4096 + 1000);
  for (int i = 0; i < 2; ++i) {  // and stays so (latched)
    auto r = p.replica->pinned_pages(0, two);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::corrupt);
    CHECK_MESSAGE(r.error().message.find("page 2 ") != std::string::npos, r.error().message);
  }
  REQUIRE(p.replica->corruption());
  CHECK(p.replica->corruption()->message.find(
            "page 2 of the pinned head, read from the database file") != std::string::npos);
  auto proof = p.replica->prove("SELECT count(*) FROM t", {});
  REQUIRE_FALSE(proof.ok());
  CHECK(proof.error().code == Errc::corrupt);
  auto other = p.replica->pinned_pages(0, std::vector<uint32_t>{1});
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().code == Errc::corrupt);
}

TEST_CASE("a page of a WAL frame changed behind the replica's back is corrupt, never served") {
  PinningPair p;
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(20, 3000));
  p.sync();
  Held old = take_pin(p);  // keeps the checkpoint from copying the next frames
  p.exec(insert_rows(20, 3000));
  p.exec("UPDATE t SET body = randomblob(10) WHERE id % 3 = 0");
  p.sync();
  auto source = p.replica->pinned_page_source();
  REQUIRE(source);
  REQUIRE(source->wal_frames() > 0);
  const uint32_t count = source->page_count();
  std::vector<uint32_t> all;
  for (uint32_t pg = 1; pg <= std::min<uint32_t>(count, kMaxPinnedPagesPerRequest); ++pg)
    all.push_back(pg);
  REQUIRE(p.replica->pinned_pages(0, all).ok());
  std::filesystem::path wal = p.db();
  wal += "-wal";
  for (uint32_t f = 1; f <= source->wal_frames(); ++f)
    flip_byte(wal, wal_frame_data_offset(f, 4096) + 1000);
  auto r = p.replica->pinned_pages(0, all);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::corrupt);
  CHECK_MESSAGE(r.error().message.find("read from its WAL frame, differs from the state tree") !=
                    std::string::npos,
                r.error().message);
  CHECK(p.replica->corruption());
}

TEST_CASE("pinned pages across the lock-byte page: zeros there, from the file and from the WAL") {
  vfs_testing::PendingByte moved(0x10000);  // page 17 is the lock-byte page
  REQUIRE(lock_byte_page(4096) == 17);
  std::mt19937_64 rng(17);
  PinningPair p;
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(30, 3000));
  p.sync();
  Held first = take_pin(p);
  REQUIRE(first.pages->page_count() > 17);
  CHECK(first.pages->wal_frames() == 0);
  p.exec(insert_rows(30, 3000));
  p.sync();
  Held second = take_pin(p);
  CHECK(second.pages->wal_frames() > 0);
  // SQLite never reads or writes the lock-byte page: whatever the file holds
  // there is not the page (state_tree.h), which is zeros.
  flip_byte(p.db(), 16 * 4096 + 5);
  for (const Held* h : {&first, &second}) {
    std::vector<uint32_t> all;
    for (uint32_t pg = 1; pg <= h->pages->page_count(); ++pg) all.push_back(pg);
    auto got = h->pages->read(all);
    REQUIRE_MESSAGE(got.ok(), got.error_text());
    CHECK(*got == h->copy);
    CHECK(got->at(16) == Bytes(4096, 0));
    check_held(*h, rng);
  }
  auto reply = p.replica->pinned_pages(0, std::vector<uint32_t>{16, 17, 18});
  REQUIRE_MESSAGE(reply.ok(), reply.error_text());
  check_reply(*reply, std::vector<uint32_t>{16, 17, 18});
}

// Requests race the applier's re-pins: every answer is whole and verifies
// against the head it names (the pages it serves stay those of its pin even
// while the next pin checkpoints), and nothing is reported corrupt.
TEST_CASE("pinned pages while the replica applies and re-pins: every answer verifies") {
  PinningPair p;
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(40, 2000));
  p.sync();
  std::atomic<bool> done{false};
  std::atomic<int> answers{0}, failures{0};
  std::string first_failure;
  std::mutex mu;
  std::thread reader([&] {
    std::mt19937_64 rng(7);
    uint64_t last = 0;
    while (!done) {
      const uint32_t count = p.replica->page_count();
      std::vector<uint32_t> pgnos = random_pgnos(rng, count, 32);
      auto r = p.replica->pinned_pages(0, pgnos);
      if (!r.ok()) {
        // The head may have grown past pgnos' end in between: only that is expected.
        if (r.error().code == Errc::invalid_argument) continue;
        std::lock_guard lock(mu);
        if (first_failure.empty()) first_failure = r.error().to_string();
        ++failures;
        continue;
      }
      std::vector<uint64_t> indices;
      std::vector<Hash32> leaves;
      for (size_t i = 0; i < pgnos.size(); ++i) {
        indices.push_back(pgnos[i] - 1);
        leaves.push_back(page_leaf_hash(pgnos[i], r->pages[i]));
      }
      Status s = verify_multiproof(indices, leaves, r->head.page_count, r->proof.hashes,
                                   r->head.state_root);
      if (!s.ok() || r->head.size < last) {
        std::lock_guard lock(mu);
        if (first_failure.empty())
          first_failure = s.ok() ? "head went back" : s.error().to_string();
        ++failures;
      }
      last = r->head.size;
      ++answers;
    }
  });
  std::mt19937_64 rng(8);
  for (int round = 0; round < 150; ++round) {
    p.exec(rng() % 3
               ? insert_rows(1 + static_cast<int>(rng() % 10), 100 + static_cast<int>(rng() % 4000))
               : "DELETE FROM t WHERE id % 4 = " + std::to_string(rng() % 4));
    p.sync();
  }
  done = true;
  reader.join();
  CHECK_MESSAGE(failures == 0, first_failure);
  CHECK(answers > 0);
  CHECK_FALSE(p.replica->corruption());
}

TEST_CASE("pinned changes: from every pinned head in the history, exactly the changed pages") {
  PinningPair p;
  p.replica.reset();
  ReplicaOptions o = fast_replica();
  o.pin_interval = std::chrono::milliseconds(0);
  o.change_history_pins = 4;
  auto r = Replica::open(p.dir / "r.db", p.dir / "r.log", p.keys.pub, o);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  p.replica = std::move(r).value();
  p.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
  p.exec(insert_rows(200, 300));
  struct Pinned {
    Head head;
    std::vector<Bytes> copy;
  };
  std::vector<Pinned> pins;
  auto pin = [&] {
    p.sync();
    auto leaves = p.replica->pinned_leaves(0, std::vector<uint32_t>{1});
    REQUIRE_MESSAGE(leaves.ok(), leaves.error_text());
    auto copy = read_logical_pages(p.db());
    REQUIRE(copy.ok());
    pins.push_back({leaves->head, std::move(copy).value()});
  };
  pin();
  // Between two pins, one or more entries (a size in between is never pinned).
  const std::vector<std::vector<std::string>> writes = {
      {"UPDATE t SET body = randomblob(300) WHERE id = 7"},     // one page
      {insert_rows(20, 300), insert_rows(20, 300)},             // growth
      {"UPDATE t SET body = zeroblob(300) WHERE id % 50 = 0"},  // scattered
      {"DELETE FROM t WHERE id BETWEEN 100 AND 140"},           // freed pages
      {"UPDATE t SET body = randomblob(300) WHERE id = 7"},
  };
  for (const auto& step : writes) {
    for (const std::string& w : step) p.exec(w);
    pin();
  }
  const Pinned& newest = pins.back();
  // The history keeps 4 pins back: the first two are gone.
  CHECK(p.replica->change_history_sizes().size() == 5);
  for (size_t i = 0; i < pins.size(); ++i) {
    const Pinned& from = pins[i];
    INFO("from size " << from.head.size);
    auto set = p.replica->pinned_changes(from.head.size, 0);
    if (i < pins.size() - 5) {
      REQUIRE_FALSE(set.ok());
      CHECK(set.error().code == Errc::refused);
      CHECK(set.error().message.find("not in this node's change history") != std::string::npos);
      continue;
    }
    REQUIRE_MESSAGE(set.ok(), set.error_text());
    const Status s = verify_change_set(*set, from.head, newest.head);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    std::vector<uint32_t> want;
    for (uint32_t pg = 1; pg <= std::max(from.copy.size(), newest.copy.size()); ++pg)
      if (pg > from.copy.size() || pg > newest.copy.size() ||
          page_leaf_hash(pg, from.copy[pg - 1]) != page_leaf_hash(pg, newest.copy[pg - 1]))
        want.push_back(pg);
    CHECK(changed_pages(*set, from.head.page_count) == want);
  }
  // A size the node never pinned, one past the pin, an older pin asked as `to`.
  auto never = p.replica->pinned_changes(pins[2].head.size - 1, 0);
  REQUIRE_FALSE(never.ok());
  CHECK(never.error().code == Errc::refused);
  auto ahead = p.replica->pinned_changes(newest.head.size + 1, 0);
  REQUIRE_FALSE(ahead.ok());
  CHECK(ahead.error().code == Errc::invalid_argument);
  uint64_t newest_size = 0;
  auto gone = p.replica->pinned_changes(pins[3].head.size, pins[4].head.size, &newest_size);
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == Errc::not_found);
  CHECK(newest_size == newest.head.size);
}
