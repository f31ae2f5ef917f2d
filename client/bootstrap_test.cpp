// bootstrap_from_snapshot end to end in one process: a Node over a Primary
// serves snapshots and frontiers over the peer protocol on 127.0.0.1; an
// empty replica is started from them (a liar among the sources is banned),
// opens at the checkpoint and follows later entries to the primary's pages.
// Also: a frontier that does not check is refused, the `auto` rule, and a
// bootstrap stopped after each step resumes without fetching again.
#ifdef SWARMLITE_CLIENT_HAVE_NET
#include "client/bootstrap.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <mutex>
#include <thread>

#include "core/entry.h"
#include "core/log.h"
#include "net/backends.h"
#include "net/node.h"
#include "net/protocol.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/replica.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/tools/snapshot_source.h"

namespace swarmlite::client {
namespace {

using namespace std::chrono_literals;

// Flips a page byte in the answer to call `lie_on_call` (-1: never).
class LyingSource : public ChunkSource {
 public:
  LyingSource(std::unique_ptr<ChunkSource> inner, int lie_on_call)
      : inner_(std::move(inner)), lie_on_(lie_on_call) {}
  std::string name() const override { return (lie_on_ >= 0 ? "liar " : "") + inner_->name(); }
  Result<SourceManifest> manifest() override { return inner_->manifest(); }
  Result<Bytes> chunk(const SnapshotRequest& r) override {
    const int n = calls_.fetch_add(1);
    if (lie_on_ < 0) std::this_thread::sleep_for(5ms);  // the liar surely gets a chunk
    SWL_ASSIGN(Bytes b, inner_->chunk(r));
    if (n == lie_on_) b[1 + kEncodedHeadSize + 12 + 100] ^= 0x40;
    return b;
  }
  std::atomic<int> calls_{0};

 private:
  std::unique_ptr<ChunkSource> inner_;
  int lie_on_;
};

// A node that accepts connections and then never answers a request: with
// `hello`, it first says Hello with `head` (entry 0 held), as a real node
// would, and then reads nothing more; without, it sends nothing at all.
class MuteNode {
 public:
  MuteNode(const PublicKey& log_id, std::optional<Head> head, bool hello)
      : log_id_(log_id), head_(std::move(head)), hello_(hello) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    address = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    accepter_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) != 1) continue;
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        ++accepted;
        if (hello_) {
          net::Hello h;
          h.log_id = log_id_;
          h.node_id = 42;
          h.head = head_;
          const Bytes frame = net::encode_frame(h);
          (void)!::send(c, frame.data(), frame.size(), MSG_NOSIGNAL);
        }
        held_.push_back(c);  // open, unread, until the end
      }
    });
  }
  ~MuteNode() {
    stop_ = true;
    accepter_.join();
    for (int c : held_) ::close(c);
    ::close(fd_);
  }
  std::string address;
  std::atomic<int> accepted{0};

 private:
  PublicKey log_id_;
  std::optional<Head> head_;
  bool hello_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread accepter_;
  std::vector<int> held_;  // the accept thread's, then the destructor's
};

struct Fixture {
  testing::TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;
  std::unique_ptr<SnapshotSource> snaps;
  std::unique_ptr<net::PrimaryBackend> backend;
  std::unique_ptr<net::Node> node;
  std::string address;

  Fixture() {
    auto p = Primary::open(dir / "p.db", keys.secret, testing::fast_primary(1));
    REQUIRE(p.ok());
    primary = std::move(p).value();
    REQUIRE(
        primary->execute({testing::sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")}).ok());
    write(30);
    SnapshotSourceOptions o;
    o.temp_dir = dir.path();
    o.reaper = false;
    o.chunk_pages = 4;
    snaps = std::make_unique<SnapshotSource>(
        BackupSource{
            [this] { return primary->head(); }, [this] { return primary->open_snapshot(); }, {}},
        o);
    backend = std::make_unique<net::PrimaryBackend>(*primary);
    net::NodeOptions no;
    no.listen = "127.0.0.1:0";
    node = std::make_unique<net::Node>(*backend, no);
    node->set_snapshot_source(snaps.get());
    REQUIRE(node->start().ok());
    address = "127.0.0.1:" + std::to_string(node->listen_port());
  }
  ~Fixture() { node->stop(); }

  void write(int n) {
    for (int i = 0; i < n; ++i)
      REQUIRE(primary->execute({testing::sql("INSERT INTO t(b) VALUES (randomblob(3000))")}).ok());
  }
  std::unique_ptr<ChunkSource> source() { return peer_chunk_source(address, keys.pub, 10s); }
  BootstrapOptions options(std::vector<ChunkSource*> sources) {
    BootstrapOptions o;
    o.log_id = keys.pub;
    o.db = dir / "r.db";
    o.data = dir / "r.db.data";
    o.sources = std::move(sources);
    o.frontier_from = {address};
    o.timeout = 10s;
    o.log_options = testing::fast_log();
    return o;
  }
  static std::vector<Bytes> pages(const std::filesystem::path& db) {
    auto raw = read_logical_pages(db);
    REQUIRE_MESSAGE(raw.ok(), raw.error_text());
    std::vector<Bytes> out;
    for (size_t i = 0; i < raw->size(); ++i)
      out.push_back(normalize_page(static_cast<uint32_t>(i + 1), (*raw)[i]));
    return out;
  }
  // Opens the bootstrapped replica, hands it the primary's entries past its
  // checkpoint under the primary's head, and applies them.
  void follow_and_compare(const BootstrapOptions& o, uint64_t checkpoint) {
    ReplicaOptions ro;
    ro.log_options = testing::fast_log();
    auto r = Replica::open(o.db, o.data / "log", keys.pub, ro);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    Replica& replica = **r;
    CHECK(replica.size() == checkpoint);
    CHECK(replica.log().first_entry() == checkpoint);
    write(5);
    const Head head = *primary->head();
    std::vector<Bytes> entries;
    for (uint64_t s = checkpoint; s < head.size; ++s) {
      auto e = primary->log().entry_bytes(s);
      REQUIRE(e.ok());
      entries.push_back(std::move(e).value());
    }
    auto appended = replica.log().append_verified(entries, head);
    REQUIRE_MESSAGE(appended.ok(), appended.error_text());
    auto applied = replica.apply_available();
    REQUIRE_MESSAGE(applied.ok(), applied.error_text());
    CHECK(replica.size() == head.size);
    CHECK(replica.state_root() == head.state_root);
    r->reset();
    CHECK(pages(o.db) == pages(dir / "p.db"));
  }
};

}  // namespace

TEST_CASE("bootstrap_from_snapshot: a verified copy and the log at its checkpoint; a liar banned") {
  Fixture f;
  LyingSource a(f.source(), -1), b(f.source(), -1), liar(f.source(), 0);
  auto o = f.options({&liar, &a, &b});
  const uint64_t n = f.primary->size();
  auto r = bootstrap_from_snapshot(o);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(r->head.size == n);
  REQUIRE(r->fetched);
  REQUIRE(r->fetched->banned.size() == 1);
  CHECK(r->fetched->banned[0].rfind("liar", 0) == 0);
  CHECK(r->frontier_from == f.address);
  CHECK_FALSE(std::filesystem::exists(bootstrap_db_path(o.data)));
  CHECK_FALSE(std::filesystem::exists(o.data / "log.bootstrap"));
  CHECK_FALSE(bootstrap_pending(o.db, o.data));
  f.follow_and_compare(o, n);

  // Only an empty replica bootstraps.
  auto again = bootstrap_from_snapshot(o);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == Errc::invalid_argument);
}

TEST_CASE("bootstrap_from_snapshot: stopped after the fetch, then after the log, it resumes") {
  Fixture f;
  auto src = f.source();
  auto o = f.options({src.get()});
  const uint64_t n = f.primary->size();
  // Stop 1: no node to ask for the frontier; the verified file stays staged.
  o.frontier_from = {};
  auto first = bootstrap_from_snapshot(o);
  REQUIRE_FALSE(first.ok());
  CHECK(first.error().code == Errc::unavailable);
  CHECK(std::filesystem::exists(bootstrap_db_path(o.data)));
  CHECK_FALSE(std::filesystem::exists(o.db));
  CHECK_FALSE(std::filesystem::exists(o.data / "log"));
  CHECK(bootstrap_pending(o.db, o.data));
  // Stop 2: the log is made, the final rename fails (no such directory).
  o.frontier_from = {f.address};
  const auto db = o.db;
  o.db = f.dir / "missing" / "r.db";
  auto second = bootstrap_from_snapshot(o);
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code == Errc::io_error);
  CHECK(std::filesystem::exists(o.data / "log"));
  // Resumed: nothing fetched, no frontier asked; the log made before is used.
  o.db = db;
  o.sources = {};
  o.frontier_from = {};
  auto third = bootstrap_from_snapshot(o);
  REQUIRE_MESSAGE(third.ok(), third.error_text());
  CHECK_FALSE(third->fetched);
  CHECK(third->frontier_from.empty());
  CHECK(third->head.size == n);
  f.follow_and_compare(o, n);
}

TEST_CASE(
    "bootstrap_from_snapshot: nodes that accept and never answer cost one timeout, not one each") {
  Fixture f;
  const Head head = *f.primary->head();
  MuteNode silent(f.keys.pub, std::nullopt, false);
  MuteNode mute1(f.keys.pub, head, true), mute2(f.keys.pub, head, true),
      mute3(f.keys.pub, head, true);
  using Clock = std::chrono::steady_clock;

  // Hello: no answer within the timeout is an error, not a wait.
  auto t0 = Clock::now();
  auto hello = peer_hello(silent.address, f.keys.pub, 500ms);
  REQUIRE_FALSE(hello.ok());
  CHECK(hello.error().code == Errc::unavailable);
  CHECK(Clock::now() - t0 < 5s);
  // A mute node's Hello arrives; it is what comes after that never does.
  auto said = peer_hello(mute1.address, f.keys.pub, 500ms);
  REQUIRE_MESSAGE(said.ok(), said.error_text());
  CHECK(said->head->size == head.size);

  // Three sources that never answer GetSnapshot, then one that does; and a
  // mute node asked first for the frontier. Each request has a 2 s deadline:
  // the manifests are asked at once, so the mute ones cost 2 s together
  // (asked in turn: 6 s), and the frontier one more 2 s.
  std::vector<std::unique_ptr<ChunkSource>> owned;
  for (auto* m : {&mute1, &mute2, &mute3})
    owned.push_back(peer_chunk_source(m->address, f.keys.pub, 2s));
  owned.push_back(f.source());
  auto o = f.options({owned[0].get(), owned[1].get(), owned[2].get(), owned[3].get()});
  o.frontier_from = {mute1.address, f.address};
  o.timeout = 2s;
  std::mutex mu;
  std::vector<std::string> lines;
  o.log = [&](const std::string& line) {
    std::lock_guard lock(mu);
    lines.push_back(line);
  };
  t0 = Clock::now();
  auto r = bootstrap_from_snapshot(o);
  const auto took = Clock::now() - t0;
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  CHECK(r->frontier_from == f.address);
  CHECK_MESSAGE(took < 5800ms, std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
                " ms");
  size_t no_manifest = 0;
  for (const auto& line : lines) no_manifest += line.find("no manifest") != std::string::npos;
  CHECK(no_manifest == 3);
  f.follow_and_compare(o, head.size);
}

TEST_CASE("verify_frontier: the last entry and its path must fold to the signed head") {
  Fixture f;
  const Head head = *f.primary->head();
  auto answer = peer_frontier(f.address, f.keys.pub, head.size, 10s);
  REQUIRE_MESSAGE(answer.ok(), answer.error_text());
  auto good = verify_frontier(*answer, head);
  REQUIRE_MESSAGE(good.ok(), good.error_text());
  CHECK(good->root == head.log_root);
  CHECK(good->subtrees.size() == static_cast<size_t>(std::popcount(head.size)));

  auto bad_path = *answer;
  REQUIRE_FALSE(bad_path.path.empty());
  bad_path.path.back()[0] ^= 1;
  auto e1 = verify_frontier(bad_path, head);
  REQUIRE_FALSE(e1.ok());
  CHECK(e1.error().code == Errc::root_mismatch);

  // Another entry (the one before) with the path of the last: refused.
  auto other = peer_frontier(f.address, f.keys.pub, head.size - 1, 10s);
  REQUIRE(other.ok());
  auto wrong_entry = *answer;
  wrong_entry.last_entry = other->last_entry;
  auto e2 = verify_frontier(wrong_entry, head);
  REQUIRE_FALSE(e2.ok());
  CHECK(e2.error().code == Errc::bad_value);

  // Past the node's head: the node refuses (not_found for the caller).
  auto past = peer_frontier(f.address, f.keys.pub, head.size + 10, 10s);
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().code == Errc::not_found);

  auto hello = peer_hello(f.address, f.keys.pub, 10s);
  REQUIRE_MESSAGE(hello.ok(), hello.error_text());
  REQUIRE(hello->head);
  CHECK(hello->head->size == head.size);
  CHECK(hello->first == 0);
}

TEST_CASE("choose_bootstrap: snapshot for many entries per page or when entry 0 is gone") {
  Head h;
  h.size = 1000;
  h.page_count = 100;
  PeerHello full{h, 0}, compacted{h, 500};
  CHECK(choose_bootstrap({full}, h).snapshot);   // 10 entries per page
  h.page_count = 250;
  CHECK_FALSE(choose_bootstrap({full}, h).snapshot);  // exactly 4 per page
  CHECK(choose_bootstrap({compacted}, h).snapshot);
  CHECK_FALSE(choose_bootstrap({compacted, full}, h).snapshot);
  CHECK_FALSE(choose_bootstrap({}, std::nullopt).snapshot);
  h.size = 999;  // short: replay whatever the ratio, unless entry 0 is gone
  h.page_count = 10;
  CHECK_FALSE(choose_bootstrap({full}, h).snapshot);
  CHECK(choose_bootstrap({compacted}, h).snapshot);
}

}  // namespace swarmlite::client
#endif
