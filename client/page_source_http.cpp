// The HTTP PageSource (page_source_http.h; docs/http-api.md "Pages").
#include "client/page_source_http.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "net/http_client.h"
#include "net/http_json.h"

namespace swarmlite::client {
namespace {

class HttpPageSource : public PageSource {
 public:
  HttpPageSource(std::string url, std::chrono::milliseconds timeout)
      : url_(std::move(url)), timeout_(timeout) {}
  std::string name() const override { return url_; }

  Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) override {
    SWL_TRY(check_request(pgnos, kMaxPagesPerRequest, "pages"));
    SWL_ASSIGN(net::HttpResponse res, call("/db/pages", size, pgnos, kMaxPageSetBytes));
    if (res.status != 200) return answer_error<PageSet>(res);
    auto set = decode_page_set(as_bytes(res.body));
    if (!set.ok())
      return make_error(Errc::bad_value, "{}: /db/pages answer: {}", url_, set.error().to_string());
    SWL_TRY(check_answer(set->pgnos, pgnos, set->head.size, size, "pages"));
    return PageAnswer<PageSet>(std::move(set).value());
  }

  Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) override {
    SWL_TRY(check_request(pgnos, kMaxLeavesPerRequest, "leaves"));
    SWL_ASSIGN(net::HttpResponse res, call("/db/leaves", size, pgnos, kMaxLeafSetBytes));
    if (res.status != 200) return answer_error<LeafSet>(res);
    auto set = decode_leaf_set(as_bytes(res.body));
    if (!set.ok())
      return make_error(Errc::bad_value, "{}: /db/leaves answer: {}", url_, set.error().to_string());
    SWL_TRY(check_answer(set->pgnos, pgnos, set->head.size, size, "leaves"));
    return PageAnswer<LeafSet>(std::move(set).value());
  }

  Result<PageAnswer<ChangeSet>> changes(uint64_t from_size, uint64_t to_size) override {
    SWL_ASSIGN(net::HttpUrl url, net::parse_http_url(url_));
    net::HttpRequest req;
    req.method = "GET";
    req.target = fmt::format("/db/changes?since={}&size={}", from_size, to_size);
    req.accept = "application/octet-stream, application/json";
    net::HttpClientOptions co;
    co.timeout = timeout_;
    co.max_body_bytes = kMaxChangeSetBytes;
    auto res = net::http_call(url, req, co);
    if (!res.ok())
      return make_error(Errc::unavailable, "{}/db/changes: {}", url_, res.error().to_string());
    if (res->status != 200) return answer_error<ChangeSet>(*res);
    SWL_ASSIGN(ChangeSet set,
               decode_change_answer(as_bytes(res->body), from_size, to_size, url_, "/db/changes"));
    return PageAnswer<ChangeSet>(std::move(set));
  }

  // POST /db/query?proof=1 with Accept: application/octet-stream: the raw
  // proof bytes (docs/http-api.md "Binary proof"). The node waits for
  // min_size at most kProofSizeWait (a lagging node is skipped, not waited on).
  Result<QueryProof> query_proof(const std::string& sql, const std::vector<Value>& params,
                                 uint64_t min_size) override {
    nlohmann::json stmt = nlohmann::json::array({sql});
    for (const Value& v : params) {
      // The JSON API sends blobs as base64 text and non-finite reals as null:
      // the node would prove another statement than the one asked.
      if (std::holds_alternative<Bytes>(v.v))
        return make_error(Errc::invalid_argument, "query proof from {}: a blob param cannot be sent",
                          url_);
      if (const auto* d = std::get_if<double>(&v.v); d && !std::isfinite(*d))
        return make_error(Errc::invalid_argument,
                          "query proof from {}: a non-finite real param cannot be sent", url_);
      stmt.push_back(net::value_to_json(v));
    }
    SWL_ASSIGN(net::HttpUrl url, net::parse_http_url(url_));
    net::HttpRequest req;
    req.method = "POST";
    req.target = "/db/query?proof=1";
    const auto wait = std::min(timeout_, kProofSizeWait);
    if (min_size != 0)
      req.target += fmt::format("&min_size={}&timeout={}ms", min_size, wait.count());
    req.accept = "application/octet-stream";
    req.body = nlohmann::json::array({stmt}).dump();
    net::HttpClientOptions co;
    co.timeout = timeout_ + wait;
    co.max_body_bytes = QueryProofLimits{}.max_proof_bytes;
    auto res = net::http_call(url, req, co);
    if (!res.ok())
      return make_error(Errc::unavailable, "{}/db/query?proof=1: {}", url_, res.error().to_string());
    if (res->status != 200) {
      auto doc = nlohmann::json::parse(res->body, nullptr, false);
      const std::string msg = doc.is_object() && doc.contains("error") && doc["error"].is_string()
                                  ? doc["error"].get<std::string>()
                                  : res->body.substr(0, 200);
      return make_error(res->status == 400 ? Errc::invalid_argument : Errc::unavailable,
                        "{} answered HTTP {} to a proof=1 query: {}", url_, res->status, msg);
    }
    auto proof = decode_query_proof(as_bytes(res->body));
    if (!proof.ok())
      return make_error(Errc::bad_value, "{}: /db/query?proof=1 answer: {}", url_,
                        proof.error().to_string());
    return proof;
  }

 private:
  static constexpr std::chrono::milliseconds kProofSizeWait{2000};

  // The caller's own mistakes are refused before anything is sent.
  Status check_request(std::span<const uint32_t> pgnos, size_t max, std::string_view what) const {
    // UINT32_MAX: the head's page count is not known yet (the answer's is checked).
    if (auto s = check_pgnos(pgnos, UINT32_MAX, max); !s.ok())
      return make_error(Errc::invalid_argument, "{} from {}: {}", what, url_, s.error().message);
    return ok_status();
  }
  // An answer for other pages or another head than asked is a wrong answer
  // (verify_* would refuse it too, but say here what happened).
  Status check_answer(std::span<const uint32_t> got, std::span<const uint32_t> asked,
                      uint64_t got_size, uint64_t asked_size, std::string_view what) const {
    if (!std::equal(got.begin(), got.end(), asked.begin(), asked.end()))
      return make_error(Errc::bad_value, "{}: asked for the {} of {}, the answer has {}", url_, what,
                        pgnos_text(asked), pgnos_text(got));
    if (asked_size != 0 && got_size != asked_size)
      return make_error(Errc::bad_value, "{}: asked for the {} of head {}, the answer is for head {}",
                        url_, what, asked_size, got_size);
    return ok_status();
  }

  Result<net::HttpResponse> call(std::string_view path, uint64_t size,
                                 std::span<const uint32_t> pgnos, size_t max_body) const {
    SWL_ASSIGN(net::HttpUrl url, net::parse_http_url(url_));
    net::HttpRequest req;
    req.method = "GET";
    req.target = fmt::format("{}?size={}&pages={}", path, size, format_page_list(pgnos));
    req.accept = "application/octet-stream, application/json";
    net::HttpClientOptions co;
    co.timeout = timeout_;
    co.max_body_bytes = max_body;
    auto res = net::http_call(url, req, co);
    if (!res.ok())
      return make_error(Errc::unavailable, "{}{}: {}", url_, path, res.error().to_string());
    return res;
  }

  // 410 {"error", "newest": M} is HeadGone{M}; 400 invalid_argument; others unavailable.
  template <class T>
  Result<PageAnswer<T>> answer_error(const net::HttpResponse& res) const {
    auto doc = nlohmann::json::parse(res.body, nullptr, false);
    const std::string msg = doc.is_object() && doc.contains("error") && doc["error"].is_string()
                                ? doc["error"].get<std::string>()
                                : res.body.substr(0, 200);
    if (res.status == 410) {
      if (!doc.is_object() || !doc.contains("newest") || !doc["newest"].is_number_unsigned() ||
          doc["newest"].get<uint64_t>() == 0)
        return make_error(Errc::bad_value, "{} answered HTTP 410 without a newest head size: {}",
                          url_, res.body.substr(0, 200));
      return PageAnswer<T>(HeadGone{doc["newest"].get<uint64_t>()});
    }
    return make_error(res.status == 400 ? Errc::invalid_argument : Errc::unavailable,
                      "{} answered HTTP {}: {}", url_, res.status, msg);
  }

  std::string url_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<PageSource> http_page_source(const std::string& url,
                                             std::chrono::milliseconds timeout) {
  return std::make_unique<HttpPageSource>(url, timeout);
}

}  // namespace swarmlite::client
