// The Session transport (net/session.h). Shape of the Asio C++20 chat_server
// example: a reader, a writer (write queue) and a watchdog coroutine
// (deadlines), an explicit stop(); errors as values through redirect_error.
#include "net/session.h"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>

#include "net/tcp_socket.h"

namespace swarmlite::net {

using asio::awaitable;
using asio::use_awaitable;

namespace {
constexpr auto kNever = Clock::time_point::max();
}

struct Session::State : std::enable_shared_from_this<Session::State> {
  State(tcp::socket socket, uint64_t id, const SessionOptions& options, SessionEvents& events,
        TrafficTotals& totals)
      : id_(id),
        opt_(options),
        events_(events),
        totals_(totals),
        socket_(std::move(socket)),
        write_signal_(socket_.get_executor()),
        drain_signal_(socket_.get_executor()),
        watchdog_(socket_.get_executor()) {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    remote_ = ec ? "?" : endpoint_text(ep);
    remote_ip_ = ec ? "" : ep.address().to_string();
    set_no_delay(socket_, opt_.tcp_no_delay, "peer " + remote_);
    connected_at_ = Clock::now();
    read_deadline_ = connected_at_ + opt_.handshake_timeout;
    if (opt_.max_queued_responses == 0) opt_.max_queued_responses = 1;
    if (opt_.max_frame == 0) opt_.max_frame = kMaxFrameBytes;
  }

  void start() {
    auto self = shared_from_this();
    asio::co_spawn(socket_.get_executor(), [self] { return self->reader(); }, asio::detached);
    asio::co_spawn(socket_.get_executor(), [self] { return self->writer(); }, asio::detached);
    asio::co_spawn(socket_.get_executor(), [self] { return self->watchdog(); }, asio::detached);
  }

  void send(const Message& m) {
    if (stopped_ || closing_) return;
    queue_.push_back(encode_frame(m));
    write_signal_.cancel();
  }

  void close_after_flush(const std::string& reason) {
    if (stopped_ || closing_) return;
    closing_ = true;
    close_reason_ = reason;
    read_deadline_ = Clock::now() + std::chrono::seconds(2);
    watchdog_.cancel();
    write_signal_.cancel();
  }

  void stop(const std::string& reason) {
    if (stopped_) return;
    auto self = shared_from_this();  // alive until we return, whoever drops the Session
    stopped_ = true;
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    write_signal_.cancel();
    drain_signal_.cancel();
    watchdog_.cancel();
    events_.on_closed(id_, reason);
  }

  void set_request_deadline(Clock::time_point t) {
    request_deadline_ = t;
    watchdog_.cancel();
  }

  awaitable<void> reader() {
    auto self = shared_from_this();
    std::array<uint8_t, kFrameHeaderBytes> header{};
    Bytes body;
    while (!stopped_) {
      error_code ec;
      co_await asio::async_read(socket_, asio::buffer(header),
                                asio::redirect_error(use_awaitable, ec));
      if (ec || stopped_) break;
      auto len = decode_frame_length(header, opt_.max_frame);
      if (!len.ok()) {
        events_.on_undecodable(id_, /*frame=*/true, len.error());
        co_return;
      }
      body.resize(len.value());
      co_await asio::async_read(socket_, asio::buffer(body),
                                asio::redirect_error(use_awaitable, ec));
      if (ec || stopped_) break;
      read_deadline_ = Clock::now() + opt_.idle_timeout;
      bytes_in_ += kFrameHeaderBytes + body.size();
      totals_.in += kFrameHeaderBytes + body.size();
      if (closing_) continue;  // draining: ignore what it still says
      auto msg = decode_message(body);
      if (!msg.ok()) {
        events_.on_undecodable(id_, /*frame=*/false, msg.error());
        co_return;
      }
      events_.on_message(id_, std::move(msg).value());
      // At most max_queued_responses answers wait for the socket: stop reading
      // (so the peer's requests wait in its own buffers) until the writer drains.
      while (!stopped_ && !closing_ && queue_.size() >= opt_.max_queued_responses) {
        drain_signal_.expires_at(kNever);
        co_await drain_signal_.async_wait(asio::redirect_error(use_awaitable, ec));
      }
    }
    if (!stopped_ && closing_) co_return;  // the writer closes after flushing
    stop("connection closed");
  }

  awaitable<void> writer() {
    auto self = shared_from_this();
    while (!stopped_) {
      if (queue_.empty()) {
        if (closing_) {
          stop(close_reason_);
          co_return;
        }
        error_code ec;
        write_signal_.expires_at(kNever);
        co_await write_signal_.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      write_deadline_ = Clock::now() + opt_.write_timeout;
      error_code ec;
      co_await asio::async_write(socket_, asio::buffer(queue_.front()),
                                 asio::redirect_error(use_awaitable, ec));
      write_deadline_ = kNever;
      if (ec) {
        stop("write failed: " + ec.message());
        co_return;
      }
      bytes_out_ += queue_.front().size();
      totals_.out += queue_.front().size();
      queue_.pop_front();
      drain_signal_.cancel();
    }
  }

  awaitable<void> watchdog() {
    auto self = shared_from_this();
    while (!stopped_) {
      auto now = Clock::now();
      if (read_deadline_ <= now) {
        stop(closing_ ? close_reason_ : handshaken_ ? "idle timeout" : "handshake timeout");
        co_return;
      }
      if (write_deadline_ <= now) {
        stop("write timeout (peer does not read)");
        co_return;
      }
      if (request_deadline_ <= now) {
        stop("request timeout (GetEntries unanswered)");
        co_return;
      }
      error_code ec;
      watchdog_.expires_at(std::min({read_deadline_, write_deadline_, request_deadline_}));
      co_await watchdog_.async_wait(asio::redirect_error(use_awaitable, ec));
    }
  }

  uint64_t id_;
  SessionOptions opt_;
  SessionEvents& events_;
  TrafficTotals& totals_;
  tcp::socket socket_;
  asio::steady_timer write_signal_, drain_signal_, watchdog_;
  std::deque<Bytes> queue_;
  std::string remote_, remote_ip_;
  Clock::time_point connected_at_;
  Clock::time_point read_deadline_, write_deadline_ = kNever, request_deadline_ = kNever;
  std::string close_reason_;
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
  bool stopped_ = false, closing_ = false, handshaken_ = false;
};

Session::Session(TcpSocket&& socket, uint64_t id, const SessionOptions& options,
                 SessionEvents& events, TrafficTotals& totals)
    : st_(std::make_shared<State>(std::move(socket.socket), id, options, events, totals)) {}

Session::~Session() = default;

void Session::start() { st_->start(); }
void Session::send(const Message& m) { st_->send(m); }
void Session::close_after_flush(const std::string& reason) { st_->close_after_flush(reason); }
void Session::stop(const std::string& reason) { st_->stop(reason); }
void Session::set_request_deadline(Clock::time_point t) { st_->set_request_deadline(t); }
void Session::set_handshaken() { st_->handshaken_ = true; }
uint64_t Session::id() const { return st_->id_; }
const std::string& Session::remote() const { return st_->remote_; }
const std::string& Session::remote_ip() const { return st_->remote_ip_; }
bool Session::stopped() const { return st_->stopped_; }
bool Session::closing() const { return st_->closing_; }
uint64_t Session::bytes_in() const { return st_->bytes_in_; }
uint64_t Session::bytes_out() const { return st_->bytes_out_; }
Clock::time_point Session::connected_at() const { return st_->connected_at_; }

}  // namespace swarmlite::net
