// One TCP connection to a peer, as transport only (docs/protocol.md): a
// reader, a writer with its write queue and a watchdog coroutine enforcing the
// deadlines (handshake, idle, write, our request's answer). Every decoded
// message, undecodable input and the close go to a SessionEvents; what the
// messages mean is the sync engine's business (net/sync.h).
//
// No Asio here: the state is a pimpl in session.cpp; a session is made from a
// connected socket wrapped in TcpSocket (net/tcp_socket.h, Asio, for node.cpp).
// Not thread-safe: io thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/result.h"
#include "net/peer_set.h"
#include "net/protocol.h"

namespace swarmlite::net {

struct TcpSocket;  // net/tcp_socket.h

class SessionEvents {
 public:
  virtual ~SessionEvents() = default;
  // A decoded message.
  virtual void on_message(uint64_t session, Message&& m) = 0;
  // Input that is not this protocol: `frame` (a bad length) or a message that
  // does not decode (e.code bad_version: another protocol version). The
  // session stops reading; the receiver decides (ban, or reply and close).
  virtual void on_undecodable(uint64_t session, bool frame, const Error& e) = 0;
  // The session stopped: no events for it follow.
  virtual void on_closed(uint64_t session, const std::string& reason) = 0;
};

struct SessionOptions {
  size_t max_frame = kMaxFrameBytes;
  size_t max_queued_responses = 8;  // stop reading while this many frames wait to be written
  std::chrono::milliseconds handshake_timeout{10000};  // before the first frame
  std::chrono::milliseconds idle_timeout{90000};       // no frame received for this long
  std::chrono::milliseconds write_timeout{30000};      // one frame's write
  // TCP_NODELAY on the socket (net/tcp_socket.h set_no_delay). Off only for
  // the replication benchmark's A/B run (docs/performance.md).
  bool tcp_no_delay = true;
};

// Bytes moved by every session of a node (since start).
struct TrafficTotals {
  uint64_t in = 0, out = 0;
};

class Session {
 public:
  // `events` and `totals` must outlive the session's coroutines (the node's io_context).
  Session(TcpSocket&& socket, uint64_t id, const SessionOptions& options, SessionEvents& events,
          TrafficTotals& totals);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Spawns the reader, writer and watchdog.
  void start();
  // Queues a frame (nothing once closing or stopped).
  void send(const Message& m);
  // Sends what is queued, then closes with `reason` (Error replies before a close).
  void close_after_flush(const std::string& reason);
  // Closes now; on_closed(reason) follows synchronously. Idempotent.
  void stop(const std::string& reason);
  // Our request is out until `t` (Clock::time_point::max(): none).
  void set_request_deadline(Clock::time_point t);
  // The handshake completed: a read deadline passing is now an "idle timeout".
  void set_handshaken();

  uint64_t id() const;
  const std::string& remote() const;     // "ip:port" ("?" when unknown)
  const std::string& remote_ip() const;  // "" when unknown
  bool stopped() const;
  bool closing() const;
  uint64_t bytes_in() const;
  uint64_t bytes_out() const;
  Clock::time_point connected_at() const;

 private:
  struct State;
  std::shared_ptr<State> st_;
};

}  // namespace swarmlite::net
