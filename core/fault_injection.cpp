#include "core/fault_injection.h"

#include <atomic>
#include <mutex>
#include <string>

namespace swarmlite::fault_injection {
namespace {
std::atomic<bool> g_on{false};
std::mutex g_mu;
std::string g_prefix;  // guarded by g_mu
}  // namespace

void fail_writes_under(const std::filesystem::path& dir) {
  std::lock_guard lock(g_mu);
  g_prefix = std::filesystem::absolute(dir).lexically_normal().string();
  while (g_prefix.size() > 1 && g_prefix.back() == '/') g_prefix.pop_back();
  g_on = true;
}

void clear() {
  std::lock_guard lock(g_mu);
  g_on = false;
  g_prefix.clear();
}

bool write_fails(const char* path) {
  if (!g_on.load(std::memory_order_relaxed) || path == nullptr) return false;
  std::lock_guard lock(g_mu);
  if (!g_on) return false;
  std::string p = std::filesystem::absolute(path).lexically_normal().string();
  if (p.rfind(g_prefix, 0) != 0) return false;
  if (p.size() == g_prefix.size()) return true;
  char next = p[g_prefix.size()];
  return next == '/' || next == '-';  // under the directory, or SQLite's -wal / -journal
}

}  // namespace swarmlite::fault_injection
