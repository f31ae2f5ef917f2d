#include "net/read_pool.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "sqlbridge/engine/page_vfs.h"

namespace swarmlite::net {

ReadPool::ReadPool(std::filesystem::path db_path, size_t max_idle)
    : db_path_(std::move(db_path)), max_idle_(max_idle) {}

ReadPool::~ReadPool() = default;

ReadPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), conn_(std::move(other.conn_)), dev_(other.dev_), ino_(other.ino_),
      discard_(other.discard_) {
  other.pool_ = nullptr;
}

ReadPool::Lease::~Lease() {
  if (!pool_ || !conn_.conn) return;
  // Outside any transaction, or it is not reusable: an open read transaction
  // would pin an old snapshot (and block checkpoints) for the next borrower.
  if (discard_ || sqlite3_get_autocommit(conn_.conn->handle()) == 0) return;
  pool_->give_back(std::move(conn_), dev_, ino_);
}

Result<ReadPool::Lease> ReadPool::acquire(bool open_if_none) {
  struct stat st {};
  if (::stat(db_path_.c_str(), &st) != 0) {
    return make_error(Errc::io_error, "cannot stat the database {}: {}", db_path_.string(),
                      std::strerror(errno));
  }
  Pooled conn;
  {
    std::lock_guard lock(mu_);
    if (st.st_dev != dev_ || st.st_ino != ino_) {
      idle_.clear();  // opened on a file the path no longer names
      dev_ = st.st_dev;
      ino_ = st.st_ino;
    }
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
  return Lease(this, std::move(conn), st.st_dev, st.st_ino);
}

void ReadPool::give_back(Pooled conn, dev_t dev, ino_t ino) {
  Pooled closing;  // closed outside the lock
  std::lock_guard lock(mu_);
  if (dev != dev_ || ino != ino_ || idle_.size() >= max_idle_) {
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
