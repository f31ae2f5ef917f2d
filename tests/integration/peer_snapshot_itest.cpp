// `swarmlite fetch --from HOST:PORT,…` over the peer protocol through real
// processes (docs/protocol.md "Snapshots", docs/operations.md "Getting a
// verified copy"): a primary and two peers — one of them without --http, so
// its snapshots come from the SnapshotSource the node makes for itself — serve
// GetSnapshot / GetSnapshotPages; the copy fetched from all three over the
// peer protocol equals, page for page, the copy fetched over HTTP from the
// primary, checks against its signed head and opens in sqlite3.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "cli/proc/child_process.h"
#include "client/snapshot_fetch.h"
#include "core/keys.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/tools/backup.h"
#include "tests/integration/http_test_util.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using swarmlite::proc::ChildProcess;
using swarmlite::testing::sh;
using swarmlite::testing::slurp;
const fs::path kBin = SWARMLITE_BIN;

struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("peersnap") {}
};

uint64_t status_size(const std::string& base) { return swarmlite::testing::status_u64(base, "size"); }

std::vector<swarmlite::Bytes> pages(const fs::path& db) {
  auto raw = swarmlite::read_logical_pages(db);
  REQUIRE_MESSAGE(raw.ok(), raw.error_text());
  std::vector<swarmlite::Bytes> out;
  for (size_t i = 0; i < raw->size(); ++i)
    out.push_back(swarmlite::normalize_page(static_cast<uint32_t>(i + 1), (*raw)[i]));
  return out;
}

}  // namespace

TEST_CASE(
    "swarmlite fetch over the peer protocol from a primary and two peers equals the HTTP copy") {
  Dir dir;
  swarmlite::testing::keygen(kBin, dir.path);
  const fs::path pub = dir / "k/primary.pub";
  auto key = swarmlite::load_public_key(pub.string());
  REQUIRE(key.ok());
  ChildProcess primary("primary", kBin, swarmlite::testing::primary_args(dir.path), dir / "primary.log");
  primary.wait_ready(60s);
  const std::string p = primary.http();
  auto w = swarmlite::testing::http_to(
      p, "POST", "/db/execute?transaction",
      R"J(["CREATE TABLE items(id INTEGER PRIMARY KEY, data BLOB)",)J"
      R"J("WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 1200) )J"
      R"J(INSERT INTO items(data) SELECT randomblob(1000) FROM n"])J",
      60s);
  REQUIRE_MESSAGE(w.ok(), w.error_text());
  REQUIRE_MESSAGE(w->status == 200, w->body);
  const uint64_t size = status_size(p);
  REQUIRE(size > 0);

  ChildProcess peer1("peer1", kBin,
                     {"peer", "--db", (dir / "r1.db").string(), "--pub", pub.string(), "--from",
                      primary.listen(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
                     dir / "peer1.log");
  ChildProcess peer2("peer2", kBin,
                     {"peer", "--db", (dir / "r2.db").string(), "--pub", pub.string(), "--from",
                      primary.listen(), "--listen", "127.0.0.1:0"},
                     dir / "peer2.log");
  peer1.wait_ready(60s);
  peer2.wait_ready(60s, /*need_http=*/false);
  for (int i = 0; i < 600 && status_size(peer1.http()) != size; ++i)
    std::this_thread::sleep_for(100ms);
  REQUIRE(status_size(peer1.http()) == size);
  // peer2 has no HTTP API: ask its node for a manifest until it holds the head.
  auto src = swarmlite::client::peer_chunk_source(peer2.listen(), *key, 10s);
  uint64_t peer2_size = 0;
  for (int i = 0; i < 600 && peer2_size != size; ++i) {
    auto m = src->manifest();
    if (m.ok()) peer2_size = m->head.size;
    if (peer2_size != size) std::this_thread::sleep_for(100ms);
  }
  REQUIRE(peer2_size == size);

  const fs::path over_peers = dir / "peers.db", over_http = dir / "http.db";
  const std::string from = primary.listen() + "," + peer1.listen() + "," + peer2.listen();
  int rc = sh(kBin.string() + " fetch --from " + from + " --pub " + pub.string() + " --out " +
                  over_peers.string() + " --chunk-pages 16 --parallel 2",
              dir / "fetch_peers.out");
  INFO(slurp(dir / "fetch_peers.out"));
  REQUIRE(rc == 0);
  rc = sh(kBin.string() + " fetch --from " + p + " --pub " + pub.string() + " --out " +
              over_http.string(),
          dir / "fetch_http.out");
  INFO(slurp(dir / "fetch_http.out"));
  REQUIRE(rc == 0);

  CHECK(pages(over_peers) == pages(over_http));
  CHECK(pages(over_peers).size() > 200);
  REQUIRE(sh("sqlite3 -readonly " + over_peers.string() + " \"SELECT count(*) FROM items\"",
             dir / "count") == 0);
  CHECK(slurp(dir / "count") == "1200\n");
  REQUIRE(sh("sqlite3 -readonly " + over_peers.string() + " \"PRAGMA integrity_check\"",
             dir / "ic") == 0);
  CHECK(slurp(dir / "ic") == "ok\n");

  // A --from item that is neither a URL nor host:port is refused up front.
  CHECK(sh(kBin.string() + " fetch --from not-an-address --pub " + pub.string() + " --out " +
               (dir / "x.db").string(),
           dir / "bad.out") != 0);
  CHECK(slurp(dir / "bad.out").find("neither an http:// URL nor a peer address") !=
        std::string::npos);
}
