// Differential SQL fuzzer (docs/determinism.md, "Differential fuzzing").
//
// Generates random schemas and write transactions, runs them through a Primary,
// replays every committed entry on a Replica (entry by entry, state root compared
// per entry) and on a second Replica fed through its verified Log and reopened
// from time to time; at the end the three files must be page-identical. A
// refused or failed transaction is fine. Failures:
//   divergence  a replica fails on, or computes another root for, a logged entry;
//   escape      a committed entry evaluated a host- or connection-dependent
//               function (the authorizer's refused functions, the libm ones,
//               build identification, total_changes(), ...) — "taint" wrappers,
//               installed in every connection of this process through
//               sqlite3_auto_extension, compute the same value as the built-in
//               and record the call while the primary executes.
// Everything (generator, entry seeds, pinned clock) derives from --seed, so a
// failure reproduces with the printed command.
//
//   sql_diff_fuzz [--seed N] [--txns N] [--seconds S] [--keep-going] [--record FILE]
//                 [--no-taint] [--dir DIR] [--verbose]
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/keys.h"
#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/replica.h"
#include "sqlbridge/sqlite_util.h"

namespace fs = std::filesystem;
using namespace swarmlite;

namespace {

// ---------------------------------------------------------------------------
// Options

struct Options {
  uint64_t seed = 1;
  uint64_t txns = 2000;
  double seconds = 0;  // 0 = no time limit
  bool keep_going = false;
  bool taint = true;
  bool verbose = false;
  bool reopen_always = false;  // sync replica B after every commit, reopening it each time
  bool vtabs = true;           // generate FTS5 tables (--no-vtab: none, so replica C's batches are lean)
  std::string record;          // file: every transaction's SQL and outcome (+ FILE.tx for --replay)
  std::string replay;          // run the transactions of a FILE.tx instead of generating them
  std::string dir;             // working directory (default: a fresh one under /dev/shm)
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "sql_diff_fuzz: %s\n"
               "usage: sql_diff_fuzz [--seed N] [--txns N] [--seconds S] [--keep-going]\n"
               "                     [--record FILE] [--replay FILE] [--no-taint] [--dir DIR]\n"
               "                     [--verbose] [--no-vtab]\n"
               "  --seed N      generator, entry seeds and clock derive from N (default 1)\n"
               "  --txns N      transactions to generate (default 2000)\n"
               "  --seconds S   stop after S seconds even if fewer transactions ran\n"
               "  --keep-going  report escapes and go on (a divergence always stops)\n"
               "  --record FILE write every transaction's SQL and outcome to FILE, and the\n"
               "                transactions in a form --replay reads to FILE.tx\n"
               "  --replay FILE run the transactions of FILE (a .tx file, one per block;\n"
               "                delete blocks to minimise a failure) instead of generating\n"
               "  --no-taint    do not install the taint wrappers (escape oracle off)\n"
               "  --no-vtab     create no FTS5 tables: replica C's replay batches are then\n"
               "                lean (docs/determinism.md \"Lean batches\")\n"
               "  --reopen-always  reopen and sync replica B after every commit (slow; for\n"
               "                minimising failures that need a restart)\n",
               why);
  std::exit(2);
}

uint64_t parse_u64(const char* s, const char* flag) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0')
    usage((std::string("bad number for ") + flag).c_str());
  return v;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--seed")
      o.seed = parse_u64(next(), "--seed");
    else if (a == "--txns")
      o.txns = parse_u64(next(), "--txns");
    else if (a == "--seconds")
      o.seconds = static_cast<double>(parse_u64(next(), "--seconds"));
    else if (a == "--keep-going")
      o.keep_going = true;
    else if (a == "--no-taint")
      o.taint = false;
    else if (a == "--no-vtab")
      o.vtabs = false;
    else if (a == "--verbose")
      o.verbose = true;
    else if (a == "--reopen-always")
      o.reopen_always = true;
    else if (a == "--record")
      o.record = next();
    else if (a == "--replay")
      o.replay = next();
    else if (a == "--dir")
      o.dir = next();
    else if (a == "--help" || a == "-h")
      usage("help");
    else
      usage(("unknown flag " + a).c_str());
  }
  return o;
}

// ---------------------------------------------------------------------------
// Built-in functions (PRAGMA function_list, read at start-up)

struct Fn {
  std::string name;
  char type = 's';  // s scalar, a aggregate, w window
  int narg = 0;     // -1: any
  int flags = 0;
};

std::vector<Fn> read_function_list() {
  sqlite3* db = nullptr;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
    std::fprintf(stderr, "sql_diff_fuzz: cannot open :memory:\n");
    std::exit(1);
  }
  std::vector<Fn> out;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT name, type, narg, flags FROM pragma_function_list", -1, &st,
                     nullptr);
  while (st != nullptr && sqlite3_step(st) == SQLITE_ROW) {
    Fn f;
    f.name = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    const unsigned char* t = sqlite3_column_text(st, 1);
    f.type = t != nullptr ? static_cast<char>(t[0]) : 's';
    f.narg = sqlite3_column_int(st, 2);
    f.flags = sqlite3_column_int(st, 3);
    out.push_back(f);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  std::sort(out.begin(), out.end(), [](const Fn& a, const Fn& b) {
    return std::tie(a.name, a.narg, a.type) < std::tie(b.name, b.narg, b.type);
  });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const Fn& a, const Fn& b) {
                          return a.name == b.name && a.narg == b.narg && a.type == b.type;
                        }),
            out.end());
  return out;
}

// Functions whose value depends on the host or the connection rather than on the
// entry: a committed entry must never evaluate one. The authorizer's own refusals
// (probed at start-up) are added to these.
const std::set<std::string> kHostDependent = {"sqlite_version",
                                              "sqlite_source_id",
                                              "sqlite_compileoption_used",
                                              "sqlite_compileoption_get",
                                              "fts5_source_id",
                                              "total_changes",
                                              "acos",
                                              "acosh",
                                              "asin",
                                              "asinh",
                                              "atan",
                                              "atan2",
                                              "atanh",
                                              "cos",
                                              "cosh",
                                              "sin",
                                              "sinh",
                                              "tan",
                                              "tanh",
                                              "exp",
                                              "ln",
                                              "log",
                                              "log2",
                                              "log10",
                                              "pow",
                                              "power"};
// Never wrapped: compiled inline by SQLite (no function call to intercept), or
// unsafe to call from a wrapper.
const std::set<std::string> kNotWrappable = {"sqlite_offset",
                                             "load_extension",
                                             "fts3_tokenizer",
                                             "unlikely",
                                             "likely",
                                             "likelihood",
                                             "iif",
                                             "coalesce",
                                             "affinity",
                                             "implies_nonnull_row",
                                             "expr_compare",
                                             "expr_implies_expr"};

// ---------------------------------------------------------------------------
// Instruments installed in every connection (sqlite3_auto_extension):
//  - taint wrappers: same value as the built-in (computed on a private side
//    connection opened before the auto-extension was registered, or from the C
//    API), plus a record of the call while the primary executes;
//  - an opcode budget on the primary's statements (progress handler), so a
//    generated trigger cascade cannot run for ever: it fails the transaction
//    (SQLITE_INTERRUPT) on the primary, which logs nothing. Deterministic (it
//    counts VM steps, not time); replicas never hit it (unarmed while they apply,
//    and a logged entry stayed under the budget on the primary).

struct Wrapped {
  std::string name;
  int narg = 0;
  int flags = 0;
  sqlite3_stmt* side = nullptr;  // SELECT name(?, ...) on the side connection
};

struct Instruments {
  sqlite3* side = nullptr;
  std::vector<std::unique_ptr<Wrapped>> wrapped;
  bool armed = false;  // the primary is executing a generated transaction
  std::vector<std::string> hits;
  uint64_t ticks = 0;
  uint64_t tick_budget = 20000;  // × 1000 VM steps
};
Instruments g_inst;

void wrapper_fn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  auto* w = static_cast<Wrapped*>(sqlite3_user_data(ctx));
  if (g_inst.armed) g_inst.hits.push_back(w->name);
  if (w->name == "total_changes") {
    sqlite3_result_int64(ctx, sqlite3_total_changes64(sqlite3_context_db_handle(ctx)));
    return;
  }
  sqlite3_stmt* st = w->side;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  for (int i = 0; i < argc; ++i) sqlite3_bind_value(st, i + 1, argv[i]);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    sqlite3_result_value(ctx, sqlite3_column_value(st, 0));
  } else {
    sqlite3_result_error(ctx, sqlite3_errmsg(g_inst.side), -1);
  }
  sqlite3_reset(st);
}

int progress_cb(void*) {
  if (!g_inst.armed) return 0;
  return ++g_inst.ticks > g_inst.tick_budget ? 1 : 0;
}

int instrument_connection(sqlite3* db, char**, const sqlite3_api_routines*) {
  sqlite3_progress_handler(db, 1000, progress_cb, nullptr);
  for (auto& w : g_inst.wrapped) {
    // The built-in's own flags, so SQLite allows the wrapper exactly where it
    // allows the built-in (index expressions, schema with trusted_schema=off).
    const int flags =
        SQLITE_UTF8 | (w->flags & (SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY | SQLITE_INNOCUOUS));
    sqlite3_create_function_v2(db, w->name.c_str(), w->narg, flags, w.get(), wrapper_fn, nullptr,
                               nullptr, nullptr);
  }
  return SQLITE_OK;
}

void install_instruments(const std::vector<Fn>& fns, const std::set<std::string>& tainted,
                         bool taint) {
  if (taint) {
    if (sqlite3_open(":memory:", &g_inst.side) != SQLITE_OK) {
      std::fprintf(stderr, "sql_diff_fuzz: cannot open the side connection\n");
      std::exit(1);
    }
    for (const Fn& f : fns) {
      if (f.type != 's' || tainted.count(f.name) == 0 || kNotWrappable.count(f.name) != 0) continue;
      auto w = std::make_unique<Wrapped>();
      w->name = f.name;
      w->narg = f.narg;
      w->flags = f.flags;
      if (f.name != "total_changes") {
        if (f.narg < 0) continue;  // variadic: SQLite has none among these
        std::string q = "SELECT " + f.name + "(";
        for (int i = 0; i < f.narg; ++i) q += i == 0 ? "?" : ", ?";
        q += ")";
        if (sqlite3_prepare_v2(g_inst.side, q.c_str(), -1, &w->side, nullptr) != SQLITE_OK)
          continue;
      }
      g_inst.wrapped.push_back(std::move(w));
    }
  }
  // NOLINTNEXTLINE: SQLite's documented way to pass an extension entry point.
  sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(&instrument_connection));
}

// ---------------------------------------------------------------------------
// Deterministic random source (std::mt19937_64 is specified exactly; the
// helpers avoid the unspecified std distributions).

class Rng {
 public:
  explicit Rng(uint64_t seed) : mt_(seed) {}
  uint64_t next() { return mt_(); }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : mt_() % n; }
  bool chance(int percent) { return below(100) < static_cast<uint64_t>(percent); }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }

 private:
  std::mt19937_64 mt_;
};

// ---------------------------------------------------------------------------
// Schema model, read back from the primary after any transaction with DDL.

struct Column {
  std::string name;
  int hidden = 0;  // table_xinfo: 0 ordinary, 2 virtual generated, 3 stored generated
  int pk = 0;      // position in the primary key (0: not in it)
};
struct TableInfo {
  std::string name;
  bool view = false;
  bool fts = false;
  bool without_rowid = false;
  std::vector<Column> cols;
  int64_t rows = 0;            // approximate, refreshed from time to time
  bool writable_view = false;  // a view with an INSTEAD OF trigger
  // The single-column primary key, if any (a valid FOREIGN KEY / ON CONFLICT target).
  std::string single_pk() const {
    std::string out;
    int n = 0;
    for (const Column& c : cols) {
      if (c.pk > 0) {
        out = c.name;
        ++n;
      }
    }
    return n == 1 ? out : std::string();
  }
  std::vector<std::string> insertable() const {
    std::vector<std::string> out;
    for (const Column& c : cols) {
      if (c.hidden == 0) out.push_back(c.name);
    }
    return out;
  }
  std::vector<std::string> all_names() const {
    std::vector<std::string> out;
    for (const Column& c : cols) out.push_back(c.name);
    return out;
  }
};
struct Schema {
  std::vector<TableInfo> tables;  // tables and views (fts5 shadow tables excluded)
  std::vector<std::string> indexes, triggers;
  std::map<std::string, std::string> sql;  // object name → its CREATE statement
  std::vector<const TableInfo*> real_tables() const {
    std::vector<const TableInfo*> out;
    for (const TableInfo& t : tables) {
      if (!t.view) out.push_back(&t);
    }
    return out;
  }
  std::vector<const TableInfo*> views() const {
    std::vector<const TableInfo*> out;
    for (const TableInfo& t : tables) {
      if (t.view) out.push_back(&t);
    }
    return out;
  }
};

std::string text_col(sqlite3_stmt* st, int i) {
  const unsigned char* t = sqlite3_column_text(st, i);
  return t == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(t));
}

bool read_schema(const Primary& primary, Schema& out, bool count_rows, std::string& err) {
  auto snap = primary.open_snapshot();
  if (!snap.ok()) {
    err = snap.error().to_string();
    return false;
  }
  sqlite3* db = snap->db.get();
  Schema s;
  std::vector<std::string> fts_names;
  {
    auto st = prepare(db,
                      "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema "
                      "WHERE name NOT LIKE 'sqlite_%' ORDER BY name");
    if (!st.ok()) {
      err = st.error().to_string();
      return false;
    }
    std::vector<std::tuple<std::string, std::string, std::string>> rows;
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      std::string type = text_col(st->get(), 0), name = text_col(st->get(), 1),
                  sql = text_col(st->get(), 3);
      if (type == "table" && sql.rfind("CREATE VIRTUAL TABLE", 0) == 0) fts_names.push_back(name);
      rows.emplace_back(type, name, sql);
    }
    for (auto& row : rows) {
      const std::string& type = std::get<0>(row);
      const std::string& name = std::get<1>(row);
      const std::string& sql = std::get<2>(row);
      s.sql[name] = sql;
      if (type == "index") {
        if (!sql.empty()) s.indexes.push_back(name);
        continue;
      }
      if (type == "trigger") {
        s.triggers.push_back(name);
        continue;
      }
      bool shadow = false;
      for (const std::string& f : fts_names) {
        if (name.size() > f.size() && name.compare(0, f.size() + 1, f + "_") == 0) shadow = true;
      }
      if (shadow) continue;
      TableInfo t;
      t.name = name;
      t.view = type == "view";
      t.fts = sql.rfind("CREATE VIRTUAL TABLE", 0) == 0;
      t.without_rowid = sql.find("WITHOUT ROWID") != std::string::npos;
      s.tables.push_back(std::move(t));
    }
  }
  for (TableInfo& t : s.tables) {
    auto st = prepare(db, "SELECT name, hidden, pk FROM pragma_table_xinfo(?)");
    if (!st.ok()) {
      err = st.error().to_string();
      return false;
    }
    sqlite3_bind_text(st->get(), 1, t.name.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st->get()) == SQLITE_ROW) {
      Column c;
      c.name = text_col(st->get(), 0);
      c.hidden = sqlite3_column_int(st->get(), 1);
      c.pk = sqlite3_column_int(st->get(), 2);
      if (t.fts && c.hidden == 1) continue;  // fts5's hidden columns
      t.cols.push_back(c);
    }
    if (count_rows && !t.view) {
      auto cnt = prepare(db, "SELECT count(*) FROM \"" + t.name + "\"");
      if (cnt.ok() && sqlite3_step(cnt->get()) == SQLITE_ROW)
        t.rows = sqlite3_column_int64(cnt->get(), 0);
    } else {
      for (const TableInfo& old : out.tables) {
        if (old.name == t.name) t.rows = old.rows;
      }
    }
  }
  for (const auto& kv : s.sql) {
    if (kv.second.find("INSTEAD OF") == std::string::npos) continue;
    for (TableInfo& t : s.tables) {
      if (t.view && kv.second.find("ON \"" + t.name + "\"") != std::string::npos)
        t.writable_view = true;
    }
  }
  out = std::move(s);
  return true;
}

// ---------------------------------------------------------------------------
// The generator

struct ExprCtx {
  std::vector<std::string> cols;  // column references allowed here (already qualified)
  bool subqueries = false;        // (SELECT …) allowed
  bool nondeterministic = true;  // random(), date('now'), … allowed (not in CHECK/index/generated)
  bool aggregates = false;       // bare aggregate calls allowed (view with GROUP BY, …)
  bool stored = false;           // a schema site (DEFAULT, CHECK, generated, index, view, trigger)
  int max_depth = 3;
};

class Generator {
 public:
  Generator(uint64_t seed, std::vector<Fn> fns, const std::set<std::string>& tainted, bool vtabs = true)
      : rng_(seed), vtabs_(vtabs), fns_(std::move(fns)) {
    for (const Fn& f : fns_) {
      // Operators (->, ->>) and keywords (current_date, …) are listed as functions
      // but cannot be called by name; the generator writes them as operators/keywords.
      bool callable = !f.name.empty() && f.name.rfind("current_", 0) != 0;
      for (char ch : f.name)
        callable = callable && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_');
      if (!callable) continue;
      if (f.type == 's') {
        if (tainted.count(f.name) != 0)
          tainted_.push_back(f);
        else
          scalars_.push_back(f);
        if ((f.flags & SQLITE_INNOCUOUS) != 0 && tainted.count(f.name) == 0)
          innocuous_.push_back(f);
      } else if (f.type == 'a') {
        aggregates_.push_back(f);
      } else if (f.type == 'w') {
        windows_.push_back(f);
      }
    }
  }

  Rng& rng() { return rng_; }
  void set_schema(const Schema& s) { schema_ = s; }
  const Schema& schema() const { return schema_; }

  // One transaction. `ddl` is set when it may change the schema.
  std::vector<Statement> transaction(bool& ddl) {
    ddl = false;
    std::vector<Statement> tx;
    const int n = 1 + static_cast<int>(rng_.below(rng_.chance(15) ? 8 : 3));
    int open_savepoints = 0;
    for (int i = 0; i < n; ++i) {
      const uint64_t r = rng_.below(100);
      if (schema_.real_tables().empty() || r < 9) {
        tx.push_back(plain(ddl_statement()));
        ddl = true;
      } else if (r < 14) {
        tx.push_back(plain("SAVEPOINT sp" + std::to_string(open_savepoints)));
        ++open_savepoints;
      } else if (r < 19 && open_savepoints > 0) {
        --open_savepoints;
        const std::string sp = "sp" + std::to_string(open_savepoints);
        if (rng_.chance(60)) {
          tx.push_back(plain("ROLLBACK TO " + sp));
          if (rng_.chance(50))
            tx.push_back(plain("RELEASE " + sp));
          else
            ++open_savepoints;
        } else {
          tx.push_back(plain("RELEASE " + sp));
        }
      } else if (r < 21) {
        tx.push_back(plain(failing_statement()));
      } else if (r < 22) {
        tx.push_back(plain(refused_statement()));
      } else if (r < 23 && rng_.chance(50)) {
        // The planner statistics: a rolled-back ANALYZE or a write to
        // sqlite_stat1 must not leave a connection planning differently from
        // one opened afresh, and ANALYZE and REINDEX must not depend on the
        // order of the connection's schema (docs/determinism.md "Planner
        // statistics").
        tx.push_back(plain(stats_statement()));
      } else if (r < 24) {
        // Several statements in one SQL text, split by SQLite.
        tx.push_back(plain(dml() + ";\n" + dml()));
      } else {
        tx.push_back(dml_statement());
      }
    }
    return tx;
  }

 private:
  static Statement plain(std::string s) { return Statement{std::move(s), {}}; }

  // --- values -------------------------------------------------------------
  std::string text_literal() {
    static const std::vector<std::string> pool = {
        "",           "a",
        "abc",        "ABC",
        "x y z",      "é",
        "日本",       "NaN",
        "1",          "-7",
        "3.5",        "1e5",
        "0x10",       "2024-02-29 12:34:56",
        "2000-01-01", "12:00",
        "now",        "+1 day",
        "-3 hours",   "start of month",
        "localtime",  "utc",
        "unixepoch",  "weekday 3",
        "subsec",     "auto",
        "julianday",  "%Y-%m-%d %H:%M:%f",
        "%s",         "%j %w",
        "%d-%s",      "%x",
        "%q",         "%Q",
        "%c",         "%.3f",
        "%5d",        "$",
        "$.a",        "$.a[1]",
        "$.b.c",      "$[0]",
        "$[#-1]",     "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\"}",
        "[1,2,3]",    "[]",
        "{}",         "{\"a\":1",
        "true",       "null",
        "abc%",       "_b%",
        "*a?",        "[a-c]*",
        "word",       "hello world",
        "NEAR(a b)",  "a OR b",
        "x'",         " padded ",
        "tab\there",  "ǅ"};
    if (rng_.chance(70)) return quote(rng_.pick(pool));
    std::string s;
    const int len = static_cast<int>(rng_.below(8));
    for (int i = 0; i < len; ++i) s += "abcdeXYZ019 _-"[rng_.below(14)];
    return quote(s);
  }
  static std::string quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
      out += c;
      if (c == '\'') out += '\'';
    }
    return out + "'";
  }
  std::string int_literal() {
    static const std::vector<std::string> edges = {"9223372036854775807",
                                                   "-9223372036854775808",
                                                   "2147483648",
                                                   "-2147483649",
                                                   "4294967296",
                                                   "0",
                                                   "-0",
                                                   "1",
                                                   "-1",
                                                   "0x7fffffffffffffff",
                                                   "0xffffffffffffffff",
                                                   "9223372036854775808"};
    if (rng_.chance(15)) return rng_.pick(edges);
    return std::to_string(static_cast<int64_t>(rng_.below(2001)) - 1000);
  }
  std::string real_literal() {
    static const std::vector<std::string> edges = {"0.0",     "-0.0",  "0.5",           "1.5",
                                                   "-2.25",   "1e308", "-1e308",        "1e-300",
                                                   "3.14159", "1e999", "123456789.125", "0.1"};
    if (rng_.chance(50)) return rng_.pick(edges);
    return std::to_string(static_cast<int64_t>(rng_.below(200001)) - 100000) + "." +
           std::to_string(rng_.below(1000));
  }
  std::string literal() {
    switch (rng_.below(9)) {
      case 0:
        return "NULL";
      case 1:
      case 2:
        return int_literal();
      case 3:
        return real_literal();
      case 4:
      case 5:
      case 6:
        return text_literal();
      case 7: {
        std::string s = "x'";
        const int len = static_cast<int>(rng_.below(6));
        for (int i = 0; i < len; ++i)
          s += "0123456789abcdef"[rng_.below(16)], s += "0123456789ABCDEF"[rng_.below(16)];
        return s + "'";
      }
      default: {
        static const std::vector<std::string> kw = {"CURRENT_TIMESTAMP", "CURRENT_DATE",
                                                    "CURRENT_TIME", "TRUE", "FALSE"};
        return rng_.pick(kw);
      }
    }
  }
  Value param_value() {
    switch (rng_.below(5)) {
      case 0:
        return Value{};
      case 1:
        return Value{static_cast<int64_t>(rng_.below(2001)) - 1000};
      case 2:
        return Value{static_cast<double>(static_cast<int64_t>(rng_.below(20001)) - 10000) / 8.0};
      case 3: {
        std::string s;
        const int len = static_cast<int>(rng_.below(6));
        for (int i = 0; i < len; ++i) s += "abcxyz 01"[rng_.below(9)];
        return Value{s};
      }
      default: {
        Bytes b(rng_.below(5));
        for (auto& x : b) x = static_cast<uint8_t>(rng_.below(256));
        return Value{b};
      }
    }
  }

  // --- expressions --------------------------------------------------------
  std::string small_count() { return std::to_string(rng_.below(40)); }

  std::string func_call(const ExprCtx& c, int depth) {
    // Where escapes hide (schema sites) host-dependent functions are common; in
    // direct SQL the authorizer refuses them by name, so they are rare there.
    // Schema sites mostly get innocuous functions: SQLite itself refuses the
    // others there (trusted_schema=off), at every later use of the table.
    const std::vector<Fn>* pool = &scalars_;
    if (c.stored && !innocuous_.empty() && rng_.chance(97)) pool = &innocuous_;
    if (!tainted_.empty() && rng_.chance(c.stored ? 12 : 1)) pool = &tainted_;
    if (c.aggregates && !aggregates_.empty() && rng_.chance(25)) pool = &aggregates_;
    const Fn& f = rng_.pick(*pool);
    int narg = f.narg >= 0 ? f.narg : static_cast<int>(rng_.below(5));
    std::string s = f.name + "(";
    if (pool == &aggregates_ && narg > 0 && rng_.chance(15)) s += "DISTINCT ";
    for (int i = 0; i < narg; ++i) {
      if (i > 0) s += ", ";
      // Sizes stay small: randomblob(1e9) would allocate a gigabyte.
      if (f.name == "randomblob" || f.name == "zeroblob" || (f.name == "char" && narg > 8)) {
        s += rng_.chance(70) ? small_count() : "(abs(" + expr(c, depth + 1) + ") % 64)";
      } else if (f.name == "likelihood" && i == 1) {
        s += rng_.chance(90) ? "0.25" : literal();
      } else if ((f.name == "substr" || f.name == "substring") && i > 0) {
        s += rng_.chance(70) ? int_literal() : expr(c, depth + 1);
      } else if (rng_.chance(25)) {
        s += text_literal();
      } else {
        s += expr(c, depth + 1);
      }
    }
    return s + ")";
  }

  // Schema sites avoid virtual tables (SQLite refuses them there: "unsafe use of
  // virtual table", at every later write to the table).
  std::string table_for_subquery(const TableInfo** out, bool stored) {
    if (schema_.tables.empty()) return "";
    const TableInfo& t = rng_.pick(schema_.tables);
    if (stored && t.fts && !rng_.chance(5)) return "";
    *out = &t;
    return t.name;
  }

  std::string subquery(const ExprCtx& c, int depth) {
    const TableInfo* t = nullptr;
    std::string name = table_for_subquery(&t, c.stored);
    if (t == nullptr) return literal();
    ExprCtx inner = c;
    inner.cols.clear();
    for (const std::string& col : t->all_names()) inner.cols.push_back("\"" + name + "\"." + col);
    inner.aggregates = false;
    const uint64_t r = rng_.below(10);
    if (r < 3 && !aggregates_.empty()) {
      const Fn& f = rng_.pick(aggregates_);
      int narg = f.narg >= 0 ? f.narg : 1;
      std::string s = "(SELECT " + f.name + "(";
      for (int i = 0; i < narg; ++i) s += (i ? ", " : "") + expr(inner, depth + 1);
      return s + ") FROM \"" + name + "\")";
    }
    if (r < 5 && !windows_.empty()) {
      const Fn& f = rng_.pick(windows_);
      int narg = f.narg >= 0 ? f.narg : 1;
      std::string s = "(SELECT " + f.name + "(";
      for (int i = 0; i < narg; ++i)
        s +=
            (i ? ", " : "") + (f.name == "ntile" || f.name == "nth_value" ? std::string("2")
                                                                          : expr(inner, depth + 1));
      std::string order = inner.cols.empty() ? "1" : rng_.pick(inner.cols);
      return s + ") OVER (ORDER BY " + order + ") FROM \"" + name + "\" ORDER BY 1 LIMIT 1)";
    }
    if (r < 6)
      return "EXISTS (SELECT 1 FROM \"" + name + "\" WHERE " + expr(inner, depth + 1) + ")";
    if (r < 7)
      return expr(c, depth + 1) + " IN (SELECT " + expr(inner, depth + 1) + " FROM \"" + name +
             "\")";
    return "(SELECT " + expr(inner, depth + 1) + " FROM \"" + name + "\" WHERE " +
           expr(inner, depth + 1) + " ORDER BY 1 LIMIT 1)";
  }

  std::string expr(const ExprCtx& c, int depth = 0) {
    if (depth >= c.max_depth) {
      if (!c.cols.empty() && rng_.chance(50)) return rng_.pick(c.cols);
      return literal();
    }
    const uint64_t r = rng_.below(100);
    if (r < 22) return literal();
    if (r < 42 && !c.cols.empty()) return rng_.pick(c.cols);
    if (r < 70) {
      std::string call = func_call(c, depth);
      if (!c.nondeterministic && rng_.chance(50)) return literal();  // fewer certain failures
      return call;
    }
    if (r < 82) {
      static const std::vector<std::string> ops = {
          "+",   "-",  "*",  "/",      "%",    "||",   "=", "<>", "<",  ">",  "<=", ">=",
          "AND", "OR", "IS", "IS NOT", "LIKE", "GLOB", "&", "|",  "<<", ">>", "->", "->>"};
      std::string op = rng_.pick(ops);
      // like()/glob() are not innocuous: refused in schema sites (trusted_schema=off).
      if (c.stored && (op == "LIKE" || op == "GLOB") && !rng_.chance(5)) op = "=";
      return "(" + expr(c, depth + 1) + " " + op + " " + expr(c, depth + 1) + ")";
    }
    if (r < 86) {
      return "CASE WHEN " + expr(c, depth + 1) + " THEN " + expr(c, depth + 1) + " ELSE " +
             expr(c, depth + 1) + " END";
    }
    if (r < 90) {
      static const std::vector<std::string> types = {"INTEGER", "TEXT", "REAL", "NUMERIC", "BLOB"};
      return "CAST(" + expr(c, depth + 1) + " AS " + rng_.pick(types) + ")";
    }
    if (r < 94 && c.subqueries) return subquery(c, depth);
    switch (rng_.below(6)) {
      case 0:
        return "(" + expr(c, depth + 1) + " IS NULL)";
      case 1:
        return "(NOT " + expr(c, depth + 1) + ")";
      case 2:
        return "(-" + expr(c, depth + 1) + ")";
      case 3:
        return "(" + expr(c, depth + 1) + " COLLATE " + collation() + ")";
      case 4:
        return "(" + expr(c, depth + 1) + " BETWEEN " + expr(c, depth + 1) + " AND " +
               expr(c, depth + 1) + ")";
      default:
        return "(" + expr(c, depth + 1) + " IN (" + expr(c, depth + 1) + ", " + expr(c, depth + 1) +
               "))";
    }
  }

  std::string collation() {
    static const std::vector<std::string> c = {"BINARY", "NOCASE", "RTRIM"};
    return rng_.pick(c);
  }

  // --- DDL ----------------------------------------------------------------
  std::string fresh(const char* prefix) { return prefix + std::to_string(counter_++); }

  std::string ddl_statement() {
    const auto tables = schema_.real_tables();
    const uint64_t r = rng_.below(100);
    if (tables.empty() || (r < 22 && schema_.tables.size() < 10)) return create_table();
    if (r < 34) return create_index();
    if (r < 42) return create_view();
    if (r < 60) return create_trigger();
    if (r < 72) return alter_table();
    if (r < 76 && vtabs_)
      return "CREATE VIRTUAL TABLE " + fresh("f") + " USING fts5(a, b" +
             (rng_.chance(30) ? ", tokenize='porter'" : "") + ")";
    return drop_something();
  }

  std::string column_type(bool strict) {
    static const std::vector<std::string> loose = {"",       "INTEGER", "INT",      "TEXT",
                                                   "REAL",   "NUMERIC", "BLOB",     "VARCHAR(10)",
                                                   "DOUBLE", "BOOLEAN", "DATETIME", "ANY"};
    static const std::vector<std::string> strict_types = {"INTEGER", "INT",  "TEXT",
                                                          "REAL",    "BLOB", "ANY"};
    return strict ? rng_.pick(strict_types) : rng_.pick(loose);
  }

  std::string fk_action() {
    static const std::vector<std::string> a = {"CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT",
                                               "NO ACTION"};
    return rng_.pick(a);
  }

  std::string create_table() {
    const std::string name = fresh("t");
    const bool strict = rng_.chance(10);
    const int kind = static_cast<int>(
        rng_.below(4));  // 0 rowid, 1 INTEGER PRIMARY KEY, 2 WITHOUT ROWID, 3 composite PK
    const int ncols = 1 + static_cast<int>(rng_.below(6));
    std::vector<std::string> names;
    for (int i = 0; i < ncols; ++i) names.push_back("c" + std::to_string(i));
    ExprCtx def;  // DEFAULT: constant expressions, functions allowed
    def.stored = true;
    def.nondeterministic = true;
    def.max_depth = 2;
    ExprCtx chk;
    chk.stored = true;
    for (const std::string& n : names) chk.cols.push_back(n);
    chk.nondeterministic = false;
    chk.max_depth = 2;
    std::string s = "CREATE TABLE " + name + "(";
    bool has_generated = false;
    for (int i = 0; i < ncols; ++i) {
      if (i > 0) s += ", ";
      s += names[i];
      if (i == 0 && kind == 1) {
        s += " INTEGER PRIMARY KEY";
        if (rng_.chance(40)) s += " AUTOINCREMENT";
        continue;
      }
      s += " " + column_type(strict);
      if (i > 0 && rng_.chance(12)) {
        ExprCtx gen = chk;
        gen.cols.erase(gen.cols.begin() + i);
        s +=
            " GENERATED ALWAYS AS (" + expr(gen) + ")" + (rng_.chance(50) ? " STORED" : " VIRTUAL");
        has_generated = true;
        continue;
      }
      if (rng_.chance(15)) s += " COLLATE " + collation();
      if (rng_.chance(10)) s += " NOT NULL";
      if (rng_.chance(12)) s += " UNIQUE";
      if (rng_.chance(35)) s += " DEFAULT " + (rng_.chance(40) ? literal() : "(" + expr(def) + ")");
      if (rng_.chance(12)) s += " CHECK (" + expr(chk) + ")";
      if (rng_.chance(12) && !schema_.real_tables().empty()) {
        // The parent key must be unique, or every write to the child fails
        // ("foreign key mismatch"): its single-column primary key.
        const TableInfo* p = rng_.pick(schema_.real_tables());
        if (!p->fts && !p->single_pk().empty()) {
          s += " REFERENCES \"" + p->name + "\"(" + p->single_pk() + ")";
          if (rng_.chance(60)) s += " ON DELETE " + fk_action();
          if (rng_.chance(60)) s += " ON UPDATE " + fk_action();
        }
      }
    }
    if (kind == 2 || kind == 3) {
      s += ", PRIMARY KEY(c0";
      if (ncols > 1 && rng_.chance(40)) s += ", c" + std::to_string(1 + rng_.below(ncols - 1));
      s += ")";
    }
    if (rng_.chance(15) && ncols > 1)
      s += ", UNIQUE(c0, c" + std::to_string(1 + rng_.below(ncols - 1)) + ")";
    if (rng_.chance(15)) s += ", CHECK (" + expr(chk) + ")";
    if (rng_.chance(8) && !schema_.real_tables().empty()) {
      const TableInfo* p = rng_.pick(schema_.real_tables());
      if (!p->fts && !p->single_pk().empty()) {
        s += ", FOREIGN KEY(c" + std::to_string(rng_.below(ncols)) + ") REFERENCES \"" + p->name +
             "\"(" + p->single_pk() + ") ON DELETE " + fk_action() + " ON UPDATE " + fk_action();
      }
    }
    s += ")";
    std::vector<std::string> opts;
    if (kind == 2) opts.push_back("WITHOUT ROWID");
    if (strict) opts.push_back("STRICT");
    for (size_t i = 0; i < opts.size(); ++i) s += (i ? ", " : " ") + opts[i];
    (void)has_generated;
    return s;
  }

  const TableInfo* pick_table(bool allow_fts = true) {
    auto t = schema_.real_tables();
    if (!allow_fts)
      t.erase(std::remove_if(t.begin(), t.end(), [](const TableInfo* x) { return x->fts; }),
              t.end());
    if (t.empty()) return nullptr;
    return rng_.pick(t);
  }

  std::string create_index() {
    const TableInfo* t = pick_table(false);
    if (t == nullptr || t->cols.empty()) return create_table();
    ExprCtx c;
    c.stored = true;
    for (const Column& col : t->cols) c.cols.push_back(col.name);
    c.nondeterministic = false;
    c.max_depth = 2;
    std::string s = std::string("CREATE ") + (rng_.chance(25) ? "UNIQUE " : "") + "INDEX " +
                    fresh("i") + " ON \"" + t->name + "\"(";
    const int n = 1 + static_cast<int>(rng_.below(3));
    for (int i = 0; i < n; ++i) {
      if (i > 0) s += ", ";
      s += rng_.chance(35) ? "(" + expr(c) + ")" : rng_.pick(c.cols);
      if (rng_.chance(15)) s += " COLLATE " + collation();
      if (rng_.chance(20)) s += " DESC";
    }
    s += ")";
    if (rng_.chance(30)) s += " WHERE " + expr(c);
    return s;
  }

  std::string select_core(const TableInfo& t, int ncols, bool group, bool stored) {
    ExprCtx c;
    c.stored = stored;
    for (const std::string& col : t.all_names()) c.cols.push_back("\"" + t.name + "\"." + col);
    c.subqueries = true;
    c.aggregates = group;
    c.max_depth = 2;
    std::string s = "SELECT ";
    for (int i = 0; i < ncols; ++i) s += (i ? ", " : "") + expr(c) + " AS v" + std::to_string(i);
    s += " FROM \"" + t.name + "\"";
    if (rng_.chance(40)) s += " WHERE " + expr(c);
    if (group && rng_.chance(50) && !c.cols.empty()) s += " GROUP BY " + rng_.pick(c.cols);
    return s;
  }

  std::string create_view() {
    if (schema_.tables.empty()) return create_table();
    const TableInfo& t = rng_.pick(schema_.tables);
    if (t.fts && !rng_.chance(5)) return create_index();
    return "CREATE VIEW " + fresh("v") + " AS " +
           select_core(t, 1 + static_cast<int>(rng_.below(3)), rng_.chance(30), true);
  }

  std::string trigger_body_statement(const TableInfo& on, bool has_new, bool has_old) {
    ExprCtx c;
    c.stored = true;
    for (const std::string& col : on.all_names()) {
      if (has_new) c.cols.push_back("NEW." + col);
      if (has_old) c.cols.push_back("OLD." + col);
    }
    c.subqueries = true;
    c.max_depth = 2;
    // A trigger writes only to tables older than its own (by the number in the
    // generated name): no trigger recursion. recursive_triggers is on and SQLite
    // allows 1000 levels; a recursive cascade keeps thousands of cursors open, and
    // closing each walks the list (quadratic), which the opcode budget does not see.
    std::vector<const TableInfo*> older;
    for (const TableInfo* x : schema_.real_tables()) {
      if (object_number(x->name) < object_number(on.name) && (!x->fts || rng_.chance(3)))
        older.push_back(x);
    }
    const TableInfo* target = older.empty() ? nullptr : rng_.pick(older);
    const uint64_t r = rng_.below(10);
    if (r < 2) {
      return std::string("SELECT ") +
             (rng_.chance(50) ? "RAISE(ABORT, 'trigger says no')" : "RAISE(IGNORE)") + " WHERE " +
             expr(c);
    }
    if (r < 3) return "SELECT " + expr(c);
    if (target == nullptr) return "SELECT " + expr(c);
    std::vector<std::string> cols = target->insertable();
    if (cols.empty()) return "SELECT " + expr(c);
    ExprCtx tc = c;
    for (const std::string& col : target->all_names()) tc.cols.push_back(col);
    if (r < 6) {
      std::string s = std::string("INSERT ") + (rng_.chance(30) ? "OR IGNORE " : "") + "INTO \"" +
                      target->name + "\"(";
      for (size_t i = 0; i < cols.size(); ++i) s += (i ? ", " : "") + cols[i];
      s += ") VALUES (";
      for (size_t i = 0; i < cols.size(); ++i) s += (i ? ", " : "") + expr(c);
      return s + ")";
    }
    if (r < 8) {
      return "UPDATE \"" + target->name + "\" SET " + rng_.pick(cols) + " = " + expr(tc) +
             " WHERE " + expr(tc);
    }
    return "DELETE FROM \"" + target->name + "\" WHERE " + expr(tc);
  }

  std::string create_trigger() {
    const uint64_t r = rng_.below(10);
    const auto views = schema_.views();
    const bool instead = r < 2 && !views.empty();
    const TableInfo* on = instead ? rng_.pick(views) : pick_table(rng_.chance(3));
    if (on == nullptr) return create_table();
    static const std::vector<std::string> events = {"INSERT", "UPDATE", "DELETE"};
    std::string ev = rng_.pick(events);
    const bool has_new = ev != "DELETE", has_old = ev != "INSERT";
    std::string s = "CREATE TRIGGER " + fresh("tr") + " " +
                    (instead           ? "INSTEAD OF"
                     : rng_.chance(50) ? "BEFORE"
                                       : "AFTER") +
                    " " + ev;
    if (ev == "UPDATE" && rng_.chance(40) && !on->cols.empty())
      s += " OF " + rng_.pick(on->cols).name;
    s += " ON \"" + on->name + "\" FOR EACH ROW";
    if (rng_.chance(40)) {
      ExprCtx c;
      c.stored = true;
      for (const std::string& col : on->all_names()) {
        if (has_new) c.cols.push_back("NEW." + col);
        if (has_old) c.cols.push_back("OLD." + col);
      }
      c.subqueries = true;
      c.max_depth = 2;
      s += " WHEN " + expr(c);
    }
    s += " BEGIN ";
    const int n = 1 + static_cast<int>(rng_.below(3));
    for (int i = 0; i < n; ++i) s += trigger_body_statement(*on, has_new, has_old) + "; ";
    return s + "END";
  }

  static uint64_t object_number(const std::string& name) {
    size_t i = name.size();
    while (i > 0 && std::isdigit(static_cast<unsigned char>(name[i - 1]))) --i;
    return i == name.size() ? 0 : std::strtoull(name.c_str() + i, nullptr, 10);
  }

  std::string alter_table() {
    const TableInfo* t = pick_table(false);
    if (t == nullptr) return create_table();
    const uint64_t r = rng_.below(10);
    if (r < 5) {
      ExprCtx def;
      def.stored = true;
      def.max_depth = 2;
      std::string s =
          "ALTER TABLE \"" + t->name + "\" ADD COLUMN " + fresh("a") + " " + column_type(false);
      if (rng_.chance(15)) {
        ExprCtx gen;
        gen.stored = true;
        for (const Column& c : t->cols) gen.cols.push_back(c.name);
        gen.nondeterministic = false;
        gen.max_depth = 2;
        return s + " GENERATED ALWAYS AS (" + expr(gen) + ") VIRTUAL";
      }
      if (rng_.chance(50)) s += " DEFAULT " + (rng_.chance(50) ? literal() : "(" + expr(def) + ")");
      if (rng_.chance(10)) s += " CHECK (" + expr(def) + ")";
      return s;
    }
    if (r < 7 && !t->cols.empty()) {
      return "ALTER TABLE \"" + t->name + "\" RENAME COLUMN " + rng_.pick(t->cols).name + " TO " +
             fresh("r");
    }
    if (r < 8) return "ALTER TABLE \"" + t->name + "\" RENAME TO " + fresh("t");
    if (t->cols.empty()) return create_table();
    return "ALTER TABLE \"" + t->name + "\" DROP COLUMN " + rng_.pick(t->cols).name;
  }

  std::string drop_something() {
    const uint64_t r = rng_.below(10);
    if (r < 3 && !schema_.indexes.empty())
      return "DROP INDEX \"" + rng_.pick(schema_.indexes) + "\"";
    if (r < 6 && !schema_.triggers.empty())
      return "DROP TRIGGER \"" + rng_.pick(schema_.triggers) + "\"";
    if (r < 8 && !schema_.views().empty())
      return "DROP VIEW \"" + rng_.pick(schema_.views())->name + "\"";
    const TableInfo* t = pick_table();
    if (t == nullptr || schema_.real_tables().size() < 3) return create_table();
    // Triggers and views naming the table would make every later write to their
    // own table fail ("no such table"); drop them in the same statement text. A
    // table that another one references (FOREIGN KEY) stays.
    const std::string quoted = "\"" + t->name + "\"";
    std::string s;
    for (const auto& kv : schema_.sql) {
      if (kv.first == t->name || kv.second.find(quoted) == std::string::npos) continue;
      if (kv.second.rfind("CREATE TABLE", 0) == 0) return "DROP TRIGGER IF EXISTS no_such_trigger";
      if (kv.second.rfind("CREATE TRIGGER", 0) == 0)
        s += "DROP TRIGGER \"" + kv.first + "\";\n";
      else if (kv.second.rfind("CREATE VIEW", 0) == 0)
        s += "DROP VIEW \"" + kv.first + "\";\n";
    }
    return s + "DROP TABLE " + quoted;
  }

  // --- DML ----------------------------------------------------------------
  std::string returning(const TableInfo& t) {
    if (!rng_.chance(25) || (t.fts && !rng_.chance(5))) return "";
    if (rng_.chance(30)) return " RETURNING *";
    ExprCtx c;
    for (const std::string& col : t.all_names()) c.cols.push_back(col);
    c.subqueries = true;
    c.max_depth = 2;
    return " RETURNING " + expr(c) + (rng_.chance(50) ? ", " + expr(c) : "");
  }

  std::string where(const TableInfo& t) {
    ExprCtx c;
    for (const std::string& col : t.all_names()) c.cols.push_back(col);
    c.subqueries = true;
    c.max_depth = 2;
    if (t.fts && rng_.chance(40)) {
      static const std::vector<std::string> q = {"a", "word", "hello", "x*", "a OR b", "NEAR(a b)"};
      return " WHERE \"" + t.name + "\" MATCH " + quote(rng_.pick(q));
    }
    return " WHERE " + expr(c);
  }

  std::string insert(const TableInfo& t, std::vector<Value>* params) {
    std::vector<std::string> cols = t.insertable();
    if (cols.empty() || rng_.chance(5))
      return "INSERT INTO \"" + t.name + "\" DEFAULT VALUES" + returning(t);
    if (rng_.chance(30) && cols.size() > 1) cols.resize(1 + rng_.below(cols.size()));
    static const std::vector<std::string> verbs = {
        "INSERT",           "INSERT",          "INSERT",         "INSERT OR REPLACE", "REPLACE",
        "INSERT OR IGNORE", "INSERT OR ABORT", "INSERT OR FAIL", "INSERT OR ROLLBACK"};
    std::string s = rng_.pick(verbs) + " INTO \"" + t.name + "\"(";
    for (size_t i = 0; i < cols.size(); ++i) s += (i ? ", " : "") + cols[i];
    s += ") ";
    ExprCtx c;
    c.subqueries = true;
    c.max_depth = 2;
    const uint64_t r = rng_.below(10);
    bool select_source = false;
    if (r < 2 && !schema_.tables.empty()) {
      // INSERT … SELECT from a table or view, sometimes through a CTE.
      const TableInfo& src = rng_.pick(schema_.tables);
      std::string sel = select_core(src, static_cast<int>(cols.size()), false, false);
      if (rng_.chance(30)) {
        s = "WITH src AS (" + sel + " ORDER BY 1 LIMIT 5) " + s + "SELECT * FROM src WHERE true";
      } else {
        s += sel + (sel.find(" WHERE ") == std::string::npos ? " WHERE true" : "") +
             " ORDER BY 1 LIMIT 5";
      }
      select_source = true;
    } else if (params != nullptr && rng_.chance(30)) {
      s += "VALUES (";
      for (size_t i = 0; i < cols.size(); ++i) {
        s += i ? ", ?" : "?";
        params->push_back(param_value());
      }
      s += ")";
    } else {
      s += "VALUES ";
      const int rows = 1 + static_cast<int>(rng_.below(rng_.chance(20) ? 6 : 2));
      for (int row = 0; row < rows; ++row) {
        s += row ? ", (" : "(";
        for (size_t i = 0; i < cols.size(); ++i)
          s += (i ? ", " : "") + (rng_.chance(60) ? literal() : expr(c));
        s += ")";
      }
    }
    (void)select_source;
    if (!t.fts && rng_.chance(25) && s.rfind("REPLACE", 0) != 0) {
      // Upsert.
      if (rng_.chance(40)) {
        s += " ON CONFLICT DO NOTHING";
      } else {
        ExprCtx u;
        for (const std::string& col : t.all_names()) {
          u.cols.push_back("\"" + t.name + "\"." + col);
          u.cols.push_back("excluded." + col);
        }
        u.subqueries = true;
        u.max_depth = 2;
        std::vector<std::string> ins = t.insertable();
        const std::string target =
            t.single_pk().empty() || rng_.chance(10) ? rng_.pick(t.cols).name : t.single_pk();
        s += " ON CONFLICT(" + target + ") DO UPDATE SET " + rng_.pick(ins) + " = " + expr(u);
        if (rng_.chance(30)) s += " WHERE " + expr(u);
      }
    }
    return s + returning(t);
  }

  std::string update(const TableInfo& t) {
    std::vector<std::string> cols = t.insertable();
    if (cols.empty()) return "SELECT 1";
    ExprCtx c;
    for (const std::string& col : t.all_names()) c.cols.push_back(col);
    c.subqueries = true;
    c.max_depth = 2;
    static const std::vector<std::string> verbs = {"UPDATE", "UPDATE", "UPDATE OR IGNORE",
                                                   "UPDATE OR REPLACE", "UPDATE OR FAIL"};
    std::string s = rng_.pick(verbs) + " \"" + t.name + "\" SET ";
    const int n = 1 + static_cast<int>(rng_.below(std::min<size_t>(cols.size(), 3)));
    for (int i = 0; i < n; ++i) s += (i ? ", " : "") + rng_.pick(cols) + " = " + expr(c);
    if (rng_.chance(80)) s += where(t);
    return s + returning(t);
  }

  std::string del(const TableInfo& t) {
    std::string s = "DELETE FROM \"" + t.name + "\"";
    if (t.rows > 200)
      return s + " WHERE " + (t.without_rowid || t.fts ? "random() % 2 = 0" : "rowid % 3 <> 0");
    if (rng_.chance(85)) s += where(t);
    return s + returning(t);
  }

  std::string dml(std::vector<Value>* params = nullptr) {
    const TableInfo* t = pick_table();
    if (t == nullptr) return create_table();
    if (t->fts && rng_.chance(8)) {
      static const std::vector<std::string> cmds = {"optimize", "rebuild", "integrity-check"};
      return "INSERT INTO \"" + t->name + "\"(\"" + t->name + "\") VALUES ('" + rng_.pick(cmds) +
             "')";
    }
    const uint64_t r = rng_.below(100);
    if (t->rows > 150 && r < 30) return del(*t);
    if (r < 50) return insert(*t, params);
    if (r < 75) return update(*t);
    if (r < 90) return del(*t);
    std::vector<const TableInfo*> views = schema_.views();
    views.erase(
        std::remove_if(views.begin(), views.end(),
                       [this](const TableInfo* v) { return !v->writable_view && !rng_.chance(5); }),
        views.end());
    if (!views.empty() && r < 95) {
      const TableInfo* v = rng_.pick(views);
      // Writes to a view: only an INSTEAD OF trigger makes them work.
      if (rng_.chance(50)) return insert(*v, params);
      return update(*v);
    }
    ExprCtx c;
    c.subqueries = true;
    return "SELECT " + expr(c);
  }

  Statement dml_statement() {
    Statement st;
    st.sql = dml(&st.params);
    return st;
  }

  std::string failing_statement() {
    static const std::vector<std::string> fixed = {
        "INSERT INTO no_such_table VALUES (1)", "SELECT json('{')",
        "SELECT abs(-9223372036854775808)", "SELECT no_such_function(1)",
        "SELECT * FROM pragma_no_such"};
    if (rng_.chance(40)) return rng_.pick(fixed);
    const TableInfo* t = pick_table(false);
    if (t == nullptr) return rng_.pick(fixed);
    // Most of these hit a constraint sooner or later.
    return "INSERT INTO \"" + t->name + "\" SELECT * FROM \"" + t->name + "\" LIMIT 3";
  }

  std::string stats_statement() {
    const TableInfo* t = pick_table(false);
    const std::string table = t == nullptr ? std::string("t0") : t->name;
    std::string index = "NULL";
    if (!schema_.indexes.empty() && rng_.chance(70)) index = quote(rng_.pick(schema_.indexes));
    const std::string stat =
        quote(std::to_string(1 + rng_.below(5000)) + " " + std::to_string(1 + rng_.below(100)));
    switch (rng_.below(8)) {
      case 6:
        return "REINDEX";
      case 7:
        return "REINDEX \"" + table + "\"";
      case 0:
        return "ANALYZE";
      case 1:
        return "ANALYZE \"" + table + "\"";
      case 2:
        return "ANALYZE sqlite_schema";
      case 3:
        return "INSERT INTO sqlite_stat1 VALUES (" + quote(table) + ", " + index + ", " + stat +
               ")";
      case 4:
        return "UPDATE sqlite_stat1 SET stat = " + stat + " WHERE idx IS " + index;
      default:
        return "DELETE FROM sqlite_stat1";
    }
  }

  std::string refused_statement() {
    static const std::vector<std::string> fixed = {"PRAGMA foreign_keys = OFF",
                                                   "ATTACH 'x.db' AS x",
                                                   "CREATE TEMP TABLE tt(a)",
                                                   "VACUUM",
                                                   "SELECT total_changes()",
                                                   "SELECT sqlite_version()",
                                                   "SELECT sin(1)",
                                                   "CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)",
                                                   "UPDATE sqlite_swarmlite SET v = 1",
                                                   "BEGIN",
                                                   "SELECT * FROM pragma_data_version"};
    return rng_.pick(fixed);
  }

  Rng rng_;
  bool vtabs_ = true;
  std::vector<Fn> fns_, scalars_, aggregates_, windows_, tainted_, innocuous_;
  Schema schema_;
  uint64_t counter_ = 0;
};

// ---------------------------------------------------------------------------
// Running

std::string render(const std::vector<Statement>& tx) {
  std::string out;
  for (const Statement& st : tx) {
    out += st.sql;
    if (!st.params.empty()) {
      out += "    -- params:";
      for (const Value& v : st.params) {
        if (std::holds_alternative<std::monostate>(v.v))
          out += " NULL";
        else if (const auto* i = std::get_if<int64_t>(&v.v))
          out += " " + std::to_string(*i);
        else if (const auto* d = std::get_if<double>(&v.v))
          out += " " + fmt::format("{}", *d);
        else if (const auto* s = std::get_if<std::string>(&v.v))
          out += " '" + *s + "'";
        else
          out += " x'" + to_hex(std::get<Bytes>(v.v)) + "'";
      }
    }
    out += ";\n";
  }
  return out;
}

// The .tx format: "T" starts a transaction, "S <sql>" a statement, "P <type>
// <value>" a parameter of the last statement (n, i 5, r <%a>, t <text>, b <hex>);
// backslash, newline and CR are escaped as \\, \n, \r.
std::string escape_line(const std::string& in) {
  std::string out;
  for (char c : in) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out;
}
std::string unescape_line(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\\' && i + 1 < in.size()) {
      const char n = in[++i];
      out += n == 'n' ? '\n' : n == 'r' ? '\r' : n;
    } else {
      out += in[i];
    }
  }
  return out;
}
std::string serialize(const std::vector<Statement>& tx) {
  std::string out = "T\n";
  for (const Statement& st : tx) {
    out += "S " + escape_line(st.sql) + "\n";
    for (const Value& v : st.params) {
      if (std::holds_alternative<std::monostate>(v.v))
        out += "P n\n";
      else if (const auto* i = std::get_if<int64_t>(&v.v))
        out += "P i " + std::to_string(*i) + "\n";
      else if (const auto* d = std::get_if<double>(&v.v)) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%a", *d);
        out += std::string("P r ") + buf + "\n";
      } else if (const auto* t = std::get_if<std::string>(&v.v))
        out += "P t " + escape_line(*t) + "\n";
      else
        out += "P b " + to_hex(std::get<Bytes>(v.v)) + "\n";
    }
  }
  return out;
}
std::vector<std::vector<Statement>> read_tx_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) usage(("cannot read " + path).c_str());
  std::vector<std::vector<Statement>> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line == "T") {
      out.emplace_back();
    } else if (line.rfind("S ", 0) == 0 && !out.empty()) {
      out.back().push_back(Statement{unescape_line(line.substr(2)), {}});
    } else if (line.rfind("P ", 0) == 0 && !out.empty() && !out.back().empty()) {
      const char type = line.size() > 2 ? line[2] : 'n';
      const std::string arg = line.size() > 4 ? line.substr(4) : "";
      Value v;
      if (type == 'i')
        v.v = static_cast<int64_t>(std::strtoll(arg.c_str(), nullptr, 10));
      else if (type == 'r')
        v.v = std::strtod(arg.c_str(), nullptr);
      else if (type == 't')
        v.v = unescape_line(arg);
      else if (type == 'b') {
        Bytes b;
        for (size_t k = 0; k + 1 < arg.size(); k += 2) {
          b.push_back(static_cast<uint8_t>(std::stoi(arg.substr(k, 2), nullptr, 16)));
        }
        v.v = b;
      }
      out.back().back().params.push_back(v);
    }
  }
  return out;
}

struct Stats {
  uint64_t txns = 0, committed = 0, failed = 0, refused = 0, interrupted = 0, escapes = 0,
           divergences = 0;
  uint64_t full = 0;  // SQLITE_FULL (AUTOINCREMENT exhausted), reported as io_error
  uint64_t replica_b_reopens = 0, replica_b_syncs = 0;
  std::map<std::string, uint64_t> escape_functions;
};

class Fuzzer {
 public:
  explicit Fuzzer(Options o) : opt_(std::move(o)), clock_rng_(opt_.seed ^ 0x5eed5eed5eedULL) {}

  int run(const std::vector<Fn>& fns, const std::set<std::string>& tainted) {
    tainted_ = tainted;
    for (const Fn& f : fns) uncalled_.insert(f.name);
    const size_t distinct_functions = uncalled_.size();
    const auto t0 = std::chrono::steady_clock::now();
    if (opt_.dir.empty()) {
      fs::path base =
          fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
      dir_ = base / ("swl-sqlfuzz-" + std::to_string(::getpid()) + "-" + std::to_string(opt_.seed));
    } else {
      dir_ = opt_.dir;
    }
    if (!opt_.record.empty()) {
      record_.open(opt_.record);
      record_tx_.open(opt_.record + ".tx");
    }
    std::vector<std::vector<Statement>> replay;
    if (!opt_.replay.empty()) {
      replay = read_tx_file(opt_.replay);
      opt_.txns = replay.size();
    }
    keys_ = KeyPair::generate();
    if (int rc = open_world(); rc != 0) return rc;

    Generator gen(opt_.seed, fns, tainted_, opt_.vtabs);
    Schema schema;
    std::string err;
    if (!read_schema(*primary_, schema, true, err)) return fatal("reading the schema: " + err);
    gen.set_schema(schema);

    for (uint64_t i = 0; i < opt_.txns; ++i) {
      if (opt_.seconds > 0 && (i & 63) == 0 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >
              opt_.seconds) {
        break;
      }
      txn_ = i;
      bool ddl = false;
      std::vector<Statement> tx = replay.empty() ? gen.transaction(ddl) : replay[i];
      if (!replay.empty()) ddl = false;
      if ((i & 255) == 0) progress(t0);
      int rc = step(tx, ddl, gen, schema);
      if (rc == 0) continue;
      if (rc == kCorruptWorld) {
        ++corrupt_worlds_;
      } else if (!(rc == kDiverged && opt_.keep_going)) {
        return rc;
      } else {
        ++stats_.divergences;
      }
      // Go on in a new world (fresh primary and replicas, empty schema): replica
      // A latched its divergence, or SQLite's file is corrupt.
      ++epoch_;
      close_world();
      if (rc = open_world(); rc != 0) return rc;
      if (!read_schema(*primary_, schema, true, err)) return fatal("reading the schema: " + err);
      gen.set_schema(schema);
    }
    return finish(fns, t0, distinct_functions);
  }

 private:
  static constexpr int kDiverged = 3;
  static constexpr int kCorruptWorld = 4;  // SQLite corrupted its own file, alike on every node
  uint64_t corrupt_worlds_ = 0;

  // A line on stderr every minute, for long runs.
  void progress(std::chrono::steady_clock::time_point t0) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_progress_ < std::chrono::seconds(60)) return;
    if (last_progress_ == std::chrono::steady_clock::time_point{}) {
      last_progress_ = now;
      return;
    }
    last_progress_ = now;
    const double secs = std::chrono::duration<double>(now - t0).count();
    std::fprintf(stderr,
                 "sql_diff_fuzz progress: %" PRIu64 " transactions in %.0f s (%.0f/s), %" PRIu64
                 " committed, %" PRIu64 " escapes, %" PRIu64 " divergences\n",
                 stats_.txns, secs, static_cast<double>(stats_.txns) / std::max(secs, 1e-9),
                 stats_.committed, stats_.escapes, stats_.divergences);
  }
  std::chrono::steady_clock::time_point last_progress_{};

  void close_world() {
    primary_.reset();
    replica_a_.reset();
    replica_b_.reset();
    std::error_code ec;
    if (stats_.divergences == 0 || !opt_.keep_going) return;
    // Keep the first world that diverged, drop later ones (a long run could fill /dev/shm).
    if (stats_.divergences > 1) fs::remove_all(world_dir_, ec);
  }

  int open_world() {
    world_dir_ = dir_ / ("world" + std::to_string(epoch_));
    fs::remove_all(world_dir_);
    fs::create_directories(world_dir_);
    PrimaryOptions po;
    po.log_options.sync = false;
    po.sign_every_entries = 1u << 30;  // heads only when the fuzzer asks (sign_head)
    po.seed_source = [this] {
      std::array<uint8_t, 32> s{};
      for (auto& b : s) b = static_cast<uint8_t>(clock_rng_.next());
      return s;
    };
    po.clock_ms = [this] {
      // A pinned clock: mostly small steps, sometimes a jump of days, sometimes
      // backwards (the primary never lets an entry's time go below the last one's).
      const uint64_t r = clock_rng_.below(100);
      if (r < 5)
        now_ms_ += static_cast<int64_t>(clock_rng_.below(90ull * 86400 * 1000));
      else if (r < 10)
        now_ms_ -= static_cast<int64_t>(clock_rng_.below(5000));
      else
        now_ms_ += static_cast<int64_t>(clock_rng_.below(3000));
      return now_ms_;
    };
    auto p = Primary::open(world_dir_ / "p.db", keys_.secret, po);
    if (!p.ok()) return fatal("opening the primary: " + p.error().to_string());
    primary_ = std::move(p).value();
    ReplicaOptions ro;
    ro.log_options.sync = false;
    auto a = Replica::open(world_dir_ / "a.db", world_dir_ / "a.log", keys_.pub, ro);
    if (!a.ok()) return fatal("opening replica A: " + a.error().to_string());
    replica_a_ = std::move(a).value();
    if (int rc = open_replica_b(); rc != 0) return rc;
    // Replica A gets entries straight from the primary's log (apply by entry);
    // catch it up with genesis.
    for (uint64_t s = 0; s < primary_->size(); ++s) {
      if (int rc = apply_a(s, nullptr); rc != 0) return rc;
    }
    return 0;
  }

  // One transaction: on the primary, then replica A (and B now and then).
  int step(const std::vector<Statement>& tx, bool ddl, Generator& gen, Schema& schema) {
    std::string err;
    ++stats_.txns;
    const uint64_t i = txn_;
    const uint64_t size = primary_->size();
    g_inst.hits.clear();
    g_inst.ticks = 0;
    g_inst.armed = true;
    auto r = primary_->execute(tx);
    g_inst.armed = false;
    if (record_tx_.is_open()) record_tx_ << serialize(tx);
    if (record_.is_open()) {
      record_ << "-- txn " << i << ": "
              << (r.ok() ? "committed as entry " + std::to_string(r->seq)
                         : std::string(errc_name(r.error().code)) + ": " + r.error().message)
              << "\n"
              << render(tx) << "\n";
    }
    if (!r.ok()) {
      const Errc code = r.error().code;
      if (code == Errc::refused)
        ++stats_.refused;
      else if (code == Errc::sqlite_error ||
               // SQLITE_FULL from an AUTOINCREMENT table whose rowid reached 2^63-1: the
               // statement's fault, although swarmlite reports it as transient (files are
               // in /dev/shm, far from full).
               (code == Errc::io_error &&
                r.error().message.find("database or disk is full") != std::string::npos)) {
        if (code == Errc::io_error) ++stats_.full;
        ++stats_.failed;
        if (r.error().message.find("interrupted") != std::string::npos) ++stats_.interrupted;
      } else if (code == Errc::corrupt) {
        // SQLite itself found its file corrupt (seen: an FTS5 index after
        // UPDATE OR FAIL, an expression index in SQLite 3.40.1). Every replica
        // replayed the same entries with equal roots, so it is corrupt alike
        // everywhere: not a divergence. Report it and go on in a fresh world.
        std::fprintf(stderr, "sql_diff_fuzz: txn %" PRIu64 ": SQLite reports its file corrupt (%s); "
                     "every replica agrees, going on in a fresh world\n%s\n", i,
                     r.error().to_string().c_str(), render(tx).c_str());
        return kCorruptWorld;
      } else {
        return fail("the primary failed with " + r.error().to_string(), tx);
      }
      if (primary_->size() != size) return fail("a failed transaction changed the log size", tx);
      if (opt_.verbose)
        std::fprintf(stderr, "txn %" PRIu64 ": %s\n", i, r.error().to_string().c_str());
      return 0;
    }
    ++stats_.committed;
    // Which built-in functions have been called in a committed entry (coverage).
    for (auto it = uncalled_.begin(); it != uncalled_.end();) {
      bool found = false;
      for (const Statement& st : tx) found = found || st.sql.find(*it + "(") != std::string::npos;
      it = found ? uncalled_.erase(it) : std::next(it);
    }
    if (!g_inst.hits.empty()) {
      std::set<std::string> names(g_inst.hits.begin(), g_inst.hits.end());
      std::string list;
      for (const std::string& n : names) {
        list += (list.empty() ? "" : ", ") + n + "()";
        ++stats_.escape_functions[n];
      }
      ++stats_.escapes;
      std::string what = "unrefused escape: committed entry " + std::to_string(r->seq) +
                         " evaluated host-dependent " + list;
      if (!opt_.keep_going) return fail(what, tx);
      report(what, tx);
    }
    if (int rc = apply_a(r->seq, &tx); rc != 0) return rc;
    if (replica_a_->state_root() != r->state_root) {
      fail("DIVERGENCE: replica A's root differs from the primary's", tx);
      return kDiverged;
    }
    if (opt_.reopen_always || (stats_.committed % 64) == 0 || clock_rng_.chance(2)) {
      if (int rc = sync_b(tx); rc != 0) return rc;
    }
    if (ddl || (stats_.committed % 50) == 0) {
      if (!read_schema(*primary_, schema, (stats_.committed % 50) == 0, err)) {
        // A fresh read connection cannot parse what the primary committed.
        fail("DIVERGENCE: a fresh connection cannot read the primary's schema: " + err, tx);
        return kDiverged;
      }
      gen.set_schema(schema);
    }
    return 0;
  }

  int finish(const std::vector<Fn>& fns, std::chrono::steady_clock::time_point t0,
             size_t distinct_functions) {
    if (int rc = sync_b({}); rc != 0) return rc;
    // Page-identical files: close everything (the last connection checkpoints).
    const Hash32 root = primary_->state_root();
    const uint64_t size = primary_->size();
    if (Status s = primary_->close(); !s.ok())
      return fatal("closing the primary: " + s.error().to_string());
    primary_.reset();
    replica_a_.reset();
    replica_b_.reset();
    // Replica C: B's log from scratch in one apply_available, in batches of up
    // to 1,024 entries (docs/determinism.md "Batched replay"); page-identical too
    // when it holds the whole log. Its fallbacks say how often a batch's end
    // differed from per-entry replay. At most kReplicaCEntries: on this workload
    // (DDL, triggers, statements over whole tables) a batched replay costs up to
    // 8 times the per-entry one (docs/performance.md "Batched replay"), and a
    // 600 s run's 116,000 entries took over 300 s, past the test's time limit, and
    // 20,000 still took about 2 minutes of a loaded CI run.
    constexpr uint64_t kReplicaCEntries = 5'000;
    const uint64_t c_size = std::min<uint64_t>(size, kReplicaCEntries);
    ReplayStats c_stats;
    {
      ReplicaOptions ro;
      ro.log_options.sync = false;
      auto c = Replica::open(world_dir_ / "c.db", world_dir_ / "b.log", keys_.pub, ro);
      if (!c.ok()) return fatal("opening replica C: " + c.error().to_string());
      auto applied = (*c)->apply_available(c_size);
      if (!applied.ok()) {
        fail("DIVERGENCE: replica C (the log, batched): " + applied.error().to_string(), {});
        return kDiverged;
      }
      // Short of the whole log, the replica itself compared each batch end's
      // root with that entry's.
      if ((*c)->size() != c_size || (c_size == size && (*c)->state_root() != root))
        return fatal("replica C (the log, batched) ends at another state than the primary");
      c_stats = (*c)->replay_stats();
    }
    std::vector<Bytes> pp = swarmlite::testing::file_pages(world_dir_ / "p.db");
    for (const char* other : {"a.db", "b.db", "c.db"}) {
      if (std::string(other) == "c.db" && c_size != size) continue;
      std::vector<Bytes> op = swarmlite::testing::file_pages(world_dir_ / other);
      if (op.size() != pp.size()) {
        return fatal(std::string(other) + " has " + std::to_string(op.size()) +
                     " pages, the primary " + std::to_string(pp.size()));
      }
      for (size_t k = 0; k < pp.size(); ++k) {
        if (pp[k] != op[k])
          return fatal(std::string(other) + " page " + std::to_string(k + 1) + " differs");
      }
    }
    auto tree = StateTree::from_file(world_dir_ / "p.db");
    if (!tree.ok() || tree->root() != root)
      return fatal("the primary's file does not give its state root");
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "sql_diff_fuzz seed %" PRIu64 ": %" PRIu64 " transactions in %.1f s (%.0f/s): %" PRIu64
        " committed, %" PRIu64 " failed (%" PRIu64 " over the step budget, %" PRIu64
        " SQLITE_FULL), %" PRIu64 " refused; %" PRIu64
        " entries, %zu pages; replica B synced %" PRIu64 " times, reopened %" PRIu64
        " times; %zu functions, %zu wrapped; %" PRIu64 " escapes, %" PRIu64 " divergences; %" PRIu64
        " worlds SQLite itself corrupted alike on every node\n",
        opt_.seed, stats_.txns, secs, static_cast<double>(stats_.txns) / std::max(secs, 1e-9),
        stats_.committed, stats_.failed, stats_.interrupted, stats_.full, stats_.refused, size,
        pp.size(), stats_.replica_b_syncs, stats_.replica_b_reopens, fns.size(),
        g_inst.wrapped.size(), stats_.escapes, stats_.divergences, corrupt_worlds_);
    std::printf("  replica C (the first %" PRIu64 " entries, batched): %" PRIu64 " batches of %" PRIu64
                " entries (%" PRIu64 " cut short), %" PRIu64 " fallbacks (%" PRIu64
                " root mismatches), %" PRIu64 " entries one by one; %" PRIu64
                " lean batches, %" PRIu64 " lean misses run again plain\n",
                c_size, c_stats.batches, c_stats.batched_entries, c_stats.cut_batches, c_stats.fallbacks,
                c_stats.mismatches, c_stats.single_entries, c_stats.lean_batches, c_stats.lean_misses);
    std::string never;
    for (const std::string& n : uncalled_) never += " " + n;
    std::printf("  %zu of %zu built-in function names appear in committed entries; not (yet):%s\n",
                distinct_functions - uncalled_.size(), distinct_functions, never.c_str());
    for (const auto& kv : stats_.escape_functions) {
      std::printf("  escaped: %s() in %" PRIu64 " committed entries\n", kv.first.c_str(),
                  kv.second);
    }
    std::fflush(stdout);
    std::error_code ec;
    if (opt_.dir.empty() && stats_.divergences == 0) fs::remove_all(dir_, ec);
    return stats_.escapes == 0 && stats_.divergences == 0 ? 0 : 1;
  }

  int open_replica_b() {
    ReplicaOptions ro;
    ro.log_options.sync = false;
    auto b = Replica::open(world_dir_ / "b.db", world_dir_ / "b.log", keys_.pub, ro);
    if (!b.ok()) {
      // The primary's committed state cannot be opened by a fresh connection
      // (e.g. a schema SQLite calls malformed when it reads it from the file).
      fail("DIVERGENCE: reopening replica B: " + b.error().to_string(), {});
      return kDiverged;
    }
    replica_b_ = std::move(b).value();
    return 0;
  }

  int apply_a(uint64_t seq, const std::vector<Statement>* tx) {
    auto e = primary_->log().entry(seq);
    if (!e.ok())
      return fatal("reading entry " + std::to_string(seq) + ": " + e.error().to_string());
    Status s = replica_a_->apply(*e);
    if (!s.ok()) {
      fail("DIVERGENCE: replica A on entry " + std::to_string(seq) + ": " + s.error().to_string(),
           tx != nullptr ? *tx : std::vector<Statement>{});
      return kDiverged;
    }
    if (replica_a_->state_root() != e->state_root) {
      fail("DIVERGENCE: replica A's root differs from the entry's",
           tx != nullptr ? *tx : std::vector<Statement>{});
      return kDiverged;
    }
    return 0;
  }

  // Replica B: a signed head, the verified log, apply_available; reopened now and then.
  int sync_b(const std::vector<Statement>& tx) {
    auto head = primary_->sign_head();
    if (!head.ok()) return fatal("signing a head: " + head.error().to_string());
    if (opt_.reopen_always || clock_rng_.chance(20)) {
      replica_b_.reset();
      ++stats_.replica_b_reopens;
      if (int rc = open_replica_b(); rc != 0) return rc;
    }
    std::vector<Bytes> entries;
    for (uint64_t s = replica_b_->log().size(); s < head->size; ++s) {
      auto b = primary_->log().entry_bytes(s);
      if (!b.ok()) return fatal("reading entry bytes: " + b.error().to_string());
      entries.push_back(std::move(b).value());
    }
    if (!entries.empty()) {
      Status s = replica_b_->log().append_verified(entries, *head);
      if (!s.ok()) return fatal("replica B rejected the primary's log: " + s.error().to_string());
    }
    auto applied = replica_b_->apply_available();
    if (!applied.ok()) {
      fail("DIVERGENCE: replica B: " + applied.error().to_string(), tx);
      return kDiverged;
    }
    if (replica_b_->size() != head->size || replica_b_->state_root() != head->state_root) {
      fail("DIVERGENCE: replica B's state differs from the signed head", tx);
      return kDiverged;
    }
    ++stats_.replica_b_syncs;
    return 0;
  }

  // The primary's schema (CREATE statements), for a reproduction.
  std::string schema_sql() const {
    if (!primary_) return "";
    auto snap = primary_->open_snapshot();
    if (!snap.ok()) return "  (schema unreadable: " + snap.error().to_string() + ")\n";
    auto st =
        prepare(snap->db.get(),
                "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name <> 'sqlite_swarmlite' "
                "ORDER BY rowid");
    if (!st.ok()) return "";
    std::string out;
    while (sqlite3_step(st->get()) == SQLITE_ROW) out += "    " + text_col(st->get(), 0) + ";\n";
    return out;
  }
  void report(const std::string& what, const std::vector<Statement>& tx) {
    std::fprintf(stderr,
                 "sql_diff_fuzz: %s\n  seed %" PRIu64 ", transaction %" PRIu64
                 "; reproduce: sql_diff_fuzz --seed %" PRIu64 " --txns %" PRIu64
                 " --record FILE (every transaction's SQL and outcome)\n  the transaction:\n%s"
                 "  the schema after it:\n%s\n",
                 what.c_str(), opt_.seed, txn_, opt_.seed, txn_ + 1, render(tx).c_str(),
                 schema_sql().c_str());
  }
  int fail(const std::string& what, const std::vector<Statement>& tx) {
    report(what, tx);
    std::fprintf(stderr, "  files kept in %s\n", dir_.string().c_str());
    return 1;
  }
  int fatal(const std::string& what) {
    std::fprintf(stderr,
                 "sql_diff_fuzz: seed %" PRIu64 ", transaction %" PRIu64
                 ": %s\n  files kept in %s\n",
                 opt_.seed, txn_, what.c_str(), dir_.string().c_str());
    return 1;
  }

  Options opt_;
  Rng clock_rng_;
  int64_t now_ms_ = 1700000000000;
  fs::path dir_, world_dir_;
  uint64_t epoch_ = 0;
  std::ofstream record_, record_tx_;
  KeyPair keys_;
  std::unique_ptr<Primary> primary_;
  std::unique_ptr<Replica> replica_a_, replica_b_;
  Stats stats_;
  uint64_t txn_ = 0;
  std::set<std::string> tainted_;
  std::set<std::string> uncalled_;
};

// Which functions does the authorizer refuse when called directly? Probed on a
// scratch primary, so the escape oracle follows the authorizer's own list.
std::set<std::string> probe_refused(const std::vector<Fn>& fns) {
  std::set<std::string> refused;
  fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
  fs::path dir = base / ("swl-sqlfuzz-probe-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    PrimaryOptions po;
    po.log_options.sync = false;
    po.sign_every_entries = 1u << 30;
    auto p = Primary::open(dir / "probe.db", KeyPair::generate().secret, po);
    if (!p.ok()) {
      std::fprintf(stderr, "sql_diff_fuzz: probe primary: %s\n", p.error().to_string().c_str());
      std::exit(1);
    }
    for (const Fn& f : fns) {
      if (refused.count(f.name) != 0) continue;
      const int narg = f.narg >= 0 ? f.narg : 1;
      std::string q = "SELECT " + f.name + "(";
      for (int i = 0; i < narg; ++i) q += i ? ", NULL" : "NULL";
      q += ")";
      if (f.type == 'w') q += " OVER ()";
      auto r = (*p)->execute({Statement{q, {}}});
      if (!r.ok() && r.error().code == Errc::refused) refused.insert(f.name);
    }
  }
  fs::remove_all(dir);
  return refused;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse_options(argc, argv);
  std::vector<Fn> fns = read_function_list();
  std::set<std::string> tainted = kHostDependent;
  const std::set<std::string> refused = probe_refused(fns);  // before the instruments exist
  tainted.insert(refused.begin(), refused.end());
  install_instruments(fns, tainted, opt.taint);
  if (opt.verbose) {
    std::string list;
    for (const auto& w : g_inst.wrapped) list += " " + w->name + "/" + std::to_string(w->narg);
    std::fprintf(stderr, "%zu functions; refused directly: %zu; wrapped:%s\n", fns.size(),
                 refused.size(), list.c_str());
  }
  Fuzzer fuzzer(opt);
  return fuzzer.run(fns, tainted);
}
