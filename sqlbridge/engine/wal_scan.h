// The -wal file parser shared by LogicalPages (state_tree.h: the pages a new
// reader sees) and PinnedPages (pinned_pages.h: the pages of a pinned read
// transaction). It accepts frames as SQLite's recovery does (src/wal.c
// walIndexRecover / walDecodeFrame; the layout is in state_tree.cpp and
// docs/formats/state-tree.md): a valid header (magic, version, page size,
// checksum), then frames while their salts equal the header's and their
// cumulative checksum holds. A scan can be continued later from where it
// stopped (the running checksum is kept), as long as the WAL was not started
// over meanwhile (the caller compares the salts).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>

#include "core/file_io.h"
#include "core/result.h"

namespace swarmlite {

inline constexpr size_t kWalHeaderBytes = 32;
inline constexpr size_t kWalFrameHeaderBytes = 24;

struct WalScan {
  bool usable = false;  // the header is valid; false: an empty WAL, as in SQLite's recovery
  bool big_endian = false;
  uint32_t page_size = 0;
  uint8_t salts[8] = {};     // header bytes 16..23: salt-1, salt-2 (big-endian, as in the file)
  uint32_t sum[2] = {0, 0};  // cumulative checksum after the last valid frame
  uint32_t frames = 0;       // valid frames so far (commit or not)

  // Reads and checks the WAL header (a file shorter than a header is unusable).
  static Result<WalScan> begin(const file_io::Fd& wal, const std::filesystem::path& wal_path);

  // Calls on_frame(frame, pgno, db_size, data_offset) for each valid frame
  // after the `frames` already scanned, in order, until the first invalid or
  // short frame or until `frames` reaches max_frames. `frame` is 1-based,
  // `db_size` is the commit frame's database size in pages (0: not a commit
  // frame), `data_offset` the file offset of the frame's page. Does nothing
  // when !usable.
  using FrameFn =
      std::function<void(uint32_t frame, uint32_t pgno, uint32_t db_size, int64_t data_offset)>;
  Status scan(const file_io::Fd& wal, const std::filesystem::path& wal_path, uint32_t max_frames,
              const FrameFn& on_frame);
};

// File offset of the page of 1-based frame `frame` in a WAL of `page_size` pages.
inline int64_t wal_frame_data_offset(uint32_t frame, uint32_t page_size) {
  return static_cast<int64_t>(kWalHeaderBytes) +
         static_cast<int64_t>(frame - 1) * static_cast<int64_t>(kWalFrameHeaderBytes + page_size) +
         static_cast<int64_t>(kWalFrameHeaderBytes);
}

}  // namespace swarmlite
