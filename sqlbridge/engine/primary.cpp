#include "sqlbridge/engine/primary.h"

#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/codec.h"
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

// steady_clock's clock (CLOCK_MONOTONIC) as of the last timer tick (1-4 ms
// behind at most): for the write deadline, checked every few VM instructions,
// where a precise read was most of the progress handler's time (a guest's
// clock read is an rdtsc plus the hypervisor's clock page).
std::chrono::steady_clock::time_point coarse_now() {
  timespec ts{};
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0) return std::chrono::steady_clock::now();
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

// The write progress handler runs every kWriteProgressOps VM instructions:
// often, because one instruction may write a whole value (up to
// max_value_bytes) and the page cap should hold within a few rows.
constexpr int kWriteProgressOps = 8;
// SQLite's default SQLITE_LIMIT_LENGTH, which replicas keep (docs/determinism.md).
constexpr int kSqliteMaxLength = 1000000000;
// The leader checkpoints between groups once the -wal file holds this many
// frames: SQLite's own wal_autocheckpoint default, which the write connection
// no longer runs itself (primary.h, durability order).
constexpr int kCheckpointFrames = 1000;

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

// SQLite's WAL format (https://www.sqlite.org/fileformat2.html#walformat, as
// SQLite's recovery reads it; LogicalPages in state_tree.cpp parses it the
// same way): a 32-byte header, then frames of a 24-byte header and a page.
constexpr uint32_t kWalMagic = 0x377f0682;  // low bit: checksums big-endian
constexpr uint32_t kWalVersion = 3007000;
constexpr int64_t kWalHeaderBytes = 32;
constexpr int64_t kWalFrameHeaderBytes = 24;

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
uint32_t le32(const uint8_t* p) {
  return uint32_t{p[3]} << 24 | uint32_t{p[2]} << 16 | uint32_t{p[1]} << 8 | uint32_t{p[0]};
}
void wal_checksum(bool big_endian, const uint8_t* data, size_t n, uint32_t s[2]) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint32_t a = big_endian ? be32(data + i) : le32(data + i);
    const uint32_t b = big_endian ? be32(data + i + 4) : le32(data + i + 4);
    s[0] += a + s[1];
    s[1] += b + s[0];
  }
}

// The file offsets just past each valid commit frame of the -wal file, in
// order: the frames SQLite's recovery accepts (header magic, version and
// checksum; each frame's salts and cumulative checksum), up to the last
// valid commit frame. Empty without a WAL or with an invalid header.
Result<std::vector<int64_t>> wal_commit_ends(const std::filesystem::path& wal_path) {
  std::vector<int64_t> ends;
  const int fd = ::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return ends;
    return make_error(Errc::io_error, "opening {}: {}", wal_path.string(), std::strerror(errno));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  auto pread_all = [&](uint8_t* buf, size_t n, int64_t off) -> Result<bool> {
    size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd, buf + done, n - done, off + static_cast<int64_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        return make_error(Errc::io_error, "reading {} at offset {}: {}", wal_path.string(),
                          off + static_cast<int64_t>(done), std::strerror(errno));
      }
      if (r == 0) return false;
      done += static_cast<size_t>(r);
    }
    return true;
  };
  uint8_t hdr[kWalHeaderBytes];
  SWL_ASSIGN(bool whole, pread_all(hdr, sizeof hdr, 0));
  if (!whole) return ends;
  const uint32_t magic = be32(hdr);
  const uint32_t page_size = be32(hdr + 8);
  if ((magic & ~1u) != kWalMagic || be32(hdr + 4) != kWalVersion || page_size < 512 ||
      page_size > 65536 || (page_size & (page_size - 1)) != 0) {
    return ends;
  }
  const bool big_endian = (magic & 1u) != 0;
  uint32_t sum[2] = {0, 0};
  wal_checksum(big_endian, hdr, 24, sum);
  if (sum[0] != be32(hdr + 24) || sum[1] != be32(hdr + 28)) return ends;
  Bytes frame(static_cast<size_t>(kWalFrameHeaderBytes) + page_size);
  for (int64_t off = kWalHeaderBytes;; off += static_cast<int64_t>(frame.size())) {
    SWL_ASSIGN(bool full, pread_all(frame.data(), frame.size(), off));
    if (!full) break;
    if (be32(frame.data()) == 0 || std::memcmp(frame.data() + 8, hdr + 16, 8) != 0) break;
    wal_checksum(big_endian, frame.data(), 8, sum);
    wal_checksum(big_endian, frame.data() + kWalFrameHeaderBytes, page_size, sum);
    if (sum[0] != be32(frame.data() + 16) || sum[1] != be32(frame.data() + 20)) break;
    if (be32(frame.data() + 4) != 0) ends.push_back(off + static_cast<int64_t>(frame.size()));
  }
  return ends;
}

// The last 36 bytes of an encoded entry are its state root and page count
// (docs/formats/entry.md): writes them into `encoded` as encode_entry would.
constexpr size_t kEntryTrailerBytes = 32 + 4;
void set_entry_trailer(Bytes& encoded, const Hash32& root, uint32_t page_count) {
  uint8_t* t = encoded.data() + encoded.size() - kEntryTrailerBytes;
  std::memcpy(t, root.data(), root.size());
  t[32] = static_cast<uint8_t>(page_count >> 24);
  t[33] = static_cast<uint8_t>(page_count >> 16);
  t[34] = static_cast<uint8_t>(page_count >> 8);
  t[35] = static_cast<uint8_t>(page_count);
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
  p->pins_ = p->make_pin_slot();
  SWL_ASSIGN(p->lock_fd_, lock_database(db_path));
  SWL_ASSIGN(p->log_, Log::open(p->log_dir_, p->log_id_, p->options_.log_options));
  SWL_ASSIGN(p->db_, DeterministicDb::open(db_path));

  // The write connection never checkpoints by itself (see the durability
  // order in primary.h): this hook replaces SQLite's wal_autocheckpoint.
  sqlite3_wal_hook(p->db_->handle(), &Primary::wal_frames_hook, p.get());

  std::scoped_lock lock(p->write_mu_, p->mu_);
  SWL_ASSIGN(uint64_t applied, p->db_->read_applied_size());
  const uint64_t logged = p->log_->size();
  if (applied > logged) SWL_TRY(p->repair_wal_ahead(applied, logged));
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
    // Everything replayed is in the log: a checkpoint is safe here.
    if (p->wal_frames_ >= kCheckpointFrames) {
      (void)sqlite3_wal_checkpoint_v2(p->db_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                      nullptr);
      p->wal_frames_ = 0;
    }
  }
  // The file's state must be exactly the last entry's; for a log that starts
  // at a checkpoint and holds no entry after it (a primary restored from the
  // files of a peer that bootstrapped from a snapshot, docs/operations.md
  // "Restoring a lost primary"), the checkpoint head's: it signs that state.
  const StateTree& tree = p->db_->state_tree();
  if (p->log_->size() > p->log_->first_entry()) {
    SWL_ASSIGN(Entry last, p->log_->entry(p->log_->size() - 1));
    if (tree.root() != last.state_root || tree.page_count() != last.page_count) {
      return make_error(Errc::diverged,
                        "{}: state root {} with {} pages differs from log entry {}'s {} with {} pages",
                        db_path.string(), to_hex(tree.root()), tree.page_count(), last.seq,
                        to_hex(last.state_root), last.page_count);
    }
    p->last_time_ms_ = std::max(p->last_time_ms_, last.time_ms);
  } else {
    std::optional<Head> head;
    if (auto cp = p->log_->checkpoint(); cp && !cp->head.empty()) {
      if (auto h = decode_head(cp->head); h.ok()) head = std::move(h).value();
    }
    if (!head || head->size != p->log_->size() || tree.root() != head->state_root ||
        tree.page_count() != head->page_count) {
      return make_error(Errc::diverged,
                        "{}: the log {} starts at entry {} and holds no entry after it, and its "
                        "checkpoint head does not sign this database's state (root {}, {} pages)",
                        db_path.string(), p->log_dir_.string(), p->log_->first_entry(),
                        to_hex(tree.root()), tree.page_count());
    }
    // The head was signed after its last entry: new entries' pinned times
    // stay monotonic.
    p->last_time_ms_ = std::max(p->last_time_ms_, head->time_ms);
  }
  {
    std::lock_guard published_lock(p->published_mu_);
    p->published_root_ = tree.root();
    p->published_pages_ = tree.page_count();
  }
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
  // Only now: the guard's functions above expire every prepared statement
  // (sqlite3_create_function), and the catch-up ran without the bounds.
  p->db_->set_statement_cache(p->options_.statement_cache);
  const auto& head = p->log_->head();
  if (!head || head->size < p->log_->size()) {
    SWL_TRY(p->sign_head_locked());
  } else {
    p->last_sign_ms_ = p->now_ms();
  }
  p->opened_ = true;
  p->confirm_locked();  // no other thread yet
  p->wal_writeback_ =
      std::make_unique<BackgroundWriteback>(std::filesystem::path(db_path.string() + "-wal"));
  if (p->options_.sign_in_background) p->signer_ = std::thread([q = p.get()] { q->signer_loop(); });
  return p;
}

Status Primary::repair_wal_ahead(uint64_t applied, uint64_t logged) {
  // Only a crash between a group's commits and its log fdatasync leaves the
  // database ahead of its log, and then only by commits that are still in the
  // -wal file (never checkpointed, primary.h): one commit per entry, the
  // newest ones last. Cut the newest `ahead` commits and reopen; the state
  // root check in open() then proves the result against the log.
  const uint64_t ahead = applied - logged;
  auto refuse = [&](std::string_view why) {
    return make_error(Errc::diverged,
                      "{} has {} entries applied but its log {} holds only {}: the database is "
                      "ahead of its log and {}; refusing to start (docs/operations.md \"Group "
                      "commit\")",
                      db_path_.string(), applied, log_dir_.string(), logged, why);
  };
  std::filesystem::path wal_path = db_path_;
  wal_path += "-wal";
  // Closing the last connection must not checkpoint the commits being cut.
  sqlite3_db_config(db_->handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  db_.reset();
  SWL_ASSIGN(std::vector<int64_t> ends, wal_commit_ends(wal_path));
  if (ends.size() < ahead) {
    return refuse(
        fmt::format("its -wal file holds only {} commits, so the extra entries are not "
                    "the unsynced tail of a group commit",
                    ends.size()));
  }
  const int64_t cut = ends.size() == ahead ? static_cast<int64_t>(swarmlite::kWalHeaderBytes)
                                           : ends[ends.size() - ahead - 1];
  const int fd = ::open(wal_path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(Errc::io_error, "opening {} to cut {} unlogged commits: {}",
                      wal_path.string(), ahead, std::strerror(errno));
  }
  int err = 0;
  if (::ftruncate(fd, cut) != 0 || ::fdatasync(fd) != 0) err = errno;
  ::close(fd);
  if (err != 0) {
    return make_error(Errc::io_error, "cutting {} to {} bytes ({} unlogged commits): {}",
                      wal_path.string(), cut, ahead, std::strerror(err));
  }
  SWL_ASSIGN(db_, DeterministicDb::open(db_path_));
  sqlite3_wal_hook(db_->handle(), &Primary::wal_frames_hook, this);
  SWL_ASSIGN(uint64_t now_applied, db_->read_applied_size());
  if (now_applied != logged) {
    return refuse(fmt::format("cutting its last {} commits from {} left {} entries applied", ahead,
                              wal_path.string(), now_applied));
  }
  repaired_entries_ = ahead;
  return ok_status();
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
  if (!unlogged_.empty()) {
    // A group's append failed: its earlier writes are committed in the
    // database, not in the log. Append them (the disk may take writes again).
    const uint64_t first = unlogged_.front().seq, last = unlogged_.back().seq;
    if (!fault_.retry_due()) {
      auto f = fault_.get();
      return make_error(Errc::unavailable,
                        "primary {}: entries {}..{} are committed in the database but not yet in "
                        "its log (local fault: {}); next retry in {} ms",
                        db_path_.string(), first, last, f ? f->what : "?", fault_.wait().count());
    }
    if (Status s = append_unlogged_locked(); !s.ok()) {
      fault_.failed(s.error());
      return make_error(Errc::unavailable,
                        "primary {}: appending entries {}..{} to the log failed again ({}); "
                        "retrying with backoff",
                        db_path_.string(), first, last, s.error().to_string());
    }
    sqlite3_db_config(db_->handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);
    fault_.cleared();
    return ok_status();
  }
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
  confirm_locked();  // wakes the background signer for the re-applied entry's head
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
  if (!broken_ && unlogged_.empty()) {
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
  stop_signer();
  (void)close();
  {
    // The pin's read connection goes first: the write connection, the last
    // to close, then checkpoints and removes the -wal file.
    if (pins_) pins_->clear();
  }
  db_.reset();
  log_.reset();
  unlock_database(lock_fd_);
  sodium_memzero(seed_pool_.data(), seed_pool_.size());
}

Status Primary::close() {
  std::scoped_lock lock(write_mu_, mu_);
  if (!opened_ || broken_ || !unlogged_.empty()) return ok_status();
  const auto& head = log_->head();
  if (head && head->size == log_->size()) return ok_status();
  SWL_TRY(sign_head_locked());
  return ok_status();
}

int64_t Primary::now_ms() const { return options_.clock_ms ? options_.clock_ms() : wall_ms(); }

std::array<uint8_t, 32> Primary::next_seed() {
  if (options_.seed_source) return options_.seed_source();
  if (seed_pool_next_ == seed_pool_.size()) {
    randombytes_buf(seed_pool_.data(), seed_pool_.size());
    seed_pool_next_ = 0;
  }
  std::array<uint8_t, 32> seed;
  std::memcpy(seed.data(), seed_pool_.data() + seed_pool_next_, seed.size());
  sodium_memzero(seed_pool_.data() + seed_pool_next_, seed.size());
  seed_pool_next_ += seed.size();
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

void Primary::set_head_listener(std::function<void(const Head&)> listener) {
  std::lock_guard lock(listener_mu_);
  head_listener_ = std::move(listener);
}

void Primary::stop_signer() {
  if (!signer_.joinable()) return;
  {
    std::lock_guard lock(sign_mu_);
    signer_stop_ = true;
  }
  sign_cv_.notify_all();
  signer_.join();
}

void Primary::confirm_locked() {
  const uint64_t size = log_->size();
  const bool grew = size != confirmed_size_;
  confirmed_size_ = size;
  if (!options_.sign_in_background || !grew) return;
  // published_* are written under mu_ (held here) and published_mu_.
  SignReady ready{size, log_->root(), published_root_, published_pages_};
  bool wake;
  {
    std::lock_guard lock(sign_mu_);
    ready_ = ready;
    wake = signer_idle_;
  }
  if (wake) sign_cv_.notify_one();
}

void Primary::signer_loop() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock lock(sign_mu_);
  Clock::time_point next_at{};  // no head before this: sign_gap, or a failure's backoff
  bool failing = false;         // the last head could not be stored
  // Sign when the newest confirmed log (ready_: SQLite has committed every
  // entry of it — never a group between its append and its commits, nor a
  // commit that failed after its append, which recover_locked settles first)
  // is longer than the stored head. The stored head is read from the log's
  // published view: the signer does not take mu_ to find out, nor to build
  // its head (docs/performance.md "A signer that builds its head from
  // published values").
  auto stored_head = [&] { return log_->view().head; };
  auto due = [&] {
    const auto head = stored_head();
    return ready_.size > (head ? head->size : 0);
  };
  for (;;) {
    if (signer_stop_) return;
    if (Clock::now() < next_at) {
      // Within the gap: one head later covers what comes meanwhile. The gap
      // is waited out before the signer looks for something to sign: a
      // signer that found nothing right after its head and waited to be woken
      // cost the next write a wake-up (a futex call and an interrupt to the
      // other CPU) for nearly every head under steady writes, for a head at
      // the same time (docs/performance.md "The signer waits out its gap").
      sign_cv_.wait_until(lock, next_at, [&] { return signer_stop_; });
      continue;
    }
    if (!due()) {
      // Writers wake the signer only while it waits here (signer_idle_), when
      // no write came in a whole gap: a wake-up per write while it waits out
      // its gap would cost each write a context switch.
      signer_idle_ = true;
      sign_cv_.wait(lock, [&] { return signer_stop_ || due(); });
      signer_idle_ = false;
      continue;
    }
    const SignReady ready = ready_;
    const auto previous = stored_head();
    lock.unlock();
    Head head;
    head.log_id = log_id_;
    head.size = ready.size;
    head.log_root = ready.log_root;
    head.state_root = ready.state_root;
    head.page_count = ready.page_count;
    head.time_ms = std::max(now_ms(), previous ? previous->time_ms : 0);
    head.sign_with(key_);  // the signature no write waits for
    Result<bool> stored = false;
    {
      // Only the store takes the log's lock (Log::store_own_head keeps the
      // head in memory; now and then it writes the head file, unsynced).
      std::lock_guard log_lock(mu_);
      stored = log_->store_own_head(head);
      if (!stored.ok()) {
        // The head file could not be written (a full disk): a local fault, the
        // entries stay durable and unsigned; retried with the fault's backoff.
        fault_.failed(make_error(stored.error().code, "storing the signed head at size {}: {}",
                                 head.size, stored.error().message));
      } else {
        if (failing && confirmed_size_ == log_->size())
          fault_.cleared();  // the disk takes writes again
        if (*stored) last_sign_ms_ = now_ms();
      }
    }
    const auto now = Clock::now();
    if (!stored.ok()) {
      lock.lock();
      next_at = now + std::max<Clock::duration>(fault_.wait(), options_.sign_gap);
      failing = true;
      continue;
    }
    failing = false;
    if (*stored) {  // else another head (sign_head(), the group for its pin) came first
      std::lock_guard listener_lock(listener_mu_);
      if (head_listener_) head_listener_(head);
    }
    lock.lock();
    next_at = now + options_.sign_gap;
  }
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
  if ((broken_ || !unlogged_.empty()) && !recover_locked().ok()) return std::optional<Head>{};
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
  if (o.write_timeout.count() > 0 && coarse_now() > w.deadline) {
    w.stopped = make_error(Errc::refused,
                           "write transaction exceeded the {} write time limit; rolled back, "
                           "nothing logged",
                           duration_text(o.write_timeout));
    return 1;
  }
  if (o.max_entry_pages > 0) {
    // The distinct pages the transaction spilled to the WAL so far: the write
    // capture's count (reset at BEGIN), a field read, where
    // sqlite3_db_status(CACHE_WRITE) took the connection's mutex on every call
    // (≈ 2 % of a 100-INSERT write). The commit check below counts every write.
    const int64_t written = static_cast<int64_t>(self->db_->batch_spilled_pages());
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
  const Write write{transaction, failure, bounds};
  std::vector<Result<ExecuteResult>> results = execute_batch(std::span<const Write>(&write, 1));
  return std::move(results.front());
}

std::vector<Result<ExecuteResult>> Primary::execute_batch(std::span<const Write> writes) {
  Caller me;
  std::vector<Queued> mine(writes.size());
  for (size_t i = 0; i < writes.size(); ++i) {
    mine[i].write = &writes[i];
    mine[i].caller = &me;
  }
  auto all_done = [&] {
    return std::all_of(mine.begin(), mine.end(), [](const Queued& q) { return q.done; });
  };
  std::unique_lock queue_lock(queue_mu_);
  for (Queued& q : mine) queue_.push_back(&q);
  // Leader/follower: whoever finds no group running takes the queued writes
  // (its own and others') as the next group and runs it; the others wait for
  // their results or for their turn to lead. The leader then wakes the callers
  // of the group's writes and the caller at the queue's front (the next
  // leader), and no one else: with 16 writers on 2 cores, waking every waiter
  // after every group cost a context switch per waiting writer
  // (docs/performance.md "Waking only the callers a group answered").
  while (!all_done()) {
    if (leader_active_) {
      me.cv.wait(queue_lock);
      continue;
    }
    leader_active_ = true;
    std::vector<Queued*> group;
    const size_t cap = std::max<size_t>(1, options_.max_group_writes);
    while (!queue_.empty() && group.size() < cap) {
      group.push_back(queue_.front());
      queue_.pop_front();
    }
    queue_lock.unlock();
    run_group(group);
    queue_lock.lock();
    for (Queued* q : group) q->done = true;
    leader_active_ = false;
    // Under queue_lock: a caller woken here cannot return (and destroy its
    // Caller) before the lock is released. A caller notified twice, or one
    // that finds another thread leading, just waits again; whoever leads next
    // wakes the queue's front once more when it is done.
    for (Queued* q : group) {
      if (q->caller != &me) q->caller->cv.notify_one();
    }
    if (!queue_.empty() && queue_.front()->caller != &me) queue_.front()->caller->cv.notify_one();
  }
  queue_lock.unlock();
  std::vector<Result<ExecuteResult>> out;
  out.reserve(mine.size());
  for (Queued& q : mine) out.push_back(std::move(*q.result));
  return out;
}

Status Primary::append_unlogged_locked() {
  SWL_TRY(write_unlogged_locked());
  return sync_unlogged_locked();
}

Status Primary::write_unlogged_locked() {
  if (unlogged_.empty()) return ok_status();
  if (options_.test_hook) SWL_TRY(options_.test_hook(PrimaryHookPoint::before_log_append));
  // Each was decoded as its write's loggability check (run_write_locked).
  return log_->append_write(std::span<const Bytes>(unlogged_bytes_), Log::EntryCheck::by_caller);
}

Status Primary::sync_unlogged_locked() {
  if (unlogged_.empty()) return ok_status();
  SWL_TRY(log_->append_sync());
  {
    std::lock_guard published_lock(published_mu_);
    published_root_ = unlogged_.back().state_root;
    published_pages_ = unlogged_.back().page_count;
  }
  unlogged_.clear();
  for (Bytes& b : unlogged_bytes_) {
    if (spare_entry_bytes_.size() >= kSpareEntryBuffers) break;
    if (b.capacity() <= kSpareEntryBytes) spare_entry_bytes_.push_back(std::move(b));
  }
  unlogged_bytes_.clear();
  return ok_status();
}

int Primary::wal_frames_hook(void* self, sqlite3*, const char*, int frames) {
  static_cast<Primary*>(self)->wal_frames_ = frames;
  return SQLITE_OK;
}

void Primary::run_group(std::vector<Queued*>& group) {
  std::lock_guard write_lock(write_mu_);
  auto fail_all = [&](const Error& e) {
    for (Queued* q : group) q->result.emplace(e);
  };
  if (stopping_.load()) {
    fail_all(
        make_error(Errc::unavailable, "primary {} is stopping: no more writes", db_path_.string()));
    return;
  }
  if (auto c = corruption()) {
    // The file no longer holds what the state tree says (found serving pages):
    // entries built on it could not be replayed to the same state.
    fail_all(make_error(Errc::corrupt, "primary {} takes no writes: {}", db_path_.string(),
                        c->message));
    return;
  }
  {
    std::lock_guard lock(mu_);
    // An earlier commit failed after its entry was logged, or an earlier
    // group's append failed: settle that first.
    if (Status s = recover_locked(); !s.ok()) {
      fail_all(s.error());
      return;
    }
  }
  // Writes queued while the group runs join it, up to the cap, until its
  // last write starts (that write's commit appends the group): a caller the
  // previous group just answered usually comes back in time for this one.
  const size_t cap = std::max<size_t>(1, options_.max_group_writes);
  for (size_t i = 0; i < group.size(); ++i) {
    if (i + 1 == group.size() && group.size() < cap) {
      std::lock_guard queue_lock(queue_mu_);
      while (!queue_.empty() && group.size() < cap) {
        group.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    run_write_locked(*group[i], i + 1 == group.size());
  }

  sqlite3* db = db_->handle();
  // Once the group is in the log: checkpoint and pin, after mu_ is released
  // (declared before the lock, so destroyed after it), so size(), head() and
  // peers served from the log never wait for them.
  struct AfterGroup {
    const Primary* self;
    bool armed = false;
    ~AfterGroup() {
      if (armed) self->checkpoint_and_pin_locked(/*force=*/false);
    }
  } after_group{this};
  std::lock_guard lock(mu_);
  // The last write failed before its commit hook appended the group: append
  // the earlier writes' entries now.
  if (Status s = append_unlogged_locked(); !s.ok()) {
    // They are committed in SQLite but not durable: not acknowledged. The
    // Primary appends them before its next write (recover_locked), or open()
    // cuts them from the -wal file if the process stops first, so the
    // database must not checkpoint them into its main file on close.
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    fault_.failed(s.error());
    for (Unlogged& u : unlogged_) {
      if (!u.waiter) continue;
      u.waiter->result.emplace(make_error(
          s.error().code,
          "entry {} was committed in the database but appending it to the log failed ({}); it is "
          "not acknowledged: the primary appends it to its log before its next write (retried "
          "with backoff), or, if it restarts first, keeps it only if the log's file holds it",
          u.seq, s.error().message));
      u.waiter = nullptr;
    }
    return;
  }
  for (Queued* q : group) {
    if (!broken_ && q->result && q->result->ok()) {
      fault_.cleared();
      break;
    }
  }
  // Checkpoints happen only between groups, when everything SQLite committed
  // is in the log (see the durability order in primary.h): after_group.
  after_group.armed = true;
  if (!broken_) confirm_locked();  // the background signer may sign it
  // One head per group, when due, handed to the group's last successful write.
  if (options_.sign_in_background) {
    // The signer signs it, unless the page service's pin wants a head now:
    // the pin is taken only at a head covering the whole log, right after a
    // group (checkpoint_and_pin_locked), so the group signs one itself, at
    // most once per pin_interval while pages are requested.
    const auto now = std::chrono::steady_clock::now();
    const bool for_pin = pin_active_.load() && (pin_wanted_.load() ||
                                                now - last_group_sign_ >= options_.pin_interval);
    if (broken_ || !for_pin) return;  // confirm_locked() woke the signer if it was idle
    if (const auto& h = log_->head(); h && h->size == log_->size()) return;
    last_group_sign_ = now;
  } else if (broken_ || !head_due_locked()) {
    return;
  }
  Queued* last_ok = nullptr;
  for (Queued* q : group) {
    if (q->result && q->result->ok()) last_ok = q;
  }
  auto head = sign_head_locked();
  if (!last_ok) return;
  if (!head.ok()) {
    const uint64_t seq = last_ok->result->value().seq;
    last_ok->result.emplace(make_error(head.error().code,
                                       "entry {} is committed but signing its head failed: {}", seq,
                                       head.error().message));
    return;
  }
  last_ok->result->value().head = std::move(head).value();
}

void Primary::run_write_locked(Queued& q, bool last) {
  const std::span<const Statement> transaction = q.write->transaction;
  EntryFailure* failure = q.write->failure;
  const WriteBounds bounds = q.write->bounds.value_or(default_bounds());
  auto fail = [&](Error e) { q.result.emplace(std::move(e)); };
  if (stopping_.load()) {
    return fail(
        make_error(Errc::unavailable, "primary {} is stopping: no more writes", db_path_.string()));
  }
  if (transaction.empty())
    return fail(make_error(Errc::invalid_argument, "execute: no statements"));

  Entry entry;
  {
    std::lock_guard lock(mu_);
    entry.seq = log_->size() + unlogged_.size();
  }
  const uint32_t pages_before = db_->state_tree().page_count();
  entry.time_ms = next_time_ms_locked();
  entry.seed = next_seed();
  // What the log cannot hold is refused before anything runs (decode_entry is
  // the definition of a loggable entry: UTF-8, no NUL in SQL, no NaN, caps).
  // These bytes become the logged entry: the commit hook writes the state root
  // and page count into their trailer (encoded once per write, from the
  // caller's statements: `entry` holds none).
  Bytes spare;
  if (!spare_entry_bytes_.empty()) {
    spare = std::move(spare_entry_bytes_.back());
    spare_entry_bytes_.pop_back();
  }
  // (docs/formats/entry.md; primary_test checks the logged bytes decode to the
  // transaction and encode back to themselves.)
  Bytes probe = encode_entry(entry, transaction, std::move(spare));
  if (Status checked = check_entry(probe); !checked.ok()) {
    // Name the statement the log cannot hold: each alone, in order (only on this path).
    for (size_t i = 0; i < transaction.size(); ++i) {
      Entry one = entry;
      one.statements.assign(1, transaction[i]);
      if (auto d = decode_entry(encode_entry(one)); !d.ok()) {
        if (failure) failure->statement = i;
        return fail(make_error(Errc::invalid_argument,
                               "statement {}: the transaction cannot be logged: {}", i,
                               d.error().message));
      }
    }
    return fail(make_error(Errc::invalid_argument, "execute: the transaction cannot be logged: {}",
                           checked.error().message));
  }

  sqlite3* db = db_->handle();
  bool appended = false;  // the group's entries, this one's included, are in the log
  bool queued = false;    // this entry waits in unlogged_ for the group's append
  // The group's last write: the log is locked from its entries' write (in the
  // commit hook) to their sync (after SQLite's commit), so nothing else uses
  // the log in between.
  std::unique_lock log_lock(mu_, std::defer_lock);
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
    set_entry_trailer(probe, root, page_count);
    unlogged_bytes_.push_back(std::move(probe));
    unlogged_.push_back(Unlogged{entry.seq, root, page_count, entry.time_ms, &q});
    if (last) {
      // The group's last write: its entry and the earlier ones are written to
      // the log and their write to the disk starts. SQLite then writes this
      // commit frame (to the -wal file, no sync) while the disk writes them,
      // and the log's fdatasync follows, before any write of the group is
      // acknowledged (primary.h, durability order; docs/performance.md
      // "The commit beside the log's sync").
      log_lock.lock();
      if (Status s = write_unlogged_locked(); !s.ok()) {
        log_lock.unlock();
        unlogged_bytes_.pop_back();
        unlogged_.pop_back();
        return s;
      }
      appended = true;
    } else {
      queued = true;
    }
    // Before the commit makes the state visible, so a reader that sees it
    // finds its root (snapshot.h).
    roots_.record(entry.seq + 1, root, page_count);
    if (appended && options_.test_hook) {
      SWL_TRY(options_.test_hook(PrimaryHookPoint::after_log_append));
    }
    return ok_status();
  };
  running_ = RunningWrite{};
  running_.active = true;
  running_.start = std::chrono::steady_clock::now();
  running_.bounds = bounds;
  running_.deadline = running_.start + bounds.write_timeout;
  running_.cache_writes_at_start = cache_writes(db);
  auto results = db_->run_entry(EntryInputs{entry.seq, entry.time_ms, entry.seed}, transaction,
                                DeterministicDb::Mode::user,
                                /*collect_rows=*/true, on_commit, failure);
  running_.active = false;
  if (appended) {
    // The group's entries were written to the log; now their fdatasync.
    Status synced = sync_unlogged_locked();
    // SQLite committed this write before the sync (the commit frame was
    // written beside the log's write), and the group's earlier writes before
    // it: the whole log is committed, so the background signer may sign it at
    // once. Confirmed only at the group's end, a signer that took mu_ between
    // here and there found nothing it could sign, and waited to be woken
    // (docs/performance.md "The signer waits out its gap").
    if (synced.ok() && results.ok() && !broken_) confirm_locked();
    log_lock.unlock();
    if (!synced.ok()) {
      // Not durable. The writes SQLite committed (this one too, if it did)
      // stay in unlogged_, as a failed group append leaves them: run_group
      // appends them again and answers them, or fails every one of them
      // (after a failed fsync the store refuses appends until a restart).
      fault_.failed(synced.error());
      appended = false;
      if (results.ok()) {
        queued = true;
      } else {
        unlogged_bytes_.pop_back();  // SQLite did not commit it
        unlogged_.pop_back();
      }
    }
  }
  if (!results.ok()) {
    if (appended) {
      broken_ = true;
      fault_.failed(results.error());
      return fail(make_error(
          results.error().code,
          "entry {} was logged but SQLite's commit failed ({}); the entry is durable and is "
          "applied from the log before the next write (retried with backoff)",
          entry.seq, results.error().message));
    }
    if (queued) {
      // SQLite did not commit it (run_entry undid the state tree): forget it.
      unlogged_bytes_.pop_back();
      unlogged_.pop_back();
    }
    if (running_.stopped) return fail(std::move(*running_.stopped));
    Error e = results.take_error();
    if (is_local_fault(e)) fault_.failed(e);
    const int max_value = options_.max_value_bytes;
    if (max_value > 0 && max_value < kSqliteMaxLength &&
        (e.message.find("too big") != std::string::npos ||
         e.message.find("over the value length cap") != std::string::npos)) {
      return fail(make_error(Errc::refused,
                             "{} (this primary allows at most {} bytes in one string, blob or "
                             "row); rolled back, nothing logged",
                             e.message, max_value));
    }
    return fail(std::move(e));
  }
  last_time_ms_ = entry.time_ms;
  roots_.record(entry.seq + 1, entry.state_root, entry.page_count);

  ExecuteResult out;
  out.seq = entry.seq;
  out.time_ms = entry.time_ms;
  out.state_root = entry.state_root;
  out.page_count = entry.page_count;
  out.statements = std::move(results).value();
  if (options_.test_hook) {
    if (Status s = options_.test_hook(PrimaryHookPoint::after_commit); !s.ok()) {
      return fail(s.take_error());
    }
  }
  q.result.emplace(std::move(out));
}

// These four never wait for mu_, which a group's log append holds across its
// fdatasync: the HTTP server's io thread asks for size() after every write
// and stalled on the next group's sync. Log::view() is published when an
// append or a head store completes, as size() and head() under mu_ were.
uint64_t Primary::size() const { return log_->view().size; }
Hash32 Primary::state_root() const {
  std::lock_guard lock(published_mu_);
  return published_root_;
}
uint32_t Primary::page_count() const {
  std::lock_guard lock(published_mu_);
  return published_pages_;
}
std::optional<Head> Primary::head() const { return log_->view().head; }
uint64_t Primary::stats_epoch() const { return db_->stats_epoch(); }

Result<LogCompaction> Primary::compact_log(uint64_t keep_from) {
  // Under the write mutex no group is between its log append and its commits,
  // so the database has applied exactly the log (unless a commit failed after
  // its append: then it lags, and open() would need the entry back).
  uint64_t applied = 0;
  {
    std::scoped_lock lock(write_mu_, mu_);
    if (broken_) {
      return make_error(Errc::unavailable,
                        "primary {}: not compacting the log while entry {} is logged but not "
                        "committed to the database",
                        db_path_.string(), log_->size() - 1);
    }
    applied = log_->size();
    // Nothing before the log's start to drop (a log shorter than --retain, or
    // compacted this far already): no fsync for a round that does nothing.
    if (std::min(keep_from, applied) <= log_->first_entry()) {
      LogCompaction none;
      none.first_before = none.first_after = log_->first_entry();
      none.keep_from = std::min(keep_from, applied);
      return none;
    }
  }
  // With no lock held: commits are not synced (synchronous=NORMAL) and a power
  // loss could take the database back to where open() replays from the log.
  SWL_TRY(sync_database_files(db_path_));
  LogCompaction out;
  std::lock_guard lock(mu_);
  const auto& head = log_->head();
  out.keep_from = std::min({keep_from, applied, head ? head->size : 0});
  out.first_before = out.first_after = log_->first_entry();
  if (out.keep_from <= out.first_before) return out;
  SWL_ASSIGN(out.dropped, log_->compact(out.keep_from));
  out.first_after = log_->first_entry();
  return out;
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

void Primary::checkpoint_and_pin_locked(bool force) const {
  std::optional<Head> head;
  bool at_head;
  {
    std::lock_guard lock(mu_);
    head = log_->head();
    // Only a signed head the database holds exactly: pages answers carry it.
    at_head = !broken_ && unlogged_.empty() && head && head->size == log_->size();
  }
  // Never over commits a failed group append left unlogged (unlogged_, ours
  // under write_mu_): they must stay in the -wal file for open() to cut
  // (primary.h). A page request pins outside any group and once checkpointed
  // them into the database file.
  const bool checkpoint = wal_frames_ >= kCheckpointFrames && unlogged_.empty();
  std::optional<PinSlot::Repin> repin;  // requests wait for the new pin
  bool pin = false;
  const auto now = std::chrono::steady_clock::now();
  if (at_head && pin_active_.load() && !stopping_.load() && !corruption()) {
    repin.emplace(pins_->begin_repin());
    const bool stale = !repin->has_pin() || repin->pinned_size() < head->size;
    pin = (stale && (force || pin_wanted_.load() || !repin->has_pin() ||
                     repin->interval_passed(now))) ||
          (checkpoint && repin->has_pin());
    if (pin) {
      // Let go of the old pin first (requests in flight keep it alive), so
      // the checkpoint below can copy the whole WAL into the database; the new
      // pin then reads the database file alone and the next write starts the
      // WAL over (pinned_pages.h). Holders of the old PinnedPages (a snapshot
      // being served) hold it back, within SnapshotSource's WAL bounds.
      repin->drop();
    }
  }
  if (checkpoint) {
    (void)sqlite3_wal_checkpoint_v2(db_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                    nullptr);
    wal_frames_ = 0;
  } else if (wal_writeback_) {
    // Every BackgroundWriteback::kPagesPerKick frames between checkpoints,
    // the -wal file's writeback is started in the background: SQLite's
    // fdatasync of it at the checkpoint, under the write mutex, then finds
    // little left to write (it was ~90 % of a checkpoint's time,
    // docs/performance.md "WAL writeback off the write path").
    wal_writeback_->kick_if_grown(wal_frames_);
  }
  if (!pin) return;
  pin_wanted_.store(false);
  // One connection: it only holds the read transaction (proofs on the primary
  // run under the write mutex, prove()). Still under the write mutex, right
  // after the last commit: what PinnedPages needs (pinned_pages.h). The pin
  // records the state tree's journal since the pin before (pinned_changes).
  repin->pin(db_path_, db_->state_tree(), *head, 1, now);
}

std::unique_ptr<PinSlot> Primary::make_pin_slot() {
  PinSlotHooks hooks;
  hooks.admit = [this]() -> Status {
    if (auto c = corruption()) return make_error(Errc::corrupt, "{}", c->message);
    if (stopping_.load()) {
      return make_error(Errc::unavailable, "primary {} is stopping", db_path_.string());
    }
    pin_active_.store(true);  // from now on the writer renews the pin after its groups
    return ok_status();
  };
  hooks.newest_head = [this]() -> std::optional<uint64_t> {
    if (auto h = head()) return h->size;
    return std::nullopt;
  };
  // An idle primary pins now; a running group pins when it ends (asked for by
  // pin_wanted_). Only the first pin waits for the running group (bounded by
  // write_timeout): there is none to answer from meanwhile.
  hooks.request_pin = [this](bool have_pin) {
    std::unique_lock write_lock(write_mu_, std::try_to_lock);
    if (!write_lock.owns_lock() && !have_pin) write_lock.lock();
    if (!write_lock.owns_lock()) {
      pin_wanted_.store(true);
      return false;
    }
    if (options_.sign_in_background) {
      // The background signer may not have signed the newest entries yet:
      // the pin needs a head covering the whole log.
      std::lock_guard lock(mu_);
      const auto& head = log_->head();
      if (!broken_ && unlogged_.empty() && (!head || head->size < log_->size())) {
        (void)sign_head_locked();  // on failure nothing is pinned (the request says so)
      }
    }
    checkpoint_and_pin_locked(/*force=*/true);
    return true;
  };
  // The primary then takes no writes and serves no pages (run_group).
  hooks.latch_corrupt = [this](const Error& e) {
    std::lock_guard lock(corrupt_mu_);
    corrupted_ = e;
  };
  return std::make_unique<PinSlot>(
      PinSlotOptions{.owner = "primary " + db_path_.string(),
                     .no_pin_hint = " (a signed head covering the log is pinned after the next "
                                    "write or signed head)",
                     .pin_interval = options_.pin_interval,
                     .change_history_pins = options_.change_history_pins,
                     .change_history_leaves = options_.change_history_leaves},
      std::move(hooks));
}

Result<PageSet> Primary::pinned_pages(uint64_t size, std::span<const uint32_t> pgnos,
                                      uint64_t* newest) const {
  return pins_->pages(size, pgnos, newest);
}

Result<LeafSet> Primary::pinned_leaves(uint64_t size, std::span<const uint32_t> pgnos,
                                       uint64_t* newest) const {
  return pins_->leaves(size, pgnos, newest);
}

Result<ChangeSet> Primary::pinned_changes(uint64_t from_size, uint64_t to_size,
                                          uint64_t* newest) const {
  return pins_->changes(from_size, to_size, newest);
}

std::vector<uint64_t> Primary::change_history_sizes() const { return pins_->history_sizes(); }

std::shared_ptr<const PinnedPages> Primary::pinned_page_source() const {
  return pins_->page_source();
}

uint64_t Primary::pinned_size() const { return pins_->pinned_size(); }

std::optional<Error> Primary::corruption() const {
  std::lock_guard lock(corrupt_mu_);
  return corrupted_;
}

Result<ReadSnapshot> Primary::open_snapshot(const ReadCapture* capture) const {
  return swarmlite::open_snapshot(db_path_, roots_, capture);
}

}  // namespace swarmlite
