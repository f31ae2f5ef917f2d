// The page service end to end in one process (docs/light-client.md "Page
// service"): a Replica following a Primary serves GET /db/pages, /db/leaves
// (HttpApi) and GetPages / GetLeaves (a Node), and http_page_source /
// peer_page_source fetch from them over 127.0.0.1. The answers verify against
// the primary's signed head (verify_page_set, verify_leaf_set) and hold the
// replica's pages; once the pin moves, the old size is HeadGone with the
// newest; bad page numbers get clear errors; the primary serves no pages.
// GET /db/changes and GetChanges (changes() of both sources) prove the pages
// changed since an older pinned head, on a replica and on the primary; a node
// that did not announce GetChanges in its Hello is not asked.
#ifdef SWARMLITE_CLIENT_HAVE_NET
#include <doctest/doctest.h>

#include "client/light_client.h"
#include "client/page_source_http.h"
#include "client/page_source_peer.h"
#include "net/backends.h"
#include "net/http_api.h"
#include "net/node.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/replica.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite::client {
namespace {

using namespace std::chrono_literals;

// An HTTP backend with nothing but a page service (or none: `server` null).
class PagesBackend : public net::HttpBackend {
 public:
  explicit PagesBackend(const PageServer* server) : server_(server) {}
  bool accepts_writes() const override { return server_ == nullptr; }
  Result<std::vector<net::QueryOutcome>> query(const std::vector<Statement>&,
                                               const net::QueryOptions&) override {
    return std::vector<net::QueryOutcome>{};
  }
  uint64_t size() const override { return 0; }
  nlohmann::json status() const override { return nlohmann::json::object(); }
  Status ready() const override { return ok_status(); }
  const PageServer* page_server() const override { return server_; }

 private:
  const PageServer* server_;
};

struct Fixture {
  testing::TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;
  std::unique_ptr<Replica> replica;
  std::unique_ptr<PagesBackend> pages_backend, primary_http_backend;
  std::unique_ptr<net::HttpApi> http, primary_http;
  std::unique_ptr<net::PrimaryBackend> node_backend;
  std::unique_ptr<net::Node> node;
  std::string url, primary_url, address;

  Fixture() {
    auto p = Primary::open(dir / "p.db", keys.secret, testing::fast_primary(1));
    REQUIRE(p.ok());
    primary = std::move(p).value();
    ReplicaOptions ro = testing::fast_replica();
    ro.pin_interval = 0ms;  // every request may pin the newest head
    auto r = Replica::open(dir / "r.db", dir / "r.log", keys.pub, ro);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    replica = std::move(r).value();
    exec("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
    for (int i = 0; i < 30; ++i) exec("INSERT INTO t(b) VALUES (randomblob(3500))");
    sync();

    pages_backend = std::make_unique<PagesBackend>(replica.get());
    primary_http_backend = std::make_unique<PagesBackend>(primary.get());
    net::HttpApiOptions ho;
    ho.listen = "127.0.0.1:0";
    http = std::make_unique<net::HttpApi>(*pages_backend, ho);
    REQUIRE(http->start().ok());
    url = "http://127.0.0.1:" + std::to_string(http->bound_port());
    primary_http = std::make_unique<net::HttpApi>(*primary_http_backend, ho);
    REQUIRE(primary_http->start().ok());
    primary_url = "http://127.0.0.1:" + std::to_string(primary_http->bound_port());

    // The node follows the primary's log; its page service is the replica.
    node_backend = std::make_unique<net::PrimaryBackend>(*primary);
    net::NodeOptions no;
    no.listen = "127.0.0.1:0";
    node = std::make_unique<net::Node>(*node_backend, no);
    node->set_page_server(replica.get());
    REQUIRE(node->start().ok());
    address = "127.0.0.1:" + std::to_string(node->listen_port());
  }
  ~Fixture() {
    node->stop();
    http->stop();
    primary_http->stop();
  }
  void exec(const std::string& text) {
    auto r = primary->execute({testing::sql(text)});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  void sync() {
    Status s = testing::sync_replica(*primary, *replica);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
  }
  std::vector<std::unique_ptr<PageSource>> sources() {
    std::vector<std::unique_ptr<PageSource>> out;
    out.push_back(http_page_source(url, 10s));
    out.push_back(peer_page_source(address, keys.pub, 10s));
    return out;
  }
};

// A peer source as it was in protocol 3: no GetChanges (the light client
// moves heads with GetLeaves).
struct NoChanges : PageSource {
  std::unique_ptr<PageSource> inner;
  explicit NoChanges(std::unique_ptr<PageSource> in) : inner(std::move(in)) {}
  std::string name() const override { return inner->name(); }
  Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) override {
    return inner->pages(size, pgnos);
  }
  Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) override {
    return inner->leaves(size, pgnos);
  }
  Result<PageAnswer<ChangeSet>> changes(uint64_t, uint64_t) override {
    return make_error(Errc::unavailable, "no GetChanges");
  }
};

template <class T>
T got(Result<PageAnswer<T>> r) {
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE(std::holds_alternative<T>(*r));
  return std::get<T>(std::move(*r));
}

}  // namespace

TEST_CASE("page sources: pages and leaves of the pinned head verify against the signed head") {
  Fixture f;
  const Head head = *f.primary->head();
  REQUIRE(head.page_count > 20);
  auto disk = read_logical_pages(f.dir / "r.db");
  REQUIRE_MESSAGE(disk.ok(), disk.error_text());
  std::vector<uint32_t> all(std::min<uint32_t>(head.page_count, kMaxPagesPerRequest));
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = i + 1;
  for (auto& source : f.sources()) {
    INFO(source->name());
    for (const std::vector<uint32_t>& pgnos :
         {std::vector<uint32_t>{1}, std::vector<uint32_t>{2, 5, 6, 7, head.page_count}, all}) {
      for (uint64_t size : {uint64_t{0}, head.size}) {
        const PageSet set = got(source->pages(size, pgnos));
        Status s = verify_page_set(set, head);
        CHECK_MESSAGE(s.ok(), s.error_text());
        for (size_t i = 0; i < pgnos.size(); ++i)
          CHECK(normalize_page(pgnos[i], set.pages[i]) ==
                normalize_page(pgnos[i], (*disk)[pgnos[i] - 1]));
        const LeafSet leaves = got(source->leaves(size, pgnos));
        Status l = verify_leaf_set(leaves, head);
        CHECK_MESSAGE(l.ok(), l.error_text());
      }
    }
    // A client's check catches a changed byte (the answer is only decoded here).
    PageSet lie = got(source->pages(0, std::vector<uint32_t>{3, 4}));
    lie.pages[1][200] ^= 1;
    CHECK_FALSE(verify_page_set(lie, head).ok());
  }
}

TEST_CASE("page sources: the old head after the pin moved is HeadGone with the newest size") {
  Fixture f;
  const uint64_t old_size = f.primary->head()->size;
  for (auto& source : f.sources()) CHECK(got(source->pages(old_size, std::vector<uint32_t>{1})).head.size == old_size);
  f.exec("INSERT INTO t(b) VALUES (randomblob(9000))");
  f.sync();
  const Head newest = *f.primary->head();
  REQUIRE(newest.size > old_size);
  for (auto& source : f.sources()) {
    INFO(source->name());
    // Size 0 pins the newest head first (an idle replica does so on request).
    const PageSet now = got(source->pages(0, std::vector<uint32_t>{1, 2}));
    CHECK(now.head.size == newest.size);
    CHECK(verify_page_set(now, newest).ok());
    auto gone = source->pages(old_size, std::vector<uint32_t>{1});
    REQUIRE_MESSAGE(gone.ok(), gone.error_text());
    REQUIRE(std::holds_alternative<HeadGone>(*gone));
    CHECK(std::get<HeadGone>(*gone).newest == newest.size);
    auto leaves_gone = source->leaves(old_size, std::vector<uint32_t>{1});
    REQUIRE(leaves_gone.ok());
    REQUIRE(std::holds_alternative<HeadGone>(*leaves_gone));
    CHECK(std::get<HeadGone>(*leaves_gone).newest == newest.size);
    auto later = source->pages(newest.size + 10, std::vector<uint32_t>{1});
    REQUIRE(later.ok());
    REQUIRE(std::holds_alternative<HeadGone>(*later));
    CHECK(std::get<HeadGone>(*later).newest == newest.size);
  }
}

TEST_CASE("page sources: bad page numbers get clear errors; the primary serves pages too") {
  Fixture f;
  const uint32_t count = f.primary->head()->page_count;
  for (auto& source : f.sources()) {
    INFO(source->name());
    auto past = source->pages(0, std::vector<uint32_t>{1, count + 1});
    REQUIRE_FALSE(past.ok());
    CHECK(past.error().code == Errc::invalid_argument);
    CHECK_MESSAGE(past.error().message.find("outside the head's pages") != std::string::npos,
                  past.error().to_string());
    auto order = source->pages(0, std::vector<uint32_t>{3, 2});  // refused before sending
    REQUIRE_FALSE(order.ok());
    CHECK(order.error().code == Errc::invalid_argument);
    std::vector<uint32_t> many(kMaxPagesPerRequest + 1);
    for (uint32_t i = 0; i < many.size(); ++i) many[i] = i + 1;
    CHECK(source->pages(0, many).error().code == Errc::invalid_argument);
    // The source still answers after the refusals (the peer connection was replaced).
    CHECK(verify_page_set(got(source->pages(0, std::vector<uint32_t>{1})), *f.primary->head()).ok());
  }
  // The primary serves pages from its own pin (Primary::pinned_pages), over
  // HTTP and the peer protocol, at its newest signed head.
  const Head head = *f.primary->head();
  auto primary = got(http_page_source(f.primary_url, 10s)->pages(0, std::vector<uint32_t>{1, 2}));
  CHECK(primary.head == head);
  CHECK(verify_page_set(primary, head).ok());
  f.node->set_page_server(f.primary.get());
  auto primary_leaves =
      got(peer_page_source(f.address, f.keys.pub, 10s)->leaves(0, std::vector<uint32_t>{1, 2}));
  CHECK(primary_leaves.head == head);
  CHECK(verify_leaf_set(primary_leaves, head).ok());
  f.node->set_page_server(nullptr);
  auto none = peer_page_source(f.address, f.keys.pub, 10s)->leaves(0, std::vector<uint32_t>{1});
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::unavailable);
  CHECK(none.error().message.find("serves no pages") != std::string::npos);
}

TEST_CASE("page sources: the changes since an older head, over HTTP and the peer protocol") {
  Fixture f;
  auto http = http_page_source(f.url, 10s);
  const Head old = got(http->leaves(0, std::vector<uint32_t>{1})).head;  // pins it
  auto primary_http = http_page_source(f.primary_url, 10s);
  const Head primary_old = got(primary_http->leaves(0, std::vector<uint32_t>{1})).head;
  CHECK(primary_old == old);
  f.exec("UPDATE t SET b = randomblob(3500) WHERE id = 7");
  f.exec("INSERT INTO t(b) VALUES (randomblob(9000))");  // grows the file
  f.sync();
  const Head newest = *f.primary->head();
  for (auto& source : f.sources()) {
    INFO(source->name());
    const ChangeSet set = got(source->changes(old.size, 0));
    CHECK(set.to == newest);
    Status s = verify_change_set(set, old, newest);
    CHECK_MESSAGE(s.ok(), s.error_text());
    const std::vector<uint32_t> changed = changed_pages(set, old.page_count);
    CHECK(!changed.empty());
    CHECK(changed.back() == newest.page_count);  // the grown pages are named
    CHECK(changed.size() < 10);
    CHECK(got(source->changes(old.size, newest.size)).to == newest);
    // Asked at the same head: nothing changed.
    const ChangeSet same = got(source->changes(newest.size, newest.size));
    CHECK(changed_pages(same, newest.page_count).empty());
    // A head the node never pinned (HTTP 403, the peer's not_available), an old `to`.
    auto never = source->changes(old.size - 1, 0);
    REQUIRE_FALSE(never.ok());
    CHECK(never.error().code == Errc::unavailable);
    CHECK_MESSAGE(never.error().message.find("change history") != std::string::npos,
                  never.error().to_string());
    auto gone = source->changes(old.size, old.size);
    REQUIRE(gone.ok());
    REQUIRE(std::holds_alternative<HeadGone>(*gone));
    CHECK(std::get<HeadGone>(*gone).newest == newest.size);
    // The source still answers after the refusals.
    CHECK(got(source->changes(old.size, 0)).to == newest);
  }
  // Backwards would not decode at the node (a ban): refused before sending.
  auto peer = peer_page_source(f.address, f.keys.pub, 10s);
  auto backwards = peer->changes(newest.size, old.size);
  REQUIRE_FALSE(backwards.ok());
  CHECK(backwards.error().code == Errc::invalid_argument);
  CHECK(got(peer->changes(old.size, 0)).to == newest);
  // The primary keeps a change history too (a request pins its newest head at
  // once, pin_interval or not): the same pages changed, over HTTP and, as the
  // node's page server, over the peer protocol.
  const std::vector<uint32_t> changed =
      changed_pages(got(http->changes(old.size, newest.size)), old.page_count);
  f.node->set_page_server(f.primary.get());
  auto primary_peer = peer_page_source(f.address, f.keys.pub, 10s);
  for (PageSource* source : {primary_http.get(), primary_peer.get()}) {
    INFO(source->name());
    const ChangeSet from_primary = got(source->changes(primary_old.size, newest.size));
    CHECK(from_primary.to == newest);
    Status primary_ok = verify_change_set(from_primary, primary_old, newest);
    CHECK_MESSAGE(primary_ok.ok(), primary_ok.error_text());
    CHECK(changed_pages(from_primary, primary_old.page_count) == changed);
  }
}

// The figure of docs/light-client.md "Head moves over the peer protocol": two
// light clients hold the same pages over the peer protocol, one row is
// written, and each moves to the new head: by a change set, or (as protocol 3
// did) by the leaves of every held page. The node's bytes out per refresh.
TEST_CASE("page sources: a light client's refresh after a one-row write, over the peer protocol") {
  Fixture f;
  f.exec(
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 3000) "
      "INSERT INTO t(b) SELECT randomblob(1000) FROM c");
  f.sync();
  testing::TempDir cache;
  auto open = [&](std::shared_ptr<PageSource> source, const char* name) {
    auto c = LightClient::open(cache / name, {std::move(source)}, f.keys.pub, {});
    REQUIRE_MESSAGE(c.ok(), c.error_text());
    return std::move(c).value();
  };
  auto with = open(peer_page_source(f.address, f.keys.pub, 10s), "with");
  auto without = open(std::make_shared<NoChanges>(peer_page_source(f.address, f.keys.pub, 10s)),
                      "without");
  const std::string q = "SELECT count(*), sum(length(b)) FROM t";
  for (auto* c : {with.get(), without.get()}) REQUIRE(c->query(q, {}).ok());
  REQUIRE(with->proven_pages() == without->proven_pages());
  f.exec("UPDATE t SET b = randomblob(1000) WHERE id = 1500");
  f.sync();
  auto refresh = [&](LightClient& c) {
    const uint64_t out0 = f.node->status().bytes_out;
    auto moved = c.refresh();
    REQUIRE_MESSAGE(moved.ok(), moved.error_text());
    CHECK(moved->head_moves == 1);
    CHECK(c.head() == f.primary->head());
    return std::pair{*moved, f.node->status().bytes_out - out0};
  };
  const auto [by_changes, changes_bytes] = refresh(*with);
  const auto [by_leaves, leaves_bytes] = refresh(*without);
  CHECK(by_changes.change_sets == 1);
  CHECK(by_changes.round_trips == 1);
  CHECK(by_leaves.change_fallbacks == 1);
  MESSAGE(fmt::format(
      "refresh after a one-row write, {} pages held, over the peer protocol: GetChanges {} "
      "bytes out of the node ({} proof bytes, {} round trip), GetLeaves {} bytes ({} proof "
      "bytes, {} round trips): {:.1f}x",
      with->proven_pages(), changes_bytes, by_changes.proof_bytes, by_changes.round_trips,
      leaves_bytes, by_leaves.proof_bytes, by_leaves.round_trips,
      static_cast<double>(leaves_bytes) / static_cast<double>(std::max<uint64_t>(changes_bytes, 1))));
  // (The node's byte counts are printed, not checked: a write is counted when
  // its completion runs on the node's io thread, which may be after the client
  // read it.)
  CHECK(by_changes.proof_bytes * 10 < by_leaves.proof_bytes);
}

// docs/protocol.md "Changes": GetChanges goes only to a node whose Hello
// announced it; another is not asked (its answer would be a ban on a node that
// does not know the message) and changes() is unavailable at once.
TEST_CASE("page sources: a node that did not announce GetChanges is not asked") {
  Fixture f;
  f.node->set_page_server(nullptr);  // a node without a page service announces nothing
  const uint64_t served = f.node->status().snapshot_requests_served;
  auto source = peer_page_source(f.address, f.keys.pub, 10s);
  auto none = source->changes(f.primary->head()->size, 0);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::unavailable);
  CHECK_MESSAGE(none.error().message.find("does not announce GetChanges") != std::string::npos,
                none.error().to_string());
  CHECK(f.node->status().snapshot_requests_served == served);  // nothing was asked
  // The connection is kept: a later request goes on it.
  auto leaves = source->leaves(0, std::vector<uint32_t>{1});
  REQUIRE_FALSE(leaves.ok());
  CHECK(leaves.error().message.find("serves no pages") != std::string::npos);
  CHECK(f.node->status().snapshot_requests_served == served + 1);
}

}  // namespace swarmlite::client
#endif  // SWARMLITE_CLIENT_HAVE_NET
