// The light client (docs/light-client.md "Client"): runs read-only SQL itself,
// with its own SQLite, over pages fetched lazily from untrusted page sources
// (client/page_source.h) and checked against a signed head before SQLite sees
// a byte; verified pages are kept on disk (light_cache.h) under their leaf hash.
//
//   auto c = LightClient::open(cache_dir, {src_a, src_b}, log_public_key, {});
//   auto a = (*c)->query("SELECT body FROM notes WHERE id = ?", {Value{int64_t{2}}});
//   if (a.ok()) use(a->rows, a->head.size, a->stats.round_trips);
//
// The head. The client holds one current head H (signature checked with the
// log key, freshness with min_size / max_age, no equivocation with a head of
// the same size it saw: client/head_cache.h) and the leaf hashes it has proven
// at H. A page is usable iff its leaf at H is proven and the cache holds that
// leaf. refresh() moves to the newest head a source serves by asking it for
// the changes since H (one round trip carrying only the changed pages' leaves
// and one shared set of siblings, docs/light-client.md "Head moves"), else
// (the source keeps no such history) with one GetLeaves over every page it
// holds: unchanged pages are reused, changed ones are fetched again when read. A query runs
// entirely at one head (one SQLite connection per head over the light VFS, light_vfs.h).
// A warm client checks the head with the query's first page fetch, or after a
// run that fetched nothing, and runs the query again if it moved
// (LightClientOptions::defer_head_check): rows of an older head are never
// returned.
//
// Sources. Asked in order. One whose answer fails verification (a wrong page,
// number, multiproof, head, or a head not signed by the log key) is banned for
// the client's life (bans() says why) and the request goes to the next one; a
// transport error or a head behind the client's skips the source for that
// request only. HeadGone from every source mid-query: the client moves to the
// newest head and runs the query again (at most max_head_retries times).
// Two different signed heads of one size stop everything (equivocation, with
// the evidence).
//
// Seeding (docs/light-client.md "Seeding a cold query from proof=1"): a query
// on a cold client (seed_with_proof, fewer than seed_below_pages proven pages)
// first asks one source for the statement's proof=1 answer: its head is
// checked as any new head, its pages against that head (verify_page_set),
// both before a byte is stored; then the query runs here as usual and finds
// its pages cached. The rows are always this client's own run.
//
// Reads only: the connection is a GuardedConnection (sqlbridge/proof/read_guard.h),
// which refuses any statement that is not a read before it runs, and the VFS
// refuses writes. Not thread-safe: one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "client/client_error.h"
#include "client/head_cache.h"
#include "client/light_cache.h"
#include "client/light_vfs.h"
#include "client/page_source.h"
#include "core/entry.h"
#include "core/head.h"
#include "sqlbridge/proof/read_guard.h"

namespace swarmlite::client {

struct LightClientOptions {
  uint64_t min_size = 0;                             // refuse heads below this log size
  std::optional<std::chrono::milliseconds> max_age;  // refuse heads signed longer ago
  std::optional<int64_t> now_ms;                     // "now" for max_age (default: system clock)
  // Before every query, one GetLeaves at the newest head (a round trip, 32
  // bytes per held page); off: only when the current head fails max_age /
  // min_size, or on refresh().
  bool refresh_each_query = true;
  // With refresh_each_query, a client that holds a fresh head runs the query
  // at that head first and checks the head after (docs/light-client.md
  // "Deferred head check"): the first page it misses is asked at the
  // source's newest head (GetPages{0, ...}), whose answer is the head check;
  // a query that misses nothing checks the head when it ends. A head that
  // moved meanwhile re-runs the query at the new head (rows of an older head
  // are never returned). So a query with one miss costs one round trip, not
  // two. Used only while the previous head check found the head unchanged
  // (under steady writes the check goes first, as without it). Off: the head
  // check always goes first.
  bool defer_head_check = true;
  // Pages per GetPages on a miss: the page SQLite asked for plus the uncached
  // children of the B-tree page that points to it (docs/light-client.md
  // "Batched misses"), nearest first, from the second miss below that page in
  // one query on (a scan; a point lookup misses once per level and fetches
  // one page each). 1: one page per miss.
  size_t max_batch_pages = 32;
  int max_head_retries = 3;  // query re-runs after HeadGone from every source
  // How long refresh() keeps asking (every 50 ms) while every source serves a
  // head too old for min_size / max_age: a node answers at its pinned head,
  // renewed within its pin interval (200 ms) once it applied a newer one, so a
  // client that just wrote (min_size = its write) waits that long, not fails.
  std::chrono::milliseconds stale_wait{2000};
  // Seeding a cold query (docs/light-client.md "Seeding a cold query from
  // proof=1"). A query is cold when the client has no head yet and its cache
  // is empty, or when it holds fewer than `seed_below_pages` proven pages and
  // the statement (its SQL text) has not run on this client before. A cold
  // query asks the sources in order for its proof=1 answer
  // (PageSource::query_proof) and, once head and pages verified, adopts that
  // head and the pages instead of the head check and the page-by-page misses.
  // A source that cannot answer (transport, a head behind the client's or
  // too old) is skipped; one whose proof fails a check is banned; none left:
  // the query goes page by page.
  bool seed_with_proof = true;
  size_t seed_below_pages = 32;
  LightCacheOptions cache;
  ReadGuardOptions guard;
  HeadCacheOptions heads;
};

// What a query (or the client's life, totals()) cost.
struct LightStats {
  uint64_t round_trips = 0;    // calls to sources (pages and leaves)
  uint64_t pages_fetched = 0;  // pages received and verified
  uint64_t page_bytes = 0;     // their bytes
  uint64_t proof_bytes = 0;    // 32 per multiproof hash and per leaf hash received
  uint64_t cache_hits = 0;     // pages served from the disk cache
  uint64_t cache_corrupt = 0;  // cache slots that did not hash to their key (refetched)
  uint64_t head_moves = 0;     // heads moved to
  uint64_t pages_reused = 0;   // held pages unchanged across a head move
  uint64_t pages_dropped = 0;  // held pages changed by a head move
  // Head moves by a change set (GetChanges: only the changed pages' leaves
  // travel), and change requests that fell back to GetLeaves (the source
  // keeps no history, the head is too old for it, too many changes, a lie).
  uint64_t change_sets = 0;
  uint64_t change_fallbacks = 0;
  // Queries whose pages came from a verified proof=1 answer (seeded), and
  // proof=1 answers refused or skipped on the way (a lie, a stale head, an
  // error: the query went on to the next source or page by page).
  uint64_t seeded = 0;
  uint64_t seed_failures = 0;
  // Head checks done by the query's first page fetch (defer_head_check), and
  // query runs at a head found to have moved by a deferred check (run again
  // at the new head).
  uint64_t merged_checks = 0;
  uint64_t reruns = 0;
  LightStats operator-(const LightStats& o) const;
};

struct LightAnswer {
  std::vector<std::string> columns;
  std::vector<std::string> types;        // declared types, as SQLite reports them
  std::vector<std::vector<Value>> rows;  // computed here over verified pages
  Head head;                             // the signed state every page came from
  LightStats stats;                      // this query's cost (refresh included)
  std::vector<uint32_t> fetched;         // pages fetched for it, in order
};

struct SourceBan {
  std::string source;
  std::string reason;
};

class LightClient final : private LightPager {
 public:
  // Opens the cache under `cache_dir` (the page size of a cache a previous run
  // left there is taken up again, so its pages count as held for the first
  // refresh). Contacts no source. Errors: invalid_argument (no source), file
  // (the cache cannot be opened: io_error, or in use by another client).
  static ClientResult<std::unique_ptr<LightClient>> open(
      const std::filesystem::path& cache_dir, std::vector<std::shared_ptr<PageSource>> sources,
      const PublicKey& log_key, LightClientOptions options = {});
  ~LightClient() override;

  // Runs one read-only statement at one verified head (see above).
  ClientResult<LightAnswer> query(const std::string& sql, const std::vector<Value>& params = {});
  // Moves to the newest head the first usable source serves (one GetLeaves over
  // the held pages); the stats are the move's.
  ClientResult<LightStats> refresh();

  const std::optional<Head>& head() const { return head_; }
  // Pages whose leaf at head() is proven.
  size_t proven_pages() const { return proven_.size(); }
  const std::vector<SourceBan>& bans() const { return bans_; }
  const LightStats& totals() const { return totals_; }
  // Null until the page size is known (a previous run's cache, or page 1).
  LightCache* cache() { return cache_.get(); }
  LightClientOptions& options() { return options_; }
  HeadCache& heads() { return heads_; }

 private:
  LightClient() = default;
  // LightPager, for the VFS at head_.
  uint32_t page_size() const override { return page_size_; }
  uint32_t page_count() const override { return head_ ? head_->page_count : 0; }
  bool read_page(uint32_t pgno, std::span<uint8_t> out) override;

  struct Verified {
    Head head;
    std::map<uint32_t, Hash32> leaves;
    // A change set's answer: `leaves` holds only the changed pages' new
    // leaves; every other proven page up to head.page_count keeps its leaf
    // (adopt() updates proven_ in place instead of replacing it: a warm client
    // holds thousands of pages, copied on every query before).
    bool delta = false;
  };
  // The newest head of `src` and the leaves there of the held pages (`held`,
  // at most `held_at_most` of them), checked.
  ClientResult<Verified> newest_leaves(PageSource& src, size_t held_at_most,
                                       const std::function<std::vector<uint32_t>()>& held);
  ClientResult<LeafSet> ask_leaves(PageSource& src, uint64_t size, std::span<const uint32_t> pgnos);
  // The newest head of `src` and what changed since head_, checked: the held
  // pages' leaves there without asking for them. nullopt: the source cannot
  // say (ask leaves instead); an error: a lie (ban) or equivocation.
  ClientResult<std::optional<Verified>> newest_by_changes(PageSource& src);
  ClientResult<std::monostate> check_new_head(PageSource& src, const Head& h);
  // Seeding (see LightClientOptions::seed_with_proof): whether this query
  // starts cold, and the seed itself. true: a proof verified and its head and
  // pages were adopted; false: no source gave a usable one. Errors only for
  // equivocation and the cache's files.
  bool starts_cold(const std::string& sql) const;
  ClientResult<bool> seed(const std::string& sql, const std::vector<Value>& params);
  // Why `proof` (from a source, its head already checked) may not seed the
  // query `sql` / `params`, or nullopt; *set is the proven pages as a PageSet.
  std::optional<Error> seed_problem(QueryProof&& proof, const std::string& sql,
                                    const std::vector<Value>& params, PageSet* set) const;
  void adopt(const Verified& v);
  // Why `set` (from `src`, answering a request for `pgnos`) is not those
  // pages proven at `at` (a lie: proof_invalid), or nullopt.
  std::optional<ClientError> page_set_problem(const PageSource& src, const PageSet& set,
                                              const Head& at,
                                              const std::vector<uint32_t>& pgnos) const;
  // Fetches `pgnos` at head_ from the first source that serves them verified.
  ClientResult<std::monostate> fetch(std::vector<uint32_t> pgnos);
  // The deferred head check (defer_head_check): `pgnos` at the newest head of
  // the first source that serves them verified. At head_ (byte for byte):
  // stored, the head is checked. At a newer head: the pages are kept in
  // newer_pages_, restart_ is set and an error returned (the query runs again
  // after a head move). No usable answer: restart_ too (the query runs again
  // with the head check first).
  ClientResult<std::monostate> fetch_checking(std::vector<uint32_t> pgnos);
  // After a head check: newer_pages_ stored if the client is now at their
  // head, else dropped (counted as received).
  void take_newer_pages();
  // fetch_checking while the head check is pending, else fetch.
  ClientResult<std::monostate> fetch_for_query(std::vector<uint32_t> pgnos);
  ClientResult<std::monostate> store(const PageSet& set);
  ClientResult<std::monostate> open_cache(uint32_t page_size);
  ClientResult<std::monostate> ensure_connection();
  std::vector<uint32_t> batch_for(uint32_t pgno);
  bool usable(uint32_t pgno) const;
  bool fresh(const Head& h, std::string* why) const;
  void ban(size_t source, const std::string& reason);
  ClientError source_error(ClientErrorKind kind, const PageSource& src, std::string message) const;

  std::filesystem::path dir_;
  std::vector<std::shared_ptr<PageSource>> sources_;
  std::vector<bool> banned_;
  std::vector<bool> no_query_proofs_;  // the source refused query_proof without asking
  std::vector<SourceBan> bans_;
  PublicKey log_key_;
  LightClientOptions options_;
  HeadCache heads_;
  std::unique_ptr<LightCache> cache_;
  uint32_t page_size_ = 0;

  std::optional<Head> head_;
  std::optional<Head> head_for_chunks_;                 // the head a multi-request GetLeaves is at
  std::map<uint32_t, Hash32> proven_;                   // pgno -> leaf at head_
  std::unordered_map<uint32_t, Bytes> recent_;          // pages fetched during this query
  std::unordered_map<uint32_t, uint32_t> parent_;       // child pgno -> interior page seen at head_
  std::map<uint32_t, std::vector<uint32_t>> children_;  // interior page -> its children
  std::unordered_map<uint32_t, int> misses_under_;  // interior page -> misses below it, this query
  std::unique_ptr<LightVfsFile> file_;              // the VFS file at head_
  std::unique_ptr<GuardedConnection> conn_;         // SQLite over it

  // Set by read_page when a fetch fails (SQLite only sees an I/O error).
  std::optional<ClientError> read_error_;
  bool head_gone_ = false;  // every source answered HeadGone in the failed fetch
  bool leaves_gone_ = false;  // the last ask_leaves was answered HeadGone
  // Deferred head check: pending during a run at an unchecked head_; restart_
  // when that run must be done again (the head moved, or no source answered
  // the combined fetch); the pages that fetch got at the newer head, stored
  // once the client moved there; whether the last head check found a move.
  bool check_pending_ = false;
  bool restart_ = false;
  std::optional<PageSet> newer_pages_;
  bool last_check_moved_ = false;
  std::vector<uint32_t> fetched_;
  LightStats totals_;
  std::unordered_set<std::string> ran_;  // SQL texts queried (for starts_cold), bounded
};

}  // namespace swarmlite::client
