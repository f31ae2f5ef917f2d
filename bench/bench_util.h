// Helpers shared by the benchmark binaries (bench/*_bench.cpp): a failed setup
// step aborts the run (a benchmark of failures measures nothing), environment
// knobs, the machine's load (every figure is reported with it:
// docs/performance.md) and percentiles.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/result.h"

namespace swarmlite::bench {

[[noreturn]] inline void die(const std::string& what) {
  fmt::print(stderr, "bench: {}\n", what);
  std::abort();
}

template <typename T>
T must(Result<T> r, const std::string& what) {
  if (!r.ok()) die(what + ": " + r.error().to_string());
  return std::move(r).value();
}

inline void must(Status s, const std::string& what) {
  if (!s.ok()) die(what + ": " + s.error().to_string());
}

inline int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : fallback;
}

// The 1-minute load average (/proc/loadavg).
inline double load_average() {
  std::ifstream in("/proc/loadavg");
  double l = 0;
  in >> l;
  return l;
}

// CPU time the hypervisor gave to other guests while this one wanted it
// ("steal", /proc/stat, summed over all CPUs), in seconds since boot. On a
// shared host it rises when both vCPUs are busy, and a multi-threaded row
// slows with it: report the difference over a row next to its figures.
inline double steal_seconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t v[8] = {};
  in >> cpu;
  for (auto& x : v) in >> x;
  if (cpu != "cpu") return 0;
  return static_cast<double>(v[7]) / static_cast<double>(sysconf(_SC_CLK_TCK));  // USER_HZ ticks
}

// One line at the top of a Google Benchmark function: sets the row's "steal_s"
// counter to the steal over the call (the last call is the one reported).
template <class State>
class StealCounter {
 public:
  explicit StealCounter(State& state) : state_(state), start_(steal_seconds()) {}
  ~StealCounter() { state_.counters["steal_s"] = steal_seconds() - start_; }
  StealCounter(const StealCounter&) = delete;
  StealCounter& operator=(const StealCounter&) = delete;

 private:
  State& state_;
  double start_;
};

// The p-th percentile (0..1) of `v`, which it reorders.
inline double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace swarmlite::bench
