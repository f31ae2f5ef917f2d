// Issue 9 §1, §4 and §5, replayed against real `swarmlite` processes on 127.0.0.1:
//  - the one-line determinism attack: a column DEFAULT (total_changes()), a
//    failed transaction, an insert — the peer follows the primary and `audit`
//    replays the primary's log; build-dependent functions stored in the schema
//    (DEFAULT, CHECK, generated column, index, trigger) are refused at CREATE,
//    naming the function and the object;
//  - a proof whose SQL was swapped (id = 3 for id = 2) is shown with the SQL it
//    answers and refused by `verify --sql`; `--param` without `--sql` is an
//    error; `--max-age` refuses an old head;
//  - SQL that is not UTF-8 (GET and POST /db/query, plain and proof) is a 400;
//  - 1e400 in params, a chunk-size line beyond 64 bits: a 400 with the reason,
//    not a dropped connection; an integer beyond int64: a 400 naming the param;
//  - a peer whose head file was deleted serves again without a new write;
//  - a row changed in a peer's file by another process: corruption reported
//    (naming the page), reads refused, /readyz 503;
//  - 80 idle sessions that finished Hello do not keep a new peer out;
//  - the primary's /status shows its peers' real head_size and lag 0.
// Each fails on the code before the fix. Waits are liveness deadlines.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/proc/child_process.h"
#include "core/keys.h"
#include "net/http_client.h"
#include "net/protocol.h"
#include "sqlbridge/engine/disk_change_test_util.h"

using namespace swarmlite;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// SWARMLITE_DEFECTS_BIN=path runs these against another build (e.g. the code
// before the fix, to see every case fail there).
const fs::path kBin = [] {
  const char* other = std::getenv("SWARMLITE_DEFECTS_BIN");
  return other && *other ? fs::path(other) : fs::path(SWARMLITE_BIN);
}();

struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& tag) {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() / fmt::format("swl-defects-{}-{}-{}", tag, ::getpid(), n++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    const char* keep = std::getenv("SWARMLITE_KEEP");
    if (keep && *keep && std::string(keep) != "0") return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 60s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return cond();
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Reply {
  unsigned status = 0;  // 0: no HTTP answer (error says why)
  std::string body, error;
};

Reply http(const std::string& base, const std::string& method, const std::string& target,
           const std::string& body = {}) {
  Reply out;
  auto url = net::parse_http_url(base);
  REQUIRE(url.ok());
  net::HttpRequest rq;
  rq.method = method;
  rq.target = target;
  rq.body = body;
  net::HttpClientOptions o;
  o.timeout = 20s;
  auto r = net::http_call(url.value(), rq, o);
  if (!r.ok()) {
    out.error = r.error().to_string();
    return out;
  }
  out.status = r->status;
  out.body = r->body;
  return out;
}

// Raw bytes to host:port; everything answered until the close (or 10 s).
std::string raw_exchange(const std::string& base, const std::string& bytes) {
  auto url = net::parse_http_url(base);
  REQUIRE(url.ok());
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(url->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// A primary and one peer, both with HTTP.
struct Swarm {
  ScratchDir dir;
  fs::path pub_file, key_file;
  std::unique_ptr<proc::ChildProcess> primary, peer;
  std::vector<std::string> primary_extra, peer_extra;

  explicit Swarm(const std::string& tag, std::vector<std::string> p_extra = {},
                 std::vector<std::string> q_extra = {})
      : dir(tag), primary_extra(std::move(p_extra)), peer_extra(std::move(q_extra)) {
    proc::run_to_end("keygen", kBin, {"keygen", "--out", (dir.path / "keys").string()}, dir.path / "keygen.log");
    pub_file = dir.path / "keys" / "primary.pub";
    key_file = dir.path / "keys" / "primary.key";
    std::vector<std::string> args{"primary", "--db", (dir.path / "p.db").string(), "--key", key_file.string(),
                                  "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--max-outbound", "0"};
    args.insert(args.end(), primary_extra.begin(), primary_extra.end());
    primary = std::make_unique<proc::ChildProcess>("primary", kBin, args, dir.path / "primary.log");
    primary->wait_ready(60s);
  }
  fs::path peer_db() const { return dir.path / "r.db"; }
  void start_peer() {
    std::vector<std::string> args{"peer", "--db", peer_db().string(), "--pub", pub_file.string(), "--from",
                                  primary->listen(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"};
    args.insert(args.end(), peer_extra.begin(), peer_extra.end());
    peer.reset();
    peer = std::make_unique<proc::ChildProcess>("peer", kBin, args, dir.path / "peer.log");
    peer->wait_ready(60s);
  }
  void execute(const json& statements) {
    auto r = http(primary->http(), "POST", "/db/execute?transaction", statements.dump());
    REQUIRE_MESSAGE(r.status == 200, r.body, r.error);
    REQUIRE_MESSAGE(r.body.find("\"error\"") == std::string::npos, r.body);
  }
  uint64_t primary_size() {
    auto r = http(primary->http(), "GET", "/status");
    REQUIRE(r.status == 200);
    return json::parse(r.body)["size"].get<uint64_t>();
  }
  bool peer_at(uint64_t size) {
    auto r = http(peer->http(), "GET", "/status");
    if (r.status != 200) return false;
    auto st = json::parse(r.body, nullptr, false);
    return st.is_object() && st["size"] == size && st["head"].is_object() && st["head"]["size"] == size;
  }
  void sync_peer() {
    uint64_t size = primary_size();
    REQUIRE_MESSAGE(eventually([&] { return peer_at(size); }), peer->log_tail());
  }
  // The notes table with rows 1..3.
  void notes() {
    execute(json::parse(R"J([
      "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)",
      ["INSERT INTO notes(body) VALUES(?)", "one"],
      ["INSERT INTO notes(body) VALUES(?)", "two"],
      ["INSERT INTO notes(body) VALUES(?)", "three"]])J"));
  }
};

// Runs the CLI to its end; exit code (-1: killed or timed out) and its output.
struct CliRun {
  int code = -1;
  std::string out;
};
CliRun cli(const fs::path& dir, const std::string& tag, const std::vector<std::string>& args) {
  fs::path log = dir / (tag + ".log");
  proc::ChildProcess p(tag, kBin, args, log);
  CliRun r;
  if (p.wait_exit(60s)) r.code = p.exit_code().value_or(-1);
  p.stop();
  r.out = read_file(log);
  return r;
}

// The page the altered row of notes lives on (a one-page table: its root).
std::string notes_page(const fs::path& db) {
  sqlite3* c = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &c, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(c, "SELECT rootpage FROM sqlite_schema WHERE name = 'notes'", -1, &st, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int page = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(c);
  return "page " + std::to_string(page);
}

// A change below SQLite, as a faulty disk or a tool writing bytes would make
// it (sqlbridge/engine/disk_change_test_util.h).
void change_bytes_on_disk(const fs::path& db, const std::string& from, const std::string& to) {
  REQUIRE_MESSAGE(swarmlite::testing::change_bytes_below_sqlite(db, from, to) > 0,
                  "'" << from << "' is in neither file of " << db.string());
}

}  // namespace

TEST_CASE("a proof of swapped SQL shows the SQL it answers and fails verify --sql; --param needs --sql; --max-age") {
  Swarm s("verify");
  s.notes();
  s.start_peer();
  s.sync_peer();
  const fs::path proof = s.dir.path / "swapped.proof";
  // What a lying peer hands out for "... WHERE id = 2": a valid proof of id = 3.
  auto q = cli(s.dir.path, "query", {"query", "--peer", s.peer->http(), "--pub", s.pub_file.string(), "--verify",
                                     "--proof-out", proof.string(), "SELECT id, body FROM notes WHERE id = 3"});
  REQUIRE_MESSAGE(q.code == 0, q.out);
  // verify alone: valid, and says which question it answers.
  auto plain = cli(s.dir.path, "verify-plain", {"verify", "--pub", s.pub_file.string(), proof.string()});
  CHECK_MESSAGE(plain.code == 0, plain.out);
  CHECK_MESSAGE(plain.out.find("sql:    \"SELECT id, body FROM notes WHERE id = 3\"") != std::string::npos,
                plain.out);
  CHECK_MESSAGE(plain.out.find("params: []") != std::string::npos, plain.out);
  auto as_json = cli(s.dir.path, "verify-json", {"verify", "--json", "--pub", s.pub_file.string(), proof.string()});
  REQUIRE_MESSAGE(as_json.code == 0, as_json.out);
  auto doc = json::parse(as_json.out.substr(as_json.out.find('{')), nullptr, false);
  REQUIRE(doc.is_object());
  CHECK(doc["sql"] == "SELECT id, body FROM notes WHERE id = 3");
  CHECK(doc["params"] == json::array());
  // The question the user asked: refused, naming both.
  auto swapped = cli(s.dir.path, "verify-sql", {"verify", "--pub", s.pub_file.string(), "--sql",
                                                "SELECT id, body FROM notes WHERE id = 2", proof.string()});
  CHECK(swapped.code != 0);
  CHECK_MESSAGE(swapped.out.find("WHERE id = 2") != std::string::npos, swapped.out);
  CHECK_MESSAGE(swapped.out.find("WHERE id = 3") != std::string::npos, swapped.out);
  // --param without --sql is an error, not ignored.
  auto lonely = cli(s.dir.path, "verify-param", {"verify", "--pub", s.pub_file.string(), "--param", "2", proof.string()});
  CHECK(lonely.code != 0);
  CHECK_MESSAGE(lonely.out.find("--param needs --sql") != std::string::npos, lonely.out);
  // Params are held to the proof too.
  const fs::path pproof = s.dir.path / "param.proof";
  q = cli(s.dir.path, "query-param", {"query", "--peer", s.peer->http(), "--pub", s.pub_file.string(), "--verify",
                                      "--proof-out", pproof.string(), "--param", "3",
                                      "SELECT id, body FROM notes WHERE id = ?"});
  REQUIRE_MESSAGE(q.code == 0, q.out);
  auto wrong_param = cli(s.dir.path, "verify-wrong-param",
                         {"verify", "--pub", s.pub_file.string(), "--sql", "SELECT id, body FROM notes WHERE id = ?",
                          "--param", "2", pproof.string()});
  CHECK(wrong_param.code != 0);
  CHECK_MESSAGE(wrong_param.out.find("other params") != std::string::npos, wrong_param.out);
  auto right_param = cli(s.dir.path, "verify-right-param",
                         {"verify", "--pub", s.pub_file.string(), "--sql", "SELECT id, body FROM notes WHERE id = ?",
                          "--param", "3", pproof.string()});
  CHECK_MESSAGE(right_param.code == 0, right_param.out);
  // --max-age: an hour is fine, a millisecond is stale (the head is older than that by now).
  std::this_thread::sleep_for(50ms);
  auto fresh = cli(s.dir.path, "verify-age-ok", {"verify", "--pub", s.pub_file.string(), "--max-age", "1h", proof.string()});
  CHECK_MESSAGE(fresh.code == 0, fresh.out);
  auto stale = cli(s.dir.path, "verify-age-stale",
                   {"verify", "--pub", s.pub_file.string(), "--max-age", "0.001", proof.string()});
  CHECK(stale.code != 0);
  CHECK_MESSAGE(stale.out.find("stale head") != std::string::npos, stale.out);
  auto qstale = cli(s.dir.path, "query-age-stale",
                    {"query", "--peer", s.peer->http(), "--pub", s.pub_file.string(), "--verify", "--max-age", "1ms",
                     "SELECT id FROM notes WHERE id = 1"});
  CHECK(qstale.code != 0);
  CHECK_MESSAGE(qstale.out.find("stale head") != std::string::npos, qstale.out);
  auto qfresh = cli(s.dir.path, "query-age-ok",
                    {"query", "--peer", s.peer->http(), "--pub", s.pub_file.string(), "--verify", "--max-age", "300",
                     "SELECT id FROM notes WHERE id = 1"});
  CHECK_MESSAGE(qfresh.code == 0, qfresh.out);
}

TEST_CASE("DEFAULT (total_changes()) after a failed transaction: the peer and audit follow; stored build-dependent functions refused at CREATE") {
  Swarm s("determinism");
  s.start_peer();
  s.execute(json::parse(R"J(["CREATE TABLE t(a, b DEFAULT (total_changes()), c DEFAULT (changes()), d DEFAULT (last_insert_rowid()))"])J"));
  // Statement 1 inserts a row (counted by the connection), statement 2 fails:
  // rolled back, nothing logged, but the primary's connection has seen changes
  // that no replica ever sees.
  auto failed = http(s.primary->http(), "POST", "/db/execute?transaction",
                     R"J(["INSERT INTO t(a) VALUES ('rolled back')", "INSERT INTO no_such_table VALUES (1)"])J");
  REQUIRE_MESSAGE(failed.status / 100 == 2, failed.body, failed.error);
  CHECK_MESSAGE(failed.body.find("no such table") != std::string::npos, failed.body);
  s.execute(json::parse(R"J(["INSERT INTO t(a) VALUES (1)", "INSERT INTO t(a) VALUES (2)"])J"));
  s.execute(json::parse(R"J(["INSERT INTO t(a) VALUES (3)"])J"));
  // The peer applies every entry (a divergence stops it below the primary's size).
  s.sync_peer();
  auto rows = [&](const std::string& base) {
    auto r = http(base, "GET", "/db/query?q=SELECT%20a,b,c,d%20FROM%20t%20ORDER%20BY%20rowid");
    REQUIRE_MESSAGE(r.status == 200, r.body, r.error);
    auto doc = json::parse(r.body);
    return doc["results"][0]["values"];
  };
  // As plain SQLite gives them on a connection that never saw the failed
  // transaction: DEFAULTs are evaluated before the row is counted.
  const json want = json::parse("[[1,0,0,0],[2,1,1,1],[3,0,0,0]]");
  CHECK(rows(s.primary->http()) == want);
  CHECK(rows(s.peer->http()) == want);
  // audit replays the primary's own log from scratch and compares the peer's file.
  auto audit = cli(s.dir.path, "audit", {"audit", "--log", (s.dir.path / "p.db.log").string(), "--pub",
                                         s.pub_file.string()});
  CHECK_MESSAGE(audit.code == 0, audit.out);
  // Functions whose value depends on the build or the platform, stored where
  // later writes evaluate them: refused when the object is created, naming
  // the function and the object; nothing logged.
  const uint64_t size = s.primary_size();
  const std::vector<std::pair<std::string, std::string>> stored = {
      {"CREATE TABLE v1(a, b DEFAULT (sqlite_version()))", "sqlite_version"},
      {"CREATE TABLE v2(a, b DEFAULT (sqlite_source_id()))", "sqlite_source_id"},
      {"CREATE TABLE v3(a CHECK (sqlite_compileoption_get(0) IS NOT NULL))", "sqlite_compileoption_get"},
      {"CREATE TABLE v4(a, b AS (sin(a)))", "sin"},
      {"CREATE INDEX v5 ON t(sqlite_version())", "sqlite_version"},
      {"CREATE TRIGGER v6 AFTER INSERT ON t BEGIN UPDATE t SET b = sqlite_source_id(); END", "sqlite_source_id"},
  };
  for (const auto& [create, function] : stored) {
    auto r = http(s.primary->http(), "POST", "/db/execute", json::array({create}).dump());
    INFO(create << " -> " << r.status << " " << r.body << r.error);
    CHECK(r.body.find("\"error\"") != std::string::npos);
    CHECK(r.body.find(function) != std::string::npos);
  }
  CHECK(s.primary_size() == size);
}

TEST_CASE("hostile request bytes get a 400 with the reason: non-UTF-8 SQL, 1e400, a huge chunk size, int64 overflow") {
  Swarm s("http");
  s.notes();
  s.start_peer();
  s.sync_peer();
  for (const std::string& base : {s.primary->http(), s.peer->http()}) {
    for (const char* target : {"/db/query?q=SELECT%20%27%FF%27", "/db/query?proof=1&q=SELECT%20%27%FF%27"}) {
      auto r = http(base, "GET", target);
      INFO(base << target << " -> " << r.status << " " << r.body << r.error);
      CHECK(r.status == 400);
      CHECK(r.body.find("not valid UTF-8") != std::string::npos);
    }
    for (const char* target : {"/db/query", "/db/query?proof=1"}) {
      auto r = http(base, "POST", target, "[\"SELECT '\xff'\"]");
      CHECK(r.status == 400);
    }
    auto big = http(base, "POST", "/db/query", R"J([["SELECT ?", 1e400]])J");
    INFO(big.status << " " << big.body << big.error);
    CHECK(big.status == 400);
    CHECK(big.body.find("1e400") != std::string::npos);
    for (const char* n : {"-9223372036854775809", "18446744073709551616", "-18446744073709551616"}) {
      auto r = http(base, "POST", "/db/query", fmt::format(R"J(["SELECT 1", ["SELECT ?, ?", 1, {}]])J", n));
      INFO(n << " -> " << r.status << " " << r.body << r.error);
      CHECK(r.status == 400);
      CHECK(r.body.find(fmt::format("statement 1: param 2: integer {} is out of the int64 range", n)) !=
            std::string::npos);
    }
    std::string chunked =
        "POST /db/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n[\"SELECT 1\"]\r\n0\r\n\r\n";
    std::string reply = raw_exchange(base, chunked);
    INFO(reply);
    CHECK(reply.rfind("HTTP/1.1 400", 0) == 0);
  }
  // Writes too: an overflowing param is refused, nothing is written as REAL.
  auto w = http(s.primary->http(), "POST", "/db/execute",
                R"J([["INSERT INTO notes(body) VALUES(?)", 18446744073709551616]])J");
  CHECK(w.status == 400);
  auto count = http(s.primary->http(), "GET", "/db/query?q=SELECT%20count(*)%20FROM%20notes");
  CHECK(count.body.find("[[3]]") != std::string::npos);
}

TEST_CASE("a peer whose head file was deleted serves proofs again without a new write") {
  Swarm s("head");
  s.notes();
  s.start_peer();
  s.sync_peer();
  s.peer->stop();
  const fs::path head = fs::path(s.peer_db().string() + ".data") / "log" / "head";
  REQUIRE(fs::exists(head));
  fs::remove(head);
  s.start_peer();
  bool ready = eventually([&] { return http(s.peer->http(), "GET", "/readyz").status == 200; });
  // Fetched before the check (doctest -s evaluates messages under its lock).
  const std::string why = ready ? std::string() : http(s.peer->http(), "GET", "/readyz").body;
  CHECK_MESSAGE(ready, why);
  auto q = cli(s.dir.path, "query-after-head-loss",
               {"query", "--peer", s.peer->http(), "--pub", s.pub_file.string(), "--verify",
                "SELECT body FROM notes WHERE id = 2"});
  CHECK_MESSAGE(q.code == 0, q.out);
  CHECK(q.out.find("two") != std::string::npos);
  CHECK(fs::exists(head));  // persisted
}

// docs/vfs.md "Descriptors of files SQLite locks": a user inspecting a live
// node's database with plain SQLite (the sqlite3 shell, a script) must not
// break it. The nodes once dropped their own SQLite locks by closing a
// descriptor of the file; such a reader then took itself for the last
// connection and, as it closed, checkpointed and deleted the live -wal file:
// the peer latched corruption and stopped serving.
TEST_CASE("a plain SQLite reader of a running primary's and peer's files leaves them serving") {
  Swarm s("outside-reader", {}, {"--scrub-interval", "0.2"});
  s.notes();
  s.start_peer();
  s.sync_peer();
  // No read has come yet: no reader's lock hides the write connection's.
  for (const fs::path& db : {s.dir.path / "p.db", s.peer_db()}) {
    INFO(db.string());
    sqlite3* other = nullptr;
    // Opened as the sqlite3 shell opens it, read-write, though it only reads.
    REQUIRE(sqlite3_open_v2(db.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(other, "SELECT count(*) FROM notes", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK(sqlite3_column_int(st, 0) == 3);
    sqlite3_finalize(st);
    sqlite3_close(other);
    CHECK(fs::exists(db.string() + "-wal"));
    CHECK(fs::exists(db.string() + "-shm"));
  }
  s.execute(json::parse(R"J([["INSERT INTO notes(body) VALUES(?)", "four"]])J"));
  s.sync_peer();
  std::this_thread::sleep_for(600ms);  // three scrub rounds
  auto readyz = http(s.peer->http(), "GET", "/readyz");
  CHECK_MESSAGE(readyz.status == 200, readyz.body);
  auto q = http(s.peer->http(), "GET",
                "/db/query?proof=1&q=SELECT%20body%20FROM%20notes%20WHERE%20id%20%3D%204");
  CHECK_MESSAGE(q.status == 200, q.body);
  CHECK(q.body.find("four") != std::string::npos);
  auto st = json::parse(http(s.peer->http(), "GET", "/status").body);
  CHECK(st["corruption"].is_null());
}

TEST_CASE(
    "a read transaction another program holds open on a running peer: it keeps up, and its -wal "
    "file is cut back after") {
  Swarm s("outside-held-reader");
  s.execute(json::parse(R"J(["CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB)"])J"));
  s.start_peer();
  s.sync_peer();
  auto metric = [&](const std::string& name) {
    auto r = http(s.peer->http(), "GET", "/metrics");
    REQUIRE(r.status == 200);
    std::smatch m;
    if (!std::regex_search(r.body, m, std::regex("\n" + name + " ([0-9.e+]+)"))) return -1.0;
    return std::stod(m[1].str());
  };
  const json one_mib = json::parse(R"J(["INSERT INTO blobs(b) VALUES (randomblob(1048576))"])J");
  constexpr double kLimit = 64 << 20;  // journal_size_limit (docs/operations.md "Disk usage")
  // Another program reads the peer's file and keeps its transaction open:
  // the peer's WAL cannot start over meanwhile.
  sqlite3* reader = nullptr;
  REQUIRE(sqlite3_open_v2(s.peer_db().c_str(), &reader, SQLITE_OPEN_READONLY, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM blobs;", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 72; ++i) {
    s.execute(one_mib);
    if (i % 8 == 7) s.sync_peer();  // heads applied one after another: a re-pin at each
  }
  s.sync_peer();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(metric("swarmlite_wal_bytes") > kLimit);
  // Each RESTART checkpoint the reader outlasted waited 250 ms; after one the
  // next waits out a backoff (1 s, doubling), instead of one at every re-pin.
  const double blocked = metric("swarmlite_wal_restarts_blocked");
  INFO("blocked " << blocked << " in " << elapsed << " s");
  CHECK(blocked >= 1);
  CHECK(blocked <= 2 + std::log2(1 + elapsed));
  auto proved = http(s.peer->http(), "GET", "/db/query?proof=1&q=SELECT%20count(*)%20FROM%20blobs");
  CHECK_MESSAGE(proved.status == 200, proved.body);
  CHECK(http(s.peer->http(), "GET", "/readyz").status == 200);
  // The reader ends: the WAL starts over and its file is cut back.
  REQUIRE(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(reader);
  const bool cut = eventually([&] {
    s.execute(one_mib);
    s.sync_peer();
    return metric("swarmlite_wal_bytes") <= kLimit;
  });
  const double wal_bytes =
      cut ? 0 : metric("swarmlite_wal_bytes");  // not in the message: it REQUIREs
  CHECK_MESSAGE(cut, "peer -wal bytes ", wal_bytes);
  CHECK(fs::file_size(s.peer_db().string() + "-wal") <= static_cast<uintmax_t>(kLimit));
}

TEST_CASE("a row changed in a running peer's file by another process: corruption reported, reads stop, /readyz 503") {
  Swarm s("corrupt", {}, {"--scrub-interval", "0.2"});
  s.notes();
  s.start_peer();
  s.sync_peer();
  REQUIRE(http(s.peer->http(), "GET", "/readyz").status == 200);
  const std::string page = notes_page(s.peer_db());
  {
    // An ordinary SQLite write is refused: the peer's write connection keeps
    // the WAL write lock (docs/vfs.md "The sole writer's locks").
    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open_v2(s.peer_db().c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    sqlite3_busy_timeout(other, 300);
    int rc = sqlite3_exec(other, "UPDATE notes SET body = 'evil' WHERE id = 2", nullptr, nullptr, nullptr);
    sqlite3_close(other);
    CHECK(rc == SQLITE_BUSY);
    REQUIRE(http(s.peer->http(), "GET", "/readyz").status == 200);
  }
  // A change no lock stops: bytes changed below SQLite.
  change_bytes_on_disk(s.peer_db(), "two", "owt");
  bool reported = eventually([&] {
    auto r = http(s.peer->http(), "GET", "/readyz");
    return r.status == 503 && r.body.find("corrupt") != std::string::npos;
  });
  auto readyz = http(s.peer->http(), "GET", "/readyz");
  CHECK_MESSAGE(reported, readyz.status, " ", readyz.body);
  CHECK_MESSAGE(readyz.body.find(page + " differs") != std::string::npos, readyz.body);
  auto plain = http(s.peer->http(), "GET", "/db/query?q=SELECT%20body%20FROM%20notes%20WHERE%20id%20%3D%202");
  CHECK(plain.status == 503);
  CHECK(plain.body.find("owt") == std::string::npos);
  auto proved = http(s.peer->http(), "GET", "/db/query?proof=1&q=SELECT%20body%20FROM%20notes%20WHERE%20id%20%3D%202");
  CHECK(proved.status == 503);
  CHECK_MESSAGE(proved.body.find(page) != std::string::npos, proved.body);
  auto st = http(s.peer->http(), "GET", "/status");
  CHECK(json::parse(st.body)["corruption"].is_string());
}

TEST_CASE("a prover that meets a changed page reports corruption, not 'changed while proving'") {
  Swarm s("corrupt-prove", {}, {"--scrub-interval", "0"});
  s.notes();
  s.start_peer();
  s.sync_peer();
  const std::string page = notes_page(s.peer_db());
  change_bytes_on_disk(s.peer_db(), "two", "owt");
  // A write elsewhere moves the head: the next pin's read starts afresh (SQLite
  // drops its cached pages when the WAL moved) and reads the changed page.
  s.execute(json::parse(R"J(["CREATE TABLE later(x)"])J"));
  s.sync_peer();
  auto proved = http(s.peer->http(), "GET", "/db/query?proof=1&q=SELECT%20body%20FROM%20notes%20WHERE%20id%20%3D%202");
  CHECK(proved.status == 503);
  CHECK_MESSAGE(proved.body.find(page + " of the database file differs") != std::string::npos, proved.body);
  auto readyz = http(s.peer->http(), "GET", "/readyz");
  CHECK(readyz.status == 503);
  CHECK(http(s.peer->http(), "GET", "/db/query?q=SELECT%201").status == 503);
}

TEST_CASE("80 idle sessions that finished Hello do not keep a new peer out; /status shows peers' head_size and lag") {
  Swarm s("idle", {"--evict-idle-after", "2"});
  s.notes();
  auto pub = load_public_key(s.pub_file.string());
  REQUIRE(pub.ok());
  auto hp = net::parse_host_port(s.primary->listen());
  REQUIRE(hp.ok());
  std::vector<int> fds;
  for (int i = 0; i < 80; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(hp->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    net::Hello h;
    h.log_id = *pub;
    h.node_id = 5000 + static_cast<uint64_t>(i);
    Bytes frame = net::encode_frame(h);
    (void)!::write(fd, frame.data(), frame.size());
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(3s);  // idle for longer than --evict-idle-after
  s.start_peer();
  s.sync_peer();
  // The primary's view of its peer follows it: head_size = its size, lag 0.
  s.execute(json::parse(R"J([["INSERT INTO notes(body) VALUES(?)", "four"]])J"));
  s.sync_peer();
  uint64_t size = s.primary_size();
  std::string last;
  bool seen = eventually([&] {
    auto r = http(s.primary->http(), "GET", "/status");
    last = r.body;
    auto st = json::parse(r.body, nullptr, false);
    if (!st.is_object()) return false;
    for (const auto& p : st["peers"])
      if (p["head_size"] == size && p["lag"] == 0) return true;
    return false;
  });
  CHECK_MESSAGE(seen, last);
  for (int fd : fds) ::close(fd);
}

TEST_CASE("docs/formats/query-proof.md gives the head's real size") {
  std::string doc = read_file(fs::path(SWARMLITE_SOURCE_DIR) / "docs" / "formats" / "query-proof.md");
  CHECK(doc.find(fmt::format("kEncodedHeadSize ({}) bytes", kEncodedHeadSize)) != std::string::npos);
}
