#include "client/verifying_client.h"

namespace swarmlite::client {
namespace {

CheckOptions check_options(const ClientOptions& o) {
  CheckOptions c;
  c.min_size = o.min_size;
  c.max_age = o.max_age;
  c.now_ms = o.now_ms;
  c.guard = o.guard;
  c.limits = o.limits;
  return c;
}

}  // namespace

VerifyingClient::VerifyingClient(ClientOptions options)
    : options_(std::move(options)), checker_(options_.log_id, check_options(options_), options_.heads) {}

void VerifyingClient::set_min_size(uint64_t min_size) {
  options_.min_size = min_size;
  checker_.options().min_size = min_size;
}

ClientResult<PeerAnswer> VerifyingClient::fetch(const std::string& peer, const std::string& sql,
                                                const std::vector<Value>& params) {
  FetchOptions fo;
  fo.proof = true;
  fo.min_size = options_.min_size;
  fo.timeout = options_.timeout;
  return fetch_query(peer, sql, params, fo);
}

ClientResult<VerifiedAnswer> VerifyingClient::verify(const PeerAnswer& answer, const std::string& sql,
                                                     const std::vector<Value>& params) {
  auto checked = checker_.check(answer.outcome.proof, Expected{sql, params});
  if (!checked.ok()) {
    ClientError e = checked.take_error();
    e.peer = answer.peer;
    return e;
  }
  checked->peer = answer.peer;
  return checked;
}

ClientResult<VerifiedAnswer> VerifyingClient::query_peer(const std::string& peer, const std::string& sql,
                                                         const std::vector<Value>& params) {
  auto fetched = fetch(peer, sql, params);
  if (!fetched.ok()) return fetched.take_error();
  return verify(*fetched, sql, params);
}

ClientResult<VerifiedAnswer> VerifyingClient::query(const std::string& sql, const std::vector<Value>& params) {
  if (options_.peers.empty()) {
    ClientError e;
    e.kind = ClientErrorKind::invalid_argument;
    e.message = "no peer to ask (ClientOptions::peers is empty)";
    return e;
  }
  std::vector<ClientError> failed;
  for (const auto& peer : options_.peers) {
    auto a = query_peer(peer, sql, params);
    if (a.ok()) return a;
    ClientError e = a.take_error();
    if (e.kind == ClientErrorKind::equivocation || &peer == &options_.peers.back()) {
      e.earlier_attempts = std::move(failed);
      return e;
    }
    failed.push_back(std::move(e));
  }
  return failed.back();  // not reached: the last peer returns above
}

}  // namespace swarmlite::client
