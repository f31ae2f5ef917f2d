// Which SQL functions a replicated write may call (docs/determinism.md,
// "Functions"): the one classification of every function of `PRAGMA
// function_list` on the write connection. The authorizer refuses the statement
// functions it sees by this table, and DeterministicDb::configure overrides every
// refused function at the connection level (connection functions shadow
// SQLite's built-ins), so a refused function fails with the same message
// wherever SQLite resolves it later — DEFAULT, CHECK, generated columns,
// indexes, triggers, views, foreign-key actions — on the primary and on a
// replica alike. The docs table is checked against this one by
// sqlbridge/engine/function_policy_test.cpp.
#pragma once

#include <sqlite3.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace swarmlite {

enum class FunctionClass {
  allowed,  // the value depends only on the arguments and the database pages
  pinned,   // depends on something swarmlite fixes per entry (time, seed, counters)
  refused,  // depends on the host or the connection; fails the write
};

std::string_view function_class_name(FunctionClass c);

struct FunctionPolicy {
  std::string_view name;  // lower case, as PRAGMA function_list spells it
  FunctionClass cls;
  std::string_view reason;  // why; for refused, the text after "not allowed ...: "
};

// Every classified function, sorted by name.
std::span<const FunctionPolicy> function_policies();

// The policy of `name` (case-insensitive), or null when it is not classified
// (a function a newer SQLite added: treated as refused, see below).
const FunctionPolicy* find_function_policy(std::string_view name);

// Reason used for a function this table does not know.
inline constexpr std::string_view kUnclassifiedFunctionReason =
    "it is not classified for this SQLite build, so it is not known to be deterministic";

// "<name>() is not allowed in replicated writes<where>: <reason> (docs/determinism.md)".
// `where` is empty or names the place, e.g. " (called from trigger or view \"tr\")".
std::string function_refusal(std::string_view name, std::string_view reason,
                             std::string_view where = {});

// One row of PRAGMA function_list.
struct SqlFunction {
  std::string name;
  int narg = 0;       // -1: any number
  char type = 's';    // 's' scalar, 'a' aggregate, 'w' window
  int flags = 0;      // SQLITE_DETERMINISTIC, SQLITE_DIRECTONLY, ...
  bool builtin = false;
};

// The functions `db` knows, in function_list order (name, arity).
Result<std::vector<SqlFunction>> list_functions(sqlite3* db);

}  // namespace swarmlite
