// The swarm node: see node.h for the contract and docs/protocol.md for the
// sync rules. Shape of the Asio C++20 chat_server example: one Session per
// TCP connection with a reader, a writer (write queue) and a watchdog
// coroutine (deadlines), an explicit stop(); errors as values through
// redirect_error. Everything in Impl runs on the io thread; the Worker thread
// only runs store/apply jobs and posts results back.
#include "net/node.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "net/peer_set.h"
#include "net/protocol.h"
#include "net/worker.h"

namespace swarmlite::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
using boost::system::error_code;

namespace {

constexpr auto kNever = Clock::time_point::max();
constexpr auto kTick = std::chrono::milliseconds(250);

std::string hex_id(uint64_t id) { return fmt::format("{:016x}", id); }

std::string endpoint_text(const tcp::endpoint& ep) {
  auto addr = ep.address();
  if (addr.is_v6()) return fmt::format("[{}]:{}", addr.to_string(), ep.port());
  return fmt::format("{}:{}", addr.to_string(), ep.port());
}

int64_t ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

}  // namespace

// ---------------------------------------------------------------------------
// LogOnlyBackend

Status LogOnlyBackend::store_entries(std::span<const Bytes> entries, const Head& head,
                                     std::span<const Hash32> proof) {
  std::lock_guard lock(mu_);
  return log_.append_proven(entries, head, proof);
}

Status NodeBackend::store_head(const Head&) {
  return make_error(Errc::refused, "this node signs its own heads");
}

Status LogOnlyBackend::store_head(const Head& head) {
  std::lock_guard lock(mu_);
  return log_.set_head(head);
}

uint64_t LogOnlyBackend::applied_size() const {
  std::lock_guard lock(mu_);
  return log_.size();
}

// ---------------------------------------------------------------------------

class Session;

struct Node::Impl {
  Impl(NodeBackend& b, NodeOptions o);

  // Lifecycle (io thread unless noted).
  Status start();
  void shutdown();
  awaitable<void> accept_loop();
  awaitable<void> tick_loop();
  awaitable<void> dial(std::string address);

  // Session events.
  void on_session_ready(Session& s);
  void on_session_closed(Session& s, const std::string& reason);
  void on_message(Session& s, Message&& m);
  void on_hello(Session& s, Hello&& h);
  void on_head(Session& s, const Head& h);
  void on_get_entries(Session& s, const GetEntries& g);
  void on_entries(Session& s, Entries&& e);
  void on_get_peers(Session& s);
  void on_peers(Session& s, const Peers& p);
  void on_evidence(Session& s, const Evidence& e);
  void on_error(Session& s, const ErrorMsg& e);
  void misbehaved(Session& s, const std::string& reason);

  // Sync.
  void check_head(const Head& h, const std::string& from);
  void schedule_fetch();
  void on_stored(uint64_t session_id, std::vector<std::string> ban_keys, std::string who,
                 uint64_t n, Head head, Status st);
  void relay_head();
  bool make_room(Session& newcomer);
  void equivocation(Evidence e, const std::string& how);
  Hello make_hello();
  NodeStatus make_status();
  std::set<std::string> session_addresses() const;
  Session* find_session(uint64_t id);

  NodeBackend& backend;
  NodeOptions opt;
  PublicKey log_id;
  uint64_t node_id = 0;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer tick{io};
  std::optional<asio::signal_set> signals;
  std::thread io_thread;
  Worker worker;
  // Local fault of storing (docs/operations.md "Local faults"): set from a
  // store job's result, retried with backoff, never a reason to ban anyone.
  FaultState store_fault;

  std::string bound_listen, announce;
  std::atomic<uint16_t> port{0};
  std::map<uint64_t, std::shared_ptr<Session>> sessions;
  uint64_t next_session_id = 1;
  std::set<std::string> dialling;
  std::set<std::string> self_addresses;  // dialled addresses that turned out to be us
  AddressBook book;
  BanList bans;
  std::optional<Head> best_head;
  bool fetch_busy = false;  // a GetEntries is out or its batch is being stored
  uint64_t fetch_counter = 0;
  uint64_t relayed_size = 0;
  uint64_t adopting_size = 0;  // a received head being stored by store_head (check_head)
  std::optional<Evidence> evidence;
  EvidenceStore evidence_store{opt.data_dir};  // evidence.bin; io thread
  uint64_t entries_stored = 0, entries_served = 0, bytes_in = 0, bytes_out = 0;
  bool stopping = false;
  Clock::time_point started_at = Clock::now();

  std::mutex life_mu;
  std::condition_variable life_cv;
  bool started = false, stop_begun = false, joined = false;
  std::vector<std::function<void()>> stopping_callbacks;
};

// ---------------------------------------------------------------------------

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Node::Impl& node, tcp::socket socket, uint64_t id, bool outbound, std::string dialled)
      : id_(id),
        outbound_(outbound),
        dialled_(std::move(dialled)),
        node_(node),
        socket_(std::move(socket)),
        write_signal_(socket_.get_executor()),
        drain_signal_(socket_.get_executor()),
        watchdog_(socket_.get_executor()) {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    remote_ = ec ? "?" : endpoint_text(ep);
    remote_ip_ = ec ? "" : ep.address().to_string();
    connected_at_ = Clock::now();
    last_useful_ = connected_at_;
    read_deadline_ = connected_at_ + node_.opt.handshake_timeout;
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
  // Sends what is queued, then closes (Error replies before a close).
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
    stopped_ = true;
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    write_signal_.cancel();
    drain_signal_.cancel();
    watchdog_.cancel();
    node_.on_session_closed(*this, reason);
  }
  // A request of ours is out: the watchdog enforces its deadline.
  void set_request_deadline(Clock::time_point t) {
    request_deadline_ = t;
    watchdog_.cancel();
  }

  // Identity and sync state (io thread).
  uint64_t id_;
  bool outbound_;
  std::string dialled_;  // outbound: the address we dialled
  std::string remote_, remote_ip_;
  bool ready_ = false;  // Hello accepted
  uint64_t remote_node_id_ = 0;
  std::string announced_;  // its listen address as announced (0.0.0.0 replaced by its IP)
  uint64_t head_size_ = 0;  // newest head it announced
  uint64_t told_size_ = 0;  // newest head of ours it was sent (Hello or HeadMsg)
  std::string range_;       // inbound: address_range of remote_ip_
  Clock::time_point last_useful_;  // inbound eviction: connect, its fetches, new heads/entries it sent
  uint64_t last_used_ = 0;
  std::optional<GetEntries> request_;  // our GetEntries in flight
  std::optional<Head> request_anchor_;
  Clock::time_point connected_at_, last_peers_request_{};
  uint64_t bytes_in_ = 0, bytes_out_ = 0, entries_received_ = 0;
  bool stopped_ = false, closing_ = false;

  // Who to ban for what this session sent.
  std::vector<std::string> ban_keys() const {
    std::vector<std::string> keys;
    if (remote_node_id_) keys.push_back("node:" + hex_id(remote_node_id_));
    if (!announced_.empty()) keys.push_back(announced_);
    if (!dialled_.empty() && dialled_ != announced_) keys.push_back(dialled_);
    return keys;
  }
  std::string name() const {
    return fmt::format("#{} {}", id_, !announced_.empty() ? announced_
                                      : !dialled_.empty() ? dialled_ : remote_);
  }

 private:
  awaitable<void> reader() {
    auto self = shared_from_this();
    std::array<uint8_t, kFrameHeaderBytes> header{};
    Bytes body;
    const size_t max_frame = node_.opt.max_frame ? node_.opt.max_frame : kMaxFrameBytes;
    while (!stopped_) {
      error_code ec;
      co_await asio::async_read(socket_, asio::buffer(header),
                                asio::redirect_error(use_awaitable, ec));
      if (ec || stopped_) break;
      auto len = decode_frame_length(header, max_frame);
      if (!len.ok()) {
        node_.misbehaved(*this, "invalid frame: " + len.error().to_string());
        co_return;
      }
      body.resize(len.value());
      co_await asio::async_read(socket_, asio::buffer(body),
                                asio::redirect_error(use_awaitable, ec));
      if (ec || stopped_) break;
      read_deadline_ = Clock::now() + node_.opt.idle_timeout;
      bytes_in_ += kFrameHeaderBytes + body.size();
      node_.bytes_in += kFrameHeaderBytes + body.size();
      if (closing_) continue;  // draining: ignore what it still says
      auto msg = decode_message(body);
      if (!msg.ok()) {
        if (msg.error().code == Errc::bad_version) {
          send(ErrorMsg{ErrorCode::bad_version, msg.error().message});
          close_after_flush("it speaks another protocol version");
        } else {
          node_.misbehaved(*this, "invalid message: " + msg.error().to_string());
        }
        co_return;
      }
      node_.on_message(*this, std::move(msg).value());
      // At most max_queued_responses answers wait for the socket: stop reading
      // (so the peer's requests wait in its own buffers) until the writer drains.
      while (!stopped_ && !closing_ && queue_.size() >= node_.opt.max_queued_responses) {
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
      write_deadline_ = Clock::now() + node_.opt.request_timeout;
      error_code ec;
      co_await asio::async_write(socket_, asio::buffer(queue_.front()),
                                 asio::redirect_error(use_awaitable, ec));
      write_deadline_ = kNever;
      if (ec) {
        stop("write failed: " + ec.message());
        co_return;
      }
      bytes_out_ += queue_.front().size();
      node_.bytes_out += queue_.front().size();
      queue_.pop_front();
      drain_signal_.cancel();
    }
  }

  awaitable<void> watchdog() {
    auto self = shared_from_this();
    while (!stopped_) {
      auto now = Clock::now();
      if (read_deadline_ <= now) {
        stop(closing_ ? close_reason_ : ready_ ? "idle timeout" : "handshake timeout");
        co_return;
      }
      if (write_deadline_ <= now) {
        stop("write timeout (peer does not read)");
        co_return;
      }
      if (request_ && request_deadline_ <= now) {
        stop("request timeout (GetEntries unanswered)");
        co_return;
      }
      error_code ec;
      watchdog_.expires_at(std::min({read_deadline_, write_deadline_,
                                     request_ ? request_deadline_ : kNever}));
      co_await watchdog_.async_wait(asio::redirect_error(use_awaitable, ec));
    }
  }

  Node::Impl& node_;
  tcp::socket socket_;
  asio::steady_timer write_signal_, drain_signal_, watchdog_;
  std::deque<Bytes> queue_;
  Clock::time_point read_deadline_, write_deadline_ = kNever, request_deadline_ = kNever;
  std::string close_reason_;
};

// ---------------------------------------------------------------------------
// Node::Impl

Node::Impl::Impl(NodeBackend& b, NodeOptions o)
    : backend(b),
      opt(std::move(o)),
      log_id(b.log_id()),
      worker(b),
      book(256, "", BackoffPolicy{opt.backoff_initial, opt.backoff_max}) {
  randombytes_buf(&node_id, sizeof node_id);
  if (node_id == 0) node_id = 1;
  if (opt.max_queued_responses == 0) opt.max_queued_responses = 1;
}

Status Node::Impl::start() {
  if (!opt.listen.empty()) {
    SWL_ASSIGN(HostPort hp, parse_host_port(opt.listen, /*allow_port_zero=*/true));
    error_code ec;
    auto addr = asio::ip::make_address(hp.host, ec);
    if (ec) return make_error(Errc::invalid_argument, "listen address '{}': {}", opt.listen, ec.message());
    tcp::endpoint ep(addr, hp.port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return make_error(Errc::io_error, "listen on {}: {}", opt.listen, ec.message());
    auto local = acceptor.local_endpoint(ec);
    port = local.port();
    bound_listen = endpoint_text(local);
    announce = opt.announce.empty() ? bound_listen : opt.announce;
  } else {
    announce = opt.announce;
  }
  book = AddressBook(256, announce, BackoffPolicy{opt.backoff_initial, opt.backoff_max});
  for (const auto& s : opt.seeds) {
    if (!parse_host_port(s).ok()) {
      return make_error(Errc::invalid_argument, "peer address '{}': {}", s,
                        parse_host_port(s).error().message);
    }
    book.add(s, /*seed=*/true);
  }

  if (auto loaded = evidence_store.load(log_id); !loaded.ok()) {
    spdlog::warn("ignoring the evidence file: {}", loaded.error().to_string());
  } else if (*loaded) {
    evidence = std::move(**loaded);
    spdlog::critical("log {} equivocated (evidence in {}): not following it", log_id.hex(),
                     evidence_store.path().string());
  }
  uint64_t stored;
  {
    std::lock_guard lock(backend.log_mutex());
    const Log& log = backend.log();
    if (log.head()) relayed_size = log.head()->size;
    stored = log.size();
  }
  if (evidence) worker.halt_apply("the log equivocated");
  if (!backend.is_primary()) worker.want_apply(stored);  // resume a replay cut short

  if (opt.handle_signals) {
    signals.emplace(io, SIGINT, SIGTERM);
    signals->async_wait([this](const error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: stopping", sig);
      shutdown();
    });
  }
  if (acceptor.is_open()) asio::co_spawn(io, accept_loop(), asio::detached);
  asio::co_spawn(io, tick_loop(), asio::detached);
  worker.start();
  io_thread = std::thread([this] { io.run(); });
  spdlog::info("node {} for log {} ({}), listening on {}, {} seed(s)", hex_id(node_id),
               log_id.hex(), backend.is_primary() ? "primary" : "replica",
               bound_listen.empty() ? "-" : bound_listen, opt.seeds.size());
  return {};
}

void Node::Impl::shutdown() {
  if (stopping) return;
  stopping = true;
  for (auto& fn : stopping_callbacks) fn();
  error_code ec;
  acceptor.close(ec);
  tick.cancel();
  if (signals) signals->cancel(ec);
  auto copy = sessions;
  for (auto& [id, s] : copy) s->stop("node stopping");
  io.stop();  // pending connects and timers are dropped with the io_context
  {
    std::lock_guard lock(life_mu);
    stop_begun = true;
  }
  life_cv.notify_all();
}

awaitable<void> Node::Impl::accept_loop() {
  while (!stopping) {
    error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (stopping) co_return;
    if (ec) {
      spdlog::warn("accept on {}: {}", bound_listen, ec.message());
      asio::steady_timer pause(io, std::chrono::milliseconds(100));  // e.g. out of file descriptors
      co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    auto s = std::make_shared<Session>(*this, std::move(socket), next_session_id++, false, "");
    s->range_ = address_range(s->remote_ip_, opt.inbound_range_v4_bits, opt.inbound_range_v6_bits);
    sessions[s->id_] = s;
    s->start();
    if (!make_room(*s)) continue;
    Hello hello = make_hello();
    s->told_size_ = hello.head ? hello.head->size : 0;
    s->send(hello);
  }
}

// A new inbound session fits if its address range and the node have a free
// slot, or one can be freed by closing the inbound session idle the longest
// (peer_set.h choose_eviction); otherwise it is refused. Sessions already
// closing do not count.
bool Node::Impl::make_room(Session& newcomer) {
  auto now = Clock::now();
  size_t live = 0, in_range = 0;
  std::vector<InboundInfo> inbound;
  for (auto& [id, s] : sessions) {
    if (s.get() == &newcomer || s->stopped_ || s->closing_) continue;
    ++live;
    if (s->outbound_) continue;
    if (s->range_ == newcomer.range_) ++in_range;
    inbound.push_back({id, s->range_, s->last_useful_, s->request_.has_value()});
  }
  auto evict_for = [&](const std::string& range, const std::string& why) {
    auto victim = choose_eviction(inbound, range, now, opt.evict_idle_after);
    if (!victim) {
      newcomer.send(ErrorMsg{ErrorCode::too_many_peers, why});
      newcomer.close_after_flush(why);
      return false;
    }
    Session& v = *sessions[*victim];
    spdlog::info("closing idle peer {} to make room for {} ({})", v.name(), newcomer.name(), why);
    v.send(ErrorMsg{ErrorCode::too_many_peers, "closed to make room: idle while the node is full"});
    v.close_after_flush("evicted: idle while the node is full");
    std::erase_if(inbound, [&](const InboundInfo& i) { return i.id == *victim; });
    --live;
    return true;
  };
  if (opt.max_inbound_per_range > 0 && in_range >= opt.max_inbound_per_range &&
      !evict_for(newcomer.range_, fmt::format("connection limit of {} reached for {}",
                                              opt.max_inbound_per_range, newcomer.range_))) {
    return false;
  }
  if (live >= opt.max_connections && !evict_for("", "connection limit reached")) return false;
  return true;
}

std::set<std::string> Node::Impl::session_addresses() const {
  std::set<std::string> out;
  for (auto& [id, s] : sessions) {
    if (!s->announced_.empty()) out.insert(s->announced_);
    if (!s->dialled_.empty()) out.insert(s->dialled_);
  }
  return out;
}

awaitable<void> Node::Impl::tick_loop() {
  while (!stopping) {
    auto now = Clock::now();
    // Keep up to max_outbound dialled sessions.
    size_t outbound = dialling.size();
    for (auto& [id, s] : sessions) outbound += s->outbound_ ? 1 : 0;
    // Seeds (--from) that are not connected are redialled (with their backoff)
    // even when learnt addresses hold every outbound slot: otherwise peers that
    // lose their seed can settle into a group with no path to the primary.
    // So a node dials at most max_outbound + (number of seeds).
    const bool slots_free = outbound < opt.max_outbound;
    if (sessions.size() < opt.max_connections && (slots_free || opt.max_outbound > 0)) {
      auto exclude = session_addresses();
      exclude.insert(dialling.begin(), dialling.end());
      exclude.insert(self_addresses.begin(), self_addresses.end());
      for (auto& b : bans.active(now)) exclude.insert(b.key);
      auto picked = slots_free ? book.pick_to_dial(opt.max_outbound - outbound, exclude, now)
                               : book.pick_to_dial(opt.seeds.size(), exclude, now, /*seeds_only=*/true);
      for (auto& a : picked) {
        dialling.insert(a);
        asio::co_spawn(io, dial(a), asio::detached);
      }
    }
    // Ask each peer for addresses now and then (also keeps idle connections alive).
    for (auto& [id, s] : sessions) {
      if (s->ready_ && now - s->last_peers_request_ >= opt.peers_interval) {
        s->last_peers_request_ = now;
        s->send(GetPeers{});
      }
    }
    relay_head();  // the primary's new heads, if nobody called notify_new_head()
    evidence_store.retry();  // evidence a failed write could not store yet
    schedule_fetch();
    error_code ec;
    tick.expires_after(kTick);
    co_await tick.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

awaitable<void> Node::Impl::dial(std::string address) {
  auto hp = parse_host_port(address);
  error_code ec;
  tcp::resolver resolver(io);
  auto endpoints = co_await resolver.async_resolve(hp->host, std::to_string(hp->port),
                                                   asio::redirect_error(use_awaitable, ec));
  auto socket = std::make_shared<tcp::socket>(io);
  if (!ec && !stopping) {
    asio::steady_timer deadline(io);
    deadline.expires_after(opt.handshake_timeout);
    deadline.async_wait([socket](const error_code& e) {
      if (!e) socket->close();
    });
    co_await asio::async_connect(*socket, endpoints, asio::redirect_error(use_awaitable, ec));
    deadline.cancel();
    if (!ec && !socket->is_open()) ec = asio::error::timed_out;
  }
  if (stopping) co_return;
  dialling.erase(address);
  if (ec) {
    spdlog::debug("dial {}: {}", address, ec.message());
    book.on_dial_failed(address, Clock::now());
    co_return;
  }
  auto s = std::make_shared<Session>(*this, std::move(*socket), next_session_id++, true, address);
  sessions[s->id_] = s;
  s->start();
  Hello hello = make_hello();
  s->told_size_ = hello.head ? hello.head->size : 0;
  s->send(hello);
}

Hello Node::Impl::make_hello() {
  Hello h;
  h.log_id = log_id;
  h.node_id = node_id;
  {
    std::lock_guard lock(backend.log_mutex());
    h.head = backend.log().head();
  }
  h.listen = announce;
  return h;
}

Session* Node::Impl::find_session(uint64_t id) {
  auto it = sessions.find(id);
  return it == sessions.end() || it->second->stopped_ ? nullptr : it->second.get();
}

void Node::Impl::on_session_closed(Session& s, const std::string& reason) {
  auto keep = sessions[s.id_];  // alive until we return
  sessions.erase(s.id_);
  if (s.request_) {
    s.request_.reset();
    fetch_busy = false;
  }
  if (s.outbound_ && !stopping) book.on_dial_failed(s.dialled_, Clock::now());
  if (s.ready_) {
    spdlog::info("peer {} disconnected: {}", s.name(), reason);
  } else {
    spdlog::debug("connection {} closed before handshake: {}", s.name(), reason);
  }
  if (!stopping) schedule_fetch();
}

void Node::Impl::misbehaved(Session& s, const std::string& reason) {
  auto now = Clock::now();
  auto keys = s.ban_keys();
  for (const auto& k : keys) bans.ban(k, reason, now, opt.ban_time);
  spdlog::warn("banned peer {} ({}) for {} s: {}", s.name(),
               keys.empty() ? "no identity yet: connection only" : fmt::format("{}", fmt::join(keys, ", ")),
               std::chrono::duration_cast<std::chrono::seconds>(opt.ban_time).count(), reason);
  s.stop("banned: " + reason);
}

void Node::Impl::on_message(Session& s, Message&& m) {
  if (!s.ready_ && !std::holds_alternative<Hello>(m) && !std::holds_alternative<ErrorMsg>(m)) {
    misbehaved(s, fmt::format("{} before Hello", message_type_name(message_type(m))));
    return;
  }
  std::visit(
      [&](auto&& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Hello>) on_hello(s, std::move(x));
        else if constexpr (std::is_same_v<T, HeadMsg>) on_head(s, x.head);
        else if constexpr (std::is_same_v<T, GetEntries>) on_get_entries(s, x);
        else if constexpr (std::is_same_v<T, Entries>) on_entries(s, std::move(x));
        else if constexpr (std::is_same_v<T, GetPeers>) on_get_peers(s);
        else if constexpr (std::is_same_v<T, Peers>) on_peers(s, x);
        else if constexpr (std::is_same_v<T, EvidenceMsg>) on_evidence(s, x.evidence);
        else if constexpr (std::is_same_v<T, ErrorMsg>) on_error(s, x);
      },
      std::move(m));
}

void Node::Impl::on_hello(Session& s, Hello&& h) {
  if (s.ready_) return misbehaved(s, "second Hello");
  if (h.log_id != log_id) {
    s.send(ErrorMsg{ErrorCode::wrong_log, "this node follows log " + log_id.hex()});
    s.close_after_flush("it follows another log: " + h.log_id.hex());
    spdlog::info("refused {}: it follows log {}", s.name(), h.log_id.hex());
    return;
  }
  if (h.node_id == node_id) {
    if (!s.dialled_.empty()) self_addresses.insert(s.dialled_);
    s.send(ErrorMsg{ErrorCode::duplicate, "this is you"});
    s.close_after_flush("connected to itself");
    return;
  }
  s.remote_node_id_ = h.node_id;
  if (!h.listen.empty()) {
    auto hp = parse_host_port(h.listen);  // the codec checked it
    if (hp.ok() && (hp->host == "0.0.0.0" || hp->host == "::") && !s.remote_ip_.empty()) {
      s.announced_ = (s.remote_ip_.find(':') != std::string::npos)
                         ? fmt::format("[{}]:{}", s.remote_ip_, hp->port)
                         : fmt::format("{}:{}", s.remote_ip_, hp->port);
    } else {
      s.announced_ = h.listen;
    }
  }
  auto now = Clock::now();
  for (const auto& key : s.ban_keys()) {
    if (auto ban = bans.find(key, now)) {
      s.send(ErrorMsg{ErrorCode::banned, "banned: " + ban->reason});
      s.close_after_flush("banned: " + ban->reason);
      return;
    }
  }
  // One session per pair of nodes: keep the one dialled by the smaller node id.
  for (auto& [id, other] : sessions) {
    if (other.get() == &s || !other->ready_ || other->remote_node_id_ != h.node_id) continue;
    auto initiator = [&](const Session& x) { return x.outbound_ ? node_id : h.node_id; };
    uint64_t keeper = std::min(node_id, h.node_id);
    Session& loser = (initiator(s) == keeper && initiator(*other) != keeper) ? *other : s;
    loser.send(ErrorMsg{ErrorCode::duplicate, "already connected"});
    loser.close_after_flush("duplicate connection");
    if (&loser == &s) return;
    break;
  }
  s.ready_ = true;
  if (s.outbound_) book.on_connected(s.dialled_);
  if (!s.announced_.empty()) book.add(s.announced_);
  spdlog::info("peer {} connected ({}, node {}, head {})", s.name(),
               s.outbound_ ? "outbound" : "inbound", hex_id(h.node_id),
               h.head ? std::to_string(h.head->size) : "none");
  s.last_peers_request_ = now;
  s.send(GetPeers{});
  if (evidence) s.send(EvidenceMsg{*evidence});
  if (h.head) on_head(s, *h.head);
}

void Node::Impl::on_head(Session& s, const Head& h) {
  if (auto st = h.verify(log_id); !st.ok()) {
    return misbehaved(s, "invalid head at size " + std::to_string(h.size) + ": " + st.error().to_string());
  }
  if (h.size > s.head_size_) s.last_useful_ = Clock::now();
  s.head_size_ = std::max(s.head_size_, h.size);
  check_head(h, s.name());
  schedule_fetch();
}

// A verified head from anyone: compare it with what we hold; follow it if it is higher.
void Node::Impl::check_head(const Head& h, const std::string& from) {
  if (evidence) return;
  std::optional<Evidence> ev;
  std::string how;
  bool adopt = false;
  const uint64_t applied = backend.is_primary() ? 0 : backend.applied_size();  // not under log_mutex
  {
    std::lock_guard lock(backend.log_mutex());
    const Log& log = backend.log();
    const auto& mine = log.head();
    // A head for entries we hold but newer than our stored one (our head file
    // was lost, or a batch ended short of its head): store it, if it covers
    // what we applied, so we can prove and report ready without waiting for
    // the next write.
    if (!backend.is_primary() && (!mine || h.size > mine->size) && h.size > adopting_size &&
        h.size <= log.size() && h.size >= applied) {
      auto root = log.tree().root_at(h.size);
      adopt = root.ok() && root.value() == h.log_root;
    }
    if (mine && mine->size == h.size) {
      if (auto e = evidence_from_heads(*mine, h); e.ok()) {
        ev = std::move(e).value();
        how = fmt::format("two heads at size {} from {} and our log", h.size, from);
      }
    } else if (h.size > 0 && h.size <= log.size()) {
      auto root = log.tree().root_at(h.size);
      if (root.ok() && root.value() != h.log_root) {
        if (mine && mine->size > h.size) {
          auto path = evidence_path(log.tree(), h.size, mine->size);
          if (path.ok()) {
            if (auto e = evidence_from_proof(h, *mine, path.value()); e.ok()) {
              ev = std::move(e).value();
              how = fmt::format("head at size {} from {} is not a prefix of ours at {}", h.size,
                                from, mine->size);
            }
          }
        }
        if (!ev) {
          spdlog::warn("head at size {} from {} contradicts our unsigned-for entries; ignored",
                       h.size, from);
        }
      }
    }
  }
  if (ev) return equivocation(std::move(*ev), how);
  if (adopt) {
    adopting_size = h.size;
    worker.post([this, h, from] {
      Status st = backend.store_head(h);
      asio::post(io, [this, size = h.size, from, st = std::move(st)] {
        if (stopping) return;
        if (st.ok()) {
          spdlog::info("stored the head at size {} from {} for entries we hold", size, from);
          relay_head();
        } else {
          spdlog::warn("head at size {} from {} not stored: {}", size, from, st.error().to_string());
          adopting_size = 0;
        }
      });
    });
  }
  if (best_head && best_head->size == h.size) {
    if (auto e = evidence_from_heads(*best_head, h); e.ok()) {
      return equivocation(std::move(e).value(),
                          fmt::format("two heads at size {} (latest from {})", h.size, from));
    }
  }
  if (!best_head || h.size > best_head->size) best_head = h;
}

void Node::Impl::schedule_fetch() {
  if (stopping || evidence || fetch_busy || backend.is_primary() || worker.apply_error()) return;
  if (!store_fault.retry_due()) return;  // a local fault: the tick retries after its backoff
  uint64_t local;
  std::optional<Head> anchor;
  {
    std::lock_guard lock(backend.log_mutex());
    local = backend.log().size();
    anchor = backend.log().head();
  }
  if (!best_head || best_head->size <= local) return;
  std::vector<SourceInfo> sources;
  for (auto& [id, s] : sessions) {
    if (s->ready_ && !s->stopped_ && !s->closing_) {
      sources.push_back({id, s->head_size_, s->last_used_, s->request_.has_value()});
    }
  }
  auto chosen = choose_source(sources, local);
  if (!chosen) return;
  Session& s = *sessions[*chosen];
  auto plan = plan_batch(local, s.head_size_, opt.batch_entries);
  if (!plan) return;
  GetEntries g{plan->from, plan->count, anchor ? anchor->size : 0};
  s.request_ = g;
  s.request_anchor_ = anchor;
  s.last_used_ = ++fetch_counter;
  s.set_request_deadline(Clock::now() + opt.request_timeout);
  fetch_busy = true;
  s.send(g);
  spdlog::debug("asked {} for entries [{}, {})", s.name(), g.from, g.from + g.count);
}

void Node::Impl::on_get_entries(Session& s, const GetEntries& g) {
  s.last_useful_ = Clock::now();
  Entries out;
  out.from = g.from;
  std::string failure;
  {
    std::lock_guard lock(backend.log_mutex());
    const Log& log = backend.log();
    const auto& head = log.head();
    if (!head || g.from >= head->size) {
      failure = fmt::format("have {} entries under a signed head", head ? head->size : 0);
    } else {
      out.head = *head;
      uint64_t end = std::min<uint64_t>(g.from + g.count, head->size);
      size_t bytes = 0;
      const size_t max_frame = opt.max_frame ? opt.max_frame : kMaxFrameBytes;
      for (uint64_t i = g.from; i < end; ++i) {
        auto e = log.entry_bytes(i);
        if (!e.ok()) {
          spdlog::error("serving entry {}: {}", i, e.error().to_string());
          break;
        }
        // Each entry costs its bytes + a 4-byte length; leave 64 KiB for head and proofs.
        if (!out.entries.empty() &&
            (bytes + e->size() > opt.batch_bytes || bytes + e->size() + 4 > max_frame - (64u << 10))) {
          break;
        }
        bytes += e->size() + 4;
        out.entries.push_back(std::move(e).value());
      }
      if (out.entries.empty()) {
        failure = "could not read the log";
      } else {
        uint64_t upto = g.from + out.entries.size();
        if (upto < head->size) {
          auto p = log.consistency_proof(upto, head->size);
          if (p.ok()) out.proof = std::move(p).value();
          else failure = p.error().to_string();
        }
        if (g.anchor > 0 && g.anchor < head->size) {
          auto p = evidence_path(log.tree(), g.anchor, head->size);
          if (p.ok()) out.anchor_path = std::move(p).value();
          else failure = p.error().to_string();
        }
      }
    }
  }
  if (!failure.empty()) {
    s.send(ErrorMsg{ErrorCode::not_available,
                    fmt::format("entries from {}: {}", g.from, failure)});
    return;
  }
  entries_served += out.entries.size();
  s.send(out);
}

void Node::Impl::on_entries(Session& s, Entries&& e) {
  if (!s.request_ || e.from != s.request_->from || e.entries.size() > s.request_->count) {
    return misbehaved(s, fmt::format("unrequested entries from {} (x{})", e.from, e.entries.size()));
  }
  auto anchor = s.request_anchor_;
  s.request_.reset();
  s.request_anchor_.reset();
  s.set_request_deadline(kNever);
  const Head& h = e.head;
  if (auto st = h.verify(log_id); !st.ok()) {
    fetch_busy = false;
    return misbehaved(s, "Entries with an invalid head: " + st.error().to_string());
  }
  s.head_size_ = std::max(s.head_size_, h.size);
  // Does the head it proves against extend the newest head we hold? Either the
  // anchor path links them, or it is proof that the primary forked.
  if (anchor && anchor->size > 0 && anchor->size < h.size) {
    auto roots = roots_from_complete_path(anchor->size, h.size, e.anchor_path);
    if (!roots.ok() || roots->new_root != h.log_root) {
      fetch_busy = false;
      return misbehaved(s, fmt::format("anchor path {}→{} does not lead to its head", anchor->size,
                                       h.size));
    }
    if (roots->old_root != anchor->log_root) {
      fetch_busy = false;
      auto ev = evidence_from_proof(*anchor, h, e.anchor_path);
      if (ev.ok()) {
        return equivocation(std::move(ev).value(),
                            fmt::format("head at size {} from {} does not extend ours at {}", h.size,
                                        s.name(), anchor->size));
      }
      return misbehaved(s, "anchor path: " + ev.error().to_string());
    }
  }
  // Verify (signature, entry codec, seq continuity, proof) and store off the io thread.
  uint64_t n = e.entries.size();
  worker.post([this, id = s.id_, keys = s.ban_keys(), who = s.name(), n, e = std::move(e)]() mutable {
    Status st = backend.store_entries(e.entries, e.head, e.proof);
    asio::post(io, [this, id, keys = std::move(keys), who = std::move(who), n,
                     head = std::move(e.head), st = std::move(st)]() mutable {
      on_stored(id, std::move(keys), std::move(who), n, std::move(head), std::move(st));
    });
  });
}

void Node::Impl::on_stored(uint64_t session_id, std::vector<std::string> ban_keys, std::string who,
                           uint64_t n, Head head, Status st) {
  fetch_busy = false;
  if (stopping) return;
  Session* s = find_session(session_id);
  if (!st.ok() && is_local_fault(st.error())) {
    // Our disk, not their data: nobody is banned; retried after a backoff.
    store_fault.failed(st.error());
    auto f = store_fault.get();
    spdlog::error("storing entries from {} failed on this node ({}. attempt), retrying in {} ms: {}",
                  who, f ? f->retries : 0, store_fault.wait().count(), st.error().to_string());
    return;
  }
  if (!st.ok()) {
    std::string reason = "invalid entries: " + st.error().to_string();
    if (s) {
      misbehaved(*s, reason);
    } else {
      for (const auto& k : ban_keys) bans.ban(k, reason, Clock::now(), opt.ban_time);
      spdlog::warn("banned peer {} (gone) : {}", who, reason);
    }
    schedule_fetch();
    return;
  }
  if (store_fault.get()) {
    store_fault.cleared();
    spdlog::info("storing works again");
  }
  entries_stored += n;
  if (s) {
    s->entries_received_ += n;
    s->last_useful_ = Clock::now();
  }
  uint64_t size;
  {
    std::lock_guard lock(backend.log_mutex());
    size = backend.log().size();
  }
  spdlog::debug("stored {} entries from {}; log size {}", n, who, size);
  worker.want_apply(size);
  check_head(head, who);
  relay_head();
  schedule_fetch();
}

// Pushes our newest head (we hold all its entries) to peers that lack it.
void Node::Impl::relay_head() {
  std::optional<Head> head;
  {
    std::lock_guard lock(backend.log_mutex());
    head = backend.log().head();
  }
  if (!head || head->size <= relayed_size) return;
  relayed_size = head->size;
  size_t pushed = 0;
  // To every peer we have not told yet, even one whose own head is higher
  // (the primary): that is how a node learns how far its peers got (/status).
  for (auto& [id, s] : sessions) {
    if (s->ready_ && s->told_size_ < head->size) {
      s->send(HeadMsg{*head});
      s->told_size_ = head->size;
      ++pushed;
    }
  }
  spdlog::debug("head {} pushed to {} peer(s)", head->size, pushed);
}

void Node::Impl::on_get_peers(Session& s) {
  std::set<std::string> exclude{s.announced_, announce};
  Peers p;
  std::set<std::string> seen;
  for (auto& [id, other] : sessions) {
    if (p.addresses.size() >= kMaxAddresses) break;
    const auto& a = other->announced_;
    if (other->ready_ && !a.empty() && !exclude.count(a) && seen.insert(a).second) {
      p.addresses.push_back(a);
    }
  }
  for (auto& a : book.sample(kMaxAddresses, exclude)) {
    if (p.addresses.size() >= kMaxAddresses) break;
    if (seen.insert(a).second) p.addresses.push_back(a);
  }
  s.send(p);
}

void Node::Impl::on_peers(Session&, const Peers& p) {
  size_t added = 0;
  for (const auto& a : p.addresses) {
    if (a != announce && !self_addresses.count(a) && book.add(a)) ++added;
  }
  if (added) spdlog::debug("learnt {} new address(es); {} known", added, book.size());
}

void Node::Impl::on_evidence(Session& s, const Evidence& e) {
  if (auto st = e.verify(log_id); !st.ok()) {
    return misbehaved(s, "invalid evidence: " + st.error().to_string());
  }
  if (!evidence) equivocation(e, "evidence received from " + s.name());
}

void Node::Impl::on_error(Session& s, const ErrorMsg& e) {
  if (e.code == ErrorCode::not_available && s.request_) {
    // It announced more than it serves (e.g. it restarted): ask elsewhere.
    s.head_size_ = std::min(s.head_size_, s.request_->from);
    s.request_.reset();
    s.request_anchor_.reset();
    s.set_request_deadline(kNever);
    fetch_busy = false;
    schedule_fetch();
    return;
  }
  spdlog::info("peer {} says {}: {}", s.name(), static_cast<int>(e.code), e.message);
  s.stop(fmt::format("it sent error {}: {}", static_cast<int>(e.code), e.message));
}

void Node::Impl::equivocation(Evidence e, const std::string& how) {
  if (evidence) return;
  evidence = std::move(e);
  spdlog::critical("log {} EQUIVOCATED ({}): heads at sizes {} and {}; stopped following it",
                   log_id.hex(), how, evidence->a.size, evidence->b.size);
  worker.halt_apply("the log equivocated: " + how);
  // Durable; a failure is reported (evidence_store_fault) and retried by the tick.
  (void)evidence_store.store(*evidence);
  for (auto& [id, s] : sessions) {
    if (s->ready_) s->send(EvidenceMsg{*evidence});
  }
}

NodeStatus Node::Impl::make_status() {
  NodeStatus st;
  auto now = Clock::now();
  st.log_id = log_id.hex();
  st.primary = backend.is_primary();
  st.listen = bound_listen;
  st.announce = announce;
  st.node_id = hex_id(node_id);
  {
    std::lock_guard lock(backend.log_mutex());
    st.log_size = backend.log().size();
    st.head = backend.log().head();
  }
  st.best_size = std::max<uint64_t>(best_head ? best_head->size : 0, st.head ? st.head->size : 0);
  st.applied_size = backend.applied_size();
  st.entries_stored = entries_stored;
  st.entries_served = entries_served;
  st.bytes_in = bytes_in;
  st.bytes_out = bytes_out;
  uint64_t my_size = st.head ? st.head->size : 0;
  for (auto& [id, s] : sessions) {
    if (!s->ready_) continue;
    PeerStatus p;
    p.session = id;
    p.address = !s->announced_.empty() ? s->announced_ : !s->dialled_.empty() ? s->dialled_ : s->remote_;
    p.remote = s->remote_;
    p.node_id = hex_id(s->remote_node_id_);
    p.outbound = s->outbound_;
    p.head_size = s->head_size_;
    p.lag = static_cast<int64_t>(s->head_size_) - static_cast<int64_t>(my_size);
    p.bytes_in = s->bytes_in_;
    p.bytes_out = s->bytes_out_;
    p.entries_received = s->entries_received_;
    p.connected_ms = ms_between(s->connected_at_, now);
    st.peers.push_back(std::move(p));
  }
  for (auto& b : bans.active(now)) {
    st.bans.push_back({b.key, b.reason, ms_between(now, b.until)});
  }
  st.evidence = evidence;
  st.evidence_store_fault = evidence_store.fault();
  st.apply_error = worker.apply_error();
  st.local_fault = worker.apply_fault.get();
  if (!st.local_fault) st.local_fault = store_fault.get();
  st.known_addresses = book.size();
  return st;
}

// ---------------------------------------------------------------------------
// Node

Node::Node(NodeBackend& backend, NodeOptions options)
    : impl_(std::make_unique<Impl>(backend, std::move(options))) {}

Node::~Node() { stop(); }

Status Node::start() {
  {
    std::lock_guard lock(impl_->life_mu);
    if (impl_->started) return make_error(Errc::invalid_argument, "node already started");
    impl_->started = true;
  }
  auto st = impl_->start();
  if (!st.ok()) {
    std::lock_guard lock(impl_->life_mu);
    impl_->stop_begun = impl_->joined = true;
  }
  return st;
}

void Node::stop() {
  {
    std::lock_guard lock(impl_->life_mu);
    if (!impl_->started || impl_->joined) return;
    impl_->joined = true;
  }
  asio::post(impl_->io, [impl = impl_.get()] { impl->shutdown(); });
  if (impl_->io_thread.joinable()) impl_->io_thread.join();
  impl_->worker.stop();  // finishes the store/apply in progress
  {
    std::lock_guard lock(impl_->life_mu);
    impl_->stop_begun = true;
  }
  impl_->life_cv.notify_all();
  spdlog::info("node stopped");
}

void Node::wait() {
  {
    std::unique_lock lock(impl_->life_mu);
    impl_->life_cv.wait(lock, [&] { return impl_->stop_begun || !impl_->started; });
  }
  stop();
}

void Node::on_stopping(std::function<void()> fn) {
  asio::post(impl_->io, [impl = impl_.get(), fn = std::move(fn)]() mutable {
    impl->stopping_callbacks.push_back(std::move(fn));
  });
}

uint16_t Node::listen_port() const { return impl_->port; }
std::string Node::node_id_hex() const { return hex_id(impl_->node_id); }

void Node::notify_new_head() {
  asio::post(impl_->io, [impl = impl_.get()] {
    if (!impl->stopping) impl->relay_head();
  });
}

NodeStatus Node::status() const {
  bool running;
  {
    std::lock_guard lock(impl_->life_mu);
    running = impl_->started && !impl_->joined && !impl_->stop_begun;
  }
  if (!running || impl_->io.get_executor().running_in_this_thread()) return impl_->make_status();
  auto p = std::make_shared<std::promise<NodeStatus>>();
  auto f = p->get_future();
  asio::post(impl_->io, [p, impl = impl_.get()] { p->set_value(impl->make_status()); });
  if (f.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    // The io thread is gone (stopping): nothing mutates the state any more.
    NodeStatus st;
    st.log_id = impl_->log_id.hex();
    return st;
  }
  return f.get();
}

std::optional<Evidence> Node::evidence() const { return status().evidence; }

}  // namespace swarmlite::net
