// The -wal parser (wal_scan.h); frame layout in state_tree.cpp's header comment.
#include "sqlbridge/engine/wal_scan.h"

#include <cstring>

namespace swarmlite {
namespace {

constexpr uint32_t kWalMagic = 0x377f0682;  // low bit: checksum word order
constexpr uint32_t kWalVersion = 3007000;

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}
uint32_t le32(const uint8_t* p) {
  return uint32_t(p[3]) << 24 | uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | uint32_t(p[0]);
}

bool valid_page_size(uint32_t n) { return n >= 512 && n <= 65536 && (n & (n - 1)) == 0; }

// SQLite's WAL checksum (walChecksumBytes), continuing from `s`.
void wal_checksum(bool big_endian, const uint8_t* data, size_t n, uint32_t s[2]) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint32_t a = big_endian ? be32(data + i) : le32(data + i);
    uint32_t b = big_endian ? be32(data + i + 4) : le32(data + i + 4);
    s[0] += a + s[1];
    s[1] += b + s[0];
  }
}

}  // namespace

Result<WalScan> WalScan::begin(const file_io::Fd& wal, const std::filesystem::path& wal_path) {
  WalScan w;
  uint8_t hdr[kWalHeaderBytes];
  SWL_ASSIGN(size_t got,
             file_io::pread_up_to(wal.get(), std::span<uint8_t>(hdr, sizeof hdr), 0, wal_path));
  if (got != sizeof hdr) return w;
  const uint32_t magic = be32(hdr);
  const uint32_t ps = be32(hdr + 8);
  if ((magic & ~1u) != kWalMagic || be32(hdr + 4) != kWalVersion || !valid_page_size(ps)) return w;
  w.big_endian = (magic & 1u) != 0;
  wal_checksum(w.big_endian, hdr, 24, w.sum);
  if (w.sum[0] != be32(hdr + 24) || w.sum[1] != be32(hdr + 28)) return WalScan{};
  w.usable = true;
  w.page_size = ps;
  std::memcpy(w.salts, hdr + 16, sizeof w.salts);
  return w;
}

Status WalScan::scan(const file_io::Fd& wal, const std::filesystem::path& wal_path,
                     uint32_t max_frames, const FrameFn& on_frame) {
  if (!usable) return ok_status();
  Bytes frame(kWalFrameHeaderBytes + page_size);
  while (frames < max_frames) {
    const int64_t data_offset = wal_frame_data_offset(frames + 1, page_size);
    const int64_t off = data_offset - static_cast<int64_t>(kWalFrameHeaderBytes);
    SWL_ASSIGN(size_t n,
               file_io::pread_up_to(wal.get(), frame, static_cast<uint64_t>(off), wal_path));
    if (n != frame.size()) break;
    const uint32_t pgno = be32(frame.data());
    const uint32_t db_size = be32(frame.data() + 4);
    if (pgno == 0 || std::memcmp(frame.data() + 8, salts, sizeof salts) != 0) break;
    uint32_t s[2] = {sum[0], sum[1]};
    wal_checksum(big_endian, frame.data(), 8, s);
    wal_checksum(big_endian, frame.data() + kWalFrameHeaderBytes, page_size, s);
    if (s[0] != be32(frame.data() + 16) || s[1] != be32(frame.data() + 20)) break;
    sum[0] = s[0];
    sum[1] = s[1];
    ++frames;
    on_frame(frames, pgno, db_size, data_offset);
  }
  return ok_status();
}

}  // namespace swarmlite
