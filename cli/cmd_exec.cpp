// swarmlite exec --db P.db --key DIR/primary.key [--log DIR] "SQL" ["SQL"…]:
// runs one write transaction on a local primary (creating it if new), prints
// each statement's result and the new signed head.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/print_head.h"
#include "core/keys.h"
#include "sqlbridge/primary.h"

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
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--db", args->db, "Primary database file (created if missing)")->required();
  cmd->add_option("--key", args->key, "Secret key file (DIR/primary.key from keygen)")->required();
  cmd->add_option("--log", args->log, "Log directory (default: <db>.log)");
  cmd->add_option("sql", args->sql, "SQL text, one statement (or several, without params) per argument")
      ->required();
  cmd->callback([args] {
    SecretKey key = must(load_secret_key(args->key), "exec: loading the key");
    PrimaryOptions options;
    options.log_dir = args->log;
    auto primary = must(Primary::open(args->db, key, std::move(options)), "exec: opening " + args->db);
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
