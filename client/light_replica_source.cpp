#include "client/light_replica_source.h"

namespace swarmlite::client {

// Replica::pinned_pages / pinned_leaves say "head N gone" (or "not pinned
// yet") as not_found with the newest pinned size: the answer a node gives as
// HeadGone (docs/light-client.md "Page service").
Result<PageAnswer<PageSet>> ReplicaPageSource::pages(uint64_t size,
                                                     std::span<const uint32_t> pgnos) {
  uint64_t newest = 0;
  auto reply = replica_.pinned_pages(size, pgnos, &newest);
  if (!reply.ok()) {
    if (reply.error().code == Errc::not_found) return PageAnswer<PageSet>(HeadGone{newest});
    return reply.error();
  }
  return PageAnswer<PageSet>(std::move(reply).value());
}

Result<PageAnswer<LeafSet>> ReplicaPageSource::leaves(uint64_t size,
                                                      std::span<const uint32_t> pgnos) {
  uint64_t newest = 0;
  auto reply = replica_.pinned_leaves(size, pgnos, &newest);
  if (!reply.ok()) {
    if (reply.error().code == Errc::not_found) return PageAnswer<LeafSet>(HeadGone{newest});
    return reply.error();
  }
  return PageAnswer<LeafSet>(std::move(reply).value());
}

Result<PageAnswer<ChangeSet>> ReplicaPageSource::changes(uint64_t from_size, uint64_t to_size) {
  uint64_t newest = 0;
  auto reply = replica_.pinned_changes(from_size, to_size, &newest);
  if (!reply.ok()) {
    if (reply.error().code == Errc::not_found && newest != 0)
      return PageAnswer<ChangeSet>(HeadGone{newest});
    return reply.error();
  }
  return PageAnswer<ChangeSet>(std::move(reply).value());
}

}  // namespace swarmlite::client
