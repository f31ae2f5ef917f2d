// LightClient (light_client.h) against an in-process replica
// (light_replica_source.h): the same answers as plain SQLite for every query
// shape; lying sources rejected with the reason and the answer taken from an
// honest one; a head move fetches only changed pages; a corrupt cache slot is
// refetched; a restarted client reuses its cache; writes refused.
#include "client/light_client.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "client/light_replica_source.h"
#include "sqlbridge/engine/engine_test_fixture.h"
#include "sqlbridge/engine/state_tree.h"

using namespace swarmlite;
using namespace swarmlite::client;
using namespace swarmlite::testing;

namespace {

struct Node : PrimaryAndReplica {
  std::shared_ptr<ReplicaPageSource> honest;
  Node() {
    replica.reset();
    ReplicaOptions o = fast_replica();
    o.pin_interval = std::chrono::milliseconds(0);
    auto r = Replica::open(dir / "r.db", dir / "r.log", keys.pub, o);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    replica = std::move(r).value();
    honest = std::make_shared<ReplicaPageSource>(*replica, "honest");
    exec("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT)");
    exec("CREATE INDEX t_k ON t(k)");
    exec("CREATE TABLE u(tid INTEGER, tag TEXT)");
    exec("CREATE VIEW big_v AS SELECT id, v FROM t WHERE v > 900");
    exec("CREATE VIRTUAL TABLE docs USING fts5(body)");
    exec(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 3000) "
        "INSERT INTO t(id, k, v, body) SELECT i, printf('k%05d', (i * 7919) % 3000), "
        "(i * 31) % 1000, printf('%.*c', 150, 'x') FROM c");
    exec(
        "INSERT INTO u SELECT id, CASE id % 3 WHEN 0 THEN 'red' WHEN 1 THEN 'green' ELSE 'blue' "
        "END FROM t WHERE id % 5 = 0");
    exec(
        "INSERT INTO docs(rowid, body) SELECT id, CASE WHEN id % 11 = 0 THEN 'apple pie' ELSE "
        "'plain text' END || ' ' || id FROM t WHERE id <= 800");
    sync();
  }
  void exec(const std::string& text) {
    auto r = primary->execute({sql(text)});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
  void sync() {
    Status s = sync_replica(*primary, *replica);
    REQUIRE_MESSAGE(s.ok(), s.error_text());
    REQUIRE(replica->pinned_pages(0, std::vector<uint32_t>{1}).ok());  // pins the newest head
  }
  QueryResult plain(const std::string& q, const std::vector<Value>& params = {}) {
    auto c = GuardedConnection::open("file:" + (dir / "r.db").string() + "?mode=ro");
    REQUIRE_MESSAGE(c.ok(), c.error_text());
    auto r = (*c)->query(q, params);
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    return std::move(r).value();
  }
  std::unique_ptr<LightClient> client(std::vector<std::shared_ptr<PageSource>> sources,
                                      const std::filesystem::path& cache,
                                      LightClientOptions o = {}) {
    auto c = LightClient::open(cache, std::move(sources), keys.pub, o);
    REQUIRE_MESSAGE(c.ok(), c.error_text());
    return std::move(c).value();
  }
};

LightAnswer run(LightClient& c, const std::string& q, const std::vector<Value>& params = {}) {
  auto a = c.query(q, params);
  REQUIRE_MESSAGE(a.ok(), a.error_text());
  return std::move(a).value();
}

// A source that answers like `inner` but lies in one way.
struct Liar : PageSource {
  enum class Lie {
    flipped_byte,
    swapped_pgno,
    wrong_proof,
    stale_head,
    head_gone,
    bad_signature,
    hidden_change,  // a change set without one changed page (the rest honest)
    no_changes,     // keeps no change history: GetChanges is refused
  };
  std::shared_ptr<PageSource> inner;
  Lie lie;
  std::optional<Head> old;  // stale_head: the head it keeps claiming
  Liar(std::shared_ptr<PageSource> in, Lie l) : inner(std::move(in)), lie(l) {}
  std::string name() const override { return "liar"; }
  Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) override {
    if (only_changes || (only_newest_pages && size != 0)) return inner->pages(size, pgnos);
    if (lie == Lie::head_gone) return PageAnswer<PageSet>(HeadGone{size});
    SWL_ASSIGN(auto a, inner->pages(size, pgnos));
    if (!std::holds_alternative<PageSet>(a)) return a;
    PageSet& s = std::get<PageSet>(a);
    switch (lie) {
      case Lie::flipped_byte:
        s.pages.back()[s.page_size / 2] ^= 1;
        break;
      case Lie::swapped_pgno: {
        // Pages under each other's numbers (with the honest proof); one page
        // asked: the bytes of its neighbour under its number.
        if (pgnos.size() > 1) {
          std::swap(s.pages.front(), s.pages.back());
        } else {
          const uint32_t other = pgnos[0] == 1 ? 2 : pgnos[0] - 1;
          SWL_ASSIGN(auto b, inner->pages(size, std::span<const uint32_t>(&other, 1)));
          s.pages = std::get<PageSet>(b).pages;
        }
        break;
      }
      case Lie::wrong_proof:
        if (s.proof.hashes.empty())
          s.proof.size += 1;
        else
          s.proof.hashes[0][0] ^= 1;
        break;
      case Lie::stale_head:
        if (!old) old = s.head;
        s.head = *old;
        break;
      default:
        break;
    }
    return a;
  }
  Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) override {
    if (only_changes || only_newest_pages) return inner->leaves(size, pgnos);
    if (lie == Lie::head_gone) return PageAnswer<LeafSet>(HeadGone{size + 1});
    SWL_ASSIGN(auto a, inner->leaves(size, pgnos));
    if (lie == Lie::bad_signature && std::holds_alternative<LeafSet>(a))
      std::get<LeafSet>(a).head.signature[3] ^= 1;
    return a;
  }
  Result<PageAnswer<ChangeSet>> changes(uint64_t from_size, uint64_t to_size) override {
    ++change_calls;
    if (only_newest_pages) return inner->changes(from_size, to_size);
    if (lie == Lie::head_gone) return PageAnswer<ChangeSet>(HeadGone{to_size + 1});
    if (lie == Lie::no_changes)
      return make_error(Errc::unavailable, "liar: no change history here");
    SWL_ASSIGN(auto a, inner->changes(from_size, to_size));
    if (!std::holds_alternative<ChangeSet>(a)) return a;
    ChangeSet& s = std::get<ChangeSet>(a);
    switch (lie) {
      case Lie::bad_signature:
        s.to.signature[3] ^= 1;
        break;
      case Lie::wrong_proof:
        if (!s.siblings.empty()) s.siblings.back()[0] ^= 1;
        break;
      case Lie::hidden_change:
        // The first page whose leaf changed is left out (its leaves with it):
        // the siblings no longer fold to both roots.
        for (size_t i = 0; i + 1 < s.pgnos.size() && i < s.old_leaves.size(); ++i) {
          if (s.old_leaves[i] == s.new_leaves[i]) continue;
          s.pgnos.erase(s.pgnos.begin() + static_cast<ptrdiff_t>(i));
          s.old_leaves.erase(s.old_leaves.begin() + static_cast<ptrdiff_t>(i));
          s.new_leaves.erase(s.new_leaves.begin() + static_cast<ptrdiff_t>(i));
          break;
        }
        break;
      default:
        break;
    }
    return a;
  }
  int change_calls = 0;
  bool only_changes = false;  // pages and leaves honest: only change sets lie
  // Lies only in pages at the newest head (size 0: a deferred head check).
  bool only_newest_pages = false;
};

const std::vector<std::pair<std::string, std::vector<Value>>> kQueries = {
    {"SELECT * FROM t WHERE id = 777", {}},
    {"SELECT body, v FROM t WHERE id = ?", {Value{int64_t{2048}}}},
    {"SELECT id, k FROM t WHERE id BETWEEN 100 AND 180 ORDER BY id", {}},
    {"SELECT id, k FROM t WHERE k >= 'k00500' AND k < 'k00530' ORDER BY k", {}},
    {"SELECT t.id, u.tag FROM t JOIN u ON u.tid = t.id WHERE u.tag = 'red' AND t.v < 100 "
     "ORDER BY t.id",
     {}},
    {"SELECT count(*), sum(v), min(k), max(k), avg(length(body)) FROM t", {}},
    {"SELECT v % 7, count(*) FROM t GROUP BY 1 ORDER BY 1", {}},
    {"SELECT rowid, body FROM docs WHERE docs MATCH 'apple' ORDER BY rowid", {}},
    {"SELECT * FROM big_v ORDER BY id LIMIT 7", {}},
    {"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 12) "
     "SELECT i, (SELECT k FROM t WHERE id = i * 200) FROM c",
     {}},
    {"SELECT name, type FROM sqlite_schema ORDER BY name", {}},
};

}  // namespace

TEST_CASE(
    "light client: every query shape gives plain SQLite's answer; warm queries fetch nothing") {
  Node n;
  TempDir cache;
  auto c = n.client({n.honest}, cache / "c");
  uint64_t cold_pages = 0;
  for (const auto& [q, params] : kQueries) {
    INFO(q);
    LightAnswer a = run(*c, q, params);
    QueryResult want = n.plain(q, params);
    CHECK(a.columns == want.columns);
    CHECK(a.rows == want.rows);
    CHECK(a.head.size == n.replica->pinned_size());
    cold_pages += a.stats.pages_fetched;
  }
  CHECK(cold_pages > 0);
  CHECK(cold_pages < n.replica->pinned_pages(0, std::vector<uint32_t>{1})->head.page_count);
  for (const auto& [q, params] : kQueries) {
    INFO(q);
    LightAnswer a = run(*c, q, params);
    CHECK(a.rows == n.plain(q, params).rows);
    CHECK(a.stats.pages_fetched == 0);
    CHECK(a.stats.round_trips == 1);    // the head check (refresh_each_query)
    CHECK(a.stats.proof_bytes < 1024);  // page 1's leaf and path: the head did not move
    CHECK(a.stats.head_moves == 0);
  }
  CHECK(c->bans().empty());
}

TEST_CASE("light client: writes are refused") {
  Node n;
  TempDir cache;
  auto c = n.client({n.honest}, cache / "c");
  for (const char* q : {"DELETE FROM t WHERE id = 1", "INSERT INTO u VALUES (1, 'x')",
                        "CREATE TABLE z(a)", "PRAGMA user_version = 3"}) {
    INFO(q);
    auto a = c->query(q);
    REQUIRE_FALSE(a.ok());
    CHECK(a.error().kind == ClientErrorKind::query_failed);
    CHECK(a.error().message.find("reads only") != std::string::npos);
  }
  CHECK(run(*c, "SELECT count(*) FROM u").rows == n.plain("SELECT count(*) FROM u").rows);
}

TEST_CASE("light client: a lying source is banned with the reason; the honest one answers") {
  using Lie = Liar::Lie;
  const std::vector<std::pair<Lie, std::string>> lies = {
      {Lie::flipped_byte, "root"},
      {Lie::swapped_pgno, "root"},
      {Lie::wrong_proof, "pages"},
      {Lie::stale_head, "not the trusted head"},
      {Lie::bad_signature, "not signed by the log key"},
  };
  for (const auto& [lie, reason] : lies) {
    CAPTURE(static_cast<int>(lie));
    Node n;
    TempDir cache;
    auto liar = std::make_shared<Liar>(n.honest, lie);
    if (lie == Lie::stale_head) {
      // The liar remembers this head and serves it after the writes below.
      REQUIRE(liar->pages(0, std::vector<uint32_t>{1}).ok());
      n.exec("UPDATE t SET v = v + 1 WHERE id < 50");
      n.sync();
    }
    auto c = n.client({liar, n.honest}, cache / "c");
    const std::string q = "SELECT id, v, k FROM t WHERE id BETWEEN 10 AND 60 ORDER BY id";
    LightAnswer a = run(*c, q);
    CHECK(a.rows == n.plain(q).rows);
    REQUIRE(c->bans().size() == 1);
    CHECK(c->bans()[0].source == "liar");
    INFO(c->bans()[0].reason);
    CHECK(c->bans()[0].reason.find(reason) != std::string::npos);
    // Banned for the client's life: the next query never asks it.
    LightAnswer b = run(*c, "SELECT count(*) FROM t WHERE v > 500");
    CHECK(b.rows == n.plain("SELECT count(*) FROM t WHERE v > 500").rows);
  }
}

TEST_CASE("light client: only liars: the query fails naming the pages and every reason") {
  Node n;
  TempDir cache;
  auto c = n.client({std::make_shared<Liar>(n.honest, Liar::Lie::flipped_byte),
                     std::make_shared<Liar>(n.honest, Liar::Lie::wrong_proof)},
                    cache / "c");
  auto a = c->query("SELECT * FROM t WHERE id = 5");
  REQUIRE_FALSE(a.ok());
  CHECK(a.error().kind == ClientErrorKind::proof_invalid);
  CHECK(a.error().message.find("page 1 at size") != std::string::npos);
  CHECK(a.error().earlier_attempts.size() == 1);
  CHECK(c->bans().size() == 2);
  // Nothing unverified reached the cache.
  CHECK((c->cache() == nullptr || c->cache()->stats().entries == 0));
}

TEST_CASE("light client: head_gone: another source answers; from every source, bounded retries") {
  Node n;
  TempDir cache;
  auto gone = std::make_shared<Liar>(n.honest, Liar::Lie::head_gone);
  {
    // Pages HeadGone from the first source, honest leaves from the second.
    auto c = n.client({gone, n.honest}, cache / "a");
    LightAnswer a = run(*c, "SELECT k FROM t WHERE id = 9");
    CHECK(a.rows == n.plain("SELECT k FROM t WHERE id = 9").rows);
    CHECK(c->bans().empty());  // not a lie: a node whose pin moved on
  }
  // A source whose pages are always "gone" while its leaves and changes keep
  // the head: the client retries max_head_retries times, then says so.
  struct GoneLoop : Liar {
    using Liar::Liar;
    Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> p) override {
      return inner->leaves(size, p);
    }
    Result<PageAnswer<ChangeSet>> changes(uint64_t from, uint64_t to) override {
      return inner->changes(from, to);
    }
  };
  auto loop = std::make_shared<GoneLoop>(n.honest, Liar::Lie::head_gone);
  LightClientOptions o;
  o.max_head_retries = 2;
  auto c = n.client({loop}, cache / "b", o);
  auto a = c->query("SELECT k FROM t WHERE id = 9");
  REQUIRE_FALSE(a.ok());
  CHECK(a.error().message.find("gone") != std::string::npos);
  CHECK(a.error().message.find("gave up") != std::string::npos);
  // 3 × (the head check + GetPages of page 1): GetLeaves first, then GetChanges.
  CHECK(c->totals().round_trips == 6);
}

TEST_CASE("light client: after a write the re-query fetches only changed pages it reads") {
  Node n;
  TempDir cache;
  LightClientOptions o;
  o.max_batch_pages = 1;  // one page per miss: fetched pages are exactly the misses
  auto c = n.client({n.honest}, cache / "c", o);
  const std::string q = "SELECT id, v FROM t WHERE id IN (5, 1500, 2900) ORDER BY id";
  run(*c, q);
  auto before = read_logical_pages(n.dir / "r.db");
  REQUIRE(before.ok());
  n.exec("UPDATE t SET v = 4242 WHERE id = 1500");
  n.sync();
  auto after = read_logical_pages(n.dir / "r.db");
  REQUIRE(after.ok());
  std::set<uint32_t> changed;
  for (uint32_t p = 1; p <= after->size(); ++p)
    if (p > before->size() ||
        page_leaf_hash(p, (*before)[p - 1]) != page_leaf_hash(p, (*after)[p - 1]))
      changed.insert(p);
  REQUIRE(!changed.empty());
  LightAnswer a = run(*c, q);
  CHECK(a.rows == n.plain(q).rows);
  CHECK(a.stats.head_moves == 1);
  CHECK(a.stats.pages_reused > 0);
  CHECK(a.stats.pages_dropped > 0);
  REQUIRE(!a.fetched.empty());
  for (uint32_t p : a.fetched) CHECK(changed.contains(p));
  // Every changed page the query reads was fetched, none twice: the pages it
  // held and that changed are the ones dropped.
  CHECK(a.fetched.size() == a.stats.pages_dropped);
  CHECK(a.stats.round_trips == 1 + a.fetched.size());
  // A query over rows the write did not touch fetches nothing more.
  LightAnswer b = run(*c, "SELECT v FROM t WHERE id = 5");
  CHECK(b.stats.pages_fetched == 0);
}

namespace {

// A warm client holding many pages, a one-row-ish write, and the pages it changed.
struct WarmMove {
  Node n;
  TempDir cache;
  std::unique_ptr<LightClient> c;
  std::set<uint32_t> changed;
  const std::string q =
      "SELECT sum(v), count(*), max(length(body)), (SELECT count(*) FROM t WHERE k >= '') FROM t";
  // `liar` (if any) answers like the node's honest source but lies its way;
  // `with_honest`: the honest source is asked after it.
  explicit WarmMove(std::shared_ptr<Liar> liar = nullptr, bool with_honest = false) {
    LightClientOptions o;
    o.max_batch_pages = 1;
    std::vector<std::shared_ptr<PageSource>> sources{n.honest};
    if (liar) {
      liar->inner = n.honest;
      sources = {liar};
      if (with_honest) sources.push_back(n.honest);
    }
    c = n.client(std::move(sources), cache / "c", o);
    run(*c, q);
    REQUIRE(c->proven_pages() > 128);  // over the one-request threshold
    auto before = read_logical_pages(n.dir / "r.db");
    REQUIRE(before.ok());
    n.exec("UPDATE t SET v = v + 1 WHERE id IN (10, 2000)");
    n.sync();
    auto after = read_logical_pages(n.dir / "r.db");
    REQUIRE(after.ok());
    for (uint32_t p = 1; p <= after->size(); ++p)
      if (p > before->size() ||
          page_leaf_hash(p, (*before)[p - 1]) != page_leaf_hash(p, (*after)[p - 1]))
        changed.insert(p);
  }
};

}  // namespace

TEST_CASE("light client: holding many pages, a head move asks for the changes since its head") {
  WarmMove w;
  const size_t held = w.c->proven_pages();
  auto moved = w.c->refresh();
  REQUIRE_MESSAGE(moved.ok(), moved.error_text());
  CHECK(moved->head_moves == 1);
  CHECK(moved->change_sets == 1);
  CHECK(moved->change_fallbacks == 0);
  CHECK(moved->round_trips == 1);
  CHECK(moved->pages_reused + moved->pages_dropped == held);
  CHECK(moved->pages_dropped > 0);
  // Only the changed pages' leaves and one set of siblings: far below the 32
  // bytes per held page of the leaves form.
  CHECK(moved->proof_bytes < 32 * held / 4);
  LightAnswer a = run(*w.c, w.q);
  CHECK(a.rows == w.n.plain(w.q).rows);
  REQUIRE(!a.fetched.empty());
  for (uint32_t p : a.fetched) CHECK(w.changed.contains(p));
  CHECK(a.fetched.size() == moved->pages_dropped);
  // One per changed page: the first one is the head check (deferred).
  CHECK(a.stats.round_trips == a.fetched.size());
  CHECK(a.stats.merged_checks == 1);
}

TEST_CASE(
    "light client: a source without change history: the head move asks the head, then leaves") {
  WarmMove w(std::make_shared<Liar>(nullptr, Liar::Lie::no_changes));
  const size_t held = w.c->proven_pages();
  auto moved = w.c->refresh();
  REQUIRE_MESSAGE(moved.ok(), moved.error_text());
  CHECK(moved->head_moves == 1);
  CHECK(moved->change_sets == 0);
  CHECK(moved->change_fallbacks == 1);
  CHECK(moved->round_trips == 3);  // the refused changes, the head, the held pages' leaves
  CHECK(moved->proof_bytes > 32 * held);
  LightAnswer a = run(*w.c, w.q);
  CHECK(a.rows == w.n.plain(w.q).rows);
  for (uint32_t p : a.fetched) CHECK(w.changed.contains(p));
  CHECK(a.fetched.size() == moved->pages_dropped);
  CHECK(w.c->bans().empty());
}

TEST_CASE("light client: a change set that hides a change or lies about the head is banned") {
  using Lie = Liar::Lie;
  for (Lie lie : {Lie::hidden_change, Lie::wrong_proof, Lie::bad_signature}) {
    INFO(static_cast<int>(lie));
    auto liar = std::make_shared<Liar>(nullptr, lie);
    liar->only_changes = true;
    WarmMove w(liar, /*with_honest=*/true);
    CHECK(w.c->bans().empty());
    LightAnswer a = run(*w.c, w.q);
    CHECK(a.rows == w.n.plain(w.q).rows);
    REQUIRE(w.c->bans().size() == 1);
    CHECK(w.c->bans()[0].source == "liar");
    const std::string& why = w.c->bans()[0].reason;
    CHECK_MESSAGE((why.find("changes from size") != std::string::npos ||
                   why.find("not signed by the log key") != std::string::npos),
                  why);
    // The honest source moved the client, by its own change set.
    CHECK(a.stats.change_sets == 1);
    for (uint32_t p : a.fetched) CHECK(w.changed.contains(p));
  }
}

// The deferred head check (LightClientOptions::defer_head_check,
// docs/light-client.md "Deferred head check").
namespace {

// A client of `n` over `sources`, one page per miss, that has run one query
// twice: it holds the root and schema, and its last head check found the head
// unchanged (so the next query defers its check).
std::unique_ptr<LightClient> deferring_client(Node& n, std::vector<std::shared_ptr<PageSource>> sources,
                                              const std::filesystem::path& cache) {
  LightClientOptions o;
  o.max_batch_pages = 1;
  auto c = n.client(std::move(sources), cache, o);
  run(*c, "SELECT v FROM t WHERE id = 5");
  run(*c, "SELECT v FROM t WHERE id = 5");
  return c;
}

}  // namespace

TEST_CASE("light client: a warm query's first miss is its head check: one round trip") {
  Node n;
  TempDir cache;
  auto c = deferring_client(n, {n.honest}, cache / "c");
  const std::string q = "SELECT id, v, k FROM t WHERE id = 2900";
  LightAnswer a = run(*c, q);
  CHECK(a.rows == n.plain(q).rows);
  CHECK(a.stats.pages_fetched == 1);  // the leaf: root and schema are held
  CHECK(a.stats.round_trips == 1);    // 2 with the head check first
  CHECK(a.stats.merged_checks == 1);
  CHECK(a.stats.reruns == 0);
  // Off: the head check goes first.
  c->options().defer_head_check = false;
  LightAnswer b = run(*c, "SELECT id, v, k FROM t WHERE id = 2400");
  CHECK(b.stats.pages_fetched == 1);
  CHECK(b.stats.round_trips == 2);
  CHECK(b.stats.merged_checks == 0);
}

TEST_CASE("light client: a deferred head check that finds the head moved re-runs the query") {
  Node n;
  TempDir cache;
  auto c = deferring_client(n, {n.honest}, cache / "c");
  // Writes `v` to row `id`, then queries it: the rows are those of the newer
  // head, never of the one the deferred run started at.
  auto moved_query = [&](int64_t id, int64_t v) {
    n.exec(fmt::format("UPDATE t SET v = {} WHERE id = {}", v, id));
    n.sync();
    const std::string q = fmt::format("SELECT id, v FROM t WHERE id = {}", id);
    LightAnswer a = run(*c, q);
    CHECK(a.rows == n.plain(q).rows);
    CHECK(a.rows[0][1] == Value{v});
    CHECK(a.stats.reruns == 1);
    CHECK(a.stats.head_moves == 1);
    CHECK(a.head.size == n.replica->pinned_size());
    return a;
  };
  // A miss at the old head: the first fetch returns the newer head.
  LightAnswer a = moved_query(1500, 4242);
  CHECK(a.stats.round_trips <= 3);  // GetPages{0}, the change set, a page changed at the move
  run(*c, "SELECT v FROM t WHERE id = 1500");  // the check goes first once (the last one moved)
  run(*c, "SELECT v FROM t WHERE id = 1500");  // deferred again after a check found no move
  // No miss at the old head: the check at the end finds the move.
  moved_query(5, 777);
  CHECK(c->bans().empty());
}

TEST_CASE("light client: a deferred head check's pages are checked like any: a lie is banned") {
  using Lie = Liar::Lie;
  for (const auto& [lie, reason] : std::vector<std::pair<Lie, std::string>>{
           {Lie::flipped_byte, "root"},
           {Lie::wrong_proof, "pages"},
           {Lie::swapped_pgno, "root"},
           {Lie::stale_head, ""},  // behind the client's head: skipped, not banned
       }) {
    CAPTURE(static_cast<int>(lie));
    Node n;
    TempDir cache;
    auto liar = std::make_shared<Liar>(n.honest, lie);
    liar->only_newest_pages = true;
    if (lie == Lie::stale_head) {
      REQUIRE(liar->pages(0, std::vector<uint32_t>{1}).ok());  // remembers this head
      n.exec("UPDATE t SET v = v + 1 WHERE id < 50");
      n.sync();
    }
    auto c = deferring_client(n, {liar, n.honest}, cache / "c");
    REQUIRE(c->bans().empty());
    const std::string q = "SELECT id, v, k FROM t WHERE id = 2900";
    LightAnswer a = run(*c, q);
    CHECK(a.rows == n.plain(q).rows);
    CHECK(a.stats.merged_checks == 1);  // the honest source's answer was the check
    if (reason.empty()) {
      CHECK(c->bans().empty());
    } else {
      REQUIRE(c->bans().size() == 1);
      CHECK(c->bans()[0].source == "liar");
      CHECK_MESSAGE(c->bans()[0].reason.find(reason) != std::string::npos, c->bans()[0].reason);
    }
  }
}

// Generated: writes (updates, inserts, deletes, sometimes several before the
// replica catches up) interleaved with queries of every shape, with the
// deferred head check on and off: every answer is plain SQLite's on the
// replica's file at the head the client names, which is the replica's
// newest (the client checks the head on every query, so never answers from
// an older one). Seeds fixed; SWARMLITE_LONG runs 20x more steps.
TEST_CASE("light client: generated writes and queries: every answer is the newest head's") {
  const int steps = std::getenv("SWARMLITE_LONG") ? 4000 : 200;
  for (const bool defer : {true, false}) {
    CAPTURE(defer);
    Node n;
    TempDir cache;
    std::mt19937_64 rng(defer ? 1515 : 1516);
    LightClientOptions o;
    o.defer_head_check = defer;
    o.cache.max_bytes = 64 * 4096;  // small: evictions and refetches too
    auto c = n.client({n.honest}, cache / "c", o);
    int64_t next_id = 3001;
    uint64_t reruns = 0, merged = 0;
    for (int step = 0; step < steps; ++step) {
      CAPTURE(step);
      const uint64_t r = rng() % 10;
      if (r < 3) {
        const int64_t id = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(next_id));
        switch (rng() % 3) {
          case 0:
            n.exec(fmt::format("UPDATE t SET v = {}, k = printf('k%05d', {}) WHERE id = {}",
                               rng() % 1000, rng() % 3000, id));
            break;
          case 1:
            n.exec(fmt::format("INSERT INTO t(id, k, v, body) VALUES ({}, 'new', {}, "
                               "printf('%.*c', {}, 'y'))",
                               next_id++, rng() % 1000, rng() % 400));
            break;
          default:
            n.exec(fmt::format("DELETE FROM t WHERE id BETWEEN {} AND {}", id, id + rng() % 20));
            break;
        }
        if (rng() % 3 != 0) n.sync();  // else: more writes before the replica sees them
        continue;
      }
      c->options().max_batch_pages = 1 + rng() % 32;
      const auto& [q, params] = kQueries[rng() % kQueries.size()];
      INFO(q);
      auto a = c->query(q, params);
      REQUIRE_MESSAGE(a.ok(), a.error_text());
      CHECK(a->head.size == n.replica->pinned_size());
      CHECK(a->rows == n.plain(q, params).rows);
      reruns += a->stats.reruns;
      merged += a->stats.merged_checks;
    }
    CHECK(c->bans().empty());
    MESSAGE("defer " << defer << ": " << reruns << " re-runs, " << merged
                     << " head checks merged into a fetch");
    if (defer) {
      CHECK(reruns > 0);  // the generator reached the moved-head paths
      CHECK(merged > 0);
    }
  }
}

// A source on a slow network: every pages() answer arrives `delay` late.
struct SlowPages : PageSource {
  std::shared_ptr<PageSource> inner;
  std::chrono::milliseconds delay;
  SlowPages(std::shared_ptr<PageSource> in, std::chrono::milliseconds d)
      : inner(std::move(in)), delay(d) {}
  std::string name() const override { return "slow"; }
  Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) override {
    std::this_thread::sleep_for(delay);
    return inner->pages(size, pgnos);
  }
  Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) override {
    return inner->leaves(size, pgnos);
  }
  Result<PageAnswer<ChangeSet>> changes(uint64_t from_size, uint64_t to_size) override {
    return inner->changes(from_size, to_size);
  }
};

// Found by light_kill_itest under ASan: a scan through a small cache fetched
// for longer than the guard's 2 s and was refused "over the time limit".
TEST_CASE("light client: the time limit bounds the query's work, not its waits for pages") {
  Node n;
  TempDir cache;
  LightClientOptions o;
  o.guard.time_limit = std::chrono::milliseconds(200);
  o.max_batch_pages = 1;  // one round trip per page
  o.seed_with_proof = false;
  auto c = n.client({std::make_shared<SlowPages>(n.honest, std::chrono::milliseconds(25))},
                    cache / "c", o);
  const std::string q = "SELECT count(*), sum(v), max(length(body)) FROM t";
  auto a = c->query(q, {});
  REQUIRE_MESSAGE(a.ok(), a.error_text());
  CHECK(a->rows == n.plain(q).rows);
  CHECK(a->stats.round_trips * 25 > 400);  // twice the limit spent waiting
  // The work itself is still bounded: a query that computes for longer than
  // the limit on cached pages is refused, and says so.
  auto slow = c->query(
      "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r", {});
  REQUIRE_FALSE(slow.ok());
  CHECK_MESSAGE(slow.error().message.find("time limit") != std::string::npos,
                slow.error().to_string());
}

// A source whose node re-pins between a client's head probe and its leaves
// requests: the first GetLeaves at a size (not 0) is answered HeadGone once.
struct RepinsOnce : PageSource {
  std::shared_ptr<PageSource> inner;
  int gone_answers = 0;
  explicit RepinsOnce(std::shared_ptr<PageSource> in) : inner(std::move(in)) {}
  std::string name() const override { return "repins-once"; }
  Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) override {
    return inner->pages(size, pgnos);
  }
  Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) override {
    if (size != 0 && gone_answers == 0) {
      ++gone_answers;
      return PageAnswer<LeafSet>(HeadGone{size + 1});
    }
    return inner->leaves(size, pgnos);
  }
  Result<PageAnswer<ChangeSet>> changes(uint64_t from_size, uint64_t to_size) override {
    return inner->changes(from_size, to_size);
  }
};

// Found by light_kill_itest: a restarted client holding many pages learns the
// head from page 1's leaf, then asks the held pages' leaves at that size; a
// node that pinned a newer head meanwhile answers HeadGone, and with one
// source the refresh failed. It now starts over at the newest head (bounded).
// (Without the retry in newest_leaves this fails "head N gone".)
TEST_CASE("light client: a re-pin between the head probe and the held leaves is retried") {
  Node n;
  TempDir cache;
  const std::string q = "SELECT count(*), sum(v), max(length(body)) FROM t";
  {
    auto c = n.client({n.honest}, cache / "c");
    run(*c, q);
    for (const auto& [sql, params] : kQueries) run(*c, sql, params);
    REQUIRE(c->proven_pages() > 128);  // the probe-then-leaves path
  }
  auto repins = std::make_shared<RepinsOnce>(n.honest);
  auto c = n.client({repins}, cache / "c");
  LightAnswer a = run(*c, q);
  CHECK(a.rows == n.plain(q).rows);
  CHECK(repins->gone_answers == 1);
  CHECK(a.stats.pages_fetched == 0);
}

TEST_CASE("light client: a restarted client reuses its cache; a corrupt slot is refetched") {
  Node n;
  TempDir cache;
  const std::string q = "SELECT id, k, body FROM t WHERE id BETWEEN 1200 AND 1210 ORDER BY id";
  std::vector<uint32_t> pages;
  LightClientOptions o;
  o.max_batch_pages = 1;  // fetched pages are exactly the pages read
  {
    auto c = n.client({n.honest}, cache / "c", o);
    pages = run(*c, q).fetched;
    REQUIRE(pages.size() > 2);
  }
  {
    // A new client on the same directory: one GetLeaves proves what it holds.
    auto c = n.client({n.honest}, cache / "c", o);
    LightAnswer a = run(*c, q);
    CHECK(a.rows == n.plain(q).rows);
    CHECK(a.stats.pages_fetched == 0);
    CHECK(a.stats.round_trips == 1);
    CHECK(a.stats.cache_hits >= pages.size());
    // Flip a byte of the last page the query read (a table leaf) in its slot.
    LightCache& lc = *c->cache();
    auto all = read_logical_pages(n.dir / "r.db");
    REQUIRE(all.ok());
    const uint32_t victim = pages.back();
    auto slot = lc.slot_of(page_leaf_hash(victim, (*all)[victim - 1]));
    REQUIRE(slot.has_value());
    int fd = ::open(lc.slots_path().c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    const off_t at = static_cast<off_t>(uint64_t{*slot} * lc.page_size() + 2000);
    uint8_t b = 0;
    REQUIRE(::pread(fd, &b, 1, at) == 1);
    b ^= 0x80;
    REQUIRE(::pwrite(fd, &b, 1, at) == 1);
    ::close(fd);
  }
  // The next run reads the damaged slot: a counted miss, the page fetched again.
  const uint32_t victim = pages.back();
  {
    auto c = n.client({n.honest}, cache / "c", o);
    LightAnswer a = run(*c, q);
    CHECK(a.rows == n.plain(q).rows);
    CHECK(a.stats.cache_corrupt == 1);
    CHECK(a.fetched == std::vector<uint32_t>{victim});
    CHECK(a.stats.round_trips == 2);
  }
  auto c = n.client({n.honest}, cache / "c", o);
  LightAnswer a = run(*c, q);
  CHECK(a.stats.pages_fetched == 0);
  CHECK(a.stats.cache_corrupt == 0);
}

// --- seeding a cold query from proof=1 (docs/light-client.md "Seeding a cold
// query from proof=1") ----------------------------------------------------------

namespace {

// The replica's honest page service plus its proof=1 answers, as a node's
// HTTP API serves both (ReplicaPageSource has no query proofs). The proof
// goes through its wire form, as over HTTP.
struct ProvingSource : PageSource {
  const Replica& replica;
  std::shared_ptr<PageSource> pages_from;
  std::string label;
  int proof_calls = 0;
  ProvingSource(const Replica& r, std::shared_ptr<PageSource> p, std::string l = "proving")
      : replica(r), pages_from(std::move(p)), label(std::move(l)) {}
  std::string name() const override { return label; }
  Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) override {
    return pages_from->pages(size, pgnos);
  }
  Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) override {
    return pages_from->leaves(size, pgnos);
  }
  Result<PageAnswer<ChangeSet>> changes(uint64_t from_size, uint64_t to_size) override {
    return pages_from->changes(from_size, to_size);
  }
  Result<QueryProof> query_proof(const std::string& sql, const std::vector<Value>& params,
                                 uint64_t min_size) override {
    ++proof_calls;
    ProveOptions o;
    o.min_size = min_size;
    SWL_ASSIGN(ProvedQuery p, replica.prove(sql, params, o));
    return decode_query_proof(p.encoded);
  }
};

// A proving source whose proof=1 answers lie in one way (pages, leaves and
// changes honest).
struct ProofLiar : ProvingSource {
  enum class Lie {
    flipped_byte,   // a byte of the last page changed
    bad_signature,  // the head's signature damaged
    stale_head,     // an older head (kept from its first answer) on today's pages
    swapped_pgno,   // two pages under each other's numbers
    other_query,    // the proof of another statement
    old_proof,      // a whole, honest proof kept from before (a lagging node)
  };
  Lie lie;
  std::optional<QueryProof> kept;
  ProofLiar(const Replica& r, std::shared_ptr<PageSource> p, Lie l)
      : ProvingSource(r, std::move(p), "proof-liar"), lie(l) {}
  Result<QueryProof> query_proof(const std::string& sql, const std::vector<Value>& params,
                                 uint64_t min_size) override {
    if (lie == Lie::old_proof && kept && kept->sql == sql) return *kept;
    SWL_ASSIGN(QueryProof p,
               ProvingSource::query_proof(
                   lie == Lie::other_query ? sql + " AND 1 = 1" : sql, params, min_size));
    switch (lie) {
      case Lie::flipped_byte:
        p.pages.back().bytes[p.page_size / 2] ^= 1;
        break;
      case Lie::bad_signature:
        p.head.signature[3] ^= 1;
        break;
      case Lie::stale_head:
        if (!kept) kept = p;
        p.head = kept->head;
        break;
      case Lie::swapped_pgno:
        REQUIRE(p.pages.size() >= 3);
        std::swap(p.pages[1].bytes, p.pages[2].bytes);
        break;
      case Lie::old_proof:
        if (!kept) kept = p;
        break;
      default:
        break;
    }
    return p;
  }
};

}  // namespace

TEST_CASE("light client seeding: a cold point query costs one round trip for its pages") {
  Node n;
  TempDir cache;
  auto proving = std::make_shared<ProvingSource>(*n.replica, n.honest);
  const std::string q = "SELECT * FROM t WHERE id = 777";
  const QueryResult want = n.plain(q);

  auto seeded = n.client({proving}, cache / "seeded");
  LightAnswer a = run(*seeded, q);
  CHECK(a.rows == want.rows);
  CHECK(a.stats.seeded == 1);
  CHECK(a.stats.round_trips == 1);  // the proof: no head check, no miss
  CHECK(a.stats.pages_fetched >= 3);  // page 1, the schema, the table's B-tree path
  CHECK(a.stats.pages_fetched == a.fetched.size());
  CHECK(a.head.size == n.replica->pinned_size());
  CHECK(proving->proof_calls == 1);
  // The same statement again: its pages are held (one head check, no page).
  LightAnswer again = run(*seeded, q);
  CHECK(again.stats.seeded == 0);
  CHECK(again.stats.pages_fetched == 0);
  CHECK(again.stats.round_trips == 1);
  // Another statement while few pages are held: seeded too, one round trip.
  const std::string q2 = "SELECT id, k FROM t WHERE k >= 'k00500' AND k < 'k00505' ORDER BY k";
  LightAnswer b = run(*seeded, q2);
  CHECK(b.rows == n.plain(q2).rows);
  CHECK(b.stats.seeded == 1);
  CHECK(b.stats.round_trips == 1);
  CHECK(seeded->bans().empty());

  // Not seeded: the head check, then one miss per B-tree level.
  LightClientOptions off;
  off.seed_with_proof = false;
  const int calls = proving->proof_calls;
  auto plain = n.client({proving}, cache / "plain", off);
  LightAnswer p = run(*plain, q);
  CHECK(p.rows == want.rows);
  CHECK(p.stats.seeded == 0);
  CHECK(p.stats.round_trips >= 4);
  CHECK(proving->proof_calls == calls);
  MESSAGE("cold point query: seeded ", a.stats.round_trips, " round trip, ",
          a.stats.pages_fetched, " pages; page by page ", p.stats.round_trips, " round trips, ",
          p.stats.pages_fetched, " pages");
}

TEST_CASE("light client seeding: a lying proof is banned with the reason; plain SQLite's answer") {
  using Lie = ProofLiar::Lie;
  const std::vector<std::pair<Lie, std::string>> lies = {
      {Lie::flipped_byte, "root"},
      {Lie::bad_signature, "not signed by the log key"},
      {Lie::stale_head, "query proof"},
      {Lie::swapped_pgno, "root"},
      {Lie::other_query, "different query"},
  };
  const std::string q = "SELECT id, v, k FROM t WHERE id BETWEEN 10 AND 60 ORDER BY id";
  for (const auto& [lie, reason] : lies) {
    for (bool proving_next : {false, true}) {
      CAPTURE(static_cast<int>(lie));
      CAPTURE(proving_next);
      Node n;
      TempDir cache;
      auto liar = std::make_shared<ProofLiar>(*n.replica, n.honest, lie);
      if (lie == Lie::stale_head) {
        // The liar keeps this head and puts it on the proofs after the write.
        REQUIRE(liar->query_proof(q, {}, 0).ok());
        n.exec("UPDATE t SET v = v + 1 WHERE id < 50");
        n.sync();
      }
      // Next: a source with proofs (it seeds) or without (page by page).
      std::shared_ptr<PageSource> next = n.honest;
      if (proving_next) next = std::make_shared<ProvingSource>(*n.replica, n.honest);
      auto c = n.client({liar, next}, cache / "c");
      LightAnswer a = run(*c, q);
      CHECK(a.rows == n.plain(q).rows);
      CHECK(a.head.size == n.replica->pinned_size());
      REQUIRE(c->bans().size() == 1);
      CHECK(c->bans()[0].source == "proof-liar");
      INFO(c->bans()[0].reason);
      CHECK(c->bans()[0].reason.find("query proof") != std::string::npos);
      CHECK(c->bans()[0].reason.find(reason) != std::string::npos);
      CHECK(a.stats.seed_failures == 1);
      CHECK(a.stats.seeded == (proving_next ? 1 : 0));
      if (!proving_next) CHECK(a.stats.round_trips > 2);  // the refused proof, then page by page
      // Every page the client holds is the honest one.
      auto all = read_logical_pages(n.dir / "r.db");
      REQUIRE(all.ok());
      for (uint32_t p : a.fetched) {
        auto got = c->cache()->get(p, page_leaf_hash(p, (*all)[p - 1]));
        REQUIRE(got.ok());
        CHECK(got->has_value());
      }
      CHECK(c->cache()->stats().entries ==
            std::set<uint32_t>(a.fetched.begin(), a.fetched.end()).size());
    }
  }
}

TEST_CASE("light client seeding: a proof at a head older than the client's is not adopted") {
  Node n;
  TempDir cache;
  auto lagging = std::make_shared<ProofLiar>(*n.replica, n.honest, ProofLiar::Lie::old_proof);
  const std::string q = "SELECT v FROM t WHERE id = 5";
  REQUIRE(lagging->query_proof(q, {}, 0).ok());  // kept: the proof before the write
  n.exec("UPDATE t SET v = 4242 WHERE id = 5");
  n.sync();
  auto c = n.client({lagging, n.honest}, cache / "c");
  // A first statement seeds the client at today's head.
  LightAnswer first = run(*c, "SELECT count(*) FROM u");
  CHECK(first.stats.seeded == 1);
  REQUIRE(c->head().has_value());
  const uint64_t head = c->head()->size;
  // The lagging node's proof of `q` is at the head before the write: refused
  // (a head behind the client's), not a lie; the pages come page by page.
  LightAnswer a = run(*c, q);
  CHECK(a.rows == n.plain(q).rows);
  CHECK(a.rows == std::vector<std::vector<Value>>{{Value{int64_t{4242}}}});
  CHECK(a.head.size == head);
  CHECK(a.stats.seeded == 0);
  CHECK(a.stats.seed_failures == 1);
  CHECK(a.stats.head_moves == 0);
  CHECK(c->bans().empty());
}
