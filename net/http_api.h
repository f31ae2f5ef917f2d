// The rqlite-style HTTP API (docs/http-api.md): a Boost.Beast
// server on its own io thread, C++20 coroutines, one coroutine per connection.
//   POST /db/execute          writes (the primary; token-protected; peers refuse)
//   GET|POST /db/query        reads (q= or a JSON array; proof=1, min_size=N, level, freshness)
//   GET|POST /db/request      reads and writes mixed (rqlite's unified endpoint)
//   GET /db/size              entries applied (what level=strong asks the primary)
//   GET /db/backup            the database file at a signed head (?fmt=sql: a SQL dump)
//   GET /db/snapshot          pins a snapshot at the newest signed head (JSON manifest)
//   GET /db/snapshot/pages    one verified chunk of it (docs/formats/snapshot.md)
//   GET /db/pages, /db/leaves any pages / leaf hashes of the pinned head (docs/formats/pages.md)
//   POST /db/load             a SQLite file or a SQL dump, loaded as logged entries (the
//                             primary; token-protected; streamed to disk, its own size cap)
//   GET /status, /readyz, /metrics
// The node-specific work is behind HttpBackend; this header has no Asio/Beast
// (http_api.cpp is the only translation unit that includes the server side).
//
// Threads: one io thread runs every socket and timer; backend calls (which
// block on SQLite) run off it in lanes: reads (a pool of worker_threads),
// writes (write_threads; a backend that submits writes, as the primary's does,
// runs them on a thread of its own instead: HttpBackend::submits_writes), /status and
// /metrics (one thread) and backups (max_backups threads; the file is then
// streamed from disk), so neither a slow query nor a long write delays
// health checks, status or cheap reads. The read and write lanes are bounded:
// a request that finds its lane full (running + queued) gets 503 with the
// reason at once instead of waiting behind it. Hostile clients: header and body size caps
// (431/413), a read deadline per request, an idle deadline between keep-alive requests, a cap on
// concurrent connections (503 over it), and errors are JSON 4xx bodies — a request never takes the
// process down.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/entry.h"
#include "core/result.h"
#include "net/http_json.h"
#include "net/metrics.h"
#include "sqlbridge/tools/backup.h"

namespace swarmlite {
class SnapshotSource;  // sqlbridge/tools/snapshot_source.h
class PageServer;      // sqlbridge/engine/page_set.h
}  // namespace swarmlite

namespace swarmlite::net {

// POST /db/load (docs/http-api.md "Loading a database"): an upload, already
// spooled to a file, for the backend to load as log entries.
enum class LoadFormat {
  sqlite,  // a SQLite database file (its first 16 bytes are "SQLite format 3\0")
  sql,     // SQL text, e.g. `sqlite3 app.db .dump`
};
struct LoadRequest {
  LoadFormat format = LoadFormat::sql;
  std::filesystem::path file;  // the upload; the server removes it afterwards
  uint64_t bytes = 0;
  std::chrono::steady_clock::time_point deadline;  // the whole load
  const std::atomic<bool>* cancel = nullptr;       // set when the server stops
};

struct QueryOptions {
  uint64_t min_size = 0;   // do not answer from a state with fewer entries
  bool proof = false;      // fill QueryOutcome::proof and ::size
};

// What a read tried on the server's shared io thread may cost before it is
// stopped and run on the read lane instead (HttpBackend::try_query_inline,
// docs/performance.md "Cheap reads on the io thread").
struct InlineBudget {
  uint64_t vm_steps = 1000;  // VDBE instructions (checked every 1,000)
  std::chrono::microseconds time{200};
};

// How /db/request runs one statement (docs/http-api.md "The unified endpoint").
enum class StatementKind {
  read,     // the read guard prepares it: answered from this node's state
  write,    // the guard refuses it (a write, or something only the primary may judge)
  invalid,  // it does not prepare at all (syntax, no such table …): `error` says why
};
struct StatementClass {
  StatementKind kind = StatementKind::read;
  std::string error;  // for invalid: SQLite's message
};
// Every statement classified a read (/db/request answers them at once).
bool all_reads(const std::vector<StatementClass>& classes);

// What the HTTP API needs from a node. Every method may be called from several
// worker threads at once: implementations must be thread-safe.
class HttpBackend {
 public:
  virtual ~HttpBackend() = default;

  // True on the primary. When false, /db/execute is refused (403) without
  // calling execute().
  virtual bool accepts_writes() const = 0;

  // Runs writes. `transaction`: all statements in one log entry, all or
  // nothing (on failure the failing statement's outcome holds the error and
  // nothing is written). Otherwise each statement is its own entry and a failed
  // one does not stop the rest (rqlite's behaviour). One outcome per statement.
  // An Error means the request as a whole failed (mapped to an HTTP status by
  // its Errc: invalid_argument 400, refused 403, unavailable 503, else 500).
  virtual Result<std::vector<ExecOutcome>> execute(const std::vector<Statement>& statements,
                                                   bool transaction);

  // The answer of submit_execute(): called exactly once, on any thread.
  using ExecuteDone = std::function<void(Result<std::vector<ExecOutcome>>)>;
  // True when the server should hand /db/execute's writes to submit_execute()
  // instead of running execute() on a thread of its write lane: a backend that
  // queues writes and runs them from a thread of its own lets writes of many
  // requests share a group commit without a lane thread blocked on each.
  virtual bool submits_writes() const { return false; }
  // execute(), later: `done` gets what execute() would have returned. Never
  // blocks on the writes. The default runs execute() before returning.
  virtual void submit_execute(std::vector<Statement> statements, bool transaction,
                              ExecuteDone done) {
    done(execute(statements, transaction));
  }

  // Runs read-only queries, one outcome per statement (per-statement errors in
  // the outcome). Must not answer from a state older than options.min_size
  // (return Errc::unavailable instead; the server already waited for it).
  virtual Result<std::vector<QueryOutcome>> query(const std::vector<Statement>& statements,
                                                  const QueryOptions& options) = 0;

  // query() on the server's io thread, which every connection shares, for a
  // read that turns out cheap (docs/performance.md "Cheap reads on the io
  // thread"): only with what the backend has at hand (an idle pooled
  // connection; never a proof), stopped once it goes over `budget`. nullopt:
  // not run, or stopped over the budget; the server then calls query() on
  // its read lane (a read changes nothing: only the time tried is lost). The
  // default runs nothing.
  virtual std::optional<Result<std::vector<QueryOutcome>>> try_query_inline(
      const std::vector<Statement>& /*statements*/, const QueryOptions& /*options*/,
      const InlineBudget& /*budget*/) {
    return std::nullopt;
  }

  // Entries applied to the state queries read (for min_size waits). Cheap.
  virtual uint64_t size() const = 0;

  // Wake-ups for min_size and level=strong waits: the backend calls `fn`
  // (any thread) whenever size() may have grown, until it is replaced; an
  // empty fn removes it, and once this returns the previous fn is not
  // running. fn is cheap and never blocks. Returns false when the backend
  // cannot tell (the default): waits then re-check size() every
  // HttpApiOptions::min_size_poll instead.
  virtual bool set_size_listener(std::function<void()> /*fn*/) { return false; }

  // /db/request: classifies each statement against the node's current state by
  // preparing it (never stepping) on a guarded read connection: prepared =
  // read, refused by the guard's authorizer = write, any other prepare error =
  // invalid. Default (a backend without a database): every statement is a read.
  virtual Result<std::vector<StatementClass>> classify(const std::vector<Statement>& statements);

  // /db/request's first step in one call (docs/http-api.md "The unified
  // endpoint"): classify(), and when every statement is a read, run them as
  // query() does without min_size or proof (`outcomes`, one per statement).
  // Otherwise only `classes` is set and nothing ran. One trip to the read lane
  // where it used to take two. The default calls classify() then query().
  struct Classified {
    std::vector<StatementClass> classes;
    std::optional<std::vector<QueryOutcome>> outcomes;
  };
  virtual Result<Classified> classify_and_read(const std::vector<Statement>& statements);
  // classify_and_read() on the io thread, as try_query_inline(): with what the
  // backend has at hand, its reads stopped over `budget` (nullopt: not run or
  // stopped; the server then calls classify_and_read() on its read lane). A
  // classification that finds a write is returned (its prepare is bounded by
  // the server's size limits for tries). The default runs nothing.
  virtual std::optional<Result<Classified>> try_classify_and_read_inline(
      const std::vector<Statement>& /*statements*/, const InlineBudget& /*budget*/) {
    return std::nullopt;
  }

  // The newest log size this node knows of (NodeStatus::best_size: the highest
  // valid head any peer told it of, or its own). For level=strong without a
  // primary URL and for freshness. May block briefly (not on the io thread).
  virtual uint64_t known_head_size() const { return size(); }

  // The /status document (log id, size, head, peers, lag, bans, evidence …).
  virtual nlohmann::json status() const = 0;

  // ok when the node has a verified head and is not diverged; else the reason.
  virtual Status ready() const = 0;

  // Called before each /metrics scrape: refresh gauges from the node's state.
  virtual void update_metrics(Metrics& /*metrics*/) {}

  // GET /db/backup (sqlbridge/tools/backup.h): the state at one signed head
  // in a temporary file, by `deadline`, stopping early once `*cancel` is set
  // (the server stopping). Runs on the backup lane.
  virtual Result<BackupFile> backup(BackupFormat /*format*/, std::chrono::steady_clock::time_point /*deadline*/,
                                    const std::atomic<bool>* /*cancel*/) {
    return make_error(Errc::unavailable, "this node serves no backups");
  }

  // GET /db/snapshot and /db/snapshot/pages (docs/http-api.md "Snapshots"):
  // the backend's snapshot holder, or null (404 for both). Its calls block
  // (a copy, page reads) and run off the io thread.
  virtual SnapshotSource* snapshots() { return nullptr; }
  // GET /db/pages and /db/leaves (docs/http-api.md "Pages"): the node's page
  // service (its Replica's or Primary's pin), or null: 404 "this node serves
  // no pages". Its calls pread and hash; they run on the read lane.
  virtual const PageServer* page_server() const { return nullptr; }
  // POST /db/load (only called when accepts_writes()): loads the upload as
  // logged entries, stopping between entries once the deadline passed or
  // `*cancel` is set. Runs on the write lane, so no other write interleaves.
  // Returns the "load" object of the answer (what was written and checked);
  // an error when nothing or only part was loaded (the message says which).
  virtual Result<nlohmann::json> load(const LoadRequest& /*request*/) {
    return make_error(Errc::refused, "this node does not load databases");
  }
};

struct HttpApiOptions {
  std::string listen = "127.0.0.1:4001";  // "host:port", "[v6]:port"; port 0 = ephemeral
  // The write secret (already read, trimmed). Unset: the write API is
  // unauthenticated and start() refuses a non-loopback listen address.
  std::optional<std::string> write_token;
  // Peers: the primary's HTTP URL. Writes sent to a peer are forwarded there
  // (docs/http-api.md "Writes sent to a peer"), or answered with a redirect
  // when `redirect_writes` is set or the request asks with ?redirect.
  std::optional<std::string> primary_url;
  bool redirect_writes = false;
  std::chrono::milliseconds forward_timeout{30000};  // one forwarded write, connect to answer
  size_t max_forward_response_bytes = 16u << 20;     // the primary's answer to a forwarded write
  size_t max_body_bytes = 4u << 20;       // 413 over it
  size_t max_header_bytes = 16u << 10;    // 431 over it
  size_t max_connections = 256;           // 503 over it
  std::chrono::milliseconds read_timeout{10000};   // one request's header + body
  std::chrono::milliseconds idle_timeout{30000};   // between keep-alive requests
  std::chrono::milliseconds write_timeout{30000};  // sending one response
  // How often a min_size or level=strong wait re-checks the size, only when
  // the backend cannot notify (HttpBackend::set_size_listener returns false);
  // otherwise a wait is woken when the size grows.
  std::chrono::milliseconds min_size_poll{5};
  // TCP_NODELAY on accepted connections and on the client connections the
  // server opens (forwarded writes, GET /db/size): see net/tcp_socket.h.
  bool tcp_no_delay = true;
  size_t worker_threads = 4;       // read lane: queries and proofs run on this many threads
  // Plain /db/query reads are first tried on the io thread while the read
  // lane is idle, and run there when they turn out cheap (within
  // `inline_budget`; else on the lane): two thread hand-offs fewer per
  // request (docs/performance.md "Cheap reads on the io thread").
  bool inline_reads = true;
  InlineBudget inline_budget;
  // After a read over the budget, reads are not tried on the io thread for
  // this long; after a slow one, for twice as long per slow read in a row,
  // up to 100 times this.
  std::chrono::milliseconds inline_pause{100};
  // At most this share of the io thread's time goes to reads tried there, per
  // inline_window: past it, reads go to the lane until the window ends (a busy
  // io thread spreads cheap reads over the lane's threads, and stays free for
  // the sockets).
  double inline_share = 0.5;
  std::chrono::milliseconds inline_window{10};
  size_t max_pending_reads = 64;   // read requests running + queued; 503 over it
  size_t max_pending_writes = 64;  // write requests running + queued; 503 over it
  // Write lane threads: a peer forwards this many writes at once; /db/load
  // runs here. A primary's /db/execute writes go to its backend's submit
  // thread instead (HttpBackend::submits_writes), which batches them.
  size_t write_threads = 16;
  size_t max_backups = 2;          // GET /db/backup running (made + sent); 503 "busy" over it
  std::chrono::milliseconds backup_timeout{600000};  // making one backup, and again sending it
  // POST /db/load: the upload's size cap (413 over it; the max_body_bytes cap
  // does not apply), how long receiving it and then loading it may each take,
  // and where it is spooled (empty: the system's temporary directory; the
  // nodes pass their database's directory, which has room for the data anyway).
  uint64_t max_load_bytes = 1ull << 30;
  std::chrono::milliseconds load_timeout{3600000};
  std::filesystem::path load_dir;
  HttpJsonLimits json_limits;
  // Where metrics are registered and read from /metrics; not owned, must
  // outlive the HttpApi. Null: the HttpApi keeps its own registry.
  Metrics* metrics = nullptr;
};

class HttpApi {
 public:
  HttpApi(HttpBackend& backend, HttpApiOptions options);
  ~HttpApi();  // stop()s
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Binds, logs the bound address (and, without a write token, that writes are
  // loopback-only) and starts the threads. Errors: bad listen address, port in
  // use, a write API without a token on a non-loopback address. Call once.
  Status start();
  // Closes the listener and every connection, waits for running backend calls,
  // joins the threads. Idempotent; not from a backend call.
  void stop();

  uint16_t bound_port() const;           // after start()
  std::string bound_address() const;     // "host:port" after start()
  Metrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads a write token file: contents with surrounding whitespace trimmed;
// invalid_argument when empty, io_error when unreadable, too_large over 4 KiB.
Result<std::string> read_token_file(const std::filesystem::path& file);

}  // namespace swarmlite::net
