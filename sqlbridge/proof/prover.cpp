#include "sqlbridge/proof/prover.h"

#include "core/merkle.h"
#include "sqlbridge/engine/determinism.h"
#include "sqlbridge/engine/page_vfs.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {

namespace {
// Checks each page read against the tree's leaf and packs the proof into `out`.
Status pack_proof(const std::filesystem::path& db_path, const StateTree& tree, const Head& head,
                  std::string_view sql, const std::vector<Value>& params,
                  const std::set<uint32_t>& read, PageMap& pages, const QueryProofLimits& limits,
                  ProvedQuery& out);
}  // namespace

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
  SWL_TRY(pack_proof(db_path, tree, head, sql, params, read, pages, options.limits, out));
  return out;
}

namespace {
Status pack_proof(const std::filesystem::path& db_path, const StateTree& tree, const Head& head,
                  std::string_view sql, const std::vector<Value>& params,
                  const std::set<uint32_t>& read, PageMap& pages, const QueryProofLimits& limits,
                  ProvedQuery& out) {
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
  if (out.encoded.size() > limits.max_proof_bytes) {
    return make_error(Errc::too_large,
                      "the proof for this query has {} bytes ({} pages), over the cap of {}",
                      out.encoded.size(), proof.pages.size(), limits.max_proof_bytes);
  }
  return ok_status();
}
}  // namespace

// --- PinnedProver ---------------------------------------------------------------

struct PinnedProver::Slot {
  ReadCapture capture;
  std::unique_ptr<GuardedConnection> conn;
  std::set<uint32_t> base_pages;  // read when the transaction began (schema, sqlite_swarmlite)
  PageMap base_bytes;
};

Result<std::unique_ptr<PinnedProver>> PinnedProver::open(const std::filesystem::path& db_path,
                                                         std::shared_ptr<const StateTree> tree,
                                                         const Head& head, size_t connections,
                                                         const ReadGuardOptions& guard) {
  if (!tree || tree->page_count() != head.page_count || tree->root() != head.state_root) {
    return make_error(Errc::invalid_argument,
                      "pinning {} for proofs: the state tree is not the head's state (size {})",
                      db_path.string(), head.size);
  }
  std::unique_ptr<PinnedProver> p(new PinnedProver());
  p->db_path_ = db_path;
  p->tree_ = std::move(tree);
  p->head_ = head;
  for (size_t i = 0; i < std::max<size_t>(1, connections); ++i) {
    auto slot = std::make_unique<Slot>();
    slot->capture.set_keep_bytes(true);
    SWL_ASSIGN(slot->conn, GuardedConnection::open(
                               page_vfs_uri(db_path, nullptr, &slot->capture, true), guard));
    {
      GuardedConnection::TrustedScope trusted(*slot->conn);
      SWL_TRY(exec_sql(slot->conn->handle(), "BEGIN"));
      // The first read fixes the WAL snapshot: it must be the head's state.
      auto size = read_applied_size(slot->conn->handle());
      if (!size.ok() || *size != head.size) {
        (void)exec_sql(slot->conn->handle(), "COMMIT");
        if (!size.ok()) return size.take_error();
        return make_error(Errc::unavailable,
                          "pinning {} for proofs: the database is at size {}, not at the head's {}",
                          db_path.string(), *size, head.size);
      }
    }
    slot->base_pages = slot->capture.pages();
    slot->base_bytes = slot->capture.page_bytes();
    p->free_.push_back(std::move(slot));
  }
  p->alive_ = p->free_.size();
  return p;
}

PinnedProver::~PinnedProver() {
  for (auto& slot : free_) slot->conn.reset();  // before the captures go away
}

Result<ProvedQuery> PinnedProver::prove(std::string_view sql, const std::vector<Value>& params,
                                        const ProveOptions& options) {
  std::unique_ptr<Slot> slot;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty() || alive_ == 0; });
    if (free_.empty()) {
      return make_error(Errc::unavailable, "proofs at size {} on {}: no pinned connection left",
                        head_.size, db_path_.string());
    }
    slot = std::move(free_.back());
    free_.pop_back();
  }
  // Give the slot back (or drop it when its read transaction ended) on every path.
  struct Return {
    PinnedProver* self;
    std::unique_ptr<Slot>& slot;
    ~Return() {
      bool alive = slot->conn && !sqlite3_get_autocommit(slot->conn->handle());
      std::lock_guard lock(self->mu_);
      if (alive) {
        self->free_.push_back(std::move(slot));
      } else {
        if (slot->conn) slot->conn.reset();
        --self->alive_;
      }
      self->cv_.notify_one();
    }
  } give_back{this, slot};

  // Drop the page cache so the query's pages are read (and captured) again.
  sqlite3_db_release_memory(slot->conn->handle());
  slot->capture.clear();
  ProvedQuery out;
  SWL_ASSIGN(out.result, slot->conn->query(sql, params));
  if (sqlite3_get_autocommit(slot->conn->handle())) {
    return make_error(Errc::unavailable, "proofs at size {} on {}: the read transaction ended",
                      head_.size, db_path_.string());
  }
  PageMap pages = slot->capture.page_bytes();
  std::set<uint32_t> read = slot->capture.pages();
  for (uint32_t pgno : slot->base_pages) read.insert(pgno);
  for (const auto& [pgno, bytes] : slot->base_bytes) pages.try_emplace(pgno, bytes);
  read.insert(1);
  if (!pages.contains(1)) {
    return make_error(Errc::internal, "proofs at size {} on {}: page 1 was never read in full",
                      head_.size, db_path_.string());
  }
  SWL_TRY(pack_proof(db_path_, *tree_, head_, sql, params, read, pages, options.limits, out));
  return out;
}

}  // namespace swarmlite
