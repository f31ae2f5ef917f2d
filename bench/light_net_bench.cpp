// The light client over the network (issue 15; docs/light-client.md "Benchmarks",
// figures in "Light client over the network: figures"): a real `swarmlite
// primary` and `swarmlite peer` on 127.0.0.1, a table of SWARMLITE_BENCH_ROWS
// rows (default 1,000,000), Zipf-distributed keys (s = SWARMLITE_BENCH_ZIPF_S/100,
// default 1.0, hot keys spread over the table by a fixed permutation): 80 %
// point lookups, 20 % ranges of 10 rows. In the same run, against the same
// peer, after the same warm-up (SWARMLITE_BENCH_WARM queries, default 4,096):
//   light     LightClient over http_page_source (one head check per query),
//             then the same measured queries again (every page cached);
//   verify    VerifyingClient with proof=1 (`swarmlite query --verify`);
//   plain     SQLite on the peer's file, no verification (the floor);
//   rtt       GET /status to the peer: one loopback round trip.
//   cold      SWARMLITE_BENCH_COLD (default 40) new clients, each with an empty
//             cache and one query (uniform keys, 80 % points): seeded from one
//             proof=1 answer, and not (--no-seed), alternating in the same run
//             (docs/light-client.md "Seeding a cold query from proof=1").
//   longer    warm-ups to SWARMLITE_BENCH_WARM_MORE queries in all (default
//             16384,65536), each followed by a pass of new queries.
// SWARMLITE_BENCH_DEFER=0 turns the deferred head check off (head check first,
// docs/light-client.md "Deferred head check").
// Then one row written through the primary and the light client's query of
// it at the new head (min_size): what re-validating costs.
//
// Setup (once, kept under SWARMLITE_BENCH_LIGHT_DIR, default
// /tmp/swl-bench-light-<rows>, with a "built" marker holding the log size):
// the primary's database built in process, one transaction per 10,000 rows;
// the peer starts on copies of the files (already at the head).
// Printed: each figure, its ratio against the baseline, and the load average
// (the machine may be shared: ratios, not absolute times).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "cli/proc/child_process.h"
#include "client/light_client.h"
#include "client/page_source_http.h"
#include "client/verifying_client.h"
#include "core/keys.h"
#include "net/http_client.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/proof/read_guard.h"

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
constexpr const char* kPoint = "SELECT id, k, v, body FROM t WHERE id = ?";
constexpr const char* kRange = "SELECT id, k, v, body FROM t WHERE id BETWEEN ? AND ? + 9";

int64_t rows() { return env_int("SWARMLITE_BENCH_ROWS", 1000000); }

fs::path data_dir() {
  const char* d = std::getenv("SWARMLITE_BENCH_LIGHT_DIR");
  return d && *d ? fs::path(d) : fs::path(fmt::format("/tmp/swl-bench-light-{}", rows()));
}

// p.db + p.db.log with `n` rows, 10,000 per transaction, and a copy of the pair
// for the peer (r.db, r.db.data/log). Returns the log size.
uint64_t build(const fs::path& dir, int64_t n) {
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
  auto primary = must(Primary::open(dir / "p.db", keys.secret, po), "opening the primary");
  must(primary->execute(
           {Statement{"CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT)", {}}}),
       "create table");
  const auto t0 = Clock::now();
  for (int64_t lo = 1; lo <= n; lo += 10000) {
    const int64_t hi = std::min(n, lo + 9999);
    must(primary->execute({Statement{
             fmt::format("WITH RECURSIVE c(i) AS (SELECT {} UNION ALL SELECT i + 1 FROM c WHERE "
                         "i < {}) INSERT INTO t SELECT i, printf('k%08d', i), i % 1000, "
                         "printf('%.*c', 60, 'x') FROM c",
                         lo, hi),
             {}}}),
         "insert");
    fmt::print(stderr, "\rlight net bench setup: {} of {} rows ({:.0f} s)", hi, n,
               std::chrono::duration<double>(Clock::now() - t0).count());
  }
  must(primary->sign_head(), "signing the last head");
  const uint64_t size = primary->size();
  primary.reset();
  fmt::print(stderr, "\nlight net bench setup: {} rows in {:.0f} s, log size {}\n", n,
             std::chrono::duration<double>(Clock::now() - t0).count(), size);
  fs::copy_file(dir / "p.db", dir / "r.db");
  fs::create_directories(dir / "r.db.data");
  fs::copy(dir / "p.db.log", dir / "r.db.data/log", fs::copy_options::recursive);
  std::ofstream(marker) << size << "\n";
  return size;
}

net::HttpResponse http(const std::string& base, const std::string& method,
                       const std::string& target, const std::string& body = {}) {
  auto url = must(net::parse_http_url(base), "url");
  net::HttpRequest req;
  req.method = method;
  req.target = target;
  req.body = body;
  net::HttpClientOptions co;
  co.timeout = 60s;
  auto r = net::http_call(url, req, co);
  if (!r.ok()) die(fmt::format("{} {}: {}", method, target, r.error().to_string()));
  return std::move(r).value();
}

uint64_t status_field(const std::string& base, const char* field) {
  auto r = http(base, "GET", "/status");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  return j.is_discarded() || !j.contains(field) ? 0 : j[field].get<uint64_t>();
}

// Zipf(s) over ranks 1..n by inverse CDF; rank r is the key 1 + (r·φ) mod n
// (φ odd and prime to 5: a permutation of 1..n for n = 10^k), so the hot keys
// are spread over the table as hot rows of an app are.
struct Zipf {
  std::vector<double> cdf;
  int64_t n;
  Zipf(int64_t n_, double s) : n(n_) {
    cdf.resize(static_cast<size_t>(n));
    double sum = 0;
    for (int64_t r = 1; r <= n; ++r) cdf[static_cast<size_t>(r - 1)] = sum += 1.0 / std::pow(r, s);
    for (double& c : cdf) c /= sum;
  }
  int64_t key(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    const auto rank =
        static_cast<uint64_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    return 1 + static_cast<int64_t>((rank * 2654435761ull) % static_cast<uint64_t>(n));
  }
};

struct Query {
  bool range;
  int64_t key;
};

std::vector<Query> queries(const Zipf& z, std::mt19937_64& rng, size_t count) {
  std::vector<Query> out;
  for (size_t i = 0; i < count; ++i) {
    const bool range = rng() % 5 == 0;
    int64_t key = z.key(rng);
    if (range) key = std::min(key, z.n - 9);
    out.push_back({range, key});
  }
  return out;
}

struct Figures {
  double us = 0, bytes = 0, trips = 0, pages = 0;
};

void BM_LightNetwork(benchmark::State& state) {
  const fs::path dir = data_dir();
  const int64_t n = rows();
  const uint64_t size = build(dir, n);
  const PublicKey pub =
      must(load_public_key((dir / "keys/primary.pub").string()), "reading the public key");
  ChildProcess primary("primary", kBin,
                       {"primary", "--db", (dir / "p.db").string(), "--key",
                        (dir / "keys/primary.key").string(), "--listen", "127.0.0.1:0", "--http",
                        "127.0.0.1:0", "--max-outbound", "0", "--log-level", "warn"},
                       dir / "primary.out");
  primary.wait_ready(600s);
  ChildProcess peer("peer", kBin,
                    {"peer", "--db", (dir / "r.db").string(), "--pub",
                     (dir / "keys/primary.pub").string(), "--from", primary.listen(), "--listen",
                     "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "warn"},
                    dir / "peer.out");
  peer.wait_ready(600s);
  while (status_field(peer.http(), "applied_size") < size) std::this_thread::sleep_for(50ms);

  const double s = static_cast<double>(env_int("SWARMLITE_BENCH_ZIPF_S", 100)) / 100.0;
  const size_t warm = static_cast<size_t>(env_int("SWARMLITE_BENCH_WARM", 4096));
  const size_t measured = static_cast<size_t>(env_int("SWARMLITE_BENCH_QUERIES", 2000));
  Zipf zipf(n, s);
  std::mt19937_64 rng(15);
  const std::vector<Query> warmup = queries(zipf, rng, warm);
  const std::vector<Query> timed = queries(zipf, rng, measured);
  auto params = [](const Query& q) {
    return q.range ? std::vector<Value>{Value{q.key}, Value{q.key}}
                   : std::vector<Value>{Value{q.key}};
  };

  const fs::path cache = dir / "cache";
  fs::remove_all(cache);
  client::LightClientOptions lo;
  // SWARMLITE_BENCH_DEFER=0: the head check before every query (A/B).
  lo.defer_head_check = env_int("SWARMLITE_BENCH_DEFER", 1) != 0;
  auto opened = client::LightClient::open(
      cache, {std::shared_ptr<client::PageSource>(client::http_page_source(peer.http(), 30s))}, pub,
      lo);
  if (!opened.ok()) die("opening the light client: " + opened.error().message);
  auto light = std::move(opened).value();
  client::VerifyingClient verifying(client::ClientOptions{.log_id = pub, .peers = {peer.http()}});
  auto plain = must(GuardedConnection::open("file:" + (dir / "r.db").string() + "?mode=ro"),
                    "opening the peer's file");

  auto run_light = [&](const std::vector<Query>& qs) {
    Figures f;
    const auto t0 = Clock::now();
    for (const Query& q : qs) {
      auto a = light->query(q.range ? kRange : kPoint, params(q));
      if (!a.ok()) die("light: " + a.error().message);
      f.bytes += static_cast<double>(a->stats.page_bytes + a->stats.proof_bytes);
      f.trips += static_cast<double>(a->stats.round_trips);
      f.pages += static_cast<double>(a->stats.pages_fetched);
    }
    f.us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    const double k = static_cast<double>(qs.size());
    return Figures{f.us / k, f.bytes / k, f.trips / k, f.pages / k};
  };
  auto run_verify = [&](const std::vector<Query>& qs) {
    Figures f;
    const auto t0 = Clock::now();
    for (const Query& q : qs) {
      auto a = verifying.query(q.range ? kRange : kPoint, params(q));
      if (!a.ok()) die("verify: " + a.error().message);
      f.bytes += static_cast<double>(a->proof.size());
      f.trips += 1;
      f.pages += static_cast<double>(a->pages);
    }
    f.us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    const double k = static_cast<double>(qs.size());
    return Figures{f.us / k, f.bytes / k, f.trips / k, f.pages / k};
  };
  auto run_plain = [&](const std::vector<Query>& qs) {
    const auto t0 = Clock::now();
    for (const Query& q : qs) {
      auto r = plain->query(q.range ? kRange : kPoint, params(q));
      if (!r.ok()) die("plain: " + r.error().to_string());
      benchmark::DoNotOptimize(r->rows);
    }
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() /
           static_cast<double>(qs.size());
  };
  auto run_rtt = [&](size_t k) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < k; ++i) benchmark::DoNotOptimize(http(peer.http(), "GET", "/status"));
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() /
           static_cast<double>(k);
  };

  // Cold queries: a new client per query, seeded or not, alternating so both
  // see the same load.
  const size_t colds = static_cast<size_t>(env_int("SWARMLITE_BENCH_COLD", 40));
  auto run_cold = [&](std::mt19937_64& r) {
    Figures f[2];
    for (size_t i = 0; i < 2 * colds; ++i) {
      const bool seed = i % 2 == 0;
      const Query q{r() % 5 == 0, 1 + static_cast<int64_t>(r() % static_cast<uint64_t>(n - 9))};
      const fs::path d = dir / fmt::format("cold-{}", i);
      fs::remove_all(d);
      client::LightClientOptions co;
      co.seed_with_proof = seed;
      auto c = client::LightClient::open(
          d, {std::shared_ptr<client::PageSource>(client::http_page_source(peer.http(), 30s))},
          pub, co);
      if (!c.ok()) die("opening a cold light client: " + c.error().message);
      const auto t0 = Clock::now();
      auto a = (*c)->query(q.range ? kRange : kPoint, params(q));
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      if (!a.ok()) die("cold light: " + a.error().message);
      if (seed && a->stats.seeded != 1) die("a cold query was not seeded");
      Figures& x = f[seed ? 0 : 1];
      x.us += us;
      x.bytes += static_cast<double>(a->stats.page_bytes + a->stats.proof_bytes);
      x.trips += static_cast<double>(a->stats.round_trips);
      x.pages += static_cast<double>(a->stats.pages_fetched);
      c->reset();
      fs::remove_all(d);
    }
    const double k = static_cast<double>(std::max<size_t>(colds, 1));
    for (Figures& x : f) x = Figures{x.us / k, x.bytes / k, x.trips / k, x.pages / k};
    return std::pair{f[0], f[1]};
  };

  for (auto _ : state) {
    const double load0 = load_average();
    std::mt19937_64 cold_rng(16);
    const auto [seeded, unseeded] = run_cold(cold_rng);
    const double load_cold = load_average();
    const Figures light_cold = run_light(warmup);
    (void)run_verify(warmup);
    (void)run_plain(warmup);
    const Figures l = run_light(timed);
    const Figures cached = run_light(timed);  // the same queries again: every page held
    const Figures v = run_verify(timed);
    const double p = run_plain(timed);
    const double rtt = run_rtt(500);
    // Longer warm-ups (SWARMLITE_BENCH_WARM_MORE, total queries, default
    // 16384,65536): more of the Zipf tail cached; after each, a pass of new
    // queries from the same distribution (never run before).
    struct Stage {
      size_t warmed;
      Figures f;
      double merged, reruns;
    };
    std::vector<Stage> stages;
    {
      const char* more = std::getenv("SWARMLITE_BENCH_WARM_MORE");
      std::string list = more ? more : "16384,65536";
      size_t warmed = warm + measured;  // the first pass warmed too
      for (size_t pos = 0; pos < list.size();) {
        size_t comma = list.find(',', pos);
        if (comma == std::string::npos) comma = list.size();
        const size_t total = std::stoul(list.substr(pos, comma - pos));
        pos = comma + 1;
        if (total > warmed) (void)run_light(queries(zipf, rng, total - warmed));
        warmed = std::max(warmed, total);
        const client::LightStats t0 = light->totals();
        const Figures f = run_light(queries(zipf, rng, measured));
        const client::LightStats d = light->totals() - t0;
        stages.push_back({warmed, f, static_cast<double>(d.merged_checks) / measured,
                          static_cast<double>(d.reruns) / measured});
        warmed += measured;
      }
    }
    // A write through the primary, then the hot key's query at the new head.
    const int64_t hot = zipf.key(rng);
    auto w = http(primary.http(), "POST", "/db/execute",
                  fmt::format(R"(["UPDATE t SET v = v + 1 WHERE id = {}"])", hot));
    if (w.status != 200) die("write: " + w.body);
    const uint64_t written = status_field(primary.http(), "log_size");
    light->options().min_size = written;
    const Figures moved = run_light({Query{false, hot}});
    const Figures after = run_light(timed);
    const double load1 = load_average();

    state.counters["light_bytes"] = l.bytes;
    state.counters["verify_bytes"] = v.bytes;
    state.counters["light_trips"] = l.trips;
    state.counters["light_us"] = l.us;
    state.counters["cached_us"] = cached.us;
    state.counters["cached_bytes"] = cached.bytes;
    state.counters["verify_us"] = v.us;
    state.counters["plain_us"] = p;
    state.counters["rtt_us"] = rtt;
    state.counters["write_bytes"] = moved.bytes;
    state.counters["load"] = load0;
    state.counters["cold_seeded_us"] = seeded.us;
    state.counters["cold_unseeded_us"] = unseeded.us;
    fmt::print(stderr,
               "\ncold query (new client, empty cache), {} of each, alternating; load {:.2f} -> "
               "{:.2f}\n",
               colds, load0, load_cold);
    fmt::print(stderr, "  per cold query   seeded (proof=1)   page by page   ratio\n");
    fmt::print(stderr, "  bytes           {:16.0f}  {:13.0f}   {:.2f}x\n", seeded.bytes,
               unseeded.bytes, seeded.bytes / std::max(unseeded.bytes, 1.0));
    fmt::print(stderr, "  round trips     {:16.2f}  {:13.2f}   {:.2f}x\n", seeded.trips,
               unseeded.trips, seeded.trips / std::max(unseeded.trips, 0.01));
    fmt::print(stderr, "  pages fetched   {:16.2f}  {:13.2f}\n", seeded.pages, unseeded.pages);
    fmt::print(stderr, "  wall µs         {:16.0f}  {:13.0f}   {:.2f}x\n", seeded.us, unseeded.us,
               seeded.us / std::max(unseeded.us, 1.0));
    fmt::print(stderr,
               "\nlight client over the network: {} rows, Zipf s={:.2f}, {} warm-up + {} measured "
               "queries (80 % points, 20 % 10-row ranges); load {:.2f} -> {:.2f}\n",
               n, s, warm, measured, load0, load1);
    fmt::print(stderr,
               "  cold (the warm-up itself): light {:.0f} µs, {:.0f} bytes, {:.2f} round "
               "trips, {:.2f} pages per query\n",
               light_cold.us, light_cold.bytes, light_cold.trips, light_cold.pages);
    fmt::print(stderr, "  per warm query     light      verify     plain   ratio\n");
    fmt::print(
        stderr,
        "  bytes          {:9.0f}  {:9.0f}         -   verify/light {:.1f}x (target >= 10x)\n",
        l.bytes, v.bytes, v.bytes / std::max(l.bytes, 1.0));
    fmt::print(stderr, "  round trips    {:9.2f}  {:9.2f}         -   (target <= 1)\n", l.trips,
               v.trips);
    fmt::print(stderr,
               "  pages fetched  {:9.2f}  {:9.2f}         -   (verify: pages in the proof)\n",
               l.pages, v.pages);
    fmt::print(stderr,
               "  wall µs        {:9.0f}  {:9.0f}  {:8.0f}   light/(plain+rtt) {:.2f} (target <= "
               "2), verify/light {:.2f}, rtt {:.0f} µs\n",
               l.us, v.us, p, l.us / (p + rtt), v.us / l.us, rtt);
    fmt::print(stderr,
               "  light, the same {} queries again (every page cached, head unchanged): {:.0f} µs "
               "= {:.2f}x (plain + rtt), {:.0f} bytes ({:.2f} pages, verify/light {:.1f}x), {:.2f} "
               "round trips\n",
               measured, cached.us, cached.us / (p + rtt), cached.bytes, cached.pages,
               v.bytes / std::max(cached.bytes, 1.0), cached.trips);
    for (const Stage& st : stages)
      fmt::print(stderr,
                 "  first pass after {} queries: {:.0f} bytes (verify/light {:.1f}x), {:.2f} round "
                 "trips, {:.2f} pages, {:.0f} µs per query; head checks merged into a fetch {:.2f}, "
                 "re-runs {:.2f} per query\n",
                 st.warmed, st.f.bytes, v.bytes / std::max(st.f.bytes, 1.0), st.f.trips,
                 st.f.pages, st.f.us, st.merged, st.reruns);
    fmt::print(
        stderr,
        "  after a one-row write: the hot key's query fetched {:.0f} bytes ({:.0f} pages) in "
        "{:.0f} round trips, {:.0f} µs; the next {} queries {:.0f} bytes, {:.2f} round "
        "trips, {:.0f} µs each\n",
        moved.bytes, moved.pages, moved.trips, moved.us, measured, after.bytes, after.trips,
        after.us);
  }
  peer.stop();
  primary.stop();
}
BENCHMARK(BM_LightNetwork)->Name("light_net")->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace
}  // namespace swarmlite

BENCHMARK_MAIN();
