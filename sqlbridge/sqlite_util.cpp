#include "sqlbridge/sqlite_util.h"

#include <algorithm>
#include <cctype>
#include <functional>

namespace swarmlite {

namespace {
thread_local bool t_disk_full_seen = false;
}  // namespace

void note_disk_full() { t_disk_full_seen = true; }
void clear_disk_full_seen() { t_disk_full_seen = false; }
bool disk_full_seen() { return t_disk_full_seen; }

bool is_local_sqlite_error(int code) {
  switch (code & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_NOMEM:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
      return true;
    case SQLITE_FULL:
      return t_disk_full_seen;
    default:
      return false;
  }
}

Error sqlite_error(sqlite3* db, std::string_view what) {
  if (db == nullptr) return make_error(Errc::sqlite_error, "{}: out of memory", what);
  return make_error(
      is_local_sqlite_error(sqlite3_extended_errcode(db)) ? Errc::io_error : Errc::sqlite_error,
      "{}: {} (code {})", what, sqlite3_errmsg(db), sqlite3_extended_errcode(db));
}

Result<SqliteDb> open_sqlite(const std::string& uri_or_path, int flags, const char* vfs) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(uri_or_path.c_str(), &raw, flags | SQLITE_OPEN_URI, vfs);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) {
    return make_error(Errc::sqlite_error, "open {}: {} (code {})", uri_or_path,
                      raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc), rc);
  }
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

int cache_writes(sqlite3* db) {
  int current = 0, highwater = 0;
  sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_WRITE, &current, &highwater, 0);
  return current;
}

Status exec_sql(sqlite3* db, std::string_view sql) {
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    Error e = make_error(is_local_sqlite_error(rc) ? Errc::io_error : Errc::sqlite_error,
                         "{}: {} (code {})", sql, err ? err : sqlite3_errstr(rc), rc);
    sqlite3_free(err);
    return e;
  }
  return ok_status();
}

Result<SqliteStmt> prepare(sqlite3* db, std::string_view sql, std::string_view* tail) {
  sqlite3_stmt* raw = nullptr;
  const char* end = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, &end);
  SqliteStmt stmt(raw);
  if (rc != SQLITE_OK) return sqlite_error(db, "prepare");
  if (tail != nullptr) *tail = sql.substr(static_cast<size_t>(end - sql.data()));
  return stmt;
}

Status step_kept(sqlite3* db, SqliteStmt& stmt, const char* sql) {
  if (!stmt) {
    SWL_ASSIGN(stmt, prepare(db, sql));
  }
  const int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) {
    sqlite3_reset(stmt.get());
    return ok_status();
  }
  Error e = make_error(is_local_sqlite_error(rc) ? Errc::io_error : Errc::sqlite_error,
                       "{}: {} (code {})", sql, sqlite3_errmsg(db), sqlite3_extended_errcode(db));
  sqlite3_reset(stmt.get());
  return e;
}

Status bind_values(sqlite3_stmt* stmt, const std::vector<Value>& params, BindCopy how,
                   EmptyBlob empty_blob) {
  const sqlite3_destructor_type keep = how == BindCopy::borrow ? SQLITE_STATIC : SQLITE_TRANSIENT;
  int expected = sqlite3_bind_parameter_count(stmt);
  if (static_cast<size_t>(expected) != params.size()) {
    return make_error(Errc::invalid_argument, "statement has {} parameters but {} values were given",
                      expected, params.size());
  }
  for (size_t i = 0; i < params.size(); ++i) {
    int idx = static_cast<int>(i + 1);
    const auto& v = params[i].v;
    int rc = SQLITE_OK;
    if (std::holds_alternative<std::monostate>(v)) {
      rc = sqlite3_bind_null(stmt, idx);
    } else if (auto* n = std::get_if<int64_t>(&v)) {
      rc = sqlite3_bind_int64(stmt, idx, *n);
    } else if (auto* d = std::get_if<double>(&v)) {
      rc = sqlite3_bind_double(stmt, idx, *d);
    } else if (auto* s = std::get_if<std::string>(&v)) {
      rc = sqlite3_bind_text64(stmt, idx, s->data(), s->size(), keep, SQLITE_UTF8);
    } else if (auto* b = std::get_if<Bytes>(&v)) {
      // SQLite binds a null pointer as NULL, and an empty vector's data() may
      // or may not be null (a decoded entry's is): a non-null pointer with
      // length 0 is the empty blob, a null one NULL, whatever the vector holds.
      static const uint8_t kNoBytes = 0;
      if (b->empty()) {
        rc = empty_blob == EmptyBlob::empty ? sqlite3_bind_blob64(stmt, idx, &kNoBytes, 0, SQLITE_STATIC)
                                            : sqlite3_bind_null(stmt, idx);
      } else {
        rc = sqlite3_bind_blob64(stmt, idx, b->data(), b->size(), keep);
      }
    }
    if (rc != SQLITE_OK) {
      return make_error(Errc::invalid_argument, "binding parameter {}: {} (code {})", idx,
                        sqlite3_errstr(rc), rc);
    }
  }
  return ok_status();
}

Value column_value(sqlite3_stmt* stmt, int col) {
  switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER:
      return Value{sqlite3_column_int64(stmt, col)};
    case SQLITE_FLOAT:
      return Value{sqlite3_column_double(stmt, col)};
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
      return Value{std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt, col)))};
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(stmt, col));
      int n = sqlite3_column_bytes(stmt, col);
      return Value{Bytes(p, p + n)};
    }
    default:
      return Value{};
  }
}

size_t skip_space_and_comments(std::string_view s, bool skip_semicolons) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isspace(c) || (skip_semicolons && c == ';')) {
      ++i;
    } else if (s.compare(i, 2, "--") == 0) {
      size_t nl = s.find('\n', i);
      i = nl == std::string_view::npos ? s.size() : nl + 1;
    } else if (s.compare(i, 2, "/*") == 0) {
      size_t end = s.find("*/", i + 2);
      i = end == std::string_view::npos ? s.size() : end + 2;
    } else {
      break;
    }
  }
  return i;
}

bool is_blank_sql(std::string_view sql) { return skip_space_and_comments(sql, true) == sql.size(); }

bool mentions_ci(std::string_view sql, std::string_view word) {
  auto it = std::search(sql.begin(), sql.end(), word.begin(), word.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == y;
  });
  return it != sql.end();
}

std::string leading_keyword(std::string_view sql) {
  size_t i = skip_space_and_comments(sql, false);
  std::string word;
  while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_')) {
    word.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i]))));
    ++i;
  }
  return word;
}

std::vector<std::vector<size_t>> dependency_groups(const std::vector<std::vector<size_t>>& edges) {
  std::vector<std::vector<size_t>> groups;
  std::vector<int> index(edges.size(), -1), low(edges.size(), 0);
  std::vector<bool> on_stack(edges.size(), false);
  std::vector<size_t> stack;
  int counter = 0;
  std::function<void(size_t)> visit = [&](size_t v) {
    index[v] = low[v] = counter++;
    stack.push_back(v);
    on_stack[v] = true;
    for (size_t w : edges[v]) {
      if (index[w] < 0) {
        visit(w);
        low[v] = std::min(low[v], low[w]);
      } else if (on_stack[w]) {
        low[v] = std::min(low[v], index[w]);
      }
    }
    if (low[v] == index[v]) {
      std::vector<size_t> group;
      size_t w;
      do {
        w = stack.back();
        stack.pop_back();
        on_stack[w] = false;
        group.push_back(w);
      } while (w != v);
      std::sort(group.begin(), group.end());  // source order inside a group
      groups.push_back(std::move(group));
    }
  };
  for (size_t i = 0; i < edges.size(); ++i) {
    if (index[i] < 0) visit(i);
  }
  return groups;
}

std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  out += '"';
  return out;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace swarmlite
