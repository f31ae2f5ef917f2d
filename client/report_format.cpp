#include "client/report_format.h"

#include <fmt/format.h>

#include <algorithm>

#include "net/http_json.h"

namespace swarmlite::client {

std::string cell_text(const Value& v, bool reals_fixed2) {
  return std::visit(
      [reals_fixed2](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) return "NULL";
        else if constexpr (std::is_same_v<T, int64_t>) return std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) return reals_fixed2 ? fmt::format("{:.2f}", x) : fmt::format("{}", x);
        else if constexpr (std::is_same_v<T, std::string>) return x;
        else return "x'" + to_hex(ByteView(x)) + "'";
      },
      v.v);
}

std::string format_table(const std::vector<std::string>& columns, const std::vector<std::vector<Value>>& rows,
                         const TableStyle& style) {
  std::vector<size_t> width(columns.size());
  for (size_t c = 0; c < columns.size(); ++c) width[c] = columns[c].size();
  std::vector<std::vector<std::string>> cells;
  for (const auto& row : rows) {
    std::vector<std::string> r;
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      r.push_back(cell_text(row[c], style.reals_fixed2));
      width[c] = std::max(width[c], r.back().size());
    }
    cells.push_back(std::move(r));
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& r) {
    std::string s = style.indent;
    for (size_t c = 0; c < r.size(); ++c) s += fmt::format("{}{:<{}}", c ? "  " : "", r[c], width[c]);
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out += s + "\n";
  };
  if (!columns.empty()) {
    line(columns);
    if (style.header_rule) {
      std::vector<std::string> rule;
      for (size_t w : width) rule.push_back(std::string(w, '-'));
      line(rule);
    }
  }
  for (const auto& r : cells) line(r);
  if (style.row_count) out += fmt::format("{}({} row{})\n", style.indent, rows.size(), rows.size() == 1 ? "" : "s");
  return out;
}

nlohmann::json table_json(const std::vector<std::string>& columns, const std::vector<std::string>& types,
                          const std::vector<std::vector<Value>>& rows) {
  nlohmann::json doc{{"columns", columns}, {"types", types}, {"values", nlohmann::json::array()}};
  for (const auto& row : rows) {
    nlohmann::json r = nlohmann::json::array();
    for (const auto& v : row) r.push_back(net::value_to_json(v));
    doc["values"].push_back(std::move(r));
  }
  return doc;
}

nlohmann::json answer_json(const VerifiedAnswer& a) {
  nlohmann::json doc = table_json(a.columns, a.types, a.rows);
  doc["sql"] = a.sql;
  doc["params"] = params_json(a.params);
  doc["verified"] = {{"size", a.head.size},         {"state_root", to_hex(a.head.state_root)},
                     {"log_root", to_hex(a.head.log_root)}, {"head_time_ms", a.head.time_ms},
                     {"pages", a.pages}};
  return doc;
}

std::string json_string(const std::string& text) { return net::dump_json(nlohmann::json(text), false); }

nlohmann::json params_json(const std::vector<Value>& params) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& v : params) out.push_back(net::value_to_json(v));
  return out;
}

}  // namespace swarmlite::client
