#include "net/worker.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace swarmlite::net {

void Worker::start() {
  jobs_thread_ = std::thread([this] { run_jobs(); });
  apply_thread_ = std::thread([this] { run_apply(); });
}

void Worker::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  jobs_cv_.notify_all();
  apply_cv_.notify_all();
  if (jobs_thread_.joinable()) jobs_thread_.join();
  if (apply_thread_.joinable()) apply_thread_.join();
}

void Worker::post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  jobs_cv_.notify_one();
}

void Worker::want_apply(uint64_t size) {
  {
    std::lock_guard lock(mu_);
    if (size <= apply_target_) return;
    apply_target_ = size;
    stalled_ = false;
  }
  apply_cv_.notify_one();
}

void Worker::halt_apply(const std::string& why) {
  std::lock_guard lock(mu_);
  if (!apply_error_) apply_error_ = why;
}

std::optional<std::string> Worker::apply_error() const {
  std::lock_guard lock(mu_);
  return apply_error_;
}

bool Worker::apply_due() const {
  return !apply_error_ && !stalled_ && apply_fault.retry_due() &&
         apply_target_ > backend_.applied_size();
}

void Worker::run_jobs() {
  std::unique_lock lock(mu_);
  for (;;) {
    jobs_cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

void Worker::run_apply() {
  std::unique_lock lock(mu_);
  for (;;) {
    // A local fault: wake up when its backoff has passed.
    auto wait = apply_fault.get() ? apply_fault.wait() + std::chrono::milliseconds(1)
                                  : std::chrono::milliseconds(60'000);
    apply_cv_.wait_for(lock, wait, [&] { return stop_ || apply_due(); });
    if (stop_) return;
    if (!apply_due()) continue;
    uint64_t up_to = std::min(apply_target_, backend_.applied_size() + kApplyChunk);
    lock.unlock();
    auto r = backend_.apply(up_to);
    if (on_applied_) on_applied_();
    lock.lock();
    if (!r.ok() && is_local_fault(r.error())) {
      apply_fault.failed(r.error());
      auto f = apply_fault.get();
      spdlog::error("applying entry {} failed on this node ({}. attempt), retrying in {} ms: {}",
                    backend_.applied_size(), f ? f->retries : 0, apply_fault.wait().count(),
                    r.error().to_string());
    } else if (!r.ok()) {
      apply_error_ = r.error().to_string();
      spdlog::error("apply stopped at entry {}: {}", backend_.applied_size(), *apply_error_);
    } else if (apply_fault.get()) {
      apply_fault.cleared();
      spdlog::info("applying works again at entry {}", backend_.applied_size());
      if (r.value() == 0) stalled_ = true;
    } else if (r.value() == 0) {
      stalled_ = true;  // no progress: wait for a new target instead of spinning
    }
  }
}

}  // namespace swarmlite::net
