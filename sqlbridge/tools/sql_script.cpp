// Running SQL scripts on a primary (see sql_script.h).
#include "sqlbridge/tools/sql_script.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>

#include "sqlbridge/sqlite_util.h"

namespace swarmlite {
namespace {

// Largest SQL text of one transaction when deferred foreign keys make a
// transaction grow (EntryLimits::max_entry_bytes is 16 MiB for the whole entry).
constexpr size_t kMaxGrownBytes = 14 << 20;

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// The first `n` tokens of `sql`: bare words upper-cased, quoted names unquoted
// (as written), any other character alone. Whitespace and comments skipped.
std::vector<std::string> first_tokens(std::string_view sql, size_t n) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < sql.size() && out.size() < n) {
    unsigned char c = static_cast<unsigned char>(sql[i]);
    if (std::isspace(c)) {
      ++i;
    } else if (sql.compare(i, 2, "--") == 0) {
      size_t nl = sql.find('\n', i);
      i = nl == std::string_view::npos ? sql.size() : nl + 1;
    } else if (sql.compare(i, 2, "/*") == 0) {
      size_t end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? sql.size() : end + 2;
    } else if (std::isalnum(c) || c == '_' || c == '$' || c >= 0x80) {
      size_t j = i;
      while (j < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_' ||
                                sql[j] == '$' || static_cast<unsigned char>(sql[j]) >= 0x80)) {
        ++j;
      }
      out.push_back(upper(sql.substr(i, j - i)));
      i = j;
    } else if (c == '"' || c == '\'' || c == '`' || c == '[') {
      char close = c == '[' ? ']' : static_cast<char>(c);
      std::string word;
      size_t j = i + 1;
      while (j < sql.size()) {
        if (sql[j] == close) {
          if (close != ']' && j + 1 < sql.size() && sql[j + 1] == close) {
            word += close;
            j += 2;
            continue;
          }
          break;
        }
        word += sql[j++];
      }
      out.push_back(word);
      i = j + 1;
    } else {
      out.emplace_back(1, static_cast<char>(c));
      ++i;
    }
  }
  return out;
}

bool iequal(std::string_view a, std::string_view b) { return upper(a) == upper(b); }

std::string excerpt(std::string_view sql) {
  std::string out;
  for (char c : sql.substr(0, 160)) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  if (sql.size() > 160) out += "…";
  return out;
}

enum class Kind { run, skip, fk_off, fk_on };

struct Classified {
  Kind kind = Kind::run;
  std::optional<std::string> savepoint;  // SAVEPOINT name
  std::optional<std::string> release;    // RELEASE name
};

Result<Classified> classify(const ScriptStatement& st) {
  auto refuse = [&](const std::string& why) -> Error {
    return make_error(Errc::refused, "line {}: {}: {} (nothing was run)", st.line, excerpt(st.sql), why);
  };
  const auto t = first_tokens(st.sql, 10);
  auto tok = [&](size_t i) { return i < t.size() ? t[i] : std::string(); };
  Classified c;
  const std::string& k = t.empty() ? std::string() : t[0];
  if (k == "BEGIN" || k == "COMMIT" || k == "END") {
    c.kind = Kind::skip;  // swarmlite owns the transactions
  } else if (k == "ROLLBACK") {
    if (tok(1) == "TO" || (tok(1) == "TRANSACTION" && tok(2) == "TO")) return c;
    return refuse("ROLLBACK: the script asks to undo its own work (.dump writes this when it could not "
                  "read the whole source); refusing rather than committing part of it");
  } else if (k == "SAVEPOINT") {
    c.savepoint = tok(1);
  } else if (k == "RELEASE") {
    c.release = tok(1) == "SAVEPOINT" ? tok(2) : tok(1);
  } else if (k == "PRAGMA") {
    size_t at = 1;
    if (tok(2) == ".") at = 3;  // PRAGMA schema.name
    const std::string name = upper(tok(at));
    std::string value = tok(at + 1) == "=" || tok(at + 1) == "(" ? upper(tok(at + 2)) : std::string();
    if (name == "FOREIGN_KEYS" && (value == "OFF" || value == "0" || value == "FALSE" || value == "NO")) {
      c.kind = Kind::fk_off;
    } else if (name == "FOREIGN_KEYS" && (value == "ON" || value == "1" || value == "TRUE" || value == "YES")) {
      c.kind = Kind::fk_on;
    } else if (name == "WRITABLE_SCHEMA") {
      return refuse("PRAGMA writable_schema: the script writes sqlite_schema directly (this is how .dump "
                    "writes virtual tables such as fts5), which swarmlite refuses; load such a "
                    "database with `swarmlite import --from FILE` instead");
    } else if (name == "DEFER_FOREIGN_KEYS" || name == "TABLE_INFO" || name == "TABLE_XINFO" ||
               name == "INDEX_LIST" || name == "INDEX_INFO" || name == "INDEX_XINFO" ||
               name == "FOREIGN_KEY_LIST") {
      return c;
    } else {
      return refuse("PRAGMA " + tok(at) +
                    ": connection settings are fixed for determinism (docs/determinism.md); a script "
                    "may only say PRAGMA foreign_keys=ON/OFF (translated) and defer_foreign_keys");
    }
  } else if (k == "ATTACH" || k == "DETACH") {
    return refuse(k + ": another database file is outside the log");
  } else if (k == "VACUUM") {
    return refuse("VACUUM rewrites the whole file outside the transaction");
  } else if (k == "INSERT" || k == "REPLACE" || k == "UPDATE" || k == "DELETE" || k == "CREATE" ||
             k == "DROP" || k == "ALTER") {
    for (const auto& w : t) {
      if (iequal(w, "sqlite_schema") || iequal(w, "sqlite_master") || iequal(w, "sqlite_temp_schema") ||
          iequal(w, "sqlite_temp_master")) {
        return refuse("writing " + w + " directly is refused; load a database whose dump does this "
                      "(virtual tables) with `swarmlite import --from FILE` instead");
      }
    }
  }
  return c;
}


struct Item {
  const ScriptStatement* st;
  bool defer;        // foreign keys deferred (the script said foreign_keys=OFF before it)
  size_t depth;      // open savepoints after it
};

// A plain CREATE TABLE (column definitions, not AS SELECT).
bool is_plain_create_table(const std::string& sql) {
  const auto t = first_tokens(sql, 12);
  size_t i = 0;
  if (t.size() < 4 || t[0] != "CREATE" || t[1] != "TABLE") return false;
  i = 2;
  if (t.size() > 5 && t[2] == "IF" && t[3] == "NOT" && t[4] == "EXISTS") i = 5;
  ++i;                                                // the name
  if (i + 1 < t.size() && t[i] == ".") i += 2;        // schema.name
  return i < t.size() && t[i] == "(";
}

// The table an INSERT/REPLACE writes, upper-cased ("" if not one).
std::string insert_target(const std::string& sql) {
  const auto t = first_tokens(sql, 8);
  size_t i = 0;
  if (t.empty() || (t[0] != "INSERT" && t[0] != "REPLACE")) return {};
  while (i < t.size() && t[i] != "INTO") ++i;
  if (++i >= t.size()) return {};
  if (i + 2 < t.size() && t[i + 1] == ".") i += 2;
  return upper(t[i]);
}

// Inside a .dump-like stretch (creates at [a, c), the rest up to b): puts the
// INSERTs into the created tables in foreign key order (parents first, each
// table's rows in script order) so that transactions stay bounded when the
// schema declares children first; the other statements (sqlite_sequence,
// indexes, views, triggers, statistics) follow in their order. Only when the
// rest is nothing but such INSERTs followed by such statements: a trigger,
// UPDATE or DELETE among the INSERTs could see the order, so nothing moves.
void order_inserts(std::vector<Item>& items, size_t a, size_t c, size_t b) {
  if (c == a || c == b) return;
  // The foreign key graph of the created tables, from a scratch in-memory database.
  auto scratch = open_sqlite(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!scratch.ok()) return;
  for (size_t i = a; i < c; ++i) {
    if (!exec_sql(scratch->get(), items[i].st->sql).ok()) return;
  }
  std::vector<std::string> names;
  std::map<std::string, size_t> by_name;
  {
    auto st = prepare(scratch->get(), "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite^_%' ESCAPE '^' ORDER BY rowid");
    if (!st.ok()) return;
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      std::string n = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
      by_name[upper(n)] = names.size();
      names.push_back(n);
    }
  }
  std::vector<std::vector<size_t>> edges(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    auto fk = prepare(scratch->get(), "SELECT \"table\" FROM pragma_foreign_key_list(?1)");
    if (!fk.ok()) return;
    sqlite3_bind_text(fk->get(), 1, names[i].c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(fk->get()) == SQLITE_ROW) {
      auto it = by_name.find(upper(reinterpret_cast<const char*>(sqlite3_column_text(fk->get(), 0))));
      if (it != by_name.end()) edges[i].push_back(it->second);
    }
  }
  std::vector<size_t> rank(names.size());
  size_t r = 0;
  for (const auto& group : dependency_groups(edges)) {
    for (size_t i : group) rank[i] = r;
    ++r;
  }
  // Check the shape: data INSERTs first, then only statements that do not write user rows.
  bool in_tail = false;
  for (size_t i = c; i < b; ++i) {
    const std::string target = insert_target(items[i].st->sql);
    const bool data = !target.empty() && by_name.count(target);
    if (data && in_tail) return;
    if (data) continue;
    const auto t = first_tokens(items[i].st->sql, 3);
    const std::string k = t.empty() ? std::string() : t[0];
    const bool harmless = k == "CREATE" || k == "ANALYZE" ||
                          (!target.empty() && (target == "SQLITE_SEQUENCE" || target.rfind("SQLITE_STAT", 0) == 0)) ||
                          (k == "DELETE" && t.size() > 2 && upper(t[2]) == "SQLITE_SEQUENCE");
    if (!harmless) return;
    if (k == "CREATE" && t.size() > 1 && t[1] == "TRIGGER") in_tail = true;
    if (!(k == "CREATE" && t.size() > 1 && (t[1] == "INDEX" || t[1] == "UNIQUE" || t[1] == "VIEW"))) in_tail = true;
  }
  auto key = [&](const Item& it) -> size_t {
    const std::string target = insert_target(it.st->sql);
    auto f = by_name.find(target);
    return f == by_name.end() ? r : rank[f->second];  // everything else after the rows
  };
  std::stable_sort(items.begin() + static_cast<std::ptrdiff_t>(c), items.begin() + static_cast<std::ptrdiff_t>(b),
                   [&](const Item& x, const Item& y) { return key(x) < key(y); });
}

// With foreign keys on, SQLite cannot even prepare an INSERT into a table whose
// parent table does not exist yet; a .dump (foreign_keys=OFF) creates each
// table just before its rows, children possibly before parents. So inside a
// foreign_keys=OFF stretch of the script that never drops, alters or uses
// savepoints, its plain CREATE TABLE statements run first (in their order):
// a table definition depends on nothing, references to later tables included.
void hoist_create_tables(std::vector<Item>& items) {
  size_t a = 0;
  while (a < items.size()) {
    if (!items[a].defer) {
      ++a;
      continue;
    }
    size_t b = a;
    bool safe = true;
    while (b < items.size() && items[b].defer) {
      const auto t = first_tokens(items[b].st->sql, 1);
      const std::string k = t.empty() ? std::string() : t[0];
      if (k == "DROP" || k == "ALTER" || k == "SAVEPOINT" || k == "RELEASE" || k == "ROLLBACK") safe = false;
      ++b;
    }
    if (safe) {
      auto first = items.begin() + static_cast<std::ptrdiff_t>(a);
      auto creates_end = std::stable_partition(first, items.begin() + static_cast<std::ptrdiff_t>(b),
                                               [](const Item& it) { return is_plain_create_table(it.st->sql); });
      order_inserts(items, a, static_cast<size_t>(creates_end - items.begin()), b);
    }
    a = b;
  }
}

bool is_deferred_fk_failure(const Error& e) {
  return e.message.find("FOREIGN KEY constraint failed") != std::string::npos &&
         e.message.find("commit of entry") != std::string::npos;
}

// "statement K: …" → K.
std::optional<size_t> failing_statement(const Error& e) {
  const std::string_view prefix = "statement ";
  size_t at = e.message.find(prefix);
  if (at == std::string::npos) return std::nullopt;
  size_t i = at + prefix.size(), k = 0;
  bool any = false;
  while (i < e.message.size() && std::isdigit(static_cast<unsigned char>(e.message[i]))) {
    k = k * 10 + static_cast<size_t>(e.message[i++] - '0');
    any = true;
  }
  if (!any || i >= e.message.size() || e.message[i] != ':') return std::nullopt;
  return k;
}

}  // namespace

Result<std::vector<ScriptStatement>> split_sql_script(std::string_view text) {
  std::string buf(text);
  std::vector<ScriptStatement> out;
  size_t start = 0, line = 1, counted = 0;  // `line` is the line of position `counted`
  auto line_of = [&](size_t pos) {
    for (; counted < pos; ++counted) {
      if (buf[counted] == '\n') ++line;
    }
    return line;
  };
  auto emit = [&](size_t end, std::string sql_suffix) {
    std::string_view piece(buf.data() + start, end - start);
    size_t first = skip_space_and_comments(piece);
    if (!is_blank_sql(piece)) {
      out.push_back({std::string(piece.substr(first)) + sql_suffix, line_of(start + first)});
    }
    start = end;
  };
  // Lexer state, so that only a ';' outside strings and comments is offered to sqlite3_complete.
  size_t i = 0;
  while (i < buf.size()) {
    char c = buf[i];
    if (c == '\'' || c == '"' || c == '`' || c == '[') {
      char close = c == '[' ? ']' : c;
      size_t j = i + 1;
      while (j < buf.size() && buf[j] != close) ++j;
      i = j + 1;  // a doubled quote is two strings back to back: same effect
    } else if (buf.compare(i, 2, "--") == 0) {
      size_t nl = buf.find('\n', i);
      i = nl == std::string::npos ? buf.size() : nl + 1;
    } else if (buf.compare(i, 2, "/*") == 0) {
      size_t end = buf.find("*/", i + 2);
      i = end == std::string::npos ? buf.size() : end + 2;
    } else if (c == ';') {
      // Writing '\0' at buf.size() is allowed (it already is '\0').
      char saved = buf[i + 1];
      buf[i + 1] = '\0';
      bool complete = sqlite3_complete(buf.data() + start) != 0;
      buf[i + 1] = saved;
      ++i;
      if (complete) emit(i, "");
    } else {
      ++i;
    }
  }
  if (start < buf.size() && !is_blank_sql(std::string_view(buf).substr(start))) {
    std::string rest = buf.substr(start) + ";";
    if (sqlite3_complete(rest.c_str()) != 0 && rest.find('\0') == std::string::npos) {
      emit(buf.size(), ";");
    } else {
      std::string_view piece = std::string_view(buf).substr(start);
      size_t first = skip_space_and_comments(piece);
      return make_error(Errc::invalid_argument,
                        "line {}: the script ends inside a statement (a missing ';', or an unterminated "
                        "string, comment or CREATE TRIGGER … END): {}",
                        line_of(start + first), excerpt(piece.substr(first)));
    }
  }
  return out;
}

Result<ScriptStats> run_sql_script(Primary& primary, std::string_view text, const ScriptOptions& options) {
  SWL_ASSIGN(std::vector<ScriptStatement> statements, split_sql_script(text));
  ScriptStats stats;
  std::vector<Item> items;
  bool defer = false;
  std::vector<std::string> savepoints;
  for (const auto& st : statements) {
    SWL_ASSIGN(Classified c, classify(st));
    if (c.kind != Kind::run) {
      ++stats.skipped;
      if (c.kind == Kind::fk_off) defer = true;
      if (c.kind == Kind::fk_on) defer = false;
      continue;
    }
    if (c.savepoint) savepoints.push_back(*c.savepoint);
    if (c.release) {
      auto it = std::find_if(savepoints.rbegin(), savepoints.rend(),
                             [&](const std::string& s) { return iequal(s, *c.release); });
      if (it != savepoints.rend()) savepoints.erase(std::prev(it.base()), savepoints.end());
    }
    items.push_back({&st, defer, savepoints.size()});
  }
  if (items.empty()) return stats;
  hoist_create_tables(items);

  // The end of the transaction starting at `a` (exclusive).
  auto batch_end = [&](size_t a) {
    if (options.single_transaction) return items.size();
    size_t b = a, bytes = 0;
    while (b < items.size()) {
      if (b > a && items[b].defer != items[a].defer) break;
      bytes += items[b].st->sql.size();
      ++b;
      if ((b - a >= options.max_statements || bytes >= options.max_bytes) && items[b - 1].depth == 0) break;
    }
    return b;
  };
  auto committed_note = [&](size_t a) {
    if (a == 0) return std::string(" (nothing was committed)");
    return fmt::format(" ({} statement(s) up to line {} were committed in {} transaction(s) before it)", a,
                       items[a - 1].st->line, stats.transactions);
  };

  size_t a = 0;
  while (a < items.size()) {
    size_t b = batch_end(a);
    while (true) {
      const bool deferred = options.single_transaction
                                ? std::any_of(items.begin(), items.end(), [](const Item& it) { return it.defer; })
                                : items[a].defer;
      std::vector<Statement> tx;
      tx.reserve(b - a + 1);
      if (deferred) tx.push_back(Statement{"PRAGMA defer_foreign_keys = ON", {}});
      size_t bytes = 0;
      for (size_t i = a; i < b; ++i) {
        tx.push_back(Statement{items[i].st->sql, {}});
        bytes += items[i].st->sql.size();
      }
      if (options.before_entry) {
        if (Status go_on = options.before_entry(); !go_on.ok()) {
          Error e = go_on.take_error();
          e.message = fmt::format("stopped before line {}: {}{}", items[a].st->line, e.message, committed_note(a));
          return e;
        }
      }
      auto r = primary.execute(std::span<const Statement>(tx), nullptr,
                               options.bounds.value_or(primary.default_bounds()));
      if (r.ok()) break;
      Error e = r.take_error();
      if (deferred && is_deferred_fk_failure(e)) {
        // Rows referencing rows further on: take the next transaction in and retry.
        size_t next = b < items.size() && items[b].defer ? batch_end(b) : b;
        if (next > b && bytes < kMaxGrownBytes) {
          b = next;
          ++stats.retries;
          continue;
        }
        return make_error(Errc::sqlite_error,
                          "lines {}–{}: foreign keys do not hold at the end of the transaction{}: {}{}",
                          items[a].st->line, items[b - 1].st->line,
                          next > b ? " (it grew to its size limit looking for the rows they reference)" : "",
                          e.message, committed_note(a));
      }
      if (auto k = failing_statement(e)) {
        size_t idx = *k - (deferred ? 1 : 0);
        if (*k >= (deferred ? 1u : 0u) && a + idx < b) {
          const ScriptStatement& st = *items[a + idx].st;
          e.message = fmt::format("line {}: {}: {}{}", st.line, excerpt(st.sql), e.message, committed_note(a));
          return e;
        }
      }
      e.message = fmt::format("lines {}–{}: {}{}", items[a].st->line, items[b - 1].st->line, e.message,
                              committed_note(a));
      return e;
    }
    stats.statements += b - a;
    ++stats.transactions;
    a = b;
    if (options.progress) options.progress(a, items.size());
  }
  return stats;
}

}  // namespace swarmlite
