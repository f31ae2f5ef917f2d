// Import of an existing SQLite database into a primary (see import.h).
#include "sqlbridge/tools/import.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>
#include <set>
#include <vector>

#include "sqlbridge/engine/genesis.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {
namespace {

// Stay well under SQLite's and EntryLimits' per-statement parameter caps.
constexpr size_t kMaxParamsPerStatement = 30000;
// EntryLimits::max_total_params is 2^21: a deferred group stays below it.
constexpr size_t kMaxDeferredGroupParams = 1900000;

std::string text_column(sqlite3_stmt* st, int i) {
  const unsigned char* p = sqlite3_column_text(st, i);
  return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
}

struct SchemaObject {
  std::string type, name, table, sql;
};

struct ForeignKey {
  std::string parent;              // lowercased parent table name
  std::vector<std::string> from;   // child columns
};

enum class FtsKind { none, stored, external };

struct TableInfo {
  std::string name;
  bool is_virtual = false;
  FtsKind fts = FtsKind::none;
  std::string rowid_name;            // "" for WITHOUT ROWID (and virtual) tables
  std::vector<std::string> columns;  // insertable columns (not hidden, not generated)
  std::set<std::string> notnull, key;  // lowercased: NOT NULL columns, primary key columns
  std::vector<std::string> pk;       // primary key columns in key order (WITHOUT ROWID)
  std::vector<ForeignKey> fks;
  std::set<std::string> postponed;   // lowercased FK columns inserted NULL, set afterwards
  uint64_t rows = 0;
};

size_t value_bytes(const Value& v) {
  return std::visit(
      [](const auto& x) -> size_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, Bytes>) {
          return x.size() + 5;
        } else {
          return 9;
        }
      },
      v.v);
}

Result<std::vector<SchemaObject>> read_schema(sqlite3* db) {
  SWL_ASSIGN(SqliteStmt st, prepare(db, "SELECT type, name, tbl_name, sql FROM sqlite_schema "
                                        "WHERE sql IS NOT NULL ORDER BY rowid"));
  std::vector<SchemaObject> out;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    out.push_back({text_column(st.get(), 0), text_column(st.get(), 1), text_column(st.get(), 2),
                   text_column(st.get(), 3)});
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, "reading the source schema");
  return out;
}

// Table kinds as SQLite knows them: "table", "virtual", "shadow", "view".
Result<std::map<std::string, std::string>> read_table_kinds(sqlite3* db) {
  SWL_ASSIGN(SqliteStmt st, prepare(db, "SELECT name, type FROM pragma_table_list WHERE schema = 'main'"));
  std::map<std::string, std::string> out;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) out[text_column(st.get(), 0)] = text_column(st.get(), 1);
  if (rc != SQLITE_DONE) return sqlite_error(db, "reading the source's table list");
  return out;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(s[i])) != std::toupper(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

// The module of "CREATE VIRTUAL TABLE x USING module(...)", lowercased.
std::string vtab_module(const std::string& sql) {
  static const std::regex re(R"(\bUSING\s+([A-Za-z0-9_]+))", std::regex::icase);
  std::smatch m;
  return std::regex_search(sql, m, re) ? lower_ascii(m[1].str()) : std::string();
}

// fts5 content option: "" (none: content stored in the table), "''" (contentless), else a table.
std::string fts5_content_option(const std::string& sql) {
  static const std::regex re(R"([(,]\s*content\s*=\s*('[^']*'|"[^"]*"|[^\s,)]+))", std::regex::icase);
  std::smatch m;
  return std::regex_search(sql, m, re) ? m[1].str() : std::string();
}

Result<TableInfo> table_info(sqlite3* db, const SchemaObject& obj, const std::string& kind) {
  TableInfo info;
  info.name = obj.name;
  info.is_virtual = kind == "virtual";
  if (info.is_virtual) {
    std::string module = vtab_module(obj.sql);
    if (module != "fts5") {
      return make_error(Errc::refused,
                        "table {} uses virtual table module '{}': swarmlite allows only fts5 in writes "
                        "(docs/determinism.md, \"Allowed virtual tables\"); drop or convert it in a copy "
                        "of the source first",
                        obj.name, module);
    }
    std::string content = fts5_content_option(obj.sql);
    if (content == "''" || content == "\"\"") {
      return make_error(Errc::refused,
                        "fts5 table {} is contentless (content=''): its text is not stored in the "
                        "database, so it cannot be copied; rebuild it from its source after the import",
                        obj.name);
    }
    info.fts = content.empty() ? FtsKind::stored : FtsKind::external;
    info.rowid_name = "rowid";  // fts5 rows keep their rowids too
  }
  SWL_ASSIGN(SqliteStmt cols, prepare(db, "SELECT name, hidden, \"notnull\", pk FROM pragma_table_xinfo(?1) "
                                          "ORDER BY pk, cid"));
  sqlite3_bind_text(cols.get(), 1, obj.name.c_str(), -1, SQLITE_TRANSIENT);
  std::vector<std::string> all_names;
  int rc;
  while ((rc = sqlite3_step(cols.get())) == SQLITE_ROW) {
    std::string name = text_column(cols.get(), 0);
    int hidden = sqlite3_column_int(cols.get(), 1);
    all_names.push_back(name);
    if (sqlite3_column_int(cols.get(), 2) != 0) info.notnull.insert(lower_ascii(name));
    if (sqlite3_column_int(cols.get(), 3) > 0) {
      info.key.insert(lower_ascii(name));
      info.pk.push_back(name);
    }
    if (hidden == 0) info.columns.push_back(name);
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, "reading columns of " + obj.name);
  // Column order as declared (the query above sorted by pk for info.pk).
  {
    SWL_ASSIGN(SqliteStmt order, prepare(db, "SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid"));
    sqlite3_bind_text(order.get(), 1, obj.name.c_str(), -1, SQLITE_TRANSIENT);
    info.columns.clear();
    while ((rc = sqlite3_step(order.get())) == SQLITE_ROW) info.columns.push_back(text_column(order.get(), 0));
    if (rc != SQLITE_DONE) return sqlite_error(db, "reading columns of " + obj.name);
  }
  if (!info.is_virtual) {
    // A rowid table answers to rowid, _rowid_ or oid unless a column shadows the name.
    for (const char* alias : {"rowid", "_rowid_", "oid"}) {
      bool shadowed = std::any_of(all_names.begin(), all_names.end(), [&](const std::string& n) {
        return sqlite3_stricmp(n.c_str(), alias) == 0;
      });
      if (shadowed) continue;
      auto probe = prepare(db, std::string("SELECT ") + alias + " FROM " + quote_ident(obj.name) + " LIMIT 0");
      if (probe.ok()) info.rowid_name = alias;
      break;
    }
    SWL_ASSIGN(SqliteStmt fk, prepare(db, "SELECT id, \"table\", \"from\" FROM pragma_foreign_key_list(?1) "
                                          "ORDER BY id, seq"));
    sqlite3_bind_text(fk.get(), 1, obj.name.c_str(), -1, SQLITE_TRANSIENT);
    int64_t last_id = -1;
    while ((rc = sqlite3_step(fk.get())) == SQLITE_ROW) {
      int64_t id = sqlite3_column_int64(fk.get(), 0);
      if (id != last_id) info.fks.push_back({lower_ascii(text_column(fk.get(), 1)), {}});
      info.fks.back().from.push_back(text_column(fk.get(), 2));
      last_id = id;
    }
    if (rc != SQLITE_DONE) return sqlite_error(db, "reading foreign keys of " + obj.name);
  }
  SWL_ASSIGN(SqliteStmt count, prepare(db, "SELECT count(*) FROM " + quote_ident(obj.name)));
  if (sqlite3_step(count.get()) != SQLITE_ROW) return sqlite_error(db, "counting rows of " + obj.name);
  info.rows = static_cast<uint64_t>(sqlite3_column_int64(count.get(), 0));
  return info;
}

// A damaged source (a truncated upload, a torn copy) must fail here, before
// anything is written, not half way through its rows: PRAGMA quick_check
// reads every page (O(N), not the index cross-checks of integrity_check).
Status check_source_sound(sqlite3* db, const std::filesystem::path& source) {
  auto st = prepare(db, "PRAGMA quick_check(5)");
  if (!st.ok()) {
    return make_error(Errc::invalid_argument, "import source {} is damaged or not a SQLite database: {}",
                      source.string(), st.error().message);
  }
  std::string problems;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    std::string line = text_column(st->get(), 0);
    if (line == "ok") continue;
    if (!problems.empty()) problems += "; ";
    problems += line;
  }
  if (rc != SQLITE_DONE) {
    return make_error(Errc::invalid_argument, "import source {} is damaged (quick_check failed: {})",
                      source.string(), sqlite3_errmsg(db));
  }
  if (!problems.empty()) {
    return make_error(Errc::invalid_argument, "import source {} is damaged (quick_check: {})",
                      source.string(), problems);
  }
  return ok_status();
}

// swarmlite enforces foreign keys on every write, so rows that violate one
// cannot be copied; say which before anything is written.
Status check_source_foreign_keys(sqlite3* db) {
  auto st = prepare(db, "SELECT \"table\", rowid, parent FROM pragma_foreign_key_check");
  if (!st.ok()) {
    return make_error(Errc::invalid_argument, "the source's foreign keys cannot be checked: {}",
                      st.error().message);
  }
  uint64_t n = 0;
  std::string first;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    if (n++ == 0) {
      first = fmt::format("table {} rowid {} references a missing row of {}", text_column(st->get(), 0),
                          text_column(st->get(), 1), text_column(st->get(), 2));
    }
  }
  if (rc != SQLITE_DONE) {
    return make_error(Errc::invalid_argument, "the source's foreign keys cannot be checked: {}",
                      sqlite3_errmsg(db));
  }
  if (n > 0) {
    return make_error(Errc::invalid_argument,
                      "the source has {} foreign key violation(s) (PRAGMA foreign_key_check), e.g. {}; "
                      "swarmlite enforces foreign keys, so fix them in the source before importing",
                      n, first);
  }
  return ok_status();
}

// Tables grouped by foreign keys: each group is a strongly connected component
// of the child→parent graph (Tarjan), groups in an order where every group
// comes after the groups it references (parents first).
std::vector<std::vector<size_t>> foreign_key_groups(const std::vector<TableInfo>& tables) {
  std::map<std::string, size_t> by_name;
  for (size_t i = 0; i < tables.size(); ++i) by_name[lower_ascii(tables[i].name)] = i;
  std::vector<std::vector<size_t>> edges(tables.size());
  for (size_t i = 0; i < tables.size(); ++i) {
    for (const auto& fk : tables[i].fks) {
      auto it = by_name.find(fk.parent);
      if (it != by_name.end()) edges[i].push_back(it->second);
    }
  }
  return dependency_groups(edges);
}

class EntryBuilder {
 public:
  EntryBuilder(Primary& primary, const ImportOptions& options, ImportProgress& progress)
      : primary_(primary), options_(options), progress_(progress) {}

  // `rows` are copied rows (progress); `units` count against max_rows_per_entry.
  Status add(Statement st, size_t rows, size_t units) {
    size_t bytes = st.sql.size();
    for (const auto& v : st.params) bytes += value_bytes(v);
    if (deferred_) {
      if (bytes_ + bytes > kMaxDeferredGroupBytes || params_ + st.params.size() > kMaxDeferredGroupParams) {
        return make_error(Errc::invalid_argument,
                          "import stopped at table {}: tables {} form a foreign key cycle through NOT "
                          "NULL or key columns, which must be copied in one entry, and their rows "
                          "exceed {} MiB; make one of those columns nullable in a copy of the source",
                          progress_.table, group_names_, kMaxDeferredGroupBytes >> 20);
      }
    } else if (!pending_.empty() && (bytes_ + bytes > options_.max_entry_bytes ||
                                     units_ + units > options_.max_rows_per_entry)) {
      SWL_TRY(flush());
    }
    params_ += st.params.size();
    pending_.push_back(std::move(st));
    bytes_ += bytes;
    rows_ += rows;
    units_ += units;
    return {};
  }

  // Rows added until end_deferred() go in one entry with deferred foreign keys.
  Status begin_deferred(std::string group_names) {
    SWL_TRY(flush());
    deferred_ = true;
    group_names_ = std::move(group_names);
    return {};
  }
  Status end_deferred() {
    Status s = flush();
    deferred_ = false;
    return s;
  }

  Status flush() {
    if (pending_.empty()) return {};
    if (deferred_) pending_.insert(pending_.begin(), Statement{"PRAGMA defer_foreign_keys = ON", {}});
    SWL_TRY(before_entry(options_));
    auto r = primary_.execute(std::span<const Statement>(pending_), nullptr,
                              options_.bounds.value_or(primary_.default_bounds()));
    if (!r.ok()) {
      Error e = r.take_error();
      e.message = "import stopped at table " + progress_.table + " after " +
                  std::to_string(progress_.rows_done) + " rows: " + e.message;
      return e;
    }
    progress_.rows_done += rows_;
    pending_.clear();
    bytes_ = rows_ = units_ = params_ = 0;
    return entry_done(progress_, options_);
  }

  static Status before_entry(const ImportOptions& options) {
    return options.before_entry ? options.before_entry() : ok_status();
  }

  static Status entry_done(ImportProgress& progress, const ImportOptions& options) {
    ++progress.entries;
    if (options.progress) options.progress(progress);
    if (options.test_hook) return options.test_hook(progress);
    return {};
  }

 private:
  Primary& primary_;
  const ImportOptions& options_;
  ImportProgress& progress_;
  std::vector<Statement> pending_;
  size_t bytes_ = 0, rows_ = 0, units_ = 0, params_ = 0;
  bool deferred_ = false;
  std::string group_names_;
};

Status copy_rows(sqlite3* src, const TableInfo& t, EntryBuilder& out, const ImportOptions& options) {
  if (t.columns.empty() || t.rows == 0 || t.fts == FtsKind::external) return {};
  std::vector<std::string> cols;
  if (!t.rowid_name.empty()) cols.push_back(t.rowid_name);
  cols.insert(cols.end(), t.columns.begin(), t.columns.end());

  std::string col_list, select_list;
  for (size_t i = 0; i < cols.size(); ++i) {
    if (i) col_list += ", ", select_list += ", ";
    col_list += quote_ident(cols[i]);
    // A postponed foreign key column is NULL now and set once its group is in.
    select_list += (i == 0 && !t.rowid_name.empty()) || !t.postponed.count(lower_ascii(cols[i]))
                       ? quote_ident(cols[i])
                       : std::string("NULL");
  }
  std::string select = "SELECT " + select_list + " FROM " + quote_ident(t.name);
  if (!t.rowid_name.empty()) select += " ORDER BY " + t.rowid_name;
  SWL_ASSIGN(SqliteStmt st, prepare(src, select));

  const size_t ncols = cols.size();
  const size_t rows_per_stmt = std::max<size_t>(1, std::min<size_t>(500, kMaxParamsPerStatement / ncols));
  std::string row_tuple = "(";
  for (size_t i = 0; i < ncols; ++i) row_tuple += i ? ",?" : "?";
  row_tuple += ")";
  const std::string head = "INSERT INTO " + quote_ident(t.name) + " (" + col_list + ") VALUES ";

  Statement stmt;
  size_t rows_in_stmt = 0, stmt_bytes = 0;
  auto emit = [&]() -> Status {
    if (rows_in_stmt == 0) return {};
    stmt.sql = head;
    for (size_t i = 0; i < rows_in_stmt; ++i) {
      if (i) stmt.sql += ',';
      stmt.sql += row_tuple;
    }
    SWL_TRY(out.add(std::move(stmt), rows_in_stmt, rows_in_stmt));
    stmt = Statement{};
    rows_in_stmt = stmt_bytes = 0;
    return {};
  };
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    for (int c = 0; c < static_cast<int>(ncols); ++c) {
      stmt.params.push_back(column_value(st.get(), c));
      stmt_bytes += value_bytes(stmt.params.back());
    }
    // Rows per statement are bounded by count and by bytes (large blobs).
    if (++rows_in_stmt == rows_per_stmt || stmt_bytes >= options.max_entry_bytes / 2) SWL_TRY(emit());
  }
  if (rc != SQLITE_DONE) return sqlite_error(src, "reading rows of " + t.name);
  return emit();
}

// Sets the postponed foreign key columns of `t` to their source values.
Status set_postponed(sqlite3* src, const TableInfo& t, EntryBuilder& out) {
  if (t.postponed.empty() || t.rows == 0) return {};
  std::vector<std::string> set_cols;
  for (const auto& c : t.columns) {
    if (t.postponed.count(lower_ascii(c))) set_cols.push_back(c);
  }
  std::vector<std::string> key_cols;
  if (!t.rowid_name.empty()) {
    key_cols.push_back(t.rowid_name);
  } else {
    key_cols = t.pk;
  }
  std::string select = "SELECT ", where_nonnull, update = "UPDATE " + quote_ident(t.name) + " SET ";
  int p = 1;
  for (size_t i = 0; i < set_cols.size(); ++i) {
    select += (i ? ", " : "") + quote_ident(set_cols[i]);
    where_nonnull += (i ? " OR " : "") + quote_ident(set_cols[i]) + " IS NOT NULL";
    update += (i ? ", " : "") + quote_ident(set_cols[i]) + " = ?" + std::to_string(p++);
  }
  std::string order;
  update += " WHERE ";
  for (size_t i = 0; i < key_cols.size(); ++i) {
    std::string k = key_cols[i] == t.rowid_name ? t.rowid_name : quote_ident(key_cols[i]);
    select += ", " + k;
    order += (i ? ", " : "") + k;
    update += (i ? " AND " : "") + k + " = ?" + std::to_string(p++);
  }
  select += " FROM " + quote_ident(t.name) + " WHERE " + where_nonnull + " ORDER BY " + order;
  SWL_ASSIGN(SqliteStmt st, prepare(src, select));
  const int ncols = static_cast<int>(set_cols.size() + key_cols.size());
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    Statement u{update, {}};
    for (int c = 0; c < ncols; ++c) u.params.push_back(column_value(st.get(), c));
    SWL_TRY(out.add(std::move(u), 0, 1));
  }
  if (rc != SQLITE_DONE) return sqlite_error(src, "reading rows of " + t.name);
  return {};
}

// Decides how a cyclic group is copied: postponed columns when every foreign
// key column closing the cycle is nullable, insertable and not part of the
// key; otherwise (returns false) the whole group goes in one deferred entry.
bool plan_postponed(std::vector<TableInfo>& tables, const std::vector<size_t>& group) {
  std::set<std::string> in_group;
  for (size_t i : group) in_group.insert(lower_ascii(tables[i].name));
  std::map<size_t, std::set<std::string>> plan;
  for (size_t i : group) {
    const TableInfo& t = tables[i];
    if (t.rowid_name.empty() && t.pk.empty()) return false;
    for (const auto& fk : t.fks) {
      if (!in_group.count(fk.parent)) continue;
      for (const auto& col : fk.from) {
        std::string c = lower_ascii(col);
        bool insertable = std::any_of(t.columns.begin(), t.columns.end(),
                                      [&](const std::string& n) { return lower_ascii(n) == c; });
        if (!insertable || t.notnull.count(c) || t.key.count(c)) return false;
        plan[i].insert(c);
      }
    }
  }
  for (auto& kv : plan) tables[kv.first].postponed = kv.second;
  return true;
}

bool is_cyclic(const std::vector<TableInfo>& tables, const std::vector<size_t>& group) {
  if (group.size() > 1) return true;
  const TableInfo& t = tables[group[0]];
  return std::any_of(t.fks.begin(), t.fks.end(), [&](const ForeignKey& fk) { return fk.parent == lower_ascii(t.name); });
}

Status run_entry(Primary& primary, const std::vector<Statement>& statements, const char* what,
                 ImportProgress& progress, const ImportOptions& options) {
  if (statements.empty()) return {};
  SWL_TRY(EntryBuilder::before_entry(options));
  auto r = primary.execute(std::span<const Statement>(statements), nullptr,
                           options.bounds.value_or(primary.default_bounds()));
  if (!r.ok()) {
    Error e = r.take_error();
    e.message = std::string("import of ") + what + " failed: " + e.message;
    return e;
  }
  return EntryBuilder::entry_done(progress, options);
}

}  // namespace

Result<ImportStats> import_database(const std::filesystem::path& source, Primary& primary,
                                    const ImportOptions& options) {
  if (primary.size() != 1) {
    return make_error(Errc::invalid_argument,
                      "import needs a new primary (only genesis in its log), this one has {} entries",
                      primary.size());
  }
  if (!std::filesystem::exists(source)) {
    return make_error(Errc::invalid_argument, "import source {} does not exist", source.string());
  }
  SWL_ASSIGN(SqliteDb src, open_sqlite(source.string(), SQLITE_OPEN_READONLY));
  SWL_TRY(exec_sql(src.get(), "BEGIN"));  // one consistent snapshot of the source
  SWL_TRY(check_source_sound(src.get(), source));
  SWL_ASSIGN(auto schema, read_schema(src.get()));
  SWL_ASSIGN(auto kinds, read_table_kinds(src.get()));
  // A swarmlite file (a primary's, a peer's, a GET /db/backup): its data is
  // copied like any app's; its sqlite_swarmlite metadata belongs to its own log
  // and is left out with the other sqlite_ tables below, so a backup restores
  // into a new primary. (Format 1's _swarmlite is an ordinary table now: it is
  // copied like any other.)
  SWL_TRY(check_source_foreign_keys(src.get()));

  ImportStats stats;
  ImportProgress progress;
  std::vector<TableInfo> tables;
  std::vector<Statement> create, finish, fts_rebuild;
  for (const auto& obj : schema) {
    if (starts_with_ci(obj.name, "sqlite_")) continue;  // sqlite_sequence, sqlite_stat*, autoindexes
    if (obj.type == "table") {
      auto kind = kinds.find(obj.name);
      if (kind != kinds.end() && kind->second == "shadow") continue;  // made by its virtual table
      create.push_back({obj.sql, {}});
      SWL_ASSIGN(TableInfo info, table_info(src.get(), obj, kind == kinds.end() ? "table" : kind->second));
      if (info.fts == FtsKind::external) {
        fts_rebuild.push_back({"INSERT INTO " + quote_ident(obj.name) + "(" + quote_ident(obj.name) +
                                   ") VALUES ('rebuild')",
                               {}});
      }
      progress.rows_total += info.rows;
      tables.push_back(std::move(info));
      ++stats.tables;
    } else if (obj.type == "view") {
      create.push_back({obj.sql, {}});
      ++stats.views;
    } else if (obj.type == "index") {
      finish.push_back({obj.sql, {}});
      ++stats.indexes;
    } else if (obj.type == "trigger") {
      finish.push_back({obj.sql, {}});
      ++stats.triggers;
    }
  }
  // fts5 settings (pgsz, automerge, rank, …) live in the "<name>_config" shadow table.
  for (const auto& t : tables) {
    if (t.fts == FtsKind::none) continue;
    auto cfg = prepare(src.get(), "SELECT k, v FROM " + quote_ident(t.name + "_config") +
                                      " WHERE k <> 'version' ORDER BY k");
    if (!cfg.ok()) continue;
    while (sqlite3_step(cfg->get()) == SQLITE_ROW) {
      create.push_back({"INSERT INTO " + quote_ident(t.name) + "(" + quote_ident(t.name) + ", rank) VALUES (?1, ?2)",
                        {column_value(cfg->get(), 0), column_value(cfg->get(), 1)}});
    }
  }

  SWL_TRY(run_entry(primary, create, "the schema", progress, options));

  EntryBuilder out(primary, options, progress);
  for (const auto& group : foreign_key_groups(tables)) {
    const bool cyclic = is_cyclic(tables, group);
    const bool deferred = cyclic && !plan_postponed(tables, group);
    if (deferred) {
      std::string names;
      for (size_t i : group) names += (names.empty() ? "" : ", ") + tables[i].name;
      SWL_TRY(out.begin_deferred(names));
    }
    for (size_t i : group) {
      progress.table = tables[i].name;
      SWL_TRY(copy_rows(src.get(), tables[i], out, options));
      stats.rows += tables[i].rows;
    }
    for (size_t i : group) {
      progress.table = tables[i].name;
      SWL_TRY(set_postponed(src.get(), tables[i], out));
    }
    if (deferred) SWL_TRY(out.end_deferred());
  }
  SWL_TRY(out.flush());
  progress.table.clear();
  // External-content fts5 tables index their content table's rows (now all in).
  SWL_TRY(run_entry(primary, fts_rebuild, "external-content fts5 tables", progress, options));

  // AUTOINCREMENT counters, exactly as in the source (they may be above the largest rowid).
  // (Only when a created table has one: SQLite makes sqlite_sequence for it.)
  const bool has_autoincrement = std::any_of(schema.begin(), schema.end(), [](const SchemaObject& o) {
    return o.type == "table" && lower_ascii(o.sql).find("autoincrement") != std::string::npos;
  });
  std::vector<Statement> seq_statements;
  auto seq = prepare(src.get(), "SELECT name, seq FROM sqlite_sequence ORDER BY rowid");
  if (seq.ok() && has_autoincrement) {
    seq_statements.push_back({"DELETE FROM sqlite_sequence", {}});
    while (sqlite3_step(seq->get()) == SQLITE_ROW) {
      seq_statements.push_back({"INSERT INTO sqlite_sequence(name, seq) VALUES (?1, ?2)",
                                {column_value(seq->get(), 0), column_value(seq->get(), 1)}});
    }
  }
  finish.insert(finish.begin(), seq_statements.begin(), seq_statements.end());
  // The planner statistics (sqlite_stat1), as in the source, once the indexes
  // exist: the app's queries get the plans they had there (without them a
  // query the source answered from the right index may scan, or run into the
  // read limits). Rows for tables and indexes the import did not create are
  // left out, as is sqlite_stat4 (this SQLite is built without STAT4). The
  // entry reloads them on every node (docs/determinism.md "Planner
  // statistics").
  auto stat1 = prepare(src.get(), "SELECT tbl, idx, stat FROM sqlite_stat1 ORDER BY rowid");
  if (stat1.ok()) {
    std::set<std::string, std::less<>> names;
    for (const auto& obj : schema) names.insert(lower_ascii(obj.name));
    std::vector<Statement> stat_rows;
    int rc;
    while ((rc = sqlite3_step(stat1->get())) == SQLITE_ROW) {
      Value tbl = column_value(stat1->get(), 0), idx = column_value(stat1->get(), 1);
      const auto* t = std::get_if<std::string>(&tbl.v);
      const auto* i = std::get_if<std::string>(&idx.v);
      if (t == nullptr || starts_with_ci(*t, "sqlite_") || names.count(lower_ascii(*t)) == 0)
        continue;
      // An index the import created, or one SQLite makes for the table's
      // UNIQUE and PRIMARY KEY constraints (the same names: same CREATE TABLE).
      if (i != nullptr && names.count(lower_ascii(*i)) == 0 &&
          !starts_with_ci(*i, "sqlite_autoindex_" + *t + "_")) {
        continue;
      }
      stat_rows.push_back({"INSERT INTO sqlite_stat1(tbl, idx, stat) VALUES (?1, ?2, ?3)",
                           {std::move(tbl), std::move(idx), column_value(stat1->get(), 2)}});
    }
    if (rc != SQLITE_DONE) return sqlite_error(src.get(), "reading the source's sqlite_stat1");
    if (!stat_rows.empty()) {
      finish.push_back({"ANALYZE sqlite_schema", {}});  // creates sqlite_stat1, analyses nothing
      finish.push_back({"DELETE FROM sqlite_stat1", {}});
      finish.insert(finish.end(), stat_rows.begin(), stat_rows.end());
      stats.stat1_rows = stat_rows.size();
    }
  }
  SWL_TRY(run_entry(primary, finish, "the counters, indexes, triggers and statistics", progress,
                    options));
  stats.entries = progress.entries;
  (void)exec_sql(src.get(), "COMMIT");
  return stats;
}

Result<ImportCheck> check_import(const std::filesystem::path& source, const std::filesystem::path& imported) {
  SWL_ASSIGN(SqliteDb src, open_sqlite(source.string(), SQLITE_OPEN_READONLY));
  SWL_ASSIGN(SqliteDb dst, open_sqlite(imported.string(), SQLITE_OPEN_READONLY));
  ImportCheck check;
  {
    SWL_ASSIGN(SqliteStmt st, prepare(dst.get(), "PRAGMA integrity_check"));
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
      if (!check.integrity.empty()) check.integrity += "; ";
      check.integrity += text_column(st.get(), 0);
    }
    if (rc != SQLITE_DONE) return sqlite_error(dst.get(), "integrity_check of " + imported.string());
    if (check.integrity != "ok") check.problems.push_back("integrity_check: " + check.integrity);
  }
  {
    SWL_ASSIGN(SqliteStmt st, prepare(dst.get(), "PRAGMA foreign_key_check"));
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) ++check.foreign_key_violations;
    if (rc != SQLITE_DONE) return sqlite_error(dst.get(), "foreign_key_check of " + imported.string());
    if (check.foreign_key_violations) {
      check.problems.push_back(fmt::format("foreign_key_check: {} violation(s)", check.foreign_key_violations));
    }
  }
  SWL_ASSIGN(auto schema, read_schema(src.get()));
  SWL_ASSIGN(auto kinds, read_table_kinds(src.get()));
  auto count = [](sqlite3* db, const std::string& table) -> Result<uint64_t> {
    SWL_ASSIGN(SqliteStmt st, prepare(db, "SELECT count(*) FROM " + quote_ident(table)));
    if (sqlite3_step(st.get()) != SQLITE_ROW) return sqlite_error(db, "counting rows of " + table);
    return static_cast<uint64_t>(sqlite3_column_int64(st.get(), 0));
  };
  for (const auto& obj : schema) {
    if (obj.type != "table" || starts_with_ci(obj.name, "sqlite_")) continue;
    auto kind = kinds.find(obj.name);
    if (kind != kinds.end() && kind->second == "shadow") continue;
    TableCount tc;
    tc.table = obj.name;
    SWL_ASSIGN(tc.source_rows, count(src.get(), obj.name));
    auto n = count(dst.get(), obj.name);
    if (!n.ok()) {
      check.problems.push_back("table " + obj.name + " is missing or unreadable: " + n.error().message);
    } else {
      tc.imported_rows = *n;
      if (tc.imported_rows != tc.source_rows) {
        check.problems.push_back(fmt::format("table {}: {} rows in the source, {} imported", obj.name,
                                             tc.source_rows, tc.imported_rows));
      }
    }
    check.tables.push_back(std::move(tc));
  }
  return check;
}

Result<ImportResult> import_new_primary(const std::filesystem::path& source, const std::filesystem::path& db_path,
                                        const SecretKey& key, PrimaryOptions primary_options,
                                        const ImportOptions& options) {
  namespace fs = std::filesystem;
  const fs::path log_dir = primary_options.log_dir.empty() ? default_log_dir(db_path) : primary_options.log_dir;
  std::error_code ec;
  if (fs::exists(db_path, ec)) {
    return make_error(Errc::invalid_argument, "{} already exists; import builds a new primary",
                      db_path.string());
  }
  if (fs::exists(log_dir, ec)) {
    return make_error(Errc::invalid_argument,
                      "log directory {} already exists; import builds a new primary with a new log",
                      log_dir.string());
  }
  if (!fs::exists(source, ec)) {
    return make_error(Errc::invalid_argument, "import source {} does not exist", source.string());
  }
  const std::string suffix = ".importing-" + std::to_string(::getpid());
  const fs::path tmp_db = db_path.string() + suffix;
  const fs::path tmp_log = log_dir.string() + suffix;
  auto remove_tmp = [&] {
    std::error_code ignored;
    for (const char* ext : {"", "-wal", "-shm", "-journal", "-swlock"}) fs::remove(tmp_db.string() + ext, ignored);
    fs::remove_all(tmp_log, ignored);
  };
  remove_tmp();  // a leftover of this pid's earlier crash
  ImportResult result;
  auto build = [&]() -> Status {
    PrimaryOptions po = primary_options;
    po.log_dir = tmp_log;
    {
      SWL_ASSIGN(auto primary, Primary::open(tmp_db, key, std::move(po)));
      SWL_ASSIGN(result.stats, import_database(source, *primary, options));
      SWL_TRY(primary->close());
      result.head = primary->head();
    }  // closed: SQLite checkpoints and removes the WAL, the lock is released
    SWL_ASSIGN(result.check, check_import(source, tmp_db));
    if (!result.check.ok()) {
      std::string all;
      for (const auto& p : result.check.problems) all += (all.empty() ? "" : "; ") + p;
      return make_error(Errc::internal, "the imported database fails its checks: {}", all);
    }
    // The log first: a log without its database is rebuilt by replay on open,
    // a database without its log is refused.
    fs::rename(tmp_log, log_dir, ec);
    if (ec) return make_error(Errc::io_error, "renaming {} to {}: {}", tmp_log.string(), log_dir.string(), ec.message());
    for (const char* ext : {"-wal", "-shm"}) {
      if (fs::exists(tmp_db.string() + ext)) {
        fs::rename(tmp_db.string() + ext, db_path.string() + ext, ec);
        if (ec) return make_error(Errc::io_error, "renaming {}{}: {}", tmp_db.string(), ext, ec.message());
      }
    }
    fs::rename(tmp_db, db_path, ec);
    if (ec) {
      std::error_code ignored;
      fs::rename(log_dir, tmp_log, ignored);  // put the log back so the cleanup removes it
      return make_error(Errc::io_error, "renaming {} to {}: {}", tmp_db.string(), db_path.string(), ec.message());
    }
    std::error_code ignored;
    fs::remove(tmp_db.string() + "-swlock", ignored);
    return ok_status();
  };
  if (Status s = build(); !s.ok()) {
    remove_tmp();
    return s.take_error();
  }
  return result;
}

}  // namespace swarmlite
