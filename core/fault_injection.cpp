#include "core/fault_injection.h"

#include <atomic>
#include <mutex>
#include <string>

namespace swarmlite::fault_injection {
namespace {
enum class What { none, writes, syncs };
std::atomic<bool> g_on{false};
std::mutex g_mu;
What g_what = What::none;  // guarded by g_mu
std::string g_prefix;      // guarded by g_mu

void fail_under(const std::filesystem::path& dir, What what) {
  std::lock_guard lock(g_mu);
  g_prefix = std::filesystem::absolute(dir).lexically_normal().string();
  while (g_prefix.size() > 1 && g_prefix.back() == '/') g_prefix.pop_back();
  g_what = what;
  g_on = true;
}

bool fails(const char* path, What what) {
  if (!g_on.load(std::memory_order_relaxed) || path == nullptr) return false;
  std::lock_guard lock(g_mu);
  if (!g_on || g_what != what) return false;
  std::string p = std::filesystem::absolute(path).lexically_normal().string();
  if (p.rfind(g_prefix, 0) != 0) return false;
  if (p.size() == g_prefix.size()) return true;
  char next = p[g_prefix.size()];
  return next == '/' || next == '-';  // under the directory, or SQLite's -wal / -journal
}
}  // namespace

void fail_writes_under(const std::filesystem::path& dir) { fail_under(dir, What::writes); }
void fail_syncs_under(const std::filesystem::path& dir) { fail_under(dir, What::syncs); }

void clear() {
  std::lock_guard lock(g_mu);
  g_on = false;
  g_what = What::none;
  g_prefix.clear();
}

bool write_fails(const char* path) { return fails(path, What::writes); }
bool sync_fails(const char* path) { return fails(path, What::syncs); }

}  // namespace swarmlite::fault_injection
