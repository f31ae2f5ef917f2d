// Fuzz target for the HTTP API's decoders (net/http_json.h, net/http_request.h;
// docs/http-api.md): every one of them reads bytes a client, a peer or a
// database row controls. The first input byte picks the decoder, the rest is
// its input. Never crash; and where a decoder has an encoder, what it accepts
// survives the round trip:
//   - a request body's statements re-encoded as a peer forwards them to the
//     primary (statements_to_json) parse back to the same statements, so a
//     forwarded write is the write the client sent;
//   - url_decode ∘ url_encode and base64_decode ∘ base64_encode are identities
//     on what the decoders accepted;
//   - SQL parameters are numbered from 1 up to at most the limit.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string_view>

#include "net/http_json.h"
#include "net/http_request.h"

namespace {

using namespace swarmlite;
using namespace swarmlite::net;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "http_json_fuzz: %s\n", what);
  std::abort();
}

// Statement == compares params by kind and value (an integer 1 is not a real
// 1.0): the primary must bind exactly what the client sent.
void check_statements_round_trip(const std::vector<Statement>& statements) {
  std::string again;
  try {
    again = statements_to_json(statements);
  } catch (const std::exception&) {
    fail("statements_to_json threw on statements parse_statements accepted");
  }
  auto back = parse_statements(again);
  if (!back.ok()) fail("a forwarded body does not parse back");
  if (*back != statements) fail("a forwarded body parses back to other statements");
}

void fuzz_sql(std::string_view in) {
  (void)invalid_utf8_offset(in);
  const auto max = static_cast<int>(HttpJsonLimits{}.max_params);
  auto params = sql_parameters(in, static_cast<size_t>(max));
  if (!params.ok()) return;
  for (const auto& p : *params) {
    if (p.index < 1 || p.index > max) fail("a parameter number out of 1..max_params");
  }
}

void fuzz_body(std::string_view in) {
  auto statements = parse_statements(in);
  if (!statements.ok()) return;
  for (const auto& st : *statements) fuzz_sql(st.sql);
  check_statements_round_trip(*statements);
}

void fuzz_url(std::string_view in) {
  auto decoded = url_decode(in);
  if (!decoded.ok()) return;
  auto again = url_decode(url_encode(*decoded));
  if (!again.ok() || *again != *decoded) fail("url_decode(url_encode(x)) != x");
}

void fuzz_base64(std::string_view in) {
  auto decoded = base64_decode(in);
  if (!decoded.ok()) return;
  auto again = base64_decode(base64_encode(*decoded));
  if (!again.ok() || *again != *decoded) fail("base64_decode(base64_encode(x)) != x");
}

void fuzz_options(std::string_view in) {
  auto o = parse_request_options(in);
  if (!o.ok()) return;
  if (o->timeout.count() < 0 || o->timeout > kMaxRequestTimeout) fail("a timeout out of range");
  if (o->freshness && o->freshness->count() < 0) fail("a negative freshness");
  (void)level_is_strong(o->level);
}

void fuzz_duration(std::string_view in) {
  auto d = parse_duration(in);
  if (d.ok() && d->count() < 0) fail("a negative duration");
}

// A peer reads the primary's /db/execute answer; the CLI reads query results.
void fuzz_answers(std::string_view in) {
  auto results = results_from_execute_body(in);
  if (results.ok()) {
    for (const auto& r : *results) (void)query_outcome_from_json(r);
  }
  nlohmann::json doc = nlohmann::json::parse(in.begin(), in.end(), nullptr, false);
  if (!doc.is_discarded()) (void)query_outcome_from_json(doc);
}

// Cells of DATE/DATETIME/TIMESTAMP columns are parsed as dates: text from any
// row, and integers of any size.
void fuzz_dates(std::string_view in) {
  for (std::string_view decl : {"date", "datetime", "timestamp"}) {
    (void)dump_json(result_value_to_json(Value{std::string(in)}, decl), false);
    if (in.size() >= 8) {
      int64_t n = 0;
      std::memcpy(&n, in.data(), sizeof n);
      (void)dump_json(result_value_to_json(Value{n}, decl), false);
      double d = 0;
      std::memcpy(&d, in.data(), sizeof d);
      (void)dump_json(result_value_to_json(Value{d}, decl), false);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0:
      fuzz_body(in);
      break;
    case 1:
      fuzz_url(in);
      break;
    case 2:
      fuzz_base64(in);
      break;
    case 3:
      fuzz_options(in);
      break;
    case 4:
      fuzz_duration(in);
      break;
    case 5:
      fuzz_answers(in);
      break;
    case 6:
      fuzz_dates(in);
      break;
    case 7:
      fuzz_sql(in);
      break;
  }
  return 0;
}
