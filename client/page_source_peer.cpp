// The peer-protocol PageSource (page_source_peer.h; docs/protocol.md "Page
// service"), over PeerLink connections as the snapshot fetcher's.
#include "client/page_source_peer.h"

#include <fmt/format.h>

#include <mutex>
#include <vector>

#include "client/peer_link.h"

namespace swarmlite::client {
namespace {

class PeerPageSource : public PageSource {
 public:
  PeerPageSource(std::string address, const PublicKey& log_id, std::chrono::milliseconds timeout)
      : address_(std::move(address)), log_id_(log_id), timeout_(timeout) {}
  std::string name() const override { return address_; }

  Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) override {
    return ask<PageSet, net::PagesMsg>(net::GetPages{size, {pgnos.begin(), pgnos.end()}},
                                       kMaxPagesPerRequest, "pages", decode_page_set);
  }

  Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) override {
    return ask<LeafSet, net::LeavesMsg>(net::GetLeaves{size, {pgnos.begin(), pgnos.end()}},
                                        kMaxLeavesPerRequest, "leaves", decode_leaf_set);
  }

  // GetChanges only to a node whose Hello announced it (kFeatureChanges,
  // docs/protocol.md "Changes"): to another it is not sent, and the caller
  // asks leaves() instead.
  Result<PageAnswer<ChangeSet>> changes(uint64_t from_size, uint64_t to_size) override {
    if (to_size != 0 && to_size < from_size)  // would not decode at the node: refused here
      return make_error(Errc::invalid_argument, "changes from {}: head {} is below head {}",
                        address_, to_size, from_size);
    SWL_ASSIGN(net::Message m, call(net::GetChanges{from_size, to_size}, net::kFeatureChanges));
    SWL_ASSIGN(auto answer, answer_set<net::ChangesMsg>(m, to_size));
    if (auto* gone = std::get_if<HeadGone>(&answer)) return PageAnswer<ChangeSet>(*gone);
    SWL_ASSIGN(ChangeSet set, decode_change_answer(std::get<Bytes>(answer), from_size, to_size,
                                                   address_, "changes"));
    return PageAnswer<ChangeSet>(std::move(set));
  }

  // Nor a query-proof request: proofs come over HTTP only (POST /db/query?proof=1).
  Result<QueryProof> query_proof(const std::string&, const std::vector<Value>&, uint64_t) override {
    return make_error(Errc::refused, "{}: peer protocol {} has no query-proof request", address_,
                      net::kProtocolVersion);
  }

 private:
  template <class T, class Answer, class Request, class Decode>
  Result<PageAnswer<T>> ask(const Request& request, size_t max, std::string_view what,
                            Decode decode) {
    // The caller's own mistakes are refused before anything is sent (the
    // node would close the connection over a request that does not decode).
    if (auto s = check_pgnos(request.pgnos, UINT32_MAX, max); !s.ok())
      return make_error(Errc::invalid_argument, "{} from {}: {}", what, address_,
                        s.error().message);
    SWL_ASSIGN(net::Message m, call(request));
    SWL_ASSIGN(auto answer, answer_set<Answer>(m, request.size));
    if (auto* gone = std::get_if<HeadGone>(&answer)) return PageAnswer<T>(*gone);
    auto set = decode(std::get<Bytes>(answer));
    if (!set.ok())
      return make_error(Errc::bad_value, "{}: {} answer: {}", address_, what,
                        set.error().to_string());
    if (set->pgnos != request.pgnos)
      return make_error(Errc::bad_value, "{}: asked for the {} of {}, the answer has {}", address_,
                        what, pgnos_text(request.pgnos), pgnos_text(set->pgnos));
    if (request.size != 0 && set->head.size != request.size)
      return make_error(Errc::bad_value,
                        "{}: asked for the {} of head {}, the answer is for head {}", address_,
                        what, request.size, set->head.size);
    return PageAnswer<T>(std::move(set).value());
  }

  // The node's answer to a request for head `size`: the encoded set of an
  // `Answer` message (not decoded yet), or HeadGone; an Error is an error
  // (bad_request: invalid_argument; any other: unavailable).
  template <class Answer>
  Result<std::variant<Bytes, HeadGone>> answer_set(net::Message& m, uint64_t size) const {
    if (auto* gone = std::get_if<net::HeadGoneMsg>(&m)) {
      if (gone->size != size)
        return make_error(Errc::bad_value, "{} answered HeadGone for head {}, head {} was asked",
                          address_, gone->size, size);
      return std::variant<Bytes, HeadGone>(HeadGone{gone->newest});
    }
    if (auto* e = std::get_if<net::ErrorMsg>(&m))
      return make_error(
          e->code == net::ErrorCode::bad_request ? Errc::invalid_argument : Errc::unavailable,
          "{} answered error {}: {}", address_, static_cast<int>(e->code), e->message);
    auto* x = std::get_if<Answer>(&m);
    if (!x)
      return make_error(Errc::bad_value, "{} answered {} where {} was due", address_,
                        net::message_type_name(net::message_type(m)),
                        net::message_type_name(net::message_type(net::Message{Answer{}})));
    return std::variant<Bytes, HeadGone>(std::move(x->set));
  }

  // One request on an idle connection (or a new one); the connection goes back
  // to the idle list only after a whole answer, so it is never out of step.
  // `needs`: Hello feature bits the node must have announced, else nothing is
  // sent (an unknown request would cost the connection) and the answer is
  // unavailable.
  Result<net::Message> call(const net::Message& request, uint64_t needs = 0) {
    const auto deadline = Clock::now() + timeout_;
    std::unique_ptr<PeerLink> link;
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        link = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    const bool reused = link != nullptr;
    if (!link) {
      SWL_ASSIGN(link, PeerLink::open(address_, log_id_, deadline));
    }
    // Asked on a connection whose node announced `needs` (else kept idle, unasked).
    auto ask_on = [&](std::unique_ptr<PeerLink>& l) -> Result<net::Message> {
      if (const uint64_t has = l->hello().features; (has & needs) != needs) {
        std::lock_guard lock(mu_);
        idle_.push_back(std::move(l));
        return make_error(
            Errc::unavailable,
            "{}: its Hello does not announce {} (features {:#x}, {:#x} needed): not asked",
            address_, net::message_type_name(net::message_type(request)), has, needs);
      }
      return l->call(request, deadline);
    };
    auto answer = ask_on(link);
    if (!answer.ok() && link && reused) {
      // An idle connection the node closed meanwhile (its idle timeout,
      // docs/protocol.md "Limits per connection"): once more on a new one.
      // Reads are safe to repeat.
      SWL_ASSIGN(link, PeerLink::open(address_, log_id_, deadline));
      answer = ask_on(link);
    }
    SWL_ASSIGN(net::Message m, std::move(answer));
    // An Error that closes the connection (banned, bad_request, …) drops it.
    auto* e = std::get_if<net::ErrorMsg>(&m);
    if (!e || e->code == net::ErrorCode::not_available) {
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(link));
    }
    return m;
  }

  std::string address_;
  PublicKey log_id_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::vector<std::unique_ptr<PeerLink>> idle_;
};

}  // namespace

std::unique_ptr<PageSource> peer_page_source(const std::string& address, const PublicKey& log_id,
                                             std::chrono::milliseconds timeout) {
  return std::make_unique<PeerPageSource>(address, log_id, timeout);
}

}  // namespace swarmlite::client
