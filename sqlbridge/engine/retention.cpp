// Log retention of a running node: see retention.h.
#include "sqlbridge/engine/retention.h"

#include <fcntl.h>

#include <algorithm>
#include <mutex>

#include "core/file_io.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/replica.h"

namespace swarmlite {

uint64_t retention_keep_from(uint64_t log_size, uint64_t retain, uint64_t bound) {
  if (retain == 0 || log_size <= retain) return 0;
  return std::min(log_size - retain, bound);
}

Status sync_database_files(const std::filesystem::path& db) {
  std::filesystem::path wal = db;
  wal += "-wal";
  // fsync on a descriptor of our own flushes the file's pages whoever wrote
  // them (SQLite's connections in this process). The main file's is a kept
  // one: closing a descriptor of it would drop SQLite's locks (file_io.h).
  for (const auto& path : {wal, db}) {
    auto fd = path == db ? file_io::open_kept(path) : file_io::open(path, O_RDONLY);
    if (!fd.ok()) {
      if (fd.error().code == Errc::not_found && path == wal) continue;  // checkpointed away
      return fd.take_error();
    }
    SWL_TRY(file_io::fsync_file(fd->get(), path));
  }
  return ok_status();
}

Result<LogCompaction> compact_primary_log(Primary& primary, uint64_t retain,
                                          uint64_t keep_at_most) {
  LogCompaction out;
  if (retain == 0) return out;
  const uint64_t size = primary.size();
  // Primary::compact_log applies the head and durability bounds.
  const uint64_t want = retention_keep_from(size, retain, keep_at_most);
  SWL_ASSIGN(out, primary.compact_log(want));
  return out;
}

Result<LogCompaction> compact_replica_log(Replica& replica, uint64_t retain,
                                          uint64_t keep_at_most) {
  LogCompaction out;
  if (retain == 0) return out;
  // Read before the sync: every entry counted here committed before it.
  const uint64_t applied = replica.size();
  if (applied == 0) return out;
  {
    // Nothing to drop: no fsync for a round that does nothing.
    std::lock_guard lock(replica.log_mutex());
    const Log& log = replica.log();
    const uint64_t head_size = log.head() ? log.head()->size : 0;
    if (retention_keep_from(log.size(), retain, std::min({applied - 1, head_size, keep_at_most})) <=
        log.first_entry()) {
      out.first_before = out.first_after = log.first_entry();
      return out;
    }
  }
  SWL_TRY(sync_database_files(replica.db_path()));
  std::lock_guard lock(replica.log_mutex());
  Log& log = replica.log();
  const uint64_t head_size = log.head() ? log.head()->size : 0;
  out.first_before = out.first_after = log.first_entry();
  out.keep_from =
      retention_keep_from(log.size(), retain, std::min({applied - 1, head_size, keep_at_most}));
  if (out.keep_from <= out.first_before) return out;
  SWL_ASSIGN(out.dropped, log.compact(out.keep_from));
  out.first_after = log.first_entry();
  return out;
}

}  // namespace swarmlite
