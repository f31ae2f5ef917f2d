// Fixed connection settings and built-in overrides: see connection_settings.h
// and docs/determinism.md.
#include "sqlbridge/engine/connection_settings.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <cstdlib>
#include <ctime>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/file_io.h"
#include "sqlbridge/engine/function_policy.h"
#include "sqlbridge/engine/linear_functions.h"
#include "sqlbridge/engine/page_vfs.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {

void pin_process_timezone() {
  static std::once_flag once;
  std::call_once(once, [] {
    setenv("TZ", "UTC", 1);
    tzset();
  });
}

namespace {

// ---------------------------------------------------------------------------
// Connection-level overrides of refused and pinned built-ins
// (docs/determinism.md, "Functions"). SQLite looks functions up on the
// connection first, when it generates code for an expression wherever that
// expression is stored (DEFAULT, CHECK, generated column, index, trigger, view,
// foreign-key action), so these replace the built-ins at every site.

struct RefusedFunction {
  WriteAuthState* auth;
  std::string message;
};

void fn_refused(sqlite3_context* ctx, int, sqlite3_value**) {
  auto* r = static_cast<RefusedFunction*>(sqlite3_user_data(ctx));
  // The statement fails; run_statement_text reports it as Errc::refused.
  if (r->auth->refusal.empty()) r->auth->refusal = r->message;
  sqlite3_result_error(ctx, r->message.c_str(), -1);
}

void destroy_refused(void* p) { delete static_cast<RefusedFunction*>(p); }

// total_changes(): rows changed since the start of the entry. The built-in
// counts since the connection opened, which includes failed transactions and
// swarmlite's own statements, so it differs between a primary and a replica.
void fn_total_changes(sqlite3_context* ctx, int, sqlite3_value**) {
  auto* st = static_cast<WriteAuthState*>(sqlite3_user_data(ctx));
  if (!st->in_entry) {
    sqlite3_result_error(ctx, "total_changes() outside a swarmlite entry", -1);
    return;
  }
  sqlite3_result_int64(ctx, sqlite3_total_changes64(sqlite3_context_db_handle(ctx)) -
                                st->total_changes_base);
}

// Fixed limits: SQLite's documented defaults, set explicitly so that a build
// with other compile-time defaults behaves the same (checked after setting).
struct FixedLimit {
  int id;
  int value;
  const char* name;
};
constexpr FixedLimit kLimits[] = {
    {SQLITE_LIMIT_LENGTH, 1000000000, "LENGTH"},
    {SQLITE_LIMIT_SQL_LENGTH, 1000000000, "SQL_LENGTH"},
    {SQLITE_LIMIT_COLUMN, 2000, "COLUMN"},
    {SQLITE_LIMIT_EXPR_DEPTH, 1000, "EXPR_DEPTH"},
    {SQLITE_LIMIT_COMPOUND_SELECT, 500, "COMPOUND_SELECT"},
    {SQLITE_LIMIT_VDBE_OP, 250000000, "VDBE_OP"},
    {SQLITE_LIMIT_FUNCTION_ARG, 127, "FUNCTION_ARG"},
    {SQLITE_LIMIT_ATTACHED, 0, "ATTACHED"},
    {SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50000, "LIKE_PATTERN_LENGTH"},
    {SQLITE_LIMIT_VARIABLE_NUMBER, 32766, "VARIABLE_NUMBER"},
    {SQLITE_LIMIT_TRIGGER_DEPTH, 1000, "TRIGGER_DEPTH"},
    {SQLITE_LIMIT_WORKER_THREADS, 0, "WORKER_THREADS"},
};

struct DbConfigFlag {
  int op;
  int value;
  const char* name;
};
constexpr DbConfigFlag kDbConfig[] = {
    {SQLITE_DBCONFIG_ENABLE_FKEY, 1, "ENABLE_FKEY"},
    {SQLITE_DBCONFIG_ENABLE_TRIGGER, 1, "ENABLE_TRIGGER"},
    {SQLITE_DBCONFIG_ENABLE_VIEW, 1, "ENABLE_VIEW"},
    {SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, "ENABLE_LOAD_EXTENSION"},
    {SQLITE_DBCONFIG_DEFENSIVE, 1, "DEFENSIVE"},
    {SQLITE_DBCONFIG_WRITABLE_SCHEMA, 0, "WRITABLE_SCHEMA"},
    {SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, 0, "LEGACY_ALTER_TABLE"},
    {SQLITE_DBCONFIG_DQS_DML, 0, "DQS_DML"},
    {SQLITE_DBCONFIG_DQS_DDL, 0, "DQS_DDL"},
    {SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, "TRUSTED_SCHEMA"},
    {SQLITE_DBCONFIG_LEGACY_FILE_FORMAT, 0, "LEGACY_FILE_FORMAT"},
    {SQLITE_DBCONFIG_ENABLE_QPSG, 0, "ENABLE_QPSG"},
    {SQLITE_DBCONFIG_RESET_DATABASE, 0, "RESET_DATABASE"},
};

// What the database file records, in order (page_size and auto_vacuum before
// WAL): set on every connection (apply_fixed_settings) and on a new file
// before it appears (create_database_file).
constexpr const char* kFilePragmas[] = {
    "PRAGMA page_size=4096", "PRAGMA auto_vacuum=NONE", "PRAGMA journal_mode=WAL"};

// Per-connection pragmas, after kFilePragmas.
constexpr const char* kPragmas[] = {
    "PRAGMA synchronous=NORMAL", "PRAGMA secure_delete=ON", "PRAGMA recursive_triggers=ON",
    "PRAGMA foreign_keys=ON", "PRAGMA cache_size=-16384", "PRAGMA temp_store=MEMORY",
    "PRAGMA mmap_size=0", "PRAGMA wal_autocheckpoint=1000",
    // When the -wal file starts over, the write connection cuts it back to
    // 64 MiB: a long read transaction (another program's, a snapshot being
    // served) or one big write grew it, and it would otherwise keep that size
    // on disk until the node closes (docs/operations.md "Looking at a running
    // node's database with SQLite"). Normal use stays below: checkpoints come
    // every ~1,000 frames, about 4 MiB.
    "PRAGMA journal_size_limit=67108864", "PRAGMA cell_size_check=OFF",
    "PRAGMA reverse_unordered_selects=OFF", "PRAGMA automatic_index=ON",
    // case_sensitive_like stays at SQLite's default, OFF, and is never set: the
    // pragma re-registers like() as an application function that is neither
    // deterministic nor innocuous, so a CHECK using LIKE that the primary
    // committed failed with "unsafe use of LIKE()" on a restarted replica
    // (found by tests/sqlfuzz; docs/determinism.md).
};

Result<std::string> pragma_text(sqlite3* db, const char* pragma) {
  SWL_ASSIGN(SqliteStmt st, prepare(db, pragma));
  if (sqlite3_step(st.get()) != SQLITE_ROW) return sqlite_error(db, pragma);
  const auto* t = sqlite3_column_text(st.get(), 0);
  return std::string(t ? reinterpret_cast<const char*>(t) : "");
}

}  // namespace

Status apply_fixed_settings(sqlite3* db, const std::filesystem::path& path) {
  if (sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, 0, nullptr) != SQLITE_OK) {
    return make_error(Errc::internal,
                      "this SQLite build cannot reseed its PRNG (SQLITE_TESTCTRL_PRNG_SEED); "
                      "random rowids could not be replayed");
  }
  for (const DbConfigFlag& f : kDbConfig) {
    int got = -1;
    if (sqlite3_db_config(db, f.op, f.value, &got) != SQLITE_OK || got != f.value) {
      return make_error(Errc::internal, "{}: cannot set SQLITE_DBCONFIG_{}={}", path.string(),
                        f.name, f.value);
    }
  }
  for (const FixedLimit& l : kLimits) {
    sqlite3_limit(db, l.id, l.value);
    int got = sqlite3_limit(db, l.id, -1);
    if (got != l.value) {
      return make_error(Errc::internal,
                        "this SQLite build caps SQLITE_LIMIT_{} at {}, swarmlite fixes it at {}",
                        l.name, got, l.value);
    }
  }
  for (const char* p : kFilePragmas) SWL_TRY(exec_sql(db, p));
  for (const char* p : kPragmas) SWL_TRY(exec_sql(db, p));
  sqlite3_busy_timeout(db, 5000);
  SWL_ASSIGN(std::string mode, pragma_text(db, "PRAGMA journal_mode"));
  if (mode != "wal") {
    return make_error(Errc::sqlite_error, "{}: journal_mode is {}, expected wal", path.string(), mode);
  }
  SWL_ASSIGN(std::string page_size, pragma_text(db, "PRAGMA page_size"));
  if (page_size != std::to_string(kPageSize)) {
    return make_error(Errc::bad_value, "{}: page size is {}, swarmlite needs {}", path.string(),
                      page_size, kPageSize);
  }
  SWL_ASSIGN(std::string auto_vacuum, pragma_text(db, "PRAGMA auto_vacuum"));
  if (auto_vacuum != "0") {
    return make_error(Errc::bad_value, "{}: auto_vacuum is {}, swarmlite needs NONE", path.string(),
                      auto_vacuum);
  }
  return ok_status();
}

Status create_database_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return ok_status();
  const std::filesystem::path tmp = path.string() + "-creating";
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
    std::filesystem::remove(tmp.string() + suffix, ec);  // a killed attempt's
  }
  {
    SWL_ASSIGN(SqliteDb db, open_sqlite(tmp.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    for (const char* p : kFilePragmas) SWL_TRY(exec_sql(db.get(), p));
    SWL_ASSIGN(std::string mode, pragma_text(db.get(), "PRAGMA journal_mode"));
    if (mode != "wal") {
      return make_error(Errc::sqlite_error, "{}: journal_mode is {}, expected wal", tmp.string(), mode);
    }
  }  // closed: SQLite removes the empty -wal and -shm
  {
    SWL_ASSIGN(file_io::Fd fd, file_io::open(tmp, O_RDWR));
    SWL_TRY(file_io::fsync_file(fd.get(), tmp));
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    return make_error(Errc::io_error, "cannot rename {} to {}: {}", tmp.string(), path.string(),
                      ec.message());
  }
  return file_io::fsync_parent(path);
}

Status install_function_overrides(sqlite3* db, std::unique_ptr<SeededStream>* running,
                                  WriteAuthState* auth) {
  SWL_TRY(install_seeded_functions(db, running));
  // total_changes(): same flags as the built-in (innocuous, not deterministic).
  if (sqlite3_create_function_v2(db, "total_changes", 0, SQLITE_UTF8 | SQLITE_INNOCUOUS, auth,
                                 fn_total_changes, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return sqlite_error(db, "registering total_changes()");
  }
  // instr() in linear time, same results (linear_functions.h).
  SWL_TRY(install_linear_functions(db));
  // Refused and unclassified: every arity this build has, with the built-in's
  // determinism, so that SQLite accepts them exactly where it accepted the built-in
  // (an existing index or generated column keeps parsing) and our error, not
  // "unsafe use of", is what a write sees; they never return a value.
  SWL_ASSIGN(std::vector<SqlFunction> functions, list_functions(db));
  std::set<std::pair<std::string, int>> done;
  for (const SqlFunction& f : functions) {
    const std::string name = lower_ascii(f.name);
    const FunctionPolicy* policy = find_function_policy(name);
    std::string_view reason;
    if (policy == nullptr) {
      auth->unclassified.insert(name);
      reason = kUnclassifiedFunctionReason;
    } else if (policy->cls == FunctionClass::refused) {
      reason = policy->reason;
    } else {
      continue;
    }
    if (!done.insert({name, f.narg}).second) continue;
    auto* data = new RefusedFunction{auth, function_refusal(name, reason)};
    // On failure SQLite calls destroy_refused(data) itself.
    // The built-in's own determinism: a non-deterministic built-in stays refused in
    // generated columns, index expressions and CHECK by SQLite itself at CREATE
    // / ALTER time — flagged deterministic, `ALTER TABLE … ADD COLUMN … AS
    // (sqlite_version())` committed a schema every other connection calls
    // malformed (found by tests/sqlfuzz).
    // Innocuous, so that a view or trigger calling it reaches our error, not
    // SQLite's "unsafe use of".
    const int flags = SQLITE_UTF8 | SQLITE_INNOCUOUS | (f.flags & SQLITE_DETERMINISTIC);
    if (sqlite3_create_function_v2(db, name.c_str(), f.narg, flags, data,
                                   fn_refused, nullptr, nullptr, destroy_refused) != SQLITE_OK) {
      return sqlite_error(db, fmt::format("overriding {}() with {} arguments", name, f.narg));
    }
  }
  return ok_status();
}

}  // namespace swarmlite
