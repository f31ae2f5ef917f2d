// Pages and leaf hashes of a signed head, any set of them (docs/light-client.md
// "Page service"): what a node's page service answers and what a light client
// checks before SQLite sees a byte. The transport-independent half, like
// snapshot_chunk.h for contiguous ranges: the types and the checks. A page's
// leaf is H(0x00 ‖ u32be(pgno) ‖ page) (docs/formats/state-tree.md), so a page
// sent under another number fails the proof without any extra field.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/head.h"
#include "core/merkle.h"
#include "core/result.h"

namespace swarmlite {

// Pages per GetPages (1 MiB of 4 KiB pages) and leaves per GetLeaves (the
// multiproof cap), docs/light-client.md "Page service".
inline constexpr size_t kMaxPagesPerRequest = 256;
inline constexpr size_t kMaxLeavesPerRequest = kMaxMultiproofLeaves;

// Pages `pgnos` of the state at `head`, with the multiproof of their leaves
// (indices pgno - 1) in the head's state tree of head.page_count leaves.
struct PageSet {
  Head head;
  uint32_t page_size = 0;
  std::vector<uint32_t> pgnos;  // strictly increasing, 1..head.page_count
  std::vector<Bytes> pages;     // pages[i] is page pgnos[i], page_size bytes each
  MultiProof proof;
  friend bool operator==(const PageSet&, const PageSet&) = default;
};

// The leaf hashes of pages `pgnos` at `head`, with their multiproof: tells a
// client which of its cached pages are unchanged at a newer head.
struct LeafSet {
  Head head;
  std::vector<uint32_t> pgnos;  // strictly increasing, 1..head.page_count
  std::vector<Hash32> leaves;   // leaves[i] is the leaf of page pgnos[i]
  MultiProof proof;
  friend bool operator==(const LeafSet&, const LeafSet&) = default;
};

// invalid_argument unless `pgnos` is non-empty, at most `max` long, strictly
// increasing and inside 1..page_count; the message names the first bad one.
// Servers check requests with it; verify_* below check answers the same way.
Status check_pgnos(std::span<const uint32_t> pgnos, uint32_t page_count, size_t max);

// The multiproof indices (pgno - 1) of `pgnos`.
std::vector<uint64_t> pgno_indices(std::span<const uint32_t> pgnos);

// Checks an answer against the head the caller trusts (its signature already
// checked, its freshness judged): the answer's head is that head byte for byte;
// pgnos valid (check_pgnos) with one page or leaf each; a page size that is a
// power of two in 512..65536 and every page that long; the lock-byte page all
// zeros; the multiproof exactly for those leaves in a tree of
// trusted.page_count, folding to trusted.state_root. Errors are proof_failed or
// root_mismatch naming the pages and the reason (a multiproof cannot say which
// page of a set is wrong, so the message names the set).
Status verify_page_set(const PageSet& set, const Head& trusted);
Status verify_leaf_set(const LeafSet& set, const Head& trusted);

// "page 7" / "pages 3, 9, 12" / "12 pages 3..4100": names a set in messages.
std::string pgnos_text(std::span<const uint32_t> pgnos);

}  // namespace swarmlite
