// Deterministic entry execution: see determinism.h and docs/determinism.md.
#include "sqlbridge/engine/determinism.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "sqlbridge/engine/genesis.h"
#include "sqlbridge/engine/write_authorizer.h"

namespace swarmlite {

namespace {

// The process-wide PRNG of SQLite is shared by every connection: entries of all
// Primaries/Replicas in this process run one at a time.
//
// Lock order. A Primary's commit hook takes its mu_ while this mutex is held
// (run_write_locked), and its open() and recover_locked() run entries while
// they hold mu_. ThreadSanitizer reports that as an inversion; it cannot
// deadlock, because both orders happen only under that Primary's write_mu_,
// and no other Primary's or Replica's path waits for this one's mu_.
std::mutex& entry_mutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

// ---------------------------------------------------------------------------
// DeterministicDb

DeterministicDb::~DeterministicDb() {
  for (SqliteStmt& st : pad_) st.reset();
  begin_.reset();
  commit_.reset();
  cache_.clear();
  schema_version_.reset();
  update_applied_.reset();
  reset_changes_.reset();
  db_.reset();  // before capture_: the VFS refers to it while the connection is open
}

Result<std::unique_ptr<DeterministicDb>> DeterministicDb::open(const std::filesystem::path& path) {
  pin_process_timezone();
  page_vfs_name();
  std::unique_ptr<DeterministicDb> d(new DeterministicDb());
  d->path_ = path;
  d->capture_ = std::make_unique<WriteCapture>();
  // The write connection is its database's only writer (Primary / Replica),
  // so it keeps the WAL write lock (docs/vfs.md "The sole writer's locks").
  d->capture_->set_sole_writer(true);
  d->auth_ = std::make_unique<WriteAuthState>();
  SWL_TRY(create_database_file(path));
  SWL_ASSIGN(d->db_, open_sqlite(page_vfs_uri(path, d->capture_.get(), nullptr, false),
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX));
  SWL_TRY(d->configure());
  SWL_ASSIGN(d->tree_, StateTree::from_file(path));
  return d;
}

Status DeterministicDb::configure() {
  sqlite3* db = db_.get();
  SWL_TRY(apply_fixed_settings(db, path_));
  SWL_TRY(install_function_overrides(db, &stream_, auth_.get()));
  sqlite3_set_authorizer(db, authorize_write, auth_.get());
  return ok_status();
}

namespace {

// SQLite reserves names beginning with sqlite_ (sqlite3CheckObjectName: "object
// name reserved for internal use") unless writable_schema is on, and DEFENSIVE
// (one of the fixed settings) makes writable_schema a no-op. The genesis
// entry's CREATE TABLE sqlite_swarmlite, and nothing else, runs with DEFENSIVE
// off and WRITABLE_SCHEMA on; both are switched back as soon as it ran
// (close(), or the destructor on any other path). Neither flag changes what
// the CREATE writes, only whether the name is allowed (docs/determinism.md
// "Genesis").
class ReservedNameWindow {
 public:
  explicit ReservedNameWindow(sqlite3* db) : db_(db) {
    sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 0, nullptr);
    sqlite3_db_config(db_, SQLITE_DBCONFIG_WRITABLE_SCHEMA, 1, nullptr);
  }
  ReservedNameWindow(const ReservedNameWindow&) = delete;
  ReservedNameWindow& operator=(const ReservedNameWindow&) = delete;
  ~ReservedNameWindow() { (void)close(); }

  // Restores the fixed settings and checks that they hold again.
  Status close() {
    int writable = -1, defensive = -1;
    sqlite3_db_config(db_, SQLITE_DBCONFIG_WRITABLE_SCHEMA, 0, &writable);
    sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 1, &defensive);
    if (writable != 0 || defensive != 1) {
      return make_error(Errc::internal,
                        "genesis: could not switch WRITABLE_SCHEMA off and DEFENSIVE on again "
                        "after creating {} (got {} and {})",
                        kMetaTable, writable, defensive);
    }
    return ok_status();
  }

 private:
  sqlite3* db_;
};

}  // namespace

namespace {

const std::string& applied_sql() {
  static const std::string kApplied =
      fmt::format("SELECT v FROM {} WHERE k = 'applied_seq'", kMetaTable);
  return kApplied;
}

// The full check: which tables the file has decides between "empty" (0),
// "format 1" and "not a swarmlite database", then applied_seq is read.
Result<uint64_t> checked_applied_size(sqlite3* db) {
  static const std::string kHas = fmt::format(
      "SELECT count(*), sum(name = '{}'), sum(name = '{}' AND type = 'table' AND sql = '{}') "
      "FROM sqlite_schema",
      kMetaTable, kLegacyMetaTable, kLegacyCreateMetaSql);
  SWL_ASSIGN(SqliteStmt has, prepare(db, kHas));
  if (sqlite3_step(has.get()) != SQLITE_ROW) return sqlite_error(db, "reading the schema");
  int64_t objects = sqlite3_column_int64(has.get(), 0);
  int64_t meta = sqlite3_column_int64(has.get(), 1);
  int64_t legacy = sqlite3_column_int64(has.get(), 2);
  has.reset();
  const char* file = sqlite3_db_filename(db, "main");
  const std::string where = file != nullptr && *file != '\0' ? file : "the database";
  if (meta == 0) {
    if (legacy != 0) {
      // Format 1 (docs/operations.md "Upgrading from format 1"): replaying its
      // log now gives other state roots, so it is never mixed with format 2.
      return make_error(Errc::bad_version,
                        "{} was written by an older swarmlite (format 1: its metadata is in "
                        "table {}); this build reads format {} (metadata in {}) and cannot "
                        "continue its log. Carry the data over into a new primary with `swarmlite "
                        "import --from {} --db NEW.db --key KEY`, then `DROP TABLE {}` there, and "
                        "start peers afresh from it; see docs/operations.md \"Upgrading from "
                        "format 1\"",
                        where, kLegacyMetaTable, kFormatVersion, kMetaTable, where,
                        kLegacyMetaTable);
    }
    if (objects != 0) {
      return make_error(Errc::corrupt,
                        "{} has {} schema objects but no {} table: not a swarmlite database (use "
                        "`swarmlite import` for an existing one)",
                        where, objects, kMetaTable);
    }
    return uint64_t{0};
  }
  SWL_ASSIGN(SqliteStmt q, prepare(db, applied_sql()));
  if (sqlite3_step(q.get()) != SQLITE_ROW || sqlite3_column_type(q.get(), 0) != SQLITE_INTEGER ||
      sqlite3_column_int64(q.get(), 0) < 0) {
    return make_error(Errc::corrupt, "{}: {} has no integer applied_seq", where, kMetaTable);
  }
  return static_cast<uint64_t>(sqlite3_column_int64(q.get(), 0)) + 1;
}

}  // namespace

// The common case first: the file has sqlite_swarmlite (every primary and
// replica after its first entry), so one prepared SELECT answers. Whenever
// that statement does not prepare or does not give a valid applied_seq, the
// full check runs and gives its answer or its error: the results are those of
// checked_applied_size() alone, which scans sqlite_schema and costs more than
// a point query (docs/performance.md "Plain reads").
Result<uint64_t> read_applied_size(sqlite3* db, SqliteStmt& cached) {
  if (!cached) {
    sqlite3_stmt* raw = nullptr;
    const std::string& sql = applied_sql();
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &raw,
                           nullptr) != SQLITE_OK ||
        raw == nullptr) {
      sqlite3_finalize(raw);
      return checked_applied_size(db);
    }
    cached.reset(raw);
  }
  sqlite3_stmt* q = cached.get();
  if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) == SQLITE_INTEGER &&
      sqlite3_column_int64(q, 0) >= 0) {
    const auto applied = static_cast<uint64_t>(sqlite3_column_int64(q, 0));
    sqlite3_reset(q);
    return applied + 1;
  }
  cached.reset();  // finalised: the next call prepares afresh
  return checked_applied_size(db);
}

Result<uint64_t> read_applied_size(sqlite3* db) {
  SqliteStmt once;
  return read_applied_size(db, once);
}

Result<uint64_t> DeterministicDb::read_applied_size() {
  auth_->mode = AuthMode::system;
  return swarmlite::read_applied_size(db_.get());
}

Status DeterministicDb::step_fixed(SqliteStmt& stmt, const char* sql) {
  return step_kept(db_.get(), stmt, sql);
}

void DeterministicDb::set_statement_cache(size_t capacity) {
  cache_capacity_ = capacity;
  clear_statement_cache();
}

Result<int64_t> DeterministicDb::read_format_version() {
  static const std::string kSql =
      fmt::format("SELECT v FROM {} WHERE k = 'format_version'", kMetaTable);
  SWL_ASSIGN(SqliteStmt q, prepare(db_.get(), kSql));
  const int rc = sqlite3_step(q.get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sqlite_error(db_.get(), kSql);
  if (rc == SQLITE_DONE || sqlite3_column_type(q.get(), 0) != SQLITE_INTEGER) {
    return make_error(Errc::corrupt, "{} has no integer format_version", kMetaTable);
  }
  const int64_t v = sqlite3_column_int64(q.get(), 0);
  if (v < kOldestFormatVersion || v > kFormatVersion) {
    return make_error(Errc::bad_version,
                      "the database has swarmlite format version {}, this build reads versions {} "
                      "to {}",
                      v, kOldestFormatVersion, kFormatVersion);
  }
  return v;
}

void DeterministicDb::clear_statement_cache() {
  cache_.clear();
  cache_schema_version_ = -1;
  cache_version_checked_ = false;
}

// The schema version in the file header: it changes with every schema change
// this connection commits or makes in the open transaction. -1 if unreadable.
int64_t DeterministicDb::schema_version() {
  const AuthMode mode = auth_->mode;
  auth_->mode = AuthMode::system;
  if (!schema_version_) {
    auto r = prepare(db_.get(), "PRAGMA schema_version");
    if (r.ok()) schema_version_ = std::move(r).value();
  }
  int64_t version = -1;
  if (schema_version_) {
    if (sqlite3_step(schema_version_.get()) == SQLITE_ROW) version = sqlite3_column_int64(schema_version_.get(), 0);
    sqlite3_reset(schema_version_.get());
  }
  auth_->mode = mode;
  return version;
}

DeterministicDb::CachedStatement* DeterministicDb::cached_statement(const std::string& sql) {
  if (cache_.empty()) return nullptr;
  auto it = cache_.find(sql);
  if (it == cache_.end()) return nullptr;
  if (!cache_version_checked_) {
    const int64_t version = schema_version();
    if (version < 0 || version != cache_schema_version_) {
      clear_statement_cache();
      return nullptr;
    }
    // Until a statement runs through the fresh path (it may change the
    // schema), the entry ends or anything rolls back, the version stays: the
    // cached statements themselves (INSERT, UPDATE, DELETE, REPLACE and the
    // triggers they fire) cannot change it.
    cache_version_checked_ = true;
  }
  return &it->second;
}

Status DeterministicDb::run_statement_text(size_t index, const Statement& st, bool collect_rows,
                                           std::vector<StatementResult>& out) {
  sqlite3* db = db_.get();
  if (is_blank_sql(st.sql)) {
    return make_error(Errc::invalid_argument, "statement {}: empty SQL", index);
  }
  auto fail = [&](std::string_view what) -> Error {
    int code = sqlite3_extended_errcode(db);
    if (!auth_->refusal.empty()) {
      return make_error(Errc::refused, "statement {}: {}", index, auth_->refusal);
    }
    Errc errc = (code & 0xff) == SQLITE_CORRUPT ? Errc::corrupt
                : is_local_sqlite_error(code)   ? Errc::io_error
                                                : Errc::sqlite_error;
    return make_error(errc, "statement {}: {}: {} (code {})", index, what, sqlite3_errmsg(db), code);
  };
  // Binds, steps and records one prepared statement's result.
  auto execute = [&](sqlite3_stmt* stmt, const std::vector<Value>& params,
                     const std::string& keyword) -> Status {
    // Borrowed, not copied: `params` (the caller's statement) outlives every
    // use of these bindings; the statement is finalized, or reset with its
    // bindings cleared, before run_statement_text returns (both paths below).
    const EmptyBlob empty_blob = format_version_ >= 3 ? EmptyBlob::empty : EmptyBlob::null;
    if (Status s = bind_values(stmt, params, BindCopy::borrow, empty_blob); !s.ok()) {
      return make_error(Errc::invalid_argument, "statement {}: {}", index, s.error().message);
    }
    StatementResult result;
    result.statement_index = index;
    // The shape is read once the statement ran: a cached statement that SQLite
    // re-prepares inside its first step (see the cache below) may return other
    // columns than before it.
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      if (!collect_rows) continue;
      const int ncol = sqlite3_column_count(stmt);
      std::vector<Value> row;
      row.reserve(static_cast<size_t>(ncol));
      for (int c = 0; c < ncol; ++c) row.push_back(column_value(stmt, c));
      result.rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) return fail("step");
    const int ncol = sqlite3_column_count(stmt);
    if (collect_rows && ncol > 0) {
      for (int c = 0; c < ncol; ++c)
        result.columns.emplace_back(or_empty(sqlite3_column_name(stmt, c)));
    }
    if (!auth_->to_check.empty()) SWL_TRY(check_created_objects(index));
    const bool dml = !sqlite3_stmt_readonly(stmt) &&
                     (keyword == "INSERT" || keyword == "UPDATE" || keyword == "DELETE" ||
                      keyword == "REPLACE" || keyword == "WITH");
    result.rows_changed = dml ? sqlite3_changes64(db) : 0;
    result.last_insert_rowid = sqlite3_last_insert_rowid(db);
    out.push_back(std::move(result));
    return ok_status();
  };
  if (auth_->mode == AuthMode::user) {
    if (CachedStatement* entry = cached_statement(st.sql)) {
      sqlite3_stmt* cached = entry->stmt.get();
      // The authorizer's per-statement state starts empty, as for a fresh
      // prepare: SQLite re-prepares a cached statement inside sqlite3_step,
      // through the authorizer, when the statement was expired (ANALYZE, a
      // savepoint rolled back over a schema change, a STAT4 plan depending on
      // a binding), and what that prepare records is checked below.
      auth_->refusal.clear();
      auth_->first_pragma.clear();
      auth_->first_pragma_value.clear();
      auth_->created.clear();
      auth_->rank_reads.clear();
      auth_->to_check.clear();
      const std::string keyword = entry->keyword;  // a copy: `entry` may leave the cache below
      const int reprepares = sqlite3_stmt_status(cached, SQLITE_STMTSTATUS_REPREPARE, 0);
      Status s = execute(cached, st.params, keyword);
      sqlite3_reset(cached);
      sqlite3_clear_bindings(cached);
      if (sqlite3_stmt_status(cached, SQLITE_STMTSTATUS_REPREPARE, 0) != reprepares) {
        // The same checks as after a fresh prepare (below): a refusal the
        // authorizer gave made the step fail (handled by execute); a read of
        // an fts5 rank column refuses the statement, after it ran (the entry
        // rolls back all the same); what a fresh prepare would not keep leaves
        // the cache.
        std::optional<std::string> why = rank_read_refusal();
        const bool keep = why == std::nullopt && auth_->first_pragma.empty() &&
                          auth_->created.empty() && auth_->refusal.empty();
        auth_->created.clear();
        if (!keep) cache_.erase(st.sql);
        if (s.ok() && why) return make_error(Errc::refused, "statement {}: {}", index, *why);
      }
      return s;
    }
  }
  cache_version_checked_ = false;  // this text may change the schema
  std::string_view rest = st.sql;
  bool first = true;
  while (!is_blank_sql(rest)) {
    auth_->refusal.clear();
    auth_->first_pragma.clear();
    auth_->first_pragma_value.clear();
    auth_->created.clear();
    auth_->rank_reads.clear();
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v2(db, rest.data(), static_cast<int>(rest.size()), &raw, &tail);
    SqliteStmt stmt(raw);
    if (rc != SQLITE_OK) return fail("prepare");
    if (stmt == nullptr) break;
    // The statement's own CREATE/ALTER actions (module code run by step, e.g.
    // FTS5 creating its shadow tables, comes later and is not the user's).
    auth_->to_check = std::move(auth_->created);
    auth_->created.clear();
    if (auto why = rank_read_refusal()) {
      return make_error(Errc::refused, "statement {}: {}", index, *why);
    }
    std::string_view next = rest.substr(static_cast<size_t>(tail - rest.data()));
    if (first && !st.params.empty() && !is_blank_sql(next)) {
      return make_error(Errc::refused,
                        "statement {}: parameters can be bound only to a single statement, but this "
                        "SQL text holds more than one",
                        index);
    }
    std::string keyword = leading_keyword(sqlite3_sql(stmt.get()));
    if (keyword == "VACUUM") {
      return make_error(Errc::refused,
                        "statement {}: VACUUM is refused: it rewrites the whole file outside the "
                        "transaction (VACUUM INTO writes another file)",
                        index);
    }
    if (keyword == "PRAGMA" && !pragma_allowed_as_statement(auth_->first_pragma.c_str()) &&
        !pragma_restates_fixed_setting(auth_->first_pragma.c_str(),
                                       auth_->first_pragma_value.c_str())) {
      // Only a pragma the authorizer lets through for module code gets here.
      return make_error(Errc::refused,
                        "statement {}: PRAGMA {} is refused in a write: the connection settings "
                        "are fixed for determinism (it is allowed only inside the fts5 module)",
                        index, auth_->first_pragma);
    }
    if (sqlite3_stmt_isexplain(stmt.get())) {
      return make_error(Errc::refused, "statement {}: EXPLAIN is refused in a write", index);
    }
    static const std::vector<Value> kNoParams;
    const bool created_objects = !auth_->to_check.empty();
    SWL_TRY(execute(stmt.get(), first ? st.params : kNoParams, keyword));
    // A single statement the authorizer passed without anything to check
    // again is kept for the next entry that runs the same text.
    if (first && cache_capacity_ > 0 && auth_->mode == AuthMode::user && is_blank_sql(next) &&
        auth_->refusal.empty() && auth_->first_pragma.empty() && !created_objects &&
        (keyword == "INSERT" || keyword == "UPDATE" || keyword == "DELETE" || keyword == "REPLACE")) {
      const int64_t version = schema_version();
      if (version != cache_schema_version_ || cache_.size() >= cache_capacity_) {
        clear_statement_cache();
        cache_schema_version_ = version;
      }
      if (cache_schema_version_ >= 0) {
        sqlite3_reset(stmt.get());
        sqlite3_clear_bindings(stmt.get());
        cache_.emplace(st.sql, CachedStatement{std::move(stmt), keyword});
      }
    }
    rest = next;
    first = false;
  }
  return ok_status();
}

// Reading an fts5 table's hidden `rank` column (in a select list, a WHERE, a
// view or a trigger) makes FTS5 call its rank function from C, not through
// SQL, so neither the authorizer's function check nor the overrides see it;
// the default, bm25(), computes log() in the host's libm. The authorizer
// records reads of columns named "rank"; this refuses them when the table is
// a virtual table (only fts5 can exist). Consumes auth_->rank_reads.
std::optional<std::string> DeterministicDb::rank_read_refusal() {
  std::vector<std::string> tables = std::move(auth_->rank_reads);
  auth_->rank_reads.clear();
  if (tables.empty()) return std::nullopt;
  const AuthMode mode = auth_->mode;
  auth_->mode = AuthMode::system;
  std::optional<std::string> out;
  auto q = prepare(db_.get(),
                   "SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = ?1 "
                   "AND sql LIKE 'CREATE VIRTUAL TABLE%'");
  for (const std::string& t : tables) {
    if (!q.ok()) break;
    sqlite3_reset(q->get());
    sqlite3_bind_text(q->get(), 1, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(q->get()) == SQLITE_ROW) {
      out = fmt::format(
          "reading the rank column of fts5 table {} is not allowed in replicated writes: FTS5 "
          "computes it with its rank function (bm25() by default), which uses the host's libm "
          "(docs/determinism.md)",
          t);
      break;
    }
  }
  auth_->mode = mode;
  return out;
}

// Refuses a CREATE/ALTER whose stored expressions call a refused function,
// naming the object, instead of failing every later write that evaluates them
// (the connection-level overrides still catch whatever this misses). SQLite
// resolves CHECK, generated-column and index expressions while preparing the
// CREATE (the authorizer saw them), but DEFAULT expressions only when a write
// uses them (through no authorizer) and trigger and view bodies only when a
// statement that fires or reads them is prepared. So, right after the
// statement ran, inside the entry's transaction:
//  - each column DEFAULT of a created or altered table is prepared as
//    `SELECT (<default>)`: the authorizer sees its functions;
//  - for a trigger, `INSERT … DEFAULT VALUES`, `UPDATE … SET c = c` (every
//    column) and `DELETE FROM …` on its table are prepared, which codes the
//    trigger programs (WHEN clauses, bodies, nested triggers) through the
//    authorizer with the trigger's name;
//  - for a view, `SELECT * FROM <view>` is prepared.
// Nothing is stepped. A probe that fails for another reason (a missing table a
// trigger refers to, a DEFAULT that is a bare word) proves nothing and is
// ignored. Any refusal the authorizer gives (refused function, writing
// sqlite_swarmlite, a refused pragma table, ...) refuses the statement.
Status DeterministicDb::check_created_objects(size_t index) {
  using Created = WriteAuthState::Created;
  sqlite3* db = db_.get();
  std::vector<Created> objects = std::move(auth_->to_check);
  auth_->to_check.clear();
  const AuthMode mode = auth_->mode;
  struct Restore {
    WriteAuthState* st;
    AuthMode mode;
    ~Restore() { st->mode = mode; }
  } restore{auth_.get(), mode};

  struct Column {
    std::string name;
    std::optional<std::string> dflt;
    bool generated = false;
  };
  auto columns = [&](const std::string& table) -> Result<std::vector<Column>> {
    auth_->mode = AuthMode::system;
    SWL_ASSIGN(SqliteStmt q, prepare(db, "SELECT name, dflt_value, hidden FROM pragma_table_xinfo(?1, 'main')"));
    sqlite3_bind_text(q.get(), 1, table.data(), static_cast<int>(table.size()), SQLITE_TRANSIENT);
    std::vector<Column> out;
    int rc;
    while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
      Column c;
      c.name = or_empty(reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0)));
      if (sqlite3_column_type(q.get(), 1) != SQLITE_NULL) {
        c.dflt = or_empty(reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 1)));
      }
      c.generated = sqlite3_column_int(q.get(), 2) >= 2;  // 2, 3: generated; 1: hidden vtab column
      out.push_back(std::move(c));
    }
    if (rc != SQLITE_DONE) return sqlite_error(db, "reading the columns of " + table);
    return out;
  };
  // Prepares `probe` through the authorizer; the refusal, if it gave one.
  auto probe = [&](const std::string& text) -> std::optional<std::string> {
    auth_->mode = AuthMode::user;
    auth_->refusal.clear();
    auth_->rank_reads.clear();
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v2(db, text.data(), static_cast<int>(text.size()), &raw, &tail);
    SqliteStmt stmt(raw);
    std::optional<std::string> refusal;
    if (!auth_->refusal.empty()) refusal = auth_->refusal;
    (void)rc;  // another failure proves nothing: the overrides still refuse at run time
    auth_->refusal.clear();
    if (!refusal) refusal = rank_read_refusal();
    return refusal;
  };
  auto refused = [&](const std::string& what, const std::string& why) -> Error {
    return make_error(Errc::refused, "statement {}: {}: {}", index, what, why);
  };

  for (const Created& obj : objects) {
    switch (obj.kind) {
      case Created::table_kind: {
        SWL_ASSIGN(std::vector<Column> cols, columns(obj.name));
        for (const Column& c : cols) {
          if (!c.dflt || c.generated) continue;
          if (auto why = probe("SELECT (" + *c.dflt + ")")) {
            return refused(fmt::format("DEFAULT of column {}.{}", obj.name, c.name), *why);
          }
        }
        break;
      }
      case Created::trigger_kind: {
        SWL_ASSIGN(std::vector<Column> cols, columns(obj.table));
        const std::string t = "main." + quote_ident(obj.table);
        std::string set;
        for (const Column& c : cols) {
          if (c.generated) continue;
          if (!set.empty()) set += ", ";
          set += quote_ident(c.name) + " = " + quote_ident(c.name);
        }
        std::vector<std::string> probes = {"INSERT INTO " + t + " DEFAULT VALUES",
                                           "DELETE FROM " + t};
        if (!set.empty()) probes.push_back("UPDATE " + t + " SET " + set);
        for (const std::string& p : probes) {
          if (auto why = probe(p)) return refused(fmt::format("trigger {}", obj.name), *why);
        }
        break;
      }
      case Created::view_kind:
        if (auto why = probe("SELECT * FROM main." + quote_ident(obj.name))) {
          return refused(fmt::format("view {}", obj.name), *why);
        }
        break;
    }
  }
  return ok_status();
}

namespace {

// The commit hook of one SQLite transaction (an entry, or a replay batch): the
// pages it writes go into the state tree, then `on_commit` judges the root; a
// refusal undoes the tree. `applied` says the hook ran to the end.
WriteCapture::CommitHook tree_commit_hook(StateTree& tree,
                                          const DeterministicDb::OnCommit& on_commit,
                                          bool& applied) {
  return [&tree, &on_commit, &applied](const PageMap& pages, uint32_t page_count) -> Status {
    SWL_TRY(tree.apply(pages, page_count));
    Status s = on_commit(tree.root(), page_count);
    if (!s.ok()) {
      tree.undo_last();
      return s;
    }
    applied = true;
    return ok_status();
  };
}

}  // namespace

Result<std::vector<StatementResult>> DeterministicDb::run_entry(const EntryInputs& inputs,
                                                                std::span<const Statement> statements,
                                                                Mode mode, bool collect_rows,
                                                                const OnCommit& on_commit,
                                                                EntryFailure* failure) {
  sqlite3* db = db_.get();
  std::lock_guard entry_lock(entry_mutex());
  clear_disk_full_seen();  // SQLITE_FULL below is a local fault only if a write finds the disk full
  PinnedTime pinned(inputs.time_ms);
  stream_ = std::make_unique<SeededStream>(inputs.seed);
  sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, SeededStream::internal_prng_seed(inputs.seed),
                       nullptr);
  bool hook_applied = false;
  // The schema version is checked again once per SQLite transaction at least:
  // per entry, or per replay batch, whose entries share one write transaction
  // that nothing else can change the schema under. Within it only a statement
  // of the fresh path may change it (and resets the check), and a rollback
  // clears the cache. Reading it per entry was 5 % of a catch-up's apply
  // thread (docs/performance.md "The schema version once per batch").
  if (!batch_ || batch_entries_ == 0) cache_version_checked_ = false;
  if (!batch_) capture_->reset();  // a batch keeps the pages its earlier entries spilled
  capture_->set_commit_hook(tree_commit_hook(tree_, on_commit, hook_applied));
  // Whatever happens below, leave the connection between entries: no stream,
  // no hook, OS randomness for SQLite's PRNG, and the planner statistics SQLite
  // holds in memory equal to the file's (reload_stats_if_due).
  struct Cleanup {
    DeterministicDb* self;
    ~Cleanup() {
      self->stream_.reset();
      self->capture_->set_commit_hook(nullptr);
      self->auth_->mode = AuthMode::system;
      self->auth_->in_entry = false;
      sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, 0, nullptr);
      if (self->auth_->stats_touched) {
        if (self->format_version_ >= 5) self->stats_reload_due_ = true;
        self->stats_epoch_.fetch_add(1, std::memory_order_release);
      }
      self->auth_->stats_touched = false;
      self->reload_stats_if_due();
    }
  } cleanup{this};
  auto rollback = [&] {
    if (!sqlite3_get_autocommit(db)) {
      auth_->mode = AuthMode::system;
      (void)exec_sql(db, "ROLLBACK");
    }
    capture_->reset();
    batch_ = false;  // in a batch, the whole batch goes
    clear_statement_cache();  // statements prepared against a schema that may be gone
  };

  auth_->mode = AuthMode::system;
  if (!batch_) SWL_TRY(step_fixed(begin_, "BEGIN IMMEDIATE"));
  if (mode == Mode::user && format_version_ == 0) {
    auto format = read_format_version();
    if (!format.ok()) {
      rollback();
      return format.take_error();
    }
    format_version_ = *format;
  }
  if (mode == Mode::user && format_version_ >= 5 && needs_fresh_schema(statements)) {
    // ANALYZE writes sqlite_stat1's rows, and REINDEX rebuilds the indexes, in
    // the order of the connection's schema hash table, which depends on what
    // the connection did before (tables created and dropped, a rolled-back
    // schema change, a restart): read it afresh, from the file as the entry
    // starts, on every node. Nothing of the entry ran yet.
    if (batch_ && batch_entries_ > 0) {
      rollback();
      return make_error(Errc::internal,
                        "entry {} runs ANALYZE or REINDEX and must start its replay batch",
                        inputs.seq);
    }
    if (Status s = reset_schema(); !s.ok()) {
      rollback();
      return s.take_error();
    }
  }
  bool lean = batch_ && lean_;  // begin_batch: no padding, applied_seq at the commit
  auth_->vtab_created = false;
  if (mode == Mode::user && !lean) {
    // SQLite pads a cell shorter than 4 bytes (a one-column index or WITHOUT
    // ROWID record holding NULL, 0, 1, '' or x'') with whatever the B-tree's
    // cell buffer held from the connection's earlier work — a failed
    // transaction on the primary or a restart changed those bytes and the
    // roots diverged (found by tests/sqlfuzz). pad_cell_buffer makes the
    // buffer's contents a function of the entry's starting state alone
    // (docs/determinism.md "Cell padding").
    if (Status s = pad_cell_buffer(); !s.ok()) {
      rollback();
      return s.take_error();
    }
  }
  // changes() and last_insert_rowid() start every entry at 0, whatever ran before.
  sqlite3_set_last_insert_rowid(db, 0);
  if (mode == Mode::user) {
    if (!reset_changes_) {
      auto r = prepare(db, fmt::format("UPDATE {} SET v = v WHERE 0", kMetaTable));
      if (!r.ok()) {
        rollback();
        return r.take_error();
      }
      reset_changes_ = std::move(r).value();
    }
    int rc = sqlite3_step(reset_changes_.get());
    sqlite3_reset(reset_changes_.get());
    if (rc != SQLITE_DONE) {
      Error e = sqlite_error(db, "resetting changes()");
      rollback();
      return e;
    }
  }

  // total_changes() counts from here (the pinned value, docs/determinism.md).
  auth_->total_changes_base = sqlite3_total_changes64(db);
  auth_->in_entry = true;
  auth_->mode = mode == Mode::genesis ? AuthMode::genesis : AuthMode::user;
  std::vector<StatementResult> results;
  results.reserve(statements.size());  // at least one result per Statement that succeeds
  for (size_t i = 0; i < statements.size(); ++i) {
    std::optional<ReservedNameWindow> window;
    if (mode == Mode::genesis && statements[i].sql == kCreateMetaSql) window.emplace(db);
    Status s = run_statement_text(i, statements[i], collect_rows, results);
    if (window) {
      Status closed = window->close();
      if (s.ok()) s = std::move(closed);
      window.reset();
    }
    if (!s.ok()) {
      rollback();
      if (failure) {
        failure->statement = i;
        std::erase_if(results, [i](const StatementResult& r) { return r.statement_index >= i; });
        failure->completed = std::move(results);
      }
      return s.take_error();
    }
  }

  auth_->mode = AuthMode::system;
  bool lean_end = false;  // this entry ends the batch's lean part (its own pad write skipped)
  if (lean && auth_->vtab_created) {
    // The batch's next entries may write the new virtual table: plain from
    // here on (begin_batch), this entry's applied_seq written as the lean
    // part's last.
    lean_ = false;
    lean_ran_ = false;
    lean = false;
    lean_end = true;
  }
  if (lean) {
    lean_last_seq_ = inputs.seq;
    lean_ran_ = true;
  } else if (Status s = lean_end ? update_lean_applied_seq(inputs.seq)
                                 : update_applied_seq(inputs.seq);
             !s.ok()) {
    rollback();
    return s.take_error();
  }

  if (batch_) {
    ++batch_entries_;
    // The entry's own COMMIT would check deferred foreign keys here; a later
    // entry of the batch must not be able to repair what this one left.
    int deferred = 0, highwater = 0;
    sqlite3_db_status(db, SQLITE_DBSTATUS_DEFERRED_FKS, &deferred, &highwater, 0);
    if (deferred != 0) {
      rollback();
      return make_error(Errc::sqlite_error,
                        "entry {} leaves deferred foreign key constraints unresolved at its end "
                        "(its commit fails)",
                        inputs.seq);
    }
    return results;
  }

  if (Status s = step_fixed(commit_, "COMMIT"); !s.ok()) {
    std::optional<Error> hook_error = capture_->take_hook_error();
    if (hook_applied) tree_.undo_last();  // the hook took the pages but SQLite did not commit
    rollback();
    if (hook_error) return std::move(*hook_error);
    const bool local = is_local_sqlite_error(sqlite3_extended_errcode(db));
    return make_error(local ? Errc::io_error : Errc::sqlite_error, "commit of entry {}: {}",
                      inputs.seq, s.error().message);
  }
  if (!hook_applied) {
    return make_error(Errc::internal, "entry {} committed without passing the commit hook",
                      inputs.seq);
  }
  capture_->reset();
  return results;
}

Status DeterministicDb::pad_cell_buffer() {
  sqlite3* db = db_.get();
  if (format_version_ < 4) {
    // Formats 2 and 3: one row of fixed content inserted into the metadata
    // table and rolled back. Its pages come back as they were but are written
    // again (the table's and its index's), so every entry committed two pages
    // besides its own.
    static const std::array<std::string, 4> kPad = {
        "SAVEPOINT swarmlite_pad",
        fmt::format("INSERT INTO {}(k, v) VALUES ('swarmlite_pad', x'5357504144')", kMetaTable),
        "ROLLBACK TO swarmlite_pad", "RELEASE swarmlite_pad"};
    for (size_t i = 0; i < kPad.size(); ++i) SWL_TRY(step_kept(db, pad_[i], kPad[i].c_str()));
    return ok_status();
  }
  // Format 4: applied_seq is set to a 5-byte blob, a size no integer has
  // (their bodies are 0, 1, 2, 3, 4, 6 or 8 bytes), so SQLite does not
  // overwrite the value in place but builds the row's new cell in the cell
  // buffer, a cell of fixed content. Only the metadata table's page changes,
  // which the entry's applied_seq update writes anyway; update_applied_seq at
  // the entry's end sets the integer again.
  if (batch_) {
    // The savepoint makes every virtual table the batch wrote flush what it
    // holds (FTS5's pending terms), as the previous entry's own COMMIT did on
    // the primary; without it the terms of several entries would be flushed
    // together, at the batch's commit, into other segments.
    SWL_TRY(step_kept(db, flush_[0], "SAVEPOINT swarmlite_flush"));
    SWL_TRY(step_kept(db, flush_[1], "RELEASE swarmlite_flush"));
  }
  return pad_write();
}

Status DeterministicDb::pad_write() {
  sqlite3* db = db_.get();
  static const std::string kPadWrite =
      fmt::format("UPDATE {} SET v = x'5357504144' WHERE k = 'applied_seq'", kMetaTable);
  SWL_TRY(step_kept(db, pad_write_, kPadWrite.c_str()));
  if (sqlite3_changes(db) != 1) {
    return make_error(Errc::corrupt, "{}: {} has no applied_seq row", path_.string(), kMetaTable);
  }
  return ok_status();
}

Status DeterministicDb::update_lean_applied_seq(uint64_t seq) {
  // Format 4's plain entries each write the pad value and then the integer:
  // SQLite moves the row's cell and leaves a freed cell's header in the page's
  // unallocated space, which a single in-place update would not. The same two
  // writes once leave the page as the last of them did (docs/determinism.md
  // "Lean batches").
  if (format_version_ >= 4) SWL_TRY(pad_write());
  return update_applied_seq(seq);
}

Status DeterministicDb::update_applied_seq(uint64_t seq) {
  sqlite3* db = db_.get();
  if (!update_applied_) {
    SWL_ASSIGN(update_applied_,
               prepare(db, fmt::format("UPDATE {} SET v = ?1 WHERE k = 'applied_seq'", kMetaTable)));
  }
  sqlite3_bind_int64(update_applied_.get(), 1, static_cast<int64_t>(seq));
  int rc = sqlite3_step(update_applied_.get());
  sqlite3_reset(update_applied_.get());
  if (rc != SQLITE_DONE || sqlite3_changes(db) != 1) {
    return sqlite_error(db, fmt::format("updating {}.applied_seq", kMetaTable));
  }
  return ok_status();
}

bool DeterministicDb::has_virtual_tables() {
  const int64_t version = schema_version();
  if (version >= 0 && version == vtab_schema_version_) return vtab_found_;
  const AuthMode mode = auth_->mode;
  auth_->mode = AuthMode::system;
  bool found = true;  // if the schema cannot be read, assume the worst (no lean batch)
  if (!virtual_tables_) {
    auto r = prepare(db_.get(),
                     "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL "
                     "TABLE%' LIMIT 1");
    if (r.ok()) virtual_tables_ = std::move(r).value();
  }
  if (virtual_tables_) {
    const int rc = sqlite3_step(virtual_tables_.get());
    sqlite3_reset(virtual_tables_.get());
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
      found = rc == SQLITE_ROW;
      vtab_schema_version_ = version;
      vtab_found_ = found;
    }
  }
  auth_->mode = mode;
  return found;
}

Status DeterministicDb::begin_batch(bool lean) {
  if (batch_) return make_error(Errc::internal, "{}: a replay batch is already open", path_.string());
  std::lock_guard entry_lock(entry_mutex());
  auth_->mode = AuthMode::system;
  capture_->reset();
  SWL_TRY(step_fixed(begin_, "BEGIN IMMEDIATE"));
  batch_ = true;
  batch_entries_ = 0;
  // Inside the transaction: the schema read is the one the batch's entries start from.
  lean_ = lean && !has_virtual_tables();
  lean_ran_ = false;
  return ok_status();
}

void DeterministicDb::rollback_batch() {
  clear_statement_cache();
  std::lock_guard entry_lock(entry_mutex());
  if (batch_) {
    auth_->mode = AuthMode::system;
    if (!sqlite3_get_autocommit(db_.get())) (void)exec_sql(db_.get(), "ROLLBACK");
    capture_->reset();
    batch_ = false;
  }
  reload_stats_if_due();  // the rolled-back entries' ANALYZE may have loaded statistics
}

// SQLite loads the planner statistics (sqlite_stat1) into the connection when
// it reads the schema, and again after an ANALYZE, but not when a statement
// writes sqlite_stat1, nor when a transaction that ran ANALYZE rolls back: the
// connection then plans with statistics the file does not hold, and a write
// whose effect depends on the plan (INSERT … SELECT … LIMIT without ORDER BY)
// gives another result than on a node that opened the file afresh (a
// restarted peer, a snapshot) or never ran the rolled-back entry (every peer).
// After an entry that ran ANALYZE or wrote a sqlite_stat table, committed or
// not, the schema is reset, so the next statement reads it and the statistics
// from the file as a fresh connection would. Only between transactions: a
// replay batch ends after such an entry (stats_reload_due) and reloads after
// its commit or rollback. docs/determinism.md "Planner statistics".
void DeterministicDb::reload_stats_if_due() {
  if (!stats_reload_due_ || batch_ || !sqlite3_get_autocommit(db_.get())) return;
  if (reset_schema().ok()) stats_reload_due_ = false;
}

// Drops the connection's parsed schema (and the statistics loaded with it);
// the next statement reads both from the file, as on a connection just
// opened. Prepared statements are re-prepared by SQLite on their next step.
Status DeterministicDb::reset_schema() {
  const AuthMode mode = auth_->mode;
  auth_->mode = AuthMode::system;
  Status s = exec_sql(db_.get(), "PRAGMA writable_schema = RESET");
  auth_->mode = mode;
  clear_statement_cache();
  return s;
}

bool needs_fresh_schema(std::span<const Statement> statements) {
  // One pass per statement, ASCII case folding only: a locale's tolower()
  // would make the answer (which every peer must share) depend on the
  // process's locale (in a Turkish one 'I' does not fold to 'i'), and its
  // call per byte was 7 % of the primary's write CPU for a 100-INSERT entry
  // (docs/performance.md "The ANALYZE/REINDEX scan").
  auto folds_to = [](char c, char lower) {
    return (static_cast<unsigned char>(c) | 0x20) == lower;
  };
  auto at = [&](std::string_view sql, size_t i, std::string_view word) {
    for (size_t k = 1; k < word.size(); ++k) {
      if (!folds_to(sql[i + k], word[k])) return false;
    }
    return true;
  };
  constexpr std::string_view kAnalyze = "analyze", kReindex = "reindex";
  static_assert(kAnalyze.size() == kReindex.size());
  return std::any_of(statements.begin(), statements.end(), [&](const Statement& st) {
    const std::string_view sql = st.sql;
    if (sql.size() < kAnalyze.size()) return false;
    for (size_t i = 0, last = sql.size() - kAnalyze.size(); i <= last; ++i) {
      const auto c = static_cast<char>(static_cast<unsigned char>(sql[i]) | 0x20);
      if ((c == 'a' && at(sql, i, kAnalyze)) || (c == 'r' && at(sql, i, kReindex))) return true;
    }
    return false;
  });
}

Status DeterministicDb::commit_batch(const OnCommit& on_commit) {
  if (!batch_) {
    return make_error(Errc::internal, "{}: no replay batch is open (an entry of it failed)",
                      path_.string());
  }
  sqlite3* db = db_.get();
  std::lock_guard entry_lock(entry_mutex());
  bool hook_applied = false;
  capture_->set_commit_hook(tree_commit_hook(tree_, on_commit, hook_applied));
  struct Cleanup {
    DeterministicDb* self;
    ~Cleanup() {
      self->capture_->set_commit_hook(nullptr);
      self->capture_->reset();
      self->batch_ = false;
      self->reload_stats_if_due();
    }
  } cleanup{this};
  auth_->mode = AuthMode::system;
  if (lean_ && lean_ran_) {
    // A lean batch writes applied_seq once, for its last entry (begin_batch).
    if (Status s = update_lean_applied_seq(lean_last_seq_); !s.ok()) {
      if (!sqlite3_get_autocommit(db)) (void)exec_sql(db, "ROLLBACK");
      return s;
    }
  }
  if (Status s = step_fixed(commit_, "COMMIT"); !s.ok()) {
    std::optional<Error> hook_error = capture_->take_hook_error();
    if (hook_applied) tree_.undo_last();
    if (!sqlite3_get_autocommit(db)) (void)exec_sql(db, "ROLLBACK");
    if (hook_error) return std::move(*hook_error);
    const bool local = is_local_sqlite_error(sqlite3_extended_errcode(db));
    return make_error(local ? Errc::io_error : Errc::sqlite_error, "commit of a replay batch: {}",
                      s.error().message);
  }
  if (!hook_applied) {
    return make_error(Errc::internal, "a replay batch committed without passing the commit hook");
  }
  return ok_status();
}

Status replay_entry(DeterministicDb& db, const Entry& entry) {
  const EntryInputs inputs{entry.seq, entry.time_ms, entry.seed};
  auto on_commit = [&](const Hash32& root, uint32_t page_count) -> Status {
    if (root != entry.state_root || page_count != entry.page_count) {
      return make_error(Errc::diverged,
                        "entry {}: replay gives state root {} with {} pages, the entry says {} with "
                        "{} pages",
                        entry.seq, to_hex(root), page_count, to_hex(entry.state_root),
                        entry.page_count);
    }
    return ok_status();
  };
  auto mode = entry.seq == 0 ? DeterministicDb::Mode::genesis : DeterministicDb::Mode::user;
  auto r = db.run_entry(inputs, entry.statements, mode, /*collect_rows=*/false, on_commit);
  if (r.ok()) return ok_status();
  Error e = r.take_error();
  switch (e.code) {
    case Errc::diverged:
    case Errc::io_error:
    case Errc::corrupt:
    case Errc::internal:
      return e;
    default:
      return make_error(Errc::diverged,
                        "entry {}: a statement the primary logged fails on replay ({}); state kept "
                        "at the previous entry",
                        entry.seq, e.to_string());
  }
}

Result<SqliteDb> open_reader(const std::filesystem::path& path, const ReadCapture* capture) {
  page_vfs_name();
  SWL_ASSIGN(SqliteDb db, open_sqlite(page_vfs_uri(path, nullptr, capture, true),
                                      SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX));
  sqlite3_busy_timeout(db.get(), 5000);
  return db;
}

}  // namespace swarmlite
