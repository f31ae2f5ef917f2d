#include "client/client_error.h"

#include <fmt/format.h>

namespace swarmlite::client {

std::string_view client_error_kind_name(ClientErrorKind kind) {
  switch (kind) {
    case ClientErrorKind::invalid_argument: return "invalid_argument";
    case ClientErrorKind::transport: return "transport";
    case ClientErrorKind::peer_status: return "peer_status";
    case ClientErrorKind::malformed: return "malformed";
    case ClientErrorKind::query_failed: return "query_failed";
    case ClientErrorKind::no_proof: return "no_proof";
    case ClientErrorKind::proof_invalid: return "proof_invalid";
    case ClientErrorKind::stale_head: return "stale_head";
    case ClientErrorKind::sql_mismatch: return "sql_mismatch";
    case ClientErrorKind::params_mismatch: return "params_mismatch";
    case ClientErrorKind::equivocation: return "equivocation";
    case ClientErrorKind::file: return "file";
  }
  return "unknown";
}

std::string ClientError::to_string() const {
  return fmt::format("{}: {}", client_error_kind_name(kind), message);
}

bool ClientError::is_verification_failure() const {
  switch (kind) {
    case ClientErrorKind::no_proof:
    case ClientErrorKind::proof_invalid:
    case ClientErrorKind::stale_head:
    case ClientErrorKind::sql_mismatch:
    case ClientErrorKind::params_mismatch:
    case ClientErrorKind::equivocation:
      return true;
    default:
      return false;
  }
}

}  // namespace swarmlite::client
