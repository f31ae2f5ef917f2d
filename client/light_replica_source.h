// A PageSource (client/page_source.h) over a Replica in the same process: what
// the light client's tests and benchmark fetch pages from before (and besides)
// the network sources. pages() is Replica::pinned_pages, leaves()
// Replica::pinned_leaves (the pinned head's state tree). An older or not yet
// pinned size is HeadGone{the newest pinned size}, as a node answers.
#pragma once

#include <string>

#include "client/page_source.h"
#include "sqlbridge/engine/replica.h"

namespace swarmlite::client {

class ReplicaPageSource final : public PageSource {
 public:
  // `replica` must outlive the source.
  explicit ReplicaPageSource(const Replica& replica, std::string name = "replica")
      : replica_(replica), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  Result<PageAnswer<PageSet>> pages(uint64_t size, std::span<const uint32_t> pgnos) override;
  Result<PageAnswer<LeafSet>> leaves(uint64_t size, std::span<const uint32_t> pgnos) override;
  Result<PageAnswer<ChangeSet>> changes(uint64_t from_size, uint64_t to_size) override;

 private:
  const Replica& replica_;
  std::string name_;
};

}  // namespace swarmlite::client
