// The rqlite-style HTTP API's pure half (docs/http-api.md): parsing request
// bodies and URL query strings into core Statements/options, and rendering
// results as rqlite JSON. No sockets, no Asio: unit-tested and fuzzable alone.
//
// Statement forms accepted in a JSON array body (rqlite's):
//   "SELECT 1"                             plain SQL
//   ["INSERT INTO t VALUES(?, ?)", 1, "x"] SQL + positional params
//   ["INSERT INTO t VALUES(:a)", {"a": 1}] SQL + named params (keys without the
//                                          prefix; :a, @a and $a all match "a")
// Named params are turned into positional ones by numbering the SQL's
// parameters exactly as SQLite does (sql_parameters()), so a Statement always
// carries params[i] for parameter number i+1 — the form the log stores.
// Param values: null, integers (int64), reals, strings (text), booleans
// (1/0), arrays of byte values 0..255 (blob).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/bytes.h"
#include "core/entry.h"
#include "core/result.h"

namespace swarmlite::net {

struct HttpJsonLimits {
  size_t max_statements = 10000;  // statements in one request body
  size_t max_params = 32766;      // params per statement, and highest ?NNN (SQLite's limit)
  size_t max_depth = 8;           // JSON nesting depth of a body
  size_t max_blob_bytes = 4 << 20;
};

// --- parsing ---------------------------------------------------------------

// Parses a request body: a JSON array of statements (forms above).
// Errors (invalid_argument) say what and where: "body: statement 2: param 3: …",
// JSON syntax errors with the byte offset.
Result<std::vector<Statement>> parse_statements(std::string_view body,
                                                const HttpJsonLimits& limits = {});

// Offset of the first byte of `s` that does not belong to well-formed UTF-8
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF);
// nullopt when all of it is. SQL that is not UTF-8 is refused (400) before it
// reaches SQLite: a proof of it could never verify (docs/http-api.md).
std::optional<size_t> invalid_utf8_offset(std::string_view s);

// One parameter as SQLite numbers it: index (1-based) and name with its
// prefix (":a", "@a", "$a", "?5"; "" for a bare "?").
struct SqlParameter {
  int index = 0;
  std::string name;
};
// The parameters of `sql` in order of first appearance, numbered as SQLite
// numbers them (bare ? = highest so far + 1, ?NNN = NNN, a name = highest + 1
// on first use and the same number after). Skips string literals, quoted
// identifiers and comments. Errors: ?NNN above max_index or 0.
Result<std::vector<SqlParameter>> sql_parameters(std::string_view sql, size_t max_index = 32766);

// The request options carried in the URL query string. Unknown keys are ignored
// (rqlite clients send some we do not use: level, freshness, redirect, …).
struct RequestOptions {
  bool transaction = false;  // ?transaction
  bool redirect = false;     // ?redirect: a peer answers a write with 301 to the primary instead of forwarding it
  bool pretty = false;       // ?pretty
  bool timings = false;      // ?timings
  bool associative = false;  // ?associative: rows as objects
  bool proof = false;        // ?proof=1
  std::optional<std::string> q;  // ?q=SQL (queries via GET)
  uint64_t min_size = 0;         // ?min_size=N
  std::chrono::milliseconds timeout{5000};  // ?timeout=5s|500ms|2 (seconds)
  std::string level;             // ?level=none|weak|strong|linearizable|auto ("" = none); others are a 400
  // ?freshness=D: answer only from a state this node knew to be current at most
  // D ago (docs/http-api.md "Read consistency"); ?freshness_strict is the same.
  std::optional<std::chrono::milliseconds> freshness;
};

inline constexpr std::chrono::milliseconds kMaxRequestTimeout{60000};

// Parses "a=1&b&q=SELECT%20%2A" (without the leading '?'). Flags are true when
// present without a value or with 1/true/yes/on; 0/false/no/off make them false.
// Errors name the key and value.
Result<RequestOptions> parse_request_options(std::string_view query_string);

// Percent-decoding for URL query components ('+' is a space). Errors on bad escapes.
Result<std::string> url_decode(std::string_view s);
std::string url_encode(std::string_view s);

// Go-style durations as rqlite takes them: "5s", "250ms", "1m30s", "1.5s", or a bare number of seconds.
Result<std::chrono::milliseconds> parse_duration(std::string_view s);

// --- results ---------------------------------------------------------------

// One /db/execute result.
struct ExecOutcome {
  int64_t last_insert_id = 0;
  int64_t rows_affected = 0;
  std::vector<std::string> columns;        // RETURNING rows, if any
  std::vector<std::vector<Value>> rows;
  std::optional<std::string> error;        // set: the statement failed, other fields unused
  double seconds = 0;
};

// One /db/query result.
struct QueryOutcome {
  std::vector<std::string> columns;
  std::vector<std::string> types;          // declared types, lower-cased as rqlite does
  std::vector<std::vector<Value>> rows;
  std::optional<std::string> error;
  double seconds = 0;
  // With ?proof=1: the state size the rows are from and the binary query proof.
  std::optional<uint64_t> size;
  Bytes proof;
};

// A whole response: {"results":[…], "time": s (with timings)}.
std::string render_exec_results(const std::vector<ExecOutcome>& results, const RequestOptions& opts,
                                double total_seconds);
std::string render_query_results(const std::vector<QueryOutcome>& results,
                                 const RequestOptions& opts, double total_seconds);
// The same text built through a nlohmann::json document. render_query_results
// uses it for the pretty and associative forms and writes the default form
// directly; the two agree byte for byte (http_json_test).
std::string render_query_results_dom(const std::vector<QueryOutcome>& results,
                                     const RequestOptions& opts, double total_seconds);
// {"error":"…"} (what a 4xx/5xx body holds).
std::string render_error(std::string_view message, bool pretty = false);

// A value as rqlite renders it: blob → base64 string, real → number (null if not finite).
nlohmann::json value_to_json(const Value& v);
// A query result cell as rqlite renders it: in a column declared DATE,
// DATETIME or TIMESTAMP (`lowered_decltype`, lower case, exact match), TEXT in
// one of SQLite's date/time layouts and INTEGER Unix time (seconds, or
// milliseconds past ±1e12) become RFC 3339 text ("2004-02-14T07:15:00Z",
// trailing fractional zeros trimmed); text that does not parse and other types
// stay as they are (docs/http-api.md "Dates and times"). Proofs carry the raw
// values; only the JSON rendering changes.
bool is_datetime_decltype(std::string_view lowered_decltype);
nlohmann::json result_value_to_json(const Value& v, std::string_view lowered_decltype);
// JSON text that never throws on invalid UTF-8 (it is replaced by U+FFFD).
std::string dump_json(const nlohmann::json& j, bool pretty);

// Standard base64 (with padding), as rqlite renders blobs.
std::string base64_encode(ByteView bytes);
Result<Bytes> base64_decode(std::string_view text);

// --- client side (the CLI reading a response) --------------------------------

// Parses one result object of a /db/query response back into a QueryOutcome
// (blobs stay base64 text: JSON does not say which strings were blobs).
Result<QueryOutcome> query_outcome_from_json(const nlohmann::json& result);

}  // namespace swarmlite::net
