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
#include "client/snapshot_fetch.h"
#include "net/protocol.h"

namespace swarmlite::client {
namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

// One TCP connection after the Hello exchange.
class PeerLink {
 public:
  PeerLink(const PeerLink&) = delete;
  PeerLink& operator=(const PeerLink&) = delete;
  ~PeerLink() {
    if (fd_ >= 0) ::close(fd_);
  }

  static Result<std::unique_ptr<PeerLink>> open(const std::string& address, const PublicKey& log_id,
                                                Clock::time_point deadline) {
    SWL_ASSIGN(net::HostPort hp, net::parse_host_port(address));
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(hp.port);
    if (int rc = ::getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      return make_error(Errc::unavailable, "resolve {}: {}", hp.host, ::gai_strerror(rc));
    }
    std::unique_ptr<PeerLink> link(new PeerLink(address));
    std::string last = "no address";
    for (addrinfo* ai = found; ai && link->fd_ < 0; ai = ai->ai_next) {
      int fd =
          ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) {
        last = std::strerror(errno);
        continue;
      }
      int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, ms_left(deadline)) == 1 ? 0 : -1;
        int err = rc == 0 ? 0 : ETIMEDOUT;
        socklen_t len = sizeof err;
        if (rc == 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          errno = err;
          rc = -1;
        }
      }
      if (rc != 0) {
        last = std::strerror(errno);
        ::close(fd);
        continue;
      }
      int one = 1;  // small requests the node waits for (docs/protocol.md "Relay and live push")
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      link->fd_ = fd;
    }
    ::freeaddrinfo(found);
    if (link->fd_ < 0) return make_error(Errc::unavailable, "connect to {}: {}", address, last);

    // Hello both ways: a random node id per connection (the node refuses a
    // second session of one node id as a duplicate), no head, no listen address.
    net::Hello hello;
    hello.log_id = log_id;
    randombytes_buf(&hello.node_id, sizeof hello.node_id);
    if (hello.node_id == 0) hello.node_id = 1;
    SWL_TRY(link->send(hello, deadline));
    SWL_ASSIGN(net::Message first, link->receive(deadline));
    if (auto* e = std::get_if<net::ErrorMsg>(&first)) {
      return make_error(Errc::unavailable, "{} refused the connection (error {}): {}", address,
                        static_cast<int>(e->code), e->message);
    }
    auto* theirs = std::get_if<net::Hello>(&first);
    if (!theirs) {
      return make_error(Errc::bad_value, "{} sent {} before Hello", address,
                        net::message_type_name(net::message_type(first)));
    }
    if (theirs->log_id != log_id) {
      return make_error(Errc::unavailable, "{} follows log {}, not {}", address,
                        theirs->log_id.hex(), log_id.hex());
    }
    link->hello_ = std::move(*theirs);
    return link;
  }

  Status send(const net::Message& m, Clock::time_point deadline) {
    Bytes frame = net::encode_frame(m);
    size_t done = 0;
    while (done < frame.size()) {
      ssize_t n = ::send(fd_, frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd_, POLLOUT, 0};
        if (::poll(&p, 1, ms_left(deadline)) != 1) {
          return make_error(Errc::unavailable, "send to {}: timed out", address_);
        }
        continue;
      }
      return make_error(Errc::unavailable, "send to {}: {}", address_, std::strerror(errno));
    }
    return ok_status();
  }

  // The next message, with the codec's caps: the frame length is checked from
  // its 4-byte header before the body is read.
  Result<net::Message> receive(Clock::time_point deadline) {
    uint8_t header[net::kFrameHeaderBytes];
    SWL_TRY(read_exactly(header, sizeof header, deadline));
    auto len = net::decode_frame_length(ByteView(header, sizeof header));
    if (!len.ok()) return make_error(len.error().code, "{}: {}", address_, len.error().message);
    Bytes body(*len);
    SWL_TRY(read_exactly(body.data(), body.size(), deadline));
    auto m = net::decode_message(body);
    if (!m.ok())
      return make_error(m.error().code, "{} sent a bad message: {}", address_, m.error().message);
    return m;
  }

  // Sends `request` and returns its answer. What a node sends unasked in
  // between is handled here: GetPeers is answered with no addresses (also
  // the keepalive that spares a long wait the node's idle timeout); Head,
  // Peers and Evidence are of no use to a fetch and skipped.
  Result<net::Message> call(const net::Message& request, Clock::time_point deadline) {
    SWL_TRY(send(request, deadline));
    for (;;) {
      SWL_ASSIGN(net::Message m, receive(deadline));
      if (std::holds_alternative<net::GetPeers>(m)) {
        SWL_TRY(send(net::Peers{}, deadline));
        continue;
      }
      if (std::holds_alternative<net::HeadMsg>(m) || std::holds_alternative<net::Peers>(m) ||
          std::holds_alternative<net::EvidenceMsg>(m)) {
        continue;
      }
      return m;
    }
  }

  // The node's Hello (its head and first servable entry: unverified).
  const net::Hello& hello() const { return hello_; }

 private:
  explicit PeerLink(std::string address) : address_(std::move(address)) {}

  Status read_exactly(uint8_t* out, size_t n, Clock::time_point deadline) {
    size_t done = 0;
    while (done < n) {
      ssize_t got = ::recv(fd_, out + done, n - done, 0);
      if (got > 0) {
        done += static_cast<size_t>(got);
        continue;
      }
      if (got == 0) return make_error(Errc::unavailable, "{} closed the connection", address_);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, ms_left(deadline)) != 1) {
          return make_error(Errc::unavailable, "{}: no answer in time", address_);
        }
        continue;
      }
      return make_error(Errc::unavailable, "read from {}: {}", address_, std::strerror(errno));
    }
    return ok_status();
  }

  std::string address_;
  int fd_ = -1;
  net::Hello hello_;
};

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
