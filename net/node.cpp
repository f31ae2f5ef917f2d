// The swarm node: see node.h for the contract and docs/protocol.md for the
// sync rules, which live in net/sync.cpp (SyncEngine). This file keeps the
// lifecycle, the accept and dial loops, the tick timer, and turns the
// engine's actions into calls on sessions (net/session.h: the transport) and
// the worker (net/worker.h). Everything in Impl runs on the io thread; the
// Worker thread only runs store/apply jobs and posts results back.
#include "net/node.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <thread>

#include "net/peer_set.h"
#include "net/protocol.h"
#include "net/session.h"
#include "net/sync.h"
#include "net/tcp_socket.h"
#include "net/worker.h"
#include "sqlbridge/engine/page_set.h"
#include "sqlbridge/engine/snapshot_chunk.h"
#include "sqlbridge/tools/snapshot_source.h"

namespace swarmlite::net {

using asio::awaitable;
using asio::use_awaitable;

namespace {

constexpr auto kTick = std::chrono::milliseconds(250);

std::string hex_id(uint64_t id) { return fmt::format("{:016x}", id); }

int64_t ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// The codec's caps (which cannot include the SQLite side) agree with the chunk's.
static_assert(kMaxSnapshotPagesPerRequest == kMaxChunkPageBytes / 512);
static_assert(kMaxSnapshotChunkBytes >= kMaxChunkPageBytes + kEncodedHeadSize + 64 + 8 +
                                            kMaxChunkProofHashes * 32);

static_assert(kMaxGetPagesPgnos == kMaxPagesPerRequest);
static_assert(kMaxGetLeavesPgnos == kMaxLeavesPerRequest);
static_assert(kMaxPagesMsgBytes >= kMaxPageSetBytes);
static_assert(kMaxChangesMsgBytes >= kMaxChangeSetBytes);

// An Error reply whose message fits the codec's cap (a longer one would make a
// frame the peer refuses).
ErrorMsg error_reply(ErrorCode code, std::string message) {
  if (message.size() > kMaxErrorMessageBytes) message.resize(kMaxErrorMessageBytes);
  return ErrorMsg{code, std::move(message)};
}

// A server's answer, encoded (an error passes through).
template <class T>
Result<Bytes> encoded(Result<T> r, Bytes (*encode)(const T&)) {
  if (!r.ok()) return r.take_error();
  return encode(*r);
}

// The answer to a page service request (docs/protocol.md "Page service"):
// `read` asks the server for the encoded set at head `size` (setting *newest
// as PageServer does); the answer is `Msg{set}`, HeadGone when that head is not
// the pinned one, else an Error naming why (bad_request for a request out of
// range or an answer over `cap`; not_available otherwise: nothing pinned, a
// corrupt node, no change history, too many changes).
template <class Msg, class Read>
Message answer_pinned(const PageServer* server, uint64_t size, size_t cap, Read read) {
  if (!server) {
    return error_reply(ErrorCode::not_available, "this node serves no pages");
  }
  uint64_t newest = 0;
  Result<Bytes> set = read(*server, &newest);
  if (!set.ok()) {
    const Error& e = set.error();
    if (e.code == Errc::not_found && newest != 0) return HeadGoneMsg{size, newest};
    if (e.code == Errc::invalid_argument) return error_reply(ErrorCode::bad_request, e.message);
    return error_reply(ErrorCode::not_available, e.to_string());
  }
  // A leaf set of 65536 scattered leaves of a huge tree can outgrow a frame.
  if (set->size() > cap) {
    return error_reply(ErrorCode::bad_request,
                       fmt::format("the answer is {} bytes, over the frame's cap: ask for fewer pages", set->size()));
  }
  return Msg{std::move(set).value()};
}

Message answer_served(SnapshotSource* source, const PageServer* pages, const ServedRequest& request,
                      const std::atomic<bool>* cancel) {
  if (const auto* g = std::get_if<GetPages>(&request)) {
    return answer_pinned<PagesMsg>(
        pages, g->size, kMaxPagesMsgBytes, [&](const PageServer& s, uint64_t* newest) {
          return encoded(s.pinned_pages(g->size, g->pgnos, newest), encode_page_set);
        });
  }
  if (const auto* g = std::get_if<GetLeaves>(&request)) {
    return answer_pinned<LeavesMsg>(
        pages, g->size, kMaxLeavesMsgBytes, [&](const PageServer& s, uint64_t* newest) {
          return encoded(s.pinned_leaves(g->size, g->pgnos, newest), encode_leaf_set);
        });
  }
  if (const auto* g = std::get_if<GetChanges>(&request)) {
    // A primary keeps no change history yet: PageServer's default answers
    // unavailable ("no change history"), sent as not_available.
    return answer_pinned<ChangesMsg>(
        pages, g->to_size, kMaxChangesMsgBytes, [&](const PageServer& s, uint64_t* newest) {
          return encoded(s.pinned_changes(g->from_size, g->to_size, newest), encode_change_set);
        });
  }
  if (!source) return error_reply(ErrorCode::not_available, "this node serves no snapshots");
  if (std::holds_alternative<GetSnapshot>(request)) {
    auto m = source->newest(cancel);
    if (!m.ok()) return error_reply(ErrorCode::not_available, "snapshot: " + m.error().to_string());
    // The suggestion must be a request the peer may send: at most 8 MiB of pages.
    const uint32_t cap = static_cast<uint32_t>(kMaxChunkPageBytes / std::max<uint32_t>(m->page_size, 512));
    return SnapshotManifestMsg{m->head, m->page_size, std::clamp<uint32_t>(m->chunk_pages, 1, cap)};
  }
  const auto& g = std::get<GetSnapshotPages>(request);
  auto chunk = source->chunk(g.size, g.first_page, g.count);
  if (!chunk.ok()) {
    const Error& e = chunk.error();
    if (e.code == Errc::not_found) {  // "gone: head N is not held; newest held is M"
      return error_reply(ErrorCode::snapshot_gone, e.message);
    }
    if (e.code == Errc::invalid_argument) return error_reply(ErrorCode::bad_request, e.message);
    return error_reply(ErrorCode::not_available, e.to_string());
  }
  if (chunk->size() > kMaxSnapshotChunkBytes) {  // cannot happen for a chunk under the page cap
    return error_reply(ErrorCode::not_available, fmt::format("chunk of {} bytes is over the frame's cap", chunk->size()));
  }
  return SnapshotPages{std::move(chunk).value()};
}

}  // namespace

// The log's first entry: 0 until it is compacted (`swarmlite compact`,
// docs/formats/log-store.md "Checkpoint"), or where a log created at a
// checkpoint starts. Hello.first, GetEntries and GetFrontier all read it here
// (docs/protocol.md "First servable entry").
uint64_t first_servable_entry(const Log& log) { return log.first_entry(); }
uint64_t first_servable_entry(const LogView& view) { return view.first; }

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
// Node::Impl: lifecycle, the accept and dial loops, the tick timer, and the
// sync engine's actions carried out on sessions and the worker.

struct Node::Impl : SessionEvents {
  Impl(NodeBackend& b, NodeOptions o);

  // Lifecycle (io thread unless noted).
  Status start();
  void shutdown();
  awaitable<void> accept_loop();
  awaitable<void> tick_loop();
  awaitable<void> dial(std::string address);
  void open_session(tcp::socket socket, bool outbound, const std::string& address);

  // SessionEvents.
  void on_message(uint64_t id, Message&& m) override;
  void on_undecodable(uint64_t id, bool frame, const Error& e) override;
  void on_closed(uint64_t id, const std::string& reason) override;

  // Carries out the engine's actions.
  void run(Actions actions);
  // Starts the session's next snapshot request, if none of its is running.
  void pump_snapshots(uint64_t id);
  Session* find_session(uint64_t id);
  NodeStatus make_status();
  NodeReadiness readiness() const;  // any thread

  NodeBackend& backend;
  NodeOptions opt;
  PublicKey log_id;
  uint64_t node_id = 0;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer tick{io};
  std::optional<asio::signal_set> signals;
  std::thread io_thread;
  // set_size_listener's listener, called from the worker and notify_new_head()'s callers.
  std::mutex size_listener_mu;
  std::function<void()> size_listener;
  void size_grew() {
    std::lock_guard lock(size_listener_mu);
    if (size_listener) size_listener();
  }
  Worker worker;
  SyncEngine sync;
  SessionOptions session_options;

  std::string bound_listen, announce;
  std::atomic<uint16_t> port{0};
  std::map<uint64_t, std::shared_ptr<Session>> sessions;
  uint64_t next_session_id = 1;
  EvidenceStore evidence_store{opt.data_dir};  // evidence.bin; io thread
  // sync.evidence() is set (it never clears): for readiness(), which may not
  // read the engine (io thread only).
  std::atomic<bool> has_evidence{false};
  TrafficTotals traffic;
  bool stopping = false;

  // Snapshot serving (docs/protocol.md "Snapshots"): SnapshotSource calls
  // block (a copy of the database, a pread and a multiproof), so they run on
  // these threads, never on the io thread and never on the worker (applying
  // goes on). Per session one request at a time, in order: answers carry no
  // request id. Two threads: a copy being made does not hold up every chunk.
  std::atomic<SnapshotSource*> snapshot_source{nullptr};
  // The page service (docs/protocol.md "Page service"), answered on the same
  // threads and queues: a page read is a pread and a hash per page.
  std::atomic<const PageServer*> page_server{nullptr};
  std::atomic<bool> snapshot_cancel{false};  // set when stopping: a copy in progress gives up
  asio::thread_pool snapshot_pool{2};
  struct SnapshotQueue {
    std::deque<ServedRequest> pending;
    bool running = false;
  };
  std::map<uint64_t, SnapshotQueue> snapshot_queues;  // io thread
  uint64_t snapshot_requests_served = 0;              // io thread

  std::mutex life_mu;
  std::condition_variable life_cv;
  bool started = false, stop_begun = false, joined = false;
  std::vector<std::function<void()>> stopping_callbacks;
};

namespace {
uint64_t random_node_id() {
  uint64_t id = 0;
  randombytes_buf(&id, sizeof id);
  return id == 0 ? 1 : id;
}
}  // namespace

Node::Impl::Impl(NodeBackend& b, NodeOptions o)
    : backend(b),
      opt(std::move(o)),
      log_id(b.log_id()),
      node_id(random_node_id()),
      worker(b, [this] { size_grew(); }),
      sync(
          b, opt, node_id, [this] { return worker.apply_error().has_value(); },
          // A node with a page service answers GetChanges (from its server's
          // change history, or not_available without one).
          [this] { return page_server.load() ? kFeatureChanges : uint64_t{0}; }) {
  session_options.max_frame = opt.max_frame ? opt.max_frame : kMaxFrameBytes;
  session_options.max_queued_responses = std::max<size_t>(opt.max_queued_responses, 1);
  session_options.handshake_timeout = opt.handshake_timeout;
  session_options.idle_timeout = opt.idle_timeout;
  session_options.write_timeout = opt.request_timeout;
  session_options.tcp_no_delay = opt.tcp_no_delay;
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
  for (const auto& s : opt.seeds) {
    if (!parse_host_port(s).ok()) {
      return make_error(Errc::invalid_argument, "peer address '{}': {}", s,
                        parse_host_port(s).error().message);
    }
  }

  std::optional<Evidence> evidence;
  if (auto loaded = evidence_store.load(log_id); !loaded.ok()) {
    spdlog::warn("ignoring the evidence file: {}", loaded.error().to_string());
  } else if (*loaded) {
    evidence = std::move(**loaded);
    spdlog::critical("log {} equivocated (evidence in {}): not following it", log_id.hex(),
                     evidence_store.path().string());
  }
  if (evidence) {
    worker.halt_apply("the log equivocated");
    has_evidence = true;
  }
  sync.start(announce, std::move(evidence));
  uint64_t stored;
  {
    std::lock_guard lock(backend.log_mutex());
    stored = backend.log().size();
  }
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
  snapshot_cancel = true;
  auto copy = sessions;
  for (auto& entry : copy) entry.second->stop("node stopping");
  io.stop();  // pending connects and timers are dropped with the io_context
  {
    std::lock_guard lock(life_mu);
    stop_begun = true;
  }
  life_cv.notify_all();
}

void Node::Impl::open_session(tcp::socket socket, bool outbound, const std::string& address) {
  uint64_t id = next_session_id++;
  auto s = std::make_shared<Session>(TcpSocket{std::move(socket)}, id, session_options, *this, traffic);
  sessions[id] = s;
  s->start();
  run(sync.opened(id, outbound, address, s->remote(), s->remote_ip(), Clock::now()));
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
    open_session(std::move(socket), /*outbound=*/false, "");
  }
}

awaitable<void> Node::Impl::tick_loop() {
  while (!stopping) {
    run(sync.tick(Clock::now()));
    evidence_store.retry();  // evidence a failed write could not store yet
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
  if (ec) {
    spdlog::debug("dial {}: {}", address, ec.message());
    run(sync.dial_failed(address, Clock::now()));
    co_return;
  }
  open_session(std::move(*socket), /*outbound=*/true, address);
}

Session* Node::Impl::find_session(uint64_t id) {
  auto it = sessions.find(id);
  return it == sessions.end() || it->second->stopped() ? nullptr : it->second.get();
}

void Node::Impl::on_message(uint64_t id, Message&& m) {
  if (!stopping) run(sync.message(id, std::move(m), Clock::now()));
}

void Node::Impl::on_undecodable(uint64_t id, bool frame, const Error& e) {
  if (!stopping) run(sync.undecodable(id, frame, e, Clock::now()));
}

void Node::Impl::on_closed(uint64_t id, const std::string& reason) {
  auto it = sessions.find(id);
  if (it == sessions.end()) return;
  auto keep = it->second;  // alive until we return
  sessions.erase(it);
  snapshot_queues.erase(id);  // a running request's answer finds no queue and is dropped
  if (!stopping) run(sync.closed(id, reason, Clock::now()));
}

void Node::Impl::run(Actions actions) {
  for (auto& action : actions) {
    std::visit(
        [&](auto&& a) {
          using T = std::decay_t<decltype(a)>;
          if constexpr (std::is_same_v<T, SendAction>) {
            if (Session* s = find_session(a.session)) s->send(a.message);
          } else if constexpr (std::is_same_v<T, CloseAction>) {
            if (Session* s = find_session(a.session)) {
              if (a.flush) s->close_after_flush(a.reason);
              else s->stop(a.reason);
            }
          } else if constexpr (std::is_same_v<T, RequestDeadlineAction>) {
            if (Session* s = find_session(a.session)) s->set_request_deadline(a.at);
          } else if constexpr (std::is_same_v<T, HandshakenAction>) {
            if (Session* s = find_session(a.session)) s->set_handshaken();
          } else if constexpr (std::is_same_v<T, BanAction>) {
            // recorded and logged by the engine
          } else if constexpr (std::is_same_v<T, DialAction>) {
            asio::co_spawn(io, dial(a.address), asio::detached);
          } else if constexpr (std::is_same_v<T, StoreAction>) {
            // Verify (signature, entry codec, seq continuity, proof) and store off the io thread.
            uint64_t n = a.entries.entries.size();
            worker.post([this, id = a.session, keys = std::move(a.ban_keys), who = std::move(a.who), n,
                         e = std::move(a.entries)]() mutable {
              // Fetched while the batch before it was stored: if that one
              // failed, this one does not follow the log — skip it, blaming no one.
              if (backend.log().view().size != e.from) {  // this thread is the log's writer
                asio::post(io, [this] {
                  if (!stopping) run(sync.store_skipped(Clock::now()));
                });
                return;
              }
              Status st = backend.store_entries(e.entries, e.head, e.proof);
              if (st.ok()) size_grew();
              asio::post(io, [this, id, keys = std::move(keys), who = std::move(who), n,
                               head = std::move(e.head), st = std::move(st)] {
                if (!stopping) run(sync.stored(id, keys, who, n, head, st, Clock::now()));
              });
            });
          } else if constexpr (std::is_same_v<T, StoreHeadAction>) {
            worker.post([this, h = std::move(a.head), from = std::move(a.from)] {
              Status st = backend.store_head(h);
              asio::post(io, [this, size = h.size, from, st = std::move(st)] {
                if (!stopping) run(sync.head_stored(size, from, st));
              });
            });
          } else if constexpr (std::is_same_v<T, SnapshotAction>) {
            if (find_session(a.session)) {
              snapshot_queues[a.session].pending.push_back(std::move(a.request));
              pump_snapshots(a.session);
            } else {
              sync.snapshot_answered(a.session);
            }
          } else if constexpr (std::is_same_v<T, ApplyAction>) {
            worker.want_apply(a.up_to);
          } else if constexpr (std::is_same_v<T, EquivocatedAction>) {
            worker.halt_apply("the log equivocated: " + a.how);
            has_evidence = true;
            // Durable; a failure is reported (evidence_store_fault) and retried by the tick.
            (void)evidence_store.store(a.evidence);
          }
        },
        action);
  }
}

void Node::Impl::pump_snapshots(uint64_t id) {
  auto it = snapshot_queues.find(id);
  if (it == snapshot_queues.end() || it->second.running || it->second.pending.empty()) return;
  auto request = std::move(it->second.pending.front());
  it->second.pending.pop_front();
  it->second.running = true;
  asio::post(snapshot_pool, [this, id, request = std::move(request)] {
    Message answer = answer_served(snapshot_source.load(), page_server.load(), request, &snapshot_cancel);
    asio::post(io, [this, id, answer = std::move(answer)] {
      if (stopping) return;
      sync.snapshot_answered(id);
      ++snapshot_requests_served;
      auto q = snapshot_queues.find(id);
      if (q == snapshot_queues.end()) return;  // the session closed meanwhile
      q->second.running = false;
      if (Session* s = find_session(id)) s->send(answer);
      pump_snapshots(id);
    });
  });
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
    LogView view = backend.log().view();  // not log_mutex(): /status never waits for a store's fsync
    st.log_size = view.size;
    st.first_entry = first_servable_entry(view);
    st.head = std::move(view.head);
  }
  const auto& best = sync.best_head();
  st.best_size = std::max<uint64_t>(best ? best->size : 0, st.head ? st.head->size : 0);
  st.applied_size = backend.applied_size();
  st.entries_stored = sync.entries_stored();
  st.entries_served = sync.entries_served();
  st.bytes_in = traffic.in;
  st.bytes_out = traffic.out;
  uint64_t my_size = st.head ? st.head->size : 0;
  for (const auto& entry : sync.peers()) {
    const PeerState& s = entry.second;
    if (!s.ready) continue;
    PeerStatus p;
    p.session = s.id;
    p.address = !s.announced.empty() ? s.announced : !s.dialled.empty() ? s.dialled : s.remote;
    p.remote = s.remote;
    p.node_id = hex_id(s.node_id);
    p.outbound = s.outbound;
    p.head_size = s.head_size;
    p.first = s.first;
    p.lag = static_cast<int64_t>(s.head_size) - static_cast<int64_t>(my_size);
    if (auto it = sessions.find(s.id); it != sessions.end()) {
      p.bytes_in = it->second->bytes_in();
      p.bytes_out = it->second->bytes_out();
    }
    p.entries_received = s.entries_received;
    p.connected_ms = ms_between(s.connected_at, now);
    st.peers.push_back(std::move(p));
  }
  for (auto& b : sync.bans(now)) st.bans.push_back({b.key, b.reason, ms_between(now, b.until)});
  st.evidence = sync.evidence();
  NodeReadiness ready = readiness();  // the faults, as /readyz reads them
  st.evidence_store_fault = std::move(ready.evidence_store_fault);
  st.apply_error = std::move(ready.apply_error);
  st.local_fault = std::move(ready.local_fault);
  st.known_addresses = sync.book().size();
  if (const auto& u = sync.unserved()) st.unserved_entries = std::pair{u->from, u->to};
  st.snapshot_requests_served = snapshot_requests_served;
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
  impl_->snapshot_cancel = true;  // also when the io thread never ran shutdown()
  impl_->snapshot_pool.join();    // a copy in progress stops at its next cancel check
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
  impl_->size_grew();
  asio::post(impl_->io, [impl = impl_.get()] {
    if (!impl->stopping) impl->run(impl->sync.new_local_head());
  });
}

void Node::notify_new_entries() { impl_->size_grew(); }

void Node::set_size_listener(std::function<void()> fn) {
  std::lock_guard lock(impl_->size_listener_mu);
  impl_->size_listener = std::move(fn);
}

// Runs f() on the node's io thread (which owns the sync state) and returns
// its result; at once when the node is not running or this is that thread.
// `fallback()` when no answer comes within 5 s (the io thread is gone).
template <class F, class G>
auto Node::on_io_thread(F f, G fallback) const -> std::invoke_result_t<F&> {
  using T = std::invoke_result_t<F&>;
  bool running;
  {
    std::lock_guard lock(impl_->life_mu);
    running = impl_->started && !impl_->joined && !impl_->stop_begun;
  }
  if (!running || impl_->io.get_executor().running_in_this_thread()) return f();
  auto p = std::make_shared<std::promise<T>>();
  auto fut = p->get_future();
  asio::post(impl_->io, [p, f = std::move(f)]() mutable { p->set_value(f()); });
  if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready) return fallback();
  return fut.get();
}

NodeStatus Node::status() const {
  Impl* impl = impl_.get();
  return on_io_thread([impl] { return impl->make_status(); },
                      [impl] {
                        // The io thread is gone (stopping): nothing mutates the state any more.
                        NodeStatus st;
                        st.log_id = impl->log_id.hex();
                        return st;
                      });
}

uint64_t Node::best_size() const {
  Impl* impl = impl_.get();
  auto own = [impl]() -> uint64_t {
    const auto head = impl->backend.log().view().head;
    return head ? head->size : 0;
  };
  return on_io_thread(
      [impl, own] {
        const auto& best = impl->sync.best_head();
        return std::max<uint64_t>(best ? best->size : 0, own());
      },
      own);
}

NodeReadiness Node::Impl::readiness() const {
  NodeReadiness r;
  r.head = backend.log().view().head;  // published by each store (core/log.h)
  r.evidence = has_evidence.load();
  r.evidence_store_fault = evidence_store.fault();
  r.apply_error = worker.apply_error();
  r.local_fault = worker.apply_fault.get();
  if (!r.local_fault) r.local_fault = sync.store_fault().get();  // FaultState locks itself
  return r;
}

NodeReadiness Node::readiness() const { return impl_->readiness(); }

std::optional<Evidence> Node::evidence() const { return status().evidence; }

void Node::set_snapshot_source(SnapshotSource* source) { impl_->snapshot_source = source; }

void Node::set_page_server(const PageServer* server) { impl_->page_server = server; }

}  // namespace swarmlite::net
