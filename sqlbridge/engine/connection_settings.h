// The fixed settings of every writing connection (docs/determinism.md
// "Fixed settings" and "Functions"): limits, db_config flags and pragmas set
// and checked, the process time zone, and the connection-level overrides of
// pinned and refused built-in functions.
#pragma once

#include <filesystem>
#include <memory>
#include <string_view>

#include "core/result.h"
#include "sqlbridge/engine/seeded_stream.h"
#include "sqlbridge/sqlite_util.h"
#include "sqlbridge/engine/write_authorizer.h"

namespace swarmlite {

// The settings recorded in genesis (canonical text; any change is a new format).
// Documented one by one in docs/determinism.md.
inline constexpr std::string_view kFixedSettings =
    "page_size=4096;journal_mode=wal;synchronous=normal;secure_delete=on;auto_vacuum=none;"
    "recursive_triggers=on;foreign_keys=on;cache_size=-16384;temp_store=memory;"
    "trusted_schema=off;dqs=off;defensive=on;legacy_file_format=off;tz=UTC;"
    "limits=sqlite-defaults,attached=0,worker_threads=0";

// Sets TZ=UTC for the process (once; setenv + tzset). Called by every open.
void pin_process_timezone();

// Sets and checks the fixed limits, db_config flags and pragmas on a writing
// connection (WAL, page size 4096, auto_vacuum NONE); `path` names the file in
// errors. Errc::internal when this SQLite build cannot hold a setting.
Status apply_fixed_settings(sqlite3* db, const std::filesystem::path& path);

// Creates an empty database file at `path` already in WAL mode with the fixed
// page size and auto_vacuum, atomically: made as PATH-creating, synced, then
// renamed into place and the directory synced. Nothing when `path` exists.
// Why: SQLite switches a new file to WAL through a rollback journal (four
// fdatasyncs); a process killed in between left PATH with a hot -journal that
// no read-only reader can open ("attempt to write a readonly database") until a
// writer rolls it back. Now a kill leaves either no file or a whole one (and a
// stray PATH-creating, replaced by the next attempt). Errors: io_error, sqlite_error.
Status create_database_file(const std::filesystem::path& path);

// Registers the pinned built-ins (random, randomblob from `*running`;
// total_changes counted from the entry's start in `auth`; linear-time instr)
// and overrides every refused or unclassified built-in with one that fails the
// write wherever SQLite evaluates it (function_policy.h).
Status install_function_overrides(sqlite3* db, std::unique_ptr<SeededStream>* running,
                                  WriteAuthState* auth);

}  // namespace swarmlite
