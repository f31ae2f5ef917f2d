#include "net/http_json.h"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cmath>
#include <limits>
#include <random>

#include "net/http_request.h"
#include "net/metrics.h"

using namespace swarmlite;
using namespace swarmlite::net;
using nlohmann::json;

namespace {

std::vector<Statement> parse_ok(std::string_view body) {
  auto r = parse_statements(body);
  if (!r.ok()) FAIL_CHECK("parse failed: " << r.error().to_string());
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::string parse_err(std::string_view body) {
  auto r = parse_statements(body);
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

Value vi(int64_t i) { return Value{i}; }
Value vt(std::string s) { return Value{std::move(s)}; }

}  // namespace

TEST_CASE("plain SQL strings parse into statements without params") {
  auto st = parse_ok(R"J(["CREATE TABLE t(a)", "INSERT INTO t VALUES(1)"])J");
  REQUIRE(st.size() == 2);
  CHECK(st[0] == Statement{"CREATE TABLE t(a)", {}});
  CHECK(st[1].sql == "INSERT INTO t VALUES(1)");
  CHECK(parse_ok("[]").empty());
}

TEST_CASE("positional params take every JSON value type") {
  auto st = parse_ok(R"J([["INSERT INTO t VALUES(?,?,?,?,?,?)", 1, -2.5, "x", null, true, [0, 255, 7]]])J");
  REQUIRE(st.size() == 1);
  REQUIRE(st[0].params.size() == 6);
  CHECK(st[0].params[0] == vi(1));
  CHECK(st[0].params[1] == Value{-2.5});
  CHECK(st[0].params[2] == vt("x"));
  CHECK(st[0].params[3] == Value{});
  CHECK(st[0].params[4] == vi(1));
  CHECK(st[0].params[5] == Value{Bytes{0, 255, 7}});
  auto big = parse_ok(R"J([["SELECT ?", 9223372036854775807, -9223372036854775808]])J");
  CHECK(big[0].params[0] == vi(INT64_MAX));
  CHECK(big[0].params[1] == vi(INT64_MIN));
}

TEST_CASE("named params are numbered as SQLite numbers them") {
  auto st = parse_ok(R"J([["INSERT INTO t VALUES(:b, @a, :b, $c)", {"a": 1, "b": "two", "c": null}]])J");
  REQUIRE(st[0].params.size() == 3);
  CHECK(st[0].params[0] == vt("two"));
  CHECK(st[0].params[1] == vi(1));
  CHECK(st[0].params[2] == Value{});
  // Keys may carry the prefix too.
  auto st2 = parse_ok(R"J([["SELECT :x", {":x": 5}]])J");
  CHECK(st2[0].params == std::vector<Value>{vi(5)});

  // Cross-check the numbering with SQLite itself on a real statement.
  const char* sql = "SELECT ?, :a, ?5, @b, ?, :a, $c, ':z', \"@q\", [x$y] -- :no\n /* @no */ FROM (SELECT 1 AS \"x$y\")";
  auto ours = sql_parameters(sql);
  REQUIRE(ours.ok());
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK);
  int highest = 0;
  for (const auto& p : *ours) {
    highest = std::max(highest, p.index);
    if (!p.name.empty()) CHECK_MESSAGE(sqlite3_bind_parameter_index(stmt, p.name.c_str()) == p.index, p.name);
  }
  CHECK(highest == sqlite3_bind_parameter_count(stmt));
  CHECK(ours->size() == 6);  // ?, :a, ?5, @b, ?, $c (the second :a is the same parameter)
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_CASE("bad bodies are refused with what and where") {
  CHECK(parse_err("").find("not valid JSON") != std::string::npos);
  CHECK(parse_err("[\"a\",").find("at byte") != std::string::npos);
  CHECK(parse_err(R"J({"a":1})J").find("must be a JSON array") != std::string::npos);
  CHECK(parse_err("[1]").find("statement 0") != std::string::npos);
  CHECK(parse_err(R"J(["ok", []])J").find("statement 1: an array statement must start") != std::string::npos);
  CHECK(parse_err(R"J([["SELECT ?", {"a": 1}, 2]])J").find("param 1: named params") != std::string::npos);
  CHECK(parse_err(R"J([["SELECT ?", 18446744073709551615]])J").find("int64 range") != std::string::npos);
  CHECK(parse_err(R"J([["SELECT ?", [1, 256]]])J").find("blob byte 1") != std::string::npos);
  CHECK(parse_err(R"J([["SELECT ?", [[1]]]])J").find("blob byte 0") != std::string::npos);
  CHECK(parse_err(R"J([["SELECT :a", {"b": 1}]])J").find("named parameter :a has no value") != std::string::npos);
  CHECK(parse_err(R"J([["SELECT :a", {"a": 1, "zz": 2}]])J").find("\"zz\" matches no parameter") != std::string::npos);
  CHECK(parse_err(R"J([["SELECT ?, :a", {"a": 1}]])J").find("positional parameter ?") != std::string::npos);
  CHECK(parse_err(R"J([["SELECT ?99999", {}]])J").find("out of range") != std::string::npos);
  CHECK(parse_err(std::string(100, '[') + std::string(100, ']')).find("deeper than") != std::string::npos);
  HttpJsonLimits small;
  small.max_statements = 2;
  auto r = parse_statements(R"J(["a","b","c"])J", small);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
}

TEST_CASE("request options parse from the query string") {
  auto o = parse_request_options("transaction&pretty=true&timings=0&q=SELECT%20*%20FROM+t&min_size=42&timeout=250ms&level=strong&redirect&proof=1");
  REQUIRE(o.ok());
  CHECK(o->transaction);
  CHECK(o->pretty);
  CHECK_FALSE(o->timings);
  CHECK(o->proof);
  CHECK(o->q == std::optional<std::string>("SELECT * FROM t"));
  CHECK(o->min_size == 42);
  CHECK(o->timeout == std::chrono::milliseconds(250));
  CHECK(o->level == "strong");
  CHECK(parse_request_options("timeout=1h")->timeout == kMaxRequestTimeout);
  CHECK_FALSE(parse_request_options("min_size=-1").ok());
  CHECK_FALSE(parse_request_options("min_size=").ok());
  CHECK_FALSE(parse_request_options("pretty=maybe").ok());
  // A second q is an error, not a silent replacement of the first.
  auto twice = parse_request_options("q=SELECT+1&q=SELECT+2");
  REQUIRE_FALSE(twice.ok());
  CHECK(twice.error().message.find("more than once") != std::string::npos);
  CHECK_FALSE(parse_request_options("q=%zz").ok());
  CHECK_FALSE(parse_request_options("timeout=5x").ok());
}

TEST_CASE("Go-style durations parse") {
  CHECK(*parse_duration("5s") == std::chrono::milliseconds(5000));
  CHECK(*parse_duration("1m30s") == std::chrono::milliseconds(90000));
  CHECK(*parse_duration("1.5s") == std::chrono::milliseconds(1500));
  CHECK(*parse_duration("2") == std::chrono::milliseconds(2000));
  CHECK(*parse_duration("750000us") == std::chrono::milliseconds(750));
  CHECK_FALSE(parse_duration("").ok());
  CHECK_FALSE(parse_duration("s").ok());
  CHECK_FALSE(parse_duration("1s2").ok());
}

TEST_CASE("url encoding round-trips") {
  std::string s = "SELECT * FROM t WHERE a = 'x&y' -- ü";
  CHECK(*url_decode(url_encode(s)) == s);
}

TEST_CASE("values render as rqlite renders them") {
  CHECK(value_to_json(Value{}).is_null());
  CHECK(value_to_json(vi(-7)) == json(-7));
  CHECK(value_to_json(Value{1.5}) == json(1.5));
  CHECK(value_to_json(Value{std::numeric_limits<double>::infinity()}).is_null());
  CHECK(value_to_json(vt("hi")) == json("hi"));
  CHECK(value_to_json(Value{Bytes{'a', 'b', 'c'}}) == json("YWJj"));
  CHECK(base64_encode(Bytes{}) == "");
  CHECK(*base64_decode("YWJjZA==") == Bytes{'a', 'b', 'c', 'd'});
  CHECK_FALSE(base64_decode("YWJ!").ok());
  // Invalid UTF-8 in text never throws; it is replaced.
  std::string bad = "a\xff" "b";
  CHECK_NOTHROW(dump_json(value_to_json(vt(bad)), false));
}

TEST_CASE("query results render columns, types and values; empty results omit values") {
  QueryOutcome q;
  q.columns = {"id", "name", "data"};
  q.types = {"INTEGER", "text", ""};
  q.rows = {{vi(1), vt("fiona"), Value{Bytes{1, 2}}}};
  QueryOutcome empty;
  empty.columns = {"id"};
  empty.types = {"integer"};
  QueryOutcome err;
  err.error = "no such table: nope";
  RequestOptions opts;
  auto doc = json::parse(render_query_results({q, empty, err}, opts, 0.5));
  CHECK(doc == json::parse(R"J({"results":[
      {"columns":["id","name","data"],"types":["integer","text",""],"values":[[1,"fiona","AQI="]]},
      {"columns":["id"],"types":["integer"]},
      {"error":"no such table: nope"}]})J"));

  opts.timings = true;
  opts.associative = true;
  q.proof = {9, 9};
  q.size = 12;
  auto doc2 = json::parse(render_query_results({q}, opts, 0.25));
  CHECK(doc2["time"] == json(0.25));
  CHECK(doc2["results"][0]["rows"][0]["name"] == json("fiona"));
  CHECK(doc2["results"][0]["types"]["id"] == json("integer"));
  CHECK(doc2["results"][0]["size"] == json(12));
  CHECK(doc2["results"][0]["proof"] == json("CQk="));

  // The CLI reads a result back.
  auto back = query_outcome_from_json(json::parse(render_query_results({q}, RequestOptions{}, 0))["results"][0]);
  REQUIRE(back.ok());
  CHECK(back->columns == q.columns);
  CHECK(back->rows[0][0] == vi(1));
  CHECK(back->rows[0][2] == vt("AQI="));
  CHECK(back->proof == Bytes{9, 9});
  CHECK(back->size == std::optional<uint64_t>(12));
}

TEST_CASE(
    "query results written directly match the json document byte for byte (generated results)") {
  std::mt19937_64 rng(20261206);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::vector<std::string> pieces = {"a",
                                           "id",
                                           "Z9",
                                           " ",
                                           "\"",
                                           "\\",
                                           "\n",
                                           "\t",
                                           std::string("\0", 1),
                                           "\x01",
                                           "\x1f",
                                           "\x7f",
                                           "\xc3\xa9",
                                           "\xe2\x82\xac",
                                           "\xf0\x9f\x98\x80",
                                           "\xff",
                                           "\xc3",
                                           "\xed\xa0\x80",
                                           "/",
                                           "2004-02-14",
                                           " 07:15:00",
                                           "T07:15",
                                           ".123",
                                           "+01:00",
                                           "Z",
                                           "-"};
  auto text = [&] {
    std::string t;
    for (size_t n = pick(6); n > 0; --n) t += pieces[pick(pieces.size())];
    return t;
  };
  const std::vector<std::string> decltypes = {"INTEGER",   "text", "",      "DATE", "datetime",
                                              "TimeStamp", "REAL", "date ", "BLOB"};
  const std::vector<double> reals = {0.0,
                                     -0.0,
                                     1.5,
                                     3.0,
                                     -2.25,
                                     1e300,
                                     -1e-300,
                                     5e-324,
                                     0.1,
                                     1e16,
                                     123456789.125,
                                     std::numeric_limits<double>::infinity(),
                                     std::numeric_limits<double>::quiet_NaN()};
  const std::vector<int64_t> ints = {0,
                                     -1,
                                     7,
                                     1'000'000'000'000,
                                     -1'000'000'000'001,
                                     1'076'743'700,
                                     std::numeric_limits<int64_t>::max(),
                                     std::numeric_limits<int64_t>::min(),
                                     253'402'300'800'000};
  auto value = [&]() -> Value {
    switch (pick(6)) {
      case 0:
        return Value{};
      case 1:
        return vi(ints[pick(ints.size())]);
      case 2:
        return vi(static_cast<int64_t>(rng()));
      case 3:
        return Value{pick(2) ? reals[pick(reals.size())]
                             : std::ldexp(static_cast<double>(rng() >> 11), -30)};
      case 4: {
        Bytes b(pick(7));
        for (auto& x : b) x = static_cast<uint8_t>(rng());
        return Value{std::move(b)};
      }
      default: {
        static const std::vector<std::string> dates = {
            "2004-02-14 07:15:00", "2004-02-14T07:15:00.5Z", "2004-02-30",
            "2004-02-14 07:15:00.123456789+01:00", "2004-02-14"};
        return vt(pick(2) ? dates[pick(dates.size())] : text());
      }
    }
  };
  for (int round = 0; round < 3000; ++round) {
    std::vector<QueryOutcome> results(pick(4));
    for (auto& q : results) {
      if (pick(5) == 0) q.error = text();
      const size_t cols = pick(5);
      for (size_t c = 0; c < cols; ++c) q.columns.push_back(pick(3) ? text() : "c");
      for (size_t c = 0, n = pick(cols + 2); c < n; ++c)
        q.types.push_back(decltypes[pick(decltypes.size())]);
      for (size_t r = pick(4); r > 0; --r) {
        q.rows.emplace_back();
        for (size_t c = 0, n = pick(2) ? cols : pick(cols + 2); c < n; ++c)
          q.rows.back().push_back(value());
      }
      q.seconds = reals[pick(reals.size())];
      if (pick(3) == 0) q.size = rng() >> pick(64);
      if (pick(3) == 0) q.proof = Bytes(pick(5), 0xab);
    }
    RequestOptions opts;
    opts.timings = pick(2) == 0;
    const double total = pick(2) ? reals[pick(reals.size())] : 0.000123;
    const std::string direct = render_query_results(results, opts, total);
    const std::string dom = render_query_results_dom(results, opts, total);
    if (direct != dom) {
      FAIL_CHECK("round " << round << ":\n direct " << direct << "\n dom    " << dom);
      break;
    }
    CHECK_NOTHROW(json::parse(direct));
    // /db/request answers a request of reads with render_query_results (on
    // its read lane or io thread): the text its slots give, one
    // query_result_json each, rendered by render_request_results.
    RequestOptions request = opts;
    request.pretty = pick(4) == 0;
    request.associative = pick(4) == 0;
    std::vector<json> slots;
    for (const auto& q : results) slots.push_back(query_result_json(q, request));
    const std::string by_slots = render_request_results(slots, request, total);
    const std::string at_once = render_query_results(results, request, total);
    // Byte for byte, but for the order of an associative row's keys when a
    // column name is not UTF-8: sorted by its bytes before the replacement
    // characters (at once) or after (through the slots' parse).
    if (request.associative ? json::parse(by_slots) != json::parse(at_once) : by_slots != at_once) {
      FAIL_CHECK("round " << round << " (/db/request):\n slots   " << by_slots << "\n at once "
                          << at_once);
      break;
    }
  }
}

TEST_CASE("execute results render ids, counts and per-statement errors") {
  ExecOutcome a;
  a.last_insert_id = 5;
  a.rows_affected = 1;
  ExecOutcome b;
  b.error = "UNIQUE constraint failed: t.a";
  RequestOptions opts;
  opts.pretty = true;
  std::string text = render_exec_results({a, b}, opts, 0);
  CHECK(text.find('\n') != std::string::npos);
  CHECK(json::parse(text) ==
        json::parse(R"J({"results":[{"last_insert_id":5,"rows_affected":1},{"error":"UNIQUE constraint failed: t.a"}]})J"));
  CHECK(json::parse(render_error("bad \"x\"")) == json{{"error", "bad \"x\""}});
}

TEST_CASE("metrics render in the Prometheus text format") {
  Metrics m;
  m.counter("swarmlite_http_requests_total", "HTTP requests by status code", {{"code", "200"}}).inc(3);
  m.counter("swarmlite_http_requests_total", "ignored", {{"code", "404"}}).inc();
  m.gauge("swarmlite_lag_entries", "Entries behind", {{"peer", "a\"b\\c\nd"}}).set(2.5);
  auto& h = m.histogram("swarmlite_query_seconds", "Query latency", {0.01, 0.1});
  h.observe(0.005);
  h.observe(0.01);
  h.observe(0.5);
  std::string text = m.render();
  CHECK(text ==
        "# HELP swarmlite_http_requests_total HTTP requests by status code\n"
        "# TYPE swarmlite_http_requests_total counter\n"
        "swarmlite_http_requests_total{code=\"200\"} 3\n"
        "swarmlite_http_requests_total{code=\"404\"} 1\n"
        "# HELP swarmlite_lag_entries Entries behind\n"
        "# TYPE swarmlite_lag_entries gauge\n"
        "swarmlite_lag_entries{peer=\"a\\\"b\\\\c\\nd\"} 2.5\n"
        "# HELP swarmlite_query_seconds Query latency\n"
        "# TYPE swarmlite_query_seconds histogram\n"
        "swarmlite_query_seconds_bucket{le=\"0.01\"} 2\n"
        "swarmlite_query_seconds_bucket{le=\"0.1\"} 2\n"
        "swarmlite_query_seconds_bucket{le=\"+Inf\"} 3\n"
        "swarmlite_query_seconds_sum 0.515\n"
        "swarmlite_query_seconds_count 3\n");
  m.remove("swarmlite_lag_entries", {{"peer", "a\"b\\c\nd"}});
  CHECK(m.render().find("swarmlite_lag_entries") == std::string::npos);
}

TEST_CASE("http_json: DATE/DATETIME/TIMESTAMP columns render as RFC 3339, as rqlite does") {
  auto dt = [](const Value& v, std::string_view type = "datetime") { return result_value_to_json(v, type); };
  // SQLite's own layouts (CURRENT_TIMESTAMP, datetime('now', 'subsec'), date()).
  CHECK(dt(vt("2004-02-14 07:15:00")) == json("2004-02-14T07:15:00Z"));
  CHECK(dt(vt("2004-02-14T07:15:00Z")) == json("2004-02-14T07:15:00Z"));
  CHECK(dt(vt("2004-02-14 07:15:00.500")) == json("2004-02-14T07:15:00.5Z"));
  CHECK(dt(vt("2004-02-14 07:15:00.000")) == json("2004-02-14T07:15:00Z"));
  CHECK(dt(vt("2004-02-14 07:15:00.123456789")) == json("2004-02-14T07:15:00.123456789Z"));
  CHECK(dt(vt("2004-02-14 07:15")) == json("2004-02-14T07:15:00Z"));
  CHECK(dt(vt("2004-02-14"), "date") == json("2004-02-14T00:00:00Z"));
  CHECK(dt(vt("2004-02-14 07:15:00+05:30"), "timestamp") == json("2004-02-14T07:15:00+05:30"));
  CHECK(dt(vt("2004-02-14 07:15:00-00:00")) == json("2004-02-14T07:15:00Z"));
  CHECK(dt(vt("2000-02-29 00:00:00")) == json("2000-02-29T00:00:00Z"));
  // Text that is not a date stays as it is (rqlite would print year 1: docs/http-api.md).
  for (const char* bad : {"", "yesterday", "2004-02-30 00:00:00", "1900-02-29", "2004-13-01",
                          "2004-02-14 24:00:00", "2004-02-14 07:15:00.", "2004-02-14 07:15:00.1234567890",
                          "2004-02-14 07:15+01:00", "2004-02-14 07:15:00 +01:00", "2024-01-31-05:00",
                          "2004-2-14"}) {
    CAPTURE(bad);
    CHECK(dt(vt(bad)) == json(bad));
  }
  // Integers are Unix seconds, or milliseconds beyond ±1e12.
  CHECK(dt(vi(0)) == json("1970-01-01T00:00:00Z"));
  CHECK(dt(vi(1076742900)) == json("2004-02-14T07:15:00Z"));
  CHECK(dt(vi(1076742900123)) == json("2004-02-14T07:15:00.123Z"));
  CHECK(dt(vi(-1)) == json("1969-12-31T23:59:59Z"));
  CHECK(dt(vi(-1000000000001)) == json("1938-04-24T22:13:19.999Z"));
  CHECK(dt(vi(INT64_MAX)) == json(INT64_MAX));  // year past 9999: the number is kept
  CHECK(dt(vi(INT64_MIN)) == json(INT64_MIN));
  // Other types, other declared types, and the case of the declared type.
  CHECK(dt(Value{1.5}) == json(1.5));
  CHECK(dt(Value{}).is_null());
  CHECK(dt(vt("2004-02-14 07:15:00"), "text") == json("2004-02-14 07:15:00"));
  CHECK(dt(vt("2004-02-14 07:15:00"), "datetime(6)") == json("2004-02-14 07:15:00"));
  CHECK(dt(vi(0), "integer") == json(0));

  // Through the renderer: types are matched case-insensitively, rows and assoc alike.
  QueryOutcome q;
  q.columns = {"id", "at"};
  q.types = {"INTEGER", "DATETIME"};
  q.rows = {{vi(1), vt("2004-02-14 07:15:00")}};
  auto doc = json::parse(render_query_results({q}, RequestOptions{}, 0));
  CHECK(doc["results"][0]["values"][0] == json::array({1, "2004-02-14T07:15:00Z"}));
  CHECK(doc["results"][0]["types"] == json::array({"integer", "datetime"}));
  RequestOptions assoc;
  assoc.associative = true;
  doc = json::parse(render_query_results({q}, assoc, 0));
  CHECK(doc["results"][0]["rows"][0]["at"] == json("2004-02-14T07:15:00Z"));
}

TEST_CASE("integers beyond int64 are refused naming statement and param, never turned into REAL") {
  for (const char* big : {"-9223372036854775809", "18446744073709551616", "-18446744073709551616",
                          "123456789012345678901234567890"}) {
    std::string body = std::string(R"J(["SELECT 1", ["SELECT ?, ?", 1, )J") + big + "]]";
    auto e = parse_err(body);
    INFO(big << " -> " << e);
    CHECK(e.find("statement 1: param 2: integer ") != std::string::npos);
    CHECK(e.find(big) != std::string::npos);
    CHECK(e.find("int64 range") != std::string::npos);
  }
  auto named = parse_err(R"J([["SELECT :x", {"x": -9223372036854775809}]])J");
  CHECK(named.find("statement 0: named param \"x\": integer -9223372036854775809") != std::string::npos);
  // The edges still parse as integers; a real written with a dot or exponent stays a real.
  auto ok = parse_statements(R"J([["SELECT ?, ?, ?, ?", -9223372036854775808, 9223372036854775807, 1e19, 2.0]])J");
  REQUIRE_MESSAGE(ok.ok(), ok.error_text());
  CHECK(ok->at(0).params[0] == Value{std::numeric_limits<int64_t>::min()});
  CHECK(ok->at(0).params[1] == Value{std::numeric_limits<int64_t>::max()});
  CHECK(ok->at(0).params[2] == Value{1e19});
  CHECK(ok->at(0).params[3] == Value{2.0});
}

TEST_CASE("a number beyond a double (1e400) is a clear error, not an exception") {
  std::string e;
  CHECK_NOTHROW(e = parse_err(R"J([["SELECT ?", 1e400]])J"));
  CHECK(e.find("1e400") != std::string::npos);
  CHECK(e.find("out of range") != std::string::npos);
  CHECK_NOTHROW(e = parse_err(R"J([["SELECT ?", -1e400]])J"));
  CHECK(e.find("out of range") != std::string::npos);
}

TEST_CASE("SQL that is not UTF-8 is refused: in ?q= and, defensively, in a body") {
  CHECK(invalid_utf8_offset("SELECT 'héllo ✓ 𝄞'") == std::nullopt);
  CHECK(invalid_utf8_offset("SELECT \xff") == std::optional<size_t>(7));
  CHECK(invalid_utf8_offset("\xc0\x80") == std::optional<size_t>(0));          // overlong NUL
  CHECK(invalid_utf8_offset("a\xed\xa0\x80") == std::optional<size_t>(1));     // a surrogate
  CHECK(invalid_utf8_offset("\xf4\x90\x80\x80") == std::optional<size_t>(0));  // above U+10FFFF
  CHECK(invalid_utf8_offset("ok\xe2\x9c") == std::optional<size_t>(2));        // truncated
  auto o = parse_request_options("q=SELECT%20%FF");
  REQUIRE_FALSE(o.ok());
  CHECK(o.error().message.find("not valid UTF-8 (byte 7") != std::string::npos);
  CHECK(parse_request_options("q=SELECT%20%C3%A9").ok());
  // JSON text must be UTF-8 already; the parser refuses it before our check.
  CHECK(parse_err("[\"SELECT \xff\"]").find("not valid JSON") != std::string::npos);
}
