// Deterministic execution of one log entry on SQLite (docs/determinism.md).
// The primary and every replica run an entry through the same
// DeterministicDb::run_entry, so the same entry on the same pages gives the
// same pages:
//  - every writing connection is opened through the "swarmlite" VFS with a
//    WriteCapture and the fixed settings below (page size, WAL, secure_delete,
//    foreign keys, limits, db_config flags, ...); the process runs in TZ=UTC;
//  - "now" is pinned to the entry's time_ms (PinnedTime), random()/randomblob()
//    are replaced by a ChaCha20 stream keyed by the entry's seed, and SQLite's
//    internal PRNG is reseeded from the seed;
//  - changes() / last_insert_rowid() are reset at the start of every entry and
//    total_changes() counts from it;
//  - an authorizer refuses what cannot be pinned or escapes the file (ATTACH,
//    pragmas, TEMP objects, virtual tables other than fts5,
//    host-dependent functions, ...);
//  - every function function_policy.h refuses is overridden on the connection
//    with one that fails the write, so it fails wherever SQLite evaluates it
//    (DEFAULT, CHECK, generated columns, indexes, triggers, views, foreign-key
//    actions); CREATE/ALTER statements whose stored expressions call one are
//    refused naming the object (check_created_objects);
//  - after the entry's statements, `UPDATE sqlite_swarmlite SET v=<seq> WHERE
//    k='applied_seq'` runs in the same transaction (not a logged statement).
// At the commit frame the WriteCapture hook applies the written pages to the
// StateTree and hands root + page count to the caller, who appends to the log
// (primary) or compares with the entry (replica); an error rolls back.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/entry.h"
#include "core/result.h"
#include "sqlbridge/engine/connection_settings.h"
#include "sqlbridge/engine/page_vfs.h"
#include "sqlbridge/engine/seeded_stream.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {

// What one statement (one prepared statement of the text) produced.
struct StatementResult {
  size_t statement_index = 0;     // which Statement of the transaction it came from
  int64_t rows_changed = 0;       // sqlite3_changes() after the statement
  int64_t last_insert_rowid = 0;  // sqlite3_last_insert_rowid() after the statement
  std::vector<std::string> columns;       // empty when the statement returns no rows
  std::vector<std::vector<Value>> rows;   // RETURNING / SELECT rows
};

// Where a failed transaction failed (run_entry, Primary::execute).
struct EntryFailure {
  std::optional<size_t> statement;          // index of the failing Statement, if one failed
  std::vector<StatementResult> completed;   // results of the Statements before it
};

// The pinned inputs of one entry.
struct EntryInputs {
  uint64_t seq = 0;
  int64_t time_ms = 0;
  std::array<uint8_t, 32> seed{};
};

// A write connection with the fixed settings and the entry machinery.
// Not thread-safe: one thread at a time (Primary / Replica serialise calls).
class DeterministicDb {
 public:
  enum class Mode {
    user,     // logged user statements: authorizer on, sqlite_swarmlite read-only
    genesis,  // the genesis entry: may create and fill sqlite_swarmlite
  };
  // Called in the commit hook after the state tree took the commit's pages.
  // An error fails the commit (SQLite rolls back, the tree is undone) and is
  // what run_entry returns.
  using OnCommit = std::function<Status(const Hash32& state_root, uint32_t page_count)>;

  // Opens or creates the database file for writing with the fixed settings,
  // and builds the state tree from the file (StateTree::from_file).
  static Result<std::unique_ptr<DeterministicDb>> open(const std::filesystem::path& path);
  ~DeterministicDb();

  // Entries applied so far (= applied_seq + 1), read from sqlite_swarmlite; 0
  // for a database with no genesis. bad_version for a format 1 database (its
  // metadata in _swarmlite: the message names the file and how to carry the
  // data over); corrupt when sqlite_swarmlite is missing but the database has
  // other objects, or applied_seq is not an integer.
  Result<uint64_t> read_applied_size();

  // Runs `statements` (each SQL text exactly as SQLite splits it) in one
  // transaction with the pinned inputs, then the applied_seq update, then
  // COMMIT through `on_commit`. On any error the transaction is rolled back
  // and nothing changed. Errors: refused (authorizer / refused construct),
  // invalid_argument (bad params), sqlite_error (the statement failed),
  // io_error (SQLite I/O, disk full, busy: not the statement's fault), or
  // on_commit's error. Messages name the statement index.
  // `collect_rows`: keep RETURNING / SELECT rows in the results (the primary
  // wants them, a replica does not).
  // `failure`, if given, says on error which statement failed (when one did)
  // and holds the results of the statements before it (rolled back with the
  // rest): what an rqlite-style API reports per statement.
  Result<std::vector<StatementResult>> run_entry(const EntryInputs& inputs,
                                                 std::span<const Statement> statements,
                                                 Mode mode, bool collect_rows,
                                                 const OnCommit& on_commit,
                                                 EntryFailure* failure = nullptr);

  // Batched replay (docs/determinism.md "Batched replay"): begin_batch() opens
  // one SQLite transaction; each run_entry() until commit_batch() then runs
  // inside it exactly as on its own (pinned inputs, cell padding, changes()
  // reset, applied_seq update) but does not commit, and its on_commit is not
  // called. An entry that fails, or leaves deferred foreign-key violations (its
  // own COMMIT would have failed), rolls the whole batch back (in_batch() is
  // false again). commit_batch() commits every entry of the batch at once,
  // through `on_commit` with the root of the pages at the end; an error there
  // rolls the batch back too. rollback_batch() drops an open batch.
  //
  // A *lean* batch (begin_batch(true); docs/determinism.md "Lean batches")
  // skips two per-entry steps whose only effect on the pages is at the batch's
  // end or not at all for most workloads: the cell padding (only a cell
  // shorter than 4 bytes, built before any other cell of its entry, reads the
  // padded bytes) and the applied_seq update (written once, for the batch's
  // last entry, before the commit). The pages may then differ from those of
  // the entries run one by one; the caller's root check at the commit says
  // whether they do, and a caller that sees a mismatch runs the batch again
  // without `lean`. A schema with a virtual table never gets a lean batch (the
  // padding's SAVEPOINT flushes FTS5's pending terms at every entry, as the
  // primary's commit does): begin_batch then opens a plain one, and
  // batch_is_lean() says which it opened.
  Status begin_batch(bool lean = false);
  Status commit_batch(const OnCommit& on_commit);
  void rollback_batch();
  bool in_batch() const { return batch_; }
  // An entry of the open batch ran ANALYZE or wrote a sqlite_stat table: end
  // the batch here (commit_batch), so the next entry plans with the
  // statistics the file now holds, as on the primary (reload_stats_if_due,
  // docs/determinism.md "Planner statistics").
  bool stats_reload_due() const { return stats_reload_due_; }
  // Counts the entries that ran ANALYZE or wrote a sqlite_stat table (any
  // format, committed or not), counted once the entry is over; thread-safe.
  // Other connections on the file (the HTTP read pool) load statistics only
  // with the schema, so they start afresh when it moves (docs/determinism.md
  // "Planner statistics").
  uint64_t stats_epoch() const { return stats_epoch_.load(std::memory_order_acquire); }
  bool batch_is_lean() const { return batch_ && lean_; }
  // Keeps up to `capacity` prepared single-statement INSERT/UPDATE/DELETE/
  // REPLACE texts of user entries for reuse by later entries (0, the default:
  // every statement is prepared afresh). Only statements whose preparation the
  // authorizer passed without a refusal, a pragma, a created object or an fts5
  // rank read, and that ran without error, are kept; the cache is dropped
  // whenever the schema version differs from the one they were prepared
  // against, and on every rollback. A statement SQLite re-prepares inside its
  // step gets the checks of a fresh prepare after it (docs/determinism.md
  // "Statement cache"). The primary and replicas share this cache.
  void set_statement_cache(size_t capacity);

  // Pages the open batch (or, outside a batch, the open transaction) has
  // already written to the WAL (SQLite spills its cache in a long
  // transaction); they are held in memory until the commit. Distinct pages:
  // a page spilled twice counts once.
  size_t batch_spilled_pages() const { return capture_->pending_pages(); }

  const StateTree& state_tree() const { return tree_; }
  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_.get(); }

 private:
  DeterministicDb() = default;
  Status configure();
  Status check_created_objects(size_t index);
  std::optional<std::string> rank_read_refusal();
  Status run_statement_text(size_t index, const Statement& st, bool collect_rows,
                            std::vector<StatementResult>& out);
  int64_t schema_version();
  // Whether sqlite_schema holds a virtual table (cached per schema version).
  bool has_virtual_tables();
  // UPDATE of the metadata table's applied_seq to `seq` (one row, or an error).
  Status update_applied_seq(uint64_t seq);
  // Cell padding at the start of each user entry (docs/determinism.md "Cell
  // padding"), by the log's format: a rolled-back row before format 4, a
  // write of applied_seq from format 4 (and, in a batch, a savepoint that
  // flushes virtual tables as an entry's own COMMIT would).
  Status pad_cell_buffer();
  // Format 4's pad write: applied_seq set to x'5357504144'.
  Status pad_write();
  // The applied_seq update that ends a lean batch (or its lean part): in
  // format 4 after a pad write, as a plain entry writes it.
  Status update_lean_applied_seq(uint64_t seq);
  void clear_statement_cache();
  // Steps one of the connection's own fixed statements (BEGIN IMMEDIATE,
  // COMMIT), prepared on first use and kept: an error names `sql`.
  Status step_fixed(SqliteStmt& stmt, const char* sql);

  struct CachedStatement {
    SqliteStmt stmt;
    std::string keyword;
  };
  // The cached statement for `sql`, if any and the schema did not change since.
  CachedStatement* cached_statement(const std::string& sql);
  size_t cache_capacity_ = 0;
  std::map<std::string, CachedStatement, std::less<>> cache_;
  int64_t cache_schema_version_ = -1;
  // The schema version was checked against cache_schema_version_ since the
  // last statement that ran through the fresh path (cached_statement).
  bool cache_version_checked_ = false;
  SqliteStmt schema_version_;

  std::filesystem::path path_;
  std::unique_ptr<WriteCapture> capture_;
  std::unique_ptr<WriteAuthState> auth_;
  SqliteDb db_;
  StateTree tree_;
  std::unique_ptr<SeededStream> stream_;  // the running entry's stream (null between entries)
  SqliteStmt update_applied_;
  SqliteStmt reset_changes_;
  std::array<SqliteStmt, 4> pad_;    // formats 2-3: SAVEPOINT, INSERT, ROLLBACK TO, RELEASE
  std::array<SqliteStmt, 2> flush_;  // format 4, in a batch: SAVEPOINT, RELEASE
  SqliteStmt pad_write_;             // format 4: applied_seq set to a 5-byte blob
  SqliteStmt begin_, commit_;        // BEGIN IMMEDIATE and COMMIT (step_fixed)
  bool batch_ = false;  // a batch transaction is open (begin_batch)
  // The connection's planner statistics may differ from the file's: reset the
  // schema once outside a transaction (reload_stats_if_due).
  bool stats_reload_due_ = false;
  std::atomic<uint64_t> stats_epoch_{0};
  void reload_stats_if_due();
  size_t batch_entries_ = 0;  // entries run in the open batch
  Status reset_schema();
  // The log's format version (sqlite_swarmlite's format_version), read at the
  // first user entry: it decides how an empty blob parameter binds and how a
  // user entry pads the cell buffer (genesis.h).
  int64_t format_version_ = 0;
  Result<int64_t> read_format_version();
  bool lean_ = false;   // ... and it is lean: no padding, applied_seq at commit_batch
  uint64_t lean_last_seq_ = 0;  // the seq of the lean batch's last entry run
  bool lean_ran_ = false;       // an entry ran in the lean batch
  SqliteStmt virtual_tables_;   // has_virtual_tables' query
  int64_t vtab_schema_version_ = -1;
  bool vtab_found_ = false;
};

// Replays a logged entry (replica, and the primary catching up on its own log):
// runs it with its pinned inputs (genesis mode for seq 0 — check_genesis first)
// and compares the state root and page count at the commit frame with the
// entry's. Errc::diverged (seq and both roots in the message; nothing
// committed) when they differ or a statement fails that the primary logged as
// successful; transient errors (io_error, corrupt) pass through unchanged.
Status replay_entry(DeterministicDb& db, const Entry& entry);

// An entry whose SQL mentions ANALYZE or REINDEX (in any ASCII case, never by
// the locale; anywhere in the text: a false match costs one schema read). SQLite runs those over
// its in-memory schema's hash tables, whose order depends on the connection's history, so a format
// 5 entry runs them on a schema read afresh (docs/determinism.md "Planner statistics"): run_entry
// reads it afresh before such an entry, which must therefore be the first of a replay batch.
bool needs_fresh_schema(std::span<const Statement> statements);

// Opens a read-only connection on `path` through the swarmlite VFS (with
// `capture` recording the pages it reads, may be null). It sees committed
// state only; it never blocks the writer (WAL).
Result<SqliteDb> open_reader(const std::filesystem::path& path, const ReadCapture* capture);

// Reads applied_seq + 1 through any connection (0 when there is no
// sqlite_swarmlite; errors as DeterministicDb::read_applied_size).
Result<uint64_t> read_applied_size(sqlite3* db);
// The same, keeping the prepared read of applied_seq in `cached` (empty at
// first) for the next call on the same connection `db`. Answers and errors
// are those of read_applied_size(db).
Result<uint64_t> read_applied_size(sqlite3* db, SqliteStmt& cached);

}  // namespace swarmlite
