// The write authorizer: see write_authorizer.h and docs/determinism.md.
#include "sqlbridge/engine/write_authorizer.h"

#include <fmt/format.h>
#include <sqlite3.h>
#include <strings.h>

#include <cstring>
#include <string_view>

#include "sqlbridge/engine/function_policy.h"
#include "sqlbridge/engine/genesis.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {

namespace {

bool iequals(const char* a, std::string_view b) {
  return a != nullptr && std::strlen(a) == b.size() && strncasecmp(a, b.data(), b.size()) == 0;
}
bool is_meta_table(const char* name) { return iequals(name, kMetaTable); }

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
bool pragma_statement_ok(const char* name) {
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
    return "is a pragma function, whose value depends on the host or the connection";
  }
  return nullptr;
}

int deny(WriteAuthState* st, std::string why) {
  if (st->refusal.empty()) st->refusal = std::move(why);
  return SQLITE_DENY;
}

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

int authorize_impl(void* ctx, int action, const char* a1, const char* a2, const char* db_name,
              const char* inner) {
  auto* st = static_cast<WriteAuthState*>(ctx);
  if (st->mode == AuthMode::system) return SQLITE_OK;
  const bool genesis = st->mode == AuthMode::genesis;
  if (is_write_action(action) && iequals(db_name, "temp")) {
    return deny(st, fmt::format("TEMP object temp.{} is refused: the temp schema lives outside the "
                                "database file and would not replicate",
                                or_empty(a1)));
  }
  if (inner == nullptr) {
    using Created = WriteAuthState::Created;
    switch (action) {
      case SQLITE_CREATE_TABLE:
        st->created.push_back(Created{Created::table_kind, or_empty(a1), or_empty(a1)});
        break;
      case SQLITE_ALTER_TABLE:  // a1 = schema, a2 = table
        st->created.push_back(Created{Created::table_kind, or_empty(a2), or_empty(a2)});
        break;
      case SQLITE_CREATE_TRIGGER:
        st->created.push_back(Created{Created::trigger_kind, or_empty(a1), or_empty(a2)});
        break;
      case SQLITE_CREATE_VIEW:
        st->created.push_back(Created{Created::view_kind, or_empty(a1), or_empty(a1)});
        break;
      default:
        break;
    }
  }
  if (action == SQLITE_ANALYZE || ((action == SQLITE_INSERT || action == SQLITE_UPDATE ||
                                    action == SQLITE_DELETE || action == SQLITE_DROP_TABLE) &&
                                   a1 != nullptr && strncasecmp(a1, "sqlite_stat", 11) == 0)) {
    st->stats_touched = true;
  }
  switch (action) {
    case SQLITE_ATTACH:
      return deny(st, "ATTACH is refused: another database file is outside the log");
    case SQLITE_DETACH:
      return deny(st, "DETACH is refused: another database file is outside the log");
    case SQLITE_TRANSACTION:
      return deny(st, fmt::format("{} is refused: swarmlite runs each write transaction itself "
                                  "(one per execute; over HTTP, one per statement, or one per "
                                  "request with ?transaction); use SAVEPOINT/RELEASE inside it",
                                  or_empty(a1)));
    case SQLITE_PRAGMA:
      if (st->first_pragma.empty()) {
        st->first_pragma = or_empty(a1);
        st->first_pragma_value = or_empty(a2);
      }
      if (pragma_allowed_as_statement(a1)) return SQLITE_OK;
      if (pragma_restates_fixed_setting(a1, a2)) return SQLITE_OK;
      if (iequals(a1, "foreign_keys") && a2 != nullptr) {
        return deny(st,
                    fmt::format("PRAGMA foreign_keys={} is refused in a write: foreign keys are "
                                "always enforced, a fixed setting (docs/determinism.md); "
                                "PRAGMA defer_foreign_keys=ON moves this transaction's checks "
                                "to its commit",
                                a2));
      }
      // Allowed here for FTS5's internal statement; refused as a user
      // statement in run_statement_text (first_pragma).
      if (is_module_pragma_read(a1, a2)) return SQLITE_OK;  // read-only schema pragmas; a2 is the table
      return deny(st, fmt::format("PRAGMA {}{} is refused in a write: the connection settings are "
                                  "fixed for determinism",
                                  or_empty(a1), a2 ? fmt::format("={}", a2) : ""));
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
                                  or_empty(a1)));
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
      // a1 = table, a2 = module. Shadow tables the module creates, writes and
      // drops go through the ordinary table actions below.
      if (vtab_module_allowed(a2)) {
        if (action == SQLITE_CREATE_VTABLE) st->vtab_created = true;
        return SQLITE_OK;
      }
      return deny(st, fmt::format("virtual table {} (module {}) is refused: {}", or_empty(a1), or_empty(a2),
                                  vtab_module_refusal(a2)));
    case SQLITE_FUNCTION: {
      // a2 is the function; `inner` the trigger or view whose body calls it.
      std::string where =
          inner != nullptr ? fmt::format(" (called from trigger or view \"{}\")", inner) : "";
      const FunctionPolicy* policy = find_function_policy(or_empty(a2));
      if (policy != nullptr && policy->cls == FunctionClass::refused) {
        return deny(st, function_refusal(or_empty(a2), policy->reason, where));
      }
      if (policy == nullptr && st->unclassified.count(lower_ascii(or_empty(a2))) != 0) {
        return deny(st, function_refusal(or_empty(a2), kUnclassifiedFunctionReason, where));
      }
      return SQLITE_OK;
    }
    case SQLITE_READ:
      if (const char* why = refused_table_reason(a1)) {
        return deny(st, fmt::format("table {} is refused: it {}", or_empty(a1), why));
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

}  // namespace

int authorize_write(void* state, int action, const char* a1, const char* a2, const char* db_name,
                    const char* inner) {
  return authorize_impl(state, action, a1, a2, db_name, inner);
}

bool pragma_allowed_as_statement(const char* name) { return pragma_statement_ok(name); }

bool pragma_restates_fixed_setting(const char* name, const char* value) {
  if (!iequals(name, "foreign_keys")) return false;
  return iequals(value, "on") || iequals(value, "1") || iequals(value, "true") ||
         iequals(value, "yes");
}

}  // namespace swarmlite
