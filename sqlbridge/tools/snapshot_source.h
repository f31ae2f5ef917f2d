// The serving half of verified snapshot transfer (docs/formats/snapshot.md,
// docs/http-api.md "Snapshots"): `GET /db/snapshot` pins a snapshot, then
// `GET /db/snapshot/pages` serves chunks of it.
//
// A snapshot is a materialised copy of the database at one signed head, made
// with make_backup (backup.h: checked against the head's state root, an
// unlinked temporary file in the database's directory, the applier never
// blocked), plus the state tree over the copy's pages, for the chunks'
// multiproofs. A copy, not the live file, because fetching a large database
// takes longer than the node keeps one state: the applier goes on while
// fetchers read the pinned state.
//
// Without a copy first (docs/formats/snapshot.md "Served from the pin"): when
// the owner offers its pinned head (a replica: Replica::pinned_page_source),
// a snapshot is that pin, held: its pages are read from the database file and
// its -wal by pread, each checked against the pin's state tree (PinnedPages)
// before it goes out, and the tree gives the chunks' multiproofs. Holding a
// pin keeps SQLite from checkpointing past it, so the -wal grows with every
// write: a pin is held at most pin_max_age or until the -wal has grown by
// pin_max_wal_bytes, then its pages are copied, from the pin (pread, checked
// against the tree; no SQLite backup, the applier never waits), into a copy
// that replaces it. If the -wal reaches pin_drop_wal_bytes of growth before the
// copy is done, the snapshot is dropped (fetchers get "gone", and ask again). A
// page that does not match the tree is never served: the error is latched and
// the source serves no snapshot any more.
//
// Bounds: at most max_held snapshots (the least recently used goes first), a
// snapshot is dropped after `idle` without a request or at `max_age`, one copy
// is made at a time, and asking for the newest head reuses a held snapshot of
// that head, or one younger than `reuse`, so a swarm of fetchers costs one copy.
//
// Thread-safe: every method may run on several threads at once; a chunk is
// served from a snapshot even if it is dropped meanwhile (the last user closes it).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/head.h"
#include "sqlbridge/engine/pinned_pages.h"
#include "core/merkle.h"
#include "sqlbridge/engine/snapshot_chunk.h"
#include "sqlbridge/tools/backup.h"

namespace swarmlite {

struct SnapshotSourceOptions {
  size_t max_held = 2;
  std::chrono::milliseconds idle{60000};      // dropped after this long without a request
  std::chrono::milliseconds max_age{600000};  // dropped this long after it was made
  std::chrono::milliseconds reuse{30000};     // a newer head than this snapshot's still reuses it
  uint32_t chunk_pages = kDefaultChunkPages;  // suggested to fetchers in the manifest
  std::chrono::milliseconds make_timeout{600000};  // one copy (make_backup's deadline)
  std::filesystem::path temp_dir;                  // where copies go (the database's directory)
  // Tests inject a clock; the default is steady_clock::now.
  std::function<std::chrono::steady_clock::time_point()> clock;
  // Drop expired snapshots from a background thread (once a second), not only
  // when the next request comes. Tests with an injected clock call expire().
  bool reaper = true;
  // Holding a pin (see above): past either bound, its pages are copied and the
  // pin let go; at pin_drop_wal_bytes of -wal growth before the copy is done
  // the snapshot is dropped. docs/operations.md "Snapshots served from the pin".
  std::chrono::milliseconds pin_max_age{20000};
  uint64_t pin_max_wal_bytes = uint64_t{64} << 20;
  uint64_t pin_drop_wal_bytes = uint64_t{256} << 20;
};

// The owner's pinned head and its pages (`pages->tree()` has head.state_root),
// and the -wal file whose growth holding it costs.
struct PinnedHead {
  Head head;
  std::shared_ptr<const PinnedPages> pages;
  std::filesystem::path wal_path;
};
// Empty, or an error: no pin to serve from (SnapshotSource makes a copy instead).
using PinnedHeadProvider = std::function<Result<PinnedHead>()>;

struct SnapshotManifest {
  Head head;
  uint32_t page_size = 0;
  uint32_t chunk_pages = 0;
};

class SnapshotSource {
 public:
  // `pinned` (may be empty: the primary) offers the owner's pinned head.
  SnapshotSource(BackupSource source, SnapshotSourceOptions options,
                 PinnedHeadProvider pinned = {});
  ~SnapshotSource();
  SnapshotSource(const SnapshotSource&) = delete;
  SnapshotSource& operator=(const SnapshotSource&) = delete;

  // Pins (or reuses) a snapshot at the newest signed head. Errors: unavailable
  // (no signed head yet, the copy's time bound, `*cancel` set), io_error.
  Result<SnapshotManifest> newest(const std::atomic<bool>* cancel = nullptr);
  // The encoded chunk (snapshot_chunk.h) of pages first_page .. first_page+count-1
  // of the snapshot at log size `size`. Errors: not_found "gone: head N is not
  // held; newest held is M" (newest_held() says M), invalid_argument for a
  // range outside the snapshot or over the chunk cap (what and why), io_error.
  Result<Bytes> chunk(uint64_t size, uint32_t first_page, uint32_t count);
  // The size of the newest snapshot held (0: none).
  uint64_t newest_held() const;
  // The size of the oldest snapshot held (0: none): its fetchers need log
  // entry oldest_held() - 1 (the frontier), which --retain keeps.
  uint64_t oldest_held() const;
  size_t held() const;
  // Drops snapshots idle or older than their bounds now.
  void expire();
  // Copies made so far by make_backup, snapshots served from a pin, pins
  // copied and let go, pins dropped at pin_drop_wal_bytes (tests, metrics).
  uint64_t copies_made() const { return copies_.load(); }
  uint64_t pins_held() const { return pins_.load(); }
  uint64_t pins_copied() const { return pins_copied_.load(); }
  uint64_t pins_dropped() const { return pins_dropped_.load(); }
  // Holds the pins to their bounds now: copies (on this thread) the pins past
  // pin_max_age or pin_max_wal_bytes, drops those past pin_drop_wal_bytes. The
  // reaper calls it once a second; tests with an injected clock call it.
  void bound_pins();
  // The latched error after a pinned page did not match its tree (none: ok).
  std::optional<Error> corruption() const;

 private:
  struct Held;
  using Clock = std::chrono::steady_clock;
  Clock::time_point now() const { return options_.clock ? options_.clock() : Clock::now(); }
  void expire_locked(Clock::time_point t);
  // Holds `made`, replacing one of the same size, within max_held.
  void hold_locked(std::shared_ptr<Held> made);
  std::shared_ptr<Held> find_newest_reusable_locked(const std::optional<Head>& signed_head,
                                                    Clock::time_point t);
  Result<std::shared_ptr<Held>> make(const std::atomic<bool>* cancel);
  Result<std::shared_ptr<Held>> from_pin(const PinnedHead& pin);
  // Copies the pages of h's pin into a copy and switches h to it.
  Status copy_pin(const std::shared_ptr<Held>& h);
  void latch_corrupt(const Error& e);
  uint64_t wal_growth(const Held& h) const;

  BackupSource source_;
  SnapshotSourceOptions options_;
  PinnedHeadProvider pinned_;
  std::optional<Error> corrupt_;  // under mu_, latched
  mutable std::mutex mu_;  // held_
  std::vector<std::shared_ptr<Held>> held_;
  std::mutex make_mu_;  // one copy at a time
  std::atomic<uint64_t> copies_{0};
  std::atomic<uint64_t> pins_{0};
  std::atomic<uint64_t> pins_copied_{0};
  std::atomic<uint64_t> pins_dropped_{0};
  std::condition_variable reaper_cv_;
  bool stopping_ = false;  // under mu_
  std::atomic<bool> stop_copy_{false};  // set with stopping_: a pin's copy ends early
  std::thread reaper_;
};

}  // namespace swarmlite
