// Built-in SQL functions whose one call can run for minutes, replaced on every
// connection that runs SQL it did not write (reads, the primary's writes, the
// replica's replay, the verifier) by versions that return the same value in
// linear time (docs/verified-reads.md "The read guard", docs/determinism.md).
//
// A single function call is not interruptible: SQLite checks the progress
// handler and sqlite3_interrupt() between VDBE instructions, never inside one
// function. SQLite 3.40's instr(H, N) compares N at every character of H, so
// its cost is |H| x |N|: instr() of a 16 MiB string and an 8 MiB needle that
// never matches runs for hours (measured: 8 MB x 20 kB took 2 s of CPU) and
// holds a read-pool thread — or the primary's only writer — the whole time.
// The replacement finds N with glibc's memmem (two-way string matching, linear
// in |H| + |N|) and counts characters the way SQLite does, so every result is
// the built-in's: a generated differential test (linear_functions_test.cpp)
// compares them on text, invalid UTF-8, blobs, numbers, NULL and mixed types.
//
// replace(), trim(), LIKE and GLOB were measured too and stay SQLite's:
// replace() and trim() with the same worst-case shapes finish in milliseconds
// at the 16 MiB read cap, and LIKE/GLOB give up early on a wildcard that
// cannot match (SQLITE_NOWILDCARDMATCH); their pattern length is capped by
// SQLITE_LIMIT_LIKE_PATTERN_LENGTH on read connections.
#pragma once

#include "core/result.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {

// Registers instr() (2 arguments, UTF-8, deterministic and innocuous like the
// built-in) on `db`.
Status install_linear_functions(sqlite3* db);

}  // namespace swarmlite
