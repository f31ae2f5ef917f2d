#include "client/head_cache.h"

#include <algorithm>
#include <string_view>

#include "core/codec.h"
#include "core/file_io.h"

namespace swarmlite::client {
namespace {

constexpr std::string_view kMagic = "SWLHEADS";
constexpr uint8_t kVersion = 1;
constexpr size_t kFileHeaderSize = 8 + 1 + 4;  // magic, version, count

ClientError file_error(const std::filesystem::path& path, std::string message,
                       std::optional<Error> cause = std::nullopt) {
  ClientError e;
  e.kind = ClientErrorKind::file;
  e.message = path.string() + ": " + std::move(message);
  e.cause = std::move(cause);
  return e;
}

}  // namespace

HeadCache::HeadCache(HeadCacheOptions options) : options_(options) {
  options_.max_sizes_per_log = std::max<size_t>(options_.max_sizes_per_log, 1);
  options_.max_logs = std::max<size_t>(options_.max_logs, 1);
}

ClientResult<Freshness> HeadCache::observe(const Head& head) {
  auto found = logs_.find(head.log_id);
  if (found != logs_.end()) {
    auto same = found->second.heads.find(head.size);
    if (same != found->second.heads.end()) {
      auto ev = evidence_from_heads(same->second, head);
      if (ev.ok()) {
        ClientError e;
        e.kind = ClientErrorKind::equivocation;
        e.message = fmt::format(
            "the log signed two different heads of size {}: state root {} (page count {}, log root {}) "
            "verified before, state root {} (page count {}, log root {}) now — the primary equivocated; "
            "keep the evidence (docs/client.md)",
            head.size, to_hex(same->second.state_root), same->second.page_count, to_hex(same->second.log_root),
            to_hex(head.state_root), head.page_count, to_hex(head.log_root));
        e.evidence = std::move(*ev);
        return e;
      }
      // not_found: the same state (possibly re-signed at another time). Other
      // errors mean a head did not verify: the precondition was broken.
      if (ev.error().code != Errc::not_found) {
        ClientError e;
        e.kind = ClientErrorKind::proof_invalid;
        e.message = "head cache: " + ev.error().to_string();
        e.cause = ev.error();
        return e;
      }
    }
  } else if (logs_.size() >= options_.max_logs) {
    auto oldest = std::min_element(logs_.begin(), logs_.end(), [](const auto& a, const auto& b) {
      return a.second.last_use < b.second.last_use;
    });
    logs_.erase(oldest);
  }
  Log& log = logs_[head.log_id];
  log.last_use = ++clock_;
  log.heads.emplace(head.size, head);  // keeps the first of equal heads
  while (log.heads.size() > options_.max_sizes_per_log) log.heads.erase(log.heads.begin());
  const Head& newest = log.heads.rbegin()->second;
  Freshness f;
  f.newest_size = newest.size;
  f.newest_time_ms = newest.time_ms;
  f.entries_behind = newest.size - std::min(newest.size, head.size);
  f.ms_behind = newest.time_ms > head.time_ms ? newest.time_ms - head.time_ms : 0;
  return f;
}

std::optional<Head> HeadCache::newest(const PublicKey& log_id) const {
  auto it = logs_.find(log_id);
  if (it == logs_.end() || it->second.heads.empty()) return std::nullopt;
  return it->second.heads.rbegin()->second;
}

std::optional<Head> HeadCache::at(const PublicKey& log_id, uint64_t size) const {
  auto it = logs_.find(log_id);
  if (it == logs_.end()) return std::nullopt;
  auto h = it->second.heads.find(size);
  if (h == it->second.heads.end()) return std::nullopt;
  return h->second;
}

size_t HeadCache::head_count() const {
  size_t n = 0;
  for (const auto& [key, log] : logs_) n += log.heads.size();
  return n;
}

void HeadCache::clear() { logs_.clear(); }

ClientResult<HeadCache> HeadCache::load(const std::filesystem::path& path, HeadCacheOptions options) {
  HeadCache cache(options);
  const uint64_t max_heads = uint64_t{cache.options_.max_sizes_per_log} * cache.options_.max_logs;
  auto bytes = file_io::read_file(path, kFileHeaderSize + max_heads * kEncodedHeadSize);
  if (!bytes.ok()) {
    if (bytes.error().code == Errc::not_found) return cache;
    return file_error(path, "cannot read the head cache: " + bytes.error().to_string(), bytes.error());
  }
  Reader r(*bytes, "head cache");
  auto bad = [&](const Error& e) { return file_error(path, e.to_string(), e); };
  auto magic = r.raw(kMagic.size(), "magic");
  if (!magic.ok()) return bad(magic.error());
  if (std::string_view(reinterpret_cast<const char*>(magic->data()), magic->size()) != kMagic)
    return file_error(path, "not a swarmlite head cache (magic at offset 0)");
  auto version = r.u8("version");
  if (!version.ok()) return bad(version.error());
  if (*version != kVersion)
    return file_error(path, fmt::format("head cache version {} at offset 8, this build reads {}", *version, kVersion));
  auto count = r.u32("count");
  if (!count.ok()) return bad(count.error());
  if (*count > max_heads || uint64_t{*count} * kEncodedHeadSize != r.remaining())
    return file_error(path, fmt::format("count {} at offset 9 does not match the {} bytes that follow (cap {} heads)",
                                        *count, r.remaining(), max_heads));
  for (uint32_t i = 0; i < *count; ++i) {
    const size_t offset = r.offset();
    auto head = read_head(r, "head");
    if (!head.ok()) return bad(head.error());
    if (auto v = head->verify(head->log_id); !v.ok())
      return file_error(path, fmt::format("head #{} at offset {} (size {}) does not verify: {}", i, offset,
                                          head->size, v.error().to_string()),
                        v.error());
    auto seen = cache.observe(*head);
    if (!seen.ok()) {
      ClientError e = seen.take_error();
      e.message = path.string() + fmt::format(": head #{} at offset {}: ", i, offset) + e.message;
      return e;
    }
  }
  return cache;
}

ClientResult<std::monostate> HeadCache::save(const std::filesystem::path& path) const {
  Writer w;
  w.raw(as_bytes(kMagic));
  w.u8(kVersion);
  w.u32(static_cast<uint32_t>(head_count()));
  for (const auto& [key, log] : logs_)
    for (const auto& [size, head] : log.heads) w.raw(encode_head(head));
  auto s = file_io::durable_replace(path, w.bytes());
  if (!s.ok()) return file_error(path, "cannot save the head cache: " + s.error().to_string(), s.error());
  return std::monostate{};
}

}  // namespace swarmlite::client
