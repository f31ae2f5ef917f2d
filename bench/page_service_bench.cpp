// The page service on the wire (docs/light-client.md "Page service"): µs per
// GetPages of 256 random pages of a replica's pinned head, answered in
// process (Replica::pinned_pages: reads, leaf checks, multiproof), over
// loopback HTTP (GET /db/pages through http_page_source: encode, send,
// decode) and over the peer protocol (peer_page_source), in the same run, so
// the transports' cost is the ratio to the first. Also verify_page_set on
// the client side.
//
// Rows: SWARMLITE_BENCH_ROWS (default 40,000 rows of ~1 KiB: ~10k pages).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <set>

#include "client/page_source_http.h"
#include "client/page_source_peer.h"
#include "net/backends.h"
#include "net/http_api.h"
#include "net/node.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/replica.h"

namespace swarmlite {
namespace {

using namespace std::chrono_literals;

template <class T>
void check(const Result<T>& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "page_service_bench: %s\n", s.error().to_string().c_str());
    std::exit(1);
  }
}

class PagesBackend : public net::HttpBackend {
 public:
  explicit PagesBackend(const PageServer* server) : server_(server) {}
  bool accepts_writes() const override { return false; }
  Result<std::vector<net::QueryOutcome>> query(const std::vector<Statement>&,
                                               const net::QueryOptions&) override {
    return std::vector<net::QueryOutcome>{};
  }
  uint64_t size() const override { return 0; }
  nlohmann::json status() const override { return nlohmann::json::object(); }
  Status ready() const override { return ok_status(); }
  const PageServer* page_server() const override { return server_; }

 private:
  const PageServer* server_;
};

struct Served {
  testing::TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;
  std::unique_ptr<Replica> replica;
  std::unique_ptr<PagesBackend> backend;
  std::unique_ptr<net::HttpApi> http;
  std::unique_ptr<net::PrimaryBackend> node_backend;
  std::unique_ptr<net::Node> node;
  std::unique_ptr<client::PageSource> via_http, via_peer;
  Head head;
  std::vector<std::vector<uint32_t>> sets;  // 64 random sets of 256 pages

  Served() {
    primary = take(Primary::open(dir / "p.db", keys.secret, testing::fast_primary(1)));
    replica = take(Replica::open(dir / "r.db", dir / "r.log", keys.pub, testing::fast_replica()));
    const char* env = std::getenv("SWARMLITE_BENCH_ROWS");
    const int rows = env ? std::atoi(env) : 40000;
    check(primary->execute({testing::sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")})
              );
    for (int done = 0; done < rows; done += 1000)
      check(primary
                ->execute({testing::sql(
                    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < "
                    "1000) INSERT INTO t(b) SELECT randomblob(1000) FROM c")})
                );
    check(testing::sync_replica(*primary, *replica));
    head = *primary->head();
    backend = std::make_unique<PagesBackend>(replica.get());
    net::HttpApiOptions ho;
    ho.listen = "127.0.0.1:0";
    http = std::make_unique<net::HttpApi>(*backend, ho);
    check(http->start());
    node_backend = std::make_unique<net::PrimaryBackend>(*primary);
    net::NodeOptions no;
    no.listen = "127.0.0.1:0";
    node = std::make_unique<net::Node>(*node_backend, no);
    node->set_page_server(replica.get());
    check(node->start());
    via_http = client::http_page_source(
        "http://127.0.0.1:" + std::to_string(http->bound_port()), 30s);
    via_peer = client::peer_page_source("127.0.0.1:" + std::to_string(node->listen_port()),
                                        keys.pub, 30s);
    std::mt19937_64 rng(15);
    for (int i = 0; i < 64; ++i) {
      std::set<uint32_t> s;
      while (s.size() < 256) s.insert(1 + static_cast<uint32_t>(rng() % head.page_count));
      sets.emplace_back(s.begin(), s.end());
    }
    std::fprintf(stderr, "page_service_bench: %d rows, %u pages, head %llu\n", rows,
                 head.page_count, static_cast<unsigned long long>(head.size));
  }
  ~Served() {
    node->stop();
    http->stop();
  }
  template <class T>
  static T take(Result<T> r) {
    check(r);
    return std::move(r).value();
  }
};

Served& served() {
  static Served s;
  return s;
}

void BM_InProcess256(benchmark::State& state) {
  Served& s = served();
  size_t i = 0;
  for (auto _ : state) {
    auto r = s.replica->pinned_pages(s.head.size, s.sets[i++ % s.sets.size()]);
    check(r);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 256);
}
BENCHMARK(BM_InProcess256)->Unit(benchmark::kMicrosecond)->UseRealTime();

void fetch(benchmark::State& state, client::PageSource& source) {
  Served& s = served();
  size_t i = 0;
  for (auto _ : state) {
    auto r = source.pages(s.head.size, s.sets[i++ % s.sets.size()]);
    check(r);
    if (!std::holds_alternative<PageSet>(*r)) check(Status(make_error(Errc::internal, "head gone")));
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 256);
}
void BM_Http256(benchmark::State& state) { fetch(state, *served().via_http); }
BENCHMARK(BM_Http256)->Unit(benchmark::kMicrosecond)->UseRealTime();
void BM_Peer256(benchmark::State& state) { fetch(state, *served().via_peer); }
BENCHMARK(BM_Peer256)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Verify256(benchmark::State& state) {
  Served& s = served();
  auto r = s.replica->pinned_pages(s.head.size, s.sets[0]);
  check(r);
  for (auto _ : state) check(verify_page_set(*r, s.head));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 256);
}
BENCHMARK(BM_Verify256)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace swarmlite

BENCHMARK_MAIN();
