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
