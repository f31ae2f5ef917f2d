// swarmlite exec --db P.db --key DIR/primary.key [--log DIR] "SQL" ["SQL"…]:
// runs one write transaction on a local primary (creating it if new), prints
// each statement's result and the new signed head.
// swarmlite exec --db P.db --key K -f FILE|- [--single-transaction]: runs a SQL
// script (e.g. `sqlite3 app.db .dump`) in bounded transactions (sqlbridge/tools/sql_script.h,
// docs/operations.md "Running SQL scripts").
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "cli/print_head.h"
#include "cli/progress.h"
#include "core/keys.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/tools/sql_script.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

namespace swarmlite::cli {

namespace {
// sqlite3-shell-like text for one value: NULL, numbers, text as is, blobs as X'..'.
std::string value_text(const Value& value) {
  const auto& v = value.v;
  if (std::holds_alternative<std::monostate>(v)) return "NULL";
  if (auto* n = std::get_if<int64_t>(&v)) return std::to_string(*n);
  if (auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  return fmt::format("X'{}'", to_hex(std::get<Bytes>(v)));
}
}  // namespace

void print_head(const Head& head) {
  fmt::print("head: size={} log_root={} state_root={} page_count={} time_ms={}\n", head.size,
             to_hex(head.log_root), to_hex(head.state_root), head.page_count, head.time_ms);
}

void add_exec_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("exec", "Run one write transaction on a local primary and print the new head");
  struct Args {
    std::string db, key, log;
    std::vector<std::string> sql;
    std::string file;
    bool single_transaction = false;
    size_t batch_statements = 1000;
    size_t batch_kib = 4096;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--db", args->db, "Primary database file (created if missing)")->required();
  cmd->add_option("--key", args->key, "Secret key file (DIR/primary.key from keygen)")->required();
  cmd->add_option("--log", args->log, "Log directory (default: <db>.log)");
  auto* sql_opt = cmd->add_option("sql", args->sql,
                                   "SQL text, one statement (or several, without params) per argument; - alone reads a script from standard input like -f -");
  auto* file_opt = cmd->add_option("-f,--file", args->file,
                                   "Run a SQL script from FILE (- for standard input), e.g. a sqlite3 .dump, "
                                   "in bounded transactions");
  sql_opt->excludes(file_opt);
  cmd->add_flag("--single-transaction", args->single_transaction,
                "With -f: run the whole script in one transaction (all or nothing; at most 16 MiB)");
  cmd->add_option("--batch-statements", args->batch_statements, "With -f: statements per transaction at most")
      ->capture_default_str()->check(CLI::Range(size_t{1}, size_t{100000}));
  cmd->add_option("--batch-kib", args->batch_kib, "With -f: SQL text per transaction at most (approximate)")
      ->capture_default_str()->check(CLI::Range(size_t{1}, size_t{12288}));
  cmd->callback([args] {
    if (args->sql.size() == 1 && args->sql[0] == "-") {  // `exec … -`: the script on standard input
      args->sql.clear();
      args->file = "-";
    }
    if (args->sql.empty() && args->file.empty()) {
      throw CliError(2, "exec: give SQL as arguments or a script with -f FILE (- for standard input)");
    }
    std::string script;
    if (!args->file.empty()) {
      // Read before opening the primary: a missing file changes nothing.
      std::ostringstream text;
      if (args->file == "-") {
        text << std::cin.rdbuf();
      } else {
        std::ifstream in(args->file, std::ios::binary);
        if (!in) throw CliError(1, fmt::format("exec: cannot read {}: {}", args->file, std::strerror(errno)));
        text << in.rdbuf();
      }
      script = std::move(text).str();
    }
    SecretKey key = must(load_secret_key(args->key), "exec: loading the key");
    PrimaryOptions options;
    options.log_dir = args->log;
    auto primary = must(Primary::open(args->db, key, std::move(options)), "exec: opening " + args->db);
    if (!args->file.empty()) {
      Progress progress("exec", "statements");
      ScriptOptions script_options;
      script_options.single_transaction = args->single_transaction;
      script_options.max_statements = args->batch_statements;
      script_options.max_bytes = args->batch_kib << 10;
      script_options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
      auto stats = run_sql_script(*primary, script, script_options);
      progress.finish();
      Status closed = primary->close();
      const std::string where = args->file == "-" ? "standard input" : args->file;
      if (!stats.ok()) throw CliError(1, fmt::format("exec: {}: {}", where, stats.error().to_string()));
      must(std::move(closed), "exec: signing the head");
      fmt::print("ran {} statements ({} skipped) in {} transactions\n", stats->statements, stats->skipped,
                 stats->transactions);
      if (auto head = primary->head()) print_head(*head);
      return;
    }
    std::vector<Statement> statements;
    for (const auto& sql : args->sql) statements.push_back(Statement{sql, {}});
    ExecuteResult result = must(primary->execute(statements), "exec");
    for (const StatementResult& st : result.statements) {
      fmt::print("statement {}: changes={} last_insert_rowid={}\n", st.statement_index,
                 st.rows_changed, st.last_insert_rowid);
      if (!st.columns.empty()) fmt::print("  {}\n", fmt::join(st.columns, "|"));
      for (const auto& row : st.rows) {
        std::vector<std::string> cells;
        for (const Value& v : row) cells.push_back(value_text(v));
        fmt::print("  {}\n", fmt::join(cells, "|"));
      }
    }
    fmt::print("entry: seq={} state_root={} page_count={}\n", result.seq, to_hex(result.state_root),
               result.page_count);
    must(primary->close(), "exec: signing the head");
    if (auto head = primary->head()) print_head(*head);
  });
}

}  // namespace swarmlite::cli
