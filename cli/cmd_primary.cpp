// swarmlite primary --db P.db --key DIR/primary.key --listen HOST:PORT [--log DIR]
//                   [--http HOST:PORT [--write-token FILE]] [--write-timeout S]
//                   [--max-entry-pages N] [--max-value-bytes N] [--retain N]:
// opens the primary (catching its database up to its log) and serves its log
// to peers, pushing each new head; with --http also the HTTP API (writes and
// reads, docs/http-api.md); with --retain N it drops all but the newest N log
// entries now and then (docs/operations.md "Compacting a log"). Stops cleanly on SIGINT/SIGTERM.
#ifdef SWARMLITE_HAVE_NET  // the network layer is optional (-DSWARMLITE_NET=OFF)
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/node_common.h"
#include "core/keys.h"
#include "net/backends.h"
#include "net/http_backends.h"
#include "sqlbridge/engine/primary.h"

namespace swarmlite::cli {

void add_primary_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("primary", "Run the primary: serve its signed log to peers");
  struct Args {
    std::string db, key, log;
    NodeFlags net;
    double write_timeout_s = 5;
    uint32_t max_entry_pages = PrimaryOptions{}.max_entry_pages;
    int max_value_bytes = PrimaryOptions{}.max_value_bytes;
    double log_segment_mib = static_cast<double>(LogStoreOptions{}.segment_bytes) / (1 << 20);
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--db", args->db, "Primary database file (created if missing)")->required();
  cmd->add_option("--key", args->key, "Secret key file (DIR/primary.key from keygen)")->required();
  cmd->add_option("--log", args->log, "Log directory (default: <db>.log)");
  cmd->add_option("--write-timeout", args->write_timeout_s,
                  "Seconds one write transaction may run before it is rolled back and refused, "
                  "nothing logged (0: no limit)")
      ->capture_default_str()->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--max-entry-pages", args->max_entry_pages,
                  "Pages (4 KiB) one write transaction may write or add; over it the write is "
                  "refused, nothing logged (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--max-value-bytes", args->max_value_bytes,
                  "Largest string, blob or row one write may build (SQLITE_LIMIT_LENGTH on the "
                  "write connection; replicas keep SQLite's 1e9)")
      ->capture_default_str()->check(CLI::Range(1, 1000000000));
  cmd->add_option("--log-segment-mib", args->log_segment_mib,
                  "Size at which the log starts a new segment file; `swarmlite compact` drops "
                  "whole segments (docs/operations.md \"Compacting a log\")")
      ->capture_default_str()->check(CLI::Range(0.0625, 65536.0));
  add_node_flags(*cmd, args->net);
  add_primary_http_flags(*cmd, args->net);
  add_retain_flags(*cmd, args->net);
  cmd->callback([args] {
    set_log_level(args->net.log_level);
    SecretKey key = must(load_secret_key(args->key), "primary: loading the key");
    PrimaryOptions po;
    po.log_dir = args->log;
    po.write_timeout = std::chrono::milliseconds(static_cast<int64_t>(args->write_timeout_s * 1000));
    po.max_entry_pages = args->max_entry_pages;
    po.max_value_bytes = args->max_value_bytes;
    po.log_options.segment_bytes = static_cast<uint64_t>(args->log_segment_mib * (1 << 20));
    // Heads are signed off the write path, at most one per 0.5 ms; the
    // node announces each (PrimaryHttpBackend). docs/performance.md.
    po.sign_in_background = true;
    auto primary = must(Primary::open(args->db, key, std::move(po)), "primary: opening " + args->db);
    spdlog::info("primary for log {}: {} ({} entries)", primary->log_id().hex(), args->db,
                 primary->size());
    net::PrimaryBackend backend(*primary);
    auto options = node_options(args->net);
    options.data_dir = primary->log_dir();
    Primary& p = *primary;
    run_node(
        backend, std::move(options), args->net,
        [&p](net::Node& node) { return std::make_unique<net::PrimaryHttpBackend>(p, node); },
        [&p] { p.interrupt(); },
        [&p](uint64_t retain, uint64_t keep_at_most) {
          return compact_primary_log(p, retain, keep_at_most);
        });
    must(primary->close(), "primary: closing");
  });
}

}  // namespace swarmlite::cli

#endif  // SWARMLITE_HAVE_NET
