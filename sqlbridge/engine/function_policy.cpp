// The classification of SQL functions in writes: see function_policy.h and
// docs/determinism.md ("Functions"). Keep this table and the docs table equal
// (function_policy_test.cpp checks it).
#include "sqlbridge/engine/function_policy.h"

#include <strings.h>

#include <algorithm>

#include "sqlbridge/sqlite_util.h"

namespace swarmlite {
namespace {

using C = FunctionClass;

constexpr std::string_view kPure = "computed from its arguments alone (text, integer and blob operations)";
constexpr std::string_view kAsciiCase =
    "computed from its arguments alone; case folding is ASCII-only in this build (no ICU)";
constexpr std::string_view kExactFloat =
    "exact IEEE-754 operations (sqrt is correctly rounded by IEEE-754), the same on every conforming CPU";
constexpr std::string_view kDecimal =
    "SQLite's own float/decimal conversion: same SQLite version, same result (see the residual "
    "risk on long double)";
constexpr std::string_view kAggregate =
    "aggregate over the rows in query-plan order; the plan is pinned by version, settings and pages";
constexpr std::string_view kWindow = "window function over rows in an order the query fixes";
constexpr std::string_view kJson =
    "JSON text processing computed from its arguments (reals parsed and printed by SQLite itself)";
constexpr std::string_view kNow =
    "'now' is the entry's time_ms (VFS time methods); 'localtime'/'utc' are the identity in TZ=UTC";
constexpr std::string_view kSeeded = "a ChaCha20 stream keyed by the entry's seed";
constexpr std::string_view kReset = "reset to 0 at the start of every entry, whatever ran before";
constexpr std::string_view kTotalChanges =
    "counts the rows changed since the start of the entry, not since the connection opened";
constexpr std::string_view kLibm =
    "its value comes from the host's libm, which is not required to round identically across "
    "versions and CPUs";
constexpr std::string_view kBuild = "its value depends on the host's SQLite build";
constexpr std::string_view kFts3 = "it belongs to FTS3/FTS4, whose tables are refused";
constexpr std::string_view kRtree = "it belongs to R*Tree, whose tables are refused";

// Sorted by name (checked at first use).
constexpr FunctionPolicy kPolicies[] = {
    {"->", C::allowed, kJson},
    {"->>", C::allowed, kJson},
    {"abs", C::allowed, kPure},
    {"acos", C::refused, kLibm},
    {"acosh", C::refused, kLibm},
    {"asin", C::refused, kLibm},
    {"asinh", C::refused, kLibm},
    {"atan", C::refused, kLibm},
    {"atan2", C::refused, kLibm},
    {"atanh", C::refused, kLibm},
    {"avg", C::allowed, kAggregate},
    {"bm25", C::refused, "it computes log() in the host's libm"},
    {"ceil", C::allowed, kExactFloat},
    {"ceiling", C::allowed, kExactFloat},
    {"changes", C::pinned, kReset},
    {"char", C::allowed, kPure},
    {"coalesce", C::allowed, kPure},
    {"cos", C::refused, kLibm},
    {"cosh", C::refused, kLibm},
    {"count", C::allowed, kAggregate},
    {"cume_dist", C::allowed, kWindow},
    {"current_date", C::pinned, kNow},
    {"current_time", C::pinned, kNow},
    {"current_timestamp", C::pinned, kNow},
    {"date", C::pinned, kNow},
    {"datetime", C::pinned, kNow},
    {"degrees", C::allowed, kExactFloat},
    {"dense_rank", C::allowed, kWindow},
    {"exp", C::refused, kLibm},
    {"first_value", C::allowed, kWindow},
    {"floor", C::allowed, kExactFloat},
    {"format", C::allowed, kDecimal},
    {"fts3_tokenizer", C::refused, "it reads and writes native pointers"},
    {"fts5", C::refused, "it hands out a native pointer (C API only)"},
    {"fts5_source_id", C::refused, kBuild},
    {"glob", C::allowed, kPure},
    {"group_concat", C::allowed, kAggregate},
    {"hex", C::allowed, kPure},
    {"highlight", C::allowed, "FTS5 auxiliary function: text of the matched row"},
    {"ifnull", C::allowed, kPure},
    {"iif", C::allowed, kPure},
    {"instr", C::allowed, kPure},
    {"json", C::allowed, kJson},
    {"json_array", C::allowed, kJson},
    {"json_array_length", C::allowed, kJson},
    {"json_extract", C::allowed, kJson},
    {"json_group_array", C::allowed, kAggregate},
    {"json_group_object", C::allowed, kAggregate},
    {"json_insert", C::allowed, kJson},
    {"json_object", C::allowed, kJson},
    {"json_patch", C::allowed, kJson},
    {"json_quote", C::allowed, kJson},
    {"json_remove", C::allowed, kJson},
    {"json_replace", C::allowed, kJson},
    {"json_set", C::allowed, kJson},
    {"json_type", C::allowed, kJson},
    {"json_valid", C::allowed, kJson},
    {"julianday", C::pinned, kNow},
    {"lag", C::allowed, kWindow},
    {"last_insert_rowid", C::pinned, kReset},
    {"last_value", C::allowed, kWindow},
    {"lead", C::allowed, kWindow},
    {"length", C::allowed, kPure},
    {"like", C::allowed, "computed from its arguments alone; ASCII case folding, case_sensitive_like fixed OFF"},
    {"likelihood", C::allowed, kPure},
    {"likely", C::allowed, kPure},
    {"ln", C::refused, kLibm},
    {"load_extension", C::refused, "it loads native code into the process"},
    {"log", C::refused, kLibm},
    {"log10", C::refused, kLibm},
    {"log2", C::refused, kLibm},
    {"lower", C::allowed, kAsciiCase},
    {"ltrim", C::allowed, kPure},
    {"match", C::allowed,
     "placeholder of the MATCH operator: only an fts5 table implements it, elsewhere it fails alike "
     "on every host"},
    {"matchinfo", C::refused, kFts3},
    {"max", C::allowed, "the largest argument (or, with one argument, aggregate over the rows)"},
    {"min", C::allowed, "the smallest argument (or, with one argument, aggregate over the rows)"},
    {"mod", C::allowed, kExactFloat},
    {"nth_value", C::allowed, kWindow},
    {"ntile", C::allowed, kWindow},
    {"nullif", C::allowed, kPure},
    {"offsets", C::refused, kFts3},
    {"optimize", C::refused, kFts3},
    {"percent_rank", C::allowed, kWindow},
    {"pi", C::allowed, kExactFloat},
    {"pow", C::refused, kLibm},
    {"power", C::refused, kLibm},
    {"printf", C::allowed, kDecimal},
    {"quote", C::allowed, kDecimal},
    {"radians", C::allowed, kExactFloat},
    {"random", C::pinned, kSeeded},
    {"randomblob", C::pinned, kSeeded},
    {"rank", C::allowed, kWindow},
    {"replace", C::allowed, kPure},
    {"round", C::allowed, kDecimal},
    {"row_number", C::allowed, kWindow},
    {"rtreecheck", C::refused, kRtree},
    {"rtreedepth", C::refused, kRtree},
    {"rtreenode", C::refused, kRtree},
    {"rtrim", C::allowed, kPure},
    {"sign", C::allowed, kExactFloat},
    {"sin", C::refused, kLibm},
    {"sinh", C::refused, kLibm},
    {"snippet", C::allowed, "FTS5 auxiliary function: text of the matched row, integer scoring"},
    {"soundex", C::allowed, kPure},
    {"sqlite_compileoption_get", C::refused, kBuild},
    {"sqlite_compileoption_used", C::refused, kBuild},
    {"sqlite_log", C::refused,
     "it writes to the host's SQLite error log, a side effect outside the database"},
    {"sqlite_offset", C::refused, "its value is a byte offset in the file (file layout)"},
    {"sqlite_source_id", C::refused, kBuild},
    {"sqlite_version", C::refused, kBuild},
    {"sqrt", C::allowed, kExactFloat},
    {"strftime", C::pinned, kNow},
    {"substr", C::allowed, kPure},
    {"substring", C::allowed, kPure},
    {"subtype", C::allowed, kPure},
    {"sum", C::allowed, kAggregate},
    {"tan", C::refused, kLibm},
    {"tanh", C::refused, kLibm},
    {"time", C::pinned, kNow},
    {"total", C::allowed, kAggregate},
    {"total_changes", C::pinned, kTotalChanges},
    {"trim", C::allowed, kPure},
    {"trunc", C::allowed, kExactFloat},
    {"typeof", C::allowed, kPure},
    {"unicode", C::allowed, kPure},
    {"unixepoch", C::pinned, kNow},
    {"unlikely", C::allowed, kPure},
    {"upper", C::allowed, kAsciiCase},
    {"zeroblob", C::allowed, "a blob of N zero bytes (N up to the fixed SQLITE_LIMIT_LENGTH)"},
};

bool sorted_once() {
  static const bool sorted = std::is_sorted(
      std::begin(kPolicies), std::end(kPolicies),
      [](const FunctionPolicy& a, const FunctionPolicy& b) { return a.name < b.name; });
  return sorted;
}

}  // namespace

std::string_view function_class_name(FunctionClass c) {
  switch (c) {
    case FunctionClass::allowed:
      return "allowed";
    case FunctionClass::pinned:
      return "pinned";
    case FunctionClass::refused:
      return "refused";
  }
  return "?";
}

std::span<const FunctionPolicy> function_policies() { return kPolicies; }

const FunctionPolicy* find_function_policy(std::string_view name) {
  std::string lower(name);
  for (char& ch : lower) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  if (sorted_once()) {
    auto it = std::lower_bound(std::begin(kPolicies), std::end(kPolicies), lower,
                               [](const FunctionPolicy& p, const std::string& n) { return p.name < n; });
    if (it != std::end(kPolicies) && it->name == lower) return &*it;
    return nullptr;
  }
  for (const FunctionPolicy& p : kPolicies) {
    if (p.name == lower) return &p;
  }
  return nullptr;
}

std::string function_refusal(std::string_view name, std::string_view reason, std::string_view where) {
  std::string s;
  s.append(name).append("() is not allowed in replicated writes").append(where).append(": ");
  s.append(reason).append(" (docs/determinism.md)");
  return s;
}

Result<std::vector<SqlFunction>> list_functions(sqlite3* db) {
  SWL_ASSIGN(SqliteStmt st,
             prepare(db, "SELECT name, narg, type, flags, builtin FROM pragma_function_list "
                         "ORDER BY name, narg"));
  std::vector<SqlFunction> out;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    SqlFunction f;
    const auto* n = sqlite3_column_text(st.get(), 0);
    f.name = n ? reinterpret_cast<const char*>(n) : "";
    f.narg = sqlite3_column_int(st.get(), 1);
    const auto* t = sqlite3_column_text(st.get(), 2);
    f.type = t && t[0] ? static_cast<char>(t[0]) : 's';
    f.flags = sqlite3_column_int(st.get(), 3);
    f.builtin = sqlite3_column_int(st.get(), 4) != 0;
    out.push_back(std::move(f));
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, "reading PRAGMA function_list");
  return out;
}

}  // namespace swarmlite
