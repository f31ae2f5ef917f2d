// The verifying client (docs/client.md): asks peers' HTTP APIs for a read with
// a proof (peer_fetch.h) and believes only what the proof shows (proof_check.h):
// rows recomputed from proven pages, at a head signed by the log's key, fresh
// enough (min_size, max_age), answering the SQL and params asked, and not
// contradicting a head of the same size it verified before (head_cache.h).
//
//   VerifyingClient c({.log_id = pub, .peers = {"http://127.0.0.1:4011"}});
//   auto a = c.query("SELECT body FROM notes WHERE id = ?", {Value{int64_t{2}}});
//   if (a.ok()) use(a->rows, a->head.size); else report(a.error().kind, a.error().message);
//
// Several peers: query() asks them in order and returns the first verified
// answer; a peer that fails (any kind) is skipped, except that equivocation
// stops at once (it is about the log, not the peer). The error when every peer
// failed is the last one's, the others in earlier_attempts.
// Not thread-safe (the caches); one thread at a time.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "client/peer_fetch.h"
#include "client/proof_check.h"

namespace swarmlite::client {

struct ClientOptions {
  PublicKey log_id;                          // the primary's public key
  std::vector<std::string> peers;            // http://HOST:PORT, asked in order
  // min_size (also asked of the peer, which waits for it), max_age, now_ms, bounds.
  CheckOptions check;
  std::chrono::milliseconds timeout{30000};  // per peer: the min_size wait and the answer
  HeadCacheOptions heads;
};

class VerifyingClient {
 public:
  explicit VerifyingClient(ClientOptions options);

  // Asks the peers in order (see above); the answer says which peer it came from.
  ClientResult<VerifiedAnswer> query(const std::string& sql, const std::vector<Value>& params = {});
  // Asks one peer (need not be in peers()).
  ClientResult<VerifiedAnswer> query_peer(const std::string& peer, const std::string& sql,
                                          const std::vector<Value>& params = {});
  // The two halves of query_peer, for a caller that keeps the proof bytes
  // whatever the verdict (`swarmlite query --proof-out`): fetch with proof=1 at
  // min_size, then check against the SQL and params asked.
  ClientResult<PeerAnswer> fetch(const std::string& peer, const std::string& sql, const std::vector<Value>& params);
  ClientResult<VerifiedAnswer> verify(const PeerAnswer& answer, const std::string& sql,
                                      const std::vector<Value>& params);

  // Changes apply to the next call (e.g. raise min_size to the size last written).
  CheckOptions& check_options() { return checker_.options(); }
  std::vector<std::string>& peers() { return peers_; }
  HeadCache& heads() { return checker_.heads(); }

 private:
  std::vector<std::string> peers_;
  std::chrono::milliseconds timeout_;
  ProofChecker checker_;
};

}  // namespace swarmlite::client
