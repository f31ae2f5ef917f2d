#include "core/log_store.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <fstream>
#include <random>
#include <thread>

#include "core/fault_injection.h"
#include "core/hash.h"
#include "core/temp_dir_test_util.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;
using namespace log_store_format;

Bytes make_record(uint64_t i, size_t len) {
  Bytes b(len);
  for (size_t k = 0; k < len; ++k) b[k] = static_cast<uint8_t>(i * 31 + k * 7 + 1);
  return b;
}

Bytes read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}
void write_file(const fs::path& p, ByteView b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
void flip_byte(const fs::path& p, uint64_t offset) {
  Bytes b = read_file(p);
  REQUIRE(offset < b.size());
  b[offset] ^= 0x40;
  write_file(p, b);
}

std::unique_ptr<LogStore> open_ok(const fs::path& dir, LogStoreOptions o = {}) {
  auto r = LogStore::open(dir, o);
  if (!r.ok()) FAIL(r.error().to_string());
  return std::move(r).value();
}

void check_records(const LogStore& s, uint64_t n, size_t (*len_of)(uint64_t)) {
  REQUIRE(s.size() == n);
  for (uint64_t i = 0; i < n; ++i) {
    auto r = s.read(i);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    CHECK(*r == make_record(i, len_of(i)));
    CHECK(*s.leaf_hash(i) == hash_leaf(*r));
  }
}

size_t varied_len(uint64_t i) { return 10 + (i * 13) % 70; }
size_t fixed_len(uint64_t) { return 40; }

std::string seg_file(uint64_t first) { return fmt::format("seg-{:016x}.log", first); }
std::string idx_file(uint64_t first) { return fmt::format("seg-{:016x}.idx", first); }

// Offset of record i in the first segment when all records are fixed_len.
uint64_t fixed_offset(uint64_t i) { return kFileHeaderBytes + i * (kRecordHeaderBytes + 40); }

// Unsynced, with segments of `segment_bytes`: many segments from few records.
LogStoreOptions small_segments(uint64_t segment_bytes) {
  LogStoreOptions o;
  o.segment_bytes = segment_bytes;
  o.sync = false;
  return o;
}

TEST_CASE("log store: append and read round trip across segment boundaries") {
  TempDir t("rt");
  auto s = open_ok(t.path, small_segments(300));
  CHECK(s->size() == 0);
  CHECK(s->read(0).error().code == Errc::not_found);
  uint64_t n = 0;
  for (; n < 20; ++n) REQUIRE(s->append(make_record(n, varied_len(n))).ok());
  std::vector<Bytes> batch;
  for (uint64_t i = 0; i < 30; ++i) batch.push_back(make_record(n + i, varied_len(n + i)));
  REQUIRE(s->append_batch(batch).ok());
  n += 30;
  check_records(*s, n, varied_len);
  int segments = 0;
  for (const auto& de : fs::directory_iterator(t.path)) {
    segments += de.path().extension() == ".log";
  }
  CHECK(segments > 5);
  CHECK(fs::exists(t.path / seg_file(0)));
}

TEST_CASE("log store: read_range reads runs of records within a segment, up to a count and a byte budget") {
  TempDir t("range");
  auto s = open_ok(t.path, small_segments(1000));
  const uint64_t n = 60;
  for (uint64_t i = 0; i < n; ++i) REQUIRE(s->append(make_record(i, varied_len(i))).ok());
  // Every start, every count: the records read() gives, never past a segment.
  uint64_t total = 0, calls = 0;
  for (uint64_t first = 0; first < n; ++first) {
    for (uint64_t count : {uint64_t{1}, uint64_t{3}, uint64_t{64}}) {
      auto r = s->read_range(first, count, 1 << 20);
      REQUIRE_MESSAGE(r.ok(), r.error_text());
      REQUIRE(!r->empty());
      CHECK(r->size() <= count);
      for (size_t i = 0; i < r->size(); ++i) CHECK((*r)[i] == make_record(first + i, varied_len(first + i)));
      total += r->size();
      ++calls;
    }
  }
  CHECK(total > calls);  // runs longer than one record were read
  // A whole pass in read_range steps gives every record once.
  std::vector<Bytes> all;
  for (uint64_t at = 0; at < n;) {
    auto r = s->read_range(at, 1000, 1 << 20);
    REQUIRE(r.ok());
    at += r->size();
    for (auto& b : *r) all.push_back(std::move(b));
  }
  REQUIRE(all.size() == n);
  // The byte budget: records stop before the budget is passed, but one always comes.
  auto budget = s->read_range(0, 100, varied_len(0) + varied_len(1));
  REQUIRE(budget.ok());
  CHECK(budget->size() == 2);
  auto one = s->read_range(0, 100, 1);
  REQUIRE(one.ok());
  CHECK(one->size() == 1);
  CHECK(s->read_range(n, 1, 100).error().code == Errc::not_found);
  CHECK(s->read_range(0, 0, 100)->empty());
}

TEST_CASE("log store: reopen keeps everything and appends continue") {
  TempDir t("reopen");
  LogStoreOptions o;
  o.segment_bytes = 500;
  {
    auto s = open_ok(t.path, o);
    for (uint64_t i = 0; i < 40; i += 4) {
      std::vector<Bytes> b;
      for (uint64_t k = i; k < i + 4; ++k) b.push_back(make_record(k, varied_len(k)));
      REQUIRE(s->append_batch(b).ok());
    }
  }
  {
    auto s = open_ok(t.path, o);
    CHECK(s->recovered_bytes() == 0);
    check_records(*s, 40, varied_len);
    REQUIRE(s->append(make_record(40, varied_len(40))).ok());
  }
  auto s = open_ok(t.path, o);
  check_records(*s, 41, varied_len);
}

// Builds a store with `n` fixed-size records in one segment and returns the
// segment and index bytes before and after the last record was appended.
struct Snapshot {
  Bytes seg_before, idx_before, seg_after, idx_after;
};
// Files as a store without preallocation writes them: the file ends where its
// records end (the byte-level tear tests below; "Preallocation" tests further
// down cover zero-filled tails).
// No preallocation, and index rows written at every append: the files read
// between appends are what a crash right there would leave.
LogStoreOptions no_prealloc() {
  LogStoreOptions o;
  o.preallocate_bytes = 0;
  o.index_write_rows = 1;
  return o;
}

Snapshot build_snapshot(const fs::path& dir, uint64_t n, LogStoreOptions o = no_prealloc()) {
  Snapshot snap;
  auto s = open_ok(dir, o);
  for (uint64_t i = 0; i + 1 < n; ++i) REQUIRE(s->append(make_record(i, fixed_len(i))).ok());
  snap.seg_before = read_file(dir / seg_file(0));
  snap.idx_before = read_file(dir / idx_file(0));
  REQUIRE(s->append(make_record(n - 1, fixed_len(n - 1))).ok());
  snap.seg_after = read_file(dir / seg_file(0));
  snap.idx_after = read_file(dir / idx_file(0));
  return snap;
}

// What recovery reports for a torn tail holding bytes [from, to) of `seg`: the
// bytes up to the last nonzero one (a tail of zeros reads as preallocation).
uint64_t torn_bytes(const Bytes& seg, uint64_t from, uint64_t to) {
  uint64_t end = from;
  for (uint64_t i = from; i < to; ++i)
    if (seg[i] != 0) end = i + 1;
  return end - from;
}

// After the torn last record was cut: appending it again gives the snapshot's
// files byte for byte, and they reopen clean.
void check_reappended(const fs::path& dir, const Snapshot& snap, uint64_t n) {
  CHECK(read_file(dir / seg_file(0)) == snap.seg_after);
  CHECK(read_file(dir / idx_file(0)) == snap.idx_after);
  auto s = open_ok(dir);
  CHECK(s->recovered_bytes() == 0);
  check_records(*s, n, fixed_len);
}

TEST_CASE("log store: torn tail is cut on reopen at every byte offset of the last record") {
  TempDir src("torn-src");
  const uint64_t n = 5;
  Snapshot snap;
  {
    snap = build_snapshot(src.path, n);
  }
  REQUIRE(snap.seg_after.size() == snap.seg_before.size() + kRecordHeaderBytes + 40);
  // A crash before the append returned leaves its index rows absent or partial
  // (they are written after the segment's fsync) and the record cut anywhere.
  for (size_t cut = snap.seg_before.size(); cut < snap.seg_after.size(); ++cut) {
    CAPTURE(cut);
    TempDir t("torn");
    fs::create_directories(t.path);
    write_file(t.path / seg_file(0), ByteView(snap.seg_after).first(cut));
    size_t idx_len = snap.idx_before.size() + (cut % 3 == 0 ? cut % kIndexRowBytes : 0);
    write_file(t.path / idx_file(0), ByteView(snap.idx_after).first(idx_len));
    {
      // (A cut inside the record's leading zero length bytes leaves zeros only.)
      auto s = open_ok(t.path, no_prealloc());
      CHECK(s->recovered_bytes() == torn_bytes(snap.seg_after, snap.seg_before.size(), cut));
      check_records(*s, n - 1, fixed_len);
      REQUIRE(s->append(make_record(n - 1, fixed_len(n - 1))).ok());
    }
    check_reappended(t.path, snap, n);
  }
}

TEST_CASE("log store: a torn batch keeps its complete records and cuts a bad last one") {
  TempDir src("tornb-src");
  Snapshot snap = build_snapshot(src.path, 6);
  TempDir t("tornb");
  fs::create_directories(t.path);
  // Index rows of the last 3 records lost; the last record's checksum broken.
  Bytes seg = snap.seg_after;
  seg.back() ^= 1;
  write_file(t.path / seg_file(0), seg);
  write_file(t.path / idx_file(0),
             ByteView(snap.idx_after).first(snap.idx_after.size() - 3 * kIndexRowBytes));
  auto s = open_ok(t.path, no_prealloc());
  CHECK(s->recovered_bytes() == kRecordHeaderBytes + 40);
  check_records(*s, 5, fixed_len);
  CHECK(read_file(t.path / idx_file(0)).size() == kFileHeaderBytes + 5 * kIndexRowBytes);
}

TEST_CASE("log store: read_range finds a flipped byte in any record of a run, naming file and offset") {
  TempDir t("range-flip");
  { build_snapshot(t.path, 6); }
  flip_byte(t.path / seg_file(0), fixed_offset(3) + kRecordHeaderBytes + 5);
  auto s = open_ok(t.path);
  auto r = s->read_range(0, 6, 1 << 20);
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::corrupt);
  CHECK(r.error().message.find(seg_file(0)) != std::string::npos);
  CHECK(r.error().message.find(fmt::format("offset {}", fixed_offset(3))) != std::string::npos);
  auto before = s->read_range(0, 3, 1 << 20);
  REQUIRE(before.ok());
  CHECK(before->size() == 3);
}

TEST_CASE("log store: a flipped byte in an indexed record is corrupt, naming file and offset") {
  TempDir t("flip");
  { build_snapshot(t.path, 6); }
  SUBCASE("middle record: read and verify_all fail, nothing is cut") {
    flip_byte(t.path / seg_file(0), fixed_offset(2) + kRecordHeaderBytes + 5);
    auto s = open_ok(t.path);
    auto r = s->read(2);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::corrupt);
    CHECK(r.error().message.find(seg_file(0)) != std::string::npos);
    CHECK(r.error().message.find(fmt::format("offset {}", fixed_offset(2))) != std::string::npos);
    auto v = s->verify_all();
    REQUIRE(!v.ok());
    CHECK(v.error().code == Errc::corrupt);
    CHECK(s->read(3).ok());
    CHECK(s->size() == 6);
  }
  SUBCASE("middle record's header checksum: reads serve the intact payload, verify_all fails") {
    // A read checks the payload against its index row's leaf hash and skips
    // the header's checksum (docs/formats/log-store.md "Opening and recovery"); the scrub
    // checks both, as a rebuilt index would end at this record.
    flip_byte(t.path / seg_file(0), fixed_offset(2) + 4 + 7);
    auto s = open_ok(t.path);
    auto r = s->read(2);
    REQUIRE(r.ok());
    CHECK(r->size() == 40);
    auto run = s->read_range(0, 6, 1 << 20);
    REQUIRE(run.ok());
    CHECK(run->size() == 6);
    auto v = s->verify_all();
    REQUIRE(!v.ok());
    CHECK(v.error().code == Errc::corrupt);
    CHECK(v.error().message.find("checksum") != std::string::npos);
    CHECK(v.error().message.find(fmt::format("offset {}", fixed_offset(2))) != std::string::npos);
  }
  SUBCASE("last indexed record's header checksum: open fails") {
    flip_byte(t.path / seg_file(0), fixed_offset(5) + 4 + 7);
    CHECK(LogStore::open(t.path).error().code == Errc::corrupt);
  }
  SUBCASE("last indexed record: open fails") {
    flip_byte(t.path / seg_file(0), fixed_offset(5) + 3);
    auto r = LogStore::open(t.path);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::corrupt);
    CHECK(r.error().message.find(seg_file(0)) != std::string::npos);
    CHECK(r.error().message.find(fmt::format("offset {}", fixed_offset(5))) != std::string::npos);
  }
  SUBCASE("with the index deleted, a bad record followed by more data is never cut") {
    flip_byte(t.path / seg_file(0), fixed_offset(2) + kRecordHeaderBytes);
    fs::remove(t.path / idx_file(0));
    auto size_before = fs::file_size(t.path / seg_file(0));
    auto r = LogStore::open(t.path);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::corrupt);
    CHECK(r.error().message.find(fmt::format("offset {}", fixed_offset(2))) != std::string::npos);
    CHECK(fs::file_size(t.path / seg_file(0)) == size_before);
  }
}

TEST_CASE("log store: a bad record in a segment that is not the last is corrupt") {
  TempDir t("flipseg");
  LogStoreOptions o;
  o.segment_bytes = 200;
  {
    auto s = open_ok(t.path, o);
    for (uint64_t i = 0; i < 10; ++i) REQUIRE(s->append(make_record(i, fixed_len(i))).ok());
  }
  // 200-byte segments hold 3 records of 60 bytes after the 16-byte header.
  flip_byte(t.path / seg_file(0), fixed_offset(2) + kRecordHeaderBytes + 1);
  auto r = LogStore::open(t.path, o);
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::corrupt);
  CHECK(r.error().message.find(seg_file(0)) != std::string::npos);
  CHECK(r.error().message.find(fmt::format("offset {}", fixed_offset(2))) != std::string::npos);
}

TEST_CASE("log store: a flipped offset or length in a sealed segment's index is corrupt") {
  TempDir t("idxseg");
  LogStoreOptions o;
  o.segment_bytes = 200;
  {
    auto s = open_ok(t.path, o);
    for (uint64_t i = 0; i < 10; ++i) REQUIRE(s->append(make_record(i, fixed_len(i))).ok());
  }
  flip_byte(t.path / idx_file(0), kFileHeaderBytes + 1 * kIndexRowBytes + 9);
  auto r = LogStore::open(t.path, o);
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::corrupt);
  CHECK(r.error().message.find(idx_file(0)) != std::string::npos);
  CHECK(r.error().message.find(fmt::format("offset {}", kFileHeaderBytes + kIndexRowBytes)) !=
        std::string::npos);
}

// The index is synced lazily, so a crash can leave it any number of rows behind
// the segment (or end in a partial row): every such state reopens to the full log.
TEST_CASE("log store: an index behind its segment by k rows is rebuilt on reopen") {
  TempDir src("behind-src");
  const uint64_t n = 12;
  { build_snapshot(src.path, n); }
  const Bytes seg = read_file(src.path / seg_file(0));
  const Bytes idx = read_file(src.path / idx_file(0));
  REQUIRE(idx.size() == kFileHeaderBytes + n * kIndexRowBytes);
  for (uint64_t k = 0; k <= n; ++k) {
    for (size_t partial : {size_t{0}, size_t{17}}) {
      CAPTURE(k);
      CAPTURE(partial);
      if (k == 0 && partial > 0) continue;
      TempDir t("behind");
      fs::create_directories(t.path);
      write_file(t.path / seg_file(0), seg);
      write_file(t.path / idx_file(0),
                 ByteView(idx).first(idx.size() - k * kIndexRowBytes + partial));
      {
        auto s = open_ok(t.path);
        CHECK(s->rebuilt_index_rows() == k);
        CHECK(s->dropped_index_rows() == 0);
        CHECK(s->recovered_bytes() == 0);
        check_records(*s, n, fixed_len);
        REQUIRE(s->append(make_record(n, fixed_len(n))).ok());
      }
      Bytes idx_now = read_file(t.path / idx_file(0));
      REQUIRE(idx_now.size() == idx.size() + kIndexRowBytes);
      CHECK(Bytes(idx_now.begin(), idx_now.begin() + static_cast<std::ptrdiff_t>(idx.size())) == idx);
      auto s = open_ok(t.path);
      CHECK(s->rebuilt_index_rows() == 0);
      check_records(*s, n + 1, fixed_len);
    }
  }
}

TEST_CASE("log store: an index behind its segment and a torn tail: rows rebuilt, tail cut") {
  TempDir src("behindt-src");
  Snapshot snap = build_snapshot(src.path, 8);
  TempDir t("behindt");
  fs::create_directories(t.path);
  // 5 rows lost, and half of a 9th record that was being appended.
  Bytes seg = snap.seg_after;
  Bytes half = make_record(99, 40);
  seg.insert(seg.end(), half.begin(), half.begin() + 30);
  write_file(t.path / seg_file(0), seg);
  write_file(t.path / idx_file(0), ByteView(snap.idx_after).first(kFileHeaderBytes + 3 * kIndexRowBytes));
  auto s = open_ok(t.path);
  CHECK(s->rebuilt_index_rows() == 5);
  CHECK(s->recovered_bytes() == 30);
  check_records(*s, 8, fixed_len);
  CHECK(read_file(t.path / idx_file(0)) == snap.idx_after);
}

TEST_CASE("log store: an index ahead of a torn segment has its extra rows cut") {
  // Rows that reached the disk while their records did not (sync off, then a
  // power loss): the segment is the truth.
  TempDir t("ahead");
  Snapshot snap = build_snapshot(t.path, 6);
  SUBCASE("the last record cut in its payload") {
    fs::resize_file(t.path / seg_file(0), fixed_offset(5) + 30);
    auto s = open_ok(t.path);
    CHECK(s->dropped_index_rows() == 1);
    CHECK(s->recovered_bytes() == 30);
    check_records(*s, 5, fixed_len);
    CHECK(read_file(t.path / idx_file(0)) == snap.idx_before);
  }
  SUBCASE("three records gone") {
    fs::resize_file(t.path / seg_file(0), fixed_offset(3));
    auto s = open_ok(t.path);
    CHECK(s->dropped_index_rows() == 3);
    CHECK(s->recovered_bytes() == 0);
    check_records(*s, 3, fixed_len);
    REQUIRE(s->append(make_record(3, fixed_len(3))).ok());
    CHECK(s->size() == 4);
  }
}

TEST_CASE("log store: a torn or zero-filled index tail is dropped and rebuilt") {
  TempDir t("zeros");
  Snapshot snap = build_snapshot(t.path, 6);
  SUBCASE("zero-filled rows after the last one") {
    Bytes idx = snap.idx_after;
    idx.resize(idx.size() + 3 * kIndexRowBytes, 0);
    write_file(t.path / idx_file(0), idx);
  }
  SUBCASE("the last row's leaf hash zeroed (a row torn across two pages)") {
    Bytes idx = snap.idx_after;
    std::fill(idx.end() - 20, idx.end(), uint8_t{0});
    write_file(t.path / idx_file(0), idx);
  }
  SUBCASE("the last row's length and leaf hash zeroed") {
    Bytes idx = snap.idx_after;
    std::fill(idx.end() - 36, idx.end(), uint8_t{0});
    write_file(t.path / idx_file(0), idx);
  }
  {
    auto s = open_ok(t.path);
    CHECK(s->recovered_bytes() == 0);
    CHECK(s->dropped_index_rows() >= 1);
    check_records(*s, 6, fixed_len);
  }
  CHECK(read_file(t.path / idx_file(0)) == snap.idx_after);
}

TEST_CASE("log store: index damage is detected or the index is rebuilt") {
  TempDir t("idx");
  { build_snapshot(t.path, 6); }
  SUBCASE("a flipped offset or length in the last segment's index: rows rebuilt from the segment") {
    Bytes idx = read_file(t.path / idx_file(0));
    flip_byte(t.path / idx_file(0), kFileHeaderBytes + 2 * kIndexRowBytes + 9);
    {
      auto s = open_ok(t.path);
      CHECK(s->dropped_index_rows() == 4);
      CHECK(s->rebuilt_index_rows() == 4);
      CHECK(s->recovered_bytes() == 0);
      check_records(*s, 6, fixed_len);
    }
    CHECK(read_file(t.path / idx_file(0)) == idx);
  }
  SUBCASE("a flipped leaf hash is corrupt on read") {
    flip_byte(t.path / idx_file(0), kFileHeaderBytes + 1 * kIndexRowBytes + 20);
    auto s = open_ok(t.path);
    auto r = s->read(1);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::corrupt);
    CHECK(r.error().message.find(idx_file(0)) != std::string::npos);
    CHECK(!s->verify_all().ok());
  }
  SUBCASE("a missing index is rebuilt from the segment") {
    Bytes idx = read_file(t.path / idx_file(0));
    fs::remove(t.path / idx_file(0));
    {
      auto s = open_ok(t.path);
      check_records(*s, 6, fixed_len);
    }
    CHECK(read_file(t.path / idx_file(0)) == idx);
  }
  SUBCASE("a bad index header is corrupt") {
    flip_byte(t.path / idx_file(0), 1);
    auto r = LogStore::open(t.path);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::corrupt);
  }
}

TEST_CASE("log store: record over the cap is refused and a batch is all or nothing") {
  TempDir t("cap");
  LogStoreOptions o;
  o.max_record_bytes = 100;
  auto s = open_ok(t.path, o);
  REQUIRE(s->append(make_record(0, 100)).ok());
  auto seg_before = read_file(t.path / seg_file(0));
  std::vector<Bytes> batch = {make_record(1, 50), make_record(2, 101)};
  auto st = s->append_batch(batch);
  REQUIRE(!st.ok());
  CHECK(st.error().code == Errc::too_large);
  CHECK(s->size() == 1);
  CHECK(read_file(t.path / seg_file(0)) == seg_before);
  CHECK(s->append(make_record(1, 101)).error().code == Errc::too_large);
  REQUIRE(s->append(make_record(1, 50)).ok());
  CHECK(s->size() == 2);
  s.reset();
  // A reader with a smaller cap refuses before allocating.
  LogStoreOptions small = o;
  small.max_record_bytes = 60;
  auto r = LogStore::open(t.path, small);
  REQUIRE(r.ok());
  CHECK((*r)->read(0).error().code == Errc::too_large);
  CHECK((*r)->read(1).ok());
}

// The two-step append (docs/formats/log-store.md "Two-step append"): a written
// batch is invisible until sync_batch appends it; one batch at a time; a
// failed fdatasync appends nothing, refuses later appends, and reopening
// recovers the records the file holds.
TEST_CASE("log store: write_batch then sync_batch; readers see the batch only once synced") {
  TempDir t("two-step");
  auto s = open_ok(t.path);
  REQUIRE(s->append(make_record(0, 40)).ok());
  CHECK(s->sync_batch().ok());  // nothing written: nothing to do
  CHECK(s->size() == 1);
  const std::vector<Bytes> batch = {make_record(1, 40), make_record(2, 40)};
  REQUIRE(s->write_batch(batch, {}).ok());
  CHECK(s->size() == 1);
  CHECK(s->read(1).error().code == Errc::not_found);
  Hash32 leaf{};
  CHECK(s->leaf_hashes(1, std::span(&leaf, 1)).error().code == Errc::not_found);
  const std::vector<Bytes> next = {make_record(3, 40)};
  auto second = s->write_batch(next, {});
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code == Errc::internal);
  REQUIRE(s->sync_batch().ok());
  check_records(*s, 3, fixed_len);
  REQUIRE(s->write_batch(next, {}).ok());
  REQUIRE(s->sync_batch().ok());
  check_records(*s, 4, fixed_len);
  s.reset();
  check_records(*open_ok(t.path), 4, fixed_len);

  {
    auto f = open_ok(t.path);
    const std::vector<Bytes> more = {make_record(4, 40)};
    REQUIRE(f->write_batch(more, {}).ok());
    fault_injection::fail_syncs_under(t.path);
    auto synced = f->sync_batch();
    REQUIRE_FALSE(synced.ok());
    CHECK(synced.error().code == Errc::io_error);
    CHECK(f->size() == 4);
    CHECK(f->read(4).error().code == Errc::not_found);
    fault_injection::clear();
    auto refused = f->append(make_record(4, 40));
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message.find("reopen") != std::string::npos);
  }
  fault_injection::clear();
  // The record reached the file after all (only its fdatasync "failed"):
  // reopening recovers it as any whole record after the indexed ones.
  check_records(*open_ok(t.path), 5, fixed_len);
}

TEST_CASE("log store: head is stored atomically and loaded") {
  TempDir t("head");
  {
    auto s = open_ok(t.path);
    auto h = s->load_head();
    REQUIRE(h.ok());
    CHECK(!h->has_value());
    REQUIRE(s->store_head(make_record(1, 200)).ok());
    REQUIRE(s->store_head(make_record(2, 201)).ok());
    CHECK(**s->load_head() == make_record(2, 201));
    CHECK(!fs::exists(t.path / "head.tmp"));
  }
  auto s = open_ok(t.path);
  CHECK(**s->load_head() == make_record(2, 201));
  CHECK(s->store_head(Bytes(kMaxHeadFileBytes + 1)).error().code == Errc::too_large);
}

TEST_CASE("log store: without sync_head the head is written unsynced now and then, and on close") {
  TempDir t("lazyhead");
  LogStoreOptions o;
  o.sync_head = false;
  o.head_write_interval_ms = 3'600'000;  // only the first head is written before close
  {
    auto s = open_ok(t.path, o);
    REQUIRE(s->store_head(make_record(1, 200)).ok());
    REQUIRE(s->store_head(make_record(2, 201)).ok());
    CHECK(**s->load_head() == make_record(2, 201));
    // What a crash (kill -9) now leaves on disk: the first head, not the newest.
    CHECK(read_file(t.path / "head") == make_record(1, 200));
    CHECK(s->store_head(Bytes(kMaxHeadFileBytes + 1)).error().code == Errc::too_large);
  }
  CHECK(!fs::exists(t.path / "head.tmp"));
  {
    auto s = open_ok(t.path, o);
    CHECK(**s->load_head() == make_record(2, 201));
  }
  // What a crash can leave of a head whose rename reached the disk before its bytes.
  write_file(t.path / "head", {});
  auto s = open_ok(t.path, o);
  auto h = s->load_head();
  REQUIRE(h.ok());
  CHECK(!h->has_value());
}

TEST_CASE("log store: without sync_head and a zero interval every head reaches the file at once") {
  TempDir t("lazyhead0");
  LogStoreOptions o;
  o.sync_head = false;
  o.head_write_interval_ms = 0;
  auto s = open_ok(t.path, o);
  REQUIRE(s->store_head(make_record(1, 200)).ok());
  REQUIRE(s->store_head(make_record(2, 201)).ok());
  CHECK(read_file(t.path / "head") == make_record(2, 201));
}

TEST_CASE("log store: the index is synced every index_sync_rows rows and on close") {
  // Not observable without a crash; this pins that the option does not change
  // what is stored, for batches that cross the sync point.
  TempDir t("idxsync");
  LogStoreOptions o;
  o.index_sync_rows = 3;
  o.segment_bytes = 400;
  {
    auto s = open_ok(t.path, o);
    uint64_t n = 0;
    for (uint64_t b : {1, 2, 4, 1, 5}) {
      std::vector<Bytes> batch;
      for (uint64_t i = 0; i < b; ++i, ++n) batch.push_back(make_record(n, varied_len(n)));
      REQUIRE(s->append_batch(batch).ok());
    }
  }
  auto s = open_ok(t.path, o);
  CHECK(s->rebuilt_index_rows() == 0);
  CHECK(s->dropped_index_rows() == 0);
  check_records(*s, 13, varied_len);
}

TEST_CASE("log store: a second open of the same directory is refused") {
  TempDir t("lock");
  auto s = open_ok(t.path);
  auto r = LogStore::open(t.path);
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::unavailable);
  s.reset();
  CHECK(LogStore::open(t.path).ok());
}

TEST_CASE("log store: a crash while creating a segment is repaired") {
  TempDir t("newseg");
  { build_snapshot(t.path, 3); }
  // The next segment's file exists with a partial header and no index.
  write_file(t.path / seg_file(3), ByteView(reinterpret_cast<const uint8_t*>("swl-s"), 5));
  {
    auto s = open_ok(t.path);
    CHECK(s->recovered_bytes() == 5);
    check_records(*s, 3, fixed_len);
    REQUIRE(s->append(make_record(3, fixed_len(3))).ok());
  }
  auto s = open_ok(t.path);
  check_records(*s, 4, fixed_len);
}

// Preallocation (docs/formats/log-store.md): with sync on, the segment file is
// zero-filled ahead of its records; open() takes an all-zero tail for what it is.
TEST_CASE("log store: preallocation zero-fills ahead of the records; reopen keeps it, cuts nothing") {
  TempDir t("prealloc");
  TempDir plain("prealloc-plain");
  const uint64_t step = LogStoreOptions{}.preallocate_bytes;
  REQUIRE(step == 256 << 10);
  {
    auto s = open_ok(t.path);
    auto p = open_ok(plain.path, no_prealloc());
    for (uint64_t i = 0; i < 10; ++i) {
      REQUIRE(s->append(make_record(i, varied_len(i))).ok());
      REQUIRE(p->append(make_record(i, varied_len(i))).ok());
    }
  }
  // The same records, then zeros to the step.
  const Bytes want = read_file(plain.path / seg_file(0));
  Bytes seg = read_file(t.path / seg_file(0));
  REQUIRE(seg.size() == step);
  CHECK(Bytes(seg.begin(), seg.begin() + static_cast<std::ptrdiff_t>(want.size())) == want);
  CHECK(std::all_of(seg.begin() + static_cast<std::ptrdiff_t>(want.size()), seg.end(),
                    [](uint8_t b) { return b == 0; }));
  {
    auto s = open_ok(t.path);
    CHECK(s->recovered_bytes() == 0);
    CHECK(s->rebuilt_index_rows() == 0);
    CHECK(s->dropped_index_rows() == 0);
    check_records(*s, 10, varied_len);
    CHECK(fs::file_size(t.path / seg_file(0)) == step);  // kept, not cut
    // The next append goes where the records end, not after the zeros.
    REQUIRE(s->append(make_record(10, varied_len(10))).ok());
  }
  CHECK(fs::file_size(t.path / seg_file(0)) == step);
  // Without its index, the segment is scanned: the zeros are no record.
  fs::remove(t.path / idx_file(0));
  auto s = open_ok(t.path);
  CHECK(s->recovered_bytes() == 0);
  CHECK(s->rebuilt_index_rows() == 11);
  check_records(*s, 11, varied_len);
}

TEST_CASE("log store: preallocation grows in steps, never past segment_bytes; sealed segments are trimmed") {
  TempDir t("prealloc-grow");
  LogStoreOptions o;
  o.segment_bytes = (5 << 20) / 2;  // 2.5 MiB
  o.max_record_bytes = 1 << 20;
  o.preallocate_bytes = 1 << 20;  // steps larger than a record (not the default)
  const uint64_t step = o.preallocate_bytes;
  auto big = [](uint64_t) -> size_t { return 300 << 10; };
  const uint64_t rec = kRecordHeaderBytes + (300 << 10);
  {
    auto s = open_ok(t.path, o);
    for (uint64_t i = 0; i < 4; ++i) {
      REQUIRE(s->append(make_record(i, big(i))).ok());
      const uint64_t end = kFileHeaderBytes + (i + 1) * rec;
      CAPTURE(i);
      CHECK(fs::file_size(t.path / seg_file(0)) == (end + step - 1) / step * step);
    }
    // 8 records fill the first segment to 2.4 MiB: its preallocation stops at
    // segment_bytes, not at the next MiB.
    for (uint64_t i = 4; i < 8; ++i) REQUIRE(s->append(make_record(i, big(i))).ok());
    CHECK(fs::file_size(t.path / seg_file(0)) == o.segment_bytes);
    // The 9th starts a new segment: the first is cut to its records first.
    REQUIRE(s->append(make_record(8, big(8))).ok());
    CHECK(fs::file_size(t.path / seg_file(0)) == kFileHeaderBytes + 8 * rec);
    CHECK(fs::file_size(t.path / seg_file(8)) == step);
  }
  auto s = open_ok(t.path, o);
  CHECK(s->recovered_bytes() == 0);
  check_records(*s, 9, big);
}

TEST_CASE("log store: a torn append in the preallocated part is cut; zeros alone are kept") {
  TempDir src("prealloc-torn-src");
  const uint64_t n = 5;
  LogStoreOptions prealloc;
  prealloc.index_write_rows = 1;  // the index file between appends is complete
  Snapshot snap = build_snapshot(src.path, n, prealloc);
  const uint64_t step = LogStoreOptions{}.preallocate_bytes;
  REQUIRE(snap.seg_before.size() == step);
  REQUIRE(snap.seg_after.size() == step);
  const uint64_t before_end = fixed_offset(n - 1);
  const uint64_t after_end = fixed_offset(n);
  // A crash while the last append was being written: any prefix of its record
  // over the synced zeros, its index row absent or partial.
  for (uint64_t cut = before_end; cut <= after_end; ++cut) {
    CAPTURE(cut);
    TempDir t("prealloc-torn");
    fs::create_directories(t.path);
    Bytes seg = snap.seg_after;
    std::fill(seg.begin() + static_cast<std::ptrdiff_t>(cut), seg.end(), 0);
    write_file(t.path / seg_file(0), seg);
    size_t idx_len = snap.idx_before.size() + (cut % 3 == 0 ? cut % kIndexRowBytes : 0);
    write_file(t.path / idx_file(0), ByteView(snap.idx_after).first(idx_len));
    {
      auto s = open_ok(t.path);
      if (cut == after_end) {
        CHECK(s->recovered_bytes() == 0);
        CHECK(s->rebuilt_index_rows() == 1);
        check_records(*s, n, fixed_len);
        continue;
      }
      CHECK(s->recovered_bytes() == torn_bytes(seg, before_end, cut));
      check_records(*s, n - 1, fixed_len);
      REQUIRE(s->append(make_record(n - 1, fixed_len(n - 1))).ok());
    }
    check_reappended(t.path, snap, n);
  }
}

TEST_CASE("log store: no preallocation without sync or with preallocate_bytes 0") {
  for (bool sync : {false, true}) {
    CAPTURE(sync);
    TempDir t("prealloc-off");
    LogStoreOptions o;
    o.sync = sync;
    if (sync) o.preallocate_bytes = 0;
    {
      auto s = open_ok(t.path, o);
      for (uint64_t i = 0; i < 3; ++i) REQUIRE(s->append(make_record(i, fixed_len(i))).ok());
    }
    CHECK(fs::file_size(t.path / seg_file(0)) == fixed_offset(3));
  }
}

TEST_CASE("log store: reads run concurrently with appends") {
  TempDir t("conc");
  LogStoreOptions o;
  o.segment_bytes = 4096;
  o.sync = false;
  auto s = open_ok(t.path, o);
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    std::mt19937_64 rng(7);
    while (!done.load()) {
      uint64_t n = s->size();
      if (n == 0) continue;
      uint64_t i = rng() % n;
      auto r = s->read(i);
      if (!r.ok() || *r != make_record(i, varied_len(i))) ++bad;
    }
  });
  for (uint64_t i = 0; i < 2000; ++i) REQUIRE(s->append(make_record(i, varied_len(i))).ok());
  done = true;
  reader.join();
  CHECK(bad.load() == 0);
}

TEST_CASE("log store: leaf_hashes read ranges across segments, concurrently with appends") {
  TempDir t("leaves");
  LogStoreOptions o;
  o.segment_bytes = 4096;  // ~60 records per segment: ranges span several
  o.sync = false;
  auto s = open_ok(t.path, o);
  std::atomic<bool> done{false};
  std::atomic<int> bad{0}, checked{0};
  std::vector<std::thread> readers;
  for (int k = 0; k < 3; ++k) {
    readers.emplace_back([&, k] {
      std::mt19937_64 rng(static_cast<uint64_t>(k));
      while (!done.load()) {
        uint64_t n = s->size();
        if (n == 0) continue;
        uint64_t first = rng() % n;
        std::vector<Hash32> out(1 + rng() % (n - first));
        if (!s->leaf_hashes(first, out).ok()) {
          ++bad;
          continue;
        }
        for (size_t i = 0; i < out.size(); ++i) {
          if (out[i] != hash_leaf(make_record(first + i, varied_len(first + i)))) ++bad;
        }
        ++checked;
      }
    });
  }
  const size_t mem_at_start = s->memory_bytes();
  for (uint64_t i = 0; i < 3000; ++i) REQUIRE(s->append(make_record(i, varied_len(i))).ok());
  done = true;
  for (auto& r : readers) r.join();
  CHECK(bad.load() == 0);
  CHECK(checked.load() > 0);
  // Past the end: not_found, nothing half-filled is reported as success.
  std::vector<Hash32> out(2);
  auto past = s->leaf_hashes(2999, out);
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().code == Errc::not_found);
  // Nothing per record is kept in memory: the ~50 segments cost a few hundred
  // bytes each, where a row per record (48 bytes) would be 144,000.
  CHECK(s->memory_bytes() - mem_at_start < 50 * 1000);
  MESSAGE("store of 3000 records in ", s->size() / 60, "+ segments: ", s->memory_bytes(),
          " bytes");
}

TEST_CASE("log store: index rows held in memory are read from there, written in groups") {
  // Rows wait in the segment's tail until index_write_rows of them are (or a
  // sync, a sealed segment, close): reads must find them there and in the file
  // on either side of the boundary, a crash loses only rows open() rebuilds,
  // and a clean close leaves none to rebuild (docs/formats/log-store.md).
  TempDir t("tail");
  LogStoreOptions o;
  o.segment_bytes = 16 << 10;  // ~200 records of ~50 bytes: segments seal with a tail
  o.index_write_rows = 32;
  o.index_sync_rows = 100;
  o.preallocate_bytes = 4096;
  std::mt19937_64 rng(20261205);
  uint64_t n = 0;
  {
    auto s = open_ok(t.path, o);
    const auto idx_rows = [&](uint64_t first) {
      return (fs::file_size(t.path / idx_file(first)) - kFileHeaderBytes) / kIndexRowBytes;
    };
    while (n < 1500) {
      const uint64_t batch = 1 + rng() % 5;
      std::vector<Bytes> recs;
      for (uint64_t i = 0; i < batch; ++i) recs.push_back(make_record(n + i, varied_len(n + i)));
      REQUIRE(s->append_batch(recs).ok());
      n += batch;
      // Every record of the last 40 (tail and file), and a run across them.
      for (uint64_t i = n > 40 ? n - 40 : 0; i < n; ++i) {
        auto r = s->read(i);
        REQUIRE_MESSAGE(r.ok(), r.error_text());
        CHECK(*r == make_record(i, varied_len(i)));
        CHECK(*s->leaf_hash(i) == hash_leaf(*r));
      }
      const uint64_t first = rng() % n;
      std::vector<Hash32> leaves(n - first);
      REQUIRE(s->leaf_hashes(first, leaves).ok());
      for (size_t i = 0; i < leaves.size(); ++i) {
        CHECK(leaves[i] == hash_leaf(make_record(first + i, varied_len(first + i))));
      }
      auto range = s->read_range(first, n - first, 1 << 20);
      REQUIRE(range.ok());
      REQUIRE(!range->empty());
      CHECK(range->back() == make_record(first + range->size() - 1,
                                         varied_len(first + range->size() - 1)));
    }
    // The last segment's file lags by less than a group of rows.
    std::vector<uint64_t> firsts;
    for (const auto& e : fs::directory_iterator(t.path)) {
      const std::string name = e.path().filename().string();
      if (name.ends_with(".idx")) firsts.push_back(std::stoull(name.substr(4, 16), nullptr, 16));
    }
    std::sort(firsts.begin(), firsts.end());
    REQUIRE(firsts.size() > 3);
    for (size_t k = 0; k + 1 < firsts.size(); ++k) {
      CHECK(idx_rows(firsts[k]) == firsts[k + 1] - firsts[k]);  // sealed: complete
    }
    const uint64_t in_file = idx_rows(firsts.back());
    CHECK(firsts.back() + in_file <= n);
    CHECK(n - (firsts.back() + in_file) < 32 + 5);
    // What kill -9 leaves now: rows not yet written are rebuilt from the segment.
    TempDir crash("tail-crash");
    fs::copy(t.path, crash.path);
    fs::remove(crash.path / "LOCK");
    auto c = open_ok(crash.path, o);
    CHECK(c->rebuilt_index_rows() == n - (firsts.back() + in_file));
    check_records(*c, n, varied_len);
  }
  // Closed cleanly: every row is in the index file.
  auto s = open_ok(t.path, o);
  CHECK(s->rebuilt_index_rows() == 0);
  check_records(*s, n, varied_len);
}

// ---- Checkpoint and compaction (docs/formats/log-store.md) ----

LogCheckpoint test_checkpoint(uint64_t first) {
  LogCheckpoint cp;
  cp.first_seq = first;
  for (int i = 0; i < std::popcount(first); ++i)
    cp.frontier.push_back(hash_leaf(make_record(99, 5 + i)));
  if (first > 0) cp.head = make_record(first, 64);
  return cp;
}

std::vector<uint64_t> segment_firsts(const fs::path& dir) {
  std::vector<uint64_t> out;
  for (const auto& de : fs::directory_iterator(dir)) {
    const std::string name = de.path().filename().string();
    if (name.size() == 24 && name.ends_with(".log"))
      out.push_back(std::stoull(name.substr(4, 16), nullptr, 16));
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_CASE("log checkpoint: encode/decode round trip; damage and bad shapes are refused") {
  for (uint64_t first : {uint64_t{0}, uint64_t{1}, uint64_t{6}, uint64_t{1} << 40, ~uint64_t{0}}) {
    LogCheckpoint cp = test_checkpoint(first);
    Bytes b = encode_checkpoint(cp);
    auto back = decode_checkpoint(b);
    REQUIRE_MESSAGE(back.ok(), back.error_text());
    CHECK(*back == cp);
    // Every flipped byte and every truncation is refused, never a crash.
    for (size_t i = 0; i < b.size(); ++i) {
      Bytes bad = b;
      bad[i] ^= 0x01;
      CHECK_FALSE(decode_checkpoint(bad).ok());
      CHECK_FALSE(decode_checkpoint(ByteView(b).first(i)).ok());
    }
    Bytes longer = b;
    longer.push_back(0);
    auto trailing = decode_checkpoint(longer);
    REQUIRE_FALSE(trailing.ok());
  }
  // A frontier that does not match first_seq, and a missing head.
  LogCheckpoint wrong = test_checkpoint(6);
  wrong.frontier.pop_back();
  auto r = decode_checkpoint(encode_checkpoint(wrong));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::bad_value);
  CHECK(r.error().message.find("frontier") != std::string::npos);
  LogCheckpoint headless = test_checkpoint(6);
  headless.head.clear();
  r = decode_checkpoint(encode_checkpoint(headless));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("head") != std::string::npos);
}

TEST_CASE("log checkpoint: the fuzz corpus's valid seeds decode, the others are refused") {
  // tests/fuzz/corpus/checkpoint_fuzz: seeds the fuzzer mutates; the valid ones
  // must really be valid or it starts from nothing.
  const fs::path dir = fs::path(SWARMLITE_SOURCE_DIR) / "tests/fuzz/corpus/checkpoint_fuzz";
  int valid = 0;
  for (const auto& de : fs::directory_iterator(dir)) {
    const std::string name = de.path().filename().string();
    CAPTURE(name);
    auto cp = decode_checkpoint(read_file(de.path()));
    CHECK(cp.ok() == name.starts_with("valid"));
    valid += cp.ok();
  }
  CHECK(valid == 2);
}

TEST_CASE("log store: drop_before removes whole segments; reads below first() are not_found") {
  TempDir t("drop");
  LogStoreOptions o;
  o.segment_bytes = 1024;  // ~20 records of 50 bytes per segment
  {
    auto s = open_ok(t.path, o);
    for (uint64_t i = 0; i < 200; ++i) REQUIRE(s->append(make_record(i, fixed_len(i))).ok());
    CHECK(s->first() == 0);
    CHECK_FALSE(s->checkpoint());
    const auto firsts = segment_firsts(t.path);
    REQUIRE(firsts.size() > 5);
    // Inside the fourth segment: the store keeps that whole segment.
    const uint64_t f = s->drop_point(firsts[3] + 2);
    CHECK(f == firsts[3]);
    CHECK(s->drop_point(s->size()) == firsts.back());
    CHECK_FALSE(s->drop_before(test_checkpoint(f + 1)).ok());  // not a segment start
    auto stats = s->drop_before(test_checkpoint(f));
    REQUIRE_MESSAGE(stats.ok(), stats.error_text());
    CHECK(stats->entries == f);
    CHECK(stats->segments == 3);
    CHECK(stats->bytes > f * fixed_len(0));
    CHECK(s->first() == f);
    CHECK(s->size() == 200);
    CHECK(*s->checkpoint() == test_checkpoint(f));
    CHECK(segment_firsts(t.path).front() == f);
    auto gone = s->read(f - 1);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == Errc::not_found);
    CHECK(gone.error().message.find("compacted away") != std::string::npos);
    std::vector<Hash32> two(2);
    CHECK(s->leaf_hashes(f - 1, two).error().code == Errc::not_found);
    REQUIRE(s->leaf_hashes(f, two).ok());
    CHECK(two[1] == hash_leaf(make_record(f + 1, fixed_len(0))));
    REQUIRE(s->verify_all().ok());
    for (uint64_t i = 200; i < 230; ++i) REQUIRE(s->append(make_record(i, fixed_len(i))).ok());
  }
  // Reopened: starts at the checkpoint, reads and appends go on.
  auto s = open_ok(t.path, o);
  const uint64_t f = s->first();
  CHECK(f > 0);
  CHECK(s->size() == 230);
  for (uint64_t i = f; i < 230; ++i) REQUIRE(*s->read(i) == make_record(i, fixed_len(i)));
  CHECK(s->read(0).error().code == Errc::not_found);
  REQUIRE(s->append(make_record(230, 40)).ok());
}

TEST_CASE("log store: a crash between the checkpoint write and the unlinks is finished by open") {
  TempDir t("dropcrash");
  LogStoreOptions o;
  o.segment_bytes = 1024;
  std::vector<uint64_t> firsts;
  {
    auto s = open_ok(t.path, o);
    for (uint64_t i = 0; i < 120; ++i) REQUIRE(s->append(make_record(i, fixed_len(i))).ok());
    firsts = segment_firsts(t.path);
  }
  REQUIRE(firsts.size() >= 4);
  const uint64_t f = firsts[2];
  // What drop_before leaves when it dies right after writing the checkpoint...
  write_file(t.path / "checkpoint", encode_checkpoint(test_checkpoint(f)));
  // ...or half way through the unlinks: the first segment's log gone, its index not.
  fs::remove(t.path / seg_file(firsts[0]));
  {
    auto s = open_ok(t.path, o);
    CHECK(s->first() == f);
    CHECK(s->size() == 120);
    CHECK(segment_firsts(t.path).front() == f);
    CHECK_FALSE(fs::exists(t.path / idx_file(firsts[0])));
    CHECK_FALSE(fs::exists(t.path / idx_file(firsts[1])));
    for (uint64_t i = f; i < 120; ++i) REQUIRE(*s->read(i) == make_record(i, fixed_len(i)));
  }
  // A checkpoint inside a segment would throw away entries it keeps: corrupt.
  write_file(t.path / "checkpoint", encode_checkpoint(test_checkpoint(f + 1)));
  auto bad = LogStore::open(t.path, o);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::corrupt);
  // A damaged checkpoint record is corrupt, naming the file.
  Bytes cp = encode_checkpoint(test_checkpoint(f));
  cp[3] ^= 0x10;
  write_file(t.path / "checkpoint", cp);
  bad = LogStore::open(t.path, o);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::corrupt);
  CHECK(bad.error().message.find("checkpoint") != std::string::npos);
}

TEST_CASE("log store: create_at starts an empty store at a checkpoint") {
  TempDir t("createat");
  {
    auto s = LogStore::create_at(t.path, test_checkpoint(1000));
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    CHECK((*s)->first() == 1000);
    CHECK((*s)->size() == 1000);
    CHECK((*s)->read(999).error().code == Errc::not_found);
    REQUIRE((*s)->append(make_record(1000, 40)).ok());
    REQUIRE((*s)->append(make_record(1001, 40)).ok());
  }
  auto s = open_ok(t.path);
  CHECK(s->first() == 1000);
  CHECK(s->size() == 1002);
  CHECK(*s->read(1001) == make_record(1001, 40));
  CHECK(*s->checkpoint() == test_checkpoint(1000));
  s.reset();
  // Not over an existing log.
  auto again = LogStore::create_at(t.path, test_checkpoint(5));
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == Errc::invalid_argument);
  // A crash after the checkpoint, before the first segment: opens empty at it.
  TempDir t2("createat2");
  fs::create_directories(t2.path);
  write_file(t2.path / "checkpoint", encode_checkpoint(test_checkpoint(77)));
  auto s2 = open_ok(t2.path);
  CHECK(s2->first() == 77);
  CHECK(s2->size() == 77);
}

TEST_CASE("log store: readers running during drop_before get records or not_found, never a crash") {
  TempDir t("dropconc");
  LogStoreOptions o;
  o.segment_bytes = 2048;
  o.sync = false;
  auto s = open_ok(t.path, o);
  for (uint64_t i = 0; i < 3000; ++i) REQUIRE(s->append(make_record(i, varied_len(i))).ok());
  std::atomic<bool> done{false};
  std::atomic<int> bad{0}, gone{0};
  std::vector<std::thread> readers;
  for (int k = 0; k < 2; ++k) {
    readers.emplace_back([&, k] {
      std::mt19937_64 rng(static_cast<uint64_t>(k) + 5);
      while (!done.load()) {
        const uint64_t i = rng() % 3000;
        auto r = s->read(i);
        if (!r.ok()) {
          if (r.error().code == Errc::not_found)
            ++gone;
          else
            ++bad;
        } else if (*r != make_record(i, varied_len(i))) {
          ++bad;
        }
      }
    });
  }
  for (uint64_t keep = 100; keep < 2900; keep += 150) {
    const uint64_t f = s->drop_point(keep);
    if (f > s->first()) REQUIRE(s->drop_before(test_checkpoint(f)).ok());
  }
  done = true;
  for (auto& r : readers) r.join();
  CHECK(bad.load() == 0);
  CHECK(gone.load() > 0);
}

}  // namespace
TEST_CASE("log store: the worked example's bytes, and batch checksums as record_checksum's") {
  // docs/formats/log-store.md "Worked example": logs already written are read
  // only if these bytes never change. Then a batch long enough for the SIMD
  // lanes (record checksums hashed together): each header as record_checksum.
  TempDir t("example");
  auto s = open_ok(t.path, small_segments(1 << 20));
  const std::string abc = "abc", hi = "hi";
  REQUIRE(s->append(ByteView(reinterpret_cast<const uint8_t*>(abc.data()), abc.size())).ok());
  REQUIRE(s->append_batch(std::vector<Bytes>{Bytes(hi.begin(), hi.end())}).ok());
  const Bytes want = *from_hex(
      "73776c2d73656731"
      "0000000000000000"
      "00000003"
      "92ea0df9fbe82d5ed337b6de2504ca2e"
      "616263"
      "00000002"
      "0286885ad71323c5facf33dede50485a"
      "6869");
  std::vector<Bytes> batch;
  for (uint64_t i = 0; i < 11; ++i) batch.push_back(make_record(2 + i, varied_len(i)));
  REQUIRE(s->append_batch(batch).ok());
  s.reset();
  const Bytes seg = read_file(t.path / seg_file(0));
  REQUIRE(seg.size() >= want.size());
  CHECK(Bytes(seg.begin(), seg.begin() + static_cast<ptrdiff_t>(want.size())) == want);
  uint64_t at = want.size();
  for (uint64_t i = 0; i < batch.size(); ++i) {
    INFO("record " << 2 + i);
    REQUIRE(at + kRecordHeaderBytes + batch[i].size() <= seg.size());
    const auto sum =
        record_checksum(2 + i, static_cast<uint32_t>(batch[i].size()), hash_leaf(batch[i]));
    CHECK(std::equal(sum.begin(), sum.end(), seg.begin() + static_cast<ptrdiff_t>(at + 4)));
    at += kRecordHeaderBytes + batch[i].size();
  }
}

}  // namespace swarmlite
