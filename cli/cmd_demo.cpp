// swarmlite demo [--keep] [--dir DIR]: the whole system on loopback in one
// process tree. Makes a key, starts a primary and a relay chain of three peers
// (primary -> peer1 -> peer2 -> peer3), writes a small shop workload through
// the primary's HTTP API, shows the peers catching up, verifies queries from
// every peer locally with the log's public key, then starts a peer that
// tampers with its proofs and shows the answer rejected with the reason.
// Exit 0 only when every expected outcome happened (the tampered proof MUST be
// rejected). Every child is stopped on every path (ChildProcess's destructor).
#ifdef SWARMLITE_HAVE_NET  // the network layer is optional (-DSWARMLITE_NET=OFF)
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/proc/child_process.h"
#include "core/keys.h"
#include "client/light_client.h"
#include "client/page_source_http.h"
#include "client/report_format.h"
#include "client/verifying_client.h"
#include "net/http_client.h"
#include "net/http_json.h"

namespace swarmlite::cli {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::atomic<bool> g_interrupted{false};
extern "C" void on_demo_signal(int) { g_interrupted.store(true); }

void check_interrupted() {
  if (g_interrupted.load()) throw CliError(130, "demo: interrupted");
}

// One child `swarmlite <subcommand …>` (this same executable), stopped by its
// destructor (SIGTERM, then SIGKILL); errors become CliError for main().
class ChildProcess : public proc::ChildProcess {
 public:
  ChildProcess(std::string name, const std::vector<std::string>& args, const std::filesystem::path& log)
      : proc::ChildProcess(std::move(name), "/proc/self/exe", args, log, check_interrupted) {}
  void wait_ready(std::chrono::milliseconds timeout) {
    try {
      proc::ChildProcess::wait_ready(timeout);
    } catch (const CliError&) {
      throw;
    } catch (const std::runtime_error& e) {
      throw CliError(1, std::string("demo: ") + e.what());
    }
  }
};

// Runs `swarmlite ARGS` to completion (up to 20 s) with stdout+stderr into `log`.
void run_to_end(const std::string& name, const std::vector<std::string>& args, const std::filesystem::path& log) {
  try {
    proc::run_to_end(name, "/proc/self/exe", args, log, 20s);
  } catch (const std::runtime_error& e) {
    throw CliError(1, std::string("demo: ") + e.what());
  }
}

// --- HTTP --------------------------------------------------------------------

json http_json(const std::string& base, const std::string& method, const std::string& target,
               const std::string& body = "") {
  auto url = must(net::parse_http_url(base), "demo: url " + base);
  net::HttpRequest req;
  req.method = method;
  req.target = target;
  req.body = body;
  net::HttpClientOptions co;
  co.timeout = 20s;
  auto res = must(net::http_call(url, req, co), fmt::format("demo: {} {}{}", method, base, target));
  json doc = json::parse(res.body, nullptr, false);
  if (res.status != 200 || doc.is_discarded()) {
    throw CliError(1, fmt::format("demo: {} {}{} answered HTTP {}: {}", method, base, target, res.status,
                                  res.body.substr(0, 400)));
  }
  return doc;
}

// The node's log size from its /status (applied entries for a peer).
uint64_t node_size(const std::string& base) {
  json st = http_json(base, "GET", "/status");
  for (const char* key : {"applied_size", "log_size", "size"}) {
    if (st.contains(key) && st[key].is_number_unsigned()) return st[key].get<uint64_t>();
  }
  if (st.contains("head") && st["head"].is_object() && st["head"].contains("size") && st["head"]["size"].is_number())
    return st["head"]["size"].get<uint64_t>();
  throw CliError(1, fmt::format("demo: {}/status has no size field: {}", base, st.dump().substr(0, 300)));
}

// POSTs a batch to /db/execute (?transaction: one log entry) and checks every statement.
void execute(const std::string& primary, const json& statements, bool transaction) {
  json doc = http_json(primary, "POST", transaction ? "/db/execute?transaction" : "/db/execute", statements.dump());
  if (!doc.contains("results") || !doc["results"].is_array())
    throw CliError(1, "demo: /db/execute answered without results: " + doc.dump().substr(0, 300));
  for (size_t i = 0; i < doc["results"].size(); ++i) {
    const auto& r = doc["results"][i];
    if (r.contains("error"))
      throw CliError(1, fmt::format("demo: statement {} failed: {} ({})", i + 1, r["error"].dump(),
                                    statements[i].dump().substr(0, 200)));
  }
}

// --- workload ----------------------------------------------------------------

struct Workload {
  size_t customers = 0, products = 0, orders = 0, entries = 0;
};

Workload write_shop(const std::string& primary) {
  Workload w;
  std::mt19937_64 rng(20261125);  // the demo's own data is the same every run; random() in SQL is the log's
  auto pick = [&](size_t n) { return static_cast<int64_t>(rng() % n); };
  execute(primary,
          json::array({"CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, "
                       "city TEXT, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                       "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL, "
                       "stock INTEGER NOT NULL)",
                       "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), "
                       "product_id INTEGER NOT NULL REFERENCES products(id), qty INTEGER NOT NULL, "
                       "created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, coupon TEXT)",
                       "CREATE INDEX orders_by_customer ON orders(customer_id)"}),
          true);
  ++w.entries;

  static const char* kFirst[] = {"Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Ken", "Radia", "Donald", "Margaret"};
  static const char* kLast[] = {"Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen", "Thompson", "Perlman", "Knuth", "Hamilton"};
  static const char* kCity[] = {"Lisbon", "Oslo", "Kyoto", "Recife", "Tartu", "Quito", "Accra", "Perth"};
  static const char* kProduct[] = {"teapot", "notebook", "fountain pen", "desk lamp", "headphones", "backpack",
                                   "water bottle", "keyboard", "mug", "plant pot", "bike light", "umbrella"};

  json products = json::array();
  for (const char* p : kProduct) {
    products.push_back(json::array({"INSERT INTO products(name, price_cents, stock) VALUES(?, ?, ?)", p,
                                    300 + pick(9000), 50 + pick(200)}));
    ++w.products;
  }
  execute(primary, products, true);
  ++w.entries;

  for (int batch = 0; batch < 4; ++batch) {  // 4 x 30 customers
    json b = json::array();
    for (int i = 0; i < 30; ++i) {
      size_t n = w.customers + 1;
      std::string name = fmt::format("{} {}", kFirst[pick(10)], kLast[pick(10)]);
      b.push_back(json::array({"INSERT INTO customers(name, email, city) VALUES(?, ?, ?)", name,
                               fmt::format("customer{}@example.com", n), kCity[pick(8)]}));
      ++w.customers;
    }
    execute(primary, b, true);
    ++w.entries;
  }

  for (int batch = 0; batch < 12; ++batch) {  // 12 x 25 orders; qty and coupon from the log's random()
    json b = json::array();
    for (int i = 0; i < 25; ++i) {
      int64_t customer = 1 + pick(w.customers), product = 1 + pick(w.products);
      b.push_back(json::array(
          {"INSERT INTO orders(customer_id, product_id, qty, coupon) VALUES(?, ?, 1 + abs(random() % 4), "
           "CASE WHEN random() % 5 = 0 THEN hex(randomblob(4)) END)",
           customer, product}));
      b.push_back(json::array({"UPDATE products SET stock = stock - 1 WHERE id = ? AND stock > 0", product}));
      ++w.orders;
    }
    execute(primary, b, true);
    ++w.entries;
  }
  // A few single writes: each statement is its own log entry.
  json singles = json::array();
  for (int i = 0; i < 5; ++i)
    singles.push_back(json::array({"UPDATE customers SET city = ? WHERE id = ?", kCity[pick(8)], 1 + pick(w.customers)}));
  execute(primary, singles, false);
  w.entries += singles.size();
  return w;
}

// --- catch-up ----------------------------------------------------------------

struct PeerRef {
  std::string name;
  ChildProcess* proc;
};

// Polls the peers' /status until each has applied `target` entries; one line
// redrawn in place on a terminal, plain lines (on change, at most 1/s) otherwise.
void wait_caught_up(const std::vector<PeerRef>& peers, uint64_t target, std::chrono::seconds timeout) {
  const bool tty = isatty(STDOUT_FILENO);
  auto deadline = Clock::now() + timeout;
  auto start = Clock::now();
  std::string last;
  auto last_print = Clock::now() - 10s;
  for (;;) {
    check_interrupted();
    std::vector<uint64_t> sizes;
    bool all = true;
    std::string line = "catch-up:";
    for (const auto& p : peers) {
      uint64_t s = 0;
      try {
        s = node_size(p.proc->http());
      } catch (const CliError&) {
        s = 0;  // not answering yet; the deadline decides
      }
      all = all && s >= target;
      line += fmt::format("  {} {}/{}", p.name, std::min(s, target), target);
    }
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    line += fmt::format("  ({:.1f}s)", secs);
    if (tty) {
      fmt::print("\r{}\x1b[K", line);
      std::fflush(stdout);
    } else if (all || (line.substr(0, line.rfind("  (")) != last && Clock::now() - last_print >= 1s)) {
      fmt::print("{}\n", line);
      last = line.substr(0, line.rfind("  ("));
      last_print = Clock::now();
    }
    if (all) {
      if (tty) fmt::print("\n");
      return;
    }
    if (Clock::now() > deadline) {
      if (tty) fmt::print("\n");
      std::string detail;
      for (const auto& p : peers) detail += fmt::format("{} log tail:\n{}", p.name, p.proc->log_tail(6));
      throw CliError(1, fmt::format("demo: peers did not reach size {} within {}s\n{}", target, timeout.count(), detail));
    }
    std::this_thread::sleep_for(100ms);
  }
}

// --- verified queries ----------------------------------------------------------

struct DemoQuery {
  std::string title;
  std::string sql;
  std::vector<Value> params;
};

// The verified rows, indented under the query line (no rule, no row count).
void print_rows(const client::VerifiedAnswer& a) {
  client::TableStyle style;
  style.indent = "      ";
  style.header_rule = false;
  style.row_count = false;
  style.reals_fixed2 = true;
  std::fputs(client::format_table(a.columns, a.rows, style).c_str(), stdout);
}

// Asks `peer` for the query with a proof at >= the client's min_size and
// verifies it. A peer that gives no usable answer (transport, HTTP error, no
// proof) stops the demo; a proof that does not verify is the returned error.
client::ClientResult<client::VerifiedAnswer> ask_and_verify(client::VerifyingClient& c, const std::string& peer,
                                                            const DemoQuery& q) {
  auto v = c.query_peer(peer, q.sql, q.params);
  if (!v.ok() && (!v.error().is_verification_failure() || v.error().kind == client::ClientErrorKind::no_proof))
    throw CliError(1, "demo: " + v.error().message);
  return v;
}

// How the demo shows a rejected answer: the verifier's own error when there is one.
std::string rejection(const client::ClientError& e) { return e.cause ? e.cause->to_string() : e.to_string(); }

std::vector<DemoQuery> demo_queries(size_t i) {
  return {
      {"point lookup", "SELECT id, name, email, city FROM customers WHERE id = ?", {Value{int64_t(7 + 31 * i)}}},
      {"aggregate", "SELECT count(*) AS orders, sum(qty) AS items, count(coupon) AS with_coupon FROM orders", {}},
      {"join", "SELECT p.name AS product, sum(o.qty) AS sold, round(sum(o.qty * p.price_cents) / 100.0, 2) AS revenue "
               "FROM orders o JOIN products p ON p.id = o.product_id GROUP BY p.id ORDER BY sold DESC, p.id LIMIT 3",
       {}},
  };
}

// --- the demo ----------------------------------------------------------------

struct DemoArgs {
  bool keep = false;
  std::string dir;
};

void step(const std::string& text) { fmt::print("\n== {}\n", text); }

void run_demo(const DemoArgs& a) {
  struct sigaction sa {};
  sa.sa_handler = on_demo_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a closed stdout (`| head`) becomes a write error, not a kill
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const auto t0 = Clock::now();

  namespace fs = std::filesystem;
  fs::path dir;
  bool remove_dir = false;
  if (!a.dir.empty()) {
    dir = a.dir;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw CliError(1, fmt::format("demo: cannot create {}: {}", dir.string(), ec.message()));
  } else {
    std::string tmpl = (fs::temp_directory_path() / "swarmlite-demo-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw CliError(1, fmt::format("demo: mkdtemp {}: {}", tmpl, strerror(errno)));
    dir = tmpl;
    remove_dir = !a.keep;
  }
  // Removes the temp dir on every exit path, after the children (declared later) stopped.
  struct DirGuard {
    fs::path p;
    bool on;
    ~DirGuard() {
      std::error_code ec;
      if (on) fs::remove_all(p, ec);
    }
  } dir_guard{dir, remove_dir};
  fmt::print("swarmlite demo: data in {}{}\n", dir.string(), remove_dir ? " (removed at the end; --keep keeps it)" : "");

  step("1. key pair for the primary");
  run_to_end("keygen", {"keygen", "--out", (dir / "keys").string()}, dir / "keygen.log");
  PublicKey pub = must(load_public_key((dir / "keys" / "primary.pub").string()), "demo: reading the public key");
  fmt::print("   log id (public key): {}\n", pub.hex());

  std::vector<std::unique_ptr<ChildProcess>> procs;  // destroyed (= stopped) in reverse order on any exit
  auto start_node = [&](const std::string& name, std::vector<std::string> args) -> ChildProcess& {
    args.insert(args.end(), {"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"});
    procs.push_back(std::make_unique<ChildProcess>(name, args, dir / (name + ".log")));
    auto& p = *procs.back();
    p.wait_ready(20s);
    fmt::print("   {:<8} peer protocol {:<21} HTTP {}   (log: {})\n", name, p.listen(), p.http(),
               (dir / (name + ".log")).string());
    return p;
  };

  step("2. primary and a relay chain of three peers: primary -> peer1 -> peer2 -> peer3");
  auto& primary = start_node("primary", {"primary", "--db", (dir / "primary.db").string(), "--key",
                                         (dir / "keys" / "primary.key").string()});
  const std::string pubfile = (dir / "keys" / "primary.pub").string();
  std::vector<PeerRef> peers;
  std::string from = primary.listen();
  for (int i = 1; i <= 3; ++i) {
    std::string name = fmt::format("peer{}", i);
    auto& p = start_node(name, {"peer", "--db", (dir / (name + ".db")).string(), "--pub", pubfile, "--from", from});
    peers.push_back({name, &p});
    from = p.listen();
  }

  step("3. a shop app writes through the primary's HTTP API (rqlite JSON, ?transaction batches)");
  Workload w = write_shop(primary.http());
  uint64_t size = node_size(primary.http());
  fmt::print("   {} customers, {} products, {} orders (qty and coupons from random(), times from CURRENT_TIMESTAMP)\n",
             w.customers, w.products, w.orders);
  fmt::print("   {} requests -> primary log size {}\n", w.entries, size);

  step("4. peers sync, verify every entry against the signed head, and replay it");
  wait_caught_up(peers, size, 45s);

  step("5. verified reads: each peer answers with a proof; checked here with the public key only");
  // One client for every peer: the heads it verifies are checked against each other (docs/client.md).
  client::ClientOptions co;
  co.log_id = pub;
  co.check.min_size = size;
  co.timeout = 10s;
  client::VerifyingClient verifying(co);
  for (size_t i = 0; i < peers.size(); ++i) {
    for (const auto& q : demo_queries(i)) {
      fmt::print("\n   {} — {}: {}\n", peers[i].name, q.title, q.sql);
      auto v = ask_and_verify(verifying, peers[i].proc->http(), q);
      if (!v.ok()) throw CliError(1, fmt::format("demo: {}'s proof did not verify: {}", peers[i].name, rejection(v.error())));
      print_rows(*v);
      fmt::print("   verified at size {}, state root {} ({} pages proven)\n", v->head.size, to_hex(v->head.state_root),
                 v->pages);
    }
  }

  step("6. a dishonest peer: peer4 syncs honestly but alters the pages in its proofs (--tamper-proofs)");
  auto& liar = start_node("peer4", {"peer", "--db", (dir / "peer4.db").string(), "--pub", pubfile, "--from",
                                    primary.listen(), "--tamper-proofs"});
  wait_caught_up({{"peer4", &liar}}, size, 45s);
  const auto q = demo_queries(0)[2];
  fmt::print("\n   peer4 — {}: {}\n", q.title, q.sql);
  auto bad = ask_and_verify(verifying, liar.http(), q);
  if (bad.ok()) {
    print_rows(*bad);
    throw CliError(1, "demo: peer4's tampered proof VERIFIED — this must never happen");
  }
  fmt::print("   REJECTED: {}\n", rejection(bad.error()));

  step("7. a light client: SQL run here over pages fetched from peer1 and peer2, each verified and cached");
  // docs/light-client.md: pages are checked against the signed head before
  // SQLite reads them; a re-query after a write fetches only changed pages.
  client::LightClientOptions lo;
  lo.min_size = size;
  auto light = client::LightClient::open(
      dir / "light-cache",
      {client::http_page_source(peers[0].proc->http(), 10s), client::http_page_source(peers[1].proc->http(), 10s)},
      pub, lo);
  if (!light.ok()) throw CliError(1, "demo: light client: " + light.error().message);
  auto light_query = [&](const DemoQuery& dq, const std::string& when) {
    auto ans = (*light)->query(dq.sql, dq.params);
    if (!ans.ok()) throw CliError(1, fmt::format("demo: light client ({}): {}", dq.title, ans.error().message));
    client::TableStyle style;
    style.indent = "      ";
    style.header_rule = false;
    style.row_count = false;
    style.reals_fixed2 = true;
    std::fputs(client::format_table(ans->columns, ans->rows, style).c_str(), stdout);
    fmt::print("   {}at size {}: {} pages fetched ({} bytes) in {} round trips, {} pages from the cache\n", when,
               ans->head.size, ans->stats.pages_fetched, ans->stats.page_bytes, ans->stats.round_trips,
               ans->stats.cache_hits);
  };
  for (const auto& dq : demo_queries(0)) {
    fmt::print("\n   light — {}: {}\n", dq.title, dq.sql);
    light_query(dq, "");
  }
  const DemoQuery point = demo_queries(0)[0];
  fmt::print("\n   the same point lookup again (cached pages, same head):\n");
  light_query(point, "");
  execute(primary.http(), json::array({json::array({"UPDATE customers SET city = ? WHERE id = ?", "Lisbon", 7})}),
          true);
  size = node_size(primary.http());
  wait_caught_up(peers, size, 45s);
  (*light)->options().min_size = size;
  fmt::print("\n   a write changes customer 7's city (log size {}); the point lookup again:\n", size);
  light_query(point, "only the changed pages: ");

  fmt::print("\nall checks passed in {:.1f}s: {} peers verified, the tampered answer was rejected, the light "
             "client re-fetched only changed pages\n",
             std::chrono::duration<double>(Clock::now() - t0).count(), peers.size());

  if (a.keep) {
    step("--keep: everything stays up until Ctrl-C");
    for (auto& p : procs) fmt::print("   {:<8} {}   (peer protocol {})\n", p->name(), p->http(), p->listen());
    fmt::print("   data: {}\n   try: curl -s '{}/db/query?q=SELECT+count(*)+FROM+orders'\n", dir.string(),
               peers[0].proc->http());
    while (!g_interrupted.load()) std::this_thread::sleep_for(200ms);
    fmt::print("\n");
  }
  fmt::print("stopping {} nodes…\n", procs.size());
  for (auto it = procs.rbegin(); it != procs.rend(); ++it) {
    if ((*it)->stop()) fmt::print("   {} did not stop within {}s and was killed\n", (*it)->name(),
                                  std::chrono::duration_cast<std::chrono::seconds>(ChildProcess::kGrace).count());
  }
  procs.clear();
  if (remove_dir) fmt::print("removed {}\n", dir.string());
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "Run a primary and peers on loopback, write a workload, verify reads, and catch a tampering peer");
  auto a = std::make_shared<DemoArgs>();
  cmd->add_flag("--keep", a->keep, "Leave everything running (URLs printed) until Ctrl-C; keep the data");
  cmd->add_option("--dir", a->dir, "Data directory to use and keep (default: a temp dir, removed at the end)");
  cmd->callback([a] { run_demo(*a); });
}

}  // namespace swarmlite::cli

#endif  // SWARMLITE_HAVE_NET
