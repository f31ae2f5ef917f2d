// The primary (docs/determinism.md): runs write transactions
// deterministically on its SQLite file and appends each committed transaction
// to its signed log; no write is acknowledged before its entry is durable.
//
// Group commit (docs/architecture.md "Durability order"): concurrent execute()
// calls queue; one caller, the leader, takes the queued writes (and those
// queued while it runs, until the last one starts; at most
// PrimaryOptions::max_group_writes) and runs them back to back under the write
// mutex, each in its OWN SQLite transaction with its own entry (one entry is
// always exactly one SQLite commit: replicas replay entry by entry). Order:
//   for each write: BEGIN IMMEDIATE → statements (pinned time, seeded
//   randomness) → applied_seq update → COMMIT: at the commit frame, before it
//   reaches the file, the WriteCapture hook updates the state tree and builds
//   the Entry. For every write but the group's last, the entry is kept in
//   memory and SQLite commits (synchronous=NORMAL: no fsync). For the last,
//   the hook writes the group's entries to the log in ONE write and starts
//   the disk's write of them (Log::append_write); SQLite then writes its
//   commit frame (to the -wal file, no sync) while the disk writes them, and
//   ONE fdatasync of the log segment follows (Log::append_sync; the index row
//   is synced lazily, docs/formats/log-store.md "Two-step append"). If the
//   last write fails before its commit, the group's entries are appended (one
//   fdatasync) after it. Only then is any write of the group acknowledged,
//   each with its own result; a write that failed (SQL error, refused, bound)
//   rolled back alone and never changes its neighbours' results.
// So the database LEADS the durable log by the group's writes (a write alone
// in its group included) until the group's fdatasync returns: their WAL
// frames may reach the disk first. Two rules keep that repairable:
//   - the write connection never checkpoints by itself (its WAL hook replaces
//     autocheckpoint; the leader checkpoints between groups, when everything
//     committed is in the log), nor on close while entries are unlogged, so
//     commits ahead of the log only ever live in the -wal file;
//   - open() finding the database ahead of the log (a crash before the group's
//     fdatasync) cuts the -wal file after the commit frame of the last logged
//     entry (repair_wal_ahead) and lets the state-root check prove the result.
// If the group's append fails (no space, EIO), the group's earlier writes stay
// committed in the database but not logged and get an error; the Primary
// appends those entries from memory before its next write (a local fault,
// retried with backoff), or open() cuts them if the process stops first. If
// the fdatasync fails, the last write is committed too and fails with them;
// the log store then refuses appends until the process restarts (the file's
// state is unknown after a failed fsync), and open() keeps the entries the
// log file holds after all and cuts the others.
// Any other failure before the append rolls its write back and logs nothing.
// Then, when group signing says so, one head per group is signed and kept in
// memory; the head file is written on close (LogStoreOptions::sync_head is
// off by default here: no file I/O per signed head).
// So after a crash the database can lag its log (crash after the append) or
// lead it by unacknowledged writes of one group (cut on open), never more:
// Primary::open replays a lagging tail from the log exactly as a replica does,
// and refuses to start when the database disagrees with the log otherwise.
// The stored head can lag the log too (crash before the head file reached the
// disk: an older head, or none): open() then signs a head for the whole log.
// That is safe because a head only ever signs synced entries, so the re-signed
// head agrees (log root, state root) with every head signed before the crash at
// any size it covers: no equivocation, even if peers saw the lost head.
// A reader on the primary's file (open_snapshot, HTTP reads) may see a write of
// the running group a moment before its entry is durable (docs/operations.md
// "Group commit").
//
// Thread-safety: every public method is safe to call from any thread. Writes,
// proofs and head signing are serialised by the write mutex; the log has its
// own mutex (log_mutex()), held for log operations only (a group's append
// holds it from its write to its fdatasync, SQLite's commit in between). size(), head(),
// state_root() and page_count() wait for neither: they read the log's published view and a mutex of
// their own. The log and size() hold durable entries only. Readers use open_snapshot() (snapshot.h)
// on db_path() and never block writes.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/entry.h"
#include "core/head.h"
#include "core/keys.h"
#include "core/log.h"
#include "core/result.h"
#include "sqlbridge/engine/background_writeback.h"
#include "sqlbridge/engine/determinism.h"
#include "sqlbridge/engine/local_fault.h"
#include "sqlbridge/engine/page_set.h"
#include "sqlbridge/engine/pin_slot.h"
#include "sqlbridge/engine/pinned_pages.h"
#include "sqlbridge/engine/retention.h"
#include "sqlbridge/engine/snapshot.h"
#include "sqlbridge/proof/prover.h"

namespace swarmlite {

class LengthGuard;

// Points in execute() where PrimaryOptions::test_hook is called (tests only).
enum class PrimaryHookPoint {
  before_log_append,  // a group's entries are about to be appended (and synced) to the log;
                      // the group's earlier writes are committed in SQLite. An error
                      // returned here fails that append, as a full disk would.
  after_log_append,  // in the commit hook, the entry is durable in the log, SQLite has not committed
  after_commit,      // SQLite committed, no head signed yet
};

struct PrimaryOptions {
  // Log directory; empty = "<db path>.log" beside the database.
  std::filesystem::path log_dir;
  // Heads are not fsync'ed by default: open() re-signs one when the stored head
  // does not cover the log (see the durability order above).
  LogStoreOptions log_options{.sync_head = false};
  // Group signing: after an execute, a head is signed when at least
  // `sign_every_entries` entries are not covered by a signed head, or when
  // `sign_interval_ms` > 0 and that long has passed since the last signed head.
  // Default: one head per execute. sign_head() forces one.
  uint64_t sign_every_entries = 1;
  int64_t sign_interval_ms = 0;
  // Background signing (docs/performance.md "Signing off the write path"): a
  // thread of the Primary's own signs a head for each new log size, at most one
  // per `sign_gap` (the first after a quiet spell at once), so no write waits
  // for a signature and under load one signature covers many writes. The
  // group-signing fields above are then not used; execute() returns no head
  // (ExecuteResult::head is nullopt) unless the group signed one for the page
  // service's pin (at most one per pin_interval while pages are requested),
  // and set_head_listener()'s listener hears of each head. The acknowledgement
  // still means durable: the log append is the durability point, and open()
  // signs a head for entries no stored head covers. A head that fails to be
  // stored is a local fault (local_fault()), retried with backoff.
  bool sign_in_background = false;
  std::chrono::microseconds sign_gap{500};
  // Tests only: called at each PrimaryHookPoint. An error returned at
  // after_log_append fails the commit after the entry reached the log, as a
  // full disk or an I/O error would: the Primary then applies the logged entry
  // from its log (as open() does) before it takes the next write, retrying with
  // backoff (see execute()).
  std::function<Status(PrimaryHookPoint)> test_hook;
  // Tests only: where entry seeds and "now" come from (default: randombytes_buf
  // and the wall clock). Makes a randomised test reproducible from its seed.
  std::function<std::array<uint8_t, 32>()> seed_source;
  std::function<int64_t()> clock_ms;

  // Bounds on one write transaction, enforced on the primary only while it runs
  // (docs/determinism.md "Primary-only bounds"): over one, execute() rolls the
  // transaction back, logs nothing and returns Errc::refused naming the bound.
  // 0 = unbounded. Replicas never apply them: they replay whatever was logged.
  // Wall-clock time of one transaction (its statements and commit).
  std::chrono::milliseconds write_timeout{5000};
  // Pages one transaction may write (WAL frames, spills included) or add to the
  // file; 16384 pages = 64 MiB.
  uint32_t max_entry_pages = 16384;
  // SQLITE_LIMIT_LENGTH on the write connection: the largest string, blob or
  // row one statement may build (SQLite's own default, 1e9, when 0 or above it).
  int max_value_bytes = 32 << 20;
  // Group commit: the most queued writes one group runs before its log
  // append and fdatasync (the later ones wait for the next group). 1 = every
  // write appends and syncs alone.
  size_t max_group_writes = 64;
  // Prepared statements kept for reuse across writes, keyed by their exact SQL
  // text (DeterministicDb::set_statement_cache, the replicas' cache; 0: prepare
  // every statement afresh). Only a single INSERT, UPDATE, DELETE or REPLACE the
  // authorizer passed with nothing to check again is kept; the cache is dropped
  // on any schema change and any rollback (docs/determinism.md "Statement cache").
  size_t statement_cache = 64;
  // The page service (docs/light-client.md "Page service"): once a page, leaf
  // or pinned snapshot request came, the newest signed head is pinned (a read
  // transaction plus a copy of the state tree) right after a write group, at
  // most this often while writes keep coming, as a replica does
  // (ReplicaOptions::pin_interval). An idle primary pins on the next request.
  std::chrono::milliseconds pin_interval{200};
  // The change history GET /db/changes is answered from (Primary::
  // pinned_changes, docs/light-client.md "Head moves"), as a replica's
  // (ReplicaOptions::change_history_pins / _leaves): at most this many pins
  // back and this many old leaves in all, the oldest dropped first.
  size_t change_history_pins = 1024;
  size_t change_history_leaves = size_t{1} << 18;
};

// The time and page bounds of one write transaction (PrimaryOptions'
// write_timeout and max_entry_pages; 0 = unbounded). execute() takes them from
// the options; a caller that owns a long job (POST /db/load, docs/http-api.md
// "Loading a database") may pass its own for its entries. The value-size bound
// is a property of the write connection and always the options'.
struct WriteBounds {
  std::chrono::milliseconds write_timeout{0};
  uint32_t max_entry_pages = 0;
};

struct ExecuteResult {
  uint64_t seq = 0;          // the new entry's seq (log size - 1)
  int64_t time_ms = 0;       // pinned "now" of the entry
  Hash32 state_root{};       // state after the entry
  uint32_t page_count = 0;
  std::vector<StatementResult> statements;  // one per prepared statement, in order
  // The head signed after this call's group, given to the group's last
  // successful write (one head per group); nullopt when group signing deferred
  // it or another write of the group carries it (the entry is durable either
  // way; that head or a later one covers it).
  std::optional<Head> head;
};

class Primary : public PageServer {
 public:
  // Opens or creates the database at `db_path` and its log; writes genesis if
  // the log is empty; catches up a database that lags its log; cuts from the
  // -wal file the unacknowledged commits of a group whose log fdatasync a crash
  // prevented (repaired_entries()); refuses (with Errc::diverged / corrupt and
  // both sizes or roots in the message) a database ahead of its log otherwise,
  // or disagreeing with it. Checks the state tree built from
  // the file equals the last entry's state root and page count. Takes an
  // exclusive lock on "<db>-swlock": a second Primary on the same file fails.
  static Result<std::unique_ptr<Primary>> open(const std::filesystem::path& db_path,
                                               const SecretKey& key, PrimaryOptions options = {});
  // Signs a final head if entries are uncovered (errors ignored; call close() to see them).
  ~Primary();
  Primary(const Primary&) = delete;
  Primary& operator=(const Primary&) = delete;

  // One write transaction: statements with bound params, in order, in one
  // SQLite transaction; logged only if it commits. Statement SQL may hold
  // several statements (split exactly as SQLite does) but then must have no
  // params. Errors (nothing logged, database unchanged):
  //   invalid_argument  no statements, empty SQL, param count mismatch, params on multi-statement text
  //   refused           a construct that cannot be made deterministic (message names it)
  //   sqlite_error      a statement failed ("statement 3: UNIQUE constraint failed: t.a")
  //   io_error / other  the log append or SQLite I/O failed (a local fault, local_fault())
  //   unavailable       an earlier commit failed after its entry was logged and
  //                     applying that entry from the log still fails (a local
  //                     fault, retried with backoff on each call; it recovers
  //                     by itself once e.g. disk space returns)
  // A commit that fails after its entry reached the log returns an error too,
  // but the entry is durable and will be applied (message: "entry N was
  // logged …"): the next execute() (or retry_local_fault()) applies it from
  // the log first, with backoff; meanwhile heads are not signed.
  //   refused           also: over a PrimaryOptions bound (time limit, pages, value size)
  //   unavailable       also: stopping (interrupt())
  // Blocks for as long as the caller's group takes (each write bounded by its
  // write_timeout; the group's writes run on the thread of the caller that
  // leads it, see group commit above): callers serving a network keep it off
  // their I/O threads, and several callers at once share one log fdatasync.
  // `failure`, if given, says on error which statement failed (also a statement
  // the log cannot hold, refused before anything ran) and what the statements
  // before it returned before the rollback (determinism.h EntryFailure).
  Result<ExecuteResult> execute(std::span<const Statement> transaction,
                                EntryFailure* failure = nullptr);
  // The same with `bounds` in place of the options' time and page bounds.
  Result<ExecuteResult> execute(std::span<const Statement> transaction, EntryFailure* failure,
                                const WriteBounds& bounds);
  // The time and page bounds execute() applies by default (from the options).
  WriteBounds default_bounds() const {
    return WriteBounds{options_.write_timeout, options_.max_entry_pages};
  }
  Result<ExecuteResult> execute(std::initializer_list<Statement> transaction) {
    return execute(std::span<const Statement>(transaction.begin(), transaction.size()));
  }
  // Several write transactions from one caller, queued together so they share
  // a group commit (one log fdatasync) when they fit in one: each is its own
  // transaction and entry, in order, with its own result (as execute()'s);
  // one failing never changes another's result.
  struct Write {
    std::span<const Statement> transaction;
    EntryFailure* failure = nullptr;
    std::optional<WriteBounds> bounds;  // nullopt: default_bounds()
  };
  std::vector<Result<ExecuteResult>> execute_batch(std::span<const Write> writes);

  // Unacknowledged commits open() cut from the -wal file because a crash came
  // before their group's log fdatasync (0 normally; primary.h durability order).
  uint64_t repaired_entries() const { return repaired_entries_; }

  // The current local fault (docs/operations.md "Local faults"): a write or a
  // re-apply that failed on this node's own I/O; nullopt once one succeeded.
  std::optional<LocalFault> local_fault() const;
  // Applies a logged entry whose commit failed, if its backoff is due (execute()
  // does the same first). ok when there is nothing pending or it succeeded. A
  // fault with nothing pending (a write failed before it was logged) is
  // cleared once its backoff has passed.
  Status retry_local_fault();
  // From any thread: stops a running execute() at its next progress check (the
  // transaction rolls back, nothing is logged) and makes every later execute()
  // and prove() fail with Errc::unavailable. For shutdown: a SIGTERM must not
  // wait for a long write. Irreversible for this Primary.
  void interrupt();

  // Signs and stores a head for the current log (even if one already covers it).
  Result<Head> sign_head();
  // Signs one if group signing says it is due (for a timer in the server loop);
  // does nothing while a write runs (that write signs when due).
  Result<std::optional<Head>> sign_head_if_due();
  // Signs a pending head; further calls on this Primary are still allowed.
  Status close();
  // Called with each head the background signer stored (sign_in_background),
  // on its thread, with no lock of the Primary held: e.g. a node announcing
  // the head to its peers. Setting another (or an empty one) waits for a call
  // in progress, so the old listener's owner may go once this returns.
  void set_head_listener(std::function<void(const Head&)> listener);

  // Accessors (thread-safe snapshots).
  uint64_t size() const;           // entries in the log (== entries applied)
  Hash32 state_root() const;       // after the last entry
  uint32_t page_count() const;
  std::optional<Head> head() const;  // newest signed head
  // DeterministicDb::stats_epoch: moves after an entry touched the planner statistics.
  uint64_t stats_epoch() const;
  // Background writebacks of the -wal file started between checkpoints
  // (checkpoint_and_pin_locked), since open.
  uint64_t wal_writebacks() const { return wal_writeback_ ? wal_writeback_->runs() : 0; }
  const PublicKey& log_id() const { return log_id_; }
  const std::filesystem::path& db_path() const { return db_path_; }
  const std::filesystem::path& log_dir() const { return log_dir_; }
  // The log, for serving entries and proofs. Lock log_mutex() while using it if
  // execute() may run concurrently (the Log itself is not thread-safe).
  const Log& log() const { return *log_; }
  std::mutex& log_mutex() const { return mu_; }
  // Drops the log's entries before keep_from, whole segments at a time
  // (Log::compact; the retention policy, retention.h). keep_from is first cut
  // to the stored head's size and to the entries the database holds durably:
  // waits for a running write group (write mutex, briefly) to read the applied
  // size, fsyncs the database files with no lock held, then drops under
  // log_mutex() only, so serving peers and writes wait for the drop itself,
  // never for the fsync. unavailable while a commit failed after its log
  // append (the database lags the log, docs/operations.md "Local faults");
  // Log::compact's errors.
  Result<LogCompaction> compact_log(uint64_t keep_from);
  // A consistent read-only view of the current state (snapshot.h), pages read
  // recorded in `capture` if given. Safe concurrently with execute().
  Result<ReadSnapshot> open_snapshot(const ReadCapture* capture = nullptr) const;
  // The state roots of recently applied sizes, for begin_snapshot() on a
  // connection of the caller's own (e.g. a GuardedConnection). Thread-safe.
  const RecentRoots& recent_roots() const { return roots_; }

  // Proves a read-only query against a signed head of the current state
  // (prover.h): under the write mutex (writes wait for the proof and the proof
  // for a running write, at most write_timeout), signing a
  // head first if the newest one does not cover size() (so a caller that
  // serves peers should push the head afterwards: compare head() before/after).
  // Errors: unavailable when the primary is broken; else sign_head's and
  // prove_query's errors.
  Result<ProvedQuery> prove(std::string_view sql, const std::vector<Value>& params,
                            const ProveOptions& options = {});

  // The page service from a pin, with Replica::pinned_pages' / pinned_leaves'
  // semantics (sizes, HeadGone's *newest, errors; docs/light-client.md "Page
  // service"): pages read straight from the files at the pinned head
  // (PinnedPages), checked against the pin's tree. The pin is only ever at a
  // signed head covering the whole log: it is taken right after a write group
  // committed and signed (under the write mutex, so no write is in between),
  // when it is older than pin_interval or a request asked for a newer head,
  // and by a request itself when no write runs (a first request waits for
  // the running group). With group signing it lags the log until the next
  // signed head. A page the files no longer hold as the tree says is corrupt,
  // latched (corruption()): the primary then takes no writes and serves no
  // pages. unavailable when nothing could be pinned (no signed head covers
  // the log yet, a local fault, stopping). Any thread.
  Result<PageSet> pinned_pages(uint64_t size, std::span<const uint32_t> pgnos,
                               uint64_t* newest = nullptr) const override;
  Result<LeafSet> pinned_leaves(uint64_t size, std::span<const uint32_t> pgnos,
                                uint64_t* newest = nullptr) const override;
  // GetChanges (page_set.h ChangeSet; docs/light-client.md "Head moves"), with
  // Replica::pinned_changes' semantics: at each pin that moves the head the
  // state tree's change journal since the pin before is recorded (PinSlot), so
  // the changes from any head this primary pinned within its change history
  // (options' change_history_pins / _leaves) to the pinned head are answered.
  // A primary pins only once page requests came (above): its history starts
  // at its first pin. refused for a size it did not pin (or the history no
  // longer reaches); too_large past kMaxChangedPages. Any thread.
  Result<ChangeSet> pinned_changes(uint64_t from_size, uint64_t to_size,
                                   uint64_t* newest = nullptr) const override;
  // Sizes the history reaches back to (oldest first; the newest pin's last), for tests.
  std::vector<uint64_t> change_history_sizes() const;
  // The newest pin's page source (null if none), without pinning: holding it
  // keeps that pin's read transaction open (checkpoints cannot pass it).
  std::shared_ptr<const PinnedPages> pinned_page_source() const;
  // The size of the pinned head (0: none yet).
  uint64_t pinned_size() const;
  // Corruption found serving pages (see pinned_pages), once latched.
  std::optional<Error> corruption() const;

 private:
  // One execute_batch() call waiting for its writes: its own condition
  // variable, so a group's leader wakes only the callers it answered and the
  // one that leads next, not every waiting thread.
  struct Caller {
    std::condition_variable cv;
  };
  // One queued write (execute_batch); `result` is set by the group's leader.
  struct Queued {
    const Write* write = nullptr;
    Caller* caller = nullptr;
    std::optional<Result<ExecuteResult>> result;
    bool done = false;  // under queue_mu_
  };
  // An entry committed in SQLite by a group's earlier write, not yet in the log.
  struct Unlogged {
    uint64_t seq = 0;
    Hash32 state_root{};
    uint32_t page_count = 0;
    int64_t time_ms = 0;
    Queued* waiter = nullptr;  // its caller, while the group runs
  };
  Primary() = default;
  // The leader: runs `group` under write_mu_ and sets every result; writes
  // queued meanwhile join it (up to max_group_writes; appended to `group`).
  void run_group(std::vector<Queued*>& group);
  // One write of the group; `last`: its commit hook appends the group's entries.
  void run_write_locked(Queued& q, bool last);
  // Appends the entries in unlogged_ to the log (one write, one fdatasync),
  // publishes the new size and root and empties unlogged_; on failure they
  // stay there. Caller holds write_mu_ and mu_. The same in two steps, with
  // mu_ held from the first to the second: write_unlogged_locked writes them
  // and starts their write to the disk (Log::append_write),
  // sync_unlogged_locked syncs, appends and publishes them.
  Status append_unlogged_locked();
  Status write_unlogged_locked();
  Status sync_unlogged_locked();
  // open(): the database leads its log by `ahead` entries (a crash before a
  // group's fdatasync): cut those commits from the -wal file and reopen.
  Status repair_wal_ahead(uint64_t applied, uint64_t logged);
  static int wal_frames_hook(void* self, sqlite3* db, const char* name, int frames);
  Status catch_up_locked();
  // broken_: re-apply the logged entry now if the backoff allows (else
  // unavailable). Caller holds write_mu_ and mu_.
  Status recover_locked();
  Result<Head> sign_head_locked();
  // After a group (write_mu_ held, mu_ not): the checkpoint once the -wal file
  // holds kCheckpointFrames, and the pin when due (or `force`d by a request).
  // A due pin is dropped before the checkpoint so the checkpoint can copy the
  // whole WAL and the next write starts it over (the WAL stays bounded).
  void checkpoint_and_pin_locked(bool force) const;
  // The pin slot with the primary's policy (pinned_pages): built by open().
  std::unique_ptr<PinSlot> make_pin_slot();
  bool head_due_locked() const;
  // The background signer's thread (sign_in_background): waits for a log size
  // no head covers, signs it with mu_ released, stores it, tells the listener.
  void signer_loop();
  // mu_ held: SQLite has committed every entry of the log. Sets
  // confirmed_size_ and, with background signing, publishes ready_ and wakes
  // an idle signer.
  void confirm_locked();
  // Stops and joins it (the destructor).
  void stop_signer();
  int64_t next_time_ms_locked() const;
  int64_t now_ms() const;
  // The next entry's seed (write_mu_ held, or open() before any write).
  std::array<uint8_t, 32> next_seed();
  static int write_progress(void* self);

  std::filesystem::path db_path_, log_dir_;
  SecretKey key_;
  PublicKey log_id_;
  PrimaryOptions options_;
  std::unique_ptr<Log> log_;
  std::unique_ptr<LengthGuard> length_guard_;  // on db_'s connection; destroyed after db_ (~Primary)
  std::unique_ptr<DeterministicDb> db_;
  int lock_fd_ = -1;
  // Lock order: write_mu_ before mu_. write_mu_: db_, the state tree, the
  // fields below up to opened_. mu_: log_ and the published_* fields.
  mutable std::mutex write_mu_;
  mutable std::mutex mu_;
  int64_t last_time_ms_ = 0;       // time_ms of the last entry
  int64_t last_sign_ms_ = 0;       // wall clock of the last signed head
  bool broken_ = false;            // a commit failed after its log append (recover_locked)
  // Group commit: entries SQLite committed that the log does not hold yet (the
  // running group's, or a failed group append's, retried by recover_locked).
  std::vector<Unlogged> unlogged_;
  std::vector<Bytes> unlogged_bytes_;  // their encodings, in the same order
  // Encodings whose entries are durable, kept for the next writes' encodings
  // (encode_entry into a kept buffer): a 100-INSERT entry is ~7 KB, and a fresh heap block
  // of that size per write cost page faults and malloc's consolidation of
  // the small blocks SQLite freed. At most kSpareEntryBuffers, each under
  // kSpareEntryBytes (docs/performance.md "The write path's buffers kept").
  std::vector<Bytes> spare_entry_bytes_;
  static constexpr size_t kSpareEntryBuffers = 16;
  static constexpr size_t kSpareEntryBytes = 64 << 10;  // at most 1 MiB kept
  mutable int wal_frames_ = 0;     // frames in the -wal file after the last commit (WAL hook)
  // The -wal file's writeback, started in the background every
  // BackgroundWriteback::kPagesPerKick frames between checkpoints
  // (checkpoint_and_pin_locked).
  std::unique_ptr<BackgroundWriteback> wal_writeback_;
  uint64_t repaired_entries_ = 0;  // set by open() (repair_wal_ahead)
  // Entry seeds, drawn from the OS kSeedsPerDraw at a time (one randombytes_buf,
  // a getrandom call, instead of one per write); each seed is handed out once and
  // its bytes are wiped as it is (docs/performance.md "Seeds drawn in blocks").
  static constexpr size_t kSeedsPerDraw = 64;
  std::array<uint8_t, 32 * kSeedsPerDraw> seed_pool_{};
  size_t seed_pool_next_ = seed_pool_.size();  // offset of the next unused seed
  FaultState fault_;
  bool opened_ = false;            // open() completed (close() signs only then)
  // The state after the last logged entry: written under mu_ and
  // published_mu_, read under either (published_mu_ is never held across I/O).
  mutable std::mutex published_mu_;
  Hash32 published_root_{};
  uint32_t published_pages_ = 0;
  RecentRoots roots_;
  // The running write's bounds, read by write_progress() on the writing thread.
  struct RunningWrite {
    bool active = false;
    std::chrono::steady_clock::time_point start, deadline;
    int cache_writes_at_start = 0;
    WriteBounds bounds;            // this write's time and page bounds
    std::optional<Error> stopped;  // why write_progress() interrupted it
  } running_;
  std::atomic<bool> stopping_{false};
  // Background signing (sign_in_background): the signer waits on sign_cv_
  // with sign_mu_, which guards signer_stop_, signer_idle_ and ready_ (never
  // held across I/O or a signature; lock order mu_ before sign_mu_). It takes
  // mu_ only to store a head: what it signs is ready_, published by the
  // writer as each log size is confirmed (docs/performance.md "A signer that
  // builds its head from published values"). The write group signs itself
  // (for the pin) at most once per pin_interval: last_group_sign_ under
  // write_mu_.
  std::thread signer_;
  std::mutex sign_mu_;
  std::condition_variable sign_cv_;
  bool signer_stop_ = false;
  bool signer_idle_ = false;  // the signer waits for a new confirmed size
  // The newest confirmed log: its size and root, and the state after its last
  // entry. Such a log stays one the primary may sign (the log only grows).
  struct SignReady {
    uint64_t size = 0;
    Hash32 log_root{};
    Hash32 state_root{};
    uint32_t page_count = 0;
  } ready_;
  // Log entries SQLite has committed too (under mu_): the background signer
  // signs only a log this long (broken_ and unlogged_ are the writer's).
  // Set by confirm_locked(), which publishes ready_.
  uint64_t confirmed_size_ = 0;
  std::chrono::steady_clock::time_point last_group_sign_{};
  std::mutex listener_mu_;  // guards head_listener_, held while it runs
  std::function<void(const Head&)> head_listener_;
  // The write queue (execute_batch): lock order queue_mu_ before write_mu_ is
  // never needed — the leader releases queue_mu_ before it runs a group.
  std::mutex queue_mu_;
  std::deque<Queued*> queue_;
  bool leader_active_ = false;
  // The pin and the change history (pin_slot.h), pinned under write_mu_ with
  // mu_ released. Lock order: write_mu_, mu_, the slot's lock, corrupt_mu_.
  std::unique_ptr<PinSlot> pins_;
  mutable std::mutex corrupt_mu_;  // guards corrupted_ (a leaf: nothing is taken under it)
  mutable std::optional<Error> corrupted_;
  // A request came (the writer pins from then on) / asked for a newer head.
  mutable std::atomic<bool> pin_active_{false}, pin_wanted_{false};
};

// Default log directory for a database: "<db path>.log".
std::filesystem::path default_log_dir(const std::filesystem::path& db_path);

}  // namespace swarmlite
