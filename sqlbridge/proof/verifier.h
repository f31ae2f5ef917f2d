// The verifier (docs/verified-reads.md): turns a QueryProof from
// an untrusted peer into rows the caller can believe, or an error saying why not.
//
// Steps, in order (each failure has its own message):
//  1. the query is the one asked (expected_sql / expected_params): the Merkle
//     proof covers pages, not SQL, so only this binds the answer to the question;
//  2. the head's signature verifies with the log's public key;
//  3. freshness: head.size >= min_size, head age <= max_age;
//  4. shape: page size, page 1 first and normalised, pages strictly increasing
//     and within head.page_count, every page page_size bytes;
//  5. leaves page_leaf_hash(pgno, bytes) + the multiproof give head.state_root;
//  6. the SQL runs, guarded (read_guard.h), on the proof VFS (proof_vfs.h) that
//     serves only those pages; a read of any other page fails verification
//     ("page N was read but is not in the proof").
// The rows returned are the ones computed in step 6; the proof carries none.
//
// VerifierCache does the same steps for a client that verifies many answers:
// it remembers heads whose signature verified, leaf hashes of pages it has
// hashed, and keeps one proof-VFS connection (with its parsed schema) per state
// root. It accepts exactly what Verifier::verify accepts, with the same rows
// and errors; docs/verified-reads.md ("The verifier cache") argues why.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/head.h"
#include "core/keys.h"
#include "sqlbridge/proof/query_proof.h"
#include "sqlbridge/proof/read_guard.h"

namespace swarmlite {

struct VerifyOptions {
  uint64_t min_size = 0;                            // refuse heads older than this log size
  std::optional<std::chrono::milliseconds> max_age; // refuse heads signed longer ago
  std::optional<int64_t> now_ms;                    // "now" for max_age (default: system clock)
  std::optional<std::string> expected_sql;          // the SQL the client asked
  std::optional<std::vector<Value>> expected_params;
  ReadGuardOptions guard;                           // bounds the re-run (a proof may hold any SQL)
  QueryProofLimits limits;                          // for verify_bytes
};

struct VerifiedResult {
  Head head;           // the signed state the rows were computed from
  QueryResult result;  // columns, declared types, rows — computed here
  size_t pages = 0;    // pages the proof held
};

// Stateless; thread-safe (each call opens its own in-memory connection).
class Verifier {
 public:
  // Errors: proof_failed (wrong query, bad shape, page not in the proof, a
  // multiproof of the wrong shape), root_mismatch (pages do not give the
  // state root: a changed byte, a page of another state), bad_signature,
  // unavailable (stale: below min_size or older than max_age), and the
  // re-run's own errors (refused / too_large / sqlite_error).
  static Result<VerifiedResult> verify(const PublicKey& log_id, const QueryProof& proof,
                                       const VerifyOptions& options = {});
  // decode_query_proof(bytes, options.limits), then verify().
  static Result<VerifiedResult> verify_bytes(const PublicKey& log_id, ByteView bytes,
                                             const VerifyOptions& options = {});
};

struct VerifierCacheOptions {
  size_t max_heads = 64;         // heads whose signature verified (LRU)
  size_t max_leaf_pages = 256;   // (pgno, page bytes) -> leaf hash, bytes kept (LRU)
  size_t max_connections = 4;    // proof-VFS connections, one per state root (LRU)
  bool reuse_connections = true; // false: a fresh connection per proof, as Verifier does
};

struct VerifierCacheStats {
  uint64_t head_hits = 0, head_misses = 0;
  uint64_t leaf_hits = 0, leaf_misses = 0;
  uint64_t connection_hits = 0;    // ran on a kept connection (schema already parsed)
  uint64_t connection_opens = 0;   // opened a connection to keep
  uint64_t fresh_runs = 0;         // ran as Verifier does (not reusable, see verify())
};

// A verifier with memory, for a client that verifies many proofs. Not
// thread-safe: one thread at a time (it may move between threads). The proof
// passed in is not kept: nothing the cache holds points into it after a call.
class VerifierCache {
 public:
  explicit VerifierCache(VerifierCacheOptions options = {});
  ~VerifierCache();
  VerifierCache(const VerifierCache&) = delete;
  VerifierCache& operator=(const VerifierCache&) = delete;

  // Same contract, result and errors as Verifier::verify. A proof runs on a
  // fresh connection instead of a kept one when its state has virtual tables
  // (their modules cache state per connection), when it lacks a page the
  // schema was parsed from, or when its SQL names connection-local state
  // (PRAGMA data_version, sqlite_stmt). A failed verification drops the
  // connection it ran on.
  Result<VerifiedResult> verify(const PublicKey& log_id, const QueryProof& proof,
                                const VerifyOptions& options = {});
  Result<VerifiedResult> verify_bytes(const PublicKey& log_id, ByteView bytes,
                                      const VerifyOptions& options = {});

  // Forgets every head, leaf hash and connection.
  void clear();
  const VerifierCacheStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace swarmlite
