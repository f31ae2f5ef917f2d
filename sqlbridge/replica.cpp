#include "sqlbridge/replica.h"

#include "sqlbridge/db_lock.h"
#include "sqlbridge/genesis.h"

namespace swarmlite {

Result<std::unique_ptr<Replica>> Replica::open(const std::filesystem::path& db_path,
                                               const std::filesystem::path& log_dir,
                                               const PublicKey& log_id, ReplicaOptions options) {
  std::unique_ptr<Replica> r(new Replica());
  r->db_path_ = db_path;
  SWL_ASSIGN(r->lock_fd_, lock_database(db_path));
  SWL_ASSIGN(r->log_, Log::open(log_dir, log_id, options.log_options));
  if (r->log_->size() > 0) {
    SWL_ASSIGN(Entry genesis, r->log_->entry(0));
    SWL_TRY(check_genesis(genesis));
  }
  SWL_ASSIGN(r->db_, DeterministicDb::open(db_path));
  SWL_ASSIGN(uint64_t applied, r->db_->read_applied_size());
  if (applied > r->log_->size()) {
    return make_error(Errc::diverged,
                      "replica {} has {} entries applied but its log {} holds only {}: the database "
                      "is ahead of its log",
                      db_path.string(), applied, log_dir.string(), r->log_->size());
  }
  const StateTree& tree = r->db_->state_tree();
  if (applied > 0) {
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
  return r;
}

Replica::~Replica() {
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
    Entry entry;
    {
      std::lock_guard log_lock(log_mu_);
      uint64_t end = std::min(log_->size(), up_to);
      if (size() >= end) break;
      SWL_ASSIGN(entry, log_->entry(size()));
    }
    SWL_TRY(apply_locked(entry));
    ++applied;
  }
  SWL_TRY(check_head_locked());
  return applied;
}

Status Replica::check_head_locked() {
  std::optional<Head> head;
  {
    std::lock_guard log_lock(log_mu_);
    head = log_->head();
  }
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
  return ok_status();
}

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
std::optional<Error> Replica::diverged() const {
  std::lock_guard lock(mu_);
  return diverged_;
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
  std::lock_guard apply_lock(apply_mu_);
  if (auto c = corruption()) {
    return make_error(Errc::corrupt, "{}", c->message);
  }
  if (auto d = diverged()) {
    return make_error(Errc::unavailable, "replica {} diverged, it serves no proofs: {}",
                      db_path_.string(), d->to_string());
  }
  std::optional<Head> head;
  {
    std::lock_guard log_lock(log_mu_);
    head = log_->head();
  }
  uint64_t applied = size();
  if (!head) {
    return make_error(Errc::unavailable, "replica {}: no signed head yet, cannot prove", db_path_.string());
  }
  if (head->size != applied) {
    return make_error(Errc::unavailable,
                      "replica {}: applied {} entries but the newest signed head covers {}; "
                      "retry once it caught up",
                      db_path_.string(), applied, head->size);
  }
  auto proved = prove_query(db_path_, db_->state_tree(), *head, sql, params, options);
  if (!proved.ok() && proved.error().code == Errc::corrupt) {
    // Under the apply lock nothing else writes the file: a page that differs is corruption.
    std::lock_guard lock(mu_);
    corrupted_ = proved.error();
  }
  return proved;
}

Result<ReadSnapshot> Replica::open_snapshot(const ReadCapture* capture) const {
  return swarmlite::open_snapshot(db_path_, roots_, capture);
}

}  // namespace swarmlite
