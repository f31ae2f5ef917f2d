// `swarmlite peer --bootstrap`: starting an empty replica from a verified
// snapshot instead of replaying the log from entry 0 (docs/operations.md
// "Starting a peer from a snapshot", docs/protocol.md "Snapshots" and
// "Frontier"). Only with the network layer (SWARMLITE_CLIENT_HAVE_NET).
//
// The crash-safe order, all under the replica's data directory DATA:
//   1. fetch_snapshot into DATA/bootstrap.db (its .part/.progress make it
//      resumable; the file only appears once every page checked);
//   2. GetFrontier at the snapshot head's size from a peer, checked against
//      the head (verify_frontier), and the log created at that checkpoint in
//      DATA/log.bootstrap, then renamed to DATA/log;
//   3. DATA/bootstrap.db renamed to the replica's database file.
// The database file is the commit point: it appears only when a log at its
// checkpoint already exists, so a replica never opens a database without a
// log that vouches for it. A kill at any point leaves either nothing the
// replica opens (the next run resumes at the step it stopped in: the kept
// chunks, the verified file, the created log) or the finished pair.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "client/snapshot_fetch.h"
#include "core/head.h"
#include "core/keys.h"
#include "core/log_store.h"
#include "core/result.h"
#include "net/frontier.h"
#include "net/protocol.h"

namespace swarmlite::client {

// What a node says in its Hello (unverified).
struct PeerHello {
  std::optional<Head> head;
  uint64_t first = 0;  // its first servable entry
};

// Connects to the node at `address` (its --listen), exchanges Hellos and
// returns the node's. Errors: unavailable (no connection, refused, other log).
Result<PeerHello> peer_hello(const std::string& address, const PublicKey& log_id,
                             std::chrono::milliseconds timeout);

// GetFrontier{size} on a new connection to `address` (docs/protocol.md
// "Frontier"); the answer is unverified (verify_frontier). Errors: unavailable
// (no connection, a session error), not_found (the node refused: past its head
// or compacted away), bad_value (a wrong message or size).
Result<net::Frontier> peer_frontier(const std::string& address, const PublicKey& log_id,
                                    uint64_t size, std::chrono::milliseconds timeout);

// Checks an untrusted Frontier answer against `head` (signature already
// checked by the caller): entry size-1 decodes, has seq size-1 and the head's
// state root and page count, and its inclusion path folds to head.log_root.
// Errors: bad_value (entry), proof_failed / root_mismatch (path).
Result<net::LogFrontier> verify_frontier(const net::Frontier& answer, const Head& head);

enum class BootstrapMode { automatic, snapshot, replay };

struct BootstrapChoice {
  bool snapshot = false;
  std::string why;  // one line for the log
};

// The `--bootstrap auto` rule (docs/operations.md "Starting a peer from a
// snapshot"), pure: over the Hellos of the nodes reached, `newest` being the
// newest head among them that verified under the log's key. Snapshot when no
// node can serve entry 0 (every `first` > 0), or when newest.size >=
// kAutoSnapshotMinEntries and newest.size > kReplayEntriesPerPage *
// newest.page_count; replay otherwise (also when no node has a head yet:
// there is nothing to copy). A log that short replays in about a second, so
// a snapshot gains nothing there and only adds its requests to nodes that may
// not serve them.
inline constexpr uint64_t kReplayEntriesPerPage = 4;
inline constexpr uint64_t kAutoSnapshotMinEntries = 1000;
BootstrapChoice choose_bootstrap(const std::vector<PeerHello>& hellos,
                                 const std::optional<Head>& newest);

struct BootstrapOptions {
  PublicKey log_id;
  std::filesystem::path db;    // the replica's database file: must not exist
  std::filesystem::path data;  // its data directory: the log goes to data/"log"
  std::vector<ChunkSource*> sources;       // where pages come from (fetch_snapshot)
  std::vector<std::string> frontier_from;  // peer addresses asked for GetFrontier, in turn
  std::chrono::milliseconds timeout{60000};
  size_t parallel = 2;
  uint32_t chunk_pages = 0;  // pages per request (0: the sources' suggestion)
  LogStoreOptions log_options;
  std::function<void(uint64_t, uint64_t)> progress;  // as SnapshotFetchOptions
  std::function<void(const std::string&)> log;
};

struct BootstrapResult {
  Head head;                                  // the checkpoint the replica starts at
  std::optional<SnapshotFetchResult> fetched;  // unset when an earlier run had fetched it
  std::string frontier_from;                  // unset ("") when an earlier run made the log
};

// Steps 1-3 above, resuming at the step an earlier run stopped in. Afterwards
// Replica::open(db, data/"log", …) opens the pair at the checkpoint.
// Errors: invalid_argument (db exists; data/log exists and is not this
// snapshot's checkpoint), unavailable (no source or no frontier: what was
// done is kept, run again; when no node gave a usable frontier for the
// fetched head the fetched file is removed so the next run fetches a newer
// one), io_error.
Result<BootstrapResult> bootstrap_from_snapshot(const BootstrapOptions& options);

// DATA/bootstrap.db: the staged snapshot.
std::filesystem::path bootstrap_db_path(const std::filesystem::path& data);
// A bootstrap was started and not finished: the database is missing and the
// staged snapshot (or its .part) exists. Such a replica must bootstrap again,
// whatever --bootstrap says, never replay into a new empty database.
bool bootstrap_pending(const std::filesystem::path& db, const std::filesystem::path& data);

}  // namespace swarmlite::client
