// A replica (docs/determinism.md): applies the log's entries in
// order to its own SQLite file with the same pinned time, seeded randomness,
// fixed settings and authorizer as the primary (determinism.h). Entries go in
// batches, many per SQLite transaction, whose root and page count are compared
// at the batch's commit frame with its last entry's (docs/determinism.md
// "Batched replay"); a batch that fails is rolled back and its entries are
// replayed one transaction each, comparing each entry's root and page count.
// There, a mismatch, or a statement that fails here although the primary
// logged it, is divergence: the transaction is rolled back, the replica keeps
// its last good state, refuses to apply anything further and reports the error
// (diverged()) until reopened.
//
// The applied seq lives in the replica's database (sqlite_swarmlite.applied_seq, in
// the same transaction as the entry's writes), so after a crash the replica
// resumes from exactly the next entry of its log.
//
// How the network layer feeds it: receive entries + a signed head from any
// peer, store them with log().append_verified()/append_proven() (which verify
// signature, log root and continuity before anything is stored), then call
// apply_available(). Entries in the replica's Log are trusted to be verified.
// To serve proofs against a signed head, apply only up to that head's size
// (apply_available(head.size)) and read through open_snapshot().
//
// Thread-safety: open/apply*/log() mutation from one thread at a time (the
// "applier"); size(), state_root(), page_count(), diverged(), open_snapshot()
// from any thread. log_mutex() guards the Log between the applier and readers
// of the Log (serving entries/proofs): hold it around any Log call, except that
// the applier reads the entries it replays (Log::entry/entries) without it:
// those read only the store, which allows reads beside its one writer
// (core/log.h), so a batch stored meanwhile (verified and fsync'ed under
// log_mutex() by the node's store thread, net/worker.h) does not hold replay up;
// the log's size and head it reads from Log::view(), without log_mutex(), as do
// proofs. Every Log writer holds log_mutex(). A retention round (compact_replica_log,
// retention.h) mutates the Log from its own thread under log_mutex(), dropping
// only entries the applier is past. Pins: pin_slot.h (apply lock 1st).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>

#include "core/entry.h"
#include "core/head.h"
#include "core/keys.h"
#include "core/log.h"
#include "core/result.h"
#include "sqlbridge/engine/background_writeback.h"
#include "sqlbridge/engine/determinism.h"
#include "sqlbridge/engine/page_set.h"
#include "sqlbridge/engine/pin_slot.h"
#include "sqlbridge/engine/pinned_pages.h"
#include "sqlbridge/engine/snapshot.h"
#include "sqlbridge/proof/prover.h"

namespace swarmlite {

struct ReplicaOptions {
  // The head file is replaced at every stored head but not fsync'ed
  // (docs/formats/log-store.md "Head file on a replica"): a kill -9 keeps it
  // (the page cache survives), a power loss may leave an older head or none,
  // which any peer's Hello or Head then brings back (docs/protocol.md
  // "Following the log"). Entries are always synced before a head covers them.
  LogStoreOptions log_options{.sync_head = false, .head_write_interval_ms = 0};
  // Proofs (docs/verified-reads.md): the newest applied signed head is pinned
  // (a read transaction per connection plus a copy of the state tree) at most
  // this often while entries keep coming, so proofs never wait for the applier
  // and checkpoints get past the pin regularly. An idle replica pins its head
  // on the next proof request.
  std::chrono::milliseconds pin_interval{200};
  size_t proof_connections = 2;  // concurrent proofs per pinned head
  // Batched replay (docs/determinism.md "Batched replay"): apply_available runs
  // up to this many entries in one SQLite transaction and checks the state root
  // and page count at the batch's end against its last entry; 1 = one
  // transaction and one check per entry. A batch also ends once its entries'
  // statements (SQL and parameters) reach max_batch_bytes, or SQLite has
  // spilled max_batch_spill_pages pages of it to the WAL (held in memory until
  // the commit): both bound the apply lock's hold and the memory of a batch.
  uint64_t max_batch_entries = 1024;
  size_t max_batch_bytes = 8 << 20;
  size_t max_batch_spill_pages = 8192;  // 32 MiB of 4 KiB pages
  // End a batch early once its entries get slower the longer it runs
  // (BatchCostWatch below). Off only to measure what it saves.
  bool cut_slow_batches = true;
  // Lean batches (DeterministicDb::begin_batch, docs/determinism.md "Lean
  // batches"): a batch's entries skip the cell padding and write applied_seq
  // once at the end. A lean batch whose root differs at its end is run again
  // as a plain batch, and batches stay plain for the next lean_backoff_entries
  // entries (doubling at each such miss). Off only to measure what it saves.
  bool lean_batches = true;
  uint64_t lean_backoff_entries = 65536;
  // The change history GetChanges is answered from (Replica::pinned_changes,
  // docs/light-client.md "Head moves"): at most this many pins back (one
  // record per pin that moved the head: at the 200 ms pin interval, under
  // steady writes, ≈ 3.4 minutes) and this many old leaves in all (36 bytes
  // each in the records: ≈ 9 MiB), the oldest dropped first.
  size_t change_history_pins = 1024;
  size_t change_history_leaves = size_t{1} << 18;
  // Prepared statements kept for reuse across entries (DeterministicDb::
  // set_statement_cache; 0: prepare every statement afresh).
  size_t statement_cache = 64;
  // Decode once (Log::keep_decoded, docs/performance.md "Decode once"): the
  // entries a store decoded to check them are kept, up to this many bytes of
  // memory, and replayed from there instead of being read back from the log,
  // re-hashed and decoded again. Catching up, the store runs ahead of replay
  // and what does not fit is read from the log as before. 0: always read.
  size_t decoded_entries_bytes = 32 << 20;
};

// What batched replay did (Replica::replay_stats), for tests, benchmarks and metrics.
struct ReplayStats {
  uint64_t batches = 0;          // batches committed
  uint64_t batched_entries = 0;  // entries applied in them
  // Batches rolled back and replayed entry by entry: the batch's root differed
  // at its end (`mismatches`, a subset) or one of its entries failed in it.
  uint64_t fallbacks = 0;
  uint64_t mismatches = 0;
  uint64_t single_entries = 0;  // entries applied one transaction each (fallbacks included)
  uint64_t cut_batches = 0;     // batches ended early by BatchCostWatch (entries got slower)
  uint64_t lean_batches = 0;    // batches committed lean (ReplicaOptions::lean_batches)
  // Lean batches whose root differed at the end, run again as plain batches
  // (not counted in fallbacks or mismatches: the log was not at fault).
  uint64_t lean_misses = 0;
  // Entries replayed from the store's decoded copies (ReplicaOptions::
  // decoded_entries_bytes), not read back from the log.
  uint64_t handed_entries = 0;
};

// Ends a replay batch early when its entries get slower the longer the batch's
// SQLite transaction runs (docs/performance.md "Where batching loses"). Some
// SQLite work grows with the open transaction, e.g. every SAVEPOINT visits each
// virtual table the transaction touched (an FTS5 table flushes and walks its
// pending-terms hash), and a rollback to a savepoint walks the transaction's
// pages: on the differential fuzzer's workload an entry cost 0.3 ms as the
// first of a batch and 3.5 ms as the 600th. Uniform workloads (an INSERT per
// entry) are unaffected: their entries cost the same at every position.
// `fresh` is a moving average of the cost of batches' first entries; the batch
// ends after kSlowRun entries in a row each cost over kSlowFactor × fresh (one
// slow entry — a page split, a spill — does not end it). When a workload turns
// costlier for good, batches are cut short until `fresh` has followed (a few
// batches): a cut costs one commit, nothing else. Pure: the caller times.
class BatchCostWatch {
 public:
  static constexpr uint64_t kFreshEntries = 2;  // positions in a batch that feed `fresh`
  static constexpr double kSlowFactor = 1.5;
  static constexpr int kSlowRun = 2;
  static constexpr double kMinMicros = 30;  // entries cheaper than this never end a batch

  void begin_batch() {
    pos_ = 0;
    slow_run_ = 0;
  }
  // The cost of the batch's next entry; true: end the batch after it.
  bool record(double micros);
  double fresh() const { return fresh_; }

 private:
  double fresh_ = 0;
  bool have_fresh_ = false;
  uint64_t pos_ = 0;
  int slow_run_ = 0;
};

class Replica : public PageServer {
 public:
  // Opens or creates the replica database at `db_path` and its Log at
  // `log_dir` for log id `log_id`. The database may be empty (nothing applied)
  // or hold a prefix of the log; a database ahead of its log, or whose state
  // root differs from the log entry it claims to have applied, is refused
  // (Errc::diverged, both values in the message). If the log holds entry 0,
  // it is checked with check_genesis (SQLite version).
  static Result<std::unique_ptr<Replica>> open(const std::filesystem::path& db_path,
                                               const std::filesystem::path& log_dir,
                                               const PublicKey& log_id,
                                               ReplicaOptions options = {});
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Applies log entries [size(), min(log().size(), up_to)) in order. Returns the
  // number applied. Stops at the first error: diverged (also latched, see
  // diverged()), bad_version (genesis from another SQLite), or a transient
  // error (io_error: retry later). After applying, if the log's head covers
  // exactly size(), its state root and page count must match too (diverged if not).
  Result<uint64_t> apply_available(uint64_t up_to = UINT64_MAX);

  // Applies one entry, which must be the next (entry.seq == size()). The caller
  // vouches that it is verified (normally it is the log's own entry; this does
  // not read or write the Log). Errors as apply_available.
  Status apply(const Entry& entry);

  // Entries applied (the database's applied_seq + 1).
  uint64_t size() const;
  Hash32 state_root() const;
  uint32_t page_count() const;
  // DeterministicDb::stats_epoch: moves after an entry touched the planner statistics.
  uint64_t stats_epoch() const;
  // The divergence error, once the replica diverged (it then applies nothing more).
  std::optional<Error> diverged() const;
  ReplayStats replay_stats() const;
  // RESTART checkpoints a re-pin tried so that the -wal file starts over, and
  // those a reader outlasted (SQLITE_BUSY after the 250 ms wait). After a busy
  // one the next waits out a backoff, 1 s doubling up to 30 s: a read
  // transaction another program keeps open would otherwise cost every pin the
  // wait, and replay crawled (docs/operations.md "Looking at a running node's
  // database with SQLite").
  struct WalRestartStats {
    uint64_t tried = 0;
    uint64_t busy = 0;
  };
  WalRestartStats wal_restart_stats() const;
  // Writebacks of the -wal file started in the background (one per ~200 pages
  // the applier wrote): the checkpoint a re-pin runs on the applier then finds
  // little of the -wal file left to write (docs/performance.md "The replica's
  // -wal writeback").
  uint64_t wal_writebacks() const { return wal_writeback_ ? wal_writeback_->runs() : 0; }

  // Corruption: the database file no longer holds the pages the state tree
  // says it does (changed by another process, or by the disk). Detected by
  // scrub() and by prove() (both under the apply lock, so no apply is in
  // between); once detected it is latched (Errc::corrupt, naming the page):
  // the replica applies and proves nothing more, and its owner stops serving
  // reads (docs/operations.md "A corrupted replica").
  std::optional<Error> corruption() const;
  // Checks up to `max_pages` logical pages of the file against the state
  // tree's leaves, round robin from where the previous call stopped (and the
  // page count). Returns the pages checked, or the corruption (latched).
  // Holds the apply lock for the duration. Any thread.
  Result<uint32_t> scrub(uint32_t max_pages) const;

  // The replica's Log (entries received, newest head). See thread-safety above.
  Log& log() { return *log_; }
  const Log& log() const { return *log_; }
  std::mutex& log_mutex() const { return log_mu_; }
  const std::filesystem::path& db_path() const { return db_path_; }

  // A consistent read-only view (snapshot.h); never blocks apply.
  Result<ReadSnapshot> open_snapshot(const ReadCapture* capture = nullptr) const;
  // The state roots of recently applied sizes, for begin_snapshot() on a
  // connection of the caller's own (e.g. a GuardedConnection). Thread-safe.
  const RecentRoots& recent_roots() const { return roots_; }

  // Proves a read-only query against the newest signed head the replica has
  // applied and pinned (PinnedProver, prover.h): the pinned head may be a little
  // behind size() (at most pin_interval of entries while it applies), never
  // ahead. Never blocks apply, and apply never makes it fail. A caller asking
  // for options.min_size above the pin, once the replica has applied that far,
  // waits up to options.guard.time_limit for the applier (or the scrubber) to
  // let go and pins the newest head (read-your-writes); if the wait runs out
  // it is answered at the old pin (the caller checks the size). unavailable
  // (retry later) when no signed head was applied yet or the replica diverged;
  // otherwise prove_query's errors. Any thread.
  Result<ProvedQuery> prove(std::string_view sql, const std::vector<Value>& params,
                            const ProveOptions& options = {}) const;
  // The size of the head proofs are answered against now (0: none pinned yet).
  uint64_t pinned_size() const;

  // Pages of the pinned head read straight from the files, no copy
  // (PinnedPages, docs/light-client.md "Page service"), as the PageSet a node
  // sends (sqlbridge/engine/page_set.h): the head, the pages and the multiproof
  // of their leaves in the head's state tree. `size` 0: the newest pinned head;
  // an older size: not_found "head N gone, newest is M" (a newer one: "head N
  // not pinned yet, newest is M"), with *newest (if given) set to M so a
  // transport can answer HeadGone{M}; *newest is left alone on other errors.
  // `pgnos` must pass check_pgnos(head.page_count, kMaxPagesPerRequest)
  // (invalid_argument). A page the files no longer hold as the tree says is
  // corrupt, latched (corruption()). unavailable when nothing is pinned or the
  // replica diverged. An idle replica pins its newest applied head first, as
  // prove() does. Any thread.
  Result<PageSet> pinned_pages(uint64_t size, std::span<const uint32_t> pgnos,
                               uint64_t* newest = nullptr) const override;
  // The leaf hashes of `pgnos` (check_pgnos, kMaxLeavesPerRequest) at the
  // pinned head, from the pin's state tree (no file is read), with their
  // multiproof; sizes, errors and *newest as pinned_pages. Any thread.
  Result<LeafSet> pinned_leaves(uint64_t size, std::span<const uint32_t> pgnos,
                                uint64_t* newest = nullptr) const override;
  // GetChanges (page_set.h ChangeSet; docs/light-client.md "Head moves"): the
  // pages changed from the pinned head of size `from_size` to the pinned head
  // `to_size` (0: the newest; sizes and *newest as pinned_leaves), from the
  // change history (PinSlot::changes: one record per pin that moved the head,
  // options_.change_history_pins / _leaves). refused when from_size is not a pinned head the
  // history still reaches back to; too_large past kMaxChangedPages. Any thread.
  Result<ChangeSet> pinned_changes(uint64_t from_size, uint64_t to_size,
                                   uint64_t* newest = nullptr) const override;
  // Sizes the history reaches back to (oldest first; the newest pin's last), for tests.
  std::vector<uint64_t> change_history_sizes() const;
  // The newest pin's page source (null if none), without pinning: holding it
  // keeps that pin's read transactions open (checkpoints cannot pass them).
  std::shared_ptr<const PinnedPages> pinned_page_source() const;

 private:
  friend struct ReplicaTestAccess;  // replica_test.cpp: holds the apply lock as a busy applier would
  Replica() = default;
  Status apply_locked(const Entry& entry);
  // Applies [size(), end) in batches, or entry by entry where a batch fails.
  Status apply_range_locked(uint64_t end, uint64_t& applied);
  // One batch from size() towards `end`. Returns the entries it applied; 0 when
  // it was rolled back (`fallback_end` is then where the entry-by-entry replay
  // has to go to reach, at least, the entry that failed or the batch's end).
  Result<uint64_t> apply_batch_locked(uint64_t end, uint64_t& fallback_end);
  // The entry at `seq` for replay, read ahead up to `stop` (< view().size):
  // from the store's decoded copies when it kept them, else from the log.
  // Valid until the next call.
  Result<const Entry*> next_entry_locked(uint64_t seq, uint64_t stop);
  Status check_head_locked();
  // Applier (apply_mu_ held): pins the newest head if size() is exactly its
  // size and the pin is older than pin_interval (or `force`).
  void pin_if_due_locked(bool force) const;
  // Applier: starts the -wal file's writeback once the applier wrote
  // BackgroundWriteback::kPagesPerKick more pages to it.
  void kick_writeback_if_due_locked();

  std::filesystem::path db_path_;
  std::unique_ptr<Log> log_;
  std::unique_ptr<DeterministicDb> db_;
  int lock_fd_ = -1;
  mutable std::mutex mu_;      // guards the fields below
  mutable std::mutex log_mu_;  // guards log_ (see thread-safety)
  // Held by apply()/apply_available()/scrub()/prove()'s re-pin: one applier at a
  // time. Timed: a proof that asks for min_size waits a bounded time for it.
  mutable std::timed_mutex apply_mu_;
  uint64_t size_ = 0;
  Hash32 state_root_{};
  uint32_t page_count_ = 0;
  std::optional<Error> diverged_;
  ReplayStats stats_;
  uint64_t batch_limit_ = 0;  // current batch size (adapts, see apply_range_locked); applier only
  uint64_t singles_since_limit_1_ = 0;  // entries applied one by one since batch_limit_ fell to 1
  BatchCostWatch cost_watch_;           // applier only
  // Entries read ahead for replay (next_entry_locked), ahead_[ahead_pos_]
  // next; those before it are replayed. When they came from
  // Log::take_decoded (ahead_handed_), they go back to the log once replayed
  // (Log::recycle_decoded). Applier only.
  std::vector<Entry> ahead_;
  size_t ahead_pos_ = 0;
  bool ahead_handed_ = false;
  uint64_t plain_until_ = 0;    // batches starting below this seq are not lean; applier only
  uint64_t lean_backoff_ = 0;   // the next miss's plain stretch (0: lean_backoff_entries)
  mutable std::optional<Error> corrupted_;
  mutable uint32_t scrub_next_ = 1;  // next page scrub() checks (under apply_mu_)
  // The WAL's RESTART checkpoints (pin_if_due_locked, under apply_mu_; the
  // counters read by anyone).
  mutable std::atomic<uint64_t> wal_restarts_tried_{0}, wal_restarts_busy_{0};
  mutable std::chrono::steady_clock::time_point wal_restart_not_before_{};
  mutable std::chrono::milliseconds wal_restart_backoff_{0};
  std::unique_ptr<BackgroundWriteback> wal_writeback_;
  RecentRoots roots_;
  ReplicaOptions options_;
  // The pin proofs and the page service answer from, and the change history
  // (pin_slot.h): pinned by the applier under apply_mu_ (lock order apply_mu_
  // before the slot's lock; mu_ and log_mu_ are never held with it).
  std::unique_ptr<PinSlot> pins_;
};

}  // namespace swarmlite
