// A small pool of guarded read connections (read_guard.h) on one database file,
// for the HTTP read path (docs/http-api.md, docs/operations.md "Memory").
//
// Opening a connection per request cost more than the query it served: the
// open itself (files stat'ed, the lookaside and page cache allocated), the
// schema parsed on the first statement, every page read again through the VFS,
// and the close. A pooled connection keeps its parsed schema and page cache;
// SQLite revalidates both at the start of each read transaction (a changed
// schema cookie reloads the schema, a changed WAL drops stale pages), so a
// pooled reader sees exactly what a fresh one would. The planner statistics
// are the exception (ANALYZE leaves the schema cookie alone): the pool closes
// its idle connections when the stats epoch it is given moves.
//
// What a request can leave behind on a connection is nothing the next one sees:
// the guard refuses every statement that changes connection state (writing
// PRAGMAs, ATTACH, TEMP objects, …), and a connection goes back to the pool only
// when it is outside any transaction (the caller discards it on an error it
// cannot vouch for: Lease::discard()). The pool also checks, on every acquire,
// that the path still names the file its idle connections opened (device and
// inode): if the file was replaced, they are closed, never reused.
//
// Memory: at most `max_idle` idle connections, each with its page cache
// (SQLite's default 2000 KiB); connections beyond that in use at the same time
// are opened as needed and closed when returned.
//
// Each connection keeps its read transaction's own statements prepared
// (ReadTxn: BEGIN, the applied size, COMMIT): Lease::txn(), and the last
// kStatementsPerConnection queries it ran (ReadGuardOptions::statement_cache).
//
// Not for proofs: a proof must see every page its query reads go through the
// capturing VFS, so the prover opens its own fresh connection.
//
// Thread-safety: acquire() from any thread; a Lease is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/result.h"
#include "sqlbridge/engine/snapshot.h"
#include "sqlbridge/proof/read_guard.h"

namespace swarmlite::net {

class ReadPool {
 public:
  // Prepared queries kept per pooled connection (read_guard.h).
  static constexpr size_t kStatementsPerConnection = 32;

 private:
  // A connection and its read transaction's prepared statements (destroyed
  // first: members go in reverse order).
  struct Pooled {
    std::unique_ptr<GuardedConnection> conn;
    std::unique_ptr<ReadTxn> txn;
  };

 public:
  // `stats_epoch`, when given, says when the file's planner statistics may
  // have changed (DeterministicDb::stats_epoch): SQLite loads them only with
  // the schema, and ANALYZE does not change the schema's version, so a pooled
  // connection would plan with the old ones for as long as it lives. Idle
  // connections older than the epoch are closed, as for a replaced file.
  explicit ReadPool(std::filesystem::path db_path, size_t max_idle = 4,
                    std::function<uint64_t()> stats_epoch = {});
  ~ReadPool();
  ReadPool(const ReadPool&) = delete;
  ReadPool& operator=(const ReadPool&) = delete;

  // A connection on loan: back to the pool on destruction unless discard()ed,
  // it is inside a transaction, or the pool is full.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease();
    GuardedConnection& operator*() const { return *conn_.conn; }
    GuardedConnection* operator->() const { return conn_.conn.get(); }
    // begin()/end() of reads on this connection (run them in a TrustedScope).
    ReadTxn& txn() const { return *conn_.txn; }
    // Closes the connection when the lease ends instead of pooling it.
    void discard() { discard_ = true; }

   private:
    friend class ReadPool;
    Lease(ReadPool* pool, Pooled conn, dev_t dev, ino_t ino, uint64_t epoch)
        : pool_(pool), conn_(std::move(conn)), dev_(dev), ino_(ino), epoch_(epoch) {}
    ReadPool* pool_;
    Pooled conn_;
    dev_t dev_;
    ino_t ino_;
    uint64_t epoch_;
    bool discard_ = false;
  };

  // An idle connection if one is left on the same file, else a new one
  // (GuardedConnection::open's errors, or io_error if the file cannot be stat'ed).
  // With `open_if_none` false, never opens one: unavailable when none is idle
  // (for a caller that must not pay an open, the HTTP server's io thread).
  Result<Lease> acquire(bool open_if_none = true);

  // Counters, for tests and /metrics.
  size_t idle() const;
  uint64_t opened() const;
  uint64_t reused() const;

 private:
  void give_back(Pooled conn, dev_t dev, ino_t ino, uint64_t epoch);

  std::filesystem::path db_path_;
  size_t max_idle_;
  std::function<uint64_t()> stats_epoch_;
  uint64_t epoch_ = 0;  // the stats epoch of the idle connections
  mutable std::mutex mu_;
  std::vector<Pooled> idle_;  // all opened on (dev_, ino_)
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  uint64_t opened_ = 0, reused_ = 0;
};

}  // namespace swarmlite::net
