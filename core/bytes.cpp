#include "core/bytes.h"

#include <algorithm>

namespace swarmlite {

std::string to_hex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.resize(bytes.size() * 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return make_error(Errc::bad_value, "hex text has odd length {}", hex.size());
  }
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      size_t at = hi < 0 ? 2 * i : 2 * i + 1;
      return make_error(Errc::bad_value, "hex text has a non-hex character at offset {}", at);
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

Result<Hash32> hash_from_hex(std::string_view hex) {
  if (hex.size() != 64) {
    return make_error(Errc::bad_value, "a digest is 64 hex digits, got {}", hex.size());
  }
  SWL_ASSIGN(Bytes b, from_hex(hex));
  Hash32 h;
  std::copy(b.begin(), b.end(), h.begin());
  return h;
}

}  // namespace swarmlite
