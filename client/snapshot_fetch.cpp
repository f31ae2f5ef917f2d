#include "client/snapshot_fetch.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "core/codec.h"
#include "core/file_io.h"
#include "core/merkle.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/tools/backup.h"

namespace swarmlite::client {

std::filesystem::path part_path(const std::filesystem::path& out) { return out.string() + ".part"; }
std::filesystem::path progress_path(const std::filesystem::path& out) {
  return out.string() + ".part.progress";
}
std::filesystem::path head_json_path(const std::filesystem::path& out) {
  return out.string() + ".head.json";
}

bool is_http_source(std::string_view from) { return from.find("://") != std::string_view::npos; }

namespace {

// The progress file (docs/formats/snapshot.md "Fetch progress file"):
//   header = "SWLFETCH" · u8 version=1 · u32 chunk_pages · head
//   record = u32 first_page · u32 count · u32 page_size · u32 check
// check = first_page ^ count ^ page_size ^ 0x5357464b: a record torn by a crash
// (or anything not written by us) ends the list; what follows is refetched.
constexpr std::string_view kProgressMagic = "SWLFETCH";
constexpr uint8_t kProgressVersion = 1;
constexpr size_t kProgressHeaderBytes = 8 + 1 + 4 + kEncodedHeadSize;
constexpr size_t kProgressRecordBytes = 16;
constexpr uint32_t kRecordCheck = 0x5357464b;

struct Progress {
  uint32_t chunk_pages = 0;
  Head head;
  uint32_t page_size = 0;
  std::vector<std::pair<uint32_t, uint32_t>> chunks;  // (first_page, count), verified and on disk
};

Bytes progress_header(uint32_t chunk_pages, const Head& head) {
  Writer w;
  w.raw(as_bytes(kProgressMagic));
  w.u8(kProgressVersion);
  w.u32(chunk_pages);
  w.raw(encode_head(head));
  return w.take();
}

Bytes progress_record(uint32_t first, uint32_t count, uint32_t page_size) {
  Writer w;
  w.u32(first);
  w.u32(count);
  w.u32(page_size);
  w.u32(first ^ count ^ page_size ^ kRecordCheck);
  return w.take();
}

// nullopt when there is no usable progress file (absent, or not ours).
std::optional<Progress> read_progress(const std::filesystem::path& path) {
  auto bytes = file_io::read_file(path, 64u << 20);
  if (!bytes.ok() || bytes->size() < kProgressHeaderBytes) return std::nullopt;
  Reader r(*bytes, "fetch progress");
  auto magic = r.raw(8, "magic");
  if (!magic.ok() || !std::equal(magic->begin(), magic->end(), kProgressMagic.begin()))
    return std::nullopt;
  auto version = r.u8("version");
  if (!version.ok() || *version != kProgressVersion) return std::nullopt;
  Progress p;
  auto cp = r.u32("chunk_pages");
  if (!cp.ok() || *cp == 0) return std::nullopt;
  p.chunk_pages = *cp;
  auto head = read_head(r, "head");
  if (!head.ok()) return std::nullopt;
  p.head = *head;
  while (r.remaining() >= kProgressRecordBytes) {
    uint32_t first = *r.u32("first_page"), count = *r.u32("count"), ps = *r.u32("page_size"),
             check = *r.u32("check");
    if ((first ^ count ^ ps ^ kRecordCheck) != check) break;
    if (p.page_size != 0 && ps != p.page_size) break;
    p.page_size = ps;
    p.chunks.emplace_back(first, count);
  }
  return p;
}

// out.head.json: what the copy is the state of (docs/operations.md).
Status write_head_json(const std::filesystem::path& out, const Head& head, uint32_t page_size) {
  nlohmann::json doc{{"size", head.size},
                     {"log_root", to_hex(head.log_root)},
                     {"state_root", to_hex(head.state_root)},
                     {"page_count", head.page_count},
                     {"page_size", page_size},
                     {"time_ms", head.time_ms},
                     {"log_id", head.log_id.hex()},
                     {"head", to_hex(encode_head(head))}};
  const std::string text = doc.dump(2) + "\n";
  return file_io::durable_replace(head_json_path(out), as_bytes(text));
}

bool same_head(const Head& a, const Head& b) { return encode_head(a) == encode_head(b); }

// A chunk from `source` for `request`, decoded and checked against `head`.
// nullopt error kinds: transport (retry) vs lie (ban).
struct Fetched {
  std::optional<SnapshotChunk> chunk;
  std::optional<Error> transient;  // retry later
  std::optional<Error> lie;        // ban the source
};

Fetched fetch_one(ChunkSource& source, const SnapshotRequest& request, const Head& head) {
  Fetched f;
  auto bytes = source.chunk(request);
  if (!bytes.ok()) {
    f.transient = bytes.error();
    return f;
  }
  auto chunk = decode_snapshot_chunk(*bytes);
  if (!chunk.ok()) {
    f.lie = chunk.error();
    return f;
  }
  if (chunk->first_page != request.first_page || chunk->count != request.count) {
    f.lie = make_error(Errc::proof_failed, "asked for pages {}..{}, got pages {}..{}",
                       request.first_page, uint64_t{request.first_page} + request.count - 1,
                       chunk->first_page, uint64_t{chunk->first_page} + chunk->count - 1);
    return f;
  }
  if (auto s = verify_snapshot_chunk(*chunk, head); !s.ok()) {
    f.lie = s.error();
    return f;
  }
  f.chunk = std::move(chunk).value();
  return f;
}

struct SourceState {
  ChunkSource* source = nullptr;
  int failures = 0;  // in a row
  bool out = false;  // banned or dropped for this run
  std::string reason;
};

// One fetch run over the sources holding `head`. `pending_manifests`: sources
// whose manifest is still outstanding; each ends with manifest_settled(),
// after add_source() if it holds `head`, and until then the run does not give
// up for want of sources.
class Run {
 public:
  Run(const SnapshotFetchOptions& o, const Head& head, uint32_t chunk_pages,
      std::vector<SourceState> sources, size_t pending_manifests)
      : o_(o),
        head_(head),
        chunk_pages_(chunk_pages),
        sources_(sources.begin(), sources.end()),
        pending_manifests_(pending_manifests) {}

  uint32_t chunk_count() const {
    return static_cast<uint32_t>((uint64_t{head_.page_count} + chunk_pages_ - 1) / chunk_pages_);
  }
  SnapshotRequest request(uint32_t k) const {
    const uint64_t first = uint64_t{k} * chunk_pages_ + 1;
    return {head_.size, static_cast<uint32_t>(first),
            static_cast<uint32_t>(std::min<uint64_t>(chunk_pages_, head_.page_count - first + 1))};
  }

  // Fetches every chunk not in `kept` into `part`; records them in `progress`.
  Status go(int part, int progress, const std::set<uint32_t>& kept, uint32_t page_size,
            SnapshotFetchResult& result) {
    const uint32_t total = chunk_count();
    {
      // Locked from the start: a late source may be added (add_source) meanwhile.
      std::unique_lock lock(mu_);
      part_fd_ = part;
      progress_fd_ = progress;
      page_size_ = page_size;
      for (uint32_t k = 0; k < total; ++k) {
        if (kept.count(k)) {
          done_pages_ += request(k).count;
          result.pages_kept += request(k).count;
          ++done_chunks_;
        } else {
          queue_.push_back(k);
        }
      }
      report();
      started_ = true;
      for (auto& s : sources_) start_locked(s);
      // Done, or nobody left to ask: no worker running and no manifest that
      // could still bring a holder.
      cv_.wait(lock, [&] { return finished() || (workers_ == 0 && pending_manifests_ == 0); });
      closed_ = true;
    }
    cv_.notify_all();
    // Workers return once finished (or with nothing left for them); threads_
    // no longer grows once closed_ is set.
    for (auto& t : threads_) t.join();
    for (const auto& s : sources_)
      if (s.out && s.reason.rfind("banned", 0) == 0)
        result.banned.push_back(s.source->name() + ": " + s.reason);
    result.pages_fetched = fetched_pages_;
    if (fatal_) return *fatal_;
    if (done_chunks_ < total) {
      std::string why;
      for (const auto& s : sources_) why += fmt::format("; {}: {}", s.source->name(), s.reason);
      return make_error(Errc::unavailable,
                        "no source can serve the rest: {} of {} chunks verified{}", done_chunks_,
                        total, why);
    }
    return ok_status();
  }

  uint32_t page_size() const { return page_size_; }
  const Bytes& page1() const { return page1_; }

  // A source whose manifest came after the run started and that holds the
  // run's head: it gets workers like the others. False when the run is over.
  bool add_source(ChunkSource* source) {
    std::lock_guard lock(mu_);
    if (closed_ || finished()) return false;
    sources_.push_back({source});
    if (started_) start_locked(sources_.back());  // else go() starts it with the others
    say(fmt::format("{}: joined the fetch of head {} (its manifest came late)", source->name(),
                    head_.size));
    return true;
  }
  // A line for o.log, serialised with the workers' lines.
  void note(const std::string& line) {
    std::lock_guard lock(mu_);
    say(line);
  }
  void manifest_settled() {
    {
      std::lock_guard lock(mu_);
      --pending_manifests_;
    }
    cv_.notify_all();
  }

 private:
  void start_locked(SourceState& s) {
    for (size_t i = 0; i < std::max<size_t>(1, o_.parallel); ++i) {
      ++workers_;
      threads_.emplace_back([this, &s] {
        work(s);
        {
          std::lock_guard lock(mu_);
          --workers_;
        }
        cv_.notify_all();
      });
    }
  }

  void say(const std::string& line) {
    if (o_.log) o_.log(line);
  }
  void report() {
    if (o_.progress) o_.progress(done_pages_, head_.page_count);
  }
  bool finished() const { return fatal_.has_value() || done_chunks_ == chunk_count(); }

  void work(SourceState& s) {
    for (;;) {
      uint32_t k;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return finished() || s.out || !queue_.empty() || in_flight_ == 0; });
        if (finished() || s.out || queue_.empty()) return;
        k = queue_.front();
        queue_.pop_front();
        ++in_flight_;
      }
      const SnapshotRequest req = request(k);
      Fetched f = fetch_one(*s.source, req, head_);
      std::optional<Error> write_error;
      if (f.chunk) write_error = write(k, *f.chunk);
      std::chrono::milliseconds pause{0};
      {
        std::lock_guard lock(mu_);
        --in_flight_;
        if (write_error) {
          fatal_ = write_error;
        } else if (f.chunk) {
          s.failures = 0;
          ++done_chunks_;
          done_pages_ += req.count;
          fetched_pages_ += req.count;
          report();
        } else {
          queue_.push_front(k);
          if (s.out) {
            // Another request of this source already got it banned or dropped.
          } else if (f.lie) {
            s.out = true;
            s.reason = "banned: " + f.lie->to_string();
            say(fmt::format("{}: banned for this run: pages {}..{} did not verify: {}",
                            s.source->name(), req.first_page,
                            uint64_t{req.first_page} + req.count - 1, f.lie->to_string()));
          } else if (f.transient->code == Errc::not_found) {
            s.out = true;
            s.reason = "dropped: " + f.transient->message;
            say(fmt::format("{}: dropped: {}", s.source->name(), f.transient->message));
          } else if (++s.failures > o_.retries) {
            s.out = true;
            s.reason = fmt::format("dropped after {} failures in a row: {}", s.failures,
                                   f.transient->to_string());
            say(fmt::format("{}: {}", s.source->name(), s.reason));
          } else {
            pause = std::min(o_.backoff * (1 << std::min(s.failures - 1, 5)),
                             std::chrono::milliseconds(5000));
            s.reason = "failing: " + f.transient->to_string();
          }
        }
      }
      cv_.notify_all();
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
  }

  // Writes a verified chunk: its pages (page 1 only at the very end, kept in
  // memory), fdatasync, then its progress record (not for chunk 0: page 1 is
  // not on disk until the end, so a resumed run fetches chunk 0 again).
  std::optional<Error> write(uint32_t k, SnapshotChunk& c) {
    const std::filesystem::path name = part_path(o_.out);
    {
      std::lock_guard lock(mu_);
      if (page_size_ == 0) page_size_ = c.page_size;
      // Verified pages bind their size (the leaf hashes every byte), so a
      // different size means two heads' worth of pages: refuse, never mix.
      if (c.page_size != page_size_)
        return make_error(Errc::internal,
                          "chunk of pages from {} has {}-byte pages, earlier chunks {}-byte",
                          c.first_page, c.page_size, page_size_);
    }
    uint32_t skip = 0;
    if (c.first_page == 1) {
      Bytes p1(c.page(0).begin(), c.page(0).end());
      canonicalize_page1_header(p1);
      std::lock_guard lock(mu_);
      page1_ = std::move(p1);
      skip = 1;
    }
    if (skip < c.count) {
      ByteView rest = ByteView(c.pages).subspan(size_t{skip} * c.page_size);
      if (auto s = file_io::pwrite_all(part_fd_, rest,
                                       uint64_t{c.first_page - 1 + skip} * c.page_size, name);
          !s.ok())
        return s.error();
      if (auto s = file_io::fdatasync_file(part_fd_, name); !s.ok()) return s.error();
    }
    if (k == 0) return std::nullopt;
    std::lock_guard lock(progress_mu_);
    const std::filesystem::path pname = progress_path(o_.out);
    if (auto s = file_io::write_all(progress_fd_,
                                    progress_record(c.first_page, c.count, c.page_size), pname);
        !s.ok())
      return s.error();
    if (auto s = file_io::fdatasync_file(progress_fd_, pname); !s.ok()) return s.error();
    return std::nullopt;
  }

  const SnapshotFetchOptions& o_;
  Head head_;
  uint32_t chunk_pages_;
  int part_fd_ = -1, progress_fd_ = -1;
  std::mutex mu_;  // everything below
  std::condition_variable cv_;
  std::deque<SourceState> sources_;  // a deque: workers hold references while it grows
  std::vector<std::thread> threads_;
  size_t workers_ = 0;  // threads still in work()
  size_t pending_manifests_;
  bool started_ = false;  // go() started the workers
  bool closed_ = false;   // go() stopped waiting: no more sources
  std::deque<uint32_t> queue_;
  size_t in_flight_ = 0;
  uint32_t done_chunks_ = 0;
  uint64_t done_pages_ = 0;
  uint32_t fetched_pages_ = 0;
  uint32_t page_size_ = 0;
  Bytes page1_;
  std::optional<Error> fatal_;
  std::mutex progress_mu_;  // appends to the progress file
};

}  // namespace

Result<SnapshotFetchResult> fetch_snapshot(const std::vector<ChunkSource*>& sources,
                                           const SnapshotFetchOptions& o) {
  auto say = [&o](const std::string& line) {
    if (o.log) o.log(line);
  };
  const std::filesystem::path part = part_path(o.out), prog = progress_path(o.out);
  if (std::filesystem::exists(o.out)) {
    // A run killed between the rename and removing its progress file: the
    // file is complete; check it against the progress file's head and finish.
    std::optional<Progress> done = read_progress(prog);
    if (done && !std::filesystem::exists(part) && done->head.verify(o.log_id).ok()) {
      auto check = verify_backup_file(o.out, done->head, o.log_id);
      if (check.ok() && check->page_count > 0) {
        SWL_TRY(write_head_json(o.out, done->head,
                                static_cast<uint32_t>(check->bytes / check->page_count)));
        std::error_code ec;
        std::filesystem::remove(prog, ec);
        SWL_TRY(file_io::fsync_parent(o.out));
        say(fmt::format(
            "{} was complete (an earlier run stopped just before removing its progress file)",
            o.out.string()));
        SnapshotFetchResult result;
        result.head = done->head;
        result.page_count = check->page_count;
        result.bytes = check->bytes;
        result.pages_kept = check->page_count;
        return result;
      }
    }
    return make_error(Errc::invalid_argument, "{} already exists (fetch never overwrites a file)",
                      o.out.string());
  }
  if (sources.empty()) return make_error(Errc::invalid_argument, "no source given");

  // 1. Manifests: every head is checked under the key before it counts.
  struct Offer {
    ChunkSource* source;
    SourceManifest manifest;
  };
  // Asked all at once (each call blocks up to the source's timeout), so a
  // source that accepts and never answers costs one timeout, not one per
  // such source. The fetch does not wait for the slowest (issue 14): once a
  // manifest names a verified head, the others get o.manifest_grace, then
  // the newest head among the answers in is chosen. A manifest coming later
  // goes to the run (join_late): its source joins if it holds the chosen head,
  // and a newer head there never restarts the run. An earlier run's progress
  // still wins: its head is looked for among all answers before starting over.
  struct Asked {
    std::mutex mu;  // everything below
    std::condition_variable cv;
    std::vector<std::optional<Result<SourceManifest>>> answers;
    size_t answered = 0;
    std::optional<std::chrono::steady_clock::time_point> first_usable;
    Run* run = nullptr;  // set once chosen: answers after that go to join_late
  } asked;
  asked.answers.resize(sources.size());
  auto usable = [&o](const Result<SourceManifest>& m) {
    return m.ok() && m->head.size > 0 && m->head.page_count > 0 && m->head.verify(o.log_id).ok();
  };
  std::optional<Progress> earlier = read_progress(prog);
  const bool resumable = earlier && earlier->head.verify(o.log_id).ok() &&
                         earlier->head.page_count > 0 && std::filesystem::exists(part);
  Head head;  // the chosen head: written before asked.run is set, read by join_late after
  auto join_late = [&](size_t i, Run& run) {
    ChunkSource* s = sources[i];
    const Result<SourceManifest>& m = *asked.answers[i];
    if (!m.ok()) {
      run.note(fmt::format("{}: no manifest (after the fetch started): {}", s->name(),
                           m.error().to_string()));
    } else if (!usable(m)) {
      run.note(fmt::format("{}: ignored (late): its head does not verify or is empty", s->name()));
    } else if (same_head(m->head, head)) {
      run.add_source(s);
    } else if (m->head.size == head.size) {
      run.note(fmt::format(
          "{}: signed a different head at the same size {}: equivocation (see swarmlite audit); "
          "not used",
          s->name(), head.size));
    } else if (m->head.size > head.size) {
      // Newer than the run's head: it may still hold ours (docs/http-api.md
      // "Snapshots"); one page of it says.
      if (fetch_one(*s, {head.size, 1, 1}, head).chunk)
        run.add_source(s);
      else
        run.note(fmt::format("{}: came late with head {}, no longer holds head {}; not used",
                             s->name(), m->head.size, head.size));
    } else {
      run.note(
          fmt::format("{}: came late with the older head {}; not used", s->name(), m->head.size));
    }
  };
  // Declared in this order so the askers are joined before `run` and `asked`
  // go, and `decide` (the lock) is released before the askers are joined.
  std::optional<Run> run;
  std::vector<std::jthread> askers;
  askers.reserve(sources.size());
  for (size_t i = 0; i < sources.size(); ++i)
    askers.emplace_back([&, i] {
      Result<SourceManifest> m = sources[i]->manifest();
      const bool good = usable(m);
      Run* late = nullptr;
      {
        std::lock_guard lock(asked.mu);
        asked.answers[i] = std::move(m);
        ++asked.answered;
        if (good && !asked.first_usable) asked.first_usable = std::chrono::steady_clock::now();
        late = asked.run;
      }
      asked.cv.notify_all();
      if (late) {
        join_late(i, *late);
        late->manifest_settled();
      }
    });
  // Held from the choice until the run is set in asked.run, so every answer
  // is either read here or handed to join_late.
  std::unique_lock decide(asked.mu);
  auto names_earlier = [&] {
    for (const auto& a : asked.answers)
      if (a && a->ok() && same_head((*a)->head, earlier->head)) return true;
    return false;
  };
  for (;;) {
    if (asked.answered == sources.size()) break;
    if (asked.first_usable && (!resumable || names_earlier())) {
      const auto until = *asked.first_usable + o.manifest_grace;
      if (std::chrono::steady_clock::now() >= until) break;
      asked.cv.wait_until(decide, until);
    } else {
      asked.cv.wait(decide);
    }
  }
  std::vector<ChunkSource*> answered;
  std::vector<Offer> offers;
  std::string refusals;
  for (size_t i = 0; i < sources.size(); ++i) {
    ChunkSource* s = sources[i];
    if (!asked.answers[i]) continue;  // late: join_late
    answered.push_back(s);
    auto& m = *asked.answers[i];
    if (!m.ok()) {
      refusals += fmt::format("; {}: {}", s->name(), m.error().to_string());
      say(fmt::format("{}: no manifest: {}", s->name(), m.error().to_string()));
      continue;
    }
    if (auto v = m->head.verify(o.log_id); !v.ok()) {
      refusals += fmt::format("; {}: head at size {} does not verify: {}", s->name(), m->head.size,
                              v.error().to_string());
      say(fmt::format("{}: ignored: its head does not verify: {}", s->name(),
                      v.error().to_string()));
      continue;
    }
    if (m->head.size == 0 || m->head.page_count == 0) {
      refusals += fmt::format("; {}: an empty database (size 0)", s->name());
      continue;
    }
    offers.push_back({s, *m});
  }
  if (offers.empty())
    return make_error(Errc::unavailable,
                      "no source offers a snapshot at a head signed by the key{}", refusals);
  const Offer* newest = &offers[0];
  for (const Offer& of : offers)
    if (of.manifest.head.size > newest->manifest.head.size) newest = &of;
  head = newest->manifest.head;

  // 2. An earlier run's progress: kept if some source still holds its head.
  std::vector<SourceState> holders;
  bool resume = false;
  if (resumable) {
    for (const Offer& of : offers)
      if (same_head(of.manifest.head, earlier->head)) holders.push_back({of.source});
    if (holders.empty()) {
      // The manifest names a source's newest head; an older one may still be
      // held (docs/http-api.md "Snapshots"): one page of it says.
      for (ChunkSource* s : answered) {
        Fetched f = fetch_one(*s, {earlier->head.size, 1, 1}, earlier->head);
        if (f.chunk) holders.push_back({s});
      }
    }
    if (!holders.empty()) {
      resume = true;
      head = earlier->head;
      say(fmt::format("resuming the fetch of head {} ({} chunk(s) already verified)", head.size,
                      earlier->chunks.size()));
    } else {
      say(fmt::format(
          "head {} of the earlier run is no longer held by any source; starting over at head {}",
          earlier->head.size, head.size));
    }
  }
  if (!resume) {
    for (const Offer& of : offers)
      if (same_head(of.manifest.head, head))
        holders.push_back({of.source});
      else if (of.manifest.head.size == head.size)
        say(fmt::format(
            "{}: signed a different head at the same size {}: equivocation (see swarmlite audit); "
            "not used",
            of.source->name(), head.size));
  }
  uint32_t chunk_pages = o.chunk_pages;
  if (resume) {
    chunk_pages = earlier->chunk_pages;
  } else if (chunk_pages == 0) {
    for (const Offer& of : offers)
      if (same_head(of.manifest.head, head) && of.manifest.chunk_pages > 0)
        chunk_pages = chunk_pages == 0 ? of.manifest.chunk_pages
                                       : std::min(chunk_pages, of.manifest.chunk_pages);
    if (chunk_pages == 0) chunk_pages = kDefaultChunkPages;
  }

  // 3. The files.
  file_io::Fd part_fd, prog_fd;
  std::set<uint32_t> kept;
  uint32_t page_size = 0;
  if (resume) {
    SWL_ASSIGN(part_fd, file_io::open(part, O_RDWR));
    SWL_ASSIGN(prog_fd, file_io::open(prog, O_WRONLY | O_APPEND));
    page_size = earlier->page_size;
    for (auto [first, count] : earlier->chunks) {
      if (first == 0 || (first - 1) % chunk_pages != 0) continue;
      uint32_t k = (first - 1) / chunk_pages;
      if (count == std::min<uint64_t>(chunk_pages, head.page_count - first + 1) && k != 0)
        kept.insert(k);
    }
    // Records after a torn one were not trusted: cut the file to what was
    // read, so new records follow valid ones.
    SWL_TRY(file_io::truncate(
        prog_fd.get(), kProgressHeaderBytes + kProgressRecordBytes * earlier->chunks.size(), prog));
  } else {
    SWL_ASSIGN(part_fd, file_io::open(part, O_RDWR | O_CREAT | O_TRUNC, 0644));
    SWL_ASSIGN(prog_fd, file_io::open(prog, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    SWL_TRY(file_io::write_all(prog_fd.get(), progress_header(chunk_pages, head), prog));
    SWL_TRY(file_io::fdatasync_file(prog_fd.get(), prog));
    SWL_TRY(file_io::fsync_parent(o.out));
  }

  SnapshotFetchResult result;
  result.head = head;
  result.page_count = head.page_count;
  run.emplace(o, head, chunk_pages, std::move(holders), sources.size() - answered.size());
  asked.run = &*run;
  decide.unlock();
  SWL_TRY(run->go(part_fd.get(), prog_fd.get(), kept, page_size, result));

  // 4. The whole file checked (with page 1 still only in memory), then page 1
  // and at once the name: a .part holding a complete database exists only
  // for one fsync before the rename (docs/formats/snapshot.md).
  page_size = run->page_size();
  if (run->page1().size() != page_size)
    return make_error(Errc::internal, "fetch: page 1 was not fetched");
  result.bytes = uint64_t{head.page_count} * page_size;
  SWL_TRY(file_io::truncate(part_fd.get(), result.bytes, part));
  {
    // The state root over page 1 from memory and pages 2.. read back from the
    // file, in blocks of up to 256 pages: what verify_backup_file computes
    // once page 1 is on disk. This is the one check of the file as written
    // (every page already verified in its chunk); it is not repeated after the
    // rename, which writes only page 1, hashed here (docs/formats/snapshot.md).
    MerkleTree tree;
    const uint32_t lock_page = lock_byte_page(page_size);
    constexpr uint32_t kBlockPages = 256;
    Bytes block;
    for (uint32_t first = 1; first <= head.page_count; first += kBlockPages) {
      const uint32_t n = std::min(kBlockPages, head.page_count - first + 1);
      block.resize(size_t{n} * page_size);
      SWL_TRY(file_io::pread_exact(part_fd.get(), block, uint64_t{first - 1} * page_size, part));
      for (uint32_t i = 0; i < n; ++i) {
        const uint32_t pgno = first + i;
        if (pgno == lock_page) {
          tree.append(lock_byte_leaf(page_size));
          continue;
        }
        const ByteView page = pgno == 1 ? ByteView(run->page1())
                                        : ByteView(block).subspan(size_t{i} * page_size, page_size);
        tree.append(page_leaf_hash(pgno, page));
      }
    }
    if (tree.root() != head.state_root)
      return make_error(
          Errc::root_mismatch,
          "fetch: the pages of {} give state root {}, not the head's {} (size {}); progress kept",
          part.string(), to_hex(tree.root()), to_hex(head.state_root), head.size);
  }
  SWL_TRY(write_head_json(o.out, head, page_size));
  SWL_TRY(file_io::pwrite_all(part_fd.get(), run->page1(), 0, part));
  SWL_TRY(file_io::fsync_file(part_fd.get(), part));
  SWL_TRY(part_fd.close(part));
  std::error_code ec;
  std::filesystem::rename(part, o.out, ec);
  if (ec)
    return make_error(Errc::io_error, "renaming {} to {}: {}", part.string(), o.out.string(),
                      ec.message());
  SWL_TRY(file_io::fsync_parent(o.out));
  std::filesystem::remove(prog, ec);
  return result;
}

}  // namespace swarmlite::client
