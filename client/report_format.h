// Text and JSON renderings of query answers, shared by the CLI's query, verify
// and demo commands and meant for bindings (docs/client.md): one table layout
// (two spaces between left-aligned columns, trailing blanks trimmed), the JSON
// document `swarmlite query --json` prints, and the safe-to-print forms of
// what came from a peer (SQL as a JSON string, params as a JSON array).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "client/proof_check.h"
#include "core/entry.h"

namespace swarmlite::client {

struct TableStyle {
  std::string indent;         // before every line
  bool header_rule = true;    // a line of dashes under the column names
  bool row_count = true;      // "(N rows)" at the end
  bool reals_fixed2 = false;  // reals as 12.34 instead of their shortest round-trip form
};

// One cell: NULL, the integer, the real, the text as is, a blob as x'hex'.
std::string cell_text(const Value& v, bool reals_fixed2 = false);
// Text as a terminal table shows it: control characters (C0, DEL, the C1
// range) and Unicode's bidirectional overrides and isolates as escapes (\n,
// \r, \t, \0, \xHH, \u202e), so that a value, which comes from whoever wrote
// the row, can neither cut the table short (a NUL ends a C string) nor move
// the cursor, clear the screen, start a fake line or reorder what follows.
// Everything else, valid UTF-8 or not, is kept. JSON output keeps the exact value.
std::string display_text(std::string_view text);
// The table, every line ending in '\n'. Without columns: no header. Column
// names and text cells go through display_text.
std::string format_table(const std::vector<std::string>& columns, const std::vector<std::vector<Value>>& rows,
                         const TableStyle& style = {});

// {"columns": [...], "types": [...], "values": [[...], ...]} (values as rqlite renders them).
nlohmann::json table_json(const std::vector<std::string>& columns, const std::vector<std::string>& types,
                          const std::vector<std::vector<Value>>& rows);
// table_json plus "sql", "params" and "verified": {size, state_root, log_root, head_time_ms, pages}.
nlohmann::json answer_json(const VerifiedAnswer& answer);

// Text that came from a peer, safe on a terminal: a JSON string (control characters escaped).
std::string json_string(const std::string& text);
nlohmann::json params_json(const std::vector<Value>& params);

}  // namespace swarmlite::client
