// Built-in functions whose *result* (not just an error) depends on the
// connection's SQLITE_LIMIT_LENGTH, made independent of it, for connections
// that run SQL they did not write (docs/verified-reads.md "The read guard",
// docs/determinism.md "Primary-only bounds"). The primary writes under a lower
// limit than a replica replays under, and a peer reads under a lower limit than
// a client verifies under, so any such function would make them disagree.
//
// printf()/format(): SQLite 3.40's printf has two traits a guard must close:
//  - one call is not interruptible, and printf('%.*c', 900000000, 'x') loops 900
//    million times even after SQLITE_LIMIT_LENGTH cut the result (7 s);
//  - over SQLITE_LIMIT_LENGTH it returns NULL instead of an error, so the same
//    call gives NULL under one limit and text under a higher one.
// The wrapper (1) reads the format as SQLite's printf does (flags, width digits
// or '*', '.' and precision digits or '*', length modifiers; one argument per
// conversion but "%%", one more per '*') and refuses a width or precision over
// the length cap before anything runs, (2) runs SQLite's own printf on a private
// in-memory connection with the same cap, so every result is SQLite's, and (3)
// turns the NULL of an over-the-cap result into SQLITE_TOOBIG.
//
// substr(X, Y)/substring(X, Y): with no length argument SQLite takes the
// connection's length limit as the length, so a start far before the string
// (Y < -(limit - length(X)), e.g. from random()) keeps fewer characters under a
// lower limit: substr('abcd', -100000000) is '' under the primary's 32 MiB and
// 'abcd' under SQLite's default 1e9 (found by tests/sqlfuzz, seed 2). The
// two-argument forms are replaced by SQLite's own three-argument substr with
// the default limit as the length, run on the private connection: the result is
// what a connection with the default limit computes, whatever this one's limit.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "core/result.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {

class LengthGuard {
 public:
  // SQLite's default SQLITE_LIMIT_LENGTH: the length two-argument substr() takes.
  static constexpr int kDefaultMaxLength = 1000000000;

  // Installs the wrappers on `db`. `on_refused` (may be empty) is called with the
  // message when a call is refused or its result is over the cap, on the
  // connection's thread. The guard must outlive every statement run on `db`
  // (keep it with the connection). One thread at a time, like the connection.
  static Result<std::unique_ptr<LengthGuard>> install(
      sqlite3* db, int max_length, std::function<void(const std::string&)> on_refused = {});

  LengthGuard(const LengthGuard&) = delete;
  LengthGuard& operator=(const LengthGuard&) = delete;

 private:
  LengthGuard() = default;
  static void call(struct sqlite3_context* ctx, int argc, struct sqlite3_value** argv, bool is_format);
  static void printf_fn(struct sqlite3_context* ctx, int argc, struct sqlite3_value** argv);
  static void format_fn(struct sqlite3_context* ctx, int argc, struct sqlite3_value** argv);
  static void substr_fn(struct sqlite3_context* ctx, int argc, struct sqlite3_value** argv);
  void refuse(struct sqlite3_context* ctx, const std::string& message, bool too_big);
  // The helper connection, opened on first use; null (and an error set on
  // `ctx`) when it cannot be opened.
  struct sqlite3* helper(struct sqlite3_context* ctx);

  int max_length_ = 0;
  std::function<void(const std::string&)> on_refused_;
  SqliteDb helper_;
  std::map<std::pair<bool, int>, SqliteStmt> stmts_;  // (format?, argc) -> SELECT printf(?1, …)
  SqliteStmt substr_;                                  // SELECT substr(?1, ?2, 1000000000)
};

}  // namespace swarmlite
