// The light client (docs/light-client.md "Benchmarks"), in process: a primary
// and a replica of SWARMLITE_BENCH_ROWS rows (default 200,000: a 1M-row table
// takes minutes to build through the log here), the client fetching from the
// replica through ReplicaPageSource (no network: round trips are counted, not
// timed). Skewed point lookups (id = 1 + N·u³), the same keys for every case:
//  - light/refresh: a warm client, one GetLeaves head check per query (the default);
//  - light/no_refresh: a warm client trusting its current head (max_age decides);
//  - prove: a proof per query (Replica::prove) checked by a VerifierCache, the
//    `query --verify` path without the HTTP hop;
//  - plain: SQLite on the replica's file, no verification;
//  - head_move: one row updated per iteration (write and sync untimed), then the
//    query of that row: what re-validating after a write costs; the client asks
//    for the changes since its head (GetChanges);
//  - head_move/leaves: the same through a source without GetChanges (the
//    client falls back to GetLeaves over every held page): the cost before.
// Counters per query: round_trips, bytes (page + proof bytes received).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>

#include "client/light_client.h"
#include "client/light_replica_source.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/proof/verifier.h"

namespace swarmlite {
namespace {

using client::LightClient;
using client::LightClientOptions;
using testing::sql;

template <class T>
T take(Result<T> r) {
  if (!r.ok()) {
    fmt::print(stderr, "light client bench: {}\n", r.error().to_string());
    std::abort();
  }
  return std::move(r).value();
}
void check(const Status& s) {
  if (!s.ok()) {
    fmt::print(stderr, "light client bench: {}\n", s.error().to_string());
    std::abort();
  }
}

constexpr const char* kPoint = "SELECT id, k, v, body FROM t WHERE id = ?";

// A source without change history: GetChanges refused, the rest forwarded.
struct LeavesOnly : client::PageSource {
  std::shared_ptr<client::PageSource> inner;
  explicit LeavesOnly(std::shared_ptr<client::PageSource> in) : inner(std::move(in)) {}
  std::string name() const override { return "leaves-only"; }
  Result<client::PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> p) override {
    return inner->pages(size, p);
  }
  Result<client::PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> p) override {
    return inner->leaves(size, p);
  }
  Result<client::PageAnswer<ChangeSet>> changes(uint64_t, uint64_t) override {
    return make_error(Errc::unavailable, "leaves-only: no change history");
  }
};

struct World {
  std::filesystem::path dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;
  std::unique_ptr<Replica> replica;
  std::shared_ptr<client::ReplicaPageSource> source;
  std::unique_ptr<LightClient> refreshing, trusting, leaves_only;
  std::vector<int64_t> ids;
  int64_t rows = 0;

  World() {
    const char* env = std::getenv("SWARMLITE_BENCH_ROWS");
    rows = env ? std::atoll(env) : 200'000;
    dir = std::filesystem::temp_directory_path() / fmt::format("swl-lc-bench-{}", ::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    primary = take(Primary::open(dir / "p.db", keys.secret, testing::fast_primary()));
    ReplicaOptions ro = testing::fast_replica();
    ro.pin_interval = std::chrono::milliseconds(0);
    replica = take(Replica::open(dir / "r.db", dir / "r.log", keys.pub, ro));
    exec("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT)");
    exec(
        fmt::format("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {}) "
                    "INSERT INTO t SELECT i, printf('k%08d', i), i % 1000, "
                    "printf('%.*c', 60, 'x') FROM c",
                    rows));
    sync();
    source = std::make_shared<client::ReplicaPageSource>(*replica, "replica");
    std::mt19937_64 rng(15);
    std::uniform_real_distribution<double> u(0, 1);
    for (int i = 0; i < 4096; ++i)
      ids.push_back(1 + static_cast<int64_t>(std::pow(u(rng), 3) * static_cast<double>(rows - 1)));
    LightClientOptions o;
    refreshing = take_client(dir / "cache-a", o);
    leaves_only = take_client(dir / "cache-c", o, std::make_shared<LeavesOnly>(source));
    o.refresh_each_query = false;
    trusting = take_client(dir / "cache-b", o);
    for (int64_t id : ids) {  // warm the caches
      (void)query(*refreshing, id);
      (void)query(*trusting, id);
      (void)query(*leaves_only, id);
    }
    fmt::print(stderr, "light client bench: {} rows, {} pages, {} pages held warm\n", rows,
               replica->pinned_pages(0, std::vector<uint32_t>{1})->head.page_count,
               refreshing->proven_pages());
  }
  ~World() {
    refreshing.reset();
    trusting.reset();
    leaves_only.reset();
    source.reset();
    replica.reset();
    primary.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::unique_ptr<LightClient> take_client(const std::filesystem::path& cache, LightClientOptions o,
                                           std::shared_ptr<client::PageSource> from = nullptr) {
    auto c = LightClient::open(cache, {from ? from : source}, keys.pub, o);
    if (!c.ok()) {
      fmt::print(stderr, "light client bench: {}\n", c.error().to_string());
      std::abort();
    }
    return std::move(c).value();
  }
  void exec(const std::string& text) { (void)take(primary->execute({sql(text)})); }
  void sync() {
    check(testing::sync_replica(*primary, *replica));
    (void)take(replica->pinned_pages(0, std::vector<uint32_t>{1}));
  }
  client::LightAnswer query(LightClient& c, int64_t id) {
    auto a = c.query(kPoint, {Value{id}});
    if (!a.ok() || a->rows.size() != 1) {
      fmt::print(stderr, "light client bench: {}\n", a.ok() ? "no row" : a.error().to_string());
      std::abort();
    }
    return std::move(a).value();
  }
};

World& world() {
  static World w;
  return w;
}

void light(benchmark::State& state, bool refresh) {
  World& w = world();
  LightClient& c = refresh ? *w.refreshing : *w.trusting;
  size_t i = 0;
  uint64_t trips = 0, bytes = 0;
  for (auto _ : state) {
    client::LightAnswer a = w.query(c, w.ids[i++ % w.ids.size()]);
    trips += a.stats.round_trips;
    bytes += a.stats.page_bytes + a.stats.proof_bytes;
    benchmark::DoNotOptimize(a.rows);
  }
  state.counters["round_trips"] =
      benchmark::Counter(static_cast<double>(trips), benchmark::Counter::kAvgIterations);
  state.counters["bytes"] =
      benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kAvgIterations);
}
void BM_LightRefresh(benchmark::State& state) { light(state, true); }
void BM_LightNoRefresh(benchmark::State& state) { light(state, false); }

void BM_Prove(benchmark::State& state) {
  World& w = world();
  VerifierCache verifier;
  size_t i = 0;
  uint64_t bytes = 0;
  for (auto _ : state) {
    auto p = take(w.replica->prove(kPoint, {Value{w.ids[i++ % w.ids.size()]}}));
    auto v = take(verifier.verify_bytes(w.keys.pub, p.encoded));
    bytes += p.encoded.size();
    benchmark::DoNotOptimize(v.result.rows);
  }
  state.counters["round_trips"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                     benchmark::Counter::kAvgIterations);
  state.counters["bytes"] =
      benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kAvgIterations);
}

void BM_Plain(benchmark::State& state) {
  World& w = world();
  auto conn = take(GuardedConnection::open("file:" + (w.dir / "r.db").string() + "?mode=ro"));
  size_t i = 0;
  for (auto _ : state) {
    auto r = take(conn->query(kPoint, {Value{w.ids[i++ % w.ids.size()]}}));
    benchmark::DoNotOptimize(r.rows);
  }
}

void head_move(benchmark::State& state, bool changes) {
  World& w = world();
  LightClient& c = changes ? *w.refreshing : *w.leaves_only;
  (void)w.query(c, w.ids[0]);  // catch up with the other case's writes, untimed
  size_t i = 0;
  uint64_t trips = 0, bytes = 0, pages = 0;
  for (auto _ : state) {
    const int64_t id = w.ids[i++ % w.ids.size()];
    state.PauseTiming();
    w.exec(fmt::format("UPDATE t SET v = v + 1 WHERE id = {}", id));
    w.sync();
    state.ResumeTiming();
    client::LightAnswer a = w.query(c, id);
    trips += a.stats.round_trips;
    bytes += a.stats.page_bytes + a.stats.proof_bytes;
    pages += a.stats.pages_fetched;
  }
  state.counters["round_trips"] =
      benchmark::Counter(static_cast<double>(trips), benchmark::Counter::kAvgIterations);
  state.counters["bytes"] =
      benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kAvgIterations);
  state.counters["pages"] =
      benchmark::Counter(static_cast<double>(pages), benchmark::Counter::kAvgIterations);
}

void BM_HeadMove(benchmark::State& state) { head_move(state, true); }
void BM_HeadMoveLeaves(benchmark::State& state) { head_move(state, false); }

BENCHMARK(BM_LightRefresh)->Name("light/refresh");
BENCHMARK(BM_LightNoRefresh)->Name("light/no_refresh");
BENCHMARK(BM_Prove)->Name("prove");
BENCHMARK(BM_Plain)->Name("plain");
BENCHMARK(BM_HeadMove)->Name("head_move")->Iterations(200);
BENCHMARK(BM_HeadMoveLeaves)->Name("head_move/leaves")->Iterations(200);

}  // namespace
}  // namespace swarmlite

BENCHMARK_MAIN();
