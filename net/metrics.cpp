// Prometheus text exposition (see metrics.h).
#include "net/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cmath>

namespace swarmlite::net {

namespace {

enum Kind { kCounter = 0, kGauge = 1, kHistogram = 2 };
constexpr const char* kKindName[] = {"counter", "gauge", "histogram"};

std::string format_double(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

std::string escape(std::string_view s, bool quotes) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && quotes) out += "\\\"";
    else out.push_back(c);
  }
  return out;
}

template <class T>
void atomic_add(std::atomic<T>& a, T d) noexcept {
  T cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

}  // namespace

void Gauge::add(double d) noexcept { atomic_add(v_, d); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  assert(std::is_sorted(bounds_.begin(), bounds_.end()));
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) noexcept {
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, v);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(acc);
  }
  s.count = acc;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> default_latency_buckets() {
  return {0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::string render_labels(const MetricLabels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ",";
    out += labels[i].first + "=\"" + escape(labels[i].second, true) + "\"";
  }
  return out + "}";
}

struct Metrics::Series {
  MetricLabels labels;
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
};

struct Metrics::Family {
  std::string help;
  int kind = kCounter;
  std::map<std::string, std::unique_ptr<Series>> series;  // key: rendered labels
};

Metrics::Metrics() = default;
Metrics::~Metrics() = default;

Metrics::Series& Metrics::find_or_create(std::string_view name, std::string_view help, int kind,
                                         const MetricLabels& labels, std::vector<double>* bounds) {
  std::lock_guard lock(mu_);
  auto fit = families_.find(name);
  if (fit == families_.end()) {
    auto fam = std::make_unique<Family>();
    fam->help = std::string(help);
    fam->kind = kind;
    fit = families_.emplace(std::string(name), std::move(fam)).first;
  }
  Family& fam = *fit->second;
  auto make_series = [&] {
    auto s = std::make_unique<Series>();
    s->labels = labels;
    if (kind == kCounter) s->counter = std::make_unique<Counter>();
    if (kind == kGauge) s->gauge = std::make_unique<Gauge>();
    if (kind == kHistogram) s->histogram = std::make_unique<Histogram>(bounds ? *bounds : default_latency_buckets());
    return s;
  };
  if (fam.kind != kind) {
    assert(!"metric name registered with two kinds");
    orphans_.push_back(make_series());
    return *orphans_.back();
  }
  std::string key = render_labels(labels);
  auto sit = fam.series.find(key);
  if (sit == fam.series.end()) sit = fam.series.emplace(key, make_series()).first;
  return *sit->second;
}

Counter& Metrics::counter(std::string_view name, std::string_view help, const MetricLabels& labels) {
  return *find_or_create(name, help, kCounter, labels, nullptr).counter;
}
Gauge& Metrics::gauge(std::string_view name, std::string_view help, const MetricLabels& labels) {
  return *find_or_create(name, help, kGauge, labels, nullptr).gauge;
}
Histogram& Metrics::histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                              const MetricLabels& labels) {
  return *find_or_create(name, help, kHistogram, labels, &bounds).histogram;
}

void Metrics::remove(std::string_view name, const MetricLabels& labels) {
  std::lock_guard lock(mu_);
  auto fit = families_.find(name);
  if (fit == families_.end()) return;
  fit->second->series.erase(render_labels(labels));
  if (fit->second->series.empty()) families_.erase(fit);
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, fam] : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape(fam->help, false), name,
                       kKindName[fam->kind]);
    for (const auto& [key, s] : fam->series) {
      if (s->counter) {
        out += fmt::format("{}{} {}\n", name, key, s->counter->value());
      } else if (s->gauge) {
        out += fmt::format("{}{} {}\n", name, key, format_double(s->gauge->value()));
      } else if (s->histogram) {
        auto snap = s->histogram->snapshot();
        for (size_t i = 0; i <= snap.bounds.size(); ++i) {
          MetricLabels l = s->labels;
          l.emplace_back("le", i < snap.bounds.size() ? format_double(snap.bounds[i]) : "+Inf");
          out += fmt::format("{}_bucket{} {}\n", name, render_labels(l), snap.cumulative[i]);
        }
        out += fmt::format("{}_sum{} {}\n", name, key, format_double(snap.sum));
        out += fmt::format("{}_count{} {}\n", name, key, snap.count);
      }
    }
  }
  return out;
}

}  // namespace swarmlite::net
