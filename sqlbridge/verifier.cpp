#include "sqlbridge/verifier.h"

#include "core/merkle.h"
#include "sqlbridge/proof_vfs.h"
#include "sqlbridge/state_tree.h"

namespace swarmlite {

namespace {

Status check_query(const QueryProof& proof, const VerifyOptions& options) {
  if (options.expected_sql && *options.expected_sql != proof.sql) {
    return make_error(Errc::proof_failed,
                      "the proof answers a different query: asked \"{}\", proof holds \"{}\"",
                      *options.expected_sql, proof.sql);
  }
  if (options.expected_params && *options.expected_params != proof.params) {
    return make_error(Errc::proof_failed,
                      "the proof answers the query with different parameters ({} asked, {} in "
                      "the proof, or values differ)",
                      options.expected_params->size(), proof.params.size());
  }
  return ok_status();
}

Status check_freshness(const Head& head, const VerifyOptions& options) {
  if (head.size < options.min_size) {
    return make_error(Errc::unavailable, "stale head: log size {} is below min_size {}",
                      head.size, options.min_size);
  }
  if (options.max_age) {
    int64_t now = options.now_ms.value_or(
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    int64_t age = now - head.time_ms;
    if (age > options.max_age->count()) {
      return make_error(Errc::unavailable,
                        "stale head: signed {} ms ago (at {}), over the max age of {} ms", age,
                        head.time_ms, options.max_age->count());
    }
  }
  return ok_status();
}

Status check_shape(const QueryProof& proof) {
  if (!is_valid_page_size(proof.page_size)) {
    return make_error(Errc::proof_failed, "page size {} is not a power of two in [{}, {}]",
                      proof.page_size, kMinPageSize, kMaxPageSize);
  }
  if (proof.pages.empty()) {
    return make_error(Errc::proof_failed, "the proof holds no pages (page 1 is always needed)");
  }
  uint32_t prev = 0;
  for (size_t i = 0; i < proof.pages.size(); ++i) {
    const ProvenPage& p = proof.pages[i];
    if (auto why = page_order_problem(prev, p.pgno, proof.head.page_count)) {
      return make_error(Errc::proof_failed, "page #{} of the proof: {}", i, *why);
    }
    if (p.bytes.size() != proof.page_size) {
      return make_error(Errc::proof_failed, "page {} has {} bytes, the page size is {}", p.pgno,
                        p.bytes.size(), proof.page_size);
    }
    prev = p.pgno;
  }
  if (auto why = page1_problem(proof.pages.front().bytes, proof.page_size)) {
    return make_error(Errc::proof_failed, "page 1: {}", *why);
  }
  return ok_status();
}

Status check_pages(const QueryProof& proof) {
  std::vector<uint64_t> indices;
  std::vector<Hash32> leaves;
  indices.reserve(proof.pages.size());
  leaves.reserve(proof.pages.size());
  for (const ProvenPage& p : proof.pages) {
    indices.push_back(p.pgno - 1);
    leaves.push_back(page_leaf_hash(p.pgno, p.bytes));
  }
  Status s = verify_multiproof(indices, leaves, proof.head.page_count, proof.multiproof,
                               proof.head.state_root);
  if (!s.ok()) {
    return make_error(s.error().code,
                      "the proof's {} pages do not prove the head's state (size {}): {}",
                      proof.pages.size(), proof.head.size, s.error().message);
  }
  return ok_status();
}

Result<QueryResult> rerun(const QueryProof& proof, const VerifyOptions& options) {
  std::vector<std::pair<uint32_t, ByteView>> views;
  views.reserve(proof.pages.size());
  for (const ProvenPage& p : proof.pages) views.emplace_back(p.pgno, p.bytes);
  ProofImage image(proof.page_size, proof.head.page_count, std::move(views));
  Result<QueryResult> result = make_error(Errc::internal, "not run");
  {
    SWL_ASSIGN(auto conn, GuardedConnection::open(image.uri(), options.guard));
    result = conn->query(proof.sql, proof.params);
  }
  // Checked even on success: a read that failed must never go unnoticed.
  std::vector<uint32_t> missing = image.missing_pages();
  if (!missing.empty()) {
    return make_error(Errc::proof_failed, "page {} was read but is not in the proof{}",
                      missing.front(),
                      missing.size() > 1 ? fmt::format(" ({} such pages)", missing.size()) : "");
  }
  if (!result.ok()) {
    return make_error(result.error().code, "re-running the proven query: {}",
                      result.error().message);
  }
  return result;
}

}  // namespace

Result<VerifiedResult> Verifier::verify(const PublicKey& log_id, const QueryProof& proof,
                                        const VerifyOptions& options) {
  SWL_TRY(check_query(proof, options));
  SWL_TRY(proof.head.verify(log_id));
  SWL_TRY(check_freshness(proof.head, options));
  SWL_TRY(check_shape(proof));
  SWL_TRY(check_pages(proof));
  SWL_ASSIGN(QueryResult result, rerun(proof, options));
  return VerifiedResult{proof.head, std::move(result), proof.pages.size()};
}

Result<VerifiedResult> Verifier::verify_bytes(const PublicKey& log_id, ByteView bytes,
                                              const VerifyOptions& options) {
  SWL_ASSIGN(QueryProof proof, decode_query_proof(bytes, options.limits));
  return verify(log_id, proof, options);
}

}  // namespace swarmlite
