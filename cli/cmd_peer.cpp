// swarmlite peer --db R.db --pub HEX|FILE --from HOST:PORT[,…] --listen HOST:PORT [--data DIR]
//                [--http HOST:PORT [--primary-url URL]] [--tamper-proofs (hidden, tests)]:
// a replica that syncs the log from any listed node (primary or peer), verifies
// every entry against a head signed by --pub, replays it into R.db, and serves
// its log to other peers; with --http also read queries with proofs. Stops cleanly on SIGINT/SIGTERM.
#ifdef SWARMLITE_HAVE_NET  // the network layer is optional (-DSWARMLITE_NET=OFF)
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "cli/commands.h"
#include "cli/node_common.h"
#include "core/keys.h"
#include "net/backends.h"
#include "net/http_backends.h"
#include "sqlbridge/engine/replica.h"

namespace swarmlite::cli {

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
    run_node(backend, std::move(options), args->net, [&r, http_options](net::Node& node) {
      return std::make_unique<net::ReplicaHttpBackend>(r, node, http_options);
    });
  });
}

}  // namespace swarmlite::cli

#endif  // SWARMLITE_HAVE_NET
