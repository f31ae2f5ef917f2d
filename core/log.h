// A verified log: the LogStore, the log tree over its entries, and the newest
// signed head. The primary appends its own entries; replicas append entries
// they received only after they verify against a signed head (append_verified).
// Invariant: every stored entry decodes, seq == position, and the stored head
// (if any) verifies under log_id and its log_root == tree root at head.size.
// Entries past head.size may exist (appended, head not yet signed or stored).
//
// Errors: bad_signature (head not signed by log_id), equivocation (a head at the
// stored head's size with another root: the caller builds Evidence from both),
// refused (a head older than the stored one), root_mismatch / proof_failed (the
// entries do not lead to the head), bad_value (sizes or seqs do not line up),
// decode errors of an entry prefixed with its batch position and seq.
//
// Thread-safety: not synchronized. One thread (or external serialization) for
// everything, except entry_bytes(), entry(), entries() and entry_bytes_range(),
// which read only the store and may run beside one writer (LogStore's rule), and
// view(), keep_decoded(), take_decoded(), decoded_bytes(), recycle_decoded():
// any thread, any time.
#pragma once

#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "core/entry.h"
#include "core/head.h"
#include "core/log_store.h"
#include "core/log_tree.h"
#include "core/merkle.h"

namespace swarmlite {

// What view() returns: the log's size, first entry and newest stored head as
// of its last completed write.
struct LogView {
  uint64_t size = 0;
  uint64_t first = 0;
  std::optional<Head> head;
};

class Log {
 public:
  // Opens or creates the log in DIR for the log id. Rebuilds the tree from the
  // store's leaf hashes; checks the stored head against it.
  static Result<std::unique_ptr<Log>> open(const std::filesystem::path& dir, const PublicKey& log_id,
                                           LogStoreOptions options = {});
  // A bootstrapping peer (docs/formats/log-store.md "Checkpoint and compaction"):
  // creates DIR as an empty log at `head` — size() == head.size, no entry held —
  // from the log tree frontier at head.size (e.g. from a snapshot's provider).
  // Verifies head's signature under log_id and that the frontier folds to
  // head.log_root (root_mismatch; invalid_argument for a frontier of the wrong
  // length) before anything is written. Entries from head.size on are then
  // appended with append_verified / append_proven as usual.
  static Result<std::unique_ptr<Log>> create_at_checkpoint(const std::filesystem::path& dir,
                                                           const PublicKey& log_id, const Head& head,
                                                           std::span<const Hash32> frontier,
                                                           LogStoreOptions options = {});

  const PublicKey& log_id() const { return log_id_; }
  uint64_t size() const { return tree_.size(); }
  // The log tree: its nodes below the top levels are recomputed from the
  // store's leaf hashes (core/log_tree.h), so proofs read the index files.
  const LogTree& tree() const { return tree_; }
  Hash32 root() const { return tree_.root(); }
  const std::optional<Head>& head() const { return head_; }
  // size(), first_entry() and head() as of the last write that completed (its
  // entries stored and synced, its head stored): a copy taken under a mutex of
  // the view's own, which no write holds across I/O, so a reader — the
  // replica's apply thread, the node's io threads — never waits for a store's
  // fsync to learn how far the log goes (docs/protocol.md "Threads and
  // locks"). Any thread, beside the writer. During a write, size() already
  // counts entries still being stored; view().size never does.
  LogView view() const {
    std::lock_guard lock(view_mu_);
    return view_;
  }
  // First entry held: 0 unless compacted or created at a checkpoint. Entries,
  // inclusion proofs and consistency proofs from a size below it are not_found.
  uint64_t first_entry() const { return store_->first(); }
  // The checkpoint record the log starts at, if any (what it can show an
  // auditor about what it dropped).
  std::optional<LogCheckpoint> checkpoint() const { return store_->checkpoint(); }
  // Drops the entries before keep_from, whole segments at a time: the log then
  // starts at the first seq of the segment holding keep_from (<= keep_from; the
  // segment holding the newest entry is always kept; nothing happens when that
  // is not past first_entry()). Returns what was dropped. Policy-free: a retention policy calls it
  // with size() - retain now and then. Needs a stored head of size >= keep_from
  // (refused otherwise): the checkpoint records it with the frontier at the new
  // start. Not to be run while entry()/entry_bytes() callers rely on the
  // dropped entries (they get not_found, which they must handle anyway).
  Result<DropStats> compact(uint64_t keep_from);

  Result<Bytes> entry_bytes(uint64_t seq) const;
  // Encoded entries first, first + 1, ... as LogStore::read_range reads them
  // (at most max_count, stopping once max_bytes is reached, at least one).
  Result<std::vector<Bytes>> entry_bytes_range(uint64_t first, uint64_t max_count,
                                               size_t max_bytes) const {
    return store_->read_range(first, max_count, max_bytes);
  }
  Result<Entry> entry(uint64_t seq) const;
  // Entries first, first + 1, ...: at most max_count, and no more once their
  // encoded bytes reach max_bytes (at least one). LogStore::read_range: one
  // read of the store per segment instead of one per entry. not_found when
  // `first` is not held.
  Result<std::vector<Entry>> entries(uint64_t first, uint64_t max_count, size_t max_bytes) const;

  // Primary: appends already-encoded entries (seq must continue the log), one fsync.
  // Each is decoded first (decode_entry, default limits) unless the caller says
  // it already did that check on these very bytes (EntryCheck::by_caller, the
  // primary's loggability check): then only the version byte, the length of
  // the fixed prefix and trailer, and the seq are checked.
  enum class EntryCheck { decode, by_caller };
  Status append(std::span<const Bytes> encoded_entries, EntryCheck check = EntryCheck::decode);
  // append() in two steps (LogStore::write_batch / sync_batch): append_write
  // checks and writes the entries and starts their write to the disk;
  // append_sync makes them durable and appends them (size(), the tree,
  // view()). Between the two nothing may use the Log but its readers, which
  // do not see the entries. A failed append_sync appends nothing (and the
  // store then refuses appends, as after any failed fsync).
  Status append_write(std::span<const Bytes> encoded_entries,
                      EntryCheck check = EntryCheck::decode);
  Status append_sync();
  // Stores a newer head. Verifies signature and log id, head.size <= size(),
  // head.log_root == tree root at head.size, and head.size >= current head's size.
  Status set_head(const Head& head);
  // Primary: builds the head of the whole log (size(), root(), the given state),
  // signs it with `key` and stores it. invalid_argument when key is not log_id's.
  // Unlike set_head, no signature verification (an Ed25519 verify costs more than
  // the sign): the head is made here, from this log's own tree, so it cannot
  // disagree with it or with an earlier head (the log only grows).
  Result<Head> sign_head(const SecretKey& key, const Hash32& state_root, uint32_t page_count,
                         int64_t time_ms);
  // sign_head in two steps: the unsigned head of the whole log as it is now
  // (size(), root(), the given state, log_id), to be signed by the caller
  // with no lock held, then stored by store_own_head(). A primary signing off
  // its write path (PrimaryOptions::sign_in_background) builds its head from
  // the size and root() it published when SQLite had committed that size,
  // and stores it so. store_own_head takes only a head made on this log, at
  // a size it held, and signed with its key (not verified, like sign_head's);
  // one not newer than the stored head — another head was signed meanwhile —
  // is not stored: false. invalid_argument for another log's id or a size
  // past the log's.
  Head unsigned_head(const Hash32& state_root, uint32_t page_count, int64_t time_ms) const;
  Result<bool> store_own_head(const Head& head);

  // Replica: entries [size(), size()+n) received from anyone, and the head they
  // lead to. Verifies the head, decodes every entry (seq continuity), checks the
  // root over the extended tree equals head.log_root and head.size == size()+n —
  // only then appends (one fsync) and stores the head. On any failure nothing is
  // stored and the error says which entry or field failed.
  Status append_verified(std::span<const Bytes> encoded_entries, const Head& head,
                         const EntryLimits& limits = {});

  // Replica, batched catch-up: entries [size(), size()+n) that are a prefix of
  // the log `head` signs (head.size >= size()+n), proven by a consistency proof
  // from size()+n to head.size against head.log_root (when head.size == size()+n
  // the proof is empty and this is append_verified). Verifies the head, decodes
  // every entry (seq continuity), checks the proof; only then appends (one
  // fsync). Stores the head only when it covers exactly the new size.
  Status append_proven(std::span<const Bytes> encoded_entries, const Head& head,
                       std::span<const Hash32> consistency_proof,
                       const EntryLimits& limits = {});

  // Decode once (docs/performance.md "Decode once"). After keep_decoded(cap)
  // with cap > 0, append_verified and append_proven keep the entries they
  // decoded to check them — once stored and synced — for take_decoded(): the
  // replica's apply thread replays them without reading them back from the
  // store, re-hashing and decoding them again. At most `cap` bytes (estimated
  // heap) are kept: a batch that does not fit is not kept, and its entries are
  // read from the store as before. 0 (the default) keeps nothing and drops
  // what is kept. Any thread; a mutex of its own, never held across I/O.
  void keep_decoded(size_t cap_bytes);
  // Kept entries first, first + 1, ..., moved out (each is handed out once):
  // at most max_count, and no more once their encoded bytes reach max_bytes
  // (at least one). Kept entries before `first` are dropped; empty when the
  // oldest kept entry is not `first`. Every entry handed out is stored, but
  // may still be past view().size: callers ask only below it.
  std::vector<Entry> take_decoded(uint64_t first, uint64_t max_count, size_t max_bytes);
  // Estimated heap bytes of the kept entries (memory_bytes() does not count them).
  size_t decoded_bytes() const;
  // Entries take_decoded handed out, replayed and handed back (moved from
  // `used`): the next batches are decoded into them (decode_entry_into), so
  // the storing thread reuses their buffers instead of allocating, and the
  // replaying thread does not free blocks another thread allocated (glibc's
  // free of them was a sixth of a catch-up's apply thread; docs/performance.md
  // "Decoded entries handed back"). At most kMaxSpareEntries entries and a
  // quarter of the keep_decoded cap are held; the rest are freed by the caller.
  // Any thread; nothing is held while keep_decoded is 0.
  void recycle_decoded(std::span<Entry> used);
  static constexpr size_t kMaxSpareEntries = 8192;

  // Heap bytes the log keeps (tree and store; the head is not counted): a few
  // hundred per segment plus ≈ 0.25 byte per entry (docs/operations.md "Memory").
  size_t memory_bytes() const { return tree_.memory_bytes() + store_->memory_bytes(); }

  // Proof helpers for serving others.
  Result<std::vector<Hash32>> consistency_proof(uint64_t m, uint64_t n) const {
    return tree_.consistency_proof(m, n);
  }

 private:
  Log(PublicKey id, std::unique_ptr<LogStore> store)
      : log_id_(id),
        store_(std::move(store)),
        tree_([s = store_.get()](uint64_t first, std::span<Hash32> out) {
          return s->leaf_hashes(first, out);
        }) {}
  // append / append_write: checks the primary's own entries as `check` says
  // (and that no written batch waits for append_sync); their leaf hashes.
  Result<std::vector<Hash32>> own_leaves(std::span<const Bytes> encoded_entries,
                                         EntryCheck check) const;
  // Decodes each entry under `limits` and checks seq == size() + i; the
  // decoded entries go to `decoded` when it is not null, decoded into the
  // entries of `spare` (taken from its back) while it has some.
  Status check_entries(std::span<const Bytes> encoded_entries, const EntryLimits& limits,
                       std::vector<Entry>* decoded = nullptr,
                       std::vector<Entry>* spare = nullptr) const;
  // extend(): keeps the batch's decoded entries for take_decoded(), if they fit.
  void keep_batch(std::vector<Entry>& decoded, std::span<const Bytes> encoded_entries);
  // equivocation: same size as the stored head, another root; refused: older.
  Status check_against_stored_head(const Head& head) const;
  Status store_head_if_new(const Head& head);
  // append_verified / append_proven: verify everything, then store.
  Status extend(std::span<const Bytes> encoded_entries, const Head& head,
                std::span<const Hash32> consistency_proof, const EntryLimits& limits);
  LogTree::LeafReader leaf_reader() const {
    return [s = store_.get()](uint64_t first, std::span<Hash32> out) {
      return s->leaf_hashes(first, out);
    };
  }
  // Checks the checkpoint's head and starts the tree at it (open).
  Status start_at_checkpoint(const LogCheckpoint& cp);
  // The checkpoint's head against the tree (once its leaves are in).
  Status check_checkpoint_head() const;
  // Copies size(), first_entry() and head_ into view_: at the end of every
  // write that changes one of them.
  void publish();
  PublicKey log_id_;
  std::unique_ptr<LogStore> store_;
  LogTree tree_;  // its reader reads store_'s leaf hashes
  std::optional<Head> head_;
  std::optional<Head> checkpoint_head_;  // the head in the checkpoint record
  mutable std::mutex view_mu_;             // guards view_ only; never held across I/O
  LogView view_;
  std::vector<Hash32> pending_leaves_;  // append_write's entries, until append_sync
  struct Decoded {
    Entry entry;
    size_t encoded = 0;  // bytes of its encoding (take_decoded's max_bytes)
    size_t heap = 0;     // estimated heap bytes (the cap)
  };
  mutable std::mutex decoded_mu_;  // guards the five below; never held across I/O
  std::deque<Decoded> decoded_;
  size_t decoded_heap_ = 0;
  size_t decoded_cap_ = 0;
  std::vector<Decoded> spare_;  // recycle_decoded's, for extend to decode into
  size_t spare_heap_ = 0;       // their estimated heap bytes
  // extend()'s per-batch vectors (the writer's only), kept with their
  // capacity: a 4,096-entry batch's were half a megabyte each, allocated and
  // page-faulted in again for every batch.
  std::vector<Entry> decode_scratch_;
  std::vector<Entry> spare_scratch_;
  std::vector<size_t> heap_scratch_;
};

}  // namespace swarmlite
