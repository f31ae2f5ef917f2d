// A database larger than 1 GiB through real processes (issue 10 §3). SQLite
// never writes the page at byte offset 1 GiB (its lock-byte page, page 262145
// with 4096-byte pages; docs/formats/state-tree.md), so every part that handles
// pages must skip it: the primary's state tree at the commit that crosses it,
// the peer's replay, the peer's restart (state tree rebuilt from a file past
// 1 GiB), a verified read of a row stored past it (`swarmlite query --verify`
// and `swarmlite verify` offline), and `swarmlite audit` of the peer's log and
// database.
//
// The database grows through ordinary entries of at most 32 MiB each (rows of
// 1 MiB: a few random bytes and a zeroblob, so the entries themselves are a few
// hundred bytes of SQL), to 1.2 GiB by default; SWARMLITE_LONG=1 goes to 3 GiB,
// SWARMLITE_BIGDB_MIB=N to N MiB. The test needs about 4× that on the temp
// directory's file system (primary, peer, audit scratch, WALs) and says so
// when it is not there. SWARMLITE_KEEP=1 keeps the directory; SWARMLITE_BIGDB_BIN
// names another swarmlite binary to test.
// Waits are liveness deadlines (generous), never speed assertions.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/proc/child_process.h"
#include "core/keys.h"
#include "net/http_client.h"
#include "sqlbridge/proof/query_proof.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/proof/verifier.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using proc::ChildProcess;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The binary under test; SWARMLITE_BIGDB_BIN runs another build (e.g. one without the fix).
const fs::path kBin = [] {
  const char* v = std::getenv("SWARMLITE_BIGDB_BIN");
  return fs::path(v != nullptr && *v != '\0' ? v : SWARMLITE_BIN);
}();
constexpr uint64_t kMiB = 1 << 20;
constexpr int kRowsPerEntry = 32;  // 1 MiB rows: 32 MiB per entry

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct ScratchDir {
  fs::path path;
  ScratchDir() {
    path = fs::temp_directory_path() / fmt::format("swl-bigdb-{}", ::getpid());
    fs::remove_all(path);
    fs::create_directories(path);
    MESSAGE("data and logs in ", path.string());
  }
  ~ScratchDir() {
    if (env_flag("SWARMLITE_KEEP")) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json http_json(const std::string& base, const std::string& method, const std::string& target,
               const std::string& body = {}, std::chrono::milliseconds timeout = 10s) {
  auto url = net::parse_http_url(base);
  REQUIRE_MESSAGE(url.ok(), (url.ok() ? std::string() : url.error().to_string()));
  net::HttpRequest rq;
  rq.method = method;
  rq.target = target;
  rq.body = body;
  net::HttpClientOptions o;
  o.timeout = timeout;
  auto r = net::http_call(url.value(), rq, o);
  REQUIRE_MESSAGE(r.ok(), method, " ", target, ": ", (r.ok() ? std::string() : r.error().to_string()));
  REQUIRE_MESSAGE(r->status == 200, method, " ", target, ": HTTP ", r->status, ": ",
                  r->body.substr(0, 300));
  json j = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

// One write transaction on the primary; requires every statement to succeed.
void execute(const ChildProcess& primary, const json& statements) {
  json r = http_json(primary.http(), "POST", "/db/execute?transaction", statements.dump(), 600s);
  for (const auto& res : r["results"]) REQUIRE_MESSAGE(!res.contains("error"), res.dump());
}

json status_of(const ChildProcess& node) { return http_json(node.http(), "GET", "/status"); }

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return cond();
}

std::unique_ptr<ChildProcess> start(const std::string& name, const fs::path& dir,
                                    std::vector<std::string> args) {
  args.insert(args.end(), {"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"});
  auto p = std::make_unique<ChildProcess>(name, kBin, args, dir / (name + ".log"));
  // A restart rebuilds the state tree from a file of several GiB: generous.
  p->wait_ready(600s);
  return p;
}

TEST_CASE("a database past 1 GiB: primary, peer, verified read past the lock-byte page, audit") {
  const uint64_t target_mib = env_u64("SWARMLITE_BIGDB_MIB", env_flag("SWARMLITE_LONG") ? 3072 : 1228);
  const uint64_t target_bytes = target_mib * kMiB;
  REQUIRE_MESSAGE(target_bytes > uint64_t{kSqlitePendingByte} + 64 * kMiB,
                  "SWARMLITE_BIGDB_MIB must be over 1088 (1 GiB + 64 MiB)");
  ScratchDir dir;
  {
    // Primary, peer and the audit's scratch copy each hold the database, plus WALs.
    const uint64_t need = 3 * target_bytes + target_bytes / 2;
    const uint64_t avail = fs::space(dir.path).available;
    REQUIRE_MESSAGE(avail >= need, fmt::format("{} has {} MiB free, the test needs about {} MiB",
                                               dir.path.string(), avail / kMiB, need / kMiB));
  }
  const auto t0 = Clock::now();
  proc::run_to_end("keygen", kBin, {"keygen", "--out", (dir.path / "keys").string()},
                   dir.path / "keygen.log");
  const fs::path key = dir.path / "keys" / "primary.key";
  const fs::path pub = dir.path / "keys" / "primary.pub";
  auto log_id = load_public_key(pub.string());
  REQUIRE(log_id.ok());

  auto primary = start("primary", dir.path,
                       {"primary", "--db", (dir.path / "primary.db").string(), "--key", key.string(),
                        "--max-outbound", "0"});
  const std::vector<std::string> peer_args = {
      "peer", "--db", (dir.path / "peer.db").string(), "--pub", pub.string(), "--from",
      primary->listen()};
  auto peer = start("peer", dir.path, peer_args);

  // Grow the primary past the target, one 32 MiB entry at a time.
  execute(*primary, json::array({json::array({"CREATE TABLE big(id INTEGER PRIMARY KEY, note TEXT, b BLOB)"})}));
  const auto t_grow = Clock::now();
  uint64_t entries = 0;
  uint64_t pages = 0;
  while (pages * kPageSize < target_bytes) {
    execute(*primary,
            json::array({json::array(
                {fmt::format("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<{}) "
                             "INSERT INTO big(note, b) SELECT 'entry {} row ' || i, "
                             "randomblob(64) || zeroblob({}) FROM n",
                             kRowsPerEntry, entries, kMiB - 64)})}));
    ++entries;
    pages = status_of(*primary)["page_count"].get<uint64_t>();
  }
  // A table made now has its pages past the lock-byte page.
  execute(*primary,
          json::array({json::array({"CREATE TABLE late(k INTEGER PRIMARY KEY, v TEXT)"}),
                       json::array({"INSERT INTO late VALUES (1, 'one'), (2, 'two'), (3, 'three')"})}));
  const json primary_status = status_of(*primary);
  const uint64_t size = primary_status["size"].get<uint64_t>();
  const std::string root = primary_status["state_root"].get<std::string>();
  pages = primary_status["page_count"].get<uint64_t>();
  const double grow_s = seconds_since(t_grow);
  MESSAGE(fmt::format("primary: {} entries of {} MiB, {} pages ({} MiB) in {:.1f} s", entries,
                      kRowsPerEntry, pages, pages * kPageSize / kMiB, grow_s));
  REQUIRE(pages > lock_byte_page(kPageSize));

  // The peer replays every entry and reaches the primary's state root.
  const auto t_peer = Clock::now();
  auto at_primary_state = [&] {
    json st = status_of(*peer);
    // Latched states never clear: fail now, not at the deadline (a scrub that
    // found the peer's file short of the state tree hung CI for 30 minutes).
    for (const char* latched : {"corruption", "diverged"}) {
      if (!st[latched].is_null())
        FAIL("the peer stopped: ", std::string(latched), ": ", st[latched].dump());
    }
    return st["size"].get<uint64_t>() == size && st["state_root"].get<std::string>() == root &&
           st["head"].is_object() && st["head"]["size"].get<uint64_t>() == size;
  };
  bool converged = eventually(at_primary_state, 1800s);
  if (!converged) FAIL("the peer did not reach the primary's state: ", status_of(*peer).dump());
  const double peer_s = seconds_since(t_peer);
  MESSAGE(fmt::format("peer caught up in {:.1f} s after the last write", peer_s));

  // A verified read of a row on a page past the lock-byte page, and the proof
  // checked again offline. --min-size: read-your-writes; without it the peer
  // may answer at its previous pin, before `late` existed (Replica::prove).
  const fs::path proof_file = dir.path / "late.proof";
  const std::string q = "SELECT v FROM late WHERE k = 2";
  proc::run_to_end("query", kBin,
                   {"query", "--peer", peer->http(), "--pub", pub.string(), "--verify",
                    "--min-size", std::to_string(size), "--proof-out", proof_file.string(), q},
                   dir.path / "query.log", 300s);
  const std::string query_out = read_text(dir.path / "query.log");
  CHECK_MESSAGE(query_out.find("two") != std::string::npos, query_out);
  CHECK_MESSAGE(query_out.find("verified at size " + std::to_string(size)) != std::string::npos,
                query_out);
  proc::run_to_end("verify", kBin, {"verify", "--pub", pub.string(), proof_file.string()},
                   dir.path / "verify.log", 300s);
  {
    std::ifstream in(proof_file, std::ios::binary);
    Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto proof = decode_query_proof(bytes);
    REQUIRE_MESSAGE(proof.ok(), (proof.ok() ? std::string() : proof.error().to_string()));
    CHECK(proof->head.page_count == pages);
    CHECK(proof->pages.back().pgno > lock_byte_page(kPageSize));
    for (const ProvenPage& p : proof->pages) CHECK(p.pgno != lock_byte_page(kPageSize));
    auto verified = Verifier::verify(*log_id, *proof);
    REQUIRE_MESSAGE(verified.ok(), (verified.ok() ? std::string() : verified.error().to_string()));
    REQUIRE(verified->result.rows.size() == 1);
    CHECK(verified->result.rows[0][0] == Value{std::string("two")});
  }

  // A restarted peer rebuilds its state tree from the file (past 1 GiB) and
  // must find the signed state again.
  const auto t_restart = Clock::now();
  peer->stop();
  peer = start("peer", dir.path, peer_args);
  CHECK(status_of(*peer)["state_root"].get<std::string>() == root);
  MESSAGE(fmt::format("peer restarted (state tree from the file) in {:.1f} s",
                      seconds_since(t_restart)));

  // The audit replays the peer's copy of the log from scratch and compares
  // the peer's database with it.
  peer->stop();
  primary->stop();
  const auto t_audit = Clock::now();
  proc::run_to_end("audit", kBin,
                   {"audit", "--log", (dir.path / "peer.db.data" / "log").string(), "--pub",
                    pub.string(), "--db", (dir.path / "peer.db").string(), "--work-dir",
                    dir.path.string()},
                   dir.path / "audit.log", 3600s);
  const std::string audit_out = read_text(dir.path / "audit.log");
  CHECK_MESSAGE(audit_out.find("audit: OK") != std::string::npos, audit_out);
  const double audit_s = seconds_since(t_audit);
  fmt::print(
      "bigdb: {} MiB ({} pages, lock-byte page {}) in {} entries: primary {:.1f} s, peer "
      "catch-up {:.1f} s, audit {:.1f} s, whole test {:.1f} s\n",
      pages * kPageSize / kMiB, pages, lock_byte_page(kPageSize), size, grow_s, peer_s, audit_s,
      seconds_since(t0));
}

}  // namespace
}  // namespace swarmlite
