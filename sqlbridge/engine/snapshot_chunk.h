// Verified snapshot transfer (docs/formats/snapshot.md): a new node gets a
// database from untrusted sources page range by page range, each chunk checked
// against a signed head's state root (docs/formats/state-tree.md) before a byte
// of it is written. This is the transport-independent half: the request and
// chunk wire forms and the check. The chunk's pages are leaves of the state
// tree and travel with a multiproof (core/merkle.h) for exactly their range.
//
//   request = u8 version=1 · u64 size · u32 first_page · u32 count
//   chunk   = u8 version=1 · head (docs/formats/head.md) · u32 page_size
//             · u32 first_page · u32 count · count × page_size page bytes
//             · u32 length · multiproof (docs/formats/merkle.md) of leaves
//               first_page-1 .. first_page+count-2 in a tree of head.page_count
//
// Decoders check every length before allocating, reject trailing bytes and name
// the field and its offset (core/codec.h).
#pragma once

#include <cstdint>
#include <span>

#include "core/bytes.h"
#include "core/head.h"
#include "core/merkle.h"
#include "core/result.h"

namespace swarmlite {

inline constexpr uint8_t kSnapshotVersion = 1;
// The page bytes of one chunk: at most 8 MiB (docs/formats/snapshot.md "Caps").
inline constexpr uint64_t kMaxChunkPageBytes = 8u << 20;
// Default pages per chunk: 4 MiB of 4096-byte pages.
inline constexpr uint32_t kDefaultChunkPages = 1024;
// A multiproof for one contiguous range has at most 64 hashes on each side.
inline constexpr size_t kMaxChunkProofHashes = 128;

struct SnapshotRequest {
  uint64_t size = 0;        // the head's log size (which snapshot)
  uint32_t first_page = 0;  // 1-based
  uint32_t count = 0;
  friend bool operator==(const SnapshotRequest&, const SnapshotRequest&) = default;
};

struct SnapshotChunk {
  Head head;  // the signed head the pages are the state of
  uint32_t page_size = 0;
  uint32_t first_page = 0;  // 1-based
  uint32_t count = 0;
  Bytes pages;       // count × page_size bytes, page first_page first
  MultiProof proof;  // leaves first_page-1 .. first_page+count-2 of head.page_count
  ByteView page(uint32_t i) const {
    return ByteView(pages).subspan(size_t{i} * page_size, page_size);
  }
  friend bool operator==(const SnapshotChunk&, const SnapshotChunk&) = default;
};

Bytes encode_snapshot_request(const SnapshotRequest& r);
// Rejects: bad version, first_page 0, count 0, count over what 8 MiB of the
// smallest pages (512 bytes) holds, truncation, trailing bytes.
Result<SnapshotRequest> decode_snapshot_request(ByteView bytes);

Bytes encode_snapshot_chunk(const SnapshotChunk& c);
// Rejects (naming the field and offset): bad version; a head that does not
// decode; a page size that is not a power of two in 512..65536; first_page 0;
// count 0; count × page_size over kMaxChunkPageBytes (too_large); a range past
// head.page_count; truncated pages; a proof length over its cap; a multiproof
// that does not decode or is not exactly for the chunk's leaves in a tree of
// head.page_count; trailing bytes. Signatures and hashes are not checked here:
// that is verify_snapshot_chunk.
Result<SnapshotChunk> decode_snapshot_chunk(ByteView bytes);

// Checks a (decoded) chunk against the head the caller trusts (its signature
// already checked): the chunk's head is that head, byte for byte; its range is
// inside head.page_count; the lock-byte page, if in range, is all zeros; and
// the multiproof over the pages' leaves gives head.state_root. Errors
// (proof_failed, root_mismatch) name the page range and the reason.
Status verify_snapshot_chunk(const SnapshotChunk& chunk, const Head& trusted);

// The multiproof a server sends for pages first_page .. first_page+count-1 of
// the state tree `tree` (leaf i = page i+1).
Result<MultiProof> snapshot_range_proof(const MerkleTree& tree, uint32_t first_page,
                                        uint32_t count);

// Gives page 1's header bytes that the state tree normalises (so a verified
// chunk does not fix them) the values a fresh rollback-journal file has:
// 18–19 = 1 (no WAL), 92–95 (version-valid-for) = 24–27 (change counter), so
// SQLite trusts the in-header page count. A source could otherwise put values
// there that keep SQLite from opening the file. No-op on a page under 100 bytes.
void canonicalize_page1_header(std::span<uint8_t> page1);

}  // namespace swarmlite
