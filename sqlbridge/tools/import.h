// Importing an existing app database into a fresh primary (docs/operations.md,
// "Importing an app database"). The source file is read inside one read
// transaction (a consistent snapshot, never written). Its schema and rows
// become ordinary log entries, so every peer rebuilds the same database by
// replay:
//   0. checks first, before anything is written: the source passes
//      PRAGMA quick_check (a truncated or torn file fails here, not half way
//      through its rows) and PRAGMA foreign_key_check (swarmlite enforces foreign keys), has no
//      virtual table but fts5 and no contentless fts5 table;
//   1. one entry with the tables (ordinary and virtual) and views, in the
//      source's sqlite_schema order (SQLite accepts references to tables
//      created later), plus fts5 settings (pgsz, automerge, …);
//   2. row entries, tables in foreign-key order (parents first; strongly
//      connected groups of tables — cycles, self-references — together):
//      multi-row INSERTs with bound params (storage class kept), rowids kept,
//      generated and hidden columns left to SQLite, each entry bounded by
//      ImportOptions (bytes and rows). Inside a cycle, the foreign key columns
//      that close it are inserted as NULL and set by UPDATEs once the whole
//      group is in; a cycle through NOT NULL or key columns goes in one entry
//      under PRAGMA defer_foreign_keys (at most kMaxDeferredGroupBytes);
//      external-content fts5 tables are rebuilt from their content table;
//   3. one entry with the AUTOINCREMENT counters (sqlite_sequence copied
//      exactly), the indexes and the triggers — created after the rows so
//      triggers do not fire on import.
// Internal tables (sqlite_%, shadow tables of virtual tables) are not copied;
// sqlite_stat* statistics are dropped (run ANALYZE later if wanted).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "sqlbridge/engine/primary.h"

namespace swarmlite {

struct ImportProgress {
  std::string table;        // table being copied ("" for schema steps)
  uint64_t rows_done = 0;   // rows copied so far, all tables
  uint64_t rows_total = 0;  // rows to copy, all tables
  uint64_t entries = 0;     // entries written so far
};

struct ImportOptions {
  size_t max_entry_bytes = 4 << 20;    // approximate size cap of one row entry
  size_t max_rows_per_entry = 20000;
  std::function<void(const ImportProgress&)> progress;  // called after each entry
  // Called before each entry is written; an error stops the import there
  // (a deadline, a server stopping: POST /db/load). Unset: never stops.
  std::function<Status()> before_entry;
  // The entries' time and page bounds; unset: the primary's own.
  std::optional<WriteBounds> bounds;
  // Tests only: called after each entry; an error stops the import there.
  std::function<Status(const ImportProgress&)> test_hook;
};

// A foreign key cycle through NOT NULL (or key) columns is copied in one entry
// with deferred foreign key checks; larger than this, the import is refused.
inline constexpr size_t kMaxDeferredGroupBytes = 14 << 20;

struct ImportStats {
  uint64_t tables = 0;
  uint64_t rows = 0;
  uint64_t entries = 0;
  uint64_t indexes = 0;
  uint64_t views = 0;
  uint64_t triggers = 0;
  uint64_t stat1_rows = 0;  // planner statistics carried over (sqlite_stat1)
};

struct TableCount {
  std::string table;
  uint64_t source_rows = 0, imported_rows = 0;
};

// What import_new_primary checks on the finished database.
struct ImportCheck {
  std::string integrity;            // PRAGMA integrity_check: "ok" when sound
  uint64_t foreign_key_violations = 0;  // rows PRAGMA foreign_key_check reports
  std::vector<TableCount> tables;   // every copied table, source vs imported
  std::vector<std::string> problems;  // empty when everything holds
  bool ok() const { return problems.empty(); }
};

// Copies `source` into `primary`, which must hold nothing but genesis (size 1).
// invalid_argument when the primary already holds user entries or the source
// cannot be read; the first failing entry's error otherwise (entries before it
// stay in that primary's log: import_new_primary below is the all-or-nothing form;
// the message says which table and row it stopped at).
Result<ImportStats> import_database(const std::filesystem::path& source, Primary& primary,
                                    const ImportOptions& options = {});

// Runs integrity_check and foreign_key_check on `imported` (a closed primary's
// database) and compares the row count of every table copied from `source`.
Result<ImportCheck> check_import(const std::filesystem::path& source,
                                 const std::filesystem::path& imported);

struct ImportResult {
  ImportStats stats;
  ImportCheck check;
  std::optional<Head> head;
};

// `swarmlite import`: builds a new primary for `db_path` (log in
// options.log_dir or the default) from `source`, all or nothing. The primary
// is built under temporary names beside the targets ("<db>.importing-<pid>",
// "<log>.importing-<pid>"), closed, checked with check_import, and only then
// renamed into place (log directory first, then the database). On any error
// the temporary files are removed and the targets never exist, so a second
// run starts clean and `swarmlite primary` never opens half an import.
// invalid_argument when the database or the log directory already exists.
Result<ImportResult> import_new_primary(const std::filesystem::path& source,
                                        const std::filesystem::path& db_path, const SecretKey& key,
                                        PrimaryOptions primary_options = {},
                                        const ImportOptions& options = {});

}  // namespace swarmlite
