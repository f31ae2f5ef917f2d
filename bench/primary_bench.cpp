// Primary write throughput against raw SQLite at equal durability (one writer,
// and group commit with concurrent writers), replica replay rate, and the
// state tree's cost per transaction (issues 3 and 13).
//
// Each BM_Pair iteration runs a block of transactions on raw SQLite and then
// the same through swarmlite::Primary, on the same disk, timing each alone:
// the machine is shared and its fsync latency drifts, so alternating is what
// makes the ratio fair. Durable rows alternate blocks of 100, not single
// transactions: alone, each side's cache flush carries only its own writes
// (SWARMLITE_BENCH_PAIR_BLOCK). Counters: raw_txn/s, primary_txn/s, ratio =
// primary/raw.
//   durable=1: raw synchronous=FULL (one WAL fsync per commit) vs Primary with
//              the log's fsync on (its durability point; SQLite runs NORMAL).
//   durable=0: raw synchronous=NORMAL vs Primary with the log's fsync off: the
//              CPU overhead (determinism hooks, state tree, entry encode, log
//              write, signing).
//   rows: INSERTs per transaction (1 or 100); sign: PrimaryOptions::
//   sign_every_entries (1 = a signed head per execute, 100 = group signing).
//   legacy=1: the log store's cost before the lazy index (index fdatasync on
//   every append, head file fsync'ed + directory fsync), for before/after.
//   cache: PrimaryOptions::statement_cache (64 = the default; 0 = every
//   statement prepared afresh, as before the primary kept statements).
// Raw SQLite gets the DeterministicDb settings (determinism.cpp kPragmas) and
// reuses one prepared statement, its best case.
//
// Files live under /var/tmp (ext4 on the VM's disk, not tmpfs), or $TMPDIR.
#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "core/keys.h"
#include "core/temp_dir_test_util.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/replica.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "primary_bench: {}\n", what);
  std::abort();
}
template <typename T>
T ok_or_die(Result<T> r, std::string_view what) {
  if (!r.ok()) die(fmt::format("{}: {}", what, r.error().to_string()));
  return std::move(r).value();
}

constexpr const char* kCreate = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)";
constexpr const char* kInsert = "INSERT INTO t(v) VALUES (?)";
std::string payload(uint64_t i) { return fmt::format("value {:024}", i); }  // 30 bytes

// Raw SQLite with DeterministicDb's settings and the given synchronous mode.
class RawDb {
 public:
  RawDb(const fs::path& path, const char* synchronous) : wal_path_(path.string() + "-wal") {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) die("sqlite3_open");
    for (const std::string& p : std::vector<std::string>{
             "PRAGMA page_size=4096", "PRAGMA auto_vacuum=NONE", "PRAGMA journal_mode=WAL",
          fmt::format("PRAGMA synchronous={}", synchronous), "PRAGMA secure_delete=ON",
          "PRAGMA foreign_keys=ON", "PRAGMA cache_size=-16384", "PRAGMA temp_store=MEMORY",
          "PRAGMA mmap_size=0", "PRAGMA wal_autocheckpoint=1000"}) {
      exec(p.c_str());
    }
    exec(kCreate);
    if (sqlite3_prepare_v2(db_, kInsert, -1, &insert_, nullptr) != SQLITE_OK) die("prepare");
  }
  ~RawDb() {
    sqlite3_finalize(insert_);
    sqlite3_close(db_);
  }
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      die(fmt::format("{}: {}", sql, err ? err : "?"));
    }
  }
  void transaction(int rows) {
    exec("BEGIN IMMEDIATE");
    for (int i = 0; i < rows; ++i) {
      std::string v = payload(next_++);
      sqlite3_bind_text(insert_, 1, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
      if (sqlite3_step(insert_) != SQLITE_DONE) die("insert");
      sqlite3_reset(insert_);
    }
    exec("COMMIT");
  }
  sqlite3* handle() const { return db_; }
  // Commits 1-row transactions until the -wal file has stopped growing (SQLite
  // checkpointed and writes from its start again), so the measured commits
  // overwrite it in place, as a long-running writer's do. While it grows, each
  // FULL commit's fdatasync also writes the file's block map and inode: three
  // device requests instead of one (docs/performance.md "Where a 16-writer
  // group's time goes"), a baseline slower than a steady writer.
  void fill_wal() {
    uintmax_t last = 0;
    int unchanged = 0;
    for (int i = 0; i < 5000 && unchanged < 8; ++i) {
      transaction(1);
      const uintmax_t size = fs::file_size(wal_path_);
      unchanged = size == last ? unchanged + 1 : 0;
      last = size;
    }
  }

 private:
  fs::path wal_path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  uint64_t next_ = 0;
};

std::vector<Statement> insert_txn(int rows, uint64_t& next) {
  std::vector<Statement> txn;
  txn.reserve(static_cast<size_t>(rows));
  for (int i = 0; i < rows; ++i) txn.push_back(Statement{kInsert, {Value{payload(next++)}}});
  return txn;
}

PrimaryOptions primary_options(bool durable, uint64_t sign_every, bool legacy = false,
                               size_t statement_cache = PrimaryOptions{}.statement_cache,
                               bool background = false) {
  PrimaryOptions o;
  o.log_options.sync = durable;
  o.sign_every_entries = sign_every;
  o.sign_in_background = background;
  // SWARMLITE_BENCH_SIGN_GAP_US: PrimaryOptions::sign_gap for the bg:1 rows.
  o.sign_gap = std::chrono::microseconds(
      bench::env_int("SWARMLITE_BENCH_SIGN_GAP_US", o.sign_gap.count()));
  o.statement_cache = statement_cache;
  // SWARMLITE_BENCH_PREALLOC: LogStoreOptions::preallocate_bytes (0 = off), for
  // an A/B of the log segment's preallocation in one binary.
  o.log_options.preallocate_bytes = static_cast<uint64_t>(bench::env_int(
      "SWARMLITE_BENCH_PREALLOC", static_cast<int64_t>(o.log_options.preallocate_bytes)));
  // SWARMLITE_BENCH_INDEX_WRITE_ROWS: LogStoreOptions::index_write_rows (1 = an
  // index write per append), for an A/B in one binary.
  o.log_options.index_write_rows = static_cast<uint64_t>(bench::env_int(
      "SWARMLITE_BENCH_INDEX_WRITE_ROWS", static_cast<int64_t>(o.log_options.index_write_rows)));
  if (legacy) {
    o.log_options.index_sync_rows = 1;
    o.log_options.sync_head = true;
  }
  return o;
}

std::unique_ptr<Primary> open_primary(const fs::path& db, const SecretKey& key, PrimaryOptions o) {
  auto p = ok_or_die(Primary::open(db, key, std::move(o)), "Primary::open");
  ok_or_die(p->execute(std::vector<Statement>{Statement{kCreate, {}}}), "create table");
  return p;
}

// The durable primary's single-insert rate, for the replay comparison.
double g_primary_durable_txn_per_s = 0;

double cpu_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Args: durable (0/1), rows per transaction, sign_every_entries, legacy (0/1),
// statement cache capacity, bg (0/1: PrimaryOptions::sign_in_background, as
// `swarmlite primary` runs; sign is then unused).
// primary_cpu_us/txn: the process's CPU time over the loop (every thread: the
// background signer's too) less this thread's CPU in the raw SQLite part and
// in building the input, per transaction.
void BM_Pair(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  const bool durable = state.range(0) != 0;
  const int rows = static_cast<int>(state.range(1));
  const uint64_t sign_every = static_cast<uint64_t>(state.range(2));
  const bool legacy = state.range(3) != 0;
  const size_t cache = static_cast<size_t>(state.range(4));
  const bool background = state.range(5) != 0;
  TempDir dir("primary-bench");
  fs::create_directories(dir.path);
  RawDb raw(dir.path / "raw.db", durable ? "FULL" : "NORMAL");
  KeyPair key = KeyPair::generate();
  auto primary = open_primary(dir.path / "p.db", key.secret,
                              primary_options(durable, sign_every, legacy, cache, background));
  uint64_t next = 0;
  // SWARMLITE_BENCH_PREFILL_TXNS=n: both start from n 100-row transactions,
  // a deeper B-tree and state tree (docs/performance.md "Batched state tree
  // updates"); not timed.
  if (const char* prefill = std::getenv("SWARMLITE_BENCH_PREFILL_TXNS")) {
    for (long i = 0, n = std::strtol(prefill, nullptr, 10); i < n; ++i) {
      raw.transaction(100);
      ok_or_die(primary->execute(insert_txn(100, next)), "prefill");
    }
  }
  // Warm both (first pages, WAL file creation).
  for (int i = 0; i < 20; ++i) {
    raw.transaction(rows);
    ok_or_die(primary->execute(insert_txn(rows, next)), "execute");
  }
  Clock::duration raw_time{}, primary_time{};
  std::vector<double> primary_us;  // each execute(), for the tail (checkpoints)
  double not_primary_cpu = 0;  // this thread's CPU outside execute()
  const double process_cpu0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  // Each iteration runs `block` raw transactions, then `block` on the
  // primary. Durable rows run 100 of each: one of each, alternated, made
  // every raw fdatasync's cache flush carry the primary's writes too, which
  // slowed the raw baseline by up to a fifth and flattered the ratio
  // (docs/performance.md "BM_Pair's interleaving and the durable rows").
  // SWARMLITE_BENCH_PAIR_BLOCK=n sets it (1: the old alternation).
  const int block = static_cast<int>(
      std::max<int64_t>(1, bench::env_int("SWARMLITE_BENCH_PAIR_BLOCK", durable ? 100 : 1)));
  std::vector<std::vector<Statement>> txns(static_cast<size_t>(block));
  bool failed = false;
  for (auto _ : state) {
    const double c0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
    auto t0 = Clock::now();
    for (int b = 0; b < block; ++b) raw.transaction(rows);
    auto t1 = Clock::now();
    // Building the input is not timed.
    for (auto& txn : txns) txn = insert_txn(rows, next);
    auto t2 = Clock::now();
    not_primary_cpu += cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
    for (const auto& txn : txns) {
      const auto s0 = Clock::now();
      auto r = primary->execute(txn);
      if (!r.ok()) {
        state.SkipWithError(r.error().to_string().c_str());
        failed = true;
        break;
      }
      primary_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s0).count());
    }
    auto t3 = Clock::now();
    if (failed) break;
    raw_time += t1 - t0;
    primary_time += t3 - t2;
  }
  const double process_cpu = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - process_cpu0;
  const double n = static_cast<double>(state.iterations()) * block;
  state.counters["primary_cpu_us/txn"] = (process_cpu - not_primary_cpu) / n * 1e6;
  const double raw_rate = n / std::chrono::duration<double>(raw_time).count();
  const double primary_rate = n / std::chrono::duration<double>(primary_time).count();
  state.counters["raw_txn/s"] = raw_rate;
  state.counters["primary_txn/s"] = primary_rate;
  state.counters["ratio"] = primary_rate / raw_rate;
  state.counters["primary_us/txn"] = 1e6 / primary_rate;
  state.counters["raw_us/txn"] = 1e6 / raw_rate;
  if (!primary_us.empty()) {
    state.counters["primary_p99_us"] = bench::percentile(primary_us, 0.99);
    state.counters["primary_p999_us"] = bench::percentile(primary_us, 0.999);
    state.counters["primary_max_us"] = bench::percentile(primary_us, 1.0);
  }
  if (durable && rows == 1 && sign_every == 1 && !legacy && cache > 0 && !background) {
    g_primary_durable_txn_per_s = primary_rate;
  }
}
BENCHMARK(BM_Pair)
    ->ArgNames({"durable", "rows", "sign", "legacy", "cache", "bg"})
    ->Args({1, 1, 1, 0, 64, 0})
    ->Args({1, 1, 100, 0, 64, 0})
    ->Args({1, 1, 1, 0, 64, 1})
    ->Args({1, 100, 1, 0, 64, 0})
    ->Args({1, 100, 100, 0, 64, 0})
    ->Args({1, 100, 1, 0, 64, 1})
    ->Args({1, 1, 1, 1, 64, 0})
    ->Args({1, 100, 1, 1, 64, 0})
    ->Args({0, 1, 1, 0, 64, 0})
    ->Args({0, 1, 100, 0, 64, 0})
    ->Args({0, 1, 1, 0, 64, 1})
    ->Args({0, 100, 1, 0, 64, 0})
    ->Args({0, 100, 100, 0, 64, 0})
    ->Args({0, 100, 1, 0, 64, 1})
    ->Args({0, 1, 100, 0, 0, 0})
    ->Args({0, 100, 100, 0, 0, 0})
    ->MinTime(3.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Group commit (issue 13): `writers` threads each running durable 1-INSERT
// transactions on one Primary (log fsync on) against raw SQLite
// synchronous=FULL with ONE writer, interleaved per iteration on the same
// disk. ratio = primary (all writers) / raw single writer; entries/sync =
// entries per log append (each append is one fdatasync), counted through
// PrimaryOptions::test_hook. Args: writers; bg (0/1: heads signed per group,
// or in the background as `swarmlite primary` does).
// SWARMLITE_BENCH_LOG_SYNC=0: the primary's log is not fdatasync'ed (the raw
// baseline still is): the ceiling a group commit that hid its log sync
// completely behind other work could reach (docs/performance.md "Ceilings
// without the log's fdatasync").
void BM_GroupCommit(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  const int writers = static_cast<int>(state.range(0));
  const bool background = state.range(1) != 0;
  // Small rounds, many iterations: the raw and primary phases alternate often,
  // so both see the same fsync latency (it drifts on a shared machine).
  constexpr int kRawTxns = 100;
  constexpr int kPrimaryTxns = 640;  // split evenly over 1, 4, 16 and 64 writers
  TempDir dir("primary-bench-group");
  fs::create_directories(dir.path);
  RawDb raw(dir.path / "raw.db", "FULL");
  KeyPair key = KeyPair::generate();
  auto appends = std::make_shared<std::atomic<uint64_t>>(0);
  const bool log_sync = bench::env_int("SWARMLITE_BENCH_LOG_SYNC", 1) != 0;
  PrimaryOptions o =
      primary_options(log_sync, 1, false, PrimaryOptions{}.statement_cache, background);
  // SWARMLITE_BENCH_SLOW_SYNC_US: every log append waits this long more, as on
  // a disk whose fdatasync is that much slower (a loaded or networked disk).
  const char* slow_env = std::getenv("SWARMLITE_BENCH_SLOW_SYNC_US");
  const auto slow_sync = std::chrono::microseconds(slow_env ? std::atoi(slow_env) : 0);
  o.test_hook = [appends, slow_sync](PrimaryHookPoint point) -> Status {
    if (point != PrimaryHookPoint::before_log_append) return ok_status();
    appends->fetch_add(1);
    if (slow_sync.count() > 0) std::this_thread::sleep_for(slow_sync);
    return ok_status();
  };
  auto primary = open_primary(dir.path / "p.db", key.secret, std::move(o));
  // SWARMLITE_BENCH_RAW_GROWING=1: the baseline as before 2026-12-06, its -wal
  // file growing through the measured commits (for an A/B of the two).
  if (bench::env_int("SWARMLITE_BENCH_RAW_GROWING", 0) == 0) raw.fill_wal();
  for (int i = 0; i < 20; ++i) {
    raw.transaction(1);
    uint64_t next = 0;
    ok_or_die(primary->execute(insert_txn(1, next)), "execute");
  }
  Clock::duration raw_time{}, primary_time{};
  uint64_t raw_txns = 0, primary_txns = 0;
  const uint64_t appends_before = appends->load();
  std::atomic<bool> failed{false};
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (int i = 0; i < kRawTxns; ++i) raw.transaction(1);
    raw_time += Clock::now() - t0;
    raw_txns += kRawTxns;
    std::vector<std::thread> threads;
    const int each = kPrimaryTxns / writers;
    auto t1 = Clock::now();
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        uint64_t next = static_cast<uint64_t>(w) << 32;
        for (int i = 0; i < each; ++i) {
          if (!primary->execute(insert_txn(1, next)).ok()) failed = true;
        }
      });
    }
    for (auto& t : threads) t.join();
    primary_time += Clock::now() - t1;
    primary_txns += static_cast<uint64_t>(each) * static_cast<uint64_t>(writers);
    if (failed) {
      state.SkipWithError("a write failed");
      break;
    }
  }
  const double raw_rate =
      static_cast<double>(raw_txns) / std::chrono::duration<double>(raw_time).count();
  const double primary_rate =
      static_cast<double>(primary_txns) / std::chrono::duration<double>(primary_time).count();
  state.counters["raw_txn/s"] = raw_rate;
  state.counters["primary_txn/s"] = primary_rate;
  state.counters["ratio"] = primary_rate / raw_rate;
  state.counters["entries/sync"] =
      static_cast<double>(primary_txns) /
      static_cast<double>(std::max<uint64_t>(1, appends->load() - appends_before));
}
BENCHMARK(BM_GroupCommit)
    ->ArgNames({"writers", "bg"})
    ->ArgsProduct({{1, 4, 16, 64}, {0, 1}})
    ->Iterations(10)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// A primary's log of `n` entries of `rows` inserts each (built once, fsync off,
// group signing), closed so a replica can open its log directory.
struct BuiltLog {
  TempDir dir{"primary-bench-log"};
  KeyPair key = KeyPair::generate();
  fs::path log_dir;
  uint64_t entries = 0;
  BuiltLog(uint64_t n, int rows) {
    fs::create_directories(dir.path);
    auto primary = open_primary(dir.path / "p.db", key.secret, primary_options(false, 1000));
    uint64_t next = 0;
    for (uint64_t i = 0; i < n; ++i) ok_or_die(primary->execute(insert_txn(rows, next)), "execute");
    log_dir = primary->log_dir();
    entries = primary->size();
  }
};
const BuiltLog& built_log(int rows) {
  static BuiltLog single(20'000, 1);
  static BuiltLog hundred(2'000, 100);
  return rows == 1 ? single : hundred;
}

// Replica::apply_available over the whole log into a fresh database.
// Arg: rows per entry.
void BM_ReplicaReplay(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  const BuiltLog& log = built_log(static_cast<int>(state.range(0)));
  uint64_t applied = 0;
  for (auto _ : state) {
    state.PauseTiming();
    TempDir dir("primary-bench-replica");
    fs::create_directories(dir.path);
    ReplicaOptions o;
    o.log_options.sync = false;  // replay does not write the log
    auto replica = ok_or_die(Replica::open(dir.path / "r.db", log.log_dir, log.key.pub, o),
                             "Replica::open");
    state.ResumeTiming();
    applied += ok_or_die(replica->apply_available(), "apply_available");
    state.PauseTiming();
    replica.reset();
    state.ResumeTiming();
  }
  state.counters["entries/s"] =
      benchmark::Counter(static_cast<double>(applied), benchmark::Counter::kIsRate);
  state.counters["entries"] = static_cast<double>(log.entries);
  if (state.range(0) == 1 && g_primary_durable_txn_per_s > 0) {
    state.counters["vs_primary_durable"] = benchmark::Counter(
        static_cast<double>(applied) / g_primary_durable_txn_per_s, benchmark::Counter::kIsRate);
  }
}
BENCHMARK(BM_ReplicaReplay)
    ->ArgName("rows")
    ->Arg(1)
    ->Arg(100)
    ->Iterations(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// StateTree::apply for the pages one transaction dirties, on the tree of a
// database of ~20k rows. The dirty page count per transaction is measured from
// the WAL (frames appended by each commit, raw SQLite with the same settings).
// Arg: rows per transaction.
void BM_StateRootUpdate(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  const int rows = static_cast<int>(state.range(0));
  TempDir dir("primary-bench-tree");
  fs::create_directories(dir.path);
  RawDb raw(dir.path / "raw.db", "OFF");
  for (int i = 0; i < 200; ++i) raw.transaction(100);  // 20k rows
  static int frames = 0;
  frames = 0;
  sqlite3_wal_hook(
      raw.handle(),
      [](void*, sqlite3*, const char*, int n) {
        frames = n;
        return SQLITE_OK;
      },
      nullptr);
  raw.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  frames = 0;
  const int txns = 50;
  for (int i = 0; i < txns; ++i) raw.transaction(rows);
  const double pages_per_txn = static_cast<double>(frames) / txns;

  auto pages = ok_or_die(read_logical_pages(dir.path / "raw.db"), "read pages");
  StateTree tree = StateTree::from_pages(pages);
  const uint32_t page_count = static_cast<uint32_t>(pages.size());
  // Dirty set: page 1 (header) and the last pages (where rowid-ordered inserts land).
  const size_t dirty = std::max<size_t>(1, static_cast<size_t>(pages_per_txn + 0.5));
  PageMap map;
  map[1] = pages[0];
  for (uint32_t p = page_count; map.size() < dirty && p > 1; --p) map[p] = pages[p - 1];
  for (auto _ : state) {
    map[1][100] ^= 1;  // a change each time
    if (!tree.apply(map, page_count).ok()) state.SkipWithError("apply failed");
    benchmark::DoNotOptimize(tree.root());
  }
  state.counters["dirty_pages/txn"] = pages_per_txn;
  state.counters["db_pages"] = page_count;
}
BENCHMARK(BM_StateRootUpdate)->ArgName("rows")->Arg(1)->Arg(100)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace swarmlite

int main(int argc, char** argv) {
  // Same disk as the databases of a real deployment: /var/tmp (ext4), unless TMPDIR says otherwise.
  setenv("TMPDIR", "/var/tmp", 0);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
