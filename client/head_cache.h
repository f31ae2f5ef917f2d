// The verified-head cache of the verifying client (docs/client.md "The head
// cache"): per log, the heads whose signature a client has verified, by size.
//
// The rule: a log has one state per size. A second validly signed head of a
// size already seen that differs in log root, state root or page count is the
// primary signing two histories (core/evidence.h, same_size): observe() refuses
// it with a ClientErrorKind::equivocation error carrying the Evidence, and the
// cache keeps the head it had. A head equal but for its signing time is the same
// state (the primary may re-sign a size) and is accepted. Older heads are not
// refused — a proof may honestly come from a peer that is behind — but
// observe() says how far behind the newest head seen for the log it is
// (Freshness), so a caller can decide.
//
// What it cannot see: a fork between heads of different sizes (that needs a
// consistency path, which a query proof does not carry) and a same-size
// conflict with a head it has evicted (at most max_sizes_per_log sizes are kept
// per log, the newest; at most max_logs logs, the least recently observed go).
//
// In memory, optionally loaded from and saved to a file (format in
// docs/client.md): every head in the file is checked against its log id when
// loaded. Not thread-safe (one thread at a time).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <variant>

#include "client/client_error.h"
#include "core/head.h"

namespace swarmlite::client {

struct HeadCacheOptions {
  size_t max_sizes_per_log = 4096;  // heads kept per log, the largest sizes
  size_t max_logs = 64;             // logs kept, the most recently observed
};

// How an answer's head stands against the newest head verified for its log
// (including that answer's own head).
struct Freshness {
  uint64_t newest_size = 0;     // the largest verified size seen for this log
  int64_t newest_time_ms = 0;   // that head's signing time
  uint64_t entries_behind = 0;  // newest_size - head.size
  int64_t ms_behind = 0;        // newest_time_ms - head.time_ms when behind, else 0
};

class HeadCache {
 public:
  explicit HeadCache(HeadCacheOptions options = {});

  // Records `head`. Precondition: its signature verified under head.log_id (the
  // client calls this after the verifier accepted the proof). Errors:
  // equivocation (evidence attached; the cache is unchanged).
  ClientResult<Freshness> observe(const Head& head);

  std::optional<Head> newest(const PublicKey& log_id) const;
  std::optional<Head> at(const PublicKey& log_id, uint64_t size) const;
  size_t head_count() const;
  void clear();

  // The file (docs/client.md "Head cache file"). load(): a missing file is an
  // empty cache; a file over the cap, truncated, with trailing bytes, an unknown
  // version or a head that does not verify under its log id is a `file` error
  // naming the offset; two heads in it that equivocate are an `equivocation`
  // error. save(): durable replace (the old file stays on failure).
  static ClientResult<HeadCache> load(const std::filesystem::path& path, HeadCacheOptions options = {});
  ClientResult<std::monostate> save(const std::filesystem::path& path) const;

 private:
  struct Log {
    std::map<uint64_t, Head> heads;  // by size
    uint64_t last_use = 0;
  };
  struct KeyLess {
    bool operator()(const PublicKey& a, const PublicKey& b) const { return a.bytes < b.bytes; }
  };
  HeadCacheOptions options_;
  std::map<PublicKey, Log, KeyLess> logs_;
  uint64_t clock_ = 0;
};

}  // namespace swarmlite::client
