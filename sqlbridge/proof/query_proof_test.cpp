// The query proof codec: one canonical byte string per proof; anything else is
// refused with its own error and offset.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/codec.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/proof/proof_test_util.h"
#include "sqlbridge/proof/prover.h"

namespace swarmlite {
namespace {

using testing::TempDir;

// A small real proof (page size 512) built once.
const ProvedQuery& small_proof() {
  static ProvedQuery proved = [] {
    TempDir dir;
    auto db = dir / "small.db";
    proof_testing::TestDbOptions o;
    o.page_size = 512;
    o.rows = 300;
    o.extras = false;
    REQUIRE(proof_testing::build_test_db(db, o).ok());
    auto tree = StateTree::from_file(db);
    REQUIRE(tree.ok());
    auto head = proof_testing::sign_state(*tree, KeyPair::generate());
    REQUIRE(head.ok());
    auto p = prove_query(db, *tree, *head, "SELECT name FROM items WHERE id = ?",
                         {Value{int64_t{250}}});
    REQUIRE(p.ok());
    return std::move(p).value();
  }();
  return proved;
}

Error must_not_decode(ByteView bytes, const QueryProofLimits& limits = {}) {
  auto r = decode_query_proof(bytes, limits);
  REQUIRE_FALSE(r.ok());
  MESSAGE(r.error().to_string());
  return r.error();
}

// Offset of the page count field: version, head, statement, page size.
size_t page_count_offset(const QueryProof& p) {
  Writer w;
  write_statement(w, Statement{p.sql, p.params});
  return 1 + kEncodedHeadSize + w.size() + 4;
}

TEST_CASE("a query proof round-trips to the same bytes") {
  const ProvedQuery& p = small_proof();
  CHECK(p.proof.pages.size() >= 2);
  CHECK(p.encoded == encode_query_proof(p.proof));
  auto d = decode_query_proof(p.encoded);
  REQUIRE(d.ok());
  CHECK(*d == p.proof);
  CHECK(encode_query_proof(*d) == p.encoded);
}

TEST_CASE("a truncated proof is refused at every length") {
  const Bytes& b = small_proof().encoded;
  for (size_t n = 0; n < b.size(); n += (n < 200 || b.size() - n < 80) ? 1 : 37) {
    auto r = decode_query_proof(ByteView(b.data(), n));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::truncated);
  }
}

TEST_CASE("trailing bytes, a bad version and an oversized proof are refused") {
  Bytes b = small_proof().encoded;
  Bytes longer = b;
  longer.push_back(0);
  CHECK(must_not_decode(longer).code == Errc::trailing_bytes);

  Bytes v2 = b;
  v2[0] = 2;
  CHECK(must_not_decode(v2).code == Errc::bad_version);

  QueryProofLimits tight;
  tight.max_proof_bytes = b.size() - 1;
  Error e = must_not_decode(b, tight);
  CHECK(e.code == Errc::too_large);
  CHECK(e.message.find("offset 0") != std::string::npos);
}

TEST_CASE("reordered or duplicated pages are refused") {
  const QueryProof& p = small_proof().proof;
  REQUIRE(p.pages.size() >= 3);
  QueryProof swapped = p;
  std::swap(swapped.pages[1], swapped.pages[2]);
  Error e = must_not_decode(encode_query_proof(swapped));
  CHECK(e.code == Errc::non_canonical);
  CHECK(e.message.find("strictly increasing") != std::string::npos);

  QueryProof dup = p;
  dup.pages.insert(dup.pages.begin() + 2, dup.pages[1]);
  Error e2 = must_not_decode(encode_query_proof(dup));
  CHECK(e2.code == Errc::non_canonical);

  QueryProof no_page1 = p;
  no_page1.pages.erase(no_page1.pages.begin());
  CHECK(must_not_decode(encode_query_proof(no_page1)).code == Errc::non_canonical);
}

TEST_CASE("a page beyond the head's page count or page 1 not normalised is refused") {
  QueryProof beyond = small_proof().proof;
  beyond.pages.back().pgno = beyond.head.page_count + 1;
  Error e = must_not_decode(encode_query_proof(beyond));
  CHECK(e.code == Errc::non_canonical);
  CHECK(e.message.find("beyond the head's page count") != std::string::npos);

  QueryProof wal_flag = small_proof().proof;
  wal_flag.pages[0].bytes[18] = 2;
  Error e2 = must_not_decode(encode_query_proof(wal_flag));
  CHECK(e2.code == Errc::non_canonical);
  CHECK(e2.message.find("not normalised") != std::string::npos);
}

TEST_CASE("a bad page size or a page count over the input is refused before allocating") {
  const QueryProof& p = small_proof().proof;
  Bytes b = small_proof().encoded;
  size_t at = page_count_offset(p);

  Bytes bad_size = b;
  bad_size[at - 1] = 0x01;  // page size 513
  CHECK(must_not_decode(bad_size).code == Errc::bad_value);

  Bytes huge = b;
  huge[at] = huge[at + 1] = 0x00;
  huge[at + 2] = 0x7f;  // 32512 pages of 512 bytes: far more than the input holds
  Error e = must_not_decode(huge);
  CHECK(e.code == Errc::truncated);
  CHECK(e.message.find(fmt::format("offset {}", at)) != std::string::npos);

  QueryProofLimits few;
  few.max_pages = 1;
  CHECK(must_not_decode(b, few).code == Errc::too_large);

  Bytes zero = b;
  zero[at] = zero[at + 1] = zero[at + 2] = zero[at + 3] = 0;
  CHECK(must_not_decode(zero).code == Errc::bad_value);
}

TEST_CASE("a multiproof with the wrong number of hashes is refused") {
  QueryProof more = small_proof().proof;
  more.multiproof.push_back(Hash32{});
  CHECK(must_not_decode(encode_query_proof(more)).code == Errc::too_large);
  QueryProof fewer = small_proof().proof;
  REQUIRE_FALSE(fewer.multiproof.empty());
  fewer.multiproof.pop_back();
  CHECK(must_not_decode(encode_query_proof(fewer)).code == Errc::bad_value);
}

TEST_CASE("statement caps and canonical values apply to the SQL and params") {
  QueryProof p = small_proof().proof;
  QueryProofLimits l;
  l.max_sql_bytes = 5;
  CHECK(must_not_decode(encode_query_proof(p), l).code == Errc::too_large);
  p.params = {Value{std::nan("")}};
  CHECK(must_not_decode(encode_query_proof(p)).code == Errc::non_canonical);
  p.params = {};
  p.sql = std::string("SELECT 1\0; DROP", 15);
  CHECK(must_not_decode(encode_query_proof(p)).code == Errc::non_canonical);
}

TEST_CASE("page size comes from header bytes 16-17, 1 meaning 65536") {
  Bytes page(512, 0);
  page[16] = 0x10;
  CHECK(*page_size_from_header(page) == 4096);
  page[16] = 0x00;
  page[17] = 0x01;
  CHECK(*page_size_from_header(page) == 65536);
  page[17] = 0x03;
  CHECK_FALSE(page_size_from_header(page).ok());
  CHECK_FALSE(page_size_from_header(ByteView(page.data(), 50)).ok());
}

TEST_CASE("docs/formats/query-proof.md gives the encoded head's real size") {
  CHECK(encode_head(Head{}).size() == kEncodedHeadSize);
  // __FILE__ (sqlbridge/proof/ of the tree) may be relative to the build
  // directory (ccache's base_dir): look in its tree, then upwards from where
  // the test runs.
  namespace fs = std::filesystem;
  const fs::path rel = fs::path("docs") / "formats" / "query-proof.md";
  fs::path doc_path = fs::path(__FILE__).parent_path().parent_path().parent_path() / rel;
  for (fs::path dir = fs::current_path(); !fs::exists(doc_path) && dir.has_relative_path(); dir = dir.parent_path())
    doc_path = dir / rel;
  std::ifstream in(doc_path);
  REQUIRE_MESSAGE(in.good(), doc_path.string());
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(doc.find(fmt::format("kEncodedHeadSize ({}) bytes", kEncodedHeadSize)) != std::string::npos);
  // The example's offsets: the statement starts right after version + head.
  CHECK(doc.find(fmt::format("  {}    4  sql length", 1 + kEncodedHeadSize)) != std::string::npos);
}

}  // namespace
}  // namespace swarmlite
