// The genesis entry (seq 0): the one entry every log starts with. Made by one
// function so the primary writes it and every replica checks it byte for byte.
// It creates the metadata table and records what a replica must match:
//   sqlite_swarmlite(k TEXT PRIMARY KEY, v)
//     format_version  kFormatVersion (kOldestFormatVersion.. in older logs)
//     sqlite_version  sqlite3_libversion() of the primary
//     page_size       4096
//     settings        kFixedSettings (connection_settings.h)
//     applied_seq     the seq of the last entry applied (updated by every entry;
//                     inside a format 4 or 5 entry, x'5357504144' until its end)
// User SQL may read sqlite_swarmlite but never write it (authorizer).
//
// The table lives in SQLite's reserved sqlite_ namespace, so ORMs and tools
// that list a database's tables (SQLAlchemy, Django, the sqlite3 shell's
// .dump, ...) skip it, and SQLite itself refuses to drop, alter, index or put
// a trigger on it. Creating a sqlite_ name needs writable_schema, which the
// genesis entry turns on for its CREATE statement alone (determinism.cpp,
// docs/determinism.md "Genesis"). Format 1 called the table _swarmlite; such
// a log or database is refused with bad_version.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/entry.h"
#include "core/result.h"

namespace swarmlite {

// The format a new log is written in. Format 3 binds an empty blob parameter
// as the empty blob x''; format 2 bound it as NULL (docs/determinism.md
// "Empty blob parameters"). Format 4 pads the cell buffer at the start of an
// entry by writing applied_seq, where formats 2 and 3 inserted a row and
// rolled it back (docs/determinism.md "Cell padding"): an entry writes one
// page fewer. Format 5 keeps the planner statistics SQLite holds in memory
// equal to the file's, and runs ANALYZE and REINDEX on a schema read afresh
// (docs/determinism.md "Planner statistics"). An older log is still replayed
// and continued with its own format's rules, so its state roots stay what
// they were.
inline constexpr int64_t kFormatVersion = 5;
inline constexpr int64_t kOldestFormatVersion = 2;
inline constexpr std::string_view kMetaTable = "sqlite_swarmlite";
// The genesis statement that creates kMetaTable (the only statement ever run
// with writable_schema on).
inline constexpr std::string_view kCreateMetaSql = "CREATE TABLE sqlite_swarmlite(k TEXT PRIMARY KEY, v)";
// Format 1's metadata table and the exact SQL that created it: a database that
// has it is refused (bad_version) with a message saying how to carry the data
// over. Any other table of that name is an ordinary user table.
inline constexpr std::string_view kLegacyMetaTable = "_swarmlite";
inline constexpr std::string_view kLegacyCreateMetaSql = "CREATE TABLE _swarmlite(k TEXT PRIMARY KEY, v)";

// The statements of the genesis entry for a primary running `sqlite_version`
// (a log in `format_version`: kFormatVersion for every new log).
std::vector<Statement> genesis_statements(std::string_view sqlite_version,
                                          int64_t format_version = kFormatVersion);
// ... for this process's SQLite (sqlite3_libversion()).
std::vector<Statement> genesis_statements();

// Checks that `entry` is a genesis entry this process can replay: seq 0 and
// statements exactly genesis_statements() of this build's SQLite, in format
// kOldestFormatVersion to kFormatVersion. bad_version naming both SQLite
// versions (or both format versions: a format 1 genesis, which created
// _swarmlite, among them) when only those differ; bad_value when the entry is
// not a swarmlite genesis at all.
Status check_genesis(const Entry& entry);

}  // namespace swarmlite
