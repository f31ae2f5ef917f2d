// Page and leaf sets (page_set.h, docs/light-client.md "Page service"): an
// honest answer verifies; a flipped byte, a page under another number, a
// missing or extra page, another head, a proof for other leaves, a bad page
// size and a dirty lock-byte page each fail with a message naming the pages.
#include "sqlbridge/engine/page_set.h"

#include <doctest/doctest.h>

#include <random>

#include "core/hash.h"
#include "sqlbridge/engine/signed_pages_test_util.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/engine/vfs_test_util.h"

namespace swarmlite {
namespace {

constexpr uint32_t kPs = 1024;

using Db = testing::SignedPages;

Db make_db(uint32_t n, uint32_t seed = 1) { return testing::make_signed_pages(kPs, n, 42, seed); }

MultiProof proof_for(const Db& db, const std::vector<uint32_t>& pgnos) {
  MultiProof p;
  p.size = db.head.page_count;
  p.indices = pgno_indices(pgnos);
  auto hashes = db.tree.tree().multiproof(p.indices);
  REQUIRE_MESSAGE(hashes.ok(), hashes.error().to_string());
  p.hashes = *hashes;
  return p;
}

PageSet page_set(const Db& db, const std::vector<uint32_t>& pgnos) {
  PageSet s;
  s.head = db.head;
  s.page_size = kPs;
  s.pgnos = pgnos;
  for (uint32_t p : pgnos) s.pages.push_back(db.pages[p - 1]);
  s.proof = proof_for(db, pgnos);
  return s;
}

LeafSet leaf_set(const Db& db, const std::vector<uint32_t>& pgnos) {
  LeafSet s;
  s.head = db.head;
  s.pgnos = pgnos;
  for (uint32_t p : pgnos) s.leaves.push_back(db.tree.tree().leaf(p - 1));
  s.proof = proof_for(db, pgnos);
  return s;
}

void refused(const Status& s, std::string_view words) {
  REQUIRE_FALSE(s.ok());
  CHECK_MESSAGE(s.error().message.find(words) != std::string::npos, s.error().to_string());
  CHECK((s.error().code == Errc::proof_failed || s.error().code == Errc::root_mismatch));
}

}  // namespace

TEST_CASE("check_pgnos: empty, too many, zero, past the end, out of order, repeated") {
  const std::vector<uint32_t> ok{1, 5, 9};
  CHECK(check_pgnos(ok, 9, 3).ok());
  CHECK_FALSE(check_pgnos(ok, 8, 3).ok());  // 9 is past the end
  CHECK_FALSE(check_pgnos(ok, 9, 2).ok());  // over the cap
  CHECK_FALSE(check_pgnos(std::vector<uint32_t>{}, 9, 3).ok());
  CHECK_FALSE(check_pgnos(std::vector<uint32_t>{0, 1}, 9, 3).ok());
  auto order = check_pgnos(std::vector<uint32_t>{3, 2}, 9, 3);
  REQUIRE_FALSE(order.ok());
  CHECK(order.error().code == Errc::invalid_argument);
  CHECK(order.error().message.find("strictly increasing") != std::string::npos);
  CHECK_FALSE(check_pgnos(std::vector<uint32_t>{2, 2}, 9, 3).ok());
}

TEST_CASE("verify_page_set: honest sets of any shape verify") {
  Db db = make_db(300);
  for (const std::vector<uint32_t>& pgnos :
       {std::vector<uint32_t>{1}, std::vector<uint32_t>{300}, std::vector<uint32_t>{1, 2, 3},
        std::vector<uint32_t>{2, 77, 150, 299}, std::vector<uint32_t>{5, 6, 7, 64, 65, 200}}) {
    auto s = verify_page_set(page_set(db, pgnos), db.head);
    CHECK_MESSAGE(s.ok(), s.error().to_string());
    auto l = verify_leaf_set(leaf_set(db, pgnos), db.head);
    CHECK_MESSAGE(l.ok(), l.error().to_string());
  }
  std::vector<uint32_t> all(kMaxPagesPerRequest);
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = i + 10;
  CHECK(verify_page_set(page_set(db, all), db.head).ok());
}

TEST_CASE("verify_page_set: lies are refused, naming the pages") {
  Db db = make_db(300);
  const std::vector<uint32_t> pgnos{4, 17, 200};

  PageSet flipped = page_set(db, pgnos);
  flipped.pages[1][100] ^= 1;
  refused(verify_page_set(flipped, db.head), "pages 4, 17, 200");

  // Page 17's bytes sent as page 18 (and the proof made for 18): the leaf binds the number.
  PageSet swapped = page_set(db, {4, 18, 200});
  swapped.pages[1] = db.pages[16];
  refused(verify_page_set(swapped, db.head), "pages 4, 18, 200");

  PageSet missing = page_set(db, pgnos);
  missing.pages.pop_back();
  refused(verify_page_set(missing, db.head), "2 values for 3 page numbers");

  PageSet unsorted = page_set(db, pgnos);
  std::swap(unsorted.pgnos[0], unsorted.pgnos[1]);
  std::swap(unsorted.pages[0], unsorted.pages[1]);
  refused(verify_page_set(unsorted, db.head), "strictly increasing");

  PageSet past_end = page_set(db, pgnos);
  past_end.pgnos.back() = 301;
  refused(verify_page_set(past_end, db.head), "outside the head's pages 1..300");

  Db other = make_db(300, 2);
  refused(verify_page_set(page_set(other, pgnos), db.head), "not the trusted head");

  PageSet wrong_proof = page_set(db, pgnos);
  wrong_proof.proof = proof_for(db, {4, 17, 201});
  refused(verify_page_set(wrong_proof, db.head), "the multiproof is for");

  PageSet bad_hash = page_set(db, pgnos);
  bad_hash.proof.hashes[0][0] ^= 1;
  refused(verify_page_set(bad_hash, db.head), "pages 4, 17, 200");

  PageSet bad_size = page_set(db, pgnos);
  bad_size.page_size = 1000;
  refused(verify_page_set(bad_size, db.head), "not a power of two");

  PageSet short_page = page_set(db, pgnos);
  short_page.pages[2].pop_back();
  refused(verify_page_set(short_page, db.head), "page 200 at size 42: 1023 bytes");
}

TEST_CASE("verify_page_set: the lock-byte page must be zeros") {
  vfs_testing::PendingByte moved(0x10000);  // page 65 is the lock-byte page
  const uint32_t lock = lock_byte_page(kPs);
  REQUIRE(lock == 65);
  Db db = make_db(lock + 2);
  PageSet s = page_set(db, {lock - 1, lock, lock + 1});
  CHECK(verify_page_set(s, db.head).ok());
  s.pages[1][0] = 1;
  refused(verify_page_set(s, db.head), "lock-byte page");
}

TEST_CASE("verify_leaf_set: changed, swapped or missing leaves are refused") {
  Db db = make_db(300);
  const std::vector<uint32_t> pgnos{1, 2, 250};
  LeafSet changed = leaf_set(db, pgnos);
  changed.leaves[2][5] ^= 1;
  refused(verify_leaf_set(changed, db.head), "leaf hashes of pages 1, 2, 250");

  LeafSet swapped = leaf_set(db, pgnos);
  std::swap(swapped.leaves[0], swapped.leaves[1]);
  refused(verify_leaf_set(swapped, db.head), "leaf hashes of pages 1, 2, 250");

  LeafSet missing = leaf_set(db, pgnos);
  missing.leaves.pop_back();
  refused(verify_leaf_set(missing, db.head), "2 values for 3 page numbers");

  Db other = make_db(300, 3);
  refused(verify_leaf_set(leaf_set(other, pgnos), db.head), "not the trusted head");
}

}  // namespace swarmlite
