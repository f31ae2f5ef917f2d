#include "core/log.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <random>
#include <thread>

#include "core/hash.h"
#include "core/temp_dir_test_util.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;

Bytes make_entry(uint64_t seq) {
  Entry e;
  e.seq = seq;
  e.time_ms = 1700000000000 + static_cast<int64_t>(seq);
  e.seed[0] = static_cast<uint8_t>(seq);
  e.statements.push_back(
      Statement{"INSERT INTO t VALUES (?)", {Value{static_cast<int64_t>(seq * 10)}}});
  e.state_root = hash_leaf(as_bytes(fmt::format("state {}", seq)));
  e.page_count = static_cast<uint32_t>(seq + 2);
  return encode_entry(e);
}

std::vector<Bytes> make_entries(uint64_t from, uint64_t to) {
  std::vector<Bytes> v;
  for (uint64_t i = from; i < to; ++i) v.push_back(make_entry(i));
  return v;
}

Hash32 root_of(const std::vector<Bytes>& entries, uint64_t n) {
  std::vector<Hash32> leaves;
  for (uint64_t i = 0; i < n; ++i) leaves.push_back(entry_leaf_hash(entries[i]));
  return merkle_root(leaves);
}

Head make_head(const KeyPair& key, uint64_t size, const Hash32& root, int64_t time_ms = 1) {
  Head h;
  h.log_id = key.pub;
  h.size = size;
  h.log_root = root;
  h.state_root = empty_root();
  h.page_count = 1;
  h.time_ms = time_ms;
  h.sign_with(key.secret);
  return h;
}

std::unique_ptr<Log> open_ok(const fs::path& dir, const PublicKey& id) {
  LogStoreOptions o;
  o.segment_bytes = 1024;
  auto r = Log::open(dir, id, o);
  if (!r.ok()) FAIL(r.error().to_string());
  return std::move(r).value();
}

struct Fixture {
  KeyPair key = KeyPair::generate();
  std::vector<Bytes> entries = make_entries(0, 10);
};

// The fixture's ten entries in a log at `dir` with a head over all of them: a
// primary's log for another log to catch up from.
struct Source {
  std::unique_ptr<Log> log;
  Head head;
};
Source signed_source(const Fixture& f, const fs::path& dir) {
  Source s{open_ok(dir, f.key.pub), {}};
  REQUIRE(s.log->append(f.entries).ok());
  s.head = make_head(f.key, 10, s.log->root());
  REQUIRE(s.log->set_head(s.head).ok());
  return s;
}

TEST_CASE("log: append, set_head and reopen") {
  Fixture f;
  TempDir t("basic");
  {
    auto log = open_ok(t.path, f.key.pub);
    CHECK(log->size() == 0);
    CHECK(!log->head().has_value());
    REQUIRE(log->append(std::span(f.entries).first(6)).ok());
    REQUIRE(log->append(std::span(f.entries).subspan(6)).ok());
    CHECK(log->size() == 10);
    CHECK(log->root() == root_of(f.entries, 10));
    REQUIRE(log->set_head(make_head(f.key, 4, root_of(f.entries, 4))).ok());
    REQUIRE(log->set_head(make_head(f.key, 10, root_of(f.entries, 10))).ok());
    CHECK(log->head()->size == 10);
  }
  auto log = open_ok(t.path, f.key.pub);
  CHECK(log->size() == 10);
  CHECK(log->root() == root_of(f.entries, 10));
  REQUIRE(log->head().has_value());
  CHECK(*log->head() == make_head(f.key, 10, root_of(f.entries, 10)));
  CHECK(*log->entry_bytes(3) == f.entries[3]);
  CHECK(log->entry(7)->seq == 7);
  CHECK(log->entry(10).error().code == Errc::not_found);
}

TEST_CASE("log: append refuses entries that do not continue the log") {
  Fixture f;
  TempDir t("seq");
  auto log = open_ok(t.path, f.key.pub);
  std::vector<Bytes> gap = {f.entries[0], f.entries[2]};
  auto st = log->append(gap);
  REQUIRE(!st.ok());
  CHECK(st.error().code == Errc::bad_value);
  CHECK(st.error().message.find("seq 2") != std::string::npos);
  CHECK(log->size() == 0);
  std::vector<Bytes> garbage = {Bytes{1, 2, 3}};
  CHECK(!log->append(garbage).ok());
  CHECK(log->size() == 0);
}

TEST_CASE("log: append of entries the caller decoded checks their version and seq only") {
  Fixture f;
  TempDir t("bycaller");
  auto log = open_ok(t.path, f.key.pub);
  using Check = Log::EntryCheck;
  std::vector<Bytes> gap = {f.entries[0], f.entries[2]};
  auto st = log->append(gap, Check::by_caller);
  REQUIRE(!st.ok());
  CHECK(st.error().code == Errc::bad_value);
  CHECK(st.error().message == "entry 1 of the batch has seq 2, expected 1");
  CHECK(log->size() == 0);
  std::vector<Bytes> short_one = {Bytes(f.entries[0].begin(), f.entries[0].begin() + 40)};
  st = log->append(short_one, Check::by_caller);
  REQUIRE(!st.ok());
  CHECK(st.error().message == "entry 0 of the batch (seq 0): not an entry (40 bytes, version 1)");
  Bytes other_version = f.entries[0];
  other_version[0] = 7;
  st = log->append(std::span(&other_version, 1), Check::by_caller);
  REQUIRE(!st.ok());
  CHECK(st.error().message.find("version 7") != std::string::npos);
  CHECK(log->size() == 0);
  // Entries that continue the log are stored as append() with decoding stores them.
  REQUIRE(log->append(std::span(f.entries).first(4), Check::by_caller).ok());
  REQUIRE(log->append(std::span(f.entries).subspan(4)).ok());
  CHECK(log->size() == 10);
  CHECK(log->root() == root_of(f.entries, 10));
  for (uint64_t i = 0; i < 10; ++i) CHECK(*log->entry_bytes(i) == f.entries[i]);
}

TEST_CASE("log: set_head refuses heads that do not match the log") {
  Fixture f;
  TempDir t("sethead");
  auto log = open_ok(t.path, f.key.pub);
  REQUIRE(log->append(std::span(f.entries).first(5)).ok());
  KeyPair other = KeyPair::generate();
  CHECK(log->set_head(make_head(other, 5, root_of(f.entries, 5))).error().code ==
        Errc::bad_signature);
  CHECK(log->set_head(make_head(f.key, 6, root_of(f.entries, 6))).error().code ==
        Errc::invalid_argument);
  CHECK(log->set_head(make_head(f.key, 5, root_of(f.entries, 4))).error().code ==
        Errc::root_mismatch);
  REQUIRE(log->set_head(make_head(f.key, 5, root_of(f.entries, 5))).ok());
  CHECK(log->set_head(make_head(f.key, 3, root_of(f.entries, 3))).error().code == Errc::refused);
  CHECK(log->head()->size == 5);
}

TEST_CASE("log: reopen fails when the stored head does not match the stored entries") {
  Fixture f;
  TempDir t("badhead");
  {
    auto log = open_ok(t.path, f.key.pub);
    REQUIRE(log->append(std::span(f.entries).first(5)).ok());
  }
  auto store_raw_head = [&](const Head& h) {
    auto s = LogStore::open(t.path);
    REQUIRE(s.ok());
    REQUIRE((*s)->store_head(encode_head(h)).ok());
  };
  SUBCASE("root differs") {
    store_raw_head(make_head(f.key, 5, root_of(f.entries, 4)));
    auto r = Log::open(t.path, f.key.pub);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::corrupt);
  }
  SUBCASE("head covers more than the store holds") {
    store_raw_head(make_head(f.key, 6, root_of(f.entries, 6)));
    auto r = Log::open(t.path, f.key.pub);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::corrupt);
  }
  SUBCASE("bad signature") {
    Head h = make_head(f.key, 5, root_of(f.entries, 5));
    h.signature[0] ^= 1;
    store_raw_head(h);
    auto r = Log::open(t.path, f.key.pub);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::corrupt);
  }
  SUBCASE("opened under another log id") {
    store_raw_head(make_head(f.key, 5, root_of(f.entries, 5)));
    auto r = Log::open(t.path, KeyPair::generate().pub);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  }
  SUBCASE("a correct head opens") {
    store_raw_head(make_head(f.key, 3, root_of(f.entries, 3)));
    auto log = open_ok(t.path, f.key.pub);
    CHECK(log->head()->size == 3);
    CHECK(log->size() == 5);
  }
}

TEST_CASE("log: append_verified accepts a correct batch") {
  Fixture f;
  TempDir t("replica");
  {
    auto log = open_ok(t.path, f.key.pub);
    REQUIRE(log->append_verified(std::span(f.entries).first(4), make_head(f.key, 4, root_of(f.entries, 4)))
                .ok());
    REQUIRE(log->append_verified(std::span(f.entries).subspan(4),
                                 make_head(f.key, 10, root_of(f.entries, 10)))
                .ok());
    CHECK(log->size() == 10);
  }
  auto log = open_ok(t.path, f.key.pub);
  CHECK(log->size() == 10);
  CHECK(log->head()->size == 10);
  CHECK(*log->entry_bytes(9) == f.entries[9]);
}

TEST_CASE("log: append_verified rejects a bad batch and stores nothing") {
  Fixture f;
  TempDir t("reject");
  Head good4 = make_head(f.key, 4, root_of(f.entries, 4));
  {
    auto log = open_ok(t.path, f.key.pub);
    REQUIRE(log->append_verified(std::span(f.entries).first(4), good4).ok());
  }
  std::vector<Bytes> batch(f.entries.begin() + 4, f.entries.begin() + 8);
  Head head8 = make_head(f.key, 8, root_of(f.entries, 8));
  Errc want = Errc::internal;
  Head head = head8;
  SUBCASE("bad signature") {
    head.signature[10] ^= 1;
    want = Errc::bad_signature;
  }
  SUBCASE("head of another key") {
    head = make_head(KeyPair::generate(), 8, root_of(f.entries, 8));
    want = Errc::bad_signature;
  }
  SUBCASE("a field changed after signing") {
    head.state_root[0] ^= 1;
    want = Errc::bad_signature;
  }
  SUBCASE("tampered entry byte") {
    // A byte of the SQL text: still decodes, but the leaf changes.
    Bytes& e = batch[2];
    auto pos = std::search(e.begin(), e.end(), std::begin("INSERT"), std::end("INSERT") - 1);
    REQUIRE(pos != e.end());
    *pos = 'X';
    want = Errc::root_mismatch;
  }
  SUBCASE("missing entry") {
    batch.erase(batch.begin() + 1);
    want = Errc::bad_value;
  }
  SUBCASE("missing entry with a head at the shorter size") {
    batch.erase(batch.begin() + 1);
    head = make_head(f.key, 7, root_of(f.entries, 7));
    want = Errc::bad_value;  // seq 6 where 5 was expected
  }
  SUBCASE("reordered batch") {
    std::swap(batch[1], batch[2]);
    want = Errc::bad_value;
  }
  SUBCASE("wrong size") {
    head = make_head(f.key, 9, root_of(f.entries, 9));
    want = Errc::bad_value;
  }
  SUBCASE("right size, wrong root") {
    head = make_head(f.key, 8, root_of(f.entries, 7));
    want = Errc::root_mismatch;
  }
  auto log = open_ok(t.path, f.key.pub);
  auto st = log->append_verified(batch, head);
  REQUIRE(!st.ok());
  INFO(st.error().to_string());
  CHECK(st.error().code == want);
  CHECK(log->size() == 4);
  CHECK(log->root() == root_of(f.entries, 4));
  CHECK(*log->head() == good4);
  log.reset();
  log = open_ok(t.path, f.key.pub);
  CHECK(log->size() == 4);
  CHECK(*log->head() == good4);
  // The good batch still goes in afterwards.
  REQUIRE(log->append_verified(std::span(f.entries).subspan(4, 4), head8).ok());
}

TEST_CASE("log: equivocation at the same size is detected") {
  Fixture f;
  TempDir t("equiv");
  auto log = open_ok(t.path, f.key.pub);
  Head h5 = make_head(f.key, 5, root_of(f.entries, 5));
  REQUIRE(log->append_verified(std::span(f.entries).first(5), h5).ok());
  Hash32 other_root = root_of(make_entries(100, 105), 5);
  Head fork = make_head(f.key, 5, other_root);
  CHECK(log->append_verified({}, fork).error().code == Errc::equivocation);
  CHECK(log->set_head(fork).error().code == Errc::equivocation);
  // Even when entries come along with it.
  CHECK(log->append_verified(std::span(f.entries).subspan(5, 1), fork).error().code ==
        Errc::equivocation);
  CHECK(*log->head() == h5);
  // A re-signed head at the same size and root is a head-only update.
  Head later = make_head(f.key, 5, root_of(f.entries, 5), 99);
  REQUIRE(log->append_verified({}, later).ok());
  CHECK(log->head()->time_ms == 99);
}

TEST_CASE("log: append_proven catches up against a newer head") {
  Fixture f;
  TempDir src("proven-src");
  TempDir t("proven");
  auto [primary, h10] = signed_source(f, src.path);
  auto proof = primary->consistency_proof(6, 10);
  REQUIRE(proof.ok());

  auto log = open_ok(t.path, f.key.pub);
  SUBCASE("a wrong proof stores nothing") {
    std::vector<Hash32> bad = *proof;
    bad[0][0] ^= 1;
    CHECK(!log->append_proven(std::span(f.entries).first(6), h10, bad).ok());
    CHECK(log->size() == 0);
    // A tampered entry with the right proof fails too.
    std::vector<Bytes> batch(f.entries.begin(), f.entries.begin() + 6);
    batch[3].back() ^= 1;
    CHECK(!log->append_proven(batch, h10, *proof).ok());
    CHECK(log->size() == 0);
  }
  SUBCASE("a good proof appends, the head is stored once covered") {
    REQUIRE(log->append_proven(std::span(f.entries).first(6), h10, *proof).ok());
    CHECK(log->size() == 6);
    CHECK(!log->head().has_value());
    REQUIRE(log->append_proven(std::span(f.entries).subspan(6), h10, {}).ok());
    CHECK(log->size() == 10);
    CHECK(*log->head() == h10);
  }
}

TEST_CASE("log: keep_decoded hands the stored batches' entries over once, in order, within its cap") {
  Fixture f;
  TempDir src("decoded-src");
  TempDir t("decoded");
  auto [primary, h10] = signed_source(f, src.path);
  auto proof4 = primary->consistency_proof(4, 10);
  REQUIRE(proof4.ok());
  auto log = open_ok(t.path, f.key.pub);
  auto decoded = [&](uint64_t seq) { return *decode_entry(f.entries[seq]); };

  SUBCASE("off by default: nothing kept") {
    REQUIRE(log->append_proven(std::span(f.entries).first(4), h10, *proof4).ok());
    CHECK(log->take_decoded(0, 10, 1 << 20).empty());
    CHECK(log->decoded_bytes() == 0);
  }
  SUBCASE("kept once stored; handed out once; max_count and max_bytes bound a take") {
    log->keep_decoded(1 << 20);
    REQUIRE(log->append_proven(std::span(f.entries).first(4), h10, *proof4).ok());
    REQUIRE(log->append_proven(std::span(f.entries).subspan(4), h10, {}).ok());
    CHECK(log->decoded_bytes() > 0);
    CHECK(log->take_decoded(1, 10, 1 << 20).size() == 9);  // entry 0 dropped, 1..9 handed out
    CHECK(log->take_decoded(1, 10, 1 << 20).empty());       // once only
    CHECK(log->decoded_bytes() == 0);
    // The log itself still holds every entry.
    CHECK(log->entry(3).value() == decoded(3));
  }
  SUBCASE("the entries handed out are the stored ones") {
    log->keep_decoded(1 << 20);
    REQUIRE(log->append_verified(f.entries, h10).ok());
    auto two = log->take_decoded(0, 2, 1 << 20);
    REQUIRE(two.size() == 2);
    CHECK(two[0] == decoded(0));
    CHECK(two[1] == decoded(1));
    // max_bytes: stops once reached, but hands out at least one.
    auto one = log->take_decoded(2, 10, 1);
    REQUIRE(one.size() == 1);
    CHECK(one[0] == decoded(2));
    CHECK(log->take_decoded(4, 10, f.entries[4].size() + f.entries[5].size()).size() == 2);
    CHECK(log->take_decoded(3, 10, 1 << 20).empty());  // 3 was dropped by the take from 4
    auto rest = log->take_decoded(6, 100, 1 << 20);
    REQUIRE(rest.size() == 4);
    CHECK(rest.back() == decoded(9));
  }
  SUBCASE("a batch that fails its checks keeps nothing") {
    log->keep_decoded(1 << 20);
    std::vector<Hash32> bad = *proof4;
    bad[0][0] ^= 1;
    CHECK(!log->append_proven(std::span(f.entries).first(4), h10, bad).ok());
    CHECK(log->take_decoded(0, 10, 1 << 20).empty());
    CHECK(log->decoded_bytes() == 0);
  }
  SUBCASE("a batch past the cap is not kept; the next that fits is, after the gap") {
    log->keep_decoded(1);  // nothing fits
    REQUIRE(log->append_proven(std::span(f.entries).first(4), h10, *proof4).ok());
    CHECK(log->decoded_bytes() == 0);
    log->keep_decoded(1 << 20);
    REQUIRE(log->append_proven(std::span(f.entries).subspan(4), h10, {}).ok());
    CHECK(log->take_decoded(0, 10, 1 << 20).empty());  // 0..3 were not kept
    CHECK(log->take_decoded(4, 10, 1 << 20).size() == 6);
  }
  SUBCASE(
      "entries handed back are decoded into, and the entries handed out are still the stored "
      "ones") {
    log->keep_decoded(1 << 20);
    REQUIRE(log->append_proven(std::span(f.entries).first(4), h10, *proof4).ok());
    auto first = log->take_decoded(0, 4, 1 << 20);
    REQUIRE(first.size() == 4);
    const Statement* buffers = first[1].statements.data();
    log->recycle_decoded(first);
    CHECK(log->decoded_bytes() == 0);  // spare entries are not kept entries
    REQUIRE(log->append_proven(std::span(f.entries).subspan(4), h10, {}).ok());
    auto rest = log->take_decoded(4, 10, 1 << 20);
    REQUIRE(rest.size() == 6);
    for (size_t i = 0; i < rest.size(); ++i) CHECK(rest[i] == decoded(4 + i));
    // Four of the six were decoded into the handed-back entries (their
    // buffers moved along); which four is the log's choice.
    bool reused = false;
    for (const Entry& e : rest) reused = reused || e.statements.data() == buffers;
    CHECK(reused);
    // keep_decoded(0) drops the spares too: nothing is decoded into them later.
    log->recycle_decoded(rest);
    log->keep_decoded(0);
    log->keep_decoded(1 << 20);
    CHECK(log->take_decoded(0, 10, 1 << 20).empty());
  }
  SUBCASE("keep_decoded(0) drops what is kept") {
    log->keep_decoded(1 << 20);
    REQUIRE(log->append_verified(f.entries, h10).ok());
    CHECK(log->decoded_bytes() > 0);
    log->keep_decoded(0);
    CHECK(log->decoded_bytes() == 0);
    CHECK(log->take_decoded(0, 10, 1 << 20).empty());
  }
}

// A primary's log of kTotal entries with a head over all of them, and an
// empty log to store them into batch by batch beside a reader thread.
struct BesideWriter {
  static constexpr uint64_t kTotal = 480;
  static constexpr uint64_t kBatch = 8;
  KeyPair key = KeyPair::generate();
  std::vector<Bytes> entries = make_entries(0, kTotal);
  TempDir src{"beside-src"};
  TempDir t{"beside"};
  std::unique_ptr<Log> primary = filled(src.path, key.pub, entries);
  Head last = make_head(key, kTotal, primary->root());
  std::unique_ptr<Log> log = open_ok(t.path, key.pub);

  static std::unique_ptr<Log> filled(const fs::path& dir, const PublicKey& id,
                                     const std::vector<Bytes>& entries) {
    auto log = open_ok(dir, id);
    REQUIRE(log->append(entries).ok());
    return log;
  }
};

TEST_CASE("log: view() shows only stored entries and heads, read beside the writer") {
  BesideWriter w;
  constexpr uint64_t kTotal = BesideWriter::kTotal;
  constexpr uint64_t kBatch = BesideWriter::kBatch;
  const KeyPair& key = w.key;
  const std::vector<Bytes>& entries = w.entries;
  auto& primary = w.primary;
  const Head& last = w.last;
  auto& log = w.log;
  CHECK(log->view().size == 0);
  CHECK(!log->view().head.has_value());

  // A reader beside the writer, as the replica's apply thread and the node's
  // io thread read it (docs/protocol.md "Threads and locks"): every entry below
  // view().size is readable, and the head never covers more than the size.
  std::atomic<bool> done{false};
  std::atomic<uint64_t> reads{0}, unreadable{0}, head_past_size{0}, bad_head{0};
  std::thread reader([&] {
    while (!done.load()) {
      const LogView v = log->view();
      if (v.size > 0 && !log->entry(v.size - 1).ok()) ++unreadable;
      if (v.head && v.head->size > v.size) ++head_past_size;
      if (v.head && !v.head->verify(key.pub).ok()) ++bad_head;
      ++reads;
    }
  });
  bool stored_all = true;
  for (uint64_t n = 0; n < kTotal && stored_all; n += kBatch) {
    const auto batch = std::span(entries).subspan(n, kBatch);
    if ((n / kBatch) % 2 == 0) {  // proven against the final head: no head stored
      auto proof = primary->consistency_proof(n + kBatch, kTotal);
      REQUIRE(proof.ok());
      stored_all = log->append_proven(batch, last, *proof).ok();
    } else {  // a head at exactly the new size: stored with the batch
      auto root = primary->tree().root_at(n + kBatch);
      REQUIRE(root.ok());
      stored_all = log->append_verified(batch, make_head(key, n + kBatch, *root)).ok();
    }
  }
  done = true;
  reader.join();
  REQUIRE(stored_all);
  CHECK(reads.load() > 0);
  CHECK(unreadable.load() == 0);
  CHECK(head_past_size.load() == 0);
  CHECK(bad_head.load() == 0);
  CHECK(log->view().size == kTotal);
  CHECK(log->view().head == log->head());

  // A write that fails publishes nothing.
  const LogView before = log->view();
  auto more = make_entries(kTotal, kTotal + 2);
  CHECK(!log->append_verified(more, make_head(key, kTotal + 2, hash_leaf(as_bytes("wrong")))).ok());
  CHECK(log->view().size == before.size);
  CHECK(log->view().head == before.head);

  // Reopened: the view starts at what is stored.
  log.reset();
  log = open_ok(w.t.path, key.pub);
  CHECK(log->view().size == kTotal);
  CHECK(log->view().first == log->first_entry());
  CHECK(log->view().head == log->head());
  // Compacted: the view's first entry moves with the log's.
  REQUIRE(log->compact(200).ok());
  CHECK(log->first_entry() > 0);
  CHECK(log->view().first == log->first_entry());
}

TEST_CASE("log: take_decoded beside the writer hands every stored entry over once, in order, or leaves it to the store") {
  BesideWriter w;
  constexpr uint64_t kTotal = BesideWriter::kTotal;
  constexpr uint64_t kBatch = BesideWriter::kBatch;
  const std::vector<Bytes>& entries = w.entries;
  auto& primary = w.primary;
  const Head& last = w.last;
  auto& log = w.log;
  log->keep_decoded(4 << 10);  // about one batch: a slow taker finds gaps

  // The replica's apply thread, in miniature: below view().size, take what was
  // kept, else read the store (next_entry_locked).
  std::atomic<uint64_t> handed{0}, read_back{0}, wrong{0};
  std::thread taker([&] {
    uint64_t next = 0;
    while (next < kTotal) {
      const uint64_t end = log->view().size;
      if (next >= end) {
        std::this_thread::yield();
        continue;
      }
      std::vector<Entry> got = log->take_decoded(next, std::min<uint64_t>(end - next, 16), 1 << 20);
      if (got.empty()) {
        auto stored = log->entries(next, std::min<uint64_t>(end - next, 16), 1 << 20);
        if (!stored.ok()) {
          ++wrong;
          return;
        }
        got = std::move(stored).value();
        read_back += got.size();
      } else {
        handed += got.size();
      }
      for (const Entry& e : got) {
        if (e.seq != next || e != *decode_entry(entries[next])) ++wrong;
        ++next;
      }
      if ((next / kBatch) % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  bool stored_all = true;
  for (uint64_t n = 0; n < kTotal && stored_all; n += kBatch) {
    auto proof = primary->consistency_proof(n + kBatch, kTotal);
    REQUIRE(proof.ok());
    stored_all = log->append_proven(std::span(entries).subspan(n, kBatch), last,
                                    n + kBatch == kTotal ? std::vector<Hash32>{} : *proof)
                     .ok();
  }
  taker.join();
  REQUIRE(stored_all);
  CHECK(wrong.load() == 0);
  CHECK(handed.load() + read_back.load() == kTotal);
  CHECK(handed.load() > 0);
  MESSAGE("handed over ", handed.load(), ", read back ", read_back.load());
}

void write_file(const fs::path& p, ByteView b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// The newest segment's index file (the only one whose rows may lag after a crash).
fs::path last_index_file(const fs::path& dir) {
  fs::path last;
  for (const auto& de : fs::directory_iterator(dir)) {
    if (de.path().extension() == ".idx" && (last.empty() || de.path() > last)) last = de.path();
  }
  REQUIRE(!last.empty());
  return last;
}

TEST_CASE("log: an index behind its segment reopens with the same tree, entries and proofs") {
  Fixture f;
  f.entries = make_entries(0, 40);  // several 1 KiB segments
  TempDir t("behind");
  std::vector<std::vector<Hash32>> inclusion, consistency;
  Hash32 root;
  {
    auto log = open_ok(t.path, f.key.pub);
    for (size_t i = 0; i < f.entries.size(); i += 7) {
      size_t n = std::min<size_t>(7, f.entries.size() - i);
      REQUIRE(log->append(std::span(f.entries).subspan(i, n)).ok());
    }
    REQUIRE(log->set_head(make_head(f.key, 40, root_of(f.entries, 40))).ok());
    root = log->root();
    for (uint64_t i = 0; i < 40; ++i) {
      inclusion.push_back(*log->tree().inclusion_proof(i, 40));
      consistency.push_back(*log->consistency_proof(i + 1, 40));
    }
  }
  const fs::path idx = last_index_file(t.path);
  const uint64_t rows = (fs::file_size(idx) - 16) / 44;
  REQUIRE(rows >= 2);
  SUBCASE("all rows of the last segment lost") { fs::resize_file(idx, 16); }
  SUBCASE("all but one lost, the next one torn") { fs::resize_file(idx, 16 + 44 + 20); }
  auto log = open_ok(t.path, f.key.pub);
  CHECK(log->size() == 40);
  CHECK(log->root() == root);
  REQUIRE(log->head().has_value());
  CHECK(log->head()->size == 40);
  for (uint64_t i = 0; i < 40; ++i) {
    CAPTURE(i);
    CHECK(*log->entry_bytes(i) == f.entries[i]);
    CHECK(*log->tree().inclusion_proof(i, 40) == inclusion[i]);
    CHECK(*log->consistency_proof(i + 1, 40) == consistency[i]);
  }
  const std::vector<Bytes> next = make_entries(40, 41);
  REQUIRE(log->append(next).ok());
  CHECK(log->size() == 41);
}

TEST_CASE("log: a head lost or left stale by a crash keeps the entries past it") {
  Fixture f;
  TempDir t("losthead");
  Bytes stale;
  {
    LogStoreOptions o;
    o.sync_head = false;  // as the primary stores its heads
    auto r = Log::open(t.path, f.key.pub, o);
    REQUIRE(r.ok());
    auto& log = *r;
    REQUIRE(log->append(std::span(f.entries).first(4)).ok());
    REQUIRE(log->set_head(make_head(f.key, 4, root_of(f.entries, 4))).ok());
    stale = encode_head(*log->head());
    REQUIRE(log->append(std::span(f.entries).subspan(4)).ok());
    REQUIRE(log->set_head(make_head(f.key, 10, root_of(f.entries, 10))).ok());
  }
  std::optional<uint64_t> want_head;
  SUBCASE("the previous head") {
    write_file(t.path / "head", stale);
    want_head = 4;
  }
  SUBCASE("no head file") { fs::remove(t.path / "head"); }
  SUBCASE("an empty head file") { write_file(t.path / "head", {}); }
  auto log = open_ok(t.path, f.key.pub);
  CHECK(log->size() == 10);
  CHECK(log->root() == root_of(f.entries, 10));
  CHECK(log->head().has_value() == want_head.has_value());
  if (want_head) CHECK(log->head()->size == *want_head);
  // The head signed again over the same entries is accepted.
  REQUIRE(log->set_head(make_head(f.key, 10, root_of(f.entries, 10), 2)).ok());
  CHECK(log->head()->size == 10);
}

TEST_CASE("log: sign_head signs the whole log with the log's key and refuses another key") {
  Fixture f;
  TempDir t("signhead");
  auto log = open_ok(t.path, f.key.pub);
  REQUIRE(log->append(std::span(f.entries).first(6)).ok());
  const Hash32 state = hash_leaf(as_bytes("state"));
  auto h = log->sign_head(f.key.secret, state, 9, 1234);
  REQUIRE(h.ok());
  CHECK(h->size == 6);
  CHECK(h->log_root == root_of(f.entries, 6));
  CHECK(h->state_root == state);
  CHECK(h->page_count == 9);
  CHECK(h->time_ms == 1234);
  CHECK(h->verify(f.key.pub).ok());
  CHECK(*log->head() == *h);
  auto other = log->sign_head(KeyPair::generate().secret, state, 9, 1235);
  REQUIRE(!other.ok());
  CHECK(other.error().code == Errc::invalid_argument);
  CHECK(*log->head() == *h);
}

TEST_CASE("log: a head made by unsigned_head and signed later is stored unless one as new came") {
  Fixture f;
  TempDir t("ownhead");
  const Hash32 state = hash_leaf(as_bytes("state"));
  {
    auto log = open_ok(t.path, f.key.pub);
    REQUIRE(log->append(std::span(f.entries).first(4)).ok());
    Head early = log->unsigned_head(state, 5, 100);
    CHECK(early.size == 4);
    CHECK(early.log_root == root_of(f.entries, 4));
    CHECK(early.log_id == f.key.pub);
    // The log grows while the caller signs: the head still signs size 4.
    REQUIRE(log->append(std::span(f.entries).subspan(4, 3)).ok());
    early.sign_with(f.key.secret);
    auto stored = log->store_own_head(early);
    REQUIRE_MESSAGE(stored.ok(), stored.error_text());
    CHECK(*stored);
    CHECK(*log->head() == early);
    CHECK(log->view().head == early);
    // One at least as new came first (sign_head): not stored, no error.
    auto newer = log->sign_head(f.key.secret, state, 6, 200);
    REQUIRE(newer.ok());
    Head late = early;
    CHECK_FALSE(*log->store_own_head(late));
    CHECK(*log->head() == *newer);
    // Another log's head, or one past the log's size: refused.
    Head foreign = log->unsigned_head(state, 6, 300);
    foreign.log_id = KeyPair::generate().pub;
    CHECK(log->store_own_head(foreign).error().code == Errc::invalid_argument);
    Head past = log->unsigned_head(state, 6, 300);
    past.size = 8;
    CHECK(log->store_own_head(past).error().code == Errc::invalid_argument);
    CHECK(*log->head() == *newer);
  }
  auto reopened = open_ok(t.path, f.key.pub);  // the stored head checks out on open
  REQUIRE(reopened->head());
  CHECK(reopened->head()->size == 7);
}

TEST_CASE("log: memory stays flat as the log grows; proofs match the full tree after reopen") {
  KeyPair key = KeyPair::generate();
  TempDir t("flat");
  LogStoreOptions o;
  o.sync = false;
  constexpr uint64_t kEntries = 100000;
  MerkleTree full;
  {
    auto r = Log::open(t.path, key.pub, o);
    REQUIRE(r.ok());
    auto log = std::move(r).value();
    REQUIRE(log->append(make_entries(0, 100)).ok());
    const size_t start = log->memory_bytes();
    for (uint64_t i = 100; i < kEntries; i += 1000) {
      auto batch = make_entries(i, std::min(i + 1000, kEntries));
      REQUIRE(log->append(batch).ok());
    }
    REQUIRE(log->size() == kEntries);
    // A tree of every node plus a row per entry held ≈ 112 bytes per entry
    // (11 MB here); now the index rows stay on disk and the tree keeps one hash
    // per 64 leaves and their parents (docs/operations.md "Memory").
    const size_t grown = log->memory_bytes() - start;
    MESSAGE("log memory: ", start, " bytes at 100 entries, +", grown, " for ", kEntries - 100,
            " more");
    CHECK(grown < (1u << 20));
    CHECK(grown < 8 * kEntries);
    for (uint64_t i = 0; i < kEntries; ++i) full.append(entry_leaf_hash(make_entry(i)));
  }
  auto r = Log::open(t.path, key.pub, o);
  REQUIRE(r.ok());
  auto log = std::move(r).value();
  REQUIRE(log->size() == kEntries);
  CHECK(log->root() == full.root());
  std::mt19937_64 rng(3);
  for (int k = 0; k < 200; ++k) {
    uint64_t n = 1 + rng() % kEntries, i = rng() % n, m = rng() % (n + 1);
    REQUIRE(*log->tree().inclusion_proof(i, n) == *full.inclusion_proof(i, n));
    REQUIRE(*log->consistency_proof(m, n) == *full.consistency_proof(m, n));
  }

  // Proofs from several threads at once (the tree's const members, reading the
  // store's index files) all match the full tree.
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int k = 0; k < 4; ++k) {
    readers.emplace_back([&, k] {
      std::mt19937_64 g(static_cast<uint64_t>(k));
      for (int j = 0; j < 300; ++j) {
        uint64_t n = 1 + g() % kEntries, i = g() % n, m = g() % (n + 1);
        auto ip = log->tree().inclusion_proof(i, n);
        auto cp = log->tree().consistency_proof(m, n);
        auto ra = log->tree().root_at(m);
        if (!ip.ok() || *ip != *full.inclusion_proof(i, n) || !cp.ok() ||
            *cp != *full.consistency_proof(m, n) || !ra.ok() || *ra != *full.root_at(m)) {
          ++bad;
        }
      }
    });
  }
  for (auto& th : readers) th.join();
  CHECK(bad.load() == 0);
}

// ---- Compaction and checkpoints (docs/formats/log-store.md) ----

TEST_CASE(
    "log: compact, then append_verified, append_proven and consistency across the checkpoint") {
  KeyPair key = KeyPair::generate();
  const std::vector<Bytes> all = make_entries(0, 400);
  TempDir t("compact");
  MerkleTree full;
  for (const Bytes& e : all) full.append(entry_leaf_hash(e));
  uint64_t first = 0;
  {
    auto log = open_ok(t.path, key.pub);
    // Batches of 10: a batch never spans two segments (about 10 entries each).
    for (size_t i = 0; i < 200; i += 10) REQUIRE(log->append(std::span(all).subspan(i, 10)).ok());
    // Without a head covering keep_from: refused.
    CHECK(log->compact(50).error().code == Errc::refused);
    REQUIRE(log->set_head(make_head(key, 200, root_of(all, 200))).ok());
    CHECK(log->compact(201).error().code == Errc::refused);
    auto stats = log->compact(150);
    REQUIRE_MESSAGE(stats.ok(), stats.error_text());
    first = log->first_entry();
    CHECK(first > 0);
    CHECK(first <= 150);
    CHECK(stats->entries == first);
    CHECK(log->size() == 200);
    CHECK(log->root() == root_of(all, 200));
    CHECK(log->entry(first - 1).error().code == Errc::not_found);
    REQUIRE(log->entry(first).ok());
    REQUIRE(log->checkpoint());
    CHECK(log->checkpoint()->first_seq == first);
    // Compacting again at or below the start changes nothing.
    CHECK(log->compact(first)->entries == 0);
    // A replica's updates go on from here: one exact batch, then a proven one.
    REQUIRE(log->append_verified(std::span(all).subspan(200, 20),
                                 make_head(key, 220, root_of(all, 220)))
                .ok());
    auto proof = full.consistency_proof(260, 300);
    REQUIRE(log->append_proven(std::span(all).subspan(220, 40),
                               make_head(key, 300, root_of(all, 300)), *proof)
                .ok());
    CHECK(log->size() == 260);
    REQUIRE(log->append_verified(std::span(all).subspan(260, 40),
                                 make_head(key, 300, root_of(all, 300)))
                .ok());
    // A wrong batch is still refused (and cut back, not below the checkpoint).
    auto bad = make_entries(300, 310);
    CHECK(log->append_verified(bad, make_head(key, 310, root_of(all, 309))).error().code ==
          Errc::root_mismatch);
    CHECK(log->size() == 300);
    CHECK(log->root() == root_of(all, 300));
  }
  auto log = open_ok(t.path, key.pub);
  CHECK(log->first_entry() == first);
  CHECK(log->size() == 300);
  CHECK(log->root() == root_of(all, 300));
  REQUIRE(log->head());
  CHECK(log->head()->size == 300);
  // Proofs from any size >= first equal the full tree's; below it they are not_found.
  for (uint64_t m : {first, first + 1, uint64_t{199}, uint64_t{250}}) {
    auto p = log->consistency_proof(m, 300);
    REQUIRE_MESSAGE(p.ok(), p.error_text());
    CHECK(*p == *full.consistency_proof(m, 300));
  }
  CHECK(*log->tree().inclusion_proof(first, 300) == *full.inclusion_proof(first, 300));
  CHECK(log->tree().inclusion_proof(0, 300).error().code == Errc::not_found);
  REQUIRE(
      log->append_verified(std::span(all).subspan(300, 100), make_head(key, 400, root_of(all, 400)))
          .ok());
  CHECK(log->root() == full.root());
}

TEST_CASE(
    "log: create_at_checkpoint starts a peer at a head; a wrong frontier or head is refused") {
  KeyPair key = KeyPair::generate();
  KeyPair other = KeyPair::generate();
  const std::vector<Bytes> all = make_entries(0, 120);
  std::vector<Hash32> leaves;
  for (const Bytes& e : all) leaves.push_back(entry_leaf_hash(e));
  // The frontier at 77 from a full log tree.
  LogTree source([&](uint64_t first, std::span<Hash32> out) -> Status {
    std::copy_n(leaves.begin() + static_cast<ptrdiff_t>(first), out.size(), out.begin());
    return {};
  });
  for (const Hash32& l : leaves) source.append(l);
  auto frontier = source.frontier(77);
  REQUIRE(frontier.ok());
  const Head head = make_head(key, 77, root_of(all, 77));

  TempDir bad_dir("ckbad");
  auto wrong = *frontier;
  wrong[1][0] ^= 1;
  auto r = Log::create_at_checkpoint(bad_dir.path, key.pub, head, wrong);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::root_mismatch);
  CHECK_FALSE(fs::exists(bad_dir.path / "checkpoint"));  // nothing written
  auto short_frontier = std::vector<Hash32>(frontier->begin(), frontier->end() - 1);
  CHECK(Log::create_at_checkpoint(bad_dir.path, key.pub, head, short_frontier).error().code ==
        Errc::invalid_argument);
  CHECK(Log::create_at_checkpoint(bad_dir.path, other.pub, head, *frontier).error().code ==
        Errc::bad_signature);

  TempDir t("ckpeer");
  {
    auto log = Log::create_at_checkpoint(t.path, key.pub, head, *frontier);
    REQUIRE_MESSAGE(log.ok(), log.error_text());
    CHECK((*log)->size() == 77);
    CHECK((*log)->first_entry() == 77);
    CHECK((*log)->root() == head.log_root);
    REQUIRE((*log)->head());
    REQUIRE(
        (*log)
            ->append_verified(std::span(all).subspan(77, 13), make_head(key, 90, root_of(all, 90)))
            .ok());
  }
  auto log = open_ok(t.path, key.pub);
  CHECK(log->first_entry() == 77);
  CHECK(log->size() == 90);
  CHECK(log->root() == root_of(all, 90));
  // It can serve a consistency proof from its start to its end to a follower.
  MerkleTree full;
  for (const Hash32& l : leaves) full.append(l);
  CHECK(*log->consistency_proof(77, 90) == *full.consistency_proof(77, 90));
  // Not over an existing log.
  CHECK_FALSE(Log::create_at_checkpoint(t.path, key.pub, head, *frontier).ok());
}

}  // namespace
}  // namespace swarmlite
