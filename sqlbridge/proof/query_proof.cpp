// Query proof codec (docs/formats/query-proof.md).
#include "sqlbridge/proof/query_proof.h"

#include <algorithm>

#include "core/codec.h"
#include "core/merkle.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {

namespace {

constexpr size_t kPageHeaderBytes = 4;  // the pgno before each page's bytes

EntryLimits statement_limits(const QueryProofLimits& limits) {
  EntryLimits e;
  e.max_sql_bytes = limits.max_sql_bytes;
  e.max_params = limits.max_params;
  e.max_value_bytes = limits.max_value_bytes;
  e.max_total_params = limits.max_params;
  return e;
}

}  // namespace

bool is_valid_page_size(uint32_t page_size) {
  return page_size >= kMinPageSize && page_size <= kMaxPageSize &&
         (page_size & (page_size - 1)) == 0;
}

Result<uint32_t> page_size_from_header(ByteView page1) {
  if (page1.size() < 100) {
    return make_error(Errc::bad_value, "page 1 has {} bytes, shorter than the 100-byte header",
                      page1.size());
  }
  uint32_t raw = uint32_t{page1[16]} << 8 | page1[17];
  uint32_t size = raw == 1 ? 65536 : raw;
  if (!is_valid_page_size(size)) {
    return make_error(Errc::bad_value, "page 1 header bytes 16-17 hold page size {}, not a power "
                      "of two in [512, 65536]", raw);
  }
  return size;
}

std::optional<std::string> page_order_problem(uint32_t prev_pgno, uint32_t pgno,
                                              uint32_t page_count) {
  if (pgno == 0) return "page number 0 (pages are numbered from 1)";
  if (prev_pgno == 0 && pgno != 1) {
    return fmt::format("first page is {}: page 1 (the database header) must come first", pgno);
  }
  if (pgno <= prev_pgno) {
    return fmt::format("page {} follows page {}: pages must be strictly increasing "
                       "(no duplicates)", pgno, prev_pgno);
  }
  if (pgno > page_count) {
    return fmt::format("page {} is beyond the head's page count {}", pgno, page_count);
  }
  return std::nullopt;
}

std::optional<std::string> page1_problem(ByteView page1, uint32_t page_size) {
  auto header_size = page_size_from_header(page1);
  if (!header_size.ok()) return header_size.error().message;
  if (*header_size != page_size) {
    return fmt::format("page 1's header says page size {}, the proof says {}", *header_size,
                       page_size);
  }
  if (normalize_page(1, page1) != Bytes(page1.begin(), page1.end())) {
    return std::string("page 1 is not normalised (header bytes 18-19, 24-27 and 92-99 must be "
                       "zero)");
  }
  return std::nullopt;
}

Bytes encode_query_proof(const QueryProof& proof) {
  Writer w;
  w.u8(kQueryProofVersion);
  w.raw(encode_head(proof.head));
  write_statement(w, Statement{proof.sql, proof.params});
  w.u32(proof.page_size);
  w.u32(static_cast<uint32_t>(proof.pages.size()));
  for (const ProvenPage& p : proof.pages) {
    assert(p.bytes.size() == proof.page_size);
    w.u32(p.pgno);
    w.raw(p.bytes);
  }
  write_hash_list(w, proof.multiproof);
  return w.take();
}

Result<QueryProof> decode_query_proof(ByteView bytes, const QueryProofLimits& limits) {
  Reader r(bytes, "query proof");
  SWL_TRY(r.preamble(kQueryProofVersion, limits.max_proof_bytes));
  QueryProof p;
  SWL_ASSIGN(p.head, read_head(r, "head"));

  // SQL and params in the entry's statement form; 8 bytes must follow (page size, page count).
  SWL_ASSIGN(Statement st, read_statement(r, statement_limits(limits), 8));
  p.sql = std::move(st.sql);
  p.params = std::move(st.params);

  const size_t page_size_at = r.offset();
  SWL_ASSIGN(p.page_size, r.u32("page size"));
  if (!is_valid_page_size(p.page_size)) {
    return r.fail_at(Errc::bad_value, page_size_at, "page size",
                     fmt::format("{} is not a power of two in [{}, {}]", p.page_size,
                                 kMinPageSize, kMaxPageSize));
  }
  const size_t count_at = r.offset();
  SWL_ASSIGN(size_t count, r.count("page count", limits.max_pages));
  if (count == 0) {
    return r.fail_at(Errc::bad_value, count_at, "page count", "a proof holds at least page 1");
  }
  const uint64_t need = uint64_t{count} * (kPageHeaderBytes + p.page_size) + 4;
  if (need > r.remaining()) {
    return r.fail_at(Errc::truncated, count_at, "page count",
                     fmt::format("{} page(s) of {} bytes need {} bytes, {} left", count,
                                 p.page_size, need, r.remaining()));
  }
  p.pages.reserve(count);
  uint32_t prev = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t at = r.offset();
    SWL_ASSIGN(uint32_t pgno, r.u32("pgno"));
    if (auto why = page_order_problem(prev, pgno, p.head.page_count)) {
      return r.fail_at(Errc::non_canonical, at, "pgno", *why);
    }
    SWL_ASSIGN(ByteView page, r.raw(p.page_size, "page bytes"));
    if (pgno == 1) {
      if (auto why = page1_problem(page, p.page_size)) {
        return r.fail_at(Errc::non_canonical, at + kPageHeaderBytes, "page 1", *why);
      }
    }
    p.pages.push_back(ProvenPage{pgno, Bytes(page.begin(), page.end())});
    prev = pgno;
  }

  std::vector<uint64_t> indices;
  indices.reserve(p.pages.size());
  for (const ProvenPage& pg : p.pages) indices.push_back(pg.pgno - 1);
  SWL_ASSIGN(size_t want, multiproof_size(indices, p.head.page_count));
  const size_t hashes_at = r.offset();
  SWL_ASSIGN(p.multiproof, read_hash_list(r, "multiproof", want));
  if (p.multiproof.size() != want) {
    return r.fail_at(Errc::bad_value, hashes_at, "multiproof",
                     fmt::format("{} hash(es), the {} page(s) of a {}-page tree need {}",
                                 p.multiproof.size(), p.pages.size(), p.head.page_count, want));
  }
  SWL_TRY(r.expect_end());
  return p;
}

}  // namespace swarmlite
