// `swarmlite fetch`: a verified copy of a database from untrusted sources
// (docs/formats/snapshot.md, docs/operations.md "Getting a verified copy").
// Every source is asked for its manifest; once one names a head that verifies
// under the log's key, the others get a short grace window, then the newest
// verified head among those in is chosen; its chunks are spread over the
// sources holding it (a work queue, a few requests in flight per source) and
// each chunk is checked against the head (verify_snapshot_chunk) before a byte
// is written. A source whose manifest comes later joins while chunks are
// fetched if it holds the chosen head (a newer head never restarts the run).
// fetch_snapshot returns once every manifest call has returned (bounded by the
// sources' timeouts), since the calls use the caller's sources.
//
// On disk, next to `out`:
//   out.part           the pages at their offsets; page 1 is written last, so a
//                      partial file is never a valid SQLite database
//   out.part.progress  append-only: the head, then one record per verified
//                      chunk, appended after its pages were fdatasync'ed
// A run that stops (killed, no source left) keeps both; the next run with the
// same head still held somewhere keeps the verified chunks and fetches the
// rest, else it starts over at the newest head. At the end: fsync, the whole
// file checked (verify_backup_file), out.head.json written, out.part renamed
// to out, the directory fsync'ed, the progress file removed.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/head.h"
#include "core/keys.h"
#include "core/result.h"
#include "sqlbridge/engine/snapshot_chunk.h"

namespace swarmlite::client {

// What a source says it holds (unverified until the fetcher checks the head).
struct SourceManifest {
  Head head;
  uint32_t page_size = 0;
  uint32_t chunk_pages = 0;  // the source's suggested chunk size
};

// One place chunks come from (an HTTP node, a test's liar). Each call is one
// request; the fetcher calls one source from several threads at once.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  virtual std::string name() const = 0;
  // Pins a snapshot at the source's newest head.
  virtual Result<SourceManifest> manifest() = 0;
  // The encoded chunk (snapshot_chunk.h). Errc::not_found: the source no
  // longer holds that head ("gone").
  virtual Result<Bytes> chunk(const SnapshotRequest& request) = 0;
};

struct SnapshotFetchOptions {
  PublicKey log_id;
  std::filesystem::path out;  // must not exist
  uint32_t chunk_pages = 0;   // 0: the smallest suggestion of the sources holding the head
  size_t parallel = 2;        // requests in flight per source
  int retries = 3;            // failures in a row before a source is dropped for the run
  std::chrono::milliseconds backoff{200};  // first retry delay, doubled each time
  // How long the fetch waits for the other manifests once the first one naming
  // a verified head is in (issue 14). Sources answering later join the run as
  // holders of the chosen head (docs/operations.md "Getting a verified copy").
  std::chrono::milliseconds manifest_grace{300};
  // Called (from any fetch thread, serialised) with pages done / total.
  std::function<void(uint64_t, uint64_t)> progress;
  // One line per event worth telling a person (resume, ban, drop, restart).
  std::function<void(const std::string&)> log;
};

struct SnapshotFetchResult {
  Head head;
  uint32_t page_count = 0;
  uint64_t bytes = 0;
  uint32_t pages_fetched = 0;       // in this run
  uint32_t pages_kept = 0;          // verified by an earlier run
  std::vector<std::string> banned;  // "source: reason"
};

// Errors: unavailable (no source with a verified head, or every source banned
// or dropped before the end: progress kept, run again), invalid_argument
// (`out` exists), io_error, root_mismatch (the finished file does not check:
// a bug, since each chunk was checked).
Result<SnapshotFetchResult> fetch_snapshot(const std::vector<ChunkSource*>& sources,
                                           const SnapshotFetchOptions& options);

// The HTTP source: GET url/db/snapshot and /db/snapshot/pages (docs/http-api.md
// "Snapshots"). Only with the network layer (SWARMLITE_CLIENT_HAVE_NET).
std::unique_ptr<ChunkSource> http_chunk_source(const std::string& url,
                                               std::chrono::milliseconds timeout);

// The peer-protocol source (docs/protocol.md "Snapshots"): `address` is a
// node's peer address "host:port" (its --listen). Connects on first use (more
// connections when called from several threads at once, one request in flight
// on each), says Hello with a random node id and no head, and sends GetSnapshot
// and GetSnapshotPages. `log_id`: the log followed (a node of another log
// answers wrong_log). Only with the network layer (SWARMLITE_CLIENT_HAVE_NET).
std::unique_ptr<ChunkSource> peer_chunk_source(const std::string& address, const PublicKey& log_id,
                                               std::chrono::milliseconds timeout);

// A `--from` item: "http://…" (or any "scheme://") is an HTTP API; anything
// else a peer address "host:port" (peer_chunk_source).
bool is_http_source(std::string_view from);

// out + ".part", out + ".part.progress", out + ".head.json".
std::filesystem::path part_path(const std::filesystem::path& out);
std::filesystem::path progress_path(const std::filesystem::path& out);
std::filesystem::path head_json_path(const std::filesystem::path& out);

}  // namespace swarmlite::client
