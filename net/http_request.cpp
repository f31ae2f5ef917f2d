#include "net/http_request.h"

#include <variant>

namespace swarmlite::net {

using nlohmann::json;

bool level_is_strong(const std::string& level) { return level == "strong" || level == "linearizable"; }

std::string statements_to_json(const std::vector<Statement>& statements) {
  json body = json::array();
  for (const auto& st : statements) {
    json one = json::array();
    one.push_back(st.sql);
    for (const auto& v : st.params) {
      std::visit(
          [&one](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
              one.push_back(nullptr);
            } else if constexpr (std::is_same_v<T, Bytes>) {
              json bytes = json::array();
              for (auto b : x) bytes.push_back(static_cast<unsigned>(b));
              one.push_back(std::move(bytes));
            } else {
              one.push_back(x);
            }
          },
          v.v);
    }
    body.push_back(std::move(one));
  }
  return body.dump();
}

namespace {
json first_result(const std::string& rendered) {
  json doc = json::parse(rendered);
  return doc.at("results").at(0);
}
}  // namespace

json exec_result_json(const ExecOutcome& outcome, const RequestOptions& opts) {
  RequestOptions plain = opts;
  plain.pretty = false;
  return first_result(render_exec_results({outcome}, plain, 0));
}

json query_result_json(const QueryOutcome& outcome, const RequestOptions& opts) {
  RequestOptions plain = opts;
  plain.pretty = false;
  return first_result(render_query_results({outcome}, plain, 0));
}

std::string render_request_results(const std::vector<json>& slots, const RequestOptions& opts,
                                   double total_seconds) {
  json doc;
  doc["results"] = json::array();
  for (const auto& s : slots) doc["results"].push_back(s);
  if (opts.timings) doc["time"] = total_seconds;
  return dump_json(doc, opts.pretty);
}

Result<std::vector<json>> results_from_execute_body(std::string_view body) {
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return make_error(Errc::bad_value, "the primary's answer is not a JSON object");
  auto it = doc.find("results");
  if (it == doc.end() || !it->is_array())
    return make_error(Errc::bad_value, "the primary's answer has no \"results\" array");
  std::vector<json> out;
  for (auto& r : *it) {
    if (!r.is_object()) return make_error(Errc::bad_value, "the primary's answer holds a result that is not an object");
    out.push_back(std::move(r));
  }
  return out;
}

void FreshnessTracker::sample(uint64_t applied, uint64_t known, Clock::time_point now) {
  if (applied < known) return;
  std::lock_guard lock(mu_);
  if (!last_current_ || *last_current_ < now) last_current_ = now;
}

Status FreshnessTracker::check(uint64_t applied, uint64_t known, std::chrono::milliseconds freshness,
                               Clock::time_point now) {
  sample(applied, known, now);
  std::optional<Clock::time_point> last;
  {
    std::lock_guard lock(mu_);
    last = last_current_;
  }
  if (last && now - *last <= freshness) return ok_status();
  if (!last)
    return make_error(Errc::unavailable,
                      "stale: this node has applied {} entries but knows of a head of size {}, and has not been "
                      "seen current since it started serving; freshness={} ms",
                      applied, known, freshness.count());
  auto ago = std::chrono::duration_cast<std::chrono::milliseconds>(now - *last).count();
  return make_error(Errc::unavailable,
                    "stale: this node has applied {} entries but knows of a head of size {}; it was last seen "
                    "current {} ms ago, over freshness={} ms",
                    applied, known, ago, freshness.count());
}

}  // namespace swarmlite::net
