// One read query to a peer's HTTP API (docs/http-api.md, POST /db/query), the
// transport half of the verifying client (docs/client.md). The answer is the
// peer's, unverified: with `proof`, hand its proof to a ProofChecker.
// Thread-safe (no shared state).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "client/client_error.h"
#include "core/entry.h"
#include "net/http_json.h"

namespace swarmlite::client {

struct FetchOptions {
  bool proof = true;                          // ask with proof=1 (an answer without one: no_proof)
  uint64_t min_size = 0;                      // the peer waits for this log size (min_size=N)
  std::chrono::milliseconds timeout{30000};   // the peer's wait (timeout=); the HTTP call gets 1 s more
  size_t max_body_bytes = 64u << 20;          // the response body
};

struct PeerAnswer {
  std::string peer;           // the URL asked
  net::QueryOutcome outcome;  // the peer's columns, types, rows, size and proof bytes, as sent
};

// Errors: invalid_argument (a URL that does not parse, a blob param: the JSON
// API would send it as text), transport, peer_status (HTTP != 200, with the
// peer's {"error"} message), malformed, query_failed, no_proof.
ClientResult<PeerAnswer> fetch_query(const std::string& peer, const std::string& sql, const std::vector<Value>& params,
                                     const FetchOptions& options = {});

}  // namespace swarmlite::client
