// One pin and its change history (pin_slot.h has the contracts and lock order).
#include "sqlbridge/engine/pin_slot.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace swarmlite {
namespace {

// Whether a request for head `size` (0: the newest pinned) is answered at the
// pin of size `pinned`: not_found "head N gone, newest is M" (or "not pinned
// yet") otherwise, with *newest (if given) set to `pinned` (HeadGone{M}).
Status check_pinned_size(uint64_t size, uint64_t pinned, uint64_t* newest) {
  if (size == 0 || size == pinned) return ok_status();
  if (newest) *newest = pinned;
  return make_error(Errc::not_found, "head {} {}, newest is {}", size,
                    size < pinned ? "gone" : "not pinned yet", pinned);
}

}  // namespace

PinSlot::PinSlot(PinSlotOptions options, PinSlotHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)) {}

uint64_t PinSlot::Repin::pinned_size() const {
  return slot_->pin_.prover ? slot_->pin_.prover->head().size : 0;
}

bool PinSlot::Repin::interval_passed(std::chrono::steady_clock::time_point now) const {
  return now - slot_->pinned_at_ >= slot_->options_.pin_interval;
}

void PinSlot::Repin::drop() { slot_->pin_ = {}; }

void PinSlot::Repin::pin(const std::filesystem::path& db_path, const StateTree& tree,
                         const Head& head, size_t connections,
                         std::chrono::steady_clock::time_point now) {
  PinSlot& s = *slot_;
  s.pin_ = {};
  auto tree_copy = std::make_shared<const StateTree>(tree);
  auto prover = PinnedProver::open(db_path, tree_copy, head, connections);
  if (!prover.ok()) {
    s.pin_error_ = prover.error().to_string();
    return;
  }
  s.pin_error_.reset();
  s.pin_.prover = std::shared_ptr<PinnedProver>(std::move(prover).value());
  s.pinned_at_ = now;
  s.record_changes(tree, head.size);
  // Right after the pin's read transactions began, under the owner's writer
  // lock: what PinnedPages needs to read the pinned state (pinned_pages.h).
  auto pages = PinnedPages::open(db_path, tree_copy, s.pin_.prover, &s.wal_cursor_);
  if (pages.ok()) {
    s.pin_.pages = std::move(pages).value();
    s.pin_pages_error_.reset();
  } else {
    s.pin_pages_error_ = pages.error().to_string();
  }
}

void PinSlot::record_changes(const StateTree& tree, uint64_t head_size) {
  if (last_pin_at_ && last_pin_at_->first < head_size) {
    auto changes = tree.changes_since(last_pin_at_->second);
    if (changes) {
      history_leaves_ += changes->old_leaves.size();
      history_.push_back({last_pin_at_->first, head_size, std::move(*changes)});
      while (history_.size() > options_.change_history_pins ||
             history_leaves_ > options_.change_history_leaves) {
        history_leaves_ -= history_.front().changes.old_leaves.size();
        history_.pop_front();
      }
    } else {
      // The journal lost applies since the last pin (a long catch-up, or one
      // huge commit): no change set reaches across, start over from here.
      history_.clear();
      history_leaves_ = 0;
    }
  }
  last_pin_at_ = {head_size, tree.applied()};
}

PinSlot::Pin PinSlot::current() const {
  std::lock_guard lock(mu_);
  return pin_;
}

uint64_t PinSlot::pinned_size() const {
  std::lock_guard lock(mu_);
  return pin_.prover ? pin_.prover->head().size : 0;
}

std::shared_ptr<const PinnedPages> PinSlot::page_source() const {
  std::lock_guard lock(mu_);
  return pin_.pages;
}

std::optional<std::string> PinSlot::pin_error() const {
  std::lock_guard lock(mu_);
  return pin_error_;
}

bool PinSlot::renew_due(uint64_t wanted) const {
  std::lock_guard lock(mu_);
  return !pin_.prover || pin_.prover->head().size < wanted ||
         std::chrono::steady_clock::now() - pinned_at_ >= options_.pin_interval;
}

void PinSlot::clear() {
  std::lock_guard lock(mu_);
  pin_ = {};
}

std::vector<uint64_t> PinSlot::history_sizes() const {
  std::lock_guard lock(mu_);
  std::vector<uint64_t> out;
  for (const PinChanges& c : history_) out.push_back(c.from_size);
  if (pin_.prover) out.push_back(pin_.prover->head().size);
  return out;
}

Result<PinSlot::Pin> PinSlot::pin_for(uint64_t size, uint64_t* newest) const {
  if (hooks_.admit) SWL_TRY(hooks_.admit());
  Pin got = current();
  const uint64_t pinned = got.prover ? got.prover->head().size : 0;
  if (size == 0 || pinned < size) {
    const std::optional<uint64_t> head = hooks_.newest_head ? hooks_.newest_head() : std::nullopt;
    if (head && pinned < *head && renew_due(size) && hooks_.request_pin &&
        hooks_.request_pin(got.prover != nullptr)) {
      got = current();
    }
  }
  if (!got.prover) {
    std::lock_guard lock(mu_);
    return make_error(Errc::unavailable, "{}: no pinned head to serve pages from{}{}",
                      options_.owner, options_.no_pin_hint,
                      pin_error_ ? "; pinning failed: " + *pin_error_ : "");
  }
  SWL_TRY(check_pinned_size(size, got.prover->head().size, newest));
  return got;
}

Result<PageSet> PinSlot::pages(uint64_t size, std::span<const uint32_t> pgnos,
                               uint64_t* newest) const {
  SWL_ASSIGN(Pin at, pin_for(size, newest));
  const Head& head = at.prover->head();
  if (!at.pages) {
    std::lock_guard lock(mu_);
    return make_error(Errc::unavailable, "{}: the pinned head {} serves no pages{}", options_.owner,
                      head.size, pin_pages_error_ ? ": " + *pin_pages_error_ : "");
  }
  if (auto s = check_pgnos(pgnos, head.page_count, kMaxPagesPerRequest); !s.ok())
    return make_error(Errc::invalid_argument, "pages of head {}: {}", head.size, s.error().message);
  PageSet set;
  set.head = head;
  set.page_size = at.pages->page_size();
  set.pgnos.assign(pgnos.begin(), pgnos.end());
  auto read = at.pages->read(pgnos);
  if (!read.ok()) {
    // The pinned files are the state the tree describes while the pin lives
    // (pinned_pages.h): a page that differs was changed outside swarmlite.
    if (read.error().code == Errc::corrupt && hooks_.latch_corrupt)
      hooks_.latch_corrupt(read.error());
    return read.take_error();
  }
  set.pages = std::move(read).value();
  set.proof.size = head.page_count;
  set.proof.indices = pgno_indices(pgnos);
  SWL_ASSIGN(set.proof.hashes, at.pages->tree().tree().multiproof(set.proof.indices));
  return set;
}

Result<LeafSet> PinSlot::leaves(uint64_t size, std::span<const uint32_t> pgnos,
                                uint64_t* newest) const {
  SWL_ASSIGN(Pin at, pin_for(size, newest));
  const Head& head = at.prover->head();
  if (auto s = check_pgnos(pgnos, head.page_count, kMaxLeavesPerRequest); !s.ok())
    return make_error(Errc::invalid_argument, "leaf hashes of head {}: {}", head.size,
                      s.error().message);
  const MerkleTree& tree = at.prover->tree().tree();
  LeafSet set;
  set.head = head;
  set.pgnos.assign(pgnos.begin(), pgnos.end());
  set.leaves.reserve(pgnos.size());
  for (uint32_t p : pgnos) set.leaves.push_back(tree.leaf(p - 1));
  set.proof.size = head.page_count;
  set.proof.indices = pgno_indices(pgnos);
  SWL_ASSIGN(set.proof.hashes, tree.multiproof(set.proof.indices));
  return set;
}

Result<ChangeSet> PinSlot::changes(uint64_t from_size, uint64_t to_size, uint64_t* newest) const {
  SWL_ASSIGN(Pin at, pin_for(to_size, newest));
  const Head& head = at.prover->head();
  if (from_size > head.size)
    return make_error(Errc::invalid_argument,
                      "changes since size {}: that is past the pinned head at size {}", from_size,
                      head.size);
  // The records from from_size up to the pin answered at, merged (a page's
  // earliest old leaf is its leaf at from_size).
  uint32_t old_page_count = head.page_count;
  std::map<uint32_t, Hash32> merged;
  if (from_size < head.size) {
    std::lock_guard lock(mu_);
    auto it = std::find_if(history_.begin(), history_.end(),
                           [&](const PinChanges& c) { return c.from_size == from_size; });
    if (it == history_.end())
      return make_error(Errc::refused,
                        "changes since size {}: not in this node's change history ({}): ask for "
                        "leaves",
                        from_size,
                        history_.empty() ? std::string("empty")
                                         : fmt::format("sizes {} to {}", history_.front().from_size,
                                                       history_.back().to_size));
    old_page_count = it->changes.old_page_count;
    uint64_t at_size = from_size;
    for (; it != history_.end() && it->from_size == at_size && at_size < head.size; ++it) {
      for (const auto& [pgno, leaf] : it->changes.old_leaves)
        if (pgno <= old_page_count) merged.emplace(pgno, leaf);
      at_size = it->to_size;
    }
    if (at_size != head.size)
      return make_error(Errc::refused,
                        "changes since size {}: the change history does not reach the pinned "
                        "head at size {} (it stops at {}): ask for leaves",
                        from_size, head.size, at_size);
  }
  return build_change_set(at.prover->tree().tree(), head, from_size, old_page_count,
                          {merged.begin(), merged.end()});
}

}  // namespace swarmlite
