// The worker thread alone (net/worker.h), over a backend that only counts.
#include "net/worker.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

using namespace swarmlite;
using namespace swarmlite::net;
using namespace std::chrono_literals;

namespace {

// Applies nothing real: applied_size moves up to what apply() is asked for,
// unless `fail_io` is set (then a local fault) or `fail_hard` (a real error).
class CountingBackend : public NodeBackend {
 public:
  const PublicKey& log_id() const override { return id_; }
  const Log& log() const override { throw std::logic_error("not used"); }
  std::mutex& log_mutex() const override { return mu_; }
  bool is_primary() const override { return false; }
  Status store_entries(std::span<const Bytes>, const Head&, std::span<const Hash32>) override {
    return {};
  }
  Result<uint64_t> apply(uint64_t up_to) override {
    ++calls;
    if (on_apply) on_apply();
    if (fail_io) return make_error(Errc::io_error, "disk full");
    if (fail_hard) return make_error(Errc::corrupt, "diverged");
    uint64_t before = applied;
    applied = std::max<uint64_t>(applied, up_to);
    return applied - before;
  }
  uint64_t applied_size() const override { return applied; }

  std::atomic<uint64_t> applied{0};
  std::atomic<int> calls{0};
  std::atomic<bool> fail_io{false}, fail_hard{false};
  std::function<void()> on_apply;  // set before start(): runs inside each apply call

 private:
  PublicKey id_{};
  mutable std::mutex mu_;
};

bool eventually(const std::function<bool()>& cond) {
  auto end = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

}  // namespace

TEST_CASE("worker: jobs run in order, applying runs in chunks up to the target") {
  CountingBackend b;
  Worker w(b);
  w.start();
  std::vector<int> order;
  std::promise<void> done;
  w.post([&] { order.push_back(1); });
  w.post([&] { order.push_back(2); });
  w.post([&] { done.set_value(); });
  REQUIRE(done.get_future().wait_for(10s) == std::future_status::ready);
  CHECK(order == std::vector<int>{1, 2});
  w.want_apply(3 * Worker::kApplyChunk + 5);
  CHECK(eventually([&] { return b.applied == 3 * Worker::kApplyChunk + 5; }));
  CHECK(b.calls >= 4);  // one chunk per call
  w.want_apply(10);  // monotonic: a lower target changes nothing
  w.stop();
  CHECK(b.applied == 3 * Worker::kApplyChunk + 5);
}

TEST_CASE("worker: a local fault is retried with backoff; a real error stops applying") {
  CountingBackend b;
  Worker w(b);
  w.start();
  b.fail_io = true;
  w.want_apply(10);
  CHECK(eventually([&] { return w.apply_fault.get() && w.apply_fault.get()->retries >= 2; }));
  CHECK_FALSE(w.apply_error());
  b.fail_io = false;
  CHECK(eventually([&] { return b.applied == 10; }));
  CHECK(eventually([&] { return !w.apply_fault.get(); }));

  b.fail_hard = true;
  w.want_apply(20);
  CHECK(eventually([&] { return w.apply_error().has_value(); }));
  int calls = b.calls;
  b.fail_hard = false;
  w.want_apply(30);
  std::this_thread::sleep_for(50ms);
  CHECK(b.calls == calls);  // stopped until restart
  CHECK(b.applied == 10);
  w.stop();
}

TEST_CASE("worker: halt_apply keeps the first reason and stops applying") {
  CountingBackend b;
  Worker w(b);
  w.halt_apply("the log equivocated");
  w.halt_apply("later");
  w.start();
  w.want_apply(5);
  std::this_thread::sleep_for(50ms);
  CHECK(b.applied == 0);
  REQUIRE(w.apply_error());
  CHECK(*w.apply_error() == "the log equivocated");
  w.stop();
  w.stop();  // idempotent
}

// docs/protocol.md "Threads and locks": stores run on a thread of their own, so
// a batch is verified and stored (and the next one fetched) while a long apply
// call runs. (With one thread for both, the job waits for the apply call and
// this fails.)
TEST_CASE("worker: a store job runs while an apply call is in progress") {
  CountingBackend b;
  std::promise<void> applying, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> first{true};
  b.on_apply = [&] {
    if (!first.exchange(false)) return;
    applying.set_value();
    released.wait();
  };
  Worker w(b);
  w.start();
  w.want_apply(10);
  REQUIRE(applying.get_future().wait_for(10s) == std::future_status::ready);
  std::promise<void> stored;
  w.post([&] { stored.set_value(); });
  CHECK(stored.get_future().wait_for(5s) == std::future_status::ready);
  CHECK(b.applied == 0);  // the apply call is still in progress
  release.set_value();
  CHECK(eventually([&] { return b.applied == 10; }));
  w.stop();
}
