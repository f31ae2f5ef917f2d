#include "sqlbridge/engine/primary.h"

#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sqlbridge/engine/db_lock.h"
#include "sqlbridge/engine/genesis.h"
#include "sqlbridge/engine/length_guard.h"

namespace swarmlite {

namespace {
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The write progress handler runs every kWriteProgressOps VM instructions:
// often, because one instruction may write a whole value (up to
// max_value_bytes) and the page cap should hold within a few rows.
constexpr int kWriteProgressOps = 8;
// SQLite's default SQLITE_LIMIT_LENGTH, which replicas keep (docs/determinism.md).
constexpr int kSqliteMaxLength = 1000000000;

// Pages this connection wrote to the WAL so far (spills and commits).
int cache_writes(sqlite3* db) {
  int current = 0, highwater = 0;
  sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_WRITE, &current, &highwater, 0);
  return current;
}

// Writes, syncs and removes kProbeBytes in the database's directory: whether
// the disk takes writes again after a local fault (no space, EIO).
constexpr size_t kProbeBytes = 64 * 1024;
Status probe_disk(const std::filesystem::path& db_path) {
  const std::string path = db_path.string() + "-swlprobe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return make_error(Errc::io_error, "probing the disk: cannot create {}: {}", path,
                      std::strerror(errno));
  }
  const std::string block(kProbeBytes, '\0');
  size_t done = 0;
  int err = 0;
  while (done < block.size()) {
    const ssize_t n = ::write(fd, block.data() + done, block.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : ENOSPC;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  ::unlink(path.c_str());
  if (err != 0) {
    return make_error(Errc::io_error, "probing the disk: writing {} bytes to {}: {}", kProbeBytes,
                      path, std::strerror(err));
  }
  return ok_status();
}

std::string duration_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return fmt::format("{} s", d.count() / 1000);
  return fmt::format("{} ms", d.count());
}
}  // namespace

std::filesystem::path default_log_dir(const std::filesystem::path& db_path) {
  return std::filesystem::path(db_path.string() + ".log");
}

Result<std::unique_ptr<Primary>> Primary::open(const std::filesystem::path& db_path,
                                               const SecretKey& key, PrimaryOptions options) {
  std::unique_ptr<Primary> p(new Primary());
  p->db_path_ = db_path;
  p->log_dir_ = options.log_dir.empty() ? default_log_dir(db_path) : options.log_dir;
  p->key_ = key;
  p->log_id_ = key.public_key();
  p->options_ = std::move(options);
  if (p->options_.sign_every_entries == 0) p->options_.sign_every_entries = 1;
  SWL_ASSIGN(p->lock_fd_, lock_database(db_path));
  SWL_ASSIGN(p->log_, Log::open(p->log_dir_, p->log_id_, p->options_.log_options));
  SWL_ASSIGN(p->db_, DeterministicDb::open(db_path));

  std::scoped_lock lock(p->write_mu_, p->mu_);
  SWL_ASSIGN(uint64_t applied, p->db_->read_applied_size());
  const uint64_t logged = p->log_->size();
  if (applied > logged) {
    return make_error(Errc::diverged,
                      "{} has {} entries applied but its log {} holds only {}: the database is "
                      "ahead of its log, refusing to start",
                      db_path.string(), applied, p->log_dir_.string(), logged);
  }
  if (logged == 0) {
    // A new primary: the genesis entry.
    const std::vector<Statement> genesis = genesis_statements();
    Entry entry;
    entry.seq = 0;
    entry.time_ms = p->next_time_ms_locked();
    entry.seed = p->next_seed();
    entry.statements = genesis;
    auto on_commit = [&](const Hash32& root, uint32_t page_count) -> Status {
      entry.state_root = root;
      entry.page_count = page_count;
      Bytes encoded = encode_entry(entry);
      return p->log_->append(std::span<const Bytes>(&encoded, 1));
    };
    SWL_TRY(p->db_->run_entry(EntryInputs{0, entry.time_ms, entry.seed}, genesis,
                              DeterministicDb::Mode::genesis, false, on_commit));
    p->last_time_ms_ = entry.time_ms;
  } else {
    SWL_TRY(p->catch_up_locked());
  }
  // The file's state must be exactly the last entry's.
  SWL_ASSIGN(Entry last, p->log_->entry(p->log_->size() - 1));
  const StateTree& tree = p->db_->state_tree();
  if (tree.root() != last.state_root || tree.page_count() != last.page_count) {
    return make_error(Errc::diverged,
                      "{}: state root {} with {} pages differs from log entry {}'s {} with {} pages",
                      db_path.string(), to_hex(tree.root()), tree.page_count(), last.seq,
                      to_hex(last.state_root), last.page_count);
  }
  p->last_time_ms_ = std::max(p->last_time_ms_, last.time_ms);
  p->published_root_ = tree.root();
  p->published_pages_ = tree.page_count();
  p->roots_.record(p->log_->size(), tree.root(), tree.page_count());
  // Primary-only bounds, from here on (the catch-up above replays what was
  // logged, whatever the bounds were then): docs/determinism.md.
  sqlite3* db = p->db_->handle();
  const int max_value = p->options_.max_value_bytes;
  const bool value_bound = max_value > 0 && max_value < kSqliteMaxLength;
  if (value_bound) sqlite3_limit(db, SQLITE_LIMIT_LENGTH, max_value);
  // printf() returns NULL instead of an error over the length limit: on a
  // replica (higher limit) the same call gives text. The guard makes it an error.
  SWL_ASSIGN(p->length_guard_, LengthGuard::install(db, value_bound ? max_value : kSqliteMaxLength));
  sqlite3_progress_handler(db, kWriteProgressOps, &Primary::write_progress, p.get());
  const auto& head = p->log_->head();
  if (!head || head->size < p->log_->size()) {
    SWL_TRY(p->sign_head_locked());
  } else {
    p->last_sign_ms_ = p->now_ms();
  }
  p->opened_ = true;
  return p;
}

Status Primary::catch_up_locked() {
  SWL_ASSIGN(uint64_t applied, db_->read_applied_size());
  for (uint64_t seq = applied; seq < log_->size(); ++seq) {
    SWL_ASSIGN(Entry entry, log_->entry(seq));
    if (seq == 0) SWL_TRY(check_genesis(entry));
    if (Status s = replay_entry(*db_, entry); !s.ok()) {
      return make_error(s.error().code, "catching up {} from its log: {}", db_path_.string(),
                        s.error().message);
    }
    last_time_ms_ = std::max(last_time_ms_, entry.time_ms);
  }
  return ok_status();
}

Status Primary::recover_locked() {
  if (!broken_) return ok_status();
  if (!fault_.retry_due()) {
    auto f = fault_.get();
    return make_error(Errc::unavailable,
                      "primary {}: logged entry {} is not applied yet (local fault: {}); next retry "
                      "in {} ms",
                      db_path_.string(), log_->size() - 1, f ? f->what : "?", fault_.wait().count());
  }
  if (Status s = catch_up_locked(); !s.ok()) {
    fault_.failed(s.error());
    return make_error(Errc::unavailable,
                      "primary {}: applying logged entry {} from the log failed again ({}); retrying "
                      "with backoff",
                      db_path_.string(), log_->size() - 1, s.error().to_string());
  }
  broken_ = false;
  fault_.cleared();
  roots_.record(log_->size(), db_->state_tree().root(), db_->state_tree().page_count());
  return ok_status();
}

std::optional<LocalFault> Primary::local_fault() const { return fault_.get(); }

Status Primary::retry_local_fault() {
  // A running write applies a pending entry first itself; a health probe never
  // waits for it (a write may run for up to write_timeout).
  std::unique_lock write_lock(write_mu_, std::try_to_lock);
  if (!write_lock.owns_lock()) return ok_status();
  std::lock_guard lock(mu_);
  if (!broken_) {
    // Nothing pending (a write failed before its entry was logged): once the
    // backoff passes, a probe write next to the database decides whether the
    // fault is over — a health check must not report ready while the disk is
    // still full (docs/operations.md "Local faults").
    if (fault_.get() && fault_.retry_due()) {
      if (Status probe = probe_disk(db_path_); probe.ok()) {
        fault_.cleared();
      } else {
        fault_.failed(probe.error());
      }
    }
    return ok_status();
  }
  return recover_locked();
}

Primary::~Primary() {
  (void)close();
  db_.reset();
  log_.reset();
  unlock_database(lock_fd_);
}

Status Primary::close() {
  std::scoped_lock lock(write_mu_, mu_);
  if (!opened_ || broken_) return ok_status();
  const auto& head = log_->head();
  if (head && head->size == log_->size()) return ok_status();
  SWL_TRY(sign_head_locked());
  return ok_status();
}

int64_t Primary::now_ms() const { return options_.clock_ms ? options_.clock_ms() : wall_ms(); }

std::array<uint8_t, 32> Primary::next_seed() const {
  if (options_.seed_source) return options_.seed_source();
  std::array<uint8_t, 32> seed;
  randombytes_buf(seed.data(), seed.size());
  return seed;
}

int64_t Primary::next_time_ms_locked() const { return std::max(now_ms(), last_time_ms_); }

bool Primary::head_due_locked() const {
  const auto& head = log_->head();
  uint64_t uncovered = log_->size() - (head ? head->size : 0);
  if (uncovered == 0) return false;
  if (uncovered >= options_.sign_every_entries) return true;
  return options_.sign_interval_ms > 0 && now_ms() - last_sign_ms_ >= options_.sign_interval_ms;
}

Result<Head> Primary::sign_head_locked() {
  const auto& previous = log_->head();
  const int64_t time_ms = std::max(now_ms(), previous ? previous->time_ms : 0);
  SWL_ASSIGN(Head head, log_->sign_head(key_, db_->state_tree().root(),
                                        db_->state_tree().page_count(), time_ms));
  last_sign_ms_ = now_ms();
  return head;
}

Result<Head> Primary::sign_head() {
  std::scoped_lock lock(write_mu_, mu_);
  SWL_TRY(recover_locked());  // never sign a log whose last entry the database lacks
  return sign_head_locked();
}

Result<std::optional<Head>> Primary::sign_head_if_due() {
  std::unique_lock write_lock(write_mu_, std::try_to_lock);
  if (!write_lock.owns_lock()) return std::optional<Head>{};  // the running write signs when due
  std::lock_guard lock(mu_);
  if (broken_ && !recover_locked().ok()) return std::optional<Head>{};
  if (!head_due_locked()) return std::optional<Head>{};
  SWL_ASSIGN(Head head, sign_head_locked());
  return std::optional<Head>(head);
}

void Primary::interrupt() { stopping_.store(true); }

// Runs on the writing thread inside sqlite3_step (a progress handler may not
// use the connection beyond reading its state). Returning nonzero interrupts
// the statement; run_entry then rolls the transaction back.
int Primary::write_progress(void* self_ptr) {
  auto* self = static_cast<Primary*>(self_ptr);
  RunningWrite& w = self->running_;
  if (!w.active) return 0;
  if (w.stopped) return 1;
  sqlite3* db = self->db_->handle();
  // Outside the entry's transaction (before BEGIN, or once COMMIT went
  // through): nothing to stop, and a committed entry must not be reported failed.
  if (sqlite3_get_autocommit(db)) return 0;
  if (self->stopping_.load()) {
    w.stopped = make_error(Errc::unavailable,
                           "the primary is stopping: write transaction interrupted after {} ms; "
                           "rolled back, nothing logged",
                           std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - w.start)
                               .count());
    return 1;
  }
  const WriteBounds& o = w.bounds;
  if (o.write_timeout.count() > 0 && std::chrono::steady_clock::now() > w.deadline) {
    w.stopped = make_error(Errc::refused,
                           "write transaction exceeded the {} write time limit; rolled back, "
                           "nothing logged",
                           duration_text(o.write_timeout));
    return 1;
  }
  if (o.max_entry_pages > 0) {
    const int64_t written = cache_writes(db) - w.cache_writes_at_start;
    if (written > static_cast<int64_t>(o.max_entry_pages)) {
      w.stopped = make_error(Errc::refused,
                             "write transaction wrote {} pages, over the limit of {} pages ({} MiB) "
                             "for one entry; rolled back, nothing logged",
                             written, o.max_entry_pages,
                             (uint64_t{o.max_entry_pages} * kPageSize) >> 20);
      return 1;
    }
  }
  return 0;
}

Result<ExecuteResult> Primary::execute(std::span<const Statement> transaction,
                                       EntryFailure* failure) {
  return execute(transaction, failure, default_bounds());
}

Result<ExecuteResult> Primary::execute(std::span<const Statement> transaction, EntryFailure* failure,
                                       const WriteBounds& bounds) {
  std::lock_guard write_lock(write_mu_);
  if (stopping_.load()) {
    return make_error(Errc::unavailable, "primary {} is stopping: no more writes",
                      db_path_.string());
  }
  {
    std::lock_guard lock(mu_);
    // An earlier commit failed after its entry was logged: apply it first.
    SWL_TRY(recover_locked());
  }
  if (transaction.empty()) return make_error(Errc::invalid_argument, "execute: no statements");

  Entry entry;
  uint32_t pages_before = 0;
  {
    std::lock_guard lock(mu_);
    entry.seq = log_->size();
    pages_before = published_pages_;
  }
  entry.time_ms = next_time_ms_locked();
  entry.seed = next_seed();
  entry.statements.assign(transaction.begin(), transaction.end());
  // What the log cannot hold is refused before anything runs (decode_entry is
  // the definition of a loggable entry: UTF-8, no NUL in SQL, no NaN, caps).
  Bytes probe = encode_entry(entry);
  if (auto decoded = decode_entry(probe); !decoded.ok()) {
    // Name the statement the log cannot hold: each alone, in order (only on this path).
    for (size_t i = 0; i < entry.statements.size(); ++i) {
      Entry one = entry;
      one.statements.assign(1, entry.statements[i]);
      if (auto d = decode_entry(encode_entry(one)); !d.ok()) {
        if (failure) failure->statement = i;
        return make_error(Errc::invalid_argument,
                          "statement {}: the transaction cannot be logged: {}", i,
                          d.error().message);
      }
    }
    return make_error(Errc::invalid_argument, "execute: the transaction cannot be logged: {}",
                      decoded.error().message);
  }

  sqlite3* db = db_->handle();
  bool appended = false;
  auto on_commit = [&](const Hash32& root, uint32_t page_count) -> Status {
    // The bounds, once more at the commit frame: pages still in the cache at
    // COMMIT were not counted while the statements ran.
    const uint32_t max_pages = bounds.max_entry_pages;
    const int64_t written = cache_writes(db) - running_.cache_writes_at_start;
    const int64_t added = int64_t{page_count} - int64_t{pages_before};
    if (max_pages > 0 && (written > int64_t{max_pages} || added > int64_t{max_pages})) {
      return make_error(Errc::refused,
                        "write transaction {} {} pages, over the limit of {} pages ({} MiB) for "
                        "one entry; rolled back, nothing logged",
                        written > int64_t{max_pages} ? "wrote" : "added",
                        written > int64_t{max_pages} ? written : added, max_pages,
                        (uint64_t{max_pages} * kPageSize) >> 20);
    }
    entry.state_root = root;
    entry.page_count = page_count;
    Bytes encoded = encode_entry(entry);
    {
      std::lock_guard lock(mu_);
      SWL_TRY(log_->append(std::span<const Bytes>(&encoded, 1)));
      published_root_ = root;
      published_pages_ = page_count;
    }
    appended = true;
    // Before the commit makes the state visible, so a reader that sees it
    // finds its root (snapshot.h).
    roots_.record(entry.seq + 1, root, page_count);
    if (options_.test_hook) SWL_TRY(options_.test_hook(PrimaryHookPoint::after_log_append));
    return ok_status();
  };
  running_ = RunningWrite{};
  running_.active = true;
  running_.start = std::chrono::steady_clock::now();
  running_.bounds = bounds;
  running_.deadline = running_.start + bounds.write_timeout;
  running_.cache_writes_at_start = cache_writes(db);
  auto results = db_->run_entry(EntryInputs{entry.seq, entry.time_ms, entry.seed},
                                entry.statements, DeterministicDb::Mode::user,
                                /*collect_rows=*/true, on_commit, failure);
  running_.active = false;
  if (!results.ok()) {
    if (appended) {
      broken_ = true;
      fault_.failed(results.error());
      return make_error(results.error().code,
                        "entry {} was logged but SQLite's commit failed ({}); the entry is durable "
                        "and is applied from the log before the next write (retried with backoff)",
                        entry.seq, results.error().message);
    }
    if (running_.stopped) return std::move(*running_.stopped);
    Error e = results.take_error();
    if (is_local_fault(e)) fault_.failed(e);
    const int max_value = options_.max_value_bytes;
    if (max_value > 0 && max_value < kSqliteMaxLength &&
        (e.message.find("too big") != std::string::npos ||
         e.message.find("over the value length cap") != std::string::npos)) {
      return make_error(Errc::refused,
                        "{} (this primary allows at most {} bytes in one string, blob or row); "
                        "rolled back, nothing logged",
                        e.message, max_value);
    }
    return e;
  }
  fault_.cleared();
  last_time_ms_ = entry.time_ms;
  roots_.record(entry.seq + 1, entry.state_root, entry.page_count);

  ExecuteResult out;
  out.seq = entry.seq;
  out.time_ms = entry.time_ms;
  out.state_root = entry.state_root;
  out.page_count = entry.page_count;
  out.statements = std::move(results).value();
  if (options_.test_hook) SWL_TRY(options_.test_hook(PrimaryHookPoint::after_commit));
  std::lock_guard lock(mu_);
  if (head_due_locked()) {
    auto head = sign_head_locked();
    if (!head.ok()) {
      return make_error(head.error().code, "entry {} is committed but signing its head failed: {}",
                        entry.seq, head.error().message);
    }
    out.head = std::move(head).value();
  }
  return out;
}

uint64_t Primary::size() const {
  std::lock_guard lock(mu_);
  return log_->size();
}
Hash32 Primary::state_root() const {
  std::lock_guard lock(mu_);
  return published_root_;
}
uint32_t Primary::page_count() const {
  std::lock_guard lock(mu_);
  return published_pages_;
}
std::optional<Head> Primary::head() const {
  std::lock_guard lock(mu_);
  return log_->head();
}

Result<ProvedQuery> Primary::prove(std::string_view sql, const std::vector<Value>& params,
                                   const ProveOptions& options) {
  std::lock_guard write_lock(write_mu_);
  if (stopping_.load()) return make_error(Errc::unavailable, "primary {} is stopping", db_path_.string());
  std::optional<Head> head;
  {
    std::lock_guard lock(mu_);
    SWL_TRY(recover_locked());
    head = log_->head();
    if (!head || head->size != log_->size()) {
      SWL_ASSIGN(Head signed_head, sign_head_locked());
      head = signed_head;
    }
  }
  return prove_query(db_path_, db_->state_tree(), *head, sql, params, options);
}

Result<ReadSnapshot> Primary::open_snapshot(const ReadCapture* capture) const {
  return swarmlite::open_snapshot(db_path_, roots_, capture);
}

}  // namespace swarmlite
