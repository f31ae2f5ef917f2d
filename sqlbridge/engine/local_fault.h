// A node's own trouble — its disk is full, a write or fsync failed, SQLite
// said SQLITE_FULL / SQLITE_IOERR — as opposed to bad data from a peer
// (docs/operations.md "Local faults"). It is reported (/status local_fault,
// /metrics, /readyz 503), retried with backoff, and cleared by the first
// success; a peer is never banned for it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "core/result.h"

namespace swarmlite {

struct LocalFault {
  std::string what;      // the newest error
  int64_t since_ms = 0;  // wall clock (Unix ms) of the first failure of this spell
  uint64_t retries = 0;  // failed attempts since then (the first one included)
};

// True for errors that are the node's own, not the data's: io_error (the OS or
// SQLite's I/O: disk full, EIO, busy).
inline bool is_local_fault(const Error& e) { return e.code == Errc::io_error; }

// The fault state of one activity (storing, applying, committing) with
// exponential backoff between retries. Thread-safe. The steady-clock `now`
// parameters default to the real clock; the sync engine passes its own
// (net/sync.h: no clock of its own, tested with a fake one).
class FaultState {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kFirstBackoff{100};
  static constexpr std::chrono::milliseconds kMaxBackoff{5000};

  void failed(const Error& e, Clock::time_point now = Clock::now()) {
    std::lock_guard lock(mu_);
    if (!fault_) {
      fault_ = LocalFault{};
      fault_->since_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
      backoff_ = kFirstBackoff;
    } else {
      backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    }
    fault_->what = e.to_string();
    ++fault_->retries;
    retry_at_ = now + backoff_;
  }
  void cleared() {
    std::lock_guard lock(mu_);
    fault_.reset();
  }
  std::optional<LocalFault> get() const {
    std::lock_guard lock(mu_);
    return fault_;
  }
  // No fault, or its backoff has passed.
  bool retry_due(Clock::time_point now = Clock::now()) const {
    std::lock_guard lock(mu_);
    return !fault_ || now >= retry_at_;
  }
  // Time left until the next retry (zero when due or no fault).
  std::chrono::milliseconds wait(Clock::time_point now = Clock::now()) const {
    std::lock_guard lock(mu_);
    if (!fault_) return std::chrono::milliseconds(0);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now);
    return std::max(left, std::chrono::milliseconds(0));
  }

 private:
  mutable std::mutex mu_;
  std::optional<LocalFault> fault_;
  std::chrono::milliseconds backoff_{kFirstBackoff};
  Clock::time_point retry_at_{};
};

}  // namespace swarmlite
