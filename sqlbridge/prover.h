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

#include <filesystem>
#include <string_view>
#include <vector>

#include "core/head.h"
#include "sqlbridge/query_proof.h"
#include "sqlbridge/read_guard.h"
#include "sqlbridge/state_tree.h"

namespace swarmlite {

struct ProveOptions {
  ReadGuardOptions guard;   // limits for running the query
  QueryProofLimits limits;  // a proof over limits.max_proof_bytes is refused (too_large)
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

}  // namespace swarmlite
