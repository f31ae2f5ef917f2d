// Test helper: a change below SQLite, as a faulty disk or a tool writing bytes
// would make it. Not part of the library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace swarmlite::testing {

namespace disk_change_detail {
inline uint32_t load32(const std::string& b, size_t at, bool big) {
  const auto* p = reinterpret_cast<const uint8_t*>(b.data() + at);
  return big ? (uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3])
             : (uint32_t(p[3]) << 24 | uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | p[0]);
}
inline void store_be32(std::string& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>(v >> (24 - 8 * i));
}
// SQLite's WAL checksum (sqlite.org/fileformat2.html "Checksum Algorithm").
inline void wal_sum(const std::string& b, size_t at, size_t n, bool big, uint32_t& s0,
                    uint32_t& s1) {
  for (size_t i = 0; i < n; i += 8) {
    s0 += load32(b, at + i, big) + s1;
    s1 += load32(b, at + i + 4, big) + s0;
  }
}
}  // namespace disk_change_detail

// `from` becomes `to` (same length) wherever it appears in the database's main
// file and its -wal file; the WAL frames' checksums are then recomputed, so
// the changed frames stay valid and every reader takes the changed bytes
// (from the WAL or the main file, whichever holds its page). No lock is taken.
// Returns how many places changed.
inline size_t change_bytes_below_sqlite(const std::filesystem::path& db, const std::string& from,
                                        const std::string& to) {
  using namespace disk_change_detail;
  if (from.size() != to.size() || from.empty()) return 0;
  size_t changed = 0;
  for (const std::filesystem::path& file : {std::filesystem::path(db.string() + "-wal"), db}) {
    std::string b;
    {
      std::ifstream in(file, std::ios::binary);
      if (!in) continue;
      b.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    size_t here = 0;
    for (size_t at = b.find(from); at != std::string::npos; at = b.find(from, at + 1), ++here)
      b.replace(at, to.size(), to);
    if (here == 0) continue;
    changed += here;
    if (file != db && b.size() >= 32) {
      const bool big = (load32(b, 0, true) & 1) != 0;  // magic 0x377f0683: big-endian sums
      const uint32_t page_size = load32(b, 8, true);
      uint32_t s0 = load32(b, 24, true), s1 = load32(b, 28, true);  // the header's own
      const size_t frame = 24 + size_t{page_size};
      for (size_t at = 32; page_size != 0 && at + frame <= b.size(); at += frame) {
        if (b.compare(at + 8, 8, b, 16, 8) != 0) break;  // salts differ: not this WAL's frame
        wal_sum(b, at, 8, big, s0, s1);
        wal_sum(b, at + 24, page_size, big, s0, s1);
        store_be32(b, at + 16, s0);
        store_be32(b, at + 20, s1);
      }
    }
    std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
    out.close();
  }
  return changed;
}

}  // namespace swarmlite::testing
