// Pages and leaf hashes of a signed head, any set of them (docs/light-client.md
// "Page service"): what a node's page service answers and what a light client
// checks before SQLite sees a byte. The transport-independent half, like
// snapshot_chunk.h for contiguous ranges: the types and the checks. A page's
// leaf is H(0x00 ‖ u32be(pgno) ‖ page) (docs/formats/state-tree.md), so a page
// sent under another number fails the proof without any extra field.
//
// Wire forms (docs/formats/pages.md), all integers big-endian:
//   pages request  = u8 version=1 · u64 size · u32 count · count × u32 pgno
//   leaves request = the same, with the GetLeaves cap
//   page set       = u8 version=1 · head (docs/formats/head.md) · u32 page_size
//                    · u32 count · count × u32 pgno · count × page_size page bytes
//                    · u32 length · multiproof (docs/formats/merkle.md)
//   leaf set       = u8 version=1 · head · u32 count · count × u32 pgno
//                    · count × 32-byte leaf hash · u32 length · multiproof
// Decoders check every length before allocating, reject trailing bytes and name
// the field and its offset (core/codec.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
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
inline constexpr uint8_t kPageSetVersion = 1;
// The page bytes of one PageSet: 256 pages of the largest SQLite page size.
inline constexpr uint64_t kMaxPageSetPageBytes = uint64_t{kMaxPagesPerRequest} * 65536;

// The most hashes a multiproof of `leaves` leaves can hold in a tree of at most
// 2^32 leaves (page numbers are u32): at depth d below the root at most
// min(leaves, 2^d) siblings, for d = 1..32.
constexpr uint64_t max_page_multiproof_hashes(uint64_t leaves) {
  uint64_t n = 0;
  for (int d = 1; d <= 32; ++d) n += std::min<uint64_t>(leaves, uint64_t{1} << d);
  return n;
}
// Its encoded size (docs/formats/merkle.md: version, size, count, indices, hash list).
constexpr uint64_t max_page_multiproof_bytes(uint64_t leaves) {
  return 1 + 8 + 4 + 8 * leaves + 4 + 32 * max_page_multiproof_hashes(leaves);
}
// The largest encoded request / PageSet / LeafSet a decoder accepts; a
// transport caps bodies at these (a LeafSet of 65536 scattered leaves can
// carry ~1.2M proof hashes: ~40 MiB; a dense one far less).
inline constexpr size_t kMaxPagesRequestBytes = 1 + 8 + 4 + 4 * kMaxPagesPerRequest;
inline constexpr size_t kMaxLeavesRequestBytes = 1 + 8 + 4 + 4 * kMaxLeavesPerRequest;
inline constexpr size_t kMaxPageSetBytes = 1 + kEncodedHeadSize + 4 + 4 +
                                           4 * kMaxPagesPerRequest + kMaxPageSetPageBytes + 4 +
                                           max_page_multiproof_bytes(kMaxPagesPerRequest);
inline constexpr size_t kMaxLeafSetBytes = 1 + kEncodedHeadSize + 4 + 36 * kMaxLeavesPerRequest +
                                           4 + max_page_multiproof_bytes(kMaxLeavesPerRequest);

// GetPages / GetLeaves: pages `pgnos` (strictly increasing, from 1) of the head
// of log size `size` (0: the node's newest pinned head).
struct PagesRequest {
  uint64_t size = 0;
  std::vector<uint32_t> pgnos;
  friend bool operator==(const PagesRequest&, const PagesRequest&) = default;
};
struct LeavesRequest {
  uint64_t size = 0;
  std::vector<uint32_t> pgnos;
  friend bool operator==(const LeavesRequest&, const LeavesRequest&) = default;
};

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
// `max_pages`: the most pages the set may hold (a query proof's pages, checked
// as a set by the light client, may hold up to the multiproof cap).
Status verify_page_set(const PageSet& set, const Head& trusted,
                       size_t max_pages = kMaxPagesPerRequest);
Status verify_leaf_set(const LeafSet& set, const Head& trusted);

Bytes encode_pages_request(const PagesRequest& r);
Bytes encode_leaves_request(const LeavesRequest& r);
// Rejects (naming field and offset): bad version; count 0 or over the cap
// (256 pages / 65536 leaves, too_large); a page number 0 or not above the one
// before; truncation; trailing bytes. The head's page count is not known here:
// the server checks it (check_pgnos).
Result<PagesRequest> decode_pages_request(ByteView bytes);
Result<LeavesRequest> decode_leaves_request(ByteView bytes);

Bytes encode_page_set(const PageSet& s);
Bytes encode_leaf_set(const LeafSet& s);
// Rejects (naming field and offset): bad version; a head that does not decode;
// a page size that is not a power of two in 512..65536; count 0 or over the
// cap (too_large); page numbers not strictly increasing in 1..head.page_count;
// truncated pages / hashes; a proof length over what `count` leaves can need;
// a multiproof that does not decode or is not exactly for leaves pgno - 1 in a
// tree of head.page_count; trailing bytes. Hashes and the signature are not
// checked: that is verify_page_set / verify_leaf_set.
Result<PageSet> decode_page_set(ByteView bytes);
Result<LeafSet> decode_leaf_set(ByteView bytes);

// --- Changes between two heads (docs/formats/pages.md "Change set") ---------
//
// Which pages differ between a head the client trusts (log size from_size, m
// pages) and a newer one `to` (n pages), proven with one set of sibling hashes
// shared by both trees: with k = min(m, n), `pgnos` holds every page of 1..k
// whose leaf may differ, page k itself (so no right-spine node of either tree
// is ever a sibling: each sibling is then a complete aligned subtree inside
// pages 1..k, the same node in both trees) and every page of k+1..max(m, n).
// The multiproof of leaves pgnos ∩ 1..m in the tree of m and that of
// pgnos ∩ 1..n in the tree of n then hold the same hashes, in the same order
// (docs/formats/merkle.md "Multiproof across two sizes"); old leaves + siblings
// fold to the old root, new leaves + the same siblings to the new one, which
// proves every page outside `pgnos` equal at both heads.
//   change set = u8 version=1 · u64 from_size · head to · u32 count
//                · count × u32 pgno · u32 old_count · old_count × 32-byte old leaf
//                · u32 new_count · new_count × 32-byte new leaf · hash list siblings
inline constexpr size_t kMaxChangedPages = 4096;  // past it: "too many changes, ask leaves"
inline constexpr size_t kChangesRequestBytes = 1 + 8 + 8;
inline constexpr size_t kMaxChangeSetBytes = 1 + 8 + kEncodedHeadSize + 4 + 4 * kMaxChangedPages +
                                             2 * (4 + 32 * kMaxChangedPages) + 4 +
                                             32 * max_page_multiproof_hashes(kMaxChangedPages);

// GetChanges: the pages changed since the head of log size `from_size` up to
// the head of size `to_size` (0: the node's newest pinned head).
struct ChangesRequest {
  uint64_t from_size = 0;
  uint64_t to_size = 0;
  friend bool operator==(const ChangesRequest&, const ChangesRequest&) = default;
};

struct ChangeSet {
  uint64_t from_size = 0;            // the old head's log size (the client holds that head)
  Head to;                           // the new head
  std::vector<uint32_t> pgnos;       // strictly increasing, 1..max(m, n); see above
  std::vector<Hash32> old_leaves;    // the leaf at from_size of each pgno <= m, in order
  std::vector<Hash32> new_leaves;    // the leaf at `to` of each pgno <= n, in order
  std::vector<Hash32> siblings;      // the shared multiproof hashes
  friend bool operator==(const ChangeSet&, const ChangeSet&) = default;
};

// Checks a change set against the old head the client trusts and the new head
// it accepted (signature checked, freshness judged): `to` is `trusted_new`
// byte for byte, from_size is trusted_old.size and not above it; pgnos strictly
// increasing within 1..max(m, n), at most kMaxChangedPages, holding page
// min(m, n) and every page above it; one old leaf per pgno <= m and one new
// leaf per pgno <= n; the old leaves with `siblings` fold to trusted_old's
// state root in a tree of m and the new leaves with the same siblings to
// trusted_new's in a tree of n. proof_failed / root_mismatch with the reason.
Status verify_change_set(const ChangeSet& set, const Head& trusted_old, const Head& trusted_new);
// The pages whose content at the new head differs from the old head's (or that
// exist at one head only), from a verified change set: the pages a client must
// drop; every other page it held is proven unchanged.
std::vector<uint32_t> changed_pages(const ChangeSet& set, uint32_t old_page_count);

// What a server builds the answer from: the tree at the new head `to` (n
// leaves), the old head's page count m, and `old_leaves`, the leaf at the old
// head of every page <= m whose leaf was set or cut in between (a superset is
// fine: pages whose leaf came back equal are left out, except page min(m, n)).
// Every page of n+1..m must be there. too_large when the set would pass
// kMaxChangedPages (the client then asks GetLeaves); internal on missing leaves.
Result<ChangeSet> build_change_set(const MerkleTree& tree, const Head& to, uint64_t from_size,
                                   uint32_t old_page_count,
                                   const std::vector<std::pair<uint32_t, Hash32>>& old_leaves);

Bytes encode_changes_request(const ChangesRequest& r);
// Rejects bad version, to_size (not 0) below from_size, truncation, trailing bytes.
Result<ChangesRequest> decode_changes_request(ByteView bytes);
Bytes encode_change_set(const ChangeSet& s);
// Rejects (naming field and offset): bad version; a head that does not decode;
// from_size above the head's size; count 0 or over kMaxChangedPages
// (too_large); page numbers 0 or not strictly increasing; leaf counts other
// than the page numbers <= each size need (the old size's page count is not
// known here: old_count must be the pgnos from the start, the rest above it);
// over the sibling cap; truncation; trailing bytes. Hashes are
// verify_change_set's.
Result<ChangeSet> decode_change_set(ByteView bytes);


// What answers GetPages / GetLeaves on a node (Replica: from its pinned head,
// docs/light-client.md "Page service"); the transports (net/node.cpp,
// net/http_api.cpp) call it off their I/O threads. `size` 0 is the newest
// pinned head; a head not (or no longer) pinned is not_found with *newest set
// to the size that is, which the transports answer as "head gone, newest M";
// bad page numbers are invalid_argument.
class PageServer {
 public:
  virtual ~PageServer() = default;
  virtual Result<PageSet> pinned_pages(uint64_t size, std::span<const uint32_t> pgnos,
                                       uint64_t* newest = nullptr) const = 0;
  virtual Result<LeafSet> pinned_leaves(uint64_t size, std::span<const uint32_t> pgnos,
                                        uint64_t* newest = nullptr) const = 0;
  // GetChanges (docs/light-client.md "Head moves"): the pages changed from the
  // head of size `from_size` to the pinned head `to_size` (0: the newest), as a
  // ChangeSet. not_found with *newest as pinned_leaves when `to_size` is not
  // pinned; refused when from_size is not in the server's change history (too
  // old, or a head it never pinned); too_large past kMaxChangedPages. Any of
  // these tells the client to fall back to GetLeaves. A server without a
  // change history answers unavailable, as here (Replica and Primary keep one).
  virtual Result<ChangeSet> pinned_changes(uint64_t from_size, uint64_t to_size,
                                           uint64_t* newest = nullptr) const {
    (void)to_size;
    (void)newest;
    return make_error(Errc::unavailable,
                      "changes since size {}: this node keeps no change history (ask for leaves)",
                      from_size);
  }
};

// Page lists in URLs (docs/http-api.md "Pages": GET /db/pages?pages=LIST):
// comma-separated numbers and ranges "a-b", e.g. "1,5,9-12". parse_page_list
// expands it, refusing (invalid_argument, naming the item) a number 0 or not
// decimal, a range a > b, items not strictly increasing, more than `max` pages
// in all (checked before expanding), or more than 64 KiB of text.
Result<std::vector<uint32_t>> parse_page_list(std::string_view text, size_t max);
// The shortest such list of `pgnos` (strictly increasing): runs become ranges.
std::string format_page_list(std::span<const uint32_t> pgnos);

// "page 7" / "pages 3, 9, 12" / "12 pages 3..4100": names a set in messages.
std::string pgnos_text(std::span<const uint32_t> pgnos);

}  // namespace swarmlite
