#include "client/verifying_client.h"

namespace swarmlite::client {
VerifyingClient::VerifyingClient(ClientOptions options)
    : peers_(std::move(options.peers)),
      timeout_(options.timeout),
      checker_(options.log_id, std::move(options.check), options.heads) {}

ClientResult<PeerAnswer> VerifyingClient::fetch(const std::string& peer, const std::string& sql,
                                                const std::vector<Value>& params) {
  FetchOptions fo;
  fo.proof = true;
  fo.min_size = checker_.options().min_size;
  fo.timeout = timeout_;
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
  if (peers_.empty()) {
    ClientError e;
    e.kind = ClientErrorKind::invalid_argument;
    e.message = "no peer to ask (the client's peer list is empty)";
    return e;
  }
  std::vector<ClientError> failed;
  for (const auto& peer : peers_) {
    auto a = query_peer(peer, sql, params);
    if (a.ok()) return a;
    ClientError e = a.take_error();
    if (e.kind == ClientErrorKind::equivocation || &peer == &peers_.back()) {
      e.earlier_attempts = std::move(failed);
      return e;
    }
    failed.push_back(std::move(e));
  }
  return failed.back();  // not reached: the last peer returns above
}

}  // namespace swarmlite::client
