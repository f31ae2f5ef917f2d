// The page service end to end in one process (docs/light-client.md "Page
// service"): a Replica following a Primary serves GET /db/pages, /db/leaves
// (HttpApi) and GetPages / GetLeaves (a Node), and http_page_source /
// peer_page_source fetch from them over 127.0.0.1. The answers verify against
// the primary's signed head (verify_page_set, verify_leaf_set) and hold the
// replica's pages; once the pin moves, the old size is HeadGone with the
// newest; bad page numbers get clear errors; the primary serves no pages.
// GET /db/changes (http_page_source::changes) proves the pages changed since an
// older pinned head, on the replica and on the primary; the peer source has no
// GetChanges (protocol 3).
#ifdef SWARMLITE_CLIENT_HAVE_NET
#include <doctest/doctest.h>

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
    REQUIRE_MESSAGE(r.ok(), r.error().to_string());
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
    REQUIRE_MESSAGE(r.ok(), r.error().to_string());
  }
  void sync() {
    Status s = testing::sync_replica(*primary, *replica);
    REQUIRE_MESSAGE(s.ok(), s.error().to_string());
  }
  std::vector<std::unique_ptr<PageSource>> sources() {
    std::vector<std::unique_ptr<PageSource>> out;
    out.push_back(http_page_source(url, 10s));
    out.push_back(peer_page_source(address, keys.pub, 10s));
    return out;
  }
};

template <class T>
T got(Result<PageAnswer<T>> r) {
  REQUIRE_MESSAGE(r.ok(), r.error().to_string());
  REQUIRE(std::holds_alternative<T>(*r));
  return std::get<T>(std::move(*r));
}

}  // namespace

TEST_CASE("page sources: pages and leaves of the pinned head verify against the signed head") {
  Fixture f;
  const Head head = *f.primary->head();
  REQUIRE(head.page_count > 20);
  auto disk = read_logical_pages(f.dir / "r.db");
  REQUIRE_MESSAGE(disk.ok(), disk.error().to_string());
  std::vector<uint32_t> all(std::min<uint32_t>(head.page_count, kMaxPagesPerRequest));
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = i + 1;
  for (auto& source : f.sources()) {
    INFO(source->name());
    for (const std::vector<uint32_t>& pgnos :
         {std::vector<uint32_t>{1}, std::vector<uint32_t>{2, 5, 6, 7, head.page_count}, all}) {
      for (uint64_t size : {uint64_t{0}, head.size}) {
        const PageSet set = got(source->pages(size, pgnos));
        Status s = verify_page_set(set, head);
        CHECK_MESSAGE(s.ok(), s.error().to_string());
        for (size_t i = 0; i < pgnos.size(); ++i)
          CHECK(normalize_page(pgnos[i], set.pages[i]) ==
                normalize_page(pgnos[i], (*disk)[pgnos[i] - 1]));
        const LeafSet leaves = got(source->leaves(size, pgnos));
        Status l = verify_leaf_set(leaves, head);
        CHECK_MESSAGE(l.ok(), l.error().to_string());
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
    REQUIRE_MESSAGE(gone.ok(), gone.error().to_string());
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

TEST_CASE("page sources: the changes since an older head over HTTP; not on the peer protocol") {
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
  const ChangeSet set = got(http->changes(old.size, 0));
  CHECK(set.to == newest);
  Status s = verify_change_set(set, old, newest);
  CHECK_MESSAGE(s.ok(), s.error().to_string());
  const std::vector<uint32_t> changed = changed_pages(set, old.page_count);
  CHECK(!changed.empty());
  CHECK(changed.back() == newest.page_count);  // the grown pages are named
  CHECK(changed.size() < 10);
  // Asked at the same head: nothing changed.
  const ChangeSet same = got(http->changes(newest.size, newest.size));
  CHECK(changed_pages(same, newest.page_count).empty());
  // A head the node never pinned, an old `to`, the primary, the peer protocol.
  auto never = http->changes(old.size - 1, 0);
  REQUIRE_FALSE(never.ok());
  CHECK_MESSAGE(never.error().message.find("HTTP 403") != std::string::npos,
                never.error().to_string());
  auto gone = http->changes(old.size, old.size);
  REQUIRE(gone.ok());
  REQUIRE(std::holds_alternative<HeadGone>(*gone));
  CHECK(std::get<HeadGone>(*gone).newest == newest.size);
  // The primary keeps a change history too: asked for its newest head (a
  // request pins it at once, pin_interval or not), the same pages changed.
  const ChangeSet from_primary = got(primary_http->changes(primary_old.size, newest.size));
  CHECK(from_primary.to == newest);
  Status primary_ok = verify_change_set(from_primary, primary_old, newest);
  CHECK_MESSAGE(primary_ok.ok(), primary_ok.error().to_string());
  CHECK(changed_pages(from_primary, primary_old.page_count) == changed);
  auto peer = peer_page_source(f.address, f.keys.pub, 10s)->changes(old.size, 0);
  REQUIRE_FALSE(peer.ok());
  CHECK(peer.error().code == Errc::unavailable);
  CHECK(peer.error().message.find("has no GetChanges") != std::string::npos);
}

}  // namespace swarmlite::client
#endif  // SWARMLITE_CLIENT_HAVE_NET
