// A small synchronous HTTP/1.1 client for the CLI and tests (plain http only).
// Each call opens one connection, sends one request and reads one response,
// all under one deadline; the response body is capped. Thread-safe (no shared state).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace swarmlite::net {

struct HttpUrl {
  std::string host;       // name or IP (IPv6 without brackets)
  uint16_t port = 80;
  std::string base_path;  // "" or "/prefix" (no trailing slash)
  std::string user, password;  // from "http://user:pass@host"; sent as basic auth
};

// "http://host[:port][/base]" or "host:port". https is refused (not built in).
Result<HttpUrl> parse_http_url(std::string_view url);

struct HttpRequest {
  std::string method = "GET";
  std::string target;          // path + query, appended to the URL's base path
  std::string body;
  std::string content_type = "application/json";
  std::string accept;          // "" = not sent
  std::string authorization;   // "" = basic auth from the URL, if any
  std::vector<std::pair<std::string, std::string>> headers;  // sent as given
};

struct HttpResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;
  std::string swarmlite_size;  // the X-Swarmlite-Size header, "" when absent (docs/http-api.md)
};

struct HttpClientOptions {
  std::chrono::milliseconds timeout{30000};  // connect + send + receive
  size_t max_body_bytes = 64u << 20;
  bool tcp_no_delay = true;  // TCP_NODELAY on the connection (net/tcp_socket.h)
};

// Errors: unavailable (connect/resolve failure, timeout), too_large (body over
// the cap), bad_value (malformed response). Any HTTP status is a success here.
Result<HttpResponse> http_call(const HttpUrl& url, const HttpRequest& request,
                               const HttpClientOptions& options = {});

}  // namespace swarmlite::net
