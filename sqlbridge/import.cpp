// Import of an existing SQLite database into a primary (see import.h).
#include "sqlbridge/import.h"

#include <sqlite3.h>

#include <algorithm>
#include <vector>

#include "sqlbridge/sqlite_util.h"

namespace swarmlite {
namespace {

// Stay well under SQLite's and EntryLimits' per-statement parameter caps.
constexpr size_t kMaxParamsPerStatement = 30000;

std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  out += '"';
  return out;
}

struct SchemaObject {
  std::string type, name, table, sql;
};

struct TableInfo {
  std::string name;
  bool is_virtual = false;
  std::string rowid_name;            // "" for WITHOUT ROWID (and virtual) tables
  std::vector<std::string> columns;  // insertable columns (not hidden, not generated)
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
    auto text = [&](int i) {
      const unsigned char* p = sqlite3_column_text(st.get(), i);
      return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
    };
    out.push_back({text(0), text(1), text(2), text(3)});
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, "reading the source schema");
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

Result<TableInfo> table_info(sqlite3* db, const SchemaObject& obj) {
  TableInfo info;
  info.name = obj.name;
  info.is_virtual = starts_with_ci(obj.sql, "CREATE VIRTUAL TABLE");
  SWL_ASSIGN(SqliteStmt cols, prepare(db, "SELECT name, hidden FROM pragma_table_xinfo(?1)"));
  sqlite3_bind_text(cols.get(), 1, obj.name.c_str(), -1, SQLITE_TRANSIENT);
  std::vector<std::string> all_names;
  int rc;
  while ((rc = sqlite3_step(cols.get())) == SQLITE_ROW) {
    std::string name = reinterpret_cast<const char*>(sqlite3_column_text(cols.get(), 0));
    int hidden = sqlite3_column_int(cols.get(), 1);
    all_names.push_back(name);
    if (hidden == 0) info.columns.push_back(name);
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, "reading columns of " + obj.name);
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
  }
  SWL_ASSIGN(SqliteStmt count, prepare(db, "SELECT count(*) FROM " + quote_ident(obj.name)));
  if (sqlite3_step(count.get()) != SQLITE_ROW) return sqlite_error(db, "counting rows of " + obj.name);
  info.rows = static_cast<uint64_t>(sqlite3_column_int64(count.get(), 0));
  return info;
}

// Shadow tables of virtual tables (e.g. "docs_data" of FTS5 table "docs") are
// created by the virtual table itself and must not be copied.
bool is_shadow_table(const SchemaObject& obj, const std::vector<SchemaObject>& schema) {
  for (const auto& v : schema) {
    if (v.type != "table" || !starts_with_ci(v.sql, "CREATE VIRTUAL TABLE")) continue;
    if (obj.name.size() > v.name.size() + 1 && starts_with_ci(obj.name, v.name) &&
        obj.name[v.name.size()] == '_') {
      return true;
    }
  }
  return false;
}

class EntryBuilder {
 public:
  EntryBuilder(Primary& primary, const ImportOptions& options, ImportProgress& progress)
      : primary_(primary), options_(options), progress_(progress) {}

  Status add(Statement st, size_t rows) {
    size_t bytes = st.sql.size();
    for (const auto& v : st.params) bytes += value_bytes(v);
    if (!pending_.empty() && (bytes_ + bytes > options_.max_entry_bytes ||
                              rows_ + rows > options_.max_rows_per_entry)) {
      SWL_TRY(flush());
    }
    pending_.push_back(std::move(st));
    bytes_ += bytes;
    rows_ += rows;
    return {};
  }

  Status flush() {
    if (pending_.empty()) return {};
    auto r = primary_.execute(std::span<const Statement>(pending_));
    if (!r.ok()) {
      Error e = r.take_error();
      e.message = "import stopped at table " + progress_.table + " after " +
                  std::to_string(progress_.rows_done) + " rows: " + e.message;
      return e;
    }
    progress_.rows_done += rows_;
    ++progress_.entries;
    pending_.clear();
    bytes_ = rows_ = 0;
    if (options_.progress) options_.progress(progress_);
    return {};
  }

 private:
  Primary& primary_;
  const ImportOptions& options_;
  ImportProgress& progress_;
  std::vector<Statement> pending_;
  size_t bytes_ = 0, rows_ = 0;
};

Status copy_rows(sqlite3* src, const TableInfo& t, EntryBuilder& out) {
  if (t.columns.empty() || t.rows == 0) return {};
  std::vector<std::string> cols;
  if (!t.rowid_name.empty()) cols.push_back(t.rowid_name);
  cols.insert(cols.end(), t.columns.begin(), t.columns.end());

  std::string col_list, select_list;
  for (size_t i = 0; i < cols.size(); ++i) {
    if (i) col_list += ", ", select_list += ", ";
    col_list += quote_ident(cols[i]);
    select_list += quote_ident(cols[i]);
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
  size_t rows_in_stmt = 0;
  auto emit = [&]() -> Status {
    if (rows_in_stmt == 0) return {};
    stmt.sql = head;
    for (size_t i = 0; i < rows_in_stmt; ++i) {
      if (i) stmt.sql += ',';
      stmt.sql += row_tuple;
    }
    SWL_TRY(out.add(std::move(stmt), rows_in_stmt));
    stmt = Statement{};
    rows_in_stmt = 0;
    return {};
  };
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    for (int c = 0; c < static_cast<int>(ncols); ++c) stmt.params.push_back(column_value(st.get(), c));
    if (++rows_in_stmt == rows_per_stmt) SWL_TRY(emit());
  }
  if (rc != SQLITE_DONE) return sqlite_error(src, "reading rows of " + t.name);
  return emit();
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
  SWL_ASSIGN(auto schema, read_schema(src.get()));

  ImportStats stats;
  ImportProgress progress;
  std::vector<TableInfo> tables;
  std::vector<Statement> create, finish;
  for (const auto& obj : schema) {
    if (starts_with_ci(obj.name, "sqlite_")) continue;  // sqlite_sequence, sqlite_stat*, autoindexes
    if (obj.type == "table") {
      if (is_shadow_table(obj, schema)) continue;
      create.push_back({obj.sql, {}});
      SWL_ASSIGN(TableInfo info, table_info(src.get(), obj));
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

  EntryBuilder out(primary, options, progress);
  if (!create.empty()) {
    auto r = primary.execute(std::span<const Statement>(create));
    if (!r.ok()) {
      Error e = r.take_error();
      e.message = "import of the schema failed: " + e.message;
      return e;
    }
    ++progress.entries;
    if (options.progress) options.progress(progress);
  }
  for (const auto& t : tables) {
    progress.table = t.name;
    SWL_TRY(copy_rows(src.get(), t, out));
    stats.rows += t.rows;
  }
  SWL_TRY(out.flush());

  // AUTOINCREMENT counters: the source's may be above its largest rowid.
  progress.table.clear();
  auto seq = prepare(src.get(), "SELECT name, seq FROM sqlite_sequence");
  if (seq.ok()) {
    while (sqlite3_step(seq->get()) == SQLITE_ROW) {
      std::vector<Value> params = {column_value(seq->get(), 0), column_value(seq->get(), 1)};
      finish.insert(finish.begin(),
                    {Statement{"INSERT INTO sqlite_sequence(name, seq) SELECT ?1, ?2 WHERE NOT EXISTS "
                               "(SELECT 1 FROM sqlite_sequence WHERE name = ?1)", params},
                     Statement{"UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1", params}});
    }
  }
  if (!finish.empty()) {
    auto r = primary.execute(std::span<const Statement>(finish));
    if (!r.ok()) {
      Error e = r.take_error();
      e.message = "import of indexes/triggers failed: " + e.message;
      return e;
    }
    ++progress.entries;
    if (options.progress) options.progress(progress);
  }
  stats.entries = progress.entries;
  (void)exec_sql(src.get(), "COMMIT");
  return stats;
}

}  // namespace swarmlite
