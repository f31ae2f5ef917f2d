// Address book, bans and sync planning: see peer_set.h.
#include "net/peer_set.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

#include "net/protocol.h"

namespace swarmlite::net {

std::string address_range(const std::string& ip, int v4_bits, int v6_bits) {
  std::array<unsigned char, 16> a{};
  bool v4 = false;
  if (inet_pton(AF_INET, ip.c_str(), a.data()) == 1) {
    v4 = true;
  } else if (inet_pton(AF_INET6, ip.c_str(), a.data()) == 1) {
    static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.data(), kMapped, 12) == 0) {  // ::ffff:a.b.c.d counts as a.b.c.d
      std::memmove(a.data(), a.data() + 12, 4);
      v4 = true;
    }
  } else {
    return "";
  }
  const int width = v4 ? 32 : 128;
  const int bits = std::clamp(v4 ? v4_bits : v6_bits, 0, width);
  for (int i = 0; i < width / 8; ++i) {
    int keep = std::clamp(bits - i * 8, 0, 8);
    a[static_cast<size_t>(i)] &= static_cast<unsigned char>(0xff00u >> keep);
  }
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4 ? AF_INET : AF_INET6, a.data(), text, sizeof text);
  return fmt::format("{}/{}", text, bits);
}

std::optional<uint64_t> choose_eviction(std::span<const InboundInfo> sessions, const std::string& range,
                                        Clock::time_point now, Clock::duration idle_after) {
  std::optional<uint64_t> victim;
  Clock::time_point oldest = Clock::time_point::max();
  for (const auto& s : sessions) {
    if (s.busy || (!range.empty() && s.range != range)) continue;
    if (now - s.last_useful < idle_after) continue;
    if (s.last_useful < oldest) {
      oldest = s.last_useful;
      victim = s.id;
    }
  }
  return victim;
}

AddressBook::AddressBook(size_t cap, std::string self, BackoffPolicy backoff)
    : cap_(std::max<size_t>(cap, 1)), self_(std::move(self)), backoff_(backoff) {}

bool AddressBook::add(const std::string& address, bool seed) {
  if (address == self_ || !parse_host_port(address).ok()) return false;
  auto it = entries_.find(address);
  if (it != entries_.end()) {
    it->second.seed = it->second.seed || seed;
    return false;
  }
  if (entries_.size() >= cap_) evict_one();
  if (entries_.size() >= cap_) return false;  // only seeds left: keep them
  entries_[address] = Info{seed, 0, {}, ++counter_};
  return true;
}

void AddressBook::evict_one() {
  // The non-seed with the most failures, oldest first among equals.
  auto victim = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->second.seed) continue;
    if (victim == entries_.end() || it->second.failures > victim->second.failures ||
        (it->second.failures == victim->second.failures && it->second.added < victim->second.added)) {
      victim = it;
    }
  }
  if (victim != entries_.end()) entries_.erase(victim);
}

std::chrono::milliseconds AddressBook::backoff_for(int failures) const {
  auto d = backoff_.initial;
  for (int i = 1; i < failures && d < backoff_.max; ++i) d *= 2;
  return std::min(d, backoff_.max);
}

void AddressBook::on_dial_failed(const std::string& address, Clock::time_point now) {
  auto it = entries_.find(address);
  if (it == entries_.end()) return;
  Info& info = it->second;
  ++info.failures;
  if (!info.seed && info.failures >= kForgetAfterFailures) {
    entries_.erase(it);
    return;
  }
  info.next_try = now + backoff_for(info.failures);
}

void AddressBook::on_connected(const std::string& address) {
  auto it = entries_.find(address);
  if (it == entries_.end()) return;
  it->second.failures = 0;
  it->second.next_try = {};
}

std::vector<std::string> AddressBook::pick_to_dial(size_t n, const std::set<std::string>& exclude,
                                                   Clock::time_point now, bool seeds_only) {
  std::vector<std::map<std::string, Info>::iterator> ready;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (exclude.count(it->first) || it->second.next_try > now) continue;
    if (seeds_only && !it->second.seed) continue;
    ready.push_back(it);
  }
  std::stable_sort(ready.begin(), ready.end(), [](auto a, auto b) {
    if (a->second.seed != b->second.seed) return a->second.seed;
    return a->second.failures < b->second.failures;
  });
  std::vector<std::string> out;
  for (auto it : ready) {
    if (out.size() >= n) break;
    // Not again until the dial reports back (a dial attempt takes < this long).
    it->second.next_try = now + backoff_.max;
    out.push_back(it->first);
  }
  return out;
}

std::vector<std::string> AddressBook::sample(size_t n, const std::set<std::string>& exclude) const {
  std::vector<std::string> out;
  for (const auto& [addr, info] : entries_) {
    if (out.size() >= n) break;
    if (!exclude.count(addr) && info.failures == 0) out.push_back(addr);
  }
  return out;
}

void BanList::ban(const std::string& key, const std::string& reason, Clock::time_point now,
                  Clock::duration duration) {
  expire(now);
  if (bans_.size() >= cap_ && !bans_.count(key)) {
    // Full: drop the ban that ends first.
    auto first = std::min_element(bans_.begin(), bans_.end(),
                                  [](auto& a, auto& b) { return a.second.until < b.second.until; });
    bans_.erase(first);
  }
  Ban& b = bans_[key];
  b.key = key;
  b.reason = reason;
  b.until = std::max(b.until, now + duration);
}

std::optional<Ban> BanList::find(const std::string& key, Clock::time_point now) {
  expire(now);
  auto it = bans_.find(key);
  if (it == bans_.end()) return std::nullopt;
  return it->second;
}

std::vector<Ban> BanList::active(Clock::time_point now) {
  expire(now);
  std::vector<Ban> out;
  for (auto& [k, b] : bans_) out.push_back(b);
  return out;
}

void BanList::expire(Clock::time_point now) {
  std::erase_if(bans_, [&](const auto& kv) { return kv.second.until <= now; });
}

std::optional<uint64_t> choose_source(std::span<const SourceInfo> sources, uint64_t local_size) {
  const SourceInfo* best = nullptr;
  for (const SourceInfo& s : sources) {
    if (s.busy || s.head_size <= local_size || s.first > local_size) continue;
    if (!best || s.head_size > best->head_size ||
        (s.head_size == best->head_size && s.last_used < best->last_used)) {
      best = &s;
    }
  }
  if (!best) return std::nullopt;
  return best->id;
}

std::optional<EntryRange> unserved_entries(std::span<const SourceInfo> sources, uint64_t local_size) {
  std::optional<uint64_t> resume;  // the smallest `first` among sources ahead of us
  for (const SourceInfo& s : sources) {
    if (s.head_size <= local_size) continue;
    if (s.first <= local_size) return std::nullopt;  // it can serve (maybe later, if busy)
    resume = resume ? std::min(*resume, s.first) : s.first;
  }
  if (!resume) return std::nullopt;
  return EntryRange{local_size, *resume};
}

std::optional<BatchPlan> plan_batch(uint64_t local_size, uint64_t source_size,
                                    uint32_t max_entries) {
  if (source_size <= local_size || max_entries == 0) return std::nullopt;
  return BatchPlan{local_size, max_entries};
}

}  // namespace swarmlite::net
