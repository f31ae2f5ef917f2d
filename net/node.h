// A swarm node (docs/protocol.md): listens for peers, dials the
// addresses it knows, follows the highest valid head it sees, fetches missing
// entries in verified batches, hands them to the backend to apply, serves its
// log to others, relays heads it holds, exchanges addresses, bans peers that
// send invalid data and stops following a log that equivocates.
//
// This header carries no Asio: the implementation (node.cpp) is a pimpl.
//
// Threads: the node runs one io thread (every socket, timer and piece of sync
// state lives there) and two worker threads (net/worker.h: one stores verified
// batches in the backend's Log — fsync —, the other runs the backend's apply).
// Public methods are thread-safe unless noted.
//
// Locking rule: the backend's log_mutex() guards its Log. The node holds it
// around every Log call it makes from any thread (reading entries/proofs to
// serve, storing a batch); whoever else touches the Log (the Primary's execute,
// the Replica's apply) holds it or is documented as doing so internally. The
// node never holds it while waiting on the network, and never around
// NodeBackend::apply (which locks on its own if it needs to).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/evidence.h"
#include "net/evidence_store.h"
#include "core/head.h"
#include "core/log.h"
#include "core/result.h"
#include "sqlbridge/engine/local_fault.h"

namespace swarmlite {
class SnapshotSource;  // sqlbridge/tools/snapshot_source.h
class PageServer;      // sqlbridge/engine/page_set.h
}

namespace swarmlite::net {

// The first entry seq this node can serve from `log` (Hello.first; 0: all):
// docs/protocol.md "First servable entry". Call with the log's mutex held.
uint64_t first_servable_entry(const Log& log);
// The same, from the log's view (core/log.h), read without log_mutex().
uint64_t first_servable_entry(const LogView& view);

// What the node needs from the thing that owns the log: a Primary (writes and
// signs; the node only serves and pushes) or a Replica (the node stores
// verified entries and asks it to apply them).
class NodeBackend {
 public:
  virtual ~NodeBackend() = default;
  virtual const PublicKey& log_id() const = 0;
  // The log; call only with log_mutex() held, except Log::view() (any thread,
  // no lock) and the entry reads core/log.h allows beside its writer.
  virtual const Log& log() const = 0;
  virtual std::mutex& log_mutex() const = 0;
  // True for the primary: it never fetches entries; its heads come from notify_new_head().
  virtual bool is_primary() const = 0;
  // Replica only (store thread, net/worker.h; log_mutex() NOT held): verifies and stores
  // entries [log().size(), +n) proven against `head` (Log::append_proven),
  // taking log_mutex() around the Log call. Nothing is stored on error.
  virtual Status store_entries(std::span<const Bytes> entries, const Head& head,
                               std::span<const Hash32> proof) = 0;
  // Replica only (apply thread, net/worker.h; log_mutex() NOT held): applies up
  // to `up_to` entries of the log to the database; returns the number applied
  // now. May take long, and runs while the store thread stores the next batch.
  // An error is reported and applying stops until restart.
  virtual Result<uint64_t> apply(uint64_t up_to) = 0;
  // Entries applied to the database so far (any thread).
  virtual uint64_t applied_size() const = 0;
  // Replica only (store thread, log_mutex() NOT held): a verified head for
  // entries the log already holds, newer than the stored head and covering at
  // least applied_size() — e.g. the head file was lost: store it (Log::set_head,
  // persisted) so proofs and /readyz work again without waiting for the next
  // write. The default refuses (a primary signs its own heads).
  virtual Status store_head(const Head& head);
};

// A backend over a bare Log: stores entries, "applies" nothing (applied_size
// follows the log). For relays that keep no database, and for tests.
class LogOnlyBackend : public NodeBackend {
 public:
  LogOnlyBackend(Log& log, bool primary) : log_(log), primary_(primary) {}
  const PublicKey& log_id() const override { return log_.log_id(); }
  const Log& log() const override { return log_; }
  Log& mutable_log() { return log_; }  // hold log_mutex()
  std::mutex& log_mutex() const override { return mu_; }
  bool is_primary() const override { return primary_; }
  Status store_entries(std::span<const Bytes> entries, const Head& head,
                       std::span<const Hash32> proof) override;
  Result<uint64_t> apply(uint64_t) override { return uint64_t{0}; }
  uint64_t applied_size() const override;
  Status store_head(const Head& head) override;

 private:
  Log& log_;
  bool primary_;
  mutable std::mutex mu_;
};

struct NodeOptions {
  std::string listen;                 // "host:port" to accept peers on ("" = do not listen; port 0 = ephemeral)
  std::string announce;               // address told to others; default: the bound listen address
  std::vector<std::string> seeds;     // --from addresses, dialled and redialled with backoff
  std::filesystem::path data_dir;     // where evidence.bin is kept ("" = nowhere)
  size_t max_connections = 64;        // inbound + outbound sessions
  size_t max_outbound = 8;            // dialled sessions kept
  size_t max_queued_responses = 8;    // per connection: requests answered but not yet sent
  // Inbound slots (docs/protocol.md "Connection slots"): at most this many
  // inbound sessions per address range (0 = no cap; a range is a /v4_bits IPv4
  // or /v6_bits IPv6 network). When the range or the node is full, a newcomer
  // closes the inbound session that did nothing useful for the longest, if
  // that is at least evict_idle_after; else it is refused.
  size_t max_inbound_per_range = 32;
  int inbound_range_v4_bits = 24;
  int inbound_range_v6_bits = 48;
  std::chrono::milliseconds evict_idle_after{30000};
  // Entries per GetEntries, at most kMaxBatchEntries (the protocol's cap;
  // larger values ask for that many). Catch-up stores and hands over one
  // batch at a time: 4096 small entries per batch caught up 1.1-1.2x faster
  // than 1000 (docs/performance.md "Larger catch-up batches"). batch_bytes
  // bounds a batch's memory either way.
  uint32_t batch_entries = 4096;
  size_t batch_bytes = 4u << 20;      // a server stops adding entries past this many bytes
  size_t max_frame = 0;               // 0 = kMaxFrameBytes
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds idle_timeout{90000};      // no frame received for this long: close
  std::chrono::milliseconds request_timeout{30000};   // a GetEntries unanswered this long: close
  std::chrono::milliseconds peers_interval{30000};    // GetPeers to each peer (also a keepalive)
  std::chrono::milliseconds ban_time{std::chrono::minutes(10)};
  std::chrono::milliseconds backoff_initial{250};
  std::chrono::milliseconds backoff_max{30000};
  bool handle_signals = false;        // SIGINT/SIGTERM stop the node (wait() then returns)
  // TCP_NODELAY on every peer socket, accepted and dialled (net/tcp_socket.h).
  // Off only for the replication benchmark's A/B run (docs/performance.md).
  bool tcp_no_delay = true;
};

struct PeerStatus {
  uint64_t session = 0;
  std::string address;       // announced (or dialled) address; remote endpoint if none
  std::string remote;        // socket's remote endpoint
  std::string node_id;       // hex
  bool outbound = false;
  uint64_t head_size = 0;    // newest head it announced
  uint64_t first = 0;        // first entry it serves (its Hello; 0: all)
  int64_t lag = 0;           // its head size minus ours (negative: it is behind)
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t entries_received = 0;  // verified entries stored from this peer
  int64_t connected_ms = 0;       // for how long
};

struct BanStatus {
  std::string key;
  std::string reason;
  int64_t remaining_ms = 0;
};

struct NodeStatus {
  std::string log_id;              // hex
  bool primary = false;
  std::string listen;              // bound address ("" = none)
  std::string announce;
  std::string node_id;             // hex
  uint64_t log_size = 0;           // entries stored (verified)
  uint64_t first_entry = 0;        // first entry stored and served (0: all; > 0 once compacted)
  std::optional<Head> head;        // newest stored head
  uint64_t best_size = 0;          // size of the highest valid head seen
  uint64_t applied_size = 0;       // entries applied to the database
  uint64_t entries_stored = 0;     // since start
  uint64_t entries_served = 0;     // since start
  uint64_t bytes_in = 0, bytes_out = 0;   // since start, all peers
  std::vector<PeerStatus> peers;
  std::vector<BanStatus> bans;
  std::optional<Evidence> evidence;       // set: the log equivocated, the node stopped following it
  // set: the evidence could not be written to data_dir/evidence.bin (durably);
  // retried with backoff, cleared once it is stored (docs/operations.md "Equivocation")
  std::optional<LocalFault> evidence_store_fault;
  std::optional<std::string> apply_error; // set: applying stopped (e.g. diverged)
  // set: storing or applying fails on this node's own I/O (disk full …); retried
  // with backoff, cleared by the next success (docs/operations.md "Local faults")
  std::optional<LocalFault> local_fault;
  size_t known_addresses = 0;
  // set: entries [first, second) that we need are held by no connected peer
  // (every peer ahead compacted them); only a snapshot helps (docs/protocol.md
  // "First servable entry")
  std::optional<std::pair<uint64_t, uint64_t>> unserved_entries;
  uint64_t snapshot_requests_served = 0;  // GetSnapshot + GetSnapshotPages answered, since start
};

// What a readiness probe needs (/readyz, docs/http-api.md "`/status`, `/readyz`,
// `/metrics`"): read on
// the caller's thread from state each part keeps thread-safe, never through a
// round trip to the node's io thread, so a probe does not wait while that
// thread is busy (the HTTP server answers /readyz on its own io thread).
struct NodeReadiness {
  std::optional<Head> head;  // newest stored head
  bool evidence = false;     // the log equivocated (NodeStatus::evidence is set)
  std::optional<LocalFault> evidence_store_fault;
  std::optional<std::string> apply_error;
  std::optional<LocalFault> local_fault;
};

class Node {
 public:
  Node(NodeBackend& backend, NodeOptions options);
  ~Node();  // stop()s
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Binds the listener (errors: bad address, port taken), loads stored
  // evidence, then starts the io and worker threads. Call once.
  Status start();
  // Stops accepting, closes sessions, lets the in-progress store/apply finish,
  // joins the threads. Idempotent; safe from any thread but the node's own.
  void stop();
  // Blocks until the node stopped (by stop() or, with handle_signals, a signal).
  void wait();
  // Called (on the io thread) once the node begins stopping, e.g. to stop an HTTP server.
  void on_stopping(std::function<void()> fn);

  // The bound listen port (after start; 0 when not listening).
  uint16_t listen_port() const;
  std::string node_id_hex() const;
  // The log has a new head (primary), or its first servable entry moved (a
  // compaction, docs/protocol.md "First servable entry"): push the head, with
  // the first entry, to every peer that was not told it.
  void notify_new_head();
  // The log grew but has no new head (a primary whose heads a background
  // signer makes, and announces with notify_new_head): only the size
  // listener below is called, on the caller's thread; nothing is posted to
  // the node's io thread.
  void notify_new_entries();

  // Size wake-ups (the HTTP API's min_size and level=strong waits,
  // docs/http-api.md "Read consistency"): `fn` is called whenever the backend's
  // applied_size() may have grown — after each apply (apply thread), after
  // each stored batch (a backend without a database "applies" by storing) and
  // in notify_new_head() and notify_new_entries() (the caller's thread). One listener: setting
  // replaces it, an empty fn removes it; once this returns the previous fn is not running. fn must
  // be cheap, must not block and must not call into the node.
  void set_size_listener(std::function<void()> fn);

  // Everything about the node; a round trip to its io thread (up to 5 s).
  NodeStatus status() const;
  // The parts of status() a readiness probe needs, without that round trip.
  NodeReadiness readiness() const;
  // status().best_size alone: the same round trip, nothing else built (the
  // HTTP API asks it for every level=strong read on a peer).
  uint64_t best_size() const;
  std::optional<Evidence> evidence() const;

  // Where GetSnapshot and GetSnapshotPages are answered from (docs/protocol.md
  // "Snapshots"): the SnapshotSource the HTTP backend makes for the same
  // database, so both transports share the pinned copies. Null (the default):
  // the node answers not_available. `source` must outlive stop(); the node
  // calls it only from its snapshot threads, which stop() joins.
  void set_snapshot_source(SnapshotSource* source);
  // Where GetPages and GetLeaves are answered from (docs/protocol.md "Page
  // service"): the node's Replica or Primary (their pins). Null (the default):
  // not_available "this node serves no pages". Same lifetime rule as above.
  void set_page_server(const PageServer* server);

 public:
  struct Impl;  // node.cpp only

 private:
  template <class F, class G>
  auto on_io_thread(F f, G fallback) const -> std::invoke_result_t<F&>;
  std::unique_ptr<Impl> impl_;
};

}  // namespace swarmlite::net
