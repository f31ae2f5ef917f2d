// The peer-protocol snapshot path end to end in one process: a Node over a
// Primary answers GetSnapshot / GetSnapshotPages from a SnapshotSource
// (docs/protocol.md "Snapshots"), peer_chunk_source speaks to it over
// 127.0.0.1, and fetch_snapshot over two such sources and a liar (a peer
// source that flips a byte of one chunk) gives the primary's pages and bans
// the liar. Also: a gone head is not_found, a range past the database a
// refusal, a node without a snapshot source says so.
#ifdef SWARMLITE_CLIENT_HAVE_NET
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "client/snapshot_fetch.h"
#include "net/backends.h"
#include "net/node.h"
#include "net/protocol.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/tools/backup.h"
#include "sqlbridge/tools/snapshot_source.h"

namespace swarmlite::client {
namespace {

using namespace std::chrono_literals;

// Wraps a source: waits `delay` before each chunk (a slower node), and the
// answer to call `lie_on_call` (-1: none) has a flipped page byte.
class LyingSource : public ChunkSource {
 public:
  LyingSource(std::string name, std::unique_ptr<ChunkSource> inner, int lie_on_call,
              std::chrono::milliseconds delay = 0ms)
      : name_(std::move(name)), inner_(std::move(inner)), lie_on_(lie_on_call), delay_(delay) {}
  std::string name() const override { return name_ + " " + inner_->name(); }
  Result<SourceManifest> manifest() override { return inner_->manifest(); }
  Result<Bytes> chunk(const SnapshotRequest& r) override {
    const int n = calls_.fetch_add(1);
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    SWL_ASSIGN(Bytes b, inner_->chunk(r));
    if (n == lie_on_) b[1 + kEncodedHeadSize + 12 + 100] ^= 0x40;  // a byte of the first page
    return b;
  }
  std::atomic<int> calls_{0};

 private:
  std::string name_;
  std::unique_ptr<ChunkSource> inner_;
  int lie_on_;
  std::chrono::milliseconds delay_;
};

struct Fixture {
  testing::TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;
  std::unique_ptr<SnapshotSource> snaps;
  std::unique_ptr<net::PrimaryBackend> backend;
  std::unique_ptr<net::Node> node;
  std::string address;

  explicit Fixture(bool serve_snapshots = true, std::chrono::milliseconds idle_timeout = 90s) {
    auto p = Primary::open(dir / "p.db", keys.secret, testing::fast_primary(1));
    REQUIRE(p.ok());
    primary = std::move(p).value();
    REQUIRE(
        primary->execute({testing::sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")}).ok());
    for (int i = 0; i < 40; ++i)
      REQUIRE(primary->execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(3500))")}).ok());
    SnapshotSourceOptions o;
    o.temp_dir = dir.path();
    o.reaper = false;
    o.chunk_pages = 4;
    o.reuse = 0ms;  // a newer head gets a new copy (the ordering test needs a slow request)
    snaps = std::make_unique<SnapshotSource>(
        BackupSource{
            [this] { return primary->head(); }, [this] { return primary->open_snapshot(); }, {}},
        o);
    backend = std::make_unique<net::PrimaryBackend>(*primary);
    net::NodeOptions no;
    no.listen = "127.0.0.1:0";
    no.idle_timeout = idle_timeout;
    // The session's watchdog first wakes at the handshake deadline: keep it no
    // later than the idle one, so a short idle timeout takes effect.
    no.handshake_timeout = std::min<std::chrono::milliseconds>(no.handshake_timeout, idle_timeout);
    node = std::make_unique<net::Node>(*backend, no);
    if (serve_snapshots) node->set_snapshot_source(snaps.get());
    REQUIRE(node->start().ok());
    address = "127.0.0.1:" + std::to_string(node->listen_port());
  }
  ~Fixture() { node->stop(); }
  std::unique_ptr<ChunkSource> source() { return peer_chunk_source(address, keys.pub, 10s); }
  static std::vector<Bytes> pages(const std::filesystem::path& db) {
    auto raw = read_logical_pages(db);
    REQUIRE_MESSAGE(raw.ok(), raw.error_text());
    std::vector<Bytes> out;
    for (size_t i = 0; i < raw->size(); ++i)
      out.push_back(normalize_page(static_cast<uint32_t>(i + 1), (*raw)[i]));
    return out;
  }
};

// A bare blocking connection speaking frames, for pipelining requests.
struct RawPeer {
  int fd = -1;
  explicit RawPeer(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawPeer() { ::close(fd); }
  void send(const net::Message& m) {
    Bytes f = net::encode_frame(m);
    REQUIRE(::write(fd, f.data(), f.size()) == static_cast<ssize_t>(f.size()));
  }
  void read_exactly(uint8_t* p, size_t n) {
    while (n > 0) {
      ssize_t got = ::read(fd, p, n);
      REQUIRE(got > 0);
      p += got;
      n -= static_cast<size_t>(got);
    }
  }
  // The next message that is not GetPeers, Peers or Head.
  net::Message next() {
    for (;;) {
      uint8_t h[4];
      read_exactly(h, 4);
      auto len = net::decode_frame_length(ByteView(h, 4));
      REQUIRE(len.ok());
      Bytes body(*len);
      read_exactly(body.data(), body.size());
      auto m = net::decode_message(body);
      REQUIRE(m.ok());
      if (std::holds_alternative<net::GetPeers>(*m) || std::holds_alternative<net::Peers>(*m) ||
          std::holds_alternative<net::HeadMsg>(*m))
        continue;
      return std::move(m).value();
    }
  }
};

}  // namespace

// docs/protocol.md "Snapshots": answers carry no request ids, so the node
// answers one session's snapshot requests in the order they came, whatever
// each costs (a gone head, a chunk, an invalid range), also when they are
// pipelined. (The cap on open requests per session is pinned by sync_test:
// here answers may come before the next request is read.)
TEST_CASE("a node answers pipelined snapshot requests of one session in order") {
  Fixture f;
  RawPeer raw(f.node->listen_port());
  net::Hello hello;
  hello.log_id = f.keys.pub;
  hello.node_id = 0x5eed;
  raw.send(hello);
  REQUIRE(std::holds_alternative<net::Hello>(raw.next()));
  raw.send(net::GetSnapshot{});
  auto m = raw.next();
  REQUIRE(std::holds_alternative<net::SnapshotManifestMsg>(m));
  const Head head = std::get<net::SnapshotManifestMsg>(m).head;
  const std::vector<uint32_t> firsts = {9, 1, 5, 13, 2};
  for (uint32_t first : firsts) {
    raw.send(net::GetSnapshotPages{head.size, first, 4});
    if (first == 5) raw.send(net::GetSnapshotPages{head.size + 77, 1, 4});  // gone
    if (first == 13)
      raw.send(net::GetSnapshotPages{head.size, head.page_count, 4});  // past the end
  }
  for (uint32_t first : firsts) {
    CAPTURE(first);
    auto a = raw.next();
    REQUIRE(std::holds_alternative<net::SnapshotPages>(a));
    auto c = decode_snapshot_chunk(std::get<net::SnapshotPages>(a).chunk);
    REQUIRE(c.ok());
    CHECK(c->first_page == first);
    CHECK(verify_snapshot_chunk(*c, head).ok());
    if (first == 5) {
      auto g = raw.next();
      REQUIRE(std::holds_alternative<net::ErrorMsg>(g));
      CHECK(std::get<net::ErrorMsg>(g).code == net::ErrorCode::snapshot_gone);
    }
    if (first == 13) {
      auto b = raw.next();
      REQUIRE(std::holds_alternative<net::ErrorMsg>(b));
      CHECK(std::get<net::ErrorMsg>(b).code == net::ErrorCode::bad_request);
    }
  }
  // A slow request before a fast one: a new head makes GetSnapshot copy the
  // database, while the chunk of the held snapshot is one read; the manifest
  // still comes first.
  REQUIRE(f.primary->execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(3500))")}).ok());
  for (int round = 0; round < 3; ++round) {
    REQUIRE(f.primary->execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(3500))")}).ok());
    raw.send(net::GetSnapshot{});
    raw.send(net::GetSnapshotPages{head.size, 1, 4});
    auto first = raw.next();
    REQUIRE(std::holds_alternative<net::SnapshotManifestMsg>(first));
    CHECK(std::get<net::SnapshotManifestMsg>(first).head.size > head.size);
    CHECK(std::holds_alternative<net::SnapshotPages>(raw.next()));
  }
}

TEST_CASE(
    "peer_chunk_source: a node serves a manifest and verified chunks over the peer protocol") {
  Fixture f;
  auto src = f.source();
  auto m = src->manifest();
  REQUIRE_MESSAGE(m.ok(), m.error_text());
  CHECK(m->head == *f.primary->head());
  CHECK(m->head.verify(f.keys.pub).ok());
  CHECK(m->page_size == 4096);
  CHECK(m->chunk_pages == 4);

  auto bytes = src->chunk({m->head.size, 1, 4});
  REQUIRE_MESSAGE(bytes.ok(), bytes.error_text());
  auto chunk = decode_snapshot_chunk(*bytes);
  REQUIRE(chunk.ok());
  CHECK(verify_snapshot_chunk(*chunk, m->head).ok());
  CHECK(chunk->count == 4);

  // Gone: a head the node holds no snapshot of (the fetcher starts over).
  auto gone = src->chunk({m->head.size + 1000, 1, 4});
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == Errc::not_found);
  CHECK_MESSAGE(gone.error().message.find(std::to_string(m->head.size)) != std::string::npos,
                gone.error().message);
  // A range past the database: refused, and the connection still serves.
  auto past = src->chunk({m->head.size, m->head.page_count + 1, 4});
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().code == Errc::unavailable);
  CHECK(src->chunk({m->head.size, 5, 4}).ok());
  CHECK(f.node->status().snapshot_requests_served >= 5);

  // Parallel callers on one source: one connection each, answers in step.
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint32_t i = 0; i < 5; ++i) {
        const uint32_t first =
            1 + 4 * ((static_cast<uint32_t>(t) * 5 + i) % (m->head.page_count / 4));
        auto b = src->chunk({m->head.size, first, 4});
        if (!b.ok()) continue;
        auto c = decode_snapshot_chunk(*b);
        if (c.ok() && c->first_page == first && verify_snapshot_chunk(*c, m->head).ok()) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(good == 20);
}

TEST_CASE("peer_chunk_source: another log's key, or a node that serves no snapshots, is refused") {
  Fixture f(/*serve_snapshots=*/false);
  auto none = f.source()->manifest();
  REQUIRE_FALSE(none.ok());
  CHECK_MESSAGE(none.error().message.find("serves no snapshots") != std::string::npos,
                none.error().message);
  KeyPair other = KeyPair::generate();
  auto wrong = peer_chunk_source(f.address, other.pub, 10s)->manifest();
  REQUIRE_FALSE(wrong.ok());
  CHECK_MESSAGE(wrong.error().message.find("log") != std::string::npos, wrong.error().message);
  auto nobody = peer_chunk_source("127.0.0.1:1", f.keys.pub, 2s)->manifest();
  CHECK_FALSE(nobody.ok());
}

// A pooled connection the node closed as idle is replaced, not reported as a
// failure of the node. (Without the retry in PeerChunkSource::call the second
// chunk fails with "closed the connection".)
TEST_CASE("peer_chunk_source: a connection the node closed while idle is reopened") {
  Fixture f(/*serve_snapshots=*/true, /*idle_timeout=*/300ms);
  auto src = f.source();
  auto m = src->manifest();
  REQUIRE_MESSAGE(m.ok(), m.error_text());
  std::this_thread::sleep_for(1s);  // the node's idle timeout closes the pooled connection
  auto c = src->chunk({m->head.size, 1, 4});
  CHECK_MESSAGE(c.ok(), c.error_text());
}

TEST_CASE(
    "fetch_snapshot over the peer protocol: two honest sources and a liar; the liar is banned") {
  Fixture f;
  // The honest nodes are slower, so the liar surely gets a chunk before the end.
  LyingSource a("honest", f.source(), -1, 10ms), b("honest", f.source(), -1, 10ms);
  LyingSource liar("liar", f.source(), 0);
  SnapshotFetchOptions o;
  o.log_id = f.keys.pub;
  o.out = f.dir / "copy.db";
  o.chunk_pages = 1;
  o.backoff = 1ms;
  o.retries = 2;
  auto r = fetch_snapshot({&liar, &a, &b}, o);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(r->head.size == f.primary->size());
  CHECK(Fixture::pages(f.dir / "copy.db") == Fixture::pages(f.dir / "p.db"));
  CHECK(verify_backup_file(f.dir / "copy.db", r->head, f.keys.pub).ok());
  REQUIRE(liar.calls_ > 0);
  REQUIRE(r->banned.size() == 1);
  CHECK(r->banned[0].rfind("liar", 0) == 0);
}

}  // namespace swarmlite::client
#endif
