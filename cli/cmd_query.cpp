// swarmlite query: read-only SQL against a peer's HTTP API (optionally with a
// proof the client verifies itself) or against a local replica file.
// swarmlite verify: check a saved proof and print the rows it proves.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/keys.h"
#ifdef SWARMLITE_HAVE_NET
#include "net/http_client.h"
#endif
#include "net/http_json.h"
#include "sqlbridge/proof/read_guard.h"
#include "sqlbridge/proof/verifier.h"

namespace swarmlite::cli {

namespace {

using nlohmann::json;

// A --param value: a JSON scalar (42, 1.5, null, "text") or, failing that, text.
Value param_value(const std::string& text) {
  auto parsed = json::parse(text, nullptr, false);
  if (!parsed.is_discarded()) {
    auto st = net::parse_statements(json::array({json::array({"?", parsed})}).dump());
    if (st.ok() && st->size() == 1 && st->front().params.size() == 1) return st->front().params[0];
  }
  return Value{text};
}

std::string cell_text(const Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) return "NULL";
        else if constexpr (std::is_same_v<T, int64_t>) return std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) return fmt::format("{}", x);
        else if constexpr (std::is_same_v<T, std::string>) return x;
        else return "x'" + to_hex(ByteView(x)) + "'";
      },
      v.v);
}

struct Table {
  std::vector<std::string> columns;
  std::vector<std::string> types;
  std::vector<std::vector<Value>> rows;
};

void print_table(const Table& t, bool as_json, const json& extra) {
  if (as_json) {
    json doc{{"columns", t.columns}, {"types", t.types}, {"values", json::array()}};
    for (const auto& row : t.rows) {
      json r = json::array();
      for (const auto& v : row) r.push_back(net::value_to_json(v));
      doc["values"].push_back(std::move(r));
    }
    for (auto it = extra.begin(); it != extra.end(); ++it) doc[it.key()] = it.value();
    std::fputs(net::dump_json(doc, true).c_str(), stdout);
    return;
  }
  std::vector<size_t> width(t.columns.size());
  std::vector<std::vector<std::string>> cells;
  for (size_t c = 0; c < t.columns.size(); ++c) width[c] = t.columns[c].size();
  for (const auto& row : t.rows) {
    std::vector<std::string> r;
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      r.push_back(cell_text(row[c]));
      width[c] = std::max(width[c], r.back().size());
    }
    cells.push_back(std::move(r));
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (size_t c = 0; c < r.size(); ++c) s += fmt::format("{}{:<{}}", c ? "  " : "", r[c], width[c]);
    while (!s.empty() && s.back() == ' ') s.pop_back();
    fmt::print("{}\n", s);
  };
  if (!t.columns.empty()) {
    line(t.columns);
    std::vector<std::string> rule;
    for (size_t w : width) rule.push_back(std::string(w, '-'));
    line(rule);
  }
  for (const auto& r : cells) line(r);
  fmt::print("({} row{})\n", t.rows.size(), t.rows.size() == 1 ? "" : "s");
}

Table table_of(const QueryResult& r) { return {r.columns, r.decltypes, r.rows}; }

Bytes read_file_capped(const std::string& path, size_t cap) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) throw CliError(1, fmt::format("{}: {}", path, ec.message()));
  if (size > cap) throw CliError(1, fmt::format("{}: {} bytes is over the proof cap of {}", path, size, cap));
  std::ifstream in(path, std::ios::binary);
  Bytes out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.eof() && !in) throw CliError(1, fmt::format("{}: read failed", path));
  return out;
}

[[maybe_unused]] void write_file(const std::string& path, ByteView bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw CliError(1, fmt::format("cannot write {}", path));
}

// Text safe to print on a terminal: the proof's SQL comes from an untrusted
// peer, so it is shown as a JSON string (control characters escaped).
std::string as_json_string(const std::string& text) { return net::dump_json(json(text), false); }

json params_json(const std::vector<Value>& params) {
  json out = json::array();
  for (const auto& v : params) out.push_back(net::value_to_json(v));
  return out;
}

// What the client asked, to hold a proof to: the SQL and, with it, the params.
struct Expected {
  std::optional<std::string> sql;
  std::optional<std::vector<Value>> params;
};

// Verifies proof bytes and prints the rows the verifier computed, with the SQL
// and params they answer (a proof of another query is still a valid proof, of
// other rows) and the head they were computed from. A proof for another SQL or
// other params than `expected` fails (exit 2) naming both.
void verify_and_print(const PublicKey& pub, ByteView proof, VerifyOptions vo, const Expected& expected,
                      bool as_json) {
  auto decoded = decode_query_proof(proof, vo.limits);
  if (!decoded.ok()) throw CliError(2, "proof does not verify: " + decoded.error().to_string());
  if (expected.sql && *expected.sql != decoded->sql)
    throw CliError(2, fmt::format("the proof answers another query: asked {}, the proof holds {}",
                                  as_json_string(*expected.sql), as_json_string(decoded->sql)));
  if (expected.params && *expected.params != decoded->params)
    throw CliError(2, fmt::format("the proof answers {} with other params: asked {}, the proof holds {}",
                                  as_json_string(decoded->sql), net::dump_json(params_json(*expected.params), false),
                                  net::dump_json(params_json(decoded->params), false)));
  vo.expected_sql = expected.sql;
  vo.expected_params = expected.params;
  auto verified = Verifier::verify(pub, *decoded, vo);
  if (!verified.ok()) throw CliError(2, "proof does not verify: " + verified.error().to_string());
  const Head& h = verified->head;
  json extra{{"sql", decoded->sql},
             {"params", params_json(decoded->params)},
             {"verified", {{"size", h.size}, {"state_root", to_hex(h.state_root)}, {"log_root", to_hex(h.log_root)},
                           {"head_time_ms", h.time_ms}, {"pages", verified->pages}}}};
  if (!as_json) {
    fmt::print("sql:    {}\n", as_json_string(decoded->sql));
    fmt::print("params: {}\n", net::dump_json(params_json(decoded->params), false));
  }
  print_table(table_of(verified->result), as_json, extra);
  if (!as_json)
    fmt::print("verified at size {}, state root {} ({} pages proven), head signed at {} ms\n", h.size,
               to_hex(h.state_root), verified->pages, h.time_ms);
}

// --max-age: "30s", "5m", "1h", "250ms" or plain seconds.
std::optional<std::chrono::milliseconds> max_age_of(const std::string& text) {
  if (text.empty()) return std::nullopt;
  auto d = net::parse_duration(text);
  if (!d.ok()) throw CliError(1, "--max-age: " + d.error().message);
  return *d;
}

std::string file_uri(const std::string& path) {
  std::string uri = "file:";
  for (char c : std::filesystem::absolute(path).string()) {
    if (c == '?' || c == '#' || c == '%') uri += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    else uri += c;
  }
  return uri + "?mode=ro";
}

struct QueryArgs {
  std::string peer, db, pub, proof_out, sql, max_age;
  std::vector<std::string> params;
  bool verify = false, as_json = false;
  uint64_t min_size = 0;
  double timeout_s = 30;
};

void run_query(const QueryArgs& a) {
  std::vector<Value> params;
  for (const auto& p : a.params) params.push_back(param_value(p));
  if (!a.db.empty()) {
    if (a.verify || !a.proof_out.empty() || !a.max_age.empty())
      throw CliError(1, "--verify/--proof-out/--max-age need --peer (a local file is trusted as it is)");
    auto conn = must(GuardedConnection::open(file_uri(a.db)), "open " + a.db);
    auto result = must(conn->query(a.sql, params), "query");
    print_table(table_of(result), a.as_json, json::object());
    return;
  }
#ifndef SWARMLITE_HAVE_NET
  throw CliError(1, "--peer: this swarmlite was built without the network layer (SWARMLITE_NET=OFF)");
#else
  auto url = must(net::parse_http_url(a.peer), "--peer");
  std::optional<PublicKey> pub;
  const auto max_age = max_age_of(a.max_age);
  if (max_age && !a.verify) throw CliError(1, "--max-age needs --verify (only a verified head has a trustworthy age)");
  if (a.verify) {
    if (a.pub.empty()) throw CliError(1, "--verify needs --pub KEY (the log's public key)");
    pub = must(load_public_key(a.pub), "--pub");
  }
  const bool want_proof = a.verify || !a.proof_out.empty();
  json stmt = json::array({a.sql});
  for (const auto& v : params) stmt.push_back(net::value_to_json(v));
  if (std::any_of(params.begin(), params.end(), [](const Value& v) { return std::holds_alternative<Bytes>(v.v); }))
    throw CliError(1, "blob params are not supported over HTTP by this command");
  net::HttpRequest req;
  req.method = "POST";
  req.target = "/db/query";
  std::string sep = "?";
  if (want_proof) { req.target += sep + "proof=1"; sep = "&"; }
  if (a.min_size) {
    req.target += sep + fmt::format("min_size={}&timeout={}ms", a.min_size, static_cast<int64_t>(a.timeout_s * 1000));
  }
  req.body = json::array({stmt}).dump();
  net::HttpClientOptions co;
  co.timeout = std::chrono::milliseconds(static_cast<int64_t>(a.timeout_s * 1000) + 1000);
  auto res = must(net::http_call(url, req, co), "query " + a.peer);
  json doc = json::parse(res.body, nullptr, false);
  if (res.status != 200) {
    std::string msg = doc.is_object() && doc.contains("error") ? doc["error"].dump() : res.body;
    throw CliError(1, fmt::format("{} answered HTTP {}: {}", a.peer, res.status, msg));
  }
  if (!doc.is_object() || !doc.contains("results") || !doc["results"].is_array() || doc["results"].size() != 1)
    throw CliError(1, fmt::format("{} sent a malformed response", a.peer));
  auto outcome = must(net::query_outcome_from_json(doc["results"][0]), "response");
  if (outcome.error) throw CliError(1, "query failed: " + *outcome.error);
  if (want_proof && outcome.proof.empty()) throw CliError(2, fmt::format("{} sent no proof", a.peer));
  if (!a.proof_out.empty()) write_file(a.proof_out, outcome.proof);
  if (a.verify) {
    VerifyOptions vo;
    vo.min_size = a.min_size;
    vo.max_age = max_age;
    verify_and_print(*pub, outcome.proof, vo, Expected{a.sql, params}, a.as_json);
    return;
  }
  // Unverified: the peer's rows as sent (blobs arrive as base64 text).
  print_table(Table{outcome.columns, outcome.types, outcome.rows}, a.as_json,
              outcome.size ? json{{"size", *outcome.size}} : json::object());
#endif
}

}  // namespace

void add_query_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("query", "Run a read-only SQL query on a peer (optionally verified) or a local replica");
  auto a = std::make_shared<QueryArgs>();
  auto* peer = cmd->add_option("--peer", a->peer, "A node's HTTP API, http://HOST:PORT");
  auto* db = cmd->add_option("--db", a->db, "A local replica database file (read-only, offline)");
  peer->excludes(db);
  cmd->add_option("--pub", a->pub, "The log's public key (64 hex digits or a .pub file), for --verify");
  cmd->add_flag("--verify", a->verify, "Ask for a proof and verify it; print the rows the verifier computed");
  cmd->add_option("--min-size", a->min_size, "Refuse state older than N log entries");
  cmd->add_option("--max-age", a->max_age, "With --verify: refuse a head signed longer ago (30s, 5m, or seconds)");
  cmd->add_option("--timeout", a->timeout_s, "Seconds to wait (for min-size and the answer)")->check(CLI::PositiveNumber);
  cmd->add_option("--param", a->params, "A positional param (JSON scalar, else text); repeatable");
  cmd->add_flag("--json", a->as_json, "Print JSON instead of a table");
  cmd->add_option("--proof-out", a->proof_out, "Save the binary proof to FILE (for swarmlite verify)");
  cmd->add_option("sql", a->sql, "The SQL (one read-only statement)")->required();
  cmd->callback([a] {
    if (a->peer.empty() && a->db.empty()) throw CliError(1, "query needs --peer URL or --db FILE");
    run_query(*a);
  });
}

void add_verify_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("verify", "Verify a saved query proof and print the rows it proves");
  struct Args {
    std::string pub, file, sql, max_age;
    std::vector<std::string> params;
    uint64_t min_size = 0;
    bool as_json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--pub", a->pub, "The log's public key (64 hex digits or a .pub file)")->required();
  auto* sql = cmd->add_option("--sql", a->sql, "Require the proof to be for this SQL (exactly)");
  cmd->add_option("--param", a->params, "Require these params (needs --sql; none given: no params); repeatable");
  cmd->add_option("--min-size", a->min_size, "Refuse a head older than N log entries");
  cmd->add_option("--max-age", a->max_age, "Refuse a head signed longer ago (30s, 5m, or seconds)");
  cmd->add_flag("--json", a->as_json, "Print JSON instead of a table");
  cmd->add_option("file", a->file, "The proof file (from query --proof-out)")->required();
  cmd->callback([a, sql] {
    if (!a->params.empty() && sql->count() == 0)
      throw CliError(1, "--param needs --sql: params are checked together with the SQL they bind to");
    auto pub = must(load_public_key(a->pub), "--pub");
    VerifyOptions vo;
    vo.min_size = a->min_size;
    vo.max_age = max_age_of(a->max_age);
    Expected expected;
    if (sql->count() > 0) {
      expected.sql = a->sql;
      std::vector<Value> params;
      for (const auto& p : a->params) params.push_back(param_value(p));
      expected.params = std::move(params);
    }
    Bytes bytes = read_file_capped(a->file, vo.limits.max_proof_bytes);
    verify_and_print(pub, bytes, vo, expected, a->as_json);
  });
}

}  // namespace swarmlite::cli
