// A PageSource over HTTP (page_source.h): GET /db/pages, /db/leaves and
// /db/changes of one node (docs/http-api.md "Pages", docs/formats/pages.md), and
// POST /db/query?proof=1 for query_proof (docs/formats/query-proof.md). Answers are decoded
// (lengths, caps, page numbers, a proof for exactly those leaves), not
// verified: the caller checks them with verify_page_set / verify_leaf_set.
// Built only with the network layer (client/CMakeLists.txt).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "client/page_source.h"

namespace swarmlite::client {

// `url` is the node's base URL ("http://127.0.0.1:8080"); each call waits at
// most `timeout` for the whole answer. Errors: unavailable (the node cannot be
// reached, times out, or answers an HTTP error other than 410: the message
// has its status and the node's words), invalid_argument (the node called the
// request bad: HTTP 400), bad_value (an answer that does not decode, or one
// for other pages than asked). HTTP 410 {"newest": M} is HeadGone{M}.
std::unique_ptr<PageSource> http_page_source(const std::string& url,
                                             std::chrono::milliseconds timeout);

}  // namespace swarmlite::client
