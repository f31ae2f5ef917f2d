// The node's pure bookkeeping, kept apart from sockets so it can be tested with
// a fake clock (docs/protocol.md):
//  - AddressBook: addresses learnt from --from, Hello and Peers messages;
//    bounded, deduplicated, with per-address reconnect backoff;
//  - BanList: who misbehaved, why, and until when;
//  - choose_source / plan_batch: which peer to ask for entries, and for which.
// Not thread-safe: the node uses them from its io thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace swarmlite::net {

using Clock = std::chrono::steady_clock;

struct BackoffPolicy {
  std::chrono::milliseconds initial{250};
  std::chrono::milliseconds max{30000};
};

class AddressBook {
 public:
  // `self`: our own announced address, never stored. `cap`: addresses kept;
  // seeds (--from) are pinned and never evicted.
  AddressBook(size_t cap, std::string self, BackoffPolicy backoff = {});

  // Adds a syntactically valid "host:port" (others are ignored). Returns true if new.
  bool add(const std::string& address, bool seed = false);
  bool contains(const std::string& address) const { return entries_.count(address) != 0; }
  size_t size() const { return entries_.size(); }

  // Dial outcome bookkeeping: a failure doubles the address's backoff (from
  // `initial` up to `max`); a completed handshake resets it. A non-seed
  // address that failed `kForgetAfterFailures` times in a row is forgotten.
  void on_dial_failed(const std::string& address, Clock::time_point now);
  void on_connected(const std::string& address);
  static constexpr int kForgetAfterFailures = 8;

  // Up to `n` addresses not in `exclude` whose backoff has expired, seeds first,
  // then those that failed least recently. Marks them as dialled at `now`
  // (they are not returned again until a failure or success is reported, or
  // `now` passes their backoff).
  // `seeds_only`: consider only seeds (redialled even when the outbound slots
  // are taken by learnt addresses, so a node always finds its way back).
  std::vector<std::string> pick_to_dial(size_t n, const std::set<std::string>& exclude,
                                        Clock::time_point now, bool seeds_only = false);
  // Up to `n` known addresses (for a Peers message), excluding `exclude`.
  std::vector<std::string> sample(size_t n, const std::set<std::string>& exclude) const;

 private:
  struct Info {
    bool seed = false;
    int failures = 0;
    Clock::time_point next_try{};  // not before
    uint64_t added = 0;            // insertion counter, for eviction order
  };
  void evict_one();
  std::chrono::milliseconds backoff_for(int failures) const;

  size_t cap_;
  std::string self_;
  BackoffPolicy backoff_;
  uint64_t counter_ = 0;
  std::map<std::string, Info> entries_;
};

struct Ban {
  std::string key;     // an announced/dialled "host:port", or "node:<hex id>"
  std::string reason;  // what the node sent that was invalid
  Clock::time_point until;
};

class BanList {
 public:
  explicit BanList(size_t cap = 1024) : cap_(cap) {}
  // Bans `key` until now + duration (extends an existing ban, keeps the new reason).
  void ban(const std::string& key, const std::string& reason, Clock::time_point now,
           Clock::duration duration);
  // The active ban of `key`, if any (expired bans are dropped on the way).
  std::optional<Ban> find(const std::string& key, Clock::time_point now);
  std::vector<Ban> active(Clock::time_point now);

 private:
  void expire(Clock::time_point now);
  size_t cap_;
  std::map<std::string, Ban> bans_;
};

// --- inbound slots -----------------------------------------------------------
// (docs/protocol.md "Connection slots")

// The address range an inbound connection counts against: the network of
// `ip` (text form) with its first `v4_bits` (IPv4, also IPv4-mapped IPv6) or
// `v6_bits` (IPv6) bits kept, as "10.1.2.0/24" or "2001:db8::/48". A bit count
// of 32 / 128 makes every address its own range. "" when `ip` is not an address.
std::string address_range(const std::string& ip, int v4_bits = 24, int v6_bits = 48);

// An inbound session, as far as eviction cares.
struct InboundInfo {
  uint64_t id = 0;
  std::string range;             // address_range of its remote address
  Clock::time_point last_useful; // connect time, or the last time it fetched
                                 // from us or sent us a new head or entries
  bool busy = false;             // our request is out to it: keep it
};

// The inbound session to close to make room for a new one: among those in
// `range` ("" = any range) that are not busy and did nothing useful for at
// least `idle_after`, the one idle the longest. nullopt: nobody is idle
// enough (then the newcomer is refused instead).
std::optional<uint64_t> choose_eviction(std::span<const InboundInfo> sessions, const std::string& range,
                                        Clock::time_point now, Clock::duration idle_after);

// --- sync planning ---------------------------------------------------------

// What the node knows about one connected, handshaken peer.
struct SourceInfo {
  uint64_t id = 0;             // the node's session id
  uint64_t head_size = 0;      // size of the newest head it announced (it holds those entries)
  uint64_t last_used = 0;      // fetch counter when last asked (0 = never): round robin
  bool busy = false;           // has our request in flight
  uint64_t first = 0;          // the first entry it serves (Hello.first; 0: all)
};

// The peer to ask for entries starting at `local_size`: one whose head covers
// at least entry local_size, that still holds that entry (first <= local_size:
// asking a compacted peer is a wasted round trip) and is not busy; among them
// the longest head, then the least recently used (spreads load over equally
// good peers). nullopt: nobody.
std::optional<uint64_t> choose_source(std::span<const SourceInfo> sources, uint64_t local_size);

// Entries [local_size, end) that no source holds although some source's head
// is past local_size (every such source compacted them away): end = the
// smallest `first` among those sources. nullopt when some source ahead can
// serve entry local_size, or none is ahead (docs/protocol.md "First servable entry").
struct EntryRange {
  uint64_t from = 0, to = 0;  // [from, to)
  friend bool operator==(const EntryRange&, const EntryRange&) = default;
};
std::optional<EntryRange> unserved_entries(std::span<const SourceInfo> sources, uint64_t local_size);

struct BatchPlan {
  uint64_t from = 0;
  uint32_t count = 0;
};
// Entries to ask `source_size`'s holder for: [local, local+max), not capped at
// source_size. The source answers up to its newest head (docs/protocol.md
// "Following the log"), which has often moved past the one it announced; a
// batch capped at the announced size would end short of the served head, so
// that head would not be stored, and a relay could neither serve nor announce
// the entries it holds until a batch happened to end at a head. nullopt when
// the source has nothing new for us (source_size <= local_size).
std::optional<BatchPlan> plan_batch(uint64_t local_size, uint64_t source_size,
                                    uint32_t max_entries);

}  // namespace swarmlite::net
