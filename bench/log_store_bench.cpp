// Log store benchmarks: appends/s (fsync on and off, batches of 1 and 100),
// random reads/s, and the time to reopen a 1M-entry log (LogStore alone, and
// Log::open, which also rebuilds the Merkle tree from the stored leaf hashes),
// the heap an open 1M-entry log keeps, proof generation by the log, and
// Log::append (store + tree).
// Records are ~100 bytes, like a small write transaction's entry.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <random>

#include "core/hash.h"
#include "core/log.h"
#include "core/log_store.h"
#include "core/temp_dir_test_util.h"

namespace swarmlite {
namespace {

namespace fs = std::filesystem;
constexpr size_t kRecordBytes = 100;

Bytes record(uint64_t i) {
  Bytes b(kRecordBytes);
  for (size_t k = 0; k < b.size(); ++k) b[k] = static_cast<uint8_t>(i * 131 + k);
  return b;
}

std::unique_ptr<LogStore> open_or_die(const fs::path& dir, LogStoreOptions o) {
  auto r = LogStore::open(dir, o);
  if (!r.ok()) {
    fmt::print(stderr, "{}\n", r.error().to_string());
    std::abort();
  }
  return std::move(r).value();
}

// Args: sync (0/1), batch size, prealloc (0/1: LogStoreOptions::preallocate_bytes
// off or the default; it only acts with sync).
void BM_Append(benchmark::State& state) {
  TempDir t("append");
  LogStoreOptions o;
  o.sync = state.range(0) != 0;
  if (state.range(2) == 0) o.preallocate_bytes = 0;
  auto store = open_or_die(t.path, o);
  std::vector<Bytes> batch;
  for (int64_t i = 0; i < state.range(1); ++i) batch.push_back(record(static_cast<uint64_t>(i)));
  for (auto _ : state) {
    if (!store->append_batch(batch).ok()) state.SkipWithError("append failed");
  }
  state.SetItemsProcessed(state.iterations() * state.range(1));
  state.SetBytesProcessed(state.iterations() * state.range(1) * static_cast<int64_t>(kRecordBytes));
}
BENCHMARK(BM_Append)
    ->ArgNames({"sync", "batch", "prealloc"})
    ->Args({0, 1, 1})
    ->Args({0, 100, 1})
    ->Args({1, 1, 0})
    ->Args({1, 1, 1})
    ->Args({1, 100, 0})
    ->Args({1, 100, 1})
    ->UseRealTime();

// Baseline for the sync rows above: one 120-byte pwrite + fdatasync on a plain
// file in the same temp dir (an append with sync costs two of these, in order).
void BM_FdatasyncBaseline(benchmark::State& state) {
  TempDir t("fsync");
  fs::create_directories(t.path);
  fs::path p = t.path / "f";
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) std::abort();
  Bytes b = record(0);
  b.resize(120);
  off_t at = 0;
  for (auto _ : state) {
    if (::pwrite(fd, b.data(), b.size(), at) != static_cast<ssize_t>(b.size()) ||
        ::fdatasync(fd) != 0) {
      state.SkipWithError("write failed");
    }
    at += static_cast<off_t>(b.size());
  }
  ::close(fd);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FdatasyncBaseline)->UseRealTime();

// A store of `n` records, built once per process (fsync off, batches of 1000).
struct BuiltStore {
  TempDir dir{"built"};
  uint64_t n;
  explicit BuiltStore(uint64_t count) : n(count) {
    LogStoreOptions o;
    o.sync = false;
    auto s = open_or_die(dir.path, o);
    std::vector<Bytes> batch;
    for (uint64_t i = 0; i < n; i += batch.size()) {
      batch.clear();
      for (uint64_t k = i; k < std::min(n, i + 1000); ++k) batch.push_back(record(k));
      if (!s->append_batch(batch).ok()) std::abort();
    }
  }
};
const BuiltStore& million() {
  static BuiltStore built(1'000'000);
  return built;
}

void BM_ReadRandom(benchmark::State& state) {
  const BuiltStore& b = million();
  auto store = open_or_die(b.dir.path, {});
  std::mt19937_64 rng(1);
  for (auto _ : state) {
    auto r = store->read(rng() % b.n);
    if (!r.ok()) state.SkipWithError("read failed");
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReadRandom);

void BM_ReopenStore1M(benchmark::State& state) {
  const BuiltStore& b = million();
  for (auto _ : state) {
    auto s = open_or_die(b.dir.path, {});
    if (s->size() != b.n) state.SkipWithError("wrong size");
  }
}
BENCHMARK(BM_ReopenStore1M)->Unit(benchmark::kMillisecond)->Iterations(5);

void BM_ReopenLog1M(benchmark::State& state) {
  const BuiltStore& b = million();
  PublicKey id;  // no head stored: open rebuilds the tree and checks nothing else
  for (auto _ : state) {
    auto log = Log::open(b.dir.path, id);
    if (!log.ok() || (*log)->size() != b.n) state.SkipWithError("Log::open failed");
  }
}
BENCHMARK(BM_ReopenLog1M)->Unit(benchmark::kMillisecond)->Iterations(5);

// Heap bytes in use (glibc's count), to see what an open log keeps per entry.
size_t heap_in_use() { return mallinfo2().uordblks; }

void BM_ReopenLog1MHeap(benchmark::State& state) {
  const BuiltStore& b = million();
  PublicKey id;
  double per_entry = 0;
  for (auto _ : state) {
    size_t before = heap_in_use();
    auto log = Log::open(b.dir.path, id);
    if (!log.ok() || (*log)->size() != b.n) state.SkipWithError("Log::open failed");
    per_entry = static_cast<double>(heap_in_use() - before) / static_cast<double>(b.n);
  }
  state.counters["heap_B_per_entry"] = per_entry;
}
BENCHMARK(BM_ReopenLog1MHeap)->Unit(benchmark::kMillisecond)->Iterations(3);

std::unique_ptr<Log> open_log_or_die(const fs::path& dir) {
  auto r = Log::open(dir, PublicKey{});
  if (!r.ok()) {
    fmt::print(stderr, "{}\n", r.error().to_string());
    std::abort();
  }
  return std::move(r).value();
}

// Proof generation by the log (the tree over the stored leaf hashes), as a
// peer serves it: an inclusion proof of a random entry in the whole log.
void BM_LogInclusionProof1M(benchmark::State& state) {
  const BuiltStore& b = million();
  auto log = open_log_or_die(b.dir.path);
  std::mt19937_64 rng(5);
  for (auto _ : state) {
    auto p = log->tree().inclusion_proof(rng() % b.n, b.n);
    if (!p.ok()) state.SkipWithError("proof failed");
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LogInclusionProof1M);

// A consistency proof from a random older size to the whole log: what catch-up
// (GET /log/entries) and equivocation evidence ask the log for.
void BM_LogConsistencyProof1M(benchmark::State& state) {
  const BuiltStore& b = million();
  auto log = open_log_or_die(b.dir.path);
  std::mt19937_64 rng(6);
  for (auto _ : state) {
    auto p = log->consistency_proof(1 + rng() % (b.n - 1), b.n);
    if (!p.ok()) state.SkipWithError("proof failed");
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LogConsistencyProof1M);

Bytes log_entry(uint64_t seq) {
  Entry e;
  e.seq = seq;
  e.time_ms = 1700000000000 + static_cast<int64_t>(seq);
  e.statements.push_back(
      Statement{"INSERT INTO t VALUES (?)", {Value{static_cast<int64_t>(seq)}}});
  e.state_root = hash_leaf(record(seq));
  e.page_count = 2;
  return encode_entry(e);
}

// Log::append (store append + log tree), fsync off. Arg: batch size.
void BM_LogAppend(benchmark::State& state) {
  TempDir t("logappend");
  LogStoreOptions o;
  o.sync = false;
  auto r = Log::open(t.path, PublicKey{}, o);
  if (!r.ok()) std::abort();
  auto log = std::move(r).value();
  std::vector<Bytes> batch(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    state.PauseTiming();
    for (size_t i = 0; i < batch.size(); ++i) batch[i] = log_entry(log->size() + i);
    state.ResumeTiming();
    if (!log->append(batch).ok()) state.SkipWithError("append failed");
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_LogAppend)->ArgNames({"batch"})->Arg(1)->Arg(100)->UseRealTime();

}  // namespace
}  // namespace swarmlite

BENCHMARK_MAIN();
