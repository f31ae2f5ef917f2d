#include "client/proof_check.h"

#include <fmt/format.h>

#include "client/report_format.h"
#include "net/http_json.h"

namespace swarmlite::client {
namespace {

ClientError error_of(ClientErrorKind kind, std::string message, std::optional<Error> cause = std::nullopt) {
  ClientError e;
  e.kind = kind;
  e.message = std::move(message);
  e.cause = std::move(cause);
  return e;
}

std::string params_text(const std::vector<Value>& params) { return net::dump_json(params_json(params), false); }

}  // namespace

ProofChecker::ProofChecker(PublicKey log_id, CheckOptions options, HeadCacheOptions heads)
    : log_id_(log_id), options_(std::move(options)), heads_(heads) {}

ClientResult<VerifiedAnswer> ProofChecker::check(ByteView proof, const Expected& expected) {
  auto decoded = decode_query_proof(proof, options_.limits);
  if (!decoded.ok())
    return error_of(ClientErrorKind::proof_invalid, "proof does not verify: " + decoded.error().to_string(),
                    decoded.error());
  // Before the verifier (which checks the same): to name both queries.
  if (expected.sql && *expected.sql != decoded->sql)
    return error_of(ClientErrorKind::sql_mismatch,
                    fmt::format("the proof answers another query: asked {}, the proof holds {}",
                                json_string(*expected.sql), json_string(decoded->sql)));
  const std::optional<std::vector<Value>> params = expected.sql ? expected.params : std::nullopt;
  if (params && *params != decoded->params)
    return error_of(ClientErrorKind::params_mismatch,
                    fmt::format("the proof answers {} with other params: asked {}, the proof holds {}",
                                json_string(decoded->sql), params_text(*params), params_text(decoded->params)));
  VerifyOptions vo;
  vo.min_size = options_.min_size;
  vo.max_age = options_.max_age;
  vo.now_ms = options_.now_ms;
  vo.expected_sql = expected.sql;
  vo.expected_params = params;
  vo.guard = options_.guard;
  vo.limits = options_.limits;
  auto verified = verifier_.verify(log_id_, *decoded, vo);
  if (!verified.ok()) {
    // The verifier's unavailable is freshness only (sqlbridge/proof/verifier.h).
    const auto kind = verified.error().code == Errc::unavailable ? ClientErrorKind::stale_head
                                                                 : ClientErrorKind::proof_invalid;
    return error_of(kind, "proof does not verify: " + verified.error().to_string(), verified.error());
  }
  auto freshness = heads_.observe(verified->head);
  if (!freshness.ok()) return freshness.take_error();
  VerifiedAnswer a;
  a.sql = std::move(decoded->sql);
  a.params = std::move(decoded->params);
  a.columns = std::move(verified->result.columns);
  a.types = std::move(verified->result.decltypes);
  a.rows = std::move(verified->result.rows);
  a.head = verified->head;
  a.pages = verified->pages;
  a.freshness = *freshness;
  a.proof.assign(proof.begin(), proof.end());
  return a;
}

}  // namespace swarmlite::client
