// Checks of page and leaf sets (page_set.h; docs/light-client.md "Page service").
#include "sqlbridge/engine/page_set.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

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

}  // namespace

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
