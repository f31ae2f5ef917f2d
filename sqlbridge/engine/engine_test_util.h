// Test helpers for the primary/replica tests (not part of the library).
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/keys.h"
#include "sqlbridge/engine/primary.h"
#include "sqlbridge/engine/replica.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite::testing {

// Logical pages of a closed database file, normalised (page 1's volatile header bytes).
inline std::vector<Bytes> file_pages(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<Bytes> pages;
  Bytes page(kPageSize);
  uint32_t pgno = 1;
  while (in.read(reinterpret_cast<char*>(page.data()), kPageSize)) {
    pages.push_back(normalize_page(pgno++, page));
  }
  return pages;
}

// A fresh directory, removed with everything in it. Under /dev/shm when there
// is one: these tests check logic, and fsync on a busy shared disk costs ~50 ms.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    std::error_code ec;
    std::filesystem::path base = std::filesystem::is_directory("/dev/shm", ec)
                                     ? std::filesystem::path("/dev/shm")
                                     : std::filesystem::temp_directory_path();
    path_ = base /
            ("swl-engine-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Tests do not need the log's fsync.
inline LogStoreOptions fast_log() {
  LogStoreOptions o;
  o.sync = false;
  return o;
}

inline PrimaryOptions fast_primary(uint64_t sign_every = 1) {
  PrimaryOptions o;
  o.log_options = fast_log();
  o.sign_every_entries = sign_every;
  return o;
}

inline ReplicaOptions fast_replica() {
  ReplicaOptions o;
  o.log_options = fast_log();
  return o;
}

inline Statement sql(std::string text, std::vector<Value> params = {}) {
  return Statement{std::move(text), std::move(params)};
}

// Copies the primary's entries [replica log size, head.size) into the
// replica's log (verified against the primary's newest head) and applies them.
inline Status sync_replica(const Primary& primary, Replica& replica) {
  std::optional<Head> head = primary.head();
  if (!head) return make_error(Errc::not_found, "primary has no head");
  std::vector<Bytes> entries;
  {
    std::lock_guard lock(primary.log_mutex());
    for (uint64_t s = replica.log().size(); s < head->size; ++s) {
      SWL_ASSIGN(Bytes b, primary.log().entry_bytes(s));
      entries.push_back(std::move(b));
    }
  }
  if (!entries.empty()) SWL_TRY(replica.log().append_verified(entries, *head));
  SWL_TRY(replica.apply_available());
  return ok_status();
}

}  // namespace swarmlite::testing
