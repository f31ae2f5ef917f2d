// The genesis entry (seq 0): the one entry every log starts with. Made by one
// function so the primary writes it and every replica checks it byte for byte.
// It creates the metadata table and records what a replica must match:
//   _swarmlite(k TEXT PRIMARY KEY, v)
//     format_version  kFormatVersion
//     sqlite_version  sqlite3_libversion() of the primary
//     page_size       4096
//     settings        kFixedSettings (determinism.h)
//     applied_seq     the seq of the last entry applied (updated by every entry)
// User SQL may read _swarmlite but never write it (authorizer).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/entry.h"
#include "core/result.h"

namespace swarmlite {

inline constexpr int64_t kFormatVersion = 1;
inline constexpr std::string_view kMetaTable = "_swarmlite";

// The statements of the genesis entry for a primary running `sqlite_version`.
std::vector<Statement> genesis_statements(std::string_view sqlite_version);
// ... for this process's SQLite (sqlite3_libversion()).
std::vector<Statement> genesis_statements();

// Checks that `entry` is a genesis entry this process can replay: seq 0 and
// statements exactly genesis_statements(). bad_version naming both SQLite
// versions (or both format versions) when only those differ; bad_value when
// the entry is not a swarmlite genesis at all.
Status check_genesis(const Entry& entry);

}  // namespace swarmlite
