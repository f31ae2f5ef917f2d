// One HTTP request from a process-level test to a node's API (net/http_client.h),
// and the write helpers the process-level tests share.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "net/http_client.h"

namespace swarmlite::testing {

// `method` `target` on the node at `base` ("http://host:port"), with `body`.
// Errors: a bad base URL, or the transport's (the response's status is the caller's).
inline Result<net::HttpResponse> http_to(const std::string& base, const std::string& method,
                                         const std::string& target, const std::string& body = {},
                                         std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  auto url = net::parse_http_url(base);
  if (!url.ok()) return url.take_error();
  net::HttpRequest rq;
  rq.method = method;
  rq.target = target;
  rq.body = body;
  net::HttpClientOptions o;
  o.timeout = timeout;
  return net::http_call(*url, rq, o);
}

// A number field of the node's /status ("size", "applied_size", "log_size",
// ...) at `base`; 0 while the node does not answer 200 or has no such field.
inline uint64_t status_u64(const std::string& base, const std::string& field,
                           std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  auto r = http_to(base, "GET", "/status", {}, timeout);
  if (!r.ok() || r->status != 200) return 0;
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains(field) || !j[field].is_number_unsigned()) return 0;
  return j[field].get<uint64_t>();
}

// POST /db/execute?transaction with `statements` (a JSON array) on the node at
// `base`: the request and every statement in it must succeed.
inline void execute_ok(const std::string& base, const std::string& statements) {
  auto r = http_to(base, "POST", "/db/execute?transaction", statements, std::chrono::seconds(30));
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  REQUIRE_MESSAGE(r->body.find("\"error\"") == std::string::npos, r->body);
}

// Rows from..from+n-1 into t(id, pad), one write transaction (one log entry)
// each, the 8,000-byte pad a parameter: it is in the entry, so the log grows by
// ~8 KB per row (several 64 KiB segments in a few dozen rows).
inline void write_pad_rows(const std::string& base, int from, int n) {
  const std::string pad(8000, 'x');
  for (int i = from; i < from + n; ++i) {
    execute_ok(base, R"J([["INSERT INTO t(id, pad) VALUES(?, ?)", )J" + std::to_string(i) + ", \"" +
                         pad + "\"]]");
  }
}

}  // namespace swarmlite::testing
