// The node's worker thread (docs/protocol.md "Threads"): stores verified
// batches in the backend's Log (fsync) and runs the backend's apply, off the
// io thread, so sockets keep being served while the disk works. Jobs (stores)
// go first: they unblock the next fetch; applying runs in chunks of
// kApplyChunk entries between them.
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
  static constexpr uint64_t kApplyChunk = 256;  // entries per backend.apply call: keeps stores responsive

  // `on_applied` (may be empty) runs on the worker thread after each
  // backend.apply call, outside the worker's lock: the applied size may have grown.
  explicit Worker(NodeBackend& backend, std::function<void()> on_applied = {})
      : backend_(backend), on_applied_(std::move(on_applied)) {}
  ~Worker() { stop(); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  // Finishes the job or apply in progress, drops queued jobs, joins. Idempotent.
  void stop();
  void post(std::function<void()> job);
  // Apply up to `size` entries (replica). Monotonic.
  void want_apply(uint64_t size);
  // Applying stops for good (the log equivocated); the first reason is kept.
  void halt_apply(const std::string& why);
  std::optional<std::string> apply_error() const;
  // Local fault of applying (docs/operations.md "Local faults"): set here,
  // retried with backoff, never a reason to ban anyone.
  FaultState apply_fault;

 private:
  bool apply_due() const;
  void run();

  NodeBackend& backend_;
  std::function<void()> on_applied_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  uint64_t apply_target_ = 0;
  bool stalled_ = false;
  std::optional<std::string> apply_error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace swarmlite::net
