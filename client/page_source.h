// Where a light client's pages come from (docs/light-client.md "Page service"):
// one node's page service, over HTTP or the peer protocol, or a test's liar.
// Answers are the source's, unverified: the caller checks them with
// verify_page_set / verify_leaf_set (sqlbridge/engine/page_set.h) against a head
// whose signature and freshness it checked, and bans the source for its run
// when they fail.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/entry.h"
#include "core/result.h"
#include "sqlbridge/engine/page_set.h"
#include "sqlbridge/proof/query_proof.h"

namespace swarmlite::client {

// The source no longer holds the head asked for (or does not hold it yet):
// `newest` is the newest head size it serves, to ask again at (after the
// client checked that head's freshness). Not an error: a normal answer of a
// node whose pin moved on.
struct HeadGone {
  uint64_t newest = 0;
  friend bool operator==(const HeadGone&, const HeadGone&) = default;
};

template <class T>
using PageAnswer = std::variant<T, HeadGone>;

// A source's answer to "the changes from head `from_size` to `to_size`" (0:
// its newest), decoded and checked to be of the range asked (whether its
// leaves and siblings prove anything is the client's check,
// verify_change_set). `who` names the source, `what` the answer, in errors
// (bad_value).
inline Result<ChangeSet> decode_change_answer(ByteView body, uint64_t from_size, uint64_t to_size,
                                              std::string_view who, std::string_view what) {
  auto set = decode_change_set(body);
  if (!set.ok())
    return make_error(Errc::bad_value, "{}: {} answer: {}", who, what, set.error().to_string());
  if (set->from_size != from_size || (to_size != 0 && set->to.size != to_size))
    return make_error(Errc::bad_value,
                      "{}: asked for the changes from head {} to {}, the answer is from {} to {}",
                      who, from_size, to_size, set->from_size, set->to.size);
  return set;
}

// One request per call; a client may call one source from several threads.
class PageSource {
 public:
  virtual ~PageSource() = default;
  // The source's name in messages and ban lists ("http://127.0.0.1:8080").
  virtual std::string name() const = 0;
  // Pages `pgnos` (strictly increasing, at most kMaxPagesPerRequest) of the
  // head of log size `size`; size 0: the source's newest pinned head.
  virtual Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) = 0;
  // Leaf hashes of `pgnos` (at most kMaxLeavesPerRequest) at `size` (0: newest):
  // how a client moves its cached pages to a newer head.
  virtual Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) = 0;
  // The pages changed from the head of log size `from_size` to the head of
  // `to_size` (0: newest), as a ChangeSet (docs/formats/pages.md "Change
  // set"): how a client moves to a newer head paying only for what changed.
  // Errors (the source keeps no history, from_size too old, too many changes)
  // tell the caller to ask leaves() instead.
  virtual Result<PageAnswer<ChangeSet>> changes(uint64_t from_size, uint64_t to_size) = 0;
  // The node's proof=1 answer to one read-only statement (docs/http-api.md
  // "/db/query", docs/formats/query-proof.md): every page the statement reads
  // at a head of log size >= `min_size` (0: any), with their multiproof, in one
  // round trip; decoded, never verified. A light client seeds a cold query's
  // pages with it (docs/light-client.md "Seeding a cold query from proof=1").
  // Errors: refused when the source has no such request at all, answered
  // without sending anything (the caller counts no round trip and stops
  // asking it); invalid_argument when the node calls the statement bad;
  // unavailable / bad_value as for pages(). This default is the refusal.
  virtual Result<QueryProof> query_proof(const std::string& sql, const std::vector<Value>& params,
                                         uint64_t min_size) {
    (void)sql;
    (void)params;
    (void)min_size;
    return make_error(Errc::refused, "{}: serves no query proofs", name());
  }
};

}  // namespace swarmlite::client
