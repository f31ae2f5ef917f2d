// A blocking client connection of the peer protocol (net/protocol.h,
// docs/protocol.md): the Hello exchange, then one request and its answer at a
// time. Used by the snapshot fetcher (snapshot_fetch_peer.cpp) and the page
// source (page_source_peer.cpp). Only framing and the codec's caps are checked
// here (a frame's length from its header, before the body is read); what the
// node sends is untrusted and checked by the callers.
#pragma once

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include "core/keys.h"
#include "core/result.h"
#include "net/protocol.h"

namespace swarmlite::client {

using Clock = std::chrono::steady_clock;

inline int ms_left(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

// One TCP connection after the Hello exchange (move-only; not thread-safe:
// one caller at a time, as the sources' idle lists ensure).
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

}  // namespace swarmlite::client
