#include "sqlbridge/primary.h"

#include <sodium.h>

#include "sqlbridge/db_lock.h"
#include "sqlbridge/genesis.h"

namespace swarmlite {

namespace {
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
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

  std::lock_guard lock(p->mu_);
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
  p->roots_.record(p->log_->size(), tree.root(), tree.page_count());
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
  std::lock_guard lock(mu_);
  if (!broken_) {
    // Nothing pending (a write failed before its entry was logged): the fault
    // is reported until its backoff passes, then the next write tries again.
    if (fault_.get() && fault_.retry_due()) fault_.cleared();
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
  std::lock_guard lock(mu_);
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
  std::lock_guard lock(mu_);
  SWL_TRY(recover_locked());  // never sign a log whose last entry the database lacks
  return sign_head_locked();
}

Result<std::optional<Head>> Primary::sign_head_if_due() {
  std::lock_guard lock(mu_);
  if (broken_ && !recover_locked().ok()) return std::optional<Head>{};
  if (!head_due_locked()) return std::optional<Head>{};
  SWL_ASSIGN(Head head, sign_head_locked());
  return std::optional<Head>(head);
}

Result<ExecuteResult> Primary::execute(std::span<const Statement> transaction) {
  std::lock_guard lock(mu_);
  // An earlier commit failed after its entry was logged: apply it first.
  SWL_TRY(recover_locked());
  if (transaction.empty()) return make_error(Errc::invalid_argument, "execute: no statements");

  Entry entry;
  entry.seq = log_->size();
  entry.time_ms = next_time_ms_locked();
  entry.seed = next_seed();
  entry.statements.assign(transaction.begin(), transaction.end());
  // What the log cannot hold is refused before anything runs (decode_entry is
  // the definition of a loggable entry: UTF-8, no NUL in SQL, no NaN, caps).
  Bytes probe = encode_entry(entry);
  if (auto decoded = decode_entry(probe); !decoded.ok()) {
    return make_error(Errc::invalid_argument, "execute: the transaction cannot be logged: {}",
                      decoded.error().message);
  }

  bool appended = false;
  auto on_commit = [&](const Hash32& root, uint32_t page_count) -> Status {
    entry.state_root = root;
    entry.page_count = page_count;
    Bytes encoded = encode_entry(entry);
    SWL_TRY(log_->append(std::span<const Bytes>(&encoded, 1)));
    appended = true;
    // Before the commit makes the state visible, so a reader that sees it
    // finds its root (snapshot.h).
    roots_.record(entry.seq + 1, root, page_count);
    if (options_.test_hook) SWL_TRY(options_.test_hook(PrimaryHookPoint::after_log_append));
    return ok_status();
  };
  auto results = db_->run_entry(EntryInputs{entry.seq, entry.time_ms, entry.seed},
                                entry.statements, DeterministicDb::Mode::user,
                                /*collect_rows=*/true, on_commit);
  if (!results.ok()) {
    if (appended) {
      broken_ = true;
      fault_.failed(results.error());
      return make_error(results.error().code,
                        "entry {} was logged but SQLite's commit failed ({}); the entry is durable "
                        "and is applied from the log before the next write (retried with backoff)",
                        entry.seq, results.error().message);
    }
    if (is_local_fault(results.error())) fault_.failed(results.error());
    return results.take_error();
  }
  fault_.cleared();
  last_time_ms_ = entry.time_ms;
  roots_.record(log_->size(), entry.state_root, entry.page_count);

  ExecuteResult out;
  out.seq = entry.seq;
  out.time_ms = entry.time_ms;
  out.state_root = entry.state_root;
  out.page_count = entry.page_count;
  out.statements = std::move(results).value();
  if (options_.test_hook) SWL_TRY(options_.test_hook(PrimaryHookPoint::after_commit));
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
  return db_->state_tree().root();
}
uint32_t Primary::page_count() const {
  std::lock_guard lock(mu_);
  return db_->state_tree().page_count();
}
std::optional<Head> Primary::head() const {
  std::lock_guard lock(mu_);
  return log_->head();
}

Result<ProvedQuery> Primary::prove(std::string_view sql, const std::vector<Value>& params,
                                   const ProveOptions& options) {
  std::lock_guard lock(mu_);
  SWL_TRY(recover_locked());
  std::optional<Head> head = log_->head();
  if (!head || head->size != log_->size()) {
    SWL_ASSIGN(Head signed_head, sign_head_locked());
    head = signed_head;
  }
  return prove_query(db_path_, db_->state_tree(), *head, sql, params, options);
}

Result<ReadSnapshot> Primary::open_snapshot(const ReadCapture* capture) const {
  return swarmlite::open_snapshot(db_path_, roots_, capture);
}

}  // namespace swarmlite
