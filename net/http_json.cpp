// rqlite JSON in and out (see http_json.h, docs/http-api.md).
#include "net/http_json.h"

#include <sodium.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <map>

namespace swarmlite::net {
namespace {

using json = nlohmann::json;

const char* json_type_name(const json& j) { return j.type_name(); }

bool is_id_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '$' || c >= 0x80;
}
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

// Index just past a quoted token starting at `i` (quote char `close`; a doubled
// close char is an escaped one). Unterminated: the end of `sql`.
size_t skip_quoted(std::string_view sql, size_t i, char close) {
  for (size_t j = i + 1; j < sql.size(); ++j) {
    if (sql[j] != close) continue;
    if (close != ']' && j + 1 < sql.size() && sql[j + 1] == close) {
      ++j;
      continue;
    }
    return j + 1;
  }
  return sql.size();
}

Result<Value> json_to_value(const json& j, const HttpJsonLimits& limits) {
  switch (j.type()) {
    case json::value_t::null:
      return Value{};
    case json::value_t::boolean:
      return Value{int64_t{j.get<bool>() ? 1 : 0}};
    case json::value_t::number_integer:
      return Value{j.get<int64_t>()};
    case json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return make_error(Errc::invalid_argument, "integer {} is out of the int64 range", u);
      return Value{static_cast<int64_t>(u)};
    }
    case json::value_t::number_float:
      return Value{j.get<double>()};
    case json::value_t::binary: {  // BodySax: an integer literal beyond 64 bits
      const auto& lexeme = j.get_binary();
      return make_error(Errc::invalid_argument, "integer {} is out of the int64 range",
                        std::string(lexeme.begin(), lexeme.end()));
    }
    case json::value_t::string:
      return Value{j.get<std::string>()};
    case json::value_t::array: {
      if (j.size() > limits.max_blob_bytes)
        return make_error(Errc::too_large, "blob of {} bytes is over the cap of {}", j.size(),
                          limits.max_blob_bytes);
      Bytes blob;
      blob.reserve(j.size());
      for (size_t i = 0; i < j.size(); ++i) {
        const json& b = j[i];
        if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() > 255)
          return make_error(Errc::invalid_argument,
                            "blob byte {} is not an integer 0..255 (a blob param is an array of bytes)", i);
        blob.push_back(static_cast<uint8_t>(b.get<int64_t>()));
      }
      return Value{std::move(blob)};
    }
    default:
      return make_error(Errc::invalid_argument, "a {} cannot be a param value", json_type_name(j));
  }
}

Result<std::vector<Value>> bind_named(const std::string& sql, const json& named,
                                      const HttpJsonLimits& limits) {
  SWL_ASSIGN(auto params, sql_parameters(sql, limits.max_params));
  int highest = 0;
  for (const auto& p : params) highest = std::max(highest, p.index);
  std::vector<Value> out(static_cast<size_t>(highest));
  std::vector<bool> bound(out.size(), false);
  for (const auto& p : params) {
    if (p.name.empty() || p.name[0] == '?')
      return make_error(Errc::invalid_argument,
                        "positional parameter {} has no value (named params were given)",
                        p.name.empty() ? "?" : p.name);
    auto it = named.find(p.name.substr(1));
    if (it == named.end()) it = named.find(p.name);
    if (it == named.end())
      return make_error(Errc::invalid_argument, "named parameter {} has no value", p.name);
    auto v = json_to_value(*it, limits);
    if (!v.ok())
      return make_error(v.error().code, "named param \"{}\": {}", it.key(), v.error().message);
    out[static_cast<size_t>(p.index - 1)] = std::move(v).value();
    bound[static_cast<size_t>(p.index - 1)] = true;
  }
  for (auto it = named.begin(); it != named.end(); ++it) {
    bool matched = false;
    for (const auto& p : params)
      if (p.name.substr(1) == it.key() || p.name == it.key()) matched = true;
    if (!matched)
      return make_error(Errc::invalid_argument, "named param \"{}\" matches no parameter in the SQL",
                        it.key());
  }
  for (size_t i = 0; i < bound.size(); ++i)
    if (!bound[i])  // a gap left by ?NNN numbering, e.g. "?3" alone
      return make_error(Errc::invalid_argument, "parameter number {} has no value", i + 1);
  return out;
}

Status check_sql_text(const std::string& sql) {
  if (auto bad = invalid_utf8_offset(sql))
    return make_error(Errc::invalid_argument, "the SQL is not valid UTF-8 (byte {} of {})", *bad, sql.size());
  return ok_status();
}

Result<Statement> parse_statement(const json& j, const HttpJsonLimits& limits) {
  if (j.is_string()) {
    SWL_TRY(check_sql_text(j.get_ref<const std::string&>()));
    return Statement{j.get<std::string>(), {}};
  }
  if (!j.is_array())
    return make_error(Errc::invalid_argument,
                      "expected a SQL string or an array [sql, params…], got a {}", json_type_name(j));
  if (j.empty() || !j[0].is_string())
    return make_error(Errc::invalid_argument, "an array statement must start with the SQL string");
  Statement st{j[0].get<std::string>(), {}};
  SWL_TRY(check_sql_text(st.sql));
  if (j.size() == 2 && j[1].is_object()) {
    SWL_ASSIGN(st.params, bind_named(st.sql, j[1], limits));
    return st;
  }
  if (j.size() - 1 > limits.max_params)
    return make_error(Errc::too_large, "{} params, over the cap of {}", j.size() - 1, limits.max_params);
  st.params.reserve(j.size() - 1);
  for (size_t i = 1; i < j.size(); ++i) {
    if (j[i].is_object())
      return make_error(Errc::invalid_argument,
                        "param {}: named params must be the only object after the SQL", i);
    auto v = json_to_value(j[i], limits);
    if (!v.ok()) return make_error(v.error().code, "param {}: {}", i, v.error().message);
    st.params.push_back(std::move(v).value());
  }
  return st;
}

// Builds the DOM of a request body (nlohmann's own DOM builder) with three
// rules of ours on the way:
//  - nesting deeper than max_depth stops the parse;
//  - an integer literal outside 64 bits (nlohmann would silently turn it into
//    a double: -9223372036854775809 or 18446744073709551616) is kept as a
//    binary value holding its text, which json_to_value refuses naming the
//    param (JSON text can hold no binary value, so nothing else is one);
//  - a number beyond a double (1e400), or any syntax error, is recorded with
//    its byte offset instead of thrown.
class BodySax {
 public:
  BodySax(json& root, size_t max_depth) : dom_(root, /*allow_exceptions=*/false), max_depth_(max_depth) {}

  bool null() { return scalar() && dom_.null(); }
  bool boolean(bool v) { return scalar() && dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return scalar() && dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return scalar() && dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const std::string& text) {
    if (!scalar()) return false;
    if (text.find_first_of(".eE") == std::string::npos) {
      json::binary_t lexeme(std::vector<uint8_t>(text.begin(), text.end()));
      return dom_.binary(lexeme);
    }
    return dom_.number_float(v, text);
  }
  bool string(std::string& s) { return scalar() && dom_.string(s); }
  bool binary(json::binary_t& b) { return scalar() && dom_.binary(b); }
  bool start_object(std::size_t n) { return open() && dom_.start_object(n); }
  bool key(std::string& k) { return scalar() && dom_.key(k); }
  bool end_object() { --depth_; return dom_.end_object(); }
  bool start_array(std::size_t n) { return open() && dom_.start_array(n); }
  bool end_array() { --depth_; return dom_.end_array(); }
  bool parse_error(std::size_t byte, const std::string& token, const nlohmann::detail::exception& e) {
    if (e.id == 406)  // out_of_range: number overflow
      error_ = fmt::format("number {} at byte {} is out of range (beyond a 64-bit float)", token,
                           byte > 0 ? byte - 1 : 0);
    else
      error_ = fmt::format("body is not valid JSON (at byte {}): {}", byte, e.what());
    return false;
  }

  const std::optional<std::string>& error() const { return error_; }

 private:
  bool too_deep() {
    if (!error_) error_ = fmt::format("body nests deeper than {} levels", max_depth_);
    return false;
  }
  bool scalar() { return depth_ <= max_depth_ || too_deep(); }
  bool open() {
    if (depth_ > max_depth_) return too_deep();
    ++depth_;
    return true;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  size_t max_depth_;
  size_t depth_ = 0;  // containers open
  std::optional<std::string> error_;
};

bool flag_value(std::string_view v, bool& out) {
  if (v.empty() || v == "1" || v == "true" || v == "yes" || v == "on") {
    out = true;
    return true;
  }
  if (v == "0" || v == "false" || v == "no" || v == "off") {
    out = false;
    return true;
  }
  return false;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

}  // namespace

std::optional<size_t> invalid_utf8_offset(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }  // not the surrogates U+D800..U+DFFF
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }  // not above U+10FFFF
    else return i;
    if (i + len > n) return i;
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c1 < lo || c1 > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      const auto ck = static_cast<unsigned char>(s[i + k]);
      if (ck < 0x80 || ck > 0xBF) return i;
    }
    i += len;
  }
  return std::nullopt;
}

Result<std::vector<SqlParameter>> sql_parameters(std::string_view sql, size_t max_index) {
  std::vector<SqlParameter> out;
  std::map<std::string, int, std::less<>> seen;
  int highest = 0;
  size_t i = 0;
  const size_t n = sql.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(sql[i]);
    if (c == '\'' || c == '"' || c == '`') {
      i = skip_quoted(sql, i, static_cast<char>(c));
    } else if (c == '[') {
      i = skip_quoted(sql, i, ']');
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      size_t e = sql.find('\n', i);
      i = e == std::string_view::npos ? n : e + 1;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      size_t e = sql.find("*/", i + 2);
      i = e == std::string_view::npos ? n : e + 2;
    } else if (is_digit(c)) {  // a number literal (may hold letters: 1e5, 0x1F)
      while (i < n && (is_id_char(static_cast<unsigned char>(sql[i])) || sql[i] == '.')) ++i;
    } else if (is_id_char(c) && c != '$') {  // identifier or keyword ('$' inside one is not a param)
      while (i < n && is_id_char(static_cast<unsigned char>(sql[i]))) ++i;
    } else if (c == '?') {
      size_t j = i + 1;
      while (j < n && is_digit(static_cast<unsigned char>(sql[j]))) ++j;
      if (j == i + 1) {
        if (static_cast<size_t>(highest) + 1 > max_index)
          return make_error(Errc::too_large, "more than {} parameters at offset {}", max_index, i);
        out.push_back({++highest, ""});
      } else {
        std::string name(sql.substr(i, j - i));
        uint64_t num = 0;
        auto [p, ec] = std::from_chars(sql.data() + i + 1, sql.data() + j, num);
        if (ec != std::errc() || num == 0 || num > max_index)
          return make_error(Errc::invalid_argument,
                            "parameter {} at offset {} is out of range 1..{}", name, i, max_index);
        if (!seen.count(name)) {
          seen.emplace(name, static_cast<int>(num));
          out.push_back({static_cast<int>(num), name});
        }
        highest = std::max(highest, static_cast<int>(num));
      }
      i = j;
    } else if (c == ':' || c == '@' || c == '$') {
      size_t j = i + 1;
      while (j < n && is_id_char(static_cast<unsigned char>(sql[j]))) ++j;
      if (j > i + 1) {
        std::string name(sql.substr(i, j - i));
        if (!seen.count(name)) {
          if (static_cast<size_t>(highest) + 1 > max_index)
            return make_error(Errc::too_large, "more than {} parameters at offset {}", max_index, i);
          seen.emplace(name, ++highest);
          out.push_back({highest, name});
        }
      }
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

Result<std::vector<Statement>> parse_statements(std::string_view body, const HttpJsonLimits& limits) {
  json doc;
  BodySax sax(doc, limits.max_depth);
  bool parsed = json::sax_parse(body, &sax, json::input_format_t::json, /*strict=*/true);
  if (!parsed || sax.error()) {
    return make_error(Errc::invalid_argument, "{}",
                      sax.error() ? *sax.error() : std::string("body is not valid JSON"));
  }
  if (!doc.is_array())
    return make_error(Errc::invalid_argument, "body must be a JSON array of statements, got a {}",
                      json_type_name(doc));
  if (doc.size() > limits.max_statements)
    return make_error(Errc::too_large, "body holds {} statements, over the cap of {}", doc.size(),
                      limits.max_statements);
  std::vector<Statement> out;
  out.reserve(doc.size());
  for (size_t i = 0; i < doc.size(); ++i) {
    auto st = parse_statement(doc[i], limits);
    if (!st.ok()) return make_error(st.error().code, "body: statement {}: {}", i, st.error().message);
    out.push_back(std::move(st).value());
  }
  return out;
}

Result<std::string> url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      int hi = i + 2 < s.size() ? hex_digit(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? hex_digit(s[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return make_error(Errc::invalid_argument, "bad percent escape at offset {}", i);
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Result<std::chrono::milliseconds> parse_duration(std::string_view s) {
  if (s.empty()) return make_error(Errc::invalid_argument, "empty duration");
  double total_ms = 0;
  size_t i = 0;
  bool bare = true;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && (is_digit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
    if (j == i) return make_error(Errc::invalid_argument, "duration \"{}\": expected a number at offset {}", s, i);
    double num = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + j, num);
    if (ec != std::errc() || p != s.data() + j)
      return make_error(Errc::invalid_argument, "duration \"{}\": bad number at offset {}", s, i);
    size_t k = j;
    while (k < s.size() && !is_digit(static_cast<unsigned char>(s[k])) && s[k] != '.') ++k;
    std::string_view unit = s.substr(j, k - j);
    double scale = 0;
    if (unit.empty() && bare && k == s.size()) scale = 1000;  // bare number: seconds
    else if (unit == "ns") scale = 1e-6;
    else if (unit == "us" || unit == "\xC2\xB5s") scale = 1e-3;
    else if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else return make_error(Errc::invalid_argument, "duration \"{}\": unknown unit \"{}\"", s, unit);
    total_ms += num * scale;
    bare = false;
    i = k;
  }
  if (!std::isfinite(total_ms) || total_ms > 1e12)
    return make_error(Errc::invalid_argument, "duration \"{}\" is out of range", s);
  return std::chrono::milliseconds(static_cast<int64_t>(total_ms));
}

Result<RequestOptions> parse_request_options(std::string_view qs) {
  RequestOptions o;
  size_t i = 0;
  while (i <= qs.size()) {
    size_t amp = qs.find('&', i);
    if (amp == std::string_view::npos) amp = qs.size();
    std::string_view part = qs.substr(i, amp - i);
    i = amp + 1;
    if (part.empty()) continue;
    size_t eq = part.find('=');
    SWL_ASSIGN(std::string key, url_decode(part.substr(0, eq)));
    std::string value;
    if (eq != std::string_view::npos) {
      SWL_ASSIGN(value, url_decode(part.substr(eq + 1)));
    }
    bool* flag = key == "transaction" ? &o.transaction
                 : key == "pretty"    ? &o.pretty
                 : key == "timings"   ? &o.timings
                 : key == "associative" ? &o.associative
                 : key == "proof"     ? &o.proof
                 : key == "redirect"  ? &o.redirect
                                      : nullptr;
    if (flag) {
      if (!flag_value(value, *flag))
        return make_error(Errc::invalid_argument, "query option {}={}: expected 1/0/true/false", key, value);
    } else if (key == "q") {
      // One statement per GET: a second q would otherwise replace the first
      // without a word, and the client would miss a result it asked for.
      if (o.q)
        return make_error(Errc::invalid_argument,
                          "query option q is given more than once: a GET runs one statement; "
                          "POST a JSON array to run several");
      if (auto bad = invalid_utf8_offset(value))
        return make_error(Errc::invalid_argument, "query option q: the SQL is not valid UTF-8 (byte {} of {})",
                          *bad, value.size());
      o.q = std::move(value);
    } else if (key == "min_size") {
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || ec != std::errc() || p != value.data() + value.size())
        return make_error(Errc::invalid_argument, "query option min_size={}: expected an unsigned integer", value);
      o.min_size = n;
    } else if (key == "timeout") {
      auto d = parse_duration(value);
      if (!d.ok()) return make_error(Errc::invalid_argument, "query option timeout: {}", d.error().message);
      o.timeout = std::min(*d, kMaxRequestTimeout);
    } else if (key == "level") {
      if (!value.empty() && value != "none" && value != "weak" && value != "strong" && value != "linearizable" &&
          value != "auto")
        return make_error(Errc::invalid_argument,
                          "query option level={}: expected none, weak, strong, linearizable or auto", value);
      o.level = std::move(value);
    } else if (key == "freshness") {
      auto d = parse_duration(value);
      if (!d.ok()) return make_error(Errc::invalid_argument, "query option freshness: {}", d.error().message);
      o.freshness = *d;
    }
  }
  return o;
}

std::string base64_encode(ByteView bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

Result<Bytes> base64_decode(std::string_view text) {
  Bytes out(text.size() / 4 * 3 + 3);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size())
    return make_error(Errc::bad_value, "invalid base64 at offset {}",
                      end ? static_cast<size_t>(end - text.data()) : size_t{0});
  out.resize(len);
  return out;
}

nlohmann::json value_to_json(const Value& v) {
  return std::visit(
      [](const auto& x) -> json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) return nullptr;
        else if constexpr (std::is_same_v<T, int64_t>) return x;
        else if constexpr (std::is_same_v<T, double>) return std::isfinite(x) ? json(x) : json(nullptr);
        else if constexpr (std::is_same_v<T, std::string>) return x;
        else return base64_encode(x);
      },
      v.v);
}

namespace {

// The proleptic Gregorian date of a day count since 1970-01-01 (the usual
// era-based civil-calendar arithmetic).
void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
}

bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

// RFC 3339 with nanoseconds, trailing fractional zeros trimmed, "Z" for UTC
// (Go's time.RFC3339Nano, which rqlite's JSON encoder uses).
std::string rfc3339(int64_t y, unsigned mo, unsigned d, unsigned h, unsigned mi, unsigned s,
                    uint32_t nanos, int offset_minutes) {
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", y, mo, d, h, mi, s);
  if (nanos != 0) {
    std::string frac = fmt::format("{:09}", nanos);
    while (frac.back() == '0') frac.pop_back();
    out += "." + frac;
  }
  if (offset_minutes == 0) {
    out += "Z";
  } else {
    const int a = offset_minutes < 0 ? -offset_minutes : offset_minutes;
    out += fmt::format("{}{:02}:{:02}", offset_minutes < 0 ? '-' : '+', a / 60, a % 60);
  }
  return out;
}

// Parses SQLite date/time text in the layouts rqlite accepts (its driver's
// SQLiteTimestampFormats, tried after a trailing "Z" is dropped):
//   YYYY-MM-DD[( |T)HH:MM[:SS[.fraction]][±HH:MM]]
// (the offset only after seconds). Dates and times are range-checked.
std::optional<std::string> sqlite_text_to_rfc3339(std::string_view s) {
  if (!s.empty() && s.back() == 'Z') s.remove_suffix(1);
  size_t i = 0;
  auto digits = [&](size_t n, unsigned& v) {
    if (i + n > s.size()) return false;
    v = 0;
    for (size_t k = 0; k < n; ++k) {
      const char c = s[i + k];
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<unsigned>(c - '0');
    }
    i += n;
    return true;
  };
  auto lit = [&](char c) {
    if (i < s.size() && s[i] == c) { ++i; return true; }
    return false;
  };
  unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  uint32_t nanos = 0;
  int offset = 0;
  if (!digits(4, y) || !lit('-') || !digits(2, mo) || !lit('-') || !digits(2, d)) return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return std::nullopt;
  if (i < s.size()) {
    if (!lit(' ') && !lit('T')) return std::nullopt;
    if (!digits(2, h) || !lit(':') || !digits(2, mi)) return std::nullopt;
    if (i < s.size()) {
      if (!lit(':') || !digits(2, sec)) return std::nullopt;
      if (lit('.')) {
        size_t n = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
          if (n < 9) nanos = nanos * 10 + static_cast<uint32_t>(s[i] - '0');
          ++n;
          ++i;
        }
        if (n == 0 || n > 9) return std::nullopt;
        for (size_t k = n; k < 9; ++k) nanos *= 10;
      }
      if (i < s.size()) {
        const char sign = s[i];
        if (sign != '+' && sign != '-') return std::nullopt;
        ++i;
        unsigned oh = 0, om = 0;
        if (!digits(2, oh) || !lit(':') || !digits(2, om) || i != s.size()) return std::nullopt;
        if (oh > 23 || om > 59) return std::nullopt;
        offset = static_cast<int>(oh * 60 + om) * (sign == '-' ? -1 : 1);
      }
    }
    if (h > 23 || mi > 59 || sec > 59) return std::nullopt;
  }
  return rfc3339(y, mo, d, h, mi, sec, nanos, offset);
}

// Integers in a date/time column are Unix time: milliseconds when the value
// is beyond ±1e12 (13 digits), seconds otherwise — rqlite's driver's rule.
// Years outside 0000-9999 do not fit RFC 3339 (rqlite fails the whole query
// there): nullopt, and the number is kept.
std::optional<std::string> unix_to_rfc3339(int64_t v) {
  int64_t secs = v;
  uint32_t nanos = 0;
  if (v > 1'000'000'000'000 || v < -1'000'000'000'000) {
    secs = v / 1000;
    int64_t ms = v % 1000;
    if (ms < 0) { ms += 1000; secs -= 1; }
    nanos = static_cast<uint32_t>(ms) * 1'000'000;
  }
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) { rem += 86400; days -= 1; }
  int64_t y = 0;
  unsigned mo = 0, d = 0;
  civil_from_days(days, y, mo, d);
  if (y < 0 || y > 9999) return std::nullopt;
  return rfc3339(y, mo, d, static_cast<unsigned>(rem / 3600), static_cast<unsigned>(rem / 60 % 60),
                 static_cast<unsigned>(rem % 60), nanos, 0);
}

}  // namespace

bool is_datetime_decltype(std::string_view lowered) {
  return lowered == "date" || lowered == "datetime" || lowered == "timestamp";
}

namespace {

// The RFC 3339 text a cell renders as in a column of `lowered_decltype`
// (result_value_to_json's rule), or nullopt when it renders as its value.
std::optional<std::string> datetime_rendering(const Value& v, std::string_view lowered_decltype) {
  if (!is_datetime_decltype(lowered_decltype)) return std::nullopt;
  if (const auto* text = std::get_if<std::string>(&v.v)) return sqlite_text_to_rfc3339(*text);
  if (const auto* i = std::get_if<int64_t>(&v.v)) return unix_to_rfc3339(*i);
  return std::nullopt;
}

}  // namespace

nlohmann::json result_value_to_json(const Value& v, std::string_view lowered_decltype) {
  if (auto t = datetime_rendering(v, lowered_decltype)) return *t;
  return value_to_json(v);
}

std::string dump_json(const nlohmann::json& j, bool pretty) {
  return j.dump(pretty ? 2 : -1, ' ', false, json::error_handler_t::replace) + (pretty ? "\n" : "");
}

std::string render_error(std::string_view message, bool pretty) {
  return dump_json(json{{"error", std::string(message)}}, pretty);
}

namespace {

// `types` (lower-cased declared types, may be shorter than a row) select
// rqlite's date/time rendering per column (result_value_to_json).
json cell_json(const Value& v, const std::vector<std::string>& types, size_t c) {
  return c < types.size() ? result_value_to_json(v, types[c]) : value_to_json(v);
}

json rows_json(const std::vector<std::vector<Value>>& rows, const std::vector<std::string>& types = {}) {
  json values = json::array();
  for (const auto& row : rows) {
    json r = json::array();
    for (size_t c = 0; c < row.size(); ++c) r.push_back(cell_json(row[c], types, c));
    values.push_back(std::move(r));
  }
  return values;
}

json assoc_rows_json(const std::vector<std::string>& columns, const std::vector<std::vector<Value>>& rows,
                     const std::vector<std::string>& types = {}) {
  json out = json::array();
  for (const auto& row : rows) {
    json r = json::object();
    for (size_t c = 0; c < row.size() && c < columns.size(); ++c) r[columns[c]] = cell_json(row[c], types, c);
    out.push_back(std::move(r));
  }
  return out;
}

std::string finish(json results, const RequestOptions& opts, double total_seconds) {
  json doc{{"results", std::move(results)}};
  if (opts.timings) doc["time"] = total_seconds;
  return dump_json(doc, opts.pretty);
}

}  // namespace

namespace {

// The "results" array: per result its error, or what `fill` puts in (and its
// "time" when asked for); `always` adds what is there either way.
template <typename Outcome, typename Fill, typename Always>
std::string render_results(const std::vector<Outcome>& results, const RequestOptions& opts,
                           double total_seconds, Fill fill, Always always) {
  json arr = json::array();
  for (const auto& r : results) {
    json o = json::object();
    if (r.error) {
      o["error"] = *r.error;
    } else {
      fill(r, o);
      if (opts.timings) o["time"] = r.seconds;
    }
    always(r, o);
    arr.push_back(std::move(o));
  }
  return finish(std::move(arr), opts, total_seconds);
}

}  // namespace

std::string render_exec_results(const std::vector<ExecOutcome>& results, const RequestOptions& opts,
                                double total_seconds) {
  auto fill = [&opts](const ExecOutcome& r, json& o) {
    o["last_insert_id"] = r.last_insert_id;
    o["rows_affected"] = r.rows_affected;
    if (!r.columns.empty()) {
      o["columns"] = r.columns;
      if (opts.associative) o["rows"] = assoc_rows_json(r.columns, r.rows);
      else if (!r.rows.empty()) o["values"] = rows_json(r.rows);
    }
  };
  return render_results(results, opts, total_seconds, fill, [](const ExecOutcome&, json&) {});
}

std::string render_query_results_dom(const std::vector<QueryOutcome>& results,
                                     const RequestOptions& opts, double total_seconds) {
  auto fill = [&opts](const QueryOutcome& r, json& o) {
    std::vector<std::string> types;
    types.reserve(r.types.size());
    for (const auto& t : r.types) types.push_back(lower(t));
    if (opts.associative) {
      json t = json::object();
      for (size_t c = 0; c < r.columns.size(); ++c) t[r.columns[c]] = c < types.size() ? types[c] : "";
      o["types"] = std::move(t);
      o["rows"] = assoc_rows_json(r.columns, r.rows, types);
    } else {
      o["columns"] = r.columns;
      if (!r.rows.empty()) o["values"] = rows_json(r.rows, types);  // rqlite omits an empty "values"
      o["types"] = std::move(types);
    }
  };
  auto always = [](const QueryOutcome& r, json& o) {
    if (r.size) o["size"] = *r.size;
    if (!r.proof.empty()) o["proof"] = base64_encode(r.proof);
  };
  return render_results(results, opts, total_seconds, fill, always);
}

namespace {

// Appends JSON text to `out` exactly as dump_json(…, false) renders the same
// values: nlohmann::json's compact form (objects' keys in sorted order, the
// caller's job), invalid UTF-8 replaced. Text of printable ASCII without
// '"' or '\\' (names, types, most cells, base64, dates) is copied as it is;
// anything else, and every double, goes through nlohmann::json itself.
class DirectJson {
 public:
  explicit DirectJson(std::string& out) : out_(out) {}
  void raw(std::string_view s) { out_.append(s); }
  void string(std::string_view s) {
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
        out_.append(json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace));
        return;
      }
    }
    out_.push_back('"');
    out_.append(s);
    out_.push_back('"');
  }
  template <typename Int>
  void integer(Int v) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, end);
  }
  void real(double v) {
    if (!std::isfinite(v)) return raw("null");
    out_.append(json(v).dump());
  }
  void strings(const std::vector<std::string>& v) {
    out_.push_back('[');
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out_.push_back(',');
      string(v[i]);
    }
    out_.push_back(']');
  }
  // value_to_json / result_value_to_json, written.
  void cell(const Value& v, std::string_view lowered_decltype) {
    if (auto t = datetime_rendering(v, lowered_decltype)) return string(*t);
    std::visit(
        [this](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::monostate>)
            raw("null");
          else if constexpr (std::is_same_v<T, int64_t>)
            integer(x);
          else if constexpr (std::is_same_v<T, double>)
            real(x);
          else if constexpr (std::is_same_v<T, std::string>)
            string(x);
          else
            string(base64_encode(x));
        },
        v.v);
  }

 private:
  std::string& out_;
};

}  // namespace

// The default form (compact, rows as arrays) written directly: a point query's
// answer cost the HTTP io thread about 9 µs through a json document
// (docs/performance.md "Query results written directly"). Keys in the order
// nlohmann::json sorts them; render_query_results_dom renders every other form,
// and http_json_test compares the two on generated results.
std::string render_query_results(const std::vector<QueryOutcome>& results,
                                 const RequestOptions& opts, double total_seconds) {
  if (opts.pretty || opts.associative)
    return render_query_results_dom(results, opts, total_seconds);
  std::string out;
  out.reserve(256);
  DirectJson w(out);
  std::vector<std::string> types;
  w.raw("{\"results\":[");
  for (size_t k = 0; k < results.size(); ++k) {
    const QueryOutcome& r = results[k];
    if (k) w.raw(",");
    auto proof_and_size = [&] {
      if (!r.proof.empty()) {
        w.raw(",\"proof\":");
        w.string(base64_encode(r.proof));
      }
      if (r.size) {
        w.raw(",\"size\":");
        w.integer(*r.size);
      }
    };
    if (r.error) {
      w.raw("{\"error\":");
      w.string(*r.error);
      proof_and_size();
      w.raw("}");
      continue;
    }
    types.clear();
    for (const auto& t : r.types) types.push_back(lower(t));
    w.raw("{\"columns\":");
    w.strings(r.columns);
    proof_and_size();
    if (opts.timings) {
      w.raw(",\"time\":");
      w.real(r.seconds);
    }
    w.raw(",\"types\":");
    w.strings(types);
    if (!r.rows.empty()) {  // rqlite omits an empty "values"
      w.raw(",\"values\":[");
      for (size_t i = 0; i < r.rows.size(); ++i) {
        if (i) w.raw(",");
        w.raw("[");
        const auto& row = r.rows[i];
        for (size_t c = 0; c < row.size(); ++c) {
          if (c) w.raw(",");
          w.cell(row[c], c < types.size() ? std::string_view(types[c]) : std::string_view());
        }
        w.raw("]");
      }
      w.raw("]");
    }
    w.raw("}");
  }
  w.raw("]");
  if (opts.timings) {
    w.raw(",\"time\":");
    w.real(total_seconds);
  }
  w.raw("}");
  return out;
}

Result<QueryOutcome> query_outcome_from_json(const nlohmann::json& r) {
  if (!r.is_object()) return make_error(Errc::bad_value, "result is a {}, not an object", json_type_name(r));
  QueryOutcome out;
  auto strings = [](const json& j, const char* what, std::vector<std::string>& dst) -> Status {
    if (!j.is_array()) return make_error(Errc::bad_value, "\"{}\" is not an array", what);
    for (const auto& s : j) {
      if (!s.is_string()) return make_error(Errc::bad_value, "\"{}\" holds a {}", what, json_type_name(s));
      dst.push_back(s.get<std::string>());
    }
    return ok_status();
  };
  if (auto it = r.find("error"); it != r.end()) {
    out.error = it->is_string() ? it->get<std::string>() : it->dump();
    return out;
  }
  if (auto it = r.find("columns"); it != r.end()) SWL_TRY(strings(*it, "columns", out.columns));
  if (auto it = r.find("types"); it != r.end() && it->is_array()) SWL_TRY(strings(*it, "types", out.types));
  if (auto it = r.find("values"); it != r.end()) {
    if (!it->is_array()) return make_error(Errc::bad_value, "\"values\" is not an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& row = (*it)[i];
      if (!row.is_array() || row.size() != out.columns.size())
        return make_error(Errc::bad_value, "row {} does not have {} values", i, out.columns.size());
      std::vector<Value> vals;
      for (const auto& v : row) {
        if (v.is_number_float()) vals.push_back(Value{v.get<double>()});
        else if (v.is_number_unsigned() || v.is_number_integer()) vals.push_back(Value{v.get<int64_t>()});
        else if (v.is_string()) vals.push_back(Value{v.get<std::string>()});
        else if (v.is_boolean()) vals.push_back(Value{int64_t{v.get<bool>()}});
        else if (v.is_null()) vals.push_back(Value{});
        else return make_error(Errc::bad_value, "row {} holds a {}", i, json_type_name(v));
      }
      out.rows.push_back(std::move(vals));
    }
  }
  if (auto it = r.find("time"); it != r.end() && it->is_number()) out.seconds = it->get<double>();
  if (auto it = r.find("size"); it != r.end() && it->is_number_unsigned()) out.size = it->get<uint64_t>();
  if (auto it = r.find("proof"); it != r.end()) {
    if (!it->is_string()) return make_error(Errc::bad_value, "\"proof\" is not a string");
    auto bytes = base64_decode(it->get<std::string>());
    if (!bytes.ok()) return make_error(Errc::bad_value, "\"proof\": {}", bytes.error().message);
    out.proof = std::move(bytes).value();
  }
  return out;
}

}  // namespace swarmlite::net
