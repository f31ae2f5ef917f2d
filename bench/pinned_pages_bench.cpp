// Pages of a pinned head served by preads (PinnedPages, docs/light-client.md
// "Serving from the pin without a copy"): µs per GetPages of 1, 16 and 256
// random pages (read, leaf check, multiproof), against plain preads of the
// same pages from the database file (no check, no proof) and a copy of the
// whole database (what serving a snapshot costs today) in the same run; and
// what a pin costs (the WAL-index header and the frame scan, from scratch and
// incremental).
//
// Rows: SWARMLITE_BENCH_ROWS (default 1,000,000) in the proof bench's table;
// then every 1000th row is updated by a writer that stays open, so part of the
// pages are served from WAL frames. Built once per run, removed at exit.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <set>

#include "sqlbridge/engine/pinned_pages.h"
#include "sqlbridge/proof/proof_test_util.h"

namespace swarmlite {
namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

struct PinnedDb {
  std::filesystem::path dir;
  std::filesystem::path path;
  SqliteDb writer;
  SqliteDb reader;  // the pin's read transaction
  std::shared_ptr<const StateTree> tree;
  std::shared_ptr<const PinnedPages> pages;
  std::vector<std::vector<uint32_t>> sets[3];  // 64 random page sets of 1, 16, 256 pages

  PinnedDb() {
    dir = std::filesystem::temp_directory_path() / fmt::format("swl-pp-bench-{}", ::getpid());
    std::filesystem::create_directories(dir);
    path = dir / "bench.db";
    proof_testing::TestDbOptions o;
    o.rows = env_int("SWARMLITE_BENCH_ROWS", 1'000'000);
    o.extras = false;
    check(proof_testing::build_test_db(path, o));
    writer = take(open_sqlite(path.string(), SQLITE_OPEN_READWRITE));
    check(exec_sql(writer.get(),
                   "PRAGMA wal_autocheckpoint=0; "
                   "UPDATE items SET price = price + 1 WHERE id % 1000 = 0"));
    reader = take(open_sqlite(path.string(), SQLITE_OPEN_READONLY));
    check(exec_sql(reader.get(), "BEGIN; SELECT count(*) FROM sqlite_schema"));
    tree = std::make_shared<const StateTree>(take(StateTree::from_file(path)));
    pages = take(PinnedPages::open(path, tree, nullptr));
    std::mt19937_64 rng(15);
    const size_t sizes[3] = {1, 16, 256};
    for (int k = 0; k < 3; ++k) {
      for (int i = 0; i < 64; ++i) {
        std::set<uint32_t> s;
        while (s.size() < sizes[k]) s.insert(1 + static_cast<uint32_t>(rng() % tree->page_count()));
        sets[k].emplace_back(s.begin(), s.end());
      }
    }
    fmt::print(stderr, "pinned pages bench: {} pages, {} WAL frames in the snapshot\n",
               tree->page_count(), pages->wal_frames());
  }
  ~PinnedDb() {
    pages.reset();
    reader = SqliteDb();
    writer = SqliteDb();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  static void check(const Status& s) {
    if (!s.ok()) {
      fmt::print(stderr, "pinned pages bench: {}\n", s.error().to_string());
      std::abort();
    }
  }
  template <typename T>
  static T take(Result<T> r) {
    if (!r.ok()) check(r.take_error());
    return std::move(r).value();
  }
};

PinnedDb& db() {
  static PinnedDb d;
  return d;
}

// A GetPages answer: the pages, checked, and their multiproof.
void BM_PinnedGetPages(benchmark::State& state) {
  PinnedDb& d = db();
  const auto& sets = d.sets[state.range(0)];
  size_t i = 0, pages = 0;
  for (auto _ : state) {
    const auto& pgnos = sets[i++ % sets.size()];
    auto got = d.pages->read(pgnos);
    std::vector<uint64_t> indices(pgnos.begin(), pgnos.end());
    for (uint64_t& x : indices) --x;
    auto proof = d.tree->tree().multiproof(indices);
    if (!got.ok() || !proof.ok()) state.SkipWithError("read failed");
    benchmark::DoNotOptimize(proof);
    pages += pgnos.size();
  }
  state.SetItemsProcessed(static_cast<int64_t>(pages));
}
BENCHMARK(BM_PinnedGetPages)->DenseRange(0, 2)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Baseline: the same pages by plain preads of the database file (no WAL, no check, no proof).
void BM_RawPread(benchmark::State& state) {
  PinnedDb& d = db();
  const auto& sets = d.sets[state.range(0)];
  const int fd = ::open(d.path.c_str(), O_RDONLY);
  Bytes buf(4096);
  size_t i = 0, pages = 0;
  for (auto _ : state) {
    for (uint32_t pg : sets[i++ % sets.size()]) {
      if (::pread(fd, buf.data(), buf.size(), off_t{pg - 1} * 4096) < 0)
        state.SkipWithError("pread");
      benchmark::DoNotOptimize(buf.data());
      ++pages;
    }
  }
  ::close(fd);
  state.SetItemsProcessed(static_cast<int64_t>(pages));
}
BENCHMARK(BM_RawPread)->DenseRange(0, 2)->Unit(benchmark::kMicrosecond)->UseRealTime();

// What a node does today before it serves a snapshot (docs/performance.md
// "Bootstrap of a new peer"): copy the database and its WAL, the cost
// PinnedPages avoids.
void BM_CopyDatabase(benchmark::State& state) {
  PinnedDb& d = db();
  const std::filesystem::path copy = d.dir / "copy.db";
  uint64_t bytes = 0;
  for (auto _ : state) {
    for (const char* suffix : {"", "-wal"}) {
      std::filesystem::path from = d.path, to = copy;
      from += suffix;
      to += suffix;
      std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
      bytes += std::filesystem::file_size(to);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_CopyDatabase)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();

// A pin: the WAL-index header and a scan of every frame of the snapshot
// (range 0), or with the previous pin's cursor and no new frame (range 1).
void BM_PinOpen(benchmark::State& state) {
  PinnedDb& d = db();
  PinnedWalCursor cursor;
  if (state.range(0) == 1) (void)PinnedPages::open(d.path, d.tree, nullptr, &cursor);
  for (auto _ : state) {
    PinnedWalCursor fresh;
    auto p = PinnedPages::open(d.path, d.tree, nullptr, state.range(0) == 1 ? &cursor : &fresh);
    if (!p.ok()) state.SkipWithError(p.error().to_string().c_str());
    benchmark::DoNotOptimize(p);
  }
  state.counters["wal_frames"] = d.pages->wal_frames();
}
BENCHMARK(BM_PinOpen)->DenseRange(0, 1)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace swarmlite

BENCHMARK_MAIN();
