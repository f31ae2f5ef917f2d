// Network flags and the run loop shared by cmd_primary.cpp and cmd_peer.cpp.
#ifdef SWARMLITE_HAVE_NET  // the network layer is optional (-DSWARMLITE_NET=OFF)
#include "cli/node_common.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include <fmt/core.h>

#include "sqlbridge/proof/read_guard.h"
#include "sqlbridge/tools/snapshot_source.h"
#include <spdlog/spdlog.h>

#include "net/http_client.h"
#include "net/process_memory.h"

namespace swarmlite::cli {

namespace {

// --retain: rounds of `compact` on a thread of its own (never the node's io
// thread: a round fsyncs the database and may wait for a running write), each
// logged at info when it dropped something, and counted in `metrics` (null
// without --http). After a round that dropped entries `dropped` runs (the
// node pushes its head again with its new first entry, docs/protocol.md
// "First servable entry"). Stopped and joined by the destructor (a running
// round finishes first).
class RetentionLoop {
 public:
  // `snapshots` (may be null): the held snapshots whose frontier entries stay.
  RetentionLoop(LogCompactor compact, uint64_t retain, std::chrono::milliseconds interval,
                net::Metrics* metrics, const SnapshotSource* snapshots,
                std::function<void()> dropped)
      : compact_(std::move(compact)), retain_(retain), interval_(interval), snapshots_(snapshots),
        dropped_(std::move(dropped)) {
    if (metrics) {
      first_entry_ = &metrics->gauge("swarmlite_log_first_entry",
                                     "First log entry held (entries before it were compacted away)");
      rounds_ = &metrics->counter("swarmlite_compactions_total",
                                  "Retention rounds (--retain) that dropped log segments");
      entries_ = &metrics->counter("swarmlite_compacted_entries_total",
                                   "Log entries dropped by --retain since start");
      bytes_ = &metrics->counter("swarmlite_compacted_bytes_total",
                                 "Log segment and index bytes dropped by --retain since start");
      errors_ = &metrics->counter("swarmlite_compaction_errors_total",
                                  "Retention rounds (--retain) that failed");
    }
    thread_ = std::thread([this] { run(); });
  }
  ~RetentionLoop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  RetentionLoop(const RetentionLoop&) = delete;
  RetentionLoop& operator=(const RetentionLoop&) = delete;

 private:
  void run() {
    std::unique_lock lock(mu_);
    do {
      lock.unlock();
      round();
      lock.lock();
    } while (!cv_.wait_for(lock, interval_, [this] { return stop_; }));
  }
  void round() {
    // A fetcher of the snapshot at head H needs entry H - 1 (the frontier,
    // docs/operations.md "Retention while running"): kept while H is held.
    const uint64_t oldest = snapshots_ ? snapshots_->oldest_held() : 0;
    auto r = compact_(retain_, oldest > 0 ? oldest - 1 : UINT64_MAX);
    if (!r.ok()) {
      if (errors_) errors_->inc();
      spdlog::warn("--retain {}: compacting the log failed (retrying in {} ms): {}", retain_,
                   interval_.count(), r.error().to_string());
      return;
    }
    if (first_entry_) first_entry_->set(static_cast<double>(r->first_after));
    if (r->dropped.segments == 0) return;
    if (rounds_) rounds_->inc();
    if (entries_) entries_->inc(r->dropped.entries);
    if (bytes_) bytes_->inc(r->dropped.bytes);
    spdlog::info("--retain {}: dropped log entries [{}, {}) ({} entries, {} segments, {} bytes); "
                 "the log now starts at entry {} (asked to keep from {})",
                 retain_, r->first_before, r->first_after, r->dropped.entries,
                 r->dropped.segments, r->dropped.bytes, r->first_after, r->keep_from);
    if (dropped_) dropped_();
  }

  LogCompactor compact_;
  uint64_t retain_;
  std::chrono::milliseconds interval_;
  const SnapshotSource* snapshots_;
  std::function<void()> dropped_;
  net::Gauge* first_entry_ = nullptr;
  net::Counter *rounds_ = nullptr, *entries_ = nullptr, *bytes_ = nullptr, *errors_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

void add_node_flags(CLI::App& cmd, NodeFlags& f) {
  cmd.add_option("--listen", f.listen, "Peer protocol address HOST:PORT (port 0: ephemeral)")->required();
  cmd.add_option("--announce", f.announce, "Address told to other peers (default: the bound --listen)");
  cmd.add_option("--http", f.http, "HTTP API address HOST:PORT (port 0: ephemeral)");
  cmd.add_option("--log-level", f.log_level, "trace|debug|info|warn|error|critical|off")
      ->capture_default_str();
  cmd.add_option("--max-peers", f.max_peers, "Cap on peer connections (in + out)")->capture_default_str();
  cmd.add_option("--max-outbound", f.max_outbound, "Dialled connections to keep")->capture_default_str();
  cmd.add_option("--max-inbound-per-range", f.max_inbound_per_range,
                 "Cap on inbound peers from one /24 (IPv4) or /48 (IPv6); 0: no cap")
      ->capture_default_str();
  cmd.add_option("--evict-idle-after", f.evict_idle_after_s,
                 "When full, a newcomer replaces an inbound peer idle this many seconds")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--ban-time", f.ban_seconds, "Seconds a misbehaving peer stays banned")
      ->capture_default_str();
  cmd.add_option("--max-backups", f.max_backups,
                 "GET /db/backup requests served at once (503 busy over it); each copies the database")
      ->capture_default_str()->check(CLI::Range(size_t{1}, size_t{64}));
  cmd.add_option("--backup-timeout", f.backup_timeout_s,
                 "Seconds making one backup may take, and again sending it")
      ->capture_default_str()->check(CLI::Range(1.0, 7.0 * 24 * 3600));
  cmd.add_flag("--no-inline-reads", f.no_inline_reads,
               "Run every plain read on the HTTP read lane; by default a cheap one is answered on "
               "the io thread while the lane is idle (docs/http-api.md \"Lanes\")");
}

void add_primary_http_flags(CLI::App& cmd, NodeFlags& f) {
  cmd.add_option("--write-token", f.write_token,
                 "File holding the HTTP write secret (Authorization: Bearer …); without it writes "
                 "are unauthenticated and --http must be a loopback address");
  cmd.add_option("--max-load-mib", f.max_load_mib,
                 "Largest upload POST /db/load accepts (a SQLite file or a SQL dump, spooled to the "
                 "log directory, not held in memory)")
      ->capture_default_str()->check(CLI::Range(uint64_t{1}, uint64_t{1} << 22));
  cmd.add_option("--load-timeout", f.load_timeout_s,
                 "Seconds POST /db/load may take to receive its upload, and again to load it")
      ->capture_default_str()->check(CLI::Range(1.0, 7.0 * 24 * 3600));
}

void add_peer_http_flags(CLI::App& cmd, NodeFlags& f) {
  cmd.add_option("--primary-url", f.primary_url,
                 "The primary's HTTP URL: writes sent to this peer are forwarded there (as rqlite "
                 "followers do); without it they are refused (403)");
  cmd.add_flag("--redirect-writes", f.redirect_writes,
               "Answer writes with 301 and the primary's full URL instead of forwarding them "
               "(a request can ask for that with ?redirect)");
}

void add_retain_flags(CLI::App& cmd, NodeFlags& f) {
  cmd.add_option("--retain", f.retain,
                 "Log entries to keep: now and then the node drops older ones, whole segments at "
                 "a time, never past its signed head nor (a peer) what it applied; 0: keep "
                 "everything (docs/operations.md \"Compacting a log\")")
      ->capture_default_str();
  cmd.add_option("--retain-interval", f.retain_interval_s, "Seconds between --retain rounds")
      ->capture_default_str()->check(CLI::Range(0.05, 86400.0));
}

void set_log_level(const std::string& level) {
  auto l = spdlog::level::from_str(level);
  if (l == spdlog::level::off && level != "off") {
    throw CliError(2, "unknown --log-level '" + level + "'");
  }
  spdlog::set_level(l);
}

net::NodeOptions node_options(const NodeFlags& f) {
  net::NodeOptions o;
  o.listen = f.listen;
  o.announce = f.announce;
  o.max_connections = f.max_peers;
  o.max_outbound = f.max_outbound;
  o.max_inbound_per_range = f.max_inbound_per_range;
  o.evict_idle_after = std::chrono::milliseconds(static_cast<int64_t>(f.evict_idle_after_s * 1000));
  o.ban_time = std::chrono::seconds(f.ban_seconds);
  o.handle_signals = true;
  return o;
}

void run_node(net::NodeBackend& backend, net::NodeOptions options, const NodeFlags& flags,
              const HttpBackendFactory& make_http, const std::function<void()>& interrupt_writes,
              const LogCompactor& compact) {
  net::HttpApiOptions http_options;
  if (!flags.http.empty()) {
    if (!make_http) throw CliError(2, "--http: this command has no HTTP API");
    http_options.listen = flags.http;
    if (!flags.write_token.empty()) {
      http_options.write_token = must(net::read_token_file(flags.write_token),
                                      "reading --write-token " + flags.write_token);
    }
    if (!flags.primary_url.empty()) {
      (void)must(net::parse_http_url(flags.primary_url), "--primary-url " + flags.primary_url);
      http_options.primary_url = flags.primary_url;
    }
    http_options.redirect_writes = flags.redirect_writes;
    http_options.max_backups = flags.max_backups;
    http_options.inline_reads = !flags.no_inline_reads;
    http_options.backup_timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.backup_timeout_s * 1000));
    http_options.max_load_bytes = flags.max_load_mib << 20;
    http_options.load_timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.load_timeout_s * 1000));
    http_options.load_dir = options.data_dir;  // the node's own disk, with room for the data
  }
  // Long-running: keep resident memory at what is in use (docs/operations.md "Memory").
  net::tune_malloc_for_node();
  net::HeapTrimmer trimmer(std::chrono::seconds(10));
  net::Node node(backend, std::move(options));
  must(node.start(), "starting the node");
  auto st = node.status();
  spdlog::info("peer protocol on {} (announced as {}); log size {}, head {}", st.listen,
               st.announce, st.log_size, st.head ? std::to_string(st.head->size) : "none");
  fmt::print("listen: {}\n", st.listen);
  std::fflush(stdout);

  std::unique_ptr<net::HttpBackend> http_backend;
  std::unique_ptr<net::HttpApi> http;
  // The backend is made even without --http: its SnapshotSource answers the
  // peer protocol's snapshot requests too (docs/protocol.md "Snapshots"), so
  // both transports share one set of pinned copies. It is destroyed after
  // node.wait() has stopped the node (and joined its snapshot threads).
  if (make_http) {
    http_backend = make_http(node);
    node.set_snapshot_source(http_backend->snapshots());
    // The page service (docs/protocol.md "Page service"): a peer's replica; none on the primary.
    node.set_page_server(http_backend->page_server());
  }
  if (!flags.http.empty()) {
    http = std::make_unique<net::HttpApi>(*http_backend, std::move(http_options));
    if (Status s = http->start(); !s.ok()) {
      node.stop();
      must(std::move(s), "starting the HTTP API on " + flags.http);
    }
    fmt::print("http: http://{}\n", http->bound_address());
    std::fflush(stdout);
  }

  std::unique_ptr<RetentionLoop> retention;
  if (flags.retain > 0 && compact) {
    spdlog::info("--retain {}: keeping the newest {} log entries, checked every {} s", flags.retain,
                 flags.retain, flags.retain_interval_s);
    retention = std::make_unique<RetentionLoop>(
        compact, flags.retain,
        std::chrono::milliseconds(static_cast<int64_t>(flags.retain_interval_s * 1000)),
        http ? &http->metrics() : nullptr, http_backend ? http_backend->snapshots() : nullptr,
        [&node] { node.notify_new_head(); });
  }

  node.wait();
  // Stopping: running reads and writes end at their next progress check
  // instead of running to their time limits (docs/operations.md).
  GuardedConnection::stop_all_reads(true);
  if (interrupt_writes) interrupt_writes();
  retention.reset();  // after interrupt_writes: a round may wait for a running write
  if (http) http->stop();  // here, not in on_stopping: backend calls may wait on the node's io thread
  st = node.status();
  spdlog::info("stopped: log size {}, applied {}, {} entries stored this run{}", st.log_size,
               st.applied_size, st.entries_stored, st.evidence ? " (the log EQUIVOCATED)" : "");
}

}  // namespace swarmlite::cli

#endif  // SWARMLITE_HAVE_NET
