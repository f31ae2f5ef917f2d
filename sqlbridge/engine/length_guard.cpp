#include "sqlbridge/engine/length_guard.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>

namespace swarmlite {
namespace {

// The first width or precision of the format whose magnitude is over `cap`.
std::optional<int64_t> oversized_field(int argc, sqlite3_value** argv, int64_t cap) {
  const unsigned char* text = sqlite3_value_text(argv[0]);
  if (text == nullptr) return std::nullopt;
  const char* f = reinterpret_cast<const char*>(text);
  int next_arg = 1;
  auto star = [&]() -> int64_t {
    if (next_arg >= argc) return 0;
    int64_t v = sqlite3_value_int64(argv[next_arg++]);
    return v < 0 ? (v == INT64_MIN ? INT64_MAX : -v) : v;
  };
  auto digits = [&]() -> int64_t {
    int64_t v = 0;
    while (*f >= '0' && *f <= '9') {
      v = std::min<int64_t>(v * 10 + (*f - '0'), int64_t{1} << 40);
      ++f;
    }
    return v;
  };
  while (*f != '\0') {
    if (*f++ != '%') continue;
    while (*f != '\0' && std::string_view("-+ #!0,").find(*f) != std::string_view::npos) ++f;
    int64_t width = 0, precision = 0;
    if (*f == '*') {
      ++f;
      width = star();
    } else {
      width = digits();
    }
    if (*f == '.') {
      ++f;
      if (*f == '*') {
        ++f;
        precision = star();
      } else {
        precision = digits();
      }
    }
    while (*f == 'l') ++f;
    if (*f == '\0') break;
    const char conversion = *f++;
    if (width > cap) return width;
    if (precision > cap) return precision;
    if (conversion != '%') ++next_arg;
  }
  return std::nullopt;
}

}  // namespace

Result<std::unique_ptr<LengthGuard>> LengthGuard::install(
    sqlite3* db, int max_length, std::function<void(const std::string&)> on_refused) {
  std::unique_ptr<LengthGuard> g(new LengthGuard());
  g->max_length_ = max_length;
  g->on_refused_ = std::move(on_refused);
  const int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
  if (sqlite3_create_function_v2(db, "printf", -1, flags, g.get(), &LengthGuard::printf_fn, nullptr,
                                 nullptr, nullptr) != SQLITE_OK ||
      sqlite3_create_function_v2(db, "format", -1, flags, g.get(), &LengthGuard::format_fn, nullptr,
                                 nullptr, nullptr) != SQLITE_OK) {
    return sqlite_error(db, "registering the guarded printf()/format()");
  }
  // Only the two-argument forms: the three-argument built-in stays in place.
  if (sqlite3_create_function_v2(db, "substr", 2, flags, g.get(), &LengthGuard::substr_fn, nullptr,
                                 nullptr, nullptr) != SQLITE_OK ||
      sqlite3_create_function_v2(db, "substring", 2, flags, g.get(), &LengthGuard::substr_fn,
                                 nullptr, nullptr, nullptr) != SQLITE_OK) {
    return sqlite_error(db, "registering the length-independent substr()/substring()");
  }
  return g;
}

// The helper connection is opened on the first call that needs it, not at
// install(): most connections never call printf(), format() or two-argument
// substr(), and opening it cost as much as a cold proof's own connection
// (docs/performance.md "Plain reads").
sqlite3* LengthGuard::helper(sqlite3_context* ctx) {
  if (!helper_) {
    auto h = open_sqlite(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY | SQLITE_OPEN_NOMUTEX);
    if (!h.ok()) {
      sqlite3_result_error(ctx, h.error().message.c_str(), -1);
      sqlite3_result_error_code(ctx, SQLITE_NOMEM);  // the node's trouble, not the statement's
      return nullptr;
    }
    helper_ = std::move(h).value();
    sqlite3_limit(helper_.get(), SQLITE_LIMIT_LENGTH, max_length_);
  }
  return helper_.get();
}

void LengthGuard::refuse(sqlite3_context* ctx, const std::string& message, bool too_big) {
  if (on_refused_) on_refused_(message);
  sqlite3_result_error(ctx, message.c_str(), -1);
  if (too_big) sqlite3_result_error_code(ctx, SQLITE_TOOBIG);
}

void LengthGuard::call(sqlite3_context* ctx, int argc, sqlite3_value** argv, bool is_format) {
  auto* g = static_cast<LengthGuard*>(sqlite3_user_data(ctx));
  const char* name = is_format ? "format" : "printf";
  if (argc < 1) {
    sqlite3_result_null(ctx);  // as SQLite: printf() with no arguments is NULL
    return;
  }
  if (auto n = oversized_field(argc, argv, g->max_length_)) {
    g->refuse(ctx,
              fmt::format("{}(): a width or precision of {} is over the value length cap of {} bytes",
                          name, *n, g->max_length_),
              true);
    return;
  }
  sqlite3* helper = g->helper(ctx);
  if (helper == nullptr) return;
  SqliteStmt& stmt = g->stmts_[{is_format, argc}];
  if (!stmt) {
    std::string sql = fmt::format("SELECT {}(", name);
    for (int i = 1; i <= argc; ++i) sql += fmt::format("{}?{}", i > 1 ? "," : "", i);
    sql += ")";
    auto r = prepare(helper, sql);
    if (!r.ok()) {
      sqlite3_result_error(ctx, r.error().message.c_str(), -1);
      return;
    }
    stmt = std::move(r).value();
  }
  for (int i = 0; i < argc; ++i) sqlite3_bind_value(stmt.get(), i + 1, argv[i]);
  const int rc = sqlite3_step(stmt.get());
  if (rc != SQLITE_ROW) {
    sqlite3_result_error(ctx, sqlite3_errmsg(helper), -1);
  } else if (sqlite3_column_type(stmt.get(), 0) == SQLITE_NULL &&
             sqlite3_value_type(argv[0]) != SQLITE_NULL) {
    // SQLite's printf returns NULL when the result passed the length cap.
    g->refuse(ctx,
              fmt::format("{}(): the result is over the value length cap of {} bytes", name,
                          g->max_length_),
              true);
  } else {
    sqlite3_result_value(ctx, sqlite3_column_value(stmt.get(), 0));
  }
  sqlite3_reset(stmt.get());
  sqlite3_clear_bindings(stmt.get());
}

void LengthGuard::substr_fn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  auto* g = static_cast<LengthGuard*>(sqlite3_user_data(ctx));
  if (argc != 2) {
    sqlite3_result_error(ctx, "substr(): wrong number of arguments", -1);
    return;
  }
  sqlite3* helper = g->helper(ctx);
  if (helper == nullptr) return;
  if (!g->substr_) {
    auto r = prepare(helper,
                     fmt::format("SELECT substr(?1, ?2, {})", kDefaultMaxLength));
    if (!r.ok()) {
      sqlite3_result_error(ctx, r.error().message.c_str(), -1);
      return;
    }
    g->substr_ = std::move(r).value();
  }
  sqlite3_stmt* stmt = g->substr_.get();
  // X is within this connection's limit, which the helper shares; the result is
  // never longer than X.
  if (sqlite3_bind_value(stmt, 1, argv[0]) != SQLITE_OK ||
      sqlite3_bind_value(stmt, 2, argv[1]) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW) {
    sqlite3_result_error(ctx, sqlite3_errmsg(helper), -1);
    const int code = sqlite3_errcode(helper);
    if (code == SQLITE_TOOBIG || code == SQLITE_NOMEM) sqlite3_result_error_code(ctx, code);
  } else {
    sqlite3_result_value(ctx, sqlite3_column_value(stmt, 0));
  }
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
}

void LengthGuard::printf_fn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  call(ctx, argc, argv, false);
}
void LengthGuard::format_fn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  call(ctx, argc, argv, true);
}

}  // namespace swarmlite
