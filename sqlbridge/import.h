// Importing an existing app database into a fresh primary (issue 3, docs/import.md).
// The source file is read inside one read transaction (a consistent snapshot,
// never written). Its schema and rows become ordinary log entries, so every peer
// rebuilds the same database by replay:
//   1. one entry with the tables (ordinary and virtual) and views, in the
//      source's sqlite_schema order;
//   2. row entries per table: multi-row INSERTs with bound params, rowids kept
//      (rowid tables), generated and hidden columns left to SQLite, each entry
//      bounded by ImportOptions (bytes and rows);
//   3. one entry with AUTOINCREMENT counters (sqlite_sequence), the indexes and
//      the triggers — created after the rows so triggers do not fire on import.
// Internal tables (sqlite_%, shadow tables of virtual tables) are not copied;
// sqlite_stat* statistics are dropped (run ANALYZE later if wanted).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "core/result.h"
#include "sqlbridge/primary.h"

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
};

struct ImportStats {
  uint64_t tables = 0;
  uint64_t rows = 0;
  uint64_t entries = 0;
  uint64_t indexes = 0;
  uint64_t views = 0;
  uint64_t triggers = 0;
};

// Copies `source` into `primary`, which must hold nothing but genesis (size 1).
// invalid_argument when the primary already holds user entries or the source
// cannot be read; the first failing entry's error otherwise (entries before it
// stay in the log: the import is not atomic across entries — the message says
// which table and row it stopped at).
Result<ImportStats> import_database(const std::filesystem::path& source, Primary& primary,
                                    const ImportOptions& options = {});

}  // namespace swarmlite
