#include "client/peer_fetch.h"

#include <fmt/format.h>

#include <algorithm>

#include "net/http_client.h"

namespace swarmlite::client {
namespace {

ClientError error_of(ClientErrorKind kind, const std::string& peer, std::string message,
                     std::optional<Error> cause = std::nullopt) {
  ClientError e;
  e.kind = kind;
  e.peer = peer;
  e.message = std::move(message);
  e.cause = std::move(cause);
  return e;
}

}  // namespace

ClientResult<PeerAnswer> fetch_query(const std::string& peer, const std::string& sql, const std::vector<Value>& params,
                                     const FetchOptions& options) {
  using nlohmann::json;
  auto url = net::parse_http_url(peer);
  if (!url.ok())
    return error_of(ClientErrorKind::invalid_argument, peer, "peer " + peer + ": " + url.error().to_string(),
                    url.error());
  if (std::any_of(params.begin(), params.end(), [](const Value& v) { return std::holds_alternative<Bytes>(v.v); }))
    return error_of(ClientErrorKind::invalid_argument, peer, "blob params are not supported over HTTP by this command");
  json stmt = json::array({sql});
  for (const auto& v : params) stmt.push_back(net::value_to_json(v));
  net::HttpRequest req;
  req.method = "POST";
  req.target = "/db/query";
  std::string sep = "?";
  if (options.proof) {
    req.target += sep + "proof=1";
    sep = "&";
  }
  if (options.min_size)
    req.target += sep + fmt::format("min_size={}&timeout={}ms", options.min_size, options.timeout.count());
  req.body = json::array({stmt}).dump();
  net::HttpClientOptions co;
  co.timeout = options.timeout + std::chrono::milliseconds(1000);
  co.max_body_bytes = options.max_body_bytes;
  auto res = net::http_call(*url, req, co);
  if (!res.ok())
    return error_of(ClientErrorKind::transport, peer, fmt::format("query {}: {}", peer, res.error().to_string()),
                    res.error());
  json doc = json::parse(res->body, nullptr, false);
  if (res->status != 200) {
    std::string msg = doc.is_object() && doc.contains("error") ? doc["error"].dump() : res->body;
    ClientError e = error_of(ClientErrorKind::peer_status, peer,
                             fmt::format("{} answered HTTP {}: {}", peer, res->status, msg));
    e.http_status = res->status;
    return e;
  }
  if (!doc.is_object() || !doc.contains("results") || !doc["results"].is_array() || doc["results"].size() != 1)
    return error_of(ClientErrorKind::malformed, peer, fmt::format("{} sent a malformed response", peer));
  auto outcome = net::query_outcome_from_json(doc["results"][0]);
  if (!outcome.ok())
    return error_of(ClientErrorKind::malformed, peer,
                    fmt::format("{} sent a malformed response: {}", peer, outcome.error().to_string()), outcome.error());
  if (outcome->error)
    return error_of(ClientErrorKind::query_failed, peer, "query failed: " + *outcome->error);
  if (options.proof && outcome->proof.empty())
    return error_of(ClientErrorKind::no_proof, peer, fmt::format("{} sent no proof", peer));
  return PeerAnswer{peer, std::move(*outcome)};
}

}  // namespace swarmlite::client
