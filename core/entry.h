// Entry = one write transaction as it goes into the log (docs/formats/entry.md).
// One canonical byte sequence per entry; the decoder rejects truncated input,
// trailing bytes, unknown versions, non-canonical encodings and anything over
// the limits, each with its own Errc and an offset.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite {

inline constexpr uint8_t kEntryVersion = 1;

// A bound SQL parameter. Index order = type tag on the wire:
// 0 null, 1 int64, 2 double, 3 text, 4 blob.
struct Value {
  std::variant<std::monostate, int64_t, double, std::string, Bytes> v;
  friend bool operator==(const Value&, const Value&) = default;
};

struct Statement {
  std::string sql;
  std::vector<Value> params;
  friend bool operator==(const Statement&, const Statement&) = default;
};

struct Entry {
  uint64_t seq = 0;                 // position in the log, 0-based
  int64_t time_ms = 0;              // pinned "now", Unix milliseconds
  std::array<uint8_t, 32> seed{};   // pinned randomness
  std::vector<Statement> statements;
  Hash32 state_root{};              // state tree root after applying this entry
  uint32_t page_count = 0;          // database pages after applying this entry
  friend bool operator==(const Entry&, const Entry&) = default;
};

struct EntryLimits {
  size_t max_entry_bytes = 16 << 20;   // whole encoded entry
  size_t max_statements = 100000;
  size_t max_sql_bytes = 1 << 20;      // one statement's SQL text
  size_t max_params = 32766;           // per statement (SQLite's default variable limit)
  size_t max_value_bytes = 16 << 20;   // one text/blob param
  // All params of the entry together. A decoded param takes ~40 bytes of memory
  // for as little as 1 byte of input (a null): this bounds the amplification.
  size_t max_total_params = 1 << 21;
};

// Preconditions (what decode_entry checks; the writer of a new entry, not the
// encoder, enforces them — decode_entry(encode_entry(e)) is the check): no NaN
// double, SQL and text params valid UTF-8, no NUL in SQL, within EntryLimits.
Bytes encode_entry(const Entry& entry);
// encode_entry(e) for `fields` (seq, time_ms, seed, state_root, page_count)
// with `statements` as e.statements, without copying them into an Entry, into
// `buffer` (cleared; its capacity reused: the primary's write path keeps the
// buffers of durable entries). The exact size is reserved first.
Bytes encode_entry(const Entry& fields, std::span<const Statement> statements, Bytes buffer = {});
Result<Entry> decode_entry(ByteView bytes, const EntryLimits& limits = {});
// decode_entry into `out`, reusing the buffers it holds (an entry decoded
// earlier: its strings' and vectors' capacities), so a decoder of one batch
// after another allocates little (Log::recycle_decoded). The same code and
// checks as decode_entry; on an error `out` holds a partial entry.
Status decode_entry_into(ByteView bytes, Entry& out, const EntryLimits& limits = {});
// decode_entry's checks without building the entry: the same code, so it
// accepts exactly the bytes decode_entry accepts, with the same error.
Status check_entry(ByteView bytes, const EntryLimits& limits = {});

// One statement in the entry's wire form (sql, param count, typed params;
// docs/formats/entry.md), for formats that embed a statement (query proofs).
class Writer;
class Reader;
void write_statement(Writer& w, const Statement& st);
// The bytes write_statement writes for `st`, so an encoder reserves its
// buffer once instead of growing it statement by statement.
size_t encoded_statement_bytes(const Statement& st);
// The bytes of an encoded entry holding `statements` (encode_entry's size).
size_t encoded_entry_bytes(std::span<const Statement> statements);
// Reads one statement with the entry decoder's checks (UTF-8, no NUL in SQL, no
// NaN, caps; max_total_params bounds its params). `reserved_after`: bytes that
// must remain after it, used to bound its param count before allocating.
Result<Statement> read_statement(Reader& r, const EntryLimits& limits, size_t reserved_after = 0);

// The log tree's leaf for this entry: hash_leaf(encoded bytes).
Hash32 entry_leaf_hash(ByteView encoded_entry);

}  // namespace swarmlite
