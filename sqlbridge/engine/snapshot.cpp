#include "sqlbridge/engine/snapshot.h"

#include "sqlbridge/engine/determinism.h"

namespace swarmlite {

void RecentRoots::record(uint64_t size, const Hash32& root, uint32_t page_count) {
  std::lock_guard lock(mu_);
  // Sizes only grow, except that a replica never records out of order.
  while (!items_.empty() && items_.back().first >= size) items_.pop_back();
  items_.emplace_back(size, std::make_pair(root, page_count));
  while (items_.size() > capacity_) items_.pop_front();
}

std::optional<std::pair<Hash32, uint32_t>> RecentRoots::find(uint64_t size) const {
  std::lock_guard lock(mu_);
  for (auto it = items_.rbegin(); it != items_.rend(); ++it) {
    if (it->first == size) return it->second;
    if (it->first < size) break;
  }
  return std::nullopt;
}

Result<SnapshotState> begin_snapshot(sqlite3* db, const RecentRoots& roots) {
  SWL_TRY(exec_sql(db, "BEGIN"));
  auto size = read_applied_size(db);  // the first read: fixes the WAL snapshot
  if (!size.ok()) {
    (void)end_snapshot(db);
    return size.take_error();
  }
  auto found = roots.find(*size);
  if (!found) {
    (void)end_snapshot(db);
    return make_error(Errc::unavailable, "no state root known for size {} (snapshot too old or too new)",
                      *size);
  }
  return SnapshotState{*size, found->first, found->second};
}

Result<uint64_t> begin_read(sqlite3* db) {
  SWL_TRY(exec_sql(db, "BEGIN"));
  auto size = read_applied_size(db);
  if (!size.ok()) (void)end_snapshot(db);
  return size;
}

Result<uint64_t> ReadTxn::begin() {
  SWL_TRY(step_kept(db_, begin_, "BEGIN"));
  auto size = read_applied_size(db_, applied_);
  if (!size.ok()) (void)end();
  return size;
}

Status ReadTxn::end() {
  if (sqlite3_get_autocommit(db_)) return ok_status();
  return step_kept(db_, commit_, "COMMIT");
}

Status end_snapshot(sqlite3* db) {
  if (sqlite3_get_autocommit(db)) return ok_status();
  return exec_sql(db, "COMMIT");
}

Result<ReadSnapshot> open_snapshot(const std::filesystem::path& db_path, const RecentRoots& roots,
                                   const ReadCapture* capture) {
  SWL_ASSIGN(SqliteDb db, open_reader(db_path, capture));
  SWL_ASSIGN(SnapshotState state, begin_snapshot(db.get(), roots));
  return ReadSnapshot{std::move(db), state};
}

}  // namespace swarmlite
