// GET /db/backup and `swarmlite backup` through real processes
// (docs/http-api.md "Backups"): a backup from the primary and from a peer
// while writes go on is a database file whose state root is that of the
// signed head it comes with (the CLI checks it); its rows are the source's at
// that size; ?fmt=sql loads into sqlite3 with the same answers and without
// sqlite_swarmlite; a file with one byte changed on the way is refused and
// deleted by the CLI.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "tests/integration/shell_test_util.h"
#include "cli/proc/child_process.h"
#include "tests/integration/http_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using swarmlite::proc::ChildProcess;
const fs::path kBin = SWARMLITE_BIN;

using swarmlite::testing::sh;
using swarmlite::testing::slurp;
struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("backup") {}
};

swarmlite::Result<swarmlite::net::HttpResponse> call(const std::string& base, const std::string& method,
                                                     const std::string& target, const std::string& body = {}) {
  return swarmlite::testing::http_to(base, method, target, body, 30s);
}

void execute(const std::string& base, const std::string& json) {
  auto r = call(base, "POST", "/db/execute?transaction", json);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  REQUIRE_MESSAGE(r->body.find("\"error\"") == std::string::npos, r->body);
}

uint64_t status_size(const std::string& base) { return swarmlite::testing::status_u64(base, "size"); }

std::string sqlite_query(const Dir& dir, const fs::path& db, const std::string& sql, const std::string& name) {
  REQUIRE(sh("sqlite3 -readonly " + db.string() + " \"" + sql + "\"", dir / name) == 0);
  return slurp(dir / name);
}

struct Swarm {
  Dir dir;
  std::unique_ptr<ChildProcess> primary, peer;
  fs::path pub;
  Swarm() {
    swarmlite::testing::keygen(kBin, dir.path);
    pub = dir / "k/primary.pub";
    primary = std::make_unique<ChildProcess>("primary", kBin, swarmlite::testing::primary_args(dir.path),
                                             dir / "primary.log");
    primary->wait_ready(60s);
    peer = std::make_unique<ChildProcess>(
        "peer", kBin,
        std::vector<std::string>{"peer", "--db", (dir / "r.db").string(), "--pub", pub.string(), "--from",
                                 primary->listen(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"},
        dir / "peer.log");
    peer->wait_ready(60s);
  }
};

const char* kSchema =
    R"J(["CREATE TABLE items(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, data BLOB, price REAL, qty INTEGER)",)J"
    R"J("CREATE INDEX items_by_name ON items(name)",)J"
    R"J("CREATE VIEW cheap AS SELECT id FROM items WHERE price < 10",)J"
    R"J("WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 200) )J"
    R"J(INSERT INTO items(name, data, price, qty) SELECT 'it''s ' || v, randomblob(v * 40), v / 3.0, v FROM n"])J";

const char* kRows = "SELECT id, name, hex(data), price, qty FROM items ORDER BY id; SELECT * FROM sqlite_sequence;";

}  // namespace

TEST_CASE("GET /db/backup from the primary and from a peer under writes: verified by swarmlite backup, rows equal") {
  Swarm s;
  const std::string p = s.primary->http(), r = s.peer->http();
  execute(p, kSchema);

  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread writer([&] {
    for (int i = 0; i < 2000 && !stop; ++i) {
      auto w = call(p, "POST", "/db/execute",
                    R"J([["INSERT INTO items(name, data, price, qty) VALUES(?, randomblob(300), ?, ?)", "w)J" +
                        std::to_string(i) + R"J(", 1.25, )J" + std::to_string(i) + "]]");
      if (w.ok() && w->status == 200) ++writes;
      std::this_thread::sleep_for(2ms);
    }
  });
  const auto backup = [&](const std::string& from, const std::string& out, const std::string& extra = "") {
    return sh(kBin.string() + " backup --from " + from + " --pub " + s.pub.string() + " --out " +
                  (s.dir / out).string() + extra,
              s.dir / (out + ".out"));
  };
  // Under writes: both nodes answer with a file that checks against its head.
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(300ms);
    const std::string pf = "p" + std::to_string(round) + ".db", rf = "r" + std::to_string(round) + ".db";
    int prc = backup(p, pf);
    INFO(slurp(s.dir / (pf + ".out")));
    REQUIRE(prc == 0);
    CHECK(slurp(s.dir / (pf + ".out")).find("verified ") == 0);
    int rrc = backup(r, rf);
    INFO(slurp(s.dir / (rf + ".out")));
    REQUIRE(rrc == 0);
    CHECK(slurp(s.dir / (rf + ".out")).find("verified ") == 0);
  }
  stop = true;
  writer.join();
  MESSAGE("writes during the backups: ", writes.load());
  CHECK(writes.load() > 0);

  // Every backup's rows are a prefix of the final rows (writes only insert):
  // the state of one size, not a mix.
  const uint64_t final_size = status_size(p);
  REQUIRE(final_size > 0);
  for (int i = 0; i < 600 && status_size(r) != final_size; ++i) std::this_thread::sleep_for(100ms);
  REQUIRE(status_size(r) == final_size);
  const std::string all = sqlite_query(s.dir, s.dir / "r.db", "SELECT id, name, hex(data), price, qty FROM items ORDER BY id", "all");
  for (const std::string f : {"p0.db", "r0.db", "p2.db", "r2.db"}) {
    CHECK(sqlite_query(s.dir, s.dir / f, "PRAGMA integrity_check", f + ".ic") == "ok\n");
    const std::string rows =
        sqlite_query(s.dir, s.dir / f, "SELECT id, name, hex(data), price, qty FROM items ORDER BY id", f + ".rows");
    CHECK(rows.size() > 200 * 10);
    CHECK_MESSAGE(all.compare(0, rows.size(), rows) == 0, f << " is not a prefix of the final rows");
  }

  // Writes stopped and the peer caught up: the file, the dump and the source agree.
  REQUIRE(backup(r, "final.db") == 0);
  REQUIRE(backup(r, "final.sql", " --fmt sql") == 0);
  const std::string dump = slurp(s.dir / "final.sql");
  CHECK(dump.find("sqlite_swarmlite") == std::string::npos);
  CHECK(dump.find("X'") != std::string::npos);
  REQUIRE(sh("sqlite3 " + (s.dir / "restored.db").string() + " < " + (s.dir / "final.sql").string(), s.dir / "restore.out") == 0);
  INFO(slurp(s.dir / "restore.out"));
  const std::string want = sqlite_query(s.dir, s.dir / "r.db", kRows, "want");
  CHECK(sqlite_query(s.dir, s.dir / "final.db", kRows, "got_file") == want);
  CHECK(sqlite_query(s.dir, s.dir / "restored.db", kRows, "got_sql") == want);
  // The schema (tables, index, view) but swarmlite's table; char(...) = 'swarm' (the
  // SQL goes through a single-quoted shell line).
  const char* kSchemaQuery =
      "SELECT count(*) FROM cheap; SELECT type, name, tbl_name, sql FROM sqlite_schema "
      "WHERE instr(name, char(115, 119, 97, 114, 109)) = 0 ORDER BY name";
  CHECK(sqlite_query(s.dir, s.dir / "restored.db", kSchemaQuery, "schema") ==
        sqlite_query(s.dir, s.dir / "r.db", kSchemaQuery, "schema0"));
}

namespace {

// The raw bytes of one HTTP answer (Connection: close, read to the end).
std::string raw_get(uint16_t port, const std::string& target) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  REQUIRE(::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// Serves `answer` to one connection on an ephemeral loopback port (a node that
// changes the file on the way).
struct OneShotServer {
  int lfd = -1;
  uint16_t port = 0;
  std::thread th;
  explicit OneShotServer(std::string answer) {
    lfd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(lfd, 1) == 0);
    socklen_t len = sizeof a;
    ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    th = std::thread([this, answer = std::move(answer)] {
      int c = ::accept(lfd, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      (void)::read(c, buf, sizeof buf);
      size_t off = 0;
      while (off < answer.size()) {
        ssize_t n = ::write(c, answer.data() + off, answer.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      ::close(c);
    });
  }
  ~OneShotServer() {
    ::shutdown(lfd, SHUT_RDWR);
    ::close(lfd);
    if (th.joinable()) th.join();
  }
};

}  // namespace

TEST_CASE("swarmlite backup refuses and deletes a file with one byte changed on the way") {
  Swarm s;
  const std::string p = s.primary->http();
  execute(p, kSchema);
  const uint16_t port = static_cast<uint16_t>(std::stoi(p.substr(p.rfind(':') + 1)));
  const std::string genuine = raw_get(port, "/db/backup");
  const size_t body = genuine.find("\r\n\r\n");
  REQUIRE(body != std::string::npos);
  REQUIRE(genuine.size() > body + 4 + 3 * 4096);
  const std::string cmd = kBin.string() + " backup --pub " + s.pub.string() + " --out ";

  {  // the genuine bytes, replayed by the fake node, pass (so the fake node is faithful)
    OneShotServer fake(genuine);
    int rc = sh(cmd + (s.dir / "ok.db").string() + " --from 127.0.0.1:" + std::to_string(fake.port), s.dir / "ok.out");
    INFO(slurp(s.dir / "ok.out"));
    CHECK(rc == 0);
    CHECK(fs::exists(s.dir / "ok.db"));
  }
  // One byte of a row in page 3, and one in page 1's schema cookie (a header
  // field the state tree does not normalise).
  for (size_t offset : {size_t(2 * 4096 + 3000), size_t(41)}) {
    std::string tampered = genuine;
    tampered[body + 4 + offset] = static_cast<char>(tampered[body + 4 + offset] ^ 0x5a);
    OneShotServer fake(tampered);
    const fs::path out = s.dir / ("bad" + std::to_string(offset) + ".db");
    int rc = sh(cmd + out.string() + " --from 127.0.0.1:" + std::to_string(fake.port), s.dir / "bad.out");
    const std::string said = slurp(s.dir / "bad.out");
    INFO(said);
    CHECK(rc != 0);
    CHECK(said.find("refused") != std::string::npos);
    CHECK(said.find("state root") != std::string::npos);
    CHECK(said.find("was deleted") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
}
