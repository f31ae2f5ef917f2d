// swarmlite audit: replay a log from scratch and compare (see audit.h).
//
// The log directory is copied into the scratch directory first and opened
// there, so the audit never writes to the original (opening a log may cut a
// torn tail; a copy taken while a writer appends may end in one).
#include "sqlbridge/tools/audit.h"

#include <sqlite3.h>
#include <sodium.h>

#include <fmt/format.h>

#include "core/log.h"
#include "sqlbridge/engine/determinism.h"
#include "sqlbridge/sqlite_util.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/tools/backup.h"

namespace swarmlite {
namespace fs = std::filesystem;
namespace {

// A scratch directory removed on scope exit.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(fs::path p) : path(std::move(p)) {}
  ScratchDir(ScratchDir&& other) noexcept : path(std::exchange(other.path, {})) {}
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

Result<ScratchDir> make_scratch(const fs::path& base_in) {
  std::error_code ec;
  fs::path base = base_in.empty() ? fs::temp_directory_path(ec) : base_in;
  if (ec) return make_error(Errc::io_error, "no temp directory: {}", ec.message());
  uint8_t rnd[8];
  randombytes_buf(rnd, sizeof rnd);
  ScratchDir dir{base / ("swarmlite-audit-" + to_hex(ByteView(rnd, sizeof rnd)))};
  fs::create_directories(dir.path, ec);
  if (ec) return make_error(Errc::io_error, "cannot create {}: {}", dir.path.string(), ec.message());
  return dir;
}

std::string root_text(const Hash32& root, uint32_t pages) {
  return fmt::format("state root {} ({} pages)", to_hex(root), pages);
}

// roots[i] = the state after replay_from + i entries (roots[0]: the snapshot's,
// or nothing from genesis).
Status check_replica(const fs::path& db_path, const std::vector<std::pair<Hash32, uint32_t>>& roots,
                     uint64_t replay_from, AuditReport& report) {
  ReplicaCheck check;
  check.path = db_path;
  if (!fs::exists(db_path)) {
    return make_error(Errc::invalid_argument, "replica database {} does not exist", db_path.string());
  }
  {
    SWL_ASSIGN(SqliteDb db, open_sqlite(db_path.string(), SQLITE_OPEN_READONLY));
    SWL_ASSIGN(check.applied_size, read_applied_size(db.get()));
  }
  SWL_ASSIGN(StateTree tree, StateTree::from_file(db_path));
  check.state_root = tree.root();
  check.page_count = tree.page_count();
  if (check.applied_size == 0) {
    report.problems.push_back(fmt::format("replica {} has applied no entries", db_path.string()));
  } else if (check.applied_size >= replay_from + roots.size()) {
    report.problems.push_back(
        fmt::format("replica {} claims {} applied entries but the log replays to only {}",
                    db_path.string(), check.applied_size, replay_from + roots.size() - 1));
  } else if (check.applied_size < replay_from) {
    report.problems.push_back(
        fmt::format("replica {} is at {} entries, before the snapshot at {} the audit starts from",
                    db_path.string(), check.applied_size, replay_from));
  } else {
    const auto& [want_root, want_pages] = roots[check.applied_size - replay_from];
    check.matches = want_root == check.state_root && want_pages == check.page_count;
    if (!check.matches) {
      report.problems.push_back(fmt::format(
          "replica {} at size {} has {}, the log says {}", db_path.string(), check.applied_size,
          root_text(check.state_root, check.page_count), root_text(want_root, want_pages)));
    }
  }
  report.replica = std::move(check);
  return {};
}

}  // namespace

Result<AuditReport> audit_log(const fs::path& log_dir, const PublicKey& log_id,
                              const AuditOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(log_dir, ec)) {
    return make_error(Errc::invalid_argument, "log directory {} does not exist", log_dir.string());
  }
  SWL_ASSIGN(ScratchDir scratch, make_scratch(options.work_dir));
  fs::copy(log_dir, scratch.path / "log", fs::copy_options::recursive, ec);
  if (ec) {
    return make_error(Errc::io_error, "cannot copy log {} for auditing: {}", log_dir.string(), ec.message());
  }
  AuditReport report;
  auto log = Log::open(scratch.path / "log", log_id);
  if (!log.ok()) {
    // A stored head that does not verify or match the entries is a finding, not a crash.
    report.problems.push_back("log " + log_dir.string() + " does not open: " + log.error().to_string());
    return report;
  }
  report.entries = (*log)->size();
  report.first_entry = (*log)->first_entry();
  report.head = (*log)->head();
  if (report.first_entry > 0 && !options.snapshot) {
    return make_error(Errc::invalid_argument,
                      "log {} was compacted: it starts at entry {}, so it cannot be replayed from "
                      "genesis; pass a snapshot at a signed head of size >= {} (--from-snapshot "
                      "FILE, with FILE.head.json as `swarmlite fetch` writes)",
                      log_dir.string(), report.first_entry, report.first_entry);
  }

  const fs::path db_path = scratch.path / "audit.db";
  // roots[i] = the state after replay_from + i entries; roots[0] is the
  // snapshot's (from genesis: no state before entry 0, a placeholder).
  std::vector<std::pair<Hash32, uint32_t>> roots;
  if (options.snapshot) {
    const Head& sh = options.snapshot->head;
    report.replay_from = sh.size;
    auto check = verify_backup_file(options.snapshot->db, sh, log_id);
    if (!check.ok()) {
      report.problems.push_back(
          fmt::format("snapshot {}: {}", options.snapshot->db.string(), check.error().to_string()));
      return report;
    }
    if (sh.size < report.first_entry || sh.size > report.entries) {
      report.problems.push_back(
          fmt::format("snapshot head at size {} is outside the log's entries [{}, {}]", sh.size,
                      report.first_entry, report.entries));
      return report;
    }
    auto root = (*log)->tree().root_at(sh.size);
    if (!root.ok() || *root != sh.log_root) {
      report.problems.push_back(
          fmt::format("snapshot head at size {} signs log root {}, the log gives {}", sh.size,
                      to_hex(sh.log_root), root.ok() ? to_hex(*root) : root.error().to_string()));
      return report;
    }
    fs::copy_file(options.snapshot->db, db_path, ec);
    if (ec) {
      return make_error(Errc::io_error, "cannot copy snapshot {}: {}",
                        options.snapshot->db.string(), ec.message());
    }
    roots.emplace_back(check->state_root, check->page_count);
  } else {
    roots.emplace_back(Hash32{}, 0);
  }
  SWL_ASSIGN(auto db, DeterministicDb::open(db_path));
  if (options.snapshot) {
    SWL_ASSIGN(uint64_t applied, db->read_applied_size());
    if (applied != report.replay_from) {
      report.problems.push_back(
          fmt::format("snapshot {} says it applied {} entries, its head "
                      "covers {}",
                      options.snapshot->db.string(), applied, report.replay_from));
      return report;
    }
  }
  roots.reserve(report.entries - report.replay_from + 1);
  for (uint64_t seq = report.replay_from; seq < report.entries; ++seq) {
    auto entry = (*log)->entry(seq);
    if (!entry.ok()) {
      report.problems.push_back(fmt::format("entry {}: {}", seq, entry.error().to_string()));
      break;
    }
    Status s = replay_entry(*db, *entry);
    if (!s.ok()) {
      report.problems.push_back(fmt::format("entry {}: {}", seq, s.error().to_string()));
      break;
    }
    roots.emplace_back(db->state_tree().root(), db->state_tree().page_count());
    report.replayed = seq + 1 - report.replay_from;
    if (options.progress && (seq % 256 == 0)) {
      options.progress(report.replayed, report.entries - report.replay_from);
    }
  }
  if (options.progress) options.progress(report.replayed, report.entries - report.replay_from);
  if (roots.size() > 1 || options.snapshot) {
    std::tie(report.state_root, report.page_count) = roots.back();
  }

  const uint64_t end = report.replay_from + roots.size() - 1;  // state known up to here
  if (!report.head) {
    report.problems.push_back("the log has no signed head");
  } else if (report.head->size == 0 || report.head->size > end ||
             report.head->size < report.replay_from) {
    if (report.ok()) {
      report.problems.push_back(fmt::format("signed head covers {} entries, replayed [{}, {})",
                                            report.head->size, report.replay_from, end));
    }
  } else {
    const auto& [root, pages] = roots[report.head->size - report.replay_from];
    report.head_matches = root == report.head->state_root && pages == report.head->page_count;
    if (!report.head_matches) {
      report.problems.push_back(fmt::format(
          "signed head at size {} says {}, replay gives {}", report.head->size,
          root_text(report.head->state_root, report.head->page_count), root_text(root, pages)));
    }
  }
  if (options.replica_db) {
    SWL_TRY(check_replica(*options.replica_db, roots, report.replay_from, report));
  }
  return report;
}

}  // namespace swarmlite
