// POST /db/load through real processes and curl, as an rqlite user would send
// it (docs/http-api.md "Loading a database"): a SQLite file whose schema
// declares children before parents loads into an empty primary (sent to a
// peer, which redirects to the primary), a peer replays it, and every answer
// equals the source's; a SQL dump larger than the 4 MiB body cap loads under
// its own cap; bad uploads (no token, truncated file or dump, not a database,
// over the cap, a file into a primary that holds data) get a clear 4xx and
// leave the log as it was, with no spool file behind.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "cli/proc/child_process.h"
#include "net/http_client.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using swarmlite::proc::ChildProcess;
const fs::path kBin = SWARMLITE_BIN;

using swarmlite::testing::sh;
using swarmlite::testing::slurp;
struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("load") {}
};

const char* kToken = "load-test-token-0123456789";

using swarmlite::testing::make_db;

// Children before parents, AUTOINCREMENT, a partial index, a trigger, a view,
// WITHOUT ROWID, a generated column, blobs over a page, quoted unicode names
// (kFts adds an fts5 table: `sqlite3 .dump` writes those through
// writable_schema, so they load as a file, not as a dump).
const char* kApp = R"sql(
  CREATE TABLE comments(id INTEGER PRIMARY KEY AUTOINCREMENT, post INTEGER NOT NULL REFERENCES posts(id),
                        body TEXT, words INTEGER GENERATED ALWAYS AS (length(body) - length(replace(body, ' ', '')) + 1));
  CREATE TABLE posts(id INTEGER PRIMARY KEY, author TEXT NOT NULL REFERENCES "ünïcode users"(name), title TEXT);
  CREATE TABLE "ünïcode users"(name TEXT PRIMARY KEY, [avatar blob] BLOB) WITHOUT ROWID;
  CREATE INDEX comments_by_post ON comments(post) WHERE body IS NOT NULL;
  CREATE VIEW busy_posts AS SELECT post, count(*) AS n FROM comments GROUP BY post HAVING n > 5;
  CREATE TRIGGER titles AFTER INSERT ON comments BEGIN UPDATE posts SET title = title || '' WHERE id = NEW.post; END;
  BEGIN;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
    INSERT INTO "ünïcode users" SELECT 'user ' || i, CASE WHEN i % 4 = 0 THEN randomblob(9000) END FROM n;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
    INSERT INTO posts SELECT i, 'user ' || (i % 40 + 1), 'post ' || i FROM n;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
    INSERT INTO comments(post, body) SELECT i % 300 + 1, CASE WHEN i % 7 THEN 'comment number ' || i END FROM n;
  DELETE FROM comments WHERE id % 11 = 0;
  COMMIT;
)sql";

const char* kFts = R"sql(
  CREATE VIRTUAL TABLE search USING fts5(title, body);
  INSERT INTO search SELECT title, 'body of ' || title FROM posts;
)sql";

const char* kQuery =
    "SELECT count(*), sum(words), max(id) FROM comments; SELECT * FROM sqlite_sequence; "
    "SELECT name, hex([avatar blob]) FROM \"ünïcode users\" ORDER BY name; SELECT * FROM busy_posts ORDER BY post; "
    "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' "
    "AND name NOT LIKE 'search_%' ORDER BY name;";
const char* kFtsQuery = "SELECT rowid, title FROM search WHERE search MATCH 'post' ORDER BY rowid LIMIT 20;";

std::string sqlite_query(const Dir& dir, const fs::path& db, const std::string& sql, const std::string& name) {
  std::ofstream(dir / (name + ".sql")) << sql;
  REQUIRE(sh("sqlite3 -readonly " + db.string() + " < " + (dir / (name + ".sql")).string(), dir / name) == 0);
  return slurp(dir / name);
}

// Entries the node has applied (GET /db/size; /status's head size may run
// ahead of what a peer applied).
uint64_t status_size(const std::string& base) {
  auto url = swarmlite::net::parse_http_url(base);
  if (!url.ok()) return 0;
  swarmlite::net::HttpRequest rq;
  rq.target = "/db/size";
  auto r = swarmlite::net::http_call(*url, rq, {});
  if (!r.ok() || r->status != 200) return 0;
  auto pos = r->body.find("\"size\":");
  return pos == std::string::npos ? 0 : std::stoull(r->body.substr(pos + 7));
}

struct Load {
  int http = 0;
  std::string body;
};

// curl as an rqlite user runs it: basic auth, the body from a file, 307 followed
// with the credentials (--location-trusted: the primary is another port).
Load load(const Dir& dir, const std::string& base, const fs::path& file, const std::string& content_type,
          const std::string& auth = std::string("app:") + kToken) {
  static int n = 0;
  const std::string tag = "load" + std::to_string(++n);
  std::string cmd = "curl -s --location-trusted -o " + (dir / (tag + ".body")).string() +
                    " -w %{http_code} -H \"Content-Type: " + content_type + "\" --data-binary @" +
                    file.string() + " " + (auth.empty() ? "" : "-u " + auth + " ") + base + "/db/load";
  // Not required to exit 0: a refusal that closes the connection may cut the
  // upload short; the status the server sent is what counts.
  sh(cmd, dir / (tag + ".code"));
  const std::string code = slurp(dir / (tag + ".code"));
  return Load{code.empty() ? 0 : std::atoi(code.c_str()), slurp(dir / (tag + ".body"))};
}

bool no_spool_files(const fs::path& dir) {
  for (const auto& de : fs::directory_iterator(dir)) {
    if (de.path().filename().string().rfind(".swarmlite-load-", 0) == 0) return false;
  }
  return true;
}

struct Nodes {
  std::unique_ptr<ChildProcess> primary, peer;
  Nodes(const Dir& dir, const std::string& tag, std::vector<std::string> extra = {}) {
    if (!fs::exists(dir / "k/primary.key")) {
      REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
      std::ofstream(dir / "token") << kToken << "\n";
    }
    std::vector<std::string> args{"primary", "--db", (dir / (tag + ".db")).string(), "--key",
                                  (dir / "k/primary.key").string(), "--write-token", (dir / "token").string(),
                                  "--max-outbound", "0", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    primary = std::make_unique<ChildProcess>("primary", kBin, args, dir / (tag + "-primary.log"));
    primary->wait_ready(60s);
    peer = std::make_unique<ChildProcess>(
        "peer", kBin,
        std::vector<std::string>{"peer", "--db", (dir / (tag + "-peer.db")).string(), "--pub",
                                 (dir / "k/primary.pub").string(), "--from", primary->listen(), "--listen",
                                 "127.0.0.1:0", "--http", "127.0.0.1:0", "--primary-url", primary->http()},
        dir / (tag + "-peer.log"));
    peer->wait_ready(60s);
  }
  void wait_peer_caught_up() {
    const uint64_t want = status_size(primary->http());
    for (int i = 0; i < 600 && status_size(peer->http()) < want; ++i) std::this_thread::sleep_for(50ms);
    REQUIRE(status_size(peer->http()) == want);
  }
};

}  // namespace

TEST_CASE("POST /db/load of a SQLite file sent to a peer: redirected, loaded, replayed, answers equal the source's") {
  Dir dir;
  make_db(dir / "app.db", std::string(kApp) + kFts);
  Nodes nodes(dir, "a");
  const std::string query = std::string(kQuery) + kFtsQuery;
  const std::string want = sqlite_query(dir, dir / "app.db", query, "want");
  REQUIRE(want.find("user 40") != std::string::npos);

  // Sent to the peer: 307 to the primary, which loads it.
  Load r = load(dir, nodes.peer->http(), dir / "app.db", "application/octet-stream");
  INFO(r.body);
  REQUIRE(r.http == 200);
  CHECK(r.body.find("\"format\":\"sqlite\"") != std::string::npos);
  CHECK(r.body.find("\"integrity_check\":\"ok\"") != std::string::npos);
  CHECK(r.body.find("\"foreign_key_violations\":0") != std::string::npos);
  CHECK(r.body.find("\"results\":[{}]") != std::string::npos);
  nodes.wait_peer_caught_up();
  CHECK(sqlite_query(dir, dir / "a.db", query, "primary") == want);
  CHECK(sqlite_query(dir, dir / "a-peer.db", query, "peer") == want);
  CHECK(no_spool_files(dir / "a.db.log"));

  // A second file into a primary that now holds data: refused, nothing written.
  const uint64_t size = status_size(nodes.primary->http());
  Load again = load(dir, nodes.primary->http(), dir / "app.db", "application/octet-stream");
  INFO(again.body);
  CHECK(again.http == 403);
  CHECK(again.body.find("only into an empty primary") != std::string::npos);
  CHECK(status_size(nodes.primary->http()) == size);

  // A dump adds to it: a table of its own, sent as text.
  std::ofstream(dir / "more.sql") << "CREATE TABLE extra(x);\nINSERT INTO extra VALUES(1),(2),(3);\n";
  Load more = load(dir, nodes.primary->http(), dir / "more.sql", "text/plain");
  INFO(more.body);
  CHECK(more.http == 200);
  CHECK(more.body.find("\"format\":\"sql\"") != std::string::npos);
  CHECK(sqlite_query(dir, dir / "a.db", "SELECT sum(x) FROM extra;", "extra") == "6\n");
}

TEST_CASE("POST /db/load: a dump over the 4 MiB body cap loads; bad uploads get 4xx and change nothing") {
  Dir dir;
  // A ~6 MiB dump of an app database (over the 4 MiB JSON body cap).
  make_db(dir / "big.db", std::string(kApp) +
                              "CREATE TABLE blobs(id INTEGER PRIMARY KEY, v TEXT);"
                              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
                              "INSERT INTO blobs SELECT i, hex(randomblob(1000)) FROM n;");
  REQUIRE(sh("sqlite3 " + (dir / "big.db").string() + " .dump > " + (dir / "big.sql").string(), dir / "dump.out") == 0);
  REQUIRE(fs::file_size(dir / "big.sql") > (5u << 20));
  Nodes nodes(dir, "b", {"--max-load-mib", "8"});
  const std::string p = nodes.primary->http();
  REQUIRE(status_size(p) == 1);

  // No token: 401 before the body is read.
  Load anon = load(dir, p, dir / "big.sql", "text/plain", "");
  CHECK(anon.http == 401);
  // Truncated SQLite file: quick_check refuses it before anything is written.
  {
    std::string bytes = slurp(dir / "big.db");
    std::ofstream(dir / "half.db", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  Load half = load(dir, p, dir / "half.db", "application/octet-stream");
  INFO(half.body);
  CHECK(half.http == 400);
  CHECK(half.body.find("nothing was written") != std::string::npos);
  // A dump cut inside a statement: refused whole, naming the line.
  {
    std::string text = slurp(dir / "big.sql");
    std::ofstream(dir / "cut.sql") << text.substr(0, text.size() / 2);
  }
  Load cut = load(dir, p, dir / "cut.sql", "text/plain");
  INFO(cut.body);
  CHECK(cut.http == 400);
  CHECK(cut.body.find("line ") != std::string::npos);
  // Sent as a database file but not one.
  Load fake = load(dir, p, dir / "cut.sql", "application/octet-stream");
  CHECK(fake.http == 400);
  CHECK(fake.body.find("not a SQLite database") != std::string::npos);
  // Over --max-load-mib.
  {
    std::ofstream big(dir / "huge.sql");
    std::string line = "INSERT INTO nowhere VALUES('" + std::string(1000, 'x') + "');\n";
    for (int i = 0; i < 9000; ++i) big << line;
  }
  Load huge = load(dir, p, dir / "huge.sql", "text/plain");
  CHECK(huge.http == 413);
  CHECK(status_size(p) == 1);
  CHECK(no_spool_files(dir / "b.db.log"));

  // The real dump: loaded in bounded transactions, replayed by the peer, same answers.
  Load ok = load(dir, p, dir / "big.sql", "text/plain");
  INFO(ok.body);
  REQUIRE(ok.http == 200);
  CHECK(ok.body.find("\"format\":\"sql\"") != std::string::npos);
  nodes.wait_peer_caught_up();
  const std::string q = std::string(kQuery) + "SELECT count(*), sum(length(v)) FROM blobs;";
  const std::string want = sqlite_query(dir, dir / "big.db", q, "want");
  CHECK(sqlite_query(dir, dir / "b.db", q, "primary") == want);
  CHECK(sqlite_query(dir, dir / "b-peer.db", q, "peer") == want);
  CHECK(no_spool_files(dir / "b.db.log"));
}
