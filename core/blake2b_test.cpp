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


TEST_CASE("resumable BLAKE2b-256: libsodium's digest, from scratch and resumed at any block") {
  // portable_hash_resumable(prefix, data, from, mid): prefix || data hashed
  // from block `from` with mid[0..from] of a message whose first 128 * from
  // bytes were the same. Prefixes of 0, 1, 5 and 127 bytes; messages around
  // block boundaries and a page; changes from every block on.
  std::mt19937_64 rng(20261204);
  std::vector<uint8_t> bytes(9000);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  std::vector<size_t> lengths = {0, 1, 122, 123, 127, 128, 129, 255, 256, 257, 4096, 4101, 8192};
  for (int i = 0; i < 40; ++i) lengths.push_back(rng() % 8500);
  for (size_t prefix_len : {size_t{0}, size_t{1}, size_t{5}, size_t{127}}) {
    for (size_t data_len : lengths) {
      const size_t n = prefix_len + data_len;
      INFO("prefix " << prefix_len << ", data " << data_len);
      std::vector<uint8_t> msg(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
      const size_t blocks = blake2b256::resumable_blocks(n);
      std::vector<blake2b256::Midstate> mid(blocks + 1);
      Hash32 out;
      blake2b256::portable_hash_resumable(msg.data(), prefix_len, msg.data() + prefix_len,
                                          data_len, 0, mid.data(), out.data());
      REQUIRE(out == sodium(msg.data(), n));
      // Change the message from block `from` on, then resume there.
      for (int round = 0; round < 6 && n > 0; ++round) {
        const size_t from = rng() % (blocks + 1);
        const size_t at = std::min(n - 1, 128 * from + rng() % 128);
        msg[at] ^= static_cast<uint8_t>(1 + rng() % 255);
        if (rng() % 2) {
          for (size_t b = at; b < n; ++b) msg[b] = static_cast<uint8_t>(rng());
        }
        blake2b256::portable_hash_resumable(msg.data(), prefix_len, msg.data() + prefix_len,
                                            data_len, from, mid.data(), out.data());
        INFO("round " << round << ", from block " << from << ", change at " << at);
        REQUIRE(out == sodium(msg.data(), n));
      }
    }
  }
}

}  // namespace swarmlite
