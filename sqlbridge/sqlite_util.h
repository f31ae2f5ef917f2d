// Small RAII wrappers over the SQLite C API and the Value <-> SQLite mapping
// shared by the primary, the replica and the read paths. Nothing here knows
// about entries or determinism (see determinism.h for that).
#pragma once

#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/entry.h"
#include "core/result.h"

namespace swarmlite {

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
// An owned connection / prepared statement. Closing a connection with live
// statements is safe (sqlite3_close_v2 defers), but finalize statements first.
using SqliteDb = std::unique_ptr<sqlite3, SqliteCloser>;
using SqliteStmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Errc::sqlite_error "<what>: <sqlite3_errmsg> (code N)".
Error sqlite_error(sqlite3* db, std::string_view what);

// Opens `uri_or_path` with sqlite3_open_v2(flags | SQLITE_OPEN_URI).
Result<SqliteDb> open_sqlite(const std::string& uri_or_path, int flags, const char* vfs = nullptr);

// Runs SQL text with no parameters and no result rows expected (pragmas, BEGIN/COMMIT).
Status exec_sql(sqlite3* db, std::string_view sql);

// Prepares exactly one statement; `tail` (if not null) receives the unparsed rest.
Result<SqliteStmt> prepare(sqlite3* db, std::string_view sql, std::string_view* tail = nullptr);

// Binds params[i] to parameter i+1. invalid_argument when the count differs.
Status bind_values(sqlite3_stmt* stmt, const std::vector<Value>& params);
// The value of column `col` of the current row.
Value column_value(sqlite3_stmt* stmt, int col);

// True when `sql` holds nothing but whitespace, comments and semicolons.
bool is_blank_sql(std::string_view sql);
// The first keyword of `sql` after whitespace and comments, upper-cased ("" if none).
std::string leading_keyword(std::string_view sql);
// Index of the first character of `s` that is not whitespace or inside a
// comment (-- … or /* … */); also skips semicolons when `skip_semicolons`.
size_t skip_space_and_comments(std::string_view s, bool skip_semicolons = false);

// Strongly connected groups of the graph node → edges[node] (Tarjan), each
// group's nodes ascending, groups ordered so that every group comes after the
// groups its edges lead to (for child → parent foreign key edges: parents
// first). Used to copy tables in foreign key order (import, SQL scripts).
std::vector<std::vector<size_t>> dependency_groups(const std::vector<std::vector<size_t>>& edges);

}  // namespace swarmlite
