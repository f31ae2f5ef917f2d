// The offline client (proof_check.h) and its head cache (head_cache.h) on
// saved proof bytes from a real Primary.
#include "client/proof_check.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>

#include "client/report_format.h"
#include "client/test_log_test_util.h"
#include "core/file_io.h"

using namespace swarmlite;
using namespace swarmlite::client;
using swarmlite::client::testing::TestLog;

namespace {

const std::string kSql = "SELECT id, body FROM notes WHERE id = ?";

std::string error_text(const ClientError& e) { return e.to_string(); }

}  // namespace

TEST_CASE("a good proof verifies: rows, columns, types, the SQL and params it answers, the head, pages") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  Bytes proof = log.prove(kSql, {Value{int64_t{2}}});
  ProofChecker checker(keys.pub);
  auto a = checker.check(proof, Expected{kSql, std::vector<Value>{Value{int64_t{2}}}});
  REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : error_text(a.error())));
  CHECK(a->columns == std::vector<std::string>{"id", "body"});
  CHECK(a->types == std::vector<std::string>{"INTEGER", "TEXT"});
  REQUIRE(a->rows.size() == 1);
  CHECK(a->rows[0] == std::vector<Value>{Value{int64_t{2}}, Value{std::string("two")}});
  CHECK(a->sql == kSql);
  CHECK(a->params == std::vector<Value>{Value{int64_t{2}}});
  CHECK(a->head == *log.primary->head());
  CHECK(a->pages >= 2);
  CHECK(a->proof == proof);
  CHECK(a->freshness.newest_size == a->head.size);
  CHECK(a->freshness.entries_behind == 0);
  // Without an expectation it still proves, and says which question.
  auto any = checker.check(proof);
  REQUIRE(any.ok());
  CHECK(any->sql == kSql);
  // The JSON report carries the same.
  auto doc = answer_json(*any);
  CHECK(doc["sql"] == kSql);
  CHECK(doc["verified"]["size"] == a->head.size);
  CHECK(doc["values"][0][1] == "two");
}

TEST_CASE("a proof of swapped SQL fails the SQL check, other params fail the params check, both named") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  Bytes proof = log.prove(kSql, {Value{int64_t{3}}});
  ProofChecker checker(keys.pub);
  auto swapped = checker.check(proof, Expected{"SELECT id, body FROM notes WHERE id = 2", std::vector<Value>{}});
  REQUIRE_FALSE(swapped.ok());
  CHECK(swapped.error().kind == ClientErrorKind::sql_mismatch);
  CHECK(swapped.error().is_verification_failure());
  CHECK_MESSAGE(swapped.error().message.find("WHERE id = 2") != std::string::npos, swapped.error().message);
  CHECK_MESSAGE(swapped.error().message.find("WHERE id = ?") != std::string::npos, swapped.error().message);
  auto params = checker.check(proof, Expected{kSql, std::vector<Value>{Value{int64_t{2}}}});
  REQUIRE_FALSE(params.ok());
  CHECK(params.error().kind == ClientErrorKind::params_mismatch);
  CHECK_MESSAGE(params.error().message.find("asked [2], the proof holds [3]") != std::string::npos,
                params.error().message);
  // Params alone are not checked (they bind to the SQL they come with).
  CHECK(checker.check(proof, Expected{std::nullopt, std::vector<Value>{}}).ok());
}

TEST_CASE("a stale head fails max_age and min_size as stale_head; a changed byte is proof_invalid") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  Bytes proof = log.prove(kSql, {Value{int64_t{1}}});
  const Head head = *log.primary->head();
  CheckOptions o;
  o.max_age = std::chrono::milliseconds(60000);
  o.now_ms = head.time_ms + 60001;
  ProofChecker stale(keys.pub, o);
  auto old = stale.check(proof);
  REQUIRE_FALSE(old.ok());
  CHECK(old.error().kind == ClientErrorKind::stale_head);
  CHECK_MESSAGE(old.error().message.find("stale head") != std::string::npos, old.error().message);
  stale.options().now_ms = head.time_ms + 60000;  // exactly max_age: fine
  CHECK(stale.check(proof).ok());
  CheckOptions m;
  m.min_size = head.size + 1;
  auto small = ProofChecker(keys.pub, m).check(proof);
  REQUIRE_FALSE(small.ok());
  CHECK(small.error().kind == ClientErrorKind::stale_head);

  Bytes bad = proof;
  bad[bad.size() - 40] ^= 0x01;
  auto broken = ProofChecker(keys.pub).check(bad);
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.error().kind == ClientErrorKind::proof_invalid);
  REQUIRE(broken.error().cause);
  auto other_key = ProofChecker(KeyPair::generate().pub).check(proof);
  REQUIRE_FALSE(other_key.ok());
  CHECK(other_key.error().kind == ClientErrorKind::proof_invalid);
  CHECK(other_key.error().cause->code == Errc::bad_signature);
}

TEST_CASE("a second, different head of a size already verified is equivocation, with evidence; a re-signed one is not") {
  KeyPair keys = KeyPair::generate();
  TestLog a(keys, "a", 2), b(keys, "b", 2);
  REQUIRE(a.primary->size() == b.primary->size());
  ProofChecker checker(keys.pub);
  REQUIRE(checker.check(a.prove(kSql, {Value{int64_t{1}}})).ok());
  // The same state signed again later: the same head but for time and signature.
  REQUIRE(a.primary->sign_head().ok());
  REQUIRE(checker.check(a.prove(kSql, {Value{int64_t{2}}})).ok());
  auto forked = checker.check(b.prove(kSql, {Value{int64_t{1}}}));
  REQUIRE_FALSE(forked.ok());
  CHECK(forked.error().kind == ClientErrorKind::equivocation);
  CHECK(forked.error().is_verification_failure());
  REQUIRE(forked.error().evidence);
  CHECK(forked.error().evidence->verify(keys.pub).ok());
  CHECK_MESSAGE(forked.error().message.find(to_hex(b.primary->state_root())) != std::string::npos,
                forked.error().message);
  // The cache keeps the first head: a's proofs still verify, b's still do not.
  CHECK(checker.check(a.prove(kSql, {Value{int64_t{3}}})).ok());
  CHECK_FALSE(checker.check(b.prove(kSql, {Value{int64_t{3}}})).ok());
}

TEST_CASE("freshness: an answer from an older head verifies and says how far behind the newest seen it is") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  Bytes old_proof = log.prove(kSql, {Value{int64_t{1}}});
  const Head old_head = *log.primary->head();
  log.write("INSERT INTO notes(body) VALUES('four')", {});
  log.write("INSERT INTO notes(body) VALUES('five')", {});
  ProofChecker checker(keys.pub);
  auto fresh = checker.check(log.prove(kSql, {Value{int64_t{4}}}));
  REQUIRE(fresh.ok());
  auto behind = checker.check(old_proof);
  REQUIRE(behind.ok());
  CHECK(behind->head == old_head);
  CHECK(behind->freshness.newest_size == fresh->head.size);
  CHECK(behind->freshness.entries_behind == 2);
  CHECK(behind->freshness.ms_behind == fresh->head.time_ms - old_head.time_ms);
}

TEST_CASE("the head cache file: saved, loaded with every head checked, equivocation caught across runs") {
  KeyPair keys = KeyPair::generate();
  TestLog a(keys, "a", 1), b(keys, "b", 1);
  TempDir dir("client-heads");
  std::filesystem::create_directories(dir.path);
  const auto file = dir.path / "heads";
  {
    auto missing = HeadCache::load(file);
    REQUIRE(missing.ok());
    CHECK(missing->head_count() == 0);
  }
  ProofChecker first(keys.pub);
  REQUIRE(first.check(a.prove(kSql, {Value{int64_t{1}}})).ok());
  REQUIRE(first.heads().save(file).ok());

  auto loaded = HeadCache::load(file);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : error_text(loaded.error())));
  CHECK(loaded->head_count() == 1);
  CHECK(loaded->newest(keys.pub) == a.primary->head());
  auto seen = loaded->observe(*b.primary->head());
  REQUIRE_FALSE(seen.ok());
  CHECK(seen.error().kind == ClientErrorKind::equivocation);

  // Damaged files are refused, naming what and where.
  Bytes bytes = file_io::read_file(file, 1 << 20).value();
  auto write = [&](const Bytes& content) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
  };
  Bytes flipped = bytes;
  flipped.back() ^= 0x01;  // the signature's last byte
  write(flipped);
  auto bad_sig = HeadCache::load(file);
  REQUIRE_FALSE(bad_sig.ok());
  CHECK(bad_sig.error().kind == ClientErrorKind::file);
  CHECK_MESSAGE(bad_sig.error().message.find("head #0 at offset 13") != std::string::npos, bad_sig.error().message);
  write(Bytes(bytes.begin(), bytes.end() - 1));
  auto truncated = HeadCache::load(file);
  REQUIRE_FALSE(truncated.ok());
  CHECK(truncated.error().kind == ClientErrorKind::file);
  Bytes wrong_magic = bytes;
  wrong_magic[0] = 'X';
  write(wrong_magic);
  CHECK_FALSE(HeadCache::load(file).ok());
}

TEST_CASE("the head cache keeps the newest sizes per log and the most recently used logs") {
  KeyPair k1 = KeyPair::generate(), k2 = KeyPair::generate();
  TestLog l1(k1, "a", 0), l2(k2, "b", 0);
  HeadCacheOptions o;
  o.max_sizes_per_log = 2;
  o.max_logs = 1;
  HeadCache cache(o);
  const Head h1 = *l1.primary->head();
  REQUIRE(cache.observe(h1).ok());
  l1.write("INSERT INTO notes(body) VALUES('x')", {});
  const Head h2 = *l1.primary->head();
  l1.write("INSERT INTO notes(body) VALUES('y')", {});
  const Head h3 = *l1.primary->head();
  REQUIRE(cache.observe(h2).ok());
  REQUIRE(cache.observe(h3).ok());
  CHECK(cache.head_count() == 2);
  CHECK_FALSE(cache.at(k1.pub, h1.size));
  CHECK(cache.newest(k1.pub) == h3);
  REQUIRE(cache.observe(*l2.primary->head()).ok());  // a second log pushes the first out
  CHECK_FALSE(cache.newest(k1.pub));
  CHECK(cache.newest(k2.pub) == l2.primary->head());
}

TEST_CASE("tables render as the CLI prints them") {
  std::vector<std::string> cols{"id", "name"};
  std::vector<std::vector<Value>> rows{{Value{int64_t{1}}, Value{std::string("ada")}},
                                       {Value{}, Value{Bytes{0xab}}},
                                       {Value{2.5}, Value{std::string("grace hopper")}}};
  CHECK(format_table(cols, rows) == "id    name\n----  ------------\n1     ada\nNULL  x'ab'\n2.5   grace hopper\n(3 rows)\n");
  TableStyle demo;
  demo.indent = "  ";
  demo.header_rule = false;
  demo.row_count = false;
  demo.reals_fixed2 = true;
  CHECK(format_table(cols, {rows[2]}, demo) == "  id    name\n  2.50  grace hopper\n");
  CHECK(format_table({}, {}) == "(0 rows)\n");
  CHECK(json_string("a\x1b[2Jb") == "\"a\\u001b[2Jb\"");
}

TEST_CASE(
    "a table shows control characters as escapes: a value cannot cut it short or fake a line") {
  using namespace std::string_literals;
  // A NUL used to end the whole table (it was printed as a C string): the rows
  // after it, and the rest of its own row, were lost.
  std::vector<std::vector<Value>> rows{{Value{"x\0y"s}, Value{int64_t{7}}},
                                       {Value{"line\nverified at size 1"s}, Value{int64_t{8}}},
                                       {Value{"\x1b[2J\r\t\x7f"s}, Value{int64_t{9}}},
                                       {Value{"\u00e9t\u00e9 \u00c5 \u2603"s}, Value{int64_t{10}}},
                                       {Value{"a\u202eb\u2066c\u0085d"s}, Value{int64_t{11}}}};
  const std::string t = format_table({"v", "n\nm"}, rows);
  CHECK(t.find('\0') == std::string::npos);
  CHECK(t.find('\x1b') == std::string::npos);
  CHECK(t.find("x\\0y") != std::string::npos);
  CHECK(t.find("line\\nverified at size 1") != std::string::npos);
  CHECK(t.find("\\x1b[2J\\r\\t\\x7f") != std::string::npos);
  CHECK(t.find("\u00e9t\u00e9 \u00c5 \u2603") != std::string::npos);  // printable UTF-8 kept
  CHECK(t.find("a\\u202eb\\u2066c\\u0085d") != std::string::npos);
  CHECK(t.find("n\\nm") != std::string::npos);  // column names too
  CHECK(t.find("(5 rows)") != std::string::npos);
  // One line per row, plus the header, its rule and the count.
  CHECK(std::count(t.begin(), t.end(), '\n') == 8);
  CHECK(display_text("plain \\n text") == "plain \\n text");
}
