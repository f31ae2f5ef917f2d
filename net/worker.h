// The node's worker threads (docs/protocol.md "Threads"): one stores verified
// batches in the backend's Log (fsync), the other runs the backend's apply,
// both off the io thread, so sockets keep being served while the disk works
// and a batch being stored (its verification and fsync) overlaps the replay of
// the ones before it. Jobs (stores) run in order; applying runs in chunks of
// kApplyChunk entries up to the target set by want_apply().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "net/node.h"
#include "sqlbridge/engine/local_fault.h"

namespace swarmlite::net {

class Worker {
 public:
  // Entries per backend.apply call: one replay batch (ReplicaOptions::
  // max_batch_entries); bounds how long stop() waits. Few calls also mean few
  // waits for log_mutex(), which a store holds through its fsync.
  static constexpr uint64_t kApplyChunk = 1024;

  // `on_applied` (may be empty) runs on the apply thread after each
  // backend.apply call, outside the worker's lock: the applied size may have grown.
  explicit Worker(NodeBackend& backend, std::function<void()> on_applied = {})
      : backend_(backend), on_applied_(std::move(on_applied)) {}
  ~Worker() { stop(); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  // Finishes the job and the apply call in progress, drops queued jobs, joins. Idempotent.
  void stop();
  // Runs `job` on the store thread, after the jobs posted before it.
  void post(std::function<void()> job);
  // Apply up to `size` entries (replica), on the apply thread. Monotonic.
  void want_apply(uint64_t size);
  // Applying stops for good (the log equivocated); the first reason is kept.
  void halt_apply(const std::string& why);
  std::optional<std::string> apply_error() const;
  // Local fault of applying (docs/operations.md "Local faults"): set here,
  // retried with backoff, never a reason to ban anyone.
  FaultState apply_fault;

 private:
  bool apply_due() const;
  void run_jobs();
  void run_apply();

  NodeBackend& backend_;
  std::function<void()> on_applied_;
  mutable std::mutex mu_;
  std::condition_variable jobs_cv_, apply_cv_;
  std::deque<std::function<void()>> jobs_;
  uint64_t apply_target_ = 0;
  bool stalled_ = false;
  std::optional<std::string> apply_error_;
  bool stop_ = false;
  std::thread jobs_thread_, apply_thread_;
};

}  // namespace swarmlite::net
