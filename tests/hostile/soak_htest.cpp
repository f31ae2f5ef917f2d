// Soak under live replication (issue 10 §1 "Reads keep working under write
// load"): a primary and two peers (one syncing from the primary, one from the
// first peer) while a writer sends a steady ~200 single-row writes/s, and each
// peer serves plain reads and proof=1 reads (min_size = the size of the last
// answer from that peer) at the same time: point queries by rowid as fast as
// they come, and a whole-table `count(*)` once a second. Every read must succeed and every
// proof must verify with swarmlite::Verifier against the primary's key.
// Before the fix ~60% of the proof reads failed with 503 "cannot prove right
// now: … applied N entries but the newest signed head covers N+1", and plain
// reads sometimes with "no state root known for size N".
//
// Memory (VmRSS from /proc/PID/status) and open fds (/proc/PID/fd) of every
// node are sampled every second. Marks at the end of a warm-up (a sixth of the
// run), half-way and at the end pause the whole-table proofs (writes, plain
// reads and point proofs go on) and take the lowest RSS of the next 12 samples,
// so a mark sees what stays after the heap trimmer (every 10 s) ran, not the
// freed buffers of the last whole-table proof: those grow with the database, and
// a 600 s CI run that marked between proofs saw a peer "grow" 12.7 MB over its
// second half with 11.9 MB of it freed heap. Over the second half they must stay flat: RSS may grow only by
// what the node keeps per log entry (kLogBytesPerEntry: about nothing for the
// log since issue #10, docs/operations.md "Memory"), by the database file's
// growth in the page caches not yet full and by kSlackBytes; fds by kFdSlack (requests in
// flight). Before the fix freed heap stayed resident (p1 of a 300 s run:
// 14.8 → 23.0 → 33.9 MB, 20 MB of it freed but kept by malloc), and the
// run only bounded growth to +64 MB. The peers' WAL files must stay bounded.
// The figures are printed, with each node's heap and SQLite memory (/metrics).
//
// Duration: SWARMLITE_SOAK_SECONDS (default 60; SWARMLITE_LONG=1: 600).
// SWARMLITE_KEEP=1 keeps the data directory and logs.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/proc/child_process.h"
#include "core/keys.h"
#include "net/http_client.h"
#include "sqlbridge/proof/verifier.h"

using namespace swarmlite;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

namespace {

const fs::path kBin = SWARMLITE_BIN;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 10);
}
bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& tag) {
    path = fs::temp_directory_path() / fmt::format("swl-{}-{}", tag, ::getpid());
    fs::remove_all(path);
    fs::create_directories(path);
    MESSAGE("data and logs in ", path.string());
  }
  ~ScratchDir() {
    if (env_flag("SWARMLITE_KEEP")) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

net::HttpUrl url_of(const std::string& base) {
  auto u = net::parse_http_url(base);
  REQUIRE_MESSAGE(u.ok(), u.error_text());
  return u.value();
}

Result<net::HttpResponse> call(const net::HttpUrl& url, const std::string& method,
                               const std::string& target, const std::string& body = {},
                               const std::string& accept = {}) {
  net::HttpRequest rq;
  rq.method = method;
  rq.target = target;
  rq.body = body;
  rq.accept = accept;
  net::HttpClientOptions o;
  o.timeout = 30s;
  return net::http_call(url, rq, o);
}

std::string url_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// Resident memory (kB) and open fds of a process.
struct Usage {
  uint64_t rss_kb = 0;
  uint64_t anon_kb = 0;  // RssAnon: heap and stacks
  uint64_t fds = 0;
};
Usage usage_of(pid_t pid) {
  Usage u;
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) u.rss_kb = std::strtoull(line.c_str() + 6, nullptr, 10);
    if (line.rfind("RssAnon:", 0) == 0) u.anon_kb = std::strtoull(line.c_str() + 8, nullptr, 10);
  }
  std::error_code ec;
  for (auto it = fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++u.fds;
  }
  return u;
}

uint64_t file_size_or_0(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// Memory a node may add per log entry it stores, besides its page caches filling
// with the database (below). The log keeps ≈ 1-2 bytes per entry (its tree's top
// levels; docs/operations.md "Memory"); the rest is the state tree growing with
// the database's pages and allocator noise. Until issue #10 the log kept ≈ 112
// bytes per entry (a tree of every node, an index row per entry) and these bounds
// were 160 and 400 (a 600 s CI run saw peers grow ≈ 350 bytes per entry while
// proving `count(*)` over the whole table in the main proof loop). Measured after
// it (60 s, 200 writes/s, load 11-15): primary RSS +252 kB over 6,009 entries, of
// which its write cache's share of the database +212 kB (≈ 7 bytes per entry
// left); peers +484 and +552 kB over 6,011 entries with their read caches
// (≈ 80-90 bytes per entry all counted). A 600 s run (60,000 entries in its
// second half) fails with the old ≈ 150/350 bytes per entry; the 60 s default is
// too short to tell them from kSlackBytes.
constexpr uint64_t kLogBytesPerEntry = 32;
constexpr uint64_t kPeerBytesPerEntry = 64;
// Page caches fill with the database as it grows, up to their caps: the write
// connection's (16 MiB) and those of the read connections that may be open at
// once (4 plain reads, two pins of 2 connections) at SQLite's default 2000 KiB each
// (docs/operations.md "Memory").
constexpr uint64_t kWriteCacheBytes = 16 << 20;
constexpr uint64_t kReadCacheBytes = 2000 << 10;
constexpr uint64_t kReadConnections = 4 + 2 * 2;
// Allocator and buffer noise allowed over the second half on top of that (and a
// whole-table proof in flight, ≈ the database's size in a few copies).
constexpr uint64_t kSlackBytes = 4 << 20;
// What a whole-table proof carries besides the table's pages (page numbers,
// the state multiproof, the head and log path).
constexpr uint64_t kProofOverheadBytes = 64 << 10;
constexpr uint64_t kFdSlack = 4;

// What a node holds at one moment: its usage, its log and database sizes.
struct Mark {
  Usage usage;
  uint64_t log_size = 0;
  uint64_t db_bytes = 0;
  std::string memory;  // the memory gauges of its /metrics, for the report
};

struct Node {
  std::string name;
  fs::path db;
  std::unique_ptr<proc::ChildProcess> proc;
  std::string http() const { return proc->http(); }
  Mark warm, mid, last;
  Usage peak;
};
// Samples (one a second) a mark takes the lowest RSS of, with no whole-table
// proof in flight: more than the heap trimmer's period (10 s,
// docs/operations.md "Memory"), so at least one comes after a trim.
constexpr int kQuietSamples = 12;

// Errors of one kind: a count and the first few messages.
struct Failures {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  std::mutex mu;
  std::atomic<uint64_t> n{0};
  std::vector<std::string> first;
  void add(const std::string& what) {
    ++n;
    std::lock_guard lock(mu);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    if (first.size() < 5) first.push_back(fmt::format("at {} ms: {}", ms.count(), what));
  }
  std::string describe() {
    std::lock_guard lock(mu);
    std::string s;
    for (const auto& f : first) s += "\n  " + f;
    return s;
  }
};

}  // namespace

TEST_CASE("soak: plain and proved reads at two peers never fail under steady writes") {
  const uint64_t seconds = env_u64("SWARMLITE_SOAK_SECONDS", env_flag("SWARMLITE_LONG") ? 600 : 60);
  const uint64_t rate = env_u64("SWARMLITE_SOAK_WRITES_PER_SECOND", 200);
  ScratchDir dir("soak");
  proc::run_to_end("keygen", kBin, {"keygen", "--out", (dir.path / "keys").string()},
                   dir.path / "keygen.log");
  auto pub = load_public_key((dir.path / "keys" / "primary.pub").string());
  REQUIRE_MESSAGE(pub.ok(), pub.error_text());

  std::vector<std::unique_ptr<Node>> nodes;
  auto start = [&](const std::string& name, std::vector<std::string> args) {
    auto n = std::make_unique<Node>();
    n->name = name;
    n->db = dir.path / (name + ".db");
    args.insert(args.end(), {"--db", n->db.string(), "--listen", "127.0.0.1:0", "--http",
                             "127.0.0.1:0"});
    n->proc = std::make_unique<proc::ChildProcess>(name, kBin, args, dir.path / (name + ".log"));
    n->proc->wait_ready(60s);
    nodes.push_back(std::move(n));
    return nodes.back().get();
  };
  Node* primary = start("primary", {"primary", "--key", (dir.path / "keys" / "primary.key").string(),
                                    "--max-outbound", "0"});
  const std::string pubfile = (dir.path / "keys" / "primary.pub").string();
  Node* p1 = start("p1", {"peer", "--pub", pubfile, "--from", primary->proc->listen()});
  Node* p2 = start("p2", {"peer", "--pub", pubfile, "--from", p1->proc->listen(), "--max-outbound", "1"});
  const std::vector<Node*> peers{p1, p2};

  auto purl = url_of(primary->http());
  {
    auto r = call(purl, "POST", "/db/execute",
                  R"J(["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP)"])J");
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    REQUIRE_MESSAGE(r->status == 200, r->body);
  }

  // Reads start once both peers hold the table (before that "no such table" is right).
  auto size_of = [&](Node* n) -> uint64_t {
    auto r = call(url_of(n->http()), "GET", "/status");
    if (!r.ok() || r->status != 200) return 0;
    auto j = json::parse(r->body, nullptr, false);
    return j.is_discarded() ? 0 : j.value("size", uint64_t{0});
  };
  const uint64_t created = size_of(primary);
  {
    auto until = std::chrono::steady_clock::now() + 120s;
    for (Node* p : peers) {
      while (size_of(p) < created && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(100ms);
      }
      REQUIRE_MESSAGE(size_of(p) >= created, p->name, " did not get the table");
    }
  }

  std::atomic<bool> done{false};
  std::atomic<uint64_t> acked{0}, plain_ok{0}, proofs_ok{0}, full_proofs_ok{0};
  std::atomic<uint64_t> full_proof_max_bytes{0};  // the largest whole-table proof
  std::atomic<bool> full_paused{false};            // set while a mark samples memory
  std::atomic<int> full_in_flight{0};
  Failures write_failures, plain_failures, proof_failures;

  // The writer: single-row INSERTs, paced to `rate` per second.
  std::thread writer([&] {
    auto t0 = std::chrono::steady_clock::now();
    uint64_t i = 0;
    while (!done) {
      std::this_thread::sleep_until(t0 + std::chrono::microseconds(1'000'000 * i / rate));
      json body = json::array({json::array({"INSERT INTO t(v) VALUES (?)", fmt::format("row {}", i)})});
      auto r = call(purl, "POST", "/db/execute", body.dump());
      if (!r.ok() || r->status != 200 || r->body.find("\"error\"") != std::string::npos) {
        write_failures.add(r.ok() ? fmt::format("HTTP {}: {}", r->status, r->body) : r.error().to_string());
      } else {
        ++acked;
      }
      ++i;
    }
  });

  std::vector<std::thread> readers;
  for (Node* peer : peers) {
    auto url = url_of(peer->http());
    readers.emplace_back([&, url, peer] {  // plain reads
      const std::string q = fmt::format("/db/query?min_size={}&q=", created) +
                            url_encode("SELECT count(*), max(id) FROM t");
      while (!done) {
        auto r = call(url, "GET", q);
        if (!r.ok() || r->status != 200 || r->body.find("\"error\"") != std::string::npos) {
          plain_failures.add(peer->name + ": " +
                             (r.ok() ? fmt::format("HTTP {}: {}", r->status, r->body) : r.error().to_string()));
        } else {
          ++plain_ok;
        }
        std::this_thread::sleep_for(5ms);
      }
    });
    // Proved reads, verified, never older than the last one. `full` proves the
    // whole table (every page: the proof grows with the database); the main loop
    // asks point queries by rowid, whose page set does not grow with the table, so
    // the memory bound below is not about proofs in flight. The whole-table proof
    // runs once a second beside it (at most one in flight per peer, its size
    // bounded by the database file's).
    auto prove = [&, url, peer](uint64_t& seen, const json& stmt) {
      const std::string sql = stmt[0].get<std::string>();
      auto r = call(url, "POST", fmt::format("/db/query?proof=1&min_size={}", seen),
                    json::array({stmt}).dump(), "application/octet-stream");
      if (!r.ok() || r->status != 200) {
        proof_failures.add(peer->name + ": " +
                           (r.ok() ? fmt::format("HTTP {}: {}", r->status, r->body) : r.error().to_string()));
        return false;
      }
      VerifyOptions vo;
      vo.min_size = seen;
      vo.expected_sql = sql;
      if (stmt.size() > 1) vo.expected_params = std::vector<Value>{Value{stmt[1].get<int64_t>()}};
      auto v = Verifier::verify_bytes(*pub, ByteView(reinterpret_cast<const uint8_t*>(r->body.data()),
                                                     r->body.size()), vo);
      if (!v.ok()) {
        proof_failures.add(peer->name + ": does not verify: " + v.error().to_string());
        return false;
      }
      seen = v->head.size;
      uint64_t biggest = full_proof_max_bytes.load();
      while (stmt.size() == 1 && r->body.size() > biggest &&
             !full_proof_max_bytes.compare_exchange_weak(biggest, r->body.size())) {
      }
      return true;
    };
    readers.emplace_back([&, prove] {  // point queries by rowid
      uint64_t seen = created;  // the table exists from there on: a client asks for no less
      uint64_t k = 0;
      while (!done) {
        json stmt = json::array({"SELECT id, v FROM t WHERE id = ?", static_cast<int64_t>(1 + k++ % 50)});
        if (prove(seen, stmt)) ++proofs_ok;
      }
    });
    readers.emplace_back([&, prove] {  // the whole table, once a second, unless a mark paused it
      uint64_t seen = created;
      while (!done) {
        ++full_in_flight;  // before looking at full_paused: a mark waits for 0 after setting it
        if (!full_paused && prove(seen, json::array({"SELECT count(*), max(id) FROM t"}))) ++full_proofs_ok;
        --full_in_flight;
        for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(100ms);
      }
    });
  }

  // Sample usage every second; mark the end of the warm-up (a sixth of the
  // run), the middle and the end.
  auto sample = [&](Node* n) {
    Usage u = usage_of(n->proc->pid());
    n->peak.rss_kb = std::max(n->peak.rss_kb, u.rss_kb);
    n->peak.fds = std::max(n->peak.fds, u.fds);
    return u;
  };
  auto mark_all = [&](Mark Node::*which) {
    full_paused = true;
    while (full_in_flight > 0) std::this_thread::sleep_for(10ms);
    std::vector<Usage> low(nodes.size());
    for (int s = 0; s < kQuietSamples; ++s) {
      std::this_thread::sleep_for(1s);
      for (size_t i = 0; i < nodes.size(); ++i) {
        Usage u = sample(nodes[i].get());
        if (s == 0 || u.rss_kb < low[i].rss_kb) low[i] = u;
      }
    }
    for (size_t i = 0; i < nodes.size(); ++i) {
      Node* n = nodes[i].get();
      Mark& m = n->*which;
      m.usage = low[i];
      m.usage.fds = sample(n).fds;
      auto r = call(url_of(n->http()), "GET", "/status");
      if (r.ok() && r->status == 200) {
        auto j = json::parse(r->body, nullptr, false);
        if (!j.is_discarded()) m.log_size = j.value("log_size", uint64_t{0});
      }
      m.db_bytes = file_size_or_0(n->db);
      auto mr = call(url_of(n->http()), "GET", "/metrics");
      if (mr.ok() && mr->status == 200) {
        std::istringstream in(mr->body);
        for (std::string line; std::getline(in, line);) {
          const std::pair<std::string, const char*> gauges[] = {
              {"swarmlite_heap_in_use_bytes ", "heap in use"},
              {"swarmlite_heap_free_bytes ", "heap free"},
              {"swarmlite_sqlite_memory_bytes ", "SQLite"}};
          for (const auto& g : gauges) {
            if (line.rfind(g.first, 0) == 0) {
              m.memory += fmt::format(", {} {} kB", g.second,
                                      static_cast<uint64_t>(std::strtod(line.c_str() + g.first.size(), nullptr)) / 1024);
            }
          }
        }
      }
    }
    full_paused = false;
  };
  const auto t0 = std::chrono::steady_clock::now();
  const auto warm = t0 + std::chrono::seconds(seconds) / 6;
  const auto half = t0 + std::chrono::seconds(seconds) / 2;
  bool warmed = false, halved = false;
  uint64_t max_wal = 0;
  while (std::chrono::steady_clock::now() < t0 + std::chrono::seconds(seconds)) {
    std::this_thread::sleep_for(1s);
    for (auto& n : nodes) sample(n.get());
    for (Node* p : peers) max_wal = std::max(max_wal, file_size_or_0(p->db.string() + "-wal"));
    const auto now = std::chrono::steady_clock::now();
    if (now >= warm && !warmed) {
      mark_all(&Node::warm);
      warmed = true;
    } else if (now >= half && !halved) {
      mark_all(&Node::mid);
      halved = true;
    }
  }
  mark_all(&Node::last);
  const uint64_t elapsed = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count());
  done = true;
  writer.join();
  for (auto& t : readers) t.join();

  MESSAGE(fmt::format("{} s: {} writes acked ({}/s), {} plain reads, {} verified point proofs and {} "
                      "whole-table ones (largest {} bytes); failures: {} writes, {} plain, {} proofs",
                      elapsed, acked.load(), acked.load() / std::max<uint64_t>(elapsed, 1), plain_ok.load(), proofs_ok.load(),
                      full_proofs_ok.load(), full_proof_max_bytes.load(), write_failures.n.load(),
                      plain_failures.n.load(), proof_failures.n.load()));
  for (auto& n : nodes) {
    MESSAGE(fmt::format("{}: RSS {} → {} → {} kB (anon {} → {} → {}) after warm-up, half-way, at the end "
                        "(peak {}); fds {} → {} → {} (peak {}); log {} → {} → {} entries; db {} → {} "
                        "→ {} kB; at the end{}",
                        n->name, n->warm.usage.rss_kb, n->mid.usage.rss_kb, n->last.usage.rss_kb,
                        n->warm.usage.anon_kb, n->mid.usage.anon_kb, n->last.usage.anon_kb,
                        n->peak.rss_kb, n->warm.usage.fds, n->mid.usage.fds, n->last.usage.fds,
                        n->peak.fds, n->warm.log_size, n->mid.log_size, n->last.log_size,
                        n->warm.db_bytes / 1024, n->mid.db_bytes / 1024, n->last.db_bytes / 1024,
                        n->last.memory));
  }
  MESSAGE("largest peer WAL seen: ", max_wal, " bytes");
  CHECK_MESSAGE(plain_failures.n == 0, "plain reads failed:", plain_failures.describe());
  CHECK_MESSAGE(proof_failures.n == 0, "proof reads failed:", proof_failures.describe());
  CHECK_MESSAGE(write_failures.n == 0, "writes failed:", write_failures.describe());
  CHECK(proofs_ok > 0);
  CHECK(full_proofs_ok > 0);
  CHECK(plain_ok > 0);
  // A whole-table proof carries every page of the table once, plus the log and
  // state paths: bounded by the largest peer database file and kProofOverheadBytes.
  uint64_t largest_db = 0;
  for (Node* p : peers) largest_db = std::max(largest_db, p->last.db_bytes);
  CHECK_MESSAGE(full_proof_max_bytes <= largest_db + kProofOverheadBytes, "a whole-table proof of ",
                full_proof_max_bytes.load(), " bytes, over the ", largest_db, "-byte database");
  CHECK(acked >= seconds);  // a liveness floor (one write a second), not a speed assertion
  for (auto& n : nodes) {
    // Flat over the second half: growth bounded by what was written (log
    // entries, database pages) plus slack. Not under AddressSanitizer: its
    // quarantine holds freed memory (256 MiB by default), so RSS grows with the
    // number of frees, not with leaks (LeakSanitizer checks those at exit).
    const uint64_t entries = n->last.log_size - std::min(n->last.log_size, n->mid.log_size);
    auto cached = [&](uint64_t cap) {  // growth of min(db, cap)
      return std::min(n->last.db_bytes, cap) - std::min({n->last.db_bytes, n->mid.db_bytes, cap});
    };
    const uint64_t db_growth = cached(kWriteCacheBytes) + kReadConnections * cached(kReadCacheBytes);
    const uint64_t per_entry = n->name == "primary" ? kLogBytesPerEntry : kPeerBytesPerEntry;
    const uint64_t allowed_kb = (kSlackBytes + per_entry * entries + db_growth) / 1024;
    const uint64_t grew_kb = n->last.usage.rss_kb - std::min(n->last.usage.rss_kb, n->mid.usage.rss_kb);
    if (!kSanitized) {
      CHECK_MESSAGE(grew_kb <= allowed_kb, n->name, " RSS grew by ", grew_kb, " kB over the second half, over the ",
                    allowed_kb, " kB allowed for ", entries, " entries and ", db_growth / 1024,
                    " kB of page caches");
    }
    // Against the higher of the warm-up and half-way counts: each is one
    // sample, and a peer's fds dip while its connections to other nodes are
    // re-made (found in CI under load: p2 38 after the warm-up, 33 half-way,
    // 39 at the end). A leak grows past both.
    const uint64_t fds_before = std::max(n->warm.usage.fds, n->mid.usage.fds);
    CHECK_MESSAGE(n->last.usage.fds <= fds_before + kFdSlack, n->name, " fds grew from ",
                  n->warm.usage.fds, " (after the warm-up) and ", n->mid.usage.fds,
                  " (half-way) to ", n->last.usage.fds);
  }
  CHECK(max_wal < 64u << 20);

  // And the peers caught up with everything acknowledged.
  const uint64_t want = size_of(primary);
  auto deadline = std::chrono::steady_clock::now() + 120s;
  for (Node* p : peers) {
    while (size_of(p) < want && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(200ms);
    CHECK_MESSAGE(size_of(p) >= want, p->name, " did not catch up to ", want);
  }
}
