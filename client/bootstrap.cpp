// Starting an empty replica from a verified snapshot (client/bootstrap.h for
// the crash-safe order; docs/operations.md "Starting a peer from a snapshot").
#include "client/bootstrap.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>
#include <system_error>

#include "core/entry.h"
#include "core/file_io.h"
#include "core/log.h"
#include "sqlbridge/tools/backup.h"

namespace swarmlite::client {
namespace fs = std::filesystem;

namespace {

void say(const BootstrapOptions& o, const std::string& line) {
  if (o.log) o.log(line);
}

// The head a finished fetch recorded next to its file (snapshot_fetch.h
// out.head.json, field "head": the encoded signed head).
Result<Head> read_staged_head(const fs::path& staged, const PublicKey& log_id) {
  const fs::path p = head_json_path(staged);
  SWL_ASSIGN(Bytes text, file_io::read_file(p, 1 << 16));
  auto doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("head") || !doc["head"].is_string()) {
    return make_error(Errc::corrupt, "{}: not a head record (no \"head\" string)", p.string());
  }
  SWL_ASSIGN(Bytes encoded, from_hex(doc["head"].get<std::string>()));
  auto head = decode_head(encoded);
  if (!head.ok()) return make_error(Errc::corrupt, "{}: {}", p.string(), head.error().message);
  SWL_TRY(head->verify(log_id));
  return head;
}

// Removes the staged snapshot and its head record (the next run fetches anew).
void drop_staged(const fs::path& staged) {
  std::error_code ec;
  fs::remove(staged, ec);
  fs::remove(head_json_path(staged), ec);
}

// Step 2: the log at the snapshot's checkpoint, from the first peer whose
// frontier checks; made in DATA/log.bootstrap and renamed, so DATA/log is
// either absent or whole.
Result<std::string> create_log(const BootstrapOptions& o, const Head& head) {
  std::vector<std::string> failures;
  bool all_refused = !o.frontier_from.empty();
  for (const auto& address : o.frontier_from) {
    auto answer = peer_frontier(address, o.log_id, head.size, o.timeout);
    if (!answer.ok()) {
      all_refused = all_refused && answer.error().code == Errc::not_found;
      failures.push_back(answer.error().message);
      continue;
    }
    all_refused = false;
    auto frontier = verify_frontier(*answer, head);
    if (!frontier.ok()) {
      failures.push_back(fmt::format("{}: {}", address, frontier.error().message));
      say(o, fmt::format("{}'s frontier at {} does not check against the head: {}", address,
                         head.size, frontier.error().message));
      continue;
    }
    const fs::path tmp = o.data / "log.bootstrap";
    std::error_code ec;
    fs::remove_all(tmp, ec);  // an earlier run's, killed before its rename
    if (ec) return make_error(Errc::io_error, "removing {}: {}", tmp.string(), ec.message());
    {
      // Closed (its lock released) before the rename.
      SWL_ASSIGN(auto made, Log::create_at_checkpoint(tmp, o.log_id, head, frontier->subtrees,
                                                      o.log_options));
    }
    fs::rename(tmp, o.data / "log", ec);
    if (ec) {
      return make_error(Errc::io_error, "renaming {} to {}: {}", tmp.string(),
                        (o.data / "log").string(), ec.message());
    }
    SWL_TRY(file_io::fsync_dir(o.data));
    return address;
  }
  // not_found: every node reached no longer holds entry size-1 (compacted
  // past the snapshot): this snapshot can never start a log.
  return make_error(all_refused ? Errc::not_found : Errc::unavailable,
                    "no node gave a frontier at {} that checks: {}", head.size,
                    failures.empty() ? std::string("no peer address to ask")
                                     : fmt::format("{}", fmt::join(failures, "; ")));
}

}  // namespace

fs::path bootstrap_db_path(const fs::path& data) { return data / "bootstrap.db"; }

bool bootstrap_pending(const fs::path& db, const fs::path& data) {
  std::error_code ec;
  if (fs::exists(db, ec)) return false;
  const fs::path staged = bootstrap_db_path(data);
  return fs::exists(staged, ec) || fs::exists(part_path(staged), ec) ||
         fs::exists(progress_path(staged), ec);
}

Result<net::LogFrontier> verify_frontier(const net::Frontier& answer, const Head& head) {
  if (answer.size != head.size || head.size == 0) {
    return make_error(Errc::bad_value, "a frontier at {} for the head at {}", answer.size,
                      head.size);
  }
  auto entry = decode_entry(answer.last_entry);
  if (!entry.ok()) {
    return make_error(Errc::bad_value, "entry {} does not decode: {}", head.size - 1,
                      entry.error().message);
  }
  if (entry->seq != head.size - 1 || entry->state_root != head.state_root ||
      entry->page_count != head.page_count) {
    return make_error(Errc::bad_value,
                      "entry {} is not the head's last: seq {}, state root {} with {} pages, the "
                      "head signs {} with {} pages",
                      head.size - 1, entry->seq, to_hex(entry->state_root), entry->page_count,
                      to_hex(head.state_root), head.page_count);
  }
  SWL_ASSIGN(net::LogFrontier f, net::frontier_from_last_leaf_path(
                                     head.size, entry_leaf_hash(answer.last_entry), answer.path));
  if (f.root != head.log_root) {
    return make_error(Errc::root_mismatch,
                      "entry {} and its path fold to log root {}, the head at {} signs {}",
                      head.size - 1, to_hex(f.root), head.size, to_hex(head.log_root));
  }
  return f;
}

BootstrapChoice choose_bootstrap(const std::vector<PeerHello>& hellos,
                                 const std::optional<Head>& newest) {
  if (!newest || newest->size == 0) {
    return {false, "no node has a signed head yet: replaying the log as it grows"};
  }
  bool entry0 = false;
  for (const auto& h : hellos) entry0 = entry0 || (h.head && h.first == 0);
  if (!entry0) {
    return {true, fmt::format("no node reached holds entry 0 (all compacted): snapshot at {}",
                              newest->size)};
  }
  if (newest->size < kAutoSnapshotMinEntries) {
    return {false, fmt::format("{} entries (fewer than {}): replay", newest->size,
                               kAutoSnapshotMinEntries)};
  }
  if (newest->size > kReplayEntriesPerPage * uint64_t{newest->page_count}) {
    return {true, fmt::format("{} entries over {} pages (more than {} per page): snapshot",
                              newest->size, newest->page_count, kReplayEntriesPerPage)};
  }
  return {false, fmt::format("{} entries over {} pages (at most {} per page): replay",
                             newest->size, newest->page_count, kReplayEntriesPerPage)};
}

Result<BootstrapResult> bootstrap_from_snapshot(const BootstrapOptions& o) {
  std::error_code ec;
  if (fs::exists(o.db, ec)) {
    return make_error(Errc::invalid_argument, "bootstrap: {} exists; a snapshot only starts an "
                      "empty replica", o.db.string());
  }
  fs::create_directories(o.data, ec);
  if (ec) return make_error(Errc::io_error, "creating {}: {}", o.data.string(), ec.message());
  const fs::path staged = bootstrap_db_path(o.data);
  const fs::path log_dir = o.data / "log";
  BootstrapResult result;

  // Step 1: the verified file (or the one an earlier run fetched, checked again).
  if (fs::exists(staged, ec)) {
    SWL_ASSIGN(result.head, read_staged_head(staged, o.log_id));
    if (auto check = verify_backup_file(staged, result.head, o.log_id); !check.ok()) {
      drop_staged(staged);
      return make_error(Errc::corrupt,
                        "bootstrap: the staged snapshot {} does not check against its head {}: {}; "
                        "removed, run again",
                        staged.string(), result.head.size, check.error().to_string());
    }
    say(o, fmt::format("resuming: {} holds the verified snapshot at {}", staged.string(),
                       result.head.size));
  } else {
    if (fs::exists(log_dir, ec)) {
      return make_error(Errc::invalid_argument,
                        "bootstrap: {} exists but {} does not: a log without its database; "
                        "remove the log to start from a snapshot",
                        log_dir.string(), o.db.string());
    }
    SnapshotFetchOptions f;
    f.log_id = o.log_id;
    f.out = staged;
    f.parallel = o.parallel;
    f.chunk_pages = o.chunk_pages;
    f.progress = o.progress;
    f.log = o.log;
    SWL_ASSIGN(SnapshotFetchResult fetched, fetch_snapshot(o.sources, f));
    result.head = fetched.head;
    result.fetched = std::move(fetched);
  }

  // Step 2: the log at the checkpoint (or an earlier run's, which must be it).
  if (fs::exists(log_dir, ec)) {
    SWL_ASSIGN(auto log, Log::open(log_dir, o.log_id, o.log_options));
    if (log->size() != result.head.size || log->first_entry() != result.head.size) {
      return make_error(Errc::invalid_argument,
                        "bootstrap: {} holds entries [{}, {}), not a log at the snapshot's "
                        "checkpoint {}; remove it (and {}) to start over",
                        log_dir.string(), log->first_entry(), log->size(), result.head.size,
                        staged.string());
    }
  } else {
    auto made = create_log(o, result.head);
    if (!made.ok()) {
      const bool gone = made.error().code == Errc::not_found;
      if (gone) drop_staged(staged);
      return make_error(Errc::unavailable, "bootstrap: {}{}", made.error().message,
                        gone ? "; every node compacted past the fetched snapshot, which was "
                               "removed: run again for a newer one"
                             : "; the verified snapshot is kept: run again");
    }
    result.frontier_from = std::move(made).value();
  }

  // Step 3: the commit point.
  fs::rename(staged, o.db, ec);
  if (ec) {
    return make_error(Errc::io_error, "bootstrap: renaming {} to {}: {}", staged.string(),
                      o.db.string(), ec.message());
  }
  SWL_TRY(file_io::fsync_parent(o.db));
  fs::remove(head_json_path(staged), ec);
  return result;
}

}  // namespace swarmlite::client
