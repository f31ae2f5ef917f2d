#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "core/codec.h"
#include "core/entry.h"
#include "core/hash.h"

namespace swarmlite {

namespace {

// A small entry with one param of every type.
Entry sample_entry() {
  Entry e;
  e.seq = 7;
  e.time_ms = 1700000000123;
  for (size_t i = 0; i < e.seed.size(); ++i) e.seed[i] = static_cast<uint8_t>(i);
  e.statements.push_back(Statement{"INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                                   {Value{}, Value{int64_t{-5}}, Value{2.5}, Value{std::string("hé")},
                                    Value{Bytes{0xde, 0xad}}}});
  e.statements.push_back(Statement{"DELETE FROM t", {}});
  e.state_root.fill(0xaa);
  e.page_count = 3;
  return e;
}

Value random_value(std::mt19937_64& rng) {
  auto len = [&](size_t big) {
    return rng() % 16 == 0 ? static_cast<size_t>(rng() % big) : static_cast<size_t>(rng() % 12);
  };
  switch (rng() % 5) {
    case 0: return Value{};
    case 1: return Value{static_cast<int64_t>(rng())};
    case 2: {
      double d;
      do {
        uint64_t bits = rng();
        std::memcpy(&d, &bits, 8);
      } while (std::isnan(d));
      return Value{d};
    }
    case 3: {
      // Printable ASCII plus some multi-byte characters: always valid UTF-8.
      static const std::string_view kPieces[] = {"a", "Z", " ", "é", "€", "😀", "\n", "'"};
      std::string s;
      for (size_t i = len(4096); i > 0; --i) s += kPieces[rng() % std::size(kPieces)];
      return Value{s};
    }
    default: {
      Bytes b(len(200000));
      for (auto& x : b) x = static_cast<uint8_t>(rng());
      return Value{b};
    }
  }
}

// A generator seeded with `seed`, or with SWARMLITE_SEED when set (reported).
std::mt19937_64 seeded_rng(uint64_t seed) {
  if (const char* s = std::getenv("SWARMLITE_SEED")) seed = std::strtoull(s, nullptr, 0);
  MESSAGE("seed = " << seed << " (set SWARMLITE_SEED to change)");
  return std::mt19937_64(seed);
}

Entry random_entry(std::mt19937_64& rng) {
  Entry e;
  e.seq = rng();
  e.time_ms = static_cast<int64_t>(rng());
  for (auto& x : e.seed) x = static_cast<uint8_t>(rng());
  for (size_t i = rng() % 6; i > 0; --i) {
    Statement st;
    st.sql = fmt::format("UPDATE t SET v = ? WHERE id = {}", rng() % 1000);
    for (size_t k = rng() % 8; k > 0; --k) st.params.push_back(random_value(rng));
    e.statements.push_back(std::move(st));
  }
  for (auto& x : e.state_root) x = static_cast<uint8_t>(rng());
  e.page_count = static_cast<uint32_t>(rng());
  return e;
}

// Offsets in the encoding of sample_entry() (docs/formats/entry.md).
constexpr size_t kStatementCountAt = 1 + 8 + 8 + 32;
constexpr size_t kFirstSqlAt = kStatementCountAt + 4;
constexpr size_t kFirstParamCountAt = kFirstSqlAt + 4 + 36;
constexpr size_t kFirstTagAt = kFirstParamCountAt + 4;

Errc decode_error(ByteView b, const EntryLimits& limits = {}) {
  auto r = decode_entry(b, limits);
  REQUIRE(!r.ok());
  return r.error().code;
}

bool mentions(const Result<Entry>& r, std::string_view text) {
  return !r.ok() && r.error().message.find(text) != std::string::npos;
}

}  // namespace

TEST_CASE("entry: sample layout is as documented") {
  Bytes b = encode_entry(sample_entry());
  CHECK(b[0] == kEntryVersion);
  CHECK(b[kStatementCountAt + 3] == 2);
  CHECK(as_chars(ByteView(b).subspan(kFirstSqlAt + 4, 6)) == "INSERT");
  CHECK(b[kFirstParamCountAt + 3] == 5);
  CHECK(b[kFirstTagAt] == 0);  // null
  CHECK(entry_leaf_hash(b) == hash_leaf(b));
  auto d = decode_entry(b);
  REQUIRE(d.ok());
  CHECK(*d == sample_entry());
}

TEST_CASE("entry: random entries round trip and re-encode to the same bytes") {
  std::mt19937_64 rng = seeded_rng(0x5eed0001);
  for (int i = 0; i < 300; ++i) {
    Entry e = random_entry(rng);
    Bytes b = encode_entry(e);
    auto d = decode_entry(b);
    REQUIRE_MESSAGE(d.ok(), d.error_text());
    REQUIRE(*d == e);
    REQUIRE(encode_entry(*d) == b);
  }
}

TEST_CASE("entry: encoded_entry_bytes is the encoding's size, to the byte") {
  // encode_entry reserves this many bytes once (into a fresh buffer, or one
  // the primary kept from an earlier entry): a size off by one would cost a
  // reallocation, or leave capacity unused; the count must match every value
  // type. A kept buffer's old bytes must not survive.
  std::mt19937_64 rng = seeded_rng(0x5eed0003);
  CHECK(encoded_entry_bytes(sample_entry().statements) == encode_entry(sample_entry()).size());
  CHECK(encoded_entry_bytes({}) == encode_entry(Entry{}).size());
  for (int i = 0; i < 300; ++i) {
    Entry e = random_entry(rng);
    REQUIRE(encoded_entry_bytes(e.statements) == encode_entry(e).size());
    REQUIRE(encode_entry(e, e.statements, Bytes(300, 0xab)) == encode_entry(e));
    for (const Statement& st : e.statements) {
      Writer w;
      write_statement(w, st);
      REQUIRE(encoded_statement_bytes(st) == w.size());
    }
  }
}

TEST_CASE("entry: decode_entry_into an earlier entry gives what decode_entry gives") {
  // One Entry decoded into again and again, as a replica's store thread does
  // with the entries handed back to it (Log::recycle_decoded): whatever the
  // earlier entry held (more statements, a text where a null comes, a blob
  // where an int comes), the result is the new entry alone, and an error
  // leaves nothing that the next decode keeps.
  std::mt19937_64 rng = seeded_rng(0x5eed0003);
  Entry reused;
  int failed = 0;
  for (int i = 0; i < 2000; ++i) {
    Bytes b = encode_entry(random_entry(rng));
    if (rng() % 8 == 0) b[rng() % b.size()] ^= 0x40;  // sometimes damaged
    auto fresh = decode_entry(b);
    Status st = decode_entry_into(b, reused);
    REQUIRE(st.ok() == fresh.ok());
    if (!st.ok()) {
      ++failed;
      CHECK(st.error().message == fresh.error().message);
      continue;
    }
    REQUIRE(reused == *fresh);
    REQUIRE(encode_entry(reused) == b);
  }
  CHECK(failed > 20);
  // Every value type after every other, in the same slot.
  const Value kinds[] = {Value{}, Value{int64_t{3}}, Value{1.5}, Value{std::string("tëxt")},
                         Value{Bytes{1, 2, 3}}};
  for (const Value& before : kinds) {
    for (const Value& after : kinds) {
      Entry a = sample_entry(), b = sample_entry();
      a.statements[0].params = {before, before};
      b.statements[0].params = {after};
      Entry into;
      REQUIRE(decode_entry_into(encode_entry(a), into).ok());
      REQUIRE(decode_entry_into(encode_entry(b), into).ok());
      CHECK(into == b);
    }
  }
}

TEST_CASE("entry: check_entry accepts and refuses exactly what decode_entry does") {
  // Random entries, then every kind of damage at random places: check_entry
  // (the primary's and the log's gate when nothing is kept) must give the same
  // verdict and the same error as decode_entry.
  std::mt19937_64 rng = seeded_rng(0x5eed0002);
  EntryLimits small;
  small.max_statements = 4;
  small.max_sql_bytes = 40;
  small.max_params = 4;
  small.max_value_bytes = 40;
  small.max_total_params = 6;
  int accepted = 0, refused = 0;
  for (int i = 0; i < 3000; ++i) {
    Bytes b = encode_entry(random_entry(rng));
    switch (rng() % 5) {
      case 0:
        break;  // intact
      case 1:
        if (!b.empty()) b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 2:
        b.resize(rng() % (b.size() + 1));
        break;
      case 3:
        b.push_back(static_cast<uint8_t>(rng()));
        break;
      case 4:
        if (!b.empty()) b[rng() % b.size()] = static_cast<uint8_t>(rng() % 2 ? 0xff : 0x00);
        break;
    }
    for (const EntryLimits& limits : {EntryLimits{}, small}) {
      auto d = decode_entry(b, limits);
      Status c = check_entry(b, limits);
      REQUIRE(d.ok() == c.ok());
      if (d.ok()) {
        ++accepted;
      } else {
        ++refused;
        CHECK(d.error().code == c.error().code);
        CHECK(d.error().message == c.error().message);
      }
    }
  }
  CHECK(accepted > 500);
  CHECK(refused > 500);
}

TEST_CASE("entry: edge values round trip") {
  Entry empty;  // no statements
  CHECK(*decode_entry(encode_entry(empty)) == empty);
  CHECK(encode_entry(empty).size() == 1 + 8 + 8 + 32 + 4 + 32 + 4);

  Entry e;
  e.seq = std::numeric_limits<uint64_t>::max();
  e.time_ms = std::numeric_limits<int64_t>::min();
  e.statements.push_back(
      Statement{"", {Value{std::numeric_limits<int64_t>::max()}, Value{-0.0},
                     Value{std::numeric_limits<double>::infinity()}, Value{std::string()},
                     Value{Bytes()}, Value{std::string("a\0b", 3)},
                     Value{Bytes(5 << 20, 0x5a)}}});  // a 5 MiB blob
  Bytes b = encode_entry(e);
  auto d = decode_entry(b);
  REQUIRE(d.ok());
  CHECK(*d == e);
  CHECK(std::signbit(std::get<double>(d->statements[0].params[1].v)));
  CHECK(encode_entry(*d) == b);
}

TEST_CASE("entry: every truncation is reported as truncated") {
  Bytes b = encode_entry(sample_entry());
  for (size_t n = 0; n < b.size(); ++n) {
    auto r = decode_entry(ByteView(b).first(n));
    REQUIRE_MESSAGE(!r.ok(), "prefix of " << n << " bytes decoded");
    CHECK_MESSAGE(r.error().code == Errc::truncated, n << ": " << r.error().to_string());
  }
}

TEST_CASE("entry: trailing bytes are refused") {
  Bytes b = encode_entry(sample_entry());
  for (int v : {0, 1, 0xff}) {
    Bytes longer = b;
    longer.push_back(static_cast<uint8_t>(v));
    auto r = decode_entry(longer);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::trailing_bytes);
    CHECK(mentions(r, fmt::format("offset {}", b.size())));
  }
}

TEST_CASE("entry: unknown version is refused") {
  Bytes b = encode_entry(sample_entry());
  for (uint8_t v : {0, 2, 255}) {
    b[0] = v;
    CHECK(decode_error(b) == Errc::bad_version);
  }
}

TEST_CASE("entry: unknown param type tag is refused with its offset") {
  Bytes b = encode_entry(sample_entry());
  b[kFirstTagAt] = 9;
  auto r = decode_entry(b);
  CHECK(r.error().code == Errc::bad_value);
  CHECK(mentions(r, fmt::format("offset {}", kFirstTagAt)));
}

TEST_CASE("entry: NaN doubles are refused") {
  for (double nan : {std::numeric_limits<double>::quiet_NaN(), -std::nan("7")}) {
    Entry e = sample_entry();
    e.statements[0].params[2] = Value{nan};
    CHECK(decode_error(encode_entry(e)) == Errc::non_canonical);
  }
}

TEST_CASE("entry: invalid UTF-8 in SQL or text params is refused") {
  const std::string bad[] = {
      "\x80",              // lone continuation byte
      "\xc0\xaf",          // overlong '/'
      "\xe0\x80\xaf",      // overlong, 3 bytes
      "\xed\xa0\x80",      // surrogate U+D800
      "\xf4\x90\x80\x80",  // above U+10FFFF
      "\xf5\x80\x80\x80",  // invalid lead byte
      "ab\xe2\x82",        // cut-off sequence at the end
      "\xff",
  };
  for (const std::string& s : bad) {
    Entry in_sql = sample_entry();
    in_sql.statements[1].sql = "SELECT '" + s + "'";
    CHECK(decode_error(encode_entry(in_sql)) == Errc::non_canonical);
    Entry in_param = sample_entry();
    in_param.statements[0].params[3] = Value{s};
    CHECK(decode_error(encode_entry(in_param)) == Errc::non_canonical);
  }
  // Valid edge characters pass: U+0080, U+FFFF, U+10FFFF.
  Entry ok = sample_entry();
  ok.statements[0].params[3] = Value{std::string("\xc2\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf")};
  CHECK(decode_entry(encode_entry(ok)).ok());

  // ASCII is checked eight bytes at a time: every bad sequence, after every
  // length of ASCII around a word, is refused at its own first byte; valid
  // multi-byte characters pass at every alignment.
  const std::string good[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x99\x82", "\xf4\x8f\xbf\xbf"};
  for (size_t before = 0; before <= 24; ++before) {
    for (size_t after : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{17}}) {
      for (const std::string& s : bad) {
        // "MARK" finds the text in the encoding (a lone 0x80 could be elsewhere).
        const std::string text = "MARK" + std::string(before, 'q') + s + std::string(after, 'z');
        Entry e = sample_entry();
        e.statements[0].params[3] = Value{text};
        const Bytes b = encode_entry(e);
        const Bytes needle(text.begin(), text.end());
        const auto at = std::search(b.begin(), b.end(), needle.begin(), needle.end());
        REQUIRE(at != b.end());
        auto r = decode_entry(b);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::non_canonical);
        // The first byte of s above 0x7f starts its bad sequence ("ab" first in one).
        const auto lead = static_cast<size_t>(
            std::find_if(s.begin(), s.end(), [](char c) { return (c & 0x80) != 0; }) - s.begin());
        CHECK_MESSAGE(
            mentions(r, fmt::format("at offset {}:", static_cast<size_t>(at - b.begin()) + 4 + before + lead)),
            r.error().message);
      }
      for (const std::string& s : good) {
        Entry e = sample_entry();
        e.statements[0].params[3] = Value{std::string(before, 'q') + s + s + std::string(after, 'z')};
        CHECK(decode_entry(encode_entry(e)).ok());
      }
    }
  }
}

TEST_CASE("entry: a NUL inside SQL text is refused") {
  Entry e = sample_entry();
  e.statements[1].sql = std::string("DELETE FROM t\0 WHERE 0", 22);
  auto r = decode_entry(encode_entry(e));
  CHECK(r.error().code == Errc::non_canonical);
  CHECK(mentions(r, "NUL"));
}

TEST_CASE("entry: counts and lengths over the caps are refused") {
  Bytes b = encode_entry(sample_entry());
  EntryLimits limits;
  limits.max_entry_bytes = b.size() - 1;
  CHECK(decode_error(b, limits) == Errc::too_large);

  limits = {};
  limits.max_statements = 1;
  CHECK(decode_error(b, limits) == Errc::too_large);

  limits = {};
  limits.max_sql_bytes = 35;  // the first SQL is 36 bytes
  CHECK(decode_error(b, limits) == Errc::too_large);

  limits = {};
  limits.max_params = 4;
  CHECK(decode_error(b, limits) == Errc::too_large);

  limits = {};
  limits.max_value_bytes = 1;  // "hé" is 3 bytes
  CHECK(decode_error(b, limits) == Errc::too_large);

  limits = {};
  limits.max_total_params = 4;
  CHECK(decode_error(b, limits) == Errc::too_large);

  // Exactly at every cap is fine.
  limits = {};
  limits.max_entry_bytes = b.size();
  limits.max_statements = 2;
  limits.max_sql_bytes = 36;
  limits.max_params = 5;
  limits.max_value_bytes = 3;
  limits.max_total_params = 5;
  CHECK(decode_entry(b, limits).ok());
}

TEST_CASE("entry: a huge count cannot allocate before the bytes are there") {
  Bytes b = encode_entry(Entry{});
  // Statement count just under the cap, but no statements follow.
  Writer count;
  count.u32(100000);
  std::copy(count.bytes().begin(), count.bytes().end(), b.begin() + kStatementCountAt);
  auto r = decode_entry(b);
  CHECK(r.error().code == Errc::truncated);
  CHECK(mentions(r, "statement count"));

  // A param count of 32766 with only a few bytes left.
  Bytes s = encode_entry(sample_entry());
  Writer params;
  params.u32(32766);
  std::copy(params.bytes().begin(), params.bytes().end(), s.begin() + kFirstParamCountAt);
  r = decode_entry(s);
  CHECK(r.error().code == Errc::truncated);
  CHECK(mentions(r, "param count"));

  // A blob length of 16 MiB with nothing behind it.
  Entry e;
  e.statements.push_back(Statement{"x", {Value{Bytes{1}}}});
  Bytes blob = encode_entry(e);
  const size_t len_at = kFirstSqlAt + 4 + 1 + 4 + 1;
  Writer len;
  len.u32(16 << 20);
  std::copy(len.bytes().begin(), len.bytes().end(), blob.begin() + len_at);
  CHECK(decode_error(blob) == Errc::truncated);
}

}  // namespace swarmlite
