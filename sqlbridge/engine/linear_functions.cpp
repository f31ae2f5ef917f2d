#include "sqlbridge/engine/linear_functions.h"

#include <string.h>  // memmem (GNU)

#include <cstdint>

namespace swarmlite {

namespace {

bool is_continuation(unsigned char c) { return (c & 0xc0) == 0x80; }

struct ValueCopy {
  sqlite3_value* v = nullptr;
  ~ValueCopy() { sqlite3_value_free(v); }
};

// SQLite 3.40's instrFunc (func.c), with its search loop replaced:
//  - NULL in either argument: NULL; an empty needle: 1;
//  - two blobs are searched byte by byte; otherwise both are taken as text
//    (a blob next to a non-blob through a copy, as SQLite does) and the
//    haystack is walked one character at a time: a step moves one byte and
//    then past every continuation byte (10xxxxxx), so only position 0 and
//    positions holding a non-continuation byte are tried, and the result is
//    1 + the number of tried positions before the match (0 if none matches).
// A match found by memmem at byte q starts with the needle's first byte; if
// that byte is not a continuation byte, q is a tried position, and the tried
// positions before it are 0 and the non-continuation bytes in 1..q-1. If the
// needle starts with a continuation byte, only position 0 can match.
void instr_fn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const int type_h = sqlite3_value_type(argv[0]);
  const int type_n = sqlite3_value_type(argv[1]);
  if (type_h == SQLITE_NULL || type_n == SQLITE_NULL) return;
  int64_t n_h = sqlite3_value_bytes(argv[0]);
  int64_t n_n = sqlite3_value_bytes(argv[1]);
  if (n_n <= 0) {
    sqlite3_result_int(ctx, 1);
    return;
  }
  const unsigned char* h = nullptr;
  const unsigned char* n = nullptr;
  bool is_text = true;
  ValueCopy c1, c2;
  if (type_h == SQLITE_BLOB && type_n == SQLITE_BLOB) {
    h = static_cast<const unsigned char*>(sqlite3_value_blob(argv[0]));
    n = static_cast<const unsigned char*>(sqlite3_value_blob(argv[1]));
    is_text = false;
  } else if (type_h != SQLITE_BLOB && type_n != SQLITE_BLOB) {
    h = sqlite3_value_text(argv[0]);
    n = sqlite3_value_text(argv[1]);
  } else {
    c1.v = sqlite3_value_dup(argv[0]);
    h = sqlite3_value_text(c1.v);
    if (h == nullptr) {
      sqlite3_result_int(ctx, 0);
      return;
    }
    n_h = sqlite3_value_bytes(c1.v);
    c2.v = sqlite3_value_dup(argv[1]);
    n = sqlite3_value_text(c2.v);
    if (n == nullptr) {
      sqlite3_result_int(ctx, 0);
      return;
    }
    n_n = sqlite3_value_bytes(c2.v);
  }
  if (n == nullptr || (n_h != 0 && h == nullptr)) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (n_n > n_h) {
    sqlite3_result_int(ctx, 0);
    return;
  }
  if (is_text && is_continuation(n[0])) {
    sqlite3_result_int(ctx, std::memcmp(h, n, static_cast<size_t>(n_n)) == 0 ? 1 : 0);
    return;
  }
  const void* found = memmem(h, static_cast<size_t>(n_h), n, static_cast<size_t>(n_n));
  if (found == nullptr) {
    sqlite3_result_int(ctx, 0);
    return;
  }
  const int64_t q = static_cast<const unsigned char*>(found) - h;
  int64_t position = 1;
  if (!is_text) {
    position += q;
  } else {
    for (int64_t i = 1; i <= q; ++i) position += is_continuation(h[i]) ? 0 : 1;
  }
  // SQLite's N is an int; a 2^31-character haystack is past every length cap.
  sqlite3_result_int64(ctx, position);
}

}  // namespace

Status install_linear_functions(sqlite3* db) {
  if (sqlite3_create_function_v2(db, "instr", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                 nullptr, instr_fn, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return sqlite_error(db, "registering the linear-time instr()");
  }
  return ok_status();
}

}  // namespace swarmlite
