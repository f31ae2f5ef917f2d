// Deterministic entry execution: see determinism.h and docs/determinism.md.
#include "sqlbridge/determinism.h"

#include <sodium.h>
#include <strings.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <set>
#include <string>

#include "sqlbridge/function_policy.h"
#include "sqlbridge/linear_functions.h"
#include "sqlbridge/genesis.h"

namespace swarmlite {

// ---------------------------------------------------------------------------
// Seeded randomness

void SeededStream::fill(uint8_t* out, size_t n) {
  // Keystream bytes [offset_, offset_ + n); ChaCha20 block b covers [64b, 64b + 64).
  static const uint8_t kNonce[crypto_stream_chacha20_NONCEBYTES] = {0};
  while (n > 0) {
    uint8_t block[64] = {0};
    crypto_stream_chacha20_xor_ic(block, block, sizeof block, kNonce, offset_ / 64, key_.data());
    size_t skip = static_cast<size_t>(offset_ % 64);
    size_t take = std::min(sizeof block - skip, n);
    std::memcpy(out, block + skip, take);
    out += take;
    n -= take;
    offset_ += take;
  }
}

int64_t SeededStream::next_i64() {
  uint8_t b[8];
  fill(b, 8);
  uint64_t u = 0;
  for (uint8_t x : b) u = (u << 8) | x;
  auto r = static_cast<int64_t>(u);
  // As SQLite's random(): never return INT64_MIN (negating it would overflow).
  if (r < 0) r = -(r & INT64_MAX);
  return r;
}

uint32_t SeededStream::internal_prng_seed(const std::array<uint8_t, 32>& seed) {
  static const uint8_t kNonce[crypto_stream_chacha20_NONCEBYTES] = {1};
  uint8_t b[4];
  crypto_stream_chacha20(b, sizeof b, kNonce, seed.data());
  uint32_t v = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  return v == 0 ? 1 : v;  // 0 would mean "use the OS's randomness"
}

void pin_process_timezone() {
  static std::once_flag once;
  std::call_once(once, [] {
    setenv("TZ", "UTC", 1);
    tzset();
  });
}

// ---------------------------------------------------------------------------
// Authorizer

enum class AuthMode { user, genesis, system };

struct DeterministicDb::AuthState {
  AuthMode mode = AuthMode::system;
  std::string refusal;  // why the last denial happened (first one wins)
  // Functions of this SQLite build that function_policy.cpp does not classify
  // (lower case): refused like the refused ones.
  std::set<std::string> unclassified;
  // Objects the statement being prepared creates or alters (its own
  // authorizer actions, not those of triggers): their stored expressions are
  // checked once the statement ran (check_created_objects).
  struct Created {
    enum Kind { table_kind, trigger_kind, view_kind } kind;
    std::string name;   // the table, trigger or view
    std::string table;  // a trigger's table or view
  };
  std::vector<Created> created;
  std::vector<Created> to_check;  // `created` of the statement being run
  // Pinned total_changes(): sqlite3_total_changes64 at the start of the entry.
  bool in_entry = false;
  int64_t total_changes_base = 0;
  // The first PRAGMA the authorizer saw while the current statement was
  // prepared: the statement's own when it is a PRAGMA (FTS5's internal
  // `PRAGMA data_version` statements come later, from module code).
  std::string first_pragma;
  // Tables whose column named "rank" the statement being prepared reads: when
  // the table is virtual (an fts5 table: other modules are refused), FTS5
  // computes that column with its rank function, bm25() by default, which
  // uses the host's libm (rank_read_refusal).
  std::vector<std::string> rank_reads;
};

namespace {

bool iequals(const char* a, std::string_view b) {
  return a != nullptr && std::strlen(a) == b.size() && strncasecmp(a, b.data(), b.size()) == 0;
}
bool is_meta_table(const char* name) { return iequals(name, kMetaTable); }

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// A quoted SQL identifier.
std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  out += '"';
  return out;
}

// Read-only schema pragmas allowed in writes (their argument is a table or index name).
bool pragma_allowed(const char* name) {
  for (std::string_view ok : {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                              "foreign_key_list"}) {
    if (iequals(name, ok)) return true;
  }
  return false;
}

// PRAGMA defer_foreign_keys: moves this transaction's foreign key checks to its
// COMMIT and is switched off by SQLite at every COMMIT and ROLLBACK, so it
// lives exactly as long as the entry that sets it (docs/determinism.md).
bool pragma_allowed_as_statement(const char* name) {
  return pragma_allowed(name) || iequals(name, "defer_foreign_keys");
}

// Virtual table modules allowed in writes (docs/determinism.md, "Allowed
// virtual tables"): FTS5 is built into SQLite, keeps its state in shadow tables
// of the database file, and drops its in-memory caches on change or rollback.
bool vtab_module_allowed(const char* module) { return iequals(module, "fts5"); }

// Why a known module is refused (others: not proven deterministic).
const char* vtab_module_refusal(const char* module) {
  if (iequals(module, "rtree") || iequals(module, "rtree_i32")) {
    return "R*Tree keeps per-connection state across transactions (its reinsert height "
           "survives a rolled-back transaction), so a replica can lay out nodes differently";
  }
  return "only the fts5 module is allowed in writes; other modules are not proven "
         "deterministic or keep state outside the replicated pages";
}

// FTS5 reads this connection-level counter internally to know when to drop its
// cached structure record; the pragma writes nothing (docs/determinism.md).
// Refused as the user's own statement (run_statement_text).
bool is_module_pragma_read(const char* pragma, const char* arg) {
  return arg == nullptr && iequals(pragma, "data_version");
}

// Eponymous virtual tables whose content depends on the host or the connection.
const char* refused_table_reason(const char* name) {
  if (name == nullptr) return nullptr;
  if (iequals(name, "dbstat")) return "exposes the file layout";
  if (iequals(name, "sqlite_dbpage")) return "reads and writes raw pages";
  if (iequals(name, "sqlite_stmt")) return "depends on the connection's state";
  if (strncasecmp(name, "pragma_", 7) == 0 && !pragma_allowed(name + 7)) {
    return "pragma functions depend on the host or connection";
  }
  return nullptr;
}

int deny(DeterministicDb::AuthState* st, std::string why) {
  if (st->refusal.empty()) st->refusal = std::move(why);
  return SQLITE_DENY;
}

const char* nz(const char* s) { return s ? s : ""; }

// Actions that create, change or drop something.
bool is_write_action(int action) {
  switch (action) {
    case SQLITE_READ:
    case SQLITE_SELECT:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
    case SQLITE_PRAGMA:
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      return false;
    default:
      return true;
  }
}

int authorize(void* ctx, int action, const char* a1, const char* a2, const char* db_name,
              const char* inner) {
  auto* st = static_cast<DeterministicDb::AuthState*>(ctx);
  if (st->mode == AuthMode::system) return SQLITE_OK;
  const bool genesis = st->mode == AuthMode::genesis;
  if (is_write_action(action) && iequals(db_name, "temp")) {
    return deny(st, fmt::format("TEMP object temp.{} is refused: the temp schema lives outside the "
                                "database file and would not replicate",
                                nz(a1)));
  }
  if (inner == nullptr) {
    using Created = DeterministicDb::AuthState::Created;
    switch (action) {
      case SQLITE_CREATE_TABLE:
        st->created.push_back(Created{Created::table_kind, nz(a1), nz(a1)});
        break;
      case SQLITE_ALTER_TABLE:  // a1 = schema, a2 = table
        st->created.push_back(Created{Created::table_kind, nz(a2), nz(a2)});
        break;
      case SQLITE_CREATE_TRIGGER:
        st->created.push_back(Created{Created::trigger_kind, nz(a1), nz(a2)});
        break;
      case SQLITE_CREATE_VIEW:
        st->created.push_back(Created{Created::view_kind, nz(a1), nz(a1)});
        break;
      default:
        break;
    }
  }
  switch (action) {
    case SQLITE_ATTACH:
      return deny(st, "ATTACH is refused: another database file is outside the log");
    case SQLITE_DETACH:
      return deny(st, "DETACH is refused: another database file is outside the log");
    case SQLITE_TRANSACTION:
      return deny(st, fmt::format("{} is refused: swarmlite owns the transaction (one per execute); "
                                  "use SAVEPOINT/RELEASE inside it",
                                  nz(a1)));
    case SQLITE_PRAGMA:
      if (st->first_pragma.empty()) st->first_pragma = nz(a1);
      if (pragma_allowed_as_statement(a1)) return SQLITE_OK;
      // Allowed here for FTS5's internal statement; refused as a user
      // statement in run_statement_text (first_pragma).
      if (is_module_pragma_read(a1, a2)) return SQLITE_OK;  // read-only schema pragmas; a2 is the table
      return deny(st, fmt::format("PRAGMA {}{} is refused in a write: the connection settings are "
                                  "fixed for determinism",
                                  nz(a1), a2 ? fmt::format("={}", a2) : ""));
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_INDEX:
    case SQLITE_DROP_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_VIEW:
      return deny(st, fmt::format("TEMP object {} is refused: temporary tables, views, triggers and "
                                  "indexes live outside the database file and would not replicate",
                                  nz(a1)));
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
      // a1 = table, a2 = module. Shadow tables the module creates, writes and
      // drops go through the ordinary table actions below.
      if (vtab_module_allowed(a2)) return SQLITE_OK;
      return deny(st, fmt::format("virtual table {} (module {}) is refused: {}", nz(a1), nz(a2),
                                  vtab_module_refusal(a2)));
    case SQLITE_FUNCTION: {
      // a2 is the function; `inner` the trigger or view whose body calls it.
      std::string where =
          inner != nullptr ? fmt::format(" (called from trigger or view \"{}\")", inner) : "";
      const FunctionPolicy* policy = find_function_policy(nz(a2));
      if (policy != nullptr && policy->cls == FunctionClass::refused) {
        return deny(st, function_refusal(nz(a2), policy->reason, where));
      }
      if (policy == nullptr && st->unclassified.count(lower_ascii(nz(a2))) != 0) {
        return deny(st, function_refusal(nz(a2), kUnclassifiedFunctionReason, where));
      }
      return SQLITE_OK;
    }
    case SQLITE_READ:
      if (const char* why = refused_table_reason(a1)) {
        return deny(st, fmt::format("table {} is refused: it {}", nz(a1), why));
      }
      if (iequals(a2, "rank") && a1 != nullptr) st->rank_reads.emplace_back(a1);
      return SQLITE_OK;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
    case SQLITE_DROP_TABLE:
      if (!genesis && is_meta_table(a1)) {
        return deny(st, fmt::format("writing {} is refused: it holds swarmlite's own metadata",
                                    kMetaTable));
      }
      return SQLITE_OK;
    case SQLITE_CREATE_TABLE:
      if (!genesis && is_meta_table(a1)) {
        return deny(st, fmt::format("creating {} is refused: it holds swarmlite's own metadata",
                                    kMetaTable));
      }
      return SQLITE_OK;
    case SQLITE_ALTER_TABLE:
    case SQLITE_CREATE_INDEX:
    case SQLITE_DROP_INDEX:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_DROP_TRIGGER:
      // SQLite refuses these on any sqlite_ table before asking (docs/determinism.md
      // "Genesis"); kept so the guard does not depend on that order.
      if (!genesis && is_meta_table(a2)) {
        return deny(st, fmt::format("changing {}'s schema is refused: it holds swarmlite's own "
                                    "metadata",
                                    kMetaTable));
      }
      return SQLITE_OK;
    default:
      return SQLITE_OK;
  }
}

// ---------------------------------------------------------------------------
// Deterministic replacements for random() and randomblob()

void fn_random(sqlite3_context* ctx, int, sqlite3_value**) {
  SeededStream* stream = static_cast<std::unique_ptr<SeededStream>*>(sqlite3_user_data(ctx))->get();
  if (stream == nullptr) {
    sqlite3_result_error(ctx, "random() outside a swarmlite entry", -1);
    return;
  }
  sqlite3_result_int64(ctx, stream->next_i64());
}

void fn_randomblob(sqlite3_context* ctx, int, sqlite3_value** argv) {
  SeededStream* stream = static_cast<std::unique_ptr<SeededStream>*>(sqlite3_user_data(ctx))->get();
  if (stream == nullptr) {
    sqlite3_result_error(ctx, "randomblob() outside a swarmlite entry", -1);
    return;
  }
  sqlite3_int64 n = sqlite3_value_int64(argv[0]);
  if (n < 1) n = 1;  // as SQLite: a 1-byte blob for N < 1
  if (n > sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1)) {
    sqlite3_result_error_toobig(ctx);
    return;
  }
  auto* p = static_cast<uint8_t*>(sqlite3_malloc64(static_cast<sqlite3_uint64>(n)));
  if (p == nullptr) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  stream->fill(p, static_cast<size_t>(n));
  sqlite3_result_blob64(ctx, p, static_cast<sqlite3_uint64>(n), sqlite3_free);
}

// ---------------------------------------------------------------------------
// Connection-level overrides of refused and pinned built-ins
// (docs/determinism.md, "Functions"). SQLite looks functions up on the
// connection first, when it generates code for an expression wherever that
// expression is stored (DEFAULT, CHECK, generated column, index, trigger, view,
// foreign-key action), so these replace the built-ins at every site.

struct RefusedFunction {
  DeterministicDb::AuthState* auth;
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
  auto* st = static_cast<DeterministicDb::AuthState*>(sqlite3_user_data(ctx));
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

// Per-connection pragmas, in order (page_size and auto_vacuum before WAL).
constexpr const char* kPragmas[] = {
    "PRAGMA page_size=4096",        "PRAGMA auto_vacuum=NONE",   "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",    "PRAGMA secure_delete=ON",   "PRAGMA recursive_triggers=ON",
    "PRAGMA foreign_keys=ON",       "PRAGMA cache_size=-16384",  "PRAGMA temp_store=MEMORY",
    "PRAGMA mmap_size=0",           "PRAGMA wal_autocheckpoint=1000",
    "PRAGMA cell_size_check=OFF",
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

// The process-wide PRNG of SQLite is shared by every connection: entries of all
// Primaries/Replicas in this process run one at a time.
std::mutex& entry_mutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

// ---------------------------------------------------------------------------
// DeterministicDb

DeterministicDb::~DeterministicDb() {
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
  d->auth_ = std::make_unique<AuthState>();
  SWL_ASSIGN(d->db_, open_sqlite(page_vfs_uri(path, d->capture_.get(), nullptr, false),
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX));
  SWL_TRY(d->configure());
  SWL_ASSIGN(d->tree_, StateTree::from_file(path));
  return d;
}

Status DeterministicDb::configure() {
  sqlite3* db = db_.get();
  if (sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, 0, nullptr) != SQLITE_OK) {
    return make_error(Errc::internal,
                      "this SQLite build cannot reseed its PRNG (SQLITE_TESTCTRL_PRNG_SEED); "
                      "random rowids could not be replayed");
  }
  for (const DbConfigFlag& f : kDbConfig) {
    int got = -1;
    if (sqlite3_db_config(db, f.op, f.value, &got) != SQLITE_OK || got != f.value) {
      return make_error(Errc::internal, "{}: cannot set SQLITE_DBCONFIG_{}={}", path_.string(),
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
  for (const char* p : kPragmas) SWL_TRY(exec_sql(db, p));
  sqlite3_busy_timeout(db, 5000);
  SWL_ASSIGN(std::string mode, pragma_text(db, "PRAGMA journal_mode"));
  if (mode != "wal") {
    return make_error(Errc::sqlite_error, "{}: journal_mode is {}, expected wal", path_.string(), mode);
  }
  SWL_ASSIGN(std::string page_size, pragma_text(db, "PRAGMA page_size"));
  if (page_size != std::to_string(kPageSize)) {
    return make_error(Errc::bad_value, "{}: page size is {}, swarmlite needs {}", path_.string(),
                      page_size, kPageSize);
  }
  SWL_ASSIGN(std::string auto_vacuum, pragma_text(db, "PRAGMA auto_vacuum"));
  if (auto_vacuum != "0") {
    return make_error(Errc::bad_value, "{}: auto_vacuum is {}, swarmlite needs NONE", path_.string(),
                      auto_vacuum);
  }
  SWL_TRY(install_function_overrides());
  sqlite3_set_authorizer(db, authorize, auth_.get());
  return ok_status();
}

Status DeterministicDb::install_function_overrides() {
  sqlite3* db = db_.get();
  // Pinned: same flags as the built-ins (random, randomblob, total_changes are
  // innocuous, not deterministic).
  const int pinned_flags = SQLITE_UTF8 | SQLITE_INNOCUOUS;
  if (sqlite3_create_function_v2(db, "random", 0, pinned_flags, &stream_, fn_random, nullptr,
                                 nullptr, nullptr) != SQLITE_OK ||
      sqlite3_create_function_v2(db, "randomblob", 1, pinned_flags, &stream_, fn_randomblob,
                                 nullptr, nullptr, nullptr) != SQLITE_OK ||
      sqlite3_create_function_v2(db, "total_changes", 0, pinned_flags, auth_.get(),
                                 fn_total_changes, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return sqlite_error(db, "registering random()/randomblob()/total_changes()");
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
      auth_->unclassified.insert(name);
      reason = kUnclassifiedFunctionReason;
    } else if (policy->cls == FunctionClass::refused) {
      reason = policy->reason;
    } else {
      continue;
    }
    if (!done.insert({name, f.narg}).second) continue;
    auto* data = new RefusedFunction{auth_.get(), function_refusal(name, reason)};
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

Result<uint64_t> read_applied_size(sqlite3* db) {
  static const std::string kHas = fmt::format(
      "SELECT count(*), sum(name = '{}'), sum(name = '{}' AND type = 'table' AND sql = '{}') "
      "FROM sqlite_schema",
      kMetaTable, kLegacyMetaTable, kLegacyCreateMetaSql);
  static const std::string kApplied =
      fmt::format("SELECT v FROM {} WHERE k = 'applied_seq'", kMetaTable);
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
  SWL_ASSIGN(SqliteStmt q, prepare(db, kApplied));
  if (sqlite3_step(q.get()) != SQLITE_ROW || sqlite3_column_type(q.get(), 0) != SQLITE_INTEGER ||
      sqlite3_column_int64(q.get(), 0) < 0) {
    return make_error(Errc::corrupt, "{}: {} has no integer applied_seq", where, kMetaTable);
  }
  return static_cast<uint64_t>(sqlite3_column_int64(q.get(), 0)) + 1;
}

Result<uint64_t> DeterministicDb::read_applied_size() {
  auth_->mode = AuthMode::system;
  return swarmlite::read_applied_size(db_.get());
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
  std::string_view rest = st.sql;
  bool first = true;
  while (!is_blank_sql(rest)) {
    auth_->refusal.clear();
    auth_->first_pragma.clear();
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
    if (keyword == "PRAGMA" && !pragma_allowed_as_statement(auth_->first_pragma.c_str())) {
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
    if (Status s = bind_values(stmt.get(), first ? st.params : kNoParams); !s.ok()) {
      return make_error(Errc::invalid_argument, "statement {}: {}", index, s.error().message);
    }
    StatementResult result;
    result.statement_index = index;
    const int ncol = sqlite3_column_count(stmt.get());
    if (collect_rows && ncol > 0) {
      for (int c = 0; c < ncol; ++c) result.columns.emplace_back(nz(sqlite3_column_name(stmt.get(), c)));
    }
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      if (!collect_rows) continue;
      std::vector<Value> row;
      row.reserve(static_cast<size_t>(ncol));
      for (int c = 0; c < ncol; ++c) row.push_back(column_value(stmt.get(), c));
      result.rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) return fail("step");
    if (!auth_->to_check.empty()) SWL_TRY(check_created_objects(index));
    const bool dml = !sqlite3_stmt_readonly(stmt.get()) &&
                     (keyword == "INSERT" || keyword == "UPDATE" || keyword == "DELETE" ||
                      keyword == "REPLACE" || keyword == "WITH");
    result.rows_changed = dml ? sqlite3_changes64(db) : 0;
    result.last_insert_rowid = sqlite3_last_insert_rowid(db);
    out.push_back(std::move(result));
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
  using Created = AuthState::Created;
  sqlite3* db = db_.get();
  std::vector<Created> objects = std::move(auth_->to_check);
  auth_->to_check.clear();
  const AuthMode mode = auth_->mode;
  struct Restore {
    AuthState* st;
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
      c.name = nz(reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0)));
      if (sqlite3_column_type(q.get(), 1) != SQLITE_NULL) {
        c.dflt = nz(reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 1)));
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
  capture_->reset();
  capture_->set_commit_hook([&](const PageMap& pages, uint32_t page_count) -> Status {
    SWL_TRY(tree_.apply(pages, page_count));
    Status s = on_commit(tree_.root(), page_count);
    if (!s.ok()) {
      tree_.undo_last();
      return s;
    }
    hook_applied = true;
    return ok_status();
  });
  // Whatever happens below, leave the connection between entries: no stream,
  // no hook, OS randomness for SQLite's PRNG.
  struct Cleanup {
    DeterministicDb* self;
    ~Cleanup() {
      self->stream_.reset();
      self->capture_->set_commit_hook(nullptr);
      self->auth_->mode = AuthMode::system;
      self->auth_->in_entry = false;
      sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, 0, nullptr);
    }
  } cleanup{this};
  auto rollback = [&] {
    if (!sqlite3_get_autocommit(db)) {
      auth_->mode = AuthMode::system;
      (void)exec_sql(db, "ROLLBACK");
    }
    capture_->reset();
  };

  auth_->mode = AuthMode::system;
  SWL_TRY(exec_sql(db, "BEGIN IMMEDIATE"));
  if (mode == Mode::user) {
    // SQLite pads a cell shorter than 4 bytes (a one-column index or WITHOUT
    // ROWID record holding NULL, 0, 1, '' or x'') with whatever the B-tree's
    // cell buffer held from the connection's earlier work — a failed
    // transaction on the primary or a restart changed those bytes and the
    // roots diverged (found by tests/sqlfuzz). Building one cell of fixed
    // content at the start of every entry, and rolling it back, makes the
    // buffer's contents a function of the entry's starting state alone
    // (docs/determinism.md "Cell padding").
    static const std::string kPad = fmt::format(
        "SAVEPOINT swarmlite_pad;"
        "INSERT INTO {}(k, v) VALUES ('swarmlite_pad', x'5357504144');"
        "ROLLBACK TO swarmlite_pad; RELEASE swarmlite_pad",
        kMetaTable);
    if (Status s = exec_sql(db, kPad);
        !s.ok()) {
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
  if (!update_applied_) {
    auto r = prepare(db, fmt::format("UPDATE {} SET v = ?1 WHERE k = 'applied_seq'", kMetaTable));
    if (!r.ok()) {
      rollback();
      return r.take_error();
    }
    update_applied_ = std::move(r).value();
  }
  sqlite3_bind_int64(update_applied_.get(), 1, static_cast<int64_t>(inputs.seq));
  int rc = sqlite3_step(update_applied_.get());
  sqlite3_reset(update_applied_.get());
  if (rc != SQLITE_DONE || sqlite3_changes(db) != 1) {
    Error e = sqlite_error(db, fmt::format("updating {}.applied_seq", kMetaTable));
    rollback();
    return e;
  }

  if (Status s = exec_sql(db, "COMMIT"); !s.ok()) {
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
