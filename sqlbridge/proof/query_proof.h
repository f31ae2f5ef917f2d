// Query proof (docs/formats/query-proof.md, docs/verified-reads.md):
// what an untrusted peer sends so that a client can compute the answer to a
// read-only query itself and know it is the answer at a state the primary signed.
//   { head, sql, params, page_size, pages [(pgno, bytes)], multiproof }
// It carries no rows: the verifier (verifier.h) computes them by running the
// SQL over the pages. The page count is the head's (head.page_count).
//
// Canonical encoding: one byte string per proof. The decoder checks the whole
// input against max_proof_bytes before reading, every count against the bytes
// that remain before allocating, and rejects truncation, trailing bytes, an
// unknown version, pages not strictly increasing, page 1 missing or not
// normalised, a page beyond the head's page count, a bad page size and a
// multiproof hash count other than the one the pages need — each with its own
// Errc and the offset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/entry.h"
#include "core/head.h"
#include "core/result.h"

namespace swarmlite {

inline constexpr uint8_t kQueryProofVersion = 1;
inline constexpr uint32_t kMinPageSize = 512;
inline constexpr uint32_t kMaxPageSize = 65536;

struct ProvenPage {
  uint32_t pgno = 0;  // 1-based SQLite page number
  Bytes bytes;        // page_size bytes; page 1 normalised (normalize_page)
  friend bool operator==(const ProvenPage&, const ProvenPage&) = default;
};

struct QueryProof {
  Head head;                         // signed; page_count and state_root are what is proven
  std::string sql;                   // the one statement that was run
  std::vector<Value> params;         // bound positionally
  uint32_t page_size = 0;            // power of two in [512, 65536]
  std::vector<ProvenPage> pages;     // strictly increasing pgno, page 1 first
  std::vector<Hash32> multiproof;    // MerkleTree::multiproof(pgno - 1 …) over head.page_count leaves
  friend bool operator==(const QueryProof&, const QueryProof&) = default;
};

struct QueryProofLimits {
  size_t max_proof_bytes = 8 << 20;  // whole encoded proof, checked first
  size_t max_sql_bytes = 1 << 20;
  size_t max_params = 32766;
  size_t max_value_bytes = 1 << 20;  // one text/blob param
  size_t max_pages = 1 << 16;
};

// Precondition: every page is page_size bytes (the prover and decoder ensure it).
Bytes encode_query_proof(const QueryProof& proof);
Result<QueryProof> decode_query_proof(ByteView bytes, const QueryProofLimits& limits = {});

// Page size from page 1's header bytes 16–17 (big-endian; 1 means 65536).
// bad_value when the header holds no valid page size.
Result<uint32_t> page_size_from_header(ByteView page1);
bool is_valid_page_size(uint32_t page_size);

// Shape rules shared by the decoder (which adds offsets) and the verifier
// (which checks proofs built in memory): nullopt when fine, else why not.
// `prev_pgno` is 0 for the first page.
std::optional<std::string> page_order_problem(uint32_t prev_pgno, uint32_t pgno,
                                              uint32_t page_count);
// Page 1 must be normalised and its header's page size must be `page_size`.
std::optional<std::string> page1_problem(ByteView page1, uint32_t page_size);

}  // namespace swarmlite
