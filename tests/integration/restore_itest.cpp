// Restoring a lost primary from a peer, through real processes
// (docs/operations.md "Backups", "Restoring a lost primary"): a primary writes, a
// peer follows, the primary is killed -9 and its files deleted. Then
//   1. from the peer's log alone: a new primary replays it into a new database,
//      reaches the lost primary's state root, and writes on; the peer, pointed
//      at it, follows without seeing a fork;
//   2. from the peer's database and a compacted copy of its log (a log that no
//      longer starts at entry 0, as a bootstrapped or --retain peer has): the
//      new primary opens the pair as it is and writes on;
//   3. from untrusted nodes alone: a new peer bootstraps from a verified
//      snapshot of the surviving peer (its log starts at the snapshot's head
//      and holds no entry after it) and the new primary opens its files;
//   4. the wrong way, from an OLDER copy of the log: the new primary's first
//      write forks the log, and the peer that had seen the newer entries
//      reports equivocation evidence instead of following it.
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
using nlohmann::json;
using swarmlite::proc::ChildProcess;
using swarmlite::testing::sh;
using swarmlite::testing::slurp;
const fs::path kBin = SWARMLITE_BIN;

struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("restore") {}
};

json status_of(const std::string& base) {
  auto r = swarmlite::testing::http_to(base, "GET", "/status", "", 30s);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  return json::parse(r->body);
}

using swarmlite::testing::execute_ok;
using swarmlite::testing::write_pad_rows;

std::unique_ptr<ChildProcess> start_primary(const Dir& dir, const std::string& name,
                                            const fs::path& db, const fs::path& log) {
  auto p = std::make_unique<ChildProcess>(
      name, kBin,
      std::vector<std::string>{"primary", "--db", db.string(), "--log", log.string(), "--key",
                               (dir / "k/primary.key").string(), "--max-outbound", "0",
                               "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                               "--log-segment-mib", "0.0625"},
      dir / (name + ".log"));
  p->wait_ready(60s);
  return p;
}

std::unique_ptr<ChildProcess> start_peer(const Dir& dir, const std::string& name,
                                         const std::string& from) {
  auto p = std::make_unique<ChildProcess>(
      name, kBin,
      std::vector<std::string>{"peer", "--db", (dir / "a.db").string(), "--pub",
                               (dir / "k/primary.pub").string(), "--from", from, "--listen",
                               "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap", "replay",
                               "--log-segment-mib", "0.0625"},
      dir / (name + ".log"));
  p->wait_ready(60s);
  return p;
}

// Waits until the node at `base` has applied `size` entries; returns its status.
json wait_for_size(const std::string& base, uint64_t size) {
  json st;
  for (int i = 0; i < 600; ++i) {
    st = status_of(base);
    if (st["size"].get<uint64_t>() >= size) return st;
    std::this_thread::sleep_for(50ms);
  }
  FAIL("node ", base, " did not reach size ", size, ": ", st.dump());
  return st;
}

// A stopped node's log directory, copied as an operator would (cp -r).
void copy_dir(const fs::path& from, const fs::path& to) {
  fs::copy(from, to, fs::copy_options::recursive);
  fs::remove(to / "LOCK");  // a lock file of the stopped owner, not data
}

}  // namespace

TEST_CASE("a lost primary restored from a peer's log, its database and compacted log, or a new peer's snapshot, writes on") {
  Dir dir;
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  auto primary = start_primary(dir, "primary1", dir / "p.db", dir / "p.db.log");
  execute_ok(primary->http(), R"J(["CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)"])J");
  write_pad_rows(primary->http(), 0, 12);
  auto peer = start_peer(dir, "peer1", primary->listen());
  write_pad_rows(primary->http(), 12, 12);
  const json lost = status_of(primary->http());
  const uint64_t size = lost["size"].get<uint64_t>();
  const std::string root = lost["state_root"].get<std::string>();
  wait_for_size(peer->http(), size);
  CHECK(status_of(peer->http())["state_root"] == root);

  // The primary's disk is gone: killed, files deleted.
  primary->kill_hard();
  primary.reset();
  for (const char* f : {"p.db", "p.db-wal", "p.db-shm", "p.db-swlock", "p.db.log"}) fs::remove_all(dir / f);

  // 1. From the peer's log alone: replayed into a new database.
  peer->stop();
  copy_dir(dir / "a.db.data/log", dir / "r1.log");
  primary = start_primary(dir, "primary2", dir / "r1.db", dir / "r1.log");
  {
    const json st = status_of(primary->http());
    CHECK(st["size"].get<uint64_t>() == size);
    CHECK(st["state_root"] == root);
  }
  write_pad_rows(primary->http(), 24, 3);
  peer = start_peer(dir, "peer2", primary->listen());
  {
    const json p = status_of(primary->http());
    const json a = wait_for_size(peer->http(), size + 3);
    CHECK(a["state_root"] == p["state_root"]);
    CHECK(a["evidence"].is_null());
  }

  // 2. From the peer's database and a compacted copy of its log.
  primary->stop();
  peer->stop();
  for (const char* f : {"a.db", "a.db-wal"}) {
    if (fs::exists(dir / f)) fs::copy_file(dir / f, dir / (std::string("r2") + (f + 1)));
  }
  copy_dir(dir / "a.db.data/log", dir / "r2.log");
  REQUIRE(sh(kBin.string() + " compact --log " + (dir / "r2.log").string() + " --keep-from head",
             dir / "compact.out") == 0);
  const std::string compacted = slurp(dir / "compact.out");
  INFO(compacted);
  REQUIRE(compacted.rfind("dropped ", 0) == 0);  // it really starts past entry 0 now
  primary = start_primary(dir, "primary3", dir / "r2.db", dir / "r2.log");
  {
    const json st = status_of(primary->http());
    CHECK(st["size"].get<uint64_t>() == size + 3);
    CHECK(st["first_entry"].get<uint64_t>() > 0);
    CHECK(st["first_entry"].get<uint64_t>() <= size + 2);
  }
  write_pad_rows(primary->http(), 27, 3);
  peer = start_peer(dir, "peer3", primary->listen());
  std::string root3;
  {
    const json p = status_of(primary->http());
    const json a = wait_for_size(peer->http(), size + 6);
    CHECK(a["state_root"] == p["state_root"]);
    CHECK(a["evidence"].is_null());
    root3 = p["state_root"].get<std::string>();
  }

  // 3. From untrusted nodes alone: the primary is lost again; a new peer starts
  // from a verified snapshot of the surviving peer (its log then starts at the
  // snapshot's head, with no entry after it) and the primary opens its files.
  primary->kill_hard();
  primary.reset();
  {
    ChildProcess fresh("fresh", kBin,
                       {"peer", "--db", (dir / "n.db").string(), "--pub",
                        (dir / "k/primary.pub").string(), "--from", peer->listen(), "--listen",
                        "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap", "snapshot"},
                       dir / "fresh.log");
    fresh.wait_ready(60s);
    const json n = wait_for_size(fresh.http(), size + 6);
    CHECK(n["state_root"] == root3);
    CHECK(n["first_entry"].get<uint64_t>() == size + 6);
    fresh.stop();
  }
  peer->stop();
  primary = start_primary(dir, "primary4", dir / "n.db", dir / "n.db.data/log");
  {
    const json st = status_of(primary->http());
    CHECK(st["size"].get<uint64_t>() == size + 6);
    CHECK(st["state_root"] == root3);
  }
  write_pad_rows(primary->http(), 30, 3);
  peer = start_peer(dir, "peer4", primary->listen());
  {
    const json p = status_of(primary->http());
    const json a = wait_for_size(peer->http(), size + 9);
    CHECK(a["state_root"] == p["state_root"]);
    CHECK(a["evidence"].is_null());
  }
  primary->stop();
  peer->stop();
}

TEST_CASE("a primary restored from an older copy of the log forks it, and the peer reports evidence") {
  Dir dir;
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  auto primary = start_primary(dir, "primary1", dir / "p.db", dir / "p.db.log");
  execute_ok(primary->http(), R"J(["CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)"])J");
  write_pad_rows(primary->http(), 0, 5);
  primary->stop();
  copy_dir(dir / "p.db.log", dir / "old.log");  // a backup taken now, then forgotten
  primary = start_primary(dir, "primary2", dir / "p.db", dir / "p.db.log");
  write_pad_rows(primary->http(), 5, 5);
  const uint64_t size = status_of(primary->http())["size"].get<uint64_t>();
  auto peer = start_peer(dir, "peer1", primary->listen());
  wait_for_size(peer->http(), size);
  peer->stop();
  primary->kill_hard();

  // Restored from the old copy, the primary writes a different entry at a seq
  // the peer already holds: two signed heads that cannot both be true.
  primary = start_primary(dir, "primary3", dir / "r.db", dir / "old.log");
  CHECK(status_of(primary->http())["size"].get<uint64_t>() < size);
  write_pad_rows(primary->http(), 100, 8);
  peer = start_peer(dir, "peer2", primary->listen());
  json a;
  for (int i = 0; i < 600; ++i) {
    a = status_of(peer->http());
    if (!a["evidence"].is_null()) break;
    std::this_thread::sleep_for(50ms);
  }
  INFO(a.dump());
  CHECK_FALSE(a["evidence"].is_null());
  CHECK(a["size"].get<uint64_t>() == size);  // it kept what it had, followed nothing else
  primary->stop();
  peer->stop();
}
