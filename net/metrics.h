// Metrics in the Prometheus text exposition format (version 0.0.4), served at
// GET /metrics. A Metrics registry hands out Counter/Gauge/Histogram series by
// name + labels; updating a series is one relaxed atomic operation, so hot
// paths look a series up once and keep the reference.
//
// Thread-safety: everything here is safe from any thread. References returned
// by counter()/gauge()/histogram() stay valid until remove() of that series or
// the registry's destruction.
// Naming: names match [a-zA-Z_:][a-zA-Z0-9_:]*, counters end in "_total"; label
// values are escaped on output. Keep label sets bounded (e.g. remove() a peer's
// series when it is forgotten), or the scrape grows without end.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace swarmlite::net {

class Counter {
 public:
  void inc(uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void set(double v) noexcept { v_.store(v, std::memory_order_relaxed); }
  void add(double d) noexcept;
  double value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  // `bounds`: bucket upper bounds, strictly increasing (an implicit +Inf follows).
  explicit Histogram(std::vector<double> bounds);
  void observe(double v) noexcept;

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  // Not atomic across buckets: a concurrent observe() may be half-counted.
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 (the last is +Inf)
  std::atomic<double> sum_{0};
};

// Latency buckets in seconds, 0.25 ms … 10 s.
std::vector<double> default_latency_buckets();

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Finds or creates the series. `help` is kept from the first call for a name.
  // A name used with two kinds is a bug (assert); in release builds the second
  // kind gets a series that is never rendered.
  Counter& counter(std::string_view name, std::string_view help, const MetricLabels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const MetricLabels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                       const MetricLabels& labels = {});
  // Forgets one series (its references become invalid).
  void remove(std::string_view name, const MetricLabels& labels);

  // The whole registry as Prometheus text, families sorted by name.
  std::string render() const;

 private:
  struct Family;
  struct Series;
  Series& find_or_create(std::string_view name, std::string_view help, int kind,
                         const MetricLabels& labels, std::vector<double>* bounds);
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
  std::vector<std::unique_ptr<Series>> orphans_;  // kind-mismatch series (never rendered)
};

// `{a="x",b="y"}` with values escaped ("" for no labels).
std::string render_labels(const MetricLabels& labels);

}  // namespace swarmlite::net
