// Running a SQL script (a file of statements, e.g. `sqlite3 app.db .dump`) on a
// primary: `swarmlite exec -f FILE` (docs/operations.md, "Running SQL scripts").
//
// The text is split exactly where the sqlite3 shell splits it: at each ';' that
// sqlite3_complete() says ends a statement (so triggers' BEGIN … END bodies,
// strings and comments holding ';' stay whole). Every statement is checked
// before anything runs; then the statements run as ordinary logged write
// transactions, at most `max_statements` statements / `max_bytes` of SQL each
// (or all in one with `single_transaction`).
//
// What `.dump` writes and what happens to it:
//   BEGIN [TRANSACTION], COMMIT, END      skipped: swarmlite owns the transactions
//   PRAGMA foreign_keys=OFF (0/false/no)  skipped; every following transaction starts
//                                         with PRAGMA defer_foreign_keys=ON, so rows may
//                                         come before the rows they reference. A
//                                         transaction whose deferred checks fail at
//                                         COMMIT is retried merged with the next one,
//                                         until the references are inside it. In such a
//                                         stretch without DROP/ALTER/savepoints, plain
//                                         CREATE TABLE statements run first (SQLite with
//                                         foreign keys on cannot insert into a child whose
//                                         parent table does not exist yet)
//   PRAGMA foreign_keys=ON (1/true/yes)   skipped; immediate checks again
//   DELETE FROM / INSERT INTO sqlite_sequence  run as written (AUTOINCREMENT counters)
//   ANALYZE sqlite_schema, INSERT INTO sqlite_stat1  run as written
// Refused before anything runs (the message names the line):
//   ROLLBACK (not ROLLBACK TO)            the script asks to undo itself (.dump writes it
//                                         when the source was unreadable)
//   PRAGMA writable_schema, writing sqlite_schema/sqlite_master
//                                         how .dump writes virtual tables (fts5): use
//                                         `swarmlite import` for such a database
//   any other PRAGMA but defer_foreign_keys and the read-only schema ones
//                                         settings are fixed (docs/determinism.md)
// Everything else goes to the primary, which refuses what cannot replay
// deterministically (docs/determinism.md); the error names the statement's
// line. Without single_transaction, transactions committed before a failing
// one stay committed (the error says how many statements and up to which line).
// A SAVEPOINT … RELEASE pair is never cut across transactions.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "sqlbridge/engine/primary.h"

namespace swarmlite {

struct ScriptStatement {
  std::string sql;   // one statement, with its ';'
  size_t line = 0;   // 1-based line of its first token
};

// Splits `text` into statements as the sqlite3 shell does. Comment-only and
// empty statements are dropped. A trailing statement without ';' is accepted
// when it is complete with one; otherwise invalid_argument naming its line.
Result<std::vector<ScriptStatement>> split_sql_script(std::string_view text);

struct ScriptOptions {
  size_t max_statements = 1000;   // per transaction
  size_t max_bytes = 4 << 20;     // SQL text per transaction (approximate)
  bool single_transaction = false;
  // Called after each committed transaction with (statements done, total).
  std::function<void(uint64_t, uint64_t)> progress;
  // Called before each transaction runs; an error stops the script there, as
  // a failing statement would (a deadline, a server stopping: POST /db/load).
  std::function<Status()> before_entry;
  // The transactions' time and page bounds; unset: the primary's own.
  std::optional<WriteBounds> bounds;
};

struct ScriptStats {
  uint64_t statements = 0;    // statements run
  uint64_t skipped = 0;       // BEGIN/COMMIT/PRAGMA foreign_keys lines skipped
  uint64_t transactions = 0;  // entries written
  uint64_t retries = 0;       // transactions merged with the next for deferred foreign keys
};

// Runs `text` on `primary`. Errors: invalid_argument / refused (before anything
// ran) naming the line; else the failing statement's error prefixed with
// "line N: <statement>" and what was committed before it.
Result<ScriptStats> run_sql_script(Primary& primary, std::string_view text, const ScriptOptions& options = {});

}  // namespace swarmlite
