// Page and leaf sets (page_set.h, docs/light-client.md "Page service"): an
// honest answer verifies; a flipped byte, a page under another number, a
// missing or extra page, another head, a proof for other leaves, a bad page
// size and a dirty lock-byte page each fail with a message naming the pages.
#include "sqlbridge/engine/page_set.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

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
  REQUIRE_MESSAGE(hashes.ok(), hashes.error_text());
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
    CHECK_MESSAGE(s.ok(), s.error_text());
    auto l = verify_leaf_set(leaf_set(db, pgnos), db.head);
    CHECK_MESSAGE(l.ok(), l.error_text());
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

namespace {

// A decode refusal with `code` whose message has `words` (field and offset).
template <class T>
void bad(const Result<T>& r, Errc code, std::string_view words) {
  REQUIRE_FALSE(r.ok());
  CHECK_MESSAGE(r.error().code == code, r.error().to_string());
  CHECK_MESSAGE(r.error().message.find(words) != std::string::npos, r.error().to_string());
}

void put_u32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

// Offsets in an encoded page set / leaf set (docs/formats/pages.md).
constexpr size_t kSetPageSize = 1 + kEncodedHeadSize;
constexpr size_t kPageSetCount = kSetPageSize + 4;
constexpr size_t kLeafSetCount = 1 + kEncodedHeadSize;

}  // namespace

TEST_CASE("page set codec: requests and sets round trip") {
  Db db = make_db(300);
  for (const std::vector<uint32_t>& pgnos :
       {std::vector<uint32_t>{1}, std::vector<uint32_t>{300}, std::vector<uint32_t>{2, 77, 150},
        std::vector<uint32_t>{5, 6, 7, 64, 65, 200}}) {
    PagesRequest pq{7, pgnos};
    auto pq2 = decode_pages_request(encode_pages_request(pq));
    REQUIRE_MESSAGE(pq2.ok(), pq2.error_text());
    CHECK(*pq2 == pq);
    LeavesRequest lq{0, pgnos};
    auto lq2 = decode_leaves_request(encode_leaves_request(lq));
    REQUIRE_MESSAGE(lq2.ok(), lq2.error_text());
    CHECK(*lq2 == lq);

    PageSet ps = page_set(db, pgnos);
    const Bytes enc = encode_page_set(ps);
    CHECK(enc.size() == kPageSetCount + 4 + 4 * pgnos.size() + kPs * pgnos.size() + 4 +
                            encode_multiproof(ps.proof).size());
    auto ps2 = decode_page_set(enc);
    REQUIRE_MESSAGE(ps2.ok(), ps2.error_text());
    CHECK(*ps2 == ps);
    CHECK(verify_page_set(*ps2, db.head).ok());
    CHECK(encode_page_set(*ps2) == enc);

    LeafSet ls = leaf_set(db, pgnos);
    auto ls2 = decode_leaf_set(encode_leaf_set(ls));
    REQUIRE_MESSAGE(ls2.ok(), ls2.error_text());
    CHECK(*ls2 == ls);
    CHECK(verify_leaf_set(*ls2, db.head).ok());
  }
  // The caps themselves are accepted: 256 pages, 65536 leaves.
  std::vector<uint32_t> most(kMaxPagesPerRequest);
  for (uint32_t i = 0; i < most.size(); ++i) most[i] = i + 1;
  CHECK(decode_pages_request(encode_pages_request({0, most})).ok());
  CHECK(decode_page_set(encode_page_set(page_set(db, most))).ok());
  std::vector<uint32_t> leaves(kMaxLeavesPerRequest);
  for (uint32_t i = 0; i < leaves.size(); ++i) leaves[i] = 2 * i + 1;
  CHECK(decode_leaves_request(encode_leaves_request({0, leaves})).ok());
}

TEST_CASE("page set codec: requests are refused naming the field") {
  bad(decode_pages_request(encode_pages_request({1, {}})), Errc::bad_value, "count at offset 9");
  std::vector<uint32_t> many(kMaxPagesPerRequest + 1);
  for (uint32_t i = 0; i < many.size(); ++i) many[i] = i + 1;
  bad(decode_pages_request(encode_pages_request({1, many})), Errc::too_large, "over the cap");
  std::vector<uint32_t> more(kMaxLeavesPerRequest + 1);
  for (uint32_t i = 0; i < more.size(); ++i) more[i] = i + 1;
  bad(decode_leaves_request(encode_leaves_request({1, more})), Errc::too_large,
      "leaves request");
  bad(decode_pages_request(encode_pages_request({1, {0, 3}})), Errc::bad_value,
      "pgno at offset 13: 0");
  bad(decode_pages_request(encode_pages_request({1, {4, 3}})), Errc::bad_value,
      "pgno at offset 17: 3 does not follow 4");
  bad(decode_leaves_request(encode_leaves_request({1, {4, 4}})), Errc::bad_value,
      "strictly increasing");
  Bytes req = encode_pages_request({1, {1, 2}});
  Bytes v2 = req;
  v2[0] = 2;
  bad(decode_pages_request(v2), Errc::bad_version, "version");
  Bytes trailing = req;
  trailing.push_back(0);
  bad(decode_pages_request(trailing), Errc::trailing_bytes, "trailing");
  // A count of 2^32-1 with nothing after it: refused before allocating.
  Bytes huge = encode_pages_request({1, {1}});
  put_u32(huge, 9, 200);
  bad(decode_pages_request(huge), Errc::truncated, "count at offset 9");
  for (size_t n = 0; n < req.size(); ++n)
    CHECK_FALSE(decode_pages_request(ByteView(req).first(n)).ok());
}

TEST_CASE("page set codec: page and leaf sets are refused naming the field") {
  Db db = make_db(300);
  const std::vector<uint32_t> pgnos{3, 9, 250};
  const Bytes good = encode_page_set(page_set(db, pgnos));

  Bytes size = good;
  put_u32(size, kSetPageSize, 1000);
  bad(decode_page_set(size), Errc::bad_value, "page_size at offset 182: 1000");
  Bytes zero = good;
  put_u32(zero, kPageSetCount, 0);
  bad(decode_page_set(zero), Errc::bad_value, "count at offset 186");
  Bytes over = good;
  put_u32(over, kPageSetCount, kMaxPagesPerRequest + 1);
  bad(decode_page_set(over), Errc::too_large, "count at offset 186");
  Bytes lying_count = good;
  put_u32(lying_count, kPageSetCount, 200);  // 200 pages do not fit in what follows
  bad(decode_page_set(lying_count), Errc::truncated, "count at offset 186");
  Bytes past = good;
  put_u32(past, kPageSetCount + 4 + 8, 301);
  bad(decode_page_set(past), Errc::bad_value, "301 is past the head's 300 pages");
  Bytes order = good;
  put_u32(order, kPageSetCount + 4 + 4, 3);
  bad(decode_page_set(order), Errc::bad_value, "does not follow");

  PageSet other_leaves = page_set(db, pgnos);
  other_leaves.proof = proof_for(db, {3, 9, 251});
  bad(decode_page_set(encode_page_set(other_leaves)), Errc::bad_value,
      "its leaves are not those of pages 3, 9, 250");
  PageSet other_tree = page_set(db, pgnos);
  other_tree.proof.size = 299;
  CHECK_FALSE(decode_page_set(encode_page_set(other_tree)).ok());
  PageSet short_page = page_set(db, pgnos);
  short_page.pages[1].pop_back();
  CHECK_FALSE(decode_page_set(encode_page_set(short_page)).ok());

  Bytes trailing = good;
  trailing.push_back(7);
  bad(decode_page_set(trailing), Errc::trailing_bytes, "page set");
  Bytes v2 = good;
  v2[0] = 2;
  bad(decode_page_set(v2), Errc::bad_version, "version");
  for (size_t n = 0; n < good.size(); n += 97)
    CHECK_FALSE(decode_page_set(ByteView(good).first(n)).ok());
  CHECK_FALSE(decode_page_set(ByteView(good).first(good.size() - 1)).ok());

  const Bytes leaves = encode_leaf_set(leaf_set(db, pgnos));
  Bytes lpast = leaves;
  put_u32(lpast, kLeafSetCount + 4 + 8, 301);
  bad(decode_leaf_set(lpast), Errc::bad_value, "301 is past the head's 300 pages");
  Bytes lcount = leaves;
  put_u32(lcount, kLeafSetCount, 70000);
  bad(decode_leaf_set(lcount), Errc::too_large, "count at offset 182");
  LeafSet lother = leaf_set(db, pgnos);
  lother.proof = proof_for(db, {3, 9});
  bad(decode_leaf_set(encode_leaf_set(lother)), Errc::bad_value, "its leaves are not those");
  Bytes ltrail = leaves;
  ltrail.push_back(0);
  bad(decode_leaf_set(ltrail), Errc::trailing_bytes, "leaf set");
  for (size_t n = 0; n < leaves.size(); ++n)
    CHECK_FALSE(decode_leaf_set(ByteView(leaves).first(n)).ok());
}

TEST_CASE("page set codec: the caps bound every body") {
  CHECK(max_page_multiproof_hashes(1) == 32);
  CHECK(kMaxPageSetBytes < (17u << 20));  // 16 MiB of pages and a proof
  CHECK(kMaxLeafSetBytes < (48u << 20));
}

TEST_CASE("page lists: parsed, expanded, capped; formatted back") {
  auto list = parse_page_list("1,5,9-12,40", 256);
  REQUIRE_MESSAGE(list.ok(), list.error_text());
  CHECK(*list == std::vector<uint32_t>{1, 5, 9, 10, 11, 12, 40});
  CHECK(format_page_list(*list) == "1,5,9-12,40");
  CHECK(format_page_list(std::vector<uint32_t>{7}) == "7");
  CHECK(*parse_page_list("3-3", 1) == std::vector<uint32_t>{3});
  auto refused = [](std::string_view text, std::string_view words, size_t max = 256) {
    auto r = parse_page_list(text, max);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK_MESSAGE(r.error().message.find(words) != std::string::npos, r.error().to_string());
  };
  refused("", "empty");
  refused("0", "\"0\" is not a page number");
  refused("1,,2", "\"\" is not a page number");
  refused("1,x", "\"x\" is not a page number");
  refused("5-3", "ends before it starts");
  refused("5,3", "strictly increasing");
  refused("1-5,5", "strictly increasing");
  refused("1-257", "over 256 pages");
  refused("1-4294967295", "over 65536 pages", 65536);  // refused before expanding
  refused("99999999999", "is not a page number");
  refused("1-", "is not a page number");
  refused("-3", "is not a page number");
  refused("+3", "is not a page number");
}

}  // namespace swarmlite

// --- Change sets (docs/formats/pages.md "Change set") ------------------------

namespace swarmlite {
namespace {

Hash32 leaf_of(uint32_t pgno, uint32_t version) {
  return blake2b(as_bytes(fmt::format("page {} v{}", pgno, version)));
}

// Two heads of one log: `old_count` pages at size 10, then the pages in
// `writes` set to new leaves and the tree resized to `new_count` (new pages get
// new leaves) at size 12. Keeps what a server's history would: the old leaf of
// every page <= old_count that was written or cut.
struct TwoHeads {
  MerkleTree old_tree, new_tree;
  Head old_head, new_head;
  std::vector<std::pair<uint32_t, Hash32>> history;
};

TwoHeads two_heads(uint32_t old_count, uint32_t new_count, const std::vector<uint32_t>& writes) {
  TwoHeads t;
  for (uint32_t p = 1; p <= old_count; ++p) t.old_tree.append(leaf_of(p, 0));
  t.new_tree = t.old_tree;
  for (uint32_t p : writes)
    if (p <= old_count) {
      t.history.emplace_back(p, t.old_tree.leaf(p - 1));
      if (p <= new_count) t.new_tree.set(p - 1, leaf_of(p, 1));
    }
  for (uint32_t p = new_count + 1; p <= old_count; ++p) {
    if (std::find(writes.begin(), writes.end(), p) == writes.end())
      t.history.emplace_back(p, t.old_tree.leaf(p - 1));
  }
  if (new_count < old_count) t.new_tree.truncate(new_count);
  for (uint32_t p = old_count + 1; p <= new_count; ++p) t.new_tree.append(leaf_of(p, 1));
  auto head = [](uint64_t size, const MerkleTree& tree) {
    Head h;
    h.size = size;
    h.state_root = tree.root();
    h.page_count = static_cast<uint32_t>(tree.size());
    h.time_ms = 1700000000000 + size;
    return h;
  };
  t.old_head = head(10, t.old_tree);
  t.new_head = head(12, t.new_tree);
  return t;
}

ChangeSet change_set(const TwoHeads& t) {
  auto set =
      build_change_set(t.new_tree, t.new_head, t.old_head.size, t.old_head.page_count, t.history);
  REQUIRE_MESSAGE(set.ok(), set.error_text());
  return *set;
}

}  // namespace

TEST_CASE("change sets: honest sets verify for every shape, and name exactly the changed pages") {
  std::mt19937 rng(7);
  for (int round = 0; round < 400; ++round) {
    const uint32_t m = 1 + rng() % 70;
    const uint32_t n = round % 3 == 0 ? m : 1 + rng() % 70;  // same size, growth, shrink
    std::vector<uint32_t> writes;
    for (uint32_t p = 1; p <= std::max(m, n); ++p)
      if (rng() % 8 == 0) writes.push_back(p);
    TwoHeads t = two_heads(m, n, writes);
    ChangeSet set = change_set(t);
    INFO("m=" << m << " n=" << n << " writes=" << writes.size());
    const Status s = verify_change_set(set, t.old_head, t.new_head);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    // Exactly the pages whose leaf differs, or that exist at one head only.
    std::vector<uint32_t> expect;
    for (uint32_t p = 1; p <= std::max(m, n); ++p)
      if (p > m || p > n || t.old_tree.leaf(p - 1) != t.new_tree.leaf(p - 1)) expect.push_back(p);
    CHECK(changed_pages(set, m) == expect);
    auto again = decode_change_set(encode_change_set(set));
    REQUIRE_MESSAGE(again.ok(), again.error_text());
    CHECK(*again == set);
  }
}

TEST_CASE("change sets: nothing changed is page k alone and one fold") {
  TwoHeads t = two_heads(1930, 1930, {});
  ChangeSet set = change_set(t);
  CHECK(set.pgnos == std::vector<uint32_t>{1930});
  CHECK(changed_pages(set, 1930).empty());
  const Status s = verify_change_set(set, t.old_head, t.new_head);
  CHECK_MESSAGE(s.ok(), s.error_text());
  // One changed page of 1930: a few hundred bytes, not 61 KB of leaves.
  TwoHeads one = two_heads(1930, 1930, {17});
  ChangeSet small = change_set(one);
  CHECK(changed_pages(small, 1930) == std::vector<uint32_t>{17});
  CHECK(encode_change_set(small).size() < 1500);
}

TEST_CASE("change sets: lies are refused with the reason") {
  TwoHeads t = two_heads(300, 300, {5, 77, 200});
  const ChangeSet honest = change_set(t);
  REQUIRE(verify_change_set(honest, t.old_head, t.new_head).ok());

  // A changed page left out: its old and new leaves are both gone from the set,
  // and no sibling covers it at both heads.
  ChangeSet left_out = honest;
  const size_t at =
      std::find(left_out.pgnos.begin(), left_out.pgnos.end(), 77u) - left_out.pgnos.begin();
  left_out.pgnos.erase(left_out.pgnos.begin() + at);
  left_out.old_leaves.erase(left_out.old_leaves.begin() + at);
  left_out.new_leaves.erase(left_out.new_leaves.begin() + at);
  {
    // Siblings of the honest shape for the smaller set (what a liar would send):
    // the subtree over page 77 from the old tree.
    std::vector<uint64_t> idx = pgno_indices(left_out.pgnos);
    left_out.siblings = *t.old_tree.multiproof(idx);
  }
  refused(verify_change_set(left_out, t.old_head, t.new_head), "the same siblings give");

  ChangeSet wrong_old = honest;
  wrong_old.old_leaves[1][0] ^= 1;
  refused(verify_change_set(wrong_old, t.old_head, t.new_head), "the trusted head has");

  ChangeSet wrong_new = honest;
  wrong_new.new_leaves[0][3] ^= 1;
  refused(verify_change_set(wrong_new, t.old_head, t.new_head), "the new head has");

  ChangeSet swapped = honest;
  REQUIRE(swapped.siblings.size() >= 2);
  std::swap(swapped.siblings[0], swapped.siblings[1]);
  refused(verify_change_set(swapped, t.old_head, t.new_head), "the trusted head has");

  ChangeSet short_siblings = honest;
  short_siblings.siblings.pop_back();
  refused(verify_change_set(short_siblings, t.old_head, t.new_head), "the old tree of 300");

  ChangeSet no_k = honest;  // page k = 300 must be named
  no_k.pgnos.pop_back();
  no_k.old_leaves.pop_back();
  no_k.new_leaves.pop_back();
  refused(verify_change_set(no_k, t.old_head, t.new_head), "page 300 and every page above it");

  ChangeSet other_start = honest;
  other_start.from_size = 9;
  refused(verify_change_set(other_start, t.old_head, t.new_head), "they start at size 9");

  TwoHeads other = two_heads(300, 300, {5, 77, 201});
  refused(verify_change_set(honest, t.old_head, other.new_head), "not the accepted one");
}

TEST_CASE("change sets: growth and shrink need every page past the smaller size") {
  TwoHeads grow = two_heads(100, 104, {3});
  ChangeSet g = change_set(grow);
  CHECK(g.pgnos == std::vector<uint32_t>{3, 100, 101, 102, 103, 104});
  CHECK(g.old_leaves.size() == 2);
  CHECK(g.new_leaves.size() == 6);
  REQUIRE(verify_change_set(g, grow.old_head, grow.new_head).ok());
  ChangeSet g_missing = g;  // a new page left out
  g_missing.pgnos.erase(g_missing.pgnos.begin() + 3);
  g_missing.new_leaves.erase(g_missing.new_leaves.begin() + 3);
  refused(verify_change_set(g_missing, grow.old_head, grow.new_head),
          "page 100 and every page above it up to 104");
  ChangeSet g_wrong_new = g;  // a grown page's leaf changed
  g_wrong_new.new_leaves.back()[0] ^= 1;
  refused(verify_change_set(g_wrong_new, grow.old_head, grow.new_head), "the new head has");

  TwoHeads shrink = two_heads(100, 97, {});
  ChangeSet s = change_set(shrink);
  CHECK(s.pgnos == std::vector<uint32_t>{97, 98, 99, 100});
  CHECK(s.old_leaves.size() == 4);
  CHECK(s.new_leaves.size() == 1);
  REQUIRE(verify_change_set(s, shrink.old_head, shrink.new_head).ok());
  CHECK(changed_pages(s, 100) == std::vector<uint32_t>{98, 99, 100});
  ChangeSet s_wrong_cut = s;  // a cut page's old leaf changed
  s_wrong_cut.old_leaves.back()[0] ^= 1;
  refused(verify_change_set(s_wrong_cut, shrink.old_head, shrink.new_head), "the trusted head has");
  ChangeSet s_leaves = s;  // an old leaf missing for a cut page
  s_leaves.old_leaves.pop_back();
  refused(verify_change_set(s_leaves, shrink.old_head, shrink.new_head), "3 old and 1 new leaves");

  // Growth past the cap is refused by the server: the client asks for leaves.
  TwoHeads big = two_heads(10, 10 + kMaxChangedPages, {});
  auto too_many = build_change_set(big.new_tree, big.new_head, 10, 10, big.history);
  REQUIRE_FALSE(too_many.ok());
  CHECK(too_many.error().code == Errc::too_large);
}

TEST_CASE("change set codec: refusals name the field") {
  TwoHeads t = two_heads(50, 52, {4});
  const Bytes good = encode_change_set(change_set(t));
  REQUIRE(decode_change_set(good).ok());
  Bytes trailing = good;
  trailing.push_back(0);
  bad(decode_change_set(trailing), Errc::trailing_bytes, "trailing");
  bad(decode_change_set(ByteView(good).first(good.size() - 1)), Errc::truncated, "siblings");
  Bytes version = good;
  version[0] = 2;
  bad(decode_change_set(version), Errc::bad_version, "version");
  Bytes count = good;
  put_u32(count, 1 + 8 + kEncodedHeadSize, kMaxChangedPages + 1);
  bad(decode_change_set(count), Errc::too_large, "count");

  const ChangesRequest q{7, 9};
  CHECK(*decode_changes_request(encode_changes_request(q)) == q);
  bad(decode_changes_request(encode_changes_request({9, 7})), Errc::bad_value, "to_size");
  CHECK(decode_changes_request(encode_changes_request({9, 0})).ok());
}

}  // namespace swarmlite
