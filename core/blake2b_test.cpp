// The portable BLAKE2b-256 against known digests and, differentially, against
// libsodium's crypto_generichash over lengths around every block boundary
// and arbitrary splits into updates (core/blake2b.h).
#include "core/blake2b.h"

#include <doctest/doctest.h>
#include <sodium.h>

#include <cstring>
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

namespace {

// Widths to test: 1, 4 and 8 where this CPU runs them (hash_lanes caps the rest).
std::vector<size_t> lane_widths_here() {
  std::vector<size_t> out{1};
  const size_t was = blake2b256::force_lane_width(8);
  const size_t widest = blake2b256::lane_width();
  blake2b256::force_lane_width(was);
  if (widest >= 4) out.push_back(4);
  if (widest >= 8) out.push_back(8);
  return out;
}

}  // namespace

TEST_CASE("hash_lanes: digests and every midstate equal portable_hash_resumable's, every width") {
  // Up to 17 messages with different prefixes and data (a lane mix-up or a
  // word transposed wrongly changes some lane's result), prefix lengths 0,
  // 1, 5 and 127 (every block misaligned against `data`), data lengths
  // around block boundaries and pages; counts 1..17 cover full groups,
  // partial ones and lone messages. Width 0 is the process's own choice
  // (hash_lanes without a width: short groups of 3 or 4 in 4 lanes where that
  // was timed faster, so 8 + 3 and 8 + 4 mix the kernels).
  constexpr size_t kMaxCount = 17;
  std::mt19937_64 rng(20261205);
  std::vector<size_t> widths = lane_widths_here();
  widths.push_back(0);
  INFO("widths tested: " << widths.size() << ", process width " << blake2b256::lane_width());
  for (size_t prefix_len : {size_t{0}, size_t{1}, size_t{5}, size_t{127}}) {
    for (size_t data_len :
         {size_t{0}, size_t{1}, size_t{123}, size_t{127}, size_t{128}, size_t{129}, size_t{251},
          size_t{512}, size_t{4096}, size_t{4091}, size_t{65536}}) {
      const size_t n = prefix_len + data_len;
      const size_t mids = blake2b256::resumable_blocks(n) + 1;
      std::vector<std::vector<uint8_t>> prefix(kMaxCount), data(kMaxCount);
      std::vector<Hash32> want(kMaxCount);
      std::vector<std::vector<blake2b256::Midstate>> want_mid(kMaxCount);
      for (size_t i = 0; i < kMaxCount; ++i) {
        prefix[i].resize(prefix_len);
        data[i].resize(data_len);
        for (auto& b : prefix[i]) b = static_cast<uint8_t>(rng());
        for (auto& b : data[i]) b = static_cast<uint8_t>(rng());
        want_mid[i].resize(mids);
        blake2b256::portable_hash_resumable(prefix[i].data(), prefix_len, data[i].data(), data_len,
                                            0, want_mid[i].data(), want[i].data());
      }
      for (size_t width : widths) {
        for (size_t count = 1; count <= kMaxCount; ++count) {
          INFO("width " << width << ", prefix " << prefix_len << ", data " << data_len
                        << ", messages " << count);
          std::vector<Hash32> got(count);
          std::vector<std::vector<blake2b256::Midstate>> got_mid(count);
          std::vector<blake2b256::LaneInput> in(count);
          for (size_t i = 0; i < count; ++i) {
            // Garbage first: every midstate must be written.
            got_mid[i].assign(mids, blake2b256::Midstate{{0x5a5a5a5a5a5a5a5aULL}});
            in[i] = {prefix[i].data(), data[i].data(), got_mid[i].data(), got[i].data()};
          }
          if (width == 0) {
            blake2b256::hash_lanes(in, prefix_len, data_len);
          } else {
            blake2b256::hash_lanes(width, in, prefix_len, data_len);
          }
          for (size_t i = 0; i < count; ++i) {
            INFO("message " << i);
            REQUIRE(got[i] == want[i]);
            for (size_t k = 0; k < mids; ++k) {
              INFO("midstate " << k);
              REQUIRE(std::memcmp(got_mid[i][k].h, want_mid[i][k].h, sizeof got_mid[i][k].h) == 0);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("hash_lanes with a length per message: digests and midstates as the scalar hash's") {
  // Messages of different lengths in one group: each lane has its own byte
  // counter and last block, and nothing is stored for a lane whose message
  // ended while longer ones go on (a shared counter or flag, a digest or a
  // midstate written past a lane's end fails it). Lengths mix empty messages, block boundaries and
  // several blocks; counts 1..19 give full, partial and lone groups; every width.
  std::mt19937_64 rng(20261207);
  std::vector<size_t> widths = lane_widths_here();
  widths.push_back(0);
  const size_t kLens[] = {0, 1, 40, 126, 127, 128, 129, 200, 255, 256, 257, 300, 700, 1031, 4096};
  for (size_t prefix_len : {size_t{0}, size_t{1}, size_t{5}}) {
    for (int round = 0; round < 12; ++round) {
      const size_t count = 1 + static_cast<size_t>(rng() % 19);
      std::vector<std::vector<uint8_t>> prefix(count), data(count);
      std::vector<size_t> lens(count);
      std::vector<Hash32> want(count);
      std::vector<std::vector<blake2b256::Midstate>> want_mid(count);
      for (size_t i = 0; i < count; ++i) {
        // Round 0: all one length but the last (the one-length path's neighbour).
        lens[i] = round == 0 && i + 1 < count ? 129 : kLens[rng() % std::size(kLens)];
        prefix[i].resize(prefix_len);
        data[i].resize(lens[i]);
        for (auto& b : prefix[i]) b = static_cast<uint8_t>(rng());
        for (auto& b : data[i]) b = static_cast<uint8_t>(rng());
        want_mid[i].resize(blake2b256::resumable_blocks(prefix_len + lens[i]) + 1);
        blake2b256::portable_hash_resumable(prefix[i].data(), prefix_len, data[i].data(), lens[i],
                                            0, want_mid[i].data(), want[i].data());
      }
      for (size_t width : widths) {
        INFO("width " << width << ", prefix " << prefix_len << ", round " << round << ", messages "
                      << count);
        std::vector<Hash32> got(count);
        // One guard midstate past each message's last: never written.
        std::vector<std::vector<blake2b256::Midstate>> got_mid(count);
        std::vector<blake2b256::LaneInput> in(count);
        for (size_t i = 0; i < count; ++i) {
          got_mid[i].assign(want_mid[i].size() + 1, blake2b256::Midstate{{0x5a5a5a5a5a5a5a5aULL}});
          // Every fourth message without midstates.
          in[i] = {prefix[i].data(), data[i].data(), i % 4 == 3 ? nullptr : got_mid[i].data(),
                   got[i].data()};
        }
        if (width == 0) {
          blake2b256::hash_lanes(in, prefix_len, std::span<const size_t>(lens));
        } else {
          blake2b256::hash_lanes(width, in, prefix_len, std::span<const size_t>(lens));
        }
        for (size_t i = 0; i < count; ++i) {
          INFO("message " << i << " of " << lens[i] << " bytes");
          REQUIRE(got[i] == want[i]);
          if (i % 4 == 3) continue;
          for (size_t k = 0; k < want_mid[i].size(); ++k) {
            INFO("midstate " << k);
            REQUIRE(std::memcmp(got_mid[i][k].h, want_mid[i][k].h, sizeof got_mid[i][k].h) == 0);
          }
          CHECK(got_mid[i].back().h[0] == 0x5a5a5a5a5a5a5a5aULL);
        }
      }
    }
  }
}

TEST_CASE("hash_leaves: hash_leaf of each message, whatever the order of lengths and the width") {
  // Batches as the log hashes them: similar entries (one length), lengths
  // ascending, shuffled, and messages long enough to share the last length
  // bucket (64 blocks and more, ordered by length within it); 0..40 messages.
  std::mt19937_64 rng(7);
  const size_t was = blake2b256::lane_width();
  for (size_t width : lane_widths_here()) {
    blake2b256::force_lane_width(width);
    for (int shape = 0; shape < 4; ++shape) {
      for (size_t count : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{9}, size_t{40}}) {
        INFO("width " << width << ", shape " << shape << ", messages " << count);
        std::vector<Bytes> msgs(count);
        for (size_t i = 0; i < count; ++i) {
          size_t len = 0;
          switch (shape) {
            case 0:
              len = 166;
              break;
            case 1:
              len = 10 * i;
              break;
            case 2:
              len = rng() % 1500;
              break;
            default:
              len = (i % 3 == 0) ? 8192 + rng() % 9000 : rng() % 300;
              break;
          }
          msgs[i].resize(len);
          for (auto& b : msgs[i]) b = static_cast<uint8_t>(rng());
        }
        std::vector<Hash32> got(count);
        hash_leaves(std::span<const Bytes>(msgs), got);
        std::vector<ByteView> views(msgs.begin(), msgs.end());
        std::vector<Hash32> got_views(count);
        hash_leaves(std::span<const ByteView>(views), got_views);
        for (size_t i = 0; i < count; ++i) {
          INFO("message " << i << " of " << msgs[i].size() << " bytes");
          REQUIRE(got[i] == hash_leaf(msgs[i]));
          REQUIRE(got_views[i] == got[i]);
        }
      }
    }
  }
  blake2b256::force_lane_width(was);
}

TEST_CASE("hash_lanes: lanes without midstates, empty input, the process width") {
  std::mt19937_64 rng(13);
  const size_t prefix_len = 5, data_len = 4096;
  const size_t mids = blake2b256::resumable_blocks(prefix_len + data_len) + 1;
  std::vector<std::vector<uint8_t>> msg(11, std::vector<uint8_t>(prefix_len + data_len));
  for (auto& m : msg)
    for (auto& b : m) b = static_cast<uint8_t>(rng());
  for (size_t width : lane_widths_here()) {
    INFO("width " << width);
    std::vector<Hash32> got(msg.size());
    std::vector<std::vector<blake2b256::Midstate>> mid(msg.size());
    std::vector<blake2b256::LaneInput> in(msg.size());
    for (size_t i = 0; i < msg.size(); ++i) {
      // Every third message without midstates: nothing written for it.
      if (i % 3 != 0) mid[i].resize(mids);
      in[i] = {msg[i].data(), msg[i].data() + prefix_len, i % 3 != 0 ? mid[i].data() : nullptr,
               got[i].data()};
    }
    blake2b256::hash_lanes(width, in, prefix_len, data_len);
    for (size_t i = 0; i < msg.size(); ++i) {
      INFO("message " << i);
      CHECK(got[i] == sodium(msg[i].data(), msg[i].size()));
    }
    blake2b256::hash_lanes(width, std::span<const blake2b256::LaneInput>(), prefix_len, data_len);
  }
  // The process width is a width the CPU runs; forcing caps it.
  const size_t width = blake2b256::lane_width();
  CHECK((width == 1 || width == 4 || width == 8));
  const size_t was = blake2b256::force_lane_width(1);
  CHECK(was == width);
  CHECK(blake2b256::lane_width() == 1);
  blake2b256::force_lane_width(5);  // rounded down to 4 (or capped at 1)
  CHECK((blake2b256::lane_width() == 4 || blake2b256::lane_width() == 1));
  blake2b256::force_lane_width(64);
  CHECK(blake2b256::lane_width() >= was);
  blake2b256::force_lane_width(was);
}

}  // namespace swarmlite
