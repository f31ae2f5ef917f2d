// The PrimaryAndReplica doctest fixture (not part of the library). Kept out of
// engine_test_util.h, which non-doctest programs (tests/sqlfuzz) include too.
#pragma once
#include <doctest/doctest.h>

#include <memory>

#include "sqlbridge/engine/engine_test_util.h"

namespace swarmlite::testing {

// A primary at dir/p.db and a replica at dir/r.db (log dir/r.log) of its log,
// both with the fast test options; sync_replica() moves entries across.
struct PrimaryAndReplica {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;
  std::unique_ptr<Replica> replica;

  PrimaryAndReplica() {
    auto p = Primary::open(dir / "p.db", keys.secret, fast_primary());
    REQUIRE_MESSAGE(p.ok(), p.error_text());
    primary = std::move(p).value();
    open_replica();
  }
  // (Re)opens the replica, as a restart does.
  void open_replica() {
    replica.reset();
    auto r = Replica::open(dir / "r.db", dir / "r.log", keys.pub, fast_replica());
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    replica = std::move(r).value();
  }
};

}  // namespace swarmlite::testing
