// What went wrong when the verifying client (verifying_client.h) asked a peer
// or checked a proof (proof_check.h): a kind a caller can branch on, the peer
// it concerns and a message that says what, where and why (docs/client.md).
// ClientResult<T> holds either a T or a ClientError.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/evidence.h"
#include "core/result.h"

namespace swarmlite::client {

enum class ClientErrorKind {
  invalid_argument, // the caller's input: a peer URL that does not parse, a blob param over HTTP
  transport,        // no answer: connect, resolve, timeout, body over the cap
  peer_status,      // the peer answered HTTP != 200 (status and its error message kept)
  malformed,        // the peer's body is not the query response the API documents
  query_failed,     // the peer ran the statement and it failed (syntax, no such table …)
  no_proof,         // asked for a proof, none came
  proof_invalid,    // the proof does not verify (decode, signature, pages, root, re-run)
  stale_head,       // the proof verifies but its head is below min_size or older than max_age
  sql_mismatch,     // a valid proof of other SQL than the one asked
  params_mismatch,  // a valid proof of the SQL asked with other params
  equivocation,     // a head of a size already verified, with other roots (evidence attached)
  file,             // a saved proof or head-cache file cannot be read or written
};

std::string_view client_error_kind_name(ClientErrorKind kind);

struct ClientError {
  ClientErrorKind kind = ClientErrorKind::transport;
  std::string peer;             // the peer URL it concerns ("" for a file)
  std::string message;          // what, where, why (without the kind)
  unsigned http_status = 0;     // peer_status: the status the peer answered
  std::optional<Error> cause;   // the underlying library error, if any (verifier, HTTP client)
  std::optional<Evidence> evidence;  // equivocation: two validly signed heads of one size
  // VerifyingClient::query over several peers: what each peer tried before did
  // (this error is the last peer's).
  std::vector<ClientError> earlier_attempts;

  // "<kind>: <message>".
  std::string to_string() const;
  // True for the kinds that say the answer (not the transport) is wrong:
  // proof_invalid, stale_head, sql_mismatch, params_mismatch, equivocation, no_proof.
  bool is_verification_failure() const;
};

// A T or a ClientError (core/result.h's Result with a typed error).
template <class T>
using ClientResult = Result<T, ClientError>;

}  // namespace swarmlite::client
