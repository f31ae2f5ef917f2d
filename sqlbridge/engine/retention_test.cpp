// Log retention of a running node (retention.h): the keep_from policy and its
// bounds (a primary never past its stored head, a peer never past what it
// applied), reopening after a round, and a round racing live writes.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "sqlbridge/engine/engine_test_util.h"
#include "sqlbridge/engine/retention.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

// Small segments so that a few dozen entries span many of them.
LogStoreOptions small_segments() {
  LogStoreOptions o = fast_log();
  o.segment_bytes = 1024;
  return o;
}

PrimaryOptions retained_primary(uint64_t sign_every = 1) {
  PrimaryOptions o = fast_primary(sign_every);
  o.log_options = small_segments();
  return o;
}

void insert_rows(Primary& p, int from, int n) {
  for (int i = from; i < from + n; ++i) {
    auto r = p.execute({sql("INSERT INTO t(id, pad) VALUES (?1, ?2)",
                            {Value{int64_t{i}}, Value{std::string(300, 'x')}})});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
  }
}

std::unique_ptr<Primary> open_primary(const TempDir& dir, const KeyPair& keys,
                                      uint64_t sign_every = 1) {
  auto p = Primary::open(dir / "p.db", keys.secret, retained_primary(sign_every));
  REQUIRE_MESSAGE(p.ok(), p.error_text());
  return std::move(p).value();
}

// The replica at dir/r.db with its log in small segments (as a restart opens it).
std::unique_ptr<Replica> open_small_replica(const TempDir& dir, const KeyPair& keys) {
  ReplicaOptions ro = fast_replica();
  ro.log_options = small_segments();
  auto r = Replica::open(dir / "r.db", dir / "r.log", keys.pub, ro);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  return std::move(r).value();
}

}  // namespace

TEST_CASE("retention_keep_from: size - retain, never past the bound, 0 keeps everything") {
  CHECK(retention_keep_from(100, 0, 100) == 0);   // retain 0: keep everything
  CHECK(retention_keep_from(100, 100, 100) == 0);  // the log holds no more than retain
  CHECK(retention_keep_from(100, 150, 100) == 0);
  CHECK(retention_keep_from(100, 10, 100) == 90);
  CHECK(retention_keep_from(100, 10, 95) == 90);
  CHECK(retention_keep_from(100, 10, 42) == 42);  // the bound wins
  CHECK(retention_keep_from(100, 1, 0) == 0);
  CHECK(retention_keep_from(UINT64_MAX, 1, UINT64_MAX) == UINT64_MAX - 1);
}

TEST_CASE("a primary compacts up to its stored head, never past it, and reopens") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  // One head per 1000 entries: the head stays where sign_head() put it.
  auto p = open_primary(dir, keys, 1000);
  REQUIRE(p->execute({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")}).ok());
  insert_rows(*p, 0, 30);
  auto signed_head = p->sign_head();
  REQUIRE(signed_head.ok());
  const uint64_t head_size = signed_head->size;
  insert_rows(*p, 30, 30);  // unsigned entries past the head
  REQUIRE(p->head()->size == head_size);
  const uint64_t size = p->size();

  auto round = compact_primary_log(*p, 1);
  REQUIRE_MESSAGE(round.ok(), round.error_text());
  CHECK(round->keep_from == head_size);  // size - 1 cut to the head
  CHECK(round->first_before == 0);
  CHECK(round->first_after > 0);
  CHECK(round->first_after <= head_size);
  CHECK(round->dropped.entries == round->first_after);
  CHECK(round->dropped.segments > 0);
  CHECK(round->dropped.bytes > 0);
  {
    std::lock_guard lock(p->log_mutex());
    CHECK(p->log().first_entry() == round->first_after);
    CHECK(p->log().entry(round->first_after - 1).error().code == Errc::not_found);
    CHECK(p->log().entry(round->first_after).ok());
    CHECK(p->log().size() == size);
  }
  // Nothing more to drop under the same head.
  auto again = compact_primary_log(*p, 1);
  REQUIRE(again.ok());
  CHECK(again->dropped.entries == 0);
  CHECK(again->first_after == round->first_after);

  // Writes go on; the primary reopens on the compacted log.
  insert_rows(*p, 60, 3);
  REQUIRE(p->close().ok());
  p.reset();
  p = open_primary(dir, keys, 1000);
  CHECK(p->size() == size + 3);
  insert_rows(*p, 63, 2);
  CHECK(p->size() == size + 5);
}

TEST_CASE("retain 0 or a log no longer than retain drops nothing") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto p = open_primary(dir, keys);
  REQUIRE(p->execute({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")}).ok());
  insert_rows(*p, 0, 20);
  for (uint64_t retain : {uint64_t{0}, p->size(), p->size() + 5}) {
    auto round = compact_primary_log(*p, retain);
    REQUIRE(round.ok());
    CHECK(round->dropped.entries == 0);
    std::lock_guard lock(p->log_mutex());
    CHECK(p->log().first_entry() == 0);
  }
}

TEST_CASE("a peer compacts only what it applied (keeping the entry it is at) and reopens") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto p = open_primary(dir, keys);
  REQUIRE(p->execute({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")}).ok());
  insert_rows(*p, 0, 60);
  auto open_replica = [&] { return open_small_replica(dir, keys); };
  auto r = open_replica();
  // The whole log stored and verified (an entry per batch, so in many
  // segments: a batch goes to one segment), only part of it applied.
  {
    std::lock_guard lock(p->log_mutex());
    const Head head = *p->log().head();
    for (uint64_t s = 0; s < head.size; ++s) {
      Bytes entry = *p->log().entry_bytes(s);
      auto proof = p->log().consistency_proof(s + 1, head.size);
      REQUIRE(proof.ok());
      REQUIRE(r->log().append_proven(std::span<const Bytes>(&entry, 1), head, *proof).ok());
    }
  }
  const uint64_t applied = 25;
  REQUIRE(r->apply_available(applied).ok());
  REQUIRE(r->size() == applied);

  auto round = compact_replica_log(*r, 1);
  REQUIRE_MESSAGE(round.ok(), round.error_text());
  CHECK(round->keep_from == applied - 1);  // not size - 1: never past what it applied
  CHECK(round->first_after > 0);
  CHECK(round->first_after <= applied - 1);
  CHECK(round->dropped.entries == round->first_after);
  {
    std::lock_guard lock(r->log_mutex());
    CHECK(r->log().entry(applied - 1).ok());  // what Replica::open checks the database against
  }

  // Reopens (the database checked against entry applied - 1) and applies the rest.
  r.reset();
  r = open_replica();
  CHECK(r->size() == applied);
  auto more = r->apply_available();
  REQUIRE_MESSAGE(more.ok(), more.error_text());
  CHECK(r->size() == p->size());
  CHECK(r->state_root() == p->state_root());

  // Applied everything: the bound is the log's newest entry now.
  auto round2 = compact_replica_log(*r, 5);
  REQUIRE(round2.ok());
  CHECK(round2->keep_from == p->size() - 5);
  CHECK(round2->first_after >= round->first_after);
  CHECK(round2->first_after <= p->size() - 5);
}

TEST_CASE("keep_at_most (a held snapshot's frontier entry) bounds a peer's and a primary's round") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto p = open_primary(dir, keys);
  REQUIRE(p->execute({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")}).ok());
  insert_rows(*p, 0, 60);
  auto r = open_small_replica(dir, keys);
  {
    // Entry by entry, so in many segments (a batch goes to one segment).
    std::lock_guard lock(p->log_mutex());
    const Head head = *p->log().head();
    for (uint64_t s = 0; s < head.size; ++s) {
      Bytes entry = *p->log().entry_bytes(s);
      auto proof = p->log().consistency_proof(s + 1, head.size);
      REQUIRE(proof.ok());
      REQUIRE(r->log().append_proven(std::span<const Bytes>(&entry, 1), head, *proof).ok());
    }
  }
  REQUIRE(r->apply_available().ok());
  REQUIRE(r->size() == p->size());
  // A snapshot held at head 21 needs entry 20 (its frontier): --retain 1
  // keeps it (and what follows) while the snapshot is held.
  const uint64_t held = 21;
  auto peer = compact_replica_log(*r, 1, held - 1);
  REQUIRE_MESSAGE(peer.ok(), peer.error_text());
  CHECK(peer->keep_from == held - 1);
  CHECK(peer->first_after > 0);
  {
    std::lock_guard lock(r->log_mutex());
    CHECK(r->log().entry(held - 1).ok());
  }
  auto primary = compact_primary_log(*p, 1, held - 1);
  REQUIRE_MESSAGE(primary.ok(), primary.error_text());
  CHECK(primary->keep_from <= held - 1);
  CHECK(primary->first_after > 0);
  {
    std::lock_guard lock(p->log_mutex());
    CHECK(p->log().entry(held - 1).ok());
  }
  // Once no snapshot is held, the round goes to size - retain.
  auto later = compact_replica_log(*r, 1);
  REQUIRE(later.ok());
  CHECK(later->keep_from == r->size() - 1);
}

TEST_CASE("a peer with nothing applied drops nothing") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto p = open_primary(dir, keys);
  REQUIRE(p->execute({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")}).ok());
  insert_rows(*p, 0, 20);
  auto open_replica = [&] { return open_small_replica(dir, keys); };
  auto r = open_replica();
  REQUIRE(sync_replica(*p, *r).ok());
  // Reopened with its database removed: nothing applied, a full log.
  r.reset();
  std::filesystem::remove(dir / "r.db");
  r = open_replica();
  REQUIRE(r->size() == 0);
  auto round = compact_replica_log(*r, 1);
  REQUIRE(round.ok());
  CHECK(round->dropped.entries == 0);
  std::lock_guard lock(r->log_mutex());
  CHECK(r->log().first_entry() == 0);
}

TEST_CASE("compaction rounds race live writes and log readers: no write fails, reads are clean") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto p = open_primary(dir, keys);
  REQUIRE(p->execute({sql("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")}).ok());
  std::atomic<bool> done{false};
  std::atomic<int> write_failures{0}, bad_reads{0}, rounds{0}, written{0};
  // At least 300 rows, and on until a round dropped a segment while writes
  // went on (a loaded machine may not schedule the compactor during the first
  // 300); bounded, so a compactor that never drops fails the test.
  std::thread writer([&] {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (int i = 0; i < 300 || (rounds == 0 && std::chrono::steady_clock::now() < give_up); ++i) {
      auto r = p->execute({sql("INSERT INTO t(id, pad) VALUES (?1, ?2)",
                               {Value{int64_t{i}}, Value{std::string(200, 'y')}})});
      if (!r.ok()) ++write_failures;
      ++written;
    }
    done = true;
  });
  std::thread compactor([&] {
    while (!done) {
      auto round = compact_primary_log(*p, 10);
      if (!round.ok()) ++write_failures;
      if (round.ok() && round->dropped.entries > 0) ++rounds;
    }
  });
  // A reader as the node is one: under log_mutex(), any entry from 0 on.
  std::thread reader([&] {
    uint64_t seq = 0;
    while (!done) {
      std::lock_guard lock(p->log_mutex());
      const Log& log = p->log();
      if (log.size() == 0) continue;
      seq = (seq + 7) % log.size();
      auto e = log.entry(seq);
      if (seq >= log.first_entry() ? !e.ok() : (e.ok() || e.error().code != Errc::not_found)) ++bad_reads;
    }
  });
  writer.join();
  compactor.join();
  reader.join();
  CHECK(write_failures == 0);
  CHECK(bad_reads == 0);
  CHECK(rounds > 0);
  // A last round keeps the newest 10 and at most a segment (a few entries) more.
  REQUIRE(compact_primary_log(*p, 10).ok());
  std::lock_guard lock(p->log_mutex());
  CHECK(written >= 300);
  CHECK(p->log().size() == 2 + static_cast<uint64_t>(written.load()));  // genesis, CREATE TABLE, the rows
  CHECK(p->log().size() - p->log().first_entry() >= 10);
  CHECK(p->log().size() - p->log().first_entry() <= 10 + 5);
}
