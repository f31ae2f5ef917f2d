// Bootstrapping a new peer: a verified snapshot vs replaying the history
// (docs/performance.md "Bootstrap: snapshot vs replay", docs/operations.md
// "Starting a peer from a snapshot").
//
// Setup (once, kept for later runs): a database built by N single-row writes,
// one log entry each (SWARMLITE_BENCH_BOOTSTRAP_WRITES, default 1,000,000), in
// SWARMLITE_BENCH_BOOTSTRAP_DIR (default /tmp/swl-bench-bootstrap-N); building
// 1M writes takes a few minutes, later runs reuse it. Three serving nodes run
// as real processes: a `swarmlite primary` on the built files and two
// `swarmlite peer`s on copies of them (already at the head: nothing to sync).
//
// Measured, each from exec until the new peer's /status has applied every entry:
//   mode:replay   `swarmlite peer --bootstrap replay`: fetch, verify, store and
//                 replay all N entries from the three nodes;
//   mode:snapshot `swarmlite peer --bootstrap snapshot`: the pages of the newest
//                 head from the three nodes (chunks spread over them), each chunk
//                 checked against the signed state root, then the log from there.
// and `swarmlite fetch --from` the three nodes alone (verified MB/s of pages),
// and `swarmlite compact --keep-from head` of a copy of the log (disk kept, time).
// The figures are printed with the 1-minute load average; the ratio
// replay/snapshot is the one that matters (the target: >= 10x).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "cli/proc/child_process.h"
#include "core/keys.h"
#include "net/http_client.h"
#include "sqlbridge/engine/primary.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using bench::die;
using bench::env_int;
using bench::load_average;
using bench::must;
using Clock = std::chrono::steady_clock;
using proc::ChildProcess;

const fs::path kBin = SWARMLITE_BIN;

uint64_t writes() { return static_cast<uint64_t>(env_int("SWARMLITE_BENCH_BOOTSTRAP_WRITES", 1000000)); }
// Bytes of text per row (SWARMLITE_BENCH_BOOTSTRAP_ROW_BYTES; 0 or unset: the
// default ~40-byte row, about 88 rows and so 88 entries per 4 KiB page). Larger
// rows give fewer entries per page: ~1,000 bytes is ~4 per page, where the
// auto rule (client/bootstrap.h kReplayEntriesPerPage) switches; this is how
// docs/performance.md measures that crossover.
uint64_t row_bytes() { return static_cast<uint64_t>(env_int("SWARMLITE_BENCH_BOOTSTRAP_ROW_BYTES", 0)); }

fs::path data_dir() {
  const char* d = std::getenv("SWARMLITE_BENCH_BOOTSTRAP_DIR");
  if (d && *d) return fs::path(d);
  return row_bytes() == 0 ? fs::path(fmt::format("/tmp/swl-bench-bootstrap-{}", writes()))
                          : fs::path(fmt::format("/tmp/swl-bench-bootstrap-{}-row{}", writes(), row_bytes()));
}

// Builds p.db + p.db.log with `n` single-row writes (unless a finished build is
// there: the "built" marker holds the final log size), and two copies of the
// pair for the serving peers. Returns the log size.
uint64_t build(const fs::path& dir, uint64_t n) {
  const fs::path marker = dir / "built";
  if (fs::exists(marker)) {
    std::ifstream in(marker);
    uint64_t size = 0;
    in >> size;
    if (size > 0) return size;
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  KeyPair keys = KeyPair::generate();
  must(write_key_files(dir / "keys", keys), "writing the keys");
  PrimaryOptions po;
  po.log_options.sync = false;  // the setup, not what is measured
  po.sign_every_entries = 4096;
  auto primary = must(Primary::open(dir / "p.db", keys.secret, po), "opening the primary");
  must(primary->execute({Statement{"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)", {}}}),
       "create table");
  const auto t0 = Clock::now();
  constexpr uint64_t kGroup = 256;
  std::vector<std::vector<Statement>> txs(kGroup);
  std::vector<Primary::Write> batch(kGroup);
  for (uint64_t i = 0; i < n; i += kGroup) {
    const uint64_t m = std::min(kGroup, n - i);
    for (uint64_t j = 0; j < m; ++j) {
      // ~40 bytes of text per row: a typical small row (an event, a counter);
      // or row_bytes() of text.
      std::string v = fmt::format("row {:010d} of the bootstrap bench", i + j);
      if (row_bytes() > v.size()) v.resize(row_bytes(), static_cast<char>('a' + (i + j) % 26));
      txs[j] = {Statement{"INSERT INTO t(v) VALUES (?)", {Value{std::move(v)}}}};
      batch[j] = Primary::Write{txs[j]};
    }
    for (auto& r : primary->execute_batch(std::span(batch.data(), m))) must(std::move(r), "write");
    if ((i / kGroup) % 400 == 0) {
      fmt::print(stderr, "\rbootstrap bench setup: {} of {} writes ({:.0f} s)", i + m, n,
                 std::chrono::duration<double>(Clock::now() - t0).count());
    }
  }
  must(primary->sign_head(), "signing the last head");
  const uint64_t size = primary->size();
  primary.reset();
  fmt::print(stderr, "\rbootstrap bench setup: {} writes in {:.0f} s, log size {}\n", n,
             std::chrono::duration<double>(Clock::now() - t0).count(), size);
  for (const char* s : {"s1", "s2"}) {
    fs::copy_file(dir / "p.db", dir / (std::string(s) + ".db"));
    fs::create_directories(dir / (std::string(s) + ".db.data"));
    fs::copy(dir / "p.db.log", dir / (std::string(s) + ".db.data/log"), fs::copy_options::recursive);
  }
  std::ofstream(marker) << size << "\n";
  return size;
}

nlohmann::json status_of(const std::string& base) {
  auto url = must(net::parse_http_url(base), "url");
  net::HttpRequest req;
  req.target = "/status";
  net::HttpClientOptions co;
  co.timeout = 10s;
  auto r = net::http_call(url, req, co);
  if (!r.ok() || r->status != 200) return nlohmann::json::object();
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

struct Servers {
  std::unique_ptr<ChildProcess> primary, s1, s2;
  std::string from;  // the three peer addresses
};

Servers start_servers(const fs::path& dir) {
  Servers s;
  s.primary = std::make_unique<ChildProcess>(
      "primary", kBin,
      std::vector<std::string>{"primary", "--db", (dir / "p.db").string(), "--key",
                               (dir / "keys/primary.key").string(), "--listen", "127.0.0.1:0",
                               "--max-outbound", "0", "--log-level", "warn"},
      dir / "primary.out");
  s.primary->wait_ready(600s, /*need_http=*/false);
  auto peer = [&](const char* name) {
    auto p = std::make_unique<ChildProcess>(
        name, kBin,
        std::vector<std::string>{"peer", "--db", (dir / (std::string(name) + ".db")).string(),
                                 "--pub", (dir / "keys/primary.pub").string(), "--from",
                                 s.primary->listen(), "--listen", "127.0.0.1:0", "--log-level",
                                 "warn"},
        dir / (std::string(name) + ".out"));
    p->wait_ready(600s, /*need_http=*/false);
    return p;
  };
  s.s1 = peer("s1");
  s.s2 = peer("s2");
  s.from = s.primary->listen() + "," + s.s1->listen() + "," + s.s2->listen();
  return s;
}

std::map<std::string, double> g_seconds;

void BM_Bootstrap(benchmark::State& state) {
  const bool snapshot = state.range(0) != 0;
  const fs::path dir = data_dir();
  const uint64_t size = build(dir, writes());
  Servers servers = start_servers(dir);
  for (auto _ : state) {
    const fs::path run = dir / (snapshot ? "run-snapshot" : "run-replay");
    fs::remove_all(run);
    fs::create_directories(run);
    const double load0 = load_average();
    const auto t0 = Clock::now();
    ChildProcess peer("new-peer", kBin,
                      {"peer", "--db", (run / "new.db").string(), "--pub",
                       (dir / "keys/primary.pub").string(), "--from", servers.from, "--listen",
                       "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap",
                       snapshot ? "snapshot" : "replay", "--log-level", "warn"},
                      run / "peer.out");
    peer.wait_ready(3600s);
    uint64_t applied = 0;
    while (applied < size) {
      auto st = status_of(peer.http());
      if (st.contains("size")) applied = st["size"].get<uint64_t>();
      if (!peer.running()) die("the new peer exited: " + peer.log_tail());
      if (applied < size) std::this_thread::sleep_for(20ms);
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(s);
    const auto db_bytes = fs::file_size(run / "new.db");
    peer.stop();
    g_seconds[snapshot ? "snapshot" : "replay"] = s;
    state.counters["entries"] = static_cast<double>(size);
    state.counters["entries_per_s"] = static_cast<double>(size) / s;
    state.counters["db_MB"] = static_cast<double>(db_bytes) / 1e6;
    state.counters["load"] = load0;
    fmt::print(stderr, "bootstrap {}: {} entries, {:.1f} MB database, {:.2f} s (load {:.2f} -> {:.2f})\n",
               snapshot ? "snapshot" : "replay", size, static_cast<double>(db_bytes) / 1e6, s, load0,
               load_average());
    fs::remove_all(run);
  }
}
BENCHMARK(BM_Bootstrap)
    ->ArgName("mode")  // 0: replay, 1: snapshot
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// `swarmlite fetch` of the newest head from the three nodes: verified MB/s.
// Cold: the nodes were just started, so each first makes its snapshot copy of
// the database (docs/protocol.md "Snapshots"), three copies on one disk here;
// warm (the iteration time): a second fetch, the copies made.
void BM_FetchThreePeers(benchmark::State& state) {
  const fs::path dir = data_dir();
  build(dir, writes());
  Servers servers = start_servers(dir);
  const fs::path out = dir / "fetched.db";
  auto fetch = [&] {
    for (const char* suffix : {"", ".head.json", ".part", ".part.progress"}) fs::remove(out.string() + suffix);
    const auto t0 = Clock::now();
    proc::run_to_end("fetch", kBin,
                     {"fetch", "--from", servers.from, "--pub", (dir / "keys/primary.pub").string(),
                      "--out", out.string(), "--parallel", std::to_string(state.range(0))},
                     dir / "fetch.out", 3600s);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  for (auto _ : state) {
    const double load0 = load_average();
    const double cold = fetch();
    const double s = fetch();
    state.SetIterationTime(s);
    const double mb = static_cast<double>(fs::file_size(out)) / 1e6;
    state.counters["MB"] = mb;
    state.counters["MB_per_s"] = mb / s;
    state.counters["cold_MB_per_s"] = mb / cold;
    state.counters["load"] = load0;
    fmt::print(stderr,
               "fetch from 3 nodes, --parallel {}: {:.1f} MB; cold (nodes make their copies) {:.2f} s "
               "= {:.0f} MB/s; warm {:.2f} s = {:.0f} MB/s (load {:.2f})\n",
               state.range(0), mb, cold, mb / cold, s, mb / s, load0);
    for (const char* suffix : {"", ".head.json"}) fs::remove(out.string() + suffix);
  }
}
BENCHMARK(BM_FetchThreePeers)
    ->ArgName("parallel")
    ->Arg(2)
    ->Arg(4)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

uint64_t dir_bytes(const fs::path& d) {
  uint64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(d))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

// `swarmlite compact --keep-from head` on a copy of the built log: the disk a
// compacted node keeps vs a full one, and the time compaction takes.
void BM_Compact(benchmark::State& state) {
  const fs::path dir = data_dir();
  build(dir, writes());
  for (auto _ : state) {
    const fs::path copy = dir / "compact-copy.log";
    fs::remove_all(copy);
    fs::copy(dir / "p.db.log", copy, fs::copy_options::recursive);
    const uint64_t before = dir_bytes(copy);
    const double load0 = load_average();
    const auto t0 = Clock::now();
    proc::run_to_end("compact", kBin, {"compact", "--log", copy.string(), "--keep-from", "head"},
                     dir / "compact.out", 3600s);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(s);
    const uint64_t after = dir_bytes(copy);
    state.counters["log_MB_before"] = static_cast<double>(before) / 1e6;
    state.counters["log_MB_after"] = static_cast<double>(after) / 1e6;
    state.counters["db_MB"] = static_cast<double>(fs::file_size(dir / "p.db")) / 1e6;
    state.counters["load"] = load0;
    fmt::print(stderr,
               "compact --keep-from head: log {:.1f} MB -> {:.1f} MB (database {:.1f} MB) in {:.3f} s "
               "(load {:.2f})\n",
               static_cast<double>(before) / 1e6, static_cast<double>(after) / 1e6,
               static_cast<double>(fs::file_size(dir / "p.db")) / 1e6, s, load0);
    fs::remove_all(copy);
  }
}
BENCHMARK(BM_Compact)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace swarmlite

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  auto r = swarmlite::g_seconds.find("replay");
  auto s = swarmlite::g_seconds.find("snapshot");
  if (r != swarmlite::g_seconds.end() && s != swarmlite::g_seconds.end()) {
    fmt::print(stderr, "bootstrap: snapshot is {:.1f}x faster than replay ({:.2f} s vs {:.2f} s)\n",
               r->second / s->second, s->second, r->second);
  }
  benchmark::Shutdown();
  return 0;
}
