// HttpBackend adapters (net/http_api.h) for the two owners of a database:
//  - PrimaryHttpBackend: writes through Primary::execute, pushes each new head
//    to peers with Node::notify_new_head(); reads like a replica.
//  - ReplicaHttpBackend: read-only; proofs through Replica::prove.
// Reads (both): each request borrows a GuardedConnection (read_guard.h) on the
// node's database from a ReadPool (read_pool.h) and begins one snapshot (snapshot.h) under a TrustedScope,
// so every statement of a request sees the same state and no client SQL runs
// unguarded. Proofs (proof=1) go through the owner's prove(), which holds the
// owner's lock so the state tree, head and file agree.
// /status, /readyz and /metrics come from the Node plus the owner's state.
//
// Thread-safety: every method may run on several HTTP worker threads at once
// (the Primary/Replica/Node methods used are thread-safe). The Node and the
// owner must outlive the backend.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "net/http_api.h"
#include "net/node.h"
#include "net/read_pool.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/replica.h"
#include "sqlbridge/tools/snapshot_source.h"

namespace swarmlite::net {

// Raises `announced` to `head_size` if it is below; true for exactly one
// caller per raise (PrimaryHttpBackend: who calls Node::notify_new_head()).
bool raise_announced_head(std::atomic<uint64_t>& announced, uint64_t head_size);

class PrimaryHttpBackend : public HttpBackend {
 public:
  // Listens for the heads the primary signs in the background
  // (PrimaryOptions::sign_in_background) and has the node announce each.
  PrimaryHttpBackend(Primary& primary, Node& node, SnapshotSourceOptions snapshot_options = {});
  ~PrimaryHttpBackend() override;
  bool accepts_writes() const override { return true; }
  Result<std::vector<ExecOutcome>> execute(const std::vector<Statement>& statements,
                                           bool transaction) override;
  // /db/execute's writes go to a thread of this backend, which runs every
  // request queued meanwhile in one Primary::execute_batch.
  bool submits_writes() const override { return true; }
  void submit_execute(std::vector<Statement> statements, bool transaction,
                      ExecuteDone done) override;
  // Submitted requests answered, and the execute_batch calls they took.
  struct SubmitStats {
    uint64_t requests = 0;
    uint64_t batches = 0;
  };
  SubmitStats submit_stats() const {
    return {submitted_requests_.load(), submitted_batches_.load()};
  }
  Result<std::vector<QueryOutcome>> query(const std::vector<Statement>& statements,
                                          const QueryOptions& options) override;
  std::optional<Result<std::vector<QueryOutcome>>> try_query_inline(
      const std::vector<Statement>& statements, const QueryOptions& options,
      const InlineBudget& budget) override;
  uint64_t size() const override { return primary_.size(); }
  // Node::notify_new_head / notify_new_entries (called by execute) tell.
  bool set_size_listener(std::function<void()> fn) override {
    node_.set_size_listener(std::move(fn));
    return true;
  }
  Result<std::vector<StatementClass>> classify(const std::vector<Statement>& statements) override;
  Result<Classified> classify_and_read(const std::vector<Statement>& statements) override;
  std::optional<Result<Classified>> try_classify_and_read_inline(
      const std::vector<Statement>& statements, const InlineBudget& budget) override;
  nlohmann::json status() const override;
  Status ready() const override;
  void update_metrics(Metrics& metrics) override;
  Result<BackupFile> backup(BackupFormat format, std::chrono::steady_clock::time_point deadline,
                            const std::atomic<bool>* cancel) override;
  // A SQLite file through import_database (only into a primary holding nothing
  // but genesis), a SQL dump through run_sql_script (sqlbridge/tools/).
  Result<nlohmann::json> load(const LoadRequest& request) override;
  // Served from the primary's pin (Primary::pinned_page_source), no copy
  // first; copies at signed heads as backups are made where the pin cannot serve.
  SnapshotSource* snapshots() override { return snapshots_.get(); }
  // The page service: pages and leaves of the primary's pinned head (Primary).
  const PageServer* page_server() const override { return &primary_; }

 private:
  NodeStatus node_status() const;
  // After a write: Node::notify_new_head() when the log's head grew past
  // announced_head_, else only Node::notify_new_entries().
  void announce_after_write();
  Primary& primary_;
  Node& node_;
  // The largest head size handed to Node::notify_new_head() by the head
  // listener or a write (a head the background signer stores is announced by
  // the listener; most writes then bring none and wake no node thread).
  std::atomic<uint64_t> announced_head_{0};
  ReadPool reads_;  // plain reads and /db/request's classification
  // The write lane has several threads (their writes share group commits):
  // writes hold this shared, a load exclusive, so no write interleaves with
  // a load's entries (docs/http-api.md "Loading a database").
  std::shared_mutex load_mu_;
  std::unique_ptr<SnapshotSource> snapshots_;

  // Submitted writes (submit_execute), run by submit_thread_ (started by the
  // first submission; the destructor runs what is queued, then joins it).
  struct Pending;
  struct Submitted {
    std::vector<Statement> statements;
    bool transaction = false;
    ExecuteDone done;
  };
  void run_submitted();
  std::mutex submit_mu_;
  std::condition_variable submit_cv_;
  std::deque<Submitted> submitted_;
  bool submit_idle_ = false;  // the thread waits for submissions
  bool submit_stop_ = false;
  std::atomic<uint64_t> submitted_requests_{0}, submitted_batches_{0};
  std::thread submit_thread_;
};

struct ReplicaHttpOptions {
  // Tests and demos only: every proof served has one byte flipped in the
  // bytes of its last page, so clients can be shown catching a lying peer.
  bool tamper_proofs = false;
};

class ReplicaHttpBackend : public HttpBackend {
 public:
  ReplicaHttpBackend(Replica& replica, Node& node, ReplicaHttpOptions options = {},
                     SnapshotSourceOptions snapshot_options = {});
  bool accepts_writes() const override { return false; }
  Result<std::vector<QueryOutcome>> query(const std::vector<Statement>& statements,
                                          const QueryOptions& options) override;
  std::optional<Result<std::vector<QueryOutcome>>> try_query_inline(
      const std::vector<Statement>& statements, const QueryOptions& options,
      const InlineBudget& budget) override;
  uint64_t size() const override { return replica_.size(); }
  // The node's worker tells after each apply.
  bool set_size_listener(std::function<void()> fn) override {
    node_.set_size_listener(std::move(fn));
    return true;
  }
  Result<std::vector<StatementClass>> classify(const std::vector<Statement>& statements) override;
  Result<Classified> classify_and_read(const std::vector<Statement>& statements) override;
  std::optional<Result<Classified>> try_classify_and_read_inline(
      const std::vector<Statement>& statements, const InlineBudget& budget) override;
  uint64_t known_head_size() const override;  // NodeStatus::best_size
  nlohmann::json status() const override;
  Status ready() const override;
  void update_metrics(Metrics& metrics) override;
  Result<BackupFile> backup(BackupFormat format, std::chrono::steady_clock::time_point deadline,
                            const std::atomic<bool>* cancel) override;
  SnapshotSource* snapshots() override { return snapshots_.get(); }
  // The page service: pages and leaves of the replica's pinned head (Replica).
  const PageServer* page_server() const override { return &replica_; }

 private:
  // Refuses while the replica is corrupt or diverged (as backups are).
  Status serving() const;
  Replica& replica_;
  Node& node_;
  ReplicaHttpOptions options_;
  ReadPool reads_;  // plain reads and /db/request's classification
  std::unique_ptr<SnapshotSource> snapshots_;
};

// Flips one byte in the middle of the last page of `proof` (the tamper hook;
// exposed for tests). No-op on a proof without pages.
void tamper_query_proof(QueryProof& proof);

}  // namespace swarmlite::net
