// PrimaryHttpBackend's head announcements (docs/performance.md "Where a single
// HTTP writer's time goes"): a write wakes the node's io thread only when the
// log's head grew past what was announced, and exactly one caller announces
// each growth, however many race for it.
#include "net/http_backends.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

using swarmlite::net::raise_announced_head;

TEST_CASE("raise_announced_head: true once per growth, never for the same or an older head") {
  std::atomic<uint64_t> announced{0};
  CHECK_FALSE(raise_announced_head(announced, 0));  // no head yet
  CHECK(raise_announced_head(announced, 5));
  CHECK(announced.load() == 5);
  CHECK_FALSE(raise_announced_head(announced, 5));  // a write that brought no new head
  CHECK_FALSE(raise_announced_head(announced, 3));  // an older head seen late
  CHECK(announced.load() == 5);
  CHECK(raise_announced_head(announced, 6));
  CHECK(announced.load() == 6);
}

TEST_CASE(
    "raise_announced_head: racing callers announce each size at most once, and the largest wins") {
  std::atomic<uint64_t> announced{0};
  constexpr int kThreads = 8;
  constexpr uint64_t kSizes = 2000;
  std::atomic<uint64_t> raises{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      // Every thread walks every size: each size can be raised to by one thread only.
      for (uint64_t size = 1; size <= kSizes; ++size) {
        if (raise_announced_head(announced, size)) raises.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(announced.load() == kSizes);
  CHECK(raises.load() >= 1);
  CHECK(raises.load() <= kSizes);
}
