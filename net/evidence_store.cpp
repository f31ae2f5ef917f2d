#include "net/evidence_store.h"

#include <spdlog/spdlog.h>

#include <system_error>

#include "core/file_io.h"

namespace swarmlite::net {

namespace fs = std::filesystem;

fs::path evidence_path_in(const fs::path& data_dir) { return data_dir / "evidence.bin"; }

EvidenceStore::EvidenceStore(fs::path data_dir) : dir_(std::move(data_dir)) {
  if (!dir_.empty()) path_ = evidence_path_in(dir_);
}

Result<std::optional<Evidence>> EvidenceStore::load(const PublicKey& log_id) const {
  if (path_.empty()) return std::optional<Evidence>();
  auto bytes = file_io::read_file(path_, kMaxEvidenceFileBytes);
  if (!bytes.ok()) {
    if (bytes.error().code == Errc::not_found) return std::optional<Evidence>();
    return bytes.take_error();
  }
  auto ev = decode_evidence(*bytes);
  if (!ev.ok()) {
    return make_error(ev.error().code, "{}: not evidence: {}", path_.string(),
                      ev.error().message);
  }
  if (auto st = ev->verify(log_id); !st.ok()) {
    return make_error(st.error().code, "{}: does not prove that log {} equivocated: {}",
                      path_.string(), log_id.hex(), st.error().message);
  }
  return std::optional<Evidence>(std::move(ev).value());
}

Status EvidenceStore::write(const Evidence& e) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) {
    return make_error(Errc::io_error, "cannot create the data directory {}: {}", dir_.string(),
                      ec.message());
  }
  return file_io::durable_replace(path_, encode_evidence(e));
}

Status EvidenceStore::store(const Evidence& e) {
  if (path_.empty()) return {};
  pending_ = e;
  Status st = write(e);
  if (!st.ok()) {
    fault_.failed(st.error());
    spdlog::error("could not store evidence in {} (retrying): {}", path_.string(),
                  st.error().to_string());
    return st;
  }
  pending_.reset();
  fault_.cleared();
  spdlog::info("evidence stored in {}", path_.string());
  return st;
}

void EvidenceStore::retry() {
  if (!pending_ || !fault_.retry_due()) return;
  const uint64_t attempts = fault_.get() ? fault_.get()->retries : 0;
  Status st = write(*pending_);
  if (!st.ok()) {
    fault_.failed(st.error());
    spdlog::error("could not store evidence in {} ({} attempts; retrying): {}", path_.string(),
                  attempts + 1, st.error().to_string());
    return;
  }
  pending_.reset();
  fault_.cleared();
  spdlog::info("evidence stored in {} after {} failed attempt(s)", path_.string(), attempts);
}

}  // namespace swarmlite::net
