// One HTTP request from a process-level test to a node's API (net/http_client.h).
#pragma once

#include <chrono>
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

}  // namespace swarmlite::testing
