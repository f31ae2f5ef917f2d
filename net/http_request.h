// Pure helpers of the unified endpoint and the read consistency levels
// (docs/http-api.md "The unified endpoint", "Read consistency"): rendering a
// mixed result array, re-encoding statements for a forward to the primary, and
// the freshness tracker. No sockets; used by net/http_api.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/entry.h"
#include "core/result.h"
#include "net/http_json.h"

namespace swarmlite::net {

// level=strong|linearizable: wait until this node applied the primary's current
// size before answering. none, weak, auto and "" answer from the applied state.
bool level_is_strong(const std::string& level);

// A JSON array body in rqlite's form ([["sql", p1, p2…], …]) that
// parse_statements() reads back into the same statements (blobs as byte arrays).
std::string statements_to_json(const std::vector<Statement>& statements);

// One result object, exactly as render_exec_results / render_query_results
// render it inside "results".
nlohmann::json exec_result_json(const ExecOutcome& outcome, const RequestOptions& opts);
nlohmann::json query_result_json(const QueryOutcome& outcome, const RequestOptions& opts);

// {"results":[slots…]} (+ "time" with ?timings), pretty with ?pretty.
std::string render_request_results(const std::vector<nlohmann::json>& slots, const RequestOptions& opts,
                                   double total_seconds);

// The primary's /db/execute answer: its "results" array (one object per
// statement sent; fewer when a transaction stopped at a failing statement).
Result<std::vector<nlohmann::json>> results_from_execute_body(std::string_view body);

// Tracks when this node last knew its state to be current: applied size ≥ the
// newest head size it knew of. Sampled by check(), on each read that asks
// for freshness; between samples it is not watched, so the "last current" time can
// only be older than the truth, never newer: freshness errs on refusing.
// Thread-safe.
class FreshnessTracker {
 public:
  using Clock = std::chrono::steady_clock;
  void sample(uint64_t applied, uint64_t known, Clock::time_point now);
  // Samples, then: ok when the state is current now or was known current at
  // most `freshness` ago; else unavailable "stale: …" naming both sizes and
  // how long ago the state was last known current (or that it never was).
  Status check(uint64_t applied, uint64_t known, std::chrono::milliseconds freshness, Clock::time_point now);

 private:
  std::mutex mu_;
  std::optional<Clock::time_point> last_current_;
};

}  // namespace swarmlite::net
