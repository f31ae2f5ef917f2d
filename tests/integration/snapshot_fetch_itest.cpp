// `swarmlite fetch` through real processes (docs/operations.md "Getting a
// verified copy", docs/http-api.md "Snapshots"): a primary and a peer serve
// GET /db/snapshot and /db/snapshot/pages; fetch is SIGKILLed at random points
// several times, each time leaving a .part that SQLite refuses to open as a
// database, then runs to completion: the file checks against its signed head
// (verify_backup_file) and has the primary's rows; the endpoints answer bad
// parameters with 400 and an unknown head with 410.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "cli/proc/child_process.h"
#include "core/head.h"
#include "core/keys.h"
#include "tests/integration/http_test_util.h"
#include "sqlbridge/tools/backup.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using swarmlite::proc::ChildProcess;
using swarmlite::testing::sh;
using swarmlite::testing::slurp;
const fs::path kBin = SWARMLITE_BIN;

struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("fetch") {}
};

swarmlite::Result<swarmlite::net::HttpResponse> call(const std::string& base, const std::string& method,
                                                     const std::string& target, const std::string& body = {}) {
  return swarmlite::testing::http_to(base, method, target, body, 60s);
}

uint64_t status_size(const std::string& base) { return swarmlite::testing::status_u64(base, "size"); }

std::string sqlite_query(const Dir& dir, const fs::path& db, const std::string& sql,
                         const std::string& name) {
  REQUIRE(sh("sqlite3 -readonly " + db.string() + " \"" + sql + "\"", dir / name) == 0);
  return slurp(dir / name);
}

}  // namespace

TEST_CASE(
    "swarmlite fetch: killed at random points, resumed, the copy checks and has the primary's "
    "rows") {
  Dir dir;
  swarmlite::testing::keygen(kBin, dir.path);
  const fs::path pub = dir / "k/primary.pub";
  ChildProcess primary("primary", kBin, swarmlite::testing::primary_args(dir.path), dir / "primary.log");
  primary.wait_ready(60s);
  const std::string p = primary.http();
  // About 640 pages: 40 chunks of 16.
  auto w =
      call(p, "POST", "/db/execute?transaction",
           R"J(["CREATE TABLE items(id INTEGER PRIMARY KEY, data BLOB)",)J"
           R"J("WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 2400) )J"
           R"J(INSERT INTO items(data) SELECT randomblob(1000) FROM n"])J");
  REQUIRE_MESSAGE(w.ok(), w.error_text());
  REQUIRE_MESSAGE(w->status == 200, w->body);
  ChildProcess peer("peer", kBin,
                    {"peer", "--db", (dir / "r.db").string(), "--pub", pub.string(), "--from",
                     primary.listen(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
                    dir / "peer.log");
  peer.wait_ready(60s);
  const std::string r = peer.http();
  const uint64_t size = status_size(p);
  for (int i = 0; i < 600 && status_size(r) != size; ++i) std::this_thread::sleep_for(100ms);
  REQUIRE(status_size(r) == size);

  // The endpoints themselves.
  auto m = call(p, "GET", "/db/snapshot");
  REQUIRE(m.ok());
  REQUIRE_MESSAGE(m->status == 200, m->body);
  auto doc = nlohmann::json::parse(m->body);
  CHECK(doc["size"].get<uint64_t>() == size);
  CHECK(doc["page_count"].get<uint64_t>() > 600);
  CHECK(doc["page_size"].get<uint64_t>() == 4096);
  auto bad = call(p, "GET", "/db/snapshot/pages?size=1&from=0&count=1");
  REQUIRE(bad.ok());
  CHECK(bad->status == 400);
  CHECK_MESSAGE(bad->body.find("from=0 is outside") != std::string::npos, bad->body);
  auto missing = call(p, "GET", "/db/snapshot/pages?size=1&count=1");
  REQUIRE(missing.ok());
  CHECK(missing->status == 400);
  CHECK_MESSAGE(missing->body.find("from= is missing") != std::string::npos, missing->body);
  auto gone =
      call(p, "GET", "/db/snapshot/pages?size=" + std::to_string(size + 1000) + "&from=1&count=1");
  REQUIRE(gone.ok());
  CHECK(gone->status == 410);
  CHECK_MESSAGE(gone->body.find("\"newest\":" + std::to_string(size)) != std::string::npos,
                gone->body);
  auto one = call(p, "GET", "/db/snapshot/pages?size=" + std::to_string(size) + "&from=1&count=16");
  REQUIRE(one.ok());
  CHECK(one->status == 200);
  CHECK(one->content_type == "application/octet-stream");
  CHECK(one->body.size() > 16 * 4096);

  // Killed at random points: the .part is never a database SQLite opens.
  const fs::path out = dir / "copy.db";
  const std::vector<std::string> args = {"fetch",      "--from",     p + "," + r,  "--pub",
                                         pub.string(), "--out",      out.string(), "--chunk-pages",
                                         "16",         "--parallel", "1"};
  std::mt19937 rng(std::random_device{}());
  // Verified chunks kept so far: the progress file's records (docs/formats/snapshot.md
  // "Fetch progress file": a 194-byte header, then 16 bytes per chunk).
  const fs::path progress = out.string() + ".part.progress";
  auto kept_chunks = [&]() -> uint64_t {
    std::error_code ec;
    const uint64_t bytes = fs::file_size(progress, ec);
    return ec || bytes < 194 ? 0 : (bytes - 194) / 16;
  };
  int killed = 0, resumed_runs = 0;
  for (int round = 0; round < 5; ++round) {
    // Kill once this run has kept 1-6 more chunks than the last: always mid-download,
    // at a random point, and every later run has something to resume.
    const uint64_t target = kept_chunks() + 1 + rng() % 6;
    ChildProcess fetch("fetch", kBin, args, dir / ("fetch" + std::to_string(round) + ".log"));
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (fetch.running() && kept_chunks() < target && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!fetch.running()) {  // finished before the kill
      INFO(fetch.log_tail(20));
      CHECK(fetch.exit_code() == 0);
      break;
    }
    fetch.kill_hard();
    ++killed;
    if (fetch.log_tail(50).find("resuming the fetch") != std::string::npos) ++resumed_runs;
    const fs::path part = out.string() + ".part";
    // The one exception, by design: killed in the last step (page 1 written,
    // one fsync, then the rename), the .part is the whole verified database.
    if (fs::exists(part)) {
      const fs::path said = dir / ("part" + std::to_string(round) + ".out");
      if (sh("sqlite3 -readonly " + part.string() + " \"SELECT count(*) FROM items\"", said) == 0)
        CHECK_MESSAGE(slurp(said) == "2400\n", "a partial .part opens as a database");
    }
    if (fs::exists(out)) {  // killed after the rename: complete (a next run only cleans up)
      CHECK(sqlite_query(dir, out, "SELECT count(*) FROM items", "out" + std::to_string(round)) ==
            "2400\n");
      if (!fs::exists(progress)) break;  // the kill came after the end
    }
  }
  // 38 chunks, at most 6 kept per round: the kills land mid-download and the
  // runs after the first resume (a run that resumed says so at its start).
  CHECK(killed >= 3);
  CHECK(resumed_runs >= killed - 1);
  MESSAGE("fetch runs killed: ", killed, ", of which resumed an earlier run: ", resumed_runs);
  if (!fs::exists(out) ||
      fs::exists(out.string() + ".part.progress")) {  // one more run, to the end
    const int rc = sh(kBin.string() + " fetch --from " + p + "," + r + " --pub " + pub.string() +
                          " --out " + out.string() + " --chunk-pages 16",
                      dir / "fetch.out");
    const std::string said = slurp(dir / "fetch.out");
    INFO(said);
    REQUIRE(rc == 0);
    CHECK(said.find("verified ") != std::string::npos);
    const size_t resumed = said.find("resuming");
    const std::string how =
        resumed == std::string::npos
            ? std::string("the last run did not resume (the kills came before a chunk was kept)")
            : said.substr(resumed, said.find('\n', resumed) - resumed);
    MESSAGE(how);
  }
  REQUIRE(fs::exists(out));
  CHECK_FALSE(fs::exists(out.string() + ".part"));
  CHECK_FALSE(fs::exists(out.string() + ".part.progress"));

  // The file checks against the head in copy.db.head.json, and has the rows.
  auto head_doc = nlohmann::json::parse(slurp(out.string() + ".head.json"));
  auto head_bytes = swarmlite::from_hex(head_doc["head"].get<std::string>());
  REQUIRE(head_bytes.ok());
  auto head = swarmlite::decode_head(*head_bytes);
  REQUIRE(head.ok());
  CHECK(head->size == size);
  auto key = swarmlite::load_public_key(pub.string());
  REQUIRE(key.ok());
  auto check = swarmlite::verify_backup_file(out, *head, *key);
  CHECK_MESSAGE(check.ok(), check.error_text());
  CHECK(sqlite_query(dir, out, "PRAGMA integrity_check", "ic") == "ok\n");
  const char* rows = "SELECT id, hex(data) FROM items ORDER BY id";
  CHECK(sqlite_query(dir, out, rows, "got") == sqlite_query(dir, dir / "r.db", rows, "want"));
}
