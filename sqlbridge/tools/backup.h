// Backups (`GET /db/backup`, `swarmlite backup`; docs/http-api.md "Backups").
//
// make_backup() writes the state of a read snapshot (snapshot.h) that sits at
// exactly the size of a signed head into an anonymous temporary file:
//  - BackupFormat::sqlite: an SQLite database file whose state root (the state
//    tree over its pages, docs/formats/state-tree.md) is the head's state_root
//    and whose page count is the head's page_count — checked here before the
//    file is handed out, so a receiver holding the public key can check it too
//    (verify_backup_file);
//  - BackupFormat::sql: a SQL text dump of the same state (schema + INSERTs in
//    one transaction, like `sqlite3 .dump`), without sqlite_swarmlite. A dump
//    cannot be checked against the head; only the file can.
// How the file's pages equal the snapshot's: sqlite3_backup copies every page
// of the snapshot's read transaction (source pages are copied verbatim) and
// then rewrites, in page 1, the header fields the state tree normalises (change
// counter, version-valid-for, SQLite version, WAL flag) and the schema cookie
// (bytes 40–43, which sqlite3_backup sets to the destination's cookie + 1): the
// snapshot's own cookie is written back.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>

#include "core/file_io.h"
#include "core/head.h"
#include "core/keys.h"
#include "core/result.h"
#include "sqlbridge/engine/snapshot.h"

namespace swarmlite {

enum class BackupFormat { sqlite, sql };

// Where the state comes from: the owner's newest signed head and a snapshot of
// its current state (Primary or Replica). sign_head (may be empty: replicas)
// is called when the snapshot is ahead of every signed head (group signing).
struct BackupSource {
  std::function<std::optional<Head>()> head;
  std::function<Result<ReadSnapshot>()> open_snapshot;
  std::function<Status()> sign_head;
};

struct BackupOptions {
  BackupFormat format = BackupFormat::sqlite;
  // Directory for the temporary file (unlinked as soon as it is written; it
  // needs room for a copy of the database). Usually the database's own.
  std::filesystem::path temp_dir;
  // The whole backup (finding a head, copying, checking) must end by then
  // (Errc::unavailable); the snapshot is released at once either way.
  std::chrono::steady_clock::time_point deadline =
      std::chrono::steady_clock::now() + std::chrono::minutes(10);
  // Set (from any thread) to stop early, as at the deadline (a server stopping).
  const std::atomic<bool>* cancel = nullptr;
};

struct BackupFile {
  file_io::Fd fd;   // read-only view of the (already unlinked) file, at offset 0
  uint64_t bytes = 0;
  Head head;        // the signed head the state is exactly that of
};

// Errors: unavailable (no signed head yet, or none matched a snapshot before
// the deadline, or the time bound reached), io_error (temporary file), internal (the copy's
// state root differs from the head's: a bug, never served).
Result<BackupFile> make_backup(const BackupSource& source, const BackupOptions& options);

// What a receiver checks: `head` verifies under `log_id`, and the database
// file at `db_path` (no -wal beside it is expected; one would be overlaid as
// SQLite would) has exactly head.state_root and head.page_count. The error
// names what differs (Errc::bad_signature, root_mismatch).
struct BackupCheck {
  Hash32 state_root{};
  uint32_t page_count = 0;
  uint64_t bytes = 0;
};
Result<BackupCheck> verify_backup_file(const std::filesystem::path& db_path, const Head& head,
                                       const PublicKey& log_id);

// The SQL dump of the state `db` reads (inside its read transaction) written
// to `fd`. Exposed for tests.
Status write_sql_dump(sqlite3* db, int fd, const std::filesystem::path& fd_name,
                      std::chrono::steady_clock::time_point deadline,
                      const std::atomic<bool>* cancel = nullptr);

}  // namespace swarmlite
