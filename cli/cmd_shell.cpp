// swarmlite shell: an interactive SQL shell like sqlite3 whose every answer is
// computed here, by the light client's own SQLite, over pages fetched from
// untrusted nodes and verified against a signed head (docs/light-client.md
// "Commands"; client/light_client.h). One query and exit when SQL is given.
// Also the light-client flags shared with `swarmlite query --light`
// (light_common.h).
#ifdef SWARMLITE_HAVE_NET
#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/light_common.h"
#include "client/page_source_http.h"
#include "client/report_format.h"
#include "net/http_client.h"
#include "net/http_json.h"

namespace swarmlite::cli {

// --- the light client's flags (light_common.h) ---------------------------------

void add_light_flags(CLI::App& cmd, LightFlags& f, bool peer_required) {
  auto* peer = cmd.add_option("--peer", f.peers,
                              "A node's HTTP API, http://HOST:PORT; repeatable or comma-separated "
                              "(asked in order; one that lies is dropped for the run)");
  if (peer_required) peer->required();
  cmd.add_option("--pub", f.pub, "The log's public key (64 hex digits or a .pub file)");
  cmd.add_option("--cache", f.cache,
                 "Directory of the verified page cache (default: $XDG_CACHE_HOME/swarmlite/<log "
                 "key>, else ~/.cache/swarmlite/<log key>)");
  cmd.add_option("--cache-mib", f.cache_mib, "Cap on the page cache, MiB (least recently used go)")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20));
  cmd.add_option("--min-size", f.min_size, "Refuse a head older than N log entries");
  cmd.add_option("--max-age", f.max_age, "Refuse a head signed longer ago (30s, 5m, or seconds)");
  cmd.add_option("--timeout", f.timeout_s, "Seconds one request to a node may take")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd.add_flag("--no-seed", f.no_seed,
               "Never seed a cold query from one proof=1 answer: fetch its pages one B-tree level "
               "at a time (docs/light-client.md \"Seeding a cold query from proof=1\")");
}

std::filesystem::path default_light_cache(const PublicKey& log_key) {
  std::filesystem::path base;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    base = xdg;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    base = std::filesystem::path(home) / ".cache";
  } else {
    throw CliError(1, "--cache: neither XDG_CACHE_HOME nor HOME is set; give --cache DIR");
  }
  return base / "swarmlite" / log_key.hex();
}

std::unique_ptr<client::LightClient> open_light_client(const LightFlags& f) {
  if (f.pub.empty()) throw CliError(1, "--pub KEY is needed: pages are checked against heads the log key signed");
  const PublicKey key = must(load_public_key(f.pub), "--pub");
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(f.timeout_s * 1000));
  std::vector<std::shared_ptr<client::PageSource>> sources;
  for (const auto& list : f.peers) {
    size_t at = 0;
    while (at <= list.size()) {
      size_t comma = list.find(',', at);
      if (comma == std::string::npos) comma = list.size();
      std::string url = list.substr(at, comma - at);
      at = comma + 1;
      if (url.empty()) continue;
      must(net::parse_http_url(url), "--peer " + url);
      sources.push_back(client::http_page_source(url, timeout));
    }
  }
  if (sources.empty()) throw CliError(1, "--peer URL is needed: the nodes to fetch pages from");
  client::LightClientOptions o;
  o.min_size = f.min_size;
  o.max_age = max_age_of(f.max_age);
  o.cache.max_bytes = f.cache_mib << 20;
  o.seed_with_proof = !f.no_seed;
  const std::filesystem::path dir = f.cache.empty() ? default_light_cache(key) : std::filesystem::path(f.cache);
  auto c = client::LightClient::open(dir, std::move(sources), key, o);
  if (!c.ok()) throw CliError(1, fmt::format("light client cache {}: {}", dir.string(), c.error().message));
  return std::move(c).value();
}

std::string light_stats_line(const client::LightClient& c, const client::LightAnswer& a) {
  const client::LightStats& s = a.stats;
  return fmt::format(
      "head {} (state root {}…, {} pages); this query: {} pages fetched ({} bytes + {} proof "
      "bytes) in {} round trips{}{}, {} from the cache; {} pages proven at this head{}",
      a.head.size, to_hex(a.head.state_root).substr(0, 12), a.head.page_count, s.pages_fetched,
      s.page_bytes, s.proof_bytes, s.round_trips, s.seeded ? " (seeded by one proof=1 answer)" : "",
      s.reruns ? " (the head moved during the query: run again at the new one)" : "",
      s.cache_hits, c.proven_pages(),
      c.bans().empty() ? "" : fmt::format("; {} node(s) dropped for lying", c.bans().size()));
}

namespace {

using nlohmann::ordered_json;

enum class Mode { list, table, csv, json, line };

std::optional<Mode> mode_of(const std::string& name) {
  if (name == "list") return Mode::list;
  if (name == "table" || name == "box" || name == "column") return Mode::table;
  if (name == "csv") return Mode::csv;
  if (name == "json") return Mode::json;
  if (name == "line") return Mode::line;
  return std::nullopt;
}

bool is_null(const Value& v);

std::string csv_cell(const Value& v) {
  if (is_null(v)) return "";
  std::string t = client::cell_text(v);
  if (t.find_first_of(",\"\r\n") == std::string::npos) return t;
  std::string out = "\"";
  for (char ch : t) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

bool is_null(const Value& v) { return std::holds_alternative<std::monostate>(v.v); }

ordered_json json_cell(const Value& v) {
  if (is_null(v)) return nullptr;
  if (auto* i = std::get_if<int64_t>(&v.v)) return *i;
  if (auto* d = std::get_if<double>(&v.v)) return *d;
  return client::cell_text(v);  // text as is, a blob as x'hex'
}

// The shell: settings, dot-commands, statements. Errors go to stderr as
// "Error: …" (as sqlite3 prints them); `worst` keeps the exit code a script
// or a one-shot run ends with (1: an error, 2: an answer not to be believed).
class Shell {
 public:
  explicit Shell(client::LightClient& c) : c_(c) {}
  Mode mode = Mode::list;
  bool headers = false;
  bool timer = false;
  bool stats = false;
  int worst = 0;

  // Runs every complete statement of `sql` in order; false to stop the shell.
  bool run_sql(const std::string& sql) {
    for (const std::string& st : split_statements(sql)) {
      if (!run_statement(st)) return true;  // an error skips the rest of this input, as in sqlite3
    }
    return true;
  }

  // A line starting with '.'; false for .quit / .exit.
  bool dot(const std::string& line) {
    std::vector<std::string> w;
    std::istringstream in(line);
    for (std::string t; in >> t;) w.push_back(t);
    const std::string cmd = w.empty() ? "." : w[0];
    auto onoff = [&](bool& flag) {
      if (w.size() != 2 || (w[1] != "on" && w[1] != "off")) return error(1, fmt::format("usage: {} on|off", cmd));
      flag = w[1] == "on";
    };
    if (cmd == ".quit" || cmd == ".exit") return false;
    if (cmd == ".help") {
      std::fputs(kHelp, stdout);
    } else if (cmd == ".mode") {
      if (w.size() != 2 || !mode_of(w[1])) return error(1, "usage: .mode list|table|csv|json|line"), true;
      mode = *mode_of(w[1]);
      if (mode == Mode::table) headers = true;
    } else if (cmd == ".headers" || cmd == ".header") {
      onoff(headers);
    } else if (cmd == ".timer") {
      onoff(timer);
    } else if (cmd == ".stats") {
      onoff(stats);
    } else if (cmd == ".tables") {
      list_names(w.size() > 1 ? std::optional<std::string>(w[1]) : std::nullopt);
    } else if (cmd == ".schema") {
      schema(w.size() > 1 ? std::optional<std::string>(w[1]) : std::nullopt);
    } else if (cmd == ".head" || cmd == ".refresh") {
      if (cmd == ".refresh") {
        auto moved = c_.refresh();
        if (!moved.ok()) return report(moved.error()), true;
      }
      if (!c_.head()) {
        std::puts("no head yet (run a query or .refresh)");
      } else {
        const Head& h = *c_.head();
        fmt::print("head {}: state root {}, log root {}, {} pages, signed at {} ms; {} pages proven\n",
                   h.size, to_hex(h.state_root), to_hex(h.log_root), h.page_count, h.time_ms,
                   c_.proven_pages());
      }
    } else if (cmd == ".bans") {
      if (c_.bans().empty()) std::puts("no node dropped");
      for (const auto& b : c_.bans()) fmt::print("{}: {}\n", b.source, b.reason);
    } else {
      error(1, fmt::format("unknown command or invalid arguments: \"{}\". Enter \".help\" for help",
                           cmd.substr(1)));
    }
    return true;
  }

 private:
  static constexpr const char* kHelp =
      ".bans                 Nodes dropped for answers that did not verify, and why\n"
      ".exit, .quit          Leave the shell\n"
      ".head                 The signed head answers are verified against\n"
      ".headers on|off       Column names above the rows\n"
      ".help                 This list\n"
      ".mode MODE            list (default) | table | csv | json | line\n"
      ".refresh              Move to the newest head a node serves (changed pages only)\n"
      ".schema [PATTERN]     CREATE statements (of tables LIKE PATTERN)\n"
      ".stats on|off         After each query: head, pages fetched, bytes, round trips\n"
      ".tables [PATTERN]     Tables and views (LIKE PATTERN)\n"
      ".timer on|off         Time each statement\n"
      "Every row is computed here over pages checked against the log's signed head.\n";

  static std::vector<std::string> split_statements(const std::string& sql) {
    std::vector<std::string> out;
    std::string cur;
    for (char ch : sql) {
      cur += ch;
      if (ch == ';' && sqlite3_complete(cur.c_str())) {
        out.push_back(cur);
        cur.clear();
      }
    }
    if (cur.find_first_not_of(" \t\r\n") != std::string::npos) out.push_back(cur);
    return out;
  }

  void error(int code, const std::string& message) {
    std::fprintf(stderr, "Error: %s\n", message.c_str());
    std::fflush(stderr);
    worst = std::max(worst, code);
  }
  void report(const client::ClientError& e) {
    std::string text = e.message;
    for (const auto& b : c_.bans()) text += fmt::format("\n  (dropped {}: {})", b.source, b.reason);
    error(e.is_verification_failure() ? 2 : 1, text);
  }

  bool run_statement(const std::string& sql) {
    // A statement of only comments or ';' (sqlite3 runs it as a no-op).
    if (sqlite3_complete((sql + "\n").c_str()) && sql.find_first_not_of(" \t\r\n;") == std::string::npos)
      return true;
    const auto t0 = std::chrono::steady_clock::now();
    auto a = c_.query(sql);
    const auto t1 = std::chrono::steady_clock::now();
    if (!a.ok()) {
      report(a.error());
      return false;
    }
    print(*a);
    if (timer)
      fmt::print("Run Time: real {:.3f}\n", std::chrono::duration<double>(t1 - t0).count());
    if (stats) fmt::print("{}\n", light_stats_line(c_, *a));
    std::fflush(stdout);
    return true;
  }

  void print(const client::LightAnswer& a) {
    switch (mode) {
      case Mode::list:
      case Mode::csv: {
        const char* sep = mode == Mode::list ? "|" : ",";
        if (headers && !a.columns.empty()) {
          std::string line;
          for (size_t i = 0; i < a.columns.size(); ++i) {
            if (i) line += sep;
            line += mode == Mode::csv ? csv_cell(Value{a.columns[i]}) : a.columns[i];
          }
          std::puts(line.c_str());
        }
        for (const auto& row : a.rows) {
          std::string line;
          for (size_t i = 0; i < row.size(); ++i) {
            if (i) line += sep;
            line += mode == Mode::csv ? csv_cell(row[i]) : (is_null(row[i]) ? "" : client::cell_text(row[i]));
          }
          std::puts(line.c_str());
        }
        break;
      }
      case Mode::table: {
        client::TableStyle style;
        style.row_count = false;
        std::fputs(client::format_table(a.columns, a.rows, style).c_str(), stdout);
        break;
      }
      case Mode::json: {
        if (a.rows.empty()) break;
        std::string out = "[";
        for (size_t r = 0; r < a.rows.size(); ++r) {
          ordered_json obj = ordered_json::object();
          for (size_t i = 0; i < a.columns.size() && i < a.rows[r].size(); ++i)
            obj[a.columns[i]] = json_cell(a.rows[r][i]);
          out += (r ? ",\n" : "") + obj.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
        }
        out += "]\n";
        std::fputs(out.c_str(), stdout);
        break;
      }
      case Mode::line: {
        size_t w = 0;
        for (const auto& c : a.columns) w = std::max(w, c.size());
        for (size_t r = 0; r < a.rows.size(); ++r) {
          if (r) std::puts("");
          for (size_t i = 0; i < a.columns.size() && i < a.rows[r].size(); ++i)
            fmt::print("{:>{}} = {}\n", a.columns[i], w,
                       is_null(a.rows[r][i]) ? "" : client::cell_text(a.rows[r][i]));
        }
        break;
      }
    }
  }

  void list_names(const std::optional<std::string>& like) {
    std::string sql =
        "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%'";
    std::vector<Value> params;
    if (like) {
      sql += " AND name LIKE ?";
      params.push_back(Value{*like});
    }
    sql += " ORDER BY 1";
    auto a = c_.query(sql, params);
    if (!a.ok()) return report(a.error());
    std::string line;
    for (const auto& row : a->rows) {
      if (!line.empty()) line += "  ";
      line += client::cell_text(row[0]);
    }
    if (!line.empty()) std::puts(line.c_str());
    if (stats) fmt::print("{}\n", light_stats_line(c_, *a));
  }

  void schema(const std::optional<std::string>& like) {
    std::string sql =
        "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'";
    std::vector<Value> params;
    if (like) {
      sql += " AND tbl_name LIKE ?";
      params.push_back(Value{*like});
    }
    sql += " ORDER BY tbl_name, type DESC, name";
    auto a = c_.query(sql, params);
    if (!a.ok()) return report(a.error());
    for (const auto& row : a->rows) fmt::print("{};\n", client::cell_text(row[0]));
    if (stats) fmt::print("{}\n", light_stats_line(c_, *a));
  }

  client::LightClient& c_;
};

struct ShellArgs {
  LightFlags light;
  std::string mode = "list";
  bool header = false, as_json = false, stats = false;
  std::vector<std::string> cmds;
  std::string sql;
};

int run_shell(const ShellArgs& a) {
  auto client = open_light_client(a.light);
  Shell sh(*client);
  if (!mode_of(a.mode)) throw CliError(1, fmt::format("--mode {}: list, table, csv, json or line", a.mode));
  sh.mode = a.as_json ? Mode::json : *mode_of(a.mode);
  sh.headers = a.header || sh.mode == Mode::table;
  sh.stats = a.stats;
  for (const auto& c : a.cmds) {
    if (!c.empty() && c[0] == '.' ? !sh.dot(c) : !sh.run_sql(c)) return sh.worst;
  }
  if (!a.sql.empty()) {
    if (a.sql[0] == '.') sh.dot(a.sql);
    else sh.run_sql(a.sql);
    return sh.worst;
  }
  const bool tty = ::isatty(STDIN_FILENO);
  if (tty) {
    fmt::print("swarmlite shell: every answer verified against the log's signed head.\n"
               "Enter \".help\" for usage hints.\n");
  }
  std::string pending, line;
  while (true) {
    if (tty) {
      std::fputs(pending.empty() ? "swarmlite> " : "      ...> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (pending.empty() && !line.empty() && line[0] == '.') {
      if (!sh.dot(line)) break;
      continue;
    }
    pending += line;
    pending += '\n';
    if (sqlite3_complete(pending.c_str())) {
      sh.run_sql(pending);
      pending.clear();
    }
  }
  if (!pending.empty() && pending.find_first_not_of(" \t\r\n") != std::string::npos) {
    sh.run_sql(pending);  // a last statement without ';'
  }
  return tty ? 0 : sh.worst;
}

}  // namespace

void add_shell_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "shell",
      "Interactive SQL over pages fetched lazily from untrusted nodes, each one verified (a light "
      "client); one query and exit when SQL is given");
  auto a = std::make_shared<ShellArgs>();
  add_light_flags(*cmd, a->light, /*peer_required=*/true);
  cmd->add_option("--mode", a->mode, "Output: list (default), table, csv, json, line");
  cmd->add_flag("--json,-j", a->as_json, "JSON output (as --mode json; sqlite3's -json works too)");
  cmd->add_flag("--header", a->header, "Column names above the rows (sqlite3's -header)");
  cmd->add_flag("--stats", a->stats, "After each query: head, pages fetched, bytes, round trips");
  cmd->add_option("--cmd", a->cmds,
                  "Run this SQL or dot-command first (repeatable; sqlite3's -cmd)");
  cmd->add_option("sql", a->sql, "SQL (or a dot-command) to run; the shell then exits");
  cmd->callback([a] {
    const int rc = run_shell(*a);
    if (rc != 0) throw CliError(rc, rc == 2 ? "an answer did not verify" : "a statement failed");
  });
}

}  // namespace swarmlite::cli
#endif
