#include "client/light_replica_source.h"

#include "sqlbridge/engine/state_tree.h"

namespace swarmlite::client {
namespace {

// Replica::pinned_pages says "head N gone, newest is M" (or "not pinned yet")
// as not_found: the answer a node gives as HeadGone.
bool is_head_gone(const Error& e) { return e.code == Errc::not_found; }

}  // namespace

Result<PageAnswer<PageSet>> ReplicaPageSource::pages(uint64_t size,
                                                     std::span<const uint32_t> pgnos) {
  auto reply = replica_.pinned_pages(size, pgnos);
  if (!reply.ok()) {
    if (is_head_gone(reply.error())) return PageAnswer<PageSet>(HeadGone{replica_.pinned_size()});
    return reply.error();
  }
  PageSet set;
  set.head = reply->head;
  set.page_size = reply->page_size;
  set.pgnos.assign(pgnos.begin(), pgnos.end());
  set.pages = std::move(reply->pages);
  set.proof = std::move(reply->proof);
  return PageAnswer<PageSet>(std::move(set));
}

Result<PageAnswer<LeafSet>> ReplicaPageSource::leaves(uint64_t size,
                                                      std::span<const uint32_t> pgnos) {
  // The head (and a pin, if the replica had none): page 1 of the pinned head.
  // The pin may move between the two calls; the tree is taken after the head
  // and must be that head's, else the request is asked again.
  for (int attempt = 0; attempt < 8; ++attempt) {
    const uint32_t one = 1;
    auto probe = replica_.pinned_pages(size, std::span<const uint32_t>(&one, 1));
    if (!probe.ok()) {
      if (is_head_gone(probe.error())) return PageAnswer<LeafSet>(HeadGone{replica_.pinned_size()});
      return probe.error();
    }
    auto pin = replica_.pinned_page_source();
    if (!pin || pin->tree().root() != probe->head.state_root ||
        pin->page_count() != probe->head.page_count)
      continue;
    SWL_TRY(check_pgnos(pgnos, probe->head.page_count, kMaxLeavesPerRequest));
    LeafSet set;
    set.head = probe->head;
    set.pgnos.assign(pgnos.begin(), pgnos.end());
    for (uint32_t p : pgnos) set.leaves.push_back(pin->tree().tree().leaf(p - 1));
    set.proof.size = probe->head.page_count;
    set.proof.indices = pgno_indices(pgnos);
    SWL_ASSIGN(set.proof.hashes, pin->tree().tree().multiproof(set.proof.indices));
    return PageAnswer<LeafSet>(std::move(set));
  }
  return make_error(Errc::unavailable, "{}: the replica's pin kept moving while reading leaves",
                    name_);
}

}  // namespace swarmlite::client
