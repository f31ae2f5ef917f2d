// Snapshot chunks (snapshot_chunk.h, docs/formats/snapshot.md): the codec's
// round trip and each decoder refusal, and verify_snapshot_chunk against
// flipped bytes, swapped pages, another head, a wrong multiproof and the
// lock-byte page.
#include "sqlbridge/engine/snapshot_chunk.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <random>

#include "core/hash.h"
#include "sqlbridge/engine/signed_pages_test_util.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/engine/vfs_test_util.h"

namespace swarmlite {
namespace {

constexpr uint32_t kPs = 4096;

using Db = testing::SignedPages;

// `n` random pages (the lock-byte page, if among them, zeros) and a head over them.
Db make_db(uint32_t n, uint64_t size = 7, uint32_t seed = 1) {
  return testing::make_signed_pages(kPs, n, size, seed);
}

SnapshotChunk make_chunk(const Db& db, uint32_t first, uint32_t count) {
  SnapshotChunk c;
  c.head = db.head;
  c.page_size = kPs;
  c.first_page = first;
  c.count = count;
  for (uint32_t i = 0; i < count; ++i)
    c.pages.insert(c.pages.end(), db.pages[first - 1 + i].begin(), db.pages[first - 1 + i].end());
  auto proof = snapshot_range_proof(db.tree.tree(), first, count);
  REQUIRE_MESSAGE(proof.ok(), proof.error_text());
  c.proof = *proof;
  return c;
}

void put_u32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

constexpr size_t kPageSizeAt = 1 + kEncodedHeadSize, kFirstAt = kPageSizeAt + 4,
                 kCountAt = kFirstAt + 4, kPagesAt = kCountAt + 4;

}  // namespace

TEST_CASE("snapshot request: round trip and refusals") {
  SnapshotRequest q{123456789012ull, 17, 1024};
  Bytes b = encode_snapshot_request(q);
  CHECK(b.size() == 17);
  auto d = decode_snapshot_request(b);
  REQUIRE(d.ok());
  CHECK(*d == q);
  auto refused = [](Bytes bytes, Errc code, std::string_view words) {
    auto r = decode_snapshot_request(bytes);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == code);
    CHECK_MESSAGE(r.error().message.find(words) != std::string::npos, r.error().message);
  };
  Bytes v = b;
  v[0] = 2;
  refused(v, Errc::bad_version, "version");
  refused(Bytes(b.begin(), b.end() - 1), Errc::truncated, "count at offset 13");
  Bytes longer = b;
  longer.push_back(0);
  refused(longer, Errc::too_large, "");
  refused(encode_snapshot_request({1, 0, 1}), Errc::bad_value, "first_page at offset 9");
  refused(encode_snapshot_request({1, 1, 0}), Errc::bad_value, "count at offset 13");
  refused(encode_snapshot_request({1, 1, 16385}), Errc::too_large, "count at offset 13");
}

TEST_CASE("snapshot chunk: round trip, every range verifies") {
  Db db = make_db(23);
  for (auto [first, count] :
       std::vector<std::pair<uint32_t, uint32_t>>{{1, 23}, {1, 1}, {23, 1}, {5, 8}, {16, 8}}) {
    SnapshotChunk c = make_chunk(db, first, count);
    Bytes b = encode_snapshot_chunk(c);
    auto d = decode_snapshot_chunk(b);
    REQUIRE_MESSAGE(d.ok(), d.error_text());
    CHECK(*d == c);
    auto s = verify_snapshot_chunk(*d, db.head);
    CHECK_MESSAGE(s.ok(), s.error_text());
  }
}

TEST_CASE("snapshot chunk: each decoder refusal names its field and offset") {
  Db db = make_db(23);
  const Bytes good = encode_snapshot_chunk(make_chunk(db, 5, 4));
  auto refused = [](const Bytes& bytes, Errc code, std::string_view words) {
    auto r = decode_snapshot_chunk(bytes);
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(r.error().code == code, r.error().to_string());
    CHECK_MESSAGE(r.error().message.find(words) != std::string::npos, r.error().message);
  };
  Bytes b = good;
  b[0] = 9;
  refused(b, Errc::bad_version, "version at offset 0");
  b = good;
  b[1] = 7;  // the head's version byte
  refused(b, Errc::bad_version, "head at offset 1");
  b = good;
  put_u32(b, kPageSizeAt, 4095);
  refused(b, Errc::bad_value, fmt::format("page_size at offset {}", kPageSizeAt));
  b = good;
  put_u32(b, kFirstAt, 0);
  refused(b, Errc::bad_value, fmt::format("first_page at offset {}", kFirstAt));
  b = good;
  put_u32(b, kCountAt, 0);
  refused(b, Errc::bad_value, fmt::format("count at offset {}", kCountAt));
  b = good;
  put_u32(b, kCountAt, 2049);  // 2049 × 4096 > 8 MiB, refused before the pages are looked at
  refused(b, Errc::too_large, "over the cap");
  b = good;
  put_u32(b, kFirstAt, 21);  // 21..24 of 23 pages
  refused(b, Errc::bad_value, "past the head's 23 pages");
  refused(Bytes(good.begin(), good.begin() + kPagesAt + 100), Errc::truncated,
          fmt::format("pages at offset {}", kPagesAt));
  const size_t proof_at = kPagesAt + 4 * kPs;
  b = good;
  put_u32(b, proof_at, 0x7fffffff);
  refused(b, Errc::too_large, fmt::format("proof at offset {}", proof_at));
  b = good;
  b[proof_at + 4] = 3;  // the multiproof's version
  refused(b, Errc::bad_version, "proof");
  // A well-formed multiproof for other leaves.
  SnapshotChunk other = make_chunk(db, 5, 4);
  other.proof = *snapshot_range_proof(db.tree.tree(), 6, 4);
  refused(encode_snapshot_chunk(other), Errc::bad_value, "not those of pages 5..8");
  b = good;
  b.push_back(0);
  refused(b, Errc::trailing_bytes, "trailing");
  refused(Bytes(good.begin(), good.end() - 1), Errc::truncated, "proof");
  // A count beyond what the input holds allocates nothing: it fails on length.
  b = Bytes(good.begin(), good.begin() + kPagesAt);
  put_u32(b, kCountAt, 2048);
  put_u32(b, kFirstAt, 1);
  refused(b, Errc::bad_value, "past the head's");
}

TEST_CASE(
    "snapshot chunk: verify refuses flipped bytes, swapped pages, another head, a wrong proof") {
  Db db = make_db(40);
  SnapshotChunk good = make_chunk(db, 9, 8);
  REQUIRE(verify_snapshot_chunk(good, db.head).ok());
  auto refused = [&db](const SnapshotChunk& c, std::string_view words, const Head* head = nullptr) {
    auto s = verify_snapshot_chunk(c, head ? *head : db.head);
    REQUIRE_FALSE(s.ok());
    CHECK_MESSAGE(s.error().message.find(words) != std::string::npos, s.error().message);
    CHECK_MESSAGE(s.error().message.find("pages 9..16") != std::string::npos, s.error().message);
  };
  SnapshotChunk c = good;
  c.pages[3 * kPs + 100] ^= 1;
  refused(c, "root");
  c = good;
  std::swap_ranges(c.pages.begin(), c.pages.begin() + kPs, c.pages.begin() + kPs);
  refused(c, "root");
  // A chunk of another head (another database, same key and size): its own
  // pages and proof are consistent, but not with the trusted head.
  Db other = make_db(40, 7, 2);
  SnapshotChunk foreign = make_chunk(other, 9, 8);
  REQUIRE(verify_snapshot_chunk(foreign, other.head).ok());
  refused(foreign, "not the trusted head");
  // The trusted head re-signed with another time: same root, different bytes.
  Head resigned = db.head;
  resigned.time_ms += 1;
  resigned.sign_with(db.keys.secret);
  refused(good, "not the trusted head", &resigned);
  c = good;
  c.proof.hashes[0][0] ^= 1;
  refused(c, "root");
  c = good;
  c.proof.hashes.pop_back();
  refused(c, "");
  c = good;
  c.proof.indices[0] += 1;
  refused(c, "not for these pages");
}

TEST_CASE("snapshot chunk: a range across the lock-byte page verifies only with zeros there") {
  vfs_testing::PendingByte moved(0x10000);  // page 17 is the lock-byte page
  REQUIRE(lock_byte_page(kPs) == 17);
  Db db = make_db(30);
  SnapshotChunk c = make_chunk(db, 14, 8);
  auto ok = verify_snapshot_chunk(c, db.head);
  CHECK_MESSAGE(ok.ok(), ok.error_text());
  c.pages[(17 - 14) * kPs + 5] = 1;
  auto s = verify_snapshot_chunk(c, db.head);
  REQUIRE_FALSE(s.ok());
  CHECK_MESSAGE(s.error().message.find("page 17 is the lock-byte page") != std::string::npos,
                s.error().message);
  // Only the lock-byte page.
  SnapshotChunk only = make_chunk(db, 17, 1);
  CHECK(verify_snapshot_chunk(only, db.head).ok());
}

TEST_CASE("canonicalize_page1_header: only the normalised bytes change, the leaf stays") {
  Db db = make_db(3);
  Bytes p1 = db.pages[0];
  canonicalize_page1_header(p1);
  CHECK(p1[18] == 1);
  CHECK(p1[19] == 1);
  CHECK(std::equal(p1.begin() + 92, p1.begin() + 96, p1.begin() + 24));
  CHECK(page_leaf_hash(1, p1) == page_leaf_hash(1, db.pages[0]));
}

}  // namespace swarmlite
