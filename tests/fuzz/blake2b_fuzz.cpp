// Differential fuzz target for the portable BLAKE2b-256 (core/blake2b.h):
// the input, fed in pieces whose sizes come from its first bytes, must hash
// to what libsodium's crypto_generichash gives for the whole input; the
// lane-parallel hash (hash_lanes, one length or a length per message) must
// give the scalar hash's digests and midstates.
#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/blake2b.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite::blake2b256;
  if (sodium_init() < 0) std::abort();
  // Byte 0 (when present) seeds the split: piece sizes cycle through
  // 0 .. 2 * (seed + 1) bytes, so single bytes, blocks and spans all occur.
  const size_t span = size > 0 ? 2 * (static_cast<size_t>(data[0]) + 1) : 1;
  PortableState s;
  portable_init(s);
  size_t at = 0;
  for (size_t i = 0; at < size; ++i) {
    size_t piece = std::min(size - at, (i * 37 + data[at]) % (span + 1));
    portable_update(s, data + at, piece);
    // An empty update is a case to exercise, but the loop must move on: the
    // formula can give 0 at every step (span + 1 == 37 and data[at] % 37 == 0).
    if (piece == 0) {
      piece = 1;
      portable_update(s, data + at, piece);
    }
    at += piece;
  }
  uint8_t ours[32], theirs[32];
  portable_final(s, ours);
  crypto_generichash(theirs, sizeof theirs, data, size, nullptr, 0);
  if (std::memcmp(ours, theirs, 32) != 0) {
    std::fprintf(stderr, "blake2b_fuzz: portable digest differs from libsodium's (%zu bytes)\n",
                 size);
    std::abort();
  }
  // The resumable hash (the state tree's page leaves): the input as prefix
  // (its first data[0] % 128 bytes) and data, hashed whole, then with its
  // second half changed and resumed at the first block that differs.
  const size_t prefix_len = size > 0 ? std::min<size_t>(size, data[0] % 128) : 0;
  std::vector<Midstate> mid(resumable_blocks(size) + 1);
  portable_hash_resumable(data, prefix_len, data + prefix_len, size - prefix_len, 0, mid.data(), ours);
  if (std::memcmp(ours, theirs, 32) != 0) {
    std::fprintf(stderr, "blake2b_fuzz: resumable digest differs from libsodium's (%zu bytes)\n", size);
    std::abort();
  }
  if (size > 1) {
    std::vector<uint8_t> changed(data, data + size);
    const size_t half = size / 2;
    for (size_t i = half; i < size; ++i) changed[i] = static_cast<uint8_t>(changed[i] ^ 0xa5);
    portable_hash_resumable(changed.data(), prefix_len, changed.data() + prefix_len,
                            size - prefix_len, std::min(half / 128, resumable_blocks(size)),
                            mid.data(), ours);
    crypto_generichash(theirs, sizeof theirs, changed.data(), size, nullptr, 0);
    if (std::memcmp(ours, theirs, 32) != 0) {
      std::fprintf(stderr, "blake2b_fuzz: resumed digest differs from libsodium's (%zu bytes)\n",
                   size);
      std::abort();
    }
  }
  // The lane-parallel hash (hash_lanes, the state tree's new pages): the
  // input after its first three bytes cut into 1..17 messages of one length
  // (byte 1), hashed 1, 4 or 8 at a time (byte 2; capped at what the CPU
  // runs), each message's first data[0] % 128 bytes as its prefix. Digests
  // and every midstate must be the scalar resumable hash's.
  if (size >= 3) {
    const size_t count = 1 + data[1] % 17;
    const size_t width = data[2] % 3 == 0 ? 1 : data[2] % 3 == 1 ? 4 : 8;
    const uint8_t* body = data + 3;
    const size_t len = (size - 3) / count;
    const size_t lane_prefix = std::min<size_t>(len, data[0] % 128);
    const size_t mids = resumable_blocks(len) + 1;
    std::vector<std::vector<Midstate>> lane_mid(count, std::vector<Midstate>(mids));
    std::vector<uint8_t> lane_out(32 * count);
    std::vector<LaneInput> in(count);
    for (size_t i = 0; i < count; ++i) {
      const uint8_t* msg = body + i * len;
      in[i] = {msg, msg + lane_prefix, lane_mid[i].data(), lane_out.data() + 32 * i};
    }
    hash_lanes(width, in, lane_prefix, len - lane_prefix);
    std::vector<Midstate> want_mid(mids);
    for (size_t i = 0; i < count; ++i) {
      const uint8_t* msg = body + i * len;
      portable_hash_resumable(msg, lane_prefix, msg + lane_prefix, len - lane_prefix, 0,
                              want_mid.data(), theirs);
      if (std::memcmp(lane_out.data() + 32 * i, theirs, 32) != 0 ||
          std::memcmp(lane_mid[i].data(), want_mid.data(), mids * sizeof(Midstate)) != 0) {
        std::fprintf(stderr,
                     "blake2b_fuzz: hash_lanes (width %zu, %zu messages of %zu bytes) differs "
                     "from the scalar hash for message %zu\n",
                     width, count, len, i);
        std::abort();
      }
    }
    // The same messages cut at lengths of their own: message i takes the
    // next (body byte * 7) % 400 bytes (what is left for the last), so one
    // group mixes empty messages, one block and several; digests and every
    // midstate must be the scalar hash's.
    std::vector<size_t> lens(count);
    std::vector<const uint8_t*> starts(count);
    size_t at_var = 0;
    const size_t body_size = size - 3;
    for (size_t i = 0; i < count; ++i) {
      const size_t want = at_var < body_size ? (static_cast<size_t>(body[at_var]) * 7) % 400 : 0;
      lens[i] = i + 1 == count ? body_size - at_var : std::min(want, body_size - at_var);
      starts[i] = body + at_var;
      at_var += lens[i];
    }
    std::vector<std::vector<Midstate>> var_mid(count);
    // One prefix length for all: the shortest message's share of lane_prefix.
    size_t var_prefix = lane_prefix;
    for (size_t i = 0; i < count; ++i) var_prefix = std::min(var_prefix, lens[i]);
    std::vector<size_t> data_lens(count);
    for (size_t i = 0; i < count; ++i) {
      data_lens[i] = lens[i] - var_prefix;
      var_mid[i].resize(resumable_blocks(lens[i]) + 1);
      in[i] = {starts[i], starts[i] + var_prefix, var_mid[i].data(), lane_out.data() + 32 * i};
    }
    hash_lanes(width, in, var_prefix, data_lens);
    for (size_t i = 0; i < count; ++i) {
      std::vector<Midstate> want(var_mid[i].size());
      portable_hash_resumable(starts[i], var_prefix, starts[i] + var_prefix, data_lens[i], 0,
                              want.data(), theirs);
      if (std::memcmp(lane_out.data() + 32 * i, theirs, 32) != 0 ||
          std::memcmp(var_mid[i].data(), want.data(), want.size() * sizeof(Midstate)) != 0) {
        std::fprintf(stderr,
                     "blake2b_fuzz: hash_lanes (width %zu, %zu messages of their own lengths) "
                     "differs from the scalar hash for message %zu (%zu bytes)\n",
                     width, count, i, lens[i]);
        std::abort();
      }
    }
  }
  return 0;
}
