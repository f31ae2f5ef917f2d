// The offline half of the verifying client (docs/client.md): proof bytes in, a
// typed report or a typed error out. Used for answers fetched from a peer
// (verifying_client.h) and for saved proofs (`swarmlite verify FILE`).
//
// check() in order: decode (QueryProofLimits); the SQL, then the params, are the
// ones expected (if given: sql_mismatch / params_mismatch naming both); the
// verifier (sqlbridge/proof/verifier.h: signature, min_size and max_age, pages,
// multiproof, the re-run; stale_head when the head is too old, else
// proof_invalid); the head cache (head_cache.h: equivocation, freshness).
// Rows are the ones the verifier computed; the proof carries none.
//
// Not thread-safe (it keeps a VerifierCache and a HeadCache); one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/client_error.h"
#include "client/head_cache.h"
#include "core/bytes.h"
#include "core/head.h"
#include "core/keys.h"
#include "sqlbridge/proof/verifier.h"

namespace swarmlite::client {

// What the caller asked, to hold a proof to. Unset: not checked (a saved proof
// checked without --sql proves whatever query it holds, and says which).
struct Expected {
  std::optional<std::string> sql;
  std::optional<std::vector<Value>> params;  // checked only together with sql
};

struct CheckOptions {
  uint64_t min_size = 0;                             // refuse a head below this log size
  std::optional<std::chrono::milliseconds> max_age;  // refuse a head signed longer ago
  std::optional<int64_t> now_ms;                     // "now" for max_age (default: the system clock)
  ReadGuardOptions guard;                            // bounds on the re-run
  QueryProofLimits limits;                           // bounds on the proof bytes
};

// A verified answer: everything a caller may believe, and what it is proven against.
struct VerifiedAnswer {
  std::string peer;                        // who sent it ("" for a saved proof)
  std::string sql;                         // the SQL the proof answers
  std::vector<Value> params;               // and its params
  std::vector<std::string> columns;
  std::vector<std::string> types;          // declared types, as SQLite reports them
  std::vector<std::vector<Value>> rows;    // computed by the verifier from the proven pages
  Head head;                               // the signed state the rows come from
  size_t pages = 0;                        // pages the proof held
  Freshness freshness;                     // against the newest head verified for the log
  Bytes proof;                             // the proof bytes (to keep, or to show others)
};

class ProofChecker {
 public:
  ProofChecker(PublicKey log_id, CheckOptions options = {}, HeadCacheOptions heads = {});

  ClientResult<VerifiedAnswer> check(ByteView proof, const Expected& expected = {});

  const PublicKey& log_id() const { return log_id_; }
  CheckOptions& options() { return options_; }
  HeadCache& heads() { return heads_; }

 private:
  PublicKey log_id_;
  CheckOptions options_;
  VerifierCache verifier_;
  HeadCache heads_;
};

}  // namespace swarmlite::client
