#include <doctest/doctest.h>

#include "core/codec.h"
#include "core/hash.h"

namespace swarmlite {

TEST_CASE("codec: integers are big-endian and round trip") {
  Writer w;
  w.u8(0xab);
  w.u16(0x0102);
  w.u32(0x03040506);
  w.u64(0x0708090a0b0c0d0eull);
  w.i64(-2);
  w.f64(1.5);
  w.str("hi");
  CHECK(to_hex(ByteView(w.bytes()).first(15)) == "ab0102030405060708090a0b0c0d0e");
  Reader r(w.bytes(), "sample");
  CHECK(*r.u8("a") == 0xab);
  CHECK(*r.u16("b") == 0x0102);
  CHECK(*r.u32("c") == 0x03040506u);
  CHECK(*r.u64("d") == 0x0708090a0b0c0d0eull);
  CHECK(*r.i64("e") == -2);
  CHECK(*r.f64("f") == 1.5);
  CHECK(*r.str("g", 10) == "hi");
  CHECK(r.expect_end().ok());
}

TEST_CASE("codec: truncated input names the field and offset") {
  Bytes b = {0, 0, 0};
  Reader r(b, "head");
  auto v = r.u32("size");
  REQUIRE(!v.ok());
  CHECK(v.error().code == Errc::truncated);
  CHECK(v.error().message == "head: size at offset 0 needs 4 byte(s), 3 left");
}

TEST_CASE("codec: a length over its cap is refused before reading the bytes") {
  Writer w;
  w.u32(1000);
  Reader r(w.bytes(), "entry");
  auto v = r.blob("sql", 999);
  REQUIRE(!v.ok());
  CHECK(v.error().code == Errc::too_large);
}

TEST_CASE("codec: trailing bytes are reported with their offset") {
  Bytes b = {1, 2};
  Reader r(b, "proof");
  CHECK(r.u8("v").ok());
  auto s = r.expect_end();
  REQUIRE(!s.ok());
  CHECK(s.error().code == Errc::trailing_bytes);
  CHECK(s.error().message == "proof: 1 trailing byte(s) at offset 1");
}

TEST_CASE("reader: preamble checks the size cap, then the version, naming the object") {
  Bytes ok = {1, 9};
  Reader a(ok, "thing");
  CHECK(a.preamble(1, 2).ok());
  CHECK(a.offset() == 1);

  Reader big(ok, "thing");
  auto s = big.preamble(1, 1);
  REQUIRE(!s.ok());
  CHECK(s.error().code == Errc::too_large);
  CHECK(s.error().message == "thing: thing at offset 0: 2 bytes is over the cap of 1");
  CHECK(big.offset() == 0);  // nothing read

  Bytes v2 = {2};
  Reader bad(v2, "thing");
  s = bad.preamble(1);
  REQUIRE(!s.ok());
  CHECK(s.error().code == Errc::bad_version);
  CHECK(s.error().message == "thing: version at offset 0: 2 is not a known thing version (expected 1)");

  Reader empty(ByteView{}, "thing");
  CHECK(empty.preamble(1).error().code == Errc::truncated);
}

TEST_CASE("reader: count refuses over the cap and more items than the bytes left can hold") {
  Writer w;
  w.u32(3);
  w.raw(Bytes(12, 0));
  Reader r(w.bytes(), "list");
  auto n = r.count("n", 3, 4);
  REQUIRE(n.ok());
  CHECK(*n == 3);

  Reader over(w.bytes(), "list");
  auto o = over.count("n", 2);
  REQUIRE(!o.ok());
  CHECK(o.error().code == Errc::too_large);
  CHECK(o.error().message == "list: n at offset 0: 3 is over the cap of 2");

  // 3 items of at least 5 bytes cannot fit in 12 bytes; nor 3 x 4 with 1 reserved after.
  Reader tight(w.bytes(), "list");
  CHECK(tight.count("n", 10, 5).error().code == Errc::truncated);
  Reader reserved(w.bytes(), "list");
  CHECK(reserved.count("n", 10, 4, 1).error().code == Errc::truncated);
  // A forged count of 2^32-1 with no bytes behind it is refused before any allocation.
  Writer f;
  f.u32(0xffffffffu);
  Reader forged(f.bytes(), "list");
  CHECK(forged.count("n", 0xffffffffu, 1).error().code == Errc::truncated);
}

TEST_CASE("hash list: round trip, cap and truncation") {
  std::vector<Hash32> hs(3);
  for (size_t i = 0; i < hs.size(); ++i) hs[i].fill(static_cast<uint8_t>(i + 1));
  Writer w;
  write_hash_list(w, hs);
  Reader r(w.bytes(), "x");
  auto back = read_hash_list(r, "hashes", 3);
  REQUIRE(back.ok());
  CHECK(*back == hs);
  CHECK(r.at_end());
  Reader capped(w.bytes(), "x");
  CHECK(read_hash_list(capped, "hashes", 2).error().code == Errc::too_large);
  Bytes cut(w.bytes().begin(), w.bytes().end() - 1);
  Reader short_input(cut, "x");
  CHECK(read_hash_list(short_input, "hashes", 3).error().code == Errc::truncated);
}

TEST_CASE("hex: round trip and rejections") {
  Bytes b = {0x00, 0xff, 0x10};
  CHECK(to_hex(b) == "00ff10");
  CHECK(*from_hex("00FF10") == b);
  CHECK(from_hex("abc").error().code == Errc::bad_value);
  CHECK(from_hex("zz").error().message.find("offset 0") != std::string::npos);
  CHECK(!hash_from_hex("00").ok());
}

TEST_CASE("hash: domain separation makes leaf, node and plain hashes differ") {
  Bytes data(64, 7);
  Hash32 plain = blake2b(data);
  Hash32 leaf = hash_leaf(data);
  Hash32 a = leaf, b = plain;
  Hash32 node = hash_node(a, b);
  CHECK(plain != leaf);
  CHECK(node != hash_leaf(Bytes(data.begin(), data.end())));
  // Known answer: BLAKE2b-256("") from RFC 7693's reference implementation.
  CHECK(to_hex(empty_root()) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  // Incremental hasher equals one-shot.
  CHECK(Hasher().update(ByteView(data).first(10)).update(ByteView(data).subspan(10)).finish() == plain);
}

}  // namespace swarmlite
