// The light client: see light_client.h and docs/light-client.md "Client".
#include "client/light_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "sqlbridge/engine/page_set.h"
#include "sqlbridge/engine/snapshot_chunk.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/proof/query_proof.h"

namespace swarmlite::client {
namespace {

ClientError error_of(ClientErrorKind kind, std::string peer, std::string message) {
  ClientError e;
  e.kind = kind;
  e.peer = std::move(peer);
  e.message = std::move(message);
  return e;
}

// One error for a request every source failed: the last source's, with the
// others' in earlier_attempts and a message that names the request.
ClientError all_failed(std::string_view what, std::vector<ClientError> failed) {
  if (failed.empty())
    return error_of(ClientErrorKind::transport, "",
                    fmt::format("{}: no source left to ask (every source is banned)", what));
  ClientError last = std::move(failed.back());
  failed.pop_back();
  last.message = fmt::format("{}: no source served it{}; {}: {}", what,
                             failed.empty() ? "" : fmt::format(" ({} asked)", failed.size() + 1),
                             last.peer, last.message);
  last.earlier_attempts = std::move(failed);
  return last;
}

// Held pages up to which a head check asks for all their leaves at once (one
// round trip, 32 bytes each); above, it asks for page 1's first and for the
// rest only when the head moved (docs/light-client.md "Knowing which pages are
// current").
constexpr size_t kSingleStepLeaves = 128;

// SQL texts remembered for the seeding rule; past it the set starts over.
constexpr size_t kMaxRememberedStatements = 4096;

int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

LightStats LightStats::operator-(const LightStats& o) const {
  LightStats d;
  d.round_trips = round_trips - o.round_trips;
  d.pages_fetched = pages_fetched - o.pages_fetched;
  d.page_bytes = page_bytes - o.page_bytes;
  d.proof_bytes = proof_bytes - o.proof_bytes;
  d.cache_hits = cache_hits - o.cache_hits;
  d.cache_corrupt = cache_corrupt - o.cache_corrupt;
  d.head_moves = head_moves - o.head_moves;
  d.pages_reused = pages_reused - o.pages_reused;
  d.pages_dropped = pages_dropped - o.pages_dropped;
  d.change_sets = change_sets - o.change_sets;
  d.change_fallbacks = change_fallbacks - o.change_fallbacks;
  d.seeded = seeded - o.seeded;
  d.seed_failures = seed_failures - o.seed_failures;
  d.merged_checks = merged_checks - o.merged_checks;
  d.reruns = reruns - o.reruns;
  return d;
}

ClientResult<std::unique_ptr<LightClient>> LightClient::open(
    const std::filesystem::path& cache_dir, std::vector<std::shared_ptr<PageSource>> sources,
    const PublicKey& log_key, LightClientOptions options) {
  if (sources.empty() ||
      std::any_of(sources.begin(), sources.end(), [](const auto& s) { return s == nullptr; }))
    return error_of(ClientErrorKind::invalid_argument, "",
                    "a light client needs at least one page source (and no null one)");
  std::unique_ptr<LightClient> c(new LightClient());
  c->dir_ = cache_dir;
  c->sources_ = std::move(sources);
  c->banned_.assign(c->sources_.size(), false);
  c->no_query_proofs_.assign(c->sources_.size(), false);
  c->log_key_ = log_key;
  c->options_ = std::move(options);
  c->options_.max_batch_pages =
      std::clamp<size_t>(c->options_.max_batch_pages, 1, kMaxPagesPerRequest);
  c->heads_ = HeadCache(c->options_.heads);
  // A cache a previous run left: its page size, so its pages count as held.
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(cache_dir, ec)) {
    uint32_t ps = 0;
    const std::string name = f.path().filename().string();
    if (std::sscanf(name.c_str(), "pages-%u.slots", &ps) == 1 && ps != 0) {
      auto opened = c->open_cache(ps);
      if (!opened.ok()) return opened.take_error();
      break;
    }
  }
  return c;
}

LightClient::~LightClient() {
  conn_.reset();
  file_.reset();
}

ClientError LightClient::source_error(ClientErrorKind kind, const PageSource& src,
                                      std::string message) const {
  return error_of(kind, src.name(), std::move(message));
}

void LightClient::ban(size_t source, const std::string& reason) {
  if (banned_[source]) return;
  banned_[source] = true;
  bans_.push_back({sources_[source]->name(), reason});
}

bool LightClient::fresh(const Head& h, std::string* why) const {
  if (h.size < options_.min_size) {
    if (why) *why = fmt::format("head at size {} is below min_size {}", h.size, options_.min_size);
    return false;
  }
  if (options_.max_age) {
    const int64_t age = options_.now_ms.value_or(system_now_ms()) - h.time_ms;
    if (age > options_.max_age->count()) {
      if (why)
        *why = fmt::format("head at size {} was signed {} ms ago, over the max age of {} ms",
                           h.size, age, options_.max_age->count());
      return false;
    }
  }
  return true;
}

ClientResult<std::monostate> LightClient::open_cache(uint32_t page_size) {
  if (cache_ && cache_->page_size() == page_size) return std::monostate{};
  cache_.reset();
  auto c = LightCache::open(dir_, page_size, options_.cache);
  if (!c.ok()) {
    ClientError e = error_of(ClientErrorKind::file, "",
                             "the light client's page cache: " + c.error().to_string());
    e.cause = c.error();
    return e;
  }
  cache_ = std::move(c).value();
  page_size_ = page_size;
  return std::monostate{};
}

// --- heads -------------------------------------------------------------------

ClientResult<std::monostate> LightClient::check_new_head(PageSource& src, const Head& h) {
  // The client's own head again, byte for byte (the usual answer of a head
  // check): its signature was verified and the head cache has seen it when it
  // was adopted; only freshness can have changed.
  if (head_ && encode_head(h) == encode_head(*head_)) {
    std::string why;
    if (!fresh(h, &why)) return source_error(ClientErrorKind::stale_head, src, "stale head: " + why);
    return std::monostate{};
  }
  if (auto s = h.verify(log_key_); !s.ok()) {
    ClientError e = source_error(ClientErrorKind::proof_invalid, src,
                                 fmt::format("its head at size {} is not signed by the log key: {}",
                                             h.size, s.error().to_string()));
    e.cause = s.error();
    return e;
  }
  std::string why;
  if (!fresh(h, &why)) return source_error(ClientErrorKind::stale_head, src, "stale head: " + why);
  if (head_ && h.size < head_->size)
    return source_error(ClientErrorKind::stale_head, src,
                        fmt::format("stale head: it serves size {}, behind the client's head at "
                                    "size {}",
                                    h.size, head_->size));
  auto seen = heads_.observe(h);
  if (!seen.ok()) {
    ClientError e = seen.take_error();
    e.peer = src.name();
    return e;
  }
  return std::monostate{};
}

ClientResult<LeafSet> LightClient::ask_leaves(PageSource& src, uint64_t size,
                                              std::span<const uint32_t> pgnos) {
  ++totals_.round_trips;
  leaves_gone_ = false;
  auto answer = src.leaves(size, pgnos);
  if (!answer.ok())
    return source_error(ClientErrorKind::transport, src,
                        fmt::format("leaf hashes of {} at size {}: {}", pgnos_text(pgnos), size,
                                    answer.error().to_string()));
  if (auto* gone = std::get_if<HeadGone>(&*answer)) {
    leaves_gone_ = true;
    return source_error(ClientErrorKind::transport, src,
                        fmt::format("leaf hashes of {}: head {} gone, its newest is {}",
                                    pgnos_text(pgnos), size, gone->newest));
  }
  LeafSet set = std::get<LeafSet>(std::move(*answer));
  totals_.proof_bytes += 32 * (set.leaves.size() + set.proof.hashes.size());
  if (size == 0) {
    auto ok = check_new_head(src, set.head);
    if (!ok.ok()) return ok.take_error();
  }
  // Asked at a size: the trusted head is the one the first chunk proved,
  // which verify_leaf_set compares byte for byte (a later chunk at another
  // head fails).
  if (auto s = verify_leaf_set(set, size == 0 ? set.head : *head_for_chunks_); !s.ok()) {
    ClientError e = source_error(ClientErrorKind::proof_invalid, src, s.error().to_string());
    e.cause = s.error();
    return e;
  }
  if (set.pgnos.size() != pgnos.size() ||
      !std::equal(set.pgnos.begin(), set.pgnos.end(), pgnos.begin()))
    return source_error(ClientErrorKind::proof_invalid, src,
                        fmt::format("leaf hashes of {} asked, {} answered", pgnos_text(pgnos),
                                    pgnos_text(set.pgnos)));
  return set;
}

ClientResult<std::optional<LightClient::Verified>> LightClient::newest_by_changes(PageSource& src) {
  ++totals_.round_trips;
  auto answer = src.changes(head_->size, 0);
  if (!answer.ok() || std::holds_alternative<HeadGone>(*answer)) {
    // No history that far back, too many changes, no GetChanges at all: the
    // leaves of the held pages say the same, at their price.
    ++totals_.change_fallbacks;
    return std::optional<Verified>();
  }
  ChangeSet set = std::get<ChangeSet>(std::move(*answer));
  totals_.proof_bytes += 32 * (set.old_leaves.size() + set.new_leaves.size() + set.siblings.size());
  auto fresh_head = check_new_head(src, set.to);
  if (!fresh_head.ok()) return fresh_head.take_error();
  if (auto s = verify_change_set(set, *head_, set.to); !s.ok()) {
    ClientError e = source_error(ClientErrorKind::proof_invalid, src, s.error().to_string());
    e.cause = s.error();
    return e;
  }
  ++totals_.change_sets;
  // Every proven page outside the set kept its leaf; those in it have their
  // new leaf (pages past the new end are gone): a delta adopt() applies.
  Verified v;
  v.head = set.to;
  v.delta = true;
  for (size_t i = 0; i < set.new_leaves.size(); ++i) v.leaves[set.pgnos[i]] = set.new_leaves[i];
  return std::optional<Verified>(std::move(v));
}

ClientResult<LightClient::Verified> LightClient::newest_leaves(
    PageSource& src, size_t held_at_most, const std::function<std::vector<uint32_t>()>& held) {
  const uint32_t one = 1;
  if (head_) {
    // A head to start from: what changed since it, in one round trip.
    auto by_changes = newest_by_changes(src);
    if (!by_changes.ok()) return by_changes.take_error();
    if (*by_changes) return std::move(**by_changes);
  }
  for (int attempt = 0;; ++attempt) {
    std::optional<LeafSet> probe;
    std::vector<uint32_t> pgnos;
    if (held_at_most <= kSingleStepLeaves) {
      pgnos = held();
      // Few held pages: their leaves at the newest head in one round trip.
      auto first = ask_leaves(src, 0, pgnos);
      if (first.ok()) {
        Verified v;
        v.head = first->head;
        for (size_t i = 0; i < first->pgnos.size(); ++i) v.leaves[first->pgnos[i]] = first->leaves[i];
        return v;
      }
      if (first.error().kind != ClientErrorKind::transport || pgnos.size() == 1)
        return first.take_error();
      // Held pages past the newest head's end (the database shrank) make the
      // request invalid: learn the head from page 1's leaf, then ask for the
      // held pages it still has.
      auto p = ask_leaves(src, 0, std::span<const uint32_t>(&one, 1));
      if (!p.ok()) return first.take_error();
      probe = std::move(p).value();
    } else {
      // Many: the head first (page 1's leaf, a few hundred bytes); the held
      // pages' leaves only when it moved.
      auto p = ask_leaves(src, 0, std::span<const uint32_t>(&one, 1));
      if (!p.ok()) return p.take_error();
      if (head_ && encode_head(p->head) == encode_head(*head_)) {
        Verified v;
        v.head = p->head;
        v.leaves[1] = p->leaves[0];
        return v;
      }
      probe = std::move(p).value();
      pgnos = held();
    }
    std::erase_if(pgnos, [&](uint32_t p) { return p > probe->head.page_count; });
    head_for_chunks_ = probe->head;
    Verified v;
    v.head = probe->head;
    bool gone = false;
    for (size_t begin = 0; begin < pgnos.size(); begin += kMaxLeavesPerRequest) {
      auto chunk = std::span<const uint32_t>(pgnos).subspan(
          begin, std::min(kMaxLeavesPerRequest, pgnos.size() - begin));
      auto more = ask_leaves(src, v.head.size, chunk);
      if (!more.ok()) {
        // The node pinned a newer head between the probe and this chunk (it
        // keeps one pin): start over from its newest head, a bounded number of
        // times (found by light_kill_itest: a refresh failed "head 7 gone, its
        // newest is 8" with one source).
        if (leaves_gone_ && attempt < options_.max_head_retries) {
          gone = true;
          break;
        }
        return more.take_error();
      }
      for (size_t j = 0; j < more->pgnos.size(); ++j) v.leaves[more->pgnos[j]] = more->leaves[j];
    }
    if (gone) continue;
    return v;
  }
}

void LightClient::adopt(const Verified& v) {
  const bool same = head_ && encode_head(*head_) == encode_head(v.head);
  if (!same) {
    if (v.delta) {
      // Pages past the new end are gone; a held page in the change set with
      // another leaf is dropped; every other held page is reused as it is.
      proven_.erase(proven_.upper_bound(v.head.page_count), proven_.end());
      uint64_t dropped = 0;
      for (const auto& [pgno, leaf] : v.leaves) {
        auto old = proven_.find(pgno);
        if (old != proven_.end() && old->second != leaf) ++dropped;
      }
      totals_.pages_dropped += dropped;
      totals_.pages_reused += proven_.size() - dropped;
    } else {
      for (const auto& [pgno, leaf] : v.leaves) {
        auto old = proven_.find(pgno);
        if (old == proven_.end()) continue;
        if (old->second == leaf)
          ++totals_.pages_reused;
        else
          ++totals_.pages_dropped;
      }
      proven_.clear();
    }
    conn_.reset();
    file_.reset();
    parent_.clear();
    children_.clear();
    head_ = v.head;
    ++totals_.head_moves;
  }
  for (const auto& [pgno, leaf] : v.leaves) proven_[pgno] = leaf;
}

ClientResult<LightStats> LightClient::refresh() {
  const LightStats before = totals_;
  // The pages it holds: proven at the current head and still in the cache (an
  // evicted page would be fetched whole anyway); on a fresh start, the pages
  // a previous run cached. Listed only when asked for (a head check that finds
  // the head unchanged does not need them).
  auto held = [this] {
    std::set<uint32_t> out{1};
    if (head_) {
      for (const auto& [pgno, leaf] : proven_)
        if (cache_ && cache_->contains(leaf)) out.insert(pgno);
    } else if (cache_) {
      for (uint32_t p : cache_->pgnos()) out.insert(p);
    }
    return std::vector<uint32_t>(out.begin(), out.end());
  };
  const size_t held_at_most = 1 + (head_ ? proven_.size() : (cache_ ? cache_->stats().entries : 0));
  const auto give_up = std::chrono::steady_clock::now() + options_.stale_wait;
  while (true) {
    std::vector<ClientError> failed;
    for (size_t i = 0; i < sources_.size(); ++i) {
      if (banned_[i]) continue;
      auto v = newest_leaves(*sources_[i], held_at_most, held);
      if (v.ok()) {
        adopt(*v);
        return totals_ - before;
      }
      ClientError e = v.take_error();
      if (e.kind == ClientErrorKind::equivocation) return e;
      if (e.kind == ClientErrorKind::proof_invalid) ban(i, e.message);
      failed.push_back(std::move(e));
    }
    // Every source answered, each with a head too old: ask again shortly (a
    // node renews its pin within its pin interval), up to stale_wait.
    const bool all_stale =
        !failed.empty() && std::all_of(failed.begin(), failed.end(), [](const ClientError& e) {
          return e.kind == ClientErrorKind::stale_head;
        });
    if (!all_stale || std::chrono::steady_clock::now() >= give_up)
      return all_failed("the newest head", std::move(failed));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// --- seeding a cold query (docs/light-client.md "Seeding a cold query from proof=1")

bool LightClient::starts_cold(const std::string& sql) const {
  if (!options_.seed_with_proof) return false;
  // A restarted client with a cache proves what it holds with one GetLeaves:
  // a proof would send those pages again.
  if (!head_) return !cache_ || cache_->stats().entries == 0;
  // Few pages held and a statement not run yet: its B-tree paths are likely
  // missing, and one proof costs one round trip where the misses cost one per
  // level (the held pages it carries again are at most a few).
  return proven_.size() < options_.seed_below_pages && !ran_.contains(sql);
}

std::optional<Error> LightClient::seed_problem(QueryProof&& proof, const std::string& sql,
                                               const std::vector<Value>& params,
                                               PageSet* set) const {
  // The pages prove nothing about the question, and the rows are computed
  // here anyway; a proof of another statement is still a wrong answer.
  if (proof.sql != sql)
    return Error{Errc::proof_failed, "it answers a different query than the one asked"};
  if (proof.params != params)
    return Error{Errc::proof_failed, "it answers the query with different parameters"};
  set->head = proof.head;
  set->page_size = proof.page_size;
  set->pgnos.clear();
  set->pages.clear();
  for (ProvenPage& p : proof.pages) {
    set->pgnos.push_back(p.pgno);
    set->pages.push_back(std::move(p.bytes));
  }
  set->proof.size = proof.head.page_count;
  set->proof.indices = pgno_indices(set->pgnos);
  set->proof.hashes = std::move(proof.multiproof);
  // A proof holds every page the statement read: up to the multiproof cap,
  // not GetPages' 256.
  if (auto s = verify_page_set(*set, set->head, kMaxMultiproofLeaves); !s.ok()) return s.error();
  return std::nullopt;
}

ClientResult<bool> LightClient::seed(const std::string& sql, const std::vector<Value>& params) {
  // Not older than the client's head; the node waits (briefly) for min_size.
  const uint64_t min_size = std::max(options_.min_size, head_ ? head_->size : 0);
  for (size_t i = 0; i < sources_.size(); ++i) {
    if (banned_[i] || no_query_proofs_[i]) continue;
    PageSource& src = *sources_[i];
    auto answer = src.query_proof(sql, params, min_size);
    if (!answer.ok() && answer.error().code == Errc::refused) {
      no_query_proofs_[i] = true;  // nothing was sent: no round trip, never asked again
      continue;
    }
    ++totals_.round_trips;
    if (!answer.ok()) {
      ++totals_.seed_failures;
      // The node calls the statement bad: the local run will say why.
      if (answer.error().code == Errc::invalid_argument) return false;
      continue;  // unreachable, busy, below min_size, an answer that does not decode
    }
    QueryProof proof = std::move(answer).value();
    // The head first, as any new head: signature, freshness, not behind the
    // client's, no equivocation.
    if (auto ok = check_new_head(src, proof.head); !ok.ok()) {
      ClientError e = ok.take_error();
      if (e.kind == ClientErrorKind::equivocation) return e;
      ++totals_.seed_failures;
      if (e.kind == ClientErrorKind::proof_invalid) ban(i, "query proof: " + e.message);
      continue;  // stale: not adopted, the source is not banned for lagging
    }
    // Then every page against that head, before a byte is stored.
    PageSet set;
    if (auto problem = seed_problem(std::move(proof), sql, params, &set)) {
      ++totals_.seed_failures;
      ban(i, "query proof: " + problem->to_string());
      continue;
    }
    adopt(Verified{set.head, {}});  // store() proves the pages at it
    auto stored = store(set);
    if (!stored.ok()) return stored.take_error();
    ++totals_.seeded;
    return true;
  }
  return false;
}

// --- pages -------------------------------------------------------------------

bool LightClient::usable(uint32_t pgno) const {
  if (recent_.contains(pgno)) return true;
  auto it = proven_.find(pgno);
  return it != proven_.end() && cache_ && cache_->contains(it->second);
}

std::vector<uint32_t> LightClient::batch_for(uint32_t pgno) {
  std::vector<uint32_t> out{pgno};
  auto parent = parent_.find(pgno);
  if (parent == parent_.end()) return out;
  // The first miss below a page may be a lookup's only one there.
  if (misses_under_[parent->second]++ == 0) return out;
  const std::vector<uint32_t>& kids = children_.at(parent->second);
  const auto at = static_cast<ptrdiff_t>(std::find(kids.begin(), kids.end(), pgno) - kids.begin());
  const uint32_t lock_page = lock_byte_page(page_size_);
  auto want = [&](ptrdiff_t i) {
    if (i < 0 || i >= static_cast<ptrdiff_t>(kids.size())) return;
    const uint32_t p = kids[static_cast<size_t>(i)];
    if (p == 0 || p > page_count() || p == lock_page || usable(p)) return;
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  };
  // The siblings nearest the page SQLite asked for first: a scan reads on
  // from it, a lookup needs none of them.
  for (ptrdiff_t d = 1; out.size() < options_.max_batch_pages &&
                        (at + d < static_cast<ptrdiff_t>(kids.size()) || at - d >= 0);
       ++d) {
    want(at + d);
    if (out.size() < options_.max_batch_pages) want(at - d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

ClientResult<std::monostate> LightClient::store(const PageSet& set) {
  auto opened = open_cache(set.page_size);
  if (!opened.ok()) return opened.take_error();
  const uint32_t lock_page = lock_byte_page(set.page_size);
  for (size_t i = 0; i < set.pgnos.size(); ++i) {
    const uint32_t pgno = set.pgnos[i];
    const Hash32 leaf =
        pgno == lock_page ? lock_byte_leaf(set.page_size) : page_leaf_hash(pgno, set.pages[i]);
    proven_[pgno] = leaf;
    recent_[pgno] = set.pages[i];
    fetched_.push_back(pgno);
    if (auto s = cache_->put(pgno, leaf, set.pages[i]); !s.ok()) {
      ClientError e = error_of(ClientErrorKind::file, "",
                               "the light client's page cache: " + s.error().to_string());
      e.cause = s.error();
      return e;
    }
  }
  totals_.pages_fetched += set.pgnos.size();
  totals_.page_bytes += uint64_t{set.page_size} * set.pgnos.size();
  totals_.proof_bytes += 32 * set.proof.hashes.size();
  if (auto s = cache_->flush(); !s.ok()) {
    ClientError e = error_of(ClientErrorKind::file, "",
                             "the light client's page cache: " + s.error().to_string());
    e.cause = s.error();
    return e;
  }
  return std::monostate{};
}

std::optional<ClientError> LightClient::page_set_problem(const PageSource& src, const PageSet& set,
                                                        const Head& at,
                                                        const std::vector<uint32_t>& pgnos) const {
  Status s = verify_page_set(set, at);
  if (s.ok() && set.pgnos != pgnos)
    s = make_error(Errc::proof_failed, "pages of {} asked, {} answered", pgnos_text(pgnos),
                   pgnos_text(set.pgnos));
  if (s.ok()) return std::nullopt;
  ClientError e = source_error(ClientErrorKind::proof_invalid, src, s.error().to_string());
  e.cause = s.error();
  return e;
}

ClientResult<std::monostate> LightClient::fetch(std::vector<uint32_t> pgnos) {
  const std::string what = fmt::format("{} at size {}", pgnos_text(pgnos), head_->size);
  std::vector<ClientError> failed;
  bool all_gone = true;
  for (size_t i = 0; i < sources_.size(); ++i) {
    if (banned_[i]) continue;
    PageSource& src = *sources_[i];
    ++totals_.round_trips;
    auto answer = src.pages(head_->size, pgnos);
    if (!answer.ok()) {
      all_gone = false;
      failed.push_back(source_error(ClientErrorKind::transport, src, answer.error().to_string()));
      continue;
    }
    if (auto* gone = std::get_if<HeadGone>(&*answer)) {
      failed.push_back(
          source_error(ClientErrorKind::transport, src,
                       fmt::format("head {} gone, its newest is {}", head_->size, gone->newest)));
      continue;
    }
    all_gone = false;
    const PageSet& set = std::get<PageSet>(*answer);
    if (auto e = page_set_problem(src, set, *head_, pgnos)) {
      ban(i, e->message);
      failed.push_back(std::move(*e));
      continue;
    }
    return store(set);
  }
  head_gone_ = all_gone && !failed.empty();
  return all_failed("pages " + what, std::move(failed));
}

ClientResult<std::monostate> LightClient::fetch_checking(std::vector<uint32_t> pgnos) {
  const std::string what = fmt::format("{} at the newest head", pgnos_text(pgnos));
  std::vector<ClientError> failed;
  for (size_t i = 0; i < sources_.size(); ++i) {
    if (banned_[i]) continue;
    PageSource& src = *sources_[i];
    ++totals_.round_trips;
    auto answer = src.pages(0, pgnos);
    if (!answer.ok()) {
      failed.push_back(source_error(ClientErrorKind::transport, src, answer.error().to_string()));
      continue;
    }
    if (auto* gone = std::get_if<HeadGone>(&*answer)) {
      failed.push_back(source_error(ClientErrorKind::transport, src,
                                    fmt::format("no pinned head (its newest is {})", gone->newest)));
      continue;
    }
    PageSet set = std::get<PageSet>(std::move(*answer));
    // The head as any new head (signature, freshness, not behind the
    // client's, equivocation), then the pages against it.
    if (auto ok = check_new_head(src, set.head); !ok.ok()) {
      ClientError e = ok.take_error();
      if (e.kind == ClientErrorKind::equivocation) return e;
      if (e.kind == ClientErrorKind::proof_invalid) ban(i, e.message);
      failed.push_back(std::move(e));
      continue;
    }
    if (auto e = page_set_problem(src, set, set.head, pgnos)) {
      ban(i, e->message);
      failed.push_back(std::move(*e));
      continue;
    }
    check_pending_ = false;
    ++totals_.merged_checks;
    if (encode_head(set.head) == encode_head(*head_)) {
      last_check_moved_ = false;
      return store(set);
    }
    // A newer head: this run's pages are of an older state. Run again there.
    last_check_moved_ = true;
    restart_ = true;
    const uint64_t newer = set.head.size;
    newer_pages_ = std::move(set);
    return source_error(ClientErrorKind::transport, src,
                        fmt::format("head moved from size {} to {}: the query runs again there",
                                    head_->size, newer));
  }
  // No source gave a usable answer: the query runs again with the head check
  // first (which waits out sources that are all behind, stale_wait).
  check_pending_ = false;
  restart_ = true;
  return all_failed("pages " + what, std::move(failed));
}

ClientResult<std::monostate> LightClient::fetch_for_query(std::vector<uint32_t> pgnos) {
  return check_pending_ ? fetch_checking(std::move(pgnos)) : fetch(std::move(pgnos));
}

bool LightClient::read_page(uint32_t pgno, std::span<uint8_t> out) {
  if (pgno == lock_byte_page(page_size_)) {
    // SQLite never reads it; its leaf is that of zeros (docs/formats/state-tree.md).
    std::memset(out.data(), 0, out.size());
    return true;
  }
  Bytes from_cache;
  const Bytes* page = nullptr;
  if (auto r = recent_.find(pgno); r != recent_.end()) page = &r->second;
  if (page == nullptr && cache_) {
    if (auto leaf = proven_.find(pgno); leaf != proven_.end()) {
      const uint64_t corrupt = cache_->stats().corrupt;
      auto got = cache_->get(pgno, leaf->second);
      totals_.cache_corrupt += cache_->stats().corrupt - corrupt;
      if (got.ok() && got->has_value()) {
        from_cache = std::move(**got);
        page = &from_cache;
        ++totals_.cache_hits;
      }
      // An unreadable slot file is a miss too: the page is fetched again.
    }
  }
  if (page == nullptr) {
    // The guard's time limit bounds the query's own work: the round trip is
    // not counted (docs/light-client.md "Time limit").
    const auto asked = std::chrono::steady_clock::now();
    auto fetched = fetch_for_query(batch_for(pgno));
    if (conn_) conn_->exclude_wait(std::chrono::steady_clock::now() - asked);
    if (!fetched.ok()) {
      read_error_ = fetched.take_error();
      return false;
    }
    page = &recent_.at(pgno);
  }
  std::memcpy(out.data(), page->data(), std::min(out.size(), page->size()));
  if (pgno == 1) canonicalize_page1_header(out);
  if (!children_.contains(pgno)) {
    std::vector<uint32_t> kids = btree_children(pgno, *page);
    for (uint32_t k : kids) parent_[k] = pgno;
    children_[pgno] = std::move(kids);
  }
  return true;
}

ClientResult<std::monostate> LightClient::ensure_connection() {
  if (conn_) return std::monostate{};
  if (head_->page_count == 0)
    return error_of(ClientErrorKind::query_failed, "",
                    fmt::format("the head at size {} holds no database pages", head_->size));
  // Page 1 first, verified at this head: it confirms the page size the VFS
  // presents the file with (every statement reads it anyway).
  if (!usable(1)) {
    auto got = fetch_for_query({1});
    if (!got.ok()) return got.take_error();
  }
  file_ = std::make_unique<LightVfsFile>(static_cast<LightPager&>(*this));
  auto conn = GuardedConnection::open(file_->uri(), options_.guard);
  if (!conn.ok()) {
    file_.reset();
    ClientError e =
        error_of(ClientErrorKind::query_failed, "",
                 "cannot open SQLite over the verified pages: " + conn.error().to_string());
    e.cause = conn.error();
    return e;
  }
  conn_ = std::move(conn).value();
  return std::monostate{};
}

void LightClient::take_newer_pages() {
  if (!newer_pages_) return;
  PageSet set = std::move(*newer_pages_);
  newer_pages_.reset();
  if (head_ && encode_head(*head_) == encode_head(set.head)) {
    // The head check moved the client to the head these pages were proven
    // at: they are its pages now (stored, counted).
    if (auto s = store(set); !s.ok()) read_error_ = s.take_error();
    return;
  }
  // The client moved further on: received and verified, not usable.
  totals_.pages_fetched += set.pgnos.size();
  totals_.page_bytes += uint64_t{set.page_size} * set.pgnos.size();
  totals_.proof_bytes += 32 * set.proof.hashes.size();
}

ClientResult<LightAnswer> LightClient::query(const std::string& sql,
                                             const std::vector<Value>& params) {
  const LightStats before = totals_;
  fetched_.clear();
  newer_pages_.reset();
  const bool cold = starts_cold(sql);
  if (ran_.size() >= kMaxRememberedStatements) ran_.clear();
  ran_.insert(sql);
  // head_ is what a head check of this query found (no check needed before
  // the next run); a run that must move on clears it.
  bool checked = false;
  int head_retries = 0;
  for (int attempt = 0;; ++attempt) {
    read_error_.reset();
    head_gone_ = false;
    restart_ = false;
    check_pending_ = false;
    recent_.clear();
    misses_under_.clear();
    // A cold query: one proof=1 answer brings a head (as new as any head
    // check's) and its pages; else the head check and page-by-page misses.
    if (attempt == 0 && cold) {
      auto s = seed(sql, params);
      if (!s.ok()) return s.take_error();
      checked = *s;
    }
    std::string why;
    if (!checked &&
        (!head_ || attempt > 0 || options_.refresh_each_query || !fresh(*head_, &why))) {
      // (Not at a head without pages: that error would be the old head's.)
      if (attempt == 0 && options_.defer_head_check && options_.refresh_each_query && head_ &&
          head_->page_count > 0 && !last_check_moved_ && fresh(*head_, nullptr)) {
        // Deferred: run at head_ now, check with the first fetch or at the end.
        check_pending_ = true;
      } else {
        const std::optional<Head> was = head_;
        auto moved = refresh();
        if (!moved.ok()) return moved.take_error();
        last_check_moved_ = was && encode_head(*was) != encode_head(*head_);
        checked = true;
        take_newer_pages();
        if (read_error_) return std::move(*read_error_);
      }
    }
    auto opened = ensure_connection();
    Result<QueryResult> result = make_error(Errc::internal, "not run");
    if (opened.ok()) {
      result = conn_->query(sql, params);
    } else if (!head_gone_ && !restart_) {
      return opened.take_error();
    } else {
      read_error_ = opened.take_error();
    }
    recent_.clear();
    if (restart_) {
      // The deferred check found the head moved (or could not be made): the
      // run was at an older head; run again after a head check.
      conn_.reset();
      file_.reset();
      checked = false;
      ++totals_.reruns;
      continue;
    }
    if (read_error_) {
      // A failed read leaves SQLite's pager in an error state for this
      // connection: the next run opens a new one.
      conn_.reset();
      file_.reset();
      if (head_gone_ && head_retries++ < options_.max_head_retries) {
        checked = false;
        continue;
      }
      ClientError e = std::move(*read_error_);
      if (head_gone_)
        e.message = fmt::format("{} (the head moved {} times during the query: gave up)", e.message,
                                head_retries);
      return e;
    }
    if (check_pending_) {
      // The run read only cached pages at an unchecked head: check it now.
      // Unchanged: the answer (rows or error) stands. Moved: run again there.
      check_pending_ = false;
      const Head was = *head_;
      auto moved = refresh();
      if (!moved.ok()) return moved.take_error();
      checked = true;
      last_check_moved_ = encode_head(was) != encode_head(*head_);
      if (last_check_moved_) {
        ++totals_.reruns;
        continue;
      }
    }
    if (!result.ok()) {
      ClientError e =
          error_of(ClientErrorKind::query_failed, "",
                   fmt::format("{}{} (at size {})",
                               result.error().code == Errc::refused
                                   ? "the light client runs reads only and refused the statement: "
                                   : "",
                               result.error().to_string(), head_->size));
      e.cause = result.error();
      return e;
    }
    LightAnswer a;
    a.columns = std::move(result->columns);
    a.types = std::move(result->decltypes);
    a.rows = std::move(result->rows);
    a.head = *head_;
    a.stats = totals_ - before;
    a.fetched = fetched_;
    return a;
  }
}

}  // namespace swarmlite::client
