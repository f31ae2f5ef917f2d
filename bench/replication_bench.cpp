// Replication benchmarks (issue 4), with in-process nodes (net::Node over real
// TCP sockets on 127.0.0.1, one process; no child processes):
//
//  BM_Lag/star:0|1/rate:100|1000/nodelay:0|1/bg:0|1   primary + 3 peers as a
//      chain (P←1←2←3, star:0) or a star (1, 2, 3 ← P, star:1). A pacing thread
//      runs single-row write transactions with Primary::execute at `rate`/s for
//      SWARMLITE_BENCH_LAG_SECONDS (default 10), and Node::notify_new_head()
//      after each; bg:0 signs a head per execute, bg:1 signs them in the
//      background and announces each as it is signed, as `swarmlite primary`
//      does (PrimaryOptions::sign_in_background).
//      nodelay:0 turns TCP_NODELAY off on every node's peer sockets
//      (NodeOptions::tcp_no_delay; on in production): the A/B pair of the same
//      run, whose ratios main() prints at the end.
//      Lag of entry i at peer k = (time peer k's Replica::apply_available
//      returned having applied i) − (time execute() returned for i). The peer
//      time comes from a NodeBackend wrapper (TimedReplicaBackend) around the
//      ReplicaBackend: one steady_clock read per apply call, no polling.
//      Both clocks are the same steady_clock of one process. In the chain,
//      hop k = peer k's time − peer k−1's time for the same entry (hop 1 =
//      peer 1's lag): what one relay step adds. The time each entry was stored
//      is noted too: per peer "stored→applied" (the wait for its worker to
//      apply), per hop "stored→next stored" (fetch, verify, fsync of a relay
//      step), and per peer, printed on stderr, what comes before its store:
//      "acked→fetched" (the head's signing and announcement, the request, the
//      transfer, up to the store call) and "fetched→stored" (verification and
//      the peer's log fdatasync). SWARMLITE_BENCH_SYNC_HEAD=1 fsyncs the
//      replicas' head file per stored head (LogStoreOptions::sync_head), to
//      measure what it costs.
//  BM_CatchUp/peer:0|1|2  a log of SWARMLITE_BENCH_CATCHUP_ENTRIES (default
//      1,000,000) small entries, built once into SWARMLITE_BENCH_DATA (default
//      /var/tmp/swarmlite-bench) and reused. peer:0 = local baseline (a fresh
//      Replica applies a copy of the log, no network); peer:1 = a fresh
//      Replica node syncing from a primary node over the log; peer:2 = a
//      log-only node (fetch, verify, store; no SQLite) — the transfer part alone.
//  BM_RelayUpload/tree:0|1  primary + 20 log-only peers, as a star (all dial
//      the primary) or a relay tree (P → 2 → 3 each → 2 each = 20);
//      SWARMLITE_BENCH_RELAY_ENTRIES (default 3000) writes paced at 1000/s;
//      bytes from the nodes' own counters (NodeStatus::bytes_in/out, every
//      frame incl. handshakes and peer exchange), deltas over the write phase.
//  BM_Replay/rows:1|100/batch:0|1|N/cache:0|64/cut/lean  local replay of a log of entries of
//      `rows` single-row INSERTs each (SWARMLITE_BENCH_REPLAY_ROWS rows in
//      all, default 200,000; built once per run in a temp dir, fsync off) by
//      a fresh Replica with ReplicaOptions::max_batch_entries = batch (1: one
//      SQLite transaction and one root check per entry, as before batched
//      replay); cache = ReplicaOptions::statement_cache (0: every statement
//      prepared afresh; batch:1/cache:0 is replay as it was before batching).
//      batch:0 = raw SQLite inserting the same rows with one prepared
//      statement, one transaction per log entry, the fixed settings' pragmas
//      (WAL, synchronous=NORMAL as on a replica, secure_delete): the baseline.
//      Ratios (batch N / batch 1, replay / raw) are printed at the end.
//
// SWARMLITE_BENCH_BATCH_ENTRIES (default NodeOptions' 4096): NodeOptions::batch_entries
// (entries per GetEntries) of every node the benchmarks start.
//
// Each benchmark runs one iteration; figures are counters (ms, entries/s,
// bytes) and a summary line on stderr. Ratios against the baselines (local
// replay, star) are computed from rows of the same run: see docs/performance.md.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "bench/bench_util.h"
#include "core/keys.h"
#include "core/log.h"
#include "core/temp_dir_test_util.h"
#include "net/backends.h"
#include "net/node.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/replica.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

using bench::die;
using bench::env_int;
using bench::load_average;
using bench::must;
using bench::percentile;
using bench::steal_seconds;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch())
      .count();
}

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

// Polls `cond` every `step` until it holds or `limit` passes.
bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit,
              std::chrono::milliseconds step = 20ms) {
  auto end = SteadyClock::now() + limit;
  while (SteadyClock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(step);
  }
  return cond();
}

// The workload: one single-row INSERT per transaction, ~40-byte rows.
const char* kCreate = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)";
Statement insert_row(uint64_t i) {
  return Statement{"INSERT INTO t(v) VALUES (?)", {Value{fmt::format("row {:012} payload abcdefgh", i)}}};
}

net::NodeOptions node_options(std::vector<std::string> seeds, size_t max_outbound,
                              bool no_delay = true) {
  net::NodeOptions o;
  o.tcp_no_delay = no_delay;
  o.listen = "127.0.0.1:0";
  o.seeds = std::move(seeds);
  o.max_outbound = max_outbound;  // 1 with one seed: exactly the chosen topology
  o.backoff_initial = 50ms;
  o.backoff_max = 500ms;
  o.batch_entries = static_cast<uint32_t>(
      env_int("SWARMLITE_BENCH_BATCH_ENTRIES", net::NodeOptions{}.batch_entries));
  return o;
}

std::string address_of(const net::Node& n) { return fmt::format("127.0.0.1:{}", n.listen_port()); }

// A ReplicaBackend that notes when each entry was stored and applied: after
// every store_entries / apply call (worker thread), entries [done, size) get the
// current time.
// `applied_at` is sized up front and read only after the node stopped.
class TimedReplicaBackend : public net::NodeBackend {
 public:
  TimedReplicaBackend(Replica& r, size_t capacity)
      : inner_(r), applied_at(capacity, 0), stored_at(capacity, 0), fetched_at(capacity, 0) {}
  const PublicKey& log_id() const override { return inner_.log_id(); }
  const Log& log() const override { return inner_.log(); }
  std::mutex& log_mutex() const override { return inner_.log_mutex(); }
  bool is_primary() const override { return false; }
  Status store_entries(std::span<const Bytes> entries, const Head& head,
                       std::span<const Hash32> proof) override {
    const int64_t t0 = now_ns();
    const uint64_t from = inner_.log().view().size;  // entries are [log size, +n)
    for (uint64_t seq = from; seq < from + entries.size() && seq < fetched_at.size(); ++seq) {
      if (fetched_at[seq] == 0) fetched_at[seq] = t0;  // the first try, if a store is retried
    }
    Status st = inner_.store_entries(entries, head, proof);
    int64_t t = now_ns();
    uint64_t size;
    {
      std::lock_guard lock(inner_.log_mutex());
      size = inner_.log().size();
    }
    for (; stored_done_ < size && stored_done_ < stored_at.size(); ++stored_done_) stored_at[stored_done_] = t;
    return st;
  }
  Result<uint64_t> apply(uint64_t up_to) override {
    auto r = inner_.apply(up_to);
    int64_t t = now_ns();
    uint64_t size = inner_.applied_size();
    for (; done_ < size && done_ < applied_at.size(); ++done_) applied_at[done_] = t;
    return r;
  }
  uint64_t applied_size() const override { return inner_.applied_size(); }

 private:
  net::ReplicaBackend inner_;
  uint64_t done_ = 0, stored_done_ = 0;

 public:
  std::vector<int64_t> applied_at;  // steady ns per seq; 0 = not seen applied
  std::vector<int64_t> stored_at;   // steady ns per seq when store_entries returned with it in the log
  std::vector<int64_t> fetched_at;  // steady ns per seq when store_entries was called with it
};

// A fresh replica in its own temp dir, served by a node.
struct ReplicaPeer {
  TempDir dir{"repl-peer"};
  std::unique_ptr<Replica> replica;
  std::unique_ptr<TimedReplicaBackend> backend;
  std::unique_ptr<net::Node> node;
  ReplicaPeer(const PublicKey& id, size_t capacity, net::NodeOptions o) {
    fs::create_directories(dir.path);
    ReplicaOptions ro;
    // SWARMLITE_BENCH_PIN_MS: the proof pin's interval (ReplicaOptions::pin_interval),
    // to measure what pinning on the applier thread adds to lag.
    ro.pin_interval = std::chrono::milliseconds(env_int("SWARMLITE_BENCH_PIN_MS", 200));
    // SWARMLITE_BENCH_SYNC_HEAD=1: the replicas' head file fsync'ed per stored head
    // (LogStoreOptions::sync_head on, the replica default before 2026-12-02), to
    // measure what that costs; unset or 0: ReplicaOptions' default (replaced per
    // head, not fsync'ed).
    if (env_int("SWARMLITE_BENCH_SYNC_HEAD", 0) != 0) ro.log_options.sync_head = true;
    // SWARMLITE_BENCH_REPLICA_LOG_SYNC=0: the replicas' log is not fdatasync'ed
    // per stored batch: what a store whose sync overlapped the next batch could
    // reach at best (docs/performance.md "Larger catch-up batches").
    if (env_int("SWARMLITE_BENCH_REPLICA_LOG_SYNC", 1) == 0) ro.log_options.sync = false;
    // SWARMLITE_BENCH_DECODED_MB: ReplicaOptions::decoded_entries_bytes in MiB
    // (0: every entry read back from the log, as before 2026-12-03), to
    // measure what handing the store's decoded entries to replay saves.
    if (const int64_t mb = env_int("SWARMLITE_BENCH_DECODED_MB", -1); mb >= 0) {
      ro.decoded_entries_bytes = static_cast<size_t>(mb) << 20;
    }
    replica = must(Replica::open(dir.path / "replica.db", dir.path / "log", id, std::move(ro)),
                   "opening a replica");
    backend = std::make_unique<TimedReplicaBackend>(*replica, capacity);
    node = std::make_unique<net::Node>(*backend, std::move(o));
    must(node->start(), "starting a replica node");
  }
};

// A log-only peer (relay without a database).
struct LogPeer {
  TempDir dir{"log-peer"};
  std::unique_ptr<Log> log;
  std::unique_ptr<net::LogOnlyBackend> backend;
  std::unique_ptr<net::Node> node;
  LogPeer(const PublicKey& id, net::NodeOptions o, LogStoreOptions lo = {}) {
    log = must(Log::open(dir.path / "log", id, lo), "opening a peer log");
    backend = std::make_unique<net::LogOnlyBackend>(*log, false);
    node = std::make_unique<net::Node>(*backend, std::move(o));
    must(node->start(), "starting a log-only node");
  }
  uint64_t size() const {
    std::lock_guard lock(backend->log_mutex());
    return log->size();
  }
};

// A primary in a temp dir (or over an existing database) with its node.
struct PrimaryNode {
  std::unique_ptr<Primary> primary;
  std::unique_ptr<net::PrimaryBackend> backend;
  std::unique_ptr<net::Node> node;
  // background: heads signed off the write path and announced as signed
  // (PrimaryOptions::sign_in_background), as `swarmlite primary` runs.
  PrimaryNode(const fs::path& db, const SecretKey& key, PrimaryOptions po, bool no_delay = true,
              bool background = false) {
    po.sign_in_background = background;
    // SWARMLITE_BENCH_SIGN_GAP_US: PrimaryOptions::sign_gap for the bg:1 rows.
    po.sign_gap = std::chrono::microseconds(env_int("SWARMLITE_BENCH_SIGN_GAP_US", po.sign_gap.count()));
    primary = must(Primary::open(db, key, std::move(po)), "opening the primary");
    backend = std::make_unique<net::PrimaryBackend>(*primary);
    node = std::make_unique<net::Node>(*backend, node_options({}, 0, no_delay));
    primary->set_head_listener([n = node.get()](const Head&) { n->notify_new_head(); });
    must(node->start(), "starting the primary node");
  }
  ~PrimaryNode() { primary->set_head_listener({}); }  // before the node goes
  void write(uint64_t i) {
    must(primary->execute({insert_row(i)}), "execute");
    node->notify_new_head();
  }
};

// Runs `write(i)` for i in [0, count) at `rate` per second from this thread:
// each write starts at start + i/rate, or at once when behind (no catch-up
// bursts are skipped). Returns the achieved writes per second.
double paced_writes(uint64_t count, double rate, const std::function<void(uint64_t)>& write) {
  auto start = SteadyClock::now();
  auto interval = std::chrono::duration<double>(1.0 / rate);
  for (uint64_t i = 0; i < count; ++i) {
    auto due = start + std::chrono::duration_cast<SteadyClock::duration>(interval * static_cast<double>(i));
    std::this_thread::sleep_until(due);
    write(i);
  }
  return static_cast<double>(count) / seconds_since(start);
}

// ---------------------------------------------------------------------------
// 1. Lag at a steady write rate.

// One BM_Lag row's figures, kept for the A/B table main() prints at the end.
struct LagRow {
  bool chain = false;
  int rate = 0;
  bool no_delay = true;
  bool background = false;  // heads signed in the background (bg:1)
  double load_before = 0, load_after = 0;
  double steal = 0;  // CPU-seconds stolen by the host during the row (bench_util.h)
  std::vector<double> p50, p99, max;  // per peer (lag from the primary)
  std::vector<double> hop_p50, hop_p99, hop_max;  // chain only: per hop
};
std::vector<LagRow>& lag_rows() {
  static std::vector<LagRow> rows;
  return rows;
}

void BM_Lag(benchmark::State& state) {
  const bool chain = state.range(0) == 0;
  const int rate_arg = static_cast<int>(state.range(1));
  const bool no_delay = state.range(2) != 0;
  const bool background = state.range(3) != 0;
  const double rate = static_cast<double>(rate_arg);
  const auto seconds = env_int("SWARMLITE_BENCH_LAG_SECONDS", 10);
  const auto writes = static_cast<uint64_t>(rate * static_cast<double>(seconds));
  constexpr int kPeers = 3;
  for (auto _ : state) {
    KeyPair keys = KeyPair::generate();
    TempDir pdir("lag-primary");
    fs::create_directories(pdir.path);
    // Log fsync on; a head per execute, or signed in the background.
    PrimaryNode p(pdir.path / "primary.db", keys.secret, {}, no_delay, background);
    must(p.primary->execute({Statement{kCreate, {}}}), "create table");
    p.node->notify_new_head();
    const uint64_t first = p.primary->size();  // seq of the first timed write
    const size_t capacity = first + writes;

    std::vector<std::unique_ptr<ReplicaPeer>> peers;
    for (int k = 0; k < kPeers; ++k) {
      std::string seed = chain && k > 0 ? address_of(*peers.back()->node) : address_of(*p.node);
      peers.push_back(std::make_unique<ReplicaPeer>(keys.pub, capacity, node_options({seed}, 1, no_delay)));
    }
    auto all_applied = [&](uint64_t size) {
      return std::all_of(peers.begin(), peers.end(),
                         [&](auto& q) { return q->replica->size() >= size; });
    };
    if (!wait_for([&] { return all_applied(first); }, 30s)) die("peers did not sync the setup");

    std::vector<int64_t> acked(capacity, 0);
    LagRow row;
    row.chain = chain;
    row.rate = rate_arg;
    row.no_delay = no_delay;
    row.background = background;
    row.load_before = load_average();
    const double steal_before = steal_seconds();
    double achieved = paced_writes(writes, rate, [&](uint64_t i) {
      auto r = p.primary->execute({insert_row(i)});
      acked[first + i] = now_ns();
      must(std::move(r), "execute");
      p.node->notify_new_head();
    });
    if (!wait_for([&] { return all_applied(capacity); }, 120s)) die("peers did not catch up");
    for (auto& q : peers) q->node->stop();
    p.node->stop();
    row.load_after = load_average();
    row.steal = steal_seconds() - steal_before;

    state.counters["write_rate"] = achieved;
    std::string summary;
    // Lag in ms of entries [first, capacity) between two time arrays.
    auto lags = [&](const std::vector<int64_t>& later, const std::vector<int64_t>& earlier) {
      std::vector<double> ms;
      ms.reserve(writes);
      for (size_t s = first; s < capacity; ++s) ms.push_back(static_cast<double>(later[s] - earlier[s]) / 1e6);
      return ms;
    };
    for (int k = 0; k < kPeers; ++k) {
      std::vector<double> lag_ms = lags(peers[k]->backend->applied_at, acked);
      double mx = *std::max_element(lag_ms.begin(), lag_ms.end());
      double p50 = percentile(lag_ms, 0.50), p99 = percentile(lag_ms, 0.99);
      std::string tag = fmt::format("peer{}", k + 1);
      state.counters[tag + "_p50_ms"] = p50;
      state.counters[tag + "_p99_ms"] = p99;
      state.counters[tag + "_max_ms"] = mx;
      row.p50.push_back(p50);
      row.p99.push_back(p99);
      row.max.push_back(mx);
      summary += fmt::format(" | {} p50 {:.2f} p99 {:.2f} max {:.2f} ms", tag, p50, p99, mx);
      // Where peer k's lag goes: waiting for its worker to apply what it stored.
      std::vector<double> wait_ms = lags(peers[k]->backend->applied_at, peers[k]->backend->stored_at);
      double wmx = *std::max_element(wait_ms.begin(), wait_ms.end());
      double w50 = percentile(wait_ms, 0.50), w99 = percentile(wait_ms, 0.99);
      state.counters[tag + "_store_to_apply_p99_ms"] = w99;
      // And before it: the head's signing, the announcement, the fetch, the
      // verification and the peer's log fdatasync (acked → stored).
      std::vector<double> in_ms = lags(peers[k]->backend->stored_at, acked);
      double i50 = percentile(in_ms, 0.50), i99 = percentile(in_ms, 0.99);
      std::vector<double> f_ms = lags(peers[k]->backend->fetched_at, acked);
      std::vector<double> s_ms = lags(peers[k]->backend->stored_at, peers[k]->backend->fetched_at);
      summary += fmt::format(
          " [acked→fetched p50 {:.2f} p99 {:.2f} max {:.2f}; fetched→stored p50 {:.2f} p99 {:.2f} "
          "max {:.2f}]",
          percentile(f_ms, 0.5), percentile(f_ms, 0.99), percentile(f_ms, 1.0),
          percentile(s_ms, 0.5), percentile(s_ms, 0.99), percentile(s_ms, 1.0));
      state.counters[tag + "_ack_to_store_p99_ms"] = i99;
      summary += fmt::format(
          " (acked→stored p50 {:.2f} p99 {:.2f}; stored→applied p50 {:.2f} p99 {:.2f} max {:.2f})",
          i50, i99, w50, w99, wmx);
    }
    for (int k = 1; chain && k < kPeers; ++k) {
      std::vector<double> hop_ms = lags(peers[k]->backend->applied_at, peers[k - 1]->backend->applied_at);
      double mx = *std::max_element(hop_ms.begin(), hop_ms.end());
      double p50 = percentile(hop_ms, 0.50), p99 = percentile(hop_ms, 0.99);
      std::string tag = fmt::format("hop{}", k + 1);
      state.counters[tag + "_p50_ms"] = p50;
      state.counters[tag + "_p99_ms"] = p99;
      state.counters[tag + "_max_ms"] = mx;
      row.hop_p50.push_back(p50);
      row.hop_p99.push_back(p99);
      row.hop_max.push_back(mx);
      summary += fmt::format(" | {} alone p50 {:.2f} p99 {:.2f} max {:.2f} ms", tag, p50, p99, mx);
      // The relay step up to the store: stored at k − stored at k−1 (fetch, verify, fsync).
      std::vector<double> fetch_ms = lags(peers[k]->backend->stored_at, peers[k - 1]->backend->stored_at);
      double fmx = *std::max_element(fetch_ms.begin(), fetch_ms.end());
      double f50 = percentile(fetch_ms, 0.50), f99 = percentile(fetch_ms, 0.99);
      state.counters[tag + "_store_to_store_p99_ms"] = f99;
      summary += fmt::format(" (stored→next stored p50 {:.2f} p99 {:.2f} max {:.2f})", f50, f99, fmx);
    }
    fmt::print(stderr, "lag {} nodelay {} bg {}: {} writes at {:.0f}/s (asked {:.0f}/s), load {:.2f}→{:.2f}, steal {:.1f} s{}\n",
               chain ? "chain" : "star", no_delay ? "on" : "off", background ? 1 : 0, writes, achieved, rate, row.load_before,
               row.load_after, row.steal, summary);
    lag_rows().push_back(std::move(row));
  }
}

// The A/B table: for each topology and rate run both ways, TCP_NODELAY off
// divided by on, per peer (p50 and p99 of the lag from the primary).
void print_lag_ratios() {
  const auto& rows = lag_rows();
  for (const LagRow& on : rows) {
    if (!on.no_delay) continue;
    for (const LagRow& off : rows) {
      if (off.no_delay || off.chain != on.chain || off.rate != on.rate ||
          off.background != on.background)
        continue;
      std::string line = fmt::format("lag A/B {} {}/s bg {}, nodelay off/on:", on.chain ? "chain" : "star",
                                     on.rate, on.background ? 1 : 0);
      for (size_t k = 0; k < on.p50.size() && k < off.p50.size(); ++k) {
        line += fmt::format(" | peer{} p50 {:.2f}/{:.2f} = {:.1f}x, p99 {:.2f}/{:.2f} = {:.1f}x", k + 1, off.p50[k],
                            on.p50[k], off.p50[k] / std::max(on.p50[k], 1e-3), off.p99[k], on.p99[k],
                            off.p99[k] / std::max(on.p99[k], 1e-3));
      }
      fmt::print(stderr, "{}\n", line);
    }
  }
}
BENCHMARK(BM_Lag)
    ->ArgNames({"star", "rate", "nodelay", "bg"})
    ->ArgsProduct({{1, 0}, {100, 1000}, {1, 0}, {0, 1}})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// 2. Catch-up of a new peer on a large log.

struct CachedLog {
  fs::path dir, db, log_dir;
  SecretKey key;
  PublicKey id;
  uint64_t size = 0;
};

// Builds (once; reused while its "complete" marker exists) a primary whose log
// holds exactly `n` entries: genesis, CREATE TABLE, then single-row inserts.
// Log fsync off and a head per 10,000 entries: building is CPU-bound.
const CachedLog& cached_log(uint64_t n) {
  static std::optional<CachedLog> cached;
  if (cached) return *cached;
  CachedLog c;
  fs::path root = std::getenv("SWARMLITE_BENCH_DATA") ? fs::path(std::getenv("SWARMLITE_BENCH_DATA"))
                                                       : fs::path("/var/tmp/swarmlite-bench");
  c.dir = root / fmt::format("catchup-{}", n);
  c.db = c.dir / "primary.db";
  c.log_dir = c.dir / "primary.db.log";
  fs::path marker = c.dir / "complete";
  if (!fs::exists(marker)) {
    fmt::print(stderr, "building a {}-entry log in {} (once; reused by later runs)\n", n, c.dir.string());
    fs::remove_all(c.dir);
    fs::create_directories(c.dir);
    must(write_key_files(c.dir / "keys", KeyPair::generate()), "writing keys");
    auto start = SteadyClock::now();
    PrimaryOptions po;
    po.log_options.sync = false;
    po.sign_every_entries = 10000;
    auto p = must(Primary::open(c.db, must(load_secret_key(c.dir / "keys" / kSecretKeyFile), "key"),
                                std::move(po)),
                  "opening the build primary");
    must(p->execute({Statement{kCreate, {}}}), "create table");
    for (uint64_t i = 0; p->size() < n; ++i) {
      must(p->execute({insert_row(i)}), "execute");
      if (p->size() % 100000 == 0) {
        fmt::print(stderr, "  {} entries, {:.0f} s\n", p->size(), seconds_since(start));
      }
    }
    must(p->sign_head(), "signing the final head");
    must(p->close(), "closing the build primary");
    p.reset();
    std::ofstream(marker) << fmt::format("{} entries built in {:.1f} s\n", n, seconds_since(start));
    fmt::print(stderr, "built in {:.1f} s\n", seconds_since(start));
  }
  c.key = must(load_secret_key(c.dir / "keys" / kSecretKeyFile), "loading the cached key");
  c.id = c.key.public_key();
  c.size = n;
  cached = std::move(c);
  return *cached;
}

void BM_CatchUp(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));  // 0 local, 1 replica node, 2 log-only node
  const auto n = static_cast<uint64_t>(env_int("SWARMLITE_BENCH_CATCHUP_ENTRIES", 1000000));
  const CachedLog& c = cached_log(n);
  for (auto _ : state) {
    double load_before = load_average();
    const double steal_before = steal_seconds();
    TempDir tmp("catchup");
    fs::create_directories(tmp.path);
    double secs = 0, stored_secs = 0, open_secs = 0;
    uint64_t bytes = 0, handed = 0;
    if (mode == 0) {
      // Local replay: the same log, copied (not timed), applied by a fresh replica.
      fs::copy(c.log_dir, tmp.path / "log", fs::copy_options::recursive);
      auto t0 = SteadyClock::now();
      auto r = must(Replica::open(tmp.path / "replica.db", tmp.path / "log", c.id), "opening the replica");
      open_secs = seconds_since(t0);
      auto t1 = SteadyClock::now();
      uint64_t applied = must(r->apply_available(), "replaying");
      secs = seconds_since(t1);
      if (applied != n || r->size() != n) die(fmt::format("local replay applied {} of {}", applied, n));
    } else {
      PrimaryNode p(c.db, c.key, {});
      if (p.primary->size() != n) die("cached primary has the wrong size");
      auto t0 = SteadyClock::now();
      uint64_t stored_at_ns = 0;
      std::function<uint64_t()> stored, applied;
      std::unique_ptr<ReplicaPeer> rp;
      std::unique_ptr<LogPeer> lp;
      if (mode == 1) {
        rp = std::make_unique<ReplicaPeer>(c.id, 0, node_options({address_of(*p.node)}, 1));
        stored = [&] {
          std::lock_guard lock(rp->replica->log_mutex());
          return rp->replica->log().size();
        };
        applied = [&] { return rp->replica->size(); };
      } else {
        lp = std::make_unique<LogPeer>(c.id, node_options({address_of(*p.node)}, 1));
        stored = [&] { return lp->size(); };
        applied = stored;
      }
      bool ok = wait_for(
          [&] {
            if (!stored_at_ns && stored() >= n) stored_at_ns = static_cast<uint64_t>(now_ns());
            return applied() >= n;
          },
          std::chrono::minutes(30), 10ms);
      secs = seconds_since(t0);
      stored_secs = stored_at_ns ? static_cast<double>(stored_at_ns) / 1e9 -
                                       std::chrono::duration<double>(t0.time_since_epoch()).count()
                                 : secs;
      if (!ok) die(fmt::format("the peer did not catch up: stored {}, applied {}", stored(), applied()));
      net::NodeStatus st = (mode == 1 ? rp->node : lp->node)->status();
      bytes = st.bytes_in;
      if (mode == 1) handed = rp->replica->replay_stats().handed_entries;
      (mode == 1 ? rp->node : lp->node)->stop();
      p.node->stop();
    }
    state.SetIterationTime(secs);
    state.counters["entries"] = static_cast<double>(n);
    state.counters["entries_per_s"] = static_cast<double>(n) / secs;
    if (mode == 0) state.counters["replica_open_s"] = open_secs;
    if (mode != 0) {
      state.counters["stored_per_s"] = static_cast<double>(n) / stored_secs;
      state.counters["bytes_in"] = static_cast<double>(bytes);
    }
    if (mode == 1) state.counters["handed_entries"] = static_cast<double>(handed);
    fmt::print(stderr,
               "catch-up {}: {} entries in {:.1f} s = {:.0f} entries/s{}, load {:.2f}→{:.2f}, steal {:.1f} s\n",
               mode == 0 ? "local replay" : mode == 1 ? "replica node" : "log-only node", n, secs,
               static_cast<double>(n) / secs,
               mode == 0 ? fmt::format(" (replica open {:.1f} s)", open_secs)
                         : fmt::format(" (log complete after {:.1f} s, {:.1f} MB in, {} entries "
                                       "handed over decoded)",
                                       stored_secs, static_cast<double>(bytes) / 1e6, handed),
               load_before, load_average(), steal_seconds() - steal_before);
  }
}
// ---------------------------------------------------------------------------
// 2b. Local replay: batched vs one entry per transaction vs raw SQLite.

struct ReplayLog {
  std::unique_ptr<TempDir> dir;
  KeyPair keys = KeyPair::generate();
  fs::path log_dir;
  uint64_t entries = 0;
};

// Built once per `rows`: genesis, CREATE TABLE, then entries of `rows` inserts.
const ReplayLog& replay_log(int rows) {
  static std::map<int, ReplayLog> logs;
  auto it = logs.find(rows);
  if (it != logs.end()) return it->second;
  ReplayLog l;
  l.dir = std::make_unique<TempDir>("replay-log");
  fs::create_directories(l.dir->path);
  PrimaryOptions po;
  po.log_options.sync = false;
  po.sign_every_entries = 10000;
  auto p = must(Primary::open(l.dir->path / "p.db", l.keys.secret, std::move(po)), "opening the primary");
  must(p->execute({Statement{kCreate, {}}}), "create table");
  const auto total = static_cast<uint64_t>(env_int("SWARMLITE_BENCH_REPLAY_ROWS", 200000));
  uint64_t next = 0;
  while (next < total) {
    std::vector<Statement> txn;
    for (int i = 0; i < rows; ++i) txn.push_back(insert_row(next++));
    must(p->execute(txn), "execute");
  }
  must(p->sign_head(), "signing the final head");
  l.log_dir = p->log_dir();
  l.entries = p->size();
  must(p->close(), "closing the primary");
  return logs.emplace(rows, std::move(l)).first->second;
}

// rows -> "raw SQLite" | "batch:B/cache:C" -> rows/s of this run, for the ratios.
std::map<int, std::map<std::string, double>> g_replay_rows_per_s;

double raw_insert(const fs::path& db_path, int rows, uint64_t total) {
  sqlite3* db = nullptr;
  if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK) die("raw: open");
  auto exec = [&](const std::string& q) {
    if (sqlite3_exec(db, q.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      die(fmt::format("raw: {}: {}", q, sqlite3_errmsg(db)));
    }
  };
  for (const char* p : {"PRAGMA page_size=4096", "PRAGMA auto_vacuum=NONE", "PRAGMA journal_mode=WAL",
                        "PRAGMA synchronous=NORMAL", "PRAGMA secure_delete=ON", "PRAGMA foreign_keys=ON",
                        "PRAGMA cache_size=-16384", "PRAGMA temp_store=MEMORY", "PRAGMA mmap_size=0"}) {
    exec(p);
  }
  exec(kCreate);
  sqlite3_stmt* ins = nullptr;
  const Statement proto = insert_row(0);
  if (sqlite3_prepare_v2(db, proto.sql.c_str(), -1, &ins, nullptr) != SQLITE_OK) die("raw: prepare");
  auto t0 = SteadyClock::now();
  uint64_t next = 0;
  while (next < total) {
    exec("BEGIN IMMEDIATE");
    for (int i = 0; i < rows; ++i) {
      Statement st = insert_row(next++);  // the same values the log holds, built the same way
      const auto& v = std::get<std::string>(st.params[0].v);
      sqlite3_bind_text(ins, 1, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
      if (sqlite3_step(ins) != SQLITE_DONE) die("raw: insert");
      sqlite3_reset(ins);
    }
    exec("COMMIT");
  }
  double secs = seconds_since(t0);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  return secs;
}

void BM_Replay(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  const int cache = static_cast<int>(state.range(2));
  const bool cut = state.range(3) != 0;  // ReplicaOptions::cut_slow_batches
  const bool lean = state.range(4) != 0;  // ReplicaOptions::lean_batches
  const std::string name = batch == 0 ? std::string("raw SQLite")
                                      : fmt::format("batch:{}/cache:{}{}{}", batch, cache, cut ? "" : "/cut:off",
                                                    lean ? "" : "/lean:off");
  const ReplayLog& l = replay_log(rows);
  const uint64_t total_rows = (l.entries - 2) * static_cast<uint64_t>(rows);
  for (auto _ : state) {
    double load_before = load_average();
    TempDir tmp("replay");
    fs::create_directories(tmp.path);
    double secs = 0;
    ReplayStats stats;
    if (batch == 0) {
      secs = raw_insert(tmp.path / "raw.db", rows, total_rows);
    } else {
      ReplicaOptions o;
      o.log_options.sync = false;  // replay does not write the log
      o.max_batch_entries = static_cast<uint64_t>(batch);
      o.statement_cache = static_cast<size_t>(cache);
      o.cut_slow_batches = cut;
      o.lean_batches = lean;
      auto r = must(Replica::open(tmp.path / "replica.db", l.log_dir, l.keys.pub, o), "opening the replica");
      auto t0 = SteadyClock::now();
      uint64_t applied = must(r->apply_available(), "replaying");
      secs = seconds_since(t0);
      if (applied != l.entries) die(fmt::format("replay applied {} of {}", applied, l.entries));
      stats = r->replay_stats();
    }
    state.SetIterationTime(secs);
    const double rows_per_s = static_cast<double>(total_rows) / secs;
    g_replay_rows_per_s[rows][name] = rows_per_s;
    state.counters["rows_per_s"] = rows_per_s;
    state.counters["entries_per_s"] = rows_per_s / rows;
    state.counters["fallbacks"] = static_cast<double>(stats.fallbacks);
    fmt::print(stderr,
               "replay rows:{} {}: {} rows in {:.2f} s = {:.0f} rows/s = {:.0f} entries/s ({} batches, "
               "{} cut, {} fallbacks, {} lean, {} lean misses), load {:.2f}→{:.2f}\n",
               rows, name, total_rows, secs, rows_per_s, rows_per_s / rows, stats.batches, stats.cut_batches, stats.fallbacks,
               stats.lean_batches, stats.lean_misses, load_before, load_average());
  }
}
// Replay of a full-text-search workload: each entry adds one ~25-word document to
// an FTS5 table. Measures what BatchCostWatch (replica.h) saves where a long
// batch transaction makes every entry slower: batch:1 (an entry per
// transaction), batch:1024 with and without cutting slow batches.
const ReplayLog& fts_log() {
  static std::optional<ReplayLog> cached;
  if (cached) return *cached;
  ReplayLog l;
  l.dir = std::make_unique<TempDir>("replay-fts-log");
  fs::create_directories(l.dir->path);
  PrimaryOptions po;
  po.log_options.sync = false;
  po.sign_every_entries = 10000;
  auto p = must(Primary::open(l.dir->path / "p.db", l.keys.secret, std::move(po)), "opening the primary");
  must(p->execute({Statement{"CREATE VIRTUAL TABLE docs USING fts5(title, body)", {}}}), "create fts5");
  const auto total = static_cast<uint64_t>(env_int("SWARMLITE_BENCH_REPLAY_FTS_DOCS", 20000));
  static const char* kWords[] = {"replica", "signed", "head", "merkle", "page",   "proof",  "sqlite",
                                 "peer",    "log",    "entry", "state", "root",   "verify", "client",
                                 "write",   "read",   "batch", "fsync", "commit", "index",  "query"};
  uint64_t x = 88172645463325252ull;  // xorshift: the same documents every run
  for (uint64_t i = 0; i < total; ++i) {
    std::string body;
    for (int w = 0; w < 25; ++w) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      body += kWords[x % std::size(kWords)];
      body += fmt::format("{} ", x % 997);
    }
    must(p->execute({Statement{"INSERT INTO docs(title, body) VALUES (?, ?)",
                               {Value{fmt::format("doc {}", i)}, Value{std::move(body)}}}}),
         "insert doc");
  }
  must(p->sign_head(), "signing the final head");
  l.log_dir = p->log_dir();
  l.entries = p->size();
  must(p->close(), "closing the primary");
  cached = std::move(l);
  return *cached;
}

void BM_ReplayFts(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const bool cut = state.range(1) != 0;
  const ReplayLog& l = fts_log();
  for (auto _ : state) {
    double load_before = load_average();
    TempDir tmp("replay-fts");
    fs::create_directories(tmp.path);
    ReplicaOptions o;
    o.log_options.sync = false;
    o.max_batch_entries = static_cast<uint64_t>(batch);
    o.cut_slow_batches = cut;
    auto r = must(Replica::open(tmp.path / "replica.db", l.log_dir, l.keys.pub, o), "opening the replica");
    auto t0 = SteadyClock::now();
    uint64_t applied = must(r->apply_available(), "replaying");
    const double secs = seconds_since(t0);
    if (applied != l.entries) die(fmt::format("replay applied {} of {}", applied, l.entries));
    const ReplayStats stats = r->replay_stats();
    state.SetIterationTime(secs);
    state.counters["entries_per_s"] = static_cast<double>(applied) / secs;
    state.counters["cut_batches"] = static_cast<double>(stats.cut_batches);
    fmt::print(stderr,
               "replay fts5 batch:{} cut:{}: {} entries in {:.2f} s = {:.0f} entries/s ({} batches, {} "
               "cut, {} fallbacks), load {:.2f}→{:.2f}\n",
               batch, cut ? "on" : "off", applied, secs, static_cast<double>(applied) / secs, stats.batches,
               stats.cut_batches, stats.fallbacks, load_before, load_average());
  }
}
BENCHMARK(BM_ReplayFts)
    ->ArgNames({"batch", "cut"})
    ->Args({1, 1})
    ->Args({1024, 0})
    ->Args({1024, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_Replay)
    ->ArgNames({"rows", "batch", "cache", "cut", "lean"})
    ->Args({1, 0, 0, 1, 1})
    ->Args({1, 1, 0, 1, 1})
    ->Args({1, 1, 64, 1, 1})
    ->Args({1, 1024, 0, 1, 1})
    ->Args({1, 1024, 64, 1, 0})
    ->Args({1, 1024, 64, 1, 1})
    ->Args({1, 1024, 64, 0, 1})
    ->Args({100, 0, 0, 1, 1})
    ->Args({100, 1, 0, 1, 1})
    ->Args({100, 1, 64, 1, 1})
    ->Args({100, 1024, 0, 1, 1})
    ->Args({100, 1024, 64, 1, 0})
    ->Args({100, 1024, 64, 1, 1})
    ->Args({100, 1024, 64, 0, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Each replay row against the one as before (batch:1/cache:0) and raw SQLite.
void print_replay_ratios() {
  for (const auto& [rows, by_name] : g_replay_rows_per_s) {
    auto raw = by_name.find("raw SQLite");
    auto before = by_name.find("batch:1/cache:0");
    for (const auto& [name, rate] : by_name) {
      if (name == "raw SQLite") continue;
      fmt::print(stderr, "replay rows:{} {}: {:.2f} × batch:1/cache:0{}\n", rows, name,
                 before != by_name.end() ? rate / before->second : 0.0,
                 raw != by_name.end() ? fmt::format(", {:.2f} × raw SQLite", rate / raw->second)
                                      : std::string());
    }
  }
}

BENCHMARK(BM_CatchUp)
    ->ArgName("peer")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// 3. Primary upload with 20 peers: relay tree vs star.

void BM_RelayUpload(benchmark::State& state) {
  const bool tree = state.range(0) != 0;
  const auto writes = static_cast<uint64_t>(env_int("SWARMLITE_BENCH_RELAY_ENTRIES", 3000));
  constexpr size_t kPeers = 20;
  for (auto _ : state) {
    KeyPair keys = KeyPair::generate();
    TempDir pdir("relay-primary");
    fs::create_directories(pdir.path);
    PrimaryOptions po;
    po.log_options.sync = false;  // bytes do not depend on fsync; keeps 21 nodes on 2 cores busy less
    PrimaryNode p(pdir.path / "primary.db", keys.secret, std::move(po));
    must(p.primary->execute({Statement{kCreate, {}}}), "create table");
    p.node->notify_new_head();

    // Tree: level sizes 2, 6, 12; node j of a level hangs under parent j / fanout.
    std::vector<std::unique_ptr<LogPeer>> peers;
    LogStoreOptions lo;
    lo.sync = false;
    const std::vector<size_t> fanout = {2, 3, 2};
    size_t prev_start = 0, prev_count = 0;
    for (size_t level = 0; tree && level < fanout.size(); ++level) {
      size_t count = (level == 0 ? 1 : prev_count) * fanout[level];
      size_t start = peers.size();
      for (size_t j = 0; j < count; ++j) {
        std::string seed = level == 0 ? address_of(*p.node)
                                      : address_of(*peers[prev_start + j / fanout[level]]->node);
        peers.push_back(std::make_unique<LogPeer>(keys.pub, node_options({seed}, 1), lo));
      }
      prev_start = start;
      prev_count = count;
    }
    while (!tree && peers.size() < kPeers) {
      peers.push_back(std::make_unique<LogPeer>(keys.pub, node_options({address_of(*p.node)}, 1), lo));
    }
    if (peers.size() != kPeers) die("topology does not have 20 peers");
    auto all_at = [&](uint64_t size) {
      return std::all_of(peers.begin(), peers.end(), [&](auto& q) { return q->size() >= size; });
    };
    if (!wait_for([&] { return all_at(p.primary->size()); }, 60s)) die("peers did not sync the setup");

    auto sum_in = [&] {
      uint64_t s = 0;
      for (auto& q : peers) s += q->node->status().bytes_in;
      return s;
    };
    uint64_t out0 = p.node->status().bytes_out, in0 = sum_in();
    double achieved = paced_writes(writes, 1000, [&](uint64_t i) { p.write(i); });
    if (!wait_for([&] { return all_at(p.primary->size()); }, 120s)) die("peers did not catch up");
    auto pst = p.node->status();
    uint64_t out = pst.bytes_out - out0, in = sum_in() - in0;
    uint64_t max_peer_out = 0;
    for (auto& q : peers) max_peer_out = std::max(max_peer_out, q->node->status().bytes_out);
    for (auto& q : peers) q->node->stop();
    p.node->stop();

    state.counters["primary_out_bytes"] = static_cast<double>(out);
    state.counters["peers_in_bytes"] = static_cast<double>(in);
    state.counters["out_per_in"] = static_cast<double>(out) / static_cast<double>(in);
    state.counters["primary_peers"] = static_cast<double>(pst.peers.size());
    state.counters["max_peer_out_bytes"] = static_cast<double>(max_peer_out);
    state.counters["write_rate"] = achieved;
    fmt::print(stderr,
               "relay {}: {} writes; primary out {:.2f} MB to {} direct peers; 20 peers in {:.2f} MB "
               "(out/in {:.3f}); busiest peer out {:.2f} MB (since start)\n",
               tree ? "tree 2/3/2" : "star", writes, static_cast<double>(out) / 1e6,
               pst.peers.size(), static_cast<double>(in) / 1e6,
               static_cast<double>(out) / static_cast<double>(in),
               static_cast<double>(max_peer_out) / 1e6);
  }
}
BENCHMARK(BM_RelayUpload)->ArgName("tree")->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace swarmlite

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // nodes log every connect at info
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fmt::print(stderr, "machine: {} cores, load average {:.2f}\n", std::thread::hardware_concurrency(),
             swarmlite::load_average());
  benchmark::RunSpecifiedBenchmarks();
  swarmlite::print_lag_ratios();
  swarmlite::print_replay_ratios();
  benchmark::Shutdown();
  return 0;
}
