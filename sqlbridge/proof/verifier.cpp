// The verifier and its cache. How the cache stays exactly as strict as the
// plain verifier: docs/verified-reads.md, "The verifier cache".
#include "sqlbridge/proof/verifier.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <list>
#include <tuple>
#include <unordered_map>

#include "core/merkle.h"
#include "sqlbridge/proof/proof_vfs.h"
#include "sqlbridge/sqlite_util.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {

namespace {

Status check_query(const QueryProof& proof, const VerifyOptions& options) {
  if (options.expected_sql && *options.expected_sql != proof.sql) {
    return make_error(Errc::proof_failed,
                      "the proof answers a different query: asked \"{}\", proof holds \"{}\"",
                      *options.expected_sql, proof.sql);
  }
  if (options.expected_params && *options.expected_params != proof.params) {
    return make_error(Errc::proof_failed,
                      "the proof answers the query with different parameters ({} asked, {} in "
                      "the proof, or values differ)",
                      options.expected_params->size(), proof.params.size());
  }
  return ok_status();
}

Status check_freshness(const Head& head, const VerifyOptions& options) {
  if (head.size < options.min_size) {
    return make_error(Errc::unavailable, "stale head: log size {} is below min_size {}",
                      head.size, options.min_size);
  }
  if (options.max_age) {
    int64_t now = options.now_ms.value_or(
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    int64_t age = now - head.time_ms;
    if (age > options.max_age->count()) {
      return make_error(Errc::unavailable,
                        "stale head: signed {} ms ago (at {}), over the max age of {} ms", age,
                        head.time_ms, options.max_age->count());
    }
  }
  return ok_status();
}

Status check_shape(const QueryProof& proof) {
  if (!is_valid_page_size(proof.page_size)) {
    return make_error(Errc::proof_failed, "page size {} is not a power of two in [{}, {}]",
                      proof.page_size, kMinPageSize, kMaxPageSize);
  }
  if (proof.pages.empty()) {
    return make_error(Errc::proof_failed, "the proof holds no pages (page 1 is always needed)");
  }
  uint32_t prev = 0;
  for (size_t i = 0; i < proof.pages.size(); ++i) {
    const ProvenPage& p = proof.pages[i];
    if (auto why = page_order_problem(prev, p.pgno, proof.head.page_count)) {
      return make_error(Errc::proof_failed, "page #{} of the proof: {}", i, *why);
    }
    if (p.bytes.size() != proof.page_size) {
      return make_error(Errc::proof_failed, "page {} has {} bytes, the page size is {}", p.pgno,
                        p.bytes.size(), proof.page_size);
    }
    prev = p.pgno;
  }
  if (auto why = page1_problem(proof.pages.front().bytes, proof.page_size)) {
    return make_error(Errc::proof_failed, "page 1: {}", *why);
  }
  return ok_status();
}

// `leaves[i]` is page_leaf_hash(proof.pages[i]).
Status check_pages(const QueryProof& proof, const std::vector<Hash32>& leaves) {
  std::vector<uint64_t> indices;
  indices.reserve(proof.pages.size());
  for (const ProvenPage& p : proof.pages) indices.push_back(p.pgno - 1);
  Status s = verify_multiproof(indices, leaves, proof.head.page_count, proof.multiproof,
                               proof.head.state_root);
  if (!s.ok()) {
    return make_error(s.error().code,
                      "the proof's {} pages do not prove the head's state (size {}): {}",
                      proof.pages.size(), proof.head.size, s.error().message);
  }
  return ok_status();
}

std::vector<Hash32> leaf_hashes(const QueryProof& proof) {
  std::vector<Hash32> leaves(proof.pages.size());
  std::vector<PageLeafJob> jobs;
  jobs.reserve(proof.pages.size());
  for (size_t i = 0; i < proof.pages.size(); ++i)
    jobs.push_back({proof.pages[i].pgno, proof.pages[i].bytes, &leaves[i]});
  page_leaf_hashes(jobs);
  return leaves;
}

ProofImage::PageViews page_views(const QueryProof& proof) {
  ProofImage::PageViews views;
  views.reserve(proof.pages.size());
  for (const ProvenPage& p : proof.pages) views.emplace_back(p.pgno, p.bytes);
  return views;
}

// Runs the proof's SQL on `conn`, opened on `image`. A read of a page the image
// lacks fails verification, checked even on success: a read that failed must
// never go unnoticed.
Result<QueryResult> run_checked(GuardedConnection& conn, const ProofImage& image,
                                const QueryProof& proof) {
  Result<QueryResult> result = conn.query(proof.sql, proof.params);
  std::vector<uint32_t> missing = image.missing_pages();
  if (!missing.empty()) {
    return make_error(Errc::proof_failed, "page {} was read but is not in the proof{}",
                      missing.front(),
                      missing.size() > 1 ? fmt::format(" ({} such pages)", missing.size()) : "");
  }
  if (!result.ok()) {
    return make_error(result.error().code, "re-running the proven query: {}",
                      result.error().message);
  }
  return result;
}

// A fresh connection on an immutable image: the verifier without memory.
Result<QueryResult> rerun(const QueryProof& proof, const VerifyOptions& options) {
  ProofImage image(proof.page_size, proof.head.page_count, page_views(proof));
  SWL_ASSIGN(auto conn, GuardedConnection::open(image.uri(), options.guard));
  return run_checked(*conn, image, proof);
}

// --- the cache ---------------------------------------------------------------

// Least recently used first out. find() makes an entry the most recent.
template <class K, class V>
class Lru {
 public:
  explicit Lru(size_t capacity) : capacity_(capacity) {}
  V* find(const K& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }
  // May evict the entry itself when the capacity is 0: find() after put().
  void put(K key, V value) {
    erase(key);
    order_.emplace_front(std::move(key), std::move(value));
    index_[order_.front().first] = order_.begin();
    while (order_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }
  void erase(const K& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return;
    order_.erase(it->second);
    index_.erase(it);
  }
  void clear() {
    index_.clear();
    order_.clear();
  }

 private:
  size_t capacity_;
  std::list<std::pair<K, V>> order_;
  std::unordered_map<K, typename std::list<std::pair<K, V>>::iterator> index_;
};

std::string key_of(std::initializer_list<ByteView> parts) {
  std::string key;
  for (ByteView p : parts) key.append(reinterpret_cast<const char*>(p.data()), p.size());
  return key;
}

ByteView u32_bytes(const uint32_t& v) { return {reinterpret_cast<const uint8_t*>(&v), sizeof v}; }

// A kept connection runs only under the guard options it was opened with.
bool same_guard(const ReadGuardOptions& a, const ReadGuardOptions& b) {
  // A field added to ReadGuardOptions must be compared here.
  static_assert(sizeof(ReadGuardOptions) == 72, "compare every ReadGuardOptions field");
  auto tie = [](const ReadGuardOptions& o) {
    return std::tie(o.time_limit, o.max_vm_steps, o.max_sql_length, o.max_like_pattern_length,
                    o.max_expr_depth, o.max_compound_select, o.max_value_length, o.max_variables,
                    o.max_function_args, o.max_rows, o.max_result_bytes, o.statement_cache);
  };
  return tie(a) == tie(b);
}

// SQL that reports state of the connection rather than of the database: on a
// kept connection it could differ from a fresh one, so it runs on a fresh one.
bool names_connection_state(std::string_view sql) {
  return mentions_ci(sql, "data_version") || mentions_ci(sql, "sqlite_stmt");
}

// Loads the schema and says whether it declares a virtual table (a module may
// cache pages' contents per connection, e.g. FTS5's config). nullopt if the
// schema could not be read.
std::optional<bool> load_schema_and_probe_virtual_tables(GuardedConnection& conn) {
  GuardedConnection::TrustedScope trusted(conn);
  auto stmt = prepare(conn.handle(),
                      "SELECT 1 FROM sqlite_schema WHERE (type = 'table' AND rootpage = 0) "
                      "OR sql LIKE 'create virtual%' LIMIT 1");
  if (!stmt.ok()) return std::nullopt;
  int rc = sqlite3_step(stmt->get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::nullopt;
}

}  // namespace

struct VerifierCache::Impl {
  // One connection kept per (state root, page count, page size). Member order
  // matters: the connection closes before its image goes.
  struct Kept {
    ReadGuardOptions guard;
    std::unique_ptr<ProofImage> image;
    std::unique_ptr<GuardedConnection> conn;
    std::vector<uint32_t> schema_pages;  // sorted: what parsing the schema read
    bool reusable = true;                // false: virtual tables, always fresh
  };
  struct Leaf {
    Bytes page;
    Hash32 hash;
  };

  VerifierCacheOptions options;
  VerifierCacheStats stats;
  Lru<std::string, bool> heads;
  Lru<std::string, Leaf> leaves;
  Lru<std::string, std::unique_ptr<Kept>> kept;

  explicit Impl(VerifierCacheOptions o)
      : options(o),
        heads(o.max_heads),
        leaves(o.max_leaf_pages),
        kept(o.reuse_connections ? o.max_connections : 0) {}

  // Only successes are remembered; the key is every byte Head::verify reads.
  Status check_signature(const Head& head, const PublicKey& log_id) {
    std::string key = key_of({encode_head(head), log_id.bytes});
    if (heads.find(key) != nullptr) {
      ++stats.head_hits;
      return ok_status();
    }
    ++stats.head_misses;
    SWL_TRY(head.verify(log_id));
    heads.put(std::move(key), true);
    return ok_status();
  }

  // A remembered hash is used only for byte-identical page bytes at that pgno.
  // The pages not remembered are hashed together (page_leaf_hashes), then remembered.
  std::vector<Hash32> leaf_hashes(const QueryProof& proof) {
    std::vector<Hash32> out(proof.pages.size());
    std::vector<PageLeafJob> jobs;
    std::vector<std::pair<size_t, std::string>> missed;  // page index, its key
    for (size_t i = 0; i < proof.pages.size(); ++i) {
      const ProvenPage& p = proof.pages[i];
      std::string key = key_of({proof.head.state_root, u32_bytes(p.pgno)});
      if (const Leaf* l = leaves.find(key); l != nullptr && l->page == p.bytes) {
        ++stats.leaf_hits;
        out[i] = l->hash;
        continue;
      }
      ++stats.leaf_misses;
      jobs.push_back({p.pgno, p.bytes, &out[i]});
      missed.emplace_back(i, std::move(key));
    }
    page_leaf_hashes(jobs);
    for (auto& [i, key] : missed) leaves.put(std::move(key), Leaf{proof.pages[i].bytes, out[i]});
    return out;
  }

  // Opens a connection to keep on a reusable image holding `proof`'s pages and
  // parses the schema. nullptr when that fails (the caller runs fresh, which
  // reports why); a non-reusable marker when the schema has virtual tables.
  std::unique_ptr<Kept> open_kept(const QueryProof& proof, const VerifyOptions& opts) {
    auto k = std::make_unique<Kept>();
    k->guard = opts.guard;
    k->image = std::make_unique<ProofImage>(proof.page_size, proof.head.page_count,
                                            page_views(proof), ProofImage::Mode::reusable);
    auto conn = GuardedConnection::open(k->image->uri(), opts.guard);
    if (!conn.ok()) return nullptr;
    k->conn = std::move(conn).value();
    k->image->record_reads(true);
    std::optional<bool> virtual_tables = load_schema_and_probe_virtual_tables(*k->conn);
    k->image->record_reads(false);
    if (!virtual_tables || !k->image->missing_pages().empty()) return nullptr;
    if (*virtual_tables) {
      k->conn.reset();
      k->image.reset();
      k->reusable = false;
      return k;
    }
    k->schema_pages = k->image->read_pages();
    std::sort(k->schema_pages.begin(), k->schema_pages.end());
    // The schema must have been parsed from the image just now (page 1 read
    // under record_reads): a schema SQLite loaded earlier, e.g. by a pragma run
    // on open, would leave schema_pages short, and a later proof lacking a
    // schema page would then pass here where a fresh verifier fails it.
    if (k->schema_pages.empty() || k->schema_pages.front() != 1) return nullptr;
    return k;
  }

  static bool holds_all(const QueryProof& proof, const std::vector<uint32_t>& sorted_pgnos) {
    auto it = proof.pages.begin();
    for (uint32_t pgno : sorted_pgnos) {
      it = std::lower_bound(it, proof.pages.end(), pgno,
                            [](const ProvenPage& p, uint32_t n) { return p.pgno < n; });
      if (it == proof.pages.end() || it->pgno != pgno) return false;
    }
    return true;
  }

  Result<QueryResult> fresh(const QueryProof& proof, const VerifyOptions& opts) {
    ++stats.fresh_runs;
    return rerun(proof, opts);
  }

  // Precondition: the proof's pages verified against its head's state root.
  Result<QueryResult> rerun_cached(const QueryProof& proof, const VerifyOptions& opts) {
    if (!options.reuse_connections || names_connection_state(proof.sql)) {
      return fresh(proof, opts);
    }
    std::string key = key_of({proof.head.state_root, u32_bytes(proof.head.page_count),
                              u32_bytes(proof.page_size)});
    std::unique_ptr<Kept>* slot = kept.find(key);
    if (slot != nullptr && (*slot)->reusable && !same_guard((*slot)->guard, opts.guard)) {
      kept.erase(key);
      slot = nullptr;
    }
    Kept* k = nullptr;
    if (slot == nullptr) {
      std::unique_ptr<Kept> opened = open_kept(proof, opts);
      if (opened == nullptr) return fresh(proof, opts);
      kept.put(key, std::move(opened));
      slot = kept.find(key);
      if (slot == nullptr || !(*slot)->reusable) return fresh(proof, opts);
      k = slot->get();
      ++stats.connection_opens;
    } else {
      k = slot->get();
      // Without the schema's pages a fresh verifier fails; so does this one.
      if (!k->reusable || !holds_all(proof, k->schema_pages)) return fresh(proof, opts);
      // New generation in page 1: the pager drops every cached page before it
      // reads anything for this query.
      k->image->replace_pages(page_views(proof));
      ++stats.connection_hits;
    }
    Result<QueryResult> result = run_checked(*k->conn, *k->image, proof);
    // Nothing kept points into the caller's proof, and the page cache is empty
    // (a second, independent layer: dropped unpinned pages, all of them here).
    k->image->replace_pages({});
    sqlite3_db_release_memory(k->conn->handle());
    if (!result.ok()) kept.erase(key);
    return result;
  }
};

Result<VerifiedResult> Verifier::verify(const PublicKey& log_id, const QueryProof& proof,
                                        const VerifyOptions& options) {
  SWL_TRY(check_query(proof, options));
  SWL_TRY(proof.head.verify(log_id));
  SWL_TRY(check_freshness(proof.head, options));
  SWL_TRY(check_shape(proof));
  SWL_TRY(check_pages(proof, leaf_hashes(proof)));
  SWL_ASSIGN(QueryResult result, rerun(proof, options));
  return VerifiedResult{proof.head, std::move(result), proof.pages.size()};
}

Result<VerifiedResult> Verifier::verify_bytes(const PublicKey& log_id, ByteView bytes,
                                              const VerifyOptions& options) {
  SWL_ASSIGN(QueryProof proof, decode_query_proof(bytes, options.limits));
  return verify(log_id, proof, options);
}

VerifierCache::VerifierCache(VerifierCacheOptions options)
    : impl_(std::make_unique<Impl>(options)) {}
VerifierCache::~VerifierCache() = default;

// The same steps in the same order as Verifier::verify, so the same first error.
Result<VerifiedResult> VerifierCache::verify(const PublicKey& log_id, const QueryProof& proof,
                                             const VerifyOptions& options) {
  SWL_TRY(check_query(proof, options));
  SWL_TRY(impl_->check_signature(proof.head, log_id));
  SWL_TRY(check_freshness(proof.head, options));
  SWL_TRY(check_shape(proof));
  SWL_TRY(check_pages(proof, impl_->leaf_hashes(proof)));
  SWL_ASSIGN(QueryResult result, impl_->rerun_cached(proof, options));
  return VerifiedResult{proof.head, std::move(result), proof.pages.size()};
}

Result<VerifiedResult> VerifierCache::verify_bytes(const PublicKey& log_id, ByteView bytes,
                                                   const VerifyOptions& options) {
  SWL_ASSIGN(QueryProof proof, decode_query_proof(bytes, options.limits));
  return verify(log_id, proof, options);
}

void VerifierCache::clear() {
  impl_->heads.clear();
  impl_->leaves.clear();
  impl_->kept.clear();
}

const VerifierCacheStats& VerifierCache::stats() const { return impl_->stats; }

}  // namespace swarmlite
