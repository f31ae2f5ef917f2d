// The light client through real processes (docs/light-client.md "Commands"):
// a primary and a peer serve /db/pages and /db/leaves; `swarmlite shell` and
// `swarmlite query --light` run SQL themselves over the pages they fetch and
// verify. Checked: the answers equal plain sqlite3's over the peer's file for
// every query shape (point, range, join, aggregate, FTS5, view, CTE); the
// dot-commands and modes of a piped script; a warm re-query fetches no page,
// and after a write only a few (the changed ones); a dead node first in
// --peer is passed over; a write is refused, naming why.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "cli/proc/child_process.h"
#include "tests/integration/http_test_util.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using json = nlohmann::json;
using swarmlite::proc::ChildProcess;
using swarmlite::testing::slurp;
const fs::path kBin = SWARMLITE_BIN;

struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("light-shell") {}
};

void execute(const std::string& base, const std::string& body) {
  auto r = swarmlite::testing::http_to(base, "POST", "/db/execute?transaction", body, 60s);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  REQUIRE_MESSAGE(r->body.find("\"error\"") == std::string::npos, r->body);
}

uint64_t applied(const std::string& base) { return swarmlite::testing::status_u64(base, "applied_size", 10s); }
uint64_t log_size(const std::string& base) { return swarmlite::testing::status_u64(base, "log_size", 10s); }

bool wait_applied(const std::string& peer, uint64_t size) {
  for (int i = 0; i < 300; ++i) {
    if (applied(peer) >= size) return true;
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

// JSON output of a command ("" : no rows, as sqlite3 -json prints nothing).
json rows_of(const std::string& text) { return text.empty() ? json::array() : json::parse(text); }

}  // namespace

TEST_CASE("swarmlite shell / query --light: verified answers equal sqlite3's, cached pages reused") {
  Dir dir;
  swarmlite::testing::keygen(kBin, dir.path);
  const std::string pub = (dir / "k/primary.pub").string();
  ChildProcess primary("primary", kBin, swarmlite::testing::primary_args(dir.path), dir / "primary.log");
  primary.wait_ready(60s);
  const std::string p = primary.http();
  execute(p, R"J(["CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)",
      "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), amount INTEGER)",
      "CREATE INDEX orders_user ON orders(user_id)",
      "CREATE VIEW big_spenders AS SELECT u.name, sum(o.amount) AS total FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.id HAVING total > 5000",
      "CREATE VIRTUAL TABLE docs USING fts5(title, body)"])J");
  execute(p, R"J(["WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 3000) INSERT INTO users(id, name, score) SELECT v, 'user-' || v, (v % 7) * 1.5 FROM n",
      "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 6000) INSERT INTO orders(user_id, amount) SELECT 1 + (v * 7) % 3000, (v * 13) % 1000 FROM n",
      "INSERT INTO docs(title, body) VALUES ('swarm', 'untrusted peers serve verified pages'), ('sqlite', 'pages of a b-tree'), ('merkle', 'a tree of hashes over pages')"])J");
  const fs::path peer_db = dir / "r.db";
  ChildProcess peer("peer", kBin,
                    {"peer", "--db", peer_db.string(), "--pub", pub, "--from", primary.listen(),
                     "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
                    dir / "peer.log");
  peer.wait_ready(60s);
  const std::string r = peer.http();
  REQUIRE(wait_applied(r, log_size(p)));

  const std::string cache = (dir / "cache").string();
  const std::string light = kBin.string() + " shell --peer " + r + " --pub " + pub + " --cache " + cache;

  SUBCASE("every query shape equals sqlite3 over the peer's file") {
    const char* queries[] = {
        "SELECT id, name, score FROM users WHERE id = 1234",
        "SELECT id, name FROM users WHERE id BETWEEN 100 AND 140 ORDER BY id",
        "SELECT u.name, o.amount FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 77 ORDER BY o.id",
        "SELECT count(*), sum(amount), max(amount), sum(score) FROM orders JOIN users ON users.id = orders.user_id",
        "SELECT title FROM docs WHERE docs MATCH 'pages' ORDER BY rank",
        "SELECT name, total FROM big_spenders ORDER BY total DESC, name LIMIT 5",
        "WITH top(u, n) AS (SELECT user_id, count(*) FROM orders GROUP BY user_id ORDER BY 2 DESC, 1 LIMIT 3) SELECT u, n, (SELECT name FROM users WHERE id = u) FROM top",
        "SELECT id FROM users WHERE name = 'nobody'",
    };
    int i = 0;
    for (const char* q : queries) {
      const std::string n = std::to_string(i++);
      INFO(q);
      REQUIRE(sh(light + " -json \"" + q + "\"", dir / ("light" + n + ".out")) == 0);
      REQUIRE(sh("sqlite3 -readonly -json " + peer_db.string() + " \"" + q + "\"", dir / ("ref" + n + ".out")) == 0);
      INFO(slurp(dir / ("light" + n + ".out")));
      CHECK(rows_of(slurp(dir / ("light" + n + ".out"))) == rows_of(slurp(dir / ("ref" + n + ".out"))));
    }
  }

  SUBCASE("a piped script: dot-commands, modes, headers, stats") {
    const std::string script =
        ".tables\\n.mode csv\\n.headers on\\nSELECT id, name\\n  FROM users WHERE id <= 2;\\n"
        ".stats on\\nSELECT count(*) AS n FROM users;\\n.mode line\\nSELECT 1 AS one;\\n"
        ".schema orders\\n.nosuch\\n.quit\\nSELECT 4242;\\n";
    const int rc = sh("printf '" + script + "' | " + light, dir / "script.out");
    const std::string out = slurp(dir / "script.out");
    INFO(out);
    CHECK(rc != 0);  // the unknown dot-command is an error in a script
    CHECK(out.find("big_spenders  docs") != std::string::npos);
    CHECK(out.find("id,name\n1,user-1\n2,user-2\n") != std::string::npos);
    CHECK(out.find("n\n3000\n") != std::string::npos);
    CHECK(out.find("pages fetched") != std::string::npos);
    CHECK(out.find("one = 1") != std::string::npos);
    CHECK(out.find("CREATE TABLE orders(") != std::string::npos);
    CHECK(out.find("CREATE INDEX orders_user") != std::string::npos);
    CHECK(out.find("Error: unknown command") != std::string::npos);
    CHECK(out.find("4242") == std::string::npos);
  }

  SUBCASE("query --light: warm re-query fetches nothing; after a write only changed pages") {
    const std::string q = kBin.string() + " query --light --json --peer " + r + " --pub " + pub +
                          " --cache " + cache + " \"SELECT name, score FROM users WHERE id = 2500\"";
    REQUIRE(sh(q, dir / "cold.out") == 0);
    const json cold = json::parse(slurp(dir / "cold.out"));
    INFO(cold.dump());
    CHECK(cold["values"] == json::parse(R"([["user-2500", 1.5]])"));
    const uint64_t cold_pages = cold["verified"]["light"]["pages_fetched"].get<uint64_t>();
    CHECK(cold_pages >= 3);  // page 1, schema, the b-tree path

    REQUIRE(sh(q, dir / "warm.out") == 0);
    const json warm = json::parse(slurp(dir / "warm.out"));
    INFO(warm.dump());
    CHECK(warm["values"] == cold["values"]);
    CHECK(warm["verified"]["light"]["pages_fetched"] == 0);
    CHECK(warm["verified"]["light"]["round_trips"].get<uint64_t>() <= 1);  // the head check

    execute(p, R"J(["UPDATE users SET score = 99.5 WHERE id = 2500"])J");
    const uint64_t written = log_size(p);
    REQUIRE(wait_applied(r, written));
    // --min-size: read your write. The peer answers at its pin, renewed within
    // 200 ms once it applied the write; the client asks again meanwhile.
    REQUIRE(sh(q + " --min-size " + std::to_string(written), dir / "moved.out") == 0);
    const json moved = json::parse(slurp(dir / "moved.out"));
    INFO(moved.dump());
    CHECK(moved["values"] == json::parse(R"([["user-2500", 99.5]])"));
    CHECK(moved["verified"]["size"].get<uint64_t>() > warm["verified"]["size"].get<uint64_t>());
    const uint64_t moved_pages = moved["verified"]["light"]["pages_fetched"].get<uint64_t>();
    CHECK(moved_pages >= 1);
    CHECK(moved_pages < cold_pages);  // the leaf (and page 1), not the whole path again
  }

  SUBCASE("a dead node first in --peer is passed over; a write is refused") {
    const std::string both = kBin.string() + " shell --peer http://127.0.0.1:1," + r + " --pub " +
                             pub + " --cache " + cache;
    REQUIRE(sh(both + " \"SELECT name FROM users WHERE id = 3\"", dir / "dead.out") == 0);
    CHECK(slurp(dir / "dead.out").find("user-3\n") != std::string::npos);
    CHECK(sh(light + " \"DELETE FROM users\"", dir / "write.out") != 0);
    const std::string out = slurp(dir / "write.out");
    INFO(out);
    CHECK(out.find("Error:") != std::string::npos);
    CHECK(out.find("read") != std::string::npos);  // "… only reads …"
  }
}
