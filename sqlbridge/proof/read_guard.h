// Safe read-only query execution (docs/verified-reads.md).
// Used by every place that runs SQL it did not write: a peer answering a client
// (with or without a proof) and the verifier re-running the SQL a proof names.
//
// Layers, each enough on its own for its threat:
//  - the connection is opened SQLITE_OPEN_READONLY, with DEFENSIVE on, extension
//    loading off, untrusted schema, ATTACH limit 0;
//  - an authorizer allows only SELECT, READ, FUNCTION (minus a deny list such as
//    load_extension), RECURSIVE and a list of read-only PRAGMAs used without a
//    value; everything else (INSERT/UPDATE/DELETE/CREATE/DROP/ALTER/ATTACH/
//    DETACH/BEGIN/SAVEPOINT/writing pragmas …) is refused with the construct named;
//  - sqlite3_limit caps SQL length, LIKE pattern, expression depth, compound
//    SELECT terms, value length, bound variables and function arguments;
//  - a progress handler interrupts a statement past its time limit or VM
//    instruction budget, or when the process stops (stop_all_reads()); the
//    connection stays usable afterwards;
//  - printf()/format() are wrapped (length_guard.h): a width or precision over
//    the value length cap is refused before SQLite runs the call (one call is
//    not interruptible, and printf('%.*c', 900000000, 'x') loops 900 million
//    times even when the result is cut at the length cap); under the cap
//    SQLite's own printf runs, so results are SQLite's;
//  - the result is capped in rows and bytes.
// Exactly one statement per query; params bind positionally and must match the
// statement's parameter count.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/entry.h"
#include "core/result.h"

struct sqlite3;

namespace swarmlite {

struct ReadGuardOptions {
  std::chrono::milliseconds time_limit{2000};  // wall clock per query (prepare + all steps)
  uint64_t max_vm_steps = 1'000'000'000;       // VDBE instructions per query
  int max_sql_length = 1 << 20;                // SQLITE_LIMIT_SQL_LENGTH
  int max_like_pattern_length = 1000;          // SQLITE_LIMIT_LIKE_PATTERN_LENGTH
  int max_expr_depth = 200;                    // SQLITE_LIMIT_EXPR_DEPTH
  int max_compound_select = 50;                // SQLITE_LIMIT_COMPOUND_SELECT
  int max_value_length = 16 << 20;             // SQLITE_LIMIT_LENGTH: one string/blob/row
  int max_variables = 32766;                   // SQLITE_LIMIT_VARIABLE_NUMBER
  int max_function_args = 100;                 // SQLITE_LIMIT_FUNCTION_ARG
  size_t max_rows = 100'000;                   // rows in one result
  size_t max_result_bytes = 16 << 20;          // text/blob bytes + 8 per other value
  // Prepared statements kept per connection, by SQL text (least recently used
  // dropped first); 0: every query is prepared afresh. For long-lived
  // connections that see the same queries again (net::ReadPool's). A kept
  // statement was authorized when it was prepared, and SQLite authorizes it
  // again when it re-prepares it after a schema change; its guard flags are
  // kept with it, and it is reset and unbound after every query (it holds no
  // read transaction between queries). Only SQL of up to 4 KiB is kept, and
  // SQL without parameters (literals in the text) only once it comes again.
  // docs/performance.md "Prepared reads".
  size_t statement_cache = 0;
};

// Rows as SQLite computed them, values typed as core Value
// (NULL, INTEGER -> int64, REAL -> double, TEXT -> string, BLOB -> bytes).
struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::string> decltypes;  // declared column type, "" for expressions
  std::vector<std::vector<Value>> rows;
  friend bool operator==(const QueryResult&, const QueryResult&) = default;
};

// One guarded read-only connection. Not thread-safe: one thread at a time
// (it may move between threads). Owns its sqlite3 handle.
class GuardedConnection {
 public:
  // Opens `uri` (an SQLite URI filename, e.g. from page_vfs_uri()) with
  // SQLITE_OPEN_READONLY | SQLITE_OPEN_URI and installs the guard. Reads nothing
  // from the database: the first page read happens in the first query, so a
  // page-capturing VFS sees exactly what a fresh reader needs.
  static Result<std::unique_ptr<GuardedConnection>> open(const std::string& uri,
                                                         const ReadGuardOptions& options = {});
  ~GuardedConnection();
  GuardedConnection(const GuardedConnection&) = delete;
  GuardedConnection& operator=(const GuardedConnection&) = delete;

  // Runs one read-only statement. Errors: refused (a construct the guard denies,
  // more than one statement, interrupted by the time limit or instruction
  // budget), too_large (result over max_rows / max_result_bytes),
  // invalid_argument (parameter count mismatch, empty SQL), sqlite_error (the
  // rest: syntax, no such table, I/O — the SQLite message and code included).
  Result<QueryResult> query(std::string_view sql, const std::vector<Value>& params);

  sqlite3* handle() const { return db_; }

  // Time the caller spent waiting outside SQLite's work during the query now
  // running, called from inside it (a light client's VFS fetching pages over
  // the network, docs/light-client.md "Time limit"): the deadline moves by
  // `waited`, so time_limit bounds the query's own work, not the network.
  // Outside a query it has no effect (the next query starts afresh).
  void exclude_wait(std::chrono::steady_clock::duration waited);

  // A tighter budget for the queries that follow, on top of the limits, until
  // set_trial(std::nullopt): a query over `vm_steps` VDBE instructions or
  // still running at `deadline` (both checked every 1,000 instructions, as
  // the limits are) stops with Errc::refused, and over_trial() turns true
  // (a new set_trial() clears it). For a caller that tries a query where only
  // a cheap one may run and runs it again elsewhere when it is not cheap (the
  // HTTP server's io thread, docs/performance.md "Cheap reads on the io
  // thread"): a read changes nothing, so only the time tried is lost.
  struct Trial {
    uint64_t vm_steps = 0;
    std::chrono::steady_clock::time_point deadline;
  };
  void set_trial(std::optional<Trial> trial);
  bool over_trial() const;

  // Process-wide: while `stopping` is set, every guarded statement in the process
  // is interrupted at its next progress check (refused, "the process is
  // stopping"), trusted scopes excepted. For shutdown (a SIGTERM must not wait
  // for reads); tests turn it off again.
  static void stop_all_reads(bool stopping);

  // While alive, the guard lets everything through (authorizer and limits'
  // progress checks off): for the caller's own SQL on this connection, e.g.
  // begin_snapshot()'s BEGIN and its read of sqlite_swarmlite — never for SQL that
  // came from a client or a peer. Not nestable.
  class TrustedScope {
   public:
    explicit TrustedScope(GuardedConnection& c);
    ~TrustedScope();
    TrustedScope(const TrustedScope&) = delete;
    TrustedScope& operator=(const TrustedScope&) = delete;

   private:
    GuardedConnection& c_;
  };
  const ReadGuardOptions& options() const;

 private:
  struct State;
  GuardedConnection(sqlite3* db, std::unique_ptr<State> state);
  sqlite3* db_ = nullptr;
  std::unique_ptr<State> state_;
};

}  // namespace swarmlite
