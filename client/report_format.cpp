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

std::string display_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x20 || b == 0x7f) {
      switch (b) {
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case 0:
          out += "\\0";
          break;
        default:
          out += fmt::format("\\x{:02x}", b);
      }
      continue;
    }
    // U+0080..U+009F (C1 controls: C2 80..C2 9F), U+202A..U+202E (E2 80 AA..AE)
    // and U+2066..U+2069 (E2 81 A6..A9).
    if (b == 0xc2 && i + 1 < text.size()) {
      const auto c = static_cast<unsigned char>(text[i + 1]);
      if (c >= 0x80 && c <= 0x9f) {
        out += fmt::format("\\u{:04x}", c);
        ++i;
        continue;
      }
    }
    if (b == 0xe2 && i + 2 < text.size()) {
      const auto c = static_cast<unsigned char>(text[i + 1]);
      const auto d = static_cast<unsigned char>(text[i + 2]);
      if ((c == 0x80 && d >= 0xaa && d <= 0xae) || (c == 0x81 && d >= 0xa6 && d <= 0xa9)) {
        out += fmt::format("\\u{:04x}", 0x2000 + ((c & 0x3f) << 6) + (d & 0x3f));
        i += 2;
        continue;
      }
    }
    out += static_cast<char>(b);
  }
  return out;
}

std::string format_table(const std::vector<std::string>& columns, const std::vector<std::vector<Value>>& rows,
                         const TableStyle& style) {
  std::vector<std::string> names;
  for (const auto& c : columns) names.push_back(display_text(c));
  std::vector<size_t> width(names.size());
  for (size_t c = 0; c < names.size(); ++c) width[c] = names[c].size();
  std::vector<std::vector<std::string>> cells;
  for (const auto& row : rows) {
    std::vector<std::string> r;
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      const auto* text = std::get_if<std::string>(&row[c].v);
      r.push_back(text ? display_text(*text) : cell_text(row[c], style.reals_fixed2));
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
  if (!names.empty()) {
    line(names);
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
