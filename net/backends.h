// NodeBackend adapters for the two owners of a log (net/node.h):
//  - PrimaryBackend: the Primary writes and signs; the node serves and pushes.
//  - ReplicaBackend: the node stores verified batches in the Replica's Log and
//    the node's apply thread replays them with Replica::apply_available.
// Both use the owner's own mutex as log_mutex(), so the locking rule of
// node.h holds with the Primary's execute and the Replica's apply.
#pragma once

#include "net/node.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/replica.h"

namespace swarmlite::net {

class PrimaryBackend : public NodeBackend {
 public:
  explicit PrimaryBackend(Primary& primary) : primary_(primary) {}
  const PublicKey& log_id() const override { return primary_.log_id(); }
  const Log& log() const override { return primary_.log(); }
  std::mutex& log_mutex() const override { return primary_.log_mutex(); }
  bool is_primary() const override { return true; }
  Status store_entries(std::span<const Bytes>, const Head&, std::span<const Hash32>) override;
  Result<uint64_t> apply(uint64_t) override { return uint64_t{0}; }
  uint64_t applied_size() const override { return primary_.size(); }

 private:
  Primary& primary_;
};

class ReplicaBackend : public NodeBackend {
 public:
  explicit ReplicaBackend(Replica& replica) : replica_(replica) {}
  const PublicKey& log_id() const override { return replica_.log().log_id(); }
  const Log& log() const override { return replica_.log(); }
  std::mutex& log_mutex() const override { return replica_.log_mutex(); }
  bool is_primary() const override { return false; }
  Status store_entries(std::span<const Bytes> entries, const Head& head,
                       std::span<const Hash32> proof) override;
  Result<uint64_t> apply(uint64_t up_to) override { return replica_.apply_available(up_to); }
  uint64_t applied_size() const override { return replica_.size(); }
  // Stores the head, then checks it against the applied state (a head at the
  // applied size must carry its state root: Replica::apply_available).
  Status store_head(const Head& head) override;

 private:
  Replica& replica_;
};

}  // namespace swarmlite::net
