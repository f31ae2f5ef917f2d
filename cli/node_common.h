// Shared by `swarmlite primary` and `swarmlite peer`: the network flags and
// running a node until SIGINT/SIGTERM.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "net/http_api.h"
#include "net/node.h"
#include "sqlbridge/engine/retention.h"

namespace swarmlite::cli {

struct NodeFlags {
  std::string listen;
  std::string announce;
  std::string http;
  std::string log_level = "info";
  size_t max_peers = 64;
  size_t max_outbound = 8;
  size_t max_inbound_per_range = 32;  // --max-inbound-per-range (0 = no cap)
  double evict_idle_after_s = 30;     // --evict-idle-after SECONDS
  int ban_seconds = 600;
  std::string write_token;  // primary: --write-token FILE ("" = none)
  size_t max_backups = 2;         // --max-backups (GET /db/backup running at once)
  double backup_timeout_s = 600;  // --backup-timeout SECONDS (making one backup, and sending it)
  bool no_inline_reads = false;   // --no-inline-reads: every plain read on the read lane
  uint64_t max_load_mib = 1024;   // primary: --max-load-mib (POST /db/load's upload cap)
  double load_timeout_s = 3600;   // primary: --load-timeout SECONDS (receiving, then loading)
  std::string primary_url;  // peer: --primary-url URL, where writes are forwarded
  bool redirect_writes = false;  // peer: --redirect-writes (301 instead of forwarding)
  uint64_t retain = 0;              // --retain N: log entries kept (0: all)
  double retain_interval_s = 5;     // --retain-interval SECONDS between retention rounds
};

// One retention round (sqlbridge/engine/retention.h) keeping `retain` entries,
// keep_from at most `keep_at_most` (the frontier a held snapshot needs):
// compact_primary_log or compact_replica_log bound to the node's owner.
using LogCompactor = std::function<Result<LogCompaction>(uint64_t retain, uint64_t keep_at_most)>;

// Makes the node's HTTP backend once the Node exists (it lives as long as the Node).
using HttpBackendFactory = std::function<std::unique_ptr<net::HttpBackend>(net::Node&)>;

// Adds --listen (required), --announce, --http, --log-level, --max-peers, --max-outbound,
// --ban-time,
// --max-backups, --backup-timeout, --no-inline-reads.
void add_node_flags(CLI::App& cmd, NodeFlags& flags);
// Adds --write-token FILE (the primary's HTTP write secret), --max-load-mib and --load-timeout.
void add_primary_http_flags(CLI::App& cmd, NodeFlags& flags);
// Adds --primary-url URL (where a peer forwards writes) and --redirect-writes.
void add_peer_http_flags(CLI::App& cmd, NodeFlags& flags);
// Adds --retain N and --retain-interval SECONDS (docs/operations.md "Compacting a log").
void add_retain_flags(CLI::App& cmd, NodeFlags& flags);
// Sets the spdlog level; throws CliError on an unknown level.
void set_log_level(const std::string& level);
net::NodeOptions node_options(const NodeFlags& flags);
// Starts the node, says where it listens, blocks until a signal stops it, and
// reports the final state. Throws CliError when it cannot start.
// With --http (and a factory) it also serves the HTTP API on a backend made by
// `make_http`, stopped after the node stops. The backend is made whenever a
// factory is given, --http or not: the node answers the peer protocol's
// snapshot requests from its SnapshotSource (docs/protocol.md "Snapshots").
// stdout contract (parsed by `swarmlite demo` and the integration tests), each
// line flushed as soon as the address is bound:
//   listen: HOST:PORT          the bound peer-protocol address
//   http: http://HOST:PORT     the bound HTTP API address (only with --http)
// On SIGINT/SIGTERM, before waiting for running HTTP calls, every guarded read
// in the process is interrupted (GuardedConnection::stop_all_reads) and
// `interrupt_writes` is called (the primary's Primary::interrupt), so the
// process exits within a bound whatever is running.
// With --retain N (and a compactor) a thread of its own runs `compact` once the
// node runs and then every --retain-interval, logs what each round dropped and
// counts it in /metrics; it is stopped after interrupt_writes.
void run_node(net::NodeBackend& backend, net::NodeOptions options, const NodeFlags& flags,
              const HttpBackendFactory& make_http = {},
              const std::function<void()>& interrupt_writes = {},
              const LogCompactor& compact = {});

}  // namespace swarmlite::cli
