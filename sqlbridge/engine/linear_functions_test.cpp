#include "sqlbridge/engine/linear_functions.h"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

using namespace swarmlite;

namespace {

SqliteDb open_memory() {
  auto db = open_sqlite(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  REQUIRE(db.ok());
  return std::move(db).value();
}

// One argument, as SQL sees it: NULL, INTEGER, REAL, TEXT (any bytes) or BLOB.
struct Arg {
  int type = SQLITE_NULL;
  int64_t i = 0;
  double r = 0;
  std::string bytes;
};

void bind(sqlite3_stmt* st, int at, const Arg& a) {
  switch (a.type) {
    case SQLITE_INTEGER: sqlite3_bind_int64(st, at, a.i); break;
    case SQLITE_FLOAT: sqlite3_bind_double(st, at, a.r); break;
    case SQLITE_TEXT: sqlite3_bind_text(st, at, a.bytes.data(), static_cast<int>(a.bytes.size()), SQLITE_TRANSIENT); break;
    case SQLITE_BLOB: sqlite3_bind_blob(st, at, a.bytes.data(), static_cast<int>(a.bytes.size()), SQLITE_TRANSIENT); break;
    default: sqlite3_bind_null(st, at);
  }
}

// "NULL" or the integer instr() returned.
std::string run(sqlite3* db, const Arg& h, const Arg& n) {
  sqlite3_stmt* raw = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT instr(?1, ?2)", -1, &raw, nullptr) == SQLITE_OK);
  SqliteStmt st(raw);
  bind(raw, 1, h);
  bind(raw, 2, n);
  REQUIRE(sqlite3_step(raw) == SQLITE_ROW);
  if (sqlite3_column_type(raw, 0) == SQLITE_NULL) return "NULL";
  REQUIRE(sqlite3_column_type(raw, 0) == SQLITE_INTEGER);
  return std::to_string(sqlite3_column_int64(raw, 0));
}

std::string describe(const Arg& a) {
  std::string hex;
  for (unsigned char c : a.bytes) hex += fmt::format("{:02x}", c);
  return fmt::format("type {} i {} r {} bytes x'{}'", a.type, a.i, a.r, hex);
}

}  // namespace

TEST_CASE("linear instr() gives the built-in's result on generated text, invalid UTF-8, blobs, numbers and NULL") {
  SqliteDb builtin = open_memory();
  SqliteDb linear = open_memory();
  REQUIRE(install_linear_functions(linear.get()).ok());
  std::mt19937_64 rng(20261130);
  // Small alphabets so that matches, near-matches and repeats are common; the
  // multi-byte and stray continuation bytes exercise SQLite's character walk.
  const std::vector<std::string> pieces = {"a", "b", "ab", "é", "日", "\x80", "\xbf", "\xc3", "\xe6\x97",
                                           "\xf0\x9f\x98\x80", std::string(1, '\0'), "1", ".", "-", "e"};
  auto gen_bytes = [&](size_t max_pieces) {
    std::string s;
    size_t n = rng() % (max_pieces + 1);
    for (size_t i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
    return s;
  };
  auto gen = [&](size_t max_pieces) {
    Arg a;
    switch (rng() % 10) {
      case 0: a.type = SQLITE_NULL; break;
      case 1: a.type = SQLITE_INTEGER; a.i = static_cast<int64_t>(rng() % 2000) - 1000; break;
      case 2: a.type = SQLITE_FLOAT; a.r = static_cast<double>(static_cast<int64_t>(rng() % 20000) - 10000) / 7.0; break;
      case 3:
      case 4: a.type = SQLITE_BLOB; a.bytes = gen_bytes(max_pieces); break;
      default: a.type = SQLITE_TEXT; a.bytes = gen_bytes(max_pieces); break;
    }
    return a;
  };
  int compared = 0, nonzero = 0;
  for (int i = 0; i < 200000; ++i) {
    Arg h = gen(12);
    Arg n = gen(3);
    // Often take the needle from the haystack, so that it matches.
    if (rng() % 2 == 0 && !h.bytes.empty() && (n.type == SQLITE_TEXT || n.type == SQLITE_BLOB)) {
      size_t from = rng() % h.bytes.size();
      n.bytes = h.bytes.substr(from, 1 + rng() % 6);
    }
    const std::string want = run(builtin.get(), h, n);
    const std::string got = run(linear.get(), h, n);
    if (want != got) {
      FAIL_CHECK("instr(" << describe(h) << ", " << describe(n) << "): built-in " << want << ", linear " << got);
      break;
    }
    ++compared;
    if (want != "0" && want != "NULL") ++nonzero;
  }
  CHECK(compared == 200000);
  CHECK(nonzero > 20000);  // the generator finds matches, not only misses
}

TEST_CASE("linear instr() on a 16 MiB haystack and an 8 MiB needle that never matches returns 0") {
  // SQLite's own instr() compares the needle at every position: 8 M x 8 MiB
  // byte comparisons, hours of one uninterruptible call. This one is linear.
  SqliteDb db = open_memory();
  REQUIRE(install_linear_functions(db.get()).ok());
  sqlite3_stmt* raw = nullptr;
  REQUIRE(sqlite3_prepare_v2(db.get(),
                             "SELECT instr(replace(zeroblob(16777216), x'00', 'a'), "
                             "replace(zeroblob(8388608), x'00', 'a') || 'b'), "
                             "instr(replace(zeroblob(16777216), x'00', 'a') || 'b', "
                             "replace(zeroblob(8388608), x'00', 'a') || 'b')",
                             -1, &raw, nullptr) == SQLITE_OK);
  SqliteStmt st(raw);
  REQUIRE(sqlite3_step(raw) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(raw, 0) == 0);
  CHECK(sqlite3_column_int64(raw, 1) == 16777216 - 8388608 + 1);
}
