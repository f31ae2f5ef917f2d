// swarmlite peer --db R.db --pub HEX|FILE --from HOST:PORT[,…] --listen HOST:PORT [--data DIR]
//                [--http HOST:PORT [--primary-url URL]] [--bootstrap auto|snapshot|replay]
//                [--log-segment-mib MIB] [--tamper-proofs (hidden, tests)]:
// a replica that syncs the log from any listed node (primary or peer), verifies
// every entry against a head signed by --pub, replays it into R.db, and serves
// its log to other peers; with --http also read queries with proofs. Stops cleanly on SIGINT/SIGTERM.
// An empty replica (no R.db, no log) may start from a verified snapshot of
// the nodes instead (client/bootstrap.h, docs/operations.md "Starting a peer
// from a snapshot").
#ifdef SWARMLITE_HAVE_NET  // the network layer is optional (-DSWARMLITE_NET=OFF)
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "cli/node_common.h"
#include "cli/progress.h"
#include "client/bootstrap.h"
#include "core/keys.h"
#include "net/backends.h"
#include "net/http_backends.h"
#include "sqlbridge/engine/replica.h"

namespace swarmlite::cli {
namespace {

const std::map<std::string, client::BootstrapMode> kBootstrapModes{
    {"auto", client::BootstrapMode::automatic},
    {"snapshot", client::BootstrapMode::snapshot},
    {"replay", client::BootstrapMode::replay}};

// The Hellos of the --from nodes that answer, and the newest head among them
// that verifies under the log's key.
struct Probe {
  std::vector<client::PeerHello> hellos;
  std::vector<std::string> reached;  // addresses, in the order of `hellos` (that of --from)
  std::optional<Head> newest;
  // Some node reached has a head and still serves entry 0: a replay can start.
  bool entry0() const {
    for (const auto& h : hellos)
      if (h.head && h.first == 0) return true;
    return false;
  }
};

// Hello timeout of the probe: a node that accepts and never answers must not
// hold back the start (docs/operations.md "Starting a peer from a snapshot").
constexpr auto kProbeTimeout = std::chrono::seconds(5);

// All nodes at once (peer_hello blocks: one thread each), so the probe takes
// at most one timeout whatever the number of silent nodes; the results are
// read in the order of `from`, so the choice and the log do not depend on
// which node answered first.
Probe probe(const std::vector<std::string>& from, const PublicKey& log_id,
            std::chrono::milliseconds timeout) {
  std::vector<std::optional<Result<client::PeerHello>>> answers(from.size());
  {
    std::vector<std::jthread> dialers;
    dialers.reserve(from.size());
    for (size_t i = 0; i < from.size(); ++i) {
      dialers.emplace_back([&, i] { answers[i] = client::peer_hello(from[i], log_id, timeout); });
    }
  }  // joined
  Probe p;
  for (size_t i = 0; i < from.size(); ++i) {
    auto& h = *answers[i];
    if (!h.ok()) {
      spdlog::warn("bootstrap: {}", h.error().to_string());
      continue;
    }
    if (h->head && !h->head->verify(log_id).ok()) {
      spdlog::warn("bootstrap: {} says a head at {} that is not signed by the log's key; ignored",
                   from[i], h->head->size);
      continue;
    }
    if (h->head && (!p.newest || h->head->size > p.newest->size)) p.newest = h->head;
    p.hellos.push_back(std::move(h).value());
    p.reached.push_back(from[i]);
  }
  return p;
}

// An empty replica (no database, no log) before Replica::open: decides between
// a snapshot and replaying from entry 0 (--bootstrap), and runs the snapshot
// bootstrap; one that an earlier run began is always finished. `auto` falls
// back to a replay when the snapshot fails before a single page was verified
// and some node reached still holds entry 0 (docs/operations.md "Starting a
// peer from a snapshot").
void prepare_empty_replica(const std::filesystem::path& db, const std::filesystem::path& data,
                           const PublicKey& log_id, const std::vector<std::string>& from,
                           client::BootstrapMode mode, uint32_t chunk_pages,
                           const LogStoreOptions& log_options) {
  std::error_code ec;
  if (std::filesystem::exists(db, ec)) return;
  const bool pending = client::bootstrap_pending(db, data);
  if (!pending && std::filesystem::exists(data / "log", ec)) return;  // replays its own log
  const auto timeout = std::chrono::seconds(30);
  // Also for `snapshot` and a pending bootstrap: only the nodes that answered
  // are asked for pages and frontiers, so a silent node costs the probe's
  // timeout once, not a request timeout for each of its requests.
  Probe p = probe(from, log_id, kProbeTimeout);
  bool snapshot = pending || mode == client::BootstrapMode::snapshot;
  bool may_fall_back = false;
  if (pending) {
    spdlog::info("bootstrap: resuming the snapshot bootstrap an earlier run began in {}",
                 data.string());
  } else if (mode != client::BootstrapMode::snapshot) {
    client::BootstrapChoice choice = client::choose_bootstrap(p.hellos, p.newest);
    if (mode == client::BootstrapMode::replay) {
      // Only "no node holds entry 0" forbids a replay; many entries per page
      // merely make it slow.
      if (choice.snapshot && p.newest && !p.entry0()) {
        uint64_t first = UINT64_MAX;
        for (const auto& h : p.hellos)
          if (h.head) first = std::min(first, h.first);
        throw CliError(
            1, fmt::format("peer: --bootstrap replay needs entry 0, but every node reached ({}) "
                           "compacted its log: the first entry available is {} (head at {}). "
                           "Start from a snapshot instead: --bootstrap snapshot (or auto)",
                           fmt::join(p.reached, ", "), first, p.newest->size));
      }
      return;
    }
    spdlog::info("bootstrap: {}", choice.why);
    snapshot = choice.snapshot;
    may_fall_back = p.entry0();
  }
  if (!snapshot) return;
  if (p.reached.empty() && !pending) {
    throw CliError(2, fmt::format("peer: starting {} from a snapshot: no node answered in {} s "
                                  "with a head signed by the log's key ({})",
                                  db.string(), kProbeTimeout.count(), fmt::join(from, ", ")));
  }

  std::vector<std::unique_ptr<client::ChunkSource>> owned;
  std::vector<client::ChunkSource*> sources;
  for (const auto& address : p.reached) {
    owned.push_back(client::peer_chunk_source(address, log_id, std::chrono::seconds(60)));
    sources.push_back(owned.back().get());
  }
  Progress progress("bootstrap", "pages");
  std::mutex mu;
  uint64_t pages_done = 0;  // verified pages reported by the fetch (under mu)
  client::BootstrapOptions o;
  o.log_id = log_id;
  o.db = db;
  o.data = data;
  o.sources = sources;
  o.frontier_from = p.reached;
  o.timeout = timeout;
  o.chunk_pages = chunk_pages;
  o.log_options = log_options;
  o.progress = [&](uint64_t done, uint64_t total) {
    std::lock_guard lock(mu);
    pages_done = std::max(pages_done, done);
    progress.update(done, total);
  };
  o.log = [&](const std::string& line) {
    std::lock_guard lock(mu);
    std::fprintf(stderr, "%s", ::isatty(STDERR_FILENO) == 1 ? "\r\033[K" : "");
    spdlog::info("bootstrap: {}", line);
  };
  auto r = client::bootstrap_from_snapshot(o);
  progress.finish();
  if (!r.ok()) {
    const std::filesystem::path staged = client::bootstrap_db_path(data);
    if (may_fall_back && pages_done == 0 && !std::filesystem::exists(staged, ec)) {
      // Nothing verified to keep: the fetch's .part/.progress would only make
      // the next run "pending" (snapshot forever), so they go, and the
      // replica replays from entry 0 like `--bootstrap replay`.
      std::filesystem::remove(client::part_path(staged), ec);
      std::filesystem::remove(client::progress_path(staged), ec);
      spdlog::warn(
          "bootstrap: the snapshot failed before any page was fetched ({}); a node "
          "reached still holds entry 0, so {} replays the log from entry 0 instead",
          r.error().to_string(), db.string());
      return;
    }
    throw CliError(2, fmt::format("peer: starting {} from a snapshot: {} (what was fetched is "
                                  "kept under {}: run the same command again to resume)",
                                  db.string(), r.error().to_string(), data.string()));
  }
  if (r->fetched) {
    for (const auto& b : r->fetched->banned) spdlog::warn("bootstrap: banned {}", b);
    spdlog::info("bootstrap: fetched {} pages ({} kept from an earlier run), {} bytes",
                 r->fetched->pages_fetched, r->fetched->pages_kept, r->fetched->bytes);
  }
  spdlog::info("bootstrap: {} starts at the snapshot of head {} (log root {}){}", db.string(),
               r->head.size, to_hex(r->head.log_root),
               r->frontier_from.empty() ? "" : fmt::format(", frontier from {}", r->frontier_from));
}

}  // namespace

void add_peer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("peer", "Run a peer: sync, verify and replay the log; serve it to others");
  struct Args {
    std::string db, pub, data;
    std::vector<std::string> from;
    NodeFlags net;
    bool tamper_proofs = false;
    double scrub_interval_s = 1;
    uint32_t scrub_pages = 1024;
    uint64_t replay_batch = ReplicaOptions{}.max_batch_entries;
    client::BootstrapMode bootstrap = client::BootstrapMode::automatic;
    uint32_t bootstrap_chunk_pages = 0;
    double log_segment_mib = static_cast<double>(LogStoreOptions{}.segment_bytes) / (1 << 20);
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--db", args->db, "Replica database file (created if missing)")->required();
  cmd->add_option("--pub", args->pub, "The log id: 64 hex digits or a primary.pub file")->required();
  cmd->add_option("--from", args->from, "Nodes to sync from, HOST:PORT (comma-separated or repeated)")
      ->delimiter(',')
      ->required();
  cmd->add_option("--data", args->data, "Directory for the log and evidence (default: <db>.data)");
  add_node_flags(*cmd, args->net);
  add_peer_http_flags(*cmd, args->net);
  add_retain_flags(*cmd, args->net);  // --retain N: compacts what it applied
  cmd->add_option("--scrub-interval", args->scrub_interval_s,
                  "Seconds between checks of --scrub-pages pages of the database file against the "
                  "state tree (0: never; see docs/operations.md)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--scrub-pages", args->scrub_pages, "Pages checked per scrub round")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--replay-batch", args->replay_batch,
                  "Log entries applied per SQLite transaction, the state root checked at each "
                  "batch's end (1: one transaction and one root check per entry, as before "
                  "batching; docs/determinism.md \"Batched replay\")")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--bootstrap", args->bootstrap,
                  "How an empty replica (no database, no log) starts: snapshot (a verified copy "
                  "of the nodes' database, then the log from there), replay (every entry from 0), "
                  "auto (snapshot when the log has many entries per page or no node holds entry "
                  "0; docs/operations.md \"Starting a peer from a snapshot\")")
      ->transform(CLI::CheckedTransformer(kBootstrapModes, CLI::ignore_case))
      ->default_str("auto");
  cmd->add_option("--bootstrap-chunk-pages", args->bootstrap_chunk_pages,
                  "Pages per snapshot request while bootstrapping (default: the nodes' "
                  "suggestion, 1024)")
      ->check(CLI::Range(1, 16384));
  cmd->add_option("--log-segment-mib", args->log_segment_mib,
                  "Size at which the log starts a new segment file; compaction (--retain, "
                  "`swarmlite compact`) drops whole segments (docs/operations.md \"Compacting a "
                  "log\")")
      ->capture_default_str()
      ->check(CLI::Range(0.0625, 65536.0));
  // Hidden (empty group): for demos and tests of a lying peer being caught.
  cmd->add_flag("--tamper-proofs", args->tamper_proofs,
                "TESTING ONLY: serve proofs with one byte flipped in a page")
      ->group("");
  cmd->callback([args] {
    set_log_level(args->net.log_level);
    PublicKey log_id = must(load_public_key(args->pub), "peer: reading --pub");
    std::filesystem::path data = args->data.empty() ? args->db + ".data" : args->data;
    ReplicaOptions replica_options;
    replica_options.max_batch_entries = args->replay_batch;
    replica_options.log_options.segment_bytes =
        static_cast<uint64_t>(args->log_segment_mib * (1 << 20));
    prepare_empty_replica(args->db, data, log_id, args->from, args->bootstrap,
                          args->bootstrap_chunk_pages, replica_options.log_options);
    auto replica = must(Replica::open(args->db, data / "log", log_id, replica_options),
                        "peer: opening " + args->db);
    spdlog::info("peer for log {}: {} ({} entries applied)", log_id.hex(), args->db, replica->size());
    net::ReplicaBackend backend(*replica);
    auto options = node_options(args->net);
    options.seeds = args->from;
    options.data_dir = data;
    if (args->tamper_proofs) {
      spdlog::warn("--tamper-proofs: this peer serves FALSIFIED query proofs (one byte flipped in a "
                   "page); clients that verify will reject them. Testing only.");
    }
    Replica& r = *replica;
    net::ReplicaHttpOptions http_options;
    http_options.tamper_proofs = args->tamper_proofs;
    // The scrubber: a file changed under the peer (another process, the disk)
    // is found within (pages / scrub_pages) rounds; then the peer stops
    // serving reads and /readyz says why (Replica::corruption).
    std::mutex scrub_mu;
    std::condition_variable scrub_cv;
    bool scrub_stop = false;
    std::thread scrubber;
    if (args->scrub_interval_s > 0) {
      auto interval = std::chrono::milliseconds(static_cast<int64_t>(args->scrub_interval_s * 1000));
      uint32_t per_round = args->scrub_pages;
      scrubber = std::thread([&r, &scrub_mu, &scrub_cv, &scrub_stop, interval, per_round] {
        std::unique_lock lock(scrub_mu);
        while (!scrub_cv.wait_for(lock, interval, [&] { return scrub_stop; })) {
          lock.unlock();
          auto checked = r.scrub(per_round);
          lock.lock();
          if (!checked.ok()) {
            spdlog::critical("{}", checked.error().to_string());
            return;
          }
        }
      });
    }
    struct StopScrubber {
      std::mutex& mu;
      std::condition_variable& cv;
      bool& stop;
      std::thread& thread;
      ~StopScrubber() {
        {
          std::lock_guard lock(mu);
          stop = true;
        }
        cv.notify_all();
        if (thread.joinable()) thread.join();
      }
    } stop_scrubber{scrub_mu, scrub_cv, scrub_stop, scrubber};
    run_node(
        backend, std::move(options), args->net,
        [&r, http_options](net::Node& node) {
          return std::make_unique<net::ReplicaHttpBackend>(r, node, http_options);
        },
        {}, [&r](uint64_t retain, uint64_t keep_at_most) {
          return compact_replica_log(r, retain, keep_at_most);
        });
  });
}

}  // namespace swarmlite::cli

#endif  // SWARMLITE_HAVE_NET
