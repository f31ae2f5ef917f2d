// Checks of page and leaf sets (page_set.h; docs/light-client.md "Page service").
#include "sqlbridge/engine/page_set.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdint>
#include <map>

#include "core/hash.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {
namespace {

bool valid_page_size(uint32_t n) { return n >= 512 && n <= 65536 && std::has_single_bit(n); }

Status check_head(const Head& got, const Head& trusted, std::string_view what,
                  std::span<const uint32_t> pgnos) {
  if (encode_head(got) == encode_head(trusted)) return ok_status();
  return make_error(Errc::proof_failed,
                    "{} of {}: they are for the head at size {} (state root {}), not the trusted "
                    "head at size {} (state root {})",
                    what, pgnos_text(pgnos), got.size, to_hex(got.state_root), trusted.size,
                    to_hex(trusted.state_root));
}

Status check_answer_pgnos(std::span<const uint32_t> pgnos, size_t values, const Head& trusted,
                          size_t max, std::string_view what) {
  if (auto s = check_pgnos(pgnos, trusted.page_count, max); !s.ok())
    return make_error(Errc::proof_failed, "{} at size {}: {}", what, trusted.size,
                      s.error().message);
  if (values != pgnos.size())
    return make_error(Errc::proof_failed, "{} of {} at size {}: {} values for {} page numbers",
                      what, pgnos_text(pgnos), trusted.size, values, pgnos.size());
  return ok_status();
}

Status check_proof(const MultiProof& proof, std::span<const uint32_t> pgnos,
                   std::span<const Hash32> leaves, const Head& trusted, std::string_view what) {
  const std::vector<uint64_t> indices = pgno_indices(pgnos);
  if (proof.size != trusted.page_count || proof.indices != indices)
    return make_error(Errc::proof_failed,
                      "{} of {} at size {}: the multiproof is for {} leaves of a tree of {}, not "
                      "for these pages of the head's {}",
                      what, pgnos_text(pgnos), trusted.size, proof.indices.size(), proof.size,
                      trusted.page_count);
  auto s =
      verify_multiproof(indices, leaves, trusted.page_count, proof.hashes, trusted.state_root);
  if (!s.ok())
    return make_error(s.error().code, "{} of {} at size {}: {}", what, pgnos_text(pgnos),
                      trusted.size, s.error().message);
  return ok_status();
}

template <class Req>
Bytes encode_request(const Req& q) {
  Writer w;
  w.u8(kPageSetVersion);
  w.u64(q.size);
  w.u32(static_cast<uint32_t>(q.pgnos.size()));
  for (uint32_t p : q.pgnos) w.u32(p);
  return w.take();
}

// count then count × u32 page numbers, strictly increasing from 1 and at most
// `page_count`; `reserved_after` bytes per page must follow the numbers (the
// count is refused before anything is allocated when they cannot fit).
Result<std::vector<uint32_t>> read_pgnos(Reader& r, size_t cap, uint64_t page_count,
                                         size_t per_page_after) {
  const size_t at = r.offset();
  SWL_ASSIGN(size_t n, r.count("count", cap, 4 + per_page_after));
  if (n == 0) return r.fail_at(Errc::bad_value, at, "count", "0 (at least one page is named)");
  std::vector<uint32_t> pgnos(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t pat = r.offset();
    SWL_ASSIGN(pgnos[i], r.u32("pgno"));
    if (pgnos[i] == 0)
      return r.fail_at(Errc::bad_value, pat, "pgno", "0 (pages are numbered from 1)");
    if (i > 0 && pgnos[i] <= pgnos[i - 1])
      return r.fail_at(Errc::bad_value, pat, "pgno",
                       fmt::format("{} does not follow {}: page numbers must be strictly increasing",
                                   pgnos[i], pgnos[i - 1]));
    if (pgnos[i] > page_count)
      return r.fail_at(Errc::bad_value, pat, "pgno",
                       fmt::format("{} is past the head's {} pages", pgnos[i], page_count));
  }
  return pgnos;
}

template <class Req>
Result<Req> decode_request(ByteView bytes, std::string_view what, size_t cap, size_t max_bytes) {
  Reader r(bytes, what);
  SWL_TRY(r.preamble(kPageSetVersion, max_bytes));
  Req q;
  SWL_ASSIGN(q.size, r.u64("size"));
  SWL_ASSIGN(q.pgnos, read_pgnos(r, cap, UINT32_MAX, 0));
  SWL_TRY(r.expect_end());
  return q;
}

// u32 length · multiproof, which must be exactly for leaves pgno - 1 in a tree
// of page_count leaves.
Result<MultiProof> read_proof(Reader& r, std::span<const uint32_t> pgnos, uint64_t page_count) {
  const size_t at = r.offset();
  SWL_ASSIGN(ByteView bytes, r.blob("proof", max_page_multiproof_bytes(pgnos.size())));
  auto proof = decode_multiproof(bytes);
  if (!proof.ok()) return r.fail_at(proof.error().code, at, "proof", proof.error().message);
  if (proof->size != page_count)
    return r.fail_at(Errc::bad_value, at, "proof",
                     fmt::format("for a tree of {} leaves, the head has {} pages", proof->size,
                                 page_count));
  if (proof->indices != pgno_indices(pgnos))
    return r.fail_at(Errc::bad_value, at, "proof",
                     fmt::format("its leaves are not those of {}", pgnos_text(pgnos)));
  return std::move(proof).value();
}

}  // namespace

Bytes encode_pages_request(const PagesRequest& r) { return encode_request(r); }
Bytes encode_leaves_request(const LeavesRequest& r) { return encode_request(r); }

Result<PagesRequest> decode_pages_request(ByteView bytes) {
  return decode_request<PagesRequest>(bytes, "pages request", kMaxPagesPerRequest,
                                      kMaxPagesRequestBytes);
}
Result<LeavesRequest> decode_leaves_request(ByteView bytes) {
  return decode_request<LeavesRequest>(bytes, "leaves request", kMaxLeavesPerRequest,
                                       kMaxLeavesRequestBytes);
}

Bytes encode_page_set(const PageSet& s) {
  Writer w;
  w.u8(kPageSetVersion);
  w.raw(encode_head(s.head));
  w.u32(s.page_size);
  w.u32(static_cast<uint32_t>(s.pgnos.size()));
  for (uint32_t p : s.pgnos) w.u32(p);
  for (const Bytes& page : s.pages) w.raw(page);
  w.blob(encode_multiproof(s.proof));
  return w.take();
}

Bytes encode_leaf_set(const LeafSet& s) {
  Writer w;
  w.u8(kPageSetVersion);
  w.raw(encode_head(s.head));
  w.u32(static_cast<uint32_t>(s.pgnos.size()));
  for (uint32_t p : s.pgnos) w.u32(p);
  for (const Hash32& h : s.leaves) w.hash(h);
  w.blob(encode_multiproof(s.proof));
  return w.take();
}

Result<PageSet> decode_page_set(ByteView bytes) {
  Reader r(bytes, "page set");
  SWL_TRY(r.preamble(kPageSetVersion, kMaxPageSetBytes));
  PageSet s;
  SWL_ASSIGN(s.head, read_head(r, "head"));
  const size_t at = r.offset();
  SWL_ASSIGN(s.page_size, r.u32("page_size"));
  if (!valid_page_size(s.page_size))
    return r.fail_at(Errc::bad_value, at, "page_size",
                     fmt::format("{} is not an SQLite page size (a power of two from 512 to 65536)",
                                 s.page_size));
  SWL_ASSIGN(s.pgnos, read_pgnos(r, kMaxPagesPerRequest, s.head.page_count, s.page_size));
  s.pages.reserve(s.pgnos.size());
  for (size_t i = 0; i < s.pgnos.size(); ++i) {
    SWL_ASSIGN(ByteView page, r.raw(s.page_size, "page"));
    s.pages.emplace_back(page.begin(), page.end());
  }
  SWL_ASSIGN(s.proof, read_proof(r, s.pgnos, s.head.page_count));
  SWL_TRY(r.expect_end());
  return s;
}

Result<LeafSet> decode_leaf_set(ByteView bytes) {
  Reader r(bytes, "leaf set");
  SWL_TRY(r.preamble(kPageSetVersion, kMaxLeafSetBytes));
  LeafSet s;
  SWL_ASSIGN(s.head, read_head(r, "head"));
  SWL_ASSIGN(s.pgnos, read_pgnos(r, kMaxLeavesPerRequest, s.head.page_count, 32));
  s.leaves.resize(s.pgnos.size());
  for (Hash32& h : s.leaves) {
    SWL_ASSIGN(h, r.hash("leaf"));
  }
  SWL_ASSIGN(s.proof, read_proof(r, s.pgnos, s.head.page_count));
  SWL_TRY(r.expect_end());
  return s;
}

Result<std::vector<uint32_t>> parse_page_list(std::string_view text, size_t max) {
  constexpr size_t kMaxText = 64 << 10;
  if (text.empty()) return make_error(Errc::invalid_argument, "the page list is empty");
  if (text.size() > kMaxText)
    return make_error(Errc::invalid_argument, "the page list is {} bytes, over the cap of {}",
                      text.size(), kMaxText);
  auto number = [](std::string_view item, std::string_view part) -> Result<uint32_t> {
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size() || v == 0)
      return make_error(Errc::invalid_argument,
                        "page list item \"{}\": \"{}\" is not a page number (1..4294967295)", item,
                        part);
    return v;
  };
  // Ranges first, checked and counted, then expanded: a list of a few bytes
  // cannot make the server allocate more than `max` numbers.
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  uint64_t total = 0;
  for (size_t i = 0; i <= text.size();) {
    const size_t comma = std::min(text.find(',', i), text.size());
    const std::string_view item = text.substr(i, comma - i);
    i = comma + 1;
    const size_t dash = item.find('-');
    SWL_ASSIGN(uint32_t a, number(item, item.substr(0, dash)));
    uint32_t b = a;
    if (dash != std::string_view::npos) {
      SWL_ASSIGN(b, number(item, item.substr(dash + 1)));
    }
    if (b < a)
      return make_error(Errc::invalid_argument, "page list item \"{}\": the range ends before it starts",
                        item);
    if (!ranges.empty() && a <= ranges.back().second)
      return make_error(Errc::invalid_argument,
                        "page list item \"{}\" does not follow page {}: pages must be strictly "
                        "increasing",
                        item, ranges.back().second);
    total += uint64_t{b} - a + 1;
    if (total > max)
      return make_error(Errc::invalid_argument, "the page list names over {} pages, the cap", max);
    ranges.emplace_back(a, b);
  }
  std::vector<uint32_t> out;
  out.reserve(static_cast<size_t>(total));
  for (auto [a, b] : ranges)
    for (uint64_t p = a; p <= b; ++p) out.push_back(static_cast<uint32_t>(p));
  return out;
}

std::string format_page_list(std::span<const uint32_t> pgnos) {
  std::string out;
  for (size_t i = 0; i < pgnos.size();) {
    size_t j = i;
    while (j + 1 < pgnos.size() && pgnos[j + 1] == pgnos[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", pgnos[i]) : fmt::format("{}-{}", pgnos[i], pgnos[j]);
    i = j + 1;
  }
  return out;
}

std::string pgnos_text(std::span<const uint32_t> pgnos) {
  if (pgnos.empty()) return "no pages";
  if (pgnos.size() == 1) return fmt::format("page {}", pgnos[0]);
  if (pgnos.size() <= 4) return fmt::format("pages {}", fmt::join(pgnos, ", "));
  return fmt::format("{} pages {}..{}", pgnos.size(), pgnos.front(), pgnos.back());
}

Status check_pgnos(std::span<const uint32_t> pgnos, uint32_t page_count, size_t max) {
  if (pgnos.empty() || pgnos.size() > max)
    return make_error(Errc::invalid_argument, "{} page numbers given, 1 to {} allowed",
                      pgnos.size(), max);
  for (size_t i = 0; i < pgnos.size(); ++i) {
    if (pgnos[i] == 0 || pgnos[i] > page_count)
      return make_error(Errc::invalid_argument,
                        "page number {} (at {}) is outside the head's pages 1..{}", pgnos[i], i,
                        page_count);
    if (i > 0 && pgnos[i] <= pgnos[i - 1])
      return make_error(Errc::invalid_argument,
                        "page number {} (at {}) does not follow {}: page numbers must be strictly "
                        "increasing",
                        pgnos[i], i, pgnos[i - 1]);
  }
  return ok_status();
}

std::vector<uint64_t> pgno_indices(std::span<const uint32_t> pgnos) {
  std::vector<uint64_t> out(pgnos.size());
  for (size_t i = 0; i < pgnos.size(); ++i) out[i] = uint64_t{pgnos[i]} - 1;
  return out;
}

Status verify_page_set(const PageSet& set, const Head& trusted, size_t max_pages) {
  constexpr std::string_view what = "pages";
  SWL_TRY(check_head(set.head, trusted, what, set.pgnos));
  SWL_TRY(check_answer_pgnos(set.pgnos, set.pages.size(), trusted, max_pages, what));
  if (!valid_page_size(set.page_size))
    return make_error(Errc::proof_failed,
                      "pages of {} at size {}: page size {} is not a power of two in 512..65536",
                      pgnos_text(set.pgnos), trusted.size, set.page_size);
  const uint32_t lock_page = lock_byte_page(set.page_size);
  std::vector<Hash32> leaves(set.pgnos.size());
  std::vector<PageLeafJob> jobs;  // hashed together once all sizes are checked
  jobs.reserve(set.pgnos.size());
  for (size_t i = 0; i < set.pgnos.size(); ++i) {
    const uint32_t pgno = set.pgnos[i];
    const Bytes& page = set.pages[i];
    if (page.size() != set.page_size)
      return make_error(Errc::proof_failed, "page {} at size {}: {} bytes, the page size is {}",
                        pgno, trusted.size, page.size(), set.page_size);
    if (pgno == lock_page) {
      // docs/formats/state-tree.md "The lock-byte page": its leaf is fixed and
      // only zeros are accepted for its bytes.
      if (std::any_of(page.begin(), page.end(), [](uint8_t b) { return b != 0; }))
        return make_error(Errc::proof_failed,
                          "page {} at size {} is the lock-byte page and must be all zeros", pgno,
                          trusted.size);
      leaves[i] = lock_byte_leaf(set.page_size);
    } else {
      jobs.push_back({pgno, page, &leaves[i]});
    }
  }
  page_leaf_hashes(jobs);
  return check_proof(set.proof, set.pgnos, leaves, trusted, what);
}

Status verify_leaf_set(const LeafSet& set, const Head& trusted) {
  constexpr std::string_view what = "leaf hashes";
  SWL_TRY(check_head(set.head, trusted, what, set.pgnos));
  SWL_TRY(
      check_answer_pgnos(set.pgnos, set.leaves.size(), trusted, kMaxLeavesPerRequest, what));
  return check_proof(set.proof, set.pgnos, set.leaves, trusted, what);
}

// --- Change sets (docs/formats/pages.md "Change set") ------------------------

namespace {

// The root of a tree of `size` leaves from the leaves at `pgnos` (all <= size)
// and the shared siblings; the empty root for size 0 (no leaves, no siblings).
Result<Hash32> change_root(std::span<const uint32_t> pgnos, std::span<const Hash32> leaves,
                           uint64_t size, std::span<const Hash32> siblings) {
  if (size == 0) {
    if (!pgnos.empty() || !siblings.empty())
      return make_error(Errc::proof_failed,
                        "an empty tree has no leaves or siblings, got {} and {}", pgnos.size(),
                        siblings.size());
    return empty_root();
  }
  return root_from_multiproof(pgno_indices(pgnos), leaves, size, siblings);
}

}  // namespace

Status verify_change_set(const ChangeSet& set, const Head& trusted_old, const Head& trusted_new) {
  const uint64_t m = trusted_old.page_count, n = trusted_new.page_count;
  auto fail = [&](std::string_view why) {
    return make_error(Errc::proof_failed, "changes from size {} to {}: {}", trusted_old.size,
                      trusted_new.size, why);
  };
  if (encode_head(set.to) != encode_head(trusted_new))
    return fail(
        fmt::format("they are for the head at size {} (state root {}), not the accepted one",
                    set.to.size, to_hex(set.to.state_root)));
  if (set.from_size != trusted_old.size)
    return fail(fmt::format("they start at size {}, not at the trusted head's", set.from_size));
  if (trusted_new.size < trusted_old.size) return fail("the new head is older than the old one");
  if (set.pgnos.size() > kMaxChangedPages)
    return fail(fmt::format("{} pages, over the cap of {}", set.pgnos.size(), kMaxChangedPages));
  const uint64_t k = std::min(m, n), top = std::max(m, n);
  for (size_t i = 0; i < set.pgnos.size(); ++i) {
    if (set.pgnos[i] == 0 || set.pgnos[i] > top)
      return fail(fmt::format("page {} is outside 1..{}", set.pgnos[i], top));
    if (i > 0 && set.pgnos[i] <= set.pgnos[i - 1])
      return fail(fmt::format("page {} does not follow {}: not strictly increasing", set.pgnos[i],
                              set.pgnos[i - 1]));
  }
  // Page k and all of k+1..top must be named (see page_set.h): the pages at
  // and above k, counted, must be exactly top - k + 1 (or none when k = top = 0).
  const auto from_k =
      std::lower_bound(set.pgnos.begin(), set.pgnos.end(), std::max<uint64_t>(k, 1));
  const uint64_t need = k == 0 ? top : top - k + 1;
  if (static_cast<uint64_t>(set.pgnos.end() - from_k) != need || (k > 0 && *from_k != k))
    return fail(
        fmt::format("page {} and every page above it up to {} must be named ({} of them are)", k,
                    top, set.pgnos.end() - from_k));
  const size_t old_n = std::upper_bound(set.pgnos.begin(), set.pgnos.end(), m) - set.pgnos.begin();
  const size_t new_n = std::upper_bound(set.pgnos.begin(), set.pgnos.end(), n) - set.pgnos.begin();
  if (set.old_leaves.size() != old_n || set.new_leaves.size() != new_n)
    return fail(fmt::format("{} old and {} new leaves, the pages need {} and {}",
                            set.old_leaves.size(), set.new_leaves.size(), old_n, new_n));
  const std::span<const uint32_t> pgnos(set.pgnos);
  auto old_root = change_root(pgnos.first(old_n), set.old_leaves, m, set.siblings);
  if (!old_root.ok())
    return make_error(old_root.error().code, "changes from size {} to {}: the old tree of {}: {}",
                      trusted_old.size, trusted_new.size, m, old_root.error().message);
  if (*old_root != trusted_old.state_root)
    return make_error(Errc::root_mismatch,
                      "changes from size {} to {}: the old leaves of {} and the siblings give "
                      "state root {}, the trusted head has {}",
                      trusted_old.size, trusted_new.size, pgnos_text(pgnos), to_hex(*old_root),
                      to_hex(trusted_old.state_root));
  auto new_root = change_root(pgnos.first(new_n), set.new_leaves, n, set.siblings);
  if (!new_root.ok())
    return make_error(new_root.error().code, "changes from size {} to {}: the new tree of {}: {}",
                      trusted_old.size, trusted_new.size, n, new_root.error().message);
  if (*new_root != trusted_new.state_root)
    return make_error(Errc::root_mismatch,
                      "changes from size {} to {}: the new leaves of {} and the same siblings give "
                      "state root {}, the new head has {}",
                      trusted_old.size, trusted_new.size, pgnos_text(pgnos), to_hex(*new_root),
                      to_hex(trusted_new.state_root));
  return ok_status();
}

std::vector<uint32_t> changed_pages(const ChangeSet& set, uint32_t old_page_count) {
  std::vector<uint32_t> out;
  const uint32_t n = set.to.page_count;
  for (size_t i = 0; i < set.pgnos.size(); ++i) {
    const uint32_t p = set.pgnos[i];
    const bool same = p <= old_page_count && p <= n && i < set.old_leaves.size() &&
                      i < set.new_leaves.size() && set.old_leaves[i] == set.new_leaves[i];
    if (!same) out.push_back(p);
  }
  return out;
}

Result<ChangeSet> build_change_set(const MerkleTree& tree, const Head& to, uint64_t from_size,
                                   uint32_t old_page_count,
                                   const std::vector<std::pair<uint32_t, Hash32>>& old_leaves) {
  const uint32_t m = old_page_count, n = to.page_count;
  if (tree.size() != n)
    return make_error(Errc::internal,
                      "changes to size {}: the tree has {} leaves, the head {} pages", to.size,
                      tree.size(), n);
  const uint32_t k = std::min(m, n), top = std::max(m, n);
  if (uint64_t{top} - k + 1 > kMaxChangedPages)
    return make_error(Errc::too_large,
                      "changes from size {} to {}: the database went from {} to {} pages, over "
                      "the cap of {} changed pages: ask for leaves",
                      from_size, to.size, m, n, kMaxChangedPages);
  std::map<uint32_t, Hash32> old;  // pgno <= m -> leaf at the old head
  for (const auto& [p, leaf] : old_leaves)
    if (p >= 1 && p <= m) old.emplace(p, leaf);
  ChangeSet set;
  set.from_size = from_size;
  set.to = to;
  for (const auto& [p, leaf] : old) {
    if (p >= k) break;
    if (leaf == tree.leaf(p - 1)) continue;  // written back to what it was
    set.pgnos.push_back(p);
    if (set.pgnos.size() + (top - k + 1) > kMaxChangedPages)
      return make_error(Errc::too_large,
                        "changes from size {} to {}: over the cap of {} changed pages: ask for "
                        "leaves",
                        from_size, to.size, kMaxChangedPages);
  }
  for (uint64_t p = std::max<uint32_t>(k, 1); p <= top && top > 0; ++p)
    set.pgnos.push_back(static_cast<uint32_t>(p));
  for (uint32_t p : set.pgnos) {
    if (p <= m) {
      // Untouched pages (page k, or any page the history did not name) kept their leaf.
      auto it = old.find(p);
      if (it != old.end()) {
        set.old_leaves.push_back(it->second);
      } else if (p <= n) {
        set.old_leaves.push_back(tree.leaf(p - 1));
      } else {
        return make_error(Errc::internal,
                          "changes from size {} to {}: page {} was cut but its old leaf is not "
                          "in the history",
                          from_size, to.size, p);
      }
    }
    if (p <= n) set.new_leaves.push_back(tree.leaf(p - 1));
  }
  if (n > 0) {
    const size_t new_n = set.new_leaves.size();
    SWL_ASSIGN(set.siblings,
               tree.multiproof(pgno_indices(std::span<const uint32_t>(set.pgnos).first(new_n))));
  }
  return set;
}

Bytes encode_changes_request(const ChangesRequest& r) {
  Writer w;
  w.u8(kPageSetVersion);
  w.u64(r.from_size);
  w.u64(r.to_size);
  return w.take();
}

Result<ChangesRequest> decode_changes_request(ByteView bytes) {
  Reader r(bytes, "changes request");
  SWL_TRY(r.preamble(kPageSetVersion, kChangesRequestBytes));
  ChangesRequest q;
  SWL_ASSIGN(q.from_size, r.u64("from_size"));
  const size_t at = r.offset();
  SWL_ASSIGN(q.to_size, r.u64("to_size"));
  if (q.to_size != 0 && q.to_size < q.from_size)
    return r.fail_at(Errc::bad_value, at, "to_size",
                     fmt::format("{} is below from_size {}", q.to_size, q.from_size));
  SWL_TRY(r.expect_end());
  return q;
}

Bytes encode_change_set(const ChangeSet& s) {
  Writer w;
  w.u8(kPageSetVersion);
  w.u64(s.from_size);
  w.raw(encode_head(s.to));
  w.u32(static_cast<uint32_t>(s.pgnos.size()));
  for (uint32_t p : s.pgnos) w.u32(p);
  w.u32(static_cast<uint32_t>(s.old_leaves.size()));
  for (const Hash32& h : s.old_leaves) w.hash(h);
  w.u32(static_cast<uint32_t>(s.new_leaves.size()));
  for (const Hash32& h : s.new_leaves) w.hash(h);
  write_hash_list(w, s.siblings);
  return w.take();
}

Result<ChangeSet> decode_change_set(ByteView bytes) {
  Reader r(bytes, "change set");
  SWL_TRY(r.preamble(kPageSetVersion, kMaxChangeSetBytes));
  ChangeSet s;
  SWL_ASSIGN(s.from_size, r.u64("from_size"));
  SWL_ASSIGN(s.to, read_head(r, "head"));
  if (s.from_size > s.to.size)
    return r.fail_at(Errc::bad_value, 1, "from_size",
                     fmt::format("{} is above the new head's size {}", s.from_size, s.to.size));
  SWL_ASSIGN(s.pgnos, read_pgnos(r, kMaxChangedPages, UINT32_MAX, 0));
  auto leaves = [&](std::string_view field, std::vector<Hash32>& out) -> Status {
    SWL_ASSIGN(size_t c, r.count(field, s.pgnos.size(), 32));
    SWL_ASSIGN(out, read_hashes(r, field, c));
    return ok_status();
  };
  const size_t old_at = r.offset();
  SWL_TRY(leaves("old_count", s.old_leaves));
  const size_t new_at = r.offset();
  SWL_TRY(leaves("new_count", s.new_leaves));
  const size_t new_n =
      std::upper_bound(s.pgnos.begin(), s.pgnos.end(), s.to.page_count) - s.pgnos.begin();
  if (s.new_leaves.size() != new_n)
    return r.fail_at(Errc::bad_value, new_at, "new_count",
                     fmt::format("{}, the pages up to the head's {} are {}", s.new_leaves.size(),
                                 s.to.page_count, new_n));
  if (s.old_leaves.size() != s.pgnos.size() && s.new_leaves.size() != s.pgnos.size())
    return r.fail_at(Errc::bad_value, old_at, "old_count",
                     fmt::format("{} old and {} new leaves for {} pages: one size holds them all",
                                 s.old_leaves.size(), s.new_leaves.size(), s.pgnos.size()));
  SWL_ASSIGN(s.siblings, read_hash_list(r, "siblings", max_page_multiproof_hashes(s.pgnos.size())));
  SWL_TRY(r.expect_end());
  return s;
}

}  // namespace swarmlite
