// swarmlite audit --log DIR --pub KEY [--db replica.db] [--from-snapshot FILE]:
// replays the whole log from scratch (or, for a compacted log, from a snapshot
// at a signed head: FILE plus FILE.head.json as `swarmlite fetch` writes them),
// checks every entry and the signed head, and compares a replica.
// Exit code 0 only when everything holds.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/print_head.h"
#include "cli/progress.h"
#include "core/file_io.h"
#include "core/keys.h"
#include "sqlbridge/tools/audit.h"

namespace swarmlite::cli {

namespace {

// FILE.head.json (client/snapshot_fetch.cpp writes it; docs/operations.md):
// its "head" field is the signed head, hex-encoded (core/head.h); the other
// fields restate it for people and must agree.
Head load_snapshot_head(const std::string& file, const PublicKey& pub) {
  const std::string path = file + ".head.json";
  Bytes text = must(file_io::read_file(path, 1 << 20), "audit: --from-snapshot: reading " + path);
  nlohmann::json doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("head") || !doc["head"].is_string()) {
    throw CliError(1, fmt::format("audit: --from-snapshot: {} is not JSON with a \"head\" string "
                                  "(the file `swarmlite fetch` writes next to its output)",
                                  path));
  }
  Bytes head_bytes =
      must(from_hex(doc["head"].get<std::string>()), "audit: --from-snapshot: " + path + ": head");
  Head head = must(decode_head(head_bytes), "audit: --from-snapshot: " + path + ": head");
  must(head.verify(pub), "audit: --from-snapshot: " + path + ": head");
  if (doc.contains("size") &&
      (!doc["size"].is_number_unsigned() || doc["size"].get<uint64_t>() != head.size)) {
    throw CliError(1, fmt::format("audit: --from-snapshot: {}: \"size\" disagrees with the signed "
                                  "head's size {}",
                                  path, head.size));
  }
  return head;
}

}  // namespace

void add_audit_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "audit", "Replay a log from scratch, check every entry and the signed head, compare a replica");
  struct Args {
    std::string log, pub, db, work_dir, snapshot;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--log", args->log, "Log directory to audit (only read)")->required();
  cmd->add_option("--pub", args->pub, "The log's public key: hex, or a .pub file")->required();
  cmd->add_option("--db", args->db, "A replica database to compare with the log");
  cmd->add_option("--work-dir", args->work_dir, "Where the scratch replay goes (default: temp dir)");
  cmd->add_option("--from-snapshot", args->snapshot,
                  "Replay from this SQLite file (with FILE.head.json, as `swarmlite fetch` "
                  "writes) instead of from genesis: needed for a compacted log");
  cmd->callback([args] {
    PublicKey pub = must(load_public_key(args->pub), "audit: --pub");
    AuditOptions options;
    if (!args->db.empty()) options.replica_db = args->db;
    options.work_dir = args->work_dir;
    if (!args->snapshot.empty()) {
      options.snapshot =
          AuditOptions::Snapshot{args->snapshot, load_snapshot_head(args->snapshot, pub)};
    }
    Progress progress("audit", "entries");
    options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
    AuditReport report = must(audit_log(args->log, pub, options), "audit");
    progress.finish();
    fmt::print("log {}: {} entries, {} replayed with matching state roots\n", args->log, report.entries,
               report.replayed);
    if (report.replay_from > 0 || options.snapshot) {
      fmt::print(
          "checked entries [{}, {}) from a snapshot at head {} (the log starts at entry {})\n",
          report.replay_from, report.replay_from + report.replayed, report.replay_from,
          report.first_entry);
    } else {
      fmt::print("checked entries [0, {}) from genesis\n", report.replayed);
    }
    if (report.head) {
      print_head(*report.head);
      fmt::print("signed head: signature valid, state {}\n",
                 report.head_matches ? "matches the replay" : "DOES NOT match the replay");
    }
    if (report.replica) {
      fmt::print("replica {}: applied {} entries, state root {} — {}\n", report.replica->path.string(),
                 report.replica->applied_size, to_hex(report.replica->state_root),
                 report.replica->matches ? "matches the log" : "DOES NOT match the log");
    }
    if (!report.ok()) {
      for (const auto& p : report.problems) fmt::print(stderr, "audit: FAILED: {}\n", p);
      throw CliError(2, fmt::format("audit failed with {} problem(s)", report.problems.size()));
    }
    fmt::print("audit: OK\n");
  });
}

}  // namespace swarmlite::cli
