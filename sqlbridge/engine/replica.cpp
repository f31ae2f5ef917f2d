#include "sqlbridge/engine/replica.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "sqlbridge/engine/db_lock.h"
#include "sqlbridge/engine/genesis.h"

namespace swarmlite {

namespace {
// WAL frames above which a re-pin forces the WAL to start over (SQLite's own
// auto-checkpoint threshold, determinism.cpp).
constexpr int kWalRestartFrames = 1000;
constexpr int kWriterBusyTimeoutMs = 5000;  // DeterministicDb::open's
// A RESTART checkpoint waits this long for the WAL's readers; after one that a
// reader outlasted, the next is tried after a backoff (Replica::WalRestartStats).
constexpr int kWalRestartWaitMs = 250;
constexpr std::chrono::milliseconds kWalRestartBackoffMin{1000};
constexpr std::chrono::milliseconds kWalRestartBackoffMax{30000};
// Entries applied one by one, after the batch size fell to 1 on mismatches,
// before batching is tried again (apply_range_locked).
constexpr uint64_t kBatchRetryAfter = 1024;

// unique_lock::try_lock_until on the timed apply mutex. Under ThreadSanitizer
// (the CI's TSan stage, docs/hacking.md "Sanitizers") it polls with try_lock
// instead: libstdc++ 12 waits in pthread_mutex_clocklock, which GCC 12's TSan
// does not intercept, so it would not see the lock taken and would report its
// unlock, and the accesses it guards, as errors.
bool lock_until(std::unique_lock<std::timed_mutex>& lock,
                std::chrono::steady_clock::time_point deadline) {
#if defined(__SANITIZE_THREAD__)
  while (!lock.try_lock()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
#else
  return lock.try_lock_until(deadline);
#endif
}

// What an entry's statements weigh towards max_batch_bytes (SQL and
// parameters; a number counts 8 bytes).
size_t statement_bytes(const Entry& entry) {
  size_t n = 0;
  for (const Statement& st : entry.statements) {
    n += st.sql.size();
    for (const Value& v : st.params) {
      if (const auto* text = std::get_if<std::string>(&v.v)) {
        n += text->size();
      } else if (const auto* blob = std::get_if<Bytes>(&v.v)) {
        n += blob->size();
      } else {
        n += 8;
      }
    }
  }
  return n;
}
}  // namespace

Result<std::unique_ptr<Replica>> Replica::open(const std::filesystem::path& db_path,
                                               const std::filesystem::path& log_dir,
                                               const PublicKey& log_id, ReplicaOptions options) {
  std::unique_ptr<Replica> r(new Replica());
  r->db_path_ = db_path;
  r->options_ = options;
  SWL_ASSIGN(r->lock_fd_, lock_database(db_path));
  SWL_ASSIGN(r->log_, Log::open(log_dir, log_id, options.log_options));
  r->log_->keep_decoded(options.decoded_entries_bytes);
  // A compacted log (docs/formats/log-store.md) no longer holds the genesis
  // entry; it was checked when the log was first replayed.
  if (r->log_->size() > 0 && r->log_->first_entry() == 0) {
    SWL_ASSIGN(Entry genesis, r->log_->entry(0));
    SWL_TRY(check_genesis(genesis));
  }
  SWL_ASSIGN(r->db_, DeterministicDb::open(db_path));
  r->db_->set_statement_cache(options.statement_cache);
  SWL_ASSIGN(uint64_t applied, r->db_->read_applied_size());
  if (applied > r->log_->size()) {
    return make_error(Errc::diverged,
                      "replica {} has {} entries applied but its log {} holds only {}: the database "
                      "is ahead of its log",
                      db_path.string(), applied, log_dir.string(), r->log_->size());
  }
  const StateTree& tree = r->db_->state_tree();
  if (applied > 0 && applied - 1 < r->log_->first_entry()) {
    // The entry the database is at was compacted away: only the checkpoint's
    // head at exactly that size can vouch for the state.
    std::optional<Head> head;
    if (auto cp = r->log_->checkpoint(); cp && !cp->head.empty()) {
      if (auto h = decode_head(cp->head); h.ok()) head = std::move(h).value();
    }
    if (!head || head->size != applied || tree.root() != head->state_root ||
        tree.page_count() != head->page_count) {
      return make_error(Errc::diverged,
                        "replica {} has {} entries applied, but its log {} starts at {} and its "
                        "checkpoint head does not vouch for that state: compact only up to the "
                        "replica's applied size",
                        db_path.string(), applied, log_dir.string(), r->log_->first_entry());
    }
  } else if (applied > 0) {
    SWL_ASSIGN(Entry last, r->log_->entry(applied - 1));
    if (tree.root() != last.state_root || tree.page_count() != last.page_count) {
      return make_error(Errc::diverged,
                        "replica {}: state root {} with {} pages differs from log entry {}'s {} "
                        "with {} pages",
                        db_path.string(), to_hex(tree.root()), tree.page_count(), last.seq,
                        to_hex(last.state_root), last.page_count);
    }
  }
  r->size_ = applied;
  r->state_root_ = tree.root();
  r->page_count_ = tree.page_count();
  r->roots_.record(applied, r->state_root_, r->page_count_);
  Replica* self = r.get();
  PinSlotHooks hooks;
  hooks.admit = [self]() -> Status {
    if (auto c = self->corruption()) return make_error(Errc::corrupt, "{}", c->message);
    if (auto d = self->diverged()) {
      return make_error(Errc::unavailable, "replica {} diverged, it serves no pages: {}",
                        self->db_path_.string(), d->to_string());
    }
    return ok_status();
  };
  hooks.newest_head = [self]() -> std::optional<uint64_t> {
    if (auto head = self->log_->view().head) return head->size;  // not log_mu_ (core/log.h)
    return std::nullopt;
  };
  // An idle replica pins its newest applied head on request, as prove() does
  // (without waiting: a busy applier pins by itself within pin_interval).
  hooks.request_pin = [self](bool) {
    std::unique_lock apply_lock(self->apply_mu_, std::try_to_lock);
    if (!apply_lock.owns_lock()) return false;
    self->pin_if_due_locked(/*force=*/true);
    return true;
  };
  hooks.latch_corrupt = [self](const Error& e) {
    std::lock_guard lock(self->mu_);
    self->corrupted_ = e;
  };
  r->wal_writeback_ =
      std::make_unique<BackgroundWriteback>(std::filesystem::path(db_path.string() + "-wal"));
  r->pins_ = std::make_unique<PinSlot>(
      PinSlotOptions{.owner = "replica " + db_path.string(),
                     .no_pin_hint = "",
                     .pin_interval = options.pin_interval,
                     .change_history_pins = options.change_history_pins,
                     .change_history_leaves = options.change_history_leaves},
      std::move(hooks));
  {
    std::lock_guard apply_lock(r->apply_mu_);
    r->pin_if_due_locked(/*force=*/true);
  }
  return r;
}

Replica::~Replica() {
  if (pins_) pins_->clear();  // the pin's read connections close first
  db_.reset();
  log_.reset();
  unlock_database(lock_fd_);
}

Status Replica::apply_locked(const Entry& entry) {
  {
    std::lock_guard lock(mu_);
    if (diverged_) return *diverged_;
    if (corrupted_) return *corrupted_;
    if (entry.seq != size_) {
      return make_error(Errc::invalid_argument, "replica {}: next entry is {}, got entry {}",
                        db_path_.string(), size_, entry.seq);
    }
  }
  if (entry.seq == 0) SWL_TRY(check_genesis(entry));
  // Known before the commit makes the new state visible: a reader that sees it
  // finds its root (snapshot.h). If the entry does not commit, no reader sees
  // that size and a retry records the same values.
  roots_.record(entry.seq + 1, entry.state_root, entry.page_count);
  if (Status s = replay_entry(*db_, entry); !s.ok()) {
    if (s.error().code == Errc::diverged) {
      std::lock_guard lock(mu_);
      diverged_ = s.error();
    }
    return s;
  }
  std::lock_guard lock(mu_);
  size_ = entry.seq + 1;
  state_root_ = db_->state_tree().root();
  page_count_ = db_->state_tree().page_count();
  roots_.record(size_, state_root_, page_count_);
  return ok_status();
}

Status Replica::apply(const Entry& entry) {
  std::lock_guard apply_lock(apply_mu_);
  return apply_locked(entry);
}

Result<uint64_t> Replica::apply_available(uint64_t up_to) {
  std::lock_guard apply_lock(apply_mu_);
  uint64_t applied = 0;
  for (;;) {
    // The log's view, not log_mu_, which a store holds through its fsync
    // (core/log.h): entries below view.size are stored and synced.
    const LogView view = log_->view();
    uint64_t end = std::min(view.size, up_to);
    // A batch ends at the newest signed head too: its state is compared with
    // the head and pinned for proofs (check_head_locked).
    if (view.head && view.head->size > size() && view.head->size < end) end = view.head->size;
    if (size() >= end) break;
    SWL_TRY(apply_range_locked(end, applied));
    SWL_TRY(check_head_locked());  // at a head boundary: compare, and pin it for proofs
  }
  SWL_TRY(check_head_locked());
  return applied;
}

// Batched replay (docs/determinism.md "Batched replay"). A batch that fails —
// its root or page count at the end differs from its last entry's, or one of
// its entries fails inside it — is rolled back and its entries are replayed
// one transaction each with the per-entry checks: only that path decides
// divergence, with the error it reports today. Page bytes after one long
// transaction may legitimately differ from those after one transaction per
// entry (the freelist is used differently), so a mismatching batch says
// nothing about the primary. Each mismatch halves the batch size (each batch
// that commits doubles it again, up to max_batch_entries); at 1, entries go one
// by one for kBatchRetryAfter entries before batches are tried again.
Status Replica::apply_range_locked(uint64_t end, uint64_t& applied) {
  const uint64_t max_entries = std::max<uint64_t>(1, options_.max_batch_entries);
  if (batch_limit_ == 0 || batch_limit_ > max_entries) batch_limit_ = max_entries;
  auto apply_one = [&](uint64_t seq, uint64_t stop) -> Status {
    SWL_ASSIGN(const Entry* entry, next_entry_locked(seq, stop));
    SWL_TRY(apply_locked(*entry));
    ++applied;
    {
      std::lock_guard lock(mu_);
      ++stats_.single_entries;
    }
    return check_head_locked();
  };
  while (size() < end) {
    const uint64_t next = size();
    // The genesis entry (seq 0) always runs on its own (check_genesis, genesis mode).
    if (next == 0 || batch_limit_ < 2 || end - next < 2) {
      SWL_TRY(apply_one(next, end));
      if (max_entries > 1 && batch_limit_ < 2 && ++singles_since_limit_1_ >= kBatchRetryAfter) {
        batch_limit_ = 2;
        singles_since_limit_1_ = 0;
      }
      continue;
    }
    uint64_t fallback_end = 0;
    SWL_ASSIGN(uint64_t n, apply_batch_locked(end, fallback_end));
    if (n > 0) {
      applied += n;
      batch_limit_ = std::min(max_entries, batch_limit_ * 2);
      continue;
    }
    batch_limit_ = std::max<uint64_t>(1, batch_limit_ / 2);
    for (uint64_t seq = next; seq < fallback_end; ++seq) SWL_TRY(apply_one(seq, fallback_end));
  }
  return ok_status();
}

Result<const Entry*> Replica::next_entry_locked(uint64_t seq, uint64_t stop) {
  if (ahead_pos_ >= ahead_.size() || ahead_[ahead_pos_].seq != seq) {
    // Entries are read ahead a few dozen at a time (one read of the log store
    // each, docs/performance.md "Lean batches"), kept across batches.
    constexpr uint64_t kReadAhead = 64;
    const uint64_t count = std::min(std::max<uint64_t>(stop, seq + 1) - seq, kReadAhead);
    // The log's thread that stores decodes its next batches into them.
    if (ahead_handed_) log_->recycle_decoded(ahead_);
    ahead_pos_ = 0;
    ahead_ = log_->take_decoded(seq, count, options_.max_batch_bytes);
    ahead_handed_ = !ahead_.empty();
    if (!ahead_.empty()) {
      std::lock_guard lock(mu_);
      stats_.handed_entries += ahead_.size();
    } else {
      // Not under log_mu_: Log::entries reads only the store, which may run
      // beside its one writer (core/log.h), so a batch being stored — its
      // verification and fsync under log_mu_ — does not hold replay up.
      auto e = log_->entries(seq, count, options_.max_batch_bytes);
      if (!e.ok()) return e.take_error();
      ahead_ = std::move(e).value();
      if (ahead_.empty() || ahead_.front().seq != seq) {
        const std::string got = ahead_.empty() ? "nothing" : fmt::format("entry {}", ahead_.front().seq);
        ahead_.clear();
        return make_error(Errc::internal, "log read of entry {} returned {}", seq, got);
      }
    }
  }
  return &ahead_[ahead_pos_++];
}

bool BatchCostWatch::record(double micros) {
  if (pos_++ < kFreshEntries) {
    fresh_ = have_fresh_ ? 0.75 * fresh_ + 0.25 * micros : micros;
    have_fresh_ = true;
    slow_run_ = 0;
    return false;
  }
  if (micros >= kMinMicros && micros > kSlowFactor * fresh_) return ++slow_run_ >= kSlowRun;
  slow_run_ = 0;
  return false;
}

Result<uint64_t> Replica::apply_batch_locked(uint64_t end, uint64_t& fallback_end) {
  uint64_t start;
  {
    std::lock_guard lock(mu_);
    if (diverged_) return *diverged_;
    if (corrupted_) return *corrupted_;
    start = size_;
  }
  const uint64_t stop = std::min(end, start + batch_limit_);
  SWL_TRY(db_->begin_batch(options_.lean_batches && start >= plain_until_));
  const bool lean = db_->batch_is_lean();
  cost_watch_.begin_batch();
  bool cut = false;
  auto fall_back = [&](uint64_t to, bool mismatch) -> uint64_t {
    db_->rollback_batch();
    fallback_end = to;
    std::lock_guard lock(mu_);
    ++stats_.fallbacks;
    if (mismatch) ++stats_.mismatches;
    return 0;
  };
  uint64_t seq = start;
  Hash32 last_root{};
  uint32_t last_pages = 0;
  size_t bytes = 0;
  while (seq < stop) {
    auto next = next_entry_locked(seq, stop);
    if (!next.ok()) {
      db_->rollback_batch();
      return next.take_error();
    }
    const Entry& entry = **next;
    if (seq > start && needs_fresh_schema(entry.statements)) {
      // It starts the next batch (DeterministicDb::needs_fresh_schema): leave
      // it where next_entry_locked found it.
      --ahead_pos_;
      break;
    }
    // In a batch, replay_entry runs the entry without its commit; any error
    // (the batch is rolled back already) is left to the entry-by-entry replay.
    const auto t0 = std::chrono::steady_clock::now();
    if (Status s = replay_entry(*db_, entry); !s.ok()) return fall_back(seq + 1, false);
    cut = cost_watch_.record(
              std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count()) &&
          options_.cut_slow_batches;
    last_root = entry.state_root;
    last_pages = entry.page_count;
    ++seq;
    bytes += statement_bytes(entry);
    if (cut || bytes >= options_.max_batch_bytes ||
        db_->batch_spilled_pages() >= options_.max_batch_spill_pages || db_->stats_reload_due()) {
      break;
    }
  }
  // As in apply_locked: readers that see the new size find its root.
  roots_.record(seq, last_root, last_pages);
  const bool lean_to_end = db_->batch_is_lean();  // not turned plain by a CREATE VIRTUAL TABLE
  Status committed = db_->commit_batch([&](const Hash32& root, uint32_t page_count) -> Status {
    if (root != last_root || page_count != last_pages) {
      return make_error(Errc::diverged,
                        "replay batch of entries {}..{}: state root {} with {} pages, entry {} "
                        "says {} with {} pages",
                        start, seq - 1, to_hex(root), page_count, seq - 1, to_hex(last_root),
                        last_pages);
    }
    return ok_status();
  });
  if (!committed.ok() && lean && committed.error().code == Errc::diverged) {
    // A lean batch's pages may differ from the entries' own (cell padding):
    // not the log's fault. Run the same batch again, plain, and stay plain for
    // a while (docs/determinism.md "Lean batches").
    db_->rollback_batch();
    if (lean_backoff_ == 0) lean_backoff_ = std::max<uint64_t>(1, options_.lean_backoff_entries);
    plain_until_ = start + lean_backoff_;
    lean_backoff_ = std::min<uint64_t>(lean_backoff_ * 2, uint64_t{1} << 40);
    {
      std::lock_guard lock(mu_);
      ++stats_.lean_misses;
    }
    return apply_batch_locked(end, fallback_end);
  }
  if (!committed.ok()) return fall_back(seq, committed.error().code == Errc::diverged);
  std::lock_guard lock(mu_);
  if (cut) ++stats_.cut_batches;
  if (lean_to_end) ++stats_.lean_batches;
  size_ = seq;
  state_root_ = db_->state_tree().root();
  page_count_ = db_->state_tree().page_count();
  roots_.record(size_, state_root_, page_count_);
  ++stats_.batches;
  stats_.batched_entries += seq - start;
  return seq - start;
}

Status Replica::check_head_locked() {
  const std::optional<Head> head = log_->view().head;  // not log_mu_ (apply_available)
  {
    std::lock_guard lock(mu_);
    if (!head || head->size != size_) return ok_status();
    if (head->state_root != state_root_ || head->page_count != page_count_) {
      diverged_ = make_error(Errc::diverged,
                             "replica {}: after {} entries the state root is {} with {} pages, the "
                             "signed head says {} with {} pages",
                             db_path_.string(), size_, to_hex(state_root_), page_count_,
                             to_hex(head->state_root), head->page_count);
      return *diverged_;
    }
  }
  kick_writeback_if_due_locked();
  pin_if_due_locked(/*force=*/false);
  return ok_status();
}

void Replica::kick_writeback_if_due_locked() {
  if (!wal_writeback_) return;
  // Every BackgroundWriteback::kPagesPerKick pages the applier writes to the
  // -wal file, its writeback is started in the background (as on the
  // primary): the re-pin's checkpoint, on the applier thread every
  // pin_interval, then finds little of it left to write (docs/performance.md
  // "The replica's -wal writeback"). A hint: it makes nothing durable.
  wal_writeback_->kick_if_grown(cache_writes(db_->handle()));
}

void Replica::pin_if_due_locked(bool force) const {
  const std::optional<Head> head = log_->view().head;  // not log_mu_ (apply_available)
  if (!head || diverged()) return;
  {
    std::lock_guard lock(mu_);
    if (head->size != size_ || head->state_root != state_root_ || head->page_count != page_count_) {
      return;
    }
  }
  const auto now = std::chrono::steady_clock::now();
  PinSlot::Repin repin = pins_->begin_repin();  // proofs wait for the new pin rather than find none
  if (repin.has_pin() && repin.pinned_size() >= head->size) return;
  if (!force && repin.has_pin() && !repin.interval_passed(now)) return;
  // Let go of the old pin first (proofs in flight keep it alive), so that the
  // checkpoint can copy the whole WAL into the database; the new pin then reads
  // the database file alone and the next write starts the WAL over: the WAL
  // holds about one pin_interval of writes (docs/operations.md).
  repin.drop();
  sqlite3* h = db_->handle();
  int wal_frames = 0;
  (void)sqlite3_wal_checkpoint_v2(h, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, nullptr);
  if (wal_frames > kWalRestartFrames && now >= wal_restart_not_before_) {
    // Readers that never all leave at once (steady plain reads and proofs)
    // starve the passive checkpoint: the WAL would never start over. A RESTART
    // checkpoint waits (briefly) for the readers of the WAL to finish; readers
    // that begin meanwhile read the database file. If they do not finish in
    // time, a later pin tries again, after a backoff: a reader that stays (a
    // read transaction another program holds open) made every pin wait, and
    // the applier stood still 250 ms of every ~450 (pin_interval 200 ms).
    sqlite3_busy_timeout(h, kWalRestartWaitMs);
    const int rc =
        sqlite3_wal_checkpoint_v2(h, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
    sqlite3_busy_timeout(h, kWriterBusyTimeoutMs);
    wal_restarts_tried_.fetch_add(1);
    if (rc == SQLITE_BUSY) {
      wal_restarts_busy_.fetch_add(1);
      wal_restart_backoff_ =
          std::clamp(wal_restart_backoff_ * 2, kWalRestartBackoffMin, kWalRestartBackoffMax);
      wal_restart_not_before_ = std::chrono::steady_clock::now() + wal_restart_backoff_;
    } else {
      wal_restart_backoff_ = std::chrono::milliseconds{0};
    }
  }
  repin.pin(db_path_, db_->state_tree(), *head, options_.proof_connections, now);
}

std::shared_ptr<const PinnedPages> Replica::pinned_page_source() const {
  return pins_->page_source();
}

uint64_t Replica::pinned_size() const { return pins_->pinned_size(); }

uint64_t Replica::size() const {
  std::lock_guard lock(mu_);
  return size_;
}
Hash32 Replica::state_root() const {
  std::lock_guard lock(mu_);
  return state_root_;
}
uint32_t Replica::page_count() const {
  std::lock_guard lock(mu_);
  return page_count_;
}
uint64_t Replica::stats_epoch() const { return db_->stats_epoch(); }
std::optional<Error> Replica::diverged() const {
  std::lock_guard lock(mu_);
  return diverged_;
}
ReplayStats Replica::replay_stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}
Replica::WalRestartStats Replica::wal_restart_stats() const {
  return WalRestartStats{wal_restarts_tried_.load(), wal_restarts_busy_.load()};
}

std::optional<Error> Replica::corruption() const {
  std::lock_guard lock(mu_);
  return corrupted_;
}

Result<uint32_t> Replica::scrub(uint32_t max_pages) const {
  std::lock_guard apply_lock(apply_mu_);
  if (auto c = corruption()) return *c;
  const StateTree& tree = db_->state_tree();
  auto latch = [&](std::string what) -> Error {
    Error e = make_error(Errc::corrupt,
                         "replica {}: {}: the database file was changed outside swarmlite (or by the "
                         "disk); reads stopped (docs/operations.md)",
                         db_path_.string(), what);
    std::lock_guard lock(mu_);
    corrupted_ = e;
    return e;
  };
  auto pages = LogicalPages::open(db_path_);
  if (!pages.ok()) return latch("cannot read the file's pages (" + pages.error().to_string() + ")");
  if (pages->page_count() != tree.page_count())
    return latch(fmt::format("the file has {} pages, the state tree {}", pages->page_count(), tree.page_count()));
  const uint32_t count = tree.page_count();
  uint32_t checked = 0;
  Bytes bytes;
  while (checked < max_pages && checked < count) {
    if (scrub_next_ < 1 || scrub_next_ > count) scrub_next_ = 1;
    const uint32_t pgno = scrub_next_++;
    if (auto st = pages->read(pgno, bytes); !st.ok())
      return latch(fmt::format("page {} cannot be read ({})", pgno, st.error().to_string()));
    if (page_leaf_hash(pgno, bytes) != tree.tree().leaf(pgno - 1))
      return latch(fmt::format("page {} differs from the state tree", pgno));
    ++checked;
  }
  return checked;
}

Result<ProvedQuery> Replica::prove(std::string_view sql, const std::vector<Value>& params,
                                   const ProveOptions& options) const {
  if (auto c = corruption()) {
    return make_error(Errc::corrupt, "{}", c->message);
  }
  if (auto d = diverged()) {
    return make_error(Errc::unavailable, "replica {} diverged, it serves no proofs: {}",
                      db_path_.string(), d->to_string());
  }
  std::shared_ptr<PinnedProver> pin = pins_->current().prover;
  // The log's view, not log_mu_: a proof does not wait for a store's fsync.
  std::optional<Head> head = log_->view().head;
  // A newer head is applied but not pinned (an idle replica, or a client asking
  // for at least min_size): pin it now unless the applier is busy — it pins by
  // itself within pin_interval then. A client that asked for min_size, which
  // the replica has applied, waits (bounded) for the applier or the scrubber
  // to let go: without the wait, a read-your-writes proof right after the
  // write arrived was answered at the old pin (bigdb_itest, a 3 GiB peer
  // whose scrubber held the lock: "no such table" for a table just made).
  //
  // Only a head the file is at can be pinned (the pin reads the live file): a
  // newer head already stored but not applied yet holds the pin back until the
  // applier applies it. A client that asked for min_size waits for that too
  // (bounded by the time limit), and is never answered below min_size: at
  // start-up a proof asked right after a CREATE TABLE ran at the old pin and
  // failed "no such table" (soak_htest).
  uint64_t pinned = pin ? pin->head().size : 0;
  const auto deadline = std::chrono::steady_clock::now() + options.guard.time_limit;
  while (head && pinned < head->size) {
    const bool due = pins_->renew_due(options.min_size);
    const bool wanted = pinned < options.min_size && size() >= options.min_size;
    {
      std::unique_lock apply_lock(apply_mu_, std::defer_lock);
      if (due) {
        if (wanted)
          (void)lock_until(apply_lock, deadline);
        else (void)apply_lock.try_lock();
      }
      if (apply_lock.owns_lock()) {
        pin_if_due_locked(/*force=*/true);
        pin = pins_->current().prover;
        pinned = pin ? pin->head().size : 0;
      }
    }
    if (!wanted || pinned >= options.min_size || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the applier's turn
    head = log_->view().head;
  }
  if (pin && pinned < options.min_size) {
    return make_error(Errc::unavailable,
                      "replica {}: proofs are at log size {}, below min_size {} (applied {}, newest head {}); "
                      "try again",
                      db_path_.string(), pinned, options.min_size, size(), head ? head->size : 0);
  }
  if (!pin) {
    if (!head) {
      return make_error(Errc::unavailable, "replica {}: no signed head yet, cannot prove",
                        db_path_.string());
    }
    const std::optional<std::string> pin_error = pins_->pin_error();
    return make_error(Errc::unavailable,
                      "replica {}: no signed head applied yet (applied {}, newest head {}){}",
                      db_path_.string(), size(), head->size,
                      pin_error ? "; pinning failed: " + *pin_error : std::string());
  }
  auto proved = pin->prove(sql, params, options);
  if (!proved.ok() && proved.error().code != Errc::corrupt && pin->head().size < size()) {
    // Answered at an older state than the replica has applied: say so, or "no
    // such table" for a table made since reads as a wrong answer.
    Error e = proved.take_error();
    e.message += fmt::format(
        " (at the pinned head, log size {}; the replica has applied {}: ask with min_size for newer)",
        pin->head().size, size());
    return e;
  }
  if (!proved.ok() && proved.error().code == Errc::corrupt) {
    // The pinned read transaction sees the state its tree copy describes, so a
    // page that differs was changed outside swarmlite: latch it (corruption()).
    std::lock_guard lock(mu_);
    corrupted_ = proved.error();
  }
  return proved;
}

Result<PageSet> Replica::pinned_pages(uint64_t size, std::span<const uint32_t> pgnos,
                                      uint64_t* newest) const {
  return pins_->pages(size, pgnos, newest);
}

Result<LeafSet> Replica::pinned_leaves(uint64_t size, std::span<const uint32_t> pgnos,
                                       uint64_t* newest) const {
  return pins_->leaves(size, pgnos, newest);
}

Result<ChangeSet> Replica::pinned_changes(uint64_t from_size, uint64_t to_size,
                                          uint64_t* newest) const {
  return pins_->changes(from_size, to_size, newest);
}

std::vector<uint64_t> Replica::change_history_sizes() const { return pins_->history_sizes(); }

Result<ReadSnapshot> Replica::open_snapshot(const ReadCapture* capture) const {
  return swarmlite::open_snapshot(db_path_, roots_, capture);
}

}  // namespace swarmlite
