#include "net/read_pool.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "sqlbridge/engine/page_vfs.h"

namespace swarmlite::net {

ReadPool::ReadPool(std::filesystem::path db_path, size_t max_idle,
                   std::function<uint64_t()> stats_epoch)
    : db_path_(std::move(db_path)), max_idle_(max_idle), stats_epoch_(std::move(stats_epoch)) {}

ReadPool::~ReadPool() = default;

ReadPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_),
      conn_(std::move(other.conn_)),
      dev_(other.dev_),
      ino_(other.ino_),
      epoch_(other.epoch_),
      discard_(other.discard_) {
  other.pool_ = nullptr;
}

ReadPool::Lease::~Lease() {
  if (!pool_ || !conn_.conn) return;
  // Outside any transaction, or it is not reusable: an open read transaction
  // would pin an old snapshot (and block checkpoints) for the next borrower.
  if (discard_ || sqlite3_get_autocommit(conn_.conn->handle()) == 0) return;
  pool_->give_back(std::move(conn_), dev_, ino_, epoch_);
}

Result<ReadPool::Lease> ReadPool::acquire(bool open_if_none) {
  struct stat st {};
  if (::stat(db_path_.c_str(), &st) != 0) {
    return make_error(Errc::io_error, "cannot stat the database {}: {}", db_path_.string(),
                      std::strerror(errno));
  }
  // Read before the connection's first read transaction: an entry that
  // changes the statistics moves the epoch after its commit, so a connection
  // opened now may see them and still count as older (one more open later).
  uint64_t epoch = stats_epoch_ ? stats_epoch_() : 0;
  std::vector<Pooled> closing;  // closed outside the lock
  Pooled conn;
  {
    std::lock_guard lock(mu_);
    if (st.st_dev != dev_ || st.st_ino != ino_ || epoch > epoch_) {
      // Opened on a file the path no longer names, or before the statistics moved.
      closing.swap(idle_);
      dev_ = st.st_dev;
      ino_ = st.st_ino;
      epoch_ = std::max(epoch_, epoch);
    }
    epoch = epoch_;  // never back: another acquire may have read a newer one first
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
      ++reused_;
    }
  }
  if (!conn.conn && !open_if_none) return make_error(Errc::unavailable, "no idle read connection");
  if (!conn.conn) {
    ReadGuardOptions options;
    options.statement_cache = kStatementsPerConnection;
    SWL_ASSIGN(conn.conn,
               GuardedConnection::open(page_vfs_uri(db_path_, nullptr, nullptr, /*read_only=*/true),
                                       options));
    conn.txn = std::make_unique<ReadTxn>(conn.conn->handle());
    std::lock_guard lock(mu_);
    ++opened_;
  }
  return Lease(this, std::move(conn), st.st_dev, st.st_ino, epoch);
}

void ReadPool::give_back(Pooled conn, dev_t dev, ino_t ino, uint64_t epoch) {
  Pooled closing;  // closed outside the lock
  std::lock_guard lock(mu_);
  if (dev != dev_ || ino != ino_ || epoch != epoch_ || idle_.size() >= max_idle_) {
    closing = std::move(conn);
    return;
  }
  idle_.push_back(std::move(conn));
}

size_t ReadPool::idle() const {
  std::lock_guard lock(mu_);
  return idle_.size();
}
uint64_t ReadPool::opened() const {
  std::lock_guard lock(mu_);
  return opened_;
}
uint64_t ReadPool::reused() const {
  std::lock_guard lock(mu_);
  return reused_;
}

}  // namespace swarmlite::net
