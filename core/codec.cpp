// The parts of the primitive codec (codec.h, docs/formats/encoding.md) that
// every versioned format shares: preamble, counts and hash lists.
#include "core/codec.h"

#include <fmt/format.h>

namespace swarmlite {

Status Reader::preamble(uint8_t expected, size_t max_bytes) {
  if (in_.size() > max_bytes) {
    return fail_at(Errc::too_large, 0, what_,
                   fmt::format("{} bytes is over the cap of {}", in_.size(), max_bytes));
  }
  const size_t at = pos_;
  SWL_ASSIGN(uint8_t version, u8("version"));
  if (version != expected) {
    return fail_at(Errc::bad_version, at, "version",
                   fmt::format("{} is not a known {} version (expected {})", version, what_,
                               expected));
  }
  return {};
}

Result<size_t> Reader::count(std::string_view field, size_t cap, size_t min_item_bytes,
                             size_t reserved_after) {
  const size_t at = pos_;
  SWL_ASSIGN(uint32_t n, u32(field));
  if (n > cap) {
    return fail_at(Errc::too_large, at, field, fmt::format("{} is over the cap of {}", n, cap));
  }
  if (min_item_bytes > 0) {
    const size_t room = remaining() >= reserved_after ? remaining() - reserved_after : 0;
    if (n > room / min_item_bytes) {
      return fail_at(Errc::truncated, at, field,
                     fmt::format("{} item(s) need at least {} byte(s), {} left", n,
                                 static_cast<uint64_t>(n) * min_item_bytes, room));
    }
  }
  return static_cast<size_t>(n);
}

void write_hash_list(Writer& w, std::span<const Hash32> hashes) {
  w.u32(static_cast<uint32_t>(hashes.size()));
  for (const Hash32& h : hashes) w.hash(h);
}

Result<std::vector<Hash32>> read_hashes(Reader& r, std::string_view field, size_t count) {
  if (r.remaining() / 32 < count) {
    return r.fail(Errc::truncated, field,
                  fmt::format("{} hashes need {} bytes, {} left", count, static_cast<uint64_t>(count) * 32,
                              r.remaining()));
  }
  std::vector<Hash32> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    SWL_ASSIGN(Hash32 h, r.hash(field));
    out.push_back(h);
  }
  return out;
}

Result<std::vector<Hash32>> read_hash_list(Reader& r, std::string_view field, size_t max) {
  SWL_ASSIGN(size_t count, r.count(field, max));
  return read_hashes(r, field, count);
}

}  // namespace swarmlite
