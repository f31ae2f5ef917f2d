// A PageSource over the peer protocol (page_source.h): GetPages / GetLeaves /
// GetChanges to one node (docs/protocol.md "Page service"), answered by Pages /
// Leaves / Changes (the encoded sets of docs/formats/pages.md) or HeadGone.
// GetChanges goes only to a node whose Hello announced it (kFeatureChanges);
// changes() of any other node is unavailable without a request. Answers are
// decoded, not verified: the caller checks them with verify_page_set /
// verify_leaf_set / verify_change_set.
// Built only with the network layer (client/CMakeLists.txt).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "client/page_source.h"
#include "core/keys.h"

namespace swarmlite::client {

// `address` "host:port" of a node following log `log_id`; each call waits at
// most `timeout`. Connections are kept open and reused, one request at a time
// each (calls from several threads open more). Errors: unavailable (cannot
// connect, times out, the node refuses or serves no pages, has no change
// history or did not announce GetChanges: the message has the node's words),
// invalid_argument (the node called the request bad, or a change request
// backwards), bad_value (an answer that does not decode, another message than
// due, or a set for other pages or heads than asked).
std::unique_ptr<PageSource> peer_page_source(const std::string& address, const PublicKey& log_id,
                                             std::chrono::milliseconds timeout);

}  // namespace swarmlite::client
