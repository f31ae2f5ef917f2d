// The light client's page cache survives kill -9 mid-fetch (issue 15 "Tests";
// docs/light-client.md "Page cache", crash safety): a primary and a peer serve
// a table of ~2,000 pages; `swarmlite shell --cache DIR --cache-mib 1` (256
// slots: every round evicts) runs a script of range and index queries and is
// killed with SIGKILL after a random delay, 20 times, with writes between some
// rounds so the head moves. Then the cache is opened in this process: its
// index must decode (never dropped), every entry it names must hash to its key
// (no slot holding another page), the slot file within the cap plus the
// documented 256 slots of slack. A new client on the same cache then answers
// equal to sqlite3 over the peer's file, using the cache.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "cli/proc/child_process.h"
#include "client/light_cache.h"
#include "core/file_io.h"
#include "tests/integration/http_test_util.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using json = nlohmann::json;
using swarmlite::proc::ChildProcess;
using swarmlite::testing::slurp;
const fs::path kBin = SWARMLITE_BIN;
constexpr uint32_t kPageSize = 4096;  // SQLite's default: the primary's database
constexpr uint64_t kCacheMiB = 1;
constexpr uint64_t kSlackSlots = 256;  // light_cache.cpp kSlack, docs/light-client.md
constexpr int kRounds = 20;

struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("light-kill") {}
};

void execute(const std::string& base, const std::string& body) {
  auto r = swarmlite::testing::http_to(base, "POST", "/db/execute?transaction", body, 120s);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  REQUIRE_MESSAGE(r->body.find("\"error\"") == std::string::npos, r->body);
}

uint64_t status_field(const std::string& base, const char* field) {
  auto r = swarmlite::testing::http_to(base, "GET", "/status", {}, 10s);
  if (!r.ok() || r->status != 200) return 0;
  return json::parse(r->body)[field].get<uint64_t>();
}

bool wait_applied(const std::string& peer, uint64_t size) {
  for (int i = 0; i < 600; ++i) {
    if (status_field(peer, "applied_size") >= size) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// testing::sh runs `bash -c '<command>'`: single quotes in the command (SQL
// string literals) are written '\'' to survive that.
int sh(const std::string& command, const fs::path& out) {
  std::string escaped;
  for (char c : command) escaped += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return swarmlite::testing::sh(escaped, out);
}

// `timeout -s KILL` kills its whole process group, itself included, so it
// returns while the killed client may still be exiting (in an fsync, on a
// loaded machine) and holding the cache's flock: wait for the lock to be free.
bool wait_unlocked(const fs::path& cache) {
  const fs::path lock = cache / "lock";
  for (int i = 0; i < 300; ++i) {
    if (!fs::exists(lock)) return true;
    const int fd = ::open(lock.c_str(), O_RDWR);
    if (fd >= 0) {
      const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
      ::close(fd);  // releases it
      if (free) return true;
    }
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

json rows_of(const std::string& text) { return text.empty() ? json::array() : json::parse(text); }

}  // namespace

TEST_CASE("light client killed with SIGKILL mid-fetch, 20 rounds: the cache stays usable") {
  Dir dir;
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  const std::string pub = (dir / "k/primary.pub").string();
  ChildProcess primary(
      "primary", kBin,
      {"primary", "--db", (dir / "p.db").string(), "--key", (dir / "k/primary.key").string(),
       "--max-outbound", "0", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
      dir / "primary.log");
  primary.wait_ready(60s);
  const std::string p = primary.http();
  // ~30,000 rows of ~230 bytes and an index: about 2,000 pages, eight times the cache.
  execute(p, R"J(["CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)",
      "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 30000) INSERT INTO t SELECT x, (x * 7919) % 30011, printf('row-%08d-%s', x, substr(hex(zeroblob(110)), 1, 200 + x % 17)) FROM n",
      "CREATE INDEX t_k ON t(k)"])J");
  const fs::path peer_db = dir / "r.db";
  ChildProcess peer("peer", kBin,
                    {"peer", "--db", peer_db.string(), "--pub", pub, "--from", primary.listen(),
                     "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
                    dir / "peer.log");
  peer.wait_ready(60s);
  const std::string r = peer.http();
  REQUIRE(wait_applied(r, status_field(p, "log_size")));

  const fs::path cache = dir / "cache";
  const std::string light = kBin.string() + " shell --peer " + r + " --pub " + pub + " --cache " +
                            cache.string() + " --cache-mib " + std::to_string(kCacheMiB);
  std::random_device rd;
  const unsigned seed = rd();
  MESSAGE("seed ", seed);
  std::mt19937 rng(seed);
  int killed = 0;
  for (int round = 0; round < kRounds; ++round) {
    // Each round's script reads far more pages than the cache holds, and
    // runs long next to the kill delays (60 queries sometimes finished
    // within them on a quiet machine: too few rounds were killed).
    std::string script;
    for (int q = 0; q < 240; ++q) {
      const int a = 1 + static_cast<int>(rng() % 29000);
      script += q % 3 == 2 ? "SELECT id, k FROM t WHERE k = " + std::to_string(a) + ";\n"
                           : "SELECT count(*), sum(length(v)), min(id) FROM t WHERE id BETWEEN " +
                                 std::to_string(a) + " AND " + std::to_string(a + 900) + ";\n";
    }
    const fs::path script_file = dir / ("round" + std::to_string(round) + ".sql");
    REQUIRE(swarmlite::file_io::durable_replace(script_file, swarmlite::as_bytes(script)).ok());
    const int delay_ms = 80 + static_cast<int>(rng() % 1200);
    const fs::path out = dir / ("round" + std::to_string(round) + ".out");
    const int rc = sh("timeout -s KILL " + std::to_string(delay_ms / 1000) + "." +
                          std::to_string(1000 + delay_ms % 1000).substr(1) + " " + light + " < " +
                          script_file.string(),
                      out);
    INFO("round ", round, " delay ", delay_ms, " ms: ", slurp(out).substr(0, 2000));
    CHECK((rc == 137 || rc == 0));  // 137: killed (128 + SIGKILL)
    if (rc == 137) ++killed;
    REQUIRE(wait_unlocked(cache));
    if (round % 3 == 1) {
      // The head moves: held pages go stale, the next round re-proves and evicts.
      execute(p, "[\"UPDATE t SET v = v || 'x' WHERE id % 53 = " + std::to_string(round) + "\"]");
    }
  }
  MESSAGE(killed, " of ", kRounds, " rounds killed mid-run");
  CHECK(killed >= kRounds / 2);  // the delays are short next to a round's fetching

  // The cache as the next client finds it.
  {
    const fs::path slots = cache / ("pages-" + std::to_string(kPageSize) + ".slots");
    const fs::path index = cache / ("pages-" + std::to_string(kPageSize) + ".index");
    REQUIRE(fs::exists(index));
    const uint64_t cap_slots = (kCacheMiB << 20) / kPageSize;
    CHECK(fs::file_size(slots) <= (cap_slots + kSlackSlots) * kPageSize);
    auto bytes = swarmlite::file_io::read_file(index, 64u << 20);
    REQUIRE(bytes.ok());
    auto entries = swarmlite::client::decode_light_cache_index(*bytes, kPageSize);
    REQUIRE_MESSAGE(entries.ok(), entries.error_text());
    CHECK(entries->size() > 0);
    CHECK(entries->size() <= cap_slots);
    swarmlite::client::LightCacheOptions o;
    o.max_bytes = kCacheMiB << 20;
    auto c = swarmlite::client::LightCache::open(cache, kPageSize, o);
    REQUIRE_MESSAGE(c.ok(), c.error_text());
    CHECK_FALSE((*c)->stats().index_dropped);
    uint64_t hits = 0;
    for (const auto& e : *entries) {
      auto page = (*c)->get(e.pgno, e.leaf);
      REQUIRE_MESSAGE(page.ok(), page.error_text());
      if (*page) ++hits;
    }
    MESSAGE(entries->size(), " entries, ", hits, " read back, ", (*c)->stats().reclaimed,
            " unindexed slots reclaimed");
    // A kill leaves unindexed slots (reclaimed), never an entry naming a slot
    // that holds another page.
    CHECK((*c)->stats().corrupt == 0);
    CHECK(hits == entries->size());
  }

  // A new client on the same cache answers as sqlite3 does over the peer's file.
  const uint64_t final_size = status_field(p, "log_size");
  REQUIRE(wait_applied(r, final_size));
  const char* queries[] = {
      // The scans first: through a 256-slot cache they evict everything.
      "SELECT count(*), sum(length(v)) FROM t",
      "SELECT count(*) FROM t WHERE v LIKE '%x'",
      "SELECT id, k, v FROM t WHERE id BETWEEN 14000 AND 14030 ORDER BY id",
      "SELECT id, v FROM t WHERE k = 777",
  };
  int i = 0;
  for (const char* q : queries) {
    const std::string n = std::to_string(i++);
    INFO(std::string(q));
    const int rc = sh(light + " --min-size " + std::to_string(final_size) + " -json \"" + q + "\"",
                      dir / ("after" + n + ".out"));
    INFO(slurp(dir / ("after" + n + ".out")).substr(0, 4000));
    REQUIRE(rc == 0);
    REQUIRE(sh("sqlite3 -readonly -json " + peer_db.string() + " \"" + q + "\"",
               dir / ("ref" + n + ".out")) == 0);
    CHECK(rows_of(slurp(dir / ("after" + n + ".out"))) ==
          rows_of(slurp(dir / ("ref" + n + ".out"))));
  }
  // The cache is used: the range's pages, cached by the shell above.
  REQUIRE(sh(kBin.string() + " query --light --json --peer " + r + " --pub " + pub + " --cache " +
                 cache.string() + " --cache-mib " + std::to_string(kCacheMiB) + " --min-size " +
                 std::to_string(final_size) +
                 " \"SELECT id FROM t WHERE id BETWEEN 14000 AND 14030\"",
             dir / "used.out") == 0);
  const json used = json::parse(slurp(dir / "used.out"));
  INFO(used.dump());
  CHECK(used["verified"]["light"]["cache_hits"].get<uint64_t>() > 0);
}
