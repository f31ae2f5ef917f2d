// The evidence file of a node's data directory (docs/operations.md
// "Equivocation"; format: docs/formats/evidence.md). The evidence is the node's
// most important output: it is written with file_io::durable_replace (temp
// file, fsync, rename, directory fsync), and a failure to store it is kept as a
// fault (NodeStatus::evidence_store_fault: /status, /readyz 503) and retried
// with backoff until it succeeds.
#pragma once

#include <filesystem>
#include <optional>

#include "core/evidence.h"
#include "core/result.h"
#include "sqlbridge/engine/local_fault.h"

namespace swarmlite::net {

// The evidence file in a data directory.
std::filesystem::path evidence_path_in(const std::filesystem::path& data_dir);

// Far above any evidence (two heads and at most kMaxEvidencePath hashes): a
// bigger file is not evidence, and is not read into memory.
inline constexpr uint64_t kMaxEvidenceFileBytes = 64 * 1024;

// Not thread-safe, except fault(): one owner (the node's io thread) calls the rest.
class EvidenceStore {
 public:
  // `data_dir` "": evidence is kept nowhere (load finds none, store succeeds).
  explicit EvidenceStore(std::filesystem::path data_dir);

  // evidence_path_in(data_dir), or "" when kept nowhere.
  const std::filesystem::path& path() const { return path_; }

  // The stored evidence: nullopt when there is none; an error naming the file
  // when it cannot be read (io_error), is over kMaxEvidenceFileBytes
  // (too_large), does not decode, or does not prove that `log_id` equivocated.
  Result<std::optional<Evidence>> load(const PublicKey& log_id) const;

  // Stores `e` durably, replacing any earlier file. On failure the evidence is
  // kept for retry(), fault() says why, and the error is returned.
  Status store(const Evidence& e);
  // If a store() failed and its backoff has passed, tries again; a success
  // clears fault(). Cheap when nothing is pending.
  void retry();
  // True while evidence given to store() is not yet on disk.
  bool pending() const { return pending_.has_value(); }
  // Set while pending(): the newest error, since when, attempts. Thread-safe.
  std::optional<LocalFault> fault() const { return fault_.get(); }

 private:
  Status write(const Evidence& e);

  std::filesystem::path dir_, path_;
  std::optional<Evidence> pending_;
  FaultState fault_;
};

}  // namespace swarmlite::net
