// The peer-protocol ChunkSource of `swarmlite fetch` (snapshot_fetch.h,
// docs/protocol.md "Snapshots"): a blocking client of the binary protocol
// (net/protocol.h). Each connection carries one request at a time; the
// fetcher's parallel calls each take an idle connection or open one.
// Everything the node sends is untrusted: the manifest's head is checked by
// the fetcher, each chunk by verify_snapshot_chunk; here only the framing and
// the codec's caps (checked from the header before the body is read).
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "client/bootstrap.h"
#include "client/peer_link.h"
#include "client/snapshot_fetch.h"
#include "net/protocol.h"

namespace swarmlite::client {
namespace {

class PeerChunkSource : public ChunkSource {
 public:
  PeerChunkSource(std::string address, const PublicKey& log_id, std::chrono::milliseconds timeout)
      : address_(std::move(address)), log_id_(log_id), timeout_(timeout) {}
  std::string name() const override { return address_; }

  Result<SourceManifest> manifest() override {
    SWL_ASSIGN(net::Message m, call(net::GetSnapshot{}));
    if (auto* e = std::get_if<net::ErrorMsg>(&m)) return answer_error(*e);
    auto* x = std::get_if<net::SnapshotManifestMsg>(&m);
    if (!x) return unexpected(m, "SnapshotManifest");
    return SourceManifest{x->head, x->page_size, x->chunk_pages};
  }

  Result<Bytes> chunk(const SnapshotRequest& r) override {
    SWL_ASSIGN(net::Message m, call(net::GetSnapshotPages{r.size, r.first_page, r.count}));
    if (auto* e = std::get_if<net::ErrorMsg>(&m)) return answer_error(*e);
    auto* x = std::get_if<net::SnapshotPages>(&m);
    if (!x) return unexpected(m, "SnapshotPages");
    return std::move(x->chunk);
  }

 private:
  // One request on an idle connection (or a new one); the connection goes back
  // to the idle list only after a whole answer, so it is never out of step.
  Result<net::Message> call(const net::Message& request) {
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
    auto answer = link->call(request, deadline);
    if (!answer.ok() && reused) {
      // An idle connection the node closed meanwhile (its 90 s idle timeout,
      // docs/protocol.md "Limits per connection"): once more on a new one.
      // Both requests are safe to repeat.
      SWL_ASSIGN(link, PeerLink::open(address_, log_id_, deadline));
      answer = link->call(request, deadline);
    }
    SWL_ASSIGN(net::Message m, std::move(answer));
    // An Error that closes the connection (banned, shutting_down, …) drops it.
    auto* e = std::get_if<net::ErrorMsg>(&m);
    if (!e || e->code == net::ErrorCode::snapshot_gone ||
        e->code == net::ErrorCode::not_available) {
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(link));
    }
    return m;
  }

  // snapshot_gone is the fetcher's not_found (start again at the newest head).
  Error answer_error(const net::ErrorMsg& e) const {
    return make_error(e.code == net::ErrorCode::snapshot_gone ? Errc::not_found : Errc::unavailable,
                      "{} answered error {}: {}", address_, static_cast<int>(e.code), e.message);
  }
  Error unexpected(const net::Message& m, std::string_view wanted) const {
    return make_error(Errc::bad_value, "{} answered {} where {} was due", address_,
                      net::message_type_name(net::message_type(m)), wanted);
  }

  std::string address_;
  PublicKey log_id_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::vector<std::unique_ptr<PeerLink>> idle_;
};

}  // namespace

Result<PeerHello> peer_hello(const std::string& address, const PublicKey& log_id,
                             std::chrono::milliseconds timeout) {
  SWL_ASSIGN(auto link, PeerLink::open(address, log_id, Clock::now() + timeout));
  return PeerHello{link->hello().head, link->hello().first};
}

Result<net::Frontier> peer_frontier(const std::string& address, const PublicKey& log_id,
                                    uint64_t size, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  SWL_ASSIGN(auto link, PeerLink::open(address, log_id, deadline));
  SWL_ASSIGN(net::Message m, link->call(net::GetFrontier{size}, deadline));
  if (auto* e = std::get_if<net::ErrorMsg>(&m)) {
    // not_available: past its head or compacted away (docs/protocol.md "Frontier").
    return make_error(e->code == net::ErrorCode::not_available ? Errc::not_found
                                                               : Errc::unavailable,
                      "{} answered error {}: {}", address,
                      static_cast<int>(e->code), e->message);
  }
  auto* f = std::get_if<net::Frontier>(&m);
  if (!f) {
    return make_error(Errc::bad_value, "{} answered {} where Frontier was due", address,
                      net::message_type_name(net::message_type(m)));
  }
  if (f->size != size) {
    return make_error(Errc::bad_value, "{} answered the frontier at {} where {} was asked", address,
                      f->size, size);
  }
  return std::move(*f);
}

std::unique_ptr<ChunkSource> peer_chunk_source(const std::string& address, const PublicKey& log_id,
                                               std::chrono::milliseconds timeout) {
  return std::make_unique<PeerChunkSource>(address, log_id, timeout);
}

}  // namespace swarmlite::client
