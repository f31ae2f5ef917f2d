#include <doctest/doctest.h>

#include "core/evidence.h"
#include "core/hash.h"

namespace swarmlite {

namespace {

Hash32 leaf(std::string_view branch, uint64_t i) {
  return hash_leaf(as_bytes(fmt::format("{}-{}", branch, i)));
}

// Two logs sharing the first `shared` leaves, then diverging: an honest one and
// a fork the primary also signed.
struct Fork {
  KeyPair keys = KeyPair::generate();
  MerkleTree honest;
  MerkleTree forked;
  Fork(uint64_t shared, uint64_t total) {
    for (uint64_t i = 0; i < total; ++i) {
      honest.append(leaf("honest", i));
      forked.append(i < shared ? leaf("honest", i) : leaf("fork", i));
    }
  }
  Head head(const MerkleTree& tree, uint64_t size, int64_t time_ms = 1000) const {
    Head h;
    h.log_id = keys.pub;
    h.size = size;
    h.log_root = *tree.root_at(size);
    h.state_root = blake2b(h.log_root);  // stands in for a real state root
    h.page_count = static_cast<uint32_t>(size);
    h.time_ms = time_ms;
    h.sign_with(keys.secret);
    return h;
  }
};

bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

TEST_CASE("evidence: complete path agrees with the tree for every m < n") {
  MerkleTree t;
  for (uint64_t i = 0; i < 40; ++i) t.append(leaf("x", i));
  for (uint64_t n = 2; n <= 40; ++n) {
    for (uint64_t m = 1; m < n; ++m) {
      auto path = evidence_path(t, m, n);
      REQUIRE(path.ok());
      auto roots = roots_from_complete_path(m, n, *path);
      REQUIRE_MESSAGE(roots.ok(), m << "->" << n << ": " << roots.error_text());
      CHECK(roots->old_root == *t.root_at(m));
      CHECK(roots->new_root == *t.root_at(n));
      // The RFC proof is the complete path minus its first hash when m is a power of two.
      CHECK(path->size() == t.consistency_proof(m, n)->size() + (is_power_of_two(m) ? 1 : 0));
      // One hash more or less is the wrong shape.
      std::vector<Hash32> longer = *path;
      longer.push_back(leaf("extra", 0));
      CHECK(roots_from_complete_path(m, n, longer).error().code == Errc::proof_failed);
      std::vector<Hash32> shorter(path->begin(), path->end() - 1);
      if (!shorter.empty()) {
        auto r = roots_from_complete_path(m, n, shorter);
        CHECK((!r.ok() || r->new_root != *t.root_at(n)));
      }
    }
  }
}

TEST_CASE("evidence: two heads of the same size from a fork are evidence") {
  Fork f(5, 9);
  Head a = f.head(f.honest, 9);
  Head b = f.head(f.forked, 9);
  auto e = evidence_from_heads(a, b);
  REQUIRE(e.ok());
  CHECK(e->kind == Evidence::Kind::same_size);
  CHECK(e->verify(f.keys.pub).ok());
  auto d = decode_evidence(encode_evidence(*e));
  REQUIRE(d.ok());
  CHECK(*d == *e);
  CHECK(d->verify(f.keys.pub).ok());

  // Same log root but another state root: also a fork.
  Head c = a;
  c.state_root = blake2b(as_bytes("other state"));
  c.sign_with(f.keys.secret);
  REQUIRE(evidence_from_heads(a, c).ok());
  CHECK(evidence_from_heads(a, c)->verify(f.keys.pub).ok());
  Head p = a;
  p.page_count += 1;
  p.sign_with(f.keys.secret);
  CHECK(evidence_from_heads(a, p)->verify(f.keys.pub).ok());
}

TEST_CASE("evidence: a fork between heads of different sizes is proven by a path") {
  // Diverging after 5 leaves; old sizes both powers of two and not.
  for (uint64_t m : {6, 7, 8}) {
    Fork f(5, 13);
    Head old_forked = f.head(f.forked, m);
    Head new_honest = f.head(f.honest, 13);
    auto path = evidence_path(f.honest, m, 13);
    REQUIRE(path.ok());
    auto e = evidence_from_proof(old_forked, new_honest, *path);
    REQUIRE_MESSAGE(e.ok(), m << ": " << e.error_text());
    CHECK(e->kind == Evidence::Kind::inconsistent);
    CHECK(e->verify(f.keys.pub).ok());
    auto d = decode_evidence(encode_evidence(*e));
    REQUIRE(d.ok());
    CHECK(*d == *e);
    CHECK(d->verify(f.keys.pub).ok());
  }
}

TEST_CASE("evidence: an honest tree's path convicts a lying old head") {
  // The primary signed head a claiming a root for size 4 (a power of two) that
  // no tree extended by b has; the honest tree behind b yields the path.
  Fork f(4, 10);
  Head liar;
  liar.log_id = f.keys.pub;
  liar.size = 4;
  liar.log_root = blake2b(as_bytes("made up"));
  liar.time_ms = 5;
  liar.sign_with(f.keys.secret);
  Head honest = f.head(f.honest, 10);
  auto path = evidence_path(f.honest, 4, 10);
  REQUIRE(path.ok());
  // The RFC verifier alone cannot tell who lies...
  CHECK(!verify_consistency(4, 10, liar.log_root, honest.log_root,
                            *f.honest.consistency_proof(4, 10))
             .ok());
  // ...the complete path can.
  auto e = evidence_from_proof(liar, honest, *path);
  REQUIRE(e.ok());
  CHECK(e->verify(f.keys.pub).ok());
  // The RFC proof without the size-4 root is the wrong shape for evidence.
  CHECK(!evidence_from_proof(liar, honest, *f.honest.consistency_proof(4, 10)).ok());
}

TEST_CASE("evidence: consistent heads give no evidence and a forged one does not verify") {
  Fork f(10, 10);
  Head a = f.head(f.honest, 4, /*time_ms=*/9000);  // smaller but signed later: still honest
  Head b = f.head(f.honest, 10, /*time_ms=*/1000);
  auto from_heads = evidence_from_heads(a, b);
  REQUIRE(!from_heads.ok());
  CHECK(from_heads.error().code == Errc::not_found);
  Head a_again = f.head(f.honest, 4, 12345);  // same state re-signed at another time
  CHECK(evidence_from_heads(a, a_again).error().code == Errc::not_found);

  auto path = evidence_path(f.honest, 4, 10);
  REQUIRE(path.ok());
  auto from_proof = evidence_from_proof(a, b, *path);
  REQUIRE(!from_proof.ok());
  CHECK(from_proof.error().code == Errc::proof_failed);
  CHECK(from_proof.error().message.find("consistent") != std::string::npos);

  // Forged objects built by hand.
  Evidence same{Evidence::Kind::same_size, a, a_again, {}};
  CHECK(same.verify(f.keys.pub).error().code == Errc::proof_failed);
  Evidence wrong_sizes{Evidence::Kind::same_size, a, b, {}};
  CHECK(!wrong_sizes.verify(f.keys.pub).ok());
  Evidence consistent{Evidence::Kind::inconsistent, a, b, *path};
  CHECK(consistent.verify(f.keys.pub).error().code == Errc::proof_failed);
  Evidence reversed{Evidence::Kind::inconsistent, b, a, *path};
  CHECK(!reversed.verify(f.keys.pub).ok());
  // A garbage path that "implies" another old root leads nowhere near b's root.
  std::vector<Hash32> garbage = *path;
  garbage[0] = blake2b(as_bytes("garbage"));
  Evidence forged{Evidence::Kind::inconsistent, a, b, garbage};
  auto s = forged.verify(f.keys.pub);
  CHECK(s.error().code == Errc::proof_failed);
  CHECK(s.error().message.find("not head b's log root") != std::string::npos);
  CHECK(!Evidence{Evidence::Kind::inconsistent, a, b, {}}.verify(f.keys.pub).ok());
}

TEST_CASE("evidence: heads of another log or with bad signatures are not evidence") {
  Fork f(5, 9);
  Head a = f.head(f.honest, 9);
  Head b = f.head(f.forked, 9);
  Evidence e = *evidence_from_heads(a, b);
  KeyPair stranger = KeyPair::generate();
  CHECK(e.verify(stranger.pub).error().code == Errc::bad_signature);

  Evidence tampered = e;
  tampered.b.log_root[0] ^= 1;  // no longer what was signed
  CHECK(tampered.verify(f.keys.pub).error().code == Errc::bad_signature);
  CHECK(evidence_from_heads(a, tampered.b).error().code == Errc::bad_signature);

  // A "fork" where the other head is signed by someone else's key.
  Head other = b;
  other.log_id = stranger.pub;
  other.sign_with(stranger.secret);
  CHECK(evidence_from_heads(a, other).error().code == Errc::invalid_argument);
  Evidence mixed{Evidence::Kind::same_size, a, other, {}};
  CHECK(mixed.verify(f.keys.pub).error().code == Errc::bad_signature);
}

TEST_CASE("evidence: decoder refuses truncation, trailing bytes and bad fields") {
  Fork f(5, 13);
  Evidence e = *evidence_from_proof(f.head(f.forked, 7), f.head(f.honest, 13),
                                    *evidence_path(f.honest, 7, 13));
  Bytes b = encode_evidence(e);
  CHECK(b.size() == 2 + 2 * kEncodedHeadSize + 4 + 32 * e.proof.size());
  for (size_t n = 0; n < b.size(); ++n) {
    auto r = decode_evidence(ByteView(b).first(n));
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::truncated);
  }
  Bytes longer = b;
  longer.push_back(0);
  CHECK(decode_evidence(longer).error().code == Errc::trailing_bytes);
  Bytes v = b;
  v[0] = 2;
  CHECK(decode_evidence(v).error().code == Errc::bad_version);
  Bytes k = b;
  k[1] = 3;
  CHECK(decode_evidence(k).error().code == Errc::bad_value);
  Bytes hv = b;
  hv[2 + kEncodedHeadSize] = 7;  // head b's version byte
  auto r = decode_evidence(hv);
  CHECK(r.error().code == Errc::bad_version);
  CHECK(r.error().message.find("head b") != std::string::npos);

  const size_t count_at = 2 + 2 * kEncodedHeadSize;
  Bytes big = b;
  big[count_at + 3] = static_cast<uint8_t>(kMaxEvidencePath + 1);
  CHECK(decode_evidence(big).error().code == Errc::too_large);
  // same_size evidence with a path: two encodings of one claim.
  Bytes same = b;
  same[1] = 1;
  CHECK(decode_evidence(same).error().code == Errc::non_canonical);
}

}  // namespace swarmlite
