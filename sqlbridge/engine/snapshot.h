// Consistent reads of a primary's or replica's database while it keeps writing.
//
// Lock protocol (there is no lock): a ReadSnapshot is a read-only connection
// inside an open read transaction (WAL snapshot isolation), plus the applied
// size it sees, read from sqlite_swarmlite inside that same transaction — so the
// state the connection reads is exactly the state after entry size-1, whose
// state root and page count come from the writer's RecentRoots. The writer
// never waits for readers and readers never see a half-applied entry.
// Keep snapshots short: an open snapshot stops checkpoints from finishing.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <utility>

#include "core/bytes.h"
#include "core/result.h"
#include "sqlbridge/engine/page_vfs.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {

// Which state a snapshot sees.
struct SnapshotState {
  uint64_t size = 0;        // entries applied in the state it sees (applied_seq + 1)
  Hash32 state_root{};      // state root after entry size-1
  uint32_t page_count = 0;
};

struct ReadSnapshot {
  SqliteDb db;              // read-only, inside BEGIN …; run queries on it, then drop it
  SnapshotState state;
};

// The state roots of the last few applied sizes, for snapshots. Thread-safe.
class RecentRoots {
 public:
  explicit RecentRoots(size_t capacity = 4096) : capacity_(capacity) {}
  void record(uint64_t size, const Hash32& root, uint32_t page_count);
  std::optional<std::pair<Hash32, uint32_t>> find(uint64_t size) const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::deque<std::pair<uint64_t, std::pair<Hash32, uint32_t>>> items_;  // increasing size
};

// The protocol on any read-only connection `db` (any VFS, e.g. a
// GuardedConnection's handle) that is not in a transaction: BEGIN, read
// sqlite_swarmlite.applied_seq (this read starts the WAL snapshot), look the root up.
// The connection must allow BEGIN and a SELECT of sqlite_swarmlite. On error the
// transaction is ended again. Finish with end_snapshot(db) (COMMIT).
Result<SnapshotState> begin_snapshot(sqlite3* db, const RecentRoots& roots);
Status end_snapshot(sqlite3* db);
// The same for a plain read that needs no state root: BEGIN, read the applied
// size (the snapshot is fixed from here). Never fails because the writer moved
// on. Finish with end_snapshot(db).
Result<uint64_t> begin_read(sqlite3* db);

// begin_read() and end_snapshot() for a connection that reads again and again
// (a pooled reader): BEGIN, the read of applied_seq and COMMIT are prepared on
// the first use and reused, where begin_read() parses them per call and checks
// sqlite_schema too — together more work than a point query
// (docs/performance.md "Plain reads"). Answers and errors are those of
// begin_read() / end_snapshot(). For connection `db` only; destroy it before
// that connection is closed. One thread at a time.
class ReadTxn {
 public:
  explicit ReadTxn(sqlite3* db) : db_(db) {}
  Result<uint64_t> begin();
  Status end();

 private:
  sqlite3* db_;
  SqliteStmt begin_, applied_, commit_;
};

// Opens a reader on `db_path` (through the swarmlite VFS, `capture` may be null),
// begins a read transaction, reads the applied size and looks its root up.
// unavailable when the root is no longer (or not yet) in `roots`.
Result<ReadSnapshot> open_snapshot(const std::filesystem::path& db_path, const RecentRoots& roots,
                                   const ReadCapture* capture);

}  // namespace swarmlite
