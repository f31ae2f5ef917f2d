// Test helpers for page_vfs_test.cpp and state_tree_test.cpp (not part of the library):
// a temp directory and a thin SQLite connection that fails the test on error.
#pragma once

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/bytes.h"
#include "sqlbridge/engine/page_vfs.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite::vfs_testing {

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("swl-vfs-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// One connection; every helper REQUIREs success unless it returns the code.
class Conn {
 public:
  explicit Conn(const std::string& uri, int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) {
    int rc = sqlite3_open_v2(uri.c_str(), &db_, flags | SQLITE_OPEN_URI, nullptr);
    INFO(uri, ": ", sqlite3_errmsg(db_));
    REQUIRE(rc == SQLITE_OK);
    sqlite3_extended_result_codes(db_, 1);
  }
  // Through the swarmlite VFS, with optional captures.
  static Conn open(const std::filesystem::path& path, const WriteCapture* w = nullptr,
                   const ReadCapture* r = nullptr, bool read_only = false) {
    return Conn(page_vfs_uri(path, w, r, read_only),
                read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  }
  Conn(Conn&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Conn& operator=(Conn&&) = delete;
  ~Conn() { close(); }
  void close() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = nullptr;
  }
  sqlite3* get() const { return db_; }

  // Returns the (extended) result code; `check` = REQUIRE it is SQLITE_OK.
  int try_exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    sqlite3_free(err);
    return rc;
  }
  void exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    INFO(sql, ": ", err != nullptr ? err : "");
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  }
  // The first column of the first row, as text ("" when NULL or no row).
  std::string text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr);
    INFO(sql, ": ", sqlite3_errmsg(db_));
    REQUIRE(rc == SQLITE_OK);
    std::string out;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    REQUIRE((rc == SQLITE_ROW || rc == SQLITE_DONE));
    return out;
  }
  int64_t integer(const std::string& sql) { return std::stoll(text(sql)); }

 private:
  sqlite3* db_ = nullptr;
};

// The fixed settings every swarmlite database uses (docs/architecture.md) that matter here.
inline void setup_wal(Conn& c) {
  c.exec("PRAGMA page_size=4096");
  REQUIRE(c.text("PRAGMA journal_mode=WAL") == "wal");
}

// Moves SQLite's pending byte (and so the lock-byte page, state_tree.h) for the
// life of the object, so a test crosses the lock-byte page with a small
// database: 0x10000 puts it at page 17 with 4096-byte pages. Create it before
// the test's first connection and let it go after the last one closes.
class PendingByte {
 public:
  explicit PendingByte(uint32_t pending_byte) {
    auto previous = set_pending_byte_for_testing(pending_byte);
    REQUIRE_MESSAGE(previous.ok(), (previous.ok() ? "" : previous.error().to_string()));
    previous_ = *previous;
  }
  ~PendingByte() { (void)set_pending_byte_for_testing(previous_); }
  PendingByte(const PendingByte&) = delete;
  PendingByte& operator=(const PendingByte&) = delete;

 private:
  uint32_t previous_ = kSqlitePendingByte;
};

inline Bytes read_file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_file_bytes(const std::filesystem::path& p, ByteView b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace swarmlite::vfs_testing
