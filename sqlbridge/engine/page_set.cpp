// Checks of page and leaf sets (page_set.h; docs/light-client.md "Page service").
#include "sqlbridge/engine/page_set.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdint>

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

Status verify_page_set(const PageSet& set, const Head& trusted) {
  constexpr std::string_view what = "pages";
  SWL_TRY(check_head(set.head, trusted, what, set.pgnos));
  SWL_TRY(check_answer_pgnos(set.pgnos, set.pages.size(), trusted, kMaxPagesPerRequest, what));
  if (!valid_page_size(set.page_size))
    return make_error(Errc::proof_failed,
                      "pages of {} at size {}: page size {} is not a power of two in 512..65536",
                      pgnos_text(set.pgnos), trusted.size, set.page_size);
  const uint32_t lock_page = lock_byte_page(set.page_size);
  std::vector<Hash32> leaves(set.pgnos.size());
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
      leaves[i] = page_leaf_hash(pgno, page);
    }
  }
  return check_proof(set.proof, set.pgnos, leaves, trusted, what);
}

Status verify_leaf_set(const LeafSet& set, const Head& trusted) {
  constexpr std::string_view what = "leaf hashes";
  SWL_TRY(check_head(set.head, trusted, what, set.pgnos));
  SWL_TRY(
      check_answer_pgnos(set.pgnos, set.leaves.size(), trusted, kMaxLeavesPerRequest, what));
  return check_proof(set.proof, set.pgnos, set.leaves, trusted, what);
}

}  // namespace swarmlite
