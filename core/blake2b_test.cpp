// The portable BLAKE2b-256 against known digests and, differentially, against
// libsodium's crypto_generichash over lengths around every block boundary
// and arbitrary splits into updates (core/blake2b.h).
#include "core/blake2b.h"

#include <doctest/doctest.h>
#include <sodium.h>

#include <random>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/hash.h"

namespace swarmlite {
namespace {

Hash32 portable(const uint8_t* data, size_t n) {
  blake2b256::PortableState s;
  blake2b256::portable_init(s);
  blake2b256::portable_update(s, data, n);
  Hash32 out;
  blake2b256::portable_final(s, out.data());
  return out;
}

Hash32 sodium(const uint8_t* data, size_t n) {
  REQUIRE(sodium_init() >= 0);
  Hash32 out;
  crypto_generichash(out.data(), out.size(), data, n, nullptr, 0);
  return out;
}

Hash32 portable_str(std::string_view s) {
  return portable(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

}  // namespace

TEST_CASE("portable BLAKE2b-256: known digests") {
  CHECK(to_hex(portable_str("")) ==
        "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  CHECK(to_hex(portable_str("abc")) ==
        "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

TEST_CASE("portable BLAKE2b-256 equals libsodium's for every length to 1,100 and around pages") {
  std::mt19937_64 rng(20261203);
  std::vector<uint8_t> data(70000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 1100; ++n) lengths.push_back(n);
  for (size_t n : {4095, 4096, 4097, 4101, 65536, 65537, 70000}) lengths.push_back(n);
  for (size_t n : lengths) {
    INFO("length " << n);
    CHECK(portable(data.data(), n) == sodium(data.data(), n));
  }
}

TEST_CASE("portable BLAKE2b-256: any split into updates gives the one-shot digest") {
  std::mt19937_64 rng(7693);
  std::vector<uint8_t> data(9000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (int round = 0; round < 2000; ++round) {
    const size_t n = rng() % data.size();
    blake2b256::PortableState s;
    blake2b256::portable_init(s);
    size_t at = 0;
    while (at < n) {
      // Pieces of 0..300 bytes: empty updates, single bytes, exact blocks.
      size_t piece = std::min<size_t>(n - at, rng() % 4 == 0 ? 128 : rng() % 301);
      blake2b256::portable_update(s, data.data() + at, piece);
      at += piece;
    }
    Hash32 out;
    blake2b256::portable_final(s, out.data());
    INFO("round " << round << ", length " << n);
    REQUIRE(out == sodium(data.data(), n));
  }
}

TEST_CASE("the hashes of core/hash.h give libsodium's digests whichever implementation runs") {
  INFO("this process uses " << blake2b256::name(blake2b256::chosen()));
  CHECK((blake2b256::chosen() == blake2b256::Impl::portable ||
         blake2b256::chosen() == blake2b256::Impl::libsodium));
  std::vector<uint8_t> page(4096);
  for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<uint8_t>(i * 31);
  CHECK(blake2b(ByteView(page)) == sodium(page.data(), page.size()));
  Bytes leaf{kLeafPrefix};
  leaf.insert(leaf.end(), page.begin(), page.end());
  CHECK(hash_leaf(ByteView(page)) == sodium(leaf.data(), leaf.size()));
  Hasher h;
  h.update_u8(kLeafPrefix).update_u32be(7).update(ByteView(page).subspan(0, 100));
  h.update(ByteView(page).subspan(100));
  Bytes parts{kLeafPrefix, 0, 0, 0, 7};
  parts.insert(parts.end(), page.begin(), page.end());
  CHECK(h.finish() == sodium(parts.data(), parts.size()));
  CHECK(empty_root() == sodium(nullptr, 0));
}

}  // namespace swarmlite
