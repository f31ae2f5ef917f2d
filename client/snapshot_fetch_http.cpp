// The HTTP ChunkSource of `swarmlite fetch` (snapshot_fetch.h): GET
// /db/snapshot and /db/snapshot/pages (docs/http-api.md "Snapshots").
// Everything the node sends is untrusted: the manifest's head is checked by
// the fetcher, each chunk by verify_snapshot_chunk.
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "client/snapshot_fetch.h"
#include "net/http_client.h"

namespace swarmlite::client {
namespace {

class HttpChunkSource : public ChunkSource {
 public:
  HttpChunkSource(std::string url, std::chrono::milliseconds timeout)
      : url_(std::move(url)), timeout_(timeout) {}
  std::string name() const override { return url_; }

  Result<SourceManifest> manifest() override {
    SWL_ASSIGN(net::HttpResponse res, call("/db/snapshot", 1u << 16));
    auto doc = nlohmann::json::parse(res.body, nullptr, false);
    if (res.status != 200) return answer_error(res, doc);
    if (!doc.is_object() || !doc.contains("head") || !doc["head"].is_string() ||
        !doc.contains("page_size") || !doc["page_size"].is_number_unsigned() ||
        !doc.contains("chunk_pages") || !doc["chunk_pages"].is_number_unsigned())
      return make_error(Errc::bad_value, "{}: the /db/snapshot answer is not a manifest", url_);
    auto bytes = from_hex(doc["head"].get<std::string>());
    if (!bytes.ok())
      return make_error(Errc::bad_value, "{}: manifest head: {}", url_, bytes.error().to_string());
    auto head = decode_head(*bytes);
    if (!head.ok())
      return make_error(Errc::bad_value, "{}: manifest head: {}", url_, head.error().to_string());
    SourceManifest m;
    m.head = *head;
    m.page_size =
        static_cast<uint32_t>(std::min<uint64_t>(doc["page_size"].get<uint64_t>(), 1u << 17));
    m.chunk_pages =
        static_cast<uint32_t>(std::min<uint64_t>(doc["chunk_pages"].get<uint64_t>(), 1u << 20));
    return m;
  }

  Result<Bytes> chunk(const SnapshotRequest& r) override {
    SWL_ASSIGN(net::HttpResponse res,
               call(fmt::format("/db/snapshot/pages?size={}&from={}&count={}", r.size, r.first_page,
                                r.count),
                    kMaxChunkPageBytes + (1u << 16)));
    if (res.status != 200)
      return answer_error(res, nlohmann::json::parse(res.body, nullptr, false));
    return Bytes(res.body.begin(), res.body.end());
  }

 private:
  Result<net::HttpResponse> call(const std::string& target, size_t max_body) {
    SWL_ASSIGN(net::HttpUrl url, net::parse_http_url(url_));
    net::HttpRequest req;
    req.method = "GET";
    req.target = target;
    req.accept = "application/octet-stream, application/json";
    net::HttpClientOptions co;
    co.timeout = timeout_;
    co.max_body_bytes = max_body;
    return net::http_call(url, req, co);
  }
  // 410 (the head is gone) is not_found; anything else unavailable.
  Error answer_error(const net::HttpResponse& res, const nlohmann::json& doc) const {
    std::string msg = doc.is_object() && doc.contains("error") && doc["error"].is_string()
                          ? doc["error"].get<std::string>()
                          : res.body.substr(0, 200);
    return make_error(res.status == 410 ? Errc::not_found : Errc::unavailable,
                      "{} answered HTTP {}: {}", url_, res.status, msg);
  }

  std::string url_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<ChunkSource> http_chunk_source(const std::string& url,
                                               std::chrono::milliseconds timeout) {
  return std::make_unique<HttpChunkSource>(url, timeout);
}

}  // namespace swarmlite::client
