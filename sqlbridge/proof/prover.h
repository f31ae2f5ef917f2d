// The prover (docs/verified-reads.md): runs a read-only query on a peer's own
// database and packs what a client needs to check the answer into a QueryProof.
//
// How: a FRESH read-only connection through the page VFS shim with a
// ReadCapture (a fresh connection has an empty page cache, so the captured set
// is exactly what a fresh reader — the verifier — needs; page 1 included),
// guarded like every outside query (read_guard.h). The capture also keeps each
// page's bytes as that connection's read transaction saw them (main file or WAL
// frame), so the bytes are those of the state the query ran on. Each page is
// checked against the state tree's leaf before the multiproof is built.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "core/head.h"
#include "sqlbridge/proof/query_proof.h"
#include "sqlbridge/proof/read_guard.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {

struct ProveOptions {
  ReadGuardOptions guard;   // limits for running the query
  QueryProofLimits limits;  // a proof over limits.max_proof_bytes is refused (too_large)
  // Replica::prove: the caller wants a head of at least this size; a pinned
  // head below it is replaced now if the replica has applied that far, waiting
  // up to guard.time_limit for the applier to let go (past that it answers
  // below it; not an error here: the caller checks).
  uint64_t min_size = 0;
};

struct ProvedQuery {
  QueryProof proof;
  Bytes encoded;       // encode_query_proof(proof), what goes on the wire
  QueryResult result;  // the rows the peer computed (for a plain answer beside the proof)
};

// Proves `sql` with `params` on the database at `db_path`.
//
// The lock (precondition): for the whole call, the database's committed state
// must be the one `tree` describes and `head` signs — nothing may commit in
// between. On a replica: call it from the applier thread between applies, or
// hold whatever lock keeps the applier out (apply only up to head.size first).
// A page that does not match the tree's leaf makes the call fail, never a bad
// proof: with `corrupt` (naming the page) — under the lock only a writer other
// than the owner can have changed it (Replica latches it: replica.h).
//
// Errors: invalid_argument (tree and head disagree), the query's own errors
// (read_guard.h: refused, too_large, sqlite_error …), unavailable (the query read
// a page beyond the head's page count), corrupt (a page read differs from the
// tree's leaf), too_large (proof over the cap).
Result<ProvedQuery> prove_query(const std::filesystem::path& db_path, const StateTree& tree,
                                const Head& head, std::string_view sql,
                                const std::vector<Value>& params, const ProveOptions& options = {});

// Proofs against one signed head while the database moves on (a replica that
// keeps applying, docs/verified-reads.md "Which head a peer proves against").
//
// open() must be called while the database's committed state is exactly the
// one `tree` describes and `head` signs (the applier between two entries). It
// opens `connections` guarded read-only connections, each in a read transaction
// (WAL snapshot) that sees that state, and copies nothing else: `tree` is the
// caller's copy, kept alive by the shared_ptr. prove() then runs any number of
// queries against that state, `connections` at a time, whatever is applied
// meanwhile.
//
// A pinned read transaction holds WAL frames: checkpoints cannot pass it (see
// snapshot.h). Replace a PinnedProver regularly with a newer one.
//
// How pages are captured without a fresh connection: each connection's page
// cache is released before a query (sqlite3_db_release_memory), so every page
// the query needs is read through the VFS again, except the schema, which stays
// parsed: the pages read when the transaction began (page 1, the schema, the
// sqlite_swarmlite table) go into every proof (a verifier needs the pages it reads;
// a page it does not read costs bytes, nothing else).
class PinnedProver {
 public:
  static Result<std::unique_ptr<PinnedProver>> open(const std::filesystem::path& db_path,
                                                    std::shared_ptr<const StateTree> tree,
                                                    const Head& head, size_t connections,
                                                    const ReadGuardOptions& guard = {});
  ~PinnedProver();
  PinnedProver(const PinnedProver&) = delete;
  PinnedProver& operator=(const PinnedProver&) = delete;

  const Head& head() const { return head_; }
  // The state tree of the pinned head (its leaves are what GetLeaves answers).
  const StateTree& tree() const { return *tree_; }
  // Errors as prove_query; unavailable when every connection was lost (a query
  // ended its read transaction: cannot happen through the guard, checked anyway).
  // `options.guard` is ignored: the connections were opened with open()'s guard.
  Result<ProvedQuery> prove(std::string_view sql, const std::vector<Value>& params,
                            const ProveOptions& options = {});

 private:
  struct Slot;
  PinnedProver() = default;
  std::filesystem::path db_path_;
  std::shared_ptr<const StateTree> tree_;
  Head head_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Slot>> free_;  // guarded by mu_
  size_t alive_ = 0;                          // slots not lost, free or in use (mu_)
};

}  // namespace swarmlite
