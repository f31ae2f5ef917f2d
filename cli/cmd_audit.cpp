// swarmlite audit --log DIR --pub KEY [--db replica.db]: replays the whole log
// from scratch, checks every entry and the signed head, and compares a replica.
// Exit code 0 only when everything holds.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/print_head.h"
#include "cli/progress.h"
#include "core/keys.h"
#include "sqlbridge/tools/audit.h"

namespace swarmlite::cli {

void add_audit_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "audit", "Replay a log from scratch, check every entry and the signed head, compare a replica");
  struct Args {
    std::string log, pub, db, work_dir;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--log", args->log, "Log directory to audit (only read)")->required();
  cmd->add_option("--pub", args->pub, "The log's public key: hex, or a .pub file")->required();
  cmd->add_option("--db", args->db, "A replica database to compare with the log");
  cmd->add_option("--work-dir", args->work_dir, "Where the scratch replay goes (default: temp dir)");
  cmd->callback([args] {
    PublicKey pub = must(load_public_key(args->pub), "audit: --pub");
    AuditOptions options;
    if (!args->db.empty()) options.replica_db = args->db;
    options.work_dir = args->work_dir;
    Progress progress("audit", "entries");
    options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
    AuditReport report = must(audit_log(args->log, pub, options), "audit");
    progress.finish();
    fmt::print("log {}: {} entries, {} replayed with matching state roots\n", args->log, report.entries,
               report.replayed);
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
