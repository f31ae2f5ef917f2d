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
#include "client/proof_check.h"
#include "client/report_format.h"
#include "core/keys.h"
#ifdef SWARMLITE_HAVE_NET
#include "cli/light_common.h"
#include "client/verifying_client.h"
#include "net/http_client.h"
#endif
#include "net/http_json.h"
#include "sqlbridge/proof/read_guard.h"

namespace swarmlite::cli {

using nlohmann::json;

Value param_value(const std::string& text) {
  auto parsed = json::parse(text, nullptr, false);
  if (!parsed.is_discarded()) {
    auto st = net::parse_statements(json::array({json::array({"?", parsed})}).dump());
    if (st.ok() && st->size() == 1 && st->front().params.size() == 1) return st->front().params[0];
  }
  return Value{text};
}

std::optional<std::chrono::milliseconds> max_age_of(const std::string& text) {
  if (text.empty()) return std::nullopt;
  auto d = net::parse_duration(text);
  if (!d.ok()) throw CliError(1, "--max-age: " + d.error().message);
  return *d;
}

namespace {

void print_table(const std::vector<std::string>& columns, const std::vector<std::string>& types,
                 const std::vector<std::vector<Value>>& rows, bool as_json, const json& extra) {
  if (as_json) {
    json doc = client::table_json(columns, types, rows);
    for (auto it = extra.begin(); it != extra.end(); ++it) doc[it.key()] = it.value();
    std::fputs(net::dump_json(doc, true).c_str(), stdout);
    return;
  }
  std::fputs(client::format_table(columns, rows).c_str(), stdout);
}

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

// A client error as the CLI reports it: exit 2 when the answer is not to be
// believed (no proof, a proof that fails, a stale head, another query,
// equivocation), 1 when there was no usable answer (transport, peer status).
[[noreturn]] void fail(const client::ClientError& e) {
  throw CliError(e.is_verification_failure() ? 2 : 1, e.message);
}

// Prints the rows the verifier computed, with the SQL and params they answer
// (a proof of another query is still a valid proof, of other rows) and the
// head they were computed from.
void print_verified(const client::VerifiedAnswer& a, bool as_json) {
  if (!as_json) {
    fmt::print("sql:    {}\n", client::json_string(a.sql));
    fmt::print("params: {}\n", net::dump_json(client::params_json(a.params), false));
    print_table(a.columns, a.types, a.rows, false, json::object());
    fmt::print("verified at size {}, state root {} ({} pages proven), head signed at {} ms\n", a.head.size,
               to_hex(a.head.state_root), a.pages, a.head.time_ms);
    return;
  }
  std::fputs(net::dump_json(client::answer_json(a), true).c_str(), stdout);
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
  std::string peer, db, pub, proof_out, sql, max_age, cache;
  std::vector<std::string> params;
  bool verify = false, as_json = false, light = false, no_seed = false;
  uint64_t min_size = 0, cache_mib = 256;
  double timeout_s = 30;
};

#ifdef SWARMLITE_HAVE_NET
// --light: the light client (docs/light-client.md) runs the query itself over
// pages from --peer (comma-separated: several nodes), verified, cached.
void run_light_query(const QueryArgs& a, const std::vector<Value>& params) {
  if (!a.proof_out.empty()) throw CliError(1, "--proof-out does not go with --light (no proof is sent: the pages are)");
  LightFlags f;
  f.peers = {a.peer};
  f.pub = a.pub;
  f.cache = a.cache;
  f.cache_mib = a.cache_mib;
  f.min_size = a.min_size;
  f.max_age = a.max_age;
  f.timeout_s = a.timeout_s;
  f.no_seed = a.no_seed;
  auto c = open_light_client(f);
  auto answer = c->query(a.sql, params);
  if (!answer.ok()) fail(answer.error());
  const Head& h = answer->head;
  if (a.as_json) {
    json doc = client::table_json(answer->columns, answer->types, answer->rows);
    doc["sql"] = a.sql;
    doc["params"] = client::params_json(params);
    doc["verified"] = {{"size", h.size},
                       {"state_root", to_hex(h.state_root)},
                       {"log_root", to_hex(h.log_root)},
                       {"head_time_ms", h.time_ms},
                       {"light", {{"pages_fetched", answer->stats.pages_fetched},
                                  {"page_bytes", answer->stats.page_bytes},
                                  {"proof_bytes", answer->stats.proof_bytes},
                                  {"round_trips", answer->stats.round_trips},
                                  {"cache_hits", answer->stats.cache_hits},
                                  {"seeded", answer->stats.seeded > 0},
                                  {"reruns", answer->stats.reruns},
                                  {"pages_proven", c->proven_pages()}}}};
    std::fputs(net::dump_json(doc, true).c_str(), stdout);
    return;
  }
  print_table(answer->columns, answer->types, answer->rows, false, json::object());
  fmt::print("verified by the light client: {}\n", light_stats_line(*c, *answer));
}
#endif

void run_query(const QueryArgs& a) {
  std::vector<Value> params;
  for (const auto& p : a.params) params.push_back(param_value(p));
  if (a.light && (a.verify || !a.db.empty()))
    throw CliError(1, "--light needs --peer and goes without --verify/--db (every answer is verified by running it here)");
  if (!a.light && (!a.cache.empty() || a.no_seed))
    throw CliError(1, "--cache and --no-seed are for --light (the verified page cache)");
  if (!a.db.empty()) {
    if (a.verify || !a.proof_out.empty() || !a.max_age.empty())
      throw CliError(1, "--verify/--proof-out/--max-age need --peer (a local file is trusted as it is)");
    auto conn = must(GuardedConnection::open(file_uri(a.db)), "open " + a.db);
    auto result = must(conn->query(a.sql, params), "query");
    print_table(result.columns, result.decltypes, result.rows, a.as_json, json::object());
    return;
  }
#ifndef SWARMLITE_HAVE_NET
  throw CliError(1, "--peer: this swarmlite was built without the network layer (SWARMLITE_NET=OFF)");
#else
  if (a.light) return run_light_query(a, params);
  must(net::parse_http_url(a.peer), "--peer");
  const auto max_age = max_age_of(a.max_age);
  if (max_age && !a.verify) throw CliError(1, "--max-age needs --verify (only a verified head has a trustworthy age)");
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(a.timeout_s * 1000));
  if (a.verify) {
    if (a.pub.empty()) throw CliError(1, "--verify needs --pub KEY (the log's public key)");
    client::ClientOptions co;
    co.log_id = must(load_public_key(a.pub), "--pub");
    co.peers = {a.peer};
    co.check.min_size = a.min_size;
    co.check.max_age = max_age;
    co.timeout = timeout;
    client::VerifyingClient c(std::move(co));
    auto fetched = c.fetch(a.peer, a.sql, params);
    if (!fetched.ok()) fail(fetched.error());
    if (!a.proof_out.empty()) write_file(a.proof_out, fetched->outcome.proof);  // kept whatever the verdict
    auto verified = c.verify(*fetched, a.sql, params);
    if (!verified.ok()) fail(verified.error());
    print_verified(*verified, a.as_json);
    return;
  }
  // Unverified: the peer's rows as sent (blobs arrive as base64 text).
  client::FetchOptions fo;
  fo.proof = !a.proof_out.empty();
  fo.min_size = a.min_size;
  fo.timeout = timeout;
  auto fetched = client::fetch_query(a.peer, a.sql, params, fo);
  if (!fetched.ok()) fail(fetched.error());
  const net::QueryOutcome& outcome = fetched->outcome;
  if (!a.proof_out.empty()) write_file(a.proof_out, outcome.proof);
  print_table(outcome.columns, outcome.types, outcome.rows, a.as_json,
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
  cmd->add_flag("--light", a->light,
                "Run the query here over pages fetched from --peer (comma-separated: several nodes) and "
                "verified, kept in --cache (docs/light-client.md)");
  cmd->add_option("--cache", a->cache, "With --light: the verified page cache directory (default under ~/.cache/swarmlite)");
  cmd->add_option("--cache-mib", a->cache_mib, "With --light: cap on the page cache, MiB")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20));
  cmd->add_flag("--no-seed", a->no_seed,
                "With --light: fetch a cold query's pages one B-tree level at a time, not from one "
                "proof=1 answer");
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
    client::CheckOptions co;
    co.min_size = a->min_size;
    co.max_age = max_age_of(a->max_age);
    client::ProofChecker checker(must(load_public_key(a->pub), "--pub"), co);
    client::Expected expected;
    if (sql->count() > 0) {
      expected.sql = a->sql;
      std::vector<Value> params;
      for (const auto& p : a->params) params.push_back(param_value(p));
      expected.params = std::move(params);
    }
    Bytes bytes = read_file_capped(a->file, co.limits.max_proof_bytes);
    auto verified = checker.check(bytes, expected);
    if (!verified.ok()) fail(verified.error());
    print_verified(*verified, a->as_json);
  });
}

}  // namespace swarmlite::cli
