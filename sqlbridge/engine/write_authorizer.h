// The authorizer of write connections (docs/determinism.md
// "Refused"): refuses what cannot be pinned or escapes the file (ATTACH,
// pragmas, TEMP objects, virtual tables other than fts5, host-dependent
// functions, sqlite_swarmlite changes), and records what the statement being
// prepared creates so that DeterministicDb can check its stored expressions.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace swarmlite {

enum class AuthMode { user, genesis, system };

struct WriteAuthState {
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
  // A CREATE VIRTUAL TABLE passed since the entry began (a lean replay batch
  // turns plain after it: DeterministicDb::begin_batch).
  bool vtab_created = false;
  // An ANALYZE, or a write or DROP of a sqlite_stat table, prepared since the
  // entry began: DeterministicDb reloads the planner statistics once the entry
  // ends, and drops its statement cache with them, so such a statement is
  // never reused without passing here (docs/determinism.md "Planner
  // statistics").
  bool stats_touched = false;
  // Pinned total_changes(): sqlite3_total_changes64 at the start of the entry.
  bool in_entry = false;
  int64_t total_changes_base = 0;
  // The first PRAGMA the authorizer saw while the current statement was
  // prepared: the statement's own when it is a PRAGMA (FTS5's internal
  // `PRAGMA data_version` statements come later, from module code).
  std::string first_pragma;
  std::string first_pragma_value;  // its argument ("ON" in PRAGMA foreign_keys=ON), or ""
  // Tables whose column named "rank" the statement being prepared reads: when
  // the table is virtual (an fts5 table: other modules are refused), FTS5
  // computes that column with its rank function, bm25() by default, which
  // uses the host's libm (rank_read_refusal).
  std::vector<std::string> rank_reads;
};

// The sqlite3_set_authorizer callback; `state` is a WriteAuthState.
int authorize_write(void* state, int action, const char* a1, const char* a2, const char* db_name,
                    const char* inner);

// Whether a PRAGMA may be a write's own statement: the read-only schema
// pragmas and defer_foreign_keys.
bool pragma_allowed_as_statement(const char* name);

// Whether PRAGMA name=value only restates a fixed setting the write connection
// already has, so running it changes nothing: PRAGMA foreign_keys=ON (foreign
// keys are always enforced, and SQLite makes the pragma a no-op inside a
// transaction anyway). Apps and ORMs send it on connect (docs/determinism.md
// "Fixed settings").
bool pragma_restates_fixed_setting(const char* name, const char* value);

}  // namespace swarmlite
