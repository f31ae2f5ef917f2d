// The sync engine (docs/protocol.md "Where the rules live"): every rule of the
// protocol that decides what to send, whom to ban, what to fetch and when a log
// equivocated — with no sockets, no threads and no clock of its own. The node
// (node.cpp) feeds it events (a session opened, a message, a batch stored, a
// tick with the time) and carries out the actions it returns: send a message,
// close a session, dial an address, store a batch on the worker, …
//
// The log is read through NodeBackend (log(), under log_mutex()), so a test can
// run the engine over a LogOnlyBackend. Not thread-safe: the node's io thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/evidence.h"
#include "core/head.h"
#include "net/node.h"
#include "net/peer_set.h"
#include "net/protocol.h"
#include "sqlbridge/engine/local_fault.h"

namespace swarmlite::net {

// --- actions (outputs) --------------------------------------------------------

struct SendAction {
  uint64_t session = 0;
  Message message;
};
// Close a session: `flush` sends what is queued first (an Error reply), else it
// stops at once. The engine forgets a stopped session right away (its closed()
// event is then a no-op) and stops using a flushing one.
struct CloseAction {
  uint64_t session = 0;
  std::string reason;
  bool flush = true;
};
// Recorded already (bans()); for the log and for tests.
struct BanAction {
  uint64_t session = 0;  // 0: the session is gone
  std::vector<std::string> keys;
  std::string reason;
  Clock::time_point until;
};
struct DialAction {
  std::string address;
};
// Verify and store a batch off the io thread (NodeBackend::store_entries),
// then report with stored().
struct StoreAction {
  uint64_t session = 0;
  std::vector<std::string> ban_keys;  // who to ban if the data is invalid
  std::string who;
  Entries entries;
};
// Store a head for entries we hold (NodeBackend::store_head), then report with head_stored().
struct StoreHeadAction {
  Head head;
  std::string from;
};
// Apply up to this many entries (the worker).
struct ApplyAction {
  uint64_t up_to = 0;
};
// The log equivocated: stop applying, store the evidence durably.
struct EquivocatedAction {
  Evidence evidence;
  std::string how;
};
// Our GetEntries to `session` must be answered by `at` (Clock::time_point::max(): none out).
struct RequestDeadlineAction {
  uint64_t session = 0;
  Clock::time_point at;
};
// The handshake with `session` completed (its read deadline is now the idle timeout).
struct HandshakenAction {
  uint64_t session = 0;
};
// Answer a GetSnapshot, GetSnapshotPages, GetPages, GetLeaves or GetChanges
// off the io thread (SnapshotSource calls block, page reads pread and hash),
// the session's requests in order, then report with snapshot_answered()
// (docs/protocol.md "Snapshots", "Page service").
using ServedRequest = std::variant<GetSnapshot, GetSnapshotPages, GetPages, GetLeaves, GetChanges>;
struct SnapshotAction {
  uint64_t session = 0;
  ServedRequest request;
};

using Action = std::variant<SendAction, CloseAction, BanAction, DialAction, StoreAction,
                            StoreHeadAction, ApplyAction, EquivocatedAction, RequestDeadlineAction,
                            HandshakenAction, SnapshotAction>;
using Actions = std::vector<Action>;

// --- per-session state --------------------------------------------------------

struct PeerState {
  uint64_t id = 0;
  bool outbound = false;
  std::string dialled;          // outbound: the address we dialled
  std::string remote, remote_ip;
  std::string range;            // inbound: address_range of remote_ip
  bool ready = false;           // Hello accepted
  bool closing = false;         // a close (after flush) was asked for
  uint64_t node_id = 0;         // from its Hello
  std::string announced;        // its listen address as announced (0.0.0.0 replaced by its IP)
  uint64_t head_size = 0;       // newest head it announced
  uint64_t first = 0;           // first entry it serves (its Hello or latest Head; 0: all)
  size_t snapshot_requests = 0; // its snapshot requests queued or being answered
  uint64_t told_size = 0;       // newest head of ours it was sent (Hello or HeadMsg)
  uint64_t told_first = 0;      // our first servable entry as last sent to it
  Clock::time_point connected_at, last_useful, last_peers_request{};
  uint64_t last_used = 0;       // fetch counter when last asked
  std::optional<GetEntries> request;  // our GetEntries in flight
  std::optional<Head> request_anchor; // our head when we asked
  uint64_t entries_received = 0;

  // Who to ban for what this session sent.
  std::vector<std::string> ban_keys() const;
  std::string name() const;
};

// --- the engine -----------------------------------------------------------------

class SyncEngine {
 public:
  // `apply_stopped`: true once applying stopped for good (the worker's apply error).
  // `features`: the Hello's capability bits (kFeatureChanges, …) as of each
  // Hello sent (any thread may change what it returns; none: 0).
  SyncEngine(const NodeBackend& backend, const NodeOptions& options, uint64_t node_id,
             std::function<bool()> apply_stopped = {}, std::function<uint64_t()> features = {});

  // Before anything else: our announced address, the seeds (--from) and the
  // evidence loaded from disk, if any.
  void start(const std::string& announce, std::optional<Evidence> evidence);

  // Sessions. `outbound`: we dialled `address`; inbound: `address` is "".
  Actions opened(uint64_t id, bool outbound, const std::string& address, const std::string& remote,
                 const std::string& remote_ip, Clock::time_point now);
  Actions closed(uint64_t id, const std::string& reason, Clock::time_point now);
  Actions dial_failed(const std::string& address, Clock::time_point now);
  Actions message(uint64_t id, Message&& m, Clock::time_point now);
  // A frame or message that did not decode (SessionEvents::on_undecodable).
  Actions undecodable(uint64_t id, bool frame, const Error& e, Clock::time_point now);

  // Results of the worker's jobs.
  Actions stored(uint64_t id, const std::vector<std::string>& ban_keys, const std::string& who,
                 uint64_t n, const Head& head, const Status& st, Clock::time_point now);
  // A StoreAction that was not run: the log did not end where its batch
  // begins (the batch before it, fetched while it was stored, failed). Nobody
  // is to blame; fetching goes on from the log's end.
  Actions store_skipped(Clock::time_point now);
  Actions head_stored(uint64_t size, const std::string& from, const Status& st);
  // One SnapshotAction of `id` was answered (or dropped).
  void snapshot_answered(uint64_t id);

  // Every kTick: dial, ask for addresses, relay, fetch, expire bans.
  Actions tick(Clock::time_point now);
  // The primary's log has a new head: push it.
  Actions new_local_head();

  // State, for status() and tests.
  const std::map<uint64_t, PeerState>& peers() const { return peers_; }
  std::vector<Ban> bans(Clock::time_point now) { return bans_.active(now); }
  const std::optional<Evidence>& evidence() const { return evidence_; }
  const std::optional<Head>& best_head() const { return best_head_; }
  const AddressBook& book() const { return book_; }
  uint64_t entries_stored() const { return entries_stored_; }
  uint64_t entries_served() const { return entries_served_; }
  // Set while we need entries that every peer ahead of us compacted away:
  // nobody connected can serve them; a snapshot is the way on
  // (docs/protocol.md "First servable entry").
  const std::optional<EntryRange>& unserved() const { return unserved_; }
  // Local fault of storing (docs/operations.md "Local faults"): never a ban.
  const FaultState& store_fault() const { return store_fault_; }
  Hello make_hello() const;

 private:
  void send(Actions& out, PeerState& p, Message m);
  void close(Actions& out, PeerState& p, const std::string& reason);
  void stop(Actions& out, uint64_t id, const std::string& reason, Clock::time_point now);
  void misbehaved(Actions& out, PeerState& p, const std::string& reason, Clock::time_point now);
  PeerState* find(uint64_t id);
  bool make_room(Actions& out, PeerState& newcomer, Clock::time_point now);
  void on_hello(Actions& out, PeerState& p, Hello&& h, Clock::time_point now);
  void on_head(Actions& out, PeerState& p, const Head& h, Clock::time_point now);
  void on_get_entries(Actions& out, PeerState& p, const GetEntries& g, Clock::time_point now);
  void on_entries(Actions& out, PeerState& p, Entries&& e, Clock::time_point now);
  void on_get_peers(Actions& out, PeerState& p);
  void on_peers(const Peers& p);
  void on_evidence(Actions& out, PeerState& p, const Evidence& e, Clock::time_point now);
  void on_error(Actions& out, PeerState& p, const ErrorMsg& e, Clock::time_point now);
  void on_snapshot_request(Actions& out, PeerState& p, ServedRequest r, Clock::time_point now);
  void on_get_frontier(Actions& out, PeerState& p, const GetFrontier& g, Clock::time_point now);
  void check_head(Actions& out, const Head& h, const std::string& from);
  void schedule_fetch(Actions& out, Clock::time_point now);
  void relay_head(Actions& out);
  // Sends `head` (first servable entry `first`) to a ready session not told
  // it yet; the second form, our stored head. Returns whether it sent.
  bool tell_head(Actions& out, PeerState& s, const Head& head, uint64_t first);
  void tell_head(Actions& out, PeerState& s);
  void equivocation(Actions& out, Evidence e, const std::string& how);
  std::set<std::string> session_addresses() const;

  const NodeBackend& backend_;
  NodeOptions opt_;
  uint64_t node_id_;
  PublicKey log_id_;
  std::function<bool()> apply_stopped_;
  std::function<uint64_t()> features_;
  std::string announce_;

  std::map<uint64_t, PeerState> peers_;
  std::set<std::string> dialling_;
  std::set<std::string> self_addresses_;  // dialled addresses that turned out to be us
  AddressBook book_;
  BanList bans_;
  std::optional<Head> best_head_;
  // The newest head a stored batch was proven against (it extends our log): the
  // anchor of the next request when it is newer than our stored head, which a
  // catch-up of several batches leaves behind (schedule_fetch).
  std::optional<Head> proven_head_;
  // Fetching overlaps storing (docs/protocol.md "Following the log"): one
  // GetEntries may be out while the batch before it is being stored, so at
  // most kMaxStoresPending batches wait for the store thread.
  static constexpr int kMaxStoresPending = 2;
  bool request_out_ = false;    // a GetEntries of ours is out
  int stores_pending_ = 0;      // StoreActions not yet answered by stored()/store_skipped()
  uint64_t pending_end_ = 0;    // with stores pending: where the last of them ends
  std::optional<Head> pending_head_;  // ... and the (verified) head it is proven against
  bool draining_ = false;  // a store failed: the batches after it are skipped; fetch after them
  uint64_t fetch_counter_ = 0;
  uint64_t relayed_size_ = 0;
  uint64_t relayed_first_ = 0;  // our first servable entry as last pushed
  uint64_t adopting_size_ = 0;  // a received head being stored by store_head (check_head)
  std::optional<Evidence> evidence_;
  FaultState store_fault_;
  uint64_t entries_stored_ = 0, entries_served_ = 0;
  std::optional<EntryRange> unserved_;
};

// Snapshot requests one session may have queued or being answered; one more
// is a bad_request and the session is closed (docs/protocol.md "Snapshots").
inline constexpr size_t kMaxSnapshotRequestsPerSession = 8;

}  // namespace swarmlite::net
