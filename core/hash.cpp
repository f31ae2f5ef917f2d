#include "core/hash.h"

#include <sodium.h>

#include <cstring>

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
