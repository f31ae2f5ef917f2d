// Log retention of a running node (`--retain N`, docs/operations.md
// "Compacting a log"): now and then the node drops the log entries older than
// its newest N, whole segments at a time (Log::compact), within bounds that
// keep it restartable and keep every dropped entry covered by a signed head:
//   primary: keep_from <= the stored head's size (the checkpoint records a
//            signed head at or past it) and <= the entries its database holds
//            durably (open() replays the log from the database's applied size);
//   peer:    keep_from <= its applied size - 1 (every dropped entry applied,
//            and the entry the database is at stays, which Replica::open checks
//            the database against) and <= the stored head's size.
// Before reading the applied size as durable, both fsync the database file
// and its -wal (synchronous=NORMAL commits are not synced by themselves, so a
// power loss could otherwise take the database back behind the log's start).
#pragma once

#include <cstdint>
#include <filesystem>

#include "core/log_store.h"
#include "core/result.h"

namespace swarmlite {

class Primary;
class Replica;

// The first entry a retention of `retain` entries keeps of a log of
// `log_size` entries: log_size - retain, never past `bound`. 0 (drop nothing)
// when retain is 0 (keep everything) or the log holds at most `retain`.
uint64_t retention_keep_from(uint64_t log_size, uint64_t retain, uint64_t bound);

// What one retention round did: the keep_from it asked for (after the bounds)
// and the log's first entry before and after (dropped.entries == after - before).
struct LogCompaction {
  uint64_t keep_from = 0;
  uint64_t first_before = 0;
  uint64_t first_after = 0;
  DropStats dropped;
};

// fsyncs the database file at `db` and its "-wal" file (when there is one), so
// that every transaction committed before the call survives a power loss.
Status sync_database_files(const std::filesystem::path& db);

// `keep_at_most` bounds keep_from further: a node holding a snapshot at head H
// for fetchers passes H - 1, the entry their frontier needs (SnapshotSource::
// oldest_held; docs/operations.md "Retention while running").
//
// One retention round on a running primary (Primary::compact_log). Any thread
// but one that holds the primary's locks; waits for a running write group.
Result<LogCompaction> compact_primary_log(Primary& primary, uint64_t retain,
                                          uint64_t keep_at_most = UINT64_MAX);
// One retention round on a running peer: under Replica::log_mutex(), so it
// cannot race the node storing entries, the applier reading them or a peer
// being served from the log. Any thread.
Result<LogCompaction> compact_replica_log(Replica& replica, uint64_t retain,
                                          uint64_t keep_at_most = UINT64_MAX);

}  // namespace swarmlite
