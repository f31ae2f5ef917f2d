// swarmlite import --from app.db --db primary.db --key DIR/primary.key [--log DIR]:
// builds a fresh primary whose first entries recreate app.db's schema and rows.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/print_head.h"
#include "cli/progress.h"
#include "core/keys.h"
#include "sqlbridge/tools/import.h"

namespace swarmlite::cli {

void add_import_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "import", "Create a new primary from an existing SQLite database (schema and rows become log entries)");
  struct Args {
    std::string from, db, key, log;
    size_t max_entry_kib = 4096;
    size_t max_rows = 20000;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--from", args->from, "The app's SQLite database to import (only read)")->required();
  cmd->add_option("--db", args->db, "New primary database file (must not exist yet)")->required();
  cmd->add_option("--key", args->key, "Secret key file (DIR/primary.key from keygen)")->required();
  cmd->add_option("--log", args->log, "Log directory (default: <db>.log)");
  cmd->add_option("--max-entry-kib", args->max_entry_kib, "Approximate size cap of one row entry")
      ->capture_default_str()->check(CLI::Range(size_t{16}, size_t{12288}));
  cmd->add_option("--max-rows", args->max_rows, "Rows per entry at most")
      ->capture_default_str()->check(CLI::Range(size_t{1}, size_t{1000000}));
  cmd->callback([args] {
    SecretKey key = must(load_secret_key(args->key), "import: loading the key");
    PrimaryOptions options;
    options.log_dir = args->log;
    // The source database already holds these values and indexes, and import
    // bounds its row entries itself; an index over a large table is one entry
    // and may take long: no write bounds here (docs/operations.md).
    options.write_timeout = std::chrono::milliseconds(0);
    options.max_entry_pages = 0;
    options.max_value_bytes = 0;
    Progress progress("import", "rows");
    ImportOptions import_options;
    import_options.max_entry_bytes = args->max_entry_kib << 10;
    import_options.max_rows_per_entry = args->max_rows;
    import_options.progress = [&](const ImportProgress& p) { progress.update(p.rows_done, p.rows_total); };
    // All or nothing: built under temporary names, checked, then renamed into place.
    ImportResult result =
        must(import_new_primary(args->from, args->db, key, std::move(options), import_options), "import");
    progress.finish();
    const ImportStats& stats = result.stats;
    fmt::print(
        "imported {} tables ({} rows), {} indexes, {} views, {} triggers, {} sqlite_stat1 rows in "
        "{} "
        "entries\n",
        stats.tables, stats.rows, stats.indexes, stats.views, stats.triggers, stats.stat1_rows,
        stats.entries);
    fmt::print("check: integrity_check={} foreign_key_check={} violation(s)\n", result.check.integrity,
               result.check.foreign_key_violations);
    for (const TableCount& t : result.check.tables) {
      fmt::print("  table {}: {} rows in the source, {} imported\n", t.table, t.source_rows, t.imported_rows);
    }
    if (result.head) print_head(*result.head);
  });
}

}  // namespace swarmlite::cli
