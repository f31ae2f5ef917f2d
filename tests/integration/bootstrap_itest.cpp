// `swarmlite peer --bootstrap` through real processes (docs/operations.md
// "Starting a peer from a snapshot"): a primary with 2,000 small writes and
// two peers, one of which compacts its log (`swarmlite compact`, small
// segments). A new peer with --bootstrap auto (many entries per page: a
// snapshot) is killed with SIGKILL at random points of its bootstrap three
// times, each time leaving no database without its log, then restarted: it
// finishes from the three nodes, follows new writes, and its pages equal
// those of the peer that replayed the whole log; sqlite3 reads it. A peer
// that may only replay, from the compacted peer alone, exits with an error
// naming the first entry available and --bootstrap snapshot.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "cli/proc/child_process.h"
#include "sqlbridge/engine/state_tree.h"
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
  Dir() : ScratchShellDir("bootstrap") {}
};

uint64_t status_field(const std::string& base, const std::string& field) {
  auto r = swarmlite::testing::http_to(base, "GET", "/status", "", 60s);
  if (!r.ok() || r->status != 200) return 0;
  const std::string key = "\"" + field + "\":";
  auto pos = r->body.find(key);
  return pos == std::string::npos ? 0 : std::stoull(r->body.substr(pos + key.size()));
}
uint64_t status_size(const std::string& base) { return status_field(base, "size"); }

// Until the node's log and (on a peer) its database are at `size`.
void wait_size(const std::string& base, uint64_t size, bool applied = true) {
  auto done = [&] {
    return status_size(base) == size && (!applied || status_field(base, "applied_size") == size);
  };
  for (int i = 0; i < 1200 && !done(); ++i) std::this_thread::sleep_for(100ms);
  REQUIRE(done());
}

void execute(const std::string& base, const std::string& json) {
  auto r = swarmlite::testing::http_to(base, "POST", "/db/execute?transaction", json, 30s);
  REQUIRE_MESSAGE(r.ok(), r.error().to_string());
  REQUIRE_MESSAGE(r->status == 200, r->body);
}

std::vector<swarmlite::Bytes> pages(const fs::path& db) {
  auto raw = swarmlite::read_logical_pages(db);
  REQUIRE_MESSAGE(raw.ok(), raw.error().to_string());
  std::vector<swarmlite::Bytes> out;
  for (size_t i = 0; i < raw->size(); ++i)
    out.push_back(swarmlite::normalize_page(static_cast<uint32_t>(i + 1), (*raw)[i]));
  return out;
}

std::unique_ptr<ChildProcess> start_peer(const Dir& dir, const std::string& name,
                                         const std::string& from,
                                         std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"peer", "--db", (dir / (name + ".db")).string(), "--pub",
                                (dir / "k/primary.pub").string(), "--from", from, "--listen",
                                "127.0.0.1:0", "--http", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<ChildProcess>(name, kBin, args, dir / (name + ".log"));
}

}  // namespace

TEST_CASE("a new peer bootstraps from a snapshot of three nodes, survives kills, then follows") {
  Dir dir;
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  ChildProcess primary(
      "primary", kBin,
      {"primary", "--db", (dir / "p.db").string(), "--key", (dir / "k/primary.key").string(),
       "--max-outbound", "0", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
      dir / "primary.log");
  primary.wait_ready(60s);
  const std::string p = primary.http();
  execute(p, R"J(["CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)"])J");
  for (int i = 0; i < 2000; ++i) execute(p, R"J(["INSERT INTO t(b) VALUES (randomblob(700))"])J");
  uint64_t size = status_size(p);
  REQUIRE(size >= 2001);  // and the genesis entry

  // peer1 replays everything; peer2 too, then compacts its log (offline).
  auto peer1 = start_peer(dir, "peer1", primary.listen(), {"--bootstrap", "replay"});
  auto peer2 = start_peer(dir, "peer2", primary.listen(),
                          {"--bootstrap", "replay", "--log-segment-mib", "0.0625"});
  peer1->wait_ready(60s);
  peer2->wait_ready(60s);
  wait_size(peer1->http(), size);
  wait_size(peer2->http(), size);
  peer2->stop();
  REQUIRE(sh(kBin.string() + " compact --log " + (dir / "peer2.db.data/log").string() +
                 " --keep-from head",
             dir / "compact.out") == 0);
  INFO(slurp(dir / "compact.out"));
  REQUIRE(slurp(dir / "compact.out").find("log now starts at entry 0 ") == std::string::npos);
  peer2 = start_peer(dir, "peer2", primary.listen(), {"--log-segment-mib", "0.0625"});
  peer2->wait_ready(60s);

  // Replay only, from the compacted peer alone: a clear refusal.
  {
    ChildProcess replay("peer4", kBin,
                        {"peer", "--db", (dir / "peer4.db").string(), "--pub",
                         (dir / "k/primary.pub").string(), "--from", peer2->listen(), "--listen",
                         "127.0.0.1:0", "--bootstrap", "replay"},
                        dir / "peer4.log");
    REQUIRE(replay.wait_exit(60s));
    CHECK(replay.exit_code() == 1);
    const std::string out = slurp(dir / "peer4.log");
    CHECK_MESSAGE(out.find("the first entry available is") != std::string::npos, out);
    CHECK_MESSAGE(out.find("--bootstrap snapshot") != std::string::npos, out);
    CHECK_FALSE(fs::exists(dir / "peer4.db"));
  }

  // peer3: killed three times during its bootstrap, at random points.
  const std::string from = primary.listen() + "," + peer1->listen() + "," + peer2->listen();
  const std::vector<std::string> small_chunks{"--bootstrap-chunk-pages", "2"};
  std::mt19937 rng(std::random_device{}());
  const fs::path part = dir / "peer3.db.data/bootstrap.db.part";
  int killed_mid_fetch = 0;
  for (int k = 0; k < 3; ++k) {
    auto peer3 = start_peer(dir, "peer3", from, small_chunks);
    // Once the fetch is under way (its .part exists), at a random point of it.
    for (int i = 0; i < 20000 && !fs::exists(part) && !fs::exists(dir / "peer3.db"); ++i)
      std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 30));
    peer3->kill_hard();
    if (fs::exists(part)) ++killed_mid_fetch;
    // The commit order: a database only once its log exists.
    if (fs::exists(dir / "peer3.db")) CHECK(fs::exists(dir / "peer3.db.data/log"));
    CHECK_FALSE(fs::exists(dir / "peer3.db.data/log.bootstrap/head"));
  }
  CHECK(killed_mid_fetch >= 1);
  auto peer3 = start_peer(dir, "peer3", from, small_chunks);
  peer3->wait_ready(120s);
  wait_size(peer3->http(), size);
  const std::string log3 = slurp(dir / "peer3.log");
  CHECK_MESSAGE(log3.find("starts at the snapshot of head") != std::string::npos, log3);
  // Some restart resumed: kept verified chunks, or the staged verified file.
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = log3.find(what); at != std::string::npos; at = log3.find(what, at + 1)) ++n;
    return n;
  };
  CHECK_MESSAGE((count(" kept from an earlier run") > count("(0 kept from an earlier run") ||
                 count("resuming") > 0),
                log3);

  // It follows new writes.
  for (int i = 0; i < 20; ++i) execute(p, R"J(["INSERT INTO t(b) VALUES (randomblob(700))"])J");
  size = status_size(p);
  wait_size(peer3->http(), size);
  wait_size(peer1->http(), size);
  peer3->stop();
  peer1->stop();
  CHECK(pages(dir / "peer3.db") == pages(dir / "peer1.db"));
  REQUIRE(sh("sqlite3 -readonly " + (dir / "peer3.db").string() + " \"SELECT count(*) FROM t\"",
             dir / "count") == 0);
  CHECK(slurp(dir / "count") == "2020\n");
}
