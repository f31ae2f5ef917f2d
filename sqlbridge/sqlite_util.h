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

// "<what>: <sqlite3_errmsg> (code N)", as Errc::io_error when the code is the
// node's own trouble (is_local_sqlite_error) and Errc::sqlite_error otherwise.
Error sqlite_error(sqlite3* db, std::string_view what);

// True if SQLite's (extended) result code `code` is the node's own trouble — an
// I/O error, the disk full, out of memory, busy — rather than the statement's:
// callers report it as a local fault, never as bad SQL or bad data
// (docs/operations.md "Local faults"). SQLITE_FULL counts only if a file write
// on this thread found the disk full since clear_disk_full_seen() (see below):
// SQLite says the same "database or disk is full" when a table has used up its
// rowids (AUTOINCREMENT past 2^63-1, or no free random rowid), and that is the
// statement's own error, the same on every node.
bool is_local_sqlite_error(int code);

// The page VFS (page_vfs.cpp) calls note_disk_full() when a write it forwards
// returns SQLITE_FULL; run_entry clears it when an entry starts. Per thread:
// SQLite calls the VFS on the thread that steps the statement.
void note_disk_full();
void clear_disk_full_seen();
bool disk_full_seen();

// Opens `uri_or_path` with sqlite3_open_v2(flags | SQLITE_OPEN_URI).
Result<SqliteDb> open_sqlite(const std::string& uri_or_path, int flags, const char* vfs = nullptr);

// Runs SQL text with no parameters and no result rows expected (pragmas, BEGIN/COMMIT).
Status exec_sql(sqlite3* db, std::string_view sql);

// Pages the connection wrote to its -wal file so far, spills and commits
// (SQLITE_DBSTATUS_CACHE_WRITE).
int cache_writes(sqlite3* db);

// Prepares exactly one statement; `tail` (if not null) receives the unparsed rest.
Result<SqliteStmt> prepare(sqlite3* db, std::string_view sql, std::string_view* tail = nullptr);

// Runs a fixed statement without rows (BEGIN, COMMIT, …) kept in `stmt`:
// prepared from `sql` on the first call, stepped to SQLITE_DONE and reset.
// Errors name `sql` (io_error for the node's own trouble, is_local_sqlite_error).
Status step_kept(sqlite3* db, SqliteStmt& stmt, const char* sql);

// How bind_values hands strings and blobs to SQLite.
enum class BindCopy {
  copy,    // SQLITE_TRANSIENT: SQLite copies them; params may go at once
  borrow,  // SQLITE_STATIC: no copy; params must stay alive and unchanged until
           // the statement is reset and its bindings cleared, or finalized
};
// How bind_values binds an empty blob parameter.
enum class EmptyBlob {
  empty,  // the empty blob x'', as SQLite's own API binds a non-null pointer
  null,   // NULL: what a format 2 log's replicas did (a decoded empty vector's
          // data() is null), kept for format 2 logs (docs/determinism.md
          // "Empty blob parameters")
};
// Binds params[i] to parameter i+1. invalid_argument when the count differs.
Status bind_values(sqlite3_stmt* stmt, const std::vector<Value>& params,
                   BindCopy how = BindCopy::copy, EmptyBlob empty_blob = EmptyBlob::empty);
// The value of column `col` of the current row.
Value column_value(sqlite3_stmt* stmt, int col);

// `name` as a double-quoted SQL identifier ("a""b" for a"b).
std::string quote_ident(std::string_view name);
// `s` with ASCII letters lower-cased (SQLite's identifier folding).
std::string lower_ascii(std::string_view s);
// `s`, or "" when it is null (SQLite's column and name getters may return null).
inline const char* or_empty(const char* s) { return s ? s : ""; }

// True when `sql` holds nothing but whitespace, comments and semicolons.
bool is_blank_sql(std::string_view sql);
// The first keyword of `sql` after whitespace and comments, upper-cased ("" if none).
std::string leading_keyword(std::string_view sql);
// True when `word` (given in lower case) occurs anywhere in `sql`, in any case:
// SQL naming a table or pragma (an identifier cannot be split or computed).
bool mentions_ci(std::string_view sql, std::string_view word);
// Index of the first character of `s` that is not whitespace or inside a
// comment (-- … or /* … */); also skips semicolons when `skip_semicolons`.
size_t skip_space_and_comments(std::string_view s, bool skip_semicolons = false);

// Strongly connected groups of the graph node → edges[node] (Tarjan), each
// group's nodes ascending, groups ordered so that every group comes after the
// groups its edges lead to (for child → parent foreign key edges: parents
// first). Used to copy tables in foreign key order (import, SQL scripts).
std::vector<std::vector<size_t>> dependency_groups(const std::vector<std::vector<size_t>>& edges);

}  // namespace swarmlite
