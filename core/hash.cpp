#include "core/hash.h"

#include <sodium.h>

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/blake2b.h"

namespace swarmlite {

static_assert(crypto_generichash_BYTES == 32);

namespace {
crypto_generichash_state* as_state(unsigned char* p) {
  static_assert(sizeof(crypto_generichash_state) <= 384);
  return reinterpret_cast<crypto_generichash_state*>(p);
}
blake2b256::PortableState* as_portable(unsigned char* p) {
  static_assert(sizeof(blake2b256::PortableState) <= 384);
  static_assert(alignof(blake2b256::PortableState) <= 64);
  return reinterpret_cast<blake2b256::PortableState*>(p);
}

// The implementation every hash of this process uses (core/blake2b.h). The
// first call also runs sodium_init(), once per process: it takes libsodium's
// global lock at every call, and threads that hash at once (store, apply and
// io threads: every entry read checks its record's hash) queued on it
// (docs/performance.md "Catch-up: fetch, store and replay overlapped").
bool use_portable() {
  static const bool portable = blake2b256::chosen() == blake2b256::Impl::portable;
  return portable;
}
}  // namespace

Hasher::Hasher() {
  if (use_portable()) {
    blake2b256::portable_init(*as_portable(state_));
  } else {
    crypto_generichash_init(as_state(state_), nullptr, 0, 32);
  }
}

Hasher& Hasher::update(ByteView data) {
  if (use_portable()) {
    blake2b256::portable_update(*as_portable(state_), data.data(), data.size());
  } else {
    crypto_generichash_update(as_state(state_), data.data(), data.size());
  }
  return *this;
}

Hasher& Hasher::update_u32be(uint32_t v) {
  uint8_t b[4] = {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
  return update(ByteView(b, 4));
}

Hash32 Hasher::finish() {
  Hash32 out;
  if (use_portable()) {
    blake2b256::portable_final(*as_portable(state_), out.data());
  } else {
    crypto_generichash_final(as_state(state_), out.data(), out.size());
  }
  return out;
}

Hash32 blake2b(ByteView data) {
  if (use_portable()) {
    blake2b256::PortableState s;
    blake2b256::portable_init(s);
    blake2b256::portable_update(s, data.data(), data.size());
    Hash32 out;
    blake2b256::portable_final(s, out.data());
    return out;
  }
  Hash32 out;
  crypto_generichash(out.data(), out.size(), data.data(), data.size(), nullptr, 0);
  return out;
}

Hash32 hash_leaf(ByteView data) { return Hasher().update_u8(kLeafPrefix).update(data).finish(); }

namespace {

// hash_leaves over any sequence: get(i) is message i.
template <class Get>
void leaves_of(size_t count, Get&& get, Hash32* out) {
  if (count < 3 || blake2b256::lane_width() == 1) {
    for (size_t i = 0; i < count; ++i) out[i] = hash_leaf(get(i));
    return;
  }
  static constexpr uint8_t kPrefix[1] = {kLeafPrefix};
  // A lane group takes as long as its longest message: order the messages by
  // their number of 128-byte blocks (a counting sort, stable; messages of
  // kBuckets - 1 blocks or more share the last bucket, sorted by length).
  // Batches of similar entries need no reordering.
  constexpr size_t kBuckets = 64;
  auto bucket = [&](size_t i) {
    return std::min(blake2b256::resumable_blocks(1 + get(i).size()), kBuckets - 1);
  };
  thread_local std::vector<blake2b256::LaneInput> in;
  thread_local std::vector<size_t> lens;
  thread_local std::vector<uint32_t> order;
  in.resize(count);
  lens.resize(count);
  order.resize(count);
  size_t counts[kBuckets + 1] = {};
  bool sorted = true;
  size_t prev = 0;
  for (size_t i = 0; i < count; ++i) {
    const size_t b = bucket(i);
    ++counts[b + 1];
    sorted = sorted && b >= prev;
    prev = b;
  }
  if (sorted) {
    for (size_t i = 0; i < count; ++i) order[i] = static_cast<uint32_t>(i);
  } else {
    for (size_t b = 1; b <= kBuckets; ++b) counts[b] += counts[b - 1];
    for (size_t i = 0; i < count; ++i) order[counts[bucket(i)]++] = static_cast<uint32_t>(i);
    const size_t long_from = counts[kBuckets - 2];  // start of the last bucket
    std::sort(order.begin() + static_cast<ptrdiff_t>(long_from),
              order.begin() + static_cast<ptrdiff_t>(count),
              [&](uint32_t a, uint32_t b) { return get(a).size() < get(b).size(); });
  }
  for (size_t k = 0; k < count; ++k) {
    const ByteView d = get(order[k]);
    in[k] = {kPrefix, d.data(), nullptr, out[order[k]].data()};
    lens[k] = d.size();
  }
  blake2b256::hash_lanes(in, sizeof kPrefix, lens);
}

}  // namespace

void hash_leaves(std::span<const ByteView> data, std::span<Hash32> out) {
  assert(out.size() == data.size());
  if (out.size() != data.size()) std::abort();  // a caller's bug
  leaves_of(
      data.size(), [&](size_t i) { return data[i]; }, out.data());
}

void hash_leaves(std::span<const Bytes> data, std::span<Hash32> out) {
  assert(out.size() == data.size());
  if (out.size() != data.size()) std::abort();  // a caller's bug
  leaves_of(
      data.size(), [&](size_t i) { return ByteView(data[i]); }, out.data());
}

Hash32 hash_node(const Hash32& left, const Hash32& right) {
  uint8_t buf[65];
  buf[0] = kNodePrefix;
  std::memcpy(buf + 1, left.data(), 32);
  std::memcpy(buf + 33, right.data(), 32);
  return blake2b(ByteView(buf, sizeof buf));
}

const Hash32& empty_root() {
  static const Hash32 root = blake2b({});
  return root;
}

}  // namespace swarmlite
