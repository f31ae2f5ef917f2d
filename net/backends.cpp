// NodeBackend adapters: see backends.h.
#include "net/backends.h"

namespace swarmlite::net {

Status PrimaryBackend::store_entries(std::span<const Bytes>, const Head&, std::span<const Hash32>) {
  return make_error(Errc::refused, "the primary writes its own log; it stores nothing from peers");
}

Status ReplicaBackend::store_entries(std::span<const Bytes> entries, const Head& head,
                                     std::span<const Hash32> proof) {
  std::lock_guard lock(replica_.log_mutex());
  return replica_.log().append_proven(entries, head, proof);
}

Status ReplicaBackend::store_head(const Head& head) {
  {
    std::lock_guard lock(replica_.log_mutex());
    SWL_TRY(replica_.log().set_head(head));
  }
  SWL_TRY(replica_.apply_available(0));  // applies nothing; checks the head against the state
  return ok_status();
}

}  // namespace swarmlite::net
