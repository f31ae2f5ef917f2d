#include <doctest/doctest.h>

#include "core/hash.h"
#include "core/head.h"

namespace swarmlite {

namespace {

Head signed_head(const KeyPair& kp) {
  Head h;
  h.log_id = kp.pub;
  h.size = 42;
  h.log_root = blake2b(as_bytes("log"));
  h.state_root = blake2b(as_bytes("state"));
  h.page_count = 9;
  h.time_ms = 1700000000000;
  h.sign_with(kp.secret);
  return h;
}

}  // namespace

TEST_CASE("head: encode/decode round trip and signing bytes layout") {
  KeyPair kp = KeyPair::generate();
  Head h = signed_head(kp);
  Bytes b = encode_head(h);
  REQUIRE(b.size() == kEncodedHeadSize);
  CHECK(b[0] == kHeadVersion);
  auto d = decode_head(b);
  REQUIRE(d.ok());
  CHECK(*d == h);
  CHECK(d->verify(kp.pub).ok());

  // signing bytes = context ‖ encoding without version byte and signature.
  Bytes expected(kHeadContext.begin(), kHeadContext.end());
  expected.insert(expected.end(), b.begin() + 1, b.end() - 64);
  CHECK(h.signing_bytes() == expected);
}

TEST_CASE("head: decoder refuses truncation, trailing bytes and other versions") {
  KeyPair kp = KeyPair::generate();
  Bytes b = encode_head(signed_head(kp));
  for (size_t n = 0; n < b.size(); ++n) {
    auto r = decode_head(ByteView(b).first(n));
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::truncated);
  }
  Bytes longer = b;
  longer.push_back(0);
  CHECK(decode_head(longer).error().code == Errc::trailing_bytes);
  Bytes v2 = b;
  v2[0] = 2;
  CHECK(decode_head(v2).error().code == Errc::bad_version);
}

TEST_CASE("head: read_head decodes an embedded head once and names the outer field") {
  KeyPair kp = KeyPair::generate();
  Head h = signed_head(kp);
  Writer w;
  w.u8(7);
  w.raw(encode_head(h));
  w.u8(8);
  Reader r(w.bytes(), "outer");
  REQUIRE(r.u8("tag").ok());
  auto back = read_head(r, "the head");
  REQUIRE(back.ok());
  CHECK(*back == h);
  CHECK(r.offset() == 1 + kEncodedHeadSize);

  Bytes bad = w.bytes();
  bad[1] = 9;  // the embedded head's version byte
  Reader rb(bad, "outer");
  REQUIRE(rb.u8("tag").ok());
  auto e = read_head(rb, "the head");
  REQUIRE(!e.ok());
  CHECK(e.error().code == Errc::bad_version);
  CHECK(e.error().message ==
        "outer: the head at offset 1: head: version at offset 0: 9 is not a known head version "
        "(expected 1)");

  Bytes cut(w.bytes().begin(), w.bytes().begin() + 20);
  Reader rc(cut, "outer");
  REQUIRE(rc.u8("tag").ok());
  CHECK(read_head(rc, "the head").error().code == Errc::truncated);
}

TEST_CASE("head: a head checked against another log's key fails") {
  KeyPair kp = KeyPair::generate();
  KeyPair other = KeyPair::generate();
  Head h = signed_head(kp);
  auto s = h.verify(other.pub);
  REQUIRE(!s.ok());
  CHECK(s.error().code == Errc::bad_signature);
  CHECK(s.error().message ==
        fmt::format("head is signed by {}, expected log {}", kp.pub.hex(), other.pub.hex()));

  // Signed by another key but claiming this log id.
  Head forged = h;
  forged.signature = sign(other.secret, forged.signing_bytes());
  CHECK(forged.verify(kp.pub).error().code == Errc::bad_signature);
}

TEST_CASE("head: every altered field and an altered signature fail verification") {
  KeyPair kp = KeyPair::generate();
  const Head h = signed_head(kp);
  const Bytes b = encode_head(h);
  // Flip one bit in every byte after the version byte, one at a time: any change
  // to a signed field or to the signature must break verification.
  for (size_t i = 1; i < b.size(); ++i) {
    Bytes changed = b;
    changed[i] ^= 0x01;
    auto d = decode_head(changed);
    REQUIRE(d.ok());
    // A changed log_id byte fails as "signed by another log"; the rest as a bad signature.
    CHECK_MESSAGE(!d->verify(kp.pub).ok(), "byte " << i << " changed and still verifies");
    CHECK_MESSAGE(!d->verify(d->log_id).ok(), "byte " << i << " changed and still verifies");
  }
}

TEST_CASE("head: a remembered head answers only for the exact same bytes") {
  KeyPair kp = KeyPair::generate();
  const Head h = signed_head(kp);
  REQUIRE(h.verify(kp.pub).ok());  // now remembered
  const uint64_t hits = head_verify_cache_hits();
  CHECK(h.verify(kp.pub).ok());
  CHECK(head_verify_cache_hits() == hits + 1);
  // The remembered head must not vouch for a head that differs in any bit,
  // the signature included, nor for another expected log.
  const Bytes b = encode_head(h);
  for (size_t i = 1; i < b.size(); ++i) {
    Bytes changed = b;
    changed[i] ^= 0x80;
    auto d = decode_head(changed);
    REQUIRE(d.ok());
    CHECK_MESSAGE(!d->verify(kp.pub).ok(), "byte " << i << " changed and still verifies");
  }
  KeyPair other = KeyPair::generate();
  CHECK(h.verify(other.pub).error().code == Errc::bad_signature);
}

}  // namespace swarmlite
