// Nodes over real sockets on 127.0.0.1 (ephemeral ports), in one process, with
// bare-log backends: a "primary" log written with Log::append + set_head, and
// replicas that must converge to it through the protocol. Waits poll status()
// until a liveness deadline; nothing asserts on timing.
#include "net/node.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <future>
#include <thread>

#include "core/entry.h"
#include "core/fault_injection.h"
#include "core/keys.h"
#include "net/protocol.h"
#include "net/tcp_socket_test_util.h"
#include "net/test_log.h"

using namespace swarmlite;
using namespace swarmlite::net;
using namespace swarmlite::net::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

NodeOptions fast_options() {
  NodeOptions o;
  o.listen = "127.0.0.1:0";
  o.backoff_initial = 50ms;
  o.backoff_max = 500ms;
  o.batch_entries = 7;  // several batches even for small logs
  return o;
}

std::string addr(const Node& n) { return fmt::format("127.0.0.1:{}", n.listen_port()); }

// fast_options() with `seed` as the one --from address.
NodeOptions seeded_from(const Node& seed) {
  NodeOptions o = fast_options();
  o.seeds = {addr(seed)};
  return o;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 15s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

// A blocking TCP client that speaks raw frames (a hostile peer).
struct RawClient {
  int fd = -1;
  explicit RawClient(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~RawClient() { ::close(fd); }
  void send(ByteView b) { REQUIRE(::write(fd, b.data(), b.size()) == static_cast<ssize_t>(b.size())); }
  // Reads until EOF (the node closed) or 5 s; returns the bytes received.
  Bytes drain() {
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    Bytes out;
    uint8_t buf[4096];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      out.insert(out.end(), buf, buf + n);
    }
    return out;
  }
};

// n raw clients that say Hello (node ids first_id, first_id+1, …) and then nothing.
std::vector<std::unique_ptr<RawClient>> idle_clients(uint16_t port, const PublicKey& log_id, int n,
                                                     uint64_t first_id) {
  std::vector<std::unique_ptr<RawClient>> out;
  for (int i = 0; i < n; ++i) {
    auto c = std::make_unique<RawClient>(port);
    Hello h;
    h.log_id = log_id;
    h.node_id = first_id + static_cast<uint64_t>(i);
    c->send(encode_frame(h));
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

TEST_CASE("a chain of replicas catches up in batches and follows live heads") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true), r1(keys.pub, false), r2(keys.pub, false);
  primary.append(keys.secret, 20);

  // A chain: nobody dials more than its one seed (peer exchange would
  // otherwise connect everyone to everyone).
  auto po = fast_options();
  po.max_outbound = 0;
  Node p(*primary.backend, po);
  REQUIRE(p.start().ok());
  auto o1 = seeded_from(p);
  o1.max_outbound = 1;
  Node n1(*r1.backend, o1);
  REQUIRE(n1.start().ok());
  auto o2 = seeded_from(n1);  // knows only the first replica
  o2.max_outbound = 1;    // ... and keeps to one connection: a chain
  Node n2(*r2.backend, o2);
  REQUIRE(n2.start().ok());

  CHECK(eventually([&] { return r2.size() == 20; }));
  // Live: new heads are pushed and relayed down the chain.
  primary.append(keys.secret, 3);
  p.notify_new_head();
  CHECK(eventually([&] { return r2.size() == 23 && n2.status().head && n2.status().head->size == 23; }));
  primary.append(keys.secret, 30);
  p.notify_new_head();
  CHECK(eventually([&] { return r2.size() == 53; }));
  {
    std::lock_guard a(primary.backend->log_mutex());
    std::lock_guard b(r2.backend->log_mutex());
    CHECK(r2.log->root() == primary.log->root());
  }
  // The log grows on the worker thread a moment before the node counts it.
  CHECK(eventually([&] { return n2.status().entries_stored == 53; }));
  auto st = n2.status();
  CHECK(st.log_size == 53);
  CHECK(st.bans.empty());
  CHECK_FALSE(st.evidence);
  REQUIRE(st.peers.size() == 1);
  CHECK(st.peers[0].address == addr(n1));
  CHECK(st.peers[0].bytes_in > 0);
  CHECK(p.status().peers.size() == 1);  // the primary uploads to its one direct peer
  n2.stop();
  n1.stop();
  p.stop();
}

TEST_CASE("the size listener hears each growth: the replica's stores and applies, the primary's new heads") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true), r1(keys.pub, false);
  primary.append(keys.secret, 10);
  Node p(*primary.backend, fast_options());
  std::atomic<int> primary_calls{0};
  p.set_size_listener([&] { primary_calls.fetch_add(1); });
  REQUIRE(p.start().ok());
  Node n1(*r1.backend, seeded_from(p));
  // What the listener saw last: the size it reads must be the grown one (it
  // is called after the growth, not before).
  std::atomic<uint64_t> seen{0};
  n1.set_size_listener([&] { seen = r1.backend->applied_size(); });
  REQUIRE(n1.start().ok());
  CHECK(eventually([&] { return seen.load() == 10; }));
  primary.append(keys.secret, 4);
  p.notify_new_head();
  CHECK(primary_calls.load() == 1);  // at once, on the caller's thread
  CHECK(eventually([&] { return seen.load() == 14; }));
  // Removed: no more calls (and nothing left that refers to `seen`).
  n1.set_size_listener({});
  seen = 0;
  primary.append(keys.secret, 2);
  p.notify_new_head();
  CHECK(eventually([&] { return r1.size() == 16; }));
  std::this_thread::sleep_for(50ms);
  CHECK(seen.load() == 0);
  n1.stop();
  p.stop();
}

TEST_CASE("peer sockets, dialled and accepted, have TCP_NODELAY unless the options turn it off") {
  for (bool on : {true, false}) {
    CAPTURE(on);
    KeyPair keys = KeyPair::generate();
    TestLog primary(keys.pub, true), r1(keys.pub, false);
    primary.append(keys.secret, 3);
    auto po = fast_options();
    po.tcp_no_delay = on;
    Node p(*primary.backend, po);
    REQUIRE(p.start().ok());
    auto o1 = seeded_from(p);
    o1.tcp_no_delay = on;
    Node n1(*r1.backend, o1);
    REQUIRE(n1.start().ok());
    CHECK(eventually([&] { return r1.size() == 3; }));
    auto accepted = connected_tcp_sockets(p.listen_port(), 0);  // p's end
    auto dialled = connected_tcp_sockets(0, p.listen_port());   // n1's end
    REQUIRE(!accepted.empty());
    REQUIRE(!dialled.empty());
    for (const auto& s : accepted) CHECK(s.no_delay == on);
    for (const auto& s : dialled) CHECK(s.no_delay == on);
    n1.stop();
    p.stop();
  }
}

TEST_CASE("a replica resumes from its verified log after a restart") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true), r(keys.pub, false);
  primary.append(keys.secret, 10);
  Node p(*primary.backend, fast_options());
  REQUIRE(p.start().ok());
  auto o = seeded_from(p);
  {
    Node n(*r.backend, o);
    REQUIRE(n.start().ok());
    CHECK(eventually([&] { return r.size() == 10; }));
  }
  primary.append(keys.secret, 5);
  Node n(*r.backend, o);
  REQUIRE(n.start().ok());
  CHECK(eventually([&] { return r.size() == 15 && n.status().entries_stored > 0; }));
  CHECK(n.status().entries_stored == 5);  // only the gap travelled
}

TEST_CASE("peer exchange: one address finds the swarm, which survives its first contact leaving") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true), ra(keys.pub, false), rb(keys.pub, false);
  primary.append(keys.secret, 4);
  auto po = fast_options();
  po.peers_interval = 200ms;
  auto p = std::make_unique<Node>(*primary.backend, po);
  REQUIRE(p->start().ok());
  auto oa = po;
  oa.seeds = {addr(*p)};
  Node a(*ra.backend, oa);
  REQUIRE(a.start().ok());
  CHECK(eventually([&] { return ra.size() == 4; }));
  auto ob = po;
  ob.seeds = {addr(*p)};  // b knows only the primary, learns a from it
  Node b(*rb.backend, ob);
  REQUIRE(b.start().ok());
  CHECK(eventually([&] {
    for (auto& peer : b.status().peers) {
      if (peer.address == addr(a)) return true;
    }
    return false;
  }));
  CHECK(b.status().known_addresses >= 2);
  CHECK(eventually([&] { return rb.size() == 4; }));
  p.reset();  // the primary leaves; a and b stay connected to each other
  CHECK(eventually([&] { return b.status().peers.size() == 1; }));
  CHECK(b.status().peers[0].address == addr(a));
}

TEST_CASE("a node of another log is refused with an Error, not banned") {
  KeyPair keys = KeyPair::generate(), other = KeyPair::generate();
  TestLog mine(keys.pub, true), theirs(other.pub, false);
  Node p(*mine.backend, fast_options());
  REQUIRE(p.start().ok());
  auto o = seeded_from(p);
  Node n(*theirs.backend, o);
  REQUIRE(n.start().ok());
  std::this_thread::sleep_for(300ms);
  CHECK(n.status().peers.empty());
  CHECK(p.status().bans.empty());
  CHECK(n.status().bans.empty());
}

TEST_CASE("a peer that sends a forged head is banned and its data dropped") {
  KeyPair keys = KeyPair::generate(), forger = KeyPair::generate();
  TestLog primary(keys.pub, true);
  primary.append(keys.secret, 3);
  Node p(*primary.backend, fast_options());
  REQUIRE(p.start().ok());

  RawClient c(p.listen_port());
  Hello h;
  h.log_id = keys.pub;
  h.node_id = 42;
  h.listen = "127.0.0.1:9";
  c.send(encode_frame(h));
  Head forged;
  forged.log_id = keys.pub;
  forged.size = 1000;
  // Signed by the wrong key (sign_with asserts the key matches log_id, so sign directly).
  forged.signature = sign(forger.secret, forged.signing_bytes());
  c.send(encode_frame(HeadMsg{forged}));
  c.drain();  // the node hangs up
  auto st = p.status();
  REQUIRE(st.bans.size() == 2);  // by node id and by announced address
  bool by_address = false;
  for (auto& b : st.bans) by_address |= b.key == "127.0.0.1:9" && b.reason.find("invalid head") != std::string::npos;
  CHECK(by_address);
  CHECK(st.best_size == 3);
  CHECK(p.best_size() == 3);  // the forged head counts for neither
  // Coming back under the banned address is refused.
  RawClient again(p.listen_port());
  h.node_id = 43;
  again.send(encode_frame(h));
  Bytes reply = again.drain();
  bool refused = false;
  for (size_t off = 0; off + 4 <= reply.size();) {
    auto len = decode_frame_length(ByteView(reply).subspan(off, 4));
    if (!len.ok() || off + 4 + len.value() > reply.size()) break;
    auto m = decode_message(ByteView(reply).subspan(off + 4, len.value()));
    if (m.ok() && std::holds_alternative<ErrorMsg>(m.value())) {
      refused |= std::get<ErrorMsg>(m.value()).code == ErrorCode::banned;
    }
    off += 4 + len.value();
  }
  CHECK(refused);
}

TEST_CASE("garbage and oversized frames get the sender banned") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true);
  auto o = fast_options();
  o.max_frame = 1024;
  Node p(*primary.backend, o);
  REQUIRE(p.start().ok());
  {
    RawClient c(p.listen_port());
    Hello h;
    h.log_id = keys.pub;
    h.node_id = 7;
    h.listen = "127.0.0.1:10";
    c.send(encode_frame(h));
    c.send(Bytes{0, 1, 0, 0, 2});  // 65 KiB frame, over this node's 1 KiB cap
    c.drain();
  }
  {
    RawClient c(p.listen_port());
    Hello h;
    h.log_id = keys.pub;
    h.node_id = 8;
    h.listen = "127.0.0.1:11";
    c.send(encode_frame(h));
    c.send(Bytes{0, 0, 0, 2, 3, 0});  // GetEntries with a truncated payload
    c.drain();
  }
  auto bans = p.status().bans;
  int frame = 0, message = 0;
  for (auto& b : bans) {
    frame += b.key == "127.0.0.1:10" && b.reason.find("invalid frame") != std::string::npos;
    message += b.key == "127.0.0.1:11" && b.reason.find("invalid message") != std::string::npos;
  }
  CHECK(frame == 1);
  CHECK(message == 1);
}

TEST_CASE("a forked primary is detected; the evidence is stored, spread and verifiable") {
  // Two primaries with the same key: a common prefix, then different entries.
  ForkedPrimaries fork(5, 3, 6);
  auto &keys = fork.keys;
  auto &pa = fork.a, &pb = fork.b;
  TestLog r(keys.pub, false), r2(keys.pub, false);
  Node na(*pa.backend, fast_options());
  REQUIRE(na.start().ok());
  auto ro = seeded_from(na);
  TempDir data;
  ro.data_dir = data.path;
  Node nr(*r.backend, ro);
  REQUIRE(nr.start().ok());
  CHECK(eventually([&] { return r.size() == 8; }));
  // r2 follows r only; then r meets the other primary.
  auto r2o = seeded_from(nr);
  Node nr2(*r2.backend, r2o);
  REQUIRE(nr2.start().ok());
  CHECK(eventually([&] { return r2.size() == 8; }));

  Node nb(*pb.backend, fast_options());
  REQUIRE(nb.start().ok());
  auto ro_b = seeded_from(nb);
  // A fresh connection from r to b: restart r with both seeds.
  nr.stop();
  ro.seeds = {addr(na), addr(nb)};
  Node nr_again(*r.backend, ro);
  REQUIRE(nr_again.start().ok());
  CHECK(eventually([&] { return nr_again.status().evidence.has_value(); }));
  auto ev = nr_again.status().evidence;
  REQUIRE(ev);
  CHECK(ev->verify(keys.pub).ok());
  CHECK(r.size() == 8);  // nothing of the other branch was stored
  CHECK(fs::exists(evidence_path_in(data.path)));
  // It is passed on.
  CHECK(eventually([&] { return nr2.status().evidence.has_value(); }));
  CHECK(nr_again.readiness().evidence);
  CHECK(nr2.readiness().evidence);
  CHECK(nr2.readiness().apply_error);  // it stopped following the log
  // And remembered across a restart.
  nr_again.stop();
  Node nr3(*r.backend, ro);
  REQUIRE(nr3.start().ok());
  CHECK(nr3.status().evidence.has_value());
  CHECK(nr3.readiness().evidence);
}

// The evidence is the node's most important output: when it cannot be written
// (here: the data directory's disk is full) the node says so in its status
// (evidence_store_fault, hence /readyz) and writes it once it can. (Before: an
// ofstream + rename whose failure was only logged; the status showed nothing.)
TEST_CASE("evidence that cannot be stored is reported in the status and stored once the disk allows") {
  ForkedPrimaries fork(5, 3, 6);
  auto &pa = fork.a, &pb = fork.b;
  TestLog r(fork.keys.pub, false);
  Node na(*pa.backend, fast_options());
  REQUIRE(na.start().ok());
  Node nb(*pb.backend, fast_options());
  REQUIRE(nb.start().ok());
  TempDir data;
  auto ro = seeded_from(na);
  ro.data_dir = data.path;
  {
    Node nr(*r.backend, ro);
    REQUIRE(nr.start().ok());
    CHECK(eventually([&] { return r.size() == 8; }));
  }
  fault_injection::fail_writes_under(data.path);
  ro.seeds = {addr(na), addr(nb)};
  Node nr(*r.backend, ro);
  REQUIRE(nr.start().ok());
  CHECK(eventually([&] {
    auto st = nr.status();
    return st.evidence && st.evidence_store_fault && st.evidence_store_fault->retries >= 2;
  }));
  auto st = nr.status();
  REQUIRE(st.evidence_store_fault);
  CHECK(st.evidence_store_fault->what.find("No space left") != std::string::npos);
  CHECK(st.evidence_store_fault->what.find(data.path.string()) != std::string::npos);
  CHECK_FALSE(fs::exists(evidence_path_in(data.path)));
  CHECK(nr.readiness().evidence);
  CHECK(nr.readiness().evidence_store_fault);
  fault_injection::clear();
  CHECK(eventually([&] { return !nr.status().evidence_store_fault; }));
  CHECK(fs::exists(evidence_path_in(data.path)));
  CHECK(nr.status().evidence.has_value());
  CHECK_FALSE(nr.readiness().evidence_store_fault);
}

// A backend whose is_primary() — which status() calls on the node's io thread —
// blocks while `hold` is set: the io thread busy for as long as a test wants.
struct HoldingBackend : NodeBackend {
  NodeBackend& inner;
  std::atomic<bool> hold{false};
  std::atomic<bool> held{false};  // the io thread is inside is_primary(), held
  explicit HoldingBackend(NodeBackend& b) : inner(b) {}
  const PublicKey& log_id() const override { return inner.log_id(); }
  const Log& log() const override { return inner.log(); }
  std::mutex& log_mutex() const override { return inner.log_mutex(); }
  bool is_primary() const override {
    while (hold.load()) {
      const_cast<std::atomic<bool>&>(held).store(true);
      std::this_thread::sleep_for(1ms);
    }
    return inner.is_primary();
  }
  Status store_entries(std::span<const Bytes> e, const Head& h,
                       std::span<const Hash32> p) override {
    return inner.store_entries(e, h, p);
  }
  Result<uint64_t> apply(uint64_t up_to) override { return inner.apply(up_to); }
  uint64_t applied_size() const override { return inner.applied_size(); }
};

// /readyz asks readiness() on the HTTP server's io thread: it must not wait for
// the node's io thread, which may be busy (before: it was status(), a round
// trip of up to 5 s that stalled every HTTP connection meanwhile).
TEST_CASE("readiness() answers while the node's io thread is busy, and agrees with status()") {
  KeyPair keys = KeyPair::generate();
  TestLog p(keys.pub, true);
  p.append(keys.secret, 4);
  HoldingBackend backend(*p.backend);
  Node node(backend, fast_options());
  REQUIRE(node.start().ok());
  {
    NodeReadiness r = node.readiness();
    NodeStatus st = node.status();
    REQUIRE(r.head);
    REQUIRE(st.head);
    CHECK(r.head->size == st.head->size);
    CHECK(r.evidence == st.evidence.has_value());
    CHECK(node.best_size() == st.best_size);
    CHECK(node.best_size() == 4);
    CHECK_FALSE(r.apply_error);
    CHECK_FALSE(r.local_fault);
    CHECK_FALSE(r.evidence_store_fault);
  }
  backend.hold = true;
  auto busy = std::async(std::launch::async, [&] { return node.status(); });  // holds the io thread
  const bool held = eventually([&] { return backend.held.load(); });
  const auto t0 = std::chrono::steady_clock::now();
  NodeReadiness r = node.readiness();
  const auto took = std::chrono::steady_clock::now() - t0;
  const bool still_busy = busy.wait_for(0s) != std::future_status::ready;
  backend.hold = false;  // before any check can end the test: stop() needs the io thread
  REQUIRE(held);
  // A liveness bound, far above a readiness() (microseconds) and far below
  // status()'s 5 s wait, which is what the old path paid here.
  CHECK(took < 1s);
  CHECK(still_busy);  // the io thread was held throughout
  REQUIRE(r.head);
  CHECK(r.head->size == 4);
  CHECK(busy.get().head.has_value());
}

TEST_CASE("a primary's /status sees how far its peers got: head_size and lag follow them") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true), replica(keys.pub, false);
  primary.append(keys.secret, 5);
  Node p(*primary.backend, fast_options());
  REQUIRE(p.start().ok());
  auto ro = seeded_from(p);
  Node r(*replica.backend, ro);
  REQUIRE(r.start().ok());
  auto peer_of_primary = [&](uint64_t size) {
    auto st = p.status();
    return st.peers.size() == 1 && st.peers[0].head_size == size && st.peers[0].lag == 0;
  };
  CHECK(eventually([&] { return replica.size() == 5; }));
  CHECK(eventually([&] { return peer_of_primary(5); }));
  primary.append(keys.secret, 20);
  p.notify_new_head();
  CHECK(eventually([&] { return replica.size() == 25; }));
  CHECK(eventually([&] { return peer_of_primary(25); }));
  auto st = p.status();
  REQUIRE(st.peers.size() == 1);
  INFO("head_size " << st.peers[0].head_size << " lag " << st.peers[0].lag);
  CHECK(st.peers[0].lag == 0);
}

TEST_CASE("a replica that lost its head file takes (and stores) a peer's head of its own size") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true);
  primary.append(keys.secret, 9);
  TempDir rdir;
  {  // sync a replica log, then stop and delete its head file
    auto l = Log::open(rdir.path / "log", keys.pub);
    REQUIRE(l.ok());
    LogOnlyBackend b(**l, false);
    Node p(*primary.backend, fast_options());
    REQUIRE(p.start().ok());
    auto ro = seeded_from(p);
    Node r(b, ro);
    REQUIRE(r.start().ok());
    CHECK(eventually([&] { return r.status().head && r.status().head->size == 9; }));
  }
  REQUIRE(fs::remove(rdir.path / "log" / "head"));
  auto l = Log::open(rdir.path / "log", keys.pub);
  REQUIRE(l.ok());
  REQUIRE((*l)->size() == 9);
  REQUIRE_FALSE((*l)->head().has_value());
  {
    LogOnlyBackend b(**l, false);
    Node p(*primary.backend, fast_options());  // no new write: the primary's head is still size 9
    REQUIRE(p.start().ok());
    auto ro = seeded_from(p);
    Node r(b, ro);
    REQUIRE(r.start().ok());
    CHECK(eventually([&] { return r.status().head && r.status().head->size == 9; }));
  }
  l->reset();
  auto again = Log::open(rdir.path / "log", keys.pub);  // and it was persisted
  REQUIRE(again.ok());
  REQUIRE((*again)->head().has_value());
  CHECK((*again)->head()->size == 9);
}

TEST_CASE("idle inbound sessions that fill every slot are evicted for a newcomer that syncs") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true), replica(keys.pub, false);
  primary.append(keys.secret, 4);
  auto po = fast_options();
  po.max_connections = 12;
  po.max_inbound_per_range = 0;  // all of loopback is one range: test the global cap
  po.evict_idle_after = 1s;
  Node p(*primary.backend, po);
  REQUIRE(p.start().ok());
  auto idle = idle_clients(p.listen_port(), keys.pub, 20, 1000);
  CHECK(eventually([&] { return p.status().peers.size() == 12; }));
  std::this_thread::sleep_for(1500ms);  // they are now idle for longer than evict_idle_after
  auto ro = seeded_from(p);
  Node r(*replica.backend, ro);
  REQUIRE(r.start().ok());
  CHECK(eventually([&] { return replica.size() == 4; }));
  CHECK(p.status().peers.size() <= 12);
}

TEST_CASE("inbound sessions are capped per address range; an idle one makes room") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true), replica(keys.pub, false);
  primary.append(keys.secret, 3);
  auto po = fast_options();
  po.max_inbound_per_range = 3;
  po.evict_idle_after = 1h;  // nobody is idle enough: the newcomer is refused
  Node p(*primary.backend, po);
  REQUIRE(p.start().ok());
  auto idle = idle_clients(p.listen_port(), keys.pub, 3, 2000);
  CHECK(eventually([&] { return p.status().peers.size() == 3; }));
  {
    RawClient extra(p.listen_port());
    Bytes reply = extra.drain();  // refused with an Error, then closed
    bool too_many = false;
    for (size_t off = 0; off + 4 <= reply.size();) {
      auto len = decode_frame_length(ByteView(reply).subspan(off, 4));
      if (!len.ok() || off + 4 + len.value() > reply.size()) break;
      auto m = decode_message(ByteView(reply).subspan(off + 4, len.value()));
      if (m.ok() && std::holds_alternative<ErrorMsg>(m.value()))
        too_many |= std::get<ErrorMsg>(m.value()).message.find("127.0.0.0/24") != std::string::npos;
      off += 4 + len.value();
    }
    CHECK(too_many);
  }
  CHECK(p.status().peers.size() == 3);
}

// docs/operations.md "Local faults": the replica's own disk is full. Storing
// fails with io_error: the source is not banned (it is the only one), the fault
// is in status().local_fault, and once space returns the replica catches up by
// itself. (Before: "invalid entries: I/O error …" banned the primary for 600 s.)
TEST_CASE("a replica whose disk is full bans nobody, reports the fault and catches up later") {
  KeyPair keys = KeyPair::generate();
  TestLog primary(keys.pub, true), r1(keys.pub, false);
  primary.append(keys.secret, 20);
  auto po = fast_options();
  po.max_outbound = 0;
  Node p(*primary.backend, po);
  REQUIRE(p.start().ok());
  fault_injection::fail_writes_under(r1.dir.path / "log");
  auto o1 = seeded_from(p);
  o1.max_outbound = 1;
  Node n1(*r1.backend, o1);
  REQUIRE(n1.start().ok());
  // Several failed attempts, with backoff, and nobody banned.
  CHECK(eventually([&] {
    auto st = n1.status();
    return st.local_fault && st.local_fault->retries >= 3;
  }));
  auto st = n1.status();
  CHECK(st.bans.empty());
  REQUIRE(st.local_fault);
  CHECK(st.local_fault->what.find("No space left") != std::string::npos);
  CHECK(st.local_fault->since_ms > 0);
  CHECK_FALSE(st.apply_error);
  CHECK(r1.size() == 0);
  // More entries while the disk is full.
  primary.append(keys.secret, 5);
  p.notify_new_head();
  // Space is back: it resumes by itself.
  fault_injection::clear();
  CHECK(eventually([&] { return r1.size() == 25; }));
  CHECK(eventually([&] { return !n1.status().local_fault; }));
  st = n1.status();
  CHECK(st.bans.empty());
  CHECK(p.status().bans.empty());
  n1.stop();
  p.stop();
}
