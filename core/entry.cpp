// Entry codec (docs/formats/entry.md). The decoder is the gate for bytes from
// disk and network: every count and length is checked against EntryLimits and
// against the bytes that remain before anything is allocated, and every value
// with more than one reading (NaN, invalid UTF-8, SQL cut short by a NUL) is
// refused, so an accepted byte string is exactly encode_entry(decode_entry(it)).
#include "core/entry.h"

#include <cmath>
#include <cstring>

#include "core/codec.h"
#include "core/hash.h"

namespace swarmlite {

namespace {

enum ValueTag : uint8_t { kTagNull = 0, kTagInt = 1, kTagDouble = 2, kTagText = 3, kTagBlob = 4 };
static_assert(std::variant_size_v<decltype(Value::v)> == 5, "one wire tag per Value alternative");

// Smallest encodings, used to bound a count by the bytes that remain.
constexpr size_t kMinStatementBytes = 4 + 4;  // empty SQL, no params
constexpr size_t kMinValueBytes = 1;          // a null
constexpr size_t kTrailerBytes = 32 + 4;      // state_root, page_count

// Offset of the first byte that makes `s` invalid UTF-8 (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), or npos.
size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII (SQL text, most values) eight bytes at a time: a word with no high
    // bit set holds eight ASCII characters; any other word is read bytewise.
    while (n - i >= 8) {
      uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      if ((word & 0x8080808080808080ULL) != 0) break;
      i += 8;
    }
    if (i == n) break;
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      const uint8_t b = static_cast<uint8_t>(s[i + k]);
      const uint8_t min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xbf;
      if (b < min || b > max) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

// The string is a view of the reader's bytes (Reader::str is blob + copy).
Result<std::string_view> read_utf8(Reader& r, std::string_view field, size_t cap) {
  const size_t at = r.offset() + 4;  // first byte after the length
  SWL_ASSIGN(ByteView b, r.blob(field, cap));
  std::string_view s(reinterpret_cast<const char*>(b.data()), b.size());
  if (size_t bad = first_invalid_utf8(s); bad != std::string_view::npos) {
    return r.fail_at(Errc::non_canonical, at + bad, field, "not valid UTF-8");
  }
  return s;
}

// Every read below fills `out` only when it is not null: check_entry runs the
// same code as decode_entry, so the two accept exactly the same bytes, without
// building the entry (docs/performance.md "Entry checked, not built").
Status read_value(Reader& r, const EntryLimits& limits, Value* out) {
  const size_t at = r.offset();
  SWL_ASSIGN(uint8_t tag, r.u8("param type"));
  switch (tag) {
    case kTagNull:
      if (out) out->v = std::monostate{};  // `out` may hold an earlier entry's value
      break;
    case kTagInt: {
      SWL_ASSIGN(int64_t i, r.i64("int64 param"));
      if (out) out->v = i;
      break;
    }
    case kTagDouble: {
      SWL_ASSIGN(double d, r.f64("double param"));
      if (std::isnan(d)) {
        return r.fail_at(Errc::non_canonical, at + 1, "double param",
                         "NaN (SQLite binds NaN as NULL, so it has no canonical meaning)");
      }
      if (out) out->v = d;
      break;
    }
    case kTagText: {
      SWL_ASSIGN(std::string_view t, read_utf8(r, "text param", limits.max_value_bytes));
      if (auto* held = out ? std::get_if<std::string>(&out->v) : nullptr) {
        held->assign(t);  // reuses the buffer (decode_entry_into)
      } else if (out) {
        out->v.emplace<std::string>(t);
      }
      break;
    }
    case kTagBlob: {
      SWL_ASSIGN(ByteView b, r.blob("blob param", limits.max_value_bytes));
      if (auto* held = out ? std::get_if<Bytes>(&out->v) : nullptr) {
        held->assign(b.begin(), b.end());  // reuses the buffer (decode_entry_into)
      } else if (out) {
        out->v.emplace<Bytes>(b.begin(), b.end());
      }
      break;
    }
    default:
      return r.fail_at(Errc::bad_value, at, "param type",
                       fmt::format("unknown type tag {} (0 null, 1 int64, 2 double, 3 text, "
                                   "4 blob)",
                                   tag));
  }
  return ok_status();
}

void write_value(Writer& w, const Value& value) {
  w.u8(static_cast<uint8_t>(value.v.index()));
  std::visit(
      [&w](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          w.i64(x);
        } else if constexpr (std::is_same_v<T, double>) {
          w.f64(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          w.str(x);
        } else if constexpr (std::is_same_v<T, Bytes>) {
          w.blob(x);
        }
      },
      value.v);
}

// One statement (into `out` if not null); `total_params` accumulates over the
// statements of one object and is held to limits.max_total_params.
Status read_statement_counted(Reader& r, const EntryLimits& limits, size_t reserved_after,
                              size_t& total_params, Statement* out) {
  const size_t sql_at = r.offset() + 4;
  SWL_ASSIGN(std::string_view sql, read_utf8(r, "sql", limits.max_sql_bytes));
  // sqlite3_prepare stops at a NUL: "a\0b" and "a\0c" would be one statement.
  if (size_t nul = sql.find('\0'); nul != std::string_view::npos) {
    return r.fail_at(Errc::non_canonical, sql_at + nul, "sql",
                     "NUL byte inside SQL text (SQLite would ignore everything after it)");
  }
  const size_t params_at = r.offset();
  SWL_ASSIGN(size_t param_count, r.count("param count", limits.max_params,
                                          kMinValueBytes, reserved_after));
  total_params += param_count;
  if (total_params > limits.max_total_params) {
    return r.fail_at(Errc::too_large, params_at, "param count",
                     fmt::format("the params total {}, over the cap of {}", total_params,
                                 limits.max_total_params));
  }
  if (out) {
    out->sql.assign(sql);
    out->params.resize(param_count);
  }
  for (size_t k = 0; k < param_count; ++k) {
    SWL_TRY(read_value(r, limits, out ? &out->params[k] : nullptr));
  }
  return ok_status();
}

// The entry decoder (into `out` if not null). `out` may hold an earlier
// entry (decode_entry_into): every field is written, and its strings and
// vectors are assigned and resized, never rebuilt, so their buffers are reused.
Status read_entry(ByteView bytes, const EntryLimits& limits, Entry* out) {
  Reader r(bytes, "entry");
  SWL_TRY(r.preamble(kEntryVersion, limits.max_entry_bytes));
  SWL_ASSIGN(uint64_t seq, r.u64("seq"));
  SWL_ASSIGN(int64_t time_ms, r.i64("time_ms"));
  SWL_ASSIGN(Hash32 seed, r.hash("seed"));
  SWL_ASSIGN(size_t statement_count, r.count("statement count", limits.max_statements,
                                              kMinStatementBytes, kTrailerBytes));
  if (out) {
    out->seq = seq;
    out->time_ms = time_ms;
    out->seed = seed;
    out->statements.resize(statement_count);
  }
  size_t total_params = 0;
  for (size_t i = 0; i < statement_count; ++i) {
    SWL_TRY(read_statement_counted(r, limits, kTrailerBytes, total_params,
                                   out ? &out->statements[i] : nullptr));
  }
  SWL_ASSIGN(Hash32 state_root, r.hash("state_root"));
  SWL_ASSIGN(uint32_t page_count, r.u32("page_count"));
  SWL_TRY(r.expect_end());
  if (out) {
    out->state_root = state_root;
    out->page_count = page_count;
  }
  return ok_status();
}

}  // namespace

void write_statement(Writer& w, const Statement& st) {
  w.str(st.sql);
  w.u32(static_cast<uint32_t>(st.params.size()));
  for (const Value& v : st.params) write_value(w, v);
}

size_t encoded_statement_bytes(const Statement& st) {
  size_t n = 4 + st.sql.size() + 4;
  for (const Value& v : st.params) {
    n += 1;  // the tag
    std::visit(
        [&n](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
            n += 8;
          } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, Bytes>) {
            n += 4 + x.size();
          }
        },
        v.v);
  }
  return n;
}

size_t encoded_entry_bytes(std::span<const Statement> statements) {
  size_t n = 1 + 8 + 8 + 32 + 4 + kTrailerBytes;  // version, seq, time, seed, count; trailer
  for (const Statement& st : statements) n += encoded_statement_bytes(st);
  return n;
}

Result<Statement> read_statement(Reader& r, const EntryLimits& limits, size_t reserved_after) {
  size_t total_params = 0;
  Statement st;
  SWL_TRY(read_statement_counted(r, limits, reserved_after, total_params, &st));
  return st;
}

Bytes encode_entry(const Entry& fields, std::span<const Statement> statements, Bytes buffer) {
  Writer w(std::move(buffer));
  w.reserve(encoded_entry_bytes(statements));  // one allocation at most, not one per doubling
  w.u8(kEntryVersion);
  w.u64(fields.seq);
  w.i64(fields.time_ms);
  w.raw(fields.seed);
  w.u32(static_cast<uint32_t>(statements.size()));
  for (const Statement& st : statements) write_statement(w, st);
  w.hash(fields.state_root);
  w.u32(fields.page_count);
  return w.take();
}

Bytes encode_entry(const Entry& entry) { return encode_entry(entry, entry.statements); }

Result<Entry> decode_entry(ByteView bytes, const EntryLimits& limits) {
  Entry e;
  SWL_TRY(read_entry(bytes, limits, &e));
  return e;
}

Status decode_entry_into(ByteView bytes, Entry& out, const EntryLimits& limits) {
  return read_entry(bytes, limits, &out);
}

Status check_entry(ByteView bytes, const EntryLimits& limits) {
  return read_entry(bytes, limits, nullptr);
}

Hash32 entry_leaf_hash(ByteView encoded_entry) { return hash_leaf(encoded_entry); }

}  // namespace swarmlite
