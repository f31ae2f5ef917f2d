// Verified log: LogStore + LogTree + newest signed head (core/log.h).
//
// Order of every replica update: verify the head's signature, compare it with the
// stored head (equivocation, staleness), decode every entry and check seq
// continuity, append the leaves to the tree tentatively and check the root (or the
// consistency proof) against the head — cutting the tree back on any failure —
// and only then write the entries (one fsync) and the head. So the store never
// holds an entry that did not verify, and a crash between the two writes leaves
// verified entries past the stored head, which open() accepts (the head still
// matches the tree at its own size).
#include "core/log.h"

#include <algorithm>
#include <bit>

#include "core/hash.h"

namespace swarmlite {

namespace {

std::string short_hex(const Hash32& h) { return to_hex(ByteView(h.data(), 8)) + "…"; }

}  // namespace

Result<std::unique_ptr<Log>> Log::open(const std::filesystem::path& dir, const PublicKey& log_id,
                                       LogStoreOptions options) {
  SWL_ASSIGN(auto store, LogStore::open(dir, options));
  std::unique_ptr<Log> log(new Log(log_id, std::move(store)));
  LogStore& s = *log->store_;
  if (auto cp = s.checkpoint()) SWL_TRY(log->start_at_checkpoint(*cp));
  // The leaf hashes in chunks (one pread of index rows each), not one by one.
  std::vector<Hash32> leaves;
  for (uint64_t i = s.first(), n = s.size(); i < n; i += leaves.size()) {
    leaves.resize(std::min<uint64_t>(n - i, 4096));
    SWL_TRY(s.leaf_hashes(i, leaves));
    log->tree_.append_many(leaves);
  }
  SWL_ASSIGN(std::optional<Bytes> head_bytes, s.load_head());
  if (!head_bytes) {
    SWL_TRY(log->check_checkpoint_head());
    log->publish();
    return log;
  }

  const std::string where = (dir / "head").string();
  auto head = decode_head(*head_bytes);
  if (!head.ok()) {
    return make_error(Errc::corrupt, "{}: stored head does not decode: {}", where,
                      head.error().to_string());
  }
  if (head->log_id != log_id) {
    return make_error(Errc::invalid_argument, "{}: the log in {} belongs to log id {}, opened as {}",
                      where, dir.string(), head->log_id.hex(), log_id.hex());
  }
  if (auto st = head->verify(log_id); !st.ok()) {
    return make_error(Errc::corrupt, "{}: stored head: {}", where, st.error().message);
  }
  if (head->size > log->size()) {
    return make_error(Errc::corrupt,
                      "{}: stored head covers {} entries but the store holds {}: acknowledged "
                      "entries are missing",
                      where, head->size, log->size());
  }
  SWL_ASSIGN(Hash32 root, log->tree_.root_at(head->size));
  if (root != head->log_root) {
    return make_error(Errc::corrupt,
                      "{}: stored head at size {} signs log root {}, the stored entries give {}",
                      where, head->size, short_hex(head->log_root), short_hex(root));
  }
  log->head_ = std::move(head).value();
  SWL_TRY(log->check_checkpoint_head());
  log->publish();
  return log;
}

Status Log::start_at_checkpoint(const LogCheckpoint& cp) {
  const std::string where = (store_->dir() / "checkpoint").string();
  if (cp.first_seq != store_->first()) {
    return make_error(Errc::internal, "{}: checkpoint at {}, store starts at {}", where,
                      cp.first_seq, store_->first());
  }
  SWL_ASSIGN(tree_, LogTree::at_checkpoint(leaf_reader(), cp.first_seq, cp.frontier));
  if (cp.head.empty()) return {};
  // The head it was taken under must be this log's and agree with the frontier
  // (checked once the kept leaves are in the tree; see open()).
  auto head = decode_head(cp.head);
  if (!head.ok()) {
    return make_error(Errc::corrupt, "{}: head does not decode: {}", where,
                      head.error().to_string());
  }
  if (auto st = head->verify(log_id_); !st.ok()) {
    return make_error(Errc::corrupt, "{}: head: {}", where, st.error().to_string());
  }
  if (head->size < cp.first_seq) {
    return make_error(Errc::corrupt, "{}: head at size {} is older than the checkpoint at {}",
                      where, head->size, cp.first_seq);
  }
  checkpoint_head_ = std::move(head).value();
  return {};
}

Result<std::unique_ptr<Log>> Log::create_at_checkpoint(const std::filesystem::path& dir,
                                                       const PublicKey& log_id, const Head& head,
                                                       std::span<const Hash32> frontier,
                                                       LogStoreOptions options) {
  SWL_TRY(head.verify(log_id));
  if (frontier.size() != static_cast<size_t>(std::popcount(head.size))) {
    return make_error(Errc::invalid_argument,
                      "the frontier of a log at size {} has {} hashes (one per set bit), got {}",
                      head.size, std::popcount(head.size), frontier.size());
  }
  if (LogTree::fold_frontier(frontier) != head.log_root) {
    return make_error(
        Errc::root_mismatch, "the frontier folds to log root {}, the head at size {} signs {}",
        short_hex(LogTree::fold_frontier(frontier)), head.size, short_hex(head.log_root));
  }
  LogCheckpoint cp;
  cp.first_seq = head.size;
  cp.frontier.assign(frontier.begin(), frontier.end());
  cp.head = encode_head(head);
  SWL_ASSIGN(auto store, LogStore::create_at(dir, cp, options));
  std::unique_ptr<Log> log(new Log(log_id, std::move(store)));
  SWL_TRY(log->start_at_checkpoint(cp));
  SWL_TRY(log->store_head_if_new(head));
  log->publish();
  return log;
}

Result<DropStats> Log::compact(uint64_t keep_from) {
  if (!head_ || keep_from > head_->size) {
    return make_error(Errc::refused,
                      "log {}: cannot compact up to entry {}: the stored head covers {} entries "
                      "(a checkpoint records a signed head at or past it)",
                      store_->dir().string(), keep_from, head_ ? head_->size : 0);
  }
  // The newest entry always stays: the primary and replicas check their
  // database against it on open.
  uint64_t want = std::max(keep_from, store_->first());
  if (size() > 0) want = std::min(want, size() - 1);
  const uint64_t f = store_->drop_point(want);
  if (f <= store_->first()) return DropStats{};
  LogCheckpoint cp;
  cp.first_seq = f;
  SWL_ASSIGN(cp.frontier, tree_.frontier(f));
  cp.head = encode_head(*head_);
  // The tree first: it reads leaves from its old base to compute the frontier
  // (again) and must never ask for one the store dropped. Should the store then
  // fail, the tree merely proves less than the store holds until reopened.
  SWL_TRY(tree_.forget_before(f));
  SWL_ASSIGN(DropStats stats, store_->drop_before(cp));
  checkpoint_head_ = head_;
  publish();
  return stats;
}

void Log::publish() {
  LogView v{size(), store_->first(), head_};
  std::lock_guard lock(view_mu_);
  view_ = std::move(v);
}

Result<Bytes> Log::entry_bytes(uint64_t seq) const { return store_->read(seq); }

Result<Entry> Log::entry(uint64_t seq) const {
  SWL_ASSIGN(Bytes bytes, store_->read(seq));
  auto e = decode_entry(bytes);
  if (!e.ok()) {
    return make_error(Errc::corrupt, "log {}: stored entry {} does not decode: {}",
                      store_->dir().string(), seq, e.error().to_string());
  }
  return e;
}

Result<std::vector<Entry>> Log::entries(uint64_t first, uint64_t max_count,
                                        size_t max_bytes) const {
  SWL_ASSIGN(std::vector<Bytes> records, store_->read_range(first, max_count, max_bytes));
  std::vector<Entry> out;
  out.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    auto e = decode_entry(records[i]);
    if (!e.ok()) {
      return make_error(Errc::corrupt, "log {}: stored entry {} does not decode: {}",
                        store_->dir().string(), first + i, e.error().to_string());
    }
    out.push_back(std::move(e).value());
  }
  return out;
}

Status Log::check_checkpoint_head() const {
  if (!checkpoint_head_) return {};
  const Head& h = *checkpoint_head_;
  const std::string where = (store_->dir() / "checkpoint").string();
  if (h.size > size()) {
    return make_error(Errc::corrupt, "{}: its head covers {} entries but the log holds {}", where,
                      h.size, size());
  }
  SWL_ASSIGN(Hash32 root, tree_.root_at(h.size));
  if (root != h.log_root) {
    return make_error(Errc::corrupt,
                      "{}: its head at size {} signs log root {}, the frontier and the kept "
                      "entries give {}",
                      where, h.size, short_hex(h.log_root), short_hex(root));
  }
  if (head_ && head_->size == h.size && head_->log_root != h.log_root) {
    return make_error(Errc::corrupt, "{}: its head and the stored head differ at size {}", where,
                      h.size);
  }
  return {};
}

Status Log::check_entries(std::span<const Bytes> encoded_entries, const EntryLimits& limits,
                          std::vector<Entry>* decoded, std::vector<Entry>* spare) const {
  if (decoded) decoded->reserve(encoded_entries.size());
  for (size_t i = 0; i < encoded_entries.size(); ++i) {
    uint64_t want = size() + i;
    const Bytes& bytes = encoded_entries[i];
    auto batch_error = [&](Error err) {
      err.message = fmt::format("entry {} of the batch (seq {}): {}", i, want, err.message);
      return err;
    };
    std::optional<Entry> entry;  // built only when kept; otherwise only checked (check_entry)
    uint64_t seq = 0;
    if (decoded) {
      if (spare && !spare->empty()) {
        entry.emplace(std::move(spare->back()));
        spare->pop_back();
      } else {
        entry.emplace();
      }
      if (Status st = decode_entry_into(bytes, *entry, limits); !st.ok()) {
        return batch_error(st.take_error());
      }
      seq = entry->seq;
    } else {
      if (Status st = check_entry(bytes, limits); !st.ok()) return batch_error(st.take_error());
      // Accepted, so the version is at 0 and the seq at 1 (docs/formats/entry.md).
      for (size_t b = 0; b < 8; ++b) seq = (seq << 8) | bytes[1 + b];
    }
    if (seq != want) {
      return make_error(Errc::bad_value, "entry {} of the batch has seq {}, expected {}", i, seq,
                        want);
    }
    if (entry) decoded->push_back(std::move(*entry));
  }
  return {};
}

namespace {
// What a decoded entry takes on the heap, roughly: the objects and their
// buffers (strings' and vectors' capacities), plus the allocator's overhead.
size_t entry_heap_bytes(const Entry& e) {
  constexpr size_t kAlloc = 16;  // malloc's header and rounding, per block
  size_t n = sizeof(Entry) + kAlloc + e.statements.capacity() * sizeof(Statement) + kAlloc;
  for (const Statement& st : e.statements) {
    n += st.sql.capacity() + kAlloc + st.params.capacity() * sizeof(Value) + kAlloc;
    for (const Value& v : st.params) {
      if (const auto* text = std::get_if<std::string>(&v.v)) {
        n += text->capacity() + kAlloc;
      } else if (const auto* blob = std::get_if<Bytes>(&v.v)) {
        n += blob->capacity() + kAlloc;
      }
    }
  }
  return n;
}
}  // namespace

void Log::keep_decoded(size_t cap_bytes) {
  std::lock_guard lock(decoded_mu_);
  decoded_cap_ = cap_bytes;
  if (cap_bytes == 0) {
    decoded_.clear();
    decoded_heap_ = 0;
    spare_.clear();
    spare_heap_ = 0;
  }
}

void Log::recycle_decoded(std::span<Entry> used) {
  std::lock_guard lock(decoded_mu_);
  for (Entry& e : used) {
    if (spare_.size() >= kMaxSpareEntries) return;
    const size_t h = entry_heap_bytes(e);
    if (spare_heap_ + h > decoded_cap_ / 4) continue;  // a large one: freed by the caller
    spare_heap_ += h;
    spare_.push_back(Decoded{std::move(e), 0, h});
  }
}

void Log::keep_batch(std::vector<Entry>& decoded, std::span<const Bytes> encoded_entries) {
  heap_scratch_.clear();
  size_t heap = 0;
  for (const Entry& e : decoded) {
    heap_scratch_.push_back(entry_heap_bytes(e));
    heap += heap_scratch_.back();
  }
  std::lock_guard lock(decoded_mu_);
  if (decoded_cap_ == 0 || decoded_heap_ + heap > decoded_cap_) return;
  // Entries are stored in order, so the kept ones stay in seq order; a batch
  // that did not fit earlier leaves a gap, which take_decoded steps over.
  for (size_t i = 0; i < decoded.size(); ++i) {
    decoded_.push_back(Decoded{std::move(decoded[i]), encoded_entries[i].size(), heap_scratch_[i]});
  }
  decoded_heap_ += heap;
}

std::vector<Entry> Log::take_decoded(uint64_t first, uint64_t max_count, size_t max_bytes) {
  std::vector<Entry> out;
  std::lock_guard lock(decoded_mu_);
  while (!decoded_.empty() && decoded_.front().entry.seq < first) {
    decoded_heap_ -= decoded_.front().heap;
    decoded_.pop_front();
  }
  if (decoded_.empty() || decoded_.front().entry.seq != first) return out;
  size_t bytes = 0;
  while (!decoded_.empty() && out.size() < max_count && (out.empty() || bytes < max_bytes) &&
         decoded_.front().entry.seq == first + out.size()) {
    bytes += decoded_.front().encoded;
    decoded_heap_ -= decoded_.front().heap;
    out.push_back(std::move(decoded_.front().entry));
    decoded_.pop_front();
  }
  return out;
}

size_t Log::decoded_bytes() const {
  std::lock_guard lock(decoded_mu_);
  return decoded_heap_;
}

Status Log::check_against_stored_head(const Head& head) const {
  if (!head_) return {};
  if (head.size == head_->size && head.log_root != head_->log_root) {
    return make_error(Errc::equivocation,
                      "log {} signed two heads at size {} with different log roots {} and {}",
                      log_id_.hex(), head.size, short_hex(head_->log_root), short_hex(head.log_root));
  }
  if (head.size < head_->size) {
    return make_error(Errc::refused, "head at size {} is older than the stored head at size {}",
                      head.size, head_->size);
  }
  return {};
}

Status Log::store_head_if_new(const Head& head) {
  if (head_ && *head_ == head) return {};
  SWL_TRY(store_->store_head(encode_head(head)));
  head_ = head;
  publish();
  return {};
}

Status Log::append(std::span<const Bytes> encoded_entries, EntryCheck check) {
  SWL_ASSIGN(std::vector<Hash32> leaves, own_leaves(encoded_entries, check));
  SWL_TRY(
      store_->append_batch(encoded_entries, leaves));  // hashed once, for the store and the tree
  tree_.append_many(leaves);
  publish();
  return {};
}

Status Log::append_write(std::span<const Bytes> encoded_entries, EntryCheck check) {
  SWL_ASSIGN(std::vector<Hash32> leaves, own_leaves(encoded_entries, check));
  SWL_TRY(store_->write_batch(encoded_entries, leaves));
  pending_leaves_ = std::move(leaves);
  return {};
}

Status Log::append_sync() {
  std::vector<Hash32> leaves = std::move(pending_leaves_);
  pending_leaves_.clear();
  SWL_TRY(store_->sync_batch());
  tree_.append_many(leaves);
  if (!leaves.empty()) publish();
  return {};
}

Result<std::vector<Hash32>> Log::own_leaves(std::span<const Bytes> encoded_entries,
                                            EntryCheck check) const {
  if (!pending_leaves_.empty()) {
    return make_error(Errc::internal, "log append: {} entries were written and not synced",
                      pending_leaves_.size());
  }
  if (check == EntryCheck::decode) {
    SWL_TRY(check_entries(encoded_entries, EntryLimits{}));
  } else {
    // The caller decoded these bytes: a cheap guard against handing over the
    // wrong ones (docs/formats/entry.md: version at 0, seq at 1, 53-byte
    // prefix, 36-byte trailer).
    constexpr size_t kSeqAt = 1, kMinBytes = 53 + 36;
    for (size_t i = 0; i < encoded_entries.size(); ++i) {
      const Bytes& e = encoded_entries[i];
      const uint64_t want = size() + i;
      if (e.size() < kMinBytes || e[0] != kEntryVersion) {
        return make_error(Errc::bad_value,
                          "entry {} of the batch (seq {}): not an entry ({} bytes, version {})", i,
                          want, e.size(), e.empty() ? 0 : int{e[0]});
      }
      uint64_t seq = 0;
      for (size_t b = 0; b < 8; ++b) seq = (seq << 8) | e[kSeqAt + b];
      if (seq != want) {
        return make_error(Errc::bad_value, "entry {} of the batch has seq {}, expected {}", i, seq,
                          want);
      }
    }
  }
  std::vector<Hash32> leaves(encoded_entries.size());
  hash_leaves(encoded_entries, leaves);  // = entry_leaf_hash of each
  return leaves;
}

Status Log::set_head(const Head& head) {
  SWL_TRY(head.verify(log_id_));
  SWL_TRY(check_against_stored_head(head));
  if (head.size > size()) {
    return make_error(Errc::invalid_argument, "head covers {} entries, the log holds {}", head.size,
                      size());
  }
  SWL_ASSIGN(Hash32 root, tree_.root_at(head.size));
  if (root != head.log_root) {
    return make_error(Errc::root_mismatch, "head at size {} signs log root {}, the log has {}",
                      head.size, short_hex(head.log_root), short_hex(root));
  }
  return store_head_if_new(head);
}

Result<Head> Log::sign_head(const SecretKey& key, const Hash32& state_root,
                            uint32_t page_count, int64_t time_ms) {
  if (key.public_key() != log_id_) {
    return make_error(Errc::invalid_argument, "sign_head: key {} does not sign log {}",
                      key.public_key().hex(), log_id_.hex());
  }
  Head head = unsigned_head(state_root, page_count, time_ms);
  head.sign_with(key);
  SWL_TRY(store_head_if_new(head));
  return head;
}

Head Log::unsigned_head(const Hash32& state_root, uint32_t page_count, int64_t time_ms) const {
  Head head;
  head.log_id = log_id_;
  head.size = size();
  head.log_root = root();
  head.state_root = state_root;
  head.page_count = page_count;
  head.time_ms = time_ms;
  return head;
}

Result<bool> Log::store_own_head(const Head& head) {
  if (head.log_id != log_id_ || head.size > size()) {
    return make_error(Errc::invalid_argument,
                      "store_own_head: a head of log {} at size {} is not one of log {} (size {})",
                      head.log_id.hex(), head.size, log_id_.hex(), size());
  }
  if (head_ && head.size <= head_->size) return false;
  SWL_TRY(store_head_if_new(head));
  return true;
}

Status Log::extend(std::span<const Bytes> encoded_entries, const Head& head,
                   std::span<const Hash32> consistency_proof, const EntryLimits& limits) {
  SWL_TRY(head.verify(log_id_));
  SWL_TRY(check_against_stored_head(head));
  const uint64_t old_size = size();
  const uint64_t new_size = old_size + encoded_entries.size();
  if (head.size < new_size) {
    return make_error(Errc::bad_value, "head covers {} entries, fewer than the {} the log would hold",
                      head.size, new_size);
  }
  std::vector<Entry>& decoded = decode_scratch_;  // kept for take_decoded() once stored, if wanted
  std::vector<Entry>& spare = spare_scratch_;     // recycle_decoded's entries to decode into
  decoded.clear();
  spare.clear();
  bool keep;
  {
    std::lock_guard lock(decoded_mu_);
    keep = decoded_cap_ > 0;
    if (keep && !spare_.empty()) {
      // As many as the batch needs, from the back (the last handed back).
      const size_t n = std::min(spare_.size(), encoded_entries.size());
      spare.reserve(n);
      for (size_t i = spare_.size() - n; i < spare_.size(); ++i) {
        spare_heap_ -= spare_[i].heap;
        spare.push_back(std::move(spare_[i].entry));
      }
      spare_.resize(spare_.size() - n);
    }
  }
  SWL_TRY(check_entries(encoded_entries, limits, keep ? &decoded : nullptr, &spare));

  // Hashed once, for the tree and the store (= entry_leaf_hash of each).
  std::vector<Hash32> leaves(encoded_entries.size());
  hash_leaves(encoded_entries, leaves);
  tree_.append_many(leaves);
  // Cutting the tree back re-reads the leaves of its last block from the store
  // (core/log_tree.h); should that read fail, the tree no longer matches the
  // store: say so, the caller must reopen the log.
  auto undo = [&](Error e) -> Error {
    if (auto st = tree_.truncate(old_size); !st.ok()) {
      e.message = fmt::format("{}; and the log tree could not be cut back to {} entries ({}): "
                              "reopen the log", e.message, old_size, st.error().to_string());
    }
    return e;
  };
  Status linked;
  if (head.size == new_size) {
    // The head signs exactly the extended tree (verify_consistency would accept
    // any root for an empty tree, so compare here).
    if (!consistency_proof.empty()) {
      linked = make_error(Errc::proof_failed, "the head covers exactly the new entries, yet a "
                          "consistency proof of {} hashes came with them", consistency_proof.size());
    } else if (tree_.root() != head.log_root) {
      linked = make_error(Errc::root_mismatch, "head signs log root {}, the entries give {}",
                          short_hex(head.log_root), short_hex(tree_.root()));
    }
  } else {
    linked = verify_consistency(new_size, head.size, tree_.root(), head.log_root, consistency_proof);
  }
  if (!linked.ok()) {
    Error e = linked.take_error();
    e.message = fmt::format("entries [{}, {}) do not lead to the head at size {}: {}", old_size,
                            new_size, head.size, e.message);
    return undo(std::move(e));
  }
  if (auto st = store_->append_batch(encoded_entries, leaves); !st.ok()) return undo(st.take_error());
  // The entries are stored and synced: readers of view() may replay them. A
  // failure to store the head leaves them stored (and visible), as before.
  if (keep) keep_batch(decoded, encoded_entries);
  decoded.clear();  // what keep_batch did not keep (its capacity stays for the next batch)
  spare.clear();
  publish();
  if (head.size == new_size) SWL_TRY(store_head_if_new(head));
  return {};
}

Status Log::append_verified(std::span<const Bytes> encoded_entries, const Head& head,
                            const EntryLimits& limits) {
  // Signature first: an unsigned head's size means nothing.
  SWL_TRY(head.verify(log_id_));
  SWL_TRY(check_against_stored_head(head));
  if (head.size != size() + encoded_entries.size()) {
    return make_error(Errc::bad_value, "head covers {} entries; the log holds {} and {} arrived",
                      head.size, size(), encoded_entries.size());
  }
  return extend(encoded_entries, head, {}, limits);
}

Status Log::append_proven(std::span<const Bytes> encoded_entries, const Head& head,
                          std::span<const Hash32> consistency_proof, const EntryLimits& limits) {
  return extend(encoded_entries, head, consistency_proof, limits);
}

}  // namespace swarmlite
