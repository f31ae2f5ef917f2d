// The page service through real processes (docs/http-api.md "Pages",
// docs/light-client.md "Page service"): a peer and the primary serve GET
// /db/pages and /db/leaves to plain HTTP requests while a writer keeps the
// primary busy; every answer's head is signed by the log's key and its pages
// and leaf hashes verify against it (verify_page_set, verify_leaf_set),
// whatever head the node pinned meanwhile; an old size is 410 with the
// newest; a bad list is 400 naming the parameter. GET /db/changes from a head
// the node served before proves, against both heads (verify_change_set), which
// pages changed since (docs/http-api.md "Changes"), on the peer and on the
// primary.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "cli/proc/child_process.h"
#include "core/head.h"
#include "core/keys.h"
#include "sqlbridge/engine/page_set.h"
#include "tests/integration/http_test_util.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using swarmlite::proc::ChildProcess;
using swarmlite::testing::sh;
const fs::path kBin = SWARMLITE_BIN;

struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("pages") {}
};

swarmlite::Result<swarmlite::net::HttpResponse> call(const std::string& base, const std::string& method,
                                                     const std::string& target, const std::string& body = {}) {
  return swarmlite::testing::http_to(base, method, target, body, 60s);
}

// Entries applied (the state pages are served from), per /status.
uint64_t applied_size(const std::string& base) {
  auto r = call(base, "GET", "/status");
  if (!r.ok() || r->status != 200) return 0;
  auto doc = nlohmann::json::parse(r->body, nullptr, false);
  if (!doc.is_object() || !doc.contains("applied_size") || !doc["applied_size"].is_number_unsigned()) return 0;
  return doc["applied_size"].get<uint64_t>();
}

}  // namespace

TEST_CASE("a peer and the primary serve /db/pages and /db/leaves that verify while writes go on") {
  using namespace swarmlite;
  Dir dir;
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  auto pub = load_public_key((dir / "k/primary.pub").string());
  REQUIRE_MESSAGE(pub.ok(), pub.error_text());
  ChildProcess primary(
      "primary", kBin,
      {"primary", "--db", (dir / "p.db").string(), "--key", (dir / "k/primary.key").string(),
       "--max-outbound", "0", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
      dir / "primary.log");
  primary.wait_ready(60s);
  const std::string p = primary.http();
  auto w = call(p, "POST", "/db/execute?transaction",
                R"J(["CREATE TABLE items(id INTEGER PRIMARY KEY, data BLOB)",)J"
                R"J("WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 2000) )J"
                R"J(INSERT INTO items(data) SELECT randomblob(1000) FROM n"])J");
  REQUIRE_MESSAGE(w.ok(), w.error_text());
  REQUIRE_MESSAGE(w->status == 200, w->body);
  ChildProcess peer("peer", kBin,
                    {"peer", "--db", (dir / "r.db").string(), "--pub", (dir / "k/primary.pub").string(),
                     "--from", primary.listen(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
                    dir / "peer.log");
  peer.wait_ready(60s);
  const std::string r = peer.http();
  for (int i = 0; i < 600 && applied_size(r) != applied_size(p); ++i) std::this_thread::sleep_for(100ms);
  REQUIRE(applied_size(r) == applied_size(p));

  // An idle node pins its newest head on the first request (a busy applier
  // pins by itself only when it has caught up with the log's head; the
  // primary renews its pin after its write groups once a request came).
  for (const std::string& node : {r, p}) {
    auto first = call(node, "GET", "/db/pages?pages=1");
    REQUIRE(first.ok());
    REQUIRE_MESSAGE(first->status == 200, first->body);
  }

  // Writes go on while pages are asked for.
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread writer([&] {
    std::mt19937 rng(3);
    while (!stop) {
      const int id = 1 + static_cast<int>(rng() % 2000);
      auto u = call(p, "POST", "/db/execute",
                    "[\"UPDATE items SET data = randomblob(1000) WHERE id = " + std::to_string(id) + "\"]");
      if (u.ok() && u->status == 200) ++writes;
    }
  });
  std::mt19937 rng(5);
  std::map<std::string, std::set<uint64_t>> heads;  // per node
  std::map<std::string, int> verified_at;
  std::map<std::string, std::map<uint64_t, Head>> seen;  // verified heads per node, by size
  std::map<std::string, int> changes_moved;              // per node
  int verified = 0, gone = 0, changes_verified = 0, changes_refused = 0;
  const auto until = std::chrono::steady_clock::now() + 8s;
  std::map<std::string, uint64_t> last_sizes;
  while (std::chrono::steady_clock::now() < until || verified_at[r] < 20 || verified_at[p] < 20) {
    const std::string& node = rng() % 2 ? r : p;
    uint64_t& last_size = last_sizes[node];
    REQUIRE(verified < 10000);
    // A random list of up to 256 pages within the first 480 (the table is ~500 pages).
    std::set<uint32_t> s;
    const size_t n = 1 + rng() % 256;
    while (s.size() < n) s.insert(1 + static_cast<uint32_t>(rng() % 480));
    std::vector<uint32_t> pgnos(s.begin(), s.end());
    const std::string list = format_page_list(pgnos);
    const bool leaves = rng() % 3 == 0;
    // Half at size 0 (the newest pinned head), half at the last size seen.
    const uint64_t size = rng() % 2 ? 0 : last_size;
    auto res = call(node, "GET", fmt::format("/db/{}?size={}&pages={}", leaves ? "leaves" : "pages", size, list));
    REQUIRE_MESSAGE(res.ok(), res.error_text());
    if (res->status == 410) {
      auto doc = nlohmann::json::parse(res->body);
      CHECK(doc["newest"].get<uint64_t>() > 0);
      CHECK(doc["newest"].get<uint64_t>() != size);
      ++gone;
      continue;
    }
    REQUIRE_MESSAGE(res->status == 200, res->body);
    CHECK(res->content_type == "application/octet-stream");
    const ByteView body = as_bytes(res->body);
    Head head;
    if (leaves) {
      auto set = decode_leaf_set(body);
      REQUIRE_MESSAGE(set.ok(), set.error_text());
      head = set->head;
      REQUIRE(head.verify(*pub).ok());
      Status v = verify_leaf_set(*set, head);
      CHECK_MESSAGE(v.ok(), v.error_text());
      CHECK(set->pgnos == pgnos);
    } else {
      auto set = decode_page_set(body);
      REQUIRE_MESSAGE(set.ok(), set.error_text());
      head = set->head;
      REQUIRE(head.verify(*pub).ok());
      Status v = verify_page_set(*set, head);
      CHECK_MESSAGE(v.ok(), v.error_text());
      CHECK(set->pgnos == pgnos);
    }
    if (size != 0) CHECK(head.size == size);
    last_size = head.size;
    heads[node].insert(head.size);
    ++verified;
    ++verified_at[node];
    // The changes since a head the same node served before (the oldest ones
    // fall out of its history only after 1,024 pins; the primary's heads may
    // be ahead of the peer's pin, so each node is asked for its own).
    std::map<uint64_t, Head>& seen_here = seen[node];
    seen_here[head.size] = head;
    if (seen_here.size() > 1 && rng() % 2 == 0) {
      auto from = seen_here.begin();
      std::advance(from, static_cast<long>(rng() % seen_here.size()));
      auto ch = call(node, "GET", fmt::format("/db/changes?since={}", from->first));
      REQUIRE_MESSAGE(ch.ok(), ch.error_text());
      if (ch->status == 403) {
        ++changes_refused;  // a head the peer never pinned is not in its history
        CHECK_MESSAGE(ch->body.find("ask for leaves") != std::string::npos, ch->body);
        continue;
      }
      REQUIRE_MESSAGE(ch->status == 200, ch->body);
      auto set = decode_change_set(as_bytes(ch->body));
      REQUIRE_MESSAGE(set.ok(), set.error_text());
      REQUIRE(set->to.verify(*pub).ok());
      CHECK(set->from_size == from->first);
      Status v = verify_change_set(*set, from->second, set->to);
      CHECK_MESSAGE(v.ok(), v.error_text());
      ++changes_verified;
      if (set->to.size > from->first) ++changes_moved[node];
    }
  }
  stop = true;
  writer.join();
  MESSAGE(verified << " answers verified (" << verified_at[p] << " from the primary) at "
                   << heads[r].size() << " peer heads, " << heads[p].size() << " primary heads, "
                   << gone << " gone, " << writes.load() << " writes meanwhile");
  MESSAGE(changes_verified << " change sets verified (" << changes_moved[r] << " from the peer, "
                           << changes_moved[p] << " from the primary across writes), "
                           << changes_refused << " refused");
  CHECK(writes > 10);
  CHECK(heads[r].size() > 1);  // the peer pinned newer heads while it served
  CHECK(heads[p].size() > 1);  // and so did the primary
  CHECK(changes_moved[r] > 0);
  CHECK(changes_moved[p] > 0);  // the primary keeps a change history too

  // A head the primary never pinned (the table's creation): 403, ask the leaves.
  auto p_changes = call(p, "GET", "/db/changes?since=1");
  REQUIRE(p_changes.ok());
  CHECK(p_changes->status == 403);
  CHECK_MESSAGE(p_changes->body.find("ask for leaves") != std::string::npos, p_changes->body);
  auto no_since = call(r, "GET", "/db/changes?size=0");
  REQUIRE(no_since.ok());
  CHECK(no_since->status == 400);
  CHECK_MESSAGE(no_since->body.find("since= is missing") != std::string::npos, no_since->body);

  // Bad requests: 400 naming the parameter.
  auto bad = call(r, "GET", "/db/pages?size=0&pages=5,3");
  REQUIRE(bad.ok());
  CHECK(bad->status == 400);
  CHECK_MESSAGE(bad->body.find("pages=") != std::string::npos, bad->body);
  auto missing = call(r, "GET", "/db/leaves?size=0");
  REQUIRE(missing.ok());
  CHECK(missing->status == 400);
  CHECK_MESSAGE(missing->body.find("pages= is missing") != std::string::npos, missing->body);
  auto past = call(r, "GET", "/db/pages?pages=1-3,99999999");
  REQUIRE(past.ok());
  CHECK(past->status == 400);
  CHECK_MESSAGE(past->body.find("outside the head's pages") != std::string::npos, past->body);
  auto over = call(r, "GET", "/db/pages?pages=1-257");
  REQUIRE(over.ok());
  CHECK(over->status == 400);
}
