// `--retain N` through real processes (docs/operations.md "Compacting a log"):
// a primary with small log segments compacts its own log while writes keep
// coming (none fails); a peer with --retain that was following keeps following,
// compacts its own log and accepts the heads signed after the checkpoint; a
// peer stopped for longer than N entries reports the range nobody serves, and
// so does one frozen (SIGSTOP) that long while connected, from the primary's
// Head push after the compaction (docs/protocol.md "First servable entry"); a
// new, empty peer cannot replay from entry 0 (--bootstrap replay refuses) and
// starts from a snapshot instead (auto); the compacted log audits from a
// snapshot fetched while it ran.
#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/proc/child_process.h"
#include "tests/integration/http_test_util.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using json = nlohmann::json;
using swarmlite::proc::ChildProcess;
const fs::path kBin = SWARMLITE_BIN;

using swarmlite::testing::sh;
using swarmlite::testing::slurp;
struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("retain") {}
};

constexpr int kRetain = 20;

// One write transaction (one log entry) of an 8 KB row; false when it failed.
bool insert_row(const std::string& base, int id) {
  const std::string body = R"J([["INSERT INTO t(id, pad) VALUES(?, ?)", )J" + std::to_string(id) +
                           ", \"" + std::string(8000, 'x') + "\"]]";
  auto r = swarmlite::testing::http_to(base, "POST", "/db/execute?transaction", body, 30s);
  return r.ok() && r->status == 200 && r->body.find("\"error\"") == std::string::npos;
}

json get_json(const std::string& base, const std::string& target) {
  auto r = swarmlite::testing::http_to(base, "GET", target, {}, 10s);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  return json::parse(r->body);
}

std::string get_text(const std::string& base, const std::string& target) {
  auto r = swarmlite::testing::http_to(base, "GET", target, {}, 10s);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  return r->body;
}

// The value of an unlabelled series in a /metrics text (-1 when absent).
double metric(const std::string& text, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+]+)"))) return -1;
  return std::stod(m[1].str());
}

// Polls `done` every 100 ms for up to `timeout`; its last answer.
template <class F>
bool eventually(F&& done, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

std::vector<std::string> peer_args(const Dir& dir, const std::string& name, const std::string& pub,
                                   const std::string& from) {
  return {"peer", "--db", (dir / (name + ".db")).string(), "--pub", pub, "--from", from,
          "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--max-outbound", "1"};
}

std::unique_ptr<ChildProcess> start_peer(const Dir& dir, const std::string& name,
                                         std::vector<std::string> args) {
  auto p = std::make_unique<ChildProcess>(name, kBin, std::move(args), dir / (name + ".log"));
  p->wait_ready(60s);
  return p;
}

}  // namespace

TEST_CASE("--retain: nodes compact their logs under live writes; peers follow, report or bootstrap") {
  Dir dir;
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  const std::string pub = (dir / "k/primary.pub").string();
  const std::vector<std::string> retain{"--log-segment-mib", "0.0625", "--retain",
                                        std::to_string(kRetain), "--retain-interval", "0.2"};
  std::vector<std::string> primary_args{"primary", "--db", (dir / "p.db").string(), "--key",
                                        (dir / "k/primary.key").string(), "--max-outbound", "0",
                                        "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"};
  primary_args.insert(primary_args.end(), retain.begin(), retain.end());
  auto primary = std::make_unique<ChildProcess>("primary", kBin, primary_args, dir / "primary.log");
  primary->wait_ready(60s);
  INFO(slurp(dir / "primary.log"));
  const std::string base = primary->http();
  REQUIRE(swarmlite::testing::http_to(base, "POST", "/db/execute",
                                      R"J(["CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)"])J")
              ->status == 200);

  // A peer that follows from the start (and retains too), and one that will
  // stop early.
  auto follower_args = peer_args(dir, "follower", pub, primary->listen());
  follower_args.insert(follower_args.end(), retain.begin(), retain.end());
  auto follower = start_peer(dir, "follower", follower_args);
  auto laggard = start_peer(dir, "laggard", peer_args(dir, "laggard", pub, primary->listen()));
  auto frozen = start_peer(dir, "frozen", peer_args(dir, "frozen", pub, primary->listen()));
  for (int i = 0; i < 5; ++i) REQUIRE(insert_row(base, i));
  REQUIRE(eventually([&] { return get_json(follower->http(), "/status")["applied_size"] == 7; }, 30s));
  REQUIRE(eventually([&] { return get_json(laggard->http(), "/status")["applied_size"] == 7; }, 30s));
  REQUIRE(eventually([&] { return get_json(frozen->http(), "/status")["applied_size"] == 7; }, 30s));
  laggard->stop();
  // Frozen, its session to the primary stays open (well under the 90 s idle
  // timeout): it will learn of the compaction only from the primary's pushes.
  REQUIRE(::kill(frozen->pid(), SIGSTOP) == 0);
  const auto frozen_at = std::chrono::steady_clock::now();
  const json head_before = get_json(follower->http(), "/status")["head"];
  REQUIRE(head_before["size"] == 7);

  // Live writes while the primary compacts: they go on until it compacted three
  // times (and at least 100 were written); none fails.
  std::atomic<int> failures{0};
  std::atomic<bool> stop_writing{false};
  std::atomic<int> written{5};
  std::thread writer([&] {
    for (int id = 5; id < 5 + 2000 && !stop_writing; ++id) {
      if (!insert_row(base, id)) ++failures;
      ++written;
    }
  });
  bool compacted = eventually(
      [&] {
        const std::string m = get_text(base, "/metrics");
        return metric(m, "swarmlite_compactions_total") >= 3 && written >= 100;
      },
      120s);
  stop_writing = true;
  writer.join();
  REQUIRE(compacted);
  CHECK(failures == 0);
  const uint64_t size = 2 + written;  // genesis, CREATE TABLE, the rows

  // The primary signs heads in the background: its head covers the last write
  // a moment after that write was acknowledged.
  REQUIRE(eventually([&] { return get_json(base, "/status")["head"]["size"] == size; }, 10s));
  const json primary_status = get_json(base, "/status");
  REQUIRE(primary_status["log_size"] == size);
  // A last round may still be under way: read the metrics once it settled.
  const uint64_t first = primary_status["first_entry"].get<uint64_t>();
  CHECK(first > 7);
  CHECK(first <= size - kRetain);
  REQUIRE(eventually(
      [&] { return metric(get_text(base, "/metrics"), "swarmlite_log_first_entry") >= first; }, 10s));
  const std::string metrics = get_text(base, "/metrics");
  CHECK(metric(metrics, "swarmlite_compacted_entries_total") ==
        metric(metrics, "swarmlite_log_first_entry"));
  CHECK(metric(metrics, "swarmlite_compacted_bytes_total") > 0);
  CHECK(metric(metrics, "swarmlite_compaction_errors_total") == 0);
  // The database's files, as the primary sees them (no write runs now).
  CHECK(metric(metrics, "swarmlite_database_bytes") ==
        static_cast<double>(fs::file_size(dir / "p.db")));
  CHECK(metric(metrics, "swarmlite_wal_bytes") ==
        static_cast<double>(fs::file_size(dir / "p.db-wal")));
  CHECK(metric(metrics, "swarmlite_wal_bytes") > 0);
  CHECK(slurp(dir / "primary.log").find("--retain 20: dropped log entries [0, ") !=
        std::string::npos);
  CHECK_FALSE(fs::exists(dir / "p.db.log/seg-0000000000000000.log"));

  // The follower saw a head before the checkpoint and accepts those after it:
  // it reaches the primary's head, same roots, and compacted its own log.
  REQUIRE(eventually([&] { return get_json(follower->http(), "/status")["applied_size"] == size; },
                     60s));
  const json fs_status = get_json(follower->http(), "/status");
  INFO(fs_status.dump());
  CHECK(fs_status["head"]["size"] == primary_status["head"]["size"]);
  CHECK(fs_status["head"]["log_root"] == primary_status["head"]["log_root"]);
  CHECK(fs_status["head"]["state_root"] == primary_status["head"]["state_root"]);
  CHECK(fs_status["head"]["size"].get<uint64_t>() > head_before["size"].get<uint64_t>());
  CHECK(fs_status["unserved_entries"].is_null());
  CHECK(fs_status["apply_error"].is_null());
  // Replay's own series: every entry the follower applied went through replay,
  // in batches or one transaction each (which, depends on how entries arrive:
  // one at a time under a slow build, e.g. ASan, gives no batch at all).
  const std::string follower_metrics = get_text(follower->http(), "/metrics");
  CHECK(metric(follower_metrics, "swarmlite_replay_batched_entries") +
            metric(follower_metrics, "swarmlite_replay_single_entries") >=
        static_cast<double>(size - 7));
  CHECK(metric(follower_metrics, "swarmlite_replay_batches") >= 0);
  CHECK(metric(follower_metrics, "swarmlite_replay_fallbacks") == 0);
  CHECK(metric(follower_metrics, "swarmlite_replay_handed_entries") >= 0);
  CHECK(metric(follower_metrics, "swarmlite_decoded_entries_bytes") >= 0);
  CHECK(metric(follower_metrics, "swarmlite_database_bytes") > 0);
  CHECK(metric(follower_metrics, "swarmlite_wal_bytes") >= 0);
  CHECK(metric(follower_metrics, "swarmlite_wal_restarts_blocked") == 0);
  REQUIRE(eventually(
      [&] { return metric(get_text(follower->http(), "/metrics"), "swarmlite_compactions_total") >= 1; },
      10s));
  CHECK(get_json(follower->http(), "/status")["first_entry"].get<uint64_t>() > 0);
  CHECK(slurp(dir / "follower.log").find("--retain 20: dropped log entries [0, ") !=
        std::string::npos);

  // The frozen peer wakes up still connected: the primary's Head pushes (the
  // last ones after a compaction) say it serves entries from `first` on only,
  // so the peer reports the range nobody serves instead of waiting silently.
  const auto frozen_for = std::chrono::steady_clock::now() - frozen_at;
  REQUIRE(::kill(frozen->pid(), SIGCONT) == 0);
  json fz;
  const bool frozen_reported = eventually(
      [&] {
        fz = get_json(frozen->http(), "/status");
        return !fz["unserved_entries"].is_null();
      },
      20s);
  INFO(fz.dump());
  INFO(slurp(dir / "frozen.log"));
  INFO("frozen for " << std::chrono::duration_cast<std::chrono::milliseconds>(frozen_for).count()
                     << " ms");
  CHECK(frozen_reported);
  // It may first apply what reached its socket before the SIGSTOP took hold
  // (the primary pushes the entries right after 7 to a peer at its tip): the
  // range it reports starts where its own log ends.
  if (frozen_reported) {
    const uint64_t from = fz["unserved_entries"]["from"].get<uint64_t>();
    CHECK(from >= 7);
    CHECK(from < first);
    CHECK(from == fz["log_size"].get<uint64_t>());
    // Its end is the primary's first entry as of the last push (a compaction
    // after the last write is pushed to no one).
    CHECK(fz["unserved_entries"]["to"].get<uint64_t>() > from);
  }
  // The primary session did not drop meanwhile (the report came from a push,
  // not from a new Hello): one connection to it in the frozen peer's log.
  const std::string frozen_log = slurp(dir / "frozen.log");
  size_t connects = 0;
  for (size_t at = frozen_log.find("connected (outbound"); at != std::string::npos;
       at = frozen_log.find("connected (outbound", at + 1))
    ++connects;
  CHECK(connects == 1);
  frozen->stop();

  // The laggard (a database at 7) restarts: the primary serves only from its
  // first entry on, and the laggard says which range nobody serves.
  laggard = start_peer(dir, "laggard2", peer_args(dir, "laggard", pub, primary->listen()));
  json ls;
  const bool reported = eventually(
      [&] {
        ls = get_json(laggard->http(), "/status");
        return !ls["unserved_entries"].is_null();
      },
      30s);
  INFO(ls.dump());
  INFO(slurp(dir / "laggard2.log"));
  REQUIRE(reported);
  CHECK(ls["unserved_entries"]["from"] == 7);
  CHECK(ls["unserved_entries"]["to"].get<uint64_t>() >= first);
  CHECK(ls["applied_size"] == 7);
  // Read the log once the node exited: its stdout (a file) is flushed at exit,
  // not at every line (CI at load 13 read it before the warning reached it).
  laggard->stop();
  CHECK(slurp(dir / "laggard2.log").find("are held by no connected peer") != std::string::npos);

  // A new, empty peer cannot replay from entry 0 …
  std::string replay_cmd = "timeout 60 " + kBin.string();
  for (const auto& a : peer_args(dir, "replayer", pub, primary->listen())) replay_cmd += " " + a;
  CHECK(sh(replay_cmd + " --bootstrap replay", dir / "replayer.out") != 0);
  CHECK(slurp(dir / "replayer.out").find("needs entry 0") != std::string::npos);
  // … and starts from a snapshot instead, then follows.
  auto newcomer = start_peer(dir, "newcomer", peer_args(dir, "newcomer", pub, primary->listen()));
  REQUIRE(insert_row(base, 10000));
  INFO(slurp(dir / "newcomer.log"));
  CHECK(eventually([&] { return get_json(newcomer->http(), "/status")["applied_size"] == size + 1; },
                   60s));
  CHECK(slurp(dir / "newcomer.log").find("starts at the snapshot of head") != std::string::npos);
  newcomer->stop();

  // A verified snapshot of the running primary at head A (the node may hand
  // out the copy it pinned for the newcomer: A is size or size + 1), a few more
  // writes (fewer than --retain: A stays in the log), then an audit of the
  // compacted log from the snapshot.
  REQUIRE(sh(kBin.string() + " fetch --from " + base + " --pub " + pub + " --out " +
                 (dir / "snap.db").string(),
             dir / "fetch.out") == 0);
  std::smatch m;
  const std::string head_json = slurp(dir / "snap.db.head.json");
  REQUIRE(std::regex_search(head_json, m, std::regex(R"re("size":\s*(\d+))re")));
  const uint64_t a = std::stoull(m[1].str());
  CHECK(a >= size);
  CHECK(a >= first);
  for (int id = 10001; id < 10006; ++id) REQUIRE(insert_row(base, id));
  primary->stop();
  follower->stop();
  const int audit = sh(kBin.string() + " audit --log " + (dir / "p.db.log").string() + " --pub " +
                           pub + " --from-snapshot " + (dir / "snap.db").string(),
                       dir / "audit.out");
  const std::string audit_out = slurp(dir / "audit.out");
  INFO(audit_out);
  CHECK(audit == 0);
  CHECK(audit_out.find("checked entries [" + std::to_string(a) + ", " + std::to_string(size + 6) +
                       ") from a snapshot at head " + std::to_string(a)) != std::string::npos);
  CHECK(audit_out.find("audit: OK") != std::string::npos);
}
