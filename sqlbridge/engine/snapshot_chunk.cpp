#include "sqlbridge/engine/snapshot_chunk.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <vector>

#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {
namespace {

constexpr size_t kRequestBytes = 1 + 8 + 4 + 4;
// Smallest SQLite page: the most pages 8 MiB can hold.
constexpr uint64_t kMaxChunkCount = kMaxChunkPageBytes / 512;
// An encoded multiproof (docs/formats/merkle.md) of `count` indices and at most
// kMaxChunkProofHashes hashes.
constexpr uint64_t max_proof_bytes(uint64_t count) {
  return 1 + 8 + 4 + 8 * count + 4 + 32 * kMaxChunkProofHashes;
}
constexpr size_t kMaxChunkBytes =
    1 + kEncodedHeadSize + 12 + kMaxChunkPageBytes + 4 + max_proof_bytes(kMaxChunkCount);

bool valid_page_size(uint32_t n) { return n >= 512 && n <= 65536 && std::has_single_bit(n); }

std::string range_text(uint32_t first, uint32_t count) {
  return count == 1 ? fmt::format("page {}", first)
                    : fmt::format("pages {}..{}", first, uint64_t{first} + count - 1);
}

}  // namespace

Bytes encode_snapshot_request(const SnapshotRequest& r) {
  Writer w;
  w.u8(kSnapshotVersion);
  w.u64(r.size);
  w.u32(r.first_page);
  w.u32(r.count);
  return w.take();
}

Result<SnapshotRequest> decode_snapshot_request(ByteView bytes) {
  Reader r(bytes, "snapshot request");
  SWL_TRY(r.preamble(kSnapshotVersion, kRequestBytes));
  SnapshotRequest q;
  SWL_ASSIGN(q.size, r.u64("size"));
  size_t at = r.offset();
  SWL_ASSIGN(q.first_page, r.u32("first_page"));
  if (q.first_page == 0)
    return r.fail_at(Errc::bad_value, at, "first_page", "0 (pages are numbered from 1)");
  at = r.offset();
  SWL_ASSIGN(q.count, r.u32("count"));
  if (q.count == 0)
    return r.fail_at(Errc::bad_value, at, "count", "0 (a request asks for at least one page)");
  if (q.count > kMaxChunkCount)
    return r.fail_at(Errc::too_large, at, "count",
                     fmt::format("{} pages is over the cap of {} (8 MiB of 512-byte pages)",
                                 q.count, kMaxChunkCount));
  SWL_TRY(r.expect_end());
  return q;
}

Bytes encode_snapshot_chunk(const SnapshotChunk& c) {
  Writer w;
  w.u8(kSnapshotVersion);
  w.raw(encode_head(c.head));
  w.u32(c.page_size);
  w.u32(c.first_page);
  w.u32(c.count);
  w.raw(c.pages);
  w.blob(encode_multiproof(c.proof));
  return w.take();
}

Result<SnapshotChunk> decode_snapshot_chunk(ByteView bytes) {
  Reader r(bytes, "snapshot chunk");
  SWL_TRY(r.preamble(kSnapshotVersion, kMaxChunkBytes));
  SnapshotChunk c;
  SWL_ASSIGN(c.head, read_head(r, "head"));
  size_t at = r.offset();
  SWL_ASSIGN(c.page_size, r.u32("page_size"));
  if (!valid_page_size(c.page_size))
    return r.fail_at(Errc::bad_value, at, "page_size",
                     fmt::format("{} is not an SQLite page size (a power of two from 512 to 65536)",
                                 c.page_size));
  at = r.offset();
  SWL_ASSIGN(c.first_page, r.u32("first_page"));
  if (c.first_page == 0)
    return r.fail_at(Errc::bad_value, at, "first_page", "0 (pages are numbered from 1)");
  at = r.offset();
  SWL_ASSIGN(c.count, r.u32("count"));
  if (c.count == 0)
    return r.fail_at(Errc::bad_value, at, "count", "0 (a chunk holds at least one page)");
  const uint64_t page_bytes = uint64_t{c.count} * c.page_size;
  if (page_bytes > kMaxChunkPageBytes)
    return r.fail_at(Errc::too_large, at, "count",
                     fmt::format("{} pages of {} bytes is over the cap of {} bytes", c.count,
                                 c.page_size, kMaxChunkPageBytes));
  if (uint64_t{c.first_page} + c.count - 1 > c.head.page_count)
    return r.fail_at(Errc::bad_value, at, "count",
                     fmt::format("{} is past the head's {} pages",
                                 range_text(c.first_page, c.count), c.head.page_count));
  SWL_ASSIGN(ByteView pages, r.raw(page_bytes, "pages"));
  c.pages.assign(pages.begin(), pages.end());
  at = r.offset();
  SWL_ASSIGN(ByteView proof_bytes, r.blob("proof", max_proof_bytes(c.count)));
  auto proof = decode_multiproof(proof_bytes);
  if (!proof.ok()) return r.fail_at(proof.error().code, at, "proof", proof.error().message);
  c.proof = std::move(proof).value();
  if (c.proof.size != c.head.page_count)
    return r.fail_at(Errc::bad_value, at, "proof",
                     fmt::format("for a tree of {} leaves, the head has {} pages", c.proof.size,
                                 c.head.page_count));
  bool range_ok = c.proof.indices.size() == c.count;
  for (size_t i = 0; range_ok && i < c.proof.indices.size(); ++i)
    range_ok = c.proof.indices[i] == uint64_t{c.first_page} - 1 + i;
  if (!range_ok)
    return r.fail_at(
        Errc::bad_value, at, "proof",
        fmt::format("its leaves are not those of {}", range_text(c.first_page, c.count)));
  SWL_TRY(r.expect_end());
  return c;
}

Status verify_snapshot_chunk(const SnapshotChunk& chunk, const Head& trusted) {
  const std::string range = range_text(chunk.first_page, chunk.count);
  if (encode_head(chunk.head) != encode_head(trusted))
    return make_error(
        Errc::proof_failed,
        "snapshot chunk of {}: it is for the head at size {} (state root {}), not the trusted head "
        "at size {} (state root {})",
        range, chunk.head.size, to_hex(chunk.head.state_root), trusted.size,
        to_hex(trusted.state_root));
  if (!valid_page_size(chunk.page_size) || chunk.count == 0 || chunk.first_page == 0 ||
      uint64_t{chunk.first_page} + chunk.count - 1 > trusted.page_count ||
      chunk.pages.size() != uint64_t{chunk.count} * chunk.page_size)
    return make_error(
        Errc::proof_failed,
        "snapshot chunk of {}: not a range of {}-byte pages inside the head's {} pages", range,
        chunk.page_size, trusted.page_count);
  std::vector<uint64_t> indices(chunk.count);
  std::vector<Hash32> leaves(chunk.count);
  const uint32_t lock_page = lock_byte_page(chunk.page_size);
  std::vector<PageLeafJob> jobs;  // hashed together after the loop
  jobs.reserve(chunk.count);
  for (uint32_t i = 0; i < chunk.count; ++i) {
    const uint32_t pgno = chunk.first_page + i;
    indices[i] = pgno - 1;
    ByteView page = chunk.page(i);
    if (pgno == lock_page) {
      // docs/formats/state-tree.md "The lock-byte page": its leaf is fixed, so
      // only zeros are accepted for its bytes (a writer leaves a hole there).
      if (std::any_of(page.begin(), page.end(), [](uint8_t b) { return b != 0; }))
        return make_error(
            Errc::proof_failed,
            "snapshot chunk of {}: page {} is the lock-byte page and must be all zeros", range,
            pgno);
      leaves[i] = lock_byte_leaf(chunk.page_size);
    } else {
      jobs.push_back({pgno, page, &leaves[i]});
    }
  }
  page_leaf_hashes(jobs);
  if (chunk.proof.size != trusted.page_count || chunk.proof.indices != indices)
    return make_error(Errc::proof_failed,
                      "snapshot chunk of {}: the multiproof is not for these pages", range);
  auto s = verify_multiproof(indices, leaves, trusted.page_count, chunk.proof.hashes,
                             trusted.state_root);
  if (!s.ok())
    return make_error(s.error().code, "snapshot chunk of {} at size {}: {}", range, trusted.size,
                      s.error().message);
  return ok_status();
}

Result<MultiProof> snapshot_range_proof(const MerkleTree& tree, uint32_t first_page,
                                        uint32_t count) {
  if (first_page == 0 || count == 0 || uint64_t{first_page} + count - 1 > tree.size())
    return make_error(Errc::invalid_argument, "snapshot: {} is not inside the tree's {} pages",
                      range_text(first_page, count), tree.size());
  MultiProof p;
  p.size = tree.size();
  p.indices.resize(count);
  for (uint32_t i = 0; i < count; ++i) p.indices[i] = uint64_t{first_page} - 1 + i;
  SWL_ASSIGN(p.hashes, tree.multiproof(p.indices));
  return p;
}

void canonicalize_page1_header(std::span<uint8_t> page1) {
  if (page1.size() < 100) return;
  page1[18] = 1;
  page1[19] = 1;
  std::copy(page1.begin() + 24, page1.begin() + 28, page1.begin() + 92);
}

}  // namespace swarmlite
