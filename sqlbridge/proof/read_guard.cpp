#include "sqlbridge/proof/read_guard.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "sqlbridge/engine/length_guard.h"
#include "sqlbridge/engine/linear_functions.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {
namespace {

// The progress handler runs every kProgressOps VM instructions: often enough to
// stop within microseconds of a limit, rare enough to cost nothing measurable.
constexpr int kProgressOps = 1000;

// Functions a query may not call even though reading is allowed.
constexpr std::string_view kDeniedFunctions[] = {
    "load_extension",  // loads native code
    "fts3_tokenizer",  // takes and returns raw pointers (compiled in on Debian)
};

// PRAGMAs whose query form (no value: "PRAGMA foreign_keys") only reports a
// setting or reads the database (docs/verified-reads.md "PRAGMAs in reads").
// ORMs read several on connect (SQLAlchemy reads read_uncommitted). Their
// setting forms ("PRAGMA foreign_keys = 0") carry a value and stay refused, as
// do pragmas with side effects even without a value (optimize, shrink_memory,
// wal_checkpoint, incremental_vacuum) and those that reveal host paths
// (temp_store_directory, data_store_directory).
constexpr std::string_view kReadOnlyPragmas[] = {
    "analysis_limit",    "application_id",   "auto_vacuum",        "automatic_index",
    "busy_timeout",      "cache_size",       "cache_spill",        "cell_size_check",
    "checkpoint_fullfsync", "collation_list", "compile_options",   "count_changes",
    "data_version",      "database_list",    "defer_foreign_keys", "empty_result_callbacks",
    "encoding",          "foreign_key_check", "foreign_keys",      "freelist_count",
    "full_column_names", "fullfsync",        "function_list",      "hard_heap_limit",
    "ignore_check_constraints", "integrity_check", "journal_mode", "journal_size_limit",
    "legacy_alter_table", "legacy_file_format", "locking_mode",    "max_page_count",
    "mmap_size",         "module_list",      "page_count",         "page_size",
    "pragma_list",       "query_only",       "quick_check",        "read_uncommitted",
    "recursive_triggers", "reverse_unordered_selects", "schema_version", "secure_delete",
    "short_column_names", "soft_heap_limit", "synchronous",        "table_list",
    "temp_store",        "threads",          "trusted_schema",     "user_version",
    "wal_autocheckpoint", "writable_schema",
};
// PRAGMAs that only read and take an argument: a table or index name
// ("PRAGMA table_info(t)"), or for the checks a table name or an error cap
// ("PRAGMA integrity_check(10)"; bounded by the time limit like any query).
constexpr std::string_view kNamedReadOnlyPragmas[] = {
    "foreign_key_check", "foreign_key_list", "index_info",  "index_list",   "index_xinfo",
    "integrity_check",   "quick_check",      "table_info",  "table_list",   "table_xinfo",
};

// The tables that hold the schema: writing them is changing the schema.
constexpr std::string_view kSchemaTables[] = {
    "sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema",
};

template <size_t N>
bool contains(const std::string_view (&list)[N], const char* name) {
  if (name == nullptr) return false;
  for (std::string_view s : list) {
    if (sqlite3_strnicmp(s.data(), name, static_cast<int>(s.size())) == 0 &&
        name[s.size()] == '\0') {
      return true;
    }
  }
  return false;
}

const char* action_name(int action) {
  switch (action) {
    case SQLITE_CREATE_INDEX: return "CREATE INDEX";
    case SQLITE_CREATE_TABLE: return "CREATE TABLE";
    case SQLITE_CREATE_TEMP_INDEX: return "CREATE TEMP INDEX";
    case SQLITE_CREATE_TEMP_TABLE: return "CREATE TEMP TABLE";
    case SQLITE_CREATE_TEMP_TRIGGER: return "CREATE TEMP TRIGGER";
    case SQLITE_CREATE_TEMP_VIEW: return "CREATE TEMP VIEW";
    case SQLITE_CREATE_TRIGGER: return "CREATE TRIGGER";
    case SQLITE_CREATE_VIEW: return "CREATE VIEW";
    case SQLITE_DELETE: return "DELETE";
    case SQLITE_DROP_INDEX: return "DROP INDEX";
    case SQLITE_DROP_TABLE: return "DROP TABLE";
    case SQLITE_DROP_TEMP_INDEX: return "DROP TEMP INDEX";
    case SQLITE_DROP_TEMP_TABLE: return "DROP TEMP TABLE";
    case SQLITE_DROP_TEMP_TRIGGER: return "DROP TEMP TRIGGER";
    case SQLITE_DROP_TEMP_VIEW: return "DROP TEMP VIEW";
    case SQLITE_DROP_TRIGGER: return "DROP TRIGGER";
    case SQLITE_DROP_VIEW: return "DROP VIEW";
    case SQLITE_INSERT: return "INSERT";
    case SQLITE_PRAGMA: return "PRAGMA";
    case SQLITE_READ: return "READ";
    case SQLITE_SELECT: return "SELECT";
    case SQLITE_TRANSACTION: return "transaction control (BEGIN/COMMIT/ROLLBACK)";
    case SQLITE_UPDATE: return "UPDATE";
    case SQLITE_ATTACH: return "ATTACH";
    case SQLITE_DETACH: return "DETACH";
    case SQLITE_ALTER_TABLE: return "ALTER TABLE";
    case SQLITE_REINDEX: return "REINDEX";
    case SQLITE_ANALYZE: return "ANALYZE";
    case SQLITE_CREATE_VTABLE: return "CREATE VIRTUAL TABLE";
    case SQLITE_DROP_VTABLE: return "DROP VIRTUAL TABLE";
    case SQLITE_FUNCTION: return "function call";
    case SQLITE_SAVEPOINT: return "SAVEPOINT";
    case SQLITE_RECURSIVE: return "recursive CTE";
    default: return "unknown action";
  }
}

// "file" of pragma_database_list: the node's path on disk, which a reader has
// no business learning (it is NULL in results, in both forms of the pragma).
bool is_database_list_file(const char* table, const char* column) {
  return table != nullptr && column != nullptr &&
         sqlite3_stricmp(table, "pragma_database_list") == 0 && sqlite3_stricmp(column, "file") == 0;
}
std::atomic<bool> g_stopping{false};

size_t value_cost(const Value& v) {
  if (const auto* s = std::get_if<std::string>(&v.v)) return s->size();
  if (const auto* b = std::get_if<Bytes>(&v.v)) return b->size();
  return 8;
}

}  // namespace

// Per-connection guard state, reached from the SQLite callbacks. Reset per query.
struct GuardedConnection::State {
  ReadGuardOptions options;
  std::chrono::steady_clock::time_point start;
  std::chrono::steady_clock::time_point deadline;
  std::chrono::steady_clock::duration excluded{};  // exclude_wait() total this query
  uint64_t steps = 0;
  std::string_view sql;                    // the query being prepared (for messages)
  std::optional<std::string> denied;       // first construct the authorizer refused
  std::optional<std::string> interrupted;  // why the progress handler stopped the query
  bool trusted = false;                    // TrustedScope alive: allow everything
  std::optional<Trial> trial;              // set_trial(): a budget on top of the limits
  bool over_trial = false;                 // a query went over `trial` since set_trial()
  bool database_list = false;              // the query reads PRAGMA database_list
  bool journal_mode_query = false;         // the query is "PRAGMA journal_mode" (no value)
  std::unique_ptr<LengthGuard> length_guard;  // printf()/format() (length_guard.h)
  // ReadGuardOptions::statement_cache: statements that passed query()'s
  // checks, with the database_list flag the authorizer set when they were prepared.
  struct Cached {
    std::string sql;
    SqliteStmt stmt;
    bool database_list = false;  // only the prepare path reads journal_mode_query
    uint64_t last_use = 0;
  };
  std::vector<Cached> cache;
  uint64_t uses = 0;
  // Hashes of recent unparameterized SQL texts kept out of the cache: such a
  // text (literals in it) is kept only when it comes again, so a stream of
  // one-off queries does not churn the cache.
  std::array<size_t, 64> seen{};
  size_t seen_next = 0;
  bool seen_before(std::string_view text) {
    const size_t h = std::hash<std::string_view>{}(text);
    if (std::find(seen.begin(), seen.end(), h) != seen.end()) return true;
    seen[seen_next++ % seen.size()] = h;
    return false;
  }

  Cached* cached(std::string_view text) {
    for (Cached& c : cache) {
      if (c.sql == text) {
        c.last_use = ++uses;
        return &c;
      }
    }
    return nullptr;
  }
  // Longer SQL is prepared every time: the cache's memory stays small
  // (statement_cache × this much text, and the programs of such statements).
  static constexpr size_t kMaxCachedSql = 4096;
  void keep(std::string_view text, SqliteStmt stmt, bool dl) {
    if (options.statement_cache == 0 || text.size() > kMaxCachedSql) return;
    if (cache.size() >= options.statement_cache) {
      auto oldest = std::min_element(
          cache.begin(), cache.end(),
          [](const Cached& a, const Cached& b) { return a.last_use < b.last_use; });
      cache.erase(oldest);
    }
    cache.push_back(Cached{std::string(text), std::move(stmt), dl, ++uses});
  }
  void drop(const Cached* c) { cache.erase(cache.begin() + (c - cache.data())); }

  void begin_query(std::string_view text) {
    sql = text;
    start = std::chrono::steady_clock::now();
    deadline = start + options.time_limit;
    excluded = {};
    steps = 0;
    denied.reset();
    interrupted.reset();
    database_list = false;
    journal_mode_query = false;
  }
  int64_t elapsed_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now() - start)
        .count();
  }

  static int authorize(void* self, int action, const char* a3, const char* a4, const char*,
                       const char*) {
    auto* st = static_cast<State*>(self);
    if (st->trusted) return SQLITE_OK;
    switch (action) {
      case SQLITE_READ:
        // The table-valued form: SQLITE_IGNORE reads the column as NULL.
        if (is_database_list_file(a3, a4)) return SQLITE_IGNORE;
        return SQLITE_OK;
      case SQLITE_SELECT:
      case SQLITE_RECURSIVE:
        return SQLITE_OK;
      case SQLITE_FUNCTION:
        if (!contains(kDeniedFunctions, a4)) return SQLITE_OK;
        st->deny(fmt::format("function {}() is not allowed in a read-only query", a4));
        return SQLITE_DENY;
      case SQLITE_PRAGMA:
        if (a3 != nullptr && sqlite3_stricmp(a3, "database_list") == 0) st->database_list = true;
        if (a3 != nullptr && a4 == nullptr && sqlite3_stricmp(a3, "journal_mode") == 0) {
          st->journal_mode_query = true;
        }
        if (a4 == nullptr && contains(kReadOnlyPragmas, a3)) return SQLITE_OK;
        if (a4 != nullptr && contains(kNamedReadOnlyPragmas, a3)) return SQLITE_OK;
        st->deny(a4 ? fmt::format("PRAGMA {} = {} is not allowed in a read-only query", a3, a4)
                    : fmt::format("PRAGMA {} is not allowed in a read-only query", a3 ? a3 : "?"));
        return SQLITE_DENY;
      case SQLITE_UPDATE:
        // sqlite3_declare_vtab() (FTS5's xConnect, on first use of the table)
        // parses a CREATE TABLE whose nested "UPDATE sqlite_master" is authorized
        // but never run. IGNORE lets that through; a real UPDATE of the schema
        // is still a writing statement, refused by the sqlite3_stmt_readonly check
        // (and impossible on a read-only, defensive connection).
        if (contains(kSchemaTables, a3)) return SQLITE_IGNORE;
        [[fallthrough]];
      default: {
        if (contains(kSchemaTables, a3)) {
          st->deny(fmt::format("{} would change the schema ({} on '{}'): not allowed in a "
                               "read-only query",
                               leading_keyword(st->sql), action_name(action), a3));
          return SQLITE_DENY;
        }
        std::string what = action_name(action);
        if (a3 != nullptr) what += fmt::format(" on '{}'", a3);
        st->deny(fmt::format("{} is not allowed in a read-only query", what));
        return SQLITE_DENY;
      }
    }
  }
  void deny(std::string why) {
    if (!denied) denied = std::move(why);
  }

  static int progress(void* self) {
    auto* st = static_cast<State*>(self);
    if (st->trusted) return 0;
    if (g_stopping.load(std::memory_order_relaxed)) {
      st->interrupted = fmt::format("query interrupted after {} ms: the process is stopping",
                                    st->elapsed_ms());
      return 1;
    }
    st->steps += kProgressOps;
    if (st->trial && (st->steps > st->trial->vm_steps ||
                      std::chrono::steady_clock::now() > st->trial->deadline)) {
      st->over_trial = true;
      st->interrupted = fmt::format(
          "query stopped after {} VM steps: over the budget it was tried with", st->steps);
      return 1;
    }
    if (st->steps > st->options.max_vm_steps) {
      st->interrupted = fmt::format("query interrupted after {} ms: over the budget of {} VM steps",
                                    st->elapsed_ms(), st->options.max_vm_steps);
      return 1;
    }
    if (std::chrono::steady_clock::now() > st->deadline) {
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(st->excluded);
      st->interrupted = fmt::format(
          "query interrupted after {} ms{}: over the time limit of {} ms", st->elapsed_ms(),
          waited.count() > 0 ? fmt::format(" ({} ms of it waiting for pages, not counted)",
                                           waited.count())
                             : std::string(),
          st->options.time_limit.count());
      return 1;
    }
    return 0;
  }

  // The error for a failed prepare/step: the guard's own reason when it caused it.
  Error error_for(sqlite3* db, int rc, std::string_view stage) const {
    if (denied) return make_error(Errc::refused, "{}", *denied);
    if (interrupted) return make_error(Errc::refused, "{}", *interrupted);
    return make_error(Errc::sqlite_error, "{}: {} (SQLite code {})", stage, sqlite3_errmsg(db),
                      sqlite3_extended_errcode(db) ? sqlite3_extended_errcode(db) : rc);
  }
};

GuardedConnection::GuardedConnection(sqlite3* db, std::unique_ptr<State> state)
    : db_(db), state_(std::move(state)) {}

GuardedConnection::~GuardedConnection() {
  state_->cache.clear();  // finalized before the connection closes
  SqliteCloser()(db_);
}

const ReadGuardOptions& GuardedConnection::options() const { return state_->options; }

void GuardedConnection::exclude_wait(std::chrono::steady_clock::duration waited) {
  if (waited <= std::chrono::steady_clock::duration::zero()) return;
  state_->deadline += waited;
  state_->excluded += waited;
}

void GuardedConnection::set_trial(std::optional<Trial> trial) {
  state_->trial = trial;
  state_->over_trial = false;
}

bool GuardedConnection::over_trial() const { return state_->over_trial; }

void GuardedConnection::stop_all_reads(bool stopping) { g_stopping.store(stopping); }

GuardedConnection::TrustedScope::TrustedScope(GuardedConnection& c) : c_(c) {
  assert(!c_.state_->trusted);
  c_.state_->trusted = true;
}
GuardedConnection::TrustedScope::~TrustedScope() { c_.state_->trusted = false; }

Result<std::unique_ptr<GuardedConnection>> GuardedConnection::open(
    const std::string& uri, const ReadGuardOptions& options) {
  SWL_ASSIGN(SqliteDb owned, open_sqlite(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX));
  sqlite3* db = owned.get();
  auto state = std::make_unique<State>();
  state->options = options;
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, nullptr);
  sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, options.max_sql_length);
  sqlite3_limit(db, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, options.max_like_pattern_length);
  sqlite3_limit(db, SQLITE_LIMIT_EXPR_DEPTH, options.max_expr_depth);
  sqlite3_limit(db, SQLITE_LIMIT_COMPOUND_SELECT, options.max_compound_select);
  sqlite3_limit(db, SQLITE_LIMIT_LENGTH, options.max_value_length);
  sqlite3_limit(db, SQLITE_LIMIT_VARIABLE_NUMBER, options.max_variables);
  sqlite3_limit(db, SQLITE_LIMIT_FUNCTION_ARG, options.max_function_args);
  sqlite3_limit(db, SQLITE_LIMIT_WORKER_THREADS, 0);
  sqlite3_set_authorizer(db, &State::authorize, state.get());
  sqlite3_progress_handler(db, kProgressOps, &State::progress, state.get());
  // printf()/format() through the guard (see read_guard.h).
  State* raw_state = state.get();
  SWL_ASSIGN(state->length_guard,
             LengthGuard::install(db, options.max_value_length, [raw_state](const std::string& why) {
               raw_state->interrupted = why;
             }));
  // instr() in linear time, same results (linear_functions.h).
  SWL_TRY(install_linear_functions(db));
  return std::unique_ptr<GuardedConnection>(new GuardedConnection(owned.release(),
                                                                  std::move(state)));
}

Result<QueryResult> GuardedConnection::query(std::string_view sql,
                                             const std::vector<Value>& params) {
  State& st = *state_;
  if (sql.size() > static_cast<size_t>(st.options.max_sql_length)) {
    return make_error(Errc::too_large, "SQL text has {} bytes, over the limit of {}", sql.size(),
                      st.options.max_sql_length);
  }
  // sqlite_stmt lists the connection's prepared statements: with a cache, the
  // queries other clients ran on it, literals included. An identifier cannot
  // be split or computed, so a table named in the text is found in the text.
  if (st.options.statement_cache > 0 && mentions_ci(sql, "sqlite_stmt")) {
    return make_error(Errc::refused,
                      "sqlite_stmt is not readable here: this connection's statements include "
                      "other clients' queries");
  }
  st.begin_query(sql);
  // `sql` is the caller's and dies with this call: a later prepare on this
  // connection without query() (e.g. /db/request's classification on a pooled
  // connection) must not find the authorizer pointing at it.
  struct ForgetSql {
    State& st;
    ~ForgetSql() { st.sql = {}; }
  } forget_sql{st};

  // Binds, steps and collects the rows of a statement that passed the checks.
  auto run = [&](sqlite3_stmt* stmt) -> Result<QueryResult> {
    SWL_TRY(bind_values(stmt, params));
    QueryResult out;
    int rc = sqlite3_step(stmt);
    // The shape is read once the statement ran: a kept statement that SQLite
    // prepares again inside its first step (the schema changed) may return
    // other columns than before.
    const int ncol = sqlite3_column_count(stmt);
    // The statement form "PRAGMA database_list" (seq, name, file) has no
    // SQLITE_READ to ignore: its "file" column is blanked below.
    const int hidden_column =
        st.database_list && leading_keyword(sql) == "PRAGMA" && ncol == 3 ? 2 : -1;
    for (int i = 0; i < ncol; ++i) {
      const char* name = sqlite3_column_name(stmt, i);
      const char* decl = sqlite3_column_decltype(stmt, i);
      out.columns.emplace_back(name ? name : "");
      out.decltypes.emplace_back(decl ? decl : "");
    }
    size_t bytes = 0;
    for (; rc == SQLITE_ROW; rc = sqlite3_step(stmt)) {
      if (out.rows.size() == st.options.max_rows) {
        return make_error(Errc::too_large, "the result has more than {} rows (the row cap)",
                          st.options.max_rows);
      }
      std::vector<Value> row;
      row.reserve(static_cast<size_t>(ncol));
      for (int i = 0; i < ncol; ++i) {
        row.push_back(i == hidden_column ? Value{} : column_value(stmt, i));
        bytes += value_cost(row.back());
      }
      if (bytes > st.options.max_result_bytes) {
        return make_error(Errc::too_large, "the result is over the cap of {} bytes at row {}",
                          st.options.max_result_bytes, out.rows.size());
      }
      out.rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) return st.error_for(db_, rc, "running the query");
    return out;
  };
  // A kept statement ends reset and unbound: it holds no read transaction
  // and no parameter between queries.
  auto settle = [](sqlite3_stmt* stmt) {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  };

  if (State::Cached* hit = st.cached(sql)) {
    st.database_list = hit->database_list;
    auto r = run(hit->stmt.get());
    settle(hit->stmt.get());
    if (!r.ok()) st.drop(hit);  // whatever went wrong, the next query prepares afresh
    return r;
  }

  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              st.options.statement_cache > 0 ? SQLITE_PREPARE_PERSISTENT : 0, &raw,
                              &tail);
  SqliteStmt stmt(raw);
  if (rc != SQLITE_OK) return st.error_for(db_, rc, "preparing the query");
  if (!stmt) return make_error(Errc::invalid_argument, "the query holds no SQL statement");
  size_t used = static_cast<size_t>(tail - sql.data());
  if (!is_blank_sql(sql.substr(used))) {
    return make_error(Errc::refused,
                      "only one statement per query: more SQL follows at offset {}", used);
  }
  // "PRAGMA journal_mode" without a value only reports the mode, but its
  // program (OP_JournalMode) is not marked read-only; the connection is
  // SQLITE_OPEN_READONLY, so it could not change the mode anyway.
  if (!sqlite3_stmt_readonly(stmt.get()) && !st.journal_mode_query) {
    return make_error(Errc::refused, "{} would write: not allowed in a read-only query",
                      leading_keyword(sql));
  }
  const bool database_list = st.database_list;
  auto r = run(stmt.get());
  if (r.ok() && st.options.statement_cache > 0 &&
      (sqlite3_bind_parameter_count(stmt.get()) > 0 || st.seen_before(sql))) {
    settle(stmt.get());
    st.keep(sql, std::move(stmt), database_list);
  }
  return r;
}

}  // namespace swarmlite
