// Byte containers, 32-byte digests and hex text shared by every layer.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace swarmlite {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

// A BLAKE2b-256 digest (log roots, state roots, leaf and node hashes).
using Hash32 = std::array<uint8_t, 32>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Lower-case hex, two digits per byte.
std::string to_hex(ByteView bytes);
inline std::string to_hex(const Hash32& h) { return to_hex(ByteView(h)); }

// Parses hex (either case, even length, no prefix or spaces).
Result<Bytes> from_hex(std::string_view hex);
// Parses exactly 64 hex digits into a digest.
Result<Hash32> hash_from_hex(std::string_view hex);

}  // namespace swarmlite
