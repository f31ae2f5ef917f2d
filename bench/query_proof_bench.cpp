// Verified reads (issue 5): proof bytes and verify time for a point lookup, a
// 100-row range scan and a join on a large table; the plain local SQLite query
// in the same run as the baseline; proof generation on the peer; proof sizes at
// page sizes 1024/2048/4096.
//
// Rows: SWARMLITE_BENCH_ROWS (default 1,000,000) for the main table at page size
// 4096; the page-size comparison uses SWARMLITE_BENCH_PS_ROWS (default 200,000).
// Databases are built once per run under the temp dir and removed at exit.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <random>

#include "bench/bench_util.h"
#include "core/keys.h"
#include "sqlbridge/proof/proof_test_util.h"
#include "sqlbridge/proof/prover.h"
#include "sqlbridge/proof/verifier.h"

namespace swarmlite {
namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

struct BenchDb {
  std::filesystem::path dir;
  std::filesystem::path path;
  int rows = 0;
  StateTree tree;
  KeyPair key = KeyPair::generate();
  Head head;

  BenchDb(uint32_t page_size, int row_count) : rows(row_count) {
    dir = std::filesystem::temp_directory_path() /
          fmt::format("swl-qp-bench-{}-{}", ::getpid(), page_size);
    std::filesystem::create_directories(dir);
    path = dir / "bench.db";
    proof_testing::TestDbOptions o;
    o.page_size = page_size;
    o.rows = rows;
    o.extras = false;
    if (Status s = proof_testing::build_test_db(path, o); !s.ok()) {
      fmt::print(stderr, "building the bench db: {}\n", s.error().to_string());
      std::abort();
    }
    tree = std::move(StateTree::from_file(path)).value();
    head = *proof_testing::sign_state(tree, key, 1000, 0);
  }
  ~BenchDb() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

BenchDb& db_for(uint32_t page_size) {
  static std::map<uint32_t, std::unique_ptr<BenchDb>> dbs;
  auto& slot = dbs[page_size];
  if (!slot) {
    int rows = page_size == 4096 ? env_int("SWARMLITE_BENCH_ROWS", 1'000'000)
                                 : env_int("SWARMLITE_BENCH_PS_ROWS", 200'000);
    slot = std::make_unique<BenchDb>(page_size, rows);
  }
  return *slot;
}

enum Query { kPoint = 0, kRange100 = 1, kJoin = 2 };
const char* kSql[] = {
    "SELECT * FROM items WHERE id = ?",
    "SELECT id, name, price FROM items WHERE id BETWEEN ?1 AND ?1 + 99",
    "SELECT i.id, i.name, c.name FROM items i JOIN categories c ON c.id = i.category "
    "WHERE i.id BETWEEN ?1 AND ?1 + 19",
};
const char* kName[] = {"point", "range100", "join20"};

// 32 random starting ids, the same every run.
std::vector<std::vector<Value>> params_for(const BenchDb& db) {
  std::mt19937_64 rng(42);
  std::vector<std::vector<Value>> out;
  for (int i = 0; i < 32; ++i) {
    out.push_back({Value{static_cast<int64_t>(1 + rng() % static_cast<uint64_t>(db.rows - 100))}});
  }
  return out;
}

void label(benchmark::State& state, Query q, uint32_t page_size, const BenchDb& db) {
  state.SetLabel(fmt::format("{} ps={} rows={}", kName[q], page_size, db.rows));
}

// Baseline: the same query on an open local connection (prepare + step to the end).
void BM_PlainQuery(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  auto q = static_cast<Query>(state.range(0));
  BenchDb& db = db_for(4096);
  auto params = params_for(db);
  SqliteDb conn = std::move(open_sqlite(db.path.string(), SQLITE_OPEN_READONLY)).value();
  size_t i = 0, rows = 0;
  for (auto _ : state) {
    SqliteStmt stmt = std::move(prepare(conn.get(), kSql[q])).value();
    (void)bind_values(stmt.get(), params[i++ % params.size()]);
    while (sqlite3_step(stmt.get()) == SQLITE_ROW) {
      benchmark::DoNotOptimize(column_value(stmt.get(), 0));
      ++rows;
    }
  }
  state.counters["rows/query"] = static_cast<double>(rows) / static_cast<double>(state.iterations());
  label(state, q, 4096, db);
}
BENCHMARK(BM_PlainQuery)->DenseRange(0, 2)->Unit(benchmark::kMicrosecond);

// The peer's side: fresh captured connection, query, pages, multiproof, encoding.
void BM_Prove(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  auto q = static_cast<Query>(state.range(0));
  auto ps = static_cast<uint32_t>(state.range(1));
  BenchDb& db = db_for(ps);
  auto params = params_for(db);
  size_t i = 0, bytes = 0, pages = 0;
  for (auto _ : state) {
    auto p = prove_query(db.path, db.tree, db.head, kSql[q], params[i++ % params.size()]);
    if (!p.ok()) {
      state.SkipWithError(p.error().to_string().c_str());
      return;
    }
    bytes += p->encoded.size();
    pages += p->proof.pages.size();
  }
  double n = static_cast<double>(state.iterations());
  state.counters["proof_bytes"] = static_cast<double>(bytes) / n;
  state.counters["pages"] = static_cast<double>(pages) / n;
  label(state, q, ps, db);
}
BENCHMARK(BM_Prove)
    ->ArgsProduct({{kPoint, kRange100, kJoin}, {4096}})
    ->ArgsProduct({{kPoint, kRange100, kJoin}, {1024, 2048}})
    ->Unit(benchmark::kMicrosecond);

// Proofs of query q for the 32 ids of params_for(), made once.
struct BenchProofs {
  std::vector<std::vector<Value>> params;
  std::vector<Bytes> encoded;
  size_t bytes = 0;
};
BenchProofs proofs_for(const BenchDb& db, Query q) {
  BenchProofs out;
  out.params = params_for(db);
  for (const auto& p : out.params) {
    out.encoded.push_back(
        std::move(prove_query(db.path, db.tree, db.head, kSql[q], p)).value().encoded);
    out.bytes += out.encoded.back().size();
  }
  return out;
}

// Runs `verify(bytes, options)` over the proofs in turn.
template <class VerifyFn>
void verify_loop(benchmark::State& state, Query q, uint32_t ps, VerifyFn verify) {
  BenchDb& db = db_for(ps);
  BenchProofs proofs = proofs_for(db, q);
  VerifyOptions opts;
  opts.expected_sql = kSql[q];
  size_t i = 0;
  for (auto _ : state) {
    size_t k = i++ % proofs.encoded.size();
    opts.expected_params = proofs.params[k];
    Result<VerifiedResult> v = verify(db, proofs.encoded[k], opts);
    if (!v.ok()) {
      state.SkipWithError(v.error().to_string().c_str());
      return;
    }
    benchmark::DoNotOptimize(v->result.rows.size());
  }
  state.counters["proof_bytes"] =
      static_cast<double>(proofs.bytes) / static_cast<double>(proofs.encoded.size());
  label(state, q, ps, db);
}

// The client's side: decode + signature + multiproof + re-run on the proof VFS.
void BM_Verify(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  verify_loop(state, static_cast<Query>(state.range(0)), static_cast<uint32_t>(state.range(1)),
              [](const BenchDb& db, const Bytes& proof, const VerifyOptions& o) {
                return Verifier::verify_bytes(db.key.pub, proof, o);
              });
}
BENCHMARK(BM_Verify)
    ->ArgsProduct({{kPoint, kRange100, kJoin}, {4096}})
    ->ArgsProduct({{kPoint}, {1024, 2048}})
    ->Unit(benchmark::kMicrosecond);

// VerifierCache, cold: every proof is the first at its head (the cache is
// cleared before each one, and the clear — closing the kept connection — is
// timed too). Signature, leaf hashes, connection and schema all paid.
void BM_VerifyCold(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  VerifierCache cache;
  verify_loop(state, static_cast<Query>(state.range(0)), 4096,
              [&](const BenchDb& db, const Bytes& proof, const VerifyOptions& o) {
                cache.clear();
                return cache.verify_bytes(db.key.pub, proof, o);
              });
}
BENCHMARK(BM_VerifyCold)->DenseRange(kPoint, kJoin)->Unit(benchmark::kMicrosecond);

// VerifierCache, warm: many proofs at one head (the 32 proofs in turn, after
// the first pass): signature checked once, leaf hashes of shared pages reused,
// schema parsed once; every page still read from the proof being verified.
void BM_VerifyWarm(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  VerifierCache cache;
  verify_loop(state, static_cast<Query>(state.range(0)), 4096,
              [&](const BenchDb& db, const Bytes& proof, const VerifyOptions& o) {
                return cache.verify_bytes(db.key.pub, proof, o);
              });
  state.counters["conn_hits"] = static_cast<double>(cache.stats().connection_hits);
  state.counters["fresh"] = static_cast<double>(cache.stats().fresh_runs);
}
BENCHMARK(BM_VerifyWarm)->DenseRange(kPoint, kJoin)->Unit(benchmark::kMicrosecond);

// Parts of a point-lookup verification, to see where the time goes.
// The Ed25519 verify a client pays once per head. Not Head::verify: that
// remembers the heads it verified (core/head.cpp), so after the first call it
// measures a scan of the remembered heads — BM_VerifyHeadRemembered.
void BM_VerifyHeadSignature(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  BenchDb& db = db_for(4096);
  const Bytes message = db.head.signing_bytes();
  for (auto _ : state) {
    benchmark::DoNotOptimize(verify_signature(db.head.log_id, message, db.head.signature));
  }
}
BENCHMARK(BM_VerifyHeadSignature)->Unit(benchmark::kMicrosecond);

void BM_VerifyHeadRemembered(benchmark::State& state) {
  bench::StealCounter steal(state);
  BenchDb& db = db_for(4096);
  for (auto _ : state) benchmark::DoNotOptimize(db.head.verify(db.key.pub).ok());
}
BENCHMARK(BM_VerifyHeadRemembered)->Unit(benchmark::kMicrosecond);

void BM_VerifyPointDecodeOnly(benchmark::State& state) {
  bench::StealCounter steal(state);  // the host's share of our CPU (bench_util.h)
  BenchDb& db = db_for(4096);
  auto params = params_for(db);
  Bytes proof = std::move(prove_query(db.path, db.tree, db.head, kSql[kPoint], params[0])).value()
                    .encoded;
  for (auto _ : state) benchmark::DoNotOptimize(decode_query_proof(proof).ok());
}
BENCHMARK(BM_VerifyPointDecodeOnly)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace swarmlite

BENCHMARK_MAIN();
