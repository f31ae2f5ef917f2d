// Auditing a log (issue 3, `swarmlite audit`): replay the whole log from
// scratch into a temporary database with the replica's code path, checking
// every entry's state root and the stored signed head, and optionally compare
// a given replica file with the state the log says it should have.
// A compacted log (docs/formats/log-store.md "Checkpoint and compaction")
// starts at entry F > 0: it is replayed from a snapshot at a signed head of
// size A >= F (AuditOptions::snapshot), checked against that head's state root
// and against the log's root at A, so entries [A, end) are checked.
// The log directory is only read; nothing is written to it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/head.h"
#include "core/keys.h"
#include "core/result.h"

namespace swarmlite {

struct AuditOptions {
  // A replica database to compare with the replayed state at its applied size.
  std::optional<std::filesystem::path> replica_db;
  // Where the scratch database goes (a fresh subdirectory is made and removed);
  // empty = the system temp directory.
  std::filesystem::path work_dir;
  // Called every few hundred entries and at the end with (entries replayed, total).
  std::function<void(uint64_t, uint64_t)> progress;
  // Replay from this database file (a plain SQLite file, e.g. from `swarmlite
  // fetch` or `swarmlite backup`), the state at snapshot_head, instead of from
  // genesis. The file is only read (copied into the scratch directory).
  struct Snapshot {
    std::filesystem::path db;
    Head head;
  };
  std::optional<Snapshot> snapshot;
};

struct ReplicaCheck {
  std::filesystem::path path;
  uint64_t applied_size = 0;     // entries the replica says it applied
  Hash32 state_root{};           // computed from its file
  uint32_t page_count = 0;
  bool matches = false;          // equals the replayed state at applied_size
};

struct AuditReport {
  uint64_t entries = 0;              // entries in the log (its size)
  uint64_t first_entry = 0;          // first entry the log holds (> 0 once compacted)
  uint64_t replay_from = 0;          // 0 (genesis) or the snapshot head's size
  uint64_t replayed = 0;             // entries replayed with matching roots, from replay_from
  std::optional<Head> head;          // the stored signed head (verified), if any
  bool head_matches = false;         // head's state root/page count equal the replay's
  Hash32 state_root{};               // after the last replayed entry
  uint32_t page_count = 0;
  std::optional<ReplicaCheck> replica;
  std::vector<std::string> problems;  // empty when everything holds

  bool ok() const { return problems.empty(); }
};

// Errors are for when the audit cannot run (no log there, unreadable files, a
// compacted log without a snapshot: invalid_argument naming its first entry);
// a log, snapshot or replica that fails the checks yields a report with problems.
Result<AuditReport> audit_log(const std::filesystem::path& log_dir, const PublicKey& log_id,
                              const AuditOptions& options = {});

}  // namespace swarmlite
