// One pin of a signed head and the change history across pins, shared by
// Replica and Primary (docs/light-client.md "Page service", "Head moves").
//
// A pin is a PinnedProver (read transactions plus a copy of the state tree at
// the head) and the PinnedPages that read its state straight from the files
// (pinned_pages.h). At each pin that moves the head, the slot merges the live
// state tree's change journal since the pin before (StateTree::changes_since,
// docs/formats/state-tree.md "Change journal") into one record: GetChanges
// from a head the slot pinned is answered from those records.
//
// The slot owns the mechanics; its owner keeps the policy: WHEN to pin (under
// its writer lock, with Repin), what refuses a request (corrupt, diverged,
// stopping: PinSlotHooks::admit), whether a request may pin now
// (PinSlotHooks::request_pin) and where corruption is latched.
//
// Thread-safety and lock order. The slot has one mutex, the slot lock.
// - The owner's pinning thread holds its writer lock (Replica: apply_mu_;
//   Primary: write_mu_, with its mu_ released) and takes the slot lock through
//   begin_repin(): owner writer lock → slot lock. The live StateTree given to
//   Repin::pin is the one that writer lock guards.
// - Requests (pin_for and what is built on it: pages, leaves, changes) and
//   the accessors may be called from any thread holding none of the owner's
//   locks. They never hold the slot lock while calling a hook: request_pin
//   may take the owner's writer lock (and then the slot lock, through
//   begin_repin). Hooks must not be called back into with the slot lock held
//   either: no hook is ever called from Repin.
// - While a Repin is held, requests wait for the new pin rather than find
//   none (the old one is dropped first, see Repin::drop).
// - The slot lock is held only for short work (copying shared_ptrs, merging
//   history records) by requests; by Repin for the pin's setup.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/head.h"
#include "core/result.h"
#include "sqlbridge/engine/page_set.h"
#include "sqlbridge/engine/pinned_pages.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/proof/prover.h"

namespace swarmlite {

struct PinSlotOptions {
  // Who answers, as messages start: "replica /data/r.db".
  std::string owner;
  // Said after "no pinned head to serve pages from" (e.g. when one comes).
  std::string no_pin_hint;
  // A request asking for the newest head re-pins at most this often.
  std::chrono::milliseconds pin_interval{200};
  // The change history (docs/light-client.md "Head moves"): at most this many
  // pins back and this many old leaves in all, the oldest dropped first.
  size_t change_history_pins = 1024;
  size_t change_history_leaves = size_t{1} << 18;
};

// The owner's policy, called by requests with no slot lock held (any thread).
struct PinSlotHooks {
  // Refuses a request before anything else (corrupt, diverged, stopping), or ok.
  std::function<Status()> admit;
  // The size of the newest signed head the owner could pin now (nullopt: none).
  std::function<std::optional<uint64_t>()> newest_head;
  // A request wants a newer pin and one is due (renew_due): pin now if the
  // owner's writer lock can be had (begin_repin), else leave it to the owner's
  // next pin. `have_pin`: false when nothing is pinned yet. True if it pinned.
  std::function<bool(bool have_pin)> request_pin;
  // A page read from the pinned files differed from the pin's tree: latch it
  // (the files are that state while the pin lives, pinned_pages.h).
  std::function<void(const Error&)> latch_corrupt;
};

class PinSlot {
 public:
  struct Pin {
    std::shared_ptr<PinnedProver> prover;      // null: nothing pinned
    std::shared_ptr<const PinnedPages> pages;  // null when they could not be set up
  };

  PinSlot(PinSlotOptions options, PinSlotHooks hooks);
  PinSlot(const PinSlot&) = delete;
  PinSlot& operator=(const PinSlot&) = delete;

  // The owner's pinning thread, under its writer lock (lock order above):
  // holds the slot lock while it lives.
  class Repin {
   public:
    bool has_pin() const { return slot_->pin_.prover != nullptr; }
    uint64_t pinned_size() const;  // 0: nothing pinned
    // Whether pin_interval has passed since the pin was taken at `now`.
    bool interval_passed(std::chrono::steady_clock::time_point now) const;
    // Lets go of the pin (requests in flight keep theirs alive), so that a
    // checkpoint run next can copy the whole WAL (pinned_pages.h).
    void drop();
    // Pins `head`, which `tree` (the owner's live tree: its journal feeds the
    // history) holds exactly, with `connections` read connections on
    // `db_path`. Call right after the last commit, with no writer or
    // checkpoint between (PinnedPages::open). Records the changes since the
    // previous pin (a gap, where the journal no longer reaches back, clears
    // the history). A failure is kept for messages (pin_error) and leaves
    // nothing pinned; pages that could not be set up leave the prover pinned
    // without pages.
    void pin(const std::filesystem::path& db_path, const StateTree& tree, const Head& head,
             size_t connections, std::chrono::steady_clock::time_point now);

   private:
    friend class PinSlot;
    explicit Repin(PinSlot& slot) : slot_(&slot), lock_(slot.mu_) {}
    PinSlot* slot_;
    std::unique_lock<std::mutex> lock_;
  };
  Repin begin_repin() { return Repin(*this); }

  // The pin to answer a request for head `size` from (0: the newest). Calls
  // admit first; an older pin than the owner's newest signed head (or than
  // `size`) asks request_pin when due (renew_due). not_found "head N gone,
  // newest is M" / "not pinned yet" with *newest = M (HeadGone{M}) when
  // `size` is not the pinned head; unavailable when nothing is pinned.
  Result<Pin> pin_for(uint64_t size, uint64_t* newest) const;
  // GetPages (docs/light-client.md "Page service"): pages `pgnos`
  // (check_pgnos, kMaxPagesPerRequest) at pin_for(size), read from the pinned
  // files, with their multiproof. unavailable when the pin has no pages;
  // corrupt (latched, latch_corrupt) when the files hold other bytes.
  Result<PageSet> pages(uint64_t size, std::span<const uint32_t> pgnos, uint64_t* newest) const;
  // GetLeaves: the leaves of `pgnos` (kMaxLeavesPerRequest) from the pin's
  // tree (no file read), with their multiproof.
  Result<LeafSet> leaves(uint64_t size, std::span<const uint32_t> pgnos, uint64_t* newest) const;
  // GetChanges (page_set.h ChangeSet): the pages changed from the pinned head
  // of size `from_size` to pin_for(to_size). invalid_argument past the pin;
  // refused when from_size is not a pin the history reaches back to (or the
  // history does not reach the pin); too_large past kMaxChangedPages.
  Result<ChangeSet> changes(uint64_t from_size, uint64_t to_size, uint64_t* newest) const;

  // Without pinning, any thread:
  Pin current() const;
  uint64_t pinned_size() const;  // 0: nothing pinned
  // The newest pin's pages (null if none): holding them keeps that pin's read
  // transactions open (checkpoints cannot pass them).
  std::shared_ptr<const PinnedPages> page_source() const;
  // Sizes the history reaches back to, oldest first, the pin's last (tests).
  std::vector<uint64_t> history_sizes() const;
  // Why the last pin failed (nullopt: it did not).
  std::optional<std::string> pin_error() const;
  // Whether a request for head `wanted` (0: any) makes a new pin due: nothing
  // pinned, the pin below `wanted`, or pin_interval passed since it was taken.
  bool renew_due(uint64_t wanted) const;
  // Drops the pin (the owner's destructor: its read connections close before
  // the owner's write connection). The history stays.
  void clear();

 private:
  // The changes from the previous pin to `head_size` (slot lock held).
  void record_changes(const StateTree& tree, uint64_t head_size);

  const PinSlotOptions options_;
  const PinSlotHooks hooks_;
  mutable std::mutex mu_;  // the slot lock: guards every field below
  Pin pin_;
  std::chrono::steady_clock::time_point pinned_at_{};
  std::optional<std::string> pin_error_;        // why the last pin failed
  std::optional<std::string> pin_pages_error_;  // why its pages could not be set up
  PinnedWalCursor wal_cursor_;                  // carried from pin to pin
  // Per pin that moved the head: the pages the journal says were set or cut
  // since the pin before, with their leaves there. Contiguous (each record's
  // from_size is the to_size of the one before); capped by the options.
  struct PinChanges {
    uint64_t from_size = 0;
    uint64_t to_size = 0;
    StateTree::Changes changes;
  };
  std::deque<PinChanges> history_;
  size_t history_leaves_ = 0;
  // The last pin's head size and StateTree::applied() then.
  std::optional<std::pair<uint64_t, uint64_t>> last_pin_at_;
};

}  // namespace swarmlite
