#include "sqlbridge/prover.h"

#include "core/merkle.h"
#include "sqlbridge/page_vfs.h"

namespace swarmlite {

Result<ProvedQuery> prove_query(const std::filesystem::path& db_path, const StateTree& tree,
                                const Head& head, std::string_view sql,
                                const std::vector<Value>& params, const ProveOptions& options) {
  if (tree.page_count() != head.page_count || tree.root() != head.state_root) {
    return make_error(Errc::invalid_argument,
                      "proving on {}: the state tree ({} pages, root {}) is not the head's "
                      "state ({} pages, root {})",
                      db_path.string(), tree.page_count(), to_hex(tree.root()), head.page_count,
                      to_hex(head.state_root));
  }

  ProvedQuery out;
  ReadCapture capture;
  capture.set_keep_bytes(true);
  {
    // Fresh connection: nothing cached, so every page the query needs is read and captured.
    SWL_ASSIGN(auto conn, GuardedConnection::open(page_vfs_uri(db_path, nullptr, &capture, true),
                                                  options.guard));
    SWL_ASSIGN(out.result, conn->query(sql, params));
  }  // closed before the capture goes away

  PageMap pages = capture.page_bytes();
  std::set<uint32_t> read = capture.pages();
  // Every reader reads page 1's header when it opens the database; a query that
  // touches no table (SELECT 1) reads no more of it. Take page 1 from the file
  // then: the leaf check below still ties it to the head's state.
  read.insert(1);
  // SQLite never reads the lock-byte page; should a read capture ever report
  // it, a proof still never needs it: the proof VFS serves it as zeros.
  read.erase(lock_byte_page(tree.page_size()));
  if (!pages.contains(1)) {
    SWL_ASSIGN(LogicalPages logical, LogicalPages::open(db_path));
    SWL_TRY(logical.read(1, pages[1]));
  }
  QueryProof& proof = out.proof;
  proof.head = head;
  proof.sql = std::string(sql);
  proof.params = params;
  proof.pages.reserve(read.size());
  for (uint32_t pgno : read) {
    if (pgno == 0 || pgno > head.page_count) {
      return make_error(Errc::unavailable,
                        "proving on {}: the query read page {}, beyond the head's {} pages: the "
                        "database is not at the head's state (retry)",
                        db_path.string(), pgno, head.page_count);
    }
    auto it = pages.find(pgno);
    if (it == pages.end()) {
      return make_error(Errc::internal, "proving on {}: page {} was read but never in full",
                        db_path.string(), pgno);
    }
    Bytes bytes = pgno == 1 ? normalize_page(1, it->second) : std::move(it->second);
    if (page_leaf_hash(pgno, bytes) != tree.tree().leaf(pgno - 1)) {
      // The caller holds its apply/write lock (prover.h), so nothing of ours
      // wrote the file since the tree was updated: it was changed outside.
      return make_error(Errc::corrupt,
                        "proving on {}: page {} of the database file differs from the state "
                        "tree: the file was changed outside swarmlite (or by the disk)",
                        db_path.string(), pgno);
    }
    proof.pages.push_back(ProvenPage{pgno, std::move(bytes)});
  }
  if (proof.pages.empty() || proof.pages.front().pgno != 1) {
    return make_error(Errc::internal, "proving on {}: the query did not read page 1",
                      db_path.string());
  }
  SWL_ASSIGN(proof.page_size, page_size_from_header(proof.pages.front().bytes));
  std::vector<uint64_t> indices;
  indices.reserve(proof.pages.size());
  for (const ProvenPage& p : proof.pages) {
    if (p.bytes.size() != proof.page_size) {
      return make_error(Errc::internal, "proving on {}: page {} has {} bytes, page size is {}",
                        db_path.string(), p.pgno, p.bytes.size(), proof.page_size);
    }
    indices.push_back(p.pgno - 1);
  }
  SWL_ASSIGN(proof.multiproof, tree.tree().multiproof(indices));

  out.encoded = encode_query_proof(proof);
  if (out.encoded.size() > options.limits.max_proof_bytes) {
    return make_error(Errc::too_large,
                      "the proof for this query has {} bytes ({} pages), over the cap of {}",
                      out.encoded.size(), proof.pages.size(), options.limits.max_proof_bytes);
  }
  return out;
}

}  // namespace swarmlite
